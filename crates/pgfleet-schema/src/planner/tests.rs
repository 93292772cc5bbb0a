//! Planner tests: hand-made models, assertions on SQL, order, transactionality and hazards.

use super::*;
use crate::model::{
    ConstraintKind, Extension, Identity, IdentityOptions, Namespace, QualName, Table,
};
use crate::plan::Hazard;
use crate::testing::*;

fn plan_online(cur: &Model, des: &Model) -> Plan {
    plan(cur, des, &PlanOptions::default())
}

fn plan_offline(cur: &Model, des: &Model) -> Plan {
    plan(
        cur,
        des,
        &PlanOptions {
            online: false,
            ..PlanOptions::default()
        },
    )
}

fn with_table(mut m: Model, name: &str, t: Table) -> Model {
    m.tables.insert(qn(name), t);
    m
}

fn table_mut<'m>(m: &'m mut Model, name: &str) -> &'m mut Table {
    m.tables.get_mut(&qn(name)).expect("table")
}

/// A model that uses a bit of everything.
fn rich_model() -> Model {
    let mut m = model();
    m.schemas.insert(
        "app".into(),
        Namespace {
            comment: Some("the app".into()),
        },
    );
    m.extensions.insert(
        "vector".into(),
        Extension {
            schema: "public".into(),
            version: "0.8.0".into(),
            comment: Some("vector data type and ivfflat and hnsw access methods".into()),
        },
    );
    m.enums
        .insert(qn("public.message_role"), enum_type(&["user", "assistant"]));
    m.domains.insert(qn("public.posint"), domain("integer"));
    let mut seq = sequence();
    seq.owned_by = Some((qn("public.users"), "n".into()));
    m.sequences.insert(qn("public.users_n_seq"), seq);
    let mut users = table(&[("id", "bigint"), ("email", "text"), ("n", "bigint")]);
    users.columns.get_mut("id").unwrap().identity = Some(Identity::ByDefault);
    users.columns.get_mut("id").unwrap().not_null = true;
    users.columns.get_mut("n").unwrap().default =
        Some("nextval('public.users_n_seq'::regclass)".into());
    users.constraints.insert(
        "users_pkey".into(),
        constraint(ConstraintKind::PrimaryKey, "PRIMARY KEY (id)"),
    );
    users.rls_enabled = true;
    users
        .policies
        .insert("own".into(), policy("ALL", "(id = 1)"));
    users.triggers.insert(
        "t_upd".into(),
        trigger("CREATE TRIGGER t_upd BEFORE UPDATE ON public.users FOR EACH ROW EXECUTE FUNCTION public.touch()"),
    );
    let mut docs = table(&[
        ("id", "bigint"),
        ("user_id", "bigint"),
        ("e", "public.vector(3)"),
    ]);
    docs.constraints.insert(
        "docs_user_id_fkey".into(),
        fk(
            "FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE CASCADE",
            "public.users",
        ),
    );
    docs.indexes.insert(
        "docs_e_idx".into(),
        index("CREATE INDEX docs_e_idx ON public.docs USING hnsw (e public.vector_cosine_ops) WITH (m='16', ef_construction='64')"),
    );
    m.tables.insert(qn("public.users"), users);
    m.tables.insert(qn("public.docs"), docs);
    m.views.insert(
        qn("public.user_docs"),
        view(
            " SELECT u.id, d.id AS doc_id FROM public.users u JOIN public.docs d ON d.user_id = u.id;",
            &[("id", "bigint"), ("doc_id", "bigint")],
            &["public.docs", "public.users"],
        ),
    );
    m.functions.insert(
        fid("public.touch", ""),
        function(
            "CREATE OR REPLACE FUNCTION public.touch()\n RETURNS trigger\n LANGUAGE plpgsql\nAS $function$ begin return new; end $function$\n",
            "trigger",
        ),
    );
    m
}

#[test]
fn identical_models_plan_nothing() {
    let m = rich_model();
    assert!(diff(&m, &m).is_empty());
    assert!(plan_online(&m, &m).is_empty());
    assert!(plan_offline(&m, &m).is_empty());
}

#[test]
fn the_rich_model_from_scratch_converges_in_a_valid_order() {
    let des = rich_model();
    let p = plan_online(&model(), &des);
    let sql = p.to_sql();
    // Everything is new: one transaction, no hazards, nothing concurrent.
    assert!(p.steps.iter().all(|s| s.transactional), "{sql}");
    assert!(p.hazards().is_empty(), "{sql}");
    let order = [
        "CREATE SCHEMA app",
        "CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public",
        "CREATE TYPE public.message_role AS ENUM ('user', 'assistant')",
        "CREATE SEQUENCE public.users_n_seq AS bigint",
        "CREATE OR REPLACE FUNCTION public.touch()",
        "CREATE DOMAIN public.posint AS integer",
        "CREATE TABLE public.docs",
        "CREATE TABLE public.users",
        "ADD CONSTRAINT users_pkey PRIMARY KEY (id)",
        "CREATE INDEX docs_e_idx ON public.docs USING hnsw",
        "ADD CONSTRAINT docs_user_id_fkey FOREIGN KEY",
        "ALTER SEQUENCE public.users_n_seq OWNED BY public.users.n",
        "CREATE VIEW public.user_docs AS\nSELECT u.id",
        "CREATE TRIGGER t_upd",
        "ALTER TABLE public.users ENABLE ROW LEVEL SECURITY",
        "CREATE POLICY own ON public.users AS PERMISSIVE FOR ALL TO PUBLIC USING ((id = 1))",
        "COMMENT ON SCHEMA app IS 'the app'",
    ];
    let positions: Vec<usize> = order.iter().map(|n| pos(&p, n)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "{positions:?}\n{sql}"
    );
    assert!(
        !sql.contains("CONCURRENTLY") && !sql.contains("NOT VALID"),
        "{sql}"
    );
    assert!(
        step(&p, "CREATE VIEW").sql.ends_with("u.id"),
        "trailing ; stripped"
    );
    // And back: everything is dropped, dependents first, never CASCADE.
    let back = plan_online(&des, &model());
    let sql = back.to_sql();
    assert!(!sql.contains("CASCADE"), "{sql}");
    let order = [
        "DROP VIEW public.user_docs",
        "DROP TABLE public.docs",
        "DROP TABLE public.users",
        "DROP SEQUENCE IF EXISTS public.users_n_seq",
        "DROP FUNCTION public.touch()",
        "DROP DOMAIN public.posint",
        "DROP TYPE public.message_role",
        "DROP EXTENSION vector",
        "DROP SCHEMA app",
    ];
    let positions: Vec<usize> = order.iter().map(|n| pos(&back, n)).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "{positions:?}\n{sql}"
    );
}

#[test]
fn empty_to_table() {
    let mut t = table(&[
        ("id", "bigint"),
        ("email", "text"),
        ("created_at", "timestamp with time zone"),
    ]);
    // Positions decide column order, not names.
    t.columns.get_mut("id").unwrap().identity = Some(Identity::Always);
    t.columns.get_mut("id").unwrap().not_null = true;
    t.columns.get_mut("email").unwrap().collation = Some("pg_catalog.\"C\"".into());
    let created = t.columns.get_mut("created_at").unwrap();
    created.default = Some("now()".into());
    created.not_null = true;
    t.constraints.insert(
        "users_pkey".into(),
        constraint(ConstraintKind::PrimaryKey, "PRIMARY KEY (id)"),
    );
    t.indexes.insert(
        "users_email_idx".into(),
        index("CREATE INDEX users_email_idx ON public.users USING btree (email)"),
    );
    t.comment = Some("people".into());
    let des = with_table(model(), "public.users", t);
    let p = plan_online(&model(), &des);
    assert_eq!(
        sqls(&p),
        [
            "CREATE TABLE public.users (\n    id bigint GENERATED ALWAYS AS IDENTITY NOT NULL,\n    email text COLLATE pg_catalog.\"C\",\n    created_at timestamp with time zone DEFAULT now() NOT NULL\n)",
            "ALTER TABLE public.users ADD CONSTRAINT users_pkey PRIMARY KEY (id)",
            "CREATE INDEX users_email_idx ON public.users USING btree (email)",
            "COMMENT ON TABLE public.users IS 'people'",
        ]
    );
    assert_eq!(p.steps[0].description, "create table public.users");
    assert!(p.hazards().is_empty());
}

#[test]
fn add_column() {
    let cur = with_table(model(), "public.users", table(&[("id", "bigint")]));
    let mut des = cur.clone();
    let mut email = col(2, "text");
    email.not_null = true;
    email.default = Some("''::text".into());
    table_mut(&mut des, "public.users")
        .columns
        .insert("email".into(), email);
    let p = plan_online(&cur, &des);
    assert_eq!(p.steps.len(), 1);
    assert_eq!(p.steps[0].description, "add column public.users.email");
    assert_eq!(
        p.steps[0].sql,
        "ALTER TABLE public.users ADD COLUMN email text DEFAULT ''::text NOT NULL"
    );
    assert!(p.steps[0].hazards.is_empty() && p.steps[0].transactional);
}

#[test]
fn adding_an_identity_or_generated_column_rewrites() {
    let cur = with_table(model(), "public.t", table(&[("a", "integer")]));
    let mut des = cur.clone();
    let mut g = col(2, "integer");
    g.generated = Some("(a * 2)".into());
    table_mut(&mut des, "public.t")
        .columns
        .insert("g".into(), g);
    let p = plan_online(&cur, &des);
    let s = step(&p, "ADD COLUMN g");
    assert_eq!(
        s.sql,
        "ALTER TABLE public.t ADD COLUMN g integer GENERATED ALWAYS AS ((a * 2)) STORED"
    );
    assert_eq!(s.hazards, [Hazard::TableRewrite]);
}

#[test]
fn drop_column_is_data_loss() {
    let cur = with_table(
        model(),
        "public.users",
        table(&[("id", "bigint"), ("email", "text")]),
    );
    let mut des = cur.clone();
    table_mut(&mut des, "public.users").columns.remove("email");
    let p = plan_online(&cur, &des);
    assert_eq!(sqls(&p), ["ALTER TABLE public.users DROP COLUMN email"]);
    assert!(p.steps[0].hazards.contains(&Hazard::DataLoss));
    assert_eq!(p.steps[0].description, "drop column public.users.email");
}

#[test]
fn type_change_rewrites_the_table() {
    let cur = with_table(model(), "public.t", table(&[("n", "integer")]));
    let mut des = cur.clone();
    table_mut(&mut des, "public.t")
        .columns
        .get_mut("n")
        .unwrap()
        .data_type = "bigint".into();
    let p = plan_online(&cur, &des);
    // integer → bigint has an implicit cast: PostgreSQL converts on its own, nothing can be lost.
    assert_eq!(
        sqls(&p),
        ["ALTER TABLE public.t ALTER COLUMN n TYPE bigint"]
    );
    assert_eq!(p.steps[0].hazards, [Hazard::TableRewrite, Hazard::LongLock]);
}

/// The type change of column `v` from `from` to `to`: its SQL and hazards.
fn type_change(from: &str, to: &str) -> (String, Vec<Hazard>) {
    let mut cur = model();
    cur.enums
        .insert(qn("public.mood"), enum_type(&["happy", "sad"]));
    cur.enums
        .insert(qn("public.other_mood"), enum_type(&["happy"]));
    cur.tables.insert(qn("public.t"), table(&[("v", from)]));
    let mut des = cur.clone();
    table_mut(&mut des, "public.t")
        .columns
        .get_mut("v")
        .unwrap()
        .data_type = to.into();
    let p = plan_online(&cur, &des);
    assert_eq!(p.steps.len(), 1, "{}", p.to_sql());
    (p.steps[0].sql.clone(), p.steps[0].hazards.clone())
}

#[test]
fn type_changes_carry_what_they_do_to_the_values_and_let_postgres_convert_when_it_can() {
    use Hazard::{DataLoss, LongLock, MayFail, TableRewrite};
    let alter = "ALTER TABLE public.t ALTER COLUMN v TYPE";
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str, &[Hazard])] = &[
        // The review's case: an assignment cast, which errors on a long value instead of
        // truncating it, but still cuts trailing spaces beyond the length silently.
        ("text", "character varying(3)", "character varying(3)", &[DataLoss, TableRewrite, LongLock]),
        ("character varying(10)", "character varying(3)", "character varying(3)", &[DataLoss, TableRewrite, LongLock]),
        ("character(10)", "character(3)", "character(3)", &[MayFail, TableRewrite, LongLock]),
        ("character varying(3)", "text", "text", &[TableRewrite, LongLock]),
        ("timestamp with time zone", "date", "date", &[DataLoss, TableRewrite, LongLock]),
        ("numeric(10,2)", "numeric(10,0)", "numeric(10,0)", &[DataLoss, TableRewrite, LongLock]),
        ("double precision", "integer", "integer", &[DataLoss, TableRewrite, LongLock]),
        ("json", "jsonb", "jsonb", &[DataLoss, TableRewrite, LongLock]),
        ("bigint", "integer", "integer", &[MayFail, TableRewrite, LongLock]),
        // No assignment cast: an explicit one, which fails on a value that does not parse.
        ("text", "integer", "integer USING v::integer", &[MayFail, TableRewrite, LongLock]),
        ("text", "uuid", "uuid USING v::uuid", &[MayFail, TableRewrite, LongLock]),
        ("text", "public.mood", "public.mood USING v::public.mood", &[MayFail, TableRewrite, LongLock]),
        // Between enums: through text.
        ("public.mood", "public.other_mood", "public.other_mood USING v::text::public.other_mood", &[MayFail, TableRewrite, LongLock]),
        ("public.other_mood[]", "public.mood[]", "public.mood[] USING v::text[]::public.mood[]", &[TableRewrite, LongLock]),
        // Unknown: the old explicit cast, and assumed to lose values.
        ("public.vector(3)", "public.vector(4)", "public.vector(4) USING v::public.vector(4)", &[DataLoss, TableRewrite, LongLock]),
    ];
    for (from, to, sql, hazards) in cases {
        let (got_sql, got_hazards) = type_change(from, to);
        assert_eq!(got_sql, format!("{alter} {sql}"), "{from} -> {to}");
        assert_eq!(&got_hazards, hazards, "{from} -> {to}");
    }
}

#[test]
fn a_generated_column_changes_type_without_using_but_with_its_hazard() {
    let mut t = table(&[("a", "text"), ("g", "text")]);
    t.columns.get_mut("g").unwrap().generated = Some("upper(a)".into());
    let cur = with_table(model(), "public.t", t);
    let mut des = cur.clone();
    table_mut(&mut des, "public.t")
        .columns
        .get_mut("g")
        .unwrap()
        .data_type = "character varying(3)".into();
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        ["ALTER TABLE public.t ALTER COLUMN g TYPE character varying(3)"]
    );
    assert!(p.steps[0].hazards.contains(&Hazard::DataLoss));
}

#[test]
fn narrowing_a_sequence_or_identity_range_may_fail() {
    let mut cur = model();
    cur.sequences.insert(qn("public.s"), sequence());
    let mut des = cur.clone();
    let s = des.sequences.get_mut(&qn("public.s")).unwrap();
    s.data_type = "integer".into();
    s.max_value = i64::from(i32::MAX);
    let p = plan_online(&cur, &des);
    assert_eq!(step(&p, "ALTER SEQUENCE").hazards, [Hazard::MayFail]);
    // Wider again: nothing can fail.
    let p = plan_online(&des, &cur);
    assert!(step(&p, "ALTER SEQUENCE").hazards.is_empty());
    // A cache change alone: nothing.
    let mut cached = cur.clone();
    cached.sequences.get_mut(&qn("public.s")).unwrap().cache = 10;
    assert!(
        step(&plan_online(&cur, &cached), "ALTER SEQUENCE")
            .hazards
            .is_empty()
    );

    let mut t = table(&[("id", "bigint")]);
    t.columns.get_mut("id").unwrap().identity = Some(Identity::Always);
    let cur = with_table(model(), "public.t", t);
    let mut des = cur.clone();
    table_mut(&mut des, "public.t")
        .columns
        .get_mut("id")
        .unwrap()
        .identity_options
        .max_value = Some(1000);
    let p = plan_online(&cur, &des);
    assert_eq!(step(&p, "SET MAXVALUE 1000").hazards, [Hazard::MayFail]);
    let p = plan_online(&des, &cur);
    assert!(step(&p, "SET NO MAXVALUE").hazards.is_empty());
}

#[test]
fn column_steps_undo_before_they_set() {
    // A serial-like column becomes an identity column, changing type, with NOT NULL.
    let mut t = table(&[("id", "integer")]);
    t.columns.get_mut("id").unwrap().default = Some("nextval('public.s'::regclass)".into());
    let cur = with_table(model(), "public.t", t);
    let mut des = cur.clone();
    let c = table_mut(&mut des, "public.t")
        .columns
        .get_mut("id")
        .unwrap();
    c.default = None;
    c.data_type = "bigint".into();
    c.not_null = true;
    c.identity = Some(Identity::ByDefault);
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        [
            "ALTER TABLE public.t ALTER COLUMN id DROP DEFAULT",
            "ALTER TABLE public.t ALTER COLUMN id TYPE bigint",
            "ALTER TABLE public.t ALTER COLUMN id SET NOT NULL",
            "ALTER TABLE public.t ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY",
            "SELECT pg_catalog.setval(d.objid::pg_catalog.regclass, s.v) \
             FROM (SELECT pg_catalog.max(id) AS v FROM public.t) s, pg_catalog.pg_depend d \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
             WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'i' \
             AND d.refobjid = 'public.t'::pg_catalog.regclass AND a.attname = 'id' AND s.v >= 1",
        ]
    );
    assert_eq!(step(&p, "SET NOT NULL").hazards, [Hazard::LongLock]);
    // And back.
    let p = plan_online(&des, &cur);
    assert_eq!(
        sqls(&p),
        [
            "ALTER TABLE public.t ALTER COLUMN id DROP IDENTITY",
            "ALTER TABLE public.t ALTER COLUMN id TYPE integer",
            "ALTER TABLE public.t ALTER COLUMN id DROP NOT NULL",
            "ALTER TABLE public.t ALTER COLUMN id SET DEFAULT nextval('public.s'::regclass)",
        ]
    );
    // bigint → integer: an assignment cast, which fails on a value out of range.
    assert_eq!(
        step(&p, "TYPE integer").hazards,
        [Hazard::MayFail, Hazard::TableRewrite, Hazard::LongLock]
    );
}

#[test]
fn identity_sequence_options_are_created_changed_and_reset() {
    let mut t = table(&[("id", "bigint"), ("n", "integer")]);
    t.columns.get_mut("id").unwrap().identity = Some(Identity::Always);
    let cur = with_table(model(), "public.t", t);
    let mut des = cur.clone();
    let opts = IdentityOptions {
        increment: 10,
        start: Some(100),
        max_value: Some(1_000_000),
        cache: 20,
        ..IdentityOptions::default()
    };
    let tbl = table_mut(&mut des, "public.t");
    tbl.columns.get_mut("id").unwrap().identity_options = opts.clone();
    let n = tbl.columns.get_mut("n").unwrap();
    n.identity = Some(Identity::ByDefault);
    n.identity_options = IdentityOptions {
        increment: -1,
        ..IdentityOptions::default()
    };
    // A new table gets them in CREATE TABLE.
    let p = plan_online(&model(), &des);
    assert!(
        p.steps[0]
            .sql
            .contains("id bigint GENERATED ALWAYS AS IDENTITY (INCREMENT BY 10 MAXVALUE 1000000 START WITH 100 CACHE 20)"),
        "{}",
        p.to_sql()
    );
    // An existing table: options set on the identity column; a column that becomes an identity on
    // a table that may have rows gets its sequence moved past the values in use (descending here).
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        [
            "ALTER TABLE public.t ALTER COLUMN id SET INCREMENT BY 10 SET NO MINVALUE SET MAXVALUE 1000000 \
             SET START WITH 100 SET CACHE 20 SET NO CYCLE",
            "ALTER TABLE public.t ALTER COLUMN n ADD GENERATED BY DEFAULT AS IDENTITY (INCREMENT BY -1)",
            "SELECT pg_catalog.setval(d.objid::pg_catalog.regclass, s.v) \
             FROM (SELECT pg_catalog.min(n) AS v FROM public.t) s, pg_catalog.pg_depend d \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
             WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'i' \
             AND d.refobjid = 'public.t'::pg_catalog.regclass AND a.attname = 'n' AND s.v <= -1",
        ]
    );
    // Back to the defaults: every option is set back (after the drops).
    let p = plan_online(&des, &cur);
    assert_eq!(
        sqls(&p),
        [
            "ALTER TABLE public.t ALTER COLUMN n DROP IDENTITY",
            "ALTER TABLE public.t ALTER COLUMN id SET INCREMENT BY 1 SET NO MINVALUE SET NO MAXVALUE \
             SET START WITH 1 SET CACHE 1 SET NO CYCLE",
        ]
    );
    // Only the kind changes: no option is touched.
    let mut always = cur.clone();
    table_mut(&mut always, "public.t")
        .columns
        .get_mut("id")
        .unwrap()
        .identity = Some(Identity::ByDefault);
    assert_eq!(
        sqls(&plan_online(&cur, &always)),
        ["ALTER TABLE public.t ALTER COLUMN id SET GENERATED BY DEFAULT"]
    );
}

#[test]
fn changed_generated_expression_drops_and_adds_the_column() {
    let mut t = table(&[("a", "integer"), ("g", "integer")]);
    t.columns.get_mut("g").unwrap().generated = Some("(a * 2)".into());
    let cur = with_table(model(), "public.t", t);
    let mut des = cur.clone();
    table_mut(&mut des, "public.t")
        .columns
        .get_mut("g")
        .unwrap()
        .generated = Some("(a * 3)".into());
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        [
            "ALTER TABLE public.t DROP COLUMN g",
            "ALTER TABLE public.t ADD COLUMN g integer GENERATED ALWAYS AS ((a * 3)) STORED",
        ]
    );
    // Generated → plain keeps the data.
    table_mut(&mut des, "public.t")
        .columns
        .get_mut("g")
        .unwrap()
        .generated = None;
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        ["ALTER TABLE public.t ALTER COLUMN g DROP EXPRESSION"]
    );
}

#[test]
fn foreign_key_on_existing_table_is_added_not_valid_then_validated() {
    let users = table(&[("id", "bigint")]);
    let docs = table(&[("id", "bigint"), ("user_id", "bigint")]);
    let cur = with_table(
        with_table(model(), "public.users", users),
        "public.docs",
        docs,
    );
    let mut des = cur.clone();
    table_mut(&mut des, "public.docs").constraints.insert(
        "docs_user_id_fkey".into(),
        fk(
            "FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE CASCADE",
            "public.users",
        ),
    );
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        [
            "ALTER TABLE public.docs ADD CONSTRAINT docs_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id) ON DELETE CASCADE NOT VALID",
            "ALTER TABLE public.docs VALIDATE CONSTRAINT docs_user_id_fkey",
        ]
    );
    assert!(p.steps[0].transactional && p.steps[0].hazards.is_empty());
    assert!(!p.steps[1].transactional);
    assert_eq!(p.steps[1].hazards, [Hazard::ValidationScan]);

    // Offline: one plain statement inside the transaction.
    let p = plan_offline(&cur, &des);
    assert_eq!(p.steps.len(), 1);
    assert!(!p.steps[0].sql.contains("NOT VALID") && p.steps[0].transactional);
    assert!(p.steps[0].hazards.contains(&Hazard::ValidationScan));

    // A constraint left NOT VALID is only validated.
    let mut half = des.clone();
    table_mut(&mut half, "public.docs")
        .constraints
        .get_mut("docs_user_id_fkey")
        .unwrap()
        .valid = false;
    let p = plan_online(&half, &des);
    assert_eq!(
        sqls(&p),
        ["ALTER TABLE public.docs VALIDATE CONSTRAINT docs_user_id_fkey"]
    );
}

#[test]
fn unique_constraint_on_existing_table_holds_a_long_lock() {
    let cur = with_table(model(), "public.t", table(&[("a", "text")]));
    let mut des = cur.clone();
    table_mut(&mut des, "public.t").constraints.insert(
        "t_a_key".into(),
        constraint(ConstraintKind::Unique, "UNIQUE NULLS NOT DISTINCT (a)"),
    );
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        ["ALTER TABLE public.t ADD CONSTRAINT t_a_key UNIQUE NULLS NOT DISTINCT (a)"]
    );
    assert!(p.steps[0].transactional && p.steps[0].hazards.contains(&Hazard::LongLock));
}

#[test]
fn new_index_on_existing_table_is_built_concurrently() {
    let cur = with_table(model(), "public.t", table(&[("a", "text")]));
    let mut des = cur.clone();
    table_mut(&mut des, "public.t").indexes.insert(
        "t_a_idx".into(),
        index("CREATE INDEX t_a_idx ON public.t USING btree (a) INCLUDE (a) WHERE (a IS NOT NULL)"),
    );
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        [
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_a_idx ON public.t USING btree (a) INCLUDE (a) WHERE (a IS NOT NULL)"
        ]
    );
    assert!(!p.steps[0].transactional);
    assert_eq!(p.steps[0].hazards, [Hazard::IndexBuild]);

    let p = plan_offline(&cur, &des);
    assert_eq!(
        sqls(&p),
        ["CREATE INDEX t_a_idx ON public.t USING btree (a) INCLUDE (a) WHERE (a IS NOT NULL)"]
    );
    assert!(p.steps[0].transactional);
    assert!(p.steps[0].hazards.contains(&Hazard::IndexBuild));

    // Dropping it again: concurrently after the transaction.
    let p = plan_online(&des, &cur);
    assert_eq!(
        sqls(&p),
        ["DROP INDEX CONCURRENTLY IF EXISTS public.t_a_idx"]
    );
    assert!(!p.steps[0].transactional && p.steps[0].hazards.is_empty());
}

#[test]
fn indexes_of_partitioned_tables_are_built_in_the_transaction_without_only() {
    let cur = with_table(
        model(),
        "public.p",
        partitioned(&[("d", "date")], "RANGE (d)"),
    );
    let mut des = cur.clone();
    table_mut(&mut des, "public.p").indexes.insert(
        "p_d_idx".into(),
        index("CREATE INDEX p_d_idx ON ONLY public.p USING btree (d)"),
    );
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        ["CREATE INDEX p_d_idx ON public.p USING btree (d)"]
    );
    assert!(p.steps[0].transactional);
}

#[test]
fn changed_hnsw_index_is_built_under_a_temporary_name() {
    let cur = rich_model();
    let mut des = cur.clone();
    table_mut(&mut des, "public.docs").indexes.insert(
        "docs_e_idx".into(),
        index("CREATE INDEX docs_e_idx ON public.docs USING hnsw (e public.vector_cosine_ops) WITH (m='32', ef_construction='128')"),
    );
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        [
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS docs_e_idx_pgfleet_new ON public.docs USING hnsw (e public.vector_cosine_ops) WITH (m='32', ef_construction='128')",
            "DROP INDEX CONCURRENTLY IF EXISTS public.docs_e_idx",
            "ALTER INDEX public.docs_e_idx_pgfleet_new RENAME TO docs_e_idx",
        ]
    );
    assert_eq!(
        p.steps.iter().map(|s| s.transactional).collect::<Vec<_>>(),
        [false, false, true]
    );
    assert_eq!(p.steps[0].hazards, [Hazard::IndexBuild]);

    // Offline: drop and create inside the transaction.
    let p = plan_offline(&cur, &des);
    assert_eq!(
        sqls(&p),
        [
            "DROP INDEX public.docs_e_idx",
            "CREATE INDEX docs_e_idx ON public.docs USING hnsw (e public.vector_cosine_ops) WITH (m='32', ef_construction='128')",
        ]
    );
}

#[test]
fn invalid_index_is_dropped_and_rebuilt_under_its_name() {
    let des = rich_model();
    let mut cur = des.clone();
    table_mut(&mut cur, "public.docs")
        .indexes
        .get_mut("docs_e_idx")
        .unwrap()
        .valid = false;
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        [
            "DROP INDEX CONCURRENTLY IF EXISTS public.docs_e_idx",
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS docs_e_idx ON public.docs USING hnsw (e public.vector_cosine_ops) WITH (m='16', ef_construction='64')",
        ]
    );
    assert!(p.steps.iter().all(|s| !s.transactional));
}

#[test]
fn index_comments_follow_concurrent_builds() {
    let cur = with_table(model(), "public.t", table(&[("a", "text")]));
    let mut des = cur.clone();
    let mut i = index("CREATE INDEX t_a_idx ON public.t USING btree (a)");
    i.comment = Some("fast".into());
    table_mut(&mut des, "public.t")
        .indexes
        .insert("t_a_idx".into(), i);
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        [
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_a_idx ON public.t USING btree (a)",
            "COMMENT ON INDEX public.t_a_idx IS 'fast'",
        ]
    );
}

#[test]
fn enum_values_are_added_in_position() {
    let mut cur = model();
    cur.enums.insert(qn("public.mood"), enum_type(&["b", "d"]));
    let mut des = model();
    des.enums
        .insert(qn("public.mood"), enum_type(&["a", "b", "c", "d", "e"]));
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        [
            "ALTER TYPE public.mood ADD VALUE IF NOT EXISTS 'a' BEFORE 'b'",
            "ALTER TYPE public.mood ADD VALUE IF NOT EXISTS 'c' AFTER 'b'",
            "ALTER TYPE public.mood ADD VALUE IF NOT EXISTS 'e' AFTER 'd'",
        ]
    );
    assert!(
        p.steps
            .iter()
            .all(|s| !s.transactional && s.hazards.is_empty())
    );
}

#[test]
fn enum_value_removal_swaps_the_type() {
    let mut cur = model();
    cur.enums
        .insert(qn("public.mood"), enum_type(&["happy", "sad", "meh"]));
    let mut t = table(&[
        ("id", "integer"),
        ("m", "public.mood"),
        ("ms", "public.mood[]"),
    ]);
    t.columns.get_mut("m").unwrap().default = Some("'happy'::public.mood".into());
    cur.tables.insert(qn("public.t"), t);
    cur.views.insert(
        qn("public.v"),
        view(
            " SELECT id, m FROM public.t;",
            &[("id", "integer"), ("m", "public.mood")],
            &["public.t"],
        ),
    );
    let mut des = cur.clone();
    des.enums
        .insert(qn("public.mood"), enum_type(&["sad", "happy"]));
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        [
            "ALTER TYPE public.mood RENAME TO mood_pgfleet_old",
            "CREATE TYPE public.mood AS ENUM ('sad', 'happy')",
            "DROP VIEW public.v",
            "ALTER TABLE public.t ALTER COLUMN m DROP DEFAULT",
            "ALTER TABLE public.t ALTER COLUMN m TYPE public.mood USING m::text::public.mood",
            "ALTER TABLE public.t ALTER COLUMN m SET DEFAULT 'happy'::public.mood",
            "ALTER TABLE public.t ALTER COLUMN ms TYPE public.mood[] USING ms::text[]::public.mood[]",
            "CREATE VIEW public.v AS\nSELECT id, m FROM public.t",
            "DROP TYPE public.mood_pgfleet_old",
        ]
    );
    // A row holding the removed label `meh` makes the conversion fail; nothing is lost: the old
    // type holds no values once its columns are converted.
    for needle in ["TYPE public.mood USING", "TYPE public.mood[] USING"] {
        assert_eq!(
            step(&p, needle).hazards,
            [Hazard::MayFail, Hazard::TableRewrite, Hazard::LongLock],
            "{needle}"
        );
    }
    assert!(step(&p, "DROP TYPE").hazards.is_empty());
    assert!(p.steps.iter().all(|s| s.transactional));
    // Reordering keeps every label: nothing can fail.
    des.enums
        .insert(qn("public.mood"), enum_type(&["meh", "sad", "happy"]));
    let p = plan_online(&cur, &des);
    assert_eq!(
        step(&p, "TYPE public.mood USING").hazards,
        [Hazard::TableRewrite, Hazard::LongLock]
    );
}

#[test]
fn view_is_recreated_when_its_table_column_type_changes() {
    let mut cur = with_table(
        model(),
        "public.t",
        table(&[("id", "integer"), ("n", "integer")]),
    );
    cur.views.insert(
        qn("public.v"),
        view(
            " SELECT id, n FROM public.t;",
            &[("id", "integer"), ("n", "integer")],
            &["public.t"],
        ),
    );
    cur.views.insert(
        qn("public.w"),
        view(
            " SELECT n FROM public.v;",
            &[("n", "integer")],
            &["public.v"],
        ),
    );
    let mut unrelated = view(" SELECT 1 AS one;", &[("one", "integer")], &[]);
    unrelated.comment = Some("stays".into());
    cur.views.insert(qn("public.a_unrelated"), unrelated);
    let mut des = cur.clone();
    table_mut(&mut des, "public.t")
        .columns
        .get_mut("n")
        .unwrap()
        .data_type = "bigint".into();
    des.views.get_mut(&qn("public.v")).unwrap().columns[1].1 = "bigint".into();
    des.views.get_mut(&qn("public.w")).unwrap().columns[0].1 = "bigint".into();
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        [
            "DROP VIEW public.w",
            "DROP VIEW public.v",
            "ALTER TABLE public.t ALTER COLUMN n TYPE bigint",
            "CREATE VIEW public.v AS\nSELECT id, n FROM public.t",
            "CREATE VIEW public.w AS\nSELECT n FROM public.v",
        ]
    );
    // Column types changed: breaking for clients.
    assert!(
        step(&p, "DROP VIEW public.w")
            .hazards
            .contains(&Hazard::BreakingChange)
    );
}

#[test]
fn view_definition_change_uses_create_or_replace_when_columns_are_kept() {
    let mut cur = with_table(
        model(),
        "public.t",
        table(&[("id", "integer"), ("n", "integer")]),
    );
    cur.views.insert(
        qn("public.v"),
        view(
            " SELECT id FROM public.t;",
            &[("id", "integer")],
            &["public.t"],
        ),
    );
    let mut des = cur.clone();
    *des.views.get_mut(&qn("public.v")).unwrap() = view(
        " SELECT id, n FROM public.t;",
        &[("id", "integer"), ("n", "integer")],
        &["public.t"],
    );
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        ["CREATE OR REPLACE VIEW public.v AS\nSELECT id, n FROM public.t"]
    );
    // Losing a column needs a drop: breaking.
    let p = plan_online(&des, &cur);
    assert_eq!(
        sqls(&p),
        [
            "DROP VIEW public.v",
            "CREATE VIEW public.v AS\nSELECT id FROM public.t"
        ]
    );
    assert_eq!(p.steps[0].hazards, [Hazard::BreakingChange]);
}

#[test]
fn function_return_type_change_drops_and_creates() {
    let mut cur = model();
    cur.functions.insert(
        fid("public.f", "a integer"),
        function("CREATE OR REPLACE FUNCTION public.f(a integer)\n RETURNS integer\n LANGUAGE sql\nAS $function$ select a $function$\n", "integer"),
    );
    let mut des = model();
    let mut f = function(
        "CREATE OR REPLACE FUNCTION public.f(a integer)\n RETURNS bigint\n LANGUAGE sql\nAS $function$ select a::bigint $function$\n",
        "bigint",
    );
    f.comment = Some("widened".into());
    des.functions.insert(fid("public.f", "a integer"), f);
    let p = plan_online(&cur, &des);
    assert_eq!(p.steps.len(), 3, "{}", p.to_sql());
    assert_eq!(p.steps[0].sql, "DROP FUNCTION public.f(a integer)");
    assert_eq!(p.steps[0].hazards, [Hazard::BreakingChange]);
    assert!(
        p.steps[1]
            .sql
            .starts_with("CREATE OR REPLACE FUNCTION public.f(a integer)\n RETURNS bigint")
    );
    assert_eq!(
        p.steps[2].sql,
        "COMMENT ON FUNCTION public.f(a integer) IS 'widened'"
    );

    // Same result type, new body: replaced in place.
    let mut body = cur.clone();
    body.functions.get_mut(&fid("public.f", "a integer")).unwrap().definition =
        "CREATE OR REPLACE FUNCTION public.f(a integer)\n RETURNS integer\n LANGUAGE sql\nAS $function$ select a + 1 $function$\n".into();
    let p = plan_online(&cur, &body);
    assert_eq!(p.steps.len(), 1);
    assert!(
        p.steps[0].sql.starts_with("CREATE OR REPLACE FUNCTION") && p.steps[0].hazards.is_empty()
    );

    // Gone: dropped at the end, breaking.
    let p = plan_online(&cur, &model());
    assert_eq!(sqls(&p), ["DROP FUNCTION public.f(a integer)"]);
    assert_eq!(p.steps[0].hazards, [Hazard::BreakingChange]);
}

#[test]
fn policy_change_drops_and_creates() {
    let cur = rich_model();
    let mut des = cur.clone();
    let mut pol = policy("SELECT", "(id = current_setting('app.user')::bigint)");
    pol.permissive = false;
    pol.roles = vec!["app_user".into(), "Reader".into()];
    pol.with_check = None;
    table_mut(&mut des, "public.users")
        .policies
        .insert("own".into(), pol);
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        [
            "DROP POLICY own ON public.users",
            "CREATE POLICY own ON public.users AS RESTRICTIVE FOR SELECT TO app_user, \"Reader\" USING ((id = current_setting('app.user')::bigint))",
        ]
    );
}

#[test]
fn rls_and_trigger_state_are_altered_in_place() {
    let cur = rich_model();
    let mut des = cur.clone();
    let users = table_mut(&mut des, "public.users");
    users.rls_forced = true;
    users.triggers.get_mut("t_upd").unwrap().enabled = "D".into();
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        [
            "ALTER TABLE public.users DISABLE TRIGGER t_upd",
            "ALTER TABLE public.users FORCE ROW LEVEL SECURITY",
        ]
    );
}

#[test]
fn comment_change() {
    let cur = with_table(model(), "public.t", table(&[("a", "text")]));
    let mut des = cur.clone();
    table_mut(&mut des, "public.t")
        .columns
        .get_mut("a")
        .unwrap()
        .comment = Some("it's".into());
    let p = plan_online(&cur, &des);
    assert_eq!(sqls(&p), ["COMMENT ON COLUMN public.t.a IS 'it''s'"]);
    assert_eq!(p.steps[0].description, "set comment on column public.t.a");
    let p = plan_online(&des, &cur);
    assert_eq!(sqls(&p), ["COMMENT ON COLUMN public.t.a IS NULL"]);
}

#[test]
fn hostile_identifiers_are_quoted() {
    let long = "ñ".repeat(31); // 62 bytes
    let schema = "My Schema";
    let tname = format!("{schema}.select");
    let mut t = table(&[("we\"ird", "text"), (long.as_str(), "integer")]);
    t.comment = Some("Robert'); DROP TABLE students;--".into());
    t.indexes.insert(
        long.clone(),
        index(&format!(
            "CREATE INDEX \"{long}\" ON \"My Schema\".\"select\" USING btree (\"{long}\")"
        )),
    );
    let mut des = model();
    des.schemas.insert(schema.into(), Namespace::default());
    des.enums
        .insert(qn("My Schema.Mood"), enum_type(&["it's", "fine"]));
    des.tables.insert(qn(&tname), t);
    let p = plan_online(&model(), &des);
    let sql = p.to_sql();
    assert!(sql.contains("CREATE SCHEMA \"My Schema\""), "{sql}");
    assert!(
        sql.contains("CREATE TYPE \"My Schema\".\"Mood\" AS ENUM ('it''s', 'fine')"),
        "{sql}"
    );
    assert!(sql.contains(&format!(
        "CREATE TABLE \"My Schema\".\"select\" (\n    \"we\"\"ird\" text,\n    \"{long}\" integer\n)"
    )), "{sql}");
    assert!(
        sql.contains("IS 'Robert''); DROP TABLE students;--'"),
        "{sql}"
    );

    // Changing the index builds it under a temporary name that still fits 63 bytes.
    let mut changed = des.clone();
    table_mut(&mut changed, &tname)
        .indexes
        .get_mut(&long)
        .unwrap()
        .definition =
        format!("CREATE INDEX \"{long}\" ON \"My Schema\".\"select\" USING hash (\"{long}\")");
    let p = plan_online(&des, &changed);
    let tmp = render::temp_name(&long, render::NEW_INDEX_SUFFIX);
    assert!(tmp.len() <= 63);
    assert_eq!(
        sqls(&p),
        [
            format!("CREATE INDEX CONCURRENTLY IF NOT EXISTS \"{tmp}\" ON \"My Schema\".\"select\" USING hash (\"{long}\")").as_str(),
            format!("DROP INDEX CONCURRENTLY IF EXISTS \"My Schema\".\"{long}\"").as_str(),
            format!("ALTER INDEX \"My Schema\".\"{tmp}\" RENAME TO \"{long}\"").as_str(),
        ]
    );
}

#[test]
fn tables_are_dropped_referencing_first_and_partitions_created_after_parents() {
    let mut des = model();
    des.tables.insert(
        qn("public.a_events"),
        partitioned(&[("d", "date")], "RANGE (d)"),
    );
    des.tables.insert(
        qn("public.a_events_2024"),
        partition(
            "public.a_events",
            "FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
        ),
    );
    des.tables.insert(
        qn("public.a_events_default"),
        partition("public.a_events", "DEFAULT"),
    );
    let mut child = table(&[("id", "integer"), ("p", "integer")]);
    child.constraints.insert(
        "c_p_fkey".into(),
        fk(
            "FOREIGN KEY (p) REFERENCES public.z_parent(id)",
            "public.z_parent",
        ),
    );
    let mut parent = table(&[("id", "integer")]);
    parent.constraints.insert(
        "z_parent_pkey".into(),
        constraint(ConstraintKind::PrimaryKey, "PRIMARY KEY (id)"),
    );
    des.tables.insert(qn("public.b_child"), child);
    des.tables.insert(qn("public.z_parent"), parent);
    let p = plan_online(&model(), &des);
    assert!(
        pos(&p, "CREATE TABLE public.a_events ")
            < pos(
                &p,
                "CREATE TABLE public.a_events_2024 PARTITION OF public.a_events FOR VALUES"
            )
    );
    assert!(pos(&p, "PRIMARY KEY") < pos(&p, "FOREIGN KEY"));
    assert_eq!(
        step(&p, "a_events_default").sql,
        "CREATE TABLE public.a_events_default PARTITION OF public.a_events DEFAULT"
    );
    let back = plan_online(&des, &model());
    assert!(pos(&back, "DROP TABLE public.b_child") < pos(&back, "DROP TABLE public.z_parent"));
    let parent = back
        .steps
        .iter()
        .position(|s| s.sql == "DROP TABLE public.a_events")
        .unwrap();
    assert!(pos(&back, "DROP TABLE public.a_events_2024") < parent);
    assert!(pos(&back, "DROP TABLE public.a_events_default") < parent);
}

#[test]
fn partition_bound_change_detaches_and_attaches() {
    let mut cur = model();
    cur.tables
        .insert(qn("public.e"), partitioned(&[("d", "date")], "RANGE (d)"));
    cur.tables.insert(
        qn("public.e1"),
        partition(
            "public.e",
            "FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
        ),
    );
    let mut des = cur.clone();
    table_mut(&mut des, "public.e1")
        .partition_of
        .as_mut()
        .unwrap()
        .bound = "FOR VALUES FROM ('2024-01-01') TO ('2026-01-01')".into();
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        [
            "ALTER TABLE public.e DETACH PARTITION public.e1",
            "ALTER TABLE public.e ATTACH PARTITION public.e1 FOR VALUES FROM ('2024-01-01') TO ('2026-01-01')",
        ]
    );
}

#[test]
fn replaced_table_is_dropped_before_it_is_created_and_foreign_keys_follow() {
    let mut cur = model();
    cur.tables
        .insert(qn("public.p"), table(&[("id", "integer")]));
    table_mut(&mut cur, "public.p").constraints.insert(
        "p_pkey".into(),
        constraint(ConstraintKind::PrimaryKey, "PRIMARY KEY (id)"),
    );
    let mut r = table(&[("p", "integer")]);
    r.constraints.insert(
        "r_p_fkey".into(),
        fk("FOREIGN KEY (p) REFERENCES public.p(id)", "public.p"),
    );
    cur.tables.insert(qn("public.r"), r);
    let mut des = cur.clone();
    let p_des = table_mut(&mut des, "public.p");
    p_des.kind = crate::model::TableKind::Partitioned;
    p_des.partition_key = Some("HASH (id)".into());
    let p = plan_online(&cur, &des);
    let order = [
        "ALTER TABLE public.r DROP CONSTRAINT r_p_fkey",
        "DROP TABLE public.p",
        "CREATE TABLE public.p (",
        "ADD CONSTRAINT p_pkey",
        "ADD CONSTRAINT r_p_fkey",
        "VALIDATE CONSTRAINT r_p_fkey",
    ];
    let positions: Vec<usize> = order.iter().map(|n| pos(&p, n)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{}", p.to_sql());
    assert!(
        step(&p, "DROP TABLE public.p")
            .hazards
            .contains(&Hazard::DataLoss)
    );
}

#[test]
fn sequences_are_released_before_their_owner_is_dropped() {
    let des = rich_model();
    let mut cur = des.clone();
    // The sequence survives but its owning column goes away.
    table_mut(&mut cur, "public.users")
        .columns
        .insert("old".into(), col(9, "bigint"));
    cur.sequences
        .get_mut(&qn("public.users_n_seq"))
        .unwrap()
        .owned_by = Some((qn("public.users"), "old".into()));
    let p = plan_online(&cur, &des);
    assert!(
        pos(&p, "OWNED BY NONE") < pos(&p, "DROP COLUMN old"),
        "{}",
        p.to_sql()
    );
    assert!(
        pos(&p, "DROP COLUMN old") < pos(&p, "OWNED BY public.users.n"),
        "{}",
        p.to_sql()
    );
}

#[test]
fn domains_are_altered_in_place_or_swapped() {
    let mut cur = model();
    let mut d = domain("integer");
    d.checks.insert("pos".into(), "CHECK ((VALUE > 0))".into());
    cur.domains.insert(qn("public.posint"), d);
    let mut des = cur.clone();
    let dd = des.domains.get_mut(&qn("public.posint")).unwrap();
    dd.not_null = true;
    dd.default = Some("1".into());
    dd.checks
        .insert("pos".into(), "CHECK ((VALUE >= 1))".into());
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        [
            "ALTER DOMAIN public.posint SET DEFAULT 1",
            "ALTER DOMAIN public.posint SET NOT NULL",
            "ALTER DOMAIN public.posint DROP CONSTRAINT pos",
            "ALTER DOMAIN public.posint ADD CONSTRAINT pos CHECK ((VALUE >= 1))",
        ]
    );
    // A new base type swaps the domain under the columns that use it.
    cur.tables
        .insert(qn("public.t"), table(&[("n", "public.posint")]));
    let mut des = cur.clone();
    des.domains.get_mut(&qn("public.posint")).unwrap().base_type = "bigint".into();
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        [
            "ALTER DOMAIN public.posint RENAME TO posint_pgfleet_old",
            "CREATE DOMAIN public.posint AS bigint CONSTRAINT pos CHECK ((VALUE > 0))",
            "ALTER TABLE public.t ALTER COLUMN n TYPE public.posint",
            "DROP DOMAIN public.posint_pgfleet_old",
        ]
    );
    // integer → bigint loses nothing, but the domain's check runs on every value again.
    assert_eq!(
        step(&p, "ALTER TABLE").hazards,
        [Hazard::MayFail, Hazard::TableRewrite, Hazard::LongLock]
    );
    // A base type that rounds: data_loss; one with no assignment cast: an explicit cast.
    let mut des = cur.clone();
    des.domains.get_mut(&qn("public.posint")).unwrap().base_type = "numeric(3,0)".into();
    let mut from_numeric = cur.clone();
    from_numeric
        .domains
        .get_mut(&qn("public.posint"))
        .unwrap()
        .base_type = "numeric(5,2)".into();
    let p = plan_online(&from_numeric, &des);
    assert_eq!(
        step(&p, "ALTER TABLE").sql,
        "ALTER TABLE public.t ALTER COLUMN n TYPE public.posint"
    );
    assert!(step(&p, "ALTER TABLE").hazards.contains(&Hazard::DataLoss));
    let mut from_text = cur.clone();
    from_text
        .domains
        .get_mut(&qn("public.posint"))
        .unwrap()
        .base_type = "text".into();
    let p = plan_online(&from_text, &cur);
    assert_eq!(
        step(&p, "ALTER TABLE").sql,
        "ALTER TABLE public.t ALTER COLUMN n TYPE public.posint USING n::public.posint"
    );
    assert_eq!(
        step(&p, "ALTER TABLE").hazards,
        [Hazard::MayFail, Hazard::TableRewrite, Hazard::LongLock]
    );
}

#[test]
fn extensions_and_schemas() {
    let mut cur = model();
    cur.extensions.insert(
        "citext".into(),
        Extension {
            schema: "public".into(),
            version: "1.6".into(),
            comment: None,
        },
    );
    let mut des = cur.clone();
    des.schemas.insert("ext".into(), Namespace::default());
    des.extensions.get_mut("citext").unwrap().schema = "ext".into();
    des.extensions.insert(
        "uuid-ossp".into(),
        Extension {
            schema: "ext".into(),
            version: "1.1".into(),
            comment: None,
        },
    );
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        [
            "CREATE SCHEMA ext",
            "CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\" WITH SCHEMA ext",
            "ALTER EXTENSION citext SET SCHEMA ext",
        ]
    );
}

#[test]
fn offline_plans_stay_in_one_transaction() {
    let cur = rich_model();
    let mut des = cur.clone();
    table_mut(&mut des, "public.docs").indexes.insert(
        "docs_user_idx".into(),
        index("CREATE INDEX docs_user_idx ON public.docs USING btree (user_id)"),
    );
    table_mut(&mut des, "public.users").constraints.insert(
        "users_email_check".into(),
        constraint(ConstraintKind::Check, "CHECK ((email <> ''::text))"),
    );
    let p = plan_offline(&cur, &des);
    assert_eq!(p.steps.len(), 2, "{}", p.to_sql());
    assert!(p.steps.iter().all(|s| s.transactional));
    let online = plan_online(&cur, &des);
    assert_eq!(online.steps.len(), 3, "{}", online.to_sql());
}

fn additive_plan(cur: &Model, des: &Model) -> Plan {
    plan(
        cur,
        des,
        &PlanOptions {
            additive_only: true,
            ..PlanOptions::default()
        },
    )
}

#[test]
fn additive_only_plans_only_create() {
    let cur = rich_model();
    let mut des = cur.clone();
    des.tables.remove(&qn("public.docs"));
    des.views.clear();
    table_mut(&mut des, "public.users")
        .columns
        .get_mut("email")
        .unwrap()
        .data_type = "citext".into();
    table_mut(&mut des, "public.users")
        .columns
        .insert("name".into(), col(4, "text"));
    let mut threads = table(&[("id", "bigint")]);
    threads.rls_enabled = true;
    des.tables.insert(qn("public.chat_threads"), threads);
    assert_eq!(
        sqls(&additive_plan(&cur, &des)),
        [
            "CREATE TABLE public.chat_threads (\n    id bigint\n)",
            "ALTER TABLE public.users ADD COLUMN name text",
            "ALTER TABLE public.chat_threads ENABLE ROW LEVEL SECURITY",
        ]
    );
}

#[test]
fn plans_are_deterministic() {
    let des = rich_model();
    let a = plan_online(&model(), &des);
    let b = plan_online(&model(), &des.clone());
    assert_eq!(a, b);
}

#[test]
fn diff_plan_of_1000_identical_tables_is_empty() {
    let mut m = model();
    for i in 0..1000 {
        let name = format!("t{i:04}");
        let mut t = table(&[
            ("id", "bigint"),
            ("user_id", "bigint"),
            ("body", "text"),
            ("e", "public.vector(384)"),
        ]);
        t.constraints.insert(
            format!("{name}_pkey"),
            constraint(ConstraintKind::PrimaryKey, "PRIMARY KEY (id)"),
        );
        if i > 0 {
            t.constraints.insert(
                format!("{name}_user_id_fkey"),
                fk(
                    &format!("FOREIGN KEY (user_id) REFERENCES public.t{:04}(id)", i - 1),
                    &format!("public.t{:04}", i - 1),
                ),
            );
        }
        t.indexes.insert(
            format!("{name}_e_idx"),
            index(&format!(
                "CREATE INDEX {name}_e_idx ON public.{name} USING hnsw (e public.vector_cosine_ops)"
            )),
        );
        m.tables.insert(QualName::new("public", name), t);
    }
    let copy = m.clone();
    assert!(diff(&m, &copy).is_empty());
    assert!(plan_online(&m, &copy).is_empty());
    // And from scratch it plans every table.
    let p = plan_online(&model(), &m);
    assert_eq!(
        p.steps
            .iter()
            .filter(|s| s.sql.starts_with("CREATE TABLE"))
            .count(),
        1000
    );
}

#[test]
fn indexes_and_checks_on_a_swapped_enum_column_are_rebuilt_around_the_swap() {
    let mut cur = model();
    cur.enums
        .insert(qn("public.mood"), enum_type(&["happy", "sad", "meh"]));
    let mut t = table(&[("id", "integer"), ("m", "public.mood")]);
    t.indexes.insert(
        "t_happy_idx".into(),
        index("CREATE INDEX t_happy_idx ON public.t USING btree (id) WHERE (m = 'happy'::public.mood)"),
    );
    t.constraints.insert(
        "t_m_check".into(),
        constraint(ConstraintKind::Check, "CHECK ((m <> 'sad'::public.mood))"),
    );
    cur.tables.insert(qn("public.t"), t);
    let mut des = cur.clone();
    des.enums
        .insert(qn("public.mood"), enum_type(&["happy", "sad"]));
    let p = plan_online(&cur, &des);
    let convert = pos(&p, "ALTER COLUMN m TYPE public.mood");
    assert!(
        pos(&p, "DROP CONSTRAINT t_m_check") < convert,
        "{}",
        p.to_sql()
    );
    assert!(
        pos(&p, "DROP INDEX public.t_happy_idx") < convert,
        "{}",
        p.to_sql()
    );
    assert!(
        pos(&p, "ADD CONSTRAINT t_m_check") > convert,
        "{}",
        p.to_sql()
    );
    assert!(pos(&p, "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_happy_idx") > convert);
}

#[test]
fn unique_index_referenced_by_a_new_foreign_key_is_built_first_in_the_transaction() {
    let cur = with_table(
        with_table(model(), "public.a", table(&[("code", "text")])),
        "public.b",
        table(&[("a_code", "text")]),
    );
    let mut des = cur.clone();
    table_mut(&mut des, "public.a").indexes.insert(
        "a_code_key".into(),
        index("CREATE UNIQUE INDEX a_code_key ON public.a USING btree (code)"),
    );
    table_mut(&mut des, "public.b").constraints.insert(
        "b_a_code_fkey".into(),
        fk("FOREIGN KEY (a_code) REFERENCES public.a(code)", "public.a"),
    );
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        [
            "CREATE UNIQUE INDEX a_code_key ON public.a USING btree (code)",
            "ALTER TABLE public.b ADD CONSTRAINT b_a_code_fkey FOREIGN KEY (a_code) REFERENCES public.a(code) NOT VALID",
            "ALTER TABLE public.b VALIDATE CONSTRAINT b_a_code_fkey",
        ]
    );
}

#[test]
fn functions_come_before_domains_unless_they_use_them() {
    let mut des = model();
    let mut d = domain("text");
    d.checks
        .insert("email".into(), "CHECK (public.is_email(VALUE))".into());
    des.domains.insert(qn("public.email"), d);
    des.functions.insert(
        fid("public.is_email", "v text"),
        function("CREATE OR REPLACE FUNCTION public.is_email(v text)\n RETURNS boolean\n LANGUAGE sql\nAS $function$ select v like '%@%' $function$\n", "boolean"),
    );
    des.functions.insert(
        fid("public.domain_of", "e public.email"),
        function("CREATE OR REPLACE FUNCTION public.domain_of(e public.email)\n RETURNS text\n LANGUAGE sql\nAS $function$ select split_part(e, '@', 2) $function$\n", "text"),
    );
    des.tables
        .insert(qn("public.users"), table(&[("id", "integer")]));
    des.functions.insert(
        fid("public.first_user", ""),
        function("CREATE OR REPLACE FUNCTION public.first_user()\n RETURNS SETOF public.users\n LANGUAGE sql\nAS $function$ select * from public.users limit 1 $function$\n", "SETOF public.users"),
    );
    let p = plan_online(&model(), &des);
    assert!(pos(&p, "FUNCTION public.is_email") < pos(&p, "CREATE DOMAIN public.email"));
    assert!(pos(&p, "CREATE DOMAIN public.email") < pos(&p, "FUNCTION public.domain_of"));
    assert!(pos(&p, "CREATE TABLE public.users") < pos(&p, "FUNCTION public.first_user"));
}

#[test]
fn recreated_materialized_view_gets_its_indexes_back() {
    let mut cur = with_table(
        model(),
        "public.t",
        table(&[("id", "integer"), ("n", "integer")]),
    );
    let mut mv = view(
        " SELECT id, n FROM public.t;",
        &[("id", "integer"), ("n", "integer")],
        &["public.t"],
    );
    mv.materialized = true;
    mv.indexes.insert(
        "mv_id_idx".into(),
        index("CREATE UNIQUE INDEX mv_id_idx ON public.mv USING btree (id)"),
    );
    cur.views.insert(qn("public.mv"), mv);
    let mut des = cur.clone();
    table_mut(&mut des, "public.t").columns.remove("n");
    let dmv = des.views.get_mut(&qn("public.mv")).unwrap();
    dmv.definition = " SELECT id FROM public.t;".into();
    dmv.columns.pop();
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        [
            "DROP MATERIALIZED VIEW public.mv",
            "ALTER TABLE public.t DROP COLUMN n",
            "CREATE MATERIALIZED VIEW public.mv AS\nSELECT id FROM public.t",
            "CREATE UNIQUE INDEX mv_id_idx ON public.mv USING btree (id)",
        ]
    );
    assert!(p.steps.iter().all(|s| s.transactional));
}

#[test]
fn collation_changes() {
    let mut t = table(&[("a", "text")]);
    t.columns.get_mut("a").unwrap().collation = Some("pg_catalog.\"C\"".into());
    let cur = with_table(model(), "public.t", t);
    let mut des = cur.clone();
    table_mut(&mut des, "public.t")
        .columns
        .get_mut("a")
        .unwrap()
        .collation = None;
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        ["ALTER TABLE public.t ALTER COLUMN a TYPE text COLLATE pg_catalog.\"default\""]
    );
    assert_eq!(p.steps[0].hazards, [Hazard::LongLock]);
    // To a type without collations: no COLLATE at all.
    let c = table_mut(&mut des, "public.t")
        .columns
        .get_mut("a")
        .unwrap();
    c.data_type = "integer".into();
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        ["ALTER TABLE public.t ALTER COLUMN a TYPE integer USING a::integer"]
    );
    // Comments on constraints describe the table in words.
    let mut commented = cur.clone();
    let mut pk = constraint(ConstraintKind::PrimaryKey, "PRIMARY KEY (a)");
    pk.comment = Some("key".into());
    table_mut(&mut commented, "public.t")
        .constraints
        .insert("t_pkey".into(), pk);
    let p = plan_online(&cur, &commented);
    let s = step(&p, "COMMENT ON");
    assert_eq!(s.sql, "COMMENT ON CONSTRAINT t_pkey ON public.t IS 'key'");
    assert_eq!(
        s.description,
        "set comment on constraint t_pkey on public.t"
    );
}

#[test]
fn partitions_of_a_referenced_table_are_detached_before_they_are_dropped() {
    let mut cur = model();
    let mut events = partitioned(&[("id", "bigint"), ("at", "date")], "RANGE (at)");
    events.constraints.insert(
        "events_pkey".into(),
        constraint(ConstraintKind::PrimaryKey, "PRIMARY KEY (id, at)"),
    );
    cur.tables.insert(qn("public.events"), events);
    cur.tables.insert(
        qn("public.events_2024"),
        partition(
            "public.events",
            "FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
        ),
    );
    let mut refs = table(&[("id", "bigint"), ("at", "date")]);
    refs.constraints.insert(
        "refs_fkey".into(),
        fk(
            "FOREIGN KEY (id, at) REFERENCES public.events(id, at)",
            "public.events",
        ),
    );
    cur.tables.insert(qn("public.refs"), refs);
    // The partition goes, a new one overlapping it comes: drop (after detaching) first.
    let mut des = cur.clone();
    des.tables.remove(&qn("public.events_2024"));
    des.tables.insert(
        qn("public.events_2024h1"),
        partition(
            "public.events",
            "FOR VALUES FROM ('2024-01-01') TO ('2024-07-01')",
        ),
    );
    let p = plan_online(&cur, &des);
    assert_eq!(
        sqls(&p),
        [
            "ALTER TABLE public.events DETACH PARTITION public.events_2024",
            "DROP TABLE public.events_2024",
            "CREATE TABLE public.events_2024h1 PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2024-07-01')",
        ]
    );
    // Everything goes: the referencing table before the partitions of what it references.
    let p = plan_online(&cur, &model());
    assert!(pos(&p, "DROP TABLE public.refs") < pos(&p, "DROP TABLE public.events_2024"));
    assert!(!p.to_sql().contains("DETACH"));
}

#[test]
fn sql_standard_function_bodies_are_dropped_before_their_tables() {
    let mut cur = with_table(model(), "public.items", table(&[("id", "integer")]));
    cur.functions.insert(
        fid("public.ids", ""),
        function(
            "CREATE OR REPLACE FUNCTION public.ids()\n RETURNS SETOF integer\n LANGUAGE sql\nBEGIN ATOMIC\n SELECT items.id FROM public.items;\nEND\n",
            "SETOF integer",
        ),
    );
    let p = plan_online(&cur, &model());
    assert!(pos(&p, "DROP FUNCTION public.ids()") < pos(&p, "DROP TABLE public.items"));
    let p = plan_online(&model(), &cur);
    assert!(pos(&p, "CREATE TABLE public.items") < pos(&p, "FUNCTION public.ids()"));
}

#[test]
fn additive_repairs_bring_the_comments_of_what_they_create_and_leave_changed_comments() {
    let cur = rich_model();
    let mut des = cur.clone();
    let mut notes = table(&[("id", "bigint")]);
    notes.comment = Some("Notes of a user.".into());
    des.tables.insert(qn("public.notes"), notes);
    // A changed comment on an existing table is drift a repair does not touch.
    table_mut(&mut des, "public.users").comment = Some("Edited.".into());
    assert_eq!(
        sqls(&additive_plan(&cur, &des)),
        [
            "CREATE TABLE public.notes (\n    id bigint\n)",
            "COMMENT ON TABLE public.notes IS 'Notes of a user.'",
        ]
    );
}

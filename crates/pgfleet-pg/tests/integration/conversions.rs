//! Column type conversions on a real server: for each pair of the matrix, a row whose value does not
//! fit the new type is converted by the plan the planner writes, and what PostgreSQL does to it must
//! match the hazard the planner gave the step (this is what proves the planner's conversion table):
//!
//! - no hazard: the value converts and reads back (cast to the old type) as it was;
//! - `may_fail`: the apply fails, the row and the column type stay exactly as they were, and a value
//!   that fits then converts (so the failure was the value's, not a wrong `USING`);
//! - `data_loss`: the value may change silently (each row here shows that it does, or that it fails).

use std::collections::BTreeSet;

use pgfleet_pg::apply::{self, ApplyError, ApplyOptions};
use pgfleet_pg::introspect;
use pgfleet_schema::planner::{self, PlanOptions};
use pgfleet_schema::{Hazard, Model, Plan, QualName};
use pgfleet_testkit::TestDb;
use tokio_postgres::Client;

use super::converge::{converge_to, desired};

/// The hazard a conversion should carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Safe,
    MayFail,
    DataLoss,
}

impl Class {
    fn hazard(self) -> Option<Hazard> {
        match self {
            Class::Safe => None,
            Class::MayFail => Some(Hazard::MayFail),
            Class::DataLoss => Some(Hazard::DataLoss),
        }
    }
}

/// What the server did to the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Converted; cast back to the old type it reads as before.
    Kept,
    /// Converted; cast back to the old type it reads differently: the value changed silently.
    Changed,
    /// The apply failed.
    Failed,
}

struct Case {
    from: &'static str,
    to: &'static str,
    /// The value stored before the change (an SQL expression).
    value: &'static str,
    /// For rows that fail: a value that fits, which must then convert and keep its meaning.
    fits: Option<&'static str>,
    class: Class,
    outcome: Outcome,
}

const fn case(
    from: &'static str,
    to: &'static str,
    value: &'static str,
    fits: Option<&'static str>,
    class: Class,
    outcome: Outcome,
) -> Case {
    Case {
        from,
        to,
        value,
        fits,
        class,
        outcome,
    }
}

use Class::{DataLoss, MayFail, Safe};
use Outcome::{Changed, Failed, Kept};

#[rustfmt::skip]
const MATRIX: &[Case] = &[
    // The review's case: no longer truncated to 'lon', PostgreSQL refuses the long value ...
    case("text", "varchar(3)", "'longer-email@example.com'", Some("'abc'"), DataLoss, Failed),
    // ... but cuts trailing spaces beyond the length silently: still data_loss.
    case("text", "varchar(3)", "'abc   '", None, DataLoss, Changed),
    case("varchar(10)", "varchar(3)", "'abcd'", Some("'abc'"), DataLoss, Failed),
    case("varchar(10)", "varchar(3)", "'ab    '", None, DataLoss, Changed),
    case("char(10)", "char(3)", "'abcd'", Some("'abc'"), MayFail, Failed),
    case("text", "char(5)", "'ab '", None, DataLoss, Changed),
    case("numeric(10,2)", "numeric(10,0)", "1.55", None, DataLoss, Changed),
    case("numeric(10,2)", "numeric(9,2)", "12345678.55", Some("1234567.55"), MayFail, Failed),
    case("numeric(10,2)", "numeric(12,2)", "12345678.55", None, Safe, Kept),
    case("numeric", "integer", "1.5", None, DataLoss, Changed),
    case("float8", "integer", "1.5", None, DataLoss, Changed),
    case("float8", "float4", "0.1", None, DataLoss, Changed),
    case("float4", "float8", "0.1", None, Safe, Kept),
    case("numeric", "float8", "0.1000000000000000000001", None, DataLoss, Changed),
    case("int8", "float4", "16777217", None, DataLoss, Changed),
    case("timestamptz", "date", "'2024-01-01 12:34:56+00'", None, DataLoss, Changed),
    // The session is in America/New_York: 01:30 EDT becomes 01:30, which reads back as EST.
    case("timestamptz", "timestamp", "'2024-11-03 05:30:00+00'", None, DataLoss, Changed),
    // 02:30 does not exist on that day in New York.
    case("timestamp", "timestamptz", "'2024-03-10 02:30:00'", None, DataLoss, Changed),
    case("timestamp(6)", "timestamp(0)", "'2024-01-01 12:00:00.6'", None, DataLoss, Changed),
    case("time(6)", "time(0)", "'12:00:00.6'", None, DataLoss, Changed),
    case("time", "timetz", "'12:00:00'", None, Safe, Kept),
    case("date", "timestamptz", "'2024-03-10'", None, Safe, Kept),
    case("interval", "interval(0)", "'1 day 00:00:00.6'", None, DataLoss, Changed),
    case("json", "jsonb", r#"'{"a": 1, "a": 2}'"#, None, DataLoss, Changed),
    case("jsonb", "json", r#"'{"a": 1}'"#, None, Safe, Kept),
    case("text", "integer", "'12.5'", Some("'12'"), MayFail, Failed),
    case("text", "uuid", "'not a uuid'", Some("'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"), MayFail, Failed),
    case("text", "mood", "'angry'", Some("'sad'"), MayFail, Failed),
    case("text", "boolean", "'maybe'", Some("'true'"), MayFail, Failed),
    case("text", "numeric(5,2)", "'1.005'", None, DataLoss, Changed),
    case("text", "date", "'2024-01-01 12:00'", None, DataLoss, Changed),
    case("text", "jsonb", r#"'{"a": 1, "a": 2}'"#, None, DataLoss, Changed),
    case("text[]", "varchar(3)[]", "'{abcd}'", Some("'{abc}'"), DataLoss, Failed),
    case("text[]", "integer[]", "'{1,x}'", Some("'{1,2}'"), MayFail, Failed),
    case("int8", "int4", "3000000000", Some("42"), MayFail, Failed),
    case("int4", "int8", "2147483647", None, Safe, Kept),
    case("int4", "numeric", "2147483647", None, Safe, Kept),
    case("int4", "numeric(9,0)", "2147483647", Some("123456789"), MayFail, Failed),
    case("int4", "varchar(3)", "12345", Some("123"), MayFail, Failed),
    case("int4", "posint", "-1", Some("1"), MayFail, Failed),
    case("varchar(3)", "text", "'ab '", None, Safe, Kept),
    case("varchar(3)", "varchar(10)", "'ab '", None, Safe, Kept),
    case("char(3)", "varchar(3)", "'ab'", None, Safe, Kept),
    case("mood", "text", "'sad'", None, Safe, Kept),
    // Unknown to the planner: the explicit cast, and data_loss. Here it does change the value.
    case("inet", "cidr", "'10.0.0.1/8'", None, DataLoss, Changed),
];

const TYPES: &str = "CREATE TYPE mood AS ENUM ('happy', 'sad');
                     CREATE DOMAIN posint AS integer CHECK (VALUE > 0);";

fn table(i: usize) -> String {
    format!("c{i:02}")
}

async fn text(client: &Client, sql: &str) -> String {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

/// The type of `v` in table `t`, as `format_type` prints it.
async fn column_type(client: &Client, t: &str) -> String {
    text(
        client,
        &format!("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'public.{t}'::regclass AND attname = 'v'"),
    )
    .await
}

/// `current` with only column `v` of table `t` changed to its type in `want`.
fn with_type_of(current: &Model, want: &Model, t: &str) -> Model {
    let name = QualName::new("public", t);
    let mut m = current.clone();
    m.tables
        .get_mut(&name)
        .unwrap()
        .columns
        .get_mut("v")
        .unwrap()
        .data_type = want.tables[&name].columns["v"].data_type.clone();
    m
}

/// Runs one case; returns what went wrong, if anything.
async fn run(client: &Client, want: &Model, i: usize, c: &Case) -> Vec<String> {
    let t = table(i);
    let mut wrong = Vec::new();
    let current = introspect::introspect(client).await.unwrap();
    let target = with_type_of(&current, want, &t);
    let plan = planner::plan(&current, &target, &PlanOptions::default());

    // The plan: one type change, with the class's hazard.
    let expected: Vec<Hazard> = c
        .class
        .hazard()
        .into_iter()
        .chain([Hazard::TableRewrite, Hazard::LongLock])
        .collect();
    match &plan.steps[..] {
        [s] if s.description.starts_with("change type of column") => {
            if s.hazards != expected {
                wrong.push(format!("hazards {:?}, want {expected:?}", s.hazards));
            }
        }
        _ => wrong.push(format!("not one type change:\n{}", plan.to_sql())),
    }

    // (a) Without consent to that hazard, the plan is refused (the CLI's check) and nothing ran.
    let before = text(client, &format!("SELECT v::text FROM {t}")).await;
    let allowed: BTreeSet<Hazard> = Hazard::ALL
        .into_iter()
        .filter(|h| Some(*h) != c.class.hazard())
        .collect();
    let refused = plan.disallowed_hazards(&allowed);
    if refused != c.class.hazard().into_iter().collect() {
        wrong.push(format!("refused {refused:?}"));
    }

    // (b) With consent.
    let from_type = column_type(client, &t).await;
    let outcome = match apply_to(client, &plan, &target).await {
        Ok(()) => {
            let back = text(client, &format!("SELECT v::{}::text FROM {t}", c.from)).await;
            if back == before { Kept } else { Changed }
        }
        Err(e) => {
            let after = text(client, &format!("SELECT v::text FROM {t}")).await;
            if after != before {
                wrong.push(format!(
                    "failed, yet the value changed: {before:?} -> {after:?}"
                ));
            }
            if column_type(client, &t).await != from_type {
                wrong.push("failed, yet the column type changed".into());
            }
            if e.contains("cast") {
                wrong.push(format!(
                    "failed on the conversion itself, not on the value: {e}"
                ));
            }
            Failed
        }
    };
    let consistent = match c.class {
        Safe => outcome == Kept,
        MayFail => outcome == Failed,
        DataLoss => outcome != Kept,
    };
    if !consistent || outcome != c.outcome {
        wrong.push(format!(
            "observed {outcome:?} ({before:?}), declared {:?} for class {:?}",
            c.outcome, c.class
        ));
    }

    // A value that fits converts with the same plan and keeps its meaning.
    if let Some(fits) = c.fits.filter(|_| outcome == Failed) {
        client
            .batch_execute(&format!("UPDATE {t} SET v = {fits}"))
            .await
            .unwrap();
        let before = text(client, &format!("SELECT v::text FROM {t}")).await;
        match apply_to(client, &plan, &target).await {
            Ok(()) => {
                let back = text(client, &format!("SELECT v::{}::text FROM {t}", c.from)).await;
                if back != before {
                    wrong.push(format!("a value that fits changed: {before:?} -> {back:?}"));
                }
            }
            Err(e) => wrong.push(format!("a value that fits failed: {e}")),
        }
    }
    wrong
        .into_iter()
        .map(|w| format!("{} -> {} ({}): {w}", c.from, c.to, c.value))
        .collect()
}

/// Applies `plan` and checks it converged to `target`; the error message on failure.
async fn apply_to(client: &Client, plan: &Plan, target: &Model) -> Result<(), String> {
    match apply::apply_and_verify(client, plan, target, &ApplyOptions::default(), |_| {}).await {
        Ok(()) => Ok(()),
        Err(e @ ApplyError::Step { .. }) => Err(e.to_string()),
        Err(e) => panic!("{e}\n{}", plan.to_sql()),
    }
}

#[tokio::test]
async fn every_conversion_does_what_its_hazard_says() {
    let db = TestDb::new().await;
    let client = db.connect().await;
    let mut from = String::from(TYPES);
    let mut to = String::from(TYPES);
    for (i, c) in MATRIX.iter().enumerate() {
        let t = table(i);
        from.push_str(&format!(
            "\nCREATE TABLE {t} (v {}); INSERT INTO {t} VALUES ({});",
            c.from, c.value
        ));
        to.push_str(&format!("\nCREATE TABLE {t} (v {});", c.to));
    }
    client.batch_execute(&from).await.unwrap();
    let want = desired(&db, &to).await;
    // Time zone conversions depend on the session's zone; UTC would hide what they do.
    client
        .batch_execute("SET TimeZone = 'America/New_York'")
        .await
        .unwrap();
    let mut wrong = Vec::new();
    for (i, c) in MATRIX.iter().enumerate() {
        wrong.extend(run(&client, &want, i, c).await);
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[tokio::test]
async fn removing_an_enum_label_in_use_fails_and_keeps_the_row() {
    let db = TestDb::new().await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE TYPE mood AS ENUM ('happy', 'sad', 'meh');
             CREATE TABLE t (m mood, ms mood[]);
             INSERT INTO t VALUES ('meh', '{happy,meh}');",
        )
        .await
        .unwrap();
    let schema = "CREATE TYPE mood AS ENUM ('happy', 'sad'); CREATE TABLE t (m mood, ms mood[]);";
    let want = desired(&db, schema).await;
    let current = introspect::introspect(&client).await.unwrap();
    let plan = planner::plan(&current, &want, &PlanOptions::default());
    assert!(
        plan.hazards().contains(&Hazard::MayFail),
        "{}",
        plan.to_sql()
    );
    assert!(
        !plan.hazards().contains(&Hazard::DataLoss),
        "{}",
        plan.to_sql()
    );
    let err = apply::apply_and_verify(&client, &plan, &want, &ApplyOptions::default(), |_| {})
        .await
        .expect_err("'meh' is not a label of the new enum");
    assert!(
        err.to_string().contains("invalid input value for enum"),
        "{err}"
    );
    let row = client
        .query_one(
            "SELECT m::text, ms::text, array_length(enum_range(NULL::mood), 1) FROM t",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, i32>(2)
        ),
        ("meh".into(), "{happy,meh}".into(), 3),
        "rolled back"
    );
    // Once no row holds the label, the same change goes through.
    client
        .batch_execute("UPDATE t SET m = 'sad', ms = '{happy}'")
        .await
        .unwrap();
    converge_to(&db, schema).await;
}

#[tokio::test]
async fn domain_swaps_convert_like_column_types() {
    let db = TestDb::new().await;
    let client = db.connect().await;
    client
        .batch_execute(
            "CREATE DOMAIN amount AS integer CHECK (VALUE >= 0);
             CREATE DOMAIN code AS text;
             CREATE TABLE t (a amount, c code);
             INSERT INTO t VALUES (2147483647, 'x1');",
        )
        .await
        .unwrap();
    // integer → bigint: PostgreSQL's own conversion (no USING), the check runs again: may_fail.
    let plan = converge_to(
        &db,
        "CREATE DOMAIN amount AS bigint CHECK (VALUE >= 0);
         CREATE DOMAIN code AS text;
         CREATE TABLE t (a amount, c code);",
    )
    .await;
    let step = plan
        .steps
        .iter()
        .find(|s| s.sql.contains("ALTER COLUMN a TYPE"))
        .unwrap();
    assert!(!step.sql.contains("USING"), "{}", step.sql);
    assert!(
        step.hazards.contains(&Hazard::MayFail),
        "{:?}",
        step.hazards
    );
    // text → integer: no assignment cast, so an explicit one, which fails on 'x1'.
    let schema = "CREATE DOMAIN amount AS bigint CHECK (VALUE >= 0);
                  CREATE DOMAIN code AS integer;
                  CREATE TABLE t (a amount, c code);";
    let want = desired(&db, schema).await;
    let current = introspect::introspect(&client).await.unwrap();
    let plan = planner::plan(&current, &want, &PlanOptions::default());
    assert!(
        plan.steps
            .iter()
            .any(|s| s.sql.contains("USING c::public.code") && s.hazards.contains(&Hazard::MayFail)),
        "{}",
        plan.to_sql()
    );
    let err = apply::apply_and_verify(&client, &plan, &want, &ApplyOptions::default(), |_| {})
        .await
        .expect_err("'x1' is no integer");
    assert!(err.to_string().contains("invalid input syntax"), "{err}");
    let row = client
        .query_one("SELECT a::text, c::text FROM t", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("2147483647".into(), "x1".into())
    );
    client.batch_execute("UPDATE t SET c = '12'").await.unwrap();
    converge_to(&db, schema).await;
    let c: i32 = client
        .query_one("SELECT c FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(c, 12);
}

#[tokio::test]
async fn narrowing_a_sequence_past_its_value_fails_and_keeps_it() {
    let db = TestDb::new().await;
    let client = db.connect().await;
    client
        .batch_execute("CREATE SEQUENCE s AS bigint; SELECT setval('s', 3000000000);")
        .await
        .unwrap();
    let want = desired(&db, "CREATE SEQUENCE s AS integer;").await;
    let current = introspect::introspect(&client).await.unwrap();
    let plan = planner::plan(&current, &want, &PlanOptions::default());
    assert_eq!(
        plan.hazards(),
        [Hazard::MayFail].into(),
        "{}",
        plan.to_sql()
    );
    let err = apply::apply_and_verify(&client, &plan, &want, &ApplyOptions::default(), |_| {})
        .await
        .expect_err("3000000000 is past integer");
    assert!(err.to_string().contains("MAXVALUE"), "{err}");
    let last: i64 = client
        .query_one("SELECT last_value FROM s", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(last, 3_000_000_000);
}

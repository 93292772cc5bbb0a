//! Schema files are replayed by a throwaway unprivileged role: server-level statements are refused
//! before anything runs, what the filter cannot see fails on permissions, extensions are created by
//! pgfleet from an allow-list, and nothing is left behind.

use std::path::PathBuf;

use pgfleet_pg::shadow::{self, ShadowError, ShadowOptions};
use pgfleet_pg::{connect, introspect, source::SchemaSource};
use pgfleet_testkit::{TestCluster, TestDb, quote_ident};
use tokio_postgres::Config;

use crate::converge::assert_models_equal;

fn suffix() -> String {
    format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// Things an attack would change: a database, a file, a role's password.
struct Victims {
    admin: tokio_postgres::Client,
    admin_url: String,
    database: String,
    role: String,
    file: PathBuf,
}

impl Victims {
    async fn new(db: &TestDb) -> Self {
        let admin = pgfleet_testkit::connect(db.admin_url()).await;
        let s = suffix();
        let v = Self {
            admin,
            admin_url: db.admin_url().to_string(),
            database: format!("victim_{s}"),
            role: format!("victim_role_{s}"),
            file: std::env::temp_dir().join(format!("pgfleet-sandbox-{s}")),
        };
        for sql in [
            format!("CREATE DATABASE {}", v.database),
            format!("CREATE ROLE {} LOGIN PASSWORD 'original'", v.role),
        ] {
            v.admin.batch_execute(&sql).await.unwrap();
        }
        v
    }

    /// Asserts nothing happened: the database is there, the file is not, the password is unchanged.
    async fn assert_untouched(&self, after: &str) {
        let exists: bool = self
            .admin
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)",
                &[&self.database],
            )
            .await
            .unwrap()
            .get(0);
        assert!(exists, "{after}: the victim database was dropped");
        assert!(
            !self.file.exists(),
            "{after}: {} was created",
            self.file.display()
        );
        let login = |password: &str| {
            let mut c = connect::parse_url(&self.admin_url).unwrap();
            c.user(&self.role).password(password).dbname("postgres");
            c
        };
        assert!(
            connect::connect(&login("original")).await.is_ok(),
            "{after}: the victim role's password changed"
        );
        assert!(connect::connect(&login("changed")).await.is_err());
    }

    async fn drop(self) {
        for sql in [
            format!("DROP DATABASE {} WITH (FORCE)", self.database),
            format!("DROP ROLE {}", self.role),
        ] {
            self.admin.batch_execute(&sql).await.unwrap();
        }
    }
}

fn dev(db: &TestDb) -> Config {
    connect::parse_url(db.admin_url()).unwrap()
}

async fn build(dev: &Config, name: &str, sql: &str) -> Result<pgfleet_schema::Model, ShadowError> {
    shadow::desired_model(
        dev,
        &SchemaSource::from_sql(name, sql),
        &ShadowOptions::default(),
    )
    .await
}

#[tokio::test]
async fn the_reviewers_attack_file_is_refused_with_file_and_line_before_anything_runs() {
    let db = TestDb::new().await;
    let v = Victims::new(&db).await;
    let touch = v.file.display().to_string();
    let attacks = [
        (
            format!("CREATE TABLE t (id int);\nDROP DATABASE {};\n", v.database),
            2,
            "DROP DATABASE",
        ),
        (
            format!(
                "CREATE TABLE t (line text);\n\n-- import\ncopy t from program $$touch {touch}$$;\n"
            ),
            4,
            "COPY … PROGRAM",
        ),
        (
            format!("/* hi */ ALTER ROLE {} PASSWORD $$changed$$;", v.role),
            1,
            "ALTER ROLE",
        ),
        // The reviewer's file as it was: the first statement is reported.
        (
            format!(
                "DROP DATABASE {}; COPY t FROM PROGRAM $$touch {touch}$$; ALTER ROLE {} PASSWORD $$changed$$;",
                v.database, v.role
            ),
            1,
            "DROP DATABASE",
        ),
    ];
    for (sql, want_line, want_kind) in &attacks {
        let err = build(&dev(&db), "e.sql", sql).await.unwrap_err();
        match &err {
            ShadowError::Refused {
                file,
                line,
                statement_kind,
                ..
            } => {
                assert_eq!(file, &PathBuf::from("e.sql"));
                assert_eq!(
                    (line, statement_kind.as_str()),
                    (want_line, *want_kind),
                    "{err}"
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("e.sql:{want_line}: {want_kind} is refused")),
            "{msg}"
        );
        assert!(
            msg.contains("belong to operators, not schema files"),
            "{msg}"
        );
        v.assert_untouched(want_kind).await;
    }
    // Refused before anything runs: not even a connection to the dev server is made.
    let nowhere = connect::parse_url(&format!(
        "postgres://x:y@127.0.0.1:{}/db?connect_timeout=1",
        pgfleet_testkit::free_port()
    ))
    .unwrap();
    let err = build(&nowhere, "e.sql", &attacks[0].0).await.unwrap_err();
    assert!(matches!(err, ShadowError::Refused { .. }), "{err}");
    v.drop().await;
}

#[tokio::test]
async fn attacks_the_filter_cannot_see_fail_on_permissions_and_change_nothing() {
    let db = TestDb::new().await;
    let v = Victims::new(&db).await;
    let role = quote_ident(&v.role);
    let touch = v.file.display().to_string();
    let attacks = [
        (
            "ALTER ROLE in DO … EXECUTE",
            format!(
                "DO $$ BEGIN EXECUTE 'ALTER ROLE ' || '{role}' || ' PASSWORD ''changed'''; END $$;"
            ),
            "permission denied to alter role",
        ),
        (
            "COPY … PROGRAM in DO … EXECUTE",
            format!(
                "CREATE TABLE t (line text);\nDO $$ BEGIN EXECUTE 'COPY t FROM PROGRAM ''touch {touch}'''; END $$;"
            ),
            "permission denied to COPY to or from an external program",
        ),
        (
            "a SECURITY DEFINER function",
            format!(
                "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $f$\n\
                 BEGIN EXECUTE 'ALTER ROLE {role} PASSWORD ''changed'''; END $f$;\n\
                 SELECT f();"
            ),
            "permission denied to alter role",
        ),
        (
            "RESET ROLE, then ALTER ROLE",
            format!(
                "DO $$ BEGIN EXECUTE 'RESET ROLE'; EXECUTE 'ALTER ROLE {role} PASSWORD ''changed'''; END $$;"
            ),
            "permission denied to alter role",
        ),
        (
            "SET SESSION AUTHORIZATION",
            "DO $$ BEGIN EXECUTE 'SET SESSION AUTHORIZATION postgres'; END $$;".to_string(),
            "permission denied to set session authorization",
        ),
        (
            "set_config('role', …)",
            "SELECT set_config('role', 'postgres', false);".to_string(),
            "permission denied to set role",
        ),
        (
            "a server file",
            "SELECT pg_read_file('postgresql.conf');".to_string(),
            "permission denied for function pg_read_file",
        ),
        (
            "DROP DATABASE in DO … EXECUTE",
            format!(
                "DO $$ BEGIN EXECUTE 'DROP DATABASE {}'; END $$;",
                v.database
            ),
            "DROP DATABASE cannot be executed from a function",
        ),
    ];
    for (what, sql, want) in &attacks {
        let err = build(&dev(&db), "hidden.sql", sql).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, ShadowError::Sql { .. }) && msg.contains(want),
            "{what}: {msg}"
        );
        if msg.contains("permission denied") {
            assert!(
                msg.contains("throwaway role"),
                "{what}: the hint explains: {msg}"
            );
        }
        v.assert_untouched(what).await;
    }
    v.drop().await;
}

#[tokio::test]
async fn files_run_as_a_throwaway_role_that_owns_the_shadow_database_and_nothing_else() {
    let db = TestDb::new().await;
    let sql = "DO $$ BEGIN RAISE EXCEPTION 'as:%:%:%', current_user, session_user, (
                 SELECT concat_ws(',', r.rolcanlogin, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb,
                                  r.rolreplication, r.rolbypassrls, r.rolconnlimit,
                                  (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid),
                                  (SELECT pg_get_userbyid(datdba) = current_user FROM pg_database
                                   WHERE datname = current_database()),
                                  current_database() = current_user,
                                  has_schema_privilege('public', 'CREATE'),
                                  pg_has_role('pg_read_server_files', 'USAGE'),
                                  pg_has_role('pg_execute_server_program', 'USAGE'))
                 FROM pg_roles r WHERE r.rolname = current_user);
               END $$;";
    let msg = build(&dev(&db), "whoami.sql", sql)
        .await
        .unwrap_err()
        .to_string();
    let fields: Vec<&str> = msg
        .split("as:")
        .nth(1)
        .unwrap_or_else(|| panic!("{msg}"))
        .split(':')
        .collect();
    let (current, session, attrs) = (fields[0], fields[1], fields[2]);
    assert!(current.starts_with("pgfleet_shadow_"), "{msg}");
    assert_eq!(
        session, current,
        "logged in as the role, not switched to it"
    );
    assert!(
        attrs == "f,f,f,f,f,f,f,1,0,t,t,t,f,f",
        "no further login, not superuser, no inherit, createrole, createdb, replication or bypassrls, one connection, \
         no membership, owns the shadow database (named like it) and public: {attrs}"
    );
    let admin = db.connect().await;
    let left: i64 = admin
        .query_one(
            "SELECT (SELECT count(*) FROM pg_roles WHERE rolname = $1) + (SELECT count(*) FROM pg_database WHERE datname = $1)",
            &[&current],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        left, 0,
        "{current} and its database are dropped after a failure"
    );
}

/// Any role may change its own password; once pgfleet's session is logged in, the role has no
/// LOGIN, so a file that set a password it knows cannot log in with it from elsewhere.
#[tokio::test]
async fn a_file_that_sets_the_roles_own_password_cannot_log_in_with_it() {
    let db = TestDb::new().await;
    let marker = format!("marker_{}", suffix());
    let sql = format!(
        "BEGIN;\n\
         DO $$ BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', current_user, 'known'); END $$;\n\
         COMMIT;\n\
         SELECT pg_sleep(3) /* {marker} */;\n"
    );
    let config = dev(&db);
    let run = tokio::spawn(async move { build(&config, "s.sql", &sql).await.map(|_| ()) });
    let admin = db.connect().await;
    let started = std::time::Instant::now();
    let role: String = loop {
        let row = admin
            .query_opt(
                // Sleeping, so the statements before the sleep (the password change) are done:
                // the marker shows from the start when the file goes as one query.
                "SELECT usename::text FROM pg_stat_activity WHERE query LIKE '%' || $1 || '%' AND usename LIKE 'pgfleet\\_shadow\\_%' AND wait_event = 'PgSleep'",
                &[&marker],
            )
            .await
            .unwrap();
        if let Some(r) = row {
            break r.get(0);
        }
        assert!(started.elapsed().as_secs() < 30, "the replay never started");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let mut login = dev(&db);
    login.user(&role).password("known").dbname("postgres");
    let err = connect::connect(&login).await.unwrap_err().to_string();
    assert!(err.contains("is not permitted to log in"), "{err}");
    run.await.unwrap().unwrap();
}

const VECTOR_SCHEMA: &str = "CREATE EXTENSION vector;
CREATE TABLE docs (id bigint PRIMARY KEY, body text, e vector(3), h halfvec(3));
CREATE INDEX docs_e ON docs USING hnsw (e vector_cosine_ops) WITH (m = 16, ef_construction = 64);
CREATE INDEX docs_h ON docs USING hnsw (h halfvec_l2_ops);";

#[tokio::test]
async fn create_extension_vector_builds_the_same_model_as_when_run_as_a_superuser() {
    let db = TestDb::new().await;
    let version: String = db
        .connect()
        .await
        .query_one(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let with_schema = format!(
        "CREATE SCHEMA ext;\nCREATE EXTENSION vector WITH SCHEMA ext VERSION '{version}';\n\
         CREATE TABLE docs (id int, e ext.vector(3));\n\
         CREATE INDEX docs_e ON docs USING hnsw (e ext.vector_l2_ops);"
    );
    for sql in [VECTOR_SCHEMA, with_schema.as_str()] {
        let sandboxed = build(&dev(&db), "schema.sql", sql)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // What the shadow database built before the sandbox: the same SQL run by a superuser.
        let target = TestDb::named("vector_superuser").await;
        let client = target.connect().await;
        client.batch_execute(sql).await.unwrap();
        let as_superuser = introspect::introspect(&client).await.unwrap();
        assert!(sandboxed.extensions.contains_key("vector"), "{sandboxed:?}");
        assert_models_equal(&sandboxed, &as_superuser);
    }
}

/// `gen` writes `COMMENT ON EXTENSION` after each new extension, which only the extension's owner
/// may run: for the extensions pgfleet created, pgfleet sets the comment itself.
#[tokio::test]
async fn comments_on_extensions_pgfleet_created_are_set_by_pgfleet() {
    let db = TestDb::new().await;
    let sql = "CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;\n\
               COMMENT ON EXTENSION vector IS 'embeddings, see docs/vectors.md';\n\
               CREATE TABLE docs (id int, e public.vector(3));\n";
    let sandboxed = build(&dev(&db), "20260101000000_init.sql", sql)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let target = TestDb::named("comment_superuser").await;
    let client = target.connect().await;
    client.batch_execute(sql).await.unwrap();
    let as_superuser = introspect::introspect(&client).await.unwrap();
    assert_eq!(
        sandboxed.extensions["vector"].comment.as_deref(),
        Some("embeddings, see docs/vectors.md")
    );
    assert_models_equal(&sandboxed, &as_superuser);

    // Anything else on it is the owner's: the error says why.
    let msg = build(
        &dev(&db),
        "s.sql",
        "CREATE EXTENSION vector;\nALTER EXTENSION vector UPDATE;\n",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        msg.starts_with("s.sql:2:1: ERROR: must be owner of extension vector")
            && msg.contains("pgfleet created extension vector itself"),
        "{msg}"
    );
}

#[tokio::test]
async fn an_untrusted_extension_must_be_allowed_and_trusted_ones_need_not() {
    let db = TestDb::new().await;
    let sql = "CREATE TABLE t (id int);\nCREATE EXTENSION file_fdw;\n";
    let err = build(&dev(&db), "ext.sql", sql).await.unwrap_err();
    assert!(
        matches!(&err, ShadowError::ExtensionNotAllowed { line: 2, name, .. } if name == "file_fdw"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("ext.sql:2: extension \"file_fdw\" is not trusted")
            && msg.contains("--allow-extension file_fdw"),
        "{msg}"
    );

    let allowed = ShadowOptions::default().allow(["file_fdw"]);
    let model = shadow::desired_model(&dev(&db), &SchemaSource::from_sql("ext.sql", sql), &allowed)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(model.extensions.contains_key("file_fdw"), "{model:?}");

    // Trusted extensions are created by the sandbox role itself.
    let model = build(
        &dev(&db),
        "trusted.sql",
        "CREATE EXTENSION pg_trgm;\nCREATE TABLE t (name text);\nCREATE INDEX t_name ON t USING gin (name gin_trgm_ops);",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(model.extensions.contains_key("pg_trgm"));

    // Created where the filter cannot see it: PostgreSQL refuses, pgfleet names the flag.
    let msg = build(
        &dev(&db),
        "hidden.sql",
        "DO $$ BEGIN EXECUTE 'CREATE EXTENSION dblink'; END $$;",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("permission denied to create extension \"dblink\"")
            && msg.contains("--allow-extension dblink"),
        "{msg}"
    );
}

async fn leftovers(client: &tokio_postgres::Client) -> Vec<String> {
    let mut names: Vec<String> = client
        .query(
            "SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'pgfleet\\_shadow\\_%' \
             UNION ALL SELECT 'database ' || datname FROM pg_database WHERE datname LIKE 'pgfleet\\_shadow\\_%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    names.sort();
    names
}

/// On a cluster of its own: other tests' shadow roles would show up on the shared one.
#[tokio::test]
async fn no_shadow_role_or_database_is_left_and_old_leftovers_are_swept() {
    let cluster = TestCluster::start();
    let admin = cluster.connect("postgres").await;
    let dev = connect::parse_url(&cluster.url()).unwrap();
    let runs: [(&str, bool); 5] = [
        (
            "CREATE EXTENSION vector; CREATE TABLE t (id int, e vector(2));",
            true,
        ),
        ("CREATE TABLE t (id innt);", false),
        ("DROP DATABASE postgres;", false),
        ("CREATE EXTENSION file_fdw;", false),
        (
            "CREATE TABLE t (id int); DO $$ BEGIN EXECUTE 'ALTER ROLE postgres NOLOGIN'; END $$;",
            false,
        ),
    ];
    for (sql, ok) in runs {
        let result = build(&dev, "s.sql", sql).await;
        assert_eq!(result.is_ok(), ok, "{sql}: {:?}", result.err());
        assert_eq!(leftovers(&admin).await, Vec::<String>::new(), "after {sql}");
    }

    // What a killed run left (a role owning its database; NOLOGIN once pgfleet's session was in),
    // a recent one (maybe a run going on),
    // and someone else's role that only looks like pgfleet's.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let stale = "pgfleet_shadow_1000_0123456789ab";
    let recent = format!("pgfleet_shadow_{now}_0123456789ab");
    for sql in [
        format!("CREATE ROLE {stale} NOLOGIN"),
        format!("CREATE DATABASE {stale} OWNER {stale}"),
        format!("CREATE ROLE {recent} LOGIN"),
        format!("CREATE DATABASE {recent} OWNER {recent}"),
        "CREATE ROLE pgfleet_shadow_reader LOGIN".to_string(),
    ] {
        admin.batch_execute(&sql).await.unwrap();
    }
    build(&dev, "s.sql", "CREATE TABLE t (id int);")
        .await
        .unwrap();
    assert_eq!(
        leftovers(&admin).await,
        vec![
            format!("database {recent}"),
            recent.clone(),
            "pgfleet_shadow_reader".to_string(),
        ],
        "the stale role and database are swept, the others kept"
    );
}

/// The dev URL's role need not be a superuser: CREATEDB and CREATEROLE are enough for trusted
/// extensions; an untrusted one then fails with PostgreSQL's error at the file's line.
#[tokio::test]
async fn a_dev_role_with_createdb_and_createrole_is_enough() {
    let db = TestDb::new().await;
    let name = format!("dev_admin_{}", suffix());
    let admin = db.connect().await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {name} LOGIN CREATEDB CREATEROLE PASSWORD 'dev-pw'"
        ))
        .await
        .unwrap();
    let mut dev = dev(&db);
    dev.user(&name).password("dev-pw").dbname("postgres");
    let model = build(
        &dev,
        "schema.sql",
        "CREATE EXTENSION citext;\nCREATE TABLE users (id int PRIMARY KEY, email citext);",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(model.extensions.contains_key("citext"));
    let msg = build(
        &dev,
        "schema.sql",
        "CREATE TABLE t (id int);\nCREATE EXTENSION vector;",
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        msg.starts_with("schema.sql:2:1: ERROR: permission denied to create extension \"vector\""),
        "{msg}"
    );
    // Nothing of the runs is left: the shadow roles it was made a member of are gone, and the role
    // can be dropped.
    let memberships: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(memberships, 0);
    admin
        .batch_execute(&format!("DROP ROLE {name}"))
        .await
        .unwrap_or_else(|e| panic!("{}", pgfleet_pg::describe(&e)));
}

/// On PostgreSQL 15 the owner of a new database gets the rights of `public`'s owner
/// (`pg_database_owner`) only through inheritance, and a dev role that is not a superuser cannot
/// hand `public` over: both kinds of dev role must still work.
#[tokio::test]
async fn postgres_15_works_with_a_superuser_and_a_createdb_createrole_dev_role() {
    let pg15 = crate::introspect::pg15();
    let db = TestDb::on(&pg15, "pg15_sandbox").await;
    let sql = "CREATE EXTENSION citext;\nCOMMENT ON SCHEMA public IS 'app';\n\
               CREATE TABLE users (id int PRIMARY KEY, email citext);";
    let model = build(&dev(&db), "schema.sql", sql)
        .await
        .unwrap_or_else(|e| panic!("superuser: {e}"));
    assert!(model.extensions.contains_key("citext"));
    let admin = db.connect().await;
    admin
        .batch_execute("CREATE ROLE dev_admin LOGIN CREATEDB CREATEROLE PASSWORD 'dev-pw'")
        .await
        .unwrap();
    let mut dev_role = dev(&db);
    dev_role
        .user("dev_admin")
        .password("dev-pw")
        .dbname("postgres");
    let as_dev_role = build(&dev_role, "schema.sql", sql)
        .await
        .unwrap_or_else(|e| panic!("CREATEDB CREATEROLE role: {e}"));
    assert_models_equal(&as_dev_role, &model);
}

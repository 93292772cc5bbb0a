//! `plan`, `apply` and `gen` replay schema files as a throwaway unprivileged role: server-level
//! statements are refused with file:line, untrusted extensions need `--allow-extension`, and the
//! shadow database and role are dropped even when the replay panics.

use std::process::{Command, Stdio};

use pgfleet_testkit::{TestCluster, TestDb};

use crate::{BIN, Home, pgfleet, stderr, stdout, write_schema};

fn unique(label: &str) -> String {
    format!(
        "{label}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

async fn database_exists(db: &TestDb, name: &str) -> bool {
    db.connect()
        .await
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)",
            &[&name],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn plan_apply_and_gen_refuse_the_reviewers_attack_file_and_the_victim_survives() {
    let db = TestDb::new().await;
    let home = Home::new("attack");
    let victim = unique("victim");
    let victim_role = unique("victim_role");
    let admin = db.connect().await;
    admin
        .batch_execute(&format!("CREATE DATABASE {victim}"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {victim_role} LOGIN PASSWORD 'original'"
        ))
        .await
        .unwrap();
    let touched = home.dir.join("touched");
    let e = write_schema(
        &home.dir,
        "e.sql",
        &format!(
            "-- looks like a schema\nCREATE TABLE t (id int);\nDROP DATABASE {victim};\nCOPY t FROM PROGRAM $$touch {}$$;\nALTER ROLE {victim_role} PASSWORD $$changed$$;\n",
            touched.display()
        ),
    );
    let e = e.to_str().unwrap();
    let migrations = home.dir.join("migrations");
    let m = migrations.to_str().unwrap();
    for args in [
        vec!["plan", "--db", db.url(), "--schema", e, "--exit-code"],
        vec!["apply", "--db", db.url(), "--schema", e, "--yes"],
        vec![
            "gen",
            "init",
            "--schema",
            e,
            "--migrations",
            m,
            "--dev-url",
            db.admin_url(),
        ],
    ] {
        let out = pgfleet(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{e}:3: DROP DATABASE is refused"))
                && err.contains("belong to operators, not schema files"),
            "{args:?}: {err}"
        );
        assert!(database_exists(&db, &victim).await, "{args:?}");
        assert!(!touched.exists(), "{args:?}");
    }
    assert!(
        !migrations.join("pgfleet.sum").exists(),
        "gen wrote nothing"
    );
    // The password is unchanged.
    let mut login = pgfleet::pg::connect::parse_url(db.admin_url()).unwrap();
    login.user(&victim_role).password("original");
    pgfleet::pg::connect::connect(&login).await.unwrap();

    // Migrations replayed by gen are checked the same way, with the migration's file name.
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(
        migrations.join("20260101000000_init.sql"),
        "CREATE TABLE t (id int);\n\nALTER SYSTEM SET work_mem = '1GB';\n",
    )
    .unwrap();
    let out = pgfleet(&["migrate", "hash", "--migrations", m]);
    assert!(out.status.success(), "{}", stderr(&out));
    let good = write_schema(&home.dir, "good.sql", "CREATE TABLE t (id int);");
    let out = pgfleet(&[
        "gen",
        "--check",
        "--schema",
        good.to_str().unwrap(),
        "--migrations",
        m,
        "--dev-url",
        db.admin_url(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("20260101000000_init.sql:3: ALTER SYSTEM is refused"),
        "{}",
        stderr(&out)
    );
    admin
        .batch_execute(&format!("DROP DATABASE {victim}"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("DROP ROLE {victim_role}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn untrusted_extensions_need_allow_extension_unless_the_database_has_them() {
    let db = TestDb::new().await;
    let home = Home::new("allowext");
    let schema = write_schema(
        &home.dir,
        "schema.sql",
        "CREATE EXTENSION file_fdw;\nCREATE TABLE t (id int);\n",
    );
    let s = schema.to_str().unwrap();
    let plan = |extra: &[&str], env: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["plan", "--db", db.url(), "--schema", s])
            .args(extra)
            .stdin(Stdio::null())
            .env_remove("PGFLEET_DATABASE_URL")
            .env_remove("PGFLEET_ALLOWED_EXTENSIONS");
        if let Some(v) = env {
            cmd.env("PGFLEET_ALLOWED_EXTENSIONS", v);
        }
        cmd.output().unwrap()
    };

    let out = plan(&[], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{s}:1: extension \"file_fdw\" is not trusted"))
            && stderr(&out).contains("--allow-extension file_fdw"),
        "{}",
        stderr(&out)
    );

    for out in [
        plan(&["--allow-extension", "file_fdw"], None),
        plan(
            &[
                "--allow-extension",
                "dblink",
                "--allow-extension",
                "file_fdw",
            ],
            None,
        ),
        plan(&[], Some("dblink,file_fdw")),
    ] {
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stdout(&out).contains("CREATE EXTENSION IF NOT EXISTS file_fdw"),
            "{}",
            stdout(&out)
        );
    }

    // Extensions already installed in --db are allowed without the flag.
    db.connect()
        .await
        .batch_execute("CREATE EXTENSION file_fdw")
        .await
        .unwrap();
    let out = plan(&[], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("CREATE EXTENSION"),
        "{}",
        stdout(&out)
    );

    // gen has no --db: the flag is the way.
    let m = home.dir.join("migrations");
    let gen_args = |extra: &'static [&'static str]| {
        let mut args = vec![
            "gen",
            "init",
            "--schema",
            s,
            "--migrations",
            m.to_str().unwrap(),
            "--dev-url",
            db.admin_url(),
        ];
        args.extend(extra);
        pgfleet(&args)
    };
    let out = gen_args(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--allow-extension file_fdw"),
        "{}",
        stderr(&out)
    );
    let out = gen_args(&["--allow-extension", "file_fdw"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A panic while the schema is replayed still drops the shadow database and role (a cluster of
/// its own, so other tests' shadow roles do not show up).
#[tokio::test]
async fn a_panic_during_the_replay_still_drops_the_shadow_database_and_role() {
    let cluster = TestCluster::start();
    let home = Home::new("panic");
    let schema = write_schema(
        &home.dir,
        "schema.sql",
        "CREATE EXTENSION vector;\nCREATE TABLE t (id int, e vector(3));\n",
    );
    let out = Command::new(BIN)
        .args(["plan", "--db", &cluster.url(), "--schema"])
        .arg(&schema)
        .stdin(Stdio::null())
        .env_remove("PGFLEET_DATABASE_URL")
        .env("PGFLEET_FAILPOINT", "shadow:after-replay:panic")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(101), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("failpoint shadow:after-replay:panic reached"),
        "{}",
        stderr(&out)
    );
    let left: Vec<String> = cluster
        .connect("postgres")
        .await
        .query(
            "SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'pgfleet\\_shadow\\_%' \
             UNION ALL SELECT datname::text FROM pg_database WHERE datname LIKE 'pgfleet\\_shadow\\_%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

//! `pgfleet gen` and `pgfleet migrate` as real processes: concurrency, kill -9, exit codes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pgfleet_testkit::TestDb;

use crate::{BIN, Home, pgfleet, stderr, stdout};

fn spawn(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("PGFLEET_DATABASE_URL")
        .env_remove("PGFLEET_LOG")
        .spawn()
        .unwrap()
}

/// Writes migration files and records them with `pgfleet migrate hash`.
fn migrations(root: &Path, files: &[(&str, &str)]) -> PathBuf {
    let dir = root.join("migrations");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, sql) in files {
        std::fs::write(dir.join(name), sql).unwrap();
    }
    let out = pgfleet(&["migrate", "hash", "--migrations", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    dir
}

async fn scalar<T: for<'a> tokio_postgres::types::FromSql<'a>>(db: &TestDb, sql: &str) -> T {
    db.connect().await.query_one(sql, &[]).await.unwrap().get(0)
}

/// Polls until `sql` returns true (or panics after 60 s).
async fn wait_for(db: &TestDb, sql: &str) {
    let started = Instant::now();
    while !scalar::<bool>(db, sql).await {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for: {sql}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn gen_check_and_migrate_round_trip() {
    let db = TestDb::new().await;
    let home = Home::new("gen");
    let schema = home.dir.join("schema.sql");
    std::fs::write(
        &schema,
        "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);\n",
    )
    .unwrap();
    let dir = home.dir.join("migrations");
    let (s, m) = (schema.to_str().unwrap(), dir.to_str().unwrap());
    let dev = db.admin_url();

    let out = pgfleet(&[
        "gen",
        "init",
        "--schema",
        s,
        "--migrations",
        m,
        "--dev-url",
        dev,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("_init.sql"), "{}", stdout(&out));
    assert!(dir.join("pgfleet.sum").exists());
    let out = pgfleet(&[
        "gen",
        "again",
        "--schema",
        s,
        "--migrations",
        m,
        "--dev-url",
        dev,
    ]);
    assert!(stderr(&out).contains("Nothing to do"), "{}", stderr(&out));
    let out = pgfleet(&[
        "gen",
        "--check",
        "--schema",
        s,
        "--migrations",
        m,
        "--dev-url",
        dev,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    std::fs::write(
        &schema,
        "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, name text);\n",
    )
    .unwrap();
    let out = pgfleet(&[
        "gen",
        "--check",
        "--schema",
        s,
        "--migrations",
        m,
        "--dev-url",
        dev,
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "schema changed without a migration: {}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("ADD COLUMN name"), "{}", stdout(&out));
    let out = pgfleet(&[
        "gen",
        "add_name",
        "--schema",
        s,
        "--migrations",
        m,
        "--dev-url",
        dev,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = pgfleet(&["migrate", "--db", db.url(), "--migrations", m, "--dry-run"]);
    assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));
    let out = pgfleet(&["migrate", "--db", db.url(), "--migrations", m]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Applied 2 migration(s)"),
        "{}",
        stderr(&out)
    );
    let out = pgfleet(&["migrate", "--db", db.url(), "--migrations", m]);
    assert!(stderr(&out).contains("Nothing to do"), "{}", stderr(&out));
    let out = pgfleet(&[
        "migrate",
        "status",
        "--db",
        db.url(),
        "--migrations",
        m,
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .all(|l| l["state"] == "applied"),
        "{v}"
    );

    // An edited migration is caught by pgfleet.sum before the database is touched.
    let first = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .min()
        .unwrap();
    std::fs::write(&first, "CREATE TABLE users (id int);\n").unwrap();
    let out = pgfleet(&["migrate", "--db", db.url(), "--migrations", m]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("changed: ") && stderr(&out).contains("pgfleet migrate hash"),
        "{}",
        stderr(&out)
    );
    let out = pgfleet(&["migrate", "--migrations", m]);
    assert!(stderr(&out).contains("pass --db"), "{}", stderr(&out));
}

#[tokio::test]
async fn eight_processes_apply_every_migration_exactly_once() {
    let db = TestDb::new().await;
    let home = Home::new("eight");
    let dir = migrations(
        &home.dir,
        &[
            (
                "20260101000000_base.sql",
                "CREATE TABLE log (migration text NOT NULL);\nCREATE TABLE t (id int, v int);\n\
                 INSERT INTO t SELECT g, g FROM generate_series(1, 300000) g;\nINSERT INTO log VALUES ('base');\n",
            ),
            (
                "20260102000000_index.sql",
                "-- pgfleet:no-transaction\nCREATE INDEX CONCURRENTLY t_v ON t (v);\nINSERT INTO log VALUES ('index');\n",
            ),
            (
                "20260103000000_more.sql",
                "ALTER TABLE t ADD COLUMN note text;\nINSERT INTO log VALUES ('more');\n",
            ),
        ],
    );
    let m = dir.to_str().unwrap();
    let children: Vec<Child> = (0..8)
        .map(|_| {
            spawn(&[
                "migrate",
                "--db",
                db.url(),
                "--migrations",
                m,
                "--lock-wait",
                "2m",
            ])
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let mut applied = 0;
    for out in &outputs {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(0), "{err}");
        for line in err.lines() {
            let allowed = [
                "Waiting for the migration lock",
                "Took the migration lock",
                "Applying ",
                "  done in",
                "Nothing to do",
                "Applied ",
            ];
            assert!(
                allowed.iter().any(|a| line.starts_with(a)),
                "unexpected output: {line}\n{err}"
            );
        }
        if let Some(n) = err.lines().find_map(|l| l.strip_prefix("Applied ")) {
            applied += n.split(' ').next().unwrap().parse::<usize>().unwrap();
        }
    }
    assert_eq!(applied, 3, "every migration applied by exactly one process");
    assert!(
        outputs
            .iter()
            .any(|o| stderr(o).contains("Waiting for the migration lock")),
        "the test must actually contend"
    );
    let log: String = scalar(
        &db,
        "SELECT string_agg(migration, ',' ORDER BY migration) FROM log",
    )
    .await;
    assert_eq!(log, "base,index,more");
    assert!(
        scalar::<bool>(
            &db,
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.t_v'::regclass"
        )
        .await
    );
    assert_eq!(
        scalar::<i64>(
            &db,
            "SELECT count(*) FROM pgfleet_migrate.history WHERE state = 'applied'"
        )
        .await,
        3
    );
    assert_eq!(scalar::<i64>(&db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())").await, 0, "no lock leaked");
}

#[tokio::test]
async fn kill_9_in_a_transactional_migration_rolls_back_and_the_next_run_applies_it_once() {
    let db = TestDb::new().await;
    let home = Home::new("kill-tx");
    // `slow` exists only while the test wants the migration to hang.
    db.connect()
        .await
        .batch_execute("CREATE TABLE log (migration text); CREATE TABLE slow ();")
        .await
        .unwrap();
    let dir = migrations(
        &home.dir,
        &[(
            "20260101000000_a.sql",
            "CREATE TABLE a (id int);\nINSERT INTO log VALUES ('a');\n\
             SELECT pg_sleep(CASE WHEN to_regclass('public.slow') IS NULL THEN 0 ELSE 120 END);\n",
        )],
    );
    let m = dir.to_str().unwrap();
    let mut child = spawn(&["migrate", "--db", db.url(), "--migrations", m]);
    wait_for(&db, "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgfleet migrate' AND query LIKE '%pg_sleep%' AND state = 'active')").await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    db.connect()
        .await
        .batch_execute("DROP TABLE slow")
        .await
        .unwrap();
    let started = Instant::now();
    let out = pgfleet(&[
        "migrate",
        "--db",
        db.url(),
        "--migrations",
        m,
        "--lock-wait",
        "60s",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Applied 1 migration(s)"),
        "{}",
        stderr(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the killed session released its lock"
    );
    assert_eq!(
        scalar::<i64>(&db, "SELECT count(*) FROM log").await,
        1,
        "rolled back, then applied once"
    );
    assert!(scalar::<bool>(&db, "SELECT to_regclass('public.a') IS NOT NULL").await);
}

#[tokio::test]
async fn kill_9_in_a_concurrent_index_build_resumes_after_the_last_statement_and_rebuilds_the_index()
 {
    let db = TestDb::new().await;
    let home = Home::new("kill-notx");
    db.connect()
        .await
        .batch_execute(
            "CREATE TABLE log (migration text); CREATE TABLE slow ();
             CREATE TABLE t (id int, v int); INSERT INTO t SELECT g, g FROM generate_series(1, 5000) g;
             CREATE FUNCTION slow_v(x int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
             BEGIN IF to_regclass('public.slow') IS NOT NULL THEN PERFORM pg_sleep(0.01); END IF; RETURN x; END $$;",
        )
        .await
        .unwrap();
    let dir = migrations(
        &home.dir,
        &[(
            "20260101000000_idx.sql",
            "-- pgfleet:no-transaction\nINSERT INTO log VALUES ('first');\n\
             CREATE INDEX CONCURRENTLY t_slow ON t (slow_v(v));\nINSERT INTO log VALUES ('last');\n",
        )],
    );
    let m = dir.to_str().unwrap();
    let mut child = spawn(&["migrate", "--db", db.url(), "--migrations", m]);
    wait_for(&db, "SELECT EXISTS (SELECT FROM pg_stat_progress_create_index WHERE datname = current_database())").await;
    child.kill().unwrap();
    child.wait().unwrap();
    db.connect()
        .await
        .batch_execute("DROP TABLE slow")
        .await
        .unwrap();
    // The interrupted build leaves an INVALID index once PostgreSQL notices the client is gone.
    wait_for(&db, "SELECT NOT EXISTS (SELECT FROM pg_stat_progress_create_index WHERE datname = current_database())").await;
    assert_eq!(
        scalar::<i64>(&db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid").await,
        1
    );
    let out = pgfleet(&[
        "migrate",
        "--db",
        db.url(),
        "--migrations",
        m,
        "--lock-wait",
        "60s",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("Resuming 20260101000000_idx.sql at statement 2"),
        "{err}"
    );
    assert!(
        err.contains("dropped the invalid index public.t_slow"),
        "{err}"
    );
    let log: String = scalar(
        &db,
        "SELECT string_agg(migration, ',' ORDER BY migration) FROM log",
    )
    .await;
    assert_eq!(log, "first,last", "statement 1 ran once, statement 3 once");
    assert!(
        scalar::<bool>(
            &db,
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.t_slow'::regclass"
        )
        .await
    );
}

#[tokio::test]
async fn import_adopts_sqlx_history_through_the_cli() {
    let db = TestDb::new().await;
    let home = Home::new("import");
    let src = home.dir.join("sqlx");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("20240101000000_users.sql"),
        "CREATE TABLE users (id int);\n",
    )
    .unwrap();
    std::fs::write(
        src.join("20240102000000_posts.sql"),
        "CREATE TABLE posts (id int);\n",
    )
    .unwrap();
    db.connect()
        .await
        .batch_execute(
            "CREATE TABLE users (id int);
             CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL, checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL);
             INSERT INTO _sqlx_migrations VALUES (20240101000000, 'users', now(), true, '\\x00', 1);",
        )
        .await
        .unwrap();
    let m = home.dir.join("migrations");
    let out = pgfleet(&[
        "migrate",
        "import",
        "--from",
        "sqlx",
        src.to_str().unwrap(),
        "--migrations",
        m.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = pgfleet(&[
        "migrate",
        "--db",
        db.url(),
        "--migrations",
        m.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("Adopted 1 migration(s) sqlx had applied")
            && err.contains("Applied 1 migration(s)"),
        "{err}"
    );
    let out = pgfleet(&[
        "migrate",
        "import",
        "--from",
        "flyway",
        src.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

//! The migrator on one database: order, history, failures, integrity, scopes.

use std::collections::BTreeSet;

use pgfleet_migrate::migrator::{self, MigrateError, MigrateEvent, Status};
use pgfleet_migrate::{MigrateOptions, history};
use pgfleet_testkit::TestDb;

use crate::{Dir, migrate_ok, run, scalar};

const V1: (&str, &str) = (
    "20260101000000_users.sql",
    "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);\nINSERT INTO users VALUES (1, 'a@example.com');\n",
);
const V2: (&str, &str) = (
    "20260102000000_posts.sql",
    "CREATE TABLE posts (id bigint PRIMARY KEY, user_id bigint REFERENCES users);\n",
);

#[tokio::test]
async fn applies_in_order_records_history_and_is_idempotent() {
    let db = TestDb::new().await;
    let dir = Dir::with("order", &[V2, V1]);
    let report = migrate_ok(&db, &dir).await;
    assert_eq!(report.applied, ["20260101000000", "20260102000000"]);
    let again = migrate_ok(&db, &dir).await;
    assert!(
        again.applied.is_empty(),
        "second run applied {:?}",
        again.applied
    );
    assert_eq!(scalar::<i64>(&db, "SELECT count(*) FROM users").await, 1);
    let rows = history::read(&db.connect().await, "").await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].checksum, dir.load().migrations[0].checksum);
    assert!(
        rows.iter()
            .all(|r| r.state == history::RowState::Applied && r.duration_ms.is_some())
    );
    // The history lives in its own schema and never shows up in introspection (drift reports).
    let model = pgfleet_pg::introspect::introspect(&db.connect().await)
        .await
        .unwrap();
    let text = format!("{model:?}");
    assert!(
        text.contains("users") && !text.contains("pgfleet_migrate"),
        "history leaked into the model"
    );
}

#[tokio::test]
async fn a_failing_migration_rolls_back_names_file_line_and_statement_and_is_retried() {
    let db = TestDb::new().await;
    let bad = (
        "20260102000000_posts.sql",
        "CREATE TABLE posts (id bigint PRIMARY KEY);\n\nINSERT INTO posts VALUES (1);\nINSERT INTO postz VALUES (2);\n",
    );
    let v3 = ("20260103000000_more.sql", "CREATE TABLE more (id int);\n");
    let dir = Dir::with("fail", &[V1, bad, v3]);
    let (r, _) = run(&db, &dir, &MigrateOptions::default()).await;
    let err = r.unwrap_err();
    let msg = err.to_string();
    let MigrateError::Failed {
        line,
        statement,
        rolled_back,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(*line, 4, "{msg}");
    assert!(statement.contains("postz") && *rolled_back, "{msg}");
    assert!(
        msg.contains("20260102000000_posts.sql:4:") && msg.contains("rolled back"),
        "{msg}"
    );
    assert_eq!(err.sqlstate(), Some("42P01"));
    // Left at the last good version: v1 applied, nothing of v2, v3 not run.
    let c = db.connect().await;
    let exists = |t: &'static str| {
        let c = &c;
        async move {
            c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&t])
                .await
                .unwrap()
                .get::<_, bool>(0)
        }
    };
    assert!(exists("public.users").await);
    assert!(!exists("public.posts").await);
    assert!(!exists("public.more").await);
    let versions: Vec<String> = history::read(&c, "")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.version)
        .collect();
    assert_eq!(versions, ["20260101000000"]);
    // Fix the file; the next run retries it without any manual step.
    dir.write(&[(
        bad.0,
        "CREATE TABLE posts (id bigint PRIMARY KEY);\nINSERT INTO posts VALUES (1);\n",
    )]);
    let report = migrate_ok(&db, &dir).await;
    assert_eq!(report.applied, ["20260102000000", "20260103000000"]);
}

#[tokio::test]
async fn syntax_errors_point_at_the_column_in_the_file() {
    let db = TestDb::new().await;
    let dir = Dir::with(
        "syntax",
        &[(
            "20260101000000_x.sql",
            "CREATE TABLE a (id int);\nCREATE TABLE b (id int,, x int);\n",
        )],
    );
    let err = run(&db, &dir, &MigrateOptions::default())
        .await
        .0
        .unwrap_err();
    let MigrateError::Failed { line, column, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!((*line, *column), (2, 24), "{err}");
    // The first statement of a file is sent together with BEGIN; positions still count from the file.
    let dir = Dir::with(
        "syntax1",
        &[("20260101000000_x.sql", "CREATE TABLE a (id int,, x int);\n")],
    );
    let err = run(&db, &dir, &MigrateOptions::default())
        .await
        .0
        .unwrap_err();
    let MigrateError::Failed { line, column, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!((*line, *column), (1, 24), "{err}");
}

#[tokio::test]
async fn a_changed_applied_file_is_refused_with_both_hashes_unless_allowed() {
    let db = TestDb::new().await;
    let dir = Dir::with("changed", &[V1]);
    migrate_ok(&db, &dir).await;
    let recorded = dir.load().migrations[0].checksum.clone();
    dir.write(&[(V1.0, "-- a comment\nCREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);\nINSERT INTO users VALUES (1, 'a@example.com');\n"), V2]);
    let actual = dir.load().migrations[0].checksum.clone();
    let err = run(&db, &dir, &MigrateOptions::default())
        .await
        .0
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, MigrateError::Changed { .. }), "{msg}");
    assert!(
        msg.contains(V1.0)
            && msg.contains(&recorded)
            && msg.contains(&actual)
            && msg.contains("--allow-changed 20260101000000"),
        "{msg}"
    );
    assert_eq!(
        scalar::<i64>(&db, "SELECT count(*) FROM pgfleet_migrate.history").await,
        1,
        "nothing ran"
    );
    let opts = MigrateOptions {
        allow_changed: BTreeSet::from(["20260101000000".to_string()]),
        ..MigrateOptions::default()
    };
    let (r, events) = run(&db, &dir, &opts).await;
    assert_eq!(r.unwrap().applied, ["20260102000000"]);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, MigrateEvent::AcceptedChange { .. }))
    );
    // The new checksum is recorded: the next plain run is clean.
    assert!(migrate_ok(&db, &dir).await.applied.is_empty());
}

#[tokio::test]
async fn a_missing_applied_file_and_an_out_of_order_file_are_refused() {
    let db = TestDb::new().await;
    let dir = Dir::with(
        "order2",
        &[V1, ("20260103000000_c.sql", "CREATE TABLE c (id int);")],
    );
    migrate_ok(&db, &dir).await;

    // A merge brings in a file older than the newest applied one.
    dir.write(&[("20260102000000_b.sql", "CREATE TABLE b (id int);")]);
    let err = run(&db, &dir, &MigrateOptions::default())
        .await
        .0
        .unwrap_err();
    assert!(matches!(err, MigrateError::OutOfOrder { .. }), "{err}");
    assert!(err.to_string().contains("--allow-out-of-order"), "{err}");
    let st = migrator::status(&db.connect().await, &dir.load(), "")
        .await
        .unwrap();
    assert_eq!(st[1].status, Status::OutOfOrder);
    let opts = MigrateOptions {
        allow_out_of_order: true,
        ..MigrateOptions::default()
    };
    assert_eq!(
        run(&db, &dir, &opts).await.0.unwrap().applied,
        ["20260102000000"]
    );

    std::fs::remove_file(dir.path().join("20260103000000_c.sql")).unwrap();
    dir.write(&[]);
    let err = run(&db, &dir, &MigrateOptions::default())
        .await
        .0
        .unwrap_err();
    assert!(matches!(err, MigrateError::MissingFile { .. }), "{err}");
    let st = migrator::status(&db.connect().await, &dir.load(), "")
        .await
        .unwrap();
    assert_eq!(st.last().unwrap().status, Status::MissingFile);
}

#[tokio::test]
async fn to_and_dry_run_limit_what_runs() {
    let db = TestDb::new().await;
    let dir = Dir::with("to", &[V1, V2]);
    let dry = MigrateOptions {
        dry_run: true,
        ..MigrateOptions::default()
    };
    assert_eq!(run(&db, &dir, &dry).await.0.unwrap().applied.len(), 2);
    assert!(
        !scalar::<bool>(
            &db,
            "SELECT to_regclass('pgfleet_migrate.history') IS NOT NULL"
        )
        .await,
        "a dry run creates nothing"
    );
    let to = MigrateOptions {
        to: Some("20260101000000".into()),
        ..MigrateOptions::default()
    };
    assert_eq!(
        run(&db, &dir, &to).await.0.unwrap().applied,
        ["20260101000000"]
    );
    let st = migrator::status(&db.connect().await, &dir.load(), "")
        .await
        .unwrap();
    assert!(matches!(st[0].status, Status::Applied { .. }));
    assert_eq!(st[1].status, Status::Pending);
    let bad = MigrateOptions {
        to: Some("20990101000000".into()),
        ..MigrateOptions::default()
    };
    assert!(matches!(
        run(&db, &dir, &bad).await.0.unwrap_err(),
        MigrateError::UnknownVersion(_)
    ));
}

#[tokio::test]
async fn schemas_of_one_database_have_their_own_history_and_lock() {
    let db = TestDb::new().await;
    db.connect()
        .await
        .batch_execute("CREATE SCHEMA t1; CREATE SCHEMA t2;")
        .await
        .unwrap();
    let dir = Dir::with("scope", &[V1, V2]);
    let in_scope = |s: &str| MigrateOptions {
        scope: Some(s.to_string()),
        ..MigrateOptions::default()
    };
    // t2 holds its lock while t1 migrates: t1 does not wait.
    let c2 = db.connect().await;
    let name: String = scalar(&db, "SELECT current_database()::text").await;
    c2.query_one(
        "SELECT pg_advisory_lock($1)",
        &[&pgfleet_migrate::lock::key(&name, "t2")],
    )
    .await
    .unwrap();
    let (r, events) = run(&db, &dir, &in_scope("t1")).await;
    assert_eq!(r.unwrap().applied.len(), 2);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, MigrateEvent::WaitingForLock { .. }))
    );
    assert_eq!(scalar::<i64>(&db, "SELECT count(*) FROM t1.users").await, 1);
    assert!(!scalar::<bool>(&db, "SELECT to_regclass('public.users') IS NOT NULL").await);
    // t2 waits for its lock, then times out with the holder named.
    let short = MigrateOptions {
        lock_wait: std::time::Duration::from_millis(300),
        ..in_scope("t2")
    };
    let (r, events) = run(&db, &dir, &short).await;
    let err = r.unwrap_err();
    assert!(
        matches!(
            err,
            MigrateError::LockTimeout {
                holder: Some(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_lock_timeout() && !err.is_connect(), "{err}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, MigrateEvent::WaitingForLock { .. }))
    );
    drop(c2);
    assert_eq!(
        run(&db, &dir, &in_scope("t2"))
            .await
            .0
            .unwrap()
            .applied
            .len(),
        2
    );
    assert_eq!(
        scalar::<i64>(&db, "SELECT count(*) FROM pgfleet_migrate.history").await,
        4
    );
}

#[tokio::test]
async fn a_no_transaction_migration_records_each_statement_and_resumes_after_a_failure() {
    let db = TestDb::new().await;
    let base = (
        "20260101000000_t.sql",
        "CREATE TABLE t (id int, v int);\nCREATE TABLE log (step text);\nINSERT INTO t SELECT g, g % 3 FROM generate_series(1, 100) g;\n",
    );
    let idx = (
        "20260102000000_idx.sql",
        "-- pgfleet:no-transaction\nINSERT INTO log VALUES ('first');\nCREATE UNIQUE INDEX CONCURRENTLY t_v_key ON t (v);\nINSERT INTO log VALUES ('last');\n",
    );
    let dir = Dir::with("notx", &[base, idx]);
    let err = run(&db, &dir, &MigrateOptions::default())
        .await
        .0
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            MigrateError::Failed {
                rolled_back: false,
                statement_index: 2,
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("resumes at statement 2"), "{msg}");
    // The failed concurrent build left an INVALID index behind.
    assert_eq!(
        scalar::<i64>(&db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid").await,
        1
    );
    let st = migrator::status(&db.connect().await, &dir.load(), "")
        .await
        .unwrap();
    assert!(
        matches!(&st[1].status, Status::Partial { done: 1, total: Some(3), error: Some(e) } if e.contains("duplicate")),
        "{:?}",
        st[1]
    );
    // Fix the data (not the file) and run again: it resumes at statement 2.
    db.connect()
        .await
        .batch_execute("UPDATE t SET v = id")
        .await
        .unwrap();
    let (r, events) = run(&db, &dir, &MigrateOptions::default()).await;
    assert_eq!(r.unwrap().applied, ["20260102000000"]);
    assert!(
        events.iter().any(|e| matches!(
            e,
            MigrateEvent::Started {
                resume_at: Some(2),
                ..
            }
        )),
        "{events:?}"
    );
    assert!(
        events.iter().any(
            |e| matches!(e, MigrateEvent::DroppedInvalidIndex { name } if name.contains("t_v_key"))
        ),
        "{events:?}"
    );
    assert_eq!(
        scalar::<String>(&db, "SELECT string_agg(step, ',' ORDER BY step) FROM log").await,
        "first,last"
    );
    assert_eq!(
        scalar::<i64>(&db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid").await,
        0
    );
    assert!(
        scalar::<bool>(
            &db,
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.t_v_key'::regclass"
        )
        .await
    );
}

#[tokio::test]
async fn a_concurrent_index_in_a_transactional_file_says_how_to_fix_it() {
    let db = TestDb::new().await;
    let dir = Dir::with(
        "cic",
        &[(
            "20260101000000_t.sql",
            "CREATE TABLE t (id int);\nCREATE INDEX CONCURRENTLY t_id ON t (id);\n",
        )],
    );
    let err = run(&db, &dir, &MigrateOptions::default())
        .await
        .0
        .unwrap_err();
    assert!(
        err.to_string().contains("-- pgfleet:no-transaction"),
        "{err}"
    );
}

#[tokio::test]
async fn an_edited_partial_migration_resumes_only_when_its_completed_statements_are_unchanged() {
    let db = TestDb::new().await;
    let base = (
        "20260101000000_t.sql",
        "CREATE TABLE t (id int);\nCREATE TABLE log (step text);\n",
    );
    let v2 = |second: &str, first: &str| {
        format!(
            "-- pgfleet:no-transaction\nINSERT INTO log VALUES ('{first}');\n{second};\nINSERT INTO log VALUES ('last');\n"
        )
    };
    let dir = Dir::with(
        "partial-edit",
        &[
            base,
            (
                "20260102000000_idx.sql",
                &v2("CREATE INDEX CONCURRENTLY t_id ON t (idd)", "first"),
            ),
        ],
    );
    let err = run(&db, &dir, &MigrateOptions::default())
        .await
        .0
        .unwrap_err();
    assert!(
        matches!(
            err,
            MigrateError::Failed {
                statement_index: 2,
                ..
            }
        ),
        "{err}"
    );
    // Editing a statement that already ran is refused, even with --allow-changed.
    dir.write(&[(
        "20260102000000_idx.sql",
        &v2("CREATE INDEX CONCURRENTLY t_id ON t (id)", "FIRST"),
    )]);
    let opts = MigrateOptions {
        allow_changed: BTreeSet::from(["20260102000000".to_string()]),
        ..MigrateOptions::default()
    };
    let err = run(&db, &dir, &opts).await.0.unwrap_err();
    assert!(
        matches!(err, MigrateError::PartialChanged { done: 1, .. }),
        "{err}"
    );
    // Fixing the failed statement itself is fine: it resumes there.
    dir.write(&[(
        "20260102000000_idx.sql",
        &v2("CREATE INDEX CONCURRENTLY t_id ON t (id)", "first"),
    )]);
    let (r, events) = run(&db, &dir, &MigrateOptions::default()).await;
    assert_eq!(r.unwrap().applied, ["20260102000000"]);
    assert!(
        events.iter().any(|e| matches!(
            e,
            MigrateEvent::Started {
                resume_at: Some(2),
                ..
            }
        )),
        "{events:?}"
    );
    assert_eq!(
        scalar::<String>(&db, "SELECT string_agg(step, ',' ORDER BY step) FROM log").await,
        "first,last"
    );
    assert!(
        migrate_ok(&db, &dir).await.applied.is_empty(),
        "the new checksum is recorded"
    );
}

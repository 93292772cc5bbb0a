//! Importing sqlx, Drizzle and golang-migrate directories, and adopting what they already applied.

use pgfleet_migrate::history::RowState;
use pgfleet_migrate::import::{self, Tool};
use pgfleet_migrate::{MigrationDir, history, sum};
use pgfleet_testkit::TestDb;

use crate::{Dir, migrate_ok, scalar};

/// Runs the original tool's files by hand and fills its history table the way the tool does.
async fn run_as_tool(db: &TestDb, sql: &[&str], history: &str) {
    let c = db.connect().await;
    for s in sql {
        c.batch_execute(s).await.unwrap();
    }
    c.batch_execute(history).await.unwrap();
}

#[tokio::test]
async fn sqlx_directories_are_imported_and_their_applied_versions_adopted() {
    let src = Dir::new("sqlx-src");
    std::fs::write(
        src.path().join("20240101000000_users.sql"),
        "CREATE TABLE users (id int PRIMARY KEY);\n",
    )
    .unwrap();
    std::fs::write(
        src.path().join("20240102000000_idx.up.sql"),
        "-- no-transaction\nCREATE INDEX CONCURRENTLY users_id ON users (id);\n",
    )
    .unwrap();
    std::fs::write(
        src.path().join("20240102000000_idx.down.sql"),
        "DROP INDEX users_id;\n",
    )
    .unwrap();
    std::fs::write(
        src.path().join("20240103000000_posts.sql"),
        "CREATE TABLE posts (id int);\n",
    )
    .unwrap();
    let dest = Dir::new("sqlx-dest");
    let summary = import::import_dir(Tool::Sqlx, src.path(), dest.path()).unwrap();
    assert_eq!(summary.files.len(), 3);
    assert_eq!(summary.skipped, ["20240102000000_idx.down.sql"]);
    let dir = MigrationDir::load(dest.path()).unwrap();
    sum::verify(&dir).unwrap();
    assert!(
        dir.migrations[1].no_transaction,
        "sqlx's -- no-transaction is kept"
    );

    // sqlx applied the first two on this database.
    let db = TestDb::new().await;
    run_as_tool(
        &db,
        &["CREATE TABLE users (id int PRIMARY KEY)", "CREATE INDEX users_id ON users (id)"],
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL, checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL);
         INSERT INTO _sqlx_migrations VALUES (20240101000000, 'users', now(), true, '\\x00', 1), (20240102000000, 'idx', now(), true, '\\x00', 1);",
    )
    .await;
    let report = migrate_ok(&db, &dest).await;
    assert_eq!(report.adopted, ["20240101000000", "20240102000000"]);
    assert_eq!(report.applied, ["20240103000000"], "only the new one runs");
    let rows = history::read(&db.connect().await, "").await.unwrap();
    assert_eq!(
        rows.iter().filter(|r| r.state == RowState::Adopted).count(),
        2
    );
    assert!(migrate_ok(&db, &dest).await.applied.is_empty());

    // A fresh database runs everything.
    let fresh = TestDb::named("sqlx_fresh").await;
    assert_eq!(migrate_ok(&fresh, &dest).await.applied.len(), 3);

    // A database where sqlx ran a migration the import does not have is refused.
    let ahead = TestDb::named("sqlx_ahead").await;
    run_as_tool(
        &ahead,
        &[],
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL, checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL);
         INSERT INTO _sqlx_migrations VALUES (20240105000000, 'later', now(), true, '\\x00', 1);",
    )
    .await;
    let err = crate::run(&ahead, &dest, &Default::default())
        .await
        .0
        .unwrap_err();
    assert!(
        matches!(err, pgfleet_migrate::MigrateError::ForeignAhead { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("20240105000000"), "{err}");
}

#[tokio::test]
async fn golang_migrate_directories_are_imported_and_a_dirty_version_is_rerun() {
    let src = Dir::new("gm-src");
    for (v, name, sql) in [
        (
            1,
            "users",
            "BEGIN;\nCREATE TABLE users (id int);\nCOMMIT;\n",
        ),
        (2, "posts", "CREATE TABLE posts (id int);\n"),
        (
            3,
            "tags",
            "CREATE TABLE tags (id int);\nCREATE FUNCTION bump() RETURNS void LANGUAGE plpgsql AS $$\nBEGIN\n  UPDATE tags SET id = id + 1;\nEND;\n$$;\n",
        ),
        (
            4,
            "tags_idx",
            "CREATE INDEX CONCURRENTLY tags_id ON tags (id);\n",
        ),
    ] {
        std::fs::write(src.path().join(format!("{v}_{name}.up.sql")), sql).unwrap();
        std::fs::write(src.path().join(format!("{v}_{name}.down.sql")), "select 1;").unwrap();
    }
    let dest = Dir::new("gm-dest");
    let summary = import::import_dir(Tool::GolangMigrate, src.path(), dest.path()).unwrap();
    assert_eq!(summary.files[0], "00000000000001_users.sql");
    assert_eq!(summary.stripped_transactions, ["00000000000001_users.sql"]);
    // golang-migrate ran 1 and failed at 2 (dirty: its implicit transaction rolled back).
    let db = TestDb::new().await;
    run_as_tool(
        &db,
        &["CREATE TABLE users (id int)"],
        "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);
         INSERT INTO schema_migrations VALUES (2, true);",
    )
    .await;
    let report = migrate_ok(&db, &dest).await;
    assert_eq!(report.adopted, ["00000000000001"]);
    assert_eq!(
        report.applied,
        ["00000000000002", "00000000000003", "00000000000004"]
    );
    assert_eq!(
        scalar::<i64>(&db, "SELECT count(*) FROM pgfleet_migrate.history").await,
        4
    );
    // Function bodies keep their BEGIN/END; the concurrent index got the directive.
    db.connect()
        .await
        .batch_execute("SELECT bump()")
        .await
        .unwrap();
    let dir = MigrationDir::load(dest.path()).unwrap();
    assert!(dir.migrations[3].no_transaction);
    assert!(
        dir.migrations[2].sql.contains("BEGIN\n  UPDATE"),
        "{}",
        dir.migrations[2].sql
    );
}

#[tokio::test]
async fn drizzle_journals_are_imported_and_adopted_by_created_at() {
    let src = Dir::new("dz-src");
    std::fs::create_dir_all(src.path().join("meta")).unwrap();
    std::fs::write(
        src.path().join("meta/_journal.json"),
        r#"{"version":"7","dialect":"postgresql","entries":[
            {"idx":0,"version":"7","when":1704110400000,"tag":"0000_flashy_spider","breakpoints":true},
            {"idx":1,"version":"7","when":1704110400500,"tag":"0001_quiet_moon","breakpoints":true},
            {"idx":2,"version":"7","when":1704200000000,"tag":"0002_loud_sun","breakpoints":true}]}"#,
    )
    .unwrap();
    std::fs::write(src.path().join("0000_flashy_spider.sql"), "CREATE TABLE \"users\" (\"id\" serial PRIMARY KEY);\n--> statement-breakpoint\nCREATE TABLE \"posts\" (\"id\" serial PRIMARY KEY);\n").unwrap();
    std::fs::write(
        src.path().join("0001_quiet_moon.sql"),
        "ALTER TABLE \"users\" ADD COLUMN \"name\" text;\n",
    )
    .unwrap();
    std::fs::write(
        src.path().join("0002_loud_sun.sql"),
        "CREATE TABLE \"tags\" (\"id\" serial PRIMARY KEY);\n",
    )
    .unwrap();
    let dest = Dir::new("dz-dest");
    let summary = import::import_dir(Tool::Drizzle, src.path(), dest.path()).unwrap();
    // Two entries in one second get consecutive versions.
    assert_eq!(summary.files[0], "20240101120000_0000_flashy_spider.sql");
    assert_eq!(summary.files[1], "20240101120001_0001_quiet_moon.sql");
    let db = TestDb::new().await;
    run_as_tool(
        &db,
        &[
            "CREATE TABLE users (id serial PRIMARY KEY); CREATE TABLE posts (id serial PRIMARY KEY)",
            "ALTER TABLE users ADD COLUMN name text",
        ],
        "CREATE SCHEMA drizzle; CREATE TABLE drizzle.__drizzle_migrations (id SERIAL PRIMARY KEY, hash text NOT NULL, created_at bigint);
         INSERT INTO drizzle.__drizzle_migrations (hash, created_at) VALUES ('a', 1704110400000), ('b', 1704110400500);",
    )
    .await;
    let report = migrate_ok(&db, &dest).await;
    assert_eq!(report.adopted.len(), 2);
    assert_eq!(
        report.applied,
        ["20240102125320_0002_loud_sun"].map(|s| s[..14].to_string())
    );
    let err = import::import_dir(Tool::Drizzle, src.path(), dest.path()).unwrap_err();
    assert!(err.to_string().contains("already has migrations"), "{err}");
}

//! `gen`: the next migration from schema.sql, verified by replay.

use pgfleet_migrate::generate::{self, GenError, GenOptions, GenOutcome};
use pgfleet_migrate::{MigrationDir, sum};
use pgfleet_pg::source::SchemaSource;
use pgfleet_schema::Hazard;
use pgfleet_testkit::TestDb;

use crate::{Dir, migrate_ok};

const SCHEMA_V1: &str = "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);\n";
const SCHEMA_V2: &str = "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);\n\
CREATE INDEX users_email ON users (email);\n\
CREATE TABLE tags (id bigint PRIMARY KEY, name text NOT NULL UNIQUE);\n\
CREATE FUNCTION tag_count() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM tags $$;\n";

fn at(secs: u64) -> GenOptions {
    GenOptions {
        now: std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
        ..GenOptions::default()
    }
}

#[tokio::test]
async fn gen_writes_migrations_that_reproduce_the_schema_and_then_has_nothing_to_do() {
    let db = TestDb::new().await;
    let dev = pgfleet_pg::connect::parse_url(db.admin_url()).unwrap();
    let dir = Dir::new("gen");
    let v1 = SchemaSource::from_sql("schema.sql", SCHEMA_V1);
    let out = generate::generate(&dev, &dir.load(), &v1, "init", &at(1_798_761_599))
        .await
        .unwrap();
    let GenOutcome::Written { files, .. } = out else {
        panic!("nothing written")
    };
    assert_eq!(files.len(), 1);
    assert!(files[0].ends_with("20261231235959_init.sql"), "{files:?}");
    sum::verify(&dir.load()).unwrap();
    assert!(matches!(
        generate::generate(&dev, &dir.load(), &v1, "again", &at(1_798_761_700))
            .await
            .unwrap(),
        GenOutcome::UpToDate
    ));

    // An index on an existing table is built concurrently, in a file of its own.
    let v2 = SchemaSource::from_sql("schema.sql", SCHEMA_V2);
    assert!(
        !generate::diff(&dev, &dir.load(), &v2, true, &Default::default())
            .await
            .unwrap()
            .is_empty(),
        "gen --check must fail now"
    );
    let out = generate::generate(&dev, &dir.load(), &v2, "tags", &at(1_798_761_700))
        .await
        .unwrap();
    let GenOutcome::Written { files, .. } = out else {
        panic!("nothing written")
    };
    let texts: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    let (online, in_tx): (Vec<&String>, Vec<&String>) = texts
        .iter()
        .partition(|t| t.starts_with("-- pgfleet:no-transaction"));
    assert_eq!(online.len(), 1, "{texts:#?}");
    assert!(
        online[0].contains("CREATE INDEX CONCURRENTLY")
            && online[0].contains("Hazards: index_build"),
        "{}",
        online[0]
    );
    assert!(
        in_tx.iter().any(|t| t.contains("CREATE TABLE tags")),
        "{texts:#?}"
    );
    assert!(
        generate::diff(&dev, &dir.load(), &v2, true, &Default::default())
            .await
            .unwrap()
            .is_empty()
    );

    // The generated migrations bring a real database to the schema.
    migrate_ok(&db, &dir).await;
    let client = db.connect().await;
    let live = pgfleet_pg::introspect::introspect(&client).await.unwrap();
    let want = pgfleet_pg::shadow::desired_model(&dev, &v2, &Default::default())
        .await
        .unwrap();
    let rest = pgfleet_schema::planner::plan(&live, &want, &Default::default());
    assert!(rest.is_empty(), "{}", rest.to_sql());
}

#[tokio::test]
async fn gen_refuses_data_loss_without_consent_and_writes_nothing() {
    let db = TestDb::new().await;
    let dev = pgfleet_pg::connect::parse_url(db.admin_url()).unwrap();
    let dir = Dir::new("genloss");
    let v2 = SchemaSource::from_sql("schema.sql", SCHEMA_V2);
    generate::generate(&dev, &dir.load(), &v2, "init", &at(1_798_761_599))
        .await
        .unwrap();
    let v1 = SchemaSource::from_sql("schema.sql", SCHEMA_V1);
    let err = generate::generate(&dev, &dir.load(), &v1, "drop_tags", &at(1_798_761_700))
        .await
        .unwrap_err();
    assert!(matches!(err, GenError::Refused { .. }), "{err}");
    assert!(
        err.to_string().contains("--allow-hazards data_loss"),
        "{err}"
    );
    assert_eq!(dir.load().migrations.len(), 1);
    let opts = GenOptions {
        allow_hazards: [Hazard::DataLoss, Hazard::BreakingChange].into(),
        ..at(1_798_761_700)
    };
    let out = generate::generate(&dev, &dir.load(), &v1, "drop_tags", &opts)
        .await
        .unwrap();
    assert!(matches!(out, GenOutcome::Written { .. }));
    let text: String = MigrationDir::load(dir.path())
        .unwrap()
        .migrations
        .iter()
        .skip(1)
        .map(|m| m.sql.clone())
        .collect();
    assert!(
        text.contains("data_loss") && text.contains("DROP TABLE tags"),
        "{text}"
    );
}

#[tokio::test]
async fn gen_refuses_a_narrowing_type_change_and_writes_one_that_may_fail_with_a_comment() {
    let db = TestDb::new().await;
    let dev = pgfleet_pg::connect::parse_url(db.admin_url()).unwrap();
    let dir = Dir::new("gentypes");
    let v1 = SchemaSource::from_sql("schema.sql", SCHEMA_V1);
    generate::generate(&dev, &dir.load(), &v1, "init", &at(1_798_761_599))
        .await
        .unwrap();
    // text → varchar(3) may cut values: data_loss, refused without consent.
    let narrow = SchemaSource::from_sql(
        "schema.sql",
        "CREATE TABLE users (id bigint PRIMARY KEY, email varchar(3) NOT NULL);\n",
    );
    let err = generate::generate(&dev, &dir.load(), &narrow, "narrow", &at(1_798_761_700))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GenError::Refused { refused, .. } if refused == &[Hazard::DataLoss]),
        "{err}"
    );
    assert_eq!(dir.load().migrations.len(), 1);
    // bigint → integer fails on a value out of range, loses nothing: written, with its hazard.
    let smaller = SchemaSource::from_sql(
        "schema.sql",
        "CREATE TABLE users (id integer PRIMARY KEY, email text NOT NULL);\n",
    );
    let out = generate::generate(&dev, &dir.load(), &smaller, "smaller", &at(1_798_761_800))
        .await
        .unwrap();
    assert!(matches!(out, GenOutcome::Written { .. }));
    let text = &MigrationDir::load(dir.path()).unwrap().migrations[1].sql;
    assert!(
        text.contains("may_fail") && text.contains("ALTER COLUMN id TYPE integer;"),
        "{text}"
    );
}

#[tokio::test]
async fn gen_refuses_an_edited_directory_and_reports_replay_errors_with_the_file() {
    let db = TestDb::new().await;
    let dev = pgfleet_pg::connect::parse_url(db.admin_url()).unwrap();
    let dir = Dir::with(
        "genbad",
        &[(
            "20260101000000_a.sql",
            "CREATE TABLE a (id int);\nCREATE TABLE a (id int);\n",
        )],
    );
    let v1 = SchemaSource::from_sql("schema.sql", SCHEMA_V1);
    let err = generate::generate(&dev, &dir.load(), &v1, "x", &GenOptions::default())
        .await
        .unwrap_err();
    let chain = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(chain.contains("20260101000000_a.sql:2"), "{chain}");
    std::fs::write(dir.path().join("20260102000000_b.sql"), "select 1;").unwrap();
    let err = generate::generate(&dev, &dir.load(), &v1, "x", &GenOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, GenError::Sum(_)), "{err}");
    let err = generate::generate(&dev, &dir.load(), &v1, "Bad Name", &GenOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, GenError::BadName(_)), "{err}");
}

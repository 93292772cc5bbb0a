//! Connecting and shadow databases when things go wrong.

use std::time::{Duration, Instant};

use pgfleet_pg::{connect, shadow, source::SchemaSource};
use pgfleet_testkit::TestDb;

#[tokio::test]
async fn a_server_that_accepts_and_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and hold the connection without a word.
    let held = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(socket);
    });
    let config = connect::parse_url(&format!(
        "postgres://x@127.0.0.1:{port}/db?connect_timeout=1"
    ))
    .unwrap();
    let started = Instant::now();
    let err = connect::connect(&config).await.unwrap_err().to_string();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.contains("no answer within 1s"), "{err}");
    held.abort();
}

#[tokio::test]
async fn stale_shadow_databases_left_by_a_killed_run_are_dropped() {
    let db = TestDb::new().await;
    let admin = pgfleet_testkit::connect(db.admin_url()).await;
    let stale = format!("pgfleet_shadow_1000_{}", std::process::id());
    let fresh = format!(
        "pgfleet_shadow_{}_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        std::process::id()
    );
    for name in [&stale, &fresh] {
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
    }
    let config = connect::parse_url(db.admin_url()).unwrap();
    shadow::desired_model(
        &config,
        &SchemaSource::from_sql("s.sql", "CREATE TABLE t (id int);"),
        &Default::default(),
    )
    .await
    .unwrap();
    let exists = |name: String| {
        let admin = &admin;
        async move {
            admin
                .query_one(
                    "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)",
                    &[&name],
                )
                .await
                .unwrap()
                .get::<_, bool>(0)
        }
    };
    assert!(
        !exists(stale.clone()).await,
        "a shadow older than 15 minutes is swept"
    );
    assert!(
        exists(fresh.clone()).await,
        "a recent one may belong to a running gen: kept"
    );
    admin
        .batch_execute(&format!("DROP DATABASE {fresh}"))
        .await
        .unwrap();
}

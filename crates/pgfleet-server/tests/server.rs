//! `pgfleet serve`'s HTTP routes against a real catalog: in process (`app().oneshot()`), and once
//! through a real listener with a graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use pgfleet::control::config::Config;
use pgfleet::control::provision::CreateOptions;
use pgfleet::control::secrets::MasterKey;
use pgfleet::control::{Control, catalog};
use pgfleet_server::catalog_gauges::CatalogGauges;
use pgfleet_testkit::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

const TARGET: &str = "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL);\n";

/// A fleet with a catalog on a fresh test database, the test cluster as its server, and `target`.
async fn fleet(db: &TestDb) -> (Control, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "pgfleet-server-test-{}-{}",
        std::process::id(),
        db.name()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("20260101000000_init.sql"), TARGET).unwrap();
    let migrations = pgfleet::migrate::MigrationDir::load(&dir).unwrap();
    pgfleet::migrate::sum::write(&migrations).unwrap();
    let migrations = pgfleet::migrate::MigrationDir::load(&dir).unwrap();
    let url = pgfleet::pg::connect::parse_url(db.url()).unwrap();
    catalog::init(&url, Some(&migrations)).await.unwrap();
    let control = Control::connect(Config::new(db.url(), MasterKey::generate().unwrap()))
        .await
        .unwrap();
    control
        .add_server("main", db.admin_url(), 100, 1)
        .await
        .unwrap();
    (control, dir)
}

async fn get(app: &axum::Router, path: &str) -> (StatusCode, String) {
    let res = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn health_readiness_and_metrics_answer_from_the_catalog() {
    let db = TestDb::new().await;
    let (control, dir) = fleet(&db).await;
    control
        .provision("alice", &CreateOptions::default(), Duration::from_secs(120))
        .await
        .unwrap();
    let gauges = Arc::new(CatalogGauges::new(Duration::from_secs(5)));
    gauges.refresh(&control).await;
    let metrics = pgfleet_server::metrics_handle().unwrap();
    let app = pgfleet_server::app(control.clone(), metrics, gauges);

    assert_eq!(get(&app, "/healthz").await, (StatusCode::OK, "ok\n".into()));
    assert_eq!(
        get(&app, "/readyz").await,
        (StatusCode::OK, "ready\n".into())
    );
    let (status, text) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("pgfleet_catalog_up 1"), "{text}");
    let ready = text
        .lines()
        .find(|l| l.starts_with("pgfleet_tenants{") && l.contains("state=\"ready\""))
        .unwrap_or_else(|| panic!("no ready tenants gauge in:\n{text}"));
    assert!(ready.ends_with(" 1"), "{ready}");
    // The provisioning of this process was counted.
    assert!(
        text.lines()
            .any(|l| l.starts_with("pgfleet_operations_total") && l.contains("outcome=\"done\"")),
        "{text}"
    );
    assert_eq!(get(&app, "/nope").await.0, StatusCode::NOT_FOUND);

    // A process that stops taking work is not ready any more.
    control.stop_taking_work();
    let (status, text) = get(&app, "/readyz").await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    );
    control.drop_tenant("alice").await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_real_listener_serves_until_shutdown_and_then_returns() {
    let db = TestDb::new().await;
    let (control, dir) = fleet(&db).await;
    let listener = pgfleet_server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(pgfleet_server::serve(
        control,
        listener,
        pgfleet_server::ServeOptions {
            workers: None,
            metrics_interval: Duration::from_millis(200),
            sql: None,
            ..pgfleet_server::ServeOptions::default()
        },
        async move {
            let _ = stopped.await;
        },
    ));
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: pgfleet\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok\n"), "{answer}");
    // A second bind of the same address says what to do.
    let err = pgfleet_server::bind(addr).await.unwrap_err().to_string();
    assert!(err.contains("--listen"), "{err}");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

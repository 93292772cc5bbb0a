//! Placement across several servers, and a server that stops answering.

use std::time::Duration;

use pgfleet_control::ControlError;
use pgfleet_control::provision::CreateOptions;
use pgfleet_control::tenant::{Mode, State};
use pgfleet_testkit::TestCluster;

use crate::Fleet;

const WAIT: Duration = Duration::from_secs(120);

fn schema() -> CreateOptions {
    CreateOptions {
        mode: Some(Mode::Schema),
        server: None,
    }
}

#[tokio::test]
async fn placement_honours_capacity_weight_and_drain() {
    let f = Fleet::new().await;
    f.control.drain_server("main").await.unwrap();
    let (b, c) = (TestCluster::start(), TestCluster::start());
    f.control.add_server("small", &b.url(), 2, 1).await.unwrap();
    f.control.add_server("heavy", &c.url(), 4, 3).await.unwrap();
    let mut placed = Vec::new();
    for i in 0..6 {
        let t = f
            .control
            .provision(&format!("p{i}"), &schema(), WAIT)
            .await
            .unwrap();
        placed.push(t.server.unwrap());
    }
    let count = |s: &str| placed.iter().filter(|p| *p == s).count();
    assert_eq!(count("main"), 0, "a draining server takes no tenants");
    assert_eq!((count("small"), count("heavy")), (2, 4), "{placed:?}");
    // The weighted server fills first: the first three go to it.
    assert_eq!(&placed[..3], ["heavy", "heavy", "heavy"], "{placed:?}");
    // Everything full: a clear error, and nothing created.
    let before = f.control.tenants(None).await.unwrap().len();
    let err = f.control.create_tenant("p6", &schema()).await.unwrap_err();
    assert!(matches!(err, ControlError::NoCapacity(_)), "{err}");
    assert!(err.to_string().contains("full or draining"), "{err}");
    assert_eq!(f.control.tenants(None).await.unwrap().len(), before);
    // An explicit server must exist and have room.
    let err = f
        .control
        .create_tenant(
            "p7",
            &CreateOptions {
                mode: Some(Mode::Schema),
                server: Some("nope".into()),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::UnknownServer(_)), "{err}");
    // Activating the drained server makes room again.
    f.control.activate_server("main").await.unwrap();
    assert_eq!(
        f.control
            .provision("p6", &schema(), WAIT)
            .await
            .unwrap()
            .server
            .as_deref(),
        Some("main")
    );
    let servers = f.control.servers().await.unwrap();
    assert!(
        servers.iter().all(|s| s.tenants <= i64::from(s.capacity)),
        "{servers:?}"
    );
    f.cleanup().await;
}

#[tokio::test]
async fn a_stopped_server_fails_the_tenant_with_the_error_and_a_retry_after_restart_succeeds() {
    let f = Fleet::new().await;
    let mut x = TestCluster::start();
    f.control.add_server("x", &x.url(), 10, 1).await.unwrap();
    f.control.drain_server("main").await.unwrap();
    x.stop();
    let err = f
        .control
        .provision("unlucky", &CreateOptions::default(), WAIT)
        .await
        .unwrap_err();
    let ControlError::Failed { step, error, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(step, "role");
    assert!(error.contains("cannot connect"), "{error}");
    let t = f.control.tenant("unlucky").await.unwrap();
    assert_eq!(t.state, State::Failed);
    assert!(t.last_error.is_some());
    x.restart();
    let t = f
        .control
        .provision("unlucky", &CreateOptions::default(), WAIT)
        .await
        .unwrap();
    assert_eq!((t.state, t.server.as_deref()), (State::Ready, Some("x")));
    f.cleanup().await;
}

#[tokio::test]
async fn adding_a_server_checks_it_and_says_what_is_missing() {
    let f = Fleet::new().await;
    let admin = pgfleet_testkit::connect(f.catalog.admin_url()).await;
    let role = format!("weak_{}", std::process::id());
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD 'weakpw'"
        ))
        .await
        .unwrap();
    let port = f
        .catalog
        .admin_url()
        .rsplit_once(':')
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let url = format!("postgres://{role}:weakpw@127.0.0.1:{port}/postgres");
    let err = f
        .control
        .add_server("weak", &url, 10, 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("CREATEDB and CREATEROLE") && !err.contains("weakpw"),
        "{err}"
    );
    let err = f
        .control
        .add_server("gone", "postgres://postgres:x@127.0.0.1:1/postgres", 10, 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot connect"), "{err}");
    let err = f
        .control
        .add_server("main", f.catalog.admin_url(), 10, 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("already exists"), "{err}");
    let err = f
        .control
        .add_server("Bad Name", f.catalog.admin_url(), 10, 1)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("lowercase"), "{err}");
    admin
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
}

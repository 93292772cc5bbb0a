//! Fleet operations through the library: what `migrate --all` and `check` do with tenants that are
//! behind, drifted, or given migrations they cannot take; targets that would split the fleet; a
//! catalog that restarts.

use std::sync::Arc;
use std::time::Duration;

use pgfleet_control::fleet::{FleetOptions, Outcome};
use pgfleet_control::provision::CreateOptions;
use pgfleet_control::tenant::Mode;
use pgfleet_testkit::TestCluster;

use crate::{Fleet, TARGET, TargetDir};

const WAIT: Duration = Duration::from_secs(120);

fn schema_mode() -> CreateOptions {
    CreateOptions {
        mode: Some(Mode::Schema),
        server: None,
    }
}

fn quiet() -> pgfleet_control::fleet::ProgressFn {
    Arc::new(|_| {})
}

fn with(extra: &[(&'static str, &'static str)]) -> TargetDir {
    let mut files = TARGET.to_vec();
    files.extend_from_slice(extra);
    TargetDir::new(&files)
}

#[tokio::test]
async fn a_target_that_edits_or_drops_a_recorded_migration_is_refused() {
    let f = Fleet::new().await;
    // Once a tenant ran the recorded migrations (before that, they may be corrected: see
    // targets.rs).
    f.control
        .provision("ran-them", &CreateOptions::default(), WAIT)
        .await
        .unwrap();
    let edited = TargetDir::new(&[
        TARGET[0],
        (
            TARGET[1].0,
            "CREATE TABLE tags (id serial PRIMARY KEY, name text NOT NULL DEFAULT 'x');",
        ),
    ]);
    let err = f.record(&edited.load()).await.unwrap_err().to_string();
    assert!(
        err.contains("20260102000000_more.sql was changed") && err.contains("new migration"),
        "{err}"
    );
    let dropped = TargetDir::new(&[TARGET[0]]);
    let err = f.record(&dropped.load()).await.unwrap_err().to_string();
    assert!(err.contains("20260102000000_more.sql is missing"), "{err}");
    assert_eq!(f.control.target().await.unwrap().version, "20260102000000");
}

#[tokio::test]
async fn a_tenant_behind_the_target_is_not_drift_and_is_not_repaired_forward() {
    let f = Fleet::new().await;
    let t = f
        .control
        .provision("behind", &schema_mode(), WAIT)
        .await
        .unwrap();
    let next = with(&[(
        "20260103000000_labels.sql",
        "CREATE TABLE labels (id bigint PRIMARY KEY, name text NOT NULL);",
    )]);
    f.record(&next.load()).await.unwrap();
    let d = f.control.check("behind").await.unwrap();
    // Behind is its own state: no drift, but not clean either (migrations are pending).
    assert!(d.steps.is_empty() && d.security.is_empty(), "{d:?}");
    assert!(d.is_behind() && !d.is_clean(), "{d:?}");
    assert_eq!(d.target, "20260102000000");
    assert_eq!(d.behind.as_deref(), Some("20260103000000"));
    let r = f.control.fix("behind", "test").await.unwrap();
    assert!(r.applied.is_empty(), "{r:?}");
    // The rollout then applies it normally.
    let report = f
        .control
        .migrate_all(None, &FleetOptions::default(), quiet())
        .await
        .unwrap();
    assert_eq!((report.migrated, report.failed), (1, 0), "{report:?}");
    assert!(f.control.check("behind").await.unwrap().is_clean());
    assert_eq!(
        f.control
            .tenant("behind")
            .await
            .unwrap()
            .schema_version
            .as_deref(),
        Some("20260103000000")
    );
    let _ = t;
    f.cleanup().await;
}

#[tokio::test]
async fn verify_catches_schema_tenant_drift_and_records_the_version_reached() {
    let f = Fleet::new().await;
    let t = f
        .control
        .provision("drifted", &schema_mode(), WAIT)
        .await
        .unwrap();
    let admin = pgfleet_testkit::connect(f.catalog.admin_url()).await;
    let shared = admin
        .query_one("SELECT current_database()::text", &[])
        .await
        .unwrap()
        .get::<_, String>(0);
    let _ = shared;
    let db = pgfleet_testkit::connect(
        &f.catalog
            .admin_url()
            .rsplit_once('/')
            .map(|(base, _)| format!("{base}/{}", t.database))
            .unwrap(),
    )
    .await;
    db.batch_execute(&format!(
        "ALTER TABLE {}.notes ADD COLUMN junk int",
        t.schema
    ))
    .await
    .unwrap();
    let next = with(&[(
        "20260103000000_labels.sql",
        "CREATE TABLE labels (id bigint PRIMARY KEY, name text NOT NULL);",
    )]);
    let opts = FleetOptions {
        verify: true,
        tenants: vec!["drifted".into()],
        ..FleetOptions::default()
    };
    let report = f
        .control
        .migrate_all(Some(&next.load()), &opts, quiet())
        .await
        .unwrap();
    assert_eq!(report.failed, 1, "{report:?}");
    let r = &report.tenants[0];
    assert_eq!(r.outcome, Outcome::Failed);
    let e = r.error.as_deref().unwrap();
    assert!(e.contains("applied") && e.contains("junk"), "{e}");
    let t = f.control.tenant("drifted").await.unwrap();
    assert_eq!(t.schema_version.as_deref(), Some("20260103000000"));
    assert!(t.migrate_error.unwrap().contains("verification"));
    f.cleanup().await;
}

#[tokio::test]
async fn a_migration_that_creates_a_schema_is_refused_for_schema_tenants_before_anything_runs() {
    let f = Fleet::new().await;
    f.control
        .provision("s1", &schema_mode(), WAIT)
        .await
        .unwrap();
    f.control
        .provision("s2", &schema_mode(), WAIT)
        .await
        .unwrap();
    let next = with(&[(
        "20260103000000_analytics.sql",
        "CREATE SCHEMA analytics;\nCREATE TABLE analytics.page_views (id bigint PRIMARY KEY);",
    )]);
    let report = f
        .control
        .migrate_all(
            Some(&next.load()),
            &FleetOptions {
                continue_on_error: true,
                ..FleetOptions::default()
            },
            quiet(),
        )
        .await
        .unwrap();
    assert_eq!((report.failed, report.migrated), (2, 0), "{report:?}");
    assert!(
        report.tenants[0]
            .error
            .as_deref()
            .unwrap()
            .contains("20260103000000_analytics.sql creates a schema")
    );
    let admin = pgfleet_testkit::connect(f.catalog.admin_url()).await;
    let _ = admin;
    f.cleanup().await;
}

#[tokio::test]
async fn a_restarted_catalog_is_reconnected() {
    let mut cluster = TestCluster::start();
    let key = pgfleet_control::secrets::MasterKey::generate().unwrap();
    let url = cluster.url_for("catalog_restart");
    let target = TargetDir::new(TARGET);
    pgfleet_control::catalog::init(
        &pgfleet_pg::connect::parse_url(&url).unwrap(),
        Some(&target.load()),
    )
    .await
    .unwrap();
    let control =
        pgfleet_control::Control::connect(pgfleet_control::config::Config::new(&url, key))
            .await
            .unwrap();
    let pid = |c: &pgfleet_control::Control| {
        let c = c.clone();
        async move {
            c.catalog()
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .map(|r| r.get::<_, i32>(0))
        }
    };
    let before = pid(&control).await.unwrap();
    cluster.stop();
    cluster.restart();
    // The old session is gone: a use that finds it closed starts a reconnection in the background
    // (and ensure_catalog, which the workers call before each round, waits for one).
    let started = std::time::Instant::now();
    let after = loop {
        control.ensure_catalog().await.ok();
        match pid(&control).await {
            Ok(p) if p != before => break p,
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never reconnected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_ne!(before, after);
    assert!(control.servers().await.unwrap().is_empty());
}

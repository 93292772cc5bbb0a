//! Drift, additive repair with corrections, check-user, validate, reset.

use std::time::Duration;

use pgfleet_control::provision::CreateOptions;
use pgfleet_control::tenant::Mode;

use crate::{Fleet, try_connect};

const WAIT: Duration = Duration::from_secs(120);

async fn drift_and_fix(mode: Mode) {
    let f = Fleet::new().await;
    let key = format!("drifty-{mode}");
    let t = f
        .control
        .provision(
            &key,
            &CreateOptions {
                mode: Some(mode),
                server: None,
            },
            WAIT,
        )
        .await
        .unwrap();
    assert!(f.control.check(&key).await.unwrap().is_clean());
    let (_, findings, _) = f.control.check_user(&key).await.unwrap();
    assert!(findings.iter().all(|x| x.ok), "{findings:?}");

    // Out of band: a table goes missing.
    let server = f
        .catalog
        .admin_url()
        .rsplit_once('/')
        .unwrap()
        .0
        .to_string();
    let admin = pgfleet_testkit::connect(&format!("{server}/{}", t.database)).await;
    let qualify = |name: &str| {
        if mode == Mode::Schema {
            format!("{}.{name}", t.schema)
        } else {
            name.to_string()
        }
    };
    admin
        .batch_execute(&format!("DROP TABLE {} CASCADE", qualify("tags")))
        .await
        .unwrap();
    let d = f.control.check(&key).await.unwrap();
    assert!(!d.is_clean());
    assert!(
        d.steps
            .iter()
            .any(|s| s.description.starts_with("create table") && s.description.ends_with(".tags")),
        "{d:?}"
    );
    assert_eq!(d.unrepairable(), 0, "{d:?}");
    let (_, findings, _) = f.control.check_user(&key).await.unwrap();
    assert!(
        findings.iter().any(|x| x.check == "drift" && !x.ok),
        "{findings:?}"
    );

    let repair = f.control.fix(&key, "test").await.unwrap();
    assert!(
        repair.applied.iter().any(|a| a.contains("tags")),
        "{repair:?}"
    );
    assert!(repair.remaining.is_clean(), "{:?}", repair.remaining);
    // The tenant's role can use the restored table.
    let c = try_connect(f.control.credentials(&key).await.unwrap().expose())
        .await
        .unwrap();
    c.batch_execute("INSERT INTO notes (body) VALUES ('x'); INSERT INTO tags (note_id, name) SELECT id, 't' FROM notes").await.unwrap();
    let cat = f.catalog.connect().await;
    let corrections: i64 = cat
        .query_one("SELECT count(*) FROM pgfleet.events WHERE kind = 'tenant.correction' AND tenant_id = $1 AND detail->>'statement' LIKE '%tags%'", &[&t.id])
        .await
        .unwrap()
        .get(0);
    assert!(corrections >= 1);

    // A missing index on an existing table is rebuilt CONCURRENTLY (outside any transaction).
    admin
        .batch_execute(&format!("DROP INDEX {}", qualify("notes_embedding")))
        .await
        .unwrap();
    let repair = f.control.fix(&key, "test").await.unwrap();
    assert!(
        repair.applied.iter().any(|a| a.contains("notes_embedding")),
        "{repair:?}"
    );
    assert!(repair.remaining.is_clean(), "{:?}", repair.remaining);

    // Destructive drift (an extra column) is reported and never "fixed".
    admin
        .batch_execute(&format!(
            "ALTER TABLE {} ADD COLUMN extra int",
            qualify("tags")
        ))
        .await
        .unwrap();
    let repair = f.control.fix(&key, "test").await.unwrap();
    assert!(repair.applied.is_empty(), "{repair:?}");
    assert_eq!(repair.remaining.unrepairable(), 1, "{:?}", repair.remaining);
    assert!(
        repair.remaining.steps[0].description.contains("extra"),
        "{:?}",
        repair.remaining
    );

    // Reset re-creates it from the target: the extra column (and the data) are gone.
    let again = f.control.reset_tenant(&key, WAIT).await.unwrap();
    assert_eq!(again.id, t.id);
    assert!(f.control.check(&key).await.unwrap().is_clean());
    let c = try_connect(f.control.credentials(&key).await.unwrap().expose())
        .await
        .unwrap();
    assert_eq!(
        c.query_one("SELECT count(*) FROM notes", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        0
    );
    f.cleanup().await;
}

#[tokio::test]
async fn drift_is_reported_additive_drift_repaired_with_corrections_destructive_drift_left_database()
 {
    drift_and_fix(Mode::Database).await;
}

#[tokio::test]
async fn drift_is_reported_additive_drift_repaired_with_corrections_destructive_drift_left_schema()
{
    drift_and_fix(Mode::Schema).await;
}

#[tokio::test]
async fn validate_reports_every_server_and_failed_tenants() {
    let f = Fleet::new().await;
    let findings = f.control.validate().await.unwrap();
    assert!(findings.iter().all(|x| x.ok), "{findings:?}");
    let mut x = pgfleet_testkit::TestCluster::start();
    f.control.add_server("x", &x.url(), 5, 1).await.unwrap();
    x.stop();
    let findings = f.control.validate().await.unwrap();
    let bad: Vec<_> = findings.iter().filter(|x| !x.ok).collect();
    assert_eq!(bad.len(), 1, "{findings:?}");
    assert!(
        bad[0].check == "server x" && bad[0].detail.contains("cannot connect"),
        "{bad:?}"
    );
    x.restart();
}

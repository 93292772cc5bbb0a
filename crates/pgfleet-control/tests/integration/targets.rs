//! Recording the fleet's target: a migration that cannot run is never recorded, a rollout that
//! failed everywhere can be corrected by recording the fixed directory, and new tenants are
//! provisioned to the newest validated target (docs/fleet.md, "A rollout failed").

use std::sync::Arc;
use std::time::Duration;

use pgfleet_control::ControlError;
use pgfleet_control::fleet::{FleetOptions, Outcome};
use pgfleet_control::provision::CreateOptions;

use crate::{Fleet, TARGET, TargetDir, try_connect};

const WAIT: Duration = Duration::from_secs(120);

fn quiet() -> pgfleet_control::fleet::ProgressFn {
    Arc::new(|_| {})
}

fn with(extra: &[(&'static str, &'static str)]) -> TargetDir {
    let mut files = TARGET.to_vec();
    files.extend_from_slice(extra);
    TargetDir::new(&files)
}

#[tokio::test]
async fn a_migration_that_cannot_run_is_never_recorded_and_tenants_keep_being_created() {
    let f = Fleet::new().await;
    f.control
        .provision("before", &CreateOptions::default(), WAIT)
        .await
        .unwrap();
    let broken = with(&[(
        "20260103000000_broken.sql",
        "CREATE TABLE labels (\n    id bigint PRIMARY KEY,\n    name text NOT NULL,\n);\n",
    )]);
    for attempt in ["record", "migrate --all"] {
        let err = if attempt == "record" {
            f.record(&broken.load()).await.unwrap_err()
        } else {
            f.control
                .migrate_all(Some(&broken.load()), &FleetOptions::default(), quiet())
                .await
                .unwrap_err()
        };
        assert!(matches!(err, ControlError::InvalidTarget { .. }), "{err:?}");
        let text = format!("{err:#}")
            + &std::error::Error::source(&err)
                .map(|s| s.to_string())
                .unwrap_or_default();
        assert!(
            text.contains("20260103000000_broken.sql:4") && text.contains("not recorded"),
            "{attempt}: {text}"
        );
        assert_eq!(f.control.target().await.unwrap().version, "20260102000000");
    }
    // Nothing is wedged: tenants are created as before.
    let t = f
        .control
        .provision("after", &CreateOptions::default(), WAIT)
        .await
        .unwrap();
    assert_eq!(t.schema_version.as_deref(), Some("20260102000000"));
    f.cleanup().await;
}

#[tokio::test]
async fn a_rollout_that_failed_everywhere_is_corrected_by_recording_the_fixed_migration() {
    let f = Fleet::new().await;
    f.control
        .provision("has-data", &CreateOptions::default(), WAIT)
        .await
        .unwrap();
    try_connect(f.control.credentials("has-data").await.unwrap().expose())
        .await
        .unwrap()
        .batch_execute(
            "INSERT INTO notes (body) VALUES ('n'); INSERT INTO tags (note_id, name) SELECT id, 'not a number' FROM notes",
        )
        .await
        .unwrap();
    // Runs from nothing (so it is recorded), fails on the tenant's data.
    let failing = with(&[(
        "20260103000000_numbers.sql",
        "ALTER TABLE tags ALTER COLUMN name TYPE integer USING name::integer;",
    )]);
    let report = f
        .control
        .migrate_all(Some(&failing.load()), &FleetOptions::default(), quiet())
        .await
        .unwrap();
    assert_eq!((report.migrated, report.failed), (0, 1), "{report:?}");
    assert_eq!(report.tenants[0].outcome, Outcome::Failed);
    // New tenants are still created (at the new target: it is valid, they have no data).
    let fresh = f
        .control
        .provision("fresh", &CreateOptions::default(), WAIT)
        .await
        .unwrap();
    assert_eq!(fresh.schema_version.as_deref(), Some("20260103000000"));
    // A tenant has applied it now: changing it is refused...
    let fixed = with(&[(
        "20260103000000_numbers.sql",
        "ALTER TABLE notes ADD COLUMN number integer;",
    )]);
    let err = f.record(&fixed.load()).await.unwrap_err().to_string();
    assert!(err.contains("tenants ran the recorded text"), "{err}");
    // ...until nobody has: the operator drops the new tenant, records the fix, rolls it out.
    f.control.drop_tenant("fresh").await.unwrap();
    let report = f
        .control
        .migrate_all(Some(&fixed.load()), &FleetOptions::default(), quiet())
        .await
        .unwrap();
    assert!(report.target_changed, "{report:?}");
    assert_eq!((report.migrated, report.failed), (1, 0), "{report:?}");
    assert!(f.control.check("has-data").await.unwrap().is_clean());
    // Removing a migration nobody applied works the same way.
    let extra = with(&[
        (
            "20260103000000_numbers.sql",
            "ALTER TABLE notes ADD COLUMN number integer;",
        ),
        (
            "20260104000000_more.sql",
            "ALTER TABLE notes ADD COLUMN more integer CHECK (more > 0);",
        ),
    ]);
    f.record(&extra.load()).await.unwrap();
    f.record(&fixed.load()).await.unwrap();
    assert_eq!(f.control.target().await.unwrap().version, "20260103000000");
    f.cleanup().await;
}

#[tokio::test]
async fn new_tenants_get_the_newest_validated_target_when_the_current_one_never_ran() {
    let f = Fleet::new().await;
    // A catalog wedged by an older pgfleet: a current target that was never validated and does
    // not run.
    let c = f.catalog.connect().await;
    c.batch_execute(
        "UPDATE pgfleet.targets SET is_current = false;
         INSERT INTO pgfleet.targets (version, dir_hash, files, is_current, validated)
         SELECT '20260109000000', 'sha256:broken', files || '[{\"file_name\": \"20260109000000_broken.sql\", \"sql\": \"CREATE TABLE (;\", \"checksum\": \"x\"}]'::jsonb, true, false
         FROM pgfleet.targets WHERE version = '20260102000000'",
    )
    .await
    .unwrap();
    let t = f
        .control
        .provision("unwedged", &CreateOptions::default(), WAIT)
        .await
        .unwrap();
    assert_eq!(t.schema_version.as_deref(), Some("20260102000000"));
    f.cleanup().await;
}

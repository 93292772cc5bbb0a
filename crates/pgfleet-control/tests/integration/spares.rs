//! Spare schemas: schema tenants claim a verified spare instead of building their schema.

use std::time::Duration;

use pgfleet_control::provision::CreateOptions;
use pgfleet_control::tenant::{Mode, State};
use pgfleet_testkit::TestCluster;

use crate::{Fleet, TARGET, TargetDir, try_connect};

const WAIT: Duration = Duration::from_secs(120);

fn on_own() -> CreateOptions {
    CreateOptions {
        mode: Some(Mode::Schema),
        server: Some("own".into()),
    }
}

/// (name, is marked as a spare of the current target) of every spare schema on the server.
async fn spares(shared_db: &tokio_postgres::Client, marker_of: &str) -> Vec<(String, bool)> {
    shared_db
        .query(
            "SELECT nspname::text, coalesce(obj_description(oid, 'pg_namespace'), '') LIKE '%' || $1 || '%'
             FROM pg_namespace WHERE nspname LIKE 'pgfleet\\_spare\\_%' ORDER BY 1",
            &[&marker_of],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn from_spare(f: &Fleet, key: &str) -> bool {
    f.control
        .catalog()
        .query_one(
            "SELECT coalesce(bool_or((detail->>'from_spare')::boolean), false) FROM pgfleet.events
             WHERE kind = 'tenant.ready' AND tenant_key = $1",
            &[&key],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn schema_tenants_claim_verified_spares_and_stale_or_unfinished_spares_are_dropped() {
    let f = Fleet::new().await;
    let own = TestCluster::start();
    f.control
        .add_server("own", &own.url(), 100, 1)
        .await
        .unwrap();
    let target = f.control.target().await.unwrap();

    // No spares yet: built on demand.
    let first = f.control.provision("first", &on_own(), WAIT).await.unwrap();
    assert!(!from_spare(&f, "first").await);
    let shared = try_connect(&own.url_for("pgfleet_tenants")).await.unwrap();
    assert!(spares(&shared, &target.dir_hash).await.is_empty());

    // A half-built spare from a crashed builder (no mark) is dropped by the next refill.
    shared
        .batch_execute("CREATE SCHEMA pgfleet_spare_000000dead00; CREATE TABLE pgfleet_spare_000000dead00.notes (id int)")
        .await
        .unwrap();
    assert_eq!(f.control.refill_spares("own").await.unwrap(), 4);
    let pool = spares(&shared, &target.dir_hash).await;
    assert_eq!(pool.len(), 4, "{pool:?}");
    assert!(
        pool.iter()
            .all(|(n, marked)| *marked && n != "pgfleet_spare_000000dead00")
    );
    // Full: nothing more to build.
    assert_eq!(f.control.refill_spares("own").await.unwrap(), 0);

    // A claimed spare is the tenant's schema: verified, usable by its role only, history moved.
    let t = f
        .control
        .provision("claimer", &on_own(), WAIT)
        .await
        .unwrap();
    assert_eq!(t.state, State::Ready);
    assert!(from_spare(&f, "claimer").await);
    assert_eq!(t.schema_version.as_deref(), Some(target.version.as_str()));
    assert_eq!(spares(&shared, &target.dir_hash).await.len(), 3);
    assert!(f.control.verify(&t, &target).await.unwrap().is_empty());
    let history: Vec<String> = shared
        .query(
            "SELECT scope FROM pgfleet_migrate.history ORDER BY scope, version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        history.iter().filter(|s| **s == t.schema).count(),
        TARGET.len(),
        "{history:?}"
    );
    let live: Vec<String> = spares(&shared, &target.dir_hash)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for s in &history {
        assert!(
            *s == t.schema || *s == first.schema || live.contains(s),
            "history of a schema that is gone: {s} ({history:?})"
        );
    }
    let tc = try_connect(f.control.credentials("claimer").await.unwrap().expose())
        .await
        .unwrap();
    tc.batch_execute("INSERT INTO notes (body, embedding) VALUES ('x', '[1,0,0]')")
        .await
        .unwrap();
    let n: i64 = tc
        .query_one("SELECT note_count()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // A spare is nobody's: the tenant cannot read one.
    let err = tc
        .query_one(&format!("SELECT count(*) FROM {}.notes", live[0]), &[])
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501", "{err}");

    // Racing claims: 6 tenants at once for 3 spares; each spare goes to one tenant at most.
    let keys: Vec<String> = (0..6).map(|i| format!("race-{i}")).collect();
    let mut tasks = Vec::new();
    for k in &keys {
        let c = f.control.clone();
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            c.provision(&k, &on_own(), WAIT).await
        }));
    }
    let mut claimed = 0;
    for (k, task) in keys.iter().zip(tasks) {
        let t = task.await.unwrap().unwrap();
        assert_eq!(t.state, State::Ready);
        assert!(
            f.control.verify(&t, &target).await.unwrap().is_empty(),
            "{k}"
        );
        claimed += usize::from(from_spare(&f, k).await);
    }
    assert!((1..=3).contains(&claimed), "{claimed}");
    assert_eq!(spares(&shared, &target.dir_hash).await.len(), 3 - claimed);

    // A process that keeps spares tops the pool up after a schema tenant.
    f.control.keep_spares(true);
    f.control.provision("kept", &on_own(), WAIT).await.unwrap();
    let started = std::time::Instant::now();
    while spares(&shared, &target.dir_hash).await.len() < 4 {
        assert!(started.elapsed() < WAIT, "the pool was not refilled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f.control.keep_spares(false);

    // A new target: old spares are never claimed, and the next refill replaces them.
    let mut files = TARGET.to_vec();
    files.push((
        "20260103000000_pinned.sql",
        "ALTER TABLE notes ADD COLUMN pinned boolean NOT NULL DEFAULT false;",
    ));
    let dir = TargetDir::new(&files);
    f.record(&dir.load()).await.unwrap();
    let new_target = f.control.target().await.unwrap();
    let t = f
        .control
        .provision("after-change", &on_own(), WAIT)
        .await
        .unwrap();
    assert!(!from_spare(&f, "after-change").await);
    assert_eq!(t.schema_version.as_deref(), Some("20260103000000"));
    assert!(
        spares(&shared, &new_target.dir_hash)
            .await
            .iter()
            .all(|(_, m)| !m)
    );
    assert_eq!(f.control.refill_spares("own").await.unwrap(), 4);
    let pool = spares(&shared, &new_target.dir_hash).await;
    assert_eq!(pool.len(), 4, "{pool:?}");
    assert!(pool.iter().all(|(_, m)| *m), "{pool:?}");
    let t = f
        .control
        .provision("new-spare", &on_own(), WAIT)
        .await
        .unwrap();
    assert!(from_spare(&f, "new-spare").await);
    assert!(f.control.verify(&t, &new_target).await.unwrap().is_empty());
    f.cleanup().await;
}

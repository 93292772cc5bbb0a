//! The testkit's own promises, against real clusters.

use pgfleet_testkit::{TestDb, connect, root_dir, shared, sweep};

async fn database_exists(name: &str) -> bool {
    let admin = connect(&shared().url()).await;
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    n == 1
}

#[tokio::test]
async fn a_passing_test_gets_a_fresh_database_named_after_it_and_dropped_after() {
    let db = TestDb::new().await;
    let name = db.name().to_string();
    assert!(
        name.starts_with("t_a_passing_test_gets_a_fresh_database"),
        "named from the test: {name}"
    );
    let c = db.connect().await;
    let current: String = c
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(current, name);
    let tables: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "a fresh database is empty");
    drop(c);
    assert!(database_exists(&name).await);
    drop(db);
    assert!(
        !database_exists(&name).await,
        "dropped when the test passes"
    );
}

#[tokio::test]
async fn a_failing_test_keeps_its_database_and_the_cluster() {
    let cluster = shared();
    let kept = std::thread::spawn(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let name = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let seen = name.clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(async {
                let db = TestDb::named("deliberately_failing").await;
                *seen.lock().unwrap() = db.name().to_string();
                panic!("deliberate failure");
            })
        }));
        assert!(result.is_err());
        name.lock().unwrap().clone()
    })
    .join()
    .unwrap();
    assert!(
        database_exists(&kept).await,
        "kept when the test fails: {kept}"
    );
    assert!(
        cluster.root().join("KEEP").exists(),
        "the cluster is marked to be kept"
    );
    // Leave the cluster as the other tests expect it.
    connect(&cluster.url())
        .await
        .batch_execute(&format!("DROP DATABASE \"{kept}\""))
        .await
        .unwrap();
    std::fs::remove_file(cluster.root().join("KEEP")).unwrap();
}

#[tokio::test]
async fn parallel_tests_get_separate_databases() {
    let (a, b) = tokio::join!(TestDb::named("same"), TestDb::named("same"));
    assert_ne!(a.name(), b.name());
    a.connect()
        .await
        .batch_execute("CREATE TABLE x (v int)")
        .await
        .unwrap();
    b.connect()
        .await
        .batch_execute("CREATE TABLE x (v int)")
        .await
        .unwrap();
}

#[test]
fn sweep_removes_leftovers_of_dead_processes_only() {
    std::fs::create_dir_all(root_dir()).unwrap();
    // A leftover of a dead run: owner pid that does not exist.
    let dead = root_dir().join(format!("leftover-{}", std::process::id()));
    std::fs::create_dir_all(dead.join("data")).unwrap();
    std::fs::write(dead.join("owner.pid"), "4194999").unwrap();
    std::fs::write(dead.join("KEEP"), "").unwrap();
    // A directory of a live process (this one).
    let live = root_dir().join(format!("live-{}", std::process::id()));
    std::fs::create_dir_all(&live).unwrap();
    std::fs::write(live.join("owner.pid"), std::process::id().to_string()).unwrap();

    let removed = sweep();
    assert!(removed.contains(&dead), "{removed:?}");
    assert!(!dead.exists());
    assert!(live.exists(), "a live owner's directory is never swept");
    std::fs::remove_dir_all(&live).unwrap();
}

#[test]
fn the_shared_cluster_is_cleaned_up_when_the_test_process_exits() {
    // A child process that uses the testkit and exits; its cluster directory must disappear.
    let out = std::process::Command::new(pgfleet_testkit::example_bin("shared_cluster_child"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CLUSTER_ROOT="))
        .expect("the child prints its cluster root")
        .to_string();
    let gone = pgfleet_embedded::process::wait_until(std::time::Duration::from_secs(20), || {
        !std::path::Path::new(&root).exists()
    });
    assert!(
        gone,
        "the watchdog removes {root} after the test process exits"
    );
}

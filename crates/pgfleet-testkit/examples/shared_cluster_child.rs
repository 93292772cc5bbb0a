//! Launched by the testkit's integration test
//! `the_shared_cluster_is_cleaned_up_when_the_test_process_exits` (not a test of its own): a
//! process that uses the shared cluster, prints where it lives, and exits, so the test can check
//! that the watchdog removes the cluster once this process is gone.

use pgfleet_testkit::{TestDb, shared};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let db = TestDb::new().await;
    db.connect().await.batch_execute("SELECT 1").await.unwrap();
    println!("CLUSTER_ROOT={}", shared().root().display());
}

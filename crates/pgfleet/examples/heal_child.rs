//! Launched by `tests/router.rs` (`two_processes_heal_a_dropped_table_once`), not a test of its
//! own: a second application process with its own `Fleet`, which heals tenant `PGFLEET_HEAL_CHILD`
//! (catalog and master key from `PGFLEET_CATALOG_URL`, `PGFLEET_MASTER_KEY`) with 16 tasks once the
//! file `PGFLEET_HEAL_FLAG` says the table is gone, and prints how many succeeded.

use std::time::Duration;

use pgfleet::control::config::Config;
use pgfleet::control::secrets::MasterKey;
use pgfleet::{Fleet, RouterOptions};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: this program is launched by tests/router.rs")
    })
}

#[tokio::main]
async fn main() {
    let key = var("PGFLEET_HEAL_CHILD");
    let config = Config::new(
        var("PGFLEET_CATALOG_URL"),
        MasterKey::from_base64(&var("PGFLEET_MASTER_KEY")).unwrap(),
    );
    let fleet = Fleet::connect(config, RouterOptions::default())
        .await
        .unwrap();
    fleet
        .with_tenant(&key, |c| async move { c.simple_query("SELECT 1").await })
        .await
        .unwrap();
    println!("child ready");
    // Wait for the parent's signal file: the table has been dropped.
    let flag = var("PGFLEET_HEAL_FLAG");
    while !std::path::Path::new(&flag).exists() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (f, key) = (fleet.clone(), key.clone());
        set.spawn(async move {
            f.with_tenant(&key, |c| async move {
                c.query_one("SELECT count(*) FROM tags", &[]).await
            })
            .await
        });
    }
    let mut ok = 0;
    while let Some(r) = set.join_next().await {
        if r.unwrap().is_ok() {
            ok += 1;
        }
    }
    println!("child ok {ok}");
}

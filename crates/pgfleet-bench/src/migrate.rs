//! `migrate`: 200 small migrations applied to a fresh database by the migrator (lock, history,
//! one transaction per migration) against the same SQL run by a single `psql -f` (the floor: no
//! lock, no history, autocommit), and for reference against `psql -1 -f` (all in one transaction).
//! Test clusters run with `fsync = off`, so commits are cheap on both sides.

use std::time::Instant;

use anyhow::Context;
use pgfleet::migrate::{MigrateOptions, MigrationDir, migrator, sum};
use pgfleet::pg::connect;

use crate::Report;

/// Number of migrations.
pub const MIGRATIONS: usize = 200;

/// The SQL of migration `i`: a table, an index and a row.
pub fn migration(i: usize) -> String {
    format!(
        "CREATE TABLE m{i} (id bigint PRIMARY KEY, name text NOT NULL DEFAULT '');\n\
         CREATE INDEX m{i}_name ON m{i} (name);\n\
         INSERT INTO m{i} (id) VALUES (1);\n"
    )
}

/// Runs the benchmark.
///
/// # Errors
/// When a server cannot be started, psql fails or a migration fails.
pub fn run(quick: bool) -> anyhow::Result<Report> {
    let runs = if quick { 3 } else { 10 };
    let mut report = Report::new("migrate", quick);
    let cluster = pgfleet_testkit::TestCluster::start();
    let work = cluster.root().join("bench-migrate");
    let dir_path = work.join("migrations");
    std::fs::create_dir_all(&dir_path)?;
    let mut all = String::new();
    for i in 0..MIGRATIONS {
        let sql = migration(i);
        std::fs::write(
            dir_path.join(format!("{:014}_m{i}.sql", 20260101000000u64 + i as u64)),
            &sql,
        )?;
        all.push_str(&sql);
    }
    let all_path = work.join("all.sql");
    std::fs::write(&all_path, &all)?;
    let dir = MigrationDir::load(&dir_path)?;
    sum::write(&dir)?;
    let psql = pgfleet_testkit::binaries().tool("psql");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let admin =
        rt.block_on(async { connect::connect(&connect::parse_url(&cluster.url())?).await })?;

    let mut ours = Vec::new();
    let mut floor = Vec::new();
    let mut single_tx = Vec::new();
    for run in 0..runs {
        let (a, b, c) = (
            format!("bench_ours_{run}"),
            format!("bench_psql_{run}"),
            format!("bench_psql1_{run}"),
        );
        for db in [&a, &b, &c] {
            rt.block_on(admin.batch_execute(&format!("CREATE DATABASE {db}")))?;
        }

        let t = Instant::now();
        let out = std::process::Command::new(&psql)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(&all_path)
            .arg(cluster.url_for(&b))
            .output()
            .context("running psql")?;
        floor.push(t.elapsed());
        anyhow::ensure!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let config = connect::parse_url(&cluster.url_for(&a))?;
        let t = Instant::now();
        let r = rt.block_on(migrator::migrate(
            &config,
            &dir,
            &MigrateOptions::default(),
            |_| {},
        ))?;
        ours.push(t.elapsed());
        anyhow::ensure!(r.applied.len() == MIGRATIONS, "applied {}", r.applied.len());
        let t = Instant::now();
        let out = std::process::Command::new(&psql)
            .args(["-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(&all_path)
            .arg(cluster.url_for(&c))
            .output()
            .context("running psql -1")?;
        single_tx.push(t.elapsed());
        anyhow::ensure!(out.status.success(), "psql -1 failed");
        for db in [&a, &b, &c] {
            rt.block_on(admin.batch_execute(&format!("DROP DATABASE {db}")))?;
        }
    }
    let a = report.durations(
        "pgfleet migrate: 200 migrations (lock, history, a transaction each)",
        &ours,
    );
    let b = report.durations("baseline: the same SQL by one psql -f", &floor);
    let c = report.durations(
        "for reference: psql -1 -f (one transaction for everything)",
        &single_tx,
    );
    report.ratio("vs_single_psql", a / b);
    report.ratio("vs_single_psql_one_transaction", a / c);
    Ok(report)
}

//! `fleet`: one additive migration (a column with a default and an index) rolled out to 1,000
//! schema-mode and 100 database-mode tenants on the embedded server by `migrate --all`, next to the
//! same change applied by a sequential shell loop of `psql -f` (one process per tenant) in the same
//! run, and a no-op `migrate --all` afterwards.
//!
//! The loop applies an equivalent migration under other names (`priority_b`), so both sides do the
//! same work on the same tenants. `migrate --all` runs as the CLI does: a multi-threaded runtime and
//! its default bounds (8 tenants at once, 4 per server).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use pgfleet::control::fleet::FleetOptions;
use pgfleet::control::provision::CreateOptions;
use pgfleet::control::tenant::Mode;
use pgfleet::migrate::{MigrationDir, sum};

use crate::Report;

const MIGRATION: &str = "ALTER TABLE chat_threads ADD COLUMN priority integer NOT NULL DEFAULT 0;
CREATE INDEX chat_threads_priority_idx ON chat_threads (priority);
";
const LOOP_MIGRATION: &str =
    "ALTER TABLE chat_threads ADD COLUMN priority_b integer NOT NULL DEFAULT 0;
CREATE INDEX chat_threads_priority_b_idx ON chat_threads (priority_b);
";

/// Runs the benchmark.
///
/// # Errors
/// When a server cannot be started, provisioning or a migration fails.
pub fn run(quick: bool) -> anyhow::Result<Report> {
    let (n_schema, n_database) = if quick { (100, 10) } else { (1000, 100) };
    let mut report = Report::new("fleet", quick);
    let f = crate::chat_fleet::ChatFleet::start("bench_fleet")?;
    let (cluster, rt, control, dir_path) = (&f.cluster, &f.rt, &f.control, &f.migrations);
    let work = dir_path
        .parent()
        .expect("in the work directory")
        .to_path_buf();

    // The fleet.
    let started = Instant::now();
    rt.block_on(async {
        let gate = Arc::new(tokio::sync::Semaphore::new(4));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..(n_schema + n_database) {
            let mode = if i < n_database {
                Mode::Database
            } else {
                Mode::Schema
            };
            let (c, gate) = (control.clone(), gate.clone());
            set.spawn(async move {
                let _p = gate.acquire_owned().await?;
                let opts = CreateOptions {
                    mode: Some(mode),
                    server: None,
                };
                c.provision(&format!("tenant-{i:05}"), &opts, Duration::from_secs(600))
                    .await?;
                anyhow::Ok(())
            });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        anyhow::Ok(())
    })?;
    eprintln!(
        "fleet: {n_schema} schema + {n_database} database tenants provisioned in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // pgfleet: the migration rolled out.
    std::fs::write(dir_path.join("20260201000000_priority.sql"), MIGRATION)?;
    sum::write(&MigrationDir::load(dir_path)?)?;
    let dir = MigrationDir::load(dir_path)?;
    let opts = FleetOptions::default();
    let quiet: pgfleet::control::fleet::ProgressFn = Arc::new(|_| {});
    let cpu = || -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let f: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / 100.0
    };
    // Recording the target replays it in a sandboxed shadow database first (once per target,
    // whatever the number of tenants): timed on its own.
    let t = Instant::now();
    rt.block_on(control.record_target(&dir))?;
    let record_s = t.elapsed().as_secs_f64();
    let cpu0 = cpu();
    let t = Instant::now();
    let r = rt.block_on(control.migrate_all(Some(&dir), &opts, quiet.clone()))?;
    let fleet_s = t.elapsed().as_secs_f64();
    eprintln!(
        "fleet: migrate --all used {:.2}s of client CPU in {fleet_s:.2}s",
        cpu() - cpu0
    );
    for mode in [Mode::Schema, Mode::Database] {
        let ms: Vec<f64> = r
            .tenants
            .iter()
            .filter(|t| t.mode == mode)
            .map(|t| t.duration_ms)
            .collect();
        eprintln!(
            "fleet: {mode} tenants: mean {:.2} ms each (concurrency {})",
            ms.iter().sum::<f64>() / ms.len().max(1) as f64,
            opts.concurrency
        );
    }
    anyhow::ensure!(
        r.failed == 0 && r.migrated == n_schema + n_database,
        "migrate --all: {} migrated, {} failed",
        r.migrated,
        r.failed
    );
    let t = Instant::now();
    let r = rt.block_on(control.migrate_all(Some(&dir), &opts, quiet.clone()))?;
    let noop_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        r.up_to_date == n_schema + n_database,
        "no-op run migrated something"
    );
    // Drift check of the whole fleet (before the loop below changes the tenants).
    let t = Instant::now();
    let checked = rt.block_on(control.check_all(false, 8, quiet))?;
    let check_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        checked.tenants.len() == n_schema + n_database
            && checked
                .tenants
                .iter()
                .all(|t| t.drift.as_ref().is_some_and(|d| d.is_clean())),
        "check --all found errors or drift"
    );

    // The baseline: a sequential shell loop, one psql process per tenant.
    let psql = pgfleet_testkit::binaries().tool("psql");
    let loop_file = work.join("loop.sql");
    std::fs::write(&loop_file, LOOP_MIGRATION)?;
    let tenants = rt.block_on(control.tenants(None))?;
    let mut script = String::from("set -e\n");
    for t in &tenants {
        let url = cluster.url_for(&t.database);
        let options = if t.mode == Mode::Schema {
            format!("PGOPTIONS='-c search_path={},public' ", t.schema)
        } else {
            String::new()
        };
        writeln!(
            script,
            "{options}'{}' -X -q -v ON_ERROR_STOP=1 -f '{}' '{url}'",
            psql.display(),
            loop_file.display()
        )?;
    }
    let script_path = work.join("loop.sh");
    std::fs::write(&script_path, script)?;
    let t = Instant::now();
    let out = std::process::Command::new("bash")
        .arg(&script_path)
        .output()
        .context("running the psql loop")?;
    let loop_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "the psql loop failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let n = (n_schema + n_database) as f64;
    let case = format!("{n_schema} schema + {n_database} database tenants");
    report.push(
        "record the target (validated in a sandboxed shadow database)",
        "wall time",
        record_s,
        "s",
    );
    report.push(&format!("migrate --all, {case}"), "wall time", fleet_s, "s");
    report.push(
        &format!("migrate --all, {case}"),
        "throughput",
        n / fleet_s,
        "tenants/s",
    );
    report.push(
        &format!("sequential psql -f loop, {case}"),
        "wall time",
        loop_s,
        "s",
    );
    report.push(
        &format!("no-op migrate --all, {case}"),
        "wall time",
        noop_s,
        "s",
    );
    report.push(
        &format!("check --all (concurrency 8), {case}"),
        "wall time",
        check_s,
        "s",
    );
    report.ratio("speedup_vs_psql_loop", loop_s / fleet_s);
    report.ratio(
        "speedup_vs_psql_loop_with_recording",
        loop_s / (fleet_s + record_s),
    );
    report.ratio("noop_seconds", noop_s);
    Ok(report)
}

//! `provision`: tenants provisioned to `ready` (placed, role, database or schema, migrated, granted,
//! verified) on the embedded server, one after another, next to the physical floor measured in the
//! same run: `CREATE DATABASE` (resp. `CREATE SCHEMA`) plus the target DDL by one `psql` call.
//! Database mode runs twice, interleaved: from a per-server template at the target (the default)
//! and from `template0` followed by the migrations, to justify the default.

use std::time::{Duration, Instant};

use anyhow::Context;
use pgfleet::control::config::Config;
use pgfleet::control::provision::CreateOptions;
use pgfleet::control::secrets::MasterKey;
use pgfleet::control::tenant::Mode;
use pgfleet::control::{Control, catalog};
use pgfleet::migrate::{MigrationDir, sum};
use pgfleet::pg::connect;

use crate::Report;

/// The target: the chat example schema (tables, enum, indexes, pgvector HNSW).
const TARGET: &str = include_str!("../../../examples/chat/schema.sql");

fn percentile_ms(samples: &[Duration], p: f64) -> f64 {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    crate::report::percentile(&ms, p)
}

/// Runs the benchmark.
///
/// # Errors
/// When a server cannot be started or provisioning fails.
pub fn run(quick: bool) -> anyhow::Result<Report> {
    let n = if quick { 20 } else { 200 };
    let mut report = Report::new("provision", quick);
    let cluster = pgfleet_testkit::TestCluster::start();
    let work = cluster.root().join("bench-provision");
    let dir_path = work.join("migrations");
    std::fs::create_dir_all(&dir_path)?;
    std::fs::write(dir_path.join("20260101000000_chat.sql"), TARGET)?;
    sum::write(&MigrationDir::load(&dir_path)?)?;
    let target_file = dir_path.join("20260101000000_chat.sql");
    let psql = pgfleet_testkit::binaries().tool("psql");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let key = MasterKey::generate()?;

    // Database mode with and without templates runs interleaved (tenant i on one, then on the
    // other), so neither pays alone for the cluster warming up; schema mode runs after.
    let cases = [
        (
            "database mode, from the per-server template (default)",
            Mode::Database,
            true,
        ),
        (
            "database mode, from template0 + migrations",
            Mode::Database,
            false,
        ),
        (
            "schema mode, built on demand (no spares, back to back)",
            Mode::Schema,
            false,
        ),
        (
            "schema mode, from spare schemas (default; one tenant every 200 ms)",
            Mode::Schema,
            false,
        ),
    ];
    let mut controls = Vec::new();
    for (i, (_, mode, templates)) in cases.iter().enumerate() {
        let catalog_url = cluster.url_for(&format!("bench_catalog_{i}"));
        let control = rt.block_on(async {
            catalog::init(
                &connect::parse_url(&catalog_url)?,
                Some(&MigrationDir::load(&dir_path)?),
            )
            .await?;
            let mut config = Config::new(&catalog_url, key.clone());
            config.use_templates = *templates;
            // The on-demand case builds every schema; the spares case keeps 4 per server.
            config.spare_schemas = if i == 3 { 4 } else { 0 };
            let control = Control::connect(config).await?;
            control
                .add_server("local", &cluster.url(), 100_000, 1)
                .await?;
            // Warm-up: the first tenant builds the target model (and the template).
            let opts = CreateOptions {
                mode: Some(*mode),
                server: None,
            };
            control
                .provision("warmup", &opts, Duration::from_secs(300))
                .await?;
            anyhow::Ok(control)
        })?;
        controls.push(control);
    }
    let mut lat: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    let mut totals = vec![Duration::ZERO; cases.len()];
    let provision = |c: usize, i: usize| -> anyhow::Result<Duration> {
        let opts = CreateOptions {
            mode: Some(cases[c].1),
            server: None,
        };
        let t = Instant::now();
        rt.block_on(controls[c].provision(
            &format!("tenant-{i}"),
            &opts,
            Duration::from_secs(300),
        ))?;
        Ok(t.elapsed())
    };
    for i in 0..n {
        for c in 0..2 {
            let d = provision(c, i)?;
            lat[c].push(d);
            totals[c] += d;
        }
    }
    for i in 0..n {
        let d = provision(2, i)?;
        lat[2].push(d);
        totals[2] += d;
    }
    // Spares: the pool starts full (steady state of a long-running process), tenants arrive every
    // 200 ms and the pool refills in the background between them.
    rt.block_on(controls[3].refill_spares("local"))?;
    controls[3].keep_spares(true);
    let pace = Duration::from_millis(200);
    for i in 0..n {
        let d = provision(3, i)?;
        lat[3].push(d);
        totals[3] += d;
        rt.block_on(async { tokio::time::sleep(pace.saturating_sub(d)).await });
    }
    let from_spare: i64 = rt.block_on(controls[3].catalog().query_one(
        "SELECT count(*) FROM pgfleet.events WHERE kind = 'tenant.ready' AND (detail->>'from_spare')::boolean",
        &[],
    ))?.get(0);
    let results: Vec<(String, Vec<Duration>, Duration)> = cases
        .iter()
        .zip(lat)
        .zip(totals)
        .map(|(((label, _, _), l), t)| (label.to_string(), l, t))
        .collect();

    // The floor, in the same run.
    let admin =
        rt.block_on(async { connect::connect(&connect::parse_url(&cluster.url())?).await })?;
    let mut floor_db = Vec::new();
    let mut floor_schema = Vec::new();
    rt.block_on(admin.batch_execute("CREATE DATABASE floor_shared"))?;
    rt.block_on(async {
        let c = connect::connect(&connect::parse_url(&cluster.url_for("floor_shared"))?).await?;
        c.batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
            .await?;
        anyhow::Ok(())
    })?;
    for i in 0..n {
        let db = format!("floor_db_{i}");
        let t = Instant::now();
        rt.block_on(admin.batch_execute(&format!("CREATE DATABASE {db}")))?;
        let out = std::process::Command::new(&psql)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(&target_file)
            .arg(cluster.url_for(&db))
            .output()
            .context("running psql")?;
        floor_db.push(t.elapsed());
        anyhow::ensure!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );

        let schema = format!("floor_s{i}");
        let t = Instant::now();
        let out = std::process::Command::new(&psql)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!("CREATE SCHEMA {schema}"))
            .args(["-f"])
            .arg(&target_file)
            .arg(cluster.url_for("floor_shared"))
            .env("PGOPTIONS", format!("-c search_path={schema},public"))
            .output()
            .context("running psql")?;
        floor_schema.push(t.elapsed());
        anyhow::ensure!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    for (i, (label, lat, total)) in results.iter().enumerate() {
        report.durations(&format!("provision to ready: {label}"), lat);
        if i == 3 {
            report.push(
                &format!("provision to ready: {label}"),
                "claimed a spare",
                from_spare as f64,
                "count",
            );
            continue; // paced: its rate is the pace
        }
        report.push(
            &format!("provision to ready: {label}"),
            "throughput",
            n as f64 / total.as_secs_f64(),
            "tenants/s",
        );
    }
    report.durations("floor: CREATE DATABASE + psql -f target", &floor_db);
    report.durations("floor: CREATE SCHEMA + psql -f target", &floor_schema);
    let db_p50 = percentile_ms(&results[0].1, 50.0);
    let migrate_p50 = percentile_ms(&results[1].1, 50.0);
    let on_demand_p50 = percentile_ms(&results[2].1, 50.0);
    let schema_p50 = percentile_ms(&results[3].1, 50.0);
    report.ratio(
        "database_p50_vs_floor",
        db_p50 / percentile_ms(&floor_db, 50.0),
    );
    report.ratio("database_template_vs_migrate_p50", db_p50 / migrate_p50);
    report.ratio("schema_p50_ms", schema_p50);
    report.ratio(
        "schema_p50_vs_floor",
        schema_p50 / percentile_ms(&floor_schema, 50.0),
    );
    report.ratio("schema_on_demand_p50_ms", on_demand_p50);
    Ok(report)
}

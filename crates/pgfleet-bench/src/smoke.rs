//! `smoke`: is the runtime real? Embedded server start time against a raw `pg_ctl start`, and
//! connect + `SELECT 1` over TCP against the same over the unix socket.

use std::time::{Duration, Instant};

use anyhow::Context;
use pgfleet::embedded::{Cluster, InitOptions, server_env};

use crate::Report;

/// Removes the benchmark's cluster however the run ends.
struct Scratch {
    dir: std::path::PathBuf,
    cluster: Option<Cluster>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(c) = &self.cluster {
            let _ = c.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the benchmark.
///
/// # Errors
/// When a server cannot be initialized, started or reached.
pub fn run(quick: bool) -> anyhow::Result<Report> {
    let (start_runs, connect_runs) = if quick { (3, 30) } else { (10, 200) };
    let mut report = Report::new("smoke", quick);
    let binaries = pgfleet_testkit::binaries();

    let dir = pgfleet_testkit::root_dir().join(format!("bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // Claim the directory so a concurrent test run's sweep leaves it alone.
    std::fs::write(dir.join("owner.pid"), std::process::id().to_string())?;
    let mut scratch = Scratch {
        dir: dir.clone(),
        cluster: None,
    };
    let opts = InitOptions {
        port: pgfleet_testkit::free_port(),
        ..InitOptions::default()
    };
    let t = Instant::now();
    let (cluster, _) = Cluster::init_or_open(&dir.join("data"), binaries.clone(), &opts)?;
    report.durations("pgfleet init (initdb + config)", &[t.elapsed()]);
    scratch.cluster = Some(cluster.clone());
    let mut cluster = cluster;

    // Start: pgfleet's Cluster::start (stale-pid checks, port probe, config, pg_ctl -w) vs pg_ctl -w.
    let mut ours = Vec::new();
    let mut raw = Vec::new();
    for _ in 0..start_runs {
        let t = Instant::now();
        cluster.start(None)?;
        ours.push(t.elapsed());
        cluster.stop()?;

        let t = Instant::now();
        let out = server_env::command_as(&binaries.tool("pg_ctl"), cluster.server_user())
            .arg("start")
            .arg("-D")
            .arg(cluster.data_dir())
            .arg("-l")
            .arg(cluster.log_file())
            .args(["-w", "-s"])
            .output()
            .context("running pg_ctl")?;
        raw.push(t.elapsed());
        anyhow::ensure!(
            out.status.success(),
            "pg_ctl start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.stop()?;
    }
    let a = report.durations("pgfleet Cluster::start", &ours);
    let b = report.durations("baseline pg_ctl start -w", &raw);
    report.ratio("start_vs_pg_ctl", a / b);

    // Connect + SELECT 1, a new connection each time.
    cluster.start(None)?;
    let tcp = cluster.url();
    let unix = format!(
        "host={} port={} user={} password={} dbname=postgres",
        cluster.socket_dir().display(),
        cluster.port(),
        cluster.superuser(),
        cluster.password()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tcp_times, unix_times, query_times) = rt.block_on(async {
        let tcp_times = connect_select1(&tcp, connect_runs).await?;
        let unix_times = connect_select1(&unix, connect_runs).await?;
        let client = connect(&tcp).await?;
        let mut query_times = Vec::with_capacity(connect_runs * 10);
        for _ in 0..connect_runs * 10 {
            let t = Instant::now();
            client.simple_query("SELECT 1").await?;
            query_times.push(t.elapsed());
        }
        anyhow::Ok((tcp_times, unix_times, query_times))
    })?;
    let a = report.durations("connect + SELECT 1 (TCP 127.0.0.1)", &tcp_times);
    let b = report.durations("baseline connect + SELECT 1 (unix socket)", &unix_times);
    report.durations("SELECT 1 on an open connection (TCP)", &query_times);
    report.ratio("connect_tcp_vs_unix", a / b);
    Ok(report)
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

async fn connect_select1(url: &str, runs: usize) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let client = connect(url).await?;
        client.simple_query("SELECT 1").await?;
        times.push(t.elapsed());
    }
    Ok(times)
}

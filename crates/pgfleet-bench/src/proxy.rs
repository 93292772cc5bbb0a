//! `proxy`: the PostgreSQL wire front door (`pgfleet serve --pg-listen`, in process, transaction
//! pooling) against PgBouncer (Debian's package, transaction pooling) and against PostgreSQL
//! itself, with pgbench `-S` (simple protocol) on one tenant database at 1, 16 and 50 clients.
//! Both poolers hold the same number of server connections ([`POOL`]). The ways run interleaved,
//! [`ROUNDS`] measured rounds each, and report the median TPS.
//!
//! Then what PgBouncer cannot budget at all: 1,000 schema tenants, each a client connection of
//! its own (the tenant is the user name, so pgbench, one user per run, cannot drive it), served
//! by one budget of [`POOL`] server connections; the bench's own client runs a random tenant's
//! read per operation.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgfleet::control::provision::CreateOptions;
use pgfleet::control::tenant::Mode;
use pgfleet::control::tokens::Scope;
use pgfleet::router::RouterOptions;
use pgfleet_testkit::pgbouncer::{PgBouncer, PgBouncerOptions};

use crate::Report;
use crate::chat_fleet::ChatFleet;

/// Server connections of each pooler.
const POOL: usize = 10;
/// Measured rounds of each way and client count.
const ROUNDS: usize = 3;
/// pgbench client counts.
const CLIENTS: [usize; 3] = [1, 16, 50];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    Direct,
    PgBouncer,
    /// The front door on a runtime of one worker thread (PgBouncer runs one thread).
    Pgfleet,
    /// The front door on a runtime of two worker threads (this machine's cores).
    Pgfleet2,
}

const WAYS: [Way; 4] = [Way::Direct, Way::PgBouncer, Way::Pgfleet, Way::Pgfleet2];

impl Way {
    fn label(self, clients: usize) -> String {
        match self {
            Way::Direct => format!("pgbench -S, {clients} clients, straight to PostgreSQL"),
            Way::PgBouncer => {
                format!(
                    "pgbench -S, {clients} clients, through PgBouncer ({POOL} server connections)"
                )
            }
            Way::Pgfleet => format!(
                "pgbench -S, {clients} clients, through pgfleet --pg-listen, 1 worker thread ({POOL} server connections)"
            ),
            Way::Pgfleet2 => format!(
                "pgbench -S, {clients} clients, through pgfleet --pg-listen, 2 worker threads ({POOL} server connections)"
            ),
        }
    }
}

/// Where pgbench connects: host, port, user, password, database.
struct Target {
    port: u16,
    user: String,
    password: String,
    database: String,
}

/// Runs the benchmark.
///
/// # Errors
/// When the fleet, PgBouncer, pgbench or a query fails.
pub fn run(quick: bool) -> anyhow::Result<Report> {
    let seconds = if quick { 2 } else { 5 };
    let rounds = if quick { 1 } else { ROUNDS };
    let n_tenants = if quick { 100 } else { 1_000 };
    let mut report = Report::new("proxy", quick);
    let f = ChatFleet::start("bench_proxy")?;
    let bin = pgfleet_testkit::binaries().bin_dir().to_path_buf();
    let pgbench = bin.join("pgbench");

    // One database tenant with pgbench's tables (made by the admin, granted to the tenant's
    // role: tenant roles have no DDL), an app token, the front door, PgBouncer.
    let control = f.control.clone();
    let (token, placement) = f.rt.block_on(async {
        let opts = CreateOptions {
            mode: Some(Mode::Database),
            server: None,
        };
        control
            .provision("bench", &opts, Duration::from_secs(300))
            .await?;
        let placement = control
            .placement("bench")
            .await?
            .ok_or_else(|| anyhow::anyhow!("tenant bench is not ready"))?;
        let token = control.create_token("bench", Scope::Sql).await?.secret;
        anyhow::Ok((token, placement))
    })?;
    let door1 = FrontDoor::start(&f, 1)?;
    let door2 = FrontDoor::start(&f, 2)?;
    let cfg = &placement.config;
    let role = cfg.get_user().unwrap_or_default().to_string();
    let password = String::from_utf8_lossy(cfg.get_password().unwrap_or_default()).to_string();
    let database = cfg.get_dbname().unwrap_or_default().to_string();
    let admin_url = f.cluster.url_for(&database);
    let init = Command::new(&pgbench)
        .args(["-i", "-s", "1", "-q", &admin_url])
        .output()?;
    anyhow::ensure!(
        init.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    f.rt.block_on(async {
        let admin = pgfleet_testkit::connect(&admin_url).await;
        admin
            .batch_execute(&format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO {}",
                pgfleet_testkit::quote_ident(&role)
            ))
            .await
    })?;
    let bouncer = PgBouncer::start(&PgBouncerOptions {
        server_host: "127.0.0.1".into(),
        server_port: f.cluster.port(),
        database: database.clone(),
        user: role.clone(),
        password: password.clone(),
        pool_size: POOL,
        pool_mode: "transaction",
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    let target = |way: Way| match way {
        Way::Direct => Target {
            port: f.cluster.port(),
            user: role.clone(),
            password: password.clone(),
            database: database.clone(),
        },
        Way::PgBouncer => Target {
            port: bouncer.port,
            user: role.clone(),
            password: password.clone(),
            database: database.clone(),
        },
        Way::Pgfleet | Way::Pgfleet2 => Target {
            port: if way == Way::Pgfleet {
                door1.addr.port()
            } else {
                door2.addr.port()
            },
            user: "bench".into(),
            password: token.clone(),
            database: "bench".into(),
        },
    };

    let mut tps_at = std::collections::HashMap::new();
    for clients in CLIENTS {
        let mut runs: [Vec<f64>; 4] = Default::default();
        let mut cpu: [Vec<f64>; 4] = Default::default();
        for round in 0..=rounds {
            for (i, way) in WAYS.into_iter().enumerate() {
                let before = pooler_cpu(way, &bouncer);
                let tps = pgbench_tps(&pgbench, &target(way), clients, seconds)?;
                let used = pooler_cpu(way, &bouncer) - before;
                if round > 0 {
                    runs[i].push(tps);
                    cpu[i].push(used / (tps * seconds as f64) * 1e6);
                }
            }
        }
        for (i, way) in WAYS.into_iter().enumerate() {
            let median = crate::report::percentile_of(&mut runs[i], 50.0);
            report.push(&way.label(clients), "throughput", median, "tps");
            if way != Way::Direct {
                let us = crate::report::percentile_of(&mut cpu[i], 50.0);
                report.push(&way.label(clients), "pooler CPU per transaction", us, "µs");
            }
            tps_at.insert((i, clients), median);
        }
        eprintln!(
            "proxy: {clients} clients: direct {:.0}, PgBouncer {:.0}, pgfleet {:.0} (2 threads: {:.0}) tps",
            tps_at[&(0, clients)],
            tps_at[&(1, clients)],
            tps_at[&(2, clients)],
            tps_at[&(3, clients)]
        );
    }
    report.ratio("proxy_vs_pgbouncer", tps_at[&(2, 50)] / tps_at[&(1, 50)]);
    report.ratio("proxy_vs_direct", tps_at[&(2, 50)] / tps_at[&(0, 50)]);
    report.ratio(
        "proxy_vs_pgbouncer_16_clients",
        tps_at[&(2, 16)] / tps_at[&(1, 16)],
    );
    report.ratio(
        "proxy_vs_pgbouncer_1_client",
        tps_at[&(2, 1)] / tps_at[&(1, 1)],
    );
    report.ratio(
        "proxy_2_threads_vs_pgbouncer",
        tps_at[&(3, 50)] / tps_at[&(1, 50)],
    );
    drop((bouncer, door2));

    many_tenants(&f, &token, door1.addr, n_tenants, seconds * 2, &mut report)?;
    drop(door1);
    Ok(report)
}

/// The wire front door (over the fleet's catalog) on a runtime of its own with `threads` worker
/// threads, as `pgfleet serve` runs it with `TOKIO_WORKER_THREADS`.
struct FrontDoor {
    addr: std::net::SocketAddr,
    _stop: tokio::sync::watch::Sender<bool>,
    _rt: tokio::runtime::Runtime,
}

impl FrontDoor {
    fn start(f: &ChatFleet, threads: usize) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(format!("pgfleet-door-{threads}"))
            .enable_all()
            .build()?;
        let control = f.control.clone();
        let (addr, stop) = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let door = pgfleet_server::SqlFrontDoor {
                listener: None,
                pg: Some(listener),
                pg_options: Default::default(),
                options: Default::default(),
                jwt: Default::default(),
                tls: None,
                router: RouterOptions {
                    budget_per_server: POOL,
                    per_tenant: POOL,
                    ..RouterOptions::default()
                },
            };
            let (stop, stopped) = tokio::sync::watch::channel(false);
            pgfleet_server::start_sql(&control, door, stopped).await?;
            anyhow::Ok((addr, stop))
        })?;
        Ok(Self {
            addr,
            _stop: stop,
            _rt: rt,
        })
    }
}

/// CPU seconds the pooler of `way` used so far: PgBouncer's process, or the threads of the
/// front door's runtime (user and system time, from `/proc`).
fn pooler_cpu(way: Way, bouncer: &PgBouncer) -> f64 {
    let ticks = |stat: &str| -> f64 {
        // Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let f: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        (n(11) + n(12)) / 100.0 // USER_HZ
    };
    match way {
        Way::Direct => 0.0,
        Way::PgBouncer => std::fs::read_to_string(format!("/proc/{}/stat", bouncer.pid()))
            .map(|s| ticks(&s))
            .unwrap_or(0.0),
        Way::Pgfleet | Way::Pgfleet2 => {
            let name = if way == Way::Pgfleet {
                "pgfleet-door-1"
            } else {
                "pgfleet-door-2"
            };
            let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
                return 0.0;
            };
            tasks
                .flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name)
                })
                .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
                .map(|s| ticks(&s))
                .sum()
        }
    }
}

/// TPS of one pgbench `-S` run (simple protocol) against `t`.
fn pgbench_tps(
    pgbench: &std::path::Path,
    t: &Target,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<f64> {
    let out = Command::new(pgbench)
        .args(["-n", "-S", "-M", "simple", "-h", "127.0.0.1"])
        .args(["-p", &t.port.to_string(), "-U", &t.user])
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            &clients.min(2).to_string(),
        ])
        .args(["-T", &seconds.to_string(), &t.database])
        .env("PGPASSWORD", &t.password)
        .env("PGSSLMODE", "disable")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success() && stdout.contains("number of failed transactions: 0"),
        "pgbench on port {}: {stdout}\n{}",
        t.port,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse::<f64>().ok())
        })
        .ok_or_else(|| anyhow::anyhow!("no tps in pgbench's output: {stdout}"))
}

/// `n` schema tenants, one client connection each, behind one budget of [`POOL`]: 50 tasks run
/// a read of a random tenant per operation for `seconds`.
fn many_tenants(
    f: &ChatFleet,
    token: &str,
    addr: std::net::SocketAddr,
    n: usize,
    seconds: u64,
    report: &mut Report,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let opts = CreateOptions {
        mode: Some(Mode::Schema),
        server: None,
    };
    crate::router::provision_zipf_tenants(f, &opts, n, "s")?;
    eprintln!(
        "proxy: {n} schema tenants provisioned in {:.0}s",
        started.elapsed().as_secs_f64()
    );
    let admin_url = f.cluster.url_for("postgres");
    let (ops, lat, max_server) = f.rt.block_on(async {
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            let mut c = tokio_postgres::Config::new();
            c.host("127.0.0.1")
                .port(addr.port())
                .user(format!("s{i:05}"))
                .password(token)
                .dbname("app");
            let (client, conn) = c.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            clients.push(Arc::new(client));
        }
        let clients = Arc::new(clients);
        let admin = pgfleet_testkit::connect(&admin_url).await;
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut set = tokio::task::JoinSet::new();
        for w in 0..50u64 {
            let clients = clients.clone();
            set.spawn(async move {
                let mut lat = Vec::new();
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (w + 1);
                while Instant::now() < deadline {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let c = &clients[(x % clients.len() as u64) as usize];
                    let t = Instant::now();
                    let rows = c.simple_query("SELECT count(*) FROM users").await?;
                    std::hint::black_box(rows.len());
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                }
                anyhow::Ok(lat)
            });
        }
        let mut max_server = 0i64;
        let sampler = async {
            while Instant::now() < deadline {
                let n: i64 = admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgfleet-pg'",
                        &[],
                    )
                    .await?
                    .get(0);
                max_server = max_server.max(n);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            anyhow::Ok(())
        };
        sampler.await?;
        let mut lat = Vec::new();
        while let Some(r) = set.join_next().await {
            lat.extend(r??);
        }
        anyhow::Ok((lat.len(), lat, max_server))
    })?;
    let mut lat = lat;
    let label =
        format!("{n} schema tenants, one client connection each, 50 workers, budget {POOL}");
    report.push(&label, "throughput", ops as f64 / seconds as f64, "ops/s");
    report.push(
        &label,
        "p50",
        crate::report::percentile_of(&mut lat, 50.0),
        "ms",
    );
    report.push(
        &label,
        "p99",
        crate::report::percentile_of(&mut lat, 99.0),
        "ms",
    );
    report.push(
        &label,
        "server connections (max seen)",
        max_server as f64,
        "connections",
    );
    eprintln!(
        "proxy: {n} tenants: {:.0} ops/s, at most {max_server} server connections",
        ops as f64 / seconds as f64
    );
    Ok(())
}

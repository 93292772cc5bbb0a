//! `router`: the hot path, in one run on one embedded cluster.
//!
//! (a) `select 1` through `Fleet::client(key)` against a plain deadpool-postgres pool of
//!     tokio-postgres connections to the same database as the same role;
//! (b) against a seed-style wrapper that checks every required table of the schema on each
//!     connection before the query (a deadpool pool plus one existence query per table);
//! (c) many schema-mode tenants (10,000; 1,000 with `--quick`) under Zipf(1.1) access by 64 tasks
//!     with a budget of 100 connections, as a trusted caller (shared connections of the pool role):
//!     errors, acquire latency, peak server connections; against one tenant through the same
//!     router options (per-tenant cap raised to the budget), same tasks, same run
//!     (`many_tenants_vs_single`); and (c') the same after `Router::preload` (`acquire_p99_ms`).
//!     The three run interleaved, 3 rounds, and report their median round;
//! (e) (c) with per-tenant logins (shared connections off: how end users' front doors connect)
//!     (`jwt_many_vs_single`);
//! (d) 2,000 database-mode tenants (200 with `--quick`) under the same access: pooled (eviction keeps
//!     the hot tenants) against a new connection per request (`db_many_vs_connect_per_request`,
//!     `db_pool_hit_rate`).
//!
//! (a) and (b) run interleaved, five rounds each, and report medians.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pgfleet::control::provision::CreateOptions;
use pgfleet::control::tenant::Mode;
use pgfleet::pg::connect;
use pgfleet::{Fleet, RouterOptions};
use tokio::runtime::Runtime;

use crate::Report;
use crate::chat_fleet::ChatFleet;

/// The tables a seed-style wrapper checks on every connection.
const REQUIRED: &[&str] = &[
    "users",
    "chat_threads",
    "chat_messages",
    "documents",
    "schema_corrections",
];

/// The server's connections that a router opened.
const ROUTER_CONNECTIONS: &str =
    "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgfleet router%'";

/// Tasks of (a) and (b), and the size of each of their pools.
const HOT_TASKS: usize = 8;
/// Measured rounds of each way in (a) and (b), after one warm-up round each.
const HOT_ROUNDS: usize = 5;
/// Tasks of (c).
const ZIPF_TASKS: u64 = 64;
/// Rounds of (c), (c') and their baseline.
const ROUNDS: usize = 3;
/// Connections the router of (c) may open to the server.
const BUDGET: usize = 100;

/// A small deterministic generator (xorshift64*), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How much each case does.
struct Scale {
    /// Tenants of (c).
    n_tenants: usize,
    /// Queries of one round of (a) and (b), over all tasks.
    ops_per_round: usize,
    /// Queries of (d) and (e), over all tasks.
    zipf_ops: usize,
    /// Queries of (c), (c') and their baseline, over all tasks.
    shared_ops: usize,
    /// Database-mode tenants of (d).
    n_db_tenants: usize,
}

impl Scale {
    fn new(quick: bool) -> Self {
        let (n_tenants, ops_per_round, zipf_ops, shared_ops) = if quick {
            (1_000, 2_000, 5_000, 20_000)
        } else {
            (10_000, 10_000, 40_000, 100_000)
        };
        Self {
            n_tenants,
            ops_per_round,
            zipf_ops,
            shared_ops,
            n_db_tenants: if quick { 200 } else { 2_000 },
        }
    }
}

/// Runs the benchmark.
///
/// # Errors
/// When a server cannot be started or a tenant cannot be provisioned.
pub fn run(quick: bool) -> anyhow::Result<Report> {
    let scale = Scale::new(quick);
    let mut report = Report::new("router", quick);
    let f = ChatFleet::start("bench_router")?;
    let schema_opts = CreateOptions {
        mode: Some(Mode::Schema),
        server: None,
    };

    // (a) and (b): one tenant, three ways to reach it.
    let hot = HotPath::set_up(&f, &schema_opts, scale.ops_per_round)?;
    let rounds = hot.measure(&f.rt)?;
    let medians = rounds.report(&mut report, scale.ops_per_round);

    // (c): many tenants, Zipf access, a budget. The connections of (a) and (b) go first, so the
    // server's count is this router's alone.
    hot.close();
    provision_zipf_tenants(&f, &schema_opts, scale.n_tenants, "z")?;
    // The one-tenant baseline, (c) and (c') take a second or less each on this machine, where a
    // hiccup of the host halves a throughput: `ROUNDS` rounds of the three, interleaved, and the
    // median round of each.
    let (mut singles, mut zipfs, mut preloads) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        singles.push(zipf_case(&f, 1, scale.shared_ops, true)?);
        zipfs.push(zipf_case(&f, scale.n_tenants, scale.shared_ops, true)?);
        // (c) again with the placements read ahead, as `pgfleet serve` does when it starts.
        preloads.push(zipf_case_of(
            &f,
            scale.n_tenants,
            scale.shared_ops,
            true,
            "z",
            true,
        )?);
    }
    let (mut single, mut zipf, mut preloaded) = (
        median_round(singles),
        median_round(zipfs),
        median_round(preloads),
    );
    single.report(
        &mut report,
        &format!("one tenant (trusted, median of {ROUNDS})"),
        scale.shared_ops,
    );
    zipf.report(
        &mut report,
        &format!(
            "{} schema tenants (trusted, shared connections, median of {ROUNDS})",
            scale.n_tenants
        ),
        scale.shared_ops,
    );
    preloaded.report(
        &mut report,
        &format!(
            "{} schema tenants (trusted, shared connections, placements preloaded, median of {ROUNDS})",
            scale.n_tenants
        ),
        scale.shared_ops,
    );
    if let Some(secs) = preloaded.preload_seconds {
        report.push(
            &format!("reading {} placements ahead", scale.n_tenants),
            "time",
            secs * 1000.0,
            "ms",
        );
    }
    let mut own = zipf_case(&f, scale.n_tenants, scale.zipf_ops, false)?;
    own.report(
        &mut report,
        &format!("{} schema tenants (per-tenant logins)", scale.n_tenants),
        scale.zipf_ops,
    );

    // (d): database-mode tenants under the same access: pooled (the hot ones kept by eviction)
    // against a new connection per request.
    let db_opts = CreateOptions {
        mode: Some(Mode::Database),
        server: None,
    };
    provision_zipf_tenants(&f, &db_opts, scale.n_db_tenants, "d")?;
    let mut db = zipf_case_of(&f, scale.n_db_tenants, scale.zipf_ops, true, "d", false)?;
    db.report(
        &mut report,
        &format!("{} database tenants (pooled)", scale.n_db_tenants),
        scale.zipf_ops,
    );
    let connect_each = connect_per_request(&f, scale.n_db_tenants, scale.zipf_ops / 4)?;
    report.push(
        &format!(
            "{} database tenants, a new connection per request, Zipf(1.1), {ZIPF_TASKS} tasks",
            scale.n_db_tenants
        ),
        "throughput",
        (scale.zipf_ops / 4) as f64 / connect_each,
        "ops/s",
    );
    report.ratio(
        "db_many_vs_connect_per_request",
        (scale.zipf_ops as f64 / db.seconds) / ((scale.zipf_ops / 4) as f64 / connect_each),
    );
    report.ratio("db_pool_hit_rate", db.hit_rate);
    report.ratio("overhead_vs_direct", medians[0] / medians[1]);
    report.ratio("speedup_vs_check_each_connect", medians[2] / medians[0]);
    report.ratio("many_tenants_vs_single", single.seconds / zipf.seconds);
    report.ratio(
        "jwt_many_vs_single",
        (scale.zipf_ops as f64 / own.seconds) / (scale.shared_ops as f64 / single.seconds),
    );
    report.ratio(
        "many_tenants_preloaded_vs_single",
        single.seconds / preloaded.seconds,
    );
    report.ratio(
        "acquire_p99_ms",
        crate::report::percentile_of(&mut preloaded.acquire, 99.0),
    );
    report.ratio(
        "acquire_p99_cold_ms",
        crate::report::percentile_of(&mut zipf.acquire, 99.0),
    );
    report.ratio(
        "acquire_p99_seen_ms",
        crate::report::percentile_of(&mut zipf.acquire_seen, 99.0),
    );
    report.ratio(
        "budget_exceeded",
        [&zipf, &preloaded, &own, &db]
            .iter()
            .map(|c| c.peak)
            .max()
            .unwrap_or(0) as f64
            - BUDGET as f64,
    );
    report.ratio(
        "errors",
        (zipf.errors + preloaded.errors + own.errors + single.errors + db.errors) as f64,
    );
    Ok(report)
}

/// A way of (a) and (b) to run `select 1` on the tenant.
#[derive(Clone, Copy)]
enum Way {
    /// Through `Fleet::client`.
    Fleet,
    /// Through a plain pool.
    Direct,
    /// Through a pool, checking every required table first.
    CheckEach,
}

/// The ways, in the order they run and are reported.
const WAYS: [Way; 3] = [Way::Fleet, Way::Direct, Way::CheckEach];

impl Way {
    /// The case's name in the report.
    fn label(self) -> &'static str {
        match self {
            Way::Fleet => "select 1 through Fleet::client",
            Way::Direct => "select 1 through a plain deadpool pool (direct)",
            Way::CheckEach => {
                "select 1 through a pool that checks 5 tables per connection (seed style)"
            }
        }
    }

    /// One timed operation: get a connection, (check the tables,) `select 1`, give it back.
    async fn select_1(self, fleet: &Fleet, pool: &deadpool_postgres::Pool) -> anyhow::Result<()> {
        match self {
            Way::Fleet => {
                let c = fleet.client("hot").await?;
                c.simple_query("select 1").await?;
            }
            Way::Direct => {
                let c = pool.get().await?;
                c.simple_query("select 1").await?;
            }
            Way::CheckEach => {
                let c = pool.get().await?;
                for table in REQUIRED {
                    let exists: bool = c
                        .query_one(
                            "SELECT EXISTS (SELECT FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1)",
                            &[table],
                        )
                        .await?
                        .get(0);
                    anyhow::ensure!(exists, "table {table} is missing");
                }
                c.simple_query("select 1").await?;
            }
        }
        Ok(())
    }
}

/// (a) and (b): the tenant `hot`, a router to it and a plain pool of connections to it.
struct HotPath {
    fleet: Fleet,
    pool: deadpool_postgres::Pool,
    ops_per_round: usize,
}

impl HotPath {
    /// Starts a router, provisions `hot` and builds a plain pool to it (filled by the warm-up).
    fn set_up(
        f: &ChatFleet,
        schema_opts: &CreateOptions,
        ops_per_round: usize,
    ) -> anyhow::Result<Self> {
        let (rt, control) = (&f.rt, &f.control);
        let fleet = rt.block_on(Fleet::connect(
            f.config.clone(),
            RouterOptions {
                budget_per_server: 100,
                per_tenant: HOT_TASKS,
                ..RouterOptions::default()
            },
        ))?;
        rt.block_on(control.provision("hot", schema_opts, Duration::from_secs(300)))?;
        let placement = rt
            .block_on(control.placement("hot"))?
            .ok_or_else(|| anyhow::anyhow!("tenant hot is not ready"))?;
        let pool = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::from_config(
            placement.config.clone(),
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        ))
        .max_size(HOT_TASKS)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?;
        Ok(Self {
            fleet,
            pool,
            ops_per_round,
        })
    }

    /// A warm-up round of each way (pools filled), then the measured rounds, interleaved.
    fn measure(&self, rt: &Runtime) -> anyhow::Result<HotRounds> {
        for way in WAYS {
            self.round(rt, way)?;
        }
        let mut rounds = HotRounds::default();
        for _ in 0..HOT_ROUNDS {
            for (i, way) in WAYS.into_iter().enumerate() {
                let (t, l) = self.round(rt, way)?;
                rounds.times[i].push(t);
                rounds.lats[i].extend(l);
            }
        }
        Ok(rounds)
    }

    /// One round of `way`: `ops_per_round` operations by `HOT_TASKS` tasks. Returns its wall time
    /// in seconds and the latency of each operation in milliseconds.
    fn round(&self, rt: &Runtime, way: Way) -> anyhow::Result<(f64, Vec<f64>)> {
        let (fleet, pool) = (self.fleet.clone(), self.pool.clone());
        let ops_per_round = self.ops_per_round;
        rt.block_on(async move {
            let per_task = ops_per_round / HOT_TASKS;
            let started = Instant::now();
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..HOT_TASKS {
                let (fleet, pool) = (fleet.clone(), pool.clone());
                set.spawn(async move {
                    let mut lat = Vec::with_capacity(per_task);
                    for _ in 0..per_task {
                        let t = Instant::now();
                        way.select_1(&fleet, &pool).await?;
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    anyhow::Ok(lat)
                });
            }
            let mut all = Vec::new();
            while let Some(r) = set.join_next().await {
                all.extend(r??);
            }
            anyhow::Ok((started.elapsed().as_secs_f64(), all))
        })
    }

    /// Closes the pool, then drops the router: their connections go.
    fn close(self) {
        let Self { fleet, pool, .. } = self;
        pool.close();
        drop(pool);
        drop(fleet);
    }
}

/// The measured rounds of (a) and (b), indexed as [`WAYS`].
#[derive(Default)]
struct HotRounds {
    /// Wall time of each round, in seconds.
    times: [Vec<f64>; 3],
    /// Latency of each operation, in milliseconds.
    lats: [Vec<f64>; 3],
}

impl HotRounds {
    /// Reports throughput (of the median round), p50 and p99 of each way; returns the median
    /// round times, indexed as [`WAYS`].
    fn report(mut self, report: &mut Report, ops_per_round: usize) -> [f64; 3] {
        let mut medians = [0.0; 3];
        for (i, way) in WAYS.into_iter().enumerate() {
            medians[i] = crate::report::percentile_of(&mut self.times[i], 50.0);
            let label = way.label();
            report.push(
                label,
                "throughput",
                ops_per_round as f64 / medians[i],
                "ops/s",
            );
            report.push(
                label,
                "p50",
                crate::report::percentile_of(&mut self.lats[i], 50.0),
                "ms",
            );
            report.push(
                label,
                "p99",
                crate::report::percentile_of(&mut self.lats[i], 99.0),
                "ms",
            );
        }
        medians
    }
}

/// Provisions `{prefix}00000`, `{prefix}00001`, … (8 at a time): the Zipf tenants of (c), and
/// the `proxy` benchmark's schema tenants.
pub(crate) fn provision_zipf_tenants(
    f: &ChatFleet,
    schema_opts: &CreateOptions,
    n_tenants: usize,
    prefix: &'static str,
) -> anyhow::Result<()> {
    let control = &f.control;
    let started = Instant::now();
    f.rt.block_on(async {
        let gate = Arc::new(tokio::sync::Semaphore::new(8));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..n_tenants {
            let (c, gate, opts) = (control.clone(), gate.clone(), schema_opts.clone());
            set.spawn(async move {
                let _p = gate.acquire_owned().await?;
                c.provision(&format!("{prefix}{i:05}"), &opts, Duration::from_secs(600))
                    .await?;
                anyhow::Ok(())
            });
        }
        let mut done = 0;
        while let Some(r) = set.join_next().await {
            r??;
            done += 1;
            if done % 1000 == 0 {
                eprintln!(
                    "router: {done}/{n_tenants} tenants provisioned ({:.0}s)",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        anyhow::Ok(())
    })
}

/// The round of the median wall time.
fn median_round(mut rounds: Vec<ZipfOutcome>) -> ZipfOutcome {
    rounds.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    rounds.swap_remove(rounds.len() / 2)
}

/// The Zipf(1.1) distribution over `n` tenants, as a CDF to sample from.
fn zipf_cdf(n: usize) -> Vec<f64> {
    let weights: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(1.1)).collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(n);
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cdf.push(acc);
    }
    cdf
}

/// What (c) saw.
struct ZipfOutcome {
    /// Latency of each successful `Fleet::client`, in milliseconds.
    acquire: Vec<f64>,
    /// The same, for tenants some task had reached before (their placement in the router's
    /// snapshot): without the first touch, which reads the placement from the catalog.
    acquire_seen: Vec<f64>,
    /// Wall time of all the tasks, in seconds.
    seconds: f64,
    /// Most router connections the server had at once.
    peak: usize,
    /// Failed acquires and queries.
    errors: usize,
    /// Measured acquires served by an idle connection, over all measured acquires.
    hit_rate: f64,
    /// Measured acquires that switched a shared connection to another tenant, over all measured
    /// acquires.
    switch_rate: f64,
    /// How long reading the placements ahead took, when the case did.
    preload_seconds: Option<f64>,
}

impl ZipfOutcome {
    /// Reports acquire p50 and p99, throughput, peak connections and errors.
    fn report(&mut self, report: &mut Report, what: &str, zipf_ops: usize) {
        let case = format!("{what}, Zipf(1.1), {ZIPF_TASKS} tasks, budget {BUDGET}");
        report.push(
            &case,
            "acquire p50",
            crate::report::percentile_of(&mut self.acquire, 50.0),
            "ms",
        );
        report.push(
            &case,
            "acquire p99",
            crate::report::percentile_of(&mut self.acquire, 99.0),
            "ms",
        );
        report.push(
            &case,
            "acquire p99, tenants reached before",
            crate::report::percentile_of(&mut self.acquire_seen, 99.0),
            "ms",
        );
        report.push(
            &case,
            "first touches of a tenant (without preload: a catalog read each)",
            (self.acquire.len() - self.acquire_seen.len()) as f64,
            "count",
        );
        report.push(&case, "throughput", zipf_ops as f64 / self.seconds, "ops/s");
        report.push(&case, "peak server connections", self.peak as f64, "count");
        report.push(&case, "errors", self.errors as f64, "count");
        report.push(&case, "pool hit rate", self.hit_rate, "ratio");
        report.push(
            &case,
            "shared connection switches per acquire",
            self.switch_rate,
            "ratio",
        );
    }
}

/// (c), (e) and their baseline (each after a warm-up of a quarter as many queries): a router with a budget of `BUDGET` connections (`shared`
/// connections or per-tenant logins) serves `zipf_ops` queries by `ZIPF_TASKS` tasks to tenants
/// drawn from Zipf(1.1) over `n_tenants` (1: the single-tenant baseline), while a watcher samples
/// the server's count of router connections.
fn zipf_case(
    f: &ChatFleet,
    n_tenants: usize,
    zipf_ops: usize,
    shared: bool,
) -> anyhow::Result<ZipfOutcome> {
    zipf_case_of(f, n_tenants, zipf_ops, shared, "z", false)
}

/// As [`zipf_case`], over the tenants named `{prefix}00000`, `{prefix}00001`, …; with `preload`,
/// the router reads the placements of the newest tenants (these) ahead (`Router::preload`).
fn zipf_case_of(
    f: &ChatFleet,
    n_tenants: usize,
    zipf_ops: usize,
    shared: bool,
    prefix: &'static str,
    preload: bool,
) -> anyhow::Result<ZipfOutcome> {
    let defaults = RouterOptions::default();
    let fleet = f.rt.block_on(Fleet::connect(
        f.config.clone(),
        RouterOptions {
            budget_per_server: BUDGET,
            acquire_timeout: Duration::from_secs(30),
            shared_connections: shared,
            // One tenant may use the whole budget (the baseline); each of many a quarter of it,
            // so that Zipf's hottest tenant (about 10 of the 64 tasks at once) does not queue for
            // its own cap (the default, 5, is sized for the default budget of 20): the acquire
            // latency measured is the router's.
            per_tenant: if n_tenants == 1 { BUDGET } else { BUDGET / 4 },
            ..defaults
        },
    ))?;
    let preload_seconds = if preload {
        let started = Instant::now();
        let n = f.rt.block_on(fleet.router().preload(n_tenants))?;
        anyhow::ensure!(n == n_tenants, "preloaded {n} of {n_tenants} placements");
        Some(started.elapsed().as_secs_f64())
    } else {
        None
    };
    let cdf = Arc::new(zipf_cdf(n_tenants));
    let errors = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Vec<AtomicBool>> =
        Arc::new((0..n_tenants).map(|_| AtomicBool::new(false)).collect());
    let (acquire, acquire_seen, seconds, peak, hit_rate, switch_rate) = f.rt.block_on(async {
        let watcher_stop = Arc::new(AtomicBool::new(false));
        let admin = connect::connect(&connect::parse_url(&f.cluster.url())?).await?;
        wait_until_no_router_connections(&admin).await?;
        let watcher = tokio::spawn(watch_peak(admin, peak.clone(), watcher_stop.clone()));
        // Warm-up (not measured): a quarter of the queries, so the pools are open.
        let mut set = tokio::task::JoinSet::new();
        for task in 0..ZIPF_TASKS {
            let (fleet, cdf, errors, seen) =
                (fleet.clone(), cdf.clone(), errors.clone(), seen.clone());
            set.spawn(zipf_task(
                task + 1000,
                fleet,
                cdf,
                errors,
                seen,
                zipf_ops / 4,
                prefix,
            ));
        }
        while let Some(r) = set.join_next().await {
            r?;
        }
        let (h0, m0) = fleet.router().acquires();
        let s0 = fleet.router().switches();
        let started = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for task in 0..ZIPF_TASKS {
            let (fleet, cdf, errors, seen) =
                (fleet.clone(), cdf.clone(), errors.clone(), seen.clone());
            set.spawn(zipf_task(task, fleet, cdf, errors, seen, zipf_ops, prefix));
        }
        let (mut acquire, mut acquire_seen) = (Vec::new(), Vec::new());
        while let Some(r) = set.join_next().await {
            let (all, reached) = r?;
            acquire.extend(all);
            acquire_seen.extend(reached);
        }
        let elapsed = started.elapsed().as_secs_f64();
        let (h1, m1) = fleet.router().acquires();
        let switches = (fleet.router().switches() - s0) as f64;
        watcher_stop.store(true, Ordering::Relaxed);
        watcher.await?;
        let hits = (h1 - h0) as f64;
        let acquires = (hits + (m1 - m0) as f64).max(1.0);
        anyhow::Ok((
            acquire,
            acquire_seen,
            elapsed,
            peak.load(Ordering::Relaxed),
            hits / acquires,
            switches / acquires,
        ))
    })?;
    Ok(ZipfOutcome {
        acquire,
        acquire_seen,
        seconds,
        peak,
        errors: errors.load(Ordering::Relaxed),
        hit_rate,
        switch_rate,
        preload_seconds,
    })
}

/// Waits (at most 30 s) until the connections of (a) and (b) have closed.
async fn wait_until_no_router_connections(admin: &tokio_postgres::Client) -> anyhow::Result<()> {
    let waiting = Instant::now();
    while admin
        .query_one(ROUTER_CONNECTIONS, &[])
        .await?
        .get::<_, i64>(0)
        > 0
    {
        anyhow::ensure!(
            waiting.elapsed() < Duration::from_secs(30),
            "the connections of the first cases did not close"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Every 10 ms until `stop`, raises `peak` to the server's count of router connections.
async fn watch_peak(admin: tokio_postgres::Client, peak: Arc<AtomicUsize>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        if let Ok(r) = admin.query_one(ROUTER_CONNECTIONS, &[]).await {
            peak.fetch_max(r.get::<_, i64>(0) as usize, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Task `task` of (c): its share of `zipf_ops` queries, each to a tenant drawn from `cdf`.
/// Returns the latency of each successful acquire, in milliseconds, all and those of tenants some
/// task had reached before (`seen`); counts failures in `errors`.
async fn zipf_task(
    task: u64,
    fleet: Fleet,
    cdf: Arc<Vec<f64>>,
    errors: Arc<AtomicUsize>,
    seen: Arc<Vec<AtomicBool>>,
    zipf_ops: usize,
    prefix: &'static str,
) -> (Vec<f64>, Vec<f64>) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (task + 1).wrapping_mul(0x1000_0001));
    let (mut lat, mut lat_seen) = (Vec::new(), Vec::new());
    for _ in 0..zipf_ops / ZIPF_TASKS as usize {
        let u = rng.next_f64();
        let i = cdf.partition_point(|c| *c < u).min(cdf.len() - 1);
        let key = format!("{prefix}{i:05}");
        let reached = seen[i].swap(true, Ordering::Relaxed);
        let t = Instant::now();
        match fleet.client(&key).await {
            Ok(c) => {
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                lat.push(ms);
                if reached {
                    lat_seen.push(ms);
                }
                if c.simple_query("select 1").await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("router: {e}");
            }
        }
    }
    (lat, lat_seen)
}

/// (d)'s baseline: `ops` queries by `ZIPF_TASKS` tasks, each on a new connection (logged in as the
/// tenant drawn from Zipf(1.1) over the `d…` tenants, `select 1`, closed). Returns the seconds.
fn connect_per_request(f: &ChatFleet, n_tenants: usize, ops: usize) -> anyhow::Result<f64> {
    let configs: Vec<tokio_postgres::Config> = f.rt.block_on(async {
        let mut out = Vec::with_capacity(n_tenants);
        for i in 0..n_tenants {
            let p = f
                .control
                .placement(&format!("d{i:05}"))
                .await?
                .ok_or_else(|| anyhow::anyhow!("d{i:05} is not ready"))?;
            out.push(p.config);
        }
        anyhow::Ok(out)
    })?;
    let configs = Arc::new(configs);
    let cdf = Arc::new(zipf_cdf(n_tenants));
    f.rt.block_on(async {
        let started = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for task in 0..ZIPF_TASKS {
            let (configs, cdf) = (configs.clone(), cdf.clone());
            set.spawn(async move {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (task + 1).wrapping_mul(0x1000_0001));
                for _ in 0..ops / ZIPF_TASKS as usize {
                    let u = rng.next_f64();
                    let i = cdf.partition_point(|c| *c < u).min(cdf.len() - 1);
                    let (client, conn) = configs[i].connect(tokio_postgres::NoTls).await?;
                    let driver = tokio::spawn(conn);
                    client.simple_query("select 1").await?;
                    drop(client);
                    let _ = driver.await;
                }
                anyhow::Ok(())
            });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        anyhow::Ok(started.elapsed().as_secs_f64())
    })
}

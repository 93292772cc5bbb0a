//! `router`: the hot path, in one run on one embedded cluster.
//!
//! (a) `select 1` through `Fleet::client(key)` against a plain deadpool-postgres pool of
//!     tokio-postgres connections to the same database as the same role;
//! (b) against a seed-style wrapper that checks every required table of the schema on each
//!     connection before the query (a deadpool pool plus one existence query per table);
//! (c) many schema-mode tenants (10,000; 1,000 with `--quick`) under Zipf(1.1) access by 64 tasks
//!     with a budget of 100 connections: errors, acquire latency, peak server connections.
//!
//! (a) and (b) run interleaved, five rounds each, and report medians.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pgfleet::control::provision::CreateOptions;
use pgfleet::control::tenant::Mode;
use pgfleet::pg::connect;
use pgfleet::{Fleet, RouterOptions};

use crate::Report;

/// The tables a seed-style wrapper checks on every connection.
const REQUIRED: &[&str] = &[
    "users",
    "chat_threads",
    "chat_messages",
    "documents",
    "schema_corrections",
];

fn percentile_ms(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    crate::report::percentile(samples, p)
}

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

/// Runs the benchmark.
///
/// # Errors
/// When a server cannot be started or a tenant cannot be provisioned.
pub fn run(quick: bool) -> anyhow::Result<Report> {
    let (n_tenants, ops_per_round, zipf_ops) = if quick {
        (1_000, 2_000, 5_000)
    } else {
        (10_000, 10_000, 40_000)
    };
    let mut report = Report::new("router", quick);
    let f = crate::chat_fleet::ChatFleet::start("bench_router")?;
    let (cluster, rt, control, config) = (&f.cluster, &f.rt, &f.control, f.config.clone());

    // (a) and (b): one tenant, three ways to reach it.
    let tasks = 8usize;
    let fleet = rt.block_on(Fleet::connect(
        config.clone(),
        RouterOptions {
            budget_per_server: 100,
            per_tenant: tasks,
            ..RouterOptions::default()
        },
    ))?;
    let schema_opts = CreateOptions {
        mode: Some(Mode::Schema),
        server: None,
    };
    rt.block_on(control.provision("hot", &schema_opts, Duration::from_secs(300)))?;
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
    .max_size(tasks)
    .runtime(deadpool_postgres::Runtime::Tokio1)
    .build()?;

    #[derive(Clone, Copy, PartialEq)]
    enum Way {
        Fleet,
        Direct,
        CheckEach,
    }
    let round = |way: Way| -> anyhow::Result<(f64, Vec<f64>)> {
        let (fleet, pool) = (fleet.clone(), pool.clone());
        rt.block_on(async move {
            let per_task = ops_per_round / tasks;
            let started = Instant::now();
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..tasks {
                let (fleet, pool) = (fleet.clone(), pool.clone());
                set.spawn(async move {
                    let mut lat = Vec::with_capacity(per_task);
                    for _ in 0..per_task {
                        let t = Instant::now();
                        match way {
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
    };
    // Warm-up: pools filled.
    for way in [Way::Fleet, Way::Direct, Way::CheckEach] {
        round(way)?;
    }
    let mut times: [Vec<f64>; 3] = Default::default();
    let mut lats: [Vec<f64>; 3] = Default::default();
    for _ in 0..5 {
        for (i, way) in [Way::Fleet, Way::Direct, Way::CheckEach]
            .into_iter()
            .enumerate()
        {
            let (t, l) = round(way)?;
            times[i].push(t);
            lats[i].extend(l);
        }
    }
    let labels = [
        "select 1 through Fleet::client",
        "select 1 through a plain deadpool pool (direct)",
        "select 1 through a pool that checks 5 tables per connection (seed style)",
    ];
    let mut medians = [0.0; 3];
    for i in 0..3 {
        medians[i] = percentile_ms(&mut times[i], 50.0);
        report.push(
            labels[i],
            "throughput",
            ops_per_round as f64 / medians[i],
            "ops/s",
        );
        report.push(labels[i], "p50", percentile_ms(&mut lats[i], 50.0), "ms");
        report.push(labels[i], "p99", percentile_ms(&mut lats[i], 99.0), "ms");
    }

    // (c): many tenants, Zipf access, a budget. The connections of (a) and (b) go first, so the
    // server's count is this router's alone.
    pool.close();
    drop(pool);
    drop(fleet);
    let started = Instant::now();
    rt.block_on(async {
        let gate = Arc::new(tokio::sync::Semaphore::new(8));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..n_tenants {
            let (c, gate, opts) = (control.clone(), gate.clone(), schema_opts.clone());
            set.spawn(async move {
                let _p = gate.acquire_owned().await?;
                c.provision(&format!("z{i:05}"), &opts, Duration::from_secs(600))
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
    })?;
    let budget = 100usize;
    let fleet = rt.block_on(Fleet::connect(
        config,
        RouterOptions {
            budget_per_server: budget,
            acquire_timeout: Duration::from_secs(30),
            ..RouterOptions::default()
        },
    ))?;
    // Zipf(1.1) over the tenants: a CDF to sample from.
    let weights: Vec<f64> = (1..=n_tenants)
        .map(|k| 1.0 / (k as f64).powf(1.1))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(n_tenants);
    let mut acc = 0.0;
    for w in &weights {
        acc += w / total;
        cdf.push(acc);
    }
    let cdf = Arc::new(cdf);
    let errors = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (acquire, zipf_s, peak_seen) = rt.block_on(async {
        let watcher_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let admin = connect::connect(&connect::parse_url(&cluster.url())?).await?;
        let count = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgfleet router'";
        let waiting = Instant::now();
        while admin.query_one(count, &[]).await?.get::<_, i64>(0) > 0 {
            anyhow::ensure!(
                waiting.elapsed() < Duration::from_secs(30),
                "the connections of the first cases did not close"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let watcher = {
            let (peak, stop) = (peak.clone(), watcher_stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(r) = admin
                        .query_one(
                            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgfleet router'",
                            &[],
                        )
                        .await
                    {
                        peak.fetch_max(r.get::<_, i64>(0) as usize, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        let started = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for task in 0..64u64 {
            let (fleet, cdf, errors) = (fleet.clone(), cdf.clone(), errors.clone());
            set.spawn(async move {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (task + 1).wrapping_mul(0x1000_0001));
                let mut lat = Vec::new();
                for _ in 0..zipf_ops / 64 {
                    let u = rng.next_f64();
                    let i = cdf.partition_point(|c| *c < u).min(cdf.len() - 1);
                    let key = format!("z{i:05}");
                    let t = Instant::now();
                    match fleet.client(&key).await {
                        Ok(c) => {
                            lat.push(t.elapsed().as_secs_f64() * 1000.0);
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
                lat
            });
        }
        let mut acquire = Vec::new();
        while let Some(r) = set.join_next().await {
            acquire.extend(r?);
        }
        let elapsed = started.elapsed().as_secs_f64();
        watcher_stop.store(true, Ordering::Relaxed);
        watcher.await?;
        anyhow::Ok((acquire, elapsed, peak.load(Ordering::Relaxed)))
    })?;
    let mut acquire = acquire;
    let case = format!("{n_tenants} schema tenants, Zipf(1.1), 64 tasks, budget {budget}");
    report.push(
        &case,
        "acquire p50",
        percentile_ms(&mut acquire, 50.0),
        "ms",
    );
    report.push(
        &case,
        "acquire p99",
        percentile_ms(&mut acquire, 99.0),
        "ms",
    );
    report.push(&case, "throughput", zipf_ops as f64 / zipf_s, "ops/s");
    report.push(&case, "peak server connections", peak_seen as f64, "count");
    report.push(
        &case,
        "errors",
        errors.load(Ordering::Relaxed) as f64,
        "count",
    );

    report.ratio("overhead_vs_direct", medians[0] / medians[1]);
    report.ratio("speedup_vs_check_each_connect", medians[2] / medians[0]);
    report.ratio("budget_exceeded", peak_seen as f64 - budget as f64);
    report.ratio("errors", errors.load(Ordering::Relaxed) as f64);
    Ok(report)
}

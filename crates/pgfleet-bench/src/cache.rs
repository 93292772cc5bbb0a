//! `cache`: the result cache under a read-heavy chat workload over 100 schema tenants — 95 % reads
//! (a user's thread list with each thread's last message; a thread's messages), 5 % new messages
//! — with the cache on and off in the same run, through `POST /sql` (keep-alive, 32 clients, app
//! token) and through the library's cached call (`Router::query_cached`, 32 tasks). The reads carry
//! a `/* pgfleet:cache max-age=30 */` comment; with the cache off the same text goes to the server.
//! The ways run interleaved, three measured rounds each after a warm-up; medians are reported.
//!
//! Each way has its own 100 tenants, so that no way's writes meet another's cache. Every read of
//! a thread's messages checks that it holds at least the messages whose insert had finished
//! before the read began (`stale_reads`, same process). A second router with its own
//! cache stands for another process: the time from a write through the first until the second
//! stops serving the old result is `cross_process_stale_ms` (notifications through the catalog).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pgfleet::control::Control;
use pgfleet::control::provision::CreateOptions;
use pgfleet::control::tenant::Mode;
use pgfleet::control::tokens::Scope;
use pgfleet::router::cache::{CacheOptions, CacheStatus};
use pgfleet::router::{Router, RouterOptions};

use crate::Report;
use crate::chat_fleet::ChatFleet;
use crate::http::HttpClient;

const TENANTS: usize = 100;
const THREADS: usize = 5;
const MESSAGES: usize = 10;
const CLIENTS: usize = 32;
const ROUNDS: usize = 3;

const THREAD_LIST: &str = "/* pgfleet:cache max-age=30 */ SELECT t.id, t.title, t.updated_at, m.content AS last_message \
FROM chat_threads t LEFT JOIN LATERAL (SELECT content FROM chat_messages WHERE thread_id = t.id ORDER BY id DESC LIMIT 1) m ON true \
WHERE t.user_id = $1 AND NOT t.archived ORDER BY t.updated_at DESC LIMIT 20";
const THREAD_MESSAGES: &str = "/* pgfleet:cache max-age=30 */ SELECT id, role, content, created_at \
FROM chat_messages WHERE thread_id = $1 ORDER BY id";
const NEW_MESSAGE: &str =
    "INSERT INTO chat_messages (thread_id, role, content) VALUES ($1, 'user', $2)";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Way {
    HttpOff = 0,
    HttpOn = 1,
    LibraryOff = 2,
    LibraryOn = 3,
}

const WAYS: [Way; 4] = [Way::HttpOff, Way::HttpOn, Way::LibraryOff, Way::LibraryOn];

impl Way {
    fn label(self) -> &'static str {
        match self {
            Way::HttpOff => "POST /sql, cache off (32 clients)",
            Way::HttpOn => "POST /sql, cache on (32 clients)",
            Way::LibraryOff => "Router::query_cached, cache off (32 tasks)",
            Way::LibraryOn => "Router::query_cached, cache on (32 tasks)",
        }
    }
}

/// One tenant's seeded rows.
struct Tenant {
    key: String,
    conn_string: String,
    user: String,
    threads: Vec<String>,
    /// Messages per thread whose insert had finished.
    done: Vec<AtomicUsize>,
}

struct Setup {
    /// Each way's own tenants (index of [`WAYS`]), so that one way's writes never meet
    /// another's cache.
    tenants: Vec<Vec<Tenant>>,
    http_on: std::net::SocketAddr,
    http_off: std::net::SocketAddr,
    lib_on: Router<Control>,
    lib_off: Router<Control>,
    /// Another "process": its own router and cache, hearing of writes through the catalog.
    peer: Router<Control>,
    stale: AtomicUsize,
    _keep: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

/// Runs the benchmark.
///
/// # Errors
/// When the fleet, the server or a query fails.
pub fn run(quick: bool) -> anyhow::Result<Report> {
    let ops = if quick { 4_000 } else { 20_000 };
    let trials = if quick { 20 } else { 100 };
    let mut report = Report::new("cache", quick);
    let f = ChatFleet::start("bench_cache")?;
    let setup = Arc::new(set_up(&f)?);
    let mut times: [Vec<f64>; 4] = Default::default();
    let mut lats: [Vec<f64>; 4] = Default::default();
    let mut hits = [0usize; 4];
    let mut reads = [0usize; 4];
    for round in 0..=ROUNDS {
        for (i, way) in WAYS.into_iter().enumerate() {
            let (t, l, h, r) =
                f.rt.block_on(round_of(setup.clone(), way, ops, round as u64))?;
            eprintln!(
                "round {round} {way:?}: {:.0} ops/s, {h} hits of {r} reads",
                ops as f64 / t
            );
            if round > 0 {
                times[i].push(t);
                lats[i].extend(l);
                hits[i] += h;
                reads[i] += r;
            }
        }
    }
    let mut medians = [0.0; 4];
    for (i, way) in WAYS.into_iter().enumerate() {
        medians[i] = crate::report::percentile_of(&mut times[i], 50.0);
        report.push(way.label(), "throughput", ops as f64 / medians[i], "ops/s");
        for p in [50.0, 99.0] {
            let v = crate::report::percentile_of(&mut lats[i], p);
            report.push(way.label(), &format!("p{p}"), v, "ms");
        }
        if matches!(way, Way::HttpOn | Way::LibraryOn) {
            report.push(
                way.label(),
                "hit rate",
                hits[i] as f64 / reads[i].max(1) as f64,
                "ratio",
            );
        }
    }
    let stats = setup.lib_on.cache().stats();
    report.push(
        "library cache at the end",
        "memory",
        stats.bytes as f64 / (1 << 20) as f64,
        "MiB",
    );
    report.push(
        "library cache at the end",
        "entries",
        stats.entries as f64,
        "count",
    );
    let delays = f.rt.block_on(cross_process(&setup, trials))?;
    let mut delays_ms: Vec<f64> = delays.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    for p in [50.0, 99.0] {
        let v = crate::report::percentile_of(&mut delays_ms, p);
        report.push(
            "another process stops serving a stale result",
            &format!("p{p}"),
            v,
            "ms",
        );
    }
    report.ratio("cached_vs_uncached_http", medians[0] / medians[1]);
    report.ratio("cached_vs_uncached_library", medians[2] / medians[3]);
    report.ratio("hit_rate_http", hits[1] as f64 / reads[1].max(1) as f64);
    report.ratio("hit_rate_library", hits[3] as f64 / reads[3].max(1) as f64);
    report.ratio("stale_reads", setup.stale.load(Ordering::SeqCst) as f64);
    report.ratio(
        "cross_process_stale_ms_p99",
        crate::report::percentile_of(&mut delays_ms, 99.0),
    );
    report.ratio("cache_memory_mib", stats.bytes as f64 / (1 << 20) as f64);
    Ok(report)
}

/// Five routers share the server's 200 connections: each may hold one per client.
fn router_options(cache: bool) -> RouterOptions {
    RouterOptions {
        budget_per_server: CLIENTS,
        per_tenant: 8,
        cache: CacheOptions {
            max_bytes: if cache { 64 << 20 } else { 0 },
            ..CacheOptions::default()
        },
        ..RouterOptions::default()
    }
}

fn set_up(f: &ChatFleet) -> anyhow::Result<Setup> {
    let control = f.control.clone();
    f.rt.block_on(async {
        let opts = CreateOptions {
            mode: Some(Mode::Schema),
            server: None,
        };
        let token = control.create_token("bench", Scope::Sql).await?.secret;
        let mut tenants: Vec<Vec<Tenant>> = WAYS.iter().map(|_| Vec::new()).collect();
        for i in 0..TENANTS * WAYS.len() {
            let key = format!("chat{i:03}");
            control.provision(&key, &opts, Duration::from_secs(300)).await?;
            let placement = control
                .placement(&key)
                .await?
                .ok_or_else(|| anyhow::anyhow!("tenant {key} is not ready"))?;
            let c = pgfleet::pg::connect::connect(&placement.config).await?;
            let user: i64 = c
                .query_one(
                    "INSERT INTO users (external_id, email) VALUES ($1, $1 || '@example.com') RETURNING id",
                    &[&key],
                )
                .await?
                .get(0);
            let mut threads = Vec::new();
            for t in 0..THREADS {
                let id: String = c
                    .query_one(
                        "INSERT INTO chat_threads (user_id, title) VALUES ($1, $2) RETURNING id::text",
                        &[&user, &format!("thread {t}")],
                    )
                    .await?
                    .get(0);
                c.execute(
                    "INSERT INTO chat_messages (thread_id, role, content) \
                     SELECT $1::text::uuid, 'user', 'message ' || i FROM generate_series(1, $2) i",
                    &[&id, &(MESSAGES as i32)],
                )
                .await?;
                threads.push(id);
            }
            tenants[i % WAYS.len()].push(Tenant {
                conn_string: format!("postgresql://{key}:{token}@pgfleet.internal/app"),
                key,
                user: user.to_string(),
                done: threads.iter().map(|_| AtomicUsize::new(MESSAGES)).collect(),
                threads,
            });
        }
        let mut keep: Vec<Box<dyn std::any::Any + Send + Sync>> = Vec::new();
        let door = |cache: bool| {
            let control = control.clone();
            async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                let door = pgfleet_server::SqlFrontDoor {
                    listener: Some(listener),
                    pg: None,
                    pg_options: Default::default(),
                    options: pgfleet_server::sql::SqlOptions {
                        max_concurrent_per_tenant: CLIENTS,
                        ..Default::default()
                    },
                    jwt: Default::default(),
                    tls: None,
                    router: router_options(cache),
                };
                let (stop, stopped) = tokio::sync::watch::channel(false);
                pgfleet_server::start_sql(&control, door, stopped).await?;
                anyhow::Ok((addr, stop))
            }
        };
        let (http_on, stop_on) = door(true).await?;
        let (http_off, stop_off) = door(false).await?;
        keep.push(Box::new(stop_on));
        keep.push(Box::new(stop_off));
        let lib_on = Router::new(control.clone(), router_options(true));
        let peer = Router::new(control.clone(), router_options(true));
        let url = control.config().catalog_url.clone();
        keep.push(Box::new(pgfleet::control::cache_bus::spawn(
            url.clone(),
            lib_on.cache().clone(),
        )));
        keep.push(Box::new(pgfleet::control::cache_bus::spawn(
            url,
            peer.cache().clone(),
        )));
        anyhow::Ok(Setup {
            tenants,
            http_on,
            http_off,
            lib_on,
            lib_off: Router::new(control.clone(), router_options(false)),
            peer,
            stale: AtomicUsize::new(0),
            _keep: keep,
        })
    })
}

/// The rows of a `/sql` answer, counted without being kept.
#[derive(serde::Deserialize)]
struct Rows {
    rows: Vec<serde::de::IgnoredAny>,
}

/// A small deterministic generator (xorshift), one per task.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// What one operation is.
enum Op<'a> {
    List(&'a Tenant),
    Messages(&'a Tenant, usize),
    Write(&'a Tenant, usize),
}

fn pick<'a>(s: &'a Setup, way: usize, rng: &mut Rng) -> Op<'a> {
    let t = &s.tenants[way][rng.below(TENANTS)];
    let thread = rng.below(THREADS);
    match rng.below(100) {
        0..5 => Op::Write(t, thread),
        5..50 => Op::List(t),
        _ => Op::Messages(t, thread),
    }
}

/// One round: `ops` operations by [`CLIENTS`] tasks. Wall time (s), latencies (ms), cache hits
/// and reads.
async fn round_of(
    s: Arc<Setup>,
    way: Way,
    ops: usize,
    round: u64,
) -> anyhow::Result<(f64, Vec<f64>, usize, usize)> {
    let per_task = ops / CLIENTS;
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for task in 0..CLIENTS {
        let s = s.clone();
        set.spawn(async move {
            let mut rng = Rng((round << 32) ^ ((task as u64 + 1) * 0x9E37_79B9_7F4A_7C15));
            let mut lat = Vec::with_capacity(per_task);
            let (mut hits, mut reads) = (0, 0);
            let mut http = match way {
                Way::HttpOn => Some(HttpClient::connect(s.http_on).await?),
                Way::HttpOff => Some(HttpClient::connect(s.http_off).await?),
                _ => None,
            };
            let router = if way == Way::LibraryOn {
                &s.lib_on
            } else {
                &s.lib_off
            };
            for _ in 0..per_task {
                let op = pick(&s, way as usize, &mut rng);
                let t = Instant::now();
                let (tenant, sql, param, floor) = match op {
                    Op::List(t) => (t, THREAD_LIST, t.user.clone(), None),
                    Op::Messages(t, i) => (
                        t,
                        THREAD_MESSAGES,
                        t.threads[i].clone(),
                        Some(t.done[i].load(Ordering::SeqCst)),
                    ),
                    Op::Write(t, i) => (t, NEW_MESSAGE, t.threads[i].clone(), None),
                };
                let content = "a new message".to_string();
                let params: Vec<&str> = if matches!(op, Op::Write(..)) {
                    vec![&param, &content]
                } else {
                    vec![&param]
                };
                let (rows, status) = match &mut http {
                    Some(client) => {
                        let (headers, body) =
                            client.send(&tenant.conn_string, sql, &params).await?;
                        let rows = serde_json::from_slice::<Rows>(&body)?.rows.len();
                        let status = match headers.get("pgfleet-cache").map(|v| v.as_bytes()) {
                            Some(b"hit") => CacheStatus::Hit,
                            Some(b"miss") => CacheStatus::Miss,
                            _ => CacheStatus::Bypass,
                        };
                        (rows, status)
                    }
                    None => {
                        let p: Vec<Option<&str>> = params.iter().map(|p| Some(*p)).collect();
                        let (r, status) = router.query_cached(&tenant.key, sql, &p).await?;
                        (r.rows.len(), status)
                    }
                };
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                match op {
                    Op::Write(t, i) => {
                        t.done[i].fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {
                        reads += 1;
                        if status == CacheStatus::Hit {
                            hits += 1;
                        }
                        if floor.is_some_and(|f| rows < f) {
                            s.stale.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }
            anyhow::Ok((lat, hits, reads))
        });
    }
    let (mut all, mut hits, mut reads) = (Vec::with_capacity(ops), 0, 0);
    while let Some(r) = set.join_next().await {
        let (l, h, n) = r??;
        all.extend(l);
        hits += h;
        reads += n;
    }
    Ok((started.elapsed().as_secs_f64(), all, hits, reads))
}

/// Writes through one router and measures how long the other ("another process") keeps serving
/// the result the write made stale.
async fn cross_process(s: &Setup, trials: usize) -> anyhow::Result<Vec<Duration>> {
    let mut delays = Vec::with_capacity(trials);
    for i in 0..trials {
        let t = &s.tenants[Way::LibraryOn as usize][i % TENANTS];
        let thread = t.threads[i % THREADS].as_str();
        let read = |r: &Router<Control>| {
            let r = r.clone();
            let (key, thread) = (t.key.clone(), thread.to_string());
            async move {
                let (rows, status) = r
                    .query_cached(&key, THREAD_MESSAGES, &[Some(&thread)])
                    .await?;
                anyhow::Ok((rows.rows.len(), status))
            }
        };
        let (before, _) = read(&s.peer).await?;
        let (again, status) = read(&s.peer).await?;
        anyhow::ensure!(
            status == CacheStatus::Hit && again == before,
            "the peer did not cache: {status:?}, {before} then {again} rows"
        );
        s.lib_on
            .query_cached(&t.key, NEW_MESSAGE, &[Some(thread), Some("from elsewhere")])
            .await?;
        t.done[i % THREADS].fetch_add(1, Ordering::SeqCst);
        let wrote = Instant::now();
        loop {
            let (n, _) = read(&s.peer).await?;
            if n > before {
                break;
            }
            anyhow::ensure!(
                wrote.elapsed() < Duration::from_secs(10),
                "the peer served the stale result for 10 s"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        delays.push(wrote.elapsed());
    }
    Ok(delays)
}

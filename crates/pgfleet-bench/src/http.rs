//! `http`: SQL over HTTP (`POST /sql` of `pgfleet serve --sql-listen`, in process, app token,
//! keep-alive) against the same queries on the same tenant as the same role through
//!
//! - a plain deadpool-postgres pool with cached prepared statements (the strongest baseline: what
//!   a Rust app with a pool does), and
//! - a new connection per request (what serverless functions without a pooler do),
//!
//! for `select 1` and a 10-row select, by 32 concurrent clients. The ways run interleaved, three
//! measured rounds each after a warm-up, and report the median round.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use pgfleet::control::provision::CreateOptions;
use pgfleet::control::tenant::Mode;
use pgfleet::control::tokens::Scope;
use pgfleet::router::RouterOptions;

use crate::Report;
use crate::chat_fleet::ChatFleet;

/// Concurrent clients.
const CLIENTS: usize = 32;
/// Measured rounds of each way, after one warm-up round each.
const ROUNDS: usize = 3;
const TEN_ROWS: &str =
    "SELECT id, external_id, email, display_name, created_at FROM users ORDER BY id LIMIT 10";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    Http,
    Direct,
    ConnectEach,
}

const WAYS: [Way; 3] = [Way::Http, Way::Direct, Way::ConnectEach];

impl Way {
    fn label(self, query: &str) -> String {
        let q = if query == "select 1" {
            "select 1"
        } else {
            "10-row select"
        };
        match self {
            Way::Http => format!("{q} through POST /sql (keep-alive, {CLIENTS} clients)"),
            Way::Direct => format!("{q} through a plain deadpool pool (direct, {CLIENTS})"),
            Way::ConnectEach => format!("{q}, a new connection per request ({CLIENTS} clients)"),
        }
    }
}

/// Everything a round needs.
#[derive(Clone)]
struct Setup {
    endpoint: std::net::SocketAddr,
    conn_string: String,
    pool: deadpool_postgres::Pool,
    config: tokio_postgres::Config,
    /// Keeps the front door serving.
    _stop: Arc<tokio::sync::watch::Sender<bool>>,
}

/// Runs the benchmark.
///
/// # Errors
/// When the fleet, the server or a query fails.
pub fn run(quick: bool) -> anyhow::Result<Report> {
    let ops = if quick { 2_000 } else { 10_000 };
    let mut report = Report::new("http", quick);
    let f = ChatFleet::start("bench_http")?;
    let setup = set_up(&f)?;
    let mut ratios = Vec::new();
    for query in ["select 1", TEN_ROWS] {
        let mut times: [Vec<f64>; 3] = Default::default();
        let mut lats: [Vec<f64>; 3] = Default::default();
        for round in 0..=ROUNDS {
            for (i, way) in WAYS.into_iter().enumerate() {
                let (t, l) = f.rt.block_on(round_of(&setup, way, query, ops))?;
                if round > 0 {
                    times[i].push(t);
                    lats[i].extend(l);
                }
            }
        }
        let mut medians = [0.0; 3];
        for (i, way) in WAYS.into_iter().enumerate() {
            medians[i] = crate::report::percentile_of(&mut times[i], 50.0);
            let label = way.label(query);
            report.push(&label, "throughput", ops as f64 / medians[i], "ops/s");
            report.push(
                &label,
                "p50",
                crate::report::percentile_of(&mut lats[i], 50.0),
                "ms",
            );
            report.push(
                &label,
                "p99",
                crate::report::percentile_of(&mut lats[i], 99.0),
                "ms",
            );
        }
        ratios.push((medians[1] / medians[0], medians[2] / medians[0]));
    }
    report.ratio("http_vs_direct", ratios[0].0);
    report.ratio("http_vs_connect_per_request", ratios[0].1);
    report.ratio("http_vs_direct_10_rows", ratios[1].0);
    report.ratio("http_vs_connect_per_request_10_rows", ratios[1].1);
    Ok(report)
}

/// Provisions tenant `hot` with 10 users, an app token, a `/sql` front door and a plain pool.
fn set_up(f: &ChatFleet) -> anyhow::Result<Setup> {
    let control = f.control.clone();
    f.rt.block_on(async {
        let opts = CreateOptions {
            mode: Some(Mode::Schema),
            server: None,
        };
        control.provision("hot", &opts, Duration::from_secs(300)).await?;
        let placement = control
            .placement("hot")
            .await?
            .ok_or_else(|| anyhow::anyhow!("tenant hot is not ready"))?;
        let seed = pgfleet::pg::connect::connect(&placement.config).await?;
        seed.batch_execute(
            "INSERT INTO users (external_id, email, display_name) \
             SELECT 'u' || i, 'u' || i || '@example.com', 'User ' || i FROM generate_series(1, 10) i",
        )
        .await?;
        let token = control.create_token("bench", Scope::Sql).await?.secret;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = listener.local_addr()?;
        let door = pgfleet_server::SqlFrontDoor {
            listener: Some(listener),
            pg: None,
            pg_options: Default::default(),
            options: pgfleet_server::sql::SqlOptions {
                max_concurrent_per_tenant: CLIENTS * 2,
                ..Default::default()
            },
            jwt: Default::default(),
            tls: None,
            router: RouterOptions {
                budget_per_server: 100,
                per_tenant: CLIENTS,
                ..RouterOptions::default()
            },
        };
        // Serves until the benchmark's runtime ends (the sender lives in `Setup`).
        let (stop, stopped) = tokio::sync::watch::channel(false);
        pgfleet_server::start_sql(&control, door, stopped).await?;
        let pool = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::from_config(
            placement.config.clone(),
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        ))
        .max_size(CLIENTS)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?;
        anyhow::Ok(Setup {
            endpoint,
            conn_string: format!("postgresql://hot:{token}@pgfleet.internal/app"),
            pool,
            config: placement.config,
            _stop: Arc::new(stop),
        })
    })
}

/// One round: `ops` queries by [`CLIENTS`] tasks. Wall time (s) and latencies (ms).
async fn round_of(s: &Setup, way: Way, query: &str, ops: usize) -> anyhow::Result<(f64, Vec<f64>)> {
    let per_task = ops / CLIENTS;
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (s, query) = (s.clone(), query.to_string());
        set.spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            match way {
                Way::Http => {
                    let mut client = HttpClient::connect(s.endpoint).await?;
                    for _ in 0..per_task {
                        let t = Instant::now();
                        let (_, body) = client.send(&s.conn_string, &query, &[]).await?;
                        std::hint::black_box(body.len());
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                }
                Way::Direct => {
                    for _ in 0..per_task {
                        let t = Instant::now();
                        let c = s.pool.get().await?;
                        let stmt = c.prepare_cached(&query).await?;
                        let rows = c.query(&stmt, &[]).await?;
                        std::hint::black_box(rows.len());
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                }
                Way::ConnectEach => {
                    for _ in 0..per_task {
                        let t = Instant::now();
                        let (c, conn) = s.config.connect(tokio_postgres::NoTls).await?;
                        let task = tokio::spawn(conn);
                        let rows = c.simple_query(&query).await?;
                        std::hint::black_box(rows.len());
                        drop(c);
                        let _ = task.await;
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                }
            }
            anyhow::Ok(lat)
        });
    }
    let mut all = Vec::with_capacity(ops);
    while let Some(r) = set.join_next().await {
        all.extend(r??);
    }
    Ok((started.elapsed().as_secs_f64(), all))
}

/// One keep-alive HTTP/1.1 connection to `/sql`.
pub(crate) struct HttpClient {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl HttpClient {
    pub(crate) async fn connect(endpoint: std::net::SocketAddr) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(endpoint).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self { sender })
    }

    /// Sends one query in array mode; the answer's headers and body, or an error for a status
    /// other than 200.
    pub(crate) async fn send(
        &mut self,
        conn_string: &str,
        query: &str,
        params: &[&str],
    ) -> anyhow::Result<(hyper::HeaderMap, Bytes)> {
        let body = serde_json::json!({ "query": query, "params": params }).to_string();
        let req = hyper::Request::post("/sql")
            .header("host", "pgfleet.internal")
            .header("content-type", "text/plain;charset=UTF-8")
            .header("neon-connection-string", conn_string)
            .header("neon-raw-text-output", "true")
            .header("neon-array-mode", "true")
            .body(Full::new(Bytes::from(body)))?;
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await?.to_bytes();
        anyhow::ensure!(
            status == 200,
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        Ok((headers, bytes))
    }
}

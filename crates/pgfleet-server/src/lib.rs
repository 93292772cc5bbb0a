//! pgfleet's HTTP server, `pgfleet serve`: the background workers (operations queue, provisioning
//! that resumes any unfinished tenant, health checker, spare schemas) plus
//!
//! | path | answers |
//! |---|---|
//! | `GET /healthz` | `200 ok` while the process runs (liveness) |
//! | `GET /readyz` | `200 ready` when the catalog answers within 2 s and the process is not shutting down; `503` with the reason otherwise |
//! | `/` | the admin dashboard ([`dashboard`]): sign in with a `read` or `admin` token |
//! | `/v1/…` | the management API ([`api`]); its OpenAPI 3.1 document at `/v1/openapi.json` |
//! | `POST /sql` | on its own listener (`--sql-listen`): SQL over HTTP for the Neon serverless driver, see [`sql`] |
//! | `GET /metrics` | Prometheus text format: whether the catalog is up and how old the data behind the tenant gauges is, tenants by state, server and health (read from the catalog every metrics interval; withdrawn when that data is stale, see [`catalog_gauges`]), operations by kind and outcome, provisioning, migration and health-check durations (histograms), health-check results, corrections, catalog errors |
//!
//! Several processes can serve one catalog: they share the work through the catalog (leases,
//! advisory locks, `FOR UPDATE SKIP LOCKED`). On shutdown the server stops taking new work,
//! finishes what is in flight, hands unfinished operations back to the queue and exits.

#![deny(missing_docs)]

pub mod api;
pub mod catalog_gauges;
pub mod dashboard;
pub mod history;
pub mod pg;
pub mod sql;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use pgfleet::control::Control;
use pgfleet::control::worker::WorkerOptions;

use crate::catalog_gauges::CatalogGauges;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The listen address cannot be bound.
    #[error(
        "cannot listen on {addr}: {cause} (pass another --listen address, or stop what uses it)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        cause: String,
    },
    /// Serving HTTP failed.
    #[error("serving HTTP: {0}")]
    Http(#[source] std::io::Error),
    /// The metrics recorder could not be installed.
    #[error("installing the metrics recorder: {0}")]
    Metrics(String),
    /// The workers stopped with an error.
    #[error(transparent)]
    Control(#[from] pgfleet::control::ControlError),
    /// The JWT keys cannot be used.
    #[error(transparent)]
    Jwt(#[from] sql::jwt::JwtConfigError),
}

/// How to serve.
#[derive(Debug)]
pub struct ServeOptions {
    /// The background workers (`None`: HTTP only).
    pub workers: Option<WorkerOptions>,
    /// How often the tenant gauges are read from the catalog (they are withdrawn when their data
    /// is older than [`catalog_gauges::STALE_AFTER`] intervals).
    pub metrics_interval: Duration,
    /// The SQL-over-HTTP front door on a listener of its own (`None`: not served).
    pub sql: Option<SqlFrontDoor>,
    /// Dashboard sessions end after this long unused ([`api::DEFAULT_SESSION_IDLE`]).
    pub session_idle: Duration,
    /// How rollouts started over the API and the dashboard run (concurrency, per server, lock
    /// wait; each request may change canary, continue-on-error and verify).
    pub rollouts: pgfleet::control::fleet::FleetOptions,
}

impl Default for ServeOptions {
    /// HTTP only: no workers, no SQL front door, the default intervals.
    fn default() -> Self {
        Self {
            workers: None,
            metrics_interval: DEFAULT_METRICS_INTERVAL,
            sql: None,
            session_idle: api::DEFAULT_SESSION_IDLE,
            rollouts: pgfleet::control::fleet::FleetOptions::default(),
        }
    }
}

/// The SQL front doors of [`serve`]: SQL over HTTP (see [`sql`]) and the PostgreSQL wire
/// protocol (see [`pg`]), over one router (one budget per server) and one way of checking
/// callers.
pub struct SqlFrontDoor {
    /// The SQL-over-HTTP listener (`--sql-listen`; also `GET /v2`, the wire protocol over
    /// WebSocket), if served.
    pub listener: Option<tokio::net::TcpListener>,
    /// The wire-protocol listener (`--pg-listen`), if served.
    pub pg: Option<tokio::net::TcpListener>,
    /// How the wire protocol is served, on `pg` and over WebSocket (`/v2`).
    pub pg_options: pg::PgOptions,
    /// Limits and CORS.
    pub options: sql::SqlOptions,
    /// End-user tokens (keys from the environment or files).
    pub jwt: sql::jwt::JwtSettings,
    /// TLS (`--tls-cert`, `--tls-key`).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Pools, budget, provisioning on first use.
    pub router: pgfleet::RouterOptions,
}

impl std::fmt::Debug for SqlFrontDoor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlFrontDoor")
            .field(
                "listener",
                &self.listener.as_ref().and_then(|l| l.local_addr().ok()),
            )
            .field("pg", &self.pg.as_ref().map(|l| l.local_addr().ok()))
            .field("pg_options", &self.pg_options)
            .field("options", &self.options)
            .field("tls", &self.tls.is_some())
            .field("router", &self.router)
            .finish_non_exhaustive()
    }
}

/// The default [`ServeOptions::metrics_interval`].
pub const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(5);

/// Histogram buckets of every duration metric, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Installs the process-wide Prometheus recorder (once) and returns its handle.
///
/// # Errors
/// When another recorder was installed first.
pub fn metrics_handle() -> Result<PrometheusHandle, ServeError> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .map_err(|e| e.to_string())?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
            describe();
            // Counters without labels exist from the start (at 0), not from their first event.
            metrics::counter!("pgfleet_corrections_total").increment(0);
            metrics::counter!("pgfleet_catalog_errors_total").increment(0);
            Ok(handle)
        })
        .clone()
        .map_err(ServeError::Metrics)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        "pgfleet_operations_total",
        "Operations finished by this process, by kind and outcome (done, retry, failed)"
    );
    describe_histogram!(
        "pgfleet_provision_duration_seconds",
        Unit::Seconds,
        "Provisioning runs that reached ready"
    );
    describe_counter!(
        "pgfleet_migrations_total",
        "Tenant migrations of fleet rollouts, by outcome"
    );
    describe_histogram!(
        "pgfleet_migration_duration_seconds",
        Unit::Seconds,
        "One tenant's migrations in a fleet rollout"
    );
    describe_counter!(
        "pgfleet_health_checks_total",
        "Health checks, by result (healthy, degraded, unreachable)"
    );
    describe_histogram!(
        "pgfleet_health_check_duration_seconds",
        Unit::Seconds,
        "Successful health checks: login as the tenant's role and select 1"
    );
    describe_counter!(
        "pgfleet_corrections_total",
        "Schema repairs applied to tenants (each recorded as a correction event)"
    );
    describe_counter!(
        "pgfleet_catalog_errors_total",
        "Catalog queries of the background workers and of the metrics refresh that failed"
    );
    describe_histogram!(
        "pgfleet_router_acquire_duration_seconds",
        Unit::Seconds,
        "Router acquires that succeeded (routing, pool, login when the pool had no idle connection)"
    );
    describe_counter!(
        "pgfleet_sql_requests_total",
        "POST /sql requests, by outcome (ok, unauthorized, unknown_tenant, bad_request, too_many_requests, query_error, unavailable, internal)"
    );
    describe_histogram!(
        "pgfleet_sql_request_duration_seconds",
        Unit::Seconds,
        "POST /sql requests, from headers read to response built"
    );
    describe_counter!(
        "pgfleet_sql_auth_failures_total",
        "POST /sql requests refused with 401, by reason"
    );
    describe_counter!(
        "pgfleet_sql_throttled_total",
        "POST /sql requests refused with 429 (the tenant's concurrent-request limit)"
    );
    describe_counter!(
        "pgfleet_sql_healed_total",
        "POST /sql requests that succeeded after their tenant's schema was repaired"
    );
    metrics::describe_gauge!(
        "pgfleet_pg_clients",
        "Clients of the wire front door (--pg-listen, /v2) logged in now"
    );
    describe_counter!(
        "pgfleet_pg_logins_total",
        "Logins to the wire front door, by outcome (ok, unauthorized, unknown_tenant, unavailable, no_tls, bad_startup, ...)"
    );
    describe_counter!(
        "pgfleet_pg_auth_failures_total",
        "Passwords the wire front door refused, by reason"
    );
    describe_counter!(
        "pgfleet_pg_transactions_total",
        "Transactions (and autocommit statements) that ended on the wire front door"
    );
    describe_histogram!(
        "pgfleet_pg_wait_seconds",
        Unit::Seconds,
        "Time a wire client waited for a server session"
    );
    describe_counter!(
        "pgfleet_pg_errors_total",
        "Errors of the wire front door, by kind (unavailable, timeout, unknown_tenant, refused, protocol, server_closed)"
    );
    describe_counter!(
        "pgfleet_pg_pinned_total",
        "Wire clients pinned to their server session in transaction mode, by the statement that pinned them"
    );
    describe_counter!(
        "pgfleet_pg_replayed_total",
        "Wire requests sent again: after a repair (repaired) or on another session (session_ended)"
    );
    describe_counter!(
        "pgfleet_pg_cancel_requests_total",
        "Cancel requests to the wire front door, by whether their key was known"
    );
    describe_counter!(
        "pgfleet_pg_cache_total",
        "Wire reads that opted in to the result cache, by status (hit, miss)"
    );
    describe_counter!(
        "pgfleet_pg_websocket_sessions_total",
        "Wire sessions over WebSocket (GET /v2)"
    );
    metrics::describe_gauge!(
        "pgfleet_router_connections",
        "Open connections of the SQL front doors' router to each server, all kinds (/sql, the wire front door), sampled every 2 s"
    );
}

/// Binds the listen address (port 0 picks a free port: read it from the listener).
///
/// # Errors
/// [`ServeError::Bind`].
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::Bind {
            addr,
            cause: e.to_string(),
        })
}

struct AppState {
    control: Control,
    metrics: PrometheusHandle,
    gauges: Arc<CatalogGauges>,
}

/// Reads this process's metrics into the dashboard's history every [`history::SAMPLE_EVERY`] until
/// `stop` turns true.
async fn sample_history(
    history: Arc<history::History>,
    metrics: PrometheusHandle,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        history.sample(&metrics.render());
        tokio::select! {
            () = tokio::time::sleep(history::SAMPLE_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Serves on `listener` and runs the workers until `shutdown` completes; then stops taking work,
/// lets work in flight finish and hands unfinished operations back.
///
/// # Errors
/// HTTP errors, the metrics recorder, handing leases back.
pub async fn serve(
    control: Control,
    listener: tokio::net::TcpListener,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let metrics = metrics_handle()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The first read before the first scrape can come, so /metrics never starts out "down".
    let gauges = Arc::new(CatalogGauges::new(opts.metrics_interval));
    gauges.refresh(&control).await;
    let refresher = {
        let (g, c, stop) = (gauges.clone(), control.clone(), stop_rx.clone());
        tokio::spawn(async move { g.run(c, stop).await })
    };
    let state = Arc::new(api::ApiState {
        rollout_defaults: opts.rollouts,
        session_idle: opts.session_idle,
        stop: stop_rx.clone(),
        ..api::ApiState::new(control.clone())
    });
    let sampler = tokio::spawn(sample_history(
        state.history.clone(),
        metrics.clone(),
        stop_rx.clone(),
    ));
    let sql = match opts.sql {
        Some(door) => {
            let budget = door.router.budget_per_server;
            let (task, service) = start_sql_service(&control, door, stop_rx.clone()).await?;
            let _ = state.sql.set((service, budget));
            Some(task)
        }
        None => None,
    };
    let workers = opts.workers.map(|w| {
        let c = control.clone();
        tokio::spawn(async move { c.run_workers(w, stop_rx).await })
    });
    let app = app_with(state.clone(), metrics, gauges);
    let c = control.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: no new work; finishing what is in flight");
            c.stop_taking_work();
            let _ = stop_tx.send(true);
        })
        .await
        .map_err(ServeError::Http)?;
    refresher.abort();
    sampler.abort();
    // Rollouts started over HTTP finish their work in flight, as the workers do.
    state.wait_for_rollouts().await;
    if let Some(s) = sql {
        let _ = s.await;
    }
    if let Some(w) = workers {
        match w.await {
            Ok(r) => r?,
            Err(e) => tracing::error!("the workers panicked: {e}"),
        }
    }
    Ok(())
}

/// Starts the SQL-over-HTTP front door on its listener: reads the JWT keys (fetching
/// `PGFLEET_JWKS_URL`'s), starts a router over `control`, and serves until `stop` turns true (then
/// lets requests in flight finish). [`serve`] calls it; so can a program that wants the front door
/// alone.
///
/// # Errors
/// [`ServeError::Jwt`]: unusable keys.
pub async fn start_sql(
    control: &Control,
    door: SqlFrontDoor,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    Ok(start_sql_service(control, door, stop).await?.0)
}

/// Ready tenants whose placements the front door's router reads when it starts, newest first, so
/// that their first request reads nothing from the catalog (about 1 KiB each).
pub const PRELOAD_PLACEMENTS: usize = 10_000;

/// Reads up to [`PRELOAD_PLACEMENTS`] placements into `router` in the background.
fn spawn_preload(router: pgfleet::router::Router<Control>) {
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        match router.preload(PRELOAD_PLACEMENTS).await {
            Ok(n) => tracing::info!(
                "read {n} tenants' placements ahead of their first request in {} ms",
                started.elapsed().as_millis()
            ),
            Err(e) => tracing::warn!(
                "could not read tenants' placements ahead (each is read at its first request): {}",
                pgfleet::control::error::chain(&e)
            ),
        }
    });
}

/// As [`start_sql`], and returns the front door's service too (its router's connections).
///
/// # Errors
/// [`ServeError::Jwt`]: unusable keys.
pub async fn start_sql_service(
    control: &Control,
    door: SqlFrontDoor,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(tokio::task::JoinHandle<()>, Arc<sql::SqlService>), ServeError> {
    let jwt = sql::jwt::JwtVerifier::new(&door.jwt)?;
    if let Some(j) = &jwt {
        j.fetch_remote_keys().await?;
    }
    let router = pgfleet::router::Router::new(control.clone(), door.router);
    spawn_preload(router.clone());
    if router.cache().enabled() {
        let bus = pgfleet::control::cache_bus::spawn(
            control.config().catalog_url.clone(),
            router.cache().clone(),
        );
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            drop(bus);
        });
    }
    {
        // Server connections per server, for /metrics.
        let (router, mut stop) = (router.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
            loop {
                let open = router.open_connections();
                for server in seen.iter().filter(|s| !open.contains_key(*s)) {
                    metrics::gauge!("pgfleet_router_connections", "server" => server.clone())
                        .set(0.0);
                }
                for (server, n) in &open {
                    metrics::gauge!("pgfleet_router_connections", "server" => server.clone())
                        .set(*n as f64);
                }
                seen = open.into_keys().collect();
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        });
    }
    let auth = Arc::new(sql::auth::Auth::new(control.clone(), jwt));
    // The wire protocol: on its own listener, and over WebSocket on the HTTP one (`/v2`).
    let pg_service = Arc::new(pg::PgService::new(
        router.clone(),
        auth.clone(),
        door.pg_options,
    ));
    let pg_task = door
        .pg
        .map(|l| tokio::spawn(pg_service.clone().serve(l, stop.clone())));
    let listen = sql::listener::ListenOptions {
        read_timeout: door.options.read_timeout,
        write_timeout: door.options.write_timeout,
        tls: door.tls,
        max_connections: sql::listener::MAX_CONNECTIONS,
    };
    let service = Arc::new(sql::SqlService::new(router, auth, door.options));
    let http = door.listener.map(|listener| {
        tokio::spawn(sql::listener::serve(
            listener,
            sql::app_with_websocket(service.clone(), pg_service),
            listen,
            stop,
        ))
    });
    let task = tokio::spawn(async move {
        if let Some(t) = http {
            let _ = t.await;
        }
        if let Some(t) = pg_task {
            let _ = t.await;
        }
    });
    Ok((task, service))
}

/// The HTTP routes of `pgfleet serve`'s operators' listener (`/healthz`, `/readyz`, `/metrics`, the
/// management API under `/v1`, the dashboard at `/`) over `control`, with the metrics of `metrics`
/// and the tenant gauges of `gauges` (refreshed by whoever owns them: [`serve`] runs their
/// refresher).
pub fn app(control: Control, metrics: PrometheusHandle, gauges: Arc<CatalogGauges>) -> Router {
    app_with(Arc::new(api::ApiState::new(control)), metrics, gauges)
}

/// As [`app`], over the API's and the dashboard's `state`.
pub fn app_with(
    state: Arc<api::ApiState>,
    metrics: PrometheusHandle,
    gauges: Arc<CatalogGauges>,
) -> Router {
    let ops = Arc::new(AppState {
        control: state.control.clone(),
        metrics,
        gauges,
    });
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_page))
        .with_state(ops)
        .nest("/v1", api::routes(state.clone()))
        .merge(dashboard::routes(state))
}

async fn readyz(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    if s.control.is_stopping() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down\n".to_string(),
        );
    }
    let c = s.control.clone();
    match tokio::time::timeout(Duration::from_secs(2), async move {
        c.ensure_catalog().await.map_err(|e| e.to_string())?;
        c.catalog()
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n".to_string()),
        Ok(Err(e)) => {
            metrics::counter!("pgfleet_catalog_errors_total").increment(1);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("catalog unreachable: {e}\n"),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "catalog did not answer within 2 s\n".to_string(),
        ),
    }
}

async fn metrics_page(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let mut text = s.metrics.render();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&s.gauges.render(std::time::Instant::now()));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

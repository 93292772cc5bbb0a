//! `POST /sql`: SQL over HTTP in the protocol of the Neon serverless driver
//! (`@neondatabase/serverless`: `neon()`, `sql.transaction()`, and `drizzle-orm/neon-http` on
//! top), on its own listener (`pgfleet serve --sql-listen`). See `docs/http-sql.md`.
//!
//! A request is authenticated ([`auth`]: an end-user JWT or an app token), read within the body
//! limit and time, parsed ([`request`]), admitted under the tenant's concurrent-request limit,
//! and run through the router on a [`WireBackend`] connection (pooled under the per-server
//! budget; healed and run once more when a table, column or schema was missing), and answered
//! ([`response`]) with PostgreSQL's own text output. End users (JWT callers) always run on a
//! connection logged in as their tenant's own role; the application's own token (a trusted
//! caller, which may reach any tenant by naming it) of a schema-mode tenant runs on a shared
//! connection of the pool role, switched to the tenant for the request
//! ([`Router::with_wire`](pgfleet::router::Router::with_wire)).

pub mod auth;
pub mod jwks_url;
pub mod jwt;
pub mod listener;
pub mod request;
pub mod response;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::BodyExt;
use pgfleet::control::Control;
use pgfleet::router::cache::CacheStatus;
use pgfleet::router::wire::{Limits, WireBackend, WireError};
use pgfleet::router::{Router, RouterError};

use self::auth::{Auth, Caller, Via};
use self::request::{SqlRequest, Work};
use self::response::Failure;

/// The limits and behaviour of `/sql`.
#[derive(Debug, Clone)]
pub struct SqlOptions {
    /// Largest request body, bytes (`--sql-max-body`, default 10 MiB).
    pub max_body: usize,
    /// Largest response, bytes of rows (`--sql-max-response`, default 10 MiB).
    pub max_response: usize,
    /// Longest statement (`--sql-statement-timeout`, default 30 s).
    pub statement_timeout: Duration,
    /// Requests one tenant may have in flight (`--sql-max-concurrent-per-tenant`, default 16);
    /// beyond it: 429.
    pub max_concurrent_per_tenant: usize,
    /// Time for a request's body to arrive, and for a TLS handshake (default 10 s); beyond it:
    /// 408. Headers get [`listener::IDLE_TIMEOUT`] (30 s), as idle keep-alive connections do.
    pub read_timeout: Duration,
    /// Origins allowed to call from a browser (`--cors-origin`; `*` for any). Empty: none.
    pub cors_origins: Vec<String>,
    /// How long a write may wait for a client that does not read its answer before its
    /// connection (and the answer) is dropped (default 30 s).
    pub write_timeout: Duration,
}

impl Default for SqlOptions {
    fn default() -> Self {
        Self {
            max_body: 10 << 20,
            max_response: 10 << 20,
            statement_timeout: Duration::from_secs(30),
            max_concurrent_per_tenant: 16,
            read_timeout: Duration::from_secs(10),
            cors_origins: Vec::new(),
            write_timeout: listener::WRITE_TIMEOUT,
        }
    }
}

/// The state of the `/sql` front door.
pub struct SqlService {
    router: Router<Control>,
    auth: Arc<Auth>,
    opts: SqlOptions,
    wire: WireBackend,
    in_flight: Mutex<HashMap<String, usize>>,
}

impl std::fmt::Debug for SqlService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlService")
            .field("opts", &self.opts)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl SqlService {
    /// The front door over `router` (whose directory is the control plane), checking callers
    /// with `auth`.
    pub fn new(router: Router<Control>, auth: Arc<Auth>, opts: SqlOptions) -> Self {
        let wire = WireBackend::new("pgfleet-sql", Some(opts.statement_timeout));
        Self {
            router,
            auth,
            opts,
            wire,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// The options.
    pub fn options(&self) -> &SqlOptions {
        &self.opts
    }

    /// Open connections of this front door's router, by server.
    pub fn open_connections(&self) -> HashMap<String, usize> {
        self.router.open_connections()
    }

    async fn handle(&self, headers: &HeaderMap, body: Body) -> Result<Response, Failure> {
        let caller = match self.auth.caller(headers).await {
            Ok(Ok(c)) => c,
            Ok(Err(refusal)) => {
                refusal.count();
                return Err(Failure::Unauthorized(refusal.reason));
            }
            Err(e) => {
                tracing::warn!("/sql: cannot check credentials: {}", e.0);
                return Err(Failure::Unavailable {
                    message: "cannot check credentials now; retry shortly".into(),
                    code: "08006",
                });
            }
        };
        // The tenant's slot first, so its limit also bounds bodies being read and parsed.
        let _slot = self.enter(&caller.key)?;
        let bytes = self.read_body(headers, body).await?;
        let req = request::parse(&bytes, headers).map_err(Failure::BadRequest)?;
        drop(bytes);
        self.run(&caller, &req).await
    }

    async fn read_body(&self, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Failure> {
        let max = self.opts.max_body;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(Failure::BodyTooLarge(max));
        }
        let limited = http_body_util::Limited::new(body, max);
        match tokio::time::timeout(self.opts.read_timeout, limited.collect()).await {
            Err(_) => Err(Failure::BodyTimeout),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                Err(Failure::BodyTooLarge(max))
            }
            Ok(Err(e)) => Err(Failure::BadRequest(format!("reading the body: {e}"))),
            Ok(Ok(c)) => Ok(c.to_bytes().to_vec()),
        }
    }

    /// Admits one more request of tenant `key`, or refuses it with a 429.
    fn enter(&self, key: &str) -> Result<Slot<'_>, Failure> {
        let mut m = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key.to_string()).or_insert(0);
        if *n >= self.opts.max_concurrent_per_tenant {
            metrics::counter!("pgfleet_sql_throttled_total").increment(1);
            return Err(Failure::TooManyRequests(
                self.opts.max_concurrent_per_tenant,
            ));
        }
        *n += 1;
        Ok(Slot {
            service: self,
            key: key.to_string(),
        })
    }

    async fn run(&self, caller: &Caller, req: &SqlRequest) -> Result<Response, Failure> {
        let limits = Limits {
            max_response: self.opts.max_response,
            timeout: self.opts.statement_timeout,
        };
        // End users never share a connection; the application's own token may.
        let trusted = caller.via != Via::Jwt;
        match self
            .router
            .run(&caller.key, &self.wire, trusted, &req.work, limits)
            .await
        {
            Ok(ran) => {
                if ran.healed {
                    metrics::counter!("pgfleet_sql_healed_total").increment(1);
                }
                let batch = matches!(req.work, Work::Batch { .. });
                let max = self.opts.max_response;
                let mut resp = response::ok(&ran.results, batch, req.array_mode, ran.healed, max)
                    .ok_or(Failure::Query(WireError::TooLarge { limit: max }))?;
                if ran.cache != CacheStatus::Bypass {
                    resp.headers_mut().insert(
                        "pgfleet-cache",
                        HeaderValue::from_static(ran.cache.as_str()),
                    );
                }
                Ok(resp)
            }
            Err(e) => Err(router_failure(caller, e)),
        }
    }
}

fn router_failure(caller: &Caller, e: RouterError) -> Failure {
    // What failed stays in the log: server names, roles and causes are the operator's business.
    let unavailable = |message: &str, code| {
        tracing::warn!(tenant = %caller.key.escape_debug(), "/sql: {}", pgfleet::control::error::chain(&e));
        Failure::Unavailable {
            message: message.to_string(),
            code,
        }
    };
    match &e {
        RouterError::TenantNotFound(key) => Failure::UnknownTenant(key.clone()),
        RouterError::Unavailable { .. } => unavailable(
            "the tenant's database server is unavailable; retry shortly",
            "08006",
        ),
        RouterError::Timeout { .. } => unavailable(
            "no connection to the tenant's database server was free in time; retry shortly",
            "53300",
        ),
        RouterError::Directory { source, .. } if source.is_not_found() => {
            Failure::UnknownTenant(caller.key.clone())
        }
        RouterError::Directory { source, .. } if source.is_retryable() => unavailable(
            "the tenant is not available yet (being provisioned, or the catalog is unreachable); retry shortly",
            "57P03",
        ),
        RouterError::Directory { .. } => unavailable(
            "the tenant could not be placed or provisioned; the server's log says why",
            "57P03",
        ),
        RouterError::Query { .. } | RouterError::RepairFailed { .. } => {
            if let RouterError::RepairFailed { repair, .. } = &e {
                tracing::warn!(tenant = %caller.key.escape_debug(), "repairing the tenant after a query error failed: {}", pgfleet::control::error::chain(repair));
            }
            match into_wire_error(e) {
                Ok(w) => Failure::Query(w),
                Err(text) => Failure::Internal(text),
            }
        }
        _ => Failure::Internal(pgfleet::control::error::chain(&e)),
    }
}

/// The connection's own error inside a query failure (the query's, when its repair failed).
fn into_wire_error(e: RouterError) -> Result<WireError, String> {
    let source = match e {
        RouterError::Query { source, .. } => source,
        RouterError::RepairFailed { error, .. } => error,
        other => return Err(pgfleet::control::error::chain(&other)),
    };
    source
        .downcast::<WireError>()
        .map(|b| *b)
        .map_err(|other| pgfleet::control::error::chain(other.as_ref()))
}

/// One request of a tenant in flight; leaving gives the slot back.
struct Slot<'a> {
    service: &'a SqlService,
    key: String,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut m = self
            .service
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

/// The routes of the SQL listener: `POST /sql` (and CORS preflight when origins are allowed).
pub fn app(service: Arc<SqlService>) -> axum::Router {
    axum::Router::new()
        .route("/sql", post(post_sql).options(preflight))
        .with_state(service)
}

/// As [`app`], and `GET /v2`: the PostgreSQL protocol over WebSocket, served by `pg` (see
/// [`crate::pg::websocket`]).
pub fn app_with_websocket(service: Arc<SqlService>, pg: Arc<crate::pg::PgService>) -> axum::Router {
    app(service).merge(
        axum::Router::new()
            .route("/v2", axum::routing::get(websocket))
            .with_state(pg),
    )
}

async fn websocket(
    State(pg): State<Arc<crate::pg::PgService>>,
    peer: Option<axum::Extension<listener::Peer>>,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    let (secure, loopback) = match peer {
        Some(axum::Extension(p)) => (p.tls, p.addr.ip().is_loopback()),
        None => (false, false),
    };
    crate::pg::websocket::upgrade(ws, pg, secure, loopback)
}

async fn post_sql(State(s): State<Arc<SqlService>>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let (mut resp, outcome) = match s.handle(&headers, body).await {
        Ok(r) => (r, "ok"),
        Err(f) => {
            let label = f.label();
            (f.into_response(), label)
        }
    };
    metrics::counter!("pgfleet_sql_requests_total", "outcome" => outcome).increment(1);
    metrics::histogram!("pgfleet_sql_request_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    cors(&s.opts, &headers, resp.headers_mut());
    resp
}

async fn preflight(State(s): State<Arc<SqlService>>, headers: HeaderMap) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if cors(&s.opts, &headers, resp.headers_mut()) {
        let h = resp.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(
                "authorization, content-type, neon-connection-string, neon-raw-text-output, neon-array-mode, neon-batch-isolation-level, neon-batch-read-only, neon-batch-deferrable",
            ),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
    }
    resp
}

/// Adds the CORS headers when the request's origin is allowed; whether it was.
fn cors(opts: &SqlOptions, req: &HeaderMap, resp: &mut HeaderMap) -> bool {
    let Some(origin) = req.get(header::ORIGIN) else {
        return false;
    };
    let any = opts.cors_origins.iter().any(|o| o == "*");
    let listed = origin
        .to_str()
        .is_ok_and(|o| opts.cors_origins.iter().any(|a| a == o));
    if !any && !listed {
        return false;
    }
    resp.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    resp.insert(header::VARY, HeaderValue::from_static("Origin"));
    resp.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("pgfleet-healed, pgfleet-cache, retry-after"),
    );
    true
}

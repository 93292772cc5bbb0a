//! The management API under `/v1`, on the operators' listener (`serve --listen`): everything the
//! CLI does to the fleet, over HTTP, for automation. The routes and the OpenAPI 3.1 document at
//! `/v1/openapi.json` are built from one table ([`openapi::endpoints`]), so neither can list an
//! operation the other lacks.
//!
//! - Auth: `Authorization: Bearer pgf_…` with a token of scope `read` (may look) or `admin` (may
//!   change); `sql` tokens open only the SQL front doors. Every change is recorded as an event whose
//!   actor is `token:NAME`.
//! - Errors: `application/problem+json` ([`problem`]).
//! - Long work (a rollout) answers `202` with a resource to poll and a server-sent-event stream.
//! - Not over HTTP, on purpose: `plan`/`apply` against a URL the caller names (the server would
//!   connect wherever a caller says), `tenant credentials` and `keys` (secrets stay on the
//!   operator's machine).

pub mod openapi;
pub mod problem;
mod rollouts;
mod tenants;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use pgfleet::control::Control;
use pgfleet::control::tokens::Scope;
use serde::de::DeserializeOwned;

pub use problem::Problem;
pub use rollouts::{
    StartBody, detail as rollout_detail, start as start_rollout, stream as rollout_stream,
};
pub use tenants::{EventQuery, TenantQuery, id_cursor, path_text, tenant_cursor};

/// The largest request body the API takes.
pub const MAX_BODY: usize = 64 * 1024;

/// What the API and the dashboard share.
pub struct ApiState {
    /// The fleet.
    pub control: Control,
    /// How `migrate --all` runs started here are bounded.
    pub rollout_defaults: pgfleet::control::fleet::FleetOptions,
    /// The last hour of a few metrics, for the dashboard's charts.
    pub history: Arc<crate::history::History>,
    /// The SQL front door of this process, once it runs, and its connection budget per server
    /// (the dashboard shows its connections against the budget).
    pub sql: std::sync::OnceLock<(Arc<crate::sql::SqlService>, usize)>,
    /// Dashboard sessions end after this long unused.
    pub session_idle: Duration,
    /// Turns true when `serve` stops: event streams end.
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// Rollouts started here that still run: `serve` waits for them when it stops.
    pub running: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl ApiState {
    /// The state over `control` with the defaults.
    pub fn new(control: Control) -> Self {
        Self {
            control,
            rollout_defaults: pgfleet::control::fleet::FleetOptions::default(),
            history: Arc::default(),
            sql: std::sync::OnceLock::new(),
            session_idle: DEFAULT_SESSION_IDLE,
            stop: tokio::sync::watch::channel(false).1,
            running: std::sync::Mutex::default(),
        }
    }

    /// Waits for the rollouts started here to end (their work in flight finishes; a rollout
    /// started over HTTP is not cut off by a shutdown).
    pub async fn wait_for_rollouts(&self) {
        let running: Vec<_> =
            std::mem::take(&mut *self.running.lock().unwrap_or_else(|e| e.into_inner()));
        for r in running {
            let _ = r.await;
        }
    }
}

/// The default idle expiry of dashboard sessions.
pub const DEFAULT_SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

/// A caller whose token was accepted: the token's name and scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name.
    pub token: String,
    /// Its scope.
    pub scope: Scope,
}

impl Caller {
    /// The actor recorded in events of changes it makes: `token:NAME`.
    pub fn actor(&self) -> String {
        format!("token:{}", self.token)
    }

    /// Refuses a caller that may not change anything.
    ///
    /// # Errors
    /// `forbidden` for a `read` token.
    pub fn must_admin(&self) -> Result<(), Problem> {
        if self.scope == Scope::Admin {
            Ok(())
        } else {
            Err(Problem::new(
                "forbidden",
                format!(
                    "token {:?} has scope {}: this action changes the fleet and needs a token of scope admin (pgfleet token create NAME --scope admin)",
                    self.token, self.scope
                ),
            ))
        }
    }
}

/// A `read` or `admin` caller (the bearer token of the request).
#[derive(Debug)]
pub struct Reader(pub Caller);

/// An `admin` caller.
#[derive(Debug)]
pub struct Admin(pub Caller);

async fn bearer(parts: &Parts, state: &ApiState) -> Result<Caller, Problem> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Err(Problem::new(
            "unauthorized",
            "no Authorization header: send `Authorization: Bearer pgf_…` with a token of scope read or admin (pgfleet token create NAME --scope read)",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            Problem::new(
                "unauthorized",
                "the Authorization header is not `Bearer <token>`",
            )
        })?;
    match state.control.verify_token(token).await {
        Ok(Some((name, Scope::Sql))) => Err(Problem::new(
            "forbidden",
            format!(
                "token {name:?} has scope sql: it opens the SQL front doors only; the management API needs scope read or admin"
            ),
        )),
        Ok(Some((token, scope))) => Ok(Caller { token, scope }),
        Ok(None) => Err(Problem::new(
            "unauthorized",
            "unknown or revoked token (list tokens with `pgfleet token list`)",
        )),
        Err(e) => Err(e.into()),
    }
}

impl FromRequestParts<Arc<ApiState>> for Reader {
    type Rejection = Problem;
    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, Problem> {
        bearer(parts, state).await.map(Reader)
    }
}

impl FromRequestParts<Arc<ApiState>> for Admin {
    type Rejection = Problem;
    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, Problem> {
        let c = bearer(parts, state).await?;
        c.must_admin()?;
        Ok(Admin(c))
    }
}

/// Parses the query string into `T`.
///
/// # Errors
/// `invalid-input` naming what is wrong.
pub fn query<T: DeserializeOwned>(uri: &Uri) -> Result<T, Problem> {
    Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| Problem::invalid(format!("query string: {}", e.body_text())))
}

/// Parses a JSON request body into `T` (an empty body is `{}`).
///
/// # Errors
/// `unsupported-media-type`, `payload-too-large`, `invalid-input`.
pub fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<T, Problem> {
    if body.len() > MAX_BODY {
        return Err(Problem::new(
            "payload-too-large",
            format!("the body has {} bytes; the limit is {MAX_BODY}", body.len()),
        ));
    }
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| {
                let t = t.trim();
                t.eq_ignore_ascii_case("application/json") || t.ends_with("+json")
            });
        if !json {
            return Err(Problem::new(
                "unsupported-media-type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        body
    };
    serde_json::from_slice(body).map_err(|e| Problem::invalid(format!("body: {e}")))
}

/// Checks a text field: 1 to `max` bytes, no control characters.
///
/// # Errors
/// `invalid-input` naming the field.
pub fn text(field: &str, value: &str, max: usize) -> Result<(), Problem> {
    if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(Problem::invalid(format!(
            "{field} must be 1 to {max} bytes without control characters"
        )));
    }
    Ok(())
}

/// Checks an optional filter (absent, or valid [`text`]).
///
/// # Errors
/// As [`text`].
pub fn filter(field: &str, value: &Option<String>, max: usize) -> Result<(), Problem> {
    match value {
        Some(v) => text(field, v, max),
        None => Ok(()),
    }
}

/// A JSON answer with `status`.
pub fn json(status: StatusCode, value: impl serde::Serialize) -> Response {
    let mut r = (
        status,
        serde_json::to_string(&value).unwrap_or_else(|_| "null".into()),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// How long a rollout started over HTTP may wait for its first progress report before the
/// request answers anyway.
const ROLLOUT_START_WAIT: Duration = Duration::from_secs(30);

/// The `/v1` routes over `state` (paths relative to `/v1`: nest them there).
pub fn routes(state: Arc<ApiState>) -> Router {
    let mut router: Router<Arc<ApiState>> = Router::new();
    for e in openapi::endpoints() {
        router = router.route(e.path, (e.route)());
    }
    router
        .route(
            "/openapi.json",
            axum::routing::get(|| async { json(StatusCode::OK, openapi::document()) }),
        )
        .fallback(|| async { Problem::not_found("no such API route (see /v1/openapi.json)") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                "method-not-allowed",
                "this route does not take that method (see /v1/openapi.json)",
            )
        })
        .with_state(state)
}

//! `/v1/tenants`, `/v1/servers`, `/v1/events`, `/v1/validate`: the CLI's `tenant`, `server`,
//! `check`, `check-user` and `validate` commands over HTTP.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use pgfleet::control::ControlError;
use pgfleet::control::browse::{EventFilter, MAX_PAGE, TenantFilter};
use pgfleet::control::provision::CreateOptions;
use pgfleet::control::tenant::{Mode, Tenant};
use serde::Deserialize;

use super::{Admin, ApiState, Caller, Problem, Reader, json, json_body, query, text};

type S = State<Arc<ApiState>>;
type R = Result<Response, Problem>;

/// The most bytes of a tenant key (as the catalog takes them).
pub const MAX_KEY: usize = 256;
/// The default page size.
pub const DEFAULT_LIMIT: i64 = 50;
/// How long a reset may take (it provisions the tenant's schema again).
const RESET_TIMEOUT: Duration = Duration::from_secs(120);
/// How long adding a server may take to reach and check it.
const ADD_SERVER_TIMEOUT: Duration = Duration::from_secs(25);

/// The value of a path parameter.
pub fn path_text(p: Result<Path<String>, PathRejection>, field: &str) -> Result<String, Problem> {
    let Path(v) = p.map_err(|e| Problem::invalid(format!("{field}: {}", e.body_text())))?;
    text(field, &v, MAX_KEY)?;
    Ok(v)
}

fn limit(l: Option<i64>) -> Result<i64, Problem> {
    match l {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(n) => Err(Problem::invalid(format!(
            "limit must be 1 to {MAX_PAGE}, got {n}"
        ))),
    }
}

/// A tenant cursor: the hex of the page's last key.
pub fn tenant_cursor(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

fn parse_tenant_cursor(c: &str) -> Result<String, Problem> {
    let bad = || Problem::invalid("cursor: not a cursor of this API (pass next_cursor as it came)");
    if !c.len().is_multiple_of(2) || c.len() > 2 * MAX_KEY {
        return Err(bad());
    }
    let bytes = (0..c.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(c.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect::<Result<Vec<u8>, Problem>>()?;
    String::from_utf8(bytes).map_err(|_| bad())
}

fn one_of(field: &str, v: &Option<String>, allowed: &[&str]) -> Result<(), Problem> {
    match v {
        Some(x) if !allowed.contains(&x.as_str()) => Err(Problem::invalid(format!(
            "{field} must be one of {}, got {x:?}",
            allowed.join(", ")
        ))),
        _ => Ok(()),
    }
}

/// The query of `GET /v1/tenants`.
#[derive(Debug, Default, Deserialize)]
pub struct TenantQuery {
    /// State filter.
    pub state: Option<String>,
    /// Server filter.
    pub server: Option<String>,
    /// Mode filter.
    pub mode: Option<String>,
    /// Version filter.
    pub version: Option<String>,
    /// A part of the key.
    pub q: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
    /// Where the page starts.
    pub cursor: Option<String>,
}

impl TenantQuery {
    /// The filter, checked.
    ///
    /// # Errors
    /// `invalid-input`.
    pub fn filter(&self) -> Result<TenantFilter, Problem> {
        // An empty field of the dashboard's search form means "any".
        let empty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let q = Self {
            state: empty(&self.state),
            server: empty(&self.server),
            mode: empty(&self.mode),
            version: empty(&self.version),
            q: empty(&self.q),
            limit: self.limit,
            cursor: self.cursor.clone(),
        };
        q.checked()
    }

    fn checked(&self) -> Result<TenantFilter, Problem> {
        one_of(
            "state",
            &self.state,
            &["provisioning", "ready", "failed", "dropping"],
        )?;
        one_of("mode", &self.mode, &["database", "schema"])?;
        super::filter("server", &self.server, 63)?;
        super::filter("version", &self.version, 64)?;
        super::filter("q", &self.q, MAX_KEY)?;
        Ok(TenantFilter {
            state: self.state.clone(),
            server: self.server.clone(),
            mode: self.mode.clone(),
            version: self.version.clone(),
            search: self.q.clone(),
        })
    }

    /// Where the page starts.
    ///
    /// # Errors
    /// `invalid-input`.
    pub fn after(&self) -> Result<Option<String>, Problem> {
        self.cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(parse_tenant_cursor)
            .transpose()
    }
}

pub(super) async fn list(State(s): S, _: Reader, uri: Uri) -> R {
    let q: TenantQuery = query(&uri)?;
    let filter = q.filter()?;
    let (items, more) = s
        .control
        .tenant_page(&filter, q.after()?.as_deref(), limit(q.limit)?)
        .await?;
    let next = more
        .then(|| items.last().map(|t| tenant_cursor(&t.key)))
        .flatten();
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"items": items, "next_cursor": next}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    key: String,
    mode: Option<Mode>,
    server: Option<String>,
}

async fn record(
    s: &ApiState,
    c: &Caller,
    t: Option<&Tenant>,
    kind: &str,
    detail: serde_json::Value,
) {
    if let Err(e) = s.control.record_event_as(&c.actor(), t, kind, detail).await {
        tracing::warn!("recording event {kind} of {}: {e}", c.actor());
    }
}

pub(super) async fn create(State(s): S, Admin(c): Admin, headers: HeaderMap, body: Bytes) -> R {
    let b: CreateBody = json_body(&headers, &body)?;
    text("key", &b.key, MAX_KEY)?;
    super::filter("server", &b.server, 63)?;
    let opts = CreateOptions {
        mode: b.mode,
        server: b.server,
    };
    let failed_before = s
        .control
        .find(&b.key)
        .await?
        .is_some_and(|t| t.state == pgfleet::control::tenant::State::Failed);
    let (t, created) = s.control.create_or_find_tenant(&b.key, &opts).await?;
    if created || failed_before {
        // A failed tenant's provisioning is queued again: a change too.
        record(
            &s,
            &c,
            Some(&t),
            "api.tenant.create",
            serde_json::json!({"token": c.token, "mode": t.mode, "server": opts.server, "created": created, "retried": failed_before}),
        )
        .await;
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(status, t))
}

pub(super) async fn get(State(s): S, _: Reader, key: Result<Path<String>, PathRejection>) -> R {
    let key = path_text(key, "key")?;
    Ok(json(StatusCode::OK, s.control.tenant(&key).await?))
}

#[derive(Deserialize)]
struct Confirm {
    confirm: Option<String>,
}

fn confirmed(uri: &Uri, key: &str, action: &str) -> Result<(), Problem> {
    let c: Confirm = query(uri)?;
    if c.confirm.as_deref() != Some(key) {
        return Err(Problem::new(
            "confirmation-required",
            format!(
                "{action} destroys the tenant's data: repeat its key as ?confirm=<key> (URL-encoded)"
            ),
        ));
    }
    Ok(())
}

pub(super) async fn drop(
    State(s): S,
    Admin(c): Admin,
    key: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> R {
    let key = path_text(key, "key")?;
    confirmed(&uri, &key, "dropping a tenant")?;
    let t = s.control.drop_tenant(&key).await?;
    record(
        &s,
        &c,
        Some(&t),
        "api.tenant.drop",
        serde_json::json!({"token": c.token}),
    )
    .await;
    Ok(json(StatusCode::OK, t))
}

pub(super) async fn check(State(s): S, _: Reader, key: Result<Path<String>, PathRejection>) -> R {
    let key = path_text(key, "key")?;
    Ok(json(StatusCode::OK, s.control.check(&key).await?))
}

pub(super) async fn fix(
    State(s): S,
    Admin(c): Admin,
    key: Result<Path<String>, PathRejection>,
) -> R {
    let key = path_text(key, "key")?;
    let t = s.control.tenant(&key).await?;
    let repair = s
        .control
        .fix(&key, &format!("{} (management API)", c.actor()))
        .await?;
    record(
        &s,
        &c,
        Some(&t),
        "api.tenant.fix",
        serde_json::json!({"token": c.token, "applied": repair.applied.len()}),
    )
    .await;
    Ok(json(StatusCode::OK, repair))
}

pub(super) async fn rotate_password(
    State(s): S,
    Admin(c): Admin,
    key: Result<Path<String>, PathRejection>,
) -> R {
    let key = path_text(key, "key")?;
    let t = s.control.tenant(&key).await?;
    s.control.rotate_password(&key).await?;
    record(
        &s,
        &c,
        Some(&t),
        "api.tenant.rotate_password",
        serde_json::json!({"token": c.token}),
    )
    .await;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"key": key, "rotated": true}),
    ))
}

pub(super) async fn reset(
    State(s): S,
    Admin(c): Admin,
    key: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> R {
    let key = path_text(key, "key")?;
    confirmed(&uri, &key, "resetting a tenant")?;
    let t = s.control.reset_tenant(&key, RESET_TIMEOUT).await?;
    record(
        &s,
        &c,
        Some(&t),
        "api.tenant.reset",
        serde_json::json!({"token": c.token}),
    )
    .await;
    Ok(json(StatusCode::OK, t))
}

pub(super) async fn check_user(
    State(s): S,
    _: Reader,
    key: Result<Path<String>, PathRejection>,
) -> R {
    let key = path_text(key, "key")?;
    let (tenant, findings, events) = s.control.check_user(&key).await?;
    let healthy = findings.iter().all(|f| f.ok);
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"tenant": tenant, "healthy": healthy, "findings": findings, "events": events}),
    ))
}

pub(super) async fn servers(State(s): S, _: Reader) -> R {
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"items": s.control.servers().await?}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerBody {
    name: String,
    url: String,
    capacity: Option<i32>,
    weight: Option<i32>,
}

async fn server(s: &ApiState, name: &str) -> Result<pgfleet::control::server::ServerInfo, Problem> {
    s.control
        .servers()
        .await?
        .into_iter()
        .find(|x| x.name == name)
        .ok_or_else(|| Problem::from(ControlError::UnknownServer(name.into())))
}

pub(super) async fn add_server(State(s): S, Admin(c): Admin, headers: HeaderMap, body: Bytes) -> R {
    let b: ServerBody = json_body(&headers, &body)?;
    text("name", &b.name, 63)?;
    text("url", &b.url, 2048)?;
    let first = b.name.as_bytes()[0];
    if !(first.is_ascii_lowercase() || first.is_ascii_digit())
        || !b
            .name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
    {
        return Err(Problem::invalid(
            "name: lowercase letters, digits, `_` and `-`, starting with a letter or digit, at most 63",
        ));
    }
    if !(b.url.starts_with("postgres://") || b.url.starts_with("postgresql://")) {
        return Err(Problem::invalid(
            "url must be a postgres:// or postgresql:// URL of an admin role",
        ));
    }
    let capacity = b.capacity.unwrap_or(1000);
    let weight = b.weight.unwrap_or(1);
    if capacity < 0 || weight < 1 {
        return Err(Problem::invalid(
            "capacity must be at least 0 and weight at least 1",
        ));
    }
    if s.control.servers().await?.iter().any(|x| x.name == b.name) {
        return Err(ControlError::ServerExists(b.name.clone()).into());
    }
    let added = tokio::time::timeout(
        ADD_SERVER_TIMEOUT,
        s.control.add_server(&b.name, &b.url, capacity, weight),
    )
    .await
    .map_err(|_| {
        Problem::new(
            "unprocessable",
            format!(
                "the server did not answer within {} s",
                ADD_SERVER_TIMEOUT.as_secs()
            ),
        )
    })?;
    match added {
        Ok(_) => {}
        // The server the caller named cannot be reached or its URL is not one: the caller's
        // problem, not ours (a catalog that fails is still a 503).
        Err(
            e @ ControlError::Pg(
                pgfleet::pg::PgError::Connect { .. } | pgfleet::pg::PgError::BadUrl { .. },
            ),
        ) => {
            return Err(Problem::new(
                "unprocessable",
                pgfleet::control::error::chain(&e),
            ));
        }
        Err(e) => return Err(e.into()),
    }
    record(
        &s,
        &c,
        None,
        "api.server.add",
        serde_json::json!({"token": c.token, "server": b.name}),
    )
    .await;
    Ok(json(StatusCode::CREATED, server(&s, &b.name).await?))
}

pub(super) async fn drain(
    State(s): S,
    Admin(c): Admin,
    name: Result<Path<String>, PathRejection>,
) -> R {
    set_server(s, c, name, true).await
}

pub(super) async fn activate(
    State(s): S,
    Admin(c): Admin,
    name: Result<Path<String>, PathRejection>,
) -> R {
    set_server(s, c, name, false).await
}

async fn set_server(
    s: Arc<ApiState>,
    c: Caller,
    name: Result<Path<String>, PathRejection>,
    drain: bool,
) -> R {
    let name = path_text(name, "name")?;
    server(&s, &name).await?;
    if drain {
        s.control.drain_server(&name).await?;
    } else {
        s.control.activate_server(&name).await?;
    }
    let kind = if drain {
        "api.server.drain"
    } else {
        "api.server.activate"
    };
    record(
        &s,
        &c,
        None,
        kind,
        serde_json::json!({"token": c.token, "server": name}),
    )
    .await;
    Ok(json(StatusCode::OK, server(&s, &name).await?))
}

pub(super) async fn spares(
    State(s): S,
    Admin(c): Admin,
    name: Result<Path<String>, PathRejection>,
) -> R {
    let name = path_text(name, "name")?;
    server(&s, &name).await?;
    let built = s.control.refill_spares(&name).await?.to_json(&name);
    let mut detail = built.clone();
    detail["token"] = serde_json::json!(c.token);
    record(&s, &c, None, "api.server.spares", detail).await;
    Ok(json(StatusCode::OK, built))
}

/// The query of `GET /v1/events`.
#[derive(Debug, Default, Deserialize)]
pub struct EventQuery {
    /// A tenant key.
    pub tenant: Option<String>,
    /// A kind or kind family.
    pub kind: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
    /// Where the page starts.
    pub cursor: Option<String>,
}

/// Parses an id cursor.
///
/// # Errors
/// `invalid-input`.
pub fn id_cursor(c: &Option<String>) -> Result<Option<i64>, Problem> {
    match c.as_deref() {
        None | Some("") => Ok(None),
        Some(c) => c.parse::<i64>().map(Some).map_err(|_| {
            Problem::invalid("cursor: not a cursor of this API (pass next_cursor as it came)")
        }),
    }
}

impl EventQuery {
    /// The filter, checked.
    ///
    /// # Errors
    /// `invalid-input`.
    pub fn filter(&self) -> Result<EventFilter, Problem> {
        // An empty field (the dashboard's filter form) means "any".
        let tenant = self.tenant.clone().filter(|s| !s.is_empty());
        let kind = self.kind.clone().filter(|s| !s.is_empty());
        super::filter("tenant", &tenant, MAX_KEY)?;
        super::filter("kind", &kind, 64)?;
        Ok(EventFilter {
            tenant,
            kind,
            rollout: None,
        })
    }
}

pub(super) async fn events(State(s): S, _: Reader, uri: Uri) -> R {
    let q: EventQuery = query(&uri)?;
    let (items, more) = s
        .control
        .event_page(&q.filter()?, id_cursor(&q.cursor)?, limit(q.limit)?)
        .await?;
    let next = more
        .then(|| items.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"items": items, "next_cursor": next}),
    ))
}

pub(super) async fn validate(State(s): S, _: Reader) -> R {
    let findings = s.control.validate().await?;
    let ok = findings.iter().all(|f| f.ok);
    Ok(json(
        StatusCode::OK,
        serde_json::json!({"ok": ok, "findings": findings}),
    ))
}

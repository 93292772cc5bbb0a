//! `/sql` answers in the shape the Neon serverless driver reads: results as
//! `{"fields", "rows", "command", "rowCount", "rowAsArray"}` (a batch: `{"results": […]}`) with
//! every value PostgreSQL's own text output; failures as [`Failure`], mapped to a status and a
//! JSON body in one place. The driver reads a JSON body only from a 400, so everything it should
//! tell apart by `.code` is a 400.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pgfleet::router::wire::{ServerError, TextResult, WireError};
use serde_json::{Map, Value, json};

/// Encodes one result into `out`.
pub fn write_result(out: &mut Vec<u8>, r: &TextResult, array_mode: bool) {
    out.extend_from_slice(b"{\"fields\":[");
    for (i, f) in r.fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        string(out, &f.name);
        out.extend_from_slice(
            format!(
                ",\"dataTypeID\":{},\"tableID\":{},\"columnID\":{},\"dataTypeSize\":{},\"dataTypeModifier\":{},\"format\":\"text\"}}",
                f.type_oid, f.table_oid, f.column_id, f.type_size, f.type_modifier
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b"],\"rows\":[");
    for (i, row) in r.rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(if array_mode { b'[' } else { b'{' });
        for (j, v) in row.values().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            if !array_mode {
                string(out, r.fields.get(j).map_or("?column?", |f| f.name.as_str()));
                out.push(b':');
            }
            match v {
                Some(text) => string(out, text),
                None => out.extend_from_slice(b"null"),
            }
        }
        out.push(if array_mode { b']' } else { b'}' });
    }
    out.extend_from_slice(b"],\"command\":");
    string(out, r.command());
    out.extend_from_slice(b",\"rowCount\":");
    match r.row_count() {
        Some(n) => out.extend_from_slice(n.to_string().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(if array_mode {
        b",\"rowAsArray\":true}"
    } else {
        b",\"rowAsArray\":false}"
    });
}

fn string(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// A 200 with `results` (one for a single statement, `{"results": […]}` for a batch); `None`
/// when the JSON would be larger than `max` bytes (escaping and column names can make it larger
/// than the rows the connection counted).
pub fn ok(
    results: &[std::sync::Arc<TextResult>],
    batch: bool,
    array_mode: bool,
    healed: bool,
    max: usize,
) -> Option<Response> {
    let mut out = Vec::with_capacity(256);
    if batch {
        out.extend_from_slice(b"{\"results\":[");
        for (i, r) in results.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_result(&mut out, r, array_mode);
        }
        out.extend_from_slice(b"]}");
    } else if let Some(r) = results.first() {
        write_result(&mut out, r, array_mode);
    }
    if out.len() > max {
        return None;
    }
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response();
    if healed {
        resp.headers_mut()
            .insert("pgfleet-healed", HeaderValue::from_static("1"));
    }
    Some(resp)
}

/// Why a request failed.
#[derive(Debug)]
pub enum Failure {
    /// Bad or missing credentials: 401, `28000`.
    Unauthorized(&'static str),
    /// No such tenant (and no provisioning on first use): 404, `3D000`.
    UnknownTenant(String),
    /// The request is malformed: 400, `08P01`.
    BadRequest(String),
    /// The body is over the limit: 413.
    BodyTooLarge(usize),
    /// The body did not arrive in time: 408.
    BodyTimeout,
    /// The tenant has the most requests in flight it may: 429 with `Retry-After`.
    TooManyRequests(usize),
    /// The statement failed (or was cancelled for the limits): 400 with PostgreSQL's fields; a
    /// broken connection: 502.
    Query(WireError),
    /// The tenant's server, the catalog or a connection is not available now: 503 with
    /// `Retry-After`.
    Unavailable {
        /// What failed.
        message: String,
        /// The SQLSTATE to report.
        code: &'static str,
    },
    /// Anything else: 500 (the detail is logged, not shown).
    Internal(String),
}

fn body(status: StatusCode, v: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// Longest text of one error field passed on (a `RAISE` can make messages of any size).
const MAX_FIELD: usize = 16 * 1024;

fn clip(s: &str) -> &str {
    if s.len() <= MAX_FIELD {
        return s;
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn server_error_json(e: &ServerError) -> Value {
    let mut m = Map::new();
    m.insert("message".into(), json!(clip(&e.message)));
    m.insert("code".into(), json!(e.code));
    m.insert("severity".into(), json!(e.severity));
    let fields = [
        ("detail", &e.detail),
        ("hint", &e.hint),
        ("position", &e.position),
        ("internalPosition", &e.internal_position),
        ("internalQuery", &e.internal_query),
        ("where", &e.where_),
        ("schema", &e.schema),
        ("table", &e.table),
        ("column", &e.column),
        ("dataType", &e.data_type),
        ("constraint", &e.constraint),
        ("file", &e.file),
        ("line", &e.line),
        ("routine", &e.routine),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            m.insert(k.into(), json!(clip(v)));
        }
    }
    Value::Object(m)
}

impl Failure {
    /// The metric label of the outcome.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::UnknownTenant(_) => "unknown_tenant",
            Self::BadRequest(_) | Self::BodyTooLarge(_) | Self::BodyTimeout => "bad_request",
            Self::TooManyRequests(_) => "too_many_requests",
            Self::Query(_) => "query_error",
            Self::Unavailable { .. } => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthorized(reason) => body(
                StatusCode::UNAUTHORIZED,
                json!({"message": format!("authentication failed: {reason}"), "code": "28000"}),
            ),
            Self::UnknownTenant(key) => body(
                StatusCode::NOT_FOUND,
                json!({"message": format!("no tenant with key {key:?} (create it with `pgfleet tenant create`, or serve with --provision-on-first-use)"), "code": "3D000"}),
            ),
            Self::BadRequest(m) => body(
                StatusCode::BAD_REQUEST,
                json!({"message": format!("invalid request: {m}"), "code": "08P01", "severity": "ERROR"}),
            ),
            Self::BodyTooLarge(limit) => body(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"message": format!("the request body is larger than the limit of {limit} bytes (--sql-max-body)"), "code": "54000"}),
            ),
            Self::BodyTimeout => {
                let mut r = body(
                    StatusCode::REQUEST_TIMEOUT,
                    json!({"message": "the request body did not arrive in time", "code": "08P01"}),
                );
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                r
            }
            Self::TooManyRequests(limit) => {
                let mut r = body(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({"message": format!("the tenant has {limit} requests in flight, the most it may (--sql-max-concurrent-per-tenant); retry shortly"), "code": "53300"}),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            Self::Query(e) => query_failure(&e),
            Self::Unavailable { message, code } => {
                let mut r = body(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"message": message, "code": code}),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
            Self::Internal(detail) => {
                tracing::error!("/sql: {detail}");
                body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"message": "internal error (logged by the server)", "code": "XX000"}),
                )
            }
        }
    }
}

fn query_failure(e: &WireError) -> Response {
    match e {
        WireError::Server(s) => body(StatusCode::BAD_REQUEST, server_error_json(s)),
        WireError::TooLarge { .. }
        | WireError::Timeout(_)
        | WireError::InvalidRequest(_)
        | WireError::Unsupported(_) => body(
            StatusCode::BAD_REQUEST,
            json!({"message": e.to_string(), "code": e.sqlstate(), "severity": "ERROR"}),
        ),
        WireError::Closed(s) => body(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"message": "the tenant's database server ended the session before the request reached it (it is restarting or shutting down): nothing of the request ran; retry shortly", "code": s.code}),
        ),
        WireError::Io(_) => {
            // The request was sent, and may have committed (a statement commits on its own, a
            // batch with its last message): never "retry" here.
            tracing::warn!(
                "/sql: a tenant connection broke before its answer: {}",
                pgfleet::control::error::chain(e)
            );
            body(
                StatusCode::BAD_REQUEST,
                json!({"message": "the connection to the tenant's server broke before its answer: the request may or may not have been applied; check before sending it again", "code": "08007", "severity": "ERROR"}),
            )
        }
        _ => {
            tracing::warn!(
                "/sql: a tenant connection failed: {}",
                pgfleet::control::error::chain(e)
            );
            body(
                StatusCode::BAD_GATEWAY,
                json!({"message": "the connection to the tenant's server failed; retry", "code": "08006"}),
            )
        }
    }
}

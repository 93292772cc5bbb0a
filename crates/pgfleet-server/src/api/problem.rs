//! Errors of the management API as `application/problem+json` (RFC 9457): a stable `type` per kind
//! of error (`urn:pgfleet:problem:<kind>`), a short `title` per kind, the HTTP `status`, and a
//! `detail` that says what was wrong and what to do.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pgfleet::control::ControlError;

/// Every kind of problem the API answers with: (kind, status, title). The OpenAPI document lists
/// them, and a test checks each one is used as documented.
pub const KINDS: &[(&str, u16, &str)] = &[
    ("invalid-input", 400, "The request is invalid"),
    (
        "confirmation-required",
        400,
        "A destructive action needs its confirmation",
    ),
    ("unauthorized", 401, "Missing or unknown token"),
    ("forbidden", 403, "The token's scope does not allow this"),
    ("not-found", 404, "No such resource"),
    ("method-not-allowed", 405, "Method not allowed"),
    (
        "conflict",
        409,
        "The request contradicts what exists or runs",
    ),
    ("payload-too-large", 413, "The request body is too large"),
    (
        "unsupported-media-type",
        415,
        "The request body must be application/json",
    ),
    (
        "unprocessable",
        422,
        "The request is well-formed but cannot be carried out",
    ),
    (
        "unavailable",
        503,
        "A server or the catalog is not available now; retry",
    ),
    ("internal", 500, "Internal error (logged by the server)"),
];

/// An API error.
#[derive(Debug, Clone)]
pub struct Problem {
    /// One of [`KINDS`].
    pub kind: &'static str,
    /// What was wrong and what to do.
    pub detail: String,
}

impl Problem {
    /// A problem of `kind` (one of [`KINDS`]).
    pub fn new(kind: &'static str, detail: impl Into<String>) -> Self {
        debug_assert!(
            KINDS.iter().any(|(k, ..)| *k == kind),
            "unknown kind {kind}"
        );
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// `invalid-input`.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new("invalid-input", detail)
    }

    /// `not-found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new("not-found", detail)
    }

    /// The HTTP status of its kind.
    pub fn status(&self) -> StatusCode {
        let code = KINDS
            .iter()
            .find(|(k, ..)| *k == self.kind)
            .map_or(500, |(_, s, _)| *s);
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The `type` URI of a kind.
    pub fn type_uri(kind: &str) -> String {
        format!("urn:pgfleet:problem:{kind}")
    }

    /// The problem+json body.
    pub fn body(&self) -> serde_json::Value {
        let title = KINDS
            .iter()
            .find(|(k, ..)| *k == self.kind)
            .map_or("Error", |(_, _, t)| *t);
        serde_json::json!({
            "type": Self::type_uri(self.kind),
            "title": title,
            "status": self.status().as_u16(),
            "detail": self.detail,
        })
    }
}

impl From<ControlError> for Problem {
    fn from(e: ControlError) -> Self {
        let detail = pgfleet::control::error::chain(&e);
        let kind = if e.is_not_found() {
            "not-found"
        } else if e.is_conflict() {
            "conflict"
        } else if e.is_invalid_input() {
            "invalid-input"
        } else if e.is_retryable() {
            "unavailable"
        } else {
            match &e {
                ControlError::NoTarget
                | ControlError::NoCapacity(_)
                | ControlError::NotPlaced(_)
                | ControlError::Failed { .. }
                | ControlError::RepairFailed { .. }
                | ControlError::VerificationFailed { .. }
                | ControlError::UnusableServer { .. }
                | ControlError::NoPassword { .. } => "unprocessable",
                ControlError::Pg(_) => "unavailable",
                _ => "internal",
            }
        };
        if kind == "internal" {
            tracing::error!("management API: {detail}");
        }
        Self::new(kind, detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut r = (status, self.body().to_string()).into_response();
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match status {
            StatusCode::UNAUTHORIZED => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"pgfleet\""),
                );
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        r
    }
}

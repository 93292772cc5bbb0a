//! The admin dashboard at `/`: server-rendered HTML with a little JavaScript (live rollout
//! progress), every asset compiled into the binary (it works with no internet).
//!
//! - Sign-in with a `read` or `admin` token ([`Control::open_session`]) sets an HttpOnly,
//!   SameSite=Strict cookie holding a random session secret; the catalog keeps only its digest, so
//!   several `serve` processes share sessions. Sessions end on sign-out, after the idle expiry, or
//!   when their token is revoked.
//! - Every action is a POST form carrying the session's CSRF value (derived from the session
//!   secret); a POST without it, with another, or from another origin is refused (403). A `read`
//!   token sees no action buttons (Check only reads, so it has that one) and its actions are
//!   refused anyway.
//! - Destructive actions (drop, reset) need the tenant's key typed again.
//! - Headers: a Content-Security-Policy that allows only this origin's script and style, no
//!   framing, no referrer to other sites, no caching of pages.
//!
//! [`Control::open_session`]: pgfleet::control::Control::open_session

mod html;
mod pages;
mod tenant;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Form, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use pgfleet::control::tokens::{Scope, token_digest};

use crate::api::{ApiState, Problem};
pub use html::Viewer;

/// The session cookie.
pub const COOKIE: &str = "pgfleet_session";

/// A signed-in viewer: the session and its secret.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The token it signed in with.
    pub token: String,
    /// Its scope.
    pub scope: Scope,
    /// The CSRF value of its forms.
    pub csrf: String,
}

impl Signed {
    /// The viewer for the page frame.
    pub fn viewer(&self) -> Viewer<'_> {
        Viewer {
            token: &self.token,
            scope: self.scope,
            csrf: &self.csrf,
        }
    }
}

/// The CSRF value of a session: derived from its secret, so it needs no storage and a page of
/// one session is useless to another.
pub fn csrf_of(secret: &str) -> String {
    token_digest(&format!("pgfleet-csrf:{secret}"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// Why a page cannot be shown to this request.
#[derive(Debug)]
pub enum Refused {
    /// Not signed in: go to the sign-in page.
    SignIn,
    /// Signed in, but not allowed (403) or the catalog failed (503).
    Problem(Problem),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn => see_other("/login"),
            Self::Problem(p) => error_page(&p),
        }
    }
}

impl From<Problem> for Refused {
    fn from(p: Problem) -> Self {
        Self::Problem(p)
    }
}

impl From<pgfleet::control::ControlError> for Refused {
    fn from(e: pgfleet::control::ControlError) -> Self {
        Self::Problem(e.into())
    }
}

impl FromRequestParts<Arc<ApiState>> for Signed {
    type Rejection = Refused;
    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, Refused> {
        let Some(secret) = cookie_value(&parts.headers, COOKIE) else {
            return Err(Refused::SignIn);
        };
        match state.control.session(secret, state.session_idle).await? {
            Some(s) => Ok(Signed {
                token: s.token,
                scope: s.scope,
                csrf: csrf_of(secret),
            }),
            None => Err(Refused::SignIn),
        }
    }
}

/// A 303 to `to`.
pub fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn error_page(p: &Problem) -> Response {
    let body = format!(
        r#"<h1>{}</h1><p class="error" role="alert">{}</p><p><a href="/">Back to the overview</a></p>"#,
        html::esc(p.body()["title"].as_str().unwrap_or("Error")),
        html::esc(&p.detail)
    );
    (
        p.status(),
        html_response(html::page("Error", "", None, &body)),
    )
        .into_response()
}

/// An HTML answer with the dashboard's security headers.
pub fn html_response(body: String) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(h);
    r
}

fn secure_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: with it, browsers send `Origin: null` on the dashboard's own form posts.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// Refuses a form posted from another origin: its `Origin` (when the browser sent one, and
/// `null` counts as another) must be this dashboard's `Host`, or the `X-Forwarded-Host` a proxy in
/// front set (a cross-site form cannot set request headers).
fn same_origin(headers: &HeaderMap) -> Result<(), Problem> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return Ok(());
    };
    let host = |name| {
        headers
            .get(name)
            .and_then(|h: &HeaderValue| h.to_str().ok())
    };
    let from = origin.split_once("://").map(|(_, rest)| rest);
    let ours = [host(header::HOST.as_str()), host("x-forwarded-host")];
    if from.is_some_and(|f| ours.iter().flatten().any(|h| *h == f)) {
        return Ok(());
    }
    Err(Problem::new(
        "forbidden",
        format!(
            "the form was posted from {origin}, not from this dashboard ({}): open the dashboard at its own address (behind a proxy, pass the browser's Host or X-Forwarded-Host on)",
            ours[0].unwrap_or("?")
        ),
    ))
}

/// The form of an action: its CSRF value and the other fields.
pub type Fields = HashMap<String, String>;

/// Checks an action's CSRF value and origin, and (when `admin`) the scope.
///
/// # Errors
/// `forbidden`.
pub fn allow(who: &Signed, headers: &HeaderMap, form: &Fields, admin: bool) -> Result<(), Problem> {
    same_origin(headers)?;
    let csrf_ok = form
        .get("csrf")
        .is_some_and(|c| constant_eq(c.as_bytes(), who.csrf.as_bytes()));
    if !csrf_ok {
        return Err(Problem::new(
            "forbidden",
            "the form did not come from this session's dashboard page (missing or wrong CSRF value): reload the page and try again",
        ));
    }
    if admin && who.scope != Scope::Admin {
        return Err(Problem::new(
            "forbidden",
            format!(
                "you signed in with token {:?} of scope {}: changes need a token of scope admin",
                who.token, who.scope
            ),
        ));
    }
    Ok(())
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key or name in a path.
fn segment(p: Result<Path<String>, PathRejection>) -> Result<String, Refused> {
    Ok(crate::api::path_text(p, "path")?)
}

/// A form, or `invalid-input`.
fn form(
    f: Result<Form<Fields>, axum::extract::rejection::FormRejection>,
) -> Result<Fields, Refused> {
    f.map(|Form(f)| f)
        .map_err(|e| Refused::Problem(Problem::invalid(format!("form: {}", e.body_text()))))
}

async fn login_page() -> Response {
    html_response(pages::login(None))
}

async fn login(
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
    f: Result<Form<Fields>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Refused> {
    // Nobody else's page may sign this browser in (into the other's session).
    same_origin(&headers)?;
    let f = form(f)?;
    if let Some(old) = cookie_value(&headers, COOKIE) {
        s.control.close_session(old).await?;
    }
    let token = f.get("token").map(|t| t.trim()).unwrap_or("");
    match s.control.open_session(token, s.session_idle).await? {
        Some(new) => {
            let mut r = see_other("/");
            // No Max-Age: the server ends the session after the idle expiry (a cookie's lifetime
            // would count from sign-in); the browser forgets it when it closes.
            let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", new.secret);
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            Ok(r)
        }
        None => {
            let mut r = html_response(pages::login(Some(
                "That token is unknown, revoked, or of scope sql. Sign in with a token of scope read or admin (pgfleet token create NAME --scope read).",
            )));
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            Ok(r)
        }
    }
}

async fn logout(
    State(s): State<Arc<ApiState>>,
    who: Signed,
    headers: HeaderMap,
    f: Result<Form<Fields>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Refused> {
    let f = form(f)?;
    allow(&who, &headers, &f, false)?;
    if let Some(secret) = cookie_value(&headers, COOKIE) {
        s.control.close_session(secret).await?;
    }
    let mut r = see_other("/login");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("pgfleet_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(r)
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// The dashboard's routes over `state`.
pub fn routes(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/tenants", get(pages::tenants))
        .route("/tenants/{key}", get(tenant::tenant))
        .route("/tenants/{key}/check", post(tenant::check))
        .route("/tenants/{key}/check-user", get(tenant::check_user))
        .route("/tenants/{key}/fix", post(tenant::fix))
        .route("/tenants/{key}/rotate-password", post(tenant::rotate))
        .route("/tenants/{key}/reset", post(tenant::reset))
        .route("/tenants/{key}/drop", post(tenant::drop))
        .route("/servers", get(pages::servers))
        .route("/servers/{name}/{action}", post(pages::server_action))
        .route("/rollouts", get(pages::rollouts).post(pages::start_rollout))
        .route("/rollouts/{id}", get(pages::rollout))
        .route("/rollouts/{id}/events", get(pages::rollout_events))
        .route("/events", get(pages::events))
        .route(
            "/assets/style.css",
            get(|| async { asset(include_str!("assets/style.css"), "text/css; charset=utf-8") }),
        )
        .route(
            "/assets/app.js",
            get(|| async {
                asset(
                    include_str!("assets/app.js"),
                    "text/javascript; charset=utf-8",
                )
            }),
        )
        .with_state(state)
}

/// The query of a page, or `invalid-input`.
fn page_query<T: serde::de::DeserializeOwned>(uri: &Uri) -> Result<T, Refused> {
    Ok(crate::api::query(uri)?)
}

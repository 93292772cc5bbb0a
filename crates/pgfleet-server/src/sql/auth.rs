//! Who is calling `/sql`, and which tenant they may reach:
//! - `Authorization: Bearer <jwt>`: an end user; the tenant is the token's tenant claim, whatever
//!   the connection string says;
//! - an app token (`pgf_…`, scope `sql`) as the password of `Neon-Connection-String` (or as the
//!   bearer): the app's trusted server code; the tenant is the connection string's user
//!   (URL-decoded).
//!
//! Every refusal is a [`Refusal`] with a short reason, counted in
//! `pgfleet_sql_auth_failures_total{reason}`, before any tenant is touched. App tokens are looked
//! up in the catalog by digest; the answer, accepted or refused, is cached for
//! [`TOKEN_CACHE_TTL`] (so a revoked token stops working within that time, and a flood of wrong
//! tokens costs the catalog one query per token and TTL).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use pgfleet::control::Control;
use pgfleet::control::tokens::{Scope, TOKEN_PREFIX, token_digest};

use super::jwt::JwtVerifier;

/// How long a verified app token is trusted without asking the catalog again.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(2);

/// A caller whose credentials were accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The tenant it reaches.
    pub key: String,
    /// How it proved itself.
    pub via: Via,
}

/// How a caller proved itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// An end-user JWT.
    Jwt,
    /// The app token with this name.
    AppToken(String),
}

/// Why a caller was refused (a 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Shown to the caller.
    pub reason: &'static str,
    /// The metric label.
    pub label: &'static str,
}

impl Refusal {
    fn new(label: &'static str, reason: &'static str) -> Self {
        Self { reason, label }
    }

    /// Counts it in `pgfleet_sql_auth_failures_total{reason}`.
    pub fn count(&self) {
        metrics::counter!("pgfleet_sql_auth_failures_total", "reason" => self.label).increment(1);
    }
}

/// Checks callers.
pub struct Auth {
    control: Control,
    jwt: Option<JwtVerifier>,
    /// Token digests checked lately: the token's name, or `None` for a refused one.
    cache: Mutex<HashMap<[u8; 32], Checked>>,
}

/// A token check: the token's name (`None`: refused) and when it was made.
type Checked = (Option<String>, Instant);

/// Most digests [`Auth`] remembers; beyond it, expired ones go, then all.
const CACHE_ENTRIES: usize = 10_000;

/// Whether `key` can name a tenant: 1 to 256 bytes, no control characters (as the catalog
/// takes keys, and so they cannot forge log lines).
fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 256 && !key.chars().any(char::is_control)
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("jwt", &self.jwt)
            .finish_non_exhaustive()
    }
}

/// Why the server could not check a caller (the catalog did not answer): a 503, not a 401.
#[derive(Debug)]
pub struct AuthUnavailable(pub String);

impl Auth {
    /// Callers checked against `control`'s token store and `jwt`'s keys.
    pub fn new(control: Control, jwt: Option<JwtVerifier>) -> Self {
        Self {
            control,
            jwt,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The caller of a request with these headers.
    ///
    /// # Errors
    /// `Ok(Err(refusal))`: a 401. `Err`: the token store could not be asked.
    pub async fn caller(
        &self,
        headers: &HeaderMap,
    ) -> Result<Result<Caller, Refusal>, AuthUnavailable> {
        // Read only for app-token callers: a JWT caller's tenant never comes from it.
        let conn = || match headers.get("neon-connection-string") {
            Some(v) => v
                .to_str()
                .ok()
                .and_then(parse_connection_string)
                .ok_or_else(|| {
                    Refusal::new(
                        "bad_connection_string",
                        "Neon-Connection-String is not a postgresql:// URL with a user",
                    )
                }),
            None => Err(Refusal::new(
                "no_tenant",
                "an app token needs the tenant key as the user of Neon-Connection-String",
            )),
        };
        if let Some(auth) = headers.get("authorization") {
            let Some(token) = auth
                .to_str()
                .ok()
                .and_then(|a| {
                    a.strip_prefix("Bearer ")
                        .or_else(|| a.strip_prefix("bearer "))
                })
                .map(str::trim)
            else {
                return Ok(Err(Refusal::new(
                    "bad_authorization",
                    "the Authorization header is not `Bearer <token>`",
                )));
            };
            if token.starts_with(TOKEN_PREFIX) {
                return match conn() {
                    Ok((user, _)) => self.app_token(token, user).await,
                    Err(r) => Ok(Err(r)),
                };
            }
            let Some(jwt) = &self.jwt else {
                return Ok(Err(Refusal::new(
                    "jwt_not_configured",
                    "this server accepts no JWTs (no PGFLEET_JWT_SECRET or PGFLEET_JWKS_FILE)",
                )));
            };
            return Ok(match jwt.tenant(token).await {
                Ok(key) if valid_key(&key) => Ok(Caller { key, via: Via::Jwt }),
                Ok(_) => Err(Refusal::new(
                    "jwt_invalid",
                    "the tenant claim is not a tenant key (1 to 256 bytes, no control characters)",
                )),
                Err(reason) => Err(Refusal::new("jwt_invalid", reason)),
            });
        }
        match conn() {
            Ok((user, Some(password))) => self.app_token(&password, user).await,
            Ok((_, None)) | Err(_) => Ok(Err(Refusal::new(
                "missing",
                "no credentials: send `Authorization: Bearer <jwt>`, or an app token as the password of the connection string",
            ))),
        }
    }

    /// The caller of a PostgreSQL-protocol login (the wire front door): `user` names the tenant,
    /// `password` is an app token (`pgf_…`, scope `sql`) or an end-user JWT, told apart by their
    /// form. A JWT's tenant claim must be `user`.
    ///
    /// # Errors
    /// `Ok(Err(refusal))`: the login is refused. `Err`: the token store could not be asked.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Result<Caller, Refusal>, AuthUnavailable> {
        if password.starts_with(TOKEN_PREFIX) {
            return self.app_token(password, user.to_string()).await;
        }
        let Some(jwt) = &self.jwt else {
            return Ok(Err(Refusal::new(
                "jwt_not_configured",
                "the password is neither an app token (pgf_…) nor usable as a JWT: this server accepts no JWTs (no PGFLEET_JWT_SECRET or PGFLEET_JWKS_FILE)",
            )));
        };
        Ok(match jwt.tenant(password).await {
            Ok(key) if key == user && valid_key(&key) => Ok(Caller { key, via: Via::Jwt }),
            Ok(_) => Err(Refusal::new(
                "jwt_other_tenant",
                "the token is for another tenant than the user name: connect with the token's tenant key as the user",
            )),
            Err(reason) => Err(Refusal::new("jwt_invalid", reason)),
        })
    }

    fn remember(&self, digest: [u8; 32], name: Option<String>) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, (_, at)| at.elapsed() < TOKEN_CACHE_TTL);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(digest, (name, Instant::now()));
    }

    async fn app_token(
        &self,
        token: &str,
        key: String,
    ) -> Result<Result<Caller, Refusal>, AuthUnavailable> {
        if !valid_key(&key) {
            return Ok(Err(Refusal::new(
                "no_tenant",
                "the connection string's user is not a tenant key (1 to 256 bytes, no control characters)",
            )));
        }
        let digest = token_digest(token);
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache
                .get(&digest)
                .filter(|(_, at)| at.elapsed() < TOKEN_CACHE_TTL)
                .map(|(name, _)| name.clone())
        };
        let name = match cached {
            // Refused a moment ago: refused again without asking the catalog.
            Some(None) => {
                return Ok(Err(Refusal::new(
                    "token_invalid",
                    "the app token is unknown or revoked",
                )));
            }
            Some(Some(n)) => n,
            None => match self.control.verify_token(token).await {
                Ok(Some((name, Scope::Sql))) => {
                    self.remember(digest, Some(name.clone()));
                    name
                }
                Ok(Some(_)) => {
                    return Ok(Err(Refusal::new(
                        "token_scope",
                        "this token's scope does not open /sql (create one with --scope sql)",
                    )));
                }
                Ok(None) => {
                    self.remember(digest, None);
                    return Ok(Err(Refusal::new(
                        "token_invalid",
                        "the app token is unknown or revoked",
                    )));
                }
                Err(e) => return Err(AuthUnavailable(pgfleet::control::error::chain(&e))),
            },
        };
        Ok(Ok(Caller {
            key,
            via: Via::AppToken(name),
        }))
    }
}

/// The user and password of a `postgres://` or `postgresql://` URL, percent-decoded.
pub fn parse_connection_string(url: &str) -> Option<(String, Option<String>)> {
    let rest = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let (userinfo, _host) = authority.rsplit_once('@')?;
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u, Some(p)),
        None => (userinfo, None),
    };
    let user = percent_decode(user)?;
    if user.is_empty() {
        return None;
    }
    let password = match password {
        Some(p) => Some(percent_decode(p)?),
        None => None,
    };
    Some((user, password))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::parse_connection_string as p;

    #[test]
    fn connection_strings() {
        assert_eq!(
            p(
                "postgresql://user%20a%40b.c%2F%C3%BC:pgf_AbC-_x9@pgfleet.internal/app?application_name=x"
            ),
            Some(("user a@b.c/ü".into(), Some("pgf_AbC-_x9".into())))
        );
        assert_eq!(p("postgres://u@h/d"), Some(("u".into(), None)));
        assert_eq!(p("postgresql://h/d"), None);
        assert_eq!(p("mysql://u:p@h/d"), None);
        assert_eq!(p("postgresql://:p@h/d"), None);
        assert_eq!(p("postgresql://u%zz:p@h/d"), None);
    }
}

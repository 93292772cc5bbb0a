//! Dashboard sessions: signing in with a `read` or `admin` token gives a random session secret (kept
//! by the browser in a cookie); the catalog keeps only its SHA-256 digest, the token's name and when
//! it was last used. A session ends when it is signed out, idle longer than the idle expiry, or its
//! token is revoked. Several `pgfleet serve` processes share the sessions through the catalog.

use std::time::Duration;

use base64::Engine;

use crate::tokens::{Scope, token_digest};
use crate::{Control, ControlError, q};

/// The prefix of session secrets (distinct from tokens, so one is never taken for the other).
pub const SESSION_PREFIX: &str = "pgs_";

/// A signed-in session: the token it was opened with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The token's name.
    pub token: String,
    /// The token's scope (`read` or `admin`).
    pub scope: Scope,
}

/// A new session: its secret (for the cookie; never stored) and what it may do.
#[derive(Clone, PartialEq, Eq)]
pub struct NewSession {
    /// The secret.
    pub secret: String,
    /// The session.
    pub session: Session,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl Control {
    /// Opens a session for the live `read` or `admin` token `token`: `None` when the token is
    /// unknown, revoked or of scope `sql`. Sessions idle longer than `idle` are removed on the way.
    ///
    /// # Errors
    /// Catalog errors, the random source.
    pub async fn open_session(
        &self,
        token: &str,
        idle: Duration,
    ) -> Result<Option<NewSession>, ControlError> {
        let Some((name, scope)) = self.verify_token(token).await? else {
            return Ok(None);
        };
        if scope == Scope::Sql {
            return Ok(None);
        }
        let secret = format!(
            "{SESSION_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(crate::secrets::random_bytes::<32>()?)
        );
        self.catalog()
            .execute(
                include_str!("catalog/sql/session_insert.sql"),
                &[&&token_digest(&secret)[..], &name, &idle.as_secs_f64()],
            )
            .await
            .map_err(q("opening a session"))?;
        Ok(Some(NewSession {
            secret,
            session: Session { token: name, scope },
        }))
    }

    /// The live session with `secret`, used within `idle` and whose token is not revoked.
    ///
    /// # Errors
    /// Catalog errors.
    pub async fn session(
        &self,
        secret: &str,
        idle: Duration,
    ) -> Result<Option<Session>, ControlError> {
        if !secret.starts_with(SESSION_PREFIX) || secret.len() > 100 {
            return Ok(None);
        }
        let row = self
            .catalog()
            .query_opt(
                include_str!("catalog/sql/session_touch.sql"),
                &[&&token_digest(secret)[..], &idle.as_secs_f64()],
            )
            .await
            .map_err(q("reading a session"))?;
        row.map(|r| {
            Ok(Session {
                token: r.get(0),
                scope: r.get::<_, &str>(1).parse()?,
            })
        })
        .transpose()
    }

    /// Ends the session with `secret` (nothing when there is none).
    ///
    /// # Errors
    /// Catalog errors.
    pub async fn close_session(&self, secret: &str) -> Result<(), ControlError> {
        self.catalog()
            .execute(
                include_str!("catalog/sql/session_delete.sql"),
                &[&&token_digest(secret)[..]],
            )
            .await
            .map_err(q("closing a session"))?;
        Ok(())
    }
}

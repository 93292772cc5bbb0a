//! API tokens: `pgf_` followed by 43 URL-safe characters (256 random bits), printed once when
//! created; the catalog keeps only their SHA-256 digest. A token has a name (to list and revoke
//! it, and to name it in events) and a scope:
//!
//! | scope | opens |
//! |---|---|
//! | `sql` | the SQL front doors (`POST /sql`): any tenant, named by the caller — for the app's own trusted server code |
//! | `read` | the management API, reading |
//! | `admin` | the management API, changing |

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::catalog::tokens as table;
use crate::{Control, ControlError, events};

/// The prefix every token starts with.
pub const TOKEN_PREFIX: &str = "pgf_";

/// What a token may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The SQL front doors.
    Sql,
    /// The management API, reading.
    Read,
    /// The management API, changing.
    Admin,
}

impl Scope {
    /// Its name in the catalog and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sql => "sql",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = ControlError;
    fn from_str(s: &str) -> Result<Self, ControlError> {
        match s {
            "sql" => Ok(Self::Sql),
            "read" => Ok(Self::Read),
            "admin" => Ok(Self::Admin),
            other => Err(ControlError::CorruptRow {
                table: "pgfleet.tokens",
                detail: format!("unknown scope {other:?}"),
            }),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token as `token list` shows it (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    /// Its name.
    pub name: String,
    /// Its scope.
    pub scope: Scope,
    /// When it was created (UTC, RFC 3339).
    pub created_at: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
}

/// A new token: the secret is shown once and stored nowhere.
#[derive(Clone, PartialEq, Eq)]
pub struct NewToken {
    /// Its name.
    pub name: String,
    /// Its scope.
    pub scope: Scope,
    /// The token: `pgf_…`.
    pub secret: String,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("name", &self.name)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Whether `s` has the form of a token (`pgf_` and 43 URL-safe base64 characters): tells a token
/// from a JWT without a lookup.
pub fn looks_like_token(s: &str) -> bool {
    s.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The SHA-256 digest the catalog keeps of a token.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

impl Control {
    /// Creates a token named `name` with `scope`, records a `token.created` event, and returns
    /// the token (the only time it is seen).
    ///
    /// # Errors
    /// [`ControlError::InvalidTokenName`], [`ControlError::TokenExists`] (also for a revoked
    /// token's name), catalog errors.
    pub async fn create_token(&self, name: &str, scope: Scope) -> Result<NewToken, ControlError> {
        if !valid_name(name) {
            return Err(ControlError::InvalidTokenName(name.to_string()));
        }
        let random = crate::secrets::random_bytes::<32>()?;
        let secret = format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random)
        );
        let catalog = self.catalog();
        let digest = token_digest(&secret);
        if table::insert(&*catalog, name, scope.as_str(), &digest)
            .await?
            .is_none()
        {
            return Err(ControlError::TokenExists(name.to_string()));
        }
        events::record(
            &catalog,
            None,
            None,
            "token.created",
            serde_json::json!({ "name": name, "scope": scope.as_str() }),
        )
        .await?;
        Ok(NewToken {
            name: name.to_string(),
            scope,
            secret,
        })
    }

    /// Every token, revoked ones included, by name.
    ///
    /// # Errors
    /// Catalog errors; [`ControlError::CorruptRow`] for a scope this pgfleet does not know.
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, ControlError> {
        table::list(&*self.catalog())
            .await?
            .into_iter()
            .map(|(name, scope, created_at, revoked_at)| {
                Ok(TokenInfo {
                    name,
                    scope: scope.parse()?,
                    created_at,
                    revoked_at,
                })
            })
            .collect()
    }

    /// Revokes token `name` (a `token.revoked` event); `false` when it already was. Servers stop
    /// accepting it within their token cache's lifetime (2 s for `pgfleet serve`).
    ///
    /// # Errors
    /// [`ControlError::UnknownToken`], catalog errors.
    pub async fn revoke_token(&self, name: &str) -> Result<bool, ControlError> {
        let catalog = self.catalog();
        let live = table::revoke(&*catalog, name)
            .await?
            .ok_or_else(|| ControlError::UnknownToken(name.to_string()))?;
        if live {
            events::record(
                &catalog,
                None,
                None,
                "token.revoked",
                serde_json::json!({ "name": name }),
            )
            .await?;
        }
        Ok(live)
    }

    /// The name and scope of the live token `token`; `None` for a token that is malformed,
    /// unknown or revoked. One indexed catalog query (callers cache).
    ///
    /// # Errors
    /// Catalog errors.
    pub async fn verify_token(&self, token: &str) -> Result<Option<(String, Scope)>, ControlError> {
        if !looks_like_token(token) {
            return Ok(None);
        }
        match table::by_digest(&*self.catalog(), &token_digest(token)).await? {
            Some((name, scope)) => Ok(Some((name, scope.parse()?))),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_form() {
        let t = format!("pgf_{}", "a".repeat(43));
        assert!(looks_like_token(&t));
        assert!(!looks_like_token(&format!("pgf_{}", "a".repeat(42))));
        assert!(!looks_like_token(&format!("pgf_{}=", "a".repeat(42))));
        assert!(!looks_like_token("eyJhbGciOi.x.y"));
        assert!(valid_name("backend-1.prod"));
        assert!(!valid_name("-x"));
        assert!(!valid_name(""));
        assert!(!valid_name(&"a".repeat(64)));
        assert_eq!(token_digest("x").len(), 32);
    }
}

//! End-user tokens (JWT) for the SQL front door, checked as RFC 8725 asks: every key has exactly
//! one algorithm it accepts (HS256 for the shared secret; the JWK's own `alg`, or the one its key
//! type implies, for public keys), so `alg: none` and HS/RS confusion cannot pass; `exp` is
//! required, `nbf` honoured, both with a leeway of 30 s; `iss` and `aud` are enforced when
//! configured; a token over 8 KiB is refused before it is parsed.
//!
//! Keys come only from the environment or files (never a flag or `pgfleet.toml`):
//! `PGFLEET_JWT_SECRET` / `PGFLEET_JWT_SECRET_FILE` (HS256, the secret's UTF-8 bytes as given) and
//! `PGFLEET_JWKS_FILE` and/or `PGFLEET_JWKS_URL` (public keys selected by `kid`: RS256, ES256,
//! EdDSA; the URL's keys are re-read as [`super::jwks_url`] says).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// Tokens longer than this are refused unread.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// Why the verifier could not be built (a configuration error, reported at start).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtConfigError {
    /// A key file cannot be read.
    #[error("cannot read {path}: {cause}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        cause: String,
    },
    /// The JWKS cannot be used.
    #[error("{path}: {cause}")]
    Jwks {
        /// The file.
        path: String,
        /// What is wrong.
        cause: String,
    },
    /// The HS256 secret is too short to be a secret.
    #[error(
        "the JWT secret (PGFLEET_JWT_SECRET[_FILE]) has {0} bytes; use at least 32 (e.g. `openssl rand -base64 48`)"
    )]
    ShortSecret(usize),
}

/// Where the keys and rules come from.
#[derive(Clone, Default)]
pub struct JwtSettings {
    /// The HS256 shared secret.
    pub secret: Option<Vec<u8>>,
    /// A JWKS file of public keys.
    pub jwks_file: Option<std::path::PathBuf>,
    /// A JWKS URL of public keys.
    pub jwks_url: Option<String>,
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Required `aud` (one of).
    pub audience: Option<String>,
    /// The claim that names the tenant (default `sub`).
    pub tenant_claim: String,
}

impl std::fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("JwtSettings")
            .field("secret", &self.secret.as_ref().map(|_| "(set)"))
            .field("jwks_file", &self.jwks_file)
            .field("jwks_url", &self.jwks_url)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("tenant_claim", &self.tenant_claim)
            .finish()
    }
}

impl JwtSettings {
    /// From `PGFLEET_JWT_SECRET`, `PGFLEET_JWT_SECRET_FILE`, `PGFLEET_JWKS_FILE`,
    /// `PGFLEET_JWT_ISSUER`, `PGFLEET_JWT_AUDIENCE`, `PGFLEET_JWT_TENANT_CLAIM`.
    ///
    /// # Errors
    /// A secret file that cannot be read.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, JwtConfigError> {
        let secret = match (env("PGFLEET_JWT_SECRET"), env("PGFLEET_JWT_SECRET_FILE")) {
            (Some(s), _) if !s.is_empty() => Some(s.into_bytes()),
            (_, Some(f)) if !f.is_empty() => {
                let text = std::fs::read_to_string(&f).map_err(|e| JwtConfigError::Read {
                    path: f.clone(),
                    cause: e.to_string(),
                })?;
                Some(text.trim_end_matches(['\n', '\r']).as_bytes().to_vec())
            }
            _ => None,
        };
        Ok(Self {
            secret,
            jwks_file: env("PGFLEET_JWKS_FILE")
                .filter(|s| !s.is_empty())
                .map(Into::into),
            jwks_url: env("PGFLEET_JWKS_URL").filter(|s| !s.is_empty()),
            issuer: env("PGFLEET_JWT_ISSUER").filter(|s| !s.is_empty()),
            audience: env("PGFLEET_JWT_AUDIENCE").filter(|s| !s.is_empty()),
            tenant_claim: env("PGFLEET_JWT_TENANT_CLAIM")
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "sub".into()),
        })
    }

    /// Whether any key is configured.
    pub fn is_configured(&self) -> bool {
        self.secret.is_some() || self.jwks_file.is_some() || self.jwks_url.is_some()
    }
}

/// A verification key and the one algorithm it takes.
pub(crate) struct Key {
    alg: Algorithm,
    key: DecodingKey,
}

/// Checks end-user tokens and returns the tenant they name.
pub struct JwtVerifier {
    secret: Option<Arc<Key>>,
    by_kid: HashMap<String, Arc<Key>>,
    remote: Option<super::jwks_url::RemoteJwks>,
    issuer: Option<String>,
    audience: Option<String>,
    tenant_claim: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("hs256", &self.secret.is_some())
            .field("kids", &self.by_kid.keys().collect::<Vec<_>>())
            .field(
                "jwks_url",
                &self.remote.as_ref().map(|r| r.url().to_string()),
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("tenant_claim", &self.tenant_claim)
            .finish()
    }
}

impl JwtVerifier {
    /// Builds the verifier; `None` when no key is configured (JWT callers are then refused).
    ///
    /// # Errors
    /// Unreadable or unusable key files, a short secret.
    pub fn new(s: &JwtSettings) -> Result<Option<Self>, JwtConfigError> {
        if !s.is_configured() {
            return Ok(None);
        }
        let secret = match &s.secret {
            Some(b) if b.len() < 32 => return Err(JwtConfigError::ShortSecret(b.len())),
            Some(b) => Some(Arc::new(Key {
                alg: Algorithm::HS256,
                key: DecodingKey::from_secret(b).map_err(|e| JwtConfigError::Jwks {
                    path: "PGFLEET_JWT_SECRET".into(),
                    cause: e.to_string(),
                })?,
            })),
            None => None,
        };
        let by_kid = match &s.jwks_file {
            Some(p) => load_jwks(p)?,
            None => HashMap::new(),
        };
        Ok(Some(Self {
            secret,
            by_kid,
            remote: s.jwks_url.as_deref().map(super::jwks_url::RemoteJwks::new),
            issuer: s.issuer.clone(),
            audience: s.audience.clone(),
            tenant_claim: s.tenant_claim.clone(),
        }))
    }

    /// Reads the keys of `PGFLEET_JWKS_URL`, when it is set: call once at start.
    ///
    /// # Errors
    /// The URL cannot be read or its keys cannot be used.
    pub async fn fetch_remote_keys(&self) -> Result<(), JwtConfigError> {
        if let Some(r) = &self.remote {
            r.refresh().await.map_err(|cause| JwtConfigError::Jwks {
                path: format!("PGFLEET_JWKS_URL {}", r.url()),
                cause,
            })?;
        }
        Ok(())
    }

    /// The tenant key a valid token names.
    ///
    /// # Errors
    /// A short reason, safe to show the caller.
    pub async fn tenant(&self, token: &str) -> Result<String, &'static str> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err("the token is larger than 8 KiB");
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| "the token is not a JWT")?;
        // A kid names a public key of the JWKS; the shared secret is for tokens without one.
        let key = match &header.kid {
            Some(kid) => match (self.by_kid.get(kid), &self.remote) {
                (Some(k), _) => k.clone(),
                (None, Some(r)) => r.key(kid).await.ok_or("no key has the token's kid")?,
                (None, None) => return Err("no key has the token's kid"),
            },
            None => self.secret.clone().ok_or("the token has no kid")?,
        };
        if header.alg != key.alg {
            return Err("the token's algorithm is not the one its key takes");
        }
        let mut v = Validation::new(key.alg);
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
        v.validate_exp = true;
        let mut required = vec!["exp"];
        match &self.issuer {
            Some(iss) => {
                v.set_issuer(&[iss]);
                required.push("iss");
            }
            None => v.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key.key, &v)
                .map_err(|e| reason(e.kind()))?;
        match data.claims.get(&self.tenant_claim) {
            Some(serde_json::Value::String(k)) if !k.is_empty() => Ok(k.clone()),
            Some(_) => Err("the tenant claim is not a non-empty string"),
            None => Err("the token has no tenant claim"),
        }
    }
}

fn reason(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::ExpiredSignature => "the token has expired",
        K::ImmatureSignature => "the token is not valid yet (nbf)",
        K::InvalidIssuer => "the token's issuer is not accepted",
        K::InvalidAudience => "the token's audience is not accepted",
        K::MissingRequiredClaim(_) => "the token lacks a required claim (exp, iss or aud)",
        K::InvalidClaimFormat(_) => "a claim of the token has the wrong type",
        K::InvalidSignature => "the token's signature does not verify",
        K::InvalidAlgorithm => "the token's algorithm is not accepted",
        _ => "the token is invalid",
    }
}

fn load_jwks(path: &Path) -> Result<HashMap<String, Arc<Key>>, JwtConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| JwtConfigError::Read {
        path: shown.clone(),
        cause: e.to_string(),
    })?;
    parse_jwks(&text, &shown)
}

/// The keys of a JWKS document (`source` names it in errors).
pub(crate) fn parse_jwks(
    text: &str,
    source: &str,
) -> Result<HashMap<String, Arc<Key>>, JwtConfigError> {
    let bad = |cause: String| JwtConfigError::Jwks {
        path: source.to_string(),
        cause,
    };
    let set: JwkSet = serde_json::from_str(text).map_err(|e| bad(format!("not a JWKS: {e}")))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let kid = jwk
            .common
            .key_id
            .clone()
            .ok_or_else(|| bad("every key needs a \"kid\"".into()))?;
        if keys.contains_key(&kid) {
            return Err(bad(format!("two keys have kid {kid:?}")));
        }
        if matches!(
            jwk.common.public_key_use,
            Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
        ) {
            return Err(bad(format!(
                "key {kid:?} is an encryption key (\"use\": \"enc\"), not a signing key"
            )));
        }
        let implied = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
            AlgorithmParameters::OctetKey(_) => {
                return Err(bad(format!(
                    "key {kid:?} is a shared secret (kty oct); put shared secrets in PGFLEET_JWT_SECRET_FILE"
                )));
            }
            _ => {
                return Err(bad(format!(
                    "key {kid:?}: only RSA, EC P-256 and Ed25519 keys are supported"
                )));
            }
        };
        let alg = match jwk.common.key_algorithm {
            None => implied,
            Some(KeyAlgorithm::RS256) if implied == Algorithm::RS256 => Algorithm::RS256,
            Some(KeyAlgorithm::ES256) if implied == Algorithm::ES256 => Algorithm::ES256,
            Some(KeyAlgorithm::EdDSA) if implied == Algorithm::EdDSA => Algorithm::EdDSA,
            Some(other) => {
                return Err(bad(format!(
                    "key {kid:?}: algorithm {other:?} is not accepted for its key type (RS256, ES256, EdDSA)"
                )));
            }
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(format!("key {kid:?}: {e}")))?;
        keys.insert(kid, Arc::new(Key { alg, key }));
    }
    Ok(keys)
}

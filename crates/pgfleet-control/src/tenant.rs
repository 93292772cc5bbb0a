//! Tenants: what the catalog records about each one, and how internal names derive from the id.

/// How a tenant is isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A database of its own on a server.
    Database,
    /// A schema of its own inside a database shared by the tenants of a server.
    Schema,
}

impl Mode {
    /// `database` or `schema`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::Schema => "schema",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "database" => Ok(Self::Database),
            "schema" => Ok(Self::Schema),
            other => Err(format!(
                "unknown tenant mode {other:?}: use database or schema"
            )),
        }
    }
}

/// Where a tenant is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Being provisioned (see `step`).
    Provisioning,
    /// Provisioned and verified.
    Ready,
    /// Provisioning stopped with an error (see `last_error`); `tenant create` again retries.
    Failed,
    /// Being dropped.
    Dropping,
}

impl State {
    /// The catalog spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::Dropping => "dropping",
        }
    }
}

impl std::str::FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "provisioning" => Ok(Self::Provisioning),
            "ready" => Ok(Self::Ready),
            "failed" => Ok(Self::Failed),
            "dropping" => Ok(Self::Dropping),
            other => Err(format!(
                "unknown tenant state {other:?}: use provisioning, ready, failed or dropping"
            )),
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A tenant as the catalog records it (never its password).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Tenant {
    /// The application's key (e.g. its user id).
    pub key: String,
    /// Generated id: `t` + 16 hex digits.
    pub id: String,
    /// Isolation mode.
    pub mode: Mode,
    /// Lifecycle state.
    pub state: State,
    /// The provisioning step it is at (or `ready`).
    pub step: String,
    /// The server it lives on, once placed.
    pub server: Option<String>,
    /// The database (own, or the shared one in schema mode).
    pub database: String,
    /// The schema its objects live in (`public` in database mode).
    pub schema: String,
    /// Its own login role.
    pub role: String,
    /// The target version it was brought to and verified at.
    pub schema_version: Option<String>,
    /// The last error, while failing or retrying.
    pub last_error: Option<String>,
    /// When it was created.
    pub created_at: String,
    /// Why its last fleet migration (`migrate --all`) failed; cleared when one succeeds.
    pub migrate_error: Option<String>,
    /// Its health as the health checker last saw it.
    pub health: Health,
    /// When the health checker last checked it.
    pub health_checked_at: Option<String>,
    /// How long the last check took (login as its role and `select 1`), in milliseconds.
    pub health_latency_ms: Option<f64>,
    /// Why the last check was not healthy.
    pub health_error: Option<String>,
}

/// A tenant's health, as `pgfleet serve`'s health checker records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not checked yet.
    Unknown,
    /// Logged in as its role and answered `select 1`.
    Healthy,
    /// Answered, but slowly (over the degraded threshold).
    Degraded,
    /// Could not be reached or logged into.
    Unreachable,
}

impl Health {
    /// The catalog spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unreachable => "unreachable",
        }
    }

    /// Every health, in catalog spelling order.
    pub const ALL: [Health; 4] = [
        Self::Unknown,
        Self::Healthy,
        Self::Degraded,
        Self::Unreachable,
    ];
}

impl std::str::FromStr for Health {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|h| h.as_str() == s)
            .ok_or_else(|| format!("unknown health {s:?}"))
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl Tenant {
    /// A tenant from a row of `pgfleet.tenants` read with the columns the catalog's queries name
    /// (`catalog/sql/tenant_*.sql`).
    ///
    /// # Errors
    /// [`crate::ControlError::CorruptRow`] for a row this pgfleet cannot read.
    pub(crate) fn read(r: &tokio_postgres::Row) -> Result<Self, crate::ControlError> {
        Self::from_row(r).map_err(|detail| crate::ControlError::CorruptRow {
            table: "tenants",
            detail,
        })
    }

    fn from_row(r: &tokio_postgres::Row) -> Result<Self, String> {
        Ok(Self {
            key: r.get("key"),
            id: r.get("id"),
            mode: r.get::<_, &str>("mode").parse()?,
            state: r.get::<_, &str>("state").parse()?,
            step: r.get("step"),
            server: r.get("server"),
            database: r.get("database_name"),
            schema: r.get("schema_name"),
            role: r.get("role_name"),
            schema_version: r.get("schema_version"),
            last_error: r.get("last_error"),
            created_at: r.get("created_at"),
            migrate_error: r.get("migrate_error"),
            health: r.get::<_, &str>("health").parse()?,
            health_checked_at: r.get("health_checked_at"),
            health_latency_ms: r.get("health_latency_ms"),
            health_error: r.get("health_error"),
        })
    }
}

/// Internal names of a tenant id: (database, schema, role). All ASCII, at most 26 bytes.
pub fn names(id: &str, mode: Mode) -> (String, String, String) {
    let role = format!("pgfleet_{id}");
    match mode {
        Mode::Database => (format!("pgfleet_{id}"), "public".to_string(), role),
        Mode::Schema => (SHARED_DATABASE.to_string(), id.to_string(), role),
    }
}

/// The database that holds the schema-mode tenants of a server.
pub const SHARED_DATABASE: &str = "pgfleet_tenants";

/// The group role (`NOLOGIN`) of a server's schema-mode tenants: it holds `CONNECT, TEMPORARY` on
/// [`SHARED_DATABASE`] and `USAGE` on its `public` schema, and each schema tenant's role is a member.
/// Granting those to every tenant's role instead would grow the database's and the schema's ACL by
/// one entry per tenant, and every later grant rewrites the whole ACL (at 5,000 tenants each new
/// tenant's grants took about 50 ms, growing with each one).
pub const SHARED_GROUP_ROLE: &str = "pgfleet_schema_tenants";

/// A new tenant id.
///
/// # Errors
/// When the system's random source fails.
pub fn new_id() -> Result<String, crate::secrets::SecretError> {
    let bytes = crate::secrets::random_bytes::<8>()?;
    Ok(format!(
        "t{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_the_id_and_fit_postgres_limits() {
        let id = new_id().unwrap();
        assert_eq!(id.len(), 17);
        let (db, schema, role) = names(&id, Mode::Database);
        assert!(db.len() <= 63 && role.len() <= 63);
        assert_eq!(schema, "public");
        let (db, schema, _) = names(&id, Mode::Schema);
        assert_eq!(
            (db.as_str(), schema.as_str()),
            (SHARED_DATABASE, id.as_str())
        );
        assert_ne!(new_id().unwrap(), id);
    }
}

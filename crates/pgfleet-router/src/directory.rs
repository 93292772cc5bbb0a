//! The narrow interface through which the router learns where tenants live and asks for repairs.
//! The control plane implements it over its catalog; the router never reads the catalog itself.

use std::future::Future;
use std::time::{Duration, SystemTime};

/// A boxed cause, as this crate's errors carry the errors of the code they call.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the directory could not answer. An implementation maps its own errors onto these variants
/// and keeps them as the source, so the router and its callers can ask questions
/// ([`DirectoryError::is_not_found`], [`DirectoryError::is_retryable`]) instead of matching text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// No tenant has this key (for a repair: the tenant was dropped since the router placed it).
    #[error("no tenant with key {0:?}")]
    UnknownTenant(String),
    /// The tenant exists but is not ready: its provisioning did not finish within the wait (it
    /// goes on, so asking again later may succeed).
    #[error("tenant {key:?} is not ready")]
    NotReady {
        /// The key.
        key: String,
        /// Why, when the directory knows.
        #[source]
        source: Option<BoxError>,
    },
    /// Provisioning the tenant failed (until the cause is fixed).
    #[error("provisioning tenant {key:?} failed")]
    ProvisionFailed {
        /// The key.
        key: String,
        /// What failed.
        #[source]
        source: BoxError,
    },
    /// Repairing the tenant's schema failed.
    #[error("repairing tenant {key:?} failed")]
    RepairFailed {
        /// The key.
        key: String,
        /// What failed.
        #[source]
        source: BoxError,
    },
    /// The directory's store (the catalog) or the tenant's server could not be reached: asking
    /// again later may succeed.
    #[error("the directory is unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else.
    #[error(transparent)]
    Other(BoxError),
}

impl DirectoryError {
    /// No tenant has the key.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::UnknownTenant(_))
    }

    /// Asking again later may succeed: the directory was unreachable, or the tenant is still
    /// being provisioned.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::NotReady { .. })
    }
}

/// Where a tenant lives and how to log in as it.
#[derive(Clone)]
pub struct Placement {
    /// The application's key.
    pub key: String,
    /// The tenant's id.
    pub tenant_id: String,
    /// The server's name.
    pub server: String,
    /// `database` or `schema`.
    pub mode: String,
    /// The tenant's database (its own, or the server's shared one).
    pub database: String,
    /// The tenant's schema (`public` in database mode).
    pub schema: String,
    /// Connection settings: the tenant's own role and password, its database, and (schema mode) its
    /// `search_path` as a startup option, so a new connection needs no statement to be ready.
    pub config: tokio_postgres::Config,
    /// The target version the tenant was verified at.
    pub version: Option<String>,
    /// How trusted callers may reach the tenant over a shared connection (schema tenants whose
    /// server has a pool role): `None` means per-tenant logins only.
    pub shared: Option<SharedLogin>,
}

/// A shared login of a schema tenant's server: the pool role's settings (its database is the
/// server's shared tenant database) and what a checkout switches to.
#[derive(Clone)]
pub struct SharedLogin {
    /// The pool role's login on the shared database.
    pub config: tokio_postgres::Config,
    /// The tenant's role (`SET ROLE` on checkout).
    pub role: String,
    /// The tenant's `search_path` (its schema, then `public`), as `SET search_path` takes it.
    pub search_path: String,
    /// A function of the shared database, `f(role text, search_path text)`, that the pool role
    /// may call to clear the last tenant's session (settings, `LISTEN`, advisory locks, prepared
    /// statements made with SQL `PREPARE`, temporary objects, sequence state) and switch to `role`
    /// and `search_path`, in one statement with a plan cached per session. `None`: the router
    /// sends those statements itself (slower: parsed on every switch).
    pub switch_function: Option<String>,
}

impl std::fmt::Debug for SharedLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLogin")
            .field("role", &self.role)
            .field("search_path", &self.search_path)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the config: it holds the password.
        f.debug_struct("Placement")
            .field("key", &self.key)
            .field("tenant_id", &self.tenant_id)
            .field("server", &self.server)
            .field("mode", &self.mode)
            .field("database", &self.database)
            .field("schema", &self.schema)
            .field("version", &self.version)
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

/// What a repair did.
#[derive(Debug, Clone, Default)]
pub struct Repair {
    /// Steps applied (each recorded as a correction).
    pub applied: Vec<String>,
    /// Another process repaired the tenant after the error was seen (so a retry may succeed
    /// although this repair had nothing to do).
    pub repaired_elsewhere: bool,
}

/// Where the router reads placements and asks for provisioning and repairs.
///
/// Errors: [`DirectoryError::Unavailable`] when the directory's store cannot be reached (the router
/// reports [`RouterError::is_retryable`](crate::RouterError::is_retryable)); the other variants as
/// each method says.
pub trait Directory: Send + Sync + 'static {
    /// The placement of a ready tenant; `None` when no ready tenant has this key.
    ///
    /// # Errors
    /// [`DirectoryError::Unavailable`], [`DirectoryError::Other`].
    fn lookup(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Placement>, DirectoryError>> + Send;

    /// Placements of ready tenants, at most `limit`, for a router to know before their first use
    /// ([`Router::preload`](crate::Router::preload)). The default has none.
    ///
    /// # Errors
    /// [`DirectoryError::Unavailable`], [`DirectoryError::Other`].
    fn preload(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Placement>, DirectoryError>> + Send {
        let _ = limit;
        std::future::ready(Ok(Vec::new()))
    }

    /// Creates the tenant (idempotent) and waits until it is ready, at most `timeout`.
    ///
    /// # Errors
    /// [`DirectoryError::NotReady`] when it is not ready in time, [`DirectoryError::ProvisionFailed`],
    /// [`DirectoryError::Unavailable`], [`DirectoryError::Other`].
    fn provision(
        &self,
        key: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<Placement, DirectoryError>> + Send;

    /// Repairs the tenant's schema additively towards its target (never destructive), recording
    /// each step as a correction with `error` as the reason. Serialized across processes.
    /// `seen_at`: when the error was seen.
    ///
    /// # Errors
    /// [`DirectoryError::UnknownTenant`] (dropped meanwhile), [`DirectoryError::RepairFailed`],
    /// [`DirectoryError::Unavailable`].
    fn repair(
        &self,
        key: &str,
        error: &str,
        seen_at: SystemTime,
    ) -> impl Future<Output = Result<Repair, DirectoryError>> + Send;

    /// Tenant ids ([`Placement::tenant_id`]) whose placement or credentials changed (moved,
    /// dropped, password rotated), as they are announced, or `*` for all; the router forgets the
    /// keys placed there. Ids, not keys: the announcements travel through the catalog database,
    /// and keys are the application's user ids. `None` when the directory cannot announce changes
    /// (the router then relies on its TTL alone).
    fn changes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        None
    }
}

//! pgfleet gives every tenant of an application a PostgreSQL database (or schema) of its own and keeps
//! the fleet provisioned, migrated, verified, routed, healed and visible.
//!
//! Applications use [`Fleet`]: built from the same configuration as the `pgfleet` CLI (catalog URL,
//! master key), it provisions tenants exactly once and hands out pooled connections running as
//! each tenant's own role (schema tenants share connections of the fleet's pool role, switched to
//! the tenant on checkout), with no catalog query or schema check per request once warm, and repairs a
//! tenant whose table went missing before retrying once.
//!
//! ```no_run
//! use pgfleet::{Fleet, RouterOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // PGFLEET_CATALOG_URL and PGFLEET_MASTER_KEY (or pgfleet.toml), as for the CLI.
//! let fleet = Fleet::from_env(RouterOptions::default()).await?;
//! fleet.provision("user-42").await?; // idempotent: the same key is always the same tenant
//!
//! // A pooled connection as the tenant's own role, search_path set: plain SQL.
//! let client = fleet.client("user-42").await?;
//! let rows = client.query("SELECT id, title FROM chat_threads LIMIT 10", &[]).await?;
//! println!("{} threads on {} ({})", rows.len(), client.server(), client.database());
//! drop(client); // back to the pool
//!
//! // With healing: if the tenant lost a table, it is repaired (and recorded) and this runs again.
//! let n: i64 = fleet
//!     .with_tenant("user-42", |c| async move {
//!         Ok(c.query_one("SELECT count(*) FROM chat_messages", &[]).await?.get(0))
//!     })
//!     .await?;
//! println!("{n} messages");
//!
//! // Typed errors with questions.
//! match fleet.client("nobody").await {
//!     Err(e) if e.is_not_found() => println!("no such tenant"),
//!     Err(e) if e.is_unavailable() => println!("its server is down: {e}"),
//!     Err(e) if e.is_retryable() => println!("try again later: {e}"),
//!     _ => {}
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The facade also re-exports the parts: the control plane ([`control`]), the router ([`router`]),
//! the embedded PostgreSQL runtime ([`embedded`]), the schema core ([`schema`]), the PostgreSQL
//! driver ([`pg`]) and versioned migrations ([`migrate`]).
#![deny(missing_docs)]

use std::time::Duration;

/// The control plane (see [`pgfleet_control`]).
pub use pgfleet_control as control;
/// The embedded PostgreSQL runtime (see [`pgfleet_embedded`]).
pub use pgfleet_embedded as embedded;
/// Versioned migrations (see [`pgfleet_migrate`]).
pub use pgfleet_migrate as migrate;
/// The PostgreSQL driver (see [`pgfleet_pg`]).
pub use pgfleet_pg as pg;
/// The router (see [`pgfleet_router`]).
pub use pgfleet_router as router;
pub use pgfleet_router::{DirectoryError, RouterError, RouterOptions, TenantClient, UnknownPolicy};
/// The schema core (see [`pgfleet_schema`]).
pub use pgfleet_schema as schema;

use std::sync::Arc;

use pgfleet_control::config::{Config, Settings};
use pgfleet_control::provision::CreateOptions;
use pgfleet_control::tenant::Tenant;
use pgfleet_control::{Control, ControlError};
use pgfleet_router::Router;

/// The fleet, as an application sees it: provisioning and routed, pooled, healed connections.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct Fleet {
    control: Control,
    router: Router<Control>,
    /// Keeps the cache in step with the fleet's other processes while a clone lives.
    _bus: Option<Arc<pgfleet_control::cache_bus::Bus>>,
}

impl Fleet {
    /// Connects to the catalog of `config` and starts a router with `options` (on the current Tokio
    /// runtime).
    ///
    /// # Errors
    /// The catalog cannot be reached or is not initialized.
    pub async fn connect(config: Config, options: RouterOptions) -> Result<Self, ControlError> {
        let control = Control::connect(config).await?;
        let router = Router::new(control.clone(), options);
        let bus = router.cache().enabled().then(|| {
            Arc::new(pgfleet_control::cache_bus::spawn(
                control.config().catalog_url.clone(),
                router.cache().clone(),
            ))
        });
        Ok(Self {
            control,
            router,
            _bus: bus,
        })
    }

    /// As [`Fleet::connect`], with the configuration from the environment and `pgfleet.toml`,
    /// as the CLI reads it (`PGFLEET_CATALOG_URL`, `PGFLEET_MASTER_KEY`, …).
    ///
    /// # Errors
    /// Missing or invalid configuration; as [`Fleet::connect`].
    pub async fn from_env(options: RouterOptions) -> Result<Self, ControlError> {
        let config = Config::resolve(Settings::default(), |k| std::env::var(k).ok(), None)?;
        Self::connect(config, options).await
    }

    /// Creates tenant `key` in the default mode (or finds it) and waits until it is ready and
    /// verified, at most 5 minutes. Idempotent and safe under any concurrency.
    ///
    /// # Errors
    /// See [`Control::provision`].
    pub async fn provision(&self, key: &str) -> Result<Tenant, ControlError> {
        self.provision_with(key, &CreateOptions::default(), Duration::from_secs(300))
            .await
    }

    /// As [`Fleet::provision`], with options (mode, server) and a timeout.
    ///
    /// # Errors
    /// See [`Control::provision`].
    pub async fn provision_with(
        &self,
        key: &str,
        options: &CreateOptions,
        timeout: Duration,
    ) -> Result<Tenant, ControlError> {
        self.control.provision(key, options, timeout).await
    }

    /// A pooled connection to tenant `key`, as its own role with its `search_path`.
    ///
    /// # Errors
    /// See [`Router::client`].
    pub async fn client(&self, key: &str) -> Result<TenantClient, RouterError> {
        self.router.client(key).await
    }

    /// Runs `f` with a connection to tenant `key`; repairs the tenant and runs `f` once more when
    /// its schema misses a table, column or schema. See [`Router::with_tenant`].
    ///
    /// # Errors
    /// See [`Router::with_tenant`].
    pub async fn with_tenant<T, F, Fut>(&self, key: &str, f: F) -> Result<T, RouterError>
    where
        F: FnMut(TenantClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    {
        self.router.with_tenant(key, f).await
    }

    /// Runs `f` in one transaction on tenant `key` and commits; runs it again when it did not
    /// commit for a transient reason (serialization failure, deadlock, a connection that broke
    /// before `COMMIT`), with a growing wait, and once after a repair. See
    /// [`Router::transaction`].
    ///
    /// # Errors
    /// See [`Router::transaction`]; [`RouterError::OutcomeUnknown`] when the connection broke
    /// after `COMMIT` was sent.
    pub async fn transaction<T, F>(&self, key: &str, f: F) -> Result<T, RouterError>
    where
        F: for<'c> FnMut(&'c TenantClient) -> pgfleet_router::TransactionFuture<'c, T>,
    {
        self.router.transaction(key, f).await
    }

    /// Runs one statement on tenant `key` through the result cache: a read marked with a leading
    /// `/* pgfleet:cache max-age=30 */` comment (or reading only the tables of
    /// [`CacheOptions::tables`](pgfleet_router::cache::CacheOptions::tables)) is answered from
    /// memory while fresh; a write run here drops the cached results it made stale, in this
    /// process at once and in the fleet's other processes shortly after. Parameters and results
    /// are PostgreSQL text. See [`Router::query_cached`].
    ///
    /// ```no_run
    /// # async fn f(fleet: pgfleet::Fleet) -> Result<(), pgfleet::RouterError> {
    /// let (threads, status) = fleet
    ///     .query_cached("user-42", "/* pgfleet:cache max-age=30 */ SELECT id, title FROM chat_threads ORDER BY id", &[])
    ///     .await?;
    /// println!("{} threads ({})", threads.rows.len(), status.as_str());
    /// fleet.query_cached("user-42", "INSERT INTO chat_threads (title) VALUES ($1)", &[Some("new")]).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// See [`Router::run`].
    pub async fn query_cached(
        &self,
        key: &str,
        sql: &str,
        params: &[Option<&str>],
    ) -> Result<
        (
            Arc<pgfleet_router::wire::TextResult>,
            pgfleet_router::cache::CacheStatus,
        ),
        RouterError,
    > {
        self.router.query_cached(key, sql, params).await
    }

    /// The control plane.
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// The router.
    pub fn router(&self) -> &Router<Control> {
        &self.router
    }
}

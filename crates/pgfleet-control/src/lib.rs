//! pgfleet's control plane (the cold path): the catalog, servers and placement, exactly-once tenant
//! provisioning with verified schemas, and sealed credentials.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use pgfleet_control::{Control, config::Config, secrets::MasterKey, provision::CreateOptions};
//!
//! let config = Config::new("postgres://postgres:secret@127.0.0.1:54320/pgfleet", MasterKey::generate()?);
//! let target = pgfleet_migrate::MigrationDir::load("migrations".as_ref())?;
//! pgfleet_control::catalog::init(&pgfleet_pg::connect::parse_url(&config.catalog_url)?, Some(&target)).await?;
//! let control = Control::connect(config).await?;
//! control.add_server("local", "postgres://postgres:secret@127.0.0.1:54320/postgres", 1000, 1).await?;
//! // The same key always yields the same tenant, however many callers race.
//! let tenant = control.provision("user-42", &CreateOptions::default(), std::time::Duration::from_secs(60)).await?;
//! assert_eq!(tenant.state, pgfleet_control::tenant::State::Ready);
//! # Ok(()) }
//! ```
//!
//! Every pgfleet process is stateless: all state lives in the catalog and all coordination goes
//! through it (unique keys, `FOR UPDATE SKIP LOCKED` with leases, advisory locks), so any number of
//! processes can create tenants and run the provisioning work.
#![deny(missing_docs)]

pub mod browse;
pub mod cache_bus;
pub mod catalog;
pub mod config;
mod connections;
mod ddl;
pub mod diagnose;
pub mod directory;
pub mod error;
pub use catalog::events;
mod extensions;
pub mod fleet;
pub mod health;
pub mod keys;
mod owner;
mod pool;
mod pool_role;
pub mod provision;
pub mod secrets;
pub mod security;
pub mod server;
pub mod sessions;
pub mod spares;
pub mod tenant;
pub mod tokens;
mod verify;
pub mod worker;

use std::collections::HashMap;
use std::sync::Arc;

use pgfleet_pg::connect;
use pgfleet_schema::Model;
use tokio_postgres::Client;

use crate::config::Config;
pub(crate) use crate::error::q;
pub use crate::error::{ControlError, chain};

/// A handle on the control plane: configuration plus a catalog connection. Cheap to share
/// (`Arc` inside); every long operation opens connections of its own.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    catalog: std::sync::RwLock<Arc<Client>>,
    /// A background reconnection of the catalog connection is running.
    reconnecting: std::sync::atomic::AtomicBool,
    worker: String,
    /// Target models by (server, target version and hash), built once per process in a shadow
    /// database (a version whose migrations were corrected before any tenant ran them is another).
    models: tokio::sync::Mutex<HashMap<(String, String), Arc<Model>>>,
    /// Tenants a task of this process works on (advisory locks are per session and re-entrant, so
    /// tasks of one process exclude each other here).
    working: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The catalog session holding this process's tenant locks.
    lock_conn: tokio::sync::Mutex<Option<Client>>,
    /// Idle connections by `catalog`, `server/database` or `owner:server/database`, handed back
    /// only by work that finished cleanly (so never inside a transaction).
    idle: pool::IdlePool,
    /// Whether this process tops spare schemas up after schema-mode tenants ([`Control::keep_spares`]).
    keep_spares: std::sync::atomic::AtomicBool,
    /// Servers whose spares a task of this process is refilling.
    refilling: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Set on shutdown: claim no new operations ([`Control::stop_taking_work`]).
    stopping: std::sync::atomic::AtomicBool,
    /// Servers whose shared tenant database this process created or checked (and locked down).
    shared_ready: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The fleet's owner role of each server this process made sure of ([`owner`]).
    owners: std::sync::Mutex<HashMap<String, owner::Owner>>,
    /// Held while one task of this process makes sure of an owner role.
    owner_lock: tokio::sync::Mutex<()>,
    /// The pool role of each server this process made sure of ([`pool_role`]).
    pool_roles: std::sync::Mutex<HashMap<String, pool_role::PoolRole>>,
}

/// Most idle connections kept per catalog or server database.
const IDLE_PER_KEY: usize = 4;
/// Most idle connections kept in all.
const IDLE_TOTAL: usize = 32;

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("config", &self.inner.config)
            .field("worker", &self.inner.worker)
            .finish()
    }
}

impl Control {
    /// Connects to an initialized catalog.
    ///
    /// # Errors
    /// [`ControlError::NotInitialized`] when `pgfleet init` has not run (or is older).
    pub async fn connect(config: Config) -> Result<Self, ControlError> {
        let url = connect::parse_url(&config.catalog_url)?;
        let (catalog, _) = catalog::connect_catalog(&url, false).await?;
        catalog::check(&catalog).await?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let worker = format!("{}:{}", host.trim(), std::process::id());
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                catalog: std::sync::RwLock::new(Arc::new(catalog)),
                reconnecting: std::sync::atomic::AtomicBool::new(false),
                worker,
                models: tokio::sync::Mutex::new(HashMap::new()),
                working: std::sync::Mutex::new(Default::default()),
                lock_conn: tokio::sync::Mutex::new(None),
                idle: pool::IdlePool::new(IDLE_PER_KEY, IDLE_TOTAL),
                keep_spares: std::sync::atomic::AtomicBool::new(false),
                refilling: std::sync::Mutex::new(Default::default()),
                stopping: std::sync::atomic::AtomicBool::new(false),
                shared_ready: std::sync::Mutex::new(Default::default()),
                owners: std::sync::Mutex::new(HashMap::new()),
                owner_lock: tokio::sync::Mutex::new(()),
                pool_roles: std::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The shared catalog connection (single statements only; transactions use their own). When
    /// the connection was lost (the catalog restarted), a reconnection starts in the background;
    /// [`Control::ensure_catalog`] waits for one.
    pub fn catalog(&self) -> Arc<Client> {
        let current = self
            .inner
            .catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if current.is_closed()
            && !self
                .inner
                .reconnecting
                .swap(true, std::sync::atomic::Ordering::AcqRel)
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let this = self.clone();
            rt.spawn(async move {
                let _ = this.reconnect_catalog().await;
            });
        }
        current
    }

    /// Makes sure the shared catalog connection is open, reconnecting when it was lost.
    ///
    /// # Errors
    /// When the catalog cannot be reached.
    pub async fn ensure_catalog(&self) -> Result<(), ControlError> {
        let closed = self
            .inner
            .catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_closed();
        if closed {
            self.reconnect_catalog().await?;
        }
        Ok(())
    }

    async fn reconnect_catalog(&self) -> Result<(), ControlError> {
        let result = self.catalog_connection().await;
        self.inner
            .reconnecting
            .store(false, std::sync::atomic::Ordering::Release);
        let client = result?;
        tracing::info!("reconnected to the catalog");
        *self
            .inner
            .catalog
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(client);
        Ok(())
    }

    /// This process's lock session: the catalog connection whose session advisory locks say "this
    /// process is alive and works on it" (PostgreSQL releases them when the process dies), held
    /// while the guard lives. Reconnects when it was lost (its locks are gone with it then).
    ///
    /// # Errors
    /// When the catalog cannot be reached.
    pub(crate) async fn lock_session(
        &self,
    ) -> Result<tokio::sync::MappedMutexGuard<'_, Client>, ControlError> {
        let mut guard = self.inner.lock_conn.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = Some(self.catalog_connection().await?);
        }
        tokio::sync::MutexGuard::try_map(guard, Option::as_mut).map_err(|_| {
            ControlError::TaskFailed {
                what: "the lock session",
                reason: "its connection vanished".into(),
            }
        })
    }

    /// An idle connection for `key`, if one is open.
    pub(crate) fn take_idle(&self, key: &str) -> Option<Client> {
        self.inner.idle.take(key)
    }

    /// Hands a connection back for reuse (only when it is not inside a transaction).
    pub(crate) fn put_idle(&self, key: &str, client: Client) {
        self.inner.idle.put(key, client);
    }

    /// A catalog connection for a transaction: an idle one or a new one. Hand it back with
    /// `put_idle("catalog", …)` after the transaction ended.
    pub(crate) async fn catalog_for_tx(&self) -> Result<Client, ControlError> {
        match self.take_idle("catalog") {
            Some(c) => Ok(c),
            None => self.catalog_connection().await,
        }
    }

    /// A new connection to the catalog, for transactions and long work.
    ///
    /// # Errors
    /// When the catalog cannot be reached.
    pub async fn catalog_connection(&self) -> Result<Client, ControlError> {
        Ok(connect::connect(&connect::parse_url(&self.inner.config.catalog_url)?).await?)
    }

    /// Checks a server and records it.
    ///
    /// # Errors
    /// Unreachable server, missing rights or extensions (every problem listed), duplicate name.
    pub async fn add_server(
        &self,
        name: &str,
        url: &str,
        capacity: i32,
        weight: i32,
    ) -> Result<server::ServerCheck, ControlError> {
        let key = self.inner.config.master_key()?;
        self.check_master_key().await?;
        let needs_vector = match catalog::current_target(&self.catalog()).await? {
            Some(t) => t.dir.migrations.iter().any(|m| {
                let lower = m.sql.to_ascii_lowercase();
                lower.contains("create extension") && lower.contains("vector")
            }),
            None => false,
        };
        let check = server::check_server(url, needs_vector).await?;
        if !check.problems.is_empty() {
            return Err(ControlError::UnusableServer {
                name: name.into(),
                url: connect::redact(url),
                problems: check.problems,
            });
        }
        server::insert(&self.catalog(), key, name, url, capacity, weight, &check).await?;
        Ok(check)
    }

    /// Every server.
    ///
    /// # Errors
    /// Catalog errors.
    pub async fn servers(&self) -> Result<Vec<server::ServerInfo>, ControlError> {
        server::list(&self.catalog()).await
    }

    /// Stops placing new tenants on a server (existing ones stay).
    ///
    /// # Errors
    /// Unknown server.
    pub async fn drain_server(&self, name: &str) -> Result<(), ControlError> {
        server::set_state(&self.catalog(), name, "draining").await
    }

    /// Places new tenants on a drained server again.
    ///
    /// # Errors
    /// Unknown server.
    pub async fn activate_server(&self, name: &str) -> Result<(), ControlError> {
        server::set_state(&self.catalog(), name, "active").await
    }
}

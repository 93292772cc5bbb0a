//! pgfleet's hot path: from a tenant key to a pooled connection authenticated as the tenant's own
//! role, with no catalog query and no statement on the way once warm.
//!
//! - **Routing snapshot**: placements (server, database, schema, credentials) come from a
//!   [`Directory`] (the control plane) on first use and are kept per key. Changes announced by the
//!   directory (a tenant dropped, moved, its password rotated) drop the entry and its idle
//!   connections; entries older than the TTL are re-read in the background while the old one keeps
//!   serving; a login refused for a bad password or a missing database re-reads the entry at once.
//! - **Pools under a budget**: connections are opened lazily per tenant and kept idle for reuse.
//!   Every open connection of a server holds one permit of that server's budget, shared by all its
//!   tenants; a tenant that needs a connection when the budget is spent closes the longest-idle
//!   connection of another tenant, or waits (up to the acquire timeout) for one to come back. A
//!   per-tenant cap keeps one hot tenant from holding the whole budget. Idle connections close
//!   after the idle timeout.
//! - **Fail fast**: a server that refused a connection is considered down for a moment; its
//!   tenants get [`RouterError::is_unavailable`] at once instead of a timeout each.
//! - **Heal and retry** ([`Router::with_tenant`]): an `undefined_table`, `undefined_column` or
//!   `invalid_schema_name` error asks the directory to repair the tenant (one repair at a time per
//!   tenant in the process; the directory serializes processes), then runs the closure once more.
//!   A repair that finds nothing to do returns the original error, and the tenant is not repaired
//!   again for a cooldown, so a wrong query cannot start a repair storm.

#![deny(missing_docs)]

pub mod directory;

use std::collections::HashMap;
use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};

pub use directory::{Directory, Placement, Repair};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_postgres::Client;

/// What to do with a key no ready tenant has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownPolicy {
    /// Fail with [`RouterError::TenantNotFound`] (the default).
    Reject,
    /// Provision the tenant and wait for it to be ready, at most this long.
    Provision(Duration),
}

/// How the router pools and routes.
#[derive(Clone)]
pub struct RouterOptions {
    /// Open connections per server, all its tenants together.
    pub budget_per_server: usize,
    /// Connections one tenant may hold at once.
    pub per_tenant: usize,
    /// How long [`Router::client`] waits for a connection.
    pub acquire_timeout: Duration,
    /// Connect timeout of a new connection.
    pub connect_timeout: Duration,
    /// Idle connections close after this.
    pub idle_timeout: Duration,
    /// Placements are re-read in the background after this.
    pub ttl: Duration,
    /// Keys without a ready tenant.
    pub unknown: UnknownPolicy,
    /// A database used for keys without a ready tenant, only when set: each use is logged at
    /// warn with the key, counted (`pgfleet_router_fallback_total`) and visible on the client.
    pub fallback: Option<tokio_postgres::Config>,
    /// After a repair that found nothing to do, the tenant is not repaired again for this long.
    pub repair_cooldown: Duration,
    /// After a server refused a connection, its tenants fail fast for this long.
    pub down_for: Duration,
}

impl Default for RouterOptions {
    fn default() -> Self {
        Self {
            budget_per_server: 20,
            per_tenant: 5,
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            ttl: Duration::from_secs(60),
            unknown: UnknownPolicy::Reject,
            fallback: None,
            repair_cooldown: Duration::from_secs(30),
            down_for: Duration::from_secs(1),
        }
    }
}

impl std::fmt::Debug for RouterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterOptions")
            .field("budget_per_server", &self.budget_per_server)
            .field("per_tenant", &self.per_tenant)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("ttl", &self.ttl)
            .field("unknown", &self.unknown)
            .field("fallback", &self.fallback.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a tenant could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    /// No ready tenant has this key (and the policy is to reject it).
    #[error(
        "no ready tenant with key {0:?}: create it with `pgfleet tenant create KEY` (or `Fleet::provision`)"
    )]
    TenantNotFound(String),
    /// The tenant's server did not answer.
    #[error("tenant {key:?} is unavailable: server {server:?}: {cause}")]
    Unavailable {
        /// The key.
        key: String,
        /// Its server.
        server: String,
        /// What failed.
        cause: String,
    },
    /// No connection within the acquire timeout (the budget or the tenant's cap is in use).
    #[error(
        "tenant {key:?}: no connection within {waited:?} ({why}); raise the budget or the acquire timeout, or hold connections for less time"
    )]
    Timeout {
        /// The key.
        key: String,
        /// How long it waited.
        waited: Duration,
        /// What it waited for.
        why: &'static str,
    },
    /// The tenant's query failed.
    #[error("tenant {key:?}: {}{}", pgfleet_describe(source), if *healed { " (after a repair and one retry)" } else { "" })]
    Query {
        /// The key.
        key: String,
        /// PostgreSQL's error.
        #[source]
        source: tokio_postgres::Error,
        /// A repair ran before this attempt.
        healed: bool,
    },
    /// The query failed with an error a repair should fix, and the repair failed.
    #[error(
        "tenant {key:?}: {}; repairing the schema failed: {repair}",
        pgfleet_describe(source)
    )]
    RepairFailed {
        /// The key.
        key: String,
        /// The original error.
        #[source]
        source: tokio_postgres::Error,
        /// Why the repair failed.
        repair: String,
    },
    /// The directory (the catalog) could not be read.
    #[error("tenant {key:?}: reading its placement: {cause}")]
    Directory {
        /// The key.
        key: String,
        /// What failed.
        cause: String,
    },
}

fn pgfleet_describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => e.to_string(),
    }
}

impl RouterError {
    /// No tenant with this key.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::TenantNotFound(_))
    }

    /// The tenant's server could not be reached.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// No connection in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// A repair ran (and the operation was retried) before this error.
    pub fn healed(&self) -> bool {
        matches!(self, Self::Query { healed: true, .. })
    }

    /// PostgreSQL's error, when the query itself failed.
    pub fn db_error(&self) -> Option<&tokio_postgres::error::DbError> {
        match self {
            Self::Query { source, .. } | Self::RepairFailed { source, .. } => source.as_db_error(),
            _ => None,
        }
    }
}

/// SQLSTATEs that mean "the tenant's schema misses something": `undefined_table`,
/// `undefined_column`, `invalid_schema_name`.
pub fn is_healable(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|d| matches!(d.code().code(), "42P01" | "42703" | "3F000"))
}

/// An idle connection and since when. Its permit of the server's budget is held by its connection
/// task, until the server has closed it.
type IdleConn = (Instant, Client);

/// One server's connections: its budget, and its tenants' idle connections.
struct ServerPool {
    name: String,
    budget: Arc<Semaphore>,
    /// Idle connections by tenant key, oldest first.
    idle: Mutex<HashMap<String, Vec<IdleConn>>>,
    /// Signalled when a connection goes back to idle or closes.
    changed: Notify,
    /// Until when the server is considered down, and why.
    down: Mutex<Option<(Instant, String)>>,
    open: AtomicUsize,
}

impl ServerPool {
    fn take_idle(&self, key: &str) -> Option<Client> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(key)?;
        while let Some((_, c)) = list.pop() {
            if !c.is_closed() {
                return Some(c);
            }
        }
        None
    }

    /// Closes the longest-idle connection of another tenant; whether one was closed.
    fn evict_other(&self, key: &str) -> bool {
        let victim = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let oldest = idle
                .iter()
                .filter(|(k, v)| k.as_str() != key && !v.is_empty())
                .min_by_key(|(_, v)| v[0].0)
                .map(|(k, _)| k.clone());
            oldest.and_then(|k| {
                let list = idle.get_mut(&k)?;
                let v = list.remove(0);
                if list.is_empty() {
                    idle.remove(&k);
                }
                Some(v)
            })
        };
        victim.is_some()
    }

    /// Closes idle connections older than `max`.
    fn reap(&self, max: Duration) -> usize {
        let mut closed = Vec::new();
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            for list in idle.values_mut() {
                while list.first().is_some_and(|(t, _)| t.elapsed() > max) {
                    closed.push(list.remove(0));
                }
            }
            idle.retain(|_, v| !v.is_empty());
        }
        let n = closed.len();
        drop(closed);
        n
    }

    fn drop_idle_of(&self, key: &str) {
        let gone = self
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        drop(gone);
    }

    fn down_reason(&self) -> Option<String> {
        let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
        match &*down {
            Some((until, why)) if Instant::now() < *until => Some(why.clone()),
            Some(_) => {
                *down = None;
                None
            }
            None => None,
        }
    }

    fn mark_down(&self, why: String, for_: Duration) {
        *self.down.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now() + for_, why));
    }

    /// A permit of the budget: free, or freed by closing another tenant's idle connection (the
    /// permit comes back once the server has closed it, so `pg_stat_activity` never shows more
    /// than the budget), or waited for until `deadline`. `Err` on timeout.
    ///
    /// Waiters queue on the semaphore, first come first served: a freed permit goes to the
    /// longest waiter, so no tenant loses every race to the others (a CI run saw a hot tenant time
    /// out after 10 s when every waiter was woken to race for each permit). A waiter closes
    /// another tenant's idle connection when it starts waiting and whenever the pool changes.
    async fn permit(
        &self,
        key: &str,
        deadline: tokio::time::Instant,
    ) -> Result<OwnedSemaphorePermit, ()> {
        if let Ok(p) = self.budget.clone().try_acquire_owned() {
            return Ok(p);
        }
        let acquire = self.budget.clone().acquire_owned();
        tokio::pin!(acquire);
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            self.evict_other(key);
            tokio::select! {
                biased;
                p = &mut acquire => return Ok(p.expect("the budget is never closed")),
                () = &mut changed => {}
                () = tokio::time::sleep_until(deadline) => return Err(()),
            }
        }
    }
}

/// A tenant as the router knows it.
struct Entry {
    placement: Placement,
    fetched: Instant,
    cap: Arc<Semaphore>,
    server: Arc<ServerPool>,
    /// One repair at a time; when the last one found nothing to do.
    repair: tokio::sync::Mutex<Option<Instant>>,
    /// Bumped by each repair that changed something.
    repairs: AtomicU64,
    refreshing: AtomicBool,
    /// Dropped from the snapshot: its connections are not reused.
    stale: AtomicBool,
    fallback: bool,
}

struct Inner<D> {
    directory: D,
    opts: RouterOptions,
    tenants: RwLock<HashMap<String, Arc<Entry>>>,
    servers: Mutex<HashMap<String, Arc<ServerPool>>>,
}

/// Routes tenant keys to pooled connections. Cheap to clone (an `Arc` inside).
pub struct Router<D: Directory> {
    inner: Arc<Inner<D>>,
}

impl<D: Directory> Clone for Router<D> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<D: Directory> std::fmt::Debug for Router<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("opts", &self.inner.opts)
            .field(
                "tenants",
                &self
                    .inner
                    .tenants
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .len(),
            )
            .finish_non_exhaustive()
    }
}

/// A pooled connection to one tenant, as its own role with its `search_path`. Dereferences to a
/// [`tokio_postgres::Client`]; dropping it returns the connection to the pool.
pub struct TenantClient {
    client: Option<Client>,
    entry: Arc<Entry>,
    _cap: OwnedSemaphorePermit,
}

impl TenantClient {
    /// The tenant's key.
    pub fn key(&self) -> &str {
        &self.entry.placement.key
    }
    /// The server that serves it.
    pub fn server(&self) -> &str {
        &self.entry.placement.server
    }
    /// Its database.
    pub fn database(&self) -> &str {
        &self.entry.placement.database
    }
    /// Its schema (`public` in database mode).
    pub fn schema(&self) -> &str {
        &self.entry.placement.schema
    }
    /// `database` or `schema`.
    pub fn mode(&self) -> &str {
        &self.entry.placement.mode
    }
    /// Served by the configured fallback database, not by the tenant's own.
    pub fn is_fallback(&self) -> bool {
        self.entry.fallback
    }
}

impl Deref for TenantClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until drop")
    }
}

impl std::fmt::Debug for TenantClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantClient")
            .field("key", &self.key())
            .field("server", &self.server())
            .field("database", &self.database())
            .field("fallback", &self.is_fallback())
            .finish_non_exhaustive()
    }
}

impl Drop for TenantClient {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let pool = &self.entry.server;
        if client.is_closed() || self.entry.stale.load(Ordering::Relaxed) {
            drop(client); // its connection task gives the permit back once the server closed it
        } else {
            pool.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(self.entry.placement.key.clone())
                .or_default()
                .push((Instant::now(), client));
            pool.changed.notify_waiters();
        }
    }
}

impl<D: Directory> Router<D> {
    /// A router over `directory`. Spawns its housekeeping (idle reaper, change listener) on the
    /// current Tokio runtime.
    pub fn new(directory: D, opts: RouterOptions) -> Self {
        let changes = directory.changes();
        let inner = Arc::new(Inner {
            directory,
            opts,
            tenants: RwLock::new(HashMap::new()),
            servers: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&inner);
        tokio::spawn(reaper(weak.clone()));
        if let Some(mut rx) = changes {
            tokio::spawn(async move {
                while let Some(id) = rx.recv().await {
                    let Some(inner) = weak.upgrade() else { return };
                    // Announcements name tenant ids (never keys): forget the keys placed there.
                    let keys: Vec<String> = inner
                        .tenants
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .filter(|(_, e)| id == "*" || e.placement.tenant_id == id)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in keys {
                        forget(&inner, &k);
                    }
                }
            });
        }
        Self { inner }
    }

    /// The directory.
    pub fn directory(&self) -> &D {
        &self.inner.directory
    }

    /// Forgets a key: its entry and its idle connections (in-use ones close when returned).
    pub fn forget(&self, key: &str) {
        forget(&self.inner, key);
    }

    /// Open connections per server (in use and idle).
    pub fn open_connections(&self) -> HashMap<String, usize> {
        self.inner
            .servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, s)| (k.clone(), s.open.load(Ordering::Relaxed)))
            .collect()
    }

    fn server(&self, name: &str) -> Arc<ServerPool> {
        let mut servers = self.inner.servers.lock().unwrap_or_else(|e| e.into_inner());
        servers
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(ServerPool {
                    name: name.to_string(),
                    budget: Arc::new(Semaphore::new(self.inner.opts.budget_per_server.max(1))),
                    idle: Mutex::new(HashMap::new()),
                    changed: Notify::new(),
                    down: Mutex::new(None),
                    open: AtomicUsize::new(0),
                })
            })
            .clone()
    }

    fn insert(&self, placement: Placement, fallback: bool) -> Arc<Entry> {
        let server = self.server(&placement.server);
        let entry = Arc::new(Entry {
            cap: Arc::new(Semaphore::new(self.inner.opts.per_tenant.max(1))),
            server,
            fetched: Instant::now(),
            repair: tokio::sync::Mutex::new(None),
            repairs: AtomicU64::new(0),
            refreshing: AtomicBool::new(false),
            stale: AtomicBool::new(false),
            fallback,
            placement,
        });
        let old = self
            .inner
            .tenants
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.placement.key.clone(), entry.clone());
        if let Some(old) = old
            && !Arc::ptr_eq(&old, &entry)
        {
            old.stale.store(true, Ordering::Relaxed);
            old.server.drop_idle_of(&old.placement.key);
        }
        entry
    }

    /// The entry of `key`: from the snapshot (re-read in the background when older than the
    /// TTL), else from the directory.
    async fn entry(&self, key: &str) -> Result<Arc<Entry>, RouterError> {
        let cached = self
            .inner
            .tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned();
        if let Some(e) = cached {
            if e.fetched.elapsed() > self.inner.opts.ttl
                && !e.fallback
                && !e.refreshing.swap(true, Ordering::Relaxed)
            {
                let this = self.clone();
                let key = key.to_string();
                tokio::spawn(async move {
                    match this.inner.directory.lookup(&key).await {
                        Ok(Some(p)) => {
                            this.insert(p, false);
                        }
                        Ok(None) => this.forget(&key),
                        Err(e) => {
                            tracing::warn!(tenant = %key, "re-reading the placement: {e}");
                            if let Some(cur) = this
                                .inner
                                .tenants
                                .read()
                                .unwrap_or_else(|e| e.into_inner())
                                .get(&key)
                            {
                                cur.refreshing.store(false, Ordering::Relaxed);
                            }
                        }
                    }
                });
            }
            return Ok(e);
        }
        self.load(key).await
    }

    async fn load(&self, key: &str) -> Result<Arc<Entry>, RouterError> {
        let found =
            self.inner
                .directory
                .lookup(key)
                .await
                .map_err(|cause| RouterError::Directory {
                    key: key.into(),
                    cause,
                })?;
        let placement = match (found, self.inner.opts.unknown) {
            (Some(p), _) => p,
            (None, UnknownPolicy::Provision(timeout)) => self
                .inner
                .directory
                .provision(key, timeout)
                .await
                .map_err(|cause| RouterError::Directory {
                    key: key.into(),
                    cause,
                })?,
            (None, UnknownPolicy::Reject) => match &self.inner.opts.fallback {
                Some(config) => {
                    metrics::counter!("pgfleet_router_fallback_total").increment(1);
                    tracing::warn!(tenant = %key, "no ready tenant with this key: serving it from the configured fallback database");
                    return Ok(self.fallback_entry(key, config.clone()));
                }
                None => return Err(RouterError::TenantNotFound(key.into())),
            },
        };
        Ok(self.insert(placement, false))
    }

    fn fallback_entry(&self, key: &str, config: tokio_postgres::Config) -> Arc<Entry> {
        let placement = Placement {
            key: key.to_string(),
            tenant_id: String::new(),
            server: "(fallback)".into(),
            mode: "fallback".into(),
            database: config.get_dbname().unwrap_or_default().to_string(),
            schema: String::new(),
            config,
            version: None,
        };
        // Not kept in the snapshot: every use goes through the warning again.
        Arc::new(Entry {
            cap: Arc::new(Semaphore::new(self.inner.opts.per_tenant.max(1))),
            server: self.server("(fallback)"),
            fetched: Instant::now(),
            repair: tokio::sync::Mutex::new(None),
            repairs: AtomicU64::new(0),
            refreshing: AtomicBool::new(false),
            stale: AtomicBool::new(false),
            fallback: true,
            placement,
        })
    }

    /// A pooled connection to tenant `key`, as its own role with its `search_path`.
    ///
    /// # Errors
    /// [`RouterError::TenantNotFound`], [`RouterError::Unavailable`], [`RouterError::Timeout`],
    /// [`RouterError::Directory`].
    pub async fn client(&self, key: &str) -> Result<TenantClient, RouterError> {
        let entry = self.entry(key).await?;
        match self.acquire(&entry).await {
            Err(Retry::Reload(why)) => {
                // The password was rotated or the tenant moved or was dropped: read it again.
                tracing::debug!(tenant = %key, "login refused ({why}): re-reading the placement");
                self.forget(key);
                let entry = self.load(key).await?;
                self.acquire(&entry).await.map_err(|r| match r {
                    Retry::Reload(cause) | Retry::Fail(RouterError::Unavailable { cause, .. }) => {
                        RouterError::Unavailable {
                            key: key.into(),
                            server: entry.placement.server.clone(),
                            cause,
                        }
                    }
                    Retry::Fail(e) => e,
                })
            }
            Err(Retry::Fail(e)) => Err(e),
            Ok(c) => Ok(c),
        }
    }

    async fn acquire(&self, entry: &Arc<Entry>) -> Result<TenantClient, Retry> {
        let p = &entry.placement;
        let span = tracing::debug_span!("tenant", key = %p.key, server = %p.server, database = %p.database, mode = %p.mode);
        tracing::Instrument::instrument(self.acquire_in_span(entry), span).await
    }

    async fn acquire_in_span(&self, entry: &Arc<Entry>) -> Result<TenantClient, Retry> {
        let p = &entry.placement;
        let opts = &self.inner.opts;
        let deadline = tokio::time::Instant::now() + opts.acquire_timeout;
        let timeout = |why| {
            Retry::Fail(RouterError::Timeout {
                key: p.key.clone(),
                waited: opts.acquire_timeout,
                why,
            })
        };
        let cap = tokio::time::timeout_at(deadline, entry.cap.clone().acquire_owned())
            .await
            .map_err(|_| timeout("the tenant's connections are all in use"))?
            .expect("never closed");
        let pool = &entry.server;
        if let Some(c) = pool.take_idle(&p.key) {
            return Ok(TenantClient {
                client: Some(c),
                entry: entry.clone(),
                _cap: cap,
            });
        }
        if let Some(why) = pool.down_reason() {
            return Err(Retry::Fail(RouterError::Unavailable {
                key: p.key.clone(),
                server: p.server.clone(),
                cause: why,
            }));
        }
        let permit = pool
            .permit(&p.key, deadline)
            .await
            .map_err(|()| timeout("the server's connection budget is in use"))?;
        // Another task may have returned one meanwhile.
        if let Some(c) = pool.take_idle(&p.key) {
            drop(permit);
            pool.changed.notify_waiters();
            return Ok(TenantClient {
                client: Some(c),
                entry: entry.clone(),
                _cap: cap,
            });
        }
        match tokio::time::timeout(opts.connect_timeout, open(&p.config)).await {
            Ok(Ok((client, connection))) => {
                pool.open.fetch_add(1, Ordering::Relaxed);
                let pool = Arc::downgrade(pool);
                tokio::spawn(async move {
                    let _ = connection.await;
                    // The server has closed it: its backend has left pg_stat_activity.
                    drop(permit);
                    if let Some(pool) = pool.upgrade() {
                        pool.open.fetch_sub(1, Ordering::Relaxed);
                        pool.changed.notify_waiters();
                    }
                });
                Ok(TenantClient {
                    client: Some(client),
                    entry: entry.clone(),
                    _cap: cap,
                })
            }
            Ok(Err(e)) => {
                let code = e.as_db_error().map(|d| d.code().code().to_string());
                match code.as_deref() {
                    // Bad password (rotated), no such role or database (dropped or moved).
                    Some("28P01" | "28000" | "3D000") if !entry.fallback => {
                        Err(Retry::Reload(pgfleet_describe(&e)))
                    }
                    Some(_) => Err(Retry::Fail(RouterError::Unavailable {
                        key: p.key.clone(),
                        server: p.server.clone(),
                        cause: pgfleet_describe(&e),
                    })),
                    None => {
                        let why = format!("cannot connect: {e}");
                        pool.mark_down(why.clone(), opts.down_for);
                        Err(Retry::Fail(RouterError::Unavailable {
                            key: p.key.clone(),
                            server: p.server.clone(),
                            cause: why,
                        }))
                    }
                }
            }
            Err(_) => {
                let why = format!("no answer within {:?}", opts.connect_timeout);
                pool.mark_down(why.clone(), opts.down_for);
                Err(Retry::Fail(RouterError::Unavailable {
                    key: p.key.clone(),
                    server: p.server.clone(),
                    cause: why,
                }))
            }
        }
    }

    /// Runs `f` with a connection to tenant `key`. When it fails because the tenant's schema
    /// misses a table, column or schema, the tenant is repaired and `f` runs once more (see the
    /// crate documentation).
    ///
    /// # Errors
    /// As [`Router::client`]; [`RouterError::Query`] with the error of the last attempt
    /// ([`RouterError::healed`] tells whether a repair ran); [`RouterError::RepairFailed`].
    pub async fn with_tenant<T, F, Fut>(&self, key: &str, mut f: F) -> Result<T, RouterError>
    where
        F: FnMut(TenantClient) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let entry = self.entry(key).await?;
        let generation = entry.repairs.load(Ordering::Acquire);
        let seen = SystemTime::now();
        let client = self.client(key).await?;
        let error = match f(client).await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !is_healable(&error) || entry.fallback {
            return Err(RouterError::Query {
                key: key.into(),
                source: error,
                healed: false,
            });
        }
        match self.heal(&entry, generation, &error, seen).await {
            Healing::Retry => {
                let client = self.client(key).await?;
                f(client).await.map_err(|source| RouterError::Query {
                    key: key.into(),
                    source,
                    healed: true,
                })
            }
            Healing::NotHealed => Err(RouterError::Query {
                key: key.into(),
                source: error,
                healed: false,
            }),
            Healing::Failed(repair) => Err(RouterError::RepairFailed {
                key: key.into(),
                source: error,
                repair,
            }),
        }
    }

    async fn heal(
        &self,
        entry: &Arc<Entry>,
        generation: u64,
        error: &tokio_postgres::Error,
        seen: SystemTime,
    ) -> Healing {
        let mut last_empty = entry.repair.lock().await;
        if entry.repairs.load(Ordering::Acquire) != generation {
            return Healing::Retry; // repaired while this task waited
        }
        if last_empty.is_some_and(|t| t.elapsed() < self.inner.opts.repair_cooldown) {
            return Healing::NotHealed;
        }
        let key = &entry.placement.key;
        let started = Instant::now();
        match self
            .inner
            .directory
            .repair(key, &pgfleet_describe(error), seen)
            .await
        {
            Ok(r) if !r.applied.is_empty() || r.repaired_elsewhere => {
                entry.repairs.fetch_add(1, Ordering::Release);
                metrics::counter!("pgfleet_router_repairs_total", "outcome" => "repaired")
                    .increment(1);
                tracing::info!(
                    tenant = %key,
                    repaired = ?r.applied,
                    elsewhere = r.repaired_elsewhere,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "repaired the tenant's schema after: {}",
                    pgfleet_describe(error)
                );
                Healing::Retry
            }
            Ok(_) => {
                *last_empty = Some(Instant::now());
                metrics::counter!("pgfleet_router_repairs_total", "outcome" => "nothing")
                    .increment(1);
                Healing::NotHealed
            }
            Err(e) => {
                *last_empty = Some(Instant::now());
                metrics::counter!("pgfleet_router_repairs_total", "outcome" => "failed")
                    .increment(1);
                Healing::Failed(e)
            }
        }
    }
}

enum Retry {
    /// The login was refused in a way a fresh placement may fix.
    Reload(String),
    Fail(RouterError),
}

enum Healing {
    Retry,
    NotHealed,
    Failed(String),
}

fn forget<D: Directory>(inner: &Inner<D>, key: &str) {
    let old = inner
        .tenants
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .remove(key);
    if let Some(old) = old {
        old.stale.store(true, Ordering::Relaxed);
        old.server.drop_idle_of(key);
    }
}

async fn reaper<D: Directory>(inner: Weak<Inner<D>>) {
    loop {
        let every = match inner.upgrade() {
            Some(i) => {
                (i.opts.idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(15))
            }
            None => return,
        };
        tokio::time::sleep(every).await;
        let Some(inner) = inner.upgrade() else { return };
        let servers: Vec<Arc<ServerPool>> = inner
            .servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for s in servers {
            let n = s.reap(inner.opts.idle_timeout);
            if n > 0 {
                tracing::debug!(server = %s.name, closed = n, "closed idle connections");
            }
        }
    }
}

/// A connection whose future completes only when the server has closed the socket: after
/// `Terminate`, it shuts down its side and reads until the server's end of file. The server clears
/// the backend's `pg_stat_activity` entry before it closes the socket, so a budget permit released
/// when this completes keeps the server's own count within the budget.
struct ClosingStream {
    stream: tokio::net::TcpStream,
    shut: bool,
}

impl tokio::io::AsyncRead for ClosingStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for ClosingStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        use tokio::io::AsyncRead;
        if !self.shut {
            match std::pin::Pin::new(&mut self.stream).poll_shutdown(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => self.shut = true,
            }
        }
        let mut scratch = [0u8; 512];
        loop {
            let mut buf = tokio::io::ReadBuf::new(&mut scratch);
            match std::pin::Pin::new(&mut self.stream).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {}
            }
        }
    }
}

/// A connection to the first TCP host of `config` (through [`ClosingStream`]); other hosts
/// (Unix sockets) connect the ordinary way.
async fn open(
    config: &tokio_postgres::Config,
) -> Result<
    (
        Client,
        std::pin::Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>,
    ),
    tokio_postgres::Error,
> {
    use tokio_postgres::config::Host;
    if let (Some(Host::Tcp(host)), Some(port)) =
        (config.get_hosts().first(), config.get_ports().first())
    {
        match tokio::net::TcpStream::connect((host.as_str(), *port)).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let (client, connection) = config
                    .connect_raw(
                        ClosingStream {
                            stream,
                            shut: false,
                        },
                        tokio_postgres::NoTls,
                    )
                    .await?;
                return Ok((client, Box::pin(connection)));
            }
            Err(_) => {
                // Let the driver produce its usual connection error.
            }
        }
    }
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    Ok((client, Box::pin(connection)))
}

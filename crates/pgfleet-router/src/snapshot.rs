//! The routing snapshot: what the router knows of each tenant ([`Entry`]: its placement, cap,
//! server pool and repair state), read from the [`Directory`] on a key's first use and kept;
//! re-read in the background after the TTL, dropped when a change is announced or a login is
//! refused. Also the server pools by name, and the fallback for unknown keys.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::sync::Semaphore;

use crate::directory::{Directory, Placement};
use crate::error::{RouterError, describe};
use crate::options::{RouterOptions, UnknownPolicy};
use crate::pool::ServerPool;

/// A tenant as the router knows it.
pub(crate) struct Entry {
    pub(crate) placement: Placement,
    fetched: Instant,
    /// The tenant's connections in use, of every kind.
    pub(crate) cap: Arc<Semaphore>,
    pub(crate) server: Arc<ServerPool>,
    /// One repair at a time; when the last one found nothing to do.
    pub(crate) repair: tokio::sync::Mutex<Option<Instant>>,
    /// Bumped by each repair that changed something.
    pub(crate) repairs: AtomicU64,
    refreshing: AtomicBool,
    /// Dropped from the snapshot: its connections are not reused.
    pub(crate) stale: AtomicBool,
    /// A shared connection could not switch to it: trusted callers log in as it instead.
    pub(crate) unshared: AtomicBool,
    /// Its retries of transient failures.
    pub(crate) retry_budget: crate::retry::RetryBudget,
    pub(crate) fallback: bool,
}

impl Entry {
    fn new(
        placement: Placement,
        server: Arc<ServerPool>,
        opts: &RouterOptions,
        fallback: bool,
    ) -> Self {
        let cap = opts.per_tenant;
        Self {
            placement,
            fetched: Instant::now(),
            cap: Arc::new(Semaphore::new(cap.max(1))),
            server,
            repair: tokio::sync::Mutex::new(None),
            repairs: AtomicU64::new(0),
            refreshing: AtomicBool::new(false),
            stale: AtomicBool::new(false),
            unshared: AtomicBool::new(false),
            retry_budget: crate::retry::RetryBudget::new(opts.retry_burst, opts.retries_per_second),
            fallback,
        }
    }
}

/// The directory, the options, the tenants the router knows and the servers' pools: what every
/// clone of a router shares.
pub(crate) struct Snapshot<D> {
    pub(crate) directory: D,
    pub(crate) opts: RouterOptions,
    tenants: RwLock<HashMap<String, Arc<Entry>>>,
    servers: Mutex<HashMap<String, Arc<ServerPool>>>,
    /// Bumped by every [`Snapshot::forget`]: a preload read before a forget is not inserted.
    forgets: AtomicU64,
    /// The result cache ([`RouterOptions::cache`]).
    pub(crate) cache: Arc<crate::cache::Cache>,
    /// The connections of [`Router::query_cached`](crate::Router::query_cached).
    pub(crate) wire: crate::wire::WireBackend,
}

impl<D: Directory> Snapshot<D> {
    pub(crate) fn new(directory: D, opts: RouterOptions) -> Self {
        Self {
            directory,
            tenants: RwLock::new(HashMap::new()),
            servers: Mutex::new(HashMap::new()),
            forgets: AtomicU64::new(0),
            cache: Arc::new(crate::cache::Cache::new(opts.cache.clone())),
            wire: crate::wire::WireBackend::new("pgfleet", None),
            opts,
        }
    }

    /// How many tenants it knows.
    pub(crate) fn len(&self) -> usize {
        self.tenants.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The pools of all servers seen so far.
    pub(crate) fn servers(&self) -> Vec<Arc<ServerPool>> {
        self.servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn server(&self, name: &str) -> Arc<ServerPool> {
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        servers
            .entry(name.to_string())
            .or_insert_with(|| {
                ServerPool::new(
                    name,
                    self.opts.budget_per_server,
                    self.opts.opens_per_server,
                )
            })
            .clone()
    }

    fn insert(&self, placement: Placement) -> Arc<Entry> {
        self.insert_unless_newer(placement, None)
    }

    /// Inserts the entry of `placement`, read from the directory after `asked`, unless the
    /// snapshot has one read after `asked` already (tasks that reached a new tenant at once all
    /// read it; the first one's entry stands, with its cap and connections).
    fn insert_unless_newer(&self, placement: Placement, asked: Option<Instant>) -> Arc<Entry> {
        let server = self.server(&placement.server);
        let entry = Arc::new(Entry::new(placement, server, &self.opts, false));
        let old = {
            let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
            if let (Some(asked), Some(cur)) = (asked, tenants.get(&entry.placement.key))
                && cur.fetched >= asked
            {
                return cur.clone();
            }
            tenants.insert(entry.placement.key.clone(), entry.clone())
        };
        if let Some(old) = old
            && !Arc::ptr_eq(&old, &entry)
        {
            old.stale.store(true, Ordering::Relaxed);
            old.server.drop_idle_of(&old.placement.key);
        }
        entry
    }

    /// Inserts the placements read by one [`Directory::preload`] that started when the count of
    /// forgets was `forgets`, unless a key was forgotten since (its placement may be outdated:
    /// then none, and `None`), keeping entries read after `asked`. How many were new.
    pub(crate) fn preloaded(
        &self,
        placements: Vec<Placement>,
        asked: Instant,
        forgets: u64,
    ) -> Option<usize> {
        let mut added = 0;
        for p in placements {
            if self.forgets.load(Ordering::SeqCst) != forgets {
                return None;
            }
            let known = self
                .tenants
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&p.key);
            if !known {
                self.insert_unless_newer(p, Some(asked));
                added += 1;
            }
        }
        Some(added)
    }

    /// Forgets so far (see [`Snapshot::preloaded`]).
    pub(crate) fn forgets(&self) -> u64 {
        self.forgets.load(Ordering::SeqCst)
    }

    /// Forgets a key: its entry and its idle connections (in-use ones close when returned).
    pub(crate) fn forget(&self, key: &str) {
        self.forgets.fetch_add(1, Ordering::SeqCst);
        let old = self
            .tenants
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        if let Some(old) = old {
            old.stale.store(true, Ordering::Relaxed);
            old.server.drop_idle_of(key);
        }
        self.cache.forget(key);
    }

    /// Forgets the keys placed on tenant `id` (`*`: all keys).
    pub(crate) fn forget_tenant(&self, id: &str) {
        let keys: Vec<String> = self
            .tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, e)| id == "*" || e.placement.tenant_id == id)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.forget(&k);
        }
    }

    /// The entry of `key`: from the snapshot (re-read in the background when older than the
    /// TTL), else from the directory.
    pub(crate) async fn entry(self: &Arc<Self>, key: &str) -> Result<Arc<Entry>, RouterError> {
        let cached = self
            .tenants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned();
        if let Some(e) = cached {
            if e.fetched.elapsed() > self.opts.ttl
                && !e.fallback
                && !e.refreshing.swap(true, Ordering::Relaxed)
            {
                self.refresh_in_background(key.to_string());
            }
            return Ok(e);
        }
        self.load(key).await
    }

    fn refresh_in_background(self: &Arc<Self>, key: String) {
        let this = self.clone();
        tokio::spawn(async move {
            match this.directory.lookup(&key).await {
                Ok(Some(p)) => {
                    this.insert(p);
                }
                Ok(None) => this.forget(&key),
                Err(e) => {
                    tracing::warn!(tenant = %key, "re-reading the placement: {}", describe(&e));
                    if let Some(cur) = this
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

    /// The entry of `key` from the directory (provisioning it, or the fallback, as the options
    /// say).
    pub(crate) async fn load(&self, key: &str) -> Result<Arc<Entry>, RouterError> {
        let directory_error = |source| RouterError::Directory {
            key: key.into(),
            source,
        };
        let asked = Instant::now();
        let found = self.directory.lookup(key).await.map_err(directory_error)?;
        let placement = match (found, self.opts.unknown) {
            (Some(p), _) => return Ok(self.insert_unless_newer(p, Some(asked))),
            (None, UnknownPolicy::Provision(timeout)) => self
                .directory
                .provision(key, timeout)
                .await
                .map_err(directory_error)?,
            (None, UnknownPolicy::Reject) => match &self.opts.fallback {
                Some(config) => {
                    metrics::counter!("pgfleet_router_fallback_total").increment(1);
                    tracing::warn!(tenant = %key, "no ready tenant with this key: serving it from the configured fallback database");
                    return Ok(self.fallback_entry(key, config.clone()));
                }
                None => return Err(RouterError::TenantNotFound(key.into())),
            },
        };
        Ok(self.insert(placement))
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
            shared: None,
        };
        // Not kept in the snapshot: every use goes through the warning again.
        Arc::new(Entry::new(
            placement,
            self.server("(fallback)"),
            &self.opts,
            true,
        ))
    }
}

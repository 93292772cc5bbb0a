//! [`Router`]: from a tenant key to a pooled connection of some kind. Takes the tenant's cap, an
//! idle connection or a budget permit, and opens a connection through the kind's [`Backend`] when
//! none is idle; a refused login re-reads the placement once.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::Arc;

use crate::backend::{Backend, ConnectError};
use crate::client::{Pooled, TenantClient};
use crate::connect::PgBackend;
use crate::directory::Directory;
use crate::error::{RouterError, describe};
use crate::housekeeping;
use crate::options::RouterOptions;
use crate::pool::{BudgetPermit, Other};
use crate::shared::SharedPgBackend;
use crate::snapshot::{Entry, Snapshot};

/// Routes tenant keys to pooled connections. Cheap to clone (an `Arc` inside).
pub struct Router<D: Directory> {
    pub(crate) snapshot: Arc<Snapshot<D>>,
}

impl<D: Directory> Clone for Router<D> {
    fn clone(&self) -> Self {
        Self {
            snapshot: self.snapshot.clone(),
        }
    }
}

impl<D: Directory> std::fmt::Debug for Router<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("opts", &self.snapshot.opts)
            .field("tenants", &self.snapshot.len())
            .finish_non_exhaustive()
    }
}

/// A timeout's reason while waiting for a turn to open a connection.
const OPENINGS_IN_USE: &str =
    "the server has as many connections being opened as it may (opens_per_server)";

/// Why an acquisition failed.
enum Retry {
    /// The login was refused in a way a fresh placement may fix.
    Reload(String),
    /// The server cannot take the connection now ([`ConnectError::Busy`]).
    Busy(String),
    Fail(RouterError),
}

impl<D: Directory> Router<D> {
    /// A router over `directory`. Spawns its housekeeping (idle reaper, change listener) on the
    /// current Tokio runtime.
    pub fn new(directory: D, opts: RouterOptions) -> Self {
        let changes = directory.changes();
        let snapshot = Arc::new(Snapshot::new(directory, opts));
        housekeeping::spawn(&snapshot, changes);
        Self { snapshot }
    }

    /// The directory.
    pub fn directory(&self) -> &D {
        &self.snapshot.directory
    }

    /// Reads the placements of up to `limit` ready tenants from the directory at once
    /// ([`Directory::preload`]), so that their first use needs no directory read (`pgfleet serve`
    /// does it when it starts). Keys the router knows already keep their entries. Returns how many
    /// were added: none when a placement changed (a key was forgotten) during each of three tries.
    ///
    /// # Errors
    /// The directory's.
    pub async fn preload(&self, limit: usize) -> Result<usize, crate::DirectoryError> {
        for _ in 0..3 {
            let (asked, forgets) = (std::time::Instant::now(), self.snapshot.forgets());
            let placements = self.snapshot.directory.preload(limit).await?;
            if let Some(added) = self.snapshot.preloaded(placements, asked, forgets) {
                return Ok(added);
            }
        }
        Ok(0)
    }

    /// Forgets a key: its entry and its idle connections (in-use ones close when returned).
    pub fn forget(&self, key: &str) {
        self.snapshot.forget(key);
    }

    /// Connections per server, open (in use and idle, of every kind) or being opened.
    pub fn open_connections(&self) -> HashMap<String, usize> {
        self.snapshot
            .servers()
            .iter()
            .map(|s| (s.name.clone(), s.open()))
            .collect()
    }

    /// A pooled connection to tenant `key`, as its own role with its `search_path`.
    ///
    /// # Errors
    /// [`RouterError::TenantNotFound`], [`RouterError::Unavailable`], [`RouterError::Timeout`],
    /// [`RouterError::Directory`].
    pub async fn client(&self, key: &str) -> Result<TenantClient, RouterError> {
        let entry = self.snapshot.entry(key).await?;
        if self.shares(&entry) {
            self.connection(key, &SharedPgBackend)
                .await
                .map(TenantClient::shared)
        } else {
            self.connection(key, &PgBackend)
                .await
                .map(TenantClient::own)
        }
    }

    /// Acquires since the router started: (served by an idle connection, opened one), over all
    /// servers. The hit rate is the first over the sum.
    pub fn acquires(&self) -> (u64, u64) {
        self.snapshot.servers().iter().fold((0, 0), |(h, m), s| {
            (
                h + s.hits.load(std::sync::atomic::Ordering::Relaxed),
                m + s.misses.load(std::sync::atomic::Ordering::Relaxed),
            )
        })
    }

    /// Checkouts of a shared connection that switched it to another tenant since the router
    /// started, over all servers (each costs the server one more query).
    pub fn switches(&self) -> u64 {
        self.snapshot
            .servers()
            .iter()
            .map(|s| s.switches.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }

    /// Whether trusted callers of this tenant are served from shared connections.
    pub(crate) fn shares(&self, entry: &Entry) -> bool {
        self.snapshot.opts.shared_connections
            && entry.placement.shared.is_some()
            && !entry.unshared.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A pooled connection of kind `B` to tenant `key`, under the same budget, cap, idle list,
    /// eviction and fail-fast as [`Router::client`]'s (see [`Backend`]).
    ///
    /// # Errors
    /// As [`Router::client`].
    pub async fn connection<B: Backend>(
        &self,
        key: &str,
        backend: &B,
    ) -> Result<Pooled<B>, RouterError> {
        let started = std::time::Instant::now();
        let c = self.connection_of(key, backend).await?;
        metrics::histogram!("pgfleet_router_acquire_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(c)
    }

    async fn connection_of<B: Backend>(
        &self,
        key: &str,
        backend: &B,
    ) -> Result<Pooled<B>, RouterError> {
        let entry = self.snapshot.entry(key).await?;
        self.connection_at(entry, key, backend).await
    }

    /// As [`Router::connection`], with the tenant's entry read already.
    pub(crate) async fn connection_at<B: Backend>(
        &self,
        entry: Arc<Entry>,
        key: &str,
        backend: &B,
    ) -> Result<Pooled<B>, RouterError> {
        match self.acquire(&entry, backend).await {
            Err(Retry::Reload(why)) => {
                // The password was rotated or the tenant moved or was dropped: read it again.
                tracing::debug!(tenant = %key, "login refused ({why}): re-reading the placement");
                self.forget(key);
                let entry = self.snapshot.load(key).await?;
                self.acquire(&entry, backend).await.map_err(|r| match r {
                    Retry::Reload(cause)
                    | Retry::Busy(cause)
                    | Retry::Fail(RouterError::Unavailable { cause, .. }) => {
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
            Err(Retry::Busy(cause)) => Err(RouterError::Unavailable {
                key: key.into(),
                server: entry.placement.server.clone(),
                cause,
            }),
            Ok(c) => Ok(c),
        }
    }

    async fn acquire<B: Backend>(
        &self,
        entry: &Arc<Entry>,
        backend: &B,
    ) -> Result<Pooled<B>, Retry> {
        let p = &entry.placement;
        let span = tracing::debug_span!("tenant", key = %p.key, server = %p.server, database = %p.database, mode = %p.mode);
        tracing::Instrument::instrument(self.acquire_in_span(entry, backend), span).await
    }

    async fn acquire_in_span<B: Backend>(
        &self,
        entry: &Arc<Entry>,
        backend: &B,
    ) -> Result<Pooled<B>, Retry> {
        let p = &entry.placement;
        let opts = &self.snapshot.opts;
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
        let idle_key = B::idle_key(p);
        pool.touch(idle_key);
        // A list several tenants share: while the budget has room, a new connection rather than
        // switching one that serves another tenant (the pool grows to the budget, so the hot
        // tenants keep connections switched to them); then the one switched longest ago.
        let shared = idle_key != p.key.as_str();
        let other = match (shared, pool.has_room()) {
            (false, _) => Other::MostRecent,
            (true, true) => Other::None,
            (true, false) => Other::LeastRecent,
        };
        if let Some(c) =
            pool.take_idle::<B, B::Conn>(idle_key, B::is_closed, |c| B::serves(c, p), other)
        {
            return Ok(self.hand_out::<B>(c, entry, cap, true));
        }
        let down = |why| {
            Retry::Fail(RouterError::Unavailable {
                key: p.key.clone(),
                server: p.server.clone(),
                cause: why,
            })
        };
        if let Some(why) = pool.down_reason() {
            return Err(down(why));
        }
        let other = if shared {
            Other::LeastRecent
        } else {
            Other::MostRecent
        };
        // The server may refuse for now (starting up, too many connections): again after a wait.
        let mut busy = 0;
        loop {
            // A turn to open one (few at once per server), unless a connection comes back meanwhile.
            let opening = loop {
                let turn = pool
                    .opening(TypeId::of::<B>(), idle_key, deadline)
                    .await
                    .map_err(|()| timeout(OPENINGS_IN_USE))?;
                if let Some(turn) = turn {
                    break turn;
                }
                if let Some(c) =
                    pool.take_idle::<B, B::Conn>(idle_key, B::is_closed, |c| B::serves(c, p), other)
                {
                    return Ok(self.hand_out::<B>(c, entry, cap, true));
                }
            };
            if let Some(why) = pool.down_reason() {
                return Err(down(why));
            }
            let permit = loop {
                let waited = pool
                    .permit(TypeId::of::<B>(), idle_key, deadline)
                    .await
                    .map_err(|()| timeout("the server's connection budget is in use"))?;
                // Another task may have returned one meanwhile (the wait ends for that too: a
                // connection of one's own idle list is never evicted for one's own sake).
                // With a permit in hand, a shared connection switched to another tenant is not worth
                // more than a new one.
                let other = if shared && waited.is_some() {
                    Other::None
                } else {
                    other
                };
                if let Some(c) =
                    pool.take_idle::<B, B::Conn>(idle_key, B::is_closed, |c| B::serves(c, p), other)
                {
                    drop(waited);
                    return Ok(self.hand_out::<B>(c, entry, cap, true));
                }
                if let Some(permit) = waited {
                    break permit;
                }
            };
            match self.open(entry, backend, permit).await {
                Ok(conn) => return Ok(self.hand_out::<B>(conn, entry, cap, false)),
                Err(Retry::Busy(why)) => {
                    drop(opening);
                    busy += 1;
                    let reason = crate::retry::Reason::ServerBusy;
                    if !crate::retry::retry(entry, busy, reason, &why, Some(deadline)).await {
                        return Err(down(why));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Counts the acquire (`idle`: served by an idle connection) and the switch of a shared
    /// connection to another tenant, prepares the connection ([`Backend::checkout`]) and hands it
    /// out.
    fn hand_out<B: Backend>(
        &self,
        mut conn: B::Conn,
        entry: &Arc<Entry>,
        cap: tokio::sync::OwnedSemaphorePermit,
        idle: bool,
    ) -> Pooled<B> {
        let (p, pool) = (&entry.placement, &entry.server);
        if B::idle_key(p) != p.key.as_str() && !B::serves(&conn, p) {
            pool.switches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        B::checkout(&mut conn, p);
        hit(pool, idle);
        Pooled::new(conn, entry.clone(), cap)
    }

    /// Opens a new connection of kind `B` within the connect timeout; a server that cannot be
    /// reached is marked down.
    async fn open<B: Backend>(
        &self,
        entry: &Entry,
        backend: &B,
        permit: BudgetPermit,
    ) -> Result<B::Conn, Retry> {
        let p = &entry.placement;
        let opts = &self.snapshot.opts;
        let unavailable = |cause| {
            Retry::Fail(RouterError::Unavailable {
                key: p.key.clone(),
                server: p.server.clone(),
                cause,
            })
        };
        match tokio::time::timeout(opts.connect_timeout, backend.connect(p, permit)).await {
            Ok(Ok(conn)) => Ok(conn),
            // Bad password (rotated), no such role or database (dropped or moved).
            Ok(Err(ConnectError::LoginRefused(e))) if !entry.fallback => {
                Err(Retry::Reload(describe(e.as_ref())))
            }
            Ok(Err(ConnectError::Busy(e))) => Err(Retry::Busy(describe(e.as_ref()))),
            Ok(Err(ConnectError::LoginRefused(e) | ConnectError::Refused(e))) => {
                Err(unavailable(describe(e.as_ref())))
            }
            Ok(Err(ConnectError::Unreachable(e))) => {
                let why = format!("cannot connect: {}", describe(e.as_ref()));
                entry.server.mark_down(why.clone(), opts.down_for);
                Err(unavailable(why))
            }
            Err(_) => {
                let why = format!("no answer within {:?}", opts.connect_timeout);
                entry.server.mark_down(why.clone(), opts.down_for);
                Err(unavailable(why))
            }
        }
    }
}

/// Counts an acquire served by an idle connection (`true`) or by a new one.
fn hit(pool: &crate::pool::ServerPool, hit: bool) {
    let (n, result) = if hit {
        (&pool.hits, "hit")
    } else {
        (&pool.misses, "miss")
    };
    n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    metrics::counter!("pgfleet_router_acquires_total", "result" => result).increment(1);
}

//! [`ProxyConn`]: a wire connection lent whole to a front door that relays a client's own protocol
//! messages (the PostgreSQL wire front door of `pgfleet serve --pg-listen`) for one transaction or
//! one session, and [`Router::proxy`](crate::Router::proxy), which lends it.
//!
//! Its connections are a kind of their own ([`ProxyBackend`], [`SharedProxyBackend`]): they share
//! the per-server budget and the per-tenant cap with every other kind, but not idle lists, since
//! `/sql`'s connections end each request with `DISCARD ALL` and a `statement_timeout` of their
//! own, and these keep what the front door prepared on them.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use bytes::BytesMut;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::WireBackend;
use super::conn::{Canceller, WireConn, unexpected};
use super::error::{ServerError, WireError};
use crate::backend::{Backend, ConnectError};
use crate::directory::Placement;
use crate::pool::BudgetPermit;
use crate::{Pooled, RouterError};

/// Most statements the front door may keep prepared on one server session; beyond it they are all
/// deallocated at the next checkout (and prepared again as clients use them).
pub const MAX_PREPARED: usize = 1000;

/// A server session lent whole to a front door: the bytes it relays go straight to the server.
pub struct ProxyConn {
    conn: WireConn,
    /// Server-side names of the statements the front door prepared on this session.
    pub prepared: HashSet<String>,
    /// The tenant role a shared session was last switched to.
    role: Option<String>,
    /// The switch a checkout queued (a shared session going to another tenant): sent, and its
    /// answer awaited, before the session is lent.
    switch: Option<String>,
}

impl std::fmt::Debug for ProxyConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConn")
            .field("conn", &self.conn)
            .field("prepared", &self.prepared.len())
            .finish_non_exhaustive()
    }
}

impl ProxyConn {
    fn new(conn: WireConn) -> Self {
        Self {
            conn,
            prepared: HashSet::new(),
            role: None,
            switch: None,
        }
    }

    /// The server's `ParameterStatus` values at login (`server_version`, `TimeZone`, …), as a
    /// front door reports them to its clients.
    pub fn parameters(&self) -> &[(String, String)] {
        &self.conn.parameters
    }

    /// What cancels the statement this session runs, usable from another task.
    pub fn canceller(&self) -> Canceller {
        self.conn.canceller()
    }

    /// Never lent again: closed when it goes back (left mid-transaction, cancelled, or in a
    /// state the front door cannot vouch for).
    pub fn mark_broken(&mut self) {
        self.conn.broken = true;
    }

    /// The socket's halves and the buffer of bytes read from it and not yet taken, for relaying.
    /// `None` once the connection was closed.
    pub fn io(
        &mut self,
    ) -> Option<(
        tokio::net::tcp::ReadHalf<'_>,
        tokio::net::tcp::WriteHalf<'_>,
        &mut BytesMut,
    )> {
        let stream = self.conn.stream.as_mut()?;
        let (r, w) = stream.split();
        Some((r, w, &mut self.conn.buf))
    }

    /// Ends what a client left of its session: `ROLLBACK`, `DISCARD ALL` (settings, temporary
    /// tables, prepared statements, cursors, advisory locks, `LISTEN`; a shared session is the
    /// pool role again). Whether the session is clean and idle; when not, it is closed when it
    /// goes back.
    pub async fn reset_session(&mut self) -> bool {
        self.conn.reset().await;
        self.prepared.clear();
        self.role = None;
        !self.conn.broken
    }

    /// Runs `sql` as one simple query and waits for its end: the first error, if any.
    async fn simple(&mut self, sql: &str) -> Result<(), WireError> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out)?;
        self.conn.broken = true;
        self.conn.send(&out).await?;
        let mut error = None;
        loop {
            match self.conn.read().await? {
                Message::ErrorResponse(body) => {
                    error.get_or_insert_with(|| ServerError::parse(&body));
                }
                Message::ReadyForQuery(b) => {
                    if b.status() != b'I' {
                        return Err(unexpected("a session left in a transaction"));
                    }
                    break;
                }
                _ => {}
            }
        }
        match error {
            Some(e) => Err(e.into()),
            None => {
                self.conn.broken = false;
                Ok(())
            }
        }
    }
}

/// Sessions logged in as the tenant's role, lent whole ([`ProxyConn`]). One value per process:
/// its settings become startup options of every session it opens.
#[derive(Debug, Clone)]
pub struct ProxyBackend(WireBackend);

impl ProxyBackend {
    /// Sessions named `application_name` in `pg_stat_activity`, with the role's or server's own
    /// `statement_timeout` (clients set theirs).
    pub fn new(application_name: &str) -> Self {
        Self(WireBackend::new(application_name, None))
    }

    /// The shared sessions of the same settings, for trusted callers of schema-mode tenants.
    pub fn shared(&self) -> SharedProxyBackend {
        SharedProxyBackend(self.0.clone())
    }
}

impl Backend for ProxyBackend {
    type Conn = ProxyConn;
    type Error = WireError;

    async fn connect(
        &self,
        placement: &Placement,
        permit: BudgetPermit,
    ) -> Result<ProxyConn, ConnectError> {
        Ok(ProxyConn::new(
            self.0.open(&placement.config, permit).await?,
        ))
    }

    /// Without a read of the socket (a system call on every checkout and every return): a
    /// session the server closed while idle is found by the front door when it is used (its
    /// first answer is a `FATAL`, or the end of the stream), and what the client sent goes to
    /// another session then.
    fn is_closed(conn: &ProxyConn) -> bool {
        conn.conn.is_marked_closed()
    }

    fn sqlstate(error: &WireError) -> Option<&str> {
        error.sqlstate()
    }
}

/// Sessions of the fleet's pool role, shared by the schema-mode tenants of a server (one idle
/// list per server), for trusted callers only. A checkout that changes tenant clears what the
/// last tenant left and switches the session (the same query as the router's shared clients, see
/// the `shared` module), and waits for it: when it fails nothing of the client is sent.
#[derive(Debug, Clone)]
pub struct SharedProxyBackend(WireBackend);

impl Backend for SharedProxyBackend {
    type Conn = ProxyConn;
    type Error = WireError;

    async fn connect(
        &self,
        placement: &Placement,
        permit: BudgetPermit,
    ) -> Result<ProxyConn, ConnectError> {
        let Some(shared) = &placement.shared else {
            return Err(ConnectError::Refused(
                "the tenant has no shared login".into(),
            ));
        };
        let mut conn = self.0.open(&shared.config, permit).await?;
        conn.shared = true;
        Ok(ProxyConn::new(conn))
    }

    /// Without a read of the socket (a system call on every checkout and every return): a
    /// session the server closed while idle is found by the front door when it is used (its
    /// first answer is a `FATAL`, or the end of the stream), and what the client sent goes to
    /// another session then.
    fn is_closed(conn: &ProxyConn) -> bool {
        conn.conn.is_marked_closed()
    }

    fn sqlstate(error: &WireError) -> Option<&str> {
        error.sqlstate()
    }

    fn idle_key(_placement: &Placement) -> &str {
        crate::shared::SHARED_KEY
    }

    fn serves(conn: &ProxyConn, placement: &Placement) -> bool {
        placement
            .shared
            .as_ref()
            .is_some_and(|s| conn.role.as_deref() == Some(s.role.as_str()))
    }

    fn checkout(conn: &mut ProxyConn, placement: &Placement) {
        let Some(shared) = &placement.shared else {
            return;
        };
        if conn.role.as_deref() == Some(shared.role.as_str()) {
            return;
        }
        let switch = crate::shared::switch_sql(
            &shared.role,
            &shared.search_path,
            shared.switch_function.as_deref(),
        );
        conn.role = Some(shared.role.clone());
        conn.switch = Some(format!("{}; {switch}", crate::shared::RESET_ROLE));
    }
}

/// A session lent by [`Router::proxy`](crate::Router::proxy).
#[derive(Debug)]
pub enum ProxyLease {
    /// Logged in as the tenant's role.
    Own(Pooled<ProxyBackend>),
    /// A shared session of the pool role, switched to the tenant.
    Shared(Pooled<SharedProxyBackend>),
}

/// What a repair after an error needs to know: which repairs had happened, and when, before the
/// statement ran ([`ProxyLease::heal_ticket`], [`Router::repair_after`](crate::Router::repair_after)).
#[derive(Debug, Clone, Copy)]
pub struct HealTicket {
    generation: u64,
    seen: SystemTime,
}

impl ProxyLease {
    /// Whether it is a shared session.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Shared(_))
    }

    /// The tenant's key.
    pub fn key(&self) -> &str {
        match self {
            Self::Own(c) => c.key(),
            Self::Shared(c) => c.key(),
        }
    }

    /// The tenant's id (as the result cache and its bus name it).
    pub fn tenant_id(&self) -> &str {
        match self {
            Self::Own(c) => &c.entry.placement.tenant_id,
            Self::Shared(c) => &c.entry.placement.tenant_id,
        }
    }

    /// Taken before a statement runs, for a repair after it failed.
    pub fn heal_ticket(&self) -> HealTicket {
        let entry = match self {
            Self::Own(c) => &c.entry,
            Self::Shared(c) => &c.entry,
        };
        HealTicket {
            generation: entry.repairs.load(Ordering::Acquire),
            seen: SystemTime::now(),
        }
    }
}

impl std::ops::Deref for ProxyLease {
    type Target = ProxyConn;
    fn deref(&self) -> &ProxyConn {
        match self {
            Self::Own(c) => c,
            Self::Shared(c) => c,
        }
    }
}

impl std::ops::DerefMut for ProxyLease {
    fn deref_mut(&mut self) -> &mut ProxyConn {
        match self {
            Self::Own(c) => c,
            Self::Shared(c) => c,
        }
    }
}

impl<D: crate::Directory> crate::Router<D> {
    /// A session of tenant `key` lent whole, under the budget and cap of every connection kind:
    /// a `trusted` caller (the application's own token) of a schema-mode tenant gets a shared
    /// session of the pool role, switched to the tenant (and waited for), when the router shares
    /// connections; anyone else a session logged in as the tenant's role. A shared session that
    /// did not switch is closed, and the tenant's trusted callers log in as its role from then on
    /// (in this process); nothing of the caller ran, so this returns such a session instead.
    ///
    /// # Errors
    /// As [`Router::client`](crate::Router::client).
    pub async fn proxy(
        &self,
        key: &str,
        backend: &ProxyBackend,
        trusted: bool,
    ) -> Result<ProxyLease, RouterError> {
        let entry = self.snapshot.entry(key).await?;
        if trusted && self.shares(&entry) {
            let mut lease = self
                .connection_at(entry.clone(), key, &backend.shared())
                .await?;
            let switch = lease.switch.take();
            let outcome = match switch {
                Some(sql) => lease.simple(&sql).await,
                None => Ok(()),
            };
            match outcome {
                Ok(()) => {
                    let mut lease = ProxyLease::Shared(lease);
                    trim_prepared(&mut lease).await;
                    return Ok(lease);
                }
                Err(e) => {
                    lease.mark_broken();
                    lease.role = None;
                    metrics::counter!("pgfleet_router_role_switch_failures_total").increment(1);
                    tracing::warn!(tenant = %key, "a shared proxy session did not switch to its tenant ({e}); its trusted callers log in as the tenant from now on");
                    entry.unshared.store(true, Ordering::Relaxed);
                }
            }
        }
        let started = std::time::Instant::now();
        let own = self.connection_at(entry, key, backend).await?;
        metrics::histogram!("pgfleet_router_acquire_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        let mut lease = ProxyLease::Own(own);
        trim_prepared(&mut lease).await;
        Ok(lease)
    }

    /// After a statement of a [`ProxyLease`] failed with `reason` (an error naming a missing
    /// table, column or schema: see [`is_healable`](crate::is_healable)): asks the directory to
    /// repair the tenant, as [`Router::with_tenant`](crate::Router::with_tenant) does. `true`
    /// when running the statement again may now succeed (repaired now, or by another task since
    /// `ticket` was taken); `false` when there was nothing to repair (then not tried again for a
    /// cooldown).
    ///
    /// # Errors
    /// [`RouterError::Directory`] when the repair failed (the tenant could not be placed, or the
    /// directory could not repair it).
    pub async fn repair_after(
        &self,
        key: &str,
        ticket: &HealTicket,
        reason: &str,
    ) -> Result<bool, RouterError> {
        let entry = self.snapshot.entry(key).await?;
        if entry.fallback {
            return Ok(false);
        }
        match self
            .heal(&entry, ticket.generation, reason, ticket.seen)
            .await
        {
            crate::heal::Healing::Retry => Ok(true),
            crate::heal::Healing::NotHealed => Ok(false),
            crate::heal::Healing::Failed(source) => Err(RouterError::Directory {
                key: key.into(),
                source,
            }),
        }
    }
}

/// Deallocates every statement of a session that holds more than [`MAX_PREPARED`].
async fn trim_prepared(lease: &mut ProxyLease) {
    if lease.prepared.len() <= MAX_PREPARED {
        return;
    }
    if lease.simple("DEALLOCATE ALL").await.is_ok() {
        lease.prepared.clear();
    } else {
        lease.mark_broken();
    }
}

//! What the router hands out: [`Pooled`], a connection of any kind on loan to one tenant, and
//! [`TenantClient`], the tokio-postgres one applications use. Dropping either gives the connection
//! back to the tenant's idle list (or closes it when it is closed or its tenant was forgotten) and
//! releases the tenant's cap.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::OwnedSemaphorePermit;
use tokio_postgres::Client;

use crate::backend::Backend;
use crate::connect::PgBackend;
use crate::error::RouterError;
use crate::shared::SharedPgBackend;
use crate::snapshot::Entry;

/// A pooled connection of kind `B` to one tenant, as its own role with its `search_path`.
/// Dereferences (also mutably) to the connection; dropping it returns the connection to the pool.
pub struct Pooled<B: Backend> {
    conn: Option<B::Conn>,
    pub(crate) entry: Arc<Entry>,
    _cap: OwnedSemaphorePermit,
}

impl<B: Backend> Pooled<B> {
    pub(crate) fn new(conn: B::Conn, entry: Arc<Entry>, cap: OwnedSemaphorePermit) -> Self {
        Self {
            conn: Some(conn),
            entry,
            _cap: cap,
        }
    }

    /// Closes the connection instead of giving it back to the pool.
    pub(crate) fn discard(mut self) {
        drop(self.conn.take());
    }

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

impl<B: Backend> Deref for Pooled<B> {
    type Target = B::Conn;
    fn deref(&self) -> &B::Conn {
        self.conn.as_ref().expect("present until drop")
    }
}

impl<B: Backend> DerefMut for Pooled<B> {
    fn deref_mut(&mut self) -> &mut B::Conn {
        self.conn.as_mut().expect("present until drop")
    }
}

impl<B: Backend> std::fmt::Debug for Pooled<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled")
            .field("kind", &std::any::type_name::<B>())
            .field("key", &self.key())
            .field("server", &self.server())
            .field("database", &self.database())
            .field("fallback", &self.is_fallback())
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Drop for Pooled<B> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let p = &self.entry.placement;
        let list = B::idle_key(p);
        // A tenant's own connection goes with its stale entry (credentials rotated, tenant moved
        // or dropped); a shared one serves the other tenants still (the next switch resets it).
        let own = list == p.key.as_str();
        if B::is_closed(&conn) || (own && self.entry.stale.load(Ordering::Relaxed)) {
            drop(conn); // it gives its budget permit back once the server has closed it
        } else {
            self.entry.server.put_idle::<B, B::Conn>(list, conn);
        }
    }
}

/// A pooled tokio-postgres connection to one tenant, running as the tenant's role with its
/// `search_path`: logged in as the role, or (trusted callers of schema tenants, see the `shared`
/// module) a shared connection of the pool role switched to it. Dereferences to a
/// [`tokio_postgres::Client`]; dropping it returns the connection to the pool.
pub struct TenantClient(pub(crate) Kind);

pub(crate) enum Kind {
    Own(Pooled<PgBackend>),
    Shared(Pooled<SharedPgBackend>),
}

impl TenantClient {
    pub(crate) fn own(p: Pooled<PgBackend>) -> Self {
        Self(Kind::Own(p))
    }

    pub(crate) fn shared(p: Pooled<SharedPgBackend>) -> Self {
        Self(Kind::Shared(p))
    }

    /// Closes the connection instead of giving it back to the pool (it may be in a state the next
    /// user must not inherit).
    pub(crate) fn discard(self) {
        match self.0 {
            Kind::Own(p) => p.discard(),
            Kind::Shared(p) => p.discard(),
        }
    }

    fn entry(&self) -> &Entry {
        match &self.0 {
            Kind::Own(p) => &p.entry,
            Kind::Shared(p) => &p.entry,
        }
    }

    /// The tenant's key.
    pub fn key(&self) -> &str {
        &self.entry().placement.key
    }
    /// The server that serves it.
    pub fn server(&self) -> &str {
        &self.entry().placement.server
    }
    /// Its database.
    pub fn database(&self) -> &str {
        &self.entry().placement.database
    }
    /// Its schema (`public` in database mode).
    pub fn schema(&self) -> &str {
        &self.entry().placement.schema
    }
    /// `database` or `schema`.
    pub fn mode(&self) -> &str {
        &self.entry().placement.mode
    }
    /// Served by the configured fallback database, not by the tenant's own.
    pub fn is_fallback(&self) -> bool {
        self.entry().fallback
    }
    /// A shared connection (logged in as the pool role, switched to the tenant), not a login of
    /// the tenant's own role.
    pub fn is_shared(&self) -> bool {
        matches!(self.0, Kind::Shared(_))
    }

    /// Waits until the server has answered this checkout's switch to the tenant (at once for a
    /// connection logged in as the tenant; for a shared one, the answer arrives before that of
    /// the caller's first statement).
    ///
    /// # Errors
    /// [`RouterError::RoleSwitch`]: the connection runs as the pool role, which can do nothing.
    pub async fn verify(&self) -> Result<(), RouterError> {
        match &self.0 {
            Kind::Own(_) => Ok(()),
            Kind::Shared(p) => match SharedPgBackend::checked_out(p) {
                Some(mut check) => check.failure().await.map_err(|f| RouterError::RoleSwitch {
                    key: self.key().to_string(),
                    cause: f.cause,
                    stale_transaction: f.stale,
                }),
                None => Ok(()),
            },
        }
    }
}

impl Deref for TenantClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        match &self.0 {
            Kind::Own(p) => p,
            Kind::Shared(p) => p,
        }
    }
}

impl std::fmt::Debug for TenantClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantClient")
            .field("key", &self.key())
            .field("server", &self.server())
            .field("database", &self.database())
            .field("fallback", &self.is_fallback())
            .field("shared", &self.is_shared())
            .finish_non_exhaustive()
    }
}

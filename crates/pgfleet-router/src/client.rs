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
use crate::snapshot::Entry;

/// A pooled connection of kind `B` to one tenant, as its own role with its `search_path`.
/// Dereferences (also mutably) to the connection; dropping it returns the connection to the pool.
pub struct Pooled<B: Backend> {
    conn: Option<B::Conn>,
    entry: Arc<Entry>,
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
        if B::is_closed(&conn) || self.entry.stale.load(Ordering::Relaxed) {
            drop(conn); // it gives its budget permit back once the server has closed it
        } else {
            self.entry
                .server
                .put_idle::<B, B::Conn>(&self.entry.placement.key, conn);
        }
    }
}

/// A pooled tokio-postgres connection to one tenant, as its own role with its `search_path`.
/// Dereferences to a [`tokio_postgres::Client`]; dropping it returns the connection to the pool.
pub struct TenantClient(pub(crate) Pooled<PgBackend>);

impl TenantClient {
    /// The tenant's key.
    pub fn key(&self) -> &str {
        self.0.key()
    }
    /// The server that serves it.
    pub fn server(&self) -> &str {
        self.0.server()
    }
    /// Its database.
    pub fn database(&self) -> &str {
        self.0.database()
    }
    /// Its schema (`public` in database mode).
    pub fn schema(&self) -> &str {
        self.0.schema()
    }
    /// `database` or `schema`.
    pub fn mode(&self) -> &str {
        self.0.mode()
    }
    /// Served by the configured fallback database, not by the tenant's own.
    pub fn is_fallback(&self) -> bool {
        self.0.is_fallback()
    }
}

impl Deref for TenantClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.0
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

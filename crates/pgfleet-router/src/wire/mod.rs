//! [`WireBackend`]: a connection kind that speaks the PostgreSQL protocol itself (on
//! `postgres-protocol`) and hands back PostgreSQL's own text output with full column
//! descriptions, which tokio-postgres hides (it asks for binary results). The SQL-over-HTTP front
//! door runs its requests on it; it is pooled, budgeted, capped and healed by the router like
//! [`PgBackend`](crate::PgBackend) connections, sharing their budget.
//!
//! ```no_run
//! # async fn run(router: pgfleet_router::Router<impl pgfleet_router::Directory>) -> Result<(), pgfleet_router::RouterError> {
//! use std::time::Duration;
//! use pgfleet_router::wire::{Limits, Statement, WireBackend};
//!
//! let backend = WireBackend::new("my-app", Some(Duration::from_secs(30)));
//! let limits = Limits { max_response: 10 << 20, timeout: Duration::from_secs(30) };
//! let stmt = Statement { sql: "SELECT $1::int + 1 AS n".into(), params: vec![Some("41".into())] };
//! let result = router
//!     .with_connection("user-42", &backend, |mut c| {
//!         let stmt = stmt.clone();
//!         async move { c.query(&stmt, &limits).await }
//!     })
//!     .await?;
//! assert_eq!(result.rows[0].get(0), Some("42"));
//! assert_eq!(result.fields[0].type_oid, 23);
//! # Ok(()) }
//! ```

mod conn;
mod error;
mod proxy;
mod query;
mod run;

use std::time::Duration;

pub use conn::{Canceller, WireConn};
pub use error::{ServerError, WireError};
pub use proxy::{
    HealTicket, MAX_PREPARED, ProxyBackend, ProxyConn, ProxyLease, SharedProxyBackend,
};
pub use query::{Field, Isolation, Limits, Row, Statement, TextResult, Transaction};
pub use run::{LIBRARY_LIMITS, Ran, Work};

use crate::backend::{Backend, ConnectError};
use crate::directory::Placement;
use crate::pool::BudgetPermit;

/// Connections that speak the protocol themselves ([`WireConn`]). Its settings become startup
/// options of every connection it opens, and connections of one backend type are pooled
/// together: use one value per process.
#[derive(Debug, Clone)]
pub struct WireBackend {
    application_name: String,
    /// `-c statement_timeout=…`, appended to the placement's startup options.
    extra_options: String,
}

impl WireBackend {
    /// Connections named `application_name` in `pg_stat_activity`, each with the server's
    /// `statement_timeout` set to `statement_timeout` (`None`: the role's or server's own).
    pub fn new(application_name: &str, statement_timeout: Option<Duration>) -> Self {
        let extra_options = statement_timeout
            .map(|t| format!("-c statement_timeout={}", t.as_millis().max(1)))
            .unwrap_or_default();
        Self {
            application_name: application_name.to_string(),
            extra_options,
        }
    }
}

impl WireBackend {
    /// Opens a connection with `config`'s login and these settings.
    async fn open(
        &self,
        config: &tokio_postgres::Config,
        permit: BudgetPermit,
    ) -> Result<WireConn, ConnectError> {
        WireConn::open(config, &self.extra_options, &self.application_name, permit).await
    }

    /// The shared connections of the same settings, for trusted callers of schema-mode tenants
    /// ([`Router::with_wire`](crate::Router::with_wire) chooses).
    pub fn shared(&self) -> SharedWireBackend {
        SharedWireBackend(self.clone())
    }
}

/// Wire connections logged in as the fleet's pool role, shared by the schema-mode tenants of a
/// server (one idle list per server), for trusted callers only. Every request switches to its
/// tenant first, in its own pipeline (`SET ROLE`, `SET search_path`, no extra round trip); when
/// the switch fails the server skips the rest of the request (fail-closed), and the request fails
/// with [`WireError::Switch`]. Every request ends with `DISCARD ALL`, which makes the session the
/// pool role again with nothing of the tenant left (settings, temporary tables, prepared
/// statements, cursors, advisory locks, `LISTEN`).
#[derive(Debug, Clone)]
pub struct SharedWireBackend(WireBackend);

impl Backend for SharedWireBackend {
    type Conn = WireConn;
    type Error = WireError;

    async fn connect(
        &self,
        placement: &Placement,
        permit: BudgetPermit,
    ) -> Result<WireConn, ConnectError> {
        let Some(shared) = &placement.shared else {
            return Err(ConnectError::Refused(
                "the tenant has no shared login".into(),
            ));
        };
        let mut conn = self.0.open(&shared.config, permit).await?;
        conn.shared = true;
        Ok(conn)
    }

    fn is_closed(conn: &WireConn) -> bool {
        conn.is_closed()
    }

    fn sqlstate(error: &WireError) -> Option<&str> {
        error.sqlstate()
    }

    fn idle_key(_placement: &Placement) -> &str {
        crate::shared::SHARED_KEY
    }

    fn checkout(conn: &mut WireConn, placement: &Placement) {
        conn.switch = placement
            .shared
            .as_ref()
            .map(|s| (s.role.clone(), s.search_path.clone()));
    }
}

/// A wire connection lent by [`Router::with_wire`](crate::Router::with_wire): logged in as the
/// tenant's role, or a shared one switched to it.
#[derive(Debug)]
pub enum WireLease {
    /// Logged in as the tenant's role.
    Own(crate::Pooled<WireBackend>),
    /// A shared connection of the pool role, switched to the tenant for each request.
    Shared(crate::Pooled<SharedWireBackend>),
}

impl WireLease {
    /// Whether it is a shared connection.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Shared(_))
    }
}

impl std::ops::Deref for WireLease {
    type Target = WireConn;
    fn deref(&self) -> &WireConn {
        match self {
            Self::Own(c) => c,
            Self::Shared(c) => c,
        }
    }
}

impl std::ops::DerefMut for WireLease {
    fn deref_mut(&mut self) -> &mut WireConn {
        match self {
            Self::Own(c) => c,
            Self::Shared(c) => c,
        }
    }
}

impl<D: crate::Directory> crate::Router<D> {
    /// As [`Router::with_connection`](crate::Router::with_connection) over `backend`, choosing the
    /// connection by who calls: a `trusted` caller (the application's own token, which may reach
    /// any tenant by naming it) of a schema-mode tenant gets a shared connection of the pool role
    /// ([`SharedWireBackend`]) when the router shares connections; anyone else a connection
    /// logged in as the tenant's role.
    ///
    /// # Errors
    /// As [`Router::with_connection`](crate::Router::with_connection), and
    /// [`RouterError::RoleSwitch`](crate::RouterError::RoleSwitch) when a shared connection did
    /// not switch to the tenant: nothing of the request ran, and the tenant's trusted callers log
    /// in as its role from now on (in this process), so running it again is safe and does that.
    pub async fn with_wire<T, F, Fut>(
        &self,
        key: &str,
        backend: &WireBackend,
        trusted: bool,
        mut f: F,
    ) -> Result<T, crate::RouterError>
    where
        F: FnMut(WireLease) -> Fut,
        Fut: std::future::Future<Output = Result<T, WireError>>,
    {
        if trusted {
            let entry = self.snapshot.entry(key).await?;
            if self.shares(&entry) {
                let r = self
                    .with_connection(key, &backend.shared(), |c| f(WireLease::Shared(c)))
                    .await;
                let cause = match &r {
                    Err(crate::RouterError::Query { source, .. }) => {
                        match source.downcast_ref::<WireError>() {
                            Some(WireError::Switch(cause)) => cause.clone(),
                            _ => return r,
                        }
                    }
                    _ => return r,
                };
                metrics::counter!("pgfleet_router_role_switch_failures_total").increment(1);
                tracing::warn!(tenant = %key, "a shared wire connection did not switch to its tenant ({cause}); its trusted callers log in as the tenant from now on");
                entry
                    .unshared
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                return Err(crate::RouterError::RoleSwitch {
                    key: key.into(),
                    cause,
                    stale_transaction: false,
                });
            }
        }
        self.with_connection(key, backend, |c| f(WireLease::Own(c)))
            .await
    }
}

impl Backend for WireBackend {
    type Conn = WireConn;
    type Error = WireError;

    async fn connect(
        &self,
        placement: &Placement,
        permit: BudgetPermit,
    ) -> Result<WireConn, ConnectError> {
        self.open(&placement.config, permit).await
    }

    fn is_closed(conn: &WireConn) -> bool {
        conn.is_closed()
    }

    fn sqlstate(error: &WireError) -> Option<&str> {
        error.sqlstate()
    }
}

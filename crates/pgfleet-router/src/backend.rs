//! The seam for connections of other kinds: [`Backend`] says how a kind of connection is opened
//! to a tenant's placement, whether one is closed, and which SQLSTATE an error of it carries.
//! Everything else, the per-server budget, the per-tenant cap, idle connections, eviction,
//! reaping, fail-fast and heal-and-retry, is the router's and applies to every kind alike: the
//! connections of all kinds of one server share its budget, a tenant's connections of all kinds
//! share its cap, and a tenant that needs a connection when the budget is spent closes the
//! longest-idle connection of another tenant or another kind.
//!
//! [`PgBackend`](crate::PgBackend) (tokio-postgres) is the kind [`Router::client`] and
//! [`Router::with_tenant`] use; [`Router::connection`] and [`Router::with_connection`] take any.
//!
//! [`Router::client`]: crate::Router::client
//! [`Router::with_tenant`]: crate::Router::with_tenant
//! [`Router::connection`]: crate::Router::connection
//! [`Router::with_connection`]: crate::Router::with_connection

use std::future::Future;

use crate::directory::{BoxError, Placement};
use crate::pool::BudgetPermit;

impl BudgetPermit {
    /// Closes a connection that speaks the protocol itself over `stream`, as
    /// [`Backend::connect`] asks, in the background: `Terminate`, shut down the write side, read
    /// until the server's end of file (at most 30 s: a backend busy with a cancelled statement
    /// closes soon, but never wait forever), then give this permit back. Without a Tokio runtime
    /// the socket closes with the process.
    pub fn release_after_close(self, mut stream: tokio::net::TcpStream) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let mut out = bytes::BytesMut::new();
            postgres_protocol::message::frontend::terminate(&mut out);
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
            let mut scratch = [0u8; 512];
            let drain =
                async { while matches!(stream.read(&mut scratch).await, Ok(n) if n > 0) {} };
            let _ = tokio::time::timeout(std::time::Duration::from_secs(30), drain).await;
            drop(self);
        });
    }
}

/// A kind of connection the router pools. A kind is a type: connections opened by one backend
/// type are pooled together, so two values of one backend type must open interchangeable
/// connections (put settings that change what a connection is into the type, or into the
/// [`Placement`]).
///
/// A connection kind needs no code for pooling, budgets, caps, eviction or healing: it opens a
/// connection, keeps its [`BudgetPermit`] until the server has closed it, and answers two
/// questions.
pub trait Backend: Send + Sync + 'static {
    /// An open connection, as handed out in a [`Pooled`](crate::Pooled).
    type Conn: Send + 'static;
    /// The error of an operation on a connection: what the closure of
    /// [`Router::with_connection`](crate::Router::with_connection) fails with.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Opens a connection to `placement`, logged in as the tenant's role with its database and
    /// startup options (`placement.config`), ready for statements: no statement may be needed
    /// after this returns.
    ///
    /// `permit` is the connection's share of its server's budget: keep it until the server has
    /// closed the connection (after the connection is dropped, close it, wait for the server's
    /// end of file, then drop the permit: [`BudgetPermit::release_after_close`] does that for a
    /// TCP stream), so the server never counts more connections than the budget. Dropping it on
    /// failure is right.
    ///
    /// The router bounds the call by [`RouterOptions::connect_timeout`](crate::RouterOptions::connect_timeout).
    ///
    /// # Errors
    /// [`ConnectError`], classified as its variants say ([`ConnectError::from_sqlstate`] does it
    /// from the SQLSTATE of the server's error response).
    fn connect(
        &self,
        placement: &Placement,
        permit: BudgetPermit,
    ) -> impl Future<Output = Result<Self::Conn, ConnectError>> + Send;

    /// Whether the connection cannot be used again (closed, or left in a state the next user must
    /// not inherit). Such a connection is neither handed out nor kept idle: dropped instead.
    fn is_closed(conn: &Self::Conn) -> bool;

    /// The SQLSTATE of an error, when the server sent one. Heal-and-retry acts on `42P01`,
    /// `42703` and `3F000`; [`RouterError::sqlstate`](crate::RouterError::sqlstate) reports it.
    fn sqlstate(error: &Self::Error) -> Option<&str>;

    /// The idle list a connection of this kind goes back to: the tenant's own (the default), or a
    /// list several tenants share (connections that switch to their tenant on checkout).
    fn idle_key(placement: &Placement) -> &str {
        &placement.key
    }

    /// Whether an idle connection is ready for `placement` as it is (a shared connection switched
    /// to that tenant already): such a connection is taken before others of the idle list. The
    /// default says no.
    fn serves(_conn: &Self::Conn, _placement: &Placement) -> bool {
        false
    }

    /// Prepares a connection, new or idle, for `placement` just before it is handed out; must not
    /// wait for the server (queue statements instead). The default does nothing.
    fn checkout(_conn: &mut Self::Conn, _placement: &Placement) {}

    /// Whether what [`Backend::checkout`] queued took effect, once the server answered:
    /// `Ok` for a kind that queues nothing. The router asks it after the work of
    /// [`Router::with_connection`](crate::Router::with_connection) and before a repair.
    ///
    /// # Errors
    /// Why the checkout did not take effect (the work then fails).
    fn checked_out(_conn: &Self::Conn) -> Option<crate::shared::SwitchCheck> {
        None
    }
}

/// Why a connection could not be opened, classified for the router.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The server refused the login in a way a fresh placement may fix: a wrong password (rotated),
    /// or a role or database that does not exist (dropped, moved). The router re-reads the
    /// placement and tries once more.
    #[error("the login was refused")]
    LoginRefused(#[source] BoxError),
    /// The server refused the connection for now (`57P03`: starting up, shutting down or in
    /// recovery; `53300`: too many connections): the router tries again after a short wait (see
    /// [`Router::transaction`](crate::Router::transaction)'s retries), within the acquire timeout.
    #[error("the server cannot take the connection now")]
    Busy(#[source] BoxError),
    /// The server answered with another error: the tenant is unavailable for this request.
    #[error("the server refused the connection")]
    Refused(#[source] BoxError),
    /// The server could not be reached (connection refused, reset, no route): the tenant is
    /// unavailable, and the router considers the server down for
    /// [`RouterOptions::down_for`](crate::RouterOptions::down_for).
    #[error("cannot connect")]
    Unreachable(#[source] BoxError),
}

impl ConnectError {
    /// Classifies a failed connection by the SQLSTATE of the server's error response: `28P01`
    /// (wrong password), `28000` (no such role) and `3D000` (no such database) are
    /// [`LoginRefused`](Self::LoginRefused), `57P03` and `53300` [`Busy`](Self::Busy), any other
    /// is [`Refused`](Self::Refused), and no
    /// response at all is [`Unreachable`](Self::Unreachable).
    pub fn from_sqlstate(sqlstate: Option<&str>, source: impl Into<BoxError>) -> Self {
        match sqlstate {
            Some("28P01" | "28000" | "3D000") => Self::LoginRefused(source.into()),
            Some("57P03" | "53300") => Self::Busy(source.into()),
            Some(_) => Self::Refused(source.into()),
            None => Self::Unreachable(source.into()),
        }
    }
}

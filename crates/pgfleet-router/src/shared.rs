//! Shared connections: trusted callers ([`Router::client`](crate::Router::client),
//! [`Router::with_tenant`](crate::Router::with_tenant)) of schema-mode tenants are served from one
//! idle list per server of connections logged in as the fleet's **pool role** (it owns nothing,
//! holds no privilege, inherits none of the tenant roles it is a member of, and its `search_path`
//! resolves nothing). Each checkout that changes tenant queues one simple query, ahead of
//! anything the caller sends, and without waiting for the server:
//!
//! 1. `BEGIN; ROLLBACK; BEGIN; SET SESSION AUTHORIZATION DEFAULT; COMMIT` — whatever the last
//!    tenant left open is rolled back and the session is the pool role again, committed on its
//!    own, so nothing below can bring the last tenant's role back. (`BEGIN` first: a `ROLLBACK` with no
//!    transaction open would write a warning to the server's log on every switch. A transaction
//!    the last user left *failed* makes `BEGIN` fail: the switch fails, the connection is closed,
//!    and [`Router::with_tenant`](crate::Router::with_tenant) runs the work once more on another
//!    connection, since nothing of it ran;)
//! 2. then, in the same query, one implicit transaction that clears the last tenant's session —
//!    `CLOSE ALL`, `RESET ALL`, `UNLISTEN *`, `pg_advisory_unlock_all()`, `DISCARD TEMP`, `DISCARD
//!    SEQUENCES`, the prepared statements made with SQL `PREPARE` (not the driver's: deallocating
//!    those would break tokio-postgres's cached type look-ups) — then `SET ROLE` the tenant and
//!    `SET search_path`: one call of the directory's switch function when it has one
//!    ([`SharedLogin::switch_function`](crate::SharedLogin::switch_function)), else those statements.
//!
//! A connection handed back to the tenant it serves already gets nothing: what that tenant left is
//! its own, as on a connection logged in as it. `DISCARD ALL` would do most of the reset but cannot
//! run inside a multi-statement query. The answers are
//! read in the background ([`SwitchCheck`]). **Fail-closed**: if step 2 fails, all of it is rolled
//! back and the session stays the pool role (committed in step 1), which can do nothing, so the caller's work fails; the
//! router then reports [`RouterError::RoleSwitch`](crate::RouterError::RoleSwitch) (never a repair)
//! and closes the connection.

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::task::{Context, Poll};

use pgfleet_schema::quote::{ident, literal};
use tokio::sync::watch;
use tokio_postgres::Client;

use crate::backend::{Backend, ConnectError};
use crate::directory::Placement;
use crate::pool::BudgetPermit;

/// The idle list of shared connections (one per server and kind; tenants' keys never start with
/// a NUL byte).
pub(crate) const SHARED_KEY: &str = "\0shared";

/// The outcome of a checkout's switch, known once the server answered it.
#[derive(Debug, Clone)]
pub struct SwitchCheck(watch::Receiver<Option<Result<(), SwitchFailure>>>);

/// Why a switch did not take effect.
#[derive(Debug, Clone)]
pub(crate) struct SwitchFailure {
    /// The server's answer.
    pub(crate) cause: String,
    /// The connection's last user left a failed transaction (the tenant is not to blame).
    pub(crate) stale: bool,
}

impl SwitchCheck {
    /// Waits for the server's answer: `Err` with the reason when the switch did not take effect.
    ///
    /// # Errors
    /// The server's error, or "connection closed".
    pub async fn outcome(&mut self) -> Result<(), String> {
        self.failure().await.map_err(|f| f.cause)
    }

    /// As [`SwitchCheck::outcome`], with whether a stale failed transaction was the cause.
    pub(crate) async fn failure(&mut self) -> Result<(), SwitchFailure> {
        match self.0.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or(Ok(())),
            Err(_) => Err(SwitchFailure {
                cause: "the switch's task ended without an answer".into(),
                stale: false,
            }),
        }
    }

    /// Failed already (the answer is in and it is an error).
    fn failed(&self) -> bool {
        matches!(&*self.0.borrow(), Some(Err(_)))
    }
}

/// A shared connection: a tokio-postgres client of the pool role (dereferences to it), switched
/// to its current tenant.
pub struct SharedConn {
    client: Arc<Client>,
    switch: Option<SwitchCheck>,
    /// The tenant role it was last switched to.
    role: Option<String>,
}

impl Deref for SharedConn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::fmt::Debug for SharedConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedConn").finish_non_exhaustive()
    }
}

/// Shared connections of the pool role ([`SharedConn`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SharedPgBackend;

/// What a checkout's query starts with: the last tenant's transaction rolled back (`BEGIN` first,
/// so that a `ROLLBACK` with no transaction open writes no warning to the server's log), then
/// the pool role again in a transaction committed on its own, so that nothing after it can bring
/// the last tenant's role back.
pub(crate) const RESET_ROLE: &str =
    "BEGIN; ROLLBACK; BEGIN; SET SESSION AUTHORIZATION DEFAULT; COMMIT";

/// The session cleared, then the switch, in one implicit transaction: `role` and `search_path`
/// come from the catalog (names pgfleet made), quoted anyway. With the directory's switch
/// `function` (see [`SharedLogin::switch_function`](crate::SharedLogin::switch_function)), cursors
/// are closed and the function does the rest.
pub(crate) fn switch_sql(role: &str, search_path: &str, function: Option<&str>) -> String {
    if let Some(f) = function {
        let path = search_path_sql(search_path);
        let value = if path == literal("") {
            String::new()
        } else {
            path
        };
        return format!(
            "CLOSE ALL; SELECT {f}({}, {})",
            literal(role),
            literal(&value)
        );
    }
    format!(
        "CLOSE ALL; RESET ALL; UNLISTEN *; SELECT pg_catalog.pg_advisory_unlock_all(); \
         DISCARD TEMP; DISCARD SEQUENCES; \
         DO $pgfleet$ DECLARE n text; BEGIN \
           FOR n IN SELECT name FROM pg_catalog.pg_prepared_statements WHERE from_sql LOOP \
             EXECUTE 'DEALLOCATE ' || pg_catalog.quote_ident(n); \
           END LOOP; END $pgfleet$; \
         SET ROLE {}; SET search_path = {}",
        ident(role),
        search_path_sql(search_path)
    )
}

/// `SET search_path = ` takes a list of names: each quoted (the placement gives them
/// comma-separated).
pub(crate) fn search_path_sql(path: &str) -> String {
    let names: Vec<String> = path
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| ident(s.trim_matches('"')))
        .collect();
    if names.is_empty() {
        literal("")
    } else {
        names.join(", ")
    }
}

impl Backend for SharedPgBackend {
    type Conn = SharedConn;
    type Error = tokio_postgres::Error;

    async fn connect(
        &self,
        placement: &Placement,
        permit: BudgetPermit,
    ) -> Result<SharedConn, ConnectError> {
        let Some(shared) = &placement.shared else {
            return Err(ConnectError::Refused(
                "the tenant has no shared login".into(),
            ));
        };
        let client = crate::connect::PgBackend
            .connect_config(&shared.config, permit)
            .await?;
        Ok(SharedConn {
            client: Arc::new(client),
            switch: None,
            role: None,
        })
    }

    fn is_closed(conn: &SharedConn) -> bool {
        conn.client.is_closed() || conn.switch.as_ref().is_some_and(SwitchCheck::failed)
    }

    fn sqlstate(error: &tokio_postgres::Error) -> Option<&str> {
        error.code().map(|c| c.code())
    }

    fn idle_key(_placement: &Placement) -> &str {
        SHARED_KEY
    }

    fn serves(conn: &SharedConn, placement: &Placement) -> bool {
        placement
            .shared
            .as_ref()
            .is_some_and(|s| conn.role.as_deref() == Some(s.role.as_str()))
    }

    fn checkout(conn: &mut SharedConn, placement: &Placement) {
        let Some(shared) = &placement.shared else {
            return;
        };
        if conn.role.as_deref() == Some(shared.role.as_str()) {
            // Back to the tenant it serves already (its switch took effect, or the connection
            // would have been closed): nothing to send, as for a connection logged in as it.
            return;
        }
        conn.role = Some(shared.role.clone());
        let client = conn.client.clone();
        let switch = switch_sql(
            &shared.role,
            &shared.search_path,
            shared.switch_function.as_deref(),
        );
        let sql = format!("{RESET_ROLE}; {switch}");
        let mut work = Box::pin(async move {
            match client.batch_execute(&sql).await {
                Ok(()) => Ok(()),
                Err(e) => Err(SwitchFailure {
                    stale: e.code()
                        == Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION),
                    cause: crate::error::describe(&e),
                }),
            }
        });
        let (tx, rx) = watch::channel(None);
        // One poll sends the message (tokio-postgres queues a request when its future is first
        // polled), so it reaches the server before anything the caller sends on this client.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match work.as_mut().poll(&mut cx) {
            Poll::Ready(r) => {
                let _ = tx.send(Some(r));
            }
            Poll::Pending => {
                tokio::spawn(async move {
                    let r = work.await;
                    if let Err(e) = &r {
                        metrics::counter!("pgfleet_router_role_switch_failures_total").increment(1);
                        tracing::warn!(
                            "a shared connection did not switch to its tenant: {}",
                            e.cause
                        );
                    }
                    let _ = tx.send(Some(r));
                });
            }
        }
        conn.switch = Some(SwitchCheck(rx));
    }

    fn checked_out(conn: &SharedConn) -> Option<SwitchCheck> {
        conn.switch.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_quotes_what_it_names() {
        let sql = switch_sql("pgfleet_t0123", "t0123, public", None);
        assert!(
            sql.ends_with("SET ROLE pgfleet_t0123; SET search_path = t0123, public"),
            "{sql}"
        );
        assert!(switch_sql("a\"b", "x", None).contains("SET ROLE \"a\"\"b\""));
        assert!(switch_sql("r", "", None).ends_with("SET search_path = ''"));
        assert_eq!(
            switch_sql("a'b", "t1, public", Some("f.switch_to")),
            "CLOSE ALL; SELECT f.switch_to('a''b', 't1, public')"
        );
        assert_eq!(
            switch_sql("r", "", Some("f.s")),
            "CLOSE ALL; SELECT f.s('r', '')"
        );
    }
}

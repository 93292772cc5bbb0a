//! [`RouterError`]: why a tenant could not be served, with questions for callers.
//!
//! Each cause is printed once: a variant that wraps an error either names it as its `source()` and
//! leaves it out of its message, or shows it in its message and does not return it as a source.
//! Print the whole chain (`{:#}` with `anyhow`) to see every cause.

use std::time::Duration;

use tokio_postgres::error::SqlState;

use crate::directory::{BoxError, DirectoryError};

/// Why a tenant could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    /// No ready tenant has this key (and the policy is to reject it).
    #[error(
        "no ready tenant with key {0:?}: create it with `pgfleet tenant create KEY` (or `Fleet::provision`)"
    )]
    TenantNotFound(String),
    /// The tenant's server did not answer, or refused the connection.
    #[error("tenant {key:?} is unavailable: server {server:?}: {cause}")]
    Unavailable {
        /// The key.
        key: String,
        /// Its server.
        server: String,
        /// What failed (PostgreSQL's message and SQLSTATE when the server sent one).
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
    #[error(
        "tenant {key:?}: the query failed{}{}",
        code_suffix(sqlstate.as_ref()),
        if *healed { " after a repair and one retry" } else { "" }
    )]
    Query {
        /// The key.
        key: String,
        /// The connection's error: a [`tokio_postgres::Error`] for [`Router::client`] and
        /// [`Router::with_tenant`] (see [`RouterError::db_error`]), the connection kind's own
        /// error ([`Backend::Error`]) for [`Router::with_connection`].
        ///
        /// [`Router::client`]: crate::Router::client
        /// [`Router::with_tenant`]: crate::Router::with_tenant
        /// [`Router::with_connection`]: crate::Router::with_connection
        /// [`Backend::Error`]: crate::Backend::Error
        #[source]
        source: BoxError,
        /// Its SQLSTATE, when the server sent one.
        sqlstate: Option<SqlState>,
        /// A repair ran before this attempt.
        healed: bool,
    },
    /// The query failed with an error a repair should fix, and the repair failed. The query's
    /// error is in the message; the repair's is the source.
    #[error(
        "tenant {key:?}: {}; repairing its schema after this error failed",
        describe(error.as_ref())
    )]
    RepairFailed {
        /// The key.
        key: String,
        /// The query's error (as in [`RouterError::Query`]).
        error: BoxError,
        /// The query's SQLSTATE.
        sqlstate: Option<SqlState>,
        /// Why the repair failed.
        #[source]
        repair: DirectoryError,
    },
    /// A shared connection did not switch to the tenant (the pool role is not a member of the
    /// tenant's role, or the server refused the switch): the work ran as the pool role, which can
    /// do nothing, and failed or did nothing. The connection is closed and the tenant's trusted
    /// callers log in as its own role from now on in this process.
    #[error(
        "tenant {key:?}: the shared connection did not switch to the tenant's role ({cause}); nothing ran as the tenant. Retry: the next attempt logs in as the tenant (a pgfleet process grants the pool role's missing memberships when it first uses the server)"
    )]
    RoleSwitch {
        /// The key.
        key: String,
        /// The server's answer to the switch.
        cause: String,
        /// The connection's last user had left a failed transaction on it: the tenant is not to
        /// blame, and its trusted callers keep sharing connections.
        stale_transaction: bool,
    },
    /// The connection broke after a transaction's `COMMIT` was sent and before the server
    /// answered: it may or may not have committed (SQLSTATE `08007`, transaction resolution
    /// unknown). Never retried by the router; check before running it again.
    #[error(
        "tenant {key:?}: the connection broke after COMMIT was sent; the transaction may or may not have committed (SQLSTATE 08007): check before running it again"
    )]
    OutcomeUnknown {
        /// The key.
        key: String,
        /// The connection's error.
        #[source]
        source: BoxError,
    },
    /// The directory (the catalog) could not place the tenant: reading its placement, or
    /// provisioning it on first use ([`UnknownPolicy::Provision`](crate::UnknownPolicy::Provision)),
    /// failed.
    #[error("tenant {key:?}: finding where it lives failed")]
    Directory {
        /// The key.
        key: String,
        /// What failed.
        #[source]
        source: DirectoryError,
    },
}

fn code_suffix(sqlstate: Option<&SqlState>) -> String {
    sqlstate.map_or_else(String::new, |s| format!(" with SQLSTATE {}", s.code()))
}

/// SQLSTATEs after which running the same statement again may succeed: `serialization_failure`,
/// `deadlock_detected`, `lock_not_available`, `too_many_connections`, the server shutting down or
/// starting (`57P01`–`57P03`), and every connection exception (class `08`).
fn is_retryable_sqlstate(code: &str) -> bool {
    matches!(
        code,
        "40001" | "40P01" | "55P03" | "53300" | "57P01" | "57P02" | "57P03"
    ) || code.starts_with("08")
}

impl RouterError {
    /// No tenant with this key: none is ready under it (and the policy rejects unknown keys), or
    /// the directory says there is none.
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::TenantNotFound(_) => true,
            Self::Directory { source, .. } => source.is_not_found(),
            _ => false,
        }
    }

    /// The tenant's server could not be reached or refused the connection.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// No connection in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// Trying the same thing again later may succeed: the server was unavailable, no connection
    /// came in time, the directory was unreachable or the tenant still being provisioned, or the
    /// query failed with a transient SQLSTATE (serialization failure, deadlock, lock timeout, a
    /// connection exception, the server shutting down) or on a closed connection. Whether a
    /// statement that may have run can safely run again is the caller's call.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable { .. } | Self::Timeout { .. } | Self::RoleSwitch { .. } => true,
            Self::Directory { source, .. } => source.is_retryable(),
            Self::RepairFailed { repair, .. } => repair.is_retryable(),
            Self::Query {
                source, sqlstate, ..
            } => {
                sqlstate
                    .as_ref()
                    .is_some_and(|s| is_retryable_sqlstate(s.code()))
                    || source
                        .downcast_ref::<tokio_postgres::Error>()
                        .is_some_and(tokio_postgres::Error::is_closed)
            }
            Self::TenantNotFound(_) | Self::OutcomeUnknown { .. } => false,
        }
    }

    /// A transaction's outcome is unknown ([`RouterError::OutcomeUnknown`]).
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Self::OutcomeUnknown { .. })
    }

    /// A repair ran (and the operation was retried) before this error.
    pub fn healed(&self) -> bool {
        matches!(self, Self::Query { healed: true, .. })
    }

    /// The SQLSTATE of the query's error, when the server sent one (for every connection kind).
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Self::Query { sqlstate, .. } | Self::RepairFailed { sqlstate, .. } => {
                sqlstate.as_ref().map(SqlState::code)
            }
            Self::OutcomeUnknown { .. } => Some("08007"),
            _ => None,
        }
    }

    /// PostgreSQL's error, when the query itself failed on a tokio-postgres connection
    /// ([`Router::client`](crate::Router::client), [`Router::with_tenant`](crate::Router::with_tenant)).
    pub fn db_error(&self) -> Option<&tokio_postgres::error::DbError> {
        match self {
            Self::Query { source: e, .. } | Self::RepairFailed { error: e, .. } => e
                .downcast_ref::<tokio_postgres::Error>()
                .and_then(tokio_postgres::Error::as_db_error),
            _ => None,
        }
    }
}

/// One line for an error and its causes: PostgreSQL's severity, message and SQLSTATE for a
/// tokio-postgres database error, else the chain as [`pgfleet_pg::chain`] writes it (each cause
/// once).
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    if let Some(db) = e
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::as_db_error)
    {
        return format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
    }
    pgfleet_pg::chain(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message of `e` and of each of its sources, in order.
    fn chain(e: &(dyn std::error::Error + 'static)) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut next = e.source();
        while let Some(c) = next {
            out.push(c.to_string());
            next = c.source();
        }
        out
    }

    fn io(text: &str) -> BoxError {
        Box::new(std::io::Error::other(text.to_string()))
    }

    #[test]
    fn each_cause_is_printed_once() {
        let cases: Vec<(RouterError, &str)> = vec![
            (
                RouterError::Query {
                    key: "k".into(),
                    source: io("relation \"tags\" does not exist"),
                    sqlstate: Some(SqlState::UNDEFINED_TABLE),
                    healed: true,
                },
                "relation \"tags\" does not exist",
            ),
            (
                RouterError::RepairFailed {
                    key: "k".into(),
                    error: io("relation \"tags\" does not exist"),
                    sqlstate: Some(SqlState::UNDEFINED_TABLE),
                    repair: DirectoryError::RepairFailed {
                        key: "k".into(),
                        source: io("permission denied for schema s"),
                    },
                },
                "permission denied for schema s",
            ),
            (
                RouterError::Directory {
                    key: "k".into(),
                    source: DirectoryError::Unavailable(io("connection refused")),
                },
                "connection refused",
            ),
            (
                RouterError::Directory {
                    key: "k".into(),
                    source: DirectoryError::Other(io("the master key does not open it")),
                },
                "the master key does not open it",
            ),
        ];
        for (e, cause) in cases {
            let chain = chain(&e);
            let all = chain.join(": ");
            assert_eq!(all.matches(cause).count(), 1, "{all}");
            // A repair's failure names the query's error once too (in the message only).
            if let RouterError::RepairFailed { .. } = e {
                assert_eq!(all.matches("does not exist").count(), 1, "{all}");
            }
        }
    }

    #[test]
    fn questions() {
        let query = |code: &str| RouterError::Query {
            key: "k".into(),
            source: io("x"),
            sqlstate: Some(SqlState::from_code(code)),
            healed: false,
        };
        assert_eq!(query("42P01").sqlstate(), Some("42P01"));
        assert!(!query("42P01").is_retryable());
        assert!(query("40001").is_retryable());
        assert!(query("08006").is_retryable());
        assert!(
            query("42P01").db_error().is_none(),
            "not a tokio-postgres error"
        );
        assert!(query("42P01").to_string().contains("SQLSTATE 42P01"));
        let dir = |source| RouterError::Directory {
            key: "k".into(),
            source,
        };
        assert!(dir(DirectoryError::UnknownTenant("k".into())).is_not_found());
        assert!(dir(DirectoryError::Unavailable(io("down"))).is_retryable());
        assert!(
            dir(DirectoryError::NotReady {
                key: "k".into(),
                source: None
            })
            .is_retryable()
        );
        assert!(
            !dir(DirectoryError::ProvisionFailed {
                key: "k".into(),
                source: io("no room")
            })
            .is_retryable()
        );
        assert!(RouterError::TenantNotFound("k".into()).is_not_found());
        assert!(!RouterError::TenantNotFound("k".into()).is_retryable());
    }

    #[test]
    fn describe_joins_the_chain() {
        let e = RouterError::Directory {
            key: "k".into(),
            source: DirectoryError::Unavailable(io("refused")),
        };
        assert_eq!(
            describe(&e),
            "tenant \"k\": finding where it lives failed: the directory is unavailable: refused"
        );
    }
}

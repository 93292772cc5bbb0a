//! The migrator's session before it changes anything, in two round trips when nobody else
//! migrates: its own connection ([`connect_dedicated`]), a probe of the database ([`Probe`]), and the
//! lock taken together with the history ([`lock()`]). Both are sent with the simple protocol (nothing
//! to prepare), so the scope is quoted into their text by [`literal`].

use std::time::{Duration, Instant};

use pgfleet_pg::{PgError, connect, describe};
use pgfleet_schema::quote::literal;
use tokio_postgres::{Client, Config, SimpleQueryMessage};

use super::error::MigrateError;
use super::options::MigrateEvent;
use crate::history::{self, HistoryRow};
use crate::lock;

/// Opens the migrator's own connection.
///
/// # Errors
/// When the server cannot be reached.
pub async fn connect_dedicated(config: &Config) -> Result<Client, PgError> {
    let mut config = config.clone();
    if config.get_application_name().is_none() {
        config.application_name("pgfleet migrate");
    }
    let client = connect::connect(&config).await?;
    // PostgreSQL 14+: end the session soon after the client vanishes (kill -9), releasing the lock
    // and rolling back the open transaction without waiting for a long statement to finish.
    if let Err(e) = client
        .batch_execute("SET client_connection_check_interval = 1000")
        .await
    {
        tracing::debug!("client_connection_check_interval not set: {}", describe(&e));
    }
    Ok(client)
}

/// What the first round trip learns.
pub(super) struct Probe {
    /// The database's name (the lock key is derived from it).
    pub(super) database: String,
    /// Whether the scope's schema exists (always, for the whole database).
    pub(super) scope_exists: bool,
    /// Whether `pgfleet_migrate.history` exists.
    pub(super) has_history: bool,
}

impl Probe {
    /// One round trip (simple protocol, nothing to prepare): the database, the scope, the history.
    pub(super) async fn read(client: &Client, scope: &str) -> Result<Self, MigrateError> {
        let probe = client
            .simple_query(&format!(
                "SELECT pg_catalog.current_database()::text, {}, pg_catalog.to_regclass('pgfleet_migrate.history') IS NOT NULL",
                if scope.is_empty() {
                    "true".to_string()
                } else {
                    format!(
                        "EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = {})",
                        literal(scope)
                    )
                }
            ))
            .await
            .map_err(|e| PgError::query("looking for the schema", e))?;
        match probe.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        }) {
            Some(r) => Ok(Self {
                database: r.get(0).unwrap_or_default().to_string(),
                scope_exists: r.get(1) == Some("t"),
                has_history: r.get(2) == Some("t"),
            }),
            None => Err(PgError::Catalog("looking for the schema: no row".into()).into()),
        }
    }
}

/// The lock, taken.
pub(super) struct Locked {
    /// How long taking it took.
    pub(super) waited: Duration,
    /// Whether the history table is known to exist: false when it did not at the probe, or when
    /// this run waited (another migrator may have created it meanwhile).
    pub(super) has_history: bool,
    /// The history of the scope, read with the lock when it was free at once and the table existed.
    pub(super) rows: Option<Vec<HistoryRow>>,
}

/// Takes the migration lock `key`. The common case is one round trip: the lock is free, and the
/// history of `scope` (when `has_history`) is read with it. Otherwise reports who holds it and
/// polls ([`lock::acquire`]) until `lock_wait`.
///
/// # Errors
/// [`MigrateError::LockTimeout`] when `lock_wait` passed; a query error.
pub(super) async fn lock(
    client: &Client,
    key: i64,
    scope: &str,
    has_history: bool,
    lock_wait: Duration,
    progress: &mut impl FnMut(MigrateEvent),
) -> Result<Locked, MigrateError> {
    let started = Instant::now();
    let mut waited_at_all = false;
    let quick = if has_history {
        format!(
            "SELECT pg_catalog.pg_try_advisory_lock({key}); {}",
            history::rows_sql(&[scope])
        )
    } else {
        format!("SELECT pg_catalog.pg_try_advisory_lock({key})")
    };
    let messages = client
        .simple_query(&quick)
        .await
        .map_err(|e| PgError::query("taking the migration lock", e))?;
    let first_done = messages
        .iter()
        .position(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
        .unwrap_or(messages.len());
    let got = messages[..first_done]
        .iter()
        .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("t")));
    let mut rows = None;
    if got {
        if has_history {
            let scoped = history::parse_simple(&messages[first_done + 1..])?;
            rows = Some(scoped.into_iter().map(|(_, row)| row).collect());
        }
    } else {
        // Another migrator holds it: say so now (this attempt was the first), then poll.
        waited_at_all = true;
        progress(MigrateEvent::WaitingForLock {
            holder: lock::holder(client, key).await.ok().flatten(),
        });
        match lock::acquire(client, key, lock_wait, |_| {}).await? {
            Ok(()) => {}
            Err(holder) => {
                return Err(MigrateError::LockTimeout {
                    waited: started.elapsed(),
                    holder,
                });
            }
        }
    }
    let waited = started.elapsed();
    if waited_at_all {
        progress(MigrateEvent::LockTaken { waited });
    }
    Ok(Locked {
        waited,
        // Another migrator may have created the history while this one waited for the lock.
        has_history: has_history && !waited_at_all,
        rows,
    })
}

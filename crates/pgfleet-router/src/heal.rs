//! Heal and retry: [`Router::with_tenant`] and [`Router::with_connection`] run a closure with a
//! connection; when it fails because the tenant's schema misses a table, column or schema, the
//! directory repairs the tenant (one repair at a time per tenant in the process; the directory
//! serializes processes) and the closure runs once more. A repair that finds nothing to do
//! returns the original error, and the tenant is not repaired again for a cooldown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use tokio_postgres::error::SqlState;

use crate::backend::Backend;
use crate::client::{Pooled, TenantClient};
use crate::connect::PgBackend;
use crate::directory::{Directory, DirectoryError};
use crate::error::{RouterError, describe};
use crate::router::Router;
use crate::shared::{SharedPgBackend, SwitchCheck};
use crate::snapshot::Entry;

/// SQLSTATEs that mean "the tenant's schema misses something": `undefined_table`,
/// `undefined_column`, `invalid_schema_name`.
pub fn is_healable(e: &tokio_postgres::Error) -> bool {
    is_healable_sqlstate(<PgBackend as Backend>::sqlstate(e))
}

/// Whether an error with this SQLSTATE may be healed by a repair: `undefined_table` (`42P01`),
/// `undefined_column` (`42703`), `invalid_schema_name` (`3F000`).
pub fn is_healable_sqlstate(code: Option<&str>) -> bool {
    matches!(code, Some("42P01" | "42703" | "3F000"))
}

pub(crate) enum Healing {
    Retry,
    NotHealed,
    Failed(DirectoryError),
}

impl<D: Directory> Router<D> {
    /// Runs `f` with a connection to tenant `key`. When it fails because the tenant's schema
    /// misses a table, column or schema, the tenant is repaired and `f` runs once more (see the
    /// crate documentation).
    ///
    /// # Errors
    /// As [`Router::client`]; [`RouterError::Query`] with the error of the last attempt
    /// ([`RouterError::healed`] tells whether a repair ran); [`RouterError::RepairFailed`].
    pub async fn with_tenant<T, F, Fut>(&self, key: &str, mut f: F) -> Result<T, RouterError>
    where
        F: FnMut(TenantClient) -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let entry = self.snapshot.entry(key).await?;
        if self.shares(&entry) {
            let mut r = self
                .with_connection(key, &SharedPgBackend, |c| f(TenantClient::shared(c)))
                .await;
            if matches!(
                r,
                Err(RouterError::RoleSwitch {
                    stale_transaction: true,
                    ..
                })
            ) {
                // The connection's last user left a failed transaction: nothing of `f` ran, and
                // that connection is closed. Once more, on another.
                r = self
                    .with_connection(key, &SharedPgBackend, |c| f(TenantClient::shared(c)))
                    .await;
            }
            if matches!(
                r,
                Err(RouterError::RoleSwitch {
                    stale_transaction: false,
                    ..
                })
            ) {
                // Log in as the tenant from now on (in this process).
                entry.unshared.store(true, Ordering::Relaxed);
            }
            return r;
        }
        self.with_connection(key, &PgBackend, |c| f(TenantClient::own(c)))
            .await
    }

    /// As [`Router::with_tenant`], with a connection of kind `B`: healing acts on the SQLSTATE
    /// that [`Backend::sqlstate`] reads from `f`'s error.
    ///
    /// # Errors
    /// As [`Router::with_tenant`]; the source of [`RouterError::Query`] is `f`'s error.
    pub async fn with_connection<B, T, F, Fut>(
        &self,
        key: &str,
        backend: &B,
        mut f: F,
    ) -> Result<T, RouterError>
    where
        B: Backend,
        F: FnMut(Pooled<B>) -> Fut,
        Fut: Future<Output = Result<T, B::Error>>,
    {
        let entry = self.snapshot.entry(key).await?;
        let generation = entry.repairs.load(Ordering::Acquire);
        let seen = SystemTime::now();
        let conn = self.connection(key, backend).await?;
        let check = B::checked_out(&conn);
        let result = f(conn).await;
        // The work of a connection that did not switch to the tenant ran as nobody: it fails.
        switched(key, check).await?;
        let error = match result {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let sqlstate = B::sqlstate(&error).map(SqlState::from_code);
        let code = sqlstate.as_ref().map(SqlState::code);
        if !is_healable_sqlstate(code) || entry.fallback {
            return Err(query_error::<B>(key, error, false));
        }
        // The reason recorded with the repair: the error with its SQLSTATE.
        let mut reason = describe(&error);
        if let Some(code) = code
            && !reason.contains(code)
        {
            reason = format!("{reason} ({code})");
        }
        match self.heal(&entry, generation, &reason, seen).await {
            Healing::Retry => {
                let conn = self.connection(key, backend).await?;
                let check = B::checked_out(&conn);
                let result = f(conn).await;
                switched(key, check).await?;
                result.map_err(|e| query_error::<B>(key, e, true))
            }
            Healing::NotHealed => Err(query_error::<B>(key, error, false)),
            Healing::Failed(repair) => Err(RouterError::RepairFailed {
                key: key.into(),
                error: Box::new(error),
                sqlstate,
                repair,
            }),
        }
    }

    /// Asks the directory to repair the tenant after `error` (seen at `seen`), unless another
    /// task repaired it since `generation` or a repair found nothing to do within the cooldown.
    pub(crate) async fn heal(
        &self,
        entry: &Arc<Entry>,
        generation: u64,
        error: &str,
        seen: SystemTime,
    ) -> Healing {
        let mut last_empty = entry.repair.lock().await;
        if entry.repairs.load(Ordering::Acquire) != generation {
            return Healing::Retry; // repaired while this task waited
        }
        if last_empty.is_some_and(|t| t.elapsed() < self.snapshot.opts.repair_cooldown) {
            return Healing::NotHealed;
        }
        let key = &entry.placement.key;
        let started = Instant::now();
        match self.snapshot.directory.repair(key, error, seen).await {
            Ok(r) if !r.applied.is_empty() || r.repaired_elsewhere => {
                entry.repairs.fetch_add(1, Ordering::Release);
                // What was read before the repair may differ from what is there now.
                self.snapshot.cache.invalidate(
                    key,
                    &entry.placement.tenant_id,
                    crate::cache::Scope::All { schema: true },
                );
                metrics::counter!("pgfleet_router_repairs_total", "outcome" => "repaired")
                    .increment(1);
                tracing::info!(
                    tenant = %key,
                    repaired = ?r.applied,
                    elsewhere = r.repaired_elsewhere,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "repaired the tenant's schema after: {error}"
                );
                Healing::Retry
            }
            Ok(_) => {
                *last_empty = Some(Instant::now());
                metrics::counter!("pgfleet_router_repairs_total", "outcome" => "nothing")
                    .increment(1);
                Healing::NotHealed
            }
            Err(e) => {
                *last_empty = Some(Instant::now());
                metrics::counter!("pgfleet_router_repairs_total", "outcome" => "failed")
                    .increment(1);
                Healing::Failed(e)
            }
        }
    }
}

/// [`RouterError::RoleSwitch`] when a checkout's switch did not take effect.
async fn switched(key: &str, check: Option<SwitchCheck>) -> Result<(), RouterError> {
    match check {
        Some(mut c) => c.failure().await.map_err(|f| RouterError::RoleSwitch {
            key: key.into(),
            cause: f.cause,
            stale_transaction: f.stale,
        }),
        None => Ok(()),
    }
}

pub(crate) fn query_error<B: Backend>(key: &str, error: B::Error, healed: bool) -> RouterError {
    RouterError::Query {
        key: key.into(),
        sqlstate: B::sqlstate(&error).map(SqlState::from_code),
        source: Box::new(error),
        healed,
    }
}

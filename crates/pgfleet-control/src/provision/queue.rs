//! The operations queue: any process claims runnable operations (`FOR UPDATE SKIP LOCKED` style,
//! with a lease) and, holding a session advisory lock on the tenant in the catalog, runs them. A
//! failing step is recorded and retried with backoff, then the tenant is `failed`.

use std::time::{Duration, Instant};

use crate::catalog::{operations, tenants};
use crate::{Control, ControlError, events, q};

/// How long a claimed operation stays leased without progress.
pub const LEASE: Duration = Duration::from_secs(60);

impl Control {
    /// Runs queued operations (of one tenant, or any) until none is runnable now. Returns how many
    /// it ran. Any number of processes may call this at once.
    ///
    /// Mutual exclusion is a session advisory lock per tenant on a catalog connection of this
    /// worker: PostgreSQL releases it the moment a worker dies, so a crashed worker's operation is
    /// taken over at once (the lease in the row only shows who works on it).
    ///
    /// # Errors
    /// Catalog errors (a failing step is recorded, not returned).
    pub async fn run_queued(&self, tenant_id: Option<&str>) -> Result<usize, ControlError> {
        let mut ran = 0;
        loop {
            let candidates = operations::runnable(&*self.catalog(), tenant_id).await?;
            let mut progressed = false;
            for (op, tid) in candidates {
                if self.is_stopping() {
                    return Ok(ran);
                }
                let Some(_working) = Working::enter(self, &tid) else {
                    continue; // another task of this process has it
                };
                if !self.tenant_lock(&tid, true).await? {
                    continue; // a live worker of another process has it
                }
                let claimed =
                    operations::claim(&*self.catalog(), op, &self.inner.worker, LEASE).await;
                let result = match claimed {
                    Ok(Some((kind, attempts))) if kind == "provision" => {
                        self.run_provision(op, &tid, attempts).await.map(|()| true)
                    }
                    Ok(Some(_)) => operations::fail_unknown_kind(&*self.catalog(), op)
                        .await
                        .map(|()| true),
                    Ok(None) => Ok(false),
                    Err(e) => Err(e),
                };
                let _ = self.tenant_lock(&tid, false).await;
                if result? {
                    ran += 1;
                    progressed = true;
                }
            }
            if !progressed {
                return Ok(ran);
            }
        }
    }

    /// Takes (`lock`) or releases the cross-process lock of a tenant on this process's lock session.
    async fn tenant_lock(&self, tenant_id: &str, lock: bool) -> Result<bool, ControlError> {
        let sql = if lock {
            "SELECT pg_try_advisory_lock($1)"
        } else {
            "SELECT pg_advisory_unlock($1)"
        };
        let rows = self
            .on_lock_session(sql, &[&tenant_lock(tenant_id)], "locking the tenant")
            .await?;
        Ok(rows.first().is_some_and(|r| r.get(0)))
    }

    /// Runs `sql` on this process's lock session ([`Control::lock_session`]).
    pub(crate) async fn on_lock_session(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        what: &'static str,
    ) -> Result<Vec<tokio_postgres::Row>, ControlError> {
        self.lock_session()
            .await?
            .query(sql, params)
            .await
            .map_err(q(what))
    }

    async fn run_provision(
        &self,
        op: i64,
        tenant_id: &str,
        attempts: i32,
    ) -> Result<(), ControlError> {
        let started = Instant::now();
        let result = tracing::Instrument::instrument(
            self.provision_steps(op, tenant_id),
            tracing::info_span!("provision", tenant_id),
        )
        .await;
        let c = self.catalog();
        match result {
            Ok(()) => {
                metrics::counter!("pgfleet_operations_total", "kind" => "provision", "outcome" => "done")
                    .increment(1);
                metrics::histogram!("pgfleet_provision_duration_seconds")
                    .record(started.elapsed().as_secs_f64());
                operations::done(&*c, op).await?;
            }
            Err(e) => {
                // Whatever failed, the shared databases are checked again next time.
                self.inner
                    .shared_ready
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                let message = crate::chain(&e);
                let permanent = matches!(
                    e,
                    ControlError::NoCapacity(_)
                        | ControlError::UnknownServer(_)
                        | ControlError::NoTarget
                );
                let give_up = permanent || attempts >= self.config().provision_attempts;
                metrics::counter!("pgfleet_operations_total", "kind" => "provision",
                    "outcome" => if give_up { "failed" } else { "retry" })
                .increment(1);
                let backoff = Duration::from_secs_f64(
                    (self.config().retry_backoff.as_secs_f64() * 2f64.powi(attempts - 1)).min(60.0),
                );
                tracing::warn!(
                    tenant = tenant_id,
                    attempt = attempts,
                    "provisioning step failed: {message}"
                );
                operations::failed(&*c, op, give_up, backoff, &message).await?;
                let key = tenants::step_failed(&*c, tenant_id, &message, give_up).await?;
                events::record(
                    &c,
                    Some(tenant_id),
                    key.as_deref(),
                    if give_up {
                        "tenant.failed"
                    } else {
                        "tenant.step_failed"
                    },
                    serde_json::json!({"error": message, "attempt": attempts}),
                )
                .await?;
            }
        }
        Ok(())
    }
}

fn tenant_lock(id: &str) -> i64 {
    pgfleet_migrate::lock::key("pgfleet-tenant", id)
}

/// Marks a tenant as worked on by a task of this process until dropped.
struct Working<'a> {
    control: &'a Control,
    tenant: String,
}

impl<'a> Working<'a> {
    fn enter(control: &'a Control, tenant: &str) -> Option<Self> {
        let mut set = control
            .inner
            .working
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        set.insert(tenant.to_string()).then(|| Self {
            control,
            tenant: tenant.to_string(),
        })
    }
}

impl Drop for Working<'_> {
    fn drop(&mut self) {
        let mut set = self
            .control
            .inner
            .working
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        set.remove(&self.tenant);
    }
}

/// Stops the process (prints `failpoint NAME reached`, then sleeps) when `PGFLEET_FAILPOINT` is
/// `name`, so a crash test can `kill -9` it there.
pub(super) fn failpoint(name: &str) {
    if std::env::var("PGFLEET_FAILPOINT").is_ok_and(|f| f == name) {
        eprintln!("failpoint {name} reached");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

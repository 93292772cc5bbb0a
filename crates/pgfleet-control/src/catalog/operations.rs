//! `pgfleet.operations`: the queue of provisioning work, one function per query (the SQL in
//! `sql/operation_*.sql`). An operation is claimed with a lease; the tenant's session advisory lock
//! (see `provision::queue`) is what excludes workers, the lease shows who works on it.

use tokio_postgres::GenericClient;

use crate::{ControlError, q};

/// The idempotency key of a tenant's provisioning: one operation per tenant, however many callers.
pub(crate) fn provision_key(tenant_id: &str) -> String {
    format!("provision:{tenant_id}")
}

/// Queues the tenant's provisioning unless it is queued (or done) already.
pub(crate) async fn enqueue_provision(
    c: &impl GenericClient,
    tenant_id: &str,
) -> Result<(), ControlError> {
    c.execute(
        include_str!("sql/operation_enqueue_provision.sql"),
        &[&tenant_id, &provision_key(tenant_id)],
    )
    .await
    .map_err(q("queueing the provisioning"))?;
    Ok(())
}

/// Queues a failed provisioning again, its attempts reset.
pub(crate) async fn requeue_failed_provision(
    c: &impl GenericClient,
    tenant_id: &str,
) -> Result<(), ControlError> {
    c.execute(
        include_str!("sql/operation_requeue_failed.sql"),
        &[&provision_key(tenant_id)],
    )
    .await
    .map_err(q("re-queueing the provisioning"))?;
    Ok(())
}

/// Queues the tenant's provisioning again whatever its state (`init --tenant KEY --reset`).
pub(crate) async fn requeue_provision(
    c: &impl GenericClient,
    tenant_id: &str,
) -> Result<(), ControlError> {
    c.execute(
        include_str!("sql/operation_requeue_provision.sql"),
        &[&tenant_id, &provision_key(tenant_id)],
    )
    .await
    .map_err(q("queueing the reset"))?;
    Ok(())
}

/// Operations that may run now, `(operation, tenant)`, of one tenant or any, oldest first.
pub(crate) async fn runnable(
    c: &impl GenericClient,
    tenant_id: Option<&str>,
) -> Result<Vec<(i64, String)>, ControlError> {
    Ok(
        c.query(include_str!("sql/operation_runnable.sql"), &[&tenant_id])
            .await
            .map_err(q("looking for operations"))?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect(),
    )
}

/// Claims operation `op` for `worker` with a `lease`: its kind and attempts, or `None` when it is
/// not runnable any more.
pub(crate) async fn claim(
    c: &impl GenericClient,
    op: i64,
    worker: &str,
    lease: std::time::Duration,
) -> Result<Option<(String, i32)>, ControlError> {
    Ok(c.query_opt(
        include_str!("sql/operation_claim.sql"),
        &[&op, &worker, &lease.as_secs_f64()],
    )
    .await
    .map_err(q("claiming an operation"))?
    .map(|r| (r.get(0), r.get(1))))
}

/// Fails an operation of a kind this pgfleet does not know.
pub(crate) async fn fail_unknown_kind(c: &impl GenericClient, op: i64) -> Result<(), ControlError> {
    c.execute(include_str!("sql/operation_unknown_kind.sql"), &[&op])
        .await
        .map_err(q("recording an operation"))?;
    Ok(())
}

/// Marks an operation done.
pub(crate) async fn done(c: &impl GenericClient, op: i64) -> Result<(), ControlError> {
    c.execute(include_str!("sql/operation_done.sql"), &[&op])
        .await
        .map_err(q("recording the operation"))?;
    Ok(())
}

/// A step of the operation failed: queued again after `backoff`, or failed for good (`give_up`).
pub(crate) async fn failed(
    c: &impl GenericClient,
    op: i64,
    give_up: bool,
    backoff: std::time::Duration,
    message: &str,
) -> Result<(), ControlError> {
    c.execute(
        include_str!("sql/operation_failed.sql"),
        &[&op, &give_up, &backoff.as_secs_f64(), &message],
    )
    .await
    .map_err(q("recording the failure"))?;
    Ok(())
}

/// Hands the operations leased to `worker` back to the queue. Returns how many.
pub(crate) async fn release(c: &impl GenericClient, worker: &str) -> Result<u64, ControlError> {
    c.execute(include_str!("sql/operation_release.sql"), &[&worker])
        .await
        .map_err(q("releasing leases"))
}

//! `pgfleet.tenants`: every read and write of the table, one function per query (the SQL in
//! `sql/tenant_*.sql`).

use tokio_postgres::GenericClient;

use crate::secrets::Sealed;
use crate::tenant::{Mode, State, Tenant};
use crate::{ControlError, q};

/// The columns of a new tenant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewTenant<'a> {
    pub id: &'a str,
    pub key: &'a str,
    pub mode: Mode,
    pub requested_server: Option<&'a str>,
    pub database: &'a str,
    pub schema: &'a str,
    pub role: &'a str,
}

/// Inserts a tenant; `None` when its key exists (a racing caller inserted it first).
pub(crate) async fn insert(
    c: &impl GenericClient,
    t: NewTenant<'_>,
) -> Result<Option<Tenant>, ControlError> {
    let row = c
        .query_opt(
            include_str!("sql/tenant_insert.sql"),
            &[
                &t.id,
                &t.key,
                &t.mode.as_str(),
                &t.requested_server,
                &t.database,
                &t.schema,
                &t.role,
            ],
        )
        .await
        .map_err(q("creating the tenant"))?;
    row.as_ref().map(Tenant::read).transpose()
}

/// The tenant with `key`.
pub(crate) async fn by_key(
    c: &impl GenericClient,
    key: &str,
) -> Result<Option<Tenant>, ControlError> {
    let row = c
        .query_opt(include_str!("sql/tenant_by_key.sql"), &[&key])
        .await
        .map_err(q("reading the tenant"))?;
    row.as_ref().map(Tenant::read).transpose()
}

/// Ready tenants with their sealed passwords, newest first, at most `limit`.
pub(crate) async fn ready_with_passwords(
    c: &impl GenericClient,
    limit: i64,
) -> Result<Vec<(Tenant, Option<Sealed>)>, ControlError> {
    let rows = c
        .query(
            include_str!("sql/tenant_ready_with_passwords.sql"),
            &[&limit],
        )
        .await
        .map_err(q("listing ready tenants"))?;
    rows.iter().map(with_password).collect()
}

/// Every tenant, or those in `state`, oldest first.
pub(crate) async fn list(
    c: &impl GenericClient,
    state: Option<State>,
) -> Result<Vec<Tenant>, ControlError> {
    let rows = c
        .query(
            include_str!("sql/tenant_list.sql"),
            &[&state.map(State::as_str)],
        )
        .await
        .map_err(q("listing tenants"))?;
    rows.iter().map(Tenant::read).collect()
}

/// The tenants of a fleet operation: every ready one (`keys` empty), or those with `keys`.
pub(crate) async fn for_fleet(
    c: &impl GenericClient,
    keys: &[String],
) -> Result<Vec<Tenant>, ControlError> {
    let rows = c
        .query(include_str!("sql/tenant_list_for_fleet.sql"), &[&keys])
        .await
        .map_err(q("listing tenants"))?;
    rows.iter().map(Tenant::read).collect()
}

/// The server the tenant's creator asked for.
pub(crate) async fn requested_server(
    c: &impl GenericClient,
    id: &str,
) -> Result<Option<String>, ControlError> {
    Ok(
        c.query_one(include_str!("sql/tenant_requested_server.sql"), &[&id])
            .await
            .map_err(q("reading the tenant"))?
            .get(0),
    )
}

/// A tenant as its provisioning reads it: the row, the server asked for, its sealed password.
pub(crate) async fn for_provisioning(
    c: &impl GenericClient,
    id: &str,
) -> Result<(Tenant, Option<String>, Option<Sealed>), ControlError> {
    let row = c
        .query_one(include_str!("sql/tenant_for_provisioning.sql"), &[&id])
        .await
        .map_err(q("reading the tenant"))?;
    Ok((
        Tenant::read(&row)?,
        row.get("requested_server"),
        sealed(&row, "password_sealed", "password_key", "key_id"),
    ))
}

/// A tenant and its sealed password, from a row with both.
fn with_password(r: &tokio_postgres::Row) -> Result<(Tenant, Option<Sealed>), ControlError> {
    Ok((
        Tenant::read(r)?,
        sealed(r, "password_sealed", "password_key", "key_id"),
    ))
}

/// A sealed secret from three columns of a row, when all are set.
pub(crate) fn sealed(
    row: &tokio_postgres::Row,
    ciphertext: &str,
    wrapped_key: &str,
    key_id: &str,
) -> Option<Sealed> {
    match (
        row.get::<_, Option<Vec<u8>>>(ciphertext),
        row.get::<_, Option<Vec<u8>>>(wrapped_key),
        row.get::<_, Option<String>>(key_id),
    ) {
        (Some(ciphertext), Some(wrapped_key), Some(key_id)) => Some(Sealed {
            ciphertext,
            wrapped_key,
            key_id,
        }),
        _ => None,
    }
}

/// A failed tenant is provisioned again (its state back to `provisioning`).
pub(crate) async fn retry(c: &impl GenericClient, id: &str) -> Result<(), ControlError> {
    c.execute(include_str!("sql/tenant_retry.sql"), &[&id])
        .await
        .map_err(q("re-queueing the provisioning"))?;
    Ok(())
}

/// Places the tenant on `server` (in the caller's placement transaction), unless it has one.
pub(crate) async fn place(
    c: &impl GenericClient,
    id: &str,
    server: &str,
) -> Result<(), ControlError> {
    c.execute(include_str!("sql/tenant_place.sql"), &[&id, &server])
        .await
        .map_err(q("placing the tenant"))?;
    Ok(())
}

/// Records the target version the tenant is at.
pub(crate) async fn set_version(
    c: &impl GenericClient,
    id: &str,
    version: &str,
) -> Result<(), ControlError> {
    c.execute(include_str!("sql/tenant_set_version.sql"), &[&id, &version])
        .await
        .map_err(q("recording the version"))?;
    Ok(())
}

/// A provisioning step done: the tenant's next step and state, and the lease of its operation
/// `op`, in one round trip; `ready` marks the operation done in the same statement.
pub(crate) async fn progress(
    c: &impl GenericClient,
    id: &str,
    next: &str,
    state: &str,
    op: i64,
    lease: std::time::Duration,
) -> Result<(), ControlError> {
    c.execute(
        include_str!("sql/tenant_progress.sql"),
        &[&id, &next, &state, &op, &lease.as_secs_f64()],
    )
    .await
    .map_err(q("recording progress"))?;
    Ok(())
}

/// A provisioning step failed: its error, and `failed` when it gave up. Returns the key.
pub(crate) async fn step_failed(
    c: &impl GenericClient,
    id: &str,
    message: &str,
    give_up: bool,
) -> Result<Option<String>, ControlError> {
    Ok(c.query_opt(
        include_str!("sql/tenant_step_failed.sql"),
        &[&id, &message, &give_up],
    )
    .await
    .map_err(q("recording the failure"))?
    .map(|r| r.get(0)))
}

/// Seals the tenant's first password; `false` when one was sealed before (read it then).
pub(crate) async fn seal_password(
    c: &impl GenericClient,
    id: &str,
    sealed: &Sealed,
) -> Result<bool, ControlError> {
    Ok(c.execute(
        include_str!("sql/tenant_seal_password.sql"),
        &[&id, &sealed.ciphertext, &sealed.wrapped_key, &sealed.key_id],
    )
    .await
    .map_err(q("sealing the password"))?
        == 1)
}

/// The tenant's sealed password, if it has one.
pub(crate) async fn password(
    c: &impl GenericClient,
    id: &str,
) -> Result<Option<Sealed>, ControlError> {
    let row = c
        .query_one(include_str!("sql/tenant_password.sql"), &[&id])
        .await
        .map_err(q("reading the password"))?;
    Ok(sealed(&row, "password_sealed", "password_key", "key_id"))
}

/// Replaces the tenant's sealed password (rotation).
pub(crate) async fn set_password(
    c: &impl GenericClient,
    id: &str,
    sealed: &Sealed,
) -> Result<(), ControlError> {
    c.execute(
        include_str!("sql/tenant_set_password.sql"),
        &[&id, &sealed.ciphertext, &sealed.wrapped_key, &sealed.key_id],
    )
    .await
    .map_err(q("sealing the new password"))?;
    Ok(())
}

/// Records the last error of an operation on the tenant (a drop).
pub(crate) async fn set_last_error(
    c: &impl GenericClient,
    id: &str,
    message: &str,
) -> Result<(), ControlError> {
    c.execute(
        include_str!("sql/tenant_set_last_error.sql"),
        &[&id, &message],
    )
    .await
    .map_err(q("recording the error"))?;
    Ok(())
}

/// Marks the tenant `dropping` (its drop started).
pub(crate) async fn mark_dropping(c: &impl GenericClient, id: &str) -> Result<(), ControlError> {
    c.execute(include_str!("sql/tenant_mark_dropping.sql"), &[&id])
        .await
        .map_err(q("marking the tenant"))?;
    Ok(())
}

/// Removes the tenant's row (its objects are dropped; the `tenant.dropped` event stays).
pub(crate) async fn delete(c: &impl GenericClient, id: &str) -> Result<(), ControlError> {
    c.execute(include_str!("sql/tenant_delete.sql"), &[&id])
        .await
        .map_err(q("removing the tenant"))?;
    Ok(())
}

/// Sends the tenant back to provisioning (`init --tenant KEY --reset`).
pub(crate) async fn reset(c: &impl GenericClient, id: &str) -> Result<(), ControlError> {
    c.execute(include_str!("sql/tenant_reset.sql"), &[&id])
        .await
        .map_err(q("resetting the tenant"))?;
    Ok(())
}

/// The newest version any tenant reached.
pub(crate) async fn newest_version(c: &impl GenericClient) -> Result<Option<String>, ControlError> {
    Ok(
        c.query_one(include_str!("sql/tenant_newest_version.sql"), &[])
            .await
            .map_err(q("reading the tenants' versions"))?
            .get(0),
    )
}

/// Tenants a fleet rollout brought to `target`.
pub(crate) async fn migrated(
    c: &impl GenericClient,
    ids: &[&str],
    target: &str,
) -> Result<(), ControlError> {
    c.execute(include_str!("sql/tenant_migrated.sql"), &[&ids, &target])
        .await
        .map_err(q("recording tenant versions"))?;
    Ok(())
}

/// Tenants a fleet rollout failed on: their errors, and the version reached when it is the target.
pub(crate) async fn migrate_failed(
    c: &impl GenericClient,
    ids: &[&str],
    errors: &[&str],
    versions: &[Option<&str>],
) -> Result<(), ControlError> {
    c.execute(
        include_str!("sql/tenant_migrate_failed.sql"),
        &[&ids, &errors, &versions],
    )
    .await
    .map_err(q("recording tenant failures"))?;
    Ok(())
}

/// Claims up to `batch` ready tenants due for a health check (last checked more than `interval`
/// ago), stamping them checked; with their sealed passwords.
pub(crate) async fn claim_health_checks(
    c: &impl GenericClient,
    interval: std::time::Duration,
    batch: i64,
) -> Result<Vec<(Tenant, Option<Sealed>)>, ControlError> {
    let rows = c
        .query(
            include_str!("sql/tenant_claim_health.sql"),
            &[&interval.as_secs_f64(), &batch],
        )
        .await
        .map_err(q("claiming tenants to check"))?;
    rows.iter().map(with_password).collect()
}

/// One health check's result.
#[derive(Debug)]
pub(crate) struct HealthRow<'a> {
    pub id: &'a str,
    pub health: &'a str,
    pub latency_ms: Option<f64>,
    pub error: Option<&'a str>,
}

/// Records health check results, and a `tenant.health` event for each tenant whose health changed.
pub(crate) async fn record_health(
    c: &impl GenericClient,
    results: &[HealthRow<'_>],
) -> Result<(), ControlError> {
    if results.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = results.iter().map(|r| r.id).collect();
    let health: Vec<&str> = results.iter().map(|r| r.health).collect();
    let latency: Vec<Option<f64>> = results.iter().map(|r| r.latency_ms).collect();
    let errors: Vec<Option<&str>> = results.iter().map(|r| r.error).collect();
    c.execute(
        include_str!("sql/tenant_record_health.sql"),
        &[&ids, &health, &latency, &errors],
    )
    .await
    .map_err(q("recording health"))?;
    Ok(())
}

/// Tenants counted by (state, server, health).
pub(crate) async fn counts(
    c: &impl GenericClient,
) -> Result<Vec<(String, String, String, i64)>, ControlError> {
    let rows = c
        .query(include_str!("sql/tenant_counts.sql"), &[])
        .await
        .map_err(q("counting tenants"))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

/// The roles the fleet has on `server`: its tenants' and its owner role.
pub(crate) async fn roles_of_server(
    c: &impl GenericClient,
    server: &str,
) -> Result<Vec<String>, ControlError> {
    Ok(c.query(include_str!("sql/roles_of_server.sql"), &[&server])
        .await
        .map_err(q("listing the server's tenant roles"))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

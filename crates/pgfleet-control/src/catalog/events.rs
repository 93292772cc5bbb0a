//! The audit trail: `pgfleet.events` (the SQL in `sql/event*.sql`). Events are never updated or
//! deleted: a dropped tenant's `tenant.dropped` event stays as its tombstone.

use tokio_postgres::{Client, GenericClient};

use crate::{ControlError, q};

/// Records an event (`kind` like `tenant.ready`, `server.added`; `detail` never holds secrets).
///
/// # Errors
/// Catalog errors.
pub async fn record(
    catalog: &Client,
    tenant_id: Option<&str>,
    tenant_key: Option<&str>,
    kind: &str,
    detail: serde_json::Value,
) -> Result<(), ControlError> {
    catalog
        .execute(
            include_str!("sql/event_insert.sql"),
            &[&tenant_id, &tenant_key, &kind, &detail.to_string()],
        )
        .await
        .map_err(q("recording an event"))?;
    Ok(())
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Event {
    /// When.
    pub at: String,
    /// What.
    pub kind: String,
    /// Which role did it.
    pub actor: String,
    /// Details (JSON text).
    pub detail: serde_json::Value,
}

/// The most recent events of a tenant, newest first.
///
/// # Errors
/// Catalog errors.
pub async fn of_tenant(
    catalog: &Client,
    tenant_id: &str,
    limit: i64,
) -> Result<Vec<Event>, ControlError> {
    let rows = catalog
        .query(
            include_str!("sql/events_of_tenant.sql"),
            &[&tenant_id, &limit],
        )
        .await
        .map_err(q("reading events"))?;
    Ok(rows
        .iter()
        .map(|r| Event {
            at: r.get(0),
            kind: r.get(1),
            actor: r.get(2),
            detail: serde_json::from_str(r.get::<_, &str>(3)).unwrap_or_default(),
        })
        .collect())
}

/// Records one event of `kind` per tenant (`ids`, `keys` and `details` in the same order).
pub(crate) async fn record_many(
    c: &impl GenericClient,
    kind: &str,
    ids: &[&str],
    keys: &[&str],
    details: &[String],
) -> Result<(), ControlError> {
    if ids.is_empty() {
        return Ok(());
    }
    c.execute(
        include_str!("sql/event_insert_many.sql"),
        &[&kind, &ids, &keys, &details],
    )
    .await
    .map_err(q("recording events"))?;
    Ok(())
}

/// Whether a correction of the tenant was recorded at or after `since`.
pub(crate) async fn corrected_since(
    c: &impl GenericClient,
    tenant_id: &str,
    since: std::time::SystemTime,
) -> Result<bool, ControlError> {
    Ok(c.query_one(
        include_str!("sql/corrections_since.sql"),
        &[&tenant_id, &since],
    )
    .await
    .map_err(q("reading corrections"))?
    .get(0))
}

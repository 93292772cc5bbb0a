//! The audit trail: `pgfleet.events`.

use pgfleet_pg::PgError;
use tokio_postgres::Client;

use crate::ControlError;

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
            "INSERT INTO pgfleet.events (tenant_id, tenant_key, kind, detail) VALUES ($1, $2, $3, $4::text::jsonb)",
            &[&tenant_id, &tenant_key, &kind, &detail.to_string()],
        )
        .await
        .map_err(|e| PgError::query("recording an event", e))?;
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
            "SELECT at::text, kind, actor, detail::text FROM pgfleet.events WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2",
            &[&tenant_id, &limit],
        )
        .await
        .map_err(|e| PgError::query("reading events", e))?;
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

//! The recorder of a rollout: writes outcomes to the catalog in batches (versions, errors,
//! events) while the runner goes on.

use std::time::Duration;

use tokio::sync::mpsc;

use super::report::{Outcome, TenantMigration};
use crate::catalog::{events, rollouts, tenants};
use crate::{Control, ControlError};

/// Writes outcomes to the catalog in batches (versions, errors, events).
pub(super) async fn record(
    control: Control,
    rollout: i64,
    target: String,
    mut rx: mpsc::UnboundedReceiver<TenantMigration>,
) -> Result<(), ControlError> {
    let mut batch = Vec::new();
    loop {
        let item = if batch.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
                Ok(item) => item,
                Err(_) => {
                    flush(&control, rollout, &target, &mut batch).await?;
                    continue;
                }
            }
        };
        match item {
            Some(r) => {
                batch.push(r);
                if batch.len() >= 200 {
                    flush(&control, rollout, &target, &mut batch).await?;
                }
            }
            None => {
                flush(&control, rollout, &target, &mut batch).await?;
                return Ok(());
            }
        }
    }
}

async fn flush(
    control: &Control,
    rollout: i64,
    target: &str,
    batch: &mut Vec<TenantMigration>,
) -> Result<(), ControlError> {
    if batch.is_empty() {
        return Ok(());
    }
    let c = control.catalog();
    let ok: Vec<&TenantMigration> = batch
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Migrated | Outcome::UpToDate))
        .collect();
    let failed: Vec<&TenantMigration> = batch
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .collect();
    let ids: Vec<&str> = ok.iter().map(|r| r.id.as_str()).collect();
    tenants::migrated(&*c, &ids, target).await?;
    let migrated: Vec<&&TenantMigration> = ok.iter().filter(|r| !r.applied.is_empty()).collect();
    let details: Vec<String> = migrated
        .iter()
        .map(|r| {
            serde_json::json!({"from": r.from, "to": target, "applied": r.applied, "duration_ms": r.duration_ms, "rollout": rollout})
                .to_string()
        })
        .collect();
    events::record_many(
        &*c,
        "tenant.migrated",
        &migrated.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        &migrated.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        &details,
    )
    .await?;
    let ids: Vec<&str> = failed.iter().map(|r| r.id.as_str()).collect();
    let errors: Vec<&str> = failed
        .iter()
        .map(|r| r.error.as_deref().unwrap_or(""))
        .collect();
    // A tenant whose migrations were applied before something else failed is at the target.
    let versions: Vec<Option<&str>> = failed
        .iter()
        .map(|r| r.to.as_deref().filter(|v| *v == target))
        .collect();
    tenants::migrate_failed(&*c, &ids, &errors, &versions).await?;
    let details: Vec<String> = failed
        .iter()
        .map(|r| {
            serde_json::json!({"target": target, "error": r.error, "rollout": rollout}).to_string()
        })
        .collect();
    events::record_many(
        &*c,
        "tenant.migrate_failed",
        &ids,
        &failed.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        &details,
    )
    .await?;
    let count = |o: Outcome| batch.iter().filter(|r| r.outcome == o).count() as i32;
    rollouts::progress(
        &*c,
        rollout,
        rollouts::Counts {
            migrated: count(Outcome::Migrated),
            up_to_date: count(Outcome::UpToDate),
            failed: count(Outcome::Failed),
            not_run: count(Outcome::NotRun),
            stopped: false,
        },
    )
    .await?;
    batch.clear();
    Ok(())
}

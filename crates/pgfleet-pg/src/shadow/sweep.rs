//! The sweep: shadow databases and roles a killed run left behind are dropped by the next run on
//! that server, once they are older than 15 minutes.

use pgfleet_schema::quote;
use tokio_postgres::Client;

use super::sandbox::{PREFIX, created_at, unix_now};
use crate::error::describe;

/// Shadow databases and roles older than this (by the time in their name) are left over by a killed
/// run.
const STALE_SECS: u64 = 15 * 60;

/// Drops shadow databases and roles a killed process left behind: older than 15 minutes (the
/// creation time is in the name), databases only with nobody connected, roles only when they own
/// nothing any more (a run still going keeps its database, and so its role).
pub(super) async fn sweep_stale(admin: &Client) {
    let now = unix_now();
    let Ok(rows) = admin
        .query(
            "SELECT datname::text FROM pg_catalog.pg_database d WHERE datname LIKE 'pgfleet\\_shadow\\_%' \
             AND NOT EXISTS (SELECT FROM pg_catalog.pg_stat_activity a WHERE a.datid = d.oid)",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        // Names without a time come from older pgfleet versions: also stale.
        let created = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|t| t.parse::<u64>().ok());
        if created.is_none_or(|t| now.saturating_sub(t) > STALE_SECS) {
            let sql = format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote::ident(&name)
            );
            if admin.batch_execute(&sql).await.is_ok() {
                tracing::info!(database = %name, "dropped a stale shadow database left by an interrupted run");
            }
        }
    }
    let Ok(rows) = admin
        .query(
            "SELECT rolname::text FROM pg_catalog.pg_roles \
             WHERE rolname LIKE 'pgfleet\\_shadow\\_%' AND NOT rolsuper",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        // Only names pgfleet makes: a role of someone else's named pgfleet_shadow_… stays.
        if created_at(&name).is_some_and(|t| now.saturating_sub(t) > STALE_SECS) {
            let sql = format!("DROP ROLE IF EXISTS {}", quote::ident(&name));
            match admin.batch_execute(&sql).await {
                Ok(()) => {
                    tracing::info!(role = %name, "dropped a stale shadow role left by an interrupted run")
                }
                Err(e) => {
                    tracing::debug!(role = %name, "kept a stale shadow role: {}", describe(&e))
                }
            }
        }
    }
}

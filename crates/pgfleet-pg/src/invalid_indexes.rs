//! INVALID indexes: what an interrupted or failed `CREATE INDEX CONCURRENTLY` leaves behind.
//!
//! Such an index is not used by queries but is kept up to date by writes, and it makes a re-run of
//! its build fail (`already exists`) or do nothing (`IF NOT EXISTS`). Both places that re-run
//! concurrent builds drop it first with [`drop_except`]: [`crate::apply`] before retrying a step
//! after a lock timeout (except those that were INVALID before the apply started), and the
//! migrator of `pgfleet-migrate` before resuming a no-transaction migration. An index that some
//! backend is building right now is INVALID until its build ends: it is left alone. The query is
//! `src/sql/invalid_indexes.sql`.

use std::collections::BTreeSet;

use tokio_postgres::Client;

use crate::error::PgError;

/// The INVALID indexes no backend is building, each as `schema.name` quoted for SQL, in `schema`
/// or, when `None`, in every schema but the system ones.
///
/// # Errors
/// When the query fails.
pub async fn list(client: &Client, schema: Option<&str>) -> Result<BTreeSet<String>, PgError> {
    let rows = client
        .query(include_str!("sql/invalid_indexes.sql"), &[&schema])
        .await
        .map_err(|e| PgError::query("listing invalid indexes", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Drops, one `DROP INDEX CONCURRENTLY IF EXISTS` each, the indexes [`list`] returns for `schema`
/// that are not in `keep`, calling `dropped` with each name after its drop. `client` must not be
/// inside a transaction block.
///
/// # Errors
/// When the list cannot be read or an index cannot be dropped (the ones before it stay dropped).
pub async fn drop_except(
    client: &Client,
    schema: Option<&str>,
    keep: &BTreeSet<String>,
    mut dropped: impl FnMut(&str),
) -> Result<(), PgError> {
    for name in list(client, schema).await?.difference(keep) {
        client
            .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"))
            .await
            .map_err(|e| PgError::query(format!("dropping the invalid index {name}"), e))?;
        dropped(name);
    }
    Ok(())
}

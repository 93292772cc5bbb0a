//! `pgfleet.tokens`: API tokens by name, scope and SHA-256 digest (the SQL in `sql/token_*.sql`).
//! The only module that writes the table.

use tokio_postgres::GenericClient;

use crate::{ControlError, q};

/// Inserts a token; `None` when the name is taken.
pub(crate) async fn insert(
    c: &impl GenericClient,
    name: &str,
    scope: &str,
    digest: &[u8],
) -> Result<Option<String>, ControlError> {
    let row = c
        .query_opt(
            include_str!("sql/token_insert.sql"),
            &[&name, &scope, &digest],
        )
        .await
        .map_err(q("recording a token"))?;
    Ok(row.map(|r| r.get(0)))
}

/// Every token: name, scope, created, revoked.
pub(crate) async fn list(
    c: &impl GenericClient,
) -> Result<Vec<(String, String, String, Option<String>)>, ControlError> {
    let rows = c
        .query(include_str!("sql/token_list.sql"), &[])
        .await
        .map_err(q("listing tokens"))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect())
}

/// Revokes a token: `Some(true)` revoked now, `Some(false)` it already was, `None` no such token.
pub(crate) async fn revoke(
    c: &impl GenericClient,
    name: &str,
) -> Result<Option<bool>, ControlError> {
    let row = c
        .query_opt(include_str!("sql/token_revoke.sql"), &[&name])
        .await
        .map_err(q("revoking a token"))?;
    Ok(row.map(|r| r.get(0)))
}

/// The live token with this digest: name and scope.
pub(crate) async fn by_digest(
    c: &impl GenericClient,
    digest: &[u8],
) -> Result<Option<(String, String)>, ControlError> {
    let row = c
        .query_opt(include_str!("sql/token_by_digest.sql"), &[&digest])
        .await
        .map_err(q("looking up a token"))?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

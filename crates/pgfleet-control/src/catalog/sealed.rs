//! The catalog's sealed secrets as key rotation sees them: which master keys sealed them, and each
//! secret's data key re-wrapped by another (the SQL in `sql/sealed_*.sql`, `sql/rewrap_*.sql`).

use tokio_postgres::GenericClient;

use crate::secrets::Sealed;
use crate::{ControlError, q};

/// The tables that hold sealed secrets, with the prefix of their rows' seal owner
/// (`<prefix>:<id>`, the associated data that binds a secret to its row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SealedTable {
    /// Admin URLs of servers (`server:<name>`).
    Servers,
    /// Passwords of tenant roles (`tenant:<id>`).
    Tenants,
    /// Passwords of the fleet's owner roles (`server-owner:<server>`).
    ServerOwners,
}

impl SealedTable {
    /// Every table with sealed secrets.
    pub(crate) const ALL: [SealedTable; 3] = [Self::Servers, Self::Tenants, Self::ServerOwners];

    /// The prefix of its rows' seal owner.
    pub(crate) fn owner_prefix(self) -> &'static str {
        match self {
            Self::Servers => "server",
            Self::Tenants => "tenant",
            Self::ServerOwners => "server-owner",
        }
    }
}

/// The ids of the master keys that sealed the catalog's secrets.
pub(crate) async fn key_ids(c: &impl GenericClient) -> Result<Vec<String>, ControlError> {
    Ok(c.query(include_str!("sql/key_ids.sql"), &[])
        .await
        .map_err(q("reading key ids"))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The secrets of `table` not sealed with key `key_id`: `(row id, sealed)`.
pub(crate) async fn not_sealed_with(
    c: &impl GenericClient,
    table: SealedTable,
    key_id: &str,
) -> Result<Vec<(String, Sealed)>, ControlError> {
    let sql = match table {
        SealedTable::Servers => include_str!("sql/sealed_servers.sql"),
        SealedTable::Tenants => include_str!("sql/sealed_tenants.sql"),
        SealedTable::ServerOwners => include_str!("sql/sealed_server_owners.sql"),
    };
    Ok(c.query(sql, &[&key_id])
        .await
        .map_err(q("reading sealed secrets"))?
        .iter()
        .map(|r| {
            (
                r.get(0),
                Sealed {
                    ciphertext: r.get(1),
                    wrapped_key: r.get(2),
                    key_id: r.get(3),
                },
            )
        })
        .collect())
}

/// Stores a re-wrapped data key of row `id` of `table`, unless another process re-wrapped it
/// meanwhile (`old_key_id` no longer matches).
pub(crate) async fn rewrap(
    c: &impl GenericClient,
    table: SealedTable,
    id: &str,
    rewrapped: &Sealed,
    old_key_id: &str,
) -> Result<(), ControlError> {
    let sql = match table {
        SealedTable::Servers => include_str!("sql/rewrap_servers.sql"),
        SealedTable::Tenants => include_str!("sql/rewrap_tenants.sql"),
        SealedTable::ServerOwners => include_str!("sql/rewrap_server_owners.sql"),
    };
    c.execute(
        sql,
        &[&id, &rewrapped.wrapped_key, &rewrapped.key_id, &old_key_id],
    )
    .await
    .map_err(q("re-wrapping a secret"))?;
    Ok(())
}

//! `pgfleet.servers` and `pgfleet.server_owners`: the servers that hold tenants (admin URLs sealed)
//! and the fleet's owner role on each (its password sealed), one function per query (the SQL in
//! `sql/server_*.sql`).

use tokio_postgres::GenericClient;

use crate::secrets::Sealed;
use crate::{ControlError, q};

/// A server as `server list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerInfo {
    /// Its name.
    pub name: String,
    /// Its admin URL without the password.
    pub url: String,
    /// Most tenants it takes.
    pub capacity: i32,
    /// Placement weight.
    pub weight: i32,
    /// `active` or `draining`.
    pub state: String,
    /// PostgreSQL version.
    pub version: String,
    /// Whether pgvector is available.
    pub has_vector: bool,
    /// Tenants placed on it.
    pub tenants: i64,
}

/// The columns of a new server.
#[derive(Debug)]
pub(crate) struct NewServer<'a> {
    pub name: &'a str,
    pub sealed_url: &'a Sealed,
    pub display_url: &'a str,
    pub capacity: i32,
    pub weight: i32,
    pub version: &'a str,
    pub has_vector: bool,
}

/// Inserts a server; the database's error as it is (the caller tells a taken name from a bad one).
pub(crate) async fn insert(
    c: &impl GenericClient,
    s: &NewServer<'_>,
) -> Result<(), tokio_postgres::Error> {
    c.execute(
        include_str!("sql/server_insert.sql"),
        &[
            &s.name,
            &s.sealed_url.ciphertext,
            &s.sealed_url.wrapped_key,
            &s.sealed_url.key_id,
            &s.display_url,
            &s.capacity,
            &s.weight,
            &s.version,
            &s.has_vector,
        ],
    )
    .await
    .map(|_| ())
}

/// Every server with its tenant count.
pub(crate) async fn list(c: &impl GenericClient) -> Result<Vec<ServerInfo>, ControlError> {
    let rows = c
        .query(include_str!("sql/server_list.sql"), &[])
        .await
        .map_err(q("listing servers"))?;
    Ok(rows
        .iter()
        .map(|r| ServerInfo {
            name: r.get(0),
            url: r.get(1),
            capacity: r.get(2),
            weight: r.get(3),
            state: r.get(4),
            version: r.get(5),
            has_vector: r.get(6),
            tenants: r.get(7),
        })
        .collect())
}

/// Sets a server's state; `false` when there is no such server.
pub(crate) async fn set_state(
    c: &impl GenericClient,
    name: &str,
    state: &str,
) -> Result<bool, ControlError> {
    Ok(
        c.execute(include_str!("sql/server_set_state.sql"), &[&name, &state])
            .await
            .map_err(q("updating the server"))?
            == 1,
    )
}

/// The sealed admin URL of a server, if it exists.
pub(crate) async fn sealed_url(
    c: &impl GenericClient,
    name: &str,
) -> Result<Option<Sealed>, ControlError> {
    Ok(
        c.query_opt(include_str!("sql/server_sealed_url.sql"), &[&name])
            .await
            .map_err(q("reading the server"))?
            .map(|row| Sealed {
                ciphertext: row.get(0),
                wrapped_key: row.get(1),
                key_id: row.get(2),
            }),
    )
}

/// A server as placement sees it.
#[derive(Debug, Clone)]
pub(crate) struct PlacementRow {
    pub name: String,
    pub state: String,
    pub capacity: i32,
    pub weight: i32,
    pub used: i32,
}

/// Every server with its tenants, under the placement lock (taken here, in the caller's
/// transaction: concurrent placements take turns, so none overfills a server).
pub(crate) async fn for_placement(
    tx: &impl GenericClient,
) -> Result<Vec<PlacementRow>, ControlError> {
    tx.execute(include_str!("sql/server_placement_lock.sql"), &[])
        .await
        .map_err(q("locking placement"))?;
    Ok(tx
        .query(include_str!("sql/server_placement.sql"), &[])
        .await
        .map_err(q("reading servers for placement"))?
        .iter()
        .map(|r| PlacementRow {
            name: r.get(0),
            state: r.get(1),
            capacity: r.get(2),
            weight: r.get(3),
            used: r.get(4),
        })
        .collect())
}

/// The fleet's owner role on `server`: its name and sealed password, if recorded.
pub(crate) async fn owner(
    c: &impl GenericClient,
    server: &str,
) -> Result<Option<(String, Sealed)>, ControlError> {
    Ok(
        c.query_opt(include_str!("sql/server_owner.sql"), &[&server])
            .await
            .map_err(q("reading the server's owner role"))?
            .map(|r| {
                (
                    r.get(0),
                    Sealed {
                        ciphertext: r.get(1),
                        wrapped_key: r.get(2),
                        key_id: r.get(3),
                    },
                )
            }),
    )
}

/// Records the owner role of `server` unless one is recorded (racing processes: the first wins).
pub(crate) async fn insert_owner(
    c: &impl GenericClient,
    server: &str,
    role: &str,
    sealed: &Sealed,
) -> Result<(), ControlError> {
    c.execute(
        include_str!("sql/server_owner_insert.sql"),
        &[
            &server,
            &role,
            &sealed.ciphertext,
            &sealed.wrapped_key,
            &sealed.key_id,
        ],
    )
    .await
    .map_err(q("recording the server's owner role"))?;
    Ok(())
}

//! PostgreSQL servers that hold tenants: adding (with checks), listing, draining, placement.

use pgfleet_pg::{PgError, connect};
use tokio_postgres::Client;

use crate::ControlError;
use crate::secrets::{MasterKey, Secret};

pub use crate::catalog::servers::ServerInfo;

/// What `add` checks a server for, and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCheck {
    /// `server_version`.
    pub version: String,
    /// `server_version_num`.
    pub version_num: i32,
    /// Whether pgvector can be installed.
    pub has_vector: bool,
    /// What is missing (empty = usable).
    pub problems: Vec<String>,
}

/// Connects to `url` and checks what pgfleet needs: PostgreSQL 13+, a superuser or a role with
/// CREATEDB and CREATEROLE, and pgvector when `needs_vector`.
///
/// # Errors
/// When the server cannot be reached (with the reason).
pub async fn check_server(url: &str, needs_vector: bool) -> Result<ServerCheck, ControlError> {
    let config = connect::parse_url(url)?;
    let client = connect::connect(&config).await?;
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int,
                    r.rolsuper, r.rolcreatedb, r.rolcreaterole, current_user::text,
                    EXISTS (SELECT FROM pg_available_extensions WHERE name = 'vector')
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| PgError::query("checking the server", e))?;
    let (version, num): (String, i32) = (row.get(0), row.get(1));
    let (superuser, createdb, createrole): (bool, bool, bool) =
        (row.get(2), row.get(3), row.get(4));
    let user: String = row.get(5);
    let has_vector: bool = row.get(6);
    let mut problems = Vec::new();
    if num < 130000 {
        problems.push(format!(
            "PostgreSQL {version} is too old: pgfleet needs 13 or later"
        ));
    }
    if !superuser {
        let mut missing = Vec::new();
        if !createdb {
            missing.push("CREATEDB");
        }
        if !createrole {
            missing.push("CREATEROLE");
        }
        if !missing.is_empty() {
            problems.push(format!(
                "role {user} is not a superuser and lacks {}: run `ALTER ROLE {user} {}` as a superuser, or use a superuser URL",
                missing.join(" and "),
                missing.join(" ")
            ));
        }
    }
    if needs_vector && !has_vector {
        problems.push("the fleet's target uses pgvector (CREATE EXTENSION vector) but this server does not have it: install pgvector on it (e.g. the postgresql-NN-pgvector package) or use the embedded PostgreSQL 18".to_string());
    }
    Ok(ServerCheck {
        version,
        version_num: num,
        has_vector,
        problems,
    })
}

/// Seal owner of a server's URL.
pub(crate) fn owner(name: &str) -> String {
    format!("server:{name}")
}

/// Records a checked server.
///
/// # Errors
/// A server with this name exists; a bad name.
pub async fn insert(
    catalog: &Client,
    key: &MasterKey,
    name: &str,
    url: &str,
    capacity: i32,
    weight: i32,
    check: &ServerCheck,
) -> Result<(), ControlError> {
    let sealed = key.seal(&owner(name), &Secret::new(url))?;
    let display_url = connect::redact(url);
    let r = crate::catalog::servers::insert(
        catalog,
        &crate::catalog::servers::NewServer {
            name,
            sealed_url: &sealed,
            display_url: &display_url,
            capacity,
            weight,
            version: &check.version,
            has_vector: check.has_vector,
        },
    )
    .await;
    match r {
        Ok(_) => {}
        Err(e) if e.as_db_error().is_some_and(|d| d.code().code() == "23505") => {
            return Err(ControlError::ServerExists(name.into()));
        }
        Err(e) if e.as_db_error().is_some_and(|d| d.code().code() == "23514") => {
            return Err(ControlError::InvalidServer(name.into()));
        }
        Err(e) => return Err(PgError::query("recording the server", e).into()),
    }
    crate::events::record(
        catalog,
        None,
        None,
        "server.added",
        serde_json::json!({"server": name, "url": connect::redact(url), "capacity": capacity, "weight": weight}),
    )
    .await
}

/// Every server with its tenant count.
///
/// # Errors
/// Catalog errors.
pub async fn list(catalog: &Client) -> Result<Vec<ServerInfo>, ControlError> {
    crate::catalog::servers::list(catalog).await
}

/// Sets a server's state (`active` or `draining`).
///
/// # Errors
/// An unknown server.
pub async fn set_state(catalog: &Client, name: &str, state: &str) -> Result<(), ControlError> {
    if !crate::catalog::servers::set_state(catalog, name, state).await? {
        return Err(ControlError::UnknownServer(name.to_string()));
    }
    crate::events::record(
        catalog,
        None,
        None,
        &format!("server.{state}"),
        serde_json::json!({"server": name}),
    )
    .await
}

/// The admin URL of a server, opened with the master key.
///
/// # Errors
/// Unknown server, a key that does not open the URL.
pub async fn admin_url(
    catalog: &Client,
    key: &MasterKey,
    name: &str,
) -> Result<Secret, ControlError> {
    admin_url_with(catalog, &[key], name).await
}

/// As [`admin_url`], with the keys that may have sealed it (current first, then previous).
///
/// # Errors
/// As [`admin_url`].
pub async fn admin_url_with(
    catalog: &Client,
    keys: &[&MasterKey],
    name: &str,
) -> Result<Secret, ControlError> {
    let sealed = crate::catalog::servers::sealed_url(catalog, name)
        .await?
        .ok_or_else(|| ControlError::UnknownServer(name.to_string()))?;
    let key = keys
        .iter()
        .find(|k| k.id() == sealed.key_id)
        .copied()
        .unwrap_or(keys[0]);
    Ok(key.open(&owner(name), &sealed)?)
}

/// Chooses a server for a new tenant: the active one with the most free capacity times weight. Runs
/// in the caller's transaction, serialized by a transaction-level advisory lock, so concurrent
/// placements never overfill a server.
///
/// # Errors
/// [`ControlError::NoCapacity`] when no active server has room; an explicitly requested server that
/// is unknown, draining or full.
pub async fn place(
    tx: &tokio_postgres::Transaction<'_>,
    requested: Option<&str>,
) -> Result<String, ControlError> {
    let servers: Vec<(String, String, i32, i32, i32)> = crate::catalog::servers::for_placement(tx)
        .await?
        .into_iter()
        .map(|s| (s.name, s.state, s.capacity, s.weight, s.used))
        .collect();
    if let Some(name) = requested {
        let Some((_, state, capacity, _, used)) = servers.iter().find(|s| s.0 == name) else {
            return Err(ControlError::UnknownServer(name.to_string()));
        };
        if state != "active" {
            return Err(ControlError::NoCapacity(format!(
                "server {name} is {state}"
            )));
        }
        if used >= capacity {
            return Err(ControlError::NoCapacity(format!(
                "server {name} is full ({used}/{capacity})"
            )));
        }
        return Ok(name.to_string());
    }
    servers
        .iter()
        .filter(|(_, state, capacity, _, used)| state == "active" && used < capacity)
        .max_by_key(|(name, _, capacity, weight, used)| {
            (
                i64::from(capacity - used) * i64::from(*weight),
                std::cmp::Reverse(name.clone()),
            )
        })
        .map(|s| s.0.clone())
        .ok_or_else(|| {
            ControlError::NoCapacity(if servers.is_empty() {
                "no servers: add one with `pgfleet server add NAME --url URL`".to_string()
            } else {
                "every server is full or draining: raise a capacity or add a server".to_string()
            })
        })
}

//! The migration lock: a session-level advisory lock, taken by polling `pg_try_advisory_lock`.
//!
//! Polling instead of a blocking `pg_advisory_lock` matters: a waiter that blocks inside a statement
//! holds a snapshot, and `CREATE INDEX CONCURRENTLY` run by the lock holder waits for every older
//! snapshot to go away, so a blocking waiter and the holder can wait on each other forever (the sqlx
//! deadlock). Each poll here is a short statement of its own. The key is derived from the database and
//! the scope, so tenants that are schemas of one database do not serialize on one lock. The lock is
//! released explicitly on every exit path, and by PostgreSQL when the session ends (the migrator sets
//! `client_connection_check_interval`, so a killed migrator's session ends within a second).

use std::time::{Duration, Instant};

use pgfleet_pg::PgError;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Backend pid.
    pub pid: i32,
    /// Its `application_name`.
    pub application_name: String,
    /// When its session started.
    pub since: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if !self.application_name.is_empty() {
            write!(f, " ({})", self.application_name)?;
        }
        if !self.since.is_empty() {
            write!(f, ", connected since {}", self.since)?;
        }
        Ok(())
    }
}

/// The lock key of `scope` in `database`: 63 bits of a SHA-256, so it is positive.
pub fn key(database: &str, scope: &str) -> i64 {
    let digest = Sha256::digest(format!("pgfleet-migrate\0{database}\0{scope}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(bytes) >> 1) as i64
}

/// Takes the lock `key` on `client`'s session, polling until `timeout`. `waiting` is called once
/// with the holder when the first attempt fails.
///
/// # Errors
/// `Ok(Err(holder))` when the timeout passed; `Err` when a query failed.
pub async fn acquire(
    client: &Client,
    key: i64,
    timeout: Duration,
    mut waiting: impl FnMut(Option<&Holder>),
) -> Result<Result<(), Option<Holder>>, PgError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    let mut told = false;
    loop {
        let row = client
            .query_one("SELECT pg_catalog.pg_try_advisory_lock($1)", &[&key])
            .await
            .map_err(|e| PgError::query("taking the migration lock", e))?;
        if row.get::<_, bool>(0) {
            return Ok(Ok(()));
        }
        if !told || started.elapsed() >= timeout {
            let holder = holder(client, key).await?;
            if started.elapsed() >= timeout {
                return Ok(Err(holder));
            }
            waiting(holder.as_ref());
            told = true;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(500));
    }
}

/// Releases the lock `key` (a no-op when this session does not hold it).
///
/// # Errors
/// When the query fails (the lock is then released when the session ends).
pub async fn release(client: &Client, key: i64) -> Result<(), PgError> {
    client
        .simple_query(&format!("SELECT pg_catalog.pg_advisory_unlock({key})"))
        .await
        .map_err(|e| PgError::query("releasing the migration lock", e))?;
    Ok(())
}

/// The session holding `key`, if it can be seen.
///
/// # Errors
/// When the query fails.
pub async fn holder(client: &Client, key: i64) -> Result<Option<Holder>, PgError> {
    let row = client
        .query_opt(include_str!("sql/lock_holder.sql"), &[&key])
        .await
        .map_err(|e| PgError::query("finding the holder of the migration lock", e))?;
    Ok(row.map(|r| Holder {
        pid: r.get("pid"),
        application_name: r.get("application_name"),
        since: r.get("since"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_database_and_scope_and_are_positive() {
        let a = key("app", "");
        assert_eq!(a, key("app", ""));
        assert_ne!(a, key("app", "tenant_1"));
        assert_ne!(a, key("other", ""));
        assert_ne!(key("ab", "c"), key("a", "bc"));
        for k in [a, key("x", "y"), key("tenant", "t_2")] {
            assert!(k >= 0);
        }
    }
}

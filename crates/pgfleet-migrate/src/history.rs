//! The per-database history: which migrations ran, with which checksum, how far a no-transaction
//! migration got. Table `pgfleet_migrate.history` (see `sql/history.sql`). This module owns the
//! table: it creates it, reads it and holds every statement that writes it (the migrator runs
//! them, two of them inside its own texts: `applied_sql`, `progress_sql`).

use std::collections::HashMap;

use pgfleet_pg::PgError;
use pgfleet_schema::quote::literal;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::dir::Migration;

/// A history row's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowState {
    /// Ran to the end.
    Applied,
    /// A no-transaction migration that stopped after `statements_done` statements.
    Partial,
    /// Applied by another tool before pgfleet took over.
    Adopted,
}

impl RowState {
    fn parse(s: &str) -> Result<Self, PgError> {
        match s {
            "applied" => Ok(Self::Applied),
            "partial" => Ok(Self::Partial),
            "adopted" => Ok(Self::Adopted),
            other => Err(PgError::Catalog(format!(
                "unknown migration state {other:?} in pgfleet_migrate.history"
            ))),
        }
    }

    /// True when the migration needs no more work.
    pub fn is_done(self) -> bool {
        self != Self::Partial
    }
}

/// One row of the history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HistoryRow {
    /// The version.
    pub version: String,
    /// The name when it ran.
    pub name: String,
    /// The file's checksum when it ran.
    pub checksum: String,
    /// Its state.
    pub state: RowState,
    /// For a no-transaction migration: statements completed.
    pub statements_done: i32,
    /// For a no-transaction migration: its number of statements.
    pub statements_total: Option<i32>,
    /// For a partial migration: hash of the text of its completed statements.
    pub done_hash: Option<String>,
    /// When it started.
    pub started_at: String,
    /// When it finished.
    pub finished_at: Option<String>,
    /// How long it took.
    pub duration_ms: Option<i64>,
    /// The error that stopped it, for a partial one.
    pub last_error: Option<String>,
}

/// Whether the history table exists.
///
/// # Errors
/// When the query fails.
pub async fn exists(client: &Client) -> Result<bool, PgError> {
    let row = client
        .query_one(
            "SELECT pg_catalog.to_regclass('pgfleet_migrate.history') IS NOT NULL",
            &[],
        )
        .await
        .map_err(|e| PgError::query("looking for the migration history", e))?;
    Ok(row.get(0))
}

/// Creates the history table when missing (under a transaction-level advisory lock shared by all
/// scopes of the database, so first runs in several scopes do not race).
///
/// # Errors
/// When the role may not create the schema (it needs CREATE on the database).
pub async fn ensure(client: &Client) -> Result<(), PgError> {
    if exists(client).await? {
        return Ok(());
    }
    let key = crate::lock::key("", "pgfleet_migrate.history");
    let sql = format!(
        "BEGIN; SELECT pg_catalog.pg_advisory_xact_lock({key}); {} COMMIT;",
        include_str!("sql/history.sql")
    );
    if let Err(e) = client.batch_execute(&sql).await {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(PgError::query(
            "creating the migration history pgfleet_migrate.history (the role needs CREATE on the database)",
            e,
        ));
    }
    Ok(())
}

/// The columns [`read`] reads (`sql/history_rows.sql`), timestamps as text.
const COLUMNS: &str = "version, name, checksum, state, statements_done, statements_total, done_hash, \
     started_at::text AS started_at, finished_at::text AS finished_at, duration_ms, last_error";

/// The history rows of `scopes`, each with its scope, oldest first, as one statement for the
/// simple protocol, which sends it with no prepare round trip (the migrator sends it together with
/// its lock, the fleet for many tenants at once). The simple protocol takes no parameters: the
/// scopes are in the text, quoted by [`literal`]. [`parse_simple`] reads the rows.
pub(crate) fn rows_sql(scopes: &[&str]) -> String {
    let list = scopes
        .iter()
        .map(|s| literal(s))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT scope, {COLUMNS} FROM pgfleet_migrate.history WHERE scope IN ({list}) ORDER BY version"
    )
}

/// The histories of several scopes, in one round trip (empty for a scope without one; the table
/// must exist).
///
/// # Errors
/// When the query fails or holds an unknown state.
pub async fn read_many(
    client: &Client,
    scopes: &[&str],
) -> Result<HashMap<String, Vec<HistoryRow>>, PgError> {
    let mut out: HashMap<String, Vec<HistoryRow>> =
        scopes.iter().map(|s| (s.to_string(), Vec::new())).collect();
    if scopes.is_empty() {
        return Ok(out);
    }
    let messages = client
        .simple_query(&rows_sql(scopes))
        .await
        .map_err(|e| PgError::query("reading the migration history", e))?;
    for (scope, row) in parse_simple(&messages)? {
        out.entry(scope).or_default().push(row);
    }
    Ok(out)
}

/// The rows of [`rows_sql`] read with the simple protocol, with their scopes.
pub(crate) fn parse_simple(
    messages: &[SimpleQueryMessage],
) -> Result<Vec<(String, HistoryRow)>, PgError> {
    let mut out = Vec::new();
    for m in messages {
        let SimpleQueryMessage::Row(r) = m else {
            continue;
        };
        let text = |i: &str| r.get(i).map(str::to_string);
        let int = |i: &str| -> Result<Option<i64>, PgError> {
            r.get(i)
                .map(|v| {
                    v.parse::<i64>().map_err(|_| {
                        PgError::Catalog(format!("migration history: {i} is not a number: {v:?}"))
                    })
                })
                .transpose()
        };
        out.push((
            text("scope").unwrap_or_default(),
            HistoryRow {
                version: text("version").unwrap_or_default(),
                name: text("name").unwrap_or_default(),
                checksum: text("checksum").unwrap_or_default(),
                state: RowState::parse(r.get("state").unwrap_or_default())?,
                statements_done: int("statements_done")?.unwrap_or(0) as i32,
                statements_total: int("statements_total")?.map(|v| v as i32),
                done_hash: text("done_hash"),
                started_at: text("started_at").unwrap_or_default(),
                finished_at: text("finished_at"),
                duration_ms: int("duration_ms")?,
                last_error: text("last_error"),
            },
        ));
    }
    Ok(out)
}

/// The history of `scope`, oldest first; empty when the table does not exist.
///
/// # Errors
/// When the query fails or holds an unknown state.
pub async fn read(client: &Client, scope: &str) -> Result<Vec<HistoryRow>, PgError> {
    if !exists(client).await? {
        return Ok(Vec::new());
    }
    let rows = client
        .query(include_str!("sql/history_rows.sql"), &[&scope])
        .await
        .map_err(|e| PgError::query("reading the migration history", e))?;
    rows.iter()
        .map(|r| {
            Ok(HistoryRow {
                version: r.get("version"),
                name: r.get("name"),
                checksum: r.get("checksum"),
                state: RowState::parse(r.get("state"))?,
                statements_done: r.get("statements_done"),
                statements_total: r.get("statements_total"),
                done_hash: r.get("done_hash"),
                started_at: r.get("started_at"),
                finished_at: r.get("finished_at"),
                duration_ms: r.get("duration_ms"),
                last_error: r.get("last_error"),
            })
        })
        .collect()
}

/// Records `m` in `scope` as applied by another tool (kept when a row exists).
///
/// # Errors
/// When the insert fails.
pub(crate) async fn record_adopted(
    client: &Client,
    scope: &str,
    m: &Migration,
) -> Result<(), PgError> {
    client
        .execute(
            "INSERT INTO pgfleet_migrate.history (scope, version, name, checksum, state, finished_at) \
             VALUES ($1, $2, $3, $4, 'adopted', now()) ON CONFLICT (scope, version) DO NOTHING",
            &[&scope, &m.version, &m.name, &m.checksum],
        )
        .await
        .map_err(|e| PgError::query("recording an adopted migration", e))?;
    Ok(())
}

/// Records `checksum` as the checksum of `version` in `scope` (a changed file, accepted).
///
/// # Errors
/// When the update fails.
pub(crate) async fn record_checksum(
    client: &Client,
    scope: &str,
    version: &str,
    checksum: &str,
) -> Result<(), PgError> {
    client
        .execute(
            "UPDATE pgfleet_migrate.history SET checksum = $3 WHERE scope = $1 AND version = $2",
            &[&scope, &version, &checksum],
        )
        .await
        .map_err(|e| PgError::query("recording the accepted checksum", e))?;
    Ok(())
}

/// The row of a transactional migration `m` in `scope`, applied now, as one statement for the
/// simple protocol (values quoted by [`literal`]): it is sent in the migration's own transaction,
/// after its statements. Its duration is the transaction's so far.
pub(crate) fn applied_sql(scope: &str, m: &Migration) -> String {
    format!(
        "INSERT INTO pgfleet_migrate.history (scope, version, name, checksum, state, finished_at, duration_ms) \
         VALUES ({}, {}, {}, {}, 'applied', pg_catalog.clock_timestamp(), \
                 (extract(epoch FROM pg_catalog.clock_timestamp() - pg_catalog.now()) * 1000)::bigint) \
         ON CONFLICT (scope, version) DO UPDATE SET name = EXCLUDED.name, checksum = EXCLUDED.checksum, \
           state = 'applied', statements_done = 0, statements_total = NULL, finished_at = EXCLUDED.finished_at, \
           duration_ms = EXCLUDED.duration_ms, last_error = NULL, applied_by = current_user",
        literal(scope),
        literal(&m.version),
        literal(&m.name),
        literal(&m.checksum)
    )
}

/// Records that the no-transaction migration `m` (of `total` statements) starts or resumes in
/// `scope`: a `partial` row (an existing row keeps its progress).
///
/// # Errors
/// When the insert fails.
pub(crate) async fn record_start(
    client: &Client,
    scope: &str,
    m: &Migration,
    total: i32,
) -> Result<(), PgError> {
    client
        .execute(
            "INSERT INTO pgfleet_migrate.history (scope, version, name, checksum, state, statements_done, statements_total) \
             VALUES ($1, $2, $3, $4, 'partial', 0, $5) \
             ON CONFLICT (scope, version) DO UPDATE SET checksum = EXCLUDED.checksum, name = EXCLUDED.name, \
               statements_total = EXCLUDED.statements_total, applied_by = current_user",
            &[&scope, &m.version, &m.name, &m.checksum, &total],
        )
        .await
        .map_err(|e| PgError::query(format!("recording the start of {}", m.file_name), e))?;
    Ok(())
}

/// The progress of a no-transaction migration `version` in `scope`, `done` statements with the
/// hash `done_hash`, as one statement (ending with `;`) for the simple protocol (values quoted by
/// [`literal`]): it is sent together with the statement it records, in one implicit transaction.
pub(crate) fn progress_sql(scope: &str, version: &str, done: usize, done_hash: &str) -> String {
    format!(
        "UPDATE pgfleet_migrate.history SET statements_done = {done}, done_hash = {} WHERE scope = {} AND version = {};",
        literal(done_hash),
        literal(scope),
        literal(version)
    )
}

/// Records why the no-transaction migration `version` in `scope` stopped.
///
/// # Errors
/// When the update fails.
pub(crate) async fn record_error(
    client: &Client,
    scope: &str,
    version: &str,
    message: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "UPDATE pgfleet_migrate.history SET last_error = $3 WHERE scope = $1 AND version = $2",
            &[&scope, &version, &message],
        )
        .await?;
    Ok(())
}

/// Records the no-transaction migration `m` in `scope` as applied, after `ms` milliseconds.
///
/// # Errors
/// When the update fails.
pub(crate) async fn record_applied(
    client: &Client,
    scope: &str,
    m: &Migration,
    ms: i64,
) -> Result<(), PgError> {
    client
        .execute(
            "UPDATE pgfleet_migrate.history SET state = 'applied', finished_at = now(), last_error = NULL, \
               duration_ms = $3 WHERE scope = $1 AND version = $2",
            &[&scope, &m.version, &ms],
        )
        .await
        .map_err(|e| PgError::query(format!("recording {} as applied", m.file_name), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_history_queries_read_the_same_columns() {
        let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            words(include_str!("sql/history_rows.sql"))
                .contains(&format!("SELECT {}", words(COLUMNS))),
            "sql/history_rows.sql and COLUMNS differ"
        );
    }

    #[test]
    fn the_simple_protocol_text_quotes_each_scope() {
        assert_eq!(
            rows_sql(&["", "t'1"]),
            format!(
                "SELECT scope, {COLUMNS} FROM pgfleet_migrate.history WHERE scope IN ('', 't''1') ORDER BY version"
            )
        );
    }
}

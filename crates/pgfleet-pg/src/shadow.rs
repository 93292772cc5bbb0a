//! The shadow database: a scratch database on a dev server where the desired schema is applied and
//! introspected, so PostgreSQL itself normalizes it (no home-made SQL parser). It is created from
//! `template0` under a random name and always dropped afterwards.

use std::path::PathBuf;

use pgfleet_schema::Model;
use tokio_postgres::Config;

use crate::connect::connect;
use crate::error::describe;
use crate::source::{SchemaSource, line_col};
use crate::{PgError, introspect};

/// Why the desired schema could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShadowError {
    /// The schema SQL has an error: file, line, column and PostgreSQL's message.
    #[error("{}:{line}:{column}: {message}{}", file.display(), hint.as_deref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
    Sql {
        /// The file.
        file: PathBuf,
        /// 1-based line (1 when PostgreSQL gave no position).
        line: usize,
        /// 1-based column.
        column: usize,
        /// PostgreSQL's message (severity, message, detail).
        message: String,
        /// A hint from PostgreSQL or pgfleet.
        hint: Option<String>,
    },
    /// The dev server could not be used (connect, create or drop the shadow database).
    #[error(transparent)]
    Server(#[from] PgError),
}

/// Applies `source` to a fresh shadow database on the server of `dev` (its database name is
/// ignored) and returns the introspected model. The shadow database is dropped in every case.
///
/// # Errors
/// [`ShadowError::Sql`] for an error in the schema, [`ShadowError::Server`] when the dev server
/// cannot be used (the role needs `CREATEDB`).
pub async fn desired_model(dev: &Config, source: &SchemaSource) -> Result<Model, ShadowError> {
    let admin = connect(dev).await?;
    sweep_stale(&admin).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = format!("pgfleet_shadow_{now}_{}", random_hex());
    admin
        .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE template0"))
        .await
        .map_err(|e| PgError::query("creating the shadow database (the role needs CREATEDB)", e))?;
    let result = load_and_introspect(dev, &name, source).await;
    if let Err(e) = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
    {
        tracing::warn!(database = %name, "could not drop the shadow database: {}", describe(&e));
    }
    result
}

/// Drops shadow databases a killed process left behind: older than 15 minutes (the creation time
/// is in the name) and with nobody connected.
async fn sweep_stale(admin: &tokio_postgres::Client) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
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
        let created = name
            .strip_prefix("pgfleet_shadow_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|t| t.parse::<u64>().ok());
        // Names without a time come from older pgfleet versions: also stale.
        if created.is_none_or(|t| now.saturating_sub(t) > 15 * 60) {
            let sql = format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                pgfleet_schema::quote::ident(&name)
            );
            if admin.batch_execute(&sql).await.is_ok() {
                tracing::info!(database = %name, "dropped a stale shadow database left by an interrupted run");
            }
        }
    }
}

async fn load_and_introspect(
    dev: &Config,
    name: &str,
    source: &SchemaSource,
) -> Result<Model, ShadowError> {
    let mut config = dev.clone();
    config.dbname(name);
    let client = connect(&config).await?;
    for file in &source.files {
        if let Err(batch_err) = client.batch_execute(&file.sql).await {
            // The batch ran in one implicit transaction, so nothing of this file is left. Run it
            // again statement by statement, as psql would: that finds the failing statement when
            // PostgreSQL gave no position, and lets statements that refuse to run in a transaction
            // block (CREATE INDEX CONCURRENTLY) work.
            run_statements(&client, &file.path, &file.sql, &batch_err).await?;
        }
    }
    Ok(introspect::introspect(&client).await?)
}

async fn run_statements(
    client: &tokio_postgres::Client,
    path: &std::path::Path,
    sql: &str,
    batch_err: &tokio_postgres::Error,
) -> Result<(), ShadowError> {
    for stmt in crate::split::statements(sql) {
        if let Err(e) = client.batch_execute(stmt.text).await {
            let offset = stmt.text.as_ptr() as usize - sql.as_ptr() as usize;
            let chars_before = sql[..offset].chars().count();
            let mut err = sql_error(path, sql, &e, chars_before);
            if let ShadowError::Sql { line, column, .. } = &mut err
                && !matches!(
                    e.as_db_error().and_then(|d| d.position()),
                    Some(tokio_postgres::error::ErrorPosition::Original(_))
                )
            {
                *line = stmt.line;
                *column = 1;
            }
            return Err(err);
        }
    }
    // Each statement ran on its own, though the batch failed: report the batch's error only if it
    // was not about transaction blocks (which running them one by one avoids).
    if batch_err
        .as_db_error()
        .is_some_and(|d| d.code().code() == "25001")
    {
        Ok(())
    } else {
        Err(sql_error(path, sql, batch_err, 0))
    }
}

/// `offset` is the number of characters of `sql` before the statement that failed (0 for a batch).
fn sql_error(
    path: &std::path::Path,
    sql: &str,
    e: &tokio_postgres::Error,
    offset: usize,
) -> ShadowError {
    let Some(db) = e.as_db_error() else {
        return ShadowError::Server(PgError::Catalog(format!(
            "applying {}: {}",
            path.display(),
            describe(e)
        )));
    };
    let (line, column) = match db.position() {
        Some(tokio_postgres::error::ErrorPosition::Original(p)) => {
            line_col(sql, offset + *p as usize)
        }
        _ => (1, 1),
    };
    let mut message = format!("{}: {}", db.severity(), db.message());
    if let Some(d) = db.detail() {
        message.push_str(&format!(" ({d})"));
    }
    let mut hint = db.hint().map(str::to_string);
    if db.message().contains("extension \"vector\"") && db.message().contains("not available") {
        hint = Some(
            "this server has no pgvector; use the embedded PostgreSQL 18 with pgvector (`pgfleet setup`, then `pgfleet up`) as --dev-url, or install pgvector on this server".into(),
        );
    }
    ShadowError::Sql {
        file: path.to_path_buf(),
        line,
        column,
        message,
        hint,
    }
}

fn random_hex() -> String {
    use std::io::Read;
    let mut buf = [0u8; 6];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    buf[..4]
        .iter_mut()
        .zip(nanos.to_le_bytes())
        .for_each(|(b, n)| *b ^= n);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

//! The replay: the files run in the sandbox role's session (their `CREATE EXTENSION` made idempotent),
//! then the shadow database is introspected in that session.

use std::path::Path;

use pgfleet_schema::Model;
use tokio_postgres::Client;

use super::error::{ShadowError, sql_error};
use crate::extensions;
use crate::introspect;
use crate::source::SourceFile;

/// The file's SQL as the role runs it: `CREATE EXTENSION` made idempotent (the admin may have
/// created it), `CREATE SCHEMA` too for the schemas the admin created for extensions, and
/// `COMMENT ON EXTENSION` on the admin's extensions replaced by `SELECT NULL` (the admin ran it).
/// Lines do not move.
pub(super) fn replay_sql(sql: &str, schemas: &[String], admin_extensions: &[String]) -> String {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut copied = 0;
    for stmt in crate::split::statements(sql) {
        let start = stmt.text.as_ptr() as usize - sql.as_ptr() as usize;
        if extensions::parse_comment_on_extension(stmt.text)
            .is_some_and(|c| admin_extensions.contains(&c.name))
        {
            out.push_str(&sql[copied..start]);
            out.push_str("SELECT NULL");
            out.push_str(&"\n".repeat(stmt.text.matches('\n').count()));
            copied = start + stmt.text.len();
        } else if let Some(at) =
            extensions::insert_if_not_exists_at(stmt.text, &["create", "extension"])
                .or_else(|| extensions::create_schema_at(stmt.text, schemas))
        {
            out.push_str(&sql[copied..start + at]);
            out.push_str(" IF NOT EXISTS");
            copied = start + at;
        }
    }
    out.push_str(&sql[copied..]);
    out
}

/// Replays the files and introspects, in the session of the sandbox role.
pub(super) async fn replay_and_introspect(
    client: Client,
    files: &[SourceFile],
) -> Result<Model, ShadowError> {
    for file in files {
        if let Err(batch_err) = client.batch_execute(&file.sql).await {
            // The batch ran in one implicit transaction, so nothing of this file is left. Run it
            // again statement by statement, as psql would: that finds the failing statement when
            // PostgreSQL gave no position, and lets statements that refuse to run in a transaction
            // block (CREATE INDEX CONCURRENTLY) work.
            run_statements(&client, &file.path, &file.sql, &batch_err).await?;
        }
    }
    if std::env::var("PGFLEET_FAILPOINT").is_ok_and(|f| f == "shadow:after-replay:panic") {
        panic!("failpoint shadow:after-replay:panic reached");
    }
    Ok(introspect::introspect(&client).await?)
}

async fn run_statements(
    client: &Client,
    path: &Path,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replayed_sql_keeps_its_lines() {
        let sql = "CREATE SCHEMA ext;\nCREATE EXTENSION vector WITH SCHEMA ext;\nCOMMENT ON EXTENSION vector\n  IS 'v';\nCOMMENT ON EXTENSION pg_trgm IS 't';\nCREATE SCHEMA app;\n";
        let replayed = replay_sql(sql, &["ext".to_string()], &["vector".to_string()]);
        assert_eq!(
            replayed,
            "CREATE SCHEMA IF NOT EXISTS ext;\nCREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA ext;\nSELECT NULL\n;\nCOMMENT ON EXTENSION pg_trgm IS 't';\nCREATE SCHEMA app;\n"
        );
        assert_eq!(replayed.lines().count(), sql.lines().count());
    }
}

//! Running one migration. A transactional one goes as one text with its history row (one round
//! trip); when it fails it is run again statement by statement to say which statement failed. A
//! no-transaction one runs statement by statement, recording its progress after each, and resumes
//! after the last recorded statement (dropping the INVALID index an interrupted concurrent build
//! left behind).

use std::collections::BTreeSet;
use std::time::Instant;

use pgfleet_pg::{PgError, describe, invalid_indexes};
use pgfleet_schema::quote::ident;
use tokio_postgres::Client;

use super::batch::{executable, record_sql, search_path_sql, transaction_sql};
use super::error::{MigrateError, failure};
use super::options::MigrateEvent;
use super::pending::prefix_hash;
use crate::dir::Migration;
use crate::history::{self, HistoryRow};

/// Runs `m` in `scope`, resuming after the statements its partial history `row` records (a
/// no-transaction migration); reports it started and applied.
pub(super) async fn run_migration(
    client: &Client,
    scope: &str,
    m: &Migration,
    row: Option<&HistoryRow>,
    extensions_created: bool,
    progress: &mut impl FnMut(MigrateEvent),
) -> Result<(), MigrateError> {
    let started = Instant::now();
    if m.no_transaction {
        let resume = row.map_or(0, |r| r.statements_done.max(0) as usize);
        progress(MigrateEvent::Started {
            version: m.version.clone(),
            file: m.file_name.clone(),
            resume_at: (row.is_some()).then_some(resume + 1),
        });
        run_no_transaction(
            client,
            scope,
            m,
            resume,
            row.is_some(),
            extensions_created,
            progress,
        )
        .await?;
    } else {
        progress(MigrateEvent::Started {
            version: m.version.clone(),
            file: m.file_name.clone(),
            resume_at: None,
        });
        run_transactional(client, scope, m, extensions_created).await?;
    }
    progress(MigrateEvent::Applied {
        version: m.version.clone(),
        file: m.file_name.clone(),
        elapsed: started.elapsed(),
    });
    Ok(())
}

/// All statements and the history row in one transaction, in one round trip; on failure, again
/// statement by statement to find the failing one.
async fn run_transactional(
    client: &Client,
    scope: &str,
    m: &Migration,
    extensions_created: bool,
) -> Result<(), MigrateError> {
    let statements = m.statements();
    let prefix = format!("BEGIN;{}\n", search_path_sql(scope));
    let record = record_sql(scope, m);
    if statements.is_empty() {
        return exec_or_rollback(client, &format!("{prefix}{record}"), m).await;
    }
    // The whole migration and its history row in one round trip.
    if client
        .batch_execute(&transaction_sql(scope, m, extensions_created))
        .await
        .is_ok()
    {
        return Ok(());
    }
    // It failed and was rolled back. Run it again statement by statement (in a transaction that
    // rolls back at the failure) to say which statement failed, where and why; if it goes through
    // this time (a transient error), it commits once, like any run.
    let _ = client.batch_execute("ROLLBACK").await;
    for (i, stmt) in statements.iter().enumerate() {
        let first = i == 0;
        let text = if first {
            format!("{prefix}{};", executable(stmt.text, extensions_created))
        } else {
            format!("{};", executable(stmt.text, extensions_created))
        };
        if let Err(e) = client.batch_execute(&text).await {
            let _ = client.batch_execute("ROLLBACK").await;
            let skip = if first { prefix.chars().count() } else { 0 };
            return Err(failure(m, &statements, i, &e, skip, true));
        }
    }
    exec_or_rollback(client, &record, m).await
}

/// Runs `sql` (which ends the transaction it began), rolling back when it fails.
async fn exec_or_rollback(client: &Client, sql: &str, m: &Migration) -> Result<(), MigrateError> {
    if let Err(e) = client.batch_execute(sql).await {
        let _ = client.batch_execute("ROLLBACK").await;
        return Err(PgError::query(
            format!("recording {} in the migration history", m.file_name),
            e,
        )
        .into());
    }
    Ok(())
}

/// Statement by statement, recording progress after each; resumes after `resume` statements.
async fn run_no_transaction(
    client: &Client,
    scope: &str,
    m: &Migration,
    resume: usize,
    resuming: bool,
    extensions_created: bool,
    progress: &mut impl FnMut(MigrateEvent),
) -> Result<(), MigrateError> {
    let started = Instant::now();
    let statements = m.statements();
    let total = statements.len() as i32;
    history::record_start(client, scope, m, total).await?;
    if !scope.is_empty() {
        client
            .batch_execute(&format!("SET search_path = {}, public", ident(scope)))
            .await
            .map_err(|e| PgError::query("setting search_path", e))?;
    }
    let result = no_transaction_statements(
        client,
        scope,
        m,
        resume,
        resuming,
        extensions_created,
        progress,
    )
    .await;
    if !scope.is_empty() {
        let _ = client.batch_execute("RESET search_path").await;
    }
    if let Err(MigrateError::Failed { message, .. }) = &result {
        let _ = history::record_error(client, scope, &m.version, message).await;
    }
    result?;
    let ms = started.elapsed().as_millis() as i64;
    history::record_applied(client, scope, m, ms).await?;
    Ok(())
}

/// The statements of `m` after the first `resume`, each recorded when done.
async fn no_transaction_statements(
    client: &Client,
    scope: &str,
    m: &Migration,
    resume: usize,
    resuming: bool,
    extensions_created: bool,
    progress: &mut impl FnMut(MigrateEvent),
) -> Result<(), MigrateError> {
    let statements = &m.statements();
    if resuming {
        // An interrupted or failed CREATE INDEX CONCURRENTLY leaves an INVALID index that would make
        // the re-run fail ("already exists") or be skipped (IF NOT EXISTS). Drop those nobody builds.
        let schema = (!scope.is_empty()).then_some(scope);
        invalid_indexes::drop_except(client, schema, &BTreeSet::new(), |name| {
            progress(MigrateEvent::DroppedInvalidIndex {
                name: name.to_string(),
            })
        })
        .await?;
    }
    for (i, stmt) in statements.iter().enumerate().skip(resume) {
        let record = history::progress_sql(scope, &m.version, i + 1, &prefix_hash(m, i + 1));
        // In one implicit transaction with its progress row when PostgreSQL allows it.
        let together = format!("{};\n{record}", executable(stmt.text, extensions_created));
        let Err(e) = client.batch_execute(&together).await else {
            continue;
        };
        if e.as_db_error().is_none_or(|d| d.code().code() != "25001") {
            return Err(failure(m, statements, i, &e, 0, false));
        }
        // Cannot run in a transaction block (CREATE INDEX CONCURRENTLY, VACUUM, …): run it alone,
        // then record it. A crash between the two re-runs it; when the re-run finds the object it
        // built ("already exists"), the statement had completed.
        if let Err(e) = client.batch_execute(stmt.text).await {
            let exists = e
                .as_db_error()
                .is_some_and(|d| matches!(d.code().code(), "42P07" | "42710"));
            if !(resuming && i == resume && exists) {
                return Err(failure(m, statements, i, &e, 0, false));
            }
            tracing::info!(file = %m.file_name, statement = i + 1, "the interrupted statement had completed before the crash: {}", describe(&e));
        }
        client
            .batch_execute(&record)
            .await
            .map_err(|e| PgError::query(format!("recording progress of {}", m.file_name), e))?;
    }
    Ok(())
}

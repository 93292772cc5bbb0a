//! The migrator: applies pending migrations to one database (or one schema of it), at most once.
//!
//! 1. Opens its own connection (never a pooled one) and sets `client_connection_check_interval`,
//!    so PostgreSQL ends the session of a killed migrator within a second and releases its lock.
//! 2. Takes the [migration lock](crate::lock) by polling, then re-reads the history: another process may have
//!    applied migrations while this one waited.
//! 3. Checks the history against the files (changed, missing, out-of-order) before running anything.
//! 4. Runs each pending migration. A transactional one runs inside one transaction that also
//!    writes its history row (sent as one text), so it is applied completely, once, or not at
//!    all. A no-transaction one records its progress after every statement (in the same implicit
//!    transaction as the statement when PostgreSQL allows it), so a re-run resumes after the last
//!    completed statement, dropping the INVALID index an interrupted concurrent build left behind.
//! 5. Stops at the first failure with file, line, statement and PostgreSQL's error; the next run
//!    retries from there (there is no "dirty" flag to clear by hand).
//!
//! Its parts: [`MigrateOptions`], [`MigrateEvent`] and [`MigrateReport`] (`options.rs`),
//! [`MigrateError`] and failure reports (`error.rs`), the connection, the probe and the lock with
//! the history (`session.rs`), what is pending (`pending.rs`), running one migration (`run.rs`),
//! a transactional migration as one text and what may be batched (`batch.rs`, also used by the
//! fleet), and [`status()`] (`status.rs`). This module runs them in order.

mod batch;
mod error;
mod options;
mod pending;
mod run;
mod session;
mod status;

use std::collections::BTreeSet;
use std::time::Duration;

use pgfleet_pg::PgError;
use tokio_postgres::{Client, Config};

use crate::dir::MigrationDir;
use crate::history::{self, HistoryRow};
use crate::lock;

pub use batch::{batchable, executable, transaction_sql};
pub use error::MigrateError;
pub use options::{MigrateEvent, MigrateOptions, MigrateReport};
pub use pending::prefix_hash;
pub use session::connect_dedicated;
pub use status::{Status, StatusLine, status};

use pending::{foreign, latest_done, pending};
use run::run_migration;
use session::Probe;

/// Applies the pending migrations of `dir` to the database of `config`.
///
/// # Errors
/// See [`MigrateError`]; before anything runs: lock timeout, changed or missing files, out-of-order
/// files, an unknown `--to`; while running: [`MigrateError::Failed`].
pub async fn migrate(
    config: &Config,
    dir: &MigrationDir,
    opts: &MigrateOptions,
    progress: impl FnMut(MigrateEvent),
) -> Result<MigrateReport, MigrateError> {
    let client = connect_dedicated(config).await?;
    migrate_on(&client, dir, opts, progress).await
}

/// As [`migrate`], on a connection the caller opened with [`connect_dedicated`].
///
/// # Errors
/// As [`migrate`].
pub async fn migrate_on(
    client: &Client,
    dir: &MigrationDir,
    opts: &MigrateOptions,
    mut progress: impl FnMut(MigrateEvent),
) -> Result<MigrateReport, MigrateError> {
    let scope = opts.scope.clone().unwrap_or_default();
    let probe = Probe::read(client, &scope).await?;
    if !probe.scope_exists {
        return Err(MigrateError::UnknownSchema(scope));
    }
    if opts.dry_run {
        return dry_run(client, dir, opts, &scope).await;
    }
    let key = lock::key(&probe.database, &scope);
    let taken = session::lock(
        client,
        key,
        &scope,
        probe.has_history,
        opts.lock_wait,
        &mut progress,
    )
    .await?;
    let result = locked(
        client,
        dir,
        opts,
        &scope,
        taken.has_history,
        taken.rows,
        &mut progress,
    )
    .await;
    let released = lock::release(client, key).await;
    let mut report = result?;
    released?;
    report.waited = taken.waited;
    Ok(report)
}

/// What a run would apply, read without the lock; changes nothing.
async fn dry_run(
    client: &Client,
    dir: &MigrationDir,
    opts: &MigrateOptions,
    scope: &str,
) -> Result<MigrateReport, MigrateError> {
    let rows = history::read(client, scope).await?;
    let foreign = foreign(client, dir).await?;
    let pending = pending(dir, &rows, &foreign, opts, &mut |_| {})?;
    Ok(MigrateReport {
        applied: pending.iter().map(|(m, _)| m.version.clone()).collect(),
        at: latest_done(&rows, &foreign),
        adopted: foreign,
        waited: Duration::ZERO,
    })
}

/// Under the lock: creates the history when missing, adopts what another tool applied, checks the
/// history against the files, records accepted checksums, runs what is pending.
async fn locked(
    client: &Client,
    dir: &MigrationDir,
    opts: &MigrateOptions,
    scope: &str,
    has_history: bool,
    known_rows: Option<Vec<HistoryRow>>,
    progress: &mut impl FnMut(MigrateEvent),
) -> Result<MigrateReport, MigrateError> {
    if !has_history {
        history::ensure(client).await?;
    }
    let mut rows = match known_rows {
        Some(rows) => rows,
        None => history::read(client, scope).await?,
    };
    let mut adopted = Vec::new();
    if let Some(record) = &dir.import {
        let known: BTreeSet<&str> = rows.iter().map(|r| r.version.as_str()).collect();
        let foreign: Vec<String> = foreign(client, dir)
            .await?
            .into_iter()
            .filter(|v| !known.contains(v.as_str()))
            .collect();
        for version in &foreign {
            if let Some(m) = dir.get(version) {
                history::record_adopted(client, scope, m).await?;
                adopted.push(version.clone());
            }
        }
        if !adopted.is_empty() {
            progress(MigrateEvent::Adopted {
                tool: record.tool.to_string(),
                versions: adopted.clone(),
            });
            rows = history::read(client, scope).await?;
        }
    }
    let pending = pending(dir, &rows, &[], opts, progress)?;
    accept_changed(client, dir, opts, scope, &rows).await?;
    let mut applied = Vec::new();
    for (m, row) in pending {
        run_migration(client, scope, m, row, opts.extensions_created, progress).await?;
        applied.push(m.version.clone());
    }
    let rows = history::read(client, scope).await?;
    Ok(MigrateReport {
        applied,
        adopted,
        waited: Duration::ZERO,
        at: latest_done(&rows, &[]),
    })
}

/// Records the checksum of each changed file accepted with `allow_changed`.
async fn accept_changed(
    client: &Client,
    dir: &MigrationDir,
    opts: &MigrateOptions,
    scope: &str,
    rows: &[HistoryRow],
) -> Result<(), PgError> {
    for version in &opts.allow_changed {
        if let (Some(m), Some(row)) = (
            dir.get(version),
            rows.iter().find(|r| &r.version == version),
        ) && row.checksum != m.checksum
        {
            history::record_checksum(client, scope, version, &m.checksum).await?;
        }
    }
    Ok(())
}

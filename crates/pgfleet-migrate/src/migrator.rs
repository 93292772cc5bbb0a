//! The migrator: applies pending migrations to one database (or one schema of it), at most once.
//!
//! 1. Opens its own connection (never a pooled one) and sets `client_connection_check_interval`,
//!    so PostgreSQL ends the session of a killed migrator within a second and releases its lock.
//! 2. Takes the [lock](crate::lock) by polling, then re-reads the history: another process may have
//!    applied migrations while this one waited.
//! 3. Checks the history against the files (changed, missing, out-of-order) before running anything.
//! 4. Runs each pending migration. A transactional one runs statement by statement inside one
//!    transaction that also writes its history row, so it is applied completely, once, or not at
//!    all. A no-transaction one records its progress after every statement (in the same implicit
//!    transaction as the statement when PostgreSQL allows it), so a re-run resumes after the last
//!    completed statement, dropping the INVALID index an interrupted concurrent build left behind.
//! 5. Stops at the first failure with file, line, statement and PostgreSQL's error; the next run
//!    retries from there (there is no "dirty" flag to clear by hand).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pgfleet_pg::{PgError, connect, describe, invalid_indexes, source::line_col};
use pgfleet_schema::quote::{ident, literal};
use tokio_postgres::{Client, Config, SimpleQueryMessage};

use crate::dir::{Migration, MigrationDir};
use crate::history::{self, HistoryRow, RowState};
use crate::import;
use crate::lock::{self, Holder};

/// How to migrate.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Run the migrations inside this schema (schema-per-tenant): `search_path` is set to it (then
    /// `public`, where shared extensions live), and the lock and the history are per schema.
    pub scope: Option<String>,
    /// Stop after this version (it must be a file of the directory).
    pub to: Option<String>,
    /// Only report what would run.
    pub dry_run: bool,
    /// Versions whose file may differ from the checksum recorded when they ran; the new checksum
    /// is recorded.
    pub allow_changed: BTreeSet<String>,
    /// Apply files older than the newest applied migration instead of refusing.
    pub allow_out_of_order: bool,
    /// How long to wait for another migrator to finish.
    pub lock_wait: Duration,
    /// The extensions the migrations create exist already, created (with their comments) by a
    /// role that may: `CREATE EXTENSION` runs as `IF NOT EXISTS` and `COMMENT ON EXTENSION` is
    /// skipped (see [`executable`]). pgfleet's fleet migrations set it: they run as a role that
    /// may not create untrusted extensions nor comment on extensions it does not own.
    pub extensions_created: bool,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            scope: None,
            to: None,
            dry_run: false,
            allow_changed: BTreeSet::new(),
            allow_out_of_order: false,
            lock_wait: Duration::from_secs(15 * 60),
            extensions_created: false,
        }
    }
}

/// Progress of a run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum MigrateEvent {
    /// Another session holds the lock; this one polls until it is free.
    WaitingForLock {
        /// The holder, when visible.
        holder: Option<Holder>,
    },
    /// The lock was taken after waiting.
    LockTaken {
        /// How long it waited.
        waited: Duration,
    },
    /// Versions another tool applied were recorded as applied.
    Adopted {
        /// The tool.
        tool: String,
        /// The versions.
        versions: Vec<String>,
    },
    /// A changed file was accepted (`allow_changed`).
    AcceptedChange {
        /// The version.
        version: String,
        /// The recorded checksum.
        recorded: String,
        /// The file's checksum.
        actual: String,
    },
    /// An INVALID index left by an interrupted concurrent build was dropped before resuming.
    DroppedInvalidIndex {
        /// The index.
        name: String,
    },
    /// A migration starts.
    Started {
        /// Its version.
        version: String,
        /// Its file name.
        file: String,
        /// For a resumed no-transaction migration: the 1-based statement it resumes at.
        resume_at: Option<usize>,
    },
    /// A migration was applied.
    Applied {
        /// Its version.
        version: String,
        /// Its file name.
        file: String,
        /// How long it took.
        elapsed: Duration,
    },
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// Versions applied by this run (for a dry run: that would be applied).
    pub applied: Vec<String>,
    /// Versions adopted from another tool's history.
    pub adopted: Vec<String>,
    /// How long this run waited for the lock.
    pub waited: Duration,
    /// The newest migration applied to the database after this run (for a dry run: now).
    pub at: Option<String>,
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// Talking to the database failed.
    #[error(transparent)]
    Pg(#[from] PgError),
    /// The lock stayed taken for longer than `lock_wait`.
    #[error("waited {}s for another migration on this database to finish{}; nothing was applied. Wait for it to finish (or stop it) and run again, or raise --lock-wait", .waited.as_secs(), .holder.as_ref().map(|h| format!(" (the lock is held by {h})")).unwrap_or_default())]
    LockTimeout {
        /// How long it waited.
        waited: Duration,
        /// The holder, when visible.
        holder: Option<Holder>,
    },
    /// An applied migration's file changed.
    #[error(
        "{file} was changed after it was applied (recorded {recorded}, file now {actual}); nothing was applied. Restore the file (e.g. `git checkout` it) and put the change in a new migration; if the edit is harmless (a comment, formatting), pass --allow-changed {version}"
    )]
    Changed {
        /// Its version.
        version: String,
        /// Its file name.
        file: String,
        /// The checksum recorded when it ran.
        recorded: String,
        /// The file's checksum now.
        actual: String,
    },
    /// An applied migration has no file any more.
    #[error("migration {version} ({name}) was applied to this database but its file is missing from {}; nothing was applied. Restore the file, or point --migrations at the right directory", dir.display())]
    MissingFile {
        /// Its version.
        version: String,
        /// Its recorded name.
        name: String,
        /// The directory.
        dir: PathBuf,
    },
    /// A pending file is older than the newest applied migration.
    #[error(
        "{file} is older than {latest}, which is already applied; nothing was applied. This usually comes from a merge: give the file a new version (rename it to a later timestamp, then `pgfleet migrate hash`), or pass --allow-out-of-order to apply it anyway"
    )]
    OutOfOrder {
        /// The pending file.
        file: String,
        /// The newest applied version.
        latest: String,
    },
    /// `--to` names no file.
    #[error("--to {0}: no migration has this version")]
    UnknownVersion(String),
    /// The scope's schema does not exist.
    #[error(
        "schema {0:?} does not exist in this database; nothing was applied. Create it first (pgfleet creates tenant schemas itself), or check the name given to --in-schema"
    )]
    UnknownSchema(String),
    /// The other tool applied migrations that the imported directory does not have.
    #[error("{tool} applied migration(s) {} to this database that are not in the imported directory (pgfleet.import); nothing was applied. Import the other tool's complete directory again, so every migration it ran is known", .ids.join(", "))]
    ForeignAhead {
        /// The tool.
        tool: String,
        /// Its ids of the unknown migrations.
        ids: Vec<String>,
    },
    /// A partly applied no-transaction migration whose completed statements were edited.
    #[error(
        "{file} stopped after statement {done} and its file was changed since, including statement(s) that already ran (1-{done}); nothing was applied. Restore those statements (edits to statement {next} onwards are fine), or put the change in a new migration"
    )]
    PartialChanged {
        /// The file.
        file: String,
        /// Statements that ran.
        done: i32,
        /// The next statement.
        next: i32,
    },
    /// A migration failed.
    #[error("{}:{line}:{column}: {message}\n  statement: {}\n  {}", file.display(), excerpt(statement), outcome(*rolled_back, *statement_index))]
    Failed {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The statement that failed.
        statement: String,
        /// 1-based index of the statement in the file.
        statement_index: usize,
        /// PostgreSQL's error.
        message: String,
        /// SQLSTATE.
        code: Option<String>,
        /// True for a transactional migration (nothing of it stayed).
        rolled_back: bool,
    },
    /// The history of another tool could not be adopted.
    #[error(transparent)]
    Import(#[from] import::ImportError),
}

impl MigrateError {
    /// The SQLSTATE of a failed migration or query.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Self::Failed { code, .. } => code.as_deref(),
            Self::Pg(e) => e.sqlstate(),
            _ => None,
        }
    }
}

fn excerpt(statement: &str) -> String {
    let one_line: String = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 200 {
        format!("{}…", one_line.chars().take(200).collect::<String>())
    } else {
        one_line
    }
}

fn outcome(rolled_back: bool, index: usize) -> String {
    if rolled_back {
        "the migration's transaction was rolled back: the database is at the last good version; fix the cause and run `pgfleet migrate` again".to_string()
    } else if index > 1 {
        format!(
            "{} of this no-transaction migration {} applied and recorded; fix the cause (the data, or this statement and the ones after it) and run `pgfleet migrate` again: it resumes at statement {index}",
            if index == 2 {
                "statement 1".to_string()
            } else {
                format!("statements 1-{}", index - 1)
            },
            if index == 2 { "is" } else { "are" }
        )
    } else {
        "nothing of this no-transaction migration was applied; fix the cause and run `pgfleet migrate` again".to_string()
    }
}

/// Opens the migrator's own connection.
///
/// # Errors
/// When the server cannot be reached.
pub async fn connect_dedicated(config: &Config) -> Result<Client, PgError> {
    let mut config = config.clone();
    if config.get_application_name().is_none() {
        config.application_name("pgfleet migrate");
    }
    let client = connect::connect(&config).await?;
    // PostgreSQL 14+: end the session soon after the client vanishes (kill -9), releasing the lock
    // and rolling back the open transaction without waiting for a long statement to finish.
    if let Err(e) = client
        .batch_execute("SET client_connection_check_interval = 1000")
        .await
    {
        tracing::debug!("client_connection_check_interval not set: {}", describe(&e));
    }
    Ok(client)
}

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
    // One round trip (simple protocol, nothing to prepare): the database, the scope, the history.
    let probe = client
        .simple_query(&format!(
            "SELECT pg_catalog.current_database()::text, {}, pg_catalog.to_regclass('pgfleet_migrate.history') IS NOT NULL",
            if scope.is_empty() {
                "true".to_string()
            } else {
                format!(
                    "EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = {})",
                    literal(&scope)
                )
            }
        ))
        .await
        .map_err(|e| PgError::query("looking for the schema", e))?;
    let (database, scope_exists, has_history) = match probe.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(r),
        _ => None,
    }) {
        Some(r) => (
            r.get(0).unwrap_or_default().to_string(),
            r.get(1) == Some("t"),
            r.get(2) == Some("t"),
        ),
        None => {
            return Err(PgError::Catalog("looking for the schema: no row".into()).into());
        }
    };
    if !scope_exists {
        return Err(MigrateError::UnknownSchema(scope));
    }
    if opts.dry_run {
        let rows = history::read(client, &scope).await?;
        let foreign = foreign(client, dir).await?;
        let pending = pending(dir, &rows, &foreign, opts, &mut |_| {})?;
        return Ok(MigrateReport {
            applied: pending.iter().map(|(m, _)| m.version.clone()).collect(),
            at: latest_done(&rows, &foreign),
            adopted: foreign,
            waited: Duration::ZERO,
        });
    }
    let key = lock::key(&database, &scope);
    let started = Instant::now();
    let mut waited_at_all = false;
    // The common case in one round trip: the lock is free, and the history is read with it.
    let quick = if has_history {
        format!(
            "SELECT pg_catalog.pg_try_advisory_lock({key}); {}",
            history::rows_sql(&[&scope])
        )
    } else {
        format!("SELECT pg_catalog.pg_try_advisory_lock({key})")
    };
    let messages = client
        .simple_query(&quick)
        .await
        .map_err(|e| PgError::query("taking the migration lock", e))?;
    let first_done = messages
        .iter()
        .position(|m| matches!(m, SimpleQueryMessage::CommandComplete(_)))
        .unwrap_or(messages.len());
    let got = messages[..first_done]
        .iter()
        .any(|m| matches!(m, SimpleQueryMessage::Row(r) if r.get(0) == Some("t")));
    let mut known_rows = None;
    if got {
        if has_history {
            let rows = history::parse_simple(&messages[first_done + 1..])?;
            known_rows = Some(rows.into_iter().map(|(_, row)| row).collect());
        }
    } else {
        // Another migrator holds it: say so now (this attempt was the first), then poll.
        waited_at_all = true;
        progress(MigrateEvent::WaitingForLock {
            holder: lock::holder(client, key).await.ok().flatten(),
        });
        match lock::acquire(client, key, opts.lock_wait, |_| {}).await? {
            Ok(()) => {}
            Err(holder) => {
                return Err(MigrateError::LockTimeout {
                    waited: started.elapsed(),
                    holder,
                });
            }
        }
    }
    let waited = started.elapsed();
    if waited_at_all {
        progress(MigrateEvent::LockTaken { waited });
    }
    // Another migrator may have created the history while this one waited for the lock.
    let has_history = has_history && !waited_at_all;
    let result = locked(
        client,
        dir,
        opts,
        &scope,
        has_history,
        known_rows,
        &mut progress,
    )
    .await;
    let released = lock::release(client, key).await;
    let mut report = result?;
    released?;
    report.waited = waited;
    Ok(report)
}

/// Versions the tool of `pgfleet.import` already applied; an error when it applied migrations the
/// import does not know.
async fn foreign(client: &Client, dir: &MigrationDir) -> Result<Vec<String>, MigrateError> {
    let Some(record) = &dir.import else {
        return Ok(Vec::new());
    };
    let h = import::foreign_applied(client, record).await?;
    if !h.unknown.is_empty() {
        return Err(MigrateError::ForeignAhead {
            tool: record.tool.to_string(),
            ids: h.unknown,
        });
    }
    Ok(h.applied)
}

fn latest_done(rows: &[HistoryRow], foreign: &[String]) -> Option<String> {
    rows.iter()
        .filter(|r| r.state.is_done())
        .map(|r| r.version.as_str())
        .chain(foreign.iter().map(String::as_str))
        .max()
        .map(str::to_string)
}

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
                record_adopted(client, scope, m).await?;
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
    for version in &opts.allow_changed {
        if let (Some(m), Some(row)) = (
            dir.get(version),
            rows.iter().find(|r| &r.version == version),
        ) && row.checksum != m.checksum
        {
            client
                .execute(
                    "UPDATE pgfleet_migrate.history SET checksum = $3 WHERE scope = $1 AND version = $2",
                    &[&scope, version, &m.checksum],
                )
                .await
                .map_err(|e| PgError::query("recording the accepted checksum", e))?;
        }
    }
    let mut applied = Vec::new();
    for (m, row) in pending {
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
                opts.extensions_created,
                progress,
            )
            .await?;
        } else {
            progress(MigrateEvent::Started {
                version: m.version.clone(),
                file: m.file_name.clone(),
                resume_at: None,
            });
            run_transactional(client, scope, m, opts.extensions_created).await?;
        }
        progress(MigrateEvent::Applied {
            version: m.version.clone(),
            file: m.file_name.clone(),
            elapsed: started.elapsed(),
        });
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

/// The migrations to run, in order, with their partial history row when resuming. Checks every
/// recorded migration against its file first. `foreign` are versions another tool applied (dry run).
fn pending<'a>(
    dir: &'a MigrationDir,
    rows: &'a [HistoryRow],
    foreign: &[String],
    opts: &MigrateOptions,
    progress: &mut impl FnMut(MigrateEvent),
) -> Result<Vec<(&'a Migration, Option<&'a HistoryRow>)>, MigrateError> {
    let by_version: BTreeMap<&str, &HistoryRow> =
        rows.iter().map(|r| (r.version.as_str(), r)).collect();
    for row in rows {
        let Some(m) = dir.get(&row.version) else {
            return Err(MigrateError::MissingFile {
                version: row.version.clone(),
                name: row.name.clone(),
                dir: dir.path.clone(),
            });
        };
        if m.checksum != row.checksum && row.state == RowState::Partial {
            // Resuming an edited file is safe when the statements that already ran are unchanged.
            let done = row.statements_done.max(0) as usize;
            if row.done_hash.as_deref() != Some(prefix_hash(m, done).as_str()) {
                return Err(MigrateError::PartialChanged {
                    file: m.file_name.clone(),
                    done: row.statements_done,
                    next: row.statements_done + 1,
                });
            }
            progress(MigrateEvent::AcceptedChange {
                version: row.version.clone(),
                recorded: row.checksum.clone(),
                actual: m.checksum.clone(),
            });
            continue;
        }
        if m.checksum != row.checksum && row.state != RowState::Adopted {
            if !opts.allow_changed.contains(&row.version) {
                return Err(MigrateError::Changed {
                    version: row.version.clone(),
                    file: m.file_name.clone(),
                    recorded: row.checksum.clone(),
                    actual: m.checksum.clone(),
                });
            }
            progress(MigrateEvent::AcceptedChange {
                version: row.version.clone(),
                recorded: row.checksum.clone(),
                actual: m.checksum.clone(),
            });
        }
    }
    if let Some(to) = &opts.to
        && dir.get(to).is_none()
    {
        return Err(MigrateError::UnknownVersion(to.clone()));
    }
    let latest_done = rows
        .iter()
        .filter(|r| r.state.is_done())
        .map(|r| r.version.as_str())
        .chain(foreign.iter().map(String::as_str))
        .max();
    let mut out = Vec::new();
    for m in &dir.migrations {
        if foreign.contains(&m.version) {
            continue;
        }
        let row = by_version.get(m.version.as_str()).copied();
        if row.is_some_and(|r| r.state.is_done()) {
            continue;
        }
        if opts.to.as_deref().is_some_and(|to| m.version.as_str() > to) {
            break;
        }
        if row.is_none()
            && let Some(latest) = latest_done
            && m.version.as_str() < latest
            && !opts.allow_out_of_order
        {
            return Err(MigrateError::OutOfOrder {
                file: m.file_name.clone(),
                latest: latest.to_string(),
            });
        }
        out.push((m, row));
    }
    Ok(out)
}

/// `sha256:` of the text of the first `n` statements of `m` (each followed by a NUL).
pub fn prefix_hash(m: &Migration, n: usize) -> String {
    let mut text = String::new();
    for stmt in m.statements().iter().take(n) {
        text.push_str(stmt.text);
        text.push('\0');
    }
    crate::dir::checksum(text.as_bytes())
}

fn search_path_sql(scope: &str) -> String {
    if scope.is_empty() {
        String::new()
    } else {
        format!("SET LOCAL search_path = {}, public;", ident(scope))
    }
}

async fn record_adopted(client: &Client, scope: &str, m: &Migration) -> Result<(), PgError> {
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

/// The text a statement of a migration runs as. Statements run as written, except when the
/// extensions were created beforehand by a role that may ([`MigrateOptions::extensions_created`]:
/// pgfleet's fleet migrations run as a role that may not create untrusted extensions): then
/// `CREATE EXTENSION name` runs as `CREATE EXTENSION IF NOT EXISTS name` and `COMMENT ON EXTENSION`
/// (only an extension's owner may run it; whoever created the extensions ran those comments too)
/// as `SELECT NULL`. The file and its checksum stay as written.
pub fn executable(statement: &str, extensions_created: bool) -> std::borrow::Cow<'_, str> {
    if !extensions_created {
        return statement.into();
    }
    if pgfleet_pg::extensions::parse_comment_on_extension(statement).is_some() {
        return "SELECT NULL".into();
    }
    pgfleet_pg::extensions::idempotent_create_extension(statement)
}

/// One transaction: every statement, then the history row, then COMMIT.
fn record_sql(scope: &str, m: &Migration) -> String {
    format!(
        "INSERT INTO pgfleet_migrate.history (scope, version, name, checksum, state, finished_at, duration_ms) \
         VALUES ({}, {}, {}, {}, 'applied', pg_catalog.clock_timestamp(), \
                 (extract(epoch FROM pg_catalog.clock_timestamp() - pg_catalog.now()) * 1000)::bigint) \
         ON CONFLICT (scope, version) DO UPDATE SET name = EXCLUDED.name, checksum = EXCLUDED.checksum, \
           state = 'applied', statements_done = 0, statements_total = NULL, finished_at = EXCLUDED.finished_at, \
           duration_ms = EXCLUDED.duration_ms, last_error = NULL, applied_by = current_user; COMMIT;",
        literal(scope),
        literal(&m.version),
        literal(&m.name),
        literal(&m.checksum)
    )
}

/// A transactional migration of `scope` as one SQL text: `BEGIN`, the fixed `search_path`, its
/// statements, its history row, `COMMIT`. Several of them (of several scopes) can be sent as one
/// batch: each commits on its own, and the first failure stops the batch.
pub fn transaction_sql(scope: &str, m: &Migration, extensions_created: bool) -> String {
    let mut batch = format!("BEGIN;{}\n", search_path_sql(scope));
    for stmt in m.statements() {
        batch.push_str(&executable(stmt.text, extensions_created));
        batch.push_str(";\n");
    }
    batch.push_str(&record_sql(scope, m));
    batch
}

/// The migrations to apply to a scope whose history is `rows`, when they can go into a batch with
/// [`transaction_sql`]: every recorded migration applied (none partial), unchanged and still in
/// `dir`, every pending one transactional and newer than the newest applied, and no imported
/// history to consult. `None` when anything else holds: [`migrate_on`] handles (or reports) it.
pub fn batchable<'a>(dir: &'a MigrationDir, rows: &[HistoryRow]) -> Option<Vec<&'a Migration>> {
    if dir.import.is_some() {
        return None;
    }
    for r in rows {
        let m = dir.get(&r.version)?;
        if r.state != RowState::Applied || m.checksum != r.checksum {
            return None;
        }
    }
    let latest = rows.iter().map(|r| r.version.as_str()).max();
    let pending: Vec<&Migration> = dir
        .migrations
        .iter()
        .filter(|m| !rows.iter().any(|r| r.version == m.version))
        .collect();
    if pending
        .iter()
        .any(|m| m.no_transaction || latest.is_some_and(|l| m.version.as_str() < l))
    {
        return None;
    }
    Some(pending)
}

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

fn failure(
    m: &Migration,
    statements: &[pgfleet_pg::split::Statement<'_>],
    index: usize,
    e: &tokio_postgres::Error,
    skip_chars: usize,
    rolled_back: bool,
) -> MigrateError {
    let stmt = &statements[index];
    let offset = stmt.text.as_ptr() as usize - m.sql.as_ptr() as usize;
    let (line, column) = match e.as_db_error().and_then(|d| d.position()) {
        Some(tokio_postgres::error::ErrorPosition::Original(p)) if *p as usize > skip_chars => {
            let chars_before = m.sql[..offset].chars().count();
            line_col(&m.sql, chars_before + *p as usize - skip_chars)
        }
        _ => line_col(&m.sql, m.sql[..offset].chars().count() + 1),
    };
    let mut message = describe(e);
    if rolled_back && e.as_db_error().is_some_and(|d| d.code().code() == "25001") {
        message.push_str(&format!(
            " (hint: put `{}` on the first line of the file to run it outside a transaction)",
            crate::dir::NO_TRANSACTION
        ));
    }
    MigrateError::Failed {
        file: m.path.clone(),
        line,
        column,
        statement: stmt.text.to_string(),
        statement_index: index + 1,
        message,
        code: e.as_db_error().map(|d| d.code().code().to_string()),
        rolled_back,
    }
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
        let _ = client
            .execute(
                "UPDATE pgfleet_migrate.history SET last_error = $3 WHERE scope = $1 AND version = $2",
                &[&scope, &m.version, message],
            )
            .await;
    }
    result?;
    let ms = started.elapsed().as_millis() as i64;
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
        let record = format!(
            "UPDATE pgfleet_migrate.history SET statements_done = {}, done_hash = {} WHERE scope = {} AND version = {};",
            i + 1,
            literal(&prefix_hash(m, i + 1)),
            literal(scope),
            literal(&m.version)
        );
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

/// The state of each migration of `dir` in a database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Status {
    /// Ran to the end.
    Applied {
        /// When it finished.
        at: Option<String>,
        /// How long it took.
        duration_ms: Option<i64>,
    },
    /// Applied by another tool, adopted.
    Adopted,
    /// Not applied yet.
    Pending,
    /// A no-transaction migration that stopped part-way; the next run resumes.
    Partial {
        /// Statements done.
        done: i32,
        /// Statements in the file.
        total: Option<i32>,
        /// Why it stopped.
        error: Option<String>,
    },
    /// Applied, but the file changed since.
    Changed {
        /// Checksum recorded when it ran.
        recorded: String,
    },
    /// Applied, but its file is missing.
    MissingFile,
    /// Not applied and older than the newest applied migration.
    OutOfOrder,
}

/// One line of `pgfleet migrate status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatusLine {
    /// The version.
    pub version: String,
    /// The name.
    pub name: String,
    /// The state.
    #[serde(flatten)]
    pub status: Status,
}

/// The status of every migration of `dir` and of every recorded one without a file. Read-only:
/// creates nothing and takes no lock.
///
/// # Errors
/// When the history cannot be read.
pub async fn status(
    client: &Client,
    dir: &MigrationDir,
    scope: &str,
) -> Result<Vec<StatusLine>, MigrateError> {
    let rows = history::read(client, scope).await?;
    let foreign = match &dir.import {
        Some(record) => import::foreign_applied(client, record).await?.applied,
        None => Vec::new(),
    };
    let by_version: BTreeMap<&str, &HistoryRow> =
        rows.iter().map(|r| (r.version.as_str(), r)).collect();
    let latest_done = rows
        .iter()
        .filter(|r| r.state.is_done())
        .map(|r| r.version.as_str())
        .max();
    let mut out: Vec<StatusLine> = dir
        .migrations
        .iter()
        .map(|m| {
            let status = match by_version.get(m.version.as_str()) {
                Some(r) if r.state == RowState::Partial => Status::Partial {
                    done: r.statements_done,
                    total: r.statements_total,
                    error: r.last_error.clone(),
                },
                Some(r) if r.checksum != m.checksum && r.state != RowState::Adopted => {
                    Status::Changed {
                        recorded: r.checksum.clone(),
                    }
                }
                Some(r) if r.state == RowState::Adopted => Status::Adopted,
                Some(r) => Status::Applied {
                    at: r.finished_at.clone(),
                    duration_ms: r.duration_ms,
                },
                None if foreign.contains(&m.version) => Status::Adopted,
                None if latest_done.is_some_and(|l| m.version.as_str() < l) => Status::OutOfOrder,
                None => Status::Pending,
            };
            StatusLine {
                version: m.version.clone(),
                name: m.name.clone(),
                status,
            }
        })
        .collect();
    for r in &rows {
        if dir.get(&r.version).is_none() {
            out.push(StatusLine {
                version: r.version.clone(),
                name: r.name.clone(),
                status: Status::MissingFile,
            });
        }
    }
    out.sort_by(|a, b| a.version.cmp(&b.version));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(files: &[(&str, &str)]) -> MigrationDir {
        MigrationDir::from_files(
            std::path::Path::new("m"),
            files
                .iter()
                .map(|(n, s)| (n.to_string(), s.to_string()))
                .collect(),
        )
        .unwrap()
    }

    fn applied(m: &Migration) -> HistoryRow {
        HistoryRow {
            version: m.version.clone(),
            name: m.name.clone(),
            checksum: m.checksum.clone(),
            state: RowState::Applied,
            statements_done: 0,
            statements_total: None,
            done_hash: None,
            started_at: String::new(),
            finished_at: None,
            duration_ms: None,
            last_error: None,
        }
    }

    #[test]
    fn only_clean_histories_with_transactional_newer_files_are_batchable() {
        let d = dir(&[
            ("20260101000000_a.sql", "CREATE TABLE a (id int);"),
            ("20260102000000_b.sql", "CREATE TABLE b (id int);"),
            ("20260103000000_c.sql", "CREATE TABLE c (id int);"),
        ]);
        let a = applied(&d.migrations[0]);
        let pending = |rows: &[HistoryRow]| {
            batchable(&d, rows).map(|p| p.iter().map(|m| m.version.clone()).collect::<Vec<_>>())
        };
        assert_eq!(
            pending(std::slice::from_ref(&a)),
            Some(vec!["20260102000000".into(), "20260103000000".into()])
        );
        assert_eq!(pending(&[]).map(|p| p.len()), Some(3));
        let all: Vec<HistoryRow> = d.migrations.iter().map(applied).collect();
        assert_eq!(pending(&all), Some(vec![]));
        // A partial row, an edited file, a file gone, an older pending file: the migrator decides.
        let mut partial = a.clone();
        partial.state = RowState::Partial;
        assert_eq!(pending(&[partial]), None);
        let mut edited = a.clone();
        edited.checksum = "sha256:other".into();
        assert_eq!(pending(&[edited]), None);
        let mut gone = a.clone();
        gone.version = "20250101000000".into();
        assert_eq!(pending(&[gone]), None);
        let b = applied(&d.migrations[1]);
        assert_eq!(pending(&[b]), None, "20260101000000 would run out of order");
        // A no-transaction file pending: the migrator runs it statement by statement.
        let d2 = dir(&[
            ("20260101000000_a.sql", "CREATE TABLE a (id int);"),
            (
                "20260102000000_i.sql",
                "-- pgfleet:no-transaction\nCREATE INDEX CONCURRENTLY a_id ON a (id);",
            ),
        ]);
        assert!(batchable(&d2, &[applied(&d2.migrations[0])]).is_none());
    }

    #[test]
    fn extension_statements_change_only_when_the_extensions_were_created_beforehand() {
        assert_eq!(
            executable("CREATE EXTENSION vector", false),
            "CREATE EXTENSION vector"
        );
        assert_eq!(
            executable("CREATE EXTENSION vector", true),
            "CREATE EXTENSION IF NOT EXISTS vector"
        );
        assert_eq!(
            executable("COMMENT ON EXTENSION vector IS 'v'", true),
            "SELECT NULL"
        );
        for same in [
            "CREATE EXTENSION IF NOT EXISTS vector",
            "CREATE TABLE extension (id int)",
            "COMMENT ON TABLE t IS 'x'",
        ] {
            assert_eq!(executable(same, true), same);
        }
    }

    #[test]
    fn a_transaction_text_holds_the_path_the_statements_and_the_history_row() {
        let d = dir(&[(
            "20260101000000_a.sql",
            "CREATE TABLE a (id int);\nCREATE INDEX a_i ON a (id);",
        )]);
        let sql = transaction_sql("t1'x", &d.migrations[0], false);
        assert!(
            sql.starts_with("BEGIN;SET LOCAL search_path = \"t1'x\", public;"),
            "{sql}"
        );
        assert!(
            sql.contains("CREATE TABLE a (id int);") && sql.contains("CREATE INDEX a_i ON a (id);")
        );
        assert!(sql.contains("VALUES ('t1''x', '20260101000000'"), "{sql}");
        assert!(sql.trim_end().ends_with("COMMIT;"));
        assert_eq!(
            transaction_sql("", &d.migrations[0], false).lines().next(),
            Some("BEGIN;")
        );
    }
}

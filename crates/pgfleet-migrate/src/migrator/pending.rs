//! Which migrations a run applies, checked against the history first: a recorded migration whose
//! file changed or is gone, a new file older than the newest applied one, an unknown `--to`, and a
//! partial migration edited in the statements that already ran are refused before anything runs.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use super::error::MigrateError;
use super::options::{MigrateEvent, MigrateOptions};
use crate::dir::{Migration, MigrationDir};
use crate::history::{HistoryRow, RowState};
use crate::import;

/// Versions the tool of `pgfleet.import` already applied; an error when it applied migrations the
/// import does not know.
pub(super) async fn foreign(
    client: &Client,
    dir: &MigrationDir,
) -> Result<Vec<String>, MigrateError> {
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

/// The newest version that needs no more work according to `rows`, or that another tool applied
/// (`foreign`).
pub(super) fn latest_done(rows: &[HistoryRow], foreign: &[String]) -> Option<String> {
    rows.iter()
        .filter(|r| r.state.is_done())
        .map(|r| r.version.as_str())
        .chain(foreign.iter().map(String::as_str))
        .max()
        .map(str::to_string)
}

/// The migrations to run, in order, with their partial history row when resuming. Checks every
/// recorded migration against its file first. `foreign` are versions another tool applied (dry run).
pub(super) fn pending<'a>(
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

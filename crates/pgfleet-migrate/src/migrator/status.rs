//! `pgfleet migrate status`: the state of every migration of a directory in a database, read-only.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use super::error::MigrateError;
use crate::dir::MigrationDir;
use crate::history::{self, HistoryRow, RowState};
use crate::import;

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

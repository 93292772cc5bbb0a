//! Why a run stopped ([`MigrateError`]), and how a failed statement is reported: file, line and
//! column, the statement, PostgreSQL's error, and what stayed applied.

use std::path::PathBuf;
use std::time::Duration;

use pgfleet_pg::split::Statement;
use pgfleet_pg::{PgError, describe, source::line_col};

use crate::dir::{Migration, NO_TRANSACTION};
use crate::import::ImportError;
use crate::lock::Holder;

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
    Import(#[from] ImportError),
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

    /// True when another migration held this database's (or scope's) migration lock for longer
    /// than `lock_wait` ([`MigrateError::LockTimeout`]): nothing was applied, and running again
    /// later is safe. (A statement of a migration that hit PostgreSQL's `lock_timeout` is a
    /// [`MigrateError::Failed`] with [`sqlstate`](Self::sqlstate) `55P03`.)
    pub fn is_lock_timeout(&self) -> bool {
        matches!(self, Self::LockTimeout { .. })
    }

    /// True when the database could not be reached or refused the login
    /// ([`PgError::is_connect`]): nothing was applied.
    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Pg(e) if e.is_connect())
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

/// The error of statement `index` (0-based) of `m`, which failed with `e`. `skip_chars` is the
/// length of what pgfleet sent before the statement in the same text (PostgreSQL's error position
/// counts it); `rolled_back` is true for a transactional migration.
pub(super) fn failure(
    m: &Migration,
    statements: &[Statement<'_>],
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
            NO_TRANSACTION
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_name_the_variant() {
        let unreachable = MigrateError::from(PgError::Connect {
            target: "u@h:5432/db".into(),
            reason: "connection refused".into(),
        });
        assert!(unreachable.is_connect() && !unreachable.is_lock_timeout());
        let busy = MigrateError::LockTimeout {
            waited: Duration::from_secs(1),
            holder: None,
        };
        assert!(busy.is_lock_timeout() && !busy.is_connect());
        assert_eq!(busy.sqlstate(), None);
    }
}

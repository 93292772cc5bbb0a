//! Why the desired schema could not be built, and how PostgreSQL's errors of a replayed file become
//! `file:line:column` errors with a hint.

use std::path::{Path, PathBuf};

use crate::error::{PgError, describe};
use crate::source::line_col;

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
    /// A server-level statement in a schema or migration file, refused before anything ran
    /// ([`crate::guard`]).
    #[error("{}:{line}: {statement_kind} is refused: {why}. Schema and migration files describe the schema of one database; statements that act on the server belong to operators, not schema files: nothing was run (if it is really needed, an operator runs it by hand with an administrator's connection)", file.display())]
    Refused {
        /// The file.
        file: PathBuf,
        /// 1-based line of the statement.
        line: usize,
        /// What was refused, e.g. `DROP DATABASE`, `COPY … PROGRAM`.
        statement_kind: String,
        /// Why it does not belong in a schema file.
        why: String,
    },
    /// A file creates an extension that is not trusted (only a superuser may create it) and not in
    /// [`ShadowOptions::allowed_extensions`](super::ShadowOptions::allowed_extensions); refused before anything ran.
    #[error("{}:{line}: extension \"{name}\" is not trusted, so only a superuser can create it, and schema files are replayed by an unprivileged role; pgfleet creates the extensions you allow itself: pass --allow-extension {name} (or add it to PGFLEET_ALLOWED_EXTENSIONS) if the dev server should install it", file.display())]
    ExtensionNotAllowed {
        /// The file.
        file: PathBuf,
        /// 1-based line of the `CREATE EXTENSION` statement.
        line: usize,
        /// The extension.
        name: String,
    },
    /// The dev server could not be used (connect, create or drop the shadow database or role, log
    /// in as the role).
    #[error(transparent)]
    Server(#[from] PgError),
}

/// `offset` is the number of characters of `sql` before the statement that failed (0 for a batch).
pub(super) fn sql_error(
    path: &Path,
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
    ShadowError::Sql {
        file: path.to_path_buf(),
        line,
        column,
        message: message(db),
        hint: hint(db),
    }
}

/// An error of a statement pgfleet ran for the file's statement at `line` (creating an allowed
/// extension).
pub(super) fn statement_error(path: &Path, line: usize, e: &tokio_postgres::Error) -> ShadowError {
    match e.as_db_error() {
        Some(db) => ShadowError::Sql {
            file: path.to_path_buf(),
            line,
            column: 1,
            message: message(db),
            hint: hint(db),
        },
        None => ShadowError::Server(PgError::Catalog(format!(
            "creating the extension of {}:{line}: {}",
            path.display(),
            describe(e)
        ))),
    }
}

/// Severity, message and detail.
fn message(db: &tokio_postgres::error::DbError) -> String {
    let mut message = format!("{}: {}", db.severity(), db.message());
    if let Some(d) = db.detail() {
        message.push_str(&format!(" ({d})"));
    }
    message
}

/// PostgreSQL's hint, or pgfleet's for errors it can explain.
fn hint(db: &tokio_postgres::error::DbError) -> Option<String> {
    let msg = db.message();
    if msg.contains("extension \"vector\"") && msg.contains("not available") {
        return Some(
            "this server has no pgvector; use the embedded PostgreSQL 18 with pgvector (`pgfleet setup`, then `pgfleet up`) as --dev-url, or install pgvector on this server".into(),
        );
    }
    if let Some(name) = msg
        .strip_prefix("permission denied to create extension \"")
        .and_then(|r| r.split('"').next())
    {
        return Some(format!(
            "schema files are replayed by an unprivileged role, which may only create trusted extensions; pgfleet creates the extensions you allow itself: pass --allow-extension {name} (or add it to PGFLEET_ALLOWED_EXTENSIONS)"
        ));
    }
    if let Some(name) = msg
        .strip_prefix("must be owner of extension ")
        .map(|r| r.trim_matches('"'))
    {
        return Some(format!(
            "pgfleet created extension {name} itself, as the dev server's role, because it is allowed; the role that replays schema files may not alter, move or drop it (comments on it are set by pgfleet)"
        ));
    }
    if db.code().code() == "42501" {
        let theirs = db.hint().map(|h| format!("{h}; ")).unwrap_or_default();
        return Some(format!(
            "{theirs}schema files are replayed by a throwaway role that owns the shadow database and nothing else: statements that need more (roles, databases, server files and programs, superuser-only features) belong to operators, not schema files"
        ));
    }
    db.hint().map(str::to_string)
}

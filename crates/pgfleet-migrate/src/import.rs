//! Adopting another tool's migrations: sqlx, Drizzle and golang-migrate.
//!
//! [`import_dir`] converts a directory into pgfleet's layout and writes `pgfleet.import`, a record of
//! which pgfleet version each foreign migration became. On a database where the other tool already
//! applied them, [`foreign_applied`] reads that tool's own history (`_sqlx_migrations`,
//! `__drizzle_migrations`, `schema_migrations`), and the migrator records those versions as adopted
//! instead of running them again.
//!
//! | tool | files | version | history read |
//! |---|---|---|---|
//! | sqlx | `<V>_<desc>.sql`, `<V>_<desc>.up.sql` | V, zero-padded to 14 digits | `_sqlx_migrations` rows with `success` |
//! | golang-migrate | `<V>_<title>.up.sql` | V, zero-padded | every version ≤ `schema_migrations.version` (the dirty one is re-run) |
//! | Drizzle | `meta/_journal.json` + `<tag>.sql` | the entry's `when` as UTC time | entries with `when` ≤ max(`created_at`) of `__drizzle_migrations` |

use std::path::{Path, PathBuf};

use pgfleet_pg::PgError;
use tokio_postgres::Client;

use crate::dir::{self, DirError, IMPORT_FILE, MigrationDir, NO_TRANSACTION};
use crate::sum::{self, SumError};

/// The record of an import (`pgfleet.import`) and its tool live in [`crate::dir`]: the directory
/// reads the record when it is loaded.
pub use crate::dir::{ImportRecord, Tool};

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Reading or writing a file failed.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The source directory does not look like the tool's.
    #[error("{}: {reason}", path.display())]
    Layout {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The destination already has migrations.
    #[error("{} already has migrations; import into a new or empty directory", .0.display())]
    NotEmpty(PathBuf),
    /// The converted files are not valid pgfleet migrations.
    #[error(transparent)]
    Dir(#[from] DirError),
    /// The tool's history could not be read.
    #[error(transparent)]
    Pg(#[from] PgError),
    /// The pgfleet.sum could not be written.
    #[error(transparent)]
    Sum(#[from] SumError),
}

/// What [`import_dir`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Files written, in order.
    pub files: Vec<String>,
    /// Files in which `BEGIN`/`COMMIT` lines were removed (pgfleet wraps each migration in a
    /// transaction itself).
    pub stripped_transactions: Vec<String>,
    /// Files skipped (down migrations).
    pub skipped: Vec<String>,
}

struct Foreign {
    id: i64,
    version: String,
    name: String,
    sql: String,
    no_transaction: bool,
}

/// Converts the `tool` migrations in `src` into pgfleet migrations in `dest` (created when missing;
/// must have no migrations yet), writes `pgfleet.import` and `pgfleet.sum`.
///
/// # Errors
/// See [`ImportError`].
pub fn import_dir(tool: Tool, src: &Path, dest: &Path) -> Result<ImportSummary, ImportError> {
    if !MigrationDir::load(dest)?.migrations.is_empty() {
        return Err(ImportError::NotEmpty(dest.into()));
    }
    let mut summary = ImportSummary::default();
    let mut foreign = match tool {
        Tool::Sqlx => numbered(src, tool, &mut summary)?,
        Tool::GolangMigrate => numbered(src, tool, &mut summary)?,
        Tool::Drizzle => drizzle(src)?,
    };
    if foreign.is_empty() {
        return Err(ImportError::Layout {
            path: src.into(),
            reason: format!("no {tool} migrations found"),
        });
    }
    foreign.sort_by(|a, b| a.version.cmp(&b.version));
    let io = |path: &Path, source| ImportError::Io {
        path: path.into(),
        source,
    };
    std::fs::create_dir_all(dest).map_err(|e| io(dest, e))?;
    let mut record = ImportRecord {
        tool,
        entries: Vec::new(),
    };
    for f in &foreign {
        let file_name = format!("{}_{}.sql", f.version, f.name);
        let (mut sql, stripped) = strip_transaction_lines(&f.sql);
        if stripped {
            summary.stripped_transactions.push(file_name.clone());
        }
        if (f.no_transaction || needs_no_transaction(&sql)) && !sql.contains(NO_TRANSACTION) {
            sql = format!("{NO_TRANSACTION}\n{sql}");
        }
        let path = dest.join(&file_name);
        dir::Migration::parse(&path, sql.clone())?;
        std::fs::write(&path, sql).map_err(|e| io(&path, e))?;
        record.entries.push((f.version.clone(), f.id));
        summary.files.push(file_name);
    }
    let record_path = dest.join(IMPORT_FILE);
    std::fs::write(&record_path, record.render()).map_err(|e| io(&record_path, e))?;
    sum::write(&MigrationDir::load(dest)?)?;
    Ok(summary)
}

/// sqlx (`<V>_<desc>.sql`, `.up.sql`; `-- no-transaction` on the first line) and golang-migrate
/// (`<V>_<title>.up.sql`).
fn numbered(
    src: &Path,
    tool: Tool,
    summary: &mut ImportSummary,
) -> Result<Vec<Foreign>, ImportError> {
    let io = |path: &Path, source| ImportError::Io {
        path: path.into(),
        source,
    };
    let mut out: Vec<Foreign> = Vec::new();
    let entries = std::fs::read_dir(src).map_err(|e| io(src, e))?;
    for entry in entries {
        let path = entry.map_err(|e| io(src, e))?.path();
        let Some(file) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if !path.is_file() || !file.ends_with(".sql") {
            continue;
        }
        if file.ends_with(".down.sql") {
            summary.skipped.push(file);
            continue;
        }
        let stem = file
            .strip_suffix(".up.sql")
            .or_else(|| {
                (tool == Tool::Sqlx)
                    .then(|| file.strip_suffix(".sql"))
                    .flatten()
            })
            .ok_or_else(|| ImportError::Layout {
                path: path.clone(),
                reason: format!("a {tool} migration is named <version>_<name>.up.sql"),
            })?;
        let (v, name) = stem.split_once('_').ok_or_else(|| ImportError::Layout {
            path: path.clone(),
            reason: format!("a {tool} migration is named <version>_<name>"),
        })?;
        let id: i64 = v.parse().map_err(|_| ImportError::Layout {
            path: path.clone(),
            reason: format!("{v:?} is not a {tool} version number"),
        })?;
        if v.len() > 14 || id < 0 {
            return Err(ImportError::Layout {
                path,
                reason: format!("version {v} has more than 14 digits"),
            });
        }
        let sql = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        let no_transaction = tool == Tool::Sqlx
            && sql
                .lines()
                .next()
                .is_some_and(|l| l.trim() == "-- no-transaction");
        if let Some(dup) = out.iter().find(|f| f.id == id) {
            return Err(ImportError::Layout {
                path,
                reason: format!("version {id} also belongs to {}", dup.name),
            });
        }
        out.push(Foreign {
            id,
            version: format!("{id:014}"),
            name: sanitize(name),
            sql,
            no_transaction,
        });
    }
    Ok(out)
}

#[derive(serde::Deserialize)]
struct Journal {
    entries: Vec<JournalEntry>,
}

#[derive(serde::Deserialize)]
struct JournalEntry {
    when: i64,
    tag: String,
}

/// Drizzle: `meta/_journal.json` lists `{idx, when, tag}`; the SQL is `<tag>.sql`.
fn drizzle(src: &Path) -> Result<Vec<Foreign>, ImportError> {
    let journal_path = src.join("meta").join("_journal.json");
    let text = std::fs::read_to_string(&journal_path).map_err(|e| ImportError::Io {
        path: journal_path.clone(),
        source: e,
    })?;
    let journal: Journal = serde_json::from_str(&text).map_err(|e| ImportError::Layout {
        path: journal_path.clone(),
        reason: format!("not a Drizzle journal: {e}"),
    })?;
    let mut out: Vec<Foreign> = Vec::new();
    let mut last: Option<String> = None;
    for entry in journal.entries {
        let path = src.join(format!("{}.sql", entry.tag));
        let sql = std::fs::read_to_string(&path).map_err(|e| ImportError::Io {
            path: path.clone(),
            source: e,
        })?;
        // One second resolution: two entries in one second get consecutive versions.
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(entry.when.max(0) as u64);
        let version = dir::next_version(at, last.as_deref());
        last = Some(version.clone());
        out.push(Foreign {
            id: entry.when,
            version,
            name: sanitize(&entry.tag),
            sql,
            no_transaction: false,
        });
    }
    Ok(out)
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Removes top-level transaction control statements (`BEGIN;` … `COMMIT;`, which golang-migrate
/// files often wrap themselves in): pgfleet wraps each migration in a transaction itself. Statements
/// are found with the psql-style splitter, so `BEGIN`/`END` inside function bodies and `DO` blocks
/// are left alone.
fn strip_transaction_lines(sql: &str) -> (String, bool) {
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    for stmt in pgfleet_pg::split::statements(sql) {
        if dir::is_transaction_control(stmt.text) {
            let start = stmt.text.as_ptr() as usize - sql.as_ptr() as usize;
            let mut end = start + stmt.text.len();
            let rest = &sql[end..];
            let trimmed = rest.trim_start_matches([' ', '\t']);
            if let Some(after) = trimmed.strip_prefix(';') {
                end = sql.len() - after.len();
                if let Some(after_nl) = sql[end..].strip_prefix('\n') {
                    end = sql.len() - after_nl.len();
                }
            }
            cuts.push((start, end));
        }
    }
    if cuts.is_empty() {
        return (sql.to_string(), false);
    }
    let mut out = String::with_capacity(sql.len());
    let mut at = 0;
    for (start, end) in cuts {
        out.push_str(&sql[at..start]);
        at = end;
    }
    out.push_str(&sql[at..]);
    (out, true)
}

/// Whether a statement cannot run inside a transaction block, so its file needs the
/// no-transaction directive (the other tools run such single-statement files outside one).
fn needs_no_transaction(sql: &str) -> bool {
    pgfleet_pg::split::statements(sql).iter().any(|stmt| {
        let words: Vec<String> = stmt
            .text
            .split_whitespace()
            .take(4)
            .map(|w| w.to_ascii_lowercase())
            .collect();
        let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
        (w(0) == "create"
            && (w(1) == "index" && w(2) == "concurrently"
                || w(1) == "unique" && w(3) == "concurrently"))
            || (w(0) == "drop" && w(1) == "index" && w(2) == "concurrently")
            || (w(0) == "reindex"
                && words
                    .iter()
                    .any(|x| x == "concurrently" || x == "(concurrently)"))
            || matches!(w(0), "vacuum")
            || (w(0) == "create" && w(1) == "database")
            || (w(0) == "alter" && w(1) == "system")
    })
}

/// What another tool's history says about a database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForeignHistory {
    /// pgfleet versions of `pgfleet.import` entries the tool applied.
    pub applied: Vec<String>,
    /// The tool's ids of applied migrations that `pgfleet.import` does not know.
    pub unknown: Vec<String>,
}

/// What the tool of `record` already applied to the database of `client` (nothing when its table
/// does not exist).
///
/// # Errors
/// When the tool's table cannot be read.
pub async fn foreign_applied(
    client: &Client,
    record: &ImportRecord,
) -> Result<ForeignHistory, ImportError> {
    let regclass = |name: &str| format!("SELECT pg_catalog.to_regclass('{name}')::text");
    let find = |names: &'static [&'static str]| async move {
        for name in names {
            let row = client
                .query_one(&regclass(name), &[])
                .await
                .map_err(|e| PgError::query("looking for another tool's migration table", e))?;
            if row.get::<_, Option<String>>(0).is_some() {
                return Ok::<_, PgError>(Some(*name));
            }
        }
        Ok(None)
    };
    let query = |sql: String| async move {
        client
            .query(&sql, &[])
            .await
            .map_err(|e| PgError::query("reading another tool's migration history", e))
    };
    let known: Vec<i64> = record.entries.iter().map(|(_, id)| *id).collect();
    let max_known = known.iter().copied().max().unwrap_or(i64::MIN);
    let mut unknown = Vec::new();
    let applied_ids: Vec<i64> = match record.tool {
        Tool::Sqlx => match find(&["_sqlx_migrations"]).await? {
            None => Vec::new(),
            Some(t) => {
                let ids: Vec<i64> = query(format!(
                    "SELECT version FROM {t} WHERE success ORDER BY version"
                ))
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
                unknown = ids
                    .iter()
                    .filter(|id| !known.contains(id))
                    .map(|id| id.to_string())
                    .collect();
                ids
            }
        },
        Tool::GolangMigrate => match find(&["schema_migrations"]).await? {
            None => Vec::new(),
            Some(t) => {
                let rows = query(format!("SELECT version::bigint, dirty FROM {t}")).await?;
                match rows.first() {
                    None => Vec::new(),
                    Some(r) => {
                        let (version, dirty): (i64, bool) = (r.get(0), r.get(1));
                        if version > max_known {
                            unknown.push(version.to_string());
                        }
                        // A dirty version failed part-way; it is re-run (golang-migrate runs a
                        // file in one implicit transaction, so nothing of it stayed).
                        known
                            .iter()
                            .copied()
                            .filter(|id| *id < version || (*id == version && !dirty))
                            .collect()
                    }
                }
            }
        },
        Tool::Drizzle => match find(&[
            "drizzle.__drizzle_migrations",
            "public.__drizzle_migrations",
        ])
        .await?
        {
            None => Vec::new(),
            Some(t) => {
                let rows = query(format!("SELECT max(created_at)::bigint FROM {t}")).await?;
                match rows.first().and_then(|r| r.get::<_, Option<i64>>(0)) {
                    None => Vec::new(),
                    Some(max) => {
                        if max > max_known {
                            unknown.push(format!("created_at {max}"));
                        }
                        known.iter().copied().filter(|id| *id <= max).collect()
                    }
                }
            }
        },
    };
    Ok(ForeignHistory {
        applied: record
            .entries
            .iter()
            .filter(|(_, id)| applied_ids.contains(id))
            .map(|(v, _)| v.clone())
            .collect(),
        unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_top_level_transaction_control_is_removed() {
        let sql = "BEGIN;\nCREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$\nBEGIN\n  PERFORM 1;\nEND;\n$$;\nDO $$ BEGIN PERFORM 1; END $$;\nCOMMIT;\n";
        let (out, stripped) = strip_transaction_lines(sql);
        assert!(stripped);
        assert_eq!(
            out,
            "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$\nBEGIN\n  PERFORM 1;\nEND;\n$$;\nDO $$ BEGIN PERFORM 1; END $$;\n"
        );
    }

    #[test]
    fn statements_that_refuse_transactions_get_the_directive() {
        assert!(needs_no_transaction(
            "CREATE INDEX CONCURRENTLY i ON t (a);"
        ));
        assert!(needs_no_transaction(
            "select 1;\ncreate unique index concurrently i on t (a);"
        ));
        assert!(needs_no_transaction("VACUUM t;"));
        assert!(!needs_no_transaction(
            "CREATE INDEX i ON t (a); -- not concurrently"
        ));
    }

    #[test]
    fn wrapping_transactions_are_removed() {
        let (sql, stripped) = strip_transaction_lines("BEGIN;\nCREATE TABLE t (a int);\nCOMMIT;\n");
        assert!(stripped);
        assert_eq!(sql, "CREATE TABLE t (a int);\n");
        let (_, stripped) = strip_transaction_lines("CREATE TABLE t (a int);\n");
        assert!(!stripped);
    }
}

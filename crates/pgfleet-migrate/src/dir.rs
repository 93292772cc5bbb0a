//! The migrations directory: `<version>_<name>.sql` files, their directives, checksums and order.
//!
//! - A version is 14 digits: the UTC time `YYYYMMDDHHMMSS` for files `pgfleet gen` writes, or a
//!   zero-padded number for files adopted from tools that count (golang-migrate `1_init.up.sql`).
//! - A leading comment `-- pgfleet:no-transaction` marks a file whose statements cannot run in a
//!   transaction (e.g. `CREATE INDEX CONCURRENTLY`); it runs statement by statement, and its progress
//!   is recorded after each statement so a crash resumes where it stopped.
//! - Every other file runs in one transaction together with its history row, so it may not contain
//!   transaction control (`BEGIN`, `COMMIT`, …) of its own.
//! - `pgfleet.import` ([`ImportRecord`]), written by [`crate::import`], records which versions came
//!   from another tool; it is read with the directory.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The integrity file inside the directory.
pub const SUM_FILE: &str = "pgfleet.sum";
/// The record of versions adopted from another tool (see [`crate::import`]).
pub const IMPORT_FILE: &str = "pgfleet.import";
/// The directive that marks a file to run outside a transaction.
pub const NO_TRANSACTION: &str = "-- pgfleet:no-transaction";

/// Why the directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirError {
    /// The directory or a file could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// What could not be read.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A `.sql` file whose name is not `<14-digit version>_<name>.sql`.
    #[error("{}: a migration file is named <version>_<name>.sql with a 14-digit version (UTC YYYYMMDDHHMMSS), e.g. 20260101120000_create_users.sql; rename it, or move it out of the directory", path.display())]
    BadName {
        /// The file.
        path: PathBuf,
    },
    /// Two files with one version.
    #[error("{first} and {second} have the same version {version}; give one of them a new version")]
    DuplicateVersion {
        /// The version.
        version: String,
        /// One file.
        first: String,
        /// The other file.
        second: String,
    },
    /// A `-- pgfleet:` comment pgfleet does not know.
    #[error("{}:{line}: unknown directive {directive:?}; the only directive is `{NO_TRANSACTION}`", path.display())]
    UnknownDirective {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The directive as written.
        directive: String,
    },
    /// A transactional migration with `BEGIN`/`COMMIT` of its own.
    #[error("{}:{line}: `{statement}`: pgfleet runs each migration in a transaction together with its history row, so a migration must not control transactions itself; remove the statement, or put `{NO_TRANSACTION}` on the first line to run the file statement by statement", path.display())]
    TransactionControl {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The statement.
        statement: String,
    },
    /// `pgfleet.import` cannot be parsed.
    #[error("{}:{line}: {reason}; it is written by `pgfleet migrate import`, restore it from version control", path.display())]
    BadImportRecord {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A file that is not UTF-8.
    #[error("{}: not UTF-8 text", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
}

/// One migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// 14 digits.
    pub version: String,
    /// The part of the file name after `<version>_`, without `.sql`.
    pub name: String,
    /// The file name.
    pub file_name: String,
    /// The path as found.
    pub path: PathBuf,
    /// The SQL text.
    pub sql: String,
    /// `sha256:<hex>` of the file's bytes.
    pub checksum: String,
    /// Whether the file carries `-- pgfleet:no-transaction`.
    pub no_transaction: bool,
}

impl Migration {
    /// Parses one file's content (`path` is used for names and messages).
    ///
    /// # Errors
    /// [`DirError::BadName`], [`DirError::UnknownDirective`], [`DirError::TransactionControl`].
    pub fn parse(path: &Path, sql: String) -> Result<Self, DirError> {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (version, name) =
            split_name(&file_name).ok_or_else(|| DirError::BadName { path: path.into() })?;
        let no_transaction = directives(path, &sql)?;
        if !no_transaction {
            for stmt in pgfleet_pg::split::statements(&sql) {
                if is_transaction_control(stmt.text) {
                    return Err(DirError::TransactionControl {
                        path: path.into(),
                        line: stmt.line,
                        statement: stmt.text.to_string(),
                    });
                }
            }
        }
        Ok(Self {
            version: version.to_string(),
            name: name.to_string(),
            checksum: checksum(sql.as_bytes()),
            file_name,
            path: path.into(),
            sql,
            no_transaction,
        })
    }

    /// The statements of the file, in order (how a no-transaction file is run).
    pub fn statements(&self) -> Vec<pgfleet_pg::split::Statement<'_>> {
        pgfleet_pg::split::statements(&self.sql)
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn checksum(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// `("20260101120000", "create_users")` from `20260101120000_create_users.sql`.
pub fn split_name(file_name: &str) -> Option<(&str, &str)> {
    let stem = file_name.strip_suffix(".sql")?;
    let (version, name) = stem.split_once('_')?;
    (version.len() == 14 && version.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty())
        .then_some((version, name))
}

/// The version (UTC `YYYYMMDDHHMMSS`) of `unix_secs` seconds after the epoch.
pub fn version_from_unix(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Seconds since the epoch of a version that is a real UTC time, else `None`.
pub fn unix_from_version(version: &str) -> Option<u64> {
    if version.len() != 14 || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| version[r].parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(8..10)?, n(10..12)?, n(12..14)?);
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || hh > 23
        || mm > 59
        || ss > 59
    {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    let back = version_from_unix(secs as u64);
    (back == version).then_some(secs as u64)
}

/// The version for a new migration at `now`: later than `latest` in every case (one second
/// after it when the clock is behind).
pub fn next_version(now: std::time::SystemTime, latest: Option<&str>) -> String {
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let candidate = version_from_unix(secs);
    match latest {
        Some(l) if l >= candidate.as_str() => match unix_from_version(l) {
            Some(s) => version_from_unix(s + 1),
            None => format!("{:014}", l.parse::<u64>().unwrap_or(0) + 1),
        },
        _ => candidate,
    }
}

/// Reads the directives in the leading comment block; returns whether the file is no-transaction.
fn directives(path: &Path, sql: &str) -> Result<bool, DirError> {
    let mut no_tx = false;
    for (i, line) in sql.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if !t.starts_with("--") {
            break;
        }
        let body = t.trim_start_matches('-').trim();
        if let Some(d) = body.strip_prefix("pgfleet:") {
            if d.trim() == "no-transaction" {
                no_tx = true;
            } else {
                return Err(DirError::UnknownDirective {
                    path: path.into(),
                    line: i + 1,
                    directive: t.to_string(),
                });
            }
        }
    }
    Ok(no_tx)
}

/// Whether a statement is transaction control (`BEGIN`, `COMMIT`, `SAVEPOINT`, …), not a block's `BEGIN`.
pub fn is_transaction_control(stmt: &str) -> bool {
    let words: Vec<String> = stmt
        .split_whitespace()
        .take(2)
        .map(|w| w.trim_end_matches(';').to_ascii_lowercase())
        .collect();
    match words.first().map(String::as_str) {
        Some("begin" | "commit" | "rollback" | "end" | "abort") => {
            // `BEGIN` alone or `BEGIN TRANSACTION|WORK|ISOLATION …`; not a DO block's body.
            words.len() == 1
                || matches!(
                    words[1].as_str(),
                    "transaction" | "work" | "isolation" | "read" | "and" | "prepared"
                )
        }
        Some("start") => words.get(1).is_some_and(|w| w == "transaction"),
        Some("savepoint" | "release") => true,
        Some("prepare") => words.get(1).is_some_and(|w| w == "transaction"),
        _ => false,
    }
}

fn sort_and_check(migrations: &mut [Migration]) -> Result<(), DirError> {
    migrations.sort_by(|a, b| a.version.cmp(&b.version));
    for pair in migrations.windows(2) {
        if pair[0].version == pair[1].version {
            return Err(DirError::DuplicateVersion {
                version: pair[0].version.clone(),
                first: pair[0].file_name.clone(),
                second: pair[1].file_name.clone(),
            });
        }
    }
    Ok(())
}

/// A migrations directory, read and checked.
#[derive(Debug, Clone)]
pub struct MigrationDir {
    /// The directory.
    pub path: PathBuf,
    /// Its migrations in version order.
    pub migrations: Vec<Migration>,
    /// The record of versions adopted from another tool (`pgfleet.import`), if any.
    pub import: Option<ImportRecord>,
}

impl MigrationDir {
    /// Reads every `*.sql` file of `path` (not recursive). A directory that does not exist is
    /// read as empty, so `pgfleet gen` can create the first migration.
    ///
    /// # Errors
    /// See [`DirError`].
    pub fn load(path: &Path) -> Result<Self, DirError> {
        let read_err = |p: &Path, source| DirError::Read {
            path: p.into(),
            source,
        };
        let mut migrations = Vec::new();
        let entries = match std::fs::read_dir(path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    path: path.into(),
                    migrations,
                    import: None,
                });
            }
            Err(e) => return Err(read_err(path, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| read_err(path, e))?;
            let p = entry.path();
            if !p.is_file() || p.extension().is_none_or(|x| !x.eq_ignore_ascii_case("sql")) {
                continue;
            }
            let bytes = std::fs::read(&p).map_err(|e| read_err(&p, e))?;
            let sql =
                String::from_utf8(bytes).map_err(|_| DirError::NotUtf8 { path: p.clone() })?;
            migrations.push(Migration::parse(&p, sql)?);
        }
        sort_and_check(&mut migrations)?;
        let import = ImportRecord::load(&path.join(IMPORT_FILE))?;
        Ok(Self {
            path: path.into(),
            migrations,
            import,
        })
    }

    /// A directory held in memory (e.g. the fleet's target stored in the catalog): `(file name,
    /// SQL)` pairs; `path` is used in messages only.
    ///
    /// # Errors
    /// As [`MigrationDir::load`].
    pub fn from_files(path: &Path, files: Vec<(String, String)>) -> Result<Self, DirError> {
        let mut migrations = files
            .into_iter()
            .map(|(name, sql)| Migration::parse(&path.join(name), sql))
            .collect::<Result<Vec<_>, _>>()?;
        sort_and_check(&mut migrations)?;
        Ok(Self {
            path: path.into(),
            migrations,
            import: None,
        })
    }

    /// The migration with `version`.
    pub fn get(&self, version: &str) -> Option<&Migration> {
        self.migrations.iter().find(|m| m.version == version)
    }

    /// The newest version, if any.
    pub fn latest(&self) -> Option<&str> {
        self.migrations.last().map(|m| m.version.as_str())
    }
}

/// A migration tool pgfleet imports from ([`crate::import`]), as named in `pgfleet.import`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// sqlx (`sqlx migrate`).
    Sqlx,
    /// Drizzle Kit.
    Drizzle,
    /// golang-migrate.
    GolangMigrate,
}

impl std::fmt::Display for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sqlx => "sqlx",
            Self::Drizzle => "drizzle",
            Self::GolangMigrate => "golang-migrate",
        })
    }
}

impl std::str::FromStr for Tool {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "sqlx" => Ok(Self::Sqlx),
            "drizzle" => Ok(Self::Drizzle),
            "golang-migrate" => Ok(Self::GolangMigrate),
            other => Err(format!(
                "unknown tool {other:?}: use sqlx, drizzle or golang-migrate"
            )),
        }
    }
}

/// The content of `pgfleet.import`: which pgfleet version each migration of another tool became
/// (written by [`crate::import::import_dir`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRecord {
    /// The tool.
    pub tool: Tool,
    /// `(pgfleet version, the tool's id)`: sqlx and golang-migrate versions, Drizzle `when`.
    pub entries: Vec<(String, i64)>,
}

impl ImportRecord {
    /// Reads `path`; `None` when it does not exist.
    ///
    /// # Errors
    /// [`DirError::BadImportRecord`] or [`DirError::Read`].
    pub fn load(path: &Path) -> Result<Option<Self>, DirError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(DirError::Read {
                    path: path.into(),
                    source,
                });
            }
        };
        let bad = |line: usize, reason: String| DirError::BadImportRecord {
            path: path.into(),
            line,
            reason,
        };
        let mut tool = None;
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let mut parts = t.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some("tool"), Some(name), None) => {
                    tool = Some(name.parse().map_err(|e| bad(i + 1, e))?);
                }
                (Some(version), Some(id), None)
                    if split_name(&format!("{version}_x.sql")).is_some() =>
                {
                    let id = id
                        .parse()
                        .map_err(|_| bad(i + 1, format!("{id:?} is not a number")))?;
                    entries.push((version.to_string(), id));
                }
                _ => return Err(bad(i + 1, format!("unexpected line {t:?}"))),
            }
        }
        let tool = tool.ok_or_else(|| bad(1, "no `tool` line".into()))?;
        Ok(Some(Self { tool, entries }))
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = format!(
            "# {IMPORT_FILE}: migrations adopted from {}. On a database where {} already applied them,\n\
             # `pgfleet migrate` records them as applied instead of running them again.\n\
             # <pgfleet version> <{} id>\ntool {}\n",
            self.tool, self.tool, self.tool, self.tool
        );
        for (version, id) in &self.entries {
            out.push_str(&format!("{version} {id}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, sql: &str) -> Result<Migration, DirError> {
        Migration::parse(Path::new(name), sql.to_string())
    }

    #[test]
    fn names_need_a_14_digit_version_and_a_name() {
        assert_eq!(
            split_name("20260101120000_create_users.sql"),
            Some(("20260101120000", "create_users"))
        );
        assert_eq!(split_name("2026010112000_x.sql"), None);
        assert_eq!(split_name("20260101120000.sql"), None);
        assert_eq!(split_name("20260101120000_.sql"), None);
        assert_eq!(split_name("2026010112000a_x.sql"), None);
        let err = parse("1_init.sql", "select 1").unwrap_err();
        assert!(err.to_string().contains("14-digit version"), "{err}");
    }

    #[test]
    fn the_no_transaction_directive_is_read_from_the_leading_comments() {
        let m = parse(
            "20260101120000_idx.sql",
            "-- build the index online\n-- pgfleet:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);",
        )
        .unwrap();
        assert!(m.no_transaction);
        let m = parse(
            "20260101120000_idx.sql",
            "CREATE TABLE t (a int);\n-- pgfleet:no-transaction\n",
        )
        .unwrap();
        assert!(
            !m.no_transaction,
            "a directive after the first statement is only a comment"
        );
        let err = parse(
            "20260101120000_idx.sql",
            "-- pgfleet:no-transactions\nselect 1",
        )
        .unwrap_err();
        assert!(
            matches!(err, DirError::UnknownDirective { line: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn transactional_files_may_not_control_transactions() {
        for sql in [
            "BEGIN;\nCREATE TABLE t (a int);\nCOMMIT;",
            "create table t (a int);\ncommit",
            "START TRANSACTION; select 1;",
            "select 1; SAVEPOINT a;",
        ] {
            let err = parse("20260101120000_x.sql", sql).unwrap_err();
            assert!(
                matches!(err, DirError::TransactionControl { .. }),
                "{sql}: {err}"
            );
        }
        // A function body with BEGIN … END is not transaction control.
        parse(
            "20260101120000_x.sql",
            "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$;\n\
             DO $$ BEGIN PERFORM 1; END $$;",
        )
        .unwrap();
        // Allowed in a no-transaction file.
        parse(
            "20260101120000_x.sql",
            "-- pgfleet:no-transaction\nBEGIN; select 1; COMMIT;",
        )
        .unwrap();
    }

    #[test]
    fn versions_are_utc_timestamps() {
        assert_eq!(version_from_unix(0), "19700101000000");
        assert_eq!(version_from_unix(1_798_761_599), "20261231235959");
        assert_eq!(version_from_unix(951_782_400), "20000229000000");
        for secs in [0u64, 951_782_400, 1_798_761_599, 4_102_444_800] {
            assert_eq!(unix_from_version(&version_from_unix(secs)), Some(secs));
        }
        assert_eq!(unix_from_version("20260230000000"), None);
        assert_eq!(unix_from_version("00000000000003"), None);
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_798_761_599);
        assert_eq!(next_version(t, None), "20261231235959");
        assert_eq!(next_version(t, Some("20261231235959")), "20270101000000");
        assert_eq!(next_version(t, Some("20200101000000")), "20261231235959");
    }

    #[test]
    fn checksums_are_sha256_hex() {
        assert_eq!(
            checksum(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_directory_is_read_in_version_order_and_rejects_duplicates() {
        let dir = std::env::temp_dir().join(format!("pgfleet-dir-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("20260102000000_b.sql"), "select 2;").unwrap();
        std::fs::write(dir.join("20260101000000_a.sql"), "select 1;").unwrap();
        std::fs::write(dir.join("README.md"), "notes").unwrap();
        std::fs::write(dir.join(SUM_FILE), "").unwrap();
        let d = MigrationDir::load(&dir).unwrap();
        let names: Vec<&str> = d.migrations.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(d.latest(), Some("20260102000000"));
        std::fs::write(dir.join("20260101000000_c.sql"), "select 3;").unwrap();
        let err = MigrationDir::load(&dir).unwrap_err();
        assert!(matches!(err, DirError::DuplicateVersion { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(MigrationDir::load(&dir).unwrap().migrations.is_empty());
    }

    #[test]
    fn the_record_round_trips() {
        let r = ImportRecord {
            tool: Tool::Drizzle,
            entries: vec![("20240101120000".into(), 1_704_110_400_000)],
        };
        let path = std::env::temp_dir().join(format!("pgfleet-import-{}", std::process::id()));
        std::fs::write(&path, r.render()).unwrap();
        assert_eq!(ImportRecord::load(&path).unwrap(), Some(r));
        std::fs::write(&path, "tool flyway\n").unwrap();
        assert!(
            ImportRecord::load(&path)
                .unwrap_err()
                .to_string()
                .contains("unknown tool")
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(ImportRecord::load(&path).unwrap(), None);
    }
}

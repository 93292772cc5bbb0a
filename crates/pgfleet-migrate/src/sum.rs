//! `pgfleet.sum`: the integrity file of a migrations directory.
//!
//! ```text
//! # pgfleet.sum: integrity of this migrations directory. Written by `pgfleet gen` and `pgfleet migrate hash`.
//! dir sha256:<hash over the lines below>
//! 20260101120000_create_users.sql sha256:<hash of the file>
//! ```
//!
//! Every command checks it before touching a database, so a merge that adds a migration between two
//! existing ones, edits one, or drops one is caught with the names of the files; after reviewing such
//! a change, `pgfleet migrate hash` records the directory as it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::dir::{IMPORT_FILE, MigrationDir, SUM_FILE, checksum};

/// Why the directory does not match its `pgfleet.sum`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SumError {
    /// There are migrations but no `pgfleet.sum`.
    #[error("{} has migrations but no {SUM_FILE}; review the files, then run `pgfleet migrate hash --migrations {}` to record them", dir.display(), dir.display())]
    Missing {
        /// The directory.
        dir: PathBuf,
    },
    /// Files were added, changed or removed since `pgfleet.sum` was written.
    #[error("{} does not match {SUM_FILE}:{}\nif this is intended (e.g. after resolving a merge), review the files, then run `pgfleet migrate hash --migrations {}`; to change the schema, edit schema.sql and run `pgfleet gen` instead of editing migrations", dir.display(), describe(.added, .changed, .removed), dir.display())]
    Mismatch {
        /// The directory.
        dir: PathBuf,
        /// Files not in the sum.
        added: Vec<String>,
        /// Files whose hash differs.
        changed: Vec<String>,
        /// Files in the sum that are gone.
        removed: Vec<String>,
    },
    /// The file lines match but the `dir` line does not: `pgfleet.sum` was edited by hand.
    #[error("{}: its `dir` line does not match the file lines (was pgfleet.sum edited by hand?); review the migrations, then run `pgfleet migrate hash --migrations {}`", path.display(), dir.display())]
    Tampered {
        /// The sum file.
        path: PathBuf,
        /// The directory.
        dir: PathBuf,
    },
    /// `pgfleet.sum` cannot be parsed.
    #[error("{}:{line}: not a {SUM_FILE} line: {text:?}; regenerate it with `pgfleet migrate hash`", path.display())]
    Malformed {
        /// The sum file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The line.
        text: String,
    },
    /// Reading or writing failed.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn describe(added: &[String], changed: &[String], removed: &[String]) -> String {
    let mut out = String::new();
    for (what, files) in [("added", added), ("changed", changed), ("removed", removed)] {
        for f in files {
            out.push_str(&format!("\n  {what}: {f}"));
        }
    }
    out
}

/// The files a sum covers: every migration, plus the import record when there is one.
fn entries(dir: &MigrationDir) -> Result<BTreeMap<String, String>, SumError> {
    let mut out: BTreeMap<String, String> = dir
        .migrations
        .iter()
        .map(|m| (m.file_name.clone(), m.checksum.clone()))
        .collect();
    let import = dir.path.join(IMPORT_FILE);
    match std::fs::read(&import) {
        Ok(bytes) => {
            out.insert(IMPORT_FILE.to_string(), checksum(&bytes));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(SumError::Io {
                path: import,
                source,
            });
        }
    }
    Ok(out)
}

fn dir_hash(entries: &BTreeMap<String, String>) -> String {
    let mut text = String::new();
    for (name, hash) in entries {
        text.push_str(&format!("{name} {hash}\n"));
    }
    checksum(text.as_bytes())
}

/// The `dir` hash of `dir` (the line `pgfleet.sum` starts with): one value that changes when any
/// file is added, edited or removed.
///
/// # Errors
/// [`SumError::Io`] when the import record cannot be read.
pub fn directory_hash(dir: &MigrationDir) -> Result<String, SumError> {
    Ok(dir_hash(&entries(dir)?))
}

/// The text of `pgfleet.sum` for `dir` as it is now.
///
/// # Errors
/// [`SumError::Io`] when the import record cannot be read.
pub fn render(dir: &MigrationDir) -> Result<String, SumError> {
    let entries = entries(dir)?;
    let mut out = format!(
        "# {SUM_FILE}: integrity of this migrations directory. Written by `pgfleet gen` and `pgfleet migrate hash`; do not edit.\n\
         dir {}\n",
        dir_hash(&entries)
    );
    for (name, hash) in &entries {
        out.push_str(&format!("{name} {hash}\n"));
    }
    Ok(out)
}

/// Writes `pgfleet.sum` for `dir` (atomically: a temporary file renamed into place).
///
/// # Errors
/// [`SumError::Io`].
pub fn write(dir: &MigrationDir) -> Result<(), SumError> {
    let text = render(dir)?;
    let path = dir.path.join(SUM_FILE);
    let tmp = dir.path.join(format!(".{SUM_FILE}.tmp"));
    let io = |source| SumError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&dir.path).map_err(io)?;
    std::fs::write(&tmp, text).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}

/// Checks `dir` against its `pgfleet.sum`. An empty directory needs none.
///
/// # Errors
/// [`SumError::Missing`], [`SumError::Mismatch`], [`SumError::Malformed`].
pub fn verify(dir: &MigrationDir) -> Result<(), SumError> {
    let path = dir.path.join(SUM_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir.migrations.is_empty() {
                return Ok(());
            }
            return Err(SumError::Missing {
                dir: dir.path.clone(),
            });
        }
        Err(source) => return Err(SumError::Io { path, source }),
    };
    let recorded = parse(&path, &text)?;
    let actual = entries(dir)?;
    if recorded.files == actual {
        if dir_hash(&actual) == recorded.dir {
            return Ok(());
        }
        return Err(SumError::Tampered {
            path,
            dir: dir.path.clone(),
        });
    }
    let added = actual
        .keys()
        .filter(|k| !recorded.files.contains_key(*k))
        .cloned()
        .collect();
    let removed = recorded
        .files
        .keys()
        .filter(|k| !actual.contains_key(*k))
        .cloned()
        .collect();
    let changed = actual
        .iter()
        .filter(|(k, h)| recorded.files.get(*k).is_some_and(|r| r != *h))
        .map(|(k, _)| k.clone())
        .collect();
    Err(SumError::Mismatch {
        dir: dir.path.clone(),
        added,
        changed,
        removed,
    })
}

struct Recorded {
    dir: String,
    files: BTreeMap<String, String>,
}

fn parse(path: &Path, text: &str) -> Result<Recorded, SumError> {
    let mut dir = String::new();
    let mut files = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let malformed = || SumError::Malformed {
            path: path.into(),
            line: i + 1,
            text: line.to_string(),
        };
        let (name, hash) = t.rsplit_once(' ').ok_or_else(malformed)?;
        if !hash.starts_with("sha256:") {
            return Err(malformed());
        }
        if name == "dir" {
            dir = hash.to_string();
        } else {
            files.insert(name.to_string(), hash.to_string());
        }
    }
    Ok(Recorded { dir, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn temp(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("pgfleet-sum-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    #[test]
    fn a_written_sum_verifies_and_catches_added_changed_and_removed_files() {
        let t = temp("catch");
        let p = &t.0;
        std::fs::write(p.join("20260101000000_a.sql"), "create table a (x int);").unwrap();
        std::fs::write(p.join("20260103000000_c.sql"), "create table c (x int);").unwrap();
        let err = verify(&MigrationDir::load(p).unwrap()).unwrap_err();
        assert!(matches!(err, SumError::Missing { .. }), "{err}");
        write(&MigrationDir::load(p).unwrap()).unwrap();
        verify(&MigrationDir::load(p).unwrap()).unwrap();

        // A merge brings a file in between, edits one and removes one.
        std::fs::write(p.join("20260102000000_b.sql"), "create table b (x int);").unwrap();
        std::fs::write(p.join("20260101000000_a.sql"), "create table a (x bigint);").unwrap();
        std::fs::remove_file(p.join("20260103000000_c.sql")).unwrap();
        let err = verify(&MigrationDir::load(p).unwrap()).unwrap_err();
        let SumError::Mismatch {
            added,
            changed,
            removed,
            ..
        } = &err
        else {
            panic!("{err}")
        };
        assert_eq!(added, &["20260102000000_b.sql"]);
        assert_eq!(changed, &["20260101000000_a.sql"]);
        assert_eq!(removed, &["20260103000000_c.sql"]);
        let msg = err.to_string();
        assert!(
            msg.contains("added: 20260102000000_b.sql") && msg.contains("pgfleet migrate hash"),
            "{msg}"
        );
    }

    #[test]
    fn an_edited_dir_line_is_caught() {
        let t = temp("dirline");
        let p = &t.0;
        std::fs::write(p.join("20260101000000_a.sql"), "select 1;").unwrap();
        write(&MigrationDir::load(p).unwrap()).unwrap();
        let sum = std::fs::read_to_string(p.join(SUM_FILE)).unwrap();
        let edited: String = sum
            .lines()
            .map(|l| {
                if l.starts_with("dir ") {
                    "dir sha256:00"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(p.join(SUM_FILE), edited).unwrap();
        let err = verify(&MigrationDir::load(p).unwrap()).unwrap_err();
        assert!(matches!(err, SumError::Tampered { .. }), "{err}");
        std::fs::write(p.join(SUM_FILE), "garbage").unwrap();
        let err = verify(&MigrationDir::load(p).unwrap()).unwrap_err();
        assert!(matches!(err, SumError::Malformed { line: 1, .. }), "{err}");
    }

    #[test]
    fn an_empty_directory_needs_no_sum() {
        let t = temp("empty");
        verify(&MigrationDir::load(&t.0).unwrap()).unwrap();
    }
}

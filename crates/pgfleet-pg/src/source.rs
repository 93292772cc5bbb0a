//! The desired schema as the user wrote it: one `.sql` file, or a directory of them read in name order.

use std::path::{Path, PathBuf};

/// Why a schema source could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The path does not exist or cannot be read.
    #[error("cannot read schema {path}")]
    Read {
        /// The path given.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A directory without any `.sql` file.
    #[error("schema directory {0} holds no .sql files")]
    Empty(PathBuf),
}

/// One file of the desired schema.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Where it came from (as given, for messages).
    pub path: PathBuf,
    /// Its SQL text.
    pub sql: String,
}

/// The desired schema: its files, in the order they are applied.
#[derive(Debug, Clone)]
pub struct SchemaSource {
    /// The files in application order.
    pub files: Vec<SourceFile>,
}

impl SchemaSource {
    /// Reads `path`: a `.sql` file, or every `*.sql` file directly inside a directory, in name order.
    ///
    /// # Errors
    /// [`SourceError::Read`] when something cannot be read, [`SourceError::Empty`] for a directory
    /// without `.sql` files.
    pub fn load(path: &Path) -> Result<Self, SourceError> {
        let read_err = |source| SourceError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        let paths = if meta.is_dir() {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(read_err)?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "sql"))
                .collect();
            paths.sort();
            if paths.is_empty() {
                return Err(SourceError::Empty(path.to_path_buf()));
            }
            paths
        } else {
            vec![path.to_path_buf()]
        };
        let files = paths
            .into_iter()
            .map(|p| {
                let sql = std::fs::read_to_string(&p).map_err(|source| SourceError::Read {
                    path: p.clone(),
                    source,
                })?;
                Ok(SourceFile { path: p, sql })
            })
            .collect::<Result<Vec<_>, SourceError>>()?;
        Ok(Self { files })
    }

    /// A source made of SQL text (tests, generated schemas).
    pub fn from_sql(name: &str, sql: impl Into<String>) -> Self {
        Self {
            files: vec![SourceFile {
                path: PathBuf::from(name),
                sql: sql.into(),
            }],
        }
    }
}

/// 1-based line and column of the 1-based character `position` in `text` (PostgreSQL's error
/// positions count characters, not bytes).
pub fn line_col(text: &str, position: usize) -> (usize, usize) {
    let mut line = 1;
    let mut col = 1;
    for (i, ch) in text.chars().enumerate() {
        if i + 1 >= position {
            break;
        }
        if ch == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_map_to_lines() {
        let text = "CREATE TABLE a (x int);\nCREATE TABLE b (y innt);\n";
        let pos = text.find("innt").unwrap() + 1;
        assert_eq!(line_col(text, pos), (2, 19));
        assert_eq!(line_col(text, 1), (1, 1));
        assert_eq!(line_col("é\nx", 3), (2, 1), "characters, not bytes");
    }

    #[test]
    fn directories_are_read_in_name_order() {
        let dir = std::env::temp_dir().join(format!("pgfleet-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("02_b.sql"), "b").unwrap();
        std::fs::write(dir.join("01_a.sql"), "a").unwrap();
        std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
        let s = SchemaSource::load(&dir).unwrap();
        let sql: Vec<&str> = s.files.iter().map(|f| f.sql.as_str()).collect();
        assert_eq!(sql, ["a", "b"]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(
            SchemaSource::load(&dir),
            Err(SourceError::Read { .. })
        ));
    }
}

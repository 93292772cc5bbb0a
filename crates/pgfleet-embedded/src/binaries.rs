//! Finding PostgreSQL binaries.
//!
//! Discovery order: `PGFLEET_PG_BIN` (an explicit choice: when it is wrong that is an error, never a
//! silent fall-through), then the cache that `pgfleet setup` fills, then `pg_config --bindir` on `PATH`.

use std::path::{Path, PathBuf};

use crate::error::{EmbeddedError, Result};
use crate::install;
use crate::paths;

/// Where a set of binaries came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BinSource {
    /// `PGFLEET_PG_BIN` or an explicit directory.
    Explicit,
    /// pgfleet's cache (`pgfleet setup`).
    Cache,
    /// `pg_config --bindir` of the `pg_config` on `PATH`.
    PgConfig,
}

/// A located, verified set of PostgreSQL binaries.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    bin_dir: PathBuf,
    version: String,
    major: u32,
    source: BinSource,
    share_dir: PathBuf,
}

/// Inputs of discovery, normally read from the environment ([`Discovery::from_env`]).
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// An explicit bin directory (`PGFLEET_PG_BIN`).
    pub pg_bin: Option<PathBuf>,
    /// The cache directory (`PGFLEET_CACHE_DIR` …).
    pub cache_dir: PathBuf,
    /// Whether to ask `pg_config` on `PATH`.
    pub use_path: bool,
}

impl Discovery {
    /// Discovery as configured by the environment.
    pub fn from_env() -> Self {
        Self {
            pg_bin: std::env::var_os(paths::PG_BIN_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            cache_dir: paths::cache_dir(),
            use_path: true,
        }
    }
}

impl PgBinaries {
    /// Finds binaries as configured by the environment.
    ///
    /// # Errors
    /// [`EmbeddedError::BadBinDir`] when `PGFLEET_PG_BIN` is set but unusable;
    /// [`EmbeddedError::BinariesNotFound`] (naming `pgfleet setup`) when nothing is found.
    pub fn discover() -> Result<Self> {
        Self::discover_with(&Discovery::from_env())
    }

    /// Finds binaries following `d`.
    ///
    /// # Errors
    /// As [`PgBinaries::discover`].
    pub fn discover_with(d: &Discovery) -> Result<Self> {
        if let Some(dir) = &d.pg_bin {
            return Self::at(dir, BinSource::Explicit);
        }
        let mut looked = vec![format!("{} unset", paths::PG_BIN_ENV)];
        let cached = install::bin_dir(&d.cache_dir);
        if cached.join("postgres").is_file() {
            return Self::at(&cached, BinSource::Cache);
        }
        looked.push(format!("cache {} (empty)", cached.display()));
        if d.use_path {
            match pg_config_bindir() {
                Some(dir) => match Self::at(&dir, BinSource::PgConfig) {
                    Ok(b) => return Ok(b),
                    Err(e) => looked.push(format!("pg_config on PATH: {e}")),
                },
                None => looked.push("no pg_config on PATH".to_string()),
            }
        }
        Err(EmbeddedError::BinariesNotFound { looked })
    }

    /// Uses the binaries in `dir`, checking that initdb, pg_ctl and postgres are there and runnable.
    ///
    /// # Errors
    /// [`EmbeddedError::BadBinDir`] when they are not.
    pub fn at(dir: &Path, source: BinSource) -> Result<Self> {
        let bad = |reason: String| EmbeddedError::BadBinDir {
            dir: dir.to_path_buf(),
            reason,
        };
        for tool in ["initdb", "pg_ctl", "postgres"] {
            if !dir.join(tool).is_file() {
                return Err(bad(format!("{tool} is missing")));
            }
        }
        let out = crate::server_env::command(dir.join("postgres"))
            .arg("--version")
            .output()
            .map_err(|e| bad(format!("postgres --version could not run: {e}")))?;
        if !out.status.success() {
            return Err(bad(format!(
                "postgres --version failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let version = parse_version(&text)
            .ok_or_else(|| bad(format!("cannot read a version from {:?}", text.trim())))?;
        let major = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .ok_or_else(|| bad(format!("cannot read a major version from {version}")))?;
        let bin_dir = paths::absolute(dir);
        let share_dir = share_dir_of(&bin_dir);
        Ok(Self {
            bin_dir,
            version,
            major,
            source,
            share_dir,
        })
    }

    /// The bin directory.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// Path of one tool, e.g. `tool("pg_ctl")`.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// Full server version, e.g. `18.3`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Major version, e.g. `18`.
    pub fn major(&self) -> u32 {
        self.major
    }

    /// Where these binaries came from.
    pub fn source(&self) -> BinSource {
        self.source
    }

    /// Directory holding extension control files.
    pub fn extension_dir(&self) -> PathBuf {
        self.share_dir.join("extension")
    }

    /// True when the server ships the pgvector extension.
    pub fn has_pgvector(&self) -> bool {
        self.extension_dir().join("vector.control").is_file()
    }

    /// Fails with a plain explanation when pgvector is missing; call it whenever a schema needs `vector`.
    ///
    /// # Errors
    /// [`EmbeddedError::PgvectorMissing`].
    pub fn require_pgvector(&self) -> Result<()> {
        if self.has_pgvector() {
            Ok(())
        } else {
            Err(EmbeddedError::PgvectorMissing {
                version: self.version.clone(),
                bin_dir: self.bin_dir.clone(),
                extension_dir: self.extension_dir(),
            })
        }
    }
}

/// Parses `postgres (PostgreSQL) 18.3` (or `15.18 (Debian 15.18-0+deb12u1)`) into `18.3`.
pub fn parse_version(text: &str) -> Option<String> {
    let after = text.split("(PostgreSQL)").nth(1)?.trim();
    let v: String = after
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (!v.is_empty()).then_some(v)
}

fn pg_config_bindir() -> Option<PathBuf> {
    let out = crate::server_env::command("pg_config")
        .arg("--bindir")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// The share directory: ask `pg_config --sharedir` next to the binaries, else guess the layouts we know.
fn share_dir_of(bin_dir: &Path) -> PathBuf {
    if let Ok(out) = crate::server_env::command(bin_dir.join("pg_config"))
        .arg("--sharedir")
        .output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.is_dir() {
            return dir;
        }
    }
    let prefix = bin_dir.parent().unwrap_or(bin_dir);
    let candidates = [
        prefix.join("share/postgresql"),
        prefix.join("share"),
        // Debian: /usr/lib/postgresql/15/bin -> /usr/share/postgresql/15
        PathBuf::from("/usr/share/postgresql").join(prefix.file_name().unwrap_or_default()),
    ];
    candidates
        .iter()
        .find(|c| c.join("extension").is_dir())
        .cloned()
        .unwrap_or_else(|| candidates[0].clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(
            parse_version("postgres (PostgreSQL) 18.3\n").as_deref(),
            Some("18.3")
        );
        assert_eq!(
            parse_version("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)").as_deref(),
            Some("15.18")
        );
        assert_eq!(parse_version("something else"), None);
    }

    #[test]
    fn explicit_bad_dir_is_an_error_not_a_fallthrough() {
        let d = Discovery {
            pg_bin: Some(PathBuf::from("/nonexistent/pg/bin")),
            cache_dir: PathBuf::from("/nonexistent/cache"),
            use_path: true,
        };
        let err = PgBinaries::discover_with(&d).unwrap_err();
        assert!(matches!(err, EmbeddedError::BadBinDir { .. }), "{err}");
        assert!(err.to_string().contains("pgfleet setup"), "{err}");
    }

    #[test]
    fn nothing_found_names_the_setup_command() {
        let d = Discovery {
            pg_bin: None,
            cache_dir: PathBuf::from("/nonexistent/cache"),
            use_path: false,
        };
        let err = PgBinaries::discover_with(&d).unwrap_err();
        assert!(err.is_binaries_missing());
        assert!(err.to_string().contains("run `pgfleet setup`"), "{err}");
    }
}

//! Where pgfleet keeps its local state: the binary cache and the default data directory.

use std::path::PathBuf;

/// Environment variable naming pgfleet's home directory (default `./.pgfleet`).
pub const HOME_ENV: &str = "PGFLEET_HOME";
/// Environment variable naming the cache directory (default `$XDG_CACHE_HOME/pgfleet` or `~/.cache/pgfleet`).
pub const CACHE_ENV: &str = "PGFLEET_CACHE_DIR";
/// Environment variable naming a PostgreSQL bin directory to use instead of the cache.
pub const PG_BIN_ENV: &str = "PGFLEET_PG_BIN";
/// Default TCP port of the local cluster: not 5432, so it never clashes with a system PostgreSQL.
pub const DEFAULT_PORT: u16 = 54320;

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// pgfleet's home: `PGFLEET_HOME`, else `.pgfleet` in the current directory.
pub fn home_dir() -> PathBuf {
    env_path(HOME_ENV).unwrap_or_else(|| PathBuf::from(".pgfleet"))
}

/// The default data directory of the local cluster: `<home>/data`.
pub fn default_data_dir() -> PathBuf {
    home_dir().join("data")
}

/// The cache directory: `PGFLEET_CACHE_DIR`, else `$XDG_CACHE_HOME/pgfleet`, else `$HOME/.cache/pgfleet`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = env_path(CACHE_ENV) {
        return dir;
    }
    if let Some(dir) = env_path("XDG_CACHE_HOME") {
        return dir.join("pgfleet");
    }
    match env_path("HOME") {
        Some(home) => home.join(".cache").join("pgfleet"),
        None => std::env::temp_dir().join("pgfleet-cache"),
    }
}

/// Makes a path absolute against the current directory without touching the file system
/// (unlike `canonicalize`, it works for paths that do not exist yet).
pub fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

//! Errors of the embedded runtime.

use std::path::PathBuf;

/// The command a user runs to install the embedded PostgreSQL build.
pub const SETUP_COMMAND: &str = "pgfleet setup";

/// Everything that can go wrong while finding, installing or running a local PostgreSQL.
///
/// Each message names the object (directory, port, binary) and what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbeddedError {
    /// No PostgreSQL binaries were found anywhere pgfleet looks.
    #[error(
        "no PostgreSQL binaries found (looked at: {}); run `{SETUP_COMMAND}` to install PostgreSQL 18 with pgvector into the cache, or set PGFLEET_PG_BIN to a PostgreSQL bin directory",
        .looked.join("; ")
    )]
    BinariesNotFound {
        /// Where discovery looked, and what it found there.
        looked: Vec<String>,
    },

    /// `PGFLEET_PG_BIN` (or an explicit bin directory) does not hold usable PostgreSQL binaries.
    #[error(
        "{dir} does not hold usable PostgreSQL binaries ({reason}); point PGFLEET_PG_BIN at a directory with initdb, pg_ctl and postgres, or unset it and run `{SETUP_COMMAND}`"
    )]
    BadBinDir {
        /// The directory that was given.
        dir: PathBuf,
        /// What was wrong with it.
        reason: String,
    },

    /// The PostgreSQL server found lacks the pgvector extension.
    #[error(
        "the PostgreSQL {version} server at {bin_dir} has no pgvector extension (vector.control missing in {extension_dir}); run `{SETUP_COMMAND}` and unset PGFLEET_PG_BIN to use the bundled PostgreSQL 18 with pgvector, or install pgvector for this server"
    )]
    PgvectorMissing {
        /// Server version, e.g. `15.18`.
        version: String,
        /// Where the binaries are.
        bin_dir: PathBuf,
        /// Where `vector.control` was expected.
        extension_dir: PathBuf,
    },

    /// Installing the bundled PostgreSQL failed.
    #[error("installing PostgreSQL {version} into {dir} failed: {reason}")]
    Install {
        /// Version being installed.
        version: String,
        /// Target directory.
        dir: PathBuf,
        /// What failed, and what to do.
        reason: String,
    },

    /// The data directory exists, is not empty and is not a PostgreSQL data directory.
    #[error(
        "{dir} exists and is not empty, but is not a PostgreSQL data directory; pgfleet will not touch it: choose an empty or new directory with --data-dir"
    )]
    DataDirNotEmpty {
        /// The directory.
        dir: PathBuf,
    },

    /// The data directory belongs to another PostgreSQL major version.
    #[error(
        "{dir} is a PostgreSQL {found} data directory, but the binaries at {bin_dir} are PostgreSQL {expected}; pgfleet never upgrades or deletes a data directory: use PostgreSQL {found} binaries (PGFLEET_PG_BIN) or choose another --data-dir"
    )]
    VersionMismatch {
        /// The directory.
        dir: PathBuf,
        /// Major version found in `PG_VERSION`.
        found: String,
        /// Major version of the binaries.
        expected: u32,
        /// Where the binaries are.
        bin_dir: PathBuf,
    },

    /// The data directory is a PostgreSQL cluster that pgfleet did not create.
    #[error(
        "{dir} holds a PostgreSQL cluster that pgfleet did not create (no pgfleet.json); pgfleet does not know its credentials and will not manage it: run it with pg_ctl, or choose another --data-dir"
    )]
    NotManaged {
        /// The directory.
        dir: PathBuf,
    },

    /// There is no cluster at the data directory.
    #[error("no pgfleet cluster at {dir}; create and start one with `pgfleet up --data-dir {dir}`")]
    NoCluster {
        /// The directory.
        dir: PathBuf,
    },

    /// The TCP port is already taken by another process.
    #[error(
        "port {port} on 127.0.0.1 is already in use by another process; choose a free port with --port N (or stop whatever listens there)"
    )]
    PortInUse {
        /// The port.
        port: u16,
    },

    /// The cluster already runs on another port than the one asked for.
    #[error(
        "the cluster at {dir} is already running on port {running}, not {asked}; run `pgfleet down --data-dir {dir}` first to change its port"
    )]
    RunningOnOtherPort {
        /// The directory.
        dir: PathBuf,
        /// Port it runs on.
        running: u16,
        /// Port that was asked for.
        asked: u16,
    },

    /// Running as root, and no unprivileged OS user could be found or created.
    #[error(
        "PostgreSQL refuses to run as root and no unprivileged OS user is available: {reason}; create one (e.g. `useradd --system --user-group pgfleet`) or set PGFLEET_SERVER_USER to an existing user"
    )]
    NoServerUser {
        /// What failed.
        reason: String,
    },

    /// The server OS user cannot reach a path, and pgfleet could not grant access.
    #[error(
        "the server user {user} cannot enter {dir} and pgfleet could not grant it traverse rights ({reason}); run `chmod o+x {dir}` or choose a directory outside it"
    )]
    Unreachable {
        /// The OS user.
        user: String,
        /// The directory that blocks it.
        dir: PathBuf,
        /// Why granting failed.
        reason: String,
    },

    /// A PostgreSQL tool (initdb, pg_ctl) failed.
    #[error("{tool} failed for {dir}: {detail}")]
    Tool {
        /// Which tool.
        tool: String,
        /// The data directory it worked on.
        dir: PathBuf,
        /// Its output, or the tail of the server log.
        detail: String,
    },

    /// A file-system operation failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done, e.g. "could not create".
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// `pgfleet.json` in the data directory could not be read.
    #[error("{path} is not a valid pgfleet cluster description: {reason}")]
    BadMarker {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

impl EmbeddedError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// True when the error means "the PostgreSQL binaries are not installed": the caller may run setup.
    pub fn is_binaries_missing(&self) -> bool {
        matches!(self, Self::BinariesNotFound { .. })
    }

    /// True when the error means the port asked for is taken.
    pub fn is_port_in_use(&self) -> bool {
        matches!(self, Self::PortInUse { .. })
    }
}

/// Result alias of this crate.
pub type Result<T, E = EmbeddedError> = std::result::Result<T, E>;

//! The embedded PostgreSQL runtime: pgfleet's default database when the user has none, and the
//! servers that tests and benchmarks start.
//!
//! ```no_run
//! use pgfleet_embedded::{up, UpOptions};
//!
//! // Installs nothing: run `pgfleet setup` (or `install::ensure_installed`) first.
//! let started = up(&UpOptions { data_dir: "/tmp/my-cluster".into(), port: Some(54329) })?;
//! println!("connect to {}", started.cluster.url());
//! started.cluster.stop()?;
//! # Ok::<(), pgfleet_embedded::EmbeddedError>(())
//! ```
//!
//! - [`install`] puts PostgreSQL 18.6 with pgvector 0.8.6 into the cache (`pgfleet setup`).
//! - [`PgBinaries`] finds binaries: `PGFLEET_PG_BIN`, then the cache, then `pg_config` on `PATH`.
//! - [`Cluster`] initializes, starts and stops a cluster on 127.0.0.1 with a unix socket. When the
//!   process runs as root, the server runs as an unprivileged OS user ([`osuser`]). PostgreSQL's
//!   processes start with a clean environment, without pgfleet's secrets ([`server_env`]).
//!
//! The API is synchronous: it drives `initdb` and `pg_ctl`, which are processes, not connections.
#![deny(missing_docs)]

pub mod binaries;
pub mod cluster;
mod error;
pub mod install;
pub mod osuser;
pub mod paths;
pub mod process;
pub mod server_env;

use std::path::PathBuf;

pub use binaries::{BinSource, PgBinaries};
pub use cluster::{Cluster, DirState, InitOptions, ServerState, StartOutcome};
pub use error::{EmbeddedError, Result, SETUP_COMMAND};

/// What `pgfleet up` needs.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The data directory (created on first use).
    pub data_dir: PathBuf,
    /// TCP port; `None` keeps the recorded one, or [`paths::DEFAULT_PORT`] for a new cluster.
    pub port: Option<u16>,
}

/// What `up` did.
#[derive(Debug)]
pub struct Up {
    /// The running cluster.
    pub cluster: Cluster,
    /// True when the cluster was initialized by this call.
    pub created: bool,
    /// Whether it was started now or was running already.
    pub outcome: StartOutcome,
}

/// Binaries named by `PGFLEET_PG_BIN`, if set (an explicit choice overrides what a cluster recorded).
fn explicit_binaries() -> Result<Option<PgBinaries>> {
    match std::env::var_os(paths::PG_BIN_ENV).filter(|v| !v.is_empty()) {
        Some(dir) => PgBinaries::at(&PathBuf::from(dir), BinSource::Explicit).map(Some),
        None => Ok(None),
    }
}

/// Initializes (first time) and starts the cluster at `opts.data_dir`, waiting until it accepts
/// connections.
///
/// # Errors
/// Everything [`Cluster::init_or_open`] and [`Cluster::start`] return.
pub fn up(opts: &UpOptions) -> Result<Up> {
    let dir = paths::absolute(&opts.data_dir);
    let (mut cluster, created) = match cluster::dir_state(&dir)? {
        DirState::Missing | DirState::Empty => {
            let binaries = match explicit_binaries()? {
                Some(b) => b,
                None => PgBinaries::discover()?,
            };
            let init = InitOptions {
                port: opts.port.unwrap_or(paths::DEFAULT_PORT),
                ..InitOptions::default()
            };
            Cluster::init_or_open(&dir, binaries, &init)?
        }
        _ => (Cluster::open(&dir, explicit_binaries()?)?, false),
    };
    let outcome = cluster.start(opts.port)?;
    Ok(Up {
        cluster,
        created,
        outcome,
    })
}

/// Stops the cluster at `data_dir`; returns it and whether it was running.
///
/// # Errors
/// [`EmbeddedError::NoCluster`] and the others of [`Cluster::open`] and [`Cluster::stop`].
pub fn down(data_dir: &std::path::Path) -> Result<(Cluster, bool)> {
    let cluster = Cluster::open(data_dir, explicit_binaries()?)?;
    let was_running = cluster.stop()?;
    Ok((cluster, was_running))
}

/// Opens the cluster at `data_dir` to describe it.
///
/// # Errors
/// As [`Cluster::open`].
pub fn status(data_dir: &std::path::Path) -> Result<Cluster> {
    Cluster::open(data_dir, explicit_binaries()?)
}

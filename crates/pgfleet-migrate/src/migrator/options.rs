//! How to migrate ([`MigrateOptions`]), what a run reports while it goes ([`MigrateEvent`]) and
//! when it is done ([`MigrateReport`]).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::lock::Holder;

/// How to migrate.
#[derive(Debug, Clone)]
pub struct MigrateOptions {
    /// Run the migrations inside this schema (schema-per-tenant): `search_path` is set to it (then
    /// `public`, where shared extensions live), and the lock and the history are per schema.
    pub scope: Option<String>,
    /// Stop after this version (it must be a file of the directory).
    pub to: Option<String>,
    /// Only report what would run.
    pub dry_run: bool,
    /// Versions whose file may differ from the checksum recorded when they ran; the new checksum
    /// is recorded.
    pub allow_changed: BTreeSet<String>,
    /// Apply files older than the newest applied migration instead of refusing.
    pub allow_out_of_order: bool,
    /// How long to wait for another migrator to finish.
    pub lock_wait: Duration,
    /// The extensions the migrations create exist already, created (with their comments) by a
    /// role that may: `CREATE EXTENSION` runs as `IF NOT EXISTS` and `COMMENT ON EXTENSION` is
    /// skipped (see [`executable`](super::executable)). pgfleet's fleet migrations set it: they run as a role that
    /// may not create untrusted extensions nor comment on extensions it does not own.
    pub extensions_created: bool,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            scope: None,
            to: None,
            dry_run: false,
            allow_changed: BTreeSet::new(),
            allow_out_of_order: false,
            lock_wait: Duration::from_secs(15 * 60),
            extensions_created: false,
        }
    }
}

/// Progress of a run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum MigrateEvent {
    /// Another session holds the lock; this one polls until it is free.
    WaitingForLock {
        /// The holder, when visible.
        holder: Option<Holder>,
    },
    /// The lock was taken after waiting.
    LockTaken {
        /// How long it waited.
        waited: Duration,
    },
    /// Versions another tool applied were recorded as applied.
    Adopted {
        /// The tool.
        tool: String,
        /// The versions.
        versions: Vec<String>,
    },
    /// A changed file was accepted (`allow_changed`).
    AcceptedChange {
        /// The version.
        version: String,
        /// The recorded checksum.
        recorded: String,
        /// The file's checksum.
        actual: String,
    },
    /// An INVALID index left by an interrupted concurrent build was dropped before resuming.
    DroppedInvalidIndex {
        /// The index.
        name: String,
    },
    /// A migration starts.
    Started {
        /// Its version.
        version: String,
        /// Its file name.
        file: String,
        /// For a resumed no-transaction migration: the 1-based statement it resumes at.
        resume_at: Option<usize>,
    },
    /// A migration was applied.
    Applied {
        /// Its version.
        version: String,
        /// Its file name.
        file: String,
        /// How long it took.
        elapsed: Duration,
    },
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// Versions applied by this run (for a dry run: that would be applied).
    pub applied: Vec<String>,
    /// Versions adopted from another tool's history.
    pub adopted: Vec<String>,
    /// How long this run waited for the lock.
    pub waited: Duration,
    /// The newest migration applied to the database after this run (for a dry run: now).
    pub at: Option<String>,
}

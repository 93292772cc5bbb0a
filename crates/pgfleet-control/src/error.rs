//! What can go wrong in the control plane: [`ControlError`], with question methods for callers
//! that act on the kind of failure (`is_not_found`, `is_conflict`, `is_retryable`, …), and
//! [`chain`] (from `pgfleet-pg`), the one formatter of an error with its causes.

use pgfleet_pg::PgError;

use crate::config::ConfigError;
use crate::secrets::SecretError;

/// Maps a query error to a [`ControlError`] that says what was being done (`context`).
pub(crate) fn q(context: &str) -> impl FnOnce(tokio_postgres::Error) -> ControlError + '_ {
    move |e| PgError::query(context, e).into()
}

/// An error and its causes on one line, each cause once (`a: b: c`).
pub use pgfleet_pg::chain;

/// What can go wrong in the control plane.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Talking to the catalog or a server failed.
    #[error(transparent)]
    Pg(#[from] PgError),
    /// The configuration is incomplete or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A secret could not be sealed or opened.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// Migrating (the catalog or a tenant) failed.
    #[error(transparent)]
    Migrate(Box<pgfleet_migrate::MigrateError>),
    /// The target's migrations are not valid.
    #[error(transparent)]
    Dir(#[from] pgfleet_migrate::dir::DirError),
    /// The target directory does not match its `pgfleet.sum`.
    #[error(transparent)]
    Sum(#[from] pgfleet_migrate::sum::SumError),
    /// Building the target model in a shadow database failed.
    #[error("building the target model")]
    Shadow(#[source] Box<pgfleet_pg::shadow::ShadowError>),
    /// A target's migrations do not run from an empty database (replayed in a shadow database
    /// before it is recorded): it was not recorded.
    #[error(
        "the migrations of target {version} do not run from an empty database, so they were not recorded as the fleet's target (nothing changed); fix the migration and run the command again"
    )]
    InvalidTarget {
        /// The target's version.
        version: String,
        /// What failed, with file and line.
        #[source]
        error: Box<pgfleet_pg::shadow::ShadowError>,
    },
    /// A migrations directory without migrations was given as the target.
    #[error("{dir} has no migrations; write the first one with `pgfleet gen init`")]
    EmptyTarget {
        /// The directory.
        dir: String,
    },
    /// A new target changes or removes a migration that tenants already ran.
    #[error(
        "{file} {change} after it was recorded in the fleet's target {version}, and tenants ran it, so the fleet would split; {what_to_do}"
    )]
    RecordedMigrationChanged {
        /// The migration's file name.
        file: String,
        /// `was changed (recorded …, now …)` or `is missing from DIR`.
        change: String,
        /// The recorded target's version.
        version: String,
        /// What to do instead.
        what_to_do: &'static str,
    },
    /// The catalog does not exist or is older than this pgfleet.
    #[error("the catalog is not initialized ({0}); run `pgfleet init --migrations DIR`")]
    NotInitialized(String),
    /// No target recorded yet.
    #[error(
        "no target schema recorded: run `pgfleet init --migrations DIR` with the fleet's migrations directory"
    )]
    NoTarget,
    /// A catalog row holds something this pgfleet cannot read (edited by hand, or written by a
    /// newer version).
    #[error("the catalog's {table} holds a row pgfleet cannot read: {detail}")]
    CorruptRow {
        /// The table.
        table: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A tenant key that pgfleet does not accept.
    #[error("tenant key must be 1 to 256 bytes without NUL characters (got {len} bytes)")]
    InvalidKey {
        /// Its length in bytes.
        len: usize,
    },
    /// No such server.
    #[error("no server named {0}: `pgfleet server list` shows them, `pgfleet server add` adds one")]
    UnknownServer(String),
    /// A server with this name exists.
    #[error("a server named {0} already exists (`pgfleet server list`)")]
    ServerExists(String),
    /// A server name, capacity or weight the catalog refuses.
    #[error(
        "server name {0:?}: use lowercase letters, digits, '_' and '-' (at most 63), starting with a letter or digit; capacity >= 0, weight >= 1"
    )]
    InvalidServer(String),
    /// A server cannot hold tenants (every problem listed).
    #[error("server {name} ({url}) cannot hold tenants:\n  - {}", .problems.join("\n  - "))]
    UnusableServer {
        /// Its name.
        name: String,
        /// Its URL, password redacted.
        url: String,
        /// What is missing.
        problems: Vec<String>,
    },
    /// The master key does not open the catalog's secrets.
    #[error("the master key in use (id {configured}) did not seal the catalog's secrets (sealed with key id(s) {}); nothing was changed. Set PGFLEET_MASTER_KEY to the key the fleet uses; when rotating, set the old one as PGFLEET_PREVIOUS_MASTER_KEY", .catalog.join(", "))]
    WrongKey {
        /// The id of the configured key.
        configured: String,
        /// Ids found in the catalog that it is not.
        catalog: Vec<String>,
    },
    /// A token name the catalog refuses.
    #[error(
        "token name {0:?}: use letters, digits, '.', '_' and '-' (at most 63), starting with a letter or digit"
    )]
    InvalidTokenName(String),
    /// A token with this name exists (or existed: revoked names are not reused).
    #[error("a token named {0} already exists (`pgfleet token list`); choose another name")]
    TokenExists(String),
    /// No such token.
    #[error("no token named {0}: `pgfleet token list` shows them")]
    UnknownToken(String),
    /// No such tenant.
    #[error("no tenant with key {0:?}: `pgfleet tenant create KEY` creates it")]
    UnknownTenant(String),
    /// Several keys name no tenant.
    #[error("no tenants with keys {}: `pgfleet tenant list` shows the tenants", .0.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", "))]
    UnknownTenants(Vec<String>),
    /// The tenant has no server yet (its provisioning has not placed it).
    #[error("tenant {0:?} is not placed on a server yet")]
    NotPlaced(String),
    /// The tenant has no password yet (its provisioning has not reached the role step).
    #[error("tenant {key:?} has no password yet (state {state}, step {step})")]
    NoPassword {
        /// The key.
        key: String,
        /// Its state.
        state: String,
        /// Its step.
        step: String,
    },
    /// No server can take a tenant.
    #[error("no server has room for a new tenant: {0}; nothing was created")]
    NoCapacity(String),
    /// The key exists with other options.
    #[error(
        "tenant {key:?} already exists with {existing}; a key always names the same tenant, so it cannot be created again with {requested}"
    )]
    Conflict {
        /// The key.
        key: String,
        /// What it has.
        existing: String,
        /// What was asked.
        requested: String,
    },
    /// A rollout runs already: one at a time.
    #[error(
        "rollout {id} is running (process {owner}): one rollout runs at a time; wait for it to end (pgfleet serve's dashboard or GET /v1/rollouts/{id} follows it)"
    )]
    RolloutRunning {
        /// Its id.
        id: i64,
        /// The process that runs it.
        owner: String,
    },
    /// A tenant (or spare schema) differs from the target after its migrations.
    #[error(
        "verification failed: {what} differs from target {target} in {} step(s):\n{}",
        .plan.steps.len(),
        .plan.to_sql()
    )]
    VerificationFailed {
        /// The tenant or spare schema.
        what: String,
        /// The target's version.
        target: String,
        /// What would bring it to the target.
        plan: pgfleet_schema::Plan,
    },
    /// A repair statement failed (nothing of a repair in one transaction was kept).
    #[error("repairing tenant {key:?} failed at {object} ({done}){hint}")]
    RepairFailed {
        /// The key.
        key: String,
        /// The step that failed.
        object: String,
        /// What to do about it (empty when nothing specific).
        hint: &'static str,
        /// What was repaired before (and recorded), or that nothing was.
        done: String,
        /// The statement's error.
        #[source]
        cause: Box<PgError>,
    },
    /// Provisioning failed for good.
    #[error(
        "tenant {key:?} failed at step {step}: {error}; fix the cause and run `pgfleet tenant create` again to retry"
    )]
    Failed {
        /// The key.
        key: String,
        /// The step.
        step: String,
        /// The recorded error.
        error: String,
    },
    /// The tenant is being dropped (a drop started and did not finish).
    #[error("tenant {key:?} is being dropped{}; run `pgfleet tenant drop KEY --yes` again to finish, then create it anew", .error.as_deref().map(|e| format!(" (the last attempt failed: {e})")).unwrap_or_default())]
    Dropping {
        /// The key.
        key: String,
        /// Why the last drop failed.
        error: Option<String>,
    },
    /// The tenant was not ready in time.
    #[error("tenant {key:?} was not ready within {seconds}s (at step {step}{}); its provisioning is recorded and resumes when `pgfleet tenant create KEY` runs again (`pgfleet tenant show KEY` shows where it is)", .last_error.as_deref().map(|e| format!(", last error: {e}")).unwrap_or_default())]
    Timeout {
        /// The key.
        key: String,
        /// Seconds waited.
        seconds: u64,
        /// The step it is at.
        step: String,
        /// The last error of a retried step.
        last_error: Option<String>,
    },
    /// A task of this process stopped unexpectedly (it panicked or was cancelled).
    #[error("{what} stopped unexpectedly: {reason}")]
    TaskFailed {
        /// What the task did.
        what: &'static str,
        /// Why it stopped.
        reason: String,
    },
}

impl From<pgfleet_migrate::MigrateError> for ControlError {
    fn from(e: pgfleet_migrate::MigrateError) -> Self {
        Self::Migrate(Box::new(e))
    }
}

impl From<pgfleet_pg::shadow::ShadowError> for ControlError {
    fn from(e: pgfleet_pg::shadow::ShadowError) -> Self {
        Self::Shadow(Box::new(e))
    }
}

impl ControlError {
    /// True when what was asked for does not exist: a tenant, several tenants, a server.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::UnknownTenant(_) | Self::UnknownTenants(_) | Self::UnknownServer(_)
        )
    }

    /// True when the request contradicts what exists: a key with other options, a server name
    /// taken, a tenant being dropped, a target that changes what tenants ran.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Self::Conflict { .. }
                | Self::RolloutRunning { .. }
                | Self::ServerExists(_)
                | Self::Dropping { .. }
                | Self::RecordedMigrationChanged { .. }
        )
    }

    /// True when the caller gave something invalid (a key, a server name, options, a target that
    /// does not run): the same call fails again.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Self::InvalidKey { .. }
                | Self::InvalidServer(_)
                | Self::InvalidTarget { .. }
                | Self::EmptyTarget { .. }
                | Self::Dir(_)
                | Self::Sum(_)
        )
    }

    /// True when trying again later may succeed without anyone changing anything: a server or the
    /// catalog could not be reached, a lock was not obtained in time, the tenant was not ready in
    /// time.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Pg(e) => matches!(e, PgError::Connect { .. }) || e.is_lock_timeout(),
            Self::Timeout { .. } => true,
            _ => false,
        }
    }

    /// True when the master key in use does not open the catalog's secrets.
    pub fn is_wrong_key(&self) -> bool {
        matches!(
            self,
            Self::WrongKey { .. } | Self::Secret(SecretError::Open { .. })
        )
    }

    /// The SQLSTATE of the PostgreSQL error behind this one, if there is one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Self::Pg(e) => e.sqlstate(),
            Self::RepairFailed { cause, .. } => cause.sqlstate(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_prints_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] Inner);
        #[derive(Debug, thiserror::Error)]
        #[error("inner")]
        struct Inner;
        assert_eq!(chain(&Outer(Inner)), "outer: inner");
        let e = ControlError::Migrate(Box::new(pgfleet_migrate::MigrateError::from(
            PgError::Catalog("x".into()),
        )));
        let text = chain(&e);
        assert_eq!(
            text.matches("unexpected catalog content: x").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn questions_answer_by_kind() {
        assert!(ControlError::UnknownTenant("k".into()).is_not_found());
        assert!(ControlError::UnknownTenants(vec!["a".into()]).is_not_found());
        assert!(ControlError::ServerExists("s".into()).is_conflict());
        assert!(ControlError::InvalidKey { len: 0 }.is_invalid_input());
        let down = ControlError::Pg(PgError::Connect {
            target: "h".into(),
            reason: "refused".into(),
        });
        assert!(down.is_retryable() && !down.is_not_found());
        assert!(!ControlError::NoTarget.is_retryable());
    }
}

//! What a fleet operation is asked (`FleetOptions`, `Canary`) and what it reports
//! (`FleetMigration`, `TenantMigration`, `Outcome`, progress).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::tenant::{Mode, Tenant};

/// How `migrate --all` runs.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Tenants migrated at once, in all.
    pub concurrency: usize,
    /// Tenants migrated at once on one server.
    pub per_server: usize,
    /// Migrate these first; stop if any fails.
    pub canary: Option<Canary>,
    /// Only these tenant keys (empty: every ready tenant).
    pub tenants: Vec<String>,
    /// Keep going after a tenant fails.
    pub continue_on_error: bool,
    /// Introspect each migrated tenant and diff it against the target (as provisioning does).
    pub verify: bool,
    /// How long one tenant waits for another migrator holding its lock.
    pub lock_wait: Duration,
}

impl FleetOptions {
    /// What the run was asked, as recorded in its `pgfleet.rollouts` row (`options`).
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "concurrency": self.concurrency,
            "per_server": self.per_server,
            "canary": self.canary.map(|c| match c {
                Canary::Count(n) => n.to_string(),
                Canary::Percent(p) => format!("{p}%"),
            }),
            "tenants": self.tenants.len(),
            "continue_on_error": self.continue_on_error,
            "verify": self.verify,
        })
    }
}

impl Default for FleetOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            per_server: 4,
            canary: None,
            tenants: Vec::new(),
            continue_on_error: false,
            verify: false,
            lock_wait: Duration::from_secs(60),
        }
    }
}

/// The canary of a fleet migration: a number of tenants or a percentage of those to migrate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Canary {
    /// This many tenants.
    Count(usize),
    /// This percentage of the tenants to migrate (rounded up).
    Percent(f64),
}

impl Canary {
    /// How many of `n` tenants.
    pub fn of(self, n: usize) -> usize {
        match self {
            Self::Count(c) => c.min(n),
            Self::Percent(p) => ((n as f64 * p / 100.0).ceil() as usize).min(n),
        }
    }
}

impl std::str::FromStr for Canary {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected a number of tenants (10) or a percentage (5%), got {s:?}");
        match s.trim().strip_suffix('%') {
            Some(p) => {
                let p: f64 = p.trim().parse().map_err(|_| bad())?;
                if p > 0.0 && p <= 100.0 {
                    Ok(Self::Percent(p))
                } else {
                    Err(format!(
                        "a canary percentage must be above 0 and at most 100, got {s:?}"
                    ))
                }
            }
            None => match s.trim().parse::<usize>() {
                Ok(0) => Err(
                    "a canary of 0 tenants is no canary: leave --canary out, or give at least 1"
                        .into(),
                ),
                Ok(n) => Ok(Self::Count(n)),
                Err(_) => Err(bad()),
            },
        }
    }
}

/// What happened to one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Migrations were applied.
    Migrated,
    /// Nothing to apply.
    UpToDate,
    /// A migration (or the verification) failed; the tenant keeps its version.
    Failed,
    /// Not started (the run stopped, or the tenant is not ready).
    NotRun,
}

/// One tenant of a fleet migration.
#[derive(Debug, Clone, Serialize)]
pub struct TenantMigration {
    /// The tenant's key.
    pub key: String,
    /// Its id.
    pub id: String,
    /// Its server.
    pub server: String,
    /// Its mode.
    pub mode: Mode,
    /// Its version before.
    pub from: Option<String>,
    /// Its version after.
    pub to: Option<String>,
    /// Versions applied.
    pub applied: Vec<String>,
    /// The outcome.
    pub outcome: Outcome,
    /// Why it failed or did not run.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: f64,
}

/// A fleet migration's result.
#[derive(Debug, Clone, Serialize)]
pub struct FleetMigration {
    /// The target version.
    pub target: String,
    /// This run recorded a new target.
    pub target_changed: bool,
    /// Its row in `pgfleet.rollouts`.
    pub rollout: i64,
    /// Tenants considered.
    pub total: usize,
    /// Tenants migrated.
    pub migrated: usize,
    /// Tenants already at the target.
    pub up_to_date: usize,
    /// Tenants that failed.
    pub failed: usize,
    /// Tenants not started.
    pub not_run: usize,
    /// Tenants in the canary.
    pub canary: usize,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// Wall time.
    pub elapsed_ms: f64,
    /// Every tenant, in the order they finished.
    pub tenants: Vec<TenantMigration>,
}

/// Progress of a fleet operation, reported after every tenant.
#[derive(Debug, Clone, Copy)]
pub struct FleetProgress {
    /// The run's row in `pgfleet.rollouts` (known from the first report on).
    pub rollout: i64,
    /// Tenants in the run.
    pub total: usize,
    /// Tenants finished (including failed ones).
    pub done: usize,
    /// Tenants that failed.
    pub failed: usize,
    /// Tenants not started (the run stopped).
    pub not_run: usize,
    /// Since the run started.
    pub elapsed: Duration,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(FleetProgress) + Send + Sync>;

/// Progress counters of a fleet operation, reported through its callback after every tenant.
pub(super) struct Counters {
    pub(super) rollout: i64,
    pub(super) total: usize,
    pub(super) done: AtomicUsize,
    pub(super) failed: AtomicUsize,
    pub(super) not_run: AtomicUsize,
    pub(super) started: Instant,
    pub(super) progress: ProgressFn,
}

impl Counters {
    pub(super) fn finish(&self, failed: bool) {
        self.count(failed, false);
    }

    pub(super) fn count(&self, failed: bool, not_run: bool) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let failed = if failed {
            self.failed.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.failed.load(Ordering::Relaxed)
        };
        let not_run = if not_run {
            self.not_run.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.not_run.load(Ordering::Relaxed)
        };
        (self.progress)(FleetProgress {
            rollout: self.rollout,
            total: self.total,
            done,
            failed,
            not_run,
            elapsed: self.started.elapsed(),
        });
    }
}

/// One tenant's outcome.
pub(super) fn result(
    t: &Tenant,
    outcome: Outcome,
    to: Option<String>,
    applied: Vec<String>,
    error: Option<String>,
    duration_ms: f64,
) -> TenantMigration {
    TenantMigration {
        key: t.key.clone(),
        id: t.id.clone(),
        server: t.server.clone().unwrap_or_default(),
        mode: t.mode,
        from: t.schema_version.clone(),
        to,
        applied,
        outcome,
        error,
        duration_ms,
    }
}

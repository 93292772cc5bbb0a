//! `check --all`: drift (and security findings) of every ready tenant, bounded concurrency,
//! optionally repaired.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::Semaphore;

use super::report::{Counters, ProgressFn};
use crate::diagnose::Drift;
use crate::{Control, ControlError};

/// One tenant of a fleet check.
#[derive(Debug, Clone, Serialize)]
pub struct TenantCheck {
    /// The tenant's key.
    pub key: String,
    /// Its server.
    pub server: String,
    /// Its drift (after repairs, with `fix`); `None` when the check failed.
    pub drift: Option<Drift>,
    /// Repairs applied (each recorded as a correction event).
    pub repaired: Vec<String>,
    /// Why the check failed.
    pub error: Option<String>,
}

/// A fleet check's result.
#[derive(Debug, Clone, Serialize)]
pub struct FleetCheck {
    /// The target version.
    pub target: String,
    /// Tenants checked.
    pub total: usize,
    /// Tenants at the target without drift or security findings (after repairs).
    pub clean: usize,
    /// Tenants behind the current target: migrations pending (`migrate --all`), not drift.
    pub behind: usize,
    /// Tenants with drift or security findings left.
    pub drifted: usize,
    /// Tenants with critical security findings left (see [`crate::security`]).
    pub critical: usize,
    /// Tenants repaired (with `fix`).
    pub repaired: usize,
    /// Differences left that would lose data to fix (extra tables or columns).
    pub destructive: usize,
    /// Tenants whose check failed (unreachable, …).
    pub failed: usize,
    /// Every tenant, in key order.
    pub tenants: Vec<TenantCheck>,
}

impl Control {
    /// Drift of every ready tenant against the target, `concurrency` tenants at a time; with `fix`,
    /// additive drift is repaired and recorded (see [`Control::fix`]).
    ///
    /// # Errors
    /// Catalog errors (a tenant that cannot be checked is a result, not an error).
    pub async fn check_all(
        &self,
        fix: bool,
        concurrency: usize,
        progress: ProgressFn,
    ) -> Result<FleetCheck, ControlError> {
        let target = self.target().await?;
        let (ready, _) = self.fleet_tenants(&[]).await?;
        let counters = Arc::new(Counters {
            rollout: 0,
            total: ready.len(),
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            not_run: AtomicUsize::new(0),
            started: Instant::now(),
            progress,
        });
        let gate = Arc::new(Semaphore::new(concurrency.max(1)));
        let mut set = tokio::task::JoinSet::new();
        for t in ready {
            let (c, gate, counters) = (self.clone(), gate.clone(), counters.clone());
            set.spawn(async move {
                let _permit = gate.acquire_owned().await.expect("never closed");
                let outcome = if fix {
                    c.fix(&t.key, "pgfleet check --all --fix")
                        .await
                        .map(|r| (r.remaining, r.applied))
                } else {
                    c.check(&t.key).await.map(|d| (d, Vec::new()))
                };
                let server = t.server.clone().unwrap_or_default();
                let r = match outcome {
                    Ok((drift, repaired)) => TenantCheck {
                        key: t.key,
                        server,
                        drift: Some(drift),
                        repaired,
                        error: None,
                    },
                    Err(e) => TenantCheck {
                        key: t.key,
                        server,
                        drift: None,
                        repaired: Vec::new(),
                        error: Some(e.to_string()),
                    },
                };
                counters.finish(r.error.is_some());
                r
            });
        }
        let mut tenants = Vec::new();
        while let Some(r) = set.join_next().await {
            match r {
                Ok(r) => tenants.push(r),
                Err(e) => tracing::error!("a fleet check task panicked: {e}"),
            }
        }
        tenants.sort_by(|a, b| a.key.cmp(&b.key));
        let drifted = |t: &&TenantCheck| {
            t.drift
                .as_ref()
                .is_some_and(|d| !d.steps.is_empty() || !d.security.is_empty())
        };
        Ok(FleetCheck {
            target: target.version,
            total: tenants.len(),
            clean: tenants
                .iter()
                .filter(|t| t.drift.as_ref().is_some_and(Drift::is_clean))
                .count(),
            behind: tenants
                .iter()
                .filter(|t| t.drift.as_ref().is_some_and(Drift::is_behind))
                .count(),
            drifted: tenants.iter().filter(drifted).count(),
            critical: tenants
                .iter()
                .filter(|t| t.drift.as_ref().is_some_and(|d| d.critical() > 0))
                .count(),
            repaired: tenants.iter().filter(|t| !t.repaired.is_empty()).count(),
            destructive: tenants
                .iter()
                .filter_map(|t| t.drift.as_ref())
                .flat_map(|d| &d.steps)
                .filter(|s| s.destructive)
                .count(),
            failed: tenants.iter().filter(|t| t.error.is_some()).count(),
            tenants,
        })
    }
}

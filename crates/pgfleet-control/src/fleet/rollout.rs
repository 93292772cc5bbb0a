//! `migrate --all`: the rollout (recording the target, its row in `pgfleet.rollouts`, the tenants
//! to migrate, the run, its report).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use pgfleet_migrate::MigrationDir;

use super::report::{
    Counters, FleetMigration, FleetOptions, FleetProgress, Outcome, ProgressFn, TenantMigration,
    result,
};
use super::runner::Runner;
use crate::catalog::{self, Target, rollouts, tenants};
use crate::tenant::{State, Tenant};
use crate::{Control, ControlError};

impl Control {
    /// Records `dir` as the fleet's target unless it already is ([`catalog::record_target`]):
    /// validated first by replaying it in a sandboxed shadow database on a server of the fleet
    /// (its PostgreSQL and extensions), else on the catalog's, with the fleet's allowed
    /// extensions. Returns the new version when it changed.
    ///
    /// # Errors
    /// As [`catalog::record_target`].
    pub async fn record_target(&self, dir: &MigrationDir) -> Result<Option<String>, ControlError> {
        let dev = match self.servers().await?.first() {
            Some(s) => self.server_admin_config(&s.name).await?,
            None => pgfleet_pg::connect::parse_url(&self.config().catalog_url)?,
        };
        catalog::record_target(&self.catalog(), dir, &dev, &self.shadow_options()).await
    }

    /// Records `dir` as the target (when given), then brings every ready tenant (or the tenants
    /// named in `opts`) to it. See the [module](self) documentation.
    ///
    /// # Errors
    /// Catalog errors, an unknown tenant key, an invalid directory. Tenants that fail are results,
    /// not errors.
    pub async fn migrate_all(
        &self,
        dir: Option<&MigrationDir>,
        opts: &FleetOptions,
        progress: ProgressFn,
    ) -> Result<FleetMigration, ControlError> {
        let started = Instant::now();
        let target_changed = match dir {
            Some(d) => self.record_target(d).await?.is_some(),
            None => false,
        };
        let target = Arc::new(self.target().await?);
        let (ready, not_ready) = self.fleet_tenants(&opts.tenants).await?;
        self.abandon_dead_rollouts().await?;
        // The new row is locked on this process's lock session by the statement that inserts it,
        // so no other process ever sees it running and unlocked.
        let rollout = rollouts::start(
            &*self.lock_session().await?,
            &target.version,
            &self.inner.worker,
            (ready.len() + not_ready.len()) as i32,
            &opts.summary(),
        )
        .await?;
        let outcome = self
            .run_rollout(
                rollout,
                started,
                target_changed,
                target,
                ready,
                not_ready,
                opts,
                progress,
            )
            .await;
        // Whatever happened, the row gets its end state and the lock goes.
        let recorded = match &outcome {
            Ok(report) => {
                rollouts::finish(
                    &*self.catalog(),
                    rollout,
                    rollouts::Counts {
                        failed: report.failed as i32,
                        migrated: report.migrated as i32,
                        up_to_date: report.up_to_date as i32,
                        not_run: report.not_run as i32,
                        stopped: report.stopped.is_some(),
                    },
                )
                .await
            }
            Err(_) => rollouts::fail(&*self.catalog(), rollout).await,
        };
        let unlocked = match self.lock_session().await {
            Ok(session) => rollouts::unlock(&*session, rollout).await,
            Err(e) => Err(e),
        };
        let report = outcome?;
        recorded?;
        unlocked?;
        Ok(report)
    }

    /// Marks `running` rollouts whose process died (their lock is free) `abandoned`.
    async fn abandon_dead_rollouts(&self) -> Result<(), ControlError> {
        rollouts::abandon_dead(&*self.lock_session().await?).await
    }

    /// The body of [`Self::migrate_all`] once its rollout row exists.
    #[allow(clippy::too_many_arguments)]
    async fn run_rollout(
        &self,
        rollout: i64,
        started: Instant,
        target_changed: bool,
        target: Arc<Target>,
        ready: Vec<Tenant>,
        not_ready: Vec<Tenant>,
        opts: &FleetOptions,
        progress: ProgressFn,
    ) -> Result<FleetMigration, ControlError> {
        let mut results: Vec<TenantMigration> = not_ready
            .into_iter()
            .map(|t| {
                let error = format!(
                    "not ready (state {}): provisioning brings it to the target",
                    t.state
                );
                result(&t, Outcome::NotRun, None, Vec::new(), Some(error), 0.0)
            })
            .collect();
        let (current, todo): (Vec<Tenant>, Vec<Tenant>) = ready
            .into_iter()
            .partition(|t| t.schema_version.as_deref() == Some(target.version.as_str()));
        for t in &current {
            results.push(result(
                t,
                Outcome::UpToDate,
                t.schema_version.clone(),
                Vec::new(),
                None,
                0.0,
            ));
        }
        // Live progress in the row (the recorder adds each batch): what needs no work counts now.
        rollouts::progress(
            &*self.catalog(),
            rollout,
            rollouts::Counts {
                up_to_date: current.len() as i32,
                not_run: (results.len() - current.len()) as i32,
                ..rollouts::Counts::default()
            },
        )
        .await?;
        let counters = Arc::new(Counters {
            rollout,
            total: results.len() + todo.len(),
            done: AtomicUsize::new(results.len()),
            failed: AtomicUsize::new(0),
            not_run: AtomicUsize::new(0),
            started,
            progress,
        });
        (counters.progress)(FleetProgress {
            rollout,
            total: counters.total,
            done: results.len(),
            failed: 0,
            not_run: 0,
            elapsed: started.elapsed(),
        });
        let canary = opts.canary.map_or(0, |c| c.of(todo.len()));
        let mut rest = todo;
        let first: Vec<Tenant> = rest.drain(..canary).collect();
        let runner = Arc::new(Runner::new(self, target.clone(), opts, counters).await?);
        let mut stopped = None;
        let canary_results = runner.clone().run(first).await;
        let canary_failed = canary_results.iter().any(|r| r.outcome == Outcome::Failed);
        results.extend(canary_results);
        if canary_failed {
            stopped = Some(format!(
                "a canary tenant failed: the other {} tenant(s) were not started",
                rest.len()
            ));
            rollouts::progress(
                &*self.catalog(),
                rollout,
                rollouts::Counts {
                    not_run: rest.len() as i32,
                    ..rollouts::Counts::default()
                },
            )
            .await?;
            for t in &rest {
                results.push(result(
                    t,
                    Outcome::NotRun,
                    t.schema_version.clone(),
                    Vec::new(),
                    Some("not started: a canary tenant failed".into()),
                    0.0,
                ));
            }
        } else {
            results.extend(runner.clone().run(rest).await);
            if runner.stop.load(Ordering::Relaxed) {
                stopped = Some(
                    "a tenant failed: tenants not yet started were not (pass --continue-on-error to go on past failures)"
                        .into(),
                );
            }
        }
        let runner = Arc::try_unwrap(runner).map_err(|_| ControlError::TaskFailed {
            what: "the fleet migration",
            reason: "its tasks were still running after the rollout".into(),
        })?;
        runner.close().await?;
        let count = |o: Outcome| results.iter().filter(|r| r.outcome == o).count();
        let report = FleetMigration {
            target: target.version.clone(),
            target_changed,
            rollout,
            total: results.len(),
            migrated: count(Outcome::Migrated),
            up_to_date: count(Outcome::UpToDate),
            failed: count(Outcome::Failed),
            not_run: count(Outcome::NotRun),
            canary,
            stopped,
            elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
            tenants: results,
        };
        Ok(report)
    }

    /// The tenants of a fleet operation: (ready, named but not ready). Unknown named keys are an
    /// error.
    pub(super) async fn fleet_tenants(
        &self,
        keys: &[String],
    ) -> Result<(Vec<Tenant>, Vec<Tenant>), ControlError> {
        let tenants = tenants::for_fleet(&*self.catalog(), keys).await?;
        let unknown: Vec<&String> = keys
            .iter()
            .filter(|k| !tenants.iter().any(|t| &t.key == *k))
            .collect();
        match unknown.as_slice() {
            [] => {}
            [one] => return Err(ControlError::UnknownTenant((*one).clone())),
            many => {
                return Err(ControlError::UnknownTenants(
                    many.iter().map(|k| (*k).clone()).collect(),
                ));
            }
        }
        Ok(tenants.into_iter().partition(|t| t.state == State::Ready))
    }
}

//! Background work of long-running processes (`pgfleet serve`), until shutdown:
//!
//! - **the operations queue**: a few tasks run queued operations (provisioning), and resume any a
//!   dead worker left: its session's tenant lock went with it, so the operation is claimable again;
//!   a live worker's lock keeps others off, so each operation runs once however many processes
//!   serve one catalog;
//! - **the health checker** ([`crate::health`]).
//!
//! Shutdown stops taking new work; work in flight finishes (a provisioning step, a health round),
//! then operations still leased to this process are handed back to the queue.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::health::HealthOptions;
use crate::{Control, ControlError};

/// What the workers do.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Tasks running queued operations.
    pub queue_tasks: usize,
    /// How often an idle queue task looks for work.
    pub poll: Duration,
    /// The health checker (`None`: off).
    pub health: Option<HealthOptions>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            queue_tasks: 4,
            poll: Duration::from_millis(500),
            health: Some(HealthOptions::default()),
        }
    }
}

async fn pause(shutdown: &mut watch::Receiver<bool>, d: Duration) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        _ = shutdown.changed() => {}
    }
}

/// Retry pacing after errors: 0.5 s doubling to 30 s, and a warning only when the delay grows (so
/// an outage logs a handful of lines, not one per attempt).
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn reset(&mut self) {
        if self.failures > 0 {
            tracing::info!("working again after {} failed attempt(s)", self.failures);
        }
        self.failures = 0;
    }

    fn delay(&self) -> Duration {
        if self.failures == 0 {
            Duration::ZERO
        } else {
            (Duration::from_millis(500) * 2u32.saturating_pow(self.failures - 1))
                .min(Duration::from_secs(30))
        }
    }

    fn warn(&mut self, what: &str, e: &ControlError) {
        self.failures += 1;
        if self.failures.is_power_of_two() {
            tracing::warn!(
                attempts = self.failures,
                "{what}: {e} (retrying in {:?})",
                self.delay()
            );
        }
    }
}

impl Control {
    /// Stops this process from claiming new operations (work in flight finishes).
    pub fn stop_taking_work(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
    }

    /// Whether [`Control::stop_taking_work`] was called.
    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::Relaxed)
    }

    /// Runs the workers until `shutdown` turns true, then hands this process's leases back.
    ///
    /// # Errors
    /// Only when handing the leases back fails (errors while working are logged and counted in
    /// `pgfleet_catalog_errors_total`, and the work is retried).
    pub async fn run_workers(
        &self,
        opts: WorkerOptions,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), ControlError> {
        self.keep_spares(true);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..opts.queue_tasks.max(1) {
            let (c, mut stop, poll) = (self.clone(), shutdown.clone(), opts.poll);
            tasks.spawn(async move {
                let mut backoff = Backoff::default();
                while !*stop.borrow() {
                    match c.ensure_catalog().await.and(c.run_queued(None).await) {
                        Ok(n) if n > 0 => {
                            backoff.reset();
                            continue;
                        }
                        Ok(_) => backoff.reset(),
                        Err(e) => {
                            metrics::counter!("pgfleet_catalog_errors_total").increment(1);
                            backoff.warn("operations queue", &e);
                        }
                    }
                    pause(&mut stop, poll.max(backoff.delay())).await;
                }
            });
        }
        if let Some(h) = opts.health.clone() {
            let (c, mut stop) = (self.clone(), shutdown.clone());
            tasks.spawn(async move {
                // Due tenants are looked for a few times per interval, so a check is late by a
                // fraction of it at most.
                let idle =
                    (h.interval / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
                while !*stop.borrow() {
                    match c.health_round(&h).await {
                        Ok(r) if r.total() as i64 >= h.batch => continue,
                        Ok(_) => {}
                        Err(e) => {
                            metrics::counter!("pgfleet_catalog_errors_total").increment(1);
                            tracing::warn!("health checker: {e}");
                        }
                    }
                    pause(&mut stop, idle).await;
                }
            });
        }
        let mut stop = shutdown.clone();
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                break;
            }
        }
        self.stop_taking_work();
        while tasks.join_next().await.is_some() {}
        self.ensure_catalog().await?;
        let released =
            crate::catalog::operations::release(&*self.catalog(), &self.inner.worker).await?;
        if released > 0 {
            tracing::info!(released, "handed unfinished operations back to the queue");
        }
        Ok(())
    }

    /// The name this process claims work under (`host:pid`).
    pub fn worker_name(&self) -> &str {
        &self.inner.worker
    }

    /// Tenants counted by (state, server, health), for gauges.
    ///
    /// # Errors
    /// Catalog errors.
    pub async fn tenant_counts(&self) -> Result<Vec<(String, String, String, i64)>, ControlError> {
        crate::catalog::tenants::counts(&*self.catalog()).await
    }
}

//! Fleet operations: bring every tenant to the target (`migrate --all`) and check the whole fleet
//! for drift (`check --all`), concurrently within bounds.
//!
//! `migrate --all` records the migrations directory as the target (as `init` does), then:
//!
//! - **Up-to-date tenants cost nothing**: the catalog knows each tenant's version, and a tenant
//!   already at the target is not connected to at all.
//! - The others are migrated with pgfleet's migrator on a connection of their own at a time (at most
//!   `concurrency` overall and `per_server` per server), under the migrator's per-database (or
//!   per-schema) lock, each migration in its own transaction with its history row. Schema tenants
//!   of one server share a few connections to the shared database, one tenant after another.
//! - After a tenant's migrations the tenant's role is granted DML on what they created.
//! - **Isolated and resumable**: a failing tenant is recorded in the catalog (`migrate_error`: file,
//!   statement and PostgreSQL's message; a `tenant.migrate_failed` event) and keeps its version;
//!   the run stops starting new tenants unless `continue_on_error`. Versions reach the catalog in
//!   batches; a run killed before a batch was written leaves tenants migrated whose catalog row is
//!   behind, and the next run finds them up to date in their history (no statement runs twice) and
//!   records them.
//! - **Canary**: the first N (or N %) tenants are migrated first; if any fails, the rest are not
//!   started.
//! - Every run is recorded in `pgfleet.rollouts` (target, owner, counts, state).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgfleet_migrate::{MigrateOptions, MigrationDir};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use tokio_postgres::Client;

use crate::catalog::{self, Target, events, rollouts, tenants};

/// The first key of a rollout's session advisory lock (the second is its id): held by the process
/// that runs it, so a `running` rollout whose lock is free was abandoned by a dead process.
use crate::diagnose::Drift;
use crate::tenant::{Mode, State, Tenant};
use crate::{Control, ControlError};

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

struct Counters {
    total: usize,
    done: AtomicUsize,
    failed: AtomicUsize,
    not_run: AtomicUsize,
    started: Instant,
    progress: ProgressFn,
}

impl Counters {
    fn finish(&self, failed: bool) {
        self.count(failed, false);
    }

    fn count(&self, failed: bool, not_run: bool) {
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
            total: self.total,
            done,
            failed,
            not_run,
            elapsed: self.started.elapsed(),
        });
    }
}

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
        let counters = Arc::new(Counters {
            total: results.len() + todo.len(),
            done: AtomicUsize::new(results.len()),
            failed: AtomicUsize::new(0),
            not_run: AtomicUsize::new(0),
            started,
            progress,
        });
        (counters.progress)(FleetProgress {
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
    async fn fleet_tenants(
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

fn result(
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

/// Schema tenants per batch.
const CHUNK: usize = 25;

/// Runs tenants' migrations within the bounds and hands each outcome to the recorder.
struct Runner {
    control: Control,
    target: Arc<Target>,
    opts: FleetOptions,
    global: Arc<Semaphore>,
    per_server: HashMap<String, Arc<Semaphore>>,
    configs: HashMap<String, tokio_postgres::Config>,
    idle: Mutex<HashMap<String, Vec<Client>>>,
    stop: AtomicBool,
    counters: Arc<Counters>,
    recorder: mpsc::UnboundedSender<TenantMigration>,
    recorder_task: tokio::task::JoinHandle<Result<(), ControlError>>,
    /// Migrations of the target that create a schema: (version, file name).
    creates_schema: Vec<(String, String)>,
}

/// Why one tenant's migration failed.
#[derive(Debug)]
struct Failure {
    error: String,
    /// Its migrations were applied (it is at the target) but something after them failed.
    at_target: bool,
}

impl From<String> for Failure {
    fn from(error: String) -> Self {
        Self {
            error,
            at_target: false,
        }
    }
}

impl Runner {
    async fn new(
        control: &Control,
        target: Arc<Target>,
        opts: &FleetOptions,
        counters: Arc<Counters>,
    ) -> Result<Self, ControlError> {
        let mut configs = HashMap::new();
        let mut per_server = HashMap::new();
        for s in control.servers().await? {
            // Migrations run as the fleet's owner role, never as the admin.
            configs.insert(
                s.name.clone(),
                control.owner_config(&s.name, "postgres").await?,
            );
            per_server.insert(s.name, Arc::new(Semaphore::new(opts.per_server.max(1))));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let recorder_task = tokio::spawn(record(control.clone(), target.version.clone(), rx));
        let creates_schema = target
            .dir
            .migrations
            .iter()
            .filter(|m| {
                m.statements().iter().any(|st| {
                    let words: Vec<String> = st
                        .text
                        .split_whitespace()
                        .take(2)
                        .map(str::to_ascii_lowercase)
                        .collect();
                    words == ["create", "schema"]
                })
            })
            .map(|m| (m.version.clone(), m.file_name.clone()))
            .collect();
        Ok(Self {
            control: control.clone(),
            target,
            opts: opts.clone(),
            global: Arc::new(Semaphore::new(opts.concurrency.max(1))),
            per_server,
            configs,
            idle: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
            counters,
            recorder: tx,
            recorder_task,
            creates_schema,
        })
    }

    async fn run(self: Arc<Self>, tenants: Vec<Tenant>) -> Vec<TenantMigration> {
        let mut set = tokio::task::JoinSet::new();
        // Schema tenants of one shared database go in chunks on one connection (a few round trips
        // per chunk); database tenants one by one (a connection each).
        let mut chunks: HashMap<(String, String), Vec<Tenant>> = HashMap::new();
        for t in tenants {
            // With --verify every tenant is introspected after its migrations: one by one.
            if t.mode == Mode::Schema && !self.opts.verify {
                let k = (t.server.clone().unwrap_or_default(), t.database.clone());
                let chunk = chunks.entry(k.clone()).or_default();
                chunk.push(t);
                if chunk.len() == CHUNK {
                    let full = std::mem::take(chunk);
                    let r = self.clone();
                    set.spawn(async move { r.chunk(k.0, k.1, full).await });
                }
            } else {
                let r = self.clone();
                set.spawn(async move { vec![r.one(t).await] });
            }
        }
        for ((server, database), chunk) in chunks {
            if !chunk.is_empty() {
                let r = self.clone();
                set.spawn(async move { r.chunk(server, database, chunk).await });
            }
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            match r {
                Ok(r) => out.extend(r),
                Err(e) => tracing::error!("a fleet migration task panicked: {e}"),
            }
        }
        out
    }

    /// Takes this server's permit and one overall.
    async fn permits(
        &self,
        server: &str,
    ) -> (
        Option<tokio::sync::OwnedSemaphorePermit>,
        tokio::sync::OwnedSemaphorePermit,
    ) {
        let s = match self.per_server.get(server) {
            Some(s) => Some(s.clone().acquire_owned().await.expect("never closed")),
            None => None,
        };
        let g = self
            .global
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        (s, g)
    }

    fn not_started(&self, t: &Tenant) -> TenantMigration {
        self.counters.count(false, true);
        result(
            t,
            Outcome::NotRun,
            t.schema_version.clone(),
            Vec::new(),
            Some("not started: another tenant failed".into()),
            0.0,
        )
    }

    /// A schema tenant cannot take a migration that creates a schema (its objects live in its
    /// own schema of a shared database): refused before anything runs.
    fn refuse_schema_creation(&self, t: &Tenant) -> Result<(), Failure> {
        if t.mode != Mode::Schema {
            return Ok(());
        }
        for (version, file) in &self.creates_schema {
            if t.schema_version
                .as_deref()
                .is_none_or(|v| v < version.as_str())
            {
                return Err(Failure::from(format!(
                    "{file} creates a schema, which a schema-mode tenant cannot take (its objects live in its own schema of the shared database); nothing was run. Keep schema-mode targets to objects in the default schema, or use database mode for this fleet"
                )));
            }
        }
        Ok(())
    }

    /// Records one tenant's outcome (metrics, recorder, progress, stop flag).
    fn finish(
        &self,
        t: &Tenant,
        outcome: Result<Vec<String>, Failure>,
        ms: f64,
    ) -> TenantMigration {
        let r = match outcome {
            Ok(applied) => {
                let o = if applied.is_empty() {
                    Outcome::UpToDate
                } else {
                    Outcome::Migrated
                };
                result(t, o, Some(self.target.version.clone()), applied, None, ms)
            }
            Err(f) => {
                if !self.opts.continue_on_error {
                    self.stop.store(true, Ordering::Relaxed);
                }
                let to = if f.at_target {
                    Some(self.target.version.clone())
                } else {
                    t.schema_version.clone()
                };
                result(t, Outcome::Failed, to, Vec::new(), Some(f.error), ms)
            }
        };
        let outcome = match r.outcome {
            Outcome::Migrated => "migrated",
            Outcome::UpToDate => "up_to_date",
            Outcome::Failed => "failed",
            Outcome::NotRun => "not_run",
        };
        metrics::counter!("pgfleet_migrations_total", "outcome" => outcome).increment(1);
        metrics::histogram!("pgfleet_migration_duration_seconds").record(ms / 1000.0);
        let _ = self.recorder.send(r.clone());
        self.counters.finish(r.outcome == Outcome::Failed);
        r
    }

    async fn one(&self, t: Tenant) -> TenantMigration {
        let server = t.server.clone().unwrap_or_default();
        let _permits = self.permits(&server).await;
        if self.stop.load(Ordering::Relaxed) {
            return self.not_started(&t);
        }
        let started = Instant::now();
        let outcome = self.migrate(&t, &server).await;
        self.finish(&t, outcome, started.elapsed().as_secs_f64() * 1000.0)
    }

    /// Schema tenants of one shared database on one connection: their locks and histories in two
    /// round trips, the migrations of every tenant whose history allows it in one batch (each
    /// tenant's migration its own transaction), the locks released in one more. A tenant the
    /// batch cannot take (a lock held elsewhere, a partial or edited history, a no-transaction
    /// file, a failure in the batch) goes through the migrator on its own, which applies or
    /// reports it exactly as `pgfleet migrate` would.
    async fn chunk(
        &self,
        server: String,
        database: String,
        tenants: Vec<Tenant>,
    ) -> Vec<TenantMigration> {
        let _permits = self.permits(&server).await;
        if self.stop.load(Ordering::Relaxed) {
            return tenants.iter().map(|t| self.not_started(t)).collect();
        }
        let started = Instant::now();
        let mut out = Vec::new();
        let mut tenants = tenants;
        if !self.creates_schema.is_empty() {
            let (refused, ok): (Vec<Tenant>, Vec<Tenant>) = tenants
                .into_iter()
                .partition(|t| self.refuse_schema_creation(t).is_err());
            for t in &refused {
                let e = self.refuse_schema_creation(t).expect_err("partitioned");
                out.push(self.finish(t, Err(e), 0.0));
            }
            tenants = ok;
        }
        let batched = match self.connection(&server, &database).await {
            Ok(conn) => {
                // Tenants whose role holds what it must not (or whose objects the owner role does
                // not own yet) are secured first, one by one; a failure there is theirs.
                let all: Vec<&Tenant> = tenants.iter().collect();
                let needing = match self.control.needing_security(&conn, &all).await {
                    Ok(n) => n,
                    Err(e) => {
                        let e = format!("checking what the tenants' roles hold: {e}");
                        return tenants
                            .iter()
                            .map(|t| self.finish(t, Err(Failure::from(e.clone())), 0.0))
                            .collect();
                    }
                };
                let mut ready = Vec::new();
                for t in tenants.drain(..) {
                    if !needing.contains(&t.role) {
                        ready.push(t);
                        continue;
                    }
                    match self.secure(&t).await {
                        Ok(()) => ready.push(t),
                        Err(e) => out.push(self.finish(&t, Err(e), 0.0)),
                    }
                }
                tenants = ready;
                if let Err(e) = self.extensions_ready(&conn, &server, &database).await {
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    out.extend(
                        tenants
                            .iter()
                            .map(|t| self.finish(t, Err(Failure::from(e.clone())), ms)),
                    );
                    return out;
                }
                let r = self.batch(&conn, &database, &tenants).await;
                self.put_back(&server, &database, conn, r.is_ok());
                r.unwrap_or_else(|e| {
                    tracing::debug!("batched migration fell back: {e}");
                    HashMap::new()
                })
            }
            Err(e) => {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                return tenants
                    .iter()
                    .map(|t| self.finish(t, Err(Failure::from(e.clone())), ms))
                    .collect();
            }
        };
        let batch_ms = started.elapsed().as_secs_f64() * 1000.0 / tenants.len().max(1) as f64;
        for t in &tenants {
            match batched.get(&t.id) {
                Some(applied) => out.push(self.finish(t, Ok(applied.clone()), batch_ms)),
                None => {
                    if self.stop.load(Ordering::Relaxed) {
                        out.push(self.not_started(t));
                        continue;
                    }
                    let one = Instant::now();
                    let outcome = self.migrate(t, &server).await;
                    out.push(self.finish(t, outcome, one.elapsed().as_secs_f64() * 1000.0));
                }
            }
        }
        out
    }

    /// The batched part of [`Runner::chunk`]: the tenants it brought to the target (by id, with
    /// the versions applied). Tenants left out are migrated one by one by the caller.
    async fn batch(
        &self,
        conn: &Client,
        database: &str,
        tenants: &[Tenant],
    ) -> Result<HashMap<String, Vec<String>>, String> {
        use pgfleet_migrate::lock;
        use pgfleet_schema::quote::literal;
        use tokio_postgres::SimpleQueryMessage;
        let keys: Vec<i64> = tenants
            .iter()
            .map(|t| lock::key(database, &t.schema))
            .collect();
        let describe = |e: tokio_postgres::Error| pgfleet_pg::describe(&e);
        // 1: the history table, the schemas that exist, and a try-lock per tenant.
        let names = tenants
            .iter()
            .map(|t| literal(&t.schema))
            .collect::<Vec<_>>()
            .join(", ");
        let locks = keys
            .iter()
            .map(|k| format!("pg_catalog.pg_try_advisory_lock({k})"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT pg_catalog.to_regclass('pgfleet_migrate.history') IS NOT NULL, \
                    ARRAY(SELECT nspname::text FROM pg_catalog.pg_namespace WHERE nspname IN ({names})), {locks}"
        );
        let messages = conn.simple_query(&sql).await.map_err(describe)?;
        let row = messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            })
            .ok_or("no answer to the lock query")?;
        let has_history = row.get(0) == Some("t");
        let existing = row.get(1).unwrap_or("{}").to_string();
        let locked: Vec<bool> = (0..tenants.len())
            .map(|i| row.get(i + 2) == Some("t"))
            .collect();
        let unlock = async {
            let held: Vec<String> = keys
                .iter()
                .zip(&locked)
                .filter(|(_, l)| **l)
                .map(|(k, _)| format!("pg_catalog.pg_advisory_unlock({k})"))
                .collect();
            if !held.is_empty() {
                let _ = conn
                    .simple_query(&format!("SELECT {}", held.join(", ")))
                    .await;
            }
        };
        if !has_history {
            unlock.await;
            return Ok(HashMap::new());
        }
        // The schema list comes back as a PostgreSQL array literal; schema names are pgfleet's
        // own (`t` + hex), so no quoting appears in it.
        let existing: Vec<&str> = existing
            .trim_matches(|c| c == '{' || c == '}')
            .split(',')
            .collect();
        let candidates: Vec<&Tenant> = tenants
            .iter()
            .zip(&locked)
            .filter(|(t, l)| **l && existing.contains(&t.schema.as_str()))
            .map(|(t, _)| t)
            .collect();
        // 2: their histories.
        let scopes: Vec<&str> = candidates.iter().map(|t| t.schema.as_str()).collect();
        let histories = match pgfleet_migrate::history::read_many(conn, &scopes).await {
            Ok(h) => h,
            Err(e) => {
                unlock.await;
                return Err(e.to_string());
            }
        };
        let mut done = HashMap::new();
        let mut sql = String::new();
        let mut in_batch = Vec::new();
        for t in candidates {
            let rows = histories.get(&t.schema).map(Vec::as_slice).unwrap_or(&[]);
            let Some(pending) = pgfleet_migrate::migrator::batchable(&self.target.dir, rows) else {
                continue;
            };
            if pending.is_empty() {
                done.insert(t.id.clone(), Vec::new());
                continue;
            }
            for m in &pending {
                sql.push_str(&pgfleet_migrate::migrator::transaction_sql(
                    &t.schema, m, true,
                ));
            }
            in_batch.push((
                t,
                pending
                    .iter()
                    .map(|m| m.version.clone())
                    .collect::<Vec<_>>(),
            ));
        }
        // 3: every batchable tenant's migrations; each commits on its own, the first failure
        // stops the rest of the batch.
        let failed = !sql.is_empty() && conn.batch_execute(&sql).await.is_err();
        if failed {
            let _ = conn.batch_execute("ROLLBACK").await;
        }
        let after = if failed {
            let scopes: Vec<&str> = in_batch.iter().map(|(t, _)| t.schema.as_str()).collect();
            pgfleet_migrate::history::read_many(conn, &scopes)
                .await
                .ok()
        } else {
            None
        };
        for (t, versions) in in_batch {
            let complete = match &after {
                None if !failed => true,
                None => false,
                Some(h) => versions.iter().all(|v| {
                    h.get(&t.schema)
                        .is_some_and(|rows| rows.iter().any(|r| &r.version == v))
                }),
            };
            if complete {
                done.insert(t.id.clone(), versions);
            }
        }
        // 4: the locks.
        unlock.await;
        Ok(done)
    }

    async fn connection(&self, server: &str, database: &str) -> Result<Client, String> {
        let config = self
            .configs
            .get(server)
            .ok_or_else(|| format!("unknown server {server:?}"))?;
        let idle_key = format!("{server}/{database}");
        let reused = self
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&idle_key)
            .and_then(Vec::pop);
        match reused {
            Some(c) if !c.is_closed() => Ok(c),
            _ => {
                let mut config = config.clone();
                config.dbname(database);
                pgfleet_migrate::migrator::connect_dedicated(&config)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }

    fn put_back(&self, server: &str, database: &str, conn: Client, clean: bool) {
        if clean && !conn.is_closed() {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(format!("{server}/{database}"))
                .or_default()
                .push(conn);
        }
    }

    /// Secures tenant `t` ([`Control::secure`]) when what its role holds, or who owns its objects,
    /// says it needs it: checked on `conn` (any connection to its database) in one query.
    async fn secure_if_needed(&self, conn: &Client, t: &Tenant) -> Result<(), Failure> {
        let needs = self
            .control
            .needing_security(conn, &[t])
            .await
            .map_err(|e| format!("checking what the tenant's role holds: {e}"))?;
        if needs.is_empty() {
            return Ok(());
        }
        self.secure(t).await
    }

    /// Secures tenant `t` against the target model of its own version.
    async fn secure(&self, t: &Tenant) -> Result<(), Failure> {
        let secured = async {
            let (target, _) = self.control.target_for(t).await?;
            let expected = self.control.target_model(t, &target).await?;
            self.control
                .secure(t, &expected, "pgfleet migrate --all")
                .await
        }
        .await;
        secured.map(|_| ()).map_err(|e| {
            Failure::from(format!(
                "securing the tenant before its migrations failed (nothing was migrated): {e}"
            ))
        })
    }

    /// Makes sure the extensions the target needs and only the admin may create exist in
    /// `database` (checked on `conn`, created by the admin when missing).
    async fn extensions_ready(
        &self,
        conn: &Client,
        server: &str,
        database: &str,
    ) -> Result<(), String> {
        let missing = crate::extensions::missing(conn, &self.target)
            .await
            .map_err(|e| e.to_string())?;
        if missing.is_empty() {
            return Ok(());
        }
        let admin = async {
            let mut config = self.control.server_admin_config(server).await?;
            config.dbname(database);
            let admin = pgfleet_pg::connect::connect(&config).await?;
            let schema = (database == crate::tenant::SHARED_DATABASE).then_some("public");
            crate::extensions::create(&admin, &self.target, schema).await
        };
        admin
            .await
            .map_err(|e| format!("creating the extensions {}: {e}", missing.join(", ")))
    }

    /// Migrates one tenant with the migrator; the versions applied, or why not.
    async fn migrate(&self, t: &Tenant, server: &str) -> Result<Vec<String>, Failure> {
        self.refuse_schema_creation(t)?;
        let conn = self.connection(server, &t.database).await?;
        self.secure_if_needed(&conn, t).await?;
        self.extensions_ready(&conn, server, &t.database).await?;
        let opts = MigrateOptions {
            scope: (t.mode == Mode::Schema).then(|| t.schema.clone()),
            lock_wait: self.opts.lock_wait,
            extensions_created: true,
            ..Default::default()
        };
        let report = pgfleet_migrate::migrator::migrate_on(&conn, &self.target.dir, &opts, |_| {})
            .await
            .map_err(|e| {
                format!("{e:#}").replace(
                    "run `pgfleet migrate` again",
                    "run `pgfleet migrate --all` again",
                )
            })?;
        if !report.applied.is_empty() && t.mode == Mode::Database {
            // What the migrations create in the tenant's schemas is covered by the default
            // privileges set at provisioning (the same admin creates it); a schema a migration
            // added is not: grant on those.
            let ungranted: Vec<String> = conn
                .query(
                    "SELECT nspname::text FROM pg_namespace n
                     WHERE nspname !~ '^pg_' AND nspname NOT IN ('information_schema', 'pgfleet_migrate')
                       AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid AND d.deptype = 'e')
                       AND NOT has_schema_privilege($1, n.oid, 'USAGE')",
                    &[&t.role],
                )
                .await
                .map_err(|e| pgfleet_pg::describe(&e))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if !ungranted.is_empty() {
                let owner = conn
                    .query_one("SELECT current_user::text", &[])
                    .await
                    .map_err(|e| pgfleet_pg::describe(&e))?
                    .get::<_, String>(0);
                crate::ddl::grant_dml(&conn, &ungranted, &t.role, &owner)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        if self.opts.verify {
            let remaining = self
                .control
                .verify_on(t, &self.target, &conn)
                .await
                .map_err(|e| e.to_string())?;
            if !remaining.is_empty() {
                return Err(Failure {
                    error: format!(
                        "its migrations are applied (it is at {}), but verification found it differs from the target in {} step(s) (drift from before: `pgfleet check --tenant KEY` shows it, `--fix` repairs what is additive):\n{}",
                        self.target.version,
                        remaining.steps.len(),
                        remaining.to_sql()
                    ),
                    at_target: true,
                });
            }
        }
        if t.mode == Mode::Schema {
            // The shared database serves the next schema tenant of this server.
            self.put_back(server, &t.database, conn, true);
        }
        Ok(report.applied)
    }

    /// Waits for the recorder to write every outcome.
    async fn close(self) -> Result<(), ControlError> {
        drop(self.recorder);
        self.recorder_task
            .await
            .map_err(|e| ControlError::TaskFailed {
                what: "the fleet recorder",
                reason: e.to_string(),
            })?
    }
}

/// Writes outcomes to the catalog in batches (versions, errors, events).
async fn record(
    control: Control,
    target: String,
    mut rx: mpsc::UnboundedReceiver<TenantMigration>,
) -> Result<(), ControlError> {
    let mut batch = Vec::new();
    loop {
        let item = if batch.is_empty() {
            rx.recv().await
        } else {
            match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
                Ok(item) => item,
                Err(_) => {
                    flush(&control, &target, &mut batch).await?;
                    continue;
                }
            }
        };
        match item {
            Some(r) => {
                batch.push(r);
                if batch.len() >= 200 {
                    flush(&control, &target, &mut batch).await?;
                }
            }
            None => {
                flush(&control, &target, &mut batch).await?;
                return Ok(());
            }
        }
    }
}

async fn flush(
    control: &Control,
    target: &str,
    batch: &mut Vec<TenantMigration>,
) -> Result<(), ControlError> {
    if batch.is_empty() {
        return Ok(());
    }
    let c = control.catalog();
    let ok: Vec<&TenantMigration> = batch
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Migrated | Outcome::UpToDate))
        .collect();
    let failed: Vec<&TenantMigration> = batch
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .collect();
    let ids: Vec<&str> = ok.iter().map(|r| r.id.as_str()).collect();
    tenants::migrated(&*c, &ids, target).await?;
    let migrated: Vec<&&TenantMigration> = ok.iter().filter(|r| !r.applied.is_empty()).collect();
    let details: Vec<String> = migrated
        .iter()
        .map(|r| {
            serde_json::json!({"from": r.from, "to": target, "applied": r.applied, "duration_ms": r.duration_ms})
                .to_string()
        })
        .collect();
    events::record_many(
        &*c,
        "tenant.migrated",
        &migrated.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        &migrated.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        &details,
    )
    .await?;
    let ids: Vec<&str> = failed.iter().map(|r| r.id.as_str()).collect();
    let errors: Vec<&str> = failed
        .iter()
        .map(|r| r.error.as_deref().unwrap_or(""))
        .collect();
    // A tenant whose migrations were applied before something else failed is at the target.
    let versions: Vec<Option<&str>> = failed
        .iter()
        .map(|r| r.to.as_deref().filter(|v| *v == target))
        .collect();
    tenants::migrate_failed(&*c, &ids, &errors, &versions).await?;
    let details: Vec<String> = failed
        .iter()
        .map(|r| serde_json::json!({"target": target, "error": r.error}).to_string())
        .collect();
    events::record_many(
        &*c,
        "tenant.migrate_failed",
        &ids,
        &failed.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
        &details,
    )
    .await?;
    batch.clear();
    Ok(())
}

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

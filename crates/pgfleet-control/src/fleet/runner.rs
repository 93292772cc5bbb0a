//! The runner of a rollout: bounded concurrency (overall and per server), schema tenants of one
//! shared database in chunks on one connection, database tenants one by one; each tenant secured
//! first when its role holds what it must not; outcomes handed to the recorder.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use pgfleet_migrate::MigrateOptions;
use tokio::sync::{Semaphore, mpsc};
use tokio_postgres::Client;

use super::recorder::record;
use super::report::{Counters, FleetOptions, Outcome, TenantMigration, result};
use crate::catalog::Target;
use crate::pool::IdlePool;
use crate::tenant::{Mode, Tenant};
use crate::{Control, ControlError};

/// Schema tenants per batch.
const CHUNK: usize = 25;

/// Runs tenants' migrations within the bounds and hands each outcome to the recorder.
pub(super) struct Runner {
    control: Control,
    pub(super) target: Arc<Target>,
    opts: FleetOptions,
    global: Arc<Semaphore>,
    per_server: HashMap<String, Arc<Semaphore>>,
    configs: HashMap<String, tokio_postgres::Config>,
    idle: IdlePool,
    pub(super) stop: AtomicBool,
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
    pub(super) async fn new(
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
        let recorder_task = tokio::spawn(record(
            control.clone(),
            counters.rollout,
            target.version.clone(),
            rx,
        ));
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
            idle: IdlePool::new(usize::MAX, usize::MAX),
            stop: AtomicBool::new(false),
            counters,
            recorder: tx,
            recorder_task,
            creates_schema,
        })
    }

    pub(super) async fn run(self: Arc<Self>, tenants: Vec<Tenant>) -> Vec<TenantMigration> {
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
        let r = result(
            t,
            Outcome::NotRun,
            t.schema_version.clone(),
            Vec::new(),
            Some("not started: another tenant failed".into()),
            0.0,
        );
        // The recorder counts it in the rollout's live progress (and records nothing else).
        let _ = self.recorder.send(r.clone());
        r
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
        // Caches of the fleet's processes drop what they hold of a tenant whose schema moved
        // (a failed migration may have applied some files).
        if outcome.as_ref().map_or(true, |a| !a.is_empty()) {
            let (control, id) = (self.control.clone(), t.id.clone());
            tokio::spawn(async move {
                crate::cache_bus::schema_changed(&control.catalog(), &id).await;
            });
        }
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

    pub(super) async fn connection(&self, server: &str, database: &str) -> Result<Client, String> {
        let config = self
            .configs
            .get(server)
            .ok_or_else(|| format!("unknown server {server:?}"))?;
        match self.idle.take(&format!("{server}/{database}")) {
            Some(c) => Ok(c),
            None => {
                let mut config = config.clone();
                config.dbname(database);
                pgfleet_migrate::migrator::connect_dedicated(&config)
                    .await
                    .map_err(|e| e.to_string())
            }
        }
    }

    pub(super) fn put_back(&self, server: &str, database: &str, conn: Client, clean: bool) {
        if clean {
            self.idle.put(&format!("{server}/{database}"), conn);
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
    pub(super) async fn close(self) -> Result<(), ControlError> {
        drop(self.recorder);
        self.recorder_task
            .await
            .map_err(|e| ControlError::TaskFailed {
                what: "the fleet recorder",
                reason: e.to_string(),
            })?
    }
}

//! Exactly-once tenant provisioning: a resumable state machine run by workers from the operations
//! queue.
//!
//! `create` inserts the tenant row (the key is unique, so racing callers find the same row) and one
//! `provision` operation (unique idempotency key). Any pgfleet process then claims the operation
//! (`FOR UPDATE SKIP LOCKED` with a lease) and, holding a session advisory lock on the tenant in the
//! catalog, runs the steps from where the tenant is:
//!
//! | step | does (every step can run again after a crash) |
//! |---|---|
//! | `place` | chooses a server under a placement lock (capacity, weight, drain) |
//! | `role` | seals a random password in the catalog first, then creates (or re-sets) the login role with a SCRAM verifier: the password never reaches the server in clear |
//! | `database` | database mode: `CREATE DATABASE`, `CONNECT` revoked from `PUBLIC`, granted to the role, `public` schema locked down. Schema mode: the server's shared database, then `CREATE SCHEMA` owned by the admin, `USAGE` for the role only |
//! | `migrate` | the fleet's target migrations, as the admin, with a fixed `search_path` |
//! | `grant` | DML on the tenant's tables, sequences and functions to the role (never ownership, never DDL) |
//! | `verify` | introspects the tenant and diffs it against the target model: the difference must be empty |
//! | `ready` | only now is the tenant handed out |
//!
//! A failing step records its error and is retried with backoff (1 s, 2 s, 4 s, …, configurable)
//! up to `provision_attempts` (5) times; then the tenant is `failed` until `create` is called again.
//!
//! Failpoints for crash tests: `PGFLEET_FAILPOINT=provision:after:<step>` makes the process stop
//! (print `failpoint … reached` and sleep) right after that step is recorded, so a test can `kill -9` it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgfleet_pg::{connect, introspect, shadow};
use pgfleet_schema::Model;
use pgfleet_schema::quote::ident;
use tokio_postgres::Client;

use crate::catalog::{self, Target};
use crate::ddl::{
    create_database, create_tenant_schema, database_exists, ensure_role, ensure_shared_database,
    grant_dml, lock_down_public, prepare_shared_database, retry_in_use, role_exists, user_schemas,
};
use crate::secrets::{Sealed, Secret};
use crate::tenant::{self, COLUMNS, Mode, State, Tenant};
use crate::{Control, ControlError, events, q, server};

/// How long a claimed operation stays leased without progress.
pub const LEASE: Duration = Duration::from_secs(60);

/// Options of `create`.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Isolation mode [default: the configured default mode].
    pub mode: Option<Mode>,
    /// Put the tenant on this server instead of choosing one.
    pub server: Option<String>,
}

const STEPS: [&str; 7] = [
    "place", "role", "database", "migrate", "grant", "verify", "ready",
];

/// The step after a schema tenant claimed a verified spare schema (see [`crate::spares`]): grant,
/// then `ready`.
const CLAIMED: &str = "claimed";

fn next_step(step: &str) -> &'static str {
    if step == CLAIMED {
        return "ready";
    }
    let i = STEPS.iter().position(|s| *s == step).unwrap_or(0);
    STEPS[(i + 1).min(STEPS.len() - 1)]
}

fn failpoint(name: &str) {
    if std::env::var("PGFLEET_FAILPOINT").is_ok_and(|f| f == name) {
        eprintln!("failpoint {name} reached");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// The advisory lock key of a tenant in the catalog (one worker at a time per tenant).
/// The idle-pool key of admin connections to `database` (or the admin URL's own) on `t`'s server.
fn admin_pool_key(t: &Tenant, database: Option<&str>) -> String {
    format!(
        "{}/{}",
        t.server.as_deref().unwrap_or_default(),
        database.unwrap_or_default()
    )
}

fn tenant_lock(id: &str) -> i64 {
    pgfleet_migrate::lock::key("pgfleet-tenant", id)
}

impl Control {
    /// Creates the tenant `key` (or finds it) and queues its provisioning. Idempotent: the same key
    /// always yields the same tenant; a failed tenant is queued again.
    ///
    /// # Errors
    /// Invalid key, no target, no server with room (nothing is created), the key exists with other
    /// options ([`ControlError::Conflict`]).
    pub async fn create_tenant(
        &self,
        key: &str,
        opts: &CreateOptions,
    ) -> Result<Tenant, ControlError> {
        if key.is_empty() || key.len() > 256 || key.contains('\0') {
            return Err(ControlError::InvalidKey { len: key.len() });
        }
        let c = self.catalog();
        let mode = opts.mode.unwrap_or(self.config().default_mode);
        let existing = self.find(key).await?;
        if let Some(t) = &existing
            && t.state == State::Ready
        {
            // The common call (an app provisioning on every login): one catalog read.
            self.check_same_options(t, opts).await?;
            return Ok(t.clone());
        }
        // Past this point secrets may be sealed: only with the key the catalog uses.
        self.check_master_key().await?;
        let tenant = match existing {
            Some(t) => t,
            None => {
                let has_target: bool = c
                    .query_one(
                        "SELECT EXISTS (SELECT FROM pgfleet.targets WHERE is_current)",
                        &[],
                    )
                    .await
                    .map_err(q("reading the fleet's target"))?
                    .get(0);
                if !has_target {
                    return Err(ControlError::NoTarget);
                }
                self.precheck_capacity(opts.server.as_deref()).await?;
                let id = tenant::new_id()?;
                let (db, schema, role) = tenant::names(&id, mode);
                let row = c
                    .query_opt(
                        &format!(
                            "INSERT INTO pgfleet.tenants (id, key, mode, requested_server, database_name, schema_name, role_name)
                             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key) DO NOTHING RETURNING {COLUMNS}"
                        ),
                        &[&id, &key, &mode.as_str(), &opts.server, &db, &schema, &role],
                    )
                    .await
                    .map_err(q("creating the tenant"))?;
                match row {
                    Some(r) => {
                        let t = Tenant::read(&r)?;
                        events::record(
                            &c,
                            Some(&t.id),
                            Some(key),
                            "tenant.created",
                            serde_json::json!({"mode": mode.as_str(), "server": opts.server}),
                        )
                        .await?;
                        t
                    }
                    // Another caller inserted it between our lookup and insert.
                    None => self
                        .find(key)
                        .await?
                        .ok_or_else(|| ControlError::UnknownTenant(key.into()))?,
                }
            }
        };
        self.check_same_options(&tenant, opts).await?;
        if tenant.state == State::Dropping {
            return Err(ControlError::Dropping {
                key: key.into(),
                error: tenant.last_error.clone(),
            });
        }
        if tenant.state == State::Failed {
            c.execute(
                "UPDATE pgfleet.operations SET state = 'queued', attempts = 0, not_before = now(), lease_owner = NULL
                 WHERE idempotency_key = $1 AND state = 'failed'",
                &[&format!("provision:{}", tenant.id)],
            )
            .await
            .map_err(q("re-queueing the provisioning"))?;
            c.execute(
                "UPDATE pgfleet.tenants SET state = 'provisioning', updated_at = now() WHERE id = $1 AND state = 'failed'",
                &[&tenant.id],
            )
            .await
            .map_err(q("re-queueing the provisioning"))?;
            events::record(
                &c,
                Some(&tenant.id),
                Some(key),
                "tenant.retry",
                serde_json::json!({"step": tenant.step, "last_error": tenant.last_error}),
            )
            .await?;
        }
        if tenant.state != State::Ready {
            c.execute(
                "INSERT INTO pgfleet.operations (kind, tenant_id, idempotency_key) VALUES ('provision', $1, $2)
                 ON CONFLICT (idempotency_key) DO NOTHING",
                &[&tenant.id, &format!("provision:{}", tenant.id)],
            )
            .await
            .map_err(q("queueing the provisioning"))?;
        }
        self.find(key)
            .await?
            .ok_or_else(|| ControlError::UnknownTenant(key.into()))
    }

    async fn check_same_options(
        &self,
        t: &Tenant,
        opts: &CreateOptions,
    ) -> Result<(), ControlError> {
        if let Some(mode) = opts.mode
            && mode != t.mode
        {
            return Err(ControlError::Conflict {
                key: t.key.clone(),
                existing: format!("mode {}", t.mode),
                requested: format!("mode {mode}"),
            });
        }
        if let Some(s) = &opts.server {
            let requested: Option<String> = self
                .catalog()
                .query_one(
                    "SELECT requested_server FROM pgfleet.tenants WHERE id = $1",
                    &[&t.id],
                )
                .await
                .map_err(q("reading the tenant"))?
                .get(0);
            if requested.as_deref() != Some(s.as_str()) && t.server.as_deref() != Some(s.as_str()) {
                return Err(ControlError::Conflict {
                    key: t.key.clone(),
                    existing: format!(
                        "server {}",
                        t.server
                            .clone()
                            .or(requested)
                            .unwrap_or_else(|| "(chosen by placement)".into())
                    ),
                    requested: format!("server {s}"),
                });
            }
        }
        Ok(())
    }

    async fn precheck_capacity(&self, requested: Option<&str>) -> Result<(), ControlError> {
        let mut conn = self.catalog_for_tx().await?;
        let tx = conn.transaction().await.map_err(q("checking capacity"))?;
        let r = server::place(&tx, requested).await.map(|_| ());
        tx.rollback().await.map_err(q("checking capacity"))?;
        self.put_idle("catalog", conn);
        r
    }

    /// The tenant with `key`, if any.
    ///
    /// # Errors
    /// Catalog errors.
    pub async fn find(&self, key: &str) -> Result<Option<Tenant>, ControlError> {
        let row = self
            .catalog()
            .query_opt(
                &format!("SELECT {COLUMNS} FROM pgfleet.tenants WHERE key = $1"),
                &[&key],
            )
            .await
            .map_err(q("reading the tenant"))?;
        row.map(|r| Tenant::read(&r)).transpose()
    }

    /// The tenant with `key`.
    ///
    /// # Errors
    /// [`ControlError::UnknownTenant`].
    pub async fn tenant(&self, key: &str) -> Result<Tenant, ControlError> {
        self.find(key)
            .await?
            .ok_or_else(|| ControlError::UnknownTenant(key.into()))
    }

    /// All tenants, optionally only those in `state`, oldest first.
    ///
    /// # Errors
    /// Catalog errors.
    pub async fn tenants(&self, state: Option<State>) -> Result<Vec<Tenant>, ControlError> {
        let rows = self
            .catalog()
            .query(
                &format!("SELECT {COLUMNS} FROM pgfleet.tenants WHERE $1::text IS NULL OR state = $1 ORDER BY created_at, id"),
                &[&state.map(State::as_str)],
            )
            .await
            .map_err(q("listing tenants"))?;
        rows.iter().map(Tenant::read).collect()
    }

    /// Creates `key` if needed and waits until it is `ready` (verified), running the provisioning
    /// itself unless another worker already does. Concurrent callers with one key share one
    /// operation and all return the same tenant.
    ///
    /// # Errors
    /// As [`Control::create_tenant`], plus [`ControlError::Failed`] and [`ControlError::Timeout`].
    pub async fn provision(
        &self,
        key: &str,
        opts: &CreateOptions,
        timeout: Duration,
    ) -> Result<Tenant, ControlError> {
        let t = self.create_tenant(key, opts).await?;
        if t.state == State::Ready {
            return Ok(t);
        }
        self.wait_ready(key, timeout).await
    }

    /// Waits until `key` is ready, working on its operation when nobody else is.
    ///
    /// # Errors
    /// [`ControlError::Failed`], [`ControlError::Timeout`], [`ControlError::UnknownTenant`].
    pub async fn wait_ready(&self, key: &str, timeout: Duration) -> Result<Tenant, ControlError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(10);
        loop {
            let t = self.tenant(key).await?;
            match t.state {
                State::Ready => return Ok(t),
                State::Dropping => {
                    return Err(ControlError::Dropping {
                        key: key.into(),
                        error: t.last_error,
                    });
                }
                State::Failed => {
                    return Err(ControlError::Failed {
                        key: key.into(),
                        step: t.step,
                        error: t.last_error.unwrap_or_default(),
                    });
                }
                _ => {}
            }
            if started.elapsed() >= timeout {
                return Err(ControlError::Timeout {
                    key: key.into(),
                    seconds: timeout.as_secs(),
                    step: t.step,
                    last_error: t.last_error,
                });
            }
            if self.run_queued(Some(&t.id)).await? == 0 {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
        }
    }

    /// Runs queued operations (of one tenant, or any) until none is runnable now. Returns how many
    /// it ran. Any number of processes may call this at once.
    ///
    /// Mutual exclusion is a session advisory lock per tenant on a catalog connection of this
    /// worker: PostgreSQL releases it the moment a worker dies, so a crashed worker's operation is
    /// taken over at once (the lease in the row only shows who works on it).
    ///
    /// # Errors
    /// Catalog errors (a failing step is recorded, not returned).
    pub async fn run_queued(&self, tenant_id: Option<&str>) -> Result<usize, ControlError> {
        let mut ran = 0;
        loop {
            let candidates = self
                .catalog()
                .query(
                    "SELECT id, tenant_id FROM pgfleet.operations
                     WHERE ((state = 'queued' AND not_before <= now()) OR state = 'running')
                       AND ($1::text IS NULL OR tenant_id = $1) AND tenant_id IS NOT NULL
                     ORDER BY id LIMIT 50",
                    &[&tenant_id],
                )
                .await
                .map_err(q("looking for operations"))?;
            let mut progressed = false;
            for row in candidates {
                if self.is_stopping() {
                    return Ok(ran);
                }
                let (op, tid): (i64, String) = (row.get(0), row.get(1));
                let Some(_working) = Working::enter(self, &tid) else {
                    continue; // another task of this process has it
                };
                if !self.tenant_lock(&tid, true).await? {
                    continue; // a live worker of another process has it
                }
                let claimed = self
                    .catalog()
                    .query_opt(
                        "UPDATE pgfleet.operations SET state = 'running', lease_owner = $2,
                                lease_until = now() + make_interval(secs => $3), attempts = attempts + 1
                         WHERE id = $1 AND ((state = 'queued' AND not_before <= now()) OR state = 'running')
                         RETURNING kind, attempts",
                        &[&op, &self.inner.worker, &(LEASE.as_secs_f64())],
                    )
                    .await
                    .map_err(q("claiming an operation"));
                let result = match claimed {
                    Ok(Some(r)) => {
                        let (kind, attempts): (String, i32) = (r.get(0), r.get(1));
                        if kind == "provision" {
                            self.run_provision(op, &tid, attempts).await.map(|()| true)
                        } else {
                            self.catalog()
                                .execute(
                                    "UPDATE pgfleet.operations SET state = 'failed', last_error = 'unknown operation kind', finished_at = now() WHERE id = $1",
                                    &[&op],
                                )
                                .await
                                .map(|_| true)
                                .map_err(q("recording an operation"))
                        }
                    }
                    Ok(None) => Ok(false),
                    Err(e) => Err(e),
                };
                let _ = self.tenant_lock(&tid, false).await;
                if result? {
                    ran += 1;
                    progressed = true;
                }
            }
            if !progressed {
                return Ok(ran);
            }
        }
    }

    /// Takes (`lock`) or releases the cross-process lock of a tenant on this process's lock session.
    async fn tenant_lock(&self, tenant_id: &str, lock: bool) -> Result<bool, ControlError> {
        let sql = if lock {
            "SELECT pg_try_advisory_lock($1)"
        } else {
            "SELECT pg_advisory_unlock($1)"
        };
        let rows = self
            .on_lock_session(sql, &[&tenant_lock(tenant_id)], "locking the tenant")
            .await?;
        Ok(rows.first().is_some_and(|r| r.get(0)))
    }

    /// Runs `sql` on this process's lock session: the catalog connection whose session advisory
    /// locks say "this process is alive and works on it" (PostgreSQL releases them when the process
    /// dies). Reconnects when it was lost (its locks are gone with it then).
    pub(crate) async fn on_lock_session(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        what: &'static str,
    ) -> Result<Vec<tokio_postgres::Row>, ControlError> {
        let mut guard = self.inner.lock_conn.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = Some(self.catalog_connection().await?);
        }
        let conn = guard.as_ref().expect("connected above");
        conn.query(sql, params).await.map_err(q(what))
    }

    async fn run_provision(
        &self,
        op: i64,
        tenant_id: &str,
        attempts: i32,
    ) -> Result<(), ControlError> {
        let started = Instant::now();
        let result = tracing::Instrument::instrument(
            self.provision_steps(op, tenant_id),
            tracing::info_span!("provision", tenant_id),
        )
        .await;
        let c = self.catalog();
        match result {
            Ok(()) => {
                metrics::counter!("pgfleet_operations_total", "kind" => "provision", "outcome" => "done")
                    .increment(1);
                metrics::histogram!("pgfleet_provision_duration_seconds")
                    .record(started.elapsed().as_secs_f64());
                c.execute(
                    "UPDATE pgfleet.operations SET state = 'done', finished_at = now(), last_error = NULL, lease_owner = NULL WHERE id = $1",
                    &[&op],
                )
                .await
                .map_err(q("recording the operation"))?;
            }
            Err(e) => {
                // Whatever failed, the shared databases are checked again next time.
                self.inner
                    .shared_ready
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                let message = crate::chain(&e);
                let permanent = matches!(
                    e,
                    ControlError::NoCapacity(_)
                        | ControlError::UnknownServer(_)
                        | ControlError::NoTarget
                );
                let give_up = permanent || attempts >= self.config().provision_attempts;
                metrics::counter!("pgfleet_operations_total", "kind" => "provision",
                    "outcome" => if give_up { "failed" } else { "retry" })
                .increment(1);
                let backoff =
                    (self.config().retry_backoff.as_secs_f64() * 2f64.powi(attempts - 1)).min(60.0);
                tracing::warn!(
                    tenant = tenant_id,
                    attempt = attempts,
                    "provisioning step failed: {message}"
                );
                c.execute(
                    "UPDATE pgfleet.operations SET state = CASE WHEN $2 THEN 'failed' ELSE 'queued' END,
                            not_before = now() + make_interval(secs => $3), last_error = $4, lease_owner = NULL,
                            finished_at = CASE WHEN $2 THEN now() END
                     WHERE id = $1",
                    &[&op, &give_up, &backoff, &message],
                )
                .await
                .map_err(q("recording the failure"))?;
                c.execute(
                    "UPDATE pgfleet.tenants SET last_error = $2, updated_at = now(),
                            state = CASE WHEN $3 THEN 'failed' ELSE state END WHERE id = $1",
                    &[&tenant_id, &message, &give_up],
                )
                .await
                .map_err(q("recording the failure"))?;
                let key: Option<String> = c
                    .query_opt(
                        "SELECT key FROM pgfleet.tenants WHERE id = $1",
                        &[&tenant_id],
                    )
                    .await
                    .map_err(q("reading the tenant"))?
                    .map(|r| r.get(0));
                events::record(
                    &c,
                    Some(tenant_id),
                    key.as_deref(),
                    if give_up {
                        "tenant.failed"
                    } else {
                        "tenant.step_failed"
                    },
                    serde_json::json!({"error": message, "attempt": attempts}),
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn provision_steps(&self, op: i64, tenant_id: &str) -> Result<(), ControlError> {
        let c = self.catalog();
        // Connections to the server (admin database, tenant database) and the target are opened
        // once per run and shared by the steps.
        let mut admin: Option<Client> = None;
        let mut in_db: Option<Client> = None;
        let mut target: Option<Target> = None;
        loop {
            let row = c
                .query_one(
                    &format!("SELECT {COLUMNS}, requested_server, password_sealed, password_key, key_id FROM pgfleet.tenants WHERE id = $1"),
                    &[&tenant_id],
                )
                .await
                .map_err(q("reading the tenant"))?;
            let t = Tenant::read(&row)?;
            if t.state == State::Ready {
                return Ok(());
            }
            let step = t.step.clone();
            let mut next_override: Option<&'static str> = None;
            let started = Instant::now();
            match step.as_str() {
                "place" => {
                    let requested: Option<String> = row.get("requested_server");
                    let mut conn = self.catalog_for_tx().await?;
                    let tx = conn.transaction().await.map_err(q("placing the tenant"))?;
                    let name = server::place(&tx, requested.as_deref()).await?;
                    tx.execute(
                        "UPDATE pgfleet.tenants SET server = $2 WHERE id = $1 AND server IS NULL",
                        &[&tenant_id, &name],
                    )
                    .await
                    .map_err(q("placing the tenant"))?;
                    tx.commit().await.map_err(q("placing the tenant"))?;
                    self.put_idle("catalog", conn);
                }
                "role" => {
                    let password = self.password(tenant_id, &row).await?;
                    if admin.is_none() {
                        admin = Some(self.pooled_admin(&t, None).await?);
                    }
                    ensure_role(admin.as_ref().expect("set above"), &t.role, &password).await?;
                }
                "database" => {
                    let server_name = t.server.clone().unwrap_or_default();
                    // A schema tenant on a server whose shared database this process has already
                    // made ready needs no admin round trips here.
                    let shared_known = t.mode == Mode::Schema
                        && self
                            .inner
                            .shared_ready
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .contains(&server_name);
                    if admin.is_none() && !shared_known {
                        admin = Some(self.pooled_admin(&t, None).await?);
                    }
                    let owner = self.owner(&server_name).await?.role;
                    if target.is_none() {
                        target = Some(self.provisioning_target().await?);
                    }
                    let tg = target.as_ref().expect("set above");
                    match t.mode {
                        Mode::Database => {
                            let a = admin.as_ref().expect("set above");
                            let template = if self.config().use_templates {
                                Some(self.ensure_template(&t, a).await?)
                            } else {
                                None
                            };
                            create_database(a, &t.database, &t.role, &owner, template.as_deref())
                                .await?
                        }
                        Mode::Schema if shared_known => {}
                        Mode::Schema => {
                            let a = admin.as_ref().expect("set above");
                            ensure_shared_database(a, &t.database, &owner).await?;
                        }
                    }
                    if in_db.is_none() {
                        in_db = Some(self.pooled_admin(&t, Some(&t.database)).await?);
                    }
                    let d = in_db.as_ref().expect("set above");
                    match t.mode {
                        Mode::Database => lock_down_public(d, Some(&t.role), &owner, tg).await?,
                        Mode::Schema => {
                            if !shared_known {
                                prepare_shared_database(d, &owner).await?;
                                self.inner
                                    .shared_ready
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .insert(server_name.clone());
                            }
                            if crate::spares::claim(d, &t, tg, &owner).await? {
                                c.execute(
                                    "UPDATE pgfleet.tenants SET schema_version = $2 WHERE id = $1",
                                    &[&tenant_id, &tg.version],
                                )
                                .await
                                .map_err(q("recording the version"))?;
                                next_override = Some(CLAIMED);
                            } else {
                                create_tenant_schema(d, &t.schema, &t.role, &owner, tg).await?
                            }
                        }
                    }
                }
                "migrate" => {
                    if target.is_none() {
                        target = Some(self.provisioning_target().await?);
                    }
                    let tg = target.as_ref().expect("set above");
                    if in_db.is_none() {
                        in_db = Some(self.pooled_admin(&t, Some(&t.database)).await?);
                    }
                    let d = in_db.as_ref().expect("set above");
                    // A copy of the template carries the target's history: nothing to run, no
                    // connection of the owner role to open.
                    let scope = if t.mode == Mode::Schema {
                        t.schema.as_str()
                    } else {
                        ""
                    };
                    let at_target = pgfleet_migrate::history::exists(d).await?
                        && pgfleet_migrate::migrator::batchable(
                            &tg.dir,
                            &pgfleet_migrate::history::read(d, scope).await?,
                        )
                        .is_some_and(|pending| pending.is_empty());
                    // The target's SQL runs as the fleet's owner role, never as the admin.
                    let server_name = t.server.clone().unwrap_or_default();
                    let conn = if at_target {
                        None
                    } else {
                        Some(self.owner_connection(&server_name, &t.database).await?)
                    };
                    if let Some(conn) = conn {
                        let opts = pgfleet_migrate::MigrateOptions {
                            scope: (t.mode == Mode::Schema).then(|| t.schema.clone()),
                            extensions_created: true,
                            ..Default::default()
                        };
                        pgfleet_migrate::migrator::migrate_on(&conn, &tg.dir, &opts, |_| {})
                            .await?;
                        if t.mode == Mode::Schema {
                            self.put_owner_connection(&server_name, &t.database, conn);
                        }
                    }
                    c.execute(
                        "UPDATE pgfleet.tenants SET schema_version = $2 WHERE id = $1",
                        &[&tenant_id, &tg.version],
                    )
                    .await
                    .map_err(q("recording the version"))?;
                }
                "grant" | CLAIMED => {
                    if in_db.is_none() {
                        in_db = Some(self.pooled_admin(&t, Some(&t.database)).await?);
                    }
                    let d = in_db.as_ref().expect("set above");
                    let schemas = match t.mode {
                        Mode::Database => user_schemas(d).await?,
                        Mode::Schema => vec![t.schema.clone()],
                    };
                    let owner = self
                        .owner(t.server.as_deref().unwrap_or_default())
                        .await?
                        .role;
                    grant_dml(d, &schemas, &t.role, &owner).await?;
                }
                "verify" => {
                    if target.is_none() {
                        target = Some(self.provisioning_target().await?);
                    }
                    let tg = target.as_ref().expect("set above");
                    if in_db.is_none() {
                        in_db = Some(self.pooled_admin(&t, Some(&t.database)).await?);
                    }
                    let remaining = self
                        .verify_on(&t, tg, in_db.as_ref().expect("set above"))
                        .await?;
                    if !remaining.is_empty() {
                        return Err(ControlError::VerificationFailed {
                            what: "the tenant".into(),
                            target: tg.version.clone(),
                            plan: remaining,
                        });
                    }
                }
                _ => {}
            }
            let next = next_override.unwrap_or_else(|| next_step(&step));
            let state = if next == "ready" {
                "ready"
            } else {
                "provisioning"
            };
            // Progress and the lease in one round trip; the tenant becomes ready and its operation
            // done in one statement, so nobody sees one without the other.
            c.execute(
                "WITH progress AS (
                     UPDATE pgfleet.tenants SET step = $2, state = $3,
                            last_error = CASE WHEN $3 = 'ready' THEN NULL ELSE last_error END, updated_at = now()
                     WHERE id = $1)
                 UPDATE pgfleet.operations SET lease_until = now() + make_interval(secs => $5),
                        state = CASE WHEN $3 = 'ready' THEN 'done' ELSE state END,
                        finished_at = CASE WHEN $3 = 'ready' THEN now() ELSE finished_at END,
                        last_error = CASE WHEN $3 = 'ready' THEN NULL ELSE last_error END,
                        lease_owner = CASE WHEN $3 = 'ready' THEN NULL ELSE lease_owner END
                 WHERE id = $4",
                &[&tenant_id, &next, &state, &op, &LEASE.as_secs_f64()],
            )
            .await
            .map_err(q("recording progress"))?;
            tracing::debug!(
                tenant = %t.key,
                step = %step,
                server = t.server.as_deref().unwrap_or(""),
                database = %t.database,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "step done"
            );
            if next == "ready" {
                events::record(&c, Some(tenant_id), Some(&t.key), "tenant.ready", serde_json::json!({"server": t.server, "database": t.database, "schema": t.schema, "version": t.schema_version, "from_spare": step == CLAIMED})).await?;
            }
            failpoint(&format!("provision:after:{step}"));
            if next == "ready" {
                // Clean end: the server connections go back for the next tenant.
                if let Some(a) = admin.take() {
                    self.pool_admin(&t, None, a);
                }
                if let Some(d) = in_db.take() {
                    self.pool_admin(&t, Some(&t.database), d);
                    if t.mode == Mode::Schema {
                        self.spawn_refill(t.server.as_deref().unwrap_or_default());
                    }
                }
                return Ok(());
            }
        }
    }

    /// An admin connection to the tenant's server (`database`: its own or the shared one; `None`:
    /// the server URL's database), reusing an idle one.
    pub(crate) async fn pooled_admin(
        &self,
        t: &Tenant,
        database: Option<&str>,
    ) -> Result<Client, ControlError> {
        match self.take_idle(&admin_pool_key(t, database)) {
            Some(c) => Ok(c),
            None => self.admin(t, database).await,
        }
    }

    /// Hands back a connection from [`Self::pooled_admin`] that ended cleanly (no transaction
    /// open). Connections to the server URL's database and to the shared database of schema
    /// tenants are kept; a database-mode tenant's own database is not used by the next tenant.
    pub(crate) fn pool_admin(&self, t: &Tenant, database: Option<&str>, client: Client) {
        if database.is_none() || t.mode == Mode::Schema {
            self.put_idle(&admin_pool_key(t, database), client);
        }
    }

    /// The server's template database at the current target (`pgfleet_tpl_<version>_<hash>`): built
    /// once per server and target from `template0` by the migrator, then marked `IS_TEMPLATE` with
    /// connections disallowed, so no session ever holds it open. Templates of older targets are
    /// dropped when a new one is built.
    async fn ensure_template(&self, t: &Tenant, admin: &Client) -> Result<String, ControlError> {
        let target = self.provisioning_target().await?;
        let hash: String = target
            .dir_hash
            .trim_start_matches("sha256:")
            .chars()
            .take(8)
            .collect();
        // Named after this catalog too: fleets that share a server keep their own templates.
        let fleet = self.fleet_id();
        let server = t.server.clone().unwrap_or_default();
        let owner = self.owner(&server).await?.role;
        // The owner role is part of the name: templates whose objects the admin owns (built by
        // pgfleet before the owner role existed) are not used, and are dropped below.
        let hash: String = pgfleet_migrate::dir::checksum(format!("{hash}:{owner}").as_bytes())
            .trim_start_matches("sha256:")
            .chars()
            .take(6)
            .collect();
        let name = format!("pgfleet_tpl_{fleet}_{}_{hash}", target.version);
        let ready: bool = admin
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1 AND datistemplate AND NOT datallowconn)",
                &[&name],
            )
            .await
            .map_err(q("looking for the template"))?
            .get(0);
        if ready {
            return Ok(name);
        }
        let suffix: String = crate::secrets::random_bytes::<3>()?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let building = format!("{name}_b{suffix}");
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE template0",
                ident(&building)
            ))
            .await
            .map_err(q("creating the template database"))?;
        let built = async {
            admin
                .batch_execute(&format!(
                    "REVOKE ALL ON DATABASE {b} FROM PUBLIC; GRANT CONNECT, CREATE ON DATABASE {b} TO {o}",
                    b = ident(&building),
                    o = ident(&owner)
                ))
                .await
                .map_err(q("preparing the template database"))?;
            {
                let config = self.admin_config(t, Some(&building)).await?;
                let in_tpl = pgfleet_migrate::migrator::connect_dedicated(&config).await?;
                lock_down_public(&in_tpl, None, &owner, &target).await?;
            }
            {
                // The target's SQL runs as the fleet's owner role: the copies' objects are its.
                let config = self.owner_config(&server, &building).await?;
                let client = pgfleet_migrate::migrator::connect_dedicated(&config).await?;
                let opts = pgfleet_migrate::MigrateOptions {
                    extensions_created: true,
                    ..Default::default()
                };
                pgfleet_migrate::migrator::migrate_on(&client, &target.dir, &opts, |_| {})
                    .await?;
            }
            retry_in_use(
                admin,
                &format!(
                    "ALTER DATABASE {} RENAME TO {}",
                    ident(&building),
                    ident(&name)
                ),
            )
            .await
            .map_err(q("naming the template database"))?;
            admin
                .batch_execute(&format!(
                    "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
                    ident(&name)
                ))
                .await
                .map_err(q("marking the template database"))?;
            Ok::<(), ControlError>(())
        }
        .await;
        if let Err(e) = built {
            let _ = retry_in_use(
                admin,
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(&building)),
            )
            .await;
            // Another worker built it meanwhile: use theirs.
            let exists: bool = admin
                .query_one(
                    "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)",
                    &[&name],
                )
                .await
                .map_err(q("looking for the template"))?
                .get(0);
            return if exists { Ok(name) } else { Err(e) };
        }
        // Templates of older targets go.
        let stale = admin
            .query(
                "SELECT datname::text FROM pg_database WHERE datname LIKE $2 AND datname <> $1 AND datname NOT LIKE '%\\_b______'",
                &[&name, &format!("pgfleet\\_tpl\\_{fleet}\\_%")],
            )
            .await
            .map_err(q("listing old templates"))?;
        for r in stale {
            let old: String = r.get(0);
            // Two statements: DROP DATABASE refuses to run in the implicit transaction of one.
            let unmark = format!("ALTER DATABASE {} WITH IS_TEMPLATE false", ident(&old));
            if admin.batch_execute(&unmark).await.is_ok() {
                let _ = admin
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        ident(&old)
                    ))
                    .await;
            }
        }
        events::record(
            &self.catalog(),
            None,
            None,
            "template.built",
            serde_json::json!({"server": t.server, "template": name, "version": target.version}),
        )
        .await?;
        Ok(name)
    }

    /// A short id of this fleet (its catalog's location), for names on shared servers.
    pub(crate) fn fleet_id(&self) -> String {
        let url = connect::parse_url(&self.config().catalog_url)
            .map(|c| connect::describe_target(&c))
            .unwrap_or_default();
        let key = pgfleet_migrate::lock::key("pgfleet-fleet", &url);
        format!("{:06x}", (key as u64) & 0xff_ffff)
    }

    /// The tenant's password: sealed in the catalog before the role exists, so a crash between the
    /// two never loses it.
    async fn password(
        &self,
        tenant_id: &str,
        row: &tokio_postgres::Row,
    ) -> Result<Secret, ControlError> {
        let key = self.config().master_key()?;
        let owner = format!("tenant:{tenant_id}");
        if let (Some(ct), Some(wk), Some(kid)) = (
            row.get::<_, Option<Vec<u8>>>("password_sealed"),
            row.get::<_, Option<Vec<u8>>>("password_key"),
            row.get::<_, Option<String>>("key_id"),
        ) {
            return self.open_sealed(
                &owner,
                &Sealed {
                    ciphertext: ct,
                    wrapped_key: wk,
                    key_id: kid,
                },
            );
        }
        let password = crate::secrets::random_password()?;
        let sealed = key.seal(&owner, &password)?;
        let n = self
            .catalog()
            .execute(
                "UPDATE pgfleet.tenants SET password_sealed = $2, password_key = $3, key_id = $4 WHERE id = $1 AND password_sealed IS NULL",
                &[&tenant_id, &sealed.ciphertext, &sealed.wrapped_key, &sealed.key_id],
            )
            .await
            .map_err(q("sealing the password"))?;
        if n == 0 {
            let row = self
                .catalog()
                .query_one("SELECT password_sealed, password_key, key_id FROM pgfleet.tenants WHERE id = $1", &[&tenant_id])
                .await
                .map_err(q("reading the password"))?;
            return self.open_sealed(
                &owner,
                &Sealed {
                    ciphertext: row.get(0),
                    wrapped_key: row.get(1),
                    key_id: row.get(2),
                },
            );
        }
        Ok(password)
    }

    /// The options of this fleet's shadow replays: the untrusted extensions its target may create
    /// (`Config::allowed_extensions`, and `vector`).
    pub(crate) fn shadow_options(&self) -> shadow::ShadowOptions {
        shadow::ShadowOptions::default().allow(&self.config().allowed_extensions)
    }

    /// The fleet's current target.
    ///
    /// # Errors
    /// [`ControlError::NoTarget`].
    pub async fn target(&self) -> Result<Target, ControlError> {
        catalog::current_target(&self.catalog())
            .await?
            .ok_or(ControlError::NoTarget)
    }

    /// The target new tenants (and spares and templates) are built to: the newest validated one
    /// ([`catalog::provisioning_target`]).
    ///
    /// # Errors
    /// [`ControlError::NoTarget`].
    pub async fn provisioning_target(&self) -> Result<Target, ControlError> {
        catalog::provisioning_target(&self.catalog())
            .await?
            .ok_or(ControlError::NoTarget)
    }

    /// The admin connection config for the tenant's server, on `database` (or the server URL's).
    async fn admin_config(
        &self,
        t: &Tenant,
        database: Option<&str>,
    ) -> Result<tokio_postgres::Config, ControlError> {
        let server = t
            .server
            .as_deref()
            .ok_or_else(|| ControlError::NotPlaced(t.key.clone()))?;
        let mut config = self.server_admin_config(server).await?;
        if let Some(db) = database {
            config.dbname(db);
        }
        Ok(config)
    }

    /// The admin connection settings of a server (its URL's database), with pgfleet's fixed
    /// `search_path` and application name.
    pub(crate) async fn server_admin_config(
        &self,
        server: &str,
    ) -> Result<tokio_postgres::Config, ControlError> {
        let mut keys = vec![self.config().master_key()?];
        keys.extend(self.config().previous_master_key.as_ref());
        let url = server::admin_url_with(&self.catalog(), &keys, server).await?;
        let mut config = connect::parse_url(url.expose())?;
        config.application_name("pgfleet control");
        // The admin resolves nothing outside pg_catalog, whatever the admin role's settings say:
        // no object another role created can stand in for a built-in in its session.
        config.options("-c search_path=pg_catalog");
        Ok(config)
    }

    pub(crate) async fn admin(
        &self,
        t: &Tenant,
        database: Option<&str>,
    ) -> Result<Client, ControlError> {
        Ok(connect::connect(&self.admin_config(t, database).await?).await?)
    }

    /// The target model for a server, built once per process.
    pub(crate) async fn target_model(
        &self,
        t: &Tenant,
        target: &Target,
    ) -> Result<Arc<Model>, ControlError> {
        let server = t.server.clone().unwrap_or_default();
        let cache_key = (server, format!("{} {}", target.version, target.dir_hash));
        let mut models = self.inner.models.lock().await;
        if let Some(m) = models.get(&cache_key) {
            return Ok(m.clone());
        }
        // Stored in the catalog by whichever process built it first, per PostgreSQL major.
        let mut config = self.admin_config(t, None).await?;
        // The target's files are replayed as migrations run: objects land in `public`.
        config.options("-c search_path=public");
        let admin = connect::connect(&config).await?;
        let major: i32 = admin
            .query_one(
                "SELECT current_setting('server_version_num')::int / 10000",
                &[],
            )
            .await
            .map_err(q("reading the server version"))?
            .get(0);
        drop(admin);
        let stored = self
            .catalog()
            .query_opt(
                "SELECT model::text FROM pgfleet.target_models WHERE version = $1 AND pg_major = $2",
                &[&target.version, &major],
            )
            .await
            .map_err(q("reading the target model"))?;
        let model = match stored
            .and_then(|r| serde_json::from_str::<Model>(r.get::<_, &str>(0)).ok())
        {
            Some(m) => m,
            None => {
                let m = shadow::desired_model(
                    &config,
                    &pgfleet_migrate::generate::replay_source(&target.dir),
                    &self.shadow_options(),
                )
                .await?;
                let json = serde_json::to_string(&m).map_err(|e| ControlError::TaskFailed {
                    what: "serializing the target model",
                    reason: e.to_string(),
                })?;
                self.catalog()
                    .execute(
                        "INSERT INTO pgfleet.target_models (version, pg_major, model) VALUES ($1, $2, $3::text::jsonb)
                         ON CONFLICT (version, pg_major) DO NOTHING",
                        &[&target.version, &major, &json],
                    )
                    .await
                    .map_err(q("storing the target model"))?;
                m
            }
        };
        let model = Arc::new(model);
        models.insert(cache_key, model.clone());
        Ok(model)
    }

    /// The plan from the tenant as it is to the target (empty = verified).
    ///
    /// # Errors
    /// Connection, introspection or shadow errors.
    pub async fn verify(
        &self,
        t: &Tenant,
        target: &Target,
    ) -> Result<pgfleet_schema::Plan, ControlError> {
        let in_db = self.admin(t, Some(&t.database)).await?;
        self.verify_on(t, target, &in_db).await
    }

    /// As [`Control::verify`], on an admin connection to the tenant's database.
    pub(crate) async fn verify_on(
        &self,
        t: &Tenant,
        target: &Target,
        in_db: &Client,
    ) -> Result<pgfleet_schema::Plan, ControlError> {
        let (live, desired) = self.models_in_target_terms(t, target, in_db).await?;
        Ok(pgfleet_schema::planner::plan(
            &live,
            &desired,
            &Default::default(),
        ))
    }

    /// The tenant's live model and the target model, comparable: a schema tenant's schema is read
    /// as `public` (the target's terms), and schema comments (pgfleet's own) are left out.
    pub(crate) async fn models_in_target_terms(
        &self,
        t: &Tenant,
        target: &Target,
        in_db: &Client,
    ) -> Result<(Model, Model), ControlError> {
        let desired = self.target_model(t, target).await?;
        let (mut live, mut desired) = match t.mode {
            Mode::Database => (introspect::introspect(in_db).await?, (*desired).clone()),
            Mode::Schema => (
                introspect::introspect_schema(in_db, &t.schema)
                    .await?
                    .only_schema(&t.schema)
                    .rename_schema(&t.schema, "public"),
                desired.only_schema("public"),
            ),
        };
        if t.mode == Mode::Schema {
            // The schema itself is pgfleet's (created and commented by it), not the target's.
            for ns in live
                .schemas
                .values_mut()
                .chain(desired.schemas.values_mut())
            {
                ns.comment = None;
            }
        }
        Ok((live, desired))
    }

    /// Drops a tenant: its database (or schema) and role on its server, then its catalog row. A
    /// `tenant.dropped` event stays as the tombstone.
    ///
    /// # Errors
    /// Unknown tenant; the server cannot be reached (nothing is removed from the catalog then).
    pub async fn drop_tenant(&self, key: &str) -> Result<Tenant, ControlError> {
        let t = self.tenant(key).await?;
        // What can fail before anything changes fails first: a master key that does not open the
        // catalog's secrets (the tenant would be left `dropping` with nothing dropped).
        self.check_master_key().await?;
        if t.server.is_some() {
            self.admin_config(&t, None).await?;
        }
        // One drop of a tenant at a time: concurrent drops of one key wait, then find it gone.
        let lock = self.catalog_connection().await?;
        let k = pgfleet_migrate::lock::key("pgfleet-drop", &t.id);
        lock.execute("SELECT pg_advisory_lock($1)", &[&k])
            .await
            .map_err(q("locking the tenant for its drop"))?;
        let result = match self.find(key).await {
            Ok(Some(now)) if now.id == t.id => self.drop_tenant_objects(&now).await,
            // Dropped meanwhile (by a concurrent drop): done.
            Ok(_) => Ok(t.clone()),
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            let _ = self
                .catalog()
                .execute(
                    "UPDATE pgfleet.tenants SET last_error = $2, updated_at = now() WHERE id = $1",
                    &[&t.id, &format!("drop: {}", crate::chain(e))],
                )
                .await;
        }
        let _ = lock.execute("SELECT pg_advisory_unlock($1)", &[&k]).await;
        result
    }

    async fn drop_tenant_objects(&self, t: &Tenant) -> Result<Tenant, ControlError> {
        let t = t.clone();
        let key = t.key.as_str();
        let c = self.catalog();
        crate::directory::announce(&c, &t.id).await;
        c.execute(
            "UPDATE pgfleet.tenants SET state = 'dropping', updated_at = now() WHERE id = $1",
            &[&t.id],
        )
        .await
        .map_err(q("marking the tenant"))?;
        if t.server.is_some() {
            let admin = self.admin(&t, None).await?;
            match t.mode {
                Mode::Database => {
                    admin
                        .batch_execute(&format!(
                            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                            ident(&t.database)
                        ))
                        .await
                        .map_err(q("dropping the tenant's database"))?;
                }
                Mode::Schema => {
                    if database_exists(&admin, &t.database).await? {
                        let in_db = self.admin(&t, Some(&t.database)).await?;
                        in_db
                            .batch_execute(&format!(
                                "DROP SCHEMA IF EXISTS {} CASCADE",
                                ident(&t.schema)
                            ))
                            .await
                            .map_err(q("dropping the tenant's schema"))?;
                        if role_exists(&admin, &t.role).await? {
                            in_db
                                .batch_execute(&format!("DROP OWNED BY {}", ident(&t.role)))
                                .await
                                .map_err(q("dropping the role's privileges"))?;
                        }
                        in_db
                            .execute(
                                "DELETE FROM pgfleet_migrate.history WHERE scope = $1",
                                &[&t.schema],
                            )
                            .await
                            .ok();
                    }
                }
            }
            admin
                .batch_execute(&format!("DROP ROLE IF EXISTS {}", ident(&t.role)))
                .await
                .map_err(q("dropping the tenant's role"))?;
        }
        c.execute("DELETE FROM pgfleet.tenants WHERE id = $1", &[&t.id])
            .await
            .map_err(q("removing the tenant"))?;
        crate::directory::announce(&c, &t.id).await;
        events::record(&c, Some(&t.id), Some(key), "tenant.dropped", serde_json::json!({"server": t.server, "database": t.database, "schema": t.schema, "role": t.role, "mode": t.mode})).await?;
        Ok(t)
    }

    /// The tenant's password, opened from the catalog; `None` before the `role` step sealed one.
    ///
    /// # Errors
    /// Catalog errors; a master key that does not open it.
    pub(crate) async fn tenant_password(&self, t: &Tenant) -> Result<Option<Secret>, ControlError> {
        let row = self
            .catalog()
            .query_one(
                "SELECT password_sealed, password_key, key_id FROM pgfleet.tenants WHERE id = $1",
                &[&t.id],
            )
            .await
            .map_err(q("reading the password"))?;
        let (Some(ciphertext), Some(wrapped_key), Some(key_id)) = (
            row.get::<_, Option<Vec<u8>>>(0),
            row.get::<_, Option<Vec<u8>>>(1),
            row.get::<_, Option<String>>(2),
        ) else {
            return Ok(None);
        };
        self.open_sealed(
            &format!("tenant:{}", t.id),
            &Sealed {
                ciphertext,
                wrapped_key,
                key_id,
            },
        )
        .map(Some)
    }

    /// A connection URL for the tenant's own role (operators only: it holds the password).
    ///
    /// # Errors
    /// Unknown or not yet placed tenant; a master key that does not open the password.
    pub async fn credentials(&self, key: &str) -> Result<Secret, ControlError> {
        let t = self.tenant(key).await?;
        let Some(password) = self.tenant_password(&t).await? else {
            return Err(ControlError::NoPassword {
                key: key.into(),
                state: t.state.to_string(),
                step: t.step,
            });
        };
        let admin = self.admin_config(&t, None).await?;
        let host = admin
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => h.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".into());
        let port = admin.get_ports().first().copied().unwrap_or(5432);
        let mut url = format!(
            "postgres://{}:{}@{host}:{port}/{}",
            t.role,
            password.expose(),
            t.database
        );
        if t.mode == Mode::Schema {
            url.push_str(&format!(
                "?options=-c%20search_path%3D{}%2Cpublic",
                t.schema
            ));
        }
        Ok(Secret::new(url))
    }
}

/// Marks a tenant as worked on by a task of this process until dropped.
struct Working<'a> {
    control: &'a Control,
    tenant: String,
}

impl<'a> Working<'a> {
    fn enter(control: &'a Control, tenant: &str) -> Option<Self> {
        let mut set = control
            .inner
            .working
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        set.insert(tenant.to_string()).then(|| Self {
            control,
            tenant: tenant.to_string(),
        })
    }
}

impl Drop for Working<'_> {
    fn drop(&mut self) {
        let mut set = self
            .control
            .inner
            .working
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        set.remove(&self.tenant);
    }
}

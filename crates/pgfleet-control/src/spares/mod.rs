//! Spare schemas: the fast path of schema-mode provisioning.
//!
//! A database-mode tenant is cloned from a per-server template database (`CREATE DATABASE …
//! TEMPLATE`). PostgreSQL cannot clone a schema, so each server's shared database keeps a few
//! *spare* schemas instead, already at the fleet's target and verified: `pgfleet_spare_<hex>`,
//! owned by the admin, usable by no other role. Provisioning a schema tenant claims one in a single
//! transaction (rename it to the tenant's schema, move its migration history, grant the tenant's
//! role access), so the tenant needs no DDL and no introspection on its way to `ready`.
//!
//! - **Built** by [`Control::refill_spares`]: `CREATE SCHEMA`, the target's migrations, then the
//!   same verification as a tenant (introspect, diff against the target model: must be empty). Only
//!   then does the schema comment mark it as a spare of that target (version and `pgfleet.sum`
//!   hash). A build that crashes leaves an unmarked schema, which the next refill drops; a builder
//!   holds an advisory lock on its spare, so a live build is never dropped.
//! - **Claimed** only when its mark names the current target; spares of an older target are
//!   dropped by the next refill. A claim that loses a race, or finds none, falls back to building
//!   the tenant's schema in place (the ordinary steps, with their verification).
//! - **Refilled** by long-running processes ([`Control::keep_spares`]): after each schema-mode
//!   tenant a background task tops its server up to `spare_schemas` (`PGFLEET_SPARE_SCHEMAS`,
//!   default 4). One-shot CLI commands claim spares but never build them.
//!
//! Database-mode tenants have spare databases ([`databases`]), built, claimed and refilled the
//! same way.

use pgfleet_migrate::MigrateOptions;
use pgfleet_schema::quote::{ident, literal};
use tokio_postgres::Client;

use crate::catalog::Target;
use crate::ddl::{SHARED_ACL_LOCK_SQL, prepare_schema_sql, role_access_sql};
use crate::tenant::{self, Mode, State, Tenant};
use crate::{Control, ControlError, q};

pub mod databases;

/// Name prefix of spare schemas (and of spare databases and their roles).
pub const SPARE_PREFIX: &str = "pgfleet_spare_";

/// What a refill built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Refilled {
    /// Spare schemas built.
    pub schemas: usize,
    /// Spare databases built.
    pub databases: usize,
}

impl Refilled {
    /// As the management API and the events report it for `server`: `built` (in all),
    /// `schemas`, `databases`.
    pub fn to_json(&self, server: &str) -> serde_json::Value {
        serde_json::json!({
            "server": server,
            "built": self.schemas + self.databases,
            "schemas": self.schemas,
            "databases": self.databases,
        })
    }
}

/// The schema comment that marks a finished, verified spare of `target`.
pub(crate) fn marker(target: &Target) -> String {
    format!(
        "pgfleet spare of target {} ({})",
        target.version, target.dir_hash
    )
}

fn lock_key(name: &str) -> i64 {
    pgfleet_migrate::lock::key("pgfleet-spare", name)
}

/// A stand-in for a spare, so the tenant code paths (connections, verification) serve it: a
/// schema `name` of the shared database, or (database mode) a database `name` with its role.
fn pseudo_tenant(server: &str, mode: Mode, name: &str) -> Tenant {
    let (database, schema, role) = match mode {
        Mode::Schema => (tenant::SHARED_DATABASE.to_string(), name, ""),
        Mode::Database => (name.to_string(), "public", name),
    };
    Tenant {
        key: format!("spare {name}"),
        id: name.to_string(),
        mode,
        state: State::Provisioning,
        step: String::new(),
        server: Some(server.to_string()),
        database,
        schema: schema.to_string(),
        role: role.to_string(),
        schema_version: None,
        last_error: None,
        created_at: String::new(),
        migrate_error: None,
        health: tenant::Health::Unknown,
        health_checked_at: None,
        health_latency_ms: None,
        health_error: None,
    }
}

/// Claims a verified spare of `target` built by this fleet (its owner role `owner` owns it) for
/// the tenant `t` (its schema must not exist yet): rename, history moved, role access granted, in
/// one transaction. `false` when no spare could be claimed.
pub(crate) async fn claim(
    in_db: &Client,
    t: &Tenant,
    target: &Target,
    owner: &str,
) -> Result<bool, ControlError> {
    let mark = marker(target);
    let candidates = in_db
        .query(
            "SELECT n.nspname::text FROM pg_catalog.pg_namespace n
             WHERE n.nspname LIKE 'pgfleet\\_spare\\_%' AND pg_catalog.obj_description(n.oid, 'pg_namespace') = $1
               AND n.nspowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $3)
               AND NOT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = $2)
             ORDER BY n.oid LIMIT 4",
            &[&mark, &t.schema, &owner],
        )
        .await
        .map_err(q("looking for a spare schema"))?;
    let candidates: Vec<String> = candidates.iter().map(|r| r.get(0)).collect();
    let mark = &mark;
    claim_first(
        in_db,
        candidates,
        "claiming a spare schema",
        |spare| async move { claim_one(in_db, t, &spare, mark).await },
    )
    .await
}

async fn claim_one(
    in_db: &Client,
    t: &Tenant,
    spare: &str,
    mark: &str,
) -> Result<bool, ControlError> {
    let locked: bool = in_db
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&lock_key(spare)])
        .await
        .map_err(q("locking a spare schema"))?
        .get(0);
    if !locked {
        return Ok(false); // another claimer (or a sweeper) has it
    }
    // A new snapshot, taken after the lock: still there, still a spare of this target?
    let still: bool = in_db
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace n WHERE n.nspname = $1 AND pg_catalog.obj_description(n.oid, 'pg_namespace') = $2)",
            &[&spare, &mark],
        )
        .await
        .map_err(q("locking a spare schema"))?
        .get(0);
    if !still {
        return Ok(false);
    }
    let sql = format!(
        "{SHARED_ACL_LOCK_SQL} ALTER SCHEMA {spare_i} RENAME TO {s}; COMMENT ON SCHEMA {s} IS NULL; \
         UPDATE pgfleet_migrate.history SET scope = {s_lit} WHERE scope = {spare_lit}; {access}",
        spare_i = ident(spare),
        s = ident(&t.schema),
        s_lit = literal(&t.schema),
        spare_lit = literal(spare),
        access = role_access_sql(&t.schema, &t.role),
    );
    in_db
        .batch_execute(&sql)
        .await
        .map_err(q("claiming a spare schema"))?;
    Ok(true)
}

/// Tries each of `candidates` in a transaction of its own on `conn` until `claim_one` claims one
/// (then committed); `false` when none could be claimed. A candidate whose claim fails is rolled
/// back and the next one tried.
pub(crate) async fn claim_first<Fut>(
    conn: &Client,
    candidates: Vec<String>,
    what: &'static str,
    claim_one: impl Fn(String) -> Fut,
) -> Result<bool, ControlError>
where
    Fut: std::future::Future<Output = Result<bool, ControlError>>,
{
    for spare in candidates {
        conn.batch_execute("BEGIN").await.map_err(q(what))?;
        match claim_one(spare.clone()).await {
            Ok(true) => {
                conn.batch_execute("COMMIT").await.map_err(q(what))?;
                return Ok(true);
            }
            Ok(false) => conn.batch_execute("ROLLBACK").await.map_err(q(what))?,
            Err(e) => {
                let _ = conn.batch_execute("ROLLBACK").await;
                tracing::debug!("{what}: {spare} failed, trying the next: {e}");
            }
        }
    }
    Ok(false)
}

/// Runs `f` holding the session advisory lock `key` on `conn`, waited for (`wait`) or only when
/// free (else `None`: someone else holds it); let go whatever `f` returns.
pub(crate) async fn holding<T>(
    conn: &Client,
    key: i64,
    wait: bool,
    what: &'static str,
    f: impl AsyncFnOnce() -> Result<T, ControlError>,
) -> Result<Option<T>, ControlError> {
    if wait {
        conn.query_one("SELECT pg_advisory_lock($1)", &[&key])
            .await
            .map_err(q(what))?;
    } else if !conn
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .map_err(q(what))?
        .get::<_, bool>(0)
    {
        return Ok(None);
    }
    let result = f().await;
    let _ = conn
        .query_one("SELECT pg_advisory_unlock($1)", &[&key])
        .await;
    result.map(Some)
}

impl Control {
    /// Keeps spares topped up in the background after each tenant this process provisions (for
    /// long-running processes: `pgfleet serve`, applications). Off by default.
    pub fn keep_spares(&self, on: bool) {
        self.inner
            .keep_spares
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Starts a background refill of `server`'s spares of the `mode` when this process keeps them
    /// and no such refill runs in it yet.
    pub(crate) fn spawn_refill(&self, server: &str, mode: Mode) {
        let want = match mode {
            Mode::Schema => self.config().spare_schemas,
            Mode::Database => self.config().spare_databases,
        };
        if !self
            .inner
            .keep_spares
            .load(std::sync::atomic::Ordering::Relaxed)
            || want == 0
        {
            return;
        }
        let busy_key = format!("{mode}:{server}");
        {
            let mut busy = self
                .inner
                .refilling
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !busy.insert(busy_key.clone()) {
                return;
            }
        }
        let this = self.clone();
        let server = server.to_string();
        tokio::spawn(async move {
            let result = match mode {
                Mode::Schema => this.refill_spare_schemas(&server).await,
                Mode::Database => this.refill_spare_databases(&server).await,
            };
            if let Err(e) = result {
                tracing::warn!(server = %server, "refilling spare {mode}s failed: {e}");
            }
            this.inner
                .refilling
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&busy_key);
        });
    }

    /// Refills both kinds of `server`'s spares: [`Control::refill_spare_schemas`], then
    /// [`Control::refill_spare_databases`].
    ///
    /// # Errors
    /// As theirs.
    pub async fn refill_spares(&self, server: &str) -> Result<Refilled, ControlError> {
        Ok(Refilled {
            schemas: self.refill_spare_schemas(server).await?,
            databases: self.refill_spare_databases(server).await?,
        })
    }

    /// Drops `server`'s spares that are unfinished or of an older target, then builds verified
    /// spares of the current target until there are `spare_schemas`. Returns how many it built. A
    /// refill already running in another process makes this one return 0 at once.
    ///
    /// # Errors
    /// Connection, migration or verification errors (a spare that fails verification is dropped
    /// and reported).
    pub async fn refill_spare_schemas(&self, server: &str) -> Result<usize, ControlError> {
        let want = self.config().spare_schemas;
        let target = self.provisioning_target().await?;
        let base = pseudo_tenant(server, Mode::Schema, "");
        let owner = self.owner(server).await?.role;
        {
            let admin = self.admin(&base, None).await?;
            crate::ddl::ensure_shared_database(&admin, tenant::SHARED_DATABASE, &owner).await?;
        }
        let conn = self.admin(&base, Some(tenant::SHARED_DATABASE)).await?;
        crate::ddl::prepare_shared_database(&conn, &owner).await?;
        let busy_key = pgfleet_migrate::lock::key("pgfleet-spares", server);
        let built = holding(
            &conn,
            busy_key,
            false,
            "locking the spare refill",
            async || self.refill_on(&conn, server, &target, want, &owner).await,
        )
        .await?;
        Ok(built.unwrap_or(0))
    }

    async fn refill_on(
        &self,
        conn: &Client,
        server: &str,
        target: &Target,
        want: usize,
        owner: &str,
    ) -> Result<usize, ControlError> {
        let mark = marker(target);
        // This fleet's spares, and those of no fleet's owner role (built before owner roles existed).
        let rows = conn
            .query(
                "SELECT n.nspname::text, coalesce(pg_catalog.obj_description(n.oid, 'pg_namespace'), ''), r.rolname = $1
                 FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
                 WHERE n.nspname LIKE 'pgfleet\\_spare\\_%' AND (r.rolname = $1 OR r.rolname NOT LIKE 'pgfleet\\_owner\\_%')",
                &[&owner],
            )
            .await
            .map_err(q("listing spare schemas"))?;
        let mut have = 0;
        for r in rows {
            let (name, comment, ours): (String, String, bool) = (r.get(0), r.get(1), r.get(2));
            if ours && comment == mark {
                have += 1;
            } else {
                drop_spare(conn, &name).await?;
            }
        }
        let mut built = 0;
        while have + built < want {
            self.build_spare(conn, server, target, owner).await?;
            built += 1;
        }
        Ok(built)
    }

    async fn build_spare(
        &self,
        conn: &Client,
        server: &str,
        target: &Target,
        owner: &str,
    ) -> Result<(), ControlError> {
        let name = format!(
            "{SPARE_PREFIX}{}",
            crate::secrets::random_bytes::<6>()?
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        holding(
            conn,
            lock_key(&name),
            true,
            "locking a new spare schema",
            async || {
                let result = self.build_locked(conn, server, target, &name, owner).await;
                if result.is_err() {
                    let _ = conn.batch_execute("ROLLBACK").await;
                    let _ = drop_spare_locked(conn, &name).await;
                }
                result
            },
        )
        .await
        .map(|_| ())
    }

    async fn build_locked(
        &self,
        conn: &Client,
        server: &str,
        target: &Target,
        name: &str,
        owner: &str,
    ) -> Result<(), ControlError> {
        conn.batch_execute(&format!(
            "BEGIN; {SHARED_ACL_LOCK_SQL} {} COMMIT;",
            prepare_schema_sql(name, owner, target)
        ))
        .await
        .map_err(q("creating a spare schema"))?;
        let opts = MigrateOptions {
            scope: Some(name.to_string()),
            extensions_created: true,
            ..Default::default()
        };
        // The target's SQL runs as the fleet's owner role.
        let as_owner = self
            .owner_connection(server, tenant::SHARED_DATABASE)
            .await?;
        pgfleet_migrate::migrator::migrate_on(&as_owner, &target.dir, &opts, |_| {}).await?;
        self.put_owner_connection(server, tenant::SHARED_DATABASE, as_owner);
        let spare = pseudo_tenant(server, Mode::Schema, name);
        let (live, desired) = self.models_in_target_terms(&spare, target, conn).await?;
        let remaining = pgfleet_schema::planner::plan(&live, &desired, &Default::default());
        if !remaining.is_empty() {
            return Err(ControlError::VerificationFailed {
                what: format!("spare schema {name}"),
                target: target.version.clone(),
                plan: remaining,
            });
        }
        conn.batch_execute(&format!(
            "COMMENT ON SCHEMA {} IS {}",
            ident(name),
            literal(&marker(target))
        ))
        .await
        .map_err(q("marking a spare schema"))?;
        tracing::debug!(server, spare = name, "spare schema built and verified");
        Ok(())
    }
}

/// Drops a spare unless someone (its builder, a claimer) holds it.
async fn drop_spare(conn: &Client, name: &str) -> Result<(), ControlError> {
    holding(
        conn,
        lock_key(name),
        false,
        "locking a stale spare schema",
        async || drop_spare_locked(conn, name).await,
    )
    .await
    .map(|_| ())
}

async fn drop_spare_locked(conn: &Client, name: &str) -> Result<(), ControlError> {
    let mut sql = format!("DROP SCHEMA IF EXISTS {} CASCADE;", ident(name));
    let has_history: bool = conn
        .query_one(
            "SELECT to_regclass('pgfleet_migrate.history') IS NOT NULL",
            &[],
        )
        .await
        .map_err(q("dropping a stale spare schema"))?
        .get(0);
    if has_history {
        sql.push_str(&format!(
            " DELETE FROM pgfleet_migrate.history WHERE scope = {};",
            literal(name)
        ));
    }
    conn.batch_execute(&sql)
        .await
        .map_err(q("dropping a stale spare schema"))
}

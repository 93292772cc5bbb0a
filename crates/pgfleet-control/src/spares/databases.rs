//! Spare databases: the fast path of database-mode provisioning.
//!
//! `CREATE DATABASE … TEMPLATE` copies the server's template at the target (~100 ms, most of a
//! database tenant's provisioning). Each server therefore keeps a few *spare* databases, copied
//! from the template ahead of time, with a role of their own already holding the privileges a
//! tenant's role gets (database `CONNECT`, `public`, DML on every object, default privileges):
//! database and role are both named `pgfleet_spare_<fleet>_<hex>`.
//!
//! - **Built** by [`Control::refill_spare_databases`]: the copy, its `NOLOGIN` role and the
//!   grants, then the same verification as a tenant (introspect, diff against the target model:
//!   must be empty). Only then is it closed (`ALLOW_CONNECTIONS false`: a database cannot be
//!   renamed while anyone is connected, and nobody may be) and marked as a spare of that target
//!   (the database comment names the template, which names the target's version and hash and the
//!   fleet's owner role). A build that crashes leaves an unmarked database, which the next refill
//!   drops with its role; a builder holds an advisory lock on its spare, so a live build is
//!   never dropped.
//! - **Claimed** in the tenant's `role` step, in one transaction of the admin on the server's
//!   maintenance database, with no connection to the tenant's database: the tenant's role is the
//!   spare's role renamed, given `LOGIN` and the tenant's password (its SCRAM verifier); the
//!   database is renamed and opened. Only a spare marked for the current target is claimed; a
//!   claim takes an advisory lock on the spare and checks it again, so two tenants never claim
//!   one. With none left, the tenant is built from the template as before.
//! - **Refilled** by long-running processes ([`Control::keep_spares`]): after each database-mode
//!   tenant a background task tops its server up to `spare_databases`
//!   (`PGFLEET_SPARE_DATABASES`, default 2); spares of an older target are dropped then.

use pgfleet_schema::quote::{ident, literal};
use tokio_postgres::Client;

use crate::catalog::Target;
use crate::ddl::{
    create_database_if_missing, database_access_sql, grant_dml, lock_down_public, retry_in_use,
    user_schemas,
};
use crate::tenant::{Mode, Tenant};
use crate::{Control, ControlError, q};

/// The comment that marks a finished, verified spare database copied from `template`.
pub(crate) fn marker(template: &str) -> String {
    format!("pgfleet spare database of {template}")
}

/// Name prefix of this fleet's spare databases (and their roles).
fn prefix(fleet: &str) -> String {
    format!("{}{fleet}_", super::SPARE_PREFIX)
}

/// `prefix` as a `LIKE` pattern (its underscores literal).
fn like(fleet: &str) -> String {
    format!("{}%", prefix(fleet).replace('_', "\\_"))
}

fn lock_key(name: &str) -> i64 {
    pgfleet_migrate::lock::key("pgfleet-spare-database", name)
}

/// The condition of a claimable spare `d` (a `pg_database` row): this fleet's (`$1`, a `LIKE`
/// pattern), marked `$2`, closed, its role there and unable to log in; and the tenant's database
/// (`$3`) and role (`$4`) not there yet.
const CLAIMABLE: &str = "d.datname LIKE $1 AND NOT d.datallowconn
    AND pg_catalog.shobj_description(d.oid, 'pg_database') = $2
    AND EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = d.datname AND NOT r.rolcanlogin)
    AND NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = $3)
    AND NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = $4)";

/// Claims a verified spare database marked `mark` for the database tenant `t`, whose role and
/// database must not exist yet: one transaction on `admin` (a connection to the server's
/// maintenance database), nothing run in the database itself. The role gets the SCRAM verifier of
/// the tenant's password. `false` when no spare could be claimed.
pub(crate) async fn claim(
    admin: &Client,
    fleet: &str,
    t: &Tenant,
    mark: &str,
    password: &crate::secrets::Secret,
) -> Result<bool, ControlError> {
    let pattern = like(fleet);
    let candidates = admin
        .query(
            &format!(
                "SELECT d.datname::text FROM pg_catalog.pg_database d WHERE {CLAIMABLE} ORDER BY d.oid LIMIT 4"
            ),
            &[&pattern, &mark, &t.database, &t.role],
        )
        .await
        .map_err(q("looking for a spare database"))?;
    let candidates: Vec<String> = candidates.iter().map(|r| r.get(0)).collect();
    if candidates.is_empty() {
        return Ok(false);
    }
    // Only now, with a spare to claim (the template path's `CREATE ROLE` computes its own).
    let verifier = &crate::secrets::scram_verifier(password, crate::secrets::SCRAM_ITERATIONS)?;
    let pattern = &pattern;
    super::claim_first(
        admin,
        candidates,
        "claiming a spare database",
        |spare| async move { claim_one(admin, t, &spare, pattern, mark, verifier).await },
    )
    .await
}

async fn claim_one(
    admin: &Client,
    t: &Tenant,
    spare: &str,
    pattern: &str,
    mark: &str,
    verifier: &str,
) -> Result<bool, ControlError> {
    // The lock, then a new snapshot: still there, still claimable?
    let locked: bool = admin
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&lock_key(spare)])
        .await
        .map_err(q("locking a spare database"))?
        .get(0);
    if !locked {
        return Ok(false); // another claimer, or a refill dropping it
    }
    let still: bool = admin
        .query_one(
            &format!(
                "SELECT EXISTS (SELECT FROM pg_catalog.pg_database d WHERE d.datname = $5 AND {CLAIMABLE})"
            ),
            &[&pattern, &mark, &t.database, &t.role, &spare],
        )
        .await
        .map_err(q("locking a spare database"))?
        .get(0);
    if !still {
        return Ok(false);
    }
    let (s, r, db) = (ident(spare), ident(&t.role), ident(&t.database));
    let sql = format!(
        "ALTER ROLE {s} RENAME TO {r}; ALTER ROLE {r} LOGIN PASSWORD {verifier}; \
         ALTER DATABASE {s} RENAME TO {db}; COMMENT ON DATABASE {db} IS NULL; \
         ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true",
        verifier = literal(verifier),
    );
    admin
        .batch_execute(&sql)
        .await
        .map_err(q("claiming a spare database"))?;
    Ok(true)
}

impl Control {
    /// Drops `server`'s spare databases that are unfinished or of an older target, then builds
    /// verified spares of the current target until there are `spare_databases` (none when
    /// templates are off). Returns how many it built. A refill already running in another process
    /// makes this one return 0 at once.
    ///
    /// # Errors
    /// Connection, template or verification errors (a spare that fails verification is dropped
    /// and reported).
    pub async fn refill_spare_databases(&self, server: &str) -> Result<usize, ControlError> {
        let want = if self.config().use_templates {
            self.config().spare_databases
        } else {
            0
        };
        let base = super::pseudo_tenant(server, Mode::Database, "");
        let admin = self.admin(&base, None).await?;
        let fleet = self.fleet_id();
        let busy_key = pgfleet_migrate::lock::key("pgfleet-spare-databases", &prefix(&fleet));
        let built = super::holding(
            &admin,
            busy_key,
            false,
            "locking the spare database refill",
            async || self.refill_databases_on(&admin, server, want).await,
        )
        .await?;
        Ok(built.unwrap_or(0))
    }

    async fn refill_databases_on(
        &self,
        admin: &Client,
        server: &str,
        want: usize,
    ) -> Result<usize, ControlError> {
        let target = self.provisioning_target().await?;
        let fleet = self.fleet_id();
        let template = if want > 0 {
            self.ensure_template(&super::pseudo_tenant(server, Mode::Database, ""), admin)
                .await?
        } else {
            self.template_name(server, &target).await?
        };
        let mark = marker(&template);
        // This fleet's spare databases, and roles of spares whose database is gone.
        let rows = admin
            .query(
                "SELECT d.datname::text, coalesce(pg_catalog.shobj_description(d.oid, 'pg_database'), '') = $2
                        AND NOT d.datallowconn
                        AND EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = d.datname AND NOT r.rolcanlogin)
                 FROM pg_catalog.pg_database d WHERE d.datname LIKE $1
                 UNION ALL
                 SELECT r.rolname::text, false FROM pg_catalog.pg_roles r
                 WHERE r.rolname LIKE $1 AND NOT r.rolcanlogin
                   AND NOT EXISTS (SELECT FROM pg_catalog.pg_database d WHERE d.datname = r.rolname)",
                &[&like(&fleet), &mark],
            )
            .await
            .map_err(q("listing spare databases"))?;
        let mut have = 0;
        for r in rows {
            let (name, good): (String, bool) = (r.get(0), r.get(1));
            if good && have < want {
                have += 1;
            } else {
                drop_spare(admin, &name).await?;
            }
        }
        let mut built = 0;
        while have + built < want {
            self.build_spare_database(admin, server, &target, &template, &mark)
                .await?;
            built += 1;
        }
        Ok(built)
    }

    async fn build_spare_database(
        &self,
        admin: &Client,
        server: &str,
        target: &Target,
        template: &str,
        mark: &str,
    ) -> Result<(), ControlError> {
        let hex: String = crate::secrets::random_bytes::<6>()?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let name = format!("{}{hex}", prefix(&self.fleet_id()));
        super::holding(
            admin,
            lock_key(&name),
            true,
            "locking a new spare database",
            async || {
                let result = self
                    .build_database_locked(admin, server, target, template, &name, mark)
                    .await;
                if result.is_err() {
                    let _ = drop_spare_locked(admin, &name).await;
                }
                result
            },
        )
        .await
        .map(|_| ())
    }

    async fn build_database_locked(
        &self,
        admin: &Client,
        server: &str,
        target: &Target,
        template: &str,
        name: &str,
        mark: &str,
    ) -> Result<(), ControlError> {
        let owner = self.owner(server).await?.role;
        create_database_if_missing(admin, name, Some(template), "creating a spare database")
            .await?;
        admin
            .batch_execute(&format!(
                "CREATE ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS; {}",
                ident(name),
                database_access_sql(name, name, &owner)
            ))
            .await
            .map_err(q("creating a spare database's role"))?;
        let spare = super::pseudo_tenant(server, Mode::Database, name);
        {
            // A connection of its own, closed before the database is: nobody stays connected.
            let config = self.admin_config(&spare, Some(name)).await?;
            let conn = pgfleet_migrate::migrator::connect_dedicated(&config).await?;
            lock_down_public(&conn, Some(name), &owner, target).await?;
            let schemas = user_schemas(&conn).await?;
            grant_dml(&conn, &schemas, name, &owner).await?;
            let remaining = self.verify_on(&spare, target, &conn).await?;
            if !remaining.is_empty() {
                return Err(ControlError::VerificationFailed {
                    what: format!("spare database {name}"),
                    target: target.version.clone(),
                    plan: remaining,
                });
            }
        }
        // Closed to everyone, then marked once the last session (ours, closing) has left.
        let d = ident(name);
        admin
            .batch_execute(&format!("ALTER DATABASE {d} WITH ALLOW_CONNECTIONS false"))
            .await
            .map_err(q("closing a spare database"))?;
        retry_in_use(
            admin,
            &format!(
                "DO $$ BEGIN IF EXISTS (SELECT FROM pg_catalog.pg_stat_activity WHERE datname = {n}) THEN \
                 RAISE EXCEPTION 'spare database still in use' USING ERRCODE = '55006'; END IF; END $$; \
                 COMMENT ON DATABASE {d} IS {m}",
                n = literal(name),
                m = literal(mark)
            ),
        )
        .await
        .map_err(q("marking a spare database"))?;
        tracing::debug!(server, spare = name, "spare database built and verified");
        Ok(())
    }
}

/// Drops a spare database and its role unless someone (its builder, a claimer) holds it.
async fn drop_spare(admin: &Client, name: &str) -> Result<(), ControlError> {
    super::holding(
        admin,
        lock_key(name),
        false,
        "locking a stale spare database",
        async || drop_spare_locked(admin, name).await,
    )
    .await
    .map(|_| ())
}

async fn drop_spare_locked(admin: &Client, name: &str) -> Result<(), ControlError> {
    // Two statements: DROP DATABASE refuses to run in the implicit transaction of one.
    retry_in_use(
        admin,
        &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(name)),
    )
    .await
    .map_err(q("dropping a stale spare database"))?;
    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {}", ident(name)))
        .await
        .map_err(q("dropping a stale spare database's role"))
}

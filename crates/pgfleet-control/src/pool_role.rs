//! The fleet's **pool role** on each server: the login of the connections that trusted callers of
//! schema-mode tenants share (see `pgfleet_router`'s shared connections).
//!
//! `pgfleet_pool_<fleet>`: `LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
//! NOBYPASSRLS`, owner of nothing, holder of no privilege but `CONNECT` on the server's shared
//! tenant database, with a `search_path` that resolves nothing. It is a member of every schema
//! tenant's role of the server **without inheriting** it: a session of the pool role can do nothing
//! until it runs `SET ROLE` to a tenant, and the router does that on every checkout.
//!
//! Its password is derived from the master key (SHA-256 of the key and the server's name), so no
//! catalog table holds it; after `keys rotate` the next process that uses it sets the new one.
//! Memberships are granted when a tenant's role is created (provisioning) and, for tenants made
//! before pool roles existed, once per process and server when the role is first used.

use base64::Engine;
use pgfleet_schema::quote::ident;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::secrets::Secret;
use crate::tenant::SHARED_DATABASE;
use crate::{Control, ControlError, q};

/// The function of the shared database that clears a shared connection's session and switches
/// it to a tenant (see [`SWITCH_FUNCTION_SQL`]).
pub(crate) const SWITCH_FUNCTION: &str = "pgfleet_pool.switch_to";

/// The schema `pgfleet_pool` of the shared database (the admin's; usable by the pool role only)
/// and its function `switch_to(role, search_path)`, run as the pool role on every checkout that
/// changes tenant: everything of the last tenant's session the router cannot drop from outside a
/// transaction goes (settings, `LISTEN`, advisory locks, SQL prepared statements, temporary
/// objects, sequence state), then `role` and `search_path` are set. One statement whose plan each
/// session caches, instead of seven parsed every time. It is called with the last tenant's
/// `search_path` still set, so every function it calls is schema-qualified and it uses no
/// operator (`format` builds the `DEALLOCATE`): nothing in a tenant schema can stand in. `set_config('role', …)` fails unless the session's
/// user (the pool role) is a member of `role`: then the transaction rolls back (fail-closed).
const SWITCH_FUNCTION_SQL: &str = "CREATE SCHEMA IF NOT EXISTS pgfleet_pool;
REVOKE ALL ON SCHEMA pgfleet_pool FROM PUBLIC;
CREATE OR REPLACE FUNCTION pgfleet_pool.switch_to(tenant_role text, tenant_path text)
RETURNS void LANGUAGE plpgsql AS $pgfleet$
DECLARE n text;
BEGIN
  RESET ALL;
  UNLISTEN *;
  PERFORM pg_catalog.pg_advisory_unlock_all();
  DISCARD TEMP;
  DISCARD SEQUENCES;
  FOR n IN SELECT s.name FROM pg_catalog.pg_prepared_statements s WHERE s.from_sql LOOP
    EXECUTE pg_catalog.format('DEALLOCATE %I', n);
  END LOOP;
  PERFORM pg_catalog.set_config('role', tenant_role, false);
  PERFORM pg_catalog.set_config('search_path', tenant_path, false);
END $pgfleet$;
REVOKE ALL ON FUNCTION pgfleet_pool.switch_to(text, text) FROM PUBLIC;";

/// Version of [`SWITCH_FUNCTION_SQL`], kept in the function's comment: a process finding another
/// version replaces it.
const SWITCH_FUNCTION_VERSION: &str = "pgfleet switch_to v2";

/// The pool role of a server, with its password.
#[derive(Clone)]
pub(crate) struct PoolRole {
    /// The role's name.
    pub role: String,
    password: Secret,
}

impl std::fmt::Debug for PoolRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolRole")
            .field("role", &self.role)
            .finish()
    }
}

impl Control {
    fn pool_role_of(&self, server: &str) -> Result<PoolRole, ControlError> {
        let key = self.config().master_key()?.to_base64();
        let digest = Sha256::new()
            .chain_update(b"pgfleet-pool-role-password\0")
            .chain_update(server.as_bytes())
            .chain_update(b"\0")
            .chain_update(key.expose().as_bytes())
            .finalize();
        Ok(PoolRole {
            role: format!("pgfleet_pool_{}", self.fleet_id()),
            password: Secret::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)),
        })
    }

    /// The fleet's pool role on `server`, made to exist there with its password, `CONNECT` on the
    /// shared database and membership in every schema tenant's role the catalog knows on the
    /// server. Once per process per server.
    ///
    /// # Errors
    /// Catalog or server errors (an admin that may not create roles or grant them).
    pub(crate) async fn pool_role(&self, server: &str) -> Result<PoolRole, ControlError> {
        if let Some(p) = self.cached_pool_role(server) {
            return Ok(p);
        }
        let _creating = self.inner.owner_lock.lock().await;
        if let Some(p) = self.cached_pool_role(server) {
            return Ok(p);
        }
        let pool = self.pool_role_of(server)?;
        let admin_key = format!("{server}/{SHARED_DATABASE}");
        let admin = match self.take_idle(&admin_key) {
            Some(c) => c,
            None => {
                let mut config = self.server_admin_config(server).await?;
                config.dbname(SHARED_DATABASE);
                pgfleet_pg::connect::connect(&config).await?
            }
        };
        ensure_pool_role(&admin, &pool).await?;
        ensure_switch_function(&admin, &pool.role).await?;
        let roles: Vec<String> = self
            .catalog()
            .query(
                "SELECT role_name FROM pgfleet.tenants WHERE server = $1 AND mode = 'schema'",
                &[&server],
            )
            .await
            .map_err(q("listing the server's schema tenants"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        grant_missing(&admin, &pool.role, &roles).await?;
        self.put_idle(&admin_key, admin);
        self.inner
            .pool_roles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(server.to_string(), pool.clone());
        Ok(pool)
    }

    fn cached_pool_role(&self, server: &str) -> Option<PoolRole> {
        self.inner
            .pool_roles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(server)
            .cloned()
    }

    /// Makes the pool role of `server` a member (without inheriting) of tenant role `role`, on
    /// `admin` (a connection of the server's admin).
    ///
    /// # Errors
    /// As [`Control::pool_role`].
    pub(crate) async fn grant_to_pool(
        &self,
        admin: &Client,
        server: &str,
        role: &str,
    ) -> Result<(), ControlError> {
        let pool = self.pool_role(server).await?;
        grant_missing(admin, &pool.role, &[role.to_string()]).await
    }

    /// Login settings of the pool role on `server`'s shared tenant database: the admin URL's host,
    /// port and TLS settings, the pool role's name and password, no `search_path` of its own.
    ///
    /// # Errors
    /// As [`Control::pool_role`].
    pub async fn shared_login(&self, server: &str) -> Result<tokio_postgres::Config, ControlError> {
        let admin = self.server_admin_config(server).await?;
        self.shared_login_with(server, &admin).await
    }

    /// As [`Control::shared_login`], from the server's admin settings `admin`.
    pub(crate) async fn shared_login_with(
        &self,
        server: &str,
        admin: &tokio_postgres::Config,
    ) -> Result<tokio_postgres::Config, ControlError> {
        let pool = self.pool_role(server).await?;
        let mut config = admin.clone();
        config
            .user(&pool.role)
            .password(pool.password.expose())
            .dbname(SHARED_DATABASE)
            .application_name("pgfleet router (shared)");
        Ok(config)
    }
}

/// Creates the pool role (or sets its password and attributes again), with `CONNECT` on the shared
/// database and a `search_path` that resolves nothing.
async fn ensure_pool_role(admin: &Client, pool: &PoolRole) -> Result<(), ControlError> {
    let then = format!(
        "\nALTER ROLE {name} SET search_path = '';\nGRANT CONNECT ON DATABASE {db} TO {name};",
        name = ident(&pool.role),
        db = ident(SHARED_DATABASE),
    );
    crate::owner::ensure_login_role(
        admin,
        &pool.role,
        &pool.password,
        "NOINHERIT",
        &then,
        "creating the fleet's pool role",
    )
    .await
}

/// Makes [`SWITCH_FUNCTION_SQL`] exist in the shared database (at its version), callable by the
/// pool role `pool` only.
async fn ensure_switch_function(admin: &Client, pool: &str) -> Result<(), ControlError> {
    let current: bool = admin
        .query_one(
            "SELECT coalesce((SELECT pg_catalog.obj_description(p.oid, 'pg_proc') = $1
                                AND pg_catalog.has_function_privilege($2, p.oid, 'EXECUTE')
                              FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                              WHERE n.nspname = 'pgfleet_pool' AND p.proname = 'switch_to'), false)",
            &[&SWITCH_FUNCTION_VERSION, &pool],
        )
        .await
        .map_err(q("looking for the pool role's switch function"))?
        .get(0);
    if current {
        return Ok(());
    }
    let sql = format!(
        "BEGIN; {lock} {SWITCH_FUNCTION_SQL}          COMMENT ON FUNCTION pgfleet_pool.switch_to(text, text) IS {version};          GRANT USAGE ON SCHEMA pgfleet_pool TO {p};          GRANT EXECUTE ON FUNCTION pgfleet_pool.switch_to(text, text) TO {p}; COMMIT;",
        lock = crate::ddl::SHARED_ACL_LOCK_SQL,
        version = pgfleet_schema::quote::literal(SWITCH_FUNCTION_VERSION),
        p = ident(pool),
    );
    if let Err(e) = admin.batch_execute(&sql).await {
        let _ = admin.batch_execute("ROLLBACK").await;
        return Err(
            pgfleet_pg::PgError::query("creating the pool role's switch function", e).into(),
        );
    }
    Ok(())
}

/// Grants each of `roles` that exists and that `pool` is not yet a member of to `pool`.
async fn grant_missing(admin: &Client, pool: &str, roles: &[String]) -> Result<(), ControlError> {
    let missing: Vec<String> = admin
        .query(
            "SELECT r.rolname::text FROM pg_catalog.pg_roles r
             WHERE r.rolname = ANY($1) AND NOT pg_catalog.pg_has_role($2, r.oid, 'MEMBER')",
            &[&roles, &pool],
        )
        .await
        .map_err(q("reading the pool role's memberships"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for chunk in missing.chunks(500) {
        let list: Vec<String> = chunk.iter().map(|r| ident(r)).collect();
        admin
            .batch_execute(&format!("GRANT {} TO {}", list.join(", "), ident(pool)))
            .await
            .map_err(q("making the pool role a member of tenant roles"))?;
    }
    Ok(())
}

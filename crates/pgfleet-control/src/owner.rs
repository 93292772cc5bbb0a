//! The fleet's owner role on each server: who owns the tenants' objects and runs code on them.
//!
//! Migrations, repairs (`check --fix`, healing), templates and spare schemas run SQL on tenant
//! objects, and SQL on a table fires whatever is attached to it. Running that as the server's admin
//! (usually a superuser) would let anything a tenant managed to attach run as the admin: that is how
//! a tenant could make its own role superuser. So that work runs over a login of its own, the
//! fleet's **owner role** on the server (`pgfleet_owner_<fleet>`): `NOSUPERUSER NOCREATEDB
//! NOCREATEROLE NOREPLICATION NOBYPASSRLS`, a member of no role, owner of the tenants' tables,
//! types, functions and migration histories, with `CONNECT` (and in a tenant's own database
//! `CREATE`) where it works. The admin keeps what needs it and runs no tenant-reachable code:
//! creating databases, roles and extensions, grants, dropping, and reading catalogs.
//!
//! Its password is random, sealed in the catalog (`pgfleet.server_owners`) before the role gets it,
//! and set on the server (as a SCRAM verifier) once per process. A role switch inside an admin
//! session would be no sandbox (code running there could switch back), hence the separate login.

use pgfleet_pg::PgError;
use pgfleet_schema::quote::{ident, literal};
use tokio_postgres::Client;

use crate::catalog::servers;
use crate::secrets::Secret;
use crate::{Control, ControlError, q};

/// The owner role of a server, with its password.
#[derive(Clone)]
pub(crate) struct Owner {
    /// The role's name.
    pub role: String,
    password: Secret,
}

impl std::fmt::Debug for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Owner").field("role", &self.role).finish()
    }
}

/// Seal owner (associated data) of a server's owner-role password.
fn seal_owner(server: &str) -> String {
    format!("server-owner:{server}")
}

impl Control {
    /// The fleet's owner role on `server`: read from the catalog (or created: the password is
    /// sealed first, so a crash never loses it), and made to exist on the server with that password
    /// and no server-level rights. Once per process per server.
    ///
    /// # Errors
    /// Catalog or server errors; a master key that does not open the sealed password.
    pub(crate) async fn owner(&self, server: &str) -> Result<Owner, ControlError> {
        if let Some(o) = self
            .inner
            .owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(server)
        {
            return Ok(o.clone());
        }
        // One task of this process makes sure of it; the others wait and find it cached.
        let _creating = self.inner.owner_lock.lock().await;
        if let Some(o) = self
            .inner
            .owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(server)
        {
            return Ok(o.clone());
        }
        let owner = self.sealed_owner(server).await?;
        let config = self.server_admin_config(server).await?;
        // A login that works needs nothing more (other processes set the role up already).
        let mut login = config.clone();
        login
            .user(&owner.role)
            .password(owner.password.expose())
            .application_name("pgfleet owner");
        let works = match pgfleet_pg::connect::connect(&login).await {
            Ok(_) => true,
            // The role exists and the password is right, but its database is not for it.
            Err(pgfleet_pg::PgError::Connect { reason, .. }) => {
                reason.contains("permission denied for database")
            }
            Err(_) => false,
        };
        if !works {
            let admin = match self.take_idle(&format!("{server}/")) {
                Some(c) => c,
                None => pgfleet_pg::connect::connect(&config).await?,
            };
            ensure_owner_role(&admin, &owner).await?;
            self.put_idle(&format!("{server}/"), admin);
        }
        self.inner
            .owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(server.to_string(), owner.clone());
        Ok(owner)
    }

    /// The owner role's row, created (name and sealed password) when missing.
    async fn sealed_owner(&self, server: &str) -> Result<Owner, ControlError> {
        let c = self.catalog();
        let (role, sealed) = match servers::owner(&*c, server).await? {
            Some(row) => row,
            None => {
                self.check_master_key().await?;
                let role = format!("pgfleet_owner_{}", self.fleet_id());
                let password = crate::secrets::random_password()?;
                let sealed = self
                    .config()
                    .master_key()?
                    .seal(&seal_owner(server), &password)?;
                servers::insert_owner(&*c, server, &role, &sealed).await?;
                servers::owner(&*c, server)
                    .await?
                    .ok_or_else(|| ControlError::CorruptRow {
                        table: "server_owners",
                        detail: format!(
                            "the owner role of server {server} vanished while it was created"
                        ),
                    })?
            }
        };
        let password = self.open_sealed(&seal_owner(server), &sealed)?;
        Ok(Owner { role, password })
    }

    /// Login settings of the owner role on `database` of `server`: the admin URL's host, port and
    /// TLS settings, the owner's name and password, `search_path = public` (migrations of schema
    /// tenants set their own per transaction).
    ///
    /// # Errors
    /// As [`Control::owner`].
    pub(crate) async fn owner_config(
        &self,
        server: &str,
        database: &str,
    ) -> Result<tokio_postgres::Config, ControlError> {
        let owner = self.owner(server).await?;
        let mut config = self.server_admin_config(server).await?;
        config
            .user(&owner.role)
            .password(owner.password.expose())
            .dbname(database)
            .application_name("pgfleet owner")
            .options("-c search_path=public");
        Ok(config)
    }

    /// A connection as the owner role to `database` of `server`, reusing an idle one.
    ///
    /// # Errors
    /// As [`Control::owner_config`], and connection errors.
    pub(crate) async fn owner_connection(
        &self,
        server: &str,
        database: &str,
    ) -> Result<Client, ControlError> {
        if let Some(c) = self.take_idle(&owner_pool_key(server, database)) {
            return Ok(c);
        }
        let config = self.owner_config(server, database).await?;
        Ok(pgfleet_pg::connect::connect(&config).await?)
    }

    /// Hands back an owner connection that ended cleanly (no transaction open).
    pub(crate) fn put_owner_connection(&self, server: &str, database: &str, client: Client) {
        self.put_idle(&owner_pool_key(server, database), client);
    }
}

fn owner_pool_key(server: &str, database: &str) -> String {
    format!("owner:{server}/{database}")
}

/// Creates the owner role with `owner`'s password, or sets its password and attributes again. An
/// admin that is not a superuser (a role with `CREATEDB` and `CREATEROLE`) becomes a member of it,
/// which it needs to create schemas for it and to hand objects over to it.
async fn ensure_owner_role(admin: &Client, owner: &Owner) -> Result<(), ControlError> {
    ensure_login_role(
        admin,
        &owner.role,
        &owner.password,
        "NOINHERIT",
        "",
        "creating the fleet's owner role",
    )
    .await?;
    let superuser: bool = admin
        .query_one(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(q("reading the admin role"))?
        .get(0);
    if !superuser {
        admin
            .batch_execute(&format!("GRANT {} TO CURRENT_USER", ident(&owner.role)))
            .await
            .map_err(q("making the admin a member of the owner role"))?;
    }
    Ok(())
}

/// Creates login role `name` with `password` (as a SCRAM verifier) and no server-level right
/// (`NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS`, plus `inherit`), or sets its
/// password and attributes again, then runs `then` (more statements about it). Another process may
/// create or alter it at the same moment ("tuple concurrently updated", a unique violation on the
/// name): a few tries.
pub(crate) async fn ensure_login_role(
    admin: &Client,
    name: &str,
    password: &Secret,
    inherit: &str,
    then: &str,
    what: &'static str,
) -> Result<(), ControlError> {
    let verifier = crate::secrets::scram_verifier(password, crate::secrets::SCRAM_ITERATIONS)?;
    let attributes =
        format!("LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE {inherit} NOREPLICATION NOBYPASSRLS");
    let sql = format!(
        "DO $$ BEGIN
             IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {name_lit}) THEN
                 ALTER ROLE {name_id} {attributes} PASSWORD {verifier};
             ELSE
                 CREATE ROLE {name_id} {attributes} PASSWORD {verifier};
             END IF;
         END $$;{then}",
        name_id = ident(name),
        name_lit = literal(name),
        verifier = literal(&verifier)
    );
    let mut tries = 0;
    loop {
        tries += 1;
        match admin.batch_execute(&sql).await {
            Ok(()) => return Ok(()),
            Err(e)
                if tries < 5
                    && e.as_db_error().is_some_and(|d| {
                        matches!(d.code().code(), "XX000" | "23505" | "42710" | "40001")
                    }) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20 * tries)).await;
            }
            Err(e) => return Err(PgError::query(what, e).into()),
        }
    }
}

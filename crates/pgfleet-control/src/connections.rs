//! Admin connections to the servers that hold tenants: their settings (the sealed admin URL, a
//! `search_path` of `pg_catalog` only), and reuse of idle ones.

use pgfleet_pg::connect;
use tokio_postgres::Client;

use crate::tenant::{Mode, Tenant};
use crate::{Control, ControlError, server};

/// The advisory lock key of a tenant in the catalog (one worker at a time per tenant).
/// The idle-pool key of admin connections to `database` (or the admin URL's own) on `t`'s server.
fn admin_pool_key(t: &Tenant, database: Option<&str>) -> String {
    format!(
        "{}/{}",
        t.server.as_deref().unwrap_or_default(),
        database.unwrap_or_default()
    )
}

impl Control {
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

    /// The admin connection config for the tenant's server, on `database` (or the server URL's).
    pub(crate) async fn admin_config(
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
}

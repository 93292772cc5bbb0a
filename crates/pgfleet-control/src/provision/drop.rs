//! Dropping a tenant: its database (or schema) and role, then its catalog row; the
//! `tenant.dropped` event stays as the tombstone.

use crate::catalog::tenants;
use crate::ddl;
use crate::tenant::{Mode, Tenant};
use crate::{Control, ControlError, events, q};

impl Control {
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
            let _ = tenants::set_last_error(
                &*self.catalog(),
                &t.id,
                &format!("drop: {}", crate::chain(e)),
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
        crate::catalog::announce(&c, &t.id).await;
        tenants::mark_dropping(&*c, &t.id).await?;
        if t.server.is_some() {
            let admin = self.admin(&t, None).await?;
            match t.mode {
                Mode::Database => ddl::drop_database(&admin, &t.database).await?,
                Mode::Schema => {
                    if ddl::database_exists(&admin, &t.database).await? {
                        let in_db = self.admin(&t, Some(&t.database)).await?;
                        ddl::drop_schema(&in_db, &t.schema).await?;
                        if ddl::role_exists(&admin, &t.role).await? {
                            ddl::drop_owned(&in_db, &t.role).await?;
                        }
                    }
                }
            }
            ddl::drop_role(&admin, &t.role).await?;
        }
        tenants::delete(&*c, &t.id).await?;
        crate::catalog::announce(&c, &t.id).await;
        events::record(&c, Some(&t.id), Some(key), "tenant.dropped", serde_json::json!({"server": t.server, "database": t.database, "schema": t.schema, "role": t.role, "mode": t.mode})).await?;
        Ok(t)
    }
}

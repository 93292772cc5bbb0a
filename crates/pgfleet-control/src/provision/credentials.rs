//! A tenant's password: sealed in the catalog before its role gets it (a crash between the two
//! never loses it), opened for logins, and handed to operators as a connection URL.

use crate::catalog::tenants;
use crate::secrets::{Sealed, Secret};
use crate::tenant::{Mode, Tenant};
use crate::{Control, ControlError};

impl Control {
    /// The tenant's password (`sealed`: as its catalog row holds it, if it does): a new one is
    /// sealed in the catalog before the role exists, so a crash between the two never loses it;
    /// when another worker sealed one first, that one.
    pub(super) async fn password(
        &self,
        tenant_id: &str,
        sealed: Option<Sealed>,
    ) -> Result<Secret, ControlError> {
        let owner = format!("tenant:{tenant_id}");
        if let Some(sealed) = sealed {
            return self.open_sealed(&owner, &sealed);
        }
        let password = crate::secrets::random_password()?;
        let sealed = self.config().master_key()?.seal(&owner, &password)?;
        let c = self.catalog();
        if tenants::seal_password(&*c, tenant_id, &sealed).await? {
            return Ok(password);
        }
        match tenants::password(&*c, tenant_id).await? {
            Some(first) => self.open_sealed(&owner, &first),
            None => Err(ControlError::CorruptRow {
                table: "tenants",
                detail: format!("the password of tenant {tenant_id} vanished while it was sealed"),
            }),
        }
    }

    /// The tenant's password, opened from the catalog; `None` before the `role` step sealed one.
    ///
    /// # Errors
    /// Catalog errors; a master key that does not open it.
    pub(crate) async fn tenant_password(&self, t: &Tenant) -> Result<Option<Secret>, ControlError> {
        match tenants::password(&*self.catalog(), &t.id).await? {
            Some(sealed) => self
                .open_sealed(&format!("tenant:{}", t.id), &sealed)
                .map(Some),
            None => Ok(None),
        }
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

//! Key rotation and password rotation.
//!
//! Rotating the master key without downtime:
//! 1. start every pgfleet process with the new key as `PGFLEET_MASTER_KEY` and the old one as
//!    `PGFLEET_PREVIOUS_MASTER_KEY` (each sealed row names the key that wrapped it, so both open);
//! 2. run `pgfleet keys rotate`: every data key still wrapped by another key is re-wrapped by the
//!    current one (the ciphertexts do not change; rows already done are skipped, so it can be run
//!    again after an interruption);
//! 3. remove the previous key.

use tokio_postgres::Client;

use crate::catalog::sealed::{self, SealedTable};
use crate::secrets::{MasterKey, Sealed, SecretError};
use crate::{Control, ControlError, events};

impl Control {
    /// The configured key whose id is `key_id` (current or previous).
    pub(crate) fn key_for(&self, key_id: &str, owner: &str) -> Result<&MasterKey, ControlError> {
        let current = self.config().master_key()?;
        if current.id() == key_id {
            return Ok(current);
        }
        match &self.config().previous_master_key {
            Some(p) if p.id() == key_id => Ok(p),
            _ => Err(SecretError::Open {
                owner: owner.into(),
                key_id: current.id().to_string(),
                sealed_with: key_id.to_string(),
            }
            .into()),
        }
    }

    /// Ids of the master keys the catalog's sealed rows were wrapped with.
    pub async fn sealing_key_ids(&self) -> Result<Vec<String>, ControlError> {
        crate::catalog::sealed::key_ids(&*self.catalog()).await
    }

    /// Refuses a master key that does not open the catalog's secrets (every sealing key must be
    /// the current or the previous one), before anything is sealed with it.
    ///
    /// # Errors
    /// [`ControlError::WrongKey`].
    pub async fn check_master_key(&self) -> Result<(), ControlError> {
        let current = self.config().master_key()?;
        let previous = self.config().previous_master_key.as_ref().map(|k| k.id());
        let foreign: Vec<String> = self
            .sealing_key_ids()
            .await?
            .into_iter()
            .filter(|id| id != current.id() && Some(id.as_str()) != previous)
            .collect();
        if foreign.is_empty() {
            Ok(())
        } else {
            Err(ControlError::WrongKey {
                configured: current.id().to_string(),
                catalog: foreign,
            })
        }
    }

    /// Opens a sealed secret with the key that sealed it (current or previous).
    pub(crate) fn open_sealed(
        &self,
        owner: &str,
        sealed: &Sealed,
    ) -> Result<crate::secrets::Secret, ControlError> {
        Ok(self.key_for(&sealed.key_id, owner)?.open(owner, sealed)?)
    }

    /// Re-wraps every data key not wrapped by the current master key. Returns how many rows changed.
    ///
    /// # Errors
    /// A row sealed by a key that is neither current nor previous (named in the error).
    pub async fn rotate_keys(&self) -> Result<usize, ControlError> {
        let c = self.catalog();
        let new = self.config().master_key()?.clone();
        // Every row must open before any is changed: never leave the catalog needing three keys.
        self.check_master_key().await?;
        let mut changed = 0;
        for table in SealedTable::ALL {
            for (id, sealed) in sealed::not_sealed_with(&*c, table, new.id()).await? {
                let owner = format!("{}:{id}", table.owner_prefix());
                let re = self
                    .key_for(&sealed.key_id, &owner)?
                    .rewrap(&owner, &sealed, &new)?;
                sealed::rewrap(&*c, table, &id, &re, &sealed.key_id).await?;
                changed += 1;
            }
        }
        events::record(
            &c,
            None,
            None,
            "keys.rotated",
            serde_json::json!({"key_id": new.id(), "rows": changed}),
        )
        .await?;
        Ok(changed)
    }

    /// Gives tenant `key` a new random password: sealed in the catalog first, then set on its role.
    /// If interrupted in between, running it again completes it.
    ///
    /// # Errors
    /// Unknown or unplaced tenant, unreachable server.
    pub async fn rotate_password(&self, key: &str) -> Result<(), ControlError> {
        self.check_master_key().await?;
        let t = self.tenant(key).await?;
        let owner = format!("tenant:{}", t.id);
        let password = crate::secrets::random_password()?;
        let sealed = self.config().master_key()?.seal(&owner, &password)?;
        let c: &Client = &self.catalog();
        crate::catalog::tenants::set_password(c, &t.id, &sealed).await?;
        if t.server.is_some() {
            let admin = self.admin(&t, None).await?;
            crate::ddl::ensure_role(&admin, &t.role, &password).await?;
            // A role that was dropped behind pgfleet's back comes back without its grants.
            self.restore_access(&t, "pgfleet tenant rotate-password")
                .await?;
        }
        crate::catalog::announce(c, &t.id).await;
        events::record(
            c,
            Some(&t.id),
            Some(key),
            "tenant.password_rotated",
            serde_json::json!({}),
        )
        .await
    }
}

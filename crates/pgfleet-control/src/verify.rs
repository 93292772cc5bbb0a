//! The fleet's target as pgfleet compares tenants with it: the target model (built once per
//! target and PostgreSQL major in a sandboxed shadow database, stored in the catalog), and the
//! verification of a tenant (introspect, diff: the difference must be empty).

use std::sync::Arc;

use pgfleet_pg::{connect, introspect, shadow};
use pgfleet_schema::Model;
use tokio_postgres::Client;

use crate::catalog::{self, Target};
use crate::tenant::{Mode, Tenant};
use crate::{Control, ControlError, q};

impl Control {
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
        let stored = catalog::target_model(&self.catalog(), &target.version, major).await?;
        let model = match stored.and_then(|json| serde_json::from_str::<Model>(&json).ok()) {
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
                catalog::insert_target_model(&self.catalog(), &target.version, major, &json)
                    .await?;
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
}

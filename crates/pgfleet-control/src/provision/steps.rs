//! The provisioning state machine: each [`Step`] of a tenant, run from where its catalog row says it
//! is, each one able to run again after a crash.

use std::time::Instant;

use tokio_postgres::Client;

use super::queue::LEASE;
use crate::catalog::{Target, tenants};
use crate::ddl::{
    create_database, create_tenant_schema, ensure_role, ensure_shared_database, grant_dml,
    lock_down_public, prepare_shared_database, user_schemas,
};
use crate::secrets::{Sealed, Secret};
use crate::tenant::{Mode, State, Tenant};
use crate::{Control, ControlError, events, q, server};

/// A step of a tenant's provisioning (its `step` in the catalog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Choose a server.
    Place,
    /// Seal a password, create the login role.
    Role,
    /// Create the database (from the template) or claim a spare schema or create the schema.
    Database,
    /// A spare schema was claimed: grants, then ready.
    Claimed,
    /// The target's migrations, as the fleet's owner role.
    Migrate,
    /// The role's privileges.
    Grant,
    /// Introspect and diff against the target model: must be empty.
    Verify,
    /// Handed out.
    Ready,
}

impl Step {
    /// The name stored in the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Place => "place",
            Self::Role => "role",
            Self::Database => "database",
            Self::Claimed => "claimed",
            Self::Migrate => "migrate",
            Self::Grant => "grant",
            Self::Verify => "verify",
            Self::Ready => "ready",
        }
    }

    /// The step named `name` in the catalog.
    ///
    /// # Errors
    /// [`ControlError::CorruptRow`] for a name this pgfleet does not know.
    pub fn parse(name: &str) -> Result<Self, ControlError> {
        Ok(match name {
            "place" => Self::Place,
            "role" => Self::Role,
            "database" => Self::Database,
            "claimed" => Self::Claimed,
            "migrate" => Self::Migrate,
            "grant" => Self::Grant,
            "verify" => Self::Verify,
            "ready" => Self::Ready,
            other => {
                return Err(ControlError::CorruptRow {
                    table: "tenants",
                    detail: format!("unknown provisioning step {other:?}"),
                });
            }
        })
    }

    /// The step after this one (a step may also choose another: `database` → `claimed`).
    fn next(self) -> Self {
        match self {
            Self::Place => Self::Role,
            Self::Role => Self::Database,
            Self::Database => Self::Migrate,
            Self::Migrate => Self::Grant,
            Self::Grant => Self::Verify,
            Self::Claimed | Self::Verify | Self::Ready => Self::Ready,
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the steps of one provisioning run share: the tenant as last read, and the connections and
/// the target, each opened when a step first needs it and then reused.
struct Run<'a> {
    control: &'a Control,
    tenant: Tenant,
    requested_server: Option<String>,
    sealed_password: Option<Sealed>,
    /// An admin connection to the server URL's database.
    admin: Option<Client>,
    /// An admin connection to the tenant's database (the shared one for a schema tenant).
    in_db: Option<Client>,
    target: Option<Target>,
}

impl Run<'_> {
    async fn admin(&mut self) -> Result<&Client, ControlError> {
        let c = match self.admin.take() {
            Some(c) => c,
            None => self.control.pooled_admin(&self.tenant, None).await?,
        };
        Ok(self.admin.insert(c))
    }

    async fn in_db(&mut self) -> Result<&Client, ControlError> {
        let c = match self.in_db.take() {
            Some(c) => c,
            None => {
                let db = self.tenant.database.clone();
                self.control.pooled_admin(&self.tenant, Some(&db)).await?
            }
        };
        Ok(self.in_db.insert(c))
    }

    async fn target(&mut self) -> Result<Target, ControlError> {
        let t = match self.target.take() {
            Some(t) => t,
            None => self.control.provisioning_target().await?,
        };
        Ok(self.target.insert(t).clone())
    }

    fn server(&self) -> String {
        self.tenant.server.clone().unwrap_or_default()
    }

    /// Runs `step`; returns the step after it.
    async fn run(&mut self, step: Step) -> Result<Step, ControlError> {
        match step {
            Step::Place => self.place().await?,
            Step::Role => return self.role().await,
            Step::Database => return self.database().await,
            Step::Migrate => self.migrate().await?,
            // A claimed spare database came with its grants; a claimed spare schema needs them.
            Step::Claimed if self.tenant.mode == Mode::Database => {}
            Step::Grant | Step::Claimed => self.grant().await?,
            Step::Verify => self.verify().await?,
            Step::Ready => {}
        }
        Ok(step.next())
    }

    async fn place(&mut self) -> Result<(), ControlError> {
        let mut conn = self.control.catalog_for_tx().await?;
        let tx = conn.transaction().await.map_err(q("placing the tenant"))?;
        let name = server::place(&tx, self.requested_server.as_deref()).await?;
        tenants::place(&tx, &self.tenant.id, &name).await?;
        tx.commit().await.map_err(q("placing the tenant"))?;
        self.control.put_idle("catalog", conn);
        Ok(())
    }

    /// The tenant's login role, or for a database tenant a claimed spare database (whose role
    /// becomes the tenant's: next step `claimed`).
    async fn role(&mut self) -> Result<Step, ControlError> {
        let password = self
            .control
            .password(&self.tenant.id, self.sealed_password.take())
            .await?;
        if self.tenant.mode == Mode::Database && self.claim_database(&password).await? {
            return Ok(Step::Claimed);
        }
        let role = self.tenant.role.clone();
        ensure_role(self.admin().await?, &role, &password).await?;
        Ok(Step::Database)
    }

    /// Claims a spare database of the current target for this database tenant (see
    /// [`crate::spares::databases`]), in one transaction of the admin.
    async fn claim_database(&mut self, password: &Secret) -> Result<bool, ControlError> {
        let control = self.control;
        let target = self.target().await?;
        let template = control.template_name(&self.server(), &target).await?;
        let t = self.tenant.clone();
        let fleet = control.fleet_id();
        let admin = self.admin().await?;
        let claimed = crate::spares::databases::claim(
            admin,
            &fleet,
            &t,
            &crate::spares::databases::marker(&template),
            password,
        )
        .await?;
        if claimed {
            tenants::set_version(&*control.catalog(), &t.id, &target.version).await?;
        }
        Ok(claimed)
    }

    async fn database(&mut self) -> Result<Step, ControlError> {
        let control = self.control;
        let server_name = self.server();
        // A schema tenant on a server whose shared database this process has already made ready
        // needs no admin round trips here.
        let shared_known = self.tenant.mode == Mode::Schema
            && control
                .inner
                .shared_ready
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&server_name);
        let owner = control.owner(&server_name).await?.role;
        let target = self.target().await?;
        let t = self.tenant.clone();
        match t.mode {
            Mode::Database => {
                let template = if control.config().use_templates {
                    let admin = self.admin().await?;
                    Some(control.ensure_template(&t, admin).await?)
                } else {
                    None
                };
                let admin = self.admin().await?;
                create_database(admin, &t.database, &t.role, &owner, template.as_deref()).await?;
                lock_down_public(self.in_db().await?, Some(&t.role), &owner, &target).await?;
                Ok(Step::Migrate)
            }
            Mode::Schema => {
                if !shared_known {
                    ensure_shared_database(self.admin().await?, &t.database, &owner).await?;
                    prepare_shared_database(self.in_db().await?, &owner).await?;
                    control
                        .inner
                        .shared_ready
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(server_name);
                }
                // Trusted callers share connections of the pool role, which switch to the
                // tenant's role: it needs membership (best effort: without it the router logs in
                // as the tenant instead).
                let server = t.server.clone().unwrap_or_default();
                if let Err(e) = control
                    .grant_to_pool(self.admin().await?, &server, &t.role)
                    .await
                {
                    tracing::warn!(
                        tenant = %t.key,
                        "the pool role of server {server} could not be given the tenant's role (shared connections will not serve it): {}",
                        crate::chain(&e)
                    );
                }
                let in_db = self.in_db().await?;
                if crate::spares::claim(in_db, &t, &target, &owner).await? {
                    tenants::set_version(&*control.catalog(), &t.id, &target.version).await?;
                    return Ok(Step::Claimed);
                }
                create_tenant_schema(in_db, &t.schema, &t.role, &owner, &target).await?;
                Ok(Step::Migrate)
            }
        }
    }

    async fn migrate(&mut self) -> Result<(), ControlError> {
        let control = self.control;
        let target = self.target().await?;
        let t = self.tenant.clone();
        let scope = if t.mode == Mode::Schema {
            t.schema.as_str()
        } else {
            ""
        };
        // A copy of the template carries the target's history: nothing to run, no connection of
        // the owner role to open.
        let in_db = self.in_db().await?;
        let at_target = pgfleet_migrate::history::exists(in_db).await?
            && pgfleet_migrate::migrator::batchable(
                &target.dir,
                &pgfleet_migrate::history::read(in_db, scope).await?,
            )
            .is_some_and(|pending| pending.is_empty());
        if !at_target {
            // The target's SQL runs as the fleet's owner role, never as the admin.
            let server_name = t.server.clone().unwrap_or_default();
            let conn = control.owner_connection(&server_name, &t.database).await?;
            let opts = pgfleet_migrate::MigrateOptions {
                scope: (t.mode == Mode::Schema).then(|| t.schema.clone()),
                extensions_created: true,
                ..Default::default()
            };
            pgfleet_migrate::migrator::migrate_on(&conn, &target.dir, &opts, |_| {}).await?;
            if t.mode == Mode::Schema {
                control.put_owner_connection(&server_name, &t.database, conn);
            }
        }
        tenants::set_version(&*control.catalog(), &t.id, &target.version).await
    }

    async fn grant(&mut self) -> Result<(), ControlError> {
        let t = self.tenant.clone();
        let owner = self.control.owner(&self.server()).await?.role;
        let in_db = self.in_db().await?;
        let schemas = match t.mode {
            Mode::Database => user_schemas(in_db).await?,
            Mode::Schema => vec![t.schema.clone()],
        };
        grant_dml(in_db, &schemas, &t.role, &owner).await
    }

    async fn verify(&mut self) -> Result<(), ControlError> {
        let target = self.target().await?;
        let t = self.tenant.clone();
        let control = self.control;
        let remaining = control.verify_on(&t, &target, self.in_db().await?).await?;
        if remaining.is_empty() {
            Ok(())
        } else {
            Err(ControlError::VerificationFailed {
                what: "the tenant".into(),
                target: target.version,
                plan: remaining,
            })
        }
    }

    /// A clean end: the server connections go back for the next tenant; when it `provisioned`
    /// something, its server's spares of its mode are topped up (by processes that keep them).
    fn finish(mut self, provisioned: bool) {
        let t = &self.tenant;
        if let Some(a) = self.admin.take() {
            self.control.pool_admin(t, None, a);
        }
        if let Some(d) = self.in_db.take() {
            self.control.pool_admin(t, Some(&t.database), d);
        }
        if provisioned {
            self.control
                .spawn_refill(t.server.as_deref().unwrap_or_default(), t.mode);
        }
    }
}

impl Control {
    /// Runs tenant `tenant_id`'s steps from where it is to `ready`, recording each (and the lease
    /// of operation `op`) as it goes.
    pub(super) async fn provision_steps(
        &self,
        op: i64,
        tenant_id: &str,
    ) -> Result<(), ControlError> {
        let c = self.catalog();
        let (tenant, requested_server, sealed_password) =
            tenants::for_provisioning(&*c, tenant_id).await?;
        let mut run = Run {
            control: self,
            tenant,
            requested_server,
            sealed_password,
            admin: None,
            in_db: None,
            target: None,
        };
        loop {
            if run.tenant.state == State::Ready {
                run.finish(false);
                return Ok(());
            }
            let step = Step::parse(&run.tenant.step)?;
            let started = Instant::now();
            let next = run.run(step).await?;
            let state = if next == Step::Ready {
                State::Ready
            } else {
                State::Provisioning
            };
            // Progress and the lease in one round trip; the tenant becomes ready and its operation
            // done in one statement, so nobody sees one without the other.
            tenants::progress(&*c, tenant_id, next.as_str(), state.as_str(), op, LEASE).await?;
            let t = &run.tenant;
            tracing::debug!(
                tenant = %t.key,
                step = %step,
                server = t.server.as_deref().unwrap_or(""),
                database = %t.database,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "step done"
            );
            if next == Step::Ready {
                events::record(
                    &c,
                    Some(tenant_id),
                    Some(&t.key),
                    "tenant.ready",
                    serde_json::json!({"server": t.server, "database": t.database, "schema": t.schema, "version": t.schema_version, "from_spare": step == Step::Claimed}),
                )
                .await?;
            }
            super::queue::failpoint(&format!("provision:after:{step}"));
            if next == Step::Ready {
                run.finish(true);
                return Ok(());
            }
            // The next step reads the tenant as the catalog has it now (its server, its version).
            let (tenant, requested_server, sealed_password) =
                tenants::for_provisioning(&*c, tenant_id).await?;
            run.tenant = tenant;
            run.requested_server = requested_server;
            run.sealed_password = sealed_password;
        }
    }
}

//! Diagnostics: drift of a tenant against the target (`check`), additive repair (`check --fix`),
//! one tenant end to end (`check-user`), the whole installation (`validate`), and re-initializing a
//! tenant (`init --tenant KEY --reset`).
//!
//! Drift is computed in the target's terms (a schema tenant's schema is read as `public`); a repair
//! plan is restricted to additive steps (`PlanOptions::additive_only`), written with the tenant's
//! own objects unqualified and run with the tenant's `search_path`, so the same statements serve both
//! modes. Every repaired step is recorded as a `tenant.correction` event: what, statement, how long,
//! why. Destructive drift (an extra column, a changed type) is reported, never "fixed".

use std::time::Instant;

use pgfleet_pg::{PgError, connect};
use pgfleet_schema::planner::{self, PlanOptions};
use pgfleet_schema::{Hazard, Plan};
use serde::Serialize;

use crate::catalog::Target;
use crate::tenant::{Mode, State, Tenant};
use crate::{Control, ControlError, events};

/// Drift of one tenant.
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    /// The tenant's key.
    pub key: String,
    /// The target version it was compared with: the tenant's own version when it is behind.
    pub target: String,
    /// The current target's version, when the tenant is behind it (`migrate --all` brings it
    /// there; that difference is not drift).
    pub behind: Option<String>,
    /// Steps that would bring the tenant to the target.
    pub steps: Vec<DriftStep>,
}

/// One difference.
#[derive(Debug, Clone, Serialize)]
pub struct DriftStep {
    /// What differs, e.g. `create table public.notes`.
    pub description: String,
    /// The statement that would fix it.
    pub sql: String,
    /// Its hazards.
    pub hazards: Vec<Hazard>,
    /// Whether `check --fix` repairs it (additive, non-destructive).
    pub repairable: bool,
    /// Whether fixing it would lose data (an extra column or table to drop).
    pub destructive: bool,
}

impl Drift {
    /// No difference.
    pub fn is_clean(&self) -> bool {
        self.steps.is_empty()
    }

    /// Differences `--fix` does not repair.
    pub fn unrepairable(&self) -> usize {
        self.steps.iter().filter(|s| !s.repairable).count()
    }
}

/// What `check --fix` did for one tenant.
#[derive(Debug, Clone, Serialize)]
pub struct Repair {
    /// Steps applied (each recorded as a correction event).
    pub applied: Vec<String>,
    /// The drift left afterwards (destructive or not repairable).
    pub remaining: Drift,
}

/// A finding of `validate` or `check-user`.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What was checked.
    pub check: String,
    /// Passed?
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

fn finding(check: impl Into<String>, ok: bool, detail: impl Into<String>) -> Finding {
    Finding {
        check: check.into(),
        ok,
        detail: detail.into(),
    }
}

impl Control {
    /// The target a tenant is compared with: the version it was brought to when it is behind the
    /// current target (a migration not rolled out to it yet is not drift, and a repair must not
    /// apply it), else the current one. The second value is the current target's version when the
    /// tenant is behind.
    pub(crate) async fn target_for(
        &self,
        t: &Tenant,
    ) -> Result<(Target, Option<String>), ControlError> {
        let current = self.target().await?;
        match &t.schema_version {
            Some(v) if *v != current.version => {
                match crate::catalog::target_at(&self.catalog(), v).await? {
                    Some(old) => Ok((old, Some(current.version))),
                    None => Ok((current, None)),
                }
            }
            _ => Ok((current, None)),
        }
    }

    /// The full plan and the additive repair plan from the tenant to the target, both in the
    /// target's terms, and the target they were computed for.
    async fn plans(&self, t: &Tenant) -> Result<(Plan, Plan, Target), ControlError> {
        let (target, _) = self.target_for(t).await?;
        // Schema tenants of one shared database reuse connections (a fleet check reads thousands).
        let in_db = self.pooled_admin(t, Some(&t.database)).await?;
        let (live, desired) = self.models_in_target_terms(t, &target, &in_db).await?;
        self.pool_admin(t, Some(&t.database), in_db);
        let full = planner::plan(&live, &desired, &PlanOptions::default());
        let additive = planner::plan(
            &live,
            &desired,
            &PlanOptions {
                additive_only: true,
                ..PlanOptions::default()
            },
        );
        Ok((full, additive, target))
    }

    /// Drift of tenant `key` against the target.
    ///
    /// # Errors
    /// Unknown tenant, unreachable server.
    pub async fn check(&self, key: &str) -> Result<Drift, ControlError> {
        let t = self.tenant(key).await?;
        let (full, additive, target) = self.plans(&t).await?;
        let mut d = drift(&t, &full, &additive, target.version.clone());
        let current = self.target().await?;
        if current.version != target.version {
            d.behind = Some(current.version);
        }
        if t.mode == Mode::Schema {
            // Descriptions name the tenant's schema (the SQL stays in the target's terms).
            for s in &mut d.steps {
                s.description = s.description.replace("public.", &format!("{}.", t.schema));
            }
        }
        Ok(d)
    }

    /// Applies the additive part of the drift of `key`, records each step as a correction, and
    /// returns what is left.
    ///
    /// # Errors
    /// Unknown tenant, unreachable server, a repair statement that fails (the error names it).
    pub async fn fix(&self, key: &str, reason: &str) -> Result<Repair, ControlError> {
        let t = self.tenant(key).await?;
        let (_, additive, target) = self.plans(&t).await?;
        let desired = self.target_model(&t, &target).await?;
        let names = pgfleet_migrate::generate::public_object_names(&desired);
        let in_db = self.admin(&t, Some(&t.database)).await?;
        let search_path = match t.mode {
            Mode::Database => "public".to_string(),
            Mode::Schema => format!("{}, public", pgfleet_schema::quote::ident(&t.schema)),
        };
        let mut applied = Vec::new();
        for step in &additive.steps {
            let sql = pgfleet_migrate::generate::unqualify_public(&step.sql, &names);
            // Named as the tenant sees them: a schema tenant's objects live in its schema.
            let object = match t.mode {
                Mode::Schema => step
                    .description
                    .replace("public.", &format!("{}.", t.schema)),
                Mode::Database => step.description.clone(),
            };
            let started = Instant::now();
            let result = if step.transactional {
                in_db
                    .batch_execute(&format!(
                        "BEGIN; SET LOCAL search_path = {search_path}; {sql}; COMMIT;"
                    ))
                    .await
            } else {
                // CREATE INDEX CONCURRENTLY and friends refuse any transaction block, including the
                // implicit one of a multi-statement query: set the path first, on its own.
                match in_db
                    .batch_execute(&format!("SET search_path = {search_path}"))
                    .await
                {
                    Ok(()) => in_db.batch_execute(&sql).await,
                    Err(e) => Err(e),
                }
            };
            if let Err(e) = result {
                let _ = in_db.batch_execute("ROLLBACK").await;
                let done = if applied.is_empty() {
                    "nothing was repaired".to_string()
                } else {
                    format!("already repaired (and recorded): {}", applied.join("; "))
                };
                return Err(ControlError::Invalid(format!(
                    "repairing tenant {key:?} failed at {object}: {}; {done}",
                    pgfleet_pg::describe(&e)
                )));
            }
            events::record(
                &self.catalog(),
                Some(&t.id),
                Some(key),
                "tenant.correction",
                serde_json::json!({
                    "object": object,
                    "action": "repair",
                    "statement": sql,
                    "duration_ms": started.elapsed().as_millis() as u64,
                    "reason": reason,
                }),
            )
            .await?;
            metrics::counter!("pgfleet_corrections_total").increment(1);
            applied.push(object);
        }
        if !applied.is_empty() {
            // New tables need the role's privileges.
            let schemas = match t.mode {
                Mode::Database => crate::provision::user_schemas(&in_db).await?,
                Mode::Schema => vec![t.schema.clone()],
            };
            crate::provision::grant_dml(&in_db, &schemas, &t.role).await?;
        }
        let remaining = self.check(key).await?;
        Ok(Repair { applied, remaining })
    }

    /// One tenant end to end: placement, state, login as its own role, version, drift, events.
    /// Healthy when every finding is ok.
    ///
    /// # Errors
    /// Unknown tenant or catalog errors (problems with the tenant itself are findings).
    pub async fn check_user(
        &self,
        key: &str,
    ) -> Result<(Tenant, Vec<Finding>, Vec<events::Event>), ControlError> {
        let t = self.tenant(key).await?;
        let mut out = Vec::new();
        out.push(finding(
            "placement",
            t.server.is_some(),
            match &t.server {
                Some(s) => format!(
                    "{} {} on server {s}",
                    t.mode,
                    if t.mode == Mode::Schema {
                        format!("{}/{}", t.database, t.schema)
                    } else {
                        t.database.clone()
                    }
                ),
                None => "not placed yet".into(),
            },
        ));
        out.push(finding(
            "state",
            t.state == State::Ready,
            format!(
                "{}{}{}",
                t.state,
                if t.state == State::Ready {
                    String::new()
                } else {
                    format!(" at step {}", t.step)
                },
                t.last_error
                    .as_deref()
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            ),
        ));
        if t.server.is_some() {
            match self.credentials(key).await {
                Ok(url) => {
                    let login = async {
                        let c = connect::connect(&connect::parse_url(url.expose())?).await?;
                        let row = c
                            .query_one("SELECT current_user::text, array_to_string(current_schemas(false), ',')", &[])
                            .await
                            .map_err(|e| PgError::query("querying as the tenant", e))?;
                        Ok::<(String, String), ControlError>((row.get(0), row.get(1)))
                    };
                    let started = Instant::now();
                    match login.await {
                        Ok((user, schemas)) => out.push(finding(
                            "login",
                            user == t.role,
                            format!(
                                "as {user} in {} ms; search_path schemas: {schemas}",
                                started.elapsed().as_millis()
                            ),
                        )),
                        Err(e) => out.push(finding("login", false, e.to_string())),
                    }
                }
                Err(e) => out.push(finding("login", false, e.to_string())),
            }
            let target = self.target().await?;
            out.push(finding(
                "version",
                t.schema_version.as_deref() == Some(target.version.as_str()),
                format!(
                    "at {}, target {}",
                    t.schema_version.as_deref().unwrap_or("none"),
                    target.version
                ),
            ));
            match self.check(key).await {
                Ok(d) if d.is_clean() => out.push(finding("drift", true, "none: the tenant matches the target")),
                Ok(d) => out.push(finding(
                    "drift",
                    false,
                    format!(
                        "{} difference(s), {} repairable with `pgfleet check --tenant KEY --fix`: {}",
                        d.steps.len(),
                        d.steps.len() - d.unrepairable(),
                        d.steps.iter().map(|s| s.description.as_str()).collect::<Vec<_>>().join("; ")
                    ),
                )),
                Err(e) => out.push(finding("drift", false, e.to_string())),
            }
        }
        let evs = events::of_tenant(&self.catalog(), &t.id, 10).await?;
        Ok((t, out, evs))
    }

    /// The whole installation: catalog, master key, target, every server (reachable, rights,
    /// extensions, capacity), failed tenants.
    ///
    /// # Errors
    /// Only when the catalog cannot be read (everything else is a finding).
    pub async fn validate(&self) -> Result<Vec<Finding>, ControlError> {
        let mut out = vec![finding(
            "catalog",
            true,
            format!(
                "{} at the current version",
                connect::redact(&self.config().catalog_url)
            ),
        )];
        match self.config().master_key() {
            Ok(k) => match self.check_master_key().await {
                Ok(()) => out.push(finding(
                    "master key",
                    true,
                    format!("key id {}, opens every sealed secret", k.id()),
                )),
                Err(e) => out.push(finding("master key", false, e.to_string())),
            },
            Err(e) => out.push(finding("master key", false, e.to_string())),
        }
        let target = crate::catalog::current_target(&self.catalog()).await?;
        out.push(match &target {
            Some(t) => finding(
                "target",
                true,
                format!(
                    "version {} ({} migrations)",
                    t.version,
                    t.dir.migrations.len()
                ),
            ),
            None => finding(
                "target",
                false,
                "none recorded: run `pgfleet init --migrations DIR`",
            ),
        });
        let needs_vector = target.as_ref().is_some_and(|t| {
            t.dir.migrations.iter().any(|m| {
                let l = m.sql.to_ascii_lowercase();
                l.contains("create extension") && l.contains("vector")
            })
        });
        let servers = self.servers().await?;
        if servers.is_empty() {
            out.push(finding(
                "servers",
                false,
                "none: add one with `pgfleet server add NAME --url URL`",
            ));
        }
        for s in &servers {
            let check = match self.config().master_key() {
                Ok(k) => match crate::server::admin_url(&self.catalog(), k, &s.name).await {
                    Ok(url) => crate::server::check_server(url.expose(), needs_vector).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e.into()),
            };
            match check {
                Ok(c) if c.problems.is_empty() => out.push(finding(
                    format!("server {}", s.name),
                    true,
                    format!(
                        "PostgreSQL {}, {} tenants of {}, {}",
                        c.version, s.tenants, s.capacity, s.state
                    ),
                )),
                Ok(c) => out.push(finding(
                    format!("server {}", s.name),
                    false,
                    c.problems.join("; "),
                )),
                Err(e) => out.push(finding(format!("server {}", s.name), false, e.to_string())),
            }
        }
        let failed = self.tenants(Some(State::Failed)).await?;
        out.push(finding(
            "tenants",
            failed.is_empty(),
            if failed.is_empty() {
                format!("{} tenant(s), none failed", self.tenants(None).await?.len())
            } else {
                format!(
                    "{} failed: {} (see `pgfleet tenant show KEY`; `pgfleet tenant create KEY` retries)",
                    failed.len(),
                    failed.iter().take(5).map(|t| format!("{:?}", t.key)).collect::<Vec<_>>().join(", ")
                )
            },
        ));
        Ok(out)
    }

    /// Re-creates one tenant's database (or schema) from the target: destructive, its data is lost.
    /// The role, password and catalog row stay.
    ///
    /// # Errors
    /// Unknown or unplaced tenant, unreachable server, provisioning errors.
    pub async fn reset_tenant(
        &self,
        key: &str,
        timeout: std::time::Duration,
    ) -> Result<Tenant, ControlError> {
        let t = self.tenant(key).await?;
        if t.server.is_some() {
            let admin = self.admin(&t, None).await?;
            match t.mode {
                Mode::Database => admin
                    .batch_execute(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        pgfleet_schema::quote::ident(&t.database)
                    ))
                    .await
                    .map_err(|e| PgError::query("dropping the tenant's database", e))?,
                Mode::Schema => {
                    let in_db = self.admin(&t, Some(&t.database)).await?;
                    in_db
                        .batch_execute(&format!(
                            "DROP SCHEMA IF EXISTS {} CASCADE",
                            pgfleet_schema::quote::ident(&t.schema)
                        ))
                        .await
                        .map_err(|e| PgError::query("dropping the tenant's schema", e))?;
                    in_db
                        .execute(
                            "DELETE FROM pgfleet_migrate.history WHERE scope = $1",
                            &[&t.schema],
                        )
                        .await
                        .ok();
                }
            }
        }
        let c = self.catalog();
        c.execute(
            "UPDATE pgfleet.tenants SET state = 'provisioning', step = CASE WHEN server IS NULL THEN 'place' ELSE 'role' END,
                    schema_version = NULL, last_error = NULL, updated_at = now() WHERE id = $1",
            &[&t.id],
        )
        .await
        .map_err(|e| PgError::query("resetting the tenant", e))?;
        c.execute(
            "INSERT INTO pgfleet.operations (kind, tenant_id, idempotency_key) VALUES ('provision', $1, $2)
             ON CONFLICT (idempotency_key) DO UPDATE SET state = 'queued', attempts = 0, not_before = now(), lease_owner = NULL, finished_at = NULL",
            &[&t.id, &format!("provision:{}", t.id)],
        )
        .await
        .map_err(|e| PgError::query("queueing the reset", e))?;
        events::record(
            &c,
            Some(&t.id),
            Some(key),
            "tenant.reset",
            serde_json::json!({"server": t.server, "database": t.database, "schema": t.schema}),
        )
        .await?;
        self.wait_ready(key, timeout).await
    }
}

fn drift(t: &Tenant, full: &Plan, additive: &Plan, target: String) -> Drift {
    let repairable: std::collections::BTreeSet<&str> =
        additive.steps.iter().map(|s| s.sql.as_str()).collect();
    Drift {
        key: t.key.clone(),
        target,
        behind: None,
        steps: full
            .steps
            .iter()
            .map(|s| DriftStep {
                description: s.description.clone(),
                sql: s.sql.clone(),
                hazards: s.hazards.clone(),
                repairable: repairable.contains(s.sql.as_str())
                    && !s.hazards.contains(&Hazard::DataLoss),
                destructive: s.hazards.contains(&Hazard::DataLoss),
            })
            .collect(),
    }
}

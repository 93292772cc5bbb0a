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
use crate::security::SecurityFinding;
use crate::tenant::{Mode, State, Tenant};
use crate::{Control, ControlError, events, q};

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
    /// What the tenant's role holds that it must not (critical), and objects not handed to the
    /// fleet's owner role yet (see [`crate::security`]).
    pub security: Vec<SecurityFinding>,
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
    /// No difference, nothing the role must not hold, and not behind the current target.
    pub fn is_clean(&self) -> bool {
        self.steps.is_empty() && self.security.is_empty() && self.behind.is_none()
    }

    /// Behind the current target: pending migrations (`migrate --all`), not drift.
    pub fn is_behind(&self) -> bool {
        self.behind.is_some()
    }

    /// Critical security findings: the tenant can, or could, act beyond its own role.
    pub fn critical(&self) -> usize {
        self.security.iter().filter(|f| f.critical).count()
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
    /// target's terms, the target they were computed for, and the security findings.
    async fn plans(
        &self,
        t: &Tenant,
    ) -> Result<(Plan, Plan, Target, Vec<SecurityFinding>), ControlError> {
        let (target, _) = self.target_for(t).await?;
        // Schema tenants of one shared database reuse connections (a fleet check reads thousands).
        let in_db = self.pooled_admin(t, Some(&t.database)).await?;
        let (live, desired) = self.models_in_target_terms(t, &target, &in_db).await?;
        let expected = self.target_model(t, &target).await?;
        let security = self.security_findings(t, &in_db, &expected).await?;
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
        Ok((full, additive, target, security))
    }

    /// Drift of tenant `key` against the target.
    ///
    /// # Errors
    /// Unknown tenant, unreachable server.
    pub async fn check(&self, key: &str) -> Result<Drift, ControlError> {
        let t = self.tenant(key).await?;
        let (full, additive, target, security) = self.plans(&t).await?;
        let mut d = drift(&t, &full, &additive, target.version.clone());
        d.security = security;
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

    /// Repairs tenant `key`: first takes away what its role must not hold and the triggers that are
    /// not the target's ([`Control::secure`], as the admin), then applies the additive part of its
    /// drift as the fleet's owner role, in one transaction when every step allows one, and restores
    /// its role's access (the role itself, when it was dropped behind pgfleet's back). Every change
    /// is recorded as a correction. Returns what is left.
    ///
    /// # Errors
    /// Unknown tenant, unreachable server, a repair statement that fails (the error names it; a
    /// repair in one transaction leaves nothing half-done).
    pub async fn fix(&self, key: &str, reason: &str) -> Result<Repair, ControlError> {
        let t = self.tenant(key).await?;
        let (target, _) = self.target_for(&t).await?;
        let desired = self.target_model(&t, &target).await?;
        let mut applied = self.restore_access(&t, reason).await?;
        let (_, mut additive, _, security) = self.plans(&t).await?;
        if !security.is_empty() {
            let secured = self.secure(&t, &desired, reason).await?;
            if !secured.is_empty() {
                // Triggers it dropped, objects it handed over: the repair plan is read again.
                additive = self.plans(&t).await?.1;
                applied.extend(secured);
            }
        }
        let names = pgfleet_migrate::generate::public_object_names(&desired);
        let server = t.server.clone().unwrap_or_default();
        let search_path = match t.mode {
            Mode::Database => "public".to_string(),
            Mode::Schema => format!("{}, public", pgfleet_schema::quote::ident(&t.schema)),
        };
        if !additive.is_empty() {
            if additive.steps.iter().any(|s| s.sql.contains(" EXTENSION ")) {
                // Extensions are the admin's; the steps below then find them.
                let in_db = self.admin(&t, Some(&t.database)).await?;
                let schema = (t.mode == Mode::Schema).then_some("public");
                crate::extensions::create(&in_db, &target, schema).await?;
            }
            // The target's SQL runs as the fleet's owner role, never as the admin.
            let as_owner = self.owner_connection(&server, &t.database).await?;
            let steps: Vec<(String, String, bool)> = additive
                .steps
                .iter()
                .map(|step| {
                    let sql = pgfleet_migrate::generate::unqualify_public(&step.sql, &names);
                    let sql = pgfleet_migrate::migrator::executable(&sql, true).into_owned();
                    // Named as the tenant sees them: a schema tenant's objects live in its schema.
                    let object = match t.mode {
                        Mode::Schema => step
                            .description
                            .replace("public.", &format!("{}.", t.schema)),
                        Mode::Database => step.description.clone(),
                    };
                    (object, sql, step.transactional)
                })
                .collect();
            let started = Instant::now();
            let repaired = if steps.iter().all(|(_, _, tx)| *tx) {
                // All or nothing: a step that fails leaves no half-repaired tenant behind.
                let body: String = steps
                    .iter()
                    .map(|(_, sql, _)| format!("{sql};\n"))
                    .collect();
                match as_owner
                    .batch_execute(&format!(
                        "BEGIN; SET LOCAL search_path = {search_path};\n{body}COMMIT;"
                    ))
                    .await
                {
                    Ok(()) => steps
                        .iter()
                        .map(|(o, sql, _)| (o.clone(), sql.clone(), started.elapsed()))
                        .collect(),
                    Err(e) => {
                        let _ = as_owner.batch_execute("ROLLBACK").await;
                        return Err(repair_failed(key, &steps, e, &[]));
                    }
                }
            } else {
                // CREATE INDEX CONCURRENTLY and friends refuse any transaction block, including
                // the implicit one of a multi-statement query: one by one, the path set first.
                as_owner
                    .batch_execute(&format!("SET search_path = {search_path}"))
                    .await
                    .map_err(q("setting the tenant's search_path"))?;
                let mut done = Vec::new();
                for (object, sql, _) in &steps {
                    let one = Instant::now();
                    if let Err(e) = as_owner.batch_execute(sql).await {
                        let _ = as_owner.batch_execute("ROLLBACK").await;
                        let names: Vec<String> = done
                            .iter()
                            .map(|(o, _, _): &(String, String, std::time::Duration)| o.clone())
                            .collect();
                        self.record_corrections(&t, &done, reason).await?;
                        return Err(repair_failed(key, &steps, e, &names));
                    }
                    done.push((object.clone(), sql.clone(), one.elapsed()));
                }
                done
            };
            self.record_corrections(&t, &repaired, reason).await?;
            applied.extend(repaired.into_iter().map(|(o, _, _)| o));
            if t.mode == Mode::Schema {
                self.put_owner_connection(&server, &t.database, as_owner);
            }
            // New tables need the role's privileges.
            let in_db = self.admin(&t, Some(&t.database)).await?;
            let schemas = match t.mode {
                Mode::Database => crate::ddl::user_schemas(&in_db).await?,
                Mode::Schema => vec![t.schema.clone()],
            };
            let owner = self.owner(&server).await?.role;
            crate::ddl::grant_dml(&in_db, &schemas, &t.role, &owner).await?;
        }
        if !applied.is_empty() {
            crate::cache_bus::schema_changed(&self.catalog(), &t.id).await;
        }
        let remaining = self.check(key).await?;
        Ok(Repair { applied, remaining })
    }

    async fn record_corrections(
        &self,
        t: &Tenant,
        done: &[(String, String, std::time::Duration)],
        reason: &str,
    ) -> Result<(), ControlError> {
        for (object, sql, took) in done {
            events::record(
                &self.catalog(),
                Some(&t.id),
                Some(&t.key),
                "tenant.correction",
                serde_json::json!({
                    "object": object,
                    "action": "repair",
                    "statement": sql,
                    "duration_ms": took.as_millis() as u64,
                    "reason": reason,
                }),
            )
            .await?;
            metrics::counter!("pgfleet_corrections_total").increment(1);
        }
        Ok(())
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
                Ok(d) => {
                    out.push(finding(
                        "security",
                        d.critical() == 0,
                        if d.security.is_empty() {
                            "its role holds nothing it must not; the fleet's owner role owns its objects".to_string()
                        } else {
                            d.security
                                .iter()
                                .map(|f| format!("{}{} ({})", if f.critical { "CRITICAL: " } else { "" }, f.what, f.fix))
                                .collect::<Vec<_>>()
                                .join("; ")
                        },
                    ));
                    if d.steps.is_empty() {
                        out.push(finding(
                            "drift",
                            true,
                            "none: the tenant matches the target",
                        ));
                    } else {
                        out.push(drift_finding(&d));
                    }
                }
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
        out.push(match crate::catalog::public_rights(&self.catalog()).await {
            Ok(rights) if rights.is_empty() => finding(
                "catalog access",
                true,
                "closed to PUBLIC: tenant roles cannot connect to the catalog database",
            ),
            Ok(rights) => finding(
                "catalog access",
                false,
                format!(
                    "PUBLIC holds {} on the catalog database: any role of its server (tenant roles too) may connect and listen to the fleet's announcements; run `pgfleet init` (as the database's owner) or `REVOKE ALL ON DATABASE … FROM PUBLIC`",
                    rights.join(", ")
                ),
            ),
            Err(e) => finding("catalog access", false, e.to_string()),
        });
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
        for s in &servers {
            // An unreachable server was reported above.
            if out
                .iter()
                .any(|f| f.check == format!("server {}", s.name) && f.ok)
            {
                out.push(self.validate_roles(&s.name).await);
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

    /// The `roles` finding of one server: tenant roles (and the fleet's owner role) with a
    /// server-level attribute or a membership they must not have (critical).
    async fn validate_roles(&self, server: &str) -> Finding {
        let check = format!("roles on {server}");
        let result = async {
            let roles = crate::catalog::tenants::roles_of_server(&*self.catalog(), server).await?;
            let config = self.server_admin_config(server).await?;
            let admin = connect::connect(&config).await?;
            let rows = admin
                .query(
                    "SELECT r.rolname::text,
                            concat_ws(', ', CASE WHEN r.rolsuper THEN 'SUPERUSER' END, CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END,
                                      CASE WHEN r.rolcreatedb THEN 'CREATEDB' END, CASE WHEN r.rolreplication THEN 'REPLICATION' END,
                                      CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END,
                                      (SELECT 'member of ' || string_agg(g.rolname, ', ') FROM pg_catalog.pg_auth_members m
                                       JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
                                       WHERE m.member = r.oid AND g.rolname <> $2))
                     FROM pg_catalog.pg_roles r
                     WHERE r.rolname = ANY($1)
                       AND (r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls
                            OR EXISTS (SELECT FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
                                       WHERE m.member = r.oid AND g.rolname <> $2))
                     ORDER BY 1",
                    &[&roles, &crate::tenant::SHARED_GROUP_ROLE],
                )
                .await
                .map_err(q("reading the server's tenant roles"))?;
            Ok::<_, ControlError>((roles.len(), rows))
        }
        .await;
        match result {
            Ok((n, rows)) if rows.is_empty() => finding(
                check,
                true,
                format!(
                    "{n} role(s) of the fleet: none with a server-level right or a membership it must not have"
                ),
            ),
            Ok((_, rows)) => finding(
                check,
                false,
                format!(
                    "CRITICAL: {}; `pgfleet check --all --fix` takes it away (for a tenant role)",
                    rows.iter()
                        .map(|r| format!("{} has {}", r.get::<_, String>(0), r.get::<_, String>(1)))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ),
            Err(e) => finding(check, false, e.to_string()),
        }
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
        crate::cache_bus::schema_changed(&c, &t.id).await;
        crate::catalog::tenants::reset(&*c, &t.id).await?;
        crate::catalog::operations::requeue_provision(&*c, &t.id).await?;
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

/// The `drift` finding of `check-user` for a tenant that differs from the target.
fn drift_finding(d: &Drift) -> Finding {
    finding(
        "drift",
        false,
        format!(
            "{} difference(s), {} repairable with `pgfleet check --tenant KEY --fix`: {}",
            d.steps.len(),
            d.steps.len() - d.unrepairable(),
            d.steps
                .iter()
                .map(|s| s.description.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ),
    )
}

/// The error of a repair step that failed: which, why, what to do, and what was repaired before it.
fn repair_failed(
    key: &str,
    steps: &[(String, String, bool)],
    e: tokio_postgres::Error,
    done: &[String],
) -> ControlError {
    let message = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    // In one transaction, PostgreSQL's error names the statement by its position only: find the
    // step by the object named in the message when it can.
    let failed = steps
        .iter()
        .find(|(_, sql, _)| {
            e.as_db_error().and_then(|d| d.position()).is_none()
                && message.split('"').nth(1).is_some_and(|n| sql.contains(n))
        })
        .or(steps.get(done.len()))
        .map(|(o, _, _)| o.as_str())
        .unwrap_or("a repair step");
    let taken = e
        .as_db_error()
        .is_some_and(|d| matches!(d.code().code(), "42P07" | "42710"));
    let hint = if taken {
        "; another object already has a name the target needs: was a table renamed? Rename or drop that object (e.g. `ALTER INDEX … RENAME TO …`), then run the repair again"
    } else {
        ""
    };
    let done = if done.is_empty() {
        "nothing was repaired".to_string()
    } else {
        format!("already repaired (and recorded): {}", done.join("; "))
    };
    ControlError::RepairFailed {
        key: key.into(),
        object: failed.into(),
        hint,
        done,
        cause: Box::new(pgfleet_pg::PgError::query("the repair statement", e)),
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
                // Triggers that are not the target's are dropped by the repair (`secure`).
                repairable: (repairable.contains(s.sql.as_str())
                    || s.sql.starts_with("DROP TRIGGER "))
                    && !s.hazards.contains(&Hazard::DataLoss),
                destructive: s.hazards.contains(&Hazard::DataLoss),
            })
            .collect(),
        security: Vec::new(),
    }
}

//! Tenant containment: what a tenant's role must never hold, how pgfleet finds it, and how it
//! takes it away.
//!
//! Tenant SQL is untrusted. A tenant's role runs DML on its own objects and nothing else; in
//! particular it can attach **no code** that another session would run: no `TRIGGER` privilege
//! (a trigger fires in the session of whoever writes the table), no `TEMPORARY` (functions in
//! `pg_temp` a trigger could call), no `CREATE` in any schema or database (objects that another
//! session's `search_path` could resolve), no ownership of anything, no membership of other roles
//! (but the group role of schema tenants), no role settings, and none of the server-level
//! attributes (`SUPERUSER`, `CREATEROLE`, `CREATEDB`, `REPLICATION`, `BYPASSRLS`). On top of that,
//! the work pgfleet does on tenant objects runs as the fleet's owner role (see [`crate::owner`]),
//! never as the server's admin, so a vector nobody thought of still cannot reach the server.
//!
//! - [`Control::security_findings`] reports every departure (`check`, `check-user`): critical
//!   ones (server-level attributes, memberships, triggers that are not in the target, ownership,
//!   `TRIGGER`/`TEMPORARY`/`CREATE`) and the objects not handed to the owner role yet.
//! - [`Control::secure`] closes them in one transaction on the tenant's database, as the admin
//!   (it runs no tenant-reachable code: it locks, revokes, drops triggers and changes owners), and
//!   records each change as a `tenant.correction` event. `check --fix`, healing and `migrate
//!   --all` run it before they touch a tenant that needs it; fleets provisioned by older pgfleet
//!   versions (which granted `TRIGGER` and `TEMPORARY`) are repaired that way.
//!
//! Triggers a tenant attached while it could are found by comparing every trigger on its
//! relations with the target model of its version (name and definition); they are dropped under a
//! `SHARE ROW EXCLUSIVE` lock on its tables taken before `TRIGGER` is revoked, so a `CREATE TRIGGER`
//! racing with the repair either finishes first (and is seen and dropped) or waits for the lock and
//! then finds the privilege gone.

use std::collections::BTreeMap;

use pgfleet_schema::Model;
use pgfleet_schema::quote::{ident, literal};
use serde::Serialize;
use tokio_postgres::Client;

use crate::tenant::{Mode, SHARED_GROUP_ROLE, Tenant};
use crate::{Control, ControlError, events, q};

/// How long [`Control::secure`] waits for a tenant's own transactions before it gives up.
const LOCK_TIMEOUT: &str = "30s";

/// One departure from what a tenant's role may hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecurityFinding {
    /// Critical: the tenant can (or could) run code with more privilege than its own role, or
    /// has such privilege already.
    pub critical: bool,
    /// What was found.
    pub what: String,
    /// What repairs it.
    pub fix: String,
}

impl SecurityFinding {
    fn critical(what: impl Into<String>) -> Self {
        Self {
            critical: true,
            what: what.into(),
            fix: "`pgfleet check --tenant KEY --fix` (or the next `migrate --all`) takes it away"
                .into(),
        }
    }
}

/// What the findings query read.
#[derive(Debug, Default)]
struct Held {
    role_exists: bool,
    attributes: Vec<String>,
    member_of: Vec<String>,
    settings: Vec<String>,
    temporary: bool,
    create_database: bool,
    create_in: Vec<String>,
    trigger_on: Vec<String>,
    owns: i32,
}

/// A trigger on one of a tenant's relations.
#[derive(Debug, Clone)]
struct LiveTrigger {
    schema: String,
    relation: String,
    is_table: bool,
    name: String,
    definition: String,
    function_schema: String,
    function_name: String,
}

impl LiveTrigger {
    fn describe(&self) -> String {
        format!(
            "trigger {} on {}.{} (calls {}.{})",
            ident(&self.name),
            ident(&self.schema),
            ident(&self.relation),
            ident(&self.function_schema),
            ident(&self.function_name)
        )
    }
}

/// The tenant's schemas as the queries take them (`None`: every schema of its own database) and
/// the one role its role may be a member of.
fn scope(t: &Tenant) -> (Option<Vec<String>>, &'static str) {
    match t.mode {
        Mode::Database => (None, ""),
        Mode::Schema => (Some(vec![t.schema.clone()]), SHARED_GROUP_ROLE),
    }
}

async fn held(in_db: &Client, t: &Tenant) -> Result<Held, ControlError> {
    let (schemas, group) = scope(t);
    let r = in_db
        .query_one(
            include_str!("security/findings.sql"),
            &[&t.role, &schemas, &group],
        )
        .await
        .map_err(q("reading what the tenant's role holds"))?;
    Ok(Held {
        role_exists: r.get(0),
        attributes: r.get(1),
        member_of: r.get(2),
        settings: r.get(3),
        temporary: r.get::<_, Option<bool>>(4).unwrap_or(false),
        create_database: r.get::<_, Option<bool>>(5).unwrap_or(false),
        create_in: r.get(6),
        trigger_on: r.get(7),
        owns: r.get(8),
    })
}

/// `(kind, name)` of the tenant's objects the owner role does not own yet.
async fn not_owned(
    in_db: &Client,
    t: &Tenant,
    owner: &str,
) -> Result<Vec<(String, String)>, ControlError> {
    let (schemas, _) = scope(t);
    let rows = in_db
        .query(include_str!("security/not_owned.sql"), &[&schemas, &owner])
        .await
        .map_err(q("reading who owns the tenant's objects"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Every trigger on the tenant's relations, printed with an empty `search_path` (inside the
/// caller's transaction, which must be open: the setting is local to it).
async fn live_triggers(in_db: &Client, t: &Tenant) -> Result<Vec<LiveTrigger>, ControlError> {
    let (schemas, _) = scope(t);
    in_db
        .batch_execute("SET LOCAL search_path = ''")
        .await
        .map_err(q("reading the tenant's triggers"))?;
    let rows = in_db
        .query(include_str!("security/triggers.sql"), &[&schemas])
        .await
        .map_err(q("reading the tenant's triggers"))?;
    Ok(rows
        .iter()
        .map(|r| LiveTrigger {
            schema: r.get(0),
            relation: r.get(1),
            is_table: r.get(2),
            name: r.get(3),
            definition: r.get(4),
            function_schema: r.get(5),
            function_name: r.get(6),
        })
        .collect())
}

/// The triggers that are not the target's: on a table, one whose name or definition the target
/// model (of the tenant's version, in the target's terms) does not have; on a view or foreign
/// table (the model has no triggers there), one that calls no function of the target.
fn foreign_triggers(live: &[LiveTrigger], t: &Tenant, expected: &Model) -> Vec<LiveTrigger> {
    // A schema tenant's objects are named `<schema>.` where the target says `public.`.
    let in_target_terms = |s: &str| match t.mode {
        Mode::Schema => s.replace(&format!("{}.", t.schema), "public."),
        Mode::Database => s.to_string(),
    };
    let schema_in_target = |s: &str| match t.mode {
        Mode::Schema if s == t.schema => "public".to_string(),
        _ => s.to_string(),
    };
    let mut wanted: BTreeMap<(String, String, String), &str> = BTreeMap::new();
    for (name, table) in &expected.tables {
        for (trigger, def) in &table.triggers {
            wanted.insert(
                (name.schema.clone(), name.name.clone(), trigger.clone()),
                def.definition.as_str(),
            );
        }
    }
    live.iter()
        .filter(|tr| {
            let schema = schema_in_target(&tr.schema);
            if tr.is_table {
                wanted
                    .get(&(schema, tr.relation.clone(), tr.name.clone()))
                    .is_none_or(|def| *def != in_target_terms(&tr.definition))
            } else {
                let fschema = schema_in_target(&tr.function_schema);
                !expected
                    .functions
                    .keys()
                    .any(|f| f.name.schema == fschema && f.name.name == tr.function_name)
            }
        })
        .cloned()
        .collect()
}

fn findings_of(
    t: &Tenant,
    held: &Held,
    foreign: &[LiveTrigger],
    not_owned: &[(String, String)],
    owner: &str,
) -> Vec<SecurityFinding> {
    let mut out = Vec::new();
    if !held.role_exists {
        return out; // check-user reports a missing role (the login fails); nothing to contain
    }
    let role = &t.role;
    if !held.attributes.is_empty() {
        out.push(SecurityFinding::critical(format!(
            "role {role} has {}: it can act beyond its tenant",
            held.attributes.join(", ")
        )));
    }
    if !held.member_of.is_empty() {
        out.push(SecurityFinding::critical(format!(
            "role {role} is a member of {}: it holds their privileges",
            held.member_of.join(", ")
        )));
    }
    if !held.settings.is_empty() {
        out.push(SecurityFinding::critical(format!(
            "role {role} has settings of its own ({}): pgfleet sets none",
            held.settings.join("; ")
        )));
    }
    if !held.trigger_on.is_empty() {
        out.push(SecurityFinding::critical(format!(
            "role {role} may create triggers (TRIGGER) on {}: a trigger runs in the session of whoever writes the table",
            short_list(&held.trigger_on)
        )));
    }
    if held.temporary {
        out.push(SecurityFinding::critical(format!(
            "role {role} may create temporary objects in database {} (TEMPORARY): functions in pg_temp that a trigger could call",
            t.database
        )));
    }
    if held.create_database {
        out.push(SecurityFinding::critical(format!(
            "role {role} may create schemas in database {} (CREATE)",
            t.database
        )));
    }
    if !held.create_in.is_empty() {
        out.push(SecurityFinding::critical(format!(
            "role {role} may create objects in schema(s) {} (CREATE): other sessions could resolve them",
            short_list(&held.create_in)
        )));
    }
    if held.owns > 0 {
        out.push(SecurityFinding::critical(format!(
            "role {role} owns {} object(s) in database {}: an owner can change them and attach code",
            held.owns, t.database
        )));
    }
    for tr in foreign {
        out.push(SecurityFinding::critical(format!(
            "{} is not in the target: a tenant may have attached it",
            tr.describe()
        )));
    }
    if !not_owned.is_empty() {
        let names: Vec<String> = not_owned
            .iter()
            .map(|(k, n)| format!("{} {n}", k.to_lowercase()))
            .collect();
        out.push(SecurityFinding {
            critical: false,
            what: format!(
                "{} object(s) not owned by the fleet's owner role {owner} yet ({}): migrations and repairs run as that role",
                not_owned.len(),
                short_list(&names)
            ),
            fix: "`pgfleet check --tenant KEY --fix` (or the next `migrate --all`) hands them over"
                .into(),
        });
    }
    out
}

fn short_list(items: &[String]) -> String {
    if items.len() <= 5 {
        items.join(", ")
    } else {
        format!("{}, … ({} in all)", items[..5].join(", "), items.len())
    }
}

impl Control {
    /// Everything the tenant's role holds that it must not, and the objects the fleet's owner role
    /// does not own yet, read on an admin connection to the tenant's database. `expected` is the
    /// target model of the tenant's version (its triggers are the only ones allowed).
    ///
    /// # Errors
    /// Connection or query errors.
    pub async fn security_findings(
        &self,
        t: &Tenant,
        in_db: &Client,
        expected: &Model,
    ) -> Result<Vec<SecurityFinding>, ControlError> {
        let server = t.server.as_deref().unwrap_or_default();
        let owner = self.owner(server).await?.role;
        let held = held(in_db, t).await?;
        in_db
            .batch_execute("BEGIN READ ONLY")
            .await
            .map_err(q("reading the tenant's triggers"))?;
        let live = live_triggers(in_db, t).await;
        let _ = in_db.batch_execute("COMMIT").await;
        let foreign = foreign_triggers(&live?, t, expected);
        let not_owned = not_owned(in_db, t, &owner).await?;
        Ok(findings_of(t, &held, &foreign, &not_owned, &owner))
    }

    /// Which of `tenants` (all of one database) [`Control::secure`] has something to do for: one
    /// query on a connection to their database (any role may run it), for a whole chunk of schema
    /// tenants. Triggers are not compared with the target here: without `TRIGGER` privileges and
    /// ownership, a tenant cannot have attached any since it was secured. Returns their roles.
    ///
    /// # Errors
    /// Query errors.
    pub(crate) async fn needing_security(
        &self,
        in_db: &Client,
        tenants: &[&Tenant],
    ) -> Result<std::collections::HashSet<String>, ControlError> {
        let Some(first) = tenants.first() else {
            return Ok(Default::default());
        };
        let server = first.server.as_deref().unwrap_or_default();
        let owner = self.owner(server).await?.role;
        let roles: Vec<&str> = tenants.iter().map(|t| t.role.as_str()).collect();
        let schemas: Vec<Option<&str>> = tenants
            .iter()
            .map(|t| (t.mode == Mode::Schema).then_some(t.schema.as_str()))
            .collect();
        let group = if first.mode == Mode::Schema {
            SHARED_GROUP_ROLE
        } else {
            ""
        };
        let rows = in_db
            .query(
                include_str!("security/needs.sql"),
                &[&roles, &schemas, &owner, &group],
            )
            .await
            .map_err(q("reading what the tenants' roles hold"))?;
        Ok(rows
            .iter()
            .filter(|r| r.get::<_, Option<bool>>(1).unwrap_or(false))
            .map(|r| r.get(0))
            .collect())
    }

    /// Takes away from tenant `t` everything [`Control::security_findings`] reports, as the admin, in
    /// one transaction on its database: locks its tables when its role may still create triggers,
    /// revokes `TRIGGER`, `TEMPORARY` and `CREATE` (directly, from `PUBLIC`, and in default
    /// privileges), drops the triggers that are not the target's, strips server-level attributes,
    /// memberships and settings from its role, hands what its role owns and what the admin owns to
    /// the fleet's owner role. Each change is recorded as a `tenant.correction` event with `reason`.
    /// Returns the changes (empty: nothing to do).
    ///
    /// # Errors
    /// Connection errors; a lock not obtained within 30 s (a long transaction of the tenant's).
    pub async fn secure(
        &self,
        t: &Tenant,
        expected: &Model,
        reason: &str,
    ) -> Result<Vec<String>, ControlError> {
        let server = t.server.as_deref().unwrap_or_default();
        let owner = self.owner(server).await?.role;
        let in_db = self.admin(t, Some(&t.database)).await?;
        let result = self.secure_on(&in_db, t, expected, &owner).await;
        if result.is_err() {
            let _ = in_db.batch_execute("ROLLBACK").await;
        }
        let changes = result?;
        if !changes.is_empty() {
            // Privileges of the role and default privileges for objects the owner creates.
            let schemas = match t.mode {
                Mode::Database => crate::ddl::user_schemas(&in_db).await?,
                Mode::Schema => vec![t.schema.clone()],
            };
            crate::ddl::grant_dml(&in_db, &schemas, &t.role, &owner).await?;
        }
        for (object, statement) in &changes {
            events::record(
                &self.catalog(),
                Some(&t.id),
                Some(&t.key),
                "tenant.correction",
                serde_json::json!({
                    "object": object,
                    "action": "secure",
                    "statement": statement,
                    "reason": reason,
                }),
            )
            .await?;
            metrics::counter!("pgfleet_security_corrections_total").increment(1);
        }
        if !changes.is_empty() {
            tracing::warn!(
                tenant = %t.key,
                changes = changes.len(),
                "took privileges and code away from a tenant: {}",
                changes.iter().map(|(o, _)| o.as_str()).collect::<Vec<_>>().join("; ")
            );
        }
        Ok(changes.into_iter().map(|(o, _)| o).collect())
    }

    /// Gives tenant `t`'s role back what it needs to work: the role itself when it was dropped
    /// behind pgfleet's back (created again with its sealed password), `CONNECT` to its database,
    /// `USAGE` on its schemas, DML on its objects. Each change is recorded as a correction with
    /// `reason`. Returns the changes.
    ///
    /// # Errors
    /// Catalog or server errors; a master key that does not open the password.
    pub async fn restore_access(
        &self,
        t: &Tenant,
        reason: &str,
    ) -> Result<Vec<String>, ControlError> {
        let Some(server) = t.server.as_deref() else {
            return Ok(Vec::new());
        };
        let mut changes = Vec::new();
        let admin = self.pooled_admin(t, None).await?;
        let exists = admin
            .query_opt(
                "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
                &[&t.role],
            )
            .await
            .map_err(q("looking for the tenant's role"))?
            .is_some();
        if !exists {
            let Some(password) = self.tenant_password(t).await? else {
                return Ok(changes); // not that far yet: provisioning creates it
            };
            crate::ddl::ensure_role(&admin, &t.role, &password).await?;
            changes.push(format!("create role {} again (it was missing)", t.role));
        }
        self.pool_admin(t, None, admin);
        let owner = self.owner(server).await?.role;
        let in_db = self.pooled_admin(t, Some(&t.database)).await?;
        let (schemas, _) = scope(t);
        let row = in_db
            .query_one(
                "WITH scope_ns AS (
                     SELECT n.oid, n.nspname FROM pg_catalog.pg_namespace n
                     WHERE CASE WHEN $2::text[] IS NULL
                                THEN n.nspname !~ '^pg_' AND n.nspname NOT IN ('information_schema', 'pgfleet_migrate')
                                ELSE n.nspname = ANY ($2::text[]) END)
                 SELECT pg_catalog.has_database_privilege($1, pg_catalog.current_database(), 'CONNECT'),
                        NOT EXISTS (SELECT FROM scope_ns n WHERE NOT pg_catalog.has_schema_privilege($1, n.oid, 'USAGE'))
                        AND NOT EXISTS (
                            SELECT FROM scope_ns n
                            JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
                                 AND d.refobjid = n.oid AND d.refobjsubid = 0 AND d.deptype = 'n'
                                 AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                            JOIN pg_catalog.pg_class c ON c.oid = d.objid AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
                            WHERE NOT pg_catalog.has_table_privilege($1, c.oid, 'SELECT, INSERT, UPDATE, DELETE'))",
                &[&t.role, &schemas],
            )
            .await
            .map_err(q("reading the tenant role's access"))?;
        let (connect, dml): (bool, bool) = (row.get(0), row.get(1));
        if !connect {
            match t.mode {
                Mode::Database => {
                    let admin = self.pooled_admin(t, None).await?;
                    admin
                        .batch_execute(&crate::ddl::database_access_sql(
                            &t.database,
                            &t.role,
                            &owner,
                        ))
                        .await
                        .map_err(q("granting the tenant's role CONNECT"))?;
                    self.pool_admin(t, None, admin);
                }
                Mode::Schema => {
                    let sql = format!(
                        "BEGIN; {} {} COMMIT;",
                        crate::ddl::SHARED_ACL_LOCK_SQL,
                        crate::ddl::role_access_sql(&t.schema, &t.role)
                    );
                    if let Err(e) = in_db.batch_execute(&sql).await {
                        let _ = in_db.batch_execute("ROLLBACK").await;
                        return Err(pgfleet_pg::PgError::query(
                            "granting the tenant's role access",
                            e,
                        )
                        .into());
                    }
                }
            }
            changes.push(format!(
                "grant role {} access to database {}",
                t.role, t.database
            ));
        }
        if !dml || !connect {
            if t.mode == Mode::Database {
                in_db
                    .batch_execute(&format!(
                        "GRANT USAGE ON SCHEMA public TO {}",
                        ident(&t.role)
                    ))
                    .await
                    .map_err(q("granting the tenant's role access"))?;
            }
            let schemas = match t.mode {
                Mode::Database => crate::ddl::user_schemas(&in_db).await?,
                Mode::Schema => vec![t.schema.clone()],
            };
            crate::ddl::grant_dml(&in_db, &schemas, &t.role, &owner).await?;
            if !dml {
                changes.push(format!(
                    "grant role {} its privileges on its objects",
                    t.role
                ));
            }
        }
        self.pool_admin(t, Some(&t.database), in_db);
        for change in &changes {
            events::record(
                &self.catalog(),
                Some(&t.id),
                Some(&t.key),
                "tenant.correction",
                serde_json::json!({"object": change, "action": "restore_access", "reason": reason}),
            )
            .await?;
        }
        Ok(changes)
    }

    /// The transaction of [`Control::secure`]: `(what, statement)` of each change.
    async fn secure_on(
        &self,
        in_db: &Client,
        t: &Tenant,
        expected: &Model,
        owner: &str,
    ) -> Result<Vec<(String, String)>, ControlError> {
        let h = held(in_db, t).await?;
        if !h.role_exists {
            return Ok(Vec::new());
        }
        let role = ident(&t.role);
        let db = ident(&t.database);
        let mut changes: Vec<(String, String)> = Vec::new();
        let mut run = async |what: String, sql: String| -> Result<(), ControlError> {
            in_db
                .batch_execute(&sql)
                .await
                .map_err(|e| pgfleet_pg::PgError::query(format!("securing: {what}"), e))?;
            changes.push((what, sql));
            Ok(())
        };
        in_db
            .batch_execute(&format!(
                "BEGIN; SET LOCAL lock_timeout = {}",
                literal(LOCK_TIMEOUT)
            ))
            .await
            .map_err(q("securing the tenant"))?;
        if t.mode == Mode::Schema && (h.temporary || h.create_database) {
            // The shared database's ACL: one change at a time (see spares::SHARED_ACL_LOCK_SQL).
            in_db
                .batch_execute(crate::ddl::SHARED_ACL_LOCK_SQL)
                .await
                .map_err(q("securing the tenant"))?;
        }
        if !h.trigger_on.is_empty() {
            // First the lock: a CREATE TRIGGER under way finishes before it (and is seen below);
            // one that starts later waits for it and then finds TRIGGER revoked. Tables only: a
            // lock on a view locks what it reads with its owner's rights, and a trigger on a view
            // fires only when the view itself is written.
            let tables: Vec<String> = in_db
                .query(
                    "SELECT n FROM unnest($1::text[]) AS n
                     JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(n)
                     WHERE c.relkind IN ('r', 'p', 'f')",
                    &[&h.trigger_on],
                )
                .await
                .map_err(q("securing the tenant"))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if !tables.is_empty() {
                in_db
                    .batch_execute(&format!(
                        "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
                        tables.join(", ")
                    ))
                    .await
                    .map_err(q(
                        "locking the tenant's tables to take TRIGGER away (a long transaction of the tenant's holds them; try again later)",
                    ))?;
            }
            let tables = h.trigger_on.join(", ");
            run(
                format!("revoke TRIGGER on {}", short_list(&h.trigger_on)),
                format!("REVOKE TRIGGER ON TABLE {tables} FROM {role}, PUBLIC"),
            )
            .await?;
            // Default privileges that would grant it on the next table.
            let defaults = in_db
                .query(
                    "SELECT pg_catalog.format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I REVOKE TRIGGER ON TABLES FROM %I',
                                              r.rolname, n.nspname, $1::text)
                     FROM pg_catalog.pg_default_acl a
                     JOIN pg_catalog.pg_roles r ON r.oid = a.defaclrole
                     JOIN pg_catalog.pg_namespace n ON n.oid = a.defaclnamespace
                     WHERE a.defaclobjtype = 'r' AND pg_catalog.array_to_string(a.defaclacl, ',') ~ ('(^|,)' || $1::text || '=[a-zA-Z]*t')",
                    &[&t.role],
                )
                .await
                .map_err(q("reading default privileges"))?;
            for r in defaults {
                let sql: String = r.get(0);
                run("revoke TRIGGER from default privileges".into(), sql).await?;
            }
        }
        let group = match t.mode {
            Mode::Schema => format!(", {}", ident(SHARED_GROUP_ROLE)),
            Mode::Database => String::new(),
        };
        if h.temporary {
            run(
                format!("revoke TEMPORARY on database {}", t.database),
                format!("REVOKE TEMPORARY ON DATABASE {db} FROM {role}, PUBLIC{group}"),
            )
            .await?;
        }
        if h.create_database {
            run(
                format!("revoke CREATE on database {}", t.database),
                format!("REVOKE CREATE ON DATABASE {db} FROM {role}, PUBLIC{group}"),
            )
            .await?;
        }
        for s in &h.create_in {
            run(
                format!("revoke CREATE on schema {s}"),
                format!(
                    "REVOKE CREATE ON SCHEMA {} FROM {role}, PUBLIC{group}",
                    ident(s)
                ),
            )
            .await?;
        }
        // Under the lock (and after the revoke): the triggers that are not the target's.
        let live = live_triggers(in_db, t).await?;
        for tr in foreign_triggers(&live, t, expected) {
            run(
                format!("drop {} (not in the target)", tr.describe()),
                format!(
                    "DROP TRIGGER {} ON {}.{}",
                    ident(&tr.name),
                    ident(&tr.schema),
                    ident(&tr.relation)
                ),
            )
            .await?;
        }
        if !h.attributes.is_empty() {
            run(
                format!("remove {} from role {}", h.attributes.join(", "), t.role),
                format!(
                    "ALTER ROLE {role} NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS"
                ),
            )
            .await?;
        }
        for g in &h.member_of {
            run(
                format!("remove role {} from {g}", t.role),
                format!("REVOKE {} FROM {role}", ident(g)),
            )
            .await?;
        }
        if !h.settings.is_empty() {
            let per_database = in_db
                .query(
                    "SELECT d.datname::text FROM pg_catalog.pg_db_role_setting s
                     JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
                     JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase WHERE r.rolname = $1",
                    &[&t.role],
                )
                .await
                .map_err(q("reading the role's settings"))?;
            let mut sql = format!("ALTER ROLE {role} RESET ALL");
            for r in per_database {
                let d: String = r.get(0);
                sql.push_str(&format!(
                    "; ALTER ROLE {role} IN DATABASE {} RESET ALL",
                    ident(&d)
                ));
            }
            run(format!("reset the settings of role {}", t.role), sql).await?;
        }
        if h.owns > 0 {
            run(
                format!(
                    "hand the {} object(s) role {} owns to {owner}",
                    h.owns, t.role
                ),
                format!("REASSIGN OWNED BY {role} TO {}", ident(owner)),
            )
            .await?;
        }
        let unowned = not_owned(in_db, t, owner).await?;
        if !unowned.is_empty() {
            let sql = unowned
                .iter()
                .map(|(kind, name)| format!("ALTER {kind} {name} OWNER TO {}", ident(owner)))
                .collect::<Vec<_>>()
                .join("; ");
            let what = format!(
                "hand {} object(s) to the fleet's owner role {owner}",
                unowned.len()
            );
            in_db
                .batch_execute(&sql)
                .await
                .map_err(|e| pgfleet_pg::PgError::query(format!("securing: {what}"), e))?;
            changes.push((what, format!("ALTER … OWNER TO {}", ident(owner))));
        }
        in_db
            .batch_execute("COMMIT")
            .await
            .map_err(q("securing the tenant"))?;
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(mode: Mode) -> Tenant {
        Tenant {
            key: "k".into(),
            id: "t0123456789abcdef".into(),
            mode,
            state: crate::tenant::State::Ready,
            step: "ready".into(),
            server: Some("s".into()),
            database: "db".into(),
            schema: "t0123456789abcdef".into(),
            role: "pgfleet_t0123456789abcdef".into(),
            schema_version: None,
            last_error: None,
            created_at: String::new(),
            migrate_error: None,
            health: crate::tenant::Health::Unknown,
            health_checked_at: None,
            health_latency_ms: None,
            health_error: None,
        }
    }

    fn model_with_trigger(def: &str) -> Model {
        use pgfleet_schema::model::{QualName, Table, TableKind, Trigger};
        let mut triggers = BTreeMap::new();
        triggers.insert(
            "touch".to_string(),
            Trigger {
                definition: def.into(),
                enabled: "O".into(),
                comment: None,
            },
        );
        let mut m = Model::default();
        m.tables.insert(
            QualName::new("public", "users"),
            Table {
                kind: TableKind::Regular,
                unlogged: false,
                partition_key: None,
                partition_of: None,
                columns: BTreeMap::new(),
                constraints: BTreeMap::new(),
                indexes: BTreeMap::new(),
                triggers,
                policies: BTreeMap::new(),
                rls_enabled: false,
                rls_forced: false,
                comment: None,
            },
        );
        m
    }

    fn live(schema: &str, name: &str, def: &str, is_table: bool) -> LiveTrigger {
        LiveTrigger {
            schema: schema.into(),
            relation: "users".into(),
            is_table,
            name: name.into(),
            definition: def.into(),
            function_schema: "pg_temp_3".into(),
            function_name: "evil".into(),
        }
    }

    #[test]
    fn triggers_of_the_target_stay_and_others_are_foreign_in_both_modes() {
        let target_def = "CREATE TRIGGER touch BEFORE UPDATE ON public.users FOR EACH ROW EXECUTE FUNCTION public.touch()";
        let model = model_with_trigger(target_def);
        let db = tenant(Mode::Database);
        let ok = live("public", "touch", target_def, true);
        let extra = live(
            "public",
            "zz",
            "CREATE TRIGGER zz BEFORE UPDATE ON public.users FOR EACH STATEMENT EXECUTE FUNCTION pg_temp_3.evil()",
            true,
        );
        // Same name, other definition (CREATE OR REPLACE TRIGGER by a tenant).
        let replaced = live(
            "public",
            "touch",
            "CREATE TRIGGER touch BEFORE UPDATE ON public.users FOR EACH ROW EXECUTE FUNCTION pg_temp_3.evil()",
            true,
        );
        let foreign = foreign_triggers(&[ok.clone(), extra, replaced], &db, &model);
        assert_eq!(
            foreign
                .iter()
                .map(|t| t.definition.contains("evil"))
                .collect::<Vec<_>>(),
            vec![true, true]
        );
        let sch = tenant(Mode::Schema);
        let in_schema = live(
            &sch.schema,
            "touch",
            &target_def.replace("public.", &format!("{}.", sch.schema)),
            true,
        );
        assert!(foreign_triggers(&[in_schema], &sch, &model).is_empty());
        // A view trigger that calls no target function is foreign.
        let on_view = live("public", "v", "CREATE TRIGGER v INSTEAD OF …", false);
        assert_eq!(foreign_triggers(&[on_view], &db, &model).len(), 1);
    }

    #[test]
    fn every_kind_of_privilege_is_a_critical_finding() {
        let t = tenant(Mode::Schema);
        let held = Held {
            role_exists: true,
            attributes: vec!["SUPERUSER".into()],
            member_of: vec!["pg_read_server_files".into()],
            settings: vec!["everywhere: search_path=evil".into()],
            temporary: true,
            create_database: true,
            create_in: vec!["public".into()],
            trigger_on: vec!["t.users".into()],
            owns: 2,
        };
        let f = findings_of(&t, &held, &[], &[("TABLE".into(), "t.users".into())], "o");
        assert_eq!(f.iter().filter(|f| f.critical).count(), 8);
        assert_eq!(f.iter().filter(|f| !f.critical).count(), 1);
        let clean = Held {
            role_exists: true,
            ..Held::default()
        };
        assert!(findings_of(&t, &clean, &[], &[], "o").is_empty());
    }
}

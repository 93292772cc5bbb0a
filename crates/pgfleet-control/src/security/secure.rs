//! Taking away what a tenant's role must not hold, in one transaction on its database, and giving
//! its role back what it needs (`restore_access`).

use pgfleet_schema::Model;
use pgfleet_schema::quote::{ident, literal};
use tokio_postgres::Client;

use super::held::{Held, foreign_triggers, held, live_triggers, not_owned, scope, short_list};
use crate::tenant::{Mode, SHARED_GROUP_ROLE, Tenant};
use crate::{Control, ControlError, events, q};

/// How long [`Control::secure`] waits for a tenant's own transactions before it gives up.
const LOCK_TIMEOUT: &str = "30s";

impl Control {
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
        in_db
            .batch_execute(&format!(
                "BEGIN; SET LOCAL lock_timeout = {}",
                literal(LOCK_TIMEOUT)
            ))
            .await
            .map_err(q("securing the tenant"))?;
        if t.mode == Mode::Schema && (h.temporary || h.create_database) {
            // The shared database's ACL: one change at a time (see ddl::SHARED_ACL_LOCK_SQL).
            in_db
                .batch_execute(crate::ddl::SHARED_ACL_LOCK_SQL)
                .await
                .map_err(q("securing the tenant"))?;
        }
        let mut s = Securing {
            in_db,
            t,
            h: &h,
            changes: Vec::new(),
        };
        s.take_trigger().await?;
        s.take_database_rights().await?;
        // Under the lock (and after the revoke): the triggers that are not the target's.
        s.drop_foreign_triggers(expected).await?;
        s.strip_role(owner).await?;
        s.hand_over(owner).await?;
        let changes = s.changes;
        in_db
            .batch_execute("COMMIT")
            .await
            .map_err(q("securing the tenant"))?;
        Ok(changes)
    }
}

/// One tenant being secured, inside the transaction of [`Control::secure`]: what its role holds,
/// and the changes made so far (`(what, statement)`).
struct Securing<'a> {
    in_db: &'a Client,
    t: &'a Tenant,
    h: &'a Held,
    changes: Vec<(String, String)>,
}

impl Securing<'_> {
    async fn run(&mut self, what: String, sql: String) -> Result<(), ControlError> {
        self.in_db
            .batch_execute(&sql)
            .await
            .map_err(|e| pgfleet_pg::PgError::query(format!("securing: {what}"), e))?;
        self.changes.push((what, sql));
        Ok(())
    }

    fn role(&self) -> String {
        ident(&self.t.role)
    }

    /// `TRIGGER` on its relations and in default privileges, under a lock on its tables first: a
    /// `CREATE TRIGGER` under way finishes before the lock (and is seen afterwards); one that
    /// starts later waits for it and then finds the privilege gone. Tables only: a lock on a view
    /// locks what it reads with its owner's rights, and a trigger on a view fires only when the
    /// view itself is written.
    async fn take_trigger(&mut self) -> Result<(), ControlError> {
        let on = &self.h.trigger_on;
        if on.is_empty() {
            return Ok(());
        }
        let tables: Vec<String> = self
            .in_db
            .query(
                "SELECT n FROM unnest($1::text[]) AS n
                 JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(n)
                 WHERE c.relkind IN ('r', 'p', 'f')",
                &[on],
            )
            .await
            .map_err(q("securing the tenant"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !tables.is_empty() {
            self.in_db
                .batch_execute(&format!(
                    "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
                    tables.join(", ")
                ))
                .await
                .map_err(q(
                    "locking the tenant's tables to take TRIGGER away (a long transaction of the tenant's holds them; try again later)",
                ))?;
        }
        let role = self.role();
        self.run(
            format!("revoke TRIGGER on {}", short_list(on)),
            format!(
                "REVOKE TRIGGER ON TABLE {} FROM {role}, PUBLIC",
                on.join(", ")
            ),
        )
        .await?;
        // Default privileges that would grant it on the next table.
        let defaults = self
            .in_db
            .query(
                "SELECT pg_catalog.format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I REVOKE TRIGGER ON TABLES FROM %I',
                                          r.rolname, n.nspname, $1::text)
                 FROM pg_catalog.pg_default_acl a
                 JOIN pg_catalog.pg_roles r ON r.oid = a.defaclrole
                 JOIN pg_catalog.pg_namespace n ON n.oid = a.defaclnamespace
                 WHERE a.defaclobjtype = 'r' AND pg_catalog.array_to_string(a.defaclacl, ',') ~ ('(^|,)' || $1::text || '=[a-zA-Z]*t')",
                &[&self.t.role],
            )
            .await
            .map_err(q("reading default privileges"))?;
        for r in defaults {
            self.run("revoke TRIGGER from default privileges".into(), r.get(0))
                .await?;
        }
        Ok(())
    }

    /// `TEMPORARY` and `CREATE` on its database and `CREATE` on schemas, from its role, `PUBLIC`
    /// and the group of schema tenants.
    async fn take_database_rights(&mut self) -> Result<(), ControlError> {
        let (t, h) = (self.t, self.h);
        let (role, db) = (self.role(), ident(&t.database));
        let group = match t.mode {
            Mode::Schema => format!(", {}", ident(SHARED_GROUP_ROLE)),
            Mode::Database => String::new(),
        };
        if h.temporary {
            self.run(
                format!("revoke TEMPORARY on database {}", t.database),
                format!("REVOKE TEMPORARY ON DATABASE {db} FROM {role}, PUBLIC{group}"),
            )
            .await?;
        }
        if h.create_database {
            self.run(
                format!("revoke CREATE on database {}", t.database),
                format!("REVOKE CREATE ON DATABASE {db} FROM {role}, PUBLIC{group}"),
            )
            .await?;
        }
        for s in &h.create_in {
            self.run(
                format!("revoke CREATE on schema {s}"),
                format!(
                    "REVOKE CREATE ON SCHEMA {} FROM {role}, PUBLIC{group}",
                    ident(s)
                ),
            )
            .await?;
        }
        Ok(())
    }

    /// The triggers on its relations that are not the target's (see [`foreign_triggers`]).
    async fn drop_foreign_triggers(&mut self, expected: &Model) -> Result<(), ControlError> {
        let live = live_triggers(self.in_db, self.t).await?;
        for tr in foreign_triggers(&live, self.t, expected) {
            self.run(
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
        Ok(())
    }

    /// Its role's server-level attributes, memberships, settings and what it owns.
    async fn strip_role(&mut self, owner: &str) -> Result<(), ControlError> {
        let (t, h) = (self.t, self.h);
        let role = self.role();
        if !h.attributes.is_empty() {
            self.run(
                format!("remove {} from role {}", h.attributes.join(", "), t.role),
                format!(
                    "ALTER ROLE {role} NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS"
                ),
            )
            .await?;
        }
        for g in &h.member_of {
            self.run(
                format!("remove role {} from {g}", t.role),
                format!("REVOKE {} FROM {role}", ident(g)),
            )
            .await?;
        }
        if !h.settings.is_empty() {
            let per_database = self
                .in_db
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
            self.run(format!("reset the settings of role {}", t.role), sql)
                .await?;
        }
        if h.owns > 0 {
            self.run(
                format!(
                    "hand the {} object(s) role {} owns to {owner}",
                    h.owns, t.role
                ),
                format!("REASSIGN OWNED BY {role} TO {}", ident(owner)),
            )
            .await?;
        }
        Ok(())
    }

    /// Its objects the fleet's owner role does not own yet (fleets from before the owner role).
    async fn hand_over(&mut self, owner: &str) -> Result<(), ControlError> {
        let unowned = not_owned(self.in_db, self.t, owner).await?;
        if unowned.is_empty() {
            return Ok(());
        }
        let sql = unowned
            .iter()
            .map(|(kind, name)| format!("ALTER {kind} {name} OWNER TO {}", ident(owner)))
            .collect::<Vec<_>>()
            .join("; ");
        let what = format!(
            "hand {} object(s) to the fleet's owner role {owner}",
            unowned.len()
        );
        self.in_db
            .batch_execute(&sql)
            .await
            .map_err(|e| pgfleet_pg::PgError::query(format!("securing: {what}"), e))?;
        self.changes
            .push((what, format!("ALTER … OWNER TO {}", ident(owner))));
        Ok(())
    }
}

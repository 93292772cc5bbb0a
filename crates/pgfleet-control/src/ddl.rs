//! The DDL of tenants' roles, databases, schemas and privileges, in one place: what the admin
//! runs to create a tenant's home and let its role (and the fleet's owner role) in. It runs no
//! code of a tenant's or of the target's: creating roles and databases, grants, and schemas owned
//! by the owner role. Every name is quoted through `pgfleet_schema::quote`.
//!
//! | object | who may do what |
//! |---|---|
//! | a tenant's role | `LOGIN`, no server-level attribute, member of nothing but the schema tenants' group |
//! | a database tenant's database | no `PUBLIC` access; `CONNECT` for its role; `CONNECT, CREATE` for the owner role |
//! | its `public` schema | `USAGE` for its role; `USAGE, CREATE` for the owner role |
//! | the shared database of schema tenants | no `PUBLIC` access; `CONNECT` for the group and the owner role |
//! | a schema tenant's schema | owned by the owner role; `USAGE` for its role only |
//! | tables, sequences, functions | DML for the tenant's role (never `TRIGGER`), also by default privileges for what the owner role creates |

use std::time::Duration;

use pgfleet_pg::PgError;
use pgfleet_schema::quote::{ident, literal};
use tokio_postgres::Client;

use crate::catalog::Target;
use crate::secrets::Secret;
use crate::tenant;
use crate::{ControlError, q};

/// Serializes the statements that change the shared database's ACLs (its own, `public`'s) and
/// its extensions, inside a transaction: PostgreSQL refuses two at once ("tuple concurrently
/// updated"). The key is pgfleet's own (`lock::key("pgfleet-shared-acl", "")` spelled out).
pub(crate) const SHARED_ACL_LOCK_SQL: &str =
    "SELECT pg_advisory_xact_lock(hashtextextended('pgfleet-shared-acl', 0));";

/// SQL that creates a tenant (or spare) schema owned by the fleet's owner role, closed to
/// `PUBLIC`, with the target's extensions installed (by the admin) once in the shared `public`
/// schema.
pub(crate) fn prepare_schema_sql(schema: &str, owner: &str, target: &Target) -> String {
    let mut sql = format!(
        "REVOKE ALL ON SCHEMA public FROM PUBLIC; CREATE SCHEMA IF NOT EXISTS {s} AUTHORIZATION {o}; \
         REVOKE ALL ON SCHEMA {s} FROM PUBLIC;",
        s = ident(schema),
        o = ident(owner),
    );
    for mut ext in crate::extensions::created(target) {
        // Schema tenants share the extensions of the database: in `public`, once.
        ext.schema = Some("public".into());
        sql.push(' ');
        sql.push_str(&ext.to_sql());
        sql.push(';');
    }
    sql
}

/// SQL that lets a tenant's role into its schema, and into the shared database and its `public`
/// schema through membership of [`tenant::SHARED_GROUP_ROLE`], nothing more. Membership needs
/// `INHERIT`; on PostgreSQL 16+ it comes without `SET` (a tenant cannot act as the group, e.g. to
/// own a large object every other tenant could then reach). `USAGE` on `public` is granted to the
/// group here, with each tenant (one ACL entry however often it is granted).
pub(crate) fn role_access_sql(schema: &str, role: &str) -> String {
    let (r, g) = (ident(role), ident(tenant::SHARED_GROUP_ROLE));
    format!(
        "GRANT USAGE ON SCHEMA {s} TO {r}; GRANT USAGE ON SCHEMA public TO {g}; ALTER ROLE {r} INHERIT; \
         DO $$ BEGIN IF current_setting('server_version_num')::int >= 160000 THEN EXECUTE {with_options}; \
         ELSE EXECUTE {plain}; END IF; END $$;",
        s = ident(schema),
        with_options = literal(&format!("GRANT {g} TO {r} WITH INHERIT TRUE, SET FALSE")),
        plain = literal(&format!("GRANT {g} TO {r}")),
    )
}

pub(crate) async fn role_exists(admin: &Client, role: &str) -> Result<bool, ControlError> {
    Ok(admin
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .map_err(q("looking for the role"))?
        .is_some())
}

pub(crate) async fn database_exists(admin: &Client, db: &str) -> Result<bool, ControlError> {
    Ok(admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
        .await
        .map_err(q("looking for the database"))?
        .is_some())
}

/// Creates the login role, or sets its password again. The server only ever sees a SCRAM verifier
/// (with [`crate::secrets::SCRAM_ITERATIONS`]).
pub(crate) async fn ensure_role(
    admin: &Client,
    role: &str,
    password: &Secret,
) -> Result<(), ControlError> {
    let verifier = crate::secrets::scram_verifier(password, crate::secrets::SCRAM_ITERATIONS)?;
    let create = format!(
        "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS PASSWORD {}",
        ident(role),
        literal(&verifier)
    );
    match admin.batch_execute(&create).await {
        Ok(()) => return Ok(()),
        Err(e) if e.as_db_error().is_some_and(|d| d.code().code() == "42710") => {}
        Err(e) => return Err(PgError::query("creating the tenant's role", e).into()),
    }
    // It exists (a step that ran before a crash, or a rotation): set the password again.
    admin
        .batch_execute(&format!(
            "ALTER ROLE {} LOGIN PASSWORD {}",
            ident(role),
            literal(&verifier)
        ))
        .await
        .map_err(q("setting the tenant's password"))?;
    Ok(())
}

/// Runs `sql`, retrying while PostgreSQL says another session still uses a database (55006): a
/// connection that was just closed may take a moment to leave the server.
pub(crate) async fn retry_in_use(admin: &Client, sql: &str) -> Result<(), tokio_postgres::Error> {
    let mut pause = Duration::from_millis(20);
    for _ in 0..8 {
        match admin.batch_execute(sql).await {
            Err(e) if e.as_db_error().is_some_and(|d| d.code().code() == "55006") => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            other => return other,
        }
    }
    admin.batch_execute(sql).await
}

/// `CREATE DATABASE db TEMPLATE template` (default `template0`) unless it exists. Created meanwhile
/// by another worker counts as done: "already exists", or the unique index on `pg_database` when
/// both ran at the same moment. A template still in use by a closing session is waited for.
pub(crate) async fn create_database_if_missing(
    admin: &Client,
    db: &str,
    template: Option<&str>,
    context: &str,
) -> Result<(), ControlError> {
    if database_exists(admin, db).await? {
        return Ok(());
    }
    let sql = format!(
        "CREATE DATABASE {} TEMPLATE {}",
        ident(db),
        ident(template.unwrap_or("template0"))
    );
    match retry_in_use(admin, &sql).await {
        Ok(()) => Ok(()),
        Err(e)
            if e.as_db_error()
                .is_some_and(|d| matches!(d.code().code(), "42P04" | "23505")) =>
        {
            Ok(())
        }
        Err(e) => Err(PgError::query(context, e).into()),
    }
}

pub(crate) async fn create_database(
    admin: &Client,
    db: &str,
    role: &str,
    owner: &str,
    template: Option<&str>,
) -> Result<(), ControlError> {
    create_database_if_missing(admin, db, template, "creating the tenant's database").await?;
    admin
        .batch_execute(&database_access_sql(db, role, owner))
        .await
        .map_err(q("locking down the tenant's database"))?;
    Ok(())
}

/// A tenant's own database: nothing for `PUBLIC` (no `CONNECT`, no `TEMPORARY`), `CONNECT` (only)
/// for the tenant's role, `CONNECT` and `CREATE` for the fleet's owner role (it runs the migrations).
pub(crate) fn database_access_sql(db: &str, role: &str, owner: &str) -> String {
    format!(
        "REVOKE ALL ON DATABASE {db} FROM PUBLIC; REVOKE ALL ON DATABASE {db} FROM {role}; \
         GRANT CONNECT ON DATABASE {db} TO {role}; GRANT CONNECT, CREATE ON DATABASE {db} TO {owner}",
        db = ident(db),
        role = ident(role),
        owner = ident(owner)
    )
}

/// In a tenant's own database (or a template): nobody may create in `public` but the fleet's owner
/// role; the tenant's role may use it. The extensions the target creates are created here by the
/// admin ([`crate::extensions`]).
pub(crate) async fn lock_down_public(
    in_db: &Client,
    role: Option<&str>,
    owner: &str,
    target: &Target,
) -> Result<(), ControlError> {
    let mut sql = format!(
        "REVOKE ALL ON SCHEMA public FROM PUBLIC; GRANT USAGE, CREATE ON SCHEMA public TO {};",
        ident(owner)
    );
    if let Some(role) = role {
        sql.push_str(&format!(
            " GRANT USAGE ON SCHEMA public TO {};",
            ident(role)
        ));
    }
    in_db
        .batch_execute(&sql)
        .await
        .map_err(q("locking down the public schema"))?;
    crate::extensions::create(in_db, target, None).await
}

/// The shared database of schema-mode tenants on a server: no `PUBLIC` access, `CONNECT` (only)
/// for the group role of its tenants ([`tenant::SHARED_GROUP_ROLE`], created here) and for the
/// fleet's owner role; `public` holds the shared extensions and nobody but the admin may create in
/// it.
pub(crate) async fn ensure_shared_database(
    admin: &Client,
    db: &str,
    owner: &str,
) -> Result<(), ControlError> {
    create_database_if_missing(admin, db, None, "creating the shared tenant database").await?;
    let ready: bool = admin
        .query_one(
            "SELECT NOT EXISTS (SELECT FROM pg_catalog.pg_database d,
                                       pg_catalog.aclexplode(coalesce(d.datacl, pg_catalog.acldefault('d', d.datdba))) a
                                WHERE d.datname = $1 AND a.grantee = 0)
                    AND CASE WHEN EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = $2)
                             THEN pg_catalog.has_database_privilege($2, $1, 'CONNECT')
                                  AND NOT pg_catalog.has_database_privilege($2, $1, 'TEMPORARY')
                                  AND NOT pg_catalog.has_database_privilege($2, $1, 'CREATE') ELSE false END
                    AND pg_catalog.has_database_privilege($3, $1, 'CONNECT')",
            &[&db, &tenant::SHARED_GROUP_ROLE, &owner],
        )
        .await
        .map_err(q("reading the shared tenant database's privileges"))?
        .get(0);
    if !ready {
        // Once per database; concurrent ACL changes fail ("tuple concurrently updated"), so they
        // take turns. Two processes may race to create the group role: the loser finds it. Older
        // pgfleet versions granted the group TEMPORARY: taken away here.
        let sql = format!(
            "BEGIN; {lock} \
             DO $$ BEGIN CREATE ROLE {g} NOLOGIN; \
                   EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$; \
             REVOKE ALL ON DATABASE {db} FROM PUBLIC; REVOKE ALL ON DATABASE {db} FROM {g}; \
             GRANT CONNECT ON DATABASE {db} TO {g}; GRANT CONNECT ON DATABASE {db} TO {o}; COMMIT;",
            lock = crate::ddl::SHARED_ACL_LOCK_SQL,
            g = ident(tenant::SHARED_GROUP_ROLE),
            o = ident(owner),
            db = ident(db)
        );
        if let Err(e) = admin.batch_execute(&sql).await {
            let _ = admin.batch_execute("ROLLBACK").await;
            return Err(PgError::query("locking down the shared tenant database", e).into());
        }
    }
    Ok(())
}

/// Inside the shared database, as the admin: the migration history (shared by the schemas of every
/// fleet on the server, so the admin owns it) usable by the fleet's owner role, and `public` (where
/// the extensions live) usable by it.
pub(crate) async fn prepare_shared_database(
    in_db: &Client,
    owner: &str,
) -> Result<(), ControlError> {
    pgfleet_migrate::history::ensure(in_db).await?;
    let o = ident(owner);
    let sql = format!(
        "BEGIN; {lock} REVOKE ALL ON SCHEMA public FROM PUBLIC; GRANT USAGE ON SCHEMA public TO {o}; \
         GRANT USAGE ON SCHEMA pgfleet_migrate TO {o}; \
         GRANT SELECT, INSERT, UPDATE, DELETE ON pgfleet_migrate.history TO {o}; COMMIT;",
        lock = crate::ddl::SHARED_ACL_LOCK_SQL,
    );
    if let Err(e) = in_db.batch_execute(&sql).await {
        let _ = in_db.batch_execute("ROLLBACK").await;
        return Err(PgError::query("preparing the shared tenant database", e).into());
    }
    Ok(())
}

/// A schema-mode tenant: its schema (owned by the fleet's owner role), `USAGE` for its role only;
/// extensions the target creates are installed once in the shared `public` schema, so every tenant
/// schema uses them.
pub(crate) async fn create_tenant_schema(
    in_db: &Client,
    schema: &str,
    role: &str,
    owner: &str,
    target: &Target,
) -> Result<(), ControlError> {
    // GRANT/REVOKE on the shared database and `public`, and CREATE EXTENSION, fail with "tuple
    // concurrently updated" when two sessions run them at once: one at a time, under a lock.
    let sql = format!(
        "BEGIN; {} {} {} COMMIT;",
        crate::ddl::SHARED_ACL_LOCK_SQL,
        crate::ddl::prepare_schema_sql(schema, owner, target),
        crate::ddl::role_access_sql(schema, role)
    );
    if let Err(e) = in_db.batch_execute(&sql).await {
        let _ = in_db.batch_execute("ROLLBACK").await;
        return Err(PgError::query("creating the tenant's schema", e).into());
    }
    Ok(())
}

pub(crate) async fn user_schemas(in_db: &Client) -> Result<Vec<String>, ControlError> {
    let rows = in_db
        .query(
            "SELECT nspname::text FROM pg_catalog.pg_namespace n WHERE nspname !~ '^pg_' AND nspname NOT IN ('information_schema', 'pgfleet_migrate')
               AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.objid = n.oid AND d.deptype = 'e')",
            &[],
        )
        .await
        .map_err(q("listing schemas"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Table privileges of a tenant's role: DML, never `TRIGGER` (a trigger runs in the session of
/// whoever writes the table) and never DDL.
pub(crate) const TABLE_PRIVILEGES: &str = "SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES";

/// DML on everything in `schemas` (and on what the fleet's owner role `owner` creates there later,
/// through default privileges), never DDL, never `TRIGGER`.
///
/// The objects are named one by one, found through their dependency on their schema (`pg_depend`
/// is indexed by it): `GRANT … ON ALL TABLES IN SCHEMA` scans all of `pg_class`, about 120 ms per
/// statement beside 3,000 tenant schemas. Default privileges come first, so a table created
/// meanwhile is covered one way or the other.
pub(crate) async fn grant_dml(
    in_db: &Client,
    schemas: &[String],
    role: &str,
    owner: &str,
) -> Result<(), ControlError> {
    let (r, o) = (ident(role), ident(owner));
    let mut sql = String::new();
    for s in schemas {
        let s = ident(s);
        sql.push_str(&format!(
            "GRANT USAGE ON SCHEMA {s} TO {r}; \
             ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT {TABLE_PRIVILEGES} ON TABLES TO {r}; \
             ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {r}; "
        ));
    }
    in_db
        .batch_execute(&sql)
        .await
        .map_err(q("granting the tenant's role its privileges"))?;
    // Each object of the schemas, by what it is granted as.
    let rows = in_db
        .query(
            "SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, pg_catalog.format('%I.%I', n.nspname, c.relname)
             FROM pg_catalog.pg_namespace n
             JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.refobjid = n.oid AND d.refobjsubid = 0
                             AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'n'
             JOIN pg_catalog.pg_class c ON c.oid = d.objid AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
             WHERE n.nspname = ANY($1)
             UNION ALL
             SELECT 'ROUTINE', p.oid::pg_catalog.regprocedure::text
             FROM pg_catalog.pg_namespace n
             JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.refobjid = n.oid AND d.refobjsubid = 0
                             AND d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.deptype = 'n'
             JOIN pg_catalog.pg_proc p ON p.oid = d.objid AND p.prokind IN ('f', 'a', 'w')
             WHERE n.nspname = ANY($1)
             ORDER BY 1, 2",
            &[&schemas],
        )
        .await
        .map_err(q("listing the objects to grant on"))?;
    let mut by_kind: Vec<(String, Vec<String>)> = Vec::new();
    for row in &rows {
        let (kind, name): (String, String) = (row.get(0), row.get(1));
        match by_kind.last_mut() {
            Some((k, names)) if *k == kind => names.push(name),
            _ => by_kind.push((kind, vec![name])),
        }
    }
    let mut sql = String::new();
    for (kind, names) in by_kind {
        let privileges = match kind.as_str() {
            "TABLE" => TABLE_PRIVILEGES,
            "SEQUENCE" => "USAGE, SELECT, UPDATE",
            _ => "EXECUTE",
        };
        sql.push_str(&format!(
            "GRANT {privileges} ON {kind} {} TO {r}; ",
            names.join(", ")
        ));
    }
    if !sql.is_empty() {
        in_db
            .batch_execute(&sql)
            .await
            .map_err(q("granting the tenant's role its privileges"))?;
    }
    Ok(())
}

/// Drops a database tenant's database (ending its sessions).
pub(crate) async fn drop_database(admin: &Client, db: &str) -> Result<(), ControlError> {
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            ident(db)
        ))
        .await
        .map_err(q("dropping the tenant's database"))
}

/// Drops a schema tenant's schema with everything in it, and its migration history.
pub(crate) async fn drop_schema(in_db: &Client, schema: &str) -> Result<(), ControlError> {
    in_db
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", ident(schema)))
        .await
        .map_err(q("dropping the tenant's schema"))?;
    // The history lives in the shared database; gone with the schema's objects or not there.
    in_db
        .execute(
            "DELETE FROM pgfleet_migrate.history WHERE scope = $1",
            &[&schema],
        )
        .await
        .ok();
    Ok(())
}

/// Takes away the privileges of `role` in the database of `in_db` (before the role can go).
pub(crate) async fn drop_owned(in_db: &Client, role: &str) -> Result<(), ControlError> {
    in_db
        .batch_execute(&format!("DROP OWNED BY {}", ident(role)))
        .await
        .map_err(q("dropping the role's privileges"))
}

/// Drops a tenant's role.
pub(crate) async fn drop_role(admin: &Client, role: &str) -> Result<(), ControlError> {
    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {}", ident(role)))
        .await
        .map_err(q("dropping the tenant's role"))
}

//! Tenant containment (docs/security.md): a tenant's role can attach no code that another session
//! would run, the work pgfleet does on tenant objects runs as the fleet's owner role (never as a
//! superuser), and a fleet whose tenants could attach code (provisioned by older pgfleet versions,
//! which granted TRIGGER and TEMPORARY) is repaired by `migrate --all`, `check --fix` and healing.
//!
//! The attack of the review: as a tenant, in a session kept open, a trigger function in `pg_temp`
//! that makes the tenant's own role superuser, attached to one of its tables; then pgfleet (or an
//! admin) writes that table.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pgfleet_control::fleet::FleetOptions;
use pgfleet_control::provision::CreateOptions;
use pgfleet_control::tenant::{Mode, Tenant};
use tokio_postgres::Client;

use crate::{Fleet, TARGET, TargetDir, try_connect};

const WAIT: Duration = Duration::from_secs(120);

fn opts(mode: Mode) -> CreateOptions {
    CreateOptions {
        mode: Some(mode),
        server: None,
    }
}

fn quiet() -> pgfleet_control::fleet::ProgressFn {
    Arc::new(|_| {})
}

/// An admin (superuser) connection to the tenant's database.
async fn admin_in(f: &Fleet, t: &Tenant) -> Client {
    let server = f
        .catalog
        .admin_url()
        .rsplit_once('/')
        .unwrap()
        .0
        .to_string();
    pgfleet_testkit::connect(&format!("{server}/{}", t.database)).await
}

/// The tenant's own session (its role, its search_path).
async fn as_tenant(f: &Fleet, key: &str) -> Client {
    try_connect(f.control.credentials(key).await.unwrap().expose())
        .await
        .unwrap()
}

/// A table of the tenant, qualified for an admin session.
fn table(t: &Tenant, name: &str) -> String {
    match t.mode {
        Mode::Schema => format!("{}.{name}", t.schema),
        Mode::Database => format!("public.{name}"),
    }
}

async fn is_superuser(admin: &Client, role: &str) -> bool {
    admin
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .unwrap()
        .get(0)
}

/// Gives the tenant what pgfleet before 2026-12 gave every tenant: TRIGGER on its tables (also by
/// default privileges) and TEMPORARY on its database; and its objects owned by the admin, as they
/// were then.
async fn as_provisioned_by_an_older_pgfleet(f: &Fleet, t: &Tenant) {
    let admin = admin_in(f, t).await;
    let schema = match t.mode {
        Mode::Schema => t.schema.clone(),
        Mode::Database => "public".into(),
    };
    let group = match t.mode {
        Mode::Schema => ", pgfleet_schema_tenants",
        Mode::Database => "",
    };
    admin
        .batch_execute(&format!(
            "GRANT TRIGGER ON ALL TABLES IN SCHEMA {schema} TO {role};
             ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT TRIGGER ON TABLES TO {role};
             GRANT TEMPORARY ON DATABASE {db} TO {role}{group};
             ALTER TABLE {notes} OWNER TO CURRENT_USER; ALTER TABLE {tags} OWNER TO CURRENT_USER;",
            role = t.role,
            db = t.database,
            notes = table(t, "notes"),
            tags = table(t, "tags"),
        ))
        .await
        .unwrap();
}

/// The review's attack, from the tenant's own session (kept open by the caller: the function
/// lives in its pg_temp). Returns the session.
async fn plant_the_trigger(f: &Fleet, t: &Tenant) -> Client {
    let s = as_tenant(f, &t.key).await;
    s.batch_execute(&format!(
        "CREATE FUNCTION pg_temp.evil() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN EXECUTE format('ALTER ROLE %I SUPERUSER', '{role}'); RETURN NULL; END $$;
         CREATE TRIGGER zz BEFORE UPDATE ON notes FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.evil();
         CREATE TRIGGER yy BEFORE UPDATE ON tags FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();",
        role = t.role
    ))
    .await
    .unwrap();
    s
}

async fn triggers_on(admin: &Client, t: &Tenant) -> Vec<String> {
    admin
        .query(
            "SELECT tgname::text FROM pg_trigger WHERE NOT tgisinternal
               AND tgrelid IN (to_regclass($1), to_regclass($2)) ORDER BY 1",
            &[&table(t, "notes"), &table(t, "tags")],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn a_tenant_can_attach_no_code_and_cannot_act_as_anyone_else_in_either_mode() {
    let f = Fleet::new().await;
    for mode in [Mode::Database, Mode::Schema] {
        let key = format!("boxed-{mode}");
        let t = f.control.provision(&key, &opts(mode), WAIT).await.unwrap();
        let s = as_tenant(&f, &key).await;
        let owner = format!("SET ROLE pgfleet_owner_{}", owner_suffix(&f).await);
        for (what, sql) in [
            (
                "a pg_temp function",
                "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            ),
            ("a temporary table", "CREATE TEMP TABLE t (x int)"),
            (
                "a trigger",
                "CREATE TRIGGER zz BEFORE UPDATE ON notes FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()",
            ),
            ("a table", "CREATE TABLE mine (x int)"),
            (
                "a function",
                "CREATE FUNCTION lower(varchar) RETURNS text LANGUAGE sql AS 'SELECT 1::text'",
            ),
            (
                "a function in public",
                "CREATE FUNCTION public.lower(varchar) RETURNS text LANGUAGE sql AS 'SELECT 1::text'",
            ),
            ("a schema", "CREATE SCHEMA mine"),
            ("a policy", "CREATE POLICY p ON notes USING (true)"),
            (
                "a rule",
                "CREATE RULE r AS ON UPDATE TO notes DO ALSO NOTIFY x",
            ),
            (
                "a column default",
                "ALTER TABLE notes ALTER COLUMN body SET DEFAULT 'x'",
            ),
            ("the group role", "SET ROLE pgfleet_schema_tenants"),
            ("the owner role", owner.as_str()),
        ] {
            let e = s.batch_execute(sql).await.unwrap_err();
            let code = e.as_db_error().map(|d| d.code().code().to_string());
            assert!(
                matches!(
                    code.as_deref(),
                    Some("42501") | Some("42883") | Some("3F000") | Some("42704")
                ),
                "{mode}: the tenant could create {what}: {e:?}"
            );
        }
        // Nothing it holds is reported.
        let d = f.control.check(&key).await.unwrap();
        assert!(d.is_clean(), "{mode}: {d:?}");
        let admin = admin_in(&f, &t).await;
        assert!(!is_superuser(&admin, &t.role).await);
    }
    f.cleanup().await;
}

/// The suffix of the fleet's owner role (its name is `pgfleet_owner_<suffix>`).
async fn owner_suffix(f: &Fleet) -> String {
    let c = f.catalog.connect().await;
    let name: String = c
        .query_one("SELECT role_name FROM pgfleet.server_owners LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    name.trim_start_matches("pgfleet_owner_").to_string()
}

/// The attack on a fleet provisioned by an older pgfleet: `check` reports it, then `migrate --all`
/// with a migration that writes the table takes the trigger and the privileges away before it
/// runs anything, and the role never becomes superuser.
async fn the_attack_through_migrate_all(mode: Mode) {
    let f = Fleet::new().await;
    let key = format!("mallory-{mode}");
    let t = f.control.provision(&key, &opts(mode), WAIT).await.unwrap();
    as_provisioned_by_an_older_pgfleet(&f, &t).await;
    let session = plant_the_trigger(&f, &t).await;
    let admin = admin_in(&f, &t).await;
    assert_eq!(triggers_on(&admin, &t).await, ["yy", "zz"]);

    let d = f.control.check(&key).await.unwrap();
    let critical: Vec<&str> = d
        .security
        .iter()
        .filter(|s| s.critical)
        .map(|s| s.what.as_str())
        .collect();
    assert!(
        critical.iter().any(|w| w.contains("TRIGGER"))
            && critical.iter().any(|w| w.contains("TEMPORARY"))
            && critical
                .iter()
                .any(|w| w.contains("trigger zz") && w.contains("pg_temp"))
            && critical
                .iter()
                .any(|w| w.contains("trigger yy")
                    && w.contains("suppress_redundant_updates_trigger")),
        "{d:?}"
    );
    assert!(!d.is_clean());
    let (_, findings, _) = f.control.check_user(&key).await.unwrap();
    assert!(
        findings.iter().any(|x| x.check == "security" && !x.ok),
        "{findings:?}"
    );

    let next = {
        let mut files = TARGET.to_vec();
        files.push((
            "20260103000000_touch.sql",
            "UPDATE notes SET body = body; UPDATE tags SET name = name;",
        ));
        TargetDir::new(&files)
    };
    f.record(&next.load()).await.unwrap();
    let report = f
        .control
        .migrate_all(None, &FleetOptions::default(), quiet())
        .await
        .unwrap();
    assert_eq!((report.migrated, report.failed), (1, 0), "{report:?}");
    assert!(
        !is_superuser(&admin, &t.role).await,
        "{mode}: the trigger fired with privilege"
    );
    assert!(triggers_on(&admin, &t).await.is_empty());
    // The tenant's session is still open, and can no longer attach anything.
    let e = session
        .batch_execute(
            "CREATE TRIGGER zz2 BEFORE UPDATE ON notes FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.evil()",
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.as_db_error().map(|d| d.code().code()),
        Some("42501"),
        "{e:?}"
    );
    // What was taken away is recorded as corrections, and nothing is left to report.
    let cat = f.catalog.connect().await;
    let secured: Vec<String> = cat
        .query(
            "SELECT detail->>'object' FROM pgfleet.events
             WHERE kind = 'tenant.correction' AND tenant_id = $1 AND detail->>'action' = 'secure' ORDER BY id",
            &[&t.id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        secured.iter().any(|s| s.contains("drop trigger zz"))
            && secured.iter().any(|s| s.contains("revoke TRIGGER"))
            && secured.iter().any(|s| s.contains("revoke TEMPORARY"))
            && secured.iter().any(|s| s.contains("owner role")),
        "{secured:?}"
    );
    let d = f.control.check(&key).await.unwrap();
    assert!(d.is_clean(), "{d:?}");
    // The tenant keeps its data access.
    as_tenant(&f, &key)
        .await
        .batch_execute(
            "INSERT INTO notes (body) VALUES ('still mine'); UPDATE notes SET body = body",
        )
        .await
        .unwrap();
    // An admin writing the table now fires nothing of the tenant's.
    admin
        .batch_execute(&format!("UPDATE {} SET body = body", table(&t, "notes")))
        .await
        .unwrap();
    assert!(!is_superuser(&admin, &t.role).await);
    drop(session);
    f.cleanup().await;
}

#[tokio::test]
async fn the_trigger_attack_is_taken_apart_by_migrate_all_in_database_mode() {
    the_attack_through_migrate_all(Mode::Database).await;
}

#[tokio::test]
async fn the_trigger_attack_is_taken_apart_by_migrate_all_in_schema_mode() {
    the_attack_through_migrate_all(Mode::Schema).await;
}

/// The same through `check --fix` and through healing (a table dropped behind pgfleet's back,
/// repaired on the next request): both secure the tenant before they run anything on it.
async fn the_attack_through_fix_and_heal(mode: Mode) {
    let f = Fleet::new().await;
    for (key, heal) in [
        (format!("fix-{mode}"), false),
        (format!("heal-{mode}"), true),
    ] {
        let t = f.control.provision(&key, &opts(mode), WAIT).await.unwrap();
        as_provisioned_by_an_older_pgfleet(&f, &t).await;
        let session = plant_the_trigger(&f, &t).await;
        let admin = admin_in(&f, &t).await;
        if heal {
            admin
                .batch_execute(&format!("DROP TABLE {} CASCADE", table(&t, "tags")))
                .await
                .unwrap();
            let r = f
                .control
                .heal(&key, "relation \"tags\" does not exist", SystemTime::now())
                .await
                .unwrap();
            assert!(r.applied.iter().any(|a| a.contains("tags")), "{r:?}");
        } else {
            let r = f.control.fix(&key, "test").await.unwrap();
            assert!(r.remaining.is_clean(), "{:?}", r.remaining);
            assert!(
                r.applied.iter().any(|a| a.contains("drop trigger zz")),
                "{r:?}"
            );
        }
        assert!(triggers_on(&admin, &t).await.is_empty(), "{key}");
        // Whatever writes the table now, nothing of the tenant's runs.
        admin
            .batch_execute(&format!(
                "UPDATE {} SET body = body; INSERT INTO {} (name) VALUES ('x'); UPDATE {} SET name = name",
                table(&t, "notes"),
                table(&t, "tags"),
                table(&t, "tags")
            ))
            .await
            .unwrap();
        assert!(!is_superuser(&admin, &t.role).await, "{key}");
        assert!(f.control.check(&key).await.unwrap().is_clean(), "{key}");
        drop(session);
    }
    f.cleanup().await;
}

#[tokio::test]
async fn the_trigger_attack_is_taken_apart_by_check_fix_and_healing_in_database_mode() {
    the_attack_through_fix_and_heal(Mode::Database).await;
}

#[tokio::test]
async fn the_trigger_attack_is_taken_apart_by_check_fix_and_healing_in_schema_mode() {
    the_attack_through_fix_and_heal(Mode::Schema).await;
}

/// Least privilege: the target's SQL runs as the fleet's owner role, which is no superuser and
/// can create no role, on every path (templates, template0, spares, schemas built in place,
/// migrate --all, repairs); a SECURITY DEFINER function of the target runs as that role too.
#[tokio::test]
async fn the_targets_sql_never_runs_as_a_superuser() {
    let files: Vec<(&str, &str)> = vec![
        TARGET[0],
        TARGET[1],
        (
            "20260103000000_guard.sql",
            "DO $$ BEGIN
                IF (SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = current_user) THEN
                    RAISE EXCEPTION 'the target runs as %, a role with server-level rights', current_user;
                END IF; END $$;
             CREATE FUNCTION whoami() RETURNS text LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog
                 AS $$ SELECT current_user::text $$;",
        ),
    ];
    let target = TargetDir::new(&files);
    let f = Fleet::new().await;
    f.record(&target.load()).await.unwrap();
    f.control.keep_spares(false);
    // Spares (built by the owner role) for the schema path.
    f.control.refill_spares("main").await.unwrap();
    for (key, mode) in [
        ("lp-db", Mode::Database),
        ("lp-schema-spare", Mode::Schema),
        ("lp-schema-2", Mode::Schema),
        ("lp-schema-3", Mode::Schema),
        ("lp-schema-4", Mode::Schema),
        ("lp-schema-5", Mode::Schema),
    ] {
        let t = f.control.provision(key, &opts(mode), WAIT).await.unwrap();
        let who: String = as_tenant(&f, key)
            .await
            .query_one("SELECT whoami()", &[])
            .await
            .unwrap()
            .get(0);
        assert!(who.starts_with("pgfleet_owner_"), "{key}: {who}");
        let admin = admin_in(&f, &t).await;
        assert!(!is_superuser(&admin, &who).await);
    }
    // Database tenants built from template0 and their migrations (no template).
    let mut config = f.control.config().clone();
    config.use_templates = false;
    let plain = pgfleet_control::Control::connect(config).await.unwrap();
    plain
        .provision("lp-db-template0", &opts(Mode::Database), WAIT)
        .await
        .unwrap();
    let who: String = as_tenant(&f, "lp-db-template0")
        .await
        .query_one("SELECT whoami()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(who.starts_with("pgfleet_owner_"), "{who}");
    // migrate --all and repairs run the same way: a new migration with the same guard.
    let mut files = files.clone();
    files.push((
        "20260104000000_again.sql",
        "DO $$ BEGIN
            IF (SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = current_user) THEN
                RAISE EXCEPTION 'the target runs as %, a role with server-level rights', current_user;
            END IF; END $$;
         CREATE TABLE extra (id int PRIMARY KEY);",
    ));
    let next = TargetDir::new(&files);
    f.record(&next.load()).await.unwrap();
    let report = f
        .control
        .migrate_all(None, &FleetOptions::default(), quiet())
        .await
        .unwrap();
    assert_eq!((report.migrated, report.failed), (7, 0), "{report:?}");
    f.cleanup().await;
}

/// Server-level attributes, memberships and settings given to a tenant's role (by mistake, or
/// by a vector nobody thought of) are critical findings of `check`, `check-user` and `validate`,
/// and `check --fix` takes them away.
#[tokio::test]
async fn role_attributes_memberships_and_settings_are_reported_and_taken_away() {
    let f = Fleet::new().await;
    let t = f
        .control
        .provision("escalated", &opts(Mode::Schema), WAIT)
        .await
        .unwrap();
    let admin = admin_in(&f, &t).await;
    admin
        .batch_execute(&format!(
            "ALTER ROLE {r} CREATEROLE BYPASSRLS; GRANT pg_read_all_data TO {r};
             ALTER ROLE {r} SET statement_timeout = '1h'; ALTER ROLE {r} IN DATABASE {db} SET work_mem = '64MB'",
            r = t.role,
            db = t.database
        ))
        .await
        .unwrap();
    // A role may also change its own settings: the tenant's own session.
    as_tenant(&f, "escalated")
        .await
        .batch_execute(&format!(
            "ALTER ROLE {} SET search_path = evil, public",
            t.role
        ))
        .await
        .unwrap();
    let d = f.control.check("escalated").await.unwrap();
    let text = format!("{:?}", d.security);
    assert!(
        d.critical() >= 3
            && text.contains("CREATEROLE, BYPASSRLS")
            && text.contains("pg_read_all_data")
            && text.contains("statement_timeout")
            && text.contains("work_mem"),
        "{d:?}"
    );
    let validate = f.control.validate().await.unwrap();
    let roles = validate
        .iter()
        .find(|x| x.check == "roles on main")
        .unwrap();
    assert!(
        !roles.ok && roles.detail.contains(&t.role) && roles.detail.contains("CREATEROLE"),
        "{roles:?}"
    );
    let r = f.control.fix("escalated", "test").await.unwrap();
    assert!(r.remaining.is_clean(), "{:?}", r.remaining);
    let row = admin
        .query_one(
            "SELECT rolcreaterole OR rolbypassrls, pg_has_role($1, 'pg_read_all_data', 'MEMBER'),
                    EXISTS (SELECT FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = $1)
             FROM pg_roles WHERE rolname = $1",
            &[&t.role],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2)
        ),
        (false, false, false)
    );
    assert!(
        f.control
            .validate()
            .await
            .unwrap()
            .iter()
            .find(|x| x.check == "roles on main")
            .unwrap()
            .ok
    );
    // The tenant still works.
    as_tenant(&f, "escalated")
        .await
        .batch_execute("INSERT INTO notes (body) VALUES ('x')")
        .await
        .unwrap();
    f.cleanup().await;
}

/// A role dropped behind pgfleet's back: `tenant rotate-password` (and `check --fix`) create it
/// again with everything it needs to log in and work.
#[tokio::test]
async fn a_role_dropped_behind_pgfleets_back_comes_back_with_its_access() {
    let f = Fleet::new().await;
    for mode in [Mode::Database, Mode::Schema] {
        let key = format!("lost-{mode}");
        let t = f.control.provision(&key, &opts(mode), WAIT).await.unwrap();
        for repair in ["rotate-password", "check --fix"] {
            let admin = admin_in(&f, &t).await;
            admin
                .batch_execute(&format!(
                    "DROP OWNED BY {r}; REVOKE ALL ON DATABASE {db} FROM {r}; DROP ROLE {r}",
                    r = t.role,
                    db = t.database
                ))
                .await
                .unwrap();
            if repair == "rotate-password" {
                f.control.rotate_password(&key).await.unwrap();
            } else {
                let r = f.control.fix(&key, "test").await.unwrap();
                assert!(r.applied.iter().any(|a| a.contains("again")), "{r:?}");
            }
            let s = as_tenant(&f, &key).await;
            s.batch_execute("INSERT INTO notes (body) VALUES ('back'); SELECT count(*) FROM tags")
                .await
                .unwrap_or_else(|e| panic!("{mode} after {repair}: {e:?}"));
            let (_, findings, _) = f.control.check_user(&key).await.unwrap();
            assert!(
                findings.iter().all(|x| x.ok),
                "{mode} after {repair}: {findings:?}"
            );
        }
    }
    f.cleanup().await;
}

/// `check --fix` after a table was renamed behind pgfleet's back: the target's table cannot be
/// created (its primary key's name is taken by the renamed table's index); the repair says so and
/// what to do, leaves nothing half-done, and works once the name is free.
#[tokio::test]
async fn a_repair_blocked_by_a_renamed_table_says_why_and_leaves_nothing_half_done() {
    let f = Fleet::new().await;
    let t = f
        .control
        .provision("renamed", &opts(Mode::Database), WAIT)
        .await
        .unwrap();
    let admin = admin_in(&f, &t).await;
    admin
        .batch_execute("ALTER TABLE tags RENAME TO tags_old")
        .await
        .unwrap();
    for _ in 0..2 {
        let e = pgfleet_control::chain(&f.control.fix("renamed", "test").await.unwrap_err());
        assert!(
            e.contains("already exists")
                && e.contains("renamed")
                && e.contains("nothing was repaired"),
            "{e}"
        );
        let exists: bool = admin
            .query_one("SELECT to_regclass('public.tags') IS NOT NULL", &[])
            .await
            .unwrap()
            .get(0);
        assert!(!exists, "a half-done repair created the table");
    }
    // The operator decides what the old table is: here, not needed any more.
    admin
        .batch_execute("DROP TABLE tags_old CASCADE")
        .await
        .unwrap();
    let r = f.control.fix("renamed", "test").await.unwrap();
    assert!(r.applied.iter().any(|a| a.contains("tags")), "{r:?}");
    f.cleanup().await;
}

/// The catalog database is closed to tenant roles, also when it was created before `init`
/// (PostgreSQL gives `PUBLIC` CONNECT and TEMPORARY on a new database); `validate` reports a
/// catalog open to `PUBLIC`; change announcements carry tenant ids, never keys.
#[tokio::test]
async fn the_catalog_is_closed_to_tenants_and_announcements_carry_no_keys() {
    // A catalog database created beforehand (the common case): init closes it.
    let db = pgfleet_testkit::TestDb::new().await;
    let url = pgfleet_pg::connect::parse_url(db.url()).unwrap();
    let report = pgfleet_control::catalog::init(&url, None).await.unwrap();
    assert_eq!(report.revoked_from_public, ["CONNECT", "TEMPORARY"]);
    let again = pgfleet_control::catalog::init(&url, None).await.unwrap();
    assert!(again.revoked_from_public.is_empty(), "{again:?}");
    drop(db);

    let f = Fleet::new().await;
    let ok = f.control.validate().await.unwrap();
    assert!(
        ok.iter().any(|x| x.check == "catalog access" && x.ok),
        "{ok:?}"
    );
    let t = f
        .control
        .provision("secret-key@example.com", &opts(Mode::Schema), WAIT)
        .await
        .unwrap();
    // The tenant's own role cannot reach the catalog database.
    let creds = f.control.credentials(&t.key).await.unwrap();
    let catalog_db = f.catalog.name().to_string();
    let into_catalog = format!(
        "{}/{catalog_db}",
        creds
            .expose()
            .split('?')
            .next()
            .unwrap()
            .rsplit_once('/')
            .unwrap()
            .0
    );
    let err = try_connect(&into_catalog).await.unwrap_err();
    assert!(err.contains("permission denied for database"), "{err}");
    // Announcements: listen as pgfleet does, rotate the tenant's password, read the payload.
    let (client, mut conn) = pgfleet_pg::connect::parse_url(f.catalog.url())
        .unwrap()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(m)) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.payload().to_string());
            }
        }
    });
    client
        .batch_execute("LISTEN pgfleet_tenant_changes")
        .await
        .unwrap();
    f.control.rotate_password(&t.key).await.unwrap();
    let payload = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payload, t.id);
    // validate reports a catalog opened to PUBLIC again.
    f.catalog
        .connect()
        .await
        .batch_execute(&format!("GRANT CONNECT ON DATABASE {catalog_db} TO PUBLIC"))
        .await
        .unwrap();
    let open = f.control.validate().await.unwrap();
    assert!(
        open.iter()
            .any(|x| x.check == "catalog access" && !x.ok && x.detail.contains("CONNECT")),
        "{open:?}"
    );
    f.cleanup().await;
}

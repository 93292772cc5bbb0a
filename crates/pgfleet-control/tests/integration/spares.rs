//! Spare schemas: schema tenants claim a verified spare instead of building their schema.

use std::str::FromStr;
use std::time::Duration;

use pgfleet_control::provision::CreateOptions;
use pgfleet_control::tenant::{Mode, State};
use pgfleet_testkit::TestCluster;

use crate::{Fleet, TARGET, TargetDir, try_connect};

const WAIT: Duration = Duration::from_secs(120);

fn on_own() -> CreateOptions {
    CreateOptions {
        mode: Some(Mode::Schema),
        server: Some("own".into()),
    }
}

/// (name, is marked as a spare of the current target) of every spare schema on the server.
async fn spares(shared_db: &tokio_postgres::Client, marker_of: &str) -> Vec<(String, bool)> {
    shared_db
        .query(
            "SELECT nspname::text, coalesce(obj_description(oid, 'pg_namespace'), '') LIKE '%' || $1 || '%'
             FROM pg_namespace WHERE nspname LIKE 'pgfleet\\_spare\\_%' ORDER BY 1",
            &[&marker_of],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn from_spare(f: &Fleet, key: &str) -> bool {
    f.control
        .catalog()
        .query_one(
            "SELECT coalesce(bool_or((detail->>'from_spare')::boolean), false) FROM pgfleet.events
             WHERE kind = 'tenant.ready' AND tenant_key = $1",
            &[&key],
        )
        .await
        .unwrap()
        .get(0)
}

/// Records a new target (one more migration), then provisions `after-change` with `opts`: it
/// must not get a spare of the old target, and is at the new one. Returns the new target.
async fn new_target_then_provision(
    f: &Fleet,
    opts: &CreateOptions,
) -> pgfleet_control::catalog::Target {
    let mut files = TARGET.to_vec();
    files.push((
        "20260103000000_pinned.sql",
        "ALTER TABLE notes ADD COLUMN pinned boolean NOT NULL DEFAULT false;",
    ));
    let dir = TargetDir::new(&files);
    f.record(&dir.load()).await.unwrap();
    let new_target = f.control.target().await.unwrap();
    let t = f
        .control
        .provision("after-change", opts, WAIT)
        .await
        .unwrap();
    assert!(!from_spare(f, "after-change").await);
    assert_eq!(t.schema_version.as_deref(), Some("20260103000000"));
    new_target
}

#[tokio::test]
async fn schema_tenants_claim_verified_spares_and_stale_or_unfinished_spares_are_dropped() {
    let f = Fleet::new().await;
    let own = TestCluster::start();
    f.control
        .add_server("own", &own.url(), 100, 1)
        .await
        .unwrap();
    let target = f.control.target().await.unwrap();

    // No spares yet: built on demand.
    let first = f.control.provision("first", &on_own(), WAIT).await.unwrap();
    assert!(!from_spare(&f, "first").await);
    let shared = try_connect(&own.url_for("pgfleet_tenants")).await.unwrap();
    assert!(spares(&shared, &target.dir_hash).await.is_empty());

    // A half-built spare from a crashed builder (no mark) is dropped by the next refill.
    shared
        .batch_execute("CREATE SCHEMA pgfleet_spare_000000dead00; CREATE TABLE pgfleet_spare_000000dead00.notes (id int)")
        .await
        .unwrap();
    assert_eq!(f.control.refill_spare_schemas("own").await.unwrap(), 4);
    let pool = spares(&shared, &target.dir_hash).await;
    assert_eq!(pool.len(), 4, "{pool:?}");
    assert!(
        pool.iter()
            .all(|(n, marked)| *marked && n != "pgfleet_spare_000000dead00")
    );
    // Full: nothing more to build.
    assert_eq!(f.control.refill_spare_schemas("own").await.unwrap(), 0);

    // A claimed spare is the tenant's schema: verified, usable by its role only, history moved.
    let t = f
        .control
        .provision("claimer", &on_own(), WAIT)
        .await
        .unwrap();
    assert_eq!(t.state, State::Ready);
    assert!(from_spare(&f, "claimer").await);
    assert_eq!(t.schema_version.as_deref(), Some(target.version.as_str()));
    assert_eq!(spares(&shared, &target.dir_hash).await.len(), 3);
    assert!(f.control.verify(&t, &target).await.unwrap().is_empty());
    let history: Vec<String> = shared
        .query(
            "SELECT scope FROM pgfleet_migrate.history ORDER BY scope, version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        history.iter().filter(|s| **s == t.schema).count(),
        TARGET.len(),
        "{history:?}"
    );
    let live: Vec<String> = spares(&shared, &target.dir_hash)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    for s in &history {
        assert!(
            *s == t.schema || *s == first.schema || live.contains(s),
            "history of a schema that is gone: {s} ({history:?})"
        );
    }
    let tc = try_connect(f.control.credentials("claimer").await.unwrap().expose())
        .await
        .unwrap();
    tc.batch_execute("INSERT INTO notes (body, embedding) VALUES ('x', '[1,0,0]')")
        .await
        .unwrap();
    let n: i64 = tc
        .query_one("SELECT note_count()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // A spare is nobody's: the tenant cannot read one.
    let err = tc
        .query_one(&format!("SELECT count(*) FROM {}.notes", live[0]), &[])
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501", "{err}");

    // Racing claims: 6 tenants at once for 3 spares; each spare goes to one tenant at most.
    let keys: Vec<String> = (0..6).map(|i| format!("race-{i}")).collect();
    let mut tasks = Vec::new();
    for k in &keys {
        let c = f.control.clone();
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            c.provision(&k, &on_own(), WAIT).await
        }));
    }
    let mut claimed = 0;
    for (k, task) in keys.iter().zip(tasks) {
        let t = task.await.unwrap().unwrap();
        assert_eq!(t.state, State::Ready);
        assert!(
            f.control.verify(&t, &target).await.unwrap().is_empty(),
            "{k}"
        );
        claimed += usize::from(from_spare(&f, k).await);
    }
    assert!((1..=3).contains(&claimed), "{claimed}");
    assert_eq!(spares(&shared, &target.dir_hash).await.len(), 3 - claimed);

    // A process that keeps spares tops the pool up after a schema tenant.
    f.control.keep_spares(true);
    f.control.provision("kept", &on_own(), WAIT).await.unwrap();
    let started = std::time::Instant::now();
    while spares(&shared, &target.dir_hash).await.len() < 4 {
        assert!(started.elapsed() < WAIT, "the pool was not refilled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f.control.keep_spares(false);

    // A new target: old spares are never claimed, and the next refill replaces them.
    let new_target = new_target_then_provision(&f, &on_own()).await;
    assert!(
        spares(&shared, &new_target.dir_hash)
            .await
            .iter()
            .all(|(_, m)| !m)
    );
    assert_eq!(f.control.refill_spare_schemas("own").await.unwrap(), 4);
    let pool = spares(&shared, &new_target.dir_hash).await;
    assert_eq!(pool.len(), 4, "{pool:?}");
    assert!(pool.iter().all(|(_, m)| *m), "{pool:?}");
    let t = f
        .control
        .provision("new-spare", &on_own(), WAIT)
        .await
        .unwrap();
    assert!(from_spare(&f, "new-spare").await);
    assert!(f.control.verify(&t, &new_target).await.unwrap().is_empty());
    f.cleanup().await;
}

fn db_on_own() -> CreateOptions {
    CreateOptions {
        mode: Some(Mode::Database),
        server: Some("own".into()),
    }
}

/// A spare database as the server has it.
#[derive(Debug)]
struct SpareDb {
    name: String,
    /// Its comment (pgfleet's mark), empty when none.
    mark: String,
    allows_connections: bool,
    /// Its role is there and cannot log in.
    has_role: bool,
}

/// The spare databases (and roles without a database) named after `fleet` on the server.
async fn spare_databases(admin: &tokio_postgres::Client, fleet: &str) -> Vec<SpareDb> {
    admin
        .query(
            "SELECT d.datname::text, coalesce(shobj_description(d.oid, 'pg_database'), ''), d.datallowconn,
                    EXISTS (SELECT FROM pg_roles r WHERE r.rolname = d.datname AND NOT r.rolcanlogin)
             FROM pg_database d WHERE starts_with(d.datname, $1)
             UNION ALL
             SELECT r.rolname::text, '', false, true FROM pg_roles r
             WHERE starts_with(r.rolname, $1) AND NOT EXISTS (SELECT FROM pg_database WHERE datname = r.rolname)
             ORDER BY 1",
            &[&format!("pgfleet_spare_{fleet}_")],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| SpareDb {
            name: r.get(0),
            mark: r.get(1),
            allows_connections: r.get(2),
            has_role: r.get(3),
        })
        .collect()
}

/// Sessions connected to `database` now.
async fn sessions_in(admin: &tokio_postgres::Client, database: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
            &[&database],
        )
        .await
        .unwrap()
        .get(0)
}

/// Inserts a note as the tenant and counts the notes.
async fn write_and_count(f: &Fleet, key: &str) -> i64 {
    let tc = try_connect(f.control.credentials(key).await.unwrap().expose())
        .await
        .unwrap();
    tc.batch_execute("INSERT INTO notes (body, embedding) VALUES ('x', '[1,0,0]')")
        .await
        .unwrap();
    tc.query_one("SELECT note_count()", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn database_tenants_claim_verified_spare_databases_once_without_connecting_to_them() {
    let f = Fleet::new().await;
    f.control.keep_spares(false);
    let own = TestCluster::start();
    f.control
        .add_server("own", &own.url(), 100, 1)
        .await
        .unwrap();
    let target = f.control.target().await.unwrap();
    let admin = try_connect(&own.url()).await.unwrap();

    // No spares yet: copied from the template.
    f.control
        .provision("first", &db_on_own(), WAIT)
        .await
        .unwrap();
    assert!(!from_spare(&f, "first").await);
    // The fleet's id, from its owner role's name (spares are named after it).
    let fleet: String = admin
        .query_one(
            "SELECT substr(rolname, length('pgfleet_owner_') + 1) FROM pg_roles WHERE rolname LIKE 'pgfleet\\_owner\\_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(spare_databases(&admin, &fleet).await.is_empty());

    // A half-built spare of a crashed builder (connections allowed, no mark) and a role whose
    // database is gone: both dropped by the next refill, which builds two verified spares.
    let dead = format!("pgfleet_spare_{fleet}_dead00000000");
    let orphan = format!("pgfleet_spare_{fleet}_0dd000000000");
    admin
        .batch_execute(&format!(
            "CREATE ROLE {dead} NOLOGIN; CREATE ROLE {orphan} NOLOGIN"
        ))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {dead}"))
        .await
        .unwrap();
    assert_eq!(f.control.refill_spare_databases("own").await.unwrap(), 2);
    let pool = spare_databases(&admin, &fleet).await;
    assert_eq!(pool.len(), 2, "{pool:?}");
    for s in &pool {
        assert!(s.name != dead && s.name != orphan, "{pool:?}");
        assert!(
            s.mark.starts_with("pgfleet spare database of pgfleet_tpl_")
                && s.mark.contains(&target.version),
            "{pool:?}"
        );
        assert!(!s.allows_connections && s.has_role, "{pool:?}");
    }
    // Closed until claimed, to everyone (the admin too).
    let err = try_connect(&own.url_for(&pool[0].name)).await.unwrap_err();
    assert!(err.contains("not currently accepting connections"), "{err}");
    // Full: nothing more to build.
    assert_eq!(f.control.refill_spare_databases("own").await.unwrap(), 0);

    // Racing claims: 5 tenants at once for 2 spares. Each spare goes to exactly one tenant (each
    // claimer tries every spare; it passes one only when another claimer holds it); the others
    // are copied from the template.
    let keys: Vec<String> = (0..5).map(|i| format!("race-{i}")).collect();
    let mut tasks = Vec::new();
    for k in &keys {
        let (c, k) = (f.control.clone(), k.clone());
        tasks.push(tokio::spawn(async move {
            c.provision(&k, &db_on_own(), WAIT).await
        }));
    }
    let mut claimed = Vec::new();
    let mut tenants = Vec::new();
    for (k, task) in keys.iter().zip(tasks) {
        let t = task.await.unwrap().unwrap();
        assert_eq!(t.state, State::Ready);
        assert_eq!(t.schema_version.as_deref(), Some(target.version.as_str()));
        if from_spare(&f, k).await {
            claimed.push(t.clone());
        }
        tenants.push(t);
    }
    assert_eq!(claimed.len(), 2, "{claimed:?}");
    assert!(spare_databases(&admin, &fleet).await.is_empty());
    for t in &claimed {
        // Nothing connected to the database on the claim path (the template path leaves the
        // admin's connection to it in the control plane's idle pool).
        assert_eq!(sessions_in(&admin, &t.database).await, 0, "{}", t.key);
        let row = admin
            .query_one(
                "SELECT datallowconn, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
                &[&t.database],
            )
            .await
            .unwrap();
        let (open, comment): (bool, Option<String>) = (row.get(0), row.get(1));
        assert!(open && comment.is_none(), "{}", t.key);
    }
    for t in &tenants {
        assert!(
            f.control.verify(t, &target).await.unwrap().is_empty(),
            "{}",
            t.key
        );
        // The tenant's role logs in with its own password and may write; no other role may.
        assert_eq!(write_and_count(&f, &t.key).await, 1, "{}", t.key);
    }
    let other = f.control.credentials(&tenants[0].key).await.unwrap();
    let mut cross = tokio_postgres::Config::from_str(other.expose()).unwrap();
    cross.dbname(&claimed[0].database);
    let err = match cross.connect(tokio_postgres::NoTls).await {
        Ok(_) if tenants[0].key == claimed[0].key => String::from("same tenant"),
        Ok(_) => panic!("a tenant's role reached another tenant's database"),
        Err(e) => e.to_string(),
    };
    assert!(
        err == "same tenant" || err.contains("permission denied"),
        "{err}"
    );

    // A process that keeps spares tops the pool up after a database tenant.
    f.control.keep_spares(true);
    f.control
        .provision("kept", &db_on_own(), WAIT)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    while spare_databases(&admin, &fleet)
        .await
        .iter()
        .filter(|s| !s.mark.is_empty())
        .count()
        < 2
    {
        assert!(
            started.elapsed() < WAIT,
            "the spare databases were not refilled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f.control.keep_spares(false);

    // A new target: spares of the old one are never claimed; the next refill replaces them.
    let new_target = new_target_then_provision(&f, &db_on_own()).await;
    assert_eq!(spare_databases(&admin, &fleet).await.len(), 2);
    assert_eq!(f.control.refill_spare_databases("own").await.unwrap(), 2);
    let pool = spare_databases(&admin, &fleet).await;
    assert_eq!(pool.len(), 2, "{pool:?}");
    assert!(
        pool.iter().all(|s| s.mark.contains("20260103000000")),
        "{pool:?}"
    );
    let t = f
        .control
        .provision("new-spare", &db_on_own(), WAIT)
        .await
        .unwrap();
    assert!(from_spare(&f, "new-spare").await);
    assert!(f.control.verify(&t, &new_target).await.unwrap().is_empty());
    assert_eq!(write_and_count(&f, "new-spare").await, 1);

    // A claimed tenant drops like any other: its database and role go.
    f.control.drop_tenant("new-spare").await.unwrap();
    let left: i64 = admin
        .query_one(
            "SELECT (SELECT count(*) FROM pg_database WHERE datname = $1) + (SELECT count(*) FROM pg_roles WHERE rolname = $2)",
            &[&t.database, &t.role],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    f.cleanup().await;
}

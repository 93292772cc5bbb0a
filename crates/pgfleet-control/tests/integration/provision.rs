//! Provisioning: exactly once, verified, locked down, sealed.

use std::time::Duration;

use pgfleet_control::ControlError;
use pgfleet_control::provision::CreateOptions;
use pgfleet_control::tenant::{Mode, State};

use crate::{Fleet, try_connect};

const WAIT: Duration = Duration::from_secs(120);

fn schema_mode() -> CreateOptions {
    CreateOptions {
        mode: Some(Mode::Schema),
        server: None,
    }
}

#[tokio::test]
async fn a_database_tenant_is_ready_verified_locked_down_and_its_password_sealed() {
    let f = Fleet::new().await;
    let t = f
        .control
        .provision("alice@example.com", &CreateOptions::default(), WAIT)
        .await
        .unwrap();
    assert_eq!(
        (t.state, t.mode, t.step.as_str()),
        (State::Ready, Mode::Database, "ready")
    );
    assert_eq!(t.schema_version.as_deref(), Some("20260102000000"));
    assert!(
        t.database.starts_with("pgfleet_t") && t.role.starts_with("pgfleet_t"),
        "{t:?}"
    );
    assert!(
        !t.database.contains("alice"),
        "names never derive from the key"
    );

    // The tenant's own role works: DML and pgvector search.
    let url = f.control.credentials("alice@example.com").await.unwrap();
    let c = try_connect(url.expose()).await.unwrap();
    c.batch_execute(
        "INSERT INTO notes (body, embedding) VALUES ('a', '[1,0,0]'), ('b', '[0,1,0]')",
    )
    .await
    .unwrap();
    let best: String = c
        .query_one(
            "SELECT body FROM notes ORDER BY embedding <=> '[0.9,0.1,0]' LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(best, "a");
    assert_eq!(
        c.query_one("SELECT note_count()", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        2
    );
    // …but no DDL, and nothing in public.
    let err = c
        .batch_execute("CREATE TABLE mine (id int)")
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501", "{err}");
    assert!(c.batch_execute("DROP TABLE notes").await.is_err());

    // Another tenant's role cannot connect to this database.
    let bob = f
        .control
        .provision("bob", &CreateOptions::default(), WAIT)
        .await
        .unwrap();
    let bob_url = f.control.credentials("bob").await.unwrap();
    let (server, db) = bob_url.expose().rsplit_once('/').unwrap();
    assert_eq!(db, bob.database);
    let into_alice = format!("{server}/{}", t.database);
    let err = try_connect(&into_alice).await.unwrap_err();
    assert!(err.contains("permission denied"), "{err}");

    // The password is nowhere in the catalog in clear.
    let password = url
        .expose()
        .split(':')
        .nth(2)
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(password.len(), 32);
    let cat = f.catalog.connect().await;
    for table in ["servers", "tenants", "operations", "events", "targets"] {
        let text: String = cat
            .query_one(
                &format!("SELECT coalesce(string_agg(t::text, ' '), '') FROM pgfleet.{table} t"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            !text.contains(&password),
            "password in clear in pgfleet.{table}"
        );
    }
    // Nor in the tenant's Debug output.
    assert!(!format!("{t:?} {url:?}").contains(&password));
    // The target model is stored once per version and PostgreSQL major, for every process.
    let models: i64 = cat
        .query_one(
            "SELECT count(*) FROM pgfleet.target_models WHERE version = '20260102000000'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(models, 1);
    f.cleanup().await;
}

#[tokio::test]
async fn fifty_concurrent_provisions_of_one_key_make_one_tenant() {
    let f = Fleet::new().await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let c = f.control.clone();
            tokio::spawn(async move {
                c.provision("same-user", &CreateOptions::default(), WAIT)
                    .await
            })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let t = t.await.unwrap().unwrap();
        assert_eq!(t.state, State::Ready);
        ids.insert(t.id);
    }
    assert_eq!(ids.len(), 1, "every caller got the same tenant");
    let id = ids.into_iter().next().unwrap();
    let cat = f.catalog.connect().await;
    let n = |sql: &'static str| {
        let cat = &cat;
        async move { cat.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(n("SELECT count(*) FROM pgfleet.tenants").await, 1);
    assert_eq!(n("SELECT count(*) FROM pgfleet.operations").await, 1);
    assert_eq!(
        n("SELECT count(*) FROM pgfleet.events WHERE kind = 'tenant.ready'").await,
        1
    );
    let admin = pgfleet_testkit::connect(f.catalog.admin_url()).await;
    let dbs: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&format!("pgfleet_{id}")],
        )
        .await
        .unwrap()
        .get(0);
    let roles: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname = $1",
            &[&format!("pgfleet_{id}")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!((dbs, roles), (1, 1));
    f.cleanup().await;
}

#[tokio::test]
async fn schema_tenants_share_a_database_but_not_their_data() {
    let f = Fleet::new().await;
    let a = f
        .control
        .provision("schema-a", &schema_mode(), WAIT)
        .await
        .unwrap();
    let b = f
        .control
        .provision("schema-b", &schema_mode(), WAIT)
        .await
        .unwrap();
    assert_eq!((a.state, b.state), (State::Ready, State::Ready));
    assert_eq!(a.database, b.database);
    assert_ne!(a.schema, b.schema);
    let ca = try_connect(f.control.credentials("schema-a").await.unwrap().expose())
        .await
        .unwrap();
    ca.batch_execute("INSERT INTO notes (body, embedding) VALUES ('secret of a', '[1,1,1]')")
        .await
        .unwrap();
    let cb = try_connect(f.control.credentials("schema-b").await.unwrap().expose())
        .await
        .unwrap();
    assert_eq!(
        cb.query_one("SELECT count(*) FROM notes", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        0
    );
    // Its role has DML on every table and view, the serial's sequence and the function (granted
    // object by object, found through pg_depend).
    cb.batch_execute(
        "INSERT INTO notes (body, embedding, mood) VALUES ('b', '[1,0,0]', 'happy'); \
         INSERT INTO tags (note_id, name) SELECT id, 'x' FROM notes",
    )
    .await
    .unwrap();
    let row = cb
        .query_one(
            "SELECT (SELECT count(*) FROM happy_notes), note_count(), \
                    has_sequence_privilege('tags_id_seq', 'USAGE, SELECT, UPDATE'), \
                    has_table_privilege('tags', 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, bool>(2),
            row.get::<_, bool>(3)
        ),
        (1, 1, true, true)
    );
    let err = cb
        .query_one(&format!("SELECT count(*) FROM {}.notes", a.schema), &[])
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501", "{err}");
    // The group role that lets schema tenants into the shared database cannot be acted as
    // (PostgreSQL 16+: membership without SET).
    let err = cb
        .batch_execute("SET ROLE pgfleet_schema_tenants")
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501", "{err}");
    let err = cb
        .batch_execute("CREATE TABLE public.sneaky (id int)")
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501", "{err}");
    let err = cb
        .batch_execute(&format!("CREATE TABLE {}.sneaky (id int)", b.schema))
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501", "{err}");
    // Nor change another tenant's settings (its search_path).
    let err = cb
        .batch_execute(&format!(
            "ALTER ROLE {} SET search_path = {}",
            a.role, b.schema
        ))
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501", "{err}");
    // Verification compares the tenant's schema with the target.
    let target = f.control.target().await.unwrap();
    assert!(f.control.verify(&a, &target).await.unwrap().is_empty());
    f.cleanup().await;
}

#[tokio::test]
async fn hostile_keys_work_and_bad_keys_or_options_are_refused() {
    let f = Fleet::new().await;
    let long = "k".repeat(256);
    for key in [
        "o'brien\"; DROP TABLE pgfleet.tenants; --",
        "ユーザー🙂",
        "$1 %s \\x00",
        long.as_str(),
    ] {
        let t = f
            .control
            .provision(key, &CreateOptions::default(), WAIT)
            .await
            .unwrap();
        assert_eq!(t.key, key);
        assert_eq!(f.control.tenant(key).await.unwrap().id, t.id);
    }
    assert_eq!(
        f.control.tenants(Some(State::Ready)).await.unwrap().len(),
        4
    );
    let err = f
        .control
        .create_tenant(&"k".repeat(257), &CreateOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("256 bytes"), "{err}");
    let err = f
        .control
        .create_tenant("", &CreateOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::InvalidKey { .. }), "{err}");
    let err = f
        .control
        .create_tenant(&long, &schema_mode())
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("mode database"), "{err}");
    let err = f.control.tenant("nobody").await.unwrap_err();
    assert!(err.is_not_found());
    f.cleanup().await;
}

#[tokio::test]
async fn dropping_a_tenant_removes_its_database_and_role_and_keeps_a_tombstone() {
    let f = Fleet::new().await;
    let t = f
        .control
        .provision("leaving", &CreateOptions::default(), WAIT)
        .await
        .unwrap();
    let s = f
        .control
        .provision("leaving-schema", &schema_mode(), WAIT)
        .await
        .unwrap();
    f.control.drop_tenant("leaving").await.unwrap();
    f.control.drop_tenant("leaving-schema").await.unwrap();
    let admin = pgfleet_testkit::connect(f.catalog.admin_url()).await;
    let exists = |sql: String| {
        let admin = &admin;
        async move { admin.query_one(&sql, &[]).await.unwrap().get::<_, bool>(0) }
    };
    assert!(
        !exists(format!(
            "SELECT EXISTS (SELECT FROM pg_database WHERE datname = '{}')",
            t.database
        ))
        .await
    );
    assert!(
        !exists(format!(
            "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = '{}')",
            t.role
        ))
        .await
    );
    assert!(
        !exists(format!(
            "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = '{}')",
            s.role
        ))
        .await
    );
    assert!(f.control.find("leaving").await.unwrap().is_none());
    let cat = f.catalog.connect().await;
    let tombstones: i64 = cat
        .query_one(
            "SELECT count(*) FROM pgfleet.events WHERE kind = 'tenant.dropped'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tombstones, 2);
    // The key can be used again: a new tenant.
    let again = f
        .control
        .provision("leaving", &CreateOptions::default(), WAIT)
        .await
        .unwrap();
    assert_ne!(again.id, t.id);
    f.cleanup().await;
}

#[tokio::test]
async fn master_keys_rotate_without_downtime_and_passwords_rotate() {
    let f = Fleet::new().await;
    f.control
        .provision("rot", &CreateOptions::default(), WAIT)
        .await
        .unwrap();
    let old_url = f.control.credentials("rot").await.unwrap();
    let new_key = pgfleet_control::secrets::MasterKey::generate().unwrap();
    // Processes start with the new key as current and the old one as previous: everything opens.
    let mut cfg = f.control.config().clone();
    cfg.set_master_key(new_key.clone());
    cfg.previous_master_key = Some(f.key.clone());
    let both = pgfleet_control::Control::connect(cfg.clone())
        .await
        .unwrap();
    assert_eq!(both.credentials("rot").await.unwrap(), old_url);
    assert_eq!(
        both.rotate_keys().await.unwrap(),
        3,
        "one server URL, the server's owner-role password and one tenant password"
    );
    assert_eq!(both.rotate_keys().await.unwrap(), 0, "idempotent");
    // Now the new key alone opens everything, and the old one nothing.
    cfg.previous_master_key = None;
    let only_new = pgfleet_control::Control::connect(cfg).await.unwrap();
    assert_eq!(only_new.credentials("rot").await.unwrap(), old_url);
    let err = f.control.credentials("rot").await.unwrap_err();
    assert!(err.to_string().contains(new_key.id()), "{err}");
    // A new password: the old URL stops working, the new one works.
    only_new.rotate_password("rot").await.unwrap();
    let new_url = only_new.credentials("rot").await.unwrap();
    assert_ne!(new_url, old_url);
    assert!(try_connect(old_url.expose()).await.is_err());
    try_connect(new_url.expose()).await.unwrap();
    only_new.drop_tenant("rot").await.unwrap();
}

#[tokio::test]
async fn database_tenants_can_be_copied_from_a_per_server_template() {
    let f = Fleet::new().await;
    let mut cfg = f.control.config().clone();
    cfg.use_templates = true;
    let c = pgfleet_control::Control::connect(cfg).await.unwrap();
    let a = c
        .provision("tpl-a", &CreateOptions::default(), WAIT)
        .await
        .unwrap();
    let b = c
        .provision("tpl-b", &CreateOptions::default(), WAIT)
        .await
        .unwrap();
    assert_eq!((a.state, b.state), (State::Ready, State::Ready));
    let admin = pgfleet_testkit::connect(f.catalog.admin_url()).await;
    let built: String = f
        .catalog
        .connect()
        .await
        .query_one("SELECT string_agg(detail->>'template', ',') FROM pgfleet.events WHERE kind = 'template.built'", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!built.contains(','), "one template for the target: {built}");
    let closed: bool = admin
        .query_one(
            "SELECT datistemplate AND NOT datallowconn FROM pg_database WHERE datname = $1",
            &[&built],
        )
        .await
        .unwrap()
        .get(0);
    assert!(closed, "the template is closed to connections");
    // The copy carries the migration history: the tenant is at the target without running it again.
    let server = f
        .catalog
        .admin_url()
        .rsplit_once('/')
        .unwrap()
        .0
        .to_string();
    let t = pgfleet_testkit::connect(&format!("{server}/{}", b.database)).await;
    let applied: i64 = t
        .query_one("SELECT count(*) FROM pgfleet_migrate.history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(applied, 2);
    let target = c.target().await.unwrap();
    assert!(c.verify(&b, &target).await.unwrap().is_empty());
    // A new target: the next tenant gets a new template, and the old one is dropped.
    let mut files: Vec<(&str, &str)> = crate::TARGET.to_vec();
    files.push((
        "20260103000000_extra.sql",
        "CREATE TABLE extra (id int PRIMARY KEY);\n",
    ));
    let dir = crate::TargetDir::new(&files);
    f.record(&dir.load()).await.unwrap();
    let t3 = c
        .provision("tpl-c", &CreateOptions::default(), WAIT)
        .await
        .unwrap();
    assert_eq!(t3.schema_version.as_deref(), Some("20260103000000"));
    // This fleet's templates (other fleets on the shared test server keep theirs).
    let cat = f.catalog.connect().await;
    let built: Vec<String> = cat
        .query("SELECT detail->>'template' FROM pgfleet.events WHERE kind = 'template.built' ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(built.len(), 2, "{built:?}");
    assert!(
        built[0].contains("_20260102000000_") && built[1].contains("_20260103000000_"),
        "{built:?}"
    );
    let exists = |name: String| {
        let admin = &admin;
        async move {
            admin
                .query_one(
                    "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)",
                    &[&name],
                )
                .await
                .unwrap()
                .get::<_, bool>(0)
        }
    };
    assert!(
        !exists(built[0].clone()).await,
        "the old template was dropped"
    );
    assert!(exists(built[1].clone()).await, "the new template exists");
    f.cleanup().await;
}

#[tokio::test]
async fn no_connection_to_a_tenant_database_is_kept_open_after_provisioning() {
    let f = Fleet::new().await;
    // A server of its own: the shared database of the test cluster also serves the schema
    // tenants of other tests running at the same time.
    let own = pgfleet_testkit::TestCluster::start();
    f.control
        .add_server("own", &own.url(), 100, 1)
        .await
        .unwrap();
    let on_own = |mode| CreateOptions {
        mode: Some(mode),
        server: Some("own".into()),
    };
    let mut dbs = Vec::new();
    for i in 0..6 {
        dbs.push(
            f.control
                .provision(&format!("leak-{i}"), &on_own(Mode::Database), WAIT)
                .await
                .unwrap()
                .database,
        );
    }
    let s = f
        .control
        .provision("leak-s", &on_own(Mode::Schema), WAIT)
        .await
        .unwrap();
    let admin = pgfleet_testkit::connect(&own.url()).await;
    // Backends of closed connections may take a moment to leave.
    let mut open = i64::MAX;
    for _ in 0..50 {
        open = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = ANY($1)",
                &[&dbs],
            )
            .await
            .unwrap()
            .get(0);
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open, 0, "connections to tenant databases left open");
    let shared: i64 = admin
        .query_one("SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'pgfleet control'", &[&s.database])
        .await
        .unwrap()
        .get(0);
    assert!(
        shared <= 4,
        "{shared} idle connections to the shared database"
    );
    f.cleanup().await;
}

#[tokio::test]
async fn an_older_catalog_is_refused_until_init_upgrades_it() {
    let db = pgfleet_testkit::TestDb::new().await;
    let url = pgfleet_pg::connect::parse_url(db.url()).unwrap();
    let all = pgfleet_control::catalog::catalog_migrations();
    let first = pgfleet_migrate::MigrationDir::from_files(
        std::path::Path::new("catalog"),
        vec![(
            all.migrations[0].file_name.clone(),
            all.migrations[0].sql.clone(),
        )],
    )
    .unwrap();
    pgfleet_migrate::migrate(&url, &first, &Default::default(), |_| {})
        .await
        .unwrap();
    let key = pgfleet_control::secrets::MasterKey::generate().unwrap();
    let err = pgfleet_control::Control::connect(pgfleet_control::config::Config::new(
        db.url(),
        key.clone(),
    ))
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("20261126000001") && err.to_string().contains("pgfleet init"),
        "{err}"
    );
    let report = pgfleet_control::catalog::init(&url, None).await.unwrap();
    assert_eq!(
        report.catalog_migrations,
        [
            "20261125000001",
            "20261126000000",
            "20261126000001",
            "20261204000000",
            "20261204000001",
            "20261204000002",
            "20261204000003",
            "20261204000004"
        ]
    );
    pgfleet_control::Control::connect(pgfleet_control::config::Config::new(db.url(), key))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_wrong_master_key_is_refused_before_anything_is_sealed_with_it() {
    let f = Fleet::new().await;
    f.control
        .provision("keyed", &CreateOptions::default(), WAIT)
        .await
        .unwrap();
    let mut cfg = f.control.config().clone();
    cfg.set_master_key(pgfleet_control::secrets::MasterKey::generate().unwrap());
    let wrong = pgfleet_control::Control::connect(cfg).await.unwrap();
    let err = wrong
        .create_tenant("other", &CreateOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::WrongKey { .. }), "{err}");
    assert!(err.to_string().contains(f.key.id()), "{err}");
    assert!(
        wrong.find("other").await.unwrap().is_none(),
        "nothing created"
    );
    let err = wrong
        .add_server("again", f.catalog.admin_url(), 10, 1)
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::WrongKey { .. }), "{err}");
    let err = wrong.rotate_keys().await.unwrap_err();
    assert!(matches!(err, ControlError::WrongKey { .. }), "{err}");
    let findings = wrong.validate().await.unwrap();
    assert!(
        findings.iter().any(|x| x.check == "master key" && !x.ok),
        "{findings:?}"
    );
    // The right key still opens everything: rotation refused to touch any row.
    f.control.credentials("keyed").await.unwrap();
    f.cleanup().await;
}

#[tokio::test]
async fn a_failed_drop_leaves_a_clear_state_and_finishes_when_run_again() {
    let f = Fleet::new().await;
    let mut x = pgfleet_testkit::TestCluster::start();
    f.control.add_server("x", &x.url(), 10, 1).await.unwrap();
    let opts = CreateOptions {
        mode: None,
        server: Some("x".into()),
    };
    f.control.provision("going", &opts, WAIT).await.unwrap();
    x.stop();
    let err = f.control.drop_tenant("going").await.unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
    let t = f.control.tenant("going").await.unwrap();
    assert_eq!(t.state, State::Dropping);
    assert!(
        t.last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("drop:")),
        "{t:?}"
    );
    let err = f.control.provision("going", &opts, WAIT).await.unwrap_err();
    assert!(matches!(err, ControlError::Dropping { .. }), "{err}");
    assert!(err.to_string().contains("tenant drop"), "{err}");
    x.restart();
    f.control.drop_tenant("going").await.unwrap();
    assert!(f.control.find("going").await.unwrap().is_none());
}

#[tokio::test]
async fn a_drop_with_the_wrong_key_changes_nothing_and_concurrent_drops_all_succeed() {
    let f = Fleet::new().await;
    f.control
        .provision("keep-me", &CreateOptions::default(), WAIT)
        .await
        .unwrap();
    let mut cfg = f.control.config().clone();
    cfg.set_master_key(pgfleet_control::secrets::MasterKey::generate().unwrap());
    let wrong = pgfleet_control::Control::connect(cfg).await.unwrap();
    let err = wrong.drop_tenant("keep-me").await.unwrap_err();
    assert!(matches!(err, ControlError::WrongKey { .. }), "{err}");
    let t = f.control.tenant("keep-me").await.unwrap();
    assert_eq!((t.state, t.last_error), (State::Ready, None));
    // The tenant can be created again (it was never `dropping`) and dropped with the right key.
    f.control
        .provision("keep-me", &CreateOptions::default(), WAIT)
        .await
        .unwrap();
    // Three drops of one key at once: all succeed, one of them did it.
    let drops: Vec<_> = (0..3)
        .map(|_| {
            let c = f.control.clone();
            tokio::spawn(async move { c.drop_tenant("keep-me").await })
        })
        .collect();
    for d in drops {
        d.await.unwrap().unwrap();
    }
    assert!(f.control.find("keep-me").await.unwrap().is_none());
    let c = f.catalog.connect().await;
    let tombstones: i64 = c
        .query_one(
            "SELECT count(*) FROM pgfleet.events WHERE kind = 'tenant.dropped' AND tenant_key = 'keep-me'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tombstones, 1);
}

//! `Fleet::client` and `Fleet::with_tenant` against real clusters: no statement on the hot path,
//! healing exactly once, the connection budget, a stopped server, rotation and drop seen live.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pgfleet::control::config::Config;
use pgfleet::control::provision::CreateOptions;
use pgfleet::control::secrets::MasterKey;
use pgfleet::control::tenant::Mode;
use pgfleet::control::{Control, catalog};
use pgfleet::migrate::{MigrationDir, sum};
use pgfleet::router::cache::{CacheOptions, CacheStatus};
use pgfleet::{Fleet, RouterOptions};
use pgfleet_testkit::{TestCluster, TestDb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TARGET: &str = "CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL);
CREATE TABLE tags (id serial PRIMARY KEY, note_id bigint REFERENCES notes ON DELETE CASCADE, name text NOT NULL);
CREATE INDEX tags_name ON tags (name);
CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, what text NOT NULL);
CREATE TABLE audit (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, what text NOT NULL);
CREATE FUNCTION audit_event() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO audit (what) VALUES (NEW.what); RETURN NEW; END$$;
CREATE TRIGGER events_audit AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION audit_event();
CREATE VIEW note_bodies AS SELECT id, upper(body) AS body FROM notes;
CREATE VIEW notes_now AS SELECT id, now() AS at FROM notes;
CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0);
CREATE TABLE comments (id int PRIMARY KEY, parent_id int REFERENCES comments ON DELETE CASCADE);
";
const WAIT: Duration = Duration::from_secs(300);

struct Setup {
    catalog: TestDb,
    key: MasterKey,
    _dir: std::path::PathBuf,
}

impl Setup {
    /// A catalog with the target and `servers` (name, url).
    async fn new(servers: &[(&str, String)]) -> Self {
        let catalog = TestDb::named("router").await;
        let dir = std::env::temp_dir().join(format!(
            "pgfleet-router-test-{}-{}",
            std::process::id(),
            pgfleet_testkit::free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("20260101000000_init.sql"), TARGET).unwrap();
        sum::write(&MigrationDir::load(&dir).unwrap()).unwrap();
        let url = pgfleet::pg::connect::parse_url(catalog.url()).unwrap();
        catalog::init(&url, Some(&MigrationDir::load(&dir).unwrap()))
            .await
            .unwrap();
        let key = MasterKey::generate().unwrap();
        let s = Self {
            catalog,
            key,
            _dir: dir,
        };
        let c = s.control().await;
        for (name, url) in servers {
            c.add_server(name, url, 10_000, 1).await.unwrap();
        }
        s
    }

    async fn control(&self) -> Control {
        Control::connect(Config::new(self.catalog.url(), self.key.clone()))
            .await
            .unwrap()
    }

    async fn fleet(&self, opts: RouterOptions) -> Fleet {
        Fleet::connect(Config::new(self.catalog.url(), self.key.clone()), opts)
            .await
            .unwrap()
    }
}

async fn provision(c: &Control, keys: &[String], mode: Mode, server: &str) {
    let gate = Arc::new(tokio::sync::Semaphore::new(6));
    let mut set = tokio::task::JoinSet::new();
    for k in keys {
        let (c, k, gate) = (c.clone(), k.clone(), gate.clone());
        let opts = CreateOptions {
            mode: Some(mode),
            server: Some(server.to_string()),
        };
        set.spawn(async move {
            let _p = gate.acquire_owned().await.unwrap();
            c.provision(&k, &opts, WAIT).await.unwrap();
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

/// A TCP proxy to `upstream` that counts the statements clients send: simple queries (`Q`) and
/// extended-protocol executions (`E`).
async fn counting_proxy(upstream: u16) -> (u16, Arc<AtomicUsize>) {
    proxy(upstream, Arc::new(AtomicBool::new(false))).await
}

/// As [`counting_proxy`]; while `break_commits` is set, a simple query `COMMIT` reaches the server
/// but the connection then breaks: the client never sees the answer.
async fn proxy(upstream: u16, break_commits: Arc<AtomicBool>) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let server = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
                .await
                .unwrap();
            let (mut cr, cw) = client.into_split();
            let (sr, mut sw) = server.into_split();
            let counter = counter.clone();
            let answers = tokio::spawn(async move {
                let mut sr = sr;
                let mut cw = cw;
                let _ = tokio::io::copy(&mut sr, &mut cw).await;
            });
            let break_commits = break_commits.clone();
            tokio::spawn(async move {
                // The startup message has no type byte: length first.
                let mut len = [0u8; 4];
                if cr.read_exact(&mut len).await.is_err() {
                    return;
                }
                let n = u32::from_be_bytes(len) as usize;
                let mut body = vec![0u8; n - 4];
                if cr.read_exact(&mut body).await.is_err() {
                    return;
                }
                let _ = sw.write_all(&len).await;
                let _ = sw.write_all(&body).await;
                loop {
                    let mut head = [0u8; 5];
                    if cr.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    let n = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
                    let mut body = vec![0u8; n - 4];
                    if cr.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    if head[0] == b'Q' || head[0] == b'E' {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    if head[0] == b'Q'
                        && body.starts_with(b"COMMIT")
                        && break_commits.load(Ordering::SeqCst)
                    {
                        answers.abort();
                        let _ = sw.write_all(&head).await;
                        let _ = sw.write_all(&body).await;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        return;
                    }
                    if sw.write_all(&head).await.is_err() || sw.write_all(&body).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, count)
}

#[tokio::test]
async fn warm_clients_send_nothing_but_the_application_s_statements() {
    let cluster = TestCluster::start();
    let (port, count) = counting_proxy(cluster.port()).await;
    let proxied = cluster
        .url()
        .replace(&format!(":{}/", cluster.port()), &format!(":{port}/"));
    let s = Setup::new(&[("proxied", proxied)]).await;
    let c = s.control().await;
    provision(&c, &["a".into(), "b".into()], Mode::Schema, "proxied").await;
    provision(&c, &["d".into()], Mode::Database, "proxied").await;
    // Logins of the tenants' own roles: nothing but the application's statements.
    let fleet = s
        .fleet(RouterOptions {
            shared_connections: false,
            ..RouterOptions::default()
        })
        .await;
    // Warm: the first use reads the catalog (not through the proxy) and opens a connection.
    let warm = |fleet: pgfleet::Fleet| async move {
        for key in ["a", "b", "d"] {
            fleet
                .client(key)
                .await
                .unwrap()
                .simple_query("select 1")
                .await
                .unwrap();
        }
    };
    warm(fleet.clone()).await;
    let before = count.load(Ordering::SeqCst);
    const N: usize = 300;
    for i in 0..N {
        let key = ["a", "b", "d"][i % 3];
        let client = fleet.client(key).await.unwrap();
        client.simple_query("select 1").await.unwrap();
    }
    assert_eq!(count.load(Ordering::SeqCst) - before, N);
    // The connection is the tenant's own role, in its own schema.
    let client = fleet.client("a").await.unwrap();
    let row = client
        .query_one("SELECT current_user::text, current_schema()::text", &[])
        .await
        .unwrap();
    let t = c.tenant("a").await.unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        (t.role.clone(), t.schema.clone())
    );
    assert_eq!(
        (client.key(), client.server(), client.mode()),
        ("a", "proxied", "schema")
    );
    assert!(!client.is_fallback());
    // Unknown keys are refused with a typed error.
    let err = fleet.client("nobody").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    drop(client);

    // Shared connections (the default for schema tenants). While the budget has room, a tenant
    // no idle shared connection serves gets a new one rather than another tenant's: each keeps
    // one switched to it, and warm checkouts send nothing either.
    let fleet = s.fleet(RouterOptions::default()).await;
    warm(fleet.clone()).await;
    assert_eq!(
        fleet.router().switches(),
        2,
        "a new connection for a, then b"
    );
    let before = count.load(Ordering::SeqCst);
    for i in 0..N {
        let key = ["a", "b", "d"][i % 3];
        let client = fleet.client(key).await.unwrap();
        assert_eq!(client.is_shared(), key != "d");
        client.simple_query("select 1").await.unwrap();
    }
    assert_eq!(count.load(Ordering::SeqCst) - before, N);
    assert_eq!(fleet.router().switches(), 2);
    // With a budget of two (d's connection and one shared), a and b take turns on one shared
    // connection: each checkout that changes tenant queues one message of its own (the reset
    // and the switch) ahead of the application's, and does not wait for its answer.
    drop(fleet);
    let fleet = s
        .fleet(RouterOptions {
            budget_per_server: 2,
            ..RouterOptions::default()
        })
        .await;
    warm(fleet.clone()).await;
    let (before, switched) = (count.load(Ordering::SeqCst), fleet.router().switches());
    for i in 0..N {
        let key = ["a", "b", "d"][i % 3];
        let client = fleet.client(key).await.unwrap();
        client.simple_query("select 1").await.unwrap();
    }
    assert_eq!(count.load(Ordering::SeqCst) - before, N + 2 * N / 3);
    assert_eq!(fleet.router().switches() - switched, (2 * N / 3) as u64);
    // A tenant forgotten (its placement re-read) while it holds a shared connection: the
    // connection goes back to serve the others, it is not closed.
    let b = fleet.client("b").await.unwrap();
    let pid = backend_pid(&b).await;
    fleet.router().forget("b");
    drop(b);
    let a = fleet.client("a").await.unwrap();
    assert_eq!(backend_pid(&a).await, pid, "the same shared connection");
    drop(a);
    // Back to the tenant it serves already: nothing but the application's statement.
    fleet
        .client("a")
        .await
        .unwrap()
        .simple_query("select 1")
        .await
        .unwrap();
    let before = count.load(Ordering::SeqCst);
    for _ in 0..10 {
        fleet
            .client("a")
            .await
            .unwrap()
            .simple_query("select 1")
            .await
            .unwrap();
    }
    assert_eq!(count.load(Ordering::SeqCst) - before, 10);
    let client = fleet.client("a").await.unwrap();
    client.verify().await.unwrap();
    let row = client
        .query_one(
            "SELECT current_user::text, session_user::text, current_schema()::text",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        t.role,
        "running as the tenant's role"
    );
    assert!(
        row.get::<_, String>(1).starts_with("pgfleet_pool_"),
        "logged in as the pool role"
    );
    assert_eq!(row.get::<_, String>(2), t.schema);
}

#[tokio::test]
async fn a_dropped_table_is_repaired_once_for_32_tasks_in_two_routers_and_wrong_queries_are_not() {
    let cluster = TestCluster::start();
    let s = Setup::new(&[("main", cluster.url())]).await;
    let c = s.control().await;
    provision(&c, &["healme".into()], Mode::Schema, "main").await;
    // Two routers (separate catalog sessions and pools; the two-process case is below).
    let f1 = s.fleet(RouterOptions::default()).await;
    let f2 = s.fleet(RouterOptions::default()).await;
    for f in [&f1, &f2] {
        f.with_tenant("healme", |c| async move {
            c.simple_query("SELECT count(*) FROM tags").await
        })
        .await
        .unwrap();
    }
    let t = c.tenant("healme").await.unwrap();
    let admin = pgfleet_testkit::connect(&cluster.url_for(&t.database)).await;
    admin
        .batch_execute(&format!("DROP TABLE {}.tags", t.schema))
        .await
        .unwrap();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..32 {
        let f = if i % 2 == 0 { f1.clone() } else { f2.clone() };
        set.spawn(async move {
            f.with_tenant("healme", |c| async move {
                c.query_one("SELECT count(*) FROM tags", &[]).await
            })
            .await
        });
    }
    while let Some(r) = set.join_next().await {
        let n: i64 = r.unwrap().unwrap().get(0);
        assert_eq!(n, 0);
    }
    let corrections: Vec<serde_json::Value> = c
        .catalog()
        .query(
            "SELECT detail::text FROM pgfleet.events WHERE tenant_key = 'healme' AND kind = 'tenant.correction'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(r.get::<_, &str>(0)).unwrap())
        .collect();
    // One repair: the table and its index, each a recorded step of the same repair.
    assert!(!corrections.is_empty());
    let tables: Vec<&serde_json::Value> = corrections
        .iter()
        .filter(|d| d["object"].as_str().unwrap_or("").contains("table"))
        .collect();
    assert_eq!(tables.len(), 1, "{corrections:?}");
    let reason = tables[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("tags") && reason.contains("42P01"),
        "{reason}"
    );
    assert!(
        tables[0]["statement"]
            .as_str()
            .unwrap()
            .contains("CREATE TABLE")
    );

    // A table that is not in the target: one attempt, the original error, no repair loop.
    let before = corrections.len();
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    let err = f1
        .with_tenant("healme", move |c| {
            a.fetch_add(1, Ordering::SeqCst);
            async move { c.simple_query("SELECT * FROM no_such_table").await }
        })
        .await
        .unwrap_err();
    assert_eq!(attempts.load(Ordering::SeqCst), 1);
    assert_eq!(err.db_error().unwrap().code().code(), "42P01", "{err}");
    assert!(!err.healed());
    // Again at once: within the cooldown, not even a repair attempt.
    let started = Instant::now();
    let err = f1
        .with_tenant("healme", |c| async move {
            c.simple_query("SELECT * FROM no_such_table").await
        })
        .await
        .unwrap_err();
    assert!(err.db_error().is_some());
    assert!(started.elapsed() < Duration::from_secs(2));
    let after: i64 = c
        .catalog()
        .query_one(
            "SELECT count(*) FROM pgfleet.events WHERE tenant_key = 'healme' AND kind = 'tenant.correction'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(after as usize, before);
}

#[tokio::test]
async fn the_budget_holds_under_load_and_a_hot_tenant_does_not_starve_the_others() {
    let cluster = TestCluster::start();
    let s = Setup::new(&[("main", cluster.url())]).await;
    let c = s.control().await;
    let keys: Vec<String> = (0..500).map(|i| format!("t{i:03}")).collect();
    provision(&c, &keys, Mode::Schema, "main").await;
    let opts = RouterOptions {
        budget_per_server: 20,
        per_tenant: 3,
        acquire_timeout: Duration::from_secs(10),
        ..RouterOptions::default()
    };
    let fleet = s.fleet(opts).await;
    let admin = pgfleet_testkit::connect(&cluster.url()).await;
    let peak = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (peak, stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let n: i64 = admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgfleet router%'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                peak.fetch_max(n as usize, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut set = tokio::task::JoinSet::new();
    // 50 tasks hammer one tenant...
    for _ in 0..50 {
        let f = fleet.clone();
        set.spawn(async move {
            for _ in 0..20 {
                let c = f.client("t000").await?;
                c.simple_query("SELECT pg_sleep(0.002)").await.unwrap();
            }
            Ok::<_, pgfleet::RouterError>(())
        });
    }
    // ...while 60 tasks go round all the others.
    for w in 0..60 {
        let (f, keys) = (fleet.clone(), keys.clone());
        set.spawn(async move {
            for i in 0..40 {
                let key = &keys[1 + (w * 7 + i * 13) % (keys.len() - 1)];
                let c = f.client(key).await?;
                c.simple_query("select 1").await.unwrap();
            }
            Ok(())
        });
    }
    let mut errors = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Err(e) = r.unwrap() {
            errors.push(e.to_string());
        }
    }
    stop.store(true, Ordering::SeqCst);
    watcher.await.unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= 20, "peak {peak} connections over a budget of 20");
    assert!(peak >= 10, "the test never loaded the server ({peak})");
    assert!(fleet.router().open_connections()["main"] <= 20);
}

#[tokio::test]
async fn a_stopped_server_fails_fast_others_serve_and_rotation_and_drop_are_seen_live() {
    let mut down = TestCluster::start();
    let up = TestCluster::start();
    let s = Setup::new(&[("down", down.url()), ("up", up.url())]).await;
    let c = s.control().await;
    provision(&c, &["on-down".into()], Mode::Schema, "down").await;
    provision(&c, &["on-up".into(), "rotated".into()], Mode::Schema, "up").await;
    provision(&c, &["dropped".into()], Mode::Database, "up").await;
    let fleet = s.fleet(RouterOptions::default()).await;
    for k in ["on-down", "on-up", "rotated", "dropped"] {
        fleet
            .client(k)
            .await
            .unwrap()
            .simple_query("select 1")
            .await
            .unwrap();
    }
    down.stop();
    let started = Instant::now();
    // Pooled connections died with the server; a new one is refused at once.
    let mut last = None;
    for _ in 0..3 {
        match fleet.client("on-down").await {
            Ok(c) => {
                assert!(c.simple_query("select 1").await.is_err());
            }
            Err(e) => last = Some(e),
        }
    }
    let err = last.expect("the stopped server's tenant was served");
    assert!(err.is_unavailable(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    fleet
        .client("on-up")
        .await
        .unwrap()
        .simple_query("select 1")
        .await
        .unwrap();
    down.restart();

    // Rotation: the running router logs in with the new password.
    c.rotate_password("rotated").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    fleet
        .client("rotated")
        .await
        .unwrap()
        .simple_query("select 1")
        .await
        .unwrap();

    // Drop: the running router stops serving it.
    c.drop_tenant("dropped").await.unwrap();
    let started = Instant::now();
    loop {
        match fleet.client("dropped").await {
            Err(e) if e.is_not_found() => break,
            Ok(_) | Err(_) => {
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "the dropped tenant is still served"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn two_processes_heal_a_dropped_table_once() {
    let cluster = TestCluster::start();
    let s = Setup::new(&[("main", cluster.url())]).await;
    let c = s.control().await;
    provision(&c, &["twoproc".into()], Mode::Schema, "main").await;
    let flag = std::env::temp_dir().join(format!("pgfleet-heal-flag-{}", std::process::id()));
    let _ = std::fs::remove_file(&flag);
    // The second process: examples/heal_child.rs.
    let mut child = tokio::process::Command::new(pgfleet_testkit::example_bin("heal_child"))
        .env("PGFLEET_HEAL_CHILD", "twoproc")
        .env("PGFLEET_CATALOG_URL", s.catalog.url())
        .env("PGFLEET_MASTER_KEY", s.key.to_base64().expose())
        .env("PGFLEET_HEAL_FLAG", &flag)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        use tokio::io::AsyncBufReadExt;
        assert!(
            out.read_line(&mut line).await.unwrap() > 0,
            "the child process ended early"
        );
        if line.contains("child ready") {
            break;
        }
    }
    let fleet = s.fleet(RouterOptions::default()).await;
    fleet
        .with_tenant(
            "twoproc",
            |c| async move { c.simple_query("SELECT 1").await },
        )
        .await
        .unwrap();
    let t = c.tenant("twoproc").await.unwrap();
    let admin = pgfleet_testkit::connect(&cluster.url_for(&t.database)).await;
    admin
        .batch_execute(&format!("DROP TABLE {}.tags", t.schema))
        .await
        .unwrap();
    std::fs::write(&flag, b"go").unwrap();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let f = fleet.clone();
        set.spawn(async move {
            f.with_tenant("twoproc", |c| async move {
                c.query_one("SELECT count(*) FROM tags", &[]).await
            })
            .await
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
    let mut rest = String::new();
    out.read_to_string(&mut rest).await.unwrap();
    assert!(child.wait().await.unwrap().success(), "{rest}");
    assert!(rest.contains("child ok 16"), "{rest}");
    let _ = std::fs::remove_file(&flag);
    let tables: i64 = c
        .catalog()
        .query_one(
            "SELECT count(*) FROM pgfleet.events WHERE tenant_key = 'twoproc' AND kind = 'tenant.correction'
               AND detail->>'object' LIKE 'create table%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 1, "the table was repaired more than once");
}

#[tokio::test]
async fn unknown_keys_are_refused_provisioned_or_sent_to_a_configured_fallback_visibly() {
    let cluster = TestCluster::start();
    let s = Setup::new(&[("main", cluster.url())]).await;
    // Not ready within the wait: the control plane's timeout reaches the caller as a typed,
    // retryable DirectoryError (provisioning goes on, and the next call below finishes it).
    let impatient = s
        .fleet(RouterOptions {
            unknown: pgfleet::UnknownPolicy::Provision(Duration::ZERO),
            ..RouterOptions::default()
        })
        .await;
    let err = impatient.client("first-use").await.unwrap_err();
    assert!(err.is_retryable() && !err.is_not_found(), "{err}");
    let source =
        std::error::Error::source(&err).and_then(|e| e.downcast_ref::<pgfleet::DirectoryError>());
    assert!(
        matches!(source, Some(pgfleet::DirectoryError::NotReady { .. })),
        "{err:?}"
    );
    // Provision on first use.
    let fleet = s
        .fleet(RouterOptions {
            unknown: pgfleet::UnknownPolicy::Provision(Duration::from_secs(120)),
            ..RouterOptions::default()
        })
        .await;
    let client = fleet.client("first-use").await.unwrap();
    client
        .simple_query("SELECT count(*) FROM notes")
        .await
        .unwrap();
    assert!(!client.is_fallback());
    // A configured fallback: used, and visibly so.
    let fallback = TestDb::named("fallback").await;
    let fleet = s
        .fleet(RouterOptions {
            fallback: Some(pgfleet::pg::connect::parse_url(fallback.url()).unwrap()),
            ..RouterOptions::default()
        })
        .await;
    let client = fleet.client("stranger").await.unwrap();
    assert!(client.is_fallback());
    assert_eq!(client.database(), fallback.name());
    // Known tenants are still served from their own place.
    assert!(!fleet.client("first-use").await.unwrap().is_fallback());
    // Without a fallback: refused.
    let fleet = s.fleet(RouterOptions::default()).await;
    assert!(fleet.client("stranger").await.unwrap_err().is_not_found());
}

/// Trusted callers of schema tenants share the pool role's connections: one connection (a budget
/// of 1) serves tenant `a`, then `b`, and nothing of `a`'s session reaches `b` — settings, SQL
/// prepared statements, cursors held past a transaction, advisory locks, `LISTEN`, an open
/// transaction (rolled back), a failed transaction (the next work runs on another connection),
/// temporary tables (tenants may create none). A switch that cannot take
/// effect fails the work (nothing runs), and the tenant is then served by its own logins. Callers
/// of other connection kinds (end users' front doors) always log in as the tenant.
#[tokio::test]
async fn a_shared_connection_carries_nothing_from_one_tenant_to_the_next_and_fails_closed() {
    let cluster = TestCluster::start();
    let s = Setup::new(&[("main", cluster.url())]).await;
    let c = s.control().await;
    provision(
        &c,
        &["a".into(), "b".into(), "c".into()],
        Mode::Schema,
        "main",
    )
    .await;
    let fleet = s
        .fleet(RouterOptions {
            budget_per_server: 1,
            ..RouterOptions::default()
        })
        .await;
    let a = fleet.client("a").await.unwrap();
    assert!(a.is_shared());
    let a_pid = backend_pid(&a).await;
    a.batch_execute(
        "SET work_mem = '7MB';
         PREPARE a_stmt AS SELECT 1;
         BEGIN; DECLARE a_cur CURSOR WITH HOLD FOR SELECT 1; COMMIT;
         SELECT pg_advisory_lock(4242);
         LISTEN a_channel;",
    )
    .await
    .unwrap();
    let temp = a.batch_execute("CREATE TEMP TABLE a_temp (x int)").await;
    assert!(temp.is_err(), "a tenant may create no temporary table");
    a.batch_execute("BEGIN; INSERT INTO notes (body) VALUES ('uncommitted of a')")
        .await
        .unwrap();
    drop(a); // back to the pool idle in a transaction

    let b = fleet.client("b").await.unwrap();
    assert_eq!(backend_pid(&b).await, a_pid, "the same server connection");
    let tb = c.tenant("b").await.unwrap();
    let row = b
        .query_one(
            "SELECT current_user::text, current_schema()::text, current_setting('work_mem'),
                    (SELECT count(*) FROM pg_prepared_statements WHERE from_sql),
                    (SELECT count(*) FROM pg_cursors WHERE name = 'a_cur'),
                    (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()),
                    (SELECT count(*) FROM pg_listening_channels()),
                    (SELECT count(*) FROM notes)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), tb.role);
    assert_eq!(row.get::<_, String>(1), tb.schema);
    assert_eq!(row.get::<_, String>(2), "4MB", "a's setting is gone");
    for (i, what) in [
        (3, "prepared statements"),
        (4, "cursors"),
        (5, "advisory locks"),
        (6, "LISTEN channels"),
        (7, "notes of b"),
    ] {
        assert_eq!(row.get::<_, i64>(i), 0, "{what} of a seen by b");
    }
    // a's transaction was rolled back, not committed by b's checkout.
    let ta = c.tenant("a").await.unwrap();
    let admin = pgfleet_testkit::connect(&cluster.url_for(&ta.database)).await;
    let rows: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {}.notes", ta.schema), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "a's open transaction was rolled back");
    // b cannot reach a: a's schema is not b's, and a's role is not b's to take.
    assert!(
        b.simple_query(&format!("SELECT * FROM {}.notes", ta.schema))
            .await
            .is_err()
    );
    drop(b);

    // A failed transaction left on the shared connection: the next tenant's checkout cannot end
    // it quietly (its `BEGIN` fails), so its work, of which nothing ran, runs once more on a new
    // connection, and that tenant keeps sharing.
    let b = fleet.client("b").await.unwrap();
    assert!(b.batch_execute("BEGIN; SELECT 1/0").await.is_err());
    drop(b);
    let n = fleet
        .with_tenant("a", |client| async move {
            assert!(client.is_shared());
            client
                .execute(
                    "INSERT INTO notes (body) VALUES ('after a failed transaction')",
                    &[],
                )
                .await
        })
        .await
        .unwrap();
    assert_eq!(n, 1);
    let rows: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {}.notes", ta.schema), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "a's insert ran once");
    assert!(
        fleet.client("a").await.unwrap().is_shared(),
        "a still shares"
    );

    // Fail-closed: the pool role loses its membership in c's role behind pgfleet's back.
    let pool: String = admin
        .query_one(
            "SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'pgfleet_pool_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let tc = c.tenant("c").await.unwrap();
    admin
        .batch_execute(&format!("REVOKE {} FROM {pool}", tc.role))
        .await
        .unwrap();
    let err = fleet
        .with_tenant("c", |client| async move {
            client
                .execute("INSERT INTO notes (body) VALUES ('ran as whom?')", &[])
                .await
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, pgfleet::RouterError::RoleSwitch { .. }),
        "{err}"
    );
    assert!(err.is_retryable());
    let rows: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {}.notes", tc.schema), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "nothing ran");
    // The next attempt logs in as c.
    let n = fleet
        .with_tenant("c", |client| async move {
            assert!(!client.is_shared());
            client
                .execute("INSERT INTO notes (body) VALUES ('as c')", &[])
                .await
        })
        .await
        .unwrap();
    assert_eq!(n, 1);

    // End users' connection kinds log in as the tenant, never as the pool role.
    let own = fleet
        .router()
        .connection("a", &pgfleet::router::PgBackend)
        .await
        .unwrap();
    let who: String = own
        .query_one("SELECT session_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, ta.role);
}

async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

/// The control plane as a directory that counts its lookups.
struct Counting(Control, Arc<AtomicUsize>);

impl pgfleet::router::Directory for Counting {
    async fn lookup(
        &self,
        key: &str,
    ) -> Result<Option<pgfleet::router::Placement>, pgfleet::router::DirectoryError> {
        self.1.fetch_add(1, Ordering::SeqCst);
        pgfleet::router::Directory::lookup(&self.0, key).await
    }

    async fn preload(
        &self,
        limit: usize,
    ) -> Result<Vec<pgfleet::router::Placement>, pgfleet::router::DirectoryError> {
        pgfleet::router::Directory::preload(&self.0, limit).await
    }

    async fn provision(
        &self,
        key: &str,
        timeout: Duration,
    ) -> Result<pgfleet::router::Placement, pgfleet::router::DirectoryError> {
        pgfleet::router::Directory::provision(&self.0, key, timeout).await
    }

    async fn repair(
        &self,
        key: &str,
        error: &str,
        seen_at: std::time::SystemTime,
    ) -> Result<pgfleet::router::Repair, pgfleet::router::DirectoryError> {
        pgfleet::router::Directory::repair(&self.0, key, error, seen_at).await
    }
}

#[tokio::test]
async fn preloaded_placements_serve_first_uses_without_reading_the_directory() {
    let s = Setup::new(&[("main", pgfleet_testkit::shared().url())]).await;
    let c = s.control().await;
    provision(&c, &["pa".into(), "pb".into()], Mode::Schema, "main").await;
    provision(&c, &["pd".into()], Mode::Database, "main").await;
    let lookups = Arc::new(AtomicUsize::new(0));
    let router = pgfleet::router::Router::new(
        Counting(c.clone(), lookups.clone()),
        RouterOptions::default(),
    );
    assert_eq!(router.preload(100).await.unwrap(), 3);
    assert_eq!(
        router.preload(100).await.unwrap(),
        0,
        "known keys keep their entries"
    );
    for key in ["pa", "pb", "pd"] {
        let t = c.tenant(key).await.unwrap();
        let client = router.client(key).await.unwrap();
        assert_eq!(client.is_shared(), key != "pd");
        let row = client
            .query_one("SELECT current_user::text, current_schema()::text", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), t.role);
        assert_eq!(row.get::<_, String>(1), t.schema);
    }
    assert_eq!(lookups.load(Ordering::SeqCst), 0, "no directory read");
    // A forgotten key is read again at its next use; unknown keys are still refused.
    router.forget("pa");
    router.client("pa").await.unwrap();
    assert_eq!(lookups.load(Ordering::SeqCst), 1);
    assert!(router.client("nobody").await.unwrap_err().is_not_found());
    // At most `limit`, newest first.
    let other = pgfleet::router::Router::new(
        Counting(c.clone(), Arc::new(AtomicUsize::new(0))),
        RouterOptions::default(),
    );
    assert_eq!(other.preload(1).await.unwrap(), 1);
}

#[tokio::test]
async fn transactions_run_again_what_did_not_commit_and_report_what_may_have() {
    let cluster = TestCluster::start();
    let break_commits = Arc::new(AtomicBool::new(false));
    let (port, _) = proxy(cluster.port(), break_commits.clone()).await;
    let proxied = cluster
        .url()
        .replace(&format!(":{}/", cluster.port()), &format!(":{port}/"));
    let s = Setup::new(&[("main", cluster.url()), ("proxied", proxied)]).await;
    let c = s.control().await;
    provision(&c, &["tx".into()], Mode::Schema, "main").await;
    provision(&c, &["far".into()], Mode::Schema, "proxied").await;
    let fleet = s
        .fleet(RouterOptions {
            budget_per_server: 20,
            per_tenant: 16,
            retry_burst: 1_000,
            ..RouterOptions::default()
        })
        .await;
    let t = c.tenant("tx").await.unwrap();
    let admin = pgfleet_testkit::connect(&cluster.url_for(&t.database)).await;
    let count = |body: &'static str| {
        let (admin, table) = (&admin, format!("{}.notes", t.schema));
        async move {
            admin
                .query_one(
                    &format!("SELECT count(*) FROM {table} WHERE body LIKE $1"),
                    &[&body],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };

    // Serialization failures under load: 4 tasks, each transaction reads how many rows there are
    // and adds one saying so, SERIALIZABLE. Every one commits (failures run again), exactly once:
    // the rows say 0, 1, 2 … with no gap and no repeat.
    let attempts = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (fleet, attempts) = (fleet.clone(), attempts.clone());
        set.spawn(async move {
            for _ in 0..5 {
                let attempts = attempts.clone();
                fleet
                    .transaction("tx", move |c| {
                        attempts.fetch_add(1, Ordering::SeqCst);
                        Box::pin(async move {
                            c.batch_execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                                .await?;
                            let n: i64 = c
                                .query_one("SELECT count(*) FROM notes WHERE body LIKE 'n=%'", &[])
                                .await?
                                .get(0);
                            c.execute("INSERT INTO notes (body) VALUES ($1)", &[&format!("n={n}")])
                                .await
                        })
                    })
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let bodies: Vec<String> = admin
        .query(
            &format!(
                "SELECT body FROM {}.notes WHERE body LIKE 'n=%' ORDER BY id",
                t.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut seen: Vec<i64> = bodies.iter().map(|b| b[2..].parse().unwrap()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..20).collect::<Vec<i64>>());
    let tried = attempts.load(Ordering::SeqCst);
    assert!(tried > 20, "no serialization failure in {tried} attempts");

    // A backend terminated inside the transaction: nothing committed, so it runs again, once.
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    let killer = pgfleet_testkit::connect(&cluster.url()).await;
    let killer = Arc::new(killer);
    let k = killer.clone();
    fleet
        .transaction("tx", move |c| {
            let first = a.fetch_add(1, Ordering::SeqCst) == 0;
            let k = k.clone();
            Box::pin(async move {
                c.execute("INSERT INTO notes (body) VALUES ('terminated')", &[])
                    .await?;
                if first {
                    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
                    k.execute("SELECT pg_terminate_backend($1)", &[&pid])
                        .await
                        .unwrap();
                }
                c.execute("SELECT 1", &[]).await
            })
        })
        .await
        .unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(count("terminated").await, 1);

    // An error of the SQL is not transient: one attempt, the error.
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    let err = fleet
        .transaction("tx", move |c| {
            a.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                c.execute("INSERT INTO notes (body) VALUES (NULL)", &[])
                    .await
            })
        })
        .await
        .unwrap_err();
    assert_eq!(err.sqlstate(), Some("23502"), "{err}");
    assert_eq!(attempts.load(Ordering::SeqCst), 1);

    // The connection breaks after COMMIT was sent: the outcome is unknown, reported so, and the
    // work is not run again.
    let far = c.tenant("far").await.unwrap();
    let far_admin = pgfleet_testkit::connect(&cluster.url_for(&far.database)).await;
    let plain = s
        .fleet(RouterOptions {
            shared_connections: false,
            ..RouterOptions::default()
        })
        .await;
    break_commits.store(true, Ordering::SeqCst);
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    let err = plain
        .transaction("far", move |c| {
            a.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                c.execute("INSERT INTO notes (body) VALUES ('maybe')", &[])
                    .await
            })
        })
        .await
        .unwrap_err();
    break_commits.store(false, Ordering::SeqCst);
    assert!(err.is_outcome_unknown(), "{err}");
    assert_eq!(err.sqlstate(), Some("08007"));
    assert!(!err.is_retryable());
    assert_eq!(attempts.load(Ordering::SeqCst), 1, "never run again");
    let maybe: i64 = far_admin
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.notes WHERE body = 'maybe'",
                far.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(maybe <= 1, "applied {maybe} times");

    // A server that refuses logins for now (too many connections for the role): the connection
    // is opened again after a wait.
    admin
        .batch_execute(&format!("ALTER ROLE {} CONNECTION LIMIT 0", far.role))
        .await
        .unwrap();
    let cluster_url = cluster.url();
    let role = far.role.clone();
    let reopen = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        pgfleet_testkit::connect(&cluster_url)
            .await
            .batch_execute(&format!("ALTER ROLE {role} CONNECTION LIMIT -1"))
            .await
            .unwrap();
    });
    // `plain` closed its only connection to far (the outcome was unknown): it opens a new one.
    let started = Instant::now();
    let client = plain.client("far").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
    client.simple_query("SELECT 1").await.unwrap();
    reopen.await.unwrap();
}

/// A transaction that adds a note saying `body`, counting its attempts.
fn insert_note(
    body: &'static str,
    attempts: Arc<AtomicUsize>,
) -> impl for<'c> FnMut(&'c pgfleet::TenantClient) -> pgfleet::router::TransactionFuture<'c, u64> {
    move |c| {
        attempts.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            c.execute("INSERT INTO notes (body) VALUES ($1)", &[&body])
                .await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_rides_out_a_server_restart() {
    let cluster = TestCluster::start();
    let s = Setup::new(&[("main", cluster.url())]).await;
    let c = s.control().await;
    provision(&c, &["rs".into()], Mode::Schema, "main").await;
    let t = c.tenant("rs").await.unwrap();
    let fleet = s.fleet(RouterOptions::default()).await;
    // A pooled connection, which the shutdown will terminate.
    let attempts = Arc::new(AtomicUsize::new(0));
    fleet
        .transaction("rs", insert_note("before", attempts.clone()))
        .await
        .unwrap();
    let mut cluster = tokio::task::spawn_blocking(move || {
        cluster.stop();
        cluster
    })
    .await
    .unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let work = {
        let (fleet, attempts) = (fleet.clone(), attempts.clone());
        tokio::spawn(async move {
            fleet
                .transaction("rs", insert_note("during", attempts))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.restart();
        cluster
    })
    .await
    .unwrap();
    work.await.unwrap().unwrap();
    let admin = pgfleet_testkit::connect(&cluster.url_for(&t.database)).await;
    let rows: i64 = admin
        .query_one(
            &format!(
                "SELECT count(*) FROM {}.notes WHERE body = 'during'",
                t.schema
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "applied once");
    // The work ran at most twice: on the pooled connection the shutdown broke (if it was not
    // seen closed yet), then once the server was back; asking for a connection while it was down
    // ran nothing.
    assert!((1..=2).contains(&attempts.load(Ordering::SeqCst)));
}

/// `Fleet::query_cached`: one statement's text output, and what the cache did.
async fn cached(
    fleet: &Fleet,
    key: &str,
    sql: &str,
    params: &[Option<&str>],
) -> (String, CacheStatus) {
    let (r, status) = fleet.query_cached(key, sql, params).await.unwrap();
    let text = r
        .rows
        .iter()
        .map(|row| {
            row.values()
                .map(|v| v.unwrap_or("NULL"))
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect::<Vec<_>>()
        .join(";");
    (text, status)
}

const TAGS: &str = "/* pgfleet:cache max-age=60 */ SELECT count(*) FROM tags";
const NOTE_BODY: &str = "/* pgfleet:cache max-age=60 */ SELECT body FROM note_bodies WHERE id = $1";
const AUDIT: &str = "/* pgfleet:cache max-age=60 */ SELECT count(*) FROM audit";

/// Adds a note with `tags` tags through the cache's own call; its id.
async fn note_with_tags(fleet: &Fleet, key: &str, tags: usize) -> String {
    let (id, _) = cached(
        fleet,
        key,
        "INSERT INTO notes (body) VALUES ('n') RETURNING id",
        &[],
    )
    .await;
    for i in 0..tags {
        let name = format!("t{i}");
        cached(
            fleet,
            key,
            "INSERT INTO tags (note_id, name) VALUES ($1, $2)",
            &[Some(&id), Some(&name)],
        )
        .await;
    }
    id
}

#[tokio::test]
async fn cached_reads_follow_every_write_made_through_pgfleet_and_stay_with_their_tenant() {
    use CacheStatus::{Bypass, Hit, Miss};
    let s = Setup::new(&[("main", pgfleet_testkit::shared().url())]).await;
    let c = s.control().await;
    provision(&c, &["ca".into(), "cb".into()], Mode::Schema, "main").await;
    provision(&c, &["cd".into()], Mode::Database, "main").await;
    let fleet = s.fleet(RouterOptions::default()).await;
    for key in ["ca", "cd"] {
        let note = note_with_tags(&fleet, key, 2).await;
        let n = Some(note.as_str());
        assert_eq!(
            cached(&fleet, key, TAGS, &[]).await,
            ("2".into(), Miss),
            "{key}"
        );
        assert_eq!(
            cached(&fleet, key, TAGS, &[]).await,
            ("2".into(), Hit),
            "{key}"
        );
        assert_eq!(
            cached(&fleet, key, NOTE_BODY, &[n]).await,
            ("N".into(), Miss)
        );
        assert_eq!(
            cached(&fleet, key, NOTE_BODY, &[n]).await,
            ("N".into(), Hit)
        );
        assert_eq!(cached(&fleet, key, AUDIT, &[]).await, ("0".into(), Miss));
        // An update of notes changes the view over it; tags' foreign key has no ON UPDATE
        // action, so the tag count stays cached.
        cached(
            &fleet,
            key,
            "UPDATE notes SET body = 'changed' WHERE id = $1",
            &[n],
        )
        .await;
        assert_eq!(
            cached(&fleet, key, NOTE_BODY, &[n]).await,
            ("CHANGED".into(), Miss)
        );
        assert_eq!(cached(&fleet, key, TAGS, &[]).await, ("2".into(), Hit));
        // The delete cascades into tags through the foreign key; audit is not touched, and stays
        // cached.
        cached(&fleet, key, "DELETE FROM notes WHERE id = $1", &[n]).await;
        assert_eq!(
            cached(&fleet, key, TAGS, &[]).await,
            ("0".into(), Miss),
            "{key}"
        );
        assert_eq!(
            cached(&fleet, key, NOTE_BODY, &[n]).await,
            ("".into(), Miss)
        );
        assert_eq!(cached(&fleet, key, AUDIT, &[]).await, ("0".into(), Hit));
        // The trigger on events writes audit.
        cached(&fleet, key, "INSERT INTO events (what) VALUES ('e')", &[]).await;
        assert_eq!(
            cached(&fleet, key, AUDIT, &[]).await,
            ("1".into(), Miss),
            "{key}"
        );
        // A result with a parameter is kept per value (the new note's writes dropped both).
        let other = note_with_tags(&fleet, key, 1).await;
        let o = Some(other.as_str());
        assert_eq!(
            cached(&fleet, key, NOTE_BODY, &[o]).await,
            ("N".into(), Miss)
        );
        assert_eq!(
            cached(&fleet, key, NOTE_BODY, &[n]).await,
            ("".into(), Miss)
        );
        assert_eq!(
            cached(&fleet, key, NOTE_BODY, &[o]).await,
            ("N".into(), Hit)
        );
        assert_eq!(cached(&fleet, key, NOTE_BODY, &[n]).await, ("".into(), Hit));
        // Row keys: a write that names the rows it changes leaves the cached reads of other
        // values alone, also when it writes the value differently (' +0…' is the same bigint).
        let by_note = "/* pgfleet:cache max-age=60 */ SELECT count(*) FROM tags WHERE note_id = $1";
        assert_eq!(cached(&fleet, key, by_note, &[o]).await, ("1".into(), Miss));
        assert_eq!(cached(&fleet, key, by_note, &[n]).await, ("0".into(), Miss));
        assert_eq!(cached(&fleet, key, TAGS, &[]).await.1, Miss);
        let spaced = format!(" +0{other}");
        let add = "INSERT INTO tags (note_id, name) VALUES ($1, 'k')";
        cached(&fleet, key, add, &[Some(&spaced)]).await;
        assert_eq!(cached(&fleet, key, by_note, &[n]).await, ("0".into(), Hit));
        assert_eq!(cached(&fleet, key, by_note, &[o]).await, ("2".into(), Miss));
        assert_eq!(
            cached(&fleet, key, TAGS, &[]).await.1,
            Miss,
            "no key: dropped"
        );
        // A delete through the parent cascades: the whole table, every value.
        cached(&fleet, key, "DELETE FROM notes WHERE id = $1", &[o]).await;
        assert_eq!(cached(&fleet, key, by_note, &[n]).await, ("0".into(), Miss));
    }
    // The same text for another tenant is that tenant's own result.
    note_with_tags(&fleet, "cb", 3).await;
    cached(&fleet, "ca", TAGS, &[]).await;
    assert_eq!(cached(&fleet, "cb", TAGS, &[]).await, ("3".into(), Miss));
    assert_eq!(cached(&fleet, "cb", TAGS, &[]).await, ("3".into(), Hit));
    assert_eq!(cached(&fleet, "ca", TAGS, &[]).await, ("0".into(), Hit));
    // Not cached: a function that is not IMMUTABLE, a locking clause, no comment.
    let now = "/* pgfleet:cache */ SELECT now()::text, count(*) FROM notes";
    assert_eq!(cached(&fleet, "ca", now, &[]).await.1, Miss);
    assert_eq!(cached(&fleet, "ca", now, &[]).await.1, Miss, "never stored");
    // A view that calls now() is not cached either.
    let view = "/* pgfleet:cache */ SELECT count(*) FROM notes_now";
    assert_eq!(cached(&fleet, "ca", view, &[]).await.1, Miss);
    assert_eq!(
        cached(&fleet, "ca", view, &[]).await.1,
        Miss,
        "never stored"
    );
    let lock = "/* pgfleet:cache */ SELECT id FROM notes FOR UPDATE";
    assert_eq!(cached(&fleet, "ca", lock, &[]).await.1, Bypass);
    assert_eq!(
        cached(&fleet, "ca", "SELECT count(*) FROM tags", &[]).await,
        ("0".into(), Bypass)
    );
    // A write around pgfleet is not seen until the application says so.
    let client = fleet.client("ca").await.unwrap();
    client
        .execute("INSERT INTO tags (name) VALUES ('around')", &[])
        .await
        .unwrap();
    drop(client);
    assert_eq!(cached(&fleet, "ca", TAGS, &[]).await, ("0".into(), Hit));
    fleet.router().invalidate_tenant("ca").await.unwrap();
    assert_eq!(cached(&fleet, "ca", TAGS, &[]).await, ("1".into(), Miss));
    // The configured tables are cached without a comment, and only they.
    let listed = s
        .fleet(RouterOptions {
            cache: CacheOptions {
                tables: vec!["notes".into()],
                ..CacheOptions::default()
            },
            ..RouterOptions::default()
        })
        .await;
    let notes = "SELECT count(*) FROM notes";
    assert_eq!(cached(&listed, "cb", notes, &[]).await.1, Miss);
    assert_eq!(cached(&listed, "cb", notes, &[]).await, ("1".into(), Hit));
    assert_eq!(
        cached(&listed, "cb", "SELECT count(*) FROM tags", &[])
            .await
            .1,
        Bypass
    );
    // A cascade back into the written table itself: row keys do not hold, the table goes.
    let add = "INSERT INTO comments (id, parent_id) VALUES ($1, $2)";
    cached(&fleet, "ca", add, &[Some("5"), None]).await;
    cached(&fleet, "ca", add, &[Some("6"), Some("5")]).await;
    let comment = "/* pgfleet:cache */ SELECT count(*) FROM comments WHERE id = $1";
    assert_eq!(
        cached(&fleet, "ca", comment, &[Some("6")]).await,
        ("1".into(), Miss)
    );
    cached(
        &fleet,
        "ca",
        "DELETE FROM comments WHERE id = $1",
        &[Some("5")],
    )
    .await;
    assert_eq!(
        cached(&fleet, "ca", comment, &[Some("6")]).await,
        ("0".into(), Miss)
    );
    // A CTE named like the table it reads: the table's writes still drop it.
    let shadow = "/* pgfleet:cache */ WITH tags AS (SELECT * FROM tags) SELECT count(*) FROM tags";
    let (before, _) = cached(&fleet, "ca", shadow, &[]).await;
    assert_eq!(cached(&fleet, "ca", shadow, &[]).await.1, Hit);
    cached(&fleet, "ca", "INSERT INTO tags (name) VALUES ('cte')", &[]).await;
    let (after, status) = cached(&fleet, "ca", shadow, &[]).await;
    assert_eq!(status, Miss);
    assert_eq!(
        after.parse::<i64>().unwrap(),
        before.parse::<i64>().unwrap() + 1
    );
    // A sequence changes without a write: never cached.
    let seq = "/* pgfleet:cache */ SELECT last_value FROM notes_id_seq";
    assert_eq!(cached(&fleet, "ca", seq, &[]).await.1, Miss);
    assert_eq!(cached(&fleet, "ca", seq, &[]).await.1, Miss);
    let stats = fleet.router().cache().stats();
    assert!(stats.entries > 0 && stats.bytes > 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_never_get_a_result_older_than_a_finished_write() {
    let s = Setup::new(&[("main", pgfleet_testkit::shared().url())]).await;
    let c = s.control().await;
    provision(&c, &["crace".into()], Mode::Schema, "main").await;
    let fleet = s.fleet(RouterOptions::default()).await;
    const COUNTERS: i64 = 4;
    for id in 1..=COUNTERS {
        let id = id.to_string();
        cached(
            &fleet,
            "crace",
            "INSERT INTO counters (id) VALUES ($1)",
            &[Some(&id)],
        )
        .await;
    }
    // What a finished write made each counter at least.
    let done: Arc<Vec<std::sync::atomic::AtomicI64>> = Arc::new(
        (0..=COUNTERS)
            .map(|_| std::sync::atomic::AtomicI64::new(0))
            .collect(),
    );
    let (hits, stale) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut set = tokio::task::JoinSet::new();
    for task in 0..8u64 {
        let (fleet, done, hits, stale) = (fleet.clone(), done.clone(), hits.clone(), stale.clone());
        set.spawn(async move {
            let mut x = task * 7919 + 1;
            for _ in 0..300 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let id = ((x >> 33) % COUNTERS as u64 + 1) as usize;
                let ids = id.to_string();
                if (x >> 20) % 5 == 0 {
                    let (n, _) = cached(
                        &fleet,
                        "crace",
                        "UPDATE counters SET n = n + 1 WHERE id = $1 RETURNING n",
                        &[Some(&ids)],
                    )
                    .await;
                    done[id].fetch_max(n.parse().unwrap(), Ordering::SeqCst);
                } else {
                    let floor = done[id].load(Ordering::SeqCst);
                    let (n, status) = cached(
                        &fleet,
                        "crace",
                        "/* pgfleet:cache max-age=60 */ SELECT n FROM counters WHERE id = $1",
                        &[Some(&ids)],
                    )
                    .await;
                    if status == CacheStatus::Hit {
                        hits.fetch_add(1, Ordering::Relaxed);
                    }
                    if n.parse::<i64>().unwrap() < floor {
                        stale.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    assert_eq!(stale.load(Ordering::Relaxed), 0, "stale reads");
    assert!(
        hits.load(Ordering::Relaxed) > 100,
        "the cache served {} reads",
        hits.load(Ordering::Relaxed)
    );
}

/// Two fleets over one catalog stand for two processes: separate caches that hear of each
/// other's writes only through the catalog's notifications.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_drops_what_a_write_or_a_repair_here_made_stale() {
    let cluster = TestCluster::start();
    let s = Setup::new(&[("main", cluster.url())]).await;
    let c = s.control().await;
    provision(&c, &["cx".into()], Mode::Schema, "main").await;
    let (a, b) = (
        s.fleet(RouterOptions::default()).await,
        s.fleet(RouterOptions::default()).await,
    );
    note_with_tags(&a, "cx", 1).await;
    // The notification channels listen from their first moments; give them those.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut delays = Vec::new();
    assert_eq!(cached(&a, "cx", TAGS, &[]).await.1, CacheStatus::Miss);
    for round in 0..5 {
        // The fresh read that ended the round before was stored.
        assert_eq!(cached(&a, "cx", TAGS, &[]).await.1, CacheStatus::Hit);
        let expected = (round + 2).to_string();
        let wrote = Instant::now();
        cached(&b, "cx", "INSERT INTO tags (name) VALUES ('x')", &[]).await;
        loop {
            let (n, _) = cached(&a, "cx", TAGS, &[]).await;
            if n == expected {
                break;
            }
            assert!(
                wrote.elapsed() < Duration::from_secs(5),
                "round {round}: still {n} after 5 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        delays.push(wrote.elapsed());
    }
    eprintln!("cross-process invalidation delays: {delays:?}");
    // A repair announces a schema change: every process drops the tenant.
    assert_eq!(cached(&a, "cx", TAGS, &[]).await.1, CacheStatus::Hit);
    let t = c.tenant("cx").await.unwrap();
    let admin = pgfleet_testkit::connect(&cluster.url_for(&t.database)).await;
    admin
        .batch_execute(&format!("DROP INDEX {}.tags_name", t.schema))
        .await
        .unwrap();
    assert!(!c.fix("cx", "test").await.unwrap().applied.is_empty());
    let fixed = Instant::now();
    while cached(&a, "cx", TAGS, &[]).await.1 == CacheStatus::Hit {
        assert!(
            fixed.elapsed() < Duration::from_secs(5),
            "still cached 5 s after the repair"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A pooled wire connection whose backend was terminated (a server restart, `pg_terminate_backend`)
/// does not fail the next request: it is found closed (on checkout, or by the `FATAL` that answers
/// the request first, see `wire::query` tests) and the request runs once on a new connection.
#[tokio::test]
async fn a_request_after_its_pooled_session_was_terminated_runs_once_on_another() {
    let cluster = TestCluster::start();
    let s = Setup::new(&[("main", cluster.url())]).await;
    let c = s.control().await;
    provision(&c, &["term".into()], Mode::Schema, "main").await;
    let fleet = s.fleet(RouterOptions::default()).await;
    let count = "SELECT count(*) FROM notes";
    assert_eq!(cached(&fleet, "term", count, &[]).await.0, "0");
    let admin = pgfleet_testkit::connect(&cluster.url()).await;
    for round in 0..3 {
        let killed: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'pgfleet'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(killed > 0, "round {round}: no pooled session to terminate");
        cached(
            &fleet,
            "term",
            "INSERT INTO notes (body) VALUES ('once')",
            &[],
        )
        .await;
        assert_eq!(
            cached(&fleet, "term", count, &[]).await.0,
            (round + 1).to_string()
        );
    }
}

/// A TCP proxy to `upstream` that, while `end_next` is set (it clears it), answers the next
/// request (`P` or `Q`) with a `FATAL` `57P01` and closes, without passing the request on: what a
/// server does to a session it terminated between the pool's check and the request.
async fn ending_proxy(upstream: u16, end_next: Arc<AtomicBool>) -> u16 {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut fatal = Vec::new();
    for (field, value) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', "57P01")]
        .into_iter()
        .chain([(b'M', "terminating connection due to administrator command")])
    {
        fatal.push(field);
        fatal.extend_from_slice(value.as_bytes());
        fatal.push(0);
    }
    fatal.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&(fatal.len() as u32 + 4).to_be_bytes());
    message.extend_from_slice(&fatal);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let mut server = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
                .await
                .unwrap();
            let (end_next, message) = (end_next.clone(), message.clone());
            tokio::spawn(async move {
                let (mut sbuf, mut cbuf, mut pending) =
                    (vec![0u8; 65536], vec![0u8; 65536], Vec::new());
                let mut started = false;
                loop {
                    tokio::select! {
                        n = server.read(&mut sbuf) => match n {
                            Ok(0) | Err(_) => return,
                            Ok(n) => if client.write_all(&sbuf[..n]).await.is_err() { return },
                        },
                        n = client.read(&mut cbuf) => {
                            let n = match n { Ok(0) | Err(_) => return, Ok(n) => n };
                            pending.extend_from_slice(&cbuf[..n]);
                            // Whole messages only; the startup message has no type byte.
                            loop {
                                let (skip, len) = if started { (1, 5) } else { (0, 4) };
                                if pending.len() < len { break; }
                                let l = u32::from_be_bytes(pending[skip..skip + 4].try_into().unwrap()) as usize;
                                if pending.len() < skip + l { break; }
                                let msg: Vec<u8> = pending.drain(..skip + l).collect();
                                if started && matches!(msg[0], b'P' | b'Q') && end_next.swap(false, Ordering::SeqCst) {
                                    let _ = client.write_all(&message).await;
                                    return;
                                }
                                started = true;
                                if server.write_all(&msg).await.is_err() { return; }
                            }
                        }
                    }
                }
            });
        }
    });
    port
}

/// The server ends a pooled session after the pool checked it and before the request reached
/// it: the request's first answer is a `FATAL`, nothing of it ran, and `Router::run` (the path of
/// `/sql` and `Fleet::query_cached`) runs it once more on a new connection.
#[tokio::test]
async fn a_session_ended_between_checkout_and_request_is_run_again_once() {
    let cluster = TestCluster::start();
    let end_next = Arc::new(AtomicBool::new(false));
    let port = ending_proxy(cluster.port(), end_next.clone()).await;
    let proxied = cluster
        .url()
        .replace(&format!(":{}/", cluster.port()), &format!(":{port}/"));
    let s = Setup::new(&[("proxied", proxied)]).await;
    let c = s.control().await;
    provision(&c, &["ended".into()], Mode::Schema, "proxied").await;
    let fleet = s.fleet(RouterOptions::default()).await;
    let count = "SELECT count(*) FROM notes";
    assert_eq!(cached(&fleet, "ended", count, &[]).await.0, "0");
    for round in 1..=3 {
        end_next.store(true, Ordering::SeqCst);
        cached(
            &fleet,
            "ended",
            "INSERT INTO notes (body) VALUES ('once')",
            &[],
        )
        .await;
        assert!(
            !end_next.load(Ordering::SeqCst),
            "round {round}: the proxy ended no session"
        );
        assert_eq!(
            cached(&fleet, "ended", count, &[]).await.0,
            round.to_string()
        );
    }
    // Through a batch too (a /sql transaction): its first exchange may run again.
    end_next.store(true, Ordering::SeqCst);
    let work = pgfleet::router::wire::Work::Batch {
        statements: vec![pgfleet::router::wire::Statement {
            sql: "INSERT INTO notes (body) VALUES ('batch')".into(),
            params: vec![],
        }],
        tx: Default::default(),
    };
    let backend = pgfleet::router::wire::WireBackend::new("pgfleet-test", None);
    fleet
        .router()
        .run(
            "ended",
            &backend,
            true,
            &work,
            pgfleet::router::wire::LIBRARY_LIMITS,
        )
        .await
        .unwrap();
    assert!(!end_next.load(Ordering::SeqCst));
    assert_eq!(cached(&fleet, "ended", count, &[]).await.0, "4");
}

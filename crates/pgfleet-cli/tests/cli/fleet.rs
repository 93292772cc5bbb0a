//! Fleet operations through the binary: `migrate --all` over 300 tenants on two servers (a
//! poisoned tenant, a canary, `kill -9` mid-run), `check --all`, and `pgfleet serve` (two processes
//! on one catalog, health of a stopped server, metrics, SIGTERM).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgfleet::control::Control;
use pgfleet::control::config::Config;
use pgfleet::control::provision::CreateOptions;
use pgfleet::control::secrets::MasterKey;
use pgfleet::control::tenant::Mode;
use pgfleet_testkit::TestCluster;

use crate::control::Env;
use crate::{stderr, stdout};

const WAIT: Duration = Duration::from_secs(300);

async fn control(env: &Env) -> Control {
    let key = MasterKey::from_base64(&env.key).unwrap();
    Control::connect(Config::new(env.catalog.url(), key))
        .await
        .unwrap()
}

/// Provisions `keys` (schema mode unless listed in `database`), `server_of(i)` choosing the server,
/// eight at a time.
async fn provision_many(
    c: &Control,
    keys: &[String],
    database: &[&str],
    server_of: impl Fn(usize) -> &'static str,
) {
    let gate = Arc::new(tokio::sync::Semaphore::new(8));
    let mut set = tokio::task::JoinSet::new();
    for (i, k) in keys.iter().enumerate() {
        let opts = CreateOptions {
            mode: Some(if database.contains(&k.as_str()) {
                Mode::Database
            } else {
                Mode::Schema
            }),
            server: Some(server_of(i).to_string()),
        };
        let (c, k, gate) = (c.clone(), k.clone(), gate.clone());
        set.spawn(async move {
            let _p = gate.acquire_owned().await.unwrap();
            c.provision(&k, &opts, WAIT).await.unwrap()
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

fn write_migration(env: &Env, name: &str, sql: &str) {
    let dir = env.migrations();
    std::fs::write(dir.join(name), sql).unwrap();
    env.ok(&["migrate", "hash", "--migrations", dir.to_str().unwrap()]);
}

fn migrate_all(env: &Env, extra: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let dir = env.migrations();
    let mut args = vec![
        "migrate",
        "--all",
        "--migrations",
        dir.to_str().unwrap(),
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = env.run(&args);
    let json = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    (out.status.code(), json, stderr(&out))
}

/// Where a tenant's objects are: (server URL, database, schema).
fn place(t: &serde_json::Value, main: &TestCluster, b: &TestCluster) -> (String, String, String) {
    let url = if t["server"] == "main" {
        main.url_for(t["database"].as_str().unwrap())
    } else {
        b.url_for(t["database"].as_str().unwrap())
    };
    (
        url,
        t["database"].as_str().unwrap().to_string(),
        t["schema"].as_str().unwrap().to_string(),
    )
}

/// Rows of the migration history that are not cleanly applied, on every tenant database of both
/// servers.
async fn partial_history(
    main: &TestCluster,
    b: &TestCluster,
    tenants: &[serde_json::Value],
) -> i64 {
    let mut dbs: Vec<String> = tenants.iter().map(|t| place(t, main, b).0).collect();
    dbs.sort();
    dbs.dedup();
    let mut n = 0;
    for url in dbs {
        let c = pgfleet_testkit::connect(&url).await;
        n += c
            .query_one(
                "SELECT count(*) FROM pgfleet_migrate.history WHERE state <> 'applied'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
    }
    n
}

#[tokio::test]
async fn migrate_all_isolates_a_poisoned_tenant_honours_a_canary_and_survives_kill_9() {
    let main = TestCluster::start();
    let b = TestCluster::start();
    let env = Env::new("fleet-migrate", &main.url()).await;
    env.ok(&[
        "server",
        "add",
        "b",
        "--url",
        &b.url(),
        "--capacity",
        "1000",
    ]);
    let c = control(&env).await;
    let keys: Vec<String> = (0..300).map(|i| format!("tenant-{i:03}")).collect();
    let database = ["tenant-000", "tenant-001", "tenant-002", "tenant-003"];
    provision_many(
        &c,
        &keys,
        &database,
        |i| if i % 3 == 0 { "main" } else { "b" },
    )
    .await;
    let tenants = env.json(&["tenant", "list", "--format", "json"]);
    let tenants = tenants.as_array().unwrap().clone();
    assert_eq!(tenants.len(), 300);
    assert!(
        tenants.iter().any(|t| t["server"] == "main") && tenants.iter().any(|t| t["server"] == "b")
    );

    // A no-op run touches no tenant.
    let (code, r, _) = migrate_all(&env, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(
        (r["up_to_date"].as_u64(), r["migrated"].as_u64()),
        (Some(300), Some(0)),
        "{r}"
    );

    // One tenant already has the table the next migration creates.
    let poisoned = tenants
        .iter()
        .find(|t| t["key"] == "tenant-151")
        .unwrap()
        .clone();
    let (url, _, schema) = place(&poisoned, &main, &b);
    let pc = pgfleet_testkit::connect(&url).await;
    pc.batch_execute(&format!("CREATE TABLE {schema}.labels (x int)"))
        .await
        .unwrap();
    write_migration(
        &env,
        "20260201000000_labels.sql",
        "CREATE TABLE labels (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);
ALTER TABLE notes ADD COLUMN pinned boolean NOT NULL DEFAULT false;
CREATE INDEX notes_pinned ON notes (id) WHERE pinned;
",
    );
    let (code, r, err) = migrate_all(&env, &["--continue-on-error", "--concurrency", "6"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        (
            r["migrated"].as_u64(),
            r["failed"].as_u64(),
            r["not_run"].as_u64()
        ),
        (Some(299), Some(1), Some(0)),
        "{r}"
    );
    let failed: Vec<&serde_json::Value> = r["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["outcome"] == "failed")
        .collect();
    assert_eq!(failed[0]["key"], "tenant-151");
    let e = failed[0]["error"].as_str().unwrap();
    assert!(
        e.contains("20260201000000_labels.sql:1")
            && e.contains("already exists")
            && e.contains("CREATE TABLE labels"),
        "{e}"
    );
    let show = env.json(&["tenant", "show", "tenant-151", "--format", "json"]);
    assert_eq!(show["schema_version"], "20260101000000", "{show}");
    assert!(
        show["migrate_error"]
            .as_str()
            .unwrap()
            .contains("already exists")
    );
    // Its migration was rolled back whole: no column from the failed file.
    let has_pinned: bool = pc
        .query_one(
            "SELECT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'notes' AND column_name = 'pinned')",
            &[&schema],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!has_pinned);

    // Fixed: the re-run migrates that one tenant only.
    pc.batch_execute(&format!("DROP TABLE {schema}.labels"))
        .await
        .unwrap();
    let (code, r, err) = migrate_all(&env, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        (r["migrated"].as_u64(), r["up_to_date"].as_u64()),
        (Some(1), Some(299)),
        "{r}"
    );
    let show = env.json(&["tenant", "show", "tenant-151", "--format", "json"]);
    assert_eq!(show["schema_version"], "20260201000000");
    assert!(show["migrate_error"].is_null());

    // A failing canary stops the rollout before the rest (tenants go in creation order).
    let first = &tenants[0];
    let (url0, _, schema0) = place(first, &main, &b);
    let c0 = pgfleet_testkit::connect(&url0).await;
    c0.batch_execute(&format!("CREATE TABLE {schema0}.archive (x int)"))
        .await
        .unwrap();
    write_migration(
        &env,
        "20260301000000_archive.sql",
        "CREATE TABLE archive (id bigint PRIMARY KEY);\n",
    );
    let (code, r, _) = migrate_all(&env, &["--canary", "1"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        (
            r["canary"].as_u64(),
            r["failed"].as_u64(),
            r["migrated"].as_u64(),
            r["not_run"].as_u64()
        ),
        (Some(1), Some(1), Some(0), Some(299)),
        "{r}"
    );
    assert!(r["stopped"].as_str().unwrap().contains("canary"), "{r}");
    c0.batch_execute(&format!("DROP TABLE {schema0}.archive"))
        .await
        .unwrap();
    let (code, r, _) = migrate_all(&env, &["--canary", "5%"]);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(
        (r["canary"].as_u64(), r["migrated"].as_u64()),
        (Some(15), Some(300)),
        "{r}"
    );

    // kill -9 in the middle of a rollout: the re-run converges, nothing is half-applied.
    write_migration(
        &env,
        "20260401000000_slow.sql",
        "SELECT pg_sleep(0.03);\nALTER TABLE notes ADD COLUMN archived boolean NOT NULL DEFAULT false;\n",
    );
    let dir = env.migrations();
    let mut child = env
        .command(&[
            "migrate",
            "--all",
            "--migrations",
            dir.to_str().unwrap(),
            "--concurrency",
            "2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let catalog = pgfleet_testkit::connect(env.catalog.url()).await;
    let started = Instant::now();
    loop {
        let done: i64 = catalog
            .query_one(
                "SELECT count(*) FROM pgfleet.events WHERE kind = 'tenant.migrated' AND detail->>'to' = '20260401000000'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if done >= 20 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the rollout made no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_target: i64 = catalog
        .query_one(
            "SELECT count(*) FROM pgfleet.tenants WHERE schema_version = '20260401000000'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        at_target < 300,
        "the kill came too late to test anything: {at_target}"
    );
    assert_eq!(partial_history(&main, &b, &tenants).await, 0);
    let (code, r, err) = migrate_all(&env, &["--concurrency", "8"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(r["failed"].as_u64(), Some(0), "{r}");
    assert_eq!(
        r["migrated"].as_u64().unwrap() + r["up_to_date"].as_u64().unwrap(),
        300,
        "{r}"
    );
    // The killed run's rollout row is marked abandoned by the re-run, whose own row is done.
    let rollouts: Vec<(i64, String)> = catalog
        .query(
            "SELECT id, state FROM pgfleet.rollouts ORDER BY id DESC LIMIT 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(rollouts[0].0, r["rollout"].as_i64().unwrap(), "{r}");
    assert_eq!(
        [rollouts[0].1.as_str(), rollouts[1].1.as_str()],
        ["done", "abandoned"]
    );
    assert!(r["up_to_date"].as_u64().unwrap() >= at_target as u64, "{r}");
    let behind: i64 = catalog
        .query_one(
            "SELECT count(*) FROM pgfleet.tenants WHERE schema_version IS DISTINCT FROM '20260401000000'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(behind, 0);
    assert_eq!(partial_history(&main, &b, &tenants).await, 0);
    // Every tenant has the column once and the version once in its history.
    for t in tenants.iter().step_by(7) {
        let (url, _, schema) = place(t, &main, &b);
        let tc = pgfleet_testkit::connect(&url).await;
        let scope = if t["mode"] == "schema" {
            schema.clone()
        } else {
            String::new()
        };
        let n: i64 = tc
            .query_one(
                "SELECT count(*) FROM pgfleet_migrate.history WHERE scope = $1 AND version = '20260401000000'",
                &[&scope],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1, "{t}");
    }

    // The fleet is clean against the target.
    let out = env.run(&["check", "--all", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (v["total"].as_u64(), v["clean"].as_u64()),
        (Some(300), Some(300)),
        "{}",
        stderr(&out)
    );
    // Drift is found (and repaired additively) across the fleet.
    pc.batch_execute(&format!("DROP INDEX {schema}.notes_pinned"))
        .await
        .unwrap();
    let out = env.run(&["check", "--all"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("tenant-151: 1 difference(s)"),
        "{}",
        stdout(&out)
    );
    let out = env.run(&["check", "--all", "--fix", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["repaired"].as_u64(), Some(1), "{v}");
}

/// A running `pgfleet serve` and its address.
struct Serve {
    child: Child,
    addr: String,
}

impl Serve {
    fn start(env: &Env, extra: &[&str]) -> Self {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = env
            .command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let addr = first
            .split("http://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {first:?}"))
            .to_string();
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, addr }
    }

    /// (status code, body) of `GET path`.
    fn get(&self, path: &str) -> (u16, String) {
        let mut s = std::net::TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        (code, body.to_string())
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let started = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The samples of a Prometheus text page: (name with labels, value). Panics on a line that is not
/// in the text format.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        assert!(!line.starts_with('#'), "bad comment line {line:?}");
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels in {line:?}");
        }
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        out.push((series.to_string(), v));
    }
    out
}

/// The sum of the samples of metric `name` that carry every label of `labels` (in any order).
fn sample(samples: &[(String, f64)], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(s, _)| {
            s.split('{').next() == Some(name)
                && labels
                    .iter()
                    .all(|(k, v)| s.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| *v)
        .sum()
}

#[tokio::test]
async fn two_serve_processes_run_each_operation_once_check_health_and_export_metrics() {
    let main = TestCluster::start();
    let mut x = TestCluster::start();
    let env = Env::new("fleet-serve", &main.url()).await;
    env.ok(&["server", "add", "x", "--url", &x.url(), "--capacity", "100"]);
    let a = Serve::start(&env, &["--health-interval", "1s", "--degraded-after", "5s"]);
    let b = Serve::start(&env, &["--health-interval", "1s", "--degraded-after", "5s"]);
    assert_eq!(a.get("/healthz"), (200, "ok\n".to_string()));
    assert_eq!(a.get("/readyz").0, 200);

    // Queue 24 tenants without running them: the two servers do the work.
    let c = control(&env).await;
    for i in 0..24 {
        let opts = CreateOptions {
            mode: Some(if i % 4 == 0 {
                Mode::Database
            } else {
                Mode::Schema
            }),
            server: Some(if i % 2 == 0 { "main" } else { "x" }.into()),
        };
        c.create_tenant(&format!("queued-{i}"), &opts)
            .await
            .unwrap();
    }
    let catalog = pgfleet_testkit::connect(env.catalog.url()).await;
    let started = Instant::now();
    loop {
        let ready: i64 = catalog
            .query_one(
                "SELECT count(*) FROM pgfleet.tenants WHERE state = 'ready'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if ready == 24 {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "only {ready} of 24 tenants became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each operation ran to ready exactly once.
    let twice: i64 = catalog
        .query_one(
            "SELECT count(*) FROM (SELECT tenant_id FROM pgfleet.events WHERE kind = 'tenant.ready' GROUP BY 1 HAVING count(*) <> 1) x",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(twice, 0);
    let done: i64 = catalog
        .query_one(
            "SELECT count(*) FROM pgfleet.operations WHERE state = 'done'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(done, 24);
    // Each process counts only what it ran: together, 24 (a counter moves just after the
    // catalog says done, so give it a moment).
    let done = |m: &[(String, f64)]| {
        sample(
            m,
            "pgfleet_operations_total",
            &[("kind", "provision"), ("outcome", "done")],
        )
    };
    let started = Instant::now();
    let (ma, mb) = loop {
        let (ma, mb) = (
            parse_prometheus(&a.get("/metrics").1),
            parse_prometheus(&b.get("/metrics").1),
        );
        // The tenant gauges are read from the catalog every --metrics-interval (5 s).
        let ready_x = sample(
            &ma,
            "pgfleet_tenants",
            &[("state", "ready"), ("server", "x")],
        );
        if (done(&ma) + done(&mb) >= 24.0 && ready_x == 12.0)
            || started.elapsed() > Duration::from_secs(15)
        {
            break (ma, mb);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done(&ma) + done(&mb), 24.0);
    assert_eq!(
        sample(
            &ma,
            "pgfleet_tenants",
            &[("state", "ready"), ("server", "x")]
        ),
        12.0,
        "{ma:?}"
    );

    // Health: everyone healthy, then a stopped server's tenants unreachable within two intervals.
    let all_health = |want: &'static str, server: &'static str| {
        let catalog = &catalog;
        async move {
            catalog
                .query_one(
                    "SELECT count(*) FILTER (WHERE health = $1), count(*) FROM pgfleet.tenants WHERE server = $2",
                    &[&want, &server],
                )
                .await
                .map(|r| r.get::<_, i64>(0) == r.get::<_, i64>(1))
                .unwrap()
        }
    };
    let started = Instant::now();
    while !(all_health("healthy", "x").await && all_health("healthy", "main").await) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "tenants never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let healthy =
        |m: &[(String, f64)]| sample(m, "pgfleet_health_checks_total", &[("result", "healthy")]);
    let checks_before = healthy(&parse_prometheus(&a.get("/metrics").1))
        + healthy(&parse_prometheus(&b.get("/metrics").1));
    assert!(checks_before >= 24.0, "{checks_before}");
    x.stop();
    let stopped = Instant::now();
    while !all_health("unreachable", "x").await {
        assert!(
            stopped.elapsed() < Duration::from_secs(2) + Duration::from_millis(900),
            "the stopped server's tenants were not unreachable within two intervals"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        all_health("healthy", "main").await,
        "the other server's tenants stay healthy"
    );
    let t = env.json(&["tenant", "show", "queued-1", "--format", "json"]);
    assert_eq!(t["health"], "unreachable");
    assert!(t["health_error"].as_str().unwrap().len() > 5, "{t}");
    x.restart();
    let started = Instant::now();
    while !all_health("healthy", "x").await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never healthy again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ma = parse_prometheus(&a.get("/metrics").1);
    let mb = parse_prometheus(&b.get("/metrics").1);
    let unreachable = |m: &[(String, f64)]| {
        sample(
            m,
            "pgfleet_health_checks_total",
            &[("result", "unreachable")],
        )
    };
    assert!(unreachable(&ma) + unreachable(&mb) >= 12.0);
    let timed = |m: &[(String, f64)]| sample(m, "pgfleet_health_check_duration_seconds_count", &[]);
    assert!(timed(&ma) + timed(&mb) >= checks_before);

    // SIGTERM: both stop cleanly, and nothing stays leased to them.
    assert!(a.terminate().success());
    assert!(b.terminate().success());
    let leased: i64 = catalog
        .query_one(
            "SELECT count(*) FROM pgfleet.operations WHERE state = 'running'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(leased, 0);
}

/// The review's case: `tenant list` printed a key's U+202E (right-to-left override) as it is,
/// reordering what a terminal shows. Every human-readable output escapes bidi controls and other
/// invisible characters; JSON keeps the key exactly.
#[tokio::test]
async fn human_output_escapes_bidi_and_invisible_characters_of_keys() {
    let main = TestCluster::start();
    let env = Env::new("fleet-bidi", &main.url()).await;
    let key = "invoice\u{202e}fdp.exe\u{200b}\u{2066}x\u{feff}";
    let shown = "invoice\\u{202e}fdp.exe\\u{200b}\\u{2066}x\\u{feff}";
    let hidden = ['\u{202e}', '\u{200b}', '\u{2066}', '\u{feff}'];
    env.ok(&["tenant", "create", key, "--mode", "schema"]);
    let t = env.json(&["tenant", "show", key, "--format", "json"]);
    assert_eq!(t["key"], key, "JSON keeps the key exactly");
    assert_eq!(
        env.json(&["tenant", "list", "--format", "json"])[0]["key"],
        key
    );
    let mut outputs = vec![
        ("tenant list", env.run(&["tenant", "list"])),
        ("tenant show", env.run(&["tenant", "show", key])),
        ("check", env.run(&["check", "--tenant", key])),
        ("check-user", env.run(&["check-user", key])),
        ("check --all", env.run(&["check", "--all"])),
    ];
    // A table the migration creates is there already: the tenant fails the rollout, and its key
    // is listed among the failed tenants.
    let admin = main.connect(t["database"].as_str().unwrap()).await;
    admin
        .batch_execute(&format!(
            "CREATE TABLE {}.poison (id int)",
            t["schema"].as_str().unwrap()
        ))
        .await
        .unwrap();
    write_migration(
        &env,
        "20260102000000_poison.sql",
        "CREATE TABLE poison (id int);\n",
    );
    let dir = env.migrations();
    let dir = dir.to_str().unwrap();
    outputs.push((
        "migrate --all",
        env.run(&["migrate", "--all", "--migrations", dir]),
    ));
    outputs.push(("check --all (drift)", env.run(&["check", "--all"])));
    outputs.push(("tenant show (failed)", env.run(&["tenant", "show", key])));
    for (what, out) in &outputs {
        let text = format!("{}{}", stdout(out), stderr(out));
        assert!(
            !text.contains(hidden),
            "{what} printed an invisible character as it is:\n{}",
            text.escape_debug()
        );
    }
    for (what, out) in &outputs[..5] {
        // `tenant list` cuts keys at 32 characters; the others print them whole.
        let want = if *what == "tenant list" {
            "invoice\\u{202e}fdp.exe\\u{200b}"
        } else {
            shown
        };
        assert!(stdout(out).contains(want), "{what}: {}", stdout(out));
    }
    let migrate = &outputs[5].1;
    assert_eq!(migrate.status.code(), Some(1), "{}", stderr(migrate));
    assert!(
        stdout(migrate).contains(&format!("  {shown} on main")),
        "{}",
        stdout(migrate)
    );
    let drift = stdout(&outputs[6].1);
    assert!(drift.contains(&format!("{shown}: ")), "{drift}");
    let (_, json, _) = migrate_all(&env, &[]);
    assert_eq!(json["tenants"][0]["key"], key, "{json}");
}

/// The review's case: while the catalog was down, `/metrics` kept serving the last tenant gauges
/// as if current. Now it says the catalog is down and how old the data is, and withdraws the
/// tenant gauges once the data is older than three refresh intervals; they return with the catalog.
#[tokio::test]
async fn metrics_say_when_the_catalog_is_down_and_withdraw_stale_tenant_counts() {
    let mut cluster = TestCluster::start();
    let catalog = pgfleet_testkit::TestDb::on(&cluster, "fleet-catalog-down").await;
    let env = Env::with_catalog("fleet-catalog-down", catalog, &cluster.url());
    for k in ["a", "b", "c"] {
        env.ok(&["tenant", "create", k, "--mode", "schema"]);
    }
    let serve = Serve::start(&env, &["--metrics-interval", "200ms", "--no-health"]);
    let stale_after = 0.6; // three intervals
    let metrics = || parse_prometheus(&serve.get("/metrics").1);
    let tenants = |m: &[(String, f64)]| {
        m.iter()
            .filter(|(s, _)| s.starts_with("pgfleet_tenants{"))
            .count()
    };
    let value = |m: &[(String, f64)], name: &str| {
        m.iter()
            .find(|(s, _)| s == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {name} in {m:?}"))
    };
    let m = metrics();
    assert_eq!(value(&m, "pgfleet_catalog_up"), 1.0, "{m:?}");
    assert!(
        value(&m, "pgfleet_catalog_data_age_seconds") < stale_after,
        "{m:?}"
    );
    assert_eq!(
        sample(&m, "pgfleet_tenants", &[("state", "ready")]),
        3.0,
        "{m:?}"
    );

    cluster.stop();
    let stopped = Instant::now();
    let m = loop {
        let m = metrics();
        let up = value(&m, "pgfleet_catalog_up");
        let age = value(&m, "pgfleet_catalog_data_age_seconds");
        // Never stale counts presented as current: while tenant gauges are shown, their data is
        // at most three intervals old.
        if tenants(&m) > 0 {
            assert!(age <= stale_after, "stale tenant gauges published: {m:?}");
        }
        if up == 0.0 && tenants(&m) == 0 {
            break m;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "metrics never showed the outage: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        value(&m, "pgfleet_catalog_data_age_seconds") > stale_after,
        "{m:?}"
    );
    assert_eq!(sample(&m, "pgfleet_tenants_health", &[]), 0.0, "{m:?}");
    assert!(
        sample(&m, "pgfleet_catalog_errors_total", &[]) >= 1.0,
        "{m:?}"
    );
    assert_eq!(serve.get("/readyz").0, 503);
    // It stays that way while the catalog is down.
    std::thread::sleep(Duration::from_millis(500));
    let m = metrics();
    assert_eq!(value(&m, "pgfleet_catalog_up"), 0.0, "{m:?}");
    assert_eq!(tenants(&m), 0, "{m:?}");

    cluster.restart();
    let restarted = Instant::now();
    let m = loop {
        let m = metrics();
        if value(&m, "pgfleet_catalog_up") == 1.0 && tenants(&m) > 0 {
            break m;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(30),
            "metrics never recovered: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        value(&m, "pgfleet_catalog_data_age_seconds") < stale_after,
        "{m:?}"
    );
    assert_eq!(
        sample(&m, "pgfleet_tenants", &[("state", "ready")]),
        3.0,
        "{m:?}"
    );
    assert_eq!(serve.get("/readyz").0, 200);
    assert!(serve.terminate().success());
}

//! The control plane through the `pgfleet` binary: exactly once across processes, kill -9 at every
//! provisioning step, diagnostics and their exit codes, and a consistency check against the server.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pgfleet_testkit::{TestCluster, TestDb};

use crate::{BIN, Home, stderr, stdout};

const TARGET: &str = "CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL, embedding vector(3));
CREATE INDEX notes_embedding ON notes USING hnsw (embedding vector_cosine_ops);
CREATE TABLE tags (id serial PRIMARY KEY, note_id bigint REFERENCES notes ON DELETE CASCADE, name text NOT NULL);
";

/// A catalog, a master key, a target and one server, driven through the binary.
pub(crate) struct Env {
    pub(crate) home: Home,
    pub(crate) catalog: TestDb,
    pub(crate) key: String,
}

impl Env {
    pub(crate) async fn new(label: &str, server_url: &str) -> Self {
        Self::with_catalog(label, TestDb::named(label).await, server_url)
    }

    /// As [`Env::new`], with the catalog in `catalog` (e.g. on a cluster of its own, to stop it).
    pub(crate) fn with_catalog(label: &str, catalog: TestDb, server_url: &str) -> Self {
        let home = Home::new(label);
        let key = String::from_utf8(
            Command::new(BIN)
                .args(["keys", "generate"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .to_string();
        let env = Self { home, catalog, key };
        let dir = env.migrations();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("20260101000000_init.sql"), TARGET).unwrap();
        env.ok(&["migrate", "hash", "--migrations", dir.to_str().unwrap()]);
        env.ok(&["init", "--migrations", dir.to_str().unwrap()]);
        env.ok(&[
            "server",
            "add",
            "main",
            "--url",
            server_url,
            "--capacity",
            "100",
        ]);
        env
    }

    pub(crate) fn migrations(&self) -> PathBuf {
        self.home.dir.join("migrations")
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("PGFLEET_HOME", &self.home.dir)
            .env("PGFLEET_CATALOG_URL", self.catalog.url())
            .env("PGFLEET_MASTER_KEY", &self.key)
            .env_remove("PGFLEET_MASTER_KEY_FILE")
            .env_remove("PGFLEET_FAILPOINT")
            .env_remove("PGFLEET_LOG")
            .stdin(Stdio::null());
        c
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    pub(crate) fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "pgfleet {args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        out
    }

    pub(crate) fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&stdout(&self.ok(args))).unwrap()
    }
}

/// Names on a server that belong to pgfleet tenants: (databases, roles, schemas of the shared database).
pub(crate) async fn on_server(
    cluster_url: &str,
) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let admin = pgfleet_testkit::connect(cluster_url).await;
    let names = |rows: Vec<tokio_postgres::Row>| {
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<BTreeSet<_>>()
    };
    let dbs = names(admin.query("SELECT datname::text FROM pg_database WHERE datname LIKE 'pgfleet\\_t%' AND datname <> 'pgfleet_tenants' AND datname NOT LIKE 'pgfleet\\_tpl\\_%'", &[]).await.unwrap());
    let roles = names(
        admin
            .query(
                "SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'pgfleet\\_t%'",
                &[],
            )
            .await
            .unwrap(),
    );
    let shared_exists: bool = admin
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_database WHERE datname = 'pgfleet_tenants')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let schemas = if shared_exists {
        let base = cluster_url.rsplit_once('/').unwrap().0;
        let shared = pgfleet_testkit::connect(&format!("{base}/pgfleet_tenants")).await;
        names(
            shared
                .query(
                    "SELECT nspname::text FROM pg_namespace WHERE nspname ~ '^t[0-9a-f]{16}$'",
                    &[],
                )
                .await
                .unwrap(),
        )
    } else {
        BTreeSet::new()
    };
    (dbs, roles, schemas)
}

/// The catalog and the server agree: every tenant's objects exist, and nothing else does.
async fn consistency_check(env: &Env, cluster_url: &str) {
    let tenants = env.json(&["tenant", "list", "--format", "json"]);
    let tenants = tenants.as_array().unwrap();
    let mut dbs = BTreeSet::new();
    let mut roles = BTreeSet::new();
    let mut schemas = BTreeSet::new();
    for t in tenants {
        assert_eq!(t["state"], "ready", "{t}");
        roles.insert(t["role"].as_str().unwrap().to_string());
        if t["mode"] == "database" {
            dbs.insert(t["database"].as_str().unwrap().to_string());
        } else {
            schemas.insert(t["schema"].as_str().unwrap().to_string());
        }
    }
    let (sdbs, sroles, sschemas) = on_server(cluster_url).await;
    assert_eq!(sdbs, dbs, "databases on the server vs the catalog");
    assert_eq!(sroles, roles, "roles on the server vs the catalog");
    assert_eq!(
        sschemas, schemas,
        "tenant schemas on the server vs the catalog"
    );
}

#[tokio::test]
async fn eight_processes_create_one_tenant_and_diagnostics_report_and_repair() {
    let server = TestCluster::start();
    let env = Env::new("ctl-eight", &server.url()).await;
    let children: Vec<_> = (0..8)
        .map(|_| {
            env.command(&["tenant", "create", "user 'eight'; --", "--format", "json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ids = BTreeSet::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
        assert_eq!(v["state"], "ready");
        ids.insert(v["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "all eight processes got the same tenant");
    assert_eq!(
        env.json(&["tenant", "list", "--format", "json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let show = env.json(&["tenant", "show", "user 'eight'; --", "--format", "json"]);
    assert_eq!(show["schema_version"], "20260101000000");
    consistency_check(&env, &server.url()).await;

    assert_eq!(
        env.run(&["check-user", "user 'eight'; --"]).status.code(),
        Some(0)
    );
    assert_eq!(env.run(&["validate"]).status.code(), Some(0));
    assert_eq!(env.run(&["check", "--all"]).status.code(), Some(0));

    // A table dropped out of band: reported (exit 1), repaired (exit 0), recorded.
    let db = show["database"].as_str().unwrap();
    pgfleet_testkit::connect(&server.url_for(db))
        .await
        .batch_execute("DROP TABLE tags")
        .await
        .unwrap();
    let out = env.run(&["check", "--tenant", "user 'eight'; --"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("create table public.tags") && stdout(&out).contains("repairable"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        env.run(&["check-user", "user 'eight'; --"]).status.code(),
        Some(1)
    );
    let out = env.run(&["check", "--tenant", "user 'eight'; --", "--fix"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("repaired"), "{}", stdout(&out));
    let show = env.json(&["tenant", "show", "user 'eight'; --", "--format", "json"]);
    assert!(
        show["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "tenant.correction"),
        "{show}"
    );
    assert_eq!(
        env.run(&["check", "--all", "--format", "json"])
            .status
            .code(),
        Some(0)
    );

    // Unknown tenants and refused drops are clear errors.
    let out = env.run(&["tenant", "show", "nobody"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no tenant with key \"nobody\""),
        "{}",
        stderr(&out)
    );
    let out = env.run(&["tenant", "drop", "user 'eight'; --"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    env.ok(&["tenant", "drop", "user 'eight'; --", "--yes"]);
    consistency_check(&env, &server.url()).await;
}

/// Runs `tenant create KEY` with a failpoint, waits until the process reports it reached it, and
/// kills it with SIGKILL.
fn crash_at(env: &Env, key: &str, mode: &str, step: &str) {
    let failpoint = format!("provision:after:{step}");
    let mut child = env
        .command(&["tenant", "create", key, "--mode", mode])
        .env("PGFLEET_FAILPOINT", &failpoint)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) if line.contains(&format!("failpoint {failpoint} reached")) => break,
            Ok(line) => seen.push(line),
            Err(_) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "failpoint {failpoint} never reached: {seen:?}"
        );
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[tokio::test]
async fn kill_9_after_every_provisioning_step_converges_without_orphans() {
    let server = TestCluster::start();
    let env = Env::new("ctl-crash", &server.url()).await;
    for (mode, steps) in [
        (
            "database",
            &["place", "role", "database", "migrate", "grant", "verify"][..],
        ),
        ("schema", &["role", "database", "migrate"][..]),
    ] {
        for step in steps {
            let key = format!("crash-{mode}-{step}");
            crash_at(&env, &key, mode, step);
            let show = env.json(&["tenant", "show", &key, "--format", "json"]);
            if *step != "verify" {
                assert_ne!(show["state"], "ready", "killed right after {step}: {show}");
            }
            // The next process resumes it (the dead worker's lock went with its session).
            let out = env.ok(&[
                "tenant", "create", &key, "--mode", mode, "--format", "json", "--wait", "60s",
            ]);
            let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
            assert_eq!(
                (v["state"].as_str(), v["id"].as_str()),
                (Some("ready"), show["id"].as_str()),
                "{v}"
            );
        }
    }
    consistency_check(&env, &server.url()).await;
    let keys: Vec<String> = env
        .json(&["tenant", "list", "--format", "json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 9);
    for k in &keys {
        env.ok(&["tenant", "drop", k, "--yes"]);
    }
    let (dbs, roles, schemas) = on_server(&server.url()).await;
    assert!(
        dbs.is_empty() && roles.is_empty() && schemas.is_empty(),
        "{dbs:?} {roles:?} {schemas:?}"
    );
}

#[tokio::test]
async fn passwords_never_show_up_in_output_logs_or_the_server_log() {
    let server = TestCluster::start();
    let env = Env::new("ctl-canary", &server.url()).await;
    let mut outputs = Vec::new();
    for args in [
        &["-vv", "tenant", "create", "canary"][..],
        &["-vv", "tenant", "create", "canary-s", "--mode", "schema"],
        &["-vv", "tenant", "show", "canary", "--format", "json"],
        &["-vv", "tenant", "list"],
        &["-vv", "check-user", "canary"],
        &["-vv", "check", "--all", "--format", "json"],
        &["-vv", "validate"],
        &["-vv", "server", "list", "--format", "json"],
        &["-vv", "tenant", "rotate-password", "canary"],
    ] {
        let out = env.run(args);
        outputs.push(format!("{args:?}\n{}{}", stdout(&out), stderr(&out)));
    }
    let url = stdout(&env.ok(&["tenant", "credentials", "canary"]));
    let password = url
        .split(':')
        .nth(2)
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_string();
    let url_s = stdout(&env.ok(&["tenant", "credentials", "canary-s"]));
    let password_s = url_s
        .split(':')
        .nth(2)
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_string();
    let admin_password = server.cluster().password().to_string();
    assert_eq!(password.len(), 32);
    let log = std::fs::read_to_string(server.cluster().log_file()).unwrap_or_default();
    for (what, text) in outputs
        .iter()
        .map(|o| ("output", o.as_str()))
        .chain([("server log", log.as_str())])
    {
        for secret in [&password, &password_s, &admin_password] {
            assert!(
                !text.contains(secret.as_str()),
                "a password appears in the {what}:\n{text}"
            );
        }
    }
    let cat = env.catalog.connect().await;
    for table in ["servers", "tenants", "operations", "events", "targets"] {
        let text: String = cat
            .query_one(
                &format!("SELECT coalesce(string_agg(t::text, ' '), '') FROM pgfleet.{table} t"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        for secret in [&password, &password_s, &admin_password] {
            assert!(
                !text.contains(secret.as_str()),
                "a password appears in pgfleet.{table}"
            );
        }
    }
    for k in ["canary", "canary-s"] {
        env.ok(&["tenant", "drop", k, "--yes"]);
    }
}

/// The review's case: a password in the query string (`?password=`) or quoted in a key=value
/// string was printed in errors, and stored in clear as a server's display URL.
#[tokio::test]
async fn passwords_in_any_connection_string_form_never_reach_the_output() {
    let server = pgfleet_testkit::shared();
    let env = Env::new("ctl-urls", &server.url()).await;
    let closed = pgfleet_testkit::free_port();
    let bad = [
        "postgres://u:Other2PW@h/db?password=Other2PW&badopt=1".to_string(),
        "postgres://u@h/db?sslmode=disable&password=Other2PW&badopt=1".to_string(),
        "host=h password='Other 2PW' user=u badopt=1".to_string(),
        "host=h password = Other\\ 2PW badopt=1".to_string(),
        format!("host=127.0.0.1 port={closed} password='Other 2PW' user=u connect_timeout=2"),
        format!("postgres://u:Other2PW@127.0.0.1:{closed}/db?password=Other2PW&connect_timeout=2"),
    ];
    let mut outputs = Vec::new();
    for url in &bad {
        for args in [
            &["tenant", "list", "--catalog-url", url][..],
            &["validate", "--catalog-url", url],
            &["init", "--catalog-url", url],
            &["plan", "--db", url, "--schema", "/dev/null"],
            &["server", "add", "bad", "--url", url],
        ] {
            let out = env.run(args);
            // The arguments hold the password: name the command by its first two words only.
            let what = args[..2].join(" ");
            assert_ne!(out.status.code(), Some(0), "{what}: {}", stdout(&out));
            outputs.push(format!("{what}\n{}{}", stdout(&out), stderr(&out)));
        }
    }
    // A server whose admin password is in the query string: recorded, and shown without it.
    let admin_password = server.cluster().password().to_string();
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?password={admin_password}",
        server.port()
    );
    let out = env.ok(&["server", "add", "q", "--url", &url]);
    outputs.push(format!("server add q\n{}{}", stdout(&out), stderr(&out)));
    for args in [
        &["server", "list"][..],
        &["server", "list", "--format", "json"],
        &["validate"],
    ] {
        let out = env.run(args);
        outputs.push(format!("{args:?}\n{}{}", stdout(&out), stderr(&out)));
    }
    for o in &outputs {
        for secret in ["Other2PW", "Other 2PW", "2PW", admin_password.as_str()] {
            assert!(!o.contains(secret), "{secret:?} appears in:\n{o}");
        }
    }
    assert!(
        outputs
            .iter()
            .any(|o| o.contains("unknown option `badopt`")),
        "the parse error still says what is wrong: {outputs:#?}"
    );
    assert!(
        outputs.iter().any(|o| o.contains("password=***")),
        "{outputs:#?}"
    );
    let cat = env.catalog.connect().await;
    for table in ["servers", "events"] {
        let text: String = cat
            .query_one(
                &format!("SELECT coalesce(string_agg(t::text, ' '), '') FROM pgfleet.{table} t"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(
            !text.contains(&admin_password),
            "the password appears in pgfleet.{table}: {text}"
        );
    }
}

/// The review's cases: a key file others can read was accepted silently, and a 64-byte key (as
/// `head -c 64 /dev/urandom | base64` prints it) was reported as "not base64".
#[tokio::test]
async fn key_files_must_be_private_and_bad_keys_say_what_is_wrong() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new("ctl-keyfile", &pgfleet_testkit::shared().url()).await;
    let file = env.home.dir.join("fleet.key");
    std::fs::write(&file, format!("{}\n", env.key)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let f = file.to_str().unwrap();
    let chmod = format!("chmod 600 {f}");
    let without_key = |args: &[&str]| {
        let mut c = env.command(args);
        c.env_remove("PGFLEET_MASTER_KEY");
        c
    };
    let runs = [
        without_key(&["tenant", "create", "k1", "--master-key-file", f]).output(),
        without_key(&["tenant", "create", "k1"])
            .env("PGFLEET_MASTER_KEY_FILE", f)
            .output(),
        env.command(&["tenant", "create", "k1"])
            .env("PGFLEET_PREVIOUS_MASTER_KEY_FILE", f)
            .output(),
    ];
    for out in runs {
        let out = out.unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("master key file {f}"))
                && err.contains("(mode 0644)")
                && err.contains(&chmod),
            "{err}"
        );
    }
    let out = without_key(&["validate", "--master-key-file", f])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("FAIL master key") && stdout(&out).contains(&chmod),
        "{}",
        stdout(&out)
    );
    // After the chmod it is used.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = without_key(&["validate", "--master-key-file", f])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );

    // 64 bytes, wrapped at 76 columns: the wrong length, not "not base64".
    let b64 = {
        let out = std::process::Command::new("sh")
            .args(["-c", "head -c 64 /dev/urandom | base64"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(
        b64.trim().contains('\n'),
        "base64 wraps 88 characters: {b64:?}"
    );
    let out = env
        .command(&["tenant", "create", "k1"])
        .env("PGFLEET_MASTER_KEY", &b64)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("wrong length")
            && err.contains("64 bytes")
            && err.contains("32 bytes are needed")
            && !err.contains("not base64"),
        "{err}"
    );

    // The key `pgfleet init` creates is private, so pgfleet itself accepts it afterwards.
    let catalog = TestDb::named("ctl-keyfile-init").await;
    let home = crate::Home::new("keyfile-init");
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("PGFLEET_HOME", &home.dir)
            .env("PGFLEET_CATALOG_URL", catalog.url())
            .env_remove("PGFLEET_MASTER_KEY")
            .env_remove("PGFLEET_MASTER_KEY_FILE")
            .env_remove("PGFLEET_PREVIOUS_MASTER_KEY_FILE")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(&["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Created a master key"),
        "{}",
        stderr(&out)
    );
    let mode = std::fs::metadata(home.dir.join("master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = run(&["validate"]);
    assert!(
        stdout(&out).contains("ok   master key"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[tokio::test]
async fn tables_escape_control_characters_and_a_closed_stdout_ends_quietly() {
    let server = TestCluster::start();
    let env = Env::new("ctl-print", &server.url()).await;
    env.ok(&["tenant", "create", "line1\nline2", "--mode", "schema"]);
    let out = env.ok(&["tenant", "list"]);
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 2, "a header and one row: {text}");
    assert!(text.contains("line1\\nline2"), "{text}");
    let v = env.json(&["tenant", "list", "--format", "json"]);
    assert_eq!(v[0]["key"], "line1\nline2", "JSON keeps the key as it is");
    // `pgfleet tenant list | head -0`: the reader is gone before pgfleet writes.
    let mut child = env
        .command(&["tenant", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(141), "{}", stderr(&out));
    env.ok(&["tenant", "drop", "line1\nline2", "--yes"]);

    // A catalog database that `init` creates is closed to PUBLIC (tenant roles live on servers).
    let out = env
        .command(&["init", "--migrations", env.migrations().to_str().unwrap()])
        .env("PGFLEET_CATALOG_URL", server.url_for("fresh_catalog"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Created the catalog database"),
        "{}",
        stderr(&out)
    );
    let admin = pgfleet_testkit::connect(&server.url()).await;
    let public_connect: bool = admin
        .query_one(
            "SELECT has_database_privilege('public', 'fresh_catalog', 'CONNECT')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!public_connect, "PUBLIC may not connect to the catalog");
}

//! Black-box tests of the `pgfleet` binary: real processes, real PostgreSQL.

use std::path::PathBuf;
use std::process::{Command, Output};

mod control;
mod fleet;
mod migrate;
mod sandbox;
mod sql;

use pgfleet_testkit::{binaries, connect, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_pgfleet");

/// A private PGFLEET_HOME, stopped and removed afterwards.
pub(crate) struct Home {
    pub(crate) dir: PathBuf,
}

impl Home {
    fn new(label: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "pgfleet-cli-test-{label}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    /// `pgfleet ARGS` with this home, the test binaries and an empty cache.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("PGFLEET_HOME", &self.dir)
            .env("PGFLEET_CACHE_DIR", self.dir.join("cache"))
            .env("PGFLEET_PG_BIN", binaries().bin_dir())
            .env_remove("PGFLEET_LOG")
            .output()
            .unwrap()
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = Command::new(BIN)
            .args(["down", "--data-dir"])
            .arg(self.data())
            .env("PGFLEET_PG_BIN", binaries().bin_dir())
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn up_status_down_round_trip() {
    let home = Home::new("updown");
    let port = free_port().to_string();

    let up = home.run(&["up", "--port", &port]);
    assert!(up.status.success(), "{}", stderr(&up));
    let url = stdout(&up).trim().to_string();
    assert!(
        url.starts_with("postgres://postgres:") && url.contains(&format!("@127.0.0.1:{port}/")),
        "{url}"
    );
    assert!(
        stderr(&up).contains("Initialized PostgreSQL"),
        "{}",
        stderr(&up)
    );
    let one: i32 = connect(&url)
        .await
        .query_one("SELECT 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(one, 1);

    let again = home.run(&["up"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("Already running"),
        "{}",
        stderr(&again)
    );
    assert_eq!(stdout(&again).trim(), url, "the same URL every time");

    let status = home.run(&["status", "--json"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let v: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(v["state"], "running");
    assert_eq!(v["port"].as_u64().unwrap().to_string(), port);
    assert_eq!(v["pgvector"], true);
    assert_eq!(v["url"], url.as_str());

    let text = home.run(&["status"]);
    assert!(
        stdout(&text).contains("state:       running"),
        "{}",
        stdout(&text)
    );

    let down = home.run(&["down"]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(stderr(&down).contains("Stopped"), "{}", stderr(&down));
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&home.run(&["status", "--json"]))).unwrap();
    assert_eq!(v["state"], "stopped");
    let down_again = home.run(&["down"]);
    assert!(down_again.status.success());
    assert!(
        stderr(&down_again).contains("was not running"),
        "{}",
        stderr(&down_again)
    );

    // Restart on the recorded port.
    let up = home.run(&["up"]);
    assert!(up.status.success(), "{}", stderr(&up));
    assert_eq!(stdout(&up).trim(), url);
}

/// The review's case: `pgfleet up` run with the master key (and a catalog URL with a password)
/// exported handed them to the postmaster, where `COPY … FROM PROGRAM 'env'` printed them.
#[tokio::test]
async fn up_keeps_pgfleet_secrets_out_of_the_server_environment() {
    let home = Home::new("cleanenv");
    let key = "bWFzdGVyLWtleS1jYW5hcnktMTIzNDU2Nzg5MGFiY2RlZg==";
    let up = Command::new(BIN)
        .args(["up", "--port", &free_port().to_string()])
        .env("PGFLEET_HOME", &home.dir)
        .env("PGFLEET_CACHE_DIR", home.dir.join("cache"))
        .env("PGFLEET_PG_BIN", binaries().bin_dir())
        .env("PGFLEET_MASTER_KEY", key)
        .env("PGFLEET_TEST_SECRET", "test-secret-canary")
        .env(
            "PGFLEET_CATALOG_URL",
            "postgres://admin:catalog-pw-canary@db.internal/pgfleet",
        )
        .env("PGPASSWORD", "pgpassword-canary")
        .env_remove("PGFLEET_LOG")
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", stderr(&up));
    let url = stdout(&up).trim().to_string();
    let client = connect(&url).await;
    client
        .batch_execute("CREATE TEMP TABLE e (line text); COPY e FROM PROGRAM 'env'")
        .await
        .unwrap();
    let lines: Vec<String> = client
        .query("SELECT line FROM e", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(lines.iter().any(|l| l.starts_with("PATH=")), "{lines:?}");
    for line in &lines {
        assert!(!line.starts_with("PGFLEET_"), "{line} in {lines:?}");
        assert!(!line.starts_with("PGPASSWORD="), "{line} in {lines:?}");
        for canary in [
            key,
            "test-secret-canary",
            "catalog-pw-canary",
            "pgpassword-canary",
        ] {
            assert!(!line.contains(canary), "{line} in {lines:?}");
        }
    }
}

#[test]
fn missing_binaries_name_the_setup_command() {
    let home = Home::new("nobin");
    let out = Command::new(BIN)
        .args(["up", "--port", &free_port().to_string()])
        .env("PGFLEET_HOME", &home.dir)
        .env("PGFLEET_CACHE_DIR", home.dir.join("empty-cache"))
        .env_remove("PGFLEET_PG_BIN")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("no PostgreSQL binaries found") && err.contains("pgfleet setup"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !home.data().exists(),
        "nothing is created when there is nothing to run"
    );
}

#[test]
fn bad_pg_bin_is_reported() {
    let home = Home::new("badbin");
    let out = Command::new(BIN)
        .args(["up"])
        .env("PGFLEET_HOME", &home.dir)
        .env("PGFLEET_PG_BIN", "/nonexistent/bin")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/bin does not hold usable PostgreSQL binaries"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn port_in_use_is_a_clear_error() {
    let home = Home::new("port");
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = home.run(&["up", "--port", &port]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("port {port} on 127.0.0.1 is already in use"))
            && err.contains("--port"),
        "{err}"
    );
    // The cluster was initialized and is intact: with a free port it starts.
    drop(taken);
    // A fresh free port, not `port` again: a parallel test may take that one now.
    let out = home.run(&["up", "--port", &free_port().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_foreign_directory_is_refused_and_left_alone() {
    let home = Home::new("foreign");
    let dir = home.dir.join("mine");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("thesis.tex"), "years of work").unwrap();
    for cmd in ["up", "down", "status"] {
        let out = home.run(&[cmd, "--data-dir", dir.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("is not a PostgreSQL data directory"),
            "{cmd}: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("thesis.tex")).unwrap(),
        "years of work"
    );
}

#[test]
fn status_without_a_cluster_says_how_to_make_one() {
    let home = Home::new("none");
    let out = home.run(&["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("pgfleet up"), "{}", stderr(&out));
}

#[test]
fn bad_flags_get_usage_not_a_panic() {
    let out = Command::new(BIN)
        .args(["up", "--port", "not-a-port"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid value 'not-a-port'"),
        "{}",
        stderr(&out)
    );
    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(stdout(&help).contains("pgfleet demo"), "{}", stdout(&help));
}

#[test]
fn demo_shows_the_fleet_end_to_end_and_runs_again_from_scratch() {
    let home = Home::new("demo");
    let out = home.run(&["demo", "--port", &free_port().to_string()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}\n{}", text, stderr(&out));
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no line starting with {prefix:?} in {text}"))
            .to_string()
    };
    // Provisioned in both modes.
    assert!(line("alice ").contains("database pgfleet_t"), "{text}");
    assert!(line("bob ").contains("of pgfleet_tenants"), "{text}");
    // Search per tenant, each in its own documents, through the HNSW index.
    let alice = line("alice   best match");
    assert!(
        alice.contains("Reset your password") && alice.contains("HNSW"),
        "{text}"
    );
    assert!(
        !line("carol   best match").contains("Reset your password"),
        "{text}"
    );
    // Healed: two attempts, corrections recorded.
    assert!(
        line("bob: the first attempt failed").contains("(2 attempts"),
        "{text}"
    );
    assert!(
        text.contains("create table") && text.contains("correction(s) recorded"),
        "{text}"
    );
    // Rolled out and clean.
    assert!(
        line("target 20260102000000").contains("3 tenant(s) migrated"),
        "{text}"
    );
    assert!(text.contains("3 clean, 0 with drift"), "{text}");
    // SQL over HTTP from Node (scripts/test.sh installs Node and the example's packages).
    assert!(
        text.contains("[jwt] HS256 token with sub=\"bob\"")
            && text.lines().any(|l| l.trim() == "ok"),
        "{text}"
    );
    // The demo's key file is private (it is read back with the check every key file gets).
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(home.dir.join("demo-master.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Running it again drops the previous demo's tenants and starts afresh.
    let again = home.run(&["demo"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("Already running"),
        "{}",
        stderr(&again)
    );
    assert!(
        stdout(&again).contains("3 clean, 0 with drift"),
        "{}",
        stdout(&again)
    );
    let url = text
        .lines()
        .find_map(|l| l.split("PGFLEET_CATALOG_URL='").nth(1))
        .and_then(|r| r.split('\'').next())
        .unwrap()
        .to_string();
    let admin = url.replace("/pgfleet_demo_catalog", "/postgres");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dbs: i64 = rt.block_on(async {
        let c = connect(&admin).await;
        c.query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'pgfleet\\_t%' AND datname NOT LIKE 'pgfleet\\_tpl\\_%' AND datname <> 'pgfleet_tenants'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
    });
    assert_eq!(dbs, 1, "the first run's tenant database was not dropped");
}

/// `pgfleet ARGS` with stdin closed (not a terminal).
fn pgfleet(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(std::process::Stdio::null())
        .env_remove("PGFLEET_DATABASE_URL")
        .output()
        .unwrap()
}

fn write_schema(dir: &std::path::Path, name: &str, sql: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, sql).unwrap();
    p
}

#[tokio::test]
async fn plan_exit_codes_and_formats() {
    let db = pgfleet_testkit::TestDb::new().await;
    let home = Home::new("plan");
    let schema = write_schema(
        &home.dir,
        "schema.sql",
        "CREATE TABLE t (id int PRIMARY KEY, name text);",
    );
    let s = schema.to_str().unwrap();

    let out = pgfleet(&["plan", "--db", db.url(), "--schema", s, "--exit-code"]);
    assert_eq!(out.status.code(), Some(1), "changes → 1: {}", stderr(&out));
    assert!(
        stdout(&out).contains("CREATE TABLE public.t"),
        "{}",
        stdout(&out)
    );

    let out = pgfleet(&["plan", "--db", db.url(), "--schema", s, "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "without --exit-code changes are success"
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        v["steps"][0]["sql"]
            .as_str()
            .unwrap()
            .contains("CREATE TABLE"),
        "{v}"
    );
    assert!(v["steps"][0]["transactional"].is_boolean());

    let out = pgfleet(&["apply", "--db", db.url(), "--schema", s, "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("verified"), "{}", stderr(&out));

    let out = pgfleet(&["plan", "--db", db.url(), "--schema", s, "--exit-code"]);
    assert_eq!(out.status.code(), Some(0), "in sync → 0: {}", stdout(&out));
    assert!(
        stdout(&out).is_empty(),
        "an empty plan prints nothing: {}",
        stdout(&out)
    );
}

#[tokio::test]
async fn plan_errors_exit_2_with_clear_messages() {
    let db = pgfleet_testkit::TestDb::new().await;
    let home = Home::new("planerr");
    let good = write_schema(&home.dir, "good.sql", "CREATE TABLE t (id int);");
    let bad = write_schema(
        &home.dir,
        "bad.sql",
        "CREATE TABLE t (id int);\nCREATE TABLE u (id innt);\n",
    );

    let out = pgfleet(&[
        "plan",
        "--db",
        db.url(),
        "--schema",
        bad.to_str().unwrap(),
        "--exit-code",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("bad.sql:2:") && err.contains("type \"innt\" does not exist"),
        "{err}"
    );

    let out = pgfleet(&[
        "plan",
        "--db",
        "postgres://u:secret@127.0.0.1:notaport/db",
        "--schema",
        good.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid database URL") && !stderr(&out).contains("secret"),
        "{}",
        stderr(&out)
    );

    let closed = free_port().to_string();
    let url = format!("postgres://postgres:pw@127.0.0.1:{closed}/x?connect_timeout=2");
    let out = pgfleet(&[
        "plan",
        "--db",
        &url,
        "--schema",
        good.to_str().unwrap(),
        "--exit-code",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("cannot connect to postgres@127.0.0.1:{closed}/x")),
        "{}",
        stderr(&out)
    );

    let out = pgfleet(&[
        "plan",
        "--db",
        db.url(),
        "--schema",
        "/nonexistent/schema.sql",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot read schema /nonexistent/schema.sql"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn apply_refuses_destructive_plans_without_consent_and_changes_nothing() {
    let db = pgfleet_testkit::TestDb::new().await;
    let c = db.connect().await;
    c.batch_execute("CREATE TABLE t (id int, precious text); INSERT INTO t VALUES (1, 'keep me');")
        .await
        .unwrap();
    let home = Home::new("destructive");
    let schema = write_schema(
        &home.dir,
        "schema.sql",
        "CREATE TABLE t (id int, added int);",
    );
    let s = schema.to_str().unwrap();

    let out = pgfleet(&["apply", "--db", db.url(), "--schema", s, "--yes"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("hazards you did not allow: data_loss")
            && err.contains("--allow-hazards data_loss"),
        "{err}"
    );
    let precious: String = c
        .query_one("SELECT precious FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(precious, "keep me");
    let added: i64 = c
        .query_one("SELECT count(*) FROM information_schema.columns WHERE table_name = 't' AND column_name = 'added'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(added, 0, "nothing at all was applied");

    let out = pgfleet(&[
        "apply",
        "--db",
        db.url(),
        "--schema",
        s,
        "--allow-hazards",
        "data_loss,breaking_change",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "no terminal and no --yes: refused"
    );
    assert!(stderr(&out).contains("pass --yes"), "{}", stderr(&out));

    let out = pgfleet(&[
        "apply",
        "--db",
        db.url(),
        "--schema",
        s,
        "--allow-hazards",
        "data_loss,breaking_change",
        "--dry-run",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("DROP COLUMN"), "{}", stdout(&out));

    let out = pgfleet(&[
        "apply",
        "--db",
        db.url(),
        "--schema",
        s,
        "--allow-hazards",
        "all",
        "--yes",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = pgfleet(&["plan", "--db", db.url(), "--schema", s, "--exit-code"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    let out = pgfleet(&[
        "apply",
        "--db",
        db.url(),
        "--schema",
        s,
        "--allow-hazards",
        "data_los",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown hazard \"data_los\""),
        "{}",
        stderr(&out)
    );
}

/// The review's case: `text` → `varchar(3)` was planned with only `table_rewrite, long_lock` and
/// applied as `USING email::varchar(3)`, which turned `longer-email@example.com` into `lon`.
#[tokio::test]
async fn apply_refuses_type_changes_that_lose_or_may_fail_and_never_truncates() {
    let db = pgfleet_testkit::TestDb::new().await;
    let c = db.connect().await;
    c.batch_execute(
        "CREATE TABLE users (id int, email text, n text);
         INSERT INTO users VALUES (1, 'longer-email@example.com', 'x12');",
    )
    .await
    .unwrap();
    let home = Home::new("types");
    let narrow = write_schema(
        &home.dir,
        "narrow.sql",
        "CREATE TABLE users (id int, email varchar(3), n text);",
    );
    let narrow = narrow.to_str().unwrap();
    async fn email(c: &tokio_postgres::Client) -> String {
        c.query_one("SELECT email FROM users", &[])
            .await
            .unwrap()
            .get(0)
    }

    let out = pgfleet(&["plan", "--db", db.url(), "--schema", narrow]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(
            "-- hazards: data_loss, table_rewrite, long_lock\nALTER TABLE public.users ALTER COLUMN email TYPE character varying(3);"
        ),
        "{}",
        stdout(&out)
    );
    let out = pgfleet(&[
        "apply",
        "--db",
        db.url(),
        "--schema",
        narrow,
        "--allow-hazards",
        "table_rewrite,long_lock,index_build",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("hazards you did not allow: data_loss"),
        "{}",
        stderr(&out)
    );
    assert_eq!(email(&c).await, "longer-email@example.com");
    // With consent, PostgreSQL's own conversion refuses the long value instead of truncating it.
    let out = pgfleet(&[
        "apply",
        "--db",
        db.url(),
        "--schema",
        narrow,
        "--allow-hazards",
        "all",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("value too long for type character varying(3)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(email(&c).await, "longer-email@example.com");

    // text → integer can only fail: may_fail, refused without consent like every hazard.
    let parse = write_schema(
        &home.dir,
        "parse.sql",
        "CREATE TABLE users (id int, email text, n integer);",
    );
    let parse = parse.to_str().unwrap();
    let allow = "table_rewrite,long_lock";
    let out = pgfleet(&[
        "apply",
        "--db",
        db.url(),
        "--schema",
        parse,
        "--allow-hazards",
        allow,
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("hazards you did not allow: may_fail")
            && stderr(&out).contains("--allow-hazards may_fail"),
        "{}",
        stderr(&out)
    );
    let allow = "may_fail,table_rewrite,long_lock";
    let out = pgfleet(&[
        "apply",
        "--db",
        db.url(),
        "--schema",
        parse,
        "--allow-hazards",
        allow,
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(2), "'x12' is no integer");
    assert!(stderr(&out).contains("rolled back"), "{}", stderr(&out));
    c.batch_execute("UPDATE users SET n = '12'").await.unwrap();
    let out = pgfleet(&[
        "apply",
        "--db",
        db.url(),
        "--schema",
        parse,
        "--allow-hazards",
        allow,
        "--yes",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let n: i32 = c
        .query_one("SELECT n FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 12);
}

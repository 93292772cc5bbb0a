//! Black-box tests of the `pgfleet` binary: real processes, real PostgreSQL.

use std::path::PathBuf;
use std::process::{Command, Output};

use pgfleet_testkit::{binaries, connect, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_pgfleet");

/// A private PGFLEET_HOME, stopped and removed afterwards.
struct Home {
    dir: PathBuf,
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
    let out = home.run(&["up", "--port", &port]);
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
fn demo_finds_the_right_document() {
    let home = Home::new("demo");
    let out = home.run(&["demo", "--port", &free_port().to_string()]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}\n{}", text, stderr(&out));
    let rank1 = text
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap_or_else(|| panic!("no ranking in {text}"));
    assert!(rank1.contains("Reset your password"), "{text}");
    assert!(text.contains("used the HNSW index"), "{text}");
    // Running it again starts from a fresh demo database.
    let again = home.run(&["demo"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("Already running"),
        "{}",
        stderr(&again)
    );
}

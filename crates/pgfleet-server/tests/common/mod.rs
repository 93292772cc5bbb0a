//! Test support of the operators' listener: a real fleet (the chat example's schema on a real
//! PostgreSQL, tenants in both modes), `pgfleet serve` in process on a free port with its workers,
//! tokens of each scope, and a minimal HTTP/1.1 client over real sockets.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pgfleet::control::config::Config;
use pgfleet::control::provision::CreateOptions;
use pgfleet::control::secrets::MasterKey;
use pgfleet::control::tenant::Mode;
use pgfleet::control::tokens::Scope;
use pgfleet::control::worker::WorkerOptions;
use pgfleet::control::{Control, catalog};
use pgfleet_testkit::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A running `serve` over a fleet of two tenants: `alice@example.com` (schema mode) and
/// `bob` (database mode).
pub struct Fleet {
    pub db: TestDb,
    pub control: Control,
    /// The operators' listener.
    pub addr: std::net::SocketAddr,
    pub admin: String,
    pub read: String,
    pub sql: String,
    pub dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Fleet {
    pub async fn start() -> Fleet {
        let db = TestDb::new().await;
        let schema = std::fs::read_to_string(repo_root().join("examples/chat/schema.sql")).unwrap();
        let (control, dir) = catalog_with_target(&db, "api", &schema).await;
        control
            .add_server("main", db.admin_url(), 100_000, 1)
            .await
            .unwrap();
        for (key, mode) in [("alice@example.com", Mode::Schema), ("bob", Mode::Database)] {
            control
                .provision(
                    key,
                    &CreateOptions {
                        mode: Some(mode),
                        server: None,
                    },
                    Duration::from_secs(120),
                )
                .await
                .unwrap();
        }
        let token = |name: &'static str, scope| {
            let c = control.clone();
            async move { c.create_token(name, scope).await.unwrap().secret }
        };
        let admin = token("ops", Scope::Admin).await;
        let read = token("viewer", Scope::Read).await;
        let sql = token("backend", Scope::Sql).await;
        let listener = pgfleet_server::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let c = control.clone();
        let server = tokio::spawn(async move {
            pgfleet_server::serve(
                c,
                listener,
                pgfleet_server::ServeOptions {
                    workers: Some(WorkerOptions {
                        health: None,
                        poll: Duration::from_millis(100),
                        ..WorkerOptions::default()
                    }),
                    metrics_interval: Duration::from_secs(5),
                    ..pgfleet_server::ServeOptions::default()
                },
                async move {
                    let _ = stopped.await;
                },
            )
            .await
            .unwrap();
        });
        Fleet {
            db,
            control,
            addr,
            admin,
            read,
            sql,
            dir,
            stop: Some(stop),
            server: Some(server),
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(s) = self.server.take() {
            s.await.unwrap();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// A request with `Authorization: Bearer token` (when given).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Response {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        let body = body.map(|b| b.to_string());
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        request(
            self.addr,
            method,
            path,
            &headers,
            body.as_deref().unwrap_or("").as_bytes(),
        )
        .await
    }

    /// The tenant's schema-qualified name of `table` and a superuser connection to its database.
    pub async fn tenant_table(&self, key: &str, table: &str) -> (tokio_postgres::Client, String) {
        let t = self.control.tenant(key).await.unwrap();
        let url = url_for_database(self.db.admin_url(), &t.database);
        let client = pgfleet_testkit::connect(&url).await;
        (
            client,
            format!(
                "{}.{}",
                pgfleet_testkit::quote_ident(&t.schema),
                pgfleet_testkit::quote_ident(table)
            ),
        )
    }
}

/// A catalog in `db` whose target is one migration of `sql` (in a directory of its own, named
/// after `what` and the database, returned for removal), and its control plane with a new master
/// key.
pub async fn catalog_with_target(db: &TestDb, what: &str, sql: &str) -> (Control, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "pgfleet-{what}-test-{}-{}",
        std::process::id(),
        db.name()
    ));
    let migrations = dir.join("migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(migrations.join("20260101000000_init.sql"), sql).unwrap();
    let m = pgfleet::migrate::MigrationDir::load(&migrations).unwrap();
    pgfleet::migrate::sum::write(&m).unwrap();
    let m = pgfleet::migrate::MigrationDir::load(&migrations).unwrap();
    let url = pgfleet::pg::connect::parse_url(db.url()).unwrap();
    catalog::init(&url, Some(&m)).await.unwrap();
    let control = Control::connect(Config::new(db.url(), MasterKey::generate().unwrap()))
        .await
        .unwrap();
    (control, dir)
}

/// Runs `node args` in `dir` with `env`; fails the test with its output when it fails.
pub fn run_node(node: &Path, dir: &Path, args: &[&str], env: &[(String, String)]) {
    let out = std::process::Command::new(node)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .expect("running node");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "node {args:?} in {} failed:\n{text}",
        dir.display()
    );
    eprintln!("{text}");
}

/// `url` with its database replaced.
pub fn url_for_database(url: &str, database: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{database}")
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    /// Every `set-cookie` header.
    pub cookies: Vec<String>,
    pub body: String,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    /// Asserts a problem+json answer of `kind` with `status`.
    pub fn problem(&self, status: u16, kind: &str) -> serde_json::Value {
        assert_eq!(
            (self.status, self.header("content-type")),
            (status, "application/problem+json"),
            "{}",
            self.body
        );
        let p = self.json();
        assert_eq!(p["type"], format!("urn:pgfleet:problem:{kind}"), "{p}");
        assert_eq!(p["status"], status);
        assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()), "{p}");
        p
    }
}

/// One HTTP/1.1 request on a fresh connection; the answer read to its end (chunked bodies are
/// joined).
pub async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), s.read_to_end(&mut raw))
        .await
        .expect("an answer within 120 s")
        .unwrap();
    parse(&raw)
}

pub fn parse(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut headers = HashMap::new();
    let mut cookies = Vec::new();
    for (k, v) in lines.filter_map(|l| l.split_once(':')) {
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
        if k == "set-cookie" {
            cookies.push(v.clone());
        }
        headers.insert(k, v);
    }
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|t| t == "chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Response {
        status,
        headers,
        cookies,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Percent-encodes a path segment or query value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Node.js and the Node test projects' dependencies: `scripts/node.sh` makes sure Node >= 20 and
/// the pinned packages are there (idempotent; `scripts/test.sh` runs it first) and prints the node
/// binary.
pub fn node() -> PathBuf {
    let out = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/node.sh"))
        .arg("--print-node")
        .current_dir(repo_root())
        .output()
        .expect("running scripts/node.sh");
    assert!(
        out.status.success(),
        "scripts/node.sh could not provide Node >= 20 with the test dependencies:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

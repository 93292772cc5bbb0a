//! Test support for pgfleet: real, throwaway PostgreSQL clusters and a fresh database per test.
//!
//! ```no_run
//! # async fn example() {
//! // One cluster per test binary, started on first use on a free port in a temp dir.
//! let db = pgfleet_testkit::TestDb::new().await; // named after the running test
//! let client = db.connect().await;
//! client.batch_execute("CREATE TABLE t (id int)").await.unwrap();
//! // Dropped when `db` goes out of scope, kept when the test panicked.
//! # }
//! ```
//!
//! - [`shared`]: the test binary's cluster. A watchdog process stops it and removes its directory
//!   when the test process exits, however it exits (even `kill -9`).
//! - [`TestDb`]: a database named from the test (`t_<test name>_<random>`), dropped on success,
//!   kept on failure (and the cluster with it), swept at the next start.
//! - [`TestCluster::start`]: extra clusters for tests that need several servers.
//! - [`pgbouncer::PgBouncer`]: a throwaway PgBouncer in front of a cluster, for benchmarks.
//!
//! Binaries: `PGFLEET_PG_BIN` when set, else the bundled PostgreSQL from the cache, installed on
//! first use exactly as `pgfleet setup` does.
#![deny(missing_docs)]

pub mod pgbouncer;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use pgfleet_embedded::{
    BinSource, Cluster, EmbeddedError, InitOptions, PgBinaries, install, paths, process,
};

/// File in a cluster's root that tells the watchdog and the sweeper to keep it (a test failed).
const KEEP_FILE: &str = "KEEP";
/// File in a cluster's root naming the process that owns it.
const OWNER_FILE: &str = "owner.pid";

/// Settings that make throwaway clusters fast: durability is not needed for data that dies with
/// the test run.
fn fast_settings() -> Vec<(String, String)> {
    [
        ("fsync", "off"),
        ("synchronous_commit", "off"),
        ("full_page_writes", "off"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Where test clusters live: `$TMPDIR/pgfleet-testkit`.
pub fn root_dir() -> PathBuf {
    std::env::temp_dir().join("pgfleet-testkit")
}

/// The PostgreSQL binaries tests use: `PGFLEET_PG_BIN`, else the bundled build (installed into the
/// cache on first use).
///
/// # Panics
/// When no binaries can be found or installed; the message says what to do.
pub fn binaries() -> PgBinaries {
    static BINARIES: OnceLock<PgBinaries> = OnceLock::new();
    BINARIES
        .get_or_init(|| {
            let found = match std::env::var_os(paths::PG_BIN_ENV).filter(|v| !v.is_empty()) {
                Some(dir) => PgBinaries::at(Path::new(&dir), BinSource::Explicit),
                None => install::ensure_installed(&paths::cache_dir(), |e| {
                    if !matches!(e, install::InstallEvent::AlreadyInstalled { .. }) {
                        eprintln!("pgfleet-testkit: {e:?}");
                    }
                })
                .and_then(|bin| PgBinaries::at(&bin, BinSource::Cache)),
            };
            found.unwrap_or_else(|e| panic!("pgfleet-testkit needs PostgreSQL: {e}"))
        })
        .clone()
}

/// A free TCP port on 127.0.0.1 (free now; the caller retries if it is taken before use).
///
/// Ports are drawn at random from 20000–31999, below Linux's ephemeral range (32768–60999): a port
/// handed out here is never also handed out by the kernel to some other `bind(0)` of a parallel
/// test between the check and the server's own bind.
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let r = u32::from_str_radix(&random_suffix(), 16).unwrap_or(0);
        let port = 20000 + (r % 12000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 in 20000-31999")
}

/// A throwaway cluster: its own temp directory, a free port, stopped and removed when dropped (or,
/// for the shared cluster, when the test process exits).
#[derive(Debug)]
pub struct TestCluster {
    cluster: Cluster,
    root: PathBuf,
}

impl TestCluster {
    /// Starts a new cluster. Use it for tests that need several servers; most tests use [`shared`].
    ///
    /// # Panics
    /// When the cluster cannot be started (the message carries the server log).
    pub fn start() -> Self {
        Self::start_labeled("extra", binaries())
    }

    /// Starts a new cluster with other binaries, e.g. Debian's PostgreSQL 15 to test version
    /// compatibility: `TestCluster::start_with(PgBinaries::at("/usr/lib/postgresql/15/bin".as_ref(), BinSource::Explicit)?)`.
    pub fn start_with(binaries: PgBinaries) -> Self {
        Self::start_labeled("extra", binaries)
    }

    fn start_labeled(label: &str, binaries: PgBinaries) -> Self {
        std::fs::create_dir_all(root_dir()).expect("cannot create the testkit directory");
        let root = root_dir().join(format!(
            "{label}-{}-{}",
            std::process::id(),
            random_suffix()
        ));
        std::fs::create_dir_all(&root).expect("cannot create a cluster directory");
        std::fs::write(root.join(OWNER_FILE), std::process::id().to_string())
            .expect("cannot write owner.pid");
        spawn_watchdog(&root);
        let data = root.join("data");
        let mut last_err = None;
        for _ in 0..5 {
            let opts = InitOptions {
                port: free_port(),
                settings: fast_settings(),
            };
            let (mut cluster, _) = Cluster::init_or_open(&data, binaries.clone(), &opts)
                .unwrap_or_else(|e| panic!("pgfleet-testkit: cannot initialize a cluster: {e}"));
            match cluster.start(Some(opts.port)) {
                Ok(_) => return Self { cluster, root },
                Err(e @ EmbeddedError::PortInUse { .. }) => last_err = Some(e),
                Err(e) => panic!("pgfleet-testkit: cannot start a cluster: {e}"),
            }
        }
        panic!("pgfleet-testkit: no free port after 5 tries: {last_err:?}")
    }

    /// The embedded cluster (port, data directory, URLs, state).
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Superuser URL of `database` on this cluster.
    pub fn url_for(&self, database: &str) -> String {
        self.cluster.url_for(database)
    }

    /// Superuser URL of the `postgres` database.
    pub fn url(&self) -> String {
        self.cluster.url()
    }

    /// TCP port.
    pub fn port(&self) -> u16 {
        self.cluster.port()
    }

    /// The directory holding this cluster (`data/`, `owner.pid`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Connects as the superuser to `database`.
    pub async fn connect(&self, database: &str) -> tokio_postgres::Client {
        connect(&self.url_for(database)).await
    }

    /// Stops the server (fast shutdown), e.g. to test an unreachable server.
    ///
    /// # Panics
    /// When it cannot be stopped.
    pub fn stop(&self) {
        self.cluster
            .stop()
            .unwrap_or_else(|e| panic!("pgfleet-testkit: cannot stop the cluster: {e}"));
    }

    /// Starts a stopped server again on its port.
    ///
    /// # Panics
    /// When it cannot be started.
    pub fn restart(&mut self) {
        let port = self.cluster.port();
        self.cluster
            .start(Some(port))
            .unwrap_or_else(|e| panic!("pgfleet-testkit: cannot restart the cluster: {e}"));
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.cluster.kill();
        if !self.root.join(KEEP_FILE).exists() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// The cluster of this test binary, started on first use (sweeping what earlier runs left behind).
pub fn shared() -> &'static TestCluster {
    static SHARED: OnceLock<TestCluster> = OnceLock::new();
    SHARED.get_or_init(|| {
        sweep();
        TestCluster::start_labeled(&binary_label(), binaries())
    })
}

fn binary_label() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| sanitize(&s, 24))
        .unwrap_or_else(|| "tests".into())
}

/// Removes cluster directories whose owning process is gone (kept failures of earlier runs, or
/// leftovers of a killed run), stopping their servers first. Returns the directories removed.
pub fn sweep() -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(root_dir()) else {
        return removed;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let owner = std::fs::read_to_string(dir.join(OWNER_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let owner_alive = owner.is_some_and(process::alive);
        let young = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() < 60);
        if owner_alive || (owner.is_none() && young) {
            continue;
        }
        if let Some(pid) = std::fs::read_to_string(dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next()?.trim().parse::<u32>().ok())
            && process::alive(pid)
        {
            process::signal(pid, "QUIT");
            process::wait_until(std::time::Duration::from_secs(10), || !process::alive(pid));
        }
        if std::fs::remove_dir_all(&dir).is_ok() {
            removed.push(dir);
        }
    }
    removed
}

/// Starts a process that outlives nothing: it waits for this test process to exit, then stops the
/// cluster's server (immediate shutdown) and removes its directory, unless a failed test asked to
/// keep it. It ignores Ctrl-C so an interrupted run still cleans up.
fn spawn_watchdog(root: &Path) {
    const SCRIPT: &str = r#"
trap '' INT HUP TERM
while kill -0 "$1" 2>/dev/null; do sleep 0.3; done
if [ -f "$2/data/postmaster.pid" ]; then
  pid=$(head -n 1 "$2/data/postmaster.pid")
  kill -QUIT "$pid" 2>/dev/null
  i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
fi
[ -f "$2/KEEP" ] || rm -rf "$2"
"#;
    let spawned = Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("pgfleet-testkit-watchdog")
        .arg(std::process::id().to_string())
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        eprintln!(
            "pgfleet-testkit: could not start the cleanup watchdog ({e}); clusters are swept at the next run"
        );
    }
}

/// A fresh database for one test on a cluster, dropped when the test passes and kept when it fails.
#[derive(Debug)]
pub struct TestDb {
    name: String,
    url: String,
    admin_url: String,
    password: String,
    cluster_root: PathBuf,
    data_dir: PathBuf,
}

impl TestDb {
    /// A database on the [`shared`] cluster, named after the running test (libtest names each test's
    /// thread after it).
    pub async fn new() -> Self {
        let hint = std::thread::current()
            .name()
            .filter(|n| *n != "main")
            .unwrap_or("test")
            .to_string();
        Self::named(&hint).await
    }

    /// A database on the [`shared`] cluster, named from `hint`.
    pub async fn named(hint: &str) -> Self {
        Self::on(shared(), hint).await
    }

    /// A database on `cluster`, named from `hint`.
    pub async fn on(cluster: &TestCluster, hint: &str) -> Self {
        let name = database_name(hint);
        let admin_url = cluster.url();
        let admin = connect(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
            .await
            .unwrap_or_else(|e| panic!("pgfleet-testkit: CREATE DATABASE {name}: {e}"));
        Self {
            url: cluster.url_for(&name),
            name,
            admin_url,
            password: cluster.cluster().password().to_string(),
            cluster_root: cluster.root().to_path_buf(),
            data_dir: cluster.cluster().data_dir().to_path_buf(),
        }
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Superuser URL of the database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Superuser URL of the cluster's `postgres` database.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// The superuser's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Connects as the superuser.
    pub async fn connect(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = std::fs::write(self.cluster_root.join(KEEP_FILE), "a test failed\n");
            eprintln!(
                "pgfleet-testkit: kept database {} of the failed test in cluster {}; start it with `pgfleet up --data-dir {}` and connect to {} (swept at the next test run)",
                self.name,
                self.cluster_root.display(),
                self.data_dir.display(),
                self.url
            );
            return;
        }
        let admin_url = self.admin_url.clone();
        let sql = format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&self.name)
        );
        // Drop runs outside any async context we could rely on: use a private runtime on a thread.
        let result = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
                    .await
                    .map_err(std::io::Error::other)?;
                tokio::spawn(conn);
                client
                    .batch_execute(&sql)
                    .await
                    .map_err(std::io::Error::other)
            })
        })
        .join();
        if let Ok(Err(e)) = result {
            eprintln!(
                "pgfleet-testkit: could not drop test database {}: {e}",
                self.name
            );
        }
    }
}

/// Connects to `url` without TLS, driving the connection on the current runtime.
///
/// # Panics
/// When the connection fails (tests want the message, not a `Result`).
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("pgfleet-testkit: cannot connect: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// `t_<sanitized hint>_<random>`, at most 63 bytes (PostgreSQL's identifier limit).
pub fn database_name(hint: &str) -> String {
    let last = hint.rsplit("::").next().unwrap_or(hint);
    format!("t_{}_{}", sanitize(last, 48), random_suffix())
}

fn sanitize(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    out.truncate(max);
    out
}

fn random_suffix() -> String {
    use std::io::Read;
    let mut buf = [0u8; 4];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_err()
    {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        buf = nanos.to_le_bytes();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Quotes an identifier for SQL text.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The path of example `name` of the workspace (`target/<profile>/examples/<name>`): tests that
/// need a second process of their own launch one (`cargo test` builds the examples of the package
/// it tests before it runs them).
///
/// # Panics
/// When the example was not built (a run filtered to one test target builds no examples); the
/// message says what to run.
pub fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    // target/<profile>/deps/<test binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} was not built: run the tests with `cargo test` (which builds the examples), or build it first with `cargo build --example {name}`",
        path.display()
    );
    path
}

/// Inserts `n` made-up tenants into a pgfleet catalog (rows only: no database, schema or role
/// exists behind them), for tests and benchmarks of listing and paging at scale. Keys are
/// `{prefix}0000001`, `{prefix}0000002`, …; states and health vary (4 in 5 ready); every row is
/// on `server` at the current target version. Ids start with `tf` so they never collide with
/// pgfleet's random ones in a test's lifetime (`offset` keeps several batches apart).
///
/// # Panics
/// When the insert fails (no catalog, unknown server).
pub async fn insert_catalog_tenants(
    catalog: &tokio_postgres::Client,
    server: &str,
    prefix: &str,
    n: i64,
    offset: i64,
) {
    catalog
        .execute(
            "INSERT INTO pgfleet.tenants (id, key, mode, server, database_name, schema_name, role_name,
                                          state, step, schema_version, health)
             SELECT 'tf' || lpad(to_hex($4::bigint + i), 15, '0'), $2 || lpad(i::text, 7, '0'), 'schema', $1,
                    'pgfleet_tenants', 'tf' || lpad(to_hex($4::bigint + i), 15, '0'),
                    'pgfleet_tf' || lpad(to_hex($4::bigint + i), 15, '0'),
                    (ARRAY['ready', 'ready', 'ready', 'ready', 'failed'])[1 + i % 5], 'done',
                    (SELECT version FROM pgfleet.targets WHERE is_current),
                    (ARRAY['healthy', 'healthy', 'degraded', 'unknown'])[1 + i % 4]
             FROM generate_series(1, $3::bigint) AS i",
            &[&server, &prefix, &n, &offset],
        )
        .await
        .unwrap_or_else(|e| panic!("pgfleet-testkit: inserting {n} catalog tenants: {e}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_valid_identifiers() {
        let n = database_name(
            "module::tests::Some Weird-Test::up_and_down_with_a_very_long_name_that_goes_on_and_on",
        );
        assert!(n.len() <= 63, "{n}");
        assert!(n.starts_with("t_up_and_down_with"), "{n}");
        assert!(
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{n}"
        );
        assert_ne!(database_name("x"), database_name("x"));
    }
}

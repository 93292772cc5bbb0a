//! The embedded runtime against real PostgreSQL processes.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use pgfleet_embedded::{
    Cluster, DirState, EmbeddedError, InitOptions, ServerState, StartOutcome, UpOptions, cluster,
    osuser, process,
};
use pgfleet_testkit::{TestCluster, TestDb, binaries, connect, free_port};

/// A directory for one test, removed (after stopping any server in it) when dropped.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(label: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "pgfleet-embedded-test-{label}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for pid in process::working_in(&self.dir.join("data")) {
            process::signal(pid, "KILL");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn new_cluster(data: &Path) -> Cluster {
    let opts = InitOptions {
        port: free_port(),
        ..InitOptions::default()
    };
    let (cluster, created) = Cluster::init_or_open(data, binaries(), &opts).unwrap();
    assert!(created);
    cluster
}

async fn query_i64(url: &str, sql: &str) -> i64 {
    connect(url).await.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn init_start_stop_restart_keeps_data() {
    let s = Scratch::new("restart");
    let data = s.dir.join("data");
    let mut c = new_cluster(&data);
    assert_eq!(c.state(), ServerState::Stopped);
    assert!(data.join("pgfleet.json").is_file());
    assert!(matches!(
        c.start(None).unwrap(),
        StartOutcome::Started { recovered: false }
    ));
    assert!(matches!(c.state(), ServerState::Running { .. }));
    assert_eq!(c.start(None).unwrap(), StartOutcome::AlreadyRunning);

    let client = connect(&c.url()).await;
    let version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        version.starts_with(&format!("{}.", binaries().major())),
        "{version}"
    );
    client
        .batch_execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
        .await
        .unwrap();
    drop(client);

    assert!(c.stop().unwrap());
    assert_eq!(c.state(), ServerState::Stopped);
    assert!(
        !c.stop().unwrap(),
        "stopping a stopped cluster reports it was not running"
    );

    let mut reopened = Cluster::open(&data, None).unwrap();
    reopened.start(None).unwrap();
    assert_eq!(
        query_i64(&reopened.url(), "SELECT v::int8 FROM kept").await,
        42
    );
    reopened.stop().unwrap();
}

#[tokio::test]
async fn wrong_password_is_refused() {
    let db = TestDb::new().await;
    let wrong = db.url().replacen(db.password(), "not-the-password", 1);
    let err = tokio_postgres::connect(&wrong, tokio_postgres::NoTls)
        .await
        .err()
        .expect("must fail");
    let code = err.as_db_error().map(|e| e.code().clone());
    assert_eq!(
        code,
        Some(tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{err:?}"
    );
}

#[tokio::test]
async fn pgvector_hnsw_and_ivfflat_work() {
    assert!(
        binaries().has_pgvector(),
        "the test binaries must ship pgvector"
    );
    let db = TestDb::new().await;
    let c = db.connect().await;
    c.batch_execute(
        "CREATE EXTENSION vector;
         CREATE TABLE docs (id int PRIMARY KEY, e vector(384), h halfvec(384));
         INSERT INTO docs
           SELECT i, v::vector, v::vector::halfvec
           FROM generate_series(1, 300) i,
                LATERAL (SELECT array_agg(sin(i * j)::real) AS v FROM generate_series(1, 384) j) a;
         CREATE INDEX docs_e_hnsw ON docs USING hnsw (e vector_cosine_ops) WITH (m = 16, ef_construction = 64);
         CREATE INDEX docs_h_hnsw ON docs USING hnsw (h halfvec_l2_ops);
         CREATE INDEX docs_e_ivf ON docs USING ivfflat (e vector_ip_ops) WITH (lists = 10);
         INSERT INTO docs SELECT 1000, e, h FROM docs WHERE id = 7;
         SET enable_seqscan = off;",
    )
    .await
    .unwrap();
    let plan: Vec<String> = c
        .query(
            "EXPLAIN SELECT id FROM docs ORDER BY e <=> (SELECT e FROM docs WHERE id = 7) LIMIT 3",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(plan.iter().any(|l| l.contains("docs_e_hnsw")), "{plan:?}");
    let nearest: Vec<i32> = c
        .query(
            "SELECT id FROM docs ORDER BY e <=> (SELECT e FROM docs WHERE id = 7) LIMIT 2",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut sorted = nearest.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![7, 1000],
        "an exact duplicate must be the nearest neighbour"
    );
    let half: i64 = c
        .query_one(
            "SELECT count(*) FROM (SELECT id FROM docs ORDER BY h <-> (SELECT h FROM docs WHERE id = 3) LIMIT 5) s",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(half, 5);
}

#[tokio::test]
async fn recovers_after_kill_9_of_the_postmaster() {
    let s = Scratch::new("kill9");
    let data = s.dir.join("data");
    let mut c = new_cluster(&data);
    c.start(None).unwrap();
    connect(&c.url())
        .await
        .batch_execute("CREATE TABLE survived (v int); INSERT INTO survived VALUES (7)")
        .await
        .unwrap();
    let ServerState::Running { pid } = c.state() else {
        panic!("not running")
    };
    assert!(process::signal(pid, "KILL"));
    assert!(process::wait_until(Duration::from_secs(10), || {
        !process::alive(pid)
    }));
    assert!(
        data.join("postmaster.pid").exists(),
        "kill -9 leaves postmaster.pid behind"
    );
    assert_eq!(c.state(), ServerState::Stopped);

    let outcome = c.start(None).unwrap();
    assert_eq!(outcome, StartOutcome::Started { recovered: true });
    assert_eq!(query_i64(&c.url(), "SELECT v::int8 FROM survived").await, 7);
    c.stop().unwrap();
}

#[tokio::test]
async fn a_recycled_pid_in_postmaster_pid_does_not_block_start() {
    let s = Scratch::new("pidreuse");
    let data = s.dir.join("data");
    let mut c = new_cluster(&data);
    // A live process that is not this cluster's postmaster (as after pid reuse).
    let mut sleeper = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    std::fs::write(
        data.join("postmaster.pid"),
        format!("{}\n{}\n0\n{}\n", sleeper.id(), data.display(), c.port()),
    )
    .unwrap();
    assert_eq!(c.state(), ServerState::Stopped);
    let outcome = c.start(None).unwrap();
    sleeper.kill().unwrap();
    let _ = sleeper.wait();
    assert_eq!(outcome, StartOutcome::Started { recovered: true });
    assert_eq!(query_i64(&c.url(), "SELECT 1::int8").await, 1);
    c.stop().unwrap();
}

#[test]
fn port_in_use_is_a_clear_error_and_nothing_is_lost() {
    let s = Scratch::new("port");
    let data = s.dir.join("data");
    let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut c = new_cluster(&data);
    let err = c.start(Some(port)).unwrap_err();
    assert!(err.is_port_in_use(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&port.to_string()) && msg.contains("--port"),
        "{msg}"
    );
    assert!(
        data.join("PG_VERSION").is_file(),
        "the data directory must survive"
    );
    drop(taken);
    // With a free port the intact cluster starts (not `port` again: a parallel test may take it now).
    let free = free_port();
    c.start(Some(free)).unwrap();
    assert_eq!(c.port(), free);
    c.stop().unwrap();
}

#[test]
fn refuses_directories_it_does_not_own_and_never_deletes_them() {
    let s = Scratch::new("refuse");
    // Not empty, not PostgreSQL.
    let other = s.dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("precious.txt"), "do not delete").unwrap();
    let err = pgfleet_embedded::up(&UpOptions {
        data_dir: other.clone(),
        port: Some(free_port()),
    })
    .unwrap_err();
    assert!(
        matches!(err, EmbeddedError::DataDirNotEmpty { .. }),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(other.join("precious.txt")).unwrap(),
        "do not delete"
    );

    // Another major version.
    let old = s.dir.join("old");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("PG_VERSION"), "15\n").unwrap();
    std::fs::write(old.join("pgfleet.json"), "{}").unwrap();
    let err = Cluster::open(&old, Some(binaries())).unwrap_err();
    assert!(
        matches!(err, EmbeddedError::VersionMismatch { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("PostgreSQL 15 data directory") && msg.contains("never upgrades or deletes"),
        "{msg}"
    );
    assert!(old.join("PG_VERSION").is_file());

    // A cluster pgfleet did not create.
    let foreign = s.dir.join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(
        foreign.join("PG_VERSION"),
        format!("{}\n", binaries().major()),
    )
    .unwrap();
    let err = pgfleet_embedded::up(&UpOptions {
        data_dir: foreign.clone(),
        port: None,
    })
    .unwrap_err();
    assert!(matches!(err, EmbeddedError::NotManaged { .. }), "{err}");
    assert_eq!(
        cluster::dir_state(&foreign).unwrap(),
        DirState::Foreign {
            major: binaries().major().to_string()
        }
    );

    // Nothing there.
    let err = pgfleet_embedded::status(&s.dir.join("nothing")).unwrap_err();
    assert!(matches!(err, EmbeddedError::NoCluster { .. }), "{err}");
    assert!(err.to_string().contains("pgfleet up"), "{err}");
}

#[tokio::test]
async fn runs_unprivileged_even_below_a_private_directory() {
    let s = Scratch::new("private");
    // Like `mktemp -d`: a 0700 directory owned by us, which another user cannot enter.
    let private = s.dir.join("private");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let data = private.join("nested").join("data");
    let mut c = new_cluster(&data);
    c.start(None).unwrap();
    let ServerState::Running { pid } = c.state() else {
        panic!("not running")
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid: u32 = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .unwrap();
    let owner = std::fs::metadata(&data).unwrap().uid();
    if osuser::is_root() {
        let user = c
            .server_user()
            .expect("as root the server runs as another user")
            .clone();
        assert_ne!(uid, 0, "the postmaster must not run as root");
        assert_eq!(uid, user.uid);
        assert_eq!(
            owner, user.uid,
            "the data directory belongs to the server user"
        );
        let granted = c.granted_traverse().to_vec();
        assert!(
            granted.contains(&private),
            "o+x must be granted on {private:?}: {granted:?}"
        );
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o007,
            0o001,
            "only traverse is granted, never read: {mode:o}"
        );
    } else {
        assert_eq!(uid, osuser::current_uid());
        assert_eq!(owner, osuser::current_uid());
    }
    assert_eq!(query_i64(&c.url(), "SELECT 1::int8").await, 1);
    c.stop().unwrap();
}

#[tokio::test]
async fn two_clusters_side_by_side() {
    let a = TestCluster::start();
    let b = TestCluster::start();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.cluster().data_dir(), b.cluster().data_dir());
    a.connect("postgres")
        .await
        .batch_execute("CREATE TABLE only_in_a (v int)")
        .await
        .unwrap();
    let in_b: i64 = b
        .connect("postgres")
        .await
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(in_b, 0);
    let a_root = a.root().to_path_buf();
    drop(a);
    assert!(
        !a_root.exists(),
        "a dropped test cluster removes its directory"
    );
    assert_eq!(
        query_i64(&b.url(), "SELECT 1::int8").await,
        1,
        "b is unaffected"
    );
}

#[test]
fn bad_explicit_bin_dir_names_the_setup_command() {
    let s = Scratch::new("nobin");
    let err = pgfleet_embedded::PgBinaries::at(&s.dir, pgfleet_embedded::BinSource::Explicit)
        .unwrap_err();
    assert!(err.to_string().contains("pgfleet setup"), "{err}");
}

/// The postmaster's environment, as a superuser sees it (`COPY … FROM PROGRAM 'env'`).
pub async fn server_environment(url: &str) -> Vec<(String, String)> {
    let client = connect(url).await;
    client
        .batch_execute("CREATE TEMP TABLE e (line text); COPY e FROM PROGRAM 'env'")
        .await
        .unwrap();
    client
        .query("SELECT line FROM e", &[])
        .await
        .unwrap()
        .iter()
        .filter_map(|r| {
            let line: String = r.get(0);
            line.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// The test process runs with cargo's variables (`CARGO_PKG_NAME`, …): none of them may reach the
/// server, only what `server_env` passes on (plus what PostgreSQL sets for its children).
#[tokio::test]
async fn the_server_starts_with_a_clean_environment() {
    assert!(
        std::env::var_os("CARGO_PKG_NAME").is_some(),
        "cargo sets CARGO_* for tests"
    );
    let s = Scratch::new("cleanenv");
    let mut c = new_cluster(&s.dir.join("data"));
    c.start(None).unwrap();
    let env = server_environment(&c.url()).await;
    c.stop().unwrap();
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert!(names.contains(&"PATH"), "{names:?}");
    let own_user = c.server_user().is_none();
    let unexpected: Vec<&str> = names
        .iter()
        .copied()
        // Set by PostgreSQL itself for its children.
        .filter(|n| {
            !matches!(
                *n,
                "PGDATA"
                    | "PGSYSCONFDIR"
                    | "PGLOCALEDIR"
                    | "PG_GRANDPARENT_PID"
                    | "PWD"
                    | "SHLVL"
                    | "_"
            )
        })
        .filter(|n| !pgfleet_embedded::server_env::passed(n.as_ref(), own_user))
        .filter(|n| own_user || !matches!(*n, "HOME" | "USER" | "LOGNAME"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected variables: {unexpected:?} in {names:?}"
    );
    if let Some(u) = c.server_user() {
        assert!(env.contains(&("USER".into(), u.name.clone())), "{env:?}");
        assert!(
            env.contains(&("HOME".into(), u.home.display().to_string())),
            "{env:?}"
        );
    }
}

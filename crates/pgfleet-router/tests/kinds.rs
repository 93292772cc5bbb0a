//! A second connection kind through the [`Backend`] seam, against a real PostgreSQL: a test-only
//! connection that opens a TCP socket and speaks the protocol itself (startup, SCRAM, simple
//! queries with PostgreSQL's text output) with `postgres-protocol`. It is pooled together with
//! ordinary tokio-postgres clients of the same server: one budget, one cap per tenant, eviction
//! across kinds, reaping, and heal-and-retry.
//!
//! Tenants are schemas of one test database; every connection logs in as the superuser, with
//! `application_name` `kinds:<key>` (clients) or `kinds:<key>/raw` (the second kind), so
//! `pg_stat_activity` tells who holds what. The churn test goes through a proxy that holds each
//! `Terminate` back, so a budget permit given back before the server closed the session shows.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use pgfleet_router::{
    Backend, BudgetPermit, ConnectError, Directory, DirectoryError, Placement, Repair, Router,
    RouterOptions,
};
use pgfleet_testkit::TestDb;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::{backend, frontend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---- the second kind -------------------------------------------------------------------------

/// Connections that speak the protocol themselves.
#[derive(Debug, Default)]
struct Raw;

/// An error of a [`RawConn`].
#[derive(Debug)]
enum RawError {
    /// The socket failed, or the server sent something unexpected.
    Io(std::io::Error),
    /// The server's `ErrorResponse`.
    Db { code: String, message: String },
}

impl std::fmt::Display for RawError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(_) => f.write_str("error communicating with the server"),
            Self::Db { message, .. } => write!(f, "ERROR: {message}"),
        }
    }
}

impl std::error::Error for RawError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Db { .. } => None,
        }
    }
}

impl From<std::io::Error> for RawError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// A connection: the socket, a read buffer, and its share of the server's budget, held until the
/// server has closed the socket.
struct RawConn {
    stream: Option<TcpStream>,
    buf: BytesMut,
    permit: Option<BudgetPermit>,
    /// Failed, or left inside a transaction: not to be reused.
    broken: bool,
}

impl Backend for Raw {
    type Conn = RawConn;
    type Error = RawError;

    async fn connect(
        &self,
        placement: &Placement,
        permit: BudgetPermit,
    ) -> Result<RawConn, ConnectError> {
        RawConn::open(&placement.config, permit).await
    }

    fn is_closed(conn: &RawConn) -> bool {
        conn.broken
    }

    fn sqlstate(error: &RawError) -> Option<&str> {
        match error {
            RawError::Db { code, .. } => Some(code),
            RawError::Io(_) => None,
        }
    }
}

fn error_fields(body: &backend::ErrorResponseBody) -> RawError {
    let (mut code, mut message) = (String::new(), String::new());
    let mut fields = body.fields();
    while let Ok(Some(f)) = fields.next() {
        let value = String::from_utf8_lossy(f.value_bytes()).into_owned();
        match f.type_() {
            b'C' => code = value,
            b'M' => message = value,
            _ => {}
        }
    }
    RawError::Db { code, message }
}

impl RawConn {
    async fn open(
        config: &tokio_postgres::Config,
        permit: BudgetPermit,
    ) -> Result<RawConn, ConnectError> {
        let Some(tokio_postgres::config::Host::Tcp(host)) = config.get_hosts().first() else {
            return Err(ConnectError::Unreachable("not a TCP host".into()));
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let stream = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| ConnectError::Unreachable(e.into()))?;
        let mut conn = RawConn {
            stream: Some(stream),
            buf: BytesMut::new(),
            permit: Some(permit),
            broken: true,
        };
        match conn.startup(config).await {
            Ok(()) => {
                conn.broken = false;
                Ok(conn)
            }
            Err(e) => {
                let code = Raw::sqlstate(&e).map(str::to_string);
                Err(ConnectError::from_sqlstate(code.as_deref(), e))
            }
        }
    }

    /// Startup as the placement's role, database and options; SCRAM-SHA-256 or cleartext.
    async fn startup(&mut self, config: &tokio_postgres::Config) -> Result<(), RawError> {
        let user = config.get_user().unwrap_or("postgres");
        let app = format!("{}/raw", config.get_application_name().unwrap_or("raw"));
        let mut params = vec![
            ("user", user),
            ("database", config.get_dbname().unwrap_or(user)),
            ("application_name", app.as_str()),
        ];
        if let Some(options) = config.get_options() {
            params.push(("options", options));
        }
        let password = config.get_password().unwrap_or_default();
        let mut out = BytesMut::new();
        frontend::startup_message(params, &mut out)?;
        self.send(&out).await?;
        let mut scram = None;
        loop {
            let mut out = BytesMut::new();
            match self.read().await? {
                backend::Message::AuthenticationOk
                | backend::Message::ParameterStatus(_)
                | backend::Message::BackendKeyData(_)
                | backend::Message::NoticeResponse(_) => continue,
                backend::Message::AuthenticationCleartextPassword => {
                    frontend::password_message(password, &mut out)?;
                }
                backend::Message::AuthenticationSasl(_) => {
                    let s = ScramSha256::new(password, ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out)?;
                    scram = Some(s);
                }
                backend::Message::AuthenticationSaslContinue(body) => {
                    let s = scram.as_mut().ok_or_else(|| unexpected("SASL continue"))?;
                    s.update(body.data())?;
                    frontend::sasl_response(s.message(), &mut out)?;
                }
                backend::Message::AuthenticationSaslFinal(body) => {
                    let s = scram.as_mut().ok_or_else(|| unexpected("SASL final"))?;
                    s.finish(body.data())?;
                    continue;
                }
                backend::Message::ErrorResponse(body) => return Err(error_fields(&body)),
                backend::Message::ReadyForQuery(_) => return Ok(()),
                _ => return Err(unexpected("message during startup")),
            }
            self.send(&out).await?;
        }
    }

    /// Runs `sql` with the simple protocol; rows as PostgreSQL's text output.
    async fn simple_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, RawError> {
        let result = self.simple_query_inner(sql).await;
        if matches!(result, Err(RawError::Io(_))) {
            self.broken = true;
        }
        result
    }

    async fn simple_query_inner(
        &mut self,
        sql: &str,
    ) -> Result<Vec<Vec<Option<String>>>, RawError> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out)?;
        self.send(&out).await?;
        let (mut rows, mut error) = (Vec::new(), None);
        loop {
            match self.read().await? {
                backend::Message::DataRow(row) => {
                    let mut values = Vec::new();
                    let mut ranges = row.ranges();
                    while let Some(range) = ranges.next()? {
                        values.push(
                            range.map(|r| String::from_utf8_lossy(&row.buffer()[r]).into_owned()),
                        );
                    }
                    rows.push(values);
                }
                backend::Message::ErrorResponse(body) => error = Some(error_fields(&body)),
                backend::Message::ReadyForQuery(body) => {
                    // Left inside a transaction: the next user must not inherit it.
                    self.broken |= body.status() != b'I';
                    return match error {
                        Some(e) => Err(e),
                        None => Ok(rows),
                    };
                }
                _ => {}
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), RawError> {
        let stream = self.stream.as_mut().ok_or_else(|| unexpected("closed"))?;
        stream.write_all(bytes).await?;
        Ok(())
    }

    async fn read(&mut self) -> Result<backend::Message, RawError> {
        loop {
            if let Some(m) = backend::Message::parse(&mut self.buf)? {
                return Ok(m);
            }
            let stream = self.stream.as_mut().ok_or_else(|| unexpected("closed"))?;
            if stream.read_buf(&mut self.buf).await? == 0 {
                return Err(RawError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}

fn unexpected(what: &str) -> RawError {
    RawError::Io(std::io::Error::other(format!("unexpected {what}")))
}

impl Drop for RawConn {
    /// `Terminate`, then the budget permit goes back once the server has closed the socket.
    fn drop(&mut self) {
        if let (Some(stream), Some(permit)) = (self.stream.take(), self.permit.take()) {
            permit.release_after_close(stream);
        }
    }
}

// ---- a directory of schemas in one test database ---------------------------------------------

/// Tenants `key` → schema `key` of the test database. A repair creates the target's one table,
/// `notes`, when it is missing.
/// Two keys are special: `wrong-password` logs in with a wrong password, `nowhere` is placed on
/// server `nowhere`, a port nothing listens on. With `via`, server `main` is reached through that
/// port (a proxy).
struct Schemas {
    db: TestDb,
    via: Option<u16>,
    lookups: AtomicUsize,
    repairs: AtomicUsize,
    reasons: Mutex<Vec<String>>,
    nowhere: u16,
}

impl Schemas {
    async fn new(keys: &[&str]) -> Self {
        let db = TestDb::new().await;
        let admin = db.connect().await;
        for k in keys {
            admin
                .batch_execute(&format!(
                    "CREATE SCHEMA {k}; CREATE TABLE {k}.notes (id int)"
                ))
                .await
                .unwrap();
        }
        Self {
            db,
            via: None,
            lookups: AtomicUsize::new(0),
            repairs: AtomicUsize::new(0),
            reasons: Mutex::new(Vec::new()),
            nowhere: pgfleet_testkit::free_port(),
        }
    }
}

impl Directory for Schemas {
    async fn lookup(&self, key: &str) -> Result<Option<Placement>, DirectoryError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let (port, server) = match key {
            "nowhere" => (Some(self.nowhere), "nowhere"),
            _ => (self.via, "main"),
        };
        let mut url = self.db.url().to_string();
        if let Some(port) = port {
            let real = pgfleet_testkit::shared().port();
            url = url.replace(&format!(":{real}/"), &format!(":{port}/"));
        }
        let mut config: tokio_postgres::Config = url.parse().unwrap();
        config
            .application_name(format!("kinds:{key}"))
            .options(format!("-c search_path={key}"));
        if key == "wrong-password" {
            config.password("wrong");
        }
        Ok(Some(Placement {
            key: key.into(),
            tenant_id: key.into(),
            server: server.into(),
            mode: "schema".into(),
            database: self.db.name().into(),
            schema: key.into(),
            config,
            version: None,
            shared: None,
        }))
    }

    async fn provision(&self, key: &str, _: Duration) -> Result<Placement, DirectoryError> {
        Err(DirectoryError::ProvisionFailed {
            key: key.into(),
            source: "not in this test".into(),
        })
    }

    async fn repair(
        &self,
        key: &str,
        error: &str,
        _: SystemTime,
    ) -> Result<Repair, DirectoryError> {
        self.repairs.fetch_add(1, Ordering::SeqCst);
        self.reasons.lock().unwrap().push(error.to_string());
        let failed = |e: tokio_postgres::Error| DirectoryError::RepairFailed {
            key: key.into(),
            source: e.into(),
        };
        let admin = self.db.connect().await;
        let missing: bool = admin
            .query_one("SELECT to_regclass($1) IS NULL", &[&format!("{key}.notes")])
            .await
            .map_err(failed)?
            .get(0);
        if !missing {
            return Ok(Repair::default());
        }
        admin
            .batch_execute(&format!("CREATE TABLE {key}.notes (id int)"))
            .await
            .map_err(failed)?;
        Ok(Repair {
            applied: vec![format!("create table {key}.notes")],
            repaired_elsewhere: false,
        })
    }
}

// ---- helpers ---------------------------------------------------------------------------------

async fn router(keys: &[&str], opts: RouterOptions) -> Router<Schemas> {
    Router::new(Schemas::new(keys).await, opts)
}

/// Sessions of the test database by `application_name`.
async fn sessions(router: &Router<Schemas>) -> BTreeMap<String, i64> {
    let admin = pgfleet_testkit::connect(router.directory().db.admin_url()).await;
    admin
        .query(
            "SELECT application_name, count(*) FROM pg_stat_activity
              WHERE datname = $1 AND application_name LIKE 'kinds:%' GROUP BY 1",
            &[&router.directory().db.name()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Waits (up to 5 s) until the sessions are `want`.
async fn wait_for_sessions(router: &Router<Schemas>, want: &[(&str, i64)]) {
    let want: BTreeMap<String, i64> = want.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    let started = Instant::now();
    loop {
        let now = sessions(router).await;
        if now == want {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "sessions {now:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP proxy to `upstream` that holds each `Terminate` message back for `delay`: the server
/// keeps a session that long after the client let go of it, so a budget permit given back before
/// the server has closed the session shows as one session too many.
async fn slow_closing_proxy(upstream: u16, delay: Duration) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                continue;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut sr, &mut cw).await;
                let _ = cw.shutdown().await;
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if buf[..n].ends_with(&[b'X', 0, 0, 0, 4]) {
                        tokio::time::sleep(delay).await;
                    }
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = sw.shutdown().await;
            });
        }
    });
    port
}

fn opts(budget: usize, per_tenant: usize) -> RouterOptions {
    RouterOptions {
        budget_per_server: budget,
        per_tenant,
        acquire_timeout: Duration::from_millis(300),
        ..RouterOptions::default()
    }
}

// ---- tests -----------------------------------------------------------------------------------

#[tokio::test]
async fn a_second_kind_shares_the_budget_and_the_tenant_cap_with_clients() {
    let router = router(&["a", "b", "c"], opts(4, 3)).await;
    // The second kind works: logged in with the placement's options, text output.
    let mut raw_a = router.connection("a", &Raw).await.unwrap();
    let rows = raw_a
        .simple_query("SELECT current_schema(), 1 + 1, NULL::text")
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![vec![Some("a".to_string()), Some("2".to_string()), None]]
    );
    assert_eq!((raw_a.key(), raw_a.server()), ("a", "main"));
    let a1 = router.client("a").await.unwrap();
    let a2 = router.client("a").await.unwrap();
    a1.simple_query("select 1").await.unwrap();

    // Tenant a holds 3 = its cap, of two kinds: a fourth of either kind waits, then times out.
    for err in [
        router.client("a").await.unwrap_err(),
        router.connection("a", &Raw).await.unwrap_err(),
    ] {
        assert!(err.is_timeout(), "{err}");
        assert!(err.to_string().contains("tenant's connections"), "{err}");
    }

    // One more of b spends the server's budget of 4: neither kind gets a fifth.
    let _raw_b = router.connection("b", &Raw).await.unwrap();
    for err in [
        router.client("c").await.unwrap_err(),
        router.connection("c", &Raw).await.unwrap_err(),
    ] {
        assert!(err.is_timeout(), "{err}");
        assert!(err.to_string().contains("budget"), "{err}");
    }
    assert_eq!(router.open_connections()["main"], 4);
    wait_for_sessions(
        &router,
        &[("kinds:a", 2), ("kinds:a/raw", 1), ("kinds:b/raw", 1)],
    )
    .await;

    // Returned to the pool, each kind is reused by its own kind only.
    drop((raw_a, a1, a2));
    let again = router.connection("a", &Raw).await.unwrap();
    let client = router.client("a").await.unwrap();
    client.simple_query("select 1").await.unwrap();
    drop((again, client));
    assert_eq!(router.open_connections()["main"], 4);
    wait_for_sessions(
        &router,
        &[("kinds:a", 2), ("kinds:a/raw", 1), ("kinds:b/raw", 1)],
    )
    .await;
}

#[tokio::test]
async fn eviction_closes_the_longest_idle_connection_of_another_tenant_or_kind() {
    let router = router(&["a", "b", "c", "d", "e"], opts(3, 3)).await;
    // Idle, oldest first: a's raw, b's client, c's client. The budget of 3 is spent.
    drop(router.connection("a", &Raw).await.unwrap());
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(router.client("b").await.unwrap());
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(router.client("c").await.unwrap());
    wait_for_sessions(
        &router,
        &[("kinds:a/raw", 1), ("kinds:b", 1), ("kinds:c", 1)],
    )
    .await;

    // A client for d closes the longest-idle connection, a's raw one.
    let d = router.client("d").await.unwrap();
    d.simple_query("select 1").await.unwrap();
    drop(d);
    wait_for_sessions(&router, &[("kinds:b", 1), ("kinds:c", 1), ("kinds:d", 1)]).await;

    // A raw connection for e closes the longest-idle one now, b's client.
    let mut e = router.connection("e", &Raw).await.unwrap();
    e.simple_query("select 1").await.unwrap();
    drop(e);
    wait_for_sessions(
        &router,
        &[("kinds:c", 1), ("kinds:d", 1), ("kinds:e/raw", 1)],
    )
    .await;

    // A tenant whose own idle connections are of the other kind closes one of them instead of
    // waiting: the budget is full of e's idle clients, e asks for a raw connection.
    for k in ["c", "d", "e"] {
        router.forget(k);
    }
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(router.client("e").await.unwrap());
    }
    drop(clients);
    wait_for_sessions(&router, &[("kinds:e", 3)]).await;
    let mut raw = router.connection("e", &Raw).await.unwrap();
    raw.simple_query("select 1").await.unwrap();
    drop(raw);
    wait_for_sessions(&router, &[("kinds:e", 2), ("kinds:e/raw", 1)]).await;
    assert_eq!(router.open_connections()["main"], 3);
}

#[tokio::test]
async fn reaping_closes_idle_connections_of_both_kinds() {
    let router = router(
        &["a"],
        RouterOptions {
            idle_timeout: Duration::from_millis(300),
            ..opts(3, 3)
        },
    )
    .await;
    drop(router.client("a").await.unwrap());
    drop(router.connection("a", &Raw).await.unwrap());
    wait_for_sessions(&router, &[("kinds:a", 1), ("kinds:a/raw", 1)]).await;
    assert_eq!(router.open_connections()["main"], 2);
    wait_for_sessions(&router, &[]).await;
    // The permit goes back once the connection has read the server's end of file, which comes
    // just after the session leaves pg_stat_activity.
    let started = Instant::now();
    while router.open_connections()["main"] != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "budget permits still out: {:?}",
            router.open_connections()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_churn_of_both_kinds_the_server_never_sees_more_than_the_budget() {
    let keys = ["t0", "t1", "t2", "t3", "t4", "t5"];
    // Each session outlives its client by 100 ms on the server.
    let mut schemas = Schemas::new(&keys).await;
    let upstream = pgfleet_testkit::shared().port();
    schemas.via = Some(slow_closing_proxy(upstream, Duration::from_millis(100)).await);
    let router = Router::new(
        schemas,
        RouterOptions {
            acquire_timeout: Duration::from_secs(20),
            ..opts(4, 2)
        },
    );
    let admin = pgfleet_testkit::connect(router.directory().db.admin_url()).await;
    let db = router.directory().db.name().to_string();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let n: i64 = admin
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name LIKE 'kinds:%'",
                        &[&db],
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
    for w in 0..12 {
        let router = router.clone();
        set.spawn(async move {
            for i in 0..12 {
                let key = keys[(w * 7 + i * 5) % keys.len()];
                if (w + i) % 2 == 0 {
                    let c = router.client(key).await?;
                    c.simple_query("SELECT pg_sleep(0.002)").await.unwrap();
                } else {
                    let mut c = router.connection(key, &Raw).await?;
                    c.simple_query("SELECT pg_sleep(0.002)").await.unwrap();
                }
            }
            Ok::<_, pgfleet_router::RouterError>(())
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
    assert!(peak <= 4, "peak {peak} sessions over a budget of 4");
    assert!(peak >= 2, "the test never loaded the server ({peak})");
    assert!(router.open_connections()["main"] <= 4);
}

#[tokio::test]
async fn a_second_kind_is_repaired_and_retried_once_and_its_errors_keep_their_sqlstate() {
    let router = router(&["h"], RouterOptions::default()).await;
    let admin = router.directory().db.connect().await;
    admin.batch_execute("DROP TABLE h.notes").await.unwrap();
    let attempts = Arc::new(AtomicUsize::new(0));
    let a = attempts.clone();
    let rows = router
        .with_connection("h", &Raw, move |mut c| {
            a.fetch_add(1, Ordering::SeqCst);
            async move { c.simple_query("SELECT count(*) FROM notes").await }
        })
        .await
        .unwrap();
    assert_eq!(rows, vec![vec![Some("0".to_string())]]);
    assert_eq!(attempts.load(Ordering::SeqCst), 2);
    assert_eq!(router.directory().repairs.load(Ordering::SeqCst), 1);
    let reason = router.directory().reasons.lock().unwrap()[0].clone();
    assert!(
        reason.contains("notes") && reason.contains("42P01"),
        "{reason}"
    );

    // Clients of the same tenant are repaired by the same machinery.
    admin.batch_execute("DROP TABLE h.notes").await.unwrap();
    let n: i64 = router
        .with_tenant("h", |c| async move {
            Ok(c.query_one("SELECT count(*) FROM notes", &[]).await?.get(0))
        })
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(router.directory().repairs.load(Ordering::SeqCst), 2);

    // A table the target does not have: one attempt, the original error, a repair that finds
    // nothing, then the cooldown (no repair at all).
    for expected_repairs in [3, 3] {
        attempts.store(0, Ordering::SeqCst);
        let a = attempts.clone();
        let err = router
            .with_connection("h", &Raw, move |mut c| {
                a.fetch_add(1, Ordering::SeqCst);
                async move { c.simple_query("SELECT * FROM no_such_table").await }
            })
            .await
            .unwrap_err();
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        assert_eq!(
            router.directory().repairs.load(Ordering::SeqCst),
            expected_repairs
        );
        assert_eq!(err.sqlstate(), Some("42P01"), "{err}");
        assert!(!err.healed() && !err.is_retryable());
        assert!(err.db_error().is_none(), "not a tokio-postgres error");
        // The connection's own error is the source, printed once in the chain.
        let source = std::error::Error::source(&err).unwrap();
        assert!(source.downcast_ref::<RawError>().is_some());
        let mut chain = err.to_string();
        let mut next = Some(source);
        while let Some(e) = next {
            chain.push_str(&format!(": {e}"));
            next = e.source();
        }
        assert_eq!(chain.matches("does not exist").count(), 1, "{chain}");
    }
    // The cooldown is the tenant's, whatever the kind: a client now gets its error unrepaired.
    admin.batch_execute("DROP TABLE h.notes").await.unwrap();
    let err = router
        .with_tenant("h", |c| async move {
            c.query_one("SELECT count(*) FROM notes", &[]).await
        })
        .await
        .unwrap_err();
    assert_eq!(err.db_error().unwrap().code().code(), "42P01");
    assert_eq!(err.sqlstate(), Some("42P01"));
    assert_eq!(router.directory().repairs.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn refused_logins_and_unreachable_servers_of_the_second_kind_are_classified() {
    let router = router(&["a"], opts(3, 3)).await;
    // A refused login re-reads the placement once (LoginRefused), then reports the tenant
    // unavailable with the server's message.
    let err = router.connection("wrong-password", &Raw).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(
        err.to_string().contains("password authentication failed"),
        "{err}"
    );
    assert_eq!(router.directory().lookups.load(Ordering::SeqCst), 2);
    // An unreachable server (Unreachable) is marked down: the next attempt fails at once, and
    // the other server is not affected.
    let err = router.connection("nowhere", &Raw).await.unwrap_err();
    assert!(
        err.is_unavailable() && err.to_string().contains("cannot connect"),
        "{err}"
    );
    let started = Instant::now();
    let err = router.client("nowhere").await.unwrap_err();
    assert!(err.is_unavailable() && err.is_retryable(), "{err}");
    assert!(started.elapsed() < Duration::from_millis(200));
    assert!(router.open_connections()["nowhere"] == 0);
    let mut ok = router.connection("a", &Raw).await.unwrap();
    ok.simple_query("select 1").await.unwrap();
}

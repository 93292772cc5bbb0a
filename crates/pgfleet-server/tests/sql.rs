//! `POST /sql` against a real fleet: tenants in both modes on a real PostgreSQL, a real
//! `pgfleet serve` front door on a free port (in process), requests over real sockets. The Rust
//! tests check the protocol's edges by hand; `real_clients_*` runs the Node test project
//! (`tests/node`: the real `@neondatabase/serverless`, `drizzle-orm` and `pg`) and the Node
//! example against the same server.

mod common;
mod wire;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Response, node, repo_root, run_node};
use pgfleet::control::Control;
use pgfleet::control::provision::CreateOptions;
use pgfleet::control::tenant::Mode;
use pgfleet::control::tokens::Scope;
use pgfleet_server::sql::SqlOptions;
use pgfleet_server::sql::jwt::JwtSettings;
use pgfleet_testkit::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes-long!";
const ISSUER: &str = "pgfleet-test";
const AUDIENCE: &str = "pgfleet-app";

/// A running front door over a fleet of three tenants: `a` and `b` (schema mode, one database)
/// and `db` (database mode).
struct Harness {
    db: TestDb,
    control: Control,
    addr: std::net::SocketAddr,
    /// The wire-protocol front door (`--pg-listen`).
    pg: std::net::SocketAddr,
    /// The operators' listener (`/metrics`).
    ops: std::net::SocketAddr,
    token: String,
    revoked: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    dir: PathBuf,
}

struct Tenant {
    key: String,
    mode: &'static str,
    database: String,
    schema: String,
    direct_url: String,
}

impl Harness {
    async fn start(schema: &[PathBuf], jwks: Option<&Path>, opts: SqlOptions) -> Harness {
        Self::start_with(schema, jwks, opts, None, pgfleet::UnknownPolicy::Reject).await
    }

    async fn start_with(
        schema: &[PathBuf],
        jwks: Option<&Path>,
        opts: SqlOptions,
        tls: Option<tokio_rustls::TlsAcceptor>,
        unknown: pgfleet::UnknownPolicy,
    ) -> Harness {
        let pg = pgfleet_server::pg::PgOptions::default();
        Self::start_on(schema, jwks, opts, tls, unknown, pg, None).await
    }

    /// As [`Harness::start_with`], with the wire front door's options, on `cluster` (the shared
    /// one when `None`).
    async fn start_on(
        schema: &[PathBuf],
        jwks: Option<&Path>,
        opts: SqlOptions,
        tls: Option<tokio_rustls::TlsAcceptor>,
        unknown: pgfleet::UnknownPolicy,
        pg_options: pgfleet_server::pg::PgOptions,
        cluster: Option<&pgfleet_testkit::TestCluster>,
    ) -> Harness {
        let db = match cluster {
            Some(c) => TestDb::on(c, "wire").await,
            None => TestDb::new().await,
        };
        let sql: String = schema
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        let (control, dir) = common::catalog_with_target(&db, "sql", &sql).await;
        control
            .add_server("main", db.admin_url(), 100, 1)
            .await
            .unwrap();
        for (key, mode) in [
            ("a", Mode::Schema),
            ("b", Mode::Schema),
            ("db", Mode::Database),
        ] {
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
        let token = control
            .create_token("backend", Scope::Sql)
            .await
            .unwrap()
            .secret;
        let revoked = control
            .create_token("old", Scope::Sql)
            .await
            .unwrap()
            .secret;
        control.revoke_token("old").await.unwrap();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pg_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pg = pg_listener.local_addr().unwrap();
        let ops = pgfleet_server::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let ops_addr = ops.local_addr().unwrap();
        let door = pgfleet_server::SqlFrontDoor {
            listener: Some(listener),
            pg: Some(pg_listener),
            pg_options,
            options: opts,
            jwt: JwtSettings {
                secret: Some(SECRET.as_bytes().to_vec()),
                jwks_file: jwks.map(Path::to_path_buf),
                jwks_url: None,
                issuer: Some(ISSUER.into()),
                audience: Some(AUDIENCE.into()),
                tenant_claim: "sub".into(),
            },
            tls,
            // Every healable error may repair (the default waits 30 s after a repair that found
            // nothing, and these tests also ask for tables that do not exist).
            router: pgfleet::RouterOptions {
                repair_cooldown: Duration::ZERO,
                unknown,
                ..pgfleet::RouterOptions::default()
            },
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let c = control.clone();
        let server = tokio::spawn(async move {
            pgfleet_server::serve(
                c,
                ops,
                pgfleet_server::ServeOptions {
                    workers: None,
                    metrics_interval: Duration::from_secs(5),
                    sql: Some(door),
                    ..pgfleet_server::ServeOptions::default()
                },
                async move {
                    let _ = stopped.await;
                },
            )
            .await
            .unwrap();
        });
        Harness {
            db,
            control,
            addr,
            pg,
            ops: ops_addr,
            token,
            revoked,
            stop: Some(stop),
            server: Some(server),
            dir,
        }
    }

    async fn tenant(&self, key: &str) -> Tenant {
        let t = self.control.tenant(key).await.unwrap();
        Tenant {
            key: key.into(),
            mode: t.mode.as_str(),
            database: t.database.clone(),
            schema: t.schema.clone(),
            direct_url: self
                .control
                .credentials(key)
                .await
                .unwrap()
                .expose()
                .to_string(),
        }
    }

    /// `Neon-Connection-String` for an app-token caller of tenant `key`.
    fn conn(&self, key: &str, token: &str) -> String {
        format!("postgresql://{key}:{token}@pgfleet.internal/app?application_name=test")
    }

    async fn sql(&self, key: &str, body: &str) -> Response {
        let conn = self.conn(key, &self.token);
        post(
            self.addr,
            &[
                ("neon-connection-string", &conn),
                ("neon-array-mode", "true"),
            ],
            body.as_bytes(),
        )
        .await
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.server.take().unwrap().await.unwrap();
        for t in self.control.tenants(None).await.unwrap() {
            self.control.drop_tenant(&t.key).await.unwrap();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        drop(self.db);
    }
}

/// One `POST /sql` on a fresh connection (`text/plain` unless `headers` say otherwise first).
async fn post(addr: std::net::SocketAddr, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut all = vec![("content-type", "text/plain;charset=UTF-8")];
    all.extend_from_slice(headers);
    common::request(addr, "POST", "/sql", &all, body).await
}

fn chat_schema() -> Vec<PathBuf> {
    vec![repo_root().join("examples/chat/schema.sql")]
}

#[tokio::test]
async fn queries_batches_errors_and_isolation_over_http() {
    let h = Harness::start(&chat_schema(), None, SqlOptions::default()).await;

    // Text output, column descriptions, untyped text parameters.
    let r = h
        .sql(
            "a",
            r#"{"query":"SELECT $1::int + 1 AS n, $2::text AS t, $3::int AS z, 'NaN'::float8 AS f, ARRAY[1,NULL]::int[] AS arr, '1 day'::interval AS i","params":["41","x",null]}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(
        j["rows"],
        serde_json::json!([["42", "x", null, "NaN", "{1,NULL}", "1 day"]])
    );
    assert_eq!(j["command"], "SELECT");
    assert_eq!(j["rowCount"], 1);
    assert_eq!(j["rowAsArray"], true);
    assert_eq!(j["fields"][0]["name"], "n");
    assert_eq!(j["fields"][0]["dataTypeID"], 23);
    assert_eq!(j["fields"][0]["dataTypeSize"], 4);
    assert_eq!(j["fields"][4]["dataTypeID"], 1007);

    // Rows as objects without Neon-Array-Mode.
    let conn = h.conn("a", &h.token);
    let r = post(
        h.addr,
        &[("neon-connection-string", &conn)],
        br#"{"query":"SELECT 1 AS one"}"#,
    )
    .await;
    assert_eq!(r.json()["rows"], serde_json::json!([{"one": "1"}]));

    // A batch commits as one; a failing batch leaves nothing.
    let r = h
        .sql(
            "a",
            r#"{"queries":[{"query":"INSERT INTO users (external_id, email, display_name) VALUES ($1, $1, 'A') RETURNING id","params":["a@example.com"]},{"query":"SELECT count(*) FROM users","params":[]}]}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["results"][0]["command"], "INSERT");
    assert_eq!(j["results"][0]["rowCount"], 1);
    assert_eq!(j["results"][1]["rows"], serde_json::json!([["1"]]));
    let r = h
        .sql(
            "a",
            r#"{"queries":[{"query":"INSERT INTO users (external_id, email, display_name) VALUES ('b', 'b@example.com', 'B')"},{"query":"SELECT 1/0"}]}"#,
        )
        .await;
    assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("22012")));
    let r = h
        .sql("a", r#"{"query":"SELECT count(*) FROM users"}"#)
        .await;
    assert_eq!(
        r.json()["rows"],
        serde_json::json!([["1"]]),
        "the failed batch was rolled back"
    );

    // PostgreSQL's error fields.
    let r = h.sql("a", r#"{"query":"SELECT * FROM nope"}"#).await;
    assert_eq!(r.status, 400);
    let j = r.json();
    assert_eq!(j["code"], "42P01");
    assert_eq!(j["position"], "15");
    assert_eq!(j["severity"], "ERROR");
    let r = h.sql("a", r#"{"query":"SELECT 1; SELECT 2"}"#).await;
    assert_eq!(
        r.json()["code"],
        "42601",
        "one statement per query: {}",
        r.body
    );

    // Isolation: tenant b's rows are out of a's reach whatever a sends.
    let b = h.tenant("b").await;
    for sql in [
        format!("SELECT count(*) FROM \"{}\".users", b.schema),
        format!("SET search_path TO \"{}\"", b.schema),
        "SET ROLE postgres".to_string(),
        "SET SESSION AUTHORIZATION postgres".to_string(),
    ] {
        let body = serde_json::json!({"query": sql}).to_string();
        let r = h.sql("a", &body).await;
        if r.status == 200 {
            // SET search_path succeeds, and changes nothing for the next request.
            assert!(sql.starts_with("SET search_path"), "{sql}: {}", r.body);
        } else {
            assert_eq!(r.status, 400, "{sql}: {}", r.body);
        }
    }
    let r = h
        .sql("b", r#"{"query":"SELECT count(*) FROM users"}"#)
        .await;
    assert_eq!(r.json()["rows"], serde_json::json!([["0"]]));

    // Nothing a request leaves on its connection reaches the next request.
    let r = h
        .sql("a", r#"{"query":"SET statement_timeout = '1234s'"}"#)
        .await;
    assert_eq!(r.status, 200);
    for _ in 0..3 {
        let r = h.sql("a", r#"{"query":"SHOW statement_timeout"}"#).await;
        assert_ne!(r.json()["rows"][0][0], "1234s");
    }
    let r = h.sql("a", r#"{"query":"BEGIN"}"#).await;
    assert_eq!(r.status, 200);
    // Had the BEGIN stayed open, this transaction-level lock would outlive its request.
    let r = h
        .sql("a", r#"{"query":"SELECT pg_advisory_xact_lock(7)"}"#)
        .await;
    assert_eq!(r.status, 200);
    let r = h
        .sql("a", r#"{"query":"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 7"}"#)
        .await;
    assert_eq!(
        r.json()["rows"],
        serde_json::json!([["0"]]),
        "no transaction left open"
    );
    let r = h
        .sql("a", r#"{"query":"SELECT pg_advisory_lock(42)"}"#)
        .await;
    assert_eq!(r.status, 200);
    let r = h
        .sql("a", r#"{"query":"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 42"}"#)
        .await;
    assert_eq!(
        r.json()["rows"],
        serde_json::json!([["0"]]),
        "advisory lock released"
    );

    // Healing: a dropped table comes back and the query runs once more.
    let a = h.tenant("a").await;
    let admin = pgfleet_testkit::connect(&pgfleet_testkit::shared().url_for(&a.database)).await;
    admin
        .batch_execute(&format!("DROP TABLE \"{}\".chat_messages", a.schema))
        .await
        .unwrap();
    let r = h
        .sql("a", r#"{"query":"SELECT count(*) FROM chat_messages"}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.headers.get("pgfleet-healed").map(String::as_str),
        Some("1")
    );

    // Database mode works the same.
    let r = h
        .sql(
            "db",
            r#"{"query":"SELECT current_database() = $1","params":[]}"#,
        )
        .await;
    assert_eq!(
        r.status, 400,
        "a missing parameter is PostgreSQL's error: {}",
        r.body
    );
    let r = h
        .sql("db", r#"{"query":"SELECT count(*) FROM users"}"#)
        .await;
    assert_eq!(r.json()["rows"], serde_json::json!([["0"]]));
    let _ = (a.key, a.mode, a.direct_url, b.database);
    h.stop().await;
}

/// An HS256 end-user JWT for tenant `sub` (the harness's secret, issuer and audience).
fn hs256(sub: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": sub, "iss": ISSUER, "aud": AUDIENCE, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// `(session_user, current_user)` of a request of tenant `key`: as the app (trusted) or as an
/// end user (a JWT).
async fn who(h: &Harness, key: &str, end_user: bool) -> (String, String) {
    let body = br#"{"query":"SELECT session_user::text, current_user::text"}"#;
    let r = if end_user {
        let bearer = format!("Bearer {}", hs256(key));
        let conn = "postgresql://user@pgfleet.internal/app".to_string();
        post(
            h.addr,
            &[
                ("neon-connection-string", &conn),
                ("authorization", &bearer),
                ("neon-array-mode", "true"),
            ],
            body,
        )
        .await
    } else {
        h.sql(key, std::str::from_utf8(body).unwrap()).await
    };
    assert_eq!(r.status, 200, "{}", r.body);
    let row = &r.json()["rows"][0];
    (
        row[0].as_str().unwrap().to_string(),
        row[1].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn the_apps_token_shares_connections_of_schema_tenants_end_users_never_and_a_failed_switch_runs_nothing()
 {
    let h = Harness::start(&chat_schema(), None, SqlOptions::default()).await;
    let role = |key: &str| {
        let c = h.control.clone();
        let key = key.to_string();
        async move { c.tenant(&key).await.unwrap().role }
    };
    let (a_role, b_role, db_role) = (role("a").await, role("b").await, role("db").await);

    // The app's token: schema tenants run on the pool role's connections, switched to them; a
    // database tenant on its own login. End users: always their tenant's own login.
    for _ in 0..3 {
        for (key, tenant_role) in [("a", &a_role), ("b", &b_role)] {
            let (session, current) = who(&h, key, false).await;
            assert!(session.starts_with("pgfleet_pool_"), "{key}: {session}");
            assert_eq!(&current, tenant_role);
            assert_eq!(
                who(&h, key, true).await,
                (tenant_role.clone(), tenant_role.clone())
            );
        }
    }
    assert_eq!(
        who(&h, "db", false).await,
        (db_role.clone(), db_role.clone())
    );
    // Nothing of one tenant's request reaches the next on a shared connection: a setting, a
    // temporary object, a prepared statement, a lock, an open transaction.
    for (a_sql, b_sql, expect) in [
        (
            "SELECT set_config('app.leak', 'from a', false)",
            "SELECT coalesce(current_setting('app.leak', true), '')",
            "",
        ),
        (
            "PREPARE leak AS SELECT 1",
            "SELECT count(*)::text FROM pg_prepared_statements",
            "0",
        ),
        (
            "SELECT pg_advisory_lock(4242)::text",
            "SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242",
            "0",
        ),
        (
            // Had a's transaction stayed open, b's transaction-level lock would outlive b's
            // request (counted below).
            "BEGIN",
            "SELECT pg_advisory_xact_lock(77)::text",
            "",
        ),
    ] {
        for _ in 0..4 {
            let r = h
                .sql("a", &serde_json::json!({"query": a_sql}).to_string())
                .await;
            assert_eq!(r.status, 200, "{a_sql}: {}", r.body);
            let r = h
                .sql("b", &serde_json::json!({"query": b_sql}).to_string())
                .await;
            assert_eq!(
                r.json()["rows"][0][0],
                expect,
                "{a_sql} then {b_sql}: {}",
                r.body
            );
        }
    }

    let r = h
        .sql("b", r#"{"query":"SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory' AND objid = 77"}"#)
        .await;
    assert_eq!(
        r.json()["rows"][0][0],
        "0",
        "no transaction left open: {}",
        r.body
    );

    // Fail-closed: the pool role loses its membership in a's role. The switch fails, nothing of
    // the request runs (the insert below lands once), and a's app callers log in as a from now.
    let a = h.tenant("a").await;
    let admin = pgfleet_testkit::connect(&pgfleet_testkit::shared().url_for(&a.database)).await;
    // This fleet's pool role (other tests' fleets on the shared cluster have their own).
    let pool = who(&h, "a", false).await.0;
    admin
        .batch_execute(&format!("REVOKE \"{a_role}\" FROM \"{pool}\""))
        .await
        .unwrap();
    let r = h
        .sql(
            "a",
            r#"{"queries":[{"query":"INSERT INTO users (external_id, email, display_name) VALUES ('once', 'once@example.com', 'Once')"},{"query":"SELECT session_user::text"}]}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["results"][1]["rows"][0][0], a_role.as_str());
    let r = h
        .sql(
            "a",
            r#"{"query":"SELECT count(*)::text FROM users WHERE external_id = 'once'"}"#,
        )
        .await;
    assert_eq!(r.json()["rows"][0][0], "1", "{}", r.body);
    assert_eq!(who(&h, "a", false).await, (a_role.clone(), a_role.clone()));
    // b still shares.
    assert!(who(&h, "b", false).await.0.starts_with("pgfleet_pool_"));
    h.stop().await;
}

#[tokio::test]
async fn callers_limits_and_bad_requests() {
    let opts = SqlOptions {
        max_body: 1 << 16,
        max_response: 1 << 16,
        statement_timeout: Duration::from_millis(500),
        max_concurrent_per_tenant: 2,
        read_timeout: Duration::from_secs(1),
        cors_origins: vec!["https://app.example.com".into()],
        write_timeout: Duration::from_secs(30),
    };
    let h = Harness::start(&chat_schema(), None, opts).await;
    let select = br#"{"query":"SELECT current_user"}"#;

    // Credentials.
    let r = post(h.addr, &[], select).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (401, Some("28000")));
    for token in [
        h.revoked.clone(),
        format!("pgf_{}", "A".repeat(43)),
        "nope".into(),
    ] {
        let conn = h.conn("a", &token);
        let r = post(h.addr, &[("neon-connection-string", &conn)], select).await;
        assert_eq!(r.status, 401, "{token}: {}", r.body);
    }
    let r = post(
        h.addr,
        &[("neon-connection-string", &h.conn("nobody", &h.token))],
        select,
    )
    .await;
    assert_eq!((r.status, r.json()["code"].as_str()), (404, Some("3D000")));
    let r = post(
        h.addr,
        &[
            ("neon-connection-string", &h.conn("a", &h.token)),
            ("authorization", "Bearer not.a.jwt"),
        ],
        select,
    )
    .await;
    assert_eq!(r.status, 401, "a bearer makes a JWT caller: {}", r.body);

    // Bad requests.
    let conn = h.conn("a", &h.token);
    let with = [("neon-connection-string", conn.as_str())];
    for (body, what) in [
        (&b"{"[..], "not JSON"),
        (br#"{"query":1}"#, "must be a string"),
        (br#"{"queries":"x"}"#, "must be an array"),
    ] {
        let r = post(h.addr, &with, body).await;
        assert_eq!(
            (r.status, r.json()["code"].as_str()),
            (400, Some("08P01")),
            "{what}"
        );
        assert!(
            r.json()["message"].as_str().unwrap().contains(what),
            "{}",
            r.body
        );
    }
    let r = post(
        h.addr,
        &[
            ("neon-connection-string", conn.as_str()),
            ("neon-batch-isolation-level", "Snapshot"),
        ],
        br#"{"queries":[{"query":"SELECT 1"}]}"#,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let big = format!(r#"{{"query":"SELECT '{}'"}}"#, "x".repeat(1 << 17));
    assert_eq!(post(h.addr, &with, big.as_bytes()).await.status, 413);

    // Limits: response size, statement time.
    let r = post(
        h.addr,
        &with,
        br#"{"query":"SELECT repeat('x', 1000) FROM generate_series(1, 1000)"}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (400, Some("54000")),
        "{}",
        r.body
    );
    let r = post(
        h.addr,
        &with,
        br#"{"queries":[{"query":"INSERT INTO users (external_id, email) VALUES ('big', 'big@example.com')"},{"query":"SELECT repeat('x', 100000)"}]}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (400, Some("54000")),
        "{}",
        r.body
    );
    let r = post(
        h.addr,
        &with,
        br#"{"query":"SELECT count(*) FROM users WHERE external_id = 'big'"}"#,
    )
    .await;
    assert_eq!(
        r.json()["rows"],
        serde_json::json!([{"count": "0"}]),
        "a batch over the limit commits nothing"
    );
    let r = post(h.addr, &with, br#"{"query":"SELECT pg_sleep(5)"}"#).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (400, Some("57014")),
        "{}",
        r.body
    );
    let r = post(h.addr, &with, br#"{"query":"SELECT 1"}"#).await;
    assert_eq!(
        r.status, 200,
        "the tenant still works after cancels: {}",
        r.body
    );

    // A slow body gets 408 within the read timeout.
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    s.write_all(format!("POST /sql HTTP/1.1\r\nhost: x\r\nneon-connection-string: {conn}\r\ncontent-length: 100\r\n\r\n{{\"query\"").as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut raw))
        .await
        .expect("answered in time")
        .unwrap();
    assert_eq!(common::parse(&raw).status, 408);

    // Concurrency per tenant: the third of three slow requests is refused with Retry-After.
    let slow = br#"{"query":"SELECT pg_sleep(0.3)"}"#;
    let rs = futures_join3(
        post(h.addr, &with, slow),
        post(h.addr, &with, slow),
        post(h.addr, &with, slow),
    )
    .await;
    let statuses: Vec<u16> = rs.iter().map(|r| r.status).collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    let throttled = rs.iter().find(|r| r.status == 429).unwrap();
    assert_eq!(
        throttled.headers.get("retry-after").map(String::as_str),
        Some("1")
    );

    // CORS for an allowed origin only.
    let r = post(
        h.addr,
        &[
            ("neon-connection-string", conn.as_str()),
            ("origin", "https://app.example.com"),
        ],
        select,
    )
    .await;
    assert_eq!(
        r.headers
            .get("access-control-allow-origin")
            .map(String::as_str),
        Some("https://app.example.com")
    );
    let r = post(
        h.addr,
        &[
            ("neon-connection-string", conn.as_str()),
            ("origin", "https://evil.example"),
        ],
        select,
    )
    .await;
    assert!(!r.headers.contains_key("access-control-allow-origin"));

    // Refusals are counted by reason.
    let metrics = get_text(h.ops, "/metrics").await;
    for line in [
        "pgfleet_sql_auth_failures_total{reason=\"missing\"}",
        "pgfleet_sql_auth_failures_total{reason=\"token_invalid\"}",
        "pgfleet_sql_auth_failures_total{reason=\"jwt_invalid\"}",
        "pgfleet_sql_throttled_total",
    ] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(line) && !l.ends_with(" 0")),
            "no {line} in:\n{metrics}"
        );
    }
    h.stop().await;
}

async fn get_text(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    common::parse(&raw).body
}

async fn futures_join3<A, B, C>(a: A, b: B, c: C) -> Vec<Response>
where
    A: std::future::Future<Output = Response>,
    B: std::future::Future<Output = Response>,
    C: std::future::Future<Output = Response>,
{
    let (a, b, c) = tokio::join!(a, b, c);
    vec![a, b, c]
}

/// The real clients, at the versions pinned in `tests/node/package-lock.json`:
/// `@neondatabase/serverless` (`neon()`, transactions, full results, array mode),
/// `drizzle-orm/neon-http` and `pg` (the same values as straight from the database), the JWT
/// attack set, app tokens, bad requests, limits, isolation and healing; then the Node example.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_neon_drizzle_and_pg() {
    let node = node();
    let root = repo_root();
    let keys = std::env::temp_dir().join(format!("pgfleet-sql-keys-{}", std::process::id()));
    std::fs::create_dir_all(&keys).unwrap();
    run_node(
        &node,
        &root,
        &["tests/node/make-keys.mjs", keys.to_str().unwrap()],
        &[],
    );
    let opts = SqlOptions {
        statement_timeout: Duration::from_secs(2),
        max_response: 1 << 20,
        max_concurrent_per_tenant: 4,
        read_timeout: Duration::from_secs(2),
        ..SqlOptions::default()
    };
    let h = Harness::start(
        &[
            root.join("examples/chat/schema.sql"),
            root.join("tests/node/schema-extra.sql"),
        ],
        Some(&keys.join("jwks.json")),
        opts,
    )
    .await;
    let mut tenants = serde_json::Map::new();
    for name in ["a", "b", "db"] {
        let t = h.tenant(name).await;
        tenants.insert(
            name.into(),
            serde_json::json!({"key": t.key, "mode": t.mode, "database": t.database, "schema": t.schema, "direct_url": t.direct_url}),
        );
    }
    let env: Vec<(String, String)> = [
        ("PGFLEET_SQL_ENDPOINT", format!("http://{}/sql", h.addr)),
        ("PGFLEET_APP_TOKEN", h.token.clone()),
        ("PGFLEET_REVOKED_TOKEN", h.revoked.clone()),
        ("PGFLEET_JWT_SECRET", SECRET.into()),
        ("PGFLEET_JWT_ISSUER", ISSUER.into()),
        ("PGFLEET_JWT_AUDIENCE", AUDIENCE.into()),
        ("PGFLEET_TEST_KEYS", keys.display().to_string()),
        (
            "PGFLEET_TENANTS",
            serde_json::Value::Object(tenants).to_string(),
        ),
        ("PGFLEET_ADMIN_URL", h.db.admin_url().to_string()),
        ("PGFLEET_TENANT", "a".into()),
        ("PGFLEET_PG_HOST", "127.0.0.1".into()),
        ("PGFLEET_PG_PORT", h.pg.port().to_string()),
        ("PGFLEET_WS_PROXY", format!("{}/v2", h.addr)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // Blocking child processes: the server runs on the other worker threads meanwhile.
    let (n, dir, env2) = (node.clone(), root.join("tests/node"), env.clone());
    tokio::task::spawn_blocking(move || {
        run_node(&n, &dir, &["--test", "--test-concurrency=1"], &env2);
    })
    .await
    .unwrap();
    let (n, dir) = (node.clone(), root.join("examples/node-drizzle"));
    tokio::task::spawn_blocking(move || run_node(&n, &dir, &["main.mjs"], &env))
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&keys);
    h.stop().await;
}

/// `--tls-cert`/`--tls-key`: the real Neon driver reaches the front door over HTTPS (trusting the
/// test's self-signed certificate), and a plain-HTTP request to the TLS port gets no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_the_neon_driver_over_https() {
    let node = node();
    let dir = std::env::temp_dir().join(format!("pgfleet-sql-tls-{}", std::process::id()));
    let (cert, key) = self_signed(&dir);
    let tls = pgfleet_server::sql::listener::tls_acceptor(&cert, &key).unwrap();
    let h = Harness::start_with(
        &chat_schema(),
        None,
        SqlOptions::default(),
        Some(tls),
        pgfleet::UnknownPolicy::Reject,
    )
    .await;

    let env = vec![
        (
            "PGFLEET_SQL_ENDPOINT".to_string(),
            format!("https://localhost:{}/sql", h.addr.port()),
        ),
        ("PGFLEET_APP_TOKEN".to_string(), h.token.clone()),
        ("PGFLEET_TENANT".to_string(), "a".to_string()),
        (
            "NODE_EXTRA_CA_CERTS".to_string(),
            cert.display().to_string(),
        ),
    ];
    let (n, d) = (node.clone(), repo_root().join("tests/node"));
    tokio::task::spawn_blocking(move || run_node(&n, &d, &["tls-check.mjs"], &env))
        .await
        .unwrap();

    // Plain HTTP on the TLS port: the handshake fails and the connection closes unanswered.
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    s.write_all(b"POST /sql HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut raw))
        .await
        .expect("closed");
    assert!(
        !String::from_utf8_lossy(&raw).contains("HTTP/1.1 "),
        "answered in plain HTTP"
    );
    let _ = std::fs::remove_dir_all(&dir);
    h.stop().await;
}

/// A request whose caller went away half-way leaves answers in flight on its connection: that
/// connection is closed, never lent to the next request (which would read the first one's rows).
#[tokio::test]
async fn an_abandoned_request_never_hands_its_answers_to_the_next() {
    let h = Harness::start(&chat_schema(), None, SqlOptions::default()).await;
    let conn = h.conn("a", &h.token);
    for round in 0..3 {
        let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        let body = r#"{"query":"SELECT 'abandoned' AS who, pg_sleep(0.8)"}"#;
        s.write_all(format!("POST /sql HTTP/1.1\r\nhost: x\r\nneon-connection-string: {conn}\r\nneon-array-mode: true\r\ncontent-length: {}\r\n\r\n{body}", body.len()).as_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(s); // the caller goes away while the statement runs
        tokio::time::sleep(Duration::from_millis(100)).await;
        for _ in 0..3 {
            let r = h.sql("a", r#"{"query":"SELECT 'next' AS who"}"#).await;
            assert_eq!(r.status, 200, "round {round}: {}", r.body);
            assert_eq!(
                r.json()["rows"],
                serde_json::json!([["next"]]),
                "round {round}: {}",
                r.body
            );
        }
    }
    h.stop().await;
}

/// `--provision-on-first-use`: a verified caller naming a new tenant gets it, exactly once however
/// many requests race for it.
#[tokio::test]
async fn first_use_provisions_a_tenant_exactly_once() {
    let h = Harness::start_with(
        &chat_schema(),
        None,
        SqlOptions::default(),
        None,
        pgfleet::UnknownPolicy::Provision(Duration::from_secs(120)),
    )
    .await;
    let conn = h.conn("newcomer", &h.token);
    let addr = h.addr;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let conn = conn.clone();
            tokio::spawn(async move {
                post(
                    addr,
                    &[
                        ("neon-connection-string", &conn),
                        ("neon-array-mode", "true"),
                    ],
                    br#"{"query":"SELECT count(*) FROM users"}"#,
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["rows"], serde_json::json!([["0"]]));
    }
    let tenants: Vec<_> = h
        .control
        .tenants(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.key == "newcomer")
        .collect();
    assert_eq!(tenants.len(), 1);
    h.stop().await;
}

/// An Ed25519 key pair made by `openssl`: the private key's PEM and the public key's JWK `x`.
fn ed25519_key(dir: &Path, name: &str) -> (Vec<u8>, String) {
    let pem = dir.join(format!("{name}.pem"));
    let ok = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&pem)
        .status()
        .expect("openssl");
    assert!(ok.success());
    let der = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&pem)
        .output()
        .unwrap()
        .stdout;
    let raw = &der[der.len() - 32..];
    let b64 = |b: &[u8]| {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |a, &c| (a << 8) | u32::from(c)) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    };
    (std::fs::read(&pem).unwrap(), b64(raw))
}

fn signed(pem: &[u8], kid: &str, sub: &str) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(kid.into());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    jsonwebtoken::encode(
        &header,
        &serde_json::json!({"sub": sub, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_ed_pem(pem).unwrap(),
    )
    .unwrap()
}

/// `PGFLEET_JWKS_URL`: keys are read at start, read again for an unknown `kid` at most every 5 s
/// (a stream of made-up `kid`s costs nothing more), so a key added to the set works soon after.
#[tokio::test]
async fn jwks_from_a_url_is_read_at_start_and_again_for_a_new_kid_at_most_every_5_s() {
    use pgfleet_server::sql::jwks_url::MIN_REFETCH;
    use pgfleet_server::sql::jwt::JwtVerifier;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = std::env::temp_dir().join(format!("pgfleet-jwks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (pem1, x1) = ed25519_key(&dir, "k1");
    let (pem2, x2) = ed25519_key(&dir, "k2");
    let jwk = |kid: &str, x: &str| serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"});
    let doc = std::sync::Arc::new(std::sync::Mutex::new(
        serde_json::json!({"keys": [jwk("k1", &x1)]}).to_string(),
    ));
    let fetches = std::sync::Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    let (d, f) = (doc.clone(), fetches.clone());
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            f.fetch_add(1, Ordering::SeqCst);
            let body = d.lock().unwrap().clone();
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        }
    });
    let settings = JwtSettings {
        jwks_url: Some(url),
        tenant_claim: "sub".into(),
        ..JwtSettings::default()
    };
    let v = JwtVerifier::new(&settings).unwrap().unwrap();
    v.fetch_remote_keys().await.unwrap();
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    assert_eq!(
        v.tenant(&signed(&pem1, "k1", "alice")).await,
        Ok("alice".into())
    );

    // Unknown kids right after a fetch: refused, and no fetch each.
    for i in 0..20 {
        assert!(
            v.tenant(&signed(&pem2, &format!("made-up-{i}"), "mallory"))
                .await
                .is_err()
        );
    }
    assert!(v.tenant(&signed(&pem2, "k2", "bob")).await.is_err());
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "no fetch within 5 s of the last"
    );

    // The issuer adds k2; after the interval, the first token with k2 fetches it.
    *doc.lock().unwrap() =
        serde_json::json!({"keys": [jwk("k1", &x1), jwk("k2", &x2)]}).to_string();
    tokio::time::sleep(MIN_REFETCH + Duration::from_millis(200)).await;
    assert_eq!(
        v.tenant(&signed(&pem2, "k2", "bob")).await,
        Ok("bob".into())
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    // A key signed by k1's private key but naming k2 does not verify.
    assert!(v.tenant(&signed(&pem1, "k2", "bob")).await.is_err());

    // Not https (and not loopback), or unreachable: the server does not start.
    for bad in ["ftp://example.com/jwks", "http://127.0.0.1:1/jwks"] {
        let s = JwtSettings {
            jwks_url: Some(bad.into()),
            tenant_claim: "sub".into(),
            ..JwtSettings::default()
        };
        let err = JwtVerifier::new(&s)
            .unwrap()
            .unwrap()
            .fetch_remote_keys()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("PGFLEET_JWKS_URL"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A client that asks for a large answer and does not read it: after the write timeout its
/// connection (and the answer held for it) is dropped, and the tenant is served as before.
#[tokio::test]
async fn a_client_that_does_not_read_its_answer_is_dropped() {
    let opts = SqlOptions {
        max_response: 64 << 20,
        write_timeout: Duration::from_secs(1),
        ..SqlOptions::default()
    };
    let h = Harness::start(&chat_schema(), None, opts).await;
    let conn = h.conn("a", &h.token);
    let body = r#"{"query":"SELECT repeat('x', 32000000)"}"#;
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    s.write_all(format!("POST /sql HTTP/1.1\r\nhost: x\r\nneon-connection-string: {conn}\r\ncontent-length: {}\r\n\r\n{body}", body.len()).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await; // not reading
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw))
        .await
        .expect("closed");
    assert!(
        raw.len() < 32_000_000,
        "the whole answer arrived ({} bytes): it was not dropped",
        raw.len()
    );
    let r = h.sql("a", r#"{"query":"SELECT 1"}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    h.stop().await;
}

/// A self-signed certificate and key for localhost and 127.0.0.1, made by `openssl` in `dir`.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (scripts/bootstrap.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

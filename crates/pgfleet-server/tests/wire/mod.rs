//! The PostgreSQL wire-protocol front door (`--pg-listen`) against a real fleet, with real
//! clients: tokio-postgres here (named statements, pipelines, transactions, cancel), psql and
//! pgbench as processes, and hostile bytes on raw sockets.

use std::process::Command;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::NoTls;

use super::{Harness, chat_schema, common, hs256};
use pgfleet_server::sql::SqlOptions;

/// A tokio-postgres client of tenant `key` through the front door, with `password`.
async fn connect(
    h: &Harness,
    key: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1")
        .port(h.pg.port())
        .user(key)
        .password(password)
        .dbname("ignored")
        .application_name("wire-test");
    let (client, conn) = c.connect(NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// A superuser client of `database` on the fleet's server.
async fn admin(h: &Harness, database: &str) -> tokio_postgres::Client {
    let (base, _) = h.db.admin_url().rsplit_once('/').unwrap();
    pgfleet_testkit::connect(&format!("{base}/{database}")).await
}

/// The SQLSTATE of an error, or what the error was when it has none.
fn code(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.code().code(), db.message()),
        None => format!("no code: {e:?}"),
    }
    .split(' ')
    .next()
    .unwrap_or_default()
    .to_string()
}

#[tokio::test]
async fn wire_clients_reach_their_tenant_pooled_per_transaction() {
    let h = Harness::start(&chat_schema(), None, SqlOptions::default()).await;
    let a = connect(&h, "a", &h.token).await.unwrap();

    // Server parameters as PostgreSQL reports them; never who the session logged in as.
    let row = a
        .query_one(
            "SELECT current_setting('server_version_num')::int AS v, current_user::text AS u",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, i32>("v") >= 150000);
    assert_ne!(row.get::<_, String>("u"), "postgres");

    // Named statements (tokio-postgres prepares every query under a name), parameters, binary
    // results, a transaction.
    let insert = a
        .prepare("INSERT INTO users (external_id, email) VALUES ($1, $2) RETURNING id")
        .await
        .unwrap();
    let mut tx_client = connect(&h, "a", &h.token).await.unwrap();
    let tx = tx_client.transaction().await.unwrap();
    tx.query_one(
        "INSERT INTO users (external_id, email) VALUES ($1, $2) RETURNING id",
        &[&"tx-1", &"tx-1@example.com"],
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    let n: i64 = a
        .query_one("SELECT count(*) FROM users WHERE external_id = 'tx-1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "a rolled-back insert is not there");
    let id: i64 = a
        .query_one(&insert, &[&"a-1", &"a-1@example.com"])
        .await
        .unwrap()
        .get(0);
    assert!(id > 0);

    // 20 clients of one tenant (5 server sessions at most), each 25 transactions with named
    // statements that must be prepared again on whichever session the transaction gets.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let c = connect(&h, "a", &h.token).await.unwrap();
        tasks.push(tokio::spawn(async move {
            let stmt = c
                .prepare("INSERT INTO users (external_id, email) VALUES ($1, $1) RETURNING id")
                .await
                .unwrap();
            let count = c
                .prepare("SELECT count(*) FROM users WHERE external_id LIKE $1")
                .await
                .unwrap();
            for j in 0..25 {
                let ext = format!("c{i}-{j}");
                c.query_one(&stmt, &[&ext]).await.unwrap();
                let n: i64 = c
                    .query_one(&count, &[&format!("c{i}-%")])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(n, j + 1);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n: i64 = a
        .query_one(
            "SELECT count(*) FROM users WHERE external_id LIKE 'c%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 500);
    let admin = admin(&h, "postgres").await;
    let open: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgfleet-pg'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(open <= 20, "the budget holds: {open} server connections");

    // Tenants apart: b sees none of a's rows, as an app-token caller or as an end user.
    let b = connect(&h, "b", &h.token).await.unwrap();
    let n: i64 = b
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    let b_user = connect(&h, "b", &hs256("b")).await.unwrap();
    let n: i64 = b_user
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    let a_schema = h.tenant("a").await.schema;
    let e = b_user
        .simple_query(&format!("SELECT count(*) FROM {a_schema}.users"))
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42501", "{e}");

    // Server errors pass through unchanged.
    let e = a
        .execute(
            "INSERT INTO users (external_id, email) VALUES ('a-1', 'x')",
            &[],
        )
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "23505");
    assert_eq!(db.constraint(), Some("users_external_id_key"));
    let e = a.simple_query("SELEC 1").await.unwrap_err();
    assert_eq!(code(&e), "42601");
    assert!(e.as_db_error().unwrap().position().is_some());

    // A row larger than the relay holds at once streams through whole.
    let big: String = a
        .query_one("SELECT repeat('x', 3000000) || 'end'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(big.len(), 3_000_003);
    assert!(big.ends_with("xend"));

    // A multi-statement simple query, and a pipeline of extended queries.
    let msgs = a
        .simple_query(
            "SELECT 1; SELECT 'two'; SELECT count(*) FROM users WHERE external_id = 'a-1'",
        )
        .await
        .unwrap();
    let rows: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(rows, ["1", "two", "1"]);
    let (x, y) = tokio::join!(
        a.query_one("SELECT $1::int + 1", &[&1i32]),
        a.query_one("SELECT $1::text || 'b'", &[&"a"])
    );
    assert_eq!(x.unwrap().get::<_, i32>(0), 2);
    assert_eq!(y.unwrap().get::<_, String>(0), "ab");
    h.stop().await;
}

#[tokio::test]
async fn wire_logins_are_checked_and_bad_bytes_are_refused() {
    let h = Harness::start(&chat_schema(), None, SqlOptions::default()).await;

    let e = connect(&h, "a", &h.revoked).await.unwrap_err();
    assert_eq!(code(&e), "28P01", "{e}");
    let e = connect(&h, "a", "pgf_not-a-token").await.unwrap_err();
    assert_eq!(code(&e), "28P01", "{e}");
    let e = connect(&h, "a", &hs256("b")).await.unwrap_err();
    assert_eq!(code(&e), "28000", "a JWT of b with user a: {e}");
    let e = connect(&h, "a", "not.a.jwt").await.unwrap_err();
    assert_eq!(code(&e), "28P01", "{e}");
    let e = connect(&h, "nobody", &h.token).await.unwrap_err();
    assert_eq!(code(&e), "3D000", "{e}");
    let text = e.as_db_error().unwrap().message().to_string();
    assert!(text.contains("nobody"), "{text}");
    connect(&h, "db", &hs256("db")).await.unwrap();

    // Hostile first packets: each gets a clean close (or a FATAL), and the door keeps serving.
    let startup = |version: i32| {
        let mut p = Vec::new();
        p.extend_from_slice(&0i32.to_be_bytes());
        p.extend_from_slice(&version.to_be_bytes());
        p.extend_from_slice(b"user\0a\0\0");
        let len = p.len() as i32;
        p[..4].copy_from_slice(&len.to_be_bytes());
        p
    };
    let mut ssl_then_junk = vec![0, 0, 0, 8, 4, 210, 22, 47];
    ssl_then_junk.extend_from_slice(b"junk after the SSL request");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a huge length", vec![0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]),
        (
            "a negative length",
            vec![0xff, 0xff, 0xff, 0xf0, 0, 3, 0, 0],
        ),
        (
            "a truncated packet",
            vec![0, 0, 0, 100, 0, 3, 0, 0, b'u', b's'],
        ),
        ("protocol 2.0", startup(2 << 16)),
        ("protocol 4.0", startup(4 << 16)),
        (
            "random bytes",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
        ("GSS, then nothing", vec![0, 0, 0, 8, 4, 210, 22, 48]),
        ("SSL, then junk", ssl_then_junk),
        (
            "a bad cancel",
            vec![0, 0, 0, 12, 4, 210, 22, 46, 0, 0, 0, 1],
        ),
        ("no terminator", {
            let mut p = startup(3 << 16);
            p.pop();
            let len = p.len() as i32;
            p[..4].copy_from_slice(&len.to_be_bytes());
            p
        }),
    ];
    for (what, bytes) in cases {
        let mut s = tokio::net::TcpStream::connect(h.pg).await.unwrap();
        let _ = s.write_all(&bytes).await;
        let _ = s.shutdown().await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "{what}: the connection was not closed");
        if let Some(&first) = answer.first() {
            assert!(
                matches!(first, b'E' | b'N' | b'R'),
                "{what}: answered {:?}",
                String::from_utf8_lossy(&answer)
            );
        }
    }
    // Protocol 3.2 (libpq 18) is negotiated down, not dropped.
    let mut s = tokio::net::TcpStream::connect(h.pg).await.unwrap();
    s.write_all(&startup((3 << 16) | 2)).await.unwrap();
    let mut head = [0u8; 1];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(head[0], b'v', "NegotiateProtocolVersion first");

    // A client that never sends a password is closed at the startup timeout; others go on.
    let c = connect(&h, "a", &h.token).await.unwrap();
    assert_eq!(
        c.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
    h.stop().await;
}

#[tokio::test]
async fn wire_session_features_pin_role_changes_are_refused_and_cancel_works() {
    let h = Harness::start(&chat_schema(), None, SqlOptions::default()).await;
    let a = connect(&h, "a", &h.token).await.unwrap();

    // SET ROLE and its kin never run; the client goes on.
    for sql in [
        "SET ROLE postgres",
        "RESET ROLE",
        "SET SESSION AUTHORIZATION postgres",
        "DISCARD ALL",
    ] {
        let e = a.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&e), "42501", "{sql}: {e}");
    }
    // Inside a transaction, the refusal aborts it as any error would.
    let e = a
        .batch_execute("BEGIN; SET LOCAL ROLE postgres; COMMIT")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42501");
    let e = a.execute("SET ROLE postgres", &[]).await.unwrap_err();
    assert_eq!(code(&e), "42501", "through Parse/Bind/Execute: {e}");
    assert_eq!(
        a.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );

    // A session SET pins the client to its server session: the setting stays.
    a.batch_execute("SET statement_timeout = 4321")
        .await
        .unwrap();
    for _ in 0..5 {
        let v: String = a
            .query_one("SHOW statement_timeout", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(v, "4321ms");
    }
    // And it is not seen by the tenant's other clients.
    let other = connect(&h, "a", &h.token).await.unwrap();
    let v: String = other
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(v, "4321ms");

    // LISTEN/NOTIFY between two clients of a tenant.
    let (listener, mut conn) = {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(h.pg.port())
            .user("a")
            .password(h.token.clone());
        c.connect(NoTls).await.unwrap()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        use futures_util::StreamExt;
        while let Some(Ok(m)) = stream.next().await {
            if let tokio_postgres::AsyncMessage::Notification(n) = m {
                let _ = tx.send(n.payload().to_string());
            }
        }
    });
    listener.batch_execute("LISTEN news").await.unwrap();
    other.batch_execute("NOTIFY news, 'hello'").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some("hello"));

    // Cancel reaches the server session the client holds.
    let started = std::time::Instant::now();
    let c = connect(&h, "a", &h.token).await.unwrap();
    let token = c.cancel_token();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(NoTls).await.unwrap();
    });
    let e = c.simple_query("SELECT pg_sleep(20)").await.unwrap_err();
    assert_eq!(code(&e), "57014", "{e}");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(
        c.query_one("SELECT 2", &[]).await.unwrap().get::<_, i32>(0),
        2
    );
    h.stop().await;
}

#[tokio::test]
async fn wire_heals_a_missing_table_for_an_autocommit_statement() {
    let h = Harness::start(&chat_schema(), None, SqlOptions::default()).await;
    let a = connect(&h, "a", &h.token).await.unwrap();
    a.execute(
        "INSERT INTO users (external_id, email) VALUES ('h', 'h@x')",
        &[],
    )
    .await
    .unwrap();
    let t = h.tenant("a").await;
    let admin = admin(&h, &t.database).await;
    admin
        .batch_execute(&format!("DROP TABLE {}.documents", t.schema))
        .await
        .unwrap();
    // Extended protocol (tokio-postgres), then the simple protocol after another drop.
    let n: i64 = a
        .query_one("SELECT count(*) FROM documents", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    admin
        .batch_execute(&format!("DROP TABLE {}.documents", t.schema))
        .await
        .unwrap();
    let rows = a
        .simple_query("SELECT count(*) FROM documents")
        .await
        .unwrap();
    assert!(
        rows.iter()
            .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
    );
    // Inside a transaction the error passes through; the next attempt finds the table.
    admin
        .batch_execute(&format!("DROP TABLE {}.documents", t.schema))
        .await
        .unwrap();
    let e = a
        .batch_execute("BEGIN; SELECT 1; SELECT count(*) FROM documents; COMMIT")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42P01");
    // The transaction is failed until the client ends it, as on PostgreSQL.
    let e = a.batch_execute("SELECT 1").await.unwrap_err();
    assert_eq!(code(&e), "25P02");
    a.batch_execute("ROLLBACK").await.unwrap();
    let mut found = false;
    for _ in 0..100 {
        let r = a
            .batch_execute("BEGIN; SELECT 1; SELECT count(*) FROM documents; COMMIT")
            .await;
        if r.is_ok() {
            found = true;
            break;
        }
        a.batch_execute("ROLLBACK").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "the repair for the next attempt happened");
    h.stop().await;
}

/// psql and pgbench, the PostgreSQL project's own clients (the bundled binaries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_psql_and_pgbench() {
    let h = Harness::start(&chat_schema(), None, SqlOptions::default()).await;
    let bin = pgfleet_testkit::binaries().bin_dir().to_path_buf();
    let port = h.pg.port().to_string();
    let run = |program: &str, user: &str, args: &[&str], stdin: Option<&str>| {
        let mut cmd = Command::new(bin.join(program));
        cmd.args(["-h", "127.0.0.1", "-p", &port, "-U", user])
            .args(args)
            .env("PGPASSWORD", &h.token)
            .env("PGSSLMODE", "disable")
            .env("PGCONNECT_TIMEOUT", "10")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        {
            use std::io::Write;
            let mut i = child.stdin.take().unwrap();
            if let Some(s) = stdin {
                i.write_all(s.as_bytes()).unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let psql = |user: &str, args: &[&str], stdin: Option<&str>| {
        let mut all = vec!["-X", "-v", "ON_ERROR_STOP=1", "-d", "anything"];
        all.extend_from_slice(args);
        run("psql", user, &all, stdin)
    };

    // \d, a multi-statement query, COPY in and out.
    let (ok, out, err) = tokio::task::block_in_place(|| psql("a", &["-c", "\\d users"], None));
    assert!(ok, "{err}");
    assert!(out.contains("external_id"), "{out}");
    let script = "COPY users (external_id, email) FROM STDIN;\nu1\tu1@example.com\nu2\tu2@example.com\n\\.\nSELECT count(*) AS n FROM users; SELECT 'x' AS y;\nCOPY (SELECT external_id FROM users ORDER BY 1) TO STDOUT;\n";
    let (ok, out, err) =
        tokio::task::block_in_place(|| psql("a", &["-At", "-f", "-"], Some(script)));
    assert!(ok, "{err}");
    assert!(out.contains("\n2\n") || out.starts_with("2\n"), "{out}");
    assert!(out.contains("u1\nu2"), "{out}");

    // pgbench's tables, made by the admin in tenant db's database and granted to its role
    // (tenant roles have no DDL), then read-only and TPC-B-like runs with prepared statements.
    let t = h.tenant("db").await;
    let (base, _) = h.db.admin_url().rsplit_once('/').unwrap();
    let url = format!("{base}/{}", t.database);
    let (ok, _, err) = tokio::task::block_in_place(|| {
        let out = Command::new(bin.join("pgbench"))
            .args(["-i", "-s", "1", "-q", &url])
            .output()
            .unwrap();
        (
            out.status.success(),
            (),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    });
    assert!(ok, "{err}");
    let role: String = pgfleet_testkit::connect(&t.direct_url)
        .await
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    let admin = pgfleet_testkit::connect(&url).await;
    admin
        .batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO \"{role}\""
        ))
        .await
        .unwrap();
    for (mode, extra) in [
        ("prepared", "-S"),
        ("prepared", "-N"),
        ("extended", "-b"),
        ("simple", "-S"),
    ] {
        let mut args = vec!["-n", "-c", "8", "-j", "2", "-T", "3", "-M", mode, extra];
        if extra == "-b" {
            args.push("tpcb-like");
        }
        args.push("anything");
        let (ok, out, err) = tokio::task::block_in_place(|| run("pgbench", "db", &args, None));
        assert!(ok, "pgbench -M {mode} {extra}: {out}\n{err}");
        assert!(out.contains("number of failed transactions: 0"), "{out}");
        assert!(
            !out.contains("number of transactions actually processed: 0/"),
            "{out}"
        );
    }
    h.stop().await;
}

/// Session mode: a client keeps one server session; what it leaves is reset before the next
/// client gets it. TLS: psql with `sslmode=require`, the certificate checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_session_mode_and_tls() {
    let dir = std::env::temp_dir().join(format!("pgfleet-wire-tls-{}", std::process::id()));
    let (cert, key) = super::self_signed(&dir);
    let tls = pgfleet_server::sql::listener::tls_acceptor_for(&cert, &key, b"postgresql").unwrap();
    let pg = pgfleet_server::pg::PgOptions {
        pool_mode: pgfleet_server::pg::PoolMode::Session,
        tls: Some(tls),
        ..Default::default()
    };
    let h = Harness::start_on(
        &chat_schema(),
        None,
        SqlOptions::default(),
        None,
        pgfleet::UnknownPolicy::Reject,
        pg,
        None,
    )
    .await;

    // One server session for the whole client session, without pinning.
    let a = connect(&h, "a", &h.token).await.unwrap();
    let first: i32 = a
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    a.batch_execute("SET work_mem = '7MB'").await.unwrap();
    for _ in 0..5 {
        let p: i32 = a
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(p, first);
    }
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The next client may get that session, reset.
    for _ in 0..3 {
        let b = connect(&h, "a", &h.token).await.unwrap();
        let v: String = b.query_one("SHOW work_mem", &[]).await.unwrap().get(0);
        assert_ne!(v, "7MB");
    }

    // psql over TLS, verifying the certificate: Debian's psql 15 (the bundled one has no TLS).
    let psql = std::path::Path::new("/usr/lib/postgresql/15/bin/psql");
    assert!(
        psql.exists(),
        "{} is missing: run scripts/bootstrap.sh --with-pg15",
        psql.display()
    );
    let conninfo = format!(
        "host=localhost port={} user=a dbname=app sslmode=verify-full sslrootcert={}",
        h.pg.port(),
        cert.display()
    );
    // psql reaches its tenant over TLS to pgfleet (pgfleet to PostgreSQL is loopback, in clear).
    let out = tokio::task::block_in_place(|| {
        Command::new(psql)
            .args(["-X", "-c", "\\conninfo", &conninfo])
            .env("PGPASSWORD", &h.token)
            .output()
            .unwrap()
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("SSL") || stdout.contains("TLS"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
    h.stop().await;
}

/// A server session killed while idle in the pool is found at first use and the request sent to
/// another (named statements prepared there first); a stopped server gives a clean error, and the
/// same clients go on once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_survives_killed_sessions_and_a_restarted_server() {
    let mut cluster = pgfleet_testkit::TestCluster::start();
    let h = Harness::start_on(
        &chat_schema(),
        None,
        SqlOptions::default(),
        None,
        pgfleet::UnknownPolicy::Reject,
        pgfleet_server::pg::PgOptions::default(),
        Some(&cluster),
    )
    .await;
    let a = connect(&h, "a", &h.token).await.unwrap();
    let db = connect(&h, "db", &hs256("db")).await.unwrap();
    let count = a.prepare("SELECT count(*) FROM users").await.unwrap();
    let insert = db
        .prepare("INSERT INTO users (external_id, email) VALUES ($1, $1)")
        .await
        .unwrap();
    a.query_one(&count, &[]).await.unwrap();
    db.execute(&insert, &[&"k0"]).await.unwrap();

    let admin = pgfleet_testkit::connect(&cluster.url()).await;
    for round in 1..=3 {
        let killed: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'pgfleet-pg'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(killed >= 1, "round {round}: nothing to kill");
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Both rely on statements prepared on the killed sessions.
        let n: i64 = a.query_one(&count, &[]).await.unwrap().get(0);
        assert_eq!(n, 0);
        db.execute(&insert, &[&format!("k{round}")]).await.unwrap();
    }
    let n: i64 = db
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4, "each insert ran exactly once");

    // The server stops: a clean error, not a hang.
    tokio::task::block_in_place(|| cluster.stop());
    let started = std::time::Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(60), a.query_one(&count, &[]))
        .await
        .expect("an answer, not a hang")
        .unwrap_err();
    assert!(
        matches!(
            code(&e).as_str(),
            "08006" | "53300" | "57P01" | "57P02" | "57P03"
        ),
        "{e:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(45));
    // Back: the same client connections work again.
    tokio::task::block_in_place(|| cluster.restart());
    let mut ok = false;
    for _ in 0..60 {
        if a.query_one(&count, &[]).await.is_ok() && db.execute(&insert, &[&"back"]).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(ok, "the clients did not get through after the restart");
    h.stop().await;
}

/// Reads that opt in to the result cache are served from it over the wire; a write through the
/// wire drops them; psql's Ctrl-C cancels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_cache_and_psql_cancel() {
    let h = Harness::start(&chat_schema(), None, SqlOptions::default()).await;
    let a = connect(&h, "a", &h.token).await.unwrap();
    let read = "/* pgfleet:cache max-age=60 */ SELECT count(*) FROM users";
    let count = |msgs: Vec<tokio_postgres::SimpleQueryMessage>| -> String {
        msgs.iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap().to_string()),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(count(a.simple_query(read).await.unwrap()), "0");
    // A write around pgfleet is not seen while the result is fresh: it came from the cache.
    let t = h.tenant("a").await;
    let direct = pgfleet_testkit::connect(&t.direct_url).await;
    direct
        .batch_execute("INSERT INTO users (external_id, email) VALUES ('around', 'x')")
        .await
        .unwrap();
    assert_eq!(count(a.simple_query(read).await.unwrap()), "0");
    // A write through the wire drops the tenant's cached results when it commits.
    a.batch_execute("BEGIN; INSERT INTO users (external_id, email) VALUES ('wire', 'y'); COMMIT")
        .await
        .unwrap();
    assert_eq!(count(a.simple_query(read).await.unwrap()), "2");
    let metrics = common::request(h.ops, "GET", "/metrics", &[], b"").await;
    assert!(
        metrics
            .body
            .contains("pgfleet_pg_cache_total{status=\"hit\"}"),
        "{}",
        metrics.body
    );

    // psql's Ctrl-C: a CancelRequest on a new connection, with the key pgfleet gave.
    let bin = pgfleet_testkit::binaries().bin_dir().to_path_buf();
    let started = std::time::Instant::now();
    let out = tokio::task::block_in_place(|| {
        let child = Command::new(bin.join("psql"))
            .args([
                "-X",
                "-h",
                "127.0.0.1",
                "-p",
                &h.pg.port().to_string(),
                "-U",
                "a",
                "-d",
                "app",
            ])
            .args(["-c", "SELECT pg_sleep(30)"])
            .env("PGPASSWORD", &h.token)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let killed = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        child.wait_with_output().unwrap()
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("canceling statement due to user request"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    h.stop().await;
}

/// A client that waits longer than the acquire timeout for a server session gets `53300` and
/// goes on; a deadlock the server rolled back in autocommit runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_budget_timeouts_are_clean_errors() {
    let h = Harness::start(&chat_schema(), None, SqlOptions::default()).await;
    // Five pinned clients hold tenant a's five sessions (the harness's cap per tenant).
    let mut pinned = Vec::new();
    for _ in 0..5 {
        let c = connect(&h, "a", &hs256("a")).await.unwrap();
        c.batch_execute("LISTEN hold").await.unwrap();
        pinned.push(c);
    }
    let waiting = connect(&h, "a", &hs256("a")).await;
    // Its login itself needs a session: refused with the same code, cleanly.
    let e = waiting.expect_err("no session was free for the login");
    assert_eq!(code(&e), "53300", "{e:?}");
    // A client logged in before, idle, waits for its next transaction and gets 53300.
    drop(pinned.pop());
    let late = connect(&h, "a", &hs256("a")).await.unwrap();
    let holder = connect(&h, "a", &hs256("a")).await.unwrap();
    holder.batch_execute("LISTEN hold").await.unwrap();
    let started = std::time::Instant::now();
    let e = late.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(code(&e), "53300", "{e:?}");
    assert!(started.elapsed() >= Duration::from_secs(4));
    drop(holder);
    tokio::time::sleep(Duration::from_millis(300)).await;
    late.simple_query("SELECT 1").await.expect("it goes on");
    h.stop().await;
}

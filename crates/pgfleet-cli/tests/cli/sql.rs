//! `pgfleet token …` and `pgfleet serve --sql-listen` through the binary: a token is printed once
//! and works as the password of a connection string, a revoked one stops working, and bad names,
//! taken names and bad flags get clear errors.

use std::io::{BufRead, Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::control::Env;
use crate::{stderr, stdout};

/// One HTTP/1.1 `POST /sql` on a fresh connection: status and body.
fn post_sql(addr: &str, conn: &str, body: &str) -> (u16, String) {
    let (status, _, body) = post_sql_head(addr, conn, body);
    (status, body)
}

/// As [`post_sql`], with the response's head (status line and headers) too.
fn post_sql_head(addr: &str, conn: &str, body: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /sql HTTP/1.1\r\nhost: x\r\nconnection: close\r\nneon-connection-string: {conn}\r\nneon-array-mode: true\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn tokens_and_the_sql_front_door_through_the_binary() {
    let env = Env::new("cli-sql", &pgfleet_testkit::shared().url()).await;
    env.ok(&["tenant", "create", "alice@example.com"]);

    let out = env.ok(&["token", "create", "backend", "--scope", "sql"]);
    let token = stdout(&out).trim().to_string();
    assert!(token.starts_with("pgf_") && token.len() == 47, "{token}");
    assert!(stderr(&out).contains("shown once"), "{}", stderr(&out));
    let list = env.json(&["token", "list", "--format", "json"]);
    assert_eq!(list[0]["name"], "backend");
    assert_eq!(list[0]["scope"], "sql");
    assert!(list[0]["revoked_at"].is_null());
    assert!(
        !stdout(&env.ok(&["token", "list"])).contains(&token),
        "never shown again"
    );

    let taken = env.run(&["token", "create", "backend", "--scope", "read"]);
    assert_ne!(taken.status.code(), Some(0));
    assert!(
        stderr(&taken).contains("already exists"),
        "{}",
        stderr(&taken)
    );
    let bad = env.run(&["token", "create", "-no", "--scope", "sql"]);
    assert_ne!(bad.status.code(), Some(0));
    let bad = env.run(&["token", "create", "x y", "--scope", "sql"]);
    assert!(stderr(&bad).contains("token name"), "{}", stderr(&bad));
    let bad = env.run(&["token", "create", "x", "--scope", "root"]);
    assert_eq!(bad.status.code(), Some(2), "clap refuses an unknown scope");
    let bad = env.run(&[
        "serve",
        "--sql-listen",
        "127.0.0.1:0",
        "--sql-max-body",
        "ten",
    ]);
    assert!(stderr(&bad).contains("not a size"), "{}", stderr(&bad));
    let bad = env.run(&[
        "serve",
        "--sql-listen",
        "127.0.0.1:0",
        "--cache-max-bytes",
        "ten",
    ]);
    assert!(stderr(&bad).contains("not a size"), "{}", stderr(&bad));

    let mut serve = env
        .command(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sql-listen",
            "127.0.0.1:0",
            "--pg-listen",
            "127.0.0.1:0",
            "--no-health",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(serve.stderr.take().unwrap()).lines();
    let (mut addr, mut pg) = (None, None);
    while addr.is_none() || pg.is_none() {
        let line = lines
            .next()
            .expect("serve printed its SQL addresses")
            .unwrap();
        if let Some(rest) = line.split_once("SQL over HTTP on http://") {
            addr = Some(rest.1.split('/').next().unwrap().to_string());
        }
        if let Some(rest) = line.split_once("PostgreSQL wire protocol on ") {
            assert!(rest.1.contains("transaction pooling"), "{line}");
            pg = Some(rest.1.split(' ').next().unwrap().to_string());
        }
    }
    let (addr, pg) = (addr.unwrap(), pg.unwrap());
    std::thread::spawn(move || for _ in lines {});
    let conn = format!("postgresql://alice%40example.com:{token}@pgfleet.internal/app");
    let (status, body) = post_sql(
        &addr,
        &conn,
        r#"{"query":"SELECT $1::int * 2","params":["21"]}"#,
    );
    assert_eq!(
        (status, body.contains(r#""rows":[["42"]]"#)),
        (200, true),
        "{body}"
    );
    // The result cache: a commented read is served from memory the second time.
    let cached = r#"{"query":"/* pgfleet:cache max-age=60 */ SELECT $1::int * 3","params":["14"]}"#;
    let (_, head, body) = post_sql_head(&addr, &conn, cached);
    assert!(head.contains("pgfleet-cache: miss"), "{head}");
    let (_, head, again) = post_sql_head(&addr, &conn, cached);
    assert!(head.contains("pgfleet-cache: hit"), "{head}");
    assert_eq!(body, again);
    let (status, _) = post_sql(
        &addr,
        &conn.replace("alice", "bob"),
        r#"{"query":"SELECT 1"}"#,
    );
    assert_eq!(status, 404, "unknown tenant");

    // The wire front door of the same process: the tenant key as the user, the token as the
    // password.
    let (host, port) = pg.rsplit_once(':').unwrap();
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .port(port.parse().unwrap())
        .user("alice@example.com")
        .password(token.as_str())
        .dbname("app");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let n: i32 = client
        .query_one("SELECT $1::int * 2", &[&21i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 42);
    drop(client);

    env.ok(&["token", "revoke", "backend"]);
    let again = env.ok(&["token", "revoke", "backend"]);
    assert!(
        stderr(&again).contains("already revoked"),
        "{}",
        stderr(&again)
    );
    let started = Instant::now();
    loop {
        let (status, _) = post_sql(&addr, &conn, r#"{"query":"SELECT 1"}"#);
        if status == 401 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a revoked token still works"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let unknown = env.run(&["token", "revoke", "nobody"]);
    assert!(
        stderr(&unknown).contains("no token named"),
        "{}",
        stderr(&unknown)
    );

    let pid = serve.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(serve.wait().unwrap().success());
    env.ok(&["tenant", "drop", "alice@example.com", "--yes"]);
}

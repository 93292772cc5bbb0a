//! The demo's SQL-over-HTTP step: a `/sql` front door on the demo fleet (in process, loopback, a
//! fresh app token and HS256 secret) and `examples/node-drizzle` run against it with the Node.js
//! found on this machine. Skipped, with a line that says how to get it, when Node.js 20+ or the
//! example's packages are missing: the rest of the demo needs neither.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use pgfleet::control::Control;
use pgfleet::control::tokens::Scope;

/// The example, in the source tree this binary was built from.
fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/node-drizzle")
}

/// A `node` of major version 20 or newer: `PGFLEET_NODE`, else `node` on the PATH.
fn find_node() -> Option<String> {
    let node = std::env::var("PGFLEET_NODE").unwrap_or_else(|_| "node".into());
    let out = Command::new(&node).arg("--version").output().ok()?;
    let version = String::from_utf8_lossy(&out.stdout);
    let major: u32 = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()?
        .parse()
        .ok()?;
    (out.status.success() && major >= 20).then_some(node)
}

/// Runs the example for tenant `key` against a front door on `control`'s fleet.
///
/// # Errors
/// When the front door cannot start or the example fails.
pub async fn node_example(control: &Control, key: &str) -> anyhow::Result<()> {
    let dir = example_dir();
    let Some(node) = find_node() else {
        println!(
            "  skipped: Node.js 20 or newer not found (install it, or run `bash scripts/node.sh`, then run the demo again)"
        );
        return Ok(());
    };
    if !dir.join("node_modules/@neondatabase/serverless").is_dir() {
        println!(
            "  skipped: the example's packages are not installed (`bash scripts/node.sh` runs `npm ci` in {})",
            dir.display()
        );
        return Ok(());
    }
    let token = control
        .create_token("demo-backend", Scope::Sql)
        .await
        .context("creating the demo's app token")?;
    let secret: String = pgfleet::control::secrets::random_bytes::<32>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}/sql", listener.local_addr()?);
    let door = pgfleet_server::SqlFrontDoor {
        listener: Some(listener),
        pg: None,
        pg_options: Default::default(),
        options: pgfleet_server::sql::SqlOptions::default(),
        jwt: pgfleet_server::sql::jwt::JwtSettings {
            secret: Some(secret.clone().into_bytes()),
            tenant_claim: "sub".into(),
            ..Default::default()
        },
        tls: None,
        router: pgfleet::RouterOptions::default(),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = pgfleet_server::start_sql(control, door, stopped).await?;
    println!("  pgfleet serve --sql-listen: {endpoint} (app token `demo-backend`, HS256 JWTs)");
    println!("  $ node examples/node-drizzle/main.mjs   (tenant {key})");
    let run = {
        let (node, dir, endpoint, token, key) = (
            node,
            dir.clone(),
            endpoint.clone(),
            token.secret.clone(),
            key.to_string(),
        );
        tokio::task::spawn_blocking(move || {
            Command::new(node)
                .arg("main.mjs")
                .current_dir(dir)
                .env("PGFLEET_SQL_ENDPOINT", endpoint)
                .env("PGFLEET_APP_TOKEN", token)
                .env("PGFLEET_JWT_SECRET", secret)
                .env("PGFLEET_TENANT", key)
                .output()
        })
        .await??
    };
    for line in String::from_utf8_lossy(&run.stdout).lines() {
        println!("    {line}");
    }
    let _ = stop.send(true);
    let _ = server.await;
    anyhow::ensure!(
        run.status.success(),
        "the Node example failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    Ok(())
}

//! `dashboard`: the operators' pages and the management API with 100,000 tenants in the catalog
//! (catalog rows made for the benchmark: provisioning that many is not the point), through a real
//! `pgfleet serve` listener in process, one request at a time:
//!
//! - the overview (`GET /`, signed in), a tenants page (`GET /tenants`, 50 rows), a filtered and
//!   searched page, a page deep in the key order;
//! - `GET /v1/tenants?limit=100` with a bearer token;
//!
//! against the floor the catalog itself needs: the same page query (`tenant_page.sql`'s plan) on
//! one warm session. Goals (issue 16): the overview and a tenants page render in under 100 ms at
//! p95, the API list answers in under 50 ms at p95; `ratios` carries `overview_p95_ms`,
//! `tenants_page_p95_ms`, `api_list_p95_ms` and `api_list_vs_catalog_query` (medians).

use std::time::{Duration, Instant};

use pgfleet::control::provision::CreateOptions;
use pgfleet::control::tokens::Scope;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Report;
use crate::chat_fleet::ChatFleet;

/// Tenants in the catalog.
const TENANTS: i64 = 100_000;

/// One GET on a fresh connection; the status and the body's length.
async fn get(addr: std::net::SocketAddr, path: &str, header: &str) -> anyhow::Result<(u16, usize)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n{header}\r\n")
            .as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let head = String::from_utf8_lossy(&raw[..raw.len().min(64)]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("not an HTTP answer: {head:?}"))?;
    Ok((status, raw.len()))
}

async fn sign_in(addr: std::net::SocketAddr, token: &str) -> anyhow::Result<String> {
    let body = format!("token={token}");
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!(
            "POST /login HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    text.lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("signing in set no cookie: {text}"))
}

/// Runs the benchmark.
///
/// # Errors
/// When the fleet, the server or a request fails.
pub fn run(quick: bool) -> anyhow::Result<Report> {
    let runs = if quick { 30 } else { 200 };
    let mut report = Report::new("dashboard", quick);
    let f = ChatFleet::start("bench_dashboard")?;
    let cases = f.rt.block_on(async {
        let c = &f.control;
        for key in ["alice@example.com", "bob@example.com"] {
            c.provision(key, &CreateOptions::default(), Duration::from_secs(120))
                .await?;
        }
        let started = Instant::now();
        pgfleet_testkit::insert_catalog_tenants(&c.catalog(), "local", "user-", TENANTS, 0).await;
        c.catalog().batch_execute("ANALYZE pgfleet.tenants").await?;
        eprintln!(
            "dashboard: {TENANTS} catalog tenants in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let token = c.create_token("bench", Scope::Admin).await?.secret;
        let listener = pgfleet_server::bind("127.0.0.1:0".parse()?).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(pgfleet_server::serve(
            c.clone(),
            listener,
            pgfleet_server::ServeOptions::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        let cookie = format!("cookie: {}\r\n", sign_in(addr, &token).await?);
        let bearer = format!("authorization: Bearer {token}\r\n");
        let cases: Vec<(&str, String, &String)> = vec![
            ("overview (GET /)", "/".into(), &cookie),
            (
                "tenants page (GET /tenants, 50 rows)",
                "/tenants".into(),
                &cookie,
            ),
            (
                "tenants page, failed ones whose key has 0999 (GET /tenants?state=failed&q=0999)",
                "/tenants?state=failed&q=0999".into(),
                &cookie,
            ),
            (
                "tenants page deep in the key order (cursor at user-0090000)",
                format!(
                    "/tenants?cursor={}",
                    pgfleet_server::api::tenant_cursor("user-0090000")
                ),
                &cookie,
            ),
            (
                "GET /v1/tenants?limit=100",
                "/v1/tenants?limit=100".into(),
                &bearer,
            ),
        ];
        let mut out = Vec::new();
        for (name, path, header) in cases {
            let (status, _) = get(addr, &path, header).await?;
            anyhow::ensure!(status == 200, "{name}: {path} answered {status}");
            let mut times = Vec::with_capacity(runs);
            for _ in 0..runs {
                let t = Instant::now();
                let (status, len) = get(addr, &path, header).await?;
                times.push(t.elapsed());
                anyhow::ensure!(status == 200 && len > 200, "{name}: {status}, {len} bytes");
            }
            out.push((name.to_string(), times));
        }
        // The floor: the API's page query on one warm session of the catalog.
        let session = pgfleet_testkit::connect(&f.config.catalog_url).await;
        let page = session
            .prepare(include_str!(
                "../../pgfleet-control/src/catalog/sql/tenant_page.sql"
            ))
            .await?;
        let none: Option<String> = None;
        let mut times = Vec::with_capacity(runs);
        for _ in 0..=runs {
            let t = Instant::now();
            let rows = session
                .query(&page, &[&none, &none, &none, &none, &none, &none, &101_i64])
                .await?;
            times.push(t.elapsed());
            anyhow::ensure!(rows.len() == 101);
        }
        times.remove(0);
        out.push((
            "the page query alone on one catalog session (floor)".into(),
            times,
        ));
        let _ = stop.send(());
        server.await??;
        anyhow::Ok(out)
    })?;
    let mut p95 = Vec::new();
    let mut medians = Vec::new();
    for (name, times) in &cases {
        medians.push(report.durations(name, times));
        let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        p95.push(crate::report::percentile_of(&mut ms, 95.0));
    }
    report.ratio("overview_p95_ms", p95[0]);
    report.ratio("tenants_page_p95_ms", p95[1].max(p95[2]).max(p95[3]));
    report.ratio("api_list_p95_ms", p95[4]);
    report.ratio("api_list_vs_catalog_query", medians[4] / medians[5]);
    Ok(report)
}

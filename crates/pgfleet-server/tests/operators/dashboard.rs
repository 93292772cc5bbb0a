//! The dashboard over real sockets: sign-in and sessions (cookie flags, only a digest in the
//! catalog, sign-out, revoked tokens), CSRF and origin checks on every action, a read token's
//! pages and refusals, no token or session secret in URLs or logs. `a_real_browser_*` drives
//! Debian's Chromium through `tests/browser` (puppeteer-core) and saves screenshots under
//! `target/screenshots/dashboard/`.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::common::{Fleet, Response, enc, repo_root, request};

/// Log lines of the whole test binary (every level), to look for secrets in them.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Logs {
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let w = logs.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .try_init();
        logs
    })
    .clone()
}

struct Browser<'a> {
    f: &'a Fleet,
    cookie: Option<String>,
}

impl Browser<'_> {
    async fn get(&self, path: &str) -> Response {
        let c = self.cookie.clone().map(|c| format!("pgfleet_session={c}"));
        let h: Vec<(&str, &str)> = c.iter().map(|c| ("cookie", c.as_str())).collect();
        request(self.f.addr, "GET", path, &h, b"").await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)], origin: Option<&str>) -> Response {
        let c = self.cookie.clone().map(|c| format!("pgfleet_session={c}"));
        let mut h: Vec<(&str, &str)> = vec![("content-type", "application/x-www-form-urlencoded")];
        if let Some(c) = &c {
            h.push(("cookie", c));
        }
        if let Some(o) = origin {
            h.push(("origin", o));
        }
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect();
        request(self.f.addr, "POST", path, &h, body.join("&").as_bytes()).await
    }

    async fn sign_in<'a>(f: &'a Fleet, token: &str) -> Browser<'a> {
        let b = Browser { f, cookie: None };
        let r = b.post("/login", &[("token", token)], None).await;
        assert_eq!((r.status, r.header("location")), (303, "/"), "{}", r.body);
        let cookie = r.cookies.first().expect("a session cookie").clone();
        let value = cookie
            .split(';')
            .next()
            .unwrap()
            .strip_prefix("pgfleet_session=")
            .unwrap()
            .to_string();
        Browser {
            f,
            cookie: Some(value),
        }
    }

    /// The CSRF value of the page's forms.
    fn csrf(page: &Response) -> String {
        let at = page
            .body
            .find(r#"name="csrf" value=""#)
            .expect("a form with its csrf value");
        let rest = &page.body[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_csrf_scopes_and_no_secret_in_urls_or_logs() {
    let logs = capture_logs();
    let f = Fleet::start().await;
    let anon = Browser {
        f: &f,
        cookie: None,
    };
    let r = anon.get("/").await;
    assert_eq!((r.status, r.header("location")), (303, "/login"));
    let login = anon.get("/login").await;
    assert_eq!(login.status, 200);
    assert!(login.body.contains(r#"<form id="login" method="post""#));
    assert!(
        login
            .header("content-security-policy")
            .contains("script-src 'self'")
    );
    assert_eq!(login.header("x-frame-options"), "DENY");
    for bad in ["pgf_nope", f.sql.as_str(), ""] {
        let r = anon.post("/login", &[("token", bad)], None).await;
        assert_eq!(r.status, 401, "{bad}");
        assert!(r.body.contains(r#"class="error""#));
        assert!(r.cookies.is_empty());
    }

    // Nobody else's page may sign this browser in.
    let r = anon
        .post(
            "/login",
            &[("token", &f.admin)],
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.cookies.is_empty());

    // Admin: the cookie is HttpOnly, SameSite=Strict, holds no token; the catalog holds a digest.
    let raw = anon.post("/login", &[("token", &f.admin)], None).await;
    let cookie = &raw.cookies[0];
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains(&f.admin) && !raw.header("location").contains("pgf_"));
    let admin = Browser::sign_in(&f, &f.admin).await;
    let secret = admin.cookie.clone().unwrap();
    let stored: i64 = f
        .control
        .catalog()
        .query_one(
            "SELECT count(*) FROM pgfleet.sessions WHERE digest = sha256(convert_to($1, 'UTF8')) AND position(convert_to($1, 'UTF8') in digest) = 0",
            &[&secret],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1, "the session is stored as its digest only");

    let overview = admin.get("/").await;
    assert_eq!(overview.status, 200, "{}", overview.body);
    assert!(overview.body.contains("<h1>Overview</h1>"));
    assert!(
        overview.body.contains(
            r#"data-state="ready" href="/tenants?state=ready"><span class="count">2</span>"#
        ),
        "{}",
        overview.body
    );
    let tenants = admin.get("/tenants?q=alice").await;
    assert!(tenants.body.contains(r#"data-key="alice@example.com""#));
    assert!(!tenants.body.contains(r#"data-key="bob""#));
    let page = admin
        .get(&format!("/tenants/{}", enc("alice@example.com")))
        .await;
    assert_eq!(page.status, 200);
    for form in [
        r#"id="check""#,
        r#"id="fix""#,
        r#"id="drop""#,
        r#"id="reset""#,
    ] {
        assert!(page.body.contains(form), "{form}");
    }
    let csrf = Browser::csrf(&page);
    let fix = format!("/tenants/{}/fix", enc("alice@example.com"));

    // CSRF: missing, wrong, another origin: refused; right: done.
    for (form, origin) in [
        (vec![], None),
        (vec![("csrf", "0".repeat(64))], None),
        (vec![("csrf", csrf.clone())], Some("http://evil.example")),
    ] {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = admin.post(&fix, &form, origin).await;
        assert_eq!(r.status, 403, "{form:?} {origin:?}: {}", r.body);
    }
    let own_origin = format!("http://{}", f.addr);
    let r = admin
        .post(&fix, &[("csrf", &csrf)], Some(&own_origin))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(r#"id="repair""#));
    // Destructive actions need the key typed again.
    let drop = format!("/tenants/{}/drop", enc("alice@example.com"));
    let r = admin
        .post(&drop, &[("csrf", &csrf), ("confirm", "alice")], None)
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(f.control.find("alice@example.com").await.unwrap().is_some());

    // A read token: no action but Check, and the server refuses its actions anyway.
    let reader = Browser::sign_in(&f, &f.read).await;
    let page = reader
        .get(&format!("/tenants/{}", enc("alice@example.com")))
        .await;
    assert!(page.body.contains(r#"id="check""#));
    for form in [
        r#"id="fix""#,
        r#"id="drop""#,
        r#"id="reset""#,
        r#"id="rotate""#,
    ] {
        assert!(!page.body.contains(form), "{form} shown to a read token");
    }
    assert!(!reader.get("/rollouts").await.body.contains("start-rollout"));
    let read_csrf = Browser::csrf(&page);
    assert_ne!(read_csrf, csrf, "each session has its own CSRF value");
    let r = reader.post(&fix, &[("csrf", &read_csrf)], None).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = reader.post(&fix, &[("csrf", &csrf)], None).await;
    assert_eq!(r.status, 403, "another session's CSRF value");
    let check = format!("/tenants/{}/check", enc("alice@example.com"));
    let r = reader.post(&check, &[("csrf", &read_csrf)], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(r#"class="drift clean""#), "{}", r.body);
    let r = reader
        .post("/rollouts", &[("csrf", &read_csrf)], None)
        .await;
    assert_eq!(r.status, 403);

    // Rollout from the dashboard, and its event stream with the session cookie.
    let r = admin
        .post("/rollouts", &[("csrf", &csrf), ("canary", "1")], None)
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let at = r.header("location").to_string();
    assert!(at.starts_with("/rollouts/"), "{at}");
    let stream = admin.get(&format!("{at}/events")).await;
    assert!(stream.body.contains("event: end"), "{}", stream.body);
    let page = admin.get(&at).await;
    assert!(
        page.body
            .contains(r#"<span id="rollout-state" class="state">done</span>"#),
        "{}",
        page.body
    );

    // Sessions live in the catalog: another serve process of the fleet knows this one.
    let other = pgfleet::control::Control::connect(f.control.config().clone())
        .await
        .unwrap();
    let listener = pgfleet_server::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let other_addr = listener.local_addr().unwrap();
    let (stop_other, other_stopped) = tokio::sync::oneshot::channel::<()>();
    let other_server = tokio::spawn(pgfleet_server::serve(
        other,
        listener,
        pgfleet_server::ServeOptions::default(),
        async move {
            let _ = other_stopped.await;
        },
    ));
    let cookie = format!("pgfleet_session={secret}");
    let r = request(other_addr, "GET", "/", &[("cookie", &cookie)], b"").await;
    assert_eq!(r.status, 200, "the second process: {}", r.body);
    assert!(r.body.contains("<h1>Overview</h1>"));

    // Sign-out ends the session (in every process); revoking a token ends its sessions.
    let r = admin.post("/logout", &[("csrf", &csrf)], None).await;
    assert_eq!((r.status, r.header("location")), (303, "/login"));
    assert!(r.cookies[0].contains("Max-Age=0"));
    assert_eq!(admin.get("/").await.status, 303);
    let r = request(other_addr, "GET", "/", &[("cookie", &cookie)], b"").await;
    assert_eq!(r.status, 303, "signed out in the other process too");
    let _ = stop_other.send(());
    other_server.await.unwrap().unwrap();
    f.control.revoke_token("viewer").await.unwrap();
    assert_eq!(reader.get("/").await.status, 303);

    // Neither the tokens nor the session secret appear in any log line.
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    assert!(!text.is_empty(), "the logs were captured");
    for secret in [f.admin.as_str(), f.read.as_str(), secret.as_str()] {
        assert!(!text.contains(secret), "a secret in the logs");
    }
    f.stop().await;
}

/// Debian's Chromium (installed by `scripts/bootstrap.sh --with-chromium`), driven by
/// puppeteer-core from `tests/browser`: sign in, the overview, the tenants, a tenant whose table
/// was dropped behind pgfleet's back (Check shows the drift, Fix the correction), a rollout
/// watched live to its end, sign-out; a read token's pages; CSRF refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_browser_signs_in_checks_fixes_and_watches_a_rollout() {
    let f = Fleet::start().await;
    let node = node();
    let (_, table) = f.tenant_table("alice@example.com", "chat_threads").await;
    let t = f.control.tenant("alice@example.com").await.unwrap();
    let shots = repo_root().join("target/screenshots/dashboard");
    std::fs::create_dir_all(&shots).unwrap();
    let env = [
        ("PGFLEET_DASHBOARD_URL", format!("http://{}", f.addr)),
        ("PGFLEET_ADMIN_TOKEN", f.admin.clone()),
        ("PGFLEET_READ_TOKEN", f.read.clone()),
        ("PGFLEET_TENANT_KEY", "alice@example.com".into()),
        (
            "PGFLEET_TENANT_URL",
            crate::common::url_for_database(f.db.admin_url(), &t.database),
        ),
        ("PGFLEET_DROP_SQL", format!("DROP TABLE {table} CASCADE")),
        ("PGFLEET_DROPPED_TABLE", "chat_threads".into()),
        ("PGFLEET_SCREENSHOT_DIR", shots.display().to_string()),
    ];
    let env: Vec<(String, String)> = env.into_iter().map(|(k, v)| (k.into(), v)).collect();
    crate::common::run_node(
        &node,
        &repo_root().join("tests/browser"),
        &["--test", "--test-concurrency=1", "dashboard.test.mjs"],
        &env,
    );
    let taken = std::fs::read_dir(&shots).unwrap().count();
    assert!(taken >= 6, "screenshots in {}: {taken}", shots.display());
    f.stop().await;
}

/// Node with the test projects' dependencies, and Chromium (`scripts/bootstrap.sh --with-chromium`).
fn node() -> std::path::PathBuf {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: run `bash scripts/bootstrap.sh --with-chromium` (scripts/test.sh does)"
    );
    crate::common::node()
}

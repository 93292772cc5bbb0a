//! `pgfleet migrate --all` and `pgfleet check --all`: fleet-wide work with live progress.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pgfleet::control::diagnose::Drift;
use pgfleet::control::fleet::{
    FleetCheck, FleetMigration, FleetOptions, FleetProgress, Outcome, ProgressFn,
};

use crate::control_cmds::{ControlArgs, OutputFormat, config, control};
use crate::migrate_cmds::{MigrateArgs, at_least_one, load_verified};
use crate::printable::{printable, printable_text};
use crate::runtime;

fn health_interval(s: &str) -> Result<Duration, String> {
    let d = crate::schema_cmds::parse_duration(s)?;
    if d < Duration::from_millis(100) {
        return Err(format!(
            "{s} is too short: at least 100ms (each tenant is checked once per interval)"
        ));
    }
    Ok(d)
}

fn metrics_interval(s: &str) -> Result<Duration, String> {
    let d = crate::schema_cmds::parse_duration(s)?;
    if d < Duration::from_millis(100) {
        return Err(format!("{s} is too short: at least 100ms"));
    }
    Ok(d)
}

/// Live progress on stderr: a redrawn bar on a terminal, a line every few seconds otherwise.
struct Bar {
    what: &'static str,
    tty: bool,
    last: Mutex<Option<Instant>>,
}

impl Bar {
    fn new(what: &'static str) -> Arc<Self> {
        Arc::new(Self {
            what,
            tty: std::io::stderr().is_terminal(),
            last: Mutex::new(None),
        })
    }

    fn callback(self: &Arc<Self>) -> ProgressFn {
        let bar = self.clone();
        Arc::new(move |p| bar.show(p))
    }

    fn show(&self, p: FleetProgress) {
        let finished = p.done == p.total;
        let every = if self.tty {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if !finished && last.is_some_and(|t| t.elapsed() < every) {
                return;
            }
            *last = Some(Instant::now());
        }
        let secs = p.elapsed.as_secs_f64().max(0.001);
        let rate = p.done as f64 / secs;
        let left = p.total - p.done;
        let eta = if rate > 0.0 && left > 0 {
            format!(", ETA {:.0}s", left as f64 / rate)
        } else {
            String::new()
        };
        let not_run = if p.not_run > 0 {
            format!(", {} not run", p.not_run)
        } else {
            String::new()
        };
        let text = format!(
            "{}: {}/{} done, {} failed{not_run}, {left} left ({rate:.0}/s{eta})",
            self.what, p.done, p.total, p.failed
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            const WIDTH: usize = 24;
            let filled = (p.done * WIDTH).checked_div(p.total).unwrap_or(WIDTH);
            let _ = write!(
                err,
                "\r\x1b[2K[{}{}] {text}",
                "#".repeat(filled),
                ".".repeat(WIDTH - filled)
            );
            if finished {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "{text}");
        }
    }
}

fn multi_thread_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `pgfleet migrate --all`.
///
/// # Errors
/// Catalog errors, an invalid directory, unknown tenant keys.
pub fn migrate_all(a: &MigrateArgs) -> anyhow::Result<ExitCode> {
    let f = &a.fleet;
    let cfg = config(&f.control)?;
    let path = a.run.target.migrations.clone();
    anyhow::ensure!(
        path.is_dir(),
        "migrations directory {} does not exist (pass --migrations DIR)",
        path.display()
    );
    let dir = load_verified(&path)?;
    let opts = FleetOptions {
        concurrency: f.concurrency,
        per_server: f.per_server,
        canary: f.canary,
        tenants: f.tenants.clone(),
        continue_on_error: f.continue_on_error,
        verify: f.verify,
        lock_wait: a.run.lock_wait,
    };
    let report = multi_thread_runtime()?.block_on(async {
        let c = pgfleet::control::Control::connect(cfg).await?;
        let bar = Bar::new("migrate --all");
        anyhow::Ok(c.migrate_all(Some(&dir), &opts, bar.callback()).await?)
    })?;
    match f.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Table => print_migration(&report),
    }
    Ok(if report.failed > 0 || report.stopped.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_migration(r: &FleetMigration) {
    let mut servers: Vec<&str> = r.tenants.iter().map(|t| t.server.as_str()).collect();
    servers.sort_unstable();
    servers.dedup();
    println!(
        "{:<20} {:>9} {:>11} {:>7} {:>8}",
        "server", "migrated", "up to date", "failed", "not run"
    );
    let row = |name: &str, filter: &dyn Fn(&str) -> bool| {
        let n = |o: Outcome| {
            r.tenants
                .iter()
                .filter(|t| filter(&t.server) && t.outcome == o)
                .count()
        };
        println!(
            "{:<20} {:>9} {:>11} {:>7} {:>8}",
            name,
            n(Outcome::Migrated),
            n(Outcome::UpToDate),
            n(Outcome::Failed),
            n(Outcome::NotRun)
        );
    };
    for s in &servers {
        row(if s.is_empty() { "(not placed)" } else { s }, &|x| x == *s);
    }
    row("total", &|_| true);
    let not_run: Vec<_> = r
        .tenants
        .iter()
        .filter(|t| t.outcome == Outcome::NotRun)
        .collect();
    if !not_run.is_empty() && not_run.len() <= 20 {
        println!();
        println!("not run:");
        for t in &not_run {
            println!(
                "  {} on {}: {}",
                printable(&t.key),
                if t.server.is_empty() { "-" } else { &t.server },
                printable_text(t.error.as_deref().unwrap_or(""))
            );
        }
    }
    let failed: Vec<_> = r
        .tenants
        .iter()
        .filter(|t| t.outcome == Outcome::Failed)
        .collect();
    if !failed.is_empty() {
        println!();
        println!(
            "failed tenants (they keep their version; `pgfleet tenant show KEY` shows the error):"
        );
        for t in failed.iter().take(50) {
            println!(
                "  {} on {} at {}: {}",
                printable(&t.key),
                t.server,
                t.from.as_deref().unwrap_or("-"),
                printable_text(t.error.as_deref().unwrap_or("")).replace('\n', "\n      ")
            );
        }
        if failed.len() > 50 {
            println!(
                "  … and {} more (--format json lists them all)",
                failed.len() - 50
            );
        }
    }
    eprintln!(
        "Target {}{}: {} tenant(s), {} migrated, {} already up to date, {} failed, {} not run, in {:.1}s (rollout #{}){}",
        r.target,
        if r.target_changed {
            " (newly recorded)"
        } else {
            ""
        },
        r.total,
        r.migrated,
        r.up_to_date,
        r.failed,
        r.not_run,
        r.elapsed_ms / 1000.0,
        r.rollout,
        if r.canary > 0 {
            format!("; canary of {} first", r.canary)
        } else {
            String::new()
        },
    );
    if let Some(why) = &r.stopped {
        eprintln!(
            "Stopped early: {why}. Fix the failure and run again: tenants already at the target are skipped."
        );
    }
}

/// `pgfleet check`: drift of one tenant or of all. Returns whether drift remains.
///
/// # Errors
/// Catalog errors, unknown tenant.
pub fn check(
    args: &ControlArgs,
    tenant: Option<&str>,
    all: bool,
    fix: bool,
    concurrency: usize,
    format: OutputFormat,
) -> anyhow::Result<bool> {
    let key = match (tenant, all) {
        (_, true) => return check_all(args, fix, concurrency, format),
        (Some(k), false) => k,
        (None, false) => anyhow::bail!("which tenants? pass --tenant KEY or --all"),
    };
    runtime()?.block_on(async {
        let c = control(args).await?;
        let (drift, applied) = if fix {
            let r = c.fix(key, "pgfleet check --fix").await?;
            (r.remaining, r.applied)
        } else {
            (c.check(key).await?, Vec::new())
        };
        match format {
            OutputFormat::Json => println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "key": key, "clean": drift.is_clean(), "repaired": applied, "drift": drift
                }))?
            ),
            OutputFormat::Table => {
                if !applied.is_empty() {
                    println!(
                        "{}: repaired {} (recorded as corrections)",
                        printable(key),
                        applied.join("; ")
                    );
                }
                print_drift(&printable(key), &drift, applied.is_empty());
            }
        }
        anyhow::Ok(!drift.is_clean())
    })
}

/// `pgfleet check --all`. Returns whether drift remains.
///
/// # Errors
/// Catalog errors, or tenants that could not be checked.
pub fn check_all(
    args: &ControlArgs,
    fix: bool,
    concurrency: usize,
    format: OutputFormat,
) -> anyhow::Result<bool> {
    let cfg = config(args)?;
    let report = multi_thread_runtime()?.block_on(async {
        let c = pgfleet::control::Control::connect(cfg).await?;
        let bar = Bar::new(if fix {
            "check --all --fix"
        } else {
            "check --all"
        });
        anyhow::Ok(c.check_all(fix, concurrency, bar.callback()).await?)
    })?;
    match format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Table => print_check(&report),
    }
    eprintln!(
        "{} tenant(s) checked against target {}: {} clean, {} with drift ({} destructive difference(s)){}{}{}{}",
        report.total,
        report.target,
        report.clean,
        report.drifted,
        report.destructive,
        if report.behind > 0 {
            format!(
                ", {} behind the target (pending migrations: run `pgfleet migrate --all`)",
                report.behind
            )
        } else {
            String::new()
        },
        if report.critical > 0 {
            format!(
                ", {} with CRITICAL security findings (`pgfleet check --all --fix` takes away what their roles must not hold)",
                report.critical
            )
        } else {
            String::new()
        },
        if fix {
            format!(", {} repaired", report.repaired)
        } else {
            String::new()
        },
        if report.failed > 0 {
            format!(", {} could not be checked (see above)", report.failed)
        } else {
            String::new()
        }
    );
    anyhow::ensure!(
        report.failed == 0,
        "{} tenant(s) could not be checked",
        report.failed
    );
    Ok(report.clean < report.total)
}

fn print_check(r: &FleetCheck) {
    for t in &r.tenants {
        let key = printable(&t.key);
        if let Some(e) = &t.error {
            println!("{key}: error: {}", printable_text(e));
            continue;
        }
        if !t.repaired.is_empty() {
            println!(
                "{key}: repaired {} (recorded as corrections)",
                t.repaired.join("; ")
            );
        }
        if let Some(d) = &t.drift {
            print_drift(&key, d, t.repaired.is_empty());
        }
    }
}

/// One tenant's drift, as `check` prints it.
pub fn print_drift(key: &str, drift: &Drift, say_clean: bool) {
    if drift.is_clean() {
        if say_clean {
            println!("{key}: clean");
        }
        return;
    }
    if let Some(current) = &drift.behind {
        println!(
            "{key}: behind the target: at {}, target {current} (pending migrations: run `pgfleet migrate --all`)",
            drift.target
        );
    }
    for f in &drift.security {
        println!(
            "{key}: {} {} ({})",
            if f.critical { "CRITICAL:" } else { "warning:" },
            f.what,
            f.fix
        );
    }
    if drift.steps.is_empty() {
        return;
    }
    println!(
        "{key}: {} difference(s) from target {}",
        drift.steps.len(),
        drift.target
    );
    for s in &drift.steps {
        let hz: Vec<&str> = s.hazards.iter().map(|h| h.name()).collect();
        println!(
            "  - {}{}{}",
            s.description,
            if hz.is_empty() {
                String::new()
            } else {
                format!(" [{}]", hz.join(", "))
            },
            if s.repairable {
                " (repairable with --fix)"
            } else if s.destructive {
                " (destructive: never repaired; review it)"
            } else {
                " (not additive: --fix leaves it; review it)"
            }
        );
    }
}

/// Flags of `pgfleet serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address of the operators' HTTP server (the dashboard at /, the management API at /v1,
    /// /healthz, /readyz, /metrics), HOST:PORT; port 0 picks a free one (printed on stderr). Keep
    /// it on loopback or a private network: it serves no TLS
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "PGFLEET_LISTEN",
        default_value = "127.0.0.1:6480"
    )]
    pub listen: String,
    /// How often each tenant's health is checked (login as its role, `select 1`), e.g. 30s, 5m
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = health_interval)]
    pub health_interval: Duration,
    /// Health checks at once
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = at_least_one)]
    pub health_concurrency: usize,
    /// A health check slower than this marks the tenant degraded, e.g. 500ms, 2s
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = crate::schema_cmds::parse_duration)]
    pub degraded_after: Duration,
    /// Do not check tenants' health
    #[arg(long)]
    pub no_health: bool,
    /// Tasks running queued operations (provisioning)
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = at_least_one)]
    pub queue_tasks: usize,
    /// How often the tenant gauges of /metrics are read from the catalog, e.g. 5s; they are
    /// withdrawn when the catalog has not answered for three intervals
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = metrics_interval)]
    pub metrics_interval: Duration,
    /// Dashboard sessions end after this long unused, e.g. 30m, 8h
    #[arg(long, value_name = "DURATION", default_value = "8h", value_parser = crate::schema_cmds::parse_duration)]
    pub session_idle: Duration,
    /// The SQL front door.
    #[command(flatten, next_help_heading = "SQL over HTTP (POST /sql)")]
    pub sql: crate::sql_cmds::SqlArgs,
    /// Catalog and master key.
    #[command(flatten)]
    pub control: ControlArgs,
}

/// `pgfleet serve`: runs until SIGTERM or Ctrl-C.
///
/// # Errors
/// Catalog errors, the listen address taken.
pub fn serve(a: &ServeArgs) -> anyhow::Result<()> {
    use pgfleet::control::health::HealthOptions;
    use pgfleet::control::worker::WorkerOptions;
    let cfg = config(&a.control)?;
    let health = (!a.no_health).then(|| HealthOptions {
        interval: a.health_interval,
        concurrency: a.health_concurrency,
        degraded_after: a.degraded_after,
        ..HealthOptions::default()
    });
    multi_thread_runtime()?.block_on(async {
        let c = pgfleet::control::Control::connect(cfg).await?;
        let addr = tokio::net::lookup_host(&a.listen)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--listen {:?} is not an address: expected HOST:PORT, e.g. 127.0.0.1:6480 or localhost:0",
                    a.listen
                )
            })?;
        let listener = pgfleet_server::bind(addr).await?;
        let addr = listener.local_addr()?;
        let mut sql = crate::sql_cmds::front_door(&a.sql, &c.config().sql).await?;
        if let Some(door) = &mut sql {
            door.router.cache = crate::sql_cmds::cache_options(&a.sql, &c.config().cache)?;
        }
        if let Some(door) = &sql {
            let jwt = if door.jwt.is_configured() {
                "on"
            } else {
                "off, no PGFLEET_JWT_SECRET or PGFLEET_JWKS_FILE"
            };
            if let Some(l) = &door.listener {
                let (scheme, ws) = if door.tls.is_some() {
                    ("https", "wss")
                } else {
                    ("http", "ws")
                };
                let at = l.local_addr()?;
                eprintln!(
                    "pgfleet serve: SQL over HTTP on {scheme}://{at}/sql, the wire protocol over WebSocket on {ws}://{at}/v2 (JWT: {jwt}; app tokens: `pgfleet token create NAME --scope sql`)",
                );
            }
            if let (Some(l), o) = (&door.pg, &door.pg_options) {
                eprintln!(
                    "pgfleet serve: PostgreSQL wire protocol on {} ({} pooling; user = tenant key, password = app token or JWT; TLS: {})",
                    l.local_addr()?,
                    match o.pool_mode {
                        pgfleet_server::pg::PoolMode::Transaction => "transaction",
                        pgfleet_server::pg::PoolMode::Session => "session",
                    },
                    if o.tls.is_some() { "on" } else { "off, loopback clients only" },
                );
            }
        }
        eprintln!(
            "pgfleet serve: http://{addr} (dashboard /, management API /v1, /healthz, /readyz, /metrics; sign in with `pgfleet token create NAME --scope admin`); worker {}: {} queue task(s), {}; stop with SIGTERM or Ctrl-C",
            c.worker_name(),
            a.queue_tasks,
            match &health {
                Some(h) => format!(
                    "health checks every {:?} ({} at once)",
                    h.interval, h.concurrency
                ),
                None => "no health checks".into(),
            }
        );
        let opts = pgfleet_server::ServeOptions {
            workers: Some(WorkerOptions {
                queue_tasks: a.queue_tasks,
                health,
                ..WorkerOptions::default()
            }),
            metrics_interval: a.metrics_interval,
            sql,
            session_idle: a.session_idle,
            rollouts: pgfleet::control::fleet::FleetOptions::default(),
        };
        pgfleet_server::serve(c, listener, opts, shutdown_signal()).await?;
        eprintln!("pgfleet serve: stopped (work in flight finished, unfinished operations handed back)");
        anyhow::Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

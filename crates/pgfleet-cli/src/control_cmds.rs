//! `pgfleet init`, `server …`, `tenant …`, `keys …`: the control plane.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::runtime;
use pgfleet::control::config::{Config, Settings};
use pgfleet::control::provision::CreateOptions;
use pgfleet::control::secrets::MasterKey;
use pgfleet::control::tenant::{Mode, State, Tenant};
use pgfleet::control::{Control, catalog};
use pgfleet::migrate::MigrationDir;
use pgfleet::pg::connect;

use crate::printable::{printable, printable_text};
use crate::schema_cmds::parse_duration;

/// Where the catalog is and how to open sealed secrets.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ControlArgs {
    /// The catalog database [env: PGFLEET_CATALOG_URL; default: database `pgfleet` on the local
    /// PostgreSQL of `pgfleet up`]
    #[arg(long, value_name = "URL", global = true)]
    pub catalog_url: Option<String>,
    /// File holding the master key (base64 of 32 bytes) [env: PGFLEET_MASTER_KEY_FILE; or the key
    /// itself in PGFLEET_MASTER_KEY; default: $PGFLEET_HOME/master.key when it exists]
    #[arg(long, value_name = "FILE", global = true)]
    pub master_key_file: Option<PathBuf>,
}

/// `pgfleet server …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ServerCommand {
    /// Check a PostgreSQL server (reachable, version, rights, pgvector) and add it to the fleet.
    Add {
        /// Its name in the fleet (lowercase letters, digits, `_`, `-`).
        name: String,
        /// Admin URL: a superuser, or a role with CREATEDB and CREATEROLE. Stored sealed.
        #[arg(long, value_name = "URL")]
        url: String,
        /// Most tenants it takes.
        #[arg(long, value_name = "N", default_value_t = 1000)]
        capacity: i32,
        /// Placement weight: free capacity counts this many times.
        #[arg(long, value_name = "W", default_value_t = 1)]
        weight: i32,
    },
    /// List servers with their tenant counts.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Stop placing new tenants on a server (its tenants stay).
    Drain {
        /// The server.
        name: String,
    },
    /// Place new tenants on a drained server again.
    Activate {
        /// The server.
        name: String,
    },
    /// Build verified spare schemas and spare databases on a server now, so new tenants claim one
    /// instead of running DDL or CREATE DATABASE (the fast path of provisioning; `pgfleet serve`
    /// keeps them topped up). Drops spares of an older target and unfinished ones. Counts:
    /// PGFLEET_SPARE_SCHEMAS (default 4), PGFLEET_SPARE_DATABASES (default 2)
    Spares {
        /// The server.
        name: String,
    },
}

/// `pgfleet tenant …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum TenantCommand {
    /// Create a tenant (idempotent: the same key always yields the same tenant) and provision it.
    Create {
        /// The application's key for it (e.g. a user id), up to 256 bytes.
        key: String,
        /// Own database or own schema in a shared database [default: from configuration, else database]
        #[arg(long, value_parser = ["database", "schema"])]
        mode: Option<String>,
        /// Put it on this server instead of choosing one.
        #[arg(long, value_name = "NAME")]
        server: Option<String>,
        /// Only queue the provisioning (a `pgfleet serve` worker or a later `--wait` runs it).
        #[arg(long, conflicts_with = "wait")]
        no_wait: bool,
        /// Wait until it is ready (the default), at most this long.
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
        wait: Duration,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// List tenants.
    List {
        /// Only tenants in this state.
        #[arg(long, value_parser = ["provisioning", "ready", "failed", "dropping"])]
        state: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Show one tenant: placement, state, version, last error, recent events.
    Show {
        /// The tenant's key.
        key: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Drop a tenant: its database (or schema) and role; the catalog keeps a tombstone event.
    Drop {
        /// The tenant's key.
        key: String,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Print a connection URL with the tenant's own role and password (for operators only).
    Credentials {
        /// The tenant's key.
        key: String,
    },
    /// Give the tenant a new random password (sealed in the catalog, set on its role).
    RotatePassword {
        /// The tenant's key.
        key: String,
    },
}

/// `pgfleet keys …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeysCommand {
    /// Print a new random master key (base64 of 32 bytes) on stdout.
    Generate,
    /// Re-wrap every sealed secret under the current master key. Run it with the new key as
    /// PGFLEET_MASTER_KEY and the old one as PGFLEET_PREVIOUS_MASTER_KEY; safe to run again.
    Rotate {
        /// Catalog and master key.
        #[command(flatten)]
        control: ControlArgs,
    },
}

/// Output format of listing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
}

fn default_key_file() -> PathBuf {
    pgfleet::embedded::paths::home_dir().join("master.key")
}

/// The configuration: flags, then environment, then pgfleet.toml; the local cluster's `pgfleet`
/// database and `$PGFLEET_HOME/master.key` as last resorts.
pub fn config(args: &ControlArgs) -> anyhow::Result<Config> {
    let mut key_file = args.master_key_file.clone();
    if key_file.is_none()
        && std::env::var_os("PGFLEET_MASTER_KEY").is_none()
        && std::env::var_os("PGFLEET_MASTER_KEY_FILE").is_none()
        && default_key_file().exists()
    {
        key_file = Some(default_key_file());
    }
    let flags = Settings::flags(args.catalog_url.clone(), None, key_file);
    let local = crate::local::running_url(Some("pgfleet"));
    Ok(Config::resolve(flags, |k| std::env::var(k).ok(), local)?)
}

pub(crate) async fn control(args: &ControlArgs) -> anyhow::Result<Control> {
    Ok(Control::connect(config(args)?).await?)
}

/// `pgfleet init`.
///
/// # Errors
/// Unreachable catalog, bad target directory.
pub fn init(args: &ControlArgs, migrations: Option<&Path>) -> anyhow::Result<()> {
    let mut cfg = config(args)?;
    if !cfg.has_master_key() {
        let path = default_key_file();
        let key = MasterKey::generate()?;
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        write_private(&path, key.to_base64().expose())?;
        eprintln!(
            "Created a master key in {} (key id {}). Keep it safe: sealed passwords cannot be opened without it. In production, set PGFLEET_MASTER_KEY or PGFLEET_MASTER_KEY_FILE instead.",
            path.display(),
            key.id()
        );
        cfg = config(&ControlArgs {
            master_key_file: Some(path),
            ..args.clone()
        })?;
    }
    let target_path = migrations
        .map(Path::to_path_buf)
        .unwrap_or(cfg.migrations.clone());
    let target = if target_path.is_dir() {
        Some(MigrationDir::load(&target_path)?)
    } else if migrations.is_some() {
        anyhow::bail!(
            "migrations directory {} does not exist",
            target_path.display()
        );
    } else {
        None
    };
    let url = connect::parse_url(&cfg.catalog_url)?;
    let shadow = pgfleet::pg::shadow::ShadowOptions::default().allow(&cfg.allowed_extensions);
    let report = runtime()?.block_on(catalog::init_with(&url, target.as_ref(), &shadow))?;
    let where_ = connect::redact(&cfg.catalog_url);
    if report.created_database {
        eprintln!("Created the catalog database: {where_}");
    }
    if !report.revoked_from_public.is_empty() {
        eprintln!(
            "Closed the catalog database to PUBLIC (took away {}): only pgfleet's own role may connect to it, not tenant roles",
            report.revoked_from_public.join(", ")
        );
    }
    if let Some(why) = &report.public_left {
        eprintln!(
            "warning: PUBLIC may still connect to the catalog database, so tenant roles on that server could read the fleet's announcements: {why}"
        );
    }
    if report.catalog_migrations.is_empty() {
        eprintln!("Catalog is up to date: {where_}");
    } else {
        eprintln!(
            "Catalog initialized ({} migration(s)): {where_}",
            report.catalog_migrations.len()
        );
    }
    match (&report.new_target, &report.target) {
        (Some(v), _) => eprintln!(
            "Recorded {} as the fleet's target, version {v}",
            target_path.display()
        ),
        (None, Some(v)) => eprintln!("Target unchanged: version {v}"),
        (None, None) => eprintln!(
            "No target yet: run `pgfleet init --migrations DIR` with the fleet's migrations (write the first with `pgfleet gen init`)"
        ),
    }
    Ok(())
}

/// Creates `path` (it must not exist) with mode 0600 from the start and writes `text`: the key
/// files pgfleet creates pass its own check that a key file is private.
pub(crate) fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// `pgfleet server …`.
///
/// # Errors
/// See [`pgfleet::control::ControlError`].
pub fn server(args: &ControlArgs, cmd: &ServerCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let c = control(args).await?;
        match cmd {
            ServerCommand::Add { name, url, capacity, weight } => {
                let check = c.add_server(name, url, *capacity, *weight).await?;
                eprintln!(
                    "Added server {name} ({}): PostgreSQL {}, pgvector {}, capacity {capacity}, weight {weight}",
                    connect::redact(url),
                    check.version,
                    if check.has_vector { "available" } else { "not available" }
                );
            }
            ServerCommand::List { format } => {
                let servers = c.servers().await?;
                if *format == OutputFormat::Json {
                    println!("{}", serde_json::to_string_pretty(&servers)?);
                } else {
                    println!("{:<16} {:<9} {:>9} {:>6} {:<8} {:<8} URL", "NAME", "STATE", "TENANTS", "WEIGHT", "VERSION", "VECTOR");
                    for s in servers {
                        println!(
                            "{:<16} {:<9} {:>9} {:>6} {:<8} {:<8} {}",
                            s.name,
                            s.state,
                            format!("{}/{}", s.tenants, s.capacity),
                            s.weight,
                            s.version,
                            if s.has_vector { "yes" } else { "no" },
                            s.url
                        );
                    }
                }
            }
            ServerCommand::Drain { name } => {
                c.drain_server(name).await?;
                eprintln!("Server {name} is draining: it takes no new tenants; its tenants stay");
            }
            ServerCommand::Activate { name } => {
                c.activate_server(name).await?;
                eprintln!("Server {name} is active");
            }
            ServerCommand::Spares { name } => {
                if !c.servers().await?.iter().any(|s| &s.name == name) {
                    anyhow::bail!("unknown server {name:?}: `pgfleet server list` shows the servers");
                }
                let built = c.refill_spares(name).await?;
                let config = c.config();
                eprintln!(
                    "Server {name}: built {} spare schema(s) (keeps {}) and {} spare database(s) (keeps {}), verified, at the current target",
                    built.schemas,
                    config.spare_schemas,
                    built.databases,
                    if config.use_templates { config.spare_databases } else { 0 }
                );
            }
        }
        anyhow::Ok(())
    })
}

fn tenant_json(t: &Tenant) -> serde_json::Value {
    serde_json::json!({
        "key": t.key,
        "id": t.id,
        "mode": t.mode,
        "state": t.state,
        "step": t.step,
        "server": t.server,
        "database": t.database,
        "schema": t.schema,
        "role": t.role,
        "schema_version": t.schema_version,
        "last_error": t.last_error,
        "created_at": t.created_at,
        "migrate_error": t.migrate_error,
        "health": t.health,
        "health_checked_at": t.health_checked_at,
        "health_latency_ms": t.health_latency_ms,
        "health_error": t.health_error,
    })
}

fn print_tenant(t: &Tenant) {
    println!("key:            {}", printable(&t.key));
    println!("id:             {}", t.id);
    println!("mode:           {}", t.mode);
    println!(
        "state:          {}{}",
        t.state,
        if t.state == State::Provisioning {
            format!(" (step {})", t.step)
        } else {
            String::new()
        }
    );
    println!(
        "server:         {}",
        t.server.as_deref().unwrap_or("(not placed yet)")
    );
    println!("database:       {}", t.database);
    println!("schema:         {}", t.schema);
    println!("role:           {}", t.role);
    println!(
        "schema version: {}",
        t.schema_version.as_deref().unwrap_or("-")
    );
    if let Some(e) = &t.last_error {
        println!("last error:     {}", printable_text(e));
    }
    if let Some(e) = &t.migrate_error {
        println!("migrate error:  {}", printable_text(e));
    }
    match (&t.health_checked_at, t.health_latency_ms) {
        (Some(at), Some(ms)) => println!("health:         {} ({ms:.1} ms, checked {at})", t.health),
        (Some(at), None) => println!("health:         {} (checked {at})", t.health),
        _ => println!(
            "health:         {} (not checked yet: `pgfleet serve` checks tenants)",
            t.health
        ),
    }
    if let Some(e) = &t.health_error {
        println!("health error:   {}", printable_text(e));
    }
    println!("created:        {}", t.created_at);
}

/// `pgfleet tenant …`.
///
/// # Errors
/// See [`pgfleet::control::ControlError`].
pub fn tenant(args: &ControlArgs, cmd: &TenantCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let c = control(args).await?;
        match cmd {
            TenantCommand::Create { key, mode, server, no_wait, wait, format } => {
                let key = key.as_str();
                let opts = CreateOptions {
                    mode: mode.as_deref().map(str::parse::<Mode>).transpose().map_err(anyhow::Error::msg)?,
                    server: server.clone(),
                };
                let t = if *no_wait {
                    c.create_tenant(key, &opts).await?
                } else {
                    c.provision(key, &opts, *wait).await?
                };
                if *format == OutputFormat::Json {
                    println!("{}", serde_json::to_string_pretty(&tenant_json(&t))?);
                } else {
                    print_tenant(&t);
                }
                if t.state == State::Ready {
                    eprintln!("Tenant {:?} is ready on {} (verified at version {})", t.key.as_str(), t.server.as_deref().unwrap_or("?"), t.schema_version.as_deref().unwrap_or("?"));
                } else {
                    eprintln!("Tenant {:?} is queued for provisioning (step {})", t.key, t.step);
                }
            }
            TenantCommand::List { state, format } => {
                let state = state.as_deref().map(str::parse::<State>).transpose().map_err(anyhow::Error::msg)?;
                let tenants = c.tenants(state).await?;
                if *format == OutputFormat::Json {
                    let v: Vec<serde_json::Value> = tenants.iter().map(tenant_json).collect();
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    println!("{:<32} {:<17} {:<8} {:<12} {:<12} {:<15} DATABASE/SCHEMA", "KEY", "ID", "MODE", "STATE", "SERVER", "VERSION");
                    for t in &tenants {
                        let shown = printable(&t.key);
                        let key: String = if shown.chars().count() > 32 { format!("{}…", shown.chars().take(31).collect::<String>()) } else { shown };
                        println!(
                            "{:<32} {:<17} {:<8} {:<12} {:<12} {:<15} {}",
                            key,
                            t.id,
                            t.mode,
                            t.state,
                            t.server.as_deref().unwrap_or("-"),
                            t.schema_version.as_deref().unwrap_or("-"),
                            if t.mode == Mode::Schema { format!("{}/{}", t.database, t.schema) } else { t.database.clone() }
                        );
                    }
                    eprintln!("{} tenant(s)", tenants.len());
                }
            }
            TenantCommand::Show { key, format } => {
                let t = c.tenant(key).await?;
                let events = pgfleet::control::events::of_tenant(&c.catalog(), &t.id, 10).await?;
                if *format == OutputFormat::Json {
                    let mut v = tenant_json(&t);
                    v["events"] = serde_json::to_value(&events)?;
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    print_tenant(&t);
                    println!("recent events:");
                    for e in events {
                        println!("  {}  {:<18} {}", e.at, e.kind, printable(&e.detail.to_string()));
                    }
                }
            }
            TenantCommand::Drop { key, yes } => {
                let t = c.tenant(key).await?;
                if !yes {
                    use std::io::{IsTerminal, Write};
                    anyhow::ensure!(
                        std::io::stdin().is_terminal(),
                        "refusing to drop tenant {key:?} without confirmation: stdin is not a terminal; pass --yes"
                    );
                    eprint!("Drop tenant {key:?} ({} {} on {}) and all its data? [y/N] ", t.mode, if t.mode == Mode::Schema { &t.schema } else { &t.database }, t.server.as_deref().unwrap_or("-"));
                    std::io::stderr().flush().ok();
                    let mut answer = String::new();
                    std::io::stdin().read_line(&mut answer)?;
                    anyhow::ensure!(matches!(answer.trim(), "y" | "Y" | "yes"), "not dropped: confirmation declined");
                }
                c.drop_tenant(key).await?;
                eprintln!("Dropped tenant {key:?}: {} and role {} removed; the catalog keeps a tenant.dropped event", if t.mode == Mode::Schema { format!("schema {}", t.schema) } else { format!("database {}", t.database) }, t.role);
            }
            TenantCommand::Credentials { key } => {
                let url = c.credentials(key).await?;
                println!("{}", url.expose());
            }
            TenantCommand::RotatePassword { key } => {
                c.rotate_password(key).await?;
                eprintln!("Tenant {key:?} has a new password (`pgfleet tenant credentials KEY` prints it)");
            }
        }
        anyhow::Ok(())
    })
}

/// `pgfleet keys …`.
///
/// # Errors
/// When the system's random source fails.
pub fn keys(cmd: &KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Rotate { control: args } => {
            let n = runtime()?
                .block_on(async { anyhow::Ok(control(args).await?.rotate_keys().await?) })?;
            let cfg = config(args)?;
            eprintln!(
                "Re-wrapped {n} sealed secret(s) under master key {}; once every pgfleet process runs with this key, remove the previous one",
                cfg.master_key()?.id()
            );
        }
        KeysCommand::Generate => {
            let k = MasterKey::generate()?;
            println!("{}", k.to_base64().expose());
            eprintln!(
                "New master key (id {}). Store it as PGFLEET_MASTER_KEY or in a file named by PGFLEET_MASTER_KEY_FILE.",
                k.id()
            );
        }
    }
    Ok(())
}

fn print_findings(findings: &[pgfleet::control::diagnose::Finding]) {
    for f in findings {
        println!(
            "{} {:<16} {}",
            if f.ok { "ok  " } else { "FAIL" },
            f.check,
            printable_text(&f.detail)
        );
    }
}

/// `pgfleet check-user KEY`. Returns whether the tenant is healthy.
///
/// # Errors
/// Catalog errors, unknown tenant.
pub fn check_user(args: &ControlArgs, key: &str, format: OutputFormat) -> anyhow::Result<bool> {
    runtime()?.block_on(async {
        let c = control(args).await?;
        let (t, findings, events) = c.check_user(key).await?;
        let healthy = findings.iter().all(|f| f.ok);
        if format == OutputFormat::Json {
            let mut v = tenant_json(&t);
            v["healthy"] = healthy.into();
            v["findings"] = serde_json::to_value(&findings)?;
            v["events"] = serde_json::to_value(&events)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            println!("tenant {} ({})", printable(&t.key), t.id);
            print_findings(&findings);
            println!("recent events:");
            for e in events {
                println!(
                    "  {}  {:<20} {}",
                    e.at,
                    e.kind,
                    printable(&e.detail.to_string())
                );
            }
        }
        eprintln!("{}", if healthy { "healthy" } else { "NOT healthy" });
        anyhow::Ok(healthy)
    })
}

/// `pgfleet validate`. Returns whether everything passed.
///
/// # Errors
/// When the catalog cannot be read.
pub fn validate(args: &ControlArgs, format: OutputFormat) -> anyhow::Result<bool> {
    runtime()?.block_on(async {
        let c = control(args).await?;
        let findings = c.validate().await?;
        let ok = findings.iter().all(|f| f.ok);
        if format == OutputFormat::Json {
            println!("{}", serde_json::to_string_pretty(&findings)?);
        } else {
            print_findings(&findings);
        }
        eprintln!("{}", if ok { "valid" } else { "problems found" });
        anyhow::Ok(ok)
    })
}

/// `pgfleet init --tenant KEY --reset --yes`.
///
/// # Errors
/// Without --reset/--yes; unknown tenant; provisioning errors.
pub fn reset_tenant(args: &ControlArgs, key: &str, reset: bool, yes: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        reset,
        "`pgfleet init --tenant KEY` re-creates the tenant's schema from the target and needs --reset (its data is lost)"
    );
    anyhow::ensure!(
        yes,
        "refusing to reset tenant {key:?} without --yes: its database (or schema) is dropped and re-created from the target, and its data is lost"
    );
    runtime()?.block_on(async {
        let c = control(args).await?;
        let t = c.reset_tenant(key, Duration::from_secs(300)).await?;
        eprintln!(
            "Tenant {:?} re-created from the target and verified at version {}",
            t.key,
            t.schema_version.as_deref().unwrap_or("?")
        );
        anyhow::Ok(())
    })
}

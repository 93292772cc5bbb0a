//! The `pgfleet` command line. `main.rs` only parses flags; every command is a function here that
//! calls into the `pgfleet` library, so tests and other programs can do what the CLI does.
//!
//! Exit codes: 0 success, 1 "differences found" (for commands that report them), 2 error.
#![deny(missing_docs)]

pub mod control_cmds;
pub mod demo;
pub mod demo_http;
pub mod fleet_cmds;
pub mod local;
pub mod migrate_cmds;
pub mod printable;
pub mod schema_cmds;
pub mod sql_cmds;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code of a failed command.
pub const EXIT_ERROR: u8 = 2;

/// pgfleet: a PostgreSQL database (or schema) per tenant, provisioned, migrated, verified, routed
/// and healed from one central schema.
#[derive(Debug, Parser)]
#[command(
    name = "pgfleet",
    version,
    about = "A PostgreSQL database (or schema) per tenant: provisioned exactly once, migrated and verified from one central schema",
    long_about = None
)]
#[command(
    after_help = "Start here:  pgfleet demo      (installs PostgreSQL 18 + pgvector, starts it, runs a similarity search)\n\
Environment: PGFLEET_HOME (default ./.pgfleet), PGFLEET_CACHE_DIR (default ~/.cache/pgfleet),\n             PGFLEET_PG_BIN (use these PostgreSQL binaries), PGFLEET_SERVER_USER (OS user of the server when run as root),\n             PGFLEET_CATALOG_URL, PGFLEET_MASTER_KEY[_FILE] (control plane; see docs/control-plane.md)\n\
Exit codes:  0 success, 1 differences found, 2 error"
)]
pub struct Cli {
    /// Log more (-v: debug, -vv: trace). RUST_LOG-style filters in PGFLEET_LOG take precedence.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the local cluster lives.
#[derive(Debug, Clone, clap::Args)]
pub struct DataDirArg {
    /// Data directory of the local cluster [default: $PGFLEET_HOME/data, PGFLEET_HOME defaults to ./.pgfleet]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataDirArg {
    /// The directory given, or the default.
    pub fn resolve(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(pgfleet::embedded::paths::default_data_dir)
    }
}

/// pgfleet's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install PostgreSQL 18.6 with pgvector 0.8.6 into the cache (idempotent; needs Python 3 with pip).
    Setup,
    /// Initialize (first time) and start the local PostgreSQL; prints its connection URL on stdout.
    Up {
        /// Where the cluster lives.
        #[command(flatten)]
        dir: DataDirArg,
        /// TCP port on 127.0.0.1 [default: the cluster's recorded port, 54320 for a new cluster]
        #[arg(long, value_name = "N")]
        port: Option<u16>,
    },
    /// Stop the local PostgreSQL (fast shutdown: sessions are disconnected, nothing is lost).
    Down {
        /// Where the cluster lives.
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Describe the local PostgreSQL: running or not, port, URL, version, data directory.
    Status {
        /// Where the cluster lives.
        #[command(flatten)]
        dir: DataDirArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show what would change to bring a database to the desired schema.
    ///
    /// Exit codes with --exit-code: 0 in sync, 1 changes, 2 error.
    Plan {
        /// The database and the desired schema.
        #[command(flatten)]
        target: schema_cmds::Target,
        /// Exit with 1 when there are changes (0 in sync, 2 error).
        #[arg(long)]
        exit_code: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "sql")]
        format: schema_cmds::Format,
    },
    /// Bring a database to the desired schema: plan, check hazards, confirm, apply, verify.
    Apply {
        /// The database and the desired schema.
        #[command(flatten)]
        target: schema_cmds::Target,
        /// Consent and safety flags.
        #[command(flatten)]
        flags: schema_cmds::ApplyFlags,
    },
    /// Write the next migration from schema.sql: replay migrations/ in a shadow database, diff
    /// against schema.sql, write the difference as a new file and update pgfleet.sum.
    ///
    /// With --check: write nothing; exit 1 when schema.sql and the migrations disagree.
    Gen(migrate_cmds::GenArgs),
    /// Apply pending migrations to one database, at most once, under a lock; resume after crashes.
    ///
    /// Subcommands: status (what is applied), import (adopt sqlx, Drizzle or golang-migrate),
    /// hash (record the directory in pgfleet.sum).
    Migrate(migrate_cmds::MigrateArgs),
    /// Create or upgrade the catalog, and record the migrations directory as the fleet's target.
    ///
    /// With --tenant KEY --reset --yes: re-create one tenant's database (or schema) from the target.
    Init {
        /// The fleet's migrations directory [default: ./migrations, or `migrations` in pgfleet.toml]
        #[arg(long, value_name = "DIR")]
        migrations: Option<PathBuf>,
        /// Re-initialize this tenant instead (needs --reset and --yes).
        #[arg(long, value_name = "KEY")]
        tenant: Option<String>,
        /// Drop and re-create the tenant's database or schema (its data is lost).
        #[arg(long, requires = "tenant")]
        reset: bool,
        /// Confirm the reset.
        #[arg(long)]
        yes: bool,
        /// Catalog and master key.
        #[command(flatten)]
        control: control_cmds::ControlArgs,
    },
    /// Manage API tokens: app tokens for the SQL front door (scope sql) and, later, the
    /// management API (read, admin). Create prints the token once.
    Token {
        /// Catalog and master key.
        #[command(flatten)]
        control: control_cmds::ControlArgs,
        /// What to do.
        #[command(subcommand)]
        command: sql_cmds::TokenCommand,
    },
    /// Manage the PostgreSQL servers that hold tenants: add, list, drain, activate.
    Server {
        /// Catalog and master key.
        #[command(flatten)]
        control: control_cmds::ControlArgs,
        /// What to do.
        #[command(subcommand)]
        command: control_cmds::ServerCommand,
    },
    /// Manage tenants: create (exactly once, verified), list, show, drop, credentials.
    Tenant {
        /// Catalog and master key.
        #[command(flatten)]
        control: control_cmds::ControlArgs,
        /// What to do.
        #[command(subcommand)]
        command: control_cmds::TenantCommand,
    },
    /// Drift of tenants against the target; --fix applies additive repairs and records them.
    ///
    /// Exit codes: 0 clean (or fully repaired), 1 drift remains, 2 error.
    Check {
        /// One tenant.
        #[arg(long, value_name = "KEY", conflicts_with = "all")]
        tenant: Option<String>,
        /// Every ready tenant.
        #[arg(long)]
        all: bool,
        /// Repair additive drift (missing tables, columns, indexes, …); never drops or alters.
        #[arg(long)]
        fix: bool,
        /// Tenants checked at once (with --all).
        #[arg(long, value_name = "N", default_value_t = 8, value_parser = migrate_cmds::at_least_one)]
        concurrency: usize,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: control_cmds::OutputFormat,
        /// Catalog and master key.
        #[command(flatten)]
        control: control_cmds::ControlArgs,
    },
    /// One tenant end to end: placement, state, login as its own role, version, drift, events.
    ///
    /// Exit codes: 0 healthy, 1 not healthy, 2 error.
    CheckUser {
        /// The tenant's key.
        key: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: control_cmds::OutputFormat,
        /// Catalog and master key.
        #[command(flatten)]
        control: control_cmds::ControlArgs,
    },
    /// Check the installation: configuration, catalog, master key, target, every server, tenants.
    ///
    /// Exit codes: 0 valid, 1 problems found, 2 error.
    Validate {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: control_cmds::OutputFormat,
        /// Catalog and master key.
        #[command(flatten)]
        control: control_cmds::ControlArgs,
    },
    /// Run the background workers (provisioning queue, health checks, spare schemas) and serve
    /// the dashboard (/), the management API (/v1), /healthz, /readyz and Prometheus /metrics.
    /// Several processes may serve one catalog.
    ///
    /// Sign in to the dashboard, or call the API with `Authorization: Bearer`, with a token of
    /// scope read (look) or admin (change): `pgfleet token create NAME --scope admin`. The API's
    /// OpenAPI document is at /v1/openapi.json.
    ///
    /// Stops on SIGTERM or Ctrl-C: no new work, work in flight finishes, unfinished operations go
    /// back to the queue.
    Serve(fleet_cmds::ServeArgs),
    /// Master keys: generate, rotate.
    Keys {
        /// What to do.
        #[command(subcommand)]
        command: control_cmds::KeysCommand,
    },
    /// Run the demo: the local PostgreSQL, a fleet with the chat example as its target, tenants in
    /// both modes, similarity search per tenant, a missing table healed, a rollout and a drift check.
    Demo {
        /// Where the cluster lives.
        #[command(flatten)]
        dir: DataDirArg,
        /// TCP port for a new cluster [default: 54320]
        #[arg(long, value_name = "N")]
        port: Option<u16>,
    },
}

/// The single-threaded runtime every command runs its async work on.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Runs one command.
///
/// # Errors
/// Any error of the command, with context for the user.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Plan {
            target,
            exit_code,
            format,
        } => {
            let changes = schema_cmds::plan(&target, format)?;
            return Ok(if changes && exit_code {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            });
        }
        Command::Gen(args) => {
            let differs = migrate_cmds::generate(&args)?;
            return Ok(if differs {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            });
        }
        Command::Migrate(args) if args.fleet.all => return fleet_cmds::migrate_all(&args),
        Command::Serve(args) => fleet_cmds::serve(&args),
        Command::Migrate(args) => migrate_cmds::migrate(&args),
        Command::Init {
            migrations,
            tenant: Some(key),
            reset,
            yes,
            control,
        } => {
            let _ = migrations;
            control_cmds::reset_tenant(&control, &key, reset, yes)
        }
        Command::Init {
            migrations,
            control,
            ..
        } => control_cmds::init(&control, migrations.as_deref()),
        Command::Check {
            tenant,
            all,
            fix,
            concurrency,
            format,
            control,
        } => {
            let drift =
                fleet_cmds::check(&control, tenant.as_deref(), all, fix, concurrency, format)?;
            return Ok(if drift {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            });
        }
        Command::CheckUser {
            key,
            format,
            control,
        } => {
            let ok = control_cmds::check_user(&control, &key, format)?;
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        Command::Validate { format, control } => {
            let ok = control_cmds::validate(&control, format)?;
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        Command::Server { control, command } => control_cmds::server(&control, &command),
        Command::Token { control, command } => sql_cmds::token(&control, &command),
        Command::Tenant { control, command } => control_cmds::tenant(&control, &command),
        Command::Keys { command } => control_cmds::keys(&command),
        Command::Apply { target, flags } => schema_cmds::apply(&target, &flags),
        Command::Setup => local::setup(),
        Command::Up { dir, port } => local::up(&dir.resolve(), port),
        Command::Down { dir } => local::down(&dir.resolve()),
        Command::Status { dir, json } => local::status(&dir.resolve(), json),
        Command::Demo { dir, port } => demo::run(&dir.resolve(), port),
    }
    .map(|()| ExitCode::SUCCESS)
}

/// Installs the log subscriber: human output on stderr, filtered by `PGFLEET_LOG`
/// (`info`, `pgfleet_embedded=debug,warn`, …) or by the verbosity flag.
pub fn init_tracing(verbose: u8) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let default = match verbose {
        0 => "warn,pgfleet=info,pgfleet_embedded=info,pgfleet_cli=info,pgfleet_router=warn"
            .to_string(),
        1 => "info,pgfleet=debug,pgfleet_embedded=debug,pgfleet_cli=debug".to_string(),
        _ => "trace".to_string(),
    };
    let spec = std::env::var("PGFLEET_LOG").unwrap_or(default);
    let filter: Targets = spec
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::WARN));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(printable::LogWriter::default)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .without_time()
                .with_target(false),
        )
        .with(filter)
        .try_init();
}

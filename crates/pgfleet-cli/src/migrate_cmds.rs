//! `pgfleet gen` and `pgfleet migrate [status|import|hash]`: versioned migrations.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::runtime;
use pgfleet::migrate::generate::{self, GenOptions, GenOutcome};
use pgfleet::migrate::import::{self, Tool};
use pgfleet::migrate::migrator::{self, MigrateEvent, MigrateOptions, Status};
use pgfleet::migrate::{MigrationDir, sum};
use pgfleet::pg::{connect, shadow::ShadowOptions, source::SchemaSource};
use pgfleet::schema::plan::parse_hazard_list;

use crate::control_cmds::{ControlArgs, OutputFormat};
use crate::schema_cmds::parse_duration;
use pgfleet::control::fleet::Canary;

/// `pgfleet gen` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct GenArgs {
    /// Name of the new migration (lowercase letters, digits, `_`, `-`), e.g. add_tags. Not with --check.
    #[arg(value_name = "NAME", required_unless_present = "check")]
    pub name: Option<String>,
    /// Write nothing; exit 1 when schema.sql and the migrations disagree (for CI).
    #[arg(long, conflicts_with = "name")]
    pub check: bool,
    /// The desired schema: a .sql file, or a directory of .sql files applied in name order.
    #[arg(long, value_name = "PATH", default_value = "schema.sql")]
    pub schema: PathBuf,
    /// The migrations directory.
    #[arg(long, value_name = "DIR", default_value = "migrations")]
    pub migrations: PathBuf,
    /// Server for the scratch shadow databases (the role needs CREATEDB and CREATEROLE) [default:
    /// the local PostgreSQL started by `pgfleet up`]
    #[arg(
        long,
        value_name = "URL",
        env = "PGFLEET_DEV_URL",
        hide_env_values = true
    )]
    pub dev_url: Option<String>,
    /// Hazards you accept in the new migration, comma-separated, or `all`. data_loss and
    /// breaking_change are refused without consent; other hazards (may_fail, table_rewrite, …) are
    /// written as comments.
    #[arg(long, value_name = "LIST", default_value = "")]
    pub allow_hazards: String,
    /// Plan blocking DDL instead of CREATE INDEX CONCURRENTLY / NOT VALID + VALIDATE.
    #[arg(long)]
    pub offline: bool,
    /// Extensions pgfleet may create for the schema and migration files.
    #[command(flatten)]
    pub extensions: crate::schema_cmds::ExtensionArgs,
}

/// `pgfleet migrate` flags (without a subcommand: apply pending migrations).
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MigrateArgs {
    /// `status`, `import` or `hash`; without one, pending migrations are applied.
    #[command(subcommand)]
    pub command: Option<MigrateCommand>,
    /// Apply flags.
    #[command(flatten)]
    pub run: RunArgs,
    /// The whole fleet (--all).
    #[command(flatten)]
    pub fleet: FleetArgs,
}

/// Where to migrate.
#[derive(Debug, Clone, clap::Args)]
pub struct DbArgs {
    /// The database: postgres://user:password@host:port/db
    #[arg(
        long,
        value_name = "URL",
        env = "PGFLEET_DATABASE_URL",
        hide_env_values = true
    )]
    pub db: Option<String>,
    /// The migrations directory.
    #[arg(long, value_name = "DIR", default_value = "migrations")]
    pub migrations: PathBuf,
    /// Run inside this schema of the database (schema-per-tenant): search_path is set to it (then
    /// public), and the lock and history are per schema.
    #[arg(long, value_name = "SCHEMA")]
    pub in_schema: Option<String>,
}

/// Flags of `pgfleet migrate`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The database and directory.
    #[command(flatten)]
    pub target: DbArgs,
    /// Stop after this version.
    #[arg(long, value_name = "VERSION")]
    pub to: Option<String>,
    /// Print what would be applied; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Accept that the applied migration VERSION was edited (records the new checksum). Repeatable.
    #[arg(long, value_name = "VERSION")]
    pub allow_changed: Vec<String>,
    /// Apply pending files older than the newest applied migration instead of refusing.
    #[arg(long)]
    pub allow_out_of_order: bool,
    /// How long to wait for another migrator on the same database (and schema), e.g. 30s, 15m.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_duration)]
    pub lock_wait: Duration,
}

/// Subcommands of `pgfleet migrate`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum MigrateCommand {
    /// Show every migration's state in a database: applied, pending, partial, changed, missing.
    Status {
        /// The database and directory.
        #[command(flatten)]
        target: DbArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: StatusFormat,
    },
    /// Adopt an sqlx, Drizzle or golang-migrate directory: convert its files into --migrations and
    /// record what it applied, so databases it migrated re-run nothing.
    Import {
        /// The tool the directory comes from.
        #[arg(long = "from", value_name = "TOOL", value_parser = ["sqlx", "drizzle", "golang-migrate"])]
        from: String,
        /// The tool's migrations directory (for Drizzle: the one holding meta/_journal.json).
        #[arg(value_name = "SRC_DIR")]
        src: PathBuf,
        /// The pgfleet migrations directory to create.
        #[arg(long, value_name = "DIR", default_value = "migrations")]
        migrations: PathBuf,
    },
    /// Record the directory as it is in pgfleet.sum (after reviewing a merge or a hand-written file).
    Hash {
        /// The migrations directory.
        #[arg(long, value_name = "DIR", default_value = "migrations")]
        migrations: PathBuf,
    },
}

/// Output of `migrate status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFormat {
    /// A table.
    Table,
    /// JSON: `[{"version", "name", "state", …}]`.
    Json,
}

/// Loads the directory and checks it against pgfleet.sum.
pub(crate) fn load_verified(path: &Path) -> anyhow::Result<MigrationDir> {
    let dir = MigrationDir::load(path)?;
    sum::verify(&dir)?;
    Ok(dir)
}

fn db_url(t: &DbArgs) -> anyhow::Result<&str> {
    t.db.as_deref().context(
        "which database? pass --db postgres://user:password@host:port/db (or set PGFLEET_DATABASE_URL)",
    )
}

/// The dev server for shadow databases: the flag, else the local PostgreSQL when it runs.
fn dev_url(flag: Option<&str>) -> anyhow::Result<String> {
    if let Some(u) = flag {
        return Ok(u.to_string());
    }
    if let Some(url) = crate::local::running_url(None) {
        return Ok(url);
    }
    anyhow::bail!(
        "gen needs a scratch PostgreSQL for its shadow databases: pass --dev-url URL (a server where the role may create databases and roles; use the same major version and extensions as production), or start the local one with `pgfleet up`"
    )
}

/// `pgfleet gen`. Returns whether `--check` found a difference.
///
/// # Errors
/// Bad directory or sum, schema or migration SQL errors (file:line), refused hazards, no dev server.
pub fn generate(a: &GenArgs) -> anyhow::Result<bool> {
    if a.check || a.migrations.exists() {
        require_dir(&a.migrations)?;
    }
    let dir = load_verified(&a.migrations)?;
    let schema = SchemaSource::load(&a.schema)?;
    let dev = connect::parse_url(&dev_url(a.dev_url.as_deref())?)?;
    let shadow = ShadowOptions::default().allow(&a.extensions.allow_extension);
    let rt = runtime()?;
    if a.check {
        let plan = rt.block_on(generate::diff(&dev, &dir, &schema, !a.offline, &shadow))?;
        if plan.is_empty() {
            eprintln!(
                "In sync: {} produce {} ({} migration(s))",
                a.migrations.display(),
                a.schema.display(),
                dir.migrations.len()
            );
            return Ok(false);
        }
        print!("{}", plan.to_sql());
        eprintln!(
            "{} and {} disagree: {} step(s) are missing from the migrations (shown above); run `pgfleet gen NAME` and commit the new file",
            a.schema.display(),
            a.migrations.display(),
            plan.steps.len()
        );
        return Ok(true);
    }
    let name = a.name.as_deref().unwrap_or_default();
    let opts = GenOptions {
        online: !a.offline,
        allow_hazards: parse_hazard_list(&a.allow_hazards)?,
        now: std::time::SystemTime::now(),
        shadow,
    };
    match rt.block_on(generate::generate(&dev, &dir, &schema, name, &opts))? {
        GenOutcome::UpToDate => eprintln!(
            "Nothing to do: {} already produce {}; no file written",
            a.migrations.display(),
            a.schema.display()
        ),
        GenOutcome::Written { files, plan } => {
            for f in &files {
                println!("{}", f.display());
            }
            let hazards: Vec<String> = plan.hazards().iter().map(|h| h.to_string()).collect();
            eprintln!(
                "Wrote {} file(s) with {} step(s){}; replayed: the migrations now produce {}; pgfleet.sum updated",
                files.len(),
                plan.steps.len(),
                if hazards.is_empty() {
                    String::new()
                } else {
                    format!(" (hazards: {})", hazards.join(", "))
                },
                a.schema.display()
            );
        }
    }
    Ok(false)
}

/// `pgfleet migrate` and its subcommands.
///
/// # Errors
/// See [`pgfleet::migrate::MigrateError`] and the subcommands.
pub fn migrate(a: &MigrateArgs) -> anyhow::Result<()> {
    match &a.command {
        None => run(&a.run),
        Some(MigrateCommand::Status { target, format }) => status(target, *format),
        Some(MigrateCommand::Import {
            from,
            src,
            migrations,
        }) => {
            let tool: Tool = from.parse().map_err(anyhow::Error::msg)?;
            let summary = import::import_dir(tool, src, migrations)?;
            for f in &summary.files {
                println!("{}", migrations.join(f).display());
            }
            for f in &summary.stripped_transactions {
                eprintln!(
                    "  {f}: removed its BEGIN/COMMIT lines (pgfleet runs each migration in a transaction)"
                );
            }
            if !summary.skipped.is_empty() {
                eprintln!(
                    "  skipped {} down migration(s): pgfleet moves forward only",
                    summary.skipped.len()
                );
            }
            eprintln!(
                "Imported {} {tool} migration(s) into {}. On databases {tool} already migrated, `pgfleet migrate` records them as applied and runs only newer ones.",
                summary.files.len(),
                migrations.display()
            );
            Ok(())
        }
        Some(MigrateCommand::Hash { migrations }) => {
            require_dir(migrations)?;
            let dir = MigrationDir::load(migrations)?;
            sum::write(&dir)?;
            eprintln!(
                "Recorded {} migration(s) in {}",
                dir.migrations.len(),
                migrations.join(pgfleet::migrate::dir::SUM_FILE).display()
            );
            Ok(())
        }
    }
}

/// The directory must exist for commands that apply or report migrations.
fn require_dir(path: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        !path.exists() || path.is_dir(),
        "--migrations {} is a file; pass the directory that holds the migration files",
        path.display()
    );
    anyhow::ensure!(
        path.is_dir(),
        "migrations directory {} does not exist; pass --migrations DIR, or create the first migration with `pgfleet gen NAME`",
        path.display()
    );
    Ok(())
}

fn run(r: &RunArgs) -> anyhow::Result<()> {
    let url = db_url(&r.target)?;
    require_dir(&r.target.migrations)?;
    let dir = load_verified(&r.target.migrations)?;
    let config = connect::parse_url(url)?;
    let opts = MigrateOptions {
        scope: r.target.in_schema.clone(),
        to: r.to.clone(),
        dry_run: r.dry_run,
        allow_changed: r.allow_changed.iter().cloned().collect::<BTreeSet<_>>(),
        allow_out_of_order: r.allow_out_of_order,
        lock_wait: r.lock_wait,
        extensions_created: false,
    };
    let started = std::time::Instant::now();
    let report = runtime()?.block_on(migrator::migrate(
        &config,
        &dir,
        &opts,
        |event| match event {
            MigrateEvent::WaitingForLock { holder } => eprintln!(
                "Waiting for the migration lock{} (another migration is running on this database)…",
                holder.map(|h| format!(" held by {h}")).unwrap_or_default()
            ),
            MigrateEvent::LockTaken { waited } => {
                eprintln!("Took the migration lock after {:.1}s", waited.as_secs_f64())
            }
            MigrateEvent::Adopted { tool, versions } => eprintln!(
                "Adopted {} migration(s) {tool} had applied: {}",
                versions.len(),
                versions.join(", ")
            ),
            MigrateEvent::AcceptedChange {
                version,
                recorded,
                actual,
            } => eprintln!("Accepted the edit of {version}: {recorded} -> {actual}"),
            MigrateEvent::DroppedInvalidIndex { name } => eprintln!(
                "  dropped the invalid index {name} left by an interrupted concurrent build"
            ),
            MigrateEvent::Started {
                file, resume_at, ..
            } => match resume_at {
                Some(n) => eprintln!("Resuming {file} at statement {n}"),
                None => eprintln!("Applying {file}"),
            },
            MigrateEvent::Applied { elapsed, .. } => {
                eprintln!("  done in {} ms", elapsed.as_millis())
            }
            _ => {}
        },
    ))?;
    let target = connect::redact(url);
    if r.dry_run {
        if report.applied.is_empty() {
            eprintln!(
                "Dry run: nothing would be applied to {target}{}",
                if r.to.is_some() {
                    " up to --to"
                } else {
                    "; it is up to date"
                }
            );
        } else {
            for v in &report.applied {
                if let Some(m) = dir.get(v) {
                    println!("{}", m.file_name);
                }
            }
            eprintln!(
                "Dry run: {} migration(s) would be applied to {target}; nothing was changed",
                report.applied.len()
            );
        }
        return Ok(());
    }
    let at = report.at.as_deref().unwrap_or("(no migration applied)");
    let past_to =
        r.to.as_deref()
            .zip(report.at.as_deref())
            .is_some_and(|(to, at)| at > to);
    if report.applied.is_empty() && past_to {
        eprintln!(
            "Nothing to do: {target} is already past {} (it is at version {at}); migrations only go forward",
            r.to.as_deref().unwrap_or_default()
        );
    } else if report.applied.is_empty() {
        eprintln!("Nothing to do: {target} is at version {at}");
    } else {
        eprintln!(
            "Applied {} migration(s) to {target} in {:.1}s; it is at version {at}",
            report.applied.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn status(t: &DbArgs, format: StatusFormat) -> anyhow::Result<()> {
    let url = db_url(t)?;
    require_dir(&t.migrations)?;
    let dir = MigrationDir::load(&t.migrations)?;
    let integrity = sum::verify(&dir).err();
    let config = connect::parse_url(url)?;
    let lines = runtime()?.block_on(async {
        let client = connect::connect(&config).await?;
        let scope = t.in_schema.clone().unwrap_or_default();
        anyhow::Ok(migrator::status(&client, &dir, &scope).await?)
    })?;
    if format == StatusFormat::Json {
        println!("{}", serde_json::to_string_pretty(&lines)?);
    } else {
        println!("{:<15} {:<32} {:<12} DETAIL", "VERSION", "NAME", "STATE");
        for l in &lines {
            let (state, detail) = match &l.status {
                Status::Applied { at, duration_ms } => (
                    "applied",
                    format!(
                        "{}{}",
                        at.as_deref().unwrap_or(""),
                        duration_ms
                            .map(|d| format!(" ({d} ms)"))
                            .unwrap_or_default()
                    ),
                ),
                Status::Adopted => ("adopted", "applied by the previous tool".to_string()),
                Status::Pending => ("pending", String::new()),
                Status::Partial { done, total, error } => (
                    "partial",
                    format!(
                        "{done}/{} statements; the next run resumes{}",
                        total.map(|t| t.to_string()).unwrap_or("?".into()),
                        error
                            .as_deref()
                            .map(|e| format!("; stopped by: {e}"))
                            .unwrap_or_default()
                    ),
                ),
                Status::Changed { recorded } => (
                    "CHANGED",
                    format!("file differs from the applied one ({recorded})"),
                ),
                Status::MissingFile => {
                    ("MISSING-FILE", "applied, but the file is gone".to_string())
                }
                Status::OutOfOrder => (
                    "OUT-OF-ORDER",
                    "older than the newest applied migration".to_string(),
                ),
            };
            println!("{:<15} {:<32} {:<12} {detail}", l.version, l.name, state);
        }
        let count = |f: fn(&Status) -> bool| lines.iter().filter(|l| f(&l.status)).count();
        eprintln!(
            "{} applied, {} pending, {} need attention",
            count(|s| matches!(s, Status::Applied { .. } | Status::Adopted)),
            count(|s| matches!(s, Status::Pending | Status::Partial { .. })),
            count(|s| matches!(
                s,
                Status::Changed { .. } | Status::MissingFile | Status::OutOfOrder
            ))
        );
    }
    if let Some(e) = integrity {
        eprintln!("warning: {e}");
    }
    Ok(())
}

/// Flags of `migrate --all`.
#[derive(Debug, Clone, clap::Args)]
pub struct FleetArgs {
    /// Migrate every ready tenant of the fleet instead of one database: records --migrations as
    /// the fleet's target (as `init` does), then brings each tenant to it. Tenants already at the
    /// target are not touched. Exit codes: 0 all migrated, 1 a tenant failed, 2 error
    #[arg(long, conflicts_with_all = ["db", "in_schema", "to", "dry_run", "allow_changed", "allow_out_of_order"])]
    pub all: bool,
    /// Tenants migrated at once, in all
    #[arg(long, value_name = "N", default_value_t = 8, requires = "all", value_parser = at_least_one)]
    pub concurrency: usize,
    /// Tenants migrated at once on one server
    #[arg(long, value_name = "N", default_value_t = 4, requires = "all", value_parser = at_least_one)]
    pub per_server: usize,
    /// Migrate N tenants (or N% of them) first, and stop if any of them fails
    #[arg(long, value_name = "N|N%", requires = "all")]
    pub canary: Option<Canary>,
    /// Only these tenants (`--tenant a b` or `--tenant a --tenant b`)
    #[arg(long = "tenant", value_name = "KEY", num_args = 1.., requires = "all")]
    pub tenants: Vec<String>,
    /// Go on with the other tenants after one fails (default: stop starting new ones)
    #[arg(long, requires = "all")]
    pub continue_on_error: bool,
    /// Also introspect each migrated tenant and diff it against the target
    #[arg(long, requires = "all")]
    pub verify: bool,
    /// Output format of the summary
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// Catalog and master key.
    #[command(flatten)]
    pub control: ControlArgs,
}

/// A count of at least 1.
pub(crate) fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("expected a number, got {s:?}")),
    }
}

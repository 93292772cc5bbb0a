//! `pgfleet plan` and `pgfleet apply`: bring one database to the desired schema.
//!
//! The desired schema (a `.sql` file or a directory of them) is applied to a shadow database on the
//! dev server (by default the server of `--db`, so versions and extensions match) and introspected;
//! the target is introspected; the planner orders the difference into hazard-tagged steps.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::runtime;
use pgfleet::pg::shadow::{self, ShadowOptions};
use pgfleet::pg::{apply, connect, introspect, source::SchemaSource};
use pgfleet::schema::planner::{self, PlanOptions};
use pgfleet::schema::{Hazard, Model, Plan, plan::parse_hazard_list};

/// Output format of `plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// SQL with hazards as comments.
    Sql,
    /// JSON: `{"steps": [{"description", "sql", "hazards", "transactional"}]}`.
    Json,
}

/// Flags shared by `plan` and `apply`.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The database to bring to the schema: postgres://user:password@host:port/db
    #[arg(
        long,
        value_name = "URL",
        env = "PGFLEET_DATABASE_URL",
        hide_env_values = true
    )]
    pub db: String,
    /// The desired schema: a .sql file, or a directory of .sql files applied in name order.
    #[arg(long, value_name = "PATH")]
    pub schema: PathBuf,
    /// Server for the scratch shadow database [default: the server of --db; the role needs
    /// CREATEDB and CREATEROLE]
    #[arg(long, value_name = "URL", hide_env_values = true)]
    pub dev_url: Option<String>,
    /// Build indexes and add constraints with blocking DDL instead of CONCURRENTLY / NOT VALID.
    #[arg(long)]
    pub offline: bool,
    /// Extensions pgfleet may create for the schema files.
    #[command(flatten)]
    pub extensions: ExtensionArgs,
}

/// Which extensions pgfleet creates itself in shadow databases (`plan`, `apply`, `gen`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ExtensionArgs {
    /// An untrusted extension pgfleet may create itself, as the dev server's role, when a schema
    /// file says CREATE EXTENSION NAME (schema files run as an unprivileged role, which may only
    /// create trusted extensions). Repeatable, or comma-separated. Always allowed: vector, and for
    /// plan and apply the extensions installed in --db.
    #[arg(
        long = "allow-extension",
        value_name = "NAME",
        env = "PGFLEET_ALLOWED_EXTENSIONS",
        value_delimiter = ','
    )]
    pub allow_extension: Vec<String>,
}

/// What `plan` and `apply` compute first.
struct Planned {
    client: tokio_postgres::Client,
    desired: Model,
    plan: Plan,
}

async fn compute(t: &Target) -> anyhow::Result<Planned> {
    let source = SchemaSource::load(&t.schema)?;
    let target = connect::parse_url(&t.db)?;
    let dev = match &t.dev_url {
        Some(url) => connect::parse_url(url)?,
        None => target.clone(),
    };
    let client = connect::connect(&target).await?;
    // The shadow database may install what the database being planned already has.
    let installed = shadow::installed_extensions(&client)
        .await
        .context("listing the extensions installed in --db")?;
    let shadow_opts = ShadowOptions::default()
        .allow(installed)
        .allow(&t.extensions.allow_extension);
    let desired = shadow::desired_model(&dev, &source, &shadow_opts)
        .await
        .context("building the desired schema")?;
    let current = introspect::introspect(&client)
        .await
        .context("reading the target database")?;
    let opts = PlanOptions {
        online: !t.offline,
        ..PlanOptions::default()
    };
    let plan = planner::plan(&current, &desired, &opts);
    Ok(Planned {
        client,
        desired,
        plan,
    })
}

fn render(plan: &Plan, format: Format) -> String {
    match format {
        Format::Sql => plan.to_sql(),
        Format::Json => plan.to_json() + "\n",
    }
}

/// `pgfleet plan`: prints the plan. Returns whether there are changes.
///
/// # Errors
/// Bad URL, unreachable server, schema SQL errors (file:line), catalog errors.
pub fn plan(t: &Target, format: Format) -> anyhow::Result<bool> {
    let planned = runtime()?.block_on(compute(t))?;
    let plan = &planned.plan;
    if plan.is_empty() {
        if format == Format::Json {
            print!("{}", render(plan, format));
        }
        eprintln!(
            "In sync: {} matches {}",
            connect::redact(&t.db),
            t.schema.display()
        );
        return Ok(false);
    }
    print!("{}", render(plan, format));
    eprintln!("{}", summary(plan));
    Ok(true)
}

fn summary(plan: &Plan) -> String {
    let hazards: Vec<String> = plan.hazards().iter().map(|h| h.to_string()).collect();
    format!(
        "{} step(s){}",
        plan.steps.len(),
        if hazards.is_empty() {
            String::new()
        } else {
            format!(" (hazards: {})", hazards.join(", "))
        }
    )
}

/// Flags of `apply` beyond the target.
#[derive(Debug, Clone, clap::Args)]
pub struct ApplyFlags {
    /// Hazards you accept, comma-separated (data_loss, may_fail, table_rewrite, long_lock,
    /// index_build, validation_scan, breaking_change), or `all`. A plan with any other hazard is
    /// refused before anything changes.
    #[arg(long, value_name = "LIST", default_value = "")]
    pub allow_hazards: String,
    /// Do not ask for confirmation (required when stdin is not a terminal).
    #[arg(long)]
    pub yes: bool,
    /// Print the plan and the hazard check, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// lock_timeout of every statement, e.g. 5s, 500ms; lock timeouts are retried with backoff.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub lock_timeout: Duration,
    /// statement_timeout of every statement (0 = no limit).
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
    pub statement_timeout: Duration,
}

/// Parses `5s`, `500ms`, `2m`, or a bare number of milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "ms"), |i| (&s[..i], &s[i..]));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (examples: 5s, 500ms, 2m, 8h)"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" | "min" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!(
            "unknown unit {unit:?} in {s:?} (use ms, s, m or h)"
        )),
    }
}

/// `pgfleet apply`.
///
/// # Errors
/// Everything `plan` returns, plus refused hazards, a refused confirmation, failing steps and a plan
/// that did not converge.
pub fn apply(t: &Target, flags: &ApplyFlags) -> anyhow::Result<()> {
    let allowed: BTreeSet<Hazard> = parse_hazard_list(&flags.allow_hazards)?;
    let rt = runtime()?;
    rt.block_on(async {
        let planned = compute(t).await?;
        let plan = &planned.plan;
        if plan.is_empty() {
            eprintln!("In sync: {} matches {}; nothing to do", connect::redact(&t.db), t.schema.display());
            return Ok(());
        }
        let refused = plan.disallowed_hazards(&allowed);
        if flags.dry_run || !refused.is_empty() || !flags.yes {
            print!("{}", plan.to_sql());
        }
        if !refused.is_empty() {
            let names: Vec<String> = refused.iter().map(|h| h.to_string()).collect();
            let steps: Vec<String> = plan
                .steps
                .iter()
                .filter(|s| s.hazards.iter().any(|h| refused.contains(h)))
                .map(|s| format!("  - {} [{}]", s.description, s.hazards.iter().map(|h| h.name()).collect::<Vec<_>>().join(", ")))
                .collect();
            anyhow::bail!(
                "refusing to apply: the plan has hazards you did not allow: {}\n{}\nnothing was changed; review the plan above and pass --allow-hazards {} to accept them",
                names.join(", "),
                steps.join("\n"),
                names.join(",")
            );
        }
        if flags.dry_run {
            eprintln!("Dry run: {}; nothing was changed", summary(plan));
            return Ok(());
        }
        if !flags.yes {
            if !std::io::stdin().is_terminal() {
                anyhow::bail!("refusing to apply without confirmation: stdin is not a terminal; review the plan above and pass --yes");
            }
            eprint!("Apply {} to {}? [y/N] ", summary(plan), connect::redact(&t.db));
            std::io::stderr().flush().ok();
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                anyhow::bail!("not applied: confirmation declined");
            }
        }
        let opts = apply::ApplyOptions {
            lock_timeout: flags.lock_timeout,
            statement_timeout: flags.statement_timeout,
            ..apply::ApplyOptions::default()
        };
        let started = std::time::Instant::now();
        apply::apply_and_verify(&planned.client, plan, &planned.desired, &opts, |event| match event {
            apply::ApplyEvent::StepStarted { index, total, description } => {
                eprintln!("[{index}/{total}] {description}");
            }
            apply::ApplyEvent::Retrying { index, attempt, backoff } => {
                eprintln!("  lock timeout at step {index}; retry {attempt} in {backoff:?}");
            }
            _ => {}
        })
        .await?;
        eprintln!(
            "Applied {} in {:.1}s; verified: the database matches {}",
            summary(plan),
            started.elapsed().as_secs_f64(),
            t.schema.display()
        );
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("8h").unwrap(), Duration::from_secs(8 * 3600));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
    }
}

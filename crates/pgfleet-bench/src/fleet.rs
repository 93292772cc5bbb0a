//! `fleet`: one additive migration (a column with a default and an index) rolled out to 1,000
//! schema-mode and 100 database-mode tenants on the embedded server by `migrate --all`, next to the
//! same change applied by a sequential shell loop of `psql -f` (one process per tenant) in the same
//! run, and a no-op `migrate --all` afterwards.
//!
//! The loop applies an equivalent migration under other names (`priority_b`), so both sides do the
//! same work on the same tenants. `migrate --all` runs as the CLI does: a multi-threaded runtime and
//! its default bounds (8 tenants at once, 4 per server).
//!
//! Then the DDL floor of schema tenants: a second migration rolled out to the schema tenants only,
//! next to the same change applied by **one** psql session (one connection) to every tenant schema
//! in turn, `SET search_path` before each, and by one psql process per schema
//! (`rollout_vs_ddl_floor`, `schema_rollout_speedup_vs_psql_loop`).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use pgfleet::control::fleet::{FleetMigration, FleetOptions, ProgressFn};
use pgfleet::control::provision::CreateOptions;
use pgfleet::control::tenant::{Mode, Tenant};
use pgfleet::migrate::{MigrationDir, sum};

use crate::Report;
use crate::chat_fleet::ChatFleet;

const MIGRATION: &str = "ALTER TABLE chat_threads ADD COLUMN priority integer NOT NULL DEFAULT 0;
CREATE INDEX chat_threads_priority_idx ON chat_threads (priority);
";
const LOOP_MIGRATION: &str =
    "ALTER TABLE chat_threads ADD COLUMN priority_b integer NOT NULL DEFAULT 0;
CREATE INDEX chat_threads_priority_b_idx ON chat_threads (priority_b);
";

/// The same change under the names `priority_<suffix>`.
fn migration_named(suffix: &str) -> String {
    MIGRATION.replace("priority", &format!("priority_{suffix}"))
}

/// Runs the benchmark.
///
/// # Errors
/// When a server cannot be started, provisioning or a migration fails.
pub fn run(quick: bool) -> anyhow::Result<Report> {
    let (n_schema, n_database) = if quick { (100, 10) } else { (1000, 100) };
    let mut report = Report::new("fleet", quick);
    let f = ChatFleet::start("bench_fleet")?;
    let work = f
        .migrations
        .parent()
        .expect("in the work directory")
        .to_path_buf();

    // The fleet.
    provision_fleet(&f, n_schema, n_database)?;

    // pgfleet: the migration rolled out.
    let rollout = Rollout::prepare(&f, n_schema + n_database)?;
    let record = rollout.record_target()?;
    let migrate = rollout.migrate_all()?;
    let noop = rollout.noop()?;
    // Drift check of the whole fleet (before the loop below changes the tenants).
    let check = rollout.check_all()?;

    // The baseline: a sequential shell loop, one psql process per tenant.
    let tenants = f.rt.block_on(f.control.tenants(None))?;
    let whole_loop = psql_loop(&f, &work, &tenants, LOOP_MIGRATION)?;

    // Schema tenants only: a second rollout, the DDL floor (one psql session) and a psql loop.
    let schema: Vec<Tenant> = tenants
        .into_iter()
        .filter(|t| t.mode == Mode::Schema)
        .collect();
    let mut second = Rollout::add(
        &f,
        "20260202000000_priority_c.sql",
        &migration_named("c"),
        schema.len(),
    )?;
    second.opts.tenants = schema.iter().map(|t| t.key.clone()).collect();
    let schema_record = second.record_target()?;
    let schema_migrate = second.migrate_all()?;
    let floor = ddl_floor(&f, &work, &schema, &migration_named("d"))?;
    let schema_loop = psql_loop(&f, &work, &schema, &migration_named("e"))?;

    let seconds = Seconds {
        record,
        migrate,
        noop,
        check,
        psql_loop: whole_loop,
        schema_record,
        schema_migrate,
        ddl_floor: floor,
        schema_loop,
    };
    seconds.report(&mut report, n_schema, n_database);
    Ok(report)
}

/// Provisions `tenant-00000`, … (4 at a time): the first `n_database` in database mode, the
/// next `n_schema` in schema mode.
fn provision_fleet(f: &ChatFleet, n_schema: usize, n_database: usize) -> anyhow::Result<()> {
    let control = &f.control;
    let started = Instant::now();
    f.rt.block_on(async {
        let gate = Arc::new(tokio::sync::Semaphore::new(4));
        let mut set = tokio::task::JoinSet::new();
        for i in 0..(n_schema + n_database) {
            let mode = if i < n_database {
                Mode::Database
            } else {
                Mode::Schema
            };
            let (c, gate) = (control.clone(), gate.clone());
            set.spawn(async move {
                let _p = gate.acquire_owned().await?;
                let opts = CreateOptions {
                    mode: Some(mode),
                    server: None,
                };
                c.provision(&format!("tenant-{i:05}"), &opts, Duration::from_secs(600))
                    .await?;
                anyhow::Ok(())
            });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        anyhow::Ok(())
    })?;
    eprintln!(
        "fleet: {n_schema} schema + {n_database} database tenants provisioned in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The CPU time (user + system) this process has used, in seconds.
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The migration added to the target, and what rolls it out, as the CLI does.
struct Rollout<'a> {
    f: &'a ChatFleet,
    dir: MigrationDir,
    opts: FleetOptions,
    quiet: ProgressFn,
    /// Tenants of the fleet.
    tenants: usize,
}

impl<'a> Rollout<'a> {
    /// Adds the migration to the target's directory and loads it.
    fn prepare(f: &'a ChatFleet, tenants: usize) -> anyhow::Result<Self> {
        Self::add(f, "20260201000000_priority.sql", MIGRATION, tenants)
    }

    /// Adds the migration `file` to the target's directory and loads it; `tenants` must migrate.
    fn add(f: &'a ChatFleet, file: &str, sql: &str, tenants: usize) -> anyhow::Result<Self> {
        let dir_path = &f.migrations;
        std::fs::write(dir_path.join(file), sql)?;
        sum::write(&MigrationDir::load(dir_path)?)?;
        let dir = MigrationDir::load(dir_path)?;
        Ok(Self {
            f,
            dir,
            opts: FleetOptions::default(),
            quiet: Arc::new(|_| {}),
            tenants,
        })
    }

    /// Recording the target replays it in a sandboxed shadow database first (once per target,
    /// whatever the number of tenants): timed on its own. Returns seconds.
    fn record_target(&self) -> anyhow::Result<f64> {
        let t = Instant::now();
        self.f
            .rt
            .block_on(self.f.control.record_target(&self.dir))?;
        Ok(t.elapsed().as_secs_f64())
    }

    /// `migrate --all`, which must migrate every tenant. Returns seconds; prints the client CPU
    /// it used and each mode's mean time per tenant.
    fn migrate_all(&self) -> anyhow::Result<f64> {
        let cpu0 = process_cpu_seconds();
        let t = Instant::now();
        let r = self.f.rt.block_on(self.f.control.migrate_all(
            Some(&self.dir),
            &self.opts,
            self.quiet.clone(),
        ))?;
        let fleet_s = t.elapsed().as_secs_f64();
        eprintln!(
            "fleet: migrate --all used {:.2}s of client CPU in {fleet_s:.2}s",
            process_cpu_seconds() - cpu0
        );
        self.print_mode_means(&r);
        anyhow::ensure!(
            r.failed == 0 && r.migrated == self.tenants,
            "migrate --all: {} migrated, {} failed",
            r.migrated,
            r.failed
        );
        Ok(fleet_s)
    }

    /// Each mode's mean migration time per tenant, on stderr.
    fn print_mode_means(&self, r: &FleetMigration) {
        for mode in [Mode::Schema, Mode::Database] {
            let ms: Vec<f64> = r
                .tenants
                .iter()
                .filter(|t| t.mode == mode)
                .map(|t| t.duration_ms)
                .collect();
            eprintln!(
                "fleet: {mode} tenants: mean {:.2} ms each (concurrency {})",
                ms.iter().sum::<f64>() / ms.len().max(1) as f64,
                self.opts.concurrency
            );
        }
    }

    /// `migrate --all` again, which must find every tenant up to date. Returns seconds.
    fn noop(&self) -> anyhow::Result<f64> {
        let t = Instant::now();
        let r = self.f.rt.block_on(self.f.control.migrate_all(
            Some(&self.dir),
            &self.opts,
            self.quiet.clone(),
        ))?;
        let noop_s = t.elapsed().as_secs_f64();
        anyhow::ensure!(r.up_to_date == self.tenants, "no-op run migrated something");
        Ok(noop_s)
    }

    /// `check --all` (concurrency 8), which must find every tenant clean. Returns seconds.
    fn check_all(&self) -> anyhow::Result<f64> {
        let t = Instant::now();
        let checked = self
            .f
            .rt
            .block_on(self.f.control.check_all(false, 8, self.quiet.clone()))?;
        let check_s = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            checked.tenants.len() == self.tenants
                && checked
                    .tenants
                    .iter()
                    .all(|t| t.drift.as_ref().is_some_and(|d| d.is_clean())),
            "check --all found errors or drift"
        );
        Ok(check_s)
    }
}

/// The DDL floor of schema tenants: `sql` applied by one psql session (one connection, as the
/// admin) to every tenant schema in turn, `SET search_path` before each. Returns seconds.
fn ddl_floor(f: &ChatFleet, work: &Path, schema: &[Tenant], sql: &str) -> anyhow::Result<f64> {
    let psql = pgfleet_testkit::binaries().tool("psql");
    let mut script = String::new();
    for t in schema {
        writeln!(
            script,
            "SET search_path TO {}, public;\n{sql}",
            pgfleet::schema::quote::ident(&t.schema)
        )?;
    }
    let file = work.join("floor.sql");
    std::fs::write(&file, script)?;
    let database = schema.first().map_or("postgres", |t| t.database.as_str());
    anyhow::ensure!(
        schema.iter().all(|t| t.database == database),
        "the floor runs in one session: every schema tenant must be in one database"
    );
    let t = Instant::now();
    let out = std::process::Command::new(&psql)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&file)
        .arg(f.cluster.url_for(database))
        .output()
        .context("running psql for the DDL floor")?;
    let floor_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "the DDL floor failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(floor_s)
}

/// The baseline: the equivalent migration `sql` applied to `tenants` by a bash script of one
/// `psql -f` per tenant, run in sequence. Returns seconds.
fn psql_loop(f: &ChatFleet, work: &Path, tenants: &[Tenant], sql: &str) -> anyhow::Result<f64> {
    let psql = pgfleet_testkit::binaries().tool("psql");
    let loop_file = work.join("loop.sql");
    std::fs::write(&loop_file, sql)?;
    let script = loop_script(f, &psql, &loop_file, tenants)?;
    let script_path = work.join("loop.sh");
    std::fs::write(&script_path, script)?;
    let t = Instant::now();
    let out = std::process::Command::new("bash")
        .arg(&script_path)
        .output()
        .context("running the psql loop")?;
    let loop_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "the psql loop failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(loop_s)
}

/// The loop's script: `set -e`, then one psql call per tenant (schema tenants through their
/// `search_path`).
fn loop_script(
    f: &ChatFleet,
    psql: &Path,
    loop_file: &Path,
    tenants: &[Tenant],
) -> anyhow::Result<String> {
    let mut script = String::from("set -e\n");
    for t in tenants {
        let url = f.cluster.url_for(&t.database);
        let options = if t.mode == Mode::Schema {
            format!("PGOPTIONS='-c search_path={},public' ", t.schema)
        } else {
            String::new()
        };
        writeln!(
            script,
            "{options}'{}' -X -q -v ON_ERROR_STOP=1 -f '{}' '{url}'",
            psql.display(),
            loop_file.display()
        )?;
    }
    Ok(script)
}

/// The wall times of the run, in seconds.
struct Seconds {
    /// Recording the target.
    record: f64,
    /// `migrate --all`.
    migrate: f64,
    /// The no-op `migrate --all`.
    noop: f64,
    /// `check --all`.
    check: f64,
    /// The psql loop.
    psql_loop: f64,
    /// Recording the second target (schema tenants only).
    schema_record: f64,
    /// `migrate --all` of the second migration, schema tenants only.
    schema_migrate: f64,
    /// The same change by one psql session over every tenant schema.
    ddl_floor: f64,
    /// The same change by one psql process per tenant schema.
    schema_loop: f64,
}

impl Seconds {
    /// The rows and ratios of the report.
    fn report(&self, report: &mut Report, n_schema: usize, n_database: usize) {
        let n = (n_schema + n_database) as f64;
        let case = format!("{n_schema} schema + {n_database} database tenants");
        report.push(
            "record the target (validated in a sandboxed shadow database)",
            "wall time",
            self.record,
            "s",
        );
        report.push(
            &format!("migrate --all, {case}"),
            "wall time",
            self.migrate,
            "s",
        );
        report.push(
            &format!("migrate --all, {case}"),
            "throughput",
            n / self.migrate,
            "tenants/s",
        );
        report.push(
            &format!("sequential psql -f loop, {case}"),
            "wall time",
            self.psql_loop,
            "s",
        );
        report.push(
            &format!("no-op migrate --all, {case}"),
            "wall time",
            self.noop,
            "s",
        );
        report.push(
            &format!("check --all (concurrency 8), {case}"),
            "wall time",
            self.check,
            "s",
        );
        report.ratio("speedup_vs_psql_loop", self.psql_loop / self.migrate);
        report.ratio(
            "speedup_vs_psql_loop_with_recording",
            self.psql_loop / (self.migrate + self.record),
        );
        report.ratio("noop_seconds", self.noop);
        let schema_case = format!("{n_schema} schema tenants");
        for (name, seconds) in [
            (
                format!("migrate --all, {schema_case} (a second migration)"),
                self.schema_migrate,
            ),
            (
                format!("DDL floor: one psql session, SET search_path per schema, {schema_case}"),
                self.ddl_floor,
            ),
            (
                format!("sequential psql -f loop, {schema_case}"),
                self.schema_loop,
            ),
        ] {
            report.push(&name, "wall time", seconds, "s");
        }
        report.ratio("rollout_vs_ddl_floor", self.schema_migrate / self.ddl_floor);
        report.ratio(
            "rollout_with_recording_vs_ddl_floor",
            (self.schema_migrate + self.schema_record) / self.ddl_floor,
        );
        report.ratio(
            "schema_rollout_speedup_vs_psql_loop",
            self.schema_loop / self.schema_migrate,
        );
    }
}

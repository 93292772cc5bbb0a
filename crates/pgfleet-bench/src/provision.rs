//! `provision`: tenants provisioned to `ready` (placed, role, database or schema, migrated, granted,
//! verified) on the embedded server, one after another, next to the physical floor measured in the
//! same run: `CREATE DATABASE` (resp. `CREATE SCHEMA`) plus the target DDL by one `psql` call.
//! Database mode runs twice, interleaved: from a per-server template at the target and from
//! `template0` followed by the migrations, to justify the template; then from spare databases (the
//! default of long-running processes), next to a bare `CREATE DATABASE` of the same run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use pgfleet::control::config::Config;
use pgfleet::control::provision::CreateOptions;
use pgfleet::control::secrets::MasterKey;
use pgfleet::control::tenant::Mode;
use pgfleet::control::{Control, catalog};
use pgfleet::migrate::{MigrationDir, sum};
use pgfleet::pg::connect;

use crate::Report;
// The target: the chat example schema (tables, enum, indexes, pgvector HNSW).
use crate::chat_fleet::TARGET;

fn percentile_ms(samples: &[Duration], p: f64) -> f64 {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    crate::report::percentile_of(&mut ms, p)
}

/// One way of provisioning, with a catalog (and control plane) of its own.
struct Case {
    /// Its name in the report, after `provision to ready: `.
    label: &'static str,
    /// The tenants' mode.
    mode: Mode,
    /// Database mode: clone a per-server template at the target instead of `template0`.
    use_templates: bool,
    /// Spare schemas kept per server.
    spare_schemas: usize,
    /// Spare databases kept per server.
    spare_databases: usize,
}

/// The cases, in the order of the report. Indexes 0 and 1 run interleaved, then 2, 3 and 4.
const CASES: [Case; 5] = [
    Case {
        label: "database mode, from the per-server template (no spares, back to back)",
        mode: Mode::Database,
        use_templates: true,
        spare_schemas: 0,
        spare_databases: 0,
    },
    Case {
        label: "database mode, from template0 + migrations",
        mode: Mode::Database,
        use_templates: false,
        spare_schemas: 0,
        spare_databases: 0,
    },
    // The on-demand case builds every schema; the spares case keeps 4 per server.
    Case {
        label: "schema mode, built on demand (no spares, back to back)",
        mode: Mode::Schema,
        use_templates: false,
        spare_schemas: 0,
        spare_databases: 0,
    },
    Case {
        label: "schema mode, from spare schemas (default; one tenant every 200 ms)",
        mode: Mode::Schema,
        use_templates: false,
        spare_schemas: 4,
        spare_databases: 0,
    },
    Case {
        label: "database mode, from spare databases (default; one tenant every 500 ms)",
        mode: Mode::Database,
        use_templates: true,
        spare_schemas: 0,
        spare_databases: 2,
    },
];

/// The spare schemas case's index in [`CASES`].
const SPARES: usize = 3;

/// The spare databases case's index in [`CASES`].
const DB_SPARES: usize = 4;

/// How often a tenant arrives in the spare databases case.
const DB_PACE: Duration = Duration::from_millis(500);

/// Runs the benchmark.
///
/// # Errors
/// When a server cannot be started or provisioning fails.
pub fn run(quick: bool) -> anyhow::Result<Report> {
    let n = if quick { 20 } else { 200 };
    let mut report = Report::new("provision", quick);
    let bench = Bench::set_up()?;

    let mut cases = Cases::start(&bench)?;
    // Database mode with and without templates runs interleaved (tenant i on one, then on the
    // other), so neither pays alone for the cluster warming up; schema mode runs after.
    cases.database_interleaved(n)?;
    cases.schema_on_demand(n)?;
    cases.schema_from_spares(n)?;
    // Paced at 500 ms: a quarter of the tenants (the time of the other cases).
    let n_db_spares = (n / 4).max(10);
    cases.database_from_spares(n_db_spares)?;
    let from_spare = [
        cases.claimed_spares(SPARES)?,
        cases.claimed_spares(DB_SPARES)?,
    ];

    // The floor, in the same run.
    let floor = bench.floor(n)?;

    write_report(&mut report, &cases.timings, from_spare, &floor, n);
    Ok(report)
}

/// What every phase shares: the server, the target on disk, psql and a runtime.
struct Bench {
    /// A current-thread runtime (declared first: dropped before the cluster).
    rt: tokio::runtime::Runtime,
    /// The migrations directory: the target as one migration.
    dir_path: PathBuf,
    /// The target's migration file, which psql runs for the floor.
    target_file: PathBuf,
    /// The psql binary.
    psql: PathBuf,
    /// The embedded server.
    cluster: pgfleet_testkit::TestCluster,
}

impl Bench {
    /// Starts the server and writes the target as a migrations directory.
    fn set_up() -> anyhow::Result<Self> {
        let cluster = pgfleet_testkit::TestCluster::start();
        let work = cluster.root().join("bench-provision");
        let dir_path = work.join("migrations");
        std::fs::create_dir_all(&dir_path)?;
        std::fs::write(dir_path.join("20260101000000_chat.sql"), TARGET)?;
        sum::write(&MigrationDir::load(&dir_path)?)?;
        let target_file = dir_path.join("20260101000000_chat.sql");
        let psql = pgfleet_testkit::binaries().tool("psql");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self {
            rt,
            dir_path,
            target_file,
            psql,
            cluster,
        })
    }

    /// The floor for `n` tenants: `CREATE DATABASE` + psql, then `CREATE SCHEMA` + psql in one
    /// shared database (with pgvector), for each tenant in turn.
    fn floor(&self, n: usize) -> anyhow::Result<Floor> {
        let rt = &self.rt;
        let admin = rt.block_on(async {
            connect::connect(&connect::parse_url(&self.cluster.url())?).await
        })?;
        let mut floor = Floor {
            database: Vec::new(),
            create: Vec::new(),
            schema: Vec::new(),
        };
        rt.block_on(admin.batch_execute("CREATE DATABASE floor_shared"))?;
        rt.block_on(async {
            let c = connect::connect(&connect::parse_url(&self.cluster.url_for("floor_shared"))?)
                .await?;
            c.batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
                .await?;
            anyhow::Ok(())
        })?;
        for i in 0..n {
            let (create, whole) = self.floor_database(&admin, i)?;
            floor.create.push(create);
            floor.database.push(whole);
            floor.schema.push(self.floor_schema(i)?);
        }
        Ok(floor)
    }

    /// `CREATE DATABASE floor_db_<i>` and the target by one psql call, timed: the `CREATE
    /// DATABASE` alone, and both.
    fn floor_database(
        &self,
        admin: &tokio_postgres::Client,
        i: usize,
    ) -> anyhow::Result<(Duration, Duration)> {
        let db = format!("floor_db_{i}");
        let t = Instant::now();
        self.rt
            .block_on(admin.batch_execute(&format!("CREATE DATABASE {db}")))?;
        let create = t.elapsed();
        let out = std::process::Command::new(&self.psql)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(&self.target_file)
            .arg(self.cluster.url_for(&db))
            .output()
            .context("running psql")?;
        let elapsed = t.elapsed();
        anyhow::ensure!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((create, elapsed))
    }

    /// `CREATE SCHEMA floor_s<i>` and the target in it, by one psql call, timed.
    fn floor_schema(&self, i: usize) -> anyhow::Result<Duration> {
        let schema = format!("floor_s{i}");
        let t = Instant::now();
        let out = std::process::Command::new(&self.psql)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!("CREATE SCHEMA {schema}"))
            .args(["-f"])
            .arg(&self.target_file)
            .arg(self.cluster.url_for("floor_shared"))
            .env("PGOPTIONS", format!("-c search_path={schema},public"))
            .output()
            .context("running psql")?;
        let elapsed = t.elapsed();
        anyhow::ensure!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(elapsed)
    }
}

/// The provisioning times of one case.
#[derive(Debug, Clone, Default)]
struct Timings {
    /// Each tenant's, in order.
    each: Vec<Duration>,
    /// Their sum.
    total: Duration,
}

/// The floor's times, one per tenant.
struct Floor {
    /// `CREATE DATABASE` + psql.
    database: Vec<Duration>,
    /// `CREATE DATABASE` alone.
    create: Vec<Duration>,
    /// `CREATE SCHEMA` + psql.
    schema: Vec<Duration>,
}

/// The cases' control planes and what they measured, both indexed as [`CASES`].
struct Cases<'a> {
    bench: &'a Bench,
    controls: Vec<Control>,
    timings: Vec<Timings>,
}

impl<'a> Cases<'a> {
    /// A catalog and a control plane per case, each warmed up by one tenant.
    fn start(bench: &'a Bench) -> anyhow::Result<Self> {
        let key = MasterKey::generate()?;
        let mut controls = Vec::new();
        for (i, case) in CASES.iter().enumerate() {
            controls.push(Self::start_control(bench, i, case, &key)?);
        }
        Ok(Self {
            bench,
            controls,
            timings: vec![Timings::default(); CASES.len()],
        })
    }

    /// Case `i`'s catalog `bench_catalog_<i>`, its control plane with the server `local`, and its
    /// first tenant, which builds the target model (and the template).
    fn start_control(
        bench: &Bench,
        i: usize,
        case: &Case,
        key: &MasterKey,
    ) -> anyhow::Result<Control> {
        let catalog_url = bench.cluster.url_for(&format!("bench_catalog_{i}"));
        bench.rt.block_on(async {
            catalog::init(
                &connect::parse_url(&catalog_url)?,
                Some(&MigrationDir::load(&bench.dir_path)?),
            )
            .await?;
            let mut config = Config::new(&catalog_url, key.clone());
            config.use_templates = case.use_templates;
            config.spare_schemas = case.spare_schemas;
            config.spare_databases = case.spare_databases;
            let control = Control::connect(config).await?;
            control
                .add_server("local", &bench.cluster.url(), 100_000, 1)
                .await?;
            // Warm-up: the first tenant builds the target model (and the template).
            let opts = CreateOptions {
                mode: Some(case.mode),
                server: None,
            };
            control
                .provision("warmup", &opts, Duration::from_secs(300))
                .await?;
            anyhow::Ok(control)
        })
    }

    /// Provisions `tenant-<i>` by case `c`, timed and recorded.
    fn provision(&mut self, c: usize, i: usize) -> anyhow::Result<Duration> {
        let opts = CreateOptions {
            mode: Some(CASES[c].mode),
            server: None,
        };
        let t = Instant::now();
        self.bench.rt.block_on(self.controls[c].provision(
            &format!("tenant-{i}"),
            &opts,
            Duration::from_secs(300),
        ))?;
        let d = t.elapsed();
        self.timings[c].each.push(d);
        self.timings[c].total += d;
        Ok(d)
    }

    /// Cases 0 and 1: `n` tenants each, tenant `i` on one, then on the other.
    fn database_interleaved(&mut self, n: usize) -> anyhow::Result<()> {
        for i in 0..n {
            for c in 0..2 {
                self.provision(c, i)?;
            }
        }
        Ok(())
    }

    /// Case 2: `n` tenants back to back, every schema built on demand.
    fn schema_on_demand(&mut self, n: usize) -> anyhow::Result<()> {
        for i in 0..n {
            self.provision(2, i)?;
        }
        Ok(())
    }

    /// Case 3. Spares: the pool starts full (steady state of a long-running process), tenants
    /// arrive every 200 ms and the pool refills in the background between them.
    fn schema_from_spares(&mut self, n: usize) -> anyhow::Result<()> {
        let rt = &self.bench.rt;
        rt.block_on(self.controls[SPARES].refill_spare_schemas("local"))?;
        self.controls[SPARES].keep_spares(true);
        let pace = Duration::from_millis(200);
        for i in 0..n {
            let d = self.provision(SPARES, i)?;
            rt.block_on(async { tokio::time::sleep(pace.saturating_sub(d)).await });
        }
        Ok(())
    }

    /// Case 4. Spare databases: the pool starts full, tenants arrive every [`DB_PACE`] and the
    /// pool refills in the background between them.
    fn database_from_spares(&mut self, n: usize) -> anyhow::Result<()> {
        let rt = &self.bench.rt;
        rt.block_on(self.controls[DB_SPARES].refill_spare_databases("local"))?;
        self.controls[DB_SPARES].keep_spares(true);
        for i in 0..n {
            let d = self.provision(DB_SPARES, i)?;
            rt.block_on(async { tokio::time::sleep(DB_PACE.saturating_sub(d)).await });
        }
        Ok(())
    }

    /// How many tenants of case `c`'s catalog claimed a spare.
    fn claimed_spares(&self, c: usize) -> anyhow::Result<i64> {
        Ok(self.bench.rt.block_on(self.controls[c].catalog().query_one(
            "SELECT count(*) FROM pgfleet.events WHERE kind = 'tenant.ready' AND (detail->>'from_spare')::boolean",
            &[],
        ))?.get(0))
    }
}

/// Each case's latencies and throughput (the spares case: the spares it claimed; its rate is
/// the pace), the floor's latencies, and the ratios.
fn write_report(
    report: &mut Report,
    timings: &[Timings],
    from_spare: [i64; 2],
    floor: &Floor,
    n: usize,
) {
    for (i, (case, t)) in CASES.iter().zip(timings).enumerate() {
        let name = format!("provision to ready: {}", case.label);
        report.durations(&name, &t.each);
        if i == SPARES || i == DB_SPARES {
            let claimed = from_spare[usize::from(i == DB_SPARES)];
            report.push(&name, "claimed a spare", claimed as f64, "count");
            continue; // paced: its rate is the pace
        }
        report.push(
            &name,
            "throughput",
            n as f64 / t.total.as_secs_f64(),
            "tenants/s",
        );
    }
    report.durations("floor: CREATE DATABASE + psql -f target", &floor.database);
    report.durations(
        "floor: CREATE DATABASE alone (from template0)",
        &floor.create,
    );
    report.durations("floor: CREATE SCHEMA + psql -f target", &floor.schema);
    let db_p50 = percentile_ms(&timings[0].each, 50.0);
    let migrate_p50 = percentile_ms(&timings[1].each, 50.0);
    let on_demand_p50 = percentile_ms(&timings[2].each, 50.0);
    let schema_p50 = percentile_ms(&timings[SPARES].each, 50.0);
    report.ratio(
        "database_p50_vs_floor",
        db_p50 / percentile_ms(&floor.database, 50.0),
    );
    report.ratio("database_template_vs_migrate_p50", db_p50 / migrate_p50);
    report.ratio("schema_p50_ms", schema_p50);
    report.ratio(
        "schema_p50_vs_floor",
        schema_p50 / percentile_ms(&floor.schema, 50.0),
    );
    report.ratio("schema_on_demand_p50_ms", on_demand_p50);
    let spare_p50 = percentile_ms(&timings[DB_SPARES].each, 50.0);
    report.ratio("database_spare_p50_ms", spare_p50);
    report.ratio(
        "database_spare_p50_vs_create_database",
        spare_p50 / percentile_ms(&floor.create, 50.0),
    );
}

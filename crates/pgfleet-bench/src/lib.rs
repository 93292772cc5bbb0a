//! pgfleet's benchmark runner.
//!
//! Every benchmark starts its own PostgreSQL servers (through `pgfleet-testkit`), measures pgfleet
//! and a baseline in the same run, and reports ratios between them: absolute numbers change with the
//! machine, same-run ratios are what mean something. Results are printed as a Markdown table and
//! written to `target/bench/NAME.json`:
//!
//! ```json
//! {"name": "smoke", "quick": true, "machine": {"cores": 2, "memory": 25000000000},
//!  "results": [{"case": "…", "metric": "median", "value": 1.2, "unit": "ms"}],
//!  "ratios": {"start_vs_pg_ctl": 1.01}}
//! ```
//!
//! To add a benchmark: write a module with `pub fn run(quick: bool) -> anyhow::Result<Report>` and
//! add it to [`BENCHMARKS`].
#![deny(missing_docs)]

pub mod cache;
pub mod chat_fleet;
pub mod dashboard;
pub mod fleet;
pub mod http;
pub mod migrate;
pub mod provision;
pub mod proxy;
pub mod report;
pub mod router;
pub mod schema;
pub mod smoke;

use std::path::PathBuf;

pub use report::{Report, Sample};

/// One benchmark of the runner.
#[derive(Debug)]
pub struct Benchmark {
    /// Name on the command line and of the JSON file.
    pub name: &'static str,
    /// What it measures, against which baseline.
    pub about: &'static str,
    /// Entry point; the flag is `--quick`.
    pub run: fn(bool) -> anyhow::Result<Report>,
}

/// The benchmarks this runner knows.
pub const BENCHMARKS: &[Benchmark] = &[
    Benchmark {
        name: "smoke",
        about: "embedded server start vs raw pg_ctl; connect + SELECT 1 over TCP vs unix socket",
        run: smoke::run,
    },
    Benchmark {
        name: "migrate",
        about: "200 small migrations by the migrator vs the same SQL by one psql -f",
        run: migrate::run,
    },
    Benchmark {
        name: "provision",
        about: "tenants provisioned to ready in each mode vs CREATE DATABASE/SCHEMA + psql -f",
        run: provision::run,
    },
    Benchmark {
        name: "fleet",
        about: "one migration to 1,000 schema + 100 database tenants by migrate --all vs a sequential psql loop; a no-op run",
        run: fleet::run,
    },
    Benchmark {
        name: "router",
        about: "select 1 through Fleet::client vs a plain pool and a check-every-table pool; 10,000 tenants under Zipf access and a budget",
        run: router::run,
    },
    Benchmark {
        name: "http",
        about: "select 1 and a 10-row select through POST /sql (keep-alive, 32 clients) vs a plain pool and vs a connection per request",
        run: http::run,
    },
    Benchmark {
        name: "cache",
        about: "a read-heavy chat workload over 100 tenants through POST /sql and Router::query_cached, result cache on vs off; stale reads; cross-process invalidation delay",
        run: cache::run,
    },
    Benchmark {
        name: "proxy",
        about: "pgbench -S at 1, 16 and 50 clients through pgfleet --pg-listen vs PgBouncer (same server connections) vs PostgreSQL itself; 1,000 schema tenants behind one budget",
        run: proxy::run,
    },
    Benchmark {
        name: "dashboard",
        about: "the dashboard's overview and tenants pages and GET /v1/tenants with 100,000 tenants in the catalog vs the page query alone",
        run: dashboard::run,
    },
    Benchmark {
        name: "schema",
        about: "introspect a 1,000-table schema vs pg_dump --schema-only; diff + plan time",
        run: schema::run,
    },
];

/// Command line of the runner.
#[derive(Debug, clap::Parser)]
#[command(
    name = "pgfleet-bench",
    about = "Run a pgfleet benchmark against its same-run baseline"
)]
#[command(
    after_help = "Benchmarks:\n  smoke   embedded server start vs raw pg_ctl; connect + SELECT 1 over TCP vs unix socket\n  schema  introspect a 1,000-table schema vs pg_dump --schema-only; diff + plan time\n  migrate 200 small migrations by the migrator vs the same SQL by one psql -f\n  provision tenants provisioned to ready in each mode vs CREATE DATABASE/SCHEMA + psql -f\n  fleet   one migration to 1,000 schema + 100 database tenants by migrate --all vs a sequential psql loop; a no-op run\n  router  select 1 through Fleet::client vs a plain pool and a check-every-table pool; 10,000 tenants under Zipf access and a budget\n  http    select 1 and a 10-row select through POST /sql vs a plain pool and vs a connection per request\n  cache   a read-heavy chat workload over 100 tenants, result cache on vs off (POST /sql and the library); stale reads; cross-process delay\n  dashboard  overview, tenants pages and GET /v1/tenants with 100,000 catalog tenants vs the page query alone\n\nResults: a Markdown table on stdout and target/bench/NAME.json"
)]
pub struct Args {
    /// Benchmark to run (see below), or `list`.
    pub name: String,
    /// Fewer iterations: finishes in under a minute.
    #[arg(long)]
    pub quick: bool,
}

/// Runs the benchmark named in `args`, prints its table and writes its JSON.
///
/// # Errors
/// Unknown benchmark, or any failure while measuring.
pub fn run(args: &Args) -> anyhow::Result<()> {
    if args.name == "list" {
        for b in BENCHMARKS {
            println!("{:<10} {}", b.name, b.about);
        }
        return Ok(());
    }
    let Some(bench) = BENCHMARKS.iter().find(|b| b.name == args.name) else {
        let names: Vec<&str> = BENCHMARKS.iter().map(|b| b.name).collect();
        anyhow::bail!(
            "unknown benchmark {:?}; known: {}",
            args.name,
            names.join(", ")
        );
    };
    let report = (bench.run)(args.quick)?;
    print!("{}", report.markdown());
    let path = output_dir().join(format!("{}.json", report.name));
    report.write_json(&path)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// `target/bench` of the workspace (or of `CARGO_TARGET_DIR`).
pub fn output_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            manifest
                .ancestors()
                .nth(2)
                .unwrap_or(&manifest)
                .join("target")
        });
    target.join("bench")
}

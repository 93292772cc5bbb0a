//! `schema`: the schema engine on a 1,000-table schema (indexes, foreign keys, views, functions).
//! Introspection against `pg_dump --schema-only` of the same database (the baseline), and the
//! time the differ and planner take.

use std::time::Instant;

use anyhow::Context;
use pgfleet::pg::{connect, introspect};
use pgfleet::schema::{Model, diff, planner};

use crate::Report;

/// Number of tables in the generated schema.
pub const TABLES: usize = 1000;

/// The generated schema: `TABLES` tables, each with a primary key, a foreign key to the previous
/// table, a check, two indexes and a comment; plus 20 views and 20 functions.
pub fn generate(tables: usize) -> String {
    let mut sql = String::with_capacity(tables * 600);
    for i in 0..tables {
        sql.push_str(&format!(
            "CREATE TABLE t{i} (
               id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
               parent_id bigint{fk},
               name text NOT NULL DEFAULT '',
               score numeric(10,2) CHECK (score >= 0),
               tags text[],
               created_at timestamptz NOT NULL DEFAULT now()
             );
             CREATE INDEX t{i}_name_idx ON t{i} (lower(name)) WHERE name <> '';
             CREATE INDEX t{i}_tags_idx ON t{i} USING gin (tags);
             COMMENT ON TABLE t{i} IS 'table {i}';\n",
            fk = if i == 0 {
                String::new()
            } else {
                format!(" REFERENCES t{} (id) ON DELETE SET NULL", i - 1)
            }
        ));
    }
    for v in 0..20.min(tables) {
        sql.push_str(&format!(
            "CREATE VIEW v{v} AS SELECT id, name, score FROM t{v} WHERE score > 0;
             CREATE FUNCTION f{v}(x bigint) RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM t{v} WHERE id > x';\n"
        ));
    }
    sql
}

/// Runs the benchmark.
///
/// # Errors
/// When a server cannot be started or a query fails.
pub fn run(quick: bool) -> anyhow::Result<Report> {
    let runs = if quick { 3 } else { 10 };
    let mut report = Report::new("schema", quick);
    let cluster = pgfleet_testkit::TestCluster::start();
    let url = cluster.url_for("bench_schema");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let model: Model = rt.block_on(async {
        let admin = connect::connect(&connect::parse_url(&cluster.url())?).await?;
        admin.batch_execute("CREATE DATABASE bench_schema").await?;
        let client = connect::connect(&connect::parse_url(&url)?).await?;
        let t = Instant::now();
        client
            .batch_execute(&generate(TABLES))
            .await
            .context("creating the schema")?;
        eprintln!(
            "created {TABLES} tables in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        client.batch_execute("ANALYZE").await?;
        let model = introspect::introspect(&client).await?;
        anyhow::Ok(model)
    })?;
    anyhow::ensure!(
        model.tables.len() == TABLES,
        "introspected {} tables",
        model.tables.len()
    );

    let mut ours = Vec::new();
    let mut dump = Vec::new();
    let pg_dump = pgfleet_testkit::binaries().tool("pg_dump");
    for _ in 0..runs {
        let t = Instant::now();
        rt.block_on(async {
            let client = connect::connect(&connect::parse_url(&url)?).await?;
            introspect::introspect(&client).await?;
            anyhow::Ok(())
        })?;
        ours.push(t.elapsed());

        let t = Instant::now();
        let out = std::process::Command::new(&pg_dump)
            .args(["--schema-only", "--no-owner", "--file=/dev/null"])
            .arg(format!("--dbname={url}"))
            .output()
            .context("running pg_dump")?;
        dump.push(t.elapsed());
        anyhow::ensure!(
            out.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let a = report.durations("pgfleet introspect (connect + read 1,000 tables)", &ours);
    let b = report.durations("baseline pg_dump --schema-only", &dump);
    report.ratio("introspect_vs_pg_dump", a / b);

    let copy = model.clone();
    let empty = Model::default();
    let mut same = Vec::new();
    let mut full = Vec::new();
    let mut steps = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let changes = diff::diff(&model, &copy);
        let plan = planner::plan(&model, &copy, &planner::PlanOptions::default());
        same.push(t.elapsed());
        anyhow::ensure!(
            changes.is_empty() && plan.is_empty(),
            "identical models must not differ"
        );

        let t = Instant::now();
        let plan = planner::plan(&empty, &model, &planner::PlanOptions::default());
        full.push(t.elapsed());
        steps = plan.steps.len();
    }
    let same_ms = report.durations("diff + plan, identical 1,000-table models", &same);
    let full_ms = report.durations("diff + plan, empty -> 1,000 tables", &full);
    report.push("plan empty -> 1,000 tables", "steps", steps as f64, "count");
    report.ratio("diff_plan_ms", same_ms.max(full_ms));
    Ok(report)
}

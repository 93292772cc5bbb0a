//! `cargo run --release -p pgfleet-bench -- NAME [--quick]`: run one benchmark, print a Markdown
//! table and write `target/bench/NAME.json`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = pgfleet_bench::Args::parse();
    // `PGFLEET_BENCH_LOG=debug` shows pgfleet's own step timings while a benchmark runs.
    if let Ok(level) = std::env::var("PGFLEET_BENCH_LOG")
        && let Ok(level) = level.parse::<tracing_subscriber::filter::LevelFilter>()
    {
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(std::io::stderr)
            .init();
    }
    match pgfleet_bench::run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

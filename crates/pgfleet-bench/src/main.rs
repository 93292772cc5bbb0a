//! `cargo run --release -p pgfleet-bench -- NAME [--quick]`: run one benchmark, print a Markdown
//! table and write `target/bench/NAME.json`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = pgfleet_bench::Args::parse();
    match pgfleet_bench::run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

//! The `pgfleet` binary: parses flags and calls into `pgfleet_cli`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = pgfleet_cli::Cli::parse();
    pgfleet_cli::init_tracing(cli.verbose);
    match pgfleet_cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(pgfleet_cli::EXIT_ERROR)
        }
    }
}

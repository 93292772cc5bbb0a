//! The `pgfleet` binary: parses flags and calls into `pgfleet_cli`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // `pgfleet tenant list | head`: a closed stdout ends the program quietly (as SIGPIPE would),
    // instead of a panic message.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.contains("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
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

//! `nescli`: change this pod's network configuration at runtime (see `docs/nescli.md`).
//!
//! Exit codes: 0 ok, 1 the server refused the request, 2 usage error, 3 the server cannot be
//! reached or the token is not accepted.

use std::process::ExitCode;

use clap::Parser;
use nescli::args::Cli;

fn main() -> ExitCode {
    // Usage errors exit 2 here, with clap's message.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let mut stdout = std::io::stdout().lock();
    match runtime.block_on(nescli::run(cli, &mut stdout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            for line in failure.lines() {
                eprintln!("{line}");
            }
            ExitCode::from(failure.exit_code())
        }
    }
}

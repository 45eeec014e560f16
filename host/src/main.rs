use std::process::ExitCode;

use clap::Parser;
use sre_operator::cli::{Cli, Command, run};
use sre_operator::terminal::escape;

fn main() -> ExitCode {
    sre_operator::heap::tune();
    let cli = Cli::parse();
    // The compile process answers one request: no async runtime, no telemetry.
    if let Command::CompilePlugin = cli.command {
        return match sre_operator::plugin::serve_compile() {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Dropped after `run`: flushes the last spans.
        let _traces = sre_operator::telemetry::traces::install(&cli.log)?;
        run(cli).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line a person can act on: the chain of causes, outermost first.
            let causes: Vec<String> = error.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", escape(&causes.join(": ")));
            ExitCode::FAILURE
        }
    }
}

use std::process::ExitCode;

use clap::Parser;
use sre_operator::cli::{Cli, run};
use sre_operator::terminal::escape;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = async {
        // Dropped after `run`: flushes the last spans.
        let _traces = sre_operator::telemetry::traces::install(&cli.log)?;
        run(cli).await
    }
    .await;
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

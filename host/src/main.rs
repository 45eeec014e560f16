use std::process::ExitCode;

use clap::Parser;
use sre_operator::cli::{Cli, run};
use sre_operator::terminal::escape;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // rmcp logs every MCP session's start and end at info: one line per HTTP request, which
    // drowns the operator's own lines; kept at warn unless the filter names rmcp.
    let directives = if cli.log.contains("rmcp") {
        cli.log.clone()
    } else {
        format!("{},rmcp=warn", cli.log)
    };
    let filter =
        tracing_subscriber::EnvFilter::try_new(&directives).unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line a person can act on: the chain of causes, outermost first.
            let causes: Vec<String> = error.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", escape(&causes.join(": ")));
            ExitCode::FAILURE
        }
    }
}

//! `kubectl-sre`: the kubectl plugin for sre-operator's DiagnosticReports (`kubectl sre --help`).
//! The commands live in `sre_operator::kubectl_sre`; this builds the client and maps errors to
//! exit codes: 0 success, 1 error, 2 usage.

use std::process::ExitCode;

use clap::Parser;
use sre_operator::kubectl_sre::{Cli, Io, ask_terminal, client, run};
use sre_operator::terminal::escape;

#[tokio::main]
async fn main() -> ExitCode {
    // clap prints usage errors itself and exits with 2.
    let cli = Cli::parse();
    let filter = std::env::var("KUBECTL_SRE_LOG").unwrap_or_else(|_| "error".into());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = async {
        let client = client(&cli.global).await?;
        let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
        let mut confirm = ask_terminal;
        let mut io = Io {
            out: &mut out,
            err: &mut err,
            confirm: &mut confirm,
        };
        run(cli, client, &mut io).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", escape(&error.to_string()));
            ExitCode::from(error.exit_code())
        }
    }
}

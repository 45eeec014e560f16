//! `kubectl sre`: a kubectl plugin (the `kubectl-sre` binary on `PATH`) for the people who read
//! and decide DiagnosticReports. `list` and `show` read reports and the live objects their patches
//! target; `approve` and `reject` write `spec.decision`; `rollback` undoes an applied patch with
//! the operator's own checks; `plugins` asks the running operator what it loaded.
//!
//! The logic lives here, over a [`kube::Client`] and an [`Io`], so that tests drive it against a
//! mocked API server; `src/bin/kubectl-sre.rs` only builds the client from the kubeconfig.

mod plugins;
mod render;
pub(crate) mod reports;
mod rollback;

pub use render::{Table, age, yaml_diff};

use std::io::{self, BufRead, Write};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::crd::Decision;
use crate::terminal::Escaping;

/// The field manager of every write `kubectl sre` makes.
pub const FIELD_MANAGER: &str = "kubectl-sre";

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-sre",
    bin_name = "kubectl sre",
    version,
    about = "Read, approve, reject and roll back sre-operator DiagnosticReports",
    long_about = "Read, approve, reject and roll back sre-operator DiagnosticReports.\n\n\
        Install it as `kubectl-sre` on PATH and call it as `kubectl sre COMMAND`."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,

    #[command(subcommand)]
    pub command: Command,
}

/// The kubectl flags every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The namespace; the kubeconfig context's (or `default`) when omitted.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,

    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,

    /// The kubeconfig file; KUBECONFIG or ~/.kube/config when omitted.
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the reports of the namespace (or of all with -A): phase, Pod, failure class, age.
    List {
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,

        /// Print the reports as a List object instead of a table.
        #[arg(short = 'o', long, value_enum)]
        output: Option<Format>,
    },
    /// Show a report: findings, reasoning, the suggested patch as a diff of the live object,
    /// the safety verdict, the decision and the apply.
    Show {
        /// The report's name.
        name: String,

        /// Print the report object instead.
        #[arg(short = 'o', long, value_enum)]
        output: Option<Format>,
    },
    /// Approve a report's suggested patch (sets spec.decision: Approved); the operator applies it.
    Approve(DecideArgs),
    /// Reject a report (sets spec.decision: Rejected); nothing is applied.
    Reject(DecideArgs),
    /// Undo an applied patch with the rollback patch the operator recorded, after the same
    /// checks the operator makes before an apply.
    Rollback(RollbackArgs),
    /// What the running operator loaded: each plugin's world, tools, digest and limits, and
    /// the plugins it refused.
    Plugins(PluginsArgs),
}

#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The report's name.
    #[arg(required_unless_present = "incident")]
    pub name: Option<String>,

    /// Every report of this incident (`inc-...`, the INCIDENT column of `list`) in the
    /// namespace that awaits the decision, each patch shown and pinned, one question.
    #[arg(long, value_name = "NAME", conflicts_with = "name")]
    pub incident: Option<String>,

    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Approve only if the suggested patch still has this digest (the one `kubectl sre show`
    /// printed), so that what is approved is what was read.
    #[arg(long, value_name = "sha256:HEX")]
    pub digest: Option<String>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The report's name.
    pub name: String,

    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// The plugin directory whose patch-filters review the rollback (the operator's plugin
    /// ConfigMap, checked out); the built-in plugins when omitted.
    #[arg(long, value_name = "DIR")]
    pub plugins: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PluginsArgs {
    /// The namespace the operator runs in.
    #[arg(long, default_value = "sre-operator")]
    pub operator_namespace: String,

    /// Print the plugin sets as data instead of tables.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Format>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Json,
    Yaml,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line does not make sense (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The command failed (exit code 1); the message names the object and the fix.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// 2 for a usage error, 1 for any other.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            Error::Failed(_) => 1,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Failed(format!("cannot write the output: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn failed(message: impl Into<String>) -> Error {
    Error::Failed(message.into())
}

/// Where a command writes and how it asks: the terminal in the binary, buffers in tests.
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    /// Asks a yes/no question; `Ok(false)` unless the person said yes.
    pub confirm: &'a mut dyn FnMut(&str) -> io::Result<bool>,
}

/// Asks on the terminal: the question on stderr, the answer from stdin (no answer means no).
pub fn ask_terminal(question: &str) -> io::Result<bool> {
    let mut err = io::stderr().lock();
    write!(err, "{question} [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// A client for the kubeconfig and context the flags name, as kubectl picks them: `--kubeconfig`,
/// else KUBECONFIG, else ~/.kube/config, else the in-cluster config.
pub async fn client(global: &Global) -> Result<Client> {
    let options = KubeConfigOptions {
        context: global.context.clone(),
        ..Default::default()
    };
    let config = match &global.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| failed(format!("cannot read --kubeconfig {}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| failed(format!("kubeconfig {}: {e}", path.display())))?
        }
        None if global.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| failed(format!("kubeconfig: {e}")))?,
        None => Config::infer().await.map_err(|e| {
            failed(format!(
                "no cluster to talk to: {e}; set KUBECONFIG or pass --kubeconfig"
            ))
        })?,
    };
    Client::try_from(config).map_err(|e| failed(format!("cannot build a client: {e}")))
}

/// Runs one command. The namespace defaults to the client's (the kubeconfig context's).
pub async fn run(cli: Cli, client: Client, io: &mut Io<'_>) -> Result<()> {
    // Reports quote what tenants wrote (logs, events): nothing printed may drive the terminal.
    let (mut out, mut err) = (Escaping::new(&mut *io.out), Escaping::new(&mut *io.err));
    let mut io = Io {
        out: &mut out,
        err: &mut err,
        confirm: &mut *io.confirm,
    };
    dispatch(cli, client, &mut io).await
}

async fn dispatch(cli: Cli, client: Client, io: &mut Io<'_>) -> Result<()> {
    let namespace = cli
        .global
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| client.default_namespace().to_string());
    match cli.command {
        Command::List {
            all_namespaces,
            output,
        } => {
            if all_namespaces && cli.global.namespace.is_some() {
                return Err(Error::Usage(
                    "-A/--all-namespaces and -n/--namespace exclude each other".into(),
                ));
            }
            let scope = (!all_namespaces).then_some(namespace.as_str());
            reports::list(&client, scope, output, io).await
        }
        Command::Show { name, output } => {
            reports::show(&client, &namespace, &name, output, io).await
        }
        Command::Approve(args) => {
            reports::decide(&client, &namespace, &args, Decision::Approved, io).await
        }
        Command::Reject(args) => {
            reports::decide(&client, &namespace, &args, Decision::Rejected, io).await
        }
        Command::Rollback(args) => rollback::rollback(&client, &namespace, &args, io).await,
        Command::Plugins(args) => plugins::plugins(&client, &args, io).await,
    }
}

/// An API error as one sentence: what was being done, what went wrong, and what to do. `not_found`
/// words a 404 for the object at hand; `rbac` names the permission a 403 lacks.
fn api_error(
    e: kube::Error,
    doing: &str,
    rbac: &str,
    not_found: impl FnOnce(&kube::core::Status) -> String,
) -> Error {
    match e {
        kube::Error::Api(status) => match status.code {
            403 => failed(format!(
                "{doing}: forbidden: your user needs the RBAC permission `{rbac}` ({})",
                status.message
            )),
            404 => failed(not_found(&status)),
            401 => failed(format!(
                "{doing}: not logged in to the cluster ({}): check --context and --kubeconfig",
                status.message
            )),
            _ => failed(format!(
                "{doing}: the API server answered {} {}: {}",
                status.code, status.reason, status.message
            )),
        },
        other => failed(format!(
            "{doing}: cannot reach the API server ({other}): check --context and --kubeconfig"
        )),
    }
}

/// Whether a 404 means the resource type is unknown (the CRD is not installed), not the object.
fn resource_unknown(status: &kube::core::Status) -> bool {
    status
        .message
        .contains("could not find the requested resource")
        || status.details.as_ref().is_none_or(|d| d.name.is_empty())
}

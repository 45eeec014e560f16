//! The `sre-operator` command line.

mod output;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::cluster::{Cluster, DumpCluster};
use crate::crd;
use crate::plugin::{PluginSet, Runtime};
use crate::policy::{PolicySet, default_policy, load_policy_files};
use crate::triage::triage;

#[derive(Debug, Parser)]
#[command(
    name = "sre-operator",
    version,
    about = "A Kubernetes operator that diagnoses failing Pods like an on-call SRE",
    long_about = "A Kubernetes operator that diagnoses failing Pods like an on-call SRE.\n\n\
        It watches the Pods that DebugPolicy resources select; when one crash-loops, cannot be \
        scheduled, cannot pull its image, runs out of memory, lacks its configuration or fails \
        its probes, it opens a DiagnosticReport with the evidence."
)]
pub struct Cli {
    /// Log filter (tracing's EnvFilter syntax), e.g. `info` or `sre_operator=debug`.
    #[arg(long, global = true, env = "SRE_OPERATOR_LOG", default_value = "warn")]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Diagnose the failing Pods of a cluster dump (`kubectl cluster-info dump --output-directory DIR`).
    Diagnose(DiagnoseArgs),
    /// List or check the WebAssembly plugins of a plugin directory (or the built-in ones).
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Print both CustomResourceDefinitions as YAML, or write them to a folder.
    Crds {
        /// Write one file per CRD here (what `crds/` holds) instead of printing.
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Print each plugin: its world, file, digest, limits and tools, and any refusal.
    List {
        /// A folder with plugins.yaml and the components it names; the built-in plugins when omitted.
        dir: Option<PathBuf>,
    },
    /// Like `list`, and exit non-zero when any plugin is refused: run it before shipping a plugin.
    Check {
        /// A folder with plugins.yaml and the components it names.
        dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct DiagnoseArgs {
    /// The folder `kubectl cluster-info dump --all-namespaces --output-directory DIR` wrote
    /// (JSON or `-o yaml`).
    #[arg(long, value_name = "DIR")]
    pub dump: PathBuf,

    /// A file of DebugPolicy objects (YAML or JSON; repeat for several). Without one, every
    /// failing Pod in every namespace is diagnosed.
    #[arg(long = "policy", value_name = "FILE")]
    pub policies: Vec<PathBuf>,

    /// `text` for a person; `json` or `yaml` for DiagnosticReport objects `kubectl apply` takes.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
    Yaml,
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Diagnose(args) => diagnose(args).await,
        Command::Plugins(command) => plugins(command),
        Command::Crds { output_dir } => write_crds(output_dir),
    }
}

fn plugins(command: PluginsCommand) -> Result<()> {
    let runtime = Runtime::new(Runtime::default_cache_dir())?;
    let (dir, strict) = match command {
        PluginsCommand::List { dir } => (dir, false),
        PluginsCommand::Check { dir } => (Some(dir), true),
    };
    let set = match &dir {
        Some(dir) => PluginSet::from_dir(&runtime, dir).map_err(anyhow::Error::msg)?,
        None => PluginSet::builtin(&runtime),
    };
    output::plugins(&mut std::io::stdout().lock(), &set)?;
    if strict && !set.refusals().is_empty() {
        anyhow::bail!(
            "{} of {} plugins refused",
            set.refusals().len(),
            set.refusals().len() + set.plugins().len()
        );
    }
    Ok(())
}

async fn diagnose(args: DiagnoseArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let cluster = DumpCluster::load(&args.dump)?;
    let policies = if args.policies.is_empty() {
        vec![default_policy()]
    } else {
        load_policy_files(&args.policies)?
    };
    let policy_set = PolicySet::compile(&policies)?;
    let reports = triage(&cluster, &policy_set).await?;
    let pods = cluster.pods(None).await?.len();
    tracing::info!(
        pods,
        reports = reports.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "diagnosed {}",
        cluster.source()
    );
    let mut stdout = std::io::stdout().lock();
    match args.output {
        OutputFormat::Text => {
            output::text(&mut stdout, &reports, pods, &cluster.source(), &policy_set)?
        }
        OutputFormat::Json => output::json(&mut stdout, &reports)?,
        OutputFormat::Yaml => output::yaml(&mut stdout, &reports)?,
    }
    Ok(())
}

fn write_crds(output_dir: Option<PathBuf>) -> Result<()> {
    let crds = crd::crds();
    match output_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            for c in &crds {
                let path = dir.join(crd::crd_file_name(c));
                std::fs::write(&path, crd::crd_yaml(c))
                    .with_context(|| format!("cannot write {}", path.display()))?;
                println!("wrote {}", path.display());
            }
        }
        None => {
            let docs: Vec<String> = crds.iter().map(crd::crd_yaml).collect();
            print!("{}", docs.join("---\n"));
        }
    }
    Ok(())
}

//! The `sre-operator` command line.

mod output;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::cluster::{Cluster, DumpCluster};
use std::sync::Arc;

use futures::StreamExt;

use crate::agent::llm::LlmBrain;
use crate::agent::rules::RulesBrain;
use crate::agent::{Brain, Budget, Case, Investigator, investigate};
use crate::crd;
use crate::plugin::{PluginSet, Runtime};
use crate::policy::{PolicySet, default_policy, load_policy_files};
use crate::triage::{screen, triage};

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

    /// `text` for a person; `json` or `yaml` for DiagnosticReport objects as the operator stores them.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// `rules` (deterministic playbooks, no API key) or `openai` (any OpenAI-compatible endpoint).
    #[arg(long, value_enum, default_value_t = BrainChoice::Rules, env = "SRE_OPERATOR_BRAIN")]
    pub brain: BrainChoice,

    /// The model, for `--brain openai`.
    #[arg(long, env = "OPENAI_MODEL")]
    pub model: Option<String>,

    /// The OpenAI-compatible endpoint (vLLM, Ollama `http://localhost:11434/v1`, LiteLLM, ...).
    #[arg(long, env = "OPENAI_BASE_URL", default_value = crate::agent::llm::DEFAULT_BASE_URL)]
    pub base_url: String,

    /// A plugin directory (plugins.yaml and its components); the built-in plugins when omitted.
    #[arg(long, value_name = "DIR")]
    pub plugins: Option<PathBuf>,

    /// Only detect and print the failures; do not investigate.
    #[arg(long)]
    pub detect_only: bool,

    /// Observe-Think-Act steps per investigation (a policy's brain.maxSteps overrides it).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub max_steps: u32,

    /// Tokens per investigation (LLM brain).
    #[arg(long, default_value_t = 60_000)]
    pub max_tokens: u64,

    /// Wall-clock budget per investigation (`90s`, `2m`).
    #[arg(long, default_value = "2m")]
    pub timeout: String,

    /// Investigations run at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BrainChoice {
    Rules,
    Openai,
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
    let budget = Budget {
        max_steps: args.max_steps,
        max_tokens: args.max_tokens,
        deadline: crate::crd::parse_duration("--timeout", &args.timeout)
            .map_err(anyhow::Error::msg)?,
        ..Budget::default()
    };
    let brain: Arc<dyn Brain> = match args.brain {
        BrainChoice::Rules => Arc::new(RulesBrain),
        BrainChoice::Openai => {
            let model = args
                .model
                .clone()
                .context("--brain openai needs --model (or OPENAI_MODEL)")?;
            let key = std::env::var("OPENAI_API_KEY").ok();
            Arc::new(LlmBrain::new(Some(args.base_url.clone()), key, model))
        }
    };
    let cluster = Arc::new(DumpCluster::load(&args.dump)?);
    let policies = if args.policies.is_empty() {
        vec![default_policy()]
    } else {
        load_policy_files(&args.policies)?
    };
    let policy_set = PolicySet::compile(&policies)?;
    let mut reports = triage(cluster.as_ref(), &policy_set).await?;
    let pods = cluster.pods(None).await?;
    let detected = started.elapsed();
    let mut skipped = Vec::new();
    if !args.detect_only {
        let runtime = Runtime::new(Runtime::default_cache_dir())?;
        let plugins = Arc::new(match &args.plugins {
            Some(dir) => PluginSet::from_dir(&runtime, dir).map_err(anyhow::Error::msg)?,
            None => PluginSet::builtin(&runtime),
        });
        for refusal in plugins.refusals() {
            eprintln!(
                "warning: plugin {} refused: {}",
                refusal.plugin, refusal.reason
            );
        }
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let mut kept = Vec::new();
        for report in reports {
            let pod = pods
                .iter()
                .find(|p| p.metadata.uid.as_deref() == Some(report.spec.pod.uid.as_str()))
                .cloned();
            let Some(pod) = pod else { continue };
            match screen(&plugins, cluster.as_ref(), &report, &pod, &now).await {
                Some(reason) => skipped.push((report, reason)),
                None => kept.push(Case { report, pod }),
            }
        }
        let investigations = kept.into_iter().map(|case| {
            let policy = policies
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(case.report.spec.policy.as_str()));
            let investigator = Investigator {
                brain: brain.clone(),
                plugins: plugins.clone(),
                cluster: cluster.clone(),
                budget: budget
                    .clone()
                    .with_policy(policy.and_then(|p| p.spec.brain.as_ref())),
            };
            async move {
                let status = investigate(&investigator, &case).await;
                let mut report = case.report;
                report.status = Some(status);
                report
            }
        });
        reports = futures::stream::iter(investigations)
            .buffered(usize::from(args.concurrency))
            .collect()
            .await;
    }
    tracing::info!(
        pods = pods.len(),
        reports = reports.len(),
        detect_ms = detected.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "diagnosed {}",
        cluster.source()
    );
    let mut stdout = std::io::stdout().lock();
    match args.output {
        OutputFormat::Text => output::text(
            &mut stdout,
            &reports,
            &skipped,
            pods.len(),
            &cluster.source(),
            &policy_set,
        )?,
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

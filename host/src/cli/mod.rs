//! The `sre-operator` command line.

pub mod output;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use crate::cluster::{Cluster, DumpCluster};
use std::sync::Arc;

use crate::agent::llm::LlmBrain;
use crate::agent::rules::RulesBrain;
use crate::agent::{Brain, Budget};
use crate::crd;
use crate::plugin::{PluginSet, Runtime};
use crate::policy::{PolicySet, default_policy, load_policy_files};
use crate::terminal::{Escaping, escape};

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
    /// Score the diagnosis of every scenario under DIR (a dump and its expected.yaml each):
    /// class, root cause, patch and phase per scenario; non-zero exit when a must-pass one fails.
    Eval(EvalArgs),
    /// List or check the WebAssembly plugins of a plugin directory (or the built-in ones).
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Run the operator against a cluster (in-cluster config, or KUBECONFIG / ~/.kube/config).
    Run(RunArgs),
    /// Serve the tools and the reports to an MCP client (Claude Desktop, an IDE, an agent) over
    /// stdin/stdout: against a cluster dump (`--dump DIR`), or the kubeconfig's cluster, as its
    /// user.
    Mcp(McpArgs),
    /// Print both CustomResourceDefinitions as YAML, or write them to a folder.
    Crds {
        /// Write one file per CRD here (what `crds/` holds) instead of printing.
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
    },
    /// The operator's own compile process (plugin/compile_process.rs): not for people.
    #[command(name = crate::plugin::COMPILE_COMMAND, hide = true)]
    CompilePlugin,
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
    /// Write the built-in plugins and their plugins.yaml into DIR: what the plugin ConfigMap
    /// carries (`plugins export deploy/plugins` before `kubectl apply -k deploy/`).
    Export {
        /// The folder to write into (created if missing).
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

    #[command(flatten)]
    pub engine: EngineArgs,

    /// Only detect and print the failures; do not investigate.
    #[arg(long)]
    pub detect_only: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BrainChoice {
    Rules,
    Openai,
}

/// Which brain investigates, and its budget: the same flags for diagnose, eval and run.
#[derive(Debug, clap::Args)]
pub struct BrainArgs {
    /// `rules` (deterministic playbooks, no API key) or `openai` (any OpenAI-compatible endpoint;
    /// the key comes from OPENAI_API_KEY).
    #[arg(long = "brain", value_enum, default_value_t = BrainChoice::Rules, env = "SRE_OPERATOR_BRAIN")]
    pub kind: BrainChoice,

    /// The model, for `--brain openai`.
    #[arg(long, env = "OPENAI_MODEL")]
    pub model: Option<String>,

    /// The OpenAI-compatible endpoint (vLLM, Ollama `http://localhost:11434/v1`, LiteLLM, ...).
    #[arg(long, env = "OPENAI_BASE_URL", default_value = crate::agent::llm::DEFAULT_BASE_URL)]
    pub base_url: String,

    /// Observe-Think-Act steps per investigation (a policy's brain.maxSteps overrides it).
    #[arg(long, env = "SRE_OPERATOR_MAX_STEPS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub max_steps: u32,

    /// Tokens per investigation (LLM brain).
    #[arg(long, env = "SRE_OPERATOR_MAX_TOKENS", default_value_t = 60_000)]
    pub max_tokens: u64,

    /// Wall-clock budget per investigation (`90s`, `2m`).
    #[arg(long, env = "SRE_OPERATOR_TIMEOUT", default_value = "2m")]
    pub timeout: String,
}

impl BrainArgs {
    /// The brain `--brain` names.
    pub fn brain(&self) -> Result<Arc<dyn Brain>> {
        Ok(match self.kind {
            BrainChoice::Rules => Arc::new(RulesBrain),
            BrainChoice::Openai => {
                let model = self
                    .model
                    .clone()
                    .context("--brain openai needs --model (or OPENAI_MODEL)")?;
                let key = std::env::var(crate::agent::llm::API_KEY_ENV).ok();
                Arc::new(LlmBrain::new(Some(self.base_url.clone()), key, model))
            }
        })
    }

    pub fn budget(&self) -> Result<Budget> {
        Ok(Budget {
            max_steps: self.max_steps,
            max_tokens: self.max_tokens,
            deadline: crate::crd::parse_duration("--timeout", &self.timeout)
                .map_err(anyhow::Error::msg)?,
            ..Budget::default()
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
    Yaml,
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// A folder of scenarios (`NAME/dump/` and `NAME/expected.yaml` each), or one scenario.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    /// `table` for a person, `json` for machines.
    #[arg(long, short = 'o', value_enum, default_value_t = EvalOutput::Table)]
    pub output: EvalOutput,

    /// Only the scenarios whose name contains this, or that carry this tag (repeatable).
    #[arg(long, value_name = "NAME|TAG")]
    pub only: Vec<String>,

    /// Scenarios run one after the other; `--concurrency` is within one.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// How the commands that investigate here (diagnose, eval, mcp) run it: the brain, the plugins
/// and how many investigations at once.
#[derive(Debug, clap::Args)]
pub struct EngineArgs {
    #[command(flatten)]
    pub brain: BrainArgs,

    /// A plugin directory (plugins.yaml and its components); the built-in plugins when omitted.
    #[arg(long, value_name = "DIR")]
    pub plugins: Option<PathBuf>,

    /// Investigations run at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
}

impl EngineArgs {
    fn engine(&self) -> Result<crate::pipeline::Engine> {
        Ok(crate::pipeline::Engine {
            brain: self.brain.brain()?,
            plugins: load_plugins(self.plugins.as_ref())?,
            budget: self.brain.budget()?,
            concurrency: usize::from(self.concurrency),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EvalOutput {
    Table,
    Json,
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Diagnose(args) => diagnose(args).await,
        Command::Eval(args) => eval(args).await,
        Command::Plugins(command) => plugins(command),
        Command::Run(args) => run_operator(args).await,
        Command::Crds { output_dir } => write_crds(output_dir),
        Command::Mcp(args) => mcp(args).await,
        Command::CompilePlugin => crate::plugin::serve_compile()
            .context("cannot answer the operator that asked for a compile"),
    }
}

#[derive(Debug, clap::Args)]
pub struct McpArgs {
    /// A cluster dump (as `diagnose --dump` reads it); without it, the kubeconfig's cluster.
    #[arg(long, value_name = "DIR")]
    pub dump: Option<PathBuf>,

    /// The kubeconfig context (live cluster only).
    #[arg(long)]
    pub context: Option<String>,

    /// The kubeconfig file; KUBECONFIG or ~/.kube/config when omitted (live cluster only).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `sre-operator mcp`: stdout is the protocol's, so every warning goes to stderr.
async fn mcp(args: McpArgs) -> Result<()> {
    let engine = args.engine.engine()?;
    let (cluster, reports): (Arc<dyn Cluster>, _) = match &args.dump {
        Some(dir) => (
            Arc::new(DumpCluster::load(dir)?),
            crate::mcp::Reports::Dump(Default::default()),
        ),
        None => {
            let global = crate::kubectl_sre::Global {
                namespace: None,
                context: args.context.clone(),
                kubeconfig: args.kubeconfig.clone(),
            };
            let client = crate::kubectl_sre::client(&global).await?;
            (
                Arc::new(crate::cluster::LiveCluster::new(
                    client.clone(),
                    "the cluster",
                )),
                crate::mcp::Reports::Live(client),
            )
        }
    };
    crate::mcp::serve_stdio(crate::mcp::McpServer {
        cluster,
        engine,
        reports,
    })
    .await
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Namespaces to watch (repeat or comma-separate); all when omitted.
    #[arg(
        long = "namespace",
        env = "SRE_OPERATOR_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,

    /// The plugin directory (in a cluster: the mounted plugin ConfigMap), reloaded on change;
    /// the built-in plugins when omitted.
    #[arg(long, env = "SRE_OPERATOR_PLUGIN_DIR", value_name = "DIR")]
    pub plugins: Option<PathBuf>,

    #[command(flatten)]
    pub brain: BrainArgs,

    /// Reconciles (and so investigations) at once, per controller.
    #[arg(long, env = "SRE_OPERATOR_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,

    /// How long a rollout may take after a patch before the report is Unresolved.
    #[arg(long, env = "SRE_OPERATOR_VERIFY_TIMEOUT", default_value = "5m")]
    pub verify_timeout: String,

    /// How long an init container may run without completing before its Pod is reported
    /// (Pending, InitContainerRunning). Raise it where init containers do long work (a large
    /// migration).
    #[arg(long, env = "SRE_OPERATOR_INIT_TIMEOUT", default_value = "5m")]
    pub init_timeout: String,

    /// Model tokens per hour across all investigations (0: no limit). An investigation that
    /// would exceed it waits in Analyzing until enough of the hour's spending ages out.
    #[arg(
        long,
        env = "SRE_OPERATOR_MAX_TOKENS_PER_HOUR",
        default_value_t = 1_000_000
    )]
    pub max_tokens_per_hour: u64,

    /// The percentage of `--max-tokens-per-hour` one namespace may use: a namespace full of
    /// failing Pods cannot spend the hour the others need.
    #[arg(long, env = "SRE_OPERATOR_NAMESPACE_TOKEN_SHARE", default_value_t = 50, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub namespace_token_share: u8,

    /// Investigations one namespace may run at once; half of `--concurrency` when omitted, so
    /// one namespace never holds every slot.
    #[arg(long, env = "SRE_OPERATOR_NAMESPACE_CONCURRENCY", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub namespace_concurrency: Option<u16>,

    /// How long finished reports are kept.
    #[arg(long, env = "SRE_OPERATOR_RETENTION", default_value = "168h")]
    pub retention: String,

    /// Where /healthz, /readyz, /metrics and /plugins are served.
    #[arg(long, env = "SRE_OPERATOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: std::net::SocketAddr,

    /// Serve the MCP server over streamable HTTP here, at /mcp; every request authenticated with
    /// a Kubernetes bearer token (TokenReview) and every call authorised for its caller
    /// (SubjectAccessReview). Off when omitted.
    #[arg(long, env = "SRE_OPERATOR_MCP_ADDR")]
    pub mcp_addr: Option<std::net::SocketAddr>,

    /// Accept Alertmanager's webhook (payload version 4) at /alertmanager on --http-addr, from
    /// callers that send this bearer token; off when unset. Give it from a Secret (env
    /// valueFrom.secretKeyRef), never on the command line.
    #[arg(long, env = "SRE_OPERATOR_ALERTMANAGER_TOKEN", hide_env_values = true)]
    pub alertmanager_token: Option<String>,

    /// Map an alert name to a failure class, ALERTNAME=CLASS (repeat or comma-separate), on top
    /// of kube-prometheus' defaults (KubePodCrashLooping=CrashLoopBackOff, ...). An alert mapped
    /// to none opens a report of class Alert.
    #[arg(long, env = "SRE_OPERATOR_ALERT_CLASSES", value_delimiter = ',')]
    pub alert_class: Vec<String>,

    /// Hold a coordination.k8s.io Lease so that of several replicas only one acts.
    #[arg(long, env = "SRE_OPERATOR_LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,

    /// The operator's own namespace: its Lease, and the Secrets its plugins' egress grants name.
    #[arg(long, env = "POD_NAMESPACE", default_value = "sre-operator")]
    pub lease_namespace: String,

    /// How often the plugin directory is checked for changes.
    #[arg(long, env = "SRE_OPERATOR_PLUGIN_POLL", default_value = "5s")]
    pub plugin_poll: String,
}

/// What `run`'s flags say about how the operator runs.
fn run_settings(args: &RunArgs) -> Result<crate::controller::Settings> {
    let duration =
        |field: &str, v: &str| crate::crd::parse_duration(field, v).map_err(anyhow::Error::msg);
    Ok(crate::controller::Settings {
        namespaces: args
            .namespaces
            .iter()
            .filter(|n| !n.is_empty())
            .cloned()
            .collect(),
        budget: args.brain.budget()?,
        concurrency: args.concurrency,
        namespace_concurrency: args.namespace_concurrency.map_or_else(
            || crate::controller::fairness::NamespaceSlots::default_share(args.concurrency),
            usize::from,
        ),
        verify_timeout: duration("--verify-timeout", &args.verify_timeout)?,
        init_timeout: duration("--init-timeout", &args.init_timeout)?,
        retention: duration("--retention", &args.retention)?,
        hourly_tokens: Arc::new(
            crate::agent::hourly::HourlyTokens::new(args.max_tokens_per_hour)
                .with_namespace_share(args.namespace_token_share),
        ),
    })
}

async fn run_operator(args: RunArgs) -> Result<()> {
    let duration =
        |field: &str, v: &str| crate::crd::parse_duration(field, v).map_err(anyhow::Error::msg);
    let settings = run_settings(&args)?;
    let brain = args.brain.brain()?;
    let config = kube::Config::infer()
        .await
        .context("cannot reach the cluster: no in-cluster config and no usable kubeconfig")?;
    let client = kube::Client::try_from(config.clone())
        .context("cannot build a client from the cluster's config")?;
    let runtime = Runtime::new(Runtime::default_cache_dir())?;
    // The process that stays up does not compile: a child of this binary does (and its memory
    // leaves with it). /proc/self/exe is the file this process runs even when the path now
    // names another build or nothing.
    let this_program = std::path::Path::new("/proc/self/exe");
    match this_program.exists() {
        true => runtime.compile_in_children_of(this_program.to_path_buf()),
        false => tracing::warn!("no /proc/self/exe; compiling plugins in-process"),
    }
    // Egress grants' credentials and notification webhooks: Secrets in the operator's own
    // namespace, read by name only.
    let secrets = Arc::new(crate::plugin::egress::KubeSecrets::new(
        client.clone(),
        &args.lease_namespace,
    ));
    runtime.set_secrets(secrets.clone());
    runtime.snapshot_in_background();
    let registry = Arc::new(match &args.plugins {
        Some(dir) => crate::plugin::PluginRegistry::from_dir(runtime, dir.clone())
            .map_err(anyhow::Error::msg)?,
        None => crate::plugin::PluginRegistry::builtin(runtime),
    });
    let _watch = registry.spawn_watch(duration("--plugin-poll", &args.plugin_poll)?);
    let plugins = registry.current();
    tracing::info!(
        namespaces = ?settings.namespaces,
        brain = ?args.brain.kind,
        model = ?args.brain.model,
        plugins = plugins.plugins().len(),
        refused = plugins.refusals().len(),
        max_steps = settings.budget.max_steps,
        max_tokens = settings.budget.max_tokens,
        max_tokens_per_hour = settings.hourly_tokens.limit(),
        namespace_token_share = args.namespace_token_share,
        namespace_concurrency = settings.namespace_concurrency,
        timeout = ?settings.budget.deadline,
        concurrency = settings.concurrency,
        verify_timeout = ?settings.verify_timeout,
        retention = ?settings.retention,
        leader_election = args.leader_election,
        "sre-operator starting"
    );
    let metrics = Arc::new(crate::telemetry::Metrics::default());
    let readiness = crate::telemetry::Readiness::default();
    let (inbox, alerts) = match args.alertmanager_token.as_deref().map(str::trim) {
        Some(token) if !token.is_empty() => {
            let classes =
                crate::alerts::AlertClasses::with(&args.alert_class).map_err(anyhow::Error::msg)?;
            let (inbox, queue) = crate::alerts::AlertInbox::new(token);
            (
                Some(Arc::new(inbox)),
                Some(crate::controller::AlertFeed { queue, classes }),
            )
        }
        Some(_) => anyhow::bail!("--alertmanager-token (SRE_OPERATOR_ALERTMANAGER_TOKEN) is empty"),
        None => (None, None),
    };
    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| {
            format!(
                "cannot serve /healthz, /readyz and /metrics on {} (--http-addr)",
                args.http_addr
            )
        })?;
    let http = tokio::spawn({
        let (metrics, readiness, registry) = (metrics.clone(), readiness.clone(), registry.clone());
        async move {
            if let Err(e) =
                crate::telemetry::serve_on(listener, metrics, readiness, Some(registry), inbox)
                    .await
            {
                tracing::error!(error = %e, "the health and metrics server stopped");
            }
        }
    });
    let mcp = match args.mcp_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot serve MCP on {addr} (--mcp-addr)"))?;
            let auth = Arc::new(crate::mcp::http::HttpAuth::new(client.clone(), config));
            let server_auth = auth.clone();
            let cluster: Arc<dyn Cluster> = Arc::new(crate::cluster::LiveCluster::new(
                client.clone(),
                "the cluster",
            ));
            let (registry, brain, budget) =
                (registry.clone(), brain.clone(), settings.budget.clone());
            let concurrency = usize::from(settings.concurrency);
            // Built per request, so a call sees the plugins loaded at that moment.
            let make = move || crate::mcp::McpServer {
                cluster: cluster.clone(),
                engine: crate::pipeline::Engine {
                    brain: brain.clone(),
                    plugins: registry.current(),
                    budget: budget.clone(),
                    concurrency,
                },
                reports: crate::mcp::Reports::AsCaller(auth.clone()),
            };
            Some(tokio::spawn(async move {
                if let Err(e) = crate::mcp::http::serve_on(listener, server_auth, make).await {
                    tracing::error!(error = %e, "the MCP server stopped");
                }
            }))
        }
        None => None,
    };
    let (leader, _lease) = if args.leader_election {
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("sre-operator-{}", std::process::id()));
        let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), "sre-operator")
            .with_namespace(args.lease_namespace.clone())
            .with_identity(identity)
            .with_duration(15)
            .with_grace(5)
            .build()
            .await
            .context("cannot set up leader election")?;
        let (rx, task) = manager.watch().await;
        (rx, Some(task))
    } else {
        (tokio::sync::watch::channel(true).1, None)
    };
    let parts = crate::controller::RunParts {
        client,
        plugins: registry,
        brain,
        settings,
        metrics,
        readiness,
        leader,
        notifier: Some(Arc::new(crate::notify::Notifier::new(secrets))),
        alerts,
    };
    let result = crate::controller::run(parts).await;
    http.abort();
    if let Some(mcp) = mcp {
        mcp.abort();
    }
    result
}

/// The API server refuses a ConfigMap whose data exceeds 1 MiB.
const CONFIGMAP_LIMIT: u64 = 1 << 20;

fn export_plugins(dir: &std::path::Path) -> Result<()> {
    let written = PluginSet::export_builtin(dir).map_err(anyhow::Error::msg)?;
    let mut total = 0;
    for path in &written {
        let size = std::fs::metadata(path)?.len();
        total += size;
        println!("{}  {} KiB", path.display(), size.div_ceil(1024));
    }
    println!(
        "{} KiB in all, of the 1024 KiB one ConfigMap may hold",
        total.div_ceil(1024)
    );
    if total > CONFIGMAP_LIMIT {
        tracing::warn!(
            "the plugins exceed one ConfigMap: give the largest a ConfigMap of its own (docs/operating.md)"
        );
    }
    Ok(())
}

fn plugins(command: PluginsCommand) -> Result<()> {
    let runtime = Runtime::new(Runtime::default_cache_dir())?;
    let (dir, strict) = match command {
        PluginsCommand::List { dir } => (dir, false),
        PluginsCommand::Check { dir } => (Some(dir), true),
        PluginsCommand::Export { dir } => return export_plugins(&dir),
    };
    let set = match &dir {
        Some(dir) => PluginSet::from_dir(&runtime, dir).map_err(anyhow::Error::msg)?,
        None => PluginSet::builtin(&runtime),
    };
    output::plugins(&mut Escaping::new(std::io::stdout().lock()), &set)?;
    if strict && !set.refusals().is_empty() {
        anyhow::bail!(
            "{} of {} plugins refused",
            set.refusals().len(),
            set.refusals().len() + set.plugins().len()
        );
    }
    Ok(())
}

/// The built-in plugins, or those of `--plugins DIR`; refusals are printed as warnings.
fn load_plugins(dir: Option<&PathBuf>) -> Result<Arc<PluginSet>> {
    let runtime = Runtime::new(Runtime::default_cache_dir())?;
    let plugins = match dir {
        Some(dir) => PluginSet::from_dir(&runtime, dir).map_err(anyhow::Error::msg)?,
        None => PluginSet::builtin(&runtime),
    };
    for refusal in plugins.refusals() {
        eprintln!(
            "warning: plugin {} refused: {}",
            escape(&refusal.plugin),
            escape(&refusal.reason)
        );
    }
    Ok(Arc::new(plugins))
}

async fn diagnose(args: DiagnoseArgs) -> Result<()> {
    let started = std::time::Instant::now();
    // The brain's flags are checked before the dump is read.
    args.engine.brain.budget()?;
    args.engine.brain.brain()?;
    let cluster = Arc::new(DumpCluster::load(&args.dump)?);
    let loaded = started.elapsed();
    let policies = if args.policies.is_empty() {
        vec![default_policy()]
    } else {
        load_policy_files(&args.policies)?
    };
    let policy_set = PolicySet::compile(&policies)?;
    let plugins_started = std::time::Instant::now();
    let engine = if args.detect_only {
        None
    } else {
        Some(args.engine.engine()?)
    };
    let plugins_loaded = plugins_started.elapsed();
    let outcome =
        crate::pipeline::run(cluster.clone(), &policies, &policy_set, engine.as_ref()).await?;
    let timings = outcome.timings;
    tracing::info!(
        pods = outcome.pods,
        reports = outcome.reports.len(),
        load_ms = loaded.as_millis() as u64,
        plugins_ms = plugins_loaded.as_millis() as u64,
        detect_ms = timings.detect.as_millis() as u64,
        screen_ms = timings.screen.as_millis() as u64,
        investigate_ms = timings.investigate.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "diagnosed {}",
        cluster.source()
    );
    let mut stdout = Escaping::new(std::io::stdout().lock());
    match args.output {
        OutputFormat::Text => output::text(
            &mut stdout,
            &outcome.reports,
            &outcome.skipped,
            outcome.pods,
            &cluster.source(),
            &policy_set,
        )?,
        OutputFormat::Json => output::json(&mut stdout, &outcome.reports)?,
        OutputFormat::Yaml => output::yaml(&mut stdout, &outcome.reports)?,
    }
    Ok(())
}

async fn eval(args: EvalArgs) -> Result<()> {
    let mut scenarios = crate::eval::load_scenarios(&args.dir)?;
    if !args.only.is_empty() {
        scenarios.retain(|s| {
            args.only
                .iter()
                .any(|o| s.name.contains(o.as_str()) || s.expected.tags.contains(o))
        });
        anyhow::ensure!(
            !scenarios.is_empty(),
            "no scenario matches --only {:?}",
            args.only
        );
    }
    let engine = args.engine.engine()?;
    let suite = crate::eval::run(&scenarios, &engine).await;
    let mut stdout = Escaping::new(std::io::stdout().lock());
    match args.output {
        EvalOutput::Table => crate::eval::write_table(&mut stdout, &suite)?,
        EvalOutput::Json => {
            serde_json::to_writer_pretty(&mut stdout, &crate::eval::to_json(&suite))?;
            std::io::Write::write_all(&mut stdout, b"\n")?;
        }
    }
    let failed = suite.must_pass_failures();
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|s| s.name.as_str()).collect();
        anyhow::bail!(
            "{} must-pass scenario(s) failed: {}",
            failed.len(),
            names.join(", ")
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn settings(flags: &[&str]) -> crate::controller::Settings {
        let cli = Cli::try_parse_from(["sre-operator", "run"].iter().chain(flags)).unwrap();
        let Command::Run(args) = cli.command else {
            unreachable!()
        };
        run_settings(&args).unwrap()
    }

    /// One namespace gets half the investigation slots and half the hour by default, and the
    /// flags change both.
    #[test]
    fn one_namespace_gets_a_share_of_the_slots_and_the_hour() {
        let fair = settings(&["--concurrency", "6", "--max-tokens-per-hour", "100000"]);
        assert_eq!(fair.namespace_concurrency, 3);
        let hourly = &fair.hourly_tokens;
        assert!(hourly.reserve("noisy", 50_000).is_ok());
        assert!(
            hourly.reserve("noisy", 10_000).is_err(),
            "a namespace went past half the hour"
        );
        assert!(hourly.reserve("quiet", 40_000).is_ok());

        let set = settings(&[
            "--namespace-concurrency",
            "1",
            "--namespace-token-share",
            "100",
            "--max-tokens-per-hour",
            "100000",
        ]);
        assert_eq!(set.namespace_concurrency, 1);
        assert!(set.hourly_tokens.reserve("noisy", 100_000).is_ok());
        assert!(
            Cli::try_parse_from(["sre-operator", "run", "--namespace-token-share", "0"]).is_err()
        );
    }
}

//! A real Kubernetes control plane on loopback for end-to-end tests.
//!
//! [`TestCluster::start`] starts etcd, kube-apiserver, kube-scheduler,
//! kube-controller-manager and kwok (which stands in for nodes and kubelets) as child
//! processes on free loopback ports under a temporary folder, waits until the cluster is
//! usable (`/readyz`, every node Ready, the `default` ServiceAccount in `default`), and
//! returns the admin kubeconfig path and a [`kube::Client`]. Dropping the [`TestCluster`]
//! stops every process newest first and removes the folder; so does SIGINT, SIGTERM or
//! SIGHUP, and the kernel kills the processes if the test process dies by SIGKILL.
//!
//! The binaries come from `tests/cluster/build.sh`, which builds them from pinned Go
//! modules into a cache folder outside the repository the first time (minutes) and returns
//! at once afterwards. Pods fail on demand through the kwok stages in `tests/cluster/stages`,
//! selected by the label `sre-operator.dev/fault` (see [`fault`]); container logs come from
//! files written by [`TestCluster::set_logs`].
//!
//! A cluster kept in a static (one shared by the tests of a binary) is stopped when the
//! process exits.
//!
//! When `SRE_OPERATOR_E2E_KUBECONFIG` names a kubeconfig, [`TestCluster::start`] uses that
//! cluster instead of starting one (fault stages and logs then need a cluster started by this
//! harness, e.g. `tests/cluster/up.sh`).
//!
//! Two helpers that need no cluster live here too, for sre-operator's tests, benchmarks and
//! examples (this crate is their dev-dependency and never depends on sre-operator):
//! [`fixtures`] builds Pods and Deployments, [`synth`] writes large synthetic cluster dumps.
//! [`wait`] waits for a cluster object by watching it.

pub mod alertmanager;
pub mod demo;
pub mod fixtures;
pub mod jaeger;
pub mod loopback;
mod pki;
mod process;
pub mod prometheus;
pub mod synth;
pub mod wait;
pub mod webhook;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use k8s_openapi::api::core::v1::{Namespace, Node, ServiceAccount, Taint};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};

pub use process::log_tail;

/// The environment variable naming a kubeconfig of an existing cluster to test against.
pub const KUBECONFIG_ENV: &str = "SRE_OPERATOR_E2E_KUBECONFIG";
/// Set to keep a cluster's folder (logs, certificates, kubeconfig) after it stops.
pub const KEEP_ENV: &str = "SRE_OPERATOR_E2E_KEEP";
/// Use binaries from this folder instead of running `tests/cluster/build.sh`.
pub const BIN_DIR_ENV: &str = "SRE_OPERATOR_E2E_BIN_DIR";

/// The annotation that makes kwok manage a Node.
pub const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";

/// Labels and annotations understood by the project's kwok stages (`tests/cluster/stages`).
pub mod fault {
    /// Pod label that selects a fault stage; the values are the constants below.
    pub const LABEL: &str = "sre-operator.dev/fault";
    /// CrashLoopBackOff; last state terminated with exit code 1, reason Error.
    pub const CRASHLOOP: &str = "crashloop";
    /// CrashLoopBackOff; last state terminated with exit code 137, reason OOMKilled.
    pub const OOMKILLED: &str = "oomkilled";
    /// ErrImagePull, then ImagePullBackOff: the image does not exist.
    pub const IMAGEPULL_NOTFOUND: &str = "imagepull-notfound";
    /// ErrImagePull, then ImagePullBackOff: the registry refuses access.
    pub const IMAGEPULL_AUTH: &str = "imagepull-auth";
    /// CreateContainerConfigError naming the first ConfigMap or Secret key the container uses
    /// (or the message and waiting reason its annotations give).
    pub const CONFIG_MISSING_KEY: &str = "config-missing-key";
    /// The first init container crash-loops; the Pod stays Pending (Init:CrashLoopBackOff).
    pub const INIT_FAIL: &str = "init-fail";
    /// The first native sidecar (or the last container) crash-loops; the others run.
    pub const SIDECAR_EXIT: &str = "sidecar-exit";
    /// Running, but the readiness probe never passes (Ready=False).
    pub const READINESS_NEVER: &str = "readiness-never";
    /// Failed, reason Evicted: the kubelet evicted the Pod, its node low on memory.
    pub const EVICTED: &str = "evicted";
    /// Failed at admission: the kubelet refuses the Pod (reason OutOfcpu unless annotated).
    pub const REJECTED: &str = "rejected";
    /// Failed for good: the containers run once and exit 1 (a Job's Pod, restartPolicy Never).
    pub const EXIT: &str = "exit";
    /// Pending for good: the first init container that is not a sidecar runs and never
    /// completes.
    pub const INIT_RUNNING: &str = "init-running";
    /// ContainerCreating for good: volume "config" names ConfigMap "app-config", which is
    /// missing (FailedMount).
    pub const MOUNT_MISSING_CONFIG: &str = "mount-missing-config";
    /// ContainerCreating for good: the calico CNI plugin fails (FailedCreatePodSandBox).
    pub const SANDBOX_NETWORK: &str = "sandbox-network";
    /// ContainerCreating for good: a ReadWriteOnce volume held on another node
    /// (FailedAttachVolume, Multi-Attach error).
    pub const ATTACH_MULTI: &str = "attach-multi";

    /// Annotation: the one container that fails.
    pub const CONTAINER_ANNOTATION: &str = "sre-operator.dev/fault-container";
    /// Annotation: how long until the fault shows (a Go duration, default 1s).
    pub const DELAY_ANNOTATION: &str = "sre-operator.dev/fault-delay";
    /// Annotation: a fixed back-off between restarts (default: the kubelet's 10s doubling to 5m).
    pub const BACKOFF_ANNOTATION: &str = "sre-operator.dev/backoff";
    /// Annotation: override the exit code of a crash.
    pub const EXIT_CODE_ANNOTATION: &str = "sre-operator.dev/exit-code";
    /// Annotation: override the terminated reason of a crash.
    pub const EXIT_REASON_ANNOTATION: &str = "sre-operator.dev/exit-reason";
    /// Annotation: override the error message of an image pull or config fault, or an eviction's.
    pub const MESSAGE_ANNOTATION: &str = "sre-operator.dev/fault-message";
    /// Annotation: override the status reason of a Pod the kubelet refuses, or the waiting
    /// reason of a config fault (`CreateContainerError`: what CRI-O and crun refuse at creation).
    pub const REASON_ANNOTATION: &str = "sre-operator.dev/fault-reason";
}

/// The folder holding build.sh, the stages and the kwok CRDs.
pub fn cluster_assets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../cluster")
}

/// A fake node managed by kwok.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    /// Allocatable (and capacity) CPU, a Kubernetes quantity such as "4" or "3500m".
    pub cpu: String,
    /// Allocatable (and capacity) memory, a Kubernetes quantity such as "8Gi".
    pub memory: String,
    /// How many Pods fit.
    pub pods: u32,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
}

impl NodeSpec {
    /// A node with 4 CPUs, 8Gi of memory and room for 110 Pods.
    pub fn new(name: impl Into<String>) -> Self {
        NodeSpec {
            name: name.into(),
            cpu: "4".into(),
            memory: "8Gi".into(),
            pods: 110,
            labels: BTreeMap::new(),
            taints: Vec::new(),
        }
    }
    pub fn cpu(mut self, cpu: impl Into<String>) -> Self {
        self.cpu = cpu.into();
        self
    }
    pub fn memory(mut self, memory: impl Into<String>) -> Self {
        self.memory = memory.into();
        self
    }
    pub fn pods(mut self, pods: u32) -> Self {
        self.pods = pods;
        self
    }
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
    /// A taint; `effect` is NoSchedule, PreferNoSchedule or NoExecute.
    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.taints.push(Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            ..Default::default()
        });
        self
    }

    fn to_node(&self) -> Result<Node> {
        let mut labels = serde_json::json!({
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
        });
        for (k, v) in &self.labels {
            labels[k] = v.clone().into();
        }
        let resources = serde_json::json!({
            "cpu": self.cpu, "memory": self.memory, "pods": self.pods.to_string(),
        });
        Ok(serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": labels,
                "annotations": {
                    KWOK_NODE_ANNOTATION: "fake",
                    "node.alpha.kubernetes.io/ttl": "0",
                },
            },
            "spec": { "taints": self.taints },
            "status": { "allocatable": resources, "capacity": resources },
        }))?)
    }
}

/// How to start a cluster.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// The fake nodes (default: `kwok-node-0` and `kwok-node-1`, each 4 CPU, 8Gi, 110 Pods).
    pub nodes: Vec<NodeSpec>,
    /// Extra kwok Stage documents (YAML) besides those in `tests/cluster/stages`.
    pub extra_stages: Vec<String>,
    /// `--kube-api-qps` for the scheduler and the controller-manager (burst twice that), to
    /// create many Pods quickly. None keeps their defaults.
    pub kube_api_qps: Option<u32>,
    /// Extra command-line arguments per component ("etcd", "kube-apiserver",
    /// "kube-scheduler", "kube-controller-manager", "kwok").
    pub extra_args: BTreeMap<String, Vec<String>>,
    /// How long to wait for the cluster to become ready.
    pub start_timeout: Duration,
    /// Where the binaries are; default: `$SRE_OPERATOR_E2E_BIN_DIR`, else what
    /// `tests/cluster/build.sh` builds or finds in its cache.
    pub bin_dir: Option<PathBuf>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: vec![NodeSpec::new("kwok-node-0"), NodeSpec::new("kwok-node-1")],
            extra_stages: Vec::new(),
            kube_api_qps: None,
            extra_args: BTreeMap::new(),
            start_timeout: Duration::from_secs(90),
            bin_dir: None,
        }
    }
}

/// A running cluster (or, with `SRE_OPERATOR_E2E_KUBECONFIG`, a handle on an existing one).
/// The API server's audit log, in the cluster's directory.
const AUDIT_LOG: &str = "audit.log";

/// Every request a ServiceAccount makes, at `Metadata` level (verb, URI, user, response code);
/// nothing of the control plane's own components or the test's administrator.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: [\"system:serviceaccounts\"]
  - level: None
";

pub struct TestCluster {
    /// The process registry id; None for an external cluster.
    id: Option<u64>,
    kubeconfig: PathBuf,
    client: kube::Client,
    dir: PathBuf,
    /// Scratch space (log files) for an external cluster.
    _scratch: Option<tempfile::TempDir>,
    bin_dir: Option<PathBuf>,
    ready_after: Duration,
}

/// Stops a half-started cluster when start-up fails.
struct StartGuard(Option<u64>);
impl Drop for StartGuard {
    fn drop(&mut self) {
        if let Some(id) = self.0.take() {
            process::stop(id);
        }
    }
}

/// Builds the binaries if needed (`tests/cluster/build.sh`, which serialises concurrent
/// builds with a file lock) and returns their folder.
pub fn ensure_binaries() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let script = cluster_assets_dir().join("build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}); its output is above",
            script.display(),
            out.status
        );
    }
    let stdout = String::from_utf8(out.stdout)?;
    let dir = stdout
        .lines()
        .last()
        .ok_or_else(|| anyhow!("{} printed no bin folder", script.display()))?;
    Ok(PathBuf::from(dir.trim()))
}

/// A Go program the tests run beside the cluster (`helm`, `prometheus`, `alertmanager`,
/// `jaeger`), built once from its module pinned in `tests/cluster/go/<tool>/` and cached by
/// version (`tests/cluster/build-tool.sh`).
pub fn go_tool(tool: &str) -> Result<PathBuf> {
    let script = cluster_assets_dir().join("build-tool.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(tool)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {} {tool}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} {tool} failed ({}); its output is above",
            script.display(),
            out.status
        );
    }
    let stdout = String::from_utf8(out.stdout)?;
    let path = stdout
        .lines()
        .last()
        .ok_or_else(|| anyhow!("{} {tool} printed no path", script.display()))?;
    Ok(PathBuf::from(path.trim()))
}

fn free_ports(n: usize) -> Result<Vec<u16>> {
    // Held together so that the n ports differ; released just before the components bind
    // them. Another process could take one in between: start-up then fails naming the
    // component, with "address already in use" in its log.
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Removes folders of clusters whose test process died without cleaning up (SIGKILL).
fn sweep_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let is_ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("sre-e2e-"));
        if !is_ours {
            continue;
        }
        let Ok(pid) = std::fs::read_to_string(path.join("owner.pid")) else {
            continue;
        };
        let Ok(pid) = pid.trim().parse::<libc::pid_t>() else {
            continue;
        };
        // SAFETY: signal 0 only checks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn kubeconfig_yaml(server: &str, ca: &Path, crt: &Path, key: &Path) -> Result<String> {
    let b64 = |p: &Path| -> Result<String> {
        Ok(base64::engine::general_purpose::STANDARD.encode(std::fs::read(p)?))
    };
    let kc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "sre-e2e", "cluster": {
            "server": server, "certificate-authority-data": b64(ca)? } }],
        "users": [{ "name": "sre-e2e-admin", "user": {
            "client-certificate-data": b64(crt)?, "client-key-data": b64(key)? } }],
        "contexts": [{ "name": "sre-e2e", "context": {
            "cluster": "sre-e2e", "user": "sre-e2e-admin", "namespace": "default" } }],
        "current-context": "sre-e2e",
    });
    Ok(serde_yaml::to_string(&kc)?)
}

async fn client_for(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// Whether a failed start lost a race that a second start does not repeat: a free port taken by
/// someone else between choosing and binding it, or kwok v0.8.0 crashing as it starts (two of
/// its goroutines build CEL environments at once, one its node controller's first stage match,
/// and easycel registers types in unguarded global maps: "fatal error: concurrent map writes",
/// seen once in CI).
fn start_race(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    text.contains("address already in use")
        || (text.contains("kwok exited during start-up") && text.contains("concurrent map writes"))
}

/// The kwok configuration: options plus every stage.
fn kwok_config(extra_stages: &[String]) -> Result<String> {
    let mut out = String::from(
        "apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  # Without these kwok exits ('playStageParallelism must be greater than 0') or answers
  # every 'kubectl logs' with MethodNotAllowed: the defaults in its API types are not
  # applied to a config file.
  podPlayStageParallelism: 4
  nodePlayStageParallelism: 4
  nodeLeaseParallelism: 4
  nodeLeaseDurationSeconds: 40
  podsOnNodeSyncParallelism: 4
  enableDebuggingHandlers: true
  enableProfilingHandler: false
  enableContentionProfiling: false
",
    );
    let stages_dir = cluster_assets_dir().join("stages");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&stages_dir)
        .with_context(|| format!("reading {}", stages_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for f in files {
        out.push_str("---\n");
        out.push_str(&std::fs::read_to_string(&f)?);
        out.push('\n');
    }
    for s in extra_stages {
        out.push_str("---\n");
        out.push_str(s);
        out.push('\n');
    }
    Ok(out)
}

/// Polls `check` every 100 ms until it returns true; fails after `timeout` or when a
/// component of cluster `id` has exited.
async fn wait_until<F, Fut>(
    id: Option<u64>,
    timeout: Duration,
    what: &str,
    mut check: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_err = None;
    loop {
        if let Some(id) = id {
            process::check_alive(id).with_context(|| format!("waiting for {what}"))?;
        }
        match check().await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() > deadline {
            let detail = last_err
                .map(|e| format!(" (last error: {e:#})"))
                .unwrap_or_default();
            bail!("timed out after {timeout:?} waiting for {what}{detail}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn node_is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl TestCluster {
    /// Starts a cluster, or connects to the one `SRE_OPERATOR_E2E_KUBECONFIG` names.
    pub async fn start(opts: ClusterOptions) -> Result<TestCluster> {
        match std::env::var_os(KUBECONFIG_ENV) {
            Some(path) if !path.is_empty() => Self::external(PathBuf::from(path), &opts).await,
            _ => Self::start_local(opts).await,
        }
    }

    async fn external(kubeconfig: PathBuf, opts: &ClusterOptions) -> Result<TestCluster> {
        let t0 = Instant::now();
        let client = client_for(&kubeconfig).await?;
        let scratch = tempfile::Builder::new().prefix("sre-e2e-ext-").tempdir()?;
        let bin_dir = opts.bin_dir.clone().or_else(|| {
            let out = Command::new("bash")
                .arg(cluster_assets_dir().join("build.sh"))
                .arg("--print-bin-dir")
                .output()
                .ok()?;
            let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
            dir.join("kubectl").exists().then_some(dir)
        });
        let mut cluster = TestCluster {
            id: None,
            kubeconfig,
            client,
            dir: scratch.path().to_path_buf(),
            _scratch: Some(scratch),
            bin_dir,
            ready_after: Duration::ZERO,
        };
        // The nodes the tests ask for are added to the existing cluster.
        for n in &opts.nodes {
            cluster.add_node_no_wait(n).await?;
        }
        let names: Vec<String> = opts.nodes.iter().map(|n| n.name.clone()).collect();
        cluster.wait_nodes_ready(&names, opts.start_timeout).await?;
        cluster.ready_after = t0.elapsed();
        Ok(cluster)
    }

    /// Starts a cluster of its own on loopback, whatever the environment says.
    pub async fn start_local(opts: ClusterOptions) -> Result<TestCluster> {
        match Self::start_local_once(&opts).await {
            Err(e) if start_race(&e) => {
                eprintln!("sre-e2e: the start lost a race, starting again: {e:#}");
                Self::start_local_once(&opts).await
            }
            other => other,
        }
    }

    async fn start_local_once(opts: &ClusterOptions) -> Result<TestCluster> {
        let t0 = Instant::now();
        let bin = match &opts.bin_dir {
            Some(b) => b.clone(),
            None => tokio::task::spawn_blocking(ensure_binaries).await??,
        };
        for b in [
            "etcd",
            "kube-apiserver",
            "kube-scheduler",
            "kube-controller-manager",
            "kwok",
        ] {
            if !bin.join(b).exists() {
                bail!("{} is missing from {}", b, bin.display());
            }
        }
        let t_bin = t0.elapsed();
        sweep_stale_dirs();
        let dir = tempfile::Builder::new().prefix("sre-e2e-").tempdir()?;
        let root = dir.path().to_path_buf();
        std::fs::write(root.join("owner.pid"), std::process::id().to_string())?;
        let id = process::register(dir);
        let mut guard = StartGuard(Some(id));
        let logs = root.join("logs");
        std::fs::create_dir_all(&logs)?;
        let log = |name: &str| logs.join(format!("{name}.log"));
        let extra = |name: &str| opts.extra_args.get(name).cloned().unwrap_or_default();

        let pki = pki::make(&root.join("pki")).context("making certificates with openssl")?;
        let ports = free_ports(4)?;
        let (etcd_port, peer_port, api_port, kwok_port) = (ports[0], ports[1], ports[2], ports[3]);

        // etcd
        let mut cmd = Command::new(bin.join("etcd"));
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        cmd.arg("--name=sre-e2e")
            .arg(format!("--data-dir={}", root.join("etcd").display()))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=sre-e2e={peer_url}"))
            .arg("--unsafe-no-fsync")
            .arg("--log-level=warn")
            .args(extra("etcd"));
        process::spawn(id, "etcd", cmd, &log("etcd"))?;

        let audit_policy = root.join("audit-policy.yaml");
        std::fs::write(&audit_policy, AUDIT_POLICY)?;

        // kube-apiserver: it retries etcd until it answers, so no wait in between.
        let mut cmd = Command::new(bin.join("kube-apiserver"));
        cmd.arg(format!("--etcd-servers={etcd_url}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            .arg(format!("--secure-port={api_port}"))
            .arg(format!("--tls-cert-file={}", pki.server_crt.display()))
            .arg(format!(
                "--tls-private-key-file={}",
                pki.server_key.display()
            ))
            .arg(format!("--client-ca-file={}", pki.ca_crt.display()))
            .arg("--authorization-mode=Node,RBAC")
            .arg("--enable-admission-plugins=NodeRestriction,ServiceAccount")
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!(
                "--service-account-key-file={}",
                pki.sa_pub.display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                pki.sa_key.display()
            ))
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            // The advertise address is loopback; no kubernetes Endpoints to keep.
            .arg("--endpoint-reconciler-type=none")
            // kwok's nodes report Hostname (their name) and InternalIP (127.0.0.1): the name
            // does not resolve, so logs would fail with the default preference.
            .arg("--kubelet-preferred-address-types=InternalIP")
            .arg("--allow-privileged=true")
            .arg("--profiling=false")
            // What every ServiceAccount (the operator among them) asked of the API server: the
            // tests of what the operator must never send read it (`audit_events`).
            .arg(format!("--audit-policy-file={}", audit_policy.display()))
            .arg(format!(
                "--audit-log-path={}",
                root.join(AUDIT_LOG).display()
            ))
            .arg("--audit-log-format=json")
            .arg("--audit-log-mode=blocking")
            .args(extra("kube-apiserver"));
        process::spawn(id, "kube-apiserver", cmd, &log("kube-apiserver"))?;

        let kubeconfig = root.join("admin.kubeconfig");
        let server = format!("https://127.0.0.1:{api_port}");
        std::fs::write(
            &kubeconfig,
            kubeconfig_yaml(&server, &pki.ca_crt, &pki.admin_crt, &pki.admin_key)?,
        )?;
        let client = client_for(&kubeconfig).await?;

        wait_until(
            Some(id),
            opts.start_timeout,
            "kube-apiserver /readyz",
            || {
                let client = client.clone();
                async move {
                    let req = http::Request::get("/readyz").body(Vec::new())?;
                    Ok(client.request_text(req).await? == "ok")
                }
            },
        )
        .await?;
        let t_api = t0.elapsed();

        // kwok reads its Logs and ClusterLogs from the API, so that tests can add them while
        // the cluster runs: their CRDs must exist before kwok starts.
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let mut crd_names = Vec::new();
        for f in ["kwok.x-k8s.io_logs.yaml", "kwok.x-k8s.io_clusterlogs.yaml"] {
            let path = cluster_assets_dir().join("crds").join(f);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            for doc in serde_yaml::Deserializer::from_str(&text) {
                let value = <serde_yaml::Value as serde::Deserialize>::deserialize(doc)?;
                if value.is_null() {
                    continue;
                }
                let crd: CustomResourceDefinition = serde_yaml::from_value(value)?;
                crd_names.push(crd.metadata.name.clone().unwrap_or_default());
                crds.create(&PostParams::default(), &crd).await?;
            }
        }
        let nodes: Api<Node> = Api::all(client.clone());
        for n in &opts.nodes {
            nodes.create(&PostParams::default(), &n.to_node()?).await?;
        }
        wait_until(
            Some(id),
            opts.start_timeout,
            "kwok's CRDs to be established",
            || {
                let crds = crds.clone();
                let names = crd_names.clone();
                async move {
                    for name in names {
                        let crd = crds.get(&name).await?;
                        let established = crd.status.and_then(|s| s.conditions).is_some_and(|cs| {
                            cs.iter()
                                .any(|c| c.type_ == "Established" && c.status == "True")
                        });
                        if !established {
                            return Ok(false);
                        }
                    }
                    Ok(true)
                }
            },
        )
        .await?;

        let kc = format!("--kubeconfig={}", kubeconfig.display());
        let qps = |cmd: &mut Command| {
            if let Some(q) = opts.kube_api_qps {
                cmd.arg(format!("--kube-api-qps={q}"))
                    .arg(format!("--kube-api-burst={}", q * 2));
            }
        };

        let mut cmd = Command::new(bin.join("kube-scheduler"));
        cmd.arg(&kc)
            .arg("--leader-elect=false")
            .arg("--secure-port=0");
        qps(&mut cmd);
        cmd.args(extra("kube-scheduler"));
        process::spawn(id, "kube-scheduler", cmd, &log("kube-scheduler"))?;

        let mut cmd = Command::new(bin.join("kube-controller-manager"));
        cmd.arg(&kc)
            .arg("--leader-elect=false")
            .arg("--secure-port=0")
            .arg(format!(
                "--service-account-private-key-file={}",
                pki.sa_key.display()
            ))
            .arg(format!("--root-ca-file={}", pki.ca_crt.display()))
            .arg(format!(
                "--cluster-signing-cert-file={}",
                pki.ca_crt.display()
            ))
            .arg(format!(
                "--cluster-signing-key-file={}",
                pki.ca_key.display()
            ))
            // The controllers use the admin credentials. With their own ServiceAccounts (true,
            // as kubeadm does) the cluster took 8 s instead of 3 s to be ready here: each
            // controller waits for its token. The operator's own RBAC is not affected.
            .arg("--use-service-account-credentials=false")
            .arg("--cluster-name=sre-e2e");
        qps(&mut cmd);
        cmd.args(extra("kube-controller-manager"));
        process::spawn(
            id,
            "kube-controller-manager",
            cmd,
            &log("kube-controller-manager"),
        )?;

        let kwok_yaml = root.join("kwok.yaml");
        std::fs::write(&kwok_yaml, kwok_config(&opts.extra_stages)?)?;
        let mut cmd = Command::new(bin.join("kwok"));
        cmd.arg(&kc)
            .arg(format!("--config={}", kwok_yaml.display()))
            .arg(format!(
                "--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake"
            ))
            .arg("--node-ip=127.0.0.1")
            .arg(format!("--node-port={kwok_port}"))
            .arg(format!("--server-address=127.0.0.1:{kwok_port}"))
            .arg("--cidr=10.244.0.0/16")
            .arg("--enable-crds=Logs,ClusterLogs")
            .args(extra("kwok"));
        process::spawn(id, "kwok", cmd, &log("kwok"))?;

        let mut cluster = TestCluster {
            id: Some(id),
            kubeconfig,
            client,
            dir: root,
            _scratch: None,
            bin_dir: Some(bin),
            ready_after: Duration::ZERO,
        };
        // From here the cluster's own Drop stops everything on error.
        guard.0 = None;

        let names: Vec<String> = opts.nodes.iter().map(|n| n.name.clone()).collect();
        cluster.wait_nodes_ready(&names, opts.start_timeout).await?;
        let sas: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), "default");
        wait_until(
            Some(id),
            opts.start_timeout,
            "the default ServiceAccount in default",
            || {
                let sas = sas.clone();
                async move { Ok(sas.get_opt("default").await?.is_some()) }
            },
        )
        .await?;
        let ready_after = t0.elapsed();
        if std::env::var_os("SRE_OPERATOR_E2E_QUIET").is_none() {
            eprintln!(
                "sre-e2e: cluster ready in {:.1} s (binaries {:.1} s, apiserver ready at {:.1} s): {}",
                ready_after.as_secs_f64(),
                t_bin.as_secs_f64(),
                t_api.as_secs_f64(),
                cluster.kubeconfig.display()
            );
        }
        cluster.ready_after = ready_after;
        Ok(cluster)
    }

    /// True when this is a cluster named by `SRE_OPERATOR_E2E_KUBECONFIG`, not one of ours.
    pub fn is_external(&self) -> bool {
        self.id.is_none()
    }

    /// The admin kubeconfig (client certificate in `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A kubeconfig that authenticates as ServiceAccount `namespace/name` (a TokenRequest
    /// token, valid for `ttl`), so that a process runs with that account's RBAC and no more.
    /// Written into the cluster's folder.
    pub fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        ttl: Duration,
    ) -> Result<PathBuf> {
        let out = self
            .kubectl()
            .args(["-n", namespace, "create", "token", name])
            .arg(format!("--duration={}s", ttl.as_secs()))
            .output()
            .context("running kubectl create token")?;
        if !out.status.success() {
            bail!(
                "kubectl create token {namespace}/{name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let token = String::from_utf8(out.stdout)?.trim().to_string();
        let text = std::fs::read_to_string(&self.kubeconfig)?;
        let mut config: serde_yaml::Value = serde_yaml::from_str(&text)?;
        let users = config
            .get_mut("users")
            .and_then(|u| u.as_sequence_mut())
            .ok_or_else(|| anyhow!("{} has no users", self.kubeconfig.display()))?;
        for user in users.iter_mut() {
            user["user"] = serde_yaml::to_value(serde_json::json!({ "token": token }))?;
        }
        let path = self.dir.join(format!("sa-{namespace}-{name}.kubeconfig"));
        std::fs::write(&path, serde_yaml::to_string(&config)?)?;
        Ok(path)
    }

    /// A client with the admin kubeconfig.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The cluster's folder: `admin.kubeconfig`, `logs/<component>.log`, `pki/`,
    /// `kwok.yaml`, `etcd/`, and container log files. Removed when the cluster stops.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The API server's audit events (JSON, one per request at `ResponseComplete`) of `user`,
    /// e.g. `system:serviceaccount:sre-operator:sre-operator`; `None` for an external cluster,
    /// whose audit log the harness cannot read.
    pub fn audit_events(&self, user: &str) -> Option<Vec<serde_json::Value>> {
        self.audit_events_in(user, &["ResponseComplete"])
    }

    /// Like [`TestCluster::audit_events`], but also the `ResponseStarted` events of
    /// long-running requests: a watch that never ends has no `ResponseComplete` event yet.
    pub fn audit_events_started_or_complete(&self, user: &str) -> Option<Vec<serde_json::Value>> {
        self.audit_events_in(user, &["ResponseStarted", "ResponseComplete"])
    }

    /// [`TestCluster::audit_events_started_or_complete`] for a check over `user`'s requests: an
    /// error when there is no audit log or it holds none of them (the check would prove nothing).
    pub fn audited_requests_of(&self, user: &str) -> anyhow::Result<Vec<serde_json::Value>> {
        let audit = self.audit_events_started_or_complete(user).ok_or_else(|| {
            anyhow::anyhow!("no audit log: the cluster was not started by the tests")
        })?;
        anyhow::ensure!(
            !audit.is_empty(),
            "the audit log holds no request of {user}: a check over them would prove nothing"
        );
        Ok(audit)
    }

    fn audit_events_in(&self, user: &str, stages: &[&str]) -> Option<Vec<serde_json::Value>> {
        self.id?;
        let text = std::fs::read_to_string(self.dir.join(AUDIT_LOG)).unwrap_or_default();
        Some(
            text.lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .filter(|e| {
                    e["user"]["username"] == user
                        && e["stage"].as_str().is_some_and(|s| stages.contains(&s))
                })
                .collect(),
        )
    }

    /// The log file of a component ("etcd", "kube-apiserver", ...).
    pub fn component_log(&self, component: &str) -> PathBuf {
        self.dir.join("logs").join(format!("{component}.log"))
    }

    /// How long `start` took until the cluster was ready.
    pub fn ready_after(&self) -> Duration {
        self.ready_after
    }

    /// The processes this cluster started, oldest first, as (component, pid).
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.id.map(process::pids).unwrap_or_default()
    }

    /// The folder of the binaries, kubectl among them.
    pub fn bin_dir(&self) -> Option<&Path> {
        self.bin_dir.as_deref()
    }

    /// A kubectl command (the v1.36 one built beside the server when available) with this
    /// cluster's kubeconfig.
    pub fn kubectl(&self) -> Command {
        let program = self
            .bin_dir
            .as_ref()
            .map(|b| b.join("kubectl"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("kubectl"));
        let mut cmd = Command::new(program);
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()));
        cmd
    }

    async fn add_node_no_wait(&self, spec: &NodeSpec) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node = spec.to_node()?;
        nodes
            .patch(
                &spec.name,
                &PatchParams::apply("sre-e2e").force(),
                &Patch::Apply(&node),
            )
            .await
            .with_context(|| format!("creating node {}", spec.name))?;
        Ok(())
    }

    /// Adds a fake node and waits until it is Ready.
    pub async fn add_node(&self, spec: &NodeSpec) -> Result<()> {
        self.add_node_no_wait(spec).await?;
        self.wait_nodes_ready(std::slice::from_ref(&spec.name), Duration::from_secs(30))
            .await
    }

    /// Waits until the named nodes are Ready.
    pub async fn wait_nodes_ready(&self, names: &[String], timeout: Duration) -> Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let what = format!("nodes {names:?} to be Ready");
        wait_until(self.id, timeout, &what, || {
            let nodes = nodes.clone();
            async move {
                for name in names {
                    match nodes.get_opt(name).await? {
                        Some(n) if node_is_ready(&n) => {}
                        _ => return Ok(false),
                    }
                }
                Ok(true)
            }
        })
        .await
    }

    /// Creates a namespace (if missing) and waits for its `default` ServiceAccount: until the
    /// ServiceAccount controller has made it, the ServiceAccount admission plugin refuses Pods.
    pub async fn create_namespace(&self, name: &str) -> Result<()> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let ns = serde_json::json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } });
        namespaces
            .patch(name, &PatchParams::apply("sre-e2e"), &Patch::Apply(&ns))
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        let sas: Api<ServiceAccount> = Api::namespaced(self.client.clone(), name);
        let what = format!("the default ServiceAccount in {name}");
        wait_until(self.id, Duration::from_secs(30), &what, || {
            let sas = sas.clone();
            async move { Ok(sas.get_opt("default").await?.is_some()) }
        })
        .await
    }

    /// Makes `kubectl logs` (and the API's pod log endpoint) serve `current`, and with
    /// `--previous` serve `previous`, for `container` of `pod` in `namespace` (every Pod of the
    /// namespace when `pod` is None). Each line of the texts becomes one line of a CRI log
    /// file in the cluster's folder, named in a kwok ClusterLogs object; calling it again
    /// replaces the texts. kwok picks the object up within a fraction of a second.
    pub async fn set_logs(
        &self,
        namespace: &str,
        pod: Option<&str>,
        container: &str,
        current: &str,
        previous: &str,
    ) -> Result<()> {
        let folder = self
            .dir
            .join("container-logs")
            .join(namespace)
            .join(pod.unwrap_or("_all"));
        std::fs::create_dir_all(&folder)?;
        let now = k8s_openapi::jiff::Timestamp::now();
        let cri = |text: &str, base: k8s_openapi::jiff::Timestamp| -> String {
            text.lines()
                .enumerate()
                .map(|(i, line)| {
                    let t = base + k8s_openapi::jiff::SignedDuration::from_millis(i as i64);
                    format!("{t} stdout F {line}\n")
                })
                .collect()
        };
        let current_file = folder.join(format!("{container}.log"));
        let previous_file = folder.join(format!("{container}.previous.log"));
        let earlier = now - k8s_openapi::jiff::SignedDuration::from_secs(60);
        std::fs::write(&current_file, cri(current, now))?;
        std::fs::write(&previous_file, cri(previous, earlier))?;

        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("kwok.x-k8s.io", "v1alpha1", "ClusterLogs"),
            "clusterlogs",
        );
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
        let name = format!("sre-e2e.{namespace}.{}.{container}", pod.unwrap_or("all"));
        let mut selector = serde_json::json!({ "matchNamespaces": [namespace] });
        if let Some(pod) = pod {
            selector["matchNames"] = serde_json::json!([pod]);
        }
        let obj = serde_json::json!({
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "ClusterLogs",
            "metadata": { "name": name },
            "spec": {
                "selector": selector,
                "logs": [{
                    "containers": [container],
                    "logsFile": current_file,
                    "previousLogsFile": previous_file,
                }],
            },
        });
        api.patch(
            &name,
            &PatchParams::apply("sre-e2e").force(),
            &Patch::Apply(&obj),
        )
        .await
        .with_context(|| format!("creating ClusterLogs {name}"))?;
        Ok(())
    }

    /// Stops the cluster now (what Drop does).
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(id) = self.id.take() {
            process::stop(id);
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_start_that_lost_a_race_is_tried_again() {
        // As CI printed it (process::check_alive's error, kwok's log tail abridged).
        let crash = anyhow!(
            "kwok exited during start-up (exit status: 2); last lines of /tmp/sre-e2e-L8SGWB/logs/kwok.log:\n\
             {{\"level\":\"INFO\",\"msg\":\"Creating lease\",\"node\":\"kwok-node-1\"}}\n\
             fatal error: concurrent map writes\n\ngoroutine 69 [running]:\n\
             github.com/wzshiming/easycel.getTypeValue({{0x2889238, 0x25f8280}})"
        )
        .context("waiting for nodes [\"kwok-node-0\", \"kwok-node-1\"] to be Ready");
        assert!(start_race(&crash));
        let port = anyhow!("listen tcp 127.0.0.1:41235: bind: address already in use")
            .context("etcd exited during start-up (exit status: 1)");
        assert!(start_race(&port));
        // A kwok that refuses its configuration refuses it again: said at once.
        let refused = anyhow!(
            "kwok exited during start-up (exit status: 1); last lines of kwok.log:\n\
             playStageParallelism must be greater than 0"
        );
        assert!(!start_race(&refused));
        let apiserver = anyhow!(
            "kube-apiserver exited during start-up (exit status: 1): fatal error: concurrent map writes"
        );
        assert!(!start_race(&apiserver));
    }
}

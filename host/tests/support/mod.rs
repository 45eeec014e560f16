//! Helpers shared by several test crates (`mod support;`); each crate uses a part of them.
#![allow(dead_code)]

pub mod mock_api;
pub mod openai;
pub mod operator;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The kubectl built beside the test control plane (v1.36, with kustomize), else the one on PATH.
pub fn kubectl_program() -> PathBuf {
    sre_e2e::ensure_binaries()
        .map(|dir| dir.join("kubectl"))
        .ok()
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

/// Runs kubectl against `cluster` (its kubeconfig) and returns its stdout; a failure is an error
/// that carries what kubectl printed.
pub fn kubectl(cluster: &sre_e2e::TestCluster, args: &[&str]) -> Result<String> {
    let out = cluster.kubectl().args(args).output()?;
    if !out.status.success() {
        bail!(
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A loopback cluster with the CRDs, namespace `ns`, and a DebugPolicy `shop-everything`
/// selecting it (`spec` merged into its spec); `None` (said on stderr) for a cluster named by
/// `SRE_OPERATOR_E2E_KUBECONFIG`, whose audit log and fault stages these tests need.
pub async fn cluster_with_policy(
    test: &str,
    ns: &str,
    spec: serde_json::Value,
) -> Result<Option<sre_e2e::TestCluster>> {
    cluster_with_options_and_policy(test, sre_e2e::ClusterOptions::default(), ns, spec).await
}

/// [`cluster_with_policy`] on a cluster started with `options`.
pub async fn cluster_with_options_and_policy(
    test: &str,
    options: sre_e2e::ClusterOptions,
    ns: &str,
    spec: serde_json::Value,
) -> Result<Option<sre_e2e::TestCluster>> {
    let cluster = sre_e2e::TestCluster::start(options).await?;
    if cluster.is_external() {
        eprintln!("{test}: skipped: needs a cluster this harness starts (fault stages, audit log)");
        return Ok(None);
    }
    sre_e2e::demo::install_crds(&cluster, &repo_root().join("crds"))?;
    cluster.create_namespace(ns).await?;
    let mut policy_spec = serde_json::json!({ "rules": [{ "namespaces": [ns] }] });
    if let (Some(into), Some(extra)) = (policy_spec.as_object_mut(), spec.as_object()) {
        into.extend(extra.clone());
    }
    apply_json(
        &cluster,
        "policy",
        serde_json::json!({
            "apiVersion": "sre-operator.dev/v1alpha1",
            "kind": "DebugPolicy",
            "metadata": { "name": "shop-everything" },
            "spec": policy_spec,
        }),
    )?;
    Ok(Some(cluster))
}

/// Deployment `worker` (label app=worker) in `ns`, at a 128Mi limit, OOM-killed by the kwok
/// fault stage.
pub async fn create_oom_worker(client: &kube::Client, ns: &str) -> Result<()> {
    let deployment = sre_e2e::demo::deployment(
        "worker",
        serde_json::json!({ "app": "worker" }),
        Some(sre_e2e::fault::OOMKILLED),
        serde_json::json!([]),
        serde_json::json!({ "requests": { "memory": "64Mi" }, "limits": { "memory": "128Mi" } }),
    );
    kube::Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), ns)
        .create(&Default::default(), &serde_json::from_value(deployment)?)
        .await?;
    Ok(())
}

/// The name of the first Pod in `ns` matching `selector`, once the controllers made one (60 s).
pub async fn first_pod(client: &kube::Client, ns: &str, selector: &str) -> Result<String> {
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client.clone(), ns);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let list = pods
            .list(&kube::api::ListParams::default().labels(selector))
            .await?;
        if let Some(name) = list.items.first().and_then(|p| p.metadata.name.clone()) {
            return Ok(name);
        }
        if std::time::Instant::now() > deadline {
            bail!("no Pod matching {selector} in {ns} within 60 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Writes `objects` (JSON) into the cluster's folder as `<name>.json` and applies it.
pub fn apply_json(
    cluster: &sre_e2e::TestCluster,
    name: &str,
    objects: serde_json::Value,
) -> Result<()> {
    let file = cluster.dir().join(format!("{name}.json"));
    std::fs::write(&file, objects.to_string())?;
    kubectl(cluster, &["apply", "-f", file.to_str().unwrap()])?;
    Ok(())
}

/// A copy of `deploy/` and `crds/` as a fresh clone has them (no build output in
/// `deploy/plugins/`), in a temporary folder.
pub fn fresh_deploy() -> Result<tempfile::TempDir> {
    let work = tempfile::tempdir()?;
    let root = repo_root();
    for dir in ["deploy", "crds"] {
        copy_dir(&root.join(dir), &work.path().join(dir))?;
    }
    for entry in std::fs::read_dir(work.path().join("deploy/plugins"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            std::fs::remove_file(path)?;
        }
    }
    Ok(work)
}

/// `kubectl kustomize deploy/` as objects, rendered from [`fresh_deploy`].
pub fn render_deploy() -> Result<Vec<Value>> {
    let work = fresh_deploy()?;
    let out = Command::new(kubectl_program())
        .arg("kustomize")
        .arg(work.path().join("deploy"))
        .output()
        .context("running kubectl kustomize")?;
    if !out.status.success() {
        bail!(
            "kubectl kustomize deploy/ failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8(out.stdout)?;
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let mut value = Value::deserialize(doc).context("a rendered document is not YAML")?;
        // kustomize wraps binaryData's base64 across lines; the API server's decoder skips
        // the line breaks, k8s-openapi's does not.
        if let Some(binary) = value.get_mut("binaryData").and_then(Value::as_object_mut) {
            for encoded in binary.values_mut() {
                if let Some(text) = encoded.as_str() {
                    *encoded = text.split_whitespace().collect::<String>().into();
                }
            }
        }
        if !value.is_null() {
            objects.push(value);
        }
    }
    Ok(objects)
}

/// Copies the folder `from` to `to`, with everything below it.
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The Python MCP SDK the tests use; the virtualenv is keyed by it and reused.
pub const PYTHON_MCP: &str = "2.3.0";

/// A virtualenv with `mcp==PYTHON_MCP`, made once under ~/.cache/sre-operator and reused.
pub fn python_with_mcp() -> PathBuf {
    let home = std::env::var_os("HOME").expect("HOME is set");
    let venv = Path::new(&home).join(format!(".cache/sre-operator/mcp-venv-{PYTHON_MCP}"));
    let python = venv.join("bin/python");
    let ready = venv.join(".installed");
    if !ready.exists() {
        let _ = std::fs::remove_dir_all(&venv);
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 runs");
        assert!(
            status.success(),
            "python3 -m venv failed: on Debian, apt-get install python3-venv"
        );
        let status = Command::new(&python)
            .args(["-m", "pip", "install", "-q", &format!("mcp=={PYTHON_MCP}")])
            .status()
            .expect("pip runs");
        assert!(status.success(), "pip install mcp=={PYTHON_MCP} failed");
        std::fs::write(&ready, PYTHON_MCP).unwrap();
    }
    python
}

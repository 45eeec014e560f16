//! The Helm chart (`charts/sre-operator`) with helm built from its pinned Go module
//! (`tests/cluster/build-tool.sh helm`): it lints, renders with default values exactly the objects
//! `kubectl kustomize deploy/` renders (compared object by object), refuses a mistyped value
//! through its schema, keeps its CRDs identical to `crds/`, and installs, upgrades and uninstalls
//! on the loopback cluster.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use serde::Deserialize;
use serde_json::Value;

/// helm, built (once, cached by version) from `tests/cluster/go/helm`.
fn helm() -> Result<PathBuf> {
    sre_e2e::go_tool("helm")
}

fn chart() -> PathBuf {
    support::repo_root().join("charts/sre-operator")
}

/// Runs helm with `args`; its stdout, or an error with what it printed.
fn run_helm(args: &[&str], kubeconfig: Option<&std::path::Path>) -> Result<String> {
    let mut cmd = Command::new(helm()?);
    cmd.args(args);
    if let Some(kc) = kubeconfig {
        cmd.env("KUBECONFIG", kc);
    }
    // helm keeps its own cache and config; a test must not touch the user's.
    let home = std::env::temp_dir().join("sre-operator-helm-home");
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    let out = cmd.output().context("running helm")?;
    if !out.status.success() {
        bail!(
            "helm {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Kinds without a namespace: kustomize sets one on kinds it does not know (the admission
/// policy), which the API server ignores.
const CLUSTER_SCOPED: [&str; 6] = [
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
];

/// `value` with every whole float (`0.0`) written as an integer (`0`).
fn integral(value: Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(integral).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, integral(v))).collect())
        }
        other => other,
    }
}

/// A YAML stream as objects keyed by kind, namespace and name.
fn objects(text: &str) -> Result<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let mut value = Value::deserialize(doc)?;
        if value.is_null() {
            continue;
        }
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        if CLUSTER_SCOPED.contains(&kind.as_str())
            && let Some(meta) = value["metadata"].as_object_mut()
        {
            meta.remove("namespace");
        }
        let key = format!(
            "{kind} {}/{}",
            value["metadata"]["namespace"].as_str().unwrap_or("-"),
            value["metadata"]["name"].as_str().unwrap_or_default()
        );
        if out.insert(key.clone(), value).is_some() {
            bail!("{key} is rendered twice");
        }
    }
    Ok(out)
}

#[test]
fn the_chart_lints_and_renders_what_kustomize_renders() -> Result<()> {
    let chart = chart();
    run_helm(&["lint", chart.to_str().unwrap(), "--strict"], None)?;
    let helm = objects(&run_helm(
        &[
            "template",
            "sre-operator",
            chart.to_str().unwrap(),
            "--namespace",
            "sre-operator",
            "--include-crds",
        ],
        None,
    )?)?;
    let fresh = support::fresh_deploy()?;
    let out = Command::new(support::kubectl_program())
        .arg("kustomize")
        .arg(fresh.path().join("deploy"))
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kustomize = objects(&String::from_utf8(out.stdout)?)?;
    let only = |a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>| -> Vec<String> {
        a.keys().filter(|k| !b.contains_key(*k)).cloned().collect()
    };
    assert!(
        only(&kustomize, &helm).is_empty() && only(&helm, &kustomize).is_empty(),
        "only kustomize renders {:?}; only helm renders {:?}",
        only(&kustomize, &helm),
        only(&helm, &kustomize)
    );
    for (key, expected) in &kustomize {
        let got = &helm[key];
        // Helm installs crds/ as they are, untemplated: the part-of label kustomize adds to
        // every object is the one difference allowed, on CRDs only.
        let (mut expected, mut got) = (expected.clone(), got.clone());
        if key.starts_with("CustomResourceDefinition ") {
            for object in [&mut expected, &mut got] {
                object["metadata"]
                    .as_object_mut()
                    .map(|m| m.remove("labels"));
            }
        }
        // crds/ writes `minimum: 0.0` where kustomize writes `0`: the same number.
        let (expected, got) = (&integral(expected), &integral(got));
        assert!(
            got == expected,
            "{key} differs:\n--- kustomize\n{}\n--- helm\n{}",
            serde_yaml::to_string(expected)?,
            serde_yaml::to_string(got)?
        );
    }
    Ok(())
}

#[test]
fn a_mistyped_value_fails_and_the_charts_crds_are_the_repositorys() -> Result<()> {
    let chart = chart();
    for (set, what) in [("replica=2", "replica"), ("replicas=two", "replicas")] {
        let err = run_helm(
            &["template", "x", chart.to_str().unwrap(), "--set", set],
            None,
        )
        .expect_err(set)
        .to_string();
        assert!(err.contains("schema") && err.contains(what), "{set}: {err}");
    }
    for entry in std::fs::read_dir(support::repo_root().join("crds"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let copy = chart.join("crds").join(path.file_name().unwrap());
            assert_eq!(
                std::fs::read_to_string(&copy)
                    .with_context(|| format!("{} is missing", copy.display()))?,
                std::fs::read_to_string(&path)?,
                "{} differs from crds/: copy it again",
                copy.display()
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(chart.join("files/plugins.yaml"))?,
        std::fs::read_to_string(support::repo_root().join("deploy/plugins/plugins.yaml"))?,
        "the chart's plugin manifest differs from deploy/'s"
    );
    Ok(())
}

#[test]
fn mcp_enabled_serves_mcp_on_the_operator_and_its_service() -> Result<()> {
    let chart = chart();
    let rendered = objects(&run_helm(
        &[
            "template",
            "sre-operator",
            chart.to_str().unwrap(),
            "--namespace",
            "sre-operator",
            "--set",
            "mcp.enabled=true",
            "--set",
            "mcp.port=9443",
        ],
        None,
    )?)?;
    let container = &rendered["Deployment sre-operator/sre-operator"]["spec"]["template"]["spec"]["containers"]
        [0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .context("args")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--mcp-addr=0.0.0.0:9443"), "{args:?}");
    assert!(
        container["ports"]
            .as_array()
            .context("ports")?
            .iter()
            .any(|p| p["name"] == "mcp" && p["containerPort"] == 9443)
    );
    let service = &rendered["Service sre-operator/sre-operator-metrics"];
    assert!(
        service["spec"]["ports"]
            .as_array()
            .context("service ports")?
            .iter()
            .any(|p| p["name"] == "mcp" && p["port"] == 9443 && p["targetPort"] == "mcp"),
        "{service:#?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chart_installs_upgrades_and_uninstalls() -> Result<()> {
    let cluster = sre_e2e::TestCluster::start(Default::default()).await?;
    if cluster.is_external() {
        eprintln!(
            "helm: skipped the install: it would change $SRE_OPERATOR_E2E_KUBECONFIG's cluster"
        );
        return Ok(());
    }
    let chart = chart();
    let kc = Some(cluster.kubeconfig());
    let base = [
        "sre-operator",
        chart.to_str().unwrap(),
        "--namespace",
        "sre-operator",
        "--wait=false",
    ];
    let mut install = vec!["install"];
    install.extend(base);
    install.extend(["--create-namespace", "--set", "namespace.create=false"]);
    run_helm(&install, kc)?;
    let deployments: kube::Api<Deployment> =
        kube::Api::namespaced(cluster.client(), "sre-operator");
    let replicas = |d: &Deployment| d.spec.as_ref().and_then(|s| s.replicas);
    assert_eq!(replicas(&deployments.get("sre-operator").await?), Some(2));

    let mut upgrade = vec!["upgrade"];
    upgrade.extend(base);
    upgrade.extend(["--set", "namespace.create=false", "--set", "replicas=1"]);
    run_helm(&upgrade, kc)?;
    assert_eq!(replicas(&deployments.get("sre-operator").await?), Some(1));

    run_helm(
        &[
            "uninstall",
            "sre-operator",
            "--namespace",
            "sre-operator",
            "--wait",
        ],
        kc,
    )?;
    assert!(deployments.get_opt("sre-operator").await?.is_none());
    // CRDs stay, as Helm leaves them: reports outlive the chart.
    let crds: kube::Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = kube::Api::all(cluster.client());
    assert!(
        crds.get_opt("diagnosticreports.sre-operator.dev")
            .await?
            .is_some()
    );
    Ok(())
}

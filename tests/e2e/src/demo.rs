//! The seed's two scenarios as workloads on a loopback cluster: what `tests/cluster/up.sh --demo`
//! installs for a newcomer to try the operator on, and what the operator's end-to-end test
//! builds its scenarios from.
//!
//! - `production/payment` requests 12Gi on 8Gi nodes: the scheduler says `Insufficient memory`.
//! - `default/critical-app` has `REDIS_HOST=redis`, but the Service is `redis-master`: it
//!   crash-loops, and its previous log says `Connection refused to redis:6379`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::fixtures::DeploymentBuilder;
use crate::{TestCluster, fault};

/// What critical-app printed before it died (served by `kubectl logs --previous`).
pub const PREVIOUS_LOG: &str = "\
2026-11-25T09:41:06.118Z  INFO critical_app: starting critical-app version=1.8.2 commit=4f2a9c1 pid=1
2026-11-25T09:41:06.124Z  INFO cache: connecting to redis host=redis port=6379 pool_size=8
2026-11-25T09:41:06.131Z  WARN cache: dial tcp: connect to redis:6379 failed: Connection refused, retrying attempt=1 max_attempts=3 backoff_ms=500
2026-11-25T09:41:07.512Z ERROR cache: dial tcp: connect to redis:6379 failed: Connection refused
Error: Connection refused to redis:6379";

/// What the current attempt has printed so far.
pub const CURRENT_LOG: &str = "\
2026-11-25T09:41:20.101Z  INFO critical_app: starting critical-app version=1.8.2 commit=4f2a9c1 pid=1
2026-11-25T09:41:20.107Z  INFO cache: connecting to redis host=redis port=6379 pool_size=8";

/// A one-replica Deployment labelled `labels` (a JSON object), its Pods too; `fault` labels the
/// Pod template for the kwok fault stages, with quick restarts so that a crash loop shows within
/// seconds.
pub fn deployment(
    name: &str,
    labels: Value,
    fault: Option<&str>,
    env: Value,
    resources: Value,
) -> Value {
    let mut deployment = DeploymentBuilder::new(name)
        .pod_spec(json!({ "terminationGracePeriodSeconds": 0 }))
        .container(json!({
            "name": "app",
            "image": format!("registry.example.com/shop/{name}:1.8.2"),
            "env": env,
            "resources": resources,
        }));
    for (key, value) in labels.as_object().into_iter().flatten() {
        let value = value.as_str().unwrap_or_default();
        deployment = deployment.label(key, value).match_label(key, value);
    }
    if let Some(f) = fault {
        deployment = deployment
            .pod_label(fault::LABEL, f)
            .pod_annotation(fault::BACKOFF_ANNOTATION, "1s")
            .pod_annotation(fault::DELAY_ANNOTATION, "300ms");
    }
    deployment.json()
}

/// The seed's policy for critical-app, and one for payment (the seed's Pending scenario).
pub fn policies() -> Value {
    let policy = |name: &str, namespace: &str, app: &str| {
        json!({
            "apiVersion": "sre-operator.dev/v1alpha1",
            "kind": "DebugPolicy",
            "metadata": { "name": name },
            "spec": { "rules": [{
                "namespaces": [namespace],
                "selector": { "matchLabels": { "app": app } },
            }] },
        })
    };
    json!([
        policy("protect-critical-services", "default", "critical-app"),
        policy("protect-payment", "production", "payment"),
    ])
}

/// redis-master: the Deployment and Service critical-app should have used.
pub fn redis_master() -> Vec<Value> {
    vec![
        deployment(
            "redis-master",
            json!({ "app": "redis" }),
            None,
            json!([]),
            json!({}),
        ),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": "redis-master" },
            "spec": {
                "selector": { "app": "redis" },
                "ports": [{ "name": "redis", "port": 6379, "targetPort": 6379 }],
            },
        }),
    ]
}

/// critical-app with the wrong Service name, crash-looping.
pub fn critical_app(name: &str, component: &str) -> Value {
    deployment(
        name,
        json!({ "app": "critical-app", "component": component }),
        Some(fault::CRASHLOOP),
        json!([{ "name": "REDIS_HOST", "value": "redis" },
               { "name": "REDIS_PORT", "value": "6379" }]),
        json!({}),
    )
}

/// payment, asking for more memory than any node has.
pub fn payment() -> Value {
    deployment(
        "payment",
        json!({ "app": "payment" }),
        None,
        json!([]),
        json!({ "requests": { "memory": "12Gi", "cpu": "250m" } }),
    )
}

/// Installs (server-side) the CustomResourceDefinitions in `crds` and waits until the API
/// server serves both.
pub fn install_crds(cluster: &TestCluster, crds: &Path) -> Result<()> {
    for args in [
        vec!["apply", "--server-side", "-f", crds.to_str().unwrap()],
        vec![
            "wait",
            "--for=condition=Established",
            "--timeout=30s",
            "crd/debugpolicies.sre-operator.dev",
            "crd/diagnosticreports.sre-operator.dev",
        ],
    ] {
        let out = cluster
            .kubectl()
            .args(&args)
            .output()
            .context("running kubectl")?;
        if !out.status.success() {
            bail!(
                "kubectl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // A CRD the API server has to warn about (an unknown `format`, say) is a defect too.
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("Warning:") {
            bail!("kubectl {args:?} warned: {stderr}");
        }
    }
    Ok(())
}

/// Installs the CRDs from `repo/crds`, the policies and both scenarios.
pub async fn install(cluster: &TestCluster, repo: &Path) -> Result<()> {
    let kubectl = |args: &[&str], input: Option<&Value>| -> Result<()> {
        let mut cmd = cluster.kubectl();
        cmd.args(args);
        let file;
        if let Some(objects) = input {
            file = cluster.dir().join("demo-objects.json");
            std::fs::write(
                &file,
                json!({ "apiVersion": "v1", "kind": "List", "items": objects }).to_string(),
            )?;
            cmd.arg("-f").arg(&file);
        }
        let out = cmd.output().context("running kubectl")?;
        if !out.status.success() {
            bail!(
                "kubectl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    install_crds(cluster, &repo.join("crds"))?;
    kubectl(&["apply"], Some(&policies()))?;
    cluster.create_namespace("production").await?;
    cluster
        .set_logs("default", None, "app", CURRENT_LOG, PREVIOUS_LOG)
        .await?;
    let mut default_ns = redis_master();
    default_ns.push(critical_app("critical-app", "api"));
    kubectl(&["-n", "default", "apply"], Some(&Value::Array(default_ns)))?;
    kubectl(
        &["-n", "production", "apply"],
        Some(&Value::Array(vec![payment()])),
    )?;
    Ok(())
}

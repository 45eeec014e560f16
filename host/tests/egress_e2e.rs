//! The operator, run for real as the deploy/ ServiceAccount on a loopback control plane with an
//! API audit log, with the prometheus plugin granted egress to a real Prometheus (which scrapes a
//! loopback exporter serving the kubelet's container series) and a bearer credential from a
//! Secret in its own namespace:
//!
//! - an OOM-looping Deployment at a 128Mi limit whose container peaked at 300Mi gets a patch
//!   sized from that peak (300Mi + 25% = 375Mi, rounded up to 384Mi), with the Prometheus query
//!   in the report's evidence;
//! - the credential reaches neither the report nor the operator's log, and the operator's only
//!   Secret request is a `get` of that one Secret by name (no list, no watch, no other Secret).
//!
//! What egress refuses (URLs outside the grant, redirects out of it, rebinding) and that a plugin
//! never sees the credential are tested with a real component on loopback in `egress.rs`.

mod support;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;
use sre_e2e::prometheus::{Exporter, Prometheus, container_labels};
use support::kubectl;
use support::operator::{OPERATOR_USER, Operator, operator_setup, report_api, wait_phase};

const NS: &str = "shop";
const TOKEN: &str = "prom-bearer-7f3a9c1e5b2d4c6a8e0f1b3d5a7c9e1f";
const MI: f64 = 1048576.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_fix_is_sized_from_prometheus_and_the_credential_stays_secret() -> Result<()> {
    let Some(cluster) = support::cluster_with_policy("egress-e2e", NS, json!({})).await? else {
        return Ok(());
    };
    let client = cluster.client();

    // The worker: OOM-killed at 128Mi (the kwok fault stage); its pod name is the Deployment's.
    support::create_oom_worker(&client, NS).await?;
    let pod = support::first_pod(&client, NS, "app=worker").await?;

    // Its working set as the kubelet reports it: 250Mi, with a 300Mi peak every 4 s.
    let exporter = Exporter::start().await?;
    exporter.add(
        "container_memory_working_set_bytes",
        container_labels(NS, &pod, "app"),
        Box::new(|t| {
            if t.floor() % 4.0 == 0.0 {
                300.0 * MI
            } else {
                250.0 * MI
            }
        }),
    );
    let prometheus = Prometheus::start(&[exporter.addr]).await?;
    prometheus
        .wait_for(
            &format!("max_over_time(container_memory_working_set_bytes{{pod=\"{pod}\"}}[5m])"),
            300.0 * MI,
            Duration::from_secs(60),
        )
        .await?;

    // The operator as deploy/ installs it, plus the prometheus plugin with its grant and credential.
    let setup = operator_setup(&cluster).await?;
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": "sre-operator-egress", "namespace": "sre-operator" },
        "stringData": { "prometheus-token": TOKEN },
    });
    let secret_file = cluster.dir().join("egress-secret.json");
    std::fs::write(&secret_file, secret.to_string())?;
    kubectl(&cluster, &["apply", "-f", secret_file.to_str().unwrap()])?;
    let manifest_path = setup.plugins.join("plugins.yaml");
    let mut manifest: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&manifest_path)?)?;
    manifest["plugins"]
        .as_array_mut()
        .context("plugins.yaml lists no plugins")?
        .push(json!({
            "name": "prometheus",
            "world": "tool",
            "builtin": "prometheus",
            "limits": { "timeout": "5s" },
            "settings": { "url": prometheus.url },
            "egress": [{
                "url": format!("{}/api/v1/", prometheus.url),
                "auth": {
                    "secretRef": { "name": "sre-operator-egress", "key": "prometheus-token" },
                    "scheme": "Bearer",
                },
            }],
        }));
    let manifest = serde_yaml::to_string(&manifest)?;
    std::fs::write(&manifest_path, manifest)?;
    let op = Operator::start(&cluster, &setup, "sre-operator-egress-0", NS, false)?;
    op.await_ready(Duration::from_secs(60))?;

    let reports = report_api(&client, NS);
    let report = wait_phase(
        &reports,
        "deployment-worker-oomkilled",
        &["AwaitingApproval", "NoFix", "Failed"],
        Duration::from_secs(120),
        &op,
    )
    .await?;
    let patch = report["status"]["suggestedPatch"]["patch"]
        .as_array()
        .context("no patch")?;
    let limit = patch
        .iter()
        .find(|o| {
            o["op"] == "replace"
                && o["path"]
                    .as_str()
                    .unwrap_or("")
                    .ends_with("/resources/limits/memory")
        })
        .map(|o| o["value"].clone());
    let evidence = report["status"]["findings"]["evidence"].to_string();
    if limit != Some(json!("384Mi")) {
        bail!(
            "the patch is not sized from the 300Mi peak: {report:#}\n--- operator log ---\n{}",
            op.tail()
        );
    }
    assert!(evidence.contains("peaked at 300Mi"), "{evidence}");
    assert!(
        evidence.contains("max_over_time(container_memory_working_set_bytes"),
        "{evidence}"
    );
    assert!(
        evidence.contains("sizing: the observed working-set peak 300Mi"),
        "{evidence}"
    );

    // The credential: in neither the report nor the log; the Secret read by name, and only it.
    let stored = kubectl(&cluster, &["get", "diagnosticreports", "-A", "-o", "json"])?;
    assert!(
        !stored.contains(TOKEN),
        "the credential is in a stored report"
    );
    assert!(
        !op.log().contains(TOKEN),
        "the credential is in the operator's log"
    );
    let audit = cluster.audited_requests_of(OPERATOR_USER)?;
    let secret_requests: Vec<(String, String)> = audit
        .iter()
        .filter(|e| e["objectRef"]["resource"] == "secrets")
        .map(|e| {
            (
                e["verb"].as_str().unwrap_or("").to_string(),
                e["requestURI"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        !secret_requests.is_empty(),
        "the operator never read its credential: {audit:?}"
    );
    for (verb, uri) in &secret_requests {
        assert!(
            verb == "get" && uri == "/api/v1/namespaces/sre-operator/secrets/sre-operator-egress",
            "an operator request on secrets other than a get of its credential: {verb} {uri}"
        );
    }
    eprintln!(
        "egress-e2e: patch 128Mi -> 384Mi from a 300Mi peak; {} audited Secret reads, all a get of sre-operator-egress",
        secret_requests.len()
    );
    drop(op);
    drop(prometheus);
    cluster.stop();
    Ok(())
}

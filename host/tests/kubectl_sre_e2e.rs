//! The `kubectl-sre` binary against a real control plane on loopback (`sre_e2e`). No operator
//! runs: the reports are written the way the operator writes them (the object, then its status
//! through the status subresource), and the test checks what the binary reads and writes on the
//! API server.
//!
//! One test, one cluster: list, show (a diff of the live Deployment), approve --yes (the decision
//! is on the server), reject on a second report, and rollback on a third, Applied one (the
//! Deployment gets its old value back, and the report an Event).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::watcher;
use serde_json::{Value, json};
use sre_e2e::{ClusterOptions, TestCluster, wait};
use support::kubectl;

const NS: &str = "kubectl-sre-e2e";
const ENV_PATH: &str = "/spec/template/spec/containers/0/env/0/value";

fn reports(client: &kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("sre-operator.dev", "v1alpha1", "DiagnosticReport"),
        "diagnosticreports",
    );
    Api::namespaced_with(client.clone(), NS, &ar)
}

struct Run {
    code: i32,
    out: String,
    err: String,
}

/// Runs the built `kubectl-sre` with the cluster's kubeconfig in KUBECONFIG.
fn kubectl_sre(cluster: &TestCluster, args: &[&str]) -> Result<Run> {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-sre"))
        .args(args)
        .env("KUBECONFIG", cluster.kubeconfig())
        .stdin(std::process::Stdio::null())
        .output()
        .context("running kubectl-sre")?;
    Ok(Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn ok(run: Run, what: &str) -> Result<String> {
    if run.code != 0 {
        bail!(
            "kubectl sre {what} exited {}:\n{}\n{}",
            run.code,
            run.out,
            run.err
        );
    }
    Ok(run.out)
}

fn redis_host(d: &Deployment) -> Option<String> {
    d.spec.as_ref()?.template.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == "REDIS_HOST")?
        .value
        .clone()
}

fn op(op: &str, value: &str) -> Value {
    json!({"op": op, "path": ENV_PATH, "value": value})
}

/// Creates a report and writes its status through the status subresource, as the operator does.
async fn write_report(
    api: &Api<DynamicObject>,
    name: &str,
    class: &str,
    status: Value,
) -> Result<()> {
    let spec = json!({
        "pod": {"namespace": NS, "name": "critical-app-7d4b9c6f5-h8x2m", "uid": ""},
        "workload": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "critical-app"},
        "failure": {"class": class, "reason": "Error", "container": "app",
                    "evidence": ["container app: waiting in CrashLoopBackOff"]},
        "policy": "protect-critical-services",
    });
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "sre-operator.dev/v1alpha1", "kind": "DiagnosticReport",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }))?;
    api.create(&PostParams::default(), &object)
        .await
        .with_context(|| format!("creating report {name}"))?;
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .with_context(|| format!("writing the status of {name}"))?;
    Ok(())
}

/// The status of a report whose redis patch awaits a decision, reviewed at `version`.
fn awaiting(version: &str) -> Value {
    json!({
        "phase": "AwaitingApproval",
        "findings": {
            "summary": "Container app crash-loops: connection refused to redis:6379 because Service redis does not exist",
            "rootCause": "The application connects to redis:6379, but there is no Service redis; redis-master serves that port.",
            "evidence": ["log: Error: Connection refused to redis:6379"],
        },
        "reasoningChain": [
            {"observation": "critical-app is CrashLoopBackOff", "thought": "Read the previous log.",
             "action": {"tool": "fetch_logs", "arguments": {"pod": "critical-app-7d4b9c6f5-h8x2m", "previous": true},
                        "result": "Error: Connection refused to redis:6379"}},
            {"observation": "There is no Service redis.", "thought": "Point REDIS_HOST at redis-master."},
        ],
        "suggestedPatch": {
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": NS, "name": "critical-app"},
            "patch": [op("test", "redis"), op("replace", "redis-master")],
            "explanation": "point REDIS_HOST at redis-master",
        },
        "safety": {"verdict": "Allowed", "filter": "patch-safety"},
        "targetResourceVersion": version,
        "message": "Point REDIS_HOST at redis-master.",
    })
}

/// The Deployment's resourceVersion once it stayed the same for a second.
async fn settled(api: &Api<Deployment>, name: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    loop {
        let now = api
            .get(name)
            .await?
            .metadata
            .resource_version
            .unwrap_or_default();
        if now == last {
            return Ok(now);
        }
        ensure!(Instant::now() < deadline, "{name} kept changing");
        last = now;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_sre_end_to_end() -> Result<()> {
    let cluster = TestCluster::start(ClusterOptions::default()).await?;
    let client = cluster.client();
    sre_e2e::demo::install_crds(&cluster, &support::repo_root().join("crds"))?;
    if cluster.is_external() {
        // A cluster used before: start from a clean slate.
        let _ = kubectl(
            &cluster,
            &[
                "delete",
                "namespace",
                NS,
                "--ignore-not-found",
                "--wait=true",
            ],
        );
    }
    cluster.create_namespace(NS).await?;

    // The workload with the wrong REDIS_HOST.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "critical-app", "labels": {"app": "critical-app"}},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "critical-app"}},
                 "template": {"metadata": {"labels": {"app": "critical-app"}},
                              "spec": {"containers": [{"name": "app", "image": "registry.example.com/shop/critical-app:1.8.2",
                                        "env": [{"name": "REDIS_HOST", "value": "redis"}]}]}}},
    }))?;
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .context("creating the Deployment")?;
    // Let the Deployment controller's status writes settle, so that the version the reports are
    // reviewed at is still the live one when `show` reads it.
    let version = settled(&deployments, "critical-app").await?;

    let api = reports(&client);
    let approve = "deployment-critical-app-crashloopbackoff";
    let reject = "deployment-critical-app-probefailure";
    write_report(&api, approve, "CrashLoopBackOff", awaiting(&version)).await?;
    write_report(&api, reject, "ProbeFailure", awaiting(&version)).await?;

    // list
    let out = ok(kubectl_sre(&cluster, &["list", "-n", NS])?, "list")?;
    let lines: Vec<&str> = out.lines().collect();
    ensure!(lines.len() == 3, "list:\n{out}");
    ensure!(
        lines[0].split_whitespace().collect::<Vec<_>>()
            == ["NAME", "PHASE", "POD", "CLASS", "INCIDENT", "AGE"],
        "list:\n{out}"
    );
    ensure!(
        lines[1].starts_with(approve)
            && lines[1]
                .contains("AwaitingApproval   critical-app-7d4b9c6f5-h8x2m   CrashLoopBackOff"),
        "list:\n{out}"
    );
    ensure!(lines[2].starts_with(reject), "list:\n{out}");
    let out = ok(
        kubectl_sre(&cluster, &["list", "-A", "-o", "json"])?,
        "list -A -o json",
    )?;
    let list: Value = serde_json::from_str(&out)?;
    ensure!(
        list["items"].as_array().is_some_and(|items| items
            .iter()
            .any(|i| i["metadata"]["name"] == approve && i["metadata"]["namespace"] == NS)),
        "list -A -o json:\n{out}"
    );

    // show: the diff of the live Deployment (the version may have moved since: both are fine,
    // but a move must be said).
    let out = ok(kubectl_sre(&cluster, &["show", approve, "-n", NS])?, "show")?;
    ensure!(out.contains("  -          value: redis\n"), "show:\n{out}");
    ensure!(
        out.contains("  +          value: redis-master\n"),
        "show:\n{out}"
    );
    ensure!(
        out.contains("Root cause:  The application connects to redis:6379"),
        "show:\n{out}"
    );
    ensure!(
        out.contains("1.  Observation: critical-app is CrashLoopBackOff"),
        "show:\n{out}"
    );
    ensure!(out.contains("Verdict:  Allowed"), "show:\n{out}");
    let live = deployments.get("critical-app").await?;
    let moved = live.metadata.resource_version.as_deref() != Some(version.as_str());
    ensure!(
        out.contains("changed since the analysis") == moved && !out.contains("DRIFT"),
        "show (drift {moved}):\n{out}"
    );

    // approve --yes: the decision is on the server.
    let out = ok(
        kubectl_sre(&cluster, &["approve", approve, "-n", NS, "--yes"])?,
        "approve",
    )?;
    ensure!(out.contains("approved"), "approve:\n{out}");
    let stored = api.get(approve).await?;
    ensure!(
        stored.data["spec"]["decision"] == "Approved",
        "spec after approve: {}",
        stored.data["spec"]
    );
    // A second decision is refused (exit 1) before anything is written.
    let again = kubectl_sre(&cluster, &["reject", approve, "-n", NS, "--yes"])?;
    ensure!(
        again.code == 1 && again.err.contains("already has spec.decision: Approved"),
        "second decision: {} {}",
        again.code,
        again.err
    );
    // Without --yes and no answer on stdin nothing is written.
    let unanswered = kubectl_sre(&cluster, &["reject", reject, "-n", NS])?;
    ensure!(
        unanswered.code == 1 && unanswered.err.contains("not confirmed"),
        "unanswered: {} {}",
        unanswered.code,
        unanswered.err
    );
    ensure!(
        api.get(reject).await?.data["spec"]
            .get("decision")
            .is_none()
    );

    // reject --yes on the second report.
    ok(
        kubectl_sre(&cluster, &["reject", reject, "-n", NS, "-y"])?,
        "reject",
    )?;
    ensure!(api.get(reject).await?.data["spec"]["decision"] == "Rejected");

    // rollback: the operator applied the fix (REDIS_HOST=redis-master) and recorded how to undo it.
    deployments
        .patch(
            "critical-app",
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(json!([
                op("test", "redis"),
                op("replace", "redis-master")
            ]))?),
        )
        .await
        .context("applying the fix as the operator would")?;
    let applied = "deployment-critical-app-oomkilled";
    let mut status = awaiting(&version);
    status["phase"] = "Unresolved".into();
    let now = Timestamp::now().to_string();
    status["apply"] = json!({
        "startedAt": now, "appliedAt": now, "targetGeneration": 2,
        "rollbackPatch": [op("test", "redis-master"), op("replace", "redis")],
    });
    status["message"] = "after 300s the rollout did not finish".into();
    // As it happened: awaiting approval, approved, then applied.
    write_report(&api, applied, "OOMKilled", awaiting(&version)).await?;
    api.patch(
        applied,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"decision": "Approved"}})),
    )
    .await?;
    api.patch_status(
        applied,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;

    let run = kubectl_sre(&cluster, &["rollback", applied, "-n", NS, "--yes"])?;
    let out = ok(run, "rollback")?;
    ensure!(
        out.contains("deployment.apps/critical-app rolled back"),
        "rollback:\n{out}"
    );
    let d = deployments.get("critical-app").await?;
    ensure!(
        redis_host(&d).as_deref() == Some("redis"),
        "REDIS_HOST after the rollback: {:?}",
        redis_host(&d)
    );
    // The report tells it: an Event regarding it.
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let rolled_back = wait::first(
        &events,
        watcher::Config::default(),
        Duration::from_secs(10),
        |e| {
            e.reason.as_deref() == Some("RolledBack")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(applied)
        },
    )
    .await?;
    ensure!(rolled_back.is_some(), "no RolledBack Event on {applied}");
    // A second rollback finds nothing to do.
    let out = ok(
        kubectl_sre(&cluster, &["rollback", applied, "-n", NS, "--yes"])?,
        "second rollback",
    )?;
    ensure!(
        out.contains("nothing to roll back"),
        "second rollback:\n{out}"
    );
    Ok(())
}

//! Alerts from Alertmanager ([`crate::alerts`]) into reports: a firing alert that names a Pod or
//! a workload a DebugPolicy selects opens the report for that workload and failure class, or
//! joins the one already open (the report name is the workload's and the class's, so duplicate
//! deliveries and a flapping alert land on the same report). Each alert is recorded on the
//! report in the `sre-operator.dev/alerts` annotation, keyed by its fingerprint, with its state:
//! a resolution is recorded there too. An investigation reads those alerts as evidence.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::Context;
use crate::alerts::{Alert, AlertClasses, Target};
use crate::cluster::{ResourceKind, resolve_workload};
use crate::crd::{DiagnosticReport, WorkloadRef, report_name};
use crate::failure::{Detection, may_be_failing};
use crate::triage::{new_report, screen};

/// The annotation a report's alerts are kept in (JSON, newest last).
pub const ALERTS_ANNOTATION: &str = "sre-operator.dev/alerts";
/// Alerts kept per report.
const KEPT: usize = 10;

/// Handles queued webhook payloads until the queue closes.
pub async fn receive(
    ctx: Arc<Context>,
    classes: AlertClasses,
    mut queue: mpsc::Receiver<Vec<Alert>>,
) {
    // An alert read before the policies are would select nothing and be lost until
    // Alertmanager's repeat_interval; meanwhile payloads wait in the queue.
    if !super::listed(&ctx.policies).await {
        return;
    }
    while let Some(alerts) = queue.recv().await {
        if !ctx.is_leader() {
            // Alertmanager sends to every replica behind the Service; the leader acts.
            continue;
        }
        tracing::info!(alerts = alerts.len(), "Alertmanager notification received");
        for alert in alerts {
            if let Err(e) = handle(&ctx, &classes, &alert).await {
                tracing::warn!(alert = %alert.name(), error = %e, "alert not recorded");
            }
        }
    }
}

/// The Pod an alert is about: the named Pod, or a Pod of the named workload (a failing one
/// first), with its workload.
async fn pod_of(ctx: &Context, target: &Target) -> super::Result<Option<(Pod, WorkloadRef)>> {
    let pod = match target {
        Target::Pod { namespace, name } => ctx
            .cluster
            .get(ResourceKind::Pod, Some(namespace), name)
            .await?
            .and_then(|p| serde_json::from_value::<Pod>((*p).clone()).ok()),
        Target::Workload {
            namespace,
            kind,
            name,
        } => {
            let Some(workload) = ctx.cluster.get(*kind, Some(namespace), name).await? else {
                return Ok(None);
            };
            let Some(selector) = workload["spec"]["selector"]["matchLabels"]
                .as_object()
                .cloned()
            else {
                return Ok(None);
            };
            let mut pods: Vec<Pod> = ctx
                .cluster
                .list(ResourceKind::Pod, Some(namespace))
                .await?
                .into_iter()
                .filter(|p| {
                    selector
                        .iter()
                        .all(|(k, v)| p["metadata"]["labels"][k.as_str()] == *v)
                })
                .filter_map(|p| serde_json::from_value::<Pod>((*p).clone()).ok())
                .collect();
            pods.sort_by_key(|p| !may_be_failing(p));
            let mut found = None;
            for pod in pods.into_iter().take(5) {
                let w = resolve_workload(ctx.cluster.as_ref(), &pod).await?;
                if w.kind == kind.kind() && w.name == *name {
                    found = Some(pod);
                    break;
                }
            }
            found
        }
    };
    let Some(pod) = pod else {
        return Ok(None);
    };
    let workload = resolve_workload(ctx.cluster.as_ref(), &pod).await?;
    Ok(Some((pod, workload)))
}

async fn handle(ctx: &Context, classes: &AlertClasses, alert: &Alert) -> super::Result<()> {
    let Some(target) = alert.target() else {
        tracing::info!(alert = %alert.name(), "ignoring an alert that names no Pod or workload (labels namespace with pod, deployment, statefulset, daemonset or job)");
        return Ok(());
    };
    let Some((pod, workload)) = pod_of(ctx, &target).await? else {
        tracing::info!(alert = %alert.name(), ?target, "the alert's Pod or workload is not there");
        return Ok(());
    };
    let class = classes.class(alert);
    let policies = ctx.policy_set();
    let Some(policy) = policies.select(&pod, class) else {
        tracing::info!(alert = %alert.name(), %class, pod = ?pod.metadata.name, "ignoring an alert: no DebugPolicy selects its Pod for this class");
        return Ok(());
    };
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = report_name(&workload, class);
    let api: Api<DiagnosticReport> = Api::namespaced(ctx.client.clone(), &namespace);
    if alert.firing() {
        let detection = Detection {
            class,
            reason: alert.name().chars().take(128).collect(),
            container: alert.labels.get("container").cloned(),
            evidence: alert.evidence(),
        };
        let report = new_report(&pod, workload, detection, &policy.name);
        let plugins = ctx.plugins.current();
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        if let Some(reason) = screen(&plugins, ctx.cluster.as_ref(), &report, &pod, &now).await {
            tracing::info!(alert = %alert.name(), %reason, "not investigating");
            return Ok(());
        }
        // Opens it, or leaves the open one (or one cooling down) as it is.
        super::pod::open_report(ctx, report, policy.cooldown).await?;
    }
    record(&api, &name, alert).await
}

/// Records the alert's state on the report, if there is one: a resolution on a report that no
/// longer exists is nothing to record.
async fn record(api: &Api<DiagnosticReport>, name: &str, alert: &Alert) -> super::Result<()> {
    let Some(report) = api.get_opt(name).await? else {
        return Ok(());
    };
    let mut kept: Vec<Value> = report
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ALERTS_ANNOTATION))
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    let entry = json!({
        "alertname": alert.name(),
        "fingerprint": alert.fingerprint,
        "status": if alert.firing() { "firing" } else { "resolved" },
        "startsAt": alert.starts_at,
        "endsAt": if alert.firing() { Value::Null } else { json!(alert.ends_at) },
        "evidence": alert.evidence(),
    });
    let same = |e: &Value| {
        e["fingerprint"] == entry["fingerprint"] && e["alertname"] == entry["alertname"]
    };
    if kept
        .iter()
        .any(|e| same(e) && e["status"] == entry["status"])
    {
        // A duplicate delivery: already recorded.
        return Ok(());
    }
    kept.retain(|e| !same(e));
    kept.push(entry);
    let skip = kept.len().saturating_sub(KEPT);
    kept.drain(..skip);
    let patch =
        json!({"metadata": {"annotations": {ALERTS_ANNOTATION: Value::Array(kept).to_string()}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    tracing::info!(report = %name, alert = %alert.name(), status = %alert.status, "alert recorded");
    Ok(())
}

/// The evidence lines of the alerts recorded on a report, firing ones first, for its
/// investigation. The annotation is writable by whoever may patch reports, so it is read as
/// untrusted text: bounded and redacted again.
pub fn recorded_evidence(report: &DiagnosticReport) -> Vec<String> {
    let Some(text) = report
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ALERTS_ANNOTATION))
    else {
        return Vec::new();
    };
    let kept: Vec<Value> = serde_json::from_str(text).unwrap_or_default();
    let mut lines: Vec<String> = kept
        .iter()
        .rev()
        .take(KEPT)
        .flat_map(|e| e["evidence"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(crate::redact::redact_text))
        .map(|l| l.chars().take(500).collect())
        .collect();
    lines.dedup();
    lines.truncate(8);
    lines
}

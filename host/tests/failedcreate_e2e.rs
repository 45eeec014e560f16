//! Pods that are never created, on a loopback control plane: ResourceQuota `compute-quota`
//! allows one Pod in namespace shop, and two Deployments of two replicas each ask for more.
//! The API server refuses the rest (the ReplicaSets record FailedCreate); no Pod fails. The
//! operator reports each workload once as `FailedCreate` (`QuotaExceeded`), one incident for
//! the one quota, investigated once. A FailedCreate Event a tenant forges with a name that is
//! no object name reaches no URL (the API server's audit log). An admission webhook that is
//! down and fails closed refuses them too: one incident on the webhook.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::api::core::v1::{Event, ResourceQuota};
use kube::api::{Api, PostParams};
use serde_json::json;
use sre_e2e::demo;
use sre_operator::crd::DiagnosticReport;
use support::operator::{OPERATOR_USER, Operator};

const NS: &str = "shop";
const APPS: [&str; 2] = ["cart", "catalog"];
const FORGED_NAME: &str = "cart/../../../api/v1/secrets";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_whose_pods_a_quota_refuses_are_reported_and_one_incident() -> Result<()> {
    let Some(cluster) = support::cluster_with_policy("failedcreate-e2e", NS, json!({})).await?
    else {
        return Ok(());
    };
    let client = cluster.client();
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), NS);
    quotas
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "compute-quota"},
                "spec": {"hard": {"pods": "1"}}
            }))?,
        )
        .await?;
    // Admission enforces a quota once the quota controller has written its status.
    let deadline = Instant::now() + Duration::from_secs(60);
    while quotas
        .get("compute-quota")
        .await?
        .status
        .and_then(|s| s.hard)
        .is_none()
    {
        ensure!(
            Instant::now() < deadline,
            "the quota controller never wrote compute-quota's status"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), NS);
    for app in APPS {
        let mut d = demo::deployment(app, json!({ "app": app }), None, json!([]), json!({}));
        d["spec"]["replicas"] = json!(2);
        deployments
            .create(&PostParams::default(), &serde_json::from_value(d)?)
            .await?;
    }
    // A tenant's forged refusal, naming no object: never read.
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    events
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "forged.1"},
                "involvedObject": {"kind": "ReplicaSet", "namespace": NS, "name": FORGED_NAME},
                "reason": "FailedCreate", "type": "Warning",
                "message": "Error creating: pods \"x\" is forbidden: exceeded quota: compute-quota, requested: pods=1, used: pods=1, limited: pods=1"
            }))?,
        )
        .await?;

    let op = Operator::started(&cluster, "sre-operator-failedcreate-0", NS).await?;

    let reports: Api<DiagnosticReport> = Api::namespaced(client.clone(), NS);
    let done = await_one_incident(&reports, &op).await?;
    let mut names: Vec<&str> = done
        .iter()
        .map(|r| r.metadata.name.as_deref().unwrap())
        .collect();
    names.sort();
    ensure!(
        names
            == [
                "deployment-cart-failedcreate",
                "deployment-catalog-failedcreate"
            ],
        "{names:?}"
    );
    for r in &done {
        ensure!(r.spec.failure.class.as_str() == "FailedCreate");
        ensure!(
            r.spec.failure.reason == "QuotaExceeded",
            "{:?}",
            r.spec.failure
        );
        ensure!(r.spec.pod.uid.is_empty(), "the Pod does not exist");
        let status = r.status.as_ref().unwrap();
        ensure!(status.suggested_patch.is_none(), "a quota is not patched");
        let root = &status.findings.as_ref().context("findings")?.root_cause;
        ensure!(root.contains("compute-quota"), "{root}");
    }
    let leads: Vec<_> = done
        .iter()
        .filter(|r| r.status.as_ref().unwrap().incident_detail.is_some())
        .collect();
    ensure!(leads.len() == 1, "one report leads the incident");
    let cause = &leads[0]
        .status
        .as_ref()
        .unwrap()
        .incident_detail
        .as_ref()
        .unwrap()
        .cause;
    ensure!(
        cause.contains("ResourceQuota shop/compute-quota"),
        "{cause}"
    );
    let investigated = done
        .iter()
        .filter(|r| r.status.as_ref().unwrap().brain.is_some())
        .count();
    ensure!(
        investigated == 1,
        "{investigated} investigations for one incident"
    );

    let audit = cluster.audited_requests_of(OPERATOR_USER)?;
    ensure!(
        audit.iter().any(|e| e["requestURI"]
            .as_str()
            .is_some_and(|u| u.contains("fieldSelector=reason%3DFailedCreate"))),
        "the operator watches FailedCreate Events, selected by the API server"
    );
    let forged: Vec<&str> = audit
        .iter()
        .filter_map(|e| e["requestURI"].as_str())
        .filter(|u| u.contains("secrets") || u.contains("%2F..") || u.contains("/.."))
        .collect();
    ensure!(forged.is_empty(), "a forged name reached a URL: {forged:?}");
    Ok(())
}

/// Waits up to 120 s until each of [`APPS`] has a report concluded NoFix in one incident whose
/// lead lists them all; those reports then.
async fn await_one_incident(
    reports: &Api<DiagnosticReport>,
    op: &Operator,
) -> Result<Vec<DiagnosticReport>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = reports.list(&Default::default()).await?.items;
        let finished: Vec<DiagnosticReport> = list
            .iter()
            .filter(|r| {
                r.status.as_ref().is_some_and(|s| {
                    s.phase.is_some_and(|p| p.as_str() == "NoFix") && s.incident.is_some()
                })
            })
            .cloned()
            .collect();
        let listed = list
            .iter()
            .filter_map(|r| r.status.as_ref()?.incident_detail.as_ref())
            .any(|d| d.members.len() == APPS.len());
        if finished.len() == APPS.len() && listed {
            return Ok(finished);
        }
        if Instant::now() > deadline {
            bail!(
                "not {} FailedCreate reports in one incident within 120 s: {:#?}\noperator log:\n{}",
                APPS.len(),
                list.iter()
                    .map(|r| (&r.metadata.name, &r.spec.failure, &r.status))
                    .collect::<Vec<_>>(),
                op.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// An admission webhook for Pods whose Service has no backend (the policy engine is down), with
/// `failurePolicy: Fail`: the API server refuses every Pod of namespace shop with its own words
/// ("failed calling webhook ..."), and the ReplicaSets record them. Both workloads are reported
/// `AdmissionWebhookUnavailable`, one incident on the webhook, its Service named, nothing
/// patched; the operator writes no webhook configuration and no workload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_whose_pods_a_webhook_that_is_down_refuses_are_one_incident() -> Result<()> {
    let Some(cluster) = support::cluster_with_policy("webhook-e2e", NS, json!({})).await? else {
        return Ok(());
    };
    let client = cluster.client();
    cluster.create_namespace("policy").await?;
    let mut items = vec![
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "policy-webhook", "namespace": "policy"},
               "spec": {"selector": {"app": "policy-webhook"}, "ports": [{"port": 443, "targetPort": 9443}]}}),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
               "metadata": {"name": "policy"},
               "webhooks": [{
                   "name": "pods.policy.example.com",
                   "clientConfig": {"service": {"namespace": "policy", "name": "policy-webhook", "path": "/validate", "port": 443}},
                   "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
                   "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NS}},
                   "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                   "timeoutSeconds": 2}]}),
    ];
    for app in APPS {
        let mut d = demo::deployment(app, json!({ "app": app }), None, json!([]), json!({}));
        d["metadata"]["namespace"] = NS.into();
        items.push(d);
    }
    support::apply_json(
        &cluster,
        "webhook",
        json!({"apiVersion": "v1", "kind": "List", "items": items}),
    )?;
    let op = Operator::started(&cluster, "sre-operator-webhook-0", NS).await?;
    let reports: Api<DiagnosticReport> = Api::namespaced(client.clone(), NS);
    let done = await_one_incident(&reports, &op).await?;
    for r in &done {
        ensure!(
            r.spec.failure.reason == "AdmissionWebhookUnavailable",
            "{:?}",
            r.spec.failure
        );
        let status = r.status.as_ref().unwrap();
        ensure!(status.suggested_patch.is_none(), "nothing to patch");
        let root = &status.findings.as_ref().context("findings")?.root_cause;
        ensure!(
            root.contains("pods.policy.example.com")
                && root.contains("Service policy-webhook in namespace policy"),
            "{root}"
        );
    }
    let leads: Vec<_> = done
        .iter()
        .filter_map(|r| r.status.as_ref()?.incident_detail.as_ref())
        .collect();
    ensure!(leads.len() == 1, "one report leads the incident");
    ensure!(
        leads[0]
            .cause
            .contains("admission webhook pods.policy.example.com"),
        "{}",
        leads[0].cause
    );
    let writes = support::operator::operator_writes(
        &cluster,
        &[
            "validatingwebhookconfigurations",
            "deployments",
            "replicasets",
            "pods",
        ],
    )?;
    ensure!(writes.is_empty(), "the operator wrote: {writes:?}");
    Ok(())
}

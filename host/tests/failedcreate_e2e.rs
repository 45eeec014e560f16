//! Pods that are never created, on a loopback control plane: ResourceQuota `compute-quota`
//! allows one Pod in namespace shop, and two Deployments of two replicas each ask for more.
//! The API server refuses the rest (the ReplicaSets record FailedCreate); no Pod fails. The
//! operator reports each workload once as `FailedCreate` (`QuotaExceeded`), one incident for
//! the one quota, investigated once. A FailedCreate Event a tenant forges with a name that is
//! no object name reaches no URL (the API server's audit log).

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
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
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
            break finished;
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
    };
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

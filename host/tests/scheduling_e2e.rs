//! Pods the real kube-scheduler cannot place for reasons that are no shortage of resources, on
//! a loopback control plane with kwok nodes that have room: a topologySpreadConstraint over a
//! label no node carries, and a required one-per-node podAntiAffinity with more replicas than
//! nodes. The reports read the scheduler's own words: `TopologySpreadConstraints` naming the
//! key the nodes lack, and `PodAntiAffinity`; neither is given capacity numbers, and the
//! operator writes nothing but its reports.

mod support;

use anyhow::{Result, ensure};
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use serde_json::json;
use sre_e2e::demo;
use sre_operator::crd::DiagnosticReport;
use support::operator::{Operator, await_concluded, operator_writes};

const NS: &str = "ci";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_a_spread_or_an_anti_affinity_keeps_off_every_node_name_it() -> Result<()> {
    let Some(cluster) = support::cluster_with_policy("scheduling-e2e", NS, json!({})).await? else {
        return Ok(());
    };
    let client = cluster.client();
    let nodes = Api::<Node>::all(client.clone())
        .list(&Default::default())
        .await?
        .items
        .len();
    let requests = json!({"requests": {"cpu": "10m", "memory": "16Mi"}});
    let mut spread = demo::deployment(
        "builder",
        json!({"app": "builder"}),
        None,
        json!([]),
        requests.clone(),
    );
    spread["metadata"]["namespace"] = NS.into();
    spread["spec"]["template"]["spec"]["topologySpreadConstraints"] = json!([{
        "maxSkew": 1, "topologyKey": "topology.example.com/rack",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": {"app": "builder"}}}]);
    let mut apart = demo::deployment("cache", json!({"app": "cache"}), None, json!([]), requests);
    apart["metadata"]["namespace"] = NS.into();
    apart["spec"]["replicas"] = json!(nodes + 1);
    apart["spec"]["template"]["spec"]["affinity"] = json!({"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"app": "cache"}},
            "topologyKey": "kubernetes.io/hostname"}]}});
    support::apply_json(
        &cluster,
        "scheduling",
        json!({"apiVersion": "v1", "kind": "List", "items": [spread, apart]}),
    )?;
    let op = Operator::started(&cluster, "sre-operator-scheduling-0", NS).await?;
    let reports: Api<DiagnosticReport> = Api::namespaced(client.clone(), NS);
    let done = await_concluded(&reports, &["builder", "cache"], &op).await?;
    let report = |app: &str| done.iter().find(|r| r.spec.workload.name == app).unwrap();
    for (app, reason, names) in [
        (
            "builder",
            "TopologySpreadConstraints",
            "no node has the label topology.example.com/rack",
        ),
        ("cache", "PodAntiAffinity", "podAntiAffinity"),
    ] {
        let r = report(app);
        ensure!(
            r.spec.failure.reason == reason,
            "{app}: {:?}",
            r.spec.failure
        );
        let status = r.status.clone().unwrap_or_default();
        let root_cause = status.findings.unwrap_or_default().root_cause;
        ensure!(root_cause.contains(names), "{app}: {root_cause}");
        ensure!(!root_cause.contains("Insufficient"), "{app}: {root_cause}");
        ensure!(status.suggested_patch.is_none(), "{app}: a patch");
    }
    let writes = operator_writes(&cluster, &["deployments", "replicasets", "pods", "nodes"])?;
    ensure!(writes.is_empty(), "the operator wrote: {writes:?}");
    Ok(())
}

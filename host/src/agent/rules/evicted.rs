//! The Evicted playbook: a Node short of memory, disk or PIDs is the Node's problem, shared by
//! every Pod on it, so it is explained with the Node's numbers and never patched; a Pod evicted
//! for outgrowing its own ephemeral-storage limit is told which limit it crossed; a Pod
//! stranded on a Node that stopped reporting is told what the control plane does next.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;

use super::{AgentError, Case, Conclusion, Session};
use super::{answer, no_fix};
use crate::cluster::{NodeUsage, format_bytes, format_millis, memory_bytes};
use crate::failure::{EvictionCause, EvictionMessage, LOST_NODE_TAINTS, StorageLimit};
use crate::names::NameRule;

pub(super) async fn evicted(case: &Case, s: &mut Session) -> Result<Conclusion, AgentError> {
    let failure = &case.report.spec.failure;
    let pod = &case.report.spec.pod.name;
    let status = case.pod.status.as_ref();
    let message = status.and_then(|s| s.message.as_deref()).unwrap_or("");
    let parsed = EvictionMessage::parse(message);
    // The failure's reason was read from this message at detection; a report written
    // elsewhere may only carry the reason.
    let cause = match parsed.cause() {
        EvictionCause::Unknown => EvictionCause::parse(&failure.reason),
        known => known,
    };
    let mut evidence: Vec<String> = failure.evidence.iter().take(3).cloned().collect();
    let node = case
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| NameRule::Dns1123Subdomain.allows(n));

    if cause == EvictionCause::EphemeralStorageLimit {
        let (what, change) = match &parsed.storage_limit {
            Some((StorageLimit::Container(c), limit)) => (
                format!("container {c}'s ephemeral-storage limit of {limit}"),
                format!("container {c}'s resources.limits.ephemeral-storage"),
            ),
            Some((StorageLimit::EmptyDir(v), limit)) => (
                format!("the sizeLimit of {limit} of its emptyDir volume {v}"),
                format!("volume {v}'s emptyDir.sizeLimit"),
            ),
            Some((StorageLimit::PodTotal, limit)) => (
                format!("its containers' ephemeral-storage limits ({limit} in all)"),
                "the containers' resources.limits.ephemeral-storage".to_string(),
            ),
            None => (
                "its ephemeral-storage limits".to_string(),
                "the ephemeral-storage limits".to_string(),
            ),
        };
        let summary = format!("Pod {pod} was evicted: it wrote more local data than {what}.");
        return Ok(no_fix(
            summary,
            format!(
                "The kubelet evicts a Pod whose writable layers, logs and emptyDir volumes use more disk than {what}; the Node itself was not short of disk."
            ),
            evidence,
            format!(
                "Find what the workload writes locally (kubectl exec into a replica and run du on its writable paths and emptyDirs) and bound it (log rotation, a cache size), or raise {change} in the workload's template if the data is expected. The controller replaces evicted Pods; delete the Failed ones once the cause is fixed."
            ),
        ));
    }

    if cause == EvictionCause::NodeNotReady {
        return node_not_ready(case, s, node, evidence).await;
    }

    let (low_on, condition) = match cause {
        EvictionCause::NodeMemoryPressure => ("memory", "MemoryPressure"),
        EvictionCause::NodeDiskPressure => ("disk", "DiskPressure"),
        EvictionCause::NodePidPressure => ("process IDs", "PIDPressure"),
        _ => {
            let on = node.map(|n| format!(" from node {n}")).unwrap_or_default();
            return Ok(no_fix(
                format!("Pod {pod} was evicted{on}."),
                format!(
                    "The kubelet evicted Pod {pod}{on}; its message does not say which resource ran short."
                ),
                evidence,
                "Read the Node's conditions and events (kubectl describe node) for the pressure that caused the eviction; the controller replaces evicted Pods."
                    .into(),
            ));
        }
    };
    let on = node
        .map(|n| format!("node {n}"))
        .unwrap_or("its node".into());
    // The kubelet writes quantities in Ki or bytes; a person reads Mi and Gi.
    let readable = |q: &str| match q {
        "0" => "0".to_string(),
        q => memory_bytes(&Quantity(q.to_string()))
            .map(format_bytes)
            .unwrap_or_else(|| q.to_string()),
    };
    let threshold = parsed
        .threshold
        .as_ref()
        .map(|(t, a)| {
            if cause == EvictionCause::NodePidPressure {
                format!(" (eviction threshold {t}, {a} available)")
            } else {
                format!(
                    " (eviction threshold {}, {} available)",
                    readable(t),
                    readable(a)
                )
            }
        })
        .unwrap_or_default();
    if let Some(node) = node {
        let usage = s
            .act(
                format!("The kubelet on {node} evicted the Pod: the node was low on {low_on}."),
                "Read the node: its conditions, taints and what its Pods request say how overcommitted it is.",
                "get_resource_usage",
                json!({"nodeName": node}),
            )
            .await?;
        if let Some(u) = answer::<NodeUsage>(&usage) {
            let taints: Vec<String> = u.taints.iter().map(|t| t.to_string()).collect();
            evidence.push(format!(
                "node {node}: {}, {} Pods requesting {} of {} allocatable memory and {} of {} cpu; taints: {}",
                if u.ready { "Ready" } else { "NotReady" },
                u.pods,
                format_bytes(u.requests.memory_bytes),
                format_bytes(u.allocatable.memory_bytes),
                format_millis(u.requests.cpu_millis),
                format_millis(u.allocatable.cpu_millis),
                if taints.is_empty() {
                    "none".to_string()
                } else {
                    taints.join(", ")
                },
            ));
        }
    }
    let blamed = parsed.heaviest.as_ref().map(|u| {
        let (using, request) = if u.resource == "pids" {
            (u.using.clone(), u.request.clone())
        } else {
            (readable(&u.using), readable(&u.request))
        };
        format!(
            "container {} used {using} of {} against a request of {request}",
            u.container, u.resource
        )
    });
    if let Some(b) = &blamed {
        evidence.push(format!(
            "{b}: the kubelet evicts first the Pods that use the most above their requests"
        ));
    }
    let why_this_one = blamed
        .as_ref()
        .map(|b| format!("; this Pod went first because its {b}"))
        .unwrap_or_default();
    let advice = match cause {
        EvictionCause::NodeMemoryPressure => format!(
            "Relieve {on}: see what runs on it and what it requests (kubectl describe node {}) and what those Pods use (kubectl top pods), set memory requests to what the workloads really use so the scheduler stops overcommitting the node (a request below usage is what makes a Pod the first to go), and add capacity if every node is short.",
            node.unwrap_or("NODE")
        ),
        EvictionCause::NodeDiskPressure => format!(
            "Free disk on {on}: unused images, container logs and emptyDir data fill it; give workloads that write locally ephemeral-storage requests and limits so the scheduler and the kubelet account for them, and add disk if the node is simply small."
        ),
        _ => format!(
            "Find the workload on {on} that leaks processes or threads and fix it, and set the kubelet's podPidsLimit so one Pod cannot exhaust the node's PIDs."
        ),
    };
    Ok(no_fix(
        format!("Pod {pod} was evicted: {on} ran short of {low_on} ({condition})."),
        format!(
            "The kubelet on {on} evicted Pods because the node ran short of {low_on}{threshold}{why_this_one}. The workload itself is not broken: no change to it alone fixes the node."
        ),
        evidence,
        format!(
            "{advice} The controller replaces evicted Pods; delete the Failed ones once the node recovers."
        ),
    ))
}

/// A Node that stopped reporting: read it (its Ready condition and the taints the node
/// controller put on it) and say what happens to the Pod, and what a person decides.
async fn node_not_ready(
    case: &Case,
    s: &mut Session,
    node: Option<&str>,
    mut evidence: Vec<String>,
) -> Result<Conclusion, AgentError> {
    let pod = &case.report.spec.pod.name;
    let on = node
        .map(|n| format!("node {n}"))
        .unwrap_or("its node".into());
    let mut state = "stopped reporting".to_string();
    if let Some(node) = node {
        let usage = s
            .act(
                format!("Pod {pod} is marked not ready by the control plane, not by its kubelet."),
                format!("Read node {node}: its Ready condition and taints say whether it is NotReady or unreachable."),
                "get_resource_usage",
                json!({"nodeName": node}),
            )
            .await?;
        if let Some(u) = answer::<NodeUsage>(&usage) {
            let taints: Vec<String> = u.taints.iter().map(|t| t.to_string()).collect();
            let lost = LOST_NODE_TAINTS
                .iter()
                .find(|(key, _)| u.taints.iter().any(|t| t.key == *key));
            if let Some((_, what)) = lost {
                state = format!("is {what}");
            } else if !u.ready {
                state = "is NotReady".into();
            }
            evidence.push(format!(
                "node {node}: {}, {} Pods bound; taints: {}",
                if u.ready { "Ready" } else { "not Ready" },
                u.pods,
                if taints.is_empty() {
                    "none".to_string()
                } else {
                    taints.join(", ")
                },
            ));
        }
    }
    let tolerance = case
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| {
            LOST_NODE_TAINTS
                .iter()
                .any(|(key, _)| t.key.as_deref() == Some(key))
                && t.effect.as_deref() == Some("NoExecute")
        })
        .filter_map(|t| t.toleration_seconds)
        .min();
    let next = match tolerance {
        Some(secs) => format!(
            "the control plane deletes it {secs} s after the node's NoExecute taint appeared (its toleration), and its controller then creates a replacement on a healthy node"
        ),
        None => "it tolerates the node's NoExecute taint without a time limit, so it stays there until the node returns".to_string(),
    };
    Ok(no_fix(
        format!("Pod {pod} is stranded: {on} {state}."),
        format!(
            "The kubelet on {on} stopped reporting, so the node controller marked the Pod not ready; {next}. A deletion waits for the kubelet to confirm it and shows as Terminating until the node returns or is removed. Nothing in the workload is wrong."
        ),
        evidence,
        format!(
            "Find out why {on} stopped reporting (the machine, its network, the kubelet or the container runtime). If it is gone for good, delete the Node object (kubectl delete node) so that its Pods are removed and replaced: StatefulSet Pods are not replaced while their old Pod still exists."
        ),
    ))
}

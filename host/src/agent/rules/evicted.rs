//! The Evicted playbook: a Node short of memory, disk or PIDs is the Node's problem, shared by
//! every Pod on it, so it is explained with the Node's numbers and never patched; a Pod evicted
//! for outgrowing its own ephemeral-storage limit is told which limit it crossed; a Pod
//! stranded on a Node that stopped reporting is told what the control plane does next; a Pod
//! ended by a Node's shutdown is the Node's story too; a Pod its kubelet refused at admission
//! is told why, and whether its workload sends it past the scheduler (`spec.nodeName`).

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::workload::workload_template;
use super::{AgentError, Case, Conclusion, Session};
use super::{failure_container, no_fix, on_node, pod_node, read_node};
use crate::cluster::{format_bytes, format_millis, memory_bytes};
use crate::failure::{EvictionCause, EvictionMessage, LOST_NODE_TAINTS, Shortfall, StorageLimit};

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
    let node = pod_node(case);

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

    match cause {
        EvictionCause::NodeNotReady => return node_not_ready(case, s, node, evidence).await,
        EvictionCause::NodeShutdown => return node_shutdown(case, s, node, evidence).await,
        EvictionCause::Rejected => return rejected(case, s, node, message, evidence).await,
        _ => {}
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
    let on = on_node(node);
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
        let read = read_node(
            s,
            node,
            format!("The kubelet on {node} evicted the Pod: the node was low on {low_on}."),
            "Read the node: its conditions, taints and what its Pods request say how overcommitted it is.".into(),
        )
        .await?;
        if let Some(u) = read {
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
    let on = on_node(node);
    let mut state = "stopped reporting".to_string();
    if let Some(node) = node {
        let read = read_node(
            s,
            node,
            format!("Pod {pod} is marked not ready by the control plane, not by its kubelet."),
            format!("Read node {node}: its Ready condition and taints say whether it is NotReady or unreachable."),
        )
        .await?;
        if let Some(u) = read {
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

/// A Node that shut down: the kubelet ended its Pods first (graceful node shutdown).
async fn node_shutdown(
    case: &Case,
    s: &mut Session,
    node: Option<&str>,
    mut evidence: Vec<String>,
) -> Result<Conclusion, AgentError> {
    let pod = &case.report.spec.pod.name;
    let on = on_node(node);
    if let Some(node) = node {
        let read = read_node(
            s,
            node,
            format!("The kubelet on {node} ended Pod {pod} because the node was shutting down."),
            format!("Read node {node}: whether it is back (Ready) or still down."),
        )
        .await?;
        if let Some(u) = read {
            evidence.push(format!(
                "node {node}: {}, {} Pods bound",
                if u.ready { "Ready again" } else { "not Ready" },
                u.pods
            ));
        }
    }
    Ok(no_fix(
        format!("Pod {pod} was ended by the shutdown of {on}."),
        format!(
            "The kubelet on {on} terminated its Pods because the node shut down (maintenance, a reboot, or a spot or preemptible machine reclaimed), as graceful node shutdown does; the controller creates replacements on other nodes. Nothing in the workload is wrong."
        ),
        evidence,
        format!(
            "Find out why {on} shut down (the cloud provider's events for preemption or maintenance). Planned shutdowns should drain the node first (kubectl drain) so PodDisruptionBudgets are honoured; run more than one replica, spread across nodes (topologySpreadConstraints), so one node going away does not take the workload down. Delete the Failed Pods once replaced."
        ),
    ))
}

/// A Pod its kubelet refused at admission: for want of room (`OutOf<resource>`), or a check
/// the scheduler should have made (affinity, ports, taints) or a resource manager's refusal.
async fn rejected(
    case: &Case,
    s: &mut Session,
    node: Option<&str>,
    message: &str,
    mut evidence: Vec<String>,
) -> Result<Conclusion, AgentError> {
    let pod = &case.report.spec.pod.name;
    let reason = case.report.spec.failure.reason.as_str();
    let on = on_node(node);
    let short = Shortfall::parse(message);
    if let Some(node) = node {
        let read = read_node(
            s,
            node,
            format!("The kubelet on {node} refused Pod {pod} at admission ({reason})."),
            format!("Read node {node}: what it has and what the Pods bound to it request."),
        )
        .await?;
        if let Some(u) = read {
            evidence.push(format!(
                "node {node}: {}, {} Pods requesting {} of {} allocatable cpu and {} of {} memory",
                if u.ready { "Ready" } else { "NotReady" },
                u.pods,
                format_millis(u.requests.cpu_millis),
                format_millis(u.allocatable.cpu_millis),
                format_bytes(u.requests.memory_bytes),
                format_bytes(u.allocatable.memory_bytes),
            ));
        }
    }
    // A template that names its node sends every replacement past the scheduler to the same
    // refusal: that is the workload's to change.
    let container = failure_container(case);
    let pinned = match workload_template(case, s, &container).await? {
        Some(t) => t
            .object
            .pointer(&format!("{}/nodeName", t.spec_path))
            .and_then(|v| v.as_str())
            .map(str::to_string),
        None => None,
    };
    let w = &case.report.spec.workload;
    let what = match (&short, reason) {
        (Some(short), _) => format!("had no room for it: {}", short.describe()),
        (None, r) if r.starts_with("OutOf") => {
            format!("had no room for its {} request", &r["OutOf".len()..])
        }
        (None, "NodeAffinity" | "NodeName" | "NodePorts" | "TaintToleration") => format!(
            "found it does not fit the node ({reason}: its node affinity or selector, host ports or tolerations)"
        ),
        (None, _) => format!(
            "could not admit it ({reason}: the kubelet's device, CPU, memory or topology manager, or its own checks, refused what it asks)"
        ),
    };
    if let Some(pinned) = &pinned {
        evidence.push(format!(
            "{} {} sets spec.nodeName: {pinned} in its Pod template",
            w.kind, w.name
        ));
        return Ok(no_fix(
            format!(
                "Pod {pod} was refused by the kubelet on {on} ({reason}): its workload sends it there past the scheduler."
            ),
            format!(
                "{} {} names its node in its Pod template (spec.nodeName: {pinned}), so its Pods skip the scheduler and the kubelet is the first to check them; the kubelet on {on} {what}. The controller replaces each refused Pod, and each replacement goes to the same node and is refused again.",
                w.kind, w.name
            ),
            evidence,
            format!(
                "Replace spec.nodeName in {} {}'s template with a node affinity on the node's name (requiredDuringSchedulingIgnoredDuringExecution with matchFields metadata.name In [{pinned}], as DaemonSets do), so that the scheduler keeps a Pod Pending until the node has room instead of the kubelet refusing it; or free room on {pinned}. Then delete the Failed Pods (kubectl delete pods --field-selector=status.phase=Failed).",
                w.kind, w.name
            ),
        ));
    }
    let why = if reason.starts_with("OutOf") {
        "The scheduler placed it there, so the scheduler's view of the node and the kubelet's disagree: the node's allocatable shrank after it was scheduled (the kubelet restarted with larger reservations, a device plugin lost devices), or Pods the scheduler does not account for (static Pods, Pods that name their node) took the room."
    } else {
        "The kubelet repeats some of the scheduler's checks at admission: the node's labels or taints changed after the Pod was scheduled, the Pod named its node itself, or a kubelet resource manager could not give it what it asks (GPUs, exclusive CPUs aligned to a NUMA node)."
    };
    Ok(no_fix(
        format!("Pod {pod} was refused by the kubelet on {on} ({reason})."),
        format!("The kubelet on {on} {what}. {why}"),
        evidence,
        format!(
            "Compare what kubectl describe node {} shows (Allocatable, Allocated resources, labels, taints) with the kubelet's refusal, and look for Pods on it that skip the scheduler (static Pods, spec.nodeName). The controller replaces refused Pods; delete the Failed ones (kubectl delete pods --field-selector=status.phase=Failed) once the node is fixed.",
            node.unwrap_or("NODE")
        ),
    ))
}

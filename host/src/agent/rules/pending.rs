//! The Pending playbook: why no node takes the Pod. An unbound claim is read with its events;
//! a selector or taint is checked against every node's labels and taints; insufficient cpu or
//! memory is stated in numbers, and a memory request is lowered only to one an earlier revision
//! ran with. A Pod scheduled to a Node that cannot create its sandbox (CNI, runtime) is that
//! Node's story, never patched; one whose volume cannot be attached there is told who holds it
//! (a rolling update of a Deployment with a ReadWriteOnce volume) or that the driver fails.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;
use tool_shapes::{EventSummary, RolloutRevision};

use super::workload::{fixed, guarded_replace, workload_template};
use super::{AgentError, Case, Conclusion, Session};
use super::{answer, failure_container, findings, no_fix, pod_container};
use super::{first_container, memory_limit, memory_request, on_node, pod_node, read_node};
use crate::cluster::{
    NodeUsage, ResourceAmounts, Taint, format_bytes, format_millis, memory_bytes, pod_requests,
};
use crate::failure::{AttachFailure, PendingReason, SandboxFailure};

/// Whether the taint lets the Pod onto its node: `PreferNoSchedule` only steers the scheduler,
/// any other effect needs a matching toleration.
fn tolerates(case: &Case, taint: &Taint) -> bool {
    let (key, value, effect) = (
        taint.key.as_str(),
        taint.value.as_deref(),
        taint.effect.as_deref().unwrap_or(""),
    );
    if effect == "PreferNoSchedule" {
        return true;
    }
    case.pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_ref())
        .into_iter()
        .flatten()
        .any(|t| {
            let key_ok = t.key.as_deref().is_none_or(|k| k.is_empty() || k == key);
            let op_exists = t.operator.as_deref() == Some("Exists");
            let value_ok = op_exists || t.value.as_deref() == value;
            let effect_ok = t
                .effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == effect);
            key_ok && value_ok && effect_ok && (t.key.is_some() || op_exists)
        })
}

pub(super) async fn pending(case: &Case, s: &mut Session) -> Result<Conclusion, AgentError> {
    let failure = &case.report.spec.failure;
    let mut evidence: Vec<String> = failure
        .evidence
        .iter()
        .filter(|e| e.starts_with("scheduler:") || e.starts_with("the Pod requests"))
        .cloned()
        .collect();
    let reason = failure.reason.as_str();
    // Reasons the scheduler's message does not explain (or a report from elsewhere) are None.
    let cause: Option<PendingReason> = reason.parse().ok();
    let pod = &case.report.spec.pod.name;
    match cause {
        Some(PendingReason::NetworkSetupFailed | PendingReason::PodSandboxFailed) => {
            return sandbox(case, s).await;
        }
        Some(PendingReason::VolumeAttachFailed) => return attach(case, s).await,
        // What an init container waits for is in its log, read as a crash loop's is.
        Some(PendingReason::InitContainerRunning) => {
            return super::crash_loop::crash_loop(case, s).await;
        }
        _ => {}
    }
    if cause.is_some_and(PendingReason::is_about_a_claim) {
        // Each claim with the field it came from: a name the API server stored unvalidated (a
        // `claimName` of `?watch=true&x=`) is refused here, naming that field, and never asked for.
        let claims: Vec<(String, String)> = case
            .pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten().enumerate())
            .filter_map(|(i, v)| {
                v.persistent_volume_claim.as_ref().map(|c| {
                    (
                        format!("spec.volumes[{i}].persistentVolumeClaim.claimName"),
                        c.claim_name.clone(),
                    )
                })
            })
            .collect();
        let mut details = Vec::new();
        for (field, claim) in &claims {
            if let Err(invalid) = crate::names::check_name(
                crate::cluster::ResourceKind::PersistentVolumeClaim,
                field,
                claim,
            ) {
                evidence.push(format!("the Pod's {invalid}"));
                continue;
            }
            let pvc = s
                .act(
                    format!("The scheduler says the Pod has an unbound PersistentVolumeClaim; it mounts {claim}."),
                    "Read the claim: its phase and storage class say why it is not bound.",
                    "inspect_object",
                    json!({"kind": "PersistentVolumeClaim", "name": claim}),
                )
                .await?;
            match answer::<PersistentVolumeClaim>(&pvc) {
                Some(obj) => {
                    let phase = obj
                        .status
                        .as_ref()
                        .and_then(|s| s.phase.as_deref())
                        .unwrap_or("unknown");
                    let class = obj
                        .spec
                        .as_ref()
                        .and_then(|s| s.storage_class_name.as_deref())
                        .unwrap_or("(default)");
                    details.push(format!(
                        "PersistentVolumeClaim {claim} is {phase} with storageClassName {class}"
                    ));
                }
                None => evidence.push(format!(
                    "PersistentVolumeClaim {claim} could not be read: {}",
                    pvc.text.trim_start_matches("error: ")
                )),
            }
            let events = s
                .act(
                    "The claim is not bound.",
                    "The provisioner's events say why.",
                    "list_events",
                    json!({"kind": "PersistentVolumeClaim", "name": claim}),
                )
                .await?;
            if let Some(last) = answer::<Vec<EventSummary>>(&events).and_then(|v| v.last().cloned())
            {
                details.push(format!(
                    "claim event {}: {}",
                    last.reason.as_deref().unwrap_or(""),
                    last.message.as_deref().unwrap_or("")
                ));
            }
        }
        evidence.extend(details.iter().cloned());
        let claim_list = if claims.is_empty() {
            "its PersistentVolumeClaim".to_string()
        } else {
            claims
                .iter()
                .map(|(_, claim)| claim.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Ok(no_fix(
            format!(
                "Pod {pod} cannot be scheduled: PersistentVolumeClaim {claim_list} is not bound."
            ),
            if details.is_empty() {
                format!(
                    "The Pod mounts PersistentVolumeClaim {claim_list}, which is not bound to a volume."
                )
            } else {
                format!(
                    "The Pod mounts PersistentVolumeClaim {claim_list}, which is not bound to a volume: {}.",
                    details.join("; ")
                )
            },
            evidence,
            format!(
                "Fix the claim {claim_list}: a StorageClass that exists and can provision, or a matching PersistentVolume."
            ),
        ));
    }

    let nodes_outcome = s
        .act(
            format!("The scheduler found no node for {pod} ({reason})."),
            "List every node's allocatable resources, free capacity, labels and taints.",
            "list_nodes_capacity",
            json!({}),
        )
        .await?;
    let nodes: Vec<NodeUsage> = answer(&nodes_outcome).unwrap_or_default();

    if matches!(
        cause,
        Some(PendingReason::NodeSelectorMismatch | PendingReason::UntoleratedTaint)
    ) {
        let selector = case
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.node_selector.clone())
            .unwrap_or_default();
        let mut facts = Vec::new();
        for (key, want) in &selector {
            let holders: Vec<String> = nodes
                .iter()
                .filter_map(|n| {
                    n.labels
                        .get(key)
                        .map(|v| format!("{} has {key}={v}", n.node))
                })
                .collect();
            let have = if holders.is_empty() {
                format!("no node has the label {key}")
            } else {
                holders.join(", ")
            };
            facts.push(format!("nodeSelector {key}={want}: {have}"));
        }
        for node in &nodes {
            for taint in &node.taints {
                if !tolerates(case, taint) {
                    facts.push(format!(
                        "node {} has taint {taint}, which the Pod does not tolerate",
                        node.node
                    ));
                }
            }
        }
        evidence.extend(facts.iter().cloned());
        let (summary, recommendation) = if cause == Some(PendingReason::NodeSelectorMismatch)
            && !selector.is_empty()
        {
            let wanted: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (
                format!(
                    "Pod {pod} cannot be scheduled: no node matches its nodeSelector {}.",
                    wanted.join(", ")
                ),
                format!(
                    "Fix the nodeSelector {} in the workload, or add a node with those labels.",
                    wanted.join(", ")
                ),
            )
        } else {
            (
                format!("Pod {pod} cannot be scheduled: the nodes it could use carry taints it does not tolerate."),
                "Add a matching toleration to the workload, or schedule onto untainted nodes; tolerations are not changed by the operator.".to_string(),
            )
        };
        return Ok(no_fix(summary, facts.join("; "), evidence, recommendation));
    }

    match cause {
        Some(PendingReason::TopologySpreadConstraints) => {
            return Ok(topology_spread(case, &nodes, evidence));
        }
        // Resources: the numbers below. A reason of another kind is no shortage of them.
        None
        | Some(
            PendingReason::InsufficientMemory
            | PendingReason::InsufficientCpu
            | PendingReason::InsufficientEphemeralStorage
            | PendingReason::InsufficientResources,
        ) => {}
        Some(other) => return Ok(scheduler_explains(case, other, evidence)),
    }

    // Insufficient resources: state the numbers.
    let (requests, _) = pod_requests(&case.pod);
    let memory = cause == Some(PendingReason::InsufficientMemory)
        || (cause != Some(PendingReason::InsufficientCpu) && requests.memory_bytes > 0);
    let (resource, wanted) = if memory {
        ("memory", requests.memory_bytes)
    } else {
        ("cpu", requests.cpu_millis)
    };
    let show = |v: i64| {
        if memory {
            format_bytes(v)
        } else {
            format_millis(v)
        }
    };
    // The amount of the scarce resource.
    let amount = |a: &ResourceAmounts| {
        if memory { a.memory_bytes } else { a.cpu_millis }
    };
    let usable: Vec<&NodeUsage> = nodes
        .iter()
        .filter(|n| n.ready && !n.unschedulable)
        .filter(|n| n.taints.iter().all(|t| tolerates(case, t)))
        .collect();
    let best = usable.iter().max_by_key(|n| amount(&n.free)).copied();
    let largest_allocatable = nodes
        .iter()
        .map(|n| amount(&n.allocatable))
        .max()
        .unwrap_or(0);
    let Some(best) = best else {
        return Ok(no_fix(
            format!("Pod {pod} cannot be scheduled: no Ready, untainted node exists for it."),
            "Every node is unready, cordoned or tainted against this Pod.".into(),
            evidence,
            "Add schedulable capacity.".into(),
        ));
    };
    let best_name = best.node.clone();
    let best_free = amount(&best.free);
    let usage = s
        .act(
            format!(
                "The most free {resource} on a node the Pod may use is {} on {best_name}.",
                show(best_free)
            ),
            format!("Read {best_name}'s usage in detail, as kubectl describe node shows it."),
            "get_resource_usage",
            json!({"nodeName": best_name}),
        )
        .await?;
    if let Some(u) = answer::<NodeUsage>(&usage) {
        evidence.push(format!(
            "node {best_name}: allocatable {} {resource}, {} requested by {} Pods, {} free",
            show(amount(&u.allocatable)),
            show(amount(&u.requests)),
            u.pods,
            show(amount(&u.free)),
        ));
    }
    let numbers = format!(
        "requests {} {resource}; the most free allocatable on any node it may use is {} on {best_name}",
        show(wanted),
        show(best_free)
    );
    evidence.push(numbers.clone());
    let summary = format!("Pod {pod} cannot be scheduled: it {numbers}.");
    let root_cause = format!("Insufficient {resource}: the Pod {numbers}, so no node can take it.");

    // Lowering the request is only right when history says a smaller one worked.
    let container = Some(failure_container(case))
        .filter(|c| !c.is_empty())
        .or_else(|| first_container(case))
        .unwrap_or_default();
    if memory && case.report.spec.workload.kind == "Deployment" {
        let history = s
            .act(
                "Lowering the request would make the Pod fit, but only if a smaller request is known to work.",
                "Read the rollout history: did an earlier revision run with a smaller memory request?",
                "rollout_history",
                json!({"name": case.report.spec.workload.name}),
            )
            .await?;
        let revisions: Vec<RolloutRevision> = answer(&history).unwrap_or_default();
        let current_request = memory_request(pod_container(case, &container));
        let current_limit =
            memory_limit(pod_container(case, &container)).and_then(|q| memory_bytes(&q));
        // The newest earlier revision that ran, with its request.
        let earlier = revisions.iter().skip(1).find(|r| r.ran()).and_then(|r| {
            let request = r.container(&container)?.request("memory")?;
            Some((r.revision, request.to_string()))
        });
        if let (Some(current), Some((revision, old))) = (current_request, earlier) {
            let old_bytes = memory_bytes(&Quantity(old.clone())).unwrap_or(i64::MAX);
            let others = wanted - memory_bytes(&current).unwrap_or(0);
            let fits = old_bytes + others <= best_free;
            let within_limit = current_limit.is_none_or(|l| old_bytes <= l);
            if fits
                && within_limit
                && old_bytes < memory_bytes(&current).unwrap_or(0)
                && let Some(template) = workload_template(case, s, &container).await?
                && template.get("/resources/requests/memory") == Some(&json!(current.0))
            {
                evidence.push(format!(
                    "revision {revision} ran with a memory request of {old}"
                ));
                let explanation = format!(
                    "Lower container {container}'s memory request from {} to {old}, the request revision {revision} ran with; it fits on {best_name}.",
                    current.0
                );
                let path = format!("{}/resources/requests/memory", template.container_path);
                return Ok(fixed(
                    case,
                    findings(summary, root_cause, evidence),
                    guarded_replace(path, json!(current.0), json!(old)),
                    explanation,
                ));
            }
        }
    }
    let recommendation = if wanted > largest_allocatable {
        format!(
            "The Pod requests more {resource} ({}) than any node has allocatable ({} at most): it cannot fit anywhere. Add larger nodes or reduce what the application needs.",
            show(wanted),
            show(largest_allocatable)
        )
    } else {
        format!(
            "Add capacity: a node with at least {} {resource} free (scale the node pool), or free {resource} on {best_name}. Lowering the request to fit is not safe without evidence the application needs less.",
            show(wanted)
        )
    };
    Ok(no_fix(summary, root_cause, evidence, recommendation))
}

/// A topologySpreadConstraint that no node meets (`whenUnsatisfiable: DoNotSchedule`): the nodes
/// lack its topologyKey (the scheduler skips a node without it), or every domain the Pod may
/// go to already holds maxSkew more of its Pods than the emptiest one.
fn topology_spread(case: &Case, nodes: &[NodeUsage], mut evidence: Vec<String>) -> Conclusion {
    let pod = &case.report.spec.pod.name;
    let constraints = case
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.clone())
        .unwrap_or_default();
    let mut unlabelled = Vec::new();
    for c in constraints
        .iter()
        .filter(|c| c.when_unsatisfiable == "DoNotSchedule")
    {
        let key = &c.topology_key;
        let domains: std::collections::BTreeSet<&str> = nodes
            .iter()
            .filter_map(|n| n.labels.get(key).map(String::as_str))
            .collect();
        let carry = nodes.iter().filter(|n| n.labels.contains_key(key)).count();
        evidence.push(format!(
            "topologySpreadConstraint on {key} (maxSkew {}, DoNotSchedule): {carry} of {} nodes carry the label{}",
            c.max_skew,
            nodes.len(),
            if domains.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} domain(s): {}",
                    domains.len(),
                    domains.iter().copied().collect::<Vec<_>>().join(", ")
                )
            }
        ));
        if carry == 0 {
            unlabelled.push(key.clone());
        }
    }
    if let Some(key) = unlabelled.first() {
        return no_fix(
            format!(
                "Pod {pod} cannot be scheduled: no node carries the label {key} its topologySpreadConstraint spreads over."
            ),
            format!(
                "The Pod's topologySpreadConstraint on {key} is whenUnsatisfiable: DoNotSchedule, and no node has the label {key}: the scheduler leaves out every node without it (missing required label), so none is left."
            ),
            evidence,
            format!(
                "Spread over a label the nodes carry (kubernetes.io/hostname, or topology.kubernetes.io/zone where the nodes have it), label the nodes with {key}, or make the constraint whenUnsatisfiable: ScheduleAnyway."
            ),
        );
    }
    no_fix(
        format!("Pod {pod} cannot be scheduled: placing it would break its topologySpreadConstraints."),
        "Every node the Pod may use is in a domain that already holds maxSkew more of its Pods than the emptiest domain, and the constraint is whenUnsatisfiable: DoNotSchedule: the spread waits for room in the domains that lag (a zone without capacity or schedulable nodes).".into(),
        evidence,
        "Add capacity (or schedulable nodes) in the domains that lag, raise maxSkew, or make the constraint whenUnsatisfiable: ScheduleAnyway.".into(),
    )
}

/// What the scheduler says for an obstacle that is no shortage of resources, with where to look:
/// the numbers of the capacity playbook would explain nothing here.
fn scheduler_explains(case: &Case, reason: PendingReason, evidence: Vec<String>) -> Conclusion {
    let pod = &case.report.spec.pod.name;
    let (why, advice) = match reason {
        PendingReason::PodAffinity => (
            "no node satisfies its podAffinity: the Pods it must run next to are not where its topologyKey allows (or do not run)",
            "Check the podAffinity's labelSelector and topologyKey against where those Pods run, or make it preferred rather than required.",
        ),
        PendingReason::PodAntiAffinity => (
            "every node already runs a Pod its podAntiAffinity keeps it away from: more replicas than nodes (or zones) for a one-per-node rule",
            "Add nodes (or zones), lower the replicas, or make the anti-affinity preferred rather than required.",
        ),
        PendingReason::VolumeNodeAffinityConflict => (
            "its PersistentVolume can only be used in a zone or on nodes it may not run on",
            "Run the Pod where its volume is (its nodeSelector or affinity against the volume's zone), or recreate the volume where the nodes are (a StorageClass with volumeBindingMode: WaitForFirstConsumer).",
        ),
        PendingReason::NodesUnschedulable => (
            "the nodes it could use are cordoned (unschedulable)",
            "Uncordon the nodes (`kubectl uncordon`) once their maintenance is done, or add schedulable nodes.",
        ),
        PendingReason::TooManyPods => (
            "the nodes it could use hold as many Pods as they allow (maxPods)",
            "Add nodes, or raise the kubelet's maxPods where the Pod network has the addresses for it.",
        ),
        PendingReason::HostPortsInUse => (
            "the hostPort it asks for is taken on every node it could use",
            "Drop the hostPort (a Service reaches the Pod), or add nodes: a hostPort fits once per node.",
        ),
        PendingReason::NoNodes => (
            "the cluster has no node to schedule it on",
            "Add nodes, or check why the existing ones left the cluster.",
        ),
        _ => (
            "the scheduler's reasons are none the operator knows",
            "Read the scheduler's message (`kubectl describe pod`, Events) and fix what it names.",
        ),
    };
    no_fix(
        format!("Pod {pod} cannot be scheduled: {why}."),
        format!("The scheduler finds no node for Pod {pod} ({reason}): {why}."),
        evidence,
        advice.into(),
    )
}

/// A Pod scheduled to a Node whose kubelet cannot create its sandbox: the Node's network (CNI)
/// or container runtime, shared by every Pod sent there; never patched.
async fn sandbox(case: &Case, s: &mut Session) -> Result<Conclusion, AgentError> {
    let failure = &case.report.spec.failure;
    let pod = &case.report.spec.pod.name;
    let mut evidence: Vec<String> = failure.evidence.iter().take(3).cloned().collect();
    let found = failure
        .evidence
        .iter()
        .find_map(|e| SandboxFailure::parse(e));
    let node = pod_node(case);
    let on = on_node(node);
    if let Some(node) = node {
        let read = read_node(
            s,
            node,
            format!("The kubelet on {node} cannot create Pod {pod}'s sandbox."),
            format!("Read node {node}: whether it is Ready, and how many Pods it holds."),
        )
        .await?;
        if let Some(u) = read {
            evidence.push(format!(
                "node {node}: {}, {} Pods bound of {} allowed",
                if u.ready { "Ready" } else { "NotReady" },
                u.pods,
                u.allocatable_pods
            ));
        }
    }
    let what = found
        .as_ref()
        .map(SandboxFailure::describe)
        .unwrap_or_else(|| "the container runtime fails to create it".into());
    let (why, advice) = match &found {
        Some(f) if f.addresses_exhausted => (
            format!(
                "{on} has handed out every address of its Pod range: a CNI plugin that does not release the addresses of deleted Pods leaks them until none are left, or the range is smaller than the Pods the node may hold"
            ),
            format!(
                "Look for leaked addresses on {on} (the CNI's IPAM store, for host-local /var/lib/cni/networks) and the CNI plugin's own Pods and logs on it; cordon and drain the node to relieve it, and make its Pod range hold its maxPods."
            ),
        ),
        Some(f) if f.network => (
            format!(
                "{what} on {on}: every Pod sent there fails the same way until the plugin is fixed"
            ),
            format!(
                "Check the CNI plugin's Pods on {on} (kubectl -n kube-system get pods -o wide --field-selector spec.nodeName={}) and their logs, and its configuration under /etc/cni/net.d; cordon the node until they are healthy.",
                node.unwrap_or("NODE")
            ),
        ),
        Some(f) if f.sandbox_image.is_some() => (
            format!("{what}: the runtime needs it for every Pod on {on}"),
            format!(
                "Make the sandbox image pullable from {on} (its registry, the runtime's credentials or mirror), or pre-load it on the node."
            ),
        ),
        _ => (
            format!("the container runtime on {on} fails to create Pod sandboxes"),
            format!(
                "Read the container runtime's log on {on} (journalctl -u containerd) and its state; cordon the node until it creates sandboxes again."
            ),
        ),
    };
    evidence.truncate(MAX_SANDBOX_EVIDENCE);
    Ok(no_fix(
        format!("Pod {pod} cannot start on {on}: {what}."),
        format!(
            "The kubelet on {on} cannot create the Pod's sandbox because {why}. The Pod was scheduled and stays ContainerCreating; nothing in the workload is wrong, and no change to it helps."
        ),
        evidence,
        format!(
            "{advice} The Pod starts once the node creates its sandbox (or once it is deleted and rescheduled elsewhere)."
        ),
    ))
}

/// Evidence kept for a sandbox failure: the detection's lines and the Node.
const MAX_SANDBOX_EVIDENCE: usize = 6;

/// A Pod whose volume cannot be attached to its Node: a ReadWriteOnce volume still attached to
/// another (most often the Deployment's own older Pod, in a rolling update), or a storage
/// driver that fails. Never patched: a Deployment's strategy is outside what patch-safety allows.
async fn attach(case: &Case, s: &mut Session) -> Result<Conclusion, AgentError> {
    let failure = &case.report.spec.failure;
    let pod = &case.report.spec.pod.name;
    let evidence: Vec<String> = failure.evidence.iter().take(3).cloned().collect();
    let found = failure
        .evidence
        .iter()
        .find_map(|e| AttachFailure::parse(e));
    let w = &case.report.spec.workload;
    let Some(found) = found.clone().filter(|f| f.multi_attach) else {
        let volume = found
            .map(|f| format!("volume {}", f.volume))
            .unwrap_or("its volume".into());
        return Ok(no_fix(
            format!("Pod {pod} cannot start: {volume} cannot be attached to its node."),
            format!(
                "The storage driver fails to attach {volume} to the Pod's node, so the kubelet cannot mount it and no container starts; nothing in the workload is wrong."
            ),
            evidence,
            format!(
                "Read the VolumeAttachment of {volume} (kubectl get volumeattachment) and the CSI driver's controller logs; the attach is retried until it succeeds."
            ),
        ));
    };
    let mut evidence = evidence;
    // Whether the Deployment replaces Pods by starting the new one first.
    let container = failure_container(case);
    let strategy = match workload_template(case, s, &container).await? {
        Some(t) if w.kind == "Deployment" => Some(
            t.object
                .pointer("/spec/strategy/type")
                .and_then(|v| v.as_str())
                .unwrap_or("RollingUpdate")
                .to_string(),
        ),
        _ => None,
    };
    let own = !found.holders.is_empty()
        && found
            .holders
            .iter()
            .all(|h| h.starts_with(&format!("{}-", w.name)));
    let volume = &found.volume;
    if strategy.as_deref() == Some("RollingUpdate") && (own || found.holders.is_empty()) {
        evidence.push(format!(
            "Deployment {} replaces its Pods with strategy RollingUpdate",
            w.name
        ));
        let holder = found
            .holders
            .first()
            .cloned()
            .unwrap_or("the old Pod".into());
        return Ok(no_fix(
            format!(
                "Pod {pod} cannot start: its ReadWriteOnce volume {volume} is still attached to the node of the Deployment's older Pod."
            ),
            format!(
                "Deployment {} updates with RollingUpdate, which starts the new Pod before the old one stops; the old Pod ({holder}) still has ReadWriteOnce volume {volume} attached on another node, and a ReadWriteOnce volume attaches to one node at a time, so the new Pod waits (Multi-Attach error) until the old one is gone.",
                w.name
            ),
            evidence,
            format!(
                "Set Deployment {}'s strategy to Recreate (a Deployment that mounts a ReadWriteOnce volume cannot run Pods on two nodes at once), or run it as a StatefulSet; to unblock the rollout now, delete {holder}.",
                w.name
            ),
        ));
    }
    let holders = if found.holders.is_empty() {
        "a Pod on another node".to_string()
    } else {
        format!("Pod(s) {}", found.holders.join(", "))
    };
    Ok(no_fix(
        format!(
            "Pod {pod} cannot start: its ReadWriteOnce volume {volume} is attached to another node."
        ),
        format!(
            "ReadWriteOnce volume {volume} is attached to another node, where {holders} use it; it attaches to one node at a time, so Pod {pod} waits (Multi-Attach error) until it is released."
        ),
        evidence,
        format!(
            "Find who holds {volume} (kubectl describe pv {volume}; kubectl get volumeattachment) and stop it, or give this workload its own claim. A volume held by a Pod on a node that went down is released about six minutes after that Pod is deleted, or at once when the Node is deleted."
        ),
    ))
}

//! Why a Pod was evicted. The kubelet says so in the message it writes into the Pod's status
//! (`pkg/kubelet/eviction`): a Node short of memory, disk or PIDs evicts the Pods that use
//! most above their requests, whatever they run; a Pod that outgrows its own ephemeral-storage
//! limits is evicted on any Node. A Node that stops reporting evicts nothing itself: the node
//! lifecycle controller marks its Pods not ready, then deletes them when their toleration of
//! its NoExecute taint runs out (taint-based eviction).

use std::sync::LazyLock;

use k8s_openapi::api::core::v1::{Event, Pod, PodCondition};
use regex::Regex;

use super::{Detection, MAX_EVENTS, cite_events};
use crate::crd::FailureClass;

/// The cause of an eviction, as `spec.failure.reason` of an Evicted report names it (the
/// Node condition the kubelet reports for the pressure, so that `kubectl describe node` agrees).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvictionCause {
    /// The Node ran short of memory.
    NodeMemoryPressure,
    /// The Node ran short of disk (ephemeral storage or inodes, on its root or image filesystem).
    NodeDiskPressure,
    /// The Node ran short of process IDs.
    NodePidPressure,
    /// The Pod used more ephemeral storage than a container's limit, the sum of its containers'
    /// limits, or an emptyDir's `sizeLimit`: the workload's own bound, not the Node's.
    EphemeralStorageLimit,
    /// The Node stopped reporting (NotReady or unreachable): its Pods are marked not ready and
    /// then deleted by the control plane, not by the kubelet.
    NodeNotReady,
    /// None of the above can be told from the message.
    Unknown,
}

impl EvictionCause {
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionCause::NodeMemoryPressure => "MemoryPressure",
            EvictionCause::NodeDiskPressure => "DiskPressure",
            EvictionCause::NodePidPressure => "PIDPressure",
            EvictionCause::EphemeralStorageLimit => "EphemeralStorageLimit",
            EvictionCause::NodeNotReady => "NodeNotReady",
            EvictionCause::Unknown => "Evicted",
        }
    }

    pub fn parse(reason: &str) -> EvictionCause {
        [
            EvictionCause::NodeMemoryPressure,
            EvictionCause::NodeDiskPressure,
            EvictionCause::NodePidPressure,
            EvictionCause::EphemeralStorageLimit,
            EvictionCause::NodeNotReady,
        ]
        .into_iter()
        .find(|c| c.as_str() == reason)
        .unwrap_or(EvictionCause::Unknown)
    }

    /// The taint the node lifecycle controller puts on a Node under this pressure: evictions
    /// and Pods the scheduler keeps off such Nodes are one cause.
    pub fn node_taint(self) -> Option<&'static str> {
        match self {
            EvictionCause::NodeMemoryPressure => Some("node.kubernetes.io/memory-pressure"),
            EvictionCause::NodeDiskPressure => Some("node.kubernetes.io/disk-pressure"),
            EvictionCause::NodePidPressure => Some("node.kubernetes.io/pid-pressure"),
            _ => None,
        }
    }
}

/// The taints the node controller puts on a Node that stopped reporting, each with the state
/// it means: `unreachable` (no heartbeat at all) first, then `NotReady` (the kubelet said so).
pub const LOST_NODE_TAINTS: [(&str, &str); 2] = [
    ("node.kubernetes.io/unreachable", "unreachable"),
    ("node.kubernetes.io/not-ready", "NotReady"),
];

/// What an eviction message says, each part only when the kubelet wrote it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EvictionMessage {
    /// `memory`, `ephemeral-storage`, `inodes` or `pids`: what the Node was low on.
    pub node_low_on: Option<String>,
    /// The eviction threshold and what was available when it was crossed.
    pub threshold: Option<(String, String)>,
    /// The container the kubelet blamed: its name, usage, request and the resource.
    pub heaviest: Option<ContainerUse>,
    /// The container, emptyDir volume or Pod total whose ephemeral-storage limit was exceeded,
    /// with that limit.
    pub storage_limit: Option<(StorageLimit, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerUse {
    pub container: String,
    pub using: String,
    pub request: String,
    pub resource: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageLimit {
    Container(String),
    EmptyDir(String),
    PodTotal,
}

// The kubelet's formats (pkg/kubelet/eviction/helpers.go), each a bounded, linear-time match.
static NODE_LOW: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"The node was low on resource: ([a-z-]{1,32})\.").unwrap());
static THRESHOLD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"Threshold quantity: ([^,\s]{1,32}), available: ([^\s]{1,32}?)\.(?:\s|$)").unwrap()
});
static CONTAINER_USE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"Container ([a-z0-9-]{1,63}) was using ([^,\s]{1,32}), request is ([^,\s]{1,32}), has larger consumption of ([a-z-]{1,32})\.",
    )
    .unwrap()
});
static CONTAINER_LIMIT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"Container ([a-z0-9-]{1,63}) exceeded its local ephemeral storage limit "([^"\s]{1,32})""#,
    )
    .unwrap()
});
static EMPTY_DIR_LIMIT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"Usage of EmptyDir volume "([a-z0-9-]{1,63})" exceeds the limit "([^"\s]{1,32})""#)
        .unwrap()
});
static POD_LIMIT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"Pod ephemeral local storage usage exceeds the total limit of containers ([^\s]{1,32}?)\.(?:\s|$)",
    )
    .unwrap()
});

impl EvictionMessage {
    pub fn parse(message: &str) -> EvictionMessage {
        let pair = |re: &Regex| {
            re.captures(message)
                .map(|c| (c[1].to_string(), c[2].to_string()))
        };
        let storage_limit = pair(&CONTAINER_LIMIT)
            .map(|(c, l)| (StorageLimit::Container(c), l))
            .or_else(|| pair(&EMPTY_DIR_LIMIT).map(|(v, l)| (StorageLimit::EmptyDir(v), l)))
            .or_else(|| {
                POD_LIMIT
                    .captures(message)
                    .map(|c| (StorageLimit::PodTotal, c[1].to_string()))
            });
        EvictionMessage {
            node_low_on: NODE_LOW.captures(message).map(|c| c[1].to_string()),
            threshold: pair(&THRESHOLD),
            heaviest: CONTAINER_USE.captures(message).map(|c| ContainerUse {
                container: c[1].to_string(),
                using: c[2].to_string(),
                request: c[3].to_string(),
                resource: c[4].to_string(),
            }),
            storage_limit,
        }
    }

    pub fn cause(&self) -> EvictionCause {
        if self.storage_limit.is_some() {
            return EvictionCause::EphemeralStorageLimit;
        }
        match self.node_low_on.as_deref() {
            Some("memory") => EvictionCause::NodeMemoryPressure,
            Some("ephemeral-storage" | "inodes" | "nodefs" | "imagefs") => {
                EvictionCause::NodeDiskPressure
            }
            Some("pids") => EvictionCause::NodePidPressure,
            _ => EvictionCause::Unknown,
        }
    }

    /// The container the message names, if any.
    pub fn container(&self) -> Option<&str> {
        match (&self.heaviest, &self.storage_limit) {
            (Some(u), _) => Some(&u.container),
            (None, Some((StorageLimit::Container(c), _))) => Some(c),
            _ => None,
        }
    }
}

/// When the kubelet evicted the Pod: the `DisruptionTarget` condition's time, else when its
/// containers stopped. None for a Pod the kubelet did not evict.
pub fn evicted_at(pod: &Pod) -> Option<k8s_openapi::jiff::Timestamp> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Failed") || status.reason.as_deref() != Some("Evicted") {
        return None;
    }
    let disruption = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget" && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0);
    disruption.or_else(|| {
        status
            .container_statuses
            .iter()
            .flatten()
            .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
            .map(|t| t.0)
            .max()
    })
}

/// Longest eviction message quoted: the kubelet's are a few hundred bytes; the status is
/// writable by whoever may patch `pods/status`.
const MAX_MESSAGE: usize = 1024;

/// An evicted Pod: `Failed` with status reason `Evicted`.
pub(super) fn detect_eviction(pod: &Pod, events: &[&Event]) -> Option<Detection> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Failed") || status.reason.as_deref() != Some("Evicted") {
        return None;
    }
    let message = status.message.as_deref().unwrap_or("").trim();
    let message = crate::agent::truncate(message, MAX_MESSAGE);
    let parsed = EvictionMessage::parse(&message);
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("an unknown node");
    let mut evidence = vec![format!(
        "the kubelet evicted the Pod from node {node}: {}",
        if message.is_empty() {
            "no message"
        } else {
            &message
        }
    )];
    // Whether it was the Node or the Pod's own limits, as the control plane recorded it.
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget" && c.status == "True" && c.reason.is_some())
    {
        evidence.push(format!(
            "DisruptionTarget=True ({})",
            c.reason.as_deref().unwrap_or_default()
        ));
    }
    evidence.extend(
        cite_events(events, |e| e.reason.as_deref() == Some("Evicted"))
            .into_iter()
            .take(MAX_EVENTS),
    );
    Some(Detection {
        class: FailureClass::Evicted,
        reason: parsed.cause().as_str().into(),
        container: parsed.container().map(str::to_string),
        evidence,
    })
}

/// Whether the Pod's Node stopped reporting, as the Pod shows it: the control plane asked for
/// its deletion for a NoExecute taint (`DisruptionTarget`, `DeletionByTaintManager`), or the node
/// lifecycle controller set its `Ready` condition False (with no reason, as it writes it) while
/// every container, whose status only the kubelet writes, last said ready.
pub(super) fn lost_with_its_node(pod: &Pod) -> bool {
    taint_deletion(pod).is_some() || marked_not_ready(pod)
}

fn taint_deletion(pod: &Pod) -> Option<&PodCondition> {
    pod.status.as_ref()?.conditions.iter().flatten().find(|c| {
        c.type_ == "DisruptionTarget"
            && c.status == "True"
            && c.reason.as_deref() == Some("DeletionByTaintManager")
    })
}

fn marked_not_ready(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    let scheduled = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
    let ready_false_without_reason = status.conditions.iter().flatten().any(|c| {
        c.type_ == "Ready" && c.status == "False" && c.reason.as_deref().is_none_or(str::is_empty)
    });
    let containers = status.container_statuses.as_deref().unwrap_or_default();
    scheduled
        && status.phase.as_deref() == Some("Running")
        && ready_false_without_reason
        && !containers.is_empty()
        && containers.iter().all(|c| c.ready)
}

/// A Pod stranded on a Node that stopped reporting.
pub(super) fn detect_node_lost(pod: &Pod, events: &[&Event]) -> Option<Detection> {
    if !lost_with_its_node(pod) {
        return None;
    }
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("an unknown node");
    let mut evidence = Vec::new();
    if marked_not_ready(pod) {
        evidence.push(format!(
            "Ready=False, set by the node controller: node {node} stopped reporting, and its containers' last word (ready) is stale"
        ));
    }
    if let Some(c) = taint_deletion(pod) {
        let message = crate::agent::truncate(c.message.as_deref().unwrap_or("").trim(), 256);
        evidence.push(format!(
            "DisruptionTarget=True (DeletionByTaintManager): {message}"
        ));
        if let Some(at) = pod.metadata.deletion_timestamp.as_ref() {
            evidence.push(format!(
                "deletion requested at {}: it waits for node {node}'s kubelet to confirm",
                at.0
            ));
        }
    }
    evidence.extend(cite_events(events, |e| {
        matches!(
            e.reason.as_deref(),
            Some("NodeNotReady" | "TaintManagerEviction" | "NodeControllerEviction")
        )
    }));
    Some(Detection {
        class: FailureClass::Evicted,
        reason: EvictionCause::NodeNotReady.as_str().into(),
        container: None,
        evidence,
    })
}

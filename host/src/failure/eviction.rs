//! Why a Pod's Node ended it. The kubelet says so in the status it writes: an eviction's message
//! (`pkg/kubelet/eviction`): a Node short of memory, disk or PIDs evicts the Pods that use
//! most above their requests, whatever they run; a Pod that outgrows its own ephemeral-storage
//! limits is evicted on any Node. A Node shutting down terminates its Pods (`nodeshutdown`:
//! reason `Terminated`), and a kubelet refuses at admission a Pod it has no room or no match
//! for (`rejectPod`: reason `OutOfcpu`, `NodeAffinity`, ...), which happens when the Pod skipped
//! the scheduler (`spec.nodeName`) or the Node changed under it. A Node that stops reporting
//! ends nothing itself: the node lifecycle controller marks its Pods not ready, then deletes
//! them when their toleration of its NoExecute taint runs out (taint-based eviction).

use std::sync::LazyLock;

use k8s_openapi::api::core::v1::{Event, Pod, PodCondition};
use regex::Regex;

use super::{Detection, MAX_EVENTS, cite_events};
use crate::cluster::{format_bytes, format_millis};
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
    /// The Node is shutting down: its kubelet terminated the Pod (or refused it meanwhile).
    NodeShutdown,
    /// The kubelet refused the Pod at admission; the report's reason is the kubelet's own
    /// (`OutOfcpu`, `OutOfmemory`, `NodeAffinity`, ...), which `kubectl get pods` shows too.
    Rejected,
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
            EvictionCause::NodeShutdown => "NodeShutdown",
            EvictionCause::Rejected => "Rejected",
            EvictionCause::Unknown => "Evicted",
        }
    }

    pub fn parse(reason: &str) -> EvictionCause {
        let named = [
            EvictionCause::NodeMemoryPressure,
            EvictionCause::NodeDiskPressure,
            EvictionCause::NodePidPressure,
            EvictionCause::EphemeralStorageLimit,
            EvictionCause::NodeNotReady,
            EvictionCause::NodeShutdown,
            EvictionCause::Rejected,
        ]
        .into_iter()
        .find(|c| c.as_str() == reason);
        match named {
            Some(cause) => cause,
            None if is_admission_reason(reason) => EvictionCause::Rejected,
            None => EvictionCause::Unknown,
        }
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

/// What the kubelet writes before the message of a Pod it refused at admission
/// (`pkg/kubelet/kubelet.go`, `rejectPod`).
const REJECTED_PREFIX: &str = "Pod was rejected: ";
/// The status reason and the message of a Pod the kubelet terminated for a graceful node
/// shutdown (`pkg/kubelet/nodeshutdown`); a Pod it refuses meanwhile has reason `NodeShutdown`.
const SHUTDOWN_REASON: &str = "Terminated";
const SHUTDOWN_MESSAGE: &str = "in response to imminent node shutdown";

/// The kubelet's admission reasons besides `OutOf<resource>`: its scheduler-predicate checks
/// (`pkg/kubelet/lifecycle/predicate.go`) and its resource managers' refusals.
const ADMISSION_REASONS: [&str; 11] = [
    "NodeAffinity",
    "NodeName",
    "NodePorts",
    "TaintToleration",
    "InvalidNodeInfo",
    "UnexpectedAdmissionError",
    "UnexpectedPredicateFailureType",
    "PodOSNotSupported",
    "PodOSSelectorNodeLabelDoesNotMatch",
    "TopologyAffinityError",
    "SMTAlignmentError",
];

/// A reason the kubelet gives when it refuses a Pod at admission.
fn is_admission_reason(reason: &str) -> bool {
    ADMISSION_REASONS.contains(&reason)
        || reason.strip_prefix("OutOf").is_some_and(|resource| {
            (1..=63).contains(&resource.len())
                && resource
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"./_-".contains(&b))
        })
}

/// How a Pod's Node ended it, as the kubelet wrote it into the Pod's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndedByNode {
    /// Reason `Evicted`.
    Evicted,
    /// Terminated for a graceful node shutdown, or refused while the Node shuts down.
    ShutDown,
    /// Refused at admission, with the kubelet's reason (`OutOfcpu`, ...), or `Rejected` when
    /// the reason it carries is not one the kubelet writes.
    Rejected(String),
}

/// How `pod`'s Node ended it, if it did: a `Failed` Pod with an eviction's, a shutdown's or
/// an admission refusal's status reason.
pub fn ended_by_its_node(pod: &Pod) -> Option<EndedByNode> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Failed") {
        return None;
    }
    let reason = status.reason.as_deref()?;
    let message = status.message.as_deref().unwrap_or("");
    match reason {
        "Evicted" => Some(EndedByNode::Evicted),
        "NodeShutdown" => Some(EndedByNode::ShutDown),
        SHUTDOWN_REASON if message.contains(SHUTDOWN_MESSAGE) => Some(EndedByNode::ShutDown),
        _ if is_admission_reason(reason) => Some(EndedByNode::Rejected(reason.to_string())),
        _ if message.starts_with(REJECTED_PREFIX) => Some(EndedByNode::Rejected(
            EvictionCause::Rejected.as_str().into(),
        )),
        _ => None,
    }
}

/// What a refusal for want of a resource says (`InsufficientResourceError`): the resource,
/// and in its base unit (millicores for cpu, bytes for memory and storage, a count otherwise)
/// what the Pod asked, what the Node's Pods use and what the Node has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shortfall {
    pub resource: String,
    pub requested: u64,
    pub used: u64,
    pub capacity: u64,
}

static SHORTFALL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"Node didn't have enough resource: ([A-Za-z0-9./_-]{1,63}), requested: (\d{1,19}), used: (\d{1,19}), capacity: (\d{1,19})",
    )
    .unwrap()
});

impl Shortfall {
    pub fn parse(message: &str) -> Option<Shortfall> {
        let c = SHORTFALL.captures(message)?;
        Some(Shortfall {
            resource: c[1].to_string(),
            requested: c[2].parse().ok()?,
            used: c[3].parse().ok()?,
            capacity: c[4].parse().ok()?,
        })
    }

    /// An amount of the resource for a person: cores, Mi/Gi, or the count.
    pub fn amount(&self, n: u64) -> String {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        match self.resource.as_str() {
            "cpu" => format_millis(n),
            "memory" | "ephemeral-storage" => format_bytes(n),
            _ => n.to_string(),
        }
    }

    /// "it requests 2 cpu; the Pods already admitted on the node use 3500m of its 4 cpu".
    pub fn describe(&self) -> String {
        format!(
            "it requests {} {r}; the Pods already admitted on the node use {} of its {} {r}",
            self.amount(self.requested),
            self.amount(self.used),
            self.amount(self.capacity),
            r = self.resource,
        )
    }
}

/// When the Pod's Node ended it (evicted, shut down or refused): the `DisruptionTarget`
/// condition's time, else when its containers stopped, else when it started or was created (a
/// refused Pod never ran). None for a Pod its Node did not end.
pub fn evicted_at(pod: &Pod) -> Option<k8s_openapi::jiff::Timestamp> {
    ended_by_its_node(pod)?;
    let status = pod.status.as_ref()?;
    let disruption = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget" && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0);
    disruption
        .or_else(|| {
            status
                .container_statuses
                .iter()
                .flatten()
                .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
                .map(|t| t.0)
                .max()
        })
        .or_else(|| status.start_time.as_ref().map(|t| t.0))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Longest eviction message quoted: the kubelet's are a few hundred bytes; the status is
/// writable by whoever may patch `pods/status`.
const MAX_MESSAGE: usize = 1024;

/// A Pod its Node ended: evicted, terminated for a shutdown, or refused at admission.
pub(super) fn detect_ended_by_node(pod: &Pod, events: &[&Event]) -> Option<Detection> {
    let ended = ended_by_its_node(pod)?;
    let status = pod.status.as_ref()?;
    let message = status.message.as_deref().unwrap_or("").trim();
    let message = crate::agent::truncate(message, MAX_MESSAGE);
    let message = if message.is_empty() {
        "no message".into()
    } else {
        message
    };
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("an unknown node");
    let (reason, container, first, cited): (String, _, _, &[&str]) = match &ended {
        EndedByNode::Evicted => {
            let parsed = EvictionMessage::parse(&message);
            (
                parsed.cause().as_str().into(),
                parsed.container().map(str::to_string),
                format!("the kubelet evicted the Pod from node {node}: {message}"),
                &["Evicted"],
            )
        }
        EndedByNode::ShutDown => (
            EvictionCause::NodeShutdown.as_str().into(),
            None,
            format!("the kubelet on node {node} ended the Pod as the node shut down: {message}"),
            &["NodeShutdown", "Shutdown"],
        ),
        EndedByNode::Rejected(reason) => {
            let mut first =
                format!("the kubelet on node {node} refused the Pod ({reason}): {message}");
            if let Some(short) = Shortfall::parse(&message) {
                first.push_str(&format!(" ({})", short.describe()));
            }
            (reason.clone(), None, first, &[])
        }
    };
    let mut evidence = vec![first];
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
        cite_events(events, |e| {
            e.reason
                .as_deref()
                .is_some_and(|r| cited.contains(&r) || r == reason)
        })
        .into_iter()
        .take(MAX_EVENTS),
    );
    Some(Detection {
        class: FailureClass::Evicted,
        reason,
        container,
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

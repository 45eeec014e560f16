//! Reading the scheduler's FailedScheduling message:
//! `0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 node(s) didn't
//! match Pod's node affinity/selector. preemption: 0/3 nodes are available: ...`

use regex::Regex;
use std::sync::LazyLock;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Obstacle {
    /// `Insufficient memory`, `Insufficient cpu`, `Insufficient nvidia.com/gpu`.
    Insufficient(String),
    NodeSelectorMismatch,
    /// The taint as the scheduler prints it: `{dedicated: gpu}`.
    UntoleratedTaint(String),
    UnboundPersistentVolumeClaim,
    /// `persistentvolumeclaim "data" not found`.
    PersistentVolumeClaimNotFound(String),
    VolumeNodeAffinityConflict,
    PodAffinity,
    PodAntiAffinity,
    NodeUnschedulable,
    TooManyPods,
    PortsInUse,
    NoNodes,
    /// `node(s) didn't match pod topology spread constraints` (with `(missing required label)`
    /// when the nodes lack the constraint's topologyKey).
    TopologySpread,
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulingReason {
    /// How many nodes this reason ruled out, when the scheduler says.
    pub nodes: Option<u32>,
    pub text: String,
    pub obstacle: Obstacle,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SchedulingFailure {
    /// `(available, total)` from `0/3 nodes are available`.
    pub nodes: Option<(u32, u32)>,
    pub reasons: Vec<SchedulingReason>,
}

static HEADER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(\d+)/(\d+) nodes are available:?\s*").expect("static regex"));
static COUNTED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(\d+) (.+)$").expect("static regex"));
static PVC_NOT_FOUND: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"persistentvolumeclaim "([^"]+)" not found"#).expect("static regex")
});

fn classify(text: &str) -> Obstacle {
    let lower = text.to_ascii_lowercase();
    if let Some(resource) = text.strip_prefix("Insufficient ") {
        return Obstacle::Insufficient(resource.trim().to_string());
    }
    if let Some(c) = PVC_NOT_FOUND.captures(text) {
        return Obstacle::PersistentVolumeClaimNotFound(c[1].to_string());
    }
    if let Some(start) = text.find("untolerated taint") {
        let taint = text[start + "untolerated taint".len()..]
            .trim()
            .trim_end_matches('.');
        return Obstacle::UntoleratedTaint(
            taint
                .trim_start_matches('(')
                .trim_end_matches(')')
                .to_string(),
        );
    }
    if lower.contains("unbound immediate persistentvolumeclaims")
        || lower.contains("didn't find available persistent volumes to bind")
    {
        return Obstacle::UnboundPersistentVolumeClaim;
    }
    if lower.contains("node affinity/selector")
        || lower.contains("node(s) didn't match node selector")
    {
        return Obstacle::NodeSelectorMismatch;
    }
    if lower.contains("volume node affinity conflict") {
        return Obstacle::VolumeNodeAffinityConflict;
    }
    if lower.contains("anti-affinity") {
        return Obstacle::PodAntiAffinity;
    }
    if lower.contains("pod affinity") {
        return Obstacle::PodAffinity;
    }
    if lower.contains("were unschedulable") || lower.contains("node(s) were cordoned") {
        return Obstacle::NodeUnschedulable;
    }
    if lower.contains("too many pods") {
        return Obstacle::TooManyPods;
    }
    if lower.contains("free ports") {
        return Obstacle::PortsInUse;
    }
    if lower.contains("topology spread constraints") {
        return Obstacle::TopologySpread;
    }
    if lower.contains("no nodes available") {
        return Obstacle::NoNodes;
    }
    Obstacle::Other
}

/// Splits a reason list at commas that are not inside a taint's braces.
fn split_reasons(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let (mut depth, mut current) = (0i32, String::new());
    for ch in text.chars() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(ch);
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| p.trim().trim_end_matches('.').trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

pub fn parse_scheduling_message(message: &str) -> SchedulingFailure {
    // The preemption verdict repeats the counts and says nothing about the cause.
    let message = message
        .split(" preemption:")
        .next()
        .unwrap_or(message)
        .trim();
    let mut failure = SchedulingFailure::default();
    let body = match HEADER.captures(message) {
        Some(c) => {
            failure.nodes = Some((c[1].parse().unwrap_or(0), c[2].parse().unwrap_or(0)));
            &message[c.get(0).expect("match").end()..]
        }
        None => message,
    };
    for part in split_reasons(body) {
        let (nodes, text) = match COUNTED.captures(&part) {
            Some(c) => (c[1].parse().ok(), c[2].to_string()),
            None => (None, part.clone()),
        };
        let obstacle = classify(&text);
        failure.reasons.push(SchedulingReason {
            nodes,
            text,
            obstacle,
        });
    }
    failure
}

impl SchedulingFailure {
    /// The obstacle that explains the failure best: a Pod-level one (an unbound claim stops the
    /// Pod everywhere) before node-level ones, and among those the one that ruled out most nodes.
    pub fn primary(&self) -> Option<&SchedulingReason> {
        let pod_level = |o: &Obstacle| {
            matches!(
                o,
                Obstacle::UnboundPersistentVolumeClaim
                    | Obstacle::PersistentVolumeClaimNotFound(_)
                    | Obstacle::NoNodes
            )
        };
        self.reasons
            .iter()
            .find(|r| pod_level(&r.obstacle))
            .or_else(|| {
                self.reasons
                    .iter()
                    .max_by_key(|r| (r.nodes.unwrap_or(0), r.obstacle != Obstacle::Other))
            })
    }

    /// Why the Pod is pending, from the primary obstacle.
    pub fn cause(&self) -> PendingReason {
        self.primary().map_or(PendingReason::Unschedulable, |p| {
            p.obstacle.pending_reason()
        })
    }

    /// A CamelCase reason for `spec.failure.reason`.
    pub fn reason(&self) -> String {
        self.cause().to_string()
    }
}

/// Why no node takes a Pod, as `spec.failure.reason` of a Pending report names it. The Pending
/// playbook reads the reason back with `parse`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingReason {
    InsufficientMemory,
    InsufficientCpu,
    InsufficientEphemeralStorage,
    /// Another extended resource (`nvidia.com/gpu`, ...).
    InsufficientResources,
    NodeSelectorMismatch,
    UntoleratedTaint,
    UnboundPersistentVolumeClaim,
    PersistentVolumeClaimNotFound,
    VolumeNodeAffinityConflict,
    PodAffinity,
    PodAntiAffinity,
    NodesUnschedulable,
    TooManyPods,
    HostPortsInUse,
    NoNodes,
    /// A topologySpreadConstraint with `whenUnsatisfiable: DoNotSchedule` that no node meets.
    TopologySpreadConstraints,
    /// No obstacle the operator knows.
    Unschedulable,
    /// Scheduled, but the kubelet cannot set up the Pod's network (its CNI plugin fails).
    NetworkSetupFailed,
    /// Scheduled, but the container runtime cannot create the Pod's sandbox.
    PodSandboxFailed,
    /// Scheduled, but a volume cannot be attached to its Node (another Node holds a
    /// ReadWriteOnce volume, or the storage driver fails).
    VolumeAttachFailed,
    /// Started, but an init container has run for longer than
    /// [`INIT_STUCK_AFTER`](super::INIT_STUCK_AFTER) without completing (a wait for a
    /// dependency that never comes): the Pod's containers never start.
    InitContainerRunning,
}

impl PendingReason {
    pub const ALL: [PendingReason; 21] = [
        PendingReason::InsufficientMemory,
        PendingReason::InsufficientCpu,
        PendingReason::InsufficientEphemeralStorage,
        PendingReason::InsufficientResources,
        PendingReason::NodeSelectorMismatch,
        PendingReason::UntoleratedTaint,
        PendingReason::UnboundPersistentVolumeClaim,
        PendingReason::PersistentVolumeClaimNotFound,
        PendingReason::VolumeNodeAffinityConflict,
        PendingReason::PodAffinity,
        PendingReason::PodAntiAffinity,
        PendingReason::NodesUnschedulable,
        PendingReason::TooManyPods,
        PendingReason::HostPortsInUse,
        PendingReason::NoNodes,
        PendingReason::TopologySpreadConstraints,
        PendingReason::Unschedulable,
        PendingReason::NetworkSetupFailed,
        PendingReason::PodSandboxFailed,
        PendingReason::VolumeAttachFailed,
        PendingReason::InitContainerRunning,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PendingReason::InsufficientMemory => "InsufficientMemory",
            PendingReason::InsufficientCpu => "InsufficientCPU",
            PendingReason::InsufficientEphemeralStorage => "InsufficientEphemeralStorage",
            PendingReason::InsufficientResources => "InsufficientResources",
            PendingReason::NodeSelectorMismatch => "NodeSelectorMismatch",
            PendingReason::UntoleratedTaint => "UntoleratedTaint",
            PendingReason::UnboundPersistentVolumeClaim => "UnboundPersistentVolumeClaim",
            PendingReason::PersistentVolumeClaimNotFound => "PersistentVolumeClaimNotFound",
            PendingReason::VolumeNodeAffinityConflict => "VolumeNodeAffinityConflict",
            PendingReason::PodAffinity => "PodAffinity",
            PendingReason::PodAntiAffinity => "PodAntiAffinity",
            PendingReason::NodesUnschedulable => "NodesUnschedulable",
            PendingReason::TooManyPods => "TooManyPods",
            PendingReason::HostPortsInUse => "HostPortsInUse",
            PendingReason::NoNodes => "NoNodes",
            PendingReason::TopologySpreadConstraints => "TopologySpreadConstraints",
            PendingReason::Unschedulable => "Unschedulable",
            PendingReason::NetworkSetupFailed => "NetworkSetupFailed",
            PendingReason::PodSandboxFailed => "PodSandboxFailed",
            PendingReason::VolumeAttachFailed => "VolumeAttachFailed",
            PendingReason::InitContainerRunning => "InitContainerRunning",
        }
    }

    /// The Pod waits on a PersistentVolumeClaim, not on a node.
    pub fn is_about_a_claim(self) -> bool {
        matches!(
            self,
            PendingReason::UnboundPersistentVolumeClaim
                | PendingReason::PersistentVolumeClaimNotFound
        )
    }
}

impl std::fmt::Display for PendingReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PendingReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PendingReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not a reason the scheduler's message gives"))
    }
}

impl Obstacle {
    pub fn pending_reason(&self) -> PendingReason {
        match self {
            Obstacle::Insufficient(r) => match r.as_str() {
                "memory" => PendingReason::InsufficientMemory,
                "cpu" => PendingReason::InsufficientCpu,
                "ephemeral-storage" => PendingReason::InsufficientEphemeralStorage,
                _ => PendingReason::InsufficientResources,
            },
            Obstacle::NodeSelectorMismatch => PendingReason::NodeSelectorMismatch,
            Obstacle::UntoleratedTaint(_) => PendingReason::UntoleratedTaint,
            Obstacle::UnboundPersistentVolumeClaim => PendingReason::UnboundPersistentVolumeClaim,
            Obstacle::PersistentVolumeClaimNotFound(_) => {
                PendingReason::PersistentVolumeClaimNotFound
            }
            Obstacle::VolumeNodeAffinityConflict => PendingReason::VolumeNodeAffinityConflict,
            Obstacle::PodAffinity => PendingReason::PodAffinity,
            Obstacle::PodAntiAffinity => PendingReason::PodAntiAffinity,
            Obstacle::NodeUnschedulable => PendingReason::NodesUnschedulable,
            Obstacle::TooManyPods => PendingReason::TooManyPods,
            Obstacle::PortsInUse => PendingReason::HostPortsInUse,
            Obstacle::NoNodes => PendingReason::NoNodes,
            Obstacle::TopologySpread => PendingReason::TopologySpreadConstraints,
            Obstacle::Other => PendingReason::Unschedulable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_topology_spread_the_nodes_cannot_meet() {
        let f = parse_scheduling_message(
            "0/6 nodes are available: 3 node(s) didn't match pod topology spread constraints (missing required label), 3 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: 0/6 nodes are available: 6 Preemption is not helpful for scheduling.",
        );
        assert_eq!(f.reasons[0].obstacle, Obstacle::TopologySpread);
        assert_eq!(
            f.reasons[0].obstacle.pending_reason().as_str(),
            "TopologySpreadConstraints"
        );
        let f = parse_scheduling_message(
            "0/3 nodes are available: 3 node(s) didn't match pod topology spread constraints.",
        );
        assert_eq!(f.reasons[0].obstacle, Obstacle::TopologySpread);
    }

    #[test]
    fn reads_insufficient_memory() {
        let f = parse_scheduling_message(
            "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.",
        );
        assert_eq!(f.nodes, Some((0, 3)));
        assert_eq!(f.reasons.len(), 1);
        assert_eq!(
            f.reasons[0].obstacle,
            Obstacle::Insufficient("memory".into())
        );
        assert_eq!(f.reasons[0].nodes, Some(3));
        assert_eq!(f.reason(), "InsufficientMemory");
    }

    #[test]
    fn reads_taints_and_selectors_and_picks_the_widest() {
        let f = parse_scheduling_message(
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
        );
        assert_eq!(
            f.reasons[0].obstacle,
            Obstacle::UntoleratedTaint("{dedicated: gpu}".into())
        );
        assert_eq!(f.reasons[1].obstacle, Obstacle::NodeSelectorMismatch);
        assert_eq!(f.reason(), "NodeSelectorMismatch");
        let f = parse_scheduling_message(
            "0/4 nodes are available: 1 Insufficient cpu, 3 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: 0/4 nodes are available: 1 No preemption victims found for incoming pod, 3 Preemption is not helpful for scheduling.",
        );
        assert_eq!(f.reason(), "UntoleratedTaint");
        assert_eq!(f.reasons.len(), 2);
    }

    #[test]
    fn reads_volume_problems_as_pod_level() {
        let f = parse_scheduling_message(
            "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.",
        );
        assert_eq!(f.reason(), "UnboundPersistentVolumeClaim");
        let f = parse_scheduling_message(
            r#"0/2 nodes are available: persistentvolumeclaim "data-0" not found. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."#,
        );
        assert_eq!(
            f.reasons[0].obstacle,
            Obstacle::PersistentVolumeClaimNotFound("data-0".into())
        );
        let f = parse_scheduling_message("no nodes available to schedule pods");
        assert_eq!(f.reason(), "NoNodes");
    }

    #[test]
    fn every_pending_reason_reads_back_from_its_name() {
        for reason in PendingReason::ALL {
            assert_eq!(reason.as_str().parse::<PendingReason>(), Ok(reason));
        }
        assert!("Error".parse::<PendingReason>().is_err());
        let f = parse_scheduling_message(
            "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.",
        );
        assert_eq!(f.reason().parse(), Ok(PendingReason::InsufficientCpu));
    }
}

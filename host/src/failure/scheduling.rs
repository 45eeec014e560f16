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

    /// A CamelCase reason for `spec.failure.reason`.
    pub fn reason(&self) -> String {
        let Some(primary) = self.primary() else {
            return "Unschedulable".into();
        };
        match &primary.obstacle {
            Obstacle::Insufficient(r) => match r.as_str() {
                "memory" => "InsufficientMemory".into(),
                "cpu" => "InsufficientCPU".into(),
                "ephemeral-storage" => "InsufficientEphemeralStorage".into(),
                _ => "InsufficientResources".into(),
            },
            Obstacle::NodeSelectorMismatch => "NodeSelectorMismatch".into(),
            Obstacle::UntoleratedTaint(_) => "UntoleratedTaint".into(),
            Obstacle::UnboundPersistentVolumeClaim => "UnboundPersistentVolumeClaim".into(),
            Obstacle::PersistentVolumeClaimNotFound(_) => "PersistentVolumeClaimNotFound".into(),
            Obstacle::VolumeNodeAffinityConflict => "VolumeNodeAffinityConflict".into(),
            Obstacle::PodAffinity => "PodAffinity".into(),
            Obstacle::PodAntiAffinity => "PodAntiAffinity".into(),
            Obstacle::NodeUnschedulable => "NodesUnschedulable".into(),
            Obstacle::TooManyPods => "TooManyPods".into(),
            Obstacle::PortsInUse => "HostPortsInUse".into(),
            Obstacle::NoNodes => "NoNodes".into(),
            Obstacle::Other => "Unschedulable".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

//! The JSON answers of the k8s-reader plugin's tools, as types: the plugin writes its answers
//! with them and the host's rules brain reads them back with them, so the two cannot drift apart.
//! A model reads the same answers as text.
//!
//! Answers go out through `serde_json::Value`, whose maps keep their keys sorted, so the text of
//! an answer lists its keys alphabetically whatever the field order here. A field the tool could
//! not read from the object is `null`, not left out, so a reader sees the whole shape.
//!
//! `list_nodes_capacity` and `get_resource_usage` answer with the host's node usage, passed
//! through; that shape belongs to the host's `cluster` module, which produces it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `check_service`: whether a Service exists in the namespace under investigation, what it
/// serves and what backs it, and which Services have names like it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceCheck {
    /// The name asked for, without a `.namespace…` suffix.
    pub service: String,
    pub namespace: String,
    pub exists: bool,
    /// Present exactly when the Service exists.
    #[serde(flatten)]
    pub found: Option<FoundService>,
    /// Services whose names look like a typo or a variant of the one asked for ("did you mean").
    pub similar: Vec<SimilarService>,
}

/// What an existing Service serves and what backs it. No field defaults: an answer without
/// them is about a Service that does not exist.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FoundService {
    #[serde(rename = "type")]
    pub type_: Option<String>,
    #[serde(rename = "clusterIP")]
    pub cluster_ip: Option<String>,
    /// Empty for a Service without a selector (its endpoints are made by hand).
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePort>,
    /// How many of the Pods the selector matches are ready.
    pub ready_endpoints: usize,
    pub ready_pods: Vec<String>,
    pub not_ready_pods: Vec<String>,
    /// The container ports the ready Pods declare (each once): what a `targetPort` must name
    /// or number for the Service to reach them.
    pub backing_ports: Vec<BackingPort>,
    /// When the selector matches no Pod: the Pods it misses by one label (a value like the
    /// one selected, or a label they lack), grouped by what they carry instead.
    pub selector_misses: Vec<SelectorMiss>,
}

/// Pods a Service's selector misses by one label.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SelectorMiss {
    /// The selector's key the Pods do not satisfy.
    pub key: String,
    /// The value the selector asks for.
    pub selected: String,
    /// The value the Pods carry; None when they lack the label.
    pub pods_have: Option<String>,
    pub pods: Vec<String>,
    /// How many of `pods` are ready.
    pub ready: usize,
}

/// A container port a Pod behind a Service declares.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BackingPort {
    pub name: Option<String>,
    pub container_port: i32,
    pub protocol: Option<String>,
}

impl FoundService {
    /// The entry of `spec.ports` that serves `port`, or the only one when `port` is not given.
    pub fn port(&self, port: Option<u16>) -> Option<&ServicePort> {
        match port {
            Some(n) => self.ports.iter().find(|p| p.port == Some(i32::from(n))),
            None if self.ports.len() == 1 => self.ports.first(),
            None => None,
        }
    }

    /// Whether `port`'s target is one the ready Pods declare; None when they declare no
    /// port at all (a container may listen on a port it does not declare, so nothing can be
    /// told then).
    pub fn reaches_backing_port(&self, port: &ServicePort) -> Option<bool> {
        if self.backing_ports.is_empty() {
            return None;
        }
        // An absent targetPort is the port itself.
        let target = port
            .target_port
            .clone()
            .or(port.port.map(IntOrString::Int))?;
        Some(self.backing_ports.iter().any(|b| match &target {
            IntOrString::Int(n) => b.container_port == *n,
            IntOrString::String(name) => b.name.as_deref() == Some(name.as_str()),
        }))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SimilarService {
    pub name: String,
    pub ports: Vec<ServicePort>,
}

/// One entry of a Service's `spec.ports`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: Option<i32>,
    pub target_port: Option<IntOrString>,
    pub protocol: Option<String>,
}

/// A port given by number or by the name of a container port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i32),
    String(String),
}

/// `check_network_policies`: whether the NetworkPolicies of the namespace under investigation
/// let one Pod's connections reach the Pods behind a Service of that namespace, or (without a
/// Service) its DNS lookups reach the cluster DNS.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NetworkPolicyCheck {
    pub namespace: String,
    /// The Pod that connects.
    pub pod: String,
    pub service: String,
    /// The Pod port the connections reach (the Service port's targetPort), when it is known.
    pub target_port: Option<i32>,
    /// The Service Pod whose labels and ports were judged (its first ready one).
    pub service_pod: Option<String>,
    /// The policies isolating the Service's Pods for ingress, and what they do with the traffic.
    pub ingress: PolicyVerdict,
    /// The policies isolating the connecting Pod for egress.
    pub egress: PolicyVerdict,
    /// Whether this judges the Pod's DNS lookups (UDP port 53 to the cluster DNS) rather than a
    /// Service of the namespace.
    pub dns: bool,
}

/// The policies of one direction that select a Pod: any one isolates it, and traffic passes
/// only if one of them admits it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PolicyVerdict {
    pub policies: Vec<String>,
    /// Those with a rule that admits the traffic.
    pub admitted_by: Vec<String>,
    /// Those with a rule that cannot be judged from the objects (an `ipBlock`, a named port no
    /// container declares): they may admit it.
    pub undecided: Vec<String>,
}

impl PolicyVerdict {
    /// Whether these policies drop the traffic: they isolate the Pod and none admits it.
    pub fn drops(&self) -> bool {
        !self.policies.is_empty() && self.admitted_by.is_empty() && self.undecided.is_empty()
    }
}

/// One entry of `list_events`: an Event about the object, reduced to what a reader needs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EventSummary {
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub reason: Option<String>,
    pub message: Option<String>,
    /// How often it happened (core/v1 `count`, or events.k8s.io `series.count`).
    pub count: Option<i32>,
    /// When it last happened.
    pub last: Option<String>,
    /// The component that reported it (`kubelet`, `default-scheduler`, ...).
    pub source: Option<String>,
    /// The container it is about, as a field path (`spec.containers{app}`).
    pub container: Option<String>,
}

/// One entry of `rollout_history`: a ReplicaSet of the Deployment, newest revision first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RolloutRevision {
    /// `deployment.kubernetes.io/revision`, 0 when the ReplicaSet lacks it.
    pub revision: i64,
    pub replica_set: Option<String>,
    pub created: Option<String>,
    pub replicas: i64,
    pub ready_replicas: i64,
    pub available_replicas: i64,
    pub containers: Vec<RevisionContainer>,
}

impl RolloutRevision {
    /// Whether Pods of this revision ran: one is ready or available.
    pub fn ran(&self) -> bool {
        self.ready_replicas > 0 || self.available_replicas > 0
    }

    pub fn container(&self, name: &str) -> Option<&RevisionContainer> {
        self.containers
            .iter()
            .find(|c| c.name.as_deref() == Some(name))
    }
}

/// A container of a revision's Pod template: what changes between rollouts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RevisionContainer {
    pub name: Option<String>,
    pub image: Option<String>,
    pub resources: Option<ResourceRequirements>,
}

impl RevisionContainer {
    /// The container's request of a resource (`memory`, `cpu`) as written.
    pub fn request(&self, resource: &str) -> Option<&str> {
        self.resources
            .as_ref()?
            .requests
            .as_ref()?
            .get(resource)
            .map(String::as_str)
    }
}

/// A container's `resources`, quantities as written (`512Mi`, `250m`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceRequirements {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<BTreeMap<String, String>>,
    /// Anything else the template says (`claims`), kept as it was.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

/// `container_memory_history` (the prometheus plugin): a Pod's containers' working set over a
/// window, from `container_memory_working_set_bytes`, with the queries that produced it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MemoryHistory {
    pub namespace: String,
    pub pod: String,
    pub window_minutes: u32,
    /// The PromQL run, so a person can rerun it.
    pub queries: Vec<String>,
    /// One per container with data; empty when Prometheus has none.
    pub containers: Vec<ContainerMemory>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerMemory {
    pub container: String,
    /// The highest working set in the window (`max_over_time`, every sample counted).
    pub peak_bytes: f64,
    pub last_bytes: Option<f64>,
    /// Points read for the trend.
    pub samples: usize,
    /// Each run of the container seen in the window (a restart shows as a drop).
    pub lifetimes: Vec<Lifetime>,
    /// Set when the working set climbs steadily in every run long enough to tell: a leak.
    pub leak: Option<Leak>,
}

/// One run of a container between restarts, as a straight-line fit of its working set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Lifetime {
    /// Unix seconds.
    pub start: f64,
    pub end: f64,
    pub start_bytes: f64,
    pub peak_bytes: f64,
    pub points: usize,
    pub slope_bytes_per_minute: f64,
    /// How straight the climb is (1 is a line).
    pub r_squared: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Leak {
    /// The median climb of the runs that show it.
    pub slope_bytes_per_minute: f64,
    /// Runs that climb steadily, of the runs long enough to tell.
    pub climbing: usize,
    pub judged: usize,
}

/// `container_cpu_throttling`: the share of CFS periods in which a container was throttled.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CpuThrottling {
    pub namespace: String,
    pub pod: String,
    pub window_minutes: u32,
    pub queries: Vec<String>,
    pub containers: Vec<ContainerThrottling>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerThrottling {
    pub container: String,
    /// Throttled periods over all periods, 0 to 1.
    pub max_ratio: f64,
    pub mean_ratio: f64,
    pub last_ratio: Option<f64>,
    /// The most CPU it used, in cores.
    pub max_cores: Option<f64>,
}

/// `restart_history`: restarts per container in a window (kube-state-metrics).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RestartHistory {
    pub namespace: String,
    pub pod: String,
    pub window_minutes: u32,
    pub queries: Vec<String>,
    pub containers: Vec<ContainerRestarts>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerRestarts {
    pub container: String,
    pub restarts_in_window: u64,
    pub restart_count: u64,
    /// `kube_pod_container_status_last_terminated_reason` reasons seen (`OOMKilled`, ...).
    pub last_terminated_reasons: Vec<String>,
}

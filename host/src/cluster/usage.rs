//! Node allocatable against what the Pods on it request, computed the way `kubectl describe node`
//! and the scheduler do.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube_quantity::ParsedQuantity;
use serde::{Deserialize, Serialize};

/// CPU in millicores and memory in bytes. Read back from JSON, the readable twins are ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResourceAmounts {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

/// Serialized with readable twins (`"memory": "1.2Gi"`) so that no reader has to format bytes.
impl Serialize for ResourceAmounts {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("ResourceAmounts", 4)?;
        s.serialize_field("cpuMillis", &self.cpu_millis)?;
        s.serialize_field("memoryBytes", &self.memory_bytes)?;
        s.serialize_field("cpu", &format_millis(self.cpu_millis))?;
        s.serialize_field("memory", &format_bytes(self.memory_bytes))?;
        s.end()
    }
}

impl ResourceAmounts {
    fn add(&mut self, other: ResourceAmounts) {
        self.cpu_millis += other.cpu_millis;
        self.memory_bytes += other.memory_bytes;
    }

    fn max(self, other: ResourceAmounts) -> ResourceAmounts {
        ResourceAmounts {
            cpu_millis: self.cpu_millis.max(other.cpu_millis),
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
        }
    }

    pub fn saturating_sub(self, other: ResourceAmounts) -> ResourceAmounts {
        ResourceAmounts {
            cpu_millis: (self.cpu_millis - other.cpu_millis).max(0),
            memory_bytes: (self.memory_bytes - other.memory_bytes).max(0),
        }
    }
}

/// What the cluster interface's `node-usage` answers, and what the `list_nodes_capacity` and
/// `get_resource_usage` tools pass on: the rules brain reads their answers back as this.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeUsage {
    pub node: String,
    pub allocatable: ResourceAmounts,
    pub allocatable_pods: i64,
    /// Sum of the effective requests of the non-terminated Pods bound to the node.
    pub requests: ResourceAmounts,
    pub limits: ResourceAmounts,
    /// Allocatable minus requests: what the scheduler can still place here.
    pub free: ResourceAmounts,
    pub pods: usize,
    pub ready: bool,
    pub unschedulable: bool,
    pub taints: Vec<Taint>,
    pub labels: BTreeMap<String, String>,
}

/// A node's taint. In JSON it is the string `kubectl describe node` prints, `key=value:Effect` or
/// `key:Effect`, and it reads back from any string into the same string (a redacted one that
/// lost its effect included).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`; None when the string has no `:`.
    pub effect: Option<String>,
}

impl From<&k8s_openapi::api::core::v1::Taint> for Taint {
    fn from(t: &k8s_openapi::api::core::v1::Taint) -> Self {
        Taint {
            key: t.key.clone(),
            value: t.value.clone(),
            effect: Some(t.effect.clone()),
        }
    }
}

impl std::fmt::Display for Taint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key)?;
        if let Some(value) = &self.value {
            write!(f, "={value}")?;
        }
        if let Some(effect) = &self.effect {
            write!(f, ":{effect}")?;
        }
        Ok(())
    }
}

impl From<&str> for Taint {
    fn from(text: &str) -> Self {
        // A key or value holds no `:` and a key no `=`, so the last `:` ends the pair.
        let (pair, effect) = match text.rsplit_once(':') {
            Some((pair, effect)) => (pair, Some(effect.to_string())),
            None => (text, None),
        };
        let (key, value) = match pair.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (pair, None),
        };
        Taint {
            key: key.to_string(),
            value,
            effect,
        }
    }
}

impl From<String> for Taint {
    fn from(text: String) -> Self {
        Taint::from(text.as_str())
    }
}

impl From<Taint> for String {
    fn from(taint: Taint) -> Self {
        taint.to_string()
    }
}

/// Millicores of a CPU quantity, rounded up as Kubernetes does.
pub fn cpu_millis(q: &Quantity) -> Option<i64> {
    let parsed = ParsedQuantity::try_from(q).ok()?;
    Some((parsed.to_bytes_f64()? * 1000.0).ceil() as i64)
}

/// Bytes of a memory quantity, rounded up.
pub fn memory_bytes(q: &Quantity) -> Option<i64> {
    let parsed = ParsedQuantity::try_from(q).ok()?;
    Some(parsed.to_bytes_f64()?.ceil() as i64)
}

fn amounts(map: Option<&BTreeMap<String, Quantity>>) -> ResourceAmounts {
    let Some(map) = map else {
        return ResourceAmounts::default();
    };
    ResourceAmounts {
        cpu_millis: map.get("cpu").and_then(cpu_millis).unwrap_or(0),
        memory_bytes: map.get("memory").and_then(memory_bytes).unwrap_or(0),
    }
}

fn container_amounts(c: &Container) -> (ResourceAmounts, ResourceAmounts) {
    let resources = c.resources.as_ref();
    let limits = amounts(resources.and_then(|r| r.limits.as_ref()));
    let mut requests = amounts(resources.and_then(|r| r.requests.as_ref()));
    // A limit without a request defaults the request to the limit.
    if requests.cpu_millis == 0 {
        requests.cpu_millis = limits.cpu_millis;
    }
    if requests.memory_bytes == 0 {
        requests.memory_bytes = limits.memory_bytes;
    }
    (requests, limits)
}

/// A Pod's effective requests and limits: the regular containers and sidecars together, or the
/// largest init container with the sidecars started before it, whichever is larger; plus overhead.
pub fn pod_requests(pod: &Pod) -> (ResourceAmounts, ResourceAmounts) {
    let Some(spec) = pod.spec.as_ref() else {
        return Default::default();
    };
    let mut requests = ResourceAmounts::default();
    let mut limits = ResourceAmounts::default();
    for c in &spec.containers {
        let (r, l) = container_amounts(c);
        requests.add(r);
        limits.add(l);
    }
    let mut sidecars = (ResourceAmounts::default(), ResourceAmounts::default());
    let mut init_peak = (ResourceAmounts::default(), ResourceAmounts::default());
    for c in spec.init_containers.iter().flatten() {
        let (r, l) = container_amounts(c);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.0.add(r);
            sidecars.1.add(l);
            requests.add(r);
            limits.add(l);
        } else {
            let mut with_sidecars = sidecars;
            with_sidecars.0.add(r);
            with_sidecars.1.add(l);
            init_peak = (
                init_peak.0.max(with_sidecars.0),
                init_peak.1.max(with_sidecars.1),
            );
        }
    }
    let mut requests = requests.max(init_peak.0);
    let mut limits = limits.max(init_peak.1);
    let overhead = amounts(spec.overhead.as_ref());
    requests.add(overhead);
    limits.add(overhead);
    (requests, limits)
}

/// What the Pods bound to a node take of it: the sum of the effective requests and limits of
/// those that have not terminated, and how many they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeLoad {
    pub requests: ResourceAmounts,
    pub limits: ResourceAmounts,
    pub pods: usize,
}

impl NodeLoad {
    /// Adds `pod` if it is bound to `node` and has not terminated.
    pub fn add(&mut self, node: &str, pod: &Pod) {
        let on_node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node);
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if !on_node || matches!(phase, Some("Succeeded" | "Failed")) {
            return;
        }
        let (r, l) = pod_requests(pod);
        self.requests.add(r);
        self.limits.add(l);
        self.pods += 1;
    }

    /// Adds another share of the same node's load.
    pub fn absorb(&mut self, other: NodeLoad) {
        self.requests.add(other.requests);
        self.limits.add(other.limits);
        self.pods += other.pods;
    }

    /// The load `pods` put on `node`.
    pub fn of(node: &str, pods: &[Pod]) -> NodeLoad {
        let mut load = NodeLoad::default();
        for pod in pods {
            load.add(node, pod);
        }
        load
    }
}

/// A Pod as its node's load reads it ([`NodeLoad::add`]): name, node, phase and the containers'
/// resources, nothing else. A node's Pods are read so, from a dump or the API server: as full
/// `Pod`s, the few hundred Pods of a node were tens of MB for one answer (the burst benchmark's
/// peak heap was half that while investigations asked for node usage).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct UsagePod {
    metadata: Option<UsageMeta>,
    spec: Option<UsageSpec>,
    status: Option<UsageStatus>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct UsageMeta {
    name: Option<String>,
    namespace: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageSpec {
    node_name: Option<String>,
    #[serde(default)]
    containers: Vec<UsageContainer>,
    init_containers: Option<Vec<UsageContainer>>,
    overhead: Option<BTreeMap<String, Quantity>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageContainer {
    #[serde(default)]
    name: String,
    resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    restart_policy: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct UsageStatus {
    phase: Option<String>,
}

impl From<UsagePod> for Pod {
    fn from(view: UsagePod) -> Pod {
        use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
        let container = |c: UsageContainer| Container {
            name: c.name,
            resources: c.resources,
            restart_policy: c.restart_policy,
            ..Default::default()
        };
        Pod {
            metadata: view
                .metadata
                .map(|m| kube::api::ObjectMeta {
                    name: m.name,
                    namespace: m.namespace,
                    ..Default::default()
                })
                .unwrap_or_default(),
            spec: view.spec.map(|s| PodSpec {
                node_name: s.node_name,
                containers: s.containers.into_iter().map(container).collect(),
                init_containers: s
                    .init_containers
                    .map(|cs| cs.into_iter().map(container).collect()),
                overhead: s.overhead,
                ..Default::default()
            }),
            status: view.status.map(|s| PodStatus {
                phase: s.phase,
                ..Default::default()
            }),
        }
    }
}

/// What a Pod bound to `node` puts on it, from its `spec` alone (JSON) and its phase: a dump's
/// reader finds the two apart and does not parse the rest of the Pod again.
pub(crate) fn load_of_spec(
    node: &str,
    spec: &str,
    phase: Option<&str>,
) -> serde_json::Result<NodeLoad> {
    let view = UsagePod {
        metadata: None,
        spec: serde_json::from_str(spec)?,
        status: Some(UsageStatus {
            phase: phase.map(str::to_string),
        }),
    };
    Ok(NodeLoad::of(node, &[Pod::from(view)]))
}

/// Usage of one node, from the Pods bound to it that have not terminated.
pub fn node_usage(node: &Node, pods: &[Pod]) -> NodeUsage {
    let name = node.metadata.name.clone().unwrap_or_default();
    usage_with(node, NodeLoad::of(&name, pods))
}

/// Usage of one node under `load`.
pub fn usage_with(node: &Node, load: NodeLoad) -> NodeUsage {
    let name = node.metadata.name.clone().unwrap_or_default();
    let status = node.status.as_ref();
    let allocatable_map = status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
    let allocatable = amounts(allocatable_map);
    let allocatable_pods = allocatable_map
        .and_then(|m| m.get("pods"))
        .and_then(|q| q.0.parse().ok())
        .unwrap_or(0);
    NodeUsage {
        node: name,
        allocatable,
        allocatable_pods,
        ready: status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True"),
        unschedulable: node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
        taints: node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .map(|ts| ts.iter().map(Taint::from).collect())
            .unwrap_or_default(),
        labels: node.metadata.labels.clone().unwrap_or_default(),
        requests: load.requests,
        limits: load.limits,
        pods: load.pods,
        free: allocatable.saturating_sub(load.requests),
    }
}

/// Bytes as a person reads them: `3Gi`, `1.2Gi`, `512Mi`.
pub fn format_bytes(bytes: i64) -> String {
    const UNITS: [(&str, f64); 4] = [
        ("Ti", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Ki", 1024.0),
    ];
    for (unit, size) in UNITS {
        let value = bytes as f64 / size;
        if value >= 1.0 {
            let text = format!("{value:.1}");
            return format!("{}{unit}", text.trim_end_matches(".0"));
        }
    }
    bytes.to_string()
}

/// Millicores as a person reads them: `500m`, `2`, `1.5`.
pub fn format_millis(millis: i64) -> String {
    if millis % 1000 == 0 {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_quantities() {
        assert_eq!(cpu_millis(&Quantity("500m".into())), Some(500));
        assert_eq!(cpu_millis(&Quantity("2".into())), Some(2000));
        assert_eq!(cpu_millis(&Quantity("0.25".into())), Some(250));
        assert_eq!(
            memory_bytes(&Quantity("3Gi".into())),
            Some(3 * 1024 * 1024 * 1024)
        );
        assert_eq!(
            memory_bytes(&Quantity("8023460Ki".into())),
            Some(8023460 * 1024)
        );
        assert_eq!(memory_bytes(&Quantity("1G".into())), Some(1_000_000_000));
        assert_eq!(memory_bytes(&Quantity("lots".into())), None);
        assert_eq!(format_bytes(3 * 1024 * 1024 * 1024), "3Gi");
        assert_eq!(format_bytes(1288490189), "1.2Gi");
        assert_eq!(format_millis(500), "500m");
    }

    #[test]
    fn sums_requests_of_running_pods_like_kubectl_describe_node() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "node-a"},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        let pod = |name: &str, node: &str, phase: &str, mem: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"nodeName": node, "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": mem}}},
                    {"name": "b", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}
                ], "initContainers": [
                    {"name": "big-init", "resources": {"requests": {"cpu": "3", "memory": "1Mi"}}}
                ]},
                "status": {"phase": phase}
            }))
            .unwrap()
        };
        let pods = vec![
            pod("one", "node-a", "Running", "2Gi"),
            pod("done", "node-a", "Succeeded", "4Gi"),
            pod("elsewhere", "node-b", "Running", "4Gi"),
        ];
        let usage = node_usage(&node, &pods);
        assert_eq!(usage.pods, 1);
        // cpu: max(250m + 1 (limit as request), 3 init) = 3
        assert_eq!(usage.requests.cpu_millis, 3000);
        assert_eq!(usage.requests.memory_bytes, 3 * 1024 * 1024 * 1024);
        assert_eq!(usage.free.memory_bytes, 5 * 1024 * 1024 * 1024);
        assert!(usage.ready);
    }

    #[test]
    fn node_usage_reads_back_from_its_json() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "gpu-1", "labels": {"pool": "gpu"}},
            "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
                                {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]},
            "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"}}
        }))
        .unwrap();
        let usage = node_usage(&node, &[]);
        let text = serde_json::to_value(&usage).unwrap();
        assert_eq!(
            text["taints"],
            json!([
                "dedicated=gpu:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute"
            ])
        );
        assert_eq!(text["allocatable"]["memory"], "32Gi");
        let read: NodeUsage = serde_json::from_value(text).unwrap();
        assert_eq!(read, usage);
        assert_eq!(read.taints[0].value.as_deref(), Some("gpu"));
        assert_eq!(read.taints[1].value, None);
        assert_eq!(read.taints[1].effect.as_deref(), Some("NoExecute"));
    }

    #[test]
    fn a_taint_string_reads_back_as_it_was_written() {
        for text in [
            "dedicated=gpu:NoSchedule",
            "node-role.kubernetes.io/control-plane:NoSchedule",
            "empty=:PreferNoSchedule",
            "no-effect:",
            "api-token=<redacted>",
        ] {
            assert_eq!(Taint::from(text).to_string(), text);
        }
        assert_eq!(Taint::from("api-token=<redacted>").effect, None);
    }
}

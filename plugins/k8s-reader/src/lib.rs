//! `k8s-reader`: the built-in diagnostic tools. Everything it knows comes through the host's
//! read-only `cluster` interface, scoped to the namespace under investigation.

wit_bindgen::generate!({ world: "tool", path: "../../wit" });

mod netpol;

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sre_operator::plugin::cluster::{self, ClusterError, LogRequest};
use tool_shapes::{
    BackingPort, EventSummary, FoundService, IntOrString, ResourceRequirements, RevisionContainer,
    RolloutRevision, SelectorMiss, ServiceCheck, ServicePort, SimilarService,
};

struct Reader;

/// Lines of log returned when the caller does not say, as the seed does.
const DEFAULT_LOG_LINES: u32 = 100;

fn spec(name: &str, description: &str, parameters: Value) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: description.into(),
        parameters: parameters.to_string(),
    }
}

fn string_param(description: &str) -> Value {
    json!({"type": "string", "description": description, "minLength": 1, "maxLength": 253})
}

impl Guest for Reader {
    fn configure(settings: String) -> Result<(), String> {
        let value: Value =
            serde_json::from_str(&settings).map_err(|e| format!("settings are not JSON: {e}"))?;
        match value.as_object() {
            Some(map) if map.is_empty() => Ok(()),
            Some(map) => Err(format!(
                "k8s-reader takes no settings; remove {}",
                map.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
            None => Err("settings must be a JSON object".into()),
        }
    }

    fn describe() -> Vec<ToolSpec> {
        vec![
            spec(
                "inspect_object",
                "Read one Kubernetes object (Pod, Deployment, Service, ConfigMap, Node, ...) as JSON, \
                 with its spec and status. Secrets show their keys only.",
                json!({"type": "object", "required": ["kind", "name"], "additionalProperties": false, "properties": {
                    "kind": string_param("Kind as kubectl accepts it: Pod, Deployment, svc, ..."),
                    "name": string_param("Object name"),
                    "namespace": string_param("Namespace; defaults to the one under investigation")
                }}),
            ),
            spec(
                "fetch_logs",
                "Read the last lines of a container's log; previous=true reads the last terminated \
                 instance (what a crash-looping container printed before it died).",
                json!({"type": "object", "required": ["pod"], "additionalProperties": false, "properties": {
                    "pod": string_param("Pod name"),
                    "container": string_param("Container name; defaults to the Pod's first container"),
                    "previous": {"type": "boolean", "default": false},
                    "lines": {"type": "integer", "minimum": 1, "maximum": 1000, "default": DEFAULT_LOG_LINES}
                }}),
            ),
            spec(
                "get_resource_usage",
                "A node's allocatable CPU and memory against the requests and limits of the Pods \
                 on it, and what is still free, as `kubectl describe node` shows.",
                json!({"type": "object", "required": ["nodeName"], "additionalProperties": false, "properties": {
                    "nodeName": string_param("Node name")
                }}),
            ),
            spec(
                "list_events",
                "The events about an object in the namespace under investigation, oldest first.",
                json!({"type": "object", "required": ["kind", "name"], "additionalProperties": false, "properties": {
                    "kind": string_param("Kind of the involved object, e.g. Pod"),
                    "name": string_param("Name of the involved object")
                }}),
            ),
            spec(
                "check_service",
                "Whether a Service exists in the namespace under investigation, its selector and \
                 ports, how many ready endpoints back it and the container ports they declare \
                 (what targetPort must name), the Pods its selector misses by one label when it \
                 selects none, and Services with similar names.",
                json!({"type": "object", "required": ["name"], "additionalProperties": false, "properties": {
                    "name": string_param("Service name, as the application uses it as a host name")
                }}),
            ),
            spec(
                "check_network_policies",
                "Whether the NetworkPolicies of the namespace under investigation let a Pod's \
                 connections reach a Service's Pods on a port: the policies that isolate the \
                 Service's Pods (ingress) and the Pod (egress), which of them admit the traffic, \
                 and which cannot be judged from the objects (an ipBlock). Without a service: \
                 whether the Pod's egress policies let its DNS lookups reach the cluster DNS.",
                json!({"type": "object", "required": ["pod"], "additionalProperties": false, "properties": {
                    "pod": string_param("The Pod that connects"),
                    "service": string_param("Service name, as the application uses it as a host name; leave out to judge the Pod's DNS lookups"),
                    "port": {"type": "integer", "minimum": 1, "maximum": 65535, "description": "The Service port the Pod connects to; defaults to the Service's only port"}
                }}),
            ),
            spec(
                "rollout_history",
                "The ReplicaSets of a Deployment, newest revision first, with each revision's \
                 images, resource requests and how many of its Pods are ready: which revision \
                 last worked.",
                json!({"type": "object", "required": ["name"], "additionalProperties": false, "properties": {
                    "name": string_param("Deployment name")
                }}),
            ),
            spec(
                "list_nodes_capacity",
                "Every node with its allocatable CPU and memory, what the Pods on it request, what \
                 is free, readiness, taints and labels.",
                json!({"type": "object", "additionalProperties": false, "properties": {}}),
            ),
        ]
    }

    fn invoke(name: String, arguments: String) -> Result<String, ToolError> {
        let args: Value = serde_json::from_str(&arguments)
            .map_err(|e| ToolError::InvalidArguments(format!("arguments are not JSON: {e}")))?;
        if !args.is_object() {
            return Err(ToolError::InvalidArguments(
                "arguments must be a JSON object".into(),
            ));
        }
        match name.as_str() {
            "inspect_object" => inspect_object(&args),
            "fetch_logs" => fetch_logs(&args),
            "get_resource_usage" => get_resource_usage(&args),
            "list_events" => list_events(&args),
            "check_service" => check_service(&args),
            "check_network_policies" => netpol::check_network_policies(&args),
            "rollout_history" => rollout_history(&args),
            "list_nodes_capacity" => list_nodes_capacity(),
            other => Err(ToolError::UnknownTool(other.to_string())),
        }
    }
}

export!(Reader);

fn required<'a>(args: &'a Value, key: &str) -> Result<&'a str, ToolError> {
    args.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ToolError::InvalidArguments(format!("`{key}` (a non-empty string) is required"))
        })
}

fn optional<'a>(args: &'a Value, key: &str) -> Option<&'a str> {
    args.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn host_error(e: ClusterError) -> ToolError {
    ToolError::Failed(match e {
        ClusterError::NotFound(m) => format!("not found: {m}"),
        ClusterError::Forbidden(m) => format!("forbidden: {m}"),
        ClusterError::TooLarge(m) => format!("too large: {m}"),
        ClusterError::Failed(m) => m,
    })
}

fn parse(text: String) -> Result<Value, ToolError> {
    serde_json::from_str(&text)
        .map_err(|e| ToolError::Failed(format!("the host sent invalid JSON: {e}")))
}

fn pretty(value: &Value) -> Result<String, ToolError> {
    serde_json::to_string_pretty(value).map_err(|e| ToolError::Failed(e.to_string()))
}

/// A typed answer as pretty JSON, its keys sorted like every other answer's.
fn answer(shape: &impl serde::Serialize) -> Result<String, ToolError> {
    pretty(&serde_json::to_value(shape).map_err(|e| ToolError::Failed(e.to_string()))?)
}

fn inspect_object(args: &Value) -> Result<String, ToolError> {
    let kind = required(args, "kind")?;
    let name = required(args, "name")?;
    let mut object =
        parse(cluster::get_object(kind, optional(args, "namespace"), name).map_err(host_error)?)?;
    // Server bookkeeping says nothing about a failure and costs the reader's budget.
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    pretty(&object)
}

fn fetch_logs(args: &Value) -> Result<String, ToolError> {
    let lines = match args.get("lines") {
        None | Some(Value::Null) => DEFAULT_LOG_LINES,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                ToolError::InvalidArguments("`lines` must be an integer from 1 to 1000".into())
            })? as u32,
    };
    let previous = args
        .get("previous")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let request = LogRequest {
        pod: required(args, "pod")?.to_string(),
        container: optional(args, "container").map(str::to_string),
        previous,
        tail_lines: Some(lines),
    };
    cluster::logs(&request).map_err(host_error)
}

fn get_resource_usage(args: &Value) -> Result<String, ToolError> {
    let node = required(args, "nodeName")?;
    pretty(&parse(cluster::node_usage(node).map_err(host_error)?)?)
}

fn list_events(args: &Value) -> Result<String, ToolError> {
    let events = parse(
        cluster::events(required(args, "kind")?, required(args, "name")?).map_err(host_error)?,
    )?;
    let summary: Vec<EventSummary> = events
        .as_array()
        .into_iter()
        .flatten()
        .map(event_summary)
        .collect();
    answer(&summary)
}

fn string_at(value: &Value, pointer: &str) -> Option<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A core/v1 Event reduced to what a reader needs. Events written through events.k8s.io (the
/// scheduler's) carry their count and time in `series` and `eventTime`.
fn event_summary(e: &Value) -> EventSummary {
    let count = e
        .get("count")
        .filter(|c| !c.is_null())
        .or_else(|| e.pointer("/series/count"));
    let last = ["/lastTimestamp", "/series/lastObservedTime", "/eventTime"]
        .iter()
        .find_map(|p| e.pointer(p).filter(|v| !v.is_null()));
    EventSummary {
        type_: string_at(e, "/type"),
        reason: string_at(e, "/reason"),
        message: string_at(e, "/message"),
        count: count
            .and_then(Value::as_i64)
            .and_then(|c| i32::try_from(c).ok()),
        last: last.and_then(Value::as_str).map(str::to_string),
        source: e
            .pointer("/source/component")
            .or_else(|| e.get("reportingComponent"))
            .and_then(Value::as_str)
            .map(str::to_string),
        container: string_at(e, "/involvedObject/fieldPath"),
    }
}

/// Whether the labels of an object satisfy a Service's equality selector.
fn selects(selector: &BTreeMap<String, String>, labels: Option<&Value>) -> bool {
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)).and_then(Value::as_str) == Some(v.as_str()))
}

fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Levenshtein distance, for "did you mean" suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn similar(name: &str, candidate: &str) -> bool {
    // Two edits are a typo in a word, not a different short word: `loyalty-db` is not
    // `loyalty-web`, though two edits apart. The last `-` part must be mostly the same.
    let last = |n: &'_ str| n.rsplit('-').next().unwrap_or(n).to_string();
    let (a, b) = (last(name), last(candidate));
    let typo = distance(name, candidate) <= 2 && 2 * distance(&a, &b) <= a.len().min(b.len());
    candidate != name
        && (candidate.starts_with(&format!("{name}-"))
            || candidate.ends_with(&format!("-{name}"))
            || name.starts_with(&format!("{candidate}-"))
            || typo)
}

fn check_service(args: &Value) -> Result<String, ToolError> {
    let name = required(args, "name")?;
    let services = parse(cluster::list_objects("Service", None, None).map_err(host_error)?)?;
    let services = services.as_array().cloned().unwrap_or_default();
    let check = service_check(name, cluster::namespace(), &services, || {
        let pods = parse(cluster::list_objects("Pod", None, None).map_err(host_error)?)?;
        Ok(pods.as_array().cloned().unwrap_or_default())
    })?;
    answer(&check)
}

/// The `check_service` answer about `name` among the namespace's Services; `list_pods` is asked
/// only when the Service selects Pods.
fn service_check(
    name: &str,
    namespace: String,
    services: &[Value],
    list_pods: impl FnOnce() -> Result<Vec<Value>, ToolError>,
) -> Result<ServiceCheck, ToolError> {
    // A host name may be written as svc.namespace or a full cluster DNS name.
    let short = name.split('.').next().unwrap_or(name);
    let similar_services: Vec<SimilarService> = services
        .iter()
        .filter_map(|s| Some((object_name(s)?, s)))
        .filter(|(candidate, _)| similar(short, candidate))
        .map(|(candidate, s)| SimilarService {
            name: candidate.to_string(),
            ports: service_ports(s),
        })
        .collect();
    let mut check = ServiceCheck {
        service: short.to_string(),
        namespace,
        exists: false,
        found: None,
        similar: similar_services,
    };
    let Some(service) = services.iter().find(|s| object_name(s) == Some(short)) else {
        return Ok(check);
    };
    let selector = string_map(service.pointer("/spec/selector"));
    let (mut ready_pods, mut not_ready_pods) = (Vec::new(), Vec::new());
    let mut backing_ports = std::collections::BTreeSet::new();
    let mut selector_misses = Vec::new();
    // A Service without a selector has hand-made endpoints.
    if !selector.is_empty() {
        let pods = list_pods()?;
        for pod in pods
            .iter()
            .filter(|p| selects(&selector, p.pointer("/metadata/labels")))
        {
            let Some(name) = object_name(pod) else {
                continue;
            };
            if pod_ready(pod) {
                ready_pods.push(name.to_string());
                backing_ports.extend(declared_ports(pod));
            } else {
                not_ready_pods.push(name.to_string());
            }
        }
        if ready_pods.is_empty() && not_ready_pods.is_empty() {
            selector_misses = misses(&selector, &pods);
        }
    }
    check.exists = true;
    check.found = Some(FoundService {
        type_: string_at(service, "/spec/type"),
        cluster_ip: string_at(service, "/spec/clusterIP"),
        selector,
        ports: service_ports(service),
        ready_endpoints: ready_pods.len(),
        ready_pods,
        not_ready_pods,
        backing_ports: backing_ports.into_iter().collect(),
        selector_misses,
    });
    Ok(check)
}

/// Pods that `selector` misses by exactly one label: one whose value is like the selected one
/// (a typo, a renamed app), or, for a selector of several labels, one they lack.
fn misses(selector: &BTreeMap<String, String>, pods: &[Value]) -> Vec<SelectorMiss> {
    /// Pod names kept per miss: enough to find the workload.
    const NAMES: usize = 5;
    let mut found: BTreeMap<(String, Option<String>), SelectorMiss> = BTreeMap::new();
    for pod in pods {
        let (Some(name), labels) = (object_name(pod), pod.pointer("/metadata/labels")) else {
            continue;
        };
        let have = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        let mut differing = selector.iter().filter(|(k, v)| have(k) != Some(v.as_str()));
        let (Some((key, selected)), None) = (differing.next(), differing.next()) else {
            continue;
        };
        let pods_have = have(key).map(str::to_string);
        let near = match &pods_have {
            Some(value) => similar(selected, value),
            None => selector.len() > 1,
        };
        if !near {
            continue;
        }
        let miss = found
            .entry((key.clone(), pods_have.clone()))
            .or_insert_with(|| SelectorMiss {
                key: key.clone(),
                selected: selected.clone(),
                pods_have,
                ..SelectorMiss::default()
            });
        if miss.pods.len() < NAMES {
            miss.pods.push(name.to_string());
        }
        miss.ready += usize::from(pod_ready(pod));
    }
    found.into_values().collect()
}

/// The ports `pod`'s containers declare.
fn declared_ports(pod: &Value) -> impl Iterator<Item = BackingPort> + '_ {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("ports")?.as_array())
        .flatten()
        .filter_map(|p| {
            Some(BackingPort {
                name: string_at(p, "/name"),
                container_port: i32::try_from(p.get("containerPort")?.as_i64()?).ok()?,
                protocol: string_at(p, "/protocol"),
            })
        })
}

/// A container's `resources` as written; None when it is not an object.
fn resource_requirements(resources: &Value) -> Option<ResourceRequirements> {
    let mut other = resources.as_object()?.clone();
    Some(ResourceRequirements {
        limits: other.remove("limits").map(|m| string_map(Some(&m))),
        requests: other.remove("requests").map(|m| string_map(Some(&m))),
        other,
    })
}

/// The string values of a JSON object (a selector, quantities); anything else is left out.
fn string_map(object: Option<&Value>) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    // Inserted one by one: `collect` into a map would add a sort to the component.
    for (k, v) in object.and_then(Value::as_object).into_iter().flatten() {
        if let Some(v) = v.as_str() {
            map.insert(k.clone(), v.to_string());
        }
    }
    map
}

fn object_name(object: &Value) -> Option<&str> {
    object.pointer("/metadata/name").and_then(Value::as_str)
}

fn service_ports(service: &Value) -> Vec<ServicePort> {
    service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| ServicePort {
            name: string_at(p, "/name"),
            port: p
                .get("port")
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok()),
            target_port: p.get("targetPort").and_then(|t| match t {
                Value::String(s) => Some(IntOrString::String(s.clone())),
                other => other
                    .as_i64()
                    .and_then(|n| i32::try_from(n).ok())
                    .map(IntOrString::Int),
            }),
            protocol: string_at(p, "/protocol"),
        })
        .collect()
}

fn rollout_history(args: &Value) -> Result<String, ToolError> {
    let name = required(args, "name")?;
    let sets = parse(cluster::list_objects("ReplicaSet", None, None).map_err(host_error)?)?;
    let revisions = revisions(name, sets.as_array().map(Vec::as_slice).unwrap_or_default());
    if revisions.is_empty() {
        return Err(ToolError::Failed(format!(
            "no ReplicaSet of Deployment {name} in namespace {}",
            cluster::namespace()
        )));
    }
    answer(&revisions)
}

/// The revisions of Deployment `name` among the namespace's ReplicaSets, newest first.
fn revisions(name: &str, replica_sets: &[Value]) -> Vec<RolloutRevision> {
    let count = |rs: &Value, field: &str| {
        rs.pointer(&format!("/status/{field}"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let mut revisions: Vec<RolloutRevision> = replica_sets
        .iter()
        .filter(|rs| {
            rs.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|o| {
                    o.get("kind").and_then(Value::as_str) == Some("Deployment")
                        && o.get("name").and_then(Value::as_str) == Some(name)
                })
        })
        .map(|rs| RolloutRevision {
            revision: rs
                .pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
                .and_then(Value::as_str)
                .and_then(|r| r.parse().ok())
                .unwrap_or(0),
            replica_set: string_at(rs, "/metadata/name"),
            created: string_at(rs, "/metadata/creationTimestamp"),
            replicas: count(rs, "replicas"),
            ready_replicas: count(rs, "readyReplicas"),
            available_replicas: count(rs, "availableReplicas"),
            containers: rs
                .pointer("/spec/template/spec/containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| RevisionContainer {
                    name: string_at(c, "/name"),
                    image: string_at(c, "/image"),
                    resources: c.get("resources").and_then(resource_requirements),
                })
                .collect(),
        })
        .collect();
    revisions.sort_by_key(|r| std::cmp::Reverse(r.revision));
    revisions
}

fn list_nodes_capacity() -> Result<String, ToolError> {
    let nodes = parse(cluster::list_objects("Node", None, None).map_err(host_error)?)?;
    let mut usage = Vec::new();
    for node in nodes.as_array().into_iter().flatten() {
        let Some(name) = node.pointer("/metadata/name").and_then(Value::as_str) else {
            continue;
        };
        usage.push(parse(cluster::node_usage(name).map_err(host_error)?)?);
    }
    pretty(&Value::Array(usage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn similar_service_names() {
        assert!(similar("redis", "redis-master"));
        assert!(similar("postgres", "postgress"));
        assert!(similar("billing-db", "billing"));
        assert!(!similar("redis", "web"));
        assert!(similar("payments-api", "payment-api"));
        assert!(similar("ledger-postgress", "ledger-postgres"));
        assert!(similar("catalog", "catalgo"));
        assert!(!similar("loyalty-db", "loyalty-web"));
        assert!(!similar("orders-db", "orders-ui"));
        assert!(!similar("redis", "redis"));
    }

    /// The answer as the host reads it: the text the tool returns, parsed back into its shape.
    fn read_back<T: serde::de::DeserializeOwned>(shape: &impl serde::Serialize) -> (Value, T) {
        let text = answer(shape).unwrap();
        (
            serde_json::from_str(&text).unwrap(),
            serde_json::from_str(&text).unwrap(),
        )
    }

    fn keys(value: &Value) -> BTreeSet<&str> {
        value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    fn service(name: &str, selector: Value, ports: Value) -> Value {
        json!({"metadata": {"name": name},
               "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.7", "selector": selector, "ports": ports}})
    }

    fn pod(name: &str, app: &str, ready: bool) -> Value {
        let status = if ready { "True" } else { "False" };
        json!({"metadata": {"name": name, "labels": {"app": app}},
               "status": {"conditions": [{"type": "Ready", "status": status}]}})
    }

    #[test]
    fn a_missing_service_is_answered_with_similar_names_and_their_ports() {
        let services = [service(
            "redis-master",
            json!({"app": "redis"}),
            json!([{"name": "redis", "port": 6379, "targetPort": "redis", "protocol": "TCP"}]),
        )];
        let check = service_check(
            "redis.shop.svc.cluster.local",
            "shop".into(),
            &services,
            || panic!("no Pods are listed for a Service that does not exist"),
        )
        .unwrap();
        let (text, read): (Value, ServiceCheck) = read_back(&check);
        assert_eq!(read, check);
        assert_eq!(
            keys(&text),
            BTreeSet::from(["exists", "namespace", "service", "similar"])
        );
        assert_eq!(read.service, "redis");
        assert!(!read.exists);
        assert_eq!(read.found, None);
        assert_eq!(
            read.similar,
            [SimilarService {
                name: "redis-master".into(),
                ports: vec![ServicePort {
                    name: Some("redis".into()),
                    port: Some(6379),
                    target_port: Some(IntOrString::String("redis".into())),
                    protocol: Some("TCP".into()),
                }],
            }]
        );
    }

    #[test]
    fn an_existing_service_is_answered_with_its_ready_and_unready_pods() {
        let services = [service(
            "billing",
            json!({"app": "billing"}),
            json!([{"port": 8080, "targetPort": 8081}]),
        )];
        let with_ports = |mut pod: Value, ports: Value| {
            pod["spec"] =
                json!({"containers": [{"name": "app", "ports": ports}, {"name": "sidecar"}]});
            pod
        };
        let pods = vec![
            with_ports(
                pod("billing-1", "billing", true),
                json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]),
            ),
            with_ports(
                pod("billing-3", "billing", true),
                json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}, {"containerPort": 9090}]),
            ),
            with_ports(
                pod("billing-2", "billing", false),
                json!([{"name": "debug", "containerPort": 5005}]),
            ),
            pod("web-1", "web", true),
        ];
        let check = service_check("billing", "shop".into(), &services, || Ok(pods)).unwrap();
        let (text, read): (Value, ServiceCheck) = read_back(&check);
        assert_eq!(read, check);
        assert_eq!(
            keys(&text),
            BTreeSet::from([
                "backingPorts",
                "clusterIP",
                "exists",
                "namespace",
                "notReadyPods",
                "ports",
                "readyEndpoints",
                "readyPods",
                "selector",
                "selectorMisses",
                "service",
                "similar",
                "type",
            ])
        );
        // A field the Service does not set is null, not left out.
        assert_eq!(text["ports"][0]["name"], Value::Null);
        let found = read.found.unwrap();
        assert!(read.exists);
        assert_eq!(found.ready_endpoints, 2);
        assert_eq!(found.ready_pods, ["billing-1", "billing-3"]);
        assert_eq!(found.not_ready_pods, ["billing-2"]);
        assert_eq!(found.ports[0].port, Some(8080));
        assert_eq!(found.ports[0].target_port, Some(IntOrString::Int(8081)));
        assert_eq!(found.cluster_ip.as_deref(), Some("10.96.0.7"));
        // What the ready Pods declare, each port once; an unready Pod's ports are not among them.
        let http = BackingPort {
            name: Some("http".into()),
            container_port: 8080,
            protocol: Some("TCP".into()),
        };
        let metrics = BackingPort {
            name: None,
            container_port: 9090,
            protocol: None,
        };
        assert_eq!(found.backing_ports, [metrics, http]);
        // The Service sends 8080 to 8081, which no ready Pod declares.
        assert_eq!(
            found.reaches_backing_port(found.port(Some(8080)).unwrap()),
            Some(false)
        );
    }

    #[test]
    fn a_target_port_reaches_the_pods_by_number_by_name_or_as_the_port_itself() {
        let found = |ports: Value, backing: Vec<BackingPort>| {
            let services = [service("api", json!({"app": "api"}), ports)];
            let mut check = service_check("api", "shop".into(), &services, || Ok(vec![]))
                .unwrap()
                .found
                .unwrap();
            check.backing_ports = backing;
            check
        };
        let http = |port| BackingPort {
            name: Some("http".into()),
            container_port: port,
            protocol: None,
        };
        let by_name = found(
            json!([{"port": 80, "targetPort": "http"}]),
            vec![http(8080)],
        );
        assert_eq!(
            by_name.reaches_backing_port(by_name.port(None).unwrap()),
            Some(true)
        );
        let wrong_name = found(json!([{"port": 80, "targetPort": "web"}]), vec![http(8080)]);
        assert_eq!(
            wrong_name.reaches_backing_port(&wrong_name.ports[0]),
            Some(false)
        );
        // No targetPort: the port itself.
        let same = found(json!([{"port": 8080}]), vec![http(8080)]);
        assert_eq!(same.reaches_backing_port(&same.ports[0]), Some(true));
        // Pods that declare nothing tell nothing.
        let undeclared = found(json!([{"port": 80, "targetPort": 9999}]), vec![]);
        assert_eq!(undeclared.reaches_backing_port(&undeclared.ports[0]), None);
        // Two ports and none asked for: which one is meant is not known.
        let two = found(json!([{"port": 80}, {"port": 443}]), vec![http(8080)]);
        assert!(two.port(None).is_none());
        assert_eq!(two.port(Some(443)).unwrap().port, Some(443));
    }

    #[test]
    fn a_selector_that_matches_nothing_names_the_pods_it_misses_by_one_label() {
        let labelled = |name: &str, labels: Value, ready: bool| {
            let mut pod = pod(name, "x", ready);
            pod["metadata"]["labels"] = labels;
            pod
        };
        let pods = vec![
            labelled(
                "redis-1",
                json!({"app": "sessions-redis", "tier": "cache"}),
                true,
            ),
            labelled(
                "redis-2",
                json!({"app": "sessions-redis", "tier": "cache"}),
                false,
            ),
            // Misses by a label it lacks.
            labelled("redis-3", json!({"app": "sessions-redis-master"}), true),
            // Misses by two labels, or by a value nothing like the selected one.
            labelled("web-1", json!({"app": "storefront"}), true),
            labelled("web-2", json!({"app": "web", "tier": "cache"}), true),
        ];
        let services = [service(
            "sessions-redis",
            json!({"app": "sessions-redis-master", "tier": "cache"}),
            json!([{"port": 6379}]),
        )];
        let check = service_check("sessions-redis", "web".into(), &services, || {
            Ok(pods.clone())
        })
        .unwrap();
        let found = check.found.unwrap();
        assert_eq!(found.ready_endpoints, 0);
        assert_eq!(
            found.selector_misses,
            [
                SelectorMiss {
                    key: "app".into(),
                    selected: "sessions-redis-master".into(),
                    pods_have: Some("sessions-redis".into()),
                    pods: vec!["redis-1".into(), "redis-2".into()],
                    ready: 1,
                },
                SelectorMiss {
                    key: "tier".into(),
                    selected: "cache".into(),
                    pods_have: None,
                    pods: vec!["redis-3".into()],
                    ready: 1,
                },
            ]
        );
        // A selector that matches some Pod reports no misses.
        let services = [service(
            "web",
            json!({"app": "storefront"}),
            json!([{"port": 80}]),
        )];
        let check = service_check("web", "web".into(), &services, || Ok(pods)).unwrap();
        assert!(check.found.unwrap().selector_misses.is_empty());
    }

    #[test]
    fn a_service_without_a_selector_lists_no_pods() {
        let services = [service("external", json!(null), json!([{"port": 443}]))];
        let check = service_check("external", "shop".into(), &services, || {
            panic!("a Service without a selector has hand-made endpoints")
        })
        .unwrap();
        let found = check.found.unwrap();
        assert!(found.selector.is_empty());
        assert_eq!(found.ready_endpoints, 0);
    }

    #[test]
    fn events_keep_their_count_and_time_from_either_api() {
        let core = json!({"type": "Warning", "reason": "BackOff", "message": "Back-off restarting",
                          "count": 34, "lastTimestamp": "2026-11-25T09:41:07Z",
                          "source": {"component": "kubelet"},
                          "involvedObject": {"fieldPath": "spec.containers{app}"}});
        let scheduler = json!({"type": "Warning", "reason": "FailedScheduling", "message": "0/3 nodes",
                               "count": null, "series": {"count": 5, "lastObservedTime": "2026-11-25T09:42:00Z"},
                               "reportingComponent": "default-scheduler"});
        let summary = vec![event_summary(&core), event_summary(&scheduler)];
        let (text, read): (Value, Vec<EventSummary>) = read_back(&summary);
        assert_eq!(read, summary);
        assert_eq!(
            keys(&text[1]),
            BTreeSet::from([
                "container",
                "count",
                "last",
                "message",
                "reason",
                "source",
                "type"
            ])
        );
        assert_eq!(read[0].count, Some(34));
        assert_eq!(read[0].container.as_deref(), Some("spec.containers{app}"));
        assert_eq!(read[1].count, Some(5));
        assert_eq!(read[1].last.as_deref(), Some("2026-11-25T09:42:00Z"));
        assert_eq!(read[1].source.as_deref(), Some("default-scheduler"));
        assert_eq!(read[1].container, None);
    }

    #[test]
    fn rollout_history_lists_the_deployments_revisions_newest_first() {
        let replica_set = |name: &str, owner: &str, revision: &str, ready: i64, image: &str| {
            json!({"metadata": {"name": name, "creationTimestamp": "2026-11-25T09:00:00Z",
                                "annotations": {"deployment.kubernetes.io/revision": revision},
                                "ownerReferences": [{"kind": "Deployment", "name": owner}]},
                   "spec": {"template": {"spec": {"containers": [
                       {"name": "app", "image": image,
                        "resources": {"requests": {"memory": "512Mi"}, "claims": [{"name": "gpu"}]}}]}}},
                   "status": {"replicas": 1, "readyReplicas": ready}})
        };
        let sets = [
            replica_set("web-1", "web", "1", 2, "web:1.0"),
            replica_set("web-2", "web", "2", 0, "web:2.0"),
            replica_set("api-1", "api", "3", 1, "api:1.0"),
        ];
        let history = revisions("web", &sets);
        let (text, read): (Value, Vec<RolloutRevision>) = read_back(&history);
        assert_eq!(read, history);
        assert_eq!(
            keys(&text[0]),
            BTreeSet::from([
                "availableReplicas",
                "containers",
                "created",
                "readyReplicas",
                "replicaSet",
                "replicas",
                "revision",
            ])
        );
        // What the template says beyond requests and limits is passed on as it was.
        assert_eq!(
            text[0]["containers"][0]["resources"]["claims"][0]["name"],
            "gpu"
        );
        assert_eq!(read.iter().map(|r| r.revision).collect::<Vec<_>>(), [2, 1]);
        assert!(!read[0].ran());
        assert!(read[1].ran());
        let app = read[1].container("app").unwrap();
        assert_eq!(app.image.as_deref(), Some("web:1.0"));
        assert_eq!(app.request("memory"), Some("512Mi"));
        assert_eq!(read[1].available_replicas, 0);
    }
}

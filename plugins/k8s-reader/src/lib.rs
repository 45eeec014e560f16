//! `k8s-reader`: the built-in diagnostic tools. Everything it knows comes through the host's
//! read-only `cluster` interface, scoped to the namespace under investigation.

wit_bindgen::generate!({ world: "tool", path: "../../wit" });

use serde_json::{Value, json};
use sre_operator::plugin::cluster::{self, ClusterError, LogRequest};

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
                 ports, how many ready endpoints back it, and Services with similar names.",
                json!({"type": "object", "required": ["name"], "additionalProperties": false, "properties": {
                    "name": string_param("Service name, as the application uses it as a host name")
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
    let summary: Vec<Value> = events
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let count = e
                .get("count")
                .filter(|c| !c.is_null())
                .or_else(|| e.pointer("/series/count"));
            let last = ["/lastTimestamp", "/series/lastObservedTime", "/eventTime"]
                .iter()
                .find_map(|p| e.pointer(p).filter(|v| !v.is_null()));
            json!({
                "type": e.get("type"),
                "reason": e.get("reason"),
                "message": e.get("message"),
                "count": count,
                "last": last,
                "source": e.pointer("/source/component").or_else(|| e.get("reportingComponent")),
                "container": e.pointer("/involvedObject/fieldPath"),
            })
        })
        .collect();
    pretty(&Value::Array(summary))
}

/// Whether the labels of an object satisfy a Service's equality selector.
fn selects(selector: &serde_json::Map<String, Value>, labels: Option<&Value>) -> bool {
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
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
    candidate != name
        && (candidate.starts_with(&format!("{name}-"))
            || candidate.ends_with(&format!("-{name}"))
            || name.starts_with(&format!("{candidate}-"))
            || distance(name, candidate) <= 2)
}

fn check_service(args: &Value) -> Result<String, ToolError> {
    let name = required(args, "name")?;
    // A host name may be written as svc.namespace or a full cluster DNS name.
    let short = name.split('.').next().unwrap_or(name);
    let services = parse(cluster::list_objects("Service", None, None).map_err(host_error)?)?;
    let services = services.as_array().cloned().unwrap_or_default();
    let similar_names: Vec<Value> = services
        .iter()
        .filter_map(|s| s.pointer("/metadata/name").and_then(Value::as_str))
        .filter(|candidate| similar(short, candidate))
        .map(|candidate| {
            let svc = services.iter().find(|s| s.pointer("/metadata/name").and_then(Value::as_str) == Some(candidate));
            json!({"name": candidate, "ports": svc.and_then(|s| s.pointer("/spec/ports")).map(ports_of).unwrap_or_default()})
        })
        .collect();
    let Some(service) = services
        .iter()
        .find(|s| s.pointer("/metadata/name").and_then(Value::as_str) == Some(short))
    else {
        return pretty(&json!({
            "service": short,
            "namespace": cluster::namespace(),
            "exists": false,
            "similar": similar_names,
        }));
    };
    let selector = service
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let (ready, not_ready) = if selector.is_empty() {
        (Vec::new(), Vec::new()) // a Service without a selector has hand-made endpoints
    } else {
        let pods = parse(cluster::list_objects("Pod", None, None).map_err(host_error)?)?;
        let matching: Vec<&Value> = pods
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| selects(&selector, p.pointer("/metadata/labels")))
            .collect();
        let name_of = |p: &&Value| p.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
        (
            matching
                .iter()
                .filter(|p| pod_ready(p))
                .map(name_of)
                .collect::<Vec<_>>(),
            matching
                .iter()
                .filter(|p| !pod_ready(p))
                .map(name_of)
                .collect::<Vec<_>>(),
        )
    };
    pretty(&json!({
        "service": short,
        "namespace": cluster::namespace(),
        "exists": true,
        "type": service.pointer("/spec/type"),
        "clusterIP": service.pointer("/spec/clusterIP"),
        "selector": selector,
        "ports": service.pointer("/spec/ports").map(ports_of).unwrap_or_default(),
        "readyEndpoints": ready.len(),
        "readyPods": ready,
        "notReadyPods": not_ready,
        "similar": similar_names,
    }))
}

fn ports_of(ports: &Value) -> Vec<Value> {
    ports
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| json!({"name": p.get("name"), "port": p.get("port"), "targetPort": p.get("targetPort"), "protocol": p.get("protocol")}))
        .collect()
}

fn rollout_history(args: &Value) -> Result<String, ToolError> {
    let name = required(args, "name")?;
    let sets = parse(cluster::list_objects("ReplicaSet", None, None).map_err(host_error)?)?;
    let mut revisions: Vec<(i64, Value)> = sets
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rs| {
            rs.pointer("/metadata/ownerReferences").and_then(Value::as_array).into_iter().flatten().any(|o| {
                o.get("kind").and_then(Value::as_str) == Some("Deployment") && o.get("name").and_then(Value::as_str) == Some(name)
            })
        })
        .map(|rs| {
            let revision = rs
                .pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
                .and_then(Value::as_str)
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            let containers: Vec<Value> = rs
                .pointer("/spec/template/spec/containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|c| json!({"name": c.get("name"), "image": c.get("image"), "resources": c.get("resources")}))
                .collect();
            let summary = json!({
                "revision": revision,
                "replicaSet": rs.pointer("/metadata/name"),
                "created": rs.pointer("/metadata/creationTimestamp"),
                "replicas": rs.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
                "readyReplicas": rs.pointer("/status/readyReplicas").cloned().unwrap_or(json!(0)),
                "availableReplicas": rs.pointer("/status/availableReplicas").cloned().unwrap_or(json!(0)),
                "containers": containers,
            });
            (revision, summary)
        })
        .collect();
    if revisions.is_empty() {
        return Err(ToolError::Failed(format!(
            "no ReplicaSet of Deployment {name} in namespace {}",
            cluster::namespace()
        )));
    }
    revisions.sort_by_key(|r| std::cmp::Reverse(r.0));
    pretty(&Value::Array(
        revisions.into_iter().map(|(_, v)| v).collect(),
    ))
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

    #[test]
    fn similar_service_names() {
        assert!(similar("redis", "redis-master"));
        assert!(similar("postgres", "postgress"));
        assert!(similar("billing-db", "billing"));
        assert!(!similar("redis", "web"));
        assert!(!similar("redis", "redis"));
    }
}

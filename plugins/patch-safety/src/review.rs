//! The review itself: pure functions over JSON, tested natively.

use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Allow,
    Deny(String),
    Rewrite { patch: String, reason: String },
}

/// What the filter allows; every field has a safe default.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Settings {
    /// Kinds a patch may target. Secret, RBAC, Namespace and Node targets are refused regardless.
    pub allowed_kinds: Vec<String>,
    /// Fields under a pod template's `containers/N/` a patch may touch.
    pub allowed_container_fields: Vec<String>,
    /// Whether `/spec/replicas` may change.
    pub allow_replicas: bool,
    /// Largest patch, in bytes of JSON.
    pub max_patch_bytes: usize,
    pub max_operations: usize,
    /// Highest cpu and memory a patch may set as a request or limit (Kubernetes quantities).
    pub resource_ceiling: Ceiling,
    /// Highest replica count a patch may set.
    pub max_replicas: u64,
    /// Instead of denying a patch without `test` guards, add them from the current object.
    pub add_missing_guards: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ceiling {
    pub cpu: String,
    pub memory: String,
}

impl Default for Ceiling {
    fn default() -> Self {
        Ceiling {
            cpu: "4".into(),
            memory: "8Gi".into(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            allowed_kinds: ["Deployment", "StatefulSet", "DaemonSet", "CronJob"]
                .map(String::from)
                .to_vec(),
            allowed_container_fields: [
                "image",
                "resources",
                "env",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
                "command",
                "args",
            ]
            .map(String::from)
            .to_vec(),
            allow_replicas: true,
            max_patch_bytes: 8 * 1024,
            max_operations: 32,
            resource_ceiling: Ceiling::default(),
            max_replicas: 50,
            add_missing_guards: false,
        }
    }
}

impl Settings {
    pub fn parse(text: &str) -> Result<Settings, String> {
        let settings: Settings =
            serde_json::from_str(text).map_err(|e| format!("invalid settings: {e}"))?;
        for (name, value, parse) in [
            (
                "resourceCeiling.cpu",
                &settings.resource_ceiling.cpu,
                quantity as fn(&str) -> Option<f64>,
            ),
            (
                "resourceCeiling.memory",
                &settings.resource_ceiling.memory,
                quantity,
            ),
        ] {
            if parse(value).is_none() {
                return Err(format!(
                    "invalid settings: {name} {value:?} is not a Kubernetes quantity"
                ));
            }
        }
        for kind in &settings.allowed_kinds {
            if let Some(reason) = forbidden_kind(kind) {
                return Err(format!(
                    "invalid settings: allowedKinds may not include {kind}: {reason}"
                ));
            }
        }
        Ok(settings)
    }
}

/// Targets no setting can allow.
fn forbidden_kind(kind: &str) -> Option<&'static str> {
    match kind {
        "Secret" => Some("Secret contents are never read or written"),
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" | "ServiceAccount" => {
            Some("RBAC objects grant permissions; changing them is privilege escalation")
        }
        "Namespace" => Some("a Namespace change affects every workload in it"),
        "Node" => Some("a Node change affects every workload on it"),
        _ => None,
    }
}

/// Parses a Kubernetes quantity (`500m`, `2`, `1.5Gi`, `1e3`) into a plain number.
pub fn quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * factor)
}

/// Words that, anywhere in a path or a value, mean a change of privileges or of what the Pod can reach.
const FORBIDDEN_FIELDS: [(&str, &str); 11] = [
    ("securityContext", "changes the security context"),
    ("privileged", "asks for a privileged container"),
    ("allowPrivilegeEscalation", "changes privilege escalation"),
    ("capabilities", "changes Linux capabilities"),
    ("hostNetwork", "shares the host's network namespace"),
    ("hostPID", "shares the host's process namespace"),
    ("hostIPC", "shares the host's IPC namespace"),
    ("hostPath", "mounts a path of the host"),
    ("volumes", "changes the Pod's volumes"),
    ("serviceAccountName", "changes the Pod's ServiceAccount"),
    ("secretKeyRef", "exposes a Secret's value"),
];

fn pod_spec_prefix(kind: &str) -> &'static str {
    if kind == "CronJob" {
        "/spec/jobTemplate/spec/template/spec"
    } else {
        "/spec/template/spec"
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// Why a path may not be touched, or None when it may.
fn path_problem(kind: &str, path: &str, settings: &Settings) -> Option<String> {
    let segs = segments(path);
    for seg in &segs {
        if let Some((_, what)) = FORBIDDEN_FIELDS.iter().find(|(field, _)| seg == field) {
            return Some(format!("{path} {what}"));
        }
        if seg == "serviceAccount" || seg == "automountServiceAccountToken" {
            return Some(format!("{path} changes the Pod's ServiceAccount"));
        }
    }
    if path == "/spec/replicas" {
        return (!settings.allow_replicas || kind == "DaemonSet" || kind == "CronJob")
            .then(|| format!("{path} may not change for a {kind}"));
    }
    let prefix = segments(pod_spec_prefix(kind));
    let under_containers = segs.len() >= prefix.len() + 3
        && segs[..prefix.len()] == prefix[..]
        && segs[prefix.len()] == "containers"
        && segs[prefix.len() + 1].parse::<usize>().is_ok();
    if under_containers {
        let field = &segs[prefix.len() + 2];
        if settings.allowed_container_fields.iter().any(|f| f == field) {
            return None;
        }
        return Some(format!(
            "{path}: the container field {field} is not among those a patch may change ({})",
            settings.allowed_container_fields.join(", ")
        ));
    }
    Some(format!(
        "{path} is outside what a patch may change (/spec/replicas and {}/containers/N/{{{}}})",
        pod_spec_prefix(kind),
        settings.allowed_container_fields.join(",")
    ))
}

fn find_forbidden_key(value: &Value) -> Option<&'static str> {
    match value {
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            FORBIDDEN_FIELDS
                .iter()
                .find(|(f, _)| f == k)
                .map(|(_, what)| *what)
                .or_else(|| find_forbidden_key(v))
        }),
        Value::Array(items) => items.iter().find_map(find_forbidden_key),
        _ => None,
    }
}

/// Every cpu or memory quantity a value sets under a `resources` path, with where it sits.
fn resource_values(path: &str, value: &Value, out: &mut Vec<(String, String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                resource_values(&format!("{path}/{k}"), v, out);
            }
        }
        Value::String(s) if path.ends_with("/cpu") || path.ends_with("/memory") => {
            let resource = if path.ends_with("/cpu") {
                "cpu"
            } else {
                "memory"
            };
            out.push((path.to_string(), resource.to_string(), s.clone()));
        }
        Value::Number(n) if path.ends_with("/cpu") || path.ends_with("/memory") => {
            let resource = if path.ends_with("/cpu") {
                "cpu"
            } else {
                "memory"
            };
            out.push((path.to_string(), resource.to_string(), n.to_string()));
        }
        _ => {}
    }
}

pub fn review(target: &str, patch: &str, settings: &Settings) -> Verdict {
    match review_inner(target, patch, settings) {
        Ok(v) => v,
        Err(reason) => Verdict::Deny(reason),
    }
}

fn review_inner(target: &str, patch_text: &str, settings: &Settings) -> Result<Verdict, String> {
    if patch_text.len() > settings.max_patch_bytes {
        return Err(format!(
            "the patch is {} bytes, over the limit of {}",
            patch_text.len(),
            settings.max_patch_bytes
        ));
    }
    let target: Value =
        serde_json::from_str(target).map_err(|e| format!("the target is not JSON: {e}"))?;
    let patch: Value =
        serde_json::from_str(patch_text).map_err(|e| format!("the patch is not JSON: {e}"))?;
    let ops = patch
        .as_array()
        .ok_or("the patch is not a JSON Patch array")?;
    if ops.is_empty() {
        return Err("the patch is empty".into());
    }
    if ops.len() > settings.max_operations {
        return Err(format!(
            "the patch has {} operations, over the limit of {}",
            ops.len(),
            settings.max_operations
        ));
    }
    let kind = target.get("kind").and_then(Value::as_str).unwrap_or("");
    if let Some(reason) = forbidden_kind(kind) {
        return Err(format!("{kind} targets are never patched: {reason}"));
    }
    if !settings.allowed_kinds.iter().any(|k| k == kind) {
        return Err(format!(
            "{kind:?} is not a kind a patch may target ({})",
            settings.allowed_kinds.join(", ")
        ));
    }

    let mut guarded: Vec<String> = Vec::new();
    let mut missing_guards: Vec<(usize, String, Value)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let name = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or(format!("operation {i} has no `op`"))?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or(format!("operation {i} has no `path`"))?;
        if !path.starts_with('/') {
            return Err(format!(
                "operation {i}: path {path:?} is not a JSON Pointer"
            ));
        }
        match name {
            "test" => {
                let current = target.pointer(path);
                if current != op.get("value") {
                    return Err(format!(
                        "operation {i}: the test of {path} expects {}, but the object has {} (it changed since the analysis)",
                        op.get("value").unwrap_or(&Value::Null),
                        current.unwrap_or(&Value::Null)
                    ));
                }
                guarded.push(path.to_string());
                continue;
            }
            "add" | "replace" | "remove" => {}
            "move" | "copy" => {
                return Err(format!(
                    "operation {i}: {name} is not allowed; write the value explicitly"
                ));
            }
            other => return Err(format!("operation {i}: unknown op {other:?}")),
        }
        if let Some(problem) = path_problem(kind, path, settings) {
            return Err(problem);
        }
        if let Some(value) = op.get("value") {
            if let Some(what) = find_forbidden_key(value) {
                return Err(format!("operation {i} on {path}: its value {what}"));
            }
            let mut quantities = Vec::new();
            resource_values(path, value, &mut quantities);
            for (at, resource, q) in quantities {
                let ceiling_text = if resource == "cpu" {
                    &settings.resource_ceiling.cpu
                } else {
                    &settings.resource_ceiling.memory
                };
                let (Some(amount), Some(ceiling)) = (quantity(&q), quantity(ceiling_text)) else {
                    return Err(format!(
                        "operation {i}: {at} = {q:?} is not a Kubernetes quantity"
                    ));
                };
                if amount > ceiling {
                    return Err(format!(
                        "operation {i}: {at} = {q} is above the {resource} ceiling of {ceiling_text}"
                    ));
                }
            }
            if path == "/spec/replicas" && value.as_u64().is_none_or(|r| r > settings.max_replicas)
            {
                return Err(format!(
                    "operation {i}: replicas {value} is above the limit of {}",
                    settings.max_replicas
                ));
            }
        }
        // A value that exists is being replaced: a test of it (or of an ancestor) must come first.
        let appends = path.ends_with("/-");
        if let (false, Some(current)) = (appends, target.pointer(path)) {
            let is_guarded = guarded
                .iter()
                .any(|g| path == g || path.starts_with(&format!("{g}/")));
            if !is_guarded {
                missing_guards.push((i, path.to_string(), current.clone()));
            }
        }
    }
    if missing_guards.is_empty() {
        return Ok(Verdict::Allow);
    }
    let paths: Vec<&str> = missing_guards.iter().map(|(_, p, _)| p.as_str()).collect();
    if !settings.add_missing_guards {
        return Err(format!(
            "no `test` operation guards {}; a patch must test every value it replaces so it cannot apply to a changed object",
            paths.join(", ")
        ));
    }
    let mut rewritten: Vec<Value> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if let Some((_, path, current)) = missing_guards.iter().find(|(at, _, _)| *at == i) {
            rewritten.push(json!({"op": "test", "path": path, "value": current}));
        }
        rewritten.push(op.clone());
    }
    Ok(Verdict::Rewrite {
        patch: Value::Array(rewritten).to_string(),
        reason: format!(
            "added test guards for {} from the current object",
            paths.join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> String {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "web:1",
                "env": [{"name": "REDIS_HOST", "value": "redis"}],
                "resources": {"limits": {"memory": "256Mi"}}}]}}}})
        .to_string()
    }

    fn check(patch: Value) -> Verdict {
        review(&deployment(), &patch.to_string(), &Settings::default())
    }

    fn denied(patch: Value) -> String {
        match check(patch) {
            Verdict::Deny(reason) => reason,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    #[test]
    fn a_guarded_env_fix_is_allowed() {
        let v = check(json!([
            {"op": "test", "path": "/spec/template/spec/containers/0/env/0/value", "value": "redis"},
            {"op": "replace", "path": "/spec/template/spec/containers/0/env/0/value", "value": "redis-master"}
        ]));
        assert_eq!(v, Verdict::Allow);
    }

    #[test]
    fn an_unguarded_replace_is_denied_or_rewritten() {
        let patch = json!([{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "web:2"}]);
        assert!(
            denied(patch.clone())
                .contains("no `test` operation guards /spec/template/spec/containers/0/image")
        );
        let settings = Settings {
            add_missing_guards: true,
            ..Settings::default()
        };
        match review(&deployment(), &patch.to_string(), &settings) {
            Verdict::Rewrite { patch, .. } => {
                let ops: Value = serde_json::from_str(&patch).unwrap();
                assert_eq!(
                    ops[0],
                    json!({"op": "test", "path": "/spec/template/spec/containers/0/image", "value": "web:1"})
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stale_guard_is_denied() {
        let reason = denied(json!([
            {"op": "test", "path": "/spec/template/spec/containers/0/image", "value": "web:0"},
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "web:2"}
        ]));
        assert!(reason.contains("it changed since the analysis"), "{reason}");
    }

    #[test]
    fn privilege_and_reach_are_denied() {
        for (patch, expected) in [
            (
                json!([{"op": "add", "path": "/spec/template/spec/containers/0/securityContext", "value": {"privileged": true}}]),
                "security context",
            ),
            (
                json!([{"op": "add", "path": "/spec/template/spec/hostNetwork", "value": true}]),
                "host's network",
            ),
            (
                json!([{"op": "add", "path": "/spec/template/spec/volumes/-", "value": {"name": "h", "hostPath": {"path": "/"}}}]),
                "volumes",
            ),
            (
                json!([{"op": "add", "path": "/spec/template/spec/serviceAccountName", "value": "admin"}]),
                "ServiceAccount",
            ),
            (
                json!([{"op": "add", "path": "/spec/template/spec/containers/0/env/-", "value": {"name": "X", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}}]),
                "Secret",
            ),
            (
                json!([{"op": "add", "path": "/metadata/labels/x", "value": "y"}]),
                "outside what a patch may change",
            ),
        ] {
            let reason = denied(patch);
            assert!(reason.contains(expected), "{expected}: {reason}");
        }
    }

    #[test]
    fn forbidden_targets_sizes_and_ceilings() {
        let secret = json!({"kind": "Secret", "metadata": {"name": "db"}, "data": {}}).to_string();
        let patch = json!([{"op": "add", "path": "/data/x", "value": "eA=="}]).to_string();
        assert!(
            matches!(review(&secret, &patch, &Settings::default()), Verdict::Deny(r) if r.contains("Secret targets are never patched"))
        );
        let role = json!({"kind": "ClusterRole"}).to_string();
        assert!(
            matches!(review(&role, &patch, &Settings::default()), Verdict::Deny(r) if r.contains("privilege escalation"))
        );
        let reason = denied(json!([
            {"op": "test", "path": "/spec/template/spec/containers/0/resources/limits/memory", "value": "256Mi"},
            {"op": "replace", "path": "/spec/template/spec/containers/0/resources/limits/memory", "value": "64Gi"}
        ]));
        assert!(
            reason.contains("above the memory ceiling of 8Gi"),
            "{reason}"
        );
        let big: Vec<Value> = (0..40)
            .map(|_| json!({"op": "test", "path": "/spec/replicas", "value": 2}))
            .collect();
        assert!(denied(Value::Array(big)).contains("40 operations"));
        assert!(
            Settings::parse(r#"{"allowedKinds": ["Secret"]}"#)
                .unwrap_err()
                .contains("may not include Secret")
        );
        assert!(
            Settings::parse(r#"{"resourceCeiling": {"memory": "lots"}}"#)
                .unwrap_err()
                .contains("not a Kubernetes quantity")
        );
        assert!(Settings::parse(r#"{"maxPatchBytes": "big"}"#).is_err());
        assert!(Settings::parse(r#"{"unknown": 1}"#).is_err());
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity("500m"), Some(0.5));
        assert_eq!(quantity("3Gi"), Some(3.0 * 1024f64.powi(3)));
        assert_eq!(quantity("1e3"), Some(1000.0));
        assert_eq!(quantity("x"), None);
    }
}

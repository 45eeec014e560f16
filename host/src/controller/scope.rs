//! What the Pod store may hold: Pods of the namespaces of `--namespace` (all without it), trimmed
//! to what detection and screening read. A tenant who can only create Pods must not be able to
//! grow the operator's memory with megabytes of env values or annotations on a stored Pod.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, Pod};

/// The namespaces whose failing Pods are stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodScope {
    /// Every namespace (no `--namespace`).
    All,
    /// Only these (possibly none).
    Namespaces(BTreeSet<String>),
}

impl PodScope {
    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            PodScope::All => true,
            PodScope::Namespaces(set) => set.contains(namespace),
        }
    }
}

/// Annotation values larger than this are dropped from a stored Pod: no annotation the policy
/// filter reads (an opt-out flag) is anywhere near it.
const MAX_ANNOTATION_BYTES: usize = 4 << 10;

/// A Pod as the store keeps it: without managedFields, the last-applied annotation, env values
/// (names and references stay; detection never reads a value, and the investigation reads the
/// Pod afresh) and oversized annotation values.
pub fn trim(mut pod: Pod) -> Pod {
    pod.metadata.managed_fields = None;
    if let Some(annotations) = pod.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        annotations.retain(|_, v| v.len() <= MAX_ANNOTATION_BYTES);
    }
    fn strip_env(containers: &mut [Container]) {
        for c in containers {
            for var in c.env.iter_mut().flatten() {
                var.value = None;
            }
        }
    }
    if let Some(spec) = pod.spec.as_mut() {
        strip_env(&mut spec.containers);
        strip_env(spec.init_containers.get_or_insert_with(Vec::new));
        if spec.init_containers.as_ref().is_some_and(Vec::is_empty) {
            spec.init_containers = None;
        }
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_stored_pod_keeps_what_detection_reads_and_drops_bulk() {
        let big = "x".repeat(200 << 10);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "shop", "labels": {"app": "web"},
                "annotations": {"sre-operator.dev/ignore": "true", "blob": big,
                                "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"containers": [{"name": "app", "image": "web:1", "command": ["/app"],
                "env": [{"name": "BLOB", "value": big},
                        {"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}],
                "resources": {"limits": {"memory": "128Mi"}}}]}
        }))
        .unwrap();
        let trimmed = trim(pod);
        let text = serde_json::to_string(&trimmed).unwrap();
        assert!(text.len() < 2048, "{} bytes stored", text.len());
        for kept in [
            "\"sre-operator.dev/ignore\":\"true\"",
            "\"command\":[\"/app\"]",
            "\"name\":\"BLOB\"",
            "secretKeyRef",
            "128Mi",
            "\"app\":\"web\"",
        ] {
            assert!(
                text.contains(kept),
                "{kept} is read by detection or screening: {text}"
            );
        }
    }
}

//! Pods and Deployments for tests, built the way kube-rs' controller-rs builds its fixtures
//! (`Document::test().finalized()`): start from the least a valid object needs and say only
//! what the test is about, e.g.
//!
//! ```
//! use serde_json::json;
//! use sre_e2e::fixtures::PodBuilder;
//!
//! let pod = PodBuilder::new("web-0")
//!     .namespace("shop")
//!     .label("app", "web")
//!     .container(json!({"name": "app", "image": "web:1"}))
//!     .status(json!({"phase": "Running"}))
//!     .build();
//! assert_eq!(pod.metadata.namespace.as_deref(), Some("shop"));
//! ```
//!
//! The builders hold the object as JSON, so that the parts a test is about (a container, a
//! kubelet-written status) read as Kubernetes writes them; `build()` gives the k8s-openapi
//! type and `json()` the raw object, for a mocked API server or a plugin's input. Nothing is
//! added that the test did not ask for, so a fixture's JSON is exactly what the test wrote.
//!
//! [`uid`] is the one generator of made-up `metadata.uid`s (used by [`crate::synth`] and the
//! benchmarks' fake API server).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Map, Value, json};

/// A `metadata.uid` in the API server's shape (a version-4 UUID) from 128 random bits.
pub fn uid(high: u64, low: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xfff,
        0x8000 | ((low >> 48) & 0x3fff),
        low & 0xffff_ffff_ffff
    )
}

/// The object at `path`, created as an empty JSON object where missing.
fn object<'a>(value: &'a mut Value, path: &[&str]) -> &'a mut Map<String, Value> {
    let mut at = value;
    for key in path {
        if !at[*key].is_object() {
            at[*key] = json!({});
        }
        at = &mut at[*key];
    }
    at.as_object_mut().expect("made an object above")
}

/// Puts `container` into the array at `path`, in place of one with the same name.
fn upsert_container(value: &mut Value, path: &[&str], container: Value) {
    let (field, parent) = path.split_last().expect("a non-empty path");
    let list = object(value, parent)
        .entry(field.to_string())
        .or_insert_with(|| json!([]));
    let list = list.as_array_mut().expect("containers are an array");
    match list.iter_mut().find(|c| c["name"] == container["name"]) {
        Some(same) => *same = container,
        None => list.push(container),
    }
}

/// Sets each field of `fields` (a JSON object) in the object at `path`.
fn merge(value: &mut Value, path: &[&str], fields: Value) {
    let target = object(value, path);
    if let Value::Object(fields) = fields {
        target.extend(fields);
    }
}

/// A Pod; see the module documentation.
#[derive(Clone, Debug)]
pub struct PodBuilder(Value);

impl PodBuilder {
    pub fn new(name: &str) -> Self {
        PodBuilder(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}}))
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        self.0["metadata"]["namespace"] = json!(namespace);
        self
    }

    pub fn uid(mut self, uid: &str) -> Self {
        self.0["metadata"]["uid"] = json!(uid);
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        object(&mut self.0, &["metadata", "labels"]).insert(key.into(), json!(value));
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        object(&mut self.0, &["metadata", "annotations"]).insert(key.into(), json!(value));
        self
    }

    /// Sets these fields of the spec (a JSON object), replacing what they held.
    pub fn spec(mut self, fields: Value) -> Self {
        merge(&mut self.0, &["spec"], fields);
        self
    }

    /// Adds a container, or replaces the one of the same name.
    pub fn container(mut self, container: Value) -> Self {
        upsert_container(&mut self.0, &["spec", "containers"], container);
        self
    }

    /// Adds an init container, or replaces the one of the same name.
    pub fn init_container(mut self, container: Value) -> Self {
        upsert_container(&mut self.0, &["spec", "initContainers"], container);
        self
    }

    /// Sets these fields of the status (a JSON object), replacing what they held.
    pub fn status(mut self, fields: Value) -> Self {
        merge(&mut self.0, &["status"], fields);
        self
    }

    pub fn json(self) -> Value {
        self.0
    }

    pub fn build(self) -> Pod {
        serde_json::from_value(self.0).expect("a PodBuilder makes a valid Pod")
    }
}

/// A Deployment of `replicas: 1`; see the module documentation.
#[derive(Clone, Debug)]
pub struct DeploymentBuilder(Value);

impl DeploymentBuilder {
    pub fn new(name: &str) -> Self {
        DeploymentBuilder(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {}},
                     "template": {"metadata": {"labels": {}}, "spec": {"containers": []}}},
        }))
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        self.0["metadata"]["namespace"] = json!(namespace);
        self
    }

    pub fn uid(mut self, uid: &str) -> Self {
        self.0["metadata"]["uid"] = json!(uid);
        self
    }

    pub fn resource_version(mut self, resource_version: &str) -> Self {
        self.0["metadata"]["resourceVersion"] = json!(resource_version);
        self
    }

    pub fn generation(mut self, generation: i64) -> Self {
        self.0["metadata"]["generation"] = json!(generation);
        self
    }

    /// Last written by `manager` with an Update (as `kubectl apply` without `--server-side`).
    pub fn managed_by(mut self, manager: &str) -> Self {
        self.0["metadata"]["managedFields"] = json!([{"manager": manager, "operation": "Update"}]);
        self
    }

    /// A label of the Deployment itself.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        object(&mut self.0, &["metadata", "labels"]).insert(key.into(), json!(value));
        self
    }

    /// A label the selector matches, so the Pod template carries it too.
    pub fn match_label(mut self, key: &str, value: &str) -> Self {
        object(&mut self.0, &["spec", "selector", "matchLabels"]).insert(key.into(), json!(value));
        self.pod_label(key, value)
    }

    /// A label of the Pod template only.
    pub fn pod_label(mut self, key: &str, value: &str) -> Self {
        object(&mut self.0, &["spec", "template", "metadata", "labels"])
            .insert(key.into(), json!(value));
        self
    }

    /// An annotation of the Pod template.
    pub fn pod_annotation(mut self, key: &str, value: &str) -> Self {
        object(
            &mut self.0,
            &["spec", "template", "metadata", "annotations"],
        )
        .insert(key.into(), json!(value));
        self
    }

    /// Sets these fields of the Pod template's spec (a JSON object).
    pub fn pod_spec(mut self, fields: Value) -> Self {
        merge(&mut self.0, &["spec", "template", "spec"], fields);
        self
    }

    /// Adds a container to the Pod template, or replaces the one of the same name.
    pub fn container(mut self, container: Value) -> Self {
        upsert_container(
            &mut self.0,
            &["spec", "template", "spec", "containers"],
            container,
        );
        self
    }

    /// Sets these fields of the status (a JSON object).
    pub fn status(mut self, fields: Value) -> Self {
        merge(&mut self.0, &["status"], fields);
        self
    }

    pub fn json(self) -> Value {
        self.0
    }

    pub fn build(self) -> Deployment {
        serde_json::from_value(self.0).expect("a DeploymentBuilder makes a valid Deployment")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_of_the_same_name_is_replaced_and_another_is_added() {
        let pod = PodBuilder::new("p")
            .container(json!({"name": "app", "image": "a:1"}))
            .container(json!({"name": "app", "image": "a:2"}))
            .container(json!({"name": "proxy", "image": "envoy:1"}))
            .json();
        assert_eq!(
            pod["spec"]["containers"],
            json!([{"name": "app", "image": "a:2"}, {"name": "proxy", "image": "envoy:1"}])
        );
    }

    #[test]
    fn a_match_label_is_on_the_selector_and_the_template_but_not_the_deployment() {
        let deployment = DeploymentBuilder::new("web")
            .match_label("app", "web")
            .pod_label("fault", "crashloop")
            .build();
        let spec = deployment.spec.unwrap();
        assert_eq!(deployment.metadata.labels, None);
        assert_eq!(spec.selector.match_labels.unwrap().len(), 1);
        assert_eq!(spec.template.metadata.unwrap().labels.unwrap().len(), 2);
    }

    #[test]
    fn uids_have_the_api_servers_shape() {
        let id = uid(0x0123_4567_89ab_cdef, u64::MAX);
        assert_eq!(id, "01234567-89ab-4def-bfff-ffffffffffff");
    }
}

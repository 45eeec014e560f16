//! Read-only access to a cluster: everything the agent and the plugins may see.
//!
//! One trait, [`Cluster`], with two implementations: [`DumpCluster`] over a directory written by
//! `kubectl cluster-info dump`, and (in the controller) a live one over `kube::Client`. Objects
//! travel as JSON with `kind` and `apiVersion` set, the shape `kubectl get -o json` prints, so
//! tools and plugins see the same thing whichever implementation answers.

mod dump;
mod kinds;
mod live;
mod logs;
mod owners;
mod recent;
#[cfg(test)]
pub(crate) mod testing;
mod usage;
mod workload;

pub use dump::DumpCluster;
pub use kinds::ResourceKind;
pub use live::{LiveCluster, ReadLimits};
pub use logs::{ContainerLog, LogRequest, Logs, parse_dump_logs};
pub use owners::WatchedOwners;
pub use recent::RecentReads;
pub use usage::{
    NodeLoad, NodeUsage, ResourceAmounts, Taint, UsagePod, cpu_millis, format_bytes, format_millis,
    memory_bytes, node_usage, pod_requests, usage_with,
};
pub use workload::resolve_workload;

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Event, Pod};
use serde_json::Value;

/// A Kubernetes object as JSON, shared rather than copied.
pub type Object = Arc<Value>;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A dump file or directory is missing, unreadable or malformed.
    #[error("{path}: {message}")]
    Dump { path: String, message: String },
    /// An object exists but does not have the shape its kind requires.
    #[error("{kind} {name}: {message}")]
    Malformed {
        kind: String,
        name: String,
        message: String,
    },
    /// Logs are not available for the container asked for.
    #[error("logs of {namespace}/{pod}: {message}")]
    Logs {
        namespace: String,
        pod: String,
        message: String,
    },
    #[error("{0}")]
    Unsupported(String),
    /// A name or namespace that would change the request it is part of; nothing was sent.
    #[error(transparent)]
    InvalidName(#[from] crate::names::InvalidName),
    /// The answer grew past the read limit; the stream was cut there.
    #[error("{what} is larger than the read limit of {limit} bytes; ask for less")]
    TooLarge { what: String, limit: usize },
    /// The exchange took longer than the read timeout; the request was abandoned.
    #[error("reading {what} took longer than {after:?}; the request was abandoned")]
    Timeout {
        what: String,
        after: std::time::Duration,
    },
    #[error("reading {what}: {message}")]
    Failed { what: String, message: String },
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

/// The object whose events are asked for; `uid`, when known, keeps a recreated namesake's
/// events out.
#[derive(Clone, Copy, Debug)]
pub struct Involved<'a> {
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: Option<&'a str>,
}

impl<'a> Involved<'a> {
    pub fn pod(pod: &'a k8s_openapi::api::core::v1::Pod) -> Self {
        Involved {
            kind: "Pod",
            namespace: pod.metadata.namespace.as_deref().unwrap_or_default(),
            name: pod.metadata.name.as_deref().unwrap_or_default(),
            uid: pod.metadata.uid.as_deref(),
        }
    }
}

/// Everything the operator may read. Implementations never return Secret values (a Secret shows
/// its keys only).
#[async_trait]
pub trait Cluster: Send + Sync {
    /// Where the data comes from, for messages ("dump tests/fixtures/dump", "cluster https://...").
    fn source(&self) -> String;

    /// One object, or `None` when it does not exist. `namespace` is ignored for cluster-scoped kinds.
    async fn get(
        &self,
        kind: ResourceKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Object>>;

    /// Every object of a kind in a namespace, or in all namespaces when `namespace` is `None`.
    async fn list(&self, kind: ResourceKind, namespace: Option<&str>) -> Result<Vec<Object>>;

    /// A container's log, the previous instance's when `previous` is set.
    async fn logs(&self, request: &LogRequest) -> Result<Logs>;

    /// Events whose involved object is the given one, oldest first.
    async fn events_for(&self, about: Involved<'_>) -> Result<Vec<Event>>;

    /// Every Pod in a namespace (or all), typed. The default converts `list`; implementations
    /// that hold typed Pods already may answer directly.
    async fn pods(&self, namespace: Option<&str>) -> Result<Vec<Pod>> {
        self.list(ResourceKind::Pod, namespace)
            .await?
            .iter()
            .map(|o| typed::<Pod>(o))
            .collect()
    }

    /// The Pods in a namespace (or all) that [`crate::failure::may_be_failing`] passes, typed,
    /// and how many Pods there are in all: what triage looks at. The default filters
    /// [`Cluster::pods`]; an implementation that can read a Pod's status without the rest of it
    /// parses only the Pods that pass.
    async fn failing_pods(&self, namespace: Option<&str>) -> Result<(Vec<Pod>, usize)> {
        let pods = self.pods(namespace).await?;
        let all = pods.len();
        let failing = pods
            .into_iter()
            .filter(crate::failure::may_be_failing)
            .collect();
        Ok((failing, all))
    }

    /// The controllers of `kind` in a namespace (or all) that have fewer Pods than they ask for
    /// ([`crate::failure::short_of_pods`]): where triage looks for Pods that could not be
    /// created. The default filters [`Cluster::list`]; an implementation that read their counts
    /// already parses only those (most controllers of a cluster have their Pods).
    async fn short_of_pods(
        &self,
        kind: ResourceKind,
        namespace: Option<&str>,
    ) -> Result<Vec<Object>> {
        let mut creators = self.list(kind, namespace).await?;
        creators.retain(|c| crate::failure::short_of_pods(c));
        Ok(creators)
    }

    /// The namespaces that hold Pods, in order, when the implementation knows them cheaply: a
    /// caller that looks at every Pod once (triage) then holds one namespace's typed Pods at a
    /// time instead of all of them. `None` means "list every Pod at once".
    async fn pod_namespaces(&self) -> Result<Option<Vec<String>>> {
        Ok(None)
    }

    /// The time the data describes: now for a live cluster; for a dump, when it was taken, as
    /// far as its own timestamps tell (None when they tell nothing). How long something has
    /// lasted is measured to this.
    fn observed_at(&self) -> Option<k8s_openapi::jiff::Timestamp> {
        Some(k8s_openapi::jiff::Timestamp::now())
    }

    /// What the Pods bound to a node (`spec.nodeName`) take of it: what its usage is computed
    /// from. The default reads every Pod; implementations with an index answer directly.
    async fn node_load(&self, node: &str) -> Result<NodeLoad> {
        Ok(NodeLoad::of(node, &self.pods(None).await?))
    }
}

/// Converts a JSON object into a k8s-openapi type, naming the object when it does not fit.
pub fn typed<T: serde::de::DeserializeOwned>(object: &Value) -> Result<T> {
    T::deserialize(object).map_err(|e| ClusterError::Malformed {
        kind: object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("object")
            .to_string(),
        name: object_name(object),
        message: e.to_string(),
    })
}

/// `namespace/name` (or `name` for cluster-scoped objects) of a JSON object.
pub fn object_name(object: &Value) -> String {
    let meta = &object["metadata"];
    match (meta["namespace"].as_str(), meta["name"].as_str()) {
        (Some(ns), Some(name)) => format!("{ns}/{name}"),
        (None, Some(name)) => name.to_string(),
        _ => "<unnamed>".to_string(),
    }
}

/// Removes Secret values, keeping the keys: the one rule every implementation applies before an
/// object leaves this module.
pub fn redact_secret(object: &mut Value) {
    for field in ["data", "stringData"] {
        if let Some(map) = object.get_mut(field).and_then(Value::as_object_mut) {
            for value in map.values_mut() {
                *value = Value::String("<redacted>".into());
            }
        }
    }
    // The last-applied annotation carries the whole Secret, values included.
    if let Some(annotations) = object
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

//! An in-memory [`Cluster`] for unit tests: objects by kind and name, read-only.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Event;
use serde_json::Value;

use super::{Cluster, ClusterError, Involved, LogRequest, Logs, Object, ResourceKind, Result};

/// Objects by kind and name; kinds outside `held` are not held at all (as in a dump).
pub struct Objects {
    pub objects: Vec<Value>,
    pub held: Vec<ResourceKind>,
}

#[async_trait]
impl Cluster for Objects {
    fn source(&self) -> String {
        "test objects".into()
    }
    async fn get(
        &self,
        kind: ResourceKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Object>> {
        crate::names::check_name(kind, "name", name)?;
        if !self.held.contains(&kind) {
            return Err(ClusterError::Unsupported(format!("no {kind}s")));
        }
        Ok(self
            .objects
            .iter()
            .filter(|o| o["kind"] == kind.kind() && o["metadata"]["name"] == name)
            // An object written without a namespace is found from any.
            .find(
                |o| match (kind.scope(namespace), o["metadata"]["namespace"].as_str()) {
                    (Some(want), Some(ns)) => want == ns,
                    _ => true,
                },
            )
            .map(|o| Arc::new(o.clone())))
    }
    async fn list(&self, kind: ResourceKind, namespace: Option<&str>) -> Result<Vec<Object>> {
        if !self.held.contains(&kind) {
            return Err(ClusterError::Unsupported(format!("no {kind}s")));
        }
        Ok(self
            .objects
            .iter()
            .filter(|o| o["kind"] == kind.kind())
            .filter(|o| namespace.is_none_or(|ns| o["metadata"]["namespace"] == ns))
            .map(|o| Arc::new(o.clone()))
            .collect())
    }
    async fn logs(&self, _: &LogRequest) -> Result<Logs> {
        unreachable!()
    }
    async fn events_for(&self, _: Involved<'_>) -> Result<Vec<Event>> {
        unreachable!()
    }
}

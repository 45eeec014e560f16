//! A [`Cluster`] over the Kubernetes API: the same reads the dump reader answers, from a live
//! cluster. Objects lose `managedFields` before they leave, Secrets their values, and lists are
//! paged so that a large namespace is never one huge response.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, LogParams};
use kube::core::GroupVersionKind;
use kube::{Client, ResourceExt};
use serde_json::Value;

use super::{Cluster, ClusterError, LogRequest, Logs, Object, ResourceKind, Result, redact_secret};

/// Objects per page when listing.
const PAGE_SIZE: u32 = 500;

#[derive(Clone)]
pub struct LiveCluster {
    client: Client,
    source: String,
}

fn api_resource(kind: ResourceKind) -> ApiResource {
    let (group, version) = match kind.api_version().split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", kind.api_version()),
    };
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind.kind()),
        kind.plural(),
    )
}

/// What every object loses before it is handed on.
fn to_object(kind: ResourceKind, mut object: DynamicObject) -> Result<Object> {
    object.managed_fields_mut().clear();
    let mut value = serde_json::to_value(&object).map_err(|e| ClusterError::Malformed {
        kind: kind.kind().into(),
        name: object.name_any(),
        message: e.to_string(),
    })?;
    if value.get("kind").is_none() {
        value["kind"] = Value::String(kind.kind().into());
        value["apiVersion"] = Value::String(kind.api_version().into());
    }
    if kind == ResourceKind::Secret {
        redact_secret(&mut value);
    }
    Ok(Arc::new(value))
}

impl LiveCluster {
    pub fn new(client: Client, source: impl Into<String>) -> Self {
        LiveCluster {
            client,
            source: source.into(),
        }
    }

    /// A dynamic API for a kind, namespaced when the kind is.
    pub fn api(&self, kind: ResourceKind, namespace: Option<&str>) -> Api<DynamicObject> {
        let resource = api_resource(kind);
        match namespace.filter(|_| kind.namespaced()) {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        }
    }
}

#[async_trait]
impl Cluster for LiveCluster {
    fn source(&self) -> String {
        self.source.clone()
    }

    async fn get(
        &self,
        kind: ResourceKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Object>> {
        match self.api(kind, kind.scope(namespace)).get_opt(name).await? {
            Some(object) => Ok(Some(to_object(kind, object)?)),
            None => Ok(None),
        }
    }

    async fn list(&self, kind: ResourceKind, namespace: Option<&str>) -> Result<Vec<Object>> {
        let api = self.api(kind, namespace);
        let mut params = ListParams::default().limit(PAGE_SIZE);
        let mut objects = Vec::new();
        loop {
            let page = api.list(&params).await?;
            let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
            for item in page.items {
                objects.push(to_object(kind, item)?);
            }
            match next {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(objects),
            }
        }
    }

    async fn logs(&self, request: &LogRequest) -> Result<Logs> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &request.namespace);
        let container = match &request.container {
            Some(c) => c.clone(),
            None => {
                let pod = pods.get(&request.pod).await?;
                pod.spec
                    .and_then(|s| s.containers.first().map(|c| c.name.clone()))
                    .unwrap_or_default()
            }
        };
        let params = LogParams {
            container: Some(container.clone()),
            previous: request.previous,
            tail_lines: request.tail_lines.map(|n| n as i64),
            ..LogParams::default()
        };
        let text = pods
            .logs(&request.pod, &params)
            .await
            .map_err(|e| ClusterError::Logs {
                namespace: request.namespace.clone(),
                pod: request.pod.clone(),
                message: e.to_string(),
            })?;
        Ok(Logs {
            container,
            text,
            previous: request.previous,
            note: None,
        })
    }

    async fn events_for(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<Vec<Event>> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let mut selector = format!("involvedObject.kind={kind},involvedObject.name={name}");
        if let Some(uid) = uid {
            selector.push_str(&format!(",involvedObject.uid={uid}"));
        }
        let mut list = events
            .list(&ListParams::default().fields(&selector).limit(PAGE_SIZE))
            .await?
            .items;
        list.sort_by_key(super::dump::event_time);
        Ok(list)
    }
}

//! A [`Cluster`] over the Kubernetes API: the same reads the dump reader answers, from a live
//! cluster. Objects lose `managedFields` before they leave, Secrets their values, and lists are
//! paged so that a large namespace is never one huge response.
//!
//! Every read is bounded as it streams ([`ReadLimits`]): the response body is cut at a byte limit
//! and the whole exchange at a timeout, so a name that turns a GET into a watch, or an object
//! rewritten to be huge, costs at most that much. Every name and namespace is checked
//! ([`crate::names`]) before it becomes part of a path or a query.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ApiResource, DynamicObject, GetParams, ListParams, LogParams};
use kube::client::Body;
use kube::core::{GroupVersionKind, ObjectList, Request, Resource, Status};
use kube::{Api, Client, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    Cluster, ClusterError, Involved, LogRequest, Logs, Object, ResourceKind, Result, redact_secret,
};
use crate::names::{check_container, check_name, check_namespace};

/// Objects per page when listing.
const PAGE_SIZE: u32 = 500;

/// Bounds on one read: the time for the whole exchange, and the bytes of one response (and of
/// all the pages of one list together).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    pub timeout: Duration,
    pub max_bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            timeout: Duration::from_secs(10),
            max_bytes: 8 << 20,
        }
    }
}

#[derive(Clone)]
pub struct LiveCluster {
    client: Client,
    source: String,
    limits: ReadLimits,
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

/// A namespace, checked when the kind lives in one.
fn checked_scope(kind: ResourceKind, namespace: Option<&str>) -> Result<Option<&str>> {
    let namespace = namespace.filter(|_| kind.namespaced());
    if let Some(ns) = namespace {
        check_namespace("namespace", ns)?;
    }
    Ok(namespace)
}

impl LiveCluster {
    pub fn new(client: Client, source: impl Into<String>) -> Self {
        LiveCluster {
            client,
            source: source.into(),
            limits: ReadLimits::default(),
        }
    }

    /// The same cluster with other read limits.
    pub fn with_limits(mut self, limits: ReadLimits) -> Self {
        self.limits = limits;
        self
    }

    /// A dynamic API for a kind, namespaced when the kind is.
    pub fn api(&self, kind: ResourceKind, namespace: Option<&str>) -> Api<DynamicObject> {
        let resource = api_resource(kind);
        match namespace.filter(|_| kind.namespaced()) {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        }
    }

    fn request(&self, kind: ResourceKind, namespace: Option<&str>) -> Request {
        Request::new(DynamicObject::url_path(&api_resource(kind), namespace))
    }

    /// Sends a request and reads its answer within the limits: `Ok(None)` for a 404, the body for
    /// a success, the API's `Status` as an error otherwise. `budget` is what is left of the bytes
    /// a list may still read.
    async fn fetch(
        &self,
        what: &str,
        request: http::Request<Vec<u8>>,
        budget: usize,
    ) -> Result<Option<Vec<u8>>> {
        let exchange = async {
            let response = self.client.send(request.map(Body::from)).await?;
            let status = response.status();
            let body = Limited::new(response.into_body(), budget)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<LengthLimitError>().is_some() {
                        ClusterError::TooLarge {
                            what: what.to_string(),
                            limit: self.limits.max_bytes,
                        }
                    } else {
                        ClusterError::Failed {
                            what: what.to_string(),
                            message: e.to_string(),
                        }
                    }
                })?
                .to_bytes();
            Ok::<_, ClusterError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.limits.timeout, exchange)
            .await
            .map_err(|_| ClusterError::Timeout {
                what: what.to_string(),
                after: self.limits.timeout,
            })??;
        if status == http::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let status = serde_json::from_slice::<Status>(&body).unwrap_or_else(|_| {
                Status::failure(&String::from_utf8_lossy(&body), "").with_code(status.as_u16())
            });
            return Err(kube::Error::Api(status.boxed()).into());
        }
        Ok(Some(body.to_vec()))
    }

    fn parse<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| ClusterError::Failed {
            what: what.to_string(),
            message: format!("unreadable answer: {e}"),
        })
    }

    /// Every page of a list, stopping at the byte limit for all pages together.
    async fn list_all<T: DeserializeOwned + Clone>(
        &self,
        what: &str,
        request: Request,
        mut params: ListParams,
    ) -> Result<Vec<T>> {
        params = params.limit(PAGE_SIZE);
        let mut items = Vec::new();
        let mut budget = self.limits.max_bytes;
        loop {
            let bytes = self
                .fetch(
                    what,
                    request.list(&params).map_err(kube::Error::BuildRequest)?,
                    budget,
                )
                .await?
                .ok_or_else(|| ClusterError::Failed {
                    what: what.to_string(),
                    message: "the API server does not serve this resource".into(),
                })?;
            budget = budget.saturating_sub(bytes.len());
            let page: ObjectList<T> = Self::parse(what, &bytes)?;
            items.extend(page.items);
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) if budget > 0 => params = params.continue_token(&token),
                Some(_) => {
                    return Err(ClusterError::TooLarge {
                        what: what.to_string(),
                        limit: self.limits.max_bytes,
                    });
                }
                None => return Ok(items),
            }
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
        check_name(kind, "name", name)?;
        let namespace = checked_scope(kind, kind.scope(namespace))?;
        let what = format!("{} {name}", kind.kind());
        let request = self
            .request(kind, namespace)
            .get(name, &GetParams::default())
            .map_err(kube::Error::BuildRequest)?;
        match self.fetch(&what, request, self.limits.max_bytes).await? {
            Some(bytes) => Ok(Some(to_object(kind, Self::parse(&what, &bytes)?)?)),
            None => Ok(None),
        }
    }

    async fn list(&self, kind: ResourceKind, namespace: Option<&str>) -> Result<Vec<Object>> {
        let namespace = checked_scope(kind, namespace)?;
        let what = format!("the list of {}", kind.plural());
        let items: Vec<DynamicObject> = self
            .list_all(&what, self.request(kind, namespace), ListParams::default())
            .await?;
        items.into_iter().map(|o| to_object(kind, o)).collect()
    }

    async fn logs(&self, request: &LogRequest) -> Result<Logs> {
        check_namespace("namespace", &request.namespace)?;
        check_name(ResourceKind::Pod, "pod", &request.pod)?;
        let container = match &request.container {
            Some(c) => c.clone(),
            None => {
                let pod = self
                    .get(ResourceKind::Pod, Some(&request.namespace), &request.pod)
                    .await?
                    .ok_or_else(|| ClusterError::Logs {
                        namespace: request.namespace.clone(),
                        pod: request.pod.clone(),
                        message: "the Pod does not exist".into(),
                    })?;
                let pod: Pod = super::typed(&pod)?;
                pod.spec
                    .and_then(|s| s.containers.first().map(|c| c.name.clone()))
                    .unwrap_or_default()
            }
        };
        check_container("container", &container)?;
        let params = LogParams {
            container: Some(container.clone()),
            previous: request.previous,
            tail_lines: request.tail_lines.map(|n| n as i64),
            // The kubelet stops there too; the stream is cut here whatever it sends.
            limit_bytes: Some(self.limits.max_bytes as i64),
            ..LogParams::default()
        };
        let http_request = self
            .request(ResourceKind::Pod, Some(&request.namespace))
            .logs(&request.pod, &params)
            .map_err(kube::Error::BuildRequest)?;
        let what = format!("the log of {}/{}", request.namespace, request.pod);
        let logs_error = |message: String| ClusterError::Logs {
            namespace: request.namespace.clone(),
            pod: request.pod.clone(),
            message,
        };
        let bytes = match self.fetch(&what, http_request, self.limits.max_bytes).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(logs_error("the Pod or container does not exist".into())),
            Err(ClusterError::Api(e)) => return Err(logs_error(e.to_string())),
            Err(e) => return Err(e),
        };
        Ok(Logs {
            container,
            text: String::from_utf8_lossy(&bytes).into_owned(),
            previous: request.previous,
            note: None,
        })
    }

    async fn events_for(&self, about: Involved<'_>) -> Result<Vec<Event>> {
        check_namespace("namespace", about.namespace)?;
        // Every part of a field selector is checked: a `,` in a name would add a term.
        let kind = about
            .kind
            .parse::<ResourceKind>()
            .map_err(ClusterError::Unsupported)?;
        check_name(kind, "name", about.name)?;
        let mut selector = format!(
            "involvedObject.kind={},involvedObject.name={}",
            kind.kind(),
            about.name
        );
        if let Some(uid) = about.uid {
            if uid.is_empty() || !uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(ClusterError::Unsupported(format!(
                    "uid {uid:?} is not a Kubernetes UID"
                )));
            }
            selector.push_str(&format!(",involvedObject.uid={uid}"));
        }
        let what = format!("the events of {} {}", kind.kind(), about.name);
        let mut list: Vec<Event> = self
            .list_all(
                &what,
                Request::new(Event::url_path(&(), Some(about.namespace))),
                ListParams::default().fields(&selector),
            )
            .await?;
        list.sort_by_key(super::dump::event_time);
        Ok(list)
    }

    /// The Pods of one node, by field selector: a node's usage never lists every Pod.
    async fn node_load(&self, node: &str) -> Result<super::NodeLoad> {
        check_name(ResourceKind::Node, "node", node)?;
        let what = format!("the Pods on Node {node}");
        let pods: Vec<super::UsagePod> = self
            .list_all(
                &what,
                Request::new(Pod::url_path(&(), None)),
                ListParams::default().fields(&format!("spec.nodeName={node}")),
            )
            .await?;
        let pods: Vec<Pod> = pods.into_iter().map(Pod::from).collect();
        Ok(super::NodeLoad::of(node, &pods))
    }
}

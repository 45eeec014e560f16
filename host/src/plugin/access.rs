//! The host side of the WIT `cluster` interface: what a tool plugin may read, and how much.
//!
//! Scope: the namespace under investigation and Nodes. Secrets show their keys only. Every answer
//! is capped; logs are tail-capped. Objects lose `managedFields` and the last-applied annotation
//! before they cross into a plugin: they cost the plugin's memory and the agent's budget and say
//! nothing about a failure.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use kube::core::{Expression, Selector, SelectorExt};
use serde_json::Value;

use super::bindings::tool::sre_operator::plugin::cluster::{
    ClusterError, Host, LogRequest as WitLogRequest,
};
use crate::cluster::{
    Cluster, Involved, LogRequest, ResourceKind, redact_secret, typed, usage_with,
};

/// Lines of log a plugin gets when it does not ask (the seed's 100) and at most.
pub const DEFAULT_LOG_LINES: usize = 100;
pub const MAX_LOG_LINES: usize = 1000;

/// What one investigation lets its tools read.
#[derive(Clone)]
pub struct ClusterAccess {
    pub cluster: Arc<dyn Cluster>,
    pub namespace: String,
    /// Largest answer, in bytes, a single read may return.
    pub max_answer_bytes: usize,
    pub runtime: tokio::runtime::Handle,
    /// When the calling plugin's time is up (set by the sandbox for each call): a read that
    /// has not answered by then is dropped, and the call ends as past its deadline.
    pub deadline: Option<Instant>,
    /// The read the deadline cut, for the error; fresh for every call.
    pub(super) cut: Arc<Mutex<Option<String>>>,
}

impl ClusterAccess {
    pub fn new(cluster: Arc<dyn Cluster>, namespace: impl Into<String>) -> Self {
        ClusterAccess {
            cluster,
            namespace: namespace.into(),
            max_answer_bytes: 1 << 20,
            runtime: tokio::runtime::Handle::current(),
            deadline: None,
            cut: Arc::default(),
        }
    }

    /// The read the plugin's deadline cut, if one was.
    pub fn timed_out(&self) -> Option<String> {
        self.cut.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn kind(&self, kind: &str) -> Result<ResourceKind, ClusterError> {
        let kind: ResourceKind = kind.parse().map_err(ClusterError::Forbidden)?;
        if !kind.namespaced() && kind != ResourceKind::Node {
            return Err(ClusterError::Forbidden(format!(
                "tools may read Nodes and objects in namespace {}, not {kind}s",
                self.namespace
            )));
        }
        Ok(kind)
    }

    fn scope(&self, namespace: Option<&str>) -> Result<(), ClusterError> {
        match namespace {
            Some(ns) if ns != self.namespace => Err(ClusterError::Forbidden(format!(
                "namespace {ns} is outside this investigation; tools may read namespace {} and Nodes",
                self.namespace
            ))),
            _ => Ok(()),
        }
    }

    fn answer(&self, value: &Value, what: &str) -> Result<String, ClusterError> {
        let text = value.to_string();
        if text.len() > self.max_answer_bytes {
            return Err(ClusterError::TooLarge(format!(
                "{what} is {} bytes, over the cap of {} bytes; ask for less",
                text.len(),
                self.max_answer_bytes
            )));
        }
        Ok(text)
    }

    /// Runs `read` (described by `what`) to its answer or to the plugin's deadline, whichever
    /// comes first: time spent in the host counts against the plugin, and a read cut off is
    /// dropped, its request with it.
    fn block_on<T, E: std::fmt::Display>(
        &self,
        what: impl FnOnce() -> String,
        read: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, ClusterError> {
        let answer = match self.deadline {
            Some(deadline) => self
                .runtime
                .block_on(async { tokio::time::timeout_at(deadline.into(), read).await.ok() }),
            None => Some(self.runtime.block_on(read)),
        };
        match answer {
            Some(result) => result.map_err(failed),
            None => {
                let what = what();
                *self.cut.lock().unwrap_or_else(|e| e.into_inner()) = Some(what.clone());
                Err(ClusterError::Failed(format!(
                    "the plugin's time ran out waiting on {what}"
                )))
            }
        }
    }
}

fn failed(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Failed(e.to_string())
}

/// Strips what no plugin should see or pay for.
pub fn prune(mut object: Value) -> Value {
    if object.get("kind").and_then(Value::as_str) == Some("Secret") {
        redact_secret(&mut object);
    }
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        }
    }
    object
}

/// Equality-based label selectors as kubectl takes them: `app=web,tier!=db,canary,!legacy`.
pub fn parse_label_selector(text: &str) -> Result<Selector, String> {
    let mut expressions = Vec::new();
    for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let expression = if let Some((k, v)) = term.split_once("!=") {
            Expression::NotEqual(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            Expression::Equal(k.trim().into(), v.trim().into())
        } else if let Some(k) = term.strip_prefix('!') {
            Expression::DoesNotExist(k.trim().into())
        } else if term
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        {
            Expression::Exists(term.into())
        } else {
            return Err(format!(
                "label selector term {term:?} is not key=value, key!=value, key or !key"
            ));
        };
        expressions.push(expression);
    }
    Ok(Selector::from_iter(expressions))
}

fn labels_of(object: &Value) -> std::collections::BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

impl Host for super::CallState {
    fn namespace(&mut self) -> String {
        self.access
            .as_ref()
            .map(|a| a.namespace.clone())
            .unwrap_or_default()
    }

    fn get_object(
        &mut self,
        kind: String,
        namespace: Option<String>,
        name: String,
    ) -> Result<String, ClusterError> {
        let access = self.access()?;
        let kind = access.kind(&kind)?;
        access.scope(namespace.as_deref())?;
        let object = access
            .block_on(
                || format!("the read of {kind} {name}"),
                access.cluster.get(kind, Some(&access.namespace), &name),
            )?
            .ok_or_else(|| {
                ClusterError::NotFound(format!("{kind} {name} in namespace {}", access.namespace))
            })?;
        access.answer(&prune((*object).clone()), &format!("{kind} {name}"))
    }

    fn list_objects(
        &mut self,
        kind: String,
        namespace: Option<String>,
        label_selector: Option<String>,
    ) -> Result<String, ClusterError> {
        let access = self.access()?;
        let kind = access.kind(&kind)?;
        access.scope(namespace.as_deref())?;
        let selector = label_selector
            .as_deref()
            .map(parse_label_selector)
            .transpose()
            .map_err(ClusterError::Failed)?;
        let objects = access.block_on(
            || format!("the list of {}", kind.plural()),
            access.cluster.list(kind, Some(&access.namespace)),
        )?;
        let items: Vec<Value> = objects
            .iter()
            .filter(|o| selector.as_ref().is_none_or(|s| s.matches(&labels_of(o))))
            .map(|o| prune((**o).clone()))
            .collect();
        access.answer(
            &Value::Array(items),
            &format!("the list of {}", kind.plural()),
        )
    }

    fn logs(&mut self, request: WitLogRequest) -> Result<String, ClusterError> {
        let access = self.access()?;
        let lines = request
            .tail_lines
            .map(|n| n as usize)
            .unwrap_or(DEFAULT_LOG_LINES)
            .clamp(1, MAX_LOG_LINES);
        let logs = access.block_on(
            || format!("the log of Pod {}", request.pod),
            access.cluster.logs(&LogRequest {
                namespace: access.namespace.clone(),
                pod: request.pod.clone(),
                container: request.container.clone(),
                previous: request.previous,
                tail_lines: Some(lines),
            }),
        )?;
        let mut text = String::new();
        if let Some(note) = logs.note {
            text.push_str(&format!("# note: {note}\n"));
        }
        // Keep the newest lines when the tail is still too large.
        let mut start = logs
            .text
            .len()
            .saturating_sub(access.max_answer_bytes.saturating_sub(text.len()));
        while !logs.text.is_char_boundary(start) {
            start += 1;
        }
        text.push_str(&logs.text[start..]);
        Ok(text)
    }

    fn events(&mut self, kind: String, name: String) -> Result<String, ClusterError> {
        let access = self.access()?;
        let kind = access.kind(&kind)?;
        let events = access.block_on(
            || format!("the events of {kind} {name}"),
            access.cluster.events_for(Involved {
                kind: kind.kind(),
                namespace: &access.namespace,
                name: &name,
                uid: None,
            }),
        )?;
        let value = serde_json::to_value(&events).map_err(failed)?;
        access.answer(&value, &format!("the events of {kind} {name}"))
    }

    fn node_usage(&mut self, node: String) -> Result<String, ClusterError> {
        let access = self.access()?;
        let object = access
            .block_on(
                || format!("the read of Node {node}"),
                access.cluster.get(ResourceKind::Node, None, &node),
            )?
            .ok_or_else(|| ClusterError::NotFound(format!("Node {node}")))?;
        let node_obj = typed(&object).map_err(failed)?;
        let load = access.block_on(
            || format!("the Pods of Node {node}"),
            access.cluster.node_load(&node),
        )?;
        let usage = usage_with(&node_obj, load);
        access.answer(
            &serde_json::to_value(&usage).map_err(failed)?,
            &format!("the usage of Node {node}"),
        )
    }
}

impl super::CallState {
    fn access(&self) -> Result<ClusterAccess, ClusterError> {
        self.access
            .clone()
            .ok_or_else(|| ClusterError::Forbidden("this plugin has no cluster access".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors() {
        let s = parse_label_selector("app=web, tier!=db,canary,!legacy").unwrap();
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(s.matches(&labels(&[("app", "web"), ("canary", "1")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("canary", "1"), ("tier", "db")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("canary", "1"), ("legacy", "y")])));
        assert!(!s.matches(&labels(&[("app", "web")])));
        assert!(parse_label_selector("app in (a)").is_err());
    }
}

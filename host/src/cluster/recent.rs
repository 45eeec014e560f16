//! Reads that may be a few seconds old: the workloads and Namespaces that opening a report asks
//! for again and again. In a burst, each failing workload's ReplicaSet and Deployment were read
//! by the owner check, the report's owner reference and the report controller's provenance
//! check, and its Namespace by the policy filters, within a second or two (the burst benchmark:
//! 3.4 Deployment reads per report). Concurrent reads of one object are made once.
//!
//! ReplicaSets and Deployments the owner watches hold ([`WatchedOwners`]) are answered from them,
//! with only the fields the owner checks read: identity, labels, owner references, selector.
//!
//! Only for deciding what to open and whom it belongs to: staleness there costs at most a
//! report owned by an object deleted a moment ago (the garbage collector takes it). Whatever
//! leads to a write (the patch target, the live provenance check before an apply) reads through
//! the live cluster.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Event, Pod};

use super::{
    Cluster, ClusterError, Involved, LogRequest, Logs, NodeLoad, Object, ResourceKind, Result,
    WatchedOwners,
};

/// How long a read is reused: longer than opening a report takes (its reads fall within a
/// second or two), short enough that an edit (a selector, a recreated workload) is seen by
/// the next report.
const FRESH_FOR: Duration = Duration::from_secs(10);
/// Bounds the memory (an object as `Value` is a few times its JSON, a Deployment about 20 KB):
/// the workloads being reported at once in a burst (tens) fit; beyond, the least used are read
/// again.
const MAX_OBJECTS: u64 = 128;

/// The kinds whose reads are reused: owners and Namespaces.
fn reused(kind: ResourceKind) -> bool {
    matches!(
        kind,
        ResourceKind::ReplicaSet
            | ResourceKind::Deployment
            | ResourceKind::StatefulSet
            | ResourceKind::DaemonSet
            | ResourceKind::ReplicationController
            | ResourceKind::Job
            | ResourceKind::CronJob
            | ResourceKind::Namespace
    )
}

type Key = (ResourceKind, String, String);

/// A [`Cluster`] that answers `get` of owners and Namespaces from reads less than
/// `FRESH_FOR` (10 s) old, and passes everything else through.
pub struct RecentReads {
    inner: Arc<dyn Cluster>,
    objects: moka::future::Cache<Key, Option<Object>>,
    owners: Option<WatchedOwners>,
}

impl RecentReads {
    pub fn new(inner: Arc<dyn Cluster>) -> Self {
        RecentReads {
            inner,
            objects: moka::future::Cache::builder()
                .max_capacity(MAX_OBJECTS)
                .time_to_live(FRESH_FOR)
                .build(),
            owners: None,
        }
    }

    /// Answers the owners `owners` holds from it (only their identity and ownership fields).
    pub fn with_owners(mut self, owners: WatchedOwners) -> Self {
        self.owners = Some(owners);
        self
    }
}

#[async_trait]
impl Cluster for RecentReads {
    fn source(&self) -> String {
        self.inner.source()
    }

    fn observed_at(&self) -> Option<k8s_openapi::jiff::Timestamp> {
        self.inner.observed_at()
    }

    async fn get(
        &self,
        kind: ResourceKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Object>> {
        // A name the live reader refuses is refused by it, with its own error, and not kept.
        if !reused(kind) || crate::names::check_name(kind, "name", name).is_err() {
            return self.inner.get(kind, namespace, name).await;
        }
        if let Some(watched) = self
            .owners
            .as_ref()
            .and_then(|o| o.get(kind, namespace, name))
        {
            return Ok(Some(watched));
        }
        let key = (
            kind,
            kind.scope(namespace).unwrap_or_default().to_string(),
            name.to_string(),
        );
        self.objects
            .try_get_with(key, self.inner.get(kind, namespace, name))
            .await
            // The first caller gets the error itself; one that waited on the same read gets
            // its message (errors are not kept: the next call reads again).
            .map_err(|shared| {
                Arc::try_unwrap(shared).unwrap_or_else(|shared| ClusterError::Failed {
                    what: format!("{kind} {name}"),
                    message: shared.to_string(),
                })
            })
    }

    async fn list(&self, kind: ResourceKind, namespace: Option<&str>) -> Result<Vec<Object>> {
        self.inner.list(kind, namespace).await
    }

    async fn logs(&self, request: &LogRequest) -> Result<Logs> {
        self.inner.logs(request).await
    }

    async fn events_for(&self, about: Involved<'_>) -> Result<Vec<Event>> {
        self.inner.events_for(about).await
    }

    async fn pods(&self, namespace: Option<&str>) -> Result<Vec<Pod>> {
        self.inner.pods(namespace).await
    }

    async fn failing_pods(&self, namespace: Option<&str>) -> Result<(Vec<Pod>, usize)> {
        self.inner.failing_pods(namespace).await
    }

    async fn short_of_pods(
        &self,
        kind: ResourceKind,
        namespace: Option<&str>,
    ) -> Result<Vec<Object>> {
        self.inner.short_of_pods(kind, namespace).await
    }

    async fn pod_namespaces(&self) -> Result<Option<Vec<String>>> {
        self.inner.pod_namespaces().await
    }

    async fn node_load(&self, node: &str) -> Result<NodeLoad> {
        self.inner.node_load(node).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts `get`s and answers each with a Deployment named as asked (none for "gone").
    #[derive(Default)]
    struct Counting(AtomicUsize);

    #[async_trait]
    impl Cluster for Counting {
        fn source(&self) -> String {
            "counting".into()
        }
        async fn get(
            &self,
            kind: ResourceKind,
            _: Option<&str>,
            name: &str,
        ) -> Result<Option<Object>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            // Slow enough that concurrent callers overlap.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if name == "broken" {
                return Err(ClusterError::Failed {
                    what: name.into(),
                    message: "connection reset".into(),
                });
            }
            Ok((name != "gone").then(|| {
                Arc::new(serde_json::json!({"kind": kind.kind(), "metadata": {"name": name}}))
            }))
        }
        async fn list(&self, _: ResourceKind, _: Option<&str>) -> Result<Vec<Object>> {
            Ok(vec![])
        }
        async fn logs(&self, _: &LogRequest) -> Result<Logs> {
            unreachable!()
        }
        async fn events_for(&self, _: Involved<'_>) -> Result<Vec<Event>> {
            Ok(vec![])
        }
    }

    #[tokio::test]
    async fn an_owner_read_again_within_seconds_is_not_asked_again() {
        let inner = Arc::new(Counting::default());
        let recent = RecentReads::new(inner.clone());
        let d = ResourceKind::Deployment;
        // Five Pods of one workload at once, then its report's checks: one read.
        let reads =
            futures::future::join_all((0..5).map(|_| recent.get(d, Some("shop"), "web"))).await;
        assert!(reads.iter().all(|r| r.as_ref().unwrap().is_some()));
        recent.get(d, Some("shop"), "web").await.unwrap();
        assert_eq!(inner.0.load(Ordering::SeqCst), 1);
        // Another namespace's namesake, a missing one (kept as missing) and a Pod (never kept).
        recent.get(d, Some("cart"), "web").await.unwrap();
        assert!(recent.get(d, Some("shop"), "gone").await.unwrap().is_none());
        assert!(recent.get(d, Some("shop"), "gone").await.unwrap().is_none());
        recent
            .get(ResourceKind::Pod, Some("shop"), "web-1")
            .await
            .unwrap();
        recent
            .get(ResourceKind::Pod, Some("shop"), "web-1")
            .await
            .unwrap();
        assert_eq!(inner.0.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_failed_read_is_not_kept_and_a_bad_name_is_refused_by_the_reader() {
        let inner = Arc::new(Counting::default());
        let recent = RecentReads::new(inner.clone());
        let d = ResourceKind::Deployment;
        assert!(recent.get(d, Some("shop"), "broken").await.is_err());
        assert!(recent.get(d, Some("shop"), "broken").await.is_err());
        assert_eq!(inner.0.load(Ordering::SeqCst), 2, "an error is read again");
        // Not a name: passed through to the reader, whose refusal is the caller's to see.
        recent.get(d, Some("shop"), "../secrets").await.unwrap();
        recent.get(d, Some("shop"), "../secrets").await.unwrap();
        assert_eq!(inner.0.load(Ordering::SeqCst), 4);
    }
}

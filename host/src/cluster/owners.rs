//! Who owns a failing Pod, from a watch instead of a read per report. In a burst (the burst
//! benchmark: 200 Deployments failing at once) each new report read its Pod's ReplicaSet and
//! Deployment once: two of its six API requests. Two watches keep what the owner checks look at
//! (`workload::check_owner`, the report's owner reference, the provenance check): a ReplicaSet's
//! or Deployment's name, UID, labels, owner references and selector, nothing else (no template,
//! no annotations, no managed fields).
//!
//! Only ReplicaSets that run Pods are kept (`spec.replicas` above 0): a Deployment keeps ten old
//! ones scaled to 0, and a Pod of one is on its way out. What the watches have not shown (an
//! object created a moment ago, an old ReplicaSet, a kind not watched) is read as before.

use std::borrow::Cow;
use std::marker::PhantomData;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::{Deserialize, Serialize};

use super::{Object, ResourceKind};

/// A ReplicaSet or Deployment as the owner checks see it. Deserializing into it skips the rest
/// of the object, so a page of the watch's list costs its bytes, not its templates parsed.
#[derive(Deserialize, Serialize, Clone, Debug)]
#[serde(bound = "", rename_all = "camelCase")]
pub struct OwnerView<K> {
    metadata: ObjectMeta,
    #[serde(default)]
    spec: OwnerSpec,
    #[serde(skip)]
    kind: PhantomData<fn() -> K>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default)]
struct OwnerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    selector: Option<LabelSelector>,
    /// Read to leave out scaled-down ReplicaSets; not part of what is answered.
    #[serde(default, skip_serializing)]
    replicas: Option<i32>,
}

impl<K: Resource<DynamicType = ()>> Resource for OwnerView<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl<K: Resource<DynamicType = ()>> OwnerView<K> {
    /// What is kept of an object: its identity, labels, owner references and selector.
    fn trimmed(mut self) -> Self {
        let meta = &mut self.metadata;
        *meta = ObjectMeta {
            name: meta.name.take(),
            namespace: meta.namespace.take(),
            uid: meta.uid.take(),
            labels: meta.labels.take(),
            owner_references: meta.owner_references.take(),
            ..Default::default()
        };
        self
    }

    /// Whether the object may own a failing Pod: a ReplicaSet scaled to 0 runs none.
    fn runs_pods(&self) -> bool {
        K::kind(&()) != "ReplicaSet" || self.spec.replicas != Some(0)
    }

    /// The object as a read answers it, with only the kept fields.
    fn to_object(&self) -> Object {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        value["apiVersion"] = K::api_version(&()).into();
        value["kind"] = K::kind(&()).into();
        std::sync::Arc::new(value)
    }
}

/// The watched ReplicaSets and Deployments (see the module's comment). Cheap to clone.
#[derive(Clone)]
pub struct WatchedOwners {
    replica_sets: Store<OwnerView<ReplicaSet>>,
    deployments: Store<OwnerView<Deployment>>,
}

/// Pages of the watches' lists: a ReplicaSet's JSON carries its Pod template (several KB).
const PAGE_SIZE: u32 = 100;

impl WatchedOwners {
    /// Starts watching ReplicaSets and Deployments in `namespace` (all when `None`). The future
    /// runs the watches; until their first lists are in, nothing is answered from them.
    pub fn watch(client: Client, namespace: Option<&str>) -> (Self, BoxFuture<'static, ()>) {
        let (replica_sets, rs_watch) = watched::<ReplicaSet>(client.clone(), namespace);
        let (deployments, deployment_watch) = watched::<Deployment>(client, namespace);
        let run = async move {
            futures::join!(rs_watch, deployment_watch);
        };
        (
            WatchedOwners {
                replica_sets,
                deployments,
            },
            Box::pin(run),
        )
    }

    /// The kept fields of `kind` `namespace/name`, if the watches hold it; `None` when they do not
    /// (not seen yet, not kept, or a kind not watched): the caller reads it.
    pub fn get(&self, kind: ResourceKind, namespace: Option<&str>, name: &str) -> Option<Object> {
        fn held<K: Resource<DynamicType = ()> + Clone>(
            store: &Store<OwnerView<K>>,
            namespace: &str,
            name: &str,
        ) -> Option<Object> {
            store
                .get(&ObjectRef::new(name).within(namespace))
                .map(|o| o.to_object())
        }
        let namespace = namespace?;
        match kind {
            ResourceKind::ReplicaSet => held(&self.replica_sets, namespace, name),
            ResourceKind::Deployment => held(&self.deployments, namespace, name),
            _ => None,
        }
    }
}

/// A store of `K`'s kept fields and the watch that fills it. Watch errors are retried with
/// kube's backoff and logged; the store keeps what it had meanwhile.
fn watched<K>(
    client: Client,
    namespace: Option<&str>,
) -> (Store<OwnerView<K>>, BoxFuture<'static, ()>)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<OwnerView<K>> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let (store, writer) = reflector::store();
    let run = watcher(api, watcher::Config::default().page_size(PAGE_SIZE))
        .default_backoff()
        .filter_map(|event| async move {
            match event {
                Ok(event) => kept(event).map(Ok),
                Err(e) => Some(Err(e)),
            }
        })
        .reflect(writer)
        .for_each(|event| async move {
            if let Err(e) = event {
                tracing::warn!(kind = %K::kind(&()), error = %e, "watching owners failed; reading them meanwhile");
            }
        });
    (store, Box::pin(run))
}

/// The watch event as the store keeps it: trimmed, and a ReplicaSet scaled to 0 left out (of a
/// relist) or removed (when it scales down).
fn kept<K: Resource<DynamicType = ()>>(
    event: watcher::Event<OwnerView<K>>,
) -> Option<watcher::Event<OwnerView<K>>> {
    Some(match event {
        watcher::Event::Apply(o) if !o.runs_pods() => watcher::Event::Delete(o),
        watcher::Event::Apply(o) => watcher::Event::Apply(o.trimmed()),
        watcher::Event::InitApply(o) if !o.runs_pods() => return None,
        watcher::Event::InitApply(o) => watcher::Event::InitApply(o.trimmed()),
        other => other,
    })
}

#[cfg(test)]
impl WatchedOwners {
    /// Stores filled with these objects, as the watches' first lists would.
    pub(crate) fn from_objects(
        replica_sets: &[serde_json::Value],
        deployments: &[serde_json::Value],
    ) -> Self {
        fn fill<K: Resource<DynamicType = ()> + Clone>(
            items: &[serde_json::Value],
        ) -> Store<OwnerView<K>> {
            let (store, mut writer) = reflector::store();
            writer.apply_watcher_event(&watcher::Event::Init);
            for item in items {
                let view: OwnerView<K> = serde_json::from_value(item.clone()).unwrap();
                if let Some(event) = kept(watcher::Event::InitApply(view)) {
                    writer.apply_watcher_event(&event);
                }
            }
            writer.apply_watcher_event(&watcher::Event::InitDone);
            store
        }
        WatchedOwners {
            replica_sets: fill(replica_sets),
            deployments: fill(deployments),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn replica_set(name: &str, replicas: i32) -> serde_json::Value {
        json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": name, "namespace": "shop", "uid": format!("uid-{name}"),
                "labels": {"app": "web", "pod-template-hash": "5d8f7"},
                "annotations": {"deployment.kubernetes.io/revision": "3"},
                "managedFields": [{"manager": "kube-controller-manager", "fieldsV1": {"f:spec": {}}}],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                     "uid": "uid-web", "controller": true}]
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d8f7"}},
                "template": {"spec": {"containers": [{"name": "web", "image": "web:1",
                    "env": [{"name": "TOKEN", "value": "s3cr3t"}]}]}}
            },
            "status": {"replicas": replicas}
        })
    }

    #[test]
    fn only_what_the_owner_checks_read_is_kept() {
        let owners = WatchedOwners::from_objects(&[replica_set("web-5d8f7", 5)], &[]);
        let kept = owners
            .get(ResourceKind::ReplicaSet, Some("shop"), "web-5d8f7")
            .expect("a ReplicaSet running Pods is kept");
        assert_eq!(
            *kept,
            json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {
                    "name": "web-5d8f7", "namespace": "shop", "uid": "uid-web-5d8f7",
                    "labels": {"app": "web", "pod-template-hash": "5d8f7"},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                         "name": "web", "uid": "uid-web", "controller": true}]
                },
                "spec": {"selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d8f7"}}}
            })
        );
        // Another namespace, another kind, no namespace: not held, so read by the caller.
        assert!(
            owners
                .get(ResourceKind::ReplicaSet, Some("cart"), "web-5d8f7")
                .is_none()
        );
        assert!(
            owners
                .get(ResourceKind::StatefulSet, Some("shop"), "web-5d8f7")
                .is_none()
        );
        assert!(
            owners
                .get(ResourceKind::ReplicaSet, None, "web-5d8f7")
                .is_none()
        );
    }

    #[test]
    fn a_replicaset_scaled_to_zero_is_not_kept_and_leaves_when_it_scales_down() {
        let owners = WatchedOwners::from_objects(
            &[replica_set("web-old", 0), replica_set("web-5d8f7", 5)],
            &[],
        );
        assert!(
            owners
                .get(ResourceKind::ReplicaSet, Some("shop"), "web-old")
                .is_none()
        );
        let (store, mut writer) = reflector::store::<OwnerView<ReplicaSet>>();
        for object in [replica_set("web-5d8f7", 5), replica_set("web-5d8f7", 0)] {
            let view = serde_json::from_value(object).unwrap();
            writer.apply_watcher_event(&kept(watcher::Event::Apply(view)).unwrap());
        }
        assert!(
            store
                .get(&ObjectRef::new("web-5d8f7").within("shop"))
                .is_none()
        );
    }
}

//! The workload a Pod belongs to, from owner references that are checked, not believed.
//!
//! Whoever creates a Pod writes its `ownerReferences`: a bare Pod can claim a StatefulSet it does
//! not belong to, and a report that trusted the claim would suggest a patch to that StatefulSet.
//! So only a `controller: true` reference is followed, and only when the owner exists with that
//! UID and its selector selects the Pod (for a ReplicaSet, with the same `pod-template-hash`);
//! otherwise the Pod is treated as bare. The same holds one level up (ReplicaSet → Deployment,
//! Job → CronJob).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::core::{Selector, SelectorExt};
use serde_json::Value;

use super::{Cluster, ClusterError, ResourceKind, Result};
use crate::crd::WorkloadRef;

const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// The reference a controller wrote: `controller: true`, nothing else.
fn controller_of(owners: Option<&Vec<OwnerReference>>) -> Option<&OwnerReference> {
    owners?.iter().find(|o| o.controller == Some(true))
}

fn to_ref(owner: &OwnerReference) -> WorkloadRef {
    WorkloadRef {
        api_version: owner.api_version.clone(),
        kind: owner.kind.clone(),
        name: owner.name.clone(),
    }
}

fn bare(pod: &Pod) -> WorkloadRef {
    WorkloadRef {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: pod.metadata.name.clone().unwrap_or_default(),
    }
}

fn labels_of(object: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(object["metadata"]["labels"].clone()).unwrap_or_default()
}

/// Whether `owner`'s `spec.selector` selects `labels`. A ReplicationController's selector is a
/// plain map; every other workload's is a LabelSelector. No selector selects nothing.
fn selects(owner: &Value, kind: ResourceKind, labels: &BTreeMap<String, String>) -> bool {
    let selector = &owner["spec"]["selector"];
    if kind == ResourceKind::ReplicationController {
        let Ok(map) = serde_json::from_value::<BTreeMap<String, String>>(selector.clone()) else {
            return false;
        };
        return !map.is_empty() && map.iter().all(|(k, v)| labels.get(k) == Some(v));
    }
    let Ok(selector) = serde_json::from_value::<LabelSelector>(selector.clone()) else {
        return false;
    };
    let empty = selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty());
    match Selector::try_from(selector) {
        Ok(s) if !empty => s.matches(labels),
        _ => false,
    }
}

/// What a check of one owner reference found.
enum Owner {
    /// The owner exists with the reference's UID and owns the child.
    Verified(std::sync::Arc<Value>),
    /// The reference names something that is not there, or not that object, or not the child's.
    Refuted(String),
    /// The source cannot hold that kind (a dump without Jobs): the reference is all there is.
    Unknowable,
}

/// Reads `owner` and checks its UID and that it owns a child with `labels`.
async fn check_owner(
    cluster: &dyn Cluster,
    namespace: Option<&str>,
    owner: &OwnerReference,
    kind: ResourceKind,
    labels: &BTreeMap<String, String>,
) -> Result<Owner> {
    let object = match cluster.get(kind, namespace, &owner.name).await {
        Ok(Some(object)) => object,
        Ok(None) => {
            return Ok(Owner::Refuted(format!(
                "{kind} {} does not exist",
                owner.name
            )));
        }
        Err(ClusterError::InvalidName(e)) => return Ok(Owner::Refuted(e.to_string())),
        Err(ClusterError::Unsupported(_)) => return Ok(Owner::Unknowable),
        Err(e) => return Err(e),
    };
    if object["metadata"]["uid"].as_str() != Some(owner.uid.as_str()) {
        return Ok(Owner::Refuted(format!(
            "{kind} {} has another UID than the reference",
            owner.name
        )));
    }
    // A CronJob has no selector: its Jobs carry its name and are checked by UID alone.
    if kind != ResourceKind::CronJob && !selects(&object, kind, labels) {
        return Ok(Owner::Refuted(format!(
            "{kind} {}'s selector does not select it",
            owner.name
        )));
    }
    if kind == ResourceKind::ReplicaSet
        && let Some(hash) = labels_of(&object).get(POD_TEMPLATE_HASH)
        && labels.get(POD_TEMPLATE_HASH) != Some(hash)
    {
        return Ok(Owner::Refuted(format!(
            "ReplicaSet {} has another {POD_TEMPLATE_HASH}",
            owner.name
        )));
    }
    Ok(Owner::Verified(object))
}

fn workload_kind(kind: &str) -> Option<ResourceKind> {
    match kind {
        "ReplicaSet" => Some(ResourceKind::ReplicaSet),
        "Job" => Some(ResourceKind::Job),
        "StatefulSet" => Some(ResourceKind::StatefulSet),
        "DaemonSet" => Some(ResourceKind::DaemonSet),
        "ReplicationController" => Some(ResourceKind::ReplicationController),
        "Deployment" => Some(ResourceKind::Deployment),
        "CronJob" => Some(ResourceKind::CronJob),
        _ => None,
    }
}

/// The workload a person would patch for this Pod: ReplicaSet resolved to its Deployment, Job to
/// its CronJob, StatefulSet, DaemonSet and ReplicationController as they are, a bare Pod itself.
/// Each step follows only a verified controller reference; a reference that does not hold makes
/// the Pod bare (a Pod is no patch target). When the source cannot hold the owner's kind (a dump
/// without Jobs), the nearest reference is used as written: a dump is diagnosed, never patched.
pub async fn resolve_workload(cluster: &dyn Cluster, pod: &Pod) -> Result<WorkloadRef> {
    let namespace = pod.metadata.namespace.as_deref();
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let Some(owner) = controller_of(pod.metadata.owner_references.as_ref()) else {
        return Ok(bare(pod));
    };
    let Some(kind) = workload_kind(&owner.kind) else {
        tracing::debug!(pod = pod_name, owner = %owner.kind, "owner of a kind the operator cannot check: the Pod is bare");
        return Ok(bare(pod));
    };
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    let parent = match check_owner(cluster, namespace, owner, kind, &labels).await? {
        Owner::Verified(parent) => parent,
        Owner::Unknowable => return Ok(to_ref(owner)),
        Owner::Refuted(why) => {
            tracing::warn!(pod = pod_name, owner = %owner.name, "owner reference does not hold ({why}): the Pod is treated as bare");
            return Ok(bare(pod));
        }
    };
    let grand_kind = match kind {
        ResourceKind::ReplicaSet => ResourceKind::Deployment,
        ResourceKind::Job => ResourceKind::CronJob,
        _ => return Ok(to_ref(owner)),
    };
    let parent_owners: Option<Vec<OwnerReference>> =
        serde_json::from_value(parent["metadata"]["ownerReferences"].clone())
            .ok()
            .flatten();
    let Some(grand) = controller_of(parent_owners.as_ref()).filter(|g| g.kind == grand_kind.kind())
    else {
        return Ok(to_ref(owner));
    };
    // The grandparent must own the parent: a Deployment's selector selects its ReplicaSet's Pods,
    // a CronJob's Jobs are named after it.
    let checked = match grand_kind {
        ResourceKind::CronJob if !owner.name.starts_with(&format!("{}-", grand.name)) => {
            Owner::Refuted(format!(
                "Job {} is not named after CronJob {}",
                owner.name, grand.name
            ))
        }
        _ => check_owner(cluster, namespace, grand, grand_kind, &labels).await?,
    };
    match checked {
        Owner::Verified(_) | Owner::Unknowable => Ok(to_ref(grand)),
        Owner::Refuted(why) => {
            tracing::warn!(pod = pod_name, owner = %grand.name, "owner reference does not hold ({why}): {} is the workload", owner.name);
            Ok(to_ref(owner))
        }
    }
}

#[cfg(test)]
mod tests;

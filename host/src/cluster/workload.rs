use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::{Cluster, ResourceKind, Result};
use crate::crd::WorkloadRef;

fn controller_of(owners: Option<&Vec<OwnerReference>>) -> Option<&OwnerReference> {
    let owners = owners?;
    owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first())
}

fn to_ref(owner: &OwnerReference) -> WorkloadRef {
    WorkloadRef {
        api_version: owner.api_version.clone(),
        kind: owner.kind.clone(),
        name: owner.name.clone(),
    }
}

/// The workload a person would patch for this Pod: ReplicaSet resolved to its Deployment, Job to
/// its CronJob, StatefulSet, DaemonSet and ReplicationController as they are, a bare Pod itself.
/// When the intermediate object is not visible (a dump without jobs), the nearest owner is used.
pub async fn resolve_workload(cluster: &dyn Cluster, pod: &Pod) -> Result<WorkloadRef> {
    let namespace = pod.metadata.namespace.as_deref();
    let Some(owner) = controller_of(pod.metadata.owner_references.as_ref()) else {
        return Ok(WorkloadRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod.metadata.name.clone().unwrap_or_default(),
        });
    };
    let parent_kind = match owner.kind.as_str() {
        "ReplicaSet" => ResourceKind::ReplicaSet,
        "Job" => ResourceKind::Job,
        _ => return Ok(to_ref(owner)),
    };
    // A dump may not hold Jobs at all: the nearest owner is the answer then.
    let Ok(Some(parent)) = cluster.get(parent_kind, namespace, &owner.name).await else {
        return Ok(to_ref(owner));
    };
    let parent_owners: Option<Vec<OwnerReference>> =
        serde_json::from_value(parent["metadata"]["ownerReferences"].clone())
            .ok()
            .flatten();
    match controller_of(parent_owners.as_ref()) {
        Some(grand) if matches!(grand.kind.as_str(), "Deployment" | "CronJob") => Ok(to_ref(grand)),
        _ => Ok(to_ref(owner)),
    }
}

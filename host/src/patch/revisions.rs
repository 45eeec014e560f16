//! The host's rule for image changes: a patch may set a container's image only to an image an
//! earlier revision of the same workload ran. An image names code that will run as the workload;
//! the one image the operator can vouch for is one the workload already ran (a rollback after a
//! bad tag). A model may not change images at all (patch-safety's rule); this holds for every
//! author, the rules brain included.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::cluster::{Cluster, ResourceKind};

const REVISION: &str = "deployment.kubernetes.io/revision";

/// The pod template of a workload object, where its containers live.
fn template(object: &Value) -> Option<&Value> {
    object
        .pointer("/spec/template/spec")
        .or_else(|| object.pointer("/spec/jobTemplate/spec/template/spec"))
}

/// Container name → image, init and ephemeral containers included.
fn images(object: &Value) -> BTreeMap<String, String> {
    let Some(spec) = template(object) else {
        return BTreeMap::new();
    };
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|field| spec[*field].as_array())
        .flatten()
        .filter_map(|c| {
            Some((
                c["name"].as_str()?.to_string(),
                c["image"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// The images a patch sets that the target did not have: (container, new image).
pub fn image_changes(target: &Value, patched: &Value) -> Vec<(String, String)> {
    let before = images(target);
    images(patched)
        .into_iter()
        .filter(|(name, image)| before.get(name) != Some(image))
        .collect()
}

fn revision_of(object: &Value) -> Option<u64> {
    object["metadata"]["annotations"][REVISION]
        .as_str()?
        .parse()
        .ok()
}

/// (container, image) pairs of a Deployment's earlier revisions: its ReplicaSets (owned by it,
/// by UID) whose revision is below the Deployment's current one.
async fn earlier_images(
    cluster: &dyn Cluster,
    deployment: &Value,
) -> Result<BTreeSet<(String, String)>, String> {
    let namespace = deployment["metadata"]["namespace"].as_str();
    let uid = deployment["metadata"]["uid"].as_str().unwrap_or_default();
    let current = revision_of(deployment).unwrap_or(u64::MAX);
    let replica_sets = cluster
        .list(ResourceKind::ReplicaSet, namespace)
        .await
        .map_err(|e| format!("cannot read the workload's revisions: {e}"))?;
    Ok(replica_sets
        .iter()
        .filter(|rs| {
            rs["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|o| o["controller"] == true && o["uid"] == uid && !uid.is_empty())
        })
        .filter(|rs| revision_of(rs).is_some_and(|r| r < current))
        .flat_map(|rs| images(rs))
        .collect())
}

/// Why the patch's image changes are refused, if they are: each new image must be one an earlier
/// revision of the target ran in the same container.
pub async fn check_images(
    cluster: &dyn Cluster,
    target: &Value,
    patched: &Value,
) -> Result<(), String> {
    let changes = image_changes(target, patched);
    if changes.is_empty() {
        return Ok(());
    }
    let kind = target["kind"].as_str().unwrap_or_default();
    if kind != "Deployment" {
        return Err(format!(
            "image-history: a patch may change an image only back to an earlier revision's, and \
             the operator reads revisions of Deployments only, not of a {kind}"
        ));
    }
    let earlier = earlier_images(cluster, target).await?;
    for (container, image) in changes {
        if !earlier.contains(&(container.clone(), image.clone())) {
            return Err(format!(
                "image-history: container {container} may only go back to an image an earlier \
                 revision of this Deployment ran; {image} is not one"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::testing::Objects;
    use serde_json::json;

    fn deployment(image: &str) -> Value {
        json!({"kind": "Deployment", "metadata": {"name": "web", "namespace": "app", "uid": "d-1",
               "annotations": {REVISION: "3"}},
               "spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}})
    }

    fn replica_set(name: &str, revision: &str, image: &str, owner_uid: &str) -> Value {
        json!({"kind": "ReplicaSet", "metadata": {"name": name, "namespace": "app",
               "annotations": {REVISION: revision},
               "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                    "uid": owner_uid, "controller": true}]},
               "spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}})
    }

    fn history() -> Objects {
        Objects {
            objects: vec![
                replica_set("web-1", "1", "shop/web:1.0", "d-1"),
                replica_set("web-2", "2", "shop/web:1.1", "d-1"),
                replica_set("web-3", "3", "shop/web:1.2-typo", "d-1"),
                // Another Deployment's history, and a ReplicaSet claiming this one falsely.
                replica_set("other-1", "1", "evil.example.net/miner:latest", "d-2"),
            ],
            held: vec![ResourceKind::ReplicaSet],
        }
    }

    #[tokio::test]
    async fn only_an_earlier_revisions_image_may_be_set() {
        let target = deployment("shop/web:1.2-typo");
        let cluster = history();
        check_images(&cluster, &target, &deployment("shop/web:1.1"))
            .await
            .unwrap();
        for image in ["evil.example.net/miner:latest", "shop/web:9.9"] {
            let err = check_images(&cluster, &target, &deployment(image))
                .await
                .unwrap_err();
            assert!(err.starts_with("image-history:"), "{err}");
            assert!(err.contains(image), "{err}");
        }
        // No image change, no question asked.
        check_images(&cluster, &target, &target).await.unwrap();
    }

    #[tokio::test]
    async fn a_workload_without_readable_revisions_gets_no_image_change() {
        let mut target = deployment("a:1");
        target["kind"] = json!("StatefulSet");
        let mut patched = target.clone();
        patched["spec"]["template"]["spec"]["containers"][0]["image"] = json!("a:0");
        let err = check_images(&history(), &target, &patched)
            .await
            .unwrap_err();
        assert!(err.contains("StatefulSet"), "{err}");
    }
}

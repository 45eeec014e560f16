//! Owner references that hold, and the ones a Pod's creator forged.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::*;
use crate::cluster::testing::Objects;

fn owner(kind: &str, name: &str, uid: &str, controller: bool) -> Value {
    json!({"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid, "controller": controller})
}

fn pod(labels: Value, owners: Vec<Value>) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web-5d8f7-abcde", "namespace": "app", "labels": labels,
                     "ownerReferences": owners}
    }))
    .unwrap()
}

fn object(
    kind: &str,
    name: &str,
    uid: &str,
    labels: Value,
    selector: Value,
    owners: Vec<Value>,
) -> Value {
    json!({"kind": kind, "metadata": {"name": name, "namespace": "app", "uid": uid,
           "labels": labels, "ownerReferences": owners},
           "spec": {"selector": selector}})
}

fn deployment_world() -> Vec<Value> {
    vec![
        object(
            "Deployment",
            "web",
            "uid-deploy",
            json!({"app": "web"}),
            json!({"matchLabels": {"app": "web"}}),
            vec![],
        ),
        object(
            "ReplicaSet",
            "web-5d8f7",
            "uid-rs",
            json!({"app": "web", "pod-template-hash": "5d8f7"}),
            json!({"matchLabels": {"app": "web", "pod-template-hash": "5d8f7"}}),
            vec![owner("Deployment", "web", "uid-deploy", true)],
        ),
        object(
            "StatefulSet",
            "db",
            "uid-sts",
            json!({"app": "db"}),
            json!({"matchLabels": {"app": "db"}}),
            vec![],
        ),
    ]
}

fn all_held() -> Vec<ResourceKind> {
    ResourceKind::ALL.to_vec()
}

async fn resolve(objects: Vec<Value>, held: Vec<ResourceKind>, pod: &Pod) -> WorkloadRef {
    resolve_workload(&Objects { objects, held }, pod)
        .await
        .unwrap()
}

fn web_labels() -> Value {
    json!({"app": "web", "pod-template-hash": "5d8f7"})
}

#[tokio::test]
async fn a_true_chain_resolves_to_the_deployment() {
    let p = pod(
        web_labels(),
        vec![owner("ReplicaSet", "web-5d8f7", "uid-rs", true)],
    );
    let w = resolve(deployment_world(), all_held(), &p).await;
    assert_eq!((w.kind.as_str(), w.name.as_str()), ("Deployment", "web"));
}

#[tokio::test]
async fn a_bare_pod_claiming_a_statefulset_it_does_not_belong_to_stays_bare() {
    // Right name and UID (both readable), labels the StatefulSet does not select.
    let p = pod(
        json!({"app": "evil"}),
        vec![owner("StatefulSet", "db", "uid-sts", true)],
    );
    assert_eq!(
        resolve(deployment_world(), all_held(), &p).await.kind,
        "Pod"
    );
    // Selected labels, a UID of another object.
    let p = pod(
        json!({"app": "db"}),
        vec![owner("StatefulSet", "db", "uid-other", true)],
    );
    assert_eq!(
        resolve(deployment_world(), all_held(), &p).await.kind,
        "Pod"
    );
    // A claimed owner that does not exist.
    let p = pod(
        json!({"app": "db"}),
        vec![owner("StatefulSet", "ghost", "uid-x", true)],
    );
    assert_eq!(
        resolve(deployment_world(), all_held(), &p).await.kind,
        "Pod"
    );
    // What the StatefulSet does own resolves to it.
    let p = pod(
        json!({"app": "db"}),
        vec![owner("StatefulSet", "db", "uid-sts", true)],
    );
    assert_eq!(resolve(deployment_world(), all_held(), &p).await.name, "db");
}

#[tokio::test]
async fn only_controller_references_are_followed() {
    let p = pod(
        web_labels(),
        vec![owner("ReplicaSet", "web-5d8f7", "uid-rs", false)],
    );
    assert_eq!(
        resolve(deployment_world(), all_held(), &p).await.kind,
        "Pod"
    );
}

#[tokio::test]
async fn a_replicaset_pod_needs_the_same_pod_template_hash() {
    let p = pod(
        json!({"app": "web", "pod-template-hash": "other"}),
        vec![owner("ReplicaSet", "web-5d8f7", "uid-rs", true)],
    );
    assert_eq!(
        resolve(deployment_world(), all_held(), &p).await.kind,
        "Pod"
    );
}

#[tokio::test]
async fn a_forged_grandparent_stops_at_the_replicaset() {
    let mut world = deployment_world();
    world[1]["metadata"]["ownerReferences"] =
        json!([owner("Deployment", "web", "uid-forged", true)]);
    let p = pod(
        web_labels(),
        vec![owner("ReplicaSet", "web-5d8f7", "uid-rs", true)],
    );
    let w = resolve(world, all_held(), &p).await;
    assert_eq!(
        (w.kind.as_str(), w.name.as_str()),
        ("ReplicaSet", "web-5d8f7")
    );
}

#[tokio::test]
async fn a_name_that_would_change_a_request_makes_the_pod_bare() {
    let p = pod(
        web_labels(),
        vec![owner("ReplicaSet", "?watch=true&x=", "uid-rs", true)],
    );
    assert_eq!(
        resolve(deployment_world(), all_held(), &p).await.kind,
        "Pod"
    );
}

#[tokio::test]
async fn a_dump_without_the_owners_kind_keeps_the_reference() {
    let p = pod(
        json!({"job-name": "backup-123"}),
        vec![owner("Job", "backup-123", "uid-job", true)],
    );
    let w = resolve(vec![], vec![ResourceKind::Pod], &p).await;
    assert_eq!((w.kind.as_str(), w.name.as_str()), ("Job", "backup-123"));
}

/// The same checks on what the owner watches keep: the ReplicaSet and Deployment are only in
/// the watches (a read finds nothing), and a forged reference fails as it does when read.
#[tokio::test]
async fn owners_answered_by_the_watches_are_checked_the_same_way() {
    let resolve_watched = |world: Vec<Value>, pod: Pod| async move {
        let of = |kind: &str| -> Vec<Value> {
            world
                .iter()
                .filter(|o| o["kind"] == kind)
                .cloned()
                .collect()
        };
        let owners =
            crate::cluster::WatchedOwners::from_objects(&of("ReplicaSet"), &of("Deployment"));
        let read = Objects {
            objects: of("StatefulSet"),
            held: all_held(),
        };
        let recent =
            crate::cluster::RecentReads::new(std::sync::Arc::new(read)).with_owners(owners);
        resolve_workload(&recent, &pod).await.unwrap()
    };
    let web = || {
        pod(
            web_labels(),
            vec![owner("ReplicaSet", "web-5d8f7", "uid-rs", true)],
        )
    };
    let w = resolve_watched(deployment_world(), web()).await;
    assert_eq!((w.kind.as_str(), w.name.as_str()), ("Deployment", "web"));

    let other_hash = pod(
        json!({"app": "web", "pod-template-hash": "other"}),
        vec![owner("ReplicaSet", "web-5d8f7", "uid-rs", true)],
    );
    assert_eq!(
        resolve_watched(deployment_world(), other_hash).await.kind,
        "Pod"
    );

    let other_uid = pod(
        web_labels(),
        vec![owner("ReplicaSet", "web-5d8f7", "uid-other", true)],
    );
    assert_eq!(
        resolve_watched(deployment_world(), other_uid).await.kind,
        "Pod"
    );

    let mut forged = deployment_world();
    forged[1]["metadata"]["ownerReferences"] =
        json!([owner("Deployment", "web", "uid-forged", true)]);
    let w = resolve_watched(forged, web()).await;
    assert_eq!(
        (w.kind.as_str(), w.name.as_str()),
        ("ReplicaSet", "web-5d8f7")
    );

    let mut unselected = deployment_world();
    unselected[0]["spec"]["selector"] = json!({"matchLabels": {"app": "api"}});
    let w = resolve_watched(unselected, web()).await;
    assert_eq!(
        w.kind, "ReplicaSet",
        "a Deployment that does not select the Pod is not its owner"
    );
}

//! The dump reader on the bundled dump, on the broken inputs a user will hand it, and on the
//! synthetic dumps the benchmarks generate.

use std::path::{Path, PathBuf};

use sre_e2e::synth::{self, Spec};
use sre_operator::cluster::{
    Cluster, ClusterError, DumpCluster, Involved, LogRequest, ResourceKind, node_usage, typed,
};
use sre_operator::crd::FailureClass;
use sre_operator::policy::{PolicySet, default_policy};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dump")
}

fn load_err(dir: &Path) -> String {
    match DumpCluster::load(dir) {
        Ok(_) => panic!("{} loaded, expected an error", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn reads_every_kind_kubectl_dumps() {
    let dump = DumpCluster::load(fixture()).unwrap();
    let nodes = dump.list(ResourceKind::Node, None).await.unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes[0]["kind"], "Node", "items get their kind back");
    assert_eq!(nodes[0]["apiVersion"], "v1");
    let payment = dump
        .get(ResourceKind::Deployment, Some("production"), "payment")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payment["apiVersion"], "apps/v1");
    assert!(
        dump.get(ResourceKind::Service, Some("default"), "redis")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        dump.get(ResourceKind::Service, Some("default"), "redis-master")
            .await
            .unwrap()
            .is_some()
    );
    let namespaces: Vec<&str> = dump.namespaces().collect();
    for ns in [
        "default",
        "production",
        "shop",
        "batch",
        "billing",
        "web",
        "data",
        "kube-system",
    ] {
        assert!(namespaces.contains(&ns), "{ns} missing from {namespaces:?}");
    }
    assert!(
        dump.get(ResourceKind::Namespace, None, "billing")
            .await
            .unwrap()
            .is_some()
    );
    let pods = dump.pods(None).await.unwrap();
    assert_eq!(pods.len(), 39);
    assert_eq!(dump.pods(Some("default")).await.unwrap().len(), 5);
}

#[tokio::test]
async fn serves_logs_by_container_with_a_tail_and_a_note_for_previous() {
    let dump = DumpCluster::load(fixture()).unwrap();
    let pod = dump
        .pods(Some("default"))
        .await
        .unwrap()
        .into_iter()
        .find(|p| {
            p.metadata
                .name
                .as_deref()
                .unwrap()
                .starts_with("critical-app-")
        })
        .unwrap();
    let request = LogRequest {
        namespace: "default".into(),
        pod: pod.metadata.name.clone().unwrap(),
        container: None,
        previous: true,
        tail_lines: Some(100),
    };
    let logs = dump.logs(&request).await.unwrap();
    assert_eq!(logs.container, "app");
    assert!(
        logs.text.contains("Connection refused to redis:6379"),
        "{}",
        logs.text
    );
    assert!(logs.note.unwrap().contains("only the current log"));
    let two = dump
        .logs(&LogRequest {
            tail_lines: Some(2),
            previous: false,
            ..request.clone()
        })
        .await
        .unwrap();
    assert_eq!(two.text.trim_end().lines().count(), 2);
    assert!(two.note.is_none());
    let err = dump
        .logs(&LogRequest {
            container: Some("sidecar".into()),
            ..request.clone()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ClusterError::Logs { .. }));
    assert!(
        err.to_string()
            .contains("no log for container \"sidecar\"; the dump has logs for app"),
        "{err}"
    );
    let err = dump
        .logs(&LogRequest {
            pod: "ghost".into(),
            ..request
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("pod default/ghost is not in the dump"),
        "{err}"
    );
}

#[tokio::test]
async fn events_and_node_usage() {
    let dump = DumpCluster::load(fixture()).unwrap();
    let pod = dump
        .pods(Some("production"))
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.metadata.name.as_deref().unwrap().starts_with("payment-"))
        .unwrap();
    let events = dump.events_for(Involved::pod(&pod)).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("FailedScheduling"))
    );
    let stale = dump
        .events_for(Involved {
            uid: Some("not-this-pod"),
            ..Involved::pod(&pod)
        })
        .await
        .unwrap();
    assert!(
        stale.is_empty(),
        "events of another Pod with the same name are not this Pod's"
    );

    let pods = dump.pods(None).await.unwrap();
    let mut free = Vec::new();
    for node in dump.list(ResourceKind::Node, None).await.unwrap() {
        let usage = node_usage(&typed(&node).unwrap(), &pods);
        free.push((usage.free.memory_bytes, usage.node));
    }
    free.sort();
    let (most_free, node) = free.last().unwrap();
    assert_eq!(node, "node-b");
    // 7921060Ki allocatable - 6522Mi requested = 1213.4Mi, as the fixture's README works out.
    assert_eq!(*most_free, 7921060 * 1024 - 6522 * 1024 * 1024);
}

fn scratch_dump() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("nodes.json"),
        r#"{"kind": "NodeList", "apiVersion": "v1", "items": []}"#,
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("shop")).unwrap();
    std::fs::write(
        dir.path().join("shop/pods.json"),
        r#"{"kind": "PodList", "apiVersion": "v1", "items": []}"#,
    )
    .unwrap();
    dir
}

#[test]
fn bad_input_is_an_error_naming_the_file() {
    let missing = Path::new("/nonexistent/dump");
    assert!(load_err(missing).starts_with("/nonexistent/dump: no such directory; pass the folder written by `kubectl cluster-info dump"));

    let empty = tempfile::tempdir().unwrap();
    assert!(load_err(empty.path()).contains("holds no cluster dump: expected nodes.json"));

    let d = scratch_dump();
    std::fs::write(
        d.path().join("shop/pods.json"),
        r#"{"kind": "PodList", "apiVersion": "v1", "items": [{"metad"#,
    )
    .unwrap();
    let err = load_err(d.path());
    assert!(
        err.contains("shop/pods.json: invalid JSON: EOF while parsing"),
        "{err}"
    );
    assert!(err.ends_with("(the file is truncated)"), "{err}");

    let d = scratch_dump();
    std::fs::write(
        d.path().join("shop/pods.json"),
        r#"{"kind": "ServiceList", "apiVersion": "v1", "items": []}"#,
    )
    .unwrap();
    assert!(
        load_err(d.path()).ends_with("shop/pods.json: expected a PodList, found a ServiceList")
    );

    let d = scratch_dump();
    std::fs::write(
        d.path().join("shop/services.json"),
        r#"{"kind": "ServiceList", "items": [{"kind": "Pod", "metadata": {"name": "x"}}]}"#,
    )
    .unwrap();
    assert!(
        load_err(d.path()).ends_with("shop/services.json: items[0] is a Pod, expected a Service")
    );

    let d = scratch_dump();
    std::fs::create_dir(d.path().join("shop/web-1")).unwrap();
    std::fs::write(
        d.path().join("shop/web-1/logs.txt"),
        "starting\npanic: boom\n",
    )
    .unwrap();
    let err = load_err(d.path());
    assert!(
        err.contains(
            "shop/web-1/logs.txt: no `==== START logs for container C of pod shop/web-1 ====` frame"
        ),
        "{err}"
    );

    let d = scratch_dump();
    std::fs::write(d.path().join("nodes.json"), "kind: NodeList\nitems: [}").unwrap();
    assert!(load_err(d.path()).contains("nodes.json: invalid JSON"));
}

#[tokio::test]
async fn yaml_dumps_and_missing_optional_files_load() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("shop")).unwrap();
    std::fs::write(
        d.path().join("shop/pods.yaml"),
        "apiVersion: v1\nkind: PodList\nitems:\n- metadata:\n    name: web-1\n  spec:\n    containers:\n    - name: web\n      image: nginx\n",
    )
    .unwrap();
    let dump = DumpCluster::load(d.path()).unwrap();
    let pods = dump.pods(Some("shop")).await.unwrap();
    assert_eq!(
        pods[0].metadata.namespace.as_deref(),
        Some("shop"),
        "namespace comes from the folder"
    );
    assert!(
        dump.list(ResourceKind::Node, None)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn secret_values_never_leave_the_reader() {
    let d = scratch_dump();
    std::fs::write(
        d.path().join("shop/secrets.json"),
        r#"{"kind": "SecretList", "items": [{"metadata": {"name": "db", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"password\":\"aHVudGVyMg==\"}}"}}, "data": {"password": "aHVudGVyMg=="}}]}"#,
    )
    .unwrap();
    let dump = DumpCluster::load(d.path()).unwrap();
    let secret = dump
        .get(ResourceKind::Secret, Some("shop"), "db")
        .await
        .unwrap()
        .unwrap();
    let text = secret.to_string();
    assert!(!text.contains("aHVudGVyMg=="), "{text}");
    assert_eq!(
        secret["data"]["password"], "<redacted>",
        "keys stay visible"
    );
}

#[test]
fn synth_plants_the_failure_classes_sre_operator_knows_in_their_order() {
    let planted: Vec<&str> = synth::Class::ALL.iter().map(|c| c.as_str()).collect();
    let known: Vec<&str> = FailureClass::DETECTED.iter().map(|c| c.as_str()).collect();
    assert_eq!(planted, known);
}

#[tokio::test]
async fn a_generated_dump_reads_back_with_exactly_the_planted_failures() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        namespaces: 4,
        pods: 120,
        failures: 7,
        seed: 7,
    };
    let written = synth::write(dir.path(), &spec).unwrap();
    assert_eq!(written.planted.len(), 7, "one of each class");
    let cluster = DumpCluster::load(dir.path()).unwrap();
    let pods = cluster.pods(None).await.unwrap();
    assert_eq!(pods.len(), written.pods);
    assert_eq!(cluster.namespaces().count(), 4);
    let reports =
        sre_operator::triage::triage(&cluster, &PolicySet::compile(&[default_policy()]).unwrap())
            .await
            .unwrap();
    let mut found: Vec<(String, FailureClass)> = reports
        .iter()
        .map(|r| (r.spec.pod.name.clone(), r.spec.failure.class))
        .collect();
    let mut want: Vec<(String, FailureClass)> = written
        .planted
        .iter()
        .map(|p| (p.pod.clone(), p.class.as_str().parse().unwrap()))
        .collect();
    found.sort();
    want.sort();
    assert_eq!(found, want);
    // Deterministic for a seed.
    let again = tempfile::tempdir().unwrap();
    let second = synth::write(again.path(), &spec).unwrap();
    assert_eq!(second.planted, written.planted);
    assert_eq!(
        std::fs::read(again.path().join("shop/pods.json")).unwrap(),
        std::fs::read(dir.path().join("shop/pods.json")).unwrap()
    );
}

/// A namespace whose quota refuses every Pod has an empty Pod list: triage still looks at its
/// ReplicaSets there, and reports the one that cannot create its Pods.
#[tokio::test]
async fn a_namespace_with_no_pods_still_reports_a_replicaset_refused_by_its_quota() {
    let dir = tempfile::tempdir().unwrap();
    let ns = dir.path().join("capped");
    std::fs::create_dir(&ns).unwrap();
    std::fs::write(ns.join("pods.json"), "{\n    \"kind\": \"PodList\",\n    \"apiVersion\": \"v1\",\n    \"metadata\": {\n        \"resourceVersion\": \"4120\"\n    },\n    \"items\": []\n}\n").unwrap();
    std::fs::write(
        ns.join("events.json"),
        r#"{"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": []}"#,
    )
    .unwrap();
    let replica_set = serde_json::json!({
        "metadata": {
            "name": "api-6c9f8d7b5", "namespace": "capped", "uid": "0b5c6a1e-rs",
            "labels": {"app": "api", "pod-template-hash": "6c9f8d7b5"}
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "api", "pod-template-hash": "6c9f8d7b5"}},
            "template": {
                "metadata": {"labels": {"app": "api", "pod-template-hash": "6c9f8d7b5"}},
                "spec": {"containers": [{"name": "api", "image": "registry.example/api:1.4.2",
                    "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}}]}
            }
        },
        "status": {
            "replicas": 0,
            "observedGeneration": 1,
            "conditions": [{
                "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                "lastTransitionTime": "2026-12-06T10:02:11Z",
                "message": "pods \"api-6c9f8d7b5-x2k4p\" is forbidden: exceeded quota: compute, requested: requests.cpu=500m, used: requests.cpu=2, limited: requests.cpu=2"
            }]
        }
    });
    std::fs::write(
        ns.join("replicasets.json"),
        serde_json::to_string_pretty(&serde_json::json!({"kind": "ReplicaSetList", "apiVersion": "apps/v1", "metadata": {}, "items": [replica_set]})).unwrap(),
    )
    .unwrap();
    let cluster = DumpCluster::load(dir.path()).unwrap();
    let reports =
        sre_operator::triage::triage(&cluster, &PolicySet::compile(&[default_policy()]).unwrap())
            .await
            .unwrap();
    let found: Vec<(&str, FailureClass)> = reports
        .iter()
        .map(|r| (r.spec.pod.namespace.as_str(), r.spec.failure.class))
        .collect();
    assert_eq!(found, [("capped", FailureClass::FailedCreate)]);
}

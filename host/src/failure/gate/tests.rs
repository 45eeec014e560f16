//! The gate is a superset of detection: every Pod of the fixture dump and of every scenario
//! that `detect` finds failing passes `may_be_failing`, read through the dump reader the CLI uses.

use std::path::{Path, PathBuf};

use crate::cluster::{Cluster, DumpCluster, Involved};
use crate::failure::{awaits_scheduler, detect, may_be_failing};
use kube::ResourceExt;

/// The fixture dump and each scenario's dump.
fn dumps() -> Vec<PathBuf> {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests");
    let mut dumps = vec![tests.join("fixtures/dump")];
    let mut scenarios: Vec<PathBuf> = std::fs::read_dir(tests.join("scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| {
            if p.join("dump").is_dir() {
                p.join("dump")
            } else {
                p
            }
        })
        .collect();
    scenarios.sort();
    assert!(!scenarios.is_empty());
    dumps.extend(scenarios);
    dumps
}

#[tokio::test]
async fn every_pod_detection_finds_failing_passes_the_gate() {
    let (mut failing, mut checked) = (0, 0);
    for dir in dumps() {
        let cluster = DumpCluster::load(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for pod in cluster.pods(None).await.unwrap() {
            let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
            let events = cluster.events_for(Involved::pod(&pod)).await.unwrap();
            let detections = detect(&pod, &events);
            checked += 1;
            if detections.is_empty() {
                continue;
            }
            failing += 1;
            assert!(
                may_be_failing(&pod),
                "{}: {namespace}/{name} is detected as {:?} but the gate drops it",
                dir.display(),
                detections.iter().map(|d| d.class).collect::<Vec<_>>()
            );
        }
    }
    // The dumps hold failing Pods of every kind, not only healthy ones.
    assert!(failing > 20 && checked > failing, "{failing} of {checked}");
}

/// A Pod whose failure only its events show is never one that waits for the scheduler (whose
/// events the Pod controller does not read), over every Pod of the dumps.
#[tokio::test]
async fn no_pod_whose_events_show_a_failure_awaits_the_scheduler() {
    let mut only_events = 0;
    for dir in dumps() {
        let cluster = DumpCluster::load(&dir).unwrap();
        for pod in cluster.pods(None).await.unwrap() {
            let events = cluster.events_for(Involved::pod(&pod)).await.unwrap();
            if detect(&pod, &events).is_empty() || !detect(&pod, &[]).is_empty() {
                continue;
            }
            only_events += 1;
            assert!(
                !awaits_scheduler(&pod),
                "{}: {}/{} shows its failure in events but is taken as waiting for the scheduler",
                dir.display(),
                pod.namespace().unwrap_or_default(),
                pod.name_any()
            );
        }
    }
    assert!(only_events > 0, "the dumps hold failures only events show");
}

#[test]
fn a_new_pod_awaits_the_scheduler_until_its_verdict() {
    let pod = |status: serde_json::Value, node: Option<&str>| -> k8s_openapi::api::core::v1::Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop"},
            "spec": {"containers": [{"name": "web", "image": "web:1"}], "nodeName": node},
            "status": status
        }))
        .unwrap()
    };
    assert!(awaits_scheduler(&pod(
        serde_json::json!({"phase": "Pending"}),
        None
    )));
    let unschedulable = serde_json::json!({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/3 nodes are available: 3 Insufficient memory."}]});
    assert!(!awaits_scheduler(&pod(unschedulable, None)));
    let gated = serde_json::json!({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]});
    assert!(!awaits_scheduler(&pod(gated, None)));
    assert!(!awaits_scheduler(&pod(
        serde_json::json!({"phase": "Pending"}),
        Some("node-1")
    )));
}

//! The gate is a superset of detection: every Pod of the fixture dump and of every scenario
//! that `detect` finds failing passes `may_be_failing`, read through the dump reader the CLI uses.

use std::path::{Path, PathBuf};

use crate::cluster::{Cluster, DumpCluster, Involved};
use crate::failure::{detect, may_be_failing};
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

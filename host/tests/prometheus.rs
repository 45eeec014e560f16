//! The prometheus plugin and the rules brain against a real Prometheus (built from its pinned
//! module) scraping a loopback exporter that serves the kubelet's container series: `diagnose`
//! on the bundled dump sizes the OOM-killed worker's limit from its observed working-set peak and
//! calls its steady climb a leak (the raise offered as a stop-gap), and blames the failing
//! liveness probe of a CPU-limited container on throttling, with the queries in the evidence.
//! The same climb in runs of hours gets no larger limit (the restart is its own stop-gap).
//! Without Prometheus the same dump is sized by doubling, and the report says so.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use sre_e2e::prometheus::{Exporter, Prometheus, container_labels};

const MI: f64 = 1048576.0;
const WORKER: (&str, &str, &str) = ("batch", "report-worker-5b9d8c7f66-z7vqc", "report-worker");
const SEARCH: (&str, &str, &str) = ("web", "search-85d6fb7c49-mq8jz", "search");

/// The bundled dump, with container `search` given a 500m CPU limit in its Pod and its workload,
/// and the report worker's JVM heap flag gone (a heap above the limit explains a climb by itself).
fn test_dump() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    support::copy_dir(
        &support::repo_root().join("tests/fixtures/dump"),
        dir.path(),
    )
    .unwrap();
    for file in [
        "pods.json",
        "replicasets.json",
        "deployments.json",
        &format!("{}/logs.txt", WORKER.1),
    ] {
        let path = dir.path().join("batch").join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace(" -Xmx768m", "").replace("-Xmx768m", "")).unwrap();
    }
    for file in ["pods.json", "replicasets.json", "deployments.json"] {
        let path = dir.path().join("web").join(file);
        let mut list: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        fn limit(v: &mut Value) {
            match v {
                Value::Object(map) => {
                    if map.get("name") == Some(&json!("search")) && map.contains_key("image") {
                        map.entry("resources").or_insert(json!({}))["limits"]["cpu"] =
                            json!("500m");
                    }
                    map.values_mut().for_each(limit);
                }
                Value::Array(items) => items.iter_mut().for_each(limit),
                _ => {}
            }
        }
        limit(&mut list);
        std::fs::write(&path, serde_json::to_string_pretty(&list).unwrap()).unwrap();
    }
    dir
}

fn diagnose(dump: &Path, plugins: Option<&Path>) -> Vec<Value> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sre-operator"));
    cmd.args(["diagnose", "-o", "json", "--dump"]).arg(dump);
    if let Some(dir) = plugins {
        cmd.arg("--plugins").arg(dir);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    value["items"].as_array().cloned().unwrap_or_default()
}

fn report<'a>(reports: &'a [Value], pod: &str) -> &'a Value {
    reports
        .iter()
        .find(|r| r["spec"]["pod"]["name"] == pod)
        .unwrap_or_else(|| panic!("no report for {pod}"))
}

fn patched_value(report: &Value, path_end: &str) -> Value {
    report["status"]["suggestedPatch"]["patch"]
        .as_array()
        .unwrap()
        .iter()
        .find(|op| op["op"] == "replace" && op["path"].as_str().unwrap().ends_with(path_end))
        .map(|op| op["value"].clone())
        .unwrap_or(Value::Null)
}

fn evidence(report: &Value) -> String {
    report["status"]["findings"]["evidence"].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_size_the_oom_fix_spot_a_leak_and_blame_throttling() {
    let exporter = Exporter::start().await.unwrap();
    // The worker climbs 180Mi a second from 200Mi to 1100Mi, then restarts: every run a climb.
    exporter.add(
        "container_memory_working_set_bytes",
        container_labels(WORKER.0, WORKER.1, WORKER.2),
        Box::new(|t| (200.0 + (t.floor() % 6.0) * 180.0) * MI),
    );
    // search is throttled in 70% of its CFS periods, using half a core. Both counters step once
    // a second, together: any two scrapes then see 7 throttled periods in every 10, where counters
    // rounded apart would read 65% or 75% over the few samples the start of the window holds.
    let search = container_labels(SEARCH.0, SEARCH.1, SEARCH.2);
    exporter.add(
        "container_cpu_cfs_periods_total",
        search.clone(),
        Box::new(|t| t.floor() * 10.0),
    );
    exporter.add(
        "container_cpu_cfs_throttled_periods_total",
        search.clone(),
        Box::new(|t| t.floor() * 7.0),
    );
    exporter.add(
        "container_cpu_usage_seconds_total",
        search,
        Box::new(|t| t * 0.5),
    );
    let prometheus = Prometheus::start(&[exporter.addr]).await.unwrap();
    prometheus
        .wait_for(
            &format!(
                "count_over_time(container_memory_working_set_bytes{{pod=\"{}\"}}[1m])",
                WORKER.1
            ),
            14.0,
            Duration::from_secs(60),
        )
        .await
        .unwrap();

    let dump = test_dump();
    let plugins = tempfile::tempdir().unwrap();
    let defaults =
        std::fs::read_to_string(support::repo_root().join("deploy/plugins/plugins.yaml")).unwrap();
    std::fs::write(
        plugins.path().join("plugins.yaml"),
        format!(
            "{defaults}  - name: prometheus\n    world: tool\n    builtin: prometheus\n    limits: {{timeout: 5s}}\n    settings: {{url: '{url}', maxPoints: 11000}}\n    egress:\n      - url: '{url}/api/v1/'\n",
            url = prometheus.url
        ),
    )
    .unwrap();
    let reports = tokio::task::spawn_blocking({
        let (dump, plugins) = (dump.path().to_path_buf(), plugins.path().to_path_buf());
        move || diagnose(&dump, Some(&plugins))
    })
    .await
    .unwrap();

    let worker = report(&reports, WORKER.1);
    let text = evidence(worker);
    // Peak 1100Mi + 25% = 1375Mi, rounded up to 1408Mi.
    assert_eq!(
        patched_value(worker, "/resources/limits/memory"),
        json!("1408Mi"),
        "{worker:#}"
    );
    assert!(
        text.contains("peaked at 1.1Gi") || text.contains("peaked at 1100Mi"),
        "{text}"
    );
    assert!(
        text.contains("max_over_time(container_memory_working_set_bytes{namespace=\\\"batch\\\""),
        "{text}"
    );
    assert!(
        text.contains("sizing: the observed working-set peak"),
        "{text}"
    );
    assert!(text.contains("climbs steadily"), "{text}");
    let root_cause = worker["status"]["findings"]["rootCause"].as_str().unwrap();
    assert!(root_cause.contains("a leak"), "{root_cause}");
    let explanation = worker["status"]["suggestedPatch"]["explanation"]
        .as_str()
        .unwrap();
    assert!(explanation.starts_with("Stop-gap only:"), "{explanation}");
    assert!(
        worker["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Find and fix the leak"),
        "{worker:#}"
    );
    let tools: Vec<&str> = worker["status"]["reasoningChain"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["action"]["tool"].as_str())
        .collect();
    assert!(tools.contains(&"container_memory_history"), "{tools:?}");

    let search = report(&reports, SEARCH.1);
    let text = evidence(search);
    assert!(text.contains("CPU-throttled in up to 70%"), "{text}");
    assert!(
        text.contains("container_cpu_cfs_throttled_periods_total"),
        "{text}"
    );
    assert_eq!(
        patched_value(search, "/resources/limits/cpu"),
        json!("1"),
        "{search:#}"
    );
    let root_cause = search["status"]["findings"]["rootCause"].as_str().unwrap();
    assert!(
        root_cause.contains("throttled by its 500m CPU limit"),
        "{root_cause}"
    );

    // The same climb in runs of hours: the restart is the stop-gap, so no larger limit.
    let hours = test_dump();
    let pods = hours.path().join("batch/pods.json");
    let text = std::fs::read_to_string(&pods).unwrap();
    let started = "\"startedAt\": \"2026-11-25T09:43:55Z\"";
    assert_eq!(text.matches(started).count(), 1, "the worker's killed run");
    std::fs::write(
        &pods,
        text.replace(started, "\"startedAt\": \"2026-11-25T06:43:55Z\""),
    )
    .unwrap();
    let reports = tokio::task::spawn_blocking({
        let (dump, plugins) = (hours.path().to_path_buf(), plugins.path().to_path_buf());
        move || diagnose(&dump, Some(&plugins))
    })
    .await
    .unwrap();
    let worker = report(&reports, WORKER.1);
    assert_eq!(worker["status"]["phase"], "NoFix", "{worker:#}");
    assert!(worker["status"]["suggestedPatch"].is_null(), "{worker:#}");
    let root_cause = worker["status"]["findings"]["rootCause"].as_str().unwrap();
    assert!(root_cause.contains("a leak"), "{root_cause}");
    let message = worker["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Find and fix the leak")
            && message.contains("would only move the next kill later"),
        "{worker:#}"
    );
    assert!(
        evidence(worker).contains("the killed run lasted 3h"),
        "{worker:#}"
    );

    // Without Prometheus: the same dump, sized by doubling, and the report says which it used.
    let reports = tokio::task::spawn_blocking({
        let dump = dump.path().to_path_buf();
        move || diagnose(&dump, None)
    })
    .await
    .unwrap();
    let worker = report(&reports, WORKER.1);
    assert_eq!(
        patched_value(worker, "/resources/limits/memory"),
        json!("512Mi")
    );
    assert!(
        evidence(worker).contains("sizing: 2x the old limit (Prometheus is not configured"),
        "{worker:#}"
    );
}

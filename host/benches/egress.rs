//! Plugin egress costs: a Prometheus tool call end to end (the prometheus plugin in a fresh
//! instance, its request through the host's egress checks, a real Prometheus on loopback, the
//! answer summarised) against the same query sent straight from the host, and the grant check
//! alone, per request. `cargo bench -p sre-operator --bench egress` (builds Prometheus from its
//! pinned module on first use, like the tests).

mod common;
use common::measure;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sre_e2e::prometheus::{Exporter, Prometheus, container_labels};
use sre_operator::cluster::DumpCluster;
use sre_operator::plugin::egress::{Egress, GrantSpec};
use sre_operator::plugin::{ClusterAccess, PluginSet, Runtime};

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pod = "report-worker-5b9d8c7f66-z7vqc";
    let (_exporter, prometheus) = rt.block_on(async {
        let exporter = Exporter::start().await.unwrap();
        exporter.add(
            "container_memory_working_set_bytes",
            container_labels("batch", pod, "report-worker"),
            Box::new(|t| (200.0 + (t.floor() % 6.0) * 100.0) * 1048576.0),
        );
        let prometheus = Prometheus::start(&[exporter.addr]).await.unwrap();
        prometheus
            .wait_for(
                &format!(
                    "count_over_time(container_memory_working_set_bytes{{pod=\"{pod}\"}}[1m])"
                ),
                5.0,
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        (exporter, prometheus)
    });

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plugins.yaml"),
        format!(
            "plugins:\n  - name: prometheus\n    world: tool\n    builtin: prometheus\n    limits: {{timeout: 5s}}\n    settings: {{url: '{url}'}}\n    egress:\n      - url: '{url}/api/v1/'\n",
            url = prometheus.url
        ),
    )
    .unwrap();
    let runtime = Runtime::new(None).unwrap();
    let set = PluginSet::from_dir(&runtime, dir.path()).unwrap();
    assert!(set.refusals().is_empty(), "{:?}", set.refusals());
    let dump = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dump");
    let access = rt.block_on(async {
        ClusterAccess::new(Arc::new(DumpCluster::load(dump).unwrap()), "batch")
    });

    let query = format!("container_memory_working_set_bytes{{pod=\"{pod}\"}}");
    let instant = json!({"query": query});
    let answer = rt
        .block_on(set.invoke("query_prometheus", &instant, access.clone()))
        .unwrap();
    assert!(answer.contains("report-worker"), "{answer}");
    let plugin = measure(
        "query_prometheus, instant (plugin + egress + Prometheus)",
        300,
        || {
            rt.block_on(set.invoke("query_prometheus", &instant, access.clone()))
                .unwrap();
        },
    );
    let direct = measure("the same query sent straight from the host", 300, || {
        rt.block_on(prometheus.query(&query)).unwrap();
    });
    let history = json!({"pod": pod, "container": "report-worker", "minutes": 60});
    measure("container_memory_history, 60 min (2 queries)", 100, || {
        rt.block_on(set.invoke("container_memory_history", &history, access.clone()))
            .unwrap();
    });
    println!(
        "plugin + sandbox + egress over a direct query: {:.2}x ({:.0?} more per call)",
        plugin.as_secs_f64() / direct.as_secs_f64(),
        plugin.saturating_sub(direct)
    );

    let grants: Vec<GrantSpec> = serde_yaml::from_str(
        "- {url: 'http://prometheus-k8s.monitoring.svc:9090/api/v1/', methods: [GET, POST]}\n- {url: 'https://thanos.example.com/api/v1/', ipRanges: [10.0.0.0/8]}\n",
    )
    .unwrap();
    let egress = Egress::parse(&grants, None).unwrap();
    let method = http::Method::GET;
    let uri: http::Uri = "https://thanos.example.com/api/v1/query?query=up"
        .parse()
        .unwrap();
    let n = 200_000;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(egress.check("prometheus", &method, std::hint::black_box(&uri)))
            .unwrap();
    }
    println!(
        "the grant check alone (2 grants, the second matching): {:.0?} per request",
        start.elapsed() / n
    );
}

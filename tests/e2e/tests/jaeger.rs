//! The Jaeger that tracing e2e tests export to (`sre_e2e::jaeger`): it starts on loopback, takes
//! one OTLP/HTTP JSON export request posted by hand, and its query API shows the spans back with
//! their service, names, parent, kind and attributes. Jaeger is built from its pinned module the
//! first time (`tests/cluster/build-tool.sh jaeger`, minutes); without Go that fails, naming it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use serde_json::json;
use sre_e2e::jaeger::Jaeger;

const TRACE: &str = "5b8efff798038103d269b633813fc60c";
const ROOT: &str = "eee19b7ec3c1b174";
const CHILD: &str = "0a1b2c3d4e5f6071";

fn attr(key: &str, value: serde_json::Value) -> serde_json::Value {
    json!({ "key": key, "value": value })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_json_spans_come_back_through_the_query_api() -> Result<()> {
    let jaeger = Jaeger::start().await?;
    for url in [
        &jaeger.otlp_endpoint,
        &jaeger.otlp_grpc_endpoint,
        &jaeger.query_url,
    ] {
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    }
    assert_eq!(
        jaeger.otlp_env(),
        vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
                jaeger.otlp_endpoint.clone()
            ),
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL".to_string(),
                "http/protobuf".to_string()
            ),
        ]
    );
    assert!(
        jaeger.services().await?.is_empty(),
        "a fresh Jaeger already has services (its own spans?): {:?}",
        jaeger.services().await?
    );

    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as u64;
    let ns = |t: u64| t.to_string();
    // One export request as an SDK sends it: a server span with a client child span.
    let request = json!({
        "resourceSpans": [{
            "resource": { "attributes": [
                attr("service.name", json!({ "stringValue": "sre-operator-smoke" })),
                attr("service.version", json!({ "stringValue": "0.0.0-test" })),
            ]},
            "scopeSpans": [{
                "scope": { "name": "sre_operator::controller" },
                "spans": [
                    {
                        "traceId": TRACE, "spanId": ROOT, "name": "reconcile",
                        "kind": 2,
                        "startTimeUnixNano": ns(now - 50_000_000),
                        "endTimeUnixNano": ns(now),
                        "attributes": [
                            attr("k8s.namespace.name", json!({ "stringValue": "shop" })),
                            attr("sre.report", json!({ "stringValue": "deployment-web-oomkilled" })),
                            attr("attempt", json!({ "intValue": "3" })),
                            attr("dry_run", json!({ "boolValue": true })),
                        ],
                    },
                    {
                        "traceId": TRACE, "spanId": CHILD, "parentSpanId": ROOT,
                        "name": "kube.patch", "kind": 3,
                        "startTimeUnixNano": ns(now - 40_000_000),
                        "endTimeUnixNano": ns(now - 30_000_000),
                        "attributes": [attr("http.response.status_code", json!({ "intValue": "200" }))],
                    },
                ],
            }],
        }],
    });
    jaeger.post_otlp_json(&request).await?;

    let spans = jaeger
        .wait_for_spans("sre-operator-smoke", Duration::from_secs(20), |s| {
            s.len() == 2
        })
        .await?;
    let root = spans.iter().find(|s| s.name == "reconcile").unwrap();
    let child = spans.iter().find(|s| s.name == "kube.patch").unwrap();
    assert_eq!(root.trace_id, TRACE);
    assert_eq!(root.span_id, ROOT);
    assert_eq!(root.service, "sre-operator-smoke");
    assert_eq!(root.parent, None);
    assert_eq!(root.duration_us, 50_000);
    assert_eq!(root.start_us, (now - 50_000_000) / 1000);
    assert_eq!(root.tag("k8s.namespace.name"), Some(&json!("shop")));
    assert_eq!(
        root.tag("sre.report"),
        Some(&json!("deployment-web-oomkilled"))
    );
    assert_eq!(root.tag("attempt"), Some(&json!(3)));
    assert_eq!(root.tag("dry_run"), Some(&json!(true)));
    assert_eq!(root.tag("span.kind"), Some(&json!("server")));
    assert_eq!(
        root.tag("otel.scope.name"),
        Some(&json!("sre_operator::controller"))
    );
    assert_eq!(child.parent.as_deref(), Some(ROOT));
    assert_eq!(child.tag("span.kind"), Some(&json!("client")));
    assert_eq!(child.tag("http.response.status_code"), Some(&json!(200)));

    // The other helpers agree.
    assert_eq!(jaeger.services().await?, vec!["sre-operator-smoke"]);
    let patch = jaeger
        .wait_for_span("sre-operator-smoke", "kube.patch", Duration::from_secs(5))
        .await?;
    assert_eq!(patch.span_id, CHILD);
    // A span that never comes fails with what was there.
    let err = jaeger
        .wait_for_span("sre-operator-smoke", "never", Duration::from_millis(500))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kube.patch") && err.contains("reconcile"),
        "{err}"
    );
    Ok(())
}

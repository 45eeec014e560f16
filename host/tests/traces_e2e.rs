//! Traces, end to end, into a real Jaeger (v1.75.0, built from its Go module) over OTLP/HTTP:
//!
//! - `sre-operator run` on a loopback control plane, with `OTEL_EXPORTER_OTLP_ENDPOINT` set,
//!   exports a `reconcile` span naming the report a crash-looping Pod opened, the report's
//!   `investigation` span (class, brain, phase) and its `tool_call` children (plugin, tool,
//!   outcome, bytes), all in the report's trace;
//! - `diagnose` with a model exports `model_call` spans with the model and the tokens the
//!   endpoint counted, under the investigation that made them;
//! - an endpoint the exporter cannot use stops the operator before it does anything, naming the
//!   variable.

mod support;

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use sre_e2e::jaeger::{Jaeger, Span};
use sre_e2e::{demo, fault};
use support::operator::{Operator, operator_setup, report_api, wait_phase};

const NS: &str = "shop";
const REPORT: &str = "deployment-worker-crashloopbackoff";

fn tag_str<'a>(span: &'a Span, key: &str) -> &'a str {
    span.tag(key).and_then(Value::as_str).unwrap_or_default()
}

fn tag_u64(span: &Span, key: &str) -> u64 {
    span.tag(key)
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_exports_a_trace_per_report_with_its_investigation_and_tool_calls()
-> Result<()> {
    let Some(cluster) = support::cluster_with_policy("traces-e2e", NS, json!({})).await? else {
        return Ok(());
    };
    let jaeger = Jaeger::start().await?;
    let client = cluster.client();
    let d = demo::deployment(
        "worker",
        json!({ "app": "worker" }),
        Some(fault::CRASHLOOP),
        json!([]),
        json!({}),
    );
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &serde_json::from_value(d)?)
        .await?;
    // The crash's log, for the tool that reads it.
    cluster
        .set_logs(
            NS,
            None,
            "app",
            "starting worker",
            "starting worker\npanic: cannot open /etc/worker/config.yaml: no such file or directory",
        )
        .await?;
    let mut setup = operator_setup(&cluster).await?;
    setup.env.push((
        "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
        jaeger.otlp_endpoint.clone(),
    ));
    setup
        .env
        .push(("OTEL_SERVICE_NAME".into(), "sre-operator-e2e".into()));
    let op = Operator::start(&cluster, &setup, "sre-operator-traces-0", NS, false)?;
    op.await_ready(Duration::from_secs(60))?;
    let reports = report_api(&client, NS);
    wait_phase(
        &reports,
        REPORT,
        &["AwaitingApproval", "NoFix"],
        Duration::from_secs(120),
        &op,
    )
    .await?;

    let spans = jaeger
        .wait_for_spans("sre-operator-e2e", Duration::from_secs(30), |spans| {
            spans
                .iter()
                .any(|s| s.name == "investigation" && tag_str(s, "report") == REPORT)
                && spans.iter().any(|s| s.name == "tool_call")
                && spans
                    .iter()
                    .any(|s| s.name == "reconcile" && tag_str(s, "kind") == "Pod")
        })
        .await?;
    let investigation = spans
        .iter()
        .find(|s| s.name == "investigation" && tag_str(s, "report") == REPORT)
        .unwrap();
    ensure!(tag_str(investigation, "namespace") == NS);
    ensure!(tag_str(investigation, "class") == "CrashLoopBackOff");
    ensure!(tag_str(investigation, "brain") == "rules");
    ensure!(
        ["AwaitingApproval", "NoFix"].contains(&tag_str(investigation, "phase")),
        "{:?}",
        investigation.tags
    );
    // The investigation runs in the report's reconcile: same trace, reconcile as parent.
    let parent = spans
        .iter()
        .find(|s| Some(&s.span_id) == investigation.parent.as_ref())
        .context("the investigation's parent span")?;
    ensure!(parent.name == "reconcile", "{}", parent.name);
    ensure!(tag_str(parent, "kind") == "DiagnosticReport");
    ensure!(tag_str(parent, "report") == REPORT);
    // Its tool calls are its children, with the plugin, the outcome and the answer's size.
    let tools: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "tool_call" && s.parent.as_ref() == Some(&investigation.span_id))
        .collect();
    ensure!(!tools.is_empty(), "no tool_call under the investigation");
    for t in &tools {
        ensure!(t.trace_id == investigation.trace_id);
        ensure!(!tag_str(t, "tool").is_empty() && !tag_str(t, "plugin").is_empty());
        ensure!(!tag_str(t, "outcome").is_empty(), "{:?}", t.tags);
    }
    ensure!(
        tools
            .iter()
            .any(|t| tag_str(t, "outcome") == "ok" && tag_u64(t, "bytes") > 0),
        "no successful tool call with its size: {:?}",
        tools.iter().map(|t| &t.tags).collect::<Vec<_>>()
    );
    // The Pod's reconcile names the report it opened.
    ensure!(
        spans.iter().any(|s| s.name == "reconcile"
            && tag_str(s, "kind") == "Pod"
            && tag_str(s, "report") == REPORT),
        "no Pod reconcile naming {REPORT}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_calls_are_spans_with_the_model_and_the_tokens() -> Result<()> {
    let jaeger = Jaeger::start().await?;
    // An answer that is not the final JSON: the brain asks once more, then gives up. Two model
    // calls, each with the usage the endpoint reported.
    let model = support::openai::serve(vec![(
        200,
        json!({
            "id": "c1", "object": "chat.completion", "created": 0, "model": "trace-model",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "not json"}}],
            "usage": {"prompt_tokens": 321, "completion_tokens": 12, "total_tokens": 333}
        }),
    )])
    .await;
    let mut diagnose = Command::new(env!("CARGO_BIN_EXE_sre-operator"));
    diagnose
        .args(["diagnose", "--dump"])
        .arg(support::repo_root().join("tests/scenarios/config-missing-configmap/dump"))
        .args(["--brain", "openai", "--model", "trace-model"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &jaeger.otlp_endpoint)
        .env("OTEL_SERVICE_NAME", "sre-operator-diagnose")
        .env("OPENAI_API_KEY", "sk-test-not-a-secret")
        .env("OPENAI_BASE_URL", &model.base_url);
    // The scripted model answers on this test's runtime: run the command beside it.
    let out = tokio::task::spawn_blocking(move || diagnose.output()).await??;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spans = jaeger
        .wait_for_spans("sre-operator-diagnose", Duration::from_secs(30), |spans| {
            spans.iter().filter(|s| s.name == "model_call").count() >= 2
        })
        .await?;
    let investigation = spans
        .iter()
        .find(|s| s.name == "investigation")
        .context("the investigation span")?;
    ensure!(tag_str(investigation, "model") == "trace-model");
    ensure!(tag_str(investigation, "phase") == "Failed");
    for call in spans.iter().filter(|s| s.name == "model_call") {
        ensure!(tag_str(call, "model") == "trace-model", "{:?}", call.tags);
        ensure!(tag_u64(call, "prompt_tokens") == 321, "{:?}", call.tags);
        ensure!(tag_u64(call, "completion_tokens") == 12, "{:?}", call.tags);
        ensure!(call.parent.as_ref() == Some(&investigation.span_id));
    }
    // Nothing secret rides along: the API key is in no span.
    let all = serde_json::to_string(&spans.iter().map(|s| &s.raw).collect::<Vec<_>>())?;
    ensure!(!all.contains("sk-test-not-a-secret"));
    Ok(())
}

#[test]
fn an_endpoint_the_exporter_cannot_use_stops_the_operator_naming_the_variable() {
    for (vars, says) in [
        (
            vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
            "OTEL_EXPORTER_OTLP_ENDPOINT must be an http:// or https:// URL",
        ),
        (
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
            "OTEL_EXPORTER_OTLP_PROTOCOL=\"grpc\": this build exports traces over OTLP/HTTP",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sre-operator"))
            .args(["diagnose", "--dump"])
            .arg(support::repo_root().join("tests/fixtures/dump"))
            .envs(vars)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(out.stdout.is_empty(), "nothing ran");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: ") && err.contains(says), "{err}");
    }
}

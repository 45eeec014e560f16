//! Alertmanager in, end to end: a real Alertmanager (built from its Go module) routes alerts
//! through a webhook receiver with a bearer token to `sre-operator run --alertmanager-token` on a
//! loopback control plane.
//!
//! - an alert that maps to no Pod failure (`HighErrorRate` on a healthy Deployment) opens one
//!   report of class Alert, investigated by the rules brain: the alert's summary, description
//!   and runbook are its evidence and recommendation;
//! - `KubePodCrashLooping` on a crash-looping Pod joins (or opens) the CrashLoopBackOff report of
//!   its Deployment: one report for the workload and class, whoever came first;
//! - sent twice, and flapping (resolved, then firing again), an alert never opens a second
//!   report; its resolution is recorded on the report;
//! - the webhook without the token, or with another, is refused.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use sre_e2e::alertmanager::Alertmanager;
use sre_e2e::{demo, fault};
use support::operator::{Operator, operator_setup, report_api, wait_phase};

const NS: &str = "shop";
const TOKEN: &str = "am-webhook-3b9f1c7d2e5a4b6c8d0e2f4a6b8c0d1e";
const ALERT_REPORT: &str = "deployment-web-alert";
const CRASH_REPORT: &str = "deployment-worker-crashloopbackoff";

fn alert(name: &str, labels: Value, annotations: Value, ends_at: Option<&str>) -> Value {
    let mut labels = labels;
    labels["alertname"] = json!(name);
    labels["namespace"] = json!(NS);
    let mut alert = json!({ "labels": labels, "annotations": annotations });
    if let Some(t) = ends_at {
        alert["endsAt"] = json!(t);
    }
    alert
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

async fn annotation_alerts(reports: &Api<kube::api::DynamicObject>, name: &str) -> Vec<Value> {
    reports
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|r| {
            r.metadata
                .annotations
                .and_then(|a| a.get("sre-operator.dev/alerts").cloned())
        })
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_alerts_open_or_join_one_report_per_workload_and_class() -> Result<()> {
    let Some(cluster) = support::cluster_with_policy("alertmanager-e2e", NS, json!({})).await?
    else {
        return Ok(());
    };
    let client = cluster.client();
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), NS);
    for (name, fault) in [("web", None), ("worker", Some(fault::CRASHLOOP))] {
        let d = demo::deployment(name, json!({ "app": name }), fault, json!([]), json!({}));
        deployments
            .create(&PostParams::default(), &serde_json::from_value(d)?)
            .await?;
    }

    let mut setup = operator_setup(&cluster).await?;
    setup
        .env
        .push(("SRE_OPERATOR_ALERTMANAGER_TOKEN".into(), TOKEN.into()));
    let op = Operator::start(&cluster, &setup, "sre-operator-alerts-0", NS, false)?;
    op.await_ready(Duration::from_secs(60))?;

    // The webhook refuses callers without the token.
    let port = op.port();
    for auth in [None, Some("Bearer not-the-token")] {
        let (status, _) = op.http_post(
            "/alertmanager",
            auth,
            r#"{"version":"4","status":"firing","alerts":[]}"#,
        )?;
        assert_eq!(status, 401, "a webhook call with {auth:?} was not refused");
    }
    let (status, body) = op.http_post(
        "/alertmanager",
        Some(&format!("Bearer {TOKEN}")),
        r#"{"version":"4","status":"firing","alerts":[]}"#,
    )?;
    assert_eq!(status, 200, "an empty payload with the token: {body}");

    let am = Alertmanager::start(&format!("http://127.0.0.1:{port}/alertmanager"), TOKEN).await?;
    let worker_pod = support::first_pod(&client, NS, "app=worker").await?;
    // kube-state-metrics' KubePodCrashLooping fires on a Pod that has been restarting for
    // minutes: send it once the Pod is past the policy-filter's threshold (3 restarts), as a
    // real one would be. Sent earlier, the filter drops it and Alertmanager repeats it only
    // after repeat_interval.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    sre_e2e::wait::until(
        &pods,
        &worker_pod,
        Duration::from_secs(60),
        |p: Option<&Pod>| {
            p.and_then(|p| p.status.as_ref()?.container_statuses.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.restart_count >= 3))
        },
    )
    .await?;
    let error_rate = alert(
        "HighErrorRate",
        json!({ "deployment": "web", "severity": "warning" }),
        json!({
            "summary": "web answers 7% of requests with 5xx",
            "description": "The error ratio of service web has been above 5% for 10 minutes.",
            "runbook_url": "https://runbooks.example.com/HighErrorRate",
        }),
        None,
    );
    let crash = alert(
        "KubePodCrashLooping",
        json!({ "pod": worker_pod, "container": "app", "severity": "warning" }),
        json!({ "description": format!("Pod {NS}/{worker_pod} (app) is in waiting state (reason: CrashLoopBackOff).") }),
        None,
    );
    // Each sent twice: a duplicate delivery.
    am.send(&json!([error_rate, crash])).await?;
    am.send(&json!([error_rate, crash])).await?;

    let reports = report_api(&client, NS);
    let report = wait_phase(
        &reports,
        ALERT_REPORT,
        &["NoFix", "Failed"],
        Duration::from_secs(90),
        &op,
    )
    .await
    .with_context(|| format!("alertmanager:\n{}", am.log_tail()))?;
    assert_eq!(report["spec"]["failure"]["class"], "Alert");
    assert_eq!(report["spec"]["failure"]["reason"], "HighErrorRate");
    let evidence = report["status"]["findings"]["evidence"].to_string();
    assert!(
        evidence.contains("alert summary: web answers 7% of requests with 5xx"),
        "{evidence}"
    );
    assert!(
        report["status"]["findings"]["rootCause"]
            .as_str()
            .unwrap_or_default()
            .contains("above 5% for 10 minutes"),
        "{report:#}"
    );
    assert!(
        report
            .to_string()
            .contains("https://runbooks.example.com/HighErrorRate"),
        "the runbook is not in the report"
    );

    // The crash loop: one report for the workload and class, carrying the alert.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !annotation_alerts(&reports, CRASH_REPORT)
        .await
        .iter()
        .any(|a| a["alertname"] == "KubePodCrashLooping")
    {
        if Instant::now() > deadline {
            bail!(
                "KubePodCrashLooping was not recorded on {CRASH_REPORT}\n{}",
                op.tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Flapping: resolved, then firing again. Still one report, the state recorded.
    let resolved = {
        let mut a = error_rate.clone();
        a["endsAt"] = json!(now_rfc3339());
        a
    };
    am.send(&json!([resolved])).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let kept = annotation_alerts(&reports, ALERT_REPORT).await;
        if kept
            .iter()
            .any(|a| a["alertname"] == "HighErrorRate" && a["status"] == "resolved")
        {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the resolution was not recorded: {kept:#?}\n{}\n{}",
                op.tail(),
                am.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut again = error_rate.clone();
    again["startsAt"] = json!(now_rfc3339());
    am.send(&json!([again])).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;

    let names: Vec<String> = reports
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter_map(|r| r.metadata.name)
        .collect();
    assert_eq!(
        names.iter().filter(|n| n.ends_with("-alert")).count(),
        1,
        "the alert opened more than one report: {names:?}"
    );
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("deployment-worker-"))
            .count(),
        1,
        "the crash loop has more than one report: {names:?}"
    );
    assert!(
        !op.log().contains(TOKEN),
        "the webhook token is in the operator's log"
    );
    Ok(())
}

//! Notifications out, against a loopback webhook that fails its first attempts: the message a
//! person gets (what failed, root cause, the patch in one line, the exact approve command), the
//! retries with back-off, what is given up, and that no secret value is carried.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sre_e2e::webhook::Webhook;
use sre_operator::crd::{DiagnosticReport, DiagnosticReportStatus};
use sre_operator::notify::{Notifier, message};
use sre_operator::plugin::egress::{SecretKeyRef, StaticSecrets};

const NS: &str = "shop";

fn report() -> DiagnosticReport {
    serde_json::from_value(json!({
        "apiVersion": "sre-operator.dev/v1alpha1",
        "kind": "DiagnosticReport",
        "metadata": {"name": "deployment-critical-app-crashloopbackoff", "namespace": NS},
        "spec": {
            "pod": {"namespace": NS, "name": "critical-app-7d4b9c6f5-h8x2m", "uid": "u1"},
            "workload": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "critical-app"},
            "failure": {"class": "CrashLoopBackOff", "reason": "CrashLoopBackOff", "container": "app"},
            "policy": "shop",
        },
    }))
    .expect("a report")
}

/// A report awaiting a decision whose root cause quotes a log line with a password in it (and a
/// terminal escape), as tenants' logs do.
fn awaiting() -> DiagnosticReportStatus {
    serde_json::from_value(json!({
        "phase": "AwaitingApproval",
        "findings": {
            "summary": "Container app crash-loops",
            "rootCause": "The app connects to redis:6379 (log: \u{1b}[31mDB_PASSWORD=hunter2-s3cret\u{1b}[0m), but there is no Service redis.",
            "evidence": [],
        },
        "suggestedPatch": {
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": NS, "name": "critical-app"},
            "patch": [
                {"op": "test", "path": "/spec/template/spec/containers/0/env/0/value", "value": "redis"},
                {"op": "replace", "path": "/spec/template/spec/containers/0/env/0/value", "value": "redis-master"},
            ],
            "explanation": "point REDIS_HOST at redis-master",
        },
    }))
    .expect("a status")
}

fn webhook_secret(url: String) -> (Arc<StaticSecrets>, SecretKeyRef) {
    let key = SecretKeyRef {
        name: "sre-operator-notify".into(),
        key: "slack".into(),
    };
    let secrets = StaticSecrets(HashMap::from([(key.clone(), url)]));
    (Arc::new(secrets), key)
}

#[test]
fn the_message_says_what_failed_why_the_patch_and_the_approve_command_without_secrets() {
    let report = report();
    let status = awaiting();
    let announced = message(&report, &status).expect("AwaitingApproval is announced");
    let text = announced["text"].as_str().unwrap();
    let all = announced.to_string();
    assert!(text.contains("shop/deployment-critical-app-crashloopbackoff needs a decision"));
    assert!(text.contains("Deployment critical-app in shop: CrashLoopBackOff"));
    assert!(text.contains("there is no Service redis"), "{text}");
    let digest = status.suggested_patch.as_ref().unwrap().digest();
    assert!(text.contains(&format!(
        "kubectl sre approve deployment-critical-app-crashloopbackoff -n shop --digest {digest}"
    )));
    assert!(
        all.contains(
            r#"/spec/template/spec/containers/0/env/0/value: \"redis\" → \"redis-master\""#
        ),
        "the patch in one line: {all}"
    );
    assert!(
        !all.contains("hunter2"),
        "a secret reached the message: {all}"
    );
    assert!(!all.contains('\u{1b}'), "an escape reached the message");
    let blocks = announced["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert!(
        blocks
            .iter()
            .all(|b| b["type"] == "header" || b["type"] == "section")
    );

    // NoFix, Applied and the verdicts are announced, without an approve command; the rest not.
    for (phase, headline) in [
        ("NoFix", "ended without a fix"),
        ("Applied", "patch applied"),
        ("Resolved", "verified: resolved"),
        ("Unresolved", "verified: still failing"),
    ] {
        let mut status = awaiting();
        status.phase = serde_json::from_value(json!(phase)).unwrap();
        let m = message(&report, &status).expect(phase);
        let text = m["text"].as_str().unwrap();
        assert!(text.contains(headline), "{phase}: {text}");
        assert!(!text.contains("kubectl sre approve"), "{phase}: {text}");
    }
    for phase in ["Analyzing", "Approved", "Rejected", "Failed"] {
        let mut status = awaiting();
        status.phase = serde_json::from_value(json!(phase)).unwrap();
        assert_eq!(message(&report, &status), None, "{phase} is not announced");
    }
}

#[tokio::test]
async fn delivery_is_retried_with_backoff_until_the_webhook_takes_it() {
    let hook = Webhook::start(2).await.unwrap();
    let (secrets, key) = webhook_secret(hook.url("/services/T0/B0/webhook-path"));
    let notifier = Notifier::with_backoff(secrets, Duration::from_millis(20), 5);
    let body = message(&report(), &awaiting()).unwrap();
    let attempts = notifier.deliver(&key, &body).await.expect("delivered");
    assert_eq!(attempts, 3, "two 503s, then 200");
    let seen = hook.seen();
    assert_eq!(
        seen.iter().map(|d| d.answered).collect::<Vec<_>>(),
        [503, 503, 200]
    );
    assert_eq!(seen[2].path, "/services/T0/B0/webhook-path");
    assert_eq!(seen[2].body, body);
}

#[tokio::test]
async fn a_webhook_that_keeps_failing_is_given_up_and_the_error_names_the_secret_not_the_url() {
    let hook = Webhook::start(usize::MAX).await.unwrap();
    let (secrets, key) = webhook_secret(hook.url("/hooks/token-abc123"));
    let notifier = Notifier::with_backoff(secrets, Duration::from_millis(10), 3);
    let error = notifier
        .deliver(&key, &json!({"text": "x"}))
        .await
        .expect_err("never delivered");
    assert_eq!(hook.seen().len(), 3, "three attempts, then given up");
    assert!(
        error.contains("503") && error.contains("after 3 attempts"),
        "{error}"
    );
    assert!(
        error.contains("Secret sre-operator-notify key \"slack\""),
        "{error}"
    );
    assert!(
        !error.contains("token-abc123"),
        "the URL is a credential: {error}"
    );

    // Unreachable: retried too, and the error still does not carry the URL.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/token-abc123", closed.local_addr().unwrap());
    drop(closed);
    let (secrets, key) = webhook_secret(url);
    let notifier = Notifier::with_backoff(secrets, Duration::from_millis(10), 2);
    let error = notifier.deliver(&key, &json!({})).await.unwrap_err();
    assert!(error.contains("cannot reach the webhook"), "{error}");
    assert!(!error.contains("token-abc123"), "{error}");

    // A Secret holding something other than an http(s) URL: refused before any request.
    let (secrets, key) = webhook_secret("file:///etc/passwd".into());
    let error = Notifier::with_backoff(secrets, Duration::from_millis(10), 2)
        .deliver(&key, &json!({}))
        .await
        .unwrap_err();
    assert!(error.contains("is not an http(s) URL"), "{error}");
}

#[tokio::test]
async fn notify_returns_at_once_and_delivers_in_the_background() {
    let hook = Webhook::start(1).await.unwrap();
    let (secrets, key) = webhook_secret(hook.url("/hook"));
    let notifier = Arc::new(Notifier::with_backoff(
        secrets,
        Duration::from_millis(20),
        4,
    ));
    // notify is not async: nothing a reconcile awaits.
    notifier.notify(&key, &report(), &awaiting());
    for _ in 0..200 {
        if !hook.delivered().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let delivered: Vec<Value> = hook.delivered().into_iter().map(|d| d.body).collect();
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert!(
        delivered[0]["text"]
            .as_str()
            .unwrap()
            .contains("needs a decision")
    );
}

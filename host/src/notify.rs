//! Notifications out: when a report needs a decision, ends NoFix, is applied, or is verified, a
//! Slack-compatible message (`text` plus blocks) goes to the webhook its DebugPolicy names in
//! `spec.notify`. The URL lives in a Secret in the operator's namespace (a Slack webhook URL is
//! itself a credential), read like an egress grant's credential.
//!
//! Delivery runs on its own task, so a slow or failing webhook never holds a reconcile; it is
//! retried with exponential back-off on connection errors, 429 and 5xx, and given up (logged)
//! after the last attempt. Everything in the message came from a tenant's Pod or a model, so it
//! is redacted and stripped of control characters, and cut to what a chat message shows.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use kube::ResourceExt;
use serde_json::{Value, json};

use crate::crd::{DiagnosticReport, DiagnosticReportStatus, PatchOp, Phase};
use crate::plugin::egress::{SecretKeyRef, SecretSource};
use crate::redact::one_line;

/// How long one delivery attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest piece of tenant text a message carries; Slack cuts a section at 3000.
const FIELD_CHARS: usize = 600;

/// Sends notifications; one per operator, shared by every reconcile.
pub struct Notifier {
    secrets: Arc<dyn SecretSource>,
    http: reqwest::Client,
    backoff: ExponentialBuilder,
}

/// Why one attempt failed, and whether another could succeed.
#[derive(Debug)]
struct Failed {
    why: String,
    retry: bool,
}

impl Notifier {
    /// Five attempts, 1 s apart at first and doubling (about 15 s in all).
    pub fn new(secrets: Arc<dyn SecretSource>) -> Self {
        Notifier::with_backoff(secrets, Duration::from_secs(1), 5)
    }

    pub fn with_backoff(secrets: Arc<dyn SecretSource>, first: Duration, attempts: usize) -> Self {
        let http = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            // A redirect could carry the message somewhere the Secret did not name.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a reqwest client with default TLS");
        Notifier {
            secrets,
            http,
            backoff: ExponentialBuilder::default()
                .with_min_delay(first)
                .with_max_times(attempts.saturating_sub(1))
                .with_jitter(),
        }
    }

    /// Sends the message for `status`'s phase, if it is one people hear about, to `webhook`, on
    /// a task of its own: returns at once.
    pub fn notify(
        self: &Arc<Self>,
        webhook: &SecretKeyRef,
        report: &DiagnosticReport,
        status: &DiagnosticReportStatus,
    ) {
        let Some(body) = message(report, status) else {
            return;
        };
        let (this, webhook) = (self.clone(), webhook.clone());
        let name = format!(
            "{}/{}",
            report.namespace().unwrap_or_default(),
            report.name_any()
        );
        tokio::spawn(async move {
            match this.deliver(&webhook, &body).await {
                Ok(attempts) => {
                    tracing::info!(report = %name, attempts, "notification delivered");
                }
                Err(why) => {
                    tracing::warn!(report = %name, error = %why, "notification not delivered")
                }
            }
        });
    }

    /// Posts `body` to the URL in `webhook`, retrying what may pass later; the attempts it took.
    pub async fn deliver(&self, webhook: &SecretKeyRef, body: &Value) -> Result<usize, String> {
        // The URL is a credential: messages name the Secret, never the URL.
        let source = format!(
            "the webhook URL in Secret {} key {:?} ({})",
            webhook.name,
            webhook.key,
            self.secrets.location()
        );
        let url = self
            .secrets
            .read(webhook)
            .await
            .map_err(|e| format!("cannot read {source}: {e}"))?;
        let url = reqwest::Url::parse(&url)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some())
            .ok_or_else(|| format!("{source} is not an http(s) URL"))?;
        let attempts = std::sync::atomic::AtomicUsize::new(0);
        let attempt = || async {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let response = self
                .http
                .post(url.clone())
                .json(body)
                .send()
                .await
                .map_err(|e| Failed {
                    // Without the URL: reqwest's errors name it.
                    why: format!("cannot reach the webhook: {}", e.without_url()),
                    retry: true,
                })?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(Failed {
                    why: format!("the webhook answered {status}"),
                    retry: status.is_server_error()
                        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                        || status == reqwest::StatusCode::REQUEST_TIMEOUT,
                })
            }
        };
        attempt
            .retry(self.backoff)
            .when(|f: &Failed| f.retry)
            .notify(|f: &Failed, after: Duration| {
                tracing::debug!(error = %f.why, ?after, "notification attempt failed; retrying");
            })
            .await
            .map_err(|f| {
                format!(
                    "{} (after {} attempts, to {source})",
                    f.why,
                    attempts.load(std::sync::atomic::Ordering::Relaxed)
                )
            })?;
        Ok(attempts.load(std::sync::atomic::Ordering::Relaxed))
    }
}

/// Tenant text as a message may carry it: no secrets, no control characters, one line, short.
fn clean(text: &str) -> String {
    one_line(text, FIELD_CHARS)
}

/// The patch in one line: each change as `op path: old → new` (the guard's `test` gives old).
pub fn patch_line(status: &DiagnosticReportStatus) -> Option<String> {
    let patch = status.suggested_patch.as_ref()?;
    let mut tested = std::collections::HashMap::new();
    let mut changes = Vec::new();
    for op in &patch.patch {
        let value = |v: &Option<Value>| {
            v.as_ref()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "null".into())
        };
        match op.op {
            PatchOp::Test => {
                tested.insert(op.path.clone(), value(&op.value));
            }
            PatchOp::Remove => changes.push(format!("remove {}", op.path)),
            PatchOp::Add => changes.push(format!("add {}: {}", op.path, value(&op.value))),
            PatchOp::Replace => changes.push(match tested.get(&op.path) {
                Some(old) => format!("{}: {old} → {}", op.path, value(&op.value)),
                None => format!("replace {}: {}", op.path, value(&op.value)),
            }),
            PatchOp::Move | PatchOp::Copy => changes.push(format!(
                "{} {} → {}",
                if op.op == PatchOp::Move {
                    "move"
                } else {
                    "copy"
                },
                op.from.as_deref().unwrap_or_default(),
                op.path
            )),
        }
    }
    Some(clean(&format!(
        "{} {}/{}: {}",
        patch.target.kind,
        patch.target.namespace,
        patch.target.name,
        changes.join("; ")
    )))
}

/// The message for a report entering `status.phase`, or `None` for phases nobody is told about.
pub fn message(report: &DiagnosticReport, status: &DiagnosticReportStatus) -> Option<Value> {
    let headline = match status.phase? {
        Phase::AwaitingApproval => "needs a decision",
        Phase::NoFix => "ended without a fix",
        Phase::Applied => "patch applied",
        Phase::Resolved => "verified: resolved",
        Phase::Unresolved => "verified: still failing",
        _ => return None,
    };
    let namespace = report.namespace().unwrap_or_default();
    let name = report.name_any();
    let spec = &report.spec;
    let what = format!(
        "{} {} in {namespace}: {} ({})",
        spec.workload.kind,
        clean(&spec.workload.name),
        spec.failure.class.as_str(),
        clean(&spec.failure.reason)
    );
    let findings = status.findings.as_ref();
    let mut lines = vec![format!("*What failed:* {what}")];
    if let Some(f) = findings {
        lines.push(format!("*Root cause:* {}", clean(&f.root_cause)));
    }
    if let Some(patch) = patch_line(status) {
        lines.push(format!("*Patch:* `{patch}`"));
    }
    if let Some(m) = &status.message {
        lines.push(format!("*Status:* {}", clean(m)));
    }
    let command = (status.phase == Some(Phase::AwaitingApproval))
        .then(|| {
            status.suggested_patch.as_ref().map(|p| {
                format!(
                    "kubectl sre approve {name} -n {namespace} --digest {}",
                    p.digest()
                )
            })
        })
        .flatten();
    let title = format!("sre-operator: {namespace}/{name} {headline}");
    let mut text = format!("{title}. {what}.");
    if let Some(f) = findings {
        text.push_str(&format!(" {}", clean(&f.root_cause)));
    }
    if let Some(c) = &command {
        text.push_str(&format!(" Approve with: {c}"));
    }
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": clean(&title)}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": lines.join("\n")}}),
    ];
    if let Some(c) = &command {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("Approve (after `kubectl sre show {name} -n {namespace}`):\n```{c}```")},
        }));
    }
    Some(json!({"text": text, "blocks": blocks}))
}

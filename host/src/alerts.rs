//! Alertmanager in: the webhook receiver (payload version 4) on the operator's HTTP server, at
//! `/alertmanager`, and what an alert says about which workload failed and how.
//!
//! The HTTP side only authenticates (a bearer token from a Secret), bounds and parses; the alerts
//! go through a bounded queue to the controller ([`crate::controller::alert`]), which opens or
//! joins reports. A full queue answers 503, and Alertmanager retries: nothing blocks a reconcile,
//! and a burst of alerts cannot grow the operator without bound.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::cluster::ResourceKind;
use crate::crd::FailureClass;
use crate::names::{check_name, check_namespace};
use crate::redact::one_line;

/// The path Alertmanager's webhook_config points at.
pub const PATH: &str = "/alertmanager";
/// Alertmanager sends a group in one request; a payload past this is refused (413).
const MAX_BODY: usize = 1 << 20;
/// Alerts read from one payload (Alertmanager's `max_alerts` should be at most this).
const MAX_ALERTS: usize = 500;
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Payloads waiting for the controller; past it Alertmanager is told to retry.
pub const QUEUE: usize = 64;
/// The longest alert text (summary, description, runbook URL) kept as evidence.
const FIELD_CHARS: usize = 400;

/// One alert of a webhook payload.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub starts_at: String,
    #[serde(default)]
    pub ends_at: String,
    #[serde(default)]
    pub fingerprint: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    version: String,
    #[serde(default)]
    alerts: Vec<Alert>,
}

/// What an alert names: a Pod, or a workload whose Pods to look at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Pod {
        namespace: String,
        name: String,
    },
    Workload {
        namespace: String,
        kind: ResourceKind,
        name: String,
    },
}

fn cut(text: &str) -> String {
    one_line(text, FIELD_CHARS)
}

impl Alert {
    pub fn name(&self) -> &str {
        self.labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("")
    }

    pub fn firing(&self) -> bool {
        self.status == "firing"
    }

    /// The Pod or workload the labels name (kube-state-metrics' labels: `namespace` with `pod`,
    /// or with `deployment`, `statefulset`, `daemonset` or `job`/`job_name`), each name checked
    /// by the rules a Kubernetes name follows; `None` when they name none.
    pub fn target(&self) -> Option<Target> {
        let namespace = self.labels.get("namespace")?;
        check_namespace("namespace", namespace).ok()?;
        if let Some(pod) = self.labels.get("pod") {
            check_name(ResourceKind::Pod, "pod", pod).ok()?;
            return Some(Target::Pod {
                namespace: namespace.clone(),
                name: pod.clone(),
            });
        }
        for (label, kind) in [
            ("deployment", ResourceKind::Deployment),
            ("statefulset", ResourceKind::StatefulSet),
            ("daemonset", ResourceKind::DaemonSet),
            ("job_name", ResourceKind::Job),
            ("job", ResourceKind::Job),
        ] {
            if let Some(name) = self.labels.get(label) {
                check_name(kind, label, name).ok()?;
                return Some(Target::Workload {
                    namespace: namespace.clone(),
                    kind,
                    name: name.clone(),
                });
            }
        }
        None
    }

    /// The alert as report evidence: name, state and since when, then summary, description and
    /// runbook, each redacted and cut.
    pub fn evidence(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "alert {} {} since {}",
            cut(self.name()),
            if self.firing() { "firing" } else { "resolved" },
            cut(&self.starts_at)
        )];
        for (key, label) in [
            ("summary", "summary"),
            ("description", "description"),
            ("message", "message"),
            ("runbook_url", "runbook"),
        ] {
            if let Some(text) = self.annotations.get(key).filter(|t| !t.trim().is_empty()) {
                lines.push(format!("alert {label}: {}", cut(text)));
            }
        }
        lines
    }
}

/// Which failure class an alert name means; an alert mapped to none opens an `Alert` report.
#[derive(Clone, Debug)]
pub struct AlertClasses(BTreeMap<String, FailureClass>);

impl Default for AlertClasses {
    /// kube-prometheus' alert names for the failures the operator detects.
    fn default() -> Self {
        AlertClasses(BTreeMap::from([
            ("KubePodCrashLooping".into(), FailureClass::CrashLoopBackOff),
            ("KubePodNotReady".into(), FailureClass::ProbeFailure),
            ("KubeContainerOOMKilled".into(), FailureClass::OomKilled),
            (
                "KubeContainerWaiting".into(),
                FailureClass::CreateContainerConfigError,
            ),
            ("KubePodPending".into(), FailureClass::Pending),
            (
                "KubePodImagePullBackOff".into(),
                FailureClass::ImagePullBackOff,
            ),
        ]))
    }
}

impl AlertClasses {
    /// The defaults with `NAME=CLASS` entries added or replaced.
    pub fn with(entries: &[String]) -> Result<Self, String> {
        let mut map = AlertClasses::default();
        for entry in entries.iter().filter(|e| !e.is_empty()) {
            let (name, class) = entry.split_once('=').ok_or_else(|| {
                format!("--alert-class {entry:?}: expected ALERTNAME=CLASS, e.g. KubePodCrashLooping=CrashLoopBackOff")
            })?;
            let class: FailureClass =
                serde_json::from_value(serde_json::json!(class)).map_err(|_| {
                    format!(
                        "--alert-class {entry:?}: {class:?} is not a failure class ({})",
                        FailureClass::ALL.map(|c| c.as_str()).join(", ")
                    )
                })?;
            map.0.insert(name.to_string(), class);
        }
        Ok(map)
    }

    pub fn class(&self, alert: &Alert) -> FailureClass {
        self.0
            .get(alert.name())
            .copied()
            .unwrap_or(FailureClass::Alert)
    }
}

/// The receiving end of the webhook: checks the token and hands payloads to the controller.
pub struct AlertInbox {
    token_hash: [u8; 32],
    queue: mpsc::Sender<Vec<Alert>>,
}

type Body = Full<Bytes>;

fn answer(status: StatusCode, text: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(text.into())));
    *response.status_mut() = status;
    response
}

impl AlertInbox {
    /// An inbox accepting `token`, and the queue the controller reads.
    pub fn new(token: &str) -> (AlertInbox, mpsc::Receiver<Vec<Alert>>) {
        let (queue, rx) = mpsc::channel(QUEUE);
        (
            AlertInbox {
                token_hash: Sha256::digest(token.trim().as_bytes()).into(),
                queue,
            },
            rx,
        )
    }

    /// One webhook request: 200 once its alerts are queued.
    pub async fn receive(&self, request: Request<hyper::body::Incoming>) -> Response<Body> {
        if request.method() != hyper::Method::POST {
            return answer(
                StatusCode::METHOD_NOT_ALLOWED,
                "POST an Alertmanager webhook payload\n",
            );
        }
        let presented = request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| Sha256::digest(token.trim().as_bytes()));
        // Digests compared, so the time taken says nothing about the token.
        if presented.is_none_or(|p| p.as_slice() != self.token_hash) {
            return answer(
                StatusCode::UNAUTHORIZED,
                "the webhook needs the operator's bearer token (http_config.authorization in the \
                 Alertmanager receiver)\n",
            );
        }
        let body = match tokio::time::timeout(
            READ_TIMEOUT,
            Limited::new(request.into_body(), MAX_BODY).collect(),
        )
        .await
        {
            Ok(Ok(body)) => body.to_bytes(),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return answer(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("a payload may be at most {MAX_BODY} bytes; lower max_alerts\n"),
                );
            }
            Ok(Err(e)) => return answer(StatusCode::BAD_REQUEST, format!("cannot read: {e}\n")),
            Err(_) => return answer(StatusCode::REQUEST_TIMEOUT, "the payload came too slowly\n"),
        };
        let payload: Payload = match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    format!("not an Alertmanager webhook payload: {e}\n"),
                );
            }
        };
        if payload.version != "4" {
            return answer(
                StatusCode::BAD_REQUEST,
                format!(
                    "payload version {:?}: this receiver reads version 4\n",
                    payload.version.chars().take(16).collect::<String>()
                ),
            );
        }
        let mut alerts = payload.alerts;
        alerts.truncate(MAX_ALERTS);
        match self.queue.try_send(alerts) {
            Ok(()) => answer(StatusCode::OK, "queued\n"),
            Err(mpsc::error::TrySendError::Full(_)) => answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "the operator is behind on alerts; retry\n",
            ),
            Err(mpsc::error::TrySendError::Closed(_)) => answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "the operator is stopping\n",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alert(labels: serde_json::Value, annotations: serde_json::Value) -> Alert {
        serde_json::from_value(json!({
            "status": "firing", "labels": labels, "annotations": annotations,
            "startsAt": "2026-12-05T10:00:00Z", "fingerprint": "f1",
        }))
        .unwrap()
    }

    #[test]
    fn the_labels_name_a_pod_or_a_workload_and_bad_names_name_nothing() {
        let target = |labels| alert(labels, json!({})).target();
        assert_eq!(
            target(json!({"namespace": "shop", "pod": "web-1", "deployment": "web"})),
            Some(Target::Pod {
                namespace: "shop".into(),
                name: "web-1".into()
            })
        );
        assert_eq!(
            target(json!({"namespace": "shop", "job_name": "backup-29"})),
            Some(Target::Workload {
                namespace: "shop".into(),
                kind: ResourceKind::Job,
                name: "backup-29".into()
            })
        );
        assert_eq!(target(json!({"pod": "web-1"})), None, "no namespace");
        assert_eq!(target(json!({"namespace": "shop"})), None, "nothing named");
        assert_eq!(
            target(json!({"namespace": "../kube-system", "pod": "x"})),
            None
        );
        assert_eq!(
            target(json!({"namespace": "shop", "pod": "a/../../b"})),
            None
        );
        assert_eq!(
            target(json!({"namespace": "shop", "deployment": "Web_1"})),
            None
        );
    }

    #[test]
    fn evidence_is_redacted_stripped_and_cut() {
        let a = alert(
            json!({"alertname": "HighErrorRate", "namespace": "shop", "deployment": "web"}),
            json!({
                "summary": "errors \u{1b}[2Jup: password=hunter2",
                "description": "x".repeat(2000),
                "runbook_url": "https://runbooks.example.com/HighErrorRate",
            }),
        );
        let lines = a.evidence();
        assert_eq!(
            lines[0],
            "alert HighErrorRate firing since 2026-12-05T10:00:00Z"
        );
        let all = lines.join("\n");
        assert!(!all.contains("hunter2") && !all.contains('\u{1b}'), "{all}");
        assert!(lines.iter().all(|l| l.chars().count() < 450), "{lines:?}");
        assert!(all.contains("alert runbook: https://runbooks.example.com/HighErrorRate"));
    }

    #[test]
    fn alert_names_map_to_classes_and_a_bad_mapping_is_refused() {
        let classes = AlertClasses::with(&["HighLatency=ProbeFailure".into()]).unwrap();
        let named = |name: &str| alert(json!({"alertname": name}), json!({}));
        assert_eq!(
            classes.class(&named("KubePodCrashLooping")),
            FailureClass::CrashLoopBackOff
        );
        assert_eq!(
            classes.class(&named("HighLatency")),
            FailureClass::ProbeFailure
        );
        assert_eq!(classes.class(&named("DiskFull")), FailureClass::Alert);
        let err = AlertClasses::with(&["X=Crashing".into()]).unwrap_err();
        assert!(
            err.contains("not a failure class") && err.contains("CrashLoopBackOff"),
            "{err}"
        );
        assert!(
            AlertClasses::with(&["nonsense".into()])
                .unwrap_err()
                .contains("ALERTNAME=CLASS")
        );
    }
}

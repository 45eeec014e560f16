//! Pods that are never created: a controller (ReplicaSet, DaemonSet, StatefulSet, Job) asks the
//! API server for a Pod and is refused (a ResourceQuota exhausted, a Pod Security level, a
//! missing ServiceAccount, a LimitRange, an admission webhook). No Pod fails, so nothing
//! Pod-based sees it; the controller records the refusal in a `ReplicaFailure` condition (a
//! ReplicaSet) and in `FailedCreate` events.
//!
//! The subject of such a report is the Pod the controller tried to create: its template, its
//! labels (what policies select on) and an owner reference to the controller, named after the
//! controller (the refused Pod's own name is random and changes every attempt).

use std::sync::LazyLock;

use k8s_openapi::api::core::v1::{Event, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use regex::Regex;
use serde_json::Value;

use super::{Detection, MAX_EVENTS, cite};
use crate::cluster::ResourceKind;
use crate::crd::FailureClass;

/// The kinds whose controllers create Pods from a template and record `FailedCreate`.
pub const CREATORS: [ResourceKind; 4] = [
    ResourceKind::ReplicaSet,
    ResourceKind::DaemonSet,
    ResourceKind::StatefulSet,
    ResourceKind::Job,
];

/// Why the API server refused the Pod, read from the error the controller recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `exceeded quota: NAME, requested: ..., used: ..., limited: ...`
    QuotaExceeded {
        quota: String,
        requested: String,
        used: String,
        limited: String,
    },
    /// `failed quota: NAME: must specify limits.cpu for: app`: the quota tracks a resource the
    /// Pod does not state.
    QuotaRequiresResources {
        quota: String,
        missing: String,
    },
    /// `violates PodSecurity "restricted:latest": ...`
    PodSecurity {
        level: String,
        violations: String,
    },
    /// `error looking up service account NS/NAME: serviceaccount "NAME" not found`
    ServiceAccountNotFound {
        name: String,
    },
    /// `maximum memory usage per Container is 1Gi, but limit is 2Gi` (a LimitRange).
    LimitRange {
        rule: String,
    },
    /// `admission webhook "NAME" denied the request: ...`
    WebhookDenied {
        webhook: String,
        message: String,
    },
    /// `Internal error occurred: failed calling webhook "NAME": failed to call webhook: Post
    /// "https://SVC.NS.svc:443/...": ERROR`: the webhook is down, and with `failurePolicy: Fail`
    /// the API server refuses what it should review.
    WebhookUnavailable {
        webhook: String,
        /// The webhook's Service (namespace, name), when the URL is one.
        service: Option<(String, String)>,
        /// What the call met: `connect: connection refused`, a timeout, an untrusted certificate.
        error: String,
    },
    Other,
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::QuotaExceeded { .. } => "QuotaExceeded",
            Refusal::QuotaRequiresResources { .. } => "QuotaRequiresResources",
            Refusal::PodSecurity { .. } => "PodSecurityViolation",
            Refusal::ServiceAccountNotFound { .. } => "ServiceAccountNotFound",
            Refusal::LimitRange { .. } => "LimitRangeViolation",
            Refusal::WebhookDenied { .. } => "AdmissionWebhookDenied",
            Refusal::WebhookUnavailable { .. } => "AdmissionWebhookUnavailable",
            Refusal::Other => "FailedCreate",
        }
    }

    pub fn parse(message: &str) -> Refusal {
        static EXCEEDED: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(
                r"exceeded quota: ([a-z0-9.\-]+), requested: (.*?), used: (.*?), limited: ([^\n]*)",
            )
            .expect("static regex")
        });
        static FAILED: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"failed quota: ([a-z0-9.\-]+): must specify ([^\n]*)")
                .expect("static regex")
        });
        static PSA: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r#"violates PodSecurity "([^"]+)": ([^\n]*)"#).expect("static regex")
        });
        static SA: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(
                r#"error looking up service account [^:]*: serviceaccount "([^"]+)" not found"#,
            )
            .expect("static regex")
        });
        static LIMIT: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"((?:maximum|minimum) [a-z\-]+ usage per (?:Container|Pod) is [^\n,]*, but (?:limit|request) is [^\n,;]*)")
                .expect("static regex")
        });
        static WEBHOOK: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r#"admission webhook "([^"]+)" denied the request:?\s*([^\n]*)"#)
                .expect("static regex")
        });
        static UNAVAILABLE: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r#"failed calling webhook "([^"]+)":\s*(?:failed to call webhook:\s*)?(?:(?:Post|Get) "?https://([^/:"\s]+)[^"\s]*"?:\s*)?([^\n]*)"#)
                .expect("static regex")
        });
        let trimmed = |s: &str| s.trim().trim_end_matches(['.', ',']).to_string();
        if let Some(c) = EXCEEDED.captures(message) {
            return Refusal::QuotaExceeded {
                quota: c[1].to_string(),
                requested: trimmed(&c[2]),
                used: trimmed(&c[3]),
                limited: trimmed(&c[4]),
            };
        }
        if let Some(c) = FAILED.captures(message) {
            return Refusal::QuotaRequiresResources {
                quota: c[1].to_string(),
                missing: trimmed(&c[2]),
            };
        }
        if let Some(c) = PSA.captures(message) {
            return Refusal::PodSecurity {
                level: c[1].to_string(),
                violations: trimmed(&c[2]),
            };
        }
        if let Some(c) = SA.captures(message) {
            return Refusal::ServiceAccountNotFound {
                name: c[1].to_string(),
            };
        }
        if let Some(c) = LIMIT.captures(message) {
            return Refusal::LimitRange {
                rule: trimmed(&c[1]),
            };
        }
        if let Some(c) = WEBHOOK.captures(message) {
            return Refusal::WebhookDenied {
                webhook: c[1].to_string(),
                message: trimmed(&c[2]),
            };
        }
        if let Some(c) = UNAVAILABLE.captures(message) {
            // `svc.ns.svc[:port]`: how the API server calls a webhook's Service. The message can
            // be a tenant's (a forged event): only names the API accepts.
            let service = c
                .get(2)
                .and_then(|host| crate::names::service_host(host.as_str(), ""))
                .filter(|s| s.certain && !s.namespace.is_empty())
                .map(|s| (s.namespace, s.name));
            return Refusal::WebhookUnavailable {
                webhook: c[1].to_string(),
                service,
                error: trimmed(&c[3]),
            };
        }
        Refusal::Other
    }
}

/// The refusal a creator records: its `ReplicaFailure` condition (a ReplicaSet), else its
/// newest `FailedCreate` event. `events` are the creator's own events.
fn refusal_message(creator: &Value, events: &[&Event]) -> Option<String> {
    let condition = creator["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "ReplicaFailure" && c["status"] == "True")
        .and_then(|c| c["message"].as_str());
    condition
        .map(str::to_string)
        .or_else(|| {
            events
                .iter()
                .rev()
                .find(|e| e.reason.as_deref() == Some("FailedCreate"))
                .and_then(|e| e.message.clone())
        })
        .filter(|m| {
            ["forbidden", "denied", "quota", "failed calling webhook"]
                .iter()
                .any(|w| m.contains(w))
        })
}

/// Whether `creator` (a ReplicaSet, DaemonSet, StatefulSet or Job) still wants Pods it does not
/// have: a controller scaled to zero or whose Pods all exist has nothing refused now, whatever
/// its old events say. Cheap: read before its events are.
pub fn short_of_pods(creator: &Value) -> bool {
    creator["kind"]
        .as_str()
        .and_then(|k| k.parse::<ResourceKind>().ok())
        .is_some_and(|kind| CREATORS.contains(&kind) && wants_more(creator, kind))
}

fn wants_more(creator: &Value, kind: ResourceKind) -> bool {
    let status = &creator["status"];
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    match kind {
        ResourceKind::ReplicaSet | ResourceKind::StatefulSet => {
            n(&creator["spec"]["replicas"]) > n(&status["replicas"])
        }
        ResourceKind::DaemonSet => {
            n(&status["desiredNumberScheduled"]) > n(&status["currentNumberScheduled"])
        }
        ResourceKind::Job => {
            let parallelism = creator["spec"]["parallelism"].as_i64().unwrap_or(1);
            status["completionTime"].is_null() && n(&status["active"]) < parallelism
        }
        _ => false,
    }
}

/// The Pod `creator` could not create, and why: None when it creates its Pods. `events` are
/// the creator's own events (any others are ignored).
pub fn detect_failed_create(creator: &Value, events: &[Event]) -> Option<(Pod, Detection)> {
    let kind: ResourceKind = creator["kind"].as_str()?.parse().ok()?;
    if !CREATORS.contains(&kind) || !wants_more(creator, kind) {
        return None;
    }
    let metadata = &creator["metadata"];
    let name = metadata["name"].as_str()?;
    let own: Vec<&Event> = events
        .iter()
        .filter(|e| {
            let o = &e.involved_object;
            o.kind.as_deref() == Some(kind.kind())
                && o.name.as_deref() == Some(name)
                && o.uid
                    .as_deref()
                    .is_none_or(|u| metadata["uid"].as_str().is_none_or(|m| m == u))
        })
        .collect();
    let message = refusal_message(creator, &own)?;
    let refusal = Refusal::parse(&message);
    let mut evidence = vec![format!(
        "{} {name} cannot create its Pods ({} wanted, {} exist): {}",
        kind.kind(),
        wanted(creator, kind),
        existing(creator, kind),
        message.trim()
    )];
    evidence.extend(
        own.iter()
            .rev()
            .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
            .take(MAX_EVENTS)
            .map(|e| cite(e)),
    );
    let pod = would_be_pod(creator, kind)?;
    let container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone());
    Some((
        pod,
        Detection {
            class: FailureClass::FailedCreate,
            reason: refusal.reason().to_string(),
            container,
            evidence,
        },
    ))
}

fn wanted(creator: &Value, kind: ResourceKind) -> i64 {
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    match kind {
        ResourceKind::DaemonSet => n(&creator["status"]["desiredNumberScheduled"]),
        ResourceKind::Job => creator["spec"]["parallelism"].as_i64().unwrap_or(1),
        _ => n(&creator["spec"]["replicas"]),
    }
}

fn existing(creator: &Value, kind: ResourceKind) -> i64 {
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    match kind {
        ResourceKind::DaemonSet => n(&creator["status"]["currentNumberScheduled"]),
        ResourceKind::Job => n(&creator["status"]["active"]),
        _ => n(&creator["status"]["replicas"]),
    }
}

/// The Pod as the controller asks for it: its template, in its namespace, owned by it, named
/// after it. It has no uid: it does not exist.
pub fn would_be_pod(creator: &Value, kind: ResourceKind) -> Option<Pod> {
    let metadata = &creator["metadata"];
    let template = &creator["spec"]["template"];
    let spec: PodSpec = serde_json::from_value(template["spec"].clone()).ok()?;
    let labels = serde_json::from_value(template["metadata"]["labels"].clone()).ok();
    let annotations = serde_json::from_value(template["metadata"]["annotations"].clone()).ok();
    Some(Pod {
        metadata: ObjectMeta {
            name: Some(metadata["name"].as_str()?.to_string()),
            namespace: Some(metadata["namespace"].as_str()?.to_string()),
            labels,
            annotations,
            owner_references: Some(vec![OwnerReference {
                api_version: creator["apiVersion"].as_str()?.to_string(),
                kind: kind.kind().to_string(),
                name: metadata["name"].as_str()?.to_string(),
                uid: metadata["uid"].as_str().unwrap_or_default().to_string(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: Some(spec),
        status: Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        }),
    })
}

/// The creator a FailedCreate report is about: the report's Pod is named after it, and a
/// Deployment's Pods are created by its ReplicaSets.
pub fn creator_kind(workload_kind: &str) -> ResourceKind {
    match workload_kind {
        "DaemonSet" => ResourceKind::DaemonSet,
        "StatefulSet" => ResourceKind::StatefulSet,
        "Job" | "CronJob" => ResourceKind::Job,
        _ => ResourceKind::ReplicaSet,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn replica_set(message: Option<&str>, replicas: i64, existing: i64) -> Value {
        let mut rs = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-6d4cf56db6", "namespace": "shop", "uid": "rs-uid",
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                              "name": "web", "uid": "d-uid", "controller": true}]},
            "spec": {"replicas": replicas, "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27",
                         "resources": {"limits": {"memory": "512Mi"}}}]}}},
            "status": {"replicas": existing}
        });
        if let Some(m) = message {
            rs["status"]["conditions"] = json!([{"type": "ReplicaFailure", "status": "True",
                "reason": "FailedCreate", "message": m}]);
        }
        rs
    }

    const QUOTA: &str = "pods \"web-6d4cf56db6-8xk2p\" is forbidden: exceeded quota: compute-quota, requested: limits.memory=512Mi, used: limits.memory=1536Mi, limited: limits.memory=2Gi";

    #[test]
    fn a_replica_set_refused_by_its_quota_is_a_failed_create_of_its_template() {
        let (pod, d) = detect_failed_create(&replica_set(Some(QUOTA), 5, 3), &[]).unwrap();
        assert_eq!(d.class, FailureClass::FailedCreate);
        assert_eq!(d.reason, "QuotaExceeded");
        assert_eq!(d.container.as_deref(), Some("app"));
        assert!(
            d.evidence[0]
                .contains("ReplicaSet web-6d4cf56db6 cannot create its Pods (5 wanted, 3 exist)")
                && d.evidence[0].contains("exceeded quota: compute-quota"),
            "{:?}",
            d.evidence
        );
        assert_eq!(pod.metadata.name.as_deref(), Some("web-6d4cf56db6"));
        assert_eq!(pod.metadata.uid, None, "it does not exist");
        assert_eq!(pod.metadata.labels.unwrap()["app"], "web");
        let owner = &pod.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("ReplicaSet", "rs-uid")
        );
        // All its Pods exist, or none are wanted: nothing is refused now.
        assert!(detect_failed_create(&replica_set(Some(QUOTA), 3, 3), &[]).is_none());
        assert!(detect_failed_create(&replica_set(None, 5, 3), &[]).is_none());
    }

    #[test]
    fn a_daemon_set_refusal_is_read_from_its_own_failed_create_events() {
        let ds = json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "ops", "uid": "ds-uid"},
            "spec": {"template": {"metadata": {"labels": {"app": "agent"}},
                     "spec": {"containers": [{"name": "agent", "image": "agent:1"}]}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 0}
        });
        let event = |name: &str, message: &str| -> Event {
            serde_json::from_value(json!({
                "metadata": {"name": format!("{name}.1"), "namespace": "ops"},
                "involvedObject": {"kind": "DaemonSet", "name": name, "namespace": "ops"},
                "reason": "FailedCreate", "type": "Warning", "count": 12, "message": message
            }))
            .unwrap()
        };
        let sa = "Error creating: pods \"agent-\" is forbidden: error looking up service account ops/agent: serviceaccount \"agent\" not found";
        let (_, d) =
            detect_failed_create(&ds, &[event("other", QUOTA), event("agent", sa)]).unwrap();
        assert_eq!(d.reason, "ServiceAccountNotFound");
        assert!(
            d.evidence
                .iter()
                .any(|e| e.contains("event Warning FailedCreate (x12"))
        );
        assert!(
            !d.evidence.iter().any(|e| e.contains("compute-quota")),
            "another object's event"
        );
    }

    #[test]
    fn refusals_are_told_apart_from_the_api_servers_words() {
        let cases = [
            (QUOTA, "QuotaExceeded"),
            (
                "pods \"x\" is forbidden: failed quota: team-quota: must specify limits.cpu for: app; limits.memory for: app",
                "QuotaRequiresResources",
            ),
            (
                "pods \"x\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"app\" must set securityContext.allowPrivilegeEscalation=false), runAsNonRoot != true (pod or container \"app\" must set securityContext.runAsNonRoot=true)",
                "PodSecurityViolation",
            ),
            (
                "pods \"x\" is forbidden: maximum memory usage per Container is 1Gi, but limit is 2Gi",
                "LimitRangeViolation",
            ),
            (
                "admission webhook \"validate.kyverno.svc-fail\" denied the request: resource Pod/shop/x was blocked",
                "AdmissionWebhookDenied",
            ),
            (
                "pods \"x\" is forbidden: node selector conflicts with its namespace node label selector",
                "FailedCreate",
            ),
        ];
        for (message, reason) in cases {
            assert_eq!(Refusal::parse(message).reason(), reason, "{message}");
        }
        assert_eq!(
            Refusal::parse(QUOTA),
            Refusal::QuotaExceeded {
                quota: "compute-quota".into(),
                requested: "limits.memory=512Mi".into(),
                used: "limits.memory=1536Mi".into(),
                limited: "limits.memory=2Gi".into()
            }
        );
    }

    /// A webhook that is down (refused, timed out, no endpoints, an untrusted certificate), as
    /// the API server words it in the controller's refusal: its name, its Service when it has
    /// one, and what the call met.
    #[test]
    fn a_webhook_that_cannot_be_called_is_told_from_one_that_denies() {
        let kyverno = |error: &str| {
            format!(
                "Internal error occurred: failed calling webhook \"validate.kyverno.svc-fail\": failed to call webhook: Post \"https://kyverno-svc.kyverno.svc:443/validate/fail?timeout=10s\": {error}"
            )
        };
        for error in [
            "dial tcp 10.96.112.40:443: connect: connection refused",
            "context deadline exceeded",
            "no endpoints available for service \"kyverno-svc\"",
            "tls: failed to verify certificate: x509: certificate signed by unknown authority",
        ] {
            assert_eq!(
                Refusal::parse(&kyverno(error)),
                Refusal::WebhookUnavailable {
                    webhook: "validate.kyverno.svc-fail".into(),
                    service: Some(("kyverno".into(), "kyverno-svc".into())),
                    error: error.into(),
                },
                "{error}"
            );
        }
        // A webhook configured with a URL has no Service to name, nor one whose name the API
        // would refuse (a forged event's).
        let forged = "failed calling webhook \"w\": failed to call webhook: Post \"https://$(curl.evil.svc:443/x\": EOF";
        assert!(matches!(
            Refusal::parse(forged),
            Refusal::WebhookUnavailable { service: None, .. }
        ));
        let url = "Internal error occurred: failed calling webhook \"policy.example.com\": failed to call webhook: Post \"https://opa.example.com:8443/v1/admit?timeout=5s\": dial tcp: lookup opa.example.com: no such host";
        assert_eq!(
            Refusal::parse(url),
            Refusal::WebhookUnavailable {
                webhook: "policy.example.com".into(),
                service: None,
                error: "dial tcp: lookup opa.example.com: no such host".into(),
            }
        );
        // Recorded without "forbidden" or "denied", it is still a refusal the controller keeps
        // meeting: a report, not silence.
        let refused = kyverno("dial tcp 10.96.112.40:443: connect: connection refused");
        let (_, d) = detect_failed_create(&replica_set(Some(&refused), 3, 0), &[]).unwrap();
        assert_eq!(d.reason, "AdmissionWebhookUnavailable");
    }
}

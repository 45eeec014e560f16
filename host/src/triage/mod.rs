//! From Pods to reports: detect failures, keep those a policy selects, resolve each Pod's workload
//! and open one report per workload and failure class. Shared by `diagnose` and the controller.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ObjectMeta;

use crate::cluster::{Cluster, ClusterError, Involved, ResourceKind, Result, resolve_workload};
use crate::crd::{DiagnosticReport, DiagnosticReportSpec, PodRef, report_name};
use crate::failure::{CREATORS, Detection, detect, detect_failed_create, short_of_pods};
use crate::policy::{DedupKey, PolicySet};

pub const MANAGED_BY: &str = "sre-operator";
pub const CLASS_LABEL: &str = "sre-operator.dev/failure-class";

/// Evidence lines naming the other failing Pods of a workload, at most this many.
const MAX_SIBLINGS: usize = 5;

/// A new report (no status yet) for a Pod's failure. The evidence is redacted: it quotes the Pod's
/// status, whose termination message may hold a log's tail (`FallbackToLogsOnError`), and it is
/// stored in the report and sent to a model like everything else.
pub fn new_report(
    pod: &Pod,
    workload: crate::crd::WorkloadRef,
    mut detection: Detection,
    policy: &str,
) -> DiagnosticReport {
    for line in &mut detection.evidence {
        *line = crate::redact::redact_text(line);
    }
    let namespace = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut labels = BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_string(),
            MANAGED_BY.to_string(),
        ),
        (
            CLASS_LABEL.to_string(),
            detection.class.as_str().to_ascii_lowercase(),
        ),
    ]);
    if workload.name.len() <= 63 {
        labels.insert("sre-operator.dev/workload".into(), workload.name.clone());
    }
    DiagnosticReport {
        metadata: ObjectMeta {
            name: Some(report_name(&workload, detection.class)),
            namespace: Some(namespace.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: DiagnosticReportSpec {
            pod: PodRef {
                namespace,
                name: pod.metadata.name.clone().unwrap_or_default(),
                uid: pod.metadata.uid.clone().unwrap_or_default(),
            },
            workload,
            failure: detection.into(),
            policy: policy.to_string(),
            decision: None,
            approved_digest: None,
        },
        status: None,
    }
}

/// Every report the selected failing Pods call for, ordered by namespace and name.
pub async fn triage(cluster: &dyn Cluster, policies: &PolicySet) -> Result<Vec<DiagnosticReport>> {
    Ok(triage_counting(cluster, policies).await?.0)
}

/// [`triage`], and how many Pods it looked at.
pub async fn triage_counting(
    cluster: &dyn Cluster,
    policies: &PolicySet,
) -> Result<(Vec<DiagnosticReport>, usize)> {
    // A namespace at a time when the cluster can say which: typed Pods are large, and only the
    // failing ones are kept.
    let batches: Vec<Option<String>> = match cluster.pod_namespaces().await? {
        Some(namespaces) => namespaces.into_iter().map(Some).collect(),
        None => vec![None],
    };
    let mut count = 0;
    let mut reports: BTreeMap<DedupKey, (DiagnosticReport, Vec<String>)> = BTreeMap::new();
    for batch in batches {
        // Only the Pods whose status may show a failure: the others cannot be reported, and
        // reading their events was most of the work on a large dump.
        let (mut pods, all) = cluster.failing_pods(batch.as_deref()).await?;
        count += all;
        pods.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        triage_pods(cluster, policies, &pods, &mut reports).await?;
        triage_creators(cluster, policies, batch.as_deref(), &mut reports).await?;
    }
    let reports = finish(reports);
    Ok((reports, count))
}

async fn triage_pods(
    cluster: &dyn Cluster,
    policies: &PolicySet,
    pods: &[Pod],
    reports: &mut BTreeMap<DedupKey, (DiagnosticReport, Vec<String>)>,
) -> Result<()> {
    for pod in pods {
        if !policies.selects_pod(pod) {
            continue;
        }
        let events = cluster.events_for(Involved::pod(pod)).await?;
        let mut detections = detect(pod, &events);
        // An init container that never completes shows in no event: only in how long it runs.
        if detections.is_empty()
            && let Some(stuck) = cluster.observed_at().and_then(|now| {
                crate::failure::detect_init_running(pod, now, crate::failure::INIT_STUCK_AFTER)
            })
        {
            detections.push(stuck);
        }
        if detections.is_empty() {
            continue;
        }
        let workload = resolve_workload(cluster, pod).await?;
        for detection in detections {
            open(policies, pod, &workload, detection, reports);
        }
    }
    Ok(())
}

/// One report per workload and class: a Pod of a workload already reported is named in its
/// evidence instead.
fn open(
    policies: &PolicySet,
    pod: &Pod,
    workload: &crate::crd::WorkloadRef,
    detection: Detection,
    reports: &mut BTreeMap<DedupKey, (DiagnosticReport, Vec<String>)>,
) {
    let Some(policy) = policies.select(pod, detection.class) else {
        return;
    };
    let key = DedupKey {
        namespace: pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        workload: workload.clone(),
        class: detection.class,
    };
    match reports.get_mut(&key) {
        Some((_, siblings)) => siblings.push(pod.metadata.name.clone().unwrap_or_default()),
        None => {
            let report = new_report(pod, workload.clone(), detection, &policy.name);
            reports.insert(key, (report, Vec::new()));
        }
    }
}

/// The controllers in `namespace` (all when None) that cannot create their Pods, reported as
/// the Pod they ask for (`FailedCreate`). A kind the source does not hold (a dump has no
/// StatefulSets or Jobs) is skipped.
async fn triage_creators(
    cluster: &dyn Cluster,
    policies: &PolicySet,
    namespace: Option<&str>,
    reports: &mut BTreeMap<DedupKey, (DiagnosticReport, Vec<String>)>,
) -> Result<()> {
    for kind in CREATORS {
        let creators = match cluster.short_of_pods(kind, namespace).await {
            Ok(creators) => creators,
            Err(ClusterError::Unsupported(_)) => continue,
            Err(e) => return Err(e),
        };
        for creator in &creators {
            let metadata = &creator["metadata"];
            let (Some(ns), Some(name)) =
                (metadata["namespace"].as_str(), metadata["name"].as_str())
            else {
                continue;
            };
            let events = cluster
                .events_for(Involved {
                    kind: kind.kind(),
                    namespace: ns,
                    name,
                    uid: metadata["uid"].as_str(),
                })
                .await?;
            let Some((pod, detection)) = detect_failed_create(creator, &events) else {
                continue;
            };
            if !policies.selects_pod(&pod) {
                continue;
            }
            let workload = resolve_workload(cluster, &pod).await?;
            open(policies, &pod, &workload, detection, reports);
        }
    }
    Ok(())
}

/// The reports, each with a line naming the other Pods of its workload that fail the same way.
fn finish(reports: BTreeMap<DedupKey, (DiagnosticReport, Vec<String>)>) -> Vec<DiagnosticReport> {
    reports
        .into_values()
        .map(|(mut report, siblings)| {
            if !siblings.is_empty() {
                let shown: Vec<&str> = siblings
                    .iter()
                    .take(MAX_SIBLINGS)
                    .map(String::as_str)
                    .collect();
                let more = siblings.len().saturating_sub(MAX_SIBLINGS);
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                report.spec.failure.evidence.push(format!(
                    "{} other Pod(s) of {} {} fail the same way: {}{more}",
                    siblings.len(),
                    report.spec.workload.kind,
                    report.spec.workload.name,
                    shown.join(", ")
                ));
            }
            report
        })
        .collect()
}

/// The Pod `report` is about as it is now: the Pod of that name (None once it is gone), or for
/// `FailedCreate` the Pod its controller still cannot create (None once the controller has its
/// Pods, or is gone).
pub async fn subject_pod(cluster: &dyn Cluster, report: &DiagnosticReport) -> Result<Option<Pod>> {
    let pod = &report.spec.pod;
    if report.spec.failure.class == crate::crd::FailureClass::FailedCreate {
        let kind = crate::failure::creator_kind(&report.spec.workload.kind);
        let Some(creator) = cluster.get(kind, Some(&pod.namespace), &pod.name).await? else {
            return Ok(None);
        };
        return Ok(short_of_pods(&creator)
            .then(|| crate::failure::would_be_pod(&creator, kind))
            .flatten());
    }
    let object = cluster
        .get(ResourceKind::Pod, Some(&pod.namespace), &pod.name)
        .await?;
    object.map(|o| crate::cluster::typed::<Pod>(&o)).transpose()
}

/// Asks every loaded policy-filter plugin whether the report's Pod is worth an investigation.
/// `Some(reason)` means skip. A filter that fails does not block the investigation: the error
/// is logged and the next filter decides.
pub async fn screen(
    plugins: &crate::plugin::PluginSet,
    cluster: &dyn Cluster,
    report: &DiagnosticReport,
    pod: &Pod,
    now: &str,
) -> Option<String> {
    use crate::plugin::{DecideContext, Decision, World};
    let filters: Vec<_> = plugins.by_world(World::PolicyFilter).cloned().collect();
    if filters.is_empty() {
        return None;
    }
    let namespace = cluster
        .get(
            crate::cluster::ResourceKind::Namespace,
            None,
            &report.spec.pod.namespace,
        )
        .await
        .ok()
        .flatten()
        .map(|ns| ns.to_string());
    let pod_json = serde_json::to_string(pod).unwrap_or_default();
    let failure_json = serde_json::to_string(&report.spec.failure).unwrap_or_default();
    for filter in filters {
        let context = DecideContext {
            policy: report.spec.policy.clone(),
            namespace: namespace.clone(),
            now: now.to_string(),
        };
        let (pod_json, failure_json, name) =
            (pod_json.clone(), failure_json.clone(), filter.name.clone());
        let decision =
            tokio::task::spawn_blocking(move || filter.decide(&pod_json, &failure_json, &context))
                .await;
        match decision {
            Ok(Ok(Decision::Investigate)) => {}
            Ok(Ok(Decision::Skip(reason))) => {
                return Some(format!("{name}: {}", crate::redact::redact_text(&reason)));
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "policy filter failed; not skipping on its account")
            }
            Err(e) => tracing::warn!(filter = %name, error = %e, "policy filter could not run"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{FailureClass, WorkloadRef};

    #[test]
    fn the_evidence_of_a_new_report_is_redacted() {
        // A termination message with FallbackToLogsOnError carries the log's tail.
        let detection = Detection {
            class: FailureClass::CrashLoopBackOff,
            reason: "Error".into(),
            container: Some("app".into()),
            evidence: vec![
                "container app: the last run exited with code 1 (Error) after 2s; message: \
                 DATABASE_URL=postgres://app:hunter2@db:5432/app\nstripe api_key=sk_live_abcdefghijklmnopqrstuvwx\n\
                 OperationalError: could not translate host name \"db\""
                    .into(),
            ],
        };
        let report = new_report(
            &Pod::default(),
            WorkloadRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: "app".into(),
            },
            detection,
            "default",
        );
        let evidence = report.spec.failure.evidence.join("\n");
        assert!(!evidence.contains("hunter2"), "{evidence}");
        assert!(
            !evidence.contains("sk_live_abcdefghijklmnopqrstuvwx"),
            "{evidence}"
        );
        assert!(
            evidence.contains("could not translate host name"),
            "{evidence}"
        );
    }
}

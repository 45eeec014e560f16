//! Whether a DiagnosticReport is one the operator opened, and still one it may act on. Anyone who
//! can create reports (an admission policy in deploy/ stops people; RBAC alone may not) could
//! write one in their namespace naming a Pod in another, or naming a policy with `approval: Auto`.
//! The operator analyses and applies only reports that pass [`opened_by_us`], and only while
//! [`still_selected`] holds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::cluster::{Cluster, ResourceKind};
use crate::crd::DiagnosticReport;
use crate::policy::CompiledPolicy;
use crate::triage::MANAGED_BY;

/// Why the operator did not open `report`, if it did not: the report lives beside its Pod, carries
/// the operator's label, and is owned by its workload (the owner's UID checked against the live
/// object).
pub async fn opened_by_us(report: &DiagnosticReport, cluster: &dyn Cluster) -> Result<(), String> {
    checked(report, cluster, None).await
}

/// [`opened_by_us`], reading the live owner at most once a minute per report: a report is
/// reconciled several times in its first seconds (a burst has hundreds), and its owner's UID
/// does not change under it (a workload deleted and made again takes its reports with it).
pub async fn opened_by_us_remembered(
    report: &DiagnosticReport,
    cluster: &dyn Cluster,
    owners: &CheckedOwners,
) -> Result<(), String> {
    checked(report, cluster, Some(owners)).await
}

/// Reports whose owner was found live, by report UID: the owner's UID and when.
#[derive(Default)]
pub struct CheckedOwners(Mutex<HashMap<String, (String, Instant)>>);

/// How long a live owner is taken as checked.
const OWNER_CHECKED_FOR: Duration = Duration::from_secs(60);
/// Bounds the memory: a full map is emptied.
const MAX_CHECKED: usize = 10_000;

impl CheckedOwners {
    fn holds(&self, report: &str, owner: &str) -> bool {
        self.0
            .lock()
            .unwrap()
            .get(report)
            .is_some_and(|(uid, at)| uid == owner && at.elapsed() < OWNER_CHECKED_FOR)
    }

    fn remember(&self, report: &str, owner: &str) {
        let mut checked = self.0.lock().unwrap();
        if checked.len() >= MAX_CHECKED {
            checked.clear();
        }
        checked.insert(report.to_string(), (owner.to_string(), Instant::now()));
    }
}

async fn checked(
    report: &DiagnosticReport,
    cluster: &dyn Cluster,
    owners: Option<&CheckedOwners>,
) -> Result<(), String> {
    let namespace = report.namespace().unwrap_or_default();
    let spec = &report.spec;
    if spec.pod.namespace != namespace {
        return Err(format!(
            "the report lives in namespace {namespace} but names a Pod in namespace {}; the \
             operator opens a report beside its Pod",
            spec.pod.namespace
        ));
    }
    if report
        .labels()
        .get("app.kubernetes.io/managed-by")
        .map(String::as_str)
        != Some(MANAGED_BY)
    {
        return Err(format!(
            "the report lacks the label app.kubernetes.io/managed-by={MANAGED_BY}: the operator did not open it"
        ));
    }
    let workload = &spec.workload;
    let owner = report
        .owner_references()
        .iter()
        .find(|o| o.kind == workload.kind && o.name == workload.name)
        .ok_or_else(|| {
            format!(
                "the report is not owned by its workload {} {}: the operator did not open it",
                workload.kind, workload.name
            )
        })?;
    let report_uid = report.uid().unwrap_or_default();
    if owners.is_some_and(|o| !report_uid.is_empty() && o.holds(&report_uid, &owner.uid)) {
        return Ok(());
    }
    let kind: ResourceKind = workload.kind.parse()?;
    let live = cluster
        .get(kind, Some(&namespace), &workload.name)
        .await
        .map_err(|e| format!("cannot read {} {}: {e}", workload.kind, workload.name))?
        .ok_or_else(|| format!("{} {} no longer exists", workload.kind, workload.name))?;
    if live["metadata"]["uid"].as_str() != Some(owner.uid.as_str()) {
        return Err(format!(
            "the report's owner reference names another {} {} (UID {}) than the live one",
            workload.kind, workload.name, owner.uid
        ));
    }
    if let Some(o) = owners
        && !report_uid.is_empty()
    {
        o.remember(&report_uid, &owner.uid);
    }
    Ok(())
}

/// Why the operator may no longer act on a report for `pod`, if it may not: `--namespace` must
/// cover the Pod and the report's policy (`policy`, looked up by the report's `spec.policy`) must
/// still exist and select it for its failure class.
pub fn still_selected(
    report: &DiagnosticReport,
    pod: &Pod,
    policy: Option<&CompiledPolicy>,
    watched: &[String],
) -> Result<(), String> {
    let namespace = &report.spec.pod.namespace;
    if !watched.is_empty() && !watched.contains(namespace) {
        return Err(format!(
            "namespace {namespace} is outside the operator's --namespace ({})",
            watched.join(", ")
        ));
    }
    let class = report.spec.failure.class;
    match policy {
        Some(p) if p.selects(pod, class) => Ok(()),
        Some(_) => Err(format!(
            "policy {} no longer selects Pod {} for {class}",
            report.spec.policy,
            pod.name_any()
        )),
        None => Err(format!(
            "policy {} no longer exists (or does not compile)",
            report.spec.policy
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::testing::Objects;
    use serde_json::json;

    fn report(
        namespace: &str,
        pod_namespace: &str,
        label: bool,
        owner_uid: &str,
    ) -> DiagnosticReport {
        let mut labels = json!({});
        if label {
            labels["app.kubernetes.io/managed-by"] = json!(MANAGED_BY);
        }
        serde_json::from_value(json!({
            "apiVersion": "sre-operator.dev/v1alpha1", "kind": "DiagnosticReport",
            "metadata": {"name": "deployment-web-oomkilled", "namespace": namespace, "labels": labels,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": owner_uid}]},
            "spec": {"pod": {"namespace": pod_namespace, "name": "web-1", "uid": "p"},
                     "workload": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "failure": {"class": "OOMKilled", "reason": "OOMKilled", "evidence": []},
                     "policy": "auto"}
        }))
        .unwrap()
    }

    fn cluster() -> Objects {
        Objects {
            objects: vec![json!({"kind": "Deployment",
                "metadata": {"name": "web", "namespace": "app", "uid": "uid-web"}})],
            held: vec![ResourceKind::Deployment],
        }
    }

    #[tokio::test]
    async fn only_a_report_beside_its_pod_labelled_and_owned_is_ours() {
        let c = cluster();
        opened_by_us(&report("app", "app", true, "uid-web"), &c)
            .await
            .unwrap();
        for (forged, why) in [
            (
                report("app", "victim", true, "uid-web"),
                "names a Pod in namespace victim",
            ),
            (report("app", "app", false, "uid-web"), "lacks the label"),
            (
                report("app", "app", true, "uid-other"),
                "another Deployment web",
            ),
        ] {
            let err = opened_by_us(&forged, &c).await.unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }

    #[tokio::test]
    async fn a_checked_owner_is_not_read_again_but_a_forged_one_still_is() {
        let owners = CheckedOwners::default();
        let with_uid = |mut r: DiagnosticReport, uid: &str| {
            r.metadata.uid = Some(uid.into());
            r
        };
        let ours = with_uid(report("app", "app", true, "uid-web"), "r1");
        opened_by_us_remembered(&ours, &cluster(), &owners)
            .await
            .unwrap();
        // The Deployment is not read again: a cluster without it still passes the report.
        let empty = Objects {
            objects: vec![],
            held: vec![ResourceKind::Deployment],
        };
        opened_by_us_remembered(&ours, &empty, &owners)
            .await
            .unwrap();
        // The same report rewritten to name another owner, or another report, is read live.
        let rewritten = with_uid(report("app", "app", true, "uid-other"), "r1");
        assert!(
            opened_by_us_remembered(&rewritten, &cluster(), &owners)
                .await
                .is_err()
        );
        let other = with_uid(report("app", "app", true, "uid-web"), "r2");
        assert!(
            opened_by_us_remembered(&other, &empty, &owners)
                .await
                .is_err()
        );
        // What is not ours is never remembered past its checks.
        let unlabelled = with_uid(report("app", "app", false, "uid-web"), "r1");
        assert!(
            opened_by_us_remembered(&unlabelled, &cluster(), &owners)
                .await
                .is_err()
        );
    }
}

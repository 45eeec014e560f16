//! `sre-operator run` starting (or restarting) against the in-process API server of
//! support/fake_api.rs, one whose DebugPolicy LIST answers seconds after the others, as a loaded
//! API server's may. What the operator reads at start-up is judged against the policies only
//! once they are listed: before, a report's policy cannot be told from a deleted one, and a
//! failure would be selected by no policy at all.

#[path = "../benches/common/mod.rs"]
mod common;
#[path = "support/fake_api.rs"]
mod fake_api;

use std::path::Path;
use std::time::{Duration, Instant};

use common::operator::Operator;

use fake_api::{Mock, NS, deployment, pod_name, serve_mock, workload};
use serde_json::{Value, json};
use sre_operator::crd::{
    DiagnosticReportStatus, PatchOp, PatchOperation, Phase, SafetyVerdict, SuggestedPatch,
    TargetRef,
};

const REPORT: &str = "deployment-svc-000-crashloopbackoff";

/// An approved report the operator opened for `svc-000` (bench's policy selects its Pods):
/// labelled and owned as the operator writes it, its patch reviewed and its digest recorded.
fn approved_report() -> Value {
    let target = deployment(&workload(0));
    let suggestion = SuggestedPatch {
        target: TargetRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: NS.into(),
            name: "svc-000".into(),
        },
        patch: vec![PatchOperation {
            op: PatchOp::Replace,
            path: "/spec/template/spec/containers/0/env/1/value".into(),
            from: None,
            value: Some(json!("redis-master")),
        }],
        explanation: "point REDIS_HOST at redis-master".into(),
    };
    let status = DiagnosticReportStatus {
        phase: Some(Phase::Approved),
        patch_digest: Some(suggestion.digest()),
        suggested_patch: Some(suggestion),
        safety: Some(SafetyVerdict::allowed("patch-safety")),
        target_resource_version: target["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
        ..Default::default()
    };
    json!({
        "apiVersion": "sre-operator.dev/v1alpha1", "kind": "DiagnosticReport",
        "metadata": {"name": REPORT, "namespace": NS, "uid": "report-1", "resourceVersion": "500",
                     "generation": 2, "creationTimestamp": fake_api::T_CREATED,
                     "labels": {"app.kubernetes.io/managed-by": sre_operator::triage::MANAGED_BY},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                          "name": "svc-000", "uid": target["metadata"]["uid"]}]},
        "spec": {"pod": {"namespace": NS, "name": pod_name(0), "uid": "pod-1"},
                 "workload": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "svc-000"},
                 "failure": {"class": "CrashLoopBackOff", "reason": "Error", "evidence": []},
                 "policy": "bench", "decision": "Approved"},
        "status": status,
    })
}

/// `sre-operator run --namespace bench` against `kubeconfig`, with its plugin cache and log in
/// `dir`; killed on drop.
fn start_operator(kubeconfig: &Path, dir: &Path) -> Operator {
    Operator::start(
        kubeconfig,
        dir.join("operator.log"),
        &["--namespace", NS, "--http-addr", "127.0.0.1:0"],
        &[("SRE_OPERATOR_CACHE", &dir.join("plugin-cache"))],
    )
}

/// What `found` returns first, checked every 50 ms for `within`; the test fails, with the
/// operator's log, if the operator exits or the time runs out.
async fn until<T>(
    operator: &mut Operator,
    what: &str,
    within: Duration,
    found: impl Fn() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(t) = found() {
            return t;
        }
        operator.check_alive();
        assert!(
            Instant::now() < deadline,
            "not within {within:?}: {what}\n{}",
            operator.tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approved_report_is_applied_after_a_restart_even_when_the_policies_list_late() {
    let dir = tempfile::tempdir().unwrap();
    let mut mock = Mock::new(1);
    mock.policy_list_delay = Duration::from_secs(2);
    mock.reports
        .lock()
        .unwrap()
        .insert(REPORT.into(), approved_report());
    let (mock, kubeconfig, _server) = serve_mock(mock, "startup", dir.path()).await;
    let mut operator = start_operator(&kubeconfig, dir.path());
    // The operator's first word on the report: the intent to apply, or a failure.
    let first = until(
        &mut operator,
        "the operator writes the approved report",
        Duration::from_secs(120),
        || mock.report_writes.lock().unwrap().first().cloned(),
    )
    .await;
    let status = &first["status"];
    assert_eq!(
        status["phase"], "Approved",
        "the approved report was not taken on (a policy not yet listed reads as deleted): {status:#}"
    );
    assert!(
        status["apply"]["startedAt"].is_string(),
        "the intent to apply is the first write: {status:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quota_refusal_listed_before_the_policies_opens_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut mock = Mock::new(1);
    mock.policy_list_delay = Duration::from_secs(2);
    // The replicaset-controller said it once, before the operator started; it says it again
    // only after its back-off, minutes later.
    mock.refuse_pods(0);
    let (mock, kubeconfig, _server) = serve_mock(mock, "startup", dir.path()).await;
    let mut operator = start_operator(&kubeconfig, dir.path());
    let report = until(
        &mut operator,
        "a report for svc-000's refused Pods",
        Duration::from_secs(60),
        || mock.reports.lock().unwrap().values().next().cloned(),
    )
    .await;
    assert_eq!(
        report["spec"]["failure"]["class"], "FailedCreate",
        "{report:#}"
    );
    assert_eq!(report["spec"]["workload"]["name"], "svc-000", "{report:#}");
    assert!(
        report["spec"]["failure"]["evidence"]
            .to_string()
            .contains("exceeded quota"),
        "{report:#}"
    );
}

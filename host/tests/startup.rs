//! `sre-operator run` starting with reports already open, as after a restart, against the
//! in-process API server of support/fake_api.rs: one whose DebugPolicy LIST answers after the
//! report LIST does, as a loaded API server may. A report is judged against its policy only
//! once the policies are listed; before, its policy could not be told from a deleted one.

#[path = "support/fake_api.rs"]
mod fake_api;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fake_api::{Mock, NS, deployment, pod_name, serve_mock, workload};
use serde_json::{Value, json};
use sre_operator::crd::{
    DiagnosticReportStatus, PatchOp, PatchOperation, Phase, SafetyVerdict, SuggestedPatch,
    TargetRef, Verdict,
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
        safety: Some(SafetyVerdict {
            verdict: Verdict::Allowed,
            filter: "patch-safety".into(),
            reason: None,
        }),
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
    let log = dir.path().join("operator.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut operator = Command::new(env!("CARGO_BIN_EXE_sre-operator"))
        .args(["--log", "warn,sre_operator=info", "run", "--namespace", NS])
        .args(["--http-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", &kubeconfig)
        .env("NO_COLOR", "1")
        .env("SRE_OPERATOR_CACHE", dir.path().join("plugin-cache"))
        .env_remove("SRE_OPERATOR_BRAIN")
        .env_remove("SRE_OPERATOR_NAMESPACES")
        .env_remove("SRE_OPERATOR_PLUGIN_DIR")
        .env_remove("SRE_OPERATOR_LEADER_ELECTION")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("the sre-operator binary runs");

    // The operator's first word on the report: the intent to apply, or a failure.
    let deadline = Instant::now() + Duration::from_secs(120);
    let first = loop {
        let written = mock.report_writes.lock().unwrap().first().cloned();
        if let Some(report) = written {
            break report;
        }
        if let Ok(Some(status)) = operator.try_wait() {
            panic!(
                "sre-operator exited ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the operator did not act on the approved report within 120 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = operator.kill();
    let _ = operator.wait();
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

//! Scoring the reports of one scenario against its `expected.yaml`.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube_quantity::ParsedQuantity;
use serde::Serialize;
use serde_json::Value;

use super::scenario::{Expected, OpExpectation};
use crate::crd::{DiagnosticReport, PatchOperation, Verdict};

/// One check: passed, or failed with what was wrong.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub pass: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Check {
    fn pass() -> Check {
        Check {
            pass: true,
            detail: None,
        }
    }

    fn fail(detail: impl Into<String>) -> Check {
        Check {
            pass: false,
            detail: Some(detail.into()),
        }
    }

    fn from_failures(failures: Vec<String>) -> Check {
        if failures.is_empty() {
            Check::pass()
        } else {
            Check::fail(failures.join("; "))
        }
    }
}

/// The checks of one scenario.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Score {
    /// The Pod was reported, with the expected failure class (and reason, when given).
    pub class: Check,
    /// Every expected word or regex is in `status.findings.rootCause`.
    pub root_cause: Check,
    /// The expected operations are in the suggested patch, on the expected target; or, for a
    /// NoFix scenario, no patch is offered for approval.
    pub patch: Check,
    /// `status.phase` is the expected one.
    pub phase: Check,
    /// Everything else: the number of reports, and text that must appear in none.
    pub other: Check,
}

impl Score {
    pub fn passed(&self) -> bool {
        self.checks().iter().all(|(_, c)| c.pass)
    }

    pub fn checks(&self) -> [(&'static str, &Check); 5] {
        [
            ("class", &self.class),
            ("rootCause", &self.root_cause),
            ("patch", &self.patch),
            ("phase", &self.phase),
            ("other", &self.other),
        ]
    }
}

/// The report scored for the scenario's Pod: the one with the expected class if there are several.
pub fn find_report<'a>(
    expected: &Expected,
    reports: &'a [DiagnosticReport],
) -> Option<&'a DiagnosticReport> {
    let mut candidates = reports
        .iter()
        .filter(|r| {
            expected
                .pod
                .matches(&r.spec.pod.namespace, &r.spec.pod.name)
        })
        .peekable();
    let first = *candidates.peek()?;
    Some(
        candidates
            .find(|r| r.spec.failure.class == expected.class)
            .unwrap_or(first),
    )
}

fn quantity(text: &str) -> Option<f64> {
    ParsedQuantity::try_from(&Quantity(text.to_string()))
        .ok()?
        .to_bytes_f64()
}

fn op_matches(expected: &OpExpectation, actual: &PatchOperation) -> bool {
    if expected.op != actual.op || expected.path != actual.path {
        return false;
    }
    if let Some(values) = &expected.one_of {
        return actual.value.as_ref().is_some_and(|v| values.contains(v));
    }
    match (&expected.value, &expected.at_least) {
        (_, Some(min)) => {
            let value = match &actual.value {
                Some(Value::String(s)) => quantity(s),
                Some(Value::Number(n)) => n.as_f64(),
                _ => None,
            };
            matches!((value, quantity(min)), (Some(v), Some(m)) if v >= m)
        }
        (Some(value), None) => actual.value.as_ref() == Some(value),
        (None, None) => true,
    }
}

fn describe(op: &PatchOperation) -> String {
    let name = format!("{:?}", op.op).to_lowercase();
    match &op.value {
        Some(v) => format!("{name} {} = {v}", op.path),
        None => format!("{name} {}", op.path),
    }
}

/// Scores a scenario's reports. `reports` are all the reports the pipeline produced for the dump.
pub fn score(expected: &Expected, reports: &[DiagnosticReport]) -> Score {
    let mut other = Vec::new();
    if let Some(want) = expected.reports
        && reports.len() != want
    {
        let names: Vec<String> = reports
            .iter()
            .map(|r| {
                format!(
                    "{}/{} {}",
                    r.spec.pod.namespace, r.spec.pod.name, r.spec.failure.class
                )
            })
            .collect();
        other.push(format!(
            "{} report(s), expected {want}: {}",
            reports.len(),
            names.join(", ")
        ));
    }
    for secret in &expected.must_not_contain {
        let leaked: Vec<String> = reports
            .iter()
            .filter(|r| {
                serde_json::to_string(r)
                    .map(|json| json.contains(secret.as_str()))
                    .unwrap_or(false)
            })
            .map(|r| format!("{}/{}", r.spec.pod.namespace, r.spec.pod.name))
            .collect();
        if !leaked.is_empty() {
            other.push(format!(
                "{secret:?} appears in the report of {}",
                leaked.join(", ")
            ));
        }
    }
    let other = Check::from_failures(other);

    let Some(report) = find_report(expected, reports) else {
        let missing = Check::fail(format!("no report for Pod {}", expected.pod));
        return Score {
            class: missing.clone(),
            root_cause: missing.clone(),
            patch: missing.clone(),
            phase: missing,
            other,
        };
    };

    let failure = &report.spec.failure;
    let mut class = Vec::new();
    if failure.class != expected.class {
        class.push(format!(
            "class {}, expected {}",
            failure.class, expected.class
        ));
    }
    if let Some(reason) = &expected.reason
        && &failure.reason != reason
    {
        class.push(format!("reason {}, expected {reason}", failure.reason));
    }
    let class = Check::from_failures(class);

    let status = report.status.clone().unwrap_or_default();
    let root = status
        .findings
        .as_ref()
        .map(|f| f.root_cause.as_str())
        .unwrap_or("");
    let missing: Vec<String> = expected
        .root_cause
        .iter()
        .filter(|p| !p.is_match(root).unwrap_or(false))
        .map(ToString::to_string)
        .collect();
    let root_cause = if missing.is_empty() {
        Check::pass()
    } else if root.is_empty() {
        Check::fail(format!(
            "no root cause ({})",
            status.message.as_deref().unwrap_or("no status")
        ))
    } else {
        Check::fail(format!("lacks {} in {root:?}", missing.join(", ")))
    };

    let offered = status.suggested_patch.as_ref().filter(|_| {
        status
            .safety
            .as_ref()
            .is_none_or(|s| s.verdict != Verdict::Denied)
    });
    let patch = match &expected.patch {
        None => match offered {
            None => Check::pass(),
            Some(p) => Check::fail(format!(
                "a patch is offered where none is right: {}",
                p.patch.iter().map(describe).collect::<Vec<_>>().join(", ")
            )),
        },
        Some(want) => match &status.suggested_patch {
            None => Check::fail("no patch"),
            Some(actual) => {
                let mut problems = Vec::new();
                let (kind, name) = match &want.target {
                    Some(t) => (t.kind.as_str(), t.name.as_str()),
                    None => (
                        report.spec.workload.kind.as_str(),
                        report.spec.workload.name.as_str(),
                    ),
                };
                if actual.target.kind != kind || actual.target.name != name {
                    problems.push(format!(
                        "targets {} {}, expected {kind} {name}",
                        actual.target.kind, actual.target.name
                    ));
                }
                for op in &want.operations {
                    if !actual.patch.iter().any(|a| op_matches(op, a)) {
                        problems.push(format!("missing {op}"));
                    }
                }
                if want.exact {
                    for a in &actual.patch {
                        if !want.operations.iter().any(|op| op_matches(op, a)) {
                            problems.push(format!("unexpected {}", describe(a)));
                        }
                    }
                }
                Check::from_failures(problems)
            }
        },
    };

    let want_phase = expected.expected_phase();
    let phase = match status.phase {
        Some(p) if p == want_phase => Check::pass(),
        Some(p) => {
            let why = status
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            Check::fail(format!("{p:?}, expected {want_phase:?}{why}"))
        }
        None => Check::fail(format!(
            "not investigated, expected {want_phase:?}{}",
            if report.status.is_none() {
                " (skipped or detect-only)"
            } else {
                ""
            }
        )),
    };
    Score {
        class,
        root_cause,
        patch,
        phase,
        other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{
        DiagnosticReportSpec, DiagnosticReportStatus, Failure, FailureClass, Findings, PatchOp,
        Phase, PodRef, SafetyVerdict, SuggestedPatch, TargetRef, WorkloadRef,
    };
    use serde_json::json;

    const PATH: &str = "/spec/template/spec/containers/0/env/0/value";

    fn expected(extra: &str) -> Expected {
        Expected::parse(&format!(
            r#"
pod: {{namespace: default, namePrefix: critical-app-}}
class: CrashLoopBackOff
rootCause: [redis:6379, {{regex: 'Service redis-master'}}]
patch:
  operations:
    - {{op: test, path: {PATH}, value: redis}}
    - {{op: replace, path: {PATH}, value: redis-master}}
{extra}
"#
        ))
        .unwrap()
    }

    fn op(op: PatchOp, value: &str) -> PatchOperation {
        PatchOperation {
            op,
            path: PATH.into(),
            from: None,
            value: Some(json!(value)),
        }
    }

    /// The report a correct brain writes for critical-app.
    fn patch_of(r: &mut DiagnosticReport) -> &mut Vec<PatchOperation> {
        &mut r
            .status
            .as_mut()
            .unwrap()
            .suggested_patch
            .as_mut()
            .unwrap()
            .patch
    }

    fn report() -> DiagnosticReport {
        DiagnosticReport::new(
            "deployment-critical-app-crashloopbackoff",
            DiagnosticReportSpec {
                pod: PodRef {
                    namespace: "default".into(),
                    name: "critical-app-7d4b9c6f5-h8x2m".into(),
                    uid: "u".into(),
                },
                workload: WorkloadRef {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: "critical-app".into(),
                },
                failure: Failure {
                    class: FailureClass::CrashLoopBackOff,
                    reason: "Error".into(),
                    container: Some("app".into()),
                    evidence: vec![],
                },
                policy: "default".into(),
                decision: None,
                approved_digest: None,
            },
        )
        .with_status(DiagnosticReportStatus {
            phase: Some(Phase::AwaitingApproval),
            findings: Some(Findings {
                summary: "s".into(),
                root_cause: "The application connects to redis:6379, but there is no Service named redis; Service redis-master serves that port.".into(),
                evidence: vec![],
            }),
            suggested_patch: Some(SuggestedPatch {
                target: TargetRef {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    namespace: "default".into(),
                    name: "critical-app".into(),
                },
                patch: vec![op(PatchOp::Test, "redis"), op(PatchOp::Replace, "redis-master")],
                explanation: "e".into(),
            }),
            safety: Some(SafetyVerdict::allowed("patch-safety")),
            ..Default::default()
        })
    }

    trait WithStatus {
        fn with_status(self, status: DiagnosticReportStatus) -> Self;
    }
    impl WithStatus for DiagnosticReport {
        fn with_status(mut self, status: DiagnosticReportStatus) -> Self {
            self.status = Some(status);
            self
        }
    }

    fn failed(score: &Score) -> Vec<&'static str> {
        score
            .checks()
            .iter()
            .filter(|(_, c)| !c.pass)
            .map(|(n, _)| *n)
            .collect()
    }

    #[test]
    fn a_correct_report_passes() {
        let score = score(
            &expected("reports: 1\nmustNotContain: [hunter2]"),
            &[report()],
        );
        assert!(score.passed(), "{score:?}");
    }

    #[test]
    fn a_wrong_class_fails() {
        let mut r = report();
        r.spec.failure.class = FailureClass::OomKilled;
        let score = score(&expected(""), &[r]);
        assert!(!score.passed());
        assert_eq!(failed(&score), ["class"]);
        assert_eq!(
            score.class.detail.as_deref(),
            Some("class OOMKilled, expected CrashLoopBackOff")
        );
    }

    #[test]
    fn a_missing_patch_op_fails() {
        let mut r = report();
        let status = r.status.as_mut().unwrap();
        // The replace without its test guard.
        status.suggested_patch.as_mut().unwrap().patch.remove(0);
        let score = score(&expected(""), &[r]);
        assert_eq!(failed(&score), ["patch"]);
        assert!(
            score.patch.detail.as_deref().unwrap().starts_with(
                "missing test /spec/template/spec/containers/0/env/0/value = \"redis\""
            ),
            "{score:?}"
        );
        // A different value is not the expected operation either.
        let mut r = report();
        r.status
            .as_mut()
            .unwrap()
            .suggested_patch
            .as_mut()
            .unwrap()
            .patch[1] = op(PatchOp::Replace, "redis-master.default.svc");
        assert_eq!(failed(&score_of(&r)), ["patch"]);
    }

    fn score_of(r: &DiagnosticReport) -> Score {
        score(&expected(""), std::slice::from_ref(r))
    }

    #[test]
    fn a_leaked_secret_fails() {
        let mut r = report();
        r.status
            .as_mut()
            .unwrap()
            .reasoning_chain
            .push(crate::crd::ReasoningStep {
                observation: "log: DB_PASSWORD=hunter2".into(),
                thought: "t".into(),
                action: None,
            });
        let score = score(&expected("mustNotContain: [hunter2]"), &[r]);
        assert_eq!(failed(&score), ["other"]);
        assert!(
            score
                .other
                .detail
                .as_deref()
                .unwrap()
                .contains("\"hunter2\" appears")
        );
    }

    #[test]
    fn a_missing_word_in_the_root_cause_fails() {
        let mut r = report();
        r.status
            .as_mut()
            .unwrap()
            .findings
            .as_mut()
            .unwrap()
            .root_cause = "The application cannot reach redis:6379.".into();
        assert_eq!(failed(&score_of(&r)), ["rootCause"]);
    }

    #[test]
    fn an_unexpected_phase_or_a_patch_where_none_is_right_fails() {
        let mut r = report();
        r.status.as_mut().unwrap().phase = Some(Phase::Failed);
        assert_eq!(failed(&score_of(&r)), ["phase"]);

        let nofix = Expected::parse(
            "pod: {namespace: default, namePrefix: critical-app-}\nclass: CrashLoopBackOff\nphase: NoFix\n",
        )
        .unwrap();
        let s = score(&nofix, &[report()]);
        assert_eq!(failed(&s), ["patch", "phase"]);
        // A patch that the safety filter denied is not offered: NoFix holds.
        let mut r = report();
        let status = r.status.as_mut().unwrap();
        status.phase = Some(Phase::NoFix);
        status.safety.as_mut().unwrap().verdict = Verdict::Denied;
        assert!(score(&nofix, &[r]).passed());
    }

    #[test]
    fn no_report_or_extra_reports_fail() {
        let s = score(&expected(""), &[]);
        assert_eq!(failed(&s), ["class", "rootCause", "patch", "phase"]);
        let mut noise = report();
        noise.spec.pod.name = "web-66b8d9f7c5-fj8r2".into();
        let s = score(&expected("reports: 1"), &[report(), noise]);
        assert_eq!(failed(&s), ["other"]);
    }

    #[test]
    fn quantities_may_be_bounded_and_patches_exact() {
        let e = Expected::parse(&format!(
            "pod: {{namespace: default, name: critical-app-7d4b9c6f5-h8x2m}}\nclass: CrashLoopBackOff\npatch:\n  exact: true\n  operations:\n    - {{op: replace, path: {PATH}, atLeast: 768Mi}}\n"
        ))
        .unwrap();
        let mut r = report();
        let patch = patch_of(&mut r);
        *patch = vec![op(PatchOp::Replace, "1Gi")];
        assert!(score(&e, std::slice::from_ref(&r)).passed());
        let patch = patch_of(&mut r);
        *patch = vec![op(PatchOp::Replace, "512Mi")];
        assert_eq!(failed(&score(&e, std::slice::from_ref(&r))), ["patch"]);
        let patch = patch_of(&mut r);
        *patch = vec![op(PatchOp::Replace, "960Mi"), op(PatchOp::Test, "x")];
        let s = score(&e, std::slice::from_ref(&r));
        assert_eq!(
            s.patch.detail.as_deref(),
            Some("unexpected test /spec/template/spec/containers/0/env/0/value = \"x\"")
        );
        let e = Expected::parse(&format!(
            "pod: {{namespace: default, name: critical-app-7d4b9c6f5-h8x2m}}\nclass: CrashLoopBackOff\npatch:\n  operations:\n    - {{op: replace, path: {PATH}, oneOf: [8080, http]}}\n"
        ))
        .unwrap();
        for (value, pass) in [
            (json!(8080), true),
            (json!("http"), true),
            (json!("8080"), false),
        ] {
            let patch = patch_of(&mut r);
            patch[0].value = Some(value.clone());
            assert_eq!(
                score(&e, std::slice::from_ref(&r)).passed(),
                pass,
                "{value}"
            );
        }
    }
}

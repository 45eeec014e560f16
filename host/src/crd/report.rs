use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::FailureClass;

/// One investigation of one failing workload: what failed (spec, written by the operator when it
/// opens the report), what the agent found and suggests (status), and the human decision
/// (`spec.decision`, written with kubectl).
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "sre-operator.dev",
    version = "v1alpha1",
    kind = "DiagnosticReport",
    plural = "diagnosticreports",
    singular = "diagnosticreport",
    namespaced,
    shortname = "dr",
    shortname = "diag",
    category = "sre",
    status = "DiagnosticReportStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Pod","type":"string","jsonPath":".spec.pod.name"}"#,
    printcolumn = r#"{"name":"Class","type":"string","jsonPath":".spec.failure.class"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".spec.failure.reason","priority":1}"#,
    printcolumn = r#"{"name":"Workload","type":"string","jsonPath":".spec.workload.name","priority":1}"#,
    printcolumn = r#"{"name":"Decision","type":"string","jsonPath":".spec.decision","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    // An approval is of a patch someone could read: not of a report still being analysed, and
    // not of one that ended without a fix. (A root rule: it sees status; Rejected is always fine.)
    validation = kube::core::Rule::new(
        "!has(self.spec.decision) || self.spec.decision != 'Approved' || (has(self.status) && has(self.status.phase) && self.status.phase in ['AwaitingApproval', 'Approved', 'Applied', 'Resolved', 'Unresolved', 'Failed'])"
    ).message("spec.decision can be Approved only while the report is AwaitingApproval: read the suggested patch first (kubectl sre show)")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "!has(oldSelf.decision) || (has(self.decision) && self.decision == oldSelf.decision)"
).message("spec.decision is final once set; open a new report instead"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(oldSelf.approvedDigest) || (has(self.approvedDigest) && self.approvedDigest == oldSelf.approvedDigest)"
).message("spec.approvedDigest is final once set"))]
#[x_kube(validation = kube::core::Rule::new(
    "self.pod == oldSelf.pod && self.workload == oldSelf.workload && self.policy == oldSelf.policy && self.failure.class == oldSelf.failure.class"
).message("spec.pod, spec.workload, spec.policy and spec.failure.class are written by the operator and cannot change"))]
pub struct DiagnosticReportSpec {
    pub pod: PodRef,
    pub workload: WorkloadRef,
    pub failure: Failure,
    /// The DebugPolicy that selected the Pod.
    #[schemars(length(max = 253))]
    pub policy: String,
    /// The human decision: set it to `Approved` to apply the suggested patch, `Rejected` to close.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The digest of the patch the approver read (`kubectl sre show` prints it, `kubectl sre
    /// approve` records it): the operator applies only that patch, byte for byte. An approval
    /// without it (plain `kubectl patch`) approves the patch in status, which cannot change once
    /// the report awaits approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub approved_digest: Option<String>,
}

#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PodRef {
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default)]
    pub uid: String,
}

/// The Pod's owner as a person thinks of it: ReplicaSet resolved to its Deployment, Job to its
/// CronJob; a bare Pod is its own workload.
#[derive(
    KubeSchema, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRef {
    pub api_version: String,
    pub kind: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub class: FailureClass,
    /// The most specific reason known (`Error`, `InsufficientMemory`, `UntoleratedTaint`, ...).
    pub reason: String,
    /// The container the failure is about, when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Facts read from the Pod's status and events, one per line.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub evidence: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Decision {
    Approved,
    Rejected,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Phase {
    Analyzing,
    AwaitingApproval,
    Approved,
    Applied,
    Resolved,
    Unresolved,
    Rejected,
    NoFix,
    Failed,
}

impl Phase {
    /// The phase as written in status (PascalCase): also the reason of its Event and condition,
    /// and its metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Analyzing => "Analyzing",
            Phase::AwaitingApproval => "AwaitingApproval",
            Phase::Approved => "Approved",
            Phase::Applied => "Applied",
            Phase::Resolved => "Resolved",
            Phase::Unresolved => "Unresolved",
            Phase::Rejected => "Rejected",
            Phase::NoFix => "NoFix",
            Phase::Failed => "Failed",
        }
    }

    /// Whether the report is finished: nothing more happens to it but its expiry.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Phase::Resolved | Phase::Unresolved | Phase::Rejected | Phase::NoFix | Phase::Failed
        )
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
// What an approver reads is what is applied: once a report awaits approval, the digest of its
// patch is fixed, and the operator applies a patch only when it has that digest.
#[x_kube(validation = kube::core::Rule::new(
    "!has(oldSelf.phase) || oldSelf.phase != 'AwaitingApproval' || !has(oldSelf.patchDigest) || (has(self.patchDigest) && self.patchDigest == oldSelf.patchDigest)"
).message("status.patchDigest cannot change once the report awaits approval"))]
pub struct DiagnosticReportStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings: Option<Findings>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasoning_chain: Vec<ReasoningStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggested_patch: Option<SuggestedPatch>,
    /// [`SuggestedPatch::digest`] of the suggested patch, written with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<SafetyVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brain: Option<BrainUsage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Why the report is Failed, NoFix or Unresolved, in one sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The patch target's resourceVersion when the patch was reviewed: a different one at apply
    /// time means the target drifted and the patch is reviewed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_resource_version: Option<String>,
    /// The apply, recorded before it happens so a restart never applies twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply: Option<ApplyRecord>,
    /// The incident this report belongs to (`crate::incident::name`): reports whose failures
    /// share one cause, investigated once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// On the report that ran the incident's one investigation: the shared cause and every
    /// affected workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_detail: Option<IncidentDetail>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncidentDetail {
    pub name: String,
    /// The shared cause, as the operator read it before investigating (`ConfigMap shop/app-config`,
    /// `registry registry.example.com unreachable`).
    pub cause: String,
    /// The members in this report's namespace: who may read this report learns nothing of other
    /// namespaces' workloads (`kubectl sre list -A` shows them all, to who may list them).
    #[serde(default)]
    pub members: Vec<IncidentMember>,
    /// Affected workloads in other namespaces, counted.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub elsewhere: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl IncidentDetail {
    /// The detail as a report in `namespace` may carry it: other namespaces' members counted,
    /// not named.
    pub fn seen_from(mut self, namespace: &str) -> IncidentDetail {
        let total = self.members.len();
        self.members.retain(|m| m.namespace == namespace);
        self.elsewhere = (total - self.members.len()) as u32;
        self
    }
}

#[derive(
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct IncidentMember {
    pub namespace: String,
    /// The member's DiagnosticReport.
    pub report: String,
    /// `Kind/name` of the affected workload.
    pub workload: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplyRecord {
    /// When the operator decided to apply (the intent).
    pub started_at: Time,
    /// When the API server accepted the patch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<Time>,
    /// The patch that undoes this one (test the new values, put the old ones back).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollback_patch: Vec<PatchOperation>,
    /// The workload's generation after the patch, for verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_generation: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Findings {
    pub summary: String,
    pub root_cause: String,
    #[serde(default)]
    pub evidence: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReasoningStep {
    pub observation: String,
    pub thought: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ToolAction>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ToolAction {
    pub tool: String,
    #[schemars(schema_with = "super::any_json")]
    pub arguments: serde_json::Value,
    /// The tool's answer, truncated.
    pub result: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SuggestedPatch {
    pub target: TargetRef,
    /// RFC 6902 operations, `test` guards first.
    #[schemars(length(min = 1, max = 64))]
    pub patch: Vec<PatchOperation>,
    pub explanation: String,
}

impl SuggestedPatch {
    /// `sha256:<hex>` of what applying the patch means, its target and its operations, as
    /// canonical JSON (the explanation is not applied, so it is not part of it). An approval is
    /// pinned to it.
    pub fn digest(&self) -> String {
        let canonical = serde_json::json!({ "target": self.target, "patch": self.patch });
        let digest = Sha256::digest(canonical.to_string().as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// One RFC 6902 operation, as `kubectl patch --type json` takes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PatchOperation {
    pub op: PatchOp,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::optional_any_json")]
    pub value: Option<serde_json::Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PatchOp {
    Add,
    Remove,
    Replace,
    Move,
    Copy,
    Test,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SafetyVerdict {
    pub verdict: Verdict,
    /// The filter that decided (a plugin name, or `host` for the host's own checks).
    pub filter: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl SafetyVerdict {
    /// The patch passed `filter` (the filters' names, joined) unchanged.
    pub fn allowed(filter: impl Into<String>) -> SafetyVerdict {
        SafetyVerdict {
            verdict: Verdict::Allowed,
            filter: filter.into(),
            reason: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Verdict {
    Allowed,
    Denied,
    Rewritten,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrainUsage {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub steps: u32,
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

/// The report name for a workload and failure class: deterministic, so that however many Pods of
/// a workload fail and however often the operator restarts, there is one name to create.
pub fn report_name(workload: &WorkloadRef, class: FailureClass) -> String {
    let base = format!(
        "{}-{}-{}",
        workload.kind.to_ascii_lowercase(),
        workload.name,
        class.as_str().to_ascii_lowercase()
    );
    const MAX: usize = 253;
    if base.len() <= MAX {
        return base;
    }
    // Keep a readable prefix and make it unique with a digest of the whole name.
    let digest = Sha256::digest(base.as_bytes());
    let suffix: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    let mut prefix = base[..MAX - suffix.len() - 1]
        .trim_end_matches(['-', '.'])
        .to_string();
    prefix.push('-');
    prefix.push_str(&suffix);
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_are_stable_and_bounded() {
        let w = WorkloadRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "payment".into(),
        };
        assert_eq!(
            report_name(&w, FailureClass::Pending),
            "deployment-payment-pending"
        );
        assert_eq!(
            report_name(&w, FailureClass::OomKilled),
            "deployment-payment-oomkilled"
        );
        let long = WorkloadRef {
            name: "a".repeat(250),
            ..w
        };
        let name = report_name(&long, FailureClass::CrashLoopBackOff);
        assert_eq!(name.len(), 253);
        assert_eq!(name, report_name(&long, FailureClass::CrashLoopBackOff));
        assert_ne!(name, report_name(&long, FailureClass::Pending));
    }

    #[test]
    fn a_patch_digest_changes_with_any_operation_and_not_with_the_explanation() {
        let op = |value: &str| PatchOperation {
            op: PatchOp::Replace,
            path: "/spec/replicas".into(),
            from: None,
            value: Some(serde_json::json!(value)),
        };
        let patch = SuggestedPatch {
            target: TargetRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: "app".into(),
                name: "web".into(),
            },
            patch: vec![op("2")],
            explanation: "why".into(),
        };
        let digest = patch.digest();
        assert!(
            digest.starts_with("sha256:") && digest.len() == 71,
            "{digest}"
        );
        let explained = SuggestedPatch {
            explanation: "another why".into(),
            ..patch.clone()
        };
        assert_eq!(explained.digest(), digest);
        let changed = SuggestedPatch {
            patch: vec![op("3")],
            ..patch.clone()
        };
        assert_ne!(changed.digest(), digest);
        let mut retargeted = patch.clone();
        retargeted.target.namespace = "victim".into();
        assert_ne!(retargeted.digest(), digest);
    }
}

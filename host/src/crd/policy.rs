//! `DebugPolicy`: which failing Pods the operator investigates, with which brain, and how fixes
//! get approved, with the rule (`auto_approves`) for when the operator may approve by itself.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{FailureClass, PatchOp, PatchOperation};

/// Which failing Pods the operator investigates, with which brain, and how fixes get approved.
/// Keeps the seed's shape: a policy with only `rules` is complete.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "sre-operator.dev",
    version = "v1alpha1",
    kind = "DebugPolicy",
    plural = "debugpolicies",
    singular = "debugpolicy",
    shortname = "dp",
    shortname = "dbgpol",
    category = "sre",
    status = "DebugPolicyStatus",
    printcolumn = r#"{"name":"Approval","type":"string","jsonPath":".spec.approval"}"#,
    printcolumn = r#"{"name":"Cooldown","type":"string","jsonPath":".spec.cooldown"}"#,
    printcolumn = r#"{"name":"Rules","type":"integer","jsonPath":".status.rules","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.approval) || self.approval != 'Auto' || !has(self.brain) || !has(self.brain.provider) || self.brain.provider != 'openai' || (has(self.autoApproveModelPatches) && self.autoApproveModelPatches)"
).message("approval: Auto with a model brain (brain.provider: openai) needs autoApproveModelPatches: true; even then only patches to resources and replicas are approved without a person"))]
pub struct DebugPolicySpec {
    /// A Pod is selected when any rule matches it.
    #[schemars(length(min = 1, max = 64))]
    pub rules: Vec<PolicyRule>,

    /// Which brain investigates; the rules brain when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brain: Option<BrainSpec>,

    /// `Manual` (default): a person approves every patch. `Auto`: the operator approves the
    /// patches the safety filter allowed; the others still wait for a person.
    #[serde(default)]
    pub approval: Approval,

    /// With `approval: Auto`, also approve patches a model wrote, but only those that touch
    /// nothing but containers' resources and `/spec/replicas`. Required (true) for `approval:
    /// Auto` with `brain.provider: openai`; model-written patches otherwise wait for a person.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_approve_model_patches: bool,

    /// At most one report per workload and failure class within this window (Go duration).
    #[serde(default = "default_cooldown")]
    #[schemars(pattern(super::DURATION_PATTERN))]
    pub cooldown: String,

    /// Where people hear about this policy's reports: a Slack-compatible webhook that gets a
    /// message when a report needs a decision, ends NoFix, is applied, or is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifySpec>,
}

/// A webhook for a policy's reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifySpec {
    /// The Secret key holding the webhook URL (a Slack incoming webhook, or anything that accepts
    /// its JSON), in the operator's own namespace: the URL is a credential. The operator's
    /// Role must grant `get` on that Secret by name.
    pub secret_ref: crate::plugin::egress::SecretKeyRef,
}

pub fn default_cooldown() -> String {
    "10m".to_string()
}

#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// Namespaces this rule covers; empty means every namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub namespaces: Vec<String>,

    /// A full label selector (matchLabels and matchExpressions); unset selects every Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,

    /// Failure classes this rule reacts to; empty means all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<FailureClass>,
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum Approval {
    #[default]
    Manual,
    Auto,
}

/// Whether the operator approves a reviewed (not denied) patch by itself: only under `approval:
/// Auto`, and for a patch a model wrote (`author` is anything but `rules`) only when the policy
/// opted in with `autoApproveModelPatches` and every operation changes nothing but a
/// container's resources or `/spec/replicas`. `test` operations change nothing.
pub fn auto_approves(
    policy: &DebugPolicySpec,
    operations: &[PatchOperation],
    author: &str,
) -> bool {
    if policy.approval != Approval::Auto || operations.is_empty() {
        return false;
    }
    if author == "rules" {
        return true;
    }
    policy.auto_approve_model_patches
        && operations.iter().all(|op| match op.op {
            PatchOp::Test => true,
            PatchOp::Add | PatchOp::Remove | PatchOp::Replace => {
                touches_only_resources_or_replicas(&op.path)
            }
            PatchOp::Move | PatchOp::Copy => false,
        })
}

/// `/spec/replicas`, or a path at or below a container's `resources` in a pod template (a
/// CronJob's included).
fn touches_only_resources_or_replicas(path: &str) -> bool {
    if path == "/spec/replicas" {
        return true;
    }
    let below_template = path
        .strip_prefix("/spec/template/spec/")
        .or_else(|| path.strip_prefix("/spec/jobTemplate/spec/template/spec/"));
    let Some(rest) = below_template else {
        return false;
    };
    let mut segments = rest.split('/');
    matches!(
        (segments.next(), segments.next(), segments.next()),
        (Some("containers" | "initContainers"), Some(index), Some("resources"))
            if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit())
    )
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum BrainProvider {
    #[default]
    Rules,
    Openai,
}

#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("!has(self.provider) || self.provider != 'openai' || has(self.model)")
    .message("brain.model is required when brain.provider is openai"))]
pub struct BrainSpec {
    /// `rules` (no model ever sees this policy's Pods) or `openai` (with `model`: that model on
    /// the operator's endpoint). Unset: the brain the operator runs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<BrainProvider>,

    /// Model name as the OpenAI-compatible endpoint knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub model: Option<String>,

    /// Observe-Think-Act steps per investigation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 50))]
    pub max_steps: Option<u32>,

    /// Tokens (prompt plus completion) per investigation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1000, max = 2000000))]
    pub max_tokens: Option<u32>,

    /// Wall-clock budget per investigation (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(super::DURATION_PATTERN))]
    pub timeout: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DebugPolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Number of rules the operator accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(approval: Approval, opt_in: bool) -> DebugPolicySpec {
        DebugPolicySpec {
            approval,
            auto_approve_model_patches: opt_in,
            ..DebugPolicySpec::default()
        }
    }

    fn ops(value: serde_json::Value) -> Vec<PatchOperation> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn auto_approval_of_a_model_patch_needs_the_opt_in_and_a_resources_or_replicas_patch() {
        let limit = ops(json!([
            {"op": "test", "path": "/spec/template/spec/containers/0/image", "value": "web:1"},
            {"op": "replace", "path": "/spec/template/spec/containers/0/resources/limits/memory", "value": "512Mi"},
            {"op": "replace", "path": "/spec/replicas", "value": 3}
        ]));
        let image = ops(json!([
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "evil.example.net/miner:latest"}
        ]));
        let cron = ops(json!([
            {"op": "add", "path": "/spec/jobTemplate/spec/template/spec/containers/1/resources", "value": {}}
        ]));
        let sneaky = ops(json!([
            {"op": "add", "path": "/spec/template/spec/containers/0/resourcesX", "value": 1},
            {"op": "copy", "from": "/spec/replicas", "path": "/spec/template/spec/containers/0/resources/x"}
        ]));

        // The rules brain: Auto approves, Manual never does.
        assert!(auto_approves(
            &policy(Approval::Auto, false),
            &image,
            "rules"
        ));
        assert!(!auto_approves(
            &policy(Approval::Manual, true),
            &limit,
            "rules"
        ));
        // A model: never without the opt-in; with it, only resources and replicas.
        assert!(!auto_approves(
            &policy(Approval::Auto, false),
            &limit,
            "gpt-4o"
        ));
        assert!(auto_approves(
            &policy(Approval::Auto, true),
            &limit,
            "gpt-4o"
        ));
        assert!(auto_approves(
            &policy(Approval::Auto, true),
            &cron,
            "gpt-4o"
        ));
        assert!(!auto_approves(
            &policy(Approval::Auto, true),
            &image,
            "gpt-4o"
        ));
        assert!(!auto_approves(
            &policy(Approval::Manual, true),
            &limit,
            "gpt-4o"
        ));
        assert!(!auto_approves(
            &policy(Approval::Auto, true),
            &sneaky[..1],
            "gpt-4o"
        ));
        assert!(!auto_approves(
            &policy(Approval::Auto, true),
            &sneaky[1..],
            "gpt-4o"
        ));
        assert!(!auto_approves(&policy(Approval::Auto, true), &[], "rules"));
        // An unknown author is a model.
        assert!(!auto_approves(&policy(Approval::Auto, false), &limit, ""));
    }

    #[test]
    fn the_crd_refuses_auto_with_a_model_brain_unless_the_policy_opts_in() {
        let crd = serde_json::to_string(&<DebugPolicy as kube::CustomResourceExt>::crd()).unwrap();
        assert!(
            crd.contains("autoApproveModelPatches"),
            "the opt-in is in the schema"
        );
        assert!(
            crd.contains("self.brain.provider != 'openai'"),
            "the CEL rule is in the schema"
        );
    }
}

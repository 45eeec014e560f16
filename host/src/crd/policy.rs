use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::FailureClass;

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

    /// At most one report per workload and failure class within this window (Go duration).
    #[serde(default = "default_cooldown")]
    #[schemars(pattern(super::DURATION_PATTERN))]
    pub cooldown: String,
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

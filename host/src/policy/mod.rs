//! Which failing Pods a DebugPolicy selects: namespaces, a full label selector and failure classes,
//! compiled once so that matching a Pod is cheap.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::core::{Selector, SelectorExt};
use kube::{CustomResourceExt, ResourceExt};
use serde_json::Value;

use crate::crd::{
    API_VERSION, Approval, DebugPolicy, DebugPolicySpec, FailureClass, PolicyRule, WorkloadRef,
    parse_duration,
};

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{source_name}: {message}")]
    Invalid {
        source_name: String,
        message: String,
    },
}

fn invalid(source_name: &str, message: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        source_name: source_name.to_string(),
        message: message.into(),
    }
}

/// A policy ready to match Pods.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    pub name: String,
    pub approval: Approval,
    pub cooldown: Duration,
    pub spec: DebugPolicySpec,
    rules: Vec<CompiledRule>,
}

#[derive(Clone, Debug)]
struct CompiledRule {
    namespaces: BTreeSet<String>,
    selector: Option<Selector>,
    conditions: BTreeSet<FailureClass>,
}

impl CompiledRule {
    fn matches_pod(&self, pod: &Pod) -> bool {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        (self.namespaces.is_empty() || self.namespaces.contains(namespace))
            && self
                .selector
                .as_ref()
                .is_none_or(|s| s.matches(pod.labels()))
    }

    fn covers(&self, class: FailureClass) -> bool {
        self.conditions.is_empty() || self.conditions.contains(&class)
    }
}

impl CompiledPolicy {
    pub fn compile(policy: &DebugPolicy) -> Result<Self, PolicyError> {
        let name = policy.name_any();
        let source = format!("DebugPolicy {name}");
        let cooldown = parse_duration("spec.cooldown", &policy.spec.cooldown)
            .map_err(|m| invalid(&source, m))?;
        let rules = policy
            .spec
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                compile_rule(rule).map_err(|m| invalid(&source, format!("spec.rules[{i}]: {m}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if rules.is_empty() {
            return Err(invalid(
                &source,
                "spec.rules is empty; add at least one rule",
            ));
        }
        Ok(CompiledPolicy {
            name,
            approval: policy.spec.approval,
            cooldown,
            spec: policy.spec.clone(),
            rules,
        })
    }

    /// Whether any rule selects the Pod for some failure class (the controller's watch filter).
    pub fn selects_pod(&self, pod: &Pod) -> bool {
        self.rules.iter().any(|r| r.matches_pod(pod))
    }

    /// Whether a rule selects the Pod for this class.
    pub fn selects(&self, pod: &Pod, class: FailureClass) -> bool {
        self.rules
            .iter()
            .any(|r| r.covers(class) && r.matches_pod(pod))
    }
}

fn compile_rule(rule: &PolicyRule) -> Result<CompiledRule, String> {
    let selector = rule
        .selector
        .clone()
        .map(Selector::try_from)
        .transpose()
        .map_err(|e| format!("selector: {e}"))?;
    Ok(CompiledRule {
        namespaces: rule.namespaces.iter().cloned().collect(),
        selector,
        conditions: rule.conditions.iter().copied().collect(),
    })
}

/// Every policy in force, in name order so that the first match is deterministic.
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    policies: Vec<CompiledPolicy>,
}

impl PolicySet {
    pub fn compile(policies: &[DebugPolicy]) -> Result<Self, PolicyError> {
        let mut compiled = policies
            .iter()
            .map(CompiledPolicy::compile)
            .collect::<Result<Vec<_>, _>>()?;
        compiled.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(PolicySet { policies: compiled })
    }

    /// The first policy (by name) that selects the Pod for this class.
    pub fn select(&self, pod: &Pod, class: FailureClass) -> Option<&CompiledPolicy> {
        self.policies.iter().find(|p| p.selects(pod, class))
    }

    pub fn selects_pod(&self, pod: &Pod) -> bool {
        self.policies.iter().any(|p| p.selects_pod(pod))
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|p| p.name.as_str())
    }

    /// The namespaces some rule can select a Pod in; None when a rule names none (all).
    pub fn namespaces(&self) -> Option<BTreeSet<String>> {
        let mut all = BTreeSet::new();
        for rule in self.policies.iter().flat_map(|p| &p.rules) {
            if rule.namespaces.is_empty() {
                return None;
            }
            all.extend(rule.namespaces.iter().cloned());
        }
        Some(all)
    }

    /// What decides which Pods the set can select (namespaces and selectors, not classes or
    /// approval): when it is unchanged, a policy edit cannot bring a new Pod into reach.
    pub fn reach(
        &self,
    ) -> Vec<(
        &[String],
        Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    )> {
        self.policies
            .iter()
            .flat_map(|p| &p.spec.rules)
            .map(|r| (r.namespaces.as_slice(), r.selector.as_ref()))
            .collect()
    }
}

/// One report per workload and failure class: what deduplicates Pods of the same workload.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DedupKey {
    pub namespace: String,
    pub workload: WorkloadRef,
    pub class: FailureClass,
}

/// The DebugPolicy named `name` (a report's `spec.policy`), from a list of them or of the
/// operator's cached ones (`Arc`s).
pub fn by_name<P>(policies: impl IntoIterator<Item = P>, name: &str) -> Option<P>
where
    P: std::ops::Deref<Target = DebugPolicy>,
{
    policies
        .into_iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
}

/// The policy used when none is given: every failing Pod in every namespace.
pub fn default_policy() -> DebugPolicy {
    DebugPolicy::new(
        "default",
        DebugPolicySpec {
            rules: vec![PolicyRule::default()],
            cooldown: crate::crd::default_cooldown(),
            ..Default::default()
        },
    )
}

/// Reads DebugPolicy objects from YAML or JSON text (several documents, or a List), checking
/// them against the CRD's schema as the API server would.
pub fn parse_policies(text: &str, source_name: &str) -> Result<Vec<DebugPolicy>, PolicyError> {
    let mut documents = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(document)
            .map_err(|e| invalid(source_name, format!("not valid YAML or JSON: {e}")))?;
        if value.is_null() {
            continue;
        }
        match value.get("kind").and_then(Value::as_str) {
            Some(k) if k.ends_with("List") => documents.extend(
                value
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            ),
            _ => documents.push(value),
        }
    }
    if documents.is_empty() {
        return Err(invalid(source_name, "holds no DebugPolicy"));
    }
    let schema = policy_schema();
    documents
        .into_iter()
        .map(|doc| {
            let name = doc
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("<unnamed>")
                .to_string();
            let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
            if kind != "DebugPolicy" {
                return Err(invalid(
                    source_name,
                    format!("{name}: kind is {kind:?}, expected DebugPolicy"),
                ));
            }
            if api_version != API_VERSION {
                return Err(invalid(
                    source_name,
                    format!("DebugPolicy {name}: apiVersion is {api_version:?}; use {API_VERSION}"),
                ));
            }
            let errors: Vec<String> = schema
                .iter_errors(&doc)
                .map(|e| format!("{}: {e}", display_path(&e.instance_path().to_string())))
                .collect();
            if !errors.is_empty() {
                return Err(invalid(
                    source_name,
                    format!("DebugPolicy {name}: {}", errors.join("; ")),
                ));
            }
            let policy: DebugPolicy = serde_json::from_value(doc)
                .map_err(|e| invalid(source_name, format!("DebugPolicy {name}: {e}")))?;
            CompiledPolicy::compile(&policy).map_err(|e| invalid(source_name, e.to_string()))?;
            Ok(policy)
        })
        .collect()
}

fn display_path(pointer: &str) -> String {
    let path = pointer.trim_start_matches('/').replace('/', ".");
    if path.is_empty() {
        "(root)".into()
    } else {
        path
    }
}

/// A validator for the DebugPolicy CRD's OpenAPI schema.
fn policy_schema() -> jsonschema::Validator {
    let crd = DebugPolicy::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .map(|s| serde_json::to_value(s).expect("schema serializes"))
        .expect("the DebugPolicy CRD has a schema");
    jsonschema::validator_for(&schema).expect("the generated CRD schema is a valid JSON Schema")
}

/// Reads policy files, naming the file in every error.
pub fn load_policy_files(paths: &[impl AsRef<Path>]) -> Result<Vec<DebugPolicy>, PolicyError> {
    let mut policies = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let source_name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(&source_name, format!("cannot read: {e}")))?;
        policies.extend(parse_policies(&text, &source_name)?);
    }
    Ok(policies)
}

#[cfg(test)]
mod tests;

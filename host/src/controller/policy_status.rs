//! DebugPolicy status: how many rules the operator accepted, and a `Ready` condition that says
//! whether the policy is in force or why not. Without it an invalid policy (a selector that
//! does not parse, a bad cooldown) would only show in the operator's log.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{Context, FIELD_MANAGER, Result};
use crate::crd::{API_VERSION, DebugPolicy, DebugPolicyStatus, condition, set_condition};
use crate::policy::CompiledPolicy;

/// The status a policy should have: the rule count and `Ready` (reason `Accepted` or
/// `Invalid`, with the compile error), its transition time kept while its status holds.
pub fn desired_status(policy: &DebugPolicy) -> DebugPolicyStatus {
    let generation = policy.meta().generation;
    let (rules, ready) = match CompiledPolicy::compile(policy) {
        Ok(_) => {
            let n = policy.spec.rules.len();
            (
                Some(n as u32),
                condition(
                    "Ready",
                    true,
                    "Accepted",
                    &format!("in force: {n} rule(s)"),
                    generation,
                ),
            )
        }
        Err(e) => (
            None,
            condition(
                "Ready",
                false,
                "Invalid",
                &format!("ignored until fixed: {e}"),
                generation,
            ),
        ),
    };
    let mut conditions = policy
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    conditions.retain(|c| c.type_ == ready.type_);
    set_condition(&mut conditions, ready);
    DebugPolicyStatus {
        observed_generation: generation,
        rules,
        conditions,
    }
}

/// Same status apart from the transition time (a rewrite would only bump it and loop).
fn unchanged(current: Option<&DebugPolicyStatus>, desired: &DebugPolicyStatus) -> bool {
    let Some(current) = current else {
        return false;
    };
    let key = |s: &DebugPolicyStatus| {
        (
            s.observed_generation,
            s.rules,
            s.conditions
                .iter()
                .map(|c| {
                    (
                        c.type_.clone(),
                        c.status.clone(),
                        c.reason.clone(),
                        c.message.clone(),
                    )
                })
                .collect::<Vec<_>>(),
        )
    };
    key(current) == key(desired)
}

pub async fn reconcile_policy(policy: Arc<DebugPolicy>, ctx: Arc<Context>) -> Result<Action> {
    if !ctx.is_leader() {
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    let desired = desired_status(&policy);
    if unchanged(policy.status.as_ref(), &desired) {
        return Ok(Action::await_change());
    }
    if desired.rules.is_none() {
        tracing::warn!(
            policy = %policy.name_any(),
            reason = %desired.conditions[0].message,
            "DebugPolicy is invalid and ignored"
        );
    }
    let api: Api<DebugPolicy> = Api::all(ctx.client.clone());
    // Server-side apply: `rules` disappears when the policy turns invalid.
    let body = json!({"apiVersion": API_VERSION, "kind": "DebugPolicy", "status": desired});
    api.patch_status(
        &policy.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::DebugPolicySpec;

    fn policy(yaml: &str) -> DebugPolicy {
        let spec: DebugPolicySpec = serde_yaml::from_str(yaml).unwrap();
        let mut p = DebugPolicy::new("p", spec);
        p.metadata.generation = Some(3);
        p
    }

    #[test]
    fn a_valid_policy_is_ready_with_its_rule_count() {
        let s = desired_status(&policy(
            "rules:\n- namespaces: [default]\n  selector: {matchLabels: {app: web}}\n- namespaces: [prod]\n",
        ));
        assert_eq!(s.rules, Some(2));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.conditions[0].status, "True");
        assert_eq!(s.conditions[0].reason, "Accepted");
    }

    #[test]
    fn an_invalid_policy_says_why_and_counts_no_rules() {
        let s = desired_status(&policy(
            "rules:\n- selector: {matchExpressions: [{key: app, operator: Bogus, values: [x]}]}\n",
        ));
        assert_eq!(s.rules, None);
        assert_eq!(s.conditions[0].status, "False");
        assert_eq!(s.conditions[0].reason, "Invalid");
        assert!(
            s.conditions[0].message.contains("spec.rules[0]: selector"),
            "names the rule: {:?}",
            s.conditions[0]
        );
    }

    #[test]
    fn only_a_real_change_is_written() {
        let p = policy("rules:\n- namespaces: [default]\n");
        let mut current = desired_status(&p);
        current.conditions[0].last_transition_time =
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            );
        assert!(unchanged(Some(&current), &desired_status(&p)));
        current.observed_generation = Some(2);
        assert!(!unchanged(Some(&current), &desired_status(&p)));
        assert!(!unchanged(None, &desired_status(&p)));
    }
}

//! Patch review: a suggested JSON Patch must apply cleanly to the current target object (the
//! host's own check) and pass every loaded patch-filter plugin. The verdict fails closed: no
//! filter, a filter error, or a patch that does not apply means Denied.

pub mod apply;
pub mod gate;
mod revisions;

use serde_json::Value;

use crate::cluster::{Cluster, ResourceKind};
use crate::crd::{
    BrainUsage, DiagnosticReport, PatchOp, PatchOperation, SafetyVerdict, SuggestedPatch, Verdict,
};
use crate::plugin::{PluginSet, Review, ReviewContext, World};

pub const HOST_FILTER: &str = "host";

fn denied(filter: &str, reason: impl Into<String>) -> SafetyVerdict {
    SafetyVerdict {
        verdict: Verdict::Denied,
        filter: filter.to_string(),
        reason: Some(reason.into()),
    }
}

/// What a patch-filter is told about the report a patch belongs to: the failing Pod, its class,
/// and the patch's author (the brain's model, or its kind when it has none). Built from the
/// brain that just wrote the patch when it is first reviewed, and from the one recorded in
/// status when it is reviewed again (before an apply, or a rollback in `kubectl sre`).
pub fn review_context(report: &DiagnosticReport, brain: Option<&BrainUsage>) -> ReviewContext {
    ReviewContext {
        namespace: report.spec.pod.namespace.clone(),
        pod: report.spec.pod.name.clone(),
        failure_class: report.spec.failure.class.to_string(),
        author: brain
            .map(|b| b.model.clone().unwrap_or_else(|| b.kind.clone()))
            .unwrap_or_default(),
    }
}

/// Why a patch may not touch its target, if it may not: only the failing Pod's own workload, in
/// the Pod's namespace, is ever patched. Checked when the patch is proposed and again before it
/// is applied (status can be written by more than the operator).
pub fn foreign_target(report: &DiagnosticReport, suggestion: &SuggestedPatch) -> Option<String> {
    let (workload, target) = (&report.spec.workload, &suggestion.target);
    // The report's own namespace, which whoever created it chose: the Pod and the target must
    // both be there (a report in `app` naming a Pod in `victim` patches nothing).
    let namespace = report.metadata.namespace.as_deref().unwrap_or_default();
    if report.spec.pod.namespace != namespace {
        return Some(format!(
            "the report lives in namespace {namespace} but names a Pod in namespace {}; a patch \
             may only target a workload in the report's own namespace",
            report.spec.pod.namespace
        ));
    }
    (target.kind != workload.kind || target.name != workload.name || target.namespace != namespace)
        .then(|| {
            format!(
                "a patch may only target the failing Pod's workload {} {namespace}/{}, not {} {}/{}",
                workload.kind, workload.name, target.kind, target.namespace, target.name
            )
        })
}

/// Applies a patch to a copy of the target, as the API server would.
pub fn apply_to(target: &Value, operations: &[PatchOperation]) -> Result<Value, String> {
    let patch: json_patch::Patch =
        serde_json::from_value(serde_json::to_value(operations).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let mut copy = target.clone();
    json_patch::patch(&mut copy, &patch).map_err(|e| e.to_string())?;
    Ok(copy)
}

/// The host's structural rules, before any plugin sees the patch.
fn host_check(target: &Value, operations: &[PatchOperation]) -> Result<(), String> {
    if operations.iter().all(|op| op.op == PatchOp::Test) {
        return Err("the patch changes nothing (it only has test operations)".into());
    }
    let first_change = operations
        .iter()
        .position(|op| op.op != PatchOp::Test)
        .unwrap_or(0);
    if first_change == 0 {
        return Err(
            "the patch must begin with test operations guarding the values it replaces".into(),
        );
    }
    apply_to(target, operations)
        .map(|_| ())
        .map_err(|e| format!("does not apply to the current object: {e}"))
}

/// The host's image rule ([`revisions::check_images`]) on the patch applied to `target`.
async fn image_check(
    cluster: &dyn Cluster,
    target: &Value,
    operations: &[PatchOperation],
) -> Result<(), String> {
    let patched = apply_to(target, operations)?;
    revisions::check_images(cluster, target, &patched).await
}

/// Reviews a suggestion against the current target. Returns the verdict and, when a filter
/// rewrote the patch, the suggestion to store instead.
pub async fn review(
    plugins: &PluginSet,
    cluster: &dyn Cluster,
    suggestion: &SuggestedPatch,
    context: ReviewContext,
) -> (SafetyVerdict, Option<SuggestedPatch>) {
    let target_ref = &suggestion.target;
    let kind: ResourceKind = match target_ref.kind.parse() {
        Ok(k) => k,
        Err(e) => return (denied(HOST_FILTER, e), None),
    };
    let target = match cluster
        .get(kind, Some(&target_ref.namespace), &target_ref.name)
        .await
    {
        Ok(Some(object)) => (*object).clone(),
        Ok(None) => {
            let reason = format!(
                "target {} {}/{} does not exist",
                target_ref.kind, target_ref.namespace, target_ref.name
            );
            return (denied(HOST_FILTER, reason), None);
        }
        Err(e) => {
            return (
                denied(HOST_FILTER, format!("cannot read the target: {e}")),
                None,
            );
        }
    };
    if let Err(reason) = host_check(&target, &suggestion.patch) {
        return (denied(HOST_FILTER, reason), None);
    }
    if let Err(reason) = image_check(cluster, &target, &suggestion.patch).await {
        return (denied(HOST_FILTER, reason), None);
    }
    let filters: Vec<_> = plugins.by_world(World::PatchFilter).cloned().collect();
    if filters.is_empty() {
        return (
            denied(
                HOST_FILTER,
                "no patch-filter plugin is loaded, so no patch can be approved",
            ),
            None,
        );
    }
    let mut current = suggestion.clone();
    let mut rewritten_by: Option<(String, String)> = None;
    for filter in filters {
        let target_text = target.to_string();
        let patch_text = match serde_json::to_string(&current.patch) {
            Ok(t) => t,
            Err(e) => return (denied(HOST_FILTER, e.to_string()), None),
        };
        let ctx = context.clone();
        let name = filter.name.clone();
        let result =
            tokio::task::spawn_blocking(move || filter.review(&target_text, &patch_text, &ctx))
                .await;
        match result {
            Ok(Ok(Review::Allow)) => {}
            // A filter's words go into status, where every report reader sees them.
            Ok(Ok(Review::Deny(reason))) => {
                return (denied(&name, crate::redact::redact_text(&reason)), None);
            }
            Ok(Ok(Review::Rewrite { patch, reason })) => {
                let operations: Vec<PatchOperation> = match serde_json::from_str(&patch) {
                    Ok(ops) => ops,
                    Err(e) => {
                        return (
                            denied(
                                &name,
                                format!("its rewritten patch is not a JSON Patch: {e}"),
                            ),
                            None,
                        );
                    }
                };
                if let Err(problem) = host_check(&target, &operations) {
                    return (
                        denied(HOST_FILTER, format!("the patch {name} rewrote {problem}")),
                        None,
                    );
                }
                if let Err(reason) = image_check(cluster, &target, &operations).await {
                    return (
                        denied(HOST_FILTER, format!("the patch {name} rewrote: {reason}")),
                        None,
                    );
                }
                current.patch = operations;
                rewritten_by = Some((name, crate::redact::redact_text(&reason)));
            }
            Ok(Err(e)) => {
                return (
                    denied(
                        &name,
                        format!("the filter failed, so the patch is refused: {e}"),
                    ),
                    None,
                );
            }
            Err(e) => {
                return (
                    denied(&name, format!("the filter could not run: {e}")),
                    None,
                );
            }
        }
    }
    match rewritten_by {
        Some((filter, reason)) => (
            SafetyVerdict {
                verdict: Verdict::Rewritten,
                filter,
                reason: Some(reason),
            },
            Some(current),
        ),
        None => {
            let names: Vec<String> = plugins
                .by_world(World::PatchFilter)
                .map(|p| p.name.clone())
                .collect();
            (SafetyVerdict::allowed(names.join(",")), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(op: PatchOp, path: &str, value: Value) -> PatchOperation {
        PatchOperation {
            op,
            path: path.into(),
            from: None,
            value: Some(value),
        }
    }

    #[test]
    fn host_check_requires_guards_and_a_clean_apply() {
        let target = json!({"spec": {"replicas": 2}});
        let good = [
            op(PatchOp::Test, "/spec/replicas", json!(2)),
            op(PatchOp::Replace, "/spec/replicas", json!(3)),
        ];
        assert!(host_check(&target, &good).is_ok());
        assert_eq!(
            apply_to(&target, &good).unwrap(),
            json!({"spec": {"replicas": 3}})
        );
        let stale = [
            op(PatchOp::Test, "/spec/replicas", json!(1)),
            op(PatchOp::Replace, "/spec/replicas", json!(3)),
        ];
        assert!(
            host_check(&target, &stale)
                .unwrap_err()
                .starts_with("does not apply to the current object")
        );
        let unguarded = [op(PatchOp::Replace, "/spec/replicas", json!(3))];
        assert!(
            host_check(&target, &unguarded)
                .unwrap_err()
                .contains("must begin with test operations")
        );
        let only_tests = [op(PatchOp::Test, "/spec/replicas", json!(2))];
        assert!(
            host_check(&target, &only_tests)
                .unwrap_err()
                .contains("changes nothing")
        );
    }
}

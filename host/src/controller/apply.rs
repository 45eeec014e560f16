//! Applying an approved patch exactly once, and undoing it: the helpers the state machine (and
//! `kubectl sre rollback`) use. All but [`dry_run_then_patch`] are pure.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::Value;

use crate::crd::{PatchOp, PatchOperation};
use crate::patch::apply_to;

/// The patch that undoes `operations` on `target` (the object before the patch): test each new
/// value, then put the old one back (or remove what the patch added).
pub fn rollback_patch(target: &Value, operations: &[PatchOperation]) -> Vec<PatchOperation> {
    let mut tests = Vec::new();
    let mut restores = Vec::new();
    for op in operations.iter().filter(|op| op.op != PatchOp::Test) {
        let before = target.pointer(&op.path).cloned();
        match op.op {
            PatchOp::Replace | PatchOp::Add => {
                if let Some(new) = &op.value {
                    if !op.path.ends_with("/-") {
                        tests.push(PatchOperation {
                            op: PatchOp::Test,
                            path: op.path.clone(),
                            from: None,
                            value: Some(new.clone()),
                        });
                    }
                }
                match before {
                    Some(old) => restores.push(PatchOperation {
                        op: PatchOp::Replace,
                        path: op.path.clone(),
                        from: None,
                        value: Some(old),
                    }),
                    None => restores.push(PatchOperation {
                        op: PatchOp::Remove,
                        path: op.path.clone(),
                        from: None,
                        value: None,
                    }),
                }
            }
            PatchOp::Remove => {
                if let Some(old) = before {
                    restores.push(PatchOperation {
                        op: PatchOp::Add,
                        path: op.path.clone(),
                        from: None,
                        value: Some(old),
                    });
                }
            }
            _ => {}
        }
    }
    restores.reverse();
    tests.extend(restores);
    tests
}

/// Whether the target already holds every value the patch sets: a replay after a restart.
pub fn already_applied(target: &Value, operations: &[PatchOperation]) -> bool {
    let changes: Vec<&PatchOperation> = operations
        .iter()
        .filter(|op| op.op != PatchOp::Test)
        .collect();
    !changes.is_empty()
        && changes.iter().all(|op| match op.op {
            PatchOp::Replace | PatchOp::Add => {
                op.value.is_some() && target.pointer(&op.path) == op.value.as_ref()
            }
            PatchOp::Remove => target.pointer(&op.path).is_none(),
            _ => false,
        })
}

/// The patch as sent to the API server: guarded by the resourceVersion the review saw, so a
/// concurrent change makes it fail instead of landing on an object nobody reviewed.
pub fn guarded_by_version(
    operations: &[PatchOperation],
    resource_version: &str,
) -> Result<json_patch::Patch, String> {
    let mut ops = vec![PatchOperation {
        op: PatchOp::Test,
        path: "/metadata/resourceVersion".into(),
        from: None,
        value: Some(Value::String(resource_version.into())),
    }];
    ops.extend(operations.iter().cloned());
    serde_json::from_value(serde_json::to_value(ops).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())
}

/// Which of the two writes of [`dry_run_then_patch`] the API server refused.
#[derive(Debug)]
pub enum WriteError {
    /// The server-side dry run: nothing was written.
    DryRun(kube::Error),
    /// The patch itself, after a dry run that passed.
    Patch(kube::Error),
}

/// Sends a guarded JSON Patch the way every apply does: first as a server-side dry run (admission,
/// validation and the `test` operations run, nothing is stored), then for real under
/// `field_manager`. Returns the object the server stored.
pub async fn dry_run_then_patch(
    api: &Api<DynamicObject>,
    name: &str,
    patch: &json_patch::Patch,
    field_manager: &str,
) -> Result<DynamicObject, WriteError> {
    let params = PatchParams {
        field_manager: Some(field_manager.into()),
        ..Default::default()
    };
    let dry_run = PatchParams {
        dry_run: true,
        ..params.clone()
    };
    api.patch(name, &dry_run, &Patch::<()>::Json(patch.clone()))
        .await
        .map_err(WriteError::DryRun)?;
    api.patch(name, &params, &Patch::<()>::Json(patch.clone()))
        .await
        .map_err(WriteError::Patch)
}

/// Checks locally that the patch applies before anything is sent.
pub fn applies(target: &Value, operations: &[PatchOperation]) -> Result<Value, String> {
    apply_to(target, operations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(op: PatchOp, path: &str, value: Option<Value>) -> PatchOperation {
        PatchOperation {
            op,
            path: path.into(),
            from: None,
            value,
        }
    }

    #[test]
    fn rollback_undoes_and_replays_are_recognised() {
        let target = json!({"metadata": {"resourceVersion": "7"}, "spec": {"image": "a:1", "env": [{"name": "X", "value": "1"}]}});
        let patch = vec![
            op(PatchOp::Test, "/spec/image", Some(json!("a:1"))),
            op(PatchOp::Replace, "/spec/image", Some(json!("a:2"))),
            op(PatchOp::Add, "/spec/replicas", Some(json!(3))),
        ];
        let after = applies(&target, &patch).unwrap();
        assert!(already_applied(&after, &patch));
        assert!(!already_applied(&target, &patch));
        assert!(
            applies(&after, &patch).is_err(),
            "the test guard stops a second apply"
        );
        let rollback = rollback_patch(&target, &patch);
        assert_eq!(applies(&after, &rollback).unwrap(), target);
        let guarded = guarded_by_version(&patch, "8");
        let mut copy = target.clone();
        assert!(
            json_patch::patch(&mut copy, &guarded.unwrap()).is_err(),
            "a stale resourceVersion fails the patch"
        );
    }
}

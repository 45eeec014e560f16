//! Writing a reviewed patch to its workload exactly once, and undoing it: what the operator's
//! report controller and `kubectl sre rollback` share. All but [`dry_run_then_patch`] are pure.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::Value;

use crate::crd::{PatchOp, PatchOperation};
use crate::patch::apply_to;

/// The patch that undoes `operations` on `target` (the object before the patch), from the exact
/// paths the patch touched: each change's inverse is worked out on the document as it stood
/// before that change (so `add .../env/-` becomes `remove .../env/2`, an insert shifts nothing),
/// guarded by a `test` of what the change left, and the inverses run in reverse order. Only
/// values the patch itself replaced or removed are copied, never a whole array around them (an
/// env array's other literal values stay out of status). Empty when the patch does not apply to
/// `target` or uses `move`/`copy`.
pub fn rollback_patch(target: &Value, operations: &[PatchOperation]) -> Vec<PatchOperation> {
    let op = |op, path: &str, value: Option<Value>| PatchOperation {
        op,
        path: path.to_string(),
        from: None,
        value,
    };
    let mut doc = target.clone();
    let mut inverses: Vec<Vec<PatchOperation>> = Vec::new();
    for change in operations.iter().filter(|o| o.op != PatchOp::Test) {
        let path = exact_path(&doc, &change.path);
        let before = doc.pointer(&path).cloned();
        let in_array = parent_is_array(&doc, &path);
        let Ok(after_doc) = apply_to(&doc, std::slice::from_ref(change)) else {
            return vec![];
        };
        let after = after_doc.pointer(&path).cloned();
        let inverse = match change.op {
            PatchOp::Add if in_array => vec![
                op(PatchOp::Test, &path, after),
                op(PatchOp::Remove, &path, None),
            ],
            PatchOp::Add | PatchOp::Replace => match before {
                Some(old) => vec![
                    op(PatchOp::Test, &path, after),
                    op(PatchOp::Replace, &path, Some(old)),
                ],
                None => vec![
                    op(PatchOp::Test, &path, after),
                    op(PatchOp::Remove, &path, None),
                ],
            },
            PatchOp::Remove => vec![op(PatchOp::Add, &path, before)],
            PatchOp::Move | PatchOp::Copy | PatchOp::Test => return vec![],
        };
        inverses.push(inverse);
        doc = after_doc;
    }
    inverses.into_iter().rev().flatten().collect()
}

/// `path` with an array's `-` (the end) turned into the index it means in `doc`.
fn exact_path(doc: &Value, path: &str) -> String {
    match path.rsplit_once('/') {
        Some((parent, "-")) => match doc.pointer(parent).and_then(Value::as_array) {
            Some(items) => format!("{parent}/{}", items.len()),
            None => path.to_string(),
        },
        _ => path.to_string(),
    }
}

/// Whether `path` names an element of an array in `doc`.
fn parent_is_array(doc: &Value, path: &str) -> bool {
    path.rsplit_once('/')
        .is_some_and(|(parent, _)| doc.pointer(parent).is_some_and(Value::is_array))
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

/// Whether `manager` wrote `object` at or after `since`: our own patch landed after the intent
/// was recorded, though the operator stopped before it could say so. What `already_applied`
/// cannot see (a patch that only appends to an array) shows here. managedFields keep whole
/// seconds, so `since` is rounded down.
pub fn written_by_since(
    object: &DynamicObject,
    manager: &str,
    since: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> bool {
    let since = since.0.as_second();
    object
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .any(|entry| {
            entry.manager.as_deref() == Some(manager)
                && entry.operation.as_deref() == Some("Update")
                && entry
                    .time
                    .as_ref()
                    .is_some_and(|t| t.0.as_second() >= since)
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
    fn rollback_undoes_array_inserts_removals_and_nested_values() {
        let target = json!({"metadata": {"resourceVersion": "7"}, "spec": {"containers": [{
            "name": "app",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
            "resources": {"limits": {"memory": "1Gi"}},
        }]}});
        let c = "/spec/containers/0";
        let patches = [
            // An append, an insert at an index, a removal: indices shift after each.
            vec![op(
                PatchOp::Add,
                &format!("{c}/env/-"),
                Some(json!({"name": "C", "value": "3"})),
            )],
            vec![op(
                PatchOp::Add,
                &format!("{c}/env/0"),
                Some(json!({"name": "Z", "value": "0"})),
            )],
            vec![
                op(PatchOp::Remove, &format!("{c}/env/0"), None),
                op(
                    PatchOp::Add,
                    &format!("{c}/env/-"),
                    Some(json!({"name": "D", "value": "4"})),
                ),
            ],
            // A nested value in an object that did not exist, and one that did.
            vec![
                op(
                    PatchOp::Add,
                    &format!("{c}/resources/requests"),
                    Some(json!({"memory": "512Mi"})),
                ),
                op(
                    PatchOp::Replace,
                    &format!("{c}/resources/limits/memory"),
                    Some(json!("2Gi")),
                ),
            ],
        ];
        for patch in patches {
            let after = apply_to(&target, &patch).unwrap();
            let rollback = rollback_patch(&target, &patch);
            assert!(!rollback.is_empty(), "{patch:?}");
            assert_eq!(
                apply_to(&after, &rollback).unwrap(),
                target,
                "{patch:?} -> {rollback:?}"
            );
            // Guarded: once someone else changed what the patch set, the rollback refuses.
            let mut moved = after.clone();
            moved["spec"]["containers"][0]["env"] = json!([]);
            moved["spec"]["containers"][0]["resources"] = json!({});
            assert!(apply_to(&moved, &rollback).is_err(), "{patch:?}");
        }
    }

    #[test]
    fn a_rollback_copies_only_what_the_patch_touched() {
        let target = json!({"spec": {"containers": [{"name": "app", "env": [
            {"name": "DB_PASSWORD", "value": "hunter2"},
            {"name": "API_TOKEN", "value": "t0k3n"},
            {"name": "REDIS_HOST", "value": "redis"},
        ]}]}});
        let patch = vec![
            op(
                PatchOp::Test,
                "/spec/containers/0/env/2/value",
                Some(json!("redis")),
            ),
            op(
                PatchOp::Replace,
                "/spec/containers/0/env/2/value",
                Some(json!("redis-master")),
            ),
            op(
                PatchOp::Add,
                "/spec/containers/0/env/-",
                Some(json!({"name": "REDIS_PORT", "value": "6379"})),
            ),
        ];
        let rollback = rollback_patch(&target, &patch);
        let text = serde_json::to_string(&rollback).unwrap();
        for other in ["hunter2", "t0k3n", "DB_PASSWORD"] {
            assert!(
                !text.contains(other),
                "{other} copied into the rollback: {text}"
            );
        }
        let after = apply_to(&target, &patch).unwrap();
        assert_eq!(apply_to(&after, &rollback).unwrap(), target);
    }

    #[test]
    fn our_own_write_after_the_intent_is_recognised() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
        use k8s_openapi::jiff::Timestamp;
        let at = |s: i64| Time(Timestamp::from_second(s).unwrap());
        let mut object: DynamicObject = serde_json::from_value(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}),
        )
        .unwrap();
        let entry = |manager: &str, operation: &str, time: i64| ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            time: Some(at(time)),
            ..Default::default()
        };
        object.metadata.managed_fields = Some(vec![
            entry("kubectl-client-side-apply", "Update", 2_000),
            entry("sre-operator", "Update", 1_000),
        ]);
        let intent = Time(Timestamp::from_millisecond(1_500_250).unwrap());
        assert!(
            !written_by_since(&object, "sre-operator", &intent),
            "an older patch of ours"
        );
        object.metadata.managed_fields.as_mut().unwrap()[1] =
            entry("sre-operator", "Update", 1_500);
        assert!(
            written_by_since(&object, "sre-operator", &intent),
            "the same second counts"
        );
        assert!(!written_by_since(&object, "someone-else", &intent));
    }

    #[test]
    fn rollback_undoes_and_replays_are_recognised() {
        let target = json!({"metadata": {"resourceVersion": "7"}, "spec": {"image": "a:1", "env": [{"name": "X", "value": "1"}]}});
        let patch = vec![
            op(PatchOp::Test, "/spec/image", Some(json!("a:1"))),
            op(PatchOp::Replace, "/spec/image", Some(json!("a:2"))),
            op(PatchOp::Add, "/spec/replicas", Some(json!(3))),
        ];
        let after = apply_to(&target, &patch).unwrap();
        assert!(already_applied(&after, &patch));
        assert!(!already_applied(&target, &patch));
        assert!(
            apply_to(&after, &patch).is_err(),
            "the test guard stops a second apply"
        );
        let rollback = rollback_patch(&target, &patch);
        assert_eq!(apply_to(&after, &rollback).unwrap(), target);
        let guarded = guarded_by_version(&patch, "8");
        let mut copy = target.clone();
        assert!(
            json_patch::patch(&mut copy, &guarded.unwrap()).is_err(),
            "a stale resourceVersion fails the patch"
        );
    }
}

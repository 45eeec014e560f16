//! The fix side of every playbook: the workload that owns the Pod, its Pod template read through
//! `inspect_object`, and guarded JSON Patch operations on it.
//!
//! The template stays JSON: a patch addresses it by JSON Pointer, and the same pointer that finds
//! a value is the path that replaces it.

use serde_json::{Value, json};
use tool_shapes::RolloutRevision;

use super::{AgentError, Case, Conclusion, Session, answer};
use crate::crd::{Findings, PatchOp, PatchOperation, SuggestedPatch, TargetRef, WorkloadRef};

/// Kinds a patch may target, with where their Pod template's spec lives.
fn pod_spec_path(workload: &WorkloadRef) -> Option<&'static str> {
    match workload.kind.as_str() {
        "Deployment" | "StatefulSet" | "DaemonSet" => Some("/spec/template/spec"),
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

fn target(case: &Case) -> TargetRef {
    let w = &case.report.spec.workload;
    TargetRef {
        api_version: w.api_version.clone(),
        kind: w.kind.clone(),
        namespace: case.namespace().to_string(),
        name: w.name.clone(),
    }
}

/// The workload object and the JSON Pointer of the named container in its Pod template.
pub(super) struct Template {
    pub object: Value,
    /// Where the Pod template's spec is (`/spec/template/spec`).
    pub spec_path: &'static str,
    pub container_path: String,
}

impl Template {
    /// A value of the container, by a pointer relative to it (`/resources/limits/memory`).
    pub fn get(&self, relative: &str) -> Option<&Value> {
        self.object
            .pointer(&format!("{}{relative}", self.container_path))
    }
}

/// Reads the Pod's workload and finds the container in its template; None (with a note in the
/// chain) when the owner is not a kind a patch may change or the container is not there.
pub(super) async fn workload_template(
    case: &Case,
    s: &mut Session,
    container: &str,
) -> Result<Option<Template>, AgentError> {
    let w = &case.report.spec.workload;
    let Some(spec_path) = pod_spec_path(w) else {
        s.note(
            format!(
                "The Pod's owner is {} {}, not a workload a patch may change.",
                w.kind, w.name
            ),
            "No patch: only Deployments, StatefulSets, DaemonSets and CronJobs are patched.",
        );
        return Ok(None);
    };
    let outcome = s
        .act(
            format!("A fix would change {} {}.", w.kind, w.name),
            "Read the workload to patch its Pod template, not the Pod.",
            "inspect_object",
            json!({"kind": w.kind, "name": w.name}),
        )
        .await?;
    let Some(object) = answer::<Value>(&outcome) else {
        return Ok(None);
    };
    let index = object
        .pointer(&format!("{spec_path}/containers"))
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().position(|c| c["name"] == container));
    Ok(index.map(|i| Template {
        object,
        spec_path,
        container_path: format!("{spec_path}/containers/{i}"),
    }))
}

/// Replaces the value at `path`, guarded by a `test` that it still is `old`.
pub(super) fn guarded_replace(path: String, old: Value, new: Value) -> Vec<PatchOperation> {
    vec![
        PatchOperation {
            op: PatchOp::Test,
            path: path.clone(),
            from: None,
            value: Some(old),
        },
        PatchOperation {
            op: PatchOp::Replace,
            path,
            from: None,
            value: Some(new),
        },
    ]
}

/// A conclusion whose fix is the given guarded operations on the workload.
pub(super) fn fixed(
    case: &Case,
    findings: Findings,
    operations: Vec<PatchOperation>,
    explanation: String,
) -> Conclusion {
    Conclusion {
        findings,
        patch: Some(patch(case, operations, explanation)),
        recommendation: None,
    }
}

/// The operations as a patch on the Pod's workload.
pub(super) fn patch(
    case: &Case,
    operations: Vec<PatchOperation>,
    explanation: String,
) -> SuggestedPatch {
    SuggestedPatch {
        target: target(case),
        patch: operations,
        explanation,
    }
}

/// The image of the newest revision that ran with ready Pods and differs from the failing one.
pub(super) struct Rollback {
    pub image: String,
    pub revision: i64,
    ready: i64,
}

/// Reads the Deployment's rollout history for the newest revision whose image (for
/// `container`) differs from `image`, passes `keep`, and ran with ready Pods: the image to roll
/// back to after a rollout that broke. None for other workloads.
pub(super) async fn last_working_image(
    case: &Case,
    s: &mut Session,
    container: &str,
    image: &str,
    observation: String,
    keep: impl Fn(&str) -> bool,
) -> Result<Option<Rollback>, AgentError> {
    if case.report.spec.workload.kind != "Deployment" {
        return Ok(None);
    }
    let history = s
        .act(
            observation,
            "After a rollout, the previous revision's image is the one known to work: read the rollout history.",
            "rollout_history",
            json!({"name": case.report.spec.workload.name}),
        )
        .await?;
    let revisions: Vec<RolloutRevision> = answer(&history).unwrap_or_default();
    let image_of =
        |r: &RolloutRevision| -> Option<String> { r.container(container)?.image.clone() };
    Ok(revisions
        .iter()
        .filter(|r| image_of(r).is_some_and(|i| i != image && keep(&i)))
        .find(|r| r.ran())
        .map(|r| Rollback {
            image: image_of(r).unwrap_or_default(),
            revision: r.revision,
            ready: r.ready_replicas,
        }))
}

impl Rollback {
    /// A guarded patch of the container's image back to the working one, when the workload's
    /// template still runs the failing image; `then` is what to do before rolling forward again.
    pub(super) async fn conclude(
        self,
        case: &Case,
        s: &mut Session,
        container: &str,
        image: &str,
        mut found: Findings,
        then: String,
    ) -> Result<Conclusion, AgentError> {
        let Rollback {
            image: old_image,
            revision,
            ready,
        } = self;
        found.evidence.push(format!(
            "revision {revision} runs {old_image} with {ready} ready Pod(s)"
        ));
        let without_patch = |found: Findings, recommendation: String| Conclusion {
            findings: found,
            patch: None,
            recommendation: Some(recommendation),
        };
        let Some(template) = workload_template(case, s, container).await? else {
            return Ok(without_patch(found, format!("Roll back to {old_image}.")));
        };
        if template.get("/image") != Some(&json!(image)) {
            return Ok(without_patch(
                found,
                format!("The workload no longer uses {image}; check the rollout."),
            ));
        }
        let path = format!("{}/image", template.container_path);
        let explanation = format!(
            "Roll container {container} back to {old_image}, the image of revision {revision}, which has ready Pods."
        );
        Ok(Conclusion {
            findings: found,
            patch: Some(patch(
                case,
                guarded_replace(path, json!(image), json!(old_image)),
                explanation,
            )),
            recommendation: Some(format!("Then {then} before rolling forward again.")),
        })
    }
}

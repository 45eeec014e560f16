//! The ImagePullBackOff playbook: a registry that refuses credentials is explained; a tag the
//! registry lacks after a rollout is rolled back to the image of the last revision that ran.

use serde_json::json;
use tool_shapes::RolloutRevision;

use super::workload::{guarded_replace, patch, workload_template};
use super::{AgentError, Case, Conclusion, Session};
use super::{answer, failure_container, findings, no_fix, pod_container};

pub(super) async fn image_pull(case: &Case, s: &mut Session) -> Result<Conclusion, AgentError> {
    let failure = &case.report.spec.failure;
    let container = failure_container(case);
    let image = pod_container(case, &container)
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let registry = image
        .split('/')
        .next()
        .filter(|r| r.contains('.') || r.contains(':'))
        .unwrap_or("docker.io")
        .to_string();
    let mut evidence: Vec<String> = failure.evidence.iter().take(3).cloned().collect();
    if failure.reason == "RegistryAuthFailed" {
        let secrets = case
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default();
        let secrets = if secrets.is_empty() {
            "the Pod has no imagePullSecrets".to_string()
        } else {
            format!(
                "the Pod uses imagePullSecrets {}",
                secrets
                    .iter()
                    .map(|s| s.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        evidence.push(secrets.clone());
        return Ok(no_fix(
            format!(
                "Image {image} cannot be pulled: registry {registry} refused the credentials (auth failure)."
            ),
            format!("Registry {registry} requires authentication for {image} and {secrets}."),
            evidence,
            format!(
                "Create a docker-registry Secret with pull access to {image} and reference it in imagePullSecrets (or in the ServiceAccount); the operator does not handle credentials."
            ),
        ));
    }
    let not_found = failure.reason == "ImageNotFound";
    let summary = format!(
        "Image {image} cannot be pulled: {}.",
        if not_found {
            "the tag does not exist in the registry"
        } else {
            "the pull fails"
        }
    );
    if case.report.spec.workload.kind != "Deployment" {
        return Ok(no_fix(
            summary.clone(),
            summary,
            evidence,
            "Push the image or fix the tag.".into(),
        ));
    }
    let history = s
        .act(
            format!("Container {container} waits on image {image}, which the registry does not serve."),
            "After a rollout, the previous revision's image is the one known to work: read the rollout history.",
            "rollout_history",
            json!({"name": case.report.spec.workload.name}),
        )
        .await?;
    let revisions: Vec<RolloutRevision> = answer(&history).unwrap_or_default();
    let image_of =
        |r: &RolloutRevision| -> Option<String> { r.container(&container)?.image.clone() };
    let healthy = revisions
        .iter()
        .filter(|r| image_of(r).is_some_and(|i| i != image))
        .find(|r| r.ran());
    let root_cause = format!(
        "The rollout changed container {container}'s image to {image}, a tag the registry does not have."
    );
    let Some(previous) = healthy else {
        return Ok(no_fix(
            summary,
            root_cause,
            evidence,
            format!("Push {image} to {registry} or set an existing tag."),
        ));
    };
    let old_image = image_of(previous).unwrap_or_default();
    let revision = previous.revision;
    evidence.push(format!(
        "revision {revision} runs {old_image} with {} ready Pod(s)",
        previous.ready_replicas
    ));
    let Some(template) = workload_template(case, s, &container).await? else {
        return Ok(no_fix(
            summary,
            root_cause,
            evidence,
            format!("Roll back to {old_image}."),
        ));
    };
    if template.get("/image") != Some(&json!(image)) {
        return Ok(no_fix(
            summary,
            root_cause,
            evidence,
            format!("The workload no longer uses {image}; check the rollout."),
        ));
    }
    let path = format!("{}/image", template.container_path);
    let explanation = format!(
        "Roll container {container} back to {old_image}, the image of revision {revision}, which has ready Pods."
    );
    Ok(Conclusion {
        findings: findings(summary, root_cause, evidence),
        patch: Some(patch(
            case,
            guarded_replace(path, json!(image), json!(old_image)),
            explanation,
        )),
        recommendation: Some(format!("Then push {image} before rolling forward again.")),
    })
}

//! The ImagePullBackOff playbook: a registry that refuses credentials is explained; a registry
//! that is down, failing or rate-limiting is an outage, explained and never patched; a tag the
//! registry lacks after a rollout is rolled back to the image of the last revision that ran.

use serde_json::json;
use tool_shapes::RolloutRevision;

use super::workload::{guarded_replace, patch, workload_template};
use super::{AgentError, Case, Conclusion, Session};
use super::{answer, failure_container, findings, no_fix, pod_container};
use crate::failure::{ImagePullCause, quoted_marker, registry_of};

pub(super) async fn image_pull(case: &Case, s: &mut Session) -> Result<Conclusion, AgentError> {
    let failure = &case.report.spec.failure;
    let container = failure_container(case);
    let image = pod_container(case, &container)
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let registry = registry_of(&image);
    let mut evidence: Vec<String> = failure.evidence.iter().take(3).cloned().collect();
    let cause = ImagePullCause::parse(&failure.reason);
    if cause.is_outage() {
        return Ok(outage(
            cause,
            &image,
            &registry,
            failure.evidence.join("\n"),
            evidence,
        ));
    }
    if cause == ImagePullCause::Unauthorized {
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
    let not_found = cause == ImagePullCause::NotFound;
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

/// A registry that cannot serve the image whatever its tag: unreachable, failing or
/// rate-limiting. The workload is not at fault, so nothing is patched.
fn outage(
    cause: ImagePullCause,
    image: &str,
    registry: &str,
    errors: String,
    evidence: Vec<String>,
) -> Conclusion {
    let seen = quoted_marker(cause, &errors)
        .map(|m| format!(" ({m})"))
        .unwrap_or_default();
    let (summary, root_cause, recommendation) = match cause {
        ImagePullCause::RateLimited => (
            format!(
                "Image {image} cannot be pulled: registry {registry} is rate-limiting pulls{seen}."
            ),
            format!(
                "Registry {registry} refuses further pulls for now (429 Too Many Requests): the image \
                 reference is not at fault, the pull quota is spent."
            ),
            format!(
                "Authenticate pulls from {registry} (imagePullSecrets for an account with a higher \
                 limit), pull through a mirror or cache, or wait for the limit to reset; the image \
                 pulls once the registry accepts pulls again. Do not change the image."
            ),
        ),
        ImagePullCause::ServerError => (
            format!(
                "Image {image} cannot be pulled: registry {registry} answers with a server error{seen}."
            ),
            format!(
                "Registry {registry} is failing (it answered a 5xx): the image reference is not at \
                 fault, the registry is."
            ),
            format!(
                "Check {registry}'s status page or its operators; the kubelet retries and the image \
                 pulls once the registry recovers. Other workloads pulling from it fail the same way. \
                 Do not change the image."
            ),
        ),
        _ => (
            format!("Image {image} cannot be pulled: registry {registry} cannot be reached{seen}."),
            format!(
                "The node cannot reach registry {registry}{seen}: the registry, or the network path, \
                 DNS or TLS trust to it, is down; the image reference is not at fault."
            ),
            format!(
                "Check that {registry} is up and that nodes can resolve and reach it (DNS, egress, \
                 proxy, its TLS certificate); every workload pulling from it fails the same way. The \
                 image pulls once the registry is reachable. Do not change the image."
            ),
        ),
    };
    no_fix(summary, root_cause, evidence, recommendation)
}

//! The ImagePullBackOff playbook: a registry that refuses credentials is explained; a registry
//! that is down, failing or rate-limiting is an outage, explained and never patched; a tag the
//! registry lacks after a rollout is rolled back to the image of the last revision that ran.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::json;
use tool_shapes::EventSummary;

use super::workload::last_working_image;
use super::{AgentError, Case, Conclusion, Session};
use super::{
    answer, failure_container, findings, no_fix, on_node, pod_container, pod_node, waiting_message,
};
use crate::crd::Findings;
use crate::failure::{ImagePullCause, quoted_marker, registry_of, repository_of};
use crate::names::NameRule;

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
    if cause == ImagePullCause::NodeDiskFull {
        let node = on_node(pod_node(case));
        return Ok(no_fix(
            format!(
                "Image {image} cannot be unpacked: {node} has no space left on its image filesystem."
            ),
            format!(
                "The kubelet fetched {image} but could not unpack it: {node}'s disk where the container runtime keeps images is full (no space left on device). The image and the registry are fine; every Pod that needs a new image on {node} fails the same way."
            ),
            evidence,
            format!(
                "Free {node}'s image filesystem (remove unused images: `crictl rmi --prune`; check the kubelet's image garbage collection thresholds and the node's DiskPressure condition) or grow its disk; cordon it meanwhile so new Pods go elsewhere."
            ),
        ));
    }
    if cause == ImagePullCause::Unauthorized {
        let secrets: Vec<String> = case
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.name)
            .collect();
        let missing = missing_pull_secrets(case, s, &secrets).await?;
        if !missing.is_empty() {
            let names = missing.join(", ");
            evidence.push(format!(
                "imagePullSecrets {names}: not found in namespace {}",
                case.namespace()
            ));
            return Ok(no_fix(
                format!("Image {image} cannot be pulled: its pull Secret {names} does not exist."),
                format!(
                    "The Pod's imagePullSecrets {names} does not exist in namespace {}, so the kubelet pulls anonymously and registry {registry} refuses it.",
                    case.namespace()
                ),
                evidence,
                format!(
                    "Create Secret {names} (type kubernetes.io/dockerconfigjson) in namespace {} with pull access to {registry}, or point imagePullSecrets at an existing pull Secret; the operator does not handle credentials.",
                    case.namespace()
                ),
            ));
        }
        // Docker Hub (and registries copying it) answer a repository that does not exist as
        // they answer a private one. When the last working revision pulled another repository,
        // a misspelt name is likelier than credentials that never were: roll back to it.
        let errors = failure.evidence.join("\n");
        if AMBIGUOUS_DENIAL.iter().any(|m| errors.contains(m)) {
            let repository = repository_of(&image);
            let other_repository = |i: &str| repository_of(i) != repository;
            if let Some(rollback) = last_working_image(
                case,
                s,
                &container,
                &image,
                format!("Registry {registry} refuses {image} as if it did not exist."),
                other_repository,
            )
            .await?
            {
                let summary = format!(
                    "Image {image} cannot be pulled: repository {repository} does not exist or is private."
                );
                let root_cause = format!(
                    "Registry {registry} answers \"repository does not exist or may require authorization\" for {image}; the last working revision pulled {} from repository {} without that, so {repository} is most likely a misspelt or wrong repository name.",
                    rollback.image,
                    repository_of(&rollback.image)
                );
                return rollback
                    .conclude(
                        case,
                        s,
                        &container,
                        &image,
                        findings(summary, root_cause, evidence),
                        "correct the repository name".into(),
                    )
                    .await;
            }
        }
        let secrets = if secrets.is_empty() {
            "the Pod has no imagePullSecrets".to_string()
        } else {
            format!("the Pod uses imagePullSecrets {}", secrets.join(", "))
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
    if failure.reason == "ErrImageNeverPull" {
        let node = on_node(pod_node(case));
        return Ok(no_fix(
            format!("Image {image} is not on {node}, and its pull policy forbids pulling it."),
            format!(
                "Container {container} has imagePullPolicy: Never, so the kubelet only uses an image already on the node, and {node} does not have {image}."
            ),
            evidence,
            format!(
                "Load {image} onto every node the workload may run on, or set imagePullPolicy to IfNotPresent so the kubelet pulls it from {registry}."
            ),
        ));
    }
    if failure.reason == "InvalidImageName" {
        let summary = format!("Image reference {image} is not valid.");
        let root_cause = format!(
            "The kubelet cannot parse container {container}'s image reference {image}: {}",
            waiting_message(case, &container)
                .trim()
                .chars()
                .take(300)
                .collect::<String>()
        );
        return roll_back_or(
            case,
            s,
            &container,
            &image,
            format!("Container {container}'s image reference {image} does not parse."),
            findings(summary, root_cause, evidence),
            (
                "correct the image reference".into(),
                "Fix the image reference: lower-case repository, one tag after ':' or a digest after '@'.".into(),
            ),
        )
        .await;
    }
    if cause == ImagePullCause::PlatformMismatch {
        let platform = node_platform(case, s).await?;
        let summary = format!(
            "Image {image} cannot be pulled: it has no build for the node's platform{platform}."
        );
        let root_cause = format!(
            "Image {image} exists, but not for the OS and CPU architecture of the node the Pod runs on{platform}: a single-architecture image, or a manifest list that lacks this platform."
        );
        return roll_back_or(
            case,
            s,
            &container,
            &image,
            format!("Container {container} waits on image {image}, which has no build for its node."),
            findings(summary, root_cause, evidence),
            (
                format!("publish {image} for every platform the nodes run (a multi-arch build)"),
                format!("Build and push {image} for the nodes' platform (a multi-arch manifest list), or keep the Pod on nodes of the platform it was built for (a nodeSelector on kubernetes.io/arch)."),
            ),
        )
        .await;
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
    if !not_found {
        // Not told apart: say what the kubelet said, not that the tag is missing. Its end
        // says why; its start repeats the image.
        let message = waiting_message(case, &container);
        let chars: Vec<char> = message.trim().chars().collect();
        let error: String = match chars.len().checked_sub(300) {
            Some(cut) if cut > 0 => format!("...{}", chars[cut..].iter().collect::<String>()),
            _ => chars.iter().collect(),
        };
        let root_cause = format!(
            "The kubelet cannot pull container {container}'s image {image}, and its error is none of a missing tag, refused credentials, an unreachable or failing registry, another platform or a full disk: {error}"
        );
        return roll_back_or(
            case,
            s,
            &container,
            &image,
            format!("Container {container} waits on image {image}, which cannot be pulled."),
            findings(summary, root_cause, evidence),
            (
                "fix what the pull error names".into(),
                format!("Read the whole pull error (`kubectl describe pod` Events) and fix what it names for {image} on {registry}."),
            ),
        )
        .await;
    }
    let root_cause = format!(
        "The rollout changed container {container}'s image to {image}, a tag the registry does not have."
    );
    roll_back_or(
        case,
        s,
        &container,
        &image,
        format!("Container {container} waits on image {image}, which the registry does not serve."),
        findings(summary, root_cause, evidence),
        (
            format!("push {image} (or set a tag that exists)"),
            format!("Push {image} to {registry} or set an existing tag."),
        ),
    )
    .await
}

/// ` (linux/arm64)`: the platform the kubelet's message names, else the one the Pod's Node
/// reports (one read); empty when neither says.
async fn node_platform(case: &Case, s: &mut Session) -> Result<String, AgentError> {
    static PLATFORM: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\b(linux|windows)/(amd64|arm64|arm|386|ppc64le|s390x|riscv64)(/v[5-8])?\b")
            .expect("static regex")
    });
    let evidence = case.report.spec.failure.evidence.join("\n");
    if let Some(m) = PLATFORM.find(&evidence) {
        return Ok(format!(" ({})", m.as_str()));
    }
    let Some(node) = pod_node(case) else {
        return Ok(String::new());
    };
    let read = s
        .act(
            "The image has no build for the node's platform.",
            format!("Which OS and CPU architecture does node {node} run?"),
            "inspect_object",
            json!({"kind": "Node", "name": node}),
        )
        .await?;
    let info = answer::<serde_json::Value>(&read).unwrap_or_default();
    let info = &info["status"]["nodeInfo"];
    Ok(
        match (
            info["operatingSystem"].as_str(),
            info["architecture"].as_str(),
        ) {
            (Some(os), Some(arch)) if PLATFORM.is_match(&format!("{os}/{arch}")) => {
                format!(" ({os}/{arch}, node {node})")
            }
            _ => String::new(),
        },
    )
}

/// The image rolled back to the last revision that ran with ready Pods; `advice` is what to do
/// before rolling forward again, and what to do instead when no revision ran.
async fn roll_back_or(
    case: &Case,
    s: &mut Session,
    container: &str,
    image: &str,
    observation: String,
    found: Findings,
    (then, otherwise): (String, String),
) -> Result<Conclusion, AgentError> {
    match last_working_image(case, s, container, image, observation, |_| true).await? {
        Some(rollback) => {
            rollback
                .conclude(case, s, container, image, found, then)
                .await
        }
        None => Ok(Conclusion {
            findings: found,
            patch: None,
            recommendation: Some(otherwise),
        }),
    }
}

/// The Pod's pull Secrets that do not exist: each read (at most three); when the cluster
/// cannot say (a dump without Secrets), the kubelet's `FailedToRetrieveImagePullSecret` event.
async fn missing_pull_secrets(
    case: &Case,
    s: &mut Session,
    secrets: &[String],
) -> Result<Vec<String>, AgentError> {
    let mut missing = Vec::new();
    let mut unknown = false;
    for name in secrets
        .iter()
        .filter(|n| NameRule::Dns1123Subdomain.allows(n))
        .take(3)
    {
        let read = s
            .act(
                format!("The registry refuses the pull; the Pod names imagePullSecrets {name}."),
                format!("Does Secret {name} exist? Without it the kubelet pulls anonymously."),
                "inspect_object",
                json!({"kind": "Secret", "name": name}),
            )
            .await?;
        if read.ok {
            continue;
        }
        if read.text.contains("not found:") {
            missing.push(name.clone());
        } else {
            unknown = true;
        }
    }
    if !missing.is_empty() || !unknown {
        return Ok(missing);
    }
    let events = s
        .act(
            "The Secrets could not be read.",
            "The kubelet says which pull Secrets it could not retrieve in the Pod's events.",
            "list_events",
            json!({"kind": "Pod", "name": case.report.spec.pod.name}),
        )
        .await?;
    let said = answer::<Vec<EventSummary>>(&events).unwrap_or_default();
    let named = said
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedToRetrieveImagePullSecret"))
        .filter_map(|e| UNRETRIEVED.captures(e.message.as_deref()?))
        .flat_map(|c| c[1].split(", ").map(str::to_string).collect::<Vec<_>>())
        .filter(|n| secrets.contains(n));
    for name in named {
        if !missing.contains(&name) {
            missing.push(name);
        }
    }
    Ok(missing)
}

/// How Docker Hub (and registries that copy it) answer for a repository that does not exist
/// or that the puller may not see: the same words for both.
const AMBIGUOUS_DENIAL: [&str; 2] = [
    "repository does not exist or may require",
    "pull access denied for",
];

/// The kubelet's `Unable to retrieve some image pull secrets (a, b); attempting to pull the
/// image may not succeed.`
static UNRETRIEVED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"Unable to retrieve some image pull secrets \(([a-z0-9.,\s-]{1,512})\)")
        .expect("static regex")
});

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

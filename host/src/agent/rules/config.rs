//! The CreateContainerConfigError playbook: the ConfigMap, Secret or key the kubelet cannot find,
//! and whether the object exists and which keys it has. The operator does not write
//! configuration, so this playbook only explains.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;

use super::crash_loop::cannot_exec;
use super::{AgentError, Case, Conclusion, Session};
use super::{answer, failure_container, no_fix, pod_container, waiting_message};
use crate::failure::{ExecFailure, MissingConfig, breaks_run_as_non_root, missing_config};

/// The keys of a ConfigMap's or Secret's `data`; a Secret's values never leave the cluster layer.
#[derive(Deserialize)]
struct DataKeys {
    data: Option<BTreeMap<String, IgnoredAny>>,
}

pub(super) async fn config_error(case: &Case, s: &mut Session) -> Result<Conclusion, AgentError> {
    let container = failure_container(case);
    let evidence: Vec<String> = case
        .report
        .spec
        .failure
        .evidence
        .iter()
        .take(3)
        .cloned()
        .collect();
    let missing = evidence.iter().find_map(|e| missing_config(e));
    let Some(missing) = missing else {
        return Ok(refused(case, &container, evidence));
    };
    let mut evidence = evidence;
    let object = s
        .act(
            format!("The kubelet cannot find {}.", missing.describe()),
            format!(
                "Read {} {}: does it exist, and which keys does it have?",
                missing.kind, missing.name
            ),
            "inspect_object",
            json!({"kind": missing.kind, "name": missing.name}),
        )
        .await?;
    let state = match answer::<DataKeys>(&object) {
        Some(obj) => {
            let keys: Vec<String> = obj.data.into_iter().flatten().map(|(k, _)| k).collect();
            Some(format!(
                "{} {} exists with keys [{}]",
                missing.kind,
                missing.name,
                keys.join(", ")
            ))
        }
        None if object.text.contains("not found:") => Some(format!(
            "{} {} does not exist in namespace {}",
            missing.kind,
            missing.name,
            case.namespace()
        )),
        None => {
            evidence.push(format!(
                "{} {} could not be read: {}",
                missing.kind,
                missing.name,
                object.text.trim_start_matches("error: ")
            ));
            None
        }
    };
    evidence.extend(state.clone());
    let known = state.map(|s| format!(": {s}")).unwrap_or_default();
    // A volume's reference keeps every container from starting; an env var's, its container.
    let (who, what, reference) = match &missing.volume {
        Some(volume) => (
            format!("Pod {}", case.report.spec.pod.name),
            MissingConfig {
                volume: None,
                ..missing.clone()
            }
            .describe(),
            format!(
                "volume {volume} in the workload's template, or mark it optional if the workload can start without it"
            ),
        ),
        None => (
            format!("Container {container}"),
            missing.describe(),
            format!("the reference in container {container}"),
        ),
    };
    let refers = match &missing.volume {
        Some(volume) => format!("its volume {volume} mounts {what}"),
        None => format!("it refers to {what}"),
    };
    Ok(no_fix(
        format!("{who} cannot start: {what} is missing."),
        format!("{who} cannot start: {refers}, which the kubelet cannot find{known}."),
        evidence,
        match &missing.key {
            Some(key) => format!(
                "Add key {key} to {} {} (or fix {reference}); the operator does not write configuration.",
                missing.kind, missing.name
            ),
            None => format!(
                "Create {} {} in namespace {} (or fix {reference}).",
                missing.kind,
                missing.name,
                case.namespace()
            ),
        },
    ))
}

/// The kubelet or the runtime refused to create the container for something other than a
/// missing ConfigMap or Secret: `runAsNonRoot` against an image that runs as root, a command
/// that cannot run (CRI-O and crun check it at creation), or a message quoted as it is.
fn refused(case: &Case, container: &str, evidence: Vec<String>) -> Conclusion {
    let message = waiting_message(case, container);
    if breaks_run_as_non_root(&message) {
        let image = pod_container(case, container)
            .and_then(|c| c.image.clone())
            .unwrap_or_else(|| "its image".into());
        let user = NON_NUMERIC_USER
            .captures(&message)
            .map(|c| format!("as user {:?}, which is not numeric, so the kubelet cannot check it is not root", &c[1]))
            .unwrap_or("as root (user 0, or no USER at all)".into());
        return no_fix(
            format!("Container {container} cannot start: it must not run as root, and its image would."),
            format!("The Pod or container sets securityContext.runAsNonRoot: true, and image {image} runs {user}; the kubelet refuses to create the container."),
            evidence,
            "Set the container's securityContext.runAsUser to a non-root UID the image works with (the UID of its USER), or rebuild the image with a numeric non-root USER. Do not drop runAsNonRoot: the operator does not change security contexts.".into(),
        );
    }
    if let Some(failure) = ExecFailure::parse(&message) {
        return cannot_exec(case, container, &failure, evidence);
    }
    let said: String = message.trim().chars().take(300).collect();
    no_fix(
        format!("Container {container} cannot be created: {said}"),
        format!("The kubelet or the container runtime refused to create container {container}: {said}"),
        evidence,
        "Fix what the message names in the container's spec (its volume mounts and subPaths, security context, devices) or on the node; `kubectl describe pod` shows the same message in its events.".into(),
    )
}

/// `image has non-numeric user (nobody)`.
static NON_NUMERIC_USER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"non-numeric user \(([^()\s]{1,64})\)").expect("static regex"));

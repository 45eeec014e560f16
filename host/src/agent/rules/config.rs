//! The CreateContainerConfigError playbook: the ConfigMap, Secret or key the kubelet cannot find,
//! and whether the object exists and which keys it has. The operator does not write
//! configuration, so this playbook only explains.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;

use super::{AgentError, Case, Conclusion, Session};
use super::{answer, failure_container, no_fix};
use crate::failure::{MissingConfig, missing_config};

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
        return Ok(no_fix(
            format!(
                "Container {container} cannot be created: its configuration refers to something missing."
            ),
            evidence.first().cloned().unwrap_or_default(),
            evidence,
            "Check the ConfigMaps and Secrets the container refers to.".into(),
        ));
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

//! The CreateContainerConfigError playbook: the ConfigMap, Secret or key the kubelet cannot find,
//! and whether the object exists and which keys it has. The operator does not write
//! configuration, so this playbook only explains.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;

use super::{AgentError, Case, Conclusion, Session};
use super::{answer, failure_container, no_fix};
use crate::failure::missing_config;

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
    let what = missing.describe();
    let known = state.map(|s| format!(": {s}")).unwrap_or_default();
    Ok(no_fix(
        format!("Container {container} cannot start: {what} is missing."),
        format!("Container {container} refers to {what}, which the kubelet cannot find{known}."),
        evidence,
        match &missing.key {
            Some(key) => format!(
                "Add key {key} to {} {} (or fix the reference in container {container}); the operator does not write configuration.",
                missing.kind, missing.name
            ),
            None => format!(
                "Create {} {} in namespace {} (or fix the reference in container {container}).",
                missing.kind,
                missing.name,
                case.namespace()
            ),
        },
    ))
}

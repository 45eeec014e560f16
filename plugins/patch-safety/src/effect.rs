//! The rules judged by a patch's effect: the target before and after the whole patch, compared
//! container by container. Whatever the operations look like (a `remove` of `resources/limits`,
//! a `replace` of a whole container or pod spec), what they do is what is judged.
//!
//! Every reason starts with the rule's name and names the path it is about.

use serde_json::Value;

use crate::review::{Settings, pod_spec_prefix, quantity};

/// Who wrote the patch, from the review context's `author`: `rules` is the rules brain; anything
/// else (a model's name, or nothing) is held to the rules for model-authored patches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Author {
    Rules,
    Model,
}

impl Author {
    pub fn from_context(author: &str) -> Author {
        if author == "rules" {
            Author::Rules
        } else {
            Author::Model
        }
    }
}

/// The container lists of a pod spec; init and ephemeral containers run code as the workload too.
const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// The first rule the change from `before` to `after` breaks, as a denial reason.
pub fn problem(
    kind: &str,
    before: &Value,
    after: &Value,
    author: Author,
    settings: &Settings,
) -> Option<String> {
    replicas_problem(before, after).or_else(|| {
        let prefix = pod_spec_prefix(kind);
        let pod_before = before.pointer(prefix).unwrap_or(&Value::Null);
        let pod_after = after.pointer(prefix).unwrap_or(&Value::Null);
        CONTAINER_LISTS.iter().find_map(|list| {
            containers_problem(
                &format!("{prefix}/{list}"),
                pod_before.get(list),
                pod_after.get(list),
                author,
                settings,
            )
        })
    })
}

fn replicas_problem(before: &Value, after: &Value) -> Option<String> {
    let now = after.pointer("/spec/replicas")?;
    (now.as_f64() == Some(0.0) && before.pointer("/spec/replicas") != Some(now)).then(|| {
        "replicas-to-zero: /spec/replicas would become 0; no patch may scale a workload to zero"
            .to_string()
    })
}

fn named(list: Option<&Value>) -> Vec<(&str, &Value)> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| (c.get("name").and_then(Value::as_str).unwrap_or_default(), c))
        .collect()
}

fn containers_problem(
    list_path: &str,
    before: Option<&Value>,
    after: Option<&Value>,
    author: Author,
    settings: &Settings,
) -> Option<String> {
    let before = named(before);
    let after = named(after);
    for (name, _) in &before {
        if !after.iter().any(|(n, _)| n == name) {
            return Some(format!(
                "container-set: {list_path} would lose container {name:?}; no patch may remove a container"
            ));
        }
    }
    for (i, (name, now)) in after.iter().enumerate() {
        let path = format!("{list_path}/{i}");
        let Some((_, was)) = before.iter().find(|(n, _)| n == name) else {
            return Some(format!(
                "container-set: {path} would add container {name:?}; no patch may add a container"
            ));
        };
        let problem = limits_removed(&path, was, now)
            .or_else(|| ceiling_problem(&path, was, now, settings))
            // What runs as the workload is frozen for every author: the author is read from the
            // report's status, which is only as trustworthy as whoever can write it, and the rules
            // brain never changes these. Its one exception, an image rollback, is the host's to
            // check against the workload's own history.
            .or_else(|| frozen_problem(&path, was, now, author, settings))
            .or_else(|| env_problem(&path, was, now, settings));
        if problem.is_some() {
            return problem;
        }
    }
    None
}

fn section<'a>(container: &'a Value, which: &str) -> Vec<(&'a String, &'a Value)> {
    container
        .get("resources")
        .and_then(|r| r.get(which))
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .collect()
}

fn limits_removed(path: &str, was: &Value, now: &Value) -> Option<String> {
    let kept = section(now, "limits");
    section(was, "limits")
        .into_iter()
        .find(|(name, _)| !kept.iter().any(|(k, _)| k == name))
        .map(|(name, value)| {
            format!(
                "limit-removal: {path}/resources/limits/{} ({value}) would be removed; no patch may remove a resource limit",
                escape(name)
            )
        })
}

fn quantity_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A request or limit the patch sets (new, or different from before) above its ceiling.
fn ceiling_problem(path: &str, was: &Value, now: &Value, settings: &Settings) -> Option<String> {
    for which in ["requests", "limits"] {
        let old = section(was, which);
        for (name, value) in section(now, which) {
            if old.iter().any(|(n, v)| *n == name && *v == value) {
                continue;
            }
            let at = format!("{path}/resources/{which}/{}", escape(name));
            let Some(amount) = quantity_text(value).as_deref().and_then(quantity) else {
                return Some(format!(
                    "resource-ceiling: {at} = {value} is not a Kubernetes quantity"
                ));
            };
            let (cap, listed) = settings.ceiling_of(name);
            if quantity(cap).is_none_or(|cap| amount > cap) {
                let why = if listed {
                    String::new()
                } else {
                    format!(
                        " (resourceCeiling does not name {name}; unlisted resources are capped at unlistedResourceCeiling)"
                    )
                };
                return Some(format!(
                    "resource-ceiling: {at} = {} is above the {name} ceiling of {cap}{why}",
                    quantity_text(value).unwrap_or_default()
                ));
            }
        }
    }
    None
}

/// A container field (`image`, `command`, a probe's `exec`, ...) no patch may change; `image`
/// only a model may not (the rules brain rolls back to an image of the workload's history).
fn frozen_problem(
    path: &str,
    was: &Value,
    now: &Value,
    author: Author,
    settings: &Settings,
) -> Option<String> {
    settings
        .model_frozen_container_fields
        .iter()
        .filter(|field| author == Author::Model || field.as_str() != "image")
        .find_map(|field| {
            let pointer = format!("/{}", field.replace('.', "/"));
            (was.pointer(&pointer) != now.pointer(&pointer)).then(|| {
                format!(
                    "model-frozen-field: {path}{pointer} would change; no patch may change {field} (modelFrozenContainerFields; a model may not change image either)"
                )
            })
        })
}

/// An env entry a patch adds or changes whose name is on the denylist, whoever wrote it.
fn env_problem(path: &str, was: &Value, now: &Value, settings: &Settings) -> Option<String> {
    let old: Vec<&Value> = was
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let new = now.get("env").and_then(Value::as_array)?;
    new.iter().enumerate().find_map(|(i, entry)| {
        if old.contains(&entry) {
            return None;
        }
        let name = entry.get("name").and_then(Value::as_str).unwrap_or_default();
        let pattern = settings
            .model_denied_env
            .iter()
            .find(|p| env_name_matches(p, name))?;
        Some(format!(
            "model-denied-env: {path}/env/{i} would set {name}, which matches {pattern:?} in modelDeniedEnv; no patch may set it"
        ))
    })
}

/// `NAME` exactly, `PREFIX*`, `*SUFFIX` or `*PART*`, ignoring case (`http_proxy` is honoured
/// as much as `HTTP_PROXY`).
pub fn env_name_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.to_ascii_uppercase();
    let name = name.to_ascii_uppercase();
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        (Some(rest), Some(_)) if pattern.len() > 1 => name.contains(&rest[..rest.len() - 1]),
        (Some(suffix), None) => name.ends_with(suffix),
        (None, Some(prefix)) => name.starts_with(prefix),
        (Some(_), Some(_)) => true,
        (None, None) => name == pattern,
    }
}

/// A map key as a JSON Pointer token (`nvidia.com/gpu` → `nvidia.com~1gpu`).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_patterns_match_exactly_by_prefix_or_by_suffix_ignoring_case() {
        assert!(env_name_matches("LD_PRELOAD", "ld_preload"));
        assert!(!env_name_matches("LD_PRELOAD", "LD_PRELOADX"));
        assert!(env_name_matches("*_PROXY", "https_proxy"));
        assert!(!env_name_matches("*_PROXY", "PROXY_URL"));
        assert!(env_name_matches("LD_*", "LD_AUDIT"));
        assert!(env_name_matches("*PRELOAD*", "X_PRELOAD_Y"));
        assert!(env_name_matches("*", "ANY"));
    }
}

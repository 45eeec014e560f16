//! `policy-filter`: skips investigations nobody needs: Pods being deleted (unless the deletion
//! waits on a Node that stopped reporting), Pods and namespaces
//! that opted out with an annotation, and crash loops that have not restarted often enough yet.
// wit-bindgen's generated bindings take one argument per field of the WIT context record.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({ world: "policy-filter", path: "../../wit" });

use serde::Deserialize;
use serde_json::Value;

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Settings {
    /// An annotation that, set to "true" on a Pod or its Namespace, opts it out.
    pub opt_out_annotation: String,
    /// Crash loops with fewer restarts than this are left alone (one restart is not an incident).
    pub min_restarts: u32,
    pub skip_deleting: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            opt_out_annotation: "sre-operator.dev/ignore".into(),
            min_restarts: 3,
            skip_deleting: true,
        }
    }
}

impl Settings {
    pub fn parse(text: &str) -> Result<Settings, String> {
        let settings: Settings =
            serde_json::from_str(text).map_err(|e| format!("invalid settings: {e}"))?;
        if settings.opt_out_annotation.is_empty() {
            return Err("invalid settings: optOutAnnotation may not be empty".into());
        }
        Ok(settings)
    }
}

fn opted_out(object: &Value, annotation: &str) -> bool {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(annotation))
        .and_then(Value::as_str)
        == Some("true")
}

/// The decision, as a pure function: `None` means investigate.
pub fn decide(
    pod: &Value,
    failure: &Value,
    namespace: Option<&Value>,
    settings: &Settings,
) -> Option<String> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("the Pod");
    // A deletion on a Node that stopped reporting waits for a kubelet that is gone: that Pod
    // is not going away, it is the evidence.
    let stranded = failure.get("class").and_then(Value::as_str) == Some("Evicted")
        && failure.get("reason").and_then(Value::as_str) == Some("NodeNotReady");
    if settings.skip_deleting
        && !stranded
        && pod
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null())
    {
        return Some(format!("Pod {name} is being deleted"));
    }
    if opted_out(pod, &settings.opt_out_annotation) {
        return Some(format!(
            "Pod {name} opted out with the annotation {}=true",
            settings.opt_out_annotation
        ));
    }
    if let Some(ns) = namespace.filter(|ns| opted_out(ns, &settings.opt_out_annotation)) {
        let ns_name = ns
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        return Some(format!(
            "namespace {ns_name} opted out with the annotation {}=true",
            settings.opt_out_annotation
        ));
    }
    // A failed Pod is never restarted (a Job's, restartPolicy Never): its one failure is final,
    // and a Job's retries are new Pods, so there is no restart count to wait for.
    let failed = pod.pointer("/status/phase").and_then(Value::as_str) == Some("Failed");
    if failure.get("class").and_then(Value::as_str) == Some("CrashLoopBackOff") && !failed {
        let container = failure.get("container").and_then(Value::as_str);
        let restarts = ["/status/containerStatuses", "/status/initContainerStatuses"]
            .iter()
            .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
            .flatten()
            .filter(|s| container.is_none_or(|c| s.get("name").and_then(Value::as_str) == Some(c)))
            .filter_map(|s| s.get("restartCount").and_then(Value::as_u64))
            .max()
            .unwrap_or(0);
        if restarts < u64::from(settings.min_restarts) {
            return Some(format!(
                "restarted {restarts} time(s), below the threshold of {} for a crash loop",
                settings.min_restarts
            ));
        }
    }
    None
}

struct PolicyFilter;

std::thread_local! {
    static SETTINGS: std::cell::RefCell<Settings> = std::cell::RefCell::new(Settings::default());
}

impl Guest for PolicyFilter {
    fn configure(settings: String) -> Result<(), String> {
        let parsed = Settings::parse(&settings)?;
        SETTINGS.with(|s| *s.borrow_mut() = parsed);
        Ok(())
    }

    fn decide(pod: String, failure: String, context: DecideContext) -> Decision {
        let parse = |text: &str| serde_json::from_str::<Value>(text);
        let (Ok(pod), Ok(failure)) = (parse(&pod), parse(&failure)) else {
            return Decision::Skip("the host sent a Pod or failure that is not JSON".into());
        };
        let namespace = context.namespace.as_deref().and_then(|n| parse(n).ok());
        let settings = SETTINGS.with(|s| s.borrow().clone());
        match decide(&pod, &failure, namespace.as_ref(), &settings) {
            Some(reason) => Decision::Skip(reason),
            None => Decision::Investigate,
        }
    }
}

export!(PolicyFilter);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(restarts: u64, annotations: Value) -> Value {
        json!({"metadata": {"name": "web-1", "annotations": annotations},
               "status": {"containerStatuses": [{"name": "app", "restartCount": restarts}]}})
    }

    #[test]
    fn skips_what_nobody_needs_investigated() {
        let s = Settings::default();
        let crash = json!({"class": "CrashLoopBackOff", "container": "app"});
        assert_eq!(decide(&pod(5, json!({})), &crash, None, &s), None);
        assert!(
            decide(&pod(1, json!({})), &crash, None, &s)
                .unwrap()
                .contains("restarted 1 time(s), below the threshold of 3")
        );
        let mut failed = pod(0, json!({}));
        failed["status"]["phase"] = json!("Failed");
        assert_eq!(
            decide(&failed, &crash, None, &s),
            None,
            "a failed Pod is never restarted: its one failure is final"
        );
        let pending = json!({"class": "Pending"});
        assert_eq!(
            decide(&pod(0, json!({})), &pending, None, &s),
            None,
            "restarts only matter for crash loops"
        );
        assert!(
            decide(
                &pod(5, json!({"sre-operator.dev/ignore": "true"})),
                &crash,
                None,
                &s
            )
            .unwrap()
            .contains("Pod web-1 opted out")
        );
        let ns = json!({"metadata": {"name": "lab", "annotations": {"sre-operator.dev/ignore": "true"}}});
        assert!(
            decide(&pod(5, json!({})), &crash, Some(&ns), &s)
                .unwrap()
                .contains("namespace lab opted out")
        );
        let mut deleting = pod(5, json!({}));
        deleting["metadata"]["deletionTimestamp"] = json!("2026-11-25T10:00:00Z");
        assert!(
            decide(&deleting, &crash, None, &s)
                .unwrap()
                .contains("being deleted")
        );
        let stranded = json!({"class": "Evicted", "reason": "NodeNotReady"});
        assert_eq!(decide(&deleting, &stranded, None, &s), None);
        let evicted = json!({"class": "Evicted", "reason": "MemoryPressure"});
        assert!(decide(&deleting, &evicted, None, &s).is_some());
        assert!(Settings::parse(r#"{"minRestarts": -1}"#).is_err());
        assert!(
            Settings::parse(r#"{"optOutAnnotation": ""}"#)
                .unwrap_err()
                .contains("may not be empty")
        );
    }
}

//! The two custom resources, `DebugPolicy` and `DiagnosticReport`, and the CRD generation that
//! `sre-operator crds` and the checked-in `crds/*.yaml` come from.

mod condition;
mod policy;
mod report;

pub use condition::{condition, replace_conditions, set_condition};
pub use policy::*;
pub use report::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "sre-operator.dev";
pub const VERSION: &str = "v1alpha1";
pub const API_VERSION: &str = "sre-operator.dev/v1alpha1";

/// What went wrong with a Pod. The names are the ones users know from `kubectl get pods`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum FailureClass {
    CrashLoopBackOff,
    Pending,
    ImagePullBackOff,
    #[serde(rename = "OOMKilled")]
    OomKilled,
    CreateContainerConfigError,
    ProbeFailure,
    /// The Pod's Node ended it: its kubelet evicted it (the Node ran short of memory, disk or
    /// PIDs, or the Pod outgrew its ephemeral-storage limits; `Failed` with reason `Evicted`),
    /// terminated it as the Node shut down, or refused it at admission (`OutOfcpu`,
    /// `NodeAffinity`, ...); or the control plane evicted it from a Node that stopped
    /// reporting (marked not ready, then deleted).
    Evicted,
    /// The workload's controller cannot create its Pods: the API server refuses them (a
    /// ResourceQuota, Pod Security, a missing ServiceAccount, a LimitRange, a webhook). Read
    /// from the controller, since no Pod exists.
    FailedCreate,
    /// An Alertmanager alert about a workload that maps to none of the above (a latency or error
    /// rate alert): investigated with the tools, the alert's text as evidence.
    Alert,
}

impl FailureClass {
    /// What the operator reads from a Pod's status and events (and, for `FailedCreate`, from
    /// the controller that could not create the Pod).
    pub const DETECTED: [FailureClass; 8] = [
        FailureClass::CrashLoopBackOff,
        FailureClass::Pending,
        FailureClass::ImagePullBackOff,
        FailureClass::OomKilled,
        FailureClass::CreateContainerConfigError,
        FailureClass::ProbeFailure,
        FailureClass::Evicted,
        FailureClass::FailedCreate,
    ];

    /// Every class a report may have: the detected ones, and `Alert` (only from Alertmanager).
    pub const ALL: [FailureClass; 9] = {
        let mut all = [FailureClass::Alert; 9];
        let mut i = 0;
        while i < Self::DETECTED.len() {
            all[i] = Self::DETECTED[i];
            i += 1;
        }
        all
    };

    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::CrashLoopBackOff => "CrashLoopBackOff",
            FailureClass::Pending => "Pending",
            FailureClass::ImagePullBackOff => "ImagePullBackOff",
            FailureClass::OomKilled => "OOMKilled",
            FailureClass::CreateContainerConfigError => "CreateContainerConfigError",
            FailureClass::ProbeFailure => "ProbeFailure",
            FailureClass::Evicted => "Evicted",
            FailureClass::FailedCreate => "FailedCreate",
            FailureClass::Alert => "Alert",
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FailureClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FailureClass::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = FailureClass::ALL.iter().map(|c| c.as_str()).collect();
                format!(
                    "unknown failure class {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Both CRDs, in the order `kubectl apply` should see them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        kubernetes_formats(DebugPolicy::crd()),
        kubernetes_formats(DiagnosticReport::crd()),
    ]
}

/// schemars writes Rust's unsigned integers as `format: uint32`/`uint64`, which the API server
/// does not know (`kubectl apply` warns "unrecognized format"): they become plain integers with
/// `minimum: 0`.
fn kubernetes_formats(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                let unsigned = map
                    .get("format")
                    .and_then(serde_json::Value::as_str)
                    .is_some_and(|f| f.starts_with("uint"));
                if unsigned {
                    map.remove("format");
                    let minimum = map.get("minimum").and_then(serde_json::Value::as_f64);
                    if minimum.is_none_or(|m| m < 0.0) {
                        map.insert("minimum".into(), serde_json::json!(0.0));
                    }
                }
                map.values_mut().for_each(walk);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(&crd).expect("a CRD always serializes");
    walk(&mut value);
    serde_json::from_value(value).expect("only formats and minimums changed")
}

/// The file name a CRD is checked in under in `crds/`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("crd"))
}

/// The YAML `crds/` holds for a CRD: generated, never edited by hand.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> String {
    let body = serde_yaml::to_string(crd).expect("a CRD always serializes");
    format!(
        "# Generated by `sre-operator crds --output-dir crds` from host/src/crd; do not edit.\n{body}"
    )
}

/// Schema for a field that holds arbitrary JSON (a patch value, a tool's arguments).
pub(crate) fn any_json(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// Schema for an optional field that holds arbitrary JSON.
pub(crate) fn optional_any_json(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "nullable": true, "x-kubernetes-preserve-unknown-fields": true })
}

/// Go-style durations as Kubernetes writes them (`90s`, `10m`, `1h30m`).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// Parses a duration field, naming the field when it is invalid.
pub fn parse_duration(field: &str, value: &str) -> Result<std::time::Duration, String> {
    let parsed: kube::core::Duration = value.parse().map_err(|e| {
        format!("{field}: {value:?} is not a duration like 90s, 10m or 1h30m ({e})")
    })?;
    if parsed.is_negative() {
        return Err(format!("{field}: {value:?} is negative"));
    }
    Ok(parsed.into())
}

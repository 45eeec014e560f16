//! The rules brain: deterministic playbooks per failure class that call the same tools as the
//! model and write the same report. It needs no API key, and it is what tests assert exactly.
//!
//! One file per playbook; `clues` reads crash logs, `workload` turns a fix into a guarded
//! patch on the owning workload. Every patch targets the owning workload (never the Pod) and
//! begins with `test` operations on the values it replaces.

mod alert;
mod climb;
mod clues;
mod config;
mod crash_loop;
mod evicted;
mod failed_create;
mod image_pull;
mod netpol;
mod oom;
mod pending;
mod probe;
mod workload;

#[cfg(test)]
mod tests;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Container, ContainerStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::de::DeserializeOwned;

use super::{AgentError, Brain, Case, Conclusion, Session, ToolOutcome};
use crate::crd::{FailureClass, Findings};

pub use clues::{Clue, Unreachable, read_clues};
pub use oom::OOM_FACTOR;

pub struct RulesBrain;

#[async_trait]
impl Brain for RulesBrain {
    fn kind(&self) -> &'static str {
        "rules"
    }

    fn model(&self) -> Option<String> {
        None
    }

    async fn investigate(&self, case: &Case, s: &mut Session) -> Result<Conclusion, AgentError> {
        let failure = &case.report.spec.failure;
        s.note(
            format!(
                "{} is {} ({}): {}",
                case.report.spec.pod.name,
                failure.class,
                failure.reason,
                failure.evidence.first().cloned().unwrap_or_default()
            ),
            format!("Following the {} playbook.", failure.class),
        );
        match failure.class {
            FailureClass::CrashLoopBackOff => crash_loop::crash_loop(case, s).await,
            FailureClass::Pending => pending::pending(case, s).await,
            FailureClass::ImagePullBackOff => image_pull::image_pull(case, s).await,
            FailureClass::OomKilled => oom::oom_killed(case, s).await,
            FailureClass::CreateContainerConfigError => config::config_error(case, s).await,
            FailureClass::ProbeFailure => probe::probe_failure(case, s).await,
            FailureClass::Evicted => evicted::evicted(case, s).await,
            FailureClass::FailedCreate => failed_create::failed_create(case, s).await,
            FailureClass::Alert => alert::alert(case, s).await,
        }
    }
}

/// A tool's answer read as its shape; None when the tool failed or answered something else (a
/// truncated answer, a tool of another make).
fn answer<T: DeserializeOwned>(outcome: &ToolOutcome) -> Option<T> {
    outcome
        .ok
        .then(|| serde_json::from_str(&outcome.text).ok())
        .flatten()
}

fn findings(summary: String, root_cause: String, evidence: Vec<String>) -> Findings {
    Findings {
        summary,
        root_cause,
        evidence,
    }
}

/// A conclusion without a patch: what a person should do instead.
fn no_fix(
    summary: String,
    root_cause: String,
    evidence: Vec<String>,
    recommendation: String,
) -> Conclusion {
    Conclusion {
        findings: findings(summary, root_cause, evidence),
        patch: None,
        recommendation: Some(recommendation),
    }
}

/// The named container (or init container) of the failing Pod.
fn pod_container<'a>(case: &'a Case, name: &str) -> Option<&'a Container> {
    let spec = case.pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

/// The memory a container requests, as written.
fn memory_request(container: Option<&Container>) -> Option<Quantity> {
    let resources = container?.resources.as_ref()?;
    resources.requests.as_ref()?.get("memory").cloned()
}

/// The memory limit of a container, as written.
fn memory_limit(container: Option<&Container>) -> Option<Quantity> {
    let resources = container?.resources.as_ref()?;
    resources.limits.as_ref()?.get("memory").cloned()
}

/// The Pod's first container.
fn first_container(case: &Case) -> Option<String> {
    case.pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
}

/// The failing Pod's Node, when it names one whose name may reach a tool's request.
fn pod_node(case: &Case) -> Option<&str> {
    case.pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| crate::names::NameRule::Dns1123Subdomain.allows(n))
}

/// `node N`, or `its node` when the Pod names none.
fn on_node(node: Option<&str>) -> String {
    node.map(|n| format!("node {n}"))
        .unwrap_or("its node".into())
}

/// Reads `node` through `get_resource_usage`, saying why; None when the tool could not.
async fn read_node(
    s: &mut Session,
    node: &str,
    observation: String,
    thought: String,
) -> Result<Option<crate::cluster::NodeUsage>, AgentError> {
    let usage = s
        .act(
            observation,
            thought,
            "get_resource_usage",
            serde_json::json!({"nodeName": node}),
        )
        .await?;
    Ok(answer(&usage))
}

/// Whether the container's failed run is a previous one (`--previous`): it is, unless the
/// container is terminated now and not restarted (a failed Job's Pod), when its current log is
/// the failed run's.
fn failed_run_is_previous(case: &Case, container: &str) -> bool {
    // An init container that never completes is failing in its current run.
    if case.report.spec.failure.reason
        == crate::failure::PendingReason::InitContainerRunning.as_str()
    {
        return false;
    }
    let terminated_now = container_status(case, container)
        .and_then(|cs| cs.state.as_ref())
        .is_some_and(|s| s.terminated.is_some());
    !terminated_now
}

/// The status of the failing Pod's container (or init container) `name`.
fn container_status<'a>(case: &'a Case, name: &str) -> Option<&'a ContainerStatus> {
    let status = case.pod.status.as_ref()?;
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .find(|cs| cs.name == name)
}

/// The kubelet's waiting message for the failing Pod's container `name` (empty when none).
fn waiting_message(case: &Case, name: &str) -> String {
    container_status(case, name)
        .and_then(|cs| cs.state.as_ref()?.waiting.as_ref()?.message.clone())
        .unwrap_or_default()
}

/// The container the failure is about, or the Pod's first when the failure names none.
fn failure_container(case: &Case) -> String {
    case.report
        .spec
        .failure
        .container
        .clone()
        .or_else(|| first_container(case))
        .unwrap_or_default()
}

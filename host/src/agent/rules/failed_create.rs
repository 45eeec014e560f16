//! The FailedCreate playbook: the API server refuses the Pods a controller creates. What it
//! refused them for is in its words, recorded by the controller; the operator changes neither
//! quotas, Pod Security levels, ServiceAccounts nor webhooks, so this playbook only explains.

use super::{AgentError, Case, Conclusion, Session, no_fix};
use crate::failure::Refusal;

pub(super) async fn failed_create(case: &Case, s: &mut Session) -> Result<Conclusion, AgentError> {
    let failure = &case.report.spec.failure;
    let evidence: Vec<String> = failure.evidence.iter().take(4).cloned().collect();
    let w = &case.report.spec.workload;
    let ns = case.namespace();
    let workload = format!("{} {}", w.kind, w.name);
    let refusal = Refusal::parse(&evidence.join("\n"));
    s.note(
        format!(
            "The API server refuses {workload}'s Pods ({}).",
            refusal.reason()
        ),
        "No Pod exists to read: the refusal the controller recorded says why.",
    );
    let (summary, root_cause, recommendation) = match refusal {
        Refusal::QuotaExceeded {
            quota,
            requested,
            used,
            limited,
        } => (
            format!("{workload} cannot create Pods: ResourceQuota {quota} is exhausted."),
            format!(
                "ResourceQuota {quota} in namespace {ns} allows {limited}; {used} is in use and each new Pod requests {requested}, so the API server refuses it."
            ),
            format!(
                "Raise ResourceQuota {quota}'s hard limit, or free its budget (scale down or lower the requests of other workloads in {ns}: `kubectl describe resourcequota {quota} -n {ns}`)."
            ),
        ),
        Refusal::QuotaRequiresResources { quota, missing } => (
            format!("{workload} cannot create Pods: ResourceQuota {quota} needs resources they do not state."),
            format!(
                "ResourceQuota {quota} in namespace {ns} tracks resources the Pod template leaves unset: must specify {missing}."
            ),
            format!(
                "Set {missing} in the containers' resources (or add a LimitRange with defaults to {ns})."
            ),
        ),
        Refusal::PodSecurity { level, violations } => (
            format!("{workload} cannot create Pods: they violate Pod Security {level}."),
            format!(
                "Namespace {ns} enforces Pod Security \"{level}\" and the Pod template breaks it: {violations}."
            ),
            "Change the Pod template's securityContext as listed, or (if the workload needs it) run it in a namespace whose pod-security.kubernetes.io/enforce level allows it.".to_string(),
        ),
        Refusal::ServiceAccountNotFound { name } => (
            format!("{workload} cannot create Pods: ServiceAccount {name} does not exist."),
            format!(
                "The Pod template runs as ServiceAccount {name}, which namespace {ns} does not have, so the API server refuses every Pod."
            ),
            format!(
                "Create ServiceAccount {name} in {ns} (with the RBAC the workload needs), or point serviceAccountName at one that exists."
            ),
        ),
        Refusal::LimitRange { rule } => (
            format!("{workload} cannot create Pods: a LimitRange in {ns} refuses their resources."),
            format!("A LimitRange in namespace {ns} refuses the Pod template: {rule}."),
            format!(
                "Bring the containers' resources within the LimitRange (`kubectl describe limitrange -n {ns}`), or change the LimitRange."
            ),
        ),
        Refusal::WebhookDenied { webhook, message } => (
            format!("{workload} cannot create Pods: admission webhook {webhook} denies them."),
            format!("Admission webhook {webhook} denies the Pod template: {message}."),
            format!(
                "Change the Pod template to satisfy the policy behind {webhook}, or ask its owners for an exception."
            ),
        ),
        Refusal::WebhookUnavailable {
            webhook,
            service,
            error,
        } => {
            let backend = match &service {
                Some((namespace, name)) => format!("its Service {name} in namespace {namespace}"),
                None => "its endpoint".to_string(),
            };
            let check = match &service {
                // Names the API accepts (Refusal::parse checks them): safe to paste.
                Some((namespace, name)) => format!(
                    "Bring back the webhook's backend (`kubectl get pods,endpointslices -n {namespace}` and the logs of what serves Service {name}); "
                ),
                _ => "Bring back the webhook's backend; ".to_string(),
            };
            (
                format!("{workload} cannot create Pods: admission webhook {webhook} cannot be called."),
                format!(
                    "The API server cannot call admission webhook {webhook} ({backend}: {error}); the webhook fails closed (failurePolicy: Fail), so every Pod it should review is refused, whatever the Pod template says."
                ),
                format!(
                    "{check}until it answers, the webhook's configuration (`kubectl get validatingwebhookconfigurations,mutatingwebhookconfigurations`) can exclude {ns} with its namespaceSelector or fail open (failurePolicy: Ignore), if its owners accept that. The workloads it refuses need no change."
                ),
            )
        }
        Refusal::Other => (
            format!("{workload} cannot create Pods: the API server refuses them."),
            evidence.first().cloned().unwrap_or_default(),
            format!(
                "Read the refusal (`kubectl describe {} {}` -n {ns}, Events) and fix what it names.",
                w.kind.to_ascii_lowercase(),
                w.name
            ),
        ),
    };
    Ok(no_fix(summary, root_cause, evidence, recommendation))
}

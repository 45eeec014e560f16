//! Incidents: reports whose failures share one cause (a missing ConfigMap, a registry that
//! fails, Nodes that are NotReady, a Node that refuses Pods or shut down, a CNI plugin or Node
//! that gives Pods no sandbox, a StorageClass that does not provision, a Service the workloads
//! call that is missing or refuses them, a ConfigMap or Secret whose content they cannot parse,
//! a ResourceQuota, ServiceAccount or Pod Security level that refuses their Pods) are one
//! incident, investigated once. The cause is read from what detection recorded (and, for a
//! claim, its StorageClass; for a crash loop, the last lines of its log and the Service or
//! mounted file they name) before any investigation, so grouping costs no model call.
//!
//! The first report of a cause leads: it runs the investigation and carries
//! `status.incidentDetail` (the cause and every member). Every member, the lead too, carries
//! `status.incident`; the others take the lead's findings instead of investigating.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use sha2::{Digest, Sha256};

use crate::agent::rules::{Clue, Unreachable, read_clues};
use crate::cluster::{Cluster, LogRequest, ResourceKind};
use crate::crd::{
    DiagnosticReport, DiagnosticReportStatus, FailureClass, Findings, IncidentDetail,
    IncidentMember, Phase, condition,
};
use crate::failure::{
    EvictionCause, ImagePullCause, LOST_NODE_TAINTS, PendingReason, Refusal, Resolver,
    SandboxFailure, config_source, missing_config, registry_of,
};

/// A cause several failures can share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// What makes two failures one: `config/shop/ConfigMap/app-config`, `registry/ghcr.io/...`.
    pub key: String,
    /// The cause for a person.
    pub description: String,
}

/// The Node conditions the scheduler and the node controller turn into taints.
const NODE_CONDITION_TAINTS: &[(&str, &str)] = &[
    ("node.kubernetes.io/not-ready", "Nodes are NotReady"),
    ("node.kubernetes.io/unreachable", "Nodes are unreachable"),
    (
        "node.kubernetes.io/memory-pressure",
        "Nodes are under memory pressure",
    ),
    (
        "node.kubernetes.io/disk-pressure",
        "Nodes are under disk pressure",
    ),
    (
        "node.kubernetes.io/pid-pressure",
        "Nodes are under PID pressure",
    ),
    (
        "node.kubernetes.io/network-unavailable",
        "Nodes have no network",
    ),
];

/// The shared cause of `report`'s failure, if it is one that other workloads can share.
/// `pod` is the failing Pod; `cluster` is read only for a Pending Pod's claims.
pub async fn cause_of(
    report: &DiagnosticReport,
    pod: &Pod,
    cluster: &dyn Cluster,
) -> Option<Cause> {
    let failure = &report.spec.failure;
    let namespace = &report.spec.pod.namespace;
    match failure.class {
        FailureClass::CreateContainerConfigError => {
            let missing = failure.evidence.iter().find_map(|e| missing_config(e))?;
            let ns = missing.namespace.as_deref().unwrap_or(namespace);
            if !(is_name(ns) && is_name(&missing.name)) {
                return None;
            }
            Some(Cause {
                key: format!("config/{ns}/{}/{}", missing.kind, missing.name),
                description: format!(
                    "{} {ns}/{} is missing or lacks a key the workloads read",
                    missing.kind, missing.name
                ),
            })
        }
        FailureClass::ImagePullBackOff => {
            let cause = ImagePullCause::parse(&failure.reason);
            let what = match cause {
                ImagePullCause::NotFound => "does not have the images' tags",
                ImagePullCause::Unauthorized => "refuses the credentials",
                ImagePullCause::Unreachable => "is unreachable",
                ImagePullCause::ServerError => "answers with server errors",
                ImagePullCause::RateLimited => "rate-limits pulls",
                // The node's disk, not the registry: the Pods of that node. Per namespace: no
                // Node condition says which filesystem is full, and an event saying so can be a
                // tenant's.
                ImagePullCause::NodeDiskFull => {
                    let node = node_of(pod)?;
                    return Some(Cause {
                        key: format!("node/{node}/imagefs-full/{namespace}"),
                        description: format!("node {node} has no space left to unpack images"),
                    });
                }
                // Each image's own builds, not the registry.
                ImagePullCause::PlatformMismatch | ImagePullCause::Unknown => return None,
            };
            let image = failing_image(report, pod)?;
            let registry = registry_of(&image);
            // A host[:port], nothing else: it is read from what a tenant wrote.
            let host = registry.split(':').next().unwrap_or_default();
            if !is_name(host) || registry.len() > host.len() + 6 {
                return None;
            }
            Some(Cause {
                key: format!("registry/{registry}/{}", failure.reason),
                description: format!("registry {registry} {what}"),
            })
        }
        // An init container that waits for a Service that is missing: the crash loops' causes.
        FailureClass::Pending if failure.reason == PendingReason::InitContainerRunning.as_str() => {
            crash_cause(report, pod, cluster).await
        }
        FailureClass::Pending => {
            let text = failure.evidence.join("\n");
            if let Some((taint, description)) =
                NODE_CONDITION_TAINTS.iter().find(|(t, _)| text.contains(t))
            {
                return Some(Cause {
                    key: format!("nodes/{taint}"),
                    description: format!("{description} (taint {taint})"),
                });
            }
            if let Some(sandbox) = failure
                .evidence
                .iter()
                .find_map(|e| SandboxFailure::parse(e))
            {
                return sandbox_cause(&sandbox, pod);
            }
            if failure.reason != PendingReason::UnboundPersistentVolumeClaim.as_str() {
                return None;
            }
            let class = claims_storage_class(pod, namespace, cluster).await?;
            Some(Cause {
                key: format!("storageclass/{class}"),
                description: format!("StorageClass {class} does not bind the claims that use it"),
            })
        }
        FailureClass::Evicted => {
            // The same key as Pods the scheduler keeps off Nodes under that pressure (or lost):
            // the evictions and the Pods that cannot come back are one incident.
            let cause = EvictionCause::parse(&failure.reason);
            match cause {
                EvictionCause::NodeShutdown => return node_shutdown(pod, cluster).await,
                EvictionCause::Rejected => {
                    return refused_by_node(pod, &failure.reason, cluster).await;
                }
                _ => {}
            }
            let taint = match cause.node_taint() {
                Some(taint) => taint,
                None if cause == EvictionCause::NodeNotReady => {
                    lost_node_taint(pod, cluster).await?
                }
                None => return None,
            };
            let (_, description) = NODE_CONDITION_TAINTS.iter().find(|(t, _)| *t == taint)?;
            Some(Cause {
                key: format!("nodes/{taint}"),
                description: if cause == EvictionCause::NodeNotReady {
                    format!("{description}: the Pods on them are stranded (taint {taint})")
                } else {
                    format!("{description}: their kubelets evict Pods (taint {taint})")
                },
            })
        }
        FailureClass::CrashLoopBackOff => crash_cause(report, pod, cluster).await,
        // A health endpoint answering 5xx names what it cannot reach in its log, as a crash does.
        FailureClass::ProbeFailure
            if failure
                .evidence
                .iter()
                .any(|e| e.to_ascii_lowercase().contains("statuscode: 5")) =>
        {
            crash_cause(report, pod, cluster).await
        }
        FailureClass::FailedCreate => {
            let (key, description) = match Refusal::parse(&failure.evidence.join("\n")) {
                Refusal::QuotaExceeded { quota, .. }
                | Refusal::QuotaRequiresResources { quota, .. } => (
                    format!("quota/{namespace}/{quota}"),
                    format!("ResourceQuota {namespace}/{quota} refuses the workloads' new Pods"),
                ),
                Refusal::ServiceAccountNotFound { name } => (
                    format!("serviceaccount/{namespace}/{name}"),
                    format!(
                        "ServiceAccount {namespace}/{name}, which the workloads run as, does not exist"
                    ),
                ),
                // Down, not denying: every Pod it reviews is refused, whatever its template.
                Refusal::WebhookUnavailable { webhook, .. } => (
                    format!("webhook/{namespace}/{webhook}"),
                    format!(
                        "admission webhook {webhook} cannot be called, and the API server refuses the Pods it reviews"
                    ),
                ),
                Refusal::PodSecurity { level, .. } => (
                    format!("podsecurity/{namespace}"),
                    format!(
                        "namespace {namespace} enforces Pod Security {level}, which the workloads' Pods break"
                    ),
                ),
                _ => return None,
            };
            let names_ok = key.split('/').skip(1).all(is_name);
            names_ok.then_some(Cause { key, description })
        }
        _ => None,
    }
}

/// The taint the node controller put on the Pod's Node when it stopped reporting: the Pod
/// alone does not say whether the Node is NotReady or unreachable.
async fn lost_node_taint(pod: &Pod, cluster: &dyn Cluster) -> Option<&'static str> {
    let (_, object) = pods_node(pod, cluster).await?;
    let taints = object["spec"]["taints"].as_array()?;
    LOST_NODE_TAINTS
        .into_iter()
        .map(|(key, _)| key)
        .find(|key| taints.iter().any(|t| t["key"].as_str() == Some(key)))
}

/// The name of the Node `pod` is bound to, when it is a name (it reaches keys and requests).
fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()?
        .node_name
        .as_deref()
        .filter(|n| is_name(n))
}

/// The Node `pod` is bound to, read (one request): its name checked before it reaches the
/// API, and None when it does not exist.
async fn pods_node(
    pod: &Pod,
    cluster: &dyn Cluster,
) -> Option<(String, std::sync::Arc<serde_json::Value>)> {
    let node = node_of(pod)?;
    let object = cluster.get(ResourceKind::Node, None, node).await.ok()??;
    Some((node.to_string(), object))
}

/// Pods whose sandboxes cannot be created share the cause: a CNI plugin that fails wherever it
/// runs (one incident across Nodes), or one Node (its Pod addresses used up, its runtime).
fn sandbox_cause(sandbox: &SandboxFailure, pod: &Pod) -> Option<Cause> {
    let node = node_of(pod);
    let (key, description) = match (&sandbox.plugin, sandbox.addresses_exhausted) {
        (_, true) => {
            let node = node?;
            (
                format!("node/{node}/addresses"),
                format!("node {node} has no Pod IP address left"),
            )
        }
        (Some(plugin), false) if is_name(plugin) => (
            format!("cni/{plugin}"),
            format!("the {plugin} CNI plugin fails to set up Pod networks"),
        ),
        _ => {
            let node = node?;
            (
                format!("node/{node}/sandbox"),
                format!("node {node} cannot create Pod sandboxes"),
            )
        }
    };
    Some(Cause { key, description })
}

/// Pods a Node's kubelet ended as it shut down are one incident per Node. The Pod's status
/// says so, but it is writable by more than the kubelet: the Node must also say it is not
/// Ready (a kubelet shutting down reports "node is shutting down"; one that is down, nothing).
async fn node_shutdown(pod: &Pod, cluster: &dyn Cluster) -> Option<Cause> {
    let (node, object) = pods_node(pod, cluster).await?;
    let ready = object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    (!ready).then(|| Cause {
        key: format!("node/{node}/shutdown"),
        description: format!("node {node} shut down: its kubelet ended the Pods on it"),
    })
}

/// Pods a kubelet refused at admission for the same reason are one incident per Node (Pods
/// sent to it past the scheduler, or a Node whose allocatable shrank under them).
async fn refused_by_node(pod: &Pod, reason: &str, cluster: &dyn Cluster) -> Option<Cause> {
    // The kubelet's own reasons only: the generic `Rejected` says too little to group on.
    if EvictionCause::parse(reason) != EvictionCause::Rejected
        || reason == EvictionCause::Rejected.as_str()
    {
        return None;
    }
    let (node, _) = pods_node(pod, cluster).await?;
    let what = match reason.strip_prefix("OutOf") {
        Some(resource) => format!("it has no room for their {resource} requests"),
        None => "its admission checks fail them".to_string(),
    };
    Some(Cause {
        key: format!("node/{node}/rejects/{reason}"),
        description: format!("node {node} refuses Pods ({reason}): {what}"),
    })
}

/// How much of a crash-looping container's log is read for the host it cannot reach: the
/// last words before the exit are the telling ones.
const CAUSE_LOG_LINES: usize = 50;

/// A crash loop whose log ends on a cause other workloads share: a Service (see
/// [`service_cause`]) or a ConfigMap or Secret whose content the application cannot parse
/// (a bad edit of it breaks every workload that mounts it).
async fn crash_cause(report: &DiagnosticReport, pod: &Pod, cluster: &dyn Cluster) -> Option<Cause> {
    let namespace = &report.spec.pod.namespace;
    let request = LogRequest {
        namespace: namespace.clone(),
        pod: report.spec.pod.name.clone(),
        container: report.spec.failure.container.clone(),
        // An init container that never completes, or a running container whose health check
        // fails, fails in the run it is in.
        previous: report.spec.failure.reason != PendingReason::InitContainerRunning.as_str()
            && report.spec.failure.class != FailureClass::ProbeFailure,
        tail_lines: Some(CAUSE_LOG_LINES),
    };
    let logs = match cluster.logs(&request).await {
        Ok(logs) => logs,
        // A container that has not restarted yet has no previous log.
        Err(_) => cluster
            .logs(&LogRequest {
                previous: false,
                ..request
            })
            .await
            .ok()?,
    };
    // The most telling clue decides, as the investigation reads it.
    let clue = read_clues(&logs.text).into_iter().next()?.0;
    if let Some((host, _, how)) = clue.unreachable() {
        if how == Unreachable::LookupUnanswered {
            return resolver_cause(namespace, pod);
        }
        return service_cause(namespace, host, how, cluster).await;
    }
    match clue {
        // A Service that turns the workloads away once reached: a rotated password, a revoked
        // role, an expired certificate are the Service's, whoever calls it.
        Clue::CredentialsRejected { host: Some(host) } => {
            refusing_service(
                namespace,
                &host,
                "credentials",
                "rejects the workloads' credentials",
                cluster,
            )
            .await
        }
        Clue::PrivilegesDenied { host: Some(host) } => {
            refusing_service(
                namespace,
                &host,
                "privileges",
                "refuses the workloads' users a privilege they need",
                cluster,
            )
            .await
        }
        Clue::CertificateRejected { host: Some(host) } => refusing_service(
            namespace,
            &host,
            "certificate",
            "presents a certificate the workloads do not trust (expired, or signed by another CA)",
            cluster,
        )
        .await,
        // A file a ConfigMap's or Secret's volume would hold as a key: the object lacks it, as
        // when the kubelet cannot find a key the env reads (the same incident).
        Clue::MissingFile { path } => {
            let container = report.spec.failure.container.as_deref()?;
            let source = config_source(pod.spec.as_ref()?, container, Some(&path))
                .filter(|s| s.certain && s.key.is_some())?;
            is_name(&source.name).then(|| Cause {
                key: format!("config/{namespace}/{}/{}", source.kind, source.name),
                description: format!(
                    "{} {namespace}/{} is missing or lacks a key the workloads read",
                    source.kind, source.name
                ),
            })
        }
        Clue::BadConfigFile { path } => {
            let container = report.spec.failure.container.as_deref()?;
            let source = config_source(pod.spec.as_ref()?, container, path.as_deref())?;
            is_name(&source.name).then(|| Cause {
                key: format!("configfile/{namespace}/{}/{}", source.kind, source.name),
                description: format!(
                    "{} {namespace}/{} holds configuration the workloads cannot parse",
                    source.kind, source.name
                ),
            })
        }
        _ => None,
    }
}

/// Lookups the Pods' DNS server does not answer, whatever names they look up: one incident per
/// resolver, the cluster DNS for Pods of the default `dnsPolicy`. Read from a tenant's log, so
/// per namespace, as a Service's.
fn resolver_cause(namespace: &str, pod: &Pod) -> Option<Cause> {
    let (resolver, description) = match crate::failure::Resolver::of(pod.spec.as_ref()?) {
        Resolver::Cluster => (
            "cluster".to_string(),
            "the cluster DNS does not answer the workloads' lookups".to_string(),
        ),
        Resolver::Node => (
            "node".to_string(),
            "the nodes' DNS servers do not answer the workloads' lookups".to_string(),
        ),
        Resolver::Servers(servers) => {
            let server = servers.first()?;
            (
                server.to_string(),
                format!("DNS server {server} does not answer the workloads' lookups"),
            )
        }
    };
    Some(Cause {
        key: format!("dns/{namespace}/{resolver}"),
        description: format!("{description} (namespace {namespace})"),
    })
}

/// A lookup that failed for a Service's name (the Service does not exist) or a connection
/// that Service refused: every workload that calls it fails alike.
///
/// The log is the tenant's to write, so the key carries the failing Pod's namespace: a log in
/// one namespace naming another's Service cannot join (or lead) that namespace's incident.
async fn service_cause(
    namespace: &str,
    host: &str,
    how: Unreachable,
    cluster: &dyn Cluster,
) -> Option<Cause> {
    let (service_namespace, service, exists) = service_of(host, namespace, cluster).await?;
    let (what, description) = match (exists, how) {
        (Some(false), Unreachable::Lookup) => ("missing", "does not exist"),
        // Not read (another namespace's): what the logs say.
        (None, Unreachable::Lookup) => ("missing", "does not resolve"),
        (Some(true) | None, Unreachable::Refused) => (
            "refused",
            "refuses connections (no ready backend on the port)",
        ),
        (Some(true) | None, Unreachable::TimedOut) => (
            "unanswered",
            "does not answer: connections to it time out (traffic dropped, as by a NetworkPolicy)",
        ),
        // A name that resolves yet fails, or refused without a Service: not this cause.
        _ => return None,
    };
    Some(Cause {
        key: format!("service/{namespace}/{service_namespace}/{service}/{what}"),
        description: format!(
            "Service {service_namespace}/{service}, which the workloads call, {description}"
        ),
    })
}

/// A Service that turns the workloads away (`what`: credentials, privileges, a
/// certificate): one incident per caller namespace, as a Service that refuses connections.
async fn refusing_service(
    namespace: &str,
    host: &str,
    what: &str,
    description: &str,
    cluster: &dyn Cluster,
) -> Option<Cause> {
    let (service_namespace, service, exists) = service_of(host, namespace, cluster).await?;
    if exists == Some(false) {
        return None;
    }
    Some(Cause {
        key: format!("service/{namespace}/{service_namespace}/{service}/{what}"),
        description: format!(
            "Service {service_namespace}/{service}, which the workloads call, {description}"
        ),
    })
}

/// The Service a host name in a log means, as cluster DNS resolves it from a Pod in
/// `namespace` ([`crate::names::service_host`]), and whether it exists: read for a Service of
/// `namespace` only (None for another's). What a tenant's log names must not make the operator
/// look into other namespaces for it, nor tell it what is there; `name.x` counts only for
/// `x` = `namespace` (`example.com` is no Service of namespace `com`, and which namespaces
/// exist is not read either).
async fn service_of(
    host: &str,
    namespace: &str,
    cluster: &dyn Cluster,
) -> Option<(String, String, Option<bool>)> {
    let service = crate::names::service_host(host, namespace).filter(|s| s.certain)?;
    if service.namespace != namespace {
        return Some((service.namespace, service.name, None));
    }
    let exists = cluster
        .get(ResourceKind::Service, Some(namespace), &service.name)
        .await
        .ok()?
        .is_some();
    Some((service.namespace, service.name, Some(exists)))
}

/// The image of the failing container, as the Pod spec writes it.
fn failing_image(report: &DiagnosticReport, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let mut containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    match &report.spec.failure.container {
        Some(name) => containers.find(|c| &c.name == name),
        None => containers.next(),
    }
    .and_then(|c| c.image.clone())
}

/// The StorageClass of the Pod's first unbound claim (`(default)` when the claim names none).
async fn claims_storage_class(pod: &Pod, namespace: &str, cluster: &dyn Cluster) -> Option<String> {
    let volumes = pod.spec.as_ref()?.volumes.as_ref()?;
    for claim in volumes
        .iter()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
    {
        let Ok(Some(object)) = cluster
            .get(
                ResourceKind::PersistentVolumeClaim,
                Some(namespace),
                &claim.claim_name,
            )
            .await
        else {
            continue;
        };
        if object["status"]["phase"].as_str() == Some("Bound") {
            continue;
        }
        let class = object["spec"]["storageClassName"]
            .as_str()
            .filter(|c| is_name(c))
            .unwrap_or("(default)");
        return Some(class.to_string());
    }
    None
}

fn is_name(name: &str) -> bool {
    crate::names::NameRule::Dns1123Subdomain.allows(name)
}

/// The incident's name: stable for a cause, a valid object name, and saying nothing a tenant
/// wrote (the key can hold tenant names).
pub fn name(cause: &Cause) -> String {
    let digest = Sha256::digest(cause.key.as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("inc-{hex}")
}

pub fn member(report: &DiagnosticReport) -> IncidentMember {
    let w = &report.spec.workload;
    IncidentMember {
        namespace: report.namespace().unwrap_or_default(),
        report: report.name_any(),
        workload: format!("{}/{}", w.kind, w.name),
    }
}

/// The status of a member that did not investigate: the lead's findings, its own evidence,
/// and a pointer to the lead. A member is never patched from another workload's review: the
/// lead's patch is named in the message, applied to the lead's workload only.
pub fn member_status(
    member: &DiagnosticReport,
    lead: &DiagnosticReport,
    incident: &IncidentDetail,
) -> DiagnosticReportStatus {
    let lead_status = lead.status.clone().unwrap_or_default();
    let lead_at = format!(
        "{}/{}",
        lead.namespace().unwrap_or_default(),
        lead.name_any()
    );
    let mut evidence: Vec<String> = member
        .spec
        .failure
        .evidence
        .iter()
        .take(4)
        .cloned()
        .collect();
    evidence.push(format!(
        "Incident {}: {} ({} workloads); investigated once, in report {lead_at}.",
        incident.name,
        incident.cause,
        incident.members.len() + incident.elsewhere as usize
    ));
    let lead_findings = lead_status.findings.clone().unwrap_or_default();
    let w = &member.spec.workload;
    let findings = Findings {
        summary: format!(
            "{} {} fails with the others of incident {}: {}",
            w.kind, w.name, incident.name, incident.cause
        ),
        root_cause: lead_findings.root_cause,
        evidence,
    };
    let (phase, reason) = match lead_status.phase {
        Some(Phase::Failed) => (Phase::Failed, "IncidentInvestigationFailed"),
        _ => (Phase::NoFix, "Incident"),
    };
    let mut message = lead_status
        .message
        .clone()
        .unwrap_or_else(|| "fix the shared cause".into());
    if lead_status.suggested_patch.is_some() {
        message = format!(
            "{message} The incident's investigation suggested a patch for {} in report {lead_at}; \
             the same change may fix this workload.",
            lead.spec.workload.name
        );
    }
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    DiagnosticReportStatus {
        phase: Some(phase),
        findings: Some(findings),
        message: Some(message.clone()),
        started_at: Some(now.clone()),
        finished_at: Some(now),
        conditions: vec![condition(
            "Analyzed",
            phase != Phase::Failed,
            reason,
            &message,
            None,
        )],
        incident: Some(incident.name.clone()),
        ..Default::default()
    }
}

/// Whether each member of the incident `lead` investigated takes a fix of its own: the lead's
/// investigation rolled back an image its registry does not have, and every workload of the
/// incident needs the same change with its own previous image.
pub fn fix_per_member(lead: &DiagnosticReport) -> bool {
    let failure = &lead.spec.failure;
    failure.class == FailureClass::ImagePullBackOff
        && ImagePullCause::parse(&failure.reason) == ImagePullCause::NotFound
        && lead
            .status
            .as_ref()
            .is_some_and(|s| s.suggested_patch.is_some())
}

/// A member's own fix for an incident whose fix is per workload ([`fix_per_member`]): the rules
/// playbook run on the member itself (reads of its own rollout history and template, never a
/// model), reviewed like any patch, and marked as the incident's. None when it finds no patch:
/// the member then takes the lead's findings ([`member_status`]).
pub async fn member_fix(
    plugins: std::sync::Arc<crate::plugin::PluginSet>,
    cluster: std::sync::Arc<dyn Cluster>,
    case: &crate::agent::Case,
    lead: &DiagnosticReport,
    incident: &IncidentDetail,
) -> Option<DiagnosticReportStatus> {
    let investigator = crate::agent::Investigator {
        brain: std::sync::Arc::new(crate::agent::rules::RulesBrain),
        plugins,
        cluster,
        budget: crate::agent::Budget::default(),
    };
    let mut status = crate::agent::investigate(&investigator, case).await;
    if status.phase != Some(Phase::AwaitingApproval) || status.suggested_patch.is_none() {
        return None;
    }
    let lead_at = format!(
        "{}/{}",
        lead.namespace().unwrap_or_default(),
        lead.name_any()
    );
    let note = format!(
        "Incident {}: {} ({} workloads); investigated in report {lead_at}, whose fix this workload \
         needs too: this is its own (approve each, or all with `kubectl sre approve --incident {}`).",
        incident.name,
        incident.cause,
        incident.members.len() + incident.elsewhere as usize,
        incident.name
    );
    if let Some(findings) = status.findings.as_mut() {
        findings.evidence.push(note.clone());
    }
    status.message = Some(match status.message.take() {
        Some(m) => format!("{note} {m}"),
        None => note,
    });
    status.incident = Some(incident.name.clone());
    Some(status)
}

/// What the running operator knows of its incidents (the leader's memory; after a restart,
/// an incident whose investigation had not ended is led and investigated again once).
pub struct Incidents {
    entries: Mutex<std::collections::HashMap<String, Entry>>,
    patience: Duration,
}

impl Default for Incidents {
    fn default() -> Incidents {
        Incidents::with_patience(LEAD_PATIENCE)
    }
}

/// How long members wait for a lead that has not concluded (deleted, or stuck) before the next
/// one to reconcile takes over and investigates.
const LEAD_PATIENCE: Duration = Duration::from_secs(10 * 60);

/// How many of an incident's members are told on their Pods (an Event each) that they are part
/// of it. The rest are listed on the lead: in a burst of hundreds an Event per Pod was a fifth
/// of the operator's API requests and tells nothing the incident does not.
pub const TOLD_MEMBERS: usize = 10;

struct Entry {
    lead: IncidentMember,
    /// When the current lead took the incident.
    led_since: Instant,
    cause: String,
    members: BTreeSet<IncidentMember>,
    /// The lead with its finished status.
    concluded: Option<(DiagnosticReport, Instant)>,
    /// Members waiting for the lead to conclude.
    waiting: BTreeSet<IncidentMember>,
    /// Whether a write of the members onto the lead is due: the members of a burst are written
    /// together, not one write each.
    detail_due: bool,
    /// The members told on their Pods ([`TOLD_MEMBERS`] at most).
    told: BTreeSet<IncidentMember>,
}

/// A report's place in its incident.
pub enum Role {
    /// Investigate, and record the detail.
    Lead(IncidentDetail),
    /// Wait for the lead's investigation.
    Waiting { lead: IncidentMember },
    /// The lead concluded: take its findings.
    Join {
        lead: Box<DiagnosticReport>,
        detail: IncidentDetail,
    },
}

impl Incidents {
    /// `patience`: how long members wait for a lead that has not concluded.
    pub fn with_patience(patience: Duration) -> Incidents {
        Incidents {
            entries: Mutex::default(),
            patience,
        }
    }

    /// Joins `report` to the incident of `cause` (opening it when there is none, or when its
    /// investigation ended more than `fresh` ago: a later failure is a new incident).
    pub fn join(&self, cause: &Cause, report: &DiagnosticReport, fresh: Duration) -> Role {
        let name = name(cause);
        let me = member(report);
        let mut entries = self.entries.lock().unwrap();
        let stale = entries.get(&name).is_some_and(|e| {
            e.concluded
                .as_ref()
                .is_some_and(|(_, at)| at.elapsed() > fresh && e.lead != me)
        });
        if stale {
            entries.remove(&name);
        }
        let entry = entries.entry(name.clone()).or_insert_with(|| Entry {
            lead: me.clone(),
            led_since: Instant::now(),
            cause: cause.description.clone(),
            members: BTreeSet::new(),
            concluded: None,
            waiting: BTreeSet::new(),
            detail_due: false,
            told: BTreeSet::new(),
        });
        entry.members.insert(me.clone());
        entry.waiting.remove(&me);
        if entry.concluded.is_none()
            && entry.lead != me
            && entry.led_since.elapsed() > self.patience
        {
            entry.lead = me.clone();
            entry.led_since = Instant::now();
        }
        let detail = IncidentDetail {
            name,
            cause: entry.cause.clone(),
            members: entry.members.iter().cloned().collect(),
            elsewhere: 0,
        };
        if entry.lead == me {
            return Role::Lead(detail);
        }
        match &entry.concluded {
            None => {
                entry.waiting.insert(me);
                Role::Waiting {
                    lead: entry.lead.clone(),
                }
            }
            Some((lead, _)) => Role::Join {
                lead: Box::new(lead.clone()),
                detail,
            },
        }
    }

    /// Records the lead's finished report: the waiting members take its findings.
    pub fn concluded(&self, incident: &str, lead: &DiagnosticReport) {
        if let Some(e) = self.entries.lock().unwrap().get_mut(incident) {
            e.concluded = Some((lead.clone(), Instant::now()));
        }
    }

    /// Whether `report` waits for a lead that has not concluded and is still within its
    /// patience: then there is nothing to read or write for it yet.
    pub fn still_waiting(&self, report: &DiagnosticReport) -> bool {
        let me = member(report);
        self.entries.lock().unwrap().values().any(|e| {
            e.concluded.is_none()
                && e.lead != me
                && e.led_since.elapsed() <= self.patience
                && e.waiting.contains(&me)
        })
    }

    /// Asks for the incident's members to be written onto its lead: true when no write is due
    /// yet (the caller then writes, after a moment, whatever the members are by then), false
    /// when one is due already and will include this member.
    pub fn detail_due(&self, incident: &str) -> bool {
        let mut entries = self.entries.lock().unwrap();
        match entries.get_mut(incident) {
            Some(e) if !e.detail_due => {
                e.detail_due = true;
                true
            }
            _ => false,
        }
    }

    /// The incident's detail as it stands, for the write [`Incidents::detail_due`] asked for;
    /// a member that joins after this asks for another.
    pub fn take_due_detail(&self, incident: &str) -> Option<IncidentDetail> {
        if let Some(e) = self.entries.lock().unwrap().get_mut(incident) {
            e.detail_due = false;
        }
        self.detail(incident)
    }

    /// Whether `report`, a member of `incident`, gets Events on its Pod: the first
    /// [`TOLD_MEMBERS`] members do (each of its Events, opened and concluded), later ones not.
    /// A report of no incident the operator knows is told.
    pub fn tells_member(&self, incident: &str, report: &DiagnosticReport) -> bool {
        let mut entries = self.entries.lock().unwrap();
        let Some(e) = entries.get_mut(incident) else {
            return true;
        };
        let me = member(report);
        if e.told.contains(&me) {
            return true;
        }
        if e.told.len() >= TOLD_MEMBERS {
            return false;
        }
        e.told.insert(me);
        true
    }

    /// The incident's detail as it stands (every member so far).
    pub fn detail(&self, incident: &str) -> Option<IncidentDetail> {
        let entries = self.entries.lock().unwrap();
        let e = entries.get(incident)?;
        Some(IncidentDetail {
            name: incident.to_string(),
            cause: e.cause.clone(),
            members: e.members.iter().cloned().collect(),
            elsewhere: 0,
        })
    }
}

/// Groups `reports` (in their order) into incidents by `causes` (one per report, None for a
/// failure of its own): for each incident of two or more, the index of its lead (the first)
/// and of its members, lead included. `diagnose` investigates only the leads.
pub fn group(causes: &[Option<Cause>]) -> Vec<(usize, Vec<usize>)> {
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, cause) in causes.iter().enumerate() {
        let Some(cause) = cause else { continue };
        match groups.iter_mut().find(|(k, _)| *k == cause.key) {
            Some((_, members)) => members.push(i),
            None => groups.push((cause.key.clone(), vec![i])),
        }
    }
    groups
        .into_iter()
        .filter(|(_, m)| m.len() > 1)
        .map(|(_, m)| (m[0], m))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(key: &str) -> Option<Cause> {
        Some(Cause {
            key: key.into(),
            description: key.into(),
        })
    }

    #[test]
    fn only_shared_causes_make_incidents_and_the_first_leads() {
        let causes = [cause("a"), None, cause("b"), cause("a"), cause("a")];
        assert_eq!(group(&causes), vec![(0, vec![0, 3, 4])]);
    }

    fn report(namespace: &str, name: &str) -> DiagnosticReport {
        let mut r: DiagnosticReport = serde_json::from_value(serde_json::json!({
            "apiVersion": "sre-operator.dev/v1alpha1", "kind": "DiagnosticReport",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"policy": "p", "pod": {"namespace": namespace, "name": "p-1", "uid": "u"},
                     "workload": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "failure": {"class": "CreateContainerConfigError", "reason": "ConfigMapNotFound"}}
        }))
        .unwrap();
        r.status = Some(DiagnosticReportStatus::default());
        r
    }

    #[test]
    fn the_first_report_leads_the_others_wait_then_join_and_a_stale_incident_starts_over() {
        let incidents = Incidents::default();
        let c = cause("config/shop/ConfigMap/app").unwrap();
        let (a, b, z) = (report("shop", "a"), report("shop", "b"), report("web", "z"));
        assert!(matches!(
            incidents.join(&c, &a, Duration::from_secs(60)),
            Role::Lead(_)
        ));
        // The lead's own reconcile again: still the lead.
        assert!(matches!(
            incidents.join(&c, &a, Duration::from_secs(60)),
            Role::Lead(_)
        ));
        assert!(
            matches!(incidents.join(&c, &b, Duration::from_secs(60)), Role::Waiting { ref lead } if lead.report == "a")
        );
        let mut done = a.clone();
        done.status.as_mut().unwrap().findings = Some(Findings {
            summary: "s".into(),
            root_cause: "ConfigMap shop/app was deleted".into(),
            evidence: vec![],
        });
        incidents.concluded(&name(&c), &done);
        let Role::Join { lead, detail } = incidents.join(&c, &z, Duration::from_secs(60)) else {
            panic!("a member joins a concluded incident");
        };
        assert_eq!(detail.members.len(), 3);
        // A report in shop names shop's members and counts web's.
        let seen = detail.clone().seen_from("shop");
        assert_eq!(
            seen.members
                .iter()
                .map(|m| m.report.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(seen.elsewhere, 1);
        let status = member_status(&z, &lead, &detail);
        assert_eq!(status.phase, Some(Phase::NoFix));
        assert_eq!(status.incident.as_deref(), Some(name(&c).as_str()));
        assert_eq!(
            status.findings.unwrap().root_cause,
            "ConfigMap shop/app was deleted"
        );
        assert!(status.suggested_patch.is_none());
        // Long after the investigation, the same cause is a new incident led by the newcomer.
        assert!(matches!(
            incidents.join(&c, &b, Duration::ZERO),
            Role::Lead(_)
        ));
    }

    #[test]
    fn a_lead_that_never_concludes_is_replaced_by_a_waiting_member() {
        let incidents = Incidents::with_patience(Duration::ZERO);
        let c = cause("registry/ghcr.io/RegistryUnreachable").unwrap();
        let (a, b) = (report("shop", "a"), report("shop", "b"));
        assert!(matches!(
            incidents.join(&c, &a, Duration::from_secs(60)),
            Role::Lead(_)
        ));
        std::thread::sleep(Duration::from_millis(2));
        // a was deleted before it investigated: b stops waiting and investigates.
        assert!(matches!(
            incidents.join(&c, &b, Duration::from_secs(60)),
            Role::Lead(_)
        ));
        let patient = Incidents::default();
        assert!(matches!(
            patient.join(&c, &a, Duration::from_secs(60)),
            Role::Lead(_)
        ));
        assert!(matches!(
            patient.join(&c, &b, Duration::from_secs(60)),
            Role::Waiting { .. }
        ));
    }

    #[test]
    fn a_waiting_member_waits_without_reads_until_its_lead_concludes() {
        let incidents = Incidents::default();
        let c = cause("registry/registry.example.com/RegistryAuthFailed").unwrap();
        let (a, b, z) = (report("shop", "a"), report("shop", "b"), report("web", "z"));
        assert!(matches!(
            incidents.join(&c, &a, Duration::from_secs(60)),
            Role::Lead(_)
        ));
        assert!(!incidents.still_waiting(&a), "the lead investigates");
        assert!(!incidents.still_waiting(&b), "b has not joined yet");
        assert!(matches!(
            incidents.join(&c, &b, Duration::from_secs(60)),
            Role::Waiting { .. }
        ));
        assert!(incidents.still_waiting(&b));
        assert!(!incidents.still_waiting(&z));
        incidents.concluded(&name(&c), &a);
        assert!(!incidents.still_waiting(&b), "the lead concluded: b joins");
        assert!(matches!(
            incidents.join(&c, &b, Duration::from_secs(60)),
            Role::Join { .. }
        ));
        // A lead past its patience no longer holds its members back.
        let impatient = Incidents::with_patience(Duration::ZERO);
        impatient.join(&c, &a, Duration::from_secs(60));
        impatient.join(&c, &b, Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(2));
        assert!(!impatient.still_waiting(&b));
    }

    #[test]
    fn the_first_members_of_an_incident_are_told_on_their_pods_and_the_rest_are_not() {
        let incidents = Incidents::default();
        let c = cause("registry/registry.example.com/RegistryAuthFailed").unwrap();
        let n = name(&c);
        let reports: Vec<_> = (0..TOLD_MEMBERS + 5)
            .map(|i| report("shop", &format!("r{i}")))
            .collect();
        for r in &reports {
            incidents.join(&c, r, Duration::from_secs(60));
        }
        let told: Vec<bool> = reports
            .iter()
            .map(|r| incidents.tells_member(&n, r))
            .collect();
        assert!(told[..TOLD_MEMBERS].iter().all(|t| *t));
        assert!(told[TOLD_MEMBERS..].iter().all(|t| !t));
        // A told member is told again (its conclusion after its opening); an untold one is not.
        assert!(incidents.tells_member(&n, &reports[0]));
        assert!(!incidents.tells_member(&n, &reports[TOLD_MEMBERS]));
        // Another incident counts its own members.
        let other = cause("config/shop/ConfigMap/app").unwrap();
        incidents.join(&other, &reports[TOLD_MEMBERS], Duration::from_secs(60));
        assert!(incidents.tells_member(&name(&other), &reports[TOLD_MEMBERS]));
    }

    #[test]
    fn the_members_of_a_burst_are_written_onto_the_lead_in_one_write() {
        let incidents = Incidents::default();
        let c = cause("config/shop/ConfigMap/app").unwrap();
        let n = name(&c);
        incidents.join(&c, &report("shop", "a"), Duration::from_secs(60));
        incidents.concluded(&n, &report("shop", "a"));
        incidents.join(&c, &report("shop", "b"), Duration::from_secs(60));
        assert!(
            incidents.detail_due(&n),
            "the first member asks for a write"
        );
        incidents.join(&c, &report("shop", "c"), Duration::from_secs(60));
        assert!(!incidents.detail_due(&n), "the next ones ride on it");
        let written = incidents.take_due_detail(&n).unwrap();
        assert_eq!(written.members.len(), 3, "every member so far");
        incidents.join(&c, &report("shop", "d"), Duration::from_secs(60));
        assert!(
            incidents.detail_due(&n),
            "a member after the write asks for another"
        );
    }

    /// Test objects plus one log, for every container asked for. Reading anything of another
    /// namespace than the failing Pod's, or which Namespaces exist, fails the test: a tenant's
    /// log must not send the operator looking there.
    struct WithLog {
        objects: crate::cluster::testing::Objects,
        log: String,
        namespace: String,
    }

    #[async_trait::async_trait]
    impl Cluster for WithLog {
        fn source(&self) -> String {
            self.objects.source()
        }
        async fn get(
            &self,
            kind: ResourceKind,
            namespace: Option<&str>,
            name: &str,
        ) -> crate::cluster::Result<Option<crate::cluster::Object>> {
            assert!(
                kind != ResourceKind::Namespace
                    && kind.scope(namespace).is_none_or(|ns| ns == self.namespace),
                "read {kind} {namespace:?}/{name} for a Pod of {}",
                self.namespace
            );
            self.objects.get(kind, namespace, name).await
        }
        async fn list(
            &self,
            kind: ResourceKind,
            namespace: Option<&str>,
        ) -> crate::cluster::Result<Vec<crate::cluster::Object>> {
            self.objects.list(kind, namespace).await
        }
        async fn logs(&self, r: &LogRequest) -> crate::cluster::Result<crate::cluster::Logs> {
            Ok(crate::cluster::Logs {
                container: r.container.clone().unwrap_or_default(),
                text: self.log.clone(),
                previous: r.previous,
                note: None,
            })
        }
        async fn events_for(
            &self,
            _: crate::cluster::Involved<'_>,
        ) -> crate::cluster::Result<Vec<k8s_openapi::api::core::v1::Event>> {
            Ok(Vec::new())
        }
    }

    fn crash_loop(
        namespace: &str,
        log: &str,
        objects: &[serde_json::Value],
    ) -> (DiagnosticReport, WithLog) {
        let mut r = report(namespace, "checkout");
        r.spec.failure.class = FailureClass::CrashLoopBackOff;
        r.spec.failure.reason = "Error".into();
        let mut all = objects.to_vec();
        for ns in ["shop", "data", "checkout"] {
            all.push(serde_json::json!({"kind": "Namespace", "metadata": {"name": ns}}));
        }
        let cluster = WithLog {
            objects: crate::cluster::testing::Objects {
                objects: all,
                held: vec![ResourceKind::Service, ResourceKind::Namespace],
            },
            log: log.into(),
            namespace: namespace.into(),
        };
        (r, cluster)
    }

    fn service(namespace: &str, name: &str) -> serde_json::Value {
        serde_json::json!({"kind": "Service", "metadata": {"name": name, "namespace": namespace}})
    }

    async fn key(namespace: &str, log: &str, objects: &[serde_json::Value]) -> Option<String> {
        let (r, cluster) = crash_loop(namespace, log, objects);
        cause_of(&r, &Pod::default(), &cluster).await.map(|c| c.key)
    }

    #[tokio::test]
    async fn crash_loops_calling_a_missing_or_refusing_service_share_its_cause() {
        let lookup = |host: &str| {
            format!("started\nerror: dial tcp: lookup {host} on 10.96.0.10:53: no such host\n")
        };
        // The forms cluster DNS resolves, from the Pod's namespace. Another namespace's
        // Service is named from the log alone: nothing there is read.
        for (host, want) in [
            ("payments-api", "service/shop/shop/payments-api/missing"),
            ("Payments-API.", "service/shop/shop/payments-api/missing"),
            (
                "payments-api.shop",
                "service/shop/shop/payments-api/missing",
            ),
            ("ledger.data.svc", "service/shop/data/ledger/missing"),
            (
                "ledger.data.svc.cluster.local",
                "service/shop/data/ledger/missing",
            ),
        ] {
            assert_eq!(
                key("shop", &lookup(host), &[]).await.as_deref(),
                Some(want),
                "{host}"
            );
        }
        // Outside the cluster, or not known to be in it without reading which Namespaces
        // exist: `name.x` for another x, more labels without svc, an address.
        for host in ["ledger.data", "api.example", "api.example.com", "10.0.0.12"] {
            assert_eq!(key("shop", &lookup(host), &[]).await, None, "{host}");
        }
        // The name resolves (the Service exists): a lookup failure is something else.
        let exists = [service("shop", "payments-api")];
        assert_eq!(key("shop", &lookup("payments-api"), &exists).await, None);
        // Refused by a Service that exists: its backends are down; every caller waits on them.
        let refused = |host: &str| {
            format!(
                "connecting to {host}:5432\nFATAL: dial tcp 10.96.4.2:5432: connect: connection refused ({host}:5432)\n"
            )
        };
        assert_eq!(
            key("shop", &refused("postgres"), &[service("shop", "postgres")])
                .await
                .as_deref(),
            Some("service/shop/shop/postgres/refused")
        );
        assert_eq!(
            key("shop", &refused("postgres"), &[]).await,
            None,
            "refused without a Service"
        );
        // Another namespace's, by its full name: grouped on the name, whether it exists or not.
        assert_eq!(
            key("shop", &refused("postgres.data.svc"), &[])
                .await
                .as_deref(),
            Some("service/shop/data/postgres/refused")
        );
        // A log in another namespace that names the same Service is another incident: a
        // tenant's log cannot make it lead (or join) shop's.
        assert_eq!(
            key("checkout", &lookup("ledger.data.svc"), &[])
                .await
                .as_deref(),
            Some("service/checkout/data/ledger/missing")
        );
        // A log whose telling clue is not a dependency, and one with none.
        let unset = "loading config\nFATAL: DATABASE_URL is not set\n";
        assert_eq!(key("shop", unset, &[]).await, None);
        assert_eq!(key("shop", "panic: nil map\n", &[]).await, None);
    }

    /// A Service that turns its callers away once reached (their credentials, their privileges,
    /// its certificate) is their shared cause, per caller namespace; a host that is no Service
    /// of the cluster groups nothing.
    #[tokio::test]
    async fn crash_loops_a_service_turns_away_share_it() {
        let exists = [service("shop", "orders-db"), service("data", "payments")];
        let password = "psycopg2.OperationalError: connection to server at \"orders-db\" (10.96.3.4), port 5432 failed: FATAL:  password authentication failed for user \"orders\"\n";
        assert_eq!(
            key("shop", password, &exists).await.as_deref(),
            Some("service/shop/shop/orders-db/credentials")
        );
        assert_eq!(
            key("checkout", password, &exists).await.as_deref(),
            None,
            "checkout has no Service orders-db"
        );
        assert_eq!(key("shop", password, &[]).await, None, "no such Service");
        let revoked = "pq: permission denied for table orders (orders-db:5432)\n";
        assert_eq!(
            key("shop", revoked, &exists).await.as_deref(),
            Some("service/shop/shop/orders-db/privileges")
        );
        let expired = "Post \"https://payments.data.svc:8443/charge\": tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time 2026-12-07T09:12:02Z is after 2026-12-06T00:00:00Z\n";
        assert_eq!(
            key("shop", expired, &exists).await.as_deref(),
            Some("service/shop/data/payments/certificate")
        );
        let outside = "Post \"https://api.stripe.com:443/v1/charges\": x509: certificate signed by unknown authority\n";
        assert_eq!(key("shop", outside, &exists).await, None);
    }

    /// Lookups the DNS server leaves unanswered are one incident per resolver whatever names
    /// they look up, within the namespace whose logs say so; a Service that exists does not
    /// make them its own.
    #[tokio::test]
    async fn crash_loops_whose_lookups_go_unanswered_share_their_resolver() {
        let key = |namespace: &'static str, log: &'static str, dns: serde_json::Value| async move {
            let (r, cluster) = crash_loop(namespace, log, &[service("shop", "orders-db")]);
            let mut pod = serde_json::json!({"spec": {"containers": []}});
            pod["spec"]
                .as_object_mut()
                .unwrap()
                .extend(dns.as_object().unwrap().clone());
            let pod: Pod = serde_json::from_value(pod).unwrap();
            cause_of(&r, &pod, &cluster).await.map(|c| c.key)
        };
        let go = "dial tcp: lookup orders-db on 10.96.0.10:53: read udp 10.244.1.9:41234->10.96.0.10:53: i/o timeout\n";
        let python = "redis.exceptions.ConnectionError: Error -3 connecting to cache:6379. Temporary failure in name resolution.\n";
        let none = serde_json::json!({});
        for log in [go, python] {
            assert_eq!(
                key("shop", log, none.clone()).await.as_deref(),
                Some("dns/shop/cluster"),
                "{log}"
            );
        }
        assert_eq!(
            key("checkout", go, none.clone()).await.as_deref(),
            Some("dns/checkout/cluster"),
            "another namespace's logs are another incident"
        );
        assert_eq!(
            key("shop", go, serde_json::json!({"dnsPolicy": "Default"}))
                .await
                .as_deref(),
            Some("dns/shop/node")
        );
        let own = |server: &str| serde_json::json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": [server]}});
        assert_eq!(
            key("shop", go, own("10.0.0.53")).await.as_deref(),
            Some("dns/shop/10.0.0.53")
        );
        assert_eq!(key("shop", go, own("$(curl x)")).await, None, "no address");
        // A name that does not exist stays the name's.
        let missing = "dial tcp: lookup payments on 10.96.0.10:53: no such host\n";
        assert_eq!(
            key("shop", missing, none).await.as_deref(),
            Some("service/shop/shop/payments/missing")
        );
    }

    /// The incident key of a report of `class` and `reason` with `evidence`, whose Pod is on
    /// Node `on`.
    async fn node_key(
        cluster: &crate::cluster::testing::Objects,
        class: FailureClass,
        reason: String,
        evidence: Vec<String>,
        on: String,
    ) -> Option<String> {
        let mut r = report("shop", "checkout");
        r.spec.failure.class = class;
        r.spec.failure.reason = reason;
        r.spec.failure.evidence = evidence;
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "checkout-1", "namespace": "shop"},
            "spec": {"nodeName": on, "containers": []}}))
        .unwrap();
        cause_of(&r, &pod, cluster).await.map(|c| c.key)
    }

    /// Pods a Node ended are one incident per Node only as far as the Node confirms it: a
    /// shutdown needs the Node not Ready, a refusal the Node to exist and the kubelet's own
    /// reason; what only a Pod's (writable) status claims groups nothing.
    #[tokio::test]
    async fn pods_a_node_ended_share_it_only_as_far_as_the_node_confirms() {
        let node = |name: &str, ready: &str| {
            serde_json::json!({"kind": "Node", "metadata": {"name": name},
                "status": {"conditions": [{"type": "Ready", "status": ready}]}})
        };
        let cluster = crate::cluster::testing::Objects {
            objects: vec![node("ready-1", "True"), node("down-1", "False")],
            held: vec![ResourceKind::Node],
        };
        let key = |reason: &str, on: &str| {
            node_key(
                &cluster,
                FailureClass::Evicted,
                reason.into(),
                Vec::new(),
                on.into(),
            )
        };
        assert_eq!(
            key("NodeShutdown", "down-1").await.as_deref(),
            Some("node/down-1/shutdown")
        );
        assert_eq!(key("NodeShutdown", "ready-1").await, None, "a Ready node");
        assert_eq!(key("NodeShutdown", "gone-1").await, None, "no such node");
        for reason in ["OutOfcpu", "OutOfnvidia.com/gpu", "NodeAffinity"] {
            assert_eq!(
                key(reason, "ready-1").await,
                Some(format!("node/ready-1/rejects/{reason}"))
            );
            assert_eq!(key(reason, "gone-1").await, None, "no such node");
        }
        assert_eq!(key("Rejected", "ready-1").await, None, "says too little");
        assert_eq!(key("OutOf$(x)", "ready-1").await, None, "no kubelet reason");
    }

    /// Pods whose images a Node cannot unpack (its disk is full) share that Node, within their
    /// namespace: no Node condition confirms which filesystem is full, and events can be forged.
    #[tokio::test]
    async fn pulls_a_full_node_cannot_unpack_share_it_per_namespace() {
        let cluster = crate::cluster::testing::Objects {
            objects: vec![],
            held: vec![],
        };
        let key = |on: &str| {
            node_key(
                &cluster,
                FailureClass::ImagePullBackOff,
                "NodeDiskFull".into(),
                Vec::new(),
                on.into(),
            )
        };
        assert_eq!(
            key("node-a").await.as_deref(),
            Some("node/node-a/imagefs-full/shop")
        );
        assert_eq!(key("Node A").await, None, "no node name");
    }

    /// Pods whose sandboxes fail share a failing CNI plugin across Nodes, or one Node.
    #[tokio::test]
    async fn pods_without_a_sandbox_share_the_plugin_or_the_node() {
        let cluster = crate::cluster::testing::Objects {
            objects: vec![],
            held: vec![],
        };
        let key = |message: &str, on: &str| {
            let evidence = vec![format!(
                "event Warning FailedCreatePodSandBox (x3): {message}"
            )];
            node_key(
                &cluster,
                FailureClass::Pending,
                "NetworkSetupFailed".into(),
                evidence,
                on.into(),
            )
        };
        let calico = r#"Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox "6f": plugin type="calico" failed (add): connection is unauthorized"#;
        assert_eq!(key(calico, "node-a").await.as_deref(), Some("cni/calico"));
        assert_eq!(key(calico, "node-b").await.as_deref(), Some("cni/calico"));
        let exhausted = r#"Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox "0b": plugin type="bridge" failed (add): failed to allocate for range 0: no IP addresses available in range set: 10.244.1.1-10.244.1.254"#;
        assert_eq!(
            key(exhausted, "node-a").await.as_deref(),
            Some("node/node-a/addresses")
        );
        let runtime = "Failed to create pod sandbox: rpc error: code = DeadlineExceeded desc = context deadline exceeded";
        assert_eq!(
            key(runtime, "node-a").await.as_deref(),
            Some("node/node-a/sandbox")
        );
        // A plugin name that is no name keys on the Node instead.
        let odd = r#"Failed to create pod sandbox: failed to setup network for sandbox "x": plugin type="Calico..x" failed"#;
        assert_eq!(
            key(odd, "node-a").await.as_deref(),
            Some("node/node-a/sandbox")
        );
    }

    #[test]
    fn names_are_stable_object_names_that_hide_the_key() {
        let n = name(&cause("config/shop/ConfigMap/evil\u{1b}[31m").unwrap());
        assert_eq!(
            n,
            name(&cause("config/shop/ConfigMap/evil\u{1b}[31m").unwrap())
        );
        assert!(is_name(&n), "{n}");
        assert_ne!(n, name(&cause("config/shop/ConfigMap/other").unwrap()));
    }
}

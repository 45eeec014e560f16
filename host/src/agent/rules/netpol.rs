//! Connections that time out to a Service with ready endpoints are dropped on the way, and DNS
//! lookups that go unanswered may be too: this asks `check_network_policies` whether a
//! NetworkPolicy of the namespace drops them, and names it.
//! Without the tool, or where the cluster holds no NetworkPolicies to read (a dump: `kubectl
//! cluster-info dump` writes none), nothing is claimed either way.

use std::collections::BTreeMap;

use serde_json::json;
use tool_shapes::{NetworkPolicyCheck, PolicyVerdict};

use super::{AgentError, Case, Session, answer};
use crate::cluster::ResourceKind;
use crate::names::check_name;

/// Policies that drop the traffic: the first to name in the summary, and what the report says.
pub(super) struct Dropped {
    pub policy: String,
    pub evidence: String,
    pub root_cause: String,
    pub recommendation: String,
}

/// What the NetworkPolicies do with the Pod's connections.
pub(super) enum OnTheWay {
    /// Not known: no tool, or no policies the cluster could show.
    Unknown,
    /// Policies drop them.
    Dropped(Dropped),
    /// The policies read admit them, or may: the evidence says which.
    Admitted(String),
}

/// `NetworkPolicy a` or `NetworkPolicies a, b`.
fn named(names: &[String]) -> String {
    match names {
        [one] => format!("NetworkPolicy {one}"),
        many => format!("NetworkPolicies {}", many.join(", ")),
    }
}

/// `NetworkPolicy a selects` or `NetworkPolicies a, b select`.
fn policies_do(names: &[String], verb: &str) -> String {
    let s = if names.len() == 1 { "s" } else { "" };
    format!("{} {verb}{s}", named(names))
}

/// Of one policy `it does not admit`, of several `none of them admits`.
fn none_admits(names: &[String]) -> &'static str {
    if names.len() == 1 {
        "it does not admit"
    } else {
        "none of them admits"
    }
}

/// `{key: value}` of the one label most likely to name a workload, as a podSelector's
/// matchLabels; a value that is not a valid label value is not quoted.
fn workload_label(labels: &BTreeMap<String, String>) -> Option<String> {
    let valid = |v: &str| {
        v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && v.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
    };
    ["app.kubernetes.io/name", "app", "k8s-app", "name"]
        .iter()
        .find_map(|k| {
            let v = labels.get(*k).filter(|v| valid(v))?;
            Some(format!("{{{k}: {v}}}"))
        })
}

/// `check_network_policies` with `arguments`, when it is loaded and answers.
async fn ask(
    s: &mut Session,
    observation: String,
    arguments: serde_json::Value,
) -> Result<Option<NetworkPolicyCheck>, AgentError> {
    if !s.has_tool("check_network_policies") {
        return Ok(None);
    }
    let outcome = s
        .act(
            observation,
            "A NetworkPolicy that isolates either end and admits nothing drops the traffic: read the namespace's policies.",
            "check_network_policies",
            arguments,
        )
        .await?;
    // Names go into the report and a pasteable command: an answer naming a policy by anything
    // but a valid name is not quoted at all.
    let valid = |names: &[String]| {
        names
            .iter()
            .all(|n| check_name(ResourceKind::NetworkPolicy, "metadata.name", n).is_ok())
    };
    Ok(answer::<NetworkPolicyCheck>(&outcome).filter(|c| {
        [&c.ingress, &c.egress]
            .iter()
            .all(|v| valid(&v.policies) && valid(&v.admitted_by) && valid(&v.undecided))
    }))
}

/// Whether the egress policies of the namespace drop the failing Pod's lookups to the cluster
/// DNS (UDP port 53 to kube-system's kube-dns Pods).
pub(super) async fn dns_on_the_way(case: &Case, s: &mut Session) -> Result<OnTheWay, AgentError> {
    let pod = case.report.spec.pod.name.clone();
    let Some(check) = ask(
        s,
        "The Pod's DNS lookups go unanswered.".into(),
        json!({"pod": pod}),
    )
    .await?
    .filter(|c| c.dns) else {
        return Ok(OnTheWay::Unknown);
    };
    let ns = case.namespace();
    let egress = &check.egress;
    if egress.drops() {
        let first = &egress.policies[0];
        return Ok(OnTheWay::Dropped(Dropped {
            policy: first.clone(),
            evidence: format!(
                "{} Pod {pod} for egress, and {} its DNS lookups (UDP port 53 to the cluster DNS in kube-system)",
                policies_do(&egress.policies, "isolate"),
                none_admits(&egress.policies)
            ),
            root_cause: format!(
                "{} Pod {pod} for egress, and {} UDP port 53 to the cluster DNS in kube-system: every DNS lookup is dropped and times out, so the application cannot reach its dependencies by name, whether or not the names are right.",
                policies_do(&egress.policies, "isolate"),
                none_admits(&egress.policies)
            ),
            recommendation: format!(
                "Let this workload's Pods reach the cluster DNS in NetworkPolicy {first}: add an egress rule with `to: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: kube-system}}}}, podSelector: {{matchLabels: {{k8s-app: kube-dns}}}}}}]` and `ports: [{{port: 53, protocol: UDP}}, {{port: 53, protocol: TCP}}]` (`kubectl -n {ns} edit networkpolicy {first}`). The workload needs no change."
            ),
        }));
    }
    Ok(OnTheWay::Admitted(format!(
        "NetworkPolicies of {ns}: {} for egress",
        passes(egress, &format!("Pod {pod}"), "its DNS lookups")
    )))
}

/// Whether the NetworkPolicies of the namespace drop connections from the failing Pod to Service
/// `service` (`port` as the application uses it; `selector`, the Service's).
pub(super) async fn on_the_way(
    case: &Case,
    s: &mut Session,
    service: &str,
    port: Option<u16>,
    selector: &BTreeMap<String, String>,
) -> Result<OnTheWay, AgentError> {
    let pod = case.report.spec.pod.name.clone();
    let mut arguments = json!({"pod": pod, "service": service});
    if let Some(port) = port {
        arguments["port"] = json!(port);
    }
    let Some(check) = ask(
        s,
        format!("Connections to Service {service} time out although it has ready endpoints."),
        arguments,
    )
    .await?
    else {
        return Ok(OnTheWay::Unknown);
    };
    let ns = case.namespace();
    let port_text = check
        .target_port
        .map_or_else(|| "its port".to_string(), |p| format!("port {p}"));
    let pod_labels = case.pod.metadata.labels.clone().unwrap_or_default();
    let rule = |peer: Option<String>, key: &str| {
        let peer = peer.map_or_else(
            || format!("a {key} peer matching the other end's labels"),
            |labels| format!("`{key}: [{{podSelector: {{matchLabels: {labels}}}}}]`"),
        );
        let ports = check
            .target_port
            .map(|p| format!(" and `ports: [{{port: {p}}}]`"))
            .unwrap_or_default();
        format!("{peer}{ports}")
    };
    let dropped =
        |verdict: &PolicyVerdict, selected: String, root_cause: String, recommendation: String| {
            OnTheWay::Dropped(Dropped {
                policy: verdict.policies[0].clone(),
                evidence: format!(
                    "{} {selected}, and {} the connections on {port_text}",
                    policies_do(&verdict.policies, "select"),
                    none_admits(&verdict.policies)
                ),
                root_cause,
                recommendation,
            })
        };
    if check.ingress.drops() {
        let first = &check.ingress.policies[0];
        return Ok(dropped(
            &check.ingress,
            format!("Service {service}'s Pods for ingress"),
            format!(
                "{} Service {service}'s Pods{} for ingress, and {} Pod {pod} on {port_text}: its connections are dropped, so they time out.",
                policies_do(&check.ingress.policies, "isolate"),
                check
                    .service_pod
                    .as_ref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default(),
                none_admits(&check.ingress.policies)
            ),
            format!(
                "Admit this workload in NetworkPolicy {first}: add an ingress rule with {} (`kubectl -n {ns} edit networkpolicy {first}`), or a policy of its own that selects Service {service}'s Pods and admits it.",
                rule(workload_label(&pod_labels), "from")
            ),
        ));
    }
    if check.egress.drops() {
        let first = &check.egress.policies[0];
        return Ok(dropped(
            &check.egress,
            format!("Pod {pod} for egress"),
            format!(
                "{} Pod {pod} for egress, and {} its connections to Service {service}'s Pods on {port_text}: they are dropped, so they time out.",
                policies_do(&check.egress.policies, "isolate"),
                none_admits(&check.egress.policies)
            ),
            format!(
                "Let this workload reach Service {service} in NetworkPolicy {first}: add an egress rule with {} (`kubectl -n {ns} edit networkpolicy {first}`).",
                rule(workload_label(selector), "to")
            ),
        ));
    }
    Ok(OnTheWay::Admitted(format!(
        "NetworkPolicies of {ns}: {} for ingress; {} for egress",
        passes(&check.ingress, &format!("Service {service}'s Pods"), "them"),
        passes(&check.egress, &format!("Pod {pod}"), "them")
    )))
}

/// How traffic that `verdict` does not drop passes: no policy isolates `isolated`, or which
/// admit `traffic`, or which may.
fn passes(verdict: &PolicyVerdict, isolated: &str, traffic: &str) -> String {
    if verdict.policies.is_empty() {
        format!("no NetworkPolicy isolates {isolated}")
    } else if !verdict.admitted_by.is_empty() {
        format!("{} {traffic}", policies_do(&verdict.admitted_by, "admit"))
    } else {
        format!(
            "{} may admit {traffic} (a rule the objects cannot settle: an ipBlock or a named port)",
            named(&verdict.undecided)
        )
    }
}

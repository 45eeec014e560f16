//! `check_network_policies`: whether the NetworkPolicies of the namespace under investigation let
//! a Pod's connections reach the Pods behind a Service of the same namespace, judged the way the
//! API defines them (networking.k8s.io/v1): a policy selecting a Pod for a direction isolates it,
//! and traffic passes only if some such policy has a rule whose peers and ports admit it.
//!
//! Without a Service, it judges the Pod's DNS lookups instead: egress on UDP port 53 to the
//! cluster DNS, the Pods labelled `k8s-app: kube-dns` in kube-system that every distribution
//! runs. Those Pods are not read (another namespace), so a rule that reaches kube-system on
//! port 53 but selects other Pod labels is undecided; only a policy with no rule that could
//! admit the lookups drops them.
//!
//! Only this namespace's objects are read (the Pods, the Service, the policies, and the
//! Namespace's own labels for `namespaceSelector`). A peer given by `ipBlock` (Pod IPs are the
//! CNI's to match) or a named port no container declares is undecided, never "dropped".
//!
//! Label selectors are matched by hand (`matches`): the host matches with kube's `Selector`, but
//! that would bring k8s-openapi into this wasm build for 30 lines.

use std::collections::BTreeMap;

use serde_json::Value;
use tool_shapes::{NetworkPolicyCheck, PolicyVerdict};

use super::{
    ToolError, cluster, declared_ports, host_error, object_name, parse, pod_ready, required,
    selects, string_map,
};

/// Whether `selector` (a LabelSelector) selects `labels`; an empty selector selects everything.
/// An operator the API does not define selects nothing.
fn matches(selector: &Value, labels: &BTreeMap<String, String>) -> bool {
    let exact = string_map(selector.get("matchLabels"));
    if !exact.iter().all(|(k, v)| labels.get(k) == Some(v)) {
        return false;
    }
    let expressions = selector.get("matchExpressions").and_then(Value::as_array);
    expressions.into_iter().flatten().all(|e| {
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let value = labels.get(key).map(String::as_str);
        match e.get("operator").and_then(Value::as_str) {
            Some("In") => value.is_some_and(|v| values.contains(&v)),
            Some("NotIn") => value.is_none_or(|v| !values.contains(&v)),
            Some("Exists") => value.is_some(),
            Some("DoesNotExist") => value.is_none(),
            _ => false,
        }
    })
}

/// What a rule does with the traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Rule {
    Misses,
    Undecided,
    Admits,
}

/// The other end of the traffic, as a rule's peers see it: its labels and its Namespace's.
struct Peer<'a> {
    labels: &'a BTreeMap<String, String>,
    namespace_labels: &'a BTreeMap<String, String>,
    /// Whether it is in the policy's namespace (what a podSelector alone selects).
    same_namespace: bool,
    /// Whether its labels were read, or only assumed (a podSelector that misses them may still
    /// select it).
    labels_read: bool,
}

/// Whether `peers` (a rule's `from` or `to`) take in `peer`; none or an empty list takes all.
fn peers_admit(peers: Option<&Value>, peer: &Peer) -> Rule {
    let Some(peers) = peers.and_then(Value::as_array).filter(|p| !p.is_empty()) else {
        return Rule::Admits;
    };
    peers
        .iter()
        .map(|p| {
            if p.get("ipBlock").is_some() {
                return Rule::Undecided;
            }
            // A podSelector alone selects in the policy's own namespace.
            let namespace = p.get("namespaceSelector");
            let pods = p.get("podSelector");
            if namespace.is_none() && pods.is_none() {
                return Rule::Misses;
            }
            let namespace_ok = match namespace {
                Some(n) => matches(n, peer.namespace_labels),
                None => peer.same_namespace,
            };
            let pods_ok = pods.is_none_or(|s| matches(s, peer.labels));
            match (namespace_ok, pods_ok) {
                (true, true) => Rule::Admits,
                (true, false) if !peer.labels_read => Rule::Undecided,
                _ => Rule::Misses,
            }
        })
        .max()
        .unwrap_or(Rule::Misses)
}

/// Whether `ports` (a rule's) take in port `target` over `protocol` of a Pod declaring `declared`
/// (name → number); none or an empty list takes every port.
fn ports_admit(
    ports: Option<&Value>,
    protocol: &str,
    target: Option<i32>,
    declared: &BTreeMap<String, i32>,
) -> Rule {
    let Some(ports) = ports.and_then(Value::as_array).filter(|p| !p.is_empty()) else {
        return Rule::Admits;
    };
    ports
        .iter()
        .map(|p| {
            if p.get("protocol").and_then(Value::as_str).unwrap_or("TCP") != protocol {
                return Rule::Misses;
            }
            let number = match p.get("port") {
                None | Some(Value::Null) => return Rule::Admits,
                Some(Value::Number(n)) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
                Some(Value::String(name)) => match declared.get(name) {
                    Some(n) => Some(*n),
                    None => return Rule::Undecided,
                },
                Some(_) => return Rule::Misses,
            };
            let (Some(number), Some(target)) = (number, target) else {
                return Rule::Undecided;
            };
            let end = p
                .get("endPort")
                .and_then(Value::as_i64)
                .and_then(|n| i32::try_from(n).ok())
                .unwrap_or(number);
            if (number..=end).contains(&target) {
                Rule::Admits
            } else {
                Rule::Misses
            }
        })
        .max()
        .unwrap_or(Rule::Misses)
}

/// The directions `policy` isolates: its `policyTypes`, or Ingress (and Egress when it has
/// egress rules: an empty list is none) when it names none.
fn isolates(policy: &Value, direction: &str) -> bool {
    let spec = &policy["spec"];
    match spec.get("policyTypes").and_then(Value::as_array) {
        Some(types) => types.iter().any(|t| t == direction),
        None => {
            direction == "Ingress"
                || spec
                    .get("egress")
                    .and_then(Value::as_array)
                    .is_some_and(|rules| !rules.is_empty())
        }
    }
}

/// The verdict of `policies` for the Pod labelled `selected` in `direction` (`Ingress`: rules
/// `from`, the peer connects; `Egress`: rules `to`, the peer is connected to).
fn verdict(
    policies: &[Value],
    direction: &str,
    selected: &BTreeMap<String, String>,
    peer: &Peer,
    (protocol, target): (&str, Option<i32>),
    declared: &BTreeMap<String, i32>,
) -> PolicyVerdict {
    let (rules_key, peers_key) = match direction {
        "Ingress" => ("ingress", "from"),
        _ => ("egress", "to"),
    };
    let mut out = PolicyVerdict::default();
    for policy in policies {
        let Some(name) = object_name(policy) else {
            continue;
        };
        let empty = Value::Object(Default::default());
        let pod_selector = policy.pointer("/spec/podSelector").unwrap_or(&empty);
        if !isolates(policy, direction) || !matches(pod_selector, selected) {
            continue;
        }
        out.policies.push(name.to_string());
        let best = policy["spec"]
            .get(rules_key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|rule| {
                peers_admit(rule.get(peers_key), peer).min(ports_admit(
                    rule.get("ports"),
                    protocol,
                    target,
                    declared,
                ))
            })
            .max()
            .unwrap_or(Rule::Misses);
        match best {
            Rule::Admits => out.admitted_by.push(name.to_string()),
            Rule::Undecided => out.undecided.push(name.to_string()),
            Rule::Misses => {}
        }
    }
    out
}

fn labels(object: &Value) -> BTreeMap<String, String> {
    string_map(object.pointer("/metadata/labels"))
}

pub(super) fn check_network_policies(args: &Value) -> Result<String, ToolError> {
    let pod_name = required(args, "pod")?;
    let Some(service_name) = super::optional(args, "service") else {
        return dns_lookups(pod_name);
    };
    // A host name may be written as svc.namespace or a full cluster DNS name.
    let service_name = service_name.split('.').next().unwrap_or(service_name);
    let port = args
        .get("port")
        .and_then(Value::as_i64)
        .and_then(|p| i32::try_from(p).ok());
    let namespace = cluster::namespace();
    // Most namespaces have no policy: then nothing is isolated, and nothing more is read.
    let policies = namespace_policies()?;
    if policies.is_empty() {
        return super::answer(&NetworkPolicyCheck {
            namespace,
            pod: pod_name.to_string(),
            service: service_name.to_string(),
            ..NetworkPolicyCheck::default()
        });
    }
    let pod = parse(cluster::get_object("Pod", None, pod_name).map_err(host_error)?)?;
    let service = parse(cluster::get_object("Service", None, service_name).map_err(host_error)?)?;
    // The Namespace's labels; at least the one the API server sets on every Namespace.
    let mut namespace_labels = cluster::get_object("Namespace", None, &namespace)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .map(|n| labels(&n))
        .unwrap_or_default();
    namespace_labels.insert("kubernetes.io/metadata.name".into(), namespace.clone());

    // The Service's Pods: its first ready one stands for all (they share a template).
    let selector = string_map(service.pointer("/spec/selector"));
    let pods = if selector.is_empty() {
        Vec::new()
    } else {
        let pods = parse(cluster::list_objects("Pod", None, None).map_err(host_error)?)?;
        pods.as_array().cloned().unwrap_or_default()
    };
    let backing: Vec<&Value> = pods
        .iter()
        .filter(|p| selects(&selector, p.pointer("/metadata/labels")))
        .collect();
    let server = backing
        .iter()
        .find(|p| pod_ready(p))
        .or(backing.first())
        .copied();
    // Without a Pod, the selector's labels are all that is known of the Service's Pods.
    let server_labels = server.map_or_else(|| selector.clone(), labels);
    let declared: BTreeMap<String, i32> = server
        .map(|s| {
            declared_ports(s)
                .filter_map(|p| Some((p.name?, p.container_port)))
                .collect()
        })
        .unwrap_or_default();
    let target = target_port(&service, port, &declared);

    let client_labels = labels(&pod);
    let check = NetworkPolicyCheck {
        namespace,
        pod: pod_name.to_string(),
        service: service_name.to_string(),
        target_port: target,
        service_pod: server.and_then(object_name).map(str::to_string),
        ingress: verdict(
            &policies,
            "Ingress",
            &server_labels,
            &Peer {
                labels: &client_labels,
                namespace_labels: &namespace_labels,
                same_namespace: true,
                labels_read: true,
            },
            ("TCP", target),
            &declared,
        ),
        egress: verdict(
            &policies,
            "Egress",
            &client_labels,
            &Peer {
                labels: &server_labels,
                namespace_labels: &namespace_labels,
                same_namespace: true,
                labels_read: server.is_some(),
            },
            ("TCP", target),
            &declared,
        ),
        dns: false,
    };
    super::answer(&check)
}

fn namespace_policies() -> Result<Vec<Value>, ToolError> {
    let policies = parse(cluster::list_objects("NetworkPolicy", None, None).map_err(host_error)?)?;
    Ok(policies.as_array().cloned().unwrap_or_default())
}

/// The cluster DNS as the API server and every distribution label it.
const DNS_NAMESPACE: &str = "kube-system";
const DNS_LABEL: (&str, &str) = ("k8s-app", "kube-dns");

/// Whether the namespace's egress policies let Pod `pod_name` look names up in the cluster DNS
/// (UDP port 53 to kube-system's kube-dns Pods).
fn dns_lookups(pod_name: &str) -> Result<String, ToolError> {
    let policies = namespace_policies()?;
    // Without a policy the Pod is not read: nothing isolates it.
    let pod = if policies.is_empty() {
        Value::Null
    } else {
        parse(cluster::get_object("Pod", None, pod_name).map_err(host_error)?)?
    };
    let dns_labels = BTreeMap::from([(DNS_LABEL.0.to_string(), DNS_LABEL.1.to_string())]);
    let dns_namespace = BTreeMap::from([(
        "kubernetes.io/metadata.name".to_string(),
        DNS_NAMESPACE.to_string(),
    )]);
    let check = NetworkPolicyCheck {
        namespace: cluster::namespace(),
        pod: pod_name.to_string(),
        service: format!("{}.{DNS_NAMESPACE}", DNS_LABEL.1),
        target_port: Some(53),
        service_pod: None,
        // The DNS Pods' own policies are kube-system's, which this namespace's tools do not read.
        ingress: PolicyVerdict::default(),
        egress: verdict(
            &policies,
            "Egress",
            &labels(&pod),
            &Peer {
                labels: &dns_labels,
                namespace_labels: &dns_namespace,
                same_namespace: cluster::namespace() == DNS_NAMESPACE,
                labels_read: false,
            },
            ("UDP", Some(53)),
            &BTreeMap::new(),
        ),
        dns: true,
    };
    super::answer(&check)
}

/// The Pod port behind Service port `port` (or the Service's only port): its targetPort by number
/// or by a name the Pod declares; the port itself when no targetPort is set.
fn target_port(
    service: &Value,
    port: Option<i32>,
    declared: &BTreeMap<String, i32>,
) -> Option<i32> {
    let ports: Vec<&Value> = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let entry = match port {
        Some(port) => ports
            .iter()
            .find(|p| p.get("port").and_then(Value::as_i64) == Some(i64::from(port)))?,
        None if ports.len() == 1 => ports[0],
        None => return None,
    };
    let own = entry
        .get("port")
        .and_then(Value::as_i64)
        .and_then(|n| i32::try_from(n).ok());
    match entry.get("targetPort") {
        None | Some(Value::Null) => own,
        Some(Value::Number(n)) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
        Some(Value::String(name)) => declared.get(name).copied(),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn judge(policies: Value, target: Option<i32>) -> (PolicyVerdict, PolicyVerdict) {
        let policies = policies.as_array().cloned().unwrap();
        let client = map(&[("app", "session-api")]);
        let server = map(&[("app", "sessions-redis"), ("tier", "cache")]);
        let ns = map(&[("kubernetes.io/metadata.name", "web"), ("team", "shop")]);
        let declared = BTreeMap::from([("redis".to_string(), 6379)]);
        let ingress = verdict(
            &policies,
            "Ingress",
            &server,
            &Peer {
                labels: &client,
                namespace_labels: &ns,
                same_namespace: true,
                labels_read: true,
            },
            ("TCP", target),
            &declared,
        );
        let egress = verdict(
            &policies,
            "Egress",
            &client,
            &Peer {
                labels: &server,
                namespace_labels: &ns,
                same_namespace: true,
                labels_read: true,
            },
            ("TCP", target),
            &declared,
        );
        (ingress, egress)
    }

    fn policy(name: &str, spec: Value) -> Value {
        json!({"metadata": {"name": name}, "spec": spec})
    }

    #[test]
    fn a_default_deny_on_the_service_drops_and_a_rule_for_the_caller_admits() {
        let deny = policy(
            "cache-default-deny",
            json!({"podSelector": {"matchLabels": {"tier": "cache"}}, "policyTypes": ["Ingress"]}),
        );
        let (ingress, egress) = judge(json!([deny.clone()]), Some(6379));
        assert!(ingress.drops(), "{ingress:?}");
        assert_eq!(ingress.policies, ["cache-default-deny"]);
        assert!(!egress.drops() && egress.policies.is_empty());

        let allow = policy(
            "cache-from-api",
            json!({"podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["cache"]}]},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "session-api"}}}], "ports": [{"port": "redis"}]}]}),
        );
        let (ingress, _) = judge(json!([deny.clone(), allow]), Some(6379));
        assert!(!ingress.drops());
        assert_eq!(ingress.admitted_by, ["cache-from-api"]);

        // The rule admits another app, or another port: still dropped.
        let other_app = policy(
            "cache-from-web",
            json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]}),
        );
        let other_port = policy(
            "cache-6380",
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": 6380, "protocol": "TCP"}]}]}),
        );
        let (ingress, _) = judge(json!([deny, other_app, other_port]), Some(6379));
        assert!(ingress.drops(), "{ingress:?}");
        assert_eq!(ingress.policies.len(), 3);
    }

    #[test]
    fn namespace_selectors_port_ranges_and_all_sources() {
        let by_namespace = policy(
            "from-team",
            json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "shop"}}}]}]}),
        );
        assert!(!judge(json!([by_namespace]), Some(6379)).0.drops());
        let other_namespace = policy(
            "from-monitoring",
            json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}, "podSelector": {}}]}]}),
        );
        assert!(judge(json!([other_namespace]), Some(6379)).0.drops());
        let range = policy(
            "range",
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": 6000, "endPort": 7000}]}]}),
        );
        assert!(!judge(json!([range]), Some(6379)).0.drops());
        let everyone = policy("everyone", json!({"podSelector": {}, "ingress": [{}]}));
        assert_eq!(
            judge(json!([everyone]), Some(6379)).0.admitted_by,
            ["everyone"]
        );
        // No ingress rules at all: isolated, nothing admitted.
        let none = policy("none", json!({"podSelector": {}}));
        assert!(judge(json!([none]), None).0.drops());
    }

    #[test]
    fn egress_policies_on_the_caller() {
        let deny = policy(
            "api-egress-dns-only",
            json!({"podSelector": {"matchLabels": {"app": "session-api"}}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}], "ports": [{"port": 53, "protocol": "UDP"}]}]}),
        );
        let (ingress, egress) = judge(json!([deny]), Some(6379));
        assert!(ingress.policies.is_empty());
        assert!(egress.drops(), "{egress:?}");
        // Implied Egress: egress rules without policyTypes.
        let allow = policy(
            "api-to-cache",
            json!({"podSelector": {"matchLabels": {"app": "session-api"}}, "egress": [{"to": [{"podSelector": {"matchLabels": {"tier": "cache"}}}]}]}),
        );
        let (ingress, egress) = judge(json!([allow]), Some(6379));
        assert!(
            ingress.policies.is_empty(),
            "it selects the caller, not the cache"
        );
        assert_eq!(egress.admitted_by, ["api-to-cache"]);
        // An empty egress list without policyTypes: no egress rules, so not an egress policy.
        let empty = policy("empty", json!({"podSelector": {}, "egress": []}));
        assert!(judge(json!([empty]), Some(6379)).1.policies.is_empty());
    }

    #[test]
    fn what_cannot_be_judged_is_undecided_not_dropped() {
        let cidr = policy(
            "cidr",
            json!({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}),
        );
        let (ingress, _) = judge(json!([cidr]), Some(6379));
        assert!(!ingress.drops());
        assert_eq!(ingress.undecided, ["cidr"]);
        let named = policy(
            "named",
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": "metrics"}]}]}),
        );
        assert_eq!(judge(json!([named]), Some(6379)).0.undecided, ["named"]);
        let bad_operator =
            json!({"matchExpressions": [{"key": "app", "operator": "Near", "values": ["x"]}]});
        assert!(!matches(&bad_operator, &map(&[("app", "x")])));
        assert!(matches(&json!({}), &map(&[])));
    }

    /// The Pod's egress to the cluster DNS, whose Pods' labels are assumed, not read.
    fn dns(policies: Value) -> PolicyVerdict {
        let policies = policies.as_array().cloned().unwrap();
        let dns_labels = map(&[("k8s-app", "kube-dns")]);
        let kube_system = map(&[("kubernetes.io/metadata.name", "kube-system")]);
        verdict(
            &policies,
            "Egress",
            &map(&[("app", "session-api")]),
            &Peer {
                labels: &dns_labels,
                namespace_labels: &kube_system,
                same_namespace: false,
                labels_read: false,
            },
            ("UDP", Some(53)),
            &BTreeMap::new(),
        )
    }

    #[test]
    fn dns_lookups_under_egress_policies() {
        // Egress only within the namespace: a podSelector alone never reaches kube-system.
        let in_namespace = policy(
            "default-deny-egress",
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"podSelector": {}}]}]}),
        );
        assert!(dns(json!([in_namespace.clone()])).drops());
        // TCP 53 only: UDP lookups are dropped.
        let tcp_only = policy(
            "dns-tcp",
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"port": 53, "protocol": "TCP"}]}]}),
        );
        assert!(dns(json!([tcp_only])).drops());
        let allowed = policy(
            "allow-dns",
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}], "ports": [{"port": 53, "protocol": "UDP"}]}]}),
        );
        assert_eq!(
            dns(json!([in_namespace.clone(), allowed])).admitted_by,
            ["allow-dns"]
        );
        // DNS Pods labelled otherwise (not read): may admit, never "dropped".
        let other_labels = policy(
            "allow-coredns",
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app.kubernetes.io/name": "coredns"}}}], "ports": [{"port": 53, "protocol": "UDP"}]}]}),
        );
        let verdict = dns(json!([in_namespace, other_labels]));
        assert!(!verdict.drops());
        assert_eq!(verdict.undecided, ["allow-coredns"]);
        // Not isolated for egress at all.
        assert!(dns(json!([])).policies.is_empty());
    }

    #[test]
    fn the_target_port_behind_a_service_port() {
        let declared = BTreeMap::from([("redis".to_string(), 6379)]);
        let service = json!({"spec": {"ports": [{"port": 6379, "targetPort": "redis"}, {"port": 80, "targetPort": 8080}, {"port": 9000}]}});
        assert_eq!(target_port(&service, Some(6379), &declared), Some(6379));
        assert_eq!(target_port(&service, Some(80), &declared), Some(8080));
        assert_eq!(target_port(&service, Some(9000), &declared), Some(9000));
        assert_eq!(target_port(&service, Some(1), &declared), None);
        assert_eq!(target_port(&service, None, &declared), None);
    }
}

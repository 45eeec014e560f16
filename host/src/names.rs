//! Kubernetes names checked before they become part of a request path or query.
//!
//! Names reach the operator from what tenants write: a Pod's volume claims, ConfigMap references
//! and owner references, event fields, the arguments a model or a plugin passes to a tool, a
//! report's spec. The API server stores some of these fields without validating them as names
//! (a `claimName` of `?watch=true&x=` is accepted), and a client that pastes them into a URL sends
//! an unintended watch or query. Every name is checked against the rule of its kind here, once,
//! and refused with an error that names the field it came from.

use crate::cluster::ResourceKind;

/// The Kubernetes name rules (`k8s.io/apimachinery/pkg/util/validation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// Lower-case alphanumerics, `-` and `.`, alphanumeric at both ends, at most 253 characters:
    /// most objects.
    Dns1123Subdomain,
    /// Lower-case alphanumerics and `-`, alphanumeric at both ends, at most 63: namespaces,
    /// container names, label-like names.
    Dns1123Label,
    /// A DNS-1123 label that starts with a letter: Services.
    Dns1035Label,
}

impl NameRule {
    /// The rule a kind's object names follow.
    pub fn of(kind: ResourceKind) -> NameRule {
        match kind {
            ResourceKind::Namespace => NameRule::Dns1123Label,
            ResourceKind::Service => NameRule::Dns1035Label,
            _ => NameRule::Dns1123Subdomain,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            NameRule::Dns1123Subdomain => {
                "a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters)"
            }
            NameRule::Dns1123Label => {
                "a DNS-1123 label (lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)"
            }
            NameRule::Dns1035Label => {
                "a DNS-1035 label (lower-case letters, digits and '-', starting with a letter and ending with a letter or digit, at most 63 characters)"
            }
        }
    }

    pub fn allows(self, name: &str) -> bool {
        let max = match self {
            NameRule::Dns1123Subdomain => 253,
            NameRule::Dns1123Label | NameRule::Dns1035Label => 63,
        };
        let bytes = name.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
            return false;
        };
        if bytes.len() > max || !alnum(first) || !alnum(last) {
            return false;
        }
        if self == NameRule::Dns1035Label && !first.is_ascii_lowercase() {
            return false;
        }
        match self {
            // Each dot-separated part is a label.
            NameRule::Dns1123Subdomain => name.split('.').all(|label| {
                let l = label.as_bytes();
                !l.is_empty()
                    && alnum(l[0])
                    && alnum(l[l.len() - 1])
                    && l.iter().all(|&b| alnum(b) || b == b'-')
            }),
            _ => bytes.iter().all(|&b| alnum(b) || b == b'-'),
        }
    }
}

/// A name refused before any request was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {value:?} is not a valid {what}: it must be {rule}")]
pub struct InvalidName {
    /// Where the name came from: `spec.volumes[0].persistentVolumeClaim.claimName`, `argument
    /// "name" of inspect_object`, `metadata.ownerReferences[0].name`.
    pub field: String,
    /// The name, shortened and escaped by `Debug` so that it prints safely.
    pub value: String,
    pub what: String,
    pub rule: &'static str,
}

fn refuse(field: &str, value: &str, what: &str, rule: NameRule) -> InvalidName {
    let mut shown: String = value.chars().take(80).collect();
    if shown.len() < value.len() {
        shown.push('…');
    }
    InvalidName {
        field: field.to_string(),
        value: shown,
        what: what.to_string(),
        rule: rule.describe(),
    }
}

/// Checks the name of an object of `kind`, read from `field`.
pub fn check_name(kind: ResourceKind, field: &str, name: &str) -> Result<(), InvalidName> {
    let rule = NameRule::of(kind);
    if rule.allows(name) {
        Ok(())
    } else {
        Err(refuse(field, name, &format!("{} name", kind.kind()), rule))
    }
}

/// Checks a DiagnosticReport's name (a DNS-1123 subdomain, as for most kinds), read from `field`.
pub fn check_report_name(field: &str, name: &str) -> Result<(), InvalidName> {
    let rule = NameRule::Dns1123Subdomain;
    if rule.allows(name) {
        Ok(())
    } else {
        Err(refuse(field, name, "DiagnosticReport name", rule))
    }
}

/// The Service a host name (from a log or an env var) means to cluster DNS from a Pod in
/// `namespace`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceHost {
    pub namespace: String,
    pub name: String,
    /// False for `name.x` with `x` another namespace's name: a Service there only if Namespace
    /// `x` exists (`example.com` is no Service `example` of namespace `com`).
    pub certain: bool,
}

/// [`ServiceHost`] of `host`: `name`, `name.ns`, `name.ns.svc` or `name.ns.svc.<cluster
/// domain>`, checked against the name rules; None for anything else (a host outside the
/// cluster, an address).
pub fn service_host(host: &str, namespace: &str) -> Option<ServiceHost> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let (name, ns, certain) = match labels.as_slice() {
        [name] => (*name, namespace, true),
        [name, ns] => (*name, *ns, *ns == namespace),
        [name, ns, "svc", ..] => (*name, *ns, true),
        _ => return None,
    };
    let valid = NameRule::Dns1035Label.allows(name) && NameRule::Dns1123Label.allows(ns);
    valid.then(|| ServiceHost {
        namespace: ns.to_string(),
        name: name.to_string(),
        certain,
    })
}

/// Checks a namespace name, read from `field`.
pub fn check_namespace(field: &str, namespace: &str) -> Result<(), InvalidName> {
    check_name(ResourceKind::Namespace, field, namespace)
}

/// Checks a container name (a query parameter of a log request), read from `field`.
pub fn check_container(field: &str, container: &str) -> Result<(), InvalidName> {
    if NameRule::Dns1123Label.allows(container) {
        Ok(())
    } else {
        Err(refuse(
            field,
            container,
            "container name",
            NameRule::Dns1123Label,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_means_a_service_as_cluster_dns_resolves_it_from_the_pod() {
        let svc = |namespace: &str, name: &str, certain: bool| {
            Some(ServiceHost {
                namespace: namespace.into(),
                name: name.into(),
                certain,
            })
        };
        for (host, want) in [
            ("payments", svc("shop", "payments", true)),
            ("Payments.", svc("shop", "payments", true)),
            ("payments.shop", svc("shop", "payments", true)),
            ("payments.billing", svc("billing", "payments", false)),
            ("payments.billing.svc", svc("billing", "payments", true)),
            (
                "payments.billing.svc.cluster.local",
                svc("billing", "payments", true),
            ),
            ("api.example.com", None),
            ("10.0.0.12", None),
            ("1payments", None),
            ("pay$ments.billing.svc", None),
        ] {
            assert_eq!(service_host(host, "shop"), want, "{host}");
        }
    }

    #[test]
    fn names_that_would_change_a_request_are_refused() {
        for hostile in [
            "?watch=true&x=",
            "foo?limit=1",
            "a/b",
            "..",
            ".",
            "%2e%2e",
            "foo#frag",
            "Foo",
            "foo bar",
            "foo\n",
            "",
            "-foo",
            "foo-",
            "foo..bar",
            "ünïcode",
        ] {
            let err = check_name(
                ResourceKind::PersistentVolumeClaim,
                "spec.volumes[0].persistentVolumeClaim.claimName",
                hostile,
            )
            .expect_err(hostile);
            let message = err.to_string();
            assert!(
                message.starts_with("spec.volumes[0].persistentVolumeClaim.claimName "),
                "the error names the field: {message}"
            );
            assert!(message.contains("PersistentVolumeClaim name"), "{message}");
            assert!(!message.contains('\n'), "{message:?}");
        }
    }

    #[test]
    fn report_names_an_mcp_client_sends_follow_the_subdomain_rule() {
        check_report_name("name", "critical-app-crashloopbackoff-7f3a").unwrap();
        for hostile in ["a/../b", "?watch=true", "Foo", ""] {
            let message = check_report_name("name", hostile)
                .expect_err(hostile)
                .to_string();
            assert!(message.contains("DiagnosticReport name"), "{message}");
        }
    }

    #[test]
    fn real_names_pass_by_the_rule_of_their_kind() {
        for (kind, name) in [
            (ResourceKind::Pod, "critical-app-7d4b9c6f5-h8x2m"),
            (ResourceKind::ConfigMap, "kube-root-ca.crt"),
            (
                ResourceKind::Event,
                "payment-6d5f7c9b8-7xk2p.17a2b3c4d5e6f7a8",
            ),
            (
                ResourceKind::Node,
                "ip-10-0-1-17.eu-west-1.compute.internal",
            ),
            (ResourceKind::Namespace, "production"),
            (ResourceKind::Service, "redis-master"),
        ] {
            check_name(kind, "name", name).unwrap();
        }
        let long = "a".repeat(64);
        assert!(check_namespace("metadata.namespace", &long).is_err());
        assert!(check_name(ResourceKind::Pod, "name", &long).is_ok());
        assert!(check_name(ResourceKind::Pod, "name", &"a".repeat(254)).is_err());
        assert!(check_name(ResourceKind::Service, "name", "1redis").is_err());
        assert!(check_name(ResourceKind::Pod, "name", "1redis").is_ok());
        assert!(check_container("container", "app").is_ok());
        assert!(check_container("container", "app&previous=true").is_err());
    }
}

//! Which DNS server a Pod's lookups go to, from its `dnsPolicy` and `dnsConfig`: what a lookup
//! left unanswered is blamed on, and what workloads that share it share.

use k8s_openapi::api::core::v1::PodSpec;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolver {
    /// `ClusterFirst` (the default) or `ClusterFirstWithHostNet`: the cluster DNS.
    Cluster,
    /// `Default`: the node's resolver.
    Node,
    /// `None`: the servers the Pod's `dnsConfig` names (those that are addresses).
    Servers(Vec<std::net::IpAddr>),
}

impl Resolver {
    pub fn of(spec: &PodSpec) -> Resolver {
        match spec.dns_policy.as_deref() {
            Some("Default") => Resolver::Node,
            Some("None") => Resolver::Servers(
                spec.dns_config
                    .as_ref()
                    .and_then(|c| c.nameservers.as_ref())
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.parse().ok())
                    .collect(),
            ),
            _ => Resolver::Cluster,
        }
    }

    /// What it is, for a sentence: "the cluster DNS (...)".
    pub fn describe(&self) -> String {
        match self {
            Resolver::Cluster => {
                "the cluster DNS (Service kube-dns in kube-system, usually CoreDNS)".into()
            }
            Resolver::Node => "the node's DNS server (dnsPolicy Default)".into(),
            Resolver::Servers(servers) if servers.is_empty() => {
                "the DNS servers of the Pod's dnsConfig (it names none)".into()
            }
            Resolver::Servers(servers) => format!(
                "the DNS server(s) the Pod's dnsConfig names ({})",
                servers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

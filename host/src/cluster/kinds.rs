/// The kinds the operator reads. A closed set on purpose: it is what a tool may ask for, and
/// anything outside it (RBAC objects, webhooks, ...) is not the agent's business.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    Node,
    Namespace,
    Pod,
    Event,
    Service,
    Endpoints,
    ConfigMap,
    Secret,
    PersistentVolumeClaim,
    PersistentVolume,
    ReplicationController,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    /// Read to tell whether a policy drops a Pod's connections (`check_network_policies`).
    NetworkPolicy,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 18] = [
        ResourceKind::Node,
        ResourceKind::Namespace,
        ResourceKind::Pod,
        ResourceKind::Event,
        ResourceKind::Service,
        ResourceKind::Endpoints,
        ResourceKind::ConfigMap,
        ResourceKind::Secret,
        ResourceKind::PersistentVolumeClaim,
        ResourceKind::PersistentVolume,
        ResourceKind::ReplicationController,
        ResourceKind::Deployment,
        ResourceKind::ReplicaSet,
        ResourceKind::StatefulSet,
        ResourceKind::DaemonSet,
        ResourceKind::Job,
        ResourceKind::CronJob,
        ResourceKind::NetworkPolicy,
    ];

    pub fn kind(self) -> &'static str {
        match self {
            ResourceKind::Node => "Node",
            ResourceKind::Namespace => "Namespace",
            ResourceKind::Pod => "Pod",
            ResourceKind::Event => "Event",
            ResourceKind::Service => "Service",
            ResourceKind::Endpoints => "Endpoints",
            ResourceKind::ConfigMap => "ConfigMap",
            ResourceKind::Secret => "Secret",
            ResourceKind::PersistentVolumeClaim => "PersistentVolumeClaim",
            ResourceKind::PersistentVolume => "PersistentVolume",
            ResourceKind::ReplicationController => "ReplicationController",
            ResourceKind::Deployment => "Deployment",
            ResourceKind::ReplicaSet => "ReplicaSet",
            ResourceKind::StatefulSet => "StatefulSet",
            ResourceKind::DaemonSet => "DaemonSet",
            ResourceKind::Job => "Job",
            ResourceKind::CronJob => "CronJob",
            ResourceKind::NetworkPolicy => "NetworkPolicy",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            ResourceKind::Deployment
            | ResourceKind::ReplicaSet
            | ResourceKind::StatefulSet
            | ResourceKind::DaemonSet => "apps/v1",
            ResourceKind::Job | ResourceKind::CronJob => "batch/v1",
            ResourceKind::NetworkPolicy => "networking.k8s.io/v1",
            _ => "v1",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            ResourceKind::Node => "nodes",
            ResourceKind::Namespace => "namespaces",
            ResourceKind::Pod => "pods",
            ResourceKind::Event => "events",
            ResourceKind::Service => "services",
            ResourceKind::Endpoints => "endpoints",
            ResourceKind::ConfigMap => "configmaps",
            ResourceKind::Secret => "secrets",
            ResourceKind::PersistentVolumeClaim => "persistentvolumeclaims",
            ResourceKind::PersistentVolume => "persistentvolumes",
            ResourceKind::ReplicationController => "replicationcontrollers",
            ResourceKind::Deployment => "deployments",
            ResourceKind::ReplicaSet => "replicasets",
            ResourceKind::StatefulSet => "statefulsets",
            ResourceKind::DaemonSet => "daemonsets",
            ResourceKind::Job => "jobs",
            ResourceKind::CronJob => "cronjobs",
            ResourceKind::NetworkPolicy => "networkpolicies",
        }
    }

    pub fn namespaced(self) -> bool {
        !matches!(
            self,
            ResourceKind::Node | ResourceKind::Namespace | ResourceKind::PersistentVolume
        )
    }

    /// The namespace a get of this kind reads: the given one (`default` when none) for a
    /// namespaced kind, none for a cluster-scoped one.
    pub fn scope(self, namespace: Option<&str>) -> Option<&str> {
        self.namespaced().then(|| namespace.unwrap_or("default"))
    }

    /// The file (without extension) `kubectl cluster-info dump` writes this kind to. Kinds it
    /// does not dump use their plural, so a user can add `kubectl get X -o json` output by hand.
    pub fn dump_file_stem(self) -> &'static str {
        match self {
            ResourceKind::ReplicationController => "replication-controllers",
            other => other.plural(),
        }
    }

    /// The `kind` of the List kubectl writes for this kind.
    pub fn list_kind(self) -> String {
        format!("{}List", self.kind())
    }

    fn short_names(self) -> &'static [&'static str] {
        match self {
            ResourceKind::Node => &["no"],
            ResourceKind::Namespace => &["ns"],
            ResourceKind::Pod => &["po"],
            ResourceKind::Event => &["ev"],
            ResourceKind::Service => &["svc"],
            ResourceKind::Endpoints => &["ep"],
            ResourceKind::ConfigMap => &["cm"],
            ResourceKind::PersistentVolumeClaim => &["pvc"],
            ResourceKind::PersistentVolume => &["pv"],
            ResourceKind::ReplicationController => &["rc"],
            ResourceKind::Deployment => &["deploy"],
            ResourceKind::ReplicaSet => &["rs"],
            ResourceKind::StatefulSet => &["sts"],
            ResourceKind::DaemonSet => &["ds"],
            ResourceKind::CronJob => &["cj"],
            ResourceKind::NetworkPolicy => &["netpol"],
            ResourceKind::Secret | ResourceKind::Job => &[],
        }
    }
}

impl std::fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl std::str::FromStr for ResourceKind {
    type Err = String;

    /// Accepts what kubectl accepts: `Deployment`, `deployment`, `deployments`, `deploy`,
    /// `deployments.apps`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.split('.').next().unwrap_or(s).to_ascii_lowercase();
        ResourceKind::ALL
            .into_iter()
            .find(|k| {
                k.kind().eq_ignore_ascii_case(&wanted)
                    || k.plural() == wanted
                    || k.short_names().contains(&wanted.as_str())
            })
            .ok_or_else(|| {
                let kinds: Vec<_> = ResourceKind::ALL.iter().map(|k| k.kind()).collect();
                format!(
                    "unknown kind {s:?}; the operator reads {}",
                    kinds.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_kubectl_accepts() {
        for (input, kind) in [
            ("Deployment", ResourceKind::Deployment),
            ("deployments.apps", ResourceKind::Deployment),
            ("deploy", ResourceKind::Deployment),
            ("pvc", ResourceKind::PersistentVolumeClaim),
            ("Pods", ResourceKind::Pod),
        ] {
            assert_eq!(input.parse::<ResourceKind>().unwrap(), kind, "{input}");
        }
        let err = "clusterroles".parse::<ResourceKind>().unwrap_err();
        assert!(err.contains("unknown kind \"clusterroles\""), "{err}");
    }
}

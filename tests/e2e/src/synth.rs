//! Synthetic cluster dumps at scale, in kubectl's layout, for the pipeline benchmarks:
//! `cargo run --release --example synth-dump -- --pods 10000 --namespaces 50 DIR`.
//!
//! N namespaces of Deployments (each with its ReplicaSets, Pods and a Service), nodes to hold
//! them (about 40 Pods each), a `logs.txt` per Pod, and events as a live cluster has them (only
//! the last hour's: Pods started recently, rollouts, the planted failures). A few failures are
//! planted, one of each class in turn, each shaped like what the kubelet and scheduler write; the
//! rest is healthy. Deterministic for a seed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};

use crate::fixtures::uid;

/// What to generate.
#[derive(Clone, Debug)]
pub struct Spec {
    pub namespaces: usize,
    pub pods: usize,
    /// Failing Pods to plant (classes in turn), each in a Deployment of its own.
    pub failures: usize,
    pub seed: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            namespaces: 10,
            pods: 1000,
            failures: 6,
            seed: 1,
        }
    }
}

/// The failure classes a dump can plant, named and ordered as sre-operator's `FailureClass`
/// (this crate cannot depend on sre-operator, whose tests depend on it; a test in
/// `host/tests/dump.rs` holds the two lists equal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Class {
    CrashLoopBackOff,
    Pending,
    ImagePullBackOff,
    #[serde(rename = "OOMKilled")]
    OomKilled,
    CreateContainerConfigError,
    ProbeFailure,
    /// The kubelet evicted the Pod, its node low on memory: `Failed`, reason `Evicted`.
    Evicted,
    /// No Pod: the ReplicaSet's Pods are refused by a ResourceQuota (`ReplicaFailure`,
    /// `FailedCreate` events); its report names the ReplicaSet.
    FailedCreate,
}

impl Class {
    /// In the order failures are planted.
    pub const ALL: [Class; 8] = [
        Class::CrashLoopBackOff,
        Class::Pending,
        Class::ImagePullBackOff,
        Class::OomKilled,
        Class::CreateContainerConfigError,
        Class::ProbeFailure,
        Class::Evicted,
        Class::FailedCreate,
    ];

    /// The name `kubectl get pods` and sre-operator's reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::CrashLoopBackOff => "CrashLoopBackOff",
            Class::Pending => "Pending",
            Class::ImagePullBackOff => "ImagePullBackOff",
            Class::OomKilled => "OOMKilled",
            Class::CreateContainerConfigError => "CreateContainerConfigError",
            Class::ProbeFailure => "ProbeFailure",
            Class::Evicted => "Evicted",
            Class::FailedCreate => "FailedCreate",
        }
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A planted failure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Planted {
    pub namespace: String,
    pub pod: String,
    pub class: Class,
}

/// What was written.
#[derive(Clone, Debug, Serialize)]
pub struct Written {
    pub pods: usize,
    pub nodes: usize,
    pub deployments: usize,
    pub events: usize,
    pub bytes: u64,
    pub planted: Vec<Planted>,
}

/// splitmix64: enough randomness for names and sizes, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// k8s.io/apimachinery's alphabet for generated names.
    fn suffix(&mut self, n: usize) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..n)
            .map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize] as char)
            .collect()
    }

    fn uid(&mut self) -> String {
        let (high, low) = (self.next(), self.next());
        uid(high, low)
    }

    fn hex(&mut self, n: usize) -> String {
        (0..n.div_ceil(16))
            .map(|_| format!("{:016x}", self.next()))
            .collect::<String>()[..n]
            .to_string()
    }
}

/// Seconds since the epoch of the dump's "now": 2026-11-25T10:00:00Z.
const NOW: i64 = 1_795_600_800;

fn time(at: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(at)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn micro_time(at: i64, micros: u64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(at)
        .map(|t| format!("{}.{micros:06}Z", t.strftime("%Y-%m-%dT%H:%M:%S")))
        .unwrap_or_default()
}

const APPS: [&str; 24] = [
    "api",
    "web",
    "worker",
    "cache",
    "gateway",
    "billing",
    "search",
    "auth",
    "orders",
    "catalog",
    "cart",
    "checkout",
    "inventory",
    "pricing",
    "shipping",
    "notifications",
    "reports",
    "ledger",
    "profile",
    "media",
    "events",
    "scheduler",
    "recommendations",
    "feed",
];
const TEAMS: [&str; 12] = [
    "shop",
    "payments",
    "platform",
    "data",
    "growth",
    "identity",
    "logistics",
    "media",
    "support",
    "risk",
    "search",
    "finance",
];

/// 4-space JSON, as kubectl writes it.
fn write_json(path: &Path, value: &Value) -> std::io::Result<u64> {
    let file = File::create(path)?;
    let mut out = BufWriter::new(file);
    let mut serializer = serde_json::Serializer::with_formatter(
        &mut out,
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    value.serialize(&mut serializer)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": "98765432"}, "items": items})
}

struct Gen {
    rng: Rng,
    rv: u64,
    nodes: Vec<String>,
}

/// One Deployment's worth of objects.
#[derive(Default)]
struct Namespace {
    name: String,
    deployments: Vec<Value>,
    replicasets: Vec<Value>,
    pods: Vec<Value>,
    services: Vec<Value>,
    events: Vec<Value>,
    configmaps: Vec<Value>,
    logs: Vec<(String, String)>,
}

#[derive(Clone, Copy, PartialEq)]
enum Health {
    Healthy,
    Planted(Class),
}

impl Gen {
    fn rv(&mut self) -> String {
        self.rv += 1 + self.rng.below(40);
        self.rv.to_string()
    }

    fn node(&mut self, index: usize) -> Value {
        let name = self.nodes[index].clone();
        let zone = ["a", "b", "c"][index % 3];
        let created = NOW - 86_400 * 60;
        let heartbeat = time(NOW - 10 - self.rng.below(40) as i64);
        json!({
            "metadata": {
                "name": name, "uid": self.rng.uid(), "resourceVersion": self.rv(), "creationTimestamp": time(created),
                "labels": {
                    "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "node-role.kubernetes.io/worker": "",
                    "topology.kubernetes.io/region": "eu-central-1", "topology.kubernetes.io/zone": format!("eu-central-1{zone}")
                },
                "annotations": {"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"}
            },
            "spec": {"podCIDR": format!("10.{}.{}.0/24", 64 + index / 256, index % 256), "podCIDRs": [format!("10.{}.{}.0/24", 64 + index / 256, index % 256)]},
            "status": {
                "capacity": {"cpu": "16", "ephemeral-storage": "203070420Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": "65842048Ki", "pods": "110"},
                "allocatable": {"cpu": "15890m", "ephemeral-storage": "187149698259", "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": "64690048Ki", "pods": "110"},
                "conditions": [
                    {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": heartbeat, "lastTransitionTime": time(created), "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available"},
                    {"type": "DiskPressure", "status": "False", "lastHeartbeatTime": heartbeat, "lastTransitionTime": time(created), "reason": "KubeletHasNoDiskPressure", "message": "kubelet has no disk pressure"},
                    {"type": "PIDPressure", "status": "False", "lastHeartbeatTime": heartbeat, "lastTransitionTime": time(created), "reason": "KubeletHasSufficientPID", "message": "kubelet has sufficient PID available"},
                    {"type": "Ready", "status": "True", "lastHeartbeatTime": heartbeat, "lastTransitionTime": time(created + 30), "reason": "KubeletReady", "message": "kubelet is posting ready status"}
                ],
                "addresses": [{"type": "InternalIP", "address": format!("10.0.{}.{}", index / 250, 4 + index % 250)}, {"type": "Hostname", "address": name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "machineID": self.rng.hex(32), "systemUUID": self.rng.uid(), "bootID": self.rng.uid(),
                    "kernelVersion": "6.8.0-88-generic", "osImage": "Ubuntu 24.04.3 LTS", "containerRuntimeVersion": "containerd://2.1.4",
                    "kubeletVersion": "v1.36.3", "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"
                },
                "images": [
                    {"names": [format!("registry.k8s.io/kube-proxy@sha256:{}", self.rng.hex(64)), "registry.k8s.io/kube-proxy:v1.36.3"], "sizeBytes": 30_812_552},
                    {"names": [format!("docker.io/library/redis@sha256:{}", self.rng.hex(64)), "docker.io/library/redis:7.4.1"], "sizeBytes": 45_210_119}
                ]
            }
        })
    }

    /// A Deployment with `replicas` Pods of its current ReplicaSet and one older, scaled-down one.
    fn deployment(
        &mut self,
        ns: &mut Namespace,
        app: &str,
        replicas: usize,
        health: Health,
        planted: &mut Vec<Planted>,
    ) {
        let team = ns.name.clone();
        let version = format!(
            "{}.{}.{}",
            1 + self.rng.below(5),
            self.rng.below(20),
            self.rng.below(10)
        );
        let old_version = format!("{}.{}.0", 1 + self.rng.below(5), self.rng.below(20));
        let image = format!("registry.example.com/{team}/{app}:{version}");
        let created = NOW - 86_400 * (20 + self.rng.below(300) as i64);
        let rolled = NOW - 3600 * (2 + self.rng.below(24 * 30) as i64);
        let memory = *self.rng.pick(&["64Mi", "128Mi", "256Mi", "384Mi", "512Mi"]);
        let cpu = *self.rng.pick(&["50m", "100m", "200m", "250m"]);
        let labels = json!({"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": team});
        let dep_uid = self.rng.uid();
        let mut container = json!({
            "name": app, "image": image,
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
            "env": [
                {"name": "LOG_LEVEL", "value": "info"},
                {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel-collector.observability:4317"},
                {"name": "DATABASE_HOST", "value": format!("{app}-db")},
                {"name": "CACHE_URL", "value": "redis://cache:6379/0"}
            ],
            "resources": {"limits": {"memory": memory}, "requests": {"cpu": cpu, "memory": memory}},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"}, "initialDelaySeconds": 10, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 5, "successThreshold": 1, "failureThreshold": 3},
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"
        });
        match health {
            Health::Planted(Class::Pending) => {
                container["resources"] = json!({"limits": {"memory": "96Gi"}, "requests": {"cpu": "2", "memory": "96Gi"}});
            }
            Health::Planted(Class::CreateContainerConfigError) => {
                container["env"].as_array_mut().unwrap().push(json!({"name": "FEATURE_FLAGS_URL", "valueFrom": {"configMapKeyRef": {"name": format!("{app}-config"), "key": "FEATURE_FLAGS_URL"}}}));
                ns.configmaps.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("{app}-config"), "namespace": team, "uid": self.rng.uid(), "resourceVersion": self.rv(), "creationTimestamp": time(created)},
                    "data": {"FEATURE_FLAGS_HOST": "flags.internal", "TIMEOUT_MS": "2000"}}));
            }
            Health::Planted(Class::ProbeFailure) => {
                container["readinessProbe"]["httpGet"]["port"] = json!(8081);
            }
            _ => {}
        }
        let template_spec = json!({
            "containers": [container],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "securityContext": {"runAsNonRoot": true, "runAsUser": 10001}, "schedulerName": "default-scheduler"
        });
        let mut old_spec = template_spec.clone();
        old_spec["containers"][0]["image"] =
            json!(format!("registry.example.com/{team}/{app}:{old_version}"));
        if let Health::Planted(Class::ImagePullBackOff) = health {
            // The current revision names a tag that was never pushed; the old one still runs.
            old_spec["containers"][0]["image"] = json!(image.clone());
        }
        let image_pull = matches!(health, Health::Planted(Class::ImagePullBackOff));
        let (current_spec, current_image) = if image_pull {
            let mut spec = template_spec.clone();
            let missing = format!("registry.example.com/{team}/{app}:{version}-rc1");
            spec["containers"][0]["image"] = json!(missing.clone());
            (spec, missing)
        } else {
            (template_spec.clone(), image.clone())
        };
        let ready = if health == Health::Healthy {
            replicas
        } else {
            0
        };
        let refused = health == Health::Planted(Class::FailedCreate);
        let (revision, hash) = (2 + self.rng.below(8), self.rng.suffix(10));
        let old_hash = self.rng.suffix(9);
        let old_replicas = if image_pull { 1 } else { 0 };
        let mut rs_labels = labels.clone();
        rs_labels["pod-template-hash"] = json!(hash);
        let rs_uid = self.rng.uid();
        let owner = |kind: &str, name: &str, uid: &str| json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}]);
        let mut template =
            json!({"metadata": {"labels": labels.clone()}, "spec": current_spec.clone()});
        ns.deployments.push(json!({
            "metadata": {"name": app, "namespace": team, "uid": dep_uid, "resourceVersion": self.rv(), "generation": revision,
                         "creationTimestamp": time(created), "labels": labels.clone(), "annotations": {"deployment.kubernetes.io/revision": revision.to_string()}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels.clone()}, "template": template.clone(),
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600},
            "status": {"observedGeneration": revision, "replicas": replicas + old_replicas, "updatedReplicas": replicas, "readyReplicas": ready + old_replicas, "availableReplicas": ready + old_replicas,
                       "conditions": [
                           {"type": "Available", "status": if ready + old_replicas > 0 { "True" } else { "False" }, "lastUpdateTime": time(rolled), "lastTransitionTime": time(rolled),
                            "reason": if ready + old_replicas > 0 { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
                            "message": if ready + old_replicas > 0 { "Deployment has minimum availability." } else { "Deployment does not have minimum availability." }},
                           {"type": "Progressing", "status": "True", "lastUpdateTime": time(rolled), "lastTransitionTime": time(created), "reason": "NewReplicaSetAvailable",
                            "message": format!("ReplicaSet \"{app}-{hash}\" has successfully progressed.")}
                       ]}
        }));
        template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
        let rs_name = format!("{app}-{hash}");
        ns.replicasets.push(json!({
            "metadata": {"name": rs_name, "namespace": team, "uid": rs_uid, "resourceVersion": self.rv(), "generation": 1, "creationTimestamp": time(rolled),
                         "labels": rs_labels.clone(),
                         "annotations": {"deployment.kubernetes.io/desired-replicas": replicas.to_string(), "deployment.kubernetes.io/max-replicas": (replicas + 1).to_string(), "deployment.kubernetes.io/revision": revision.to_string()},
                         "ownerReferences": owner("Deployment", app, &dep_uid)},
            "spec": {"replicas": replicas, "selector": {"matchLabels": rs_labels.clone()}, "template": template},
            "status": {"replicas": replicas, "fullyLabeledReplicas": replicas, "readyReplicas": ready, "availableReplicas": ready, "observedGeneration": 1}
        }));
        if refused {
            let refusal = format!(
                "pods \"{rs_name}-{}\" is forbidden: exceeded quota: {team}-quota, requested: limits.memory={memory}, used: limits.memory=16Gi, limited: limits.memory=16Gi",
                self.rng.suffix(5)
            );
            let rs = ns.replicasets.last_mut().unwrap();
            rs["status"] = json!({"replicas": 0, "observedGeneration": 1, "conditions": [
                {"type": "ReplicaFailure", "status": "True", "lastTransitionTime": time(NOW - 1500), "reason": "FailedCreate", "message": refusal}]});
            ns.events.push(json!({
                "metadata": {"name": format!("{rs_name}.{:x}", self.rng.below(u64::MAX >> 8)), "namespace": team, "uid": self.rng.uid(), "resourceVersion": self.rv(), "creationTimestamp": time(NOW - 1500)},
                "involvedObject": {"kind": "ReplicaSet", "namespace": team, "name": rs_name, "uid": rs_uid, "apiVersion": "apps/v1", "resourceVersion": "1"},
                "reason": "FailedCreate", "message": format!("Error creating: {refusal}"), "source": {"component": "replicaset-controller"},
                "firstTimestamp": time(NOW - 1500), "lastTimestamp": time(NOW - 40), "count": 17, "type": "Warning", "eventTime": null,
                "reportingComponent": "replicaset-controller", "reportingInstance": ""
            }));
            planted.push(Planted {
                namespace: team.clone(),
                pod: rs_name.clone(),
                class: Class::FailedCreate,
            });
        }
        let mut old_labels = labels.clone();
        old_labels["pod-template-hash"] = json!(old_hash);
        let old_uid = self.rng.uid();
        ns.replicasets.push(json!({
            "metadata": {"name": format!("{app}-{old_hash}"), "namespace": team, "uid": old_uid, "resourceVersion": self.rv(), "generation": 2, "creationTimestamp": time(rolled - 86_400 * 9),
                         "labels": old_labels.clone(),
                         "annotations": {"deployment.kubernetes.io/desired-replicas": replicas.to_string(), "deployment.kubernetes.io/max-replicas": (replicas + 1).to_string(), "deployment.kubernetes.io/revision": (revision - 1).to_string()},
                         "ownerReferences": owner("Deployment", app, &dep_uid)},
            "spec": {"replicas": old_replicas, "selector": {"matchLabels": old_labels.clone()}, "template": {"metadata": {"labels": old_labels.clone()}, "spec": old_spec}},
            "status": if image_pull { json!({"replicas": 1, "fullyLabeledReplicas": 1, "readyReplicas": 1, "availableReplicas": 1, "observedGeneration": 2}) } else { json!({"replicas": 0, "observedGeneration": 2}) }
        }));
        ns.services.push(json!({
            "metadata": {"name": app, "namespace": team, "uid": self.rng.uid(), "resourceVersion": self.rv(), "creationTimestamp": time(created), "labels": labels.clone()},
            "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http"}], "selector": labels.clone(),
                     "clusterIP": format!("10.96.{}.{}", self.rng.below(255), 2 + self.rng.below(250)), "clusterIPs": [], "type": "ClusterIP",
                     "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"},
            "status": {"loadBalancer": {}}
        }));
        if let Some(ip) = ns.services.last().unwrap()["spec"]["clusterIP"]
            .as_str()
            .map(str::to_string)
        {
            ns.services.last_mut().unwrap()["spec"]["clusterIPs"] = json!([ip]);
        }
        let old_rs = (
            format!("{app}-{old_hash}"),
            old_uid,
            old_labels,
            image.clone(),
        );
        if image_pull {
            self.pod(
                ns,
                app,
                &old_rs.0,
                &old_rs.1,
                &old_rs.2,
                &old_spec_of(&ns.replicasets),
                &old_rs.3,
                Health::Healthy,
                rolled - 86_400 * 9,
                planted,
            );
        }
        for _ in 0..if refused { 0 } else { replicas } {
            let started = if health == Health::Healthy && self.rng.below(50) == 0 {
                NOW - 60 - self.rng.below(3000) as i64 // a recent restart or rollout: its events are still there
            } else if health == Health::Healthy {
                rolled + self.rng.below(120) as i64
            } else {
                NOW - 1800 - self.rng.below(1200) as i64
            };
            self.pod(
                ns,
                app,
                &rs_name,
                &rs_uid,
                &rs_labels,
                &current_spec,
                &current_image,
                health,
                started,
                planted,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn pod(
        &mut self,
        ns: &mut Namespace,
        app: &str,
        rs: &str,
        rs_uid: &str,
        labels: &Value,
        spec: &Value,
        image: &str,
        health: Health,
        created: i64,
        planted: &mut Vec<Planted>,
    ) {
        let team = ns.name.clone();
        let name = format!("{rs}-{}", self.rng.suffix(5));
        let uid = self.rng.uid();
        let node_index = self.rng.below(self.nodes.len() as u64) as usize;
        let node = self.nodes[node_index].clone();
        let sa_volume = format!("kube-api-access-{}", self.rng.suffix(5));
        let mut pod_spec = spec.clone();
        pod_spec["volumes"] = json!([{"name": sa_volume, "projected": {"sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
        ], "defaultMode": 420}}]);
        pod_spec["containers"][0]["volumeMounts"] = json!([{"name": sa_volume, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]);
        pod_spec["serviceAccountName"] = json!("default");
        pod_spec["serviceAccount"] = json!("default");
        pod_spec["tolerations"] = json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ]);
        pod_spec["priority"] = json!(0);
        pod_spec["enableServiceLinks"] = json!(true);
        pod_spec["preemptionPolicy"] = json!("PreemptLowerPriority");
        let pending = health == Health::Planted(Class::Pending);
        if !pending {
            pod_spec["nodeName"] = json!(node);
        }
        let container = app.to_string();
        let resources = pod_spec["containers"][0]["resources"].clone();
        let ip = format!(
            "10.{}.{}.{}",
            64 + node_index / 256,
            node_index % 256,
            2 + self.rng.below(250)
        );
        let host_ip = format!("10.0.{}.{}", node_index / 250, 4 + node_index % 250);
        let cid = format!("containerd://{}", self.rng.hex(64));
        let image_id = format!(
            "{}@sha256:{}",
            image.rsplit_once(':').map(|(r, _)| r).unwrap_or(image),
            self.rng.hex(64)
        );
        let cond = |typ: &str, ok: bool, at: i64| json!({"type": typ, "observedGeneration": 1, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": time(at)});
        let not_ready = |mut c: Value| {
            c["reason"] = json!("ContainersNotReady");
            c["message"] = json!(format!("containers with unready status: [{container}]"));
            c
        };
        let running_status = |ready: bool, restarts: u64, last: Value, started_at: i64| {
            json!({
                "name": container, "state": {"running": {"startedAt": time(started_at)}}, "lastState": last, "ready": ready, "restartCount": restarts,
                "image": image, "imageID": image_id, "containerID": cid, "started": true, "resources": resources,
                "volumeMounts": [{"name": sa_volume, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true, "recursiveReadOnly": "Disabled"}],
                "user": {"linux": {"uid": 10001, "gid": 10001, "supplementalGroups": [10001]}}
            })
        };
        let kubelet_event = |g: &mut Gen,
                             reason: &str,
                             message: String,
                             kind: &str,
                             count: u64,
                             first: i64,
                             last: i64| {
            json!({
                "metadata": {"name": format!("{name}.{:x}", (first as u64) * 1_000_000_000 + g.rng.below(999_999_999)), "namespace": team, "uid": g.rng.uid(), "resourceVersion": g.rv(), "creationTimestamp": time(first)},
                "involvedObject": {"kind": "Pod", "namespace": team, "name": name, "uid": uid, "apiVersion": "v1", "resourceVersion": "1", "fieldPath": format!("spec.containers{{{container}}}")},
                "reason": reason, "message": message, "source": {"component": "kubelet", "host": node},
                "firstTimestamp": time(first), "lastTimestamp": time(last), "count": count, "type": kind, "eventTime": null,
                "reportingComponent": "kubelet", "reportingInstance": node
            })
        };
        let scheduler_event = |g: &mut Gen,
                               reason: &str,
                               message: String,
                               kind: &str,
                               count: u64,
                               first: i64,
                               last: i64| {
            let mut e = json!({
                "metadata": {"name": format!("{name}.{:x}", (first as u64) * 1_000_000_000 + g.rng.below(999_999_999)), "namespace": team, "uid": g.rng.uid(), "resourceVersion": g.rv(), "creationTimestamp": time(first)},
                "involvedObject": {"kind": "Pod", "namespace": team, "name": name, "uid": uid, "apiVersion": "v1", "resourceVersion": "1"},
                "reason": reason, "message": message, "source": {}, "firstTimestamp": null, "lastTimestamp": null, "type": kind,
                "eventTime": micro_time(first, g.rng.below(1_000_000)), "action": if reason == "Scheduled" { "Binding" } else { "Scheduling" },
                "reportingComponent": "default-scheduler", "reportingInstance": "default-scheduler-control-plane-1"
            });
            if count > 1 {
                e["series"] = json!({"count": count, "lastObservedTime": micro_time(last, g.rng.below(1_000_000))});
            }
            e
        };
        let recent = NOW - created < 3600;
        let mut events = Vec::new();
        if recent && !pending {
            events.push(scheduler_event(
                self,
                "Scheduled",
                format!("Successfully assigned {team}/{name} to {node}"),
                "Normal",
                1,
                created,
                created,
            ));
            events.push(kubelet_event(
                self,
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
                "Normal",
                1,
                created + 1,
                created + 1,
            ));
        }
        let log_start = created + 3;
        let mut log = format!(
            "{{\"level\":\"info\",\"ts\":\"{}\",\"msg\":\"starting {app}\",\"image\":\"{image}\"}}\n{{\"level\":\"info\",\"ts\":\"{}\",\"msg\":\"listening\",\"addr\":\":8080\"}}\n",
            time(log_start),
            time(log_start + 1)
        );
        let (phase, conditions, statuses) = match health {
            Health::Healthy => {
                if recent {
                    events.push(kubelet_event(
                        self,
                        "Created",
                        format!("Created container: {container}"),
                        "Normal",
                        1,
                        created + 1,
                        created + 1,
                    ));
                    events.push(kubelet_event(
                        self,
                        "Started",
                        format!("Started container {container}"),
                        "Normal",
                        1,
                        created + 1,
                        created + 1,
                    ));
                }
                log.push_str(&format!("{{\"level\":\"info\",\"ts\":\"{}\",\"msg\":\"request served\",\"path\":\"/v1/{app}\",\"status\":200,\"ms\":{}}}\n", time(NOW - 30), 3 + self.rng.below(40)));
                (
                    "Running",
                    vec![
                        cond("PodReadyToStartContainers", true, created + 2),
                        cond("Initialized", true, created),
                        cond("Ready", true, created + 8),
                        cond("ContainersReady", true, created + 8),
                        cond("PodScheduled", true, created),
                    ],
                    vec![running_status(true, 0, json!({}), created + 2)],
                )
            }
            Health::Planted(class) => {
                planted.push(Planted {
                    namespace: team.clone(),
                    pod: name.clone(),
                    class,
                });
                match class {
                    Class::CrashLoopBackOff | Class::OomKilled => {
                        let oom = class == Class::OomKilled;
                        let restarts = 7;
                        let last_start = NOW - 140;
                        let (exit, reason, end) = if oom {
                            (137, "OOMKilled", last_start + 25)
                        } else {
                            (1, "Error", last_start + 1)
                        };
                        if oom {
                            log.push_str(&format!("{{\"level\":\"info\",\"ts\":\"{}\",\"msg\":\"loading snapshot into memory\",\"entries\":4200000}}\n", time(last_start + 4)));
                        } else {
                            log.push_str(&format!("{{\"level\":\"fatal\",\"ts\":\"{}\",\"msg\":\"cannot start\",\"error\":\"dial tcp: lookup {app}-db on 10.96.0.10:53: no such host\"}}\n", time(last_start + 1)));
                        }
                        events.push(kubelet_event(self, "BackOff", format!("Back-off restarting failed container {container} in pod {name}_{team}({uid})"), "Warning", 31, created + 20, NOW - 5));
                        events.push(kubelet_event(
                            self,
                            "Pulled",
                            format!("Container image \"{image}\" already present on machine"),
                            "Normal",
                            restarts,
                            created + 15,
                            last_start,
                        ));
                        let status = json!({
                            "name": container, "state": {"waiting": {"reason": "CrashLoopBackOff", "message": format!("back-off 5m0s restarting failed container={container} pod={name}_{team}({uid})")}},
                            "lastState": {"terminated": {"exitCode": exit, "reason": reason, "startedAt": time(last_start), "finishedAt": time(end), "containerID": cid}},
                            "ready": false, "restartCount": restarts, "image": image, "imageID": image_id, "containerID": cid, "started": false, "resources": resources,
                            "volumeMounts": [{"name": sa_volume, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true, "recursiveReadOnly": "Disabled"}],
                            "user": {"linux": {"uid": 10001, "gid": 10001, "supplementalGroups": [10001]}}
                        });
                        (
                            "Running",
                            vec![
                                cond("PodReadyToStartContainers", true, created + 2),
                                cond("Initialized", true, created),
                                not_ready(cond("Ready", false, end)),
                                not_ready(cond("ContainersReady", false, end)),
                                cond("PodScheduled", true, created),
                            ],
                            vec![status],
                        )
                    }
                    Class::ImagePullBackOff | Class::CreateContainerConfigError => {
                        let (reason, message) = if class == Class::ImagePullBackOff {
                            let error = format!(
                                "rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": {image}: not found"
                            );
                            events.push(kubelet_event(
                                self,
                                "Failed",
                                format!("Failed to pull image \"{image}\": {error}"),
                                "Warning",
                                9,
                                created + 2,
                                NOW - 200,
                            ));
                            events.push(kubelet_event(
                                self,
                                "BackOff",
                                format!("Back-off pulling image \"{image}\""),
                                "Normal",
                                84,
                                created + 3,
                                NOW - 4,
                            ));
                            (
                                "ImagePullBackOff",
                                format!(
                                    "Back-off pulling image \"{image}\": ErrImagePull: {error}"
                                ),
                            )
                        } else {
                            let message = format!(
                                "couldn't find key FEATURE_FLAGS_URL in ConfigMap {team}/{app}-config"
                            );
                            events.push(kubelet_event(
                                self,
                                "Failed",
                                format!("Error: {message}"),
                                "Warning",
                                56,
                                created + 3,
                                NOW - 9,
                            ));
                            ("CreateContainerConfigError", message)
                        };
                        log = format!(
                            "Request log error: the server rejected our request for an unknown reason (get pods {name})\n"
                        );
                        let status = json!({"name": container, "state": {"waiting": {"reason": reason, "message": message}}, "lastState": {}, "ready": false, "restartCount": 0, "image": image, "imageID": "", "started": false});
                        (
                            "Pending",
                            vec![
                                cond("PodReadyToStartContainers", true, created + 2),
                                cond("Initialized", true, created),
                                not_ready(cond("Ready", false, created)),
                                not_ready(cond("ContainersReady", false, created)),
                                cond("PodScheduled", true, created),
                            ],
                            vec![status],
                        )
                    }
                    Class::FailedCreate => unreachable!("a refused ReplicaSet has no Pods"),
                    Class::ProbeFailure => {
                        events.push(kubelet_event(self, "Unhealthy", format!("Readiness probe failed: Get \"http://{ip}:8081/readyz\": dial tcp {ip}:8081: connect: connection refused"), "Warning", 320, created + 9, NOW - 3));
                        (
                            "Running",
                            vec![
                                cond("PodReadyToStartContainers", true, created + 2),
                                cond("Initialized", true, created),
                                not_ready(cond("Ready", false, created)),
                                not_ready(cond("ContainersReady", false, created)),
                                cond("PodScheduled", true, created),
                            ],
                            vec![running_status(false, 0, json!({}), created + 2)],
                        )
                    }
                    Class::Evicted => {
                        let message = eviction_message(&container, &resources);
                        events.push(kubelet_event(
                            self,
                            "Evicted",
                            message.trim().to_string(),
                            "Warning",
                            1,
                            NOW - 40,
                            NOW - 40,
                        ));
                        events.push(kubelet_event(
                            self,
                            "Killing",
                            format!("Stopping container {container}"),
                            "Normal",
                            1,
                            NOW - 40,
                            NOW - 40,
                        ));
                        let mut disruption = cond("DisruptionTarget", true, NOW - 40);
                        disruption["reason"] = json!("TerminationByKubelet");
                        disruption["message"] = json!(message);
                        let failed = |mut c: Value| {
                            c["reason"] = json!("PodFailed");
                            c
                        };
                        let status = json!({
                            "name": container, "state": {"terminated": {"exitCode": 137, "reason": "Error", "startedAt": time(created + 2), "finishedAt": time(NOW - 40), "containerID": cid}},
                            "lastState": {}, "ready": false, "restartCount": 0, "image": image, "imageID": image_id, "containerID": cid, "started": false, "resources": resources
                        });
                        (
                            "Failed",
                            vec![
                                disruption,
                                cond("PodReadyToStartContainers", false, NOW - 40),
                                cond("Initialized", true, created),
                                failed(cond("Ready", false, NOW - 40)),
                                failed(cond("ContainersReady", false, NOW - 40)),
                                cond("PodScheduled", true, created),
                            ],
                            vec![status],
                        )
                    }
                    Class::Pending => {
                        let message = format!(
                            "0/{n} nodes are available: {n} Insufficient memory. preemption: 0/{n} nodes are available: {n} No preemption victims found for incoming pod.",
                            n = self.nodes.len()
                        );
                        events.push(scheduler_event(
                            self,
                            "FailedScheduling",
                            message.clone(),
                            "Warning",
                            12,
                            created,
                            NOW - 60,
                        ));
                        log = String::new();
                        let mut c = cond("PodScheduled", false, created);
                        c["reason"] = json!("Unschedulable");
                        c["message"] = json!(message);
                        ("Pending", vec![c], vec![])
                    }
                }
            }
        };
        let mut status = json!({"observedGeneration": 1, "phase": phase, "conditions": conditions, "qosClass": "Burstable"});
        if !pending {
            let status = status.as_object_mut().unwrap();
            status.insert("hostIP".into(), json!(host_ip));
            status.insert("hostIPs".into(), json!([{"ip": host_ip}]));
            status.insert("podIP".into(), json!(ip));
            status.insert("podIPs".into(), json!([{"ip": ip}]));
            status.insert("startTime".into(), json!(time(created)));
            status.insert("containerStatuses".into(), json!(statuses));
        }
        if pending {
            status.as_object_mut().unwrap().remove("observedGeneration");
        }
        if health == Health::Planted(Class::Evicted) {
            status["reason"] = json!("Evicted");
            status["message"] = json!(eviction_message(&container, &resources));
        }
        ns.pods.push(json!({
            "metadata": {"name": name, "generateName": format!("{rs}-"), "namespace": team, "uid": uid, "resourceVersion": self.rv(), "generation": 1,
                         "creationTimestamp": time(created), "labels": labels,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": rs_uid, "controller": true, "blockOwnerDeletion": true}]},
            "spec": pod_spec,
            "status": status
        }));
        ns.events.extend(events);
        ns.logs.push((name, format!("==== START logs for container {container} of pod {team}/{{pod}} ====\n{log}==== END logs for container {container} of pod {team}/{{pod}} ====\n")));
    }
}

/// The kubelet's message for a Pod it evicted from a node low on memory, blaming `container`.
fn eviction_message(container: &str, resources: &Value) -> String {
    let request = resources["requests"]["memory"].as_str().unwrap_or("0");
    format!(
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 83212Ki. Container {container} was using 1474560Ki, request is {request}, has larger consumption of memory. "
    )
}

fn old_spec_of(replicasets: &[Value]) -> Value {
    replicasets
        .last()
        .map(|rs| rs["spec"]["template"]["spec"].clone())
        .unwrap_or_default()
}

/// Writes a dump of `spec.pods` Pods in `spec.namespaces` namespaces under `dir` (created).
pub fn write(dir: &Path, spec: &Spec) -> std::io::Result<Written> {
    std::fs::create_dir_all(dir)?;
    let node_count = spec.pods.div_ceil(40).max(3);
    let mut generator = Gen {
        rng: Rng(spec.seed),
        rv: 90_000_000,
        nodes: (0..node_count).map(|i| format!("node-{i:04}")).collect(),
    };
    let mut bytes = 0;
    let nodes: Vec<Value> = (0..node_count).map(|i| generator.node(i)).collect();
    bytes += write_json(&dir.join("nodes.json"), &list("NodeList", "v1", nodes))?;
    let namespaces = spec.namespaces.max(1);
    let mut planted = Vec::new();
    let (mut deployments, mut events) = (0, 0);
    let failures = spec.failures.min(spec.pods);
    let healthy_pods = spec.pods - failures;
    for n in 0..namespaces {
        let name = if n < TEAMS.len() {
            TEAMS[n].to_string()
        } else {
            format!("{}-{}", TEAMS[n % TEAMS.len()], n / TEAMS.len())
        };
        let mut ns = Namespace {
            name: name.clone(),
            ..Default::default()
        };
        let mut left = healthy_pods / namespaces + usize::from(n < healthy_pods % namespaces);
        let mut index = 0;
        while left > 0 {
            let replicas = (1 + generator.rng.below(4) as usize).min(left);
            let app = format!("{}-{}", APPS[index % APPS.len()], index / APPS.len() + 1);
            let app = app.trim_end_matches("-1").to_string();
            generator.deployment(&mut ns, &app, replicas, Health::Healthy, &mut planted);
            left -= replicas;
            index += 1;
        }
        for f in (0..failures).filter(|f| f % namespaces == n) {
            let class = Class::ALL[f % Class::ALL.len()];
            let app = format!("{}-{}", APPS[(index + f) % APPS.len()], 900 + f);
            generator.deployment(&mut ns, &app, 1, Health::Planted(class), &mut planted);
        }
        deployments += ns.deployments.len();
        events += ns.events.len();
        bytes += write_namespace(&dir.join(&name), ns)?;
    }
    Ok(Written {
        pods: spec.pods
            + planted
                .iter()
                .filter(|p| p.class == Class::ImagePullBackOff)
                .count()
            - planted
                .iter()
                .filter(|p| p.class == Class::FailedCreate)
                .count(),
        nodes: node_count,
        deployments,
        events,
        bytes,
        planted,
    })
}

fn by_name(mut items: Vec<Value>) -> Vec<Value> {
    items.sort_by(|a, b| {
        a["metadata"]["name"]
            .as_str()
            .cmp(&b["metadata"]["name"].as_str())
    });
    items
}

fn write_namespace(dir: &Path, ns: Namespace) -> std::io::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let mut bytes = 0;
    bytes += write_json(
        &dir.join("events.json"),
        &list("EventList", "v1", by_name(ns.events)),
    )?;
    bytes += write_json(
        &dir.join("replication-controllers.json"),
        &list("ReplicationControllerList", "v1", vec![]),
    )?;
    bytes += write_json(
        &dir.join("services.json"),
        &list("ServiceList", "v1", by_name(ns.services)),
    )?;
    bytes += write_json(
        &dir.join("daemonsets.json"),
        &list("DaemonSetList", "apps/v1", vec![]),
    )?;
    bytes += write_json(
        &dir.join("deployments.json"),
        &list("DeploymentList", "apps/v1", by_name(ns.deployments)),
    )?;
    bytes += write_json(
        &dir.join("replicasets.json"),
        &list("ReplicaSetList", "apps/v1", by_name(ns.replicasets)),
    )?;
    bytes += write_json(
        &dir.join("pods.json"),
        &list("PodList", "v1", by_name(ns.pods)),
    )?;
    if !ns.configmaps.is_empty() {
        bytes += write_json(
            &dir.join("configmaps.json"),
            &json!({"apiVersion": "v1", "items": ns.configmaps, "kind": "List", "metadata": {"resourceVersion": ""}}),
        )?;
    }
    for (pod, frames) in ns.logs {
        let pod_dir: PathBuf = dir.join(&pod);
        std::fs::create_dir_all(&pod_dir)?;
        let text = frames.replace("{pod}", &pod);
        std::fs::write(pod_dir.join("logs.txt"), &text)?;
        bytes += text.len() as u64;
    }
    Ok(bytes)
}

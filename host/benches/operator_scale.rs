//! The operator at scale: memory of `sre-operator run` while it watches 1,000 and 10,000 Pods,
//! and the time from a Pod turning CrashLoopBackOff to its DiagnosticReport existing (issues 6
//! and 11). `cargo bench -p sre-operator --bench operator_scale [-- mock|cluster]`.
//!
//! Two modes, both by default (`SRE_BENCH_MODE=mock|cluster|both`, or `mock` / `cluster` as an
//! argument after `--`):
//!
//! - **mock**: a fake API server in this process on loopback (plain HTTP, hyper) serves what
//!   `sre-operator run --namespace bench` asks for: paged LISTs and WATCHes of Pods (shaped the
//!   way the API server returns kubelet-written Pods of a Deployment, with managedFields),
//!   DebugPolicies and DiagnosticReports, report create/patch/get, events, logs, ReplicaSets,
//!   Deployments and the namespace; empty lists or 404s for the rest (each unexpected path is
//!   printed once). Once the operator has listed the Pods and opened its Pod watch, and its RSS
//!   is stable, RSS is sampled; then a MODIFIED watch event turns one Pod CrashLoopBackOff
//!   (restartCount 3, last state terminated with exit code 1: the built-in policy-filter
//!   investigates from the third restart) and the time until the report's POST arrives is
//!   measured, once per workload for `SRE_BENCH_SAMPLES` workloads (default 5).
//! - **cluster**: a real loopback control plane (`sre_e2e`: etcd, kube-apiserver, scheduler,
//!   controller-manager with a raised `--kube-api-qps`, kwok nodes of 600 Pods). Four
//!   Deployments in namespace `bench` are scaled to N Pods in all; once every Pod is Ready the
//!   operator starts, and RSS is sampled after its Pod watch is open (the API server's
//!   `apiserver_longrunning_requests` for a namespaced Pod WATCH) and its RSS is stable. Then
//!   one Pod per Deployment (up to `SRE_BENCH_SAMPLES`, default 3) is labelled with the kwok
//!   crash-loop fault (`sre-operator.dev/fault=crashloop`, 1 s back-off), and the bench watches
//!   the Pod and the reports itself: the time is from the Pod being seen in CrashLoopBackOff
//!   with restartCount >= 3 to the report being seen.
//!
//! The RSS/1,000 Pods column is the slope from the previous size: from the baseline it includes
//! the fixed cost of the initial LIST (a page of full Pods is parsed before it is pruned), from
//! 1,000 to 10,000 it is what each stored Pod costs. `SRE_BENCH_MOCK_PAGE=N` makes the mock return
//! at most N Pods per LIST page (what a smaller page size in the operator would do).
//! `SRE_BENCH_BIN=PATH` runs another build of the binary (to compare before and after a change).
//! Sizes: `SRE_BENCH_PODS` (default `1000,10000`; a baseline with no Pods is measured first).
//! RSS is VmRSS from /proc/PID/status; VmHWM is the operator's high-water mark (it includes
//! start-up: loading the built-in plugins). Targets: RSS under 50 MiB (mock) and 40 MiB
//! (cluster) at 10,000 Pods, and under 1 s to the report; a miss prints `MISSED` and the bench
//! exits non-zero after printing every figure.
//!
//! A plain harness, like `pipeline`: these are a few medians, not statistics.

#[path = "common/mod.rs"]
mod common;

use common::{machine, mib};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::mpsc;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

const NS: &str = "bench";
/// The label the bench's DebugPolicy selects.
const PART_OF: &str = "app.kubernetes.io/part-of";

// ---------------------------------------------------------------------------------------------
// The operator process and its memory

/// `sre-operator run` as a child process; killed on drop.
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    fn start(kubeconfig: &Path, log: PathBuf) -> Operator {
        let out = std::fs::File::create(&log).expect("operator log file");
        let child = Command::new(binary())
            .args([
                "--log",
                "warn,sre_operator=info",
                "run",
                "--namespace",
                NS,
                "--http-addr",
                "127.0.0.1:0",
            ])
            .env("KUBECONFIG", kubeconfig)
            .env("NO_COLOR", "1")
            .env_remove("SRE_OPERATOR_BRAIN")
            .env_remove("SRE_OPERATOR_NAMESPACES")
            .env_remove("SRE_OPERATOR_PLUGIN_DIR")
            .env_remove("SRE_OPERATOR_LEADER_ELECTION")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("the sre-operator binary runs");
        Operator { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("sre-operator exited ({status}):\n{}", self.tail());
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The operator binary: this build's, or `SRE_BENCH_BIN` (to compare two builds).
fn binary() -> PathBuf {
    std::env::var_os("SRE_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sre-operator")))
}

/// A field of /proc/PID/status, in KiB.
fn status_kib(pid: u32, name: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// VmRSS and VmHWM of a process, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"))
}

/// "anon X + file Y MiB": heap and stacks against mapped files (the binary's code).
fn rss_split(pid: u32) -> String {
    format!(
        "RSS = anon {:.1} + file {:.1} MiB",
        mib(status_kib(pid, "RssAnon:")),
        mib(status_kib(pid, "RssFile:") + status_kib(pid, "RssShmem:"))
    )
}

/// Waits until RSS has moved by at most 256 KiB over the last 3 s (at least 3 s, at most
/// `limit`), and returns (RSS, HWM).
async fn stable_memory(op: &mut Operator, limit: Duration) -> (u64, u64) {
    let started = Instant::now();
    let mut window: Vec<u64> = Vec::new();
    loop {
        op.check_alive();
        let (rss, hwm) = memory(op.pid());
        window.push(rss);
        if window.len() > 15 {
            window.remove(0);
        }
        let spread = window.iter().max().unwrap() - window.iter().min().unwrap();
        if window.len() == 15 && spread <= 256 {
            return (rss, hwm);
        }
        if started.elapsed() > limit {
            eprintln!(
                "operator-scale: RSS still moving after {limit:?} (last 3 s: {} KiB); sampling anyway",
                spread
            );
            return (rss, hwm);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One row of the table.
struct Row {
    mode: &'static str,
    pods: usize,
    rss_kib: u64,
    hwm_kib: u64,
    /// Times to the report, sorted.
    latencies: Vec<Duration>,
    note: String,
}

impl Row {
    fn median(&self) -> Option<Duration> {
        (!self.latencies.is_empty()).then(|| self.latencies[self.latencies.len() / 2])
    }
}

// ---------------------------------------------------------------------------------------------
// Objects as the API server returns them

/// Deterministic pseudo-random numbers (splitmix64).
fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The alphabet Kubernetes uses for generated name suffixes.
fn suffix(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = mix(seed);
    (0..len)
        .map(|i| {
            if i % 8 == 7 {
                x = mix(x);
            }
            let c = ALPHABET[(x % 27) as usize] as char;
            x /= 27;
            c
        })
        .collect()
}

fn uid(seed: u64) -> String {
    let (a, b) = (mix(seed ^ 0x5EED), mix(seed ^ 0xC0FFEE));
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

fn hex64(seed: u64) -> String {
    (0..4).map(|i| format!("{:016x}", mix(seed + i))).collect()
}

/// Pods per workload (Deployment) in mock mode.
const PODS_PER_WORKLOAD: usize = 50;
/// kwok-like nodes in mock mode.
const MOCK_NODES: usize = 20;
const T_CREATED: &str = "2026-11-25T08:00:00Z";
const T_STARTED: &str = "2026-11-25T08:00:03Z";

struct Workload {
    name: String,
    hash: String,
    deployment_uid: String,
    replicaset_uid: String,
}

fn workload(w: usize) -> Workload {
    Workload {
        name: format!("svc-{w:03}"),
        hash: suffix(w as u64 + 7_000_000, 10),
        deployment_uid: uid(w as u64 + 1_000_000),
        replicaset_uid: uid(w as u64 + 2_000_000),
    }
}

fn pod_name(i: usize) -> String {
    let w = workload(i / PODS_PER_WORKLOAD);
    format!("{}-{}-{}", w.name, w.hash, suffix(i as u64, 5))
}

fn labels(w: &Workload) -> Value {
    json!({
        "app": w.name,
        "app.kubernetes.io/name": w.name,
        PART_OF: NS,
        "tier": "backend",
        "pod-template-hash": w.hash,
    })
}

fn env() -> Value {
    json!([
        { "name": "LOG_LEVEL", "value": "info" },
        { "name": "REDIS_HOST", "value": "redis" },
        { "name": "REDIS_PORT", "value": "6379" },
        { "name": "POD_NAME", "valueFrom": { "fieldRef": { "apiVersion": "v1", "fieldPath": "metadata.name" } } },
        { "name": "POD_IP", "valueFrom": { "fieldRef": { "apiVersion": "v1", "fieldPath": "status.podIP" } } },
    ])
}

fn container(w: &Workload, token_volume: &str) -> Value {
    json!({
        "name": "app",
        "image": format!("registry.example.com/shop/{}:1.8.2", w.name),
        "args": ["--config=/etc/app/config.yaml", "--listen=:8080"],
        "ports": [{ "name": "http", "containerPort": 8080, "protocol": "TCP" }],
        "env": env(),
        "resources": {
            "limits": { "cpu": "500m", "memory": "256Mi" },
            "requests": { "cpu": "100m", "memory": "128Mi" },
        },
        "volumeMounts": [{
            "name": token_volume, "readOnly": true,
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
        }],
        "readinessProbe": {
            "httpGet": { "path": "/healthz", "port": 8080, "scheme": "HTTP" },
            "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3,
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    })
}

/// What kube-controller-manager (create) and the kubelet (status) own, as the API server
/// records it.
fn managed_fields(w: &Workload, pod_ip: &str, host_ip: &str) -> Value {
    let env_fields: serde_json::Map<String, Value> = [
        "LOG_LEVEL",
        "REDIS_HOST",
        "REDIS_PORT",
        "POD_NAME",
        "POD_IP",
    ]
    .iter()
    .map(|n| {
        let fields = if n.starts_with("POD_") {
            json!({ ".": {}, "f:name": {}, "f:valueFrom": { ".": {}, "f:fieldRef": {} } })
        } else {
            json!({ ".": {}, "f:name": {}, "f:value": {} })
        };
        (format!("k:{{\"name\":\"{n}\"}}"), fields)
    })
    .collect();
    let mut env_fields = env_fields;
    env_fields.insert(".".into(), json!({}));
    let env_fields = Value::Object(env_fields);
    let condition = json!({ ".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:observedGeneration": {}, "f:status": {}, "f:type": {} });
    json!([
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "apiVersion": "v1",
            "time": T_CREATED,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {
                    "f:generateName": {},
                    "f:labels": { ".": {}, "f:app": {}, "f:app.kubernetes.io/name": {}, "f:app.kubernetes.io/part-of": {}, "f:pod-template-hash": {}, "f:tier": {} },
                    "f:ownerReferences": { ".": {}, format!("k:{{\"uid\":\"{}\"}}", w.replicaset_uid): {} },
                },
                "f:spec": {
                    "f:containers": { "k:{\"name\":\"app\"}": {
                        ".": {}, "f:args": {}, "f:env": env_fields,
                        "f:image": {}, "f:imagePullPolicy": {}, "f:name": {},
                        "f:ports": { ".": {}, "k:{\"containerPort\":8080,\"protocol\":\"TCP\"}": { ".": {}, "f:containerPort": {}, "f:name": {}, "f:protocol": {} } },
                        "f:readinessProbe": { ".": {}, "f:failureThreshold": {}, "f:httpGet": { ".": {}, "f:path": {}, "f:port": {}, "f:scheme": {} }, "f:periodSeconds": {}, "f:successThreshold": {}, "f:timeoutSeconds": {} },
                        "f:resources": { ".": {}, "f:limits": { ".": {}, "f:cpu": {}, "f:memory": {} }, "f:requests": { ".": {}, "f:cpu": {}, "f:memory": {} } },
                        "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {},
                    } },
                    "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {},
                    "f:securityContext": {}, "f:terminationGracePeriodSeconds": {},
                },
            },
        },
        {
            "manager": "kubelet",
            "operation": "Update",
            "apiVersion": "v1",
            "time": T_STARTED,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:status": {
                    "f:conditions": {
                        "k:{\"type\":\"ContainersReady\"}": condition,
                        "k:{\"type\":\"Initialized\"}": condition,
                        "k:{\"type\":\"PodReadyToStartContainers\"}": condition,
                        "k:{\"type\":\"Ready\"}": condition,
                    },
                    "f:containerStatuses": {},
                    "f:hostIP": {},
                    "f:hostIPs": { ".": {}, format!("k:{{\"ip\":\"{host_ip}\"}}"): { ".": {}, "f:ip": {} } },
                    "f:observedGeneration": {},
                    "f:phase": {},
                    "f:podIP": {},
                    "f:podIPs": { ".": {}, format!("k:{{\"ip\":\"{pod_ip}\"}}"): { ".": {}, "f:ip": {} } },
                    "f:startTime": {},
                },
            },
            "subresource": "status",
        },
    ])
}

/// Pod `i` of the mock, healthy, or crash-looping after `restarts` restarts.
fn pod(i: usize, restarts: Option<i32>, resource_version: u64) -> Value {
    let w = workload(i / PODS_PER_WORKLOAD);
    let name = pod_name(i);
    let pod_uid = uid(i as u64);
    let node = i % MOCK_NODES;
    let host_ip = format!("10.0.{}.{}", node / 200, node % 200 + 10);
    let pod_ip = format!("10.244.{}.{}", i / 250, i % 250 + 2);
    let token_volume = format!("kube-api-access-{}", suffix(i as u64 + 9_000_000, 5));
    let container_id = format!(
        "containerd://{}",
        hex64(i as u64 * 16 + restarts.unwrap_or(0) as u64)
    );
    let image = format!("registry.example.com/shop/{}:1.8.2", w.name);
    let condition = |type_: &str, ok: bool| {
        let mut c = json!({
            "type": type_, "status": if ok { "True" } else { "False" }, "observedGeneration": 1,
            "lastProbeTime": null, "lastTransitionTime": T_STARTED,
        });
        if !ok {
            c["reason"] = "ContainersNotReady".into();
            c["message"] = "containers with unready status: [app]".into();
        }
        c
    };
    let ready = restarts.is_none();
    let mut container_status = json!({
        "name": "app",
        "state": { "running": { "startedAt": T_STARTED } },
        "lastState": {},
        "ready": true,
        "restartCount": 0,
        "image": image,
        "imageID": format!("registry.example.com/shop/{}@sha256:{}", w.name, hex64(i as u64 / 50 + 77)),
        "containerID": container_id,
        "started": true,
        "allocatedResources": { "cpu": "100m", "memory": "128Mi" },
        "resources": {
            "limits": { "cpu": "500m", "memory": "256Mi" },
            "requests": { "cpu": "100m", "memory": "128Mi" },
        },
        "volumeMounts": [{
            "name": token_volume, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            "readOnly": true, "recursiveReadOnly": "Disabled",
        }],
        "user": { "linux": { "uid": 0, "gid": 0, "supplementalGroups": [0] } },
    });
    if let Some(n) = restarts {
        container_status["state"] = json!({ "waiting": {
            "reason": "CrashLoopBackOff",
            "message": format!("back-off 40s restarting failed container=app pod={name}_{NS}({pod_uid})"),
        } });
        container_status["lastState"] = json!({ "terminated": {
            "exitCode": 1, "reason": "Error",
            "startedAt": "2026-11-25T09:41:05Z", "finishedAt": "2026-11-25T09:41:07Z",
            "containerID": container_id,
        } });
        container_status["ready"] = false.into();
        container_status["started"] = false.into();
        container_status["restartCount"] = n.into();
    }
    json!({
        "metadata": {
            "name": name,
            "generateName": format!("{}-{}-", w.name, w.hash),
            "namespace": NS,
            "uid": pod_uid,
            "resourceVersion": resource_version.to_string(),
            "generation": 1,
            "creationTimestamp": T_CREATED,
            "labels": labels(&w),
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "8080",
            },
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("{}-{}", w.name, w.hash), "uid": w.replicaset_uid,
                "controller": true, "blockOwnerDeletion": true,
            }],
            "managedFields": managed_fields(&w, &pod_ip, &host_ip),
        },
        "spec": {
            "volumes": [{
                "name": token_volume,
                "projected": {
                    "sources": [
                        { "serviceAccountToken": { "expirationSeconds": 3607, "path": "token" } },
                        { "configMap": { "name": "kube-root-ca.crt", "items": [{ "key": "ca.crt", "path": "ca.crt" }] } },
                        { "downwardAPI": { "items": [{ "path": "namespace", "fieldRef": { "apiVersion": "v1", "fieldPath": "metadata.namespace" } }] } },
                    ],
                    "defaultMode": 420,
                },
            }],
            "containers": [container(&w, &token_volume)],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "nodeName": format!("kwok-node-{node}"),
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "tolerations": [
                { "key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 },
                { "key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 },
            ],
            "priority": 0,
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {
            "observedGeneration": 1,
            "phase": "Running",
            "conditions": [
                condition("PodReadyToStartContainers", true),
                condition("Initialized", true),
                condition("Ready", ready),
                condition("ContainersReady", ready),
                condition("PodScheduled", true),
            ],
            "hostIP": host_ip,
            "hostIPs": [{ "ip": host_ip }],
            "podIP": pod_ip,
            "podIPs": [{ "ip": pod_ip }],
            "startTime": T_CREATED,
            "containerStatuses": [container_status],
            "qosClass": "Burstable",
        },
    })
}

fn with_kind(mut object: Value, api_version: &str, kind: &str) -> Value {
    if let Some(o) = object.as_object_mut() {
        o.insert("apiVersion".into(), api_version.into());
        o.insert("kind".into(), kind.into());
    }
    object
}

fn replicaset(w: &Workload) -> Value {
    let mut selector = labels(w);
    selector
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k == "app" || k == "pod-template-hash");
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{}-{}", w.name, w.hash), "namespace": NS, "uid": w.replicaset_uid,
            "resourceVersion": "100", "generation": 1, "creationTimestamp": T_CREATED,
            "labels": labels(w),
            "annotations": { "deployment.kubernetes.io/revision": "1", "deployment.kubernetes.io/desired-replicas": PODS_PER_WORKLOAD.to_string() },
            "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "Deployment", "name": w.name,
                                  "uid": w.deployment_uid, "controller": true, "blockOwnerDeletion": true }],
        },
        "spec": {
            "replicas": PODS_PER_WORKLOAD,
            "selector": { "matchLabels": selector },
            "template": { "metadata": { "labels": labels(w) }, "spec": { "containers": [container(w, "unused")] } },
        },
        "status": { "replicas": PODS_PER_WORKLOAD, "readyReplicas": PODS_PER_WORKLOAD, "availableReplicas": PODS_PER_WORKLOAD, "observedGeneration": 1 },
    })
}

fn deployment(w: &Workload) -> Value {
    let mut template_labels = labels(w);
    template_labels
        .as_object_mut()
        .unwrap()
        .remove("pod-template-hash");
    let mut c = container(w, "unused");
    c.as_object_mut().unwrap().remove("volumeMounts");
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": w.name, "namespace": NS, "uid": w.deployment_uid, "resourceVersion": "99",
            "generation": 1, "creationTimestamp": T_CREATED, "labels": template_labels,
            "annotations": { "deployment.kubernetes.io/revision": "1" },
        },
        "spec": {
            "replicas": PODS_PER_WORKLOAD,
            "selector": { "matchLabels": { "app": w.name } },
            "template": { "metadata": { "labels": template_labels }, "spec": {
                "containers": [c], "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler", "securityContext": {},
            } },
            "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": "25%", "maxSurge": "25%" } },
            "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
        },
        "status": { "observedGeneration": 1, "replicas": PODS_PER_WORKLOAD, "updatedReplicas": PODS_PER_WORKLOAD,
                    "readyReplicas": PODS_PER_WORKLOAD, "availableReplicas": PODS_PER_WORKLOAD },
    })
}

fn debug_policy() -> Value {
    json!({
        "apiVersion": "sre-operator.dev/v1alpha1", "kind": "DebugPolicy",
        "metadata": { "name": "bench", "uid": uid(42), "resourceVersion": "10", "generation": 1,
                      "creationTimestamp": T_CREATED },
        "spec": {
            "rules": [{ "namespaces": [NS], "selector": { "matchLabels": { PART_OF: NS } } }],
            "approval": "Manual",
            "cooldown": "10m",
        },
    })
}

fn backoff_event(i: usize, restarts: i32) -> Value {
    let name = pod_name(i);
    let node = format!("kwok-node-{}", i % MOCK_NODES);
    json!({
        "metadata": { "name": format!("{name}.{:x}", mix(i as u64) >> 16), "namespace": NS,
                      "uid": uid(i as u64 + 5_000_000), "resourceVersion": "1" },
        "involvedObject": { "kind": "Pod", "namespace": NS, "name": name, "uid": uid(i as u64),
                            "apiVersion": "v1", "resourceVersion": "1", "fieldPath": "spec.containers{app}" },
        "reason": "BackOff",
        "message": format!("Back-off restarting failed container app in pod {name}_{NS}({})", uid(i as u64)),
        "source": { "component": "kubelet", "host": node },
        "firstTimestamp": "2026-11-25T09:40:30Z", "lastTimestamp": "2026-11-25T09:41:08Z",
        "count": restarts, "type": "Warning",
        "reportingComponent": "kubelet", "reportingInstance": node,
    })
}

const PREVIOUS_LOG: &str = "\
2026-11-25T09:41:06.118Z  INFO app: starting version=1.8.2 pid=1
2026-11-25T09:41:06.124Z  INFO cache: connecting to redis host=redis port=6379 pool_size=8
2026-11-25T09:41:07.512Z ERROR cache: dial tcp: connect to redis:6379 failed: Connection refused
Error: Connection refused to redis:6379
";

// ---------------------------------------------------------------------------------------------
// The mock API server

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A Kubernetes-shaped path: `/api/v1/namespaces/NS/pods/NAME/log` and the like.
#[derive(Debug, Default)]
struct Target {
    group: String,
    namespace: Option<String>,
    resource: String,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let owned = |s: Option<&&str>| s.map(|s| s.to_string());
    let mut t = Target {
        group: group.to_string(),
        ..Default::default()
    };
    match rest {
        ["namespaces", ns, resource, more @ ..] => {
            t.namespace = Some(ns.to_string());
            t.resource = resource.to_string();
            t.name = owned(more.first());
            t.sub = owned(more.get(1));
        }
        [resource, more @ ..] => {
            t.resource = resource.to_string();
            t.name = owned(more.first());
            t.sub = owned(more.get(1));
        }
        [] => return None,
    }
    Some(t)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// `a=b,c=d` selectors: equality terms only (what the agent's tools send).
fn selector_terms(selector: Option<&String>) -> Vec<(String, String)> {
    selector
        .map(|s| {
            s.split(',')
                .filter_map(|t| t.split_once('='))
                .map(|(k, v)| (k.trim_end_matches('=').to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(body.into()).boxed_unsync())
        .unwrap()
}

fn status_response(code: u16, reason: &str, message: String) -> Response<Body> {
    json_response(
        StatusCode::from_u16(code).unwrap(),
        json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code })
        .to_string(),
    )
}

fn not_found(t: &Target) -> Response<Body> {
    status_response(
        404,
        "NotFound",
        format!(
            "{} \"{}\" not found",
            t.resource,
            t.name.as_deref().unwrap_or("")
        ),
    )
}

struct Watcher {
    resource: String,
    tx: mpsc::UnboundedSender<Bytes>,
}

/// The report POSTs seen: name → when.
type Created = HashMap<String, Instant>;

struct Mock {
    resource_version: AtomicU64,
    /// Pod JSON (without kind), by index; and index by name.
    pods: Mutex<Vec<String>>,
    pod_index: HashMap<String, usize>,
    events: Mutex<HashMap<String, Vec<Value>>>,
    reports: Mutex<BTreeMap<String, Value>>,
    created: Mutex<Created>,
    watchers: Mutex<Vec<Watcher>>,
    pod_watch_opened: Mutex<Option<Instant>>,
    pod_list_pages: AtomicU64,
    page_cap: usize,
    unexpected: Mutex<BTreeSet<String>>,
}

impl Mock {
    fn new(n: usize) -> Mock {
        let pods: Vec<String> = (0..n)
            .map(|i| pod(i, None, 1000 + i as u64).to_string())
            .collect();
        let pod_index = (0..n).map(|i| (pod_name(i), i)).collect();
        Mock {
            resource_version: AtomicU64::new(1000 + n as u64),
            pods: Mutex::new(pods),
            pod_index,
            events: Mutex::new(HashMap::new()),
            reports: Mutex::new(BTreeMap::new()),
            created: Mutex::new(HashMap::new()),
            watchers: Mutex::new(Vec::new()),
            pod_watch_opened: Mutex::new(None),
            pod_list_pages: AtomicU64::new(0),
            page_cap: std::env::var("SRE_BENCH_MOCK_PAGE")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|p| *p > 0)
                .unwrap_or(usize::MAX),
            unexpected: Mutex::new(BTreeSet::new()),
        }
    }

    fn next_rv(&self) -> u64 {
        self.resource_version.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn bytes_served_per_pod(&self) -> usize {
        let pods = self.pods.lock().unwrap();
        pods.iter().map(String::len).sum::<usize>() / pods.len().max(1)
    }

    /// Sends a watch event to every open watch of `resource`.
    fn broadcast(&self, resource: &str, type_: &str, object: &Value) {
        let line = Bytes::from(format!("{}\n", json!({ "type": type_, "object": object })));
        self.watchers
            .lock()
            .unwrap()
            .retain(|w| w.resource != resource || w.tx.unbounded_send(line.clone()).is_ok());
    }

    fn bookmarks(&self) {
        let rv = self.resource_version.load(Ordering::SeqCst).to_string();
        let kinds = [
            ("pods", "v1", "Pod"),
            ("debugpolicies", "sre-operator.dev/v1alpha1", "DebugPolicy"),
            (
                "diagnosticreports",
                "sre-operator.dev/v1alpha1",
                "DiagnosticReport",
            ),
        ];
        self.watchers.lock().unwrap().retain(|w| {
            let Some((_, api_version, kind)) = kinds.iter().find(|(r, _, _)| *r == w.resource)
            else {
                return !w.tx.is_closed();
            };
            let line = json!({ "type": "BOOKMARK", "object": {
                "apiVersion": api_version, "kind": kind, "metadata": { "resourceVersion": rv } } });
            w.tx.unbounded_send(Bytes::from(format!("{line}\n")))
                .is_ok()
        });
    }

    /// Turns Pod `i` CrashLoopBackOff (restartCount `restarts`) and sends the MODIFIED event.
    fn crash(&self, i: usize, restarts: i32) -> Instant {
        self.events
            .lock()
            .unwrap()
            .entry(pod_name(i))
            .or_default()
            .push(backoff_event(i, restarts));
        let object = pod(i, Some(restarts), self.next_rv());
        self.pods.lock().unwrap()[i] = object.to_string();
        let object = with_kind(object, "v1", "Pod");
        let sent = Instant::now();
        self.broadcast("pods", "MODIFIED", &object);
        sent
    }

    fn watch(&self, resource: &str) -> Response<Body> {
        let (tx, rx) = mpsc::unbounded::<Bytes>();
        self.watchers.lock().unwrap().push(Watcher {
            resource: resource.to_string(),
            tx,
        });
        let stream = rx.map(|b| Ok::<_, Infallible>(Frame::data(b)));
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(StreamBody::new(stream).boxed_unsync())
            .unwrap()
    }

    fn list(&self, api_version: &str, kind: &str, items: Vec<Value>) -> Response<Body> {
        json_response(
            StatusCode::OK,
            json!({ "apiVersion": api_version, "kind": kind,
                    "metadata": { "resourceVersion": self.resource_version.load(Ordering::SeqCst).to_string() },
                    "items": items })
            .to_string(),
        )
    }

    fn list_pods(&self, query: &HashMap<String, String>) -> Response<Body> {
        let rv = self.resource_version.load(Ordering::SeqCst);
        let labels = selector_terms(query.get("labelSelector"));
        let fields = selector_terms(query.get("fieldSelector"));
        let pods = self.pods.lock().unwrap();
        if !labels.is_empty() || !fields.is_empty() {
            // The agent's tools; a filter over the parsed Pods, unpaged.
            let items: Vec<Value> = pods
                .iter()
                .filter_map(|p| serde_json::from_str::<Value>(p).ok())
                .filter(|p| {
                    labels
                        .iter()
                        .all(|(k, v)| p["metadata"]["labels"][k].as_str() == Some(v))
                        && fields.iter().all(|(k, v)| {
                            let pointer = format!("/{}", k.replace('.', "/"));
                            p.pointer(&pointer).and_then(Value::as_str) == Some(v)
                        })
                })
                .collect();
            drop(pods);
            return self.list("v1", "PodList", items);
        }
        self.pod_list_pages.fetch_add(1, Ordering::SeqCst);
        // An API server may return fewer items than asked for: SRE_BENCH_MOCK_PAGE caps a page
        // (what a smaller page_size in the operator would do).
        let limit: usize = query
            .get("limit")
            .and_then(|l| l.parse().ok())
            .filter(|l| *l > 0)
            .unwrap_or(usize::MAX)
            .min(self.page_cap);
        let start: usize = query
            .get("continue")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let end = start.saturating_add(limit).min(pods.len());
        let mut body =
            String::with_capacity(64 + pods[start..end].iter().map(|p| p.len() + 1).sum::<usize>());
        let mut metadata = json!({ "resourceVersion": rv.to_string() });
        if end < pods.len() {
            metadata["continue"] = end.to_string().into();
            metadata["remainingItemCount"] = (pods.len() - end).into();
        }
        body.push_str(&format!(
            "{{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":{metadata},\"items\":["
        ));
        for (n, p) in pods[start..end].iter().enumerate() {
            if n > 0 {
                body.push(',');
            }
            body.push_str(p);
        }
        body.push_str("]}");
        json_response(StatusCode::OK, body)
    }

    fn reports_in(&self, namespace: Option<&str>) -> Vec<Value> {
        self.reports
            .lock()
            .unwrap()
            .values()
            .filter(|r| namespace.is_none_or(|ns| r["metadata"]["namespace"] == ns))
            .cloned()
            .collect()
    }

    fn create_report(&self, namespace: &str, body: &[u8]) -> Response<Body> {
        let arrived = Instant::now();
        let Ok(mut report) = serde_json::from_slice::<Value>(body) else {
            return status_response(400, "BadRequest", "not JSON".into());
        };
        let name = report["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let mut reports = self.reports.lock().unwrap();
        if reports.contains_key(&name) {
            return status_response(
                409,
                "AlreadyExists",
                format!("diagnosticreports \"{name}\" already exists"),
            );
        }
        let rv = self.next_rv();
        let meta = &mut report["metadata"];
        meta["namespace"] = namespace.into();
        meta["uid"] = uid(rv ^ 0xABCDEF).into();
        meta["resourceVersion"] = rv.to_string().into();
        meta["generation"] = 1.into();
        meta["creationTimestamp"] = k8s_openapi::jiff::Timestamp::now().to_string().into();
        reports.insert(name.clone(), report.clone());
        drop(reports);
        self.created.lock().unwrap().entry(name).or_insert(arrived);
        self.broadcast("diagnosticreports", "ADDED", &report);
        json_response(StatusCode::CREATED, report.to_string())
    }

    fn patch_report(&self, t: &Target, content_type: &str, body: &[u8]) -> Response<Body> {
        let name = t.name.clone().unwrap_or_default();
        let mut reports = self.reports.lock().unwrap();
        let Some(report) = reports.get_mut(&name) else {
            return not_found(t);
        };
        let Ok(patch) = serde_json::from_slice::<Value>(body) else {
            return status_response(400, "BadRequest", "not JSON".into());
        };
        if content_type.contains("json-patch") {
            if let Ok(p) = serde_json::from_value::<json_patch::Patch>(patch)
                && let Err(e) = json_patch::patch(report, &p)
            {
                return status_response(422, "Invalid", e.to_string());
            }
        } else {
            json_patch::merge(report, &patch);
        }
        report["metadata"]["resourceVersion"] = self.next_rv().to_string().into();
        let report = report.clone();
        drop(reports);
        self.broadcast("diagnosticreports", "MODIFIED", &report);
        json_response(StatusCode::OK, report.to_string())
    }

    fn unexpected(&self, method: &Method, path: &str, query: &HashMap<String, String>) {
        let mut keys: Vec<&str> = query.keys().map(String::as_str).collect();
        keys.sort();
        let line = format!("{method} {path} {}", keys.join("&"));
        self.unexpected.lock().unwrap().insert(line);
    }

    fn route(
        &self,
        method: &Method,
        path: &str,
        query: &HashMap<String, String>,
        content_type: &str,
        body: &[u8],
    ) -> Response<Body> {
        if path == "/version" {
            return json_response(
                StatusCode::OK,
                json!({ "major": "1", "minor": "36", "gitVersion": "v1.36.3", "platform": "linux/amd64" })
                    .to_string(),
            );
        }
        let Some(t) = parse_path(path) else {
            self.unexpected(method, path, query);
            return status_response(404, "NotFound", format!("{path} not found"));
        };
        let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
        let get = *method == Method::GET;
        match (t.group.as_str(), t.resource.as_str()) {
            ("", "pods") if get && t.name.is_none() && watch => {
                self.pod_watch_opened
                    .lock()
                    .unwrap()
                    .get_or_insert_with(Instant::now);
                self.watch("pods")
            }
            ("", "pods") if get && t.name.is_none() => self.list_pods(query),
            ("", "pods") if get => {
                let name = t.name.as_deref().unwrap_or_default();
                let Some(&i) = self.pod_index.get(name) else {
                    return not_found(&t);
                };
                match t.sub.as_deref() {
                    None => json_response(
                        StatusCode::OK,
                        with_kind(
                            serde_json::from_str(&self.pods.lock().unwrap()[i]).unwrap(),
                            "v1",
                            "Pod",
                        )
                        .to_string(),
                    ),
                    Some("log") => Response::builder()
                        .status(StatusCode::OK)
                        .header("content-type", "text/plain")
                        .body(Full::new(Bytes::from(PREVIOUS_LOG)).boxed_unsync())
                        .unwrap(),
                    Some(_) => {
                        self.unexpected(method, path, query);
                        not_found(&t)
                    }
                }
            }
            ("sre-operator.dev", "debugpolicies") if *method == Method::PATCH => {
                // The operator's status for the policy: merged into a copy and echoed.
                let mut policy = debug_policy();
                if let Ok(patch) = serde_json::from_slice::<Value>(body) {
                    json_patch::merge(&mut policy, &patch);
                }
                json_response(StatusCode::OK, policy.to_string())
            }
            ("sre-operator.dev", "debugpolicies") if get && watch => self.watch("debugpolicies"),
            ("sre-operator.dev", "debugpolicies") if get && t.name.is_none() => self.list(
                "sre-operator.dev/v1alpha1",
                "DebugPolicyList",
                vec![debug_policy()],
            ),
            ("sre-operator.dev", "diagnosticreports") => {
                match (method.clone(), t.name.as_deref(), watch) {
                    (Method::GET, None, true) => self.watch("diagnosticreports"),
                    (Method::GET, None, false) => self.list(
                        "sre-operator.dev/v1alpha1",
                        "DiagnosticReportList",
                        self.reports_in(t.namespace.as_deref()),
                    ),
                    (Method::GET, Some(name), _) => {
                        match self.reports.lock().unwrap().get(name) {
                            Some(r) => json_response(StatusCode::OK, r.to_string()),
                            None => not_found(&t),
                        }
                    }
                    (Method::POST, None, _) => {
                        self.create_report(t.namespace.as_deref().unwrap_or(NS), body)
                    }
                    (Method::PATCH, Some(_), _) => self.patch_report(&t, content_type, body),
                    (Method::DELETE, Some(name), _) => {
                        match self.reports.lock().unwrap().remove(name) {
                            Some(r) => {
                                self.broadcast("diagnosticreports", "DELETED", &r);
                                json_response(StatusCode::OK, r.to_string())
                            }
                            None => not_found(&t),
                        }
                    }
                    _ => {
                        self.unexpected(method, path, query);
                        status_response(405, "MethodNotAllowed", "not served".into())
                    }
                }
            }
            ("", "events") | ("events.k8s.io", "events") if !get => {
                // The Recorder's events: created (or patched) and echoed.
                let mut event: Value = serde_json::from_slice(body).unwrap_or_else(|_| json!({}));
                if event["metadata"]["name"].is_null() {
                    event["metadata"]["name"] = format!("bench.{:x}", self.next_rv()).into();
                }
                event["metadata"]["resourceVersion"] = self.next_rv().to_string().into();
                let status = if *method == Method::POST {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                json_response(status, event.to_string())
            }
            ("", "events") if get && t.name.is_none() => {
                let fields = selector_terms(query.get("fieldSelector"));
                let pod = fields
                    .iter()
                    .find(|(k, _)| k == "involvedObject.name")
                    .map(|(_, v)| v.clone());
                let items = match pod {
                    Some(pod) => self
                        .events
                        .lock()
                        .unwrap()
                        .get(&pod)
                        .cloned()
                        .unwrap_or_default(),
                    None => self.events.lock().unwrap().values().flatten().cloned().collect(),
                };
                self.list("v1", "EventList", items)
            }
            ("apps", "replicasets") if get && t.name.is_some() => {
                let name = t.name.as_deref().unwrap();
                let found = name
                    .strip_prefix("svc-")
                    .and_then(|rest| rest.split('-').next())
                    .and_then(|n| n.parse::<usize>().ok())
                    .map(workload)
                    .filter(|w| format!("{}-{}", w.name, w.hash) == name);
                match found {
                    Some(w) => json_response(StatusCode::OK, replicaset(&w).to_string()),
                    None => not_found(&t),
                }
            }
            ("apps", "deployments") if get && t.name.is_some() => {
                let name = t.name.as_deref().unwrap();
                let found = name
                    .strip_prefix("svc-")
                    .and_then(|n| n.parse::<usize>().ok())
                    .map(workload)
                    .filter(|w| w.name == name);
                match found {
                    Some(w) => json_response(StatusCode::OK, deployment(&w).to_string()),
                    None => not_found(&t),
                }
            }
            ("", "namespaces") if get && t.name.as_deref() == Some(NS) && t.sub.is_none() => {
                json_response(
                    StatusCode::OK,
                    json!({ "apiVersion": "v1", "kind": "Namespace",
                            "metadata": { "name": NS, "uid": uid(7), "resourceVersion": "5",
                                          "creationTimestamp": T_CREATED,
                                          "labels": { "kubernetes.io/metadata.name": NS } },
                            "spec": { "finalizers": ["kubernetes"] }, "status": { "phase": "Active" } })
                    .to_string(),
                )
            }
            _ => {
                self.unexpected(method, path, query);
                match (get, t.name.is_none(), watch) {
                    (true, true, true) => self.watch(&t.resource),
                    (true, true, false) => self.list("v1", "List", Vec::new()),
                    _ => not_found(&t),
                }
            }
        }
    }
}

async fn serve(mock: Arc<Mock>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let mock = mock.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let mock = mock.clone();
                async move {
                    let method = request.method().clone();
                    let path = request.uri().path().to_string();
                    let query = parse_query(request.uri().query());
                    let content_type = request
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let body = match request.into_body().collect().await {
                        Ok(b) => b.to_bytes(),
                        Err(_) => Bytes::new(),
                    };
                    Ok::<_, Infallible>(mock.route(&method, &path, &query, &content_type, &body))
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

/// Starts a mock with `n` Pods; returns it and a kubeconfig pointing at it.
async fn start_mock(n: usize, dir: &Path) -> (Arc<Mock>, PathBuf, tokio::task::JoinHandle<()>) {
    let mock = Arc::new(Mock::new(n));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve(mock.clone(), listener));
    let bookmarks = mock.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            bookmarks.bookmarks();
        }
    });
    let kubeconfig = dir.join(format!("mock-{n}.kubeconfig"));
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: mock
  cluster:
    server: http://{addr}
users:
- name: mock
  user: {{}}
contexts:
- name: mock
  context:
    cluster: mock
    user: mock
    namespace: {NS}
current-context: mock
"
        ),
    )
    .unwrap();
    (mock, kubeconfig, server)
}

async fn run_mock(n: usize, samples: usize, dir: &Path) -> Row {
    let (mock, kubeconfig, server) = start_mock(n, dir).await;
    let mut op = Operator::start(&kubeconfig, dir.join(format!("operator-mock-{n}.log")));
    let started = Instant::now();
    // Synced: the Pods listed and the watch opened (the reflector swaps its store in then).
    loop {
        op.check_alive();
        if mock.pod_watch_opened.lock().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            panic!(
                "the operator did not open its Pod watch within 120 s:\n{}",
                op.tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let watch_after = started.elapsed();
    let (rss, hwm) = stable_memory(&mut op, Duration::from_secs(60)).await;
    let split = rss_split(op.pid());
    let mut latencies = Vec::new();
    let workloads = n.div_ceil(PODS_PER_WORKLOAD);
    for s in 0..samples.min(workloads) {
        // Spread over the workloads; the middle Pod of each.
        let w = s * workloads / samples.min(workloads).max(1);
        let i = (w * PODS_PER_WORKLOAD + PODS_PER_WORKLOAD / 2).min(n - 1);
        let report = format!("deployment-{}-crashloopbackoff", workload(w).name);
        let sent = mock.crash(i, 3);
        let deadline = sent + Duration::from_secs(30);
        loop {
            if let Some(t) = mock.created.lock().unwrap().get(&report) {
                latencies.push(t.saturating_duration_since(sent));
                break;
            }
            op.check_alive();
            if Instant::now() > deadline {
                panic!("no report {report} 30 s after the crash:\n{}", op.tail());
            }
            // The time is the POST's arrival, taken by the server: polling does not change it.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Let the investigation finish before the next sample (it competes for the cores).
        let settle = Instant::now();
        while settle.elapsed() < Duration::from_secs(10) {
            let phase = mock
                .reports
                .lock()
                .unwrap()
                .get(&report)
                .and_then(|r| r["status"]["phase"].as_str().map(str::to_string));
            if phase.is_some_and(|p| p != "Analyzing") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    latencies.sort();
    let (after, _) = memory(op.pid());
    let note = format!(
        "{split}; {} B/Pod served, {} list pages, watch open after {:.1} s; RSS after the reports {:.1} MiB",
        mock.bytes_served_per_pod(),
        mock.pod_list_pages.load(Ordering::SeqCst),
        watch_after.as_secs_f64(),
        mib(after)
    );
    drop(op);
    server.abort();
    let unexpected = mock.unexpected.lock().unwrap().clone();
    if !unexpected.is_empty() && n == 0 {
        eprintln!("operator-scale: requests the mock answers generically (empty list or 404):");
        for u in &unexpected {
            eprintln!("  {u}");
        }
    } else if !unexpected.is_empty() {
        let known: BTreeSet<String> = UNEXPECTED_SEEN.lock().unwrap().clone();
        for u in unexpected.difference(&known) {
            eprintln!("operator-scale: also answered generically: {u}");
        }
    }
    UNEXPECTED_SEEN.lock().unwrap().extend(unexpected);
    Row {
        mode: "mock",
        pods: n,
        rss_kib: rss,
        hwm_kib: hwm,
        latencies,
        note,
    }
}

static UNEXPECTED_SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

// ---------------------------------------------------------------------------------------------
// The real control plane

mod cluster {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
    use kube::core::{ApiResource, GroupVersionKind};
    use kube::runtime::{WatchStreamExt, watcher};
    use sre_e2e::{ClusterOptions, NodeSpec, TestCluster, fault};

    /// Deployments the Pods are spread over (one crash sample each).
    const DEPLOYMENTS: usize = 4;
    const PODS_PER_NODE: u32 = 600;

    fn kubectl(cluster: &TestCluster, args: &[&str]) -> String {
        let out = cluster.kubectl().args(args).output().expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn report_api(client: &kube::Client) -> Api<DynamicObject> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("sre-operator.dev", "v1alpha1", "DiagnosticReport"),
            "diagnosticreports",
        );
        Api::namespaced_with(client.clone(), NS, &ar)
    }

    fn deployment(name: &str, replicas: usize) -> Deployment {
        let labels =
            json!({ "app": name, "app.kubernetes.io/name": name, PART_OF: NS, "tier": "backend" });
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": name, "namespace": NS, "labels": labels },
            "spec": {
                "replicas": replicas,
                "selector": { "matchLabels": { "app": name } },
                "template": {
                    "metadata": { "labels": labels, "annotations": {
                        "prometheus.io/scrape": "true", "prometheus.io/port": "8080" } },
                    "spec": {
                        "terminationGracePeriodSeconds": 0,
                        "containers": [{
                            "name": "app",
                            "image": format!("registry.example.com/shop/{name}:1.8.2"),
                            "args": ["--config=/etc/app/config.yaml", "--listen=:8080"],
                            "ports": [{ "name": "http", "containerPort": 8080, "protocol": "TCP" }],
                            "env": env(),
                            "resources": {
                                "limits": { "cpu": "50m", "memory": "64Mi" },
                                "requests": { "cpu": "5m", "memory": "16Mi" },
                            },
                            "readinessProbe": {
                                "httpGet": { "path": "/healthz", "port": 8080 },
                                "periodSeconds": 10,
                            },
                        }],
                    },
                },
            },
        }))
        .unwrap()
    }

    /// Scales the bench Deployments to `n` Pods in all and waits until they are Ready.
    async fn scale_to(client: &kube::Client, n: usize) -> Duration {
        let started = Instant::now();
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
        for d in 0..DEPLOYMENTS {
            let name = format!("bench-{d}");
            let replicas = n / DEPLOYMENTS + usize::from(d < n % DEPLOYMENTS);
            deployments
                .patch(
                    &name,
                    &PatchParams::apply("operator-scale").force(),
                    &Patch::Apply(deployment(&name, replicas)),
                )
                .await
                .expect("applying a bench Deployment");
        }
        let mut last_print = Instant::now();
        loop {
            let list = deployments
                .list(&ListParams::default())
                .await
                .expect("listing Deployments");
            let ready: i32 = list
                .items
                .iter()
                .filter(|d| {
                    d.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("bench-"))
                })
                .filter_map(|d| d.status.as_ref().and_then(|s| s.ready_replicas))
                .sum();
            if ready as usize >= n {
                return started.elapsed();
            }
            if last_print.elapsed() > Duration::from_secs(30) {
                eprintln!(
                    "operator-scale: {ready}/{n} Pods Ready after {:.0} s",
                    started.elapsed().as_secs_f64()
                );
                last_print = Instant::now();
            }
            if started.elapsed() > Duration::from_secs(1800) {
                panic!("only {ready} of {n} Pods Ready after 30 minutes");
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Namespaced Pod WATCHes open on the API server (only the operator's, in this bench).
    async fn pod_watches(client: &kube::Client) -> Option<u64> {
        let req = http::Request::get("/metrics").body(Vec::new()).ok()?;
        let text = client.request_text(req).await.ok()?;
        Some(
            text.lines()
                .filter(|l| {
                    l.starts_with("apiserver_longrunning_requests{")
                        && l.contains("resource=\"pods\"")
                        && l.contains("scope=\"namespace\"")
                        && l.contains("verb=\"WATCH\"")
                        && l.contains("subresource=\"\"")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64,
        )
    }

    fn crash_ready(p: &Pod) -> bool {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.restart_count >= 3
                        && c.state
                            .as_ref()
                            .and_then(|s| s.waiting.as_ref())
                            .and_then(|w| w.reason.as_deref())
                            == Some("CrashLoopBackOff")
                })
            })
    }

    /// Makes one Pod of `deployment` crash-loop; returns the time from it being seen in
    /// CrashLoopBackOff with 3 restarts to its report being seen.
    async fn crash_sample(client: &kube::Client, deployment: &str, op: &mut Operator) -> Duration {
        let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
        let pod = pods
            .list(
                &ListParams::default()
                    .labels(&format!("app={deployment}"))
                    .limit(1),
            )
            .await
            .expect("listing a bench Pod")
            .items
            .into_iter()
            .next()
            .expect("a bench Pod");
        let name = pod.metadata.name.clone().unwrap();
        let report = format!("deployment-{deployment}-crashloopbackoff");
        let reports = report_api(client);
        let _ = reports.delete(&report, &DeleteParams::default()).await;

        let pod_seen = tokio::spawn({
            let pods = pods.clone();
            let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
            async move {
                let stream = watcher(pods, config).applied_objects();
                futures::pin_mut!(stream);
                while let Some(event) = stream.next().await {
                    if event.is_ok_and(|p| crash_ready(&p)) {
                        return Instant::now();
                    }
                }
                panic!("the Pod watch ended");
            }
        });
        let report_seen = tokio::spawn({
            let config = watcher::Config::default().fields(&format!("metadata.name={report}"));
            async move {
                let stream = watcher(reports, config).applied_objects();
                futures::pin_mut!(stream);
                while let Some(event) = stream.next().await {
                    if event.is_ok() {
                        return Instant::now();
                    }
                }
                panic!("the report watch ended");
            }
        });
        // Give both watches a moment to be open before the fault starts.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let fault = json!({ "metadata": {
            "labels": { fault::LABEL: fault::CRASHLOOP },
            "annotations": { fault::BACKOFF_ANNOTATION: "1s", fault::DELAY_ANNOTATION: "300ms" },
        } });
        pods.patch(&name, &PatchParams::default(), &Patch::Merge(&fault))
            .await
            .expect("labelling the Pod with the crash-loop fault");
        let both = async { (pod_seen.await.unwrap(), report_seen.await.unwrap()) };
        let (crashed, reported) = match tokio::time::timeout(Duration::from_secs(90), both).await {
            Ok(times) => times,
            Err(_) => {
                op.check_alive();
                panic!(
                    "no report {report} 90 s after Pod {name} was made to crash-loop:\n{}",
                    op.tail()
                )
            }
        };
        // The crash-looping Pod goes; its ReplicaSet makes a healthy one.
        let _ = pods
            .delete(&name, &DeleteParams::default().grace_period(0))
            .await;
        if reported < crashed {
            eprintln!(
                "operator-scale: report {report} seen {:?} before the Pod's third restart was",
                crashed - reported
            );
        }
        reported.saturating_duration_since(crashed)
    }

    pub async fn run(sizes: &[usize], samples: usize, dir: &Path) -> Vec<Row> {
        let max = sizes.iter().copied().max().unwrap_or(0);
        let nodes = (max * 6 / 5).div_ceil(PODS_PER_NODE as usize).max(2);
        let started = Instant::now();
        let cluster = TestCluster::start(ClusterOptions {
            nodes: (0..nodes)
                .map(|i| {
                    NodeSpec::new(format!("kwok-node-{i}"))
                        .cpu("64")
                        .memory("256Gi")
                        .pods(PODS_PER_NODE)
                })
                .collect(),
            kube_api_qps: Some(500),
            start_timeout: Duration::from_secs(180),
            ..Default::default()
        })
        .await
        .expect("the loopback control plane starts");
        eprintln!(
            "operator-scale: cluster of {nodes} kwok nodes ({PODS_PER_NODE} Pods each) ready in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let client = cluster.client();
        cluster.create_namespace(NS).await.expect("namespace bench");
        let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds");
        kubectl(&cluster, &["apply", "--server-side", "-f", crds]);
        kubectl(
            &cluster,
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/debugpolicies.sre-operator.dev",
                "crd/diagnosticreports.sre-operator.dev",
            ],
        );
        let mut policy = debug_policy();
        for f in ["uid", "resourceVersion", "generation", "creationTimestamp"] {
            policy["metadata"].as_object_mut().unwrap().remove(f);
        }
        let policy_file = dir.join("policy.json");
        std::fs::write(&policy_file, policy.to_string()).unwrap();
        kubectl(&cluster, &["apply", "-f", policy_file.to_str().unwrap()]);

        let mut rows = Vec::new();
        let mut sizes: Vec<usize> = sizes.to_vec();
        sizes.sort();
        for n in sizes {
            let created = if n > 0 {
                let took = scale_to(&client, n).await;
                eprintln!(
                    "operator-scale: {n} Pods Ready in {:.0} s",
                    took.as_secs_f64()
                );
                Some(took)
            } else {
                None
            };
            let mut op = Operator::start(
                cluster.kubeconfig(),
                dir.join(format!("operator-cluster-{n}.log")),
            );
            let t0 = Instant::now();
            let mut watch_open = None;
            while t0.elapsed() < Duration::from_secs(120) {
                op.check_alive();
                if pod_watches(&client).await.unwrap_or(0) >= 1 {
                    watch_open = Some(t0.elapsed());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            if watch_open.is_none() {
                eprintln!(
                    "operator-scale: no namespaced Pod WATCH seen on the API server after 120 s; sampling when RSS is stable"
                );
            }
            let (rss, hwm) = stable_memory(&mut op, Duration::from_secs(90)).await;
            let split = rss_split(op.pid());
            let mut latencies = Vec::new();
            if n > 0 {
                for d in 0..samples.min(DEPLOYMENTS) {
                    latencies.push(crash_sample(&client, &format!("bench-{d}"), &mut op).await);
                }
            }
            latencies.sort();
            let (after, _) = memory(op.pid());
            drop(op);
            // The next size starts from no reports.
            let _ = kubectl(
                &cluster,
                &["-n", NS, "delete", "dr", "--all", "--ignore-not-found"],
            );
            rows.push(Row {
                mode: "cluster",
                pods: n,
                rss_kib: rss,
                hwm_kib: hwm,
                latencies,
                note: format!(
                    "{split}; {}watch open after {}; RSS after the reports {:.1} MiB",
                    created
                        .map(|c| format!("created and Ready in {:.0} s; ", c.as_secs_f64()))
                        .unwrap_or_default(),
                    watch_open
                        .map(|w| format!("{:.1} s", w.as_secs_f64()))
                        .unwrap_or_else(|| "?".into()),
                    mib(after)
                ),
            });
        }
        drop(cluster);
        rows
    }
}

// ---------------------------------------------------------------------------------------------

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<8} {:>7}  {:>10}  {:>9}  {:>14}  {:>22}",
        "mode", "pods", "RSS synced", "VmHWM", "RSS/1,000 Pods", "to report (median, n)"
    );
    for (i, row) in rows.iter().enumerate() {
        // The slope from the previous size of the same mode: the first size's also carries the
        // fixed cost of listing (a page of full Pods), the next one only the Pods.
        let previous = rows[..i].iter().rev().find(|r| r.mode == row.mode);
        let per_thousand = match previous {
            Some(p) if row.pods > p.pods => format!(
                "{:.2} MiB",
                (mib(row.rss_kib) - mib(p.rss_kib)) / ((row.pods - p.pods) as f64 / 1000.0)
            ),
            _ => "-".into(),
        };
        let latency = row
            .median()
            .map(|m| {
                format!(
                    "{:.0} ms ({}: {:.0}-{:.0})",
                    m.as_secs_f64() * 1000.0,
                    row.latencies.len(),
                    row.latencies[0].as_secs_f64() * 1000.0,
                    row.latencies[row.latencies.len() - 1].as_secs_f64() * 1000.0
                )
            })
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<8} {:>7}  {:>6.1} MiB  {:>5.1} MiB  {:>14}  {:>22}",
            row.mode,
            row.pods,
            mib(row.rss_kib),
            mib(row.hwm_kib),
            per_thousand,
            latency
        );
    }
    println!();
    for row in rows {
        println!("{} {}: {}", row.mode, row.pods, row.note);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args
        .iter()
        .find(|a| matches!(a.as_str(), "mock" | "cluster" | "both"))
        .cloned()
        .or_else(|| std::env::var("SRE_BENCH_MODE").ok())
        .unwrap_or_else(|| "both".into());
    let sizes: Vec<usize> = std::env::var("SRE_BENCH_PODS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000]);
    let mut sizes_with_baseline = vec![0];
    sizes_with_baseline.extend(sizes.iter().copied().filter(|&n| n > 0));
    let samples = |default: usize| {
        std::env::var("SRE_BENCH_SAMPLES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    println!("machine: {}", machine());
    println!(
        "binary:  {} run --namespace {NS} (rules brain, built-in plugins)",
        binary().display()
    );
    let dir = tempfile::Builder::new()
        .prefix("operator-scale-")
        .tempdir()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    runtime.block_on(async {
        if mode == "mock" || mode == "both" {
            for &n in &sizes_with_baseline {
                let row = run_mock(n, samples(5), dir.path()).await;
                eprintln!(
                    "operator-scale: mock {n}: RSS {:.1} MiB, VmHWM {:.1} MiB, to report {:?}",
                    mib(row.rss_kib),
                    mib(row.hwm_kib),
                    row.median()
                );
                rows.push(row);
            }
        }
        if mode == "cluster" || mode == "both" {
            for row in cluster::run(&sizes_with_baseline, samples(3), dir.path()).await {
                eprintln!(
                    "operator-scale: cluster {}: RSS {:.1} MiB, VmHWM {:.1} MiB, to report {:?}",
                    row.pods,
                    mib(row.rss_kib),
                    mib(row.hwm_kib),
                    row.median()
                );
                rows.push(row);
            }
        }
    });
    print_table(&rows);

    let mut missed = Vec::new();
    for row in &rows {
        let limit_mib = match row.mode {
            "mock" => 50.0,
            _ => 40.0,
        };
        if row.pods == 10_000 && mib(row.rss_kib) > limit_mib {
            missed.push(format!(
                "{} at 10,000 Pods: RSS {:.1} MiB, over {limit_mib} MiB",
                row.mode,
                mib(row.rss_kib)
            ));
        }
        if let Some(m) = row.median().filter(|m| *m > Duration::from_secs(1)) {
            missed.push(format!(
                "{} at {} Pods: {:.0} ms to the report, over 1 s",
                row.mode,
                row.pods,
                m.as_secs_f64() * 1000.0
            ));
        }
    }
    println!();
    if missed.is_empty() {
        println!(
            "targets met: RSS < 50 MiB (mock) / < 40 MiB (cluster) at 10,000 Pods, < 1 s to the report"
        );
    } else {
        for m in &missed {
            println!("MISSED: {m}");
        }
        std::process::exit(1);
    }
}

//! A fake Kubernetes API server in process, on loopback (plain HTTP, hyper): it serves what
//! `sre-operator run --namespace bench` asks for, with Pods shaped the way the API server returns
//! kubelet-written Pods of a Deployment (managedFields and all), paged LISTs and WATCHes, report
//! create/patch/get, events, logs, ReplicaSets and Deployments; empty lists or 404s for the rest,
//! each unexpected path recorded. The `operator_scale` bench's `mock` mode runs the operator
//! against it (`#[path = "../tests/support/fake_api.rs"] mod fake_api;`); kept with the test
//! support so tests that need a whole API server (not a scripted one, see mock_api.rs) can use it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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

/// The namespace the fake serves (and the bench's cluster mode uses).
pub const NS: &str = "bench";
/// The namespace of the hostile Pods, which no DebugPolicy names.
pub const HOSTILE_NS: &str = "attic";
/// The label the bench's DebugPolicy selects.
pub const PART_OF: &str = "app.kubernetes.io/part-of";

// ---------------------------------------------------------------------------------------------
// Objects as the API server returns them

/// Deterministic pseudo-random numbers (splitmix64).
pub fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The alphabet Kubernetes uses for generated name suffixes.
pub fn suffix(seed: u64, len: usize) -> String {
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

pub fn uid(seed: u64) -> String {
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

pub fn hex64(seed: u64) -> String {
    (0..4).map(|i| format!("{:016x}", mix(seed + i))).collect()
}

/// Pods per workload (Deployment) in mock mode.
pub const PODS_PER_WORKLOAD: usize = 50;
/// kwok-like nodes in mock mode.
pub const MOCK_NODES: usize = 20;
pub const T_CREATED: &str = "2026-11-25T08:00:00Z";
pub const T_STARTED: &str = "2026-11-25T08:00:03Z";

pub struct Workload {
    pub name: String,
    hash: String,
    deployment_uid: String,
    replicaset_uid: String,
}

pub fn workload(w: usize) -> Workload {
    Workload {
        name: format!("svc-{w:03}"),
        hash: suffix(w as u64 + 7_000_000, 10),
        deployment_uid: uid(w as u64 + 1_000_000),
        replicaset_uid: uid(w as u64 + 2_000_000),
    }
}

pub fn pod_name(i: usize) -> String {
    let w = workload(i / PODS_PER_WORKLOAD);
    format!("{}-{}-{}", w.name, w.hash, suffix(i as u64, 5))
}

pub fn labels(w: &Workload) -> Value {
    json!({
        "app": w.name,
        "app.kubernetes.io/name": w.name,
        PART_OF: NS,
        "tier": "backend",
        "pod-template-hash": w.hash,
    })
}

pub fn env() -> Value {
    json!([
        { "name": "LOG_LEVEL", "value": "info" },
        { "name": "REDIS_HOST", "value": "redis" },
        { "name": "REDIS_PORT", "value": "6379" },
        { "name": "POD_NAME", "valueFrom": { "fieldRef": { "apiVersion": "v1", "fieldPath": "metadata.name" } } },
        { "name": "POD_IP", "valueFrom": { "fieldRef": { "apiVersion": "v1", "fieldPath": "status.podIP" } } },
    ])
}

pub fn container(w: &Workload, token_volume: &str) -> Value {
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
pub fn managed_fields(w: &Workload, pod_ip: &str, host_ip: &str) -> Value {
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
pub fn pod(i: usize, restarts: Option<i32>, resource_version: u64) -> Value {
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

pub fn with_kind(mut object: Value, api_version: &str, kind: &str) -> Value {
    if let Some(o) = object.as_object_mut() {
        o.insert("apiVersion".into(), api_version.into());
        o.insert("kind".into(), kind.into());
    }
    object
}

pub fn replicaset(w: &Workload) -> Value {
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

/// What the API server answers a Pod create that a ResourceQuota refuses.
fn quota_refusal(replicaset: &str) -> String {
    format!(
        "pods \"{replicaset}-x7k2p\" is forbidden: exceeded quota: compute, requested: limits.memory=512Mi, used: limits.memory=2Gi, limited: limits.memory=2Gi"
    )
}

pub fn deployment(w: &Workload) -> Value {
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

pub fn debug_policy() -> Value {
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

/// Issue 16's memory attack: an unschedulable Pod in a namespace no policy names, with 200 KiB
/// of env, as the scheduler leaves it.
pub fn hostile_pod(k: usize, resource_version: u64) -> Value {
    json!({
        "metadata": {
            "name": format!("ballast-{k}"), "namespace": HOSTILE_NS, "uid": uid(5_000_000 + k as u64),
            "resourceVersion": resource_version.to_string(), "creationTimestamp": T_CREATED,
            "labels": { "app": "ballast" },
        },
        "spec": {
            "nodeSelector": { "sre-operator.dev/no-such-node": "true" },
            "containers": [{ "name": "app", "image": "registry.example.com/attic/ballast:1",
                "env": [{ "name": "BALLAST", "value": "b".repeat(200 << 10) }] }],
        },
        "status": {
            "phase": "Pending",
            "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "lastTransitionTime": T_CREATED,
                "message": "0/20 nodes are available: 20 node(s) didn't match Pod's node affinity/selector." }],
        },
    })
}

/// A ReplicaSet of the bench namespace carrying 100 KiB of annotation: what a tenant can make
/// any list of ReplicaSets cost.
pub fn large_replicaset(k: usize) -> Value {
    json!({
        "metadata": {
            "name": format!("bulk-{k}"), "namespace": NS, "uid": uid(6_000_000 + k as u64),
            "resourceVersion": "20", "creationTimestamp": T_CREATED,
            "annotations": { "tenant.example.com/blob": "r".repeat(100 << 10) },
        },
        "spec": { "replicas": 0, "selector": { "matchLabels": { "app": format!("bulk-{k}") } },
            "template": { "metadata": { "labels": { "app": format!("bulk-{k}") } },
                "spec": { "containers": [{ "name": "app", "image": "registry.example.com/bulk:1" }] } } },
        "status": { "replicas": 0 },
    })
}

pub fn backoff_event(i: usize, restarts: i32) -> Value {
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

pub const PREVIOUS_LOG: &str = "\
2026-11-25T09:41:06.118Z  INFO app: starting version=1.8.2 pid=1
2026-11-25T09:41:06.124Z  INFO cache: connecting to redis host=redis port=6379 pool_size=8
2026-11-25T09:41:07.512Z ERROR cache: dial tcp: connect to redis:6379 failed: Connection refused
Error: Connection refused to redis:6379
";

// ---------------------------------------------------------------------------------------------
// The mock API server

pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A Kubernetes-shaped path: `/api/v1/namespaces/NS/pods/NAME/log` and the like.
#[derive(Debug, Default)]
pub struct Target {
    group: String,
    namespace: Option<String>,
    resource: String,
    name: Option<String>,
    sub: Option<String>,
}

pub fn parse_path(path: &str) -> Option<Target> {
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

pub fn percent_decode(s: &str) -> String {
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

pub fn parse_query(query: Option<&str>) -> HashMap<String, String> {
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
pub fn selector_terms(selector: Option<&String>) -> Vec<(String, String)> {
    selector
        .map(|s| {
            s.split(',')
                .filter_map(|t| t.split_once('='))
                .map(|(k, v)| (k.trim_end_matches('=').to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

pub fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(body.into()).boxed_unsync())
        .unwrap()
}

pub fn status_response(code: u16, reason: &str, message: String) -> Response<Body> {
    json_response(
        StatusCode::from_u16(code).unwrap(),
        json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code })
        .to_string(),
    )
}

pub fn not_found(t: &Target) -> Response<Body> {
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

pub struct Watcher {
    resource: String,
    tx: mpsc::UnboundedSender<Bytes>,
}

/// The report POSTs seen: name → when.
pub type Created = HashMap<String, Instant>;

pub struct Mock {
    resource_version: AtomicU64,
    /// Pod JSON (without kind), by index; and index by name.
    pods: Mutex<Vec<String>>,
    pod_index: HashMap<String, usize>,
    events: Mutex<HashMap<String, Vec<Value>>>,
    pub reports: Mutex<BTreeMap<String, Value>>,
    /// Every report as a PATCH left it, in order.
    pub report_writes: Mutex<Vec<Value>>,
    pub created: Mutex<Created>,
    watchers: Mutex<Vec<Watcher>>,
    pub pod_watch_opened: Mutex<Option<Instant>>,
    pub pod_list_pages: AtomicU64,
    page_cap: usize,
    pub unexpected: Mutex<BTreeSet<String>>,
    /// Pods `0..bench_pods` are the bench namespace's; the rest are [`hostile_pod`]s.
    bench_pods: usize,
    /// How many [`large_replicaset`]s a list of ReplicaSets returns, and how often one was asked.
    large_replicasets: usize,
    pub replicaset_lists: AtomicU64,
    /// How long a LIST of DebugPolicies takes to answer (a loaded API server's).
    pub policy_list_delay: Duration,
    /// The workload whose ReplicaSet a ResourceQuota keeps from creating its Pods.
    refused: Option<usize>,
}

impl Mock {
    pub fn new(n: usize) -> Mock {
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
            report_writes: Mutex::new(Vec::new()),
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
            bench_pods: n,
            large_replicasets: 0,
            replicaset_lists: AtomicU64::new(0),
            policy_list_delay: Duration::ZERO,
            refused: None,
        }
    }

    /// Makes workload `w`'s ReplicaSet one a ResourceQuota refuses, as the replicaset-controller
    /// leaves it: no Pods, a `ReplicaFailure` condition and a `FailedCreate` Event.
    pub fn refuse_pods(&mut self, w: usize) {
        self.refused = Some(w);
        let rs = replicaset(&workload(w));
        let name = rs["metadata"]["name"].as_str().unwrap().to_string();
        let event = json!({
            "metadata": { "name": format!("{name}.{:x}", mix(w as u64) >> 16), "namespace": NS,
                          "uid": uid(w as u64 + 6_000_000), "resourceVersion": "1" },
            "involvedObject": { "kind": "ReplicaSet", "namespace": NS, "name": name,
                                "uid": rs["metadata"]["uid"], "apiVersion": "apps/v1", "resourceVersion": "100" },
            "reason": "FailedCreate",
            "message": format!("Error creating: {}", quota_refusal(&name)),
            "source": { "component": "replicaset-controller" },
            "firstTimestamp": "2026-11-25T09:40:30Z", "lastTimestamp": "2026-11-25T09:41:08Z",
            "count": 12, "type": "Warning", "reportingComponent": "replicaset-controller",
        });
        self.events
            .get_mut()
            .unwrap()
            .entry(name)
            .or_default()
            .push(event);
    }

    /// The same `n` Pods plus `pods` [`hostile_pod`]s and `replicasets` [`large_replicaset`]s.
    pub fn hostile(n: usize, pods: usize, replicasets: usize) -> Mock {
        let mut mock = Mock::new(n);
        let rv = mock.next_rv();
        let hostile = (0..pods).map(|k| hostile_pod(k, rv).to_string());
        mock.pods.get_mut().unwrap().extend(hostile);
        mock.pod_index
            .extend((0..pods).map(|k| (format!("ballast-{k}"), n + k)));
        mock.large_replicasets = replicasets;
        mock
    }

    fn next_rv(&self) -> u64 {
        self.resource_version.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn bytes_served_per_pod(&self) -> usize {
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
    pub fn crash(&self, i: usize, restarts: i32) -> Instant {
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

    fn list_pods(
        &self,
        namespace: Option<&str>,
        query: &HashMap<String, String>,
    ) -> Response<Body> {
        let rv = self.resource_version.load(Ordering::SeqCst);
        let labels = selector_terms(query.get("labelSelector"));
        let fields = selector_terms(query.get("fieldSelector"));
        let all = self.pods.lock().unwrap();
        let pods = match namespace {
            Some(NS) => &all[..self.bench_pods],
            Some(HOSTILE_NS) => &all[self.bench_pods..],
            Some(_) => &all[..0],
            None => &all[..],
        };
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
            drop(all);
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
        self.report_writes.lock().unwrap().push(report.clone());
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
            ("", "pods") if get && t.name.is_none() => {
                self.list_pods(t.namespace.as_deref(), query)
            }
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
            ("", "events") if get && t.name.is_none() && watch => self.watch("events"),
            ("", "events") if get && t.name.is_none() => {
                let fields = selector_terms(query.get("fieldSelector"));
                let field = |name: &str| {
                    fields
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                };
                let mut items: Vec<Value> = match field("involvedObject.name") {
                    Some(pod) => self
                        .events
                        .lock()
                        .unwrap()
                        .get(&pod)
                        .cloned()
                        .unwrap_or_default(),
                    None => self.events.lock().unwrap().values().flatten().cloned().collect(),
                };
                if let Some(reason) = field("reason") {
                    items.retain(|e| e["reason"] == reason.as_str());
                }
                self.list("v1", "EventList", items)
            }
            ("apps", "replicasets") if get && t.name.is_none() && !watch => {
                self.replicaset_lists.fetch_add(1, Ordering::SeqCst);
                let items = (0..self.large_replicasets)
                    .map(large_replicaset)
                    .chain((0..self.bench_pods.div_ceil(PODS_PER_WORKLOAD)).map(|w| replicaset(&workload(w))))
                    .collect();
                self.list("apps/v1", "ReplicaSetList", items)
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
                    Some(w) => {
                        let mut rs = replicaset(&w);
                        if self.refused.is_some_and(|r| workload(r).name == w.name) {
                            rs["status"] = json!({ "replicas": 0, "observedGeneration": 1,
                                "conditions": [{ "type": "ReplicaFailure", "status": "True",
                                    "reason": "FailedCreate", "lastTransitionTime": T_STARTED,
                                    "message": quota_refusal(name) }] });
                        }
                        json_response(StatusCode::OK, rs.to_string())
                    }
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

pub async fn serve(mock: Arc<Mock>, listener: tokio::net::TcpListener) {
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
                    if method == Method::GET
                        && path.ends_with("/debugpolicies")
                        && !query.contains_key("watch")
                    {
                        tokio::time::sleep(mock.policy_list_delay).await;
                    }
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
pub async fn start_mock(n: usize, dir: &Path) -> (Arc<Mock>, PathBuf, tokio::task::JoinHandle<()>) {
    serve_mock(Mock::new(n), &format!("mock-{n}"), dir).await
}

/// Serves `mock` on loopback; its kubeconfig is `<dir>/<tag>.kubeconfig`.
pub async fn serve_mock(
    mock: Mock,
    tag: &str,
    dir: &Path,
) -> (Arc<Mock>, PathBuf, tokio::task::JoinHandle<()>) {
    let mock = Arc::new(mock);
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
    let kubeconfig = dir.join(format!("{tag}.kubeconfig"));
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

//! The pruned Pod store: a failing Pod is kept whole enough that detection, the policy-filter
//! plugins and workload resolution see what they would on the full Pod; a healthy one is not kept.

use super::*;
use crate::controller::scope::PodScope;
use crate::crd::FailureClass;
use crate::policy::PolicySet;
use k8s_openapi::api::core::v1::Event;
use kube::runtime::reflector;
use serde_json::{Value, json};

const UID: &str = "5b7c1f0e-3a2d-4c53-9d1e-0f6a8e2b7c41";
const NAME: &str = "app-7d9f8c6b5-x2k4p";

/// A Pod the way the API server serves one of a Deployment's: managedFields, env, the
/// service-account volume and its mounts, probes, tolerations, full container statuses.
fn pod(container_status: Value, phase: &str, extra_status: Value) -> Pod {
    let mut status = json!({
        "phase": phase,
        "conditions": [
            {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-11-25T09:00:00Z"},
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": "2026-11-25T09:00:00Z"},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-25T09:00:00Z"}],
        "hostIP": "10.0.0.3", "hostIPs": [{"ip": "10.0.0.3"}],
        "podIP": "10.244.1.7", "podIPs": [{"ip": "10.244.1.7"}],
        "startTime": "2026-11-25T09:00:00Z", "qosClass": "Burstable",
        "containerStatuses": [container_status],
    });
    json_patch::merge(&mut status, &extra_status);
    let mount = json!({"name": "kube-api-access-x2k4p", "readOnly": true,
                       "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"});
    serde_json::from_value(json!({
        "metadata": {
            "name": NAME, "generateName": "app-7d9f8c6b5-", "namespace": "default", "uid": UID,
            "resourceVersion": "4711", "creationTimestamp": "2026-11-25T09:00:00Z",
            "labels": {"app": "app", "pod-template-hash": "7d9f8c6b5"},
            "annotations": {"sre-operator.dev/ignore": "false",
                            "kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "app-7d9f8c6b5",
                                 "uid": "0a1b2c3d-0000-4000-8000-000000000001", "controller": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                               "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {}}}}],
        },
        "spec": {
            "nodeName": "node-a",
            "volumes": [
                {"name": "kube-api-access-x2k4p", "projected": {"sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "app-data"}}],
            "initContainers": [{"name": "migrate", "image": "registry.example.com/app-migrate:1.8.2",
                                "command": ["/migrate"], "volumeMounts": [mount]}],
            "containers": [{
                "name": "app", "image": "registry.example.com/app:1.8.2",
                "command": ["/app"], "args": ["--listen=:8080"],
                "env": [{"name": "REDIS_HOST", "value": "redis"}],
                "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                "volumeMounts": [mount],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8081, "scheme": "HTTP"}, "periodSeconds": 5},
                "livenessProbe": {"httpGet": {"path": "/live", "port": "http", "scheme": "HTTP"}, "periodSeconds": 10},
            }],
            "nodeSelector": {"disktype": "ssd"},
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 300}],
        },
        "status": status,
    }))
    .unwrap()
}

fn status(state: Value, last_state: Value, ready: bool, restarts: i32) -> Value {
    json!({"name": "app", "image": "registry.example.com/app:1.8.2", "imageID": "", "ready": ready,
           "restartCount": restarts, "state": state, "lastState": last_state, "started": ready,
           "containerID": "containerd://4f2a9c1",
           "volumeMounts": [{"name": "kube-api-access-x2k4p", "readOnly": true,
                             "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]})
}

fn waiting(reason: &str, message: &str) -> Value {
    json!({"waiting": {"reason": reason, "message": message}})
}

fn terminated(code: i32, reason: &str) -> Value {
    json!({"terminated": {"exitCode": code, "reason": reason,
           "startedAt": "2026-11-25T09:41:05Z", "finishedAt": "2026-11-25T09:41:07Z"}})
}

fn running() -> Value {
    json!({"running": {"startedAt": "2026-11-25T09:00:00Z"}})
}

fn event(reason: &str, message: &str) -> Event {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{NAME}.{}", reason.to_lowercase()), "namespace": "default"},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": NAME, "uid": UID,
                           "apiVersion": "v1", "fieldPath": "spec.containers{app}"},
        "reason": reason, "message": message, "type": "Warning", "count": 5,
        "source": {"component": "kubelet", "host": "node-a"},
        "firstTimestamp": "2026-11-25T09:00:00Z", "lastTimestamp": "2026-11-25T09:40:00Z"
    }))
    .unwrap()
}

/// A store scope under a policy that selects every Pod of every namespace.
fn everything() -> StoreScope<'static> {
    static ALL: std::sync::LazyLock<(PodScope, PolicySet)> = std::sync::LazyLock::new(|| {
        let policy = crate::policy::parse_policies(
            "apiVersion: sre-operator.dev/v1alpha1\nkind: DebugPolicy\nmetadata: {name: all}\nspec:\n  rules: [{}]\n",
            "all.yaml",
        )
        .unwrap();
        (PodScope::All, PolicySet::compile(&policy).unwrap())
    });
    StoreScope {
        namespaces: &ALL.0,
        policies: &ALL.1,
    }
}

/// What the store keeps of a Pod arriving in a watch event; None when it keeps nothing.
fn stored(pod: &Pod) -> Option<Pod> {
    match store_event(watcher::Event::Apply(pod.clone()), &everything()) {
        Some(watcher::Event::Apply(p)) => Some(p.pod()),
        Some(watcher::Event::Delete(_)) => None,
        other => panic!("unexpected {other:?}"),
    }
}

/// Every failure class, shaped the way the kubelet and the scheduler write them.
fn failing() -> Vec<(FailureClass, Pod, Vec<Event>)> {
    let backoff = event("BackOff", "Back-off restarting failed container app in pod");
    let crash = waiting(
        "CrashLoopBackOff",
        "back-off 40s restarting failed container=app",
    );
    let unschedulable = {
        let mut p = pod(
            status(waiting("ContainerCreating", ""), json!({}), false, 0),
            "Pending",
            json!({}),
        );
        p.spec.as_mut().unwrap().node_name = None;
        let status = p.status.as_mut().unwrap();
        status.container_statuses = None;
        status.conditions = serde_json::from_value(json!([{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable",
            "message": "0/2 nodes are available: 2 Insufficient memory. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."}]))
        .unwrap();
        p
    };
    vec![
        (
            FailureClass::CrashLoopBackOff,
            pod(
                status(crash.clone(), terminated(1, "Error"), false, 3),
                "Running",
                json!({}),
            ),
            vec![backoff.clone()],
        ),
        (
            FailureClass::OomKilled,
            pod(
                status(crash.clone(), terminated(137, "OOMKilled"), false, 4),
                "Running",
                json!({}),
            ),
            vec![backoff.clone()],
        ),
        (
            // OOMKilled and running again: ready, yet failing.
            FailureClass::OomKilled,
            pod(
                status(running(), terminated(137, "OOMKilled"), true, 1),
                "Running",
                json!({}),
            ),
            vec![],
        ),
        (
            FailureClass::ImagePullBackOff,
            pod(
                status(
                    waiting(
                        "ImagePullBackOff",
                        "Back-off pulling image \"registry.example.com/app:1.8.2\"",
                    ),
                    json!({}),
                    false,
                    0,
                ),
                "Pending",
                json!({}),
            ),
            vec![event(
                "Failed",
                "Failed to pull image \"registry.example.com/app:1.8.2\": not found",
            )],
        ),
        (
            FailureClass::CreateContainerConfigError,
            pod(
                status(
                    waiting(
                        "CreateContainerConfigError",
                        "couldn't find key REDIS_URL in ConfigMap default/app-config",
                    ),
                    json!({}),
                    false,
                    0,
                ),
                "Pending",
                json!({}),
            ),
            vec![],
        ),
        (FailureClass::Pending, unschedulable, vec![]),
        (
            FailureClass::ProbeFailure,
            pod(status(running(), json!({}), false, 0), "Running", json!({})),
            vec![event(
                "Unhealthy",
                "Readiness probe failed: HTTP probe failed with statuscode: 503",
            )],
        ),
        (
            // Evicted by its kubelet, the node low on memory.
            FailureClass::Evicted,
            pod(
                status(terminated(137, "Error"), json!({}), false, 0),
                "Failed",
                json!({"reason": "Evicted", "message": "The node was low on resource: memory. Threshold quantity: 100Mi, available: 90Mi. "}),
            ),
            vec![],
        ),
        (
            // Stranded on a node that stopped reporting: Ready set False by the node
            // controller, the container's own status still ready.
            FailureClass::Evicted,
            pod(
                status(running(), json!({}), true, 0),
                "Running",
                json!({"conditions": [{"type": "Ready", "status": "False"}, {"type": "ContainersReady", "status": "True"}]}),
            ),
            vec![],
        ),
        (
            // An init container crash-looping: the Pod stays Pending.
            FailureClass::CrashLoopBackOff,
            pod(
                json!({"name": "app", "image": "registry.example.com/app:1.8.2", "imageID": "", "ready": false,
                       "restartCount": 0, "state": waiting("PodInitializing", "")}),
                "Pending",
                json!({"initContainerStatuses": [{"name": "migrate", "image": "registry.example.com/app-migrate:1.8.2",
                    "imageID": "", "ready": false, "restartCount": 3, "state": crash,
                    "lastState": terminated(1, "Error")}]}),
            ),
            vec![],
        ),
    ]
}

#[test]
fn a_stored_failing_pod_still_detects_every_class() {
    for (class, pod, events) in failing() {
        let before = detect(&pod, &events);
        assert!(
            before.iter().any(|d| d.class == class),
            "{class:?}: {before:#?}"
        );
        assert!(may_be_failing(&pod), "{class:?} does not pass the gate");
        let after = stored(&pod).unwrap_or_else(|| panic!("{class:?} is not stored"));
        assert_eq!(detect(&after, &events), before, "{class:?}");
        // What the policy-filter plugins and workload resolution read is still there; env
        // values are not (a tenant's megabytes of env would stay in memory), their names are.
        let mut without_env_values = pod.spec.clone();
        for c in without_env_values.iter_mut().flat_map(|s| {
            s.containers
                .iter_mut()
                .chain(s.init_containers.iter_mut().flatten())
        }) {
            for var in c.env.iter_mut().flatten() {
                var.value = None;
            }
        }
        assert_eq!(after.spec, without_env_values, "{class:?}");
        assert_eq!(after.status, pod.status, "{class:?}");
        assert_eq!(
            after.metadata.owner_references,
            pod.metadata.owner_references
        );
        assert_eq!(
            after
                .annotations()
                .get("sre-operator.dev/ignore")
                .map(String::as_str),
            Some("false")
        );
        assert!(
            after
                .metadata
                .managed_fields
                .as_ref()
                .is_none_or(|m| m.is_empty())
        );
        assert!(
            !after
                .annotations()
                .contains_key("kubectl.kubernetes.io/last-applied-configuration")
        );
    }
}

fn healthy() -> Vec<Pod> {
    vec![
        pod(status(running(), json!({}), true, 0), "Running", json!({})),
        // Restarted once long ago, ready again.
        pod(
            status(running(), terminated(1, "Error"), true, 1),
            "Running",
            json!({}),
        ),
        // Done.
        pod(
            status(terminated(0, "Completed"), json!({}), false, 0),
            "Succeeded",
            json!({}),
        ),
    ]
}

#[test]
fn a_healthy_pod_is_not_stored() {
    for pod in healthy() {
        assert!(!may_be_failing(&pod));
        assert!(stored(&pod).is_none(), "{pod:#?}");
        assert!(store_event(watcher::Event::InitApply(pod), &everything()).is_none());
    }
}

/// A Pod starting on its node is stored until it runs: one whose volume never mounts stays
/// `ContainerCreating` with no further status change, so a Pod dropped here would never be
/// seen again. (Its events wait until it has been starting for `STUCK_AFTER`.)
#[test]
fn a_starting_pod_is_stored_until_it_runs() {
    let starting = pod(
        status(waiting("ContainerCreating", ""), json!({}), false, 0),
        "Pending",
        json!({}),
    );
    assert!(may_be_failing(&starting));
    assert!(stored(&starting).is_some());
    assert!(stored(&healthy().remove(0)).is_none(), "running: it leaves");
}

#[test]
fn the_store_follows_a_pod_into_failure_and_out_again() {
    let (reader, mut writer) = reflector::store::<StoredPod>();
    let events = |pod: Pod, init: bool| {
        if init {
            watcher::Event::InitApply(pod)
        } else {
            watcher::Event::Apply(pod)
        }
    };
    let apply = |writer: &mut reflector::store::Writer<StoredPod>, e: watcher::Event<Pod>| {
        if let Some(e) = store_event(e, &everything()) {
            writer.apply_watcher_event(&e);
        }
    };
    let (_, failing, events_of_failure) = failing().remove(0);
    let well = healthy().remove(0);
    // The initial list: one healthy Pod, one failing one under another name.
    let mut other = failing.clone();
    other.metadata.name = Some("other".into());
    apply(&mut writer, watcher::Event::Init);
    apply(&mut writer, events(well.clone(), true));
    apply(&mut writer, events(other.clone(), true));
    apply(&mut writer, watcher::Event::InitDone);
    let names = |r: &reflector::Store<StoredPod>| {
        let mut n: Vec<String> = r.state().iter().map(|p| p.name_any()).collect();
        n.sort();
        n
    };
    assert_eq!(names(&reader), vec!["other".to_string()]);
    // It starts failing: stored whole, and detection sees what it would on the full Pod.
    apply(&mut writer, events(failing.clone(), false));
    assert_eq!(names(&reader), vec![NAME.to_string(), "other".to_string()]);
    let kept = reader
        .state()
        .into_iter()
        .find(|p| p.name_any() == NAME)
        .unwrap();
    assert_eq!(
        detect(&kept.pod(), &events_of_failure),
        detect(&failing, &events_of_failure)
    );
    // It recovers: gone again.
    apply(&mut writer, events(well, false));
    assert_eq!(names(&reader), vec!["other".to_string()]);
}

/// An evicted Pod stays until someone deletes it: a report opened after its eviction covers it
/// for good (the cooldown's end does not report it again); one opened before it does not.
#[test]
fn an_eviction_once_reported_is_not_reported_again() {
    let evicted = pod(
        status(terminated(137, "Error"), json!({}), false, 0),
        "Failed",
        json!({"reason": "Evicted", "message": "The node was low on resource: memory. Threshold quantity: 100Mi, available: 90Mi. ",
            "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet",
                "lastTransitionTime": "2026-11-25T09:40:00Z"}]}),
    );
    assert!(may_be_failing(&evicted));
    assert_eq!(detect(&evicted, &[])[0].class, FailureClass::Evicted);
    let opened = |at: &str| -> DiagnosticReport {
        let mut r: DiagnosticReport = serde_json::from_value(json!({
            "apiVersion": "sre-operator.dev/v1alpha1", "kind": "DiagnosticReport",
            "metadata": {"name": "deployment-app-evicted", "namespace": "default", "creationTimestamp": at},
            "spec": {"pod": {"namespace": "default", "name": "app-7d9f8c6b5-x2k4p"},
                "workload": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
                "failure": {"class": "Evicted", "reason": "MemoryPressure", "evidence": []},
                "policy": "default"}
        }))
        .unwrap();
        r.status = None;
        r
    };
    assert!(super::reported_since_evicted(
        &opened("2026-11-25T09:40:05Z"),
        &evicted
    ));
    assert!(!super::reported_since_evicted(
        &opened("2026-11-25T09:30:00Z"),
        &evicted
    ));
    // Without a DisruptionTarget (before 1.26), the containers' end is the eviction's time.
    let mut older = evicted.clone();
    let older_status = older.status.as_mut().unwrap();
    older_status.conditions = None;
    older_status.container_statuses.as_mut().unwrap()[0].state = serde_json::from_value(
        json!({"terminated": {"exitCode": 137, "reason": "Error", "finishedAt": "2026-11-25T09:41:00Z"}}),
    )
    .unwrap();
    assert!(!super::reported_since_evicted(
        &opened("2026-11-25T09:40:05Z"),
        &older
    ));
    assert!(super::reported_since_evicted(
        &opened("2026-11-25T09:41:00Z"),
        &older
    ));
    // A crash-looping Pod is still failing: the cooldown alone decides.
    let crashing = pod(
        status(
            waiting("CrashLoopBackOff", "back-off"),
            terminated(1, "Error"),
            false,
            3,
        ),
        "Running",
        json!({}),
    );
    assert!(!super::reported_since_evicted(
        &opened("2026-11-25T09:40:05Z"),
        &crashing
    ));
}

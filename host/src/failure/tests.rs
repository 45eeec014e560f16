//! Each class on objects shaped the way the kubelet and the scheduler write them.

use super::*;
use serde_json::{Value, json};
use sre_e2e::fixtures::PodBuilder;

const UID: &str = "5b7c1f0e-3a2d-4c53-9d1e-0f6a8e2b7c41";

/// The Pod of Deployment `app` every test here is about, with the test's spec and status.
fn pod(spec: Value, status: Value) -> Pod {
    PodBuilder::new("app-7d9f8c6b5-x2k4p")
        .namespace("default")
        .uid(UID)
        .label("app", "app")
        .label("pod-template-hash", "7d9f8c6b5")
        .spec(spec)
        .status(status)
        .build()
}

fn event(reason: &str, type_: &str, message: &str, field_path: Option<&str>, count: i32) -> Event {
    serde_json::from_value(json!({
        "metadata": {"name": format!("app-7d9f8c6b5-x2k4p.{}", reason.to_lowercase()), "namespace": "default"},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "app-7d9f8c6b5-x2k4p",
                           "uid": UID, "apiVersion": "v1", "fieldPath": field_path},
        "reason": reason, "message": message, "type": type_, "count": count,
        "source": {"component": "kubelet", "host": "node-a"},
        "firstTimestamp": "2026-11-25T09:00:00Z", "lastTimestamp": "2026-11-25T09:40:00Z"
    }))
    .unwrap()
}

fn app_spec() -> Value {
    json!({"nodeName": "node-a", "containers": [{
        "name": "app", "image": "registry.example.com/app:1.8.2",
        "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8081, "scheme": "HTTP"}, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/live", "port": "http", "scheme": "HTTP"}, "periodSeconds": 10, "failureThreshold": 3}
    }]})
}

fn running_status(container_status: Value) -> Value {
    json!({"phase": "Running", "conditions": [
        {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
        {"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [container_status]})
}

#[test]
fn crash_loop_with_exit_code_and_restarts() {
    let p = pod(
        app_spec(),
        running_status(json!({
            "name": "app", "image": "registry.example.com/app:1.8.2", "imageID": "", "ready": false, "restartCount": 6,
            "state": {"waiting": {"reason": "CrashLoopBackOff",
                "message": "back-off 5m0s restarting failed container=app pod=app-7d9f8c6b5-x2k4p_default(5b7c1f0e)"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                "startedAt": "2026-11-25T09:41:05Z", "finishedAt": "2026-11-25T09:41:07Z"}}
        })),
    );
    let events = [event(
        "BackOff",
        "Warning",
        "Back-off restarting failed container app in pod app-7d9f8c6b5-x2k4p_default(5b7c1f0e)",
        Some("spec.containers{app}"),
        34,
    )];
    let found = detect(&p, &events);
    assert_eq!(found.len(), 1, "{found:#?}");
    let d = &found[0];
    assert_eq!(d.class, FailureClass::CrashLoopBackOff);
    assert_eq!(d.reason, "Error");
    assert_eq!(d.container.as_deref(), Some("app"));
    let evidence = d.evidence.join("\n");
    assert!(evidence.contains("restarted 6 times"), "{evidence}");
    assert!(
        evidence.contains("exited with code 1 (Error) after 2s"),
        "{evidence}"
    );
    assert!(evidence.contains("BackOff (x34"), "{evidence}");
}

#[test]
fn exit_code_127_is_command_not_found() {
    let p = pod(
        app_spec(),
        running_status(json!({
            "name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 127, "reason": "Error"}}
        })),
    );
    let d = &detect(&p, &[])[0];
    assert_eq!(d.reason, "CommandNotFound");
    assert!(
        d.evidence.iter().any(|e| e.contains("command not found")),
        "{:?}",
        d.evidence
    );
}

/// What a container that cannot be started or created looks like, by runtime: the class and
/// reason each becomes.
#[test]
fn a_command_the_runtime_cannot_start_is_read_from_its_message() {
    let runc = r#"failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: exec: "celery": executable file not found in $PATH: unknown"#;
    let not_root = r#"container has runAsNonRoot and image has non-numeric user (nobody), cannot verify user is non-root (pod: "app-7d9f8c6b5-x2k4p_default(5b7c1f0e)", container: app)"#;
    let cases = [
        // runc, read between back-offs: the kubelet's retry, the last run's StartError.
        (
            json!({"waiting": {"reason": "RunContainerError", "message": runc}}),
            json!({"terminated": {"exitCode": 128, "reason": "StartError", "message": runc}}),
            4,
            FailureClass::CrashLoopBackOff,
            "CommandNotFound",
        ),
        // runc, in its back-off: only the last state says why.
        (
            json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container=app"}}),
            json!({"terminated": {"exitCode": 128, "reason": "StartError",
                "message": "runc create failed: unable to start container process: error during container init: exec /usr/local/bin/api: exec format error: unknown"}}),
            4,
            FailureClass::CrashLoopBackOff,
            "ExecFormatError",
        ),
        // A StartError that is not about the command keeps its reason.
        (
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            json!({"terminated": {"exitCode": 128, "reason": "StartError",
                "message": "runc create failed: unable to start container process: error during container init: error mounting \"/data\" to rootfs at \"/etc/app\": not a directory: unknown"}}),
            4,
            FailureClass::CrashLoopBackOff,
            "StartError",
        ),
        (
            json!({"waiting": {"reason": "RunContainerError", "message": "context deadline exceeded"}}),
            json!({}),
            2,
            FailureClass::CrashLoopBackOff,
            "RunContainerError",
        ),
        // CRI-O with crun refuses at creation: never a restart.
        (
            json!({"waiting": {"reason": "CreateContainerError",
                "message": "container create failed: executable file `gunicorn` not found in $PATH: No such file or directory: OCI runtime attempted to invoke a command that was not found\n"}}),
            json!({}),
            0,
            FailureClass::CreateContainerConfigError,
            "CommandNotFound",
        ),
        (
            json!({"waiting": {"reason": "CreateContainerError",
                "message": "failed to generate container \"0f3c9a\" spec: failed to generate spec: no command specified"}}),
            json!({}),
            0,
            FailureClass::CreateContainerConfigError,
            "NoCommand",
        ),
        (
            json!({"waiting": {"reason": "CreateContainerError",
                "message": "failed to reserve container name \"app_app-7d9f8c6b5-x2k4p_default_5b7c1f0e_0\": name is reserved"}}),
            json!({}),
            0,
            FailureClass::CreateContainerConfigError,
            "CreateContainerError",
        ),
        (
            json!({"waiting": {"reason": "CreateContainerConfigError", "message": not_root}}),
            json!({}),
            0,
            FailureClass::CreateContainerConfigError,
            "RunAsNonRoot",
        ),
        (
            json!({"waiting": {"reason": "CreateContainerConfigError",
                "message": "container's runAsUser breaks non-root policy (pod: \"app-7d9f8c6b5-x2k4p_default(5b7c1f0e)\", container: app)"}}),
            json!({}),
            0,
            FailureClass::CreateContainerConfigError,
            "RunAsNonRoot",
        ),
    ];
    for (state, last_state, restarts, class, reason) in cases {
        let status = json!({
            "name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": restarts,
            "state": state, "lastState": last_state
        });
        let p = pod(app_spec(), running_status(status.clone()));
        assert!(gate::may_be_failing(&p), "the gate drops {status}");
        let found = detect(&p, &[]);
        assert_eq!(found.len(), 1, "{status}: {found:#?}");
        assert_eq!(
            (found[0].class, found[0].reason.as_str()),
            (class, reason),
            "{status}"
        );
        let waiting = status["state"]["waiting"]["message"].as_str();
        if let Some(message) = waiting {
            let evidence = found[0].evidence.join("\n");
            assert!(evidence.contains(message.trim()), "{evidence}");
        }
    }
}

/// A postStart hook that fails gets its container killed: the hook, not the application, is the
/// cause, whether the kubelet is read at once (`PostStartHookError`) or in the back-off that
/// follows (its `FailedPostStartHook` event). Another container's hook changes nothing here.
#[test]
fn a_failing_post_start_hook_is_named_as_the_cause() {
    let hook = r#"Exec lifecycle hook ([/bin/sh -c /app/warm.sh]) for Container "app" in Pod "app-7d9f8c6b5-x2k4p_default(5b7c1f0e)" failed - error: command '/bin/sh -c /app/warm.sh' exited with 127: , message: "/bin/sh: 1: /app/warm.sh: not found\n""#;
    let status = |state: Value| {
        running_status(json!({
            "name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": 4,
            "state": state,
            "lastState": {"terminated": {"exitCode": 137, "reason": "Error"}}
        }))
    };
    let at_once = pod(
        app_spec(),
        status(json!({"waiting": {"reason": "PostStartHookError", "message": hook}})),
    );
    let d = &detect(&at_once, &[])[0];
    assert_eq!(
        (d.class, d.reason.as_str()),
        (FailureClass::CrashLoopBackOff, "PostStartHookError")
    );
    assert!(gate::may_be_failing(&at_once));

    let backing_off = pod(
        app_spec(),
        status(json!({"waiting": {"reason": "CrashLoopBackOff"}})),
    );
    let events = [event(
        "FailedPostStartHook",
        "Warning",
        hook,
        Some("spec.containers{app}"),
        4,
    )];
    let d = &detect(&backing_off, &events)[0];
    assert_eq!(d.reason, "PostStartHookError");
    assert!(
        d.evidence.iter().any(|e| e.contains("FailedPostStartHook")),
        "{:?}",
        d.evidence
    );

    let elsewhere = [event(
        "FailedPostStartHook",
        "Warning",
        hook,
        Some("spec.containers{sidecar}"),
        4,
    )];
    assert_eq!(detect(&backing_off, &elsewhere)[0].reason, "Error");
}

/// The kubelet's own image verdicts keep their names: no registry was asked, so no pull cause
/// applies, and the status says all (no event read).
#[test]
fn image_failures_the_kubelet_decides_keep_its_reason() {
    for (reason, message) in [
        (
            "InvalidImageName",
            r#"Failed to apply default image tag "registry.example.com/Shop/App:2": couldn't parse image reference "registry.example.com/Shop/App:2": invalid reference format: repository name (Shop/App) must be lowercase"#,
        ),
        (
            "ErrImageNeverPull",
            r#"Container image "registry.example.com/app:2" is not present with pull policy of Never"#,
        ),
    ] {
        let p = pod(
            app_spec(),
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [{"name": "app", "image": "x", "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}}]}),
        );
        assert!(gate::may_be_failing(&p));
        let found = detect(&p, &[]);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(
            (found[0].class, found[0].reason.as_str()),
            (FailureClass::ImagePullBackOff, reason)
        );
        assert!(status_suffices(&p, &found), "{reason}");
    }
}

/// A Job's Pod (restartPolicy Never) fails once and is not restarted: phase Failed, the
/// container's current state its failed run. Each is reported, an OOM kill as one; a Pod that
/// succeeded, or whose failure came from its Node, is not a failed run.
#[test]
fn a_pod_that_failed_for_good_is_its_failed_run() {
    let failed = |terminated: Value, init: bool| {
        let status = json!({
            "name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": terminated}, "lastState": {}
        });
        let mut spec = app_spec();
        spec["restartPolicy"] = json!("Never");
        let mut pod_status = json!({"phase": "Failed", "conditions": [
            {"type": "Ready", "status": "False", "reason": "PodFailed"},
            {"type": "PodScheduled", "status": "True"}]});
        if init {
            spec["initContainers"] = json!([{"name": "app", "image": "x"}]);
            pod_status["initContainerStatuses"] = json!([status]);
        } else {
            pod_status["containerStatuses"] = json!([status]);
        }
        pod(spec, pod_status)
    };
    let cases = [
        (
            json!({"exitCode": 1, "reason": "Error", "startedAt": "2026-12-05T00:00:02Z", "finishedAt": "2026-12-05T00:00:04Z"}),
            false,
            FailureClass::CrashLoopBackOff,
            "Error",
        ),
        (
            json!({"exitCode": 127, "reason": "Error"}),
            true,
            FailureClass::CrashLoopBackOff,
            "CommandNotFound",
        ),
        (
            json!({"exitCode": 128, "reason": "StartError",
                "message": "runc create failed: unable to start container process: exec: \"migrate\": executable file not found in $PATH: unknown"}),
            false,
            FailureClass::CrashLoopBackOff,
            "CommandNotFound",
        ),
        (
            json!({"exitCode": 137, "reason": "OOMKilled"}),
            false,
            FailureClass::OomKilled,
            "OOMKilled",
        ),
    ];
    for (terminated, init, class, reason) in cases {
        let p = failed(terminated.clone(), init);
        assert!(gate::may_be_failing(&p), "the gate drops {terminated}");
        let found = detect(&p, &[]);
        assert_eq!(found.len(), 1, "{terminated}: {found:#?}");
        assert_eq!(
            (found[0].class, found[0].reason.as_str()),
            (class, reason),
            "{terminated}"
        );
        if class == FailureClass::CrashLoopBackOff {
            let evidence = found[0].evidence.join("\n");
            assert!(
                evidence.contains("failed and is not restarted"),
                "{evidence}"
            );
            assert!(
                evidence.contains(&format!(
                    "its run exited with code {}",
                    terminated["exitCode"]
                )),
                "{evidence}"
            );
        }
    }
    // A Pod stopped at its activeDeadlineSeconds: the deadline, not the kill's exit code.
    let mut late = failed(json!({"exitCode": 137, "reason": "Error"}), false);
    let status = late.status.as_mut().unwrap();
    status.reason = Some("DeadlineExceeded".into());
    status.message = Some("Pod was active on the node longer than the specified deadline".into());
    late.spec.as_mut().unwrap().active_deadline_seconds = Some(600);
    let found = detect(&late, &[]);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].reason, "DeadlineExceeded");
    assert!(
        found[0].evidence[0].contains("activeDeadlineSeconds (600s)"),
        "{:?}",
        found[0].evidence
    );
    // A Deployment's Pod (restartPolicy Always) fails only for its Node: a container the
    // runtime lost after a node restart is no failed run.
    let mut lost = failed(
        json!({"exitCode": 137, "reason": "ContainerStatusUnknown",
            "message": "The container could not be located when the pod was terminated"}),
        false,
    );
    lost.spec.as_mut().unwrap().restart_policy = Some("Always".into());
    assert!(detect(&lost, &[]).is_empty(), "{:#?}", detect(&lost, &[]));
    // A container that exited 0 in a Failed Pod (its sibling failed) is not the failure.
    let done = failed(json!({"exitCode": 0, "reason": "Completed"}), false);
    assert!(detect(&done, &[]).is_empty());
    assert!(!gate::may_be_failing(&done));
}

#[test]
fn oom_killed_crash_loop_is_oom_not_crash_loop() {
    let p = pod(
        app_spec(),
        running_status(json!({
            "name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": 7,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
        })),
    );
    let found = detect(&p, &[]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].class, FailureClass::OomKilled);
    let evidence = found[0].evidence.join("\n");
    assert!(
        evidence.contains("memory request 128Mi, limit 256Mi"),
        "{evidence}"
    );
    assert!(evidence.contains("code 137 (OOMKilled"), "{evidence}");
}

#[test]
fn oom_killed_then_running_again_is_still_reported() {
    let p = pod(
        app_spec(),
        running_status(json!({
            "name": "app", "image": "x", "imageID": "", "ready": true, "restartCount": 1,
            "state": {"running": {"startedAt": "2026-11-25T09:00:00Z"}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
        })),
    );
    assert_eq!(detect(&p, &[])[0].class, FailureClass::OomKilled);
}

#[test]
fn image_pull_not_found_and_auth_are_told_apart() {
    let status = |message: &str| {
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "app", "image": "registry.example.com/app:v2", "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ErrImagePull", "message": message}}}]})
    };
    let not_found = "rpc error: code = NotFound desc = failed to pull and unpack image \"registry.example.com/app:v2\": failed to resolve reference \"registry.example.com/app:v2\": registry.example.com/app:v2: not found";
    let d = &detect(&pod(app_spec(), status(not_found)), &[])[0];
    assert_eq!(
        (d.class, d.reason.as_str()),
        (FailureClass::ImagePullBackOff, "ImageNotFound")
    );
    let auth = "failed to pull and unpack image \"ghcr.io/acme/api:2.1.0\": failed to resolve reference \"ghcr.io/acme/api:2.1.0\": failed to authorize: failed to fetch anonymous token: unexpected status from GET request to https://ghcr.io/token?scope=repository%3Aacme%2Fapi%3Apull&service=ghcr.io: 401 Unauthorized";
    let d = &detect(&pod(app_spec(), status(auth)), &[])[0];
    assert_eq!(d.reason, "RegistryAuthFailed");
}

#[test]
fn config_error_names_the_missing_key_or_object() {
    let status = |message: &str| {
        json!({"phase": "Pending", "containerStatuses": [{"name": "app", "image": "x", "imageID": "",
            "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "CreateContainerConfigError", "message": message}}}]})
    };
    let d = &detect(
        &pod(
            app_spec(),
            status("couldn't find key DATABASE_URL in ConfigMap billing/billing-config"),
        ),
        &[],
    )[0];
    assert_eq!(d.class, FailureClass::CreateContainerConfigError);
    assert_eq!(d.reason, "ConfigMapKeyNotFound");
    assert!(
        d.evidence
            .contains(&"missing: key DATABASE_URL in ConfigMap billing/billing-config".to_string()),
        "{:?}",
        d.evidence
    );
    let d = &detect(
        &pod(
            app_spec(),
            status("secret \"ledger-db-credentials\" not found"),
        ),
        &[],
    )[0];
    assert_eq!(d.reason, "SecretNotFound");
    assert!(
        d.evidence
            .iter()
            .any(|e| e == "missing: Secret ledger-db-credentials")
    );
}

#[test]
fn unschedulable_pod_reads_the_scheduler() {
    let msg = "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.";
    let p = pod(
        json!({"containers": [{"name": "payment", "image": "x",
            "resources": {"requests": {"cpu": "500m", "memory": "3Gi"}, "limits": {"memory": "3Gi"}}}]}),
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": msg}]}),
    );
    let events = [event("FailedScheduling", "Warning", msg, None, 12)];
    let found = detect(&p, &events);
    assert_eq!(found.len(), 1);
    let d = &found[0];
    assert_eq!(
        (d.class, d.reason.as_str()),
        (FailureClass::Pending, "InsufficientMemory")
    );
    assert!(
        d.evidence
            .contains(&"scheduler: 3 node(s): Insufficient memory".to_string()),
        "{:?}",
        d.evidence
    );
    assert!(
        d.evidence
            .contains(&"the Pod requests cpu 500m and memory 3Gi in all".to_string()),
        "{:?}",
        d.evidence
    );
}

#[test]
fn pending_but_scheduled_pod_is_not_unschedulable() {
    let p = pod(
        app_spec(),
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
    );
    assert!(detect(&p, &[]).is_empty());
}

#[test]
fn failing_readiness_probe_on_an_unready_pod() {
    let p = pod(
        app_spec(),
        running_status(
            json!({"name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"running": {"startedAt": "2026-11-25T09:00:00Z"}}}),
        ),
    );
    let events = [event(
        "Unhealthy",
        "Warning",
        "Readiness probe failed: Get \"http://10.244.2.17:8081/healthz\": dial tcp 10.244.2.17:8081: connect: connection refused",
        Some("spec.containers{app}"),
        40,
    )];
    let found = detect(&p, &events);
    assert_eq!(found.len(), 1, "{found:#?}");
    let d = &found[0];
    assert_eq!(
        (d.class, d.reason.as_str()),
        (FailureClass::ProbeFailure, "ReadinessProbeFailed")
    );
    assert!(
        d.evidence
            .iter()
            .any(|e| e.contains("readinessProbe httpGet http:8081/healthz")),
        "{:?}",
        d.evidence
    );
    assert!(
        d.evidence
            .iter()
            .any(|e| e.contains("ports 8080/TCP (http)")),
        "{:?}",
        d.evidence
    );
}

#[test]
fn liveness_kills_are_a_probe_failure_not_a_crash_loop() {
    let p = pod(
        app_spec(),
        running_status(
            json!({"name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "Error"}}}),
        ),
    );
    let events = [
        event(
            "Unhealthy",
            "Warning",
            "Liveness probe failed: HTTP probe failed with statuscode: 503",
            Some("spec.containers{app}"),
            9,
        ),
        event(
            "Killing",
            "Normal",
            "Container app failed liveness probe, will be restarted",
            Some("spec.containers{app}"),
            3,
        ),
    ];
    let found = detect(&p, &events);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(
        (found[0].class, found[0].reason.as_str()),
        (FailureClass::ProbeFailure, "LivenessProbeFailed")
    );
}

#[test]
fn a_readiness_blip_on_a_ready_pod_and_a_healthy_restart_are_not_failures() {
    let p = pod(
        app_spec(),
        json!({"phase": "Running", "containerStatuses": [{"name": "app", "image": "x", "imageID": "", "ready": true,
            "restartCount": 1, "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
    );
    let events = [event(
        "Unhealthy",
        "Warning",
        "Readiness probe failed: connection refused",
        Some("spec.containers{app}"),
        1,
    )];
    assert!(detect(&p, &events).is_empty());
}

#[test]
fn init_container_crash_loop_and_events_of_a_previous_pod_with_the_same_name() {
    let p = pod(
        json!({"nodeName": "node-a", "initContainers": [{"name": "migrate", "image": "x", "command": ["/bin/migrate", "--up"]}],
               "containers": [{"name": "app", "image": "x"}]}),
        json!({"phase": "Pending",
            "initContainerStatuses": [{"name": "migrate", "image": "x", "imageID": "", "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}}}],
            "containerStatuses": [{"name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "PodInitializing"}}}]}),
    );
    let mut stale = event(
        "Unhealthy",
        "Warning",
        "Readiness probe failed: x",
        Some("spec.containers{app}"),
        5,
    );
    stale.involved_object.uid = Some("another-pod-uid".into());
    let found = detect(&p, &[stale]);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].container.as_deref(), Some("migrate"));
    assert!(
        found[0]
            .evidence
            .iter()
            .any(|e| e.starts_with("init container migrate"))
    );
    assert!(
        found[0]
            .evidence
            .iter()
            .any(|e| e.contains("/bin/migrate --up"))
    );
}

#[test]
fn succeeded_pods_are_healthy() {
    let p = pod(
        app_spec(),
        json!({"phase": "Succeeded", "containerStatuses": [{"name": "app", "image": "x", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
    );
    assert!(detect(&p, &[]).is_empty());
}

/// An evicted Pod as the kubelet leaves it (1.27+): `Failed`, reason `Evicted`, its message,
/// a `DisruptionTarget` condition and its containers stopped with 137 (or unknown): the cause
/// is read from the message, whichever of the kubelet's formats it is, and never taken for a
/// crash or an OOM kill of the workload's own.
#[test]
fn evictions_are_told_by_what_the_node_or_the_pod_ran_out_of() {
    let evicted = |message: &str, state: Value| {
        pod(
            app_spec(),
            json!({"phase": "Failed", "reason": "Evicted", "message": message,
                "conditions": [
                    {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet", "message": message},
                    {"type": "Ready", "status": "False", "reason": "PodFailed"}],
                "containerStatuses": [{"name": "app", "image": "registry.example.com/app:1.8.2", "imageID": "",
                    "ready": false, "restartCount": 0, "state": state}]}),
        )
    };
    let killed = json!({"terminated": {"exitCode": 137, "reason": "Error"}});
    let unknown = json!({"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown",
        "message": "The container could not be located when the pod was terminated"}});
    let oom = json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}});
    let cases = [
        (
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 91388Ki. Container app was using 1234576Ki, request is 128Mi, has larger consumption of memory. ",
            &killed,
            "MemoryPressure",
            Some("app"),
        ),
        (
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 42Mi. ",
            &oom,
            "MemoryPressure",
            None,
        ),
        (
            "The node was low on resource: ephemeral-storage. Threshold quantity: 2146223340, available: 1913276Ki. Container app was using 10823620Ki, request is 0, has larger consumption of ephemeral-storage. ",
            &unknown,
            "DiskPressure",
            Some("app"),
        ),
        (
            "The node was low on resource: inodes. Threshold quantity: 3276, available: 3012. ",
            &killed,
            "DiskPressure",
            None,
        ),
        (
            "The node was low on resource: pids. Threshold quantity: 1000, available: 912. ",
            &killed,
            "PIDPressure",
            None,
        ),
        (
            r#"Container app exceeded its local ephemeral storage limit "1Gi". "#,
            &killed,
            "EphemeralStorageLimit",
            Some("app"),
        ),
        (
            r#"Usage of EmptyDir volume "cache" exceeds the limit "512Mi". "#,
            &killed,
            "EphemeralStorageLimit",
            None,
        ),
        (
            "Pod ephemeral local storage usage exceeds the total limit of containers 2Gi. ",
            &unknown,
            "EphemeralStorageLimit",
            None,
        ),
        (
            "Pod was evicted for a reason this kubelet does not say.",
            &killed,
            "Evicted",
            None,
        ),
    ];
    for (message, state, reason, container) in cases {
        let p = evicted(message, state.clone());
        assert!(gate::may_be_failing(&p), "{message}");
        let events = [event("Evicted", "Warning", message.trim(), None, 1)];
        let found = detect(&p, &events);
        assert_eq!(found.len(), 1, "{message}: {found:?}");
        let d = &found[0];
        assert_eq!(d.class, FailureClass::Evicted, "{message}");
        assert_eq!(d.reason, reason, "{message}");
        assert_eq!(d.container.as_deref(), container, "{message}");
        assert_eq!(EvictionCause::parse(&d.reason).as_str(), reason);
        assert!(
            d.evidence[0].starts_with("the kubelet evicted the Pod from node node-a: ")
                && d.evidence[0].contains(message.trim()),
            "{:?}",
            d.evidence
        );
        assert!(
            d.evidence
                .contains(&"DisruptionTarget=True (TerminationByKubelet)".to_string())
        );
        assert!(
            d.evidence
                .iter()
                .any(|e| e.starts_with("event Warning Evicted"))
        );
    }
    let parsed = EvictionMessage::parse(cases[0].0);
    assert_eq!(parsed.threshold, Some(("100Mi".into(), "91388Ki".into())));
    assert_eq!(
        parsed.heaviest,
        Some(ContainerUse {
            container: "app".into(),
            using: "1234576Ki".into(),
            request: "128Mi".into(),
            resource: "memory".into(),
        })
    );
    assert_eq!(
        EvictionMessage::parse(cases[6].0).storage_limit,
        Some((StorageLimit::EmptyDir("cache".into()), "512Mi".into()))
    );
    // A Pod that failed on its own (a Job's container exiting 1) is not an eviction.
    let failed = pod(
        app_spec(),
        json!({"phase": "Failed", "reason": "Error", "containerStatuses": [{"name": "app", "image": "x",
            "imageID": "", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
    );
    assert!(
        detect(&failed, &[])
            .iter()
            .all(|d| d.class != FailureClass::Evicted)
    );
}

/// Pods their kubelet refused at admission (`rejectPod`: `Failed`, the admit handler's reason,
/// "Pod was rejected: " and its message, no container ever started) and Pods a graceful node
/// shutdown ended (reason `Terminated`, `DisruptionTarget` `TerminationByKubelet`, containers
/// killed): the Node ended them, so they are `Evicted` reports with the kubelet's own reason.
/// A Pod that failed for its own deadline or a reason the kubelet does not give is not.
#[test]
fn pods_refused_by_their_kubelet_or_ended_by_a_node_shutdown() {
    let refused = |reason: &str, message: &str| {
        pod(
            app_spec(),
            json!({"phase": "Failed", "reason": reason, "message": message, "qosClass": "Burstable",
                "startTime": "2026-11-25T09:00:01Z"}),
        )
    };
    let cases = [
        (
            "OutOfcpu",
            "Pod was rejected: Node didn't have enough resource: cpu, requested: 2000, used: 3500, capacity: 4000",
            "OutOfcpu",
            Some("it requests 2 cpu; the Pods already admitted on the node use 3500m of its 4 cpu"),
        ),
        (
            "OutOfmemory",
            "Pod was rejected: Node didn't have enough resource: memory, requested: 2147483648, used: 7516192768, capacity: 8589934592",
            "OutOfmemory",
            Some(
                "it requests 2Gi memory; the Pods already admitted on the node use 7Gi of its 8Gi memory",
            ),
        ),
        (
            "OutOfnvidia.com/gpu",
            "Pod was rejected: Node didn't have enough resource: nvidia.com/gpu, requested: 1, used: 4, capacity: 4",
            "OutOfnvidia.com/gpu",
            Some(
                "it requests 1 nvidia.com/gpu; the Pods already admitted on the node use 4 of its 4 nvidia.com/gpu",
            ),
        ),
        (
            "NodeAffinity",
            "Pod was rejected: Predicate NodeAffinity failed",
            "NodeAffinity",
            None,
        ),
        (
            "UnexpectedAdmissionError",
            "Pod was rejected: Allocate failed due to no healthy devices present; cannot allocate unhealthy devices example.com/fpga, which is unexpected",
            "UnexpectedAdmissionError",
            None,
        ),
        // A reason this table does not know, with the kubelet's prefix; and one no kubelet
        // writes (it is the status writer's text): both the generic refusal.
        (
            "SysctlForbidden",
            "Pod was rejected: forbidden sysctl",
            "Rejected",
            None,
        ),
        (
            "OutOf$(curl evil)\u{1b}]52",
            "Pod was rejected: Node didn't have enough resource",
            "Rejected",
            None,
        ),
        (
            "NodeShutdown",
            "Pod was rejected as the node is shutting down.",
            "NodeShutdown",
            None,
        ),
    ];
    for (status_reason, message, reason, shortfall) in cases {
        let p = refused(status_reason, message);
        assert!(gate::may_be_failing(&p), "{message}");
        let found = detect(&p, &[event(status_reason, "Warning", message, None, 1)]);
        assert_eq!(found.len(), 1, "{message}: {found:?}");
        let d = &found[0];
        assert_eq!(
            (d.class, d.reason.as_str()),
            (FailureClass::Evicted, reason),
            "{message}"
        );
        assert!(d.evidence[0].contains("node node-a"), "{:?}", d.evidence);
        if let Some(shortfall) = shortfall {
            assert!(d.evidence[0].contains(shortfall), "{:?}", d.evidence);
        }
        let expected = if reason == "NodeShutdown" {
            EvictionCause::NodeShutdown
        } else {
            EvictionCause::Rejected
        };
        assert_eq!(EvictionCause::parse(&d.reason), expected, "{reason}");
        // A refused Pod never ran: it is reported once from when it started.
        assert_eq!(
            evicted_at(&p).map(|t| t.to_string()),
            Some("2026-11-25T09:00:01Z".to_string())
        );
    }

    let shutdown = "Pod was terminated in response to imminent node shutdown.";
    let ended = pod(
        app_spec(),
        json!({"phase": "Failed", "reason": "Terminated", "message": shutdown,
            "conditions": [
                {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet", "message": shutdown,
                 "lastTransitionTime": "2026-11-25T09:30:00Z"},
                {"type": "Ready", "status": "False", "reason": "PodFailed"}],
            "containerStatuses": [{"name": "app", "image": "registry.example.com/app:1.8.2", "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 143, "reason": "Error", "finishedAt": "2026-11-25T09:30:20Z"}}}]}),
    );
    assert!(gate::may_be_failing(&ended));
    let found = detect(&ended, &[]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].class, found[0].reason.as_str()),
        (FailureClass::Evicted, "NodeShutdown")
    );
    assert!(found[0].evidence[0].contains("as the node shut down"));
    assert!(
        found[0]
            .evidence
            .contains(&"DisruptionTarget=True (TerminationByKubelet)".to_string())
    );
    assert_eq!(
        evicted_at(&ended).map(|t| t.to_string()),
        Some("2026-11-25T09:30:00Z".to_string())
    );

    // Failed for reasons of the Pod's own: its activeDeadlineSeconds, a terminated container
    // of a Pod that is not about a shutdown.
    let deadline = refused(
        "DeadlineExceeded",
        "Pod was active on the node longer than the specified deadline",
    );
    let terminated = refused("Terminated", "Pod was terminated by its owner.");
    for p in [&deadline, &terminated] {
        assert!(
            detect(p, &[])
                .iter()
                .all(|d| d.class != FailureClass::Evicted),
            "{:?}",
            p.status
        );
        assert!(evicted_at(p).is_none());
    }
}

/// A Pod whose volume does not mount, as the kubelet leaves it: `Pending` on its node, every
/// container waiting in `ContainerCreating`, and only `FailedMount` events say why (a ConfigMap
/// or Secret missing, or a key its `items` name). The same class and cause as the same
/// reference from an env var, read back from the report's evidence.
#[test]
fn volumes_that_do_not_mount_for_missing_configuration() {
    let spec = json!({"nodeName": "node-a", "containers": [{"name": "app", "image": "registry.example.com/app:1.8.2"}],
        "volumes": [
            {"name": "config", "configMap": {"name": "app-config", "items": [{"key": "app.properties", "path": "app.properties"}]}},
            {"name": "tls", "secret": {"secretName": "app-tls"}},
            {"name": "bundle", "projected": {"sources": [
                {"configMap": {"name": "ca-bundle"}},
                {"secret": {"name": "signing", "items": [{"key": "key.pem", "path": "key.pem"}]}}]}}]});
    let starting = json!({"phase": "Pending", "qosClass": "BestEffort", "startTime": "2026-11-25T09:00:01Z",
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": "False"},
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "message": "containers with unready status: [app]"},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-25T09:00:00Z"}],
        "containerStatuses": [{"name": "app", "image": "registry.example.com/app:1.8.2", "imageID": "",
            "ready": false, "restartCount": 0, "started": false,
            "state": {"waiting": {"reason": "ContainerCreating"}}}]});
    let p = pod(spec.clone(), starting.clone());
    assert!(gate::may_be_failing(&p), "a starting Pod is looked at");
    assert!(detect(&p, &[]).is_empty(), "nothing without its events");
    let cases = [
        (
            r#"MountVolume.SetUp failed for volume "config" : configmap "app-config" not found"#,
            "ConfigMapNotFound",
            "missing: ConfigMap app-config, mounted as volume config",
        ),
        (
            r#"MountVolume.SetUp failed for volume "config" : configmap references non-existent config key: app.properties"#,
            "ConfigMapKeyNotFound",
            "missing: key app.properties in ConfigMap app-config, mounted as volume config",
        ),
        (
            r#"MountVolume.SetUp failed for volume "tls" : secret "app-tls" not found"#,
            "SecretNotFound",
            "missing: Secret app-tls, mounted as volume tls",
        ),
        (
            r#"MountVolume.SetUp failed for volume "bundle" : references non-existent secret key: key.pem"#,
            "SecretKeyNotFound",
            "missing: key key.pem in Secret signing, mounted as volume bundle",
        ),
    ];
    for (message, reason, missing) in cases {
        let events = [
            event(
                "Scheduled",
                "Normal",
                "Successfully assigned default/app-7d9f8c6b5-x2k4p to node-a",
                None,
                1,
            ),
            event("FailedMount", "Warning", message, None, 9),
        ];
        let found = detect(&p, &events);
        assert_eq!(found.len(), 1, "{message}: {found:?}");
        let d = &found[0];
        assert_eq!(
            (d.class, d.reason.as_str()),
            (FailureClass::CreateContainerConfigError, reason),
            "{message}"
        );
        assert!(
            d.evidence.contains(&missing.to_string()),
            "{:?}",
            d.evidence
        );
        assert!(
            d.evidence
                .iter()
                .any(|e| e.starts_with("event Warning FailedMount (x9")),
            "{:?}",
            d.evidence
        );
        // What the playbook and the incident key read back from the report.
        let back = d.evidence.iter().find_map(|e| missing_config(e)).unwrap();
        assert_eq!(format!("missing: {}", back.describe()), missing);
    }
    // The kubelet's later summary names no cause; with it alone nothing is detected.
    let timeout = "Unable to attach or mount volumes: unmounted volumes=[config], unattached volumes=[config kube-api-access-x2k4p]: timed out waiting for the condition";
    assert!(detect(&p, &[event("FailedMount", "Warning", timeout, None, 3)]).is_empty());
    // A Pod that started after all: old FailedMount events are history.
    let running = running_status(
        json!({"name": "app", "image": "registry.example.com/app:1.8.2",
        "imageID": "", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2026-11-25T09:05:00Z"}}}),
    );
    let mount = event("FailedMount", "Warning", cases[0].0, None, 4);
    assert!(
        detect(&pod(spec.clone(), running), std::slice::from_ref(&mount))
            .iter()
            .all(|d| d.class != FailureClass::CreateContainerConfigError)
    );
    // A volume name that is no volume name (a forged event) names nothing.
    let forged = r#"MountVolume.SetUp failed for volume "Config$(x)" : configmap references non-existent config key: a"#;
    assert!(detect(&p, &[event("FailedMount", "Warning", forged, None, 1)]).is_empty());
    assert_eq!(
        starting_since(&p).map(|t| t.to_string()).as_deref(),
        Some("2026-11-25T09:00:00Z")
    );
}

/// A Pod whose sandbox the kubelet cannot create (`FailedCreatePodSandBox`, the Pod
/// `ContainerCreating`): the CNI plugin failing, the Node's Pod addresses used up, the pause
/// image not pulled, the runtime timing out. A Pending report of the Node, with the cause read.
#[test]
fn sandboxes_the_kubelet_cannot_create() {
    let spec = json!({"nodeName": "node-a", "containers": [{"name": "app", "image": "registry.example.com/app:1.8.2"}]});
    let starting = json!({"phase": "Pending", "conditions": [
            {"type": "PodReadyToStartContainers", "status": "False"},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-25T09:00:00Z"}],
        "containerStatuses": [{"name": "app", "image": "registry.example.com/app:1.8.2", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]});
    let p = pod(spec, starting);
    let cases = [
        (
            r#"Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox "6f1c2a": plugin type="calico" failed (add): error getting ClusterInformation: connection is unauthorized: Unauthorized"#,
            "NetworkSetupFailed",
            "the calico CNI plugin fails to set up its network",
        ),
        (
            r#"Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox "0b9e44": plugin type="bridge" name="kindnet" failed (add): failed to allocate for range 0: no IP addresses available in range set: 10.244.1.1-10.244.1.254"#,
            "NetworkSetupFailed",
            "the node has no Pod IP address left to give it",
        ),
        (
            r#"Failed to create pod sandbox: rpc error: code = Unknown desc = failed to get sandbox image "registry.k8s.io/pause:3.10": failed to pull image "registry.k8s.io/pause:3.10": failed to resolve reference: dial tcp 34.96.108.209:443: i/o timeout"#,
            "PodSandboxFailed",
            "the container runtime cannot pull the sandbox image registry.k8s.io/pause:3.10",
        ),
        (
            "Failed to create pod sandbox: rpc error: code = DeadlineExceeded desc = context deadline exceeded",
            "PodSandboxFailed",
            "the container runtime fails to create it",
        ),
    ];
    for (message, reason, what) in cases {
        let found = detect(
            &p,
            &[event(
                "FailedCreatePodSandBox",
                "Warning",
                message,
                None,
                12,
            )],
        );
        assert_eq!(found.len(), 1, "{message}: {found:?}");
        let d = &found[0];
        assert_eq!(
            (d.class, d.reason.as_str()),
            (FailureClass::Pending, reason),
            "{message}"
        );
        assert!(
            d.evidence[0].contains("node node-a") && d.evidence[0].ends_with(what),
            "{:?}",
            d.evidence
        );
        assert!(
            d.evidence
                .iter()
                .any(|e| e.starts_with("event Warning FailedCreatePodSandBox (x12")),
            "{:?}",
            d.evidence
        );
        let parsed = d.evidence.iter().find_map(|e| SandboxFailure::parse(e));
        assert_eq!(parsed.map(|f| f.describe()).as_deref(), Some(what));
    }
    // Another reason's event with these words is not the kubelet's sandbox failure.
    assert!(detect(&p, &[event("Failed", "Warning", cases[0].0, None, 1)]).is_empty());
}

/// A Pod whose volume the attach/detach controller cannot attach to its Node
/// (`FailedAttachVolume`): a ReadWriteOnce volume still attached elsewhere (the Pods that hold
/// it named, bounded), or the driver failing. A Pending report, the holders read back.
#[test]
fn volumes_that_cannot_be_attached_to_the_pods_node() {
    let spec = json!({"nodeName": "node-b", "containers": [{"name": "app", "image": "registry.example.com/app:1.8.2"}]});
    let starting = json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-25T09:00:00Z"}],
        "containerStatuses": [{"name": "app", "image": "registry.example.com/app:1.8.2", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]});
    let p = pod(spec, starting);
    let attach = |message: &str| {
        let mut e = event("FailedAttachVolume", "Warning", message, None, 1);
        e.source = Some(k8s_openapi::api::core::v1::EventSource {
            component: Some("attachdetach-controller".into()),
            host: None,
        });
        e
    };
    let cases: [(&str, bool, &[&str]); 5] = [
        (
            r#"Multi-Attach error for volume "pvc-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d" Volume is already used by pod(s) app-5d8f7c9b6-q7w2e"#,
            true,
            &["app-5d8f7c9b6-q7w2e"],
        ),
        (
            r#"Multi-Attach error for volume "pvc-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d" Volume is already exclusively attached to one node and can't be attached to another"#,
            true,
            &[],
        ),
        (
            r#"AttachVolume.Attach failed for volume "pvc-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d" : rpc error: code = Internal desc = Could not attach volume "vol-0f1e2d3c" to node "i-0a1b2c3d": attachment of disk "vol-0f1e2d3c" failed, expected device to be attached but was attaching"#,
            false,
            &[],
        ),
        // Only names are kept, and a few: a forged list cannot fill the report.
        (
            r#"Multi-Attach error for volume "pvc-9" Volume is already used by pods a-1, b-2, c-3, d-4, e-5, f-6 on node node-a"#,
            true,
            &["a-1", "b-2", "c-3", "d-4", "e-5"],
        ),
        (
            r#"Multi-Attach error for volume "pvc-9" Volume is already used by pods a-1, $(x) b-2"#,
            true,
            &["a-1"],
        ),
    ];
    for (message, multi, holders) in cases {
        let found = detect(&p, &[attach(message)]);
        assert_eq!(found.len(), 1, "{message}: {found:?}");
        let d = &found[0];
        assert_eq!(
            (d.class, d.reason.as_str()),
            (FailureClass::Pending, "VolumeAttachFailed")
        );
        assert!(d.evidence[0].contains("node node-b"), "{:?}", d.evidence);
        let back = d
            .evidence
            .iter()
            .find_map(|e| AttachFailure::parse(e))
            .unwrap();
        assert_eq!(back.multi_attach, multi, "{message}");
        assert_eq!(back.holders, holders, "{message}");
    }
}

/// A Pod on a Node that stopped reporting, as the control plane leaves it: first the node
/// controller's `Ready=False` (no reason; the containers' statuses, the kubelet's, still say
/// ready), then the taint eviction's `DisruptionTarget` and a deletion that never completes.
/// Pods that are not ready for their own reasons are not taken for it.
#[test]
fn pods_stranded_on_a_node_that_stopped_reporting() {
    let running_ready = json!({"name": "app", "image": "registry.example.com/app:1.8.2", "imageID": "",
        "ready": true, "started": true, "restartCount": 0, "state": {"running": {"startedAt": "2026-11-25T08:00:00Z"}}});
    let marked = pod(
        app_spec(),
        json!({"phase": "Running", "conditions": [
            {"type": "PodReadyToStartContainers", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "False", "lastTransitionTime": "2026-11-25T09:40:51Z"},
            {"type": "ContainersReady", "status": "True"},
            {"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [running_ready.clone()]}),
    );
    assert!(gate::may_be_failing(&marked));
    let events = [event(
        "NodeNotReady",
        "Warning",
        "Node is not ready",
        None,
        1,
    )];
    let found = detect(&marked, &events);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].class, FailureClass::Evicted);
    assert_eq!(found[0].reason, "NodeNotReady");
    assert!(found[0].evidence[0].contains("node node-a stopped reporting"));
    assert!(
        found[0]
            .evidence
            .iter()
            .any(|e| e.contains("NodeNotReady") && e.contains("Node is not ready"))
    );

    let mut deleting = marked.clone();
    deleting.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-11-25T09:45:51Z".parse().unwrap(),
        ));
    deleting.status.as_mut().unwrap().conditions.as_mut().unwrap().insert(
        0,
        serde_json::from_value(json!({"type": "DisruptionTarget", "status": "True",
            "reason": "DeletionByTaintManager", "message": "Taint manager: deleting due to NoExecute taint",
            "lastTransitionTime": "2026-11-25T09:45:51Z"}))
        .unwrap(),
    );
    let found = detect(&deleting, &[]);
    assert_eq!(found[0].reason, "NodeNotReady");
    assert!(found[0].evidence.contains(&"DisruptionTarget=True (DeletionByTaintManager): Taint manager: deleting due to NoExecute taint".to_string()));
    assert!(
        found[0]
            .evidence
            .iter()
            .any(|e| e.starts_with("deletion requested at 2026-11-25T09:45:51"))
    );

    // Not ready for reasons of its own: a readiness gate, a failing probe, a healthy Pod.
    let gated = pod(
        app_spec(),
        json!({"phase": "Running", "conditions": [
            {"type": "Ready", "status": "False", "reason": "ReadinessGatesNotReady", "message": "corresponding condition of pod readiness gate \"target-health\" does not exist."},
            {"type": "ContainersReady", "status": "True"}],
            "containerStatuses": [running_ready.clone()]}),
    );
    let mut unready = running_ready.clone();
    unready["ready"] = false.into();
    let probe = pod(app_spec(), running_status(unready));
    let healthy = pod(
        app_spec(),
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [running_ready]}),
    );
    for p in [&gated, &probe, &healthy] {
        assert!(
            detect(p, &[])
                .iter()
                .all(|d| d.class != FailureClass::Evicted),
            "{p:?}"
        );
    }
    assert!(!gate::may_be_failing(&healthy) && !gate::may_be_failing(&gated));
}

/// A report opened without the Pod's events says what one opened with them would: the status
/// names the failure in full and nothing running could fail a probe. Otherwise the events are
/// read (a crash loop may be a liveness kill; a bare back-off message names no cause).
#[test]
fn the_status_alone_suffices_only_when_events_could_add_nothing() {
    let waiting = |reason: &str, message: &str| {
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [{"name": "app", "image": "registry.example.com/app:v2", "imageID": "",
                "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": reason, "message": message}}}]})
    };
    let suffices = |p: &Pod| status_suffices(p, &detect(p, &[]));
    // kubelet 1.32+: the back-off message carries the pull error.
    let auth = "Back-off pulling image \"registry.example.com/app:v2\": ErrImagePull: failed to pull and unpack image \"registry.example.com/app:v2\": failed to resolve reference \"registry.example.com/app:v2\": pull access denied, repository does not exist or may require authorization: authorization failed: 401 Unauthorized";
    let p = pod(app_spec(), waiting("ImagePullBackOff", auth));
    assert!(suffices(&p));
    // Read without events and with them: the same class and cause.
    let events = [event(
        "Failed",
        "Warning",
        &format!("Failed to pull image \"registry.example.com/app:v2\": {auth}"),
        Some("spec.containers{app}"),
        4,
    )];
    let (alone, with_events) = (&detect(&p, &[])[0], &detect(&p, &events)[0]);
    assert_eq!(
        (alone.class, &alone.reason),
        (with_events.class, &with_events.reason)
    );
    // An older kubelet's back-off message names no cause: the events do.
    let bare = pod(
        app_spec(),
        waiting(
            "ImagePullBackOff",
            "Back-off pulling image \"registry.example.com/app:v2\"",
        ),
    );
    assert!(!suffices(&bare));
    assert_eq!(detect(&bare, &events)[0].reason, "RegistryAuthFailed");
    // The missing key is in the waiting message; an unparsed message is not enough.
    let config = waiting(
        "CreateContainerConfigError",
        "couldn't find key DATABASE_URL in ConfigMap default/app-config",
    );
    assert!(suffices(&pod(app_spec(), config)));
    let vague = waiting("CreateContainerConfigError", "something else went wrong");
    assert!(!suffices(&pod(app_spec(), vague)));
    // The scheduler's condition message, or only its events.
    let spec = json!({"containers": [{"name": "app", "image": "x"}]});
    let unscheduled = |message: Option<&str>| {
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": message}]})
    };
    let msg = "0/3 nodes are available: 3 Insufficient memory.";
    assert!(suffices(&pod(spec.clone(), unscheduled(Some(msg)))));
    assert!(!suffices(&pod(spec, unscheduled(None))));
    // A crash loop may be a liveness kill, which only the events tell.
    let crash = running_status(
        json!({"name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": 3,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 137, "reason": "Error"}}}),
    );
    assert!(!suffices(&pod(app_spec(), crash)));
    // A running sidecar can fail a probe while the other container cannot pull.
    let mut two = waiting("ImagePullBackOff", auth);
    two["containerStatuses"].as_array_mut().unwrap().push(
        json!({"name": "proxy", "image": "envoy", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"running": {"startedAt": "2026-11-25T09:00:00Z"}}}),
    );
    assert!(!suffices(&pod(app_spec(), two)));
    // Nothing shown: the events are all there is.
    assert!(!status_suffices(
        &pod(app_spec(), waiting("ContainerCreating", "")),
        &[]
    ));
}

#[test]
fn an_init_container_that_runs_for_five_minutes_is_stuck_but_a_sidecar_is_not() {
    let now: k8s_openapi::jiff::Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
    let initializing = |init: Value, started: &str| {
        let mut spec = app_spec();
        spec["initContainers"] = init;
        pod(
            spec,
            json!({"phase": "Pending", "conditions": [
                {"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized"},
                {"type": "PodScheduled", "status": "True"}],
                "initContainerStatuses": [
                    {"name": "istio-proxy", "ready": true, "restartCount": 0, "image": "istio/proxyv2", "imageID": "",
                     "state": {"running": {"startedAt": "2026-11-25T09:00:00Z"}}},
                    {"name": "wait-for-db", "ready": false, "restartCount": 0, "image": "busybox", "imageID": "",
                     "state": {"running": {"startedAt": started}}}],
                "containerStatuses": [{"name": "app", "ready": false, "restartCount": 0, "image": "app", "imageID": "",
                    "state": {"waiting": {"reason": "PodInitializing"}}}]}),
        )
    };
    let both = json!([
        {"name": "istio-proxy", "image": "istio/proxyv2", "restartPolicy": "Always"},
        {"name": "wait-for-db", "image": "busybox"}]);
    // Running for an hour, after a native sidecar that runs for the Pod's life.
    let stuck = initializing(both.clone(), "2026-11-25T09:00:00Z");
    assert!(may_be_failing(&stuck));
    assert!(detect(&stuck, &[]).is_empty(), "no event or reason says so");
    let d = detect_init_running(&stuck, now, INIT_STUCK_AFTER).expect("stuck");
    assert_eq!(
        (d.class, d.reason.as_str(), d.container.as_deref()),
        (
            FailureClass::Pending,
            "InitContainerRunning",
            Some("wait-for-db")
        )
    );
    assert!(
        d.evidence[0].contains("running for 60m"),
        "{:?}",
        d.evidence
    );
    // Four minutes: still starting.
    assert!(
        detect_init_running(
            &initializing(both.clone(), "2026-11-25T09:56:00Z"),
            now,
            INIT_STUCK_AFTER
        )
        .is_none()
    );
    // `--init-timeout 2m`: four minutes is stuck then.
    assert!(
        detect_init_running(
            &initializing(both.clone(), "2026-11-25T09:56:00Z"),
            now,
            std::time::Duration::from_secs(120)
        )
        .is_some_and(|d| d.evidence[0].contains("running for 4m"))
    );
    // The sidecar alone running for an hour is no stuck init container.
    let sidecar_only = json!([
        {"name": "istio-proxy", "image": "istio/proxyv2", "restartPolicy": "Always"},
        {"name": "wait-for-db", "image": "busybox"}]);
    let mut done = initializing(sidecar_only, "2026-11-25T09:00:00Z");
    let statuses = done
        .status
        .as_mut()
        .unwrap()
        .init_container_statuses
        .as_mut()
        .unwrap();
    statuses[1].state = Some(
        serde_json::from_value(json!({"terminated": {"exitCode": 0, "reason": "Completed"}}))
            .unwrap(),
    );
    assert!(detect_init_running(&done, now, INIT_STUCK_AFTER).is_none());
    // A Pod past its init containers is not Pending.
    let mut running = stuck.clone();
    running.status.as_mut().unwrap().phase = Some("Running".into());
    assert!(detect_init_running(&running, now, INIT_STUCK_AFTER).is_none());
}

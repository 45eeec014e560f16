//! The harness's own tests: a real control plane starts, kwok's nodes are Ready, each fault
//! stage writes the Pod status a kubelet would, the real scheduler explains a Pending Pod,
//! logs and previous logs are served through the API, and nothing is left behind.
//!
//! One cluster serves all the checks of `cluster_end_to_end` (start-up dominates the cost);
//! `failed_component_is_named` starts a broken one. With `SRE_OPERATOR_E2E_KUBECONFIG` set,
//! `cluster_end_to_end` runs against that cluster (which must have been started by this
//! harness, e.g. with `tests/cluster/up.sh`, for the fault stages and logs) and skips the
//! clean-up checks.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Node, Pod};
use kube::api::{Api, ListParams, LogParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use sre_e2e::fixtures::{DeploymentBuilder, PodBuilder};
use sre_e2e::{ClusterOptions, NodeSpec, TestCluster, fault, wait};

/// Waits until `done` accepts the Pod; on timeout fails showing it.
async fn wait_pod(
    pods: &Api<Pod>,
    name: &str,
    timeout: Duration,
    done: impl Fn(&Pod) -> bool,
) -> Result<Pod> {
    wait::until(pods, name, timeout, move |p: Option<&Pod>| {
        p.is_some_and(&done)
    })
    .await?
    .with_context(|| format!("pod {name} is gone"))
}

/// Waits until an event with `reason` about `object` exists; returns its message.
async fn wait_event(
    events: &Api<Event>,
    object: &str,
    reason: &str,
    timeout: Duration,
) -> Result<String> {
    let about = format!("involvedObject.name={object}");
    let config = watcher::Config::default().fields(&about);
    if let Some(e) = wait::first(events, config, timeout, |e| {
        e.reason.as_deref() == Some(reason)
    })
    .await?
    {
        return Ok(e.message.unwrap_or_default());
    }
    let seen: Vec<_> = events
        .list(&ListParams::default().fields(&about))
        .await?
        .items
        .into_iter()
        .map(|e| (e.reason, e.message))
        .collect();
    bail!("no {reason} event for {object} after {timeout:?}; events: {seen:?}");
}

fn find_status<'a>(pod: &'a Pod, name: &str, init: bool) -> Option<&'a ContainerStatus> {
    let s = pod.status.as_ref()?;
    let list = if init {
        s.init_container_statuses.as_ref()
    } else {
        s.container_statuses.as_ref()
    };
    list?.iter().find(|c| c.name == name)
}

fn main_status<'a>(pod: &'a Pod, name: &str) -> &'a ContainerStatus {
    find_status(pod, name, false)
        .unwrap_or_else(|| panic!("no status for container {name}: {:#?}", pod.status))
}

fn init_status<'a>(pod: &'a Pod, name: &str) -> &'a ContainerStatus {
    find_status(pod, name, true)
        .unwrap_or_else(|| panic!("no status for init container {name}: {:#?}", pod.status))
}

/// The waiting reason of a container, "" when it has no status yet or is not waiting.
fn waiting_reason<'a>(pod: &'a Pod, name: &str, init: bool) -> &'a str {
    find_status(pod, name, init)
        .map(|c| waiting(c).0)
        .unwrap_or("")
}

fn waiting(c: &ContainerStatus) -> (&str, &str) {
    let w = c.state.as_ref().and_then(|s| s.waiting.as_ref());
    (
        w.and_then(|w| w.reason.as_deref()).unwrap_or(""),
        w.and_then(|w| w.message.as_deref()).unwrap_or(""),
    )
}

fn last_terminated(c: &ContainerStatus) -> (i32, &str) {
    let t = c
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .unwrap_or_else(|| panic!("no lastState.terminated: {c:#?}"));
    (t.exit_code, t.reason.as_deref().unwrap_or(""))
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn condition<'a>(pod: &'a Pod, type_: &str) -> (&'a str, &'a str, &'a str) {
    let c = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .unwrap_or_else(|| panic!("no {type_} condition: {:#?}", pod.status));
    (
        c.status.as_str(),
        c.reason.as_deref().unwrap_or(""),
        c.message.as_deref().unwrap_or(""),
    )
}

/// A Pod with one container "app", labelled `app=<name>` and, given a `fault`, for that kwok
/// fault stage.
fn pod(name: &str, fault: Option<&str>) -> PodBuilder {
    let pod = PodBuilder::new(name)
        .label("app", name)
        .container(json!({ "name": "app", "image": "registry.example.com/shop/app:1.4.2" }))
        .spec(json!({ "terminationGracePeriodSeconds": 0 }));
    match fault {
        Some(f) => pod.label(fault::LABEL, f),
        None => pod,
    }
}

/// Quick restarts: a 1s back-off, and the fault showing after 300ms.
fn fast(pod: PodBuilder) -> PodBuilder {
    pod.annotation(fault::BACKOFF_ANNOTATION, "1s")
        .annotation(fault::DELAY_ANNOTATION, "300ms")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_end_to_end() -> Result<()> {
    let t0 = Instant::now();
    let opts = ClusterOptions {
        nodes: vec![
            NodeSpec::new("kwok-node-0"),
            NodeSpec::new("kwok-node-1"),
            NodeSpec::new("kwok-gpu-0")
                .cpu("16")
                .memory("4Gi")
                .pods(20)
                .label("sre-operator.dev/pool", "gpu")
                .taint("nvidia.com/gpu", "present", "NoSchedule"),
        ],
        ..Default::default()
    };
    let cluster = TestCluster::start(opts).await?;
    let started = t0.elapsed();
    let client = cluster.client();
    // Namespaces of their own, so that the test can run again against a cluster it has used
    // before (SRE_OPERATOR_E2E_KUBECONFIG).
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis()
        % 1_000_000;
    let ns_faults = format!("faults-{run}");
    let ns_sched = format!("sched-{run}");
    let (ns, sched) = (ns_faults.as_str(), ns_sched.as_str());

    // --- The control plane: version, nodes, RBAC. -------------------------------------
    let version = client.apiserver_version().await?;
    if !cluster.is_external() {
        assert_eq!(version.git_version, "v1.36.3");
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let gpu = nodes.get("kwok-gpu-0").await?;
    let status = gpu.status.clone().unwrap_or_default();
    let alloc = status.allocatable.unwrap_or_default();
    assert_eq!(alloc["memory"].0, "4Gi");
    assert_eq!(alloc["cpu"].0, "16");
    assert_eq!(alloc["pods"].0, "20");
    assert_eq!(
        gpu.metadata.labels.as_ref().unwrap()["sre-operator.dev/pool"],
        "gpu"
    );
    let taints = gpu
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    assert!(
        taints
            .iter()
            .any(|t| t.key == "nvidia.com/gpu" && t.effect == "NoSchedule"),
        "{taints:?}"
    );
    for n in ["kwok-node-0", "kwok-node-1", "kwok-gpu-0"] {
        let node = nodes.get(n).await?;
        let ready = node.status.and_then(|s| s.conditions).unwrap_or_default();
        assert!(
            ready
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
            "{n}: {ready:?}"
        );
    }
    // kubectl (the v1.36 one) reaches the cluster, and RBAC is on: a ServiceAccount may not
    // create Pods.
    let out = cluster
        .kubectl()
        .args([
            "auth",
            "can-i",
            "create",
            "pods",
            "--as=system:serviceaccount:default:default",
        ])
        .output()?;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no", "{out:?}");

    // --- Pods: one per fault stage, one healthy, and one that cannot be scheduled. -------
    cluster.create_namespace(ns).await?;
    cluster.create_namespace(sched).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pp = PostParams::default();
    for p in [
        pod("healthy", None),
        fast(pod("crash", Some(fault::CRASHLOOP))),
        // Default timings: the kubelet's first back-off is 10s.
        pod("oom", Some(fault::OOMKILLED)),
        pod("pull-missing", Some(fault::IMAGEPULL_NOTFOUND))
            .container(json!({ "name": "app", "image": "nginx:does-not-exist" })),
        pod("pull-denied", Some(fault::IMAGEPULL_AUTH))
            .container(json!({ "name": "app", "image": "registry.example.com/team/private:1.0" })),
        pod("config-missing", Some(fault::CONFIG_MISSING_KEY)).container(
            json!({ "name": "app", "image": "app:1", "env": [
                { "name": "LOG_LEVEL", "value": "info" },
                { "name": "DB_PASSWORD", "valueFrom": { "secretKeyRef": { "name": "db-credentials", "key": "password" } } },
            ] }),
        ),
        fast(pod("init-fails", Some(fault::INIT_FAIL)))
            .init_container(json!({ "name": "migrate", "image": "app:1" })),
        fast(pod("sidecar-exits", Some(fault::SIDECAR_EXIT)))
            .init_container(json!({ "name": "proxy", "image": "envoy:1", "restartPolicy": "Always" })),
        pod("never-ready", Some(fault::READINESS_NEVER)),
    ] {
        let p = p.build();
        pods.create(&pp, &p)
            .await
            .with_context(|| format!("creating {:?}", p.metadata.name))?;
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), sched);
    deployments
        .create(
            &pp,
            &DeploymentBuilder::new("too-big")
                .match_label("app", "too-big")
                .container(json!({ "name": "app", "image": "app:1",
                    "resources": { "requests": { "memory": "12Gi", "cpu": "100m" } } }))
                .build(),
        )
        .await?;
    let t_created = Instant::now();
    let limit = Duration::from_secs(60);

    // Healthy: the normal pod-ready stage.
    let p = wait_pod(&pods, "healthy", limit, |p| phase(p) == "Running").await?;
    assert_eq!(condition(&p, "Ready").0, "True");
    assert!(main_status(&p, "app").ready);

    // CrashLoopBackOff with a growing restart count and the last exit.
    let p = wait_pod(&pods, "crash", limit, |p| {
        find_status(p, "app", false)
            .is_some_and(|c| waiting(c).0 == "CrashLoopBackOff" && c.restart_count >= 2)
    })
    .await?;
    let c = main_status(&p, "app");
    assert_eq!(phase(&p), "Running");
    assert!(!c.ready);
    assert_eq!(last_terminated(c), (1, "Error"));
    let uid = p.metadata.uid.clone().unwrap();
    assert_eq!(
        waiting(c).1,
        format!("back-off 1s restarting failed container=app pod=crash_{ns}({uid})")
    );
    assert_eq!(
        condition(&p, "Ready"),
        (
            "False",
            "ContainersNotReady",
            "containers with unready status: [app]"
        )
    );
    assert!(
        c.container_id
            .as_deref()
            .unwrap_or("")
            .starts_with("containerd://")
    );

    // OOMKilled: exit 137, with the kubelet's default first back-off.
    let p = wait_pod(&pods, "oom", limit, |p| {
        waiting_reason(p, "app", false) == "CrashLoopBackOff"
    })
    .await?;
    let c = main_status(&p, "app");
    assert_eq!(last_terminated(c), (137, "OOMKilled"));
    assert_eq!(c.restart_count, 1);
    assert!(
        waiting(c)
            .1
            .starts_with("back-off 10s restarting failed container=app pod=oom_"),
        "{c:?}"
    );

    // Image pulls: ErrImagePull, then ImagePullBackOff quoting the registry.
    let p = wait_pod(&pods, "pull-missing", limit, |p| {
        waiting_reason(p, "app", false) == "ImagePullBackOff"
    })
    .await?;
    assert_eq!(phase(&p), "Pending");
    let r = "docker.io/library/nginx:does-not-exist";
    assert_eq!(
        waiting(main_status(&p, "app")).1,
        format!(
            "Back-off pulling image \"nginx:does-not-exist\": ErrImagePull: rpc error: code = NotFound desc = \
             failed to pull and unpack image \"{r}\": failed to resolve reference \"{r}\": {r}: not found"
        )
    );
    let p = wait_pod(&pods, "pull-denied", limit, |p| {
        waiting_reason(p, "app", false) == "ImagePullBackOff"
    })
    .await?;
    let msg = waiting(main_status(&p, "app")).1;
    assert!(
        msg.contains("\"registry.example.com/team/private:1.0\""),
        "{msg}"
    );
    assert!(
        msg.contains("pull access denied") && msg.contains("authorization failed"),
        "{msg}"
    );

    // A missing Secret key.
    let p = wait_pod(&pods, "config-missing", limit, |p| {
        waiting_reason(p, "app", false) == "CreateContainerConfigError"
    })
    .await?;
    assert_eq!(phase(&p), "Pending");
    assert_eq!(
        waiting(main_status(&p, "app")).1,
        format!("couldn't find key password in Secret {ns}/db-credentials")
    );

    // A failing init container: Init:CrashLoopBackOff, the app never starts.
    let p = wait_pod(&pods, "init-fails", limit, |p| {
        waiting_reason(p, "migrate", true) == "CrashLoopBackOff"
    })
    .await?;
    assert_eq!(phase(&p), "Pending");
    let init = init_status(&p, "migrate");
    assert_eq!(last_terminated(init), (1, "Error"));
    assert!(init.restart_count >= 1);
    assert_eq!(waiting(main_status(&p, "app")).0, "PodInitializing");
    assert_eq!(
        condition(&p, "Initialized"),
        (
            "False",
            "ContainersNotInitialized",
            "containers with incomplete status: [migrate]"
        )
    );

    // A native sidecar that exits while the app runs.
    let p = wait_pod(&pods, "sidecar-exits", limit, |p| {
        waiting_reason(p, "proxy", true) == "CrashLoopBackOff"
    })
    .await?;
    assert_eq!(phase(&p), "Running");
    assert_eq!(last_terminated(init_status(&p, "proxy")), (1, "Error"));
    let app = main_status(&p, "app");
    assert!(
        app.ready && app.state.as_ref().unwrap().running.is_some(),
        "{app:?}"
    );
    assert_eq!(
        condition(&p, "Ready"),
        (
            "False",
            "ContainersNotReady",
            "containers with unready status: [proxy]"
        )
    );

    // A readiness probe that never passes.
    let p = wait_pod(&pods, "never-ready", limit, |p| phase(p) == "Running").await?;
    let c = main_status(&p, "app");
    assert!(
        c.state.as_ref().unwrap().running.is_some() && c.started == Some(true) && !c.ready,
        "{c:?}"
    );
    assert_eq!(condition(&p, "Ready").0, "False");

    // Events written by the stages.
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let m = wait_event(&events, "crash", "BackOff", limit).await?;
    assert!(m.starts_with("Back-off restarting failed container"), "{m}");
    let m = wait_event(&events, "pull-missing", "Failed", limit).await?;
    assert!(
        m == "Error: ErrImagePull" || m == "Error: ImagePullBackOff",
        "{m}"
    );
    assert!(
        wait_event(&events, "never-ready", "Unhealthy", limit)
            .await?
            .starts_with("Readiness probe failed")
    );
    let faults_after = t_created.elapsed();

    // --- The real scheduler explains the Pending Pod. ----------------------------------
    let sched_events: Api<Event> = Api::namespaced(client.clone(), sched);
    let sched_pods: Api<Pod> = Api::namespaced(client.clone(), sched);
    let pending = wait::first(
        &sched_pods,
        watcher::Config::default().labels("app=too-big"),
        limit,
        |_| true,
    )
    .await?
    .context("the Deployment made no Pod")?;
    let name = pending.metadata.name.clone().unwrap();
    let msg = wait_event(&sched_events, &name, "FailedScheduling", limit).await?;
    assert!(msg.contains("Insufficient memory"), "{msg}");
    assert!(msg.contains("untolerated taint"), "{msg}");
    let p = sched_pods.get(&name).await?;
    assert_eq!(phase(&p), "Pending");
    assert_eq!(condition(&p, "PodScheduled").1, "Unschedulable");

    // --- Logs, current and previous, through the API and kubectl. ----------------------
    cluster
        .set_logs(
            ns,
            Some("crash"),
            "app",
            "starting payment service v1.4.2\nconnecting to postgres at db:5432",
            "starting payment service v1.4.2\nconnecting to postgres at db:5432\n\
             FATAL: dial tcp 10.96.14.7:5432: connect: connection refused",
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let previous = loop {
        let lp = LogParams {
            container: Some("app".into()),
            previous: true,
            ..Default::default()
        };
        match pods.logs("crash", &lp).await {
            Ok(text) => break text,
            // kwok has not seen the ClusterLogs object yet.
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => return Err(e).context("reading previous logs"),
        }
    };
    assert_eq!(
        previous,
        "starting payment service v1.4.2\nconnecting to postgres at db:5432\n\
         FATAL: dial tcp 10.96.14.7:5432: connect: connection refused\n"
    );
    let current = pods.logs("crash", &LogParams::default()).await?;
    assert_eq!(
        current,
        "starting payment service v1.4.2\nconnecting to postgres at db:5432\n"
    );
    let out = cluster
        .kubectl()
        .args(["logs", "-n", ns, "crash", "--previous", "--tail=1"])
        .output()?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "FATAL: dial tcp 10.96.14.7:5432: connect: connection refused\n",
        "{out:?}"
    );
    // Namespace-wide logs for Pods whose names are not known in advance.
    cluster
        .set_logs(sched, None, "app", "waiting\n", "")
        .await?;

    eprintln!(
        "timings: cluster ready {:.1} s; all faults checked {:.1} s after the Pods were created; \
         test body {:.1} s",
        started.as_secs_f64(),
        faults_after.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );

    // --- Stopping leaves nothing behind. ----------------------------------------------
    if cluster.is_external() {
        return Ok(());
    }
    let pids = cluster.pids();
    assert_eq!(
        pids.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [
            "etcd",
            "kube-apiserver",
            "kube-scheduler",
            "kube-controller-manager",
            "kwok"
        ]
    );
    let dir = cluster.dir().to_path_buf();
    assert!(dir.join("admin.kubeconfig").exists());
    let t_stop = Instant::now();
    drop(cluster);
    eprintln!("stopped in {:.1} s", t_stop.elapsed().as_secs_f64());
    for (name, pid) in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{name} ({pid}) is still running"
        );
    }
    assert_eq!(processes_mentioning(&dir), Vec::<String>::new());
    assert!(!dir.exists(), "{} still exists", dir.display());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_component_is_named() -> Result<()> {
    let mut opts = ClusterOptions::default();
    opts.extra_args
        .insert("kube-apiserver".into(), vec!["--no-such-flag=1".into()]);
    let err = match TestCluster::start_local(opts).await {
        Ok(_) => bail!("a cluster with a broken apiserver started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("kube-apiserver exited during start-up"),
        "{err}"
    );
    assert!(err.contains("unknown flag: --no-such-flag"), "{err}");
    // The error names the log, inside the cluster's folder: the folder is gone and no
    // process (its etcd) still refers to it.
    let log = err
        .split_whitespace()
        .find(|w| w.ends_with("/logs/kube-apiserver.log:"))
        .unwrap_or_else(|| panic!("no log path in: {err}"));
    let dir = std::path::Path::new(log.trim_end_matches(':'))
        .parent()
        .unwrap()
        .parent()
        .unwrap();
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert_eq!(processes_mentioning(dir), Vec::<String>::new());
    Ok(())
}

/// The command lines of running processes that mention `dir`.
fn processes_mentioning(dir: &std::path::Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&needle) {
                found.push(cmdline);
            }
        }
    }
    found
}

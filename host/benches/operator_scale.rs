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
//!   At the largest size a **hostile** row runs the same Pods plus issue 16's memory attack: 100
//!   unschedulable Pods with 200 KiB of env each in a namespace no policy names and 500
//!   ReplicaSets of 100 KiB, with the operator watching every namespace (no `--namespace`); its
//!   RSS must stay within 4 MiB of the plain row's.
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
#[path = "../tests/support/fake_api.rs"]
mod fake_api;

use common::operator::{Operator, binary, memory, rss_split, stable_memory};
use common::{machine, mib};
use fake_api::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

/// `sre-operator run` watching `namespace`, or every namespace with None.
fn start_operator(kubeconfig: &Path, log: PathBuf, namespace: Option<&str>) -> Operator {
    let mut args = vec!["--http-addr", "127.0.0.1:0"];
    if let Some(ns) = namespace {
        args.extend(["--namespace", ns]);
    }
    Operator::start(kubeconfig, log, &args, &[])
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

/// Issue 16's memory attack beside the `n` Pods: unschedulable Pods with 200 KiB of env in a
/// namespace no policy names, and large ReplicaSets, with the operator watching every namespace.
const HOSTILE_PODS: usize = 100;
const LARGE_REPLICASETS: usize = 500;

async fn run_mock(n: usize, samples: usize, dir: &Path, hostile: bool) -> Row {
    let (mock, kubeconfig, server) = if hostile {
        let mock = Mock::hostile(n, HOSTILE_PODS, LARGE_REPLICASETS);
        serve_mock(mock, &format!("mock-hostile-{n}"), dir).await
    } else {
        start_mock(n, dir).await
    };
    let mode = if hostile { "hostile" } else { "mock" };
    let mut op = start_operator(
        &kubeconfig,
        dir.join(format!("operator-{mode}-{n}.log")),
        (!hostile).then_some(NS),
    );
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
    let mut note = format!(
        "{split}; {} B/Pod served, {} list pages, watch open after {:.1} s; RSS after the reports {:.1} MiB",
        mock.bytes_served_per_pod(),
        mock.pod_list_pages.load(Ordering::SeqCst),
        watch_after.as_secs_f64(),
        mib(after)
    );
    if hostile {
        note += &format!(
            "; every namespace watched, {HOSTILE_PODS} unschedulable Pods with 200 KiB of env in {HOSTILE_NS} (no policy), {LARGE_REPLICASETS} ReplicaSets of 100 KiB ({} ReplicaSet lists asked)",
            mock.replicaset_lists.load(Ordering::SeqCst)
        );
    }
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
        mode,
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
            let mut op = start_operator(
                cluster.kubeconfig(),
                dir.join(format!("operator-cluster-{n}.log")),
                Some(NS),
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
            let largest = sizes_with_baseline.last().copied().unwrap_or(0);
            for (n, hostile) in sizes_with_baseline
                .iter()
                .map(|&n| (n, false))
                .chain([(largest, true)])
            {
                let row = run_mock(n, samples(5), dir.path(), hostile).await;
                eprintln!(
                    "operator-scale: {} {n}: RSS {:.1} MiB, VmHWM {:.1} MiB, to report {:?}",
                    row.mode,
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
    // The attack adds at most 4 MiB to the run without it (issue 16).
    for hostile in rows.iter().filter(|r| r.mode == "hostile") {
        if let Some(plain) = rows
            .iter()
            .find(|r| r.mode == "mock" && r.pods == hostile.pods)
        {
            let added = mib(hostile.rss_kib) - mib(plain.rss_kib);
            println!(
                "hostile at {} Pods: RSS {:+.1} MiB against the run without the attack",
                hostile.pods, added
            );
            if added > 4.0 {
                missed.push(format!(
                    "hostile at {} Pods: {added:.1} MiB over the run without the attack, more than 4 MiB",
                    hostile.pods
                ));
            }
        }
    }
    for row in &rows {
        let limit_mib = match row.mode {
            "mock" | "hostile" => 50.0,
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
    common::verdict(
        &missed,
        "RSS < 50 MiB (mock) / < 40 MiB (cluster) at 10,000 Pods, < 1 s to the report",
    );
}

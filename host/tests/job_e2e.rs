//! A failed Job on a loopback control plane: the real Job controller retries a CronJob's Job
//! until its backoffLimit, each Pod failing once and never restarted (kwok's `exit` fault
//! stage). The operator reports the CronJob once, reads the failed run's log (not a previous
//! one: there is none), finds the misspelt Service, and proposes the fix on the CronJob's job
//! template (a Job's template cannot change); approved, it patches the CronJob and nothing else.

mod support;

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use sre_e2e::fault;
use sre_operator::crd::{DiagnosticReport, FailureClass};
use support::operator::{Operator, operator_writes};

const NS: &str = "batch";
const LOG: &str = r#"{"level":"INFO","logger":"ledger_export","msg":"export starting","since":"24h"}
{"level":"INFO","logger":"ledger_export.db","msg":"connecting","host":"ledger-postgress","port":5432}
Traceback (most recent call last):
  File "/app/ledger_export/db.py", line 18, in connect
psycopg.OperationalError: connection failed: could not translate host name "ledger-postgress" to address: Name or service not known"#;
const ENV_PATH: &str = "/spec/jobTemplate/spec/template/spec/containers/0/env/0/value";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_jobs_failed_job_is_one_report_and_its_fix_goes_on_the_cron_job() -> Result<()> {
    let Some(cluster) = support::cluster_with_policy("job-e2e", NS, json!({})).await? else {
        return Ok(());
    };
    let client = cluster.client();
    cluster.set_logs(NS, None, "export", LOG, "").await?;
    support::apply_json(
        &cluster,
        "ledger",
        json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "ledger-postgres", "namespace": NS},
             "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "ledger-postgres"}},
                      "template": {"metadata": {"labels": {"app": "ledger-postgres"}},
                                   "spec": {"containers": [{"name": "postgres", "image": "docker.io/library/postgres:16.4",
                                            "ports": [{"name": "postgres", "containerPort": 5432}]}]}}}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "ledger-postgres", "namespace": NS},
             "spec": {"selector": {"app": "ledger-postgres"},
                      "ports": [{"name": "postgres", "port": 5432, "targetPort": 5432}]}},
            {"apiVersion": "batch/v1", "kind": "CronJob",
             "metadata": {"name": "ledger-export", "namespace": NS},
             "spec": {"schedule": "0 0 1 1 *", "jobTemplate": {"spec": {"backoffLimit": 1, "template": {
                 "metadata": {"labels": {"app": "ledger-export", fault::LABEL: fault::EXIT},
                              "annotations": {fault::DELAY_ANNOTATION: "300ms"}},
                 "spec": {"restartPolicy": "Never", "containers": [{
                     "name": "export", "image": "registry.example.com/billing/ledger-export:2.3.0",
                     "env": [{"name": "LEDGER_DB_HOST", "value": "ledger-postgress"},
                             {"name": "LEDGER_DB_PORT", "value": "5432"}]}]}}}}}}
        ]}),
    )?;
    let op = Operator::started(&cluster, "sre-operator-job-0", NS).await?;
    // What `kubectl create job --from=cronjob/...` does: a Job the CronJob owns.
    support::kubectl(
        &cluster,
        &[
            "-n",
            NS,
            "create",
            "job",
            "ledger-export-manual",
            "--from=cronjob/ledger-export",
        ],
    )?;

    let reports: Api<DiagnosticReport> = Api::namespaced(client.clone(), NS);
    let report = await_report(&reports, &op).await?;
    ensure!(
        report.spec.workload.kind == "CronJob" && report.spec.workload.name == "ledger-export",
        "reported on {:?}",
        report.spec.workload
    );
    ensure!(report.spec.failure.class == FailureClass::CrashLoopBackOff);
    let status = report.status.clone().unwrap_or_default();
    let root_cause = status.findings.map(|f| f.root_cause).unwrap_or_default();
    ensure!(
        root_cause.contains("ledger-postgress") && root_cause.contains("ledger-postgres"),
        "root cause: {root_cause}"
    );
    let patch = status.suggested_patch.expect("a patch");
    ensure!(
        patch.target.kind == "CronJob" && patch.target.name == "ledger-export",
        "patch target {:?}",
        patch.target
    );
    ensure!(
        patch
            .patch
            .iter()
            .any(|o| o.path == ENV_PATH && o.value == Some(json!("ledger-postgres"))),
        "patch {:?}",
        patch.patch
    );
    // The failed run's own log was read: the Pod was never restarted, so there is no previous.
    let log = op.log();
    ensure!(
        !log.contains("previous terminated container"),
        "the operator asked for a previous log:\n{log}"
    );

    // The Job retries to its backoffLimit and gives up; its second Pod joins the same report.
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let job = jobs.get("ledger-export-manual").await?;
        let failed = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Failed" && c.status == "True"));
        if failed {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the Job did not fail within 90 s: {:?}",
            job.status
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let job_pods = pods
        .list(&ListParams::default().labels("job-name=ledger-export-manual"))
        .await?
        .items;
    ensure!(job_pods.len() == 2, "{} Job Pods", job_pods.len());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = reports.list(&Default::default()).await?.items;
    ensure!(
        all.len() == 1,
        "one report for the Job's two failed Pods: {:?}",
        all.iter().map(|r| &r.metadata.name).collect::<Vec<_>>()
    );

    // Approved, the CronJob's template changes; the failed Job's Pods are history, not a
    // failure the patch left.
    let digest = all[0]
        .status
        .as_ref()
        .and_then(|s| s.patch_digest.clone())
        .unwrap_or_default();
    let name = all[0].metadata.name.clone().unwrap_or_default();
    reports
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"decision": "Approved", "approvedDigest": digest}})),
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let r = reports.get(&name).await?;
        let phase = r.status.as_ref().and_then(|s| s.phase).map(|p| p.as_str());
        if matches!(phase, Some("Resolved" | "Unresolved" | "Failed")) {
            break r;
        }
        ensure!(
            Instant::now() < deadline,
            "not verified within 60 s: {:?}\n{}",
            r.status,
            op.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), NS);
    let cron = serde_json::to_value(cronjobs.get("ledger-export").await?)?;
    ensure!(
        cron.pointer(ENV_PATH) == Some(&json!("ledger-postgres")),
        "the CronJob was not patched: {:?}",
        cron.pointer(ENV_PATH)
    );
    let status = done.status.unwrap_or_default();
    ensure!(
        status.phase.map(|p| p.as_str()) == Some("Resolved"),
        "{:?}: {:?}",
        status.phase,
        status.message
    );

    // It wrote to the CronJob alone, once (after the dry run): never to the Job or its Pods.
    let writes = operator_writes(&cluster, &["pods", "jobs", "cronjobs"])?;
    let applied: Vec<&String> = writes.iter().filter(|w| !w.contains("dryRun")).collect();
    ensure!(
        writes.iter().all(|w| w.contains("/cronjobs/ledger-export")) && applied.len() == 1,
        "the operator wrote (a dry run, then the patch, are expected): {writes:?}"
    );
    Ok(())
}

/// The CronJob's report once it has findings (120 s).
async fn await_report(reports: &Api<DiagnosticReport>, op: &Operator) -> Result<DiagnosticReport> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let found = reports
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .find(|r| {
                r.status
                    .as_ref()
                    .is_some_and(|s| s.findings.is_some() && s.suggested_patch.is_some())
            });
        if let Some(r) = found {
            return Ok(r);
        }
        ensure!(
            Instant::now() < deadline,
            "no report with a patch within 120 s:\n{}",
            op.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

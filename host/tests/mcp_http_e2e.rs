//! `sre-operator run --mcp-addr` on a loopback control plane with an API audit log, driven by the
//! official Python MCP SDK over streamable HTTP (tests/mcp/http_client.py) with the bearer tokens
//! of three ServiceAccounts: a viewer (sre-viewer and Pod reads in the namespace), an approver
//! (sre-approver and the same reads), and a stranger with no role.
//!
//! - no token or a forged one is a 401; malformed and oversized messages are 4xx answers;
//! - a WASM tool answers the viewer on their namespace and is refused on another;
//! - the viewer reads the report (tool and resource) but cannot approve it; the stranger cannot
//!   list reports; the approver's approve is recorded;
//! - the audit log shows the approval as the approver's own request (not the operator's), and no
//!   write by the viewer reached the API server;
//! - a client that opens a connection and never finishes its request is cut off, and the
//!   server answers others meanwhile;
//! - the policy's `spec.notify` webhook (its URL in a Secret, failing its first two attempts)
//!   gets the "needs a decision" message with the exact approve command, then "patch applied".

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use sre_e2e::TestCluster;
use sre_e2e::webhook::Webhook;
use support::operator::{Operator, operator_setup, report_api, wait_phase};
use support::{apply_json, kubectl, python_with_mcp};

const NS: &str = "shop";
const REPORT: &str = "deployment-worker-oomkilled";

fn token(cluster: &TestCluster, account: &str) -> Result<String> {
    Ok(kubectl(
        cluster,
        &["-n", NS, "create", "token", account, "--duration=3600s"],
    )?
    .trim()
    .to_string())
}

/// The people: three ServiceAccounts, two bound to the project's roles in `NS`, all but the
/// stranger able to read Pods and their logs there (what the tools read).
fn people() -> Value {
    let binding = |name: &str, kind: &str, role: &str, account: &str| {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": { "name": name, "namespace": NS },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role },
            "subjects": [{ "kind": "ServiceAccount", "name": account, "namespace": NS }],
        })
    };
    let account = |name: &str| {
        json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": { "name": name, "namespace": NS },
        })
    };
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            account("viewer"),
            account("approver"),
            account("stranger"),
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": { "name": "pod-reader", "namespace": NS },
                "rules": [{ "apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"] }],
            },
            binding("viewer-reports", "ClusterRole", "sre-viewer", "viewer"),
            binding("viewer-pods", "Role", "pod-reader", "viewer"),
            binding("approver-reports", "ClusterRole", "sre-approver", "approver"),
            binding("approver-pods", "Role", "pod-reader", "approver"),
        ],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_over_http_authenticates_authorises_and_records_the_approver() -> Result<()> {
    let notify =
        json!({ "notify": { "secretRef": { "name": "sre-operator-notify", "key": "webhook" } } });
    let Some(cluster) = support::cluster_with_policy("mcp-http-e2e", NS, notify).await? else {
        return Ok(());
    };
    let client = cluster.client();
    let hook = Webhook::start(2).await?;
    support::create_oom_worker(&client, NS).await?;

    let mut setup = operator_setup(&cluster).await?;
    apply_json(&cluster, "people", people())?;
    apply_json(
        &cluster,
        "notify-secret",
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": "sre-operator-notify", "namespace": "sre-operator" },
            "stringData": { "webhook": hook.url("/services/T0/B0/secret-path") },
        }),
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    setup.args = vec!["--mcp-addr".into(), format!("127.0.0.1:{port}")];
    let op = Operator::start(&cluster, &setup, "sre-operator-mcp-0", NS, false)?;
    op.await_ready(Duration::from_secs(60))?;
    let reports = report_api(&client, NS);
    wait_phase(
        &reports,
        REPORT,
        &["AwaitingApproval"],
        Duration::from_secs(120),
        &op,
    )
    .await?;
    let pod = Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default().labels("app=worker"))
        .await?
        .items
        .first()
        .and_then(|p| p.metadata.name.clone())
        .context("the worker has no Pod")?;

    // A client that starts a request and never finishes it.
    let mut slow = TcpStream::connect(("127.0.0.1", port))?;
    slow.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n")?;
    let slow_since = Instant::now();

    let (viewer, approver, stranger) = (
        token(&cluster, "viewer")?,
        token(&cluster, "approver")?,
        token(&cluster, "stranger")?,
    );
    let python = python_with_mcp();
    let output = Command::new(python)
        .arg(support::repo_root().join("tests/mcp/http_client.py"))
        .args([&format!("http://127.0.0.1:{port}/mcp"), NS, REPORT, &pod])
        .args([&viewer, &approver, &stranger])
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "the Python client failed:\n{stdout}\n{}\noperator:\n{}",
            String::from_utf8_lossy(&output.stderr),
            op.tail()
        );
    }
    eprintln!(
        "python client over HTTP: {}",
        stdout.lines().last().unwrap_or_default()
    );

    // The slow client was cut off; it held nothing the others needed.
    slow.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    assert!(
        slow_since.elapsed() < Duration::from_secs(40),
        "a client that never finished its request was not cut off"
    );

    // The approval is the approver's own request in the audit log; the viewer wrote nothing.
    let approver_user = format!("system:serviceaccount:{NS}:approver");
    let viewer_user = format!("system:serviceaccount:{NS}:viewer");
    let writes = |user: &str| -> Vec<Value> {
        cluster
            .audit_events(user)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| {
                matches!(e["verb"].as_str(), Some("patch" | "update" | "create"))
                    && e["objectRef"]["resource"] == "diagnosticreports"
            })
            .collect()
    };
    let approvals = writes(&approver_user);
    assert!(
        approvals
            .iter()
            .any(|e| e["objectRef"]["name"] == REPORT && e["responseStatus"]["code"] == 200),
        "the audit log shows no approval by {approver_user}: {approvals:#?}"
    );
    assert_eq!(
        writes(&viewer_user),
        Vec::<Value>::new(),
        "the viewer's refused approve reached the API server"
    );
    let decided = reports.get(REPORT).await?;
    let decided = serde_json::to_value(decided)?;
    assert_eq!(decided["spec"]["decision"], "Approved");

    // The webhook heard about the decision needed (after two failed attempts), then the apply.
    let texts = |hook: &Webhook| -> Vec<String> {
        hook.delivered()
            .iter()
            .filter_map(|d| d.body["text"].as_str().map(str::to_string))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !texts(&hook).iter().any(|t| t.contains("patch applied")) {
        if Instant::now() > deadline {
            bail!(
                "no \"patch applied\" notification; seen: {:#?}\n{}",
                hook.seen(),
                op.tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let delivered = texts(&hook);
    let decision = delivered
        .iter()
        .find(|t| t.contains("needs a decision"))
        .context("no \"needs a decision\" notification")?;
    assert!(
        decision.contains(&format!(
            "kubectl sre approve {REPORT} -n {NS} --digest sha256:"
        )),
        "{decision}"
    );
    assert!(
        hook.seen().iter().filter(|d| d.answered == 503).count() == 2,
        "the first two attempts failed and were retried"
    );
    let log = op.log();
    for secret in [&viewer, &approver, &stranger] {
        assert!(
            !log.contains(secret.as_str()),
            "a caller's token is in the operator's log"
        );
    }
    Ok(())
}

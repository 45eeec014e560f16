//! `kubectl sre` against a scripted API service (the tower-test pattern, in support/mock_api.rs):
//! each test scripts the requests the plugin must make, in order, and any other request fails
//! it; the tests also look at exactly what it wrote.

mod support;

use std::sync::{Arc, OnceLock};

use clap::Parser;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use serde_json::{Value, json};
use sre_e2e::fixtures::DeploymentBuilder;
use sre_operator::crd::{
    ApplyRecord, Decision, DiagnosticReport, DiagnosticReportStatus, Findings, PatchOp,
    PatchOperation, Phase, ReasoningStep, SafetyVerdict, SuggestedPatch, TargetRef, ToolAction,
    Verdict,
};
use sre_operator::kubectl_sre::{Cli, Error, Io, run};
use sre_operator::plugin::{PluginRegistry, Runtime};
use support::mock_api::{
    Api, Exchange, Log, Script, Seen, conflict, not_found, requests, status_error,
};

const REPORTS: &str = "/apis/sre-operator.dev/v1alpha1";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/default/deployments/critical-app";
const NAME: &str = "deployment-critical-app-crashloopbackoff";
const ENV_PATH: &str = "/spec/template/spec/containers/0/env/0/value";

struct Outcome {
    out: String,
    err: String,
    result: Result<(), Error>,
    asked: Vec<String>,
}

/// Runs `kubectl sre ARGS` with `answer` to any question.
async fn kubectl_sre(client: Client, args: &[&str], answer: bool) -> Outcome {
    let cli = Cli::try_parse_from(std::iter::once("kubectl-sre").chain(args.iter().copied()))
        .expect("the arguments parse");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut asked = Vec::new();
    let mut confirm = |q: &str| {
        asked.push(q.to_string());
        Ok(answer)
    };
    let result = {
        let mut io = Io {
            out: &mut out,
            err: &mut err,
            confirm: &mut confirm,
        };
        run(cli, client, &mut io).await
    };
    Outcome {
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
        result,
        asked,
    }
}

fn writes(seen: &Log) -> Vec<Seen> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|s| s.method != "GET")
        .cloned()
        .collect()
}

/// The workload: REDIS_HOST=`value`, at `resource_version`.
fn deployment(value: &str, resource_version: &str) -> Value {
    DeploymentBuilder::new("critical-app")
        .namespace("default")
        .uid("d-1")
        .resource_version(resource_version)
        .generation(4)
        .managed_by("kubectl")
        .match_label("app", "critical-app")
        .container(json!({"name": "app", "image": "shop/critical-app:1.8.2",
                          "env": [{"name": "REDIS_HOST", "value": value},
                                  {"name": "REDIS_PORT", "value": "6379"}]}))
        .status(json!({"replicas": 1}))
        .json()
}

fn op(op: PatchOp, value: &str) -> PatchOperation {
    PatchOperation {
        op,
        path: ENV_PATH.into(),
        from: None,
        value: Some(json!(value)),
    }
}

fn ago(seconds: i64) -> Time {
    Time(Timestamp::now() - SignedDuration::from_secs(seconds))
}

/// A report as the operator writes it: findings, two reasoning steps, the redis patch reviewed
/// at resourceVersion 100.
fn report(name: &str, namespace: &str, phase: Phase) -> DiagnosticReport {
    let mut r: DiagnosticReport = serde_json::from_value(json!({
        "apiVersion": "sre-operator.dev/v1alpha1", "kind": "DiagnosticReport",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}"), "generation": 1, "resourceVersion": "55"},
        "spec": {"pod": {"namespace": namespace, "name": "critical-app-7d4b9c6f5-h8x2m", "uid": "p-1"},
                 "workload": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "critical-app"},
                 "failure": {"class": "CrashLoopBackOff", "reason": "Error", "container": "app", "evidence": []},
                 "policy": "protect-critical-services"}
    }))
    .unwrap();
    r.metadata.creation_timestamp = Some(ago(3 * 3600));
    r.status = Some(DiagnosticReportStatus {
        phase: Some(phase),
        findings: Some(Findings {
            summary: "Container app crash-loops: connection refused to redis:6379".into(),
            root_cause: "Service redis does not exist; redis-master serves port 6379".into(),
            evidence: vec!["log: Connection refused to redis:6379".into()],
        }),
        reasoning_chain: vec![
            ReasoningStep {
                observation: "critical-app is CrashLoopBackOff".into(),
                thought: "Read the previous container's log.".into(),
                action: Some(ToolAction {
                    tool: "fetch_logs".into(),
                    arguments: json!({"pod": "critical-app-7d4b9c6f5-h8x2m", "previous": true}),
                    result: "Error: Connection refused to redis:6379".into(),
                }),
            },
            ReasoningStep {
                observation: "The log says connection refused to redis:6379.".into(),
                thought: "Check whether Service redis exists.".into(),
                action: None,
            },
        ],
        suggested_patch: Some(SuggestedPatch {
            target: TargetRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: namespace.into(),
                name: "critical-app".into(),
            },
            patch: vec![
                op(PatchOp::Test, "redis"),
                op(PatchOp::Replace, "redis-master"),
            ],
            explanation: "point REDIS_HOST at redis-master".into(),
        }),
        safety: Some(SafetyVerdict::allowed("patch-safety")),
        target_resource_version: Some("100".into()),
        ..Default::default()
    });
    r
}

fn status_mut(r: &mut DiagnosticReport) -> &mut DiagnosticReportStatus {
    r.status.as_mut().unwrap()
}

/// An applied report: the patch landed, and the operator recorded how to undo it.
fn applied(phase: Phase, rollback: bool) -> DiagnosticReport {
    let mut r = report(NAME, "default", phase);
    r.spec.decision = Some(Decision::Approved);
    status_mut(&mut r).apply = Some(ApplyRecord {
        started_at: ago(600),
        applied_at: Some(ago(590)),
        rollback_patch: if rollback {
            vec![
                op(PatchOp::Test, "redis-master"),
                op(PatchOp::Replace, "redis"),
            ]
        } else {
            vec![]
        },
        target_generation: Some(5),
    });
    r
}

/// The scripted API server: `steps`, in order, and nothing else.
fn script(steps: Vec<Exchange>) -> (Client, Api) {
    steps.into_iter().fold(Script::new(), Script::then).start()
}

fn report_path() -> String {
    format!("{REPORTS}/namespaces/default/diagnosticreports/{NAME}")
}

/// A read of the report, answered with `report`.
fn get_report(report: &DiagnosticReport) -> Exchange {
    Exchange::get(report_path()).reply(200, serde_json::to_value(report).unwrap())
}

/// A write of the report's decision, answered with `report` (the write echoes the report).
fn write_report(report: &DiagnosticReport) -> Exchange {
    Exchange::patch(report_path()).reply(200, serde_json::to_value(report).unwrap())
}

/// A read of the Deployment, answered with `target`.
fn get_target(target: &Value) -> Exchange {
    Exchange::get(DEPLOYMENT).reply(200, target.clone())
}

/// A patch of the Deployment, answered with `target`: the dry run if `dry_run`, else the real one.
fn patch_target(dry_run: bool, target: &Value) -> Exchange {
    let patch = Exchange::patch(DEPLOYMENT);
    let patch = if dry_run {
        patch.with_query("dryRun=All")
    } else {
        patch.without_query("dryRun")
    };
    patch.reply(200, target.clone())
}

/// The Event the plugin records on the report, echoed back.
fn event() -> Exchange {
    Exchange::post("/apis/events.k8s.io/v1/namespaces/default/events").echo()
}

fn list_of(items: &[DiagnosticReport]) -> Value {
    json!({"apiVersion": "sre-operator.dev/v1alpha1", "kind": "DiagnosticReportList",
           "metadata": {"resourceVersion": "7"}, "items": items})
}

/// The column of `header` that `needle` starts at in `line`.
fn column(line: &str, needle: &str) -> usize {
    line.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in {line:?}"))
}

#[tokio::test]
async fn list_prints_a_kubectl_table_and_lists_everywhere_with_all_namespaces() {
    let mut old = report("deployment-payment-pending", "default", Phase::NoFix);
    old.metadata.creation_timestamp = Some(ago(4 * 86400));
    old.spec.pod.name = "payment-6d5f7c9b8-7xk2p".into();
    old.spec.failure.class = sre_operator::crd::FailureClass::Pending;
    old.status.as_mut().unwrap().incident = Some("inc-0a1b2c3d4e".into());
    let here = vec![report(NAME, "default", Phase::AwaitingApproval), old];
    let mut elsewhere = report("deployment-api-oomkilled", "production", Phase::Resolved);
    elsewhere.metadata.creation_timestamp = Some(ago(20 * 3600));
    let mut everywhere = here.clone();
    everywhere.push(elsewhere);
    let in_default = format!("{REPORTS}/namespaces/default/diagnosticreports");
    let (client, api) = script(vec![
        Exchange::get(&in_default).reply(200, list_of(&here)),
        Exchange::get(format!("{REPORTS}/diagnosticreports")).reply(200, list_of(&everywhere)),
        Exchange::get(&in_default).reply(200, list_of(&here)),
    ]);
    let seen = api.seen.clone();

    let o = kubectl_sre(client.clone(), &["list"], false).await;
    o.result.unwrap();
    let lines: Vec<&str> = o.out.lines().collect();
    assert_eq!(lines.len(), 3, "{}", o.out);
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "PHASE", "POD", "CLASS", "INCIDENT", "AGE"]
    );
    // An incident's reports first, then the others by name; ages as kubectl prints them.
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        [
            "deployment-payment-pending",
            "NoFix",
            "payment-6d5f7c9b8-7xk2p",
            "Pending",
            "inc-0a1b2c3d4e",
            "4d"
        ]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        [
            NAME,
            "AwaitingApproval",
            "critical-app-7d4b9c6f5-h8x2m",
            "CrashLoopBackOff",
            "-",
            "3h"
        ]
    );
    // Aligned columns, three spaces after the widest cell.
    for h in ["PHASE", "POD", "CLASS", "INCIDENT", "AGE"] {
        let at = column(lines[0], h);
        assert_eq!(lines[2].as_bytes()[at - 1], b' ');
        assert_ne!(lines[2].as_bytes()[at], b' ', "{h} column: {}", o.out);
    }
    assert_eq!(column(lines[0], "PHASE"), NAME.len() + 3);
    assert_eq!(
        requests(&seen, "GET", "")[0].uri.split('?').next().unwrap(),
        format!("{REPORTS}/namespaces/default/diagnosticreports")
    );

    let o = kubectl_sre(client.clone(), &["list", "-A"], false).await;
    o.result.unwrap();
    let lines: Vec<&str> = o.out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "NAMESPACE",
            "NAME",
            "PHASE",
            "POD",
            "CLASS",
            "INCIDENT",
            "AGE"
        ]
    );
    assert_eq!(lines.len(), 4, "{}", o.out);
    assert!(lines[3].starts_with("production   deployment-api-oomkilled"));
    assert!(lines[3].ends_with("20h"), "{}", lines[3]);
    let last = seen.lock().unwrap().last().unwrap().uri.clone();
    assert!(
        last.starts_with(&format!("{REPORTS}/diagnosticreports")),
        "-A lists across namespaces: {last}"
    );

    let o = kubectl_sre(client, &["list", "-o", "json"], false).await;
    o.result.unwrap();
    let list: Value = serde_json::from_str(&o.out).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][1]["metadata"]["name"], NAME);
    assert_eq!(list["items"][0]["kind"], "DiagnosticReport");
    assert_eq!(list["items"][0]["status"]["phase"], "NoFix");
    assert_eq!(list["items"][0]["status"]["incident"], "inc-0a1b2c3d4e");
    api.done().await;
}

#[tokio::test]
async fn list_says_when_there_is_nothing_and_when_the_crd_is_missing() {
    let (client, api) = script(vec![
        Exchange::get(format!("{REPORTS}/namespaces/empty/diagnosticreports"))
            .reply(200, list_of(&[])),
        Exchange::get(format!("{REPORTS}/namespaces/default/diagnosticreports")).reply(
            404,
            status_error(
                404,
                "NotFound",
                "the server could not find the requested resource",
                "",
            ),
        ),
    ]);
    let o = kubectl_sre(client.clone(), &["list", "-n", "empty"], false).await;
    o.result.unwrap();
    assert_eq!(o.out, "");
    assert_eq!(o.err, "No diagnosticreports found in empty namespace.\n");
    let o = kubectl_sre(client, &["list"], false).await;
    let e = o.result.unwrap_err();
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().contains("kubectl apply -f crds/"), "{e}");
    api.done().await;
}

#[tokio::test]
async fn show_prints_the_story_and_the_patch_as_a_diff_of_the_live_object() {
    let (r, t) = (
        report(NAME, "default", Phase::AwaitingApproval),
        deployment("redis", "100"),
    );
    let (client, api) = script(vec![get_report(&r), get_target(&t)]);
    let seen = api.seen.clone();
    let o = kubectl_sre(client, &["show", NAME], false).await;
    o.result.unwrap();
    let out = &o.out;
    assert!(out.contains("Phase:      AwaitingApproval"), "{out}");
    assert!(
        out.contains("Summary:     Container app crash-loops: connection refused to redis:6379")
    );
    assert!(out.contains("Root cause:  Service redis does not exist"));
    assert!(out.contains("    - log: Connection refused to redis:6379"));
    assert!(out.contains("1.  Observation: critical-app is CrashLoopBackOff"));
    assert!(out.contains("Action:      fetch_logs {\"pod\":"), "{out}");
    assert!(out.contains("2.  Observation: The log says connection refused"));
    // The diff: exactly the env value changes, with context around it.
    let minus: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("  -") && !l.starts_with("  ---"))
        .collect();
    let plus: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("  +") && !l.starts_with("  +++"))
        .collect();
    assert_eq!(minus.len(), 1, "{out}");
    assert_eq!(plus.len(), 1, "{out}");
    assert_eq!(minus[0], "  -          value: redis");
    assert_eq!(plus[0], "  +          value: redis-master");
    assert!(out.contains("--- Deployment default/critical-app live (resourceVersion 100)"));
    assert!(out.contains("+++ Deployment default/critical-app patched"));
    assert!(out.contains("@@ "), "a hunk header: {out}");
    assert!(
        !out.contains("managedFields"),
        "noise stays out of the diff"
    );
    assert!(!out.contains("DRIFT"), "{out}");
    assert!(out.contains("Verdict:  Allowed"));
    assert!(out.contains("Filter:   patch-safety"));
    let digest = report(NAME, "default", Phase::AwaitingApproval)
        .status
        .unwrap()
        .suggested_patch
        .unwrap()
        .digest();
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(
        out.contains(r#"{"op":"test","path":"/spec/template/spec/containers/0/env/0/value","value":"redis"}"#)
            && out.contains(r#"{"op":"replace","path":"/spec/template/spec/containers/0/env/0/value","value":"redis-master"}"#),
        "every operation is printed, not a count: {out}"
    );
    assert!(
        out.contains(&format!(
            "Decision:  none: `kubectl sre approve {NAME} -n default --digest {digest}`"
        )),
        "{out}"
    );
    assert!(out.contains("Applied:   no"));
    assert!(writes(&seen).is_empty(), "show never writes");
    assert_eq!(requests(&seen, "GET", DEPLOYMENT).len(), 1);
    api.done().await;
}

#[tokio::test]
async fn show_says_when_the_live_object_drifted() {
    // A newer resourceVersion, same values: the patch still applies, but it says so.
    let (r, t) = (
        report(NAME, "default", Phase::AwaitingApproval),
        deployment("redis", "107"),
    );
    let (client, api) = script(vec![get_report(&r), get_target(&t)]);
    let o = kubectl_sre(client, &["show", NAME], false).await;
    o.result.unwrap();
    assert!(
        o.out.contains(
            "Note: Deployment default/critical-app changed since the analysis (resourceVersion 100 then, 107 now; a status update counts too)"
        ),
        "{}",
        o.out
    );
    assert!(
        o.out.contains("+          value: redis-master"),
        "{}",
        o.out
    );

    // Someone changed the value: the patch's test fails, and no diff is shown.
    api.done().await;
    let (r, t) = (
        report(NAME, "default", Phase::AwaitingApproval),
        deployment("redis-cache", "108"),
    );
    let (client, api) = script(vec![get_report(&r), get_target(&t)]);
    let o = kubectl_sre(client, &["show", NAME], false).await;
    o.result.unwrap();
    assert!(
        o.out.contains(
            "DRIFT: the patch no longer applies to the live Deployment default/critical-app"
        ),
        "{}",
        o.out
    );
    assert!(!o.out.contains("+++"), "{}", o.out);
    assert!(o.out.contains("JSON Patch:"));
    api.done().await;
}

#[tokio::test]
async fn show_of_an_applied_report_shows_the_apply_and_the_rollback() {
    let (r, t) = (
        applied(Phase::Resolved, true),
        deployment("redis-master", "200"),
    );
    let (client, api) = script(vec![get_report(&r), get_target(&t), get_report(&r)]);
    let o = kubectl_sre(client.clone(), &["show", NAME], false).await;
    o.result.unwrap();
    assert!(o.out.contains("The patch is in place on the live object."));
    assert!(o.out.contains("Decision:  Approved"));
    assert!(o.out.contains("Applied:   "));
    assert!(o.out.contains(", generation 5"));
    assert!(o.out.contains(&format!(
        "Rollback:  available, 2 operations (1 test guard, 1 change): `kubectl sre rollback {NAME} -n default`"
    )));

    let o = kubectl_sre(client, &["show", NAME, "-o", "yaml"], false).await;
    o.result.unwrap();
    let back: DiagnosticReport = serde_yaml::from_str(&o.out).unwrap();
    let expected = applied(Phase::Resolved, true);
    assert_eq!(back.spec, expected.spec);
    assert_eq!(back.metadata.name.as_deref(), Some(NAME));
    let (mut got, want) = (back.status.unwrap(), expected.status.unwrap());
    assert_eq!(
        got.apply
            .as_ref()
            .unwrap()
            .applied_at
            .as_ref()
            .unwrap()
            .0
            .as_second(),
        want.apply
            .as_ref()
            .unwrap()
            .applied_at
            .as_ref()
            .unwrap()
            .0
            .as_second()
    );
    got.apply = want.apply.clone();
    assert_eq!(got, want);
    api.done().await;
}

#[tokio::test]
async fn show_of_a_missing_report_names_it_and_the_fix() {
    let (client, api) = script(vec![
        Exchange::get(format!(
            "{REPORTS}/namespaces/default/diagnosticreports/foo"
        ))
        .reply_with(|_| not_found("foo")),
    ]);
    let o = kubectl_sre(client, &["show", "foo"], false).await;
    let e = o.result.unwrap_err();
    assert_eq!(
        e.to_string(),
        "diagnosticreport default/foo not found: `kubectl sre list -n default` shows the reports (-A for every namespace)"
    );
    assert_eq!(e.exit_code(), 1);
    api.done().await;
}

#[tokio::test]
async fn approve_with_yes_writes_exactly_the_decision() {
    let (r, t) = (
        report(NAME, "default", Phase::AwaitingApproval),
        deployment("redis", "100"),
    );
    let (client, api) = script(vec![get_report(&r), get_target(&t), write_report(&r)]);
    let seen = api.seen.clone();
    let o = kubectl_sre(client, &["approve", NAME, "--yes"], false).await;
    o.result.unwrap();
    assert!(o.asked.is_empty(), "--yes asks nothing");
    let w = writes(&seen);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].method, "PATCH");
    assert!(
        w[0].uri.starts_with(&format!(
            "{REPORTS}/namespaces/default/diagnosticreports/{NAME}?"
        )),
        "{}",
        w[0].uri
    );
    let digest = report(NAME, "default", Phase::AwaitingApproval)
        .status
        .unwrap()
        .suggested_patch
        .unwrap()
        .digest();
    assert_eq!(
        w[0].body,
        json!({"metadata": {"resourceVersion": "55"},
               "spec": {"decision": "Approved", "approvedDigest": digest}}),
        "the decision, pinned to the patch read and to the report's version"
    );
    assert!(o.out.contains(&format!(
        "Approving diagnosticreport default/{NAME} lets the operator apply its suggested patch to Deployment default/critical-app: 2 operations (1 test guard, 1 change), point REDIS_HOST at redis-master. Safety verdict: Allowed by patch-safety."
    )), "{}", o.out);
    assert!(
        o.out
            .contains("approved: the operator applies the patch next")
    );
    api.done().await;
}

#[tokio::test]
async fn approve_asks_and_a_no_writes_nothing() {
    let (r, t) = (
        report(NAME, "default", Phase::AwaitingApproval),
        deployment("redis", "105"),
    );
    let (client, api) = script(vec![
        get_report(&r),
        get_target(&t),
        get_report(&r),
        get_target(&t),
        write_report(&r),
    ]);
    let seen = api.seen.clone();
    let o = kubectl_sre(client.clone(), &["approve", NAME], false).await;
    assert_eq!(o.asked, ["Approve?"]);
    let e = o.result.unwrap_err();
    assert!(e.to_string().starts_with("not confirmed"), "{e}");
    assert!(writes(&seen).is_empty());
    // The summary mentions the drift it saw.
    assert!(
        o.out
            .contains("changed since the analysis (resourceVersion 100 then, 105 now;"),
        "{}",
        o.out
    );

    let o = kubectl_sre(client, &["approve", NAME], true).await;
    o.result.unwrap();
    assert_eq!(o.asked, ["Approve?"]);
    assert_eq!(writes(&seen).len(), 1);
    api.done().await;
}

#[tokio::test]
async fn approve_refuses_a_denied_patch_and_a_report_not_awaiting_approval() {
    let mut denied = report(NAME, "default", Phase::AwaitingApproval);
    status_mut(&mut denied).safety = Some(SafetyVerdict {
        verdict: Verdict::Denied,
        filter: "patch-safety".into(),
        reason: Some("field securityContext may not change".into()),
    });
    let r = denied;
    let (client, api) = script(vec![get_report(&r)]);
    let seen = api.seen.clone();
    let o = kubectl_sre(client, &["approve", NAME, "--yes"], true).await;
    let e = o.result.unwrap_err().to_string();
    assert!(
        e.contains("its patch was Denied by patch-safety (field securityContext may not change)"),
        "{e}"
    );
    assert!(writes(&seen).is_empty(), "no write request");

    api.done().await;
    let r = report(NAME, "default", Phase::NoFix);
    let (client, api) = script(vec![get_report(&r)]);
    let seen = api.seen.clone();
    let o = kubectl_sre(client, &["approve", NAME, "-y"], true).await;
    let e = o.result.unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "cannot approve diagnosticreport default/{NAME}: it is NoFix, not AwaitingApproval"
        )),
        "{e}"
    );
    assert!(writes(&seen).is_empty(), "no write request");

    let mut decided = report(NAME, "default", Phase::AwaitingApproval);
    decided.spec.decision = Some(Decision::Rejected);
    api.done().await;
    let r = decided;
    let (client, api) = script(vec![get_report(&r)]);
    let seen = api.seen.clone();
    let o = kubectl_sre(client, &["approve", NAME, "-y"], true).await;
    let e = o.result.unwrap_err().to_string();
    assert!(
        e.contains("already has spec.decision: Rejected, and a decision is final"),
        "{e}"
    );
    assert!(writes(&seen).is_empty(), "no write request");
    api.done().await;
}

#[tokio::test]
async fn approve_surfaces_the_api_servers_refusal() {
    // Another person decided between our read and our write: the CRD's CEL rule refuses.
    let (r, t) = (
        report(NAME, "default", Phase::AwaitingApproval),
        deployment("redis", "100"),
    );
    let refusal = status_error(
        422,
        "Invalid",
        &format!(
            "DiagnosticReport.sre-operator.dev \"{NAME}\" is invalid: spec: Invalid value: \"object\": spec.decision is final once set; open a new report instead"
        ),
        NAME,
    );
    let (client, api) = script(vec![
        get_report(&r),
        get_target(&t),
        Exchange::patch(report_path()).reply(422, refusal),
    ]);
    let o = kubectl_sre(client, &["approve", NAME, "-y"], true).await;
    let e = o.result.unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "the API server refused spec.decision on diagnosticreport default/{NAME}: "
        )),
        "{e}"
    );
    assert!(
        e.contains("spec.decision is final once set; open a new report instead"),
        "{e}"
    );
    api.done().await;
}

#[tokio::test]
async fn approve_refuses_a_patch_that_changed_after_show() {
    let r = report(NAME, "default", Phase::AwaitingApproval);
    let (client, api) = script(vec![get_report(&r)]);
    let seen = api.seen.clone();
    // The digest of a patch the person read earlier; the report now holds another.
    let read = "sha256:".to_string() + &"0".repeat(64);
    let o = kubectl_sre(
        client,
        &["approve", NAME, "--yes", "--digest", &read],
        false,
    )
    .await;
    let err = o.result.unwrap_err().to_string();
    assert!(
        err.contains("its suggested patch changed since you read it"),
        "{err}"
    );
    assert!(
        writes(&seen).is_empty(),
        "nothing is approved: {:?}",
        writes(&seen)
    );
    api.done().await;
}

#[tokio::test]
async fn reject_writes_rejected() {
    let r = report(NAME, "default", Phase::AwaitingApproval);
    let (client, api) = script(vec![get_report(&r), write_report(&r)]);
    let seen = api.seen.clone();
    let o = kubectl_sre(client, &["reject", NAME], true).await;
    o.result.unwrap();
    assert_eq!(o.asked, ["Reject?"]);
    let w = writes(&seen);
    assert_eq!(w.len(), 1);
    assert_eq!(
        w[0].body,
        json!({"metadata": {"resourceVersion": "55"}, "spec": {"decision": "Rejected"}})
    );
    assert!(o.out.contains("Rejecting diagnosticreport default/"));
    assert!(o.out.contains("rejected: nothing will be applied"));

    // Rejecting a closed report is refused.
    api.done().await;
    let r = applied(Phase::Resolved, true);
    let (client, api) = script(vec![get_report(&r)]);
    let seen = api.seen.clone();
    let o = kubectl_sre(client, &["reject", NAME, "-y"], true).await;
    assert!(o.result.is_err());
    assert!(writes(&seen).is_empty());
    api.done().await;
}

fn registry() -> Arc<PluginRegistry> {
    static R: OnceLock<Arc<PluginRegistry>> = OnceLock::new();
    R.get_or_init(|| Arc::new(PluginRegistry::builtin(Runtime::new(None).unwrap())))
        .clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_reviews_dry_runs_then_patches_guarded_by_the_version() {
    let (r, t) = (
        applied(Phase::Unresolved, true),
        deployment("redis-master", "200"),
    );
    let (client, api) = script(vec![
        get_report(&r),
        get_target(&t),
        get_target(&t),
        patch_target(true, &t),
        patch_target(false, &t),
        event(),
    ]);
    let seen = api.seen.clone();
    let o = kubectl_sre(client, &["rollback", NAME, "--yes"], false).await;
    o.result
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", o.out, o.err));
    let patches = requests(&seen, "PATCH", DEPLOYMENT);
    assert_eq!(patches.len(), 2, "{patches:?}");
    assert!(patches[0].uri.contains("dryRun=All"), "{}", patches[0].uri);
    assert!(!patches[1].uri.contains("dryRun"), "{}", patches[1].uri);
    assert!(patches[1].uri.contains("fieldManager=kubectl-sre"));
    let expected = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": "200"},
        {"op": "test", "path": ENV_PATH, "value": "redis-master"},
        {"op": "replace", "path": ENV_PATH, "value": "redis"},
    ]);
    assert_eq!(patches[0].body, expected);
    assert_eq!(patches[1].body, expected);
    // Then the Event on the report, after the patch.
    let all = seen.lock().unwrap().clone();
    let real = all
        .iter()
        .position(|s| s.method == "PATCH" && !s.uri.contains("dryRun"))
        .unwrap();
    let event = all
        .iter()
        .position(|s| {
            s.method == "POST"
                && s.uri
                    .starts_with("/apis/events.k8s.io/v1/namespaces/default/events")
        })
        .expect("an Event");
    assert!(event > real);
    assert_eq!(all[event].body["reason"], "RolledBack");
    assert_eq!(all[event].body["regarding"]["name"], NAME);
    assert_eq!(all[event].body["related"]["name"], "critical-app");
    assert!(
        !all.iter()
            .any(|s| s.method == "PATCH" && s.uri.contains("diagnosticreports")),
        "no status field is invented"
    );
    assert!(
        o.out.contains("-          value: redis-master"),
        "{}",
        o.out
    );
    assert!(o.out.contains("+          value: redis"), "{}", o.out);
    assert!(o.out.contains("Safety verdict: Allowed by patch-safety"));
    assert!(o.out.contains("deployment.apps/critical-app rolled back"));
    // The review used the same plugins the operator loads.
    assert!(
        registry()
            .current()
            .plugins()
            .iter()
            .any(|p| p.name == "patch-safety")
    );
    api.done().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_refuses_without_a_rollback_patch_or_an_apply() {
    let r = applied(Phase::Resolved, false);
    let (client, api) = script(vec![get_report(&r)]);
    let seen = api.seen.clone();
    let o = kubectl_sre(client, &["rollback", NAME, "--yes"], false).await;
    let e = o.result.unwrap_err().to_string();
    assert!(e.contains("it has no status.apply.rollbackPatch"), "{e}");
    assert!(writes(&seen).is_empty());

    api.done().await;
    let r = report(NAME, "default", Phase::AwaitingApproval);
    let (client, api) = script(vec![get_report(&r)]);
    let seen = api.seen.clone();
    let o = kubectl_sre(client, &["rollback", NAME, "--yes"], false).await;
    let e = o.result.unwrap_err().to_string();
    assert!(
        e.contains("it is AwaitingApproval; only a report whose patch was applied"),
        "{e}"
    );
    assert!(writes(&seen).is_empty());

    // Someone already put the old value back: nothing to do, nothing written.
    api.done().await;
    let (r, t) = (applied(Phase::Unresolved, true), deployment("redis", "201"));
    let (client, api) = script(vec![get_report(&r), get_target(&t)]);
    let seen = api.seen.clone();
    let o = kubectl_sre(client, &["rollback", NAME, "--yes"], false).await;
    o.result.unwrap();
    assert!(o.out.contains("nothing to roll back"), "{}", o.out);
    assert!(writes(&seen).is_empty());

    // The live object changed after the apply: the rollback's tests fail, it is refused.
    api.done().await;
    let (r, t) = (
        applied(Phase::Unresolved, true),
        deployment("redis-cache", "202"),
    );
    let (client, api) = script(vec![get_report(&r), get_target(&t), get_target(&t)]);
    let seen = api.seen.clone();
    let o = kubectl_sre(client, &["rollback", NAME, "--yes"], false).await;
    let e = o.result.unwrap_err().to_string();
    assert!(e.contains("Denied by host"), "{e}");
    assert!(writes(&seen).is_empty());
    api.done().await;
}

/// What the operator's `GET /plugins` answers, from the real endpoint (telemetry::serve).
async fn operator_plugins_json() -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let server = tokio::spawn(sre_operator::telemetry::serve(
        addr,
        Arc::new(sre_operator::telemetry::Metrics::default()),
        sre_operator::telemetry::Readiness::default(),
        Some(registry()),
    ));
    let mut stream = loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    };
    stream
        .write_all(b"GET /plugins HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    server.abort();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/json"), "{head}");
    serde_json::from_str(body).unwrap()
}

/// The operator's Pods, as a list of one.
fn operator_pods() -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sre-operator-7d9f", "namespace": "sre-operator"}}
    ]})
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_reads_each_operator_pod_through_the_pod_proxy() {
    let mut served = operator_plugins_json().await;
    assert_eq!(served["source"], "built-in plugins");
    // Add a refusal, as a directory with a broken plugin would show.
    served["refusals"] = json!([{"plugin": "log-signatures", "reason": "sha256 mismatch"}]);
    let proxy = "/api/v1/namespaces/sre-operator/pods/sre-operator-7d9f:8080/proxy/plugins";
    let answer = served.clone();
    let pods = Exchange::get("/api/v1/namespaces/sre-operator/pods").reply(200, operator_pods());
    let (client, api) = script(vec![
        pods,
        Exchange::get(proxy).reply(200, answer.clone()),
        Exchange::get("/api/v1/namespaces/sre-operator/pods").reply(200, operator_pods()),
        Exchange::get(proxy).reply(200, answer),
    ]);
    let seen = api.seen.clone();
    let o = kubectl_sre(client.clone(), &["plugins"], false).await;
    o.result.unwrap();
    let list = requests(&seen, "GET", "/api/v1/namespaces/sre-operator/pods?");
    assert!(
        list[0]
            .uri
            .contains("labelSelector=app.kubernetes.io%2Fname%3Dsre-operator"),
        "{}",
        list[0].uri
    );
    assert_eq!(requests(&seen, "GET", proxy).len(), 1);
    let lines: Vec<&str> = o.out.lines().collect();
    assert_eq!(
        lines[0],
        "Pod sre-operator/sre-operator-7d9f: plugins from built-in plugins, 3 loaded, 1 refused"
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "WORLD", "TOOLS", "DIGEST", "LIMITS"]
    );
    let reader = lines.iter().find(|l| l.starts_with("k8s-reader ")).unwrap();
    let digest = served["plugins"][0]["digest"].as_str().unwrap();
    assert!(reader.contains(&digest[..12]), "{reader}");
    assert!(reader.contains("fetch_logs"), "{reader}");
    assert!(reader.contains("memory "), "{reader}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("patch-safety ") && l.contains("patch-filter"))
    );
    assert_eq!(lines[lines.len() - 2], "REFUSED");
    assert_eq!(lines[lines.len() - 1], "  log-signatures: sha256 mismatch");

    let o = kubectl_sre(client, &["plugins", "-o", "json"], false).await;
    o.result.unwrap();
    let printed: Value = serde_json::from_str(&o.out).unwrap();
    assert_eq!(printed[0]["pod"], "sre-operator-7d9f");
    assert_eq!(printed[0]["plugins"], served["plugins"]);
    assert_eq!(printed[0]["refusals"], served["refusals"]);
    api.done().await;
}

#[tokio::test]
async fn plugins_names_the_missing_pod_and_the_missing_permission() {
    let (client, api) = script(vec![Exchange::get("/api/v1/namespaces/ops/pods").reply(
        200,
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []}),
    )]);
    let o = kubectl_sre(client, &["plugins", "--operator-namespace", "ops"], false).await;
    let e = o.result.unwrap_err().to_string();
    assert!(
        e.starts_with(
            "no operator Pod found in namespace ops (label app.kubernetes.io/name=sre-operator)"
        ),
        "{e}"
    );

    api.done().await;
    let (client, api) = script(vec![
        Exchange::get("/api/v1/namespaces/sre-operator/pods").reply(200, operator_pods()),
        Exchange::get("/api/v1/namespaces/sre-operator/pods/sre-operator-7d9f:8080/proxy/plugins")
            .reply(
                403,
                status_error(
                    403,
                    "Forbidden",
                    "pods \"sre-operator-7d9f\" is forbidden: User \"dev\" cannot get resource \"pods/proxy\"",
                    "sre-operator-7d9f",
                ),
            ),
    ]);
    let o = kubectl_sre(client, &["plugins"], false).await;
    let e = o.result.unwrap_err().to_string();
    assert!(
        e.contains("needs the RBAC permission `get pods/proxy` in namespace sre-operator"),
        "{e}"
    );
    api.done().await;
}

#[test]
fn usage_errors_exit_with_2() {
    let e = Cli::try_parse_from(["kubectl-sre", "show"]).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    let e = Cli::try_parse_from(["kubectl-sre", "list", "-o", "wide"]).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    // Global flags go before or after the command, as with kubectl.
    let cli = Cli::try_parse_from(["kubectl-sre", "-n", "prod", "list"]).unwrap();
    assert_eq!(cli.global.namespace.as_deref(), Some("prod"));
    let cli = Cli::try_parse_from(["kubectl-sre", "show", "x", "--context", "kind"]).unwrap();
    assert_eq!(cli.global.context.as_deref(), Some("kind"));
}

#[tokio::test]
async fn all_namespaces_and_a_namespace_is_a_usage_error() {
    let (client, api) = script(vec![]);
    let seen = api.seen.clone();
    let o = kubectl_sre(client, &["list", "-A", "-n", "x"], false).await;
    assert_eq!(o.result.unwrap_err().exit_code(), 2);
    assert!(seen.lock().unwrap().is_empty());
    api.done().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_checks_again_when_the_version_moves_under_it() {
    // The Deployment controller bumps the resourceVersion between our read and our write: the
    // first real patch fails its guard; the next try reads 201 and is guarded by it.
    let (before, moved, after) = (
        deployment("redis-master", "200"),
        deployment("redis-master", "201"),
        deployment("redis", "202"),
    );
    let (client, api) = script(vec![
        get_report(&applied(Phase::Unresolved, true)),
        get_target(&before),
        get_target(&before),
        patch_target(true, &after),
        Exchange::patch(DEPLOYMENT)
            .without_query("dryRun")
            .reply_with(|_| conflict("critical-app")),
        get_target(&moved),
        get_target(&moved),
        get_target(&moved),
        patch_target(true, &after),
        patch_target(false, &after),
        event(),
    ]);
    let seen = api.seen.clone();
    let o = kubectl_sre(client, &["rollback", NAME], true).await;
    o.result.unwrap_or_else(|e| panic!("{e}\n{}", o.out));
    assert_eq!(o.asked, ["Roll back?"], "asked once");
    let sent = requests(&seen, "PATCH", DEPLOYMENT);
    assert_eq!(sent.len(), 4, "{sent:?}");
    assert_eq!(sent[3].body[0]["value"], "201");
    assert!(!sent[3].uri.contains("dryRun"));
    assert!(o.out.contains("resourceVersion 202"), "{}", o.out);
    api.done().await;
}

#[tokio::test]
async fn approve_incident_approves_each_report_awaiting_approval_after_one_question() {
    let incident = "inc-0a1b2c3d4e";
    let member = |name: &str, phase: Phase, of: Option<&str>| {
        let mut r = report(name, "default", phase);
        status_mut(&mut r).incident = of.map(str::to_string);
        r
    };
    let (a, b) = (
        member(
            "deployment-cart-imagepullbackoff",
            Phase::AwaitingApproval,
            Some(incident),
        ),
        member(
            "deployment-web-imagepullbackoff",
            Phase::AwaitingApproval,
            Some(incident),
        ),
    );
    let decided = {
        let mut r = member(
            "deployment-api-imagepullbackoff",
            Phase::AwaitingApproval,
            Some(incident),
        );
        r.spec.decision = Some(Decision::Rejected);
        r
    };
    let no_fix = member(
        "deployment-ui-imagepullbackoff",
        Phase::NoFix,
        Some(incident),
    );
    let other = member(
        "deployment-ops-imagepullbackoff",
        Phase::AwaitingApproval,
        None,
    );
    let t = deployment("redis", "100");
    let path = |r: &DiagnosticReport| {
        format!(
            "{REPORTS}/namespaces/default/diagnosticreports/{}",
            r.metadata.name.as_deref().unwrap()
        )
    };
    let (client, api) = script(vec![
        Exchange::get(format!("{REPORTS}/namespaces/default/diagnosticreports")).reply(
            200,
            list_of(&[other, b.clone(), no_fix, a.clone(), decided]),
        ),
        get_target(&t),
        get_target(&t),
        Exchange::patch(path(&a)).reply(200, serde_json::to_value(&a).unwrap()),
        Exchange::patch(path(&b)).reply(200, serde_json::to_value(&b).unwrap()),
    ]);
    let seen = api.seen.clone();
    let o = kubectl_sre(client, &["approve", "--incident", incident], true).await;
    o.result.unwrap();
    assert_eq!(o.asked, ["Approve?"], "one question for the incident");
    let digest = a.status.clone().unwrap().suggested_patch.unwrap().digest();
    let w = writes(&seen);
    assert_eq!(w.len(), 2, "the two awaiting approval, nothing else: {w:?}");
    for (write, r) in w.iter().zip([&a, &b]) {
        assert!(write.uri.starts_with(&path(r)), "{}", write.uri);
        assert_eq!(
            write.body,
            json!({"metadata": {"resourceVersion": "55"},
                   "spec": {"decision": "Approved", "approvedDigest": digest}}),
            "each pinned to the patch shown and its version"
        );
    }
    assert!(
        o.out.contains("2 report(s) of incident inc-0a1b2c3d4e"),
        "{}",
        o.out
    );
    assert!(
        o.out.contains("Left out: cannot approve diagnosticreport default/deployment-ui-imagepullbackoff: it is NoFix"),
        "{}",
        o.out
    );
    assert!(
        o.out
            .contains("deployment-api-imagepullbackoff already has spec.decision"),
        "{}",
        o.out
    );
    assert!(
        !o.out.contains("deployment-ops"),
        "another incident's report: {}",
        o.out
    );
    api.done().await;

    // A no writes nothing; an incident with no report here names the way to find one.
    let (client, api) = script(vec![
        Exchange::get(format!("{REPORTS}/namespaces/default/diagnosticreports"))
            .reply(200, list_of(std::slice::from_ref(&a))),
        get_target(&t),
    ]);
    let seen = api.seen.clone();
    let o = kubectl_sre(client, &["approve", "--incident", incident], false).await;
    assert!(o.result.is_err());
    assert!(writes(&seen).is_empty());
    api.done().await;
    let (client, api) = script(vec![
        Exchange::get(format!("{REPORTS}/namespaces/default/diagnosticreports"))
            .reply(200, list_of(&[])),
    ]);
    let o = kubectl_sre(
        client,
        &["approve", "--incident", "inc-ffffffffff", "-y"],
        false,
    )
    .await;
    let err = o.result.unwrap_err().to_string();
    assert!(
        err.contains("no report in namespace default belongs to incident inc-ffffffffff"),
        "{err}"
    );
    api.done().await;
}

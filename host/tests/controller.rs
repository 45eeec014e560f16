//! The report state machine against a scripted API service (the tower-test pattern of kube-rs's
//! controller-rs, support/mock_api.rs): each test scripts the requests the operator must make, in
//! order, and any other request fails it; the tests also look at what it wrote. Reads go through
//! a cluster dump.

mod support;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use kube::runtime::watcher;
use serde_json::{Value, json};
use sre_operator::agent::hourly::HourlyTokens;
use sre_operator::agent::rules::RulesBrain;
use sre_operator::agent::{Brain, Budget, Case, Conclusion, Session};
use sre_operator::cluster::DumpCluster;
use sre_operator::controller::{Context, Settings, reconcile_report};
use sre_operator::crd::{
    ApplyRecord, DebugPolicy, Decision, DiagnosticReport, DiagnosticReportStatus, PatchOp,
    PatchOperation, Phase, SafetyVerdict, SuggestedPatch, TargetRef, Verdict,
};
use sre_operator::plugin::{PluginRegistry, Runtime};
use sre_operator::telemetry::Metrics;
use support::mock_api::{Api, Exchange, Log, Script, Seen, conflict, requests};

/// How the mocked API server answers a PATCH of the Deployment.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    Accept,
    Conflict,
}

fn registry() -> Arc<PluginRegistry> {
    static R: OnceLock<Arc<PluginRegistry>> = OnceLock::new();
    R.get_or_init(|| Arc::new(PluginRegistry::builtin(Runtime::new(None).unwrap())))
        .clone()
}

const REPORT_STATUS: &str = "/apis/sre-operator.dev/v1alpha1/namespaces/default/diagnosticreports/deployment-critical-app-crashloopbackoff/status";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/default/deployments/critical-app";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

/// The scripted API server: `steps` in order; Events (echoed back) may come any number of times.
fn mock(steps: Vec<Exchange>) -> (Client, Api) {
    steps
        .into_iter()
        .fold(Script::new(), Script::then)
        .any_number(Exchange::post(EVENTS).echo())
        .start()
}

/// A write of the report's status, answered with the report as it is being analysed.
fn status_write() -> Exchange {
    Exchange::patch(REPORT_STATUS).reply(200, report(Phase::Analyzing, None))
}

/// A read of the Deployment (answered as the mock always has: only its metadata is used).
fn read_target() -> Exchange {
    Exchange::get(DEPLOYMENT).reply(200, report(Phase::Analyzing, None))
}

fn patched_target() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "critical-app", "namespace": "default", "generation": 5}})
}

/// The dry run of the Deployment's patch; it always passes.
fn dry_run() -> Exchange {
    Exchange::patch(DEPLOYMENT)
        .with_query("dryRun=All")
        .reply(200, patched_target())
}

/// The real patch of the Deployment, answered per `target`.
fn patch_target(target: Target) -> Exchange {
    let patch = Exchange::patch(DEPLOYMENT).without_query("dryRun");
    match target {
        Target::Accept => patch.reply(200, patched_target()),
        Target::Conflict => patch.reply_with(|_| conflict("critical-app")),
    }
}

fn dump() -> Arc<DumpCluster> {
    Arc::new(
        DumpCluster::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dump"))
            .unwrap(),
    )
}

/// The Deployment's resourceVersion in the bundled dump.
fn target_version() -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/dump/default/deployments.json"),
    )
    .unwrap();
    let list: Value = serde_json::from_str(&text).unwrap();
    let d = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["metadata"]["name"] == "critical-app")
        .unwrap();
    d["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

fn redis_patch(old: &str, new: &str) -> Vec<PatchOperation> {
    let path = "/spec/template/spec/containers/0/env/0/value".to_string();
    vec![
        PatchOperation {
            op: PatchOp::Test,
            path: path.clone(),
            from: None,
            value: Some(json!(old)),
        },
        PatchOperation {
            op: PatchOp::Replace,
            path,
            from: None,
            value: Some(json!(new)),
        },
    ]
}

fn report(phase: Phase, decision: Option<Decision>) -> Value {
    serde_json::to_value(report_object(
        phase,
        decision,
        redis_patch("redis", "redis-master"),
        Some(target_version()),
        false,
    ))
    .unwrap()
}

fn report_object(
    phase: Phase,
    decision: Option<Decision>,
    patch: Vec<PatchOperation>,
    target_rv: Option<String>,
    intent: bool,
) -> DiagnosticReport {
    let mut r: DiagnosticReport = serde_json::from_value(json!({
        "apiVersion": "sre-operator.dev/v1alpha1", "kind": "DiagnosticReport",
        "metadata": {"name": "deployment-critical-app-crashloopbackoff", "namespace": "default", "generation": 2, "uid": "r-1",
                     // What the operator writes when it opens a report (provenance::opened_by_us).
                     "labels": {"app.kubernetes.io/managed-by": "sre-operator"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "critical-app",
                                          "uid": "774486c4-ce4c-48ab-a972-79b1bc20d7dc"}]},
        "spec": {"pod": {"namespace": "default", "name": "critical-app-7d4b9c6f5-h8x2m", "uid": "a69e1828-f3e0-4043-9cc9-8e3f0e2f3d2e"},
                 "workload": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "critical-app"},
                 "failure": {"class": "CrashLoopBackOff", "reason": "Error", "evidence": []},
                 "policy": "protect-critical-services"}
    }))
    .unwrap();
    r.spec.decision = decision;
    let suggestion = SuggestedPatch {
        target: TargetRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: "default".into(),
            name: "critical-app".into(),
        },
        patch,
        explanation: "point REDIS_HOST at redis-master".into(),
    };
    r.status = Some(DiagnosticReportStatus {
        phase: Some(phase),
        patch_digest: Some(suggestion.digest()),
        suggested_patch: Some(suggestion),
        safety: Some(SafetyVerdict::allowed("patch-safety")),
        target_resource_version: target_rv,
        apply: intent.then(|| ApplyRecord {
            started_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ),
            applied_at: None,
            rollback_patch: vec![],
            target_generation: None,
        }),
        ..Default::default()
    });
    r
}

fn context(client: Client, policies: Vec<DebugPolicy>) -> Arc<Context> {
    context_with_leadership(client, policies, true)
}

/// The context of a report the seed's policy (Manual approval) still selects.
fn selecting(client: Client) -> Arc<Context> {
    context(client, vec![policy("Manual")])
}

fn context_with_leadership(
    client: Client,
    policies: Vec<DebugPolicy>,
    leader: bool,
) -> Arc<Context> {
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for p in policies {
        writer.apply_watcher_event(&watcher::Event::InitApply(p));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    Arc::new(Context {
        client: client.clone(),
        cluster: dump(),
        recent: Arc::new(sre_operator::cluster::RecentReads::new(dump())),
        pods: reflector::store().0,
        policies: store,
        compiled: Default::default(),
        plugins: registry(),
        brain: Arc::new(RulesBrain),
        settings: Settings {
            namespaces: vec![],
            budget: Budget::default(),
            concurrency: 2,
            namespace_concurrency: 1,
            verify_timeout: std::time::Duration::from_secs(300),
            init_timeout: sre_operator::failure::INIT_STUCK_AFTER,
            retention: std::time::Duration::from_secs(3600),
            hourly_tokens: Arc::new(HourlyTokens::new(0)),
        },
        metrics: Arc::new(Metrics::default()),
        recorder: Recorder::new(
            client,
            Reporter {
                controller: "sre-operator".into(),
                instance: None,
            },
        ),
        leader: tokio::sync::watch::channel(leader).1,
        slots: sre_operator::controller::fairness::NamespaceSlots::new(1),
        unwritten: Default::default(),
        incidents: Default::default(),
        reports: reports_seen(vec![]),
        openings: Default::default(),
        checked_owners: Default::default(),
        notifier: None,
    })
}

/// Reconciles `report` once against an API scripted with `steps`, checks they all came, and
/// returns every request the operator made.
async fn reconcile_once(steps: Vec<Exchange>, report: DiagnosticReport) -> Log {
    let (client, api) = mock(steps);
    reconcile_report(Arc::new(report), selecting(client))
        .await
        .unwrap();
    let seen = api.seen.clone();
    api.done().await;
    seen
}

fn writes(seen: &Log, needle: &str) -> Vec<Seen> {
    requests(seen, "PATCH", needle)
}

fn status_phases(seen: &Log) -> Vec<String> {
    writes(seen, "/status")
        .iter()
        .filter_map(|s| s.body["status"]["phase"].as_str().map(str::to_string))
        .collect()
}

/// Asserts that the Deployment was never written and that the last status write failed the report
/// with a message that contains `reason`.
fn assert_failed_without_applying(seen: &Log, reason: &str) {
    assert!(
        writes(seen, "/deployments/").is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    let last = writes(seen, "/status").last().unwrap().body.clone();
    assert_eq!(last["status"]["phase"], "Failed", "{last}");
    assert!(
        last["status"]["message"].as_str().unwrap().contains(reason),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn approval_records_the_intent_then_dry_runs_then_applies_guarded_by_the_version() {
    let (client, api) = mock(vec![
        status_write(),
        read_target(),
        dry_run(),
        patch_target(Target::Accept),
        status_write(),
    ]);
    let seen = api.seen.clone();
    let ctx = selecting(client);
    // First pass: the intent is recorded and nothing else is touched.
    let approved = report_object(
        Phase::Approved,
        Some(Decision::Approved),
        redis_patch("redis", "redis-master"),
        Some(target_version()),
        false,
    );
    reconcile_report(Arc::new(approved), ctx.clone())
        .await
        .unwrap();
    assert!(
        writes(&seen, "/deployments/").is_empty(),
        "no patch before the intent is recorded"
    );
    let intent = writes(&seen, "/status");
    assert!(
        intent[0].body["status"]["apply"]["startedAt"].is_string(),
        "{:?}",
        intent[0].body
    );

    // Second pass: dry run, then the real patch with a test on the reviewed resourceVersion.
    let with_intent = report_object(
        Phase::Approved,
        Some(Decision::Approved),
        redis_patch("redis", "redis-master"),
        Some(target_version()),
        true,
    );
    reconcile_report(Arc::new(with_intent), ctx.clone())
        .await
        .unwrap();
    let patches = writes(&seen, "/deployments/critical-app");
    assert_eq!(patches.len(), 2, "{patches:?}");
    assert!(patches[0].uri.contains("dryRun=All"), "{}", patches[0].uri);
    assert!(!patches[1].uri.contains("dryRun"), "{}", patches[1].uri);
    assert_eq!(
        patches[1].body[0],
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": target_version()})
    );
    assert_eq!(patches[1].body[2]["value"], "redis-master");
    let last = writes(&seen, "/status").last().unwrap().body.clone();
    assert_eq!(last["status"]["phase"], "Applied");
    assert_eq!(
        last["status"]["apply"]["rollbackPatch"][1],
        json!({"op": "replace", "path": "/spec/template/spec/containers/0/env/0/value", "value": "redis"})
    );
    assert_eq!(last["status"]["apply"]["targetGeneration"], 5);
    api.done().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_while_approved_never_applies_twice() {
    // The patch already landed before the restart: the Deployment holds the new value.
    let replayed = report_object(
        Phase::Approved,
        Some(Decision::Approved),
        redis_patch("redis-master", "redis"),
        Some(target_version()),
        true,
    );
    // (the dump holds REDIS_HOST=redis, so a patch whose new value is "redis" is already applied)
    let seen = reconcile_once(vec![status_write()], replayed).await;
    assert!(
        writes(&seen, "/deployments/").is_empty(),
        "nothing is sent twice"
    );
    assert_eq!(status_phases(&seen), ["Applied"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn rejection_applies_nothing() {
    let rejected = report_object(
        Phase::AwaitingApproval,
        Some(Decision::Rejected),
        redis_patch("redis", "redis-master"),
        Some(target_version()),
        false,
    );
    let seen = reconcile_once(vec![status_write()], rejected).await;
    assert!(writes(&seen, "/deployments/").is_empty());
    assert_eq!(status_phases(&seen), ["Rejected"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn drift_is_reviewed_again_and_a_stale_patch_fails_with_the_reason() {
    // Reviewed against another version, and its guard no longer matches what the object holds.
    let drifted = report_object(
        Phase::Approved,
        Some(Decision::Approved),
        redis_patch("cache", "redis-master"),
        Some("1".into()),
        true,
    );
    let seen = reconcile_once(vec![read_target(), status_write()], drifted).await;
    assert_failed_without_applying(&seen, "changed since the analysis");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resource_version_conflict_is_retried_not_failed() {
    let approved = report_object(
        Phase::Approved,
        Some(Decision::Approved),
        redis_patch("redis", "redis-master"),
        Some(target_version()),
        true,
    );
    let seen = reconcile_once(
        vec![read_target(), dry_run(), patch_target(Target::Conflict)],
        approved,
    )
    .await;
    assert_eq!(
        writes(&seen, "/deployments/").len(),
        2,
        "dry run, then the conflicting patch"
    );
    assert!(
        status_phases(&seen).is_empty(),
        "the report stays Approved and is retried"
    );
}

fn policy(approval: &str) -> DebugPolicy {
    serde_json::from_value(json!({
        "apiVersion": "sre-operator.dev/v1alpha1", "kind": "DebugPolicy",
        "metadata": {"name": "protect-critical-services"},
        "spec": {"rules": [{"namespaces": ["default"]}], "approval": approval}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_approval_approves_only_allowed_patches() {
    let (client, api) = mock(vec![status_write()]);
    let seen = api.seen.clone();
    let ctx = context(client, vec![policy("Auto")]);
    let allowed = report_object(
        Phase::AwaitingApproval,
        None,
        redis_patch("redis", "redis-master"),
        Some(target_version()),
        false,
    );
    reconcile_report(Arc::new(allowed), ctx.clone())
        .await
        .unwrap();
    assert_eq!(status_phases(&seen), ["Approved"]);
    api.done().await;

    let (client, api) = mock(vec![]);
    let seen = api.seen.clone();
    let ctx = context(client, vec![policy("Auto")]);
    let mut denied = report_object(
        Phase::AwaitingApproval,
        None,
        redis_patch("redis", "redis-master"),
        Some(target_version()),
        false,
    );
    denied.status.as_mut().unwrap().safety = Some(SafetyVerdict {
        verdict: Verdict::Denied,
        filter: "patch-safety".into(),
        reason: Some("no".into()),
    });
    reconcile_report(Arc::new(denied), ctx).await.unwrap();
    assert!(
        status_phases(&seen).is_empty(),
        "a denied patch waits for nobody"
    );
    api.done().await;

    let (client, api) = mock(vec![]);
    let seen = api.seen.clone();
    let ctx = context(client, vec![policy("Manual")]);
    let manual = report_object(
        Phase::AwaitingApproval,
        None,
        redis_patch("redis", "redis-master"),
        Some(target_version()),
        false,
    );
    reconcile_report(Arc::new(manual), ctx).await.unwrap();
    assert!(
        status_phases(&seen).is_empty(),
        "Manual waits for spec.decision"
    );
    api.done().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_patch_set_to_approved_by_hand_is_never_applied() {
    let mut forced = report_object(
        Phase::Approved,
        None,
        redis_patch("redis", "redis-master"),
        Some(target_version()),
        true,
    );
    forced.status.as_mut().unwrap().safety = Some(SafetyVerdict {
        verdict: Verdict::Denied,
        filter: "patch-safety".into(),
        reason: Some("touches securityContext".into()),
    });
    let seen = reconcile_once(vec![status_write()], forced).await;
    assert_failed_without_applying(&seen, "denied and can never be applied");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patch_planted_in_status_is_reviewed_again_even_on_an_unchanged_target() {
    // Whoever can write status can put any patch there and mark it Allowed: the operator must
    // not take the recorded verdict's word for it.
    let (client, api) = mock(vec![read_target(), status_write()]);
    let seen = api.seen.clone();
    let ctx = selecting(client);
    let privileged = vec![PatchOperation {
        op: PatchOp::Add,
        path: "/spec/template/spec/containers/0/securityContext".into(),
        from: None,
        value: Some(json!({ "privileged": true })),
    }];
    let planted = report_object(
        Phase::Approved,
        Some(Decision::Approved),
        privileged,
        Some(target_version()),
        true,
    );
    reconcile_report(Arc::new(planted), ctx).await.unwrap();
    assert_failed_without_applying(&seen, "no longer passes review");
    api.done().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patch_for_another_workload_is_never_applied() {
    let mut planted = report_object(
        Phase::Approved,
        Some(Decision::Approved),
        redis_patch("redis", "redis-master"),
        Some(target_version()),
        true,
    );
    let suggestion = planted
        .status
        .as_mut()
        .unwrap()
        .suggested_patch
        .as_mut()
        .unwrap();
    suggestion.target.namespace = "production".into();
    // Whoever can write status can write the matching digest too.
    let digest = suggestion.digest();
    planted.status.as_mut().unwrap().patch_digest = Some(digest);
    let seen = reconcile_once(vec![status_write()], planted).await;
    assert_failed_without_applying(&seen, "may only target the failing Pod's workload");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_leader_acts() {
    let approved = || {
        report_object(
            Phase::Approved,
            Some(Decision::Approved),
            redis_patch("redis", "redis-master"),
            Some(target_version()),
            true,
        )
    };
    // A replica that does not hold the Lease reads but never writes.
    let (client, api) = mock(vec![]);
    let seen = api.seen.clone();
    let follower = context_with_leadership(client, vec![policy("Manual")], false);
    reconcile_report(Arc::new(approved()), follower)
        .await
        .unwrap();
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    api.done().await;
    // When the Lease passes to it, the same report is applied, once.
    let (client, api) = mock(vec![
        read_target(),
        dry_run(),
        patch_target(Target::Accept),
        status_write(),
    ]);
    let seen = api.seen.clone();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut ctx = Arc::try_unwrap(context_with_leadership(
        client,
        vec![policy("Manual")],
        false,
    ))
    .ok()
    .unwrap();
    ctx.leader = rx;
    let ctx = Arc::new(ctx);
    reconcile_report(Arc::new(approved()), ctx.clone())
        .await
        .unwrap();
    assert!(writes(&seen, "/deployments/").is_empty());
    tx.send(true).unwrap();
    reconcile_report(Arc::new(approved()), ctx).await.unwrap();
    assert_eq!(
        writes(&seen, "/deployments/critical-app").len(),
        2,
        "dry run and the patch"
    );
    api.done().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn events_go_to_the_report_and_the_pod() {
    let rejected = report_object(
        Phase::AwaitingApproval,
        Some(Decision::Rejected),
        redis_patch("redis", "redis-master"),
        Some(target_version()),
        false,
    );
    let seen = reconcile_once(
        vec![
            status_write(),
            Exchange::post(EVENTS).echo(),
            Exchange::post(EVENTS).echo(),
        ],
        rejected,
    )
    .await;
    let events: Vec<Value> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.uri.contains("/events"))
        .map(|s| s.body.clone())
        .collect();
    let regarding: Vec<&str> = events
        .iter()
        .filter_map(|e| e["regarding"]["kind"].as_str())
        .collect();
    assert_eq!(regarding, ["DiagnosticReport", "Pod"], "{events:?}");
    assert_eq!(
        events[1]["regarding"]["name"],
        "critical-app-7d4b9c6f5-h8x2m"
    );
    assert_eq!(events[0]["reason"], "Rejected");
}

/// A model brain that must not be called.
struct Untouchable;

#[async_trait::async_trait]
impl Brain for Untouchable {
    fn kind(&self) -> &'static str {
        "openai"
    }

    fn model(&self) -> Option<String> {
        Some("gpt-test".into())
    }

    async fn investigate(
        &self,
        _: &Case,
        _: &mut Session,
    ) -> Result<Conclusion, sre_operator::agent::AgentError> {
        panic!("the hour's tokens are spent: the model must not be called");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spent_hourly_token_budget_defers_a_model_investigation() {
    // The Pod is read through the cluster reader (the bundled dump), not the mocked API.
    let (client, api) = mock(vec![status_write()]);
    let seen = api.seen.clone();
    let mut ctx = Arc::try_unwrap(selecting(client)).ok().unwrap();
    ctx.brain = Arc::new(Untouchable);
    let spent = HourlyTokens::new(50_000);
    let all = spent.reserve("default", 50_000).unwrap();
    spent.settle(all, 50_000);
    ctx.settings.hourly_tokens = Arc::new(spent);
    let mut analyzing = report_object(Phase::Analyzing, None, vec![], None, false);
    analyzing.status.as_mut().unwrap().suggested_patch = None;
    let action = reconcile_report(Arc::new(analyzing), Arc::new(ctx))
        .await
        .unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(3600)),
        "back when the spending ages out of the hour"
    );
    let last = writes(&seen, "/status").last().unwrap().body.clone();
    assert!(
        last["status"]["message"]
            .as_str()
            .unwrap()
            .contains("hourly token budget"),
        "{last}"
    );
    assert_ne!(last["status"]["phase"], "Failed", "{last}");
    api.done().await;
}

/// A crash-looping Pod in `namespace` (what `may_be_failing` keeps).
fn crash_looping_in(namespace: &str, name: &str) -> Value {
    sre_e2e::fixtures::PodBuilder::new(name)
        .namespace(namespace)
        .uid(&sre_e2e::fixtures::uid(7, name.len() as u64))
        .label("app", "web")
        .status(json!({"phase": "Running", "containerStatuses": [{
            "name": "app", "ready": false, "restartCount": 5, "image": "web:1", "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}))
        .json()
}

fn policy_for(namespaces: &[&str]) -> DebugPolicy {
    serde_json::from_value(json!({
        "apiVersion": "sre-operator.dev/v1alpha1", "kind": "DebugPolicy",
        "metadata": {"name": "web"},
        "spec": {"rules": [{"namespaces": namespaces,
                            "selector": {"matchLabels": {"app": "web"}}}]}
    }))
    .unwrap()
}

/// The store holds only Pods a policy selects, so a policy edit that widens the policies' reach
/// must fetch the Pods that came into it, and one that narrows it must let go of the others;
/// an edit that changes nothing about reach lists nothing.
#[tokio::test]
async fn a_policy_edit_relists_only_what_came_into_reach() {
    use futures::StreamExt;
    use kube::ResourceExt;
    use kube::runtime::reflector::ObjectRef;
    use sre_operator::controller::scope::{CompiledPolicies, PodScope, StoredPod, relists};
    use sre_operator::policy::PolicySet;

    let list = |items: Vec<Value>| {
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "9"},
               "items": items})
    };
    let healthy = sre_e2e::fixtures::PodBuilder::new("calm")
        .namespace("web")
        .label("app", "web")
        .status(json!({"phase": "Running"}))
        .json();
    let (client, api) = Script::new()
        // Widened from `shop` to `shop` and `web`: both are listed, in pages of 100; the Pod
        // already stored is not applied again, the healthy one is not kept.
        .then(
            Exchange::get("/api/v1/namespaces/shop/pods")
                .with_query("limit=100")
                .reply(200, list(vec![crash_looping_in("shop", "a")])),
        )
        .then(
            Exchange::get("/api/v1/namespaces/web/pods")
                .with_query("limit=100")
                .reply(200, list(vec![crash_looping_in("web", "b"), healthy])),
        )
        // Narrowed to `web`: nothing new there, `shop/a` leaves the store.
        .then(
            Exchange::get("/api/v1/namespaces/web/pods")
                .reply(200, list(vec![crash_looping_in("web", "b")])),
        )
        .start();

    let (policies, mut policy_writer) = reflector::store::<DebugPolicy>();
    policy_writer.apply_watcher_event(&watcher::Event::Init);
    policy_writer.apply_watcher_event(&watcher::Event::InitApply(policy_for(&["shop"])));
    policy_writer.apply_watcher_event(&watcher::Event::InitDone);
    let (pods, mut pod_writer) = reflector::store::<StoredPod>();
    let stored_a = StoredPod::new(serde_json::from_value(crash_looping_in("shop", "a")).unwrap());
    pod_writer.apply_watcher_event(&watcher::Event::Apply(stored_a.clone()));
    let compiled = Arc::new(CompiledPolicies::default());
    let (changed, change) = tokio::sync::watch::channel(());
    let (store, cache) = (policies.clone(), compiled.clone());
    let mut events = Box::pin(relists(
        kube::Api::all(client),
        pods.clone(),
        PodScope::All,
        std::future::ready(()),
        move || {
            cache.current(&store, |p| {
                PolicySet::compile(&p.iter().map(|p| (**p).clone()).collect::<Vec<_>>()).unwrap()
            })
        },
        change,
    ));
    use std::time::Duration;
    let wait = Duration::from_secs(5);
    let quiet = Duration::from_millis(300);

    // An edit of nothing that decides reach (the cooldown): nothing is listed or stored.
    let mut same = policy_for(&["shop"]);
    same.spec.cooldown = "1h".into();
    policy_writer.apply_watcher_event(&watcher::Event::Apply(same));
    changed.send_replace(());
    assert!(tokio::time::timeout(quiet, events.next()).await.is_err());

    policy_writer.apply_watcher_event(&watcher::Event::Apply(policy_for(&["shop", "web"])));
    changed.send_replace(());
    match tokio::time::timeout(wait, events.next()).await {
        Ok(Some(watcher::Event::Apply(pod))) => {
            assert_eq!(pod.namespace().as_deref(), Some("web"));
            assert_eq!(pod.name_any(), "b");
            pod_writer.apply_watcher_event(&watcher::Event::Apply(pod));
        }
        other => panic!("expected web/b to come into the store, got {other:?}"),
    }
    assert!(
        tokio::time::timeout(quiet, events.next()).await.is_err(),
        "shop/a is stored already and the healthy Pod is not kept"
    );

    policy_writer.apply_watcher_event(&watcher::Event::Apply(policy_for(&["web"])));
    changed.send_replace(());
    match tokio::time::timeout(wait, events.next()).await {
        Ok(Some(watcher::Event::Delete(pod))) => {
            assert_eq!(ObjectRef::from_obj(&pod), ObjectRef::from_obj(&stored_a))
        }
        other => panic!("expected shop/a to leave the store, got {other:?}"),
    }
    // The narrowing still lists `web` (a rule may have changed its selector), finding nothing new.
    assert!(tokio::time::timeout(quiet, events.next()).await.is_err());
    api.done().await;
}

/// A report store holding `reports`, as the report watch would have listed them.
fn reports_seen(reports: Vec<DiagnosticReport>) -> reflector::Store<DiagnosticReport> {
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for r in reports {
        writer.apply_watcher_event(&watcher::Event::InitApply(r));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    store
}

/// The bundled dump, counting what is read of it.
struct CountingReads {
    dump: Arc<DumpCluster>,
    reads: std::sync::atomic::AtomicUsize,
    events: std::sync::atomic::AtomicUsize,
    /// When set, each events read waits for a notification (to hold a reconcile mid-way).
    events_gate: Option<tokio::sync::Notify>,
}

impl CountingReads {
    fn count(&self) -> usize {
        self.reads.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn read(&self) {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl sre_operator::cluster::Cluster for CountingReads {
    fn source(&self) -> String {
        self.dump.source()
    }
    async fn get(
        &self,
        kind: sre_operator::cluster::ResourceKind,
        namespace: Option<&str>,
        name: &str,
    ) -> sre_operator::cluster::Result<Option<sre_operator::cluster::Object>> {
        self.read();
        self.dump.get(kind, namespace, name).await
    }
    async fn list(
        &self,
        kind: sre_operator::cluster::ResourceKind,
        namespace: Option<&str>,
    ) -> sre_operator::cluster::Result<Vec<sre_operator::cluster::Object>> {
        self.read();
        self.dump.list(kind, namespace).await
    }
    async fn logs(
        &self,
        request: &sre_operator::cluster::LogRequest,
    ) -> sre_operator::cluster::Result<sre_operator::cluster::Logs> {
        self.read();
        self.dump.logs(request).await
    }
    async fn events_for(
        &self,
        about: sre_operator::cluster::Involved<'_>,
    ) -> sre_operator::cluster::Result<Vec<k8s_openapi::api::core::v1::Event>> {
        self.read();
        self.events
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let Some(gate) = &self.events_gate {
            gate.notified().await;
        }
        self.dump.events_for(about).await
    }
}

/// critical-app's crash-looping Pod in the bundled dump, renamed (another Pod of its ReplicaSet),
/// as the Pod store hands it to a reconcile.
async fn critical_app_pod(name: &str) -> Arc<sre_operator::controller::scope::StoredPod> {
    use sre_operator::cluster::Cluster;
    let mut pod = dump()
        .pods(Some("default"))
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.metadata.name.as_deref() == Some("critical-app-7d4b9c6f5-h8x2m"))
        .unwrap();
    pod.metadata.name = Some(name.into());
    pod.metadata.uid = Some(format!("uid-{name}"));
    Arc::new(sre_operator::controller::scope::StoredPod::new(pod))
}

/// A context whose reads go through `reads` and whose report watch has seen `reports`.
fn pod_context(
    client: Client,
    reads: Arc<CountingReads>,
    reports: Vec<DiagnosticReport>,
) -> Arc<Context> {
    let mut ctx = Arc::try_unwrap(selecting(client)).ok().unwrap();
    ctx.recent = Arc::new(sre_operator::cluster::RecentReads::new(reads.clone()));
    ctx.cluster = reads;
    ctx.reports = reports_seen(reports);
    Arc::new(ctx)
}

/// The Pods of a workload fail together and are reconciled at once: while the first reads its
/// events before opening the report, the others neither read theirs nor open it.
#[tokio::test(flavor = "multi_thread")]
async fn a_workload_failing_pods_reconciled_at_once_read_events_once() {
    use kube::runtime::controller::Action;
    use sre_operator::controller::reconcile_pod;
    let (client, api) = mock(vec![Exchange::post(REPORTS).echo()]);
    let slow = Arc::new(CountingReads {
        dump: dump(),
        reads: Default::default(),
        events: Default::default(),
        events_gate: Some(Default::default()),
    });
    let ctx = pod_context(client, slow.clone(), vec![]);
    let first = tokio::spawn(reconcile_pod(
        critical_app_pod("critical-app-7d4b9c6f5-aaaaa").await,
        ctx.clone(),
    ));
    while slow.events.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // A second Pod that read its events would wait here for the release.
    let second = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        reconcile_pod(
            critical_app_pod("critical-app-7d4b9c6f5-bbbbb").await,
            ctx.clone(),
        ),
    )
    .await
    .expect("the second Pod read its events for a report the first is opening")
    .unwrap();
    assert_eq!(second, Action::requeue(std::time::Duration::from_secs(60)));
    assert_eq!(
        slow.events.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the second Pod read its events for a report the first is opening"
    );
    slow.events_gate.as_ref().unwrap().notify_one();
    first.await.unwrap().unwrap();
    // One report, created by the first.
    api.done().await;
}

fn counting() -> Arc<CountingReads> {
    Arc::new(CountingReads {
        dump: dump(),
        reads: Default::default(),
        events: Default::default(),
        events_gate: None,
    })
}

/// In a burst the Pods of a workload fail together: once its report is open, the others are
/// neither read about nor asked of the API server (the burst benchmark's 1,000 Pods).
#[tokio::test(flavor = "multi_thread")]
async fn the_other_pods_of_a_workload_already_reported_cost_no_request() {
    use kube::runtime::controller::Action;
    use sre_operator::controller::reconcile_pod;
    // Any request to the API server fails the test.
    let (client, api) = mock(vec![]);
    let reads = counting();
    let open = report_object(Phase::Analyzing, None, vec![], None, false);
    let ctx = pod_context(client, reads.clone(), vec![open]);

    let first = reconcile_pod(
        critical_app_pod("critical-app-7d4b9c6f5-aaaaa").await,
        ctx.clone(),
    )
    .await
    .unwrap();
    assert_eq!(first, Action::requeue(std::time::Duration::from_secs(60)));
    let resolving = reads.count();
    assert!(
        resolving <= 2,
        "the ReplicaSet and the Deployment: {resolving}"
    );
    for name in [
        "critical-app-7d4b9c6f5-bbbbb",
        "critical-app-7d4b9c6f5-ccccc",
    ] {
        reconcile_pod(critical_app_pod(name).await, ctx.clone())
            .await
            .unwrap();
    }
    assert_eq!(
        reads.count(),
        resolving,
        "the workload is remembered: no events, owners or namespace read for the other Pods"
    );
    api.done().await;
}

const REPORTS: &str = "/apis/sre-operator.dev/v1alpha1/namespaces/default/diagnosticreports";

/// A report the watch has not seen is created without reading it first; if it exists after
/// all (409), it is read, and left alone while it is open.
#[tokio::test(flavor = "multi_thread")]
async fn a_report_is_opened_without_a_read_and_an_open_one_the_watch_missed_is_left_alone() {
    use sre_operator::controller::reconcile_pod;
    let (client, api) = mock(vec![Exchange::post(REPORTS).echo()]);
    let seen = api.seen.clone();
    reconcile_pod(
        critical_app_pod("critical-app-7d4b9c6f5-h8x2m").await,
        pod_context(client, counting(), vec![]),
    )
    .await
    .unwrap();
    api.done().await;
    assert!(
        requests(&seen, "GET", "/diagnosticreports").is_empty(),
        "no read before the create"
    );
    let created = &requests(&seen, "POST", "/diagnosticreports")[0].body;
    assert_eq!(
        created["metadata"]["name"],
        "deployment-critical-app-crashloopbackoff"
    );

    let (client, api) = mock(vec![
        Exchange::post(REPORTS)
            .reply_with(|_| conflict("deployment-critical-app-crashloopbackoff")),
        Exchange::get(format!(
            "{REPORTS}/deployment-critical-app-crashloopbackoff"
        ))
        .reply(200, report(Phase::Analyzing, None)),
    ]);
    let seen = api.seen.clone();
    reconcile_pod(
        critical_app_pod("critical-app-7d4b9c6f5-h8x2m").await,
        pod_context(client, counting(), vec![]),
    )
    .await
    .unwrap();
    api.done().await;
    assert!(
        requests(&seen, "DELETE", "/diagnosticreports").is_empty()
            && writes(&seen, "/status").is_empty(),
        "the open report is neither replaced nor written"
    );
}

/// A Pod whose status names its failure in full (kubelet 1.32+ quotes the pull error in the
/// back-off message) opens its report without reading its events: one API request less for
/// each report of a mass failure. A back-off message that names no cause still reads them.
#[tokio::test(flavor = "multi_thread")]
async fn a_pull_error_in_the_status_opens_its_report_without_reading_events() {
    use sre_operator::controller::reconcile_pod;
    let pulling = |message: &'static str| async move {
        let mut pod = critical_app_pod("critical-app-7d4b9c6f5-pull1").await.pod();
        let status = pod.status.as_mut().unwrap();
        status.phase = Some("Pending".into());
        status.container_statuses = Some(
            serde_json::from_value(
                json!([{"name": "app", "image": "registry.example.com/app:2",
                "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": message}}}]),
            )
            .unwrap(),
        );
        Arc::new(sre_operator::controller::scope::StoredPod::new(pod))
    };
    let open = |message: &'static str| async move {
        let (client, api) = mock(vec![Exchange::post(REPORTS).echo()]);
        let seen = api.seen.clone();
        let reads = counting();
        reconcile_pod(
            pulling(message).await,
            pod_context(client, reads.clone(), vec![]),
        )
        .await
        .unwrap();
        api.done().await;
        let created = requests(&seen, "POST", "/diagnosticreports")[0]
            .body
            .clone();
        (
            reads.events.load(std::sync::atomic::Ordering::SeqCst),
            created["spec"]["failure"]["reason"].clone(),
        )
    };
    let quoted = "Back-off pulling image \"registry.example.com/app:2\": ErrImagePull: failed to pull and unpack image \"registry.example.com/app:2\": failed to resolve reference \"registry.example.com/app:2\": failed to authorize: failed to fetch oauth token: unexpected status from GET request to https://registry.example.com/token: 401 Unauthorized";
    assert_eq!(open(quoted).await, (0, json!("RegistryAuthFailed")));
    let bare = "Back-off pulling image \"registry.example.com/app:2\"";
    assert_eq!(
        open(bare).await.0,
        1,
        "a bare back-off message reads the events"
    );
}

/// A report just opened is Analyzing, with its condition, after one write: the report
/// controller's, the first time it sees it.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_report_is_analyzing_after_one_status_write() {
    let mut opened = report_object(Phase::Analyzing, None, vec![], None, false);
    opened.status = None;
    let seen = reconcile_once(vec![status_write()], opened).await;
    let written = writes(&seen, "/status");
    assert_eq!(written.len(), 1);
    let status = &written[0].body["status"];
    assert_eq!(status["phase"], "Analyzing");
    let analyzed = &status["conditions"][0];
    assert_eq!(
        (&analyzed["type"], &analyzed["status"], &analyzed["reason"]),
        (&json!("Analyzed"), &json!("False"), &json!("Analyzing")),
        "{status}"
    );
    // `kubectl describe pod` says a report is open, and which.
    let events: Vec<Value> = requests(&seen, "POST", "/events")
        .into_iter()
        .map(|e| e.body)
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["regarding"]["kind"], "Pod");
    assert_eq!(events[0]["reason"], "Opened");
    assert!(
        events[0]["note"]
            .as_str()
            .unwrap()
            .contains("report deployment-critical-app-crashloopbackoff opened"),
        "{events:?}"
    );
}

/// In a burst, a new report whose incident's lead has concluded takes the lead's findings in
/// one status write (no `Analyzing` first), and its Event goes to its Pod only: it points at
/// the lead, where the story is.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_joining_a_concluded_incident_is_written_once_and_told_on_its_pod() {
    use sre_operator::cluster::{Cluster, ResourceKind};
    let cluster = dump();
    // shop/internal-api: its registry refuses the credentials (the bundled dump).
    let owner_uid = cluster
        .get(ResourceKind::Deployment, Some("shop"), "internal-api")
        .await
        .unwrap()
        .unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let mut member: DiagnosticReport = serde_json::from_value(json!({
        "apiVersion": "sre-operator.dev/v1alpha1", "kind": "DiagnosticReport",
        "metadata": {"name": "deployment-internal-api-imagepullbackoff", "namespace": "shop", "generation": 1, "uid": "m-1",
                     "labels": {"app.kubernetes.io/managed-by": "sre-operator"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "internal-api", "uid": owner_uid}]},
        "spec": {"pod": {"namespace": "shop", "name": "internal-api-5c64f8d9b7-j6dwm", "uid": ""},
                 "workload": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "internal-api"},
                 "failure": {"class": "ImagePullBackOff", "reason": "RegistryAuthFailed", "evidence": []},
                 "policy": "shop"}
    }))
    .unwrap();
    let pod_object = cluster
        .get(ResourceKind::Pod, Some("shop"), &member.spec.pod.name)
        .await
        .unwrap()
        .unwrap();
    let pod: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value((*pod_object).clone()).unwrap();
    member.spec.pod.uid = pod.metadata.uid.clone().unwrap_or_default();
    let cause = sre_operator::incident::cause_of(&member, &pod, cluster.as_ref())
        .await
        .expect("a registry refusing credentials is a shared cause");
    // Another workload of the same registry led the incident and concluded.
    let mut lead = member.clone();
    lead.metadata.name = Some("deployment-billing-api-imagepullbackoff".into());
    lead.metadata.uid = Some("l-1".into());
    lead.spec.workload.name = "billing-api".into();

    let status_path = "/apis/sre-operator.dev/v1alpha1/namespaces/shop/diagnosticreports/deployment-internal-api-imagepullbackoff/status";
    let (client, api) = Script::new()
        .then(Exchange::patch(status_path).reply(200, serde_json::to_value(&member).unwrap()))
        .any_number(Exchange::post("/apis/events.k8s.io/v1/namespaces/shop/events").echo())
        .start();
    let seen = api.seen.clone();
    let shop: DebugPolicy = serde_json::from_value(json!({
        "apiVersion": "sre-operator.dev/v1alpha1", "kind": "DebugPolicy",
        "metadata": {"name": "shop"}, "spec": {"rules": [{"namespaces": ["shop"]}]}
    }))
    .unwrap();
    let ctx = context(client, vec![shop]);
    let fresh = std::time::Duration::from_secs(600);
    assert!(matches!(
        ctx.incidents.join(&cause, &lead, fresh),
        sre_operator::incident::Role::Lead(_)
    ));
    let mut concluded = lead.clone();
    concluded.status = Some(DiagnosticReportStatus {
        phase: Some(Phase::NoFix),
        ..Default::default()
    });
    ctx.incidents
        .concluded(&sre_operator::incident::name(&cause), &concluded);

    reconcile_report(Arc::new(member), ctx).await.unwrap();
    api.done().await;
    let written = writes(&seen, "/status");
    assert_eq!(written.len(), 1, "one status write: {written:?}");
    let status = &written[0].body["status"];
    assert_eq!(status["phase"], "NoFix", "{status}");
    assert_eq!(
        status["incident"].as_str(),
        Some(sre_operator::incident::name(&cause).as_str())
    );
    assert!(status["startedAt"].is_string(), "{status}");
    let events: Vec<Value> = requests(&seen, "POST", "/events")
        .into_iter()
        .map(|e| e.body)
        .collect();
    let regarding: Vec<&str> = events
        .iter()
        .filter_map(|e| e["regarding"]["kind"].as_str())
        .collect();
    assert_eq!(regarding, ["Pod"], "{events:?}");
    assert_eq!(events[0]["reason"], "NoFix");
}

/// A node's load read from the API server (as the `node_usage` tool's investigations ask for it)
/// is what the full Pods give: the slim view it reads them as keeps every field the sum needs
/// (containers, sidecars, init containers, overhead, phase, node).
#[tokio::test]
async fn a_nodes_load_from_the_api_server_is_what_its_full_pods_give() {
    use sre_operator::cluster::{Cluster, LiveCluster, NodeLoad};
    let pod = |name: &str, phase: &str, spec: Value| {
        json!({"metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
            "labels": {"app": name}, "annotations": {"note": "x".repeat(2000)}},
            "spec": spec, "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}]}})
    };
    let resources = |cpu: &str, memory: &str| json!({"requests": {"cpu": cpu, "memory": memory}});
    let items = vec![
        pod(
            "web",
            "Running",
            json!({"nodeName": "node-a",
            "containers": [{"name": "app", "image": "web:1", "resources": resources("250m", "256Mi"),
                "env": [{"name": "A", "value": "b"}]}],
            "initContainers": [
                {"name": "migrate", "image": "m", "resources": resources("1", "64Mi")},
                {"name": "proxy", "image": "p", "restartPolicy": "Always", "resources": resources("50m", "32Mi")}],
            "overhead": {"cpu": "10m", "memory": "8Mi"},
            "volumes": [{"name": "data", "emptyDir": {}}]}),
        ),
        pod(
            "limits-only",
            "Pending",
            json!({"nodeName": "node-a",
            "containers": [{"name": "app", "image": "x", "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}}}]}),
        ),
        pod(
            "done",
            "Succeeded",
            json!({"nodeName": "node-a",
            "containers": [{"name": "app", "image": "x", "resources": resources("4", "4Gi")}]}),
        ),
    ];
    let (client, api) = Script::new()
        .then(
            Exchange::get("/api/v1/pods")
                .with_query("fieldSelector=spec.nodeName%3Dnode-a")
                .reply(
                    200,
                    json!({"kind": "PodList", "apiVersion": "v1",
                    "metadata": {"resourceVersion": "7"}, "items": items}),
                ),
        )
        .start();
    let load = LiveCluster::new(client, "the cluster")
        .node_load("node-a")
        .await
        .unwrap();
    api.done().await;
    let full: Vec<k8s_openapi::api::core::v1::Pod> =
        serde_json::from_value(Value::Array(items)).unwrap();
    assert_eq!(load, NodeLoad::of("node-a", &full));
    assert_eq!(load.pods, 2, "the Succeeded Pod takes nothing");
    // web: its init container's 1 CPU outweighs app and sidecar (300m), plus 10m overhead;
    // limits-only: a limit without a request is the request.
    assert_eq!(load.requests.cpu_millis, 1000 + 10 + 500);
}

/// An init container that never completes (a wait for a Service that is not there) shows in no
/// event and no waiting reason: its Pod is looked at again once it has run for five minutes,
/// and then reported as Pending, `InitContainerRunning`, about that init container.
#[tokio::test(flavor = "multi_thread")]
async fn an_init_container_that_never_completes_is_reported_after_five_minutes() {
    use k8s_openapi::jiff::{SignedDuration, Timestamp};
    use sre_operator::controller::reconcile_pod;
    let initializing = |running_for: SignedDuration| async move {
        let mut pod = critical_app_pod("critical-app-7d4b9c6f5-init1").await.pod();
        let started = (Timestamp::now() - running_for).to_string();
        pod.spec.as_mut().unwrap().init_containers = Some(
            serde_json::from_value(json!([{"name": "wait-for-db", "image": "busybox:1.36",
                "command": ["sh", "-c", "until nslookup db; do sleep 2; done"]}]))
            .unwrap(),
        );
        let status = pod.status.as_mut().unwrap();
        status.phase = Some("Pending".into());
        status.init_container_statuses = Some(
            serde_json::from_value(json!([{"name": "wait-for-db", "image": "busybox:1.36",
                "imageID": "", "ready": false, "restartCount": 0, "started": true,
                "state": {"running": {"startedAt": started}}}]))
            .unwrap(),
        );
        status.container_statuses = Some(
            serde_json::from_value(
                json!([{"name": "app", "image": "registry.example.com/app:2",
                "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "PodInitializing"}}}]),
            )
            .unwrap(),
        );
        Arc::new(sre_operator::controller::scope::StoredPod::new(pod))
    };
    assert!(sre_operator::failure::may_be_failing(
        &initializing(SignedDuration::from_secs(10)).await.pod()
    ));

    // A minute in: nothing is opened, and the Pod is looked at again when it reaches five.
    let (client, api) = mock(vec![]);
    let action = reconcile_pod(
        initializing(SignedDuration::from_secs(60)).await,
        pod_context(client, counting(), vec![]),
    )
    .await
    .unwrap();
    api.done().await;
    // Action keeps its delay private; its Debug form shows it.
    let shown = format!("{action:?}");
    let seconds: f64 = shown
        .split("Some(")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a requeue: {shown}"));
    assert!((230.0..=241.0).contains(&seconds), "{shown}");

    // Ten minutes in: reported.
    let (client, api) = mock(vec![Exchange::post(REPORTS).echo()]);
    let seen = api.seen.clone();
    reconcile_pod(
        initializing(SignedDuration::from_secs(600)).await,
        pod_context(client, counting(), vec![]),
    )
    .await
    .unwrap();
    api.done().await;
    let created = &requests(&seen, "POST", "/diagnosticreports")[0].body;
    assert_eq!(created["spec"]["failure"]["class"], "Pending");
    assert_eq!(created["spec"]["failure"]["reason"], "InitContainerRunning");
    assert_eq!(created["spec"]["failure"]["container"], "wait-for-db");
}

//! The live operator: a Pod controller that opens DiagnosticReports for failing Pods the
//! DebugPolicies select, and a report controller that runs the state machine
//! `Analyzing → AwaitingApproval → Approved → Applied → Resolved | Unresolved` (or `Rejected`,
//! `NoFix`, `Failed`). State lives in status, so a restart resumes where it stopped.

pub mod apply;
pub mod fairness;
pub mod policy_status;
pub mod provenance;
pub mod scope;

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::agent::{Brain, Budget, Case, Investigator, investigate};
use crate::cluster::{Cluster, LiveCluster, ResourceKind, resolve_workload};
use crate::crd::{
    ApplyRecord, Approval, DebugPolicy, Decision, DiagnosticReport, DiagnosticReportStatus, Phase,
    Verdict,
};
use crate::failure::detect;
use crate::plugin::{PluginRegistry, ReviewContext};
use crate::policy::PolicySet;
use crate::telemetry::{
    ControllerLabel, KindLabel, Metrics, OutcomeLabel, PhaseLabel, Readiness, ToolLabel,
};
use crate::triage::{new_report, screen};

pub const FIELD_MANAGER: &str = "sre-operator";

/// Pods per LIST page: each page is parsed whole before the healthy Pods are dropped, so the
/// page size bounds that transient memory (100 full Pods is about 5 MB).
const POD_PAGE_SIZE: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Cluster(_) => "cluster",
            Error::Other(_) => "other",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    pub budget: Budget,
    /// Reconciles at once, per controller.
    pub concurrency: u16,
    /// How long a rollout may take before an applied report is Unresolved.
    pub verify_timeout: Duration,
    /// How long finished reports are kept.
    pub retention: Duration,
    /// Model tokens per hour across all investigations (`--max-tokens-per-hour`).
    pub hourly_tokens: Arc<crate::agent::hourly::HourlyTokens>,
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub cluster: Arc<dyn Cluster>,
    pub policies: Store<DebugPolicy>,
    pub plugins: Arc<PluginRegistry>,
    pub brain: Arc<dyn Brain>,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Whether this replica holds the lease; only the leader writes.
    pub leader: tokio::sync::watch::Receiver<bool>,
}

impl Context {
    fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    fn policy_set(&self) -> PolicySet {
        let policies: Vec<DebugPolicy> = self
            .policies
            .state()
            .iter()
            .map(|p| (**p).clone())
            .collect();
        // A policy that does not compile is skipped (and said so), the others stay in force.
        let valid: Vec<DebugPolicy> = policies
            .into_iter()
            .filter(|p| match crate::policy::CompiledPolicy::compile(p) {
                Ok(_) => true,
                // Said once per policy generation in the policy's status (policy_status).
                Err(e) => {
                    tracing::debug!(policy = %p.name_any(), error = %e, "ignoring an invalid DebugPolicy");
                    false
                }
            })
            .collect();
        PolicySet::compile(&valid).unwrap_or_default()
    }

    async fn event(&self, report: &DiagnosticReport, type_: EventType, reason: &str, note: String) {
        let event = KubeEvent {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.into(),
            secondary: None,
        };
        // On the report and on the Pod it is about, so `kubectl describe pod` tells the story too.
        let pod = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(report.spec.pod.namespace.clone()),
            name: Some(report.spec.pod.name.clone()),
            uid: Some(report.spec.pod.uid.clone()).filter(|u| !u.is_empty()),
            ..Default::default()
        };
        for reference in [report.object_ref(&()), pod] {
            if let Err(e) = self.recorder.publish(&event, &reference).await {
                tracing::warn!(report = %report.name_any(), error = %e, "could not record an event");
            }
        }
    }
}

/// A cheap look at a Pod's status before its events are read: most Pods are healthy.
fn may_be_failing(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    if matches!(status.phase.as_deref(), Some("Succeeded")) {
        return false;
    }
    let unscheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_none();
    if unscheduled && status.phase.as_deref() == Some("Pending") {
        return true;
    }
    let statuses = status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten());
    statuses.into_iter().any(|cs| {
        let waiting = cs
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.as_deref());
        let oom = cs
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.reason.as_deref())
            == Some("OOMKilled");
        oom || !cs.ready
            && (cs.restart_count > 0
                || waiting.is_some_and(|w| w != "ContainerCreating" && w != "PodInitializing")
                || cs.state.as_ref().is_some_and(|s| s.running.is_some()))
    })
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.chars().take(1000).collect(),
        last_transition_time: Time(Timestamp::now()),
        observed_generation: generation,
    }
}

fn is_terminal(phase: Phase) -> bool {
    matches!(
        phase,
        Phase::Resolved | Phase::Unresolved | Phase::Rejected | Phase::NoFix | Phase::Failed
    )
}

async fn write_status(
    ctx: &Context,
    report: &DiagnosticReport,
    mut status: DiagnosticReportStatus,
) -> Result<()> {
    let api: Api<DiagnosticReport> =
        Api::namespaced(ctx.client.clone(), &report.namespace().unwrap_or_default());
    status.observed_generation = report.metadata.generation;
    let previous = report.status.as_ref().and_then(|s| s.phase);
    if status.phase != previous
        && let Some(phase) = status.phase
    {
        ctx.metrics
            .report_transitions
            .get_or_create(&PhaseLabel {
                phase: format!("{phase:?}"),
            })
            .inc();
    }
    api.patch_status(
        &report.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok(())
}

/// Opens the report for a Pod's failure unless one is open for the workload and class, or the
/// last one closed less than a cooldown ago.
async fn open_report(ctx: &Context, report: DiagnosticReport, cooldown: Duration) -> Result<()> {
    let namespace = report.namespace().unwrap_or_default();
    let name = report.name_any();
    let api: Api<DiagnosticReport> = Api::namespaced(ctx.client.clone(), &namespace);
    if let Some(existing) = api.get_opt(&name).await? {
        let status = existing.status.as_ref();
        let finished = status.and_then(|s| s.finished_at.as_ref()).map(|t| t.0);
        let terminal = status.and_then(|s| s.phase).is_some_and(is_terminal);
        let cooled = finished.is_some_and(|f| {
            Timestamp::now().duration_since(f).as_secs() as u64 >= cooldown.as_secs()
        });
        if !(terminal && cooled) {
            return Ok(());
        }
        api.delete(&name, &DeleteParams::default()).await?;
    }
    let mut report = report;
    // The workload owns the report: a replaced Pod does not take it along.
    let w = &report.spec.workload;
    if let Ok(kind) = w.kind.parse::<ResourceKind>()
        && let Some(owner) = ctx.cluster.get(kind, Some(&namespace), &w.name).await?
        && let Some(uid) = owner["metadata"]["uid"].as_str()
    {
        report.metadata.owner_references = Some(vec![OwnerReference {
            api_version: w.api_version.clone(),
            kind: w.kind.clone(),
            name: w.name.clone(),
            uid: uid.to_string(),
            ..Default::default()
        }]);
    }
    match api.create(&PostParams::default(), &report).await {
        Ok(created) => {
            tracing::info!(report = %name, namespace = %namespace, class = %created.spec.failure.class, "report opened");
            let status = DiagnosticReportStatus {
                phase: Some(Phase::Analyzing),
                started_at: Some(Time(Timestamp::now())),
                conditions: vec![condition(
                    "Analyzed",
                    false,
                    "Analyzing",
                    "the investigation is running",
                    created.metadata.generation,
                )],
                ..Default::default()
            };
            write_status(ctx, &created, status).await?;
            ctx.event(
                &created,
                EventType::Normal,
                "Opened",
                format!(
                    "{} of Pod {} opened the report",
                    created.spec.failure.class, created.spec.pod.name
                ),
            )
            .await;
            Ok(())
        }
        // Another Pod of the same workload was faster: one report it is.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub async fn reconcile_pod(pod: Arc<Pod>, ctx: Arc<Context>) -> Result<Action> {
    if !ctx.is_leader() {
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    let policies = ctx.policy_set();
    if !policies.selects_pod(&pod) || !may_be_failing(&pod) {
        return Ok(Action::await_change());
    }
    let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    let events = ctx
        .cluster
        .events_for("Pod", &namespace, &name, pod.metadata.uid.as_deref())
        .await?;
    let detections = detect(&pod, &events);
    if detections.is_empty() {
        // A failure that has not shown yet (a first restart, a probe warming up): look again.
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    let workload = resolve_workload(ctx.cluster.as_ref(), &pod).await?;
    let plugins = ctx.plugins.current();
    for detection in detections {
        let Some(policy) = policies.select(&pod, detection.class) else {
            continue;
        };
        let report = new_report(&pod, workload.clone(), detection, &policy.name);
        if let Some(reason) = screen(
            &plugins,
            ctx.cluster.as_ref(),
            &report,
            &pod,
            &Timestamp::now().to_string(),
        )
        .await
        {
            tracing::info!(pod = %name, namespace = %namespace, %reason, "not investigating");
            continue;
        }
        open_report(&ctx, report, policy.cooldown).await?;
    }
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// Counts what an investigation did, for the metrics.
fn record_investigation(ctx: &Context, status: &DiagnosticReportStatus, seconds: f64) {
    ctx.metrics.investigation_seconds.observe(seconds);
    let plugins = ctx.plugins.current();
    for action in status
        .reasoning_chain
        .iter()
        .filter_map(|s| s.action.as_ref())
    {
        let plugin = plugins
            .tool(&action.tool)
            .map(|t| t.plugin.name.clone())
            .unwrap_or_else(|| "unknown".into());
        let outcome = if action.result.starts_with("error:") {
            "error"
        } else {
            "ok"
        };
        ctx.metrics
            .tool_calls
            .get_or_create(&ToolLabel {
                plugin,
                outcome: outcome.into(),
            })
            .inc();
    }
    if let Some(b) = &status.brain {
        ctx.metrics
            .tokens
            .get_or_create(&KindLabel {
                kind: "prompt".into(),
            })
            .inc_by(b.prompt_tokens);
        ctx.metrics
            .tokens
            .get_or_create(&KindLabel {
                kind: "completion".into(),
            })
            .inc_by(b.completion_tokens);
    }
}

async fn analyze(report: &DiagnosticReport, ctx: &Context) -> Result<Action> {
    let spec = &report.spec;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &spec.pod.namespace);
    let Some(pod) = pods.get_opt(&spec.pod.name).await? else {
        let mut status = report.status.clone().unwrap_or_default();
        status.phase = Some(Phase::Failed);
        status.message = Some(format!(
            "Pod {} no longer exists; a new failing Pod opens a new report",
            spec.pod.name
        ));
        status.finished_at = Some(Time(Timestamp::now()));
        write_status(ctx, report, status).await?;
        return Ok(Action::await_change());
    };
    let policy = ctx
        .policies
        .state()
        .into_iter()
        .find(|p| p.name_any() == spec.policy);
    let brain_spec = policy.as_ref().and_then(|p| p.spec.brain.as_ref());
    let brain = crate::agent::brain_for_policy(&ctx.brain, brain_spec);
    let mut budget = ctx.settings.budget.clone().with_policy(brain_spec);
    // A model investigation takes its tokens from the hour's budget first; the rules brain
    // spends none.
    let hourly = &ctx.settings.hourly_tokens;
    let reservation = if brain.model().is_some() {
        match hourly.reserve(&spec.pod.namespace, budget.max_tokens) {
            Ok(r) => {
                budget.max_tokens = r.granted;
                Some(r)
            }
            Err(wait) => {
                let wait = Duration::from_secs(wait.as_secs_f64().ceil() as u64);
                let message = format!(
                    "waiting for the hourly token budget ({} tokens, --max-tokens-per-hour) to free up",
                    hourly.limit()
                );
                tracing::info!(report = %report.name_any(), wait = ?wait, "{message}");
                let mut status = report.status.clone().unwrap_or_default();
                if status.message.as_deref() != Some(message.as_str()) {
                    status.message = Some(message);
                    write_status(ctx, report, status).await?;
                }
                return Ok(Action::requeue(wait));
            }
        }
    } else {
        None
    };
    let investigator = Investigator {
        brain,
        plugins: ctx.plugins.current(),
        cluster: ctx.cluster.clone(),
        budget,
    };
    let started = std::time::Instant::now();
    let case = Case {
        report: report.clone(),
        pod,
    };
    let mut status = investigate(&investigator, &case).await;
    if let Some(r) = reservation {
        let used = status
            .brain
            .as_ref()
            .map_or(0, |b| b.prompt_tokens + b.completion_tokens);
        hourly.settle(r, used);
    }
    record_investigation(ctx, &status, started.elapsed().as_secs_f64());
    if let Some(patch) = &status.suggested_patch
        && let Ok(kind) = patch.target.kind.parse::<ResourceKind>()
    {
        let target = ctx
            .cluster
            .get(kind, Some(&patch.target.namespace), &patch.target.name)
            .await?;
        status.target_resource_version = target.and_then(|t| {
            t["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_string)
        });
    }
    for c in &mut status.conditions {
        c.observed_generation = report.metadata.generation;
    }
    let phase = status.phase;
    let note = status
        .findings
        .as_ref()
        .map(|f| f.summary.clone())
        .or_else(|| status.message.clone())
        .unwrap_or_default();
    write_status(ctx, report, status).await?;
    let type_ = if phase == Some(Phase::Failed) {
        EventType::Warning
    } else {
        EventType::Normal
    };
    ctx.event(
        report,
        type_,
        &format!("{:?}", phase.unwrap_or(Phase::Failed)),
        note,
    )
    .await;
    Ok(Action::await_change())
}

fn terminal_status(
    report: &DiagnosticReport,
    phase: Phase,
    message: String,
) -> DiagnosticReportStatus {
    let mut status = report.status.clone().unwrap_or_default();
    status.phase = Some(phase);
    status.message = Some(message.clone());
    status.finished_at = Some(Time(Timestamp::now()));
    let ok = matches!(phase, Phase::Resolved);
    status.conditions.retain(|c| c.type_ != "Resolved");
    status.conditions.push(condition(
        "Resolved",
        ok,
        &format!("{phase:?}"),
        &message,
        report.metadata.generation,
    ));
    status
}

async fn fail(
    ctx: &Context,
    report: &DiagnosticReport,
    outcome: &str,
    message: String,
) -> Result<Action> {
    ctx.metrics
        .applies
        .get_or_create(&OutcomeLabel {
            outcome: outcome.into(),
        })
        .inc();
    tracing::warn!(report = %report.name_any(), %message, "apply failed");
    write_status(
        ctx,
        report,
        terminal_status(report, Phase::Failed, message.clone()),
    )
    .await?;
    ctx.event(report, EventType::Warning, "ApplyFailed", message)
        .await;
    Ok(Action::await_change())
}

/// What a patch-filter is told about the report a patch belongs to, when a patch is reviewed
/// again before it is written (a drifted target here, a rollback in `kubectl sre rollback`).
pub fn review_context(report: &DiagnosticReport) -> ReviewContext {
    let brain = report.status.as_ref().and_then(|s| s.brain.as_ref());
    ReviewContext {
        namespace: report.spec.pod.namespace.clone(),
        pod: report.spec.pod.name.clone(),
        failure_class: report.spec.failure.class.to_string(),
        author: brain
            .map(|b| b.model.clone().unwrap_or_else(|| b.kind.clone()))
            .unwrap_or_default(),
    }
}

/// Applies the approved patch: intent first, then a drift check, a server-side dry run, and the
/// patch guarded by the reviewed resourceVersion. A replay after a restart finds the patch
/// already in place and records it as applied.
async fn apply_patch(report: &DiagnosticReport, ctx: &Context) -> Result<Action> {
    let status = report.status.clone().unwrap_or_default();
    let Some(mut suggestion) = status.suggested_patch.clone() else {
        return fail(
            ctx,
            report,
            "no_patch",
            "the report has no patch to apply".into(),
        )
        .await;
    };
    if status
        .safety
        .as_ref()
        .is_none_or(|s| s.verdict == Verdict::Denied)
    {
        let reason = status
            .safety
            .as_ref()
            .and_then(|s| s.reason.clone())
            .unwrap_or_else(|| "it was never reviewed".into());
        return fail(
            ctx,
            report,
            "denied",
            format!("the patch was denied and can never be applied: {reason}"),
        )
        .await;
    }
    if let Some(reason) = crate::patch::foreign_target(report, &suggestion) {
        return fail(ctx, report, "foreign_target", reason).await;
    }
    let kind: ResourceKind = match suggestion.target.kind.parse() {
        Ok(k) => k,
        Err(e) => return fail(ctx, report, "invalid", e).await,
    };
    let target = match ctx
        .cluster
        .get(
            kind,
            Some(&suggestion.target.namespace),
            &suggestion.target.name,
        )
        .await?
    {
        Some(t) => (*t).clone(),
        None => {
            return fail(
                ctx,
                report,
                "target_missing",
                format!("{} {} no longer exists", kind, suggestion.target.name),
            )
            .await;
        }
    };
    let Some(mut record) = status.apply.clone() else {
        // Record the intent before touching anything.
        let mut next = status.clone();
        next.apply = Some(ApplyRecord {
            started_at: Time(Timestamp::now()),
            applied_at: None,
            rollback_patch: vec![],
            target_generation: None,
        });
        write_status(ctx, report, next).await?;
        return Ok(Action::requeue(Duration::from_millis(100)));
    };
    let api =
        LiveCluster::new(ctx.client.clone(), "").api(kind, Some(&suggestion.target.namespace));
    // A replay: the values are in place, or (for a patch that only appends) our own write is on
    // record after the intent. Either way the patch is not sent again.
    let replayed = apply::already_applied(&target, &suggestion.patch)
        || match api.get_opt(&suggestion.target.name).await? {
            Some(live) => apply::written_by_since(&live, FIELD_MANAGER, &record.started_at),
            None => false,
        };
    if replayed {
        record.applied_at.get_or_insert(Time(Timestamp::now()));
        record.target_generation = target["metadata"]["generation"].as_i64();
        let mut next = status.clone();
        next.apply = Some(record);
        next.phase = Some(Phase::Applied);
        ctx.metrics
            .applies
            .get_or_create(&OutcomeLabel {
                outcome: "already_applied".into(),
            })
            .inc();
        write_status(ctx, report, next).await?;
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    let version = target["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // Reviewed again against the target as it is now, drifted or not: the patch in status is
    // only as trustworthy as whoever can write status, and the filters may have changed.
    let drifted = status.target_resource_version.as_deref() != Some(version.as_str());
    let (verdict, rewritten) = crate::patch::review(
        &ctx.plugins.current(),
        ctx.cluster.as_ref(),
        &suggestion,
        review_context(report),
    )
    .await;
    if verdict.verdict == Verdict::Denied {
        let reason = verdict.reason.unwrap_or_default();
        let (outcome, what) = if drifted {
            (
                "drift_denied",
                "changed since the analysis and the patch no longer passes review",
            )
        } else {
            (
                "review_denied",
                "is unchanged, but the patch no longer passes review",
            )
        };
        return fail(
            ctx,
            report,
            outcome,
            format!("{kind} {} {what}: {reason}", suggestion.target.name),
        )
        .await;
    }
    if let Some(r) = rewritten {
        suggestion = r;
    }
    if let Err(e) = apply::applies(&target, &suggestion.patch) {
        return fail(
            ctx,
            report,
            "test_failed",
            format!(
                "the patch no longer applies to {} {}: {e}",
                kind, suggestion.target.name
            ),
        )
        .await;
    }
    let patch = apply::guarded_by_version(&suggestion.patch, &version).map_err(Error::Other)?;
    match apply::dry_run_then_patch(&api, &suggestion.target.name, &patch, FIELD_MANAGER).await {
        Ok(patched) => {
            record.applied_at = Some(Time(Timestamp::now()));
            record.rollback_patch = apply::rollback_patch(&target, &suggestion.patch);
            record.target_generation = patched.metadata.generation;
            let mut next = status.clone();
            next.apply = Some(record);
            next.phase = Some(Phase::Applied);
            next.suggested_patch = Some(suggestion.clone());
            ctx.metrics
                .applies
                .get_or_create(&OutcomeLabel {
                    outcome: "applied".into(),
                })
                .inc();
            write_status(ctx, report, next).await?;
            ctx.event(
                report,
                EventType::Normal,
                "Applied",
                format!("patched {} {}", kind, suggestion.target.name),
            )
            .await;
            Ok(Action::requeue(Duration::from_secs(2)))
        }
        Err(apply::WriteError::DryRun(e)) => {
            fail(
                ctx,
                report,
                "dry_run_rejected",
                format!("the API server's dry run rejected the patch: {e}"),
            )
            .await
        }
        // The object changed between read and write: read it again and retry.
        Err(apply::WriteError::Patch(kube::Error::Api(e))) if e.code == 409 => {
            Ok(Action::requeue(Duration::from_secs(1)))
        }
        Err(apply::WriteError::Patch(e)) => {
            fail(
                ctx,
                report,
                "rejected",
                format!("the API server rejected the patch: {e}"),
            )
            .await
        }
    }
}

/// Whether the workload finished rolling out the patched generation, and what is missing if not.
fn rollout_state(
    kind: ResourceKind,
    object: &serde_json::Value,
    generation: Option<i64>,
) -> Result<(), String> {
    let status = &object["status"];
    let observed = status["observedGeneration"].as_i64().unwrap_or(0);
    if generation.is_some_and(|g| observed < g) {
        return Err(format!(
            "the controller has not observed generation {} yet",
            generation.unwrap_or(0)
        ));
    }
    let want = object["spec"]["replicas"].as_i64().unwrap_or(1);
    let (updated, available) = match kind {
        ResourceKind::Deployment => (
            status["updatedReplicas"].as_i64().unwrap_or(0),
            status["availableReplicas"].as_i64().unwrap_or(0),
        ),
        ResourceKind::StatefulSet => (
            status["updatedReplicas"].as_i64().unwrap_or(0),
            status["readyReplicas"].as_i64().unwrap_or(0),
        ),
        ResourceKind::DaemonSet => {
            let desired = status["desiredNumberScheduled"].as_i64().unwrap_or(0);
            let (u, a) = (
                status["updatedNumberScheduled"].as_i64().unwrap_or(0),
                status["numberAvailable"].as_i64().unwrap_or(0),
            );
            return if u >= desired && a >= desired {
                Ok(())
            } else {
                Err(format!("{u}/{desired} updated, {a}/{desired} available"))
            };
        }
        _ => return Ok(()),
    };
    let extra = status["replicas"].as_i64().unwrap_or(0) - want;
    if updated >= want && available >= want && extra <= 0 {
        Ok(())
    } else {
        Err(format!(
            "{updated}/{want} updated, {available}/{want} available, {} old Pod(s) left",
            extra.max(0)
        ))
    }
}

async fn verify(report: &DiagnosticReport, ctx: &Context) -> Result<Action> {
    let status = report.status.clone().unwrap_or_default();
    let (Some(patch), Some(record)) = (status.suggested_patch.as_ref(), status.apply.as_ref())
    else {
        return fail(
            ctx,
            report,
            "invalid",
            "Applied without an apply record".into(),
        )
        .await;
    };
    let kind: ResourceKind = patch.target.kind.parse().map_err(Error::Other)?;
    let workload = ctx
        .cluster
        .get(kind, Some(&patch.target.namespace), &patch.target.name)
        .await?;
    let rollout = match &workload {
        Some(w) => rollout_state(kind, w, record.target_generation),
        None => Err("the workload no longer exists".into()),
    };
    // The failure is gone when no Pod of the workload shows the same class any more.
    let pods = ctx.cluster.pods(Some(&report.spec.pod.namespace)).await?;
    let mut still_failing = Vec::new();
    for pod in &pods {
        let owned = resolve_workload(ctx.cluster.as_ref(), pod)
            .await
            .is_ok_and(|w| w == report.spec.workload);
        if !owned || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let events = ctx
            .cluster
            .events_for(
                "Pod",
                &report.spec.pod.namespace,
                &pod.name_any(),
                pod.metadata.uid.as_deref(),
            )
            .await?;
        if detect(pod, &events)
            .iter()
            .any(|d| d.class == report.spec.failure.class)
        {
            still_failing.push(pod.name_any());
        }
    }
    if rollout.is_ok() && still_failing.is_empty() {
        ctx.metrics
            .applies
            .get_or_create(&OutcomeLabel {
                outcome: "resolved".into(),
            })
            .inc();
        let message = format!(
            "{} {} rolled out and no Pod shows {} any more",
            kind, patch.target.name, report.spec.failure.class
        );
        write_status(
            ctx,
            report,
            terminal_status(report, Phase::Resolved, message.clone()),
        )
        .await?;
        ctx.event(report, EventType::Normal, "Resolved", message)
            .await;
        return Ok(Action::await_change());
    }
    let applied = record
        .applied_at
        .as_ref()
        .map(|t| t.0)
        .unwrap_or_else(Timestamp::now);
    let waited = Timestamp::now().duration_since(applied).as_secs().max(0) as u64;
    if waited >= ctx.settings.verify_timeout.as_secs() {
        let seen = match (&rollout, still_failing.is_empty()) {
            (Err(r), _) => format!("the rollout did not finish ({r})"),
            (Ok(()), false) => format!(
                "Pods still show {}: {}",
                report.spec.failure.class,
                still_failing.join(", ")
            ),
            _ => "unknown".into(),
        };
        let message =
            format!("after {waited}s {seen}; roll back with the recorded rollbackPatch if needed");
        ctx.metrics
            .applies
            .get_or_create(&OutcomeLabel {
                outcome: "unresolved".into(),
            })
            .inc();
        write_status(
            ctx,
            report,
            terminal_status(report, Phase::Unresolved, message.clone()),
        )
        .await?;
        ctx.event(report, EventType::Warning, "Unresolved", message)
            .await;
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(Duration::from_secs(3)))
}

pub async fn reconcile_report(report: Arc<DiagnosticReport>, ctx: Arc<Context>) -> Result<Action> {
    if !ctx.is_leader() {
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    let status = report.status.clone().unwrap_or_default();
    let phase = status.phase;
    // A human's rejection wins in every open phase.
    if report.spec.decision == Some(Decision::Rejected)
        && !phase.is_some_and(is_terminal)
        && phase != Some(Phase::Applied)
    {
        write_status(
            &ctx,
            &report,
            terminal_status(&report, Phase::Rejected, "rejected by spec.decision".into()),
        )
        .await?;
        ctx.event(
            &report,
            EventType::Normal,
            "Rejected",
            "nothing was applied".into(),
        )
        .await;
        return Ok(Action::await_change());
    }
    match phase {
        None => {
            let mut next = status;
            next.phase = Some(Phase::Analyzing);
            next.started_at = Some(Time(Timestamp::now()));
            write_status(&ctx, &report, next).await?;
            Ok(Action::await_change())
        }
        Some(Phase::Analyzing) => analyze(&report, &ctx).await,
        Some(Phase::AwaitingApproval) => {
            let allowed = status
                .safety
                .as_ref()
                .is_some_and(|s| s.verdict != Verdict::Denied);
            let auto = ctx
                .policies
                .state()
                .iter()
                .find(|p| p.name_any() == report.spec.policy)
                .is_some_and(|p| p.spec.approval == Approval::Auto);
            if report.spec.decision == Some(Decision::Approved) || (auto && allowed) {
                let mut next = status;
                next.phase = Some(Phase::Approved);
                next.conditions.push(condition(
                    "Approved",
                    true,
                    if auto { "AutoApproved" } else { "Approved" },
                    "the patch was approved",
                    report.metadata.generation,
                ));
                write_status(&ctx, &report, next).await?;
                ctx.event(
                    &report,
                    EventType::Normal,
                    "Approved",
                    if auto {
                        "approved by the policy (approval: Auto)"
                    } else {
                        "approved by spec.decision"
                    }
                    .into(),
                )
                .await;
            }
            Ok(Action::await_change())
        }
        Some(Phase::Approved) => apply_patch(&report, &ctx).await,
        Some(Phase::Applied) => verify(&report, &ctx).await,
        Some(_) => {
            let finished = status
                .finished_at
                .as_ref()
                .map(|t| t.0)
                .unwrap_or_else(Timestamp::now);
            let age = Timestamp::now().duration_since(finished).as_secs().max(0) as u64;
            if age >= ctx.settings.retention.as_secs() {
                let api: Api<DiagnosticReport> =
                    Api::namespaced(ctx.client.clone(), &report.namespace().unwrap_or_default());
                api.delete(&report.name_any(), &DeleteParams::default())
                    .await?;
                return Ok(Action::await_change());
            }
            Ok(Action::requeue(Duration::from_secs(
                ctx.settings.retention.as_secs() - age + 1,
            )))
        }
    }
}

fn error_policy<K>(controller: &'static str) -> impl Fn(Arc<K>, &Error, Arc<Context>) -> Action {
    move |_, error, ctx| {
        tracing::warn!(controller, error = %error, "reconcile failed; retrying");
        ctx.metrics
            .reconcile_errors
            .get_or_create(&ControllerLabel {
                controller: controller.into(),
            })
            .inc();
        Action::requeue(Duration::from_secs(5))
    }
}

/// Runs both controllers until a shutdown signal.
pub async fn run(ctx_parts: RunParts) -> anyhow::Result<()> {
    let RunParts {
        client,
        plugins,
        brain,
        settings,
        metrics,
        readiness,
        leader,
    } = ctx_parts;
    let cluster: Arc<dyn Cluster> = Arc::new(LiveCluster::new(client.clone(), "the cluster"));
    let policies_api: Api<DebugPolicy> = Api::all(client.clone());
    let (policies, policy_writer) = reflector::store();
    let policy_changes = watcher(policies_api, watcher::Config::default())
        .default_backoff()
        .reflect(policy_writer)
        .touched_objects()
        .filter_map(|r| async move { r.ok() })
        .map(|_| ());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let ctx = Arc::new(Context {
        client: client.clone(),
        cluster,
        policies,
        plugins,
        brain,
        settings: settings.clone(),
        metrics,
        recorder,
        leader,
    });

    let watch_config = watcher::Config::default().page_size(500);
    let pod_api: Api<Pod> = match settings.namespaces.as_slice() {
        [one] => Api::namespaced(client.clone(), one),
        _ => Api::all(client.clone()),
    };
    let namespaces = settings.namespaces.clone();
    let (pod_reader, pod_writer) = reflector::store();
    // Only Pods that may be failing are stored (`store_event`), listed in small pages: a page
    // of full Pods is parsed before it is dropped.
    let pod_stream = watcher(pod_api, watcher::Config::default().page_size(POD_PAGE_SIZE))
        .default_backoff()
        .try_filter_map(|event| async move { Ok(store_event(event)) })
        .reflect(pod_writer)
        .applied_objects()
        .try_filter(move |pod| {
            let keep =
                namespaces.is_empty() || namespaces.contains(&pod.namespace().unwrap_or_default());
            async move { keep }
        });
    let concurrency = settings.concurrency;
    let pods_synced = pod_reader.clone();
    let pods = Controller::for_stream(pod_stream, pod_reader)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .reconcile_all_on(policy_changes)
        .shutdown_on_signal()
        .run(reconcile_pod, error_policy::<Pod>("pod"), ctx.clone())
        .for_each(|_| async {});
    let reports = Controller::new(Api::<DiagnosticReport>::all(client.clone()), watch_config)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .shutdown_on_signal();
    let reports_synced = reports.store();
    let reports = reports
        .run(
            reconcile_report,
            error_policy::<DiagnosticReport>("report"),
            ctx.clone(),
        )
        .for_each(|_| async {});
    let policy_status = Controller::new(
        Api::<DebugPolicy>::all(client.clone()),
        watcher::Config::default(),
    )
    .shutdown_on_signal()
    .run(
        policy_status::reconcile_policy,
        error_policy::<DebugPolicy>("policy"),
        ctx.clone(),
    )
    .for_each(|_| async {});
    // Ready once every watch has listed what it watches: a replica that took over before that
    // could miss a failing Pod or an approved report.
    let policies_synced = ctx.policies.clone();
    let ready = async move {
        let synced = tokio::join!(
            pods_synced.wait_until_ready(),
            policies_synced.wait_until_ready(),
            reports_synced.wait_until_ready()
        );
        if let (Ok(()), Ok(()), Ok(())) = synced {
            release_freed_memory();
            readiness.set(true);
            tracing::info!("caches synced; ready");
        }
    };
    tracing::info!("controllers started");
    tokio::join!(pods, reports, policy_status, ready);
    Ok(())
}

/// What the Pod store keeps: only Pods that `may_be_failing` (whole, but for managedFields and
/// the last-applied annotation). A healthy Pod is nothing to reconcile, and storing every Pod
/// was most of the operator's memory (about 25 KB a Pod as the API server serves it; see the
/// operator_scale benchmark). A Pod that recovers becomes a Delete, so it leaves the store; one
/// that starts failing arrives whole with the watch event that says so. A policy change
/// re-reconciles what is stored, which is every Pod a policy could act on.
///
/// The gate in `reconcile_pod` must stay `may_be_failing`: a Pod this drops is never reconciled.
pub(crate) fn store_event(event: watcher::Event<Pod>) -> Option<watcher::Event<Pod>> {
    fn strip(mut pod: Pod) -> Pod {
        pod.managed_fields_mut().clear();
        pod.annotations_mut()
            .remove("kubectl.kubernetes.io/last-applied-configuration");
        pod
    }
    match event {
        watcher::Event::Apply(pod) if may_be_failing(&pod) => {
            Some(watcher::Event::Apply(strip(pod)))
        }
        watcher::Event::Apply(pod) => Some(watcher::Event::Delete(pod)),
        watcher::Event::InitApply(pod) => {
            may_be_failing(&pod).then(|| watcher::Event::InitApply(strip(pod)))
        }
        other => Some(other),
    }
}

/// The initial LIST parses every Pod once and drops most of them; glibc keeps the freed pages
/// in its arenas. Handing them back once the caches are synced keeps the steady-state RSS to
/// what is stored (the operator_scale benchmark).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it touches no live memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

pub struct RunParts {
    pub client: Client,
    pub plugins: Arc<PluginRegistry>,
    pub brain: Arc<dyn Brain>,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
    pub leader: tokio::sync::watch::Receiver<bool>,
}

#[cfg(test)]
mod store_tests {
    use super::*;
    use crate::crd::FailureClass;
    use k8s_openapi::api::core::v1::Event;
    use serde_json::{Value, json};

    const UID: &str = "5b7c1f0e-3a2d-4c53-9d1e-0f6a8e2b7c41";
    const NAME: &str = "app-7d9f8c6b5-x2k4p";

    /// A Pod the way the API server serves one of a Deployment's: managedFields, env, the
    /// service-account volume and its mounts, probes, tolerations, full container statuses.
    fn pod(container_status: Value, phase: &str, extra_status: Value) -> Pod {
        let mut status = json!({
            "phase": phase,
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-11-25T09:00:00Z"},
                {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": "2026-11-25T09:00:00Z"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-25T09:00:00Z"}],
            "hostIP": "10.0.0.3", "hostIPs": [{"ip": "10.0.0.3"}],
            "podIP": "10.244.1.7", "podIPs": [{"ip": "10.244.1.7"}],
            "startTime": "2026-11-25T09:00:00Z", "qosClass": "Burstable",
            "containerStatuses": [container_status],
        });
        json_patch::merge(&mut status, &extra_status);
        let mount = json!({"name": "kube-api-access-x2k4p", "readOnly": true,
                           "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"});
        serde_json::from_value(json!({
            "metadata": {
                "name": NAME, "generateName": "app-7d9f8c6b5-", "namespace": "default", "uid": UID,
                "resourceVersion": "4711", "creationTimestamp": "2026-11-25T09:00:00Z",
                "labels": {"app": "app", "pod-template-hash": "7d9f8c6b5"},
                "annotations": {"sre-operator.dev/ignore": "false",
                                "kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "app-7d9f8c6b5",
                                     "uid": "0a1b2c3d-0000-4000-8000-000000000001", "controller": true}],
                "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                                   "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {}}}}],
            },
            "spec": {
                "nodeName": "node-a",
                "volumes": [
                    {"name": "kube-api-access-x2k4p", "projected": {"sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "app-data"}}],
                "initContainers": [{"name": "migrate", "image": "registry.example.com/app-migrate:1.8.2",
                                    "command": ["/migrate"], "volumeMounts": [mount]}],
                "containers": [{
                    "name": "app", "image": "registry.example.com/app:1.8.2",
                    "command": ["/app"], "args": ["--listen=:8080"],
                    "env": [{"name": "REDIS_HOST", "value": "redis"}],
                    "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                    "volumeMounts": [mount],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8081, "scheme": "HTTP"}, "periodSeconds": 5},
                    "livenessProbe": {"httpGet": {"path": "/live", "port": "http", "scheme": "HTTP"}, "periodSeconds": 10},
                }],
                "nodeSelector": {"disktype": "ssd"},
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                 "effect": "NoExecute", "tolerationSeconds": 300}],
            },
            "status": status,
        }))
        .unwrap()
    }

    fn status(state: Value, last_state: Value, ready: bool, restarts: i32) -> Value {
        json!({"name": "app", "image": "registry.example.com/app:1.8.2", "imageID": "", "ready": ready,
               "restartCount": restarts, "state": state, "lastState": last_state, "started": ready,
               "containerID": "containerd://4f2a9c1",
               "volumeMounts": [{"name": "kube-api-access-x2k4p", "readOnly": true,
                                 "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]})
    }

    fn waiting(reason: &str, message: &str) -> Value {
        json!({"waiting": {"reason": reason, "message": message}})
    }

    fn terminated(code: i32, reason: &str) -> Value {
        json!({"terminated": {"exitCode": code, "reason": reason,
               "startedAt": "2026-11-25T09:41:05Z", "finishedAt": "2026-11-25T09:41:07Z"}})
    }

    fn running() -> Value {
        json!({"running": {"startedAt": "2026-11-25T09:00:00Z"}})
    }

    fn event(reason: &str, message: &str) -> Event {
        serde_json::from_value(json!({
            "metadata": {"name": format!("{NAME}.{}", reason.to_lowercase()), "namespace": "default"},
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": NAME, "uid": UID,
                               "apiVersion": "v1", "fieldPath": "spec.containers{app}"},
            "reason": reason, "message": message, "type": "Warning", "count": 5,
            "source": {"component": "kubelet", "host": "node-a"},
            "firstTimestamp": "2026-11-25T09:00:00Z", "lastTimestamp": "2026-11-25T09:40:00Z"
        }))
        .unwrap()
    }

    /// What the store keeps of a Pod arriving in a watch event; None when it keeps nothing.
    fn stored(pod: &Pod) -> Option<Pod> {
        match store_event(watcher::Event::Apply(pod.clone())) {
            Some(watcher::Event::Apply(p)) => Some(p),
            Some(watcher::Event::Delete(_)) => None,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Every failure class, shaped the way the kubelet and the scheduler write them.
    fn failing() -> Vec<(FailureClass, Pod, Vec<Event>)> {
        let backoff = event("BackOff", "Back-off restarting failed container app in pod");
        let crash = waiting(
            "CrashLoopBackOff",
            "back-off 40s restarting failed container=app",
        );
        let unschedulable = {
            let mut p = pod(
                status(waiting("ContainerCreating", ""), json!({}), false, 0),
                "Pending",
                json!({}),
            );
            p.spec.as_mut().unwrap().node_name = None;
            let status = p.status.as_mut().unwrap();
            status.container_statuses = None;
            status.conditions = serde_json::from_value(json!([{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable",
                "message": "0/2 nodes are available: 2 Insufficient memory. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."}]))
            .unwrap();
            p
        };
        vec![
            (
                FailureClass::CrashLoopBackOff,
                pod(
                    status(crash.clone(), terminated(1, "Error"), false, 3),
                    "Running",
                    json!({}),
                ),
                vec![backoff.clone()],
            ),
            (
                FailureClass::OomKilled,
                pod(
                    status(crash.clone(), terminated(137, "OOMKilled"), false, 4),
                    "Running",
                    json!({}),
                ),
                vec![backoff.clone()],
            ),
            (
                // OOMKilled and running again: ready, yet failing.
                FailureClass::OomKilled,
                pod(
                    status(running(), terminated(137, "OOMKilled"), true, 1),
                    "Running",
                    json!({}),
                ),
                vec![],
            ),
            (
                FailureClass::ImagePullBackOff,
                pod(
                    status(
                        waiting(
                            "ImagePullBackOff",
                            "Back-off pulling image \"registry.example.com/app:1.8.2\"",
                        ),
                        json!({}),
                        false,
                        0,
                    ),
                    "Pending",
                    json!({}),
                ),
                vec![event(
                    "Failed",
                    "Failed to pull image \"registry.example.com/app:1.8.2\": not found",
                )],
            ),
            (
                FailureClass::CreateContainerConfigError,
                pod(
                    status(
                        waiting(
                            "CreateContainerConfigError",
                            "couldn't find key REDIS_URL in ConfigMap default/app-config",
                        ),
                        json!({}),
                        false,
                        0,
                    ),
                    "Pending",
                    json!({}),
                ),
                vec![],
            ),
            (FailureClass::Pending, unschedulable, vec![]),
            (
                FailureClass::ProbeFailure,
                pod(status(running(), json!({}), false, 0), "Running", json!({})),
                vec![event(
                    "Unhealthy",
                    "Readiness probe failed: HTTP probe failed with statuscode: 503",
                )],
            ),
            (
                // An init container crash-looping: the Pod stays Pending.
                FailureClass::CrashLoopBackOff,
                pod(
                    json!({"name": "app", "image": "registry.example.com/app:1.8.2", "imageID": "", "ready": false,
                           "restartCount": 0, "state": waiting("PodInitializing", "")}),
                    "Pending",
                    json!({"initContainerStatuses": [{"name": "migrate", "image": "registry.example.com/app-migrate:1.8.2",
                        "imageID": "", "ready": false, "restartCount": 3, "state": crash,
                        "lastState": terminated(1, "Error")}]}),
                ),
                vec![],
            ),
        ]
    }

    #[test]
    fn a_stored_failing_pod_still_detects_every_class() {
        for (class, pod, events) in failing() {
            let before = detect(&pod, &events);
            assert!(
                before.iter().any(|d| d.class == class),
                "{class:?}: {before:#?}"
            );
            assert!(may_be_failing(&pod), "{class:?} does not pass the gate");
            let after = stored(&pod).unwrap_or_else(|| panic!("{class:?} is not stored"));
            assert_eq!(detect(&after, &events), before, "{class:?}");
            // What the policy-filter plugins and workload resolution read is still there.
            assert_eq!(after.spec, pod.spec, "{class:?}");
            assert_eq!(after.status, pod.status, "{class:?}");
            assert_eq!(
                after.metadata.owner_references,
                pod.metadata.owner_references
            );
            assert_eq!(
                after
                    .annotations()
                    .get("sre-operator.dev/ignore")
                    .map(String::as_str),
                Some("false")
            );
            assert!(
                after
                    .metadata
                    .managed_fields
                    .as_ref()
                    .is_none_or(|m| m.is_empty())
            );
            assert!(
                !after
                    .annotations()
                    .contains_key("kubectl.kubernetes.io/last-applied-configuration")
            );
        }
    }

    fn healthy() -> Vec<Pod> {
        vec![
            pod(status(running(), json!({}), true, 0), "Running", json!({})),
            // Restarted once long ago, ready again.
            pod(
                status(running(), terminated(1, "Error"), true, 1),
                "Running",
                json!({}),
            ),
            // Starting.
            pod(
                status(waiting("ContainerCreating", ""), json!({}), false, 0),
                "Pending",
                json!({}),
            ),
            // Done.
            pod(
                status(terminated(0, "Completed"), json!({}), false, 0),
                "Succeeded",
                json!({}),
            ),
        ]
    }

    #[test]
    fn a_healthy_pod_is_not_stored() {
        for pod in healthy() {
            assert!(!may_be_failing(&pod));
            assert!(stored(&pod).is_none(), "{pod:#?}");
            assert!(store_event(watcher::Event::InitApply(pod)).is_none());
        }
    }

    #[test]
    fn the_store_follows_a_pod_into_failure_and_out_again() {
        let (reader, mut writer) = reflector::store::<Pod>();
        let events = |pod: Pod, init: bool| {
            if init {
                watcher::Event::InitApply(pod)
            } else {
                watcher::Event::Apply(pod)
            }
        };
        let apply = |writer: &mut reflector::store::Writer<Pod>, e: watcher::Event<Pod>| {
            if let Some(e) = store_event(e) {
                writer.apply_watcher_event(&e);
            }
        };
        let (_, failing, events_of_failure) = failing().remove(0);
        let well = healthy().remove(0);
        // The initial list: one healthy Pod, one failing one under another name.
        let mut other = failing.clone();
        other.metadata.name = Some("other".into());
        apply(&mut writer, watcher::Event::Init);
        apply(&mut writer, events(well.clone(), true));
        apply(&mut writer, events(other.clone(), true));
        apply(&mut writer, watcher::Event::InitDone);
        let names = |r: &reflector::Store<Pod>| {
            let mut n: Vec<String> = r.state().iter().map(|p| p.name_any()).collect();
            n.sort();
            n
        };
        assert_eq!(names(&reader), vec!["other".to_string()]);
        // It starts failing: stored whole, and detection sees what it would on the full Pod.
        apply(&mut writer, events(failing.clone(), false));
        assert_eq!(names(&reader), vec![NAME.to_string(), "other".to_string()]);
        let kept = reader
            .state()
            .into_iter()
            .find(|p| p.name_any() == NAME)
            .unwrap();
        assert_eq!(
            detect(&kept, &events_of_failure),
            detect(&failing, &events_of_failure)
        );
        // It recovers: gone again.
        apply(&mut writer, events(well, false));
        assert_eq!(names(&reader), vec!["other".to_string()]);
    }
}

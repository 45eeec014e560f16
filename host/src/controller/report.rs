//! The report controller: the state machine of a DiagnosticReport, one phase a reconcile.
//! `Analyzing` runs the investigation; `AwaitingApproval` waits for `spec.decision` (or the
//! policy's `approval: Auto`); `Approved` applies the patch exactly once (intent recorded first,
//! reviewed again, dry run, then guarded by the reviewed resourceVersion); `Applied` verifies the
//! rollout; a finished report is deleted after the retention.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::json;

use super::{Context, Error, FIELD_MANAGER, Result};
use crate::agent::{Case, Investigator, investigate};
use crate::cluster::{LiveCluster, ResourceKind, resolve_workload};
use crate::crd::{
    API_VERSION, ApplyRecord, Approval, Decision, DiagnosticReport, DiagnosticReportStatus, Phase,
    Verdict, condition, replace_conditions, set_condition,
};
use crate::failure::detect;
use crate::patch::apply;
use crate::telemetry::{KindLabel, OutcomeLabel, PhaseLabel, ToolLabel};

/// Writes the report's whole status by server-side apply under [`FIELD_MANAGER`]: a field the
/// operator no longer sends (a message of an earlier phase) is removed, which a merge patch would
/// leave behind. Counts the phase transition.
pub(super) async fn write_status(
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
                phase: phase.as_str().into(),
            })
            .inc();
    }
    let body = json!({
        "apiVersion": API_VERSION,
        "kind": "DiagnosticReport",
        "status": status,
    });
    api.patch_status(
        &report.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
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
    let policy = ctx.policy(&spec.policy);
    let (brain, mut budget) =
        crate::agent::brain_and_budget(&ctx.brain, &ctx.settings.budget, policy.as_deref());
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
    let previous = report.status.as_ref().map_or(&[][..], |s| &s.conditions);
    status.conditions = replace_conditions(previous, status.conditions);
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
    ctx.event(report, type_, phase.unwrap_or(Phase::Failed).as_str(), note)
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
    set_condition(
        &mut status.conditions,
        condition(
            "Resolved",
            ok,
            phase.as_str(),
            &message,
            report.metadata.generation,
        ),
    );
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
        crate::patch::review_context(report, status.brain.as_ref()),
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
    if let Err(e) = crate::patch::apply_to(&target, &suggestion.patch) {
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
        && !phase.is_some_and(Phase::is_terminal)
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
                .policy(&report.spec.policy)
                .is_some_and(|p| p.spec.approval == Approval::Auto);
            if report.spec.decision == Some(Decision::Approved) || (auto && allowed) {
                let mut next = status;
                next.phase = Some(Phase::Approved);
                set_condition(
                    &mut next.conditions,
                    condition(
                        "Approved",
                        true,
                        if auto { "AutoApproved" } else { "Approved" },
                        "the patch was approved",
                        report.metadata.generation,
                    ),
                );
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

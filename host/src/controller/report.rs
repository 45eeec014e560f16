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

use super::{Context, Error, FIELD_MANAGER, Regarding, Result};
use crate::agent::{Case, Investigator, investigate};
use crate::cluster::{Involved, ResourceKind, resolve_workload};
use crate::crd::{
    API_VERSION, ApplyRecord, Decision, DiagnosticReport, DiagnosticReportStatus, Phase, Verdict,
    condition, replace_conditions, set_condition,
};
use crate::failure::detect;
use crate::patch::{apply, gate};
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
    let transition = status.phase != previous;
    if transition && let Some(phase) = status.phase {
        count_transition(ctx, phase);
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
    // Told once the phase is stored, so a failed write is not announced.
    if transition
        && let Some(notifier) = &ctx.notifier
        && let Some(notify) = ctx
            .policy(&report.spec.policy)
            .and_then(|p| p.spec.notify.clone())
    {
        notifier.notify(&notify.secret_ref, report, &status);
    }
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

/// Whether the report's `Analyzing` status is stored: a new report's is written only when it
/// will not be the last write of this reconcile (an incident member that takes its lead's
/// findings at once is written once, with its conclusion).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Announced {
    Yes,
    NotYet,
}

/// Writes the first status of a new report that is not concluded in this reconcile (it
/// investigates in the next one, which the write's watch event brings, or waits for its
/// incident's lead), and tells its Pod that the report is open.
async fn announce(
    ctx: &Context,
    report: &DiagnosticReport,
    status: DiagnosticReportStatus,
) -> Result<()> {
    write_status(ctx, report, status).await?;
    let failure = &report.spec.failure;
    ctx.event(
        report,
        Regarding::Pod,
        EventType::Normal,
        "Opened",
        format!(
            "{} ({}): report {} opened",
            failure.class,
            failure.reason,
            report.name_any()
        ),
    )
    .await;
    Ok(())
}

/// Where the subject Pod came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PodFrom {
    /// The Pod watch's copy: trimmed (no env values), enough to find the cause and to stand
    /// for an incident member; an investigation reads the Pod whole.
    Store,
    Read,
}

/// The Pod `report` is about, from the Pod watch's store when it holds it, else read.
async fn stored_or_read_pod(
    ctx: &Context,
    report: &DiagnosticReport,
) -> Result<Option<(Pod, PodFrom)>> {
    let pod = &report.spec.pod;
    if report.spec.failure.class != crate::crd::FailureClass::FailedCreate
        && let Some(stored) = ctx
            .pods
            .get(&kube::runtime::reflector::ObjectRef::new(&pod.name).within(&pod.namespace))
    {
        return Ok(Some((stored.pod(), PodFrom::Store)));
    }
    let read = crate::triage::subject_pod(ctx.cluster.as_ref(), report).await?;
    Ok(read.map(|p| (p, PodFrom::Read)))
}

/// Ends a report whose subject is gone.
async fn subject_gone(report: &DiagnosticReport, ctx: &Context) -> Result<Action> {
    let spec = &report.spec;
    let mut status = report.status.clone().unwrap_or_default();
    status.phase = Some(Phase::Failed);
    status.message = Some(match spec.failure.class {
        crate::crd::FailureClass::FailedCreate => format!(
            "{} {} creates its Pods now (or is gone); a new refusal opens a new report",
            crate::failure::creator_kind(&spec.workload.kind).kind(),
            spec.pod.name
        ),
        _ => format!(
            "Pod {} no longer exists; a new failing Pod opens a new report",
            spec.pod.name
        ),
    });
    status.finished_at = Some(Time(Timestamp::now()));
    write_status(ctx, report, status).await?;
    Ok(Action::await_change())
}

async fn analyze(
    report: &DiagnosticReport,
    ctx: &Arc<Context>,
    announced: Announced,
) -> Result<Action> {
    let spec = &report.spec;
    let uid = report.uid().unwrap_or_default();
    // A finished investigation whose status write failed is written, not run again.
    let unwritten = ctx.unwritten.lock().unwrap().remove(&uid);
    if let Some(status) = unwritten {
        return write_investigation(report, ctx, status).await;
    }
    // One namespace holds at most its share of the slots; the others are not held up.
    let Some(_slot) = ctx.slots.try_acquire(&spec.pod.namespace) else {
        if announced == Announced::NotYet {
            announce(ctx, report, report.status.clone().unwrap_or_default()).await?;
        }
        return Ok(Action::requeue(Duration::from_secs(2)));
    };
    let Some((pod, pod_from)) = stored_or_read_pod(ctx, report).await? else {
        return subject_gone(report, ctx).await;
    };
    let policy = ctx.policy(&spec.policy);
    let compiled = policy
        .as_deref()
        .and_then(|p| crate::policy::CompiledPolicy::compile(p).ok());
    if let Err(reason) =
        super::provenance::still_selected(report, &pod, compiled.as_ref(), &ctx.settings.namespaces)
    {
        return fail(ctx, report, "no_longer_selected", reason).await;
    }
    // A failure that shares its cause with others is one incident: its first report
    // investigates, the others wait and take its findings.
    let incident = match crate::incident::cause_of(report, &pod, ctx.cluster.as_ref()).await {
        None => None,
        Some(cause) => match ctx.incidents.join(&cause, report, INCIDENT_FRESH) {
            crate::incident::Role::Lead(detail) => Some(detail),
            crate::incident::Role::Waiting { lead } => {
                let mut status = report.status.clone().unwrap_or_default();
                let name = crate::incident::name(&cause);
                if status.incident.as_deref() != Some(name.as_str()) {
                    status.incident = Some(name.clone());
                    status.message = Some(format!(
                        "part of incident {name} ({}): waiting for its investigation in report {}/{}",
                        cause.description, lead.namespace, lead.report
                    ));
                    if announced == Announced::NotYet && ctx.incidents.tells_member(&name, report) {
                        announce(ctx, report, status).await?;
                    } else {
                        write_status(ctx, report, status).await?;
                    }
                }
                return Ok(Action::requeue(WAIT_FOR_LEAD));
            }
            crate::incident::Role::Join { lead, detail } => {
                let own_fix = if crate::incident::fix_per_member(&lead) {
                    let case = Case {
                        report: report.clone(),
                        pod,
                    };
                    crate::incident::member_fix(
                        ctx.plugins.current(),
                        ctx.cluster.clone(),
                        &case,
                        &lead,
                        &detail,
                    )
                    .await
                } else {
                    None
                };
                let status = match own_fix {
                    Some(mut status) => {
                        settle(report, ctx, &mut status).await?;
                        status
                    }
                    None => crate::incident::member_status(report, &lead, &detail),
                };
                write_investigation(report, ctx, status).await?;
                // The members that join in a burst are written onto the lead together, a
                // moment later, not one write each.
                if ctx.incidents.detail_due(&detail.name) {
                    let ctx = ctx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(DETAIL_DELAY).await;
                        if let Some(detail) = ctx.incidents.take_due_detail(&detail.name) {
                            update_incident_detail(&ctx, &lead, detail).await;
                        }
                    });
                }
                return Ok(Action::await_change());
            }
        },
    };
    // An investigation of its own: announced first, and run by the reconcile its write brings
    // (one investigating now could be run again by that one, from a store that lags).
    if announced == Announced::NotYet {
        announce(ctx, report, report.status.clone().unwrap_or_default()).await?;
        return Ok(Action::await_change());
    }
    let pod = match pod_from {
        PodFrom::Read => pod,
        PodFrom::Store => match crate::triage::subject_pod(ctx.cluster.as_ref(), report).await? {
            Some(pod) => pod,
            None => return subject_gone(report, ctx).await,
        },
    };
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
                    "waiting for the hourly token budget ({} tokens, --max-tokens-per-hour; {} for namespace {}, --namespace-token-share) to free up",
                    hourly.limit(),
                    hourly.namespace_limit(),
                    spec.pod.namespace
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
    let mut report_as_seen = report.clone();
    // Alerts that joined the report (Alertmanager) are evidence the failure did not show.
    for line in super::alert::recorded_evidence(report) {
        if !report_as_seen.spec.failure.evidence.contains(&line) {
            report_as_seen.spec.failure.evidence.push(line);
        }
    }
    let case = Case {
        report: report_as_seen,
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
    settle(report, ctx, &mut status).await?;
    let Some(detail) = incident else {
        return write_investigation(report, ctx, status).await;
    };
    let name = detail.name.clone();
    status.incident = Some(name.clone());
    // Members that joined during the investigation are listed too.
    let detail = ctx.incidents.detail(&name).unwrap_or(detail);
    status.incident_detail = Some(detail.seen_from(&report.namespace().unwrap_or_default()));
    let action = write_investigation(report, ctx, status.clone()).await?;
    let mut concluded = report.clone();
    concluded.status = Some(status);
    ctx.incidents.concluded(&name, &concluded);
    Ok(action)
}

/// What an investigation's status needs before it is written: the version of the patch's
/// target it was made against (the apply refuses a target that moved on), and the conditions
/// merged with the report's.
async fn settle(
    report: &DiagnosticReport,
    ctx: &Context,
    status: &mut DiagnosticReportStatus,
) -> Result<()> {
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
    status.conditions = replace_conditions(previous, std::mem::take(&mut status.conditions));
    Ok(())
}

/// How often a member waiting for its incident's lead looks again; until the lead concludes a
/// look costs no request ([`crate::incident::Incidents::still_waiting`]).
const WAIT_FOR_LEAD: Duration = Duration::from_secs(1);

/// How long the members that join an incident are gathered before they are written onto its
/// lead in one write.
const DETAIL_DELAY: Duration = Duration::from_secs(2);

/// How long after its investigation an incident takes new members; a later failure of the
/// same cause opens a new incident (and a new investigation).
const INCIDENT_FRESH: Duration = Duration::from_secs(30 * 60);

/// Writes the incident's members as they stand onto the report that investigated it. A failed
/// write is logged, not retried: the next member to join writes the whole list again.
async fn update_incident_detail(
    ctx: &Context,
    lead: &DiagnosticReport,
    detail: crate::crd::IncidentDetail,
) {
    let name = detail.name.clone();
    let namespace = lead.namespace().unwrap_or_default();
    let detail = ctx
        .incidents
        .detail(&name)
        .unwrap_or(detail)
        .seen_from(&namespace);
    let api: Api<DiagnosticReport> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = json!({"status": {"incidentDetail": detail}});
    if let Err(e) = api
        .patch_status(
            &lead.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        tracing::warn!(report = %lead.name_any(), incident = %name, "recording the incident's members failed: {e}");
    }
}

fn count_transition(ctx: &Context, phase: Phase) {
    ctx.metrics
        .report_transitions
        .get_or_create(&PhaseLabel {
            phase: phase.as_str().into(),
        })
        .inc();
}

/// Writes a finished investigation's status and its Event; a failed write keeps the status for
/// the next reconcile, so the investigation is never paid for twice.
async fn write_investigation(
    report: &DiagnosticReport,
    ctx: &Context,
    status: DiagnosticReportStatus,
) -> Result<Action> {
    let phase = status.phase;
    let note = status
        .findings
        .as_ref()
        .map(|f| f.summary.clone())
        .or_else(|| status.message.clone())
        .unwrap_or_default();
    if let Err(e) = write_status(ctx, report, status.clone()).await {
        ctx.unwritten
            .lock()
            .unwrap()
            .insert(report.uid().unwrap_or_default(), status);
        return Err(e);
    }
    // A member of an incident with nothing to decide points at its lead: told on its Pod, if it
    // is one of the first members (the lead lists them all).
    let member_of = status
        .incident
        .as_deref()
        .filter(|_| status.incident_detail.is_none() && status.suggested_patch.is_none());
    let regarding = if let Some(incident) = member_of {
        if !ctx.incidents.tells_member(incident, report) {
            tracing::debug!(report = %report.name_any(), incident, "not told on its Pod: the incident has told {} members", crate::incident::TOLD_MEMBERS);
            return Ok(Action::await_change());
        }
        Regarding::Pod
    } else {
        Regarding::ReportAndPod
    };
    let type_ = if phase == Some(Phase::Failed) {
        EventType::Warning
    } else {
        EventType::Normal
    };
    ctx.event(
        report,
        regarding,
        type_,
        phase.unwrap_or(Phase::Failed).as_str(),
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
    ctx.event(
        report,
        Regarding::ReportAndPod,
        EventType::Warning,
        "ApplyFailed",
        message,
    )
    .await;
    Ok(Action::await_change())
}

/// Why the operator may no longer act on `report`, if it may not: its policy must still select
/// the Pod (or, once the Pod is gone, its workload's Pod template) and `--namespace` cover it.
async fn no_longer_selected(report: &DiagnosticReport, ctx: &Context) -> Result<Option<String>> {
    let spec = &report.spec;
    let pod = match ctx
        .cluster
        .get(ResourceKind::Pod, Some(&spec.pod.namespace), &spec.pod.name)
        .await?
    {
        Some(pod) => crate::cluster::typed::<Pod>(&pod)?,
        None => {
            // The Pod was replaced: its workload's template says what its Pods are.
            let labels = match spec.workload.kind.parse::<ResourceKind>() {
                Ok(kind) => ctx
                    .cluster
                    .get(kind, Some(&spec.pod.namespace), &spec.workload.name)
                    .await?
                    .map(|w| w["spec"]["template"]["metadata"]["labels"].clone()),
                Err(_) => None,
            };
            serde_json::from_value(json!({
                "metadata": {"name": spec.pod.name, "namespace": spec.pod.namespace,
                             "labels": labels.unwrap_or(json!({}))}
            }))
            .map_err(|e| Error::Other(e.to_string()))?
        }
    };
    let policy = ctx
        .policy(&spec.policy)
        .and_then(|p| crate::policy::CompiledPolicy::compile(&p).ok());
    Ok(
        super::provenance::still_selected(report, &pod, policy.as_ref(), &ctx.settings.namespaces)
            .err(),
    )
}

/// Applies the approved patch through the one gate ([`crate::patch::gate`]): the pinned digest
/// checked, the intent recorded, then re-read, replay check, review, local apply, resourceVersion
/// guard, dry run and patch. A replay after a restart finds the patch already in place and
/// records it as applied.
async fn apply_patch(report: &DiagnosticReport, ctx: &Context) -> Result<Action> {
    let status = report.status.clone().unwrap_or_default();
    let Some(suggestion) = status.suggested_patch.clone() else {
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
    // What is applied is what was read: the patch's digest is the one recorded when it was
    // reviewed, and the one the approver pinned, if they pinned one.
    let digest = suggestion.digest();
    if status.patch_digest.as_deref() != Some(digest.as_str()) {
        return fail(
            ctx,
            report,
            "digest_mismatch",
            format!(
                "the patch in status (digest {digest}) is not the one that was reviewed (digest {}); nothing was applied",
                status.patch_digest.as_deref().unwrap_or("none")
            ),
        )
        .await;
    }
    if let Some(approved) = &report.spec.approved_digest
        && *approved != digest
    {
        return fail(
            ctx,
            report,
            "digest_mismatch",
            format!(
                "spec.approvedDigest {approved} is not the digest of the patch in status ({digest}): the approver read another patch; nothing was applied"
            ),
        )
        .await;
    }
    if let Some(reason) = no_longer_selected(report, ctx).await? {
        return fail(ctx, report, "no_longer_selected", reason).await;
    }
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
    let checked = gate::prepare(
        &ctx.client,
        ctx.cluster.as_ref(),
        &ctx.plugins.current(),
        report,
        &suggestion,
        crate::patch::review_context(report, status.brain.as_ref()),
        Some(gate::Replay {
            field_manager: FIELD_MANAGER,
            intent: &record.started_at,
        }),
    )
    .await;
    let label = gate::target_label(&suggestion);
    let prepared = match checked {
        Ok(gate::Checked::Ready(prepared)) => prepared,
        Ok(gate::Checked::AlreadyApplied { target }) => {
            record.applied_at.get_or_insert(Time(Timestamp::now()));
            record.target_generation = target["metadata"]["generation"].as_i64();
            mark_applied(ctx, report, &status, record, "already_applied").await?;
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        Err(gate::GateError::Denied {
            filter,
            reason,
            target_version,
        }) => {
            // Reviewed again against the target as it is now, drifted or not: the patch in
            // status is only as trustworthy as whoever can write status.
            let drifted = target_version.is_some()
                && status.target_resource_version.as_deref() != target_version.as_deref();
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
                format!("{label} {what} ({filter}): {reason}"),
            )
            .await;
        }
        Err(e) => return fail(ctx, report, e.label(), e.to_string()).await,
    };
    match gate::send(&ctx.client, &prepared, FIELD_MANAGER).await {
        Ok(patched) => {
            record.applied_at = Some(Time(Timestamp::now()));
            record.rollback_patch = apply::rollback_patch(&prepared.target, &prepared.operations);
            record.target_generation = patched.metadata.generation;
            mark_applied(ctx, report, &status, record, "applied").await?;
            ctx.event(
                report,
                Regarding::ReportAndPod,
                EventType::Normal,
                "Applied",
                format!("patched {label}"),
            )
            .await;
            Ok(Action::requeue(Duration::from_secs(2)))
        }
        // The object changed between read and write: read it again and retry.
        Err(gate::GateError::Conflict { .. }) => Ok(Action::requeue(Duration::from_secs(1))),
        Err(e) => fail(ctx, report, e.label(), e.to_string()).await,
    }
}

/// Records the patch as on the workload (`outcome` says whether this call sent it).
async fn mark_applied(
    ctx: &Context,
    report: &DiagnosticReport,
    status: &DiagnosticReportStatus,
    record: ApplyRecord,
    outcome: &str,
) -> Result<()> {
    let mut next = status.clone();
    next.apply = Some(record);
    next.phase = Some(Phase::Applied);
    ctx.metrics
        .applies
        .get_or_create(&OutcomeLabel {
            outcome: outcome.into(),
        })
        .inc();
    write_status(ctx, report, next).await
}

/// Whether the workload finished rolling out the patched generation, and what is missing if not.
fn rollout_state(
    kind: ResourceKind,
    object: &serde_json::Value,
    generation: Option<i64>,
) -> Result<(), String> {
    let status = &object["status"];
    let observed = status["observedGeneration"].as_i64().unwrap_or(0);
    // Only the workload controllers that roll Pods out report the generation they saw; a
    // CronJob's status never does (its next Job reads the template when it starts).
    let rolls_out = matches!(
        kind,
        ResourceKind::Deployment | ResourceKind::StatefulSet | ResourceKind::DaemonSet
    );
    if rolls_out && generation.is_some_and(|g| observed < g) {
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
    let applied = record
        .applied_at
        .as_ref()
        .map(|t| t.0)
        .unwrap_or_else(Timestamp::now);
    // The failure is gone when no Pod of the workload shows the same class any more. A Pod
    // that failed for good before the patch (a Job's) stays Failed whatever the patch did: it
    // is history, not a Pod still failing.
    let pods = ctx.cluster.pods(Some(&report.spec.pod.namespace)).await?;
    let mut still_failing = Vec::new();
    for pod in &pods {
        let owned = resolve_workload(ctx.cluster.as_ref(), pod)
            .await
            .is_ok_and(|w| w == report.spec.workload);
        let failed_before = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
            && pod
                .metadata
                .creation_timestamp
                .as_ref()
                .is_some_and(|t| t.0 < applied);
        if !owned || pod.metadata.deletion_timestamp.is_some() || failed_before {
            continue;
        }
        let events = ctx.cluster.events_for(Involved::pod(pod)).await?;
        if detect(pod, &events)
            .iter()
            .any(|d| d.class == report.spec.failure.class)
        {
            still_failing.push(pod.name_any());
        }
    }
    if rollout.is_ok() && still_failing.is_empty() {
        let message = if kind == ResourceKind::CronJob {
            format!(
                "CronJob {} patched: its next Job runs the new template (no Pod since shows {})",
                patch.target.name, report.spec.failure.class
            )
        } else {
            format!(
                "{} {} rolled out and no Pod shows {} any more",
                kind, patch.target.name, report.spec.failure.class
            )
        };
        return verified(ctx, report, Phase::Resolved, message).await;
    }
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
        return verified(ctx, report, Phase::Unresolved, message).await;
    }
    Ok(Action::requeue(Duration::from_secs(3)))
}

/// Ends verification: the outcome counted, the terminal status written, an Event raised.
async fn verified(
    ctx: &Context,
    report: &DiagnosticReport,
    phase: Phase,
    message: String,
) -> Result<Action> {
    let (outcome, event_type) = match phase {
        Phase::Resolved => ("resolved", EventType::Normal),
        _ => ("unresolved", EventType::Warning),
    };
    ctx.metrics
        .applies
        .get_or_create(&OutcomeLabel {
            outcome: outcome.into(),
        })
        .inc();
    write_status(ctx, report, terminal_status(report, phase, message.clone())).await?;
    ctx.event(
        report,
        Regarding::ReportAndPod,
        event_type,
        phase.as_str(),
        message,
    )
    .await;
    Ok(Action::await_change())
}

fn status_phase(report: &DiagnosticReport) -> Option<Phase> {
    report.status.as_ref().and_then(|s| s.phase)
}

pub async fn reconcile_report(report: Arc<DiagnosticReport>, ctx: Arc<Context>) -> Result<Action> {
    if !ctx.is_leader() {
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    // A member of an incident whose lead is still investigating has nothing to read or write
    // yet (a burst has hundreds); a rejection is still acted on at once.
    if status_phase(&report) == Some(Phase::Analyzing)
        && report.spec.decision != Some(Decision::Rejected)
        && ctx.incidents.still_waiting(&report)
    {
        return Ok(Action::requeue(WAIT_FOR_LEAD));
    }
    // Only reports the operator opened are acted on: one created by anyone else (naming a Pod
    // in another namespace, or a policy with approval: Auto) is left alone, unwritten. The
    // owner may be remembered while investigating; a report that may lead to a workload write
    // (a decision, or a phase from which a patch is applied) is checked live, every time.
    let may_write = report.spec.decision.is_some()
        || matches!(
            status_phase(&report),
            Some(Phase::AwaitingApproval | Phase::Approved)
        );
    let provenance = if may_write {
        super::provenance::opened_by_us(&report, ctx.cluster.as_ref()).await
    } else {
        super::provenance::opened_by_us_remembered(
            &report,
            ctx.recent.as_ref(),
            &ctx.checked_owners,
        )
        .await
    };
    if let Err(why) = provenance {
        tracing::warn!(report = %report.name_any(), namespace = %report.namespace().unwrap_or_default(), "ignoring a report the operator did not open: {why}");
        return Ok(Action::await_change());
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
            Regarding::ReportAndPod,
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
            set_condition(
                &mut next.conditions,
                condition(
                    "Analyzed",
                    false,
                    "Analyzing",
                    "the investigation is running",
                    report.metadata.generation,
                ),
            );
            // Analyzing from here on, written or not (a member that joins at once is written
            // once, concluded).
            count_transition(&ctx, Phase::Analyzing);
            let mut analyzing = (*report).clone();
            analyzing.status = Some(next);
            analyze(&analyzing, &ctx, Announced::NotYet).await
        }
        Some(Phase::Analyzing) => analyze(&report, &ctx, Announced::Yes).await,
        Some(Phase::AwaitingApproval) => {
            let allowed = status
                .safety
                .as_ref()
                .is_some_and(|s| s.verdict != Verdict::Denied);
            // Auto approves what review allowed, and of a model's patches only those the
            // policy opted into (`auto_approves`); the author is the brain that wrote it.
            let policy = ctx.policy(&report.spec.policy);
            let (brain, _) =
                crate::agent::brain_and_budget(&ctx.brain, &ctx.settings.budget, policy.as_deref());
            let author = brain.model().unwrap_or_else(|| brain.kind().to_string());
            let auto = policy
                .as_ref()
                .zip(status.suggested_patch.as_ref())
                .is_some_and(|(p, patch)| {
                    crate::crd::auto_approves(&p.spec, &patch.patch, &author)
                });
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
                    Regarding::ReportAndPod,
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

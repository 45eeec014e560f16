//! The Pod controller: opens a DiagnosticReport for each failure class of a failing Pod that a
//! DebugPolicy selects (one per workload and class, with a cooldown), and keeps the pruned Pod
//! store its watch feeds: only Pods that [`may_be_failing`] are stored, and those without
//! managedFields and the last-applied annotation.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;

use super::scope::{StoreScope, StoredPod};
use super::{Context, Result};
use crate::cluster::{Involved, ResourceKind};
use crate::crd::{DiagnosticReport, Phase};
use crate::failure::{awaits_scheduler, detect, may_be_failing};
use crate::triage::{new_report, screen};

/// Pods per LIST page: each page is parsed whole before the healthy Pods are dropped, so the
/// page size bounds that transient memory (100 full Pods is about 5 MB).
pub(super) const POD_PAGE_SIZE: u32 = 100;

/// Whether `existing` may be replaced by a new report: it finished a cooldown ago or more.
fn replaceable(existing: &DiagnosticReport, cooldown: Duration) -> bool {
    let status = existing.status.as_ref();
    let finished = status.and_then(|s| s.finished_at.as_ref()).map(|t| t.0);
    let terminal = status.and_then(|s| s.phase).is_some_and(Phase::is_terminal);
    let cooled = finished
        .is_some_and(|f| Timestamp::now().duration_since(f).as_secs() as u64 >= cooldown.as_secs());
    terminal && cooled
}

/// Whether `report` was opened after `pod`'s eviction: an evicted Pod stays until someone
/// deletes it, and its eviction, reported once, is not reported again each time the report's
/// cooldown ends (a new eviction is a new Pod).
fn reported_since_evicted(report: &DiagnosticReport, pod: &Pod) -> bool {
    match (
        crate::failure::evicted_at(pod),
        report.metadata.creation_timestamp.as_ref(),
    ) {
        (Some(evicted), Some(opened)) => opened.0 >= evicted,
        _ => false,
    }
}

/// The report named `name` in `namespace` as the report watch last saw it.
fn known_report(ctx: &Context, namespace: &str, name: &str) -> Option<Arc<DiagnosticReport>> {
    ctx.reports
        .get(&kube::runtime::reflector::ObjectRef::new(name).within(namespace))
}

/// Opens the report for a Pod's failure unless one is open for the workload and class, or the
/// last one closed less than a cooldown ago. Whether one exists is read from the report watch's
/// store; only a report it has not seen yet costs a read (the create answers 409).
pub(super) async fn open_report(
    ctx: &Context,
    report: DiagnosticReport,
    cooldown: Duration,
) -> Result<()> {
    let namespace = report.namespace().unwrap_or_default();
    let name = report.name_any();
    // The reconcile's trace names the report it opened or joined.
    tracing::Span::current().record("report", name.as_str());
    let api: Api<DiagnosticReport> = Api::namespaced(ctx.client.clone(), &namespace);
    match known_report(ctx, &namespace, &name) {
        Some(existing) if !replaceable(&existing, cooldown) => return Ok(()),
        Some(_) => delete_report(&api, &name).await?,
        // Created a moment ago; the report watch has not shown it yet.
        None if ctx.openings.created_lately(&namespace, &name) => return Ok(()),
        None => {}
    }
    let mut report = report;
    // The workload owns the report: a replaced Pod does not take it along.
    let w = &report.spec.workload;
    if let Ok(kind) = w.kind.parse::<ResourceKind>()
        && let Some(owner) = ctx.recent.get(kind, Some(&namespace), &w.name).await?
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
    let mut created = api.create(&PostParams::default(), &report).await;
    // Not in the store yet: read it, and replace it if it finished long enough ago.
    if let Err(kube::Error::Api(e)) = &created
        && e.code == 409
        && let Some(existing) = api.get_opt(&name).await?
        && replaceable(&existing, cooldown)
    {
        delete_report(&api, &name).await?;
        created = api.create(&PostParams::default(), &report).await;
    }
    if match &created {
        Ok(_) => true,
        Err(kube::Error::Api(e)) => e.code == 409,
        Err(_) => false,
    } {
        ctx.openings.created(&namespace, &name);
    }
    match created {
        Ok(created) => {
            // Its `Opened` Event comes with its first status (`report::announce`): a member of
            // an incident concluded already has one Event, its conclusion.
            tracing::info!(report = %name, namespace = %namespace, class = %created.spec.failure.class, "report opened");
            Ok(())
        }
        // Another Pod of the same workload was faster: one report it is.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a finished report to open a new one; one already gone is fine.
async fn delete_report(api: &Api<DiagnosticReport>, name: &str) -> Result<()> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether every failure class `pod`'s status shows already has its report, open or being
/// opened (or no policy wants it): then the Pod is one more of a workload already reported,
/// and nothing needs reading. Its events are not read either, so a class only its events would
/// show (a failing probe) is looked for on the workload's Pods that are not covered.
fn already_reported(
    ctx: &Context,
    policies: &crate::policy::PolicySet,
    pod: &Pod,
    workload: &crate::crd::WorkloadRef,
    shown: &[crate::failure::Detection],
) -> bool {
    let namespace = pod.namespace().unwrap_or_default();
    shown.iter().all(|d| {
        let Some(policy) = policies.select(pod, d.class) else {
            return true;
        };
        let name = crate::crd::report_name(workload, d.class);
        ctx.openings.opening(&namespace, &name)
            || match known_report(ctx, &namespace, &name) {
                Some(r) => !replaceable(&r, policy.cooldown) || reported_since_evicted(&r, pod),
                None => ctx.openings.created_lately(&namespace, &name),
            }
    })
}

pub async fn reconcile_pod(stored: Arc<StoredPod>, ctx: Arc<Context>) -> Result<Action> {
    if !ctx.is_leader() {
        return Ok(Action::requeue(Duration::from_secs(15)));
    }
    let pod = stored.pod();
    let policies = ctx.policy_set();
    if !policies.selects_pod(&pod) || !may_be_failing(&pod) {
        return Ok(Action::await_change());
    }
    // What the status alone shows needs no read; a Pod of a workload already reported for it
    // stops here.
    let shown = detect(&pod, &[]);
    let mut workload = None;
    let mut claims = Vec::new();
    if !shown.is_empty() {
        let w = ctx.openings.workload(ctx.recent.as_ref(), &pod).await?;
        if already_reported(&ctx, &policies, &pod, &w, &shown) {
            // An evicted Pod whose eviction is reported never changes: only its own update is
            // worth a look.
            let namespace = pod.namespace().unwrap_or_default();
            let report = crate::crd::report_name(&w, crate::crd::FailureClass::Evicted);
            if known_report(&ctx, &namespace, &report)
                .is_some_and(|r| reported_since_evicted(&r, &pod))
            {
                return Ok(Action::await_change());
            }
            return Ok(Action::requeue(Duration::from_secs(60)));
        }
        // The reports the status shows are claimed before the events are read: the workload's
        // other failing Pods, reconciled at the same moment, then stop above instead of each
        // reading its events for a report this reconcile opens.
        let namespace = pod.namespace().unwrap_or_default();
        claims = shown
            .iter()
            .filter(|d| policies.select(&pod, d.class).is_some())
            .filter_map(|d| {
                ctx.openings
                    .begin(&namespace, &crate::crd::report_name(&w, d.class))
            })
            .collect();
        if claims.is_empty() {
            return Ok(Action::requeue(Duration::from_secs(60)));
        }
        workload = Some(w);
    }
    // A new Pod the scheduler has not judged yet: nothing its events could show.
    if shown.is_empty() && awaits_scheduler(&pod) {
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    // A Pod starting on its node: only one still starting after `STUCK_AFTER` is worth its
    // events (a volume that does not mount); the others are running by then.
    let starting = shown.is_empty() && crate::failure::starting(&pod);
    if starting {
        let since = crate::failure::starting_since(&pod).unwrap_or_else(Timestamp::now);
        let elapsed =
            Duration::try_from(Timestamp::now().duration_since(since)).unwrap_or_default();
        if elapsed < crate::failure::STUCK_AFTER {
            return Ok(Action::requeue(
                crate::failure::STUCK_AFTER - elapsed + Duration::from_secs(1),
            ));
        }
    }
    let mut detections = if crate::failure::status_suffices(&pod, &shown) {
        shown
    } else {
        let events = ctx.cluster.events_for(Involved::pod(&pod)).await?;
        detect(&pod, &events)
    };
    // An init container that never completes shows in no event: look again when it has run
    // for `--init-timeout`.
    if detections.is_empty()
        && let Some((_, since)) = crate::failure::init_running(&pod)
    {
        let timeout = ctx.settings.init_timeout;
        match crate::failure::detect_init_running(&pod, Timestamp::now(), timeout) {
            Some(stuck) => detections.push(stuck),
            None => {
                let elapsed =
                    Duration::try_from(Timestamp::now().duration_since(since)).unwrap_or_default();
                return Ok(Action::requeue(
                    timeout.saturating_sub(elapsed) + Duration::from_secs(1),
                ));
            }
        }
    }
    if detections.is_empty() {
        // A failure that has not shown yet (a first restart, a probe warming up): look again;
        // a slow start (a large image) less often.
        return Ok(Action::requeue(if starting {
            crate::failure::STUCK_AFTER
        } else {
            Duration::from_secs(30)
        }));
    }
    let workload = match workload {
        Some(w) => w,
        None => ctx.openings.workload(ctx.recent.as_ref(), &pod).await?,
    };
    for detection in detections {
        let name = crate::crd::report_name(&workload, detection.class);
        let claim = claims
            .iter()
            .position(|c| c.report() == name)
            .map(|i| claims.swap_remove(i));
        open_for(&ctx, &policies, &pod, &workload, detection, claim).await?;
    }
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// Opens the report for one detection on `pod` (a failing Pod, or the Pod a controller cannot
/// create) when a policy wants it, no other reconcile is opening it, and no policy filter skips
/// it.
pub(super) async fn open_for(
    ctx: &Context,
    policies: &crate::policy::PolicySet,
    pod: &Pod,
    workload: &crate::crd::WorkloadRef,
    detection: crate::failure::Detection,
    claimed: Option<super::openings::Opening<'_>>,
) -> Result<()> {
    let Some(policy) = policies.select(pod, detection.class) else {
        return Ok(());
    };
    let report = new_report(pod, workload.clone(), detection, &policy.name);
    let namespace = pod.namespace().unwrap_or_default();
    // Another Pod of the workload is opening this report: one report it is.
    let Some(_opening) = claimed.or_else(|| ctx.openings.begin(&namespace, &report.name_any()))
    else {
        return Ok(());
    };
    let plugins = ctx.plugins.current();
    let now = Timestamp::now().to_string();
    if let Some(reason) = screen(&plugins, ctx.recent.as_ref(), &report, pod, &now).await {
        tracing::info!(pod = %pod.name_any(), namespace = %namespace, %reason, "not investigating");
        return Ok(());
    }
    open_report(ctx, report, policy.cooldown).await
}

/// What the Pod store keeps: only Pods that `may_be_failing`, in the namespaces of `--namespace`,
/// that some DebugPolicy selects ([`StoreScope`]), trimmed and packed ([`StoredPod`]: no managedFields, last-applied annotation,
/// env values or oversized annotations). A healthy Pod is nothing to reconcile, and storing every
/// Pod was most of the operator's memory (about 25 KB a Pod as the API server serves it; see the
/// operator_scale benchmark). A Pod that recovers becomes a Delete, so it leaves the store; one
/// that starts failing arrives with the watch event that says so. A policy change
/// re-reconciles what is stored, which is every Pod a policy could act on; one that widens what the
/// policies reach re-lists ([`scope::relists`]).
///
/// The gate in `reconcile_pod` must stay `may_be_failing`: a Pod this drops is never reconciled.
pub(crate) fn store_event(
    event: watcher::Event<Pod>,
    scope: &StoreScope,
) -> Option<watcher::Event<StoredPod>> {
    let keep = |pod: &Pod| scope.keeps(pod);
    match event {
        watcher::Event::Apply(pod) if keep(&pod) => {
            Some(watcher::Event::Apply(StoredPod::new(pod)))
        }
        watcher::Event::Apply(pod) | watcher::Event::Delete(pod) => {
            Some(watcher::Event::Delete(StoredPod::leaving(pod)))
        }
        watcher::Event::InitApply(pod) => {
            keep(&pod).then(|| watcher::Event::InitApply(StoredPod::new(pod)))
        }
        watcher::Event::Init => Some(watcher::Event::Init),
        watcher::Event::InitDone => Some(watcher::Event::InitDone),
    }
}

#[cfg(test)]
mod tests;

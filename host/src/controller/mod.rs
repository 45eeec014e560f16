//! The live operator: three controllers over one shared [`Context`], each in its own file.
//! [`pod`] opens DiagnosticReports for failing Pods the DebugPolicies select; [`report`] runs the
//! state machine `Analyzing → AwaitingApproval → Approved → Applied → Resolved | Unresolved` (or
//! `Rejected`, `NoFix`, `Failed`); [`policy_status`] says in each DebugPolicy whether it is in
//! force. State lives in status, so a restart resumes where it stopped. This file holds what they
//! share and [`run`], which wires them to their watches.

pub mod alert;
pub mod creators;
pub mod fairness;
pub mod openings;
pub mod pod;
pub mod policy_status;
pub mod provenance;
pub mod report;
pub mod scope;

pub use pod::reconcile_pod;
pub use report::reconcile_report;

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};

use crate::agent::{Brain, Budget};
use crate::cluster::{Cluster, LiveCluster};
use crate::crd::{DebugPolicy, DiagnosticReport};
use crate::plugin::PluginRegistry;
use crate::policy::PolicySet;
use crate::telemetry::{ControllerLabel, Metrics, Readiness};

/// The field manager of every write the operator makes: status (server-side apply) and patches.
pub const FIELD_MANAGER: &str = "sre-operator";

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
    /// The error's kind as a Prometheus label (`reconcile_errors_total{error=...}`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Cluster(_) => "cluster",
            Error::Other(_) => "other",
        }
    }

    /// The error's kind as a Kubernetes Event reason (PascalCase), never a `Debug` string.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubernetesApiError",
            Error::Cluster(_) => "ClusterReadError",
            Error::Other(_) => "ReconcileError",
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
    /// Investigations one namespace may run at once (`--namespace-concurrency`).
    pub namespace_concurrency: usize,
    /// How long a rollout may take before an applied report is Unresolved.
    pub verify_timeout: Duration,
    /// How long an init container may run before its Pod is reported (`--init-timeout`).
    pub init_timeout: Duration,
    /// How long finished reports are kept.
    pub retention: Duration,
    /// Model tokens per hour across all investigations (`--max-tokens-per-hour`).
    pub hourly_tokens: Arc<crate::agent::hourly::HourlyTokens>,
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub cluster: Arc<dyn Cluster>,
    /// `cluster` with owner and Namespace reads reused for a few seconds, and ReplicaSets and
    /// Deployments answered from a watch of their identity and ownership fields only
    /// ([`RecentReads`]): for opening reports and knowing whose they are, never for what leads
    /// to a write or needs an owner's spec.
    ///
    /// [`RecentReads`]: crate::cluster::RecentReads
    pub recent: Arc<dyn Cluster>,
    /// The failing Pods the Pod watch keeps (trimmed: no env values), as it last saw them.
    pub pods: Store<scope::StoredPod>,
    pub policies: Store<DebugPolicy>,
    /// `policies` compiled, once per change.
    pub compiled: scope::CompiledPolicies,
    pub plugins: Arc<PluginRegistry>,
    pub brain: Arc<dyn Brain>,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Whether this replica holds the lease; only the leader writes.
    pub leader: tokio::sync::watch::Receiver<bool>,
    /// Investigation slots per namespace (half of `concurrency`).
    pub slots: Arc<fairness::NamespaceSlots>,
    /// Finished investigations whose status write failed, by report UID: written on the next
    /// reconcile instead of investigating (and paying a model) again.
    pub unwritten:
        std::sync::Mutex<std::collections::HashMap<String, crate::crd::DiagnosticReportStatus>>,
    /// Reports that share a cause, investigated once (the leader's memory).
    pub incidents: crate::incident::Incidents,
    /// Every DiagnosticReport as the report watch last saw it: whether a workload already has
    /// its report is looked up here, not asked of the API server for each of its Pods.
    pub reports: Store<DiagnosticReport>,
    /// The Pod controller's memory of resolved workloads and reports being opened.
    pub openings: openings::Openings,
    /// Reports whose owner was found live lately (`provenance::opened_by_us_remembered`).
    pub checked_owners: provenance::CheckedOwners,
    /// Tells the webhook a report's policy names about its phases (`spec.notify`).
    pub notifier: Option<Arc<crate::notify::Notifier>>,
}

/// What an Event is recorded on. The Pod always (`kubectl describe pod` tells the story); the
/// report too for what a person reads or acts on there. A report's opening, and an incident
/// member with nothing to decide, are told on the Pod only: in a burst of 200 workloads on one
/// cause, Events on both were 4 requests per report.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Regarding {
    ReportAndPod,
    Pod,
}

/// Alertmanager's webhook payloads, queued by [`crate::alerts::AlertInbox`], and how alert names
/// map to failure classes.
pub struct AlertFeed {
    pub queue: tokio::sync::mpsc::Receiver<Vec<crate::alerts::Alert>>,
    pub classes: crate::alerts::AlertClasses,
}

impl Context {
    fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// The cached DebugPolicy a report names in `spec.policy`, if it still exists.
    fn policy(&self, name: &str) -> Option<Arc<DebugPolicy>> {
        crate::policy::by_name(self.policies.state(), name)
    }

    fn policy_set(&self) -> Arc<PolicySet> {
        self.compiled.current(&self.policies, |policies| {
            // A policy that does not compile is skipped (and said so), the others stay in force.
            let valid: Vec<DebugPolicy> = policies
                .iter()
                .filter(|p| match crate::policy::CompiledPolicy::compile(p) {
                    Ok(_) => true,
                    // Said once per policy generation in the policy's status (policy_status).
                    Err(e) => {
                        tracing::debug!(policy = %p.name_any(), error = %e, "ignoring an invalid DebugPolicy");
                        false
                    }
                })
                .map(|p| (**p).clone())
                .collect();
            PolicySet::compile(&valid).unwrap_or_default()
        })
    }

    async fn event(
        &self,
        report: &DiagnosticReport,
        regarding: Regarding,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = KubeEvent {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: reason.into(),
            secondary: None,
        };
        // On the report and on the Pod it is about, so `kubectl describe pod` tells the story too
        // (for a Pod never created, on the controller that asks for it).
        let (api_version, kind) = match report.spec.failure.class {
            crate::crd::FailureClass::FailedCreate => {
                let kind = crate::failure::creator_kind(&report.spec.workload.kind);
                let group = if kind == crate::cluster::ResourceKind::Job {
                    "batch/v1"
                } else {
                    "apps/v1"
                };
                (group, kind.kind())
            }
            _ => ("v1", "Pod"),
        };
        let pod = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
            namespace: Some(report.spec.pod.namespace.clone()),
            name: Some(report.spec.pod.name.clone()),
            uid: Some(report.spec.pod.uid.clone()).filter(|u| !u.is_empty()),
            ..Default::default()
        };
        let on_report = (regarding == Regarding::ReportAndPod).then(|| report.object_ref(&()));
        for reference in on_report.into_iter().chain([pod]) {
            if let Err(e) = self.recorder.publish(&event, &reference).await {
                tracing::warn!(report = %report.name_any(), error = %e, "could not record an event");
            }
        }
    }
}

/// How a failed reconcile is retried, counted by controller and error.
fn error_policy<K>(controller: &'static str) -> impl Fn(Arc<K>, &Error, Arc<Context>) -> Action {
    move |_, error, ctx| {
        tracing::warn!(controller, reason = error.reason(), error = %error, "reconcile failed; retrying");
        ctx.metrics
            .reconcile_errors
            .get_or_create(&ControllerLabel {
                controller: controller.into(),
                error: error.metric_label().into(),
            })
            .inc();
        Action::requeue(Duration::from_secs(5))
    }
}

/// Runs the three controllers until a shutdown signal.
/// `reconcile` run in a `reconcile` span naming the object (and, for a report, the report: a
/// Pod's reconcile records the report it opens or joins).
fn spanned<K, F>(
    kind: &'static str,
    reconcile: impl Fn(Arc<K>, Arc<Context>) -> F,
) -> impl FnMut(Arc<K>, Arc<Context>) -> tracing::instrument::Instrumented<F>
where
    K: Resource,
    F: std::future::Future,
{
    move |object, ctx| {
        let name = object.name_any();
        let span = tracing::info_span!(
            crate::telemetry::traces::RECONCILE,
            kind,
            namespace = %object.namespace().unwrap_or_default(),
            name = %name,
            report = tracing::field::Empty,
        );
        if kind == "DiagnosticReport" {
            span.record("report", name.as_str());
        }
        tracing::Instrument::instrument(reconcile(object, ctx), span)
    }
}

pub async fn run(ctx_parts: RunParts) -> anyhow::Result<()> {
    let RunParts {
        client,
        plugins,
        brain,
        settings,
        metrics,
        readiness,
        leader,
        notifier,
        alerts,
    } = ctx_parts;
    let cluster: Arc<dyn Cluster> = Arc::new(LiveCluster::new(client.clone(), "the cluster"));
    // Owners are watched where Pods are: one namespace, or all.
    let (owners, owner_watches) = crate::cluster::WatchedOwners::watch(
        client.clone(),
        match settings.namespaces.as_slice() {
            [one] => Some(one.as_str()),
            _ => None,
        },
    );
    let recent: Arc<dyn Cluster> =
        Arc::new(crate::cluster::RecentReads::new(cluster.clone()).with_owners(owners));
    let (pod_reader, pod_writer) = reflector::store();
    let policies_api: Api<DebugPolicy> = Api::all(client.clone());
    let (policies, policy_writer) = reflector::store();
    let (policy_changed, policy_change) = tokio::sync::watch::channel(());
    let policy_changes = watcher(policies_api, watcher::Config::default())
        .default_backoff()
        .reflect(policy_writer)
        .touched_objects()
        .filter_map(|r| async move { r.ok() })
        .map(move |_| policy_changed.send_replace(()));
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    // Reports are stored without managedFields: the operator's status writes make them 1.7 of
    // the 5.6 MB the store held in the burst benchmark, and nothing reads them.
    let (reports_synced, report_writer) = reflector::store();
    // Whether the DebugPolicies were listed (false if their watch went away).
    let policies_known = {
        let store = policies.clone();
        async move { listed(&store).await }.boxed().shared()
    };
    // Reports are watched once the policies are known, as Pods are: before that a report's
    // policy cannot be told from a deleted one, and a restart would fail an approved report
    // ("policy no longer exists") or leave an auto-approved one waiting for its next change.
    let reports_api = Api::<DiagnosticReport>::all(client.clone());
    let report_events = futures::stream::once(policies_known.clone())
        .flat_map(move |_| {
            watcher(
                reports_api.clone(),
                watcher::Config::default().page_size(500),
            )
        })
        .modify(|report| report.managed_fields_mut().clear())
        .reflect(report_writer)
        .applied_objects();
    let reports = Controller::for_stream(report_events, reports_synced.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(settings.concurrency))
        .shutdown_on_signal();
    let ctx = Arc::new(Context {
        client: client.clone(),
        cluster,
        recent,
        pods: pod_reader.clone(),
        policies,
        compiled: Default::default(),
        plugins,
        brain,
        settings: settings.clone(),
        metrics,
        recorder,
        leader,
        slots: fairness::NamespaceSlots::new(settings.namespace_concurrency),
        unwritten: Default::default(),
        incidents: Default::default(),
        reports: reports_synced.clone(),
        openings: Default::default(),
        checked_owners: Default::default(),
        notifier,
    });
    let _alerts =
        alerts.map(|feed| tokio::spawn(alert::receive(ctx.clone(), feed.classes, feed.queue)));

    let pod_api: Api<Pod> = match settings.namespaces.as_slice() {
        [one] => Api::namespaced(client.clone(), one),
        _ => Api::all(client.clone()),
    };
    // `--namespace` bounds what is stored even when several namespaces mean watching all.
    let scope = if settings.namespaces.is_empty() {
        scope::PodScope::All
    } else {
        scope::PodScope::Namespaces(settings.namespaces.iter().cloned().collect())
    };
    // Only Pods that may be failing, in the watched namespaces, that a policy selects are stored
    // (`store_event`), listed in small pages: a page of full Pods is parsed before it is dropped.
    // The watch starts once the policies are known, or its first list would keep nothing.
    let filter_ctx = ctx.clone();
    let (watch_api, watch_scope) = (pod_api.clone(), scope.clone());
    let pod_watch = futures::stream::once(policies_known.clone())
        .flat_map(move |_| {
            watcher(
                watch_api.clone(),
                watcher::Config::default().page_size(pod::POD_PAGE_SIZE),
            )
            .default_backoff()
        })
        .try_filter_map(move |event| {
            let policies = filter_ctx.policy_set();
            let kept = pod::store_event(
                event,
                &scope::StoreScope {
                    namespaces: &watch_scope,
                    policies: &policies,
                },
            );
            async move { Ok(kept) }
        });
    let relist_ctx = ctx.clone();
    let relists = scope::relists(
        pod_api,
        pod_reader.clone(),
        scope,
        policies_known.clone(),
        move || relist_ctx.policy_set(),
        policy_change,
    )
    .map(Ok);
    let (stored, stored_pods) = (pod_reader.clone(), ctx.metrics.stored_pods.clone());
    let pod_stream = futures::stream::select(pod_watch, relists)
        .reflect(pod_writer)
        .inspect(move |_| {
            stored_pods.set(stored.len() as i64);
        })
        .applied_objects();
    let concurrency = settings.concurrency;
    let pods_synced = pod_reader.clone();
    let pods = Controller::for_stream(pod_stream, pod_reader)
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .reconcile_all_on(policy_changes)
        .shutdown_on_signal()
        .run(
            spanned("Pod", reconcile_pod),
            error_policy::<scope::StoredPod>("pod"),
            ctx.clone(),
        )
        .for_each(|_| async {});
    let reports = reports
        .run(
            spanned("DiagnosticReport", reconcile_report),
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
        spanned("DebugPolicy", policy_status::reconcile_policy),
        error_policy::<DebugPolicy>("policy"),
        ctx.clone(),
    )
    .for_each(|_| async {});
    // Ready once every watch has listed what it watches: a replica that took over before that
    // could miss a failing Pod or an approved report.
    let ready = async move {
        let synced = tokio::join!(
            listed(&pods_synced),
            policies_known,
            listed(&reports_synced)
        );
        if let (true, true, true) = synced {
            // The initial LIST parsed every Pod once and dropped most of them.
            crate::heap::release_freed();
            readiness.set(true);
            tracing::info!("caches synced; ready");
        }
    };
    // A burst of failures parses and drops thousands of objects on every thread, and glibc keeps
    // what was freed in its arenas: handed back every few seconds, RSS follows what is held
    // (the burst benchmark).
    let trimmer = tokio::spawn(async {
        let mut every = tokio::time::interval(TRIM_EVERY);
        loop {
            every.tick().await;
            let _ = tokio::task::spawn_blocking(crate::heap::release_freed).await;
        }
    });
    let refusals = creators::watch(ctx.clone());
    tracing::info!("controllers started");
    // The controllers end on SIGTERM; the FailedCreate and owner watches are dropped with them
    // (they never end by themselves, and a process that outlives its signal holds its Lease until SIGKILL).
    tokio::select! {
        _ = async { tokio::join!(pods, reports, policy_status, ready) } => {}
        _ = refusals => {}
        _ = owner_watches => {}
    }
    trimmer.abort();
    Ok(())
}

/// Whether the store's first list completed (false if its writer went away). A store's
/// `wait_until_ready` wakes only the last of several concurrent waiters (its readiness is a
/// oneshot behind a lock) and the controllers wait on the same stores, so the wait is re-polled.
pub(crate) async fn listed<K>(store: &Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        match tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready()).await {
            Ok(result) => return result.is_ok(),
            Err(_) => continue,
        }
    }
}

/// How often freed memory is handed back to the kernel.
const TRIM_EVERY: Duration = Duration::from_secs(5);

pub struct RunParts {
    pub client: Client,
    pub plugins: Arc<PluginRegistry>,
    pub brain: Arc<dyn Brain>,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
    pub leader: tokio::sync::watch::Receiver<bool>,
    pub notifier: Option<Arc<crate::notify::Notifier>>,
    pub alerts: Option<AlertFeed>,
}

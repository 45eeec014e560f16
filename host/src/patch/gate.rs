//! The one gate every write to a workload goes through: the operator's apply of an approved
//! patch and `kubectl sre rollback` alike. Nothing else in the operator patches a workload.
//!
//! [`prepare`] re-reads the target, recognises a replay, reviews the patch again (the foreign
//! target rule, the host's checks and every patch filter), applies it locally and guards it with
//! the resourceVersion it was checked against; [`send`] then runs a server-side dry run and the
//! patch. A [`Prepared`] can only come from [`prepare`], so a patch that skipped the checks cannot
//! be sent. Every way it can stop is a [`GateError`] variant, so callers say exactly why.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DynamicObject};
use serde_json::Value;

use super::apply::{self, WriteError};
use crate::cluster::{Cluster, ClusterError, LiveCluster, ResourceKind};
use crate::crd::{DiagnosticReport, PatchOperation, SuggestedPatch, Verdict};
use crate::plugin::{PluginSet, ReviewContext};

/// Why a patch was not applied.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The review (the foreign-target rule, the host's checks, a patch filter) refused it.
    #[error("denied by {filter}: {reason}")]
    Denied {
        filter: String,
        reason: String,
        /// The target's resourceVersion when it was reviewed, when it was read.
        target_version: Option<String>,
    },
    /// A patch filter would change the patch: what was approved is not what would be applied.
    #[error(
        "patch filter {filter} now rewrites the patch ({reason}); an approval covers the patch as it was read, so nothing was applied"
    )]
    Rewritten { filter: String, reason: String },
    /// The target changed so that the patch's `test` operations (or paths) no longer hold.
    #[error("the patch no longer applies to {target}: {reason}")]
    NoLongerApplies { target: String, reason: String },
    /// The target does not exist (any more).
    #[error("{target} does not exist")]
    TargetMissing { target: String },
    /// The target's kind is not one the operator reads.
    #[error("{0}")]
    UnknownKind(String),
    /// The target could not be read.
    #[error("cannot read {target}: {source}")]
    Read {
        target: String,
        source: ClusterError,
    },
    /// The API server's dry run refused the patch (admission, validation, a `test`): nothing
    /// was written.
    #[error("the API server's dry run rejected the patch: {0}")]
    DryRunRejected(kube::Error),
    /// The target moved between the read and the write (409): read again and retry.
    #[error("{target} changed between the read and the write")]
    Conflict { target: String },
    /// The API server refused the patch itself after a dry run that passed.
    #[error("the API server rejected the patch: {0}")]
    Rejected(kube::Error),
}

impl GateError {
    /// A short snake_case label for metrics and the report's failure reason.
    pub fn label(&self) -> &'static str {
        match self {
            GateError::Denied { .. } => "denied",
            GateError::Rewritten { .. } => "rewritten",
            GateError::NoLongerApplies { .. } => "no_longer_applies",
            GateError::TargetMissing { .. } => "target_missing",
            GateError::UnknownKind(_) => "invalid",
            GateError::Read { .. } => "unreadable",
            GateError::DryRunRejected(_) => "dry_run_rejected",
            GateError::Conflict { .. } => "conflict",
            GateError::Rejected(_) => "rejected",
        }
    }
}

/// How a replay after a restart is recognised: our own write on the target after the intent.
pub struct Replay<'a> {
    pub field_manager: &'a str,
    pub intent: &'a Time,
}

/// A patch checked against the live target and ready to send.
pub struct Prepared {
    kind: ResourceKind,
    namespace: String,
    name: String,
    /// The target as it was read and checked.
    pub target: Value,
    /// The operations as reviewed (never a filter's rewrite).
    pub operations: Vec<PatchOperation>,
    /// The target with the patch applied locally.
    pub patched: Value,
    /// The resourceVersion the patch is guarded by.
    pub resource_version: String,
    /// The filters that allowed it.
    pub allowed_by: String,
    guarded: json_patch::Patch,
}

/// What [`prepare`] found.
pub enum Checked {
    /// Ready to [`send`].
    Ready(Box<Prepared>),
    /// The target already holds the patch (a replay after a restart): nothing to send.
    AlreadyApplied { target: Value },
}

/// `Kind namespace/name` of a suggestion's target.
pub fn target_label(suggestion: &SuggestedPatch) -> String {
    let t = &suggestion.target;
    format!("{} {}/{}", t.kind, t.namespace, t.name)
}

/// Re-reads the target, recognises a replay, reviews the patch (foreign target, host checks,
/// filters; a rewrite is refused), applies it locally and guards it with the resourceVersion.
pub async fn prepare(
    client: &kube::Client,
    cluster: &dyn Cluster,
    plugins: &PluginSet,
    report: &DiagnosticReport,
    suggestion: &SuggestedPatch,
    context: ReviewContext,
    replay: Option<Replay<'_>>,
) -> Result<Checked, GateError> {
    let label = target_label(suggestion);
    if let Some(reason) = super::foreign_target(report, suggestion) {
        return Err(GateError::Denied {
            filter: super::HOST_FILTER.into(),
            reason,
            target_version: None,
        });
    }
    let kind: ResourceKind = suggestion
        .target
        .kind
        .parse()
        .map_err(GateError::UnknownKind)?;
    let target = match cluster
        .get(
            kind,
            Some(&suggestion.target.namespace),
            &suggestion.target.name,
        )
        .await
    {
        Ok(Some(t)) => (*t).clone(),
        Ok(None) => return Err(GateError::TargetMissing { target: label }),
        Err(source) => {
            return Err(GateError::Read {
                target: label,
                source,
            });
        }
    };
    if apply::already_applied(&target, &suggestion.patch) {
        return Ok(Checked::AlreadyApplied { target });
    }
    if let Some(replay) = replay {
        // The cluster reader drops managedFields: read them from the API.
        crate::names::check_name(
            kind,
            "status.suggestedPatch.target.name",
            &suggestion.target.name,
        )
        .map_err(|e| GateError::Read {
            target: label.clone(),
            source: e.into(),
        })?;
        let api =
            LiveCluster::new(client.clone(), "").api(kind, Some(&suggestion.target.namespace));
        let live = api
            .get_opt(&suggestion.target.name)
            .await
            .map_err(|e| GateError::Read {
                target: label.clone(),
                source: e.into(),
            })?;
        if live.is_some_and(|o| apply::written_by_since(&o, replay.field_manager, replay.intent)) {
            return Ok(Checked::AlreadyApplied { target });
        }
    }
    let (verdict, rewritten) = super::review(plugins, cluster, suggestion, context).await;
    match verdict.verdict {
        Verdict::Denied => {
            return Err(GateError::Denied {
                filter: verdict.filter,
                reason: verdict.reason.unwrap_or_default(),
                target_version: target["metadata"]["resourceVersion"]
                    .as_str()
                    .map(String::from),
            });
        }
        Verdict::Rewritten | Verdict::Allowed if rewritten.is_some() => {
            return Err(GateError::Rewritten {
                filter: verdict.filter,
                reason: verdict.reason.unwrap_or_default(),
            });
        }
        _ => {}
    }
    let patched = super::apply_to(&target, &suggestion.patch).map_err(|reason| {
        GateError::NoLongerApplies {
            target: label.clone(),
            reason,
        }
    })?;
    let resource_version = target["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let guarded =
        apply::guarded_by_version(&suggestion.patch, &resource_version).map_err(|reason| {
            GateError::NoLongerApplies {
                target: label.clone(),
                reason,
            }
        })?;
    Ok(Checked::Ready(Box::new(Prepared {
        kind,
        namespace: suggestion.target.namespace.clone(),
        name: suggestion.target.name.clone(),
        target,
        operations: suggestion.patch.clone(),
        patched,
        resource_version,
        allowed_by: verdict.filter,
        guarded,
    })))
}

/// Sends a prepared patch: a server-side dry run, then the patch under `field_manager`, guarded
/// by the resourceVersion it was checked against. Returns the object the server stored.
pub async fn send(
    client: &kube::Client,
    prepared: &Prepared,
    field_manager: &str,
) -> Result<DynamicObject, GateError> {
    let api: Api<DynamicObject> =
        LiveCluster::new(client.clone(), "").api(prepared.kind, Some(&prepared.namespace));
    let conflict = || GateError::Conflict {
        target: format!("{} {}/{}", prepared.kind, prepared.namespace, prepared.name),
    };
    // The guard's `test` of the resourceVersion fails (422) when the target changed since the
    // read, as a Deployment's status does while its Pods crash-loop, before the dry run or
    // between it and the patch: that is a conflict to retry after a new read and review, not a
    // refusal.
    let moved = || async {
        api.get(&prepared.name).await.ok().is_some_and(|now| {
            now.metadata.resource_version.as_deref() != Some(prepared.resource_version.as_str())
        })
    };
    match apply::dry_run_then_patch(&api, &prepared.name, &prepared.guarded, field_manager).await {
        Ok(stored) => Ok(stored),
        Err(WriteError::DryRun(e)) => Err(if moved().await {
            conflict()
        } else {
            GateError::DryRunRejected(e)
        }),
        Err(WriteError::Patch(kube::Error::Api(s))) if s.code == 409 => Err(conflict()),
        Err(WriteError::Patch(kube::Error::Api(s))) if s.code == 422 && moved().await => {
            Err(conflict())
        }
        Err(WriteError::Patch(e)) => Err(GateError::Rejected(e)),
    }
}

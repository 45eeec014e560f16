//! `rollback`: the operator's recorded rollback patch, sent through the one gate the operator's
//! applies go through ([`crate::patch::gate`]): re-read the target, review the patch with the
//! patch-filters, check it applies, a server-side dry run, then the patch guarded by the
//! resourceVersion. Recorded on the report as an Event.

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde_json::Value;

use super::render::{for_diff, yaml_diff};
use super::{FIELD_MANAGER, Io, Result, RollbackArgs, api_error, failed};
use crate::cluster::{Cluster, LiveCluster, ResourceKind};
use crate::crd::{Phase, SuggestedPatch};
use crate::patch::gate;
use crate::plugin::{PluginSet, Runtime};

/// The patch-filters that review the rollback: those of `--plugins DIR`, else the built-ins.
async fn load_plugins(args: &RollbackArgs, io: &mut Io<'_>) -> Result<PluginSet> {
    let dir = args.plugins.clone();
    let set = tokio::task::spawn_blocking(move || -> Result<PluginSet, String> {
        let runtime = Runtime::new(Runtime::default_cache_dir()).map_err(|e| e.to_string())?;
        match dir {
            Some(dir) => PluginSet::from_dir(&runtime, &dir),
            None => Ok(PluginSet::builtin(&runtime)),
        }
    })
    .await
    .map_err(|e| failed(format!("loading the plugins failed: {e}")))?
    .map_err(|e| failed(format!("cannot load the patch-filter plugins: {e}")))?;
    for refusal in set.refusals() {
        writeln!(
            io.err,
            "warning: plugin {} refused: {}",
            refusal.plugin, refusal.reason
        )?;
    }
    Ok(set)
}

/// How often the checks and the write are tried when the target's version moves under them.
const ATTEMPTS: u32 = 3;

fn resource_version(object: &Value) -> String {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The target as it is now (managedFields removed), or `None` when it does not exist.
async fn read_live(
    cluster: &LiveCluster,
    kind: ResourceKind,
    namespace: &str,
    name: &str,
    label: &str,
) -> Result<Option<Value>> {
    let object = cluster
        .get(kind, Some(namespace), name)
        .await
        .map_err(|e| match e {
            crate::cluster::ClusterError::Api(e) => api_error(
                e,
                &format!("cannot read {label}"),
                &format!("get {} in namespace {namespace}", kind.plural()),
                |_| format!("{label} does not exist"),
            ),
            e => failed(format!("cannot read {label}: {e}")),
        })?;
    Ok(object.map(|o| (*o).clone()))
}

pub(super) async fn rollback(
    client: &Client,
    namespace: &str,
    args: &RollbackArgs,
    io: &mut Io<'_>,
) -> Result<()> {
    let name = &args.name;
    let object = format!("diagnosticreport {namespace}/{name}");
    let report = super::reports::get_report(client, namespace, name).await?;
    let status = report.status.clone().unwrap_or_default();
    if !matches!(
        status.phase,
        Some(Phase::Applied | Phase::Resolved | Phase::Unresolved)
    ) {
        return Err(failed(format!(
            "cannot roll back {object}: it is {}; only a report whose patch was applied \
             (Applied, Resolved or Unresolved) has something to roll back",
            status
                .phase
                .map(|p| format!("{p:?}"))
                .unwrap_or_else(|| "without a phase".into())
        )));
    }
    let rollback = status
        .apply
        .as_ref()
        .map(|a| a.rollback_patch.clone())
        .unwrap_or_default();
    if rollback.is_empty() {
        return Err(failed(format!(
            "cannot roll back {object}: it has no status.apply.rollbackPatch (the operator records \
             one when it applies a patch); undo the change by hand with kubectl patch"
        )));
    }
    let Some(applied) = status.suggested_patch.clone() else {
        return Err(failed(format!(
            "cannot roll back {object}: it does not say which object its patch targeted \
             (no status.suggestedPatch)"
        )));
    };
    let target = applied.target.clone();
    let target_label = format!("{} {}/{}", target.kind, target.namespace, target.name);
    let kind: ResourceKind = target
        .kind
        .parse()
        .map_err(|e: String| failed(format!("cannot roll back {object}: {e}")))?;

    let cluster = LiveCluster::new(client.clone(), "the cluster");
    let rbac = format!("patch {} in namespace {}", kind.plural(), target.namespace);
    let plugins = load_plugins(args, io).await?;
    let suggestion = SuggestedPatch {
        target: target.clone(),
        patch: rollback.clone(),
        explanation: format!("roll back the patch {object} applied"),
    };
    let mut attempt = 0;
    let (patched, operations) = loop {
        attempt += 1;
        // The one gate the operator's applies go through: re-read, review, local apply,
        // resourceVersion guard; then a dry run and the patch.
        let checked = gate::prepare(
            client,
            &cluster,
            &plugins,
            &report,
            &suggestion,
            crate::patch::review_context(&report, status.brain.as_ref()),
            None,
        )
        .await;
        let prepared = match checked {
            Ok(gate::Checked::Ready(p)) => p,
            Ok(gate::Checked::AlreadyApplied { .. }) => {
                writeln!(
                    io.out,
                    "{target_label} already holds the values from before {object} patched it: nothing to roll back"
                )?;
                return Ok(());
            }
            Err(gate::GateError::Denied { filter, reason, .. }) => {
                return Err(failed(format!(
                    "the rollback of {target_label} was Denied by {filter}: {reason}; nothing was changed"
                )));
            }
            Err(gate::GateError::NoLongerApplies { reason, .. }) => {
                return Err(failed(format!(
                    "the rollback patch no longer applies to {target_label}: {reason}; it changed after \
                     {object} was applied (`kubectl sre show {name} -n {namespace}` shows how)"
                )));
            }
            Err(gate::GateError::TargetMissing { .. }) => {
                return Err(failed(format!(
                    "cannot roll back {object}: {target_label} does not exist any more"
                )));
            }
            Err(e) => {
                return Err(failed(format!(
                    "cannot roll back {object}: {e}; nothing was changed"
                )));
            }
        };
        let version = prepared.resource_version.clone();
        if attempt == 1 {
            writeln!(
                io.out,
                "Rolling back {target_label} puts back what it held before {object} applied its \
                 patch: {} operation(s), guarded by resourceVersion {version}, sent as a \
                 server-side dry run first. Safety verdict: Allowed by {}.",
                prepared.operations.len(),
                prepared.allowed_by
            )?;
            let keep_status = prepared
                .operations
                .iter()
                .any(|o| o.path.starts_with("/status"));
            let diff = yaml_diff(
                &for_diff(&prepared.target, keep_status),
                &for_diff(&prepared.patched, keep_status),
                &format!("{target_label} live (resourceVersion {version})"),
                &format!("{target_label} rolled back"),
            );
            for line in diff.lines() {
                writeln!(io.out, "  {line}")?;
            }
            if !args.yes {
                let yes = (io.confirm)("Roll back?")
                    .map_err(|e| failed(format!("cannot read the answer: {e}")))?;
                if !yes {
                    return Err(failed(format!(
                        "not confirmed: {target_label} is unchanged (--yes skips the question)"
                    )));
                }
            }
        }
        match gate::send(client, &prepared, FIELD_MANAGER).await {
            Ok(patched) => break (patched, prepared.operations.clone()),
            Err(e) => {
                // Its controller updates a workload's status all the time: when the version
                // moved under us, check everything again against the new one, as the operator
                // does after a conflict.
                let moved = read_live(
                    &cluster,
                    kind,
                    &target.namespace,
                    &target.name,
                    &target_label,
                )
                .await
                .ok()
                .flatten()
                .is_some_and(|now| resource_version(&now) != version);
                if moved && attempt < ATTEMPTS {
                    continue;
                }
                return Err(match e {
                    gate::GateError::DryRunRejected(e) => api_error(
                        e,
                        &format!(
                            "the API server's dry run rejected the rollback of {target_label}; nothing was changed"
                        ),
                        &rbac,
                        |_| format!("{target_label} was deleted; nothing was changed"),
                    ),
                    gate::GateError::Conflict { .. } if moved => failed(format!(
                        "{target_label} kept changing while the rollback was sent; nothing \
                         was changed: run `kubectl sre rollback {name} -n {namespace}` again"
                    )),
                    gate::GateError::Rejected(e) => api_error(
                        e,
                        &format!("the API server rejected the rollback of {target_label}"),
                        &rbac,
                        |_| format!("{target_label} was deleted; nothing was changed"),
                    ),
                    e => failed(format!("the rollback of {target_label} failed: {e}")),
                });
            }
        }
    };
    let resource = match kind.api_version().split_once('/') {
        Some((group, _)) => format!("{}.{group}", kind.kind().to_ascii_lowercase()),
        None => kind.kind().to_ascii_lowercase(),
    };
    writeln!(
        io.out,
        "{resource}/{} rolled back (resourceVersion {})",
        target.name,
        patched.resource_version().unwrap_or_default()
    )?;

    // The report's story: an Event on it, as the operator records its own steps.
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance: None,
        },
    );
    let event = Event {
        type_: EventType::Normal,
        reason: "RolledBack".into(),
        note: Some(format!(
            "{target_label} rolled back with the recorded rollbackPatch ({} operation(s)) by kubectl sre",
            operations.len()
        )),
        action: "Rollback".into(),
        secondary: Some(k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(target.api_version.clone()),
            kind: Some(target.kind.clone()),
            namespace: Some(target.namespace.clone()),
            name: Some(target.name.clone()),
            uid: patched.uid(),
            ..Default::default()
        }),
    };
    if let Err(e) = recorder.publish(&event, &report.object_ref(&())).await {
        writeln!(
            io.err,
            "warning: the rollback is done, but no Event was recorded on {object}: {e}"
        )?;
    }
    Ok(())
}

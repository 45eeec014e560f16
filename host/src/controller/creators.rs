//! Pods that are never created (`FailedCreate`): a ReplicaSet, DaemonSet, StatefulSet or Job
//! whose Pods the API server refuses (a ResourceQuota, Pod Security, a missing ServiceAccount,
//! a LimitRange, a webhook). No Pod fails, so the Pod watch never sees them; the controllers'
//! `FailedCreate` Events say so, and the API server selects those for the watch
//! (`reason=FailedCreate`), so the operator neither stores nor parses any other Event.
//!
//! A refusal is reported as the Pod its controller asks for ([`crate::failure::would_be_pod`]):
//! policies select it by the template's labels, and it opens its report as a failing Pod does.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Event;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};

use super::{Context, Result};
use crate::cluster::ResourceKind;
use crate::failure::{CREATORS, detect_failed_create};

/// Refusals handled at once: each costs a read of its controller.
const CONCURRENCY: usize = 4;

/// Watches the `FailedCreate` Events in the operator's namespaces until the stream ends.
pub async fn watch(ctx: Arc<Context>) {
    // A refusal read before the policies are would select nothing and be lost until its
    // controller next says it (its back-off reaches minutes).
    if !super::listed(&ctx.policies).await {
        return;
    }
    let api: Api<Event> = match ctx.settings.namespaces.as_slice() {
        [one] => Api::namespaced(ctx.client.clone(), one),
        _ => Api::all(ctx.client.clone()),
    };
    let config = watcher::Config::default().fields("reason=FailedCreate");
    watcher(api, config)
        .default_backoff()
        .applied_objects()
        .for_each_concurrent(CONCURRENCY, |event| {
            let ctx = ctx.clone();
            async move {
                match event {
                    Ok(event) => {
                        if let Err(e) = on_refusal(&ctx, &event).await {
                            tracing::warn!(error = %e, event = ?event.metadata.name, "could not act on a FailedCreate event");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "FailedCreate event watch failed; retrying"),
                }
            }
        })
        .await;
}

/// Opens the report for the refusal `event` records, if its controller still cannot create
/// its Pods and a policy selects them.
async fn on_refusal(ctx: &Context, event: &Event) -> Result<()> {
    if !ctx.is_leader() {
        return Ok(());
    }
    let o = &event.involved_object;
    let Some(kind) = o
        .kind
        .as_deref()
        .and_then(|k| k.parse::<ResourceKind>().ok())
        .filter(|k| CREATORS.contains(k))
    else {
        return Ok(());
    };
    let (Some(namespace), Some(name)) = (o.namespace.as_deref(), o.name.as_deref()) else {
        return Ok(());
    };
    let watched = &ctx.settings.namespaces;
    if !watched.is_empty() && !watched.iter().any(|w| w == namespace) {
        return Ok(());
    }
    // The names come from an Event, which anyone who may write Events can write: the read
    // checks them before they reach a URL, and one that fails the check is dropped.
    let Ok(Some(creator)) = ctx.cluster.get(kind, Some(namespace), name).await else {
        return Ok(());
    };
    // A namesake created after the event is another object.
    if let (Some(want), Some(have)) = (o.uid.as_deref(), creator["metadata"]["uid"].as_str())
        && want != have
    {
        return Ok(());
    }
    let Some((pod, detection)) = detect_failed_create(&creator, std::slice::from_ref(event)) else {
        return Ok(());
    };
    let policies = ctx.policy_set();
    if !policies.selects_pod(&pod) {
        return Ok(());
    }
    let workload = ctx.openings.workload(ctx.cluster.as_ref(), &pod).await?;
    super::pod::open_for(ctx, &policies, &pod, &workload, detection, None).await
}

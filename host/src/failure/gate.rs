//! The Pod gate: a cheap look at a Pod's status, before its events are read, that says whether
//! it may be failing. The operator stores and reconciles only Pods that pass it (most Pods are
//! healthy), so it must pass every Pod [`super::detect`] finds a failure on: a superset of
//! detection, which the tests check over every Pod the fixture dump and the scenarios hold.

use k8s_openapi::api::core::v1::Pod;

/// Whether `pod` may be failing: false only when its status rules out every failure class.
pub fn may_be_failing(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    if matches!(status.phase.as_deref(), Some("Succeeded")) {
        return false;
    }
    if super::eviction::ended_by_its_node(pod).is_some() || super::eviction::lost_with_its_node(pod)
    {
        return true;
    }
    let unscheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_none();
    if unscheduled && status.phase.as_deref() == Some("Pending") {
        return true;
    }
    // Every Pod starts like this for a moment; one whose volume never mounts stays so. The
    // controller reads its events only once it has been starting for `STUCK_AFTER`.
    if super::starting::starting(pod) {
        return true;
    }
    let statuses = status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten());
    // A Pod that failed for good: a container that exited with an error is its failure.
    let failed = super::failed_for_good(pod);
    statuses.into_iter().any(|cs| {
        let exited_with_error = cs
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.exit_code != 0);
        if failed && exited_with_error {
            return true;
        }
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
        // A container its liveness probe killed (SIGTERM 143, or SIGKILL 137 after the grace
        // period) may be ready again by the time its Pod is read: detection still reports it
        // from its last state and events. A ready container that once crashed otherwise is not
        // stored.
        let killed = cs
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| matches!(t.exit_code, 137 | 143));
        oom || (cs.restart_count > 0 && killed)
            || !cs.ready
                && (cs.restart_count > 0
                    || waiting.is_some_and(|w| w != "ContainerCreating" && w != "PodInitializing")
                    || cs.state.as_ref().is_some_and(|s| s.running.is_some()))
    })
}

/// Whether `pod` waits for the scheduler's first verdict: Pending, on no node, and without a
/// `PodScheduled` condition. Every new Pod passes through this for a moment (a burst of a
/// thousand Pods is a thousand of them); its events cannot say anything yet, and the
/// scheduler's verdict (`PodScheduled=False` with its FailedScheduling event, or a node) comes
/// as a status change, which is reconciled.
pub fn awaits_scheduler(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return true;
    };
    status.phase.as_deref().is_none_or(|p| p == "Pending")
        && pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_none()
        && !status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "PodScheduled")
}

#[cfg(test)]
mod tests;

//! The OOMKilled playbook: raise the memory limit, capped by the largest node and a ceiling of our
//! own. With Prometheus (the `container_memory_history` tool) the new limit is the observed
//! working-set peak plus headroom, and a working set that climbs steadily in every run is called a
//! leak, the raise offered only as a stop-gap; without it, twice the old limit. Either way above a
//! JVM heap the settings or log name, and the report says which sizing it used. Without
//! Prometheus, a run that lasted hours before the kill while a memory figure the application logs
//! climbed steadily (climb.rs) is called a leak the same way.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::json;

use super::climb::memory_climb;
use super::workload::{fixed, guarded_replace, workload_template};
use super::{AgentError, Case, Conclusion, Session};
use super::{answer, failed_run_is_previous, failure_container, findings, no_fix, pod_container};
use super::{container_status, memory_limit, memory_request};
use crate::cluster::{NodeUsage, format_bytes, memory_bytes};
use tool_shapes::{ContainerMemory, MemoryHistory};

/// How much the memory limit grows after an OOM kill.
pub const OOM_FACTOR: i64 = 2;
/// The highest limit the rules brain suggests; the patch-safety filter has its own ceiling.
const OOM_CEILING: i64 = 8 << 30;
/// Headroom over an observed peak, in quarters (5/4: 25% more).
const PEAK_HEADROOM_QUARTERS: i64 = 5;
/// The window of history read from Prometheus.
const HISTORY_MINUTES: u32 = 60;
/// A peak below this share of the limit did not reach it: the allocation that killed the
/// container fell between scrapes, and the peak says nothing about the size needed.
const PEAK_REACHED_LIMIT: f64 = 0.9;
/// A killed run at least this long grew into its limit: it did not need that much at start. A
/// leak that kills only this rarely gets no larger limit: the restart is its own stop-gap, and a
/// larger limit would only move the next kill later, holding memory the node reserves.
const LONG_RUN_SECONDS: i64 = 60 * 60;

/// What Prometheus says of the container's memory.
enum Observed {
    /// No `container_memory_history` tool is loaded.
    NotConfigured,
    /// The tool ran and could not help; why.
    NoData(String),
    Peak {
        memory: ContainerMemory,
        query: String,
    },
}

fn mib_per_minute(bytes: f64) -> String {
    format!("{:.1} MiB/min", bytes / (1u64 << 20) as f64)
}

/// Asks Prometheus for the container's working set over the last hour, when it is configured.
async fn observed_memory(
    s: &mut Session,
    pod: &str,
    container: &str,
) -> Result<Observed, AgentError> {
    if !s.has_tool("container_memory_history") {
        return Ok(Observed::NotConfigured);
    }
    let outcome = s
        .act(
            format!("Prometheus is configured: it has container {container}'s working set."),
            "Size the new limit from the observed peak rather than by doubling, and see whether the memory climbs like a leak.",
            "container_memory_history",
            json!({"pod": pod, "container": container, "minutes": HISTORY_MINUTES}),
        )
        .await?;
    if !outcome.ok {
        return Ok(Observed::NoData(format!(
            "container_memory_history failed: {}",
            outcome.text.lines().next().unwrap_or_default()
        )));
    }
    let Some(history) = answer::<MemoryHistory>(&outcome) else {
        return Ok(Observed::NoData(
            "container_memory_history answered in an unexpected shape".into(),
        ));
    };
    let query = history.queries.first().cloned().unwrap_or_default();
    match history
        .containers
        .into_iter()
        .find(|c| c.container == container && c.peak_bytes > 0.0)
    {
        Some(memory) => Ok(Observed::Peak { memory, query }),
        None => Ok(Observed::NoData(format!(
            "Prometheus has no working-set samples for container {container} in the last {HISTORY_MINUTES} minutes"
        ))),
    }
}

/// A JVM's maximum heap flag, `-Xmx768m`.
static HEAP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-Xmx(\d+)([kKmMgG])").expect("static regex"));

/// What to do about a leak that `growth` describes.
fn fix_the_leak(container: &str, growth: &str) -> String {
    format!(
        "Find and fix the leak: container {container}'s {growth} (a heap profile or the application's own memory metrics show what grows; a release that started it can be rolled back)."
    )
}

/// How long the run the kernel killed for memory lasted, from the container's status.
fn killed_run_seconds(case: &Case, container: &str) -> Option<i64> {
    let status = container_status(case, container)?;
    [status.state.as_ref(), status.last_state.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|s| s.terminated.as_ref())
        .find(|t| t.reason.as_deref() == Some("OOMKilled"))
        .and_then(|t| {
            Some(t.finished_at.as_ref()?.0.as_second() - t.started_at.as_ref()?.0.as_second())
        })
}

/// Rounds up to a multiple of 64Mi, so that a suggested limit reads like one a person writes.
pub(super) fn mebibytes_rounded_up(bytes: i64) -> i64 {
    let mi = 1 << 20;
    ((bytes + 64 * mi - 1) / (64 * mi)) * 64 * mi
}

/// Bytes as a quantity in whole Gi, or else whole Mi.
pub(super) fn as_quantity(bytes: i64) -> String {
    if bytes % (1 << 30) == 0 {
        format!("{}Gi", bytes >> 30)
    } else {
        format!("{}Mi", bytes >> 20)
    }
}

pub(super) async fn oom_killed(case: &Case, s: &mut Session) -> Result<Conclusion, AgentError> {
    let container = failure_container(case);
    let pod = case.report.spec.pod.name.clone();
    let mut evidence: Vec<String> = case
        .report
        .spec
        .failure
        .evidence
        .iter()
        .take(4)
        .cloned()
        .collect();
    let spec = pod_container(case, &container);
    let limit_q = memory_limit(spec);
    let request_q = memory_request(spec);
    let Some(limit_q) = limit_q else {
        return Ok(no_fix(
            format!("Container {container} was OOM-killed without a memory limit."),
            "The node ran out of memory and the kernel killed the container; it has no limit of its own.".into(),
            evidence,
            "Set a memory request and limit that match the application's use.".into(),
        ));
    };
    let limit = memory_bytes(&limit_q).unwrap_or(0);
    let logs = s
        .act(
            format!(
                "Container {container} was killed for exceeding its {} memory limit.",
                limit_q.0
            ),
            "The last run's log may show what used the memory (a heap setting, a large batch).",
            "fetch_logs",
            json!({"pod": pod, "container": container, "previous": failed_run_is_previous(case, &container), "lines": 50}),
        )
        .await?;
    let settings_text = spec
        .map(|c| {
            let mut t: Vec<String> = c
                .args
                .iter()
                .flatten()
                .chain(c.command.iter().flatten())
                .cloned()
                .collect();
            t.extend(c.env.iter().flatten().filter_map(|e| e.value.clone()));
            t.join(" ")
        })
        .unwrap_or_default();
    let heap = HEAP
        .captures(&format!("{settings_text}\n{}", logs.text))
        .map(|c| {
            let n: i64 = c[1].parse().unwrap_or(0);
            let unit = match c[2].to_ascii_lowercase().as_str() {
                "k" => 1 << 10,
                "m" => 1 << 20,
                _ => 1 << 30,
            };
            (n * unit, format!("-Xmx{}{}", &c[1], &c[2]))
        });
    let mut root_cause = format!(
        "Container {container} uses more memory than its {} limit, and the kernel kills it (exit 137, OOMKilled).",
        limit_q.0
    );
    let doubled = format!("{OOM_FACTOR}x the old limit");
    let (mut wanted, mut basis) = (limit * OOM_FACTOR, doubled.clone());
    // How the memory grows, for the stop-gap's recommendation, once a leak is seen.
    let mut leak: Option<String> = None;
    match observed_memory(s, &pod, &container).await? {
        Observed::NotConfigured => evidence.push(format!(
            "sizing: {doubled} (Prometheus is not configured: no container_memory_history tool)"
        )),
        Observed::NoData(why) => evidence.push(format!("sizing: {doubled} ({why})")),
        Observed::Peak { memory, query } => {
            let peak = memory.peak_bytes as i64;
            evidence.push(format!(
                "Prometheus: container {container}'s working set peaked at {} in the last {HISTORY_MINUTES} minutes (query: {query})",
                format_bytes(peak)
            ));
            if memory.peak_bytes >= PEAK_REACHED_LIMIT * limit as f64 {
                wanted = peak * PEAK_HEADROOM_QUARTERS / 4;
                basis = format!(
                    "the observed working-set peak {} (Prometheus, last {HISTORY_MINUTES} minutes) plus 25% headroom",
                    format_bytes(peak)
                );
                evidence.push(format!("sizing: {basis}"));
            } else {
                evidence.push(format!(
                    "sizing: {doubled} (the observed peak {} is below the {} limit: the allocation that killed the container fell between scrapes)",
                    format_bytes(peak),
                    limit_q.0
                ));
            }
            if let Some(l) = &memory.leak {
                evidence.push(format!(
                    "Prometheus: the working set climbs steadily in {} of {} runs, {} (median), until the kill",
                    l.climbing,
                    l.judged,
                    mib_per_minute(l.slope_bytes_per_minute)
                ));
                root_cause = format!(
                    "Container {container}'s memory climbs steadily in every run ({}) until it passes the {} limit and is OOM-killed: a leak. A larger limit only delays the kill.",
                    mib_per_minute(l.slope_bytes_per_minute),
                    limit_q.0
                );
                leak = Some(format!(
                    "working set grows about {} in every run",
                    mib_per_minute(l.slope_bytes_per_minute)
                ));
            }
        }
    }
    let long_run = killed_run_seconds(case, &container)
        .filter(|ran| *ran >= LONG_RUN_SECONDS)
        .map(|ran| crate::kubectl_sre::age(k8s_openapi::jiff::SignedDuration::from_secs(ran)));
    if let Some(ran) = &long_run {
        evidence.push(format!(
            "the killed run lasted {ran}: the memory grew into the limit during the run, it was not short at start"
        ));
        // A figure the application prints about its own memory, in the killed run's log or (a
        // dump has only the current log) the run after it: the same container either way.
        if let Some(climb) = memory_climb(&logs.text).filter(|_| leak.is_none()) {
            let what = if climb.goroutines {
                "goroutine count"
            } else {
                "memory"
            };
            evidence.push(format!(
                "the application's own figures in its log climb steadily: {}",
                climb.describe()
            ));
            root_cause = format!(
                "Container {container}'s {what} climbs steadily through each run (its log: {}) until it passes the {} limit and is OOM-killed after {ran}: a leak. A larger limit only delays the kill.",
                climb.describe(),
                limit_q.0
            );
            leak = Some(format!(
                "{what} climbs steadily through each {ran} run ({})",
                climb.describe()
            ));
        }
    }
    if let Some((heap_bytes, flag)) = &heap {
        evidence.push(format!("the JVM is configured with {flag}"));
        if *heap_bytes >= limit {
            root_cause = format!(
                "The JVM heap ({flag}) alone is larger than the container's {} memory limit, so the container is OOM-killed as the heap grows.",
                limit_q.0
            );
            wanted = wanted.max(heap_bytes + heap_bytes / 4);
            basis = format!("{basis}, above the JVM heap");
            // A heap allowed past the limit climbs until the kill by design: not a leak.
            if leak.take().is_some() {
                evidence.push(format!(
                    "the climb is the JVM heap growing toward {flag}, which the limit cannot hold"
                ));
            }
        }
    }
    let node_max = {
        let nodes = s
            .act(
                format!(
                    "A larger limit must still fit a node: {basis} is {}.",
                    as_quantity(mebibytes_rounded_up(wanted))
                ),
                "Read the nodes' allocatable memory to cap the new limit.",
                "list_nodes_capacity",
                json!({}),
            )
            .await?;
        answer::<Vec<NodeUsage>>(&nodes)
            .and_then(|nodes| nodes.iter().map(|n| n.allocatable.memory_bytes).max())
            .unwrap_or(0)
    };
    let ceiling = if node_max > 0 {
        OOM_CEILING.min(node_max)
    } else {
        OOM_CEILING
    };
    let new_limit = mebibytes_rounded_up(wanted).min(ceiling);
    let summary = format!(
        "Container {container} is OOM-killed: its memory limit {} is too low.",
        limit_q.0
    );
    if let (Some(growth), Some(ran)) = (&leak, &long_run) {
        return Ok(no_fix(
            format!("Container {container} leaks memory and is OOM-killed after each {ran} run."),
            root_cause,
            evidence,
            format!(
                "{} The container restarts on its own after each kill; a larger limit ({}) would only move the next kill later.",
                fix_the_leak(&container, growth),
                as_quantity(new_limit.max(limit))
            ),
        ));
    }
    if new_limit <= limit {
        return Ok(no_fix(
            summary,
            root_cause,
            evidence,
            format!(
                "The limit is already at the ceiling ({}); reduce the application's memory use.",
                format_bytes(ceiling)
            ),
        ));
    }
    let Some(template) = workload_template(case, s, &container).await? else {
        return Ok(no_fix(
            summary,
            root_cause,
            evidence,
            format!("Raise the memory limit to {}.", as_quantity(new_limit)),
        ));
    };
    let current_limit = template.get("/resources/limits/memory").cloned();
    if current_limit != Some(json!(limit_q.0)) {
        return Ok(no_fix(
            summary,
            root_cause,
            evidence,
            "The workload's limit differs from the Pod's; it may have been changed already.".into(),
        ));
    }
    let new_q = as_quantity(new_limit);
    let mut operations = guarded_replace(
        format!("{}/resources/limits/memory", template.container_path),
        json!(limit_q.0),
        json!(new_q),
    );
    // A Guaranteed Pod (request = limit) stays Guaranteed.
    let mut also = String::new();
    if let Some(req) = request_q.filter(|r| memory_bytes(r) == Some(limit))
        && template.get("/resources/requests/memory") == Some(&json!(req.0))
    {
        let mut raise = guarded_replace(
            format!("{}/resources/requests/memory", template.container_path),
            json!(req.0),
            json!(new_q),
        );
        operations.insert(1, raise.remove(0));
        operations.push(raise.remove(0));
        also = " and its request with it (the Pod stays Guaranteed)".into();
    }
    let mut explanation = format!(
        "Raise container {container}'s memory limit from {} to {new_q}{also}: {basis}, capped at {}.",
        limit_q.0,
        format_bytes(ceiling)
    );
    if leak.is_some() {
        explanation = format!(
            "Stop-gap only: {explanation} The memory leaks, so this delays the kill rather than preventing it."
        );
    }
    let mut conclusion = fixed(
        case,
        findings(summary, root_cause, evidence),
        operations,
        explanation,
    );
    conclusion.recommendation = leak.map(|growth| {
        format!(
            "{} The raised limit buys time; it is not the fix.",
            fix_the_leak(&container, &growth)
        )
    });
    Ok(conclusion)
}

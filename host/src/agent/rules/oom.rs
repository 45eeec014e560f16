//! The OOMKilled playbook: raise the memory limit (twice the old one, above a JVM heap the
//! settings or log name, capped by the largest node and a ceiling of our own).

use std::sync::LazyLock;

use regex::Regex;
use serde_json::json;

use super::workload::{fixed, guarded_replace, workload_template};
use super::{AgentError, Case, Conclusion, Session};
use super::{answer, failure_container, findings, no_fix, pod_container};
use super::{memory_limit, memory_request};
use crate::cluster::{NodeUsage, format_bytes, memory_bytes};

/// How much the memory limit grows after an OOM kill.
pub const OOM_FACTOR: i64 = 2;
/// The highest limit the rules brain suggests; the patch-safety filter has its own ceiling.
const OOM_CEILING: i64 = 8 << 30;

/// A JVM's maximum heap flag, `-Xmx768m`.
static HEAP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-Xmx(\d+)([kKmMgG])").expect("static regex"));

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
            json!({"pod": pod, "container": container, "previous": true, "lines": 50}),
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
    let mut wanted = limit * OOM_FACTOR;
    if let Some((heap_bytes, flag)) = &heap {
        evidence.push(format!("the JVM is configured with {flag}"));
        if *heap_bytes >= limit {
            root_cause = format!(
                "The JVM heap ({flag}) alone is larger than the container's {} memory limit, so the container is OOM-killed as the heap grows.",
                limit_q.0
            );
            wanted = wanted.max(heap_bytes + heap_bytes / 4);
        }
    }
    let node_max = {
        let nodes = s
            .act(
                format!(
                    "A larger limit must still fit a node: {OOM_FACTOR}x is {}.",
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
    let explanation = format!(
        "Raise container {container}'s memory limit from {} to {new_q}{also}: {OOM_FACTOR}x the old limit{}, capped at {}.",
        limit_q.0,
        if heap.is_some() {
            " and above the JVM heap"
        } else {
            ""
        },
        format_bytes(ceiling)
    );
    Ok(fixed(
        case,
        findings(summary, root_cause, evidence),
        operations,
        explanation,
    ))
}

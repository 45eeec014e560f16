//! The Alert playbook: an Alertmanager alert about a workload that is not one of the Pod
//! failures the operator detects (an error rate, a latency, a saturation). The rules brain does
//! not guess a fix for those; it gathers what a person opening the runbook looks at first (the
//! Pod's recent events and its log's tail) beside the alert's own text, and says what to do.

use serde_json::json;

use super::{AgentError, Case, Conclusion, Session};
use super::{failure_container, no_fix};

/// Log lines quoted as evidence: the last ones that look like errors.
const LOG_LINES: usize = 3;

pub(super) async fn alert(case: &Case, s: &mut Session) -> Result<Conclusion, AgentError> {
    let pod = case.report.spec.pod.name.clone();
    let container = failure_container(case);
    let failure = &case.report.spec.failure;
    let alert = failure.reason.clone();
    let mut evidence: Vec<String> = failure.evidence.clone();
    let said = |prefix: &str| {
        failure
            .evidence
            .iter()
            .find_map(|e| e.strip_prefix(prefix).map(str::to_string))
    };
    let summary_text = said("alert summary: ").or_else(|| said("alert message: "));
    let description = said("alert description: ");
    let runbook = said("alert runbook: ");

    let events = s
        .act(
            format!("Alert {alert} fired for Pod {pod}."),
            "Read the Pod's recent events: a restart, a failed probe or an eviction around the alert explains many.",
            "list_events",
            json!({"kind": "Pod", "name": pod}),
        )
        .await?;
    if events.ok {
        for line in events
            .text
            .lines()
            .filter(|l| l.contains("Warning"))
            .take(2)
        {
            evidence.push(format!("event: {}", line.trim()));
        }
    }
    let logs = s
        .act(
            "The events are read.",
            "Read the end of the container's log for errors at the time of the alert.",
            "fetch_logs",
            json!({"pod": pod, "container": container, "lines": 50}),
        )
        .await?;
    if logs.ok {
        let errors: Vec<&str> = logs
            .text
            .lines()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                l.contains("error") || l.contains("exception") || l.contains("fatal")
            })
            .collect();
        for line in errors.iter().rev().take(LOG_LINES).rev() {
            evidence.push(format!("log: {}", line.trim()));
        }
    }

    let summary = format!(
        "Alert {alert} is firing for {} {} (Pod {pod}).",
        case.report.spec.workload.kind, case.report.spec.workload.name
    );
    let root_cause = match (&summary_text, &description) {
        (Some(s), Some(d)) => format!("{s} {d}"),
        (Some(t), None) | (None, Some(t)) => t.clone(),
        (None, None) => format!("Alertmanager reports {alert}; the alert carries no description."),
    };
    let recommendation = match runbook {
        Some(url) => format!(
            "Follow the alert's runbook ({url}); the evidence lists the Pod's warnings and log errors at the time. The operator proposes no patch for an alert it cannot map to a Pod failure."
        ),
        None => "Investigate with the evidence above; the alert has no runbook_url. The operator proposes no patch for an alert it cannot map to a Pod failure.".into(),
    };
    Ok(no_fix(summary, root_cause, evidence, recommendation))
}

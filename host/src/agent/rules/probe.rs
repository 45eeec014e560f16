//! The ProbeFailure playbook: a probe aimed at a port the container does not declare is pointed
//! at the one it does; otherwise the kubelet's events say whether the application answers
//! unhealthy, is not listening yet, or is too slow.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use regex::Regex;
use serde_json::json;

use super::workload::{fixed, guarded_replace, workload_template};
use super::{AgentError, Case, Conclusion, Session};
use super::{failure_container, findings, no_fix, pod_container};

pub(super) async fn probe_failure(case: &Case, s: &mut Session) -> Result<Conclusion, AgentError> {
    let container = failure_container(case);
    let failure = &case.report.spec.failure;
    let mut evidence: Vec<String> = failure.evidence.iter().take(5).cloned().collect();
    let probe_field = match failure.reason.as_str() {
        "LivenessProbeFailed" => "livenessProbe",
        "StartupProbeFailed" => "startupProbe",
        _ => "readinessProbe",
    };
    let spec = pod_container(case, &container);
    let probe = spec.and_then(|c| match probe_field {
        "livenessProbe" => c.liveness_probe.clone(),
        "startupProbe" => c.startup_probe.clone(),
        _ => c.readiness_probe.clone(),
    });
    let ports: Vec<(i32, Option<String>)> = spec
        .map(|c| {
            c.ports
                .iter()
                .flatten()
                .map(|p| (p.container_port, p.name.clone()))
                .collect()
        })
        .unwrap_or_default();
    let (probe_port, port_field) = match probe.as_ref() {
        Some(p) if p.http_get.is_some() => (p.http_get.as_ref().map(|h| h.port.clone()), "httpGet"),
        Some(p) if p.tcp_socket.is_some() => {
            (p.tcp_socket.as_ref().map(|t| t.port.clone()), "tcpSocket")
        }
        _ => (None, ""),
    };
    let matches_a_port = |port: &IntOrString| match port {
        IntOrString::Int(n) => ports.iter().any(|(p, _)| p == n),
        IntOrString::String(name) => ports
            .iter()
            .any(|(_, n)| n.as_deref() == Some(name.as_str())),
    };
    let events_text = evidence.join("\n").to_ascii_lowercase();
    if let Some(port) = probe_port.filter(|p| !matches_a_port(p)) {
        let shown = match &port {
            IntOrString::Int(n) => n.to_string(),
            IntOrString::String(s) => s.clone(),
        };
        let listed: Vec<String> = ports
            .iter()
            .map(|(p, n)| {
                n.as_ref()
                    .map(|n| format!("{p} ({n})"))
                    .unwrap_or(p.to_string())
            })
            .collect();
        let summary = format!(
            "Container {container}'s {probe_field} checks port {shown}, which the container does not listen on."
        );
        let root_cause = format!(
            "The {probe_field} probes port {shown}, but container {container} declares port(s) {}: the probe can never pass.",
            if listed.is_empty() {
                "none".to_string()
            } else {
                listed.join(", ")
            }
        );
        evidence.push(format!(
            "container {container} declares ports: {}",
            listed.join(", ")
        ));
        if ports.len() == 1
            && let Some(template) = workload_template(case, s, &container).await?
        {
            let relative = format!("/{probe_field}/{port_field}/port");
            let current = template.get(&relative).cloned();
            let expected = match &port {
                IntOrString::Int(n) => json!(n),
                IntOrString::String(s) => json!(s),
            };
            if current == Some(expected.clone()) {
                let right = ports[0].0;
                let explanation = format!(
                    "Point container {container}'s {probe_field} at port {right}, the port it declares and listens on."
                );
                return Ok(fixed(
                    case,
                    findings(summary, root_cause, evidence),
                    guarded_replace(
                        format!("{}{relative}", template.container_path),
                        expected,
                        json!(right),
                    ),
                    explanation,
                ));
            }
        }
        return Ok(no_fix(
            summary,
            root_cause,
            evidence,
            format!("Point the {probe_field} at the port the application listens on."),
        ));
    }
    let (root_cause, recommendation) = if let Some(code) = Regex::new(r"statuscode: (\d{3})")
        .ok()
        .and_then(|r| r.captures(&events_text).map(|c| c[1].to_string()))
    {
        (
            format!(
                "The application answers its {probe_field} with HTTP {code}: it reports itself unhealthy, so the probe fails."
            ),
            format!(
                "Find out why the application's health endpoint returns {code} (its dependencies, its log); the probe itself is configured right."
            ),
        )
    } else if events_text.contains("connection refused") {
        (
            format!("Nothing listens on the {probe_field}'s port when it is checked: the application starts slower than the probe allows, or listens elsewhere."),
            "Give the application time to start (a startupProbe or a longer initialDelaySeconds) or check the port it binds.".to_string(),
        )
    } else if events_text.contains("timeout") || events_text.contains("deadline exceeded") {
        (
            format!(
                "The {probe_field} times out: the application answers slower than timeoutSeconds."
            ),
            "Raise the probe's timeoutSeconds or make the health endpoint cheaper.".to_string(),
        )
    } else {
        (
            format!("The {probe_field} fails on a port the container declares."),
            "Check the health endpoint's path and behaviour.".to_string(),
        )
    };
    Ok(no_fix(
        format!("Container {container}'s {probe_field} keeps failing."),
        root_cause,
        evidence,
        recommendation,
    ))
}

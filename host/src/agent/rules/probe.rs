//! The ProbeFailure playbook: a probe aimed at a port the container does not declare is pointed
//! at the one it does; otherwise the kubelet's events say whether the application answers
//! unhealthy, is not listening yet, or is too slow. A livenessProbe that kills every run
//! before the application listens gets a startupProbe; a health endpoint that answers 5xx is
//! explained by the dependency its log says it cannot reach. With Prometheus (the
//! `container_cpu_throttling` tool), a container throttled by its CPU limit is named as the
//! reason its probe fails, and the limit raised.

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use regex::Regex;
use serde_json::json;

use super::clues::read_clues;
use super::workload::{fixed, guarded_replace, workload_template};
use super::{AgentError, Case, Conclusion, Session};
use super::{answer, container_status, failure_container, findings, no_fix, pod_container};
use crate::cluster::cpu_millis;
use crate::crd::{PatchOp, PatchOperation};
use tool_shapes::CpuThrottling;

/// The share of CFS periods throttled above which a failing probe is blamed on the CPU limit.
const THROTTLED: f64 = 0.25;
const THROTTLING_MINUTES: u32 = 30;

/// CPU millicores as a quantity a person writes: whole cores, else millicores.
fn cpu_quantity(millis: i64) -> String {
    if millis % 1000 == 0 {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// A conclusion when Prometheus shows the container throttled by its CPU limit.
async fn throttled(
    case: &Case,
    s: &mut Session,
    container: &str,
    probe_field: &str,
    evidence: &mut Vec<String>,
) -> Result<Option<Conclusion>, AgentError> {
    let Some(limit_q) = pod_container(case, container)
        .and_then(|c| c.resources.as_ref()?.limits.as_ref()?.get("cpu").cloned())
    else {
        return Ok(None);
    };
    if !s.has_tool("container_cpu_throttling") {
        return Ok(None);
    }
    let outcome = s
        .act(
            format!("Container {container} has a CPU limit of {}; Prometheus is configured.", limit_q.0),
            "A container throttled by its CPU limit answers its probe late: check how often it was throttled.",
            "container_cpu_throttling",
            json!({"pod": case.report.spec.pod.name, "container": container, "minutes": THROTTLING_MINUTES}),
        )
        .await?;
    let Some(history) = answer::<CpuThrottling>(&outcome) else {
        return Ok(None);
    };
    let Some(seen) = history
        .containers
        .iter()
        .find(|c| c.container == container && c.max_ratio >= THROTTLED)
    else {
        evidence.push(format!(
            "Prometheus: container {container} was not CPU-throttled enough to matter in the last {THROTTLING_MINUTES} minutes"
        ));
        return Ok(None);
    };
    let percent = |r: f64| format!("{:.0}%", r * 100.0);
    evidence.push(format!(
        "Prometheus: container {container} was CPU-throttled in up to {} of its CFS periods (mean {}) in the last {THROTTLING_MINUTES} minutes (query: {})",
        percent(seen.max_ratio),
        percent(seen.mean_ratio),
        history.queries.first().cloned().unwrap_or_default()
    ));
    let summary =
        format!("Container {container}'s {probe_field} fails while its CPU limit throttles it.");
    let root_cause = format!(
        "Container {container} is throttled by its {} CPU limit in up to {} of scheduling periods, so it answers its {probe_field} too late and the probe fails.",
        limit_q.0,
        percent(seen.max_ratio)
    );
    let limit = cpu_millis(&limit_q).unwrap_or(0);
    let used = seen.max_cores.map(|c| (c * 1000.0) as i64).unwrap_or(0);
    // Twice the limit, and room above the most it managed to use; in steps of 100m.
    let wanted = ((limit * 2).max(used * 3 / 2) + 99) / 100 * 100;
    let recommendation = format!(
        "Raise container {container}'s CPU limit (or remove it and keep the request), then watch the throttling ratio fall."
    );
    if limit == 0 || wanted <= limit {
        return Ok(Some(no_fix(
            summary,
            root_cause,
            evidence.clone(),
            recommendation,
        )));
    }
    let Some(template) = workload_template(case, s, container).await? else {
        return Ok(Some(no_fix(
            summary,
            root_cause,
            evidence.clone(),
            recommendation,
        )));
    };
    if template.get("/resources/limits/cpu") != Some(&json!(limit_q.0)) {
        return Ok(Some(no_fix(
            summary,
            root_cause,
            evidence.clone(),
            recommendation,
        )));
    }
    let new_q = cpu_quantity(wanted);
    let explanation = format!(
        "Raise container {container}'s CPU limit from {} to {new_q}: it is throttled in up to {} of periods, which makes its {probe_field} time out.",
        limit_q.0,
        percent(seen.max_ratio)
    );
    Ok(Some(fixed(
        case,
        findings(summary, root_cause, evidence.clone()),
        guarded_replace(
            format!("{}/resources/limits/cpu", template.container_path),
            json!(limit_q.0),
            json!(new_q),
        ),
        explanation,
    )))
}

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
    let probe = spec.and_then(|c| probe_of(c, probe_field)).cloned();
    let ports: Vec<(i32, Option<String>)> = spec
        .map(|c| {
            c.ports
                .iter()
                .flatten()
                .map(|p| (p.container_port, p.name.clone()))
                .collect()
        })
        .unwrap_or_default();
    let (probe_port, port_field) = match probe.as_ref().and_then(probe_target) {
        Some((port, field)) => (Some(port), field),
        None => (None, ""),
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
        // The port another probe of the container checks (and that the container declares)
        // is one the application answers on; else a container's only port.
        let sibling = siblings(spec, probe_field)
            .into_iter()
            .filter_map(|(field, p)| Some((field, probe_target(p)?.0)))
            .find(|(_, p)| matches_a_port(p));
        let right = match sibling {
            Some((field, port)) => Some((json!(port), format!("the port its {field} checks"))),
            None if ports.len() == 1 => Some((
                json!(ports[0].0),
                "the port it declares and listens on".to_string(),
            )),
            None => None,
        };
        if let Some((right, why)) = right
            && let Some(template) = workload_template(case, s, &container).await?
        {
            let relative = format!("/{probe_field}/{port_field}/port");
            let current = template.get(&relative).cloned();
            let expected = json!(port);
            if current == Some(expected.clone()) {
                let shown_right = right
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or(right.to_string());
                let explanation = format!(
                    "Point container {container}'s {probe_field} at port {shown_right}, {why}."
                );
                return Ok(fixed(
                    case,
                    findings(summary, root_cause, evidence),
                    guarded_replace(
                        format!("{}{relative}", template.container_path),
                        expected,
                        right,
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
    if let Some(conclusion) = wrong_path(
        case,
        s,
        &container,
        probe_field,
        &events_text,
        evidence.clone(),
    )
    .await?
    {
        return Ok(conclusion);
    }
    if let Some(conclusion) = throttled(case, s, &container, probe_field, &mut evidence).await? {
        return Ok(conclusion);
    }
    if probe_field == "livenessProbe"
        && events_text.contains("connection refused")
        && !events_text.contains("statuscode")
        && let Some(probe) = &probe
        && let Some(conclusion) =
            killed_while_starting(case, s, &container, probe, evidence.clone()).await?
    {
        return Ok(conclusion);
    }
    let code = Regex::new(r"statuscode: (\d{3})")
        .ok()
        .and_then(|r| r.captures(&events_text).map(|c| c[1].to_string()));
    // A health endpoint that answers 5xx reports a dependency it cannot reach, as often as not:
    // the log says which, and that dependency is followed as a crash loop's would be.
    if code.as_deref().is_some_and(|c| c.starts_with('5'))
        && let Some(conclusion) =
            unhealthy_dependency(case, s, &container, probe_field, evidence.clone()).await?
    {
        return Ok(conclusion);
    }
    let (root_cause, recommendation) = if let Some(code) = code {
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

/// The dependency a container's log says it cannot reach (a lookup that fails, a connection
/// refused), when its health endpoint answers 5xx: followed to the Service it names.
async fn unhealthy_dependency(
    case: &Case,
    s: &mut Session,
    container: &str,
    probe_field: &str,
    mut evidence: Vec<String>,
) -> Result<Option<Conclusion>, AgentError> {
    let logs = s
        .act(
            format!("Container {container}'s {probe_field} answers with a server error."),
            "A health endpoint fails for what the application cannot reach: read its log.",
            "fetch_logs",
            json!({"pod": case.report.spec.pod.name, "container": container, "previous": false, "lines": 100}),
        )
        .await?;
    if !logs.ok {
        return Ok(None);
    }
    let clues = read_clues(&logs.text);
    let Some((clue, line)) = clues.first() else {
        return Ok(None);
    };
    let Some((host, port, how)) = clue.unreachable() else {
        return Ok(None);
    };
    evidence.push(format!("log: {}", line.trim()));
    super::crash_loop::dependency(case, s, container, host, port, how, evidence)
        .await
        .map(Some)
}

/// What Kubernetes' documentation gives a slow-starting application: 30 checks 10 s apart, five
/// minutes to start before the livenessProbe takes over.
const STARTUP_BUDGET_SECONDS: i32 = 300;

/// A livenessProbe that kills the container before it has started: each run lasted about as
/// long as the probe allows (initialDelaySeconds + failureThreshold × periodSeconds) and nothing
/// listened yet (connection refused). The fix is a startupProbe with the same check and room to
/// start, which holds the livenessProbe back until the application answers; the livenessProbe
/// keeps its settings for the running application.
async fn killed_while_starting(
    case: &Case,
    s: &mut Session,
    container: &str,
    liveness: &Probe,
    mut evidence: Vec<String>,
) -> Result<Option<Conclusion>, AgentError> {
    let spec = pod_container(case, container);
    if spec.is_some_and(|c| c.startup_probe.is_some()) {
        return Ok(None);
    }
    let Some(status) = container_status(case, container) else {
        return Ok(None);
    };
    let Some(run) = status
        .last_state
        .as_ref()
        .and_then(|l| l.terminated.as_ref())
    else {
        return Ok(None);
    };
    let (Some(started), Some(finished)) = (&run.started_at, &run.finished_at) else {
        return Ok(None);
    };
    let lasted = (finished.0 - started.0).get_seconds();
    let delay = liveness.initial_delay_seconds.unwrap_or(0);
    let period = liveness.period_seconds.unwrap_or(10).max(1);
    let threshold = liveness.failure_threshold.unwrap_or(3).max(1);
    let timeout = liveness.timeout_seconds.unwrap_or(1);
    let grace = case
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    let budget = i64::from(delay + threshold * period);
    // Killed at the threshold's failure, then given up to its grace period to stop.
    let earliest = i64::from(delay + (threshold - 1) * period) - 2;
    let latest = budget + i64::from(timeout) + grace + 5;
    if status.restart_count < 2 || !(earliest..=latest).contains(&lasted) {
        return Ok(None);
    }
    evidence.push(format!(
        "the last run lasted {lasted} s; the livenessProbe gives up after about {budget} s (initialDelaySeconds {delay} + failureThreshold {threshold} × periodSeconds {period})"
    ));
    let summary = format!(
        "Container {container} is killed by its livenessProbe before it finishes starting."
    );
    let root_cause = format!(
        "Each run lasts about as long as the livenessProbe allows ({lasted} s against {budget} s: initialDelaySeconds {delay} + failureThreshold {threshold} × periodSeconds {period}), and the application does not listen yet when it is checked (connection refused): the kubelet restarts it before it has started, every time."
    );
    let Some(template) = workload_template(case, s, container).await? else {
        return Ok(Some(no_fix(
            summary,
            root_cause,
            evidence,
            format!(
                "Add a startupProbe with the livenessProbe's check that allows {STARTUP_BUDGET_SECONDS} s to start."
            ),
        )));
    };
    let (Some(current), None) = (
        template.get("/livenessProbe").cloned(),
        template.get("/startupProbe"),
    ) else {
        return Ok(None);
    };
    // The same check, from the template (what the patch changes), with room to start.
    let mut startup = serde_json::Map::new();
    for handler in ["httpGet", "tcpSocket", "grpc", "exec"] {
        if let Some(h) = current.get(handler) {
            startup.insert(handler.into(), h.clone());
        }
    }
    if startup.is_empty() {
        return Ok(None);
    }
    let failures = (STARTUP_BUDGET_SECONDS / period).max(threshold);
    startup.insert("periodSeconds".into(), json!(period));
    startup.insert("timeoutSeconds".into(), json!(timeout));
    startup.insert("failureThreshold".into(), json!(failures));
    let path = format!("{}/livenessProbe", template.container_path);
    let operations = vec![
        PatchOperation {
            op: PatchOp::Test,
            path: path.clone(),
            from: None,
            value: Some(current),
        },
        PatchOperation {
            op: PatchOp::Add,
            path: format!("{}/startupProbe", template.container_path),
            from: None,
            value: Some(serde_json::Value::Object(startup)),
        },
    ];
    Ok(Some(fixed(
        case,
        findings(summary, root_cause, evidence),
        operations,
        format!(
            "Add a startupProbe with the livenessProbe's check that allows {} s to start (failureThreshold {failures} × periodSeconds {period}): the livenessProbe waits until it passes, and keeps its settings for the running application.",
            failures * period
        ),
    )))
}

/// The port an httpGet or tcpSocket probe checks, and which of the two it is.
fn probe_target(probe: &Probe) -> Option<(IntOrString, &'static str)> {
    if let Some(http) = &probe.http_get {
        return Some((http.port.clone(), "httpGet"));
    }
    probe
        .tcp_socket
        .as_ref()
        .map(|t| (t.port.clone(), "tcpSocket"))
}

/// The container's probe in `field` (`readinessProbe` when the field is none of the three).
fn probe_of<'a>(c: &'a Container, field: &str) -> Option<&'a Probe> {
    match field {
        "livenessProbe" => c.liveness_probe.as_ref(),
        "startupProbe" => c.startup_probe.as_ref(),
        _ => c.readiness_probe.as_ref(),
    }
}

/// The container's other probes, with their field names.
fn siblings<'a>(spec: Option<&'a Container>, probe_field: &str) -> Vec<(&'static str, &'a Probe)> {
    let Some(c) = spec else {
        return Vec::new();
    };
    [
        ("readinessProbe", c.readiness_probe.as_ref()),
        ("livenessProbe", c.liveness_probe.as_ref()),
        ("startupProbe", c.startup_probe.as_ref()),
    ]
    .into_iter()
    .filter(|(field, _)| *field != probe_field)
    .filter_map(|(field, p)| Some((field, p?)))
    .collect()
}

/// The port a probe names, as a number, through the container's declared port names.
fn port_number(spec: &Container, port: &IntOrString) -> Option<i32> {
    match port {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(name) => spec
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port),
    }
}

/// The path a liveness endpoint has where the readiness one is `path` (and back): Spring Boot's
/// `/actuator/health/readiness` and `liveness`, Kubernetes' own `/readyz` and `/livez`. A path
/// that names neither serves both.
pub(super) fn sibling_path(path: &str, from: &str, to: &str) -> String {
    let pairs = [
        ("readiness", "liveness"),
        ("readyz", "livez"),
        ("ready", "live"),
    ];
    let last = path.rsplit('/').next().unwrap_or(path);
    for (ready, live) in pairs {
        let (have, want) = match (from, to) {
            ("readinessProbe", "livenessProbe") => (ready, live),
            ("livenessProbe", "readinessProbe") => (live, ready),
            _ => continue,
        };
        if last == have {
            return format!("{}{want}", &path[..path.len() - last.len()]);
        }
    }
    path.to_string()
}

/// An HTTP probe answered 404 asks for a path the application does not serve: not an unhealthy
/// application but a wrong path. Another httpGet probe of the container on the same port shows
/// the path family the application serves; the probe is pointed at its sibling there.
async fn wrong_path(
    case: &Case,
    s: &mut Session,
    container: &str,
    probe_field: &str,
    events_text: &str,
    mut evidence: Vec<String>,
) -> Result<Option<Conclusion>, AgentError> {
    if !events_text.contains("statuscode: 404") {
        return Ok(None);
    }
    let Some(spec) = pod_container(case, container) else {
        return Ok(None);
    };
    let probe = probe_of(spec, probe_field).and_then(|p| p.http_get.as_ref());
    let Some(probe) = probe else {
        return Ok(None);
    };
    let path = probe.path.clone().unwrap_or("/".into());
    let port = port_number(spec, &probe.port);
    let sibling = siblings(Some(spec), probe_field)
        .into_iter()
        .filter_map(|(field, p)| Some((field, p.http_get.as_ref()?)))
        .find(|(_, h)| {
            port.is_some()
                && port_number(spec, &h.port) == port
                && h.path.as_deref().is_some_and(|p| p != path)
        });
    let summary = format!(
        "Container {container}'s {probe_field} asks for {path}, which the application does not serve (HTTP 404)."
    );
    let Some((field, other)) = sibling else {
        return Ok(Some(no_fix(
            summary,
            format!(
                "The application answers the {probe_field}'s {path} with HTTP 404: the path does not exist, the application is not unhealthy."
            ),
            evidence,
            format!("Point the {probe_field} at the application's health endpoint."),
        )));
    };
    let other_path = other.path.clone().unwrap_or_default();
    let right = sibling_path(&other_path, field, probe_field);
    evidence.push(format!(
        "container {container}'s {field} asks for {other_path} on the same port"
    ));
    let root_cause = format!(
        "The application answers the {probe_field}'s {path} with HTTP 404: a path it does not serve, not an unhealthy application. Its {field} asks for {other_path}, so its {probe_field} belongs at {right}."
    );
    let Some(template) = workload_template(case, s, container).await? else {
        return Ok(Some(no_fix(
            summary,
            root_cause,
            evidence,
            format!("Point the {probe_field} at {right}."),
        )));
    };
    let relative = format!("/{probe_field}/httpGet/path");
    if template.get(&relative) != Some(&json!(path)) {
        return Ok(Some(no_fix(
            summary,
            root_cause,
            evidence,
            format!("Point the {probe_field} at {right}."),
        )));
    }
    let explanation = format!(
        "Point container {container}'s {probe_field} at {right}, beside the {other_path} its {field} asks for."
    );
    Ok(Some(fixed(
        case,
        findings(summary, root_cause, evidence),
        guarded_replace(
            format!("{}{relative}", template.container_path),
            json!(path),
            json!(right),
        ),
        explanation,
    )))
}

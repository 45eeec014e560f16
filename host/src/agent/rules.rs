//! The rules brain: deterministic playbooks per failure class that call the same tools as the
//! model and write the same report. It needs no API key, and it is what tests assert exactly.
//!
//! Every patch targets the owning workload (never the Pod) and begins with `test` operations on
//! the values it replaces.

use std::sync::LazyLock;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Container;
use regex::Regex;
use serde_json::{Value, json};

use super::{AgentError, Brain, Case, Conclusion, Session, ToolOutcome};
use crate::cluster::{format_bytes, memory_bytes, pod_requests};
use crate::crd::{
    FailureClass, Findings, PatchOp, PatchOperation, SuggestedPatch, TargetRef, WorkloadRef,
};
use crate::failure::missing_config;

pub struct RulesBrain;

#[async_trait]
impl Brain for RulesBrain {
    fn kind(&self) -> &'static str {
        "rules"
    }

    fn model(&self) -> Option<String> {
        None
    }

    async fn investigate(&self, case: &Case, s: &mut Session) -> Result<Conclusion, AgentError> {
        let failure = &case.report.spec.failure;
        s.note(
            format!(
                "{} is {} ({}): {}",
                case.report.spec.pod.name,
                failure.class,
                failure.reason,
                failure.evidence.first().cloned().unwrap_or_default()
            ),
            format!("Following the {} playbook.", failure.class),
        );
        match failure.class {
            FailureClass::CrashLoopBackOff => crash_loop(case, s).await,
            FailureClass::Pending => pending(case, s).await,
            FailureClass::ImagePullBackOff => image_pull(case, s).await,
            FailureClass::OomKilled => oom_killed(case, s).await,
            FailureClass::CreateContainerConfigError => config_error(case, s).await,
            FailureClass::ProbeFailure => probe_failure(case, s).await,
        }
    }
}

// ---- shared helpers -------------------------------------------------------------------------

fn json_of(outcome: &ToolOutcome) -> Option<Value> {
    outcome
        .ok
        .then(|| serde_json::from_str(&outcome.text).ok())
        .flatten()
}

fn findings(summary: String, root_cause: String, evidence: Vec<String>) -> Findings {
    Findings {
        summary,
        root_cause,
        evidence,
    }
}

fn no_fix(
    summary: String,
    root_cause: String,
    evidence: Vec<String>,
    recommendation: String,
) -> Conclusion {
    Conclusion {
        findings: findings(summary, root_cause, evidence),
        patch: None,
        recommendation: Some(recommendation),
    }
}

/// Kinds a patch may target, with where their Pod template's spec lives.
fn pod_spec_path(workload: &WorkloadRef) -> Option<&'static str> {
    match workload.kind.as_str() {
        "Deployment" | "StatefulSet" | "DaemonSet" => Some("/spec/template/spec"),
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

fn target(case: &Case) -> TargetRef {
    let w = &case.report.spec.workload;
    TargetRef {
        api_version: w.api_version.clone(),
        kind: w.kind.clone(),
        namespace: case.namespace().to_string(),
        name: w.name.clone(),
    }
}

/// The workload object and the JSON Pointer of the named container in its Pod template.
struct Template {
    object: Value,
    container_path: String,
}

impl Template {
    fn get(&self, relative: &str) -> Option<&Value> {
        self.object
            .pointer(&format!("{}{relative}", self.container_path))
    }
}

async fn workload_template(
    case: &Case,
    s: &mut Session,
    container: &str,
) -> Result<Option<Template>, AgentError> {
    let w = &case.report.spec.workload;
    let Some(spec_path) = pod_spec_path(w) else {
        s.note(
            format!(
                "The Pod's owner is {} {}, not a workload a patch may change.",
                w.kind, w.name
            ),
            "No patch: only Deployments, StatefulSets, DaemonSets and CronJobs are patched.",
        );
        return Ok(None);
    };
    let outcome = s
        .act(
            format!("A fix would change {} {}.", w.kind, w.name),
            "Read the workload to patch its Pod template, not the Pod.",
            "inspect_object",
            json!({"kind": w.kind, "name": w.name}),
        )
        .await?;
    let Some(object) = json_of(&outcome) else {
        return Ok(None);
    };
    let index = object
        .pointer(&format!("{spec_path}/containers"))
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().position(|c| c["name"] == container));
    Ok(index.map(|i| Template {
        object,
        container_path: format!("{spec_path}/containers/{i}"),
    }))
}

fn guarded_replace(path: String, old: Value, new: Value) -> Vec<PatchOperation> {
    vec![
        PatchOperation {
            op: PatchOp::Test,
            path: path.clone(),
            from: None,
            value: Some(old),
        },
        PatchOperation {
            op: PatchOp::Replace,
            path,
            from: None,
            value: Some(new),
        },
    ]
}

/// A conclusion whose fix is the given guarded operations on the workload.
fn fixed(
    case: &Case,
    findings: Findings,
    operations: Vec<PatchOperation>,
    explanation: String,
) -> Conclusion {
    Conclusion {
        findings,
        patch: Some(patch(case, operations, explanation)),
        recommendation: None,
    }
}

fn patch(case: &Case, operations: Vec<PatchOperation>, explanation: String) -> SuggestedPatch {
    SuggestedPatch {
        target: target(case),
        patch: operations,
        explanation,
    }
}

fn pod_container<'a>(case: &'a Case, name: &str) -> Option<&'a Container> {
    let spec = case.pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

fn failure_container(case: &Case) -> String {
    case.report
        .spec
        .failure
        .container
        .clone()
        .or_else(|| {
            case.pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .map(|c| c.name.clone())
        })
        .unwrap_or_default()
}

/// Logs are untrusted data: they are searched for facts, never followed.
fn last_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("# note:"))
        .collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.chars().take(300).collect())
        .collect()
}

// ---- CrashLoopBackOff -----------------------------------------------------------------------

/// What a crash log says about the cause.
#[derive(Clone, Debug, PartialEq)]
pub enum Clue {
    ConnectionRefused { host: String, port: Option<u16> },
    DnsFailure { host: String, port: Option<u16> },
    MissingSetting { name: String },
    PermissionDenied { path: Option<String> },
    CommandNotFound { command: Option<String> },
    Crash { line: String },
}

/// `host:port` where host is a name (starting with a letter) or an IPv4 address; the character
/// after the port must not continue a timestamp (`09:41:06`).
static HOST_PORT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^A-Za-z0-9.\-])((?:[a-zA-Z][a-zA-Z0-9\-]*(?:\.[a-zA-Z0-9\-]+)*)|(?:\d{1,3}(?:\.\d{1,3}){3})):(\d{2,5})(?:$|[^\d:]|:[^\d]|:$)")
        .expect("static regex")
});
static PG_HOST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"host "([^"]+)".*?port (\d{2,5})"#).expect("static regex"));
static DNS_HOST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(?:lookup|ENOTFOUND|host name|UnknownHostException:|resolve host|resolve)\s+"?([a-zA-Z0-9][a-zA-Z0-9.\-]*)"?"#).expect("static regex")
});
static MISSING_SETTING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(?:environment variable|env var(?:iable)?|missing required (?:env(?:ironment)?(?: variable)?|config(?:uration)?(?: key)?|setting)|KeyError:)\s*[:=]?\s*["'`]?([A-Za-z_][A-Za-z0-9_.]{2,})"#)
        .expect("static regex")
});
static NOT_SET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b([A-Z][A-Z0-9_]{2,}) (?:is|must be) (?:not set|required|unset|empty|missing)")
        .expect("static regex")
});
static PATH_IN_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"["'`]?(/[A-Za-z0-9_.\-/]+)["'`]?"#).expect("static regex"));
static EXEC_NOT_FOUND: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?:exec: "([^"]+)": executable file not found|exec (\S+): no such file or directory|(\S+): (?:command )?not found)"#).expect("static regex")
});
static CRASH_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(panic: .*|fatal error: .*|Exception in thread .*|Unhandled exception.*|FATAL.*|[A-Za-z_.]*(Error|Exception): .*|Segmentation fault.*)$").expect("static regex")
});

fn is_ip(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
}

/// Reads the facts a crash log states, most specific first.
pub fn read_clues(log: &str) -> Vec<(Clue, String)> {
    let mut clues = Vec::new();
    // Newest line first: the last word before the crash is the most telling.
    for line in log.lines().rev() {
        let lower = line.to_ascii_lowercase();
        let host_port = || {
            // Prefer a name the app was configured with over the IP it resolved to.
            let mut found: Vec<(String, Option<u16>)> = HOST_PORT
                .captures_iter(line)
                .map(|c| (c[1].to_string(), c[2].parse().ok()))
                .collect();
            if let Some(c) = PG_HOST.captures(line) {
                found.insert(0, (c[1].to_string(), c[2].parse().ok()));
            }
            found.sort_by_key(|(h, _)| is_ip(h));
            found.into_iter().next()
        };
        if (lower.contains("connection refused")
            || lower.contains("econnrefused")
            || lower.contains("error 111"))
            && let Some((host, port)) = host_port()
        {
            clues.push((Clue::ConnectionRefused { host, port }, line.to_string()));
            continue;
        }
        if [
            "no such host",
            "nxdomain",
            "name or service not known",
            "temporary failure in name resolution",
            "enotfound",
            "could not translate host name",
            "unknownhostexception",
            "nodename nor servname",
        ]
        .iter()
        .any(|p| lower.contains(p))
        {
            let host = DNS_HOST
                .captures(line)
                .map(|c| c[1].trim_end_matches(['.', ':']).to_string());
            if let Some(host) = host.or_else(|| host_port().map(|(h, _)| h)) {
                let host = host.split(':').next().unwrap_or(&host).to_string();
                // The port of the name that failed, not of the DNS server that answered.
                let port = HOST_PORT
                    .captures_iter(line)
                    .find(|c| c[1] == *host)
                    .and_then(|c| c[2].parse().ok());
                clues.push((Clue::DnsFailure { host, port }, line.to_string()));
                continue;
            }
        }
        if let Some(c) = MISSING_SETTING
            .captures(line)
            .or_else(|| NOT_SET.captures(line))
        {
            clues.push((
                Clue::MissingSetting {
                    name: c[1].to_string(),
                },
                line.to_string(),
            ));
            continue;
        }
        if lower.contains("permission denied")
            || lower.contains("eacces")
            || lower.contains("read-only file system")
        {
            let path = PATH_IN_LINE.captures(line).map(|c| c[1].to_string());
            clues.push((Clue::PermissionDenied { path }, line.to_string()));
            continue;
        }
        if let Some(c) = EXEC_NOT_FOUND.captures(line) {
            let command = c
                .get(1)
                .or(c.get(2))
                .or(c.get(3))
                .map(|m| m.as_str().to_string());
            clues.push((Clue::CommandNotFound { command }, line.to_string()));
            continue;
        }
        if CRASH_LINE.is_match(line.trim()) {
            clues.push((
                Clue::Crash {
                    line: line.trim().chars().take(300).collect(),
                },
                line.to_string(),
            ));
        }
    }
    // The most telling clue first: a dependency, then configuration, then anything else.
    clues.sort_by_key(|(c, _)| match c {
        Clue::ConnectionRefused { .. } | Clue::DnsFailure { .. } => 0,
        Clue::MissingSetting { .. } => 1,
        Clue::CommandNotFound { .. } => 2,
        Clue::PermissionDenied { .. } => 3,
        Clue::Crash { .. } => 4,
    });
    clues
}

/// The env var of the container whose value names `host`, with the value it should have.
fn env_naming_host(
    template: &Template,
    host: &str,
    replacement: &str,
) -> Option<(String, String, String)> {
    let pattern = Regex::new(&format!(
        r"(^|[/@:=,\s]){}($|[:/?,\s])",
        regex::escape(host)
    ))
    .ok()?;
    let env = template.get("/env")?.as_array()?;
    env.iter().enumerate().find_map(|(i, e)| {
        let value = e.get("value")?.as_str()?;
        if !pattern.is_match(value) {
            return None;
        }
        let new = pattern
            .replace_all(value, |c: &regex::Captures| {
                format!("{}{replacement}{}", &c[1], &c[2])
            })
            .into_owned();
        Some((
            format!("{}/env/{i}/value", template.container_path),
            value.to_string(),
            new,
        ))
    })
}

/// The env var whose value is exactly the port, to point it at another port.
fn env_with_port(template: &Template, port: u16) -> Option<(String, String)> {
    let env = template.get("/env")?.as_array()?;
    env.iter().enumerate().find_map(|(i, e)| {
        (e.get("value")?.as_str()? == port.to_string()).then(|| {
            (
                format!("{}/env/{i}/value", template.container_path),
                e["name"].as_str().unwrap_or("").to_string(),
            )
        })
    })
}

async fn crash_loop(case: &Case, s: &mut Session) -> Result<Conclusion, AgentError> {
    let container = failure_container(case);
    let pod = case.report.spec.pod.name.clone();
    let failure = &case.report.spec.failure;
    let logs = s
        .act(
            format!("Container {container} keeps exiting ({}).", failure.reason),
            "A crash loop is explained by what the last run printed: read the previous container's log.",
            "fetch_logs",
            json!({"pod": pod, "container": container, "previous": true, "lines": 100}),
        )
        .await?;
    let log_text = if logs.ok {
        logs.text.clone()
    } else {
        String::new()
    };
    let mut evidence: Vec<String> = failure.evidence.iter().take(3).cloned().collect();
    if s.plugins().tool("match_log_signatures").is_some() {
        let signatures = s
            .act(
                "The log is read.",
                "Match it against the catalogue of known failure signatures.",
                "match_log_signatures",
                json!({"pod": pod, "container": container, "previous": true}),
            )
            .await?;
        if let Some(matches) = json_of(&signatures).and_then(|v| v.as_array().cloned()) {
            for m in matches.iter().take(3) {
                if let (Some(sig), Some(line)) = (m["signature"].as_str(), m["evidence"].as_str()) {
                    evidence.push(format!("log signature {sig}: {line}"));
                }
            }
        }
    }
    let clues = read_clues(&log_text);
    let Some((clue, line)) = clues.first().cloned() else {
        let tail = last_lines(&log_text, 3);
        evidence.extend(tail.iter().map(|l| format!("log: {l}")));
        let exit = failure.reason.clone();
        return Ok(no_fix(
            format!("Container {container} crash-loops ({exit}); its log names no known cause."),
            format!(
                "The container exits ({exit}) without a recognisable error in its last {} log lines.",
                tail.len()
            ),
            evidence,
            format!(
                "Read the full log with `kubectl logs {pod} -c {container} --previous -n {}` and the application's own diagnostics.",
                case.namespace()
            ),
        ));
    };
    evidence.push(format!("log: {}", line.trim()));
    match clue {
        Clue::ConnectionRefused { host, port } | Clue::DnsFailure { host, port } => {
            let refused = matches!(clues.first(), Some((Clue::ConnectionRefused { .. }, _)));
            dependency(case, s, &container, &host, port, refused, evidence).await
        }
        Clue::MissingSetting { name } => Ok(no_fix(
            format!("Container {container} exits because the setting {name} is missing."),
            format!("The application requires {name}, which its environment or configuration does not provide."),
            evidence,
            format!("Set {name} in the container's env (from a ConfigMap or Secret) and roll out again."),
        )),
        Clue::PermissionDenied { path } => {
            let at = path.map(|p| format!(" on {p}")).unwrap_or_default();
            Ok(no_fix(
                format!("Container {container} exits with permission denied{at}."),
                format!("The process cannot write or read{at} as the user it runs as (a volume owned by another user, or a read-only filesystem)."),
                evidence,
                "Give the Pod an fsGroup or runAsUser that owns the path, or mount a writable volume there; security contexts are not changed by the operator.".into(),
            ))
        }
        Clue::CommandNotFound { command } => {
            let what = command.map(|c| format!(" {c:?}")).unwrap_or_default();
            Ok(no_fix(
                format!("Container {container} cannot start: command{what} not found (exit 127)."),
                format!("The command{what} does not exist in the image {}.", pod_container(case, &container).and_then(|c| c.image.clone()).unwrap_or_default()),
                evidence,
                "Fix the container's command or args, or use an image that contains the binary.".into(),
            ))
        }
        Clue::Crash { line } => Ok(no_fix(
            format!("Container {container} crashes: {line}"),
            format!("The application fails at start-up with: {line}"),
            evidence,
            "This is an application error; look at the stack trace and the release that introduced it (`kubectl rollout history`).".into(),
        )),
    }
}

async fn dependency(
    case: &Case,
    s: &mut Session,
    container: &str,
    host: &str,
    port: Option<u16>,
    refused: bool,
    mut evidence: Vec<String>,
) -> Result<Conclusion, AgentError> {
    let endpoint = match port {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let what = if refused {
        "connection refused"
    } else {
        "DNS lookup failed"
    };
    if is_ip(host) {
        return Ok(no_fix(
            format!("Container {container} cannot reach {endpoint} ({what})."),
            format!(
                "Nothing accepts connections on {endpoint}, an IP address the operator cannot map to a Service."
            ),
            evidence,
            format!("Find which workload should listen on {endpoint} and why it does not."),
        ));
    }
    let service_name = host.split('.').next().unwrap_or(host).to_string();
    let check = s
        .act(
            format!("The log says {what} to {endpoint}."),
            format!("{service_name} should be a Service in namespace {}: check it exists, has ready endpoints and serves that port.", case.namespace()),
            "check_service",
            json!({"name": service_name}),
        )
        .await?;
    let Some(svc) = json_of(&check) else {
        return Ok(no_fix(
            format!("Container {container} cannot reach {endpoint} ({what})."),
            format!("The dependency {endpoint} is unreachable."),
            evidence,
            format!("Check Service {service_name}: {}", check.text),
        ));
    };
    let ns = case.namespace();
    let ports: Vec<u16> = svc["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["port"].as_u64().map(|p| p as u16))
        .collect();
    if svc["exists"] == false {
        evidence.push(format!(
            "namespace {ns} has no Service named {service_name}"
        ));
        let similar: Vec<(String, Vec<u16>)> = svc["similar"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let ports = s["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["port"].as_u64().map(|p| p as u16))
                    .collect();
                Some((s["name"].as_str()?.to_string(), ports))
            })
            .collect();
        // A similar name that serves the port the app wants is the likely intended Service.
        let best = similar
            .iter()
            .find(|(_, p)| port.is_none_or(|want| p.contains(&want)))
            .cloned();
        let Some((right, right_ports)) = best else {
            return Ok(no_fix(
                format!(
                    "Container {container} cannot reach {endpoint}: Service {service_name} does not exist."
                ),
                format!(
                    "The application connects to {endpoint}, but namespace {ns} has no Service named {service_name} and none with a similar name."
                ),
                evidence,
                format!(
                    "Create Service {service_name} for the dependency, or point the application at the right host."
                ),
            ));
        };
        evidence.push(format!(
            "Service {right} exists with port(s) {}",
            right_ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let root_cause = format!(
            "The application connects to {endpoint}, but namespace {ns} has no Service named {service_name}; Service {right} serves that port: the configured host names the wrong Service."
        );
        let summary = format!(
            "Container {container} crash-loops: {what} to {endpoint} because Service {service_name} does not exist (did you mean {right}?)."
        );
        let Some(template) = workload_template(case, s, container).await? else {
            return Ok(no_fix(
                summary,
                root_cause,
                evidence,
                format!("Point the application at {right} instead of {service_name}."),
            ));
        };
        let Some((path, old, new)) = env_naming_host(&template, host, &right) else {
            return Ok(no_fix(
                summary,
                root_cause,
                evidence,
                format!(
                    "No env var of container {container} holds {host}; change the application's configuration to use {right}."
                ),
            ));
        };
        let name = template
            .object
            .pointer(&path.replace("/value", "/name"))
            .and_then(Value::as_str)
            .unwrap_or("the variable")
            .to_string();
        evidence.push(format!(
            "{} {} sets {name}={old}",
            case.report.spec.workload.kind, case.report.spec.workload.name
        ));
        let explanation = format!(
            "Set {name} from {old:?} to {new:?}, the Service that exists and serves {endpoint}'s port."
        );
        return Ok(fixed(
            case,
            findings(summary, root_cause, evidence),
            guarded_replace(path, json!(old), json!(new)),
            explanation,
        ));
    }
    let ready = svc["readyEndpoints"].as_u64().unwrap_or(0);
    let not_ready: Vec<String> = svc["notReadyPods"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(str::to_string))
        .collect();
    if ready == 0 {
        let backing = if not_ready.is_empty() {
            format!("its selector {} matches no Pod", svc["selector"])
        } else {
            format!("its Pods {} are not ready", not_ready.join(", "))
        };
        evidence.push(format!(
            "Service {service_name} has no ready endpoints: {backing}"
        ));
        return Ok(no_fix(
            format!(
                "Container {container} crash-loops: Service {service_name} has no ready endpoints."
            ),
            format!(
                "The dependency {service_name} is down: Service {service_name} exists but {backing}, so {endpoint} refuses connections."
            ),
            evidence,
            format!(
                "Fix the workload behind Service {service_name} first (`kubectl get pods -l <selector> -n {ns}`); this Pod recovers once it is ready."
            ),
        ));
    }
    if let Some(want) = port.filter(|p| !ports.is_empty() && !ports.contains(p)) {
        let listed = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        evidence.push(format!(
            "Service {service_name} serves port(s) {listed}, not {want}"
        ));
        let summary = format!(
            "Container {container} connects to {service_name} on port {want}, but the Service serves {listed}."
        );
        let root_cause = format!(
            "Port mismatch: the application uses {endpoint}, while Service {service_name} listens on {listed}."
        );
        if ports.len() == 1
            && let Some(template) = workload_template(case, s, container).await?
        {
            let right = ports[0];
            let env_fix = env_with_port(&template, want)
                .map(|(path, name)| (path, want.to_string(), right.to_string(), name))
                .or_else(|| {
                    env_naming_host(
                        &template,
                        &format!("{host}:{want}"),
                        &format!("{host}:{right}"),
                    )
                    .map(|(path, old, new)| (path.clone(), old, new, "the variable".into()))
                });
            if let Some((path, old, new, name)) = env_fix {
                let explanation = format!(
                    "Point {name} at port {right}, the port Service {service_name} serves."
                );
                return Ok(fixed(
                    case,
                    findings(summary, root_cause, evidence),
                    guarded_replace(path, json!(old), json!(new)),
                    explanation,
                ));
            }
        }
        return Ok(no_fix(
            summary,
            root_cause,
            evidence,
            format!("Configure the application to use port {listed} of {service_name}."),
        ));
    }
    evidence.push(format!(
        "Service {service_name} has {ready} ready endpoint(s) on port(s) {:?}",
        ports
    ));
    Ok(no_fix(
        format!(
            "Container {container} gets {what} from {endpoint} although Service {service_name} has ready endpoints."
        ),
        format!(
            "Service {service_name} exists with {ready} ready endpoint(s), yet {endpoint} refused the connection: its targetPort may not match what the backing Pods listen on, or a NetworkPolicy blocks the traffic."
        ),
        evidence,
        format!(
            "Compare Service {service_name}'s targetPort with the backing containers' ports, and check NetworkPolicies in {ns}."
        ),
    ))
}

// ---- Pending --------------------------------------------------------------------------------

fn tolerates(case: &Case, taint: &str) -> bool {
    // taint is key=value:Effect or key:Effect
    let (key_value, effect) = taint.rsplit_once(':').unwrap_or((taint, ""));
    if effect == "PreferNoSchedule" {
        return true;
    }
    let (key, value) = key_value
        .split_once('=')
        .map(|(k, v)| (k, Some(v)))
        .unwrap_or((key_value, None));
    case.pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_ref())
        .into_iter()
        .flatten()
        .any(|t| {
            let key_ok = t.key.as_deref().is_none_or(|k| k.is_empty() || k == key);
            let op_exists = t.operator.as_deref() == Some("Exists");
            let value_ok = op_exists || t.value.as_deref() == value;
            let effect_ok = t
                .effect
                .as_deref()
                .is_none_or(|e| e.is_empty() || e == effect);
            key_ok && value_ok && effect_ok && (t.key.is_some() || op_exists)
        })
}

async fn pending(case: &Case, s: &mut Session) -> Result<Conclusion, AgentError> {
    let failure = &case.report.spec.failure;
    let mut evidence: Vec<String> = failure
        .evidence
        .iter()
        .filter(|e| e.starts_with("scheduler:") || e.starts_with("the Pod requests"))
        .cloned()
        .collect();
    let reason = failure.reason.as_str();
    let pod = &case.report.spec.pod.name;
    if reason.contains("PersistentVolumeClaim") {
        let claims: Vec<String> = case
            .pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .map(|c| c.claim_name.clone())
            })
            .collect();
        let mut details = Vec::new();
        for claim in &claims {
            let pvc = s
                .act(
                    format!("The scheduler says the Pod has an unbound PersistentVolumeClaim; it mounts {claim}."),
                    "Read the claim: its phase and storage class say why it is not bound.",
                    "inspect_object",
                    json!({"kind": "PersistentVolumeClaim", "name": claim}),
                )
                .await?;
            match json_of(&pvc) {
                Some(obj) => {
                    let phase = obj
                        .pointer("/status/phase")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown");
                    let class = obj
                        .pointer("/spec/storageClassName")
                        .and_then(Value::as_str)
                        .unwrap_or("(default)");
                    details.push(format!(
                        "PersistentVolumeClaim {claim} is {phase} with storageClassName {class}"
                    ));
                }
                None => evidence.push(format!(
                    "PersistentVolumeClaim {claim} could not be read: {}",
                    pvc.text.trim_start_matches("error: ")
                )),
            }
            let events = s
                .act(
                    "The claim is not bound.",
                    "The provisioner's events say why.",
                    "list_events",
                    json!({"kind": "PersistentVolumeClaim", "name": claim}),
                )
                .await?;
            if let Some(last) =
                json_of(&events).and_then(|v| v.as_array().and_then(|a| a.last().cloned()))
            {
                details.push(format!(
                    "claim event {}: {}",
                    last["reason"].as_str().unwrap_or(""),
                    last["message"].as_str().unwrap_or("")
                ));
            }
        }
        evidence.extend(details.iter().cloned());
        let claim_list = if claims.is_empty() {
            "its PersistentVolumeClaim".to_string()
        } else {
            claims.join(", ")
        };
        return Ok(no_fix(
            format!(
                "Pod {pod} cannot be scheduled: PersistentVolumeClaim {claim_list} is not bound."
            ),
            if details.is_empty() {
                format!(
                    "The Pod mounts PersistentVolumeClaim {claim_list}, which is not bound to a volume."
                )
            } else {
                format!(
                    "The Pod mounts PersistentVolumeClaim {claim_list}, which is not bound to a volume: {}.",
                    details.join("; ")
                )
            },
            evidence,
            format!(
                "Fix the claim {claim_list}: a StorageClass that exists and can provision, or a matching PersistentVolume."
            ),
        ));
    }

    let nodes_outcome = s
        .act(
            format!("The scheduler found no node for {pod} ({reason})."),
            "List every node's allocatable resources, free capacity, labels and taints.",
            "list_nodes_capacity",
            json!({}),
        )
        .await?;
    let nodes: Vec<Value> = json_of(&nodes_outcome)
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();

    if reason == "NodeSelectorMismatch" || reason == "UntoleratedTaint" {
        let selector = case
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.node_selector.clone())
            .unwrap_or_default();
        let mut facts = Vec::new();
        for (key, want) in &selector {
            let holders: Vec<String> = nodes
                .iter()
                .filter_map(|n| {
                    n["labels"][key]
                        .as_str()
                        .map(|v| format!("{} has {key}={v}", n["node"].as_str().unwrap_or("")))
                })
                .collect();
            let have = if holders.is_empty() {
                format!("no node has the label {key}")
            } else {
                holders.join(", ")
            };
            facts.push(format!("nodeSelector {key}={want}: {have}"));
        }
        for node in &nodes {
            for taint in node["taints"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !tolerates(case, taint) {
                    facts.push(format!(
                        "node {} has taint {taint}, which the Pod does not tolerate",
                        node["node"].as_str().unwrap_or("")
                    ));
                }
            }
        }
        evidence.extend(facts.iter().cloned());
        let (summary, recommendation) = if reason == "NodeSelectorMismatch" && !selector.is_empty()
        {
            let wanted: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (
                format!(
                    "Pod {pod} cannot be scheduled: no node matches its nodeSelector {}.",
                    wanted.join(", ")
                ),
                format!(
                    "Fix the nodeSelector {} in the workload, or add a node with those labels.",
                    wanted.join(", ")
                ),
            )
        } else {
            (
                format!("Pod {pod} cannot be scheduled: the nodes it could use carry taints it does not tolerate."),
                "Add a matching toleration to the workload, or schedule onto untainted nodes; tolerations are not changed by the operator.".to_string(),
            )
        };
        return Ok(no_fix(summary, facts.join("; "), evidence, recommendation));
    }

    // Insufficient resources: state the numbers.
    let (requests, _) = pod_requests(&case.pod);
    let memory = reason == "InsufficientMemory"
        || (reason != "InsufficientCPU" && requests.memory_bytes > 0);
    let (resource, wanted) = if memory {
        ("memory", requests.memory_bytes)
    } else {
        ("cpu", requests.cpu_millis)
    };
    let show = |v: i64| {
        if memory {
            format_bytes(v)
        } else {
            crate::cluster::format_millis(v)
        }
    };
    let usable: Vec<&Value> = nodes
        .iter()
        .filter(|n| n["ready"] == true && n["unschedulable"] != true)
        .filter(|n| {
            n["taints"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .all(|t| tolerates(case, t))
        })
        .collect();
    let field = if memory { "memoryBytes" } else { "cpuMillis" };
    let best = usable
        .iter()
        .max_by_key(|n| n["free"][field].as_i64().unwrap_or(0))
        .copied();
    let largest_allocatable = nodes
        .iter()
        .filter_map(|n| n["allocatable"][field].as_i64())
        .max()
        .unwrap_or(0);
    let Some(best) = best else {
        return Ok(no_fix(
            format!("Pod {pod} cannot be scheduled: no Ready, untainted node exists for it."),
            "Every node is unready, cordoned or tainted against this Pod.".into(),
            evidence,
            "Add schedulable capacity.".into(),
        ));
    };
    let best_name = best["node"].as_str().unwrap_or("").to_string();
    let best_free = best["free"][field].as_i64().unwrap_or(0);
    let usage = s
        .act(
            format!(
                "The most free {resource} on a node the Pod may use is {} on {best_name}.",
                show(best_free)
            ),
            format!("Read {best_name}'s usage in detail, as kubectl describe node shows it."),
            "get_resource_usage",
            json!({"nodeName": best_name}),
        )
        .await?;
    if let Some(u) = json_of(&usage) {
        evidence.push(format!(
            "node {best_name}: allocatable {} {resource}, {} requested by {} Pods, {} free",
            show(u["allocatable"][field].as_i64().unwrap_or(0)),
            show(u["requests"][field].as_i64().unwrap_or(0)),
            u["pods"],
            show(u["free"][field].as_i64().unwrap_or(0)),
        ));
    }
    let numbers = format!(
        "requests {} {resource}; the most free allocatable on any node it may use is {} on {best_name}",
        show(wanted),
        show(best_free)
    );
    evidence.push(numbers.clone());
    let summary = format!("Pod {pod} cannot be scheduled: it {numbers}.");
    let root_cause = format!("Insufficient {resource}: the Pod {numbers}, so no node can take it.");

    // Lowering the request is only right when history says a smaller one worked.
    let container = failure_container(case);
    let container = if container.is_empty() {
        case.pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .map(|c| c.name.clone())
            .unwrap_or_default()
    } else {
        container
    };
    if memory && case.report.spec.workload.kind == "Deployment" {
        let history = s
            .act(
                "Lowering the request would make the Pod fit, but only if a smaller request is known to work.",
                "Read the rollout history: did an earlier revision run with a smaller memory request?",
                "rollout_history",
                json!({"name": case.report.spec.workload.name}),
            )
            .await?;
        let revisions: Vec<Value> = json_of(&history)
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        let current_request = pod_container(case, &container).and_then(|c| {
            c.resources
                .as_ref()?
                .requests
                .as_ref()?
                .get("memory")
                .cloned()
        });
        let current_limit = pod_container(case, &container)
            .and_then(|c| {
                c.resources
                    .as_ref()?
                    .limits
                    .as_ref()?
                    .get("memory")
                    .cloned()
            })
            .and_then(|q| memory_bytes(&q));
        let earlier = revisions.iter().skip(1).find(|r| {
            r["readyReplicas"].as_i64().unwrap_or(0) > 0
                || r["availableReplicas"].as_i64().unwrap_or(0) > 0
        });
        let earlier_request = earlier.and_then(|r| {
            r["containers"]
                .as_array()?
                .iter()
                .find(|c| c["name"] == container.as_str())?["resources"]["requests"]["memory"]
                .as_str()
                .map(str::to_string)
        });
        if let (Some(current), Some(old)) = (current_request, earlier_request) {
            let old_bytes = memory_bytes(&k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                old.clone(),
            ))
            .unwrap_or(i64::MAX);
            let others = wanted - memory_bytes(&current).unwrap_or(0);
            let fits = old_bytes + others <= best_free;
            let within_limit = current_limit.is_none_or(|l| old_bytes <= l);
            if fits
                && within_limit
                && old_bytes < memory_bytes(&current).unwrap_or(0)
                && let Some(template) = workload_template(case, s, &container).await?
                && template.get("/resources/requests/memory") == Some(&json!(current.0))
            {
                let revision = earlier
                    .map(|r| r["revision"].clone())
                    .unwrap_or(Value::Null);
                evidence.push(format!(
                    "revision {revision} ran with a memory request of {old}"
                ));
                let explanation = format!(
                    "Lower container {container}'s memory request from {} to {old}, the request revision {revision} ran with; it fits on {best_name}.",
                    current.0
                );
                let path = format!("{}/resources/requests/memory", template.container_path);
                return Ok(fixed(
                    case,
                    findings(summary, root_cause, evidence),
                    guarded_replace(path, json!(current.0), json!(old)),
                    explanation,
                ));
            }
        }
    }
    let recommendation = if wanted > largest_allocatable {
        format!(
            "The Pod requests more {resource} ({}) than any node has allocatable ({} at most): it cannot fit anywhere. Add larger nodes or reduce what the application needs.",
            show(wanted),
            show(largest_allocatable)
        )
    } else {
        format!(
            "Add capacity: a node with at least {} {resource} free (scale the node pool), or free {resource} on {best_name}. Lowering the request to fit is not safe without evidence the application needs less.",
            show(wanted)
        )
    };
    Ok(no_fix(summary, root_cause, evidence, recommendation))
}

// ---- ImagePullBackOff -----------------------------------------------------------------------

async fn image_pull(case: &Case, s: &mut Session) -> Result<Conclusion, AgentError> {
    let failure = &case.report.spec.failure;
    let container = failure_container(case);
    let image = pod_container(case, &container)
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let registry = image
        .split('/')
        .next()
        .filter(|r| r.contains('.') || r.contains(':'))
        .unwrap_or("docker.io")
        .to_string();
    let mut evidence: Vec<String> = failure.evidence.iter().take(3).cloned().collect();
    if failure.reason == "RegistryAuthFailed" {
        let secrets = case
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default();
        let secrets = if secrets.is_empty() {
            "the Pod has no imagePullSecrets".to_string()
        } else {
            format!(
                "the Pod uses imagePullSecrets {}",
                secrets
                    .iter()
                    .map(|s| s.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        evidence.push(secrets.clone());
        return Ok(no_fix(
            format!(
                "Image {image} cannot be pulled: registry {registry} refused the credentials (auth failure)."
            ),
            format!("Registry {registry} requires authentication for {image} and {secrets}."),
            evidence,
            format!(
                "Create a docker-registry Secret with pull access to {image} and reference it in imagePullSecrets (or in the ServiceAccount); the operator does not handle credentials."
            ),
        ));
    }
    let not_found = failure.reason == "ImageNotFound";
    let summary = format!(
        "Image {image} cannot be pulled: {}.",
        if not_found {
            "the tag does not exist in the registry"
        } else {
            "the pull fails"
        }
    );
    if case.report.spec.workload.kind != "Deployment" {
        return Ok(no_fix(
            summary.clone(),
            summary,
            evidence,
            "Push the image or fix the tag.".into(),
        ));
    }
    let history = s
        .act(
            format!("Container {container} waits on image {image}, which the registry does not serve."),
            "After a rollout, the previous revision's image is the one known to work: read the rollout history.",
            "rollout_history",
            json!({"name": case.report.spec.workload.name}),
        )
        .await?;
    let revisions: Vec<Value> = json_of(&history)
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    let image_of = |r: &Value| -> Option<String> {
        r["containers"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == container.as_str())?["image"]
            .as_str()
            .map(str::to_string)
    };
    let healthy = revisions
        .iter()
        .filter(|r| image_of(r).is_some_and(|i| i != image))
        .find(|r| {
            r["readyReplicas"].as_i64().unwrap_or(0) > 0
                || r["availableReplicas"].as_i64().unwrap_or(0) > 0
        });
    let root_cause = format!(
        "The rollout changed container {container}'s image to {image}, a tag the registry does not have."
    );
    let Some(previous) = healthy else {
        return Ok(no_fix(
            summary,
            root_cause,
            evidence,
            format!("Push {image} to {registry} or set an existing tag."),
        ));
    };
    let old_image = image_of(previous).unwrap_or_default();
    let revision = previous["revision"].clone();
    evidence.push(format!(
        "revision {revision} runs {old_image} with {} ready Pod(s)",
        previous["readyReplicas"]
    ));
    let Some(template) = workload_template(case, s, &container).await? else {
        return Ok(no_fix(
            summary,
            root_cause,
            evidence,
            format!("Roll back to {old_image}."),
        ));
    };
    if template.get("/image") != Some(&json!(image)) {
        return Ok(no_fix(
            summary,
            root_cause,
            evidence,
            format!("The workload no longer uses {image}; check the rollout."),
        ));
    }
    let path = format!("{}/image", template.container_path);
    let explanation = format!(
        "Roll container {container} back to {old_image}, the image of revision {revision}, which has ready Pods."
    );
    Ok(Conclusion {
        findings: findings(summary, root_cause, evidence),
        patch: Some(patch(
            case,
            guarded_replace(path, json!(image), json!(old_image)),
            explanation,
        )),
        recommendation: Some(format!("Then push {image} before rolling forward again.")),
    })
}

// ---- OOMKilled ------------------------------------------------------------------------------

/// How much the memory limit grows after an OOM kill.
pub const OOM_FACTOR: i64 = 2;
/// The highest limit the rules brain suggests; the patch-safety filter has its own ceiling.
const OOM_CEILING: i64 = 8 << 30;

static HEAP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-Xmx(\d+)([kKmMgG])").expect("static regex"));

fn mebibytes_rounded_up(bytes: i64) -> i64 {
    let mi = 1 << 20;
    ((bytes + 64 * mi - 1) / (64 * mi)) * 64 * mi
}

fn as_quantity(bytes: i64) -> String {
    if bytes % (1 << 30) == 0 {
        format!("{}Gi", bytes >> 30)
    } else {
        format!("{}Mi", bytes >> 20)
    }
}

async fn oom_killed(case: &Case, s: &mut Session) -> Result<Conclusion, AgentError> {
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
    let limit_q = spec.and_then(|c| {
        c.resources
            .as_ref()?
            .limits
            .as_ref()?
            .get("memory")
            .cloned()
    });
    let request_q = spec.and_then(|c| {
        c.resources
            .as_ref()?
            .requests
            .as_ref()?
            .get("memory")
            .cloned()
    });
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
        json_of(&nodes)
            .and_then(|v| {
                v.as_array().map(|a| {
                    a.iter()
                        .filter_map(|n| n["allocatable"]["memoryBytes"].as_i64())
                        .max()
                        .unwrap_or(0)
                })
            })
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
    Ok(Conclusion {
        findings: findings(summary, root_cause, evidence),
        patch: Some(patch(case, operations, explanation)),
        recommendation: None,
    })
}

// ---- CreateContainerConfigError -------------------------------------------------------------

async fn config_error(case: &Case, s: &mut Session) -> Result<Conclusion, AgentError> {
    let container = failure_container(case);
    let evidence: Vec<String> = case
        .report
        .spec
        .failure
        .evidence
        .iter()
        .take(3)
        .cloned()
        .collect();
    let missing = evidence.iter().find_map(|e| missing_config(e));
    let Some(missing) = missing else {
        return Ok(no_fix(
            format!(
                "Container {container} cannot be created: its configuration refers to something missing."
            ),
            evidence.first().cloned().unwrap_or_default(),
            evidence,
            "Check the ConfigMaps and Secrets the container refers to.".into(),
        ));
    };
    let mut evidence = evidence;
    let object = s
        .act(
            format!("The kubelet cannot find {}.", missing.describe()),
            format!(
                "Read {} {}: does it exist, and which keys does it have?",
                missing.kind, missing.name
            ),
            "inspect_object",
            json!({"kind": missing.kind, "name": missing.name}),
        )
        .await?;
    let state = match json_of(&object) {
        Some(obj) => {
            let keys: Vec<String> = obj["data"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone())
                .collect();
            Some(format!(
                "{} {} exists with keys [{}]",
                missing.kind,
                missing.name,
                keys.join(", ")
            ))
        }
        None if object.text.contains("not found:") => Some(format!(
            "{} {} does not exist in namespace {}",
            missing.kind,
            missing.name,
            case.namespace()
        )),
        None => {
            evidence.push(format!(
                "{} {} could not be read: {}",
                missing.kind,
                missing.name,
                object.text.trim_start_matches("error: ")
            ));
            None
        }
    };
    evidence.extend(state.clone());
    let what = missing.describe();
    let known = state.map(|s| format!(": {s}")).unwrap_or_default();
    Ok(no_fix(
        format!("Container {container} cannot start: {what} is missing."),
        format!("Container {container} refers to {what}, which the kubelet cannot find{known}."),
        evidence,
        match &missing.key {
            Some(key) => format!(
                "Add key {key} to {} {} (or fix the reference in container {container}); the operator does not write configuration.",
                missing.kind, missing.name
            ),
            None => format!(
                "Create {} {} in namespace {} (or fix the reference in container {container}).",
                missing.kind,
                missing.name,
                case.namespace()
            ),
        },
    ))
}

// ---- ProbeFailure ---------------------------------------------------------------------------

async fn probe_failure(case: &Case, s: &mut Session) -> Result<Conclusion, AgentError> {
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
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clues_from_real_shaped_logs() {
        let cases = [
            (
                "Error: Connection refused to redis:6379",
                Clue::ConnectionRefused {
                    host: "redis".into(),
                    port: Some(6379),
                },
            ),
            (
                "dial tcp 10.96.0.12:5432: connect: connection refused",
                Clue::ConnectionRefused {
                    host: "10.96.0.12".into(),
                    port: Some(5432),
                },
            ),
            (
                "Error: connect ECONNREFUSED 10.96.4.2:27017 (mongo.shop.svc:27017)",
                Clue::ConnectionRefused {
                    host: "mongo.shop.svc".into(),
                    port: Some(27017),
                },
            ),
            (
                "psql: error: could not connect to server: Connection refused. Is the server running on host \"postgres\" (10.0.0.5) and accepting TCP/IP connections on port 5432?",
                Clue::ConnectionRefused {
                    host: "postgres".into(),
                    port: Some(5432),
                },
            ),
            (
                "redis.exceptions.ConnectionError: Error 111 connecting to cache:6380. Connection refused.",
                Clue::ConnectionRefused {
                    host: "cache".into(),
                    port: Some(6380),
                },
            ),
            (
                "dial tcp: lookup payments-db on 10.96.0.10:53: no such host",
                Clue::DnsFailure {
                    host: "payments-db".into(),
                    port: None,
                },
            ),
            (
                "Error: getaddrinfo ENOTFOUND rabbitmq",
                Clue::DnsFailure {
                    host: "rabbitmq".into(),
                    port: None,
                },
            ),
            (
                "FATAL: environment variable DATABASE_URL is not set",
                Clue::MissingSetting {
                    name: "DATABASE_URL".into(),
                },
            ),
            (
                "KeyError: 'STRIPE_API_KEY'",
                Clue::MissingSetting {
                    name: "STRIPE_API_KEY".into(),
                },
            ),
            (
                "mkdir /data/cache: permission denied",
                Clue::PermissionDenied {
                    path: Some("/data/cache".into()),
                },
            ),
            (
                "exec: \"gunicorn\": executable file not found in $PATH",
                Clue::CommandNotFound {
                    command: Some("gunicorn".into()),
                },
            ),
            (
                "panic: runtime error: invalid memory address or nil pointer dereference",
                Clue::Crash {
                    line: "panic: runtime error: invalid memory address or nil pointer dereference"
                        .into(),
                },
            ),
        ];
        for (line, expected) in cases {
            let clues = read_clues(&format!("starting up\n{line}\n"));
            assert_eq!(clues.first().map(|c| &c.0), Some(&expected), "{line}");
        }
        assert!(read_clues("all good\nserving on :8080\n").is_empty());
    }

    #[test]
    fn quantities_round_up_to_64mi() {
        assert_eq!(as_quantity(mebibytes_rounded_up(512 << 20)), "512Mi");
        assert_eq!(as_quantity(mebibytes_rounded_up((960 << 20) + 1)), "1Gi");
        assert_eq!(as_quantity(mebibytes_rounded_up(8 << 30)), "8Gi");
    }
}

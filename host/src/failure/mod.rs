//! Classifying a Pod into failure classes, with the evidence a person would cite, from its status
//! (container states, current and last) and its events. Pure functions over k8s-openapi types.

mod config_file;
mod eviction;
mod exec;
mod failed_create;
mod gate;
mod image_pull;
mod resolver;
mod scheduling;
mod starting;

pub use config_file::{ConfigSource, config_source};
pub use eviction::{
    ContainerUse, EndedByNode, EvictionCause, EvictionMessage, LOST_NODE_TAINTS, Shortfall,
    StorageLimit, ended_by_its_node, evicted_at,
};
pub use exec::ExecFailure;
pub use failed_create::{
    CREATORS, Refusal, creator_kind, detect_failed_create, short_of_pods, would_be_pod,
};
pub use gate::{awaits_scheduler, may_be_failing};
pub use image_pull::{ImagePullCause, quoted_marker, registry_of, repository_of};
pub use resolver::Resolver;
pub use scheduling::{
    Obstacle, PendingReason, SchedulingFailure, SchedulingReason, parse_scheduling_message,
};
pub use starting::{
    AttachFailure, INIT_STUCK_AFTER, STUCK_AFTER, SandboxFailure, detect_init_running,
    init_running, starting, starting_since,
};

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Event, Pod, Probe};

use crate::cluster::{ResourceAmounts, format_bytes, format_millis, pod_requests};
use crate::crd::{Failure, FailureClass};

/// One failure class found on a Pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    pub class: FailureClass,
    pub reason: String,
    pub container: Option<String>,
    pub evidence: Vec<String>,
}

impl From<Detection> for Failure {
    fn from(d: Detection) -> Self {
        Failure {
            class: d.class,
            reason: d.reason,
            container: d.container,
            evidence: d.evidence,
        }
    }
}

/// Evidence lists stay readable and within the CRD's bound.
const MAX_EVIDENCE: usize = 16;
/// Events cited per detection.
const MAX_EVENTS: usize = 4;

const IMAGE_PULL_REASONS: [&str; 6] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "ErrImageNeverPull",
    "RegistryUnavailable",
    "SignatureValidationFailed",
];

/// Image failures the kubelet decides without a registry: read as they are.
const KUBELET_IMAGE_VERDICTS: [&str; 2] = ["InvalidImageName", "ErrImageNeverPull"];

/// The failure classes of a Pod, at most one per class (the first failing container names it;
/// the others add evidence). `events` are the Pod's own events.
pub fn detect(pod: &Pod, events: &[Event]) -> Vec<Detection> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    if matches!(status.phase.as_deref(), Some("Succeeded")) {
        return Vec::new();
    }
    let events: Vec<&Event> = events.iter().filter(|e| is_about(e, pod)).collect();
    // An evicted (or shut down, or refused) Pod's containers were stopped by the kubelet, not
    // failing on their own; a lost Node's Pods show only what its kubelet last said.
    if let Some(evicted) = eviction::detect_ended_by_node(pod, &events)
        .or_else(|| eviction::detect_node_lost(pod, &events))
    {
        return vec![evicted];
    }
    if let Some(pending) = detect_unschedulable(pod, &events) {
        return vec![pending];
    }
    if let Some(not_starting) = starting::detect_not_starting(pod, &events) {
        return vec![not_starting];
    }
    let mut found: Vec<Detection> = Vec::new();
    let mut add = |d: Detection| match found.iter_mut().find(|f| f.class == d.class) {
        Some(existing) => {
            for line in d.evidence {
                if existing.evidence.len() < MAX_EVIDENCE && !existing.evidence.contains(&line) {
                    existing.evidence.push(line);
                }
            }
        }
        None => found.push(d),
    };
    let spec = pod.spec.as_ref();
    let failed = failed_for_good(pod);
    let statuses = status
        .init_container_statuses
        .iter()
        .flatten()
        .map(|s| (s, true))
        .chain(
            status
                .container_statuses
                .iter()
                .flatten()
                .map(|s| (s, false)),
        );
    for (cs, init) in statuses {
        let container = spec.and_then(|s| {
            let list = if init {
                s.init_containers.as_ref()
            } else {
                Some(&s.containers)
            };
            list.and_then(|l| l.iter().find(|c| c.name == cs.name))
        });
        if let Some(d) = detect_container(cs, init, container, &events, failed) {
            add(d);
        }
    }
    for d in detect_probe_failures(pod, &events) {
        add(d);
    }
    // The kubelet stopped a Pod that outran its activeDeadlineSeconds: its containers' exit
    // (137, 143) is the kill, not their own failure.
    if failed && status.reason.as_deref() == Some("DeadlineExceeded") {
        let deadline = spec
            .and_then(|s| s.active_deadline_seconds)
            .map(|d| format!("activeDeadlineSeconds ({d}s)"))
            .unwrap_or("activeDeadlineSeconds".into());
        for d in found
            .iter_mut()
            .filter(|d| d.class == FailureClass::CrashLoopBackOff)
        {
            d.reason = "DeadlineExceeded".into();
            d.evidence.insert(
                0,
                format!(
                    "the Pod ran longer than its {deadline} and the kubelet stopped it: {}",
                    status.message.as_deref().unwrap_or("DeadlineExceeded")
                ),
            );
        }
    }
    found
}

/// Whether `shown`, what `detect` found in the Pod's status alone, is all its events could tell:
/// every failure is named in full by the words the events would only cite again (the pull error,
/// in the back-off message too since kubelet 1.32; the missing ConfigMap or Secret; the
/// scheduler's condition), and no container runs, so none can fail a probe. Opening a report
/// then reads no events: in a mass failure that is one API request less per report.
pub fn status_suffices(pod: &Pod, shown: &[Detection]) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    let running = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .any(|cs| cs.state.as_ref().is_some_and(|s| s.running.is_some()));
    let scheduler_said = || {
        status.conditions.iter().flatten().any(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.message.as_deref().is_some_and(|m| !m.trim().is_empty())
        })
    };
    !shown.is_empty()
        && !running
        && shown.iter().all(|d| match d.class {
            FailureClass::ImagePullBackOff => {
                image_pull::ImagePullCause::parse(&d.reason) != image_pull::ImagePullCause::Unknown
                    || KUBELET_IMAGE_VERDICTS.contains(&d.reason.as_str())
            }
            FailureClass::CreateContainerConfigError => d.reason != "CreateContainerConfigError",
            FailureClass::Pending => scheduler_said(),
            _ => false,
        })
}

fn is_about(event: &Event, pod: &Pod) -> bool {
    let o = &event.involved_object;
    o.kind.as_deref().is_none_or(|k| k == "Pod")
        && o.name == pod.metadata.name
        && match (o.uid.as_deref(), pod.metadata.uid.as_deref()) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
}

/// `Warning BackOff (x34, last 2026-11-25T09:41:07Z): message`. Events written through
/// events.k8s.io (the scheduler's) carry their count and time in `series` and `eventTime`.
fn cite(event: &Event) -> String {
    let count = event
        .count
        .or_else(|| event.series.as_ref().and_then(|s| s.count));
    let count = count
        .filter(|c| *c > 1)
        .map(|c| format!("x{c}, "))
        .unwrap_or_default();
    let when = event
        .last_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .or_else(|| {
            event
                .series
                .as_ref()
                .and_then(|s| s.last_observed_time.as_ref())
                .map(|t| t.0.to_string())
        })
        .or_else(|| event.event_time.as_ref().map(|t| t.0.to_string()))
        .unwrap_or_else(|| "time unknown".into());
    format!(
        "event {} {} ({count}last {when}): {}",
        event.type_.as_deref().unwrap_or("Normal"),
        event.reason.as_deref().unwrap_or(""),
        event.message.as_deref().unwrap_or("").trim()
    )
}

/// The newest matching events, cited: the latest word of the kubelet or scheduler matters most.
fn cite_events(events: &[&Event], keep: impl Fn(&Event) -> bool) -> Vec<String> {
    events
        .iter()
        .rev()
        .filter(|e| keep(e))
        .take(MAX_EVENTS)
        .map(|e| cite(e))
        .collect()
}

fn event_container(event: &Event) -> Option<&str> {
    let path = event.involved_object.field_path.as_deref()?;
    let start = path.find('{')? + 1;
    let end = path.rfind('}')?;
    path.get(start..end)
}

fn detect_unschedulable(pod: &Pod, events: &[&Event]) -> Option<Detection> {
    let status = pod.status.as_ref()?;
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some();
    if scheduled || status.phase.as_deref().is_some_and(|p| p != "Pending") {
        return None;
    }
    let condition = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    let failed_scheduling: Vec<&&Event> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedScheduling"))
        .collect();
    let message = failed_scheduling
        .last()
        .and_then(|e| e.message.clone())
        .or_else(|| condition.and_then(|c| c.message.clone()));
    if condition.is_none() && failed_scheduling.is_empty() {
        return None;
    }
    let mut evidence = Vec::new();
    if let Some(c) = condition {
        evidence.push(format!(
            "PodScheduled=False ({}): {}",
            c.reason.as_deref().unwrap_or("Unschedulable"),
            c.message.as_deref().unwrap_or("no message")
        ));
    }
    let parsed = message
        .as_deref()
        .map(parse_scheduling_message)
        .unwrap_or_default();
    for reason in &parsed.reasons {
        let nodes = reason
            .nodes
            .map(|n| format!("{n} node(s): "))
            .unwrap_or_default();
        evidence.push(format!("scheduler: {nodes}{}", reason.text));
    }
    let (requests, _) = pod_requests(pod);
    if requests != ResourceAmounts::default() {
        evidence.push(format!(
            "the Pod requests cpu {} and memory {} in all",
            format_millis(requests.cpu_millis),
            format_bytes(requests.memory_bytes)
        ));
    }
    if let Some(selector) = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_selector.as_ref())
        .filter(|s| !s.is_empty())
    {
        let pairs: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        evidence.push(format!("nodeSelector: {}", pairs.join(", ")));
    }
    for claim in pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
    {
        evidence.push(format!("mounts PersistentVolumeClaim {}", claim.claim_name));
    }
    evidence.extend(
        cite_events(events, |e| e.reason.as_deref() == Some("FailedScheduling"))
            .into_iter()
            .take(1),
    );
    Some(Detection {
        class: FailureClass::Pending,
        reason: parsed.reason(),
        container: None,
        evidence,
    })
}

/// Whether `pod` failed for good because its containers did: phase `Failed` under a restart
/// policy that lets a container's exit end the Pod (a Job's Pod, `restartPolicy: Never`). Its
/// containers' last word is their current terminated state. A Pod that restarts its containers
/// (`Always`) fails only for its Node (an eviction, a shutdown, a container the runtime lost),
/// which is no failed run of its own.
pub(crate) fn failed_for_good(pod: &Pod) -> bool {
    let restarts = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    restarts != "Always" && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
}

/// What an exit code usually means, for the evidence line.
pub fn exit_code_meaning(code: i32) -> Option<&'static str> {
    Some(match code {
        126 => "command found but not executable (permission denied?)",
        127 => "command not found",
        128 => "the runtime could not start the process",
        134 => "aborted (SIGABRT)",
        137 => "killed (SIGKILL): out of memory or by the kubelet",
        139 => "segmentation fault (SIGSEGV)",
        143 => "terminated (SIGTERM)",
        _ => return None,
    })
}

fn describe_termination(cs: &ContainerStatus, current: bool) -> Option<String> {
    let state = if current {
        cs.state.as_ref()
    } else {
        cs.last_state.as_ref()
    };
    let t = state?.terminated.as_ref()?;
    let meaning = exit_code_meaning(t.exit_code)
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    let ran = match (&t.started_at, &t.finished_at) {
        (Some(s), Some(f)) => {
            let secs = f.0.as_second() - s.0.as_second();
            // kubectl's way: `45s`, `3m5s`, `10h`.
            format!(
                " after {}",
                crate::kubectl_sre::age(k8s_openapi::jiff::SignedDuration::from_secs(secs))
            )
        }
        _ => String::new(),
    };
    let at = t
        .finished_at
        .as_ref()
        .map(|f| format!(" at {}", f.0))
        .unwrap_or_default();
    let message = t
        .message
        .as_deref()
        .map(|m| format!("; message: {}", m.trim()))
        .unwrap_or_default();
    Some(format!(
        "container {}: {} run exited with code {} ({}{meaning}){ran}{at}{message}",
        cs.name,
        if current { "its" } else { "the last" },
        t.exit_code,
        t.reason.as_deref().unwrap_or("no reason")
    ))
}

fn detect_container(
    cs: &ContainerStatus,
    init: bool,
    container: Option<&Container>,
    events: &[&Event],
    pod_failed: bool,
) -> Option<Detection> {
    let waiting = cs.state.as_ref().and_then(|s| s.waiting.as_ref());
    let waiting_reason = waiting.and_then(|w| w.reason.as_deref()).unwrap_or("");
    let last_terminated = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    let current_terminated = cs.state.as_ref().and_then(|s| s.terminated.as_ref());
    let kind = if init { "init container" } else { "container" };
    let name = cs.name.clone();
    let about_container = |e: &Event| event_container(e).is_none_or(|c| c == name);
    let waiting_line = waiting.map(|w| {
        format!(
            "{kind} {}: waiting in {waiting_reason}{}",
            cs.name,
            w.message
                .as_deref()
                .map(|m| format!(": {}", m.trim()))
                .unwrap_or_default()
        )
    });

    let oom = |t: Option<&k8s_openapi::api::core::v1::ContainerStateTerminated>| {
        t.is_some_and(|t| t.reason.as_deref() == Some("OOMKilled"))
    };
    if oom(last_terminated) || oom(current_terminated) {
        let mut evidence: Vec<String> = waiting_line.into_iter().collect();
        evidence.extend(describe_termination(cs, false));
        evidence.extend(describe_termination(cs, true));
        evidence.push(format!(
            "{kind} {}: restarted {} times",
            cs.name, cs.restart_count
        ));
        if let Some(limits) = container.and_then(|c| c.resources.as_ref()) {
            let memory = |m: Option<
                &std::collections::BTreeMap<
                    String,
                    k8s_openapi::apimachinery::pkg::api::resource::Quantity,
                >,
            >| {
                m.and_then(|m| m.get("memory"))
                    .map(|q| q.0.clone())
                    .unwrap_or_else(|| "unset".into())
            };
            evidence.push(format!(
                "{kind} {}: memory request {}, limit {}",
                cs.name,
                memory(limits.requests.as_ref()),
                memory(limits.limits.as_ref())
            ));
        }
        evidence.extend(cite_events(events, |e| {
            about_container(e) && matches!(e.reason.as_deref(), Some("BackOff" | "OOMKilling"))
        }));
        return Some(Detection {
            class: FailureClass::OomKilled,
            reason: "OOMKilled".into(),
            container: Some(cs.name.clone()),
            evidence,
        });
    }

    // runc cannot start the command: the kubelet says `RunContainerError` between back-offs
    // (`StartError`, exit 128, in the last state), and restarts it as in any crash loop. CRI-O
    // and crun refuse at creation instead (`CreateContainerError`, below): never a restart.
    let waiting_message = waiting.and_then(|w| w.message.as_deref()).unwrap_or("");
    let cannot_start =
        (waiting_reason == "RunContainerError").then(|| ExecFailure::parse(waiting_message));
    // A postStart hook that fails gets its container killed and restarted: the kubelet says
    // `PostStartHookError` at once, then `CrashLoopBackOff` with `FailedPostStartHook` events.
    let hook_failed = waiting_reason == "PostStartHookError"
        || events.iter().any(|e| {
            e.reason.as_deref() == Some("FailedPostStartHook")
                && event_container(e).is_none_or(|c| c == cs.name)
        });
    // A Pod that failed for good (a Job's, a restartPolicy Never Pod's): the container exited
    // with an error once and is not restarted; the Job, if any, starts another Pod instead.
    let failed_for_good = pod_failed && current_terminated.is_some_and(|t| t.exit_code != 0);
    if waiting_reason == "CrashLoopBackOff"
        || cannot_start.is_some()
        || failed_for_good
        || hook_failed
    {
        if killed_by_liveness_probe(&cs.name, events) {
            return None; // the probe is the cause; detect_probe_failures reports it
        }
        let mut evidence: Vec<String> = waiting_line.into_iter().collect();
        let failed_run = if failed_for_good {
            evidence.push(format!(
                "{kind} {}: the Pod failed and is not restarted (a Job's Pod, or restartPolicy Never)",
                cs.name
            ));
            evidence.extend(describe_termination(cs, true));
            current_terminated
        } else {
            evidence.push(format!(
                "{kind} {}: restarted {} times",
                cs.name, cs.restart_count
            ));
            evidence.extend(describe_termination(cs, false));
            last_terminated
        };
        if let Some(c) = container {
            let mut command: Vec<&str> = c.command.iter().flatten().map(String::as_str).collect();
            command.extend(c.args.iter().flatten().map(String::as_str));
            if !command.is_empty() {
                evidence.push(format!("{kind} {}: runs {:?}", cs.name, command.join(" ")));
            }
        }
        evidence.extend(cite_events(events, |e| {
            about_container(e) && e.type_.as_deref() == Some("Warning")
        }));
        let run_error = cannot_start.is_some();
        let exec = cannot_start.flatten().or_else(|| {
            failed_run
                .filter(|t| t.exit_code == 128)
                .and_then(|t| t.message.as_deref())
                .and_then(ExecFailure::parse)
        });
        let reason = match (exec, failed_run) {
            // The hook, not the application, failed: its own command may be the one missing.
            _ if hook_failed => "PostStartHookError".to_string(),
            (Some(exec), _) => exec.reason().to_string(),
            (None, _) if run_error => waiting_reason.to_string(),
            (None, Some(t)) => match t.exit_code {
                127 => "CommandNotFound".to_string(),
                126 => "CommandNotExecutable".to_string(),
                _ => t.reason.clone().unwrap_or_else(|| "Error".into()),
            },
            (None, None) => "Error".into(),
        };
        return Some(Detection {
            class: FailureClass::CrashLoopBackOff,
            reason,
            container: Some(cs.name.clone()),
            evidence,
        });
    }

    if IMAGE_PULL_REASONS.contains(&waiting_reason) {
        let image = container
            .and_then(|c| c.image.clone())
            .unwrap_or_else(|| cs.image.clone());
        let mut evidence: Vec<String> = waiting_line.into_iter().collect();
        evidence.push(format!("{kind} {}: image {image}", cs.name));
        evidence.extend(cite_events(events, |e| {
            about_container(e)
                && e.type_.as_deref() == Some("Warning")
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.contains("ull") || m.contains("image"))
        }));
        // The kubelet's own verdicts, no registry asked: a reference that does not parse, an
        // image a `Never` pull policy requires on the node.
        let reason = if KUBELET_IMAGE_VERDICTS.contains(&waiting_reason) {
            waiting_reason
        } else {
            ImagePullCause::classify(&evidence.join("\n"))
                .reason()
                .unwrap_or(waiting_reason)
        };
        return Some(Detection {
            class: FailureClass::ImagePullBackOff,
            reason: reason.to_string(),
            container: Some(cs.name.clone()),
            evidence,
        });
    }

    if matches!(
        waiting_reason,
        "CreateContainerConfigError" | "CreateContainerError"
    ) {
        let mut evidence: Vec<String> = waiting_line.into_iter().collect();
        let missing = missing_config(waiting_message);
        if let Some(m) = &missing {
            evidence.push(format!("missing: {}", m.describe()));
        }
        evidence.extend(cite_events(events, |e| {
            about_container(e) && e.type_.as_deref() == Some("Warning")
        }));
        let reason = match missing {
            Some(m) => m.reason(),
            None if breaks_run_as_non_root(waiting_message) => "RunAsNonRoot",
            None => ExecFailure::parse(waiting_message)
                .map(|f| f.reason())
                .unwrap_or(waiting_reason),
        };
        return Some(Detection {
            class: FailureClass::CreateContainerConfigError,
            reason: reason.to_string(),
            container: Some(cs.name.clone()),
            evidence,
        });
    }
    None
}

/// The kubelet refuses to create a container that would run as root, or as a user it cannot
/// check, when the Pod or container sets `runAsNonRoot: true` (its three messages).
pub fn breaks_run_as_non_root(message: &str) -> bool {
    message.contains("container has runAsNonRoot and image")
        || message.contains("container's runAsUser breaks non-root policy")
}

/// The ConfigMap, Secret or key a container's configuration refers to and the kubelet could not find.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingConfig {
    /// `ConfigMap` or `Secret`.
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub key: Option<String>,
    /// The Pod's volume that refers to it, when it is a volume and not an env var.
    pub volume: Option<String>,
}

impl MissingConfig {
    /// `key K in ConfigMap N`, `Secret ns/N`, and `, mounted as volume V` for a volume: what
    /// [`missing_config`] reads back from a `missing: ` evidence line.
    pub fn describe(&self) -> String {
        let object = match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        };
        let what = match &self.key {
            Some(key) => format!("key {key} in {object}"),
            None => object,
        };
        match &self.volume {
            Some(v) => format!("{what}, mounted as volume {v}"),
            None => what,
        }
    }

    fn reason(&self) -> &'static str {
        match (self.kind.as_str(), self.key.is_some()) {
            ("Secret", true) => "SecretKeyNotFound",
            ("Secret", false) => "SecretNotFound",
            (_, true) => "ConfigMapKeyNotFound",
            (_, false) => "ConfigMapNotFound",
        }
    }
}

/// Reads the kubelet's messages: `couldn't find key K in ConfigMap ns/name`,
/// `configmap "name" not found`, `secret "name" not found`; and the `missing: ` line detection
/// writes for a volume ([`MissingConfig::describe`]).
pub fn missing_config(message: &str) -> Option<MissingConfig> {
    use regex::Regex;
    use std::sync::LazyLock;
    static KEY: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"couldn't find key (\S+) in (ConfigMap|Secret) (?:([^/\s]+)/)?([^\s.]+)")
            .expect("static regex")
    });
    static OBJECT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r#"(configmap|secret)s? "([^"]+)" not found"#).expect("static regex")
    });
    static DESCRIBED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"^missing: (?:key (\S+) in )?(ConfigMap|Secret) (?:([^/\s]+)/)?([^\s,]+), mounted as volume ([a-z0-9.-]{1,63})$",
        )
        .expect("static regex")
    });
    if let Some(c) = DESCRIBED.captures(message) {
        return Some(MissingConfig {
            kind: c[2].to_string(),
            namespace: c.get(3).map(|m| m.as_str().to_string()),
            name: c[4].to_string(),
            key: c.get(1).map(|m| m.as_str().to_string()),
            volume: Some(c[5].to_string()),
        });
    }
    if let Some(c) = KEY.captures(message) {
        return Some(MissingConfig {
            kind: c[2].to_string(),
            namespace: c.get(3).map(|m| m.as_str().to_string()),
            name: c[4].to_string(),
            key: Some(c[1].to_string()),
            volume: None,
        });
    }
    OBJECT.captures(message).map(|c| MissingConfig {
        kind: if &c[1] == "secret" {
            "Secret".into()
        } else {
            "ConfigMap".into()
        },
        namespace: None,
        name: c[2].to_string(),
        key: None,
        volume: None,
    })
}

fn killed_by_liveness_probe(container: &str, events: &[&Event]) -> bool {
    events.iter().any(|e| {
        e.reason.as_deref() == Some("Killing")
            && event_container(e).is_none_or(|c| c == container)
            && e.message.as_deref().is_some_and(|m| {
                m.contains("failed liveness probe") || m.contains("failed startup probe")
            })
    })
}

fn describe_probe(kind: &str, probe: &Probe) -> String {
    let target = if let Some(http) = &probe.http_get {
        format!(
            "httpGet {}:{}{}",
            http.scheme.as_deref().unwrap_or("HTTP").to_lowercase(),
            port_text(&http.port),
            http.path.as_deref().unwrap_or("/")
        )
    } else if let Some(tcp) = &probe.tcp_socket {
        format!("tcpSocket :{}", port_text(&tcp.port))
    } else if let Some(grpc) = &probe.grpc {
        format!("grpc :{}", grpc.port)
    } else if let Some(exec) = &probe.exec {
        format!(
            "exec {:?}",
            exec.command.clone().unwrap_or_default().join(" ")
        )
    } else {
        "no handler".into()
    };
    format!(
        "{kind} {target} (period {}s, failureThreshold {})",
        probe.period_seconds.unwrap_or(10),
        probe.failure_threshold.unwrap_or(3)
    )
}

fn port_text(port: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString) -> String {
    match port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) => p.to_string(),
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
    }
}

fn detect_probe_failures(pod: &Pod, events: &[&Event]) -> Vec<Detection> {
    let mut found = Vec::new();
    let Some(spec) = pod.spec.as_ref() else {
        return found;
    };
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    for container in &spec.containers {
        let status = statuses.and_then(|ss| ss.iter().find(|s| s.name == container.name));
        let unhealthy = |probe: &str| {
            let prefix = format!("{probe} probe failed");
            move |e: &Event| {
                e.reason.as_deref() == Some("Unhealthy")
                    && event_container(e).is_none_or(|c| c == container.name)
                    && e.message.as_deref().is_some_and(|m| m.starts_with(&prefix))
            }
        };
        let readiness_failing = events.iter().any(|e| unhealthy("Readiness")(e))
            && status.is_some_and(|s| !s.ready)
            && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        let liveness_failing = (events.iter().any(|e| unhealthy("Liveness")(e))
            || events.iter().any(|e| unhealthy("Startup")(e)))
            && (killed_by_liveness_probe(&container.name, events)
                || status.is_some_and(|s| s.restart_count > 0));
        let (probe_kind, reason, probe, matcher) = if liveness_failing {
            let startup = events.iter().any(|e| unhealthy("Startup")(e))
                && !events.iter().any(|e| unhealthy("Liveness")(e));
            if startup {
                (
                    "startupProbe",
                    "StartupProbeFailed",
                    container.startup_probe.as_ref(),
                    unhealthy("Startup"),
                )
            } else {
                (
                    "livenessProbe",
                    "LivenessProbeFailed",
                    container.liveness_probe.as_ref(),
                    unhealthy("Liveness"),
                )
            }
        } else if readiness_failing {
            (
                "readinessProbe",
                "ReadinessProbeFailed",
                container.readiness_probe.as_ref(),
                unhealthy("Readiness"),
            )
        } else {
            continue;
        };
        let mut evidence = Vec::new();
        if let Some(p) = probe {
            evidence.push(format!(
                "container {}: {}",
                container.name,
                describe_probe(probe_kind, p)
            ));
        }
        let ports: Vec<String> = container
            .ports
            .iter()
            .flatten()
            .map(|p| match &p.name {
                Some(n) => format!(
                    "{}/{} ({n})",
                    p.container_port,
                    p.protocol.as_deref().unwrap_or("TCP")
                ),
                None => format!(
                    "{}/{}",
                    p.container_port,
                    p.protocol.as_deref().unwrap_or("TCP")
                ),
            })
            .collect();
        evidence.push(format!(
            "container {}: ports {}",
            container.name,
            if ports.is_empty() {
                "none declared".to_string()
            } else {
                ports.join(", ")
            }
        ));
        if let Some(s) = status {
            evidence.push(format!(
                "container {}: ready={}, restarted {} times",
                container.name, s.ready, s.restart_count
            ));
            evidence.extend(describe_termination(s, false));
        }
        evidence.extend(cite_events(events, &matcher));
        evidence.extend(
            cite_events(events, |e| {
                e.reason.as_deref() == Some("Killing")
                    && event_container(e).is_none_or(|c| c == container.name)
            })
            .into_iter()
            .take(1),
        );
        found.push(Detection {
            class: FailureClass::ProbeFailure,
            reason: reason.into(),
            container: Some(container.name.clone()),
            evidence,
        });
    }
    found
}

#[cfg(test)]
mod tests;

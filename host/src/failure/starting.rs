//! A Pod its kubelet cannot start. A volume does not mount: the ConfigMap or Secret the volume
//! names does not exist, or lacks a key its `items` name (`FailedMount`: `MountVolume.SetUp
//! failed for volume "V" : configmap "N" not found`, `... : configmap references non-existent
//! config key: K`). Or its sandbox cannot be created (`FailedCreatePodSandBox`): the CNI plugin
//! fails to set up its network (the Node's Pod addresses used up, the plugin broken), or the
//! runtime cannot pull the pause image. Or a volume cannot be attached to its Node
//! (`FailedAttachVolume`, the attach/detach controller's: a ReadWriteOnce volume still attached
//! to another Node, "Multi-Attach error", or the storage driver failing). The kubelet and the
//! controller retry with back-off and say so only in those events; the Pod's status shows only `ContainerCreating`, as every starting Pod's does
//! for a moment. So such a Pod is looked at once it has been starting for [`STUCK_AFTER`], and
//! its events decide.

use std::sync::LazyLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod, Volume};
use k8s_openapi::jiff::Timestamp;
use regex::Regex;

use super::{Detection, MAX_EVENTS, MissingConfig, PendingReason, cite_events};
use crate::crd::FailureClass;
use crate::names::NameRule;

/// How long a scheduled Pod may start its containers before its events are read: a volume
/// that does not mount fails in seconds, while an image pull or a slow CSI attach takes longer
/// and is no failure.
pub const STUCK_AFTER: Duration = Duration::from_secs(60);

/// Whether `pod` is starting on its Node: scheduled, `Pending`, and no container has started
/// (each is waiting to be created, or has no status yet).
pub fn starting(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    let scheduled = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
    let creating = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .all(|cs| {
            cs.restart_count == 0
                && cs
                    .state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .is_none_or(|w| {
                        matches!(
                            w.reason.as_deref(),
                            None | Some("ContainerCreating" | "PodInitializing")
                        )
                    })
                && cs
                    .state
                    .as_ref()
                    .is_none_or(|s| s.running.is_none() && s.terminated.is_none())
        });
    scheduled && status.phase.as_deref() == Some("Pending") && creating
}

/// Since when `pod` has been starting: when it was scheduled, else created.
pub fn starting_since(pod: &Pod) -> Option<Timestamp> {
    let scheduled = pod
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0);
    scheduled.or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

static SET_UP: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"MountVolume\.SetUp failed for volume "([a-z0-9.-]{1,63})" : (.{1,512})"#).unwrap()
});
static MISSING_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(configmap|secret) references non-existent (?:config|secret) key: ([-._a-zA-Z0-9]{1,253})")
        .unwrap()
});
static SECRET_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^references non-existent secret key: ([-._a-zA-Z0-9]{1,253})").unwrap()
});

/// The ConfigMap or Secret of `kind` that volume `volume` of `pod` names (a projected volume's
/// first source of that kind that lists `key`, else its first of that kind).
fn source_of(pod: &Pod, volume: &str, kind: &str, key: &str) -> Option<String> {
    let v: &Volume = pod
        .spec
        .as_ref()?
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == volume)?;
    let lists = |items: Option<&Vec<k8s_openapi::api::core::v1::KeyToPath>>| {
        items.into_iter().flatten().any(|i| i.key == key)
    };
    match kind {
        "ConfigMap" => v.config_map.as_ref().map(|c| c.name.clone()).or_else(|| {
            let sources = v.projected.as_ref()?.sources.as_ref()?;
            let maps: Vec<_> = sources
                .iter()
                .filter_map(|s| s.config_map.as_ref())
                .collect();
            maps.iter()
                .find(|c| lists(c.items.as_ref()))
                .or(maps.first())
                .map(|c| c.name.clone())
        }),
        _ => v
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.clone())
            .or_else(|| {
                let sources = v.projected.as_ref()?.sources.as_ref()?;
                let secrets: Vec<_> = sources.iter().filter_map(|s| s.secret.as_ref()).collect();
                secrets
                    .iter()
                    .find(|c| lists(c.items.as_ref()))
                    .or(secrets.first())
                    .map(|c| c.name.clone())
            }),
    }
}

/// What a `FailedMount` message says is missing, and the volume: the object named in the
/// message, or for a missing key, the object the Pod's volume names.
fn missing_for_volume(pod: &Pod, message: &str) -> Option<(String, MissingConfig)> {
    let c = SET_UP.captures(message)?;
    let (volume, why) = (c[1].to_string(), c[2].trim());
    if let Some(mut m) = super::missing_config(why) {
        m.volume = Some(volume.clone());
        return Some((volume, m));
    }
    let (kind, key) = match (MISSING_KEY.captures(why), SECRET_KEY.captures(why)) {
        (Some(k), _) if &k[1] == "secret" => ("Secret", k[2].to_string()),
        (Some(k), _) => ("ConfigMap", k[2].to_string()),
        (None, Some(k)) => ("Secret", k[1].to_string()),
        (None, None) => return None,
    };
    let name = source_of(pod, &volume, kind, &key)?;
    Some((
        volume.clone(),
        MissingConfig {
            kind: kind.into(),
            namespace: None,
            name,
            key: Some(key),
            volume: Some(volume),
        },
    ))
}

/// A starting Pod whose volume does not mount for a missing ConfigMap, Secret or key: the
/// `CreateContainerConfigError` class, as the same reference from an env var would be, so that
/// both are one incident when the object goes missing.
fn detect_failed_mount(pod: &Pod, events: &[&Event]) -> Option<Detection> {
    let failed: Vec<&&Event> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedMount"))
        .collect();
    // The latest message first: the kubelet's retries repeat it.
    let (volume, missing) = failed
        .iter()
        .rev()
        .find_map(|e| missing_for_volume(pod, e.message.as_deref()?))?;
    let mut evidence = vec![
        format!(
            "volume \"{volume}\" cannot be mounted, so no container of the Pod starts (ContainerCreating)"
        ),
        format!("missing: {}", missing.describe()),
    ];
    // The kubelet's own words on the volume first; its later summaries ("Unable to attach or
    // mount volumes: ... timed out") name no cause.
    let set_up = |e: &Event| e.message.as_deref().is_some_and(|m| SET_UP.is_match(m));
    let cited = cite_events(events, |e| {
        e.reason.as_deref() == Some("FailedMount") && set_up(e)
    })
    .into_iter()
    .chain(cite_events(events, |e| {
        e.reason.as_deref() == Some("FailedMount") && !set_up(e)
    }));
    evidence.extend(cited.take(MAX_EVENTS));
    Some(Detection {
        class: FailureClass::CreateContainerConfigError,
        reason: missing.reason().to_string(),
        container: None,
        evidence,
    })
}

/// Why the kubelet could not create a Pod's sandbox, from a `FailedCreatePodSandBox` message
/// (`Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for
/// sandbox "ID": plugin type="calico" failed (add): ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxFailure {
    /// The network setup failed (CNI), rather than the runtime itself.
    pub network: bool,
    /// The CNI plugin that failed (`calico`, `aws-cni`, `bridge`), when the message names it.
    pub plugin: Option<String>,
    /// The Node's range of Pod addresses is used up.
    pub addresses_exhausted: bool,
    /// The sandbox (pause) image the runtime could not pull.
    pub sandbox_image: Option<String>,
}

static PLUGIN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"plugin type="([a-z0-9][a-z0-9._-]{0,62})""#).unwrap());
static SANDBOX_IMAGE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"failed to get sandbox image "([A-Za-z0-9./:@_-]{1,255})""#).unwrap()
});

impl SandboxFailure {
    /// None for a message that is not the kubelet's sandbox failure.
    pub fn parse(message: &str) -> Option<SandboxFailure> {
        if !message.contains("Failed to create pod sandbox") {
            return None;
        }
        let network = message.contains("failed to setup network for sandbox")
            || message.contains("failed to set up sandbox container")
            || PLUGIN.is_match(message);
        Some(SandboxFailure {
            network,
            plugin: PLUGIN.captures(message).map(|c| c[1].to_string()),
            addresses_exhausted: message.contains("no IP addresses available")
                || message.contains("failed to assign an IP address"),
            sandbox_image: SANDBOX_IMAGE.captures(message).map(|c| c[1].to_string()),
        })
    }

    pub fn reason(&self) -> PendingReason {
        if self.network {
            PendingReason::NetworkSetupFailed
        } else {
            PendingReason::PodSandboxFailed
        }
    }

    /// What failed, for a person.
    pub fn describe(&self) -> String {
        match (&self.plugin, self.addresses_exhausted, &self.sandbox_image) {
            (_, true, _) => "the node has no Pod IP address left to give it".into(),
            (Some(p), false, _) => format!("the {p} CNI plugin fails to set up its network"),
            (None, false, _) if self.network => "its network cannot be set up (CNI)".into(),
            (None, false, Some(image)) => {
                format!("the container runtime cannot pull the sandbox image {image}")
            }
            (None, false, None) => "the container runtime fails to create it".into(),
        }
    }
}

/// A starting Pod whose sandbox the kubelet cannot create: a `Pending` failure of the Node, not
/// of the workload.
fn detect_failed_sandbox(pod: &Pod, events: &[&Event]) -> Option<Detection> {
    let (failure, node, cited) =
        latest_on_node(pod, events, "FailedCreatePodSandBox", SandboxFailure::parse)?;
    Some(pending_on_node(
        failure.reason(),
        format!(
            "the kubelet on node {node} cannot create the Pod's sandbox, so no container starts: {}",
            failure.describe()
        ),
        cited,
    ))
}

/// What the latest `reason` event about `pod` says, read by `parse`; the Pod's Node and those
/// events cited.
fn latest_on_node<'p, T>(
    pod: &'p Pod,
    events: &[&Event],
    reason: &str,
    parse: fn(&str) -> Option<T>,
) -> Option<(T, &'p str, Vec<String>)> {
    let of_reason = |e: &Event| e.reason.as_deref() == Some(reason);
    let found = events
        .iter()
        .rev()
        .filter(|e| of_reason(e))
        .find_map(|e| parse(e.message.as_deref()?))?;
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("its node");
    let cited = cite_events(events, of_reason)
        .into_iter()
        .take(MAX_EVENTS)
        .collect();
    Some((found, node, cited))
}

/// A `Pending` failure of the Pod's Node: what it cannot do, then the events that say so.
fn pending_on_node(reason: PendingReason, first: String, cited: Vec<String>) -> Detection {
    let mut evidence = vec![first];
    evidence.extend(cited);
    Detection {
        class: FailureClass::Pending,
        reason: reason.as_str().into(),
        container: None,
        evidence,
    }
}

/// Why a volume could not be attached to the Pod's Node, from a `FailedAttachVolume` message
/// (`Multi-Attach error for volume "pvc-..." Volume is already used by pod(s) a, b`,
/// `... Volume is already exclusively attached to one node and can't be attached to another`,
/// `AttachVolume.Attach failed for volume "pvc-..." : rpc error: ...`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachFailure {
    /// The PersistentVolume.
    pub volume: String,
    /// A ReadWriteOnce volume attached to another Node.
    pub multi_attach: bool,
    /// The Pods that hold it, when the controller names them.
    pub holders: Vec<String>,
}

static MULTI_ATTACH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"Multi-Attach error for volume "([a-z0-9.-]{1,253})""#).unwrap());
static HOLDERS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"Volume is already used by pod(?:\(s\)|s)? ([a-z0-9][a-z0-9., -]{0,1023})").unwrap()
});
static ATTACH_FAILED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"AttachVolume\.Attach failed for volume "([a-z0-9.-]{1,253})""#).unwrap()
});
/// Pods named as holders: enough to say who, not a list a forged message could grow.
const MAX_HOLDERS: usize = 5;

impl AttachFailure {
    pub fn parse(message: &str) -> Option<AttachFailure> {
        if let Some(c) = MULTI_ATTACH.captures(message) {
            let holders = HOLDERS
                .captures(message)
                .map(|h| {
                    // Names, up to where the message goes on (" on node ...").
                    let names = h[1].split(" on ").next().unwrap_or_default();
                    names
                        .split([',', ' '])
                        .map(|p| p.trim_end_matches('.'))
                        .filter(|p| !p.is_empty() && NameRule::Dns1123Subdomain.allows(p))
                        .take(MAX_HOLDERS)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            return Some(AttachFailure {
                volume: c[1].to_string(),
                multi_attach: true,
                holders,
            });
        }
        ATTACH_FAILED.captures(message).map(|c| AttachFailure {
            volume: c[1].to_string(),
            multi_attach: false,
            holders: Vec::new(),
        })
    }

    pub fn describe(&self) -> String {
        match (self.multi_attach, self.holders.is_empty()) {
            (true, false) => format!(
                "volume {} is a ReadWriteOnce volume still attached to another node, used by Pod(s) {}",
                self.volume,
                self.holders.join(", ")
            ),
            (true, true) => format!(
                "volume {} is a ReadWriteOnce volume still attached to another node",
                self.volume
            ),
            (false, _) => format!("the storage driver fails to attach volume {}", self.volume),
        }
    }
}

/// A starting Pod whose volume cannot be attached to its Node.
fn detect_failed_attach(pod: &Pod, events: &[&Event]) -> Option<Detection> {
    let (failure, node, cited) =
        latest_on_node(pod, events, "FailedAttachVolume", AttachFailure::parse)?;
    Some(pending_on_node(
        PendingReason::VolumeAttachFailed,
        format!(
            "a volume cannot be attached to node {node}, so no container starts: {}",
            failure.describe()
        ),
        cited,
    ))
}

/// A Pod that does not start on its Node: a volume that does not attach or mount, or a
/// sandbox that cannot be created.
/// How long an init container may run before its Pod counts as stuck initializing, unless
/// `--init-timeout` says otherwise: waits for a database or a migration take seconds to a
/// minute or two when things are well.
pub const INIT_STUCK_AFTER: Duration = Duration::from_secs(300);

/// The init container a scheduled, `Pending` Pod is running, and since when: the Pod's own
/// containers wait for it to complete.
pub fn init_running(pod: &Pod) -> Option<(&str, Timestamp)> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() != Some("Pending") {
        return None;
    }
    // A restartable init container (a native sidecar) runs for the Pod's life; only the
    // others must complete. The spec says which.
    let sidecar = |name: &str| {
        pod.spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.name == name && c.restart_policy.as_deref() == Some("Always"))
    };
    status
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|cs| !sidecar(&cs.name))
        .find_map(|cs| {
            let running = cs.state.as_ref()?.running.as_ref()?;
            Some((cs.name.as_str(), running.started_at.as_ref()?.0))
        })
}

/// A Pod whose init container has run for `after` or more at `now` without completing:
/// Pending, reason `InitContainerRunning`. Its log (read by the investigation) says what it
/// waits for.
pub fn detect_init_running(pod: &Pod, now: Timestamp, after: Duration) -> Option<Detection> {
    let (container, since) = init_running(pod)?;
    let running = Duration::try_from(now.duration_since(since)).ok()?;
    if running < after {
        return None;
    }
    let ran = match running.as_secs() {
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    };
    Some(Detection {
        class: FailureClass::Pending,
        reason: PendingReason::InitContainerRunning.as_str().to_string(),
        container: Some(container.to_string()),
        evidence: vec![format!(
            "init container {container} has been running for {ran} (since {since}) without completing; the Pod's containers wait for it"
        )],
    })
}

pub(super) fn detect_not_starting(pod: &Pod, events: &[&Event]) -> Option<Detection> {
    if !starting(pod) {
        return None;
    }
    detect_failed_attach(pod, events)
        .or_else(|| detect_failed_mount(pod, events))
        .or_else(|| detect_failed_sandbox(pod, events))
}

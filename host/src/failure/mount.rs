//! A Pod its kubelet cannot start because a volume does not mount: the ConfigMap or Secret the
//! volume names does not exist, or lacks a key its `items` name. The kubelet retries with
//! back-off and says so only in `FailedMount` events (`MountVolume.SetUp failed for volume "V" :
//! configmap "N" not found`, `... : configmap references non-existent config key: K`); the Pod's
//! status shows only `ContainerCreating`, as every starting Pod's does for a moment. So such a
//! Pod is looked at once it has been starting for [`STUCK_AFTER`], and its events decide.

use std::sync::LazyLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod, Volume};
use k8s_openapi::jiff::Timestamp;
use regex::Regex;

use super::{Detection, MAX_EVENTS, MissingConfig, cite_events};
use crate::crd::FailureClass;

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
fn source_of(pod: &Pod, volume: &str, kind: &str, key: Option<&str>) -> Option<String> {
    let v: &Volume = pod
        .spec
        .as_ref()?
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == volume)?;
    let lists = |items: Option<&Vec<k8s_openapi::api::core::v1::KeyToPath>>| {
        key.is_some_and(|k| items.into_iter().flatten().any(|i| i.key == k))
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
    let name = source_of(pod, &volume, kind, Some(&key))?;
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
pub(super) fn detect_failed_mount(pod: &Pod, events: &[&Event]) -> Option<Detection> {
    if !starting(pod) {
        return None;
    }
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

//! Where a configuration file a container cannot use comes from: a ConfigMap's or Secret's key
//! mounted as a volume, found from the file's path and the container's volume mounts. A bad
//! edit of one ConfigMap breaks every workload that mounts it, so this is shared by the
//! crash-loop playbook and the incident key.

use k8s_openapi::api::core::v1::{KeyToPath, PodSpec, Volume};

/// The object behind a mounted configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigSource {
    /// `ConfigMap` or `Secret`.
    pub kind: &'static str,
    pub name: String,
    /// The key the file holds, when the path names one.
    pub key: Option<String>,
    /// Whether the path led here; false when the container mounts one such object only and the
    /// application did not say which file it failed on.
    pub certain: bool,
}

impl ConfigSource {
    /// `key K of ConfigMap N` or `ConfigMap N`.
    pub fn describe(&self) -> String {
        match &self.key {
            Some(key) => format!("key {key} of {} {}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// The ConfigMap or Secret that provides `path` in `container` of `spec`; with no path, the one
/// ConfigMap the container mounts, if it mounts exactly one (a Secret mounted beside it is
/// more often certificates than configuration).
pub fn config_source(spec: &PodSpec, container: &str, path: Option<&str>) -> Option<ConfigSource> {
    let c = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == container)?;
    let mounts = c.volume_mounts.as_deref().unwrap_or_default();
    let volume = |name: &str| spec.volumes.iter().flatten().find(|v| v.name == name);
    let Some(path) = path else {
        let mut sources = mounts
            .iter()
            .filter_map(|m| object_of(volume(&m.name)?, None))
            .filter(|s| s.kind == "ConfigMap");
        let only = sources.next()?;
        return sources.next().is_none().then_some(only);
    };
    // The deepest mount that holds the path.
    let mount = mounts
        .iter()
        .filter(|m| {
            path == m.mount_path
                || path
                    .strip_prefix(m.mount_path.trim_end_matches('/'))
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .max_by_key(|m| m.mount_path.len())?;
    let within = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
        // A file mounted by itself: the sub-path is its path inside the volume.
        Some(sub_path) => sub_path.to_string(),
        None => path
            .strip_prefix(mount.mount_path.trim_end_matches('/'))?
            .trim_start_matches('/')
            .to_string(),
    };
    let mut source = object_of(volume(&mount.name)?, Some(&within))?;
    source.certain = true;
    Some(source)
}

/// The ConfigMap or Secret volume `volume` projects, with the key at `within` (a path inside the
/// volume) when it names one.
fn object_of(volume: &Volume, within: Option<&str>) -> Option<ConfigSource> {
    let key = |items: Option<&Vec<KeyToPath>>| -> Option<String> {
        let within = within.filter(|w| !w.is_empty())?;
        match items {
            Some(items) => items
                .iter()
                .find(|i| i.path == within)
                .map(|i| i.key.clone()),
            // Without items every key is a file named after it, at the volume's top.
            None => (!within.contains('/')).then(|| within.to_string()),
        }
    };
    if let Some(cm) = &volume.config_map {
        return Some(ConfigSource {
            kind: "ConfigMap",
            name: cm.name.clone(),
            key: key(cm.items.as_ref()),
            certain: false,
        });
    }
    if let Some(secret) = &volume.secret {
        return Some(ConfigSource {
            kind: "Secret",
            name: secret.secret_name.clone()?,
            key: key(secret.items.as_ref()),
            certain: false,
        });
    }
    // A projected volume of one ConfigMap or Secret (the service account's token volume
    // projects several sources and is no configuration).
    let sources = volume.projected.as_ref()?.sources.as_ref()?;
    match sources.as_slice() {
        [only] => {
            if let Some(cm) = &only.config_map {
                return Some(ConfigSource {
                    kind: "ConfigMap",
                    name: cm.name.clone(),
                    key: key(cm.items.as_ref()),
                    certain: false,
                });
            }
            let secret = only.secret.as_ref()?;
            Some(ConfigSource {
                kind: "Secret",
                name: secret.name.clone(),
                key: key(secret.items.as_ref()),
                certain: false,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(value: serde_json::Value) -> PodSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_files_path_leads_to_its_config_map_and_key() {
        let spec = spec(json!({
            "containers": [{"name": "app", "volumeMounts": [
                {"name": "config", "mountPath": "/etc/app"},
                {"name": "rules", "mountPath": "/etc/app/rules"},
                {"name": "tls", "mountPath": "/etc/app/tls/", "readOnly": true},
                {"name": "single", "mountPath": "/srv/settings.toml", "subPath": "settings.toml"},
                {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
            ]}],
            "volumes": [
                {"name": "config", "configMap": {"name": "app-config"}},
                {"name": "rules", "configMap": {"name": "app-rules",
                                                "items": [{"key": "alerts", "path": "alerts.yaml"}]}},
                {"name": "tls", "secret": {"secretName": "app-tls"}},
                {"name": "single", "configMap": {"name": "app-settings"}},
                {"name": "kube-api-access-x", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt"}}]}}
            ]
        }));
        let source = |path| config_source(&spec, "app", Some(path));
        let found = |kind, name: &str, key: Option<&str>| {
            Some(ConfigSource {
                kind,
                name: name.into(),
                key: key.map(str::to_string),
                certain: true,
            })
        };
        assert_eq!(
            source("/etc/app/config.yaml"),
            found("ConfigMap", "app-config", Some("config.yaml"))
        );
        // The deeper mount wins; an item's path maps back to its key.
        assert_eq!(
            source("/etc/app/rules/alerts.yaml"),
            found("ConfigMap", "app-rules", Some("alerts"))
        );
        assert_eq!(
            source("/etc/app/rules/other.yaml"),
            found("ConfigMap", "app-rules", None)
        );
        assert_eq!(
            source("/etc/app/tls/tls.crt"),
            found("Secret", "app-tls", Some("tls.crt"))
        );
        assert_eq!(
            source("/srv/settings.toml"),
            found("ConfigMap", "app-settings", Some("settings.toml"))
        );
        // Not a mount, or a prefix that is not a directory of it, or the token volume.
        assert_eq!(source("/app/config.yaml"), None);
        assert_eq!(source("/etc/application.yaml"), None);
        assert_eq!(
            source("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"),
            None
        );
        // No path: two ConfigMaps and a Secret are mounted, so none is the one.
        assert_eq!(config_source(&spec, "app", None), None);
    }

    #[test]
    fn without_a_path_the_only_config_map_mounted_is_the_likely_one() {
        let spec = spec(json!({
            "containers": [{"name": "app", "volumeMounts": [
                {"name": "config", "mountPath": "/etc/app"},
                {"name": "tls", "mountPath": "/etc/tls"},
                {"name": "data", "mountPath": "/data"}]}],
            "volumes": [
                {"name": "config", "configMap": {"name": "app-config"}},
                {"name": "tls", "secret": {"secretName": "app-tls"}},
                {"name": "data", "emptyDir": {}}]
        }));
        // The TLS Secret beside it is not a configuration file's likely source.
        assert_eq!(
            config_source(&spec, "app", None),
            Some(ConfigSource {
                kind: "ConfigMap",
                name: "app-config".into(),
                key: None,
                certain: false,
            })
        );
        assert_eq!(config_source(&spec, "other", None), None);
    }
}

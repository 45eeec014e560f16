//! `plugins.yaml`: which components to load, as which world, with which limits and settings.
//!
//! ```yaml
//! plugins:
//!   - name: k8s-reader
//!     world: tool
//!     file: k8s_reader.wasm
//!     sha256: 3f5a...            # optional for files; checked when given
//!     limits: {memory: 64Mi, timeout: 2s, output: 256Ki}
//!     settings: {}
//!   - name: log-signatures       # too large for a ConfigMap: fetched once, cached by digest
//!     world: tool
//!     url: https://plugins.example.com/log_signatures-1.2.0.wasm
//!     sha256: 9b1c...            # required with url; checked before the component is compiled
//!   - name: patch-safety         # one the operator embeds: no file to ship, tune it here
//!     world: patch-filter
//!     builtin: patch-safety
//!     settings: {resourceCeiling: {cpu: "2", memory: 4Gi}}
//! ```
//!
//! Each entry names its component with exactly one of `file` (a path inside the plugin directory),
//! `url` (`https://`, `file:///absolute/path`, or `http://` to a loopback address only) and
//! `builtin` (a plugin embedded in the operator: `k8s-reader`, `patch-safety`, `policy-filter`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::World;
use crate::crd::parse_duration;

pub const MANIFEST_FILE: &str = "plugins.yaml";

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default)]
    pub plugins: Vec<ManifestEntry>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestEntry {
    pub name: String,
    /// `tool`, `patch-filter` or `policy-filter`.
    pub world: String,
    /// The component, inside the plugin directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Or where to download it from; `sha256` is then required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Or the name of a plugin the operator embeds (`k8s-reader`, ...): nothing to ship.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default)]
    pub limits: LimitsSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<serde_json::Value>,
    /// What the plugin may reach over HTTP (tools of world 0.2.0); nothing when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<super::egress::GrantSpec>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitsSpec {
    /// Linear memory, as a Kubernetes quantity (`64Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Wall-clock time per call (`2s`, `500ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Bytes a call may return (`256Ki`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// HTTP requests a call may send through its egress grants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u32>,
    /// Response body bytes a call may receive, all its requests together (`1Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_bytes: Option<String>,
}

/// Limits in force for every call of a plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub memory_bytes: usize,
    pub timeout: Duration,
    pub output_bytes: usize,
    /// Egress: requests per call and response bytes per call.
    pub requests: u32,
    pub response_bytes: usize,
}

impl Default for Limits {
    /// Kubewarden's 2 s default deadline; memory and output sized for JSON-handling tools.
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            timeout: Duration::from_secs(2),
            output_bytes: 256 << 10,
            requests: super::egress::DEFAULT_REQUESTS,
            response_bytes: super::egress::DEFAULT_RESPONSE_BYTES,
        }
    }
}

/// Ceilings a manifest cannot exceed, whatever it asks.
const MAX_MEMORY: usize = 1 << 30;
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_OUTPUT: usize = 4 << 20;

fn bytes(field: &str, text: &str) -> Result<usize, String> {
    let q = k8s_openapi::apimachinery::pkg::api::resource::Quantity(text.to_string());
    crate::cluster::memory_bytes(&q)
        .filter(|b| *b > 0)
        .map(|b| b as usize)
        .ok_or_else(|| format!("limits.{field}: {text:?} is not a size like 64Mi"))
}

/// The cgroup v2 memory limit of the operator's own container.
const CGROUP_MEMORY_MAX: &str = "/sys/fs/cgroup/memory.max";

/// The memory limit in a cgroup v2 `memory.max` file; None when it says `max`, or there is no
/// such file (not in a cgroup v2 container).
pub fn container_memory_limit(path: &std::path::Path) -> Option<usize> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The operator's container memory limit, read once.
fn container_memory() -> Option<usize> {
    static LIMIT: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| container_memory_limit(std::path::Path::new(CGROUP_MEMORY_MAX)))
}

/// The most memory a manifest may grant a plugin here: the host's ceiling, or the operator's
/// container limit when lower (see [`LimitsSpec::resolve_within`]). The engine sizes each
/// memory slot of its instance pool to this.
pub(super) fn memory_ceiling() -> usize {
    container_memory().map_or(MAX_MEMORY, |c| c.min(MAX_MEMORY))
}

impl LimitsSpec {
    /// The limits in force, within the host's ceilings and the operator's container limit.
    pub fn resolve(&self) -> Result<Limits, String> {
        self.resolve_within(container_memory())
    }

    /// [`resolve`](Self::resolve) for a container limited to `container` bytes of memory (None:
    /// unlimited). A plugin may not be granted what the operator itself does not have: the
    /// kernel would kill the whole operator instead of trapping the plugin.
    pub fn resolve_within(&self, container: Option<usize>) -> Result<Limits, String> {
        let default = Limits::default();
        let limits = Limits {
            memory_bytes: self
                .memory
                .as_deref()
                .map(|m| bytes("memory", m))
                .transpose()?
                .unwrap_or(default.memory_bytes),
            timeout: self
                .timeout
                .as_deref()
                .map(|t| parse_duration("limits.timeout", t))
                .transpose()?
                .unwrap_or(default.timeout),
            output_bytes: self
                .output
                .as_deref()
                .map(|o| bytes("output", o))
                .transpose()?
                .unwrap_or(default.output_bytes),
            requests: self.requests.unwrap_or(default.requests),
            response_bytes: self
                .response_bytes
                .as_deref()
                .map(|b| bytes("responseBytes", b))
                .transpose()?
                .unwrap_or(default.response_bytes),
        };
        if limits.memory_bytes > MAX_MEMORY {
            return Err(format!(
                "limits.memory is above the host's ceiling of {}",
                crate::cluster::format_bytes(MAX_MEMORY as i64)
            ));
        }
        if let Some(container) = container.filter(|c| limits.memory_bytes > *c) {
            return Err(format!(
                "limits.memory {} is more than the operator's own container may use ({}); lower it or raise the operator's memory limit",
                crate::cluster::format_bytes(limits.memory_bytes as i64),
                crate::cluster::format_bytes(container as i64)
            ));
        }
        if limits.timeout > MAX_TIMEOUT || limits.timeout.is_zero() {
            return Err(format!(
                "limits.timeout must be between 1ms and {MAX_TIMEOUT:?}"
            ));
        }
        if limits.output_bytes > MAX_OUTPUT {
            return Err(format!(
                "limits.output is above the host's ceiling of {}",
                crate::cluster::format_bytes(MAX_OUTPUT as i64)
            ));
        }
        if limits.requests > super::egress::MAX_REQUESTS {
            return Err(format!(
                "limits.requests is above the host's ceiling of {}",
                super::egress::MAX_REQUESTS
            ));
        }
        if limits.response_bytes > super::egress::MAX_RESPONSE_BYTES {
            return Err(format!(
                "limits.responseBytes is above the host's ceiling of {}",
                crate::cluster::format_bytes(super::egress::MAX_RESPONSE_BYTES as i64)
            ));
        }
        Ok(limits)
    }
}

impl ManifestEntry {
    pub fn world(&self) -> Result<World, String> {
        self.world.parse()
    }

    /// The settings as the JSON the plugin's `configure` receives.
    pub fn settings_json(&self) -> Result<String, String> {
        match &self.settings {
            None => Ok("{}".into()),
            Some(v @ serde_json::Value::Object(_)) => Ok(v.to_string()),
            Some(_) => Err("settings must be a mapping".into()),
        }
    }

    /// The file name, refusing anything that would leave the plugin directory.
    pub fn checked_file(&self) -> Result<&str, String> {
        let Some(f) = self.file.as_deref() else {
            return Err(format!("plugin {} has no file", self.name));
        };
        if f.is_empty() || f.starts_with('/') || f.split(['/', '\\']).any(|part| part == "..") {
            return Err(format!(
                "file {f:?} must be a path inside the plugin directory"
            ));
        }
        Ok(f)
    }

    /// Where the component comes from, checked: exactly one of `file` and `url`, a `sha256` with
    /// every `url`, and a URL the operator may fetch.
    pub fn source(&self) -> Result<Source<'_>, String> {
        let name = &self.name;
        if let Some(digest) = &self.sha256
            && (digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(format!(
                "plugin {name}: sha256 {digest:?} is not a SHA-256 digest (64 hex digits, as `sha256sum` prints)"
            ));
        }
        match (&self.file, &self.url, &self.builtin) {
            (None, None, Some(builtin)) => Ok(Source::Builtin(builtin)),
            (None, None, None) => Err(format!(
                "plugin {name}: needs a file (in the plugin directory), a url (with its sha256) or a builtin (a plugin the operator embeds)"
            )),
            (Some(_), None, None) => Ok(Source::File(self.checked_file()?)),
            (None, Some(url), None) => {
                let Some(sha256) = self.sha256.as_deref() else {
                    return Err(format!(
                        "plugin {name}: url needs a sha256 (the component's digest, as `sha256sum` prints it) so the download can be verified"
                    ));
                };
                check_url(url).map_err(|e| format!("plugin {name}: url {url:?} {e}"))?;
                Ok(Source::Url { url, sha256 })
            }
            _ => Err(format!(
                "plugin {name}: give one of file, url and builtin, not several"
            )),
        }
    }

    /// The file or URL, for messages.
    pub fn location(&self) -> &str {
        self.file
            .as_deref()
            .or(self.url.as_deref())
            .unwrap_or("(no file)")
    }
}

/// Where a plugin's component comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source<'a> {
    File(&'a str),
    /// A plugin embedded in the operator, by name.
    Builtin(&'a str),
    Url {
        url: &'a str,
        sha256: &'a str,
    },
}

/// `https://`, `file:///absolute`, or `http://` to a loopback address (a local mirror, tests): the
/// digest protects the bytes whatever the scheme, but plain HTTP across a network would be a
/// needless invitation to tamper.
fn check_url(text: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("is not a URL: {e}"))?;
    match url.scheme() {
        "https" => Ok(()),
        "file" if url.host().is_none() && url.to_file_path().is_ok() => Ok(()),
        "file" => Err("must be file:///absolute/path (no host)".into()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err("must use https (http:// is accepted for loopback addresses only)".into()),
        other => Err(format!("has the scheme {other}; use https or file")),
    }
}

pub(crate) fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub fn parse_manifest(text: &str) -> Result<Manifest, String> {
    let manifest: Manifest = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    let mut seen = std::collections::BTreeSet::new();
    for entry in &manifest.plugins {
        if !seen.insert(entry.name.as_str()) {
            return Err(format!("plugin {} is listed twice", entry.name));
        }
        // Where a component comes from is the manifest's structure, not a property of the
        // component: a mistake there is the manifest's error, naming the plugin.
        // A path that leaves the plugin directory stays a refusal of that plugin, at load.
        if entry.url.is_some() || entry.file.is_none() {
            entry.source()?;
        }
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_resolve_with_defaults_and_ceilings() {
        let spec = LimitsSpec {
            memory: Some("32Mi".into()),
            timeout: Some("500ms".into()),
            ..Default::default()
        };
        let l = spec.resolve().unwrap();
        assert_eq!(l.memory_bytes, 32 << 20);
        assert_eq!(l.timeout, Duration::from_millis(500));
        assert_eq!(l.output_bytes, 256 << 10);
        let err = LimitsSpec {
            memory: Some("8Gi".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.contains("ceiling"), "{err}");
        let err = LimitsSpec {
            timeout: Some("soon".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.contains("limits.timeout"), "{err}");
    }

    /// No manifest grants a plugin more memory than the operator's container has.
    #[test]
    fn a_grant_above_the_containers_memory_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.max");
        std::fs::write(&path, "max\n").unwrap();
        assert_eq!(container_memory_limit(&path), None);
        std::fs::write(&path, "100663296\n").unwrap();
        let container = container_memory_limit(&path);
        assert_eq!(container, Some(96 << 20));
        assert_eq!(container_memory_limit(&dir.path().join("absent")), None);
        let asks = |memory: &str| LimitsSpec {
            memory: Some(memory.into()),
            ..Default::default()
        };
        assert_eq!(
            asks("64Mi").resolve_within(container).unwrap().memory_bytes,
            64 << 20
        );
        let err = asks("128Mi").resolve_within(container).unwrap_err();
        assert!(
            err.contains("128Mi") && err.contains("96Mi") && err.contains("container"),
            "{err}"
        );
        assert!(asks("128Mi").resolve_within(None).is_ok());
    }

    #[test]
    fn manifests_refuse_duplicates_unknown_fields_and_escaping_paths() {
        let text = "plugins:\n- {name: a, world: tool, file: a.wasm}\n- {name: a, world: tool, file: b.wasm}\n";
        assert!(parse_manifest(text).unwrap_err().contains("listed twice"));
        assert!(
            parse_manifest("plugins:\n- {name: a, world: tool, file: a.wasm, colour: red}\n")
                .is_err()
        );
        let m =
            parse_manifest("plugins:\n- {name: a, world: tool, file: ../../etc/passwd}\n").unwrap();
        assert!(m.plugins[0].checked_file().is_err());
    }

    #[test]
    fn urls_must_be_https_file_or_loopback_http() {
        for ok in [
            "https://plugins.example.com/a.wasm",
            "file:///var/lib/plugins/a.wasm",
            "http://127.0.0.1:8080/a.wasm",
            "http://127.9.9.9/a.wasm",
            "http://localhost/a.wasm",
            "http://[::1]:80/a.wasm",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("http://10.0.0.1/a.wasm", "must use https"),
            ("http://localhost.example.com/a.wasm", "must use https"),
            ("ftp://host/a.wasm", "has the scheme ftp"),
            ("file://server/share/a.wasm", "no host"),
            ("plugins/a.wasm", "is not a URL"),
        ] {
            let err = check_url(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let digest = "a".repeat(64);
        let m = parse_manifest(&format!(
            "plugins:\n- {{name: a, world: tool, url: 'https://h/a.wasm', sha256: {digest}}}\n"
        ))
        .unwrap();
        assert_eq!(
            m.plugins[0].source(),
            Ok(Source::Url {
                url: "https://h/a.wasm",
                sha256: &digest
            })
        );
        assert_eq!(m.plugins[0].location(), "https://h/a.wasm");
    }
}

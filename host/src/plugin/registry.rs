//! The set of loaded plugins, loaded from a plugin directory (in a cluster: the mounted plugin
//! ConfigMap) or from the built-ins embedded in the binary, and swapped atomically when the
//! directory changes. A call holds the set it started with, so it finishes on that version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::Value;

use super::{
    CallError, ClusterAccess, LoadedPlugin, MANIFEST_FILE, Manifest, PluginSource, Runtime,
    ToolSpec, World, manifest::Source, parse_manifest,
};

/// A plugin the operator would not load, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refusal {
    pub plugin: String,
    pub reason: String,
}

/// A tool the agent may call.
#[derive(Clone)]
pub struct ToolInfo {
    pub plugin: Arc<LoadedPlugin>,
    pub name: String,
    pub description: String,
    /// The arguments' JSON Schema.
    pub parameters: Value,
    validator: Arc<jsonschema::Validator>,
}

/// Plugins loaded together from one manifest.
#[derive(Default)]
pub struct PluginSet {
    source: String,
    plugins: Vec<Arc<LoadedPlugin>>,
    tools: BTreeMap<String, ToolInfo>,
    refusals: Vec<Refusal>,
}

const BUILTIN_MANIFEST: &str = include_str!("../../../plugins/plugins.yaml");
/// Every plugin the operator embeds: (name for `builtin:`, file, bytes). The built-in manifest
/// loads the first three by default; `prometheus` needs its URL and an egress grant, so a
/// manifest names it (`builtin: prometheus`) when a cluster has a Prometheus.
const BUILTIN_FILES: [(&str, &str, &[u8]); 4] = [
    (
        "k8s-reader",
        "k8s_reader.wasm",
        include_bytes!(concat!(env!("SRE_OPERATOR_WASM_DIR"), "/k8s_reader.wasm")),
    ),
    (
        "patch-safety",
        "patch_safety.wasm",
        include_bytes!(concat!(env!("SRE_OPERATOR_WASM_DIR"), "/patch_safety.wasm")),
    ),
    (
        "policy-filter",
        "policy_filter.wasm",
        include_bytes!(concat!(
            env!("SRE_OPERATOR_WASM_DIR"),
            "/policy_filter.wasm"
        )),
    ),
    (
        "prometheus",
        "prometheus.wasm",
        include_bytes!(concat!(env!("SRE_OPERATOR_WASM_DIR"), "/prometheus.wasm")),
    ),
];

/// The component of the plugin the operator embeds under `name`, for a manifest entry's
/// `builtin:`.
fn builtin_component(name: &str) -> Result<Vec<u8>, String> {
    match BUILTIN_FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, _, bytes)) => Ok(bytes.to_vec()),
        None => Err(format!(
            "builtin {name:?} is not a plugin this operator embeds; it embeds {}",
            BUILTIN_FILES
                .iter()
                .map(|(n, _, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn valid_tool_name(name: &str) -> bool {
    // What OpenAI-compatible function calling accepts.
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl PluginSet {
    /// Loads every entry of a manifest; an entry that fails is refused with its reason and the
    /// others load. `read` reads a `file` entry; `url` entries are fetched (or read from the
    /// runtime's download cache) and verified against their sha256.
    ///
    /// Loading runs guest code (`configure`, `describe`). WASI's synchronous bindings block on the
    /// current tokio runtime when there is one, which panics on a runtime's worker thread, so a
    /// plugin that prints while it loads would bring down an async caller (the CLI, the
    /// operator's start-up). The set is therefore loaded on a thread of its own.
    pub fn load(
        runtime: &Runtime,
        manifest: &Manifest,
        read: impl Fn(&str) -> Result<Vec<u8>, String> + Sync,
        source: String,
    ) -> PluginSet {
        let span = tracing::Span::current();
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("plugin-load".into())
                .spawn_scoped(scope, || {
                    let _span = span.enter();
                    Self::load_here(runtime, manifest, &read, source)
                })
                .expect("spawning the plugin loader")
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    fn load_here(
        runtime: &Runtime,
        manifest: &Manifest,
        read: &(dyn Fn(&str) -> Result<Vec<u8>, String> + Sync),
        source: String,
    ) -> PluginSet {
        let mut set = PluginSet {
            source,
            ..Default::default()
        };
        let downloads = runtime.downloads();
        for entry in &manifest.plugins {
            let refuse = |set: &mut PluginSet, reason: String| {
                tracing::warn!(plugin = %entry.name, %reason, "plugin refused");
                set.refusals.push(Refusal {
                    plugin: entry.name.clone(),
                    reason,
                });
            };
            let bytes = match entry.source().and_then(|source| match source {
                Source::File(file) => read(file),
                Source::Url { url, sha256 } => downloads.fetch(url, sha256),
                Source::Builtin(name) => builtin_component(name),
            }) {
                Ok(bytes) => bytes,
                Err(reason) => {
                    refuse(&mut set, reason);
                    continue;
                }
            };
            let plugin = match runtime.load(PluginSource {
                entry,
                bytes: &bytes,
            }) {
                Ok(p) => Arc::new(p),
                Err(reason) => {
                    refuse(&mut set, reason);
                    continue;
                }
            };
            match set.index_tools(&plugin) {
                Ok(tools) => {
                    set.tools
                        .extend(tools.into_iter().map(|t| (t.name.clone(), t)));
                    tracing::info!(plugin = %plugin.name, world = %plugin.world, digest = %&plugin.digest[..12], "plugin loaded");
                    set.plugins.push(plugin);
                }
                Err(reason) => refuse(&mut set, reason),
            }
        }
        set
    }

    fn index_tools(&self, plugin: &Arc<LoadedPlugin>) -> Result<Vec<ToolInfo>, String> {
        if plugin.world != World::Tool {
            return Ok(Vec::new());
        }
        let specs: Vec<ToolSpec> = plugin.describe().map_err(|e| e.to_string())?;
        let mut tools = Vec::new();
        for spec in specs {
            if !valid_tool_name(&spec.name) {
                return Err(format!(
                    "tool name {:?} must be 1-64 letters, digits, _ or -",
                    spec.name
                ));
            }
            if let Some(other) = self.tools.get(&spec.name) {
                return Err(format!(
                    "tool {} is already offered by plugin {}",
                    spec.name, other.plugin.name
                ));
            }
            let parameters: Value = serde_json::from_str(&spec.parameters)
                .map_err(|e| format!("tool {}: parameters are not JSON: {e}", spec.name))?;
            if parameters.get("type").and_then(Value::as_str) != Some("object") {
                return Err(format!(
                    "tool {}: parameters must be a JSON Schema of type object",
                    spec.name
                ));
            }
            let validator = jsonschema::validator_for(&parameters).map_err(|e| {
                format!(
                    "tool {}: parameters are not a valid JSON Schema: {e}",
                    spec.name
                )
            })?;
            tools.push(ToolInfo {
                plugin: plugin.clone(),
                name: spec.name,
                description: spec.description,
                parameters,
                validator: Arc::new(validator),
            });
        }
        Ok(tools)
    }

    /// The plugins the built-in manifest loads: k8s-reader, patch-safety and policy-filter.
    pub fn builtin(runtime: &Runtime) -> PluginSet {
        let manifest = parse_manifest(BUILTIN_MANIFEST).expect("the built-in manifest parses");
        let read = |file: &str| {
            BUILTIN_FILES
                .iter()
                .find(|(_, name, _)| *name == file)
                .map(|(_, _, bytes)| bytes.to_vec())
                .ok_or_else(|| format!("{file} is not built in"))
        };
        PluginSet::load(runtime, &manifest, read, "built-in plugins".into())
    }

    /// Writes the built-in plugins and their manifest into `dir` (created if missing): the
    /// content of the plugin ConfigMap (`deploy/plugins`) and a starting point for a team's own.
    /// Returns the files written.
    pub fn export_builtin(dir: &Path) -> Result<Vec<PathBuf>, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let files = std::iter::once((MANIFEST_FILE, BUILTIN_MANIFEST.as_bytes()))
            .chain(BUILTIN_FILES.iter().map(|(_, file, bytes)| (*file, *bytes)));
        let mut written = Vec::new();
        for (name, bytes) in files {
            let path = dir.join(name);
            std::fs::write(&path, bytes)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            written.push(path);
        }
        Ok(written)
    }

    /// Loads `DIR/plugins.yaml` and the files it names. A manifest that cannot be read or parsed
    /// is an error naming it; a plugin that cannot be loaded is a refusal.
    pub fn from_dir(runtime: &Runtime, dir: &Path) -> Result<PluginSet, String> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let manifest = parse_manifest(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let read = |file: &str| {
            std::fs::read(dir.join(file))
                .map_err(|e| format!("cannot read {}: {e}", dir.join(file).display()))
        };
        Ok(PluginSet::load(
            runtime,
            &manifest,
            read,
            dir.display().to_string(),
        ))
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn plugins(&self) -> &[Arc<LoadedPlugin>] {
        &self.plugins
    }

    pub fn refusals(&self) -> &[Refusal] {
        &self.refusals
    }

    pub fn tools(&self) -> impl Iterator<Item = &ToolInfo> {
        self.tools.values()
    }

    pub fn tool(&self, name: &str) -> Option<&ToolInfo> {
        self.tools.get(name)
    }

    pub fn by_world(&self, world: World) -> impl Iterator<Item = &Arc<LoadedPlugin>> {
        self.plugins.iter().filter(move |p| p.world == world)
    }

    /// Checks the arguments against the tool's schema and calls it, on a blocking thread, in
    /// a `tool_call` span that records the plugin, the outcome and the answer's size.
    pub async fn invoke(
        &self,
        tool: &str,
        arguments: &Value,
        access: ClusterAccess,
    ) -> Result<String, CallError> {
        // The tool's name is recorded once it names a loaded tool: a model's made-up name is
        // untrusted text and stays out of the trace.
        let span = tracing::info_span!(
            crate::telemetry::traces::TOOL_CALL,
            tool = tracing::field::Empty,
            plugin = tracing::field::Empty,
            outcome = tracing::field::Empty,
            bytes = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let result = self.invoke_in(&span, tool, arguments, access).await;
        match &result {
            Ok(answer) => {
                span.record("outcome", "ok");
                span.record("bytes", answer.len());
            }
            Err(e) => {
                span.record("outcome", e.kind());
                span.record("otel.status_code", "ERROR");
            }
        }
        result
    }

    async fn invoke_in(
        &self,
        span: &tracing::Span,
        tool: &str,
        arguments: &Value,
        access: ClusterAccess,
    ) -> Result<String, CallError> {
        let info = self
            .tool(tool)
            .ok_or_else(|| CallError::UnknownTool(tool.to_string()))?;
        span.record("plugin", info.plugin.name.as_str());
        span.record("tool", info.name.as_str());
        let problems: Vec<String> = info
            .validator
            .iter_errors(arguments)
            .map(|e| e.to_string())
            .collect();
        if !problems.is_empty() {
            return Err(CallError::InvalidArguments {
                plugin: info.plugin.name.clone(),
                call: format!("invoke {tool}"),
                message: problems.join("; "),
            });
        }
        let (plugin, tool, arguments) =
            (info.plugin.clone(), tool.to_string(), arguments.to_string());
        let name = plugin.name.clone();
        let call = format!("invoke {tool}");
        // The blocking thread runs in the span: the cluster reads a tool makes are its children.
        let span = span.clone();
        tokio::task::spawn_blocking(move || {
            span.in_scope(|| plugin.invoke_tool(&tool, &arguments, access))
        })
        .await
        .unwrap_or_else(|e| Err(CallError::not_run(&name, &call, e)))
    }
}

/// What a plugin set holds, as data: what the operator's `GET /plugins` serves and
/// `kubectl sre plugins` prints.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginSetSummary {
    /// Where the set was loaded from (a directory, or `built-in plugins`).
    pub source: String,
    pub plugins: Vec<PluginSummary>,
    pub refusals: Vec<Refusal>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginSummary {
    pub name: String,
    /// `tool`, `patch-filter` or `policy-filter`.
    pub world: String,
    /// sha256 of the component, hex.
    pub digest: String,
    /// The component's size in bytes.
    pub size: usize,
    pub limits: LimitsSummary,
    /// The tools a `tool` plugin offers; empty for filters.
    #[serde(default)]
    pub tools: Vec<ToolSummary>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSummary {
    pub memory_bytes: usize,
    pub timeout_ms: u64,
    pub output_bytes: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolSummary {
    pub name: String,
    pub description: String,
}

impl PluginSet {
    /// The set as data, plugins in load order with their tools, and the refusals.
    pub fn summary(&self) -> PluginSetSummary {
        PluginSetSummary {
            source: self.source.clone(),
            plugins: self
                .plugins
                .iter()
                .map(|p| PluginSummary {
                    name: p.name.clone(),
                    world: p.world.to_string(),
                    digest: p.digest.clone(),
                    size: p.size,
                    limits: LimitsSummary {
                        memory_bytes: p.limits.memory_bytes,
                        timeout_ms: p.limits.timeout.as_millis() as u64,
                        output_bytes: p.limits.output_bytes,
                    },
                    tools: self
                        .tools()
                        .filter(|t| t.plugin.name == p.name)
                        .map(|t| ToolSummary {
                            name: t.name.clone(),
                            description: t.description.clone(),
                        })
                        .collect(),
                })
                .collect(),
            refusals: self.refusals.clone(),
        }
    }
}

/// The plugin set in force, reloaded when its directory changes.
pub struct PluginRegistry {
    runtime: Arc<Runtime>,
    dir: Option<PathBuf>,
    current: RwLock<Arc<PluginSet>>,
    fingerprint: Mutex<Option<String>>,
}

/// What identifies a directory's content cheaply: the manifest's text and, for each file it
/// names, where it really lives (a ConfigMap update swaps the `..data` symlink to a new folder),
/// its size and its modification time.
fn fingerprint(dir: &Path) -> String {
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path).unwrap_or_default();
    let mut print = format!("{:?}\n{text}", std::fs::canonicalize(&manifest_path).ok());
    if let Ok(manifest) = parse_manifest(&text) {
        // URL plugins are fetched by digest: the manifest's text covers them.
        for file in manifest.plugins.iter().filter_map(|e| e.file.as_ref()) {
            let path = dir.join(file);
            let meta = std::fs::metadata(&path).ok();
            print.push_str(&format!(
                "\n{:?} {:?} {:?}",
                std::fs::canonicalize(&path).ok(),
                meta.as_ref().map(|m| m.len()),
                meta.and_then(|m| m.modified().ok())
            ));
        }
    }
    print
}

impl PluginRegistry {
    pub fn builtin(runtime: Arc<Runtime>) -> PluginRegistry {
        let set = PluginSet::builtin(&runtime);
        PluginRegistry {
            runtime,
            dir: None,
            current: RwLock::new(Arc::new(set)),
            fingerprint: Mutex::new(None),
        }
    }

    pub fn from_dir(runtime: Arc<Runtime>, dir: PathBuf) -> Result<PluginRegistry, String> {
        let before = fingerprint(&dir);
        let set = PluginSet::from_dir(&runtime, &dir)?;
        let stable = fingerprint(&dir) == before;
        Ok(PluginRegistry {
            runtime,
            dir: Some(dir),
            current: RwLock::new(Arc::new(set)),
            fingerprint: Mutex::new(stable.then_some(before)),
        })
    }

    /// The set in force now; a caller keeps it for the whole call.
    pub fn current(&self) -> Arc<PluginSet> {
        self.current.read().expect("plugin set lock").clone()
    }

    /// Reloads when the directory changed. The old set stays in force if the manifest is broken.
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let Some(dir) = &self.dir else {
            return Ok(false);
        };
        let before = fingerprint(dir);
        if self
            .fingerprint
            .lock()
            .expect("fingerprint lock")
            .as_deref()
            == Some(before.as_str())
        {
            return Ok(false);
        }
        let set = PluginSet::from_dir(&self.runtime, dir)?;
        // A swap while we read makes the next look reload again.
        let stable = fingerprint(dir) == before;
        *self.fingerprint.lock().expect("fingerprint lock") = stable.then_some(before);
        tracing::info!(
            dir = %dir.display(),
            loaded = set.plugins().len(),
            refused = set.refusals().len(),
            "plugin directory changed; new plugin set in force"
        );
        *self.current.write().expect("plugin set lock") = Arc::new(set);
        Ok(true)
    }

    /// Polls the directory every `every` and reloads on change, until the task is dropped.
    pub fn spawn_watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let registry = self.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            loop {
                interval.tick().await;
                let r = registry.clone();
                match tokio::task::spawn_blocking(move || r.reload_if_changed()).await {
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "plugin reload failed; keeping the current plugins")
                    }
                    Err(e) => tracing::warn!(error = %e, "plugin reload task failed"),
                    Ok(Ok(_)) => {}
                }
            }
        })
    }
}

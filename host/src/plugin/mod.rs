//! The WebAssembly plugin runtime: tools, patch filters and policy filters as components of the
//! `wit/` package, run under wasmtime with every call bounded.
//!
//! Following Kubewarden's policy-server and Spin: one [`Engine`] with epoch interruption and a
//! ticker thread; each component compiled once (and the compiled artifact cached on disk, keyed by
//! digest and engine); one pre-instantiated template per plugin; a fresh [`Store`] per call, so no
//! state survives between calls; memory capped by a [`ResourceLimiter`]; a deadline per call; a cap
//! on output; WASI with nothing granted.

pub mod access;
mod bindings;
mod cache;
mod fetch;
pub mod manifest;
mod registry;

pub use access::ClusterAccess;
pub use manifest::{Limits, MANIFEST_FILE, Manifest, ManifestEntry, parse_manifest};
pub use registry::{
    LimitsSummary, PluginRegistry, PluginSet, PluginSetSummary, PluginSummary, Refusal, ToolInfo,
    ToolSummary,
};

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use bindings::patch_filter::{PatchFilter, PatchFilterPre};
use bindings::policy_filter::{PolicyFilter, PolicyFilterPre};
use bindings::tool::{Tool, ToolPre};

/// How often the engine's epoch advances: the granularity of every deadline.
const TICK: Duration = Duration::from_millis(10);
/// Guest stdout and stderr kept per call; more is an error, like any other flood.
const STDIO_CAP: usize = 16 << 10;

/// The three plugin worlds of `wit/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum World {
    Tool,
    PatchFilter,
    PolicyFilter,
}

impl World {
    pub fn as_str(self) -> &'static str {
        match self {
            World::Tool => "tool",
            World::PatchFilter => "patch-filter",
            World::PolicyFilter => "policy-filter",
        }
    }
}

impl std::fmt::Display for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for World {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [World::Tool, World::PatchFilter, World::PolicyFilter]
            .into_iter()
            .find(|w| w.as_str() == s)
            .ok_or_else(|| {
                format!("unknown world {s:?}; expected tool, patch-filter or policy-filter")
            })
    }
}

/// Why a call of a plugin failed. Every variant names the plugin and the call.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CallError {
    #[error("plugin {plugin}: {call} ran past its deadline of {limit:?}")]
    Deadline {
        plugin: String,
        call: String,
        limit: Duration,
    },
    #[error("plugin {plugin}: {call} hit its memory limit of {limit} bytes")]
    Memory {
        plugin: String,
        call: String,
        limit: usize,
    },
    #[error(
        "plugin {plugin}: {call} returned {size} bytes, over its output limit of {limit} bytes"
    )]
    Output {
        plugin: String,
        call: String,
        size: usize,
        limit: usize,
    },
    #[error("plugin {plugin}: {call} wrote more than {limit} bytes to {stream}")]
    Stdio {
        plugin: String,
        call: String,
        stream: &'static str,
        limit: usize,
    },
    #[error("plugin {plugin}: {call} trapped: {message}")]
    Trap {
        plugin: String,
        call: String,
        message: String,
    },
    #[error("plugin {plugin}: {call} rejected its settings: {message}")]
    Settings {
        plugin: String,
        call: String,
        message: String,
    },
    #[error("plugin {plugin}: {call} failed: {message}")]
    Tool {
        plugin: String,
        call: String,
        message: String,
    },
    #[error("plugin {plugin}: {call}: invalid arguments: {message}")]
    InvalidArguments {
        plugin: String,
        call: String,
        message: String,
    },
    #[error("no loaded plugin offers the tool {0:?}")]
    UnknownTool(String),
}

/// Caps a guest's linear memory and tables; remembers when it said no, so the trap that
/// follows can be reported as the memory limit rather than as a crash.
struct MemoryLimiter {
    limit: usize,
    hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Everything one call's store holds.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    access: Option<ClusterAccess>,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::tool::sre_operator::plugin::types::Host for CallState {}
impl bindings::patch_filter::sre_operator::plugin::types::Host for CallState {}
impl bindings::policy_filter::sre_operator::plugin::types::Host for CallState {}

/// Increments the engine's epoch until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    fn start(engine: Engine) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch ticker");
        Ticker { stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The engine, one linker per world, and the compiled-artifact cache.
pub struct Runtime {
    engine: Engine,
    tool_linker: Linker<CallState>,
    patch_linker: Linker<CallState>,
    policy_linker: Linker<CallState>,
    cache: Option<cache::ArtifactCache>,
    ticker: Arc<Ticker>,
}

/// A plugin's template, by world.
enum Template {
    Tool(ToolPre<CallState>),
    PatchFilter(PatchFilterPre<CallState>),
    PolicyFilter(PolicyFilterPre<CallState>),
}

/// A plugin that loaded: compiled, linked, and its settings accepted.
pub struct LoadedPlugin {
    pub name: String,
    pub world: World,
    /// sha256 of the component, hex.
    pub digest: String,
    pub limits: Limits,
    pub size: usize,
    settings: String,
    template: Template,
    engine: Engine,
    /// Deadlines need the epoch to advance for as long as any plugin can be called.
    _ticker: Arc<Ticker>,
}

/// A manifest entry with the component's bytes.
pub struct PluginSource<'a> {
    pub entry: &'a ManifestEntry,
    pub bytes: &'a [u8],
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The line of a trapped guest's stderr that says why: the last one that is not a stack frame or
/// a toolchain's boilerplate around it (Rust's panic header and backtrace note, componentize-py's
/// "unexpected exception", SpiderMonkey's abort notice).
fn last_words(stderr: &[u8]) -> Option<String> {
    const NOISE: [&str; 6] = [
        "thread '",
        "note: run with `RUST_BACKTRACE",
        "Python function threw an unexpected exception",
        "Redirecting call to abort()",
        "Stack:",
        "Traceback (most recent call last)",
    ];
    String::from_utf8_lossy(stderr)
        .lines()
        .rfind(|l| {
            !l.trim().is_empty()
                && !l.starts_with([' ', '\t'])
                && !NOISE.iter().any(|n| l.starts_with(n))
        })
        .map(|l| l.trim().chars().take(300).collect())
}

fn wasm_kind(bytes: &[u8]) -> Result<(), String> {
    match bytes.get(0..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0x00, 0x01, 0x00]) => Ok(()),
        Some([0, b'a', b's', b'm', 0x01, 0x00, 0x00, 0x00]) => Err(
            "is a core WebAssembly module, not a component; build it for wasm32-wasip2 (or wrap it with `wasm-tools component new`)".into(),
        ),
        _ => Err("is not a WebAssembly component".into()),
    }
}

/// Where compiled plugins are cached (in a cluster: an emptyDir, as the root is read-only).
pub const CACHE_ENV: &str = "SRE_OPERATOR_CACHE";

impl Runtime {
    /// A runtime that caches compiled components in `cache_dir` (created private) when given.
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Arc<Runtime>> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;
        let mut tool_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut tool_linker)?;
        Tool::add_to_linker::<CallState, HasSelf<CallState>>(&mut tool_linker, |s| s)?;
        let mut patch_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut patch_linker)?;
        PatchFilter::add_to_linker::<CallState, HasSelf<CallState>>(&mut patch_linker, |s| s)?;
        let mut policy_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut policy_linker)?;
        PolicyFilter::add_to_linker::<CallState, HasSelf<CallState>>(&mut policy_linker, |s| s)?;
        let cache = match cache_dir {
            Some(dir) => match cache::ArtifactCache::open(dir.clone()) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "plugin cache unavailable; compiling every load");
                    None
                }
            },
            None => None,
        };
        Ok(Arc::new(Runtime {
            ticker: Arc::new(Ticker::start(engine.clone())),
            engine,
            tool_linker,
            patch_linker,
            policy_linker,
            cache,
        }))
    }

    /// The default cache folder: `$SRE_OPERATOR_CACHE` or the user's cache folder.
    pub fn default_cache_dir() -> Option<PathBuf> {
        std::env::var_os(CACHE_ENV)
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("sre-operator"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/sre-operator"))
            })
            .map(|d| d.join("plugins"))
    }

    /// Compiles (or loads from the cache) a component.
    pub fn compile(&self, bytes: &[u8], digest: &str) -> Result<Component, String> {
        wasm_kind(bytes)?;
        if let Some(component) = self
            .cache
            .as_ref()
            .and_then(|c| c.load(&self.engine, digest))
        {
            return Ok(component);
        }
        let component = Component::from_binary(&self.engine, bytes)
            .map_err(|e| format!("does not compile: {e}"))?;
        if let Some(cache) = &self.cache {
            cache.store(&self.engine, digest, &component);
        }
        Ok(component)
    }

    /// Loads one plugin: digest, compile, link against its world, and its settings accepted.
    pub fn load(&self, source: PluginSource<'_>) -> Result<LoadedPlugin, String> {
        let entry = source.entry;
        let world = entry.world()?;
        let limits = entry.limits.resolve()?;
        let settings = entry.settings_json()?;
        let digest = sha256_hex(source.bytes);
        if let Some(expected) = &entry.sha256
            && !expected.eq_ignore_ascii_case(&digest)
        {
            return Err(format!(
                "sha256 mismatch: the manifest says {expected}, {} has {digest}",
                entry.location()
            ));
        }
        let component = self
            .compile(source.bytes, &digest)
            .map_err(|e| format!("{} {e}", entry.location()))?;
        let linker = match world {
            World::Tool => &self.tool_linker,
            World::PatchFilter => &self.patch_linker,
            World::PolicyFilter => &self.policy_linker,
        };
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| format!("cannot be linked as a {world} plugin (it imports what the host does not provide): {e:#}"))?;
        let wrong_world =
            |e: wasmtime::Error| format!("does not implement the {world} world: {e:#}");
        let template = match world {
            World::Tool => Template::Tool(ToolPre::new(pre).map_err(wrong_world)?),
            World::PatchFilter => {
                Template::PatchFilter(PatchFilterPre::new(pre).map_err(wrong_world)?)
            }
            World::PolicyFilter => {
                Template::PolicyFilter(PolicyFilterPre::new(pre).map_err(wrong_world)?)
            }
        };
        let plugin = LoadedPlugin {
            name: entry.name.clone(),
            world,
            digest,
            limits,
            size: source.bytes.len(),
            settings,
            template,
            engine: self.engine.clone(),
            _ticker: self.ticker.clone(),
        };
        // Settings are checked once at load, so a bad one fails now and not at first use.
        plugin.check_settings().map_err(|e| match e {
            CallError::Settings { message, .. } => format!("settings rejected: {message}"),
            other => other.to_string(),
        })?;
        Ok(plugin)
    }
}

/// What the patch-filter said.
#[derive(Clone, Debug, PartialEq)]
pub enum Review {
    Allow,
    Deny(String),
    Rewrite { patch: String, reason: String },
}

/// What the policy-filter said.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Investigate,
    Skip(String),
}

pub use bindings::patch_filter::sre_operator::plugin::types::ReviewContext;
pub use bindings::policy_filter::sre_operator::plugin::types::DecideContext;
pub use bindings::tool::sre_operator::plugin::types::ToolSpec;

impl LoadedPlugin {
    fn store(&self, access: Option<ClusterAccess>) -> Store<CallState> {
        let stdout = MemoryOutputPipe::new(STDIO_CAP);
        let stderr = MemoryOutputPipe::new(STDIO_CAP);
        // Nothing is granted: no preopened directories, no environment, no arguments, no stdin,
        // no sockets, no name lookups.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = CallState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: self.limits.memory_bytes,
                hit: false,
            },
            access,
            stdout,
            stderr,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let ticks = self.limits.timeout.as_micros().div_ceil(TICK.as_micros()) as u64 + 1;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        store
    }

    /// Turns a wasmtime failure into the limit it hit, if any.
    fn classify(&self, call: &str, store: &Store<CallState>, error: wasmtime::Error) -> CallError {
        let (plugin, call) = (self.name.clone(), call.to_string());
        let state = store.data();
        if state.limiter.hit {
            return CallError::Memory {
                plugin,
                call,
                limit: self.limits.memory_bytes,
            };
        }
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return CallError::Deadline {
                plugin,
                call,
                limit: self.limits.timeout,
            };
        }
        for (stream, pipe) in [("stderr", &state.stderr), ("stdout", &state.stdout)] {
            if pipe.contents().len() >= STDIO_CAP {
                return CallError::Stdio {
                    plugin,
                    call,
                    stream,
                    limit: STDIO_CAP,
                };
            }
        }
        // wasmtime's own first line only says where ("error while executing at wasm
        // backtrace:"); the root cause says what, and the guest's last line on stderr says why
        // (a Rust panic message, a Python traceback's exception, a JavaScript error).
        let mut message = error.root_cause().to_string();
        if let Some(said) = last_words(&state.stderr.contents()) {
            message = format!("{message}; the plugin said: {said}");
        }
        let message = message
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(500)
            .collect::<String>();
        let message = crate::redact::redact_text(&message);
        CallError::Trap {
            plugin,
            call,
            message,
        }
    }

    /// Sends what the guest printed to the operator's log, capped.
    fn log_stdio(&self, call: &str, store: &Store<CallState>) {
        for (stream, pipe) in [
            ("stdout", &store.data().stdout),
            ("stderr", &store.data().stderr),
        ] {
            let bytes = pipe.contents();
            if !bytes.is_empty() {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
                // A tool prints what it read (logs, env): redacted like anything it returns.
                let text = crate::redact::redact_text(text.trim_end());
                tracing::info!(plugin = %self.name, call, stream, "{text}");
            }
        }
    }

    fn check_output(&self, call: &str, text: &str) -> Result<(), CallError> {
        if text.len() > self.limits.output_bytes {
            return Err(CallError::Output {
                plugin: self.name.clone(),
                call: call.to_string(),
                size: text.len(),
                limit: self.limits.output_bytes,
            });
        }
        Ok(())
    }

    fn settings_error(&self, message: String) -> CallError {
        CallError::Settings {
            plugin: self.name.clone(),
            call: "configure".into(),
            message,
        }
    }

    /// Runs `configure` on a fresh instance; used at load time.
    fn check_settings(&self) -> Result<(), CallError> {
        let mut store = self.store(None);
        let result = match &self.template {
            Template::Tool(pre) => pre
                .instantiate(&mut store)
                .and_then(|i| i.call_configure(&mut store, &self.settings)),
            Template::PatchFilter(pre) => pre
                .instantiate(&mut store)
                .and_then(|i| i.call_configure(&mut store, &self.settings)),
            Template::PolicyFilter(pre) => pre
                .instantiate(&mut store)
                .and_then(|i| i.call_configure(&mut store, &self.settings)),
        };
        self.log_stdio("configure", &store);
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(self.settings_error(message)),
            Err(e) => Err(self.classify("configure", &store, e)),
        }
    }

    /// The tools a `tool` plugin describes (empty for filters).
    pub fn describe(&self) -> Result<Vec<ToolSpec>, CallError> {
        let Template::Tool(pre) = &self.template else {
            return Ok(Vec::new());
        };
        let mut store = self.store(None);
        let result = (|| -> wasmtime::Result<Result<Vec<ToolSpec>, String>> {
            let instance = pre.instantiate(&mut store)?;
            if let Err(message) = instance.call_configure(&mut store, &self.settings)? {
                return Ok(Err(message));
            }
            Ok(Ok(instance.call_describe(&mut store)?))
        })();
        self.log_stdio("describe", &store);
        match result {
            Ok(Ok(tools)) => Ok(tools),
            Ok(Err(message)) => Err(self.settings_error(message)),
            Err(e) => Err(self.classify("describe", &store, e)),
        }
    }

    /// Calls one tool on a fresh instance. Synchronous: run it off the async executor.
    pub fn invoke_tool(
        &self,
        tool: &str,
        arguments: &str,
        access: ClusterAccess,
    ) -> Result<String, CallError> {
        let Template::Tool(pre) = &self.template else {
            return Err(CallError::UnknownTool(tool.to_string()));
        };
        let call = format!("invoke {tool}");
        let mut store = self.store(Some(access));
        let result = (|| -> wasmtime::Result<Result<Result<String, bindings::tool::sre_operator::plugin::types::ToolError>, String>> {
            let instance = pre.instantiate(&mut store)?;
            if let Err(message) = instance.call_configure(&mut store, &self.settings)? {
                return Ok(Err(message));
            }
            Ok(Ok(instance.call_invoke(&mut store, tool, arguments)?))
        })();
        self.log_stdio(&call, &store);
        use bindings::tool::sre_operator::plugin::types::ToolError;
        match result {
            Ok(Ok(Ok(text))) => {
                self.check_output(&call, &text)?;
                Ok(text)
            }
            Ok(Ok(Err(ToolError::UnknownTool(t)))) => Err(CallError::UnknownTool(t)),
            Ok(Ok(Err(ToolError::InvalidArguments(message)))) => Err(CallError::InvalidArguments {
                plugin: self.name.clone(),
                call,
                message,
            }),
            Ok(Ok(Err(ToolError::Failed(message)))) => Err(CallError::Tool {
                plugin: self.name.clone(),
                call,
                message,
            }),
            Ok(Err(message)) => Err(self.settings_error(message)),
            Err(e) => Err(self.classify(&call, &store, e)),
        }
    }

    /// Reviews a patch against its target (patch-filter plugins).
    pub fn review(
        &self,
        target: &str,
        patch: &str,
        context: &ReviewContext,
    ) -> Result<Review, CallError> {
        let Template::PatchFilter(pre) = &self.template else {
            return Err(CallError::Trap {
                plugin: self.name.clone(),
                call: "review".into(),
                message: "not a patch-filter".into(),
            });
        };
        use bindings::patch_filter::sre_operator::plugin::types::ReviewVerdict;
        let mut store = self.store(None);
        let result = (|| -> wasmtime::Result<Result<ReviewVerdict, String>> {
            let instance = pre.instantiate(&mut store)?;
            if let Err(message) = instance.call_configure(&mut store, &self.settings)? {
                return Ok(Err(message));
            }
            Ok(Ok(instance.call_review(&mut store, target, patch, context)?))
        })();
        self.log_stdio("review", &store);
        match result {
            Ok(Ok(ReviewVerdict::Allow)) => Ok(Review::Allow),
            Ok(Ok(ReviewVerdict::Deny(reason))) => {
                self.check_output("review", &reason)?;
                Ok(Review::Deny(reason))
            }
            Ok(Ok(ReviewVerdict::Rewrite(r))) => {
                self.check_output("review", &r.patch)?;
                Ok(Review::Rewrite {
                    patch: r.patch,
                    reason: r.reason,
                })
            }
            Ok(Err(message)) => Err(self.settings_error(message)),
            Err(e) => Err(self.classify("review", &store, e)),
        }
    }

    /// Decides whether a failing Pod is worth an investigation (policy-filter plugins).
    pub fn decide(
        &self,
        pod: &str,
        failure: &str,
        context: &DecideContext,
    ) -> Result<Decision, CallError> {
        let Template::PolicyFilter(pre) = &self.template else {
            return Err(CallError::Trap {
                plugin: self.name.clone(),
                call: "decide".into(),
                message: "not a policy-filter".into(),
            });
        };
        use bindings::policy_filter::sre_operator::plugin::types::Decision as WitDecision;
        let mut store = self.store(None);
        let result = (|| -> wasmtime::Result<Result<WitDecision, String>> {
            let instance = pre.instantiate(&mut store)?;
            if let Err(message) = instance.call_configure(&mut store, &self.settings)? {
                return Ok(Err(message));
            }
            Ok(Ok(instance.call_decide(&mut store, pod, failure, context)?))
        })();
        self.log_stdio("decide", &store);
        match result {
            Ok(Ok(WitDecision::Investigate)) => Ok(Decision::Investigate),
            Ok(Ok(WitDecision::Skip(reason))) => {
                self.check_output("decide", &reason)?;
                Ok(Decision::Skip(reason))
            }
            Ok(Err(message)) => Err(self.settings_error(message)),
            Err(e) => Err(self.classify("decide", &store, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::last_words;

    #[test]
    fn a_trap_says_what_the_guest_said_last() {
        let python = "Traceback (most recent call last):\n  File \"/0/app.py\", line 15, in configure\nValueError: no settings, please\n\nthread '<unnamed>' (1) panicked at runtime/src/lib.rs:1293:29:\nPython function threw an unexpected exception\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            last_words(python.as_bytes()).unwrap(),
            "ValueError: no settings, please"
        );
        let javascript = "expected a string, received [object]\nStack:\n  _utf8AllocateAndEncode@initializer.js:24:11\n\nRedirecting call to abort() to mozalloc_abort\n\n";
        assert_eq!(
            last_words(javascript.as_bytes()).unwrap(),
            "expected a string, received [object]"
        );
        let rust = "\nthread '<unnamed>' panicked at src/lib.rs:10:5:\nindex out of bounds: the len is 0 but the index is 3\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            last_words(rust.as_bytes()).unwrap(),
            "index out of bounds: the len is 0 but the index is 3"
        );
        assert_eq!(last_words(b""), None);
    }
}

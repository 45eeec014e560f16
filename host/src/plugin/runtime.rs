//! The engine and how a plugin loads: one [`Engine`] with epoch interruption and a ticker thread,
//! one linker per world, each component compiled once (the compiled artifact cached on disk,
//! keyed by digest and engine) and pre-instantiated against its world, its settings checked.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::World;
use super::bindings::patch_filter::{PatchFilter, PatchFilterPre};
use super::bindings::policy_filter::{PolicyFilter, PolicyFilterPre};
use super::bindings::tool::{Tool, ToolPre};
use super::cache;
use super::egress::{Egress, SecretSource};
use super::errors::CallError;
use super::loaded::{LoadedPlugin, Template};
use super::manifest::ManifestEntry;
use super::sandbox::{CallState, Ticker};

/// The engine, one linker per world, and the compiled-artifact cache.
pub struct Runtime {
    engine: Engine,
    tool_linker: Linker<CallState>,
    patch_linker: Linker<CallState>,
    policy_linker: Linker<CallState>,
    pub(super) cache: Option<cache::ArtifactCache>,
    ticker: Arc<Ticker>,
    /// Where egress grants' credentials come from; none outside a cluster.
    secrets: RwLock<Option<Arc<dyn SecretSource>>>,
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
        // Tools of world 0.2.0 may import the outgoing handler; every request is the host's
        // to grant (egress.rs). Filters get no network at all.
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut tool_linker)?;
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
            secrets: RwLock::new(None),
        }))
    }

    /// Reads egress grants' credentials from `secrets` for plugins loaded from now on.
    pub fn set_secrets(&self, secrets: Arc<dyn SecretSource>) {
        *self.secrets.write().unwrap_or_else(|e| e.into_inner()) = Some(secrets);
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
        let egress = match (world, entry.egress.is_empty()) {
            (_, true) => None,
            (World::Tool, false) => {
                let secrets = self
                    .secrets
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                Some(Arc::new(Egress::parse(&entry.egress, secrets)?))
            }
            (other, false) => {
                return Err(format!(
                    "egress is granted to tool plugins only, not to a {other} plugin"
                ));
            }
        };
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
            egress,
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

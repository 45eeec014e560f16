//! The engine and how a plugin loads: one [`Engine`] with epoch interruption, a ticker thread
//! and a pooling instance allocator, one linker per world, each component compiled once in an
//! engine of its own ([`Compiler`]: in the operator, in a child process of its binary; the
//! compiled artifact cached on disk, keyed by digest and engine) and pre-instantiated against its
//! world, its settings checked.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::World;
use super::bindings::patch_filter::{PatchFilter, PatchFilterPre};
use super::bindings::policy_filter::{PolicyFilter, PolicyFilterPre};
use super::bindings::tool::{Tool, ToolPre};
use super::cache;
use super::egress::{Egress, SecretSource};
use super::errors::CallError;
use super::loaded::{LoadedPlugin, Prepared, Template};
use super::manifest::ManifestEntry;
use super::sandbox::{
    CONCURRENT_CALLS, CallState, MAX_INSTANCES, MAX_MEMORIES, MAX_TABLE_ELEMENTS, MAX_TABLES,
    POOL_MEMORIES, POOL_TABLES, Slots, Ticker,
};
use super::{compile_process, snapshot};

/// The engine, one linker per world, and the compiled-artifact cache.
pub struct Runtime {
    engine: Engine,
    compiler: Compiler,
    linkers: Linkers,
    pub(super) cache: Option<cache::ArtifactCache>,
    ticker: Arc<Ticker>,
    strategy: Strategy,
    /// Permits for the pool's sandboxes (pooled strategy only).
    slots: Option<Arc<Slots>>,
    /// Where egress grants' credentials come from; none outside a cluster.
    secrets: RwLock<Option<Arc<dyn SecretSource>>>,
    /// Builds loaded plugins' configured snapshots, once started (the operator starts it).
    snapshots: OnceLock<snapshot::Worker>,
}

/// One linker per world.
#[derive(Clone)]
pub(super) struct Linkers {
    tool: Linker<CallState>,
    patch: Linker<CallState>,
    policy: Linker<CallState>,
}

impl Linkers {
    pub(super) fn new(engine: &Engine) -> anyhow::Result<Linkers> {
        let mut tool = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut tool)?;
        // Tools of world 0.2.0 may import the outgoing handler; every request is the host's
        // to grant (egress.rs). Filters get no network at all.
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut tool)?;
        Tool::add_to_linker::<CallState, HasSelf<CallState>>(&mut tool, |s| s)?;
        let mut patch = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut patch)?;
        PatchFilter::add_to_linker::<CallState, HasSelf<CallState>>(&mut patch, |s| s)?;
        let mut policy = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut policy)?;
        PolicyFilter::add_to_linker::<CallState, HasSelf<CallState>>(&mut policy, |s| s)?;
        Ok(Linkers {
            tool,
            patch,
            policy,
        })
    }

    pub(super) fn of(&self, world: World) -> &Linker<CallState> {
        match world {
            World::Tool => &self.tool,
            World::PatchFilter => &self.patch,
            World::PolicyFilter => &self.policy,
        }
    }

    /// `component` linked against `world` and checked to implement it.
    pub(super) fn template(&self, world: World, component: &Component) -> Result<Template, String> {
        let pre = self
            .of(world)
            .instantiate_pre(component)
            .map_err(|e| format!("cannot be linked as a {world} plugin (it imports what the host does not provide): {e:#}"))?;
        let wrong_world =
            |e: wasmtime::Error| format!("does not implement the {world} world: {e:#}");
        Ok(match world {
            World::Tool => Template::Tool(ToolPre::new(pre).map_err(wrong_world)?),
            World::PatchFilter => {
                Template::PatchFilter(PatchFilterPre::new(pre).map_err(wrong_world)?)
            }
            World::PolicyFilter => {
                Template::PolicyFilter(PolicyFilterPre::new(pre).map_err(wrong_world)?)
            }
        })
    }
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

/// How instances are made and compiled artifacts read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Production: a pooling allocator with copy-on-write memory images reset in place between
    /// calls; artifacts mapped from a sealed private copy of the cache file.
    Pooled,
    /// What [`Runtime::new`] falls back to when the pool's address space cannot be reserved
    /// (a process under `ulimit -v`): an mmap per memory per call, each reserving only what the
    /// memory uses plus room to grow, at the price of explicit bounds checks.
    OnDemand,
    /// The runtime as it was before issue 21 (on-demand with wasmtime's default 4 GiB + 32 MiB
    /// reservation per memory, artifacts read into memory), kept so that `benches/plugins.rs`
    /// measures old and new in one run.
    #[doc(hidden)]
    Before,
    /// [`Strategy::Pooled`] with wasmtime's default 4 GiB + 32 MiB slots, in which it drops
    /// bounds checks (about 130 GiB of address space): for the benchmark's trade-off figures.
    #[doc(hidden)]
    PooledFourGiBSlots,
}

/// Address space after each memory slot (and each on-demand memory) that faults rather than
/// being checked: it lets the compiler fold a load's static offset into the bounds check.
/// Offsets are small in practice; wasmtime's default of 32 MiB would add 1 GiB across the pool.
const GUARD: u64 = 2 << 20;
/// Room an on-demand memory (the fallback) reserves past its size, so that growing rarely moves
/// it: the default plugin memory limit.
const FALLBACK_GROWTH: u64 = 64 << 20;
/// Bytes of a pooled memory that are reset in place (only the pages a call wrote, found with
/// Linux's PAGEMAP_SCAN) rather than handed back to the kernel and faulted in again on the next
/// call. Python's and JavaScript's runtimes write a few MiB of their 9-12 MiB images per call.
/// Without PAGEMAP_SCAN (Linux before 6.7) wasmtime would rewrite this whole prefix on every
/// call, so nothing is kept then.
const KEEP_RESIDENT: usize = 32 << 20;
/// Pool slots kept warm for a plugin that is not running, so that each of a few dozen plugins
/// finds its own memory image still mapped; each holds at most the pages its last call wrote.
const WARM_SLOTS: u32 = 16;

/// The largest linear memory any call can have here, in whole WebAssembly pages: the most a
/// manifest may grant (the host's ceiling, or the operator's container limit when lower).
fn memory_slot_bytes() -> u64 {
    const PAGE: u64 = 64 << 10;
    (super::manifest::memory_ceiling() as u64).div_ceil(PAGE) * PAGE
}

/// Address space the pooled engine reserves for linear memories and tables (nothing of it is
/// committed until a call uses it).
pub fn pool_reservation() -> u64 {
    // wasmtime's table slots hold 8-byte elements.
    let tables = POOL_TABLES as u64 * (MAX_TABLE_ELEMENTS as u64 * 8).next_multiple_of(4096);
    POOL_MEMORIES as u64 * (memory_slot_bytes() + GUARD) + GUARD + tables
}

/// The engine's configuration for `strategy`.
pub(super) fn engine_config(strategy: Strategy) -> Config {
    engine_config_for(strategy, memory_slot_bytes())
}

/// [`engine_config`] with memory slots of `slot` bytes: what a compile process is told, so
/// that what it compiles loads in the engine that asked.
pub(super) fn engine_config_for(strategy: Strategy, slot: u64) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // No map from machine code back to WebAssembly byte offsets: only backtraces use it, and a
    // trap is reported as its kind and the plugin's stderr. Python's artifact is 8% smaller and
    // its cached load a fifth faster (benches/plugins.rs). `Before` is the runtime as it was.
    config.generate_address_map(strategy == Strategy::Before);
    match strategy {
        Strategy::Pooled | Strategy::PooledFourGiBSlots => {
            // A slot as large as the largest memory a plugin may be granted, not wasmtime's
            // 4 GiB that lets it drop bounds checks: 32 of those are 128 GiB of address space
            // (benches/plugins.rs measures what the checks cost).
            if strategy == Strategy::Pooled {
                config.memory_reservation(slot);
                config.memory_guard_size(GUARD);
            }
            let keep = if PoolingAllocationConfig::is_pagemap_scan_available() {
                KEEP_RESIDENT
            } else {
                0
            };
            let mut pool = PoolingAllocationConfig::new();
            pool.total_component_instances(CONCURRENT_CALLS as u32)
                .total_core_instances((CONCURRENT_CALLS * MAX_INSTANCES) as u32)
                .max_core_instances_per_component(MAX_INSTANCES as u32)
                .total_memories(POOL_MEMORIES as u32)
                .max_memories_per_component(MAX_MEMORIES as u32)
                .max_memories_per_module(MAX_MEMORIES as u32)
                .max_memory_size(slot as usize)
                .total_tables(POOL_TABLES as u32)
                .max_tables_per_component(MAX_TABLES as u32)
                .max_tables_per_module(MAX_TABLES as u32)
                .table_elements(MAX_TABLE_ELEMENTS)
                .pagemap_scan(Enabled::Auto)
                .linear_memory_keep_resident(keep)
                .table_keep_resident(keep)
                .max_unused_warm_slots(WARM_SLOTS)
                // Calls are synchronous: no fiber stacks (1000 of 2 MiB by default, writable).
                .total_stacks(0);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        Strategy::OnDemand => {
            config.memory_reservation(0);
            config.memory_reservation_for_growth(FALLBACK_GROWTH);
            config.memory_guard_size(GUARD);
        }
        Strategy::Before => {}
    }
    config
}

impl Runtime {
    /// A runtime that caches compiled components in `cache_dir` (created private) when given.
    /// Instances come from a pool; when its address space cannot be reserved, from the on-demand
    /// allocator, with a warning saying why.
    pub fn new(cache_dir: Option<PathBuf>) -> anyhow::Result<Arc<Runtime>> {
        match Runtime::with_strategy(cache_dir.clone(), Strategy::Pooled) {
            Ok(runtime) => Ok(runtime),
            Err(e) => {
                tracing::warn!(
                    reservation_gib = pool_reservation() >> 30,
                    error = %format!("{e:#}"),
                    "cannot reserve address space for the plugin instance pool (is the process under `ulimit -v`?); \
                     falling back to on-demand instances: plugin calls are slower, nothing else changes"
                );
                Runtime::with_strategy(cache_dir, Strategy::OnDemand)
            }
        }
    }

    /// [`Runtime::new`] with the given [`Strategy`] and no fallback.
    #[doc(hidden)]
    pub fn with_strategy(
        cache_dir: Option<PathBuf>,
        strategy: Strategy,
    ) -> anyhow::Result<Arc<Runtime>> {
        let engine = Engine::new(&engine_config(strategy))?;
        let linkers = Linkers::new(&engine)?;
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
            compiler: Compiler::new(strategy, memory_slot_bytes()),
            linkers,
            cache,
            strategy,
            slots: matches!(strategy, Strategy::Pooled | Strategy::PooledFourGiBSlots)
                .then(|| Arc::new(Slots::for_pool())),
            secrets: RwLock::new(None),
            snapshots: OnceLock::new(),
        }))
    }

    /// From now on, plugins (and their snapshots) are compiled in child processes running
    /// `program`, the operator's own binary (its hidden `compile-plugin` command): the
    /// long-running operator then never maps the compiler nor keeps a compile's memory. Calls
    /// made before this compile in-process. The `Before` strategy always compiles in-process.
    pub fn compile_in_children_of(&self, program: PathBuf) {
        if self.strategy != Strategy::Before {
            let _ = self.compiler.program.set(program);
        }
    }

    /// How this runtime makes instances: [`Strategy::OnDemand`] after a fallback.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// From now on, each plugin loaded without a configured snapshot in the cache gets one
    /// built in the background (one at a time, at a lower CPU priority) and switches to it when
    /// it is ready; see snapshot.rs. Loads still use a snapshot an earlier run left in the
    /// cache without this. The operator turns it on; short-lived commands do not.
    pub fn snapshot_in_background(&self) {
        if self.strategy == Strategy::Before {
            return;
        }
        self.snapshots
            .get_or_init(|| snapshot::Worker::start(self.snapshot_builder()));
    }

    /// What the snapshot thread builds with.
    pub(super) fn snapshot_builder(&self) -> snapshot::Builder {
        snapshot::Builder {
            engine: self.engine.clone(),
            compiler: self.compiler.clone(),
            linkers: self.linkers.clone(),
            cache: self.cache.clone(),
        }
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
            .and_then(|c| c.load(&self.engine, digest, self.strategy != Strategy::Before))
        {
            return Ok(component);
        }
        let artifact = self.compiler.compile(bytes)?;
        adopt(
            &self.engine,
            self.cache.as_ref(),
            digest,
            &artifact,
            self.strategy != Strategy::Before,
        )
    }

    /// The component's digest, checked against the manifest's `sha256` when it pins one, and
    /// the plugin's configured snapshot for `settings` if the cache holds one. With a pin, the
    /// snapshot (named by the pinned digest) is read from the cache while the bytes are hashed:
    /// for Python's 18 MB component each is about half of a cached load. Nothing read is used
    /// unless the bytes have the pinned digest.
    fn digest_and_snapshot(
        &self,
        source: &PluginSource<'_>,
        settings: &str,
    ) -> Result<(String, Option<Component>), String> {
        let snapshot_of = |digest: &str| {
            if self.strategy == Strategy::Before {
                return None;
            }
            let key = snapshot::key(digest, settings);
            self.cache
                .as_ref()
                .and_then(|c| c.load(&self.engine, &key, true))
        };
        let (digest, snapshot) = match source.entry.sha256.as_deref() {
            Some(pinned) => {
                let pinned = pinned.to_ascii_lowercase();
                std::thread::scope(|scope| {
                    let hashing = scope.spawn(|| sha256_hex(source.bytes));
                    let snapshot = snapshot_of(&pinned);
                    let digest = hashing
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p));
                    (digest, snapshot)
                })
            }
            None => {
                let digest = sha256_hex(source.bytes);
                let snapshot = snapshot_of(&digest);
                (digest, snapshot)
            }
        };
        if let Some(expected) = &source.entry.sha256
            && !expected.eq_ignore_ascii_case(&digest)
        {
            return Err(format!(
                "sha256 mismatch: the manifest says {expected}, {} has {digest}",
                source.entry.location()
            ));
        }
        Ok((digest, snapshot))
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
        let (digest, snapshot) = self.digest_and_snapshot(&source, &settings)?;
        let key = snapshot::key(&digest, &settings);
        let plugin = |prepared: Prepared| LoadedPlugin {
            name: entry.name.clone(),
            world,
            digest: digest.clone(),
            limits,
            size: source.bytes.len(),
            settings: settings.clone(),
            egress: egress.clone(),
            prepared: Arc::new(RwLock::new(Arc::new(prepared))),
            engine: self.engine.clone(),
            slots: self.slots.clone(),
            _ticker: self.ticker.clone(),
        };
        // This plugin configured with these settings, snapshotted by an earlier load: its
        // `configure` accepted them then, so nothing is left to check.
        if let Some(component) = snapshot {
            match self.linkers.template(world, &component) {
                Ok(template) => {
                    return Ok(plugin(Prepared::new(template, &component, true)));
                }
                Err(e) => {
                    tracing::warn!(plugin = %entry.name, error = %e, "ignoring an unusable configured snapshot")
                }
            }
        }
        let component = self
            .compile(source.bytes, &digest)
            .map_err(|e| format!("{} {e}", entry.location()))?;
        let template = self.linkers.template(world, &component)?;
        let plugin = plugin(Prepared::new(template, &component, false));
        // Settings are checked once at load, so a bad one fails now and not at first use.
        plugin.check_settings().map_err(|e| match e {
            CallError::Settings { message, .. } => format!("settings rejected: {message}"),
            other => other.to_string(),
        })?;
        if let Some(worker) = self.snapshots.get() {
            worker.submit(snapshot::Job {
                configure: snapshot::Configure {
                    plugin: plugin.name.clone(),
                    world,
                    settings: plugin.settings.clone(),
                    limits,
                },
                key,
                bytes: source.bytes.to_vec(),
                slot: Arc::downgrade(&plugin.prepared),
            });
        }
        Ok(plugin)
    }
}

/// Compiles in an engine made for the one compile and dropped after it, or in a child process
/// of the operator's own binary ([`Runtime::compile_in_children_of`]). Cranelift keeps its
/// scratch space (a few MB per compiling thread, more for large functions) in the engine that
/// compiled for as long as that engine lives: in the engine that runs plugins, that is for good
/// (7.6 MB after the built-in tools, the burst benchmark's heap profile). That engine only loads
/// what this one compiled ([`adopt`]). In a child process, the operator does not even map the
/// compiler's code (5-6 MiB of its resident memory) nor keep the compile's heap, and a compile
/// or a snapshot's `configure` that runs away ends with the child, not the operator.
#[derive(Clone)]
pub(super) struct Compiler {
    strategy: Strategy,
    /// The memory slot size the engine's configuration was made for.
    slot: u64,
    /// The running engine's configuration (so that what is compiled loads there) with
    /// on-demand instances: the only instance ever made here is a snapshot's `configure`.
    config: Config,
    /// The operator's binary, once compiles run in child processes of it.
    program: Arc<OnceLock<PathBuf>>,
}

impl Compiler {
    pub(super) fn new(strategy: Strategy, slot: u64) -> Compiler {
        let mut config = engine_config_for(strategy, slot);
        config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
        Compiler {
            strategy,
            slot,
            config,
            program: Arc::default(),
        }
    }

    /// An engine to compile in; drop it, then [`crate::heap::release_freed`].
    fn engine(&self) -> Result<Engine, String> {
        Engine::new(&self.config).map_err(|e| format!("cannot make an engine to compile in: {e:#}"))
    }

    /// The request a compile process is sent for this compiler's engine.
    fn request(&self, configure: Option<&snapshot::Configure>) -> compile_process::Request {
        compile_process::Request {
            strategy: self.strategy,
            slot_bytes: self.slot,
            configure: configure.cloned(),
        }
    }

    /// `bytes` compiled: wasmtime's serialized artifact, for [`adopt`].
    pub(super) fn compile(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        self.in_child_or_here(None, bytes, |engine| {
            engine
                .precompile_component(bytes)
                .map_err(|e| format!("does not compile: {e}"))
        })
    }

    /// The configured snapshot of `bytes` compiled (see snapshot.rs), for [`adopt`].
    pub(super) fn snapshot(
        &self,
        configure: &snapshot::Configure,
        bytes: &[u8],
    ) -> Result<Vec<u8>, String> {
        self.in_child_or_here(Some(configure), bytes, |engine| {
            snapshot::artifact(engine, configure, bytes)
        })
    }

    /// `work` in a compile process when there is a program for one, else (or when it cannot
    /// be started: exec refused by a sandbox, say) [`here`](Self::here).
    fn in_child_or_here(
        &self,
        configure: Option<&snapshot::Configure>,
        bytes: &[u8],
        work: impl FnOnce(&Engine) -> Result<Vec<u8>, String>,
    ) -> Result<Vec<u8>, String> {
        if let Some(program) = self.program.get() {
            match compile_process::run(program, &self.request(configure), bytes) {
                Ok(artifact) => return Ok(artifact),
                Err(compile_process::Failed::Ran(reason)) => return Err(reason),
                Err(compile_process::Failed::NotStarted(reason)) => {
                    tracing::warn!(%reason, "compiling in the operator's own process instead");
                }
            }
        }
        self.here(work)
    }

    /// `work` done in this process, in a compiling engine dropped after it.
    pub(super) fn here(
        &self,
        work: impl FnOnce(&Engine) -> Result<Vec<u8>, String>,
    ) -> Result<Vec<u8>, String> {
        let engine = self.engine()?;
        let artifact = work(&engine);
        drop(engine);
        crate::heap::release_freed();
        artifact
    }
}

/// `artifact` (a [`Compiler`]'s output) as a component of `engine`: kept in `cache` under `key`
/// and loaded back as a later load would (mapped, when `mapped`), or read from memory when it
/// cannot be cached.
pub(super) fn adopt(
    engine: &Engine,
    cache: Option<&cache::ArtifactCache>,
    key: &str,
    artifact: &[u8],
    mapped: bool,
) -> Result<Component, String> {
    if let Some(component) = cache.and_then(|c| c.keep(engine, key, artifact, mapped)) {
        return Ok(component);
    }
    // SAFETY: `artifact` is wasmtime's own output, made a moment ago in this process by an
    // engine configured as `engine` is (deserialize checks that too).
    unsafe { Component::deserialize(engine, artifact) }
        .map_err(|e| format!("its compiled code does not load: {e:#}"))
}

//! A plugin configured once per load: `configure` runs on one instance, and that instance's
//! state (its memories and globals) becomes the component every call instantiates
//! (wasmtime-wizer's snapshot). A call then starts where `configure` left off instead of
//! parsing its settings again: half of a JavaScript call, a third of a Python one
//! (benches/plugins.rs). Each call still gets a fresh instance of that one state, so nothing a
//! call does reaches the next.
//!
//! What a snapshot cannot carry, it refuses, and the plugin is configured on every call as
//! before: a handle `configure` still holds to anything of the host's (a stream, a request)
//! would name nothing in the next call's fresh store, and components shaped unlike what wizer
//! reads (nested components, a module instantiated twice) are not rewritten. What `configure`
//! read from WASI (random bytes, the clock) is the same in every call made from the snapshot.
//!
//! Building one compiles the component twice more (instrumented, then the snapshot): seconds
//! and a few hundred MB for Python's and JavaScript's runtimes. So the operator builds them in
//! the background, one at a time at a lower CPU priority, while calls run `configure` as
//! before, and keeps each in the compiled-artifact cache under a key naming the component, the
//! settings and this build of the operator, so that a restart loads it directly. An attempt
//! leaves a marker beside it until it succeeds: a process killed mid-build (out of memory) or a
//! plugin that cannot be snapshotted is not tried again with the same key.

use std::future::Future;
use std::sync::{Arc, RwLock, Weak, mpsc};
use std::time::Instant;

use wasmtime::component::{Component, Instance, Lift, Linker, WasmList};
use wasmtime::{AsContextMut, Engine, Store};
use wasmtime_wizer::{ComponentInstanceState, Wizer};

use super::World;
use super::cache::ArtifactCache;
use super::loaded::{Prepared, capped};
use super::manifest::Limits;
use super::runtime::{Compiler, Linkers, adopt, sha256_hex};
use super::sandbox::{CallState, Ticker, new_store};

/// The cache key of `digest`'s component configured with `settings` by this operator build.
pub(super) fn key(digest: &str, settings: &str) -> String {
    let named = format!("{digest}\n{}\n{settings}", env!("CARGO_PKG_VERSION"));
    format!("configured-{}", sha256_hex(named.as_bytes()))
}

/// What configuring a plugin for its snapshot needs besides its bytes: sent as is to a compile
/// process (compile_process.rs).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Configure {
    pub(super) plugin: String,
    pub(super) world: World,
    pub(super) settings: String,
    pub(super) limits: Limits,
}

/// A loaded plugin whose snapshot is wanted.
pub(super) struct Job {
    pub(super) configure: Configure,
    pub(super) key: String,
    pub(super) bytes: Vec<u8>,
    /// Where the plugin's calls find their template; gone once the plugin is unloaded.
    pub(super) slot: Weak<RwLock<Arc<Prepared>>>,
}

/// What building a snapshot needs of the runtime.
pub(super) struct Builder {
    pub(super) engine: Engine,
    pub(super) compiler: Compiler,
    pub(super) linkers: Linkers,
    pub(super) cache: Option<ArtifactCache>,
}

/// The background thread that builds snapshots, one job at a time.
pub(super) struct Worker {
    jobs: mpsc::Sender<Job>,
}

impl Worker {
    pub(super) fn start(builder: Builder) -> Worker {
        let (jobs, queue) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("plugin-snapshot".into())
            .spawn(move || {
                // Behind the controllers and the calls: a snapshot only makes later calls faster.
                #[cfg(target_os = "linux")]
                unsafe {
                    // SAFETY: plain syscall; 0 names the calling thread on Linux.
                    libc::setpriority(libc::PRIO_PROCESS, 0, 10);
                }
                let mut failed = std::collections::HashSet::new();
                for job in queue {
                    let (plugin, key) = (job.configure.plugin.clone(), job.key.clone());
                    // wizer reads components the plugin's author shaped: a panic in it fails
                    // this snapshot, not the thread (and its marker stays, so not again).
                    let run = std::panic::AssertUnwindSafe(|| builder.run(job, &mut failed));
                    if std::panic::catch_unwind(run).is_err() {
                        tracing::warn!(plugin = %plugin, "building a configured snapshot failed (panicked); plugin keeps running configure on every call");
                        failed.insert(key);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the plugin snapshot thread; plugins run configure on every call");
        }
        Worker { jobs }
    }

    pub(super) fn submit(&self, job: Job) {
        // A closed queue means the thread never started; calls keep running configure.
        let _ = self.jobs.send(job);
    }
}

impl Builder {
    fn run(&self, job: Job, failed: &mut std::collections::HashSet<String>) {
        if job.slot.strong_count() == 0 || failed.contains(&job.key) {
            return;
        }
        let started = Instant::now();
        let component = match self.cached(&job).map(Ok).or_else(|| self.build(&job)) {
            Some(Ok(component)) => component,
            Some(Err(reason)) => {
                tracing::info!(plugin = %job.configure.plugin, reason = %reason, "plugin keeps running configure on every call");
                failed.insert(job.key);
                return;
            }
            None => {
                failed.insert(job.key);
                return;
            }
        };
        let template = match self.linkers.template(job.configure.world, &component) {
            Ok(template) => template,
            Err(e) => {
                tracing::warn!(plugin = %job.configure.plugin, error = %e, "the configured snapshot does not link; plugin keeps running configure on every call");
                failed.insert(job.key);
                return;
            }
        };
        if let Some(slot) = job.slot.upgrade() {
            *slot.write().unwrap_or_else(|e| e.into_inner()) =
                Arc::new(Prepared::new(template, &component, true));
            tracing::info!(
                plugin = %job.configure.plugin,
                took_ms = started.elapsed().as_millis() as u64,
                "plugin configured once: its calls now start from the snapshot"
            );
        }
    }

    fn cached(&self, job: &Job) -> Option<Component> {
        self.cache.as_ref()?.load(&self.engine, &job.key, true)
    }

    /// Builds, compiles and caches the snapshot. None when an earlier attempt left its marker
    /// (the reason is logged here).
    fn build(&self, job: &Job) -> Option<Result<Component, String>> {
        let marker = self
            .cache
            .as_ref()
            .map(|c| c.path(&self.engine, &job.key).with_extension("attempt"));
        if let Some(marker) = &marker {
            if let Ok(earlier) = std::fs::read_to_string(marker) {
                tracing::info!(plugin = %job.configure.plugin, earlier = %earlier.trim(), "not building a configured snapshot again (an earlier attempt failed or did not finish); plugin keeps running configure on every call");
                return None;
            }
            let _ = std::fs::write(
                marker,
                format!(
                    "started by process {} and did not finish\n",
                    std::process::id()
                ),
            );
        }
        // The reason may carry what the plugin's configure said: capped like any message of a
        // plugin's, before the log and the marker.
        let artifact = self
            .compiler
            .snapshot(&job.configure, &job.bytes)
            .map_err(capped);
        let kept =
            artifact.and_then(|a| adopt(&self.engine, self.cache.as_ref(), &job.key, &a, true));
        if let Some(marker) = &marker {
            let _ = match &kept {
                Ok(_) => std::fs::remove_file(marker),
                Err(reason) => std::fs::write(marker, format!("{reason}\n")),
            };
        }
        Some(kept)
    }
}

/// The snapshot of `bytes` configured as `job` says, compiled by `engine` (a compiling engine of
/// the job's own, with its own linkers and epoch: see `Compiler`).
pub(super) fn artifact(engine: &Engine, job: &Configure, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let linkers =
        Linkers::new(engine).map_err(|e| format!("cannot link in the compiling engine: {e:#}"))?;
    let _ticker = Ticker::start(engine.clone());
    let sandbox = || {
        new_store(
            engine,
            &job.plugin,
            &job.limits,
            Instant::now() + job.limits.timeout,
            None,
            None,
        )
    };
    let wasm = configured(engine, linkers.of(job.world), bytes, &job.settings, sandbox)
        .map_err(|e| e.to_string())?;
    engine
        .precompile_component(&wasm)
        .map_err(|e| format!("the snapshot does not compile: {e:#}"))
}

/// Why a plugin could not be snapshotted; it is then configured on every call.
#[derive(Debug, thiserror::Error)]
pub(super) enum NotSnapshotted {
    /// The component's shape is one wizer does not rewrite.
    #[error("its component cannot be rewritten: {0}")]
    Shape(String),
    /// `configure` refused the settings it accepted at load (it is not deterministic).
    #[error("its configure refused the settings it accepted at load: {0}")]
    Refused(String),
    /// `configure` trapped or the instrumented component would not run.
    #[error("configuring it failed: {0}")]
    Failed(String),
    /// `configure` left host resources open: their handles would dangle in every call.
    #[error("its configure keeps host resources open (a stream, a request)")]
    HoldsResources,
}

/// The component `bytes` configured with `settings`, as a new component. `sandbox` makes a
/// fresh store (the plugin's limits and deadline apply to this `configure` as to any call).
pub(super) fn configured(
    engine: &Engine,
    linker: &Linker<CallState>,
    bytes: &[u8],
    settings: &str,
    sandbox: impl FnOnce() -> Store<CallState>,
) -> Result<Vec<u8>, NotSnapshotted> {
    let mut wizer = Wizer::new();
    // `configure` stays exported: the world's bindings look for it.
    wizer.keep_init_func(true);
    let (cx, instrumented) = wizer
        .instrument_component(bytes)
        .map_err(|e| NotSnapshotted::Shape(format!("{e:#}")))?;
    let component = Component::from_binary(engine, &instrumented)
        .map_err(|e| NotSnapshotted::Shape(format!("{e:#}")))?;
    let mut store = sandbox();
    let failed = |e: wasmtime::Error| NotSnapshotted::Failed(format!("{e:#}"));
    let instance = linker
        .instantiate_pre(&component)
        .and_then(|pre| pre.instantiate(&mut store))
        .map_err(failed)?;
    let configure = instance
        .get_typed_func::<(&str,), (Result<(), String>,)>(&mut store, "configure")
        .map_err(failed)?;
    let (answer,) = configure.call(&mut store, (settings,)).map_err(failed)?;
    answer.map_err(NotSnapshotted::Refused)?;
    if store.data().holds_resources() {
        return Err(NotSnapshotted::HoldsResources);
    }
    let mut state = Probe {
        store: &mut store,
        instance,
        failed: None,
    };
    // Every accessor below is one wizer added and answers at once: the future is ready on its
    // first poll.
    let snapshot = futures::executor::block_on(wizer.snapshot_component(&cx, &mut state));
    if let Some(e) = state.failed.take() {
        return Err(failed(e));
    }
    snapshot.map_err(|e| NotSnapshotted::Shape(format!("{e:#}")))
}

/// Reads the instrumented instance's state for wizer, through the accessors it exported.
struct Probe<'a> {
    store: &'a mut Store<CallState>,
    instance: Instance,
    /// The first accessor that failed (the snapshot is then discarded).
    failed: Option<wasmtime::Error>,
}

impl Probe<'_> {
    /// Calls `instance#func`, which takes nothing and returns one `R`.
    fn call<R: Lift + Send + Sync + 'static, O: Default>(
        &mut self,
        instance: &str,
        func: &str,
        read: impl FnOnce(&mut Store<CallState>, R) -> O,
    ) -> O {
        if self.failed.is_some() {
            return O::default();
        }
        let result = (|| {
            let (_, interface) = self
                .instance
                .get_export(&mut *self.store, None, instance)
                .ok_or_else(|| wasmtime::format_err!("no export {instance}"))?;
            let (_, export) = self
                .instance
                .get_export(&mut *self.store, Some(&interface), func)
                .ok_or_else(|| wasmtime::format_err!("no export {instance}#{func}"))?;
            let func = self
                .instance
                .get_typed_func::<(), (R,)>(&mut *self.store, export)?;
            let (value,) = func.call(self.store.as_context_mut(), ())?;
            let out = read(self.store, value);
            Ok(out)
        })();
        result.unwrap_or_else(|e| {
            self.failed = Some(e);
            O::default()
        })
    }
}

impl ComponentInstanceState for Probe<'_> {
    fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) -> impl Future<Output = ()> + Send {
        let mut contents = Some(contents);
        self.call(instance, func, |store, list: WasmList<u8>| {
            if let Some(contents) = contents.take() {
                contents(list.as_le_slice(&*store));
            }
        });
        // A failed read still answers (empty), so that wizer finishes; the result is dropped.
        if let Some(contents) = contents.take() {
            contents(&[]);
        }
        std::future::ready(())
    }

    fn call_func_ret_s32(
        &mut self,
        instance: &str,
        func: &str,
    ) -> impl Future<Output = i32> + Send {
        std::future::ready(self.call(instance, func, |_, v: i32| v))
    }

    fn call_func_ret_s64(
        &mut self,
        instance: &str,
        func: &str,
    ) -> impl Future<Output = i64> + Send {
        std::future::ready(self.call(instance, func, |_, v: i64| v))
    }

    fn call_func_ret_f32(
        &mut self,
        instance: &str,
        func: &str,
    ) -> impl Future<Output = u32> + Send {
        std::future::ready(self.call(instance, func, |_, v: f32| v.to_bits()))
    }

    fn call_func_ret_f64(
        &mut self,
        instance: &str,
        func: &str,
    ) -> impl Future<Output = u64> + Send {
        std::future::ready(self.call(instance, func, |_, v: f64| v.to_bits()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::runtime::{Runtime, Strategy};
    use std::time::Duration;

    /// A snapshot's `configure` runs in the compiling engine, not the running one: its deadline
    /// still ends one that never returns, and the build fails saying so (and is not tried again).
    #[test]
    fn a_snapshot_whose_configure_never_returns_is_stopped_at_its_deadline() {
        let cache = tempfile::tempdir().unwrap();
        let runtime =
            Runtime::with_strategy(Some(cache.path().to_path_buf()), Strategy::Pooled).unwrap();
        let bytes = std::fs::read(
            std::path::Path::new(env!("SRE_OPERATOR_WASM_DIR")).join("hostile_tool.wasm"),
        )
        .unwrap();
        let job = Job {
            configure: Configure {
                plugin: "hostile".into(),
                world: World::Tool,
                settings: "{\"spin_in_configure\": true}".into(),
                limits: Limits {
                    timeout: Duration::from_millis(300),
                    ..Limits::default()
                },
            },
            key: key(&sha256_hex(&bytes), "{\"spin_in_configure\": true}"),
            bytes,
            slot: Weak::new(),
        };
        let builder = runtime.snapshot_builder();
        let (done, outcome) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(builder.build(&job));
        });
        let built = outcome
            .recv_timeout(Duration::from_secs(60))
            .expect("configure was not stopped within a minute");
        let reason = match built {
            Some(Err(reason)) => reason,
            Some(Ok(_)) => panic!("a configure that never returns made a snapshot"),
            None => panic!("no attempt was made"),
        };
        assert!(reason.contains("configuring it failed"), "{reason}");
        // The marker beside the would-be snapshot keeps the reason: not tried again.
        let markers: Vec<_> = std::fs::read_dir(cache.path())
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "attempt"))
            .collect();
        assert_eq!(markers.len(), 1, "{markers:?}");
    }
}

//! The sandbox one call runs in: a fresh [`Store`] per call holding WASI with nothing granted,
//! captured stdout and stderr, a memory cap, an epoch deadline, and (for tools) cluster access.
//! The [`Ticker`] advances the engine's epoch that every deadline counts in.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::access::ClusterAccess;
use super::bindings;
use super::manifest::Limits;

/// How often the engine's epoch advances: the granularity of every deadline.
pub(super) const TICK: Duration = Duration::from_millis(10);
/// Guest stdout and stderr kept per call; more is an error, like any other flood.
pub(super) const STDIO_CAP: usize = 16 << 10;

/// Caps a guest's linear memory and tables; remembers when it said no, so the trap that
/// follows can be reported as the memory limit rather than as a crash.
pub(super) struct MemoryLimiter {
    limit: usize,
    pub(super) hit: bool,
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
    pub(super) limiter: MemoryLimiter,
    pub(super) access: Option<ClusterAccess>,
    pub(super) stdout: MemoryOutputPipe,
    pub(super) stderr: MemoryOutputPipe,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::types::Host for CallState {}

/// A fresh store for one call: nothing survives between calls.
pub(super) fn new_store(
    engine: &Engine,
    limits: &Limits,
    access: Option<ClusterAccess>,
) -> Store<CallState> {
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
            limit: limits.memory_bytes,
            hit: false,
        },
        access,
        stdout,
        stderr,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    let ticks = limits.timeout.as_micros().div_ceil(TICK.as_micros()) as u64 + 1;
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();
    store
}

/// Increments the engine's epoch until dropped.
pub(super) struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    pub(super) fn start(engine: Engine) -> Ticker {
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

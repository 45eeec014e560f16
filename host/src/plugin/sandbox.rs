//! The sandbox one call runs in: a fresh [`Store`] per call holding WASI with nothing granted,
//! captured stdout and stderr, a memory cap, an epoch deadline, and (for tools) cluster access and
//! the egress its manifest entry grants.
//! The [`Ticker`] advances the engine's epoch that every deadline counts in; [`Slots`] bounds
//! the calls that run at once to what the engine's instance pool holds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::access::ClusterAccess;
use super::bindings;
use super::egress::{Egress, EgressCall};
use super::manifest::Limits;

/// How often the engine's epoch advances: the granularity of every deadline.
pub(super) const TICK: Duration = Duration::from_millis(10);
/// Guest stdout and stderr kept per call; more is an error, like any other flood.
pub(super) const STDIO_CAP: usize = 16 << 10;

/// Core instances, linear memories and tables one call may create. A component is several core
/// modules: measured here, the Rust built-ins need at most 10 instances, the Python
/// (componentize-py) and JavaScript (jco) examples 11 to 15; every one of them one memory and at
/// most two tables. These leave about three times that and stop a component built to multiply
/// them.
pub(super) const MAX_INSTANCES: usize = 50;
pub(super) const MAX_MEMORIES: usize = 4;
pub(super) const MAX_TABLES: usize = 16;
/// Elements in one table.
pub(super) const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// Calls that run at once. Calls are short (a blocked cluster read or request is bounded by the
/// same deadline) and the host has few cores: 32 is far above the operator's default of 4
/// investigations at once.
pub(super) const CONCURRENT_CALLS: usize = 32;
/// Linear memories and tables the engine's instance pool holds for all calls together. Every
/// plugin measured has one memory and at most two tables, so the pool holds one memory and two
/// tables per call at [`CONCURRENT_CALLS`]; a component with more takes more of them (and fewer
/// calls run at once). Each memory slot reserves address space for the largest memory a plugin
/// may be granted, so this, not the per-call maxima above, sizes the reservation.
pub(super) const POOL_MEMORIES: usize = CONCURRENT_CALLS;
pub(super) const POOL_TABLES: usize = 2 * CONCURRENT_CALLS;

/// What one call of a plugin takes from the instance pool besides its component instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Footprint {
    pub(super) memories: usize,
    pub(super) tables: usize,
}

impl Footprint {
    /// What instantiating `component` needs; the per-call maxima when wasmtime cannot tell (a
    /// component that imports core modules), so that a permit always covers the instance.
    pub(super) fn of(component: &wasmtime::component::Component) -> Footprint {
        match component.resources_required() {
            Some(r) => Footprint {
                memories: (r.num_memories as usize).min(MAX_MEMORIES),
                tables: (r.num_tables as usize).min(MAX_TABLES),
            },
            None => Footprint {
                memories: MAX_MEMORIES,
                tables: MAX_TABLES,
            },
        }
    }
}

/// Permits to run a call: a call holding one finds room in the instance pool (a component
/// instance, its memories and its tables), so instantiating never fails for want of a slot;
/// more calls wait for a permit, within their own deadline.
pub(super) struct Slots {
    free: Mutex<Free>,
    freed: Condvar,
}

struct Free {
    calls: usize,
    memories: usize,
    tables: usize,
}

/// A permit; returned when dropped.
pub(super) struct Slot<'a> {
    slots: &'a Slots,
    need: Footprint,
}

impl Slots {
    /// Permits for the pool [`engine_config`](super::runtime::engine_config) makes.
    pub(super) fn for_pool() -> Slots {
        Slots::new(CONCURRENT_CALLS, POOL_MEMORIES, POOL_TABLES)
    }

    fn new(calls: usize, memories: usize, tables: usize) -> Slots {
        Slots {
            free: Mutex::new(Free {
                calls,
                memories,
                tables,
            }),
            freed: Condvar::new(),
        }
    }

    /// A permit for a call that needs `need`, waiting for one until `deadline`; None when the
    /// deadline passed first.
    pub(super) fn acquire(&self, need: Footprint, deadline: Instant) -> Option<Slot<'_>> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while free.calls == 0 || free.memories < need.memories || free.tables < need.tables {
            let left = deadline.checked_duration_since(Instant::now())?;
            free = self
                .freed
                .wait_timeout(free, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        free.calls -= 1;
        free.memories -= need.memories;
        free.tables -= need.tables;
        Some(Slot { slots: self, need })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut free = self.slots.free.lock().unwrap_or_else(|e| e.into_inner());
        free.calls += 1;
        free.memories += self.need.memories;
        free.tables += self.need.tables;
        // Waiters need different amounts: each checks whether it now fits.
        self.slots.freed.notify_all();
    }
}

/// Caps all of a call's linear memories together (a component with several memories gets one
/// budget, not one each) and its tables; remembers when it said no, so the trap that follows
/// can be reported as the memory limit rather than as a crash.
pub(super) struct MemoryLimiter {
    limit: usize,
    /// Bytes of every memory the call has created, as they are now.
    total: usize,
    pub(super) hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A new memory arrives here with `current` 0: its initial size counts too.
        let total = self.total - current.min(self.total) + desired;
        if total > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.total = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

/// Everything one call's store holds.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    pub(super) access: Option<ClusterAccess>,
    http: wasmtime_wasi_http::WasiHttpCtx,
    pub(super) egress: EgressCall,
    pub(super) stdout: MemoryOutputPipe,
    pub(super) stderr: MemoryOutputPipe,
}

impl CallState {
    /// Whether the guest still holds any host resource (a stream, a request, a response).
    pub(super) fn holds_resources(&self) -> bool {
        !self.table.is_empty()
    }
}

impl CallState {
    /// What the deadline cut while the call waited in the host (a cluster read or an HTTP
    /// request), if anything: the call then ends as past its deadline.
    pub(super) fn cut_off(&self) -> Option<String> {
        self.access
            .as_ref()
            .and_then(|a| a.timed_out())
            .or_else(|| {
                self.egress
                    .usage
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .cut
                    .clone()
            })
    }
}

impl wasmtime_wasi_http::WasiHttpView for CallState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.egress,
        }
    }
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

/// A fresh store for one call that must end by `deadline`: nothing survives between calls.
pub(super) fn new_store(
    engine: &Engine,
    plugin: &str,
    limits: &Limits,
    deadline: Instant,
    access: Option<ClusterAccess>,
    egress: Option<Arc<Egress>>,
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
    // A host call (a cluster read, a request) counts against the same deadline as the guest's
    // own code.
    let access = access.map(|mut a| {
        a.deadline = Some(deadline);
        a.cut = Default::default();
        a
    });
    let state = CallState {
        wasi,
        table: ResourceTable::new(),
        limiter: MemoryLimiter {
            limit: limits.memory_bytes,
            total: 0,
            hit: false,
        },
        access,
        http: wasmtime_wasi_http::WasiHttpCtx::new(),
        egress: EgressCall {
            plugin: plugin.to_string(),
            egress,
            deadline,
            max_requests: limits.requests,
            max_response_bytes: limits.response_bytes,
            usage: Default::default(),
        },
        stdout,
        stderr,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    let left = deadline.saturating_duration_since(Instant::now());
    let ticks = left.as_micros().div_ceil(TICK.as_micros()) as u64 + 1;
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

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::component::{Component, Linker};

    /// An engine configured as the runtime's (pooled), and a store with `limits`.
    fn sandbox(memory: usize) -> (Engine, Store<CallState>) {
        let config =
            crate::plugin::runtime::engine_config(crate::plugin::runtime::Strategy::Pooled);
        let engine = Engine::new(&config).unwrap();
        let limits = Limits {
            memory_bytes: memory,
            ..Limits::default()
        };
        let deadline = Instant::now() + limits.timeout;
        let store = new_store(&engine, "test", &limits, deadline, None, None);
        (engine, store)
    }

    /// Instantiates a component that makes `count` instances of `module` (core WAT).
    fn instantiate(memory: usize, module: &str, count: usize) -> (wasmtime::Result<()>, bool) {
        let (engine, mut store) = sandbox(memory);
        let text = format!(
            "(component (core module $m {module}) {})",
            "(core instance (instantiate $m))".repeat(count)
        );
        // The pool refuses a component over its per-component maxima when it compiles; the
        // limiter stops the rest when they instantiate.
        let result = Component::new(&engine, text).and_then(|component| {
            Linker::new(&engine)
                .instantiate(&mut store, &component)
                .map(|_| ())
        });
        (result, store.data().limiter.hit)
    }

    #[test]
    fn memory_is_capped_across_all_of_a_components_memories() {
        const PAGE: usize = 64 << 10;
        // Two memories of 40 MiB each: either fits a 64 MiB cap, both do not.
        let forty = format!("(memory {})", (40 << 20) / PAGE);
        assert!(instantiate(64 << 20, &forty, 1).0.is_ok());
        let (result, hit) = instantiate(64 << 20, &forty, 2);
        assert!(
            result.is_err() && hit,
            "two memories of 40 MiB under a 64 MiB cap: {result:?}"
        );
        // Growing counts the same way: 20 MiB + 20 MiB then a grow of one to 40 MiB.
        let twenty = format!("(memory {})", (20 << 20) / PAGE);
        assert!(instantiate(64 << 20, &twenty, 2).0.is_ok());
        let mut limiter = MemoryLimiter {
            limit: 64 << 20,
            total: 0,
            hit: false,
        };
        assert!(limiter.memory_growing(0, 20 << 20, None).unwrap());
        assert!(limiter.memory_growing(0, 20 << 20, None).unwrap());
        assert!(!limiter.memory_growing(20 << 20, 48 << 20, None).unwrap());
        assert!(limiter.hit);
        assert!(limiter.memory_growing(20 << 20, 40 << 20, None).unwrap());
    }

    #[test]
    fn a_component_cannot_multiply_its_instances_memories_or_tables() {
        let refused = |result: wasmtime::Result<()>, what: &str| {
            let err = format!("{:#}", result.unwrap_err());
            assert!(
                err.contains(&format!("{what} count too high"))
                    || err.contains("exceeds the configured maximum"),
                "{err}"
            );
        };
        refused(instantiate(64 << 20, "", MAX_INSTANCES + 1).0, "instance");
        assert!(instantiate(64 << 20, "", MAX_INSTANCES - 1).0.is_ok());
        refused(
            instantiate(64 << 20, "(memory 1)", MAX_MEMORIES + 1).0,
            "memory",
        );
        refused(
            instantiate(64 << 20, "(table 1 funcref)", MAX_TABLES + 1).0,
            "table",
        );
    }

    #[test]
    fn a_call_waits_for_a_free_slot_within_its_deadline() {
        let one = Footprint {
            memories: 1,
            tables: 2,
        };
        let slots = Slots::new(1, 1, 2);
        let held = slots.acquire(one, Instant::now()).unwrap();
        let start = Instant::now();
        assert!(
            slots
                .acquire(one, Instant::now() + Duration::from_millis(30))
                .is_none()
        );
        assert!(start.elapsed() >= Duration::from_millis(30));
        drop(held);
        assert!(slots.acquire(one, Instant::now()).is_some());
    }

    #[test]
    fn a_call_waits_until_the_pool_has_room_for_all_its_memories_and_tables() {
        let slots = Slots::new(4, 3, 8);
        let deadline = || Instant::now() + Duration::from_millis(5);
        let small = Footprint {
            memories: 1,
            tables: 1,
        };
        let big = Footprint {
            memories: 3,
            tables: 1,
        };
        let first = slots.acquire(small, deadline()).unwrap();
        // Two memories left: a call needing three waits though call permits remain.
        assert!(slots.acquire(big, deadline()).is_none());
        let second = slots.acquire(small, deadline()).unwrap();
        drop((first, second));
        let held = slots.acquire(big, deadline()).unwrap();
        // Released by another thread while this one waits: the waiter gets it in time.
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                drop(held);
            });
            assert!(
                slots
                    .acquire(big, Instant::now() + Duration::from_secs(5))
                    .is_some()
            );
        });
    }

    #[test]
    fn a_component_needs_what_its_core_instances_define() {
        let engine = Engine::new(&crate::plugin::runtime::engine_config(
            crate::plugin::runtime::Strategy::Pooled,
        ))
        .unwrap();
        let component = Component::new(
            &engine,
            "(component (core module $m (memory 1) (table 1 funcref)) \
             (core instance (instantiate $m)) (core instance (instantiate $m)))",
        )
        .unwrap();
        assert_eq!(
            Footprint::of(&component),
            Footprint {
                memories: 2,
                tables: 2
            }
        );
    }
}

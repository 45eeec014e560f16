//! Plugin runtime costs: per-call overhead (a fresh store and instance per call, as in
//! production), `inspect_object` on the bundled dump, and loading a component from the compiled
//! cache against compiling it. Then the same for plugins written in Python (log-signatures) and
//! JavaScript (business-hours) beside the Rust ones, with their sizes; those are built by
//! `plugins/build-polyglot.sh` (run here when they are missing or stale).
//!
//! Every figure is taken four times in the same run: "before" is the runtime as it was before
//! issue 21 (an mmap of 4 GiB + guard per memory per instance, compiled artifacts read into
//! memory, `configure` on every call: `Strategy::Before`), "pooled" is a pooling allocator with
//! copy-on-write images reset in place, memory slots as large as a plugin may be granted and
//! artifacts mapped from sealed copies (`Strategy::Pooled`), still running `configure` on every
//! call, "after" is production: the same pool with each plugin configured once and its calls
//! made from that snapshot (`Runtime::snapshot_in_background`), and "4 GiB slots" is production
//! with wasmtime's default 4 GiB slots that let it drop bounds checks, for what the smaller
//! reservation costs. The last table puts them side by side with the ratios.
//! `cargo bench -p sre-operator --bench plugins`.
//!
//! A plain harness rather than criterion: criterion would be a dev-dependency that every
//! `cargo test` compiles, for figures a median and a p99 describe well enough.

mod common;
use common::{machine, measure};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sre_operator::cluster::DumpCluster;
use sre_operator::plugin::{
    ClusterAccess, DecideContext, LoadedPlugin, PluginSet, PluginSource, Runtime, Strategy,
    parse_manifest, sha256_hex,
};

/// The runtimes measured side by side: before, pooled, after (pooled and configured once), and
/// after with 4 GiB slots; whether plugins are configured once.
const SIDES: [(&str, Strategy, bool); 4] = [
    ("before", Strategy::Before, false),
    ("pooled", Strategy::Pooled, false),
    ("after", Strategy::Pooled, true),
    ("4 GiB slots", Strategy::PooledFourGiBSlots, true),
];
/// Which side is production.
const AFTER: usize = 2;

/// A runtime for side `i`, caching in `dir`.
fn side_runtime(i: usize, dir: &Path) -> Arc<Runtime> {
    let (_, strategy, configured) = SIDES[i];
    let runtime = Runtime::with_strategy(Some(dir.to_path_buf()), strategy).unwrap();
    if configured {
        runtime.snapshot_in_background();
    }
    runtime
}

/// Waits until `plugin` is configured once, on the sides where plugins are.
fn settle(i: usize, plugin: &LoadedPlugin) {
    let start = std::time::Instant::now();
    while SIDES[i].2 && !plugin.configured_once() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "{} ({}) not configured once in 5 minutes",
            plugin.name,
            SIDES[i].0
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    if SIDES[i].2 && start.elapsed() > Duration::from_secs(1) {
        println!(
            "{:<62} {:>10.1?}",
            format!(
                "{}: configured once in the background ({})",
                plugin.name, SIDES[i].0
            ),
            start.elapsed()
        );
    }
}

/// One line of the final comparison: what, each side's median, and the target if issue 21 set
/// one.
struct Row {
    what: String,
    medians: [Duration; 4],
    target: Option<Duration>,
}

/// Measures `f` once per side (`f` gets the side's index), labelled `what (side)`.
fn sides<T>(
    rows: &mut Vec<Row>,
    what: &str,
    target: Option<Duration>,
    iterations: usize,
    mut f: impl FnMut(usize) -> T,
) {
    let mut medians = [Duration::ZERO; 4];
    for (i, (side, _, _)) in SIDES.iter().enumerate() {
        medians[i] = measure(&format!("{what} ({side})"), iterations, || f(i));
    }
    rows.push(Row {
        what: what.to_string(),
        medians,
        target,
    });
}

/// The process's virtual size, from /proc/self/status.
fn virtual_size() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmSize:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib << 10)
        .unwrap_or(0)
}

fn wasm(file: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("SRE_OPERATOR_WASM_DIR")).join(file)).unwrap()
}

/// The hostile test component, whose well-behaved `echo` is the trivial call measured here.
/// Release builds (and so `cargo bench`) leave it out of `SRE_OPERATOR_WASM_DIR`; it is built here
/// as `build.rs` builds it for tests, into the same target directory.
fn hostile_tool() -> Vec<u8> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let target_dir = Path::new(env!("SRE_OPERATOR_WASM_TARGET_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(&cargo)
        .current_dir(workspace)
        .args(["build", "--target", "wasm32-wasip2", "--profile", "plugin"])
        .args(["-p", "hostile-tool", "--target-dir"])
        .arg(target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running cargo to build the hostile test component");
    assert!(
        status.success(),
        "building the hostile test component failed"
    );
    std::fs::read(target_dir.join("wasm32-wasip2/plugin/hostile_tool.wasm")).unwrap()
}

/// The Python and JavaScript components, built (or found up to date) by the build script.
fn polyglot_dir() -> std::path::PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("polyglot-plugins");
    let status = std::process::Command::new("bash")
        .arg(workspace.join("plugins/build-polyglot.sh"))
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running plugins/build-polyglot.sh");
    assert!(status.success(), "plugins/build-polyglot.sh failed");
    out
}

fn load(runtime: &Runtime, yaml: &str, bytes: &[u8]) -> LoadedPlugin {
    let manifest = parse_manifest(&format!("plugins:\n  - {yaml}\n")).unwrap();
    runtime
        .load(PluginSource {
            entry: &manifest.plugins[0],
            bytes,
        })
        .unwrap()
}

fn ms(d: Duration) -> String {
    if d >= Duration::from_millis(100) {
        format!("{:.2} s", d.as_secs_f64())
    } else if d >= Duration::from_millis(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else if d >= Duration::from_micros(10) {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    }
}

/// Cold load, cached load and per-call overhead of one plugin per language and world, before
/// and after.
fn languages(rows: &mut Vec<Row>) {
    println!("\n== plugins by language (release host; a fresh store and instance per call) ==");
    let access = ClusterAccess::new(
        Arc::new(
            DumpCluster::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dump"))
                .unwrap(),
        ),
        "default",
    );
    let dir = polyglot_dir();
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let policy_settings = json!({"tiers": {"dev": {"namespaces": ["default"], "window": {"days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "from": "08:00", "to": "18:00"}}}});
    // Python's and JavaScript's components are too large for a ConfigMap: they ship by `url`,
    // whose `sha256` is required, so their entries pin it here too.
    let (python, javascript) = (read("log_signatures.wasm"), read("business_hours.wasm"));
    let (python_sha, javascript_sha) = (sha256_hex(&python), sha256_hex(&javascript));
    // (label, language, bytes, manifest entry)
    let plugins: Vec<(&str, &str, Vec<u8>, String)> = vec![
        (
            "k8s-reader",
            "Rust",
            wasm("k8s_reader.wasm"),
            "{name: k8s-reader, world: tool, file: f}".into(),
        ),
        (
            "log-signatures",
            "Python",
            python,
            format!("{{name: log-signatures, world: tool, file: f, sha256: {python_sha}}}"),
        ),
        (
            "policy-filter",
            "Rust",
            wasm("policy_filter.wasm"),
            "{name: policy-filter, world: policy-filter, file: f}".into(),
        ),
        (
            "business-hours",
            "JavaScript",
            javascript,
            format!(
                "{{name: business-hours, world: policy-filter, file: f, sha256: {javascript_sha}, \
                 settings: {policy_settings}}}"
            ),
        ),
    ];
    let pod = json!({"metadata": {"name": "critical-app-7d4b9c6f5-h8x2m", "namespace": "default"},
        "status": {"containerStatuses": [{"name": "app", "restartCount": 6}]}})
    .to_string();
    let failure = json!({"class": "CrashLoopBackOff", "container": "app"}).to_string();
    let context = DecideContext {
        policy: "default".into(),
        namespace: None,
        now: "2026-11-25T10:00:00Z".into(),
    };
    let mut sizes = Vec::new();
    for (name, language, bytes, yaml) in &plugins {
        let digest = sha256_hex(bytes);
        let big = bytes.len() > 1 << 20;
        // Python and JavaScript: 0.3 ms a call, 20 ms a cached load (issue 21).
        let call_target = big.then(|| Duration::from_micros(300));
        let load_target = big.then(|| Duration::from_millis(20));
        // Compiling is the same work on every side: measured once, on the production engine.
        let uncached = Runtime::new(None).unwrap();
        let compile = measure(
            &format!("{name} ({language}): compile, no cache"),
            if big { 3 } else { 10 },
            || {
                uncached.compile(bytes, &digest).unwrap();
            },
        );
        drop(uncached);
        let cache_dirs: Vec<_> = SIDES.iter().map(|_| tempfile::tempdir().unwrap()).collect();
        let cached: Vec<_> = cache_dirs
            .iter()
            .enumerate()
            .map(|(i, dir)| {
                let runtime = side_runtime(i, dir.path());
                runtime.compile(bytes, &digest).unwrap();
                // Configured once: its snapshot is in the cache for the loads measured below.
                settle(i, &load(&runtime, yaml, bytes));
                runtime
            })
            .collect();
        // The pooled side's cache holds the compiled component alone (no snapshots).
        let artifact = std::fs::read_dir(cache_dirs[1].path())
            .unwrap()
            .flatten()
            .map(|e| e.metadata().unwrap().len())
            .sum::<u64>();
        sizes.push((name, language, bytes.len(), artifact, compile));
        sides(
            rows,
            &format!("{name} ({language}): compiled artifact from the cache"),
            None,
            20,
            |i| cached[i].compile(bytes, &digest).unwrap(),
        );
        // The plugin a load returns is dropped after the clock stops (measure); the row after
        // it times the load and the drop together, as this bench did before 2026-12-06.
        sides(
            rows,
            &format!("{name} ({language}): load from cache (+ link + configure)"),
            load_target,
            20,
            |i| load(&cached[i], yaml, bytes),
        );
        sides(
            rows,
            &format!("{name} ({language}): load from cache, then unload"),
            None,
            20,
            |i| {
                load(&cached[i], yaml, bytes);
            },
        );
        let loaded: Vec<_> = cached
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let plugin = Arc::new(load(r, yaml, bytes));
                settle(i, &plugin);
                plugin
            })
            .collect();
        // The part of every call before the export (configured once: the instance alone).
        sides(
            rows,
            &format!("{name} ({language}): fresh instance (+ configure) only"),
            None,
            300,
            |i| {
                loaded[i].check_settings().unwrap();
            },
        );
        if loaded[0].world == sre_operator::plugin::World::Tool {
            sides(
                rows,
                &format!("{name} ({language}): call describe"),
                call_target,
                300,
                |i| {
                    loaded[i].describe().unwrap();
                },
            );
        } else {
            sides(
                rows,
                &format!("{name} ({language}): call decide"),
                call_target,
                300,
                |i| {
                    loaded[i].decide(&pod, &failure, &context).unwrap();
                },
            );
        }
        let work = match *name {
            "k8s-reader" => Some((
                "fetch_logs critical-app",
                json!({"pod": "critical-app-7d4b9c6f5-h8x2m", "previous": true}).to_string(),
                "fetch_logs",
            )),
            "log-signatures" => Some((
                "match_log_signatures critical-app",
                json!({"pod": "critical-app-7d4b9c6f5-h8x2m"}).to_string(),
                "match_log_signatures",
            )),
            _ => None,
        };
        if let Some((label, args, tool)) = work {
            sides(
                rows,
                &format!("{name} ({language}): {label}"),
                call_target,
                300,
                |i| {
                    loaded[i].invoke_tool(tool, &args, access.clone()).unwrap();
                },
            );
        }
    }
    println!();
    println!("| plugin | language | component | compiled | compile (cold) |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, language, size, artifact, compile) in sizes {
        println!(
            "| {name} | {language} | {:.2} MB | {:.1} MB | {} |",
            size as f64 / 1e6,
            artifact as f64 / 1e6,
            ms(compile),
        );
    }
}

/// `threads` callers making `calls` trivial calls each at once; the wall time.
fn concurrent(set: &PluginSet, access: &ClusterAccess, threads: usize, calls: usize) -> Duration {
    let echo = set.tool("echo").unwrap().plugin.clone();
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let echo = echo.clone();
            let access = access.clone();
            s.spawn(move || {
                for _ in 0..calls {
                    echo.invoke_tool("echo", "{}", access.clone()).unwrap();
                }
            });
        }
    });
    start.elapsed()
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = tokio.enter();
    println!("machine: {}", machine());
    let mut rows = Vec::new();

    for (side, strategy, _) in SIDES {
        let before = virtual_size();
        let runtime = Runtime::with_strategy(None, strategy).unwrap();
        let reserved = virtual_size().saturating_sub(before);
        drop(runtime);
        println!(
            "virtual address space one runtime reserves ({side}): {:.1} GiB",
            reserved as f64 / (1u64 << 30) as f64
        );
    }

    let reader = wasm("k8s_reader.wasm");
    let digest = sha256_hex(&reader);
    let uncached = Runtime::new(None).unwrap();
    let compile = measure("compile k8s-reader (no cache)", 10, || {
        uncached.compile(&reader, &digest).unwrap();
    });
    drop(uncached);

    let dump = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dump");
    let access = ClusterAccess::new(Arc::new(DumpCluster::load(dump).unwrap()), "production");
    let plugin_dir = tempfile::tempdir().unwrap();
    std::fs::write(plugin_dir.path().join("h.wasm"), hostile_tool()).unwrap();
    std::fs::write(plugin_dir.path().join("r.wasm"), &reader).unwrap();
    std::fs::write(
        plugin_dir.path().join("plugins.yaml"),
        "plugins:\n  - {name: hostile, world: tool, file: h.wasm}\n  - {name: k8s-reader, world: tool, file: r.wasm}\n",
    )
    .unwrap();
    let cache_dirs: Vec<_> = SIDES.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let runtimes: Vec<_> = cache_dirs
        .iter()
        .enumerate()
        .map(|(i, dir)| side_runtime(i, dir.path()))
        .collect();
    for runtime in &runtimes {
        runtime.compile(&reader, &digest).unwrap();
    }
    sides(
        &mut rows,
        "load k8s-reader from the compiled cache",
        None,
        50,
        |i| {
            runtimes[i].compile(&reader, &digest).unwrap();
        },
    );
    println!(
        "{:<58} {:.0}x faster than compiling",
        "cached load (after)",
        compile.as_secs_f64() / rows.last().unwrap().medians[AFTER].as_secs_f64()
    );
    let sets: Vec<_> = runtimes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let set = PluginSet::from_dir(r, plugin_dir.path()).unwrap();
            for tool in ["echo", "inspect_object"] {
                settle(i, &set.tool(tool).unwrap().plugin);
            }
            set
        })
        .collect();
    let echo: Vec<_> = sets
        .iter()
        .map(|s| s.tool("echo").unwrap().plugin.clone())
        .collect();
    sides(
        &mut rows,
        "trivial call: fresh store + instance + configure + invoke",
        Some(Duration::from_micros(10)),
        2000,
        |i| {
            echo[i].invoke_tool("echo", "{}", access.clone()).unwrap();
        },
    );
    sides(
        &mut rows,
        "trivial call through PluginSet::invoke (schema, blocking pool)",
        None,
        2000,
        |i| {
            tokio::runtime::Handle::current()
                .block_on(sets[i].invoke("echo", &json!({}), access.clone()))
                .unwrap();
        },
    );
    // More callers than the pool has slots: the extra ones wait their turn, none fails.
    let mut walls = [Duration::ZERO; 4];
    for (i, (side, _, _)) in SIDES.iter().enumerate() {
        walls[i] = concurrent(&sets[i], &access, 64, 200);
        println!(
            "{:<62} {:>10.1?} wall, {:.1} µs a call",
            format!("64 threads x 200 trivial calls ({side})"),
            walls[i],
            walls[i].as_secs_f64() * 1e6 / (64.0 * 200.0)
        );
    }
    rows.push(Row {
        what: "64 threads x 200 trivial calls, per call (wall / 12800)".into(),
        medians: walls.map(|w| w / 12800),
        target: None,
    });
    let readers: Vec<_> = sets
        .iter()
        .map(|s| s.tool("inspect_object").unwrap().plugin.clone())
        .collect();
    let args = json!({"kind": "Deployment", "name": "payment"}).to_string();
    sides(
        &mut rows,
        "inspect_object Deployment production/payment (bundled dump)",
        None,
        500,
        |i| {
            readers[i]
                .invoke_tool("inspect_object", &args, access.clone())
                .unwrap();
        },
    );
    let args = json!({"nodeName": "node-b"}).to_string();
    sides(
        &mut rows,
        "get_resource_usage node-b (39 Pods in the dump)",
        None,
        500,
        |i| {
            readers[i]
                .invoke_tool("get_resource_usage", &args, access.clone())
                .unwrap();
        },
    );
    drop((echo, readers, sets, runtimes));

    languages(&mut rows);

    println!(
        "\n== before (on-demand, configure per call) vs pooled (configure per call) vs after (pooled, configured once), and after with 4 GiB slots =="
    );
    println!(
        "| measure | before | pooled | after | before / after | pooled / after | 4 GiB slots | after / 4 GiB slots | target | met |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in rows {
        let [before, pooled, after, wide] = row.medians;
        let (target, met) = match row.target {
            Some(t) => (
                format!("≤ {}", ms(t)),
                if after <= t { "yes" } else { "no" }.to_string(),
            ),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {} | {} | {} | {} | {:.1}x | {:.2}x | {} | {:.2}x | {target} | {met} |",
            row.what,
            ms(before),
            ms(pooled),
            ms(after),
            before.as_secs_f64() / after.as_secs_f64(),
            pooled.as_secs_f64() / after.as_secs_f64(),
            ms(wide),
            after.as_secs_f64() / wide.as_secs_f64()
        );
    }
}

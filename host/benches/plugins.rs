//! Plugin runtime costs: per-call overhead (a fresh store and instance per call, as in
//! production), `inspect_object` on the bundled dump, and loading a component from the compiled
//! cache against compiling it. Then the same for plugins written in Python (log-signatures) and
//! JavaScript (business-hours) beside the Rust ones, with their sizes; those are built by
//! `plugins/build-polyglot.sh` (run here when they are missing or stale).
//! `cargo bench -p sre-operator --bench plugins`.
//!
//! A plain harness rather than criterion: criterion would be a dev-dependency that every
//! `cargo test` compiles, for figures a median and a p99 describe well enough.

mod common;
use common::measure;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sre_operator::cluster::DumpCluster;
use sre_operator::plugin::{
    ClusterAccess, DecideContext, LoadedPlugin, PluginSet, PluginSource, Runtime, parse_manifest,
    sha256_hex,
};

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
    } else {
        format!("{:.0} µs", d.as_secs_f64() * 1e6)
    }
}

/// Cold load, cached load and per-call overhead of one plugin per language and world.
fn languages(access: &ClusterAccess) {
    println!("\n== plugins by language (release host; a fresh store and instance per call) ==");
    let dir = polyglot_dir();
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let policy_settings = json!({"tiers": {"dev": {"namespaces": ["default"], "window": {"days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "from": "08:00", "to": "18:00"}}}});
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
            read("log_signatures.wasm"),
            "{name: log-signatures, world: tool, file: f}".into(),
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
            read("business_hours.wasm"),
            format!(
                "{{name: business-hours, world: policy-filter, file: f, settings: {policy_settings}}}"
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
    let mut rows = Vec::new();
    for (name, language, bytes, yaml) in &plugins {
        let digest = sha256_hex(bytes);
        let big = bytes.len() > 1 << 20;
        let uncached = Runtime::new(None).unwrap();
        let compile = measure(
            &format!("{name} ({language}): compile, no cache"),
            if big { 3 } else { 10 },
            || {
                uncached.compile(bytes, &digest).unwrap();
            },
        );
        let cache_dir = tempfile::tempdir().unwrap();
        let cached = Runtime::new(Some(cache_dir.path().to_path_buf())).unwrap();
        cached.compile(bytes, &digest).unwrap();
        let artifact = std::fs::read_dir(cache_dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.metadata().unwrap().len())
            .sum::<u64>();
        let from_cache = measure(
            &format!("{name} ({language}): compiled artifact from the cache"),
            20,
            || {
                cached.compile(bytes, &digest).unwrap();
            },
        );
        let full_load = measure(
            &format!("{name} ({language}): load from cache (+ link + configure)"),
            20,
            || {
                load(&cached, yaml, bytes);
            },
        );
        let plugin = Arc::new(load(&cached, yaml, bytes));
        let (call_label, call) = if plugin.world == sre_operator::plugin::World::Tool {
            (
                "describe",
                measure(&format!("{name} ({language}): call describe"), 300, || {
                    plugin.describe().unwrap();
                }),
            )
        } else {
            (
                "decide",
                measure(&format!("{name} ({language}): call decide"), 300, || {
                    plugin.decide(&pod, &failure, &context).unwrap();
                }),
            )
        };
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
        let work = work.map(|(label, args, tool)| {
            (
                label,
                measure(&format!("{name} ({language}): {label}"), 300, || {
                    plugin.invoke_tool(tool, &args, access.clone()).unwrap();
                }),
            )
        });
        rows.push((
            name.to_string(),
            language.to_string(),
            bytes.len(),
            artifact,
            compile,
            from_cache,
            full_load,
            call_label,
            call,
            work,
        ));
    }
    println!();
    println!(
        "| plugin | language | component | compiled | compile (cold) | artifact from cache | load from cache + configure | per call ({{describe, decide}}) | real call |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, language, size, artifact, compile, from_cache, full, call_label, call, work) in rows
    {
        let work = work
            .map(|(l, d)| format!("{l}: {}", ms(d)))
            .unwrap_or_else(|| "-".into());
        println!(
            "| {name} | {language} | {:.2} MB | {:.1} MB | {} | {} | {} | {call_label}: {} | {work} |",
            size as f64 / 1e6,
            artifact as f64 / 1e6,
            ms(compile),
            ms(from_cache),
            ms(full),
            ms(call)
        );
    }
}

fn main() {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = tokio.enter();
    println!(
        "machine: {} cores; {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        std::env::consts::ARCH
    );

    let reader = wasm("k8s_reader.wasm");
    let digest = sha256_hex(&reader);
    let uncached = Runtime::new(None).unwrap();
    let compile = measure("compile k8s-reader (no cache)", 10, || {
        uncached.compile(&reader, &digest).unwrap();
    });
    let cache_dir = tempfile::tempdir().unwrap();
    let cached = Runtime::new(Some(cache_dir.path().to_path_buf())).unwrap();
    cached.compile(&reader, &digest).unwrap();
    let load = measure("load k8s-reader from the compiled cache", 50, || {
        cached.compile(&reader, &digest).unwrap();
    });
    println!(
        "{:<58} {:.0}x faster than compiling",
        "cached load",
        compile.as_secs_f64() / load.as_secs_f64()
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("h.wasm"), hostile_tool()).unwrap();
    std::fs::write(dir.path().join("r.wasm"), &reader).unwrap();
    std::fs::write(
        dir.path().join("plugins.yaml"),
        "plugins:\n  - {name: hostile, world: tool, file: h.wasm}\n  - {name: k8s-reader, world: tool, file: r.wasm}\n",
    )
    .unwrap();
    let set = PluginSet::from_dir(&cached, dir.path()).unwrap();
    let dump = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dump");
    let access = ClusterAccess::new(Arc::new(DumpCluster::load(dump).unwrap()), "production");

    let echo = set.tool("echo").unwrap().plugin.clone();
    measure(
        "trivial call: fresh store + instance + configure + invoke",
        2000,
        || {
            echo.invoke_tool("echo", "{}", access.clone()).unwrap();
        },
    );
    measure(
        "trivial call through PluginSet::invoke (schema, blocking pool)",
        2000,
        || {
            tokio::runtime::Handle::current()
                .block_on(set.invoke("echo", &json!({}), access.clone()))
                .unwrap();
        },
    );
    let reader_plugin = set.tool("inspect_object").unwrap().plugin.clone();
    let args = json!({"kind": "Deployment", "name": "payment"}).to_string();
    measure(
        "inspect_object Deployment production/payment (bundled dump)",
        500,
        || {
            reader_plugin
                .invoke_tool("inspect_object", &args, access.clone())
                .unwrap();
        },
    );
    let args = json!({"nodeName": "node-b"}).to_string();
    measure(
        "get_resource_usage node-b (39 Pods in the dump)",
        500,
        || {
            reader_plugin
                .invoke_tool("get_resource_usage", &args, access.clone())
                .unwrap();
        },
    );

    let default = ClusterAccess::new(
        Arc::new(
            DumpCluster::load(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dump"))
                .unwrap(),
        ),
        "default",
    );
    languages(&default);
}

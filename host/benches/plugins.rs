//! Plugin runtime costs: per-call overhead (a fresh store and instance per call, as in
//! production), `inspect_object` on the bundled dump, and loading a component from the compiled
//! cache against compiling it. `cargo bench -p sre-operator --bench plugins`.
//!
//! A plain harness rather than criterion: criterion would be a dev-dependency that every
//! `cargo test` compiles, for figures a median and a p99 describe well enough.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sre_operator::cluster::DumpCluster;
use sre_operator::plugin::{ClusterAccess, PluginSet, Runtime, sha256_hex};

fn measure(label: &str, iterations: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..iterations.div_ceil(10) {
        f(); // warm up
    }
    let mut samples: Vec<Duration> = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    samples.sort();
    let median = samples[samples.len() / 2];
    let p99 = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];
    println!(
        "{label:<58} median {:>10.1?}  p99 {:>10.1?}  (n={iterations})",
        median, p99
    );
    median
}

fn wasm(file: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("SRE_OPERATOR_WASM_DIR")).join(file)).unwrap()
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
    std::fs::write(dir.path().join("h.wasm"), wasm("hostile_tool.wasm")).unwrap();
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
}

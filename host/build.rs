//! Builds the built-in plugins (and, outside release builds, the hostile test component) as
//! wasm32-wasip2 components, so that `cargo run` and `cargo test` need nothing but the Rust
//! toolchain. The operator embeds the built-ins as its defaults; tests find every component through
//! `SRE_OPERATOR_WASM_DIR`. Release builds (`cargo build --release`, `cargo bench`) skip the
//! hostile component: only the tests in `tests/plugins.rs` run it.
//!
//! The components are built by a nested cargo into a target directory of their own: the outer
//! build holds the lock on the usual one, and both dev and release builds share the result.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
/// (package, file cargo writes)
type Package = (&'static str, &'static str);
/// What every build needs: the built-in plugins.
const BUILT_INS: [Package; 4] = [
    ("k8s-reader", "k8s_reader.wasm"),
    ("patch-safety", "patch_safety.wasm"),
    ("policy-filter", "policy_filter.wasm"),
    ("prometheus", "prometheus.wasm"),
];
/// What only the tests need.
const TEST_ONLY: [Package; 2] = [
    ("hostile-tool", "hostile_tool.wasm"),
    ("egress-probe", "egress_probe.wasm"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    for watched in ["plugins", "wit", "tests/components", "Cargo.lock"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("wasm-plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("cargo:rerun-if-env-changed=PROFILE");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let components: Vec<Package> = if release {
        BUILT_INS.to_vec()
    } else {
        BUILT_INS.iter().chain(&TEST_ONLY).copied().collect()
    };

    ensure_target();
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&workspace)
        .args(["build", "--target", TARGET, "--profile", "plugin"])
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _) in &components {
        cmd.args(["-p", package]);
    }
    // Flags meant for the host (coverage, sanitizers) do not belong in a wasm build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cargo} to build the plugins: {e}"));
    if !status.success() {
        panic!("building the WebAssembly plugins failed (see the cargo output above)");
    }
    for (_, file) in &components {
        let built = target_dir.join(TARGET).join("plugin").join(file);
        let copy = out_dir.join(file);
        std::fs::copy(&built, &copy)
            .unwrap_or_else(|e| panic!("cannot copy {}: {e}", built.display()));
    }
    println!(
        "cargo:rustc-env=SRE_OPERATOR_WASM_DIR={}",
        out_dir.display()
    );
    // Where the nested build keeps its output, so a benchmark can build a test component the
    // release build skipped without compiling its dependencies again.
    println!(
        "cargo:rustc-env=SRE_OPERATOR_WASM_TARGET_DIR={}",
        target_dir.display()
    );
}

/// Installs the wasm32-wasip2 standard library when rustup manages the toolchain and lacks it.
fn ensure_target() {
    let sysroot = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let installed = sysroot
        .as_deref()
        .is_some_and(|s| Path::new(s).join("lib/rustlib").join(TARGET).exists());
    if installed {
        return;
    }
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    match status {
        Ok(s) if s.success() => {}
        _ => panic!(
            "the {TARGET} target is missing and `rustup target add {TARGET}` failed; install it and build again"
        ),
    }
}

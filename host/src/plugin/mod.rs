//! The WebAssembly plugin runtime: tools, patch filters and policy filters as components of the
//! `wit/` package, run under wasmtime with every call bounded.
//!
//! Following Kubewarden's policy-server and Spin: one engine with epoch interruption and a
//! ticker thread; each component compiled once (and the compiled artifact cached on disk, keyed by
//! digest and engine); one pre-instantiated template per plugin; a fresh store per call, so no
//! state survives between calls; memory capped by a resource limiter; a deadline per call; a cap
//! on output; WASI with nothing granted.
//!
//! One concern a file: `runtime.rs` (engine, compile, load), `compile_process.rs` (compiling in a
//! child process), `snapshot.rs` (configured once), `sandbox.rs` (one call's store and
//! its limits), `loaded.rs` (the one call sequence every world shares), `errors.rs`
//! ([`CallError`]), and one file per world: `tool.rs`, `patch_filter.rs`, `policy_filter.rs`.

pub mod access;
mod bindings;
mod cache;
mod compile_process;
pub mod egress;
mod errors;
mod fetch;
mod loaded;
pub mod manifest;
mod patch_filter;
mod policy_filter;
mod registry;
mod runtime;
mod sandbox;
mod snapshot;
mod tool;

pub use access::ClusterAccess;
pub use compile_process::{COMMAND as COMPILE_COMMAND, serve as serve_compile};
pub use errors::CallError;
pub use loaded::{LoadedPlugin, MESSAGE_CAP};
pub use manifest::{Limits, MANIFEST_FILE, Manifest, ManifestEntry, parse_manifest};
pub use patch_filter::{Review, ReviewContext};
pub use policy_filter::{DecideContext, Decision};
pub use registry::{
    LimitsSummary, PluginRegistry, PluginSet, PluginSetSummary, PluginSummary, Refusal, ToolInfo,
    ToolSummary,
};
pub use runtime::{CACHE_ENV, PluginSource, Runtime, Strategy, pool_reservation, sha256_hex};
pub use sandbox::CallState;
pub use tool::ToolSpec;

/// The three plugin worlds of `wit/`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
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

//! Host bindings for the three worlds of `wit/`, one module per world. The `types` interface is
//! generated once, in `tool`, and the other worlds reuse it through bindgen's `with:`, so every
//! world speaks the same `ToolSpec`, `ReviewContext`, ... and `CallState` implements its `Host`
//! trait once.

pub mod tool {
    wasmtime::component::bindgen!({ path: "../wit", world: "tool" });
}

pub mod patch_filter {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "patch-filter",
        with: { "sre-operator:plugin/types": crate::plugin::bindings::types },
    });
}

pub mod policy_filter {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "policy-filter",
        with: { "sre-operator:plugin/types": crate::plugin::bindings::types },
    });
}

/// The one generated `types` interface every world shares.
pub use tool::sre_operator::plugin::types;

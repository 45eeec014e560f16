//! Host bindings for the three worlds of `wit/`, one module per world.

pub mod tool {
    wasmtime::component::bindgen!({ path: "../wit", world: "tool" });
}

pub mod patch_filter {
    wasmtime::component::bindgen!({ path: "../wit", world: "patch-filter" });
}

pub mod policy_filter {
    wasmtime::component::bindgen!({ path: "../wit", world: "policy-filter" });
}

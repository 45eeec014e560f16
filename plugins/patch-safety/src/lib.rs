//! `patch-safety`: the patch-filter every suggested JSON Patch passes before anyone may apply it.
//! It allows only small, guarded changes to a workload's replicas and its containers' image,
//! resources, env, probes, command and args; everything else is denied with the reason. Some
//! rules hold for every patch (no replicas 0, no removed limit, no resource above its ceiling);
//! a model-authored patch may also not change what a container runs or add a denied env name.
// wit-bindgen's generated bindings take one argument per field of the WIT context record.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({ world: "patch-filter", path: "../../wit" });

mod apply;
mod effect;
mod review;

pub use review::{Settings, Verdict, review};
use sre_operator::plugin::types::RewrittenPatch;

struct PatchSafety;

/// Settings arrive with every fresh instance; parsing them is cheap next to the review.
fn settings() -> Settings {
    SETTINGS.with(|s| s.borrow().clone())
}

std::thread_local! {
    static SETTINGS: std::cell::RefCell<Settings> = std::cell::RefCell::new(Settings::default());
}

impl Guest for PatchSafety {
    fn configure(settings: String) -> Result<(), String> {
        let parsed = Settings::parse(&settings)?;
        SETTINGS.with(|s| *s.borrow_mut() = parsed);
        Ok(())
    }

    fn review(target: String, patch: String, context: ReviewContext) -> ReviewVerdict {
        match review(&target, &patch, &context.author, &settings()) {
            Verdict::Allow => ReviewVerdict::Allow,
            Verdict::Deny(reason) => ReviewVerdict::Deny(reason),
            Verdict::Rewrite { patch, reason } => {
                ReviewVerdict::Rewrite(RewrittenPatch { patch, reason })
            }
        }
    }
}

export!(PatchSafety);

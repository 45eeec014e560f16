//! The `patch-filter` world: reviews a suggested JSON Patch before anyone can apply it.

use super::World;
use super::bindings::types::ReviewVerdict;
use super::errors::CallError;
use super::loaded::{LoadedPlugin, Template, capped};

pub use super::bindings::types::ReviewContext;

/// What the patch-filter said.
#[derive(Clone, Debug, PartialEq)]
pub enum Review {
    Allow,
    Deny(String),
    Rewrite { patch: String, reason: String },
}

impl LoadedPlugin {
    /// Reviews a patch against its target (patch-filter plugins).
    pub fn review(
        &self,
        target: &str,
        patch: &str,
        context: &ReviewContext,
    ) -> Result<Review, CallError> {
        let prepared = self.prepared();
        let Template::PatchFilter(pre) = &prepared.template else {
            return Err(self.wrong_world("review", World::PatchFilter));
        };
        let verdict = self.call(
            &prepared,
            "review",
            None,
            |s| pre.instantiate(s),
            |filter, s| filter.call_review(s, target, patch, context),
        )?;
        match verdict {
            ReviewVerdict::Allow => Ok(Review::Allow),
            ReviewVerdict::Deny(reason) => Ok(Review::Deny(capped(reason))),
            ReviewVerdict::Rewrite(r) => {
                self.check_output("review", &r.patch)?;
                Ok(Review::Rewrite {
                    patch: r.patch,
                    reason: capped(r.reason),
                })
            }
        }
    }
}

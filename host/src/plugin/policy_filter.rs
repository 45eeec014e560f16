//! The `policy-filter` world: decides whether a failing Pod is worth an investigation.

use super::World;
use super::bindings::types::Decision as WitDecision;
use super::errors::CallError;
use super::loaded::{LoadedPlugin, Template, capped};

pub use super::bindings::types::DecideContext;

/// What the policy-filter said.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Investigate,
    Skip(String),
}

impl LoadedPlugin {
    /// Decides whether a failing Pod is worth an investigation (policy-filter plugins).
    pub fn decide(
        &self,
        pod: &str,
        failure: &str,
        context: &DecideContext,
    ) -> Result<Decision, CallError> {
        let prepared = self.prepared();
        let Template::PolicyFilter(pre) = &prepared.template else {
            return Err(self.wrong_world("decide", World::PolicyFilter));
        };
        let decision = self.call(
            &prepared,
            "decide",
            None,
            |s| pre.instantiate(s),
            |filter, s| filter.call_decide(s, pod, failure, context),
        )?;
        match decision {
            WitDecision::Investigate => Ok(Decision::Investigate),
            WitDecision::Skip(reason) => Ok(Decision::Skip(capped(reason))),
        }
    }
}

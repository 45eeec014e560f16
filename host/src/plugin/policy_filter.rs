//! The `policy-filter` world: decides whether a failing Pod is worth an investigation.

use wasmtime::Store;

use super::World;
use super::bindings::policy_filter::PolicyFilter;
use super::bindings::types::Decision as WitDecision;
use super::errors::CallError;
use super::loaded::{Configure, LoadedPlugin, Template};
use super::sandbox::CallState;

pub use super::bindings::types::DecideContext;

/// What the policy-filter said.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Investigate,
    Skip(String),
}

impl Configure for PolicyFilter {
    fn configure(
        &self,
        store: &mut Store<CallState>,
        settings: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        self.call_configure(store, settings)
    }
}

impl LoadedPlugin {
    /// Decides whether a failing Pod is worth an investigation (policy-filter plugins).
    pub fn decide(
        &self,
        pod: &str,
        failure: &str,
        context: &DecideContext,
    ) -> Result<Decision, CallError> {
        let Template::PolicyFilter(pre) = &self.template else {
            return Err(self.wrong_world("decide", World::PolicyFilter));
        };
        let decision = self.call(
            "decide",
            None,
            |s| pre.instantiate(s),
            |filter, s| filter.call_decide(s, pod, failure, context),
        )?;
        match decision {
            WitDecision::Investigate => Ok(Decision::Investigate),
            WitDecision::Skip(reason) => {
                self.check_output("decide", &reason)?;
                Ok(Decision::Skip(reason))
            }
        }
    }
}

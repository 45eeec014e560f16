//! The `tool` world: diagnostic tools the agent calls, with read access to the cluster.

use super::World;
use super::access::ClusterAccess;
use super::bindings::types::ToolError;
use super::errors::CallError;
use super::loaded::{LoadedPlugin, Template, capped};

pub use super::bindings::types::ToolSpec;

impl LoadedPlugin {
    /// The tools a `tool` plugin describes (empty for filters).
    pub fn describe(&self) -> Result<Vec<ToolSpec>, CallError> {
        let prepared = self.prepared();
        let Template::Tool(pre) = &prepared.template else {
            return Ok(Vec::new());
        };
        let specs = self.call(
            &prepared,
            "describe",
            None,
            |s| pre.instantiate(s),
            |tool, s| tool.call_describe(s),
        )?;
        // What a plugin says of its tools goes to the model with every request: within the
        // plugin's output limit, all of it together.
        let size: usize = specs
            .iter()
            .map(|t| t.name.len() + t.description.len() + t.parameters.len())
            .sum();
        if size > self.limits.output_bytes {
            return Err(CallError::Output {
                plugin: self.name.clone(),
                call: "describe".into(),
                size,
                limit: self.limits.output_bytes,
            });
        }
        Ok(specs)
    }

    /// Calls one tool on a fresh instance. Synchronous: run it off the async executor.
    pub fn invoke_tool(
        &self,
        tool: &str,
        arguments: &str,
        access: ClusterAccess,
    ) -> Result<String, CallError> {
        let call = format!("invoke {tool}");
        let prepared = self.prepared();
        let Template::Tool(pre) = &prepared.template else {
            return Err(self.wrong_world(&call, World::Tool));
        };
        let answer = self.call(
            &prepared,
            &call,
            Some(access),
            |s| pre.instantiate(s),
            |instance, s| instance.call_invoke(s, tool, arguments),
        )?;
        match answer {
            Ok(text) => {
                self.check_output(&call, &text)?;
                Ok(text)
            }
            Err(ToolError::UnknownTool(t)) => Err(CallError::UnknownTool(capped(t))),
            Err(ToolError::InvalidArguments(message)) => Err(CallError::InvalidArguments {
                plugin: self.name.clone(),
                call,
                message: capped(message),
            }),
            Err(ToolError::Failed(message)) => Err(CallError::Tool {
                plugin: self.name.clone(),
                call,
                message: capped(message),
            }),
        }
    }
}

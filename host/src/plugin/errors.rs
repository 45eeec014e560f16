//! Why a plugin call failed: [`CallError`], and how a wasmtime failure, a guest's stderr and a
//! blocking task that never finished are turned into the right variant of it.

use std::time::Duration;

use wasmtime::Trap;

use super::World;
use super::manifest::Limits;
use super::sandbox::{CallState, STDIO_CAP};

/// Why a call of a plugin failed. Every variant names the plugin and the call.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CallError {
    #[error(
        "plugin {plugin}: {call} ran past its deadline of {limit:?}{}",
        waiting(waiting_on)
    )]
    Deadline {
        plugin: String,
        call: String,
        limit: Duration,
        /// The cluster read the plugin was waiting on when its time ran out, if any.
        waiting_on: Option<String>,
    },
    #[error("plugin {plugin}: {call} hit its memory limit of {limit} bytes")]
    Memory {
        plugin: String,
        call: String,
        limit: usize,
    },
    #[error(
        "plugin {plugin}: {call} returned {size} bytes, over its output limit of {limit} bytes"
    )]
    Output {
        plugin: String,
        call: String,
        size: usize,
        limit: usize,
    },
    #[error("plugin {plugin}: {call} wrote more than {limit} bytes to {stream}")]
    Stdio {
        plugin: String,
        call: String,
        stream: &'static str,
        limit: usize,
    },
    #[error("plugin {plugin}: {call} trapped: {message}")]
    Trap {
        plugin: String,
        call: String,
        message: String,
    },
    #[error("plugin {plugin}: {call} rejected its settings: {message}")]
    Settings {
        plugin: String,
        call: String,
        message: String,
    },
    #[error("plugin {plugin}: {call} failed: {message}")]
    Tool {
        plugin: String,
        call: String,
        message: String,
    },
    #[error("plugin {plugin}: {call}: invalid arguments: {message}")]
    InvalidArguments {
        plugin: String,
        call: String,
        message: String,
    },
    #[error("plugin {plugin}: {call} needs a {expected} plugin, and this one is a {world}")]
    WrongWorld {
        plugin: String,
        call: String,
        world: World,
        expected: World,
    },
    #[error("plugin {plugin}: {call} could not run: {message}")]
    NotRun {
        plugin: String,
        call: String,
        message: String,
    },
    #[error("no loaded plugin offers the tool {0:?}")]
    UnknownTool(String),
}

fn waiting(read: &Option<String>) -> String {
    read.as_ref()
        .map(|r| format!(", waiting on {r}"))
        .unwrap_or_default()
}

impl CallError {
    /// What went wrong, as one word: a trace's `outcome`.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Deadline { .. } => "deadline",
            CallError::Memory { .. } => "memory",
            CallError::Output { .. } => "output",
            CallError::Stdio { .. } => "stdio",
            CallError::Trap { .. } => "trap",
            CallError::Settings { .. } => "settings",
            CallError::Tool { .. } => "error",
            CallError::InvalidArguments { .. } => "invalid_arguments",
            CallError::WrongWorld { .. } => "wrong_world",
            CallError::NotRun { .. } => "not_run",
            CallError::UnknownTool(_) => "unknown_tool",
        }
    }

    /// Turns a wasmtime failure of `plugin`'s `call` into the limit it hit, if any, else a trap
    /// that says what the guest said last.
    pub(super) fn from_wasmtime(
        plugin: &str,
        limits: &Limits,
        call: &str,
        state: &CallState,
        error: wasmtime::Error,
    ) -> CallError {
        let (plugin, call) = (plugin.to_string(), call.to_string());
        if state.limiter.hit {
            return CallError::Memory {
                plugin,
                call,
                limit: limits.memory_bytes,
            };
        }
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return CallError::Deadline {
                plugin,
                call,
                limit: limits.timeout,
                waiting_on: None,
            };
        }
        for (stream, pipe) in [("stderr", &state.stderr), ("stdout", &state.stdout)] {
            if pipe.contents().len() >= STDIO_CAP {
                return CallError::Stdio {
                    plugin,
                    call,
                    stream,
                    limit: STDIO_CAP,
                };
            }
        }
        // wasmtime's own first line only says where ("error while executing at wasm
        // backtrace:"); the root cause says what, and the guest's last line on stderr says why
        // (a Rust panic message, a Python traceback's exception, a JavaScript error).
        let mut message = error.root_cause().to_string();
        if let Some(said) = last_words(&state.stderr.contents()) {
            message = format!("{message}; the plugin said: {said}");
        }
        let message = message
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(500)
            .collect::<String>();
        let message = crate::redact::redact_text(&message);
        CallError::Trap {
            plugin,
            call,
            message,
        }
    }

    /// A call whose blocking task panicked or was cancelled before it could answer: the host
    /// failed, not the tool's name.
    pub fn not_run(plugin: &str, call: &str, error: tokio::task::JoinError) -> CallError {
        CallError::NotRun {
            plugin: plugin.to_string(),
            call: call.to_string(),
            message: error.to_string(),
        }
    }
}

/// The line of a trapped guest's stderr that says why: the last one that is not a stack frame or
/// a toolchain's boilerplate around it (Rust's panic header and backtrace note, componentize-py's
/// "unexpected exception", SpiderMonkey's abort notice).
fn last_words(stderr: &[u8]) -> Option<String> {
    const NOISE: [&str; 6] = [
        "thread '",
        "note: run with `RUST_BACKTRACE",
        "Python function threw an unexpected exception",
        "Redirecting call to abort()",
        "Stack:",
        "Traceback (most recent call last)",
    ];
    String::from_utf8_lossy(stderr)
        .lines()
        .rfind(|l| {
            !l.trim().is_empty()
                && !l.starts_with([' ', '\t'])
                && !NOISE.iter().any(|n| l.starts_with(n))
        })
        .map(|l| l.trim().chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::{CallError, last_words};

    #[test]
    fn a_trap_says_what_the_guest_said_last() {
        let python = "Traceback (most recent call last):\n  File \"/0/app.py\", line 15, in configure\nValueError: no settings, please\n\nthread '<unnamed>' (1) panicked at runtime/src/lib.rs:1293:29:\nPython function threw an unexpected exception\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            last_words(python.as_bytes()).unwrap(),
            "ValueError: no settings, please"
        );
        let javascript = "expected a string, received [object]\nStack:\n  _utf8AllocateAndEncode@initializer.js:24:11\n\nRedirecting call to abort() to mozalloc_abort\n\n";
        assert_eq!(
            last_words(javascript.as_bytes()).unwrap(),
            "expected a string, received [object]"
        );
        let rust = "\nthread '<unnamed>' panicked at src/lib.rs:10:5:\nindex out of bounds: the len is 0 but the index is 3\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            last_words(rust.as_bytes()).unwrap(),
            "index out of bounds: the len is 0 but the index is 3"
        );
        assert_eq!(last_words(b""), None);
    }

    #[tokio::test]
    async fn a_task_that_never_answered_is_not_an_unknown_tool() {
        let join = tokio::task::spawn_blocking(|| panic!("the host broke"))
            .await
            .unwrap_err();
        let err = CallError::not_run("k8s-reader", "invoke get_pod", join);
        assert!(
            matches!(&err, CallError::NotRun { plugin, call, .. } if plugin == "k8s-reader" && call == "invoke get_pod"),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("plugin k8s-reader: invoke get_pod could not run: "),
            "{err}"
        );
    }
}

//! The container runtime's word on a process it could not start. runc (containerd) says it in
//! the terminated state (`StartError`, exit 128) and the `RunContainerError` waiting message;
//! CRI-O and crun say it at creation (`CreateContainerError`), so the container never runs and
//! has no log. A shell that cannot find a command says it in the log instead (exit 127), which
//! [`crate::agent::rules::read_clues`] reads through the same parser.

use std::sync::LazyLock;

use regex::Regex;

/// Why the runtime could not run a container's command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecFailure {
    /// No such file, or not in `$PATH` (also a script whose interpreter is missing).
    NotFound { command: Option<String> },
    /// The file exists but may not be executed (no execute bit, a `noexec` mount).
    NotExecutable { command: Option<String> },
    /// The binary is for another CPU architecture (`exec format error`).
    WrongArchitecture { command: Option<String> },
    /// Neither the Pod nor the image says what to run.
    NoCommand,
}

/// `exec: "X": ...` (runc's Go form, quoted) or `exec X: ...` (runc 1.1+), crun's
/// `executable file `X` not found`, and runc 1.0's `exec user process caused: ...` (no command). A command is at most 256 characters with no quote or space.
static EXEC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)(?:exec:? \\?"?([^"\\\s]{1,256}?)\\?"?: (?:stat \S{1,256}: )?(no such file or directory|executable file not found|permission denied|exec format error)|executable file `([^`\s]{1,256})` not found|exec user process caused:? "?(no such file or directory|permission denied|exec format error))"#,
    )
    .expect("static regex")
});
/// A shell's own `sh: 1: X: not found` / `bash: X: command not found`, in a log.
static SHELL_NOT_FOUND: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?:^|[\s"'])(?:/\S*/)?(?:sh|bash|ash|dash|zsh)(?:: line \d+|: \d+)?: ([^\s:]{1,256}): (?:command )?not found"#)
        .expect("static regex")
});

impl ExecFailure {
    /// Reads a runtime message (or a log line); None when it says none of these.
    pub fn parse(message: &str) -> Option<ExecFailure> {
        if let Some(c) = EXEC.captures(message) {
            if let Some(command) = c.get(3) {
                return Some(ExecFailure::NotFound {
                    command: Some(command.as_str().to_string()),
                });
            }
            let command = c.get(1).map(|m| m.as_str().to_string());
            let said = c.get(2).or(c.get(4)).map_or("", |m| m.as_str());
            return Some(match said.to_ascii_lowercase().as_str() {
                "permission denied" => ExecFailure::NotExecutable { command },
                "exec format error" => ExecFailure::WrongArchitecture { command },
                _ => ExecFailure::NotFound { command },
            });
        }
        if let Some(c) = SHELL_NOT_FOUND.captures(message) {
            return Some(ExecFailure::NotFound {
                command: Some(c[1].to_string()),
            });
        }
        message
            .contains("no command specified")
            .then_some(ExecFailure::NoCommand)
    }

    /// The report's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ExecFailure::NotFound { .. } => "CommandNotFound",
            ExecFailure::NotExecutable { .. } => "CommandNotExecutable",
            ExecFailure::WrongArchitecture { .. } => "ExecFormatError",
            ExecFailure::NoCommand => "NoCommand",
        }
    }

    pub fn command(&self) -> Option<&str> {
        match self {
            ExecFailure::NotFound { command }
            | ExecFailure::NotExecutable { command }
            | ExecFailure::WrongArchitecture { command } => command.as_deref(),
            ExecFailure::NoCommand => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ExecFailure::{self, *};

    fn found(command: &str) -> Option<ExecFailure> {
        Some(NotFound {
            command: Some(command.into()),
        })
    }

    #[test]
    fn reads_what_runc_crun_cri_o_and_shells_write() {
        let cases = [
            (
                r#"failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: exec: "gunicorn": executable file not found in $PATH: unknown"#,
                found("gunicorn"),
            ),
            (
                r#"failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: "/app/server": stat /app/server: no such file or directory: unknown"#,
                found("/app/server"),
            ),
            (
                "failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: exec /docker-entrypoint.sh: no such file or directory: unknown",
                found("/docker-entrypoint.sh"),
            ),
            (
                r#"container create failed: time="2026-12-01T10:00:00Z" level=error msg="runc create failed: unable to start container process: exec: \"/bin/worker\": stat /bin/worker: no such file or directory""#,
                found("/bin/worker"),
            ),
            (
                "executable file `gunicorn` not found in $PATH: No such file or directory: OCI runtime attempted to invoke a command that was not found",
                found("gunicorn"),
            ),
            (
                r#"OCI runtime create failed: runc create failed: unable to start container process: exec: "/app/run.sh": permission denied: unknown"#,
                Some(NotExecutable {
                    command: Some("/app/run.sh".into()),
                }),
            ),
            (
                "runc create failed: unable to start container process: error during container init: exec /usr/local/bin/api: exec format error: unknown",
                Some(WrongArchitecture {
                    command: Some("/usr/local/bin/api".into()),
                }),
            ),
            (
                "standard_init_linux.go:228: exec user process caused: exec format error",
                Some(WrongArchitecture { command: None }),
            ),
            ("/bin/sh: 1: celery: not found", found("celery")),
            (
                r#"command '/bin/sh -c /app/warm.sh' exited with 127: , message: "/bin/sh: 1: /app/warm.sh: not found\n""#,
                found("/app/warm.sh"),
            ),
            ("bash: line 1: migrate: command not found", found("migrate")),
            (
                r#"failed to generate container "0f3c" spec: failed to generate spec: no command specified"#,
                Some(NoCommand),
            ),
            ("dial tcp 10.0.0.3:5432: connect: connection refused", None),
            ("open /data/db.sqlite: no such file or directory", None),
            ("mkdir /var/cache/app: permission denied", None),
        ];
        for (message, expected) in cases {
            assert_eq!(ExecFailure::parse(message), expected, "{message}");
        }
    }
}

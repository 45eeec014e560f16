//! Compiling in a child process: the operator runs its own binary's hidden `compile-plugin`
//! command, sends it a [`Request`] and the component, and gets back wasmtime's artifact, which
//! it loads as it would one from its cache ([`super::runtime::adopt`]).
//!
//! Why a process and not a thread: the process that stays up should not map the compiler's code
//! nor keep what compiling allocated (the burst benchmark's peak RSS), and a compile or a
//! snapshot's `configure` that runs away (time, memory) is killed with its process.
//!
//! The wire: one line of JSON (the request), then the component's bytes to the end of stdin.
//! The answer on stdout: `A` and the artifact, or `E` and why not (UTF-8). The child starts with
//! an empty environment and no arguments but the command; what it needs to make an engine like
//! the parent's is in the request.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::runtime::{Compiler, Strategy};
use super::snapshot::{self, Configure};

/// The hidden subcommand of the operator's binary that serves one request.
pub const COMMAND: &str = "compile-plugin";

/// What a compile process is asked to do.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct Request {
    /// The parent engine's strategy and memory slot size: the child's compiling engine is
    /// configured from them, so that its artifact loads in the parent.
    pub(super) strategy: Strategy,
    pub(super) slot_bytes: u64,
    /// A configured snapshot of the component rather than the component itself.
    pub(super) configure: Option<Configure>,
}

/// Past this, a compile process is killed: Python's runtime compiles in about 10 s on two cores,
/// and a snapshot's `configure` has its plugin's own deadline inside this one.
const DEADLINE: Duration = Duration::from_secs(300);
/// The longest request line and the largest component a compile process reads.
const MAX_REQUEST_LINE: u64 = 64 << 10;
const MAX_COMPONENT_BYTES: u64 = 256 << 20;
/// The largest artifact the parent reads (Python's is about 40 MB).
const MAX_ARTIFACT_BYTES: u64 = 1 << 30;
/// How much of the child's stderr (a panic's message) is kept for the error.
const STDERR_TAIL: u64 = 4 << 10;

/// Why a compile process gave no artifact.
#[derive(Debug)]
pub(super) enum Failed {
    /// It could not be started (exec refused, the program gone): the caller compiles itself.
    NotStarted(String),
    /// It ran and failed, or died: the reason.
    Ran(String),
}

/// The parent's side: `bytes` compiled as `request` says by a child process of `program`.
pub(super) fn run(program: &Path, request: &Request, bytes: &[u8]) -> Result<Vec<u8>, Failed> {
    run_within(program, request, bytes, DEADLINE)
}

/// [`run`], the child killed once `deadline` has passed.
fn run_within(
    program: &Path,
    request: &Request,
    bytes: &[u8],
    deadline: Duration,
) -> Result<Vec<u8>, Failed> {
    let header = serde_json::to_string(request).map_err(|e| Failed::Ran(e.to_string()))?;
    let mut child = Command::new(program)
        .arg(COMMAND)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Failed::NotStarted(format!(
                "cannot start a compile process ({}): {e}",
                program.display()
            ))
        })?;
    let (mut stdin, stdout, stderr) = (
        child.stdin.take().expect("piped"),
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    // The watchdog is done before the child is reaped (below), so the pid it may kill is still
    // the child's.
    let pid = child.id() as libc::pid_t;
    let (finished, watch) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let timed_out = watch.recv_timeout(deadline) == Err(mpsc::RecvTimeoutError::Timeout);
        if timed_out {
            // SAFETY: plain syscall on our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        timed_out
    });
    let answer = std::thread::scope(|scope| {
        // Written and read at once: a child that fails early and says so on stderr must not
        // block on a full pipe while we block on writing.
        let writing = scope.spawn(move || -> std::io::Result<()> {
            stdin.write_all(header.as_bytes())?;
            stdin.write_all(b"\n")?;
            stdin.write_all(bytes)
        });
        let errors = scope.spawn(move || tail(stderr, STDERR_TAIL));
        let mut out = Vec::new();
        let read = stdout.take(MAX_ARTIFACT_BYTES + 1).read_to_end(&mut out);
        let oversized = out.len() as u64 > MAX_ARTIFACT_BYTES;
        if oversized {
            // SAFETY: as the watchdog's. Its stderr would not end while it blocks on stdout.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // A child that stopped reading (it failed) breaks the pipe: its status says why.
        let _ = writing.join();
        (
            read.map(|_| out),
            oversized,
            errors.join().unwrap_or_default(),
        )
    });
    let (out, oversized, errors) = answer;
    let _ = finished.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    // Its output is closed: it has exited or is about to. One that lingers is killed.
    let lingering = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if std::time::Instant::now() < lingering => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Ok(None) => {
                let _ = child.kill();
                break child.wait();
            }
            Err(e) => break Err(e),
        }
    };
    if timed_out {
        return Err(Failed::Ran(format!(
            "the compile process did not finish within {} s and was killed",
            deadline.as_secs_f64()
        )));
    }
    if oversized {
        return Err(Failed::Ran(format!(
            "the compiled artifact exceeds {} MiB",
            MAX_ARTIFACT_BYTES >> 20
        )));
    }
    let status =
        status.map_err(|e| Failed::Ran(format!("waiting for the compile process failed: {e}")))?;
    let mut out =
        out.map_err(|e| Failed::Ran(format!("reading the compile process's answer failed: {e}")))?;
    match out.first() {
        Some(b'A') if status.success() => {
            // In place: the artifact can be tens of MB.
            out.remove(0);
            Ok(out)
        }
        Some(b'E') if status.success() => {
            Err(Failed::Ran(String::from_utf8_lossy(&out[1..]).into()))
        }
        _ => Err(Failed::Ran(died(status, &errors))),
    }
}

/// Why a compile process gave no answer, from its exit status and the end of its stderr.
fn died(status: std::process::ExitStatus, stderr: &str) -> String {
    use std::os::unix::process::ExitStatusExt;
    let how = match status.signal() {
        Some(libc::SIGKILL) => {
            "was killed (signal 9: out of memory, or the container's limit)".to_string()
        }
        Some(signal) => format!("was killed by signal {signal}"),
        None => format!("exited with {status} and no answer"),
    };
    let said = stderr.trim();
    if said.is_empty() {
        format!("the compile process {how}")
    } else {
        // A panic's message can quote the component (an export's name): no control character
        // reaches a log or a terminal.
        format!(
            "the compile process {how}: {}",
            crate::terminal::escape(said)
        )
    }
}

/// The last `cap` bytes of `from`, read to its end.
fn tail(from: impl Read, cap: u64) -> String {
    let mut kept = std::collections::VecDeque::new();
    let mut reader = BufReader::new(from);
    loop {
        let chunk = match reader.fill_buf() {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        kept.extend(chunk);
        let n = chunk.len();
        reader.consume(n);
        while kept.len() as u64 > cap {
            kept.pop_front();
        }
    }
    String::from_utf8_lossy(kept.make_contiguous()).into_owned()
}

/// The child's side: serves the one request on stdin (`sre-operator compile-plugin`).
pub fn serve() -> std::io::Result<()> {
    // When the container runs out of memory, the kernel kills this compile rather than the
    // operator (raising one's own score needs no privilege). The operator records the death
    // and does not try that snapshot again.
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
    let mut input = std::io::stdin().lock();
    let answer = read_request(&mut input).and_then(|(request, bytes)| work(request, &bytes));
    let mut out = std::io::stdout().lock();
    let written = match answer {
        Ok(artifact) => out.write_all(b"A").and_then(|_| out.write_all(&artifact)),
        Err(reason) => out
            .write_all(b"E")
            .and_then(|_| out.write_all(reason.as_bytes())),
    };
    written.and_then(|_| out.flush())
}

fn read_request(input: &mut impl BufRead) -> Result<(Request, Vec<u8>), String> {
    let mut line = String::new();
    input
        .take(MAX_REQUEST_LINE)
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the request: {e}"))?;
    let request: Request =
        serde_json::from_str(&line).map_err(|e| format!("not a compile request: {e}"))?;
    let mut bytes = Vec::new();
    input
        .take(MAX_COMPONENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the component: {e}"))?;
    if bytes.len() as u64 > MAX_COMPONENT_BYTES {
        return Err(format!(
            "the component exceeds {} MiB",
            MAX_COMPONENT_BYTES >> 20
        ));
    }
    Ok((request, bytes))
}

fn work(request: Request, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let compiler = Compiler::new(request.strategy, request.slot_bytes);
    match &request.configure {
        None => compiler.compile(bytes),
        Some(configure) => compiler.here(|engine| snapshot::artifact(engine, configure, bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reads_back_as_sent_and_the_component_follows_it() {
        let request = Request {
            strategy: Strategy::Pooled,
            slot_bytes: 512 << 20,
            configure: Some(Configure {
                plugin: "p".into(),
                world: super::super::World::PatchFilter,
                settings: "{\"a\":\n1}".into(),
                limits: Default::default(),
            }),
        };
        let mut wire = serde_json::to_vec(&request).unwrap();
        wire.push(b'\n');
        wire.extend_from_slice(b"\0asm\ncomponent");
        let (read, bytes) = read_request(&mut &wire[..]).unwrap();
        assert_eq!(bytes, b"\0asm\ncomponent");
        assert_eq!(read.strategy, Strategy::Pooled);
        assert_eq!(read.slot_bytes, 512 << 20);
        let configure = read.configure.unwrap();
        assert_eq!(configure.settings, "{\"a\":\n1}");
        assert_eq!(configure.world, super::super::World::PatchFilter);
        assert_eq!(configure.limits, crate::plugin::Limits::default());
    }

    /// A compile process that never answers is killed at the deadline and said to be, however
    /// much of the request it read.
    #[test]
    fn a_compile_process_past_its_deadline_is_killed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("hangs");
        std::fs::write(&program, "#!/bin/sh\nexec sleep 600\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let request = Request {
            strategy: Strategy::Pooled,
            slot_bytes: 1 << 20,
            configure: None,
        };
        let started = std::time::Instant::now();
        // More than a pipe holds: the writer blocks until the child dies.
        let outcome = run_within(
            &program,
            &request,
            &vec![0; 1 << 20],
            Duration::from_millis(300),
        );
        let Err(Failed::Ran(reason)) = outcome else {
            panic!("{outcome:?}");
        };
        assert!(reason.contains("did not finish within 0.3 s"), "{reason}");
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn a_stderr_tail_keeps_the_end() {
        let text = "x".repeat(10_000) + "the end";
        let kept = tail(text.as_bytes(), 100);
        assert_eq!(kept.len(), 100);
        assert!(kept.ends_with("the end"));
    }
}

//! The processes of a cluster: starting them so that they cannot outlive the test process,
//! stopping them newest first, and cleaning up on SIGINT, SIGTERM or SIGHUP.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long a process gets after SIGTERM before it is killed. A kube-apiserver sent SIGTERM
/// keeps running for a while (graceful shutdown), so this is short.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// One started component with its log file.
pub(crate) struct Proc {
    pub name: &'static str,
    pub child: Child,
    pub log: PathBuf,
}

/// Everything one cluster owns: its processes (oldest first) and its folder.
pub(crate) struct Owned {
    pub procs: Vec<Proc>,
    pub dir: Option<tempfile::TempDir>,
}

impl Owned {
    /// Stops the processes newest first (SIGTERM, wait, SIGKILL after a grace period), then
    /// removes the folder.
    pub fn stop(mut self) {
        while let Some(mut p) = self.procs.pop() {
            stop_child(p.name, &mut p.child);
        }
        if let Some(dir) = self.dir.take() {
            if std::env::var_os(crate::KEEP_ENV).is_some_and(|v| !v.is_empty()) {
                let path = dir.keep();
                eprintln!(
                    "sre-e2e: kept {} ({} is set)",
                    path.display(),
                    crate::KEEP_ENV
                );
                return;
            }
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                eprintln!("sre-e2e: could not remove {}: {e}", path.display());
            }
        }
    }
}

fn stop_child(name: &str, child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SAFETY: kill(2) on a pid we started and have not reaped yet (try_wait above said it is
    // still running, so the pid cannot have been reused).
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + TERM_GRACE;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => break,
        }
    }
    if let Err(e) = child.kill() {
        eprintln!("sre-e2e: could not kill {name} ({}): {e}", child.id());
    }
    let _ = child.wait();
}

/// Live clusters by id, so that a signal handler can stop them.
static LIVE: Mutex<BTreeMap<u64, Owned>> = Mutex::new(BTreeMap::new());

pub(crate) fn live() -> std::sync::MutexGuard<'static, BTreeMap<u64, Owned>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Registers a new, empty cluster and returns its id.
pub(crate) fn register(dir: tempfile::TempDir) -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    install_signal_cleanup();
    live().insert(
        id,
        Owned {
            procs: Vec::new(),
            dir: Some(dir),
        },
    );
    id
}

/// Stops and forgets cluster `id` (a no-op when it is already gone).
pub(crate) fn stop(id: u64) {
    let owned = live().remove(&id);
    if let Some(owned) = owned {
        owned.stop();
    }
}

/// Starts `cmd` for cluster `id`, its output appended to `log`.
pub(crate) fn spawn(id: u64, name: &'static str, mut cmd: Command, log: &Path) -> Result<u32> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("creating {}", log.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let child = spawner_spawn(cmd).with_context(|| format!("starting {name}"))?;
    let pid = child.id();
    let mut live = live();
    match live.get_mut(&id) {
        Some(owned) => owned.procs.push(Proc {
            name,
            child,
            log: log.to_path_buf(),
        }),
        None => {
            // The cluster was stopped meanwhile (a signal): do not leak this one.
            let mut child = child;
            stop_child(name, &mut child);
            bail!("cluster stopped while starting {name}");
        }
    }
    Ok(pid)
}

/// Fails naming the first process of cluster `id` that has exited, with the end of its log.
pub(crate) fn check_alive(id: u64) -> Result<()> {
    let mut live = live();
    let Some(owned) = live.get_mut(&id) else {
        bail!("the cluster was stopped (signal received)");
    };
    for p in &mut owned.procs {
        if let Ok(Some(status)) = p.child.try_wait() {
            bail!(
                "{} exited during start-up ({status}); last lines of {}:\n{}",
                p.name,
                p.log.display(),
                log_tail(&p.log, 30)
            );
        }
    }
    Ok(())
}

/// The pids of cluster `id`'s processes, oldest first.
pub(crate) fn pids(id: u64) -> Vec<(&'static str, u32)> {
    live()
        .get(&id)
        .map(|o| o.procs.iter().map(|p| (p.name, p.child.id())).collect())
        .unwrap_or_default()
}

/// The last `lines` lines of a log file (at most 64 KiB are read).
/// Polls `ready` every `every` until it says yes, failing as soon as process `id` died or after
/// 60 s with the end of `what`'s log: how each loopback component is waited for.
pub(crate) async fn await_ready<F, Fut>(
    id: u64,
    what: &str,
    log: &Path,
    every: Duration,
    ready: F,
) -> Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        check_alive(id)?;
        if ready().await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{what} was not ready after 60 s; last lines of its log:\n{}",
                log_tail(log, 30)
            );
        }
        tokio::time::sleep(every).await;
    }
}

pub fn log_tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        text = String::from_utf8_lossy(&buf).into_owned();
    }
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    if tail.is_empty() {
        "    (empty log)".to_string()
    } else {
        tail.iter().map(|l| format!("    {l}\n")).collect()
    }
}

/// Processes are forked from one thread that lives as long as the test process, with
/// PR_SET_PDEATHSIG: when the test process dies, even by SIGKILL, the kernel kills its
/// control plane. (The death signal follows the forking *thread*; a tokio worker or a test
/// thread may exit long before the cluster is dropped.) Each process gets its own process
/// group, so that a Ctrl-C in the terminal reaches the test process, which stops them in
/// order, and not the components, which would die in any order.
type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

fn spawner_spawn(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("sre-e2e-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let parent = std::process::id() as libc::pid_t;
                    cmd.process_group(0);
                    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
                    unsafe {
                        cmd.pre_exec(move || {
                            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                                return Err(std::io::Error::last_os_error());
                            }
                            if libc::getppid() != parent {
                                libc::_exit(1);
                            }
                            Ok(())
                        });
                    }
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("starting the sre-e2e spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| std::io::Error::other("sre-e2e spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("sre-e2e spawner thread is gone"))?
}

/// Held while clusters are being stopped outside of Drop (signal, process exit).
static STOPPING: Mutex<()> = Mutex::new(());

/// At process exit: stop the clusters that were never dropped (one kept in a static and shared
/// by the tests of a binary, say), or wait for a signal handler that is stopping them.
extern "C" fn at_exit() {
    let _stopping = STOPPING.lock().unwrap_or_else(|e| e.into_inner());
    let clusters: Vec<Owned> = std::mem::take(&mut *live()).into_values().collect();
    for c in clusters {
        c.stop();
    }
}

/// On SIGINT, SIGTERM or SIGHUP: stop every live cluster (newest process first), remove its
/// folder, and exit with 128 + the signal number. At process exit: stop what is left.
/// Installed once, when the first cluster starts.
fn install_signal_cleanup() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // SAFETY: registers a plain extern "C" function.
        unsafe {
            libc::atexit(at_exit);
        }
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("sre-e2e-signals".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the signal handler");
                rt.block_on(async move {
                    use tokio::signal::unix::{SignalKind, signal};
                    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
                    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
                    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
                    let _ = ready_tx.send(());
                    let signo = tokio::select! {
                        _ = int.recv() => libc::SIGINT,
                        _ = term.recv() => libc::SIGTERM,
                        _ = hup.recv() => libc::SIGHUP,
                    };
                    // Held until _exit: a process exit meanwhile (the test failing because
                    // its cluster went away) waits in at_exit instead of cutting this short.
                    let _stopping = STOPPING.lock().unwrap_or_else(|e| e.into_inner());
                    let clusters: Vec<Owned> = std::mem::take(&mut *live()).into_values().collect();
                    if !clusters.is_empty() {
                        eprintln!(
                            "\nsre-e2e: signal {signo}: stopping {} cluster(s)",
                            clusters.len()
                        );
                    }
                    for c in clusters {
                        c.stop();
                    }
                    // SAFETY: ends the process at once; everything of ours is cleaned up.
                    unsafe { libc::_exit(128 + signo) };
                });
            })
            .expect("starting the sre-e2e signal thread");
        let _ = ready_rx.recv_timeout(Duration::from_secs(5));
    });
}

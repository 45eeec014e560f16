//! `sre-operator run` as a child process for the benches that measure it (operator_scale,
//! burst): starting it, its memory from /proc, and waiting for its RSS to settle.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::mib;

/// `sre-operator run` as a child process; killed on drop.
pub struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    /// `sre-operator --log warn,sre_operator=info run ARGS` against `kubeconfig`, with `env`
    /// added to a clean environment of the operator's own variables; output to `log`.
    pub fn start(
        kubeconfig: &Path,
        log: PathBuf,
        args: &[&str],
        env: &[(&str, &Path)],
    ) -> Operator {
        let out = std::fs::File::create(&log).expect("operator log file");
        let child = Command::new(binary())
            .args(["--log", "warn,sre_operator=info", "run"])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("NO_COLOR", "1")
            .env_remove("SRE_OPERATOR_BRAIN")
            .env_remove("SRE_OPERATOR_NAMESPACES")
            .env_remove("SRE_OPERATOR_PLUGIN_DIR")
            .env_remove("SRE_OPERATOR_LEADER_ELECTION")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("the sre-operator binary runs");
        Operator { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn tail(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn check_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("sre-operator exited ({status}):\n{}", self.tail());
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The operator binary: this build's, or `SRE_BENCH_BIN` (to compare two builds).
pub fn binary() -> PathBuf {
    std::env::var_os("SRE_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sre-operator")))
}

/// A field of /proc/PID/status, in KiB.
pub fn status_kib(pid: u32, name: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// VmRSS and VmHWM of a process, in KiB.
pub fn memory(pid: u32) -> (u64, u64) {
    (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"))
}

/// "anon X + file Y MiB": heap and stacks against mapped files (the binary's code).
pub fn rss_split(pid: u32) -> String {
    format!(
        "RSS = anon {:.1} + file {:.1} MiB",
        mib(status_kib(pid, "RssAnon:")),
        mib(status_kib(pid, "RssFile:") + status_kib(pid, "RssShmem:"))
    )
}

/// Waits until RSS has moved by at most 256 KiB over the last 3 s (at least 3 s, at most
/// `limit`), and returns (RSS, HWM).
pub async fn stable_memory(op: &mut Operator, limit: Duration) -> (u64, u64) {
    let started = Instant::now();
    let mut window: Vec<u64> = Vec::new();
    loop {
        op.check_alive();
        let (rss, hwm) = memory(op.pid());
        window.push(rss);
        if window.len() > 15 {
            window.remove(0);
        }
        let spread = window.iter().max().unwrap() - window.iter().min().unwrap();
        if window.len() == 15 && spread <= 256 {
            return (rss, hwm);
        }
        if started.elapsed() > limit {
            eprintln!(
                "bench: RSS still moving after {limit:?} (last 3 s: {} KiB); sampling anyway",
                spread
            );
            return (rss, hwm);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

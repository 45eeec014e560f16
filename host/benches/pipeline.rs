//! `diagnose` at scale: wall time and peak memory of the release binary on generated dumps, and
//! where the time goes. `cargo bench -p sre-operator --bench pipeline`.
//!
//! For each size (default 1,000, 5,000 and 10,000 Pods; `SRE_BENCH_PODS=1000,10000` to choose),
//! a dump is generated with [`sre_e2e::synth`] (50 Pods per namespace, six planted
//! failures, one of each class), then `sre-operator diagnose --dump DIR -o json` runs as a child
//! process with the rules brain: once to warm the page cache and the compiled-plugin cache, then
//! `SRE_BENCH_RUNS` times (default 3). Wall time is the median; peak memory is the child's
//! `ru_maxrss` from `wait4` (its own high-water mark, not the bench's); the phases come from the
//! binary's own log line (`--log info`): reading the dump, loading the plugins, detection
//! (triage), the policy-filter screen and the investigations (brains, tools, patch review).
//! `--detect-only` runs once more to separate the agent's memory from the reader's.
//!
//! `SRE_BENCH_BIN=PATH` measures another build beside this one on the same dumps, runs
//! interleaved, and prints both rows and the ratios; the two `-o json` outputs must be identical
//! byte for byte but for the times of the run itself (a report's `startedAt`, `finishedAt` and
//! condition times), or the bench fails. `SRE_BENCH_KEEP=DIR` writes the dumps under DIR (`DIR/N`)
//! and keeps them, for profiling or comparing by hand.
//!
//! Targets: 1,000 Pods under 1 s (issue 9); 10,000 Pods in 0.5 s at 100 MiB peak (issue 21,
//! from 5 s and 200 MiB in issue 9). A missed target prints `MISSED` and the bench exits non-zero.
//!
//! A plain harness: criterion would be compiled by every `cargo test` for figures a median
//! describes well enough.

#[path = "common/mod.rs"]
mod common;

use common::{machine, mib};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sre_e2e::synth::{Spec, write};

/// One run of the binary.
struct Run {
    wall: Duration,
    peak_kib: u64,
    phases: Vec<(String, u64)>,
    /// The reports (`-o json`).
    stdout: Vec<u8>,
}

/// Runs the binary, waits with `wait4` for its resource usage, reads its phase timings.
fn run(binary: &Path, dump: &Path, detect_only: bool) -> Run {
    let mut command = Command::new(binary);
    command
        .args(["--log", "sre_operator::cli=info", "diagnose", "--dump"])
        .arg(dump)
        .args(["-o", "json"])
        .env_remove("SRE_OPERATOR_BRAIN")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if detect_only {
        command.arg("--detect-only");
    }
    let started = Instant::now();
    // Reaped by wait4 below, which std's Child::wait would not let us call.
    #[allow(clippy::zombie_processes)]
    let mut child = command.spawn().expect("the sre-operator binary runs");
    let stderr = child.stderr.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let output = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut bytes).map(|_| bytes)
    });
    let (status, peak_kib) = wait4(child.id() as i32);
    let wall = started.elapsed();
    let log = reader.join().unwrap();
    let stdout = output.join().unwrap().unwrap_or_default();
    assert!(status == 0, "diagnose exited with {status}:\n{log}");
    Run {
        wall,
        peak_kib,
        phases: phases(&log),
        stdout,
    }
}

/// The output with every time from `since` on (the run's own clock) masked: two runs of one
/// binary differ there and only there. The dump's own times are older and stay.
fn without_run_times(output: &[u8], since: &str) -> String {
    let text = String::from_utf8_lossy(output);
    let mut masked = String::with_capacity(text.len());
    let mut rest = &*text;
    while let Some(quote) = rest.find('"') {
        masked.push_str(&rest[..=quote]);
        rest = &rest[quote + 1..];
        let stamp = rest
            .get(..since.len())
            .filter(|s| s.as_bytes().get(10) == Some(&b'T') && *s >= since);
        if let Some(stamp) = stamp {
            masked.push_str("<run time>");
            rest = &rest[stamp.len()..];
        }
    }
    masked.push_str(rest);
    masked
}

/// What one binary measured on one dump.
struct Measured {
    median: Run,
    peak_kib: u64,
    detect_only_peak_kib: u64,
}

impl Measured {
    fn phase(&self, name: &str) -> Option<u64> {
        self.median
            .phases
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }
}

/// Warm-up, then `runs` runs of each binary, interleaved so that a change in the machine's load
/// falls on both alike; then one `--detect-only` run each.
fn measure(binaries: &[PathBuf], dump: &Path, runs: usize) -> Vec<Measured> {
    for binary in binaries {
        run(binary, dump, false); // page cache, compiled plugins
    }
    let mut samples: Vec<Vec<Run>> = binaries.iter().map(|_| Vec::new()).collect();
    for _ in 0..runs {
        for (binary, samples) in binaries.iter().zip(&mut samples) {
            samples.push(run(binary, dump, false));
        }
    }
    binaries
        .iter()
        .zip(samples)
        .map(|(binary, mut samples)| {
            let peak_kib = samples.iter().map(|r| r.peak_kib).max().unwrap_or(0);
            samples.sort_by_key(|r| r.wall);
            Measured {
                median: samples.swap_remove(samples.len() / 2),
                peak_kib,
                detect_only_peak_kib: run(binary, dump, true).peak_kib,
            }
        })
        .collect()
}

#[cfg(target_os = "linux")]
fn wait4(pid: i32) -> (i32, u64) {
    let mut status = 0;
    // SAFETY: plain syscall on our own child, with valid out-pointers.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(got, pid, "wait4 failed");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, usage.ru_maxrss as u64) // KiB on Linux
}

/// `load_ms=12` and the like from the binary's log line, escape codes removed.
fn phases(log: &str) -> Vec<(String, u64)> {
    let line = log
        .lines()
        .find(|l| l.contains("diagnosed"))
        .unwrap_or_default();
    let mut clean = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            clean.push(c);
        }
    }
    clean
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| k.ends_with("_ms"))
        .filter_map(|(k, v)| Some((k.trim_end_matches("_ms").to_string(), v.parse().ok()?)))
        .collect()
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let sizes: Vec<usize> = std::env::var("SRE_BENCH_PODS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 5_000, 10_000]);
    let runs: usize = std::env::var("SRE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let this = PathBuf::from(env!("CARGO_BIN_EXE_sre-operator"));
    let other = std::env::var_os("SRE_BENCH_BIN").map(PathBuf::from);
    let keep = std::env::var_os("SRE_BENCH_KEEP").map(PathBuf::from);
    println!("machine: {}", machine());
    println!(
        "binary:  {} (diagnose, rules brain, built-in plugins)",
        this.display()
    );
    if let Some(other) = &other {
        println!("against: {} (SRE_BENCH_BIN)", other.display());
    }
    println!();
    println!(
        "{:>7}  {:>9}  {:>8}  {:>9}  {:>9}  {:>9}  phases (ms): load / plugins / detect / screen / investigate",
        "pods", "dump", "wall", "peak", "peak -d", "gen"
    );
    let binaries: Vec<PathBuf> = other.iter().cloned().chain([this]).collect();
    // To the second, as the reports write their times.
    let since: String = k8s_openapi::jiff::Timestamp::now()
        .to_string()
        .chars()
        .take("2026-01-01T00:00:00".len())
        .collect();
    let mut results = Vec::new();
    let mut missed = Vec::new();
    for &pods in &sizes {
        let temp = tempfile::tempdir().unwrap();
        let dir = match &keep {
            Some(keep) => keep.join(pods.to_string()),
            None => temp.path().to_path_buf(),
        };
        let generated = Instant::now();
        let written = write(
            &dir,
            &Spec {
                namespaces: pods.div_ceil(50),
                pods,
                failures: 6,
                seed: 1,
            },
        )
        .unwrap();
        let gen_time = generated.elapsed();
        let measured = measure(&binaries, &dir, runs);
        for (i, m) in measured.iter().enumerate() {
            let phase = |name: &str| {
                m.phase(name)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "?".into())
            };
            let label = if binaries.len() > 1 {
                ["before", "after"][i]
            } else {
                ""
            };
            println!(
                "{:>7}  {:>6.0} MB  {:>6.2} s  {:>5.0} MiB  {:>5.0} MiB  {:>7.2} s  {} / {} / {} / {} / {}  {label}",
                written.pods,
                written.bytes as f64 / 1e6,
                m.median.wall.as_secs_f64(),
                mib(m.peak_kib),
                mib(m.detect_only_peak_kib),
                gen_time.as_secs_f64(),
                phase("load"),
                phase("plugins"),
                phase("detect"),
                phase("screen"),
                phase("investigate"),
            );
        }
        if let [before, after] = &measured[..] {
            let ratio = |b: f64, a: f64| if a > 0.0 { b / a } else { f64::NAN };
            let phase_ratio = |name: &str| match (before.phase(name), after.phase(name)) {
                (Some(b), Some(a)) => format!("{:.1}x", ratio(b as f64, a as f64)),
                _ => "?".into(),
            };
            println!(
                "{:>7}  before/after: wall {:.1}x, peak {:.1}x, load {}, detect {}, investigate {}",
                "",
                ratio(
                    before.median.wall.as_secs_f64(),
                    after.median.wall.as_secs_f64()
                ),
                ratio(before.peak_kib as f64, after.peak_kib as f64),
                phase_ratio("load"),
                phase_ratio("detect"),
                phase_ratio("investigate"),
            );
            if without_run_times(&before.median.stdout, &since)
                != without_run_times(&after.median.stdout, &since)
            {
                missed.push(format!(
                    "{pods} Pods: the reports differ between the two binaries"
                ));
            } else {
                println!(
                    "{:>7}  same reports: the -o json outputs are identical but for the run's own times ({} bytes)",
                    "",
                    after.median.stdout.len()
                );
            }
        }
        let ours = measured.last().expect("this binary was measured");
        let limit = match pods {
            1_000 => Some(Duration::from_secs(1)),
            10_000 => Some(Duration::from_millis(500)),
            _ => None,
        };
        if let Some(limit) = limit.filter(|l| ours.median.wall > *l) {
            missed.push(format!(
                "{pods} Pods took {:.2?}, over {limit:?}",
                ours.median.wall
            ));
        }
        if pods == 10_000 && mib(ours.peak_kib) > 100.0 {
            missed.push(format!(
                "10,000 Pods peaked at {:.0} MiB, over 100 MiB",
                mib(ours.peak_kib)
            ));
        }
        results.push((written.pods, ours.peak_kib));
    }
    if results.len() >= 2 {
        let (first, last) = (results[0], results[results.len() - 1]);
        let per_thousand =
            mib(last.1.saturating_sub(first.1)) / ((last.0 - first.0) as f64 / 1000.0);
        println!();
        println!(
            "memory: {:.1} MiB per 1,000 Pods above {:.0} MiB at {} Pods (peak -d: with --detect-only)",
            per_thousand,
            mib(first.1),
            first.0
        );
    }
    common::verdict(
        &missed,
        "1,000 Pods < 1 s, 10,000 Pods <= 0.5 s and <= 100 MiB",
    );
}

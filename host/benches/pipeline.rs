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
//! Targets (issue 9): 1,000 Pods under 1 s, 10,000 under 5 s, memory linear and under 200 MiB at
//! 10,000. A missed target prints `MISSED` and the bench exits non-zero.
//!
//! A plain harness: criterion would be compiled by every `cargo test` for figures a median
//! describes well enough.

#[path = "common/mod.rs"]
mod common;

use common::{machine, mib};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sre_e2e::synth::{Spec, write};

/// One run of the binary.
struct Run {
    wall: Duration,
    peak_kib: u64,
    phases: Vec<(String, u64)>,
}

/// Runs the binary, waits with `wait4` for its resource usage, reads its phase timings.
fn run(dump: &Path, detect_only: bool) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sre-operator"));
    command
        .args(["--log", "sre_operator::cli=info", "diagnose", "--dump"])
        .arg(dump)
        .args(["-o", "json"])
        .env_remove("SRE_OPERATOR_BRAIN")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if detect_only {
        command.arg("--detect-only");
    }
    let started = Instant::now();
    // Reaped by wait4 below, which std's Child::wait would not let us call.
    #[allow(clippy::zombie_processes)]
    let mut child = command.spawn().expect("the sre-operator binary runs");
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let (status, peak_kib) = wait4(child.id() as i32);
    let wall = started.elapsed();
    let log = reader.join().unwrap();
    assert!(status == 0, "diagnose exited with {status}:\n{log}");
    Run {
        wall,
        peak_kib,
        phases: phases(&log),
    }
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
    println!("machine: {}", machine());
    println!(
        "binary:  {} (diagnose, rules brain, built-in plugins)",
        env!("CARGO_BIN_EXE_sre-operator")
    );
    println!();
    println!(
        "{:>7}  {:>9}  {:>8}  {:>9}  {:>9}  {:>9}  phases (ms): load / plugins / detect / screen / investigate",
        "pods", "dump", "wall", "peak", "peak -d", "gen"
    );
    let mut results = Vec::new();
    let mut missed = Vec::new();
    for &pods in &sizes {
        let dir = tempfile::tempdir().unwrap();
        let generated = Instant::now();
        let written = write(
            dir.path(),
            &Spec {
                namespaces: pods.div_ceil(50),
                pods,
                failures: 6,
                seed: 1,
            },
        )
        .unwrap();
        let gen_time = generated.elapsed();
        run(dir.path(), false); // warm-up: page cache, compiled plugins
        let mut samples: Vec<Run> = (0..runs).map(|_| run(dir.path(), false)).collect();
        samples.sort_by_key(|r| r.wall);
        let median = &samples[samples.len() / 2];
        let peak = samples.iter().map(|r| r.peak_kib).max().unwrap_or(0);
        let detect_only = run(dir.path(), true);
        let phase = |name: &str| {
            median
                .phases
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.to_string())
                .unwrap_or_else(|| "?".into())
        };
        println!(
            "{:>7}  {:>6.0} MB  {:>6.2} s  {:>5.0} MiB  {:>5.0} MiB  {:>7.2} s  {} / {} / {} / {} / {}",
            written.pods,
            written.bytes as f64 / 1e6,
            median.wall.as_secs_f64(),
            mib(peak),
            mib(detect_only.peak_kib),
            gen_time.as_secs_f64(),
            phase("load"),
            phase("plugins"),
            phase("detect"),
            phase("screen"),
            phase("investigate"),
        );
        let limit = match pods {
            1_000 => Some(Duration::from_secs(1)),
            10_000 => Some(Duration::from_secs(5)),
            _ => None,
        };
        if let Some(limit) = limit.filter(|l| median.wall > *l) {
            missed.push(format!(
                "{pods} Pods took {:.2?}, over {limit:?}",
                median.wall
            ));
        }
        if pods == 10_000 && mib(peak) > 200.0 {
            missed.push(format!(
                "10,000 Pods peaked at {:.0} MiB, over 200 MiB",
                mib(peak)
            ));
        }
        results.push((written.pods, peak));
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
    println!();
    if missed.is_empty() {
        println!("targets met: 1,000 Pods < 1 s, 10,000 Pods < 5 s and < 200 MiB");
    } else {
        for m in &missed {
            println!("MISSED: {m}");
        }
        std::process::exit(1);
    }
}

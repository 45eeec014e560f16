//! What the benchmarks share: the machine line their figures are reported with, units, a
//! median/p99 timer, and (in [`operator`]) `sre-operator run` as a measured child process.
#![allow(dead_code)] // each bench uses a part

pub mod operator;

use std::time::{Duration, Instant};

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Cores, CPU model, memory and the load at start: figures are only comparable on one machine.
pub fn machine() -> String {
    let first = |file: &str, prefix: &str| {
        std::fs::read_to_string(file)
            .ok()?
            .lines()
            .find(|l| l.starts_with(prefix))
            .map(str::to_string)
    };
    let cpu = first("/proc/cpuinfo", "model name")
        .and_then(|l| l.split_once(':').map(|(_, m)| m.trim().to_string()))
        .unwrap_or_else(|| std::env::consts::ARCH.into());
    let memory = first("/proc/meminfo", "MemTotal")
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|kib| format!(", {:.0} GiB", kib as f64 / (1 << 20) as f64))
        .unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .map(|l| format!(", load {l} at start"))
        .unwrap_or_default();
    format!(
        "{} cores, {cpu}{memory}{load}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    )
}

/// Runs `f` a tenth of `iterations` to warm up, then `iterations` times; prints the median and
/// p99 under `label` and returns the median. What `f` returns is dropped after its sample's clock
/// has stopped: a loaded plugin's unloading is not part of its load.
pub fn measure<T>(label: &str, iterations: usize, mut f: impl FnMut() -> T) -> Duration {
    for _ in 0..iterations.div_ceil(10) {
        f();
    }
    let mut samples: Vec<Duration> = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            let made = f();
            let took = start.elapsed();
            drop(made);
            took
        })
        .collect();
    samples.sort();
    let median = samples[samples.len() / 2];
    let p99 = samples[(samples.len() * 99 / 100).min(samples.len() - 1)];
    println!("{label:<62} median {median:>10.1?}  p99 {p99:>10.1?}  (n={iterations})");
    median
}

/// The verdict every bench ends with: `met` when nothing was missed, else one `MISSED` line per
/// miss and a non-zero exit (after every figure has been printed).
pub fn verdict(missed: &[String], met: &str) {
    println!();
    if missed.is_empty() {
        println!("targets met: {met}");
    } else {
        for m in missed {
            println!("MISSED: {m}");
        }
        std::process::exit(1);
    }
}

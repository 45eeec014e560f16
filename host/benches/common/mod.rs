//! What the benchmarks share: the machine line their figures are reported with, and units.

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

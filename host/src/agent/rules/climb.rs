//! Memory an application reports about itself, read from its log: the figures it prints
//! periodically (`"heap_inuse_mb":412`, `rss=512MB`, `heapUsed: 380123456`, Go's goroutine count)
//! and the JVM's heap after each collection (`GC(12) Pause Young ... 812M->790M(1024M)`). A figure
//! that climbs steadily through a long run until the OOM kill is what a leak looks like when no
//! Prometheus has the working set.
//!
//! Memory that climbs along with a figure of load the same log prints (open connections,
//! sessions, queued work) follows the load: that is no leak, and no climb is reported.
//!
//! The log is the tenant's: figures are only compared with each other and quoted as numbers
//! under a key of at most [`MAX_KEY`] word characters, never used as a size or a patch value.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

/// Fewest samples of one figure that make a trend.
const MIN_SAMPLES: usize = 4;
/// The last sample is at least this many times the first.
const MIN_GROWTH: f64 = 1.5;
/// Share of steps that must rise; the rest may hold or dip a little (a collection, a quiet hour).
const MIN_RISING_SHARE: f64 = 0.75;
/// The largest dip between two samples, as a share of the highest sample before it: a larger
/// one is memory given back, not a leak.
const MAX_DIP: f64 = 0.1;
/// Longest key quoted.
const MAX_KEY: usize = 40;

/// A figure that climbs steadily through the log.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Climb {
    /// The key as the application logs it (`heap_inuse_mb`), or `heap after GC`.
    pub key: String,
    /// The first and last figures as logged (`61`, `210.5MB`).
    pub first: String,
    pub last: String,
    pub samples: usize,
    /// Whether the figure counts goroutines rather than memory.
    pub goroutines: bool,
}

impl Climb {
    /// `heap_inuse_mb 61 → 561 over 10 samples`.
    pub fn describe(&self) -> String {
        format!(
            "{} {} → {} over {} samples",
            self.key, self.first, self.last, self.samples
        )
    }
}

/// `key: 123`, `"key":123`, `key=123MB`, `memory usage: 512 MB`: a key (one or two words) naming memory or goroutines, then its number. A key
/// naming a limit, a maximum or a total is a setting, not a use.
static FIGURE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)(?:^|[^\w.])"?(?P<prefix>[a-z][a-z0-9_.]{0,30} )?(?P<key>[a-z][a-z0-9_.]{0,60})"?\s*[:=]\s*"?(?P<figure>(?P<value>\d+(?:\.\d+)?)(?P<unit>\s?(?:[kmgt]i?b?|bytes?)\b)?)"#,
    )
    .expect("a valid pattern")
});
/// The JVM's `before->after(committed)` heap figures of one collection.
static GC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\bGC\b.*?\b\d+(?:\.\d+)?[KMG]->(?P<figure>(?P<after>\d+(?:\.\d+)?)(?P<unit>[KMG]))\(\d+(?:\.\d+)?[KMG]\)")
        .expect("a valid pattern")
});

/// Words of keys that count load rather than memory: memory climbing with one of these follows
/// the load. (Not requests: a running total of requests climbs in every log.)
const LOAD: &[&str] = &[
    "conn",
    "session",
    "socket",
    "client",
    "user",
    "inflight",
    "in_flight",
    "queue",
    "active",
];

fn load_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    !lower.contains("total") && LOAD.iter().any(|w| lower.contains(w))
}

fn memory_key(key: &str) -> Option<bool> {
    let lower = key.to_ascii_lowercase();
    if [
        "limit",
        "max",
        "total",
        "capacity",
        "free",
        "avail",
        "request",
        "size_hint",
    ]
    .iter()
    .any(|w| lower.contains(w))
    {
        return None;
    }
    if lower.contains("goroutine") {
        return Some(true);
    }
    [
        "heap",
        "rss",
        "mem",
        "resident",
        "working_set",
        "workingset",
    ]
    .iter()
    .any(|w| lower.contains(w))
    .then_some(false)
}

fn scale(unit: &str) -> f64 {
    match unit.trim().chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('k') => 1024.0,
        Some('m') => 1024.0 * 1024.0,
        Some('g') => 1024.0 * 1024.0 * 1024.0,
        Some('t') => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => 1.0,
    }
}

/// The figure of `log` that climbs steadily, if one does: memory before goroutines, then the one
/// with the most samples.
pub(super) fn memory_climb(log: &str) -> Option<Climb> {
    // key → its samples in log order: the figure in one unit (a figure logged with a unit is
    // scaled) and as logged
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    let mut load: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for line in log.lines() {
        if let Some(c) = GC.captures(line) {
            let value: f64 = c["after"].parse().unwrap_or(0.0);
            series
                .entry("heap after GC".into())
                .or_default()
                .samples
                .push((value * scale(&c["unit"]), c["figure"].to_string()));
            continue;
        }
        for c in FIGURE.captures_iter(line) {
            // `stats rss=1`: the last word names the figure; `memory usage: 1`: both words do.
            let named = c.name("key").map_or(0..0, |m| m.range());
            let last = &line[named.clone()];
            let key = match c.name("prefix") {
                Some(prefix) if memory_key(last).is_none() && !load_key(last) => {
                    &line[prefix.start()..named.end]
                }
                _ => last,
            };
            if key.len() > MAX_KEY {
                continue;
            }
            let value: f64 = c["value"].parse().unwrap_or(0.0);
            if load_key(key) {
                load.entry(key).or_default().push(value);
                continue;
            }
            let Some(goroutines) = memory_key(key) else {
                continue;
            };
            let unit = c.name("unit").map_or("", |u| u.as_str());
            let entry = series.entry(key.to_string()).or_default();
            entry.goroutines = goroutines;
            entry
                .samples
                .push((value * scale(unit), c["figure"].trim().to_string()));
        }
    }
    let load_grows = load
        .values()
        .any(|v| v.len() >= MIN_SAMPLES && v[0] > 0.0 && v[v.len() - 1] >= MIN_GROWTH * v[0]);
    if load_grows {
        return None;
    }
    series
        .into_iter()
        .filter_map(|(key, s)| {
            let values: Vec<f64> = s.samples.iter().map(|(v, _)| *v).collect();
            let (first, last) = (s.samples.first()?, s.samples.last()?);
            climbs(&values).then(|| Climb {
                first: first.1.clone(),
                last: last.1.clone(),
                samples: values.len(),
                goroutines: s.goroutines,
                key,
            })
        })
        .max_by_key(|c| (!c.goroutines, c.samples))
}

/// One key's samples: each figure scaled to one unit, and as logged.
#[derive(Default)]
struct Series {
    goroutines: bool,
    samples: Vec<(f64, String)>,
}

/// Whether `values` climb steadily: enough samples, most steps rising, no large dip, and the
/// last well above the first.
fn climbs(values: &[f64]) -> bool {
    if values.len() < MIN_SAMPLES || values[0] <= 0.0 {
        return false;
    }
    let mut rising = 0;
    let mut highest = values[0];
    for pair in values.windows(2) {
        if pair[1] > pair[0] {
            rising += 1;
        }
        if pair[1] < highest * (1.0 - MAX_DIP) {
            return false;
        }
        highest = highest.max(pair[1]);
    }
    let steps = (values.len() - 1) as f64;
    rising as f64 >= MIN_RISING_SHARE * steps && values[values.len() - 1] >= MIN_GROWTH * values[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_runtime_stats_in_json_climb() {
        let log = r#"{"level":"info","msg":"gateway starting","gomemlimit":"900MiB"}
{"msg":"runtime stats","heap_inuse_mb":61,"goroutines":412,"open_websockets":162}
{"msg":"runtime stats","heap_inuse_mb":129,"goroutines":7250,"open_websockets":174}
{"msg":"runtime stats","heap_inuse_mb":200,"goroutines":14355,"open_websockets":171}
{"msg":"runtime stats","heap_inuse_mb":267,"goroutines":21507,"open_websockets":175}
{"level":"warn","msg":"heap close to GOMEMLIMIT","heap_inuse_mb":339}"#;
        let climb = memory_climb(log).expect("a climb");
        assert_eq!(climb.key, "heap_inuse_mb");
        assert_eq!(
            (climb.first.as_str(), climb.last.as_str(), climb.samples),
            ("61", "339", 5)
        );
        assert!(!climb.goroutines);
        assert_eq!(climb.describe(), "heap_inuse_mb 61 → 339 over 5 samples");
    }

    #[test]
    fn two_word_keys_and_the_old_jvm_gc_lines() {
        let log = "memory usage: 120.5 MB\nmemory usage: 180 MB\nmemory usage: 240.2 MB\nmemory usage: 330 MB\n";
        let climb = memory_climb(log).expect("a climb");
        assert_eq!((climb.key.as_str(), climb.samples), ("memory usage", 4));
        let log = "\
[GC (Allocation Failure)  524288K->212345K(1006592K), 0.0456 secs]
[GC (Allocation Failure)  624288K->312345K(1006592K), 0.0456 secs]
[GC (Allocation Failure)  724288K->412345K(1006592K), 0.0456 secs]
[Full GC (Ergonomics)  924288K->612345K(1006592K), 0.9 secs]
";
        assert_eq!(memory_climb(log).expect("a climb").key, "heap after GC");
    }

    #[test]
    fn goroutines_alone_are_a_climb_too() {
        let log = "stats goroutines=400\nstats goroutines=900\nstats goroutines=1500\nstats goroutines=2600\n";
        let climb = memory_climb(log).expect("a climb");
        assert!(climb.goroutines);
        assert_eq!(climb.key, "goroutines");
    }

    #[test]
    fn key_value_lines_with_units_and_node_memory_usage() {
        let log = "mem rss=210.5MB heapUsed=150MB\nmem rss=260MB heapUsed=190MB\nmem rss=330MB heapUsed=250MB\nmem rss=420MB heapUsed=330MB\n";
        let climb = memory_climb(log).expect("a climb");
        // Both climb with four samples; either is quoted, as logged.
        assert!(
            ["rss", "heapUsed"].contains(&climb.key.as_str()),
            "{climb:?}"
        );
        assert_eq!(climb.samples, 4);
        if climb.key == "rss" {
            assert_eq!(climb.describe(), "rss 210.5MB → 420MB over 4 samples");
        }
    }

    #[test]
    fn the_jvm_heap_after_each_collection() {
        let log = "\
[2026-11-21T01:00:01.1+0000][info][gc] GC(100) Pause Young (Normal) (G1 Evacuation Pause) 400M->210M(1024M) 9.1ms
[2026-11-21T02:00:01.1+0000][info][gc] GC(220) Pause Young (Normal) (G1 Evacuation Pause) 520M->330M(1024M) 9.8ms
[2026-11-21T03:00:01.1+0000][info][gc] GC(340) Pause Young (Normal) (G1 Evacuation Pause) 640M->470M(1024M) 11.0ms
[2026-11-21T04:00:01.1+0000][info][gc] GC(460) Pause Full (G1 Compaction Pause) 900M->610M(1024M) 180.2ms
";
        let climb = memory_climb(log).expect("a climb");
        assert_eq!(climb.key, "heap after GC");
        assert_eq!(climb.samples, 4);
        assert_eq!(climb.describe(), "heap after GC 210M → 610M over 4 samples");
    }

    #[test]
    fn a_flat_figure_a_sawtooth_a_short_series_and_settings_are_no_climb() {
        let flat = "heap_mb=300\nheap_mb=310\nheap_mb=305\nheap_mb=312\nheap_mb=309\n";
        assert_eq!(memory_climb(flat), None);
        // Memory given back between batches: a dip of more than a tenth.
        let sawtooth = "rss=100\nrss=200\nrss=300\nrss=120\nrss=220\nrss=320\n";
        assert_eq!(memory_climb(sawtooth), None);
        assert_eq!(memory_climb("rss=100\nrss=200\nrss=400\n"), None);
        let settings = "memory_limit=100\nmemory_limit=200\nmemory_limit=300\nmemory_limit=400\n";
        assert_eq!(memory_climb(settings), None);
        let unrelated = "requests=100\nrequests=200\nrequests=300\nrequests=400\n";
        assert_eq!(memory_climb(unrelated), None);
    }

    #[test]
    fn memory_that_follows_the_load_is_no_climb() {
        let log = "stats heap_mb=200 open_connections=1000\nstats heap_mb=300 open_connections=1600\nstats heap_mb=400 open_connections=2300\nstats heap_mb=500 open_connections=2900\n";
        assert_eq!(memory_climb(log), None);
        // A running total climbs in every log: it is not load.
        let log = "heap_mb=200 connections_total=1000\nheap_mb=300 connections_total=1600\nheap_mb=400 connections_total=2300\nheap_mb=500 connections_total=2900\n";
        assert_eq!(memory_climb(log).unwrap().key, "heap_mb");
    }

    #[test]
    fn a_tenants_key_is_quoted_only_when_short_and_a_word() {
        let long = "a".repeat(60);
        let log: String = (1..=5)
            .map(|i| format!("{long}_heap={}\n", i * 100))
            .collect();
        assert_eq!(memory_climb(&log), None);
        // A key is letters, digits, `_` and `.`: nothing else of the line comes with it.
        let log = "\u{1b}[0m heap\u{7}=100\nx \u{1b}]heap=200\nheap=300\nheap=400\nheap=500\n";
        let climb = memory_climb(log).unwrap();
        assert_eq!((climb.key.as_str(), climb.samples), ("heap", 4));
    }
}

//! What the tools make of a series: a summary instead of raw points (min, max, last, p95), the
//! runs of a container between restarts, and whether its memory climbs like a leak.

use serde::Serialize;
use tool_shapes::{Leak, Lifetime};

/// A series summarised.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub min: f64,
    pub max: f64,
    pub last: f64,
    pub p95: f64,
    pub mean: f64,
    pub points: usize,
}

pub fn summarise(points: &[(f64, f64)]) -> Option<Summary> {
    let last = points.last()?.1;
    let mut values: Vec<f64> = points
        .iter()
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    // Nearest rank.
    let rank = ((0.95 * values.len() as f64).ceil() as usize).clamp(1, values.len());
    Some(Summary {
        min: values[0],
        max: values[values.len() - 1],
        last,
        p95: values[rank - 1],
        mean: values.iter().sum::<f64>() / values.len() as f64,
        points: points.len(),
    })
}

/// A drop below this share of the previous point is a restart (the new process starts small).
const RESTART_DROP: f64 = 0.7;
/// Points a run needs before its trend says anything.
const MIN_POINTS: usize = 4;
/// How straight a climb must be to count as steady.
const MIN_R_SQUARED: f64 = 0.8;
/// How much a run must grow, as a share of its peak, to count as climbing at all.
const MIN_GROWTH: f64 = 0.2;

/// The runs of a container in `points` (time in seconds, bytes), split where the working set drops.
pub fn lifetimes(points: &[(f64, f64)]) -> Vec<Lifetime> {
    let mut runs: Vec<&[(f64, f64)]> = Vec::new();
    let mut start = 0;
    for i in 1..points.len() {
        if points[i].1 < points[i - 1].1 * RESTART_DROP {
            runs.push(&points[start..i]);
            start = i;
        }
    }
    if start < points.len() {
        runs.push(&points[start..]);
    }
    runs.into_iter().map(fit).collect()
}

fn fit(run: &[(f64, f64)]) -> Lifetime {
    let n = run.len() as f64;
    let mean_t = run.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_v = run.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut stt, mut stv, mut svv) = (0.0, 0.0, 0.0);
    for (t, v) in run {
        stt += (t - mean_t) * (t - mean_t);
        stv += (t - mean_t) * (v - mean_v);
        svv += (v - mean_v) * (v - mean_v);
    }
    let slope = if stt > 0.0 { stv / stt } else { 0.0 };
    let r_squared = if stt > 0.0 && svv > 0.0 {
        (stv * stv) / (stt * svv)
    } else {
        0.0
    };
    Lifetime {
        start: run[0].0,
        end: run[run.len() - 1].0,
        start_bytes: run[0].1,
        peak_bytes: run.iter().map(|p| p.1).fold(0.0, f64::max),
        points: run.len(),
        slope_bytes_per_minute: slope * 60.0,
        r_squared,
    }
}

/// A leak: every run long enough to judge climbs steadily and substantially.
pub fn leak(runs: &[Lifetime]) -> Option<Leak> {
    let judged: Vec<&Lifetime> = runs.iter().filter(|r| r.points >= MIN_POINTS).collect();
    if judged.is_empty() {
        return None;
    }
    let mut climbing: Vec<f64> = judged
        .iter()
        .filter(|r| {
            r.slope_bytes_per_minute > 0.0
                && r.r_squared >= MIN_R_SQUARED
                && r.peak_bytes - r.start_bytes >= MIN_GROWTH * r.peak_bytes
        })
        .map(|r| r.slope_bytes_per_minute)
        .collect();
    if climbing.len() < judged.len() {
        return None;
    }
    climbing.sort_by(f64::total_cmp);
    Some(Leak {
        slope_bytes_per_minute: climbing[climbing.len() / 2],
        climbing: climbing.len(),
        judged: judged.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: f64 = 1048576.0;

    #[test]
    fn summaries_give_min_max_last_and_p95() {
        let points: Vec<(f64, f64)> = (1..=100).map(|i| (i as f64, i as f64)).collect();
        let s = summarise(&points).unwrap();
        assert_eq!(
            (s.min, s.max, s.last, s.p95, s.points),
            (1.0, 100.0, 100.0, 95.0, 100)
        );
        assert_eq!(summarise(&[]), None);
    }

    #[test]
    fn a_climb_to_the_kill_in_every_run_is_a_leak_and_a_plateau_is_not() {
        // Three runs of 10 minutes, each climbing 10Mi a minute from 40Mi to the 128Mi kill.
        let mut points = Vec::new();
        for run in 0..3 {
            for m in 0..10 {
                let t = (run * 600 + m * 60) as f64;
                points.push((t, 40.0 * MI + m as f64 * 10.0 * MI));
            }
        }
        let runs = lifetimes(&points);
        assert_eq!(runs.len(), 3);
        let found = leak(&runs).expect("a leak");
        assert!(
            (found.slope_bytes_per_minute - 10.0 * MI).abs() < 1.0,
            "{found:?}"
        );
        assert_eq!((found.climbing, found.judged), (3, 3));

        // Up at start then flat (a cache warming), killed by a spike: no leak.
        let mut points = Vec::new();
        for run in 0..3 {
            for m in 0..10 {
                let t = (run * 600 + m * 60) as f64;
                let v = if m == 0 {
                    40.0 * MI
                } else {
                    100.0 * MI + (m % 2) as f64 * MI
                };
                points.push((t, v));
            }
        }
        assert_eq!(leak(&lifetimes(&points)), None);
        // Too few points to judge.
        assert_eq!(leak(&lifetimes(&[(0.0, MI), (60.0, 2.0 * MI)])), None);
    }
}

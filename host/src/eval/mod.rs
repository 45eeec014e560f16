//! Measuring diagnosis quality: run scenarios (a cluster dump and what a correct diagnosis says)
//! through the same pipeline as `diagnose` and score every report: failure class, root cause,
//! patch, phase, and the rest (how many reports, secrets that must not leak). `sre-operator eval
//! tests/scenarios` prints the table; `--brain openai --model M` scores a model the same way.

pub mod scenario;
pub mod score;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;
use serde_json::json;

use crate::cluster::DumpCluster;
use crate::crd::DiagnosticReport;
use crate::pipeline::{self, Engine};
use crate::policy::{PolicySet, default_policy, load_policy_files};
pub use scenario::{Expected, MUST_PASS, Scenario, load_scenarios};
pub use score::{Check, Score, score};

/// One scenario's result.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScenarioResult {
    pub name: String,
    pub tags: Vec<String>,
    pub must_pass: bool,
    pub pass: bool,
    pub checks: Score,
    /// Reports the dump yielded.
    pub reports: usize,
    /// Reasoning steps and tool calls over all the scenario's reports.
    pub steps: usize,
    pub tool_calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Wall time of the whole pipeline, reading the dump included.
    #[serde(serialize_with = "millis")]
    pub time: Duration,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e4).round() / 10.0)
}

/// A whole run.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SuiteResult {
    pub brain: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub scenarios: Vec<ScenarioResult>,
}

impl SuiteResult {
    /// The must-pass scenarios that failed: any makes `eval` exit non-zero.
    pub fn must_pass_failures(&self) -> Vec<&ScenarioResult> {
        self.scenarios
            .iter()
            .filter(|s| s.must_pass && !s.pass)
            .collect()
    }

    pub fn passed(&self) -> usize {
        self.scenarios.iter().filter(|s| s.pass).count()
    }
}

async fn diagnose(scenario: &Scenario, engine: &Engine) -> Result<Vec<DiagnosticReport>> {
    let cluster = Arc::new(DumpCluster::load(scenario.dump())?);
    let policies = match scenario.policy_file() {
        Some(file) => load_policy_files(&[file])?,
        None => vec![default_policy()],
    };
    let policy_set = PolicySet::compile(&policies)?;
    let outcome = pipeline::run(cluster, &policies, &policy_set, Some(engine)).await?;
    // A skipped report counts as a report without a status: the phase check fails on it.
    let mut reports = outcome.reports;
    reports.extend(outcome.skipped.into_iter().map(|(r, _)| r));
    Ok(reports)
}

/// Runs one scenario through the pipeline and scores it.
pub async fn run_scenario(scenario: &Scenario, engine: &Engine) -> ScenarioResult {
    let started = Instant::now();
    let outcome = diagnose(scenario, engine).await;
    let time = started.elapsed();
    let expected = &scenario.expected;
    let (checks, reports) = match outcome {
        Ok(reports) => (score(expected, &reports), reports),
        Err(e) => {
            let error = Check {
                pass: false,
                detail: Some(format!("the pipeline failed: {e:#}")),
            };
            (
                Score {
                    class: error.clone(),
                    root_cause: error.clone(),
                    patch: error.clone(),
                    phase: error.clone(),
                    other: error,
                },
                Vec::new(),
            )
        }
    };
    let statuses = || reports.iter().filter_map(|r| r.status.as_ref());
    let brains = || statuses().filter_map(|s| s.brain.as_ref());
    ScenarioResult {
        name: scenario.name.clone(),
        tags: expected.tags.clone(),
        must_pass: expected.must_pass(),
        pass: checks.passed(),
        reports: reports.len(),
        steps: statuses().map(|s| s.reasoning_chain.len()).sum(),
        tool_calls: brains().map(|b| u64::from(b.steps)).sum(),
        prompt_tokens: brains().map(|b| b.prompt_tokens).sum(),
        completion_tokens: brains().map(|b| b.completion_tokens).sum(),
        checks,
        time,
    }
}

/// Runs every scenario, one after the other (so that times are comparable).
pub async fn run(scenarios: &[Scenario], engine: &Engine) -> SuiteResult {
    let mut results = Vec::new();
    for scenario in scenarios {
        results.push(run_scenario(scenario, engine).await);
    }
    SuiteResult {
        brain: engine.brain.kind().to_string(),
        model: engine.brain.model(),
        scenarios: results,
    }
}

fn format_time(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.0}ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// The score table: a row per scenario, what failed and why, and the totals.
pub fn write_table(out: &mut impl Write, suite: &SuiteResult) -> std::io::Result<()> {
    let headers = [
        "SCENARIO", "TAGS", "CLASS", "CAUSE", "PATCH", "PHASE", "OTHER", "STEPS", "TOOLS",
        "TOKENS", "TIME", "RESULT",
    ];
    let mark = |c: &Check| if c.pass { "ok" } else { "FAIL" }.to_string();
    let rows: Vec<Vec<String>> = suite
        .scenarios
        .iter()
        .map(|s| {
            let mut row = vec![s.name.clone(), s.tags.join(",")];
            row.extend(s.checks.checks().iter().map(|(_, c)| mark(c)));
            row.extend([
                s.steps.to_string(),
                s.tool_calls.to_string(),
                (s.prompt_tokens + s.completion_tokens).to_string(),
                format_time(s.time),
                match (s.pass, s.must_pass) {
                    (true, _) => "pass".to_string(),
                    (false, true) => "FAIL (must-pass)".to_string(),
                    (false, false) => "fail".to_string(),
                },
            ]);
            row
        })
        .collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([headers[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if (7..=10).contains(&i) {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let model = suite
        .model
        .as_deref()
        .map(|m| format!(" ({m})"))
        .unwrap_or_default();
    writeln!(out, "brain: {}{model}", suite.brain)?;
    writeln!(
        out,
        "{}",
        line(headers.iter().map(|h| h.to_string()).collect())
    )?;
    for row in rows {
        writeln!(out, "{}", line(row))?;
    }

    let failed: Vec<&ScenarioResult> = suite.scenarios.iter().filter(|s| !s.pass).collect();
    if !failed.is_empty() {
        writeln!(out)?;
        for s in failed {
            for (name, check) in s.checks.checks() {
                if let Some(detail) = check.detail.as_deref().filter(|_| !check.pass) {
                    writeln!(out, "{}: {name}: {detail}", s.name)?;
                }
            }
        }
    }

    let n = suite.scenarios.len();
    let count = |pick: fn(&Score) -> &Check| {
        suite
            .scenarios
            .iter()
            .filter(|s| pick(&s.checks).pass)
            .count()
    };
    let tokens: u64 = suite
        .scenarios
        .iter()
        .map(|s| s.prompt_tokens + s.completion_tokens)
        .sum();
    let must_pass = suite.scenarios.iter().filter(|s| s.must_pass).count();
    writeln!(out)?;
    writeln!(
        out,
        "{n} scenarios: {} passed, {} failed; must-pass: {} of {must_pass} passed",
        suite.passed(),
        n - suite.passed(),
        must_pass - suite.must_pass_failures().len()
    )?;
    writeln!(
        out,
        "checks passed: class {}/{n}, root cause {}/{n}, patch {}/{n}, phase {}/{n}, other {}/{n}",
        count(|s| &s.class),
        count(|s| &s.root_cause),
        count(|s| &s.patch),
        count(|s| &s.phase),
        count(|s| &s.other),
    )?;
    writeln!(
        out,
        "cost: {} steps, {} tool calls, {tokens} tokens, {}",
        suite.scenarios.iter().map(|s| s.steps).sum::<usize>(),
        suite.scenarios.iter().map(|s| s.tool_calls).sum::<u64>(),
        format_time(suite.scenarios.iter().map(|s| s.time).sum()),
    )?;
    Ok(())
}

/// The results as JSON, with totals.
pub fn to_json(suite: &SuiteResult) -> serde_json::Value {
    let mut value = serde_json::to_value(suite).unwrap_or_default();
    let n = suite.scenarios.len();
    value["totals"] = json!({
        "scenarios": n,
        "passed": suite.passed(),
        "failed": n - suite.passed(),
        "mustPassFailed": suite.must_pass_failures().iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        "steps": suite.scenarios.iter().map(|s| s.steps).sum::<usize>(),
        "toolCalls": suite.scenarios.iter().map(|s| s.tool_calls).sum::<u64>(),
        "promptTokens": suite.scenarios.iter().map(|s| s.prompt_tokens).sum::<u64>(),
        "completionTokens": suite.scenarios.iter().map(|s| s.completion_tokens).sum::<u64>(),
        "timeMs": (suite.scenarios.iter().map(|s| s.time).sum::<Duration>().as_secs_f64() * 1e4).round() / 10.0,
    });
    value
}

//! The scenario format: `NAME/dump/` (a `kubectl cluster-info dump --output-directory` folder),
//! `NAME/expected.yaml` (what a correct diagnosis says) and optionally `NAME/policy.yaml`
//! (DebugPolicies; every failing Pod is diagnosed without one).
//!
//! ```yaml
//! description: critical-app cannot reach redis:6379; the Service is called redis-master
//! pod: {namespace: default, namePrefix: critical-app-}   # or name: for one exact Pod
//! class: CrashLoopBackOff
//! reason: Error                      # optional: spec.failure.reason
//! rootCause:                         # each must appear in status.findings.rootCause
//!   - redis:6379                     #   a word or phrase (case-insensitive)
//!   - regex: 'no Service (named )?redis\b'
//! patch:                             # these operations must appear in the suggested patch,
//!   target: {kind: Deployment, name: critical-app}      # and it must pass review
//!   operations:
//!     - {op: test, path: /spec/template/spec/containers/0/env/0/value, value: redis}
//!     - {op: replace, path: /spec/template/spec/containers/0/env/0/value, value: redis-master}
//!     # a quantity may be bounded instead: {op: replace, path: ..., atLeast: 768Mi}
//!     # or several values allowed: {op: replace, path: ..., oneOf: [8080, http]}
//!   exact: false                     # true: no other operations either
//! # phase: NoFix                     # instead of patch: no patch may be offered for approval
//! reports: 1                         # optional: how many reports the whole dump must yield
//! mustNotContain: [hunter2]          # optional: text that must appear in no report
//! tags: [must-pass, easy]
//! ```

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::crd::{FailureClass, PatchOp, Phase};

/// The tag of scenarios that must pass: `eval` exits non-zero when one fails.
pub const MUST_PASS: &str = "must-pass";

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Expected {
    #[serde(default)]
    pub description: String,
    pub pod: PodMatch,
    pub class: FailureClass,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub root_cause: Vec<Pattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<PatchExpectation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reports: Option<usize>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_not_contain: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// The Pod whose report is scored.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodMatch {
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
}

impl PodMatch {
    pub fn matches(&self, namespace: &str, name: &str) -> bool {
        namespace == self.namespace
            && self.name.as_deref().is_none_or(|n| n == name)
            && self
                .name_prefix
                .as_deref()
                .is_none_or(|p| name.starts_with(p))
    }
}

impl std::fmt::Display for PodMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.name, &self.name_prefix) {
            (Some(name), _) => write!(f, "{}/{name}", self.namespace),
            (None, Some(prefix)) => write!(f, "{}/{prefix}*", self.namespace),
            (None, None) => write!(f, "{}/*", self.namespace),
        }
    }
}

/// A word or phrase (matched without regard to case), or a regular expression.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Pattern {
    Text(String),
    Regex { regex: String },
}

impl Pattern {
    pub fn is_match(&self, text: &str) -> Result<bool> {
        Ok(match self {
            Pattern::Text(t) => text.to_lowercase().contains(&t.to_lowercase()),
            Pattern::Regex { regex } => regex::Regex::new(regex)
                .with_context(|| format!("invalid regex {regex:?}"))?
                .is_match(text),
        })
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pattern::Text(t) => write!(f, "{t:?}"),
            Pattern::Regex { regex } => write!(f, "/{regex}/"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchExpectation {
    /// The patched object; the failing Pod's workload when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetMatch>,
    pub operations: Vec<OpExpectation>,
    /// No operations beyond these.
    #[serde(default)]
    pub exact: bool,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetMatch {
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpExpectation {
    pub op: PatchOp,
    pub path: String,
    /// The exact value (JSON equality: `8080` is not `"8080"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// For a Kubernetes quantity: any value at least this large (`768Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_least: Option<String>,
    /// Any of these values (when several fixes are equally right).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
}

impl std::fmt::Display for OpExpectation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = format!("{:?}", self.op).to_lowercase();
        match (&self.value, &self.at_least, &self.one_of) {
            (_, Some(min), _) => write!(f, "{op} {} >= {min}", self.path),
            (Some(v), None, _) => write!(f, "{op} {} = {v}", self.path),
            (None, None, Some(values)) => {
                let values: Vec<String> = values.iter().map(Value::to_string).collect();
                write!(f, "{op} {} = one of {}", self.path, values.join(" | "))
            }
            (None, None, None) => write!(f, "{op} {}", self.path),
        }
    }
}

impl Expected {
    pub fn parse(text: &str) -> Result<Expected> {
        let expected: Expected = serde_yaml::from_str(text)?;
        expected.validate()?;
        Ok(expected)
    }

    fn validate(&self) -> Result<()> {
        if self.pod.name.is_none() && self.pod.name_prefix.is_none() {
            bail!("pod needs a name or a namePrefix");
        }
        match (&self.patch, self.phase) {
            (None, None) => bail!("give either patch: (the operations a fix needs) or phase:"),
            (Some(_), Some(phase)) if phase != Phase::AwaitingApproval => {
                bail!("a scenario with patch: expects phase AwaitingApproval, not {phase:?}")
            }
            _ => {}
        }
        if let Some(patch) = &self.patch {
            if patch.operations.is_empty() {
                bail!("patch.operations is empty");
            }
            for op in &patch.operations {
                let given = [
                    op.value.is_some(),
                    op.at_least.is_some(),
                    op.one_of.is_some(),
                ];
                if given.iter().filter(|g| **g).count() > 1 {
                    bail!("{}: give one of value, atLeast and oneOf", op.path);
                }
            }
        }
        for pattern in &self.root_cause {
            pattern.is_match("")?;
        }
        Ok(())
    }

    /// The phase a correct report ends in.
    pub fn expected_phase(&self) -> Phase {
        self.phase.unwrap_or(Phase::AwaitingApproval)
    }

    pub fn must_pass(&self) -> bool {
        self.tags.iter().any(|t| t == MUST_PASS)
    }
}

/// One scenario on disk.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub dir: PathBuf,
    pub expected: Expected,
}

impl Scenario {
    pub fn load(dir: &Path) -> Result<Scenario> {
        let path = dir.join("expected.yaml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let expected = Expected::parse(&text).with_context(|| format!("{}", path.display()))?;
        if !dir.join("dump").is_dir() {
            bail!("{}: no dump/ folder beside expected.yaml", dir.display());
        }
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        Ok(Scenario {
            name,
            dir: dir.to_path_buf(),
            expected,
        })
    }

    pub fn dump(&self) -> PathBuf {
        self.dir.join("dump")
    }

    /// `policy.yaml` beside the dump, when the scenario has one.
    pub fn policy_file(&self) -> Option<PathBuf> {
        Some(self.dir.join("policy.yaml")).filter(|p| p.is_file())
    }
}

/// Every scenario under `dir` (each sub-folder with an `expected.yaml`), by name; or `dir` itself
/// when it is one scenario.
pub fn load_scenarios(dir: &Path) -> Result<Vec<Scenario>> {
    if dir.join("expected.yaml").is_file() {
        return Ok(vec![Scenario::load(dir)?]);
    }
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("expected.yaml").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        bail!(
            "{} holds no scenario (a folder with expected.yaml and dump/)",
            dir.display()
        );
    }
    dirs.iter().map(|d| Scenario::load(d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape() {
        let e = Expected::parse(
            r#"
pod: {namespace: default, namePrefix: critical-app-}
class: CrashLoopBackOff
rootCause: [redis:6379, {regex: 'no Service (named )?redis\b'}]
patch:
  target: {kind: Deployment, name: critical-app}
  operations:
    - {op: test, path: /a, value: redis}
    - {op: replace, path: /b, atLeast: 768Mi}
mustNotContain: [hunter2]
tags: [must-pass]
"#,
        )
        .unwrap();
        assert!(e.must_pass());
        assert_eq!(e.expected_phase(), Phase::AwaitingApproval);
        assert!(e.pod.matches("default", "critical-app-7d4b9c6f5-h8x2m"));
        assert!(!e.pod.matches("prod", "critical-app-7d4b9c6f5-h8x2m"));
        assert!(
            e.root_cause[1]
                .is_match("has no Service named redis;")
                .unwrap()
        );
        let e = Expected::parse("pod: {namespace: a, name: b}\nclass: OOMKilled\nphase: NoFix\n")
            .unwrap();
        assert_eq!(e.expected_phase(), Phase::NoFix);
    }

    #[test]
    fn refuses_half_expectations() {
        for (text, why) in [
            (
                "pod: {namespace: a, name: b}\nclass: Pending\n",
                "either patch",
            ),
            (
                "pod: {namespace: a}\nclass: Pending\nphase: NoFix\n",
                "namePrefix",
            ),
            (
                "pod: {namespace: a, name: b}\nclass: Pending\nphase: NoFix\nrootcause: [x]\n",
                "unknown field",
            ),
            (
                "pod: {namespace: a, name: b}\nclass: Pending\nphase: NoFix\nrootCause: [{regex: '('}]\n",
                "invalid regex",
            ),
        ] {
            let error = format!("{:#}", Expected::parse(text).unwrap_err());
            assert!(error.contains(why), "{error}");
        }
    }
}

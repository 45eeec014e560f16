//! The agent: one Observe-Think-Act loop, two brains behind one trait.
//!
//! A [`Brain`] investigates a [`Case`] through a [`Session`]: every tool call goes through
//! [`Session::act`], which enforces the budgets, calls the plugin, redacts and truncates the
//! answer and records the step in the reasoning chain. The brain ends with a [`Conclusion`]; the
//! suggested patch then passes [`crate::patch::review`], and [`investigate`] turns it all into
//! the report's status.

pub mod hourly;
pub mod llm;
pub mod rules;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt as _;
use serde_json::Value;
use tracing::Instrument as _;

use crate::cluster::Cluster;
use crate::crd::{
    BrainUsage, DiagnosticReport, DiagnosticReportStatus, Findings, Phase, ReasoningStep,
    SuggestedPatch, ToolAction, condition,
};
use crate::plugin::{CallError, ClusterAccess, PluginSet};
use crate::redact::{self, redact_answer, redact_text};

/// Limits on one investigation. Running out of any ends the report as `Failed`, naming it.
#[derive(Clone, Debug)]
pub struct Budget {
    pub max_steps: u32,
    pub max_tokens: u64,
    /// Bytes of a tool's answer kept in the chain and sent to a model.
    pub max_tool_output: usize,
    pub deadline: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_steps: 8,
            max_tokens: 60_000,
            max_tool_output: 8 << 10,
            deadline: Duration::from_secs(120),
        }
    }
}

impl Budget {
    /// The policy's `spec.brain` overrides.
    pub fn with_policy(mut self, brain: Option<&crate::crd::BrainSpec>) -> Budget {
        if let Some(b) = brain {
            if let Some(steps) = b.max_steps {
                self.max_steps = steps;
            }
            if let Some(tokens) = b.max_tokens {
                self.max_tokens = u64::from(tokens);
            }
            if let Some(timeout) = b
                .timeout
                .as_deref()
                .and_then(|t| crate::crd::parse_duration("timeout", t).ok())
            {
                self.deadline = timeout;
            }
        }
        self
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum AgentError {
    #[error("the step budget of {0} steps ran out before a conclusion")]
    Steps(u32),
    #[error("the token budget of {limit} tokens ran out ({used} used)")]
    Tokens { limit: u64, used: u64 },
    #[error("the investigation deadline of {0:?} passed")]
    Deadline(Duration),
    #[error("the model's answer was invalid twice: {0}")]
    InvalidAnswer(String),
    #[error("the model endpoint failed: {0}")]
    Endpoint(String),
    #[error("{0}")]
    Other(String),
}

impl AgentError {
    /// What ended the investigation, as one word: a trace's `outcome`.
    pub fn kind(&self) -> &'static str {
        match self {
            AgentError::Steps(_) => "steps",
            AgentError::Tokens { .. } => "tokens",
            AgentError::Deadline(_) => "deadline",
            AgentError::InvalidAnswer(_) => "invalid_answer",
            AgentError::Endpoint(_) => "endpoint",
            AgentError::Other(_) => "error",
        }
    }
}

/// What is under investigation.
#[derive(Clone, Debug)]
pub struct Case {
    pub report: DiagnosticReport,
    pub pod: Pod,
}

impl Case {
    pub fn namespace(&self) -> &str {
        &self.report.spec.pod.namespace
    }
}

/// A JSON Patch the brain proposes, before review.
pub type ProposedPatch = SuggestedPatch;

/// How a brain ends an investigation.
#[derive(Clone, Debug, Default)]
pub struct Conclusion {
    pub findings: Findings,
    pub patch: Option<ProposedPatch>,
    /// What a person should do when there is no patch (or besides it).
    pub recommendation: Option<String>,
}

/// A tool's answer as the brain sees it: redacted and truncated, or the error as text.
#[derive(Clone, Debug)]
pub struct ToolOutcome {
    pub ok: bool,
    pub text: String,
}

/// One investigation's state: budgets, the reasoning chain, token use.
pub struct Session {
    plugins: Arc<PluginSet>,
    access: ClusterAccess,
    budget: Budget,
    started: Instant,
    pub steps: Vec<ReasoningStep>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub tool_calls: u32,
}

/// Longest tool result kept in `status.reasoningChain`: the report is for a person, not a log.
const CHAIN_RESULT_CHARS: usize = 600;

/// Keeps the head and the tail of a long text: a log's last lines and an object's identity both
/// matter more than its middle.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let boundary = |mut i: usize| {
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let head = boundary(max / 3);
    let tail = boundary(text.len() - (max - max / 3));
    format!(
        "{}\n… [{} bytes omitted] …\n{}",
        &text[..head],
        tail - head,
        &text[tail..]
    )
}

impl Session {
    pub fn new(plugins: Arc<PluginSet>, access: ClusterAccess, budget: Budget) -> Session {
        Session {
            plugins,
            access,
            budget,
            started: Instant::now(),
            steps: Vec::new(),
            prompt_tokens: 0,
            completion_tokens: 0,
            tool_calls: 0,
        }
    }

    pub fn plugins(&self) -> &PluginSet {
        &self.plugins
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    fn check_clock(&self) -> Result<(), AgentError> {
        if self.started.elapsed() > self.budget.deadline {
            return Err(AgentError::Deadline(self.budget.deadline));
        }
        Ok(())
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.budget.deadline.saturating_sub(self.started.elapsed())
    }

    /// Records a step of observation and thought with no action.
    /// Whether a tool of this name is loaded (the rules brain uses metrics tools when they are).
    pub fn has_tool(&self, name: &str) -> bool {
        self.plugins.tool(name).is_some()
    }

    pub fn note(&mut self, observation: impl Into<String>, thought: impl Into<String>) {
        self.steps.push(ReasoningStep {
            observation: redact_text(&observation.into()),
            thought: redact_text(&thought.into()),
            action: None,
        });
    }

    /// Observe, think, act: calls a tool and records the step. A failing tool is an answer
    /// the brain can read; only budgets end the investigation.
    pub async fn act(
        &mut self,
        observation: impl Into<String>,
        thought: impl Into<String>,
        tool: &str,
        arguments: Value,
    ) -> Result<ToolOutcome, AgentError> {
        self.check_clock()?;
        if self.steps.iter().filter(|s| s.action.is_some()).count() as u32 >= self.budget.max_steps
        {
            return Err(AgentError::Steps(self.budget.max_steps));
        }
        self.tool_calls += 1;
        let call = self.plugins.invoke(tool, &arguments, self.access.clone());
        let result = match tokio::time::timeout(self.remaining(), call).await {
            Ok(result) => result,
            Err(_) => return Err(AgentError::Deadline(self.budget.deadline)),
        };
        let outcome = match result {
            Ok(text) => ToolOutcome {
                ok: true,
                text: truncate(&redact_answer(&text), self.budget.max_tool_output),
            },
            Err(e) => {
                let text = match &e {
                    CallError::UnknownTool(t) => format!("error: there is no tool named {t:?}"),
                    other => format!("error: {other}"),
                };
                ToolOutcome {
                    ok: false,
                    text: redact_text(&text),
                }
            }
        };
        let mut arguments = arguments;
        redact::redact_json(&mut arguments);
        self.steps.push(ReasoningStep {
            observation: redact_text(&observation.into()),
            thought: redact_text(&thought.into()),
            action: Some(ToolAction {
                tool: tool.to_string(),
                arguments,
                result: truncate(&outcome.text, CHAIN_RESULT_CHARS),
            }),
        });
        Ok(outcome)
    }

    /// Counts a model call's tokens against the budget.
    pub fn add_tokens(&mut self, prompt: u64, completion: u64) -> Result<(), AgentError> {
        self.prompt_tokens += prompt;
        self.completion_tokens += completion;
        let used = self.prompt_tokens + self.completion_tokens;
        if used > self.budget.max_tokens {
            return Err(AgentError::Tokens {
                limit: self.budget.max_tokens,
                used,
            });
        }
        self.check_clock()
    }
}

#[async_trait]
pub trait Brain: Send + Sync {
    /// `rules` or `openai`.
    fn kind(&self) -> &'static str;
    fn model(&self) -> Option<String>;
    /// The same endpoint with another model (a policy's `brain.model`); None when this brain
    /// has no model endpoint.
    fn with_model(&self, _model: &str) -> Option<Arc<dyn Brain>> {
        None
    }
    async fn investigate(
        &self,
        case: &Case,
        session: &mut Session,
    ) -> Result<Conclusion, AgentError>;
}

/// The brain for a policy's reports: the operator's own unless the policy's `spec.brain` names
/// a provider. `rules` keeps a policy's Pods away from any model; `openai` with a model uses the
/// operator's endpoint and key with that model, which needs the operator to run with one.
pub fn brain_for_policy(
    default: &Arc<dyn Brain>,
    policy: Option<&crate::crd::BrainSpec>,
) -> Arc<dyn Brain> {
    use crate::crd::BrainProvider;
    let Some(spec) = policy else {
        return default.clone();
    };
    match (spec.provider, spec.model.as_deref()) {
        (None, _) => default.clone(),
        (Some(BrainProvider::Rules), _) => Arc::new(rules::RulesBrain),
        (Some(BrainProvider::Openai), None) => default.clone(),
        (Some(BrainProvider::Openai), Some(model)) if default.model().as_deref() == Some(model) => {
            default.clone()
        }
        (Some(BrainProvider::Openai), Some(model)) => default.with_model(model).unwrap_or_else(|| {
            Arc::new(Unavailable(format!(
                "the policy asks for model {model}, but the operator runs the rules brain with no model endpoint: start it with --brain openai (OPENAI_BASE_URL, OPENAI_API_KEY)"
            )))
        }),
    }
}

/// The brain and the budget for the reports of `policy` (None: a report whose policy is gone):
/// the operator's own, with the policy's `spec.brain` choices over them.
pub fn brain_and_budget(
    default: &Arc<dyn Brain>,
    budget: &Budget,
    policy: Option<&crate::crd::DebugPolicy>,
) -> (Arc<dyn Brain>, Budget) {
    let spec = policy.and_then(|p| p.spec.brain.as_ref());
    (
        brain_for_policy(default, spec),
        budget.clone().with_policy(spec),
    )
}

/// A brain that cannot run, and says why in the report.
struct Unavailable(String);

#[async_trait]
impl Brain for Unavailable {
    fn kind(&self) -> &'static str {
        "openai"
    }

    fn model(&self) -> Option<String> {
        None
    }

    async fn investigate(&self, _: &Case, _: &mut Session) -> Result<Conclusion, AgentError> {
        Err(AgentError::Endpoint(self.0.clone()))
    }
}

/// Everything an investigation needs from outside.
#[derive(Clone)]
pub struct Investigator {
    pub brain: Arc<dyn Brain>,
    pub plugins: Arc<PluginSet>,
    pub cluster: Arc<dyn Cluster>,
    pub budget: Budget,
}

/// Runs the brain on a case and reviews its patch; the result is the report's status.
pub async fn investigate(investigator: &Investigator, case: &Case) -> DiagnosticReportStatus {
    let span = tracing::info_span!(
        crate::telemetry::traces::INVESTIGATION,
        report = %case.report.name_any(),
        namespace = %case.namespace(),
        class = %case.report.spec.failure.class,
        brain = investigator.brain.kind(),
        model = investigator.brain.model().as_deref().unwrap_or_default(),
        phase = tracing::field::Empty,
        steps = tracing::field::Empty,
        tokens = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let status = investigate_unspanned(investigator, case)
        .instrument(span.clone())
        .await;
    if let Some(phase) = status.phase {
        span.record("phase", phase.as_str());
        if phase == Phase::Failed {
            span.record("otel.status_code", "ERROR");
        }
    }
    if let Some(b) = &status.brain {
        span.record("steps", b.steps);
        span.record("tokens", b.prompt_tokens + b.completion_tokens);
    }
    status
}

async fn investigate_unspanned(investigator: &Investigator, case: &Case) -> DiagnosticReportStatus {
    let started_at = Time(k8s_openapi::jiff::Timestamp::now());
    let access = ClusterAccess::new(investigator.cluster.clone(), case.namespace());
    let mut session = Session::new(
        investigator.plugins.clone(),
        access,
        investigator.budget.clone(),
    );
    let outcome = investigator.brain.investigate(case, &mut session).await;
    let mut status = DiagnosticReportStatus {
        started_at: Some(started_at),
        finished_at: Some(Time(k8s_openapi::jiff::Timestamp::now())),
        reasoning_chain: std::mem::take(&mut session.steps),
        brain: Some(BrainUsage {
            kind: investigator.brain.kind().to_string(),
            model: investigator.brain.model(),
            steps: session.tool_calls,
            prompt_tokens: session.prompt_tokens,
            completion_tokens: session.completion_tokens,
        }),
        ..Default::default()
    };
    let conclusion = match outcome {
        Ok(c) => c,
        Err(e) => {
            let message = format!("investigation failed: {e}");
            status.phase = Some(Phase::Failed);
            status.conditions = vec![condition(
                "Analyzed",
                false,
                "InvestigationFailed",
                &message,
                None,
            )];
            status.message = Some(message);
            return status;
        }
    };
    let mut findings = conclusion.findings;
    findings.summary = redact_text(&findings.summary);
    findings.root_cause = redact_text(&findings.root_cause);
    findings.evidence = findings.evidence.iter().map(|e| redact_text(e)).collect();
    status.findings = Some(findings);
    status.message = conclusion.recommendation.map(|r| redact_text(&r));
    match conclusion.patch {
        None => {
            status.phase = Some(Phase::NoFix);
            let message = status
                .message
                .clone()
                .unwrap_or_else(|| "no safe patch follows from the evidence".into());
            status.conditions = vec![condition("Analyzed", true, "NoFix", &message, None)];
        }
        Some(patch) => {
            // The author is the brain just recorded in status: its model, or its kind.
            let context = crate::patch::review_context(&case.report, status.brain.as_ref());
            let (verdict, rewritten) =
                if let Some(reason) = crate::patch::foreign_target(&case.report, &patch) {
                    (
                        crate::crd::SafetyVerdict {
                            verdict: crate::crd::Verdict::Denied,
                            filter: crate::patch::HOST_FILTER.into(),
                            reason: Some(reason),
                        },
                        None,
                    )
                } else {
                    crate::patch::review(
                        &investigator.plugins,
                        investigator.cluster.as_ref(),
                        &patch,
                        context,
                    )
                    .await
                };
            let allowed = verdict.verdict != crate::crd::Verdict::Denied;
            let reason = verdict.reason.clone().unwrap_or_default();
            let mut suggestion = rewritten.unwrap_or(patch);
            // Read by every report reader like the findings: a model may quote a secret in it.
            suggestion.explanation = redact_text(&suggestion.explanation);
            // The approval is pinned to it; it cannot change once the report awaits approval.
            status.patch_digest = Some(suggestion.digest());
            status.suggested_patch = Some(suggestion);
            status.safety = Some(verdict);
            if allowed {
                status.phase = Some(Phase::AwaitingApproval);
                status.conditions = vec![condition(
                    "Analyzed",
                    true,
                    "PatchSuggested",
                    "a patch passed review and awaits approval",
                    None,
                )];
            } else {
                // The patch stays for a person to read; it can never be applied.
                status.phase = Some(Phase::NoFix);
                let message = format!("the suggested patch was denied: {reason}");
                status.conditions =
                    vec![condition("Analyzed", true, "PatchDenied", &message, None)];
                status.message.get_or_insert(message);
            }
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{BrainProvider, BrainSpec};

    fn spec(provider: Option<BrainProvider>, model: Option<&str>) -> BrainSpec {
        BrainSpec {
            provider,
            model: model.map(String::from),
            ..Default::default()
        }
    }

    #[test]
    fn a_policy_picks_its_brain_and_a_budget_only_spec_keeps_the_operators() {
        let llm: Arc<dyn Brain> = Arc::new(llm::LlmBrain::new(None, None, "big-model"));
        let rules: Arc<dyn Brain> = Arc::new(rules::RulesBrain);
        let pick = |default: &Arc<dyn Brain>, s: Option<BrainSpec>| {
            let b = brain_for_policy(default, s.as_ref());
            (b.kind(), b.model())
        };
        assert_eq!(pick(&llm, None), ("openai", Some("big-model".into())));
        assert_eq!(
            pick(&llm, Some(spec(None, None))),
            ("openai", Some("big-model".into()))
        );
        assert_eq!(
            pick(&llm, Some(spec(Some(BrainProvider::Rules), None))),
            ("rules", None),
            "rules keeps the policy's Pods away from the model"
        );
        assert_eq!(
            pick(
                &llm,
                Some(spec(Some(BrainProvider::Openai), Some("small-model")))
            ),
            ("openai", Some("small-model".into()))
        );
        assert_eq!(pick(&rules, Some(spec(None, None))), ("rules", None));
    }

    #[tokio::test]
    async fn a_model_without_an_endpoint_fails_the_investigation_with_the_fix() {
        let rules: Arc<dyn Brain> = Arc::new(rules::RulesBrain);
        let brain = brain_for_policy(
            &rules,
            Some(&spec(Some(BrainProvider::Openai), Some("small-model"))),
        );
        let case: Case = serde_json::from_value::<DiagnosticReport>(serde_json::json!({
            "apiVersion": "sre-operator.dev/v1alpha1", "kind": "DiagnosticReport",
            "metadata": {"name": "r", "namespace": "default"},
            "spec": {"pod": {"namespace": "default", "name": "p"},
                     "workload": {"apiVersion": "v1", "kind": "Pod", "name": "p"},
                     "failure": {"class": "CrashLoopBackOff", "reason": "Error"},
                     "policy": "x"}
        }))
        .map(|report| Case {
            report,
            pod: Default::default(),
        })
        .unwrap();
        let investigator = Investigator {
            brain,
            plugins: Arc::new(PluginSet::default()),
            cluster: Arc::new(
                crate::cluster::DumpCluster::load(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../tests/fixtures/dump"
                ))
                .unwrap(),
            ),
            budget: Budget::default(),
        };
        let status = investigate(&investigator, &case).await;
        assert_eq!(status.phase, Some(crate::crd::Phase::Failed));
        let text = serde_json::to_string(&status).unwrap();
        assert!(text.contains("--brain openai"), "{text}");
    }
}

//! The whole diagnosis pipeline over a [`Cluster`]: triage (detect failures, apply the policies,
//! one report per workload and class), the policy-filter plugins' screen, then one investigation
//! per report (brain ↔ tools, patch-safety review).
//!
//! `diagnose` and `eval` both run exactly this, so that what `eval` scores is what a user gets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::StreamExt;

use crate::agent::{Brain, Budget, Case, Investigator, investigate};
use crate::cluster::Cluster;
use crate::crd::{DebugPolicy, DiagnosticReport};
use crate::plugin::PluginSet;
use crate::policy::PolicySet;
use crate::triage::{screen, subject_pod, triage_counting};

/// What investigates the reports: without one, the pipeline only detects.
#[derive(Clone)]
pub struct Engine {
    pub brain: Arc<dyn Brain>,
    pub plugins: Arc<PluginSet>,
    /// The default budget; a policy's `spec.brain` overrides it for its reports.
    pub budget: Budget,
    /// Investigations run at once.
    pub concurrency: usize,
}

/// Where the time went.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timings {
    /// Detecting failures, applying policies, resolving workloads.
    pub detect: Duration,
    /// The policy-filter plugins.
    pub screen: Duration,
    /// Brains and tools, patch review included (investigations overlap, so this is wall time).
    pub investigate: Duration,
}

/// What the pipeline produced.
pub struct Outcome {
    /// The reports, in triage order (namespace, then workload); with an engine, each has a status.
    pub reports: Vec<DiagnosticReport>,
    /// Reports a policy-filter plugin decided not to investigate, with its reason.
    pub skipped: Vec<(DiagnosticReport, String)>,
    /// Pods in the cluster.
    pub pods: usize,
    pub timings: Timings,
}

/// Runs the pipeline. `policies` are the DebugPolicies `policy_set` was compiled from (their
/// `spec.brain` settings override the engine's budget).
pub async fn run(
    cluster: Arc<dyn Cluster>,
    policies: &[DebugPolicy],
    policy_set: &PolicySet,
    engine: Option<&Engine>,
) -> Result<Outcome> {
    let started = Instant::now();
    let (reports, pods) = triage_counting(cluster.as_ref(), policy_set).await?;
    let mut timings = Timings {
        detect: started.elapsed(),
        ..Timings::default()
    };
    let Some(engine) = engine else {
        return Ok(Outcome {
            reports,
            skipped: Vec::new(),
            pods,
            timings,
        });
    };

    let started = Instant::now();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let mut kept = Vec::new();
    let mut skipped = Vec::new();
    for report in reports {
        let Some(pod) = subject_pod(cluster.as_ref(), &report).await? else {
            continue; // gone since triage
        };
        match screen(&engine.plugins, cluster.as_ref(), &report, &pod, &now).await {
            Some(reason) => skipped.push((report, reason)),
            None => kept.push(Case { report, pod }),
        }
    }
    timings.screen = started.elapsed();

    // Cases that share a cause are one incident: only its lead is investigated.
    let mut causes = Vec::with_capacity(kept.len());
    for case in &kept {
        causes.push(crate::incident::cause_of(&case.report, &case.pod, cluster.as_ref()).await);
    }
    let incidents = crate::incident::group(&causes);
    let mut followers = vec![None; kept.len()];
    let mut details = Vec::new();
    for (lead, members) in &incidents {
        let cause = causes[*lead].as_ref().expect("grouped by cause");
        let detail = crate::crd::IncidentDetail {
            name: crate::incident::name(cause),
            cause: cause.description.clone(),
            members: members
                .iter()
                .map(|&m| crate::incident::member(&kept[m].report))
                .collect(),
            elsewhere: 0,
        };
        for &m in &members[1..] {
            followers[m] = Some(details.len());
        }
        details.push((*lead, detail));
    }

    let started = Instant::now();
    let leads: Vec<(usize, Case)> = kept
        .iter()
        .enumerate()
        .filter(|(i, _)| followers[*i].is_none())
        .map(|(i, c)| (i, c.clone()))
        .collect();
    let investigations = leads.into_iter().map(|(i, case)| {
        let policy = crate::policy::by_name(policies, &case.report.spec.policy);
        let (brain, budget) = crate::agent::brain_and_budget(&engine.brain, &engine.budget, policy);
        let investigator = Investigator {
            brain,
            plugins: engine.plugins.clone(),
            cluster: cluster.clone(),
            budget,
        };
        async move {
            let status = investigate(&investigator, &case).await;
            let mut report = case.report;
            report.status = Some(status);
            (i, report)
        }
    });
    let investigated: Vec<(usize, DiagnosticReport)> = futures::stream::iter(investigations)
        .buffered(engine.concurrency.max(1))
        .collect()
        .await;
    let mut slots: Vec<Option<DiagnosticReport>> = vec![None; kept.len()];
    for (i, report) in investigated {
        slots[i] = Some(report);
    }
    for (lead, detail) in &details {
        if let Some(status) = slots[*lead].as_mut().and_then(|r| r.status.as_mut()) {
            status.incident = Some(detail.name.clone());
            let namespace = &kept[*lead].report.spec.pod.namespace;
            status.incident_detail = Some(detail.clone().seen_from(namespace));
        }
    }
    let concluded: Vec<DiagnosticReport> = details
        .iter()
        .map(|(lead, _)| slots[*lead].clone().expect("the lead was investigated"))
        .collect();
    let mut reports = Vec::with_capacity(kept.len());
    for (i, case) in kept.into_iter().enumerate() {
        let Some(d) = followers[i] else {
            reports.push(
                slots[i]
                    .take()
                    .expect("every lead and lone report was investigated"),
            );
            continue;
        };
        let (lead, detail) = (&concluded[d], &details[d].1);
        let own_fix = if crate::incident::fix_per_member(lead) {
            let (plugins, cluster) = (engine.plugins.clone(), cluster.clone());
            crate::incident::member_fix(plugins, cluster, &case, lead, detail).await
        } else {
            None
        };
        let status =
            own_fix.unwrap_or_else(|| crate::incident::member_status(&case.report, lead, detail));
        let mut report = case.report;
        report.status = Some(status);
        reports.push(report);
    }
    timings.investigate = started.elapsed();
    Ok(Outcome {
        reports,
        skipped,
        pods,
        timings,
    })
}

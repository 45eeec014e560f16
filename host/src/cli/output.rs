//! How `diagnose` prints reports: text for a person, JSON and YAML for `kubectl apply`.

use std::io::Write;

use anyhow::Result;
use kube::ResourceExt;
use serde_json::json;

use crate::cluster::format_bytes;
use crate::crd::{DiagnosticReport, Findings, ReasoningStep};
use crate::plugin::PluginSet;
use crate::policy::PolicySet;

pub fn text(
    out: &mut impl Write,
    reports: &[DiagnosticReport],
    skipped: &[(DiagnosticReport, String)],
    pods: usize,
    source: &str,
    policies: &PolicySet,
) -> Result<()> {
    let policy_names: Vec<&str> = policies.names().collect();
    writeln!(
        out,
        "sre-operator: {source}: {pods} Pods, policy {}",
        policy_names.join(", ")
    )?;
    if reports.is_empty() && skipped.is_empty() {
        writeln!(out, "No failing Pod is selected by the policies.")?;
        return Ok(());
    }
    // Incidents first: each lead's full report, then its members one line each; then the
    // reports that stand alone.
    let incident_of = |r: &DiagnosticReport| r.status.as_ref().and_then(|s| s.incident.clone());
    for lead in reports {
        let Some(detail) = lead
            .status
            .as_ref()
            .and_then(|s| s.incident_detail.as_ref())
        else {
            continue;
        };
        writeln!(out)?;
        writeln!(
            out,
            "#### Incident {}: {} ({} workloads, investigated once)",
            detail.name,
            detail.cause,
            detail.members.len() + detail.elsewhere as usize
        )?;
        write_report(out, lead)?;
        for member in reports
            .iter()
            .filter(|r| incident_of(r).as_deref() == Some(detail.name.as_str()))
            .filter(|r| !std::ptr::eq(*r, lead))
        {
            let w = &member.spec.workload;
            writeln!(
                out,
                "   + {}/{}  {} {}  report: {}",
                member.spec.pod.namespace,
                member.spec.pod.name,
                w.kind,
                w.name,
                member.name_any()
            )?;
        }
    }
    for report in reports.iter().filter(|r| incident_of(r).is_none()) {
        write_report(out, report)?;
    }
    for (report, reason) in skipped {
        writeln!(out)?;
        writeln!(
            out,
            "{}/{}  {}  skipped by {reason}",
            report.spec.pod.namespace, report.spec.pod.name, report.spec.failure.class
        )?;
    }
    writeln!(out)?;
    let mut by_phase = std::collections::BTreeMap::new();
    for r in reports {
        let phase = r
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .map(|p| format!("{p:?}"))
            .unwrap_or_else(|| "detected".into());
        *by_phase.entry(phase).or_insert(0) += 1;
    }
    let phases: Vec<String> = by_phase.iter().map(|(p, n)| format!("{n} {p}")).collect();
    let skipped_note = if skipped.is_empty() {
        String::new()
    } else {
        format!(", {} skipped", skipped.len())
    };
    writeln!(
        out,
        "{} report(s): {}{skipped_note}.",
        reports.len(),
        phases.join(", ")
    )?;
    Ok(())
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|l| format!("{prefix}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// How findings and the reasoning chain are laid out: `diagnose` and `kubectl sre show` indent
/// them differently, and people's scripts read both.
pub struct Layout {
    pub pad: &'static str,
    /// `Summary:` and `Root cause:` are padded to this.
    pub label_width: usize,
    /// A step's number (`1.`) is padded to this.
    pub number_width: usize,
}

pub fn write_findings(out: &mut dyn Write, f: &Findings, l: &Layout) -> std::io::Result<()> {
    let (pad, w) = (l.pad, l.label_width);
    writeln!(out, "{pad}{:<w$}{}", "Summary:", f.summary)?;
    writeln!(out, "{pad}{:<w$}{}", "Root cause:", f.root_cause)?;
    if !f.evidence.is_empty() {
        writeln!(out, "{pad}Evidence:")?;
        for e in &f.evidence {
            writeln!(out, "{pad}  - {e}")?;
        }
    }
    Ok(())
}

/// The numbered Observation / Thought / Action steps, each tool result cut to its first lines.
pub fn write_reasoning(
    out: &mut dyn Write,
    chain: &[ReasoningStep],
    l: &Layout,
) -> std::io::Result<()> {
    let (pad, w) = (l.pad, l.number_width);
    let under = format!("{pad}{:w$} ", "");
    for (i, step) in chain.iter().enumerate() {
        let n = format!("{}.", i + 1);
        writeln!(out, "{pad}{n:<w$} Observation: {}", step.observation)?;
        writeln!(out, "{under}Thought:     {}", step.thought)?;
        if let Some(action) = &step.action {
            writeln!(
                out,
                "{under}Action:      {} {}",
                action.tool, action.arguments
            )?;
            let result: String = action
                .result
                .lines()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(160)
                .collect();
            if !result.is_empty() {
                writeln!(out, "{under}Result:      {result}")?;
            }
        }
    }
    Ok(())
}

fn write_report(out: &mut impl Write, report: &DiagnosticReport) -> Result<()> {
    let spec = &report.spec;
    let failure = &spec.failure;
    writeln!(out)?;
    writeln!(
        out,
        "== {}/{}  {} ({})",
        spec.pod.namespace, spec.pod.name, failure.class, failure.reason
    )?;
    let container = failure
        .container
        .as_deref()
        .map(|c| format!("   container: {c}"))
        .unwrap_or_default();
    writeln!(
        out,
        "   workload: {} {}   policy: {}   report: {}{container}",
        spec.workload.kind,
        spec.workload.name,
        spec.policy,
        report.name_any()
    )?;
    let Some(status) = &report.status else {
        writeln!(out, "   evidence:")?;
        for line in &failure.evidence {
            writeln!(out, "     - {line}")?;
        }
        return Ok(());
    };
    let phase = status.phase.map(|p| format!("{p:?}")).unwrap_or_default();
    let brain = status
        .brain
        .as_ref()
        .map(|b| {
            let model = b
                .model
                .as_deref()
                .map(|m| format!(" {m}"))
                .unwrap_or_default();
            let tokens = if b.prompt_tokens + b.completion_tokens > 0 {
                format!(", {} tokens", b.prompt_tokens + b.completion_tokens)
            } else {
                String::new()
            };
            format!("{}{model}, {} tool call(s){tokens}", b.kind, b.steps)
        })
        .unwrap_or_default();
    writeln!(out, "   phase: {phase}   brain: {brain}")?;
    const LAYOUT: Layout = Layout {
        pad: "     ",
        label_width: 12,
        number_width: 2,
    };
    if let Some(f) = &status.findings {
        writeln!(out, "\n   Findings")?;
        write_findings(out, f, &LAYOUT)?;
    }
    if !status.reasoning_chain.is_empty() {
        writeln!(out, "\n   Reasoning")?;
        write_reasoning(out, &status.reasoning_chain, &LAYOUT)?;
    }
    if let Some(p) = &status.suggested_patch {
        writeln!(
            out,
            "\n   Suggested patch for {} {}/{}",
            p.target.kind, p.target.namespace, p.target.name
        )?;
        writeln!(
            out,
            "{}",
            indent(&serde_json::to_string_pretty(&p.patch)?, "     ")
        )?;
        writeln!(out, "     Why: {}", p.explanation)?;
    }
    if let Some(s) = &status.safety {
        let reason = s
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        writeln!(out, "   Safety: {:?} by {}{reason}", s.verdict, s.filter)?;
    }
    if let Some(m) = &status.message {
        writeln!(
            out,
            "   {}: {m}",
            if status.phase == Some(crate::crd::Phase::Failed) {
                "Failed"
            } else {
                "Recommendation"
            }
        )?;
    }
    if status.phase == Some(crate::crd::Phase::AwaitingApproval) {
        writeln!(
            out,
            "   Approve: kubectl patch dr {} -n {} --type merge -p '{{\"spec\":{{\"decision\":\"Approved\"}}}}'",
            report.name_any(),
            spec.pod.namespace
        )?;
    }
    Ok(())
}

fn as_list(reports: &[DiagnosticReport]) -> serde_json::Value {
    json!({ "apiVersion": "v1", "kind": "List", "items": reports })
}

pub fn json(out: &mut impl Write, reports: &[DiagnosticReport]) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, &as_list(reports))?;
    writeln!(out)?;
    Ok(())
}

pub fn yaml(out: &mut impl Write, reports: &[DiagnosticReport]) -> Result<()> {
    out.write_all(serde_yaml::to_string(&as_list(reports))?.as_bytes())?;
    Ok(())
}

pub fn plugins(out: &mut impl Write, set: &PluginSet) -> Result<()> {
    writeln!(
        out,
        "plugins from {}: {} loaded, {} refused",
        set.source(),
        set.plugins().len(),
        set.refusals().len()
    )?;
    for plugin in set.plugins() {
        let l = plugin.limits;
        writeln!(
            out,
            "\n{}  ({}, {}, sha256 {})\n  limits: memory {}, timeout {:?}, output {}",
            plugin.name,
            plugin.world,
            format_bytes(plugin.size as i64),
            &plugin.digest[..16],
            format_bytes(l.memory_bytes as i64),
            l.timeout,
            format_bytes(l.output_bytes as i64)
        )?;
        for tool in set.tools().filter(|t| t.plugin.name == plugin.name) {
            let first = tool
                .description
                .split(". ")
                .next()
                .unwrap_or("")
                .trim_end_matches('.');
            writeln!(out, "  tool {}: {first}", tool.name)?;
        }
    }
    for refusal in set.refusals() {
        writeln!(out, "\nREFUSED {}: {}", refusal.plugin, refusal.reason)?;
    }
    Ok(())
}

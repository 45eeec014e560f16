//! How `diagnose` prints reports: text for a person, JSON and YAML for `kubectl apply`.

use std::io::Write;

use anyhow::Result;
use kube::ResourceExt;
use serde_json::json;

use crate::cluster::format_bytes;
use crate::crd::DiagnosticReport;
use crate::plugin::PluginSet;
use crate::policy::PolicySet;

pub fn text(
    out: &mut impl Write,
    reports: &[DiagnosticReport],
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
    if reports.is_empty() {
        writeln!(out, "No failing Pod is selected by the policies.")?;
        return Ok(());
    }
    for report in reports {
        let spec = &report.spec;
        let failure = &spec.failure;
        writeln!(out)?;
        writeln!(
            out,
            "{}/{}  {} ({})",
            spec.pod.namespace, spec.pod.name, failure.class, failure.reason
        )?;
        let container = failure
            .container
            .as_deref()
            .map(|c| format!("   container: {c}"))
            .unwrap_or_default();
        writeln!(
            out,
            "  workload: {} {}   policy: {}   report: {}{container}",
            spec.workload.kind,
            spec.workload.name,
            spec.policy,
            report.name_any()
        )?;
        writeln!(out, "  evidence:")?;
        for line in &failure.evidence {
            writeln!(out, "    - {line}")?;
        }
    }
    writeln!(out)?;
    writeln!(out, "{} report(s) to open.", reports.len())?;
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

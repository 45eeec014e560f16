//! `list`, `show`, `approve` and `reject`.

use std::io::Write;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::render::{Table, age_of, for_diff, print, yaml_diff};
use super::{DecideArgs, FIELD_MANAGER, Format, Io, Result, api_error, failed};
use crate::cli::output::{Layout, write_findings, write_reasoning};
use crate::cluster::{Cluster, LiveCluster, ResourceKind};
use crate::crd::{
    Decision, DiagnosticReport, DiagnosticReportStatus, PatchOp, PatchOperation, Phase,
    SuggestedPatch, TargetRef, Verdict,
};
use crate::patch::apply::already_applied;
use crate::patch::apply_to;

/// `kubectl sre show`'s indentation of findings and reasoning.
const LAYOUT: Layout = Layout {
    pad: "  ",
    label_width: 13,
    number_width: 3,
};

const RESOURCE: &str = "diagnosticreports.sre-operator.dev";

fn crd_missing() -> String {
    "the DiagnosticReport CRD is not installed in this cluster: `kubectl apply -f crds/` \
     (from the sre-operator repository) installs it"
        .into()
}

/// One report, or an error that says how to find the right name.
pub(crate) async fn get_report(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<DiagnosticReport> {
    let api: Api<DiagnosticReport> = Api::namespaced(client.clone(), namespace);
    api.get(name).await.map_err(|e| {
        api_error(
            e,
            &format!("cannot read diagnosticreport {namespace}/{name}"),
            &format!("get {RESOURCE} in namespace {namespace}"),
            |status| {
                if super::resource_unknown(status) {
                    crd_missing()
                } else {
                    format!(
                        "diagnosticreport {namespace}/{name} not found: \
                         `kubectl sre list -n {namespace}` shows the reports (-A for every namespace)"
                    )
                }
            },
        )
    })
}

fn phase_name(status: Option<&DiagnosticReportStatus>) -> String {
    status
        .and_then(|s| s.phase)
        .map(|p| format!("{p:?}"))
        .unwrap_or_else(|| "<none>".into())
}

pub(super) async fn list(
    client: &Client,
    namespace: Option<&str>,
    output: Option<Format>,
    io: &mut Io<'_>,
) -> Result<()> {
    let api: Api<DiagnosticReport> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let scope = namespace
        .map(|ns| format!("in namespace {ns}"))
        .unwrap_or_else(|| "in any namespace".into());
    let mut reports = api
        .list(&ListParams::default())
        .await
        .map_err(|e| {
            api_error(
                e,
                &format!("cannot list diagnosticreports {scope}"),
                &format!("list {RESOURCE} {scope}"),
                |_| crd_missing(),
            )
        })?
        .items;
    let incident_of = |r: &DiagnosticReport| r.status.as_ref().and_then(|s| s.incident.clone());
    // An incident's reports together, incidents first; then the reports that stand alone.
    reports.sort_by_key(|r| {
        (
            incident_of(r).is_none(),
            incident_of(r),
            r.namespace(),
            r.name_any(),
        )
    });
    if let Some(format) = output {
        let list = json!({ "apiVersion": "v1", "kind": "List", "items": reports, "metadata": {} });
        return print(io.out, &list, format);
    }
    if reports.is_empty() {
        match namespace {
            Some(ns) => writeln!(io.err, "No diagnosticreports found in {ns} namespace.")?,
            None => writeln!(io.err, "No diagnosticreports found.")?,
        }
        return Ok(());
    }
    let all = namespace.is_none();
    let mut header = vec!["NAME", "PHASE", "POD", "CLASS", "INCIDENT", "AGE"];
    if all {
        header.insert(0, "NAMESPACE");
    }
    let mut table = Table::new(&header);
    let now = Timestamp::now();
    for r in &reports {
        let mut row = vec![
            r.name_any(),
            phase_name(r.status.as_ref()),
            r.spec.pod.name.clone(),
            r.spec.failure.class.to_string(),
            incident_of(r).unwrap_or_else(|| "-".into()),
            age_of(r.metadata.creation_timestamp.as_ref(), now),
        ];
        if all {
            row.insert(0, r.namespace().unwrap_or_default());
        }
        table.row(row);
    }
    table.write(io.out)?;
    Ok(())
}

/// The suggested patch set against the live object it targets.
struct Preview {
    /// The live target with managedFields removed; `None` when it no longer exists.
    live: Option<Value>,
    /// Why the target could not be read, when it could not.
    unreadable: Option<String>,
}

async fn read_target(client: &Client, target: &TargetRef) -> Preview {
    let kind: ResourceKind = match target.kind.parse() {
        Ok(k) => k,
        Err(e) => {
            return Preview {
                live: None,
                unreadable: Some(e),
            };
        }
    };
    let cluster = LiveCluster::new(client.clone(), "the cluster");
    match cluster
        .get(kind, Some(&target.namespace), &target.name)
        .await
    {
        Ok(object) => Preview {
            live: object.map(|o| (*o).clone()),
            unreadable: None,
        },
        Err(e) => Preview {
            live: None,
            unreadable: Some(e.to_string()),
        },
    }
}

fn resource_version(object: &Value) -> &str {
    object["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
}

fn target_name(t: &TargetRef) -> String {
    format!("{} {}/{}", t.kind, t.namespace, t.name)
}

/// "3 operations (1 test guard, 2 changes)".
fn patch_size(ops: &[PatchOperation]) -> String {
    let tests = ops.iter().filter(|o| o.op == PatchOp::Test).count();
    let changes = ops.len() - tests;
    format!(
        "{} operation{} ({tests} test guard{}, {changes} change{})",
        ops.len(),
        if ops.len() == 1 { "" } else { "s" },
        if tests == 1 { "" } else { "s" },
        if changes == 1 { "" } else { "s" },
    )
}

fn touches_status(ops: &[PatchOperation]) -> bool {
    ops.iter().any(|o| o.path.starts_with("/status"))
}

/// Whether the live object is the one the patch was reviewed against: `Err` says how it is not.
fn drift(status: &DiagnosticReportStatus, live: &Value) -> Result<(), String> {
    let now = resource_version(live);
    match status.target_resource_version.as_deref() {
        Some(then) if then != now => Err(format!(
            "changed since the analysis (resourceVersion {then} then, {now} now; a status update counts too)"
        )),
        _ => Ok(()),
    }
}

fn write_patch_section(
    out: &mut dyn Write,
    report: &DiagnosticReport,
    status: &DiagnosticReportStatus,
    suggestion: &SuggestedPatch,
    preview: &Preview,
) -> Result<()> {
    let target = target_name(&suggestion.target);
    writeln!(out, "\nSuggested patch for {target}")?;
    writeln!(out, "  Why:    {}", suggestion.explanation)?;
    writeln!(out, "  Size:   {}", patch_size(&suggestion.patch))?;
    writeln!(out, "  Digest: {}", suggestion.digest())?;
    // Every operation, as it will be sent: the diff below is a reading aid, this is the patch.
    write_ops(out, &suggestion.patch)?;
    let Some(live) = &preview.live else {
        match &preview.unreadable {
            Some(e) => writeln!(out, "  !! cannot read {target}: {e}")?,
            None => writeln!(out, "  !! {target} does not exist any more")?,
        }
        return Ok(());
    };
    let keep_status = touches_status(&suggestion.patch);
    let applied = status
        .apply
        .as_ref()
        .is_some_and(|a| a.applied_at.is_some());
    if applied {
        let in_place = already_applied(live, &suggestion.patch);
        if in_place {
            writeln!(out, "  The patch is in place on the live object.")?;
        } else {
            writeln!(
                out,
                "  !! The live object no longer holds every value the patch set: it changed after the apply."
            )?;
        }
        let rollback = status
            .apply
            .as_ref()
            .map(|a| a.rollback_patch.as_slice())
            .unwrap_or_default();
        match apply_to(live, rollback) {
            Ok(before) if !rollback.is_empty() => {
                let label = format!("{target} before the patch");
                let diff = yaml_diff(
                    &for_diff(&before, keep_status),
                    &for_diff(live, keep_status),
                    &label,
                    &format!("{target} live"),
                );
                write_diff(out, &diff)?;
            }
            Ok(_) => {}
            Err(e) => writeln!(
                out,
                "  !! The rollback patch no longer applies to the live object: {e}"
            )?,
        }
        return Ok(());
    }
    if let Err(how) = drift(status, live) {
        writeln!(
            out,
            "  Note: {target} {how}; the operator reviews the patch again before it applies it."
        )?;
    }
    match apply_to(live, &suggestion.patch) {
        Ok(patched) => {
            let diff = yaml_diff(
                &for_diff(live, keep_status),
                &for_diff(&patched, keep_status),
                &format!("{target} live (resourceVersion {})", resource_version(live)),
                &format!("{target} patched"),
            );
            write_diff(out, &diff)?;
        }
        Err(e) => {
            writeln!(
                out,
                "  !! DRIFT: the patch no longer applies to the live {target}: {e}; \
                 approving it would fail (kubectl sre reject {} -n {} closes the report)",
                report.name_any(),
                report.namespace().unwrap_or_default()
            )?;
        }
    }
    Ok(())
}

fn write_diff(out: &mut dyn Write, diff: &str) -> Result<()> {
    if diff.is_empty() {
        writeln!(out, "  (the patch changes nothing on the live object)")?;
    }
    for line in diff.lines() {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

fn write_ops(out: &mut dyn Write, ops: &[PatchOperation]) -> Result<()> {
    writeln!(out, "  JSON Patch:")?;
    for op in ops {
        writeln!(out, "    {}", serde_json::to_string(op).unwrap_or_default())?;
    }
    Ok(())
}

pub(super) async fn show(
    client: &Client,
    namespace: &str,
    name: &str,
    output: Option<Format>,
    io: &mut Io<'_>,
) -> Result<()> {
    let report = get_report(client, namespace, name).await?;
    if let Some(format) = output {
        return print(io.out, &report, format);
    }
    let out = &mut *io.out;
    let now = Timestamp::now();
    let status = report.status.clone().unwrap_or_default();
    let spec = &report.spec;
    writeln!(out, "Name:       {name}")?;
    writeln!(out, "Namespace:  {namespace}")?;
    writeln!(out, "Phase:      {}", phase_name(Some(&status)))?;
    let container = spec
        .failure
        .container
        .as_deref()
        .map(|c| format!(", container {c}"))
        .unwrap_or_default();
    writeln!(
        out,
        "Pod:        {}/{}  {} ({}{container})",
        spec.pod.namespace, spec.pod.name, spec.failure.class, spec.failure.reason
    )?;
    writeln!(
        out,
        "Workload:   {} {}",
        spec.workload.kind, spec.workload.name
    )?;
    writeln!(out, "Policy:     {}", spec.policy)?;
    if let Some(b) = &status.brain {
        let model = b
            .model
            .as_deref()
            .map(|m| format!(" {m}"))
            .unwrap_or_default();
        writeln!(out, "Brain:      {}{model}, {} step(s)", b.kind, b.steps)?;
    }
    writeln!(
        out,
        "Age:        {}",
        age_of(report.metadata.creation_timestamp.as_ref(), now)
    )?;

    writeln!(out, "\nFindings")?;
    match &status.findings {
        Some(f) => write_findings(out, f, &LAYOUT)?,
        None => writeln!(out, "  (none yet)")?,
    }
    if let Some(m) = &status.message {
        let label = match status.phase {
            Some(Phase::Failed) => "Failed:     ",
            Some(Phase::Unresolved) => "Unresolved: ",
            _ => "Recommendation:",
        };
        writeln!(out, "  {label} {m}")?;
    }

    if !status.reasoning_chain.is_empty() {
        writeln!(out, "\nReasoning")?;
        write_reasoning(out, &status.reasoning_chain, &LAYOUT)?;
    }

    match &status.suggested_patch {
        Some(suggestion) => {
            let preview = read_target(client, &suggestion.target).await;
            write_patch_section(out, &report, &status, suggestion, &preview)?;
        }
        None => writeln!(out, "\nSuggested patch: none")?,
    }

    writeln!(out, "\nSafety")?;
    match &status.safety {
        Some(s) => {
            writeln!(out, "  Verdict:  {:?}", s.verdict)?;
            writeln!(out, "  Filter:   {}", s.filter)?;
            writeln!(out, "  Reason:   {}", s.reason.as_deref().unwrap_or("-"))?;
        }
        None => writeln!(out, "  (not reviewed)")?,
    }

    writeln!(out, "\nDecision")?;
    let hint = |verb: &str| format!("kubectl sre {verb} {name} -n {namespace}");
    match spec.decision {
        Some(d) => writeln!(out, "  Decision:  {d:?}")?,
        None if status.phase == Some(Phase::AwaitingApproval) => writeln!(
            out,
            "  Decision:  none: `{}{}` or `{}`",
            hint("approve"),
            status
                .suggested_patch
                .as_ref()
                .map(|p| format!(" --digest {}", p.digest()))
                .unwrap_or_default(),
            hint("reject")
        )?,
        None => writeln!(out, "  Decision:  none")?,
    }
    match &status.apply {
        None => writeln!(out, "  Applied:   no")?,
        Some(a) => {
            match &a.applied_at {
                Some(t) => writeln!(
                    out,
                    "  Applied:   {} ({} ago){}",
                    t.0,
                    age_of(Some(t), now),
                    a.target_generation
                        .map(|g| format!(", generation {g}"))
                        .unwrap_or_default()
                )?,
                None => writeln!(
                    out,
                    "  Applied:   not yet (the operator decided to apply at {})",
                    a.started_at.0
                )?,
            }
            if a.rollback_patch.is_empty() {
                writeln!(out, "  Rollback:  no rollback patch recorded")?;
            } else {
                writeln!(
                    out,
                    "  Rollback:  available, {}: `{}`",
                    patch_size(&a.rollback_patch),
                    hint("rollback")
                )?;
            }
        }
    }
    Ok(())
}

/// `approve` and `reject`: of one report, or (`--incident`) of every report of an incident in
/// the namespace that awaits approval.
pub(crate) async fn decide(
    client: &Client,
    namespace: &str,
    args: &DecideArgs,
    decision: Decision,
    io: &mut Io<'_>,
) -> Result<()> {
    match (&args.name, &args.incident) {
        (Some(name), None) => decide_one(client, namespace, name, args, decision, io).await,
        (None, Some(incident)) => {
            decide_incident(client, namespace, incident, args, decision, io).await
        }
        _ => Err(super::Error::Usage(
            "name one report, or give --incident NAME for all of an incident's".into(),
        )),
    }
}

/// Why `report` cannot take `decision` (None: it can). `digest`: the patch digest the person
/// read, if they give one.
fn refusal(report: &DiagnosticReport, decision: Decision, digest: Option<&str>) -> Option<String> {
    let name = report.name_any();
    let namespace = report.namespace().unwrap_or_default();
    let object = format!("diagnosticreport {namespace}/{name}");
    let status = report.status.clone().unwrap_or_default();
    if let Some(existing) = report.spec.decision {
        return Some(format!(
            "{object} already has spec.decision: {existing:?}, and a decision is final; \
             if the failure persists, the operator opens a new report once this one closes"
        ));
    }
    let phase = status.phase;
    let verb = match decision {
        Decision::Approved => "approve",
        Decision::Rejected => "reject",
    };
    let open = match decision {
        Decision::Approved => phase == Some(Phase::AwaitingApproval),
        // A rejection also stops an investigation that is still running.
        Decision::Rejected => matches!(
            phase,
            None | Some(Phase::Analyzing) | Some(Phase::AwaitingApproval)
        ),
    };
    if !open {
        return Some(format!(
            "cannot {verb} {object}: it is {}, not AwaitingApproval{}",
            phase_name(Some(&status)),
            match phase {
                Some(Phase::Analyzing) => "; the investigation is still running: wait for it",
                None => "; the operator has not picked it up yet",
                _ => "; `kubectl sre show` tells its story",
            }
        ));
    }
    if decision == Decision::Approved {
        let Some(patch) = status.suggested_patch.as_ref() else {
            return Some(format!(
                "cannot approve {object}: it has no suggested patch"
            ));
        };
        if let Some(read) = digest
            && read != patch.digest()
        {
            return Some(format!(
                "cannot approve {object}: its suggested patch changed since you read it (digest \
                 {read} then, {} now); read it again with `kubectl sre show {name} -n {namespace}`",
                patch.digest()
            ));
        }
        if let Some(s) = status
            .safety
            .as_ref()
            .filter(|s| s.verdict == Verdict::Denied)
        {
            return Some(format!(
                "cannot approve {object}: its patch was Denied by {}{}; a denied patch is never \
                 applied (`kubectl sre reject {name} -n {namespace}` closes the report)",
                s.filter,
                s.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ));
        }
    }
    None
}

/// What deciding `report` means, for the person to read before they confirm.
async fn decision_summary(
    client: &Client,
    report: &DiagnosticReport,
    decision: Decision,
) -> String {
    let object = format!(
        "diagnosticreport {}/{}",
        report.namespace().unwrap_or_default(),
        report.name_any()
    );
    let status = report.status.clone().unwrap_or_default();
    let suggestion = status.suggested_patch.as_ref();
    let verdict = status
        .safety
        .as_ref()
        .map(|s| {
            format!(
                "{:?} by {}{}",
                s.verdict,
                s.filter,
                s.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )
        })
        .unwrap_or_else(|| "not reviewed".into());
    let mut summary = match (decision, suggestion) {
        (Decision::Approved, Some(p)) => format!(
            "Approving {object} lets the operator apply its suggested patch to {}: {}, {}. \
             Safety verdict: {verdict}. The patch, digest {}:\n{}",
            target_name(&p.target),
            patch_size(&p.patch),
            p.explanation,
            p.digest(),
            p.patch
                .iter()
                .map(|op| format!("  {}", serde_json::to_string(op).unwrap_or_default()))
                .collect::<Vec<_>>()
                .join("\n")
        ),
        (_, Some(p)) => format!(
            "Rejecting {object} closes it; its suggested patch for {} ({}) is never applied. \
             Safety verdict: {verdict}.",
            target_name(&p.target),
            patch_size(&p.patch)
        ),
        (_, None) => format!(
            "Rejecting {object} closes it ({} {}, {}); it has no suggested patch.",
            report.spec.workload.kind, report.spec.workload.name, report.spec.failure.class
        ),
    };
    if let (Decision::Approved, Some(p)) = (decision, suggestion) {
        let preview = read_target(client, &p.target).await;
        match &preview.live {
            Some(live) => {
                if let Err(how) = drift(&status, live) {
                    summary.push_str(&format!(
                        " Note: {} {how}; the operator reviews the patch again before applying it.",
                        target_name(&p.target)
                    ));
                }
                if let Err(e) = apply_to(live, &p.patch) {
                    summary.push_str(&format!(
                        " Note: the patch no longer applies to the live object ({e}), so the \
                         operator will mark the report Failed instead of applying it."
                    ));
                }
            }
            None if preview.unreadable.is_none() => summary.push_str(&format!(
                " Note: {} does not exist any more.",
                target_name(&p.target)
            )),
            None => {}
        }
    }
    summary
}

fn confirm(io: &mut Io<'_>, decision: Decision, unchanged: &str) -> Result<()> {
    let question = match decision {
        Decision::Approved => "Approve?",
        Decision::Rejected => "Reject?",
    };
    let yes = (io.confirm)(question).map_err(|e| failed(format!("cannot read the answer: {e}")))?;
    if !yes {
        return Err(failed(format!(
            "not confirmed: {unchanged} (--yes skips the question)"
        )));
    }
    Ok(())
}

/// One merge patch of `spec.decision`, pinned: the patch approved is the one read (its digest),
/// and the write fails if the report changed since (its resourceVersion).
async fn write_decision(
    client: &Client,
    report: &DiagnosticReport,
    decision: Decision,
    io: &mut Io<'_>,
) -> Result<()> {
    let (namespace, name) = (report.namespace().unwrap_or_default(), report.name_any());
    let object = format!("diagnosticreport {namespace}/{name}");
    let verb = match decision {
        Decision::Approved => "approve",
        Decision::Rejected => "reject",
    };
    let api: Api<DiagnosticReport> = Api::namespaced(client.clone(), &namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let mut body = json!({ "spec": { "decision": decision } });
    if let Some(version) = &report.metadata.resource_version {
        body["metadata"] = json!({ "resourceVersion": version });
    }
    let suggestion = report
        .status
        .as_ref()
        .and_then(|s| s.suggested_patch.as_ref());
    if let (Decision::Approved, Some(p)) = (decision, suggestion) {
        body["spec"]["approvedDigest"] = json!(p.digest());
    }
    api.patch(&name, &params, &Patch::Merge(&body))
        .await
        .map_err(|e| match e {
            // The CRD's CEL rule (a decision is final) and other validation: the server's words.
            kube::Error::Api(s) if s.code == 422 => failed(format!(
                "the API server refused spec.decision on {object}: {}",
                s.message
            )),
            kube::Error::Api(s) if s.code == 409 => failed(format!(
                "{object} changed while you decided (its patch or status moved on); nothing \
                 was written: read it again with `kubectl sre show {name} -n {namespace}`"
            )),
            e => api_error(
                e,
                &format!("cannot {verb} {object}"),
                &format!("patch {RESOURCE} in namespace {namespace}"),
                |_| format!("{object} was deleted before the decision was written"),
            ),
        })?;
    let done = match decision {
        Decision::Approved => "approved: the operator applies the patch next",
        Decision::Rejected => "rejected: nothing will be applied",
    };
    writeln!(io.out, "diagnosticreport.sre-operator.dev/{name} {done}")?;
    Ok(())
}

/// `approve NAME` / `reject NAME`: checks, a summary, a question, and the write.
async fn decide_one(
    client: &Client,
    namespace: &str,
    name: &str,
    args: &DecideArgs,
    decision: Decision,
    io: &mut Io<'_>,
) -> Result<()> {
    let report = get_report(client, namespace, name).await?;
    if let Some(why) = refusal(&report, decision, args.digest.as_deref()) {
        return Err(failed(why));
    }
    let summary = decision_summary(client, &report, decision).await;
    writeln!(io.out, "{summary}")?;
    if !args.yes {
        confirm(
            io,
            decision,
            &format!("diagnosticreport {namespace}/{name} is unchanged"),
        )?;
    }
    write_decision(client, &report, decision, io).await
}

/// `approve --incident INC` / `reject --incident INC`: every report of the incident in the
/// namespace that can take the decision, each summarised, one question, then each written
/// pinned to what was shown. The others are named with the reason they are left out.
async fn decide_incident(
    client: &Client,
    namespace: &str,
    incident: &str,
    args: &DecideArgs,
    decision: Decision,
    io: &mut Io<'_>,
) -> Result<()> {
    if args.digest.is_some() {
        return Err(super::Error::Usage(
            "--digest names one patch; with --incident each report's patch is shown and pinned"
                .into(),
        ));
    }
    let api: Api<DiagnosticReport> = Api::namespaced(client.clone(), namespace);
    let mut members: Vec<DiagnosticReport> = api
        .list(&ListParams::default())
        .await
        .map_err(|e| {
            api_error(
                e,
                &format!("cannot list the reports of namespace {namespace}"),
                &format!("list {RESOURCE} in namespace {namespace}"),
                |_| format!("namespace {namespace} does not exist"),
            )
        })?
        .items
        .into_iter()
        .filter(|r| r.status.as_ref().and_then(|s| s.incident.as_deref()) == Some(incident))
        .collect();
    members.sort_by_key(|r| r.name_any());
    // The name as typed is printed below: no control character reaches the terminal.
    let incident = crate::terminal::escape(incident);
    if members.is_empty() {
        return Err(failed(format!(
            "no report in namespace {namespace} belongs to incident {incident} (`kubectl sre list` \
             shows the incidents)"
        )));
    }
    let (ready, left): (Vec<_>, Vec<_>) = members
        .into_iter()
        .partition(|r| refusal(r, decision, None).is_none());
    for r in &left {
        if let Some(why) = refusal(r, decision, None) {
            writeln!(io.out, "Left out: {why}")?;
        }
    }
    if ready.is_empty() {
        return Err(failed(format!(
            "no report of incident {incident} in namespace {namespace} can be decided now"
        )));
    }
    for r in &ready {
        let summary = decision_summary(client, r, decision).await;
        writeln!(io.out, "{summary}")?;
    }
    if !args.yes {
        writeln!(
            io.out,
            "{} report(s) of incident {incident} in namespace {namespace}.",
            ready.len()
        )?;
        confirm(
            io,
            decision,
            &format!("the reports of incident {incident} are unchanged"),
        )?;
    }
    let mut failures = Vec::new();
    for r in &ready {
        if let Err(e) = write_decision(client, r, decision, io).await {
            failures.push(e.to_string());
        }
    }
    if !failures.is_empty() {
        return Err(failed(format!(
            "{} of {} decisions were not written: {}",
            failures.len(),
            ready.len(),
            failures.join("; ")
        )));
    }
    Ok(())
}

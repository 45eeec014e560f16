//! The CrashLoopBackOff playbook: read what the last run printed, find the cause it states, and
//! for a dependency that cannot be reached, check the Service behind the host name; a wrong host
//! or port in the container's env is fixed by a patch.

use regex::Regex;
use serde::Deserialize;
use serde_json::{Value, json};
use tool_shapes::{
    BackingPort, FoundService, IntOrString, SelectorMiss, ServiceCheck, ServicePort,
};

use super::clues::{Clue, Unreachable, is_ip, last_lines, read_clues};
use super::netpol::{Dropped, OnTheWay, dns_on_the_way, on_the_way};
use super::workload::{Template, fixed, guarded_replace, last_working_image, workload_template};
use super::{AgentError, Case, Conclusion, Session};
use super::{
    answer, container_status, failed_run_is_previous, failure_container, findings, no_fix,
    pod_container, waiting_message,
};
use crate::cluster::ResourceKind;
use crate::failure::{ExecFailure, PendingReason, Resolver, config_source};
use crate::names::NameRule;

/// The env var of the container whose value names `host`, with the value it should have.
fn env_naming_host(
    template: &Template,
    host: &str,
    replacement: &str,
) -> Option<(String, String, String)> {
    let pattern = Regex::new(&format!(
        r"(^|[/@:=,\s]){}($|[:/?,\s])",
        regex::escape(host)
    ))
    .ok()?;
    let env = template.get("/env")?.as_array()?;
    env.iter().enumerate().find_map(|(i, e)| {
        let value = e.get("value")?.as_str()?;
        if !pattern.is_match(value) {
            return None;
        }
        let new = pattern
            .replace_all(value, |c: &regex::Captures| {
                format!("{}{replacement}{}", &c[1], &c[2])
            })
            .into_owned();
        Some((
            format!("{}/env/{i}/value", template.container_path),
            value.to_string(),
            new,
        ))
    })
}

/// The env var whose value is exactly the port, to point it at another port.
fn env_with_port(template: &Template, port: u16) -> Option<(String, String)> {
    let env = template.get("/env")?.as_array()?;
    env.iter().enumerate().find_map(|(i, e)| {
        (e.get("value")?.as_str()? == port.to_string()).then(|| {
            (
                format!("{}/env/{i}/value", template.container_path),
                e["name"].as_str().unwrap_or("").to_string(),
            )
        })
    })
}

/// A match of `match_log_signatures` (the log-signatures plugin, in Python), as far as this
/// playbook cites it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SignatureMatch {
    signature: Option<String>,
    evidence: Option<String>,
}

pub(super) async fn crash_loop(case: &Case, s: &mut Session) -> Result<Conclusion, AgentError> {
    let container = failure_container(case);
    let pod = case.report.spec.pod.name.clone();
    let failure = &case.report.spec.failure;
    if failure.reason == "DeadlineExceeded" {
        let evidence: Vec<String> = failure.evidence.iter().take(4).cloned().collect();
        return Ok(no_fix(
            format!("Pod {pod} was stopped at its deadline: it ran longer than its activeDeadlineSeconds."),
            format!("The kubelet stopped Pod {pod} because it was active longer than its activeDeadlineSeconds; container {container}'s exit is the kill, not a crash."),
            evidence,
            "Raise the Pod's activeDeadlineSeconds (in the Job's or CronJob's template) if the work legitimately takes longer, or find what made this run slow (its log, the data it processed, a dependency that hung).".into(),
        ));
    }
    if failure.reason == "PostStartHookError" {
        return Ok(post_start_hook(case, &container));
    }
    let previous = failed_run_is_previous(case, &container);
    let logs = s
        .act(
            format!(
                "Container {container} exits with an error ({}).",
                failure.reason
            ),
            "A failing container is explained by what its failed run printed: read that run's log.",
            "fetch_logs",
            json!({"pod": pod, "container": container, "previous": previous, "lines": 100}),
        )
        .await?;
    let log_text = if logs.ok {
        logs.text.clone()
    } else {
        String::new()
    };
    let mut evidence: Vec<String> = failure.evidence.iter().take(3).cloned().collect();
    if s.plugins().tool("match_log_signatures").is_some() {
        let signatures = s
            .act(
                "The log is read.",
                "Match it against the catalogue of known failure signatures.",
                "match_log_signatures",
                json!({"pod": pod, "container": container, "previous": previous}),
            )
            .await?;
        for m in answer::<Vec<SignatureMatch>>(&signatures)
            .unwrap_or_default()
            .iter()
            .take(3)
        {
            if let (Some(sig), Some(line)) = (&m.signature, &m.evidence) {
                evidence.push(format!("log signature {sig}: {line}"));
            }
        }
    }
    // A command the runtime could not start leaves no log: its message is in the status.
    let said = runtime_messages(case, &container);
    let clues = read_clues(&format!("{log_text}\n{}", said.join("\n")));
    let Some((clue, line)) = clues.first().cloned() else {
        let tail = last_lines(&log_text, 3);
        evidence.extend(tail.iter().map(|l| format!("log: {l}")));
        if exited_successfully(case, &container) {
            return Ok(completes(case, &container, evidence));
        }
        let exit = failure.reason.clone();
        return Ok(no_fix(
            format!(
                "Container {container} {} ({exit}); its log names no known cause.",
                fails(case, &container)
            ),
            format!(
                "The container exits ({exit}) without a recognisable error in its last {} log lines.",
                tail.len()
            ),
            evidence,
            format!(
                "Read the full log with `kubectl logs {pod} -c {container}{} -n {}` and the application's own diagnostics.",
                if previous { " --previous" } else { "" },
                case.namespace()
            ),
        ));
    };
    // A termination message can repeat the log's tail (FallbackToLogsOnError): the log says it.
    if said.contains(&line) && !log_text.contains(line.as_str()) {
        if !evidence.iter().any(|e| e.contains(line.trim())) {
            evidence.push(format!("the runtime said: {}", line.trim()));
        }
    } else {
        evidence.push(format!("log: {}", line.trim()));
    }
    match clue {
        Clue::ConnectionRefused { .. }
        | Clue::DnsFailure { .. }
        | Clue::DnsUnanswered { .. }
        | Clue::ConnectTimeout { .. } => {
            let (host, port, how) = clue.unreachable().expect("a dependency's clue");
            dependency(case, s, &container, host, port, how, evidence).await
        }
        Clue::MissingSetting { name } => Ok(no_fix(
            format!("Container {container} exits because the setting {name} is missing."),
            format!(
                "The application requires {name}, which its environment or configuration does not provide."
            ),
            evidence,
            format!(
                "Set {name} in the container's env (from a ConfigMap or Secret) and roll out again."
            ),
        )),
        Clue::PermissionDenied { path } => {
            let at = path.map(|p| format!(" on {p}")).unwrap_or_default();
            Ok(no_fix(
                format!("Container {container} exits with permission denied{at}."),
                format!("The process cannot write or read{at} as the user it runs as (a volume owned by another user, or a read-only filesystem)."),
                evidence,
                "Give the Pod an fsGroup or runAsUser that owns the path, or mount a writable volume there; security contexts are not changed by the operator.".into(),
            ))
        }
        Clue::CannotExec(failure) => Ok(cannot_exec(case, &container, &failure, evidence)),
        Clue::CredentialsRejected { host } => {
            let at = host.map(|h| format!(" at {h}")).unwrap_or_default();
            Ok(no_fix(
                format!(
                    "Container {container} {}: the dependency{at} rejects its credentials.",
                    fails(case, &container)
                ),
                format!(
                    "The application's login{at} is refused: a rotated password, a Secret holding the wrong value, or a user that no longer exists."
                ),
                evidence,
                format!(
                    "Compare the credentials the workload reads (its env and the Secret behind it) with the ones the dependency{at} expects, and rotate both together; the operator does not read or write Secret values."
                ),
            ))
        }
        Clue::PrivilegesDenied { host } => {
            let at = host.map(|h| format!(" at {h}")).unwrap_or_default();
            Ok(no_fix(
                format!(
                    "Container {container} {}: the dependency{at} refuses its user a privilege it needs.",
                    fails(case, &container)
                ),
                format!(
                    "The application logs in{at}, but its user lacks the privilege for what it does: a role or grant was revoked, or it uses a database, schema or table it was never granted."
                ),
                evidence,
                "Grant the user the workload logs in as the privilege the log names (or restore the role that was revoked), in the database itself; the password is not at fault, and nothing in the workload's spec can fix it.".to_string(),
            ))
        }
        Clue::CertificateRejected { host } => {
            let of = host.map(|h| format!(" of {h}")).unwrap_or_default();
            Ok(no_fix(
                format!("Container {container} {}: it does not trust the certificate{of}.", fails(case, &container)),
                format!("The TLS handshake{of} fails: the certificate expired, or it is signed by a CA the container does not trust."),
                evidence,
                "Renew the certificate, or give the container the CA that signed it (a CA bundle from a ConfigMap or Secret, SSL_CERT_FILE); do not turn verification off.".into(),
            ))
        }
        Clue::DiskFull { path } => {
            let at = path.map(|p| format!(" at {p}")).unwrap_or_default();
            Ok(no_fix(
                format!("Container {container} {}: no space left on its disk{at}.", fails(case, &container)),
                format!("The filesystem the application writes{at} is full."),
                evidence,
                "Grow the volume (resize its PersistentVolumeClaim) or free it; for an emptyDir, raise its sizeLimit and the container's ephemeral-storage.".into(),
            ))
        }
        Clue::ResolverLoop => Ok(no_fix(
            format!(
                "Container {container} {}: CoreDNS stops on a forwarding loop, and the cluster's DNS lookups with it.",
                fails(case, &container)
            ),
            "CoreDNS's loop plugin found its own queries coming back: its Corefile forwards to the node's /etc/resolv.conf, which names a local stub resolver (127.0.0.53 of systemd-resolved, or another 127.0.0.x), that is CoreDNS itself as seen from its Pod. Every workload that looks up a name fails while it crash-loops.".into(),
            evidence,
            "Give CoreDNS a real upstream: set the kubelet's resolvConf to /run/systemd/resolve/resolv.conf on the nodes (systemd-resolved), or forward to upstream servers in the Corefile (ConfigMap coredns in kube-system) instead of /etc/resolv.conf; do not remove the loop plugin, which only reports the loop.".into(),
        )),
        Clue::PortInUse { port } => {
            let which = port
                .map(|p| format!("port {p}"))
                .unwrap_or("its port".into());
            Ok(no_fix(
                format!("Container {container} {}: {which} is already in use.", fails(case, &container)),
                format!("Another process holds {which}: another container of the Pod (a sidecar listening on the same port), or, with hostNetwork, another Pod on the node."),
                evidence,
                "Give each container of the Pod its own port; a hostNetwork Pod fits once per node and port.".into(),
            ))
        }
        Clue::MissingFile { path } => {
            missing_file(case, s, &container, &path, &line, evidence).await
        }
        Clue::BadConfigFile { path } => {
            bad_config_file(case, s, &container, path.as_deref(), &line, evidence).await
        }
        Clue::Crash { line } => crashed(case, s, &container, &line, evidence).await,
    }
}

/// Whether a command a report gives a person to paste may name `name` (a `kind`) in namespace
/// `ns`: only names the API server would accept, since a dump's are not validated and a shell
/// would run what a forged one carries.
fn pastable(kind: ResourceKind, name: &str, ns: &str) -> bool {
    NameRule::of(kind).allows(name) && NameRule::Dns1123Label.allows(ns)
}

/// Where the kubelet mounts a Pod's service account token.
const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount/";

/// A file the application opens is not there. Under a ConfigMap's or Secret's volume, the key
/// that would be that file is missing from the object: a volume without `items` shows each key
/// as a file and says nothing of keys it lacks, so the object's keys (one read; a Secret's
/// values are never read) tell. A service account token the Pod opted out of is that. Anywhere
/// else the image lacks the file: a crash of the release (rolled back after a rollout).
async fn missing_file(
    case: &Case,
    s: &mut Session,
    container: &str,
    path: &str,
    line: &str,
    mut evidence: Vec<String>,
) -> Result<Conclusion, AgentError> {
    let spec = case.pod.spec.as_ref();
    let ns = case.namespace();
    if path.starts_with(TOKEN_DIR)
        && spec.and_then(|s| s.automount_service_account_token) == Some(false)
    {
        evidence.push("the Pod sets automountServiceAccountToken: false".into());
        return Ok(no_fix(
            format!(
                "Container {container} {}: it reads a service account token the Pod does not mount.",
                fails(case, container)
            ),
            format!(
                "The application opens {path} (its Kubernetes API credentials), but the Pod sets automountServiceAccountToken: false, so the kubelet mounts no token."
            ),
            evidence,
            "Set automountServiceAccountToken: true on the Pod template (or its ServiceAccount) if the application calls the Kubernetes API, or configure it not to.".into(),
        ));
    }
    let source = spec
        .and_then(|spec| config_source(spec, container, Some(path)))
        .filter(|source| source.certain);
    let Some(source) = source else {
        evidence.push(format!(
            "{path} is on no ConfigMap or Secret volume of container {container}: it would come with the image"
        ));
        return crashed(case, s, container, line.trim(), evidence).await;
    };
    let (kind, name) = (source.kind, source.name.clone());
    let describe = if kind.parse().is_ok_and(|k| pastable(k, &name, ns)) {
        format!(
            " (`kubectl describe {} {name} -n {ns}` lists its keys)",
            kind.to_lowercase()
        )
    } else {
        String::new()
    };
    let Some(key) = source.key.clone() else {
        evidence.push(format!("{path} is inside the volume of {kind} {name}"));
        return Ok(no_fix(
            format!(
                "Container {container} {}: it cannot find {path}, inside the volume of {kind} {name}.",
                fails(case, container)
            ),
            format!(
                "The application opens {path}, in the volume of {kind} {name}, which puts no file there: the volume's items do not map a key to that path."
            ),
            evidence,
            format!(
                "Map the key the application needs to {path} in the volume's items, or add it to {kind} {name}{describe}."
            ),
        ));
    };
    let read = s
        .act(
            format!("{path} would be key {key} of {kind} {name}."),
            format!("Does {kind} {name} have key {key}? Read its keys (never a Secret's values)."),
            "inspect_object",
            json!({"kind": kind, "name": name}),
        )
        .await?;
    let keys: Option<Vec<String>> = answer::<Value>(&read).map(|object| {
        ["data", "binaryData", "stringData"]
            .iter()
            .filter_map(|field| object[field].as_object())
            .flat_map(|map| map.keys().cloned())
            .collect()
    });
    match keys {
        Some(keys) if !keys.contains(&key) => {
            let listed = if keys.is_empty() {
                "none".to_string()
            } else {
                keys.join(", ")
            };
            evidence.push(format!("{kind} {name} has keys: {listed}"));
            Ok(no_fix(
                format!(
                    "Container {container} {}: {path} is missing because {kind} {name} has no key {key}.",
                    fails(case, container)
                ),
                format!(
                    "The application reads {path}, which the volume of {kind} {name} would hold as key {key}; {kind} {name} has no such key (its keys: {listed}), so the file is absent. A volume without items mounts the keys there are and reports nothing about others."
                ),
                evidence,
                format!(
                    "Add key {key} to {kind} {name} in namespace {ns} where it is managed (or point the application at the file a key that exists becomes); the Pods see it at their next start. The operator does not write {kind}s."
                ),
            ))
        }
        _ => {
            evidence.push(format!("{path} is key {key} of {kind} {name}'s volume"));
            Ok(no_fix(
                format!(
                    "Container {container} {}: it cannot find {path}, which key {key} of {kind} {name} should provide.",
                    fails(case, container)
                ),
                format!(
                    "The application opens {path}, the file key {key} of {kind} {name} becomes in its volume, and the file is not there: {kind} {name} lacks the key, or could not be read to tell."
                ),
                evidence,
                format!(
                    "Check that {kind} {name} has key {key}{describe}, and add it where the {kind} is managed."
                ),
            ))
        }
    }
}

/// The application cannot parse a configuration file. From a ConfigMap or Secret, that object's
/// content is the cause (an edit, not a release), which the operator does not write; from the
/// image, it is the release's, handled like any crash at start-up (rolled back when a rollout
/// broke it).
async fn bad_config_file(
    case: &Case,
    s: &mut Session,
    container: &str,
    path: Option<&str>,
    line: &str,
    mut evidence: Vec<String>,
) -> Result<Conclusion, AgentError> {
    let line = line.trim();
    let source = case
        .pod
        .spec
        .as_ref()
        .and_then(|spec| config_source(spec, container, path));
    let Some(source) = source else {
        let what = match path {
            Some(path) => format!("{path}, which comes with its image"),
            None => "its configuration".to_string(),
        };
        evidence.push(format!("container {container} cannot parse {what}"));
        return crashed(case, s, container, line, evidence).await;
    };
    let ns = case.namespace();
    let object = source.describe();
    let file = path.map(|p| format!("{p}, ")).unwrap_or_default();
    let (summary, root_cause) = if source.certain {
        evidence.push(format!("{file}mounted from {object}"));
        (
            format!(
                "Container {container} {}: it cannot parse {file}which {object} provides.",
                fails(case, container)
            ),
            format!(
                "The content of {object} is not valid for the application ({line}): it reads the file at start-up and exits. An edit of the {kind}, not a change to the workload, broke it; every workload that mounts it fails alike.",
                kind = source.kind
            ),
        )
    } else {
        evidence.push(format!(
            "container {container} mounts one {}: {}",
            source.kind, source.name
        ));
        (
            format!(
                "Container {container} {}: it cannot parse its configuration, most likely from {object}, the only {} it mounts.",
                fails(case, container),
                source.kind
            ),
            format!(
                "The application cannot parse its configuration ({line}) and exits; the log names no file, and {object} is the only {} it mounts, so its content is the likely cause.",
                source.kind
            ),
        )
    };
    // The command only for names the API would accept: a dump's are not validated.
    let edit = if source
        .kind
        .parse()
        .is_ok_and(|k| pastable(k, &source.name, ns))
    {
        format!(
            ", or `kubectl edit {} {} -n {ns}`",
            source.kind.to_lowercase(),
            source.name
        )
    } else {
        String::new()
    };
    Ok(no_fix(
        summary,
        root_cause,
        evidence,
        format!(
            "Correct {object} in namespace {ns} where it is managed (its Git source or Helm values{edit}), or restore its last working content; the Pods read it again when they restart. The operator does not write {}s.",
            source.kind
        ),
    ))
}

/// The application crashes. When the rollout that changed the container's image broke it (an
/// older revision ran another image with ready Pods), rolling the image back is the mitigation
/// while the release is fixed; otherwise the crash is explained.
async fn crashed(
    case: &Case,
    s: &mut Session,
    container: &str,
    line: &str,
    evidence: Vec<String>,
) -> Result<Conclusion, AgentError> {
    let image = pod_container(case, container).and_then(|c| c.image.clone());
    let rollback = match &image {
        Some(image) => {
            last_working_image(
                case,
                s,
                container,
                image,
                format!("Container {container} crashes at start-up on image {image}."),
                |_| true,
            )
            .await?
        }
        None => None,
    };
    let (Some(image), Some(rollback)) = (image, rollback) else {
        return Ok(no_fix(
            format!("Container {container} crashes: {line}"),
            format!("The application fails at start-up with: {line}"),
            evidence,
            "This is an application error; look at the stack trace and the release that introduced it (`kubectl rollout history`).".into(),
        ));
    };
    let summary = format!("Container {container} crashes since the rollout to {image}: {line}");
    let root_cause = format!(
        "The rollout to {image} brought a crash at start-up ({line}); revision {} ran {} with ready Pods.",
        rollback.revision, rollback.image
    );
    rollback
        .conclude(
            case,
            s,
            container,
            &image,
            findings(summary, root_cause, evidence),
            format!("fix the crash in {image}"),
        )
        .await
}

/// The container's postStart hook fails, and the kubelet kills the container for it: the
/// hook's handler from the spec, its failure from the kubelet (the waiting message or the
/// `FailedPostStartHook` event), and the command it could not run when that is the cause.
fn post_start_hook(case: &Case, container: &str) -> Conclusion {
    let failure = &case.report.spec.failure;
    let evidence: Vec<String> = failure.evidence.iter().take(4).cloned().collect();
    let handler = pod_container(case, container)
        .and_then(|c| c.lifecycle.as_ref()?.post_start.as_ref())
        .map(|h| {
            if let Some(exec) = &h.exec {
                format!(
                    "exec {:?}",
                    exec.command.clone().unwrap_or_default().join(" ")
                )
            } else if let Some(http) = &h.http_get {
                format!("httpGet {}", http.path.as_deref().unwrap_or("/"))
            } else {
                "its handler".to_string()
            }
        })
        .unwrap_or("its handler".into());
    let said = failure
        .evidence
        .iter()
        .find(|e| e.contains("FailedPostStartHook") || e.contains("lifecycle hook"))
        .cloned()
        .unwrap_or_else(|| waiting_message(case, container));
    let why = match ExecFailure::parse(&said) {
        Some(f) => format!(
            ": the hook's command {} cannot run ({})",
            f.command().map(|c| format!("{c:?}")).unwrap_or_default(),
            f.reason()
        ),
        None => String::new(),
    };
    no_fix(
        format!("Container {container} is killed because its postStart hook fails{why}."),
        format!(
            "The kubelet runs container {container}'s postStart hook ({handler}) as the container starts; the hook fails{why}, so the kubelet kills the container and restarts it. The application itself may be fine."
        ),
        evidence,
        "Fix the hook (its command must exist in the image and exit 0; an httpGet must answer 2xx), or remove it: start-up work that may fail belongs in the application or an init container.".into(),
    )
}

/// "crash-loops", or "failed" for a container that is not restarted (a failed Job's Pod); what
/// an init container that never completes and a container whose health check fails do instead.
fn fails(case: &Case, container: &str) -> &'static str {
    if case.report.spec.failure.reason == PendingReason::InitContainerRunning.as_str() {
        "never completes"
    } else if case.report.spec.failure.class == crate::crd::FailureClass::ProbeFailure {
        "fails its health check"
    } else if failed_run_is_previous(case, container) {
        "crash-loops"
    } else {
        "failed"
    }
}

/// Whether the container's last run ended with exit code 0: it finished, nothing failed.
fn exited_successfully(case: &Case, container: &str) -> bool {
    container_status(case, container)
        .and_then(|cs| cs.last_state.as_ref()?.terminated.as_ref())
        .is_some_and(|t| t.exit_code == 0)
}

/// A container of a long-running workload whose process ends with success, and is restarted for
/// it: a task (a script, a migration) run as a server, or a server that daemonizes and returns.
/// Which command it should run is the owner's to say, so nothing is patched.
fn completes(case: &Case, container: &str, mut evidence: Vec<String>) -> Conclusion {
    let w = &case.report.spec.workload;
    let spec = pod_container(case, container);
    let command: Vec<String> = spec
        .into_iter()
        .flat_map(|c| c.command.iter().flatten().chain(c.args.iter().flatten()))
        .cloned()
        .collect();
    if !command.is_empty() {
        let shown: String = command.join(" ").chars().take(200).collect();
        evidence.push(format!("container {container} runs: {shown}"));
    }
    no_fix(
        format!(
            "Container {container} exits successfully (exit code 0) and {} {} restarts it: it crash-loops although nothing fails.",
            w.kind, w.name
        ),
        format!(
            "Container {container}'s main process ends with exit code 0: it runs a task that finishes (a script, a migration, a one-off command), or starts its server in the background and returns (a server that daemonizes, a shell that starts it with &). The Pod restarts containers that end, whatever their exit code, so a finished task is started again with a growing back-off."
        ),
        evidence,
        format!(
            "If container {container} runs a one-off task, run it as a Job (or as an init container of the workload it prepares); if it should serve, keep its server in the foreground (its command and args, or the image's entrypoint)."
        ),
    )
}

/// What the kubelet and the runtime said about the container: its waiting message and its
/// terminated states' messages (a `StartError`'s reason to be is there, not in the log).
fn runtime_messages(case: &Case, container: &str) -> Vec<String> {
    let states = container_status(case, container)
        .into_iter()
        .flat_map(|cs| [cs.state.as_ref(), cs.last_state.as_ref()])
        .flatten();
    states
        .flat_map(|s| {
            [
                s.waiting.as_ref().and_then(|w| w.message.clone()),
                s.terminated.as_ref().and_then(|t| t.message.clone()),
            ]
        })
        .flatten()
        .collect()
}

/// The command cannot run: say which, what it means for the image, and what to change.
pub(super) fn cannot_exec(
    case: &Case,
    container: &str,
    failure: &ExecFailure,
    evidence: Vec<String>,
) -> Conclusion {
    let image = pod_container(case, container)
        .and_then(|c| c.image.clone())
        .unwrap_or_else(|| "its image".into());
    let what = failure
        .command()
        .map(|c| format!("command {c:?}"))
        .unwrap_or("its command".into());
    let (summary, root_cause, recommendation) = match failure {
        ExecFailure::NotFound { .. } => (
            format!("Container {container} cannot start: {what} not found."),
            format!(
                "The {what} does not exist in image {image} (not at that path, or not in $PATH; a script whose interpreter is missing reads the same)."
            ),
            "Fix the container's command or args, or use an image that contains the binary (compare with the image the last working revision ran).",
        ),
        ExecFailure::NotExecutable { .. } => (
            format!("Container {container} cannot start: {what} is not executable."),
            format!(
                "The {what} exists in image {image} but may not be executed: it lacks the execute bit, or it sits on a noexec mount."
            ),
            "Make the file executable in the image (`chmod +x` in its build), or run it through its interpreter in the container's command.",
        ),
        ExecFailure::WrongArchitecture { .. } => (
            format!(
                "Container {container} cannot start: {what} is built for another CPU architecture."
            ),
            format!(
                "The runtime cannot execute {what} in image {image} (exec format error): the image holds no variant for the node's architecture."
            ),
            "Build and push the image for the nodes' architecture (a multi-arch manifest), or schedule the workload on nodes of the image's architecture (kubernetes.io/arch).",
        ),
        ExecFailure::NoCommand => (
            format!("Container {container} cannot start: nothing says what to run."),
            format!(
                "Neither the container's command nor image {image} (ENTRYPOINT/CMD) names a process to run."
            ),
            "Set the container's command, or use an image with an ENTRYPOINT or CMD.",
        ),
    };
    no_fix(summary, root_cause, evidence, recommendation.into())
}

/// The log names a host the container cannot reach: check the Service of that name, and fix a
/// wrong host or port in the container's env when the cluster shows the right one.
pub(super) async fn dependency(
    case: &Case,
    s: &mut Session,
    container: &str,
    host: &str,
    port: Option<u16>,
    how: Unreachable,
    mut evidence: Vec<String>,
) -> Result<Conclusion, AgentError> {
    let endpoint = match port {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let what = how.what();
    if is_ip(host) {
        return Ok(no_fix(
            format!("Container {container} cannot reach {endpoint} ({what})."),
            format!(
                "Nothing accepts connections on {endpoint}, an IP address the operator cannot map to a Service."
            ),
            evidence,
            format!("Find which workload should listen on {endpoint} and why it does not."),
        ));
    }
    // Only a Service of the Pod's own namespace is checked, or offered in its place: the
    // operator reads no other namespace's Services for a tenant. An unnamed host (busybox's
    // unanswered lookup) is none either.
    let service = crate::names::service_host(host, case.namespace());
    let Some(service_name) = service
        .as_ref()
        .filter(|svc| svc.certain && svc.namespace == case.namespace())
        .map(|svc| svc.name.clone())
    else {
        if how == Unreachable::LookupUnanswered {
            return lookup_unanswered(case, s, container, host, &endpoint, evidence).await;
        }
        return Ok(outside_namespace(
            case, container, &endpoint, how, service, evidence,
        ));
    };
    let check = s
        .act(
            format!("The log says {what} to {endpoint}."),
            format!("{service_name} should be a Service in namespace {}: check it exists, has ready endpoints and serves that port.", case.namespace()),
            "check_service",
            json!({"name": service_name}),
        )
        .await?;
    let Some(svc) = answer::<ServiceCheck>(&check) else {
        return Ok(no_fix(
            format!("Container {container} cannot reach {endpoint} ({what})."),
            format!("The dependency {endpoint} is unreachable."),
            evidence,
            format!("Check Service {service_name}: {}", check.text),
        ));
    };
    let ns = case.namespace();
    if how == Unreachable::LookupUnanswered {
        if let Some(found) = svc.found.as_ref().filter(|_| svc.exists) {
            evidence.push(format!(
                "Service {service_name} exists in {ns} with {} ready endpoint(s): the name is right",
                found.ready_endpoints
            ));
        }
        return lookup_unanswered(case, s, container, host, &endpoint, evidence).await;
    }
    // The name resolved (a lookup that fails says so), so it is no Service of this namespace
    // but a host elsewhere, and the way to it drops the connection.
    if how == Unreachable::TimedOut && !svc.exists {
        evidence.push(format!(
            "namespace {ns} has no Service named {service_name}"
        ));
        return Ok(no_fix(
            format!(
                "Container {container} {}: connections to {endpoint} time out.",
                fails(case, container)
            ),
            format!(
                "Nothing answers the application's connections to {endpoint}, a host outside namespace {ns}: an egress NetworkPolicy or a firewall drops them, or the host is down."
            ),
            evidence,
            format!(
                "Check that {endpoint} is up and reachable from the cluster, and that no egress NetworkPolicy in {ns} (`kubectl get networkpolicy -n {ns}`) or firewall drops the traffic."
            ),
        ));
    }
    if !svc.exists {
        evidence.push(format!(
            "namespace {ns} has no Service named {service_name}"
        ));
        let similar: Vec<(String, Vec<u16>)> = svc
            .similar
            .iter()
            .map(|s| (s.name.clone(), port_numbers(&s.ports)))
            .collect();
        // A similar name that serves the port the app wants is the likely intended Service.
        let best = similar
            .iter()
            .find(|(_, p)| port.is_none_or(|want| p.contains(&want)))
            .cloned();
        let Some((right, right_ports)) = best else {
            return Ok(no_fix(
                format!(
                    "Container {container} cannot reach {endpoint}: Service {service_name} does not exist."
                ),
                format!(
                    "The application connects to {endpoint}, but namespace {ns} has no Service named {service_name} and none with a similar name."
                ),
                evidence,
                format!(
                    "Create Service {service_name} for the dependency, or point the application at the right host."
                ),
            ));
        };
        evidence.push(format!(
            "Service {right} exists with port(s) {}",
            right_ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let root_cause = format!(
            "The application connects to {endpoint}, but namespace {ns} has no Service named {service_name}; Service {right} serves that port: the configured host names the wrong Service."
        );
        let summary = format!(
            "Container {container} {}: {what} to {endpoint} because Service {service_name} does not exist (did you mean {right}?).",
            fails(case, container)
        );
        let Some(template) = workload_template(case, s, container).await? else {
            return Ok(no_fix(
                summary,
                root_cause,
                evidence,
                format!("Point the application at {right} instead of {service_name}."),
            ));
        };
        let Some((path, old, new)) = env_naming_host(&template, host, &right) else {
            return Ok(no_fix(
                summary,
                root_cause,
                evidence,
                format!(
                    "No env var of container {container} holds {host}; change the application's configuration to use {right}."
                ),
            ));
        };
        let name = template
            .object
            .pointer(&path.replace("/value", "/name"))
            .and_then(Value::as_str)
            .unwrap_or("the variable")
            .to_string();
        evidence.push(format!(
            "{} {} sets {name}={old}",
            case.report.spec.workload.kind, case.report.spec.workload.name
        ));
        let explanation = format!(
            "Set {name} from {old:?} to {new:?}, the Service that exists and serves {endpoint}'s port."
        );
        return Ok(fixed(
            case,
            findings(summary, root_cause, evidence),
            guarded_replace(path, json!(old), json!(new)),
            explanation,
        ));
    }
    let found = svc.found.unwrap_or_default();
    let ports = port_numbers(&found.ports);
    let ready = found.ready_endpoints;
    if ready == 0
        && let Some(miss) = found.selector_misses.iter().find(|m| m.ready > 0)
    {
        return Ok(selector_miss(
            case,
            container,
            &endpoint,
            &service_name,
            miss,
            evidence,
        ));
    }
    if ready == 0 {
        let backing = if found.not_ready_pods.is_empty() {
            format!(
                "its selector {} matches no Pod",
                serde_json::to_string(&found.selector).unwrap_or_default()
            )
        } else {
            format!("its Pods {} are not ready", found.not_ready_pods.join(", "))
        };
        evidence.push(format!(
            "Service {service_name} has no ready endpoints: {backing}"
        ));
        return Ok(no_fix(
            format!(
                "Container {container} {}: Service {service_name} has no ready endpoints.",
                fails(case, container)
            ),
            format!(
                "The dependency {service_name} is down: Service {service_name} exists but {backing}, so {endpoint} refuses connections."
            ),
            evidence,
            format!(
                "Fix the workload behind Service {service_name} first (`kubectl get pods -l <selector> -n {ns}`); this Pod recovers once it is ready."
            ),
        ));
    }
    if let Some(want) = port.filter(|p| !ports.is_empty() && !ports.contains(p)) {
        let listed = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        evidence.push(format!(
            "Service {service_name} serves port(s) {listed}, not {want}"
        ));
        let summary = format!(
            "Container {container} connects to {service_name} on port {want}, but the Service serves {listed}."
        );
        let root_cause = format!(
            "Port mismatch: the application uses {endpoint}, while Service {service_name} listens on {listed}."
        );
        if ports.len() == 1
            && let Some(template) = workload_template(case, s, container).await?
        {
            let right = ports[0];
            let env_fix = env_with_port(&template, want)
                .map(|(path, name)| (path, want.to_string(), right.to_string(), name))
                .or_else(|| {
                    env_naming_host(
                        &template,
                        &format!("{host}:{want}"),
                        &format!("{host}:{right}"),
                    )
                    .map(|(path, old, new)| (path.clone(), old, new, "the variable".into()))
                });
            if let Some((path, old, new, name)) = env_fix {
                let explanation = format!(
                    "Point {name} at port {right}, the port Service {service_name} serves."
                );
                return Ok(fixed(
                    case,
                    findings(summary, root_cause, evidence),
                    guarded_replace(path, json!(old), json!(new)),
                    explanation,
                ));
            }
        }
        return Ok(no_fix(
            summary,
            root_cause,
            evidence,
            format!("Configure the application to use port {listed} of {service_name}."),
        ));
    }
    if let Some(served) = found.port(port)
        && found.reaches_backing_port(served) == Some(false)
    {
        return Ok(target_port_mismatch(
            case,
            container,
            &endpoint,
            &service_name,
            &found,
            served,
            evidence,
        ));
    }
    evidence.push(format!(
        "Service {service_name} has {ready} ready endpoint(s) on port(s) {:?}",
        ports
    ));
    if how == Unreachable::TimedOut {
        let summary = format!(
            "Container {container} {}: connections to {endpoint} time out although Service {service_name} has ready endpoints.",
            fails(case, container)
        );
        match on_the_way(case, s, &service_name, port, &found.selector).await? {
            OnTheWay::Dropped(dropped) => {
                return Ok(dropped_by_policy(
                    case,
                    container,
                    &format!("its connections to {endpoint}"),
                    dropped,
                    evidence,
                ));
            }
            OnTheWay::Admitted(read) => {
                evidence.push(read);
                return Ok(no_fix(
                    summary,
                    format!(
                        "Service {service_name} has {ready} ready endpoint(s) on the port the application uses, yet its connections to {endpoint} go unanswered, and no NetworkPolicy of {ns} drops them: the Service's Pods accept no connections on that port (a process bound to localhost, a full accept queue), or a firewall or the CNI drops them."
                    ),
                    evidence,
                    format!(
                        "From another Pod of {ns}, connect to a Pod of Service {service_name} directly on its port; check what it listens on (localhost or all addresses) and the nodes' firewall and CNI."
                    ),
                ));
            }
            OnTheWay::Unknown => {}
        }
        return Ok(no_fix(
            summary,
            format!(
                "Service {service_name} has {ready} ready endpoint(s) on the port the application uses, yet its connections to {endpoint} go unanswered: traffic is dropped on the way, most often by a NetworkPolicy that selects {service_name}'s Pods and admits nothing from this one (or an egress policy on this Pod)."
            ),
            evidence,
            format!(
                "Find the NetworkPolicies in {ns} that select Service {service_name}'s Pods (`kubectl get networkpolicy -n {ns}`) and add an ingress rule that admits container {container}'s Pod on port {}; check egress policies that select this Pod too.",
                port.map_or_else(|| "its port".to_string(), |p| p.to_string())
            ),
        ));
    }
    if how == Unreachable::Lookup {
        return Ok(no_fix(
            format!(
                "Container {container} {}: {host} does not resolve although Service {service_name} has ready endpoints.",
                fails(case, container)
            ),
            format!(
                "The DNS answers that {host} does not exist, yet Service {service_name} exists in {ns} with {ready} ready endpoint(s): the host names another namespace or cluster domain than the Service's, or the Pod's DNS settings (dnsPolicy, dnsConfig searches) do not resolve Service names."
            ),
            evidence,
            format!(
                "Compare the host the application uses ({host}) with the Service's name ({service_name}.{ns}.svc), and check the Pod's dnsPolicy and dnsConfig."
            ),
        ));
    }
    Ok(no_fix(
        format!(
            "Container {container} gets {what} from {endpoint} although Service {service_name} has ready endpoints."
        ),
        format!(
            "Service {service_name} exists with {ready} ready endpoint(s), yet {endpoint} refused the connection: its targetPort may not match what the backing Pods listen on, or a NetworkPolicy blocks the traffic."
        ),
        evidence,
        format!(
            "Compare Service {service_name}'s targetPort with the backing containers' ports, and check NetworkPolicies in {ns}."
        ),
    ))
}

/// A dependency outside the failing Pod's namespace: a Service of another namespace (or, for
/// `name.x`, a host outside the cluster), or a host outside the cluster. It is named, not
/// checked, and no Service of this namespace is offered in its place.
fn outside_namespace(
    case: &Case,
    container: &str,
    endpoint: &str,
    how: Unreachable,
    service: Option<crate::names::ServiceHost>,
    evidence: Vec<String>,
) -> Conclusion {
    let ns = case.namespace();
    let (what_it_is, check) = match &service {
        Some(svc) => (
            format!(
                "Service {} of namespace {}{}",
                svc.name,
                svc.namespace,
                if svc.certain {
                    ""
                } else {
                    " (or a host outside the cluster)"
                }
            ),
            format!(
                "Check in namespace {} that Service {} exists, has ready endpoints and serves the port (`kubectl get service {} -n {}`), and that no NetworkPolicy drops traffic from {ns}; the operator reads only namespace {ns}.",
                svc.namespace, svc.name, svc.name, svc.namespace
            ),
        ),
        None => (
            "a host outside the cluster".to_string(),
            format!(
                "Check that {endpoint} resolves and answers from the cluster, and that no egress NetworkPolicy in {ns} or firewall drops the traffic."
            ),
        ),
    };
    let happened = match how {
        Unreachable::Lookup => "the name does not resolve".to_string(),
        Unreachable::Refused => "nothing accepts the connection".to_string(),
        Unreachable::TimedOut | Unreachable::LookupUnanswered => {
            "nothing answers: the traffic is dropped on the way, or the host is down".to_string()
        }
    };
    no_fix(
        format!(
            "Container {container} {}: it cannot reach {endpoint} ({}).",
            fails(case, container),
            how.what()
        ),
        format!(
            "The application's dependency {endpoint} is {what_it_is}, outside namespace {ns}, and {happened}."
        ),
        evidence,
        check,
    )
}

/// The conclusion when a NetworkPolicy drops `what` (its connections to X, its DNS lookups): the
/// policy named, no patch (opening traffic is a person's decision, and not this workload's).
fn dropped_by_policy(
    case: &Case,
    container: &str,
    what: &str,
    dropped: Dropped,
    mut evidence: Vec<String>,
) -> Conclusion {
    evidence.push(dropped.evidence);
    no_fix(
        format!(
            "Container {container} {}: NetworkPolicy {} drops {what}.",
            fails(case, container),
            dropped.policy
        ),
        dropped.root_cause,
        evidence,
        dropped.recommendation,
    )
}

/// A lookup the Pod's DNS server did not answer (or failed): the resolver is the cause, not the
/// name, so no similar Service is suggested and nothing of the workload is patched. Which
/// server that is follows from the Pod's `dnsPolicy`.
async fn lookup_unanswered(
    case: &Case,
    s: &mut Session,
    container: &str,
    host: &str,
    endpoint: &str,
    mut evidence: Vec<String>,
) -> Result<Conclusion, AgentError> {
    let ns = case.namespace();
    let resolver = case
        .pod
        .spec
        .as_ref()
        .map(Resolver::of)
        .unwrap_or(Resolver::Cluster);
    // The cluster DNS is reached through the namespace's egress policies: one that admits no
    // lookup is the cause, whatever the DNS server does.
    if resolver == Resolver::Cluster {
        match dns_on_the_way(case, s).await? {
            OnTheWay::Dropped(dropped) => {
                return Ok(dropped_by_policy(
                    case,
                    container,
                    "its DNS lookups",
                    dropped,
                    evidence,
                ));
            }
            OnTheWay::Admitted(read) => evidence.push(read),
            OnTheWay::Unknown => {}
        }
    }
    let described = resolver.describe();
    let check = match resolver {
        Resolver::Cluster => format!(
            "Check the cluster DNS: `kubectl -n kube-system get pods -l k8s-app=kube-dns`, their logs, and the endpoints of Service kube-dns; check that egress NetworkPolicies in {ns} admit UDP and TCP port 53 to kube-system."
        ),
        _ => format!(
            "Check that {described} is up and reachable from the Pod on UDP and TCP port 53."
        ),
    };
    let (of, here) = match host {
        "" => (String::new(), String::new()),
        _ => (format!(" of {host}"), format!(" (here {endpoint})")),
    };
    Ok(no_fix(
        format!(
            "Container {container} {}: its DNS lookups{of} go unanswered.",
            fails(case, container)
        ),
        // Not the name's: workloads that look up other names share this cause (one incident).
        format!(
            "DNS lookups go unanswered: {described} does not answer the Pod's lookups (they time out or fail with a server error), so the application cannot reach its dependencies by name{here}, whether or not the names are right. The DNS server is down or overloaded, or a NetworkPolicy drops the Pod's DNS traffic."
        ),
        evidence,
        format!("{check} The workload needs no change: it recovers once its lookups are answered."),
    ))
}

/// A Service whose selector misses ready Pods by one label: it has no endpoints, so its clients
/// are refused although what should back it runs. Like a wrong targetPort, the fix is the
/// Service's (or the Pods' labels), which the operator does not patch.
fn selector_miss(
    case: &Case,
    container: &str,
    endpoint: &str,
    service_name: &str,
    miss: &SelectorMiss,
    mut evidence: Vec<String>,
) -> Conclusion {
    let ns = case.namespace();
    let (key, selected) = (&miss.key, &miss.selected);
    let pods = miss.pods.join(", ");
    let carry = match &miss.pods_have {
        Some(have) => format!("carry {key}={have}"),
        None => format!("have no label {key}"),
    };
    evidence.push(format!(
        "Service {service_name} selects {key}={selected} and matches no Pod; Pods {pods} ({} ready) {carry}",
        miss.ready
    ));
    // The command only for what the API would accept: a person may paste it into a shell.
    let label = |t: &str| {
        !t.is_empty()
            && t.len() <= 253
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    };
    let command_ok = pastable(ResourceKind::Service, service_name, ns)
        && label(key)
        && miss.pods_have.as_deref().is_none_or(label);
    let pointer = format!(
        "/spec/selector/{}",
        key.replace('~', "~0").replace('/', "~1")
    );
    let command = match (&miss.pods_have, command_ok) {
        (Some(have), true) => format!(
            " (`kubectl patch service {service_name} -n {ns} --type json -p '[{{\"op\":\"replace\",\"path\":\"{pointer}\",\"value\":\"{have}\"}}]'`)"
        ),
        (None, true) => format!(
            " (`kubectl patch service {service_name} -n {ns} --type json -p '[{{\"op\":\"remove\",\"path\":\"{pointer}\"}}]'`)"
        ),
        (_, false) => String::new(),
    };
    let change = match &miss.pods_have {
        Some(have) => format!("select {key}={have}{command}, or relabel the Pods' template"),
        None => {
            format!("drop {key} from the selector{command}, or add the label to the Pods' template")
        }
    };
    no_fix(
        format!(
            "Container {container} {}: Service {service_name} selects no Pod, while Pods {pods} {carry}.",
            fails(case, container)
        ),
        format!(
            "Service {service_name}'s selector {key}={selected} matches no Pod: the Pods that should back it ({pods}) {carry}, so the Service has no endpoints and {endpoint} refuses connections although they run."
        ),
        evidence,
        format!(
            "Make the selector and the labels agree: {change}. Every client of {service_name} recovers without a change of its own. The operator patches only the failing Pod's own workload, so it offers no patch for the Service."
        ),
    )
}

/// A Service whose port forwards to a `targetPort` its ready Pods do not declare: the
/// connection reaches a port nothing listens on. The fix is the Service's, which the operator
/// does not patch (only the failing Pod's own workload is ever patched), so it is advice with
/// the command.
fn target_port_mismatch(
    case: &Case,
    container: &str,
    endpoint: &str,
    service_name: &str,
    found: &FoundService,
    served: &ServicePort,
    mut evidence: Vec<String>,
) -> Conclusion {
    let index = found
        .ports
        .iter()
        .position(|p| p == served)
        .unwrap_or_default();
    let port = served.port.unwrap_or_default();
    let target = match &served.target_port {
        Some(IntOrString::Int(n)) => n.to_string(),
        Some(IntOrString::String(name)) => format!("{name:?}"),
        None => port.to_string(),
    };
    let declared = found
        .backing_ports
        .iter()
        .map(|b| match &b.name {
            Some(name) => format!("{} ({name})", b.container_port),
            None => b.container_port.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let pods = found.ready_pods.join(", ");
    evidence.push(format!(
        "Service {service_name} forwards port {port} to targetPort {target}; its ready Pods ({pods}) declare {declared}"
    ));
    // One declared port is the one to point at: by name when it has one, as the Service's
    // other ports usually do. The command is given only for names the API would accept: a
    // dump's are not validated, and a person may paste it into a shell.
    let ns = case.namespace();
    let port_pastable = |only: &BackingPort| {
        pastable(ResourceKind::Service, service_name, ns)
            && only
                .name
                .as_deref()
                .is_none_or(|n| n.len() <= 15 && NameRule::Dns1123Label.allows(n))
    };
    let fix = match found.backing_ports.as_slice() {
        [only] if port_pastable(only) => {
            let value = only
                .name
                .as_ref()
                .map(|n| json!(n))
                .unwrap_or(json!(only.container_port));
            format!(
                "Point Service {service_name}'s port {port} at the port its Pods listen on: `kubectl patch service {service_name} -n {ns} --type json -p '[{{\"op\":\"replace\",\"path\":\"/spec/ports/{index}/targetPort\",\"value\":{value}}}]'`. "
            )
        }
        _ => format!(
            "Set Service {service_name}'s targetPort for port {port} to the container port its Pods serve it on ({declared}). "
        ),
    };
    no_fix(
        format!(
            "Container {container} {}: Service {service_name} sends port {port} to targetPort {target}, which its Pods do not declare.",
            fails(case, container)
        ),
        format!(
            "Service {service_name}'s targetPort {target} does not match its Pods' container port(s) {declared}: {}, although the Pods are ready.",
            if matches!(served.target_port, Some(IntOrString::String(_))) {
                format!(
                    "no Pod has a port of that name, so the Service has no endpoint for port {port} and connections to {endpoint} are refused"
                )
            } else {
                format!(
                    "connections to {endpoint} are forwarded to a port nothing listens on and refused"
                )
            }
        ),
        evidence,
        format!(
            "{fix}Every client of {service_name} recovers without a change of its own. The operator patches only the failing Pod's own workload, so it offers no patch for the Service."
        ),
    )
}

/// The port numbers a Service serves.
fn port_numbers(ports: &[ServicePort]) -> Vec<u16> {
    ports
        .iter()
        .filter_map(|p| p.port.and_then(|p| u16::try_from(p).ok()))
        .collect()
}

//! The operator as a separate process against a loopback cluster (`sre_e2e`), for the end-to-end
//! tests that run it for real (`operator_e2e`, `tenant_e2e`): its identity and plugins as
//! `deploy/` installs them, `sre-operator run` as a child process, and waits on its reports.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use sre_e2e::{TestCluster, wait};
use sre_operator::crd::DiagnosticReport;

use super::kubectl;

/// How every operator process of the test runs: as the deploy/ ServiceAccount, with a plugin
/// folder like the ConfigMap's.
pub struct OperatorSetup {
    pub kubeconfig: PathBuf,
    pub plugins: PathBuf,
    /// More `sre-operator run` flags (for example `--mcp-addr`).
    pub args: Vec<String>,
    /// More environment (for example a token a Deployment would take from a Secret).
    pub env: Vec<(String, String)>,
}

/// `sre-operator run` as a child process; killed (SIGKILL) on drop.
pub struct Operator {
    child: Option<Child>,
    log: PathBuf,
    port: u16,
}

impl Operator {
    /// With the deployed RBAC and nothing else set up: [`Operator::start`] without leader
    /// election, once ready (60 s).
    pub async fn started(
        cluster: &TestCluster,
        instance: &str,
        namespaces: &str,
    ) -> Result<Operator> {
        let setup = operator_setup(cluster).await?;
        let op = Operator::start(cluster, &setup, instance, namespaces, false)?;
        op.await_ready(Duration::from_secs(60))?;
        Ok(op)
    }

    /// Starts `sre-operator run` as Pod `instance` (POD_NAME, the Lease identity and the
    /// events' reporting instance), watching `namespaces` (comma-separated, `--namespace`);
    /// its output goes to `<cluster dir>/<instance>.log`.
    pub fn start(
        cluster: &TestCluster,
        setup: &OperatorSetup,
        instance: &str,
        namespaces: &str,
        leader_election: bool,
    ) -> Result<Operator> {
        let log = cluster.dir().join(format!("{instance}.log"));
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sre-operator"));
        cmd.args([
            "run",
            "--namespace",
            namespaces,
            "--http-addr",
            &format!("127.0.0.1:{port}"),
            "--verify-timeout",
            "60s",
            "--plugins",
        ])
        .arg(&setup.plugins)
        .args(&setup.args);
        if leader_election {
            cmd.arg("--leader-election");
        }
        let child = cmd
            .env("KUBECONFIG", &setup.kubeconfig)
            .env("POD_NAME", instance)
            .env("POD_NAMESPACE", "sre-operator")
            .env("SRE_OPERATOR_CACHE", cluster.dir().join("plugin-cache"))
            .env("RUST_LOG", "info")
            .env("SRE_OPERATOR_LOG", "info")
            .envs(setup.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting sre-operator run")?;
        let mut op = Operator {
            child: Some(child),
            log,
            port,
        };
        // Up when its HTTP endpoint accepts connections.
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = op.child.as_mut().unwrap().try_wait()? {
                bail!("sre-operator exited ({status}):\n{}", op.tail());
            }
            if Instant::now() > deadline {
                bail!(
                    "sre-operator did not listen on {port} within 30 s:\n{}",
                    op.tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(op)
    }

    /// GET `path` from its HTTP endpoint: the status code and the body.
    pub fn http_get(&self, path: &str) -> Result<(u16, String)> {
        self.http("GET", path, None, "")
    }

    /// POST `body` (JSON) to `path` on its HTTP endpoint, with `authorization` if given: the
    /// status code and the body.
    pub fn http_post(
        &self,
        path: &str,
        authorization: Option<&str>,
        body: &str,
    ) -> Result<(u16, String)> {
        self.http("POST", path, authorization, body)
    }

    /// The port of its HTTP endpoint (--http-addr).
    pub fn port(&self) -> u16 {
        self.port
    }

    fn http(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: &str,
    ) -> Result<(u16, String)> {
        use std::io::{Read, Write};
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let auth = authorization
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let content = if body.is_empty() {
            String::new()
        } else {
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )
        };
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}{content}\r\n{body}"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("{method} {path}: not an HTTP response: {response:.200}"))?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// The value of metric `name` (without labels) on /metrics, if exported.
    pub fn metric(&self, name: &str) -> Result<Option<f64>> {
        let (_, body) = self.http_get("/metrics")?;
        Ok(body.lines().find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        }))
    }

    /// Waits until /readyz answers 200: every watch has listed what it watches.
    pub fn await_ready(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        while self.http_get("/readyz").map(|(s, _)| s).unwrap_or(0) != 200 {
            if Instant::now() > deadline {
                bail!("sre-operator not ready within {within:?}:\n{}", self.tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last 60 lines of its output.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The operator's identity and plugins as `deploy/` installs them: the rendered Namespace,
/// ServiceAccount and RBAC applied to the cluster, a token kubeconfig for the ServiceAccount,
/// and the exported plugin folder, with patch-safety's memory ceiling lowered to 4Gi (a team's
/// setting, which `operator_e2e`'s scenario 6 exceeds).
pub async fn operator_setup(cluster: &TestCluster) -> Result<OperatorSetup> {
    let rbac: Vec<Value> = super::render_deploy()?
        .into_iter()
        .filter(|o| {
            matches!(
                o["kind"].as_str(),
                Some(
                    "Namespace"
                        | "ServiceAccount"
                        | "ClusterRole"
                        | "ClusterRoleBinding"
                        | "Role"
                        | "RoleBinding"
                )
            )
        })
        .collect();
    assert!(
        rbac.len() >= 6,
        "deploy/ renders too little RBAC: {rbac:#?}"
    );
    let file = cluster.dir().join("deploy-rbac.json");
    std::fs::write(
        &file,
        json!({ "apiVersion": "v1", "kind": "List", "items": rbac }).to_string(),
    )?;
    kubectl(
        cluster,
        &["apply", "--server-side", "-f", file.to_str().unwrap()],
    )?;
    let kubeconfig = cluster.service_account_kubeconfig(
        "sre-operator",
        "sre-operator",
        Duration::from_secs(3 * 3600),
    )?;

    let plugins = cluster.dir().join("plugins");
    sre_operator::plugin::PluginSet::export_builtin(&plugins).map_err(anyhow::Error::msg)?;
    let manifest_path = plugins.join("plugins.yaml");
    let mut manifest: Value = serde_yaml::from_str(&std::fs::read_to_string(&manifest_path)?)?;
    let safety = manifest["plugins"]
        .as_array_mut()
        .and_then(|ps| ps.iter_mut().find(|p| p["name"] == "patch-safety"))
        .context("the exported plugins.yaml has no patch-safety")?;
    safety["settings"]["resourceCeiling"]["memory"] = "4Gi".into();
    std::fs::write(&manifest_path, serde_yaml::to_string(&manifest)?)?;
    Ok(OperatorSetup {
        kubeconfig,
        plugins,
        args: Vec::new(),
        env: Vec::new(),
    })
}

/// The DiagnosticReports of namespace `ns`.
pub fn report_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("sre-operator.dev", "v1alpha1", "DiagnosticReport"),
        "diagnosticreports",
    );
    Api::namespaced_with(client.clone(), ns, &ar)
}

pub fn phase_of(report: &Value) -> &str {
    report["status"]["phase"].as_str().unwrap_or("")
}

/// Waits until the report's phase is one of `phases`; on timeout fails with the report and
/// the operator's log.
pub async fn wait_phase(
    api: &Api<DynamicObject>,
    name: &str,
    phases: &[&str],
    timeout: Duration,
    op: &Operator,
) -> Result<Value> {
    let report = wait::until(api, name, timeout, |r: Option<&DynamicObject>| {
        r.is_some_and(|r| phases.contains(&phase_of(&r.data)))
    })
    .await
    .with_context(|| {
        format!(
            "report {name} not in {phases:?}\n--- operator log (tail) ---\n{}",
            op.tail()
        )
    })?
    .with_context(|| format!("report {name} is gone"))?;
    Ok(serde_json::to_value(report)?)
}

/// What `kubectl sre show` prints of `report`, checked to hold no escape sequence or bell: a
/// tenant's text never reaches the terminal as control characters.
pub fn shown_without_escapes(
    cluster: &TestCluster,
    namespace: &str,
    report: &DiagnosticReport,
) -> Result<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-sre"))
        .args([
            "show",
            report.metadata.name.as_deref().unwrap(),
            "-n",
            namespace,
        ])
        .env("KUBECONFIG", cluster.kubeconfig())
        .stdin(std::process::Stdio::null())
        .output()?;
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "kubectl sre show: {shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "a control character reached the terminal:\n{shown}"
    );
    Ok(shown)
}

/// Waits up to 120 s until the workloads `apps` each have a report with findings; those.
pub async fn await_concluded(
    reports: &Api<DiagnosticReport>,
    apps: &[&str],
    op: &Operator,
) -> Result<Vec<DiagnosticReport>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let concluded: Vec<DiagnosticReport> = reports
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .filter(|r| apps.contains(&r.spec.workload.name.as_str()))
            .filter(|r| r.status.as_ref().is_some_and(|s| s.findings.is_some()))
            .collect();
        if concluded.len() == apps.len() {
            return Ok(concluded);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "not every one of {apps:?} reported within 120 s: {concluded:#?}\noperator log:\n{}",
            op.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The operator's writes (create, update, patch, delete) to `resources`, from the cluster's
/// API audit log, as `verb requestURI`: what an observing operator must not have done.
pub fn operator_writes(cluster: &TestCluster, resources: &[&str]) -> Result<Vec<String>> {
    let audit = cluster.audited_requests_of(OPERATOR_USER)?;
    Ok(audit
        .iter()
        .filter(|e| {
            matches!(
                e["verb"].as_str(),
                Some("create" | "update" | "patch" | "delete")
            ) && e["objectRef"]["resource"]
                .as_str()
                .is_some_and(|r| resources.contains(&r))
        })
        .map(|e| format!("{} {}", e["verb"], e["requestURI"]))
        .collect())
}

/// The user the operator runs as (the ServiceAccount `deploy/` installs), in the audit log.
pub const OPERATOR_USER: &str = "system:serviceaccount:sre-operator:sre-operator";

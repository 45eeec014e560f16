//! `plugins`: what each operator Pod loaded, read from its `GET /plugins` (telemetry) through the
//! API server's pod proxy.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;

use super::render::{Table, print};
use super::{Io, PluginsArgs, Result, api_error, failed};
use crate::cluster::format_bytes;
use crate::plugin::PluginSetSummary;

/// The label that selects the operator's Pods.
pub const OPERATOR_SELECTOR: &str = "app.kubernetes.io/name=sre-operator";
/// The port the operator serves `/plugins` on (`--http-addr`'s default).
pub const OPERATOR_PORT: u16 = 8080;

/// One operator Pod's plugin set, as `-o json|yaml` prints it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodPlugins {
    namespace: String,
    pod: String,
    #[serde(flatten)]
    plugins: PluginSetSummary,
}

/// The proxy path of a Pod's `/plugins`.
pub fn proxy_path(namespace: &str, pod: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/pods/{pod}:{OPERATOR_PORT}/proxy/plugins")
}

async fn fetch(client: &Client, namespace: &str, pod: &str) -> Result<PluginSetSummary> {
    let request = hyper::Request::get(proxy_path(namespace, pod))
        .body(Vec::new())
        .map_err(|e| failed(format!("cannot build the proxy request: {e}")))?;
    let doing = format!("cannot read /plugins of operator Pod {namespace}/{pod}");
    let text = client.request_text(request).await.map_err(|e| match e {
        kube::Error::Api(s) if s.code == 403 => failed(format!(
            "{doing} through the API server's pod proxy: forbidden: your user needs the RBAC \
             permission `get pods/proxy` in namespace {namespace} ({})",
            s.message
        )),
        e => api_error(
            e,
            &doing,
            &format!("get pods/proxy in namespace {namespace}"),
            |s| {
                format!(
                    "{doing}: not found ({}): the Pod is gone, or runs an operator version \
                     without /plugins",
                    s.message
                )
            },
        ),
    })?;
    serde_json::from_str(&text)
        .map_err(|e| failed(format!("{doing}: the answer is not a plugin list: {e}")))
}

pub(super) async fn plugins(client: &Client, args: &PluginsArgs, io: &mut Io<'_>) -> Result<()> {
    let namespace = &args.operator_namespace;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut found = pods
        .list(&ListParams::default().labels(OPERATOR_SELECTOR))
        .await
        .map_err(|e| {
            api_error(
                e,
                &format!("cannot list the operator's Pods in namespace {namespace}"),
                &format!("list pods in namespace {namespace}"),
                |s| format!("namespace {namespace}: {}", s.message),
            )
        })?
        .items;
    found.retain(|p| p.metadata.deletion_timestamp.is_none());
    if found.is_empty() {
        return Err(failed(format!(
            "no operator Pod found in namespace {namespace} (label {OPERATOR_SELECTOR}): is \
             the operator running there? --operator-namespace names another namespace"
        )));
    }
    found.sort_by_key(|p| p.name_any());
    let mut sets = Vec::new();
    for pod in &found {
        sets.push(PodPlugins {
            namespace: namespace.clone(),
            pod: pod.name_any(),
            plugins: fetch(client, namespace, &pod.name_any()).await?,
        });
    }
    if let Some(format) = args.output {
        return print(io.out, &sets, format);
    }
    for (i, set) in sets.iter().enumerate() {
        let out = &mut *io.out;
        if i > 0 {
            writeln!(out)?;
        }
        let p = &set.plugins;
        writeln!(
            out,
            "Pod {}/{}: plugins from {}, {} loaded, {} refused",
            set.namespace,
            set.pod,
            p.source,
            p.plugins.len(),
            p.refusals.len()
        )?;
        let mut table = Table::new(&["NAME", "WORLD", "TOOLS", "DIGEST", "LIMITS"]);
        for plugin in &p.plugins {
            let tools: Vec<&str> = plugin.tools.iter().map(|t| t.name.as_str()).collect();
            let l = plugin.limits;
            table.row(vec![
                plugin.name.clone(),
                plugin.world.clone(),
                if tools.is_empty() {
                    "-".into()
                } else {
                    tools.join(",")
                },
                plugin.digest.chars().take(12).collect(),
                format!(
                    "memory {}, timeout {}, output {}",
                    format_bytes(l.memory_bytes as i64),
                    humantime::format_duration(std::time::Duration::from_millis(l.timeout_ms)),
                    format_bytes(l.output_bytes as i64)
                ),
            ]);
        }
        table.write(out)?;
        if !p.refusals.is_empty() {
            writeln!(out, "REFUSED")?;
            for r in &p.refusals {
                writeln!(out, "  {}: {}", r.plugin, r.reason)?;
            }
        }
    }
    Ok(())
}

//! `sre-operator mcp`: a Model Context Protocol server (the official Rust SDK, `rmcp` 3.11,
//! server side over stdio) over the operator's sandboxed tools and its reports.
//!
//! Nothing here is a second path: a WASM tool call goes through [`Session::act`] (the tool's JSON
//! Schema, the budgets, redaction and truncation of an investigation) with a [`ClusterAccess`]
//! scoped to the caller's validated `namespace`; `diagnose` runs [`crate::pipeline::run`];
//! `approve_report` / `reject_report` run `kubectl sre approve|reject`'s own code with the digest
//! the caller read. Every text answered is escaped as a terminal would need it, since a client
//! may print what tenants wrote (logs, events) as it is.
//!
//! Over HTTP ([`http`]) the same server runs per request, and each call is first authorised for
//! its caller (a SubjectAccessReview for what kubectl would need) and reads and decides reports
//! with the caller's own token.

pub mod http;

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::Client;
use kube::api::{Api, ListParams};
use rmcp::handler::server::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ReadResourceResult, Resource, ResourceContents, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use crate::agent::Session;
use crate::cluster::{Cluster, ResourceKind};
use crate::crd::{DebugPolicy, Decision, DiagnosticReport, PolicyRule};
use crate::names::{check_name, check_namespace, check_report_name};
use crate::pipeline::Engine;
use crate::plugin::ClusterAccess;
use crate::policy::{PolicySet, default_policy};
use crate::terminal::escape;

/// Longest JSON-RPC line read from stdin: a tool call is a few hundred bytes, so 1 MiB is
/// generous, and a larger line is dropped before it is buffered whole.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Where reports live: a dump has none until `diagnose` makes them (kept in memory for the
/// session); a live cluster's are the DiagnosticReport objects, read as the caller.
pub enum Reports {
    Dump(Mutex<BTreeMap<(String, String), DiagnosticReport>>),
    Live(Client),
    /// Over HTTP: each call's caller, authenticated and authorised by `auth`, reads and decides
    /// with their own token.
    AsCaller(Arc<http::HttpAuth>),
}

/// The server: the cluster the tools read, the engine `diagnose` runs, and the reports.
pub struct McpServer {
    pub cluster: Arc<dyn Cluster>,
    pub engine: Engine,
    pub reports: Reports,
}

/// Where one call's reports are: the session's dump, or the cluster through a client.
enum Store<'a> {
    Dump(&'a Mutex<BTreeMap<(String, String), DiagnosticReport>>),
    Live(Client),
}

/// Who makes a call over HTTP (`None` over stdio, where the kubeconfig's identity is the
/// caller and the API server is the only judge).
type Who = Option<http::Caller>;

/// What the caller did wrong or what failed, as one sentence a person can act on.
type Answer = Result<String, String>;

const REPORT_URI: &str = "report://";

fn object_schema(properties: Value, required: &[&str]) -> Arc<Map<String, Value>> {
    let Value::Object(map) = json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    }) else {
        unreachable!("a JSON object literal")
    };
    Arc::new(map)
}

fn string_arg(arguments: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match arguments.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("argument {key:?} must be a string, not {other}")),
    }
}

fn required(arguments: &Map<String, Value>, key: &str) -> Result<String, String> {
    string_arg(arguments, key)?.ok_or_else(|| format!("argument {key:?} is required"))
}

fn namespace_arg(arguments: &Map<String, Value>) -> Result<String, String> {
    let namespace = required(arguments, "namespace")?;
    check_namespace("namespace", &namespace).map_err(|e| e.to_string())?;
    Ok(namespace)
}

fn report_name_arg(arguments: &Map<String, Value>) -> Result<String, String> {
    let name = required(arguments, "name")?;
    check_report_name("name", &name).map_err(|e| e.to_string())?;
    Ok(name)
}

/// What `list_reports` shows of a report: enough to pick one.
fn summary(report: &DiagnosticReport) -> Value {
    let status = report.status.as_ref();
    json!({
        "namespace": report.metadata.namespace,
        "name": report.metadata.name,
        "uri": uri(report),
        "pod": report.spec.pod.name,
        "workload": format!("{} {}", report.spec.workload.kind, report.spec.workload.name),
        "class": report.spec.failure.class,
        "phase": status.and_then(|s| s.phase),
        "decision": report.spec.decision,
        "patchDigest": status.and_then(|s| s.suggested_patch.as_ref()).map(|p| p.digest()),
    })
}

/// `get_report`'s answer: the report as stored, with its patch's digest (what approval pins).
fn detail(report: &DiagnosticReport) -> Value {
    let status = report.status.as_ref();
    json!({
        "namespace": report.metadata.namespace,
        "name": report.metadata.name,
        "spec": report.spec,
        "findings": status.map(|s| &s.findings),
        "reasoningChain": status.map(|s| &s.reasoning_chain),
        "suggestedPatch": status.and_then(|s| s.suggested_patch.as_ref()),
        "patchDigest": status.and_then(|s| s.suggested_patch.as_ref()).map(|p| p.digest()),
        "safety": status.and_then(|s| s.safety.as_ref()),
        "phase": status.and_then(|s| s.phase),
        "message": status.and_then(|s| s.message.as_ref()),
    })
}

fn uri(report: &DiagnosticReport) -> String {
    format!(
        "{REPORT_URI}{}/{}",
        report.metadata.namespace.as_deref().unwrap_or_default(),
        report.metadata.name.as_deref().unwrap_or_default()
    )
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

impl McpServer {
    /// The WASM tools, each with a required `namespace` (the one its reads are scoped to), then
    /// the report tools.
    fn tool_list(&self) -> Vec<Tool> {
        let mut tools = Vec::new();
        for info in self.engine.plugins.tools() {
            let mut schema = match &info.parameters {
                Value::Object(map) => map.clone(),
                _ => Map::new(),
            };
            let properties = schema
                .entry("properties")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .map(|p| {
                    p.entry("namespace").or_insert_with(
                        || json!({"type": "string", "description": "The namespace the tool reads"}),
                    );
                })
                .is_some();
            if properties {
                let required = schema.entry("required").or_insert_with(|| json!([]));
                if let Some(list) = required.as_array_mut()
                    && !list.iter().any(|v| v == "namespace")
                {
                    list.push(json!("namespace"));
                }
            }
            tools.push(Tool::new(
                info.name.clone(),
                format!(
                    "{} (sandboxed WASM tool of plugin {}; reads only `namespace`)",
                    info.description, info.plugin.name
                ),
                Arc::new(schema),
            ));
        }
        let report = json!({
            "namespace": {"type": "string"},
            "name": {"type": "string", "description": "The DiagnosticReport's name"},
        });
        tools.push(Tool::new(
            "list_reports",
            "The DiagnosticReports of a namespace (or of every namespace): name, phase, decision \
             and patch digest",
            object_schema(json!({"namespace": {"type": "string"}}), &[]),
        ));
        tools.push(Tool::new(
            "get_report",
            "One DiagnosticReport: findings, reasoning chain, suggested patch with its digest, \
             safety verdict",
            object_schema(report.clone(), &["namespace", "name"]),
        ));
        tools.push(Tool::new(
            "diagnose",
            "Runs the diagnosis pipeline (detect, screen, investigate) on one namespace, or on \
             one Pod of it, and answers the reports it wrote",
            object_schema(
                json!({"namespace": {"type": "string"}, "pod": {"type": "string"}}),
                &["namespace"],
            ),
        ));
        let mut decide = report.clone();
        decide["digest"] = json!({
            "type": "string",
            "description": "The patchDigest get_report showed: the approval holds only if the patch is still that one"
        });
        tools.push(Tool::new(
            "approve_report",
            "Approves a report's suggested patch (live cluster only), pinned to the digest read; \
             the operator then reviews and applies it",
            object_schema(decide.clone(), &["namespace", "name", "digest"]),
        ));
        tools.push(Tool::new(
            "reject_report",
            "Rejects a report (live cluster only): its patch is never applied",
            object_schema(report, &["namespace", "name"]),
        ));
        tools
    }

    /// Where this call's reports are read and decided.
    fn store(&self, who: &Who) -> Result<Store<'_>, String> {
        match (&self.reports, who) {
            (Reports::Dump(reports), _) => Ok(Store::Dump(reports)),
            (Reports::Live(client), _) => Ok(Store::Live(client.clone())),
            (Reports::AsCaller(_), Some(caller)) => Ok(Store::Live(caller.client.clone())),
            (Reports::AsCaller(_), None) => {
                Err("this request carries no authenticated caller".into())
            }
        }
    }

    /// Ok when the caller may do all of `needs`; over stdio and on a dump, always.
    async fn allow(&self, who: &Who, needs: &[http::Permission]) -> Result<(), String> {
        match (&self.reports, who) {
            (Reports::AsCaller(auth), Some(caller)) => auth.authorize(caller, needs).await,
            (Reports::AsCaller(_), None) => {
                Err("this request carries no authenticated caller".into())
            }
            _ => Ok(()),
        }
    }

    async fn call(&self, who: &Who, name: &str, arguments: Map<String, Value>) -> Answer {
        use http::Permission;
        match name {
            "list_reports" => {
                let namespace = match string_arg(&arguments, "namespace")? {
                    Some(n) => {
                        check_namespace("namespace", &n).map_err(|e| e.to_string())?;
                        Some(n)
                    }
                    None => None,
                };
                self.allow(
                    who,
                    &[Permission::reports("list", namespace.as_deref(), None)],
                )
                .await?;
                let reports = self.list(&self.store(who)?, namespace.as_deref()).await?;
                Ok(pretty(&Value::Array(reports.iter().map(summary).collect())))
            }
            "get_report" => {
                let namespace = namespace_arg(&arguments)?;
                let name = report_name_arg(&arguments)?;
                self.allow(
                    who,
                    &[Permission::reports("get", Some(&namespace), Some(&name))],
                )
                .await?;
                let report = self.get(&self.store(who)?, &namespace, &name).await?;
                Ok(pretty(&detail(&report)))
            }
            "diagnose" => {
                let namespace = namespace_arg(&arguments)?;
                let pod = match string_arg(&arguments, "pod")? {
                    Some(p) => {
                        check_name(ResourceKind::Pod, "pod", &p).map_err(|e| e.to_string())?;
                        Some(p)
                    }
                    None => None,
                };
                self.allow(who, &Permission::namespace_reads(&namespace))
                    .await?;
                self.diagnose(&namespace, pod.as_deref()).await
            }
            "approve_report" | "reject_report" => {
                let namespace = namespace_arg(&arguments)?;
                let report = report_name_arg(&arguments)?;
                let (decision, digest) = if name == "approve_report" {
                    (Decision::Approved, Some(required(&arguments, "digest")?))
                } else {
                    (Decision::Rejected, None)
                };
                self.allow(
                    who,
                    &[Permission::reports(
                        "patch",
                        Some(&namespace),
                        Some(&report),
                    )],
                )
                .await?;
                self.decide(&self.store(who)?, &namespace, &report, decision, digest)
                    .await
            }
            tool => {
                let namespace = namespace_arg(&arguments)?;
                self.allow(who, &Permission::namespace_reads(&namespace))
                    .await?;
                self.wasm_tool(tool, arguments).await
            }
        }
    }

    /// A WASM tool through the investigation's own session: schema check, budgets, redaction
    /// and truncation, reads scoped to the validated `namespace`.
    async fn wasm_tool(&self, tool: &str, mut arguments: Map<String, Value>) -> Answer {
        let info = self.engine.plugins.tool(tool).ok_or_else(|| {
            format!("there is no tool named {tool:?}: tools/list names the tools")
        })?;
        let namespace = namespace_arg(&arguments)?;
        // The tool's own schema may not know `namespace` (it is the scope, not its argument).
        let own = info.parameters.pointer("/properties/namespace").is_some();
        if !own {
            arguments.remove("namespace");
        }
        let access = ClusterAccess::new(self.cluster.clone(), namespace);
        let mut session = Session::new(
            self.engine.plugins.clone(),
            access,
            self.engine.budget.clone(),
        );
        let outcome = session
            .act(
                "an MCP client called this tool",
                "",
                tool,
                Value::Object(arguments),
            )
            .await
            .map_err(|e| e.to_string())?;
        if outcome.ok {
            Ok(outcome.text)
        } else {
            Err(outcome.text)
        }
    }

    async fn list(
        &self,
        store: &Store<'_>,
        namespace: Option<&str>,
    ) -> Result<Vec<DiagnosticReport>, String> {
        match store {
            Store::Dump(reports) => Ok(reports
                .lock()
                .await
                .values()
                .filter(|r| namespace.is_none_or(|n| r.metadata.namespace.as_deref() == Some(n)))
                .cloned()
                .collect()),
            Store::Live(client) => {
                let api: Api<DiagnosticReport> = match namespace {
                    Some(n) => Api::namespaced(client.clone(), n),
                    None => Api::all(client.clone()),
                };
                let scope = namespace
                    .map(|n| format!("in namespace {n}"))
                    .unwrap_or_else(|| "in every namespace".into());
                api.list(&ListParams::default())
                    .await
                    .map(|list| list.items)
                    .map_err(|e| {
                        format!(
                            "cannot list diagnosticreports {scope}: {e}; the caller needs \
                             `list diagnosticreports.sre-operator.dev` there"
                        )
                    })
            }
        }
    }

    async fn get(
        &self,
        store: &Store<'_>,
        namespace: &str,
        name: &str,
    ) -> Result<DiagnosticReport, String> {
        match store {
            Store::Dump(reports) => reports
                .lock()
                .await
                .get(&(namespace.to_string(), name.to_string()))
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "diagnosticreport {namespace}/{name} not found: on a dump, reports exist \
                         once `diagnose` made them; `list_reports` names them"
                    )
                }),
            Store::Live(client) => crate::kubectl_sre::reports::get_report(client, namespace, name)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// The pipeline on one namespace (a policy of one rule naming it), kept to one Pod when
    /// asked. On a dump the reports are kept for `list_reports` and `get_report`.
    async fn diagnose(&self, namespace: &str, pod: Option<&str>) -> Answer {
        let mut policy: DebugPolicy = default_policy();
        policy.spec.rules = vec![PolicyRule {
            namespaces: vec![namespace.to_string()],
            ..PolicyRule::default()
        }];
        let policies = vec![policy];
        let policy_set = PolicySet::compile(&policies).map_err(|e| e.to_string())?;
        let outcome = crate::pipeline::run(
            self.cluster.clone(),
            &policies,
            &policy_set,
            Some(&self.engine),
        )
        .await
        .map_err(|e| format!("diagnose {namespace}: {e:#}"))?;
        let reports: Vec<DiagnosticReport> = outcome
            .reports
            .into_iter()
            .filter(|r| pod.is_none_or(|p| r.spec.pod.name == p))
            .collect();
        if let Reports::Dump(store) = &self.reports {
            let mut store = store.lock().await;
            for report in &reports {
                let key = (
                    report.metadata.namespace.clone().unwrap_or_default(),
                    report.metadata.name.clone().unwrap_or_default(),
                );
                store.insert(key, report.clone());
            }
        }
        let skipped: Vec<Value> = outcome
            .skipped
            .iter()
            .filter(|(r, _)| pod.is_none_or(|p| r.spec.pod.name == p))
            .map(|(r, reason)| json!({"report": summary(r), "reason": reason}))
            .collect();
        Ok(pretty(&json!({
            "pods": outcome.pods,
            "reports": reports.iter().map(detail).collect::<Vec<_>>(),
            "skipped": skipped,
        })))
    }

    /// `kubectl sre approve|reject`'s code, as the caller, with no question asked (the digest
    /// the caller read is the confirmation).
    async fn decide(
        &self,
        store: &Store<'_>,
        namespace: &str,
        name: &str,
        decision: Decision,
        digest: Option<String>,
    ) -> Answer {
        let Store::Live(client) = store else {
            return Err(format!(
                "cannot decide diagnosticreport {namespace}/{name}: this server reads a cluster \
                 dump, where nothing is applied; run `sre-operator mcp` against a cluster \
                 (without --dump) to approve or reject"
            ));
        };
        let args = crate::kubectl_sre::DecideArgs {
            name: Some(name.to_string()),
            incident: None,
            yes: true,
            digest,
        };
        let (client, namespace) = (client.clone(), namespace.to_string());
        // `Io` borrows `dyn Write`s, which are not Send: the decision runs to completion on a
        // blocking thread of this runtime rather than across the handler's awaits.
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let mut never = |_: &str| Ok(false);
            let mut io = crate::kubectl_sre::Io {
                out: &mut out,
                err: &mut err,
                confirm: &mut never,
            };
            runtime
                .block_on(crate::kubectl_sre::reports::decide(
                    &client, &namespace, &args, decision, &mut io,
                ))
                .map_err(|e| e.to_string())?;
            Ok(String::from_utf8_lossy(&out).into_owned())
        })
        .await
        .map_err(|e| format!("the decision on diagnosticreport {name} did not finish: {e}"))?
    }

    fn resource_list(reports: &[DiagnosticReport]) -> Vec<Resource> {
        reports
            .iter()
            .map(|r| {
                Resource::new(uri(r), r.metadata.name.clone().unwrap_or_default()).with_description(
                    format!(
                        "DiagnosticReport {}/{}",
                        r.metadata.namespace.as_deref().unwrap_or_default(),
                        r.metadata.name.as_deref().unwrap_or_default()
                    ),
                )
            })
            .collect()
    }
}

/// The caller `http::serve_on` authenticated, carried in the request's HTTP parts.
fn caller(context: &RequestContext<RoleServer>) -> Who {
    context
        .extensions
        .get::<::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<http::Caller>())
        .cloned()
}

fn text_result(answer: Answer) -> CallToolResult {
    match answer {
        Ok(text) => CallToolResult::success(vec![ContentBlock::text(escape(&text))]),
        Err(text) => CallToolResult::error(vec![ContentBlock::text(escape(&text))]),
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_instructions(
            "sre-operator: call the sandboxed diagnostic tools on a namespace, run `diagnose`, \
             read reports (tools or report://NAMESPACE/NAME resources), approve or reject them \
             with the digest you read.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tool_list()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        let known = matches!(
            name.as_str(),
            "list_reports" | "get_report" | "diagnose" | "approve_report" | "reject_report"
        ) || self.engine.plugins.tool(&name).is_some();
        if !known {
            return Err(ErrorData::invalid_params(
                format!(
                    "there is no tool named {:?}: tools/list names the tools",
                    escape(&name)
                ),
                None,
            ));
        }
        let arguments = request.arguments.unwrap_or_default();
        let who = caller(&context);
        Ok(text_result(self.call(&who, &name, arguments).await).into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let who = caller(&context);
        let refused = |e: String| ErrorData::internal_error(escape(&e).into_owned(), None);
        self.allow(&who, &[http::Permission::reports("list", None, None)])
            .await
            .map_err(refused)?;
        let store = self.store(&who).map_err(refused)?;
        let reports = self.list(&store, None).await.map_err(refused)?;
        Ok(ListResourcesResult::with_all_items(Self::resource_list(
            &reports,
        )))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let bad = |why: String| ErrorData::resource_not_found(escape(&why).into_owned(), None);
        let (namespace, name) = request
            .uri
            .strip_prefix(REPORT_URI)
            .and_then(|rest| rest.split_once('/'))
            .ok_or_else(|| {
                bad(format!(
                    "{:?} is not a report URI: report://NAMESPACE/NAME",
                    request.uri
                ))
            })?;
        let mut arguments = Map::new();
        arguments.insert("namespace".into(), json!(namespace));
        arguments.insert("name".into(), json!(name));
        namespace_arg(&arguments).map_err(bad)?;
        report_name_arg(&arguments).map_err(bad)?;
        let who = caller(&context);
        self.allow(
            &who,
            &[http::Permission::reports(
                "get",
                Some(namespace),
                Some(name),
            )],
        )
        .await
        .map_err(bad)?;
        let report = self
            .get(&self.store(&who).map_err(bad)?, namespace, name)
            .await
            .map_err(bad)?;
        let mut contents = ResourceContents::text(escape(&pretty(&detail(&report))), request.uri);
        if let ResourceContents::TextResourceContents { mime_type, .. } = &mut contents {
            *mime_type = Some("application/json".into());
        }
        Ok(ReadResourceResult::new(vec![contents]).into())
    }
}

/// Serves one client over stdin and stdout until it hangs up.
pub async fn serve_stdio(server: McpServer) -> anyhow::Result<()> {
    use rmcp::ServiceExt;
    let transport = rmcp::transport::async_rw::AsyncRwTransport::new_server(
        tokio::io::stdin(),
        tokio::io::stdout(),
    )
    .with_max_line_length(MAX_MESSAGE_BYTES);
    let running = server
        .serve(transport)
        .await
        .map_err(|e| anyhow::anyhow!("the MCP client did not initialize: {e}"))?;
    running.waiting().await?;
    Ok(())
}

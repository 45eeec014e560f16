//! Metrics in Prometheus format and the `/healthz`, `/readyz`, `/metrics` and `/plugins`
//! endpoints.

pub mod traces;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::plugin::PluginRegistry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabel {
    pub plugin: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: String,
    /// `controller::Error::metric_label`: kube, cluster or other.
    pub error: String,
}

/// Every metric the operator exports; low-cardinality labels only.
pub struct Metrics {
    pub report_transitions: Family<PhaseLabel, Counter>,
    pub investigation_seconds: Histogram,
    pub tool_calls: Family<ToolLabel, Counter>,
    pub tokens: Family<KindLabel, Counter>,
    pub applies: Family<OutcomeLabel, Counter>,
    pub reconcile_errors: Family<ControllerLabel, Counter>,
    /// Pods in the store: what a policy selects and may be failing, never every Pod.
    pub stored_pods: Gauge,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sre_operator");
        let report_transitions = Family::<PhaseLabel, Counter>::default();
        registry.register(
            "report_transitions",
            "DiagnosticReports entering each phase",
            report_transitions.clone(),
        );
        let investigation_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        registry.register_with_unit(
            "investigation_duration",
            "Time from Analyzing to a verdict",
            prometheus_client::registry::Unit::Seconds,
            investigation_seconds.clone(),
        );
        let tool_calls = Family::<ToolLabel, Counter>::default();
        registry.register(
            "tool_calls",
            "Tool calls by plugin and outcome",
            tool_calls.clone(),
        );
        let tokens = Family::<KindLabel, Counter>::default();
        registry.register(
            "tokens",
            "Model tokens used, by kind (prompt, completion)",
            tokens.clone(),
        );
        let applies = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "patch_applies",
            "Approved patches by outcome",
            applies.clone(),
        );
        let reconcile_errors = Family::<ControllerLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconcile errors by controller",
            reconcile_errors.clone(),
        );
        let stored_pods = Gauge::default();
        registry.register(
            "stored_pods",
            "Pods held in memory: those a DebugPolicy selects that may be failing",
            stored_pods.clone(),
        );
        Metrics {
            stored_pods,
            report_transitions,
            investigation_seconds,
            tool_calls,
            tokens,
            applies,
            reconcile_errors,
            registry,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("encoding to a String");
        text
    }
}

/// Whether the operator is ready: its caches have synced.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

/// The plugin set in force as JSON ([`crate::plugin::PluginSetSummary`]): what
/// `kubectl sre plugins` reads through the API server's pod proxy.
fn plugins_json(plugins: Option<&PluginRegistry>) -> Response<Full<Bytes>> {
    match plugins {
        Some(registry) => match serde_json::to_string(&registry.current().summary()) {
            Ok(body) => respond(StatusCode::OK, "application/json", body),
            Err(e) => respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                format!("{e}\n"),
            ),
        },
        None => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "no plugins are loaded by this process\n".into(),
        ),
    }
}

/// Serves `/healthz`, `/readyz`, `/metrics` and `/plugins` until the task is dropped.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    plugins: Option<Arc<PluginRegistry>>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_on(listener, metrics, readiness, plugins, None).await
}

/// [`serve`] on a socket bound by the caller, so that a port in use fails start-up with its
/// own error instead of inside a background task.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    plugins: Option<Arc<PluginRegistry>>,
    alerts: Option<Arc<crate::alerts::AlertInbox>>,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, alertmanager = alerts.is_some(), "serving /healthz, /readyz, /metrics and /plugins");
    loop {
        let (stream, _) = listener.accept().await?;
        let (metrics, readiness, plugins) = (metrics.clone(), readiness.clone(), plugins.clone());
        let alerts = alerts.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let alerts = alerts.clone();
                    if request.uri().path() == crate::alerts::PATH {
                        return Box::pin(async move {
                            Ok::<_, std::convert::Infallible>(match &alerts {
                                Some(inbox) => inbox.receive(request).await,
                                None => respond(
                                    StatusCode::NOT_FOUND,
                                    "text/plain",
                                    "the Alertmanager receiver is off: start the operator with \
                                     --alertmanager-token (SRE_OPERATOR_ALERTMANAGER_TOKEN)\n"
                                        .into(),
                                ),
                            })
                        })
                            as std::pin::Pin<Box<dyn Future<Output = _> + Send>>;
                    }
                    let response = match request.uri().path() {
                        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n".into()),
                        "/readyz" if readiness.get() => {
                            respond(StatusCode::OK, "text/plain", "ready\n".into())
                        }
                        "/readyz" => respond(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "text/plain",
                            "caches not synced\n".into(),
                        ),
                        "/metrics" => respond(
                            StatusCode::OK,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            metrics.encode(),
                        ),
                        "/plugins" => plugins_json(plugins.as_deref()),
                        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
                    };
                    Box::pin(async move { Ok::<_, std::convert::Infallible>(response) })
                });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(error = %e, "metrics connection ended");
            }
        });
    }
}

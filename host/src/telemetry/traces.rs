//! Logging, and OpenTelemetry traces over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set.
//!
//! The spans are the operator's own `tracing` spans, bridged: one per reconcile
//! ([`RECONCILE`]), investigation ([`INVESTIGATION`]), tool call ([`TOOL_CALL`]) and model call
//! ([`MODEL_CALL`]), each carrying the report's name where there is one. Only spans are exported,
//! not log lines: a span's fields are names and counts the operator chose, while a log line may
//! quote a tenant's text.

use anyhow::{Context as _, bail};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

pub const RECONCILE: &str = "reconcile";
pub const INVESTIGATION: &str = "investigation";
pub const TOOL_CALL: &str = "tool_call";
pub const MODEL_CALL: &str = "model_call";

/// Crates that log every request or batch at info: kept at warn unless the filter names them.
/// A target prefix covers `opentelemetry_sdk` and `opentelemetry-otlp` too.
const CHATTY: &[&str] = &["rmcp", "opentelemetry"];

/// The standard variables, in the order the exporter reads them.
const ENDPOINT_VARS: &[&str] = &[
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];
const PROTOCOL_VARS: &[&str] = &[
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
];

/// Flushes and stops the trace exporter when dropped (at the end of `main`), so the spans of
/// the last seconds are not lost.
pub struct TraceExport {
    provider: SdkTracerProvider,
}

impl Drop for TraceExport {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: flushing the last traces failed: {e}");
        }
    }
}

/// The filter directives `--log` gives, with [`CHATTY`] crates at warn unless named.
fn directives(log: &str) -> String {
    let mut directives = log.to_string();
    for krate in CHATTY {
        if !log.contains(krate) {
            directives.push_str(&format!(",{krate}=warn"));
        }
    }
    directives
}

fn env_var(names: &[&'static str]) -> Option<(&'static str, String)> {
    names.iter().find_map(|&n| {
        std::env::var(n)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (n, v))
    })
}

/// Installs the global subscriber: log lines on stderr filtered by `log`, and the span
/// exporter when an OTLP endpoint is configured. Fails (before anything runs) on an endpoint or
/// protocol the exporter cannot use, naming the variable.
pub fn install(log: &str) -> anyhow::Result<Option<TraceExport>> {
    let filter =
        tracing_subscriber::EnvFilter::try_new(directives(log)).unwrap_or_else(|_| "warn".into());
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter);
    let (export, destination) = match exporter()? {
        None => (None, None),
        Some((provider, destination)) => (Some(TraceExport { provider }), Some(destination)),
    };
    let spans = export.as_ref().map(|e| {
        tracing_opentelemetry::layer()
            .with_tracer(e.provider.tracer("sre-operator"))
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.is_span() && meta.target().starts_with("sre_operator")
            }))
    });
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
        .context("installing the log subscriber")?;
    if let Some(destination) = destination {
        tracing::info!("exporting traces over OTLP/HTTP to {destination}");
    }
    Ok(export)
}

/// The provider, and where it sends spans as a log line can say it.
fn exporter() -> anyhow::Result<Option<(SdkTracerProvider, String)>> {
    let Some((variable, endpoint)) = env_var(ENDPOINT_VARS) else {
        return Ok(None);
    };
    if let Some((name, protocol)) = env_var(PROTOCOL_VARS)
        && protocol != "http/protobuf"
    {
        bail!(
            "{name}={protocol:?}: this build exports traces over OTLP/HTTP with protobuf only; set it to \"http/protobuf\" and point {variable} at the collector's HTTP port (4318 by default)"
        );
    }
    let uri: http::Uri = endpoint
        .parse()
        .with_context(|| format!("{variable} is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        bail!(
            "{variable} must be an http:// or https:// URL with a host, such as http://otel-collector.monitoring:4318"
        );
    }
    // The exporter reads the variables itself (and OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT).
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .build()
        .with_context(|| format!("building the OTLP trace exporter for {variable}"))?;
    let mut resource = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("sre-operator");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    // The host and port only: an endpoint may carry credentials in its user part or query.
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    let destination = format!("{}:{port} ({variable})", uri.host().unwrap_or_default());
    Ok(Some((provider, destination)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatty_crates_stay_at_warn_unless_named() {
        let d = directives("info");
        assert!(
            d.contains(",rmcp=warn") && d.contains(",opentelemetry=warn"),
            "{d}"
        );
        let d = directives("info,rmcp=debug");
        assert!(!d.contains("rmcp=warn"), "{d}");
    }
}

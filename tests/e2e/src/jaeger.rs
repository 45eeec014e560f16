//! A real Jaeger on loopback (v2, `cmd/jaeger` of the module pinned in `tests/cluster/go/jaeger`,
//! built by `tests/cluster/build-tool.sh jaeger`): an OTLP receiver (HTTP and gRPC) storing spans
//! in memory, and Jaeger's query API to read them back. What a tracing e2e test points an
//! OpenTelemetry exporter at (see [`Jaeger::otlp_env`]).
//!
//! Everything listens on 127.0.0.1 on free ports: the OTLP receiver (HTTP and gRPC), the query
//! API (HTTP, and the gRPC one Jaeger always starts), and the health check. Nothing else: no
//! Jaeger, Zipkin or Kafka receivers, no sampling endpoints, no internal metrics port.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::loopback::{encode, request};
use crate::process;

/// A Jaeger process; stopped when dropped.
pub struct Jaeger {
    id: u64,
    /// OTLP over HTTP (protobuf or JSON), the base URL an exporter takes as
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: `http://127.0.0.1:PORT` (spans go to `/v1/traces`).
    pub otlp_endpoint: String,
    /// OTLP over gRPC: `http://127.0.0.1:PORT`.
    pub otlp_grpc_endpoint: String,
    /// Jaeger's query API: `http://127.0.0.1:PORT` (`/api/services`, `/api/traces?service=`).
    pub query_url: String,
    otlp_port: u16,
    query_port: u16,
    log: PathBuf,
}

/// One span as Jaeger's query API shows it.
#[derive(Clone, Debug)]
pub struct Span {
    /// Lower-case hex, 32 digits.
    pub trace_id: String,
    /// Lower-case hex, 16 digits.
    pub span_id: String,
    /// The span's name (Jaeger's `operationName`).
    pub name: String,
    /// The `service.name` of its resource.
    pub service: String,
    /// The span id of its parent (a `CHILD_OF` reference in the same trace), if any.
    pub parent: Option<String>,
    /// Start, unix microseconds.
    pub start_us: u64,
    pub duration_us: u64,
    /// The span's attributes, plus what Jaeger adds (`span.kind`, `otel.scope.name`,
    /// `otel.status_code`, `error`): key to value (a JSON string, number or bool).
    pub tags: BTreeMap<String, Value>,
    /// The span's JSON as Jaeger answered it (`logs` are its events).
    pub raw: Value,
}

impl Span {
    /// An attribute's value, if the span has it.
    pub fn tag(&self, key: &str) -> Option<&Value> {
        self.tags.get(key)
    }
}

/// The spans of `traces`, the `data` array of `/api/traces`, flattened.
pub fn spans_of(traces: &Value) -> Vec<Span> {
    let mut out = Vec::new();
    for trace in traces.as_array().into_iter().flatten() {
        let processes = &trace["processes"];
        for s in trace["spans"].as_array().into_iter().flatten() {
            let str_of = |v: &Value| v.as_str().unwrap_or_default().to_string();
            let parent = s["references"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["refType"] == "CHILD_OF" && r["traceID"] == s["traceID"])
                .map(|r| str_of(&r["spanID"]));
            let tags = s["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| (str_of(&t["key"]), t["value"].clone()))
                .collect();
            let process = s["processID"].as_str().unwrap_or_default();
            out.push(Span {
                trace_id: str_of(&s["traceID"]),
                span_id: str_of(&s["spanID"]),
                name: str_of(&s["operationName"]),
                service: str_of(&processes[process]["serviceName"]),
                parent,
                start_us: s["startTime"].as_u64().unwrap_or(0),
                duration_us: s["duration"].as_u64().unwrap_or(0),
                tags,
                raw: s.clone(),
            });
        }
    }
    out
}

impl Jaeger {
    /// Starts Jaeger (building it first if the cache lacks it: minutes, once) with in-memory
    /// storage, and waits until its health check says every component is up.
    pub async fn start() -> Result<Jaeger> {
        let binary = crate::go_tool("jaeger")?;
        let dir = tempfile::tempdir()?;
        let [otlp_http, otlp_grpc, query_http, query_grpc, health] = crate::free_ports(5)?[..]
        else {
            unreachable!("free_ports(5) returns 5 ports")
        };
        let config = dir.path().join("jaeger.yaml");
        std::fs::write(
            &config,
            format!(
                "service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:{health}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:{query_http}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp_http}
      grpc:
        endpoint: 127.0.0.1:{otlp_grpc}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"
            ),
        )?;
        let log = dir.path().join("jaeger.log");
        let mut cmd = Command::new(&binary);
        cmd.arg(format!("--config={}", config.display()));
        let id = process::register(dir);
        let jaeger = Jaeger {
            id,
            otlp_endpoint: format!("http://127.0.0.1:{otlp_http}"),
            otlp_grpc_endpoint: format!("http://127.0.0.1:{otlp_grpc}"),
            query_url: format!("http://127.0.0.1:{query_http}"),
            otlp_port: otlp_http,
            query_port: query_http,
            log: log.clone(),
        };
        process::spawn(id, "jaeger", cmd, &log)?;
        process::await_ready(id, "jaeger", &log, Duration::from_millis(100), || async {
            // /status answers 200 once every extension, exporter and receiver has started.
            request(health, "GET", "/status", &[], b"")
                .await
                .is_ok_and(|(status, _)| status == 200)
                && request(query_http, "GET", "/api/services", &[], b"")
                    .await
                    .is_ok_and(|(status, _)| status == 200)
        })
        .await?;
        Ok(jaeger)
    }

    /// The environment that points an OpenTelemetry SDK's OTLP exporter here, over HTTP with
    /// protobuf: `OTEL_EXPORTER_OTLP_ENDPOINT` (the SDK appends `/v1/traces`) and
    /// `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`.
    pub fn otlp_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                self.otlp_endpoint.clone(),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "http/protobuf".into()),
        ]
    }

    /// Posts an OTLP/HTTP JSON export request (`{"resourceSpans": [...]}`) to `/v1/traces`, as
    /// an exporter would.
    pub async fn post_otlp_json(&self, request_body: &Value) -> Result<()> {
        let body = request_body.to_string();
        let (status, answer) = request(
            self.otlp_port,
            "POST",
            "/v1/traces",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .await?;
        let answer = String::from_utf8_lossy(&answer);
        if status != 200 {
            bail!(
                "jaeger refused the spans (HTTP {status}): {answer}\n{}",
                self.log_tail()
            );
        }
        // A 200 may still say some spans were dropped.
        let rejected = serde_json::from_str::<Value>(&answer)
            .ok()
            .map(|v| match &v["partialSuccess"]["rejectedSpans"] {
                // int64 is a string in OTLP's JSON; a number is accepted too.
                Value::String(n) => n.clone(),
                Value::Number(n) => n.to_string(),
                _ => String::new(),
            })
            .unwrap_or_default();
        if !rejected.is_empty() && rejected != "0" {
            bail!("jaeger rejected {rejected} span(s): {answer}");
        }
        Ok(())
    }

    async fn query(&self, path: &str) -> Result<Value> {
        let (status, body) = request(self.query_port, "GET", path, &[], b"").await?;
        let value: Value = serde_json::from_slice(&body).with_context(|| {
            format!(
                "jaeger answered GET {path} with HTTP {status} and no JSON: {}",
                String::from_utf8_lossy(&body)
            )
        })?;
        if status != 200 {
            bail!("jaeger answered GET {path} with HTTP {status}: {value}");
        }
        Ok(value)
    }

    /// The services that have sent spans (`/api/services`).
    pub async fn services(&self) -> Result<Vec<String>> {
        let value = self.query("/api/services").await?;
        Ok(value["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect())
    }

    /// The traces of `service` as `/api/traces?service=` answers them: the `data` array, each
    /// trace with its `spans` and `processes` (at most 1000 traces, newest first).
    pub async fn traces(&self, service: &str) -> Result<Value> {
        let value = self
            .query(&format!(
                "/api/traces?service={}&limit=1000",
                encode(service)
            ))
            .await?;
        Ok(value["data"].clone())
    }

    /// Every span of every trace of `service` (a trace's spans from other services too).
    pub async fn spans(&self, service: &str) -> Result<Vec<Span>> {
        Ok(spans_of(&self.traces(service).await?))
    }

    /// Polls until `done` accepts the spans of `service` (an exporter batches: spans arrive a
    /// few seconds after they end); returns them. On timeout fails showing the services and
    /// span names seen and the end of Jaeger's log.
    pub async fn wait_for_spans(
        &self,
        service: &str,
        timeout: Duration,
        done: impl Fn(&[Span]) -> bool,
    ) -> Result<Vec<Span>> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans(service).await?;
            if done(&spans) {
                return Ok(spans);
            }
            if Instant::now() > deadline {
                let names: Vec<(&str, &str)> = spans
                    .iter()
                    .map(|s| (s.service.as_str(), s.name.as_str()))
                    .collect();
                bail!(
                    "jaeger: the spans of {service:?} were not as expected within {timeout:?}; services: {:?}; (service, span) seen: {names:?}; jaeger log:\n{}",
                    self.services().await.unwrap_or_default(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until `service` has a span named `name`; returns the first such span.
    pub async fn wait_for_span(
        &self,
        service: &str,
        name: &str,
        timeout: Duration,
    ) -> Result<Span> {
        let spans = self
            .wait_for_spans(service, timeout, |spans| {
                spans.iter().any(|s| s.name == name)
            })
            .await?;
        Ok(spans
            .into_iter()
            .find(|s| s.name == name)
            .expect("wait_for_spans returned once it was there"))
    }

    pub fn log_tail(&self) -> String {
        process::log_tail(&self.log, 40)
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        process::stop(self.id);
    }
}

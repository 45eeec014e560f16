//! `prometheus`: metrics tools for the agent, over the host's egress grant to one Prometheus.
//!
//! `query_prometheus` runs any PromQL (instant, or a range summarised per series as
//! min/max/last/p95, never raw arrays), and three purpose-built tools answer the questions an
//! OOM kill, a crash loop or a failing probe raises: `container_memory_history`,
//! `container_cpu_throttling` and `restart_history`. Every answer names the queries it ran so a
//! person can rerun them. Series names and labels are the kubelet's (cAdvisor) and
//! kube-state-metrics'.
//!
//! Settings: `url` (the Prometheus base URL, which the manifest's `egress` must grant),
//! `maxSeries` (20) and `maxPoints` (240 per series read).

wit_bindgen::generate!({
    world: "tool",
    path: "../../wit/v0.2",
    generate_all,
});

pub mod analysis;

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde_json::{Value, json};
use sre_operator::plugin0_1_0::cluster;
use tool_shapes::{
    ContainerMemory, ContainerRestarts, ContainerThrottling, CpuThrottling, MemoryHistory,
    RestartHistory,
};

struct Prometheus;

struct Settings {
    url: String,
    max_series: usize,
    max_points: u64,
}

thread_local! {
    static SETTINGS: RefCell<Option<Settings>> = const { RefCell::new(None) };
}

fn settings<T>(f: impl FnOnce(&Settings) -> T) -> Result<T, ToolError> {
    SETTINGS.with(|s| {
        s.borrow()
            .as_ref()
            .map(f)
            .ok_or_else(|| ToolError::Failed("the plugin is not configured".into()))
    })
}

/// A series: its labels and its points (unix seconds, value).
struct Series {
    labels: BTreeMap<String, String>,
    points: Vec<(f64, f64)>,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn parse_value(pair: &Value) -> Option<(f64, f64)> {
    let t = pair.get(0)?.as_f64()?;
    let v = pair.get(1)?.as_str()?.parse::<f64>().ok()?;
    Some((t, v))
}

/// Runs `query` through the HTTP API: instant when `range` is None, else over
/// `(start, end, step)`. Errors carry Prometheus's own message.
fn run(query: &str, range: Option<(f64, f64, u64)>) -> Result<Vec<Series>, ToolError> {
    let base = settings(|s| s.url.clone())?;
    let url = match range {
        None => format!("{base}/api/v1/query?query={}", http_client::encode(query)),
        Some((start, end, step)) => format!(
            "{base}/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step}",
            http_client::encode(query)
        ),
    };
    let response = http_client::fetch(
        &http_client::Request {
            url,
            headers: vec![("accept".into(), "application/json".into())],
            ..Default::default()
        },
        2,
    )
    .map_err(|e| ToolError::Failed(format!("Prometheus at {base}: {e}")))?;
    let body: Value = serde_json::from_slice(&response.body).map_err(|_| {
        ToolError::Failed(format!(
            "Prometheus at {base} answered HTTP {} with something that is not its JSON API",
            response.status
        ))
    })?;
    if body["status"] != "success" {
        return Err(ToolError::Failed(format!(
            "Prometheus refused the query ({}): {}",
            body["errorType"].as_str().unwrap_or("error"),
            body["error"].as_str().unwrap_or("no reason given")
        )));
    }
    let result = body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(result
        .iter()
        .map(|r| Series {
            labels: r["metric"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
            points: match r.get("values") {
                Some(values) => values
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(parse_value)
                    .collect(),
                None => r.get("value").and_then(parse_value).into_iter().collect(),
            },
        })
        .collect())
}

/// `(start, end, step)` for the last `minutes`, with at most `maxPoints` points.
fn window(minutes: u32) -> Result<(f64, f64, u64), ToolError> {
    let max_points = settings(|s| s.max_points)?;
    let end = now();
    let seconds = u64::from(minutes) * 60;
    let step = seconds.div_ceil(max_points).max(1);
    Ok((end - seconds as f64, end, step))
}

/// A Pod or container name as the tools accept it: what Kubernetes accepts, so it can sit in a
/// PromQL string without escaping.
fn name_arg(args: &Value, key: &str, required: bool) -> Result<Option<String>, ToolError> {
    let Some(text) = args.get(key).and_then(Value::as_str) else {
        return if required {
            Err(ToolError::InvalidArguments(format!("{key} is required")))
        } else {
            Ok(None)
        };
    };
    let valid = !text.is_empty()
        && text.len() <= 253
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !valid {
        return Err(ToolError::InvalidArguments(format!(
            "{key} {text:?} is not a Kubernetes name"
        )));
    }
    Ok(Some(text.to_string()))
}

fn minutes_arg(args: &Value, default: u32) -> Result<u32, ToolError> {
    match args.get("minutes") {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|m| (1..=10080).contains(m))
            .map(|m| m as u32)
            .ok_or_else(|| ToolError::InvalidArguments("minutes must be 1 to 10080".into())),
    }
}

/// The label matchers for a Pod's (or one container's) series in the namespace under
/// investigation, without the cgroup-level series cAdvisor also writes.
fn selector(pod: &str, container: Option<&str>) -> String {
    let namespace = cluster::namespace();
    match container {
        Some(c) => format!(r#"namespace="{namespace}",pod="{pod}",container="{c}""#),
        None => format!(r#"namespace="{namespace}",pod="{pod}",container!="",container!="POD""#),
    }
}

fn answer<T: serde::Serialize>(value: &T) -> Result<String, ToolError> {
    serde_json::to_string(value).map_err(|e| ToolError::Failed(e.to_string()))
}

fn container_of(series: &Series) -> String {
    series.labels.get("container").cloned().unwrap_or_default()
}

fn query_prometheus(args: &Value) -> Result<String, ToolError> {
    let query = args["query"]
        .as_str()
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| ToolError::InvalidArguments("query is required".into()))?;
    let max_series = settings(|s| s.max_series)?;
    let range = match args.get("rangeMinutes").and_then(Value::as_u64) {
        Some(m) if (1..=10080).contains(&m) => Some(window(m as u32)?),
        Some(_) => {
            return Err(ToolError::InvalidArguments(
                "rangeMinutes must be 1 to 10080".into(),
            ));
        }
        None => None,
    };
    let series = run(query, range)?;
    let total = series.len();
    let shown: Vec<Value> = series
        .iter()
        .take(max_series)
        .map(|s| match range {
            None => json!({"labels": s.labels, "value": s.points.first().map(|p| p.1)}),
            Some(_) => json!({"labels": s.labels, "summary": analysis::summarise(&s.points)}),
        })
        .collect();
    let mut out = json!({
        "query": query,
        "kind": if range.is_some() { "range" } else { "instant" },
        "series": shown,
        "seriesTotal": total,
    });
    if let Some((start, end, step)) = range {
        out["range"] = json!({"start": start, "end": end, "stepSeconds": step});
    }
    if total > max_series {
        out["note"] = json!(format!(
            "{total} series matched; the first {max_series} are shown. Aggregate (sum by, topk) to see the rest."
        ));
    }
    Ok(out.to_string())
}

fn container_memory_history(args: &Value) -> Result<String, ToolError> {
    let pod = name_arg(args, "pod", true)?.unwrap_or_default();
    let container = name_arg(args, "container", false)?;
    let minutes = minutes_arg(args, 60)?;
    let sel = selector(&pod, container.as_deref());
    // A restarted container is a new cAdvisor series: one line per container name.
    let series = format!("max by (container) (container_memory_working_set_bytes{{{sel}}})");
    let peak_query = format!(
        "max by (container) (max_over_time(container_memory_working_set_bytes{{{sel}}}[{minutes}m]))"
    );
    let peaks = run(&peak_query, None)?;
    let trend = run(&series, Some(window(minutes)?))?;
    let containers = peaks
        .iter()
        .filter_map(|p| {
            let name = container_of(p);
            let peak = p.points.first()?.1;
            let points: Vec<(f64, f64)> = trend
                .iter()
                .find(|t| container_of(t) == name)
                .map(|t| t.points.clone())
                .unwrap_or_default();
            let lifetimes = analysis::lifetimes(&points);
            Some(ContainerMemory {
                container: name,
                peak_bytes: peak,
                last_bytes: points.last().map(|p| p.1),
                samples: points.len(),
                leak: analysis::leak(&lifetimes),
                lifetimes,
            })
        })
        .collect();
    answer(&MemoryHistory {
        namespace: cluster::namespace(),
        pod,
        window_minutes: minutes,
        queries: vec![peak_query, series],
        containers,
    })
}

fn container_cpu_throttling(args: &Value) -> Result<String, ToolError> {
    let pod = name_arg(args, "pod", true)?.unwrap_or_default();
    let container = name_arg(args, "container", false)?;
    let minutes = minutes_arg(args, 30)?;
    let sel = selector(&pod, container.as_deref());
    let ratio = format!(
        "sum by (container) (rate(container_cpu_cfs_throttled_periods_total{{{sel}}}[2m])) / sum by (container) (rate(container_cpu_cfs_periods_total{{{sel}}}[2m]))"
    );
    let usage =
        format!("sum by (container) (rate(container_cpu_usage_seconds_total{{{sel}}}[2m]))");
    let range = window(minutes)?;
    let ratios = run(&ratio, Some(range))?;
    let usages = run(&usage, Some(range))?;
    let containers = ratios
        .iter()
        .filter_map(|r| {
            let name = container_of(r);
            let summary = analysis::summarise(&r.points)?;
            let max_cores = usages
                .iter()
                .find(|u| container_of(u) == name)
                .and_then(|u| analysis::summarise(&u.points))
                .map(|s| s.max);
            Some(ContainerThrottling {
                container: name,
                max_ratio: summary.max,
                mean_ratio: summary.mean,
                last_ratio: Some(summary.last),
                max_cores,
            })
        })
        .collect();
    answer(&CpuThrottling {
        namespace: cluster::namespace(),
        pod,
        window_minutes: minutes,
        queries: vec![ratio, usage],
        containers,
    })
}

fn restart_history(args: &Value) -> Result<String, ToolError> {
    let pod = name_arg(args, "pod", true)?.unwrap_or_default();
    let minutes = minutes_arg(args, 360)?;
    let namespace = cluster::namespace();
    let sel = format!(r#"namespace="{namespace}",pod="{pod}""#);
    let restarts =
        format!("max by (container) (kube_pod_container_status_restarts_total{{{sel}}})");
    let increase = format!(
        "max by (container) (increase(kube_pod_container_status_restarts_total{{{sel}}}[{minutes}m]))"
    );
    let reasons = format!("kube_pod_container_status_last_terminated_reason{{{sel}}} == 1");
    let counts = run(&restarts, None)?;
    let increases = run(&increase, None)?;
    let reasons_seen = run(&reasons, None)?;
    let containers = counts
        .iter()
        .map(|c| {
            let name = container_of(c);
            ContainerRestarts {
                restart_count: c.points.first().map(|p| p.1 as u64).unwrap_or(0),
                restarts_in_window: increases
                    .iter()
                    .find(|i| container_of(i) == name)
                    .and_then(|i| i.points.first())
                    .map(|p| p.1.round().max(0.0) as u64)
                    .unwrap_or(0),
                last_terminated_reasons: reasons_seen
                    .iter()
                    .filter(|r| container_of(r) == name)
                    .filter_map(|r| r.labels.get("reason").cloned())
                    .collect(),
                container: name,
            }
        })
        .collect();
    answer(&RestartHistory {
        namespace,
        pod,
        window_minutes: minutes,
        queries: vec![restarts, increase, reasons],
        containers,
    })
}

fn spec(name: &str, description: &str, parameters: Value) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        description: description.into(),
        parameters: parameters.to_string(),
    }
}

fn pod_params(default_minutes: u32, container: bool) -> Value {
    let mut properties = json!({
        "pod": {"type": "string", "description": "The Pod's name, in the namespace under investigation", "minLength": 1, "maxLength": 253},
        "minutes": {"type": "integer", "minimum": 1, "maximum": 10080, "description": format!("The window, in minutes (default {default_minutes})")}
    });
    if container {
        properties["container"] = json!({"type": "string", "description": "One container (default: all of the Pod's)", "minLength": 1, "maxLength": 63});
    }
    json!({"type": "object", "properties": properties, "required": ["pod"], "additionalProperties": false})
}

impl Guest for Prometheus {
    fn configure(settings: String) -> Result<(), String> {
        let value: Value =
            serde_json::from_str(&settings).map_err(|e| format!("settings are not JSON: {e}"))?;
        let url = value["url"]
            .as_str()
            .ok_or("settings.url is required: the Prometheus base URL, for example http://prometheus.monitoring:9090 (grant it in the manifest's egress)")?
            .trim_end_matches('/')
            .to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.contains(['?', '#'])
        {
            return Err(format!(
                "settings.url {url:?} must be an http(s) base URL without a query"
            ));
        }
        let number = |key: &str, default: u64, max: u64| -> Result<u64, String> {
            match value.get(key) {
                None => Ok(default),
                Some(v) => v.as_u64().filter(|n| (1..=max).contains(n)).ok_or(format!(
                    "settings.{key} must be a whole number from 1 to {max}"
                )),
            }
        };
        let max_series = number("maxSeries", 20, 200)? as usize;
        let max_points = number("maxPoints", 240, 11000)?;
        for key in value.as_object().into_iter().flatten().map(|(k, _)| k) {
            if !["url", "maxSeries", "maxPoints"].contains(&key.as_str()) {
                return Err(format!(
                    "unknown setting {key}; the prometheus plugin takes url, maxSeries and maxPoints"
                ));
            }
        }
        SETTINGS.with(|s| {
            *s.borrow_mut() = Some(Settings {
                url,
                max_series,
                max_points,
            })
        });
        Ok(())
    }

    fn describe() -> Vec<ToolSpec> {
        vec![
            spec(
                "query_prometheus",
                "Runs a PromQL query on the cluster's Prometheus: instant, or over the last rangeMinutes with each series summarised (min, max, last, p95). Names the query so a person can rerun it.",
                json!({
                    "type": "object",
                    "properties": {
                        "query": {"type": "string", "minLength": 1, "maxLength": 2000, "description": "PromQL"},
                        "rangeMinutes": {"type": "integer", "minimum": 1, "maximum": 10080, "description": "Summarise over this many minutes instead of an instant value"}
                    },
                    "required": ["query"],
                    "additionalProperties": false
                }),
            ),
            spec(
                "container_memory_history",
                "A Pod's containers' memory working set over a window: the peak, the last value, each run between restarts, and whether it climbs steadily like a leak.",
                pod_params(60, true),
            ),
            spec(
                "container_cpu_throttling",
                "How often a Pod's containers were CPU-throttled (share of CFS periods) and the most CPU they used, over a window.",
                pod_params(30, true),
            ),
            spec(
                "restart_history",
                "Restarts of a Pod's containers over a window and the reasons their last runs ended (kube-state-metrics).",
                pod_params(360, false),
            ),
        ]
    }

    fn invoke(name: String, arguments: String) -> Result<String, ToolError> {
        let args: Value = serde_json::from_str(&arguments)
            .map_err(|e| ToolError::InvalidArguments(format!("arguments are not JSON: {e}")))?;
        match name.as_str() {
            "query_prometheus" => query_prometheus(&args),
            "container_memory_history" => container_memory_history(&args),
            "container_cpu_throttling" => container_cpu_throttling(&args),
            "restart_history" => restart_history(&args),
            _ => Err(ToolError::UnknownTool(name)),
        }
    }
}

export!(Prometheus);

//! A real Prometheus on loopback (built from the module pinned in `tests/cluster/go/prometheus`),
//! scraping a loopback exporter every second. The exporter serves container series under the
//! kubelet's (cAdvisor's) names and labels and kube-state-metrics', with values a test writes as
//! functions of time: kwok emulates the resource metrics API, but not the cAdvisor series
//! (working-set peaks, CFS throttling) that a Prometheus scrapes from a kubelet.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::loopback::{encode, request};
use crate::process;

/// A series' value at a time (unix seconds).
pub type ValueFn = Box<dyn Fn(f64) -> f64 + Send + Sync>;

struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: ValueFn,
}

/// Serves `/metrics` in the text exposition format from the series added to it.
pub struct Exporter {
    pub addr: SocketAddr,
    series: Arc<Mutex<Vec<Series>>>,
}

/// The labels cAdvisor gives a container's series (`container`, `pod`, `namespace`, `id`,
/// `image`, `name`).
pub fn container_labels(namespace: &str, pod: &str, container: &str) -> Vec<(String, String)> {
    [
        ("namespace", namespace.to_string()),
        ("pod", pod.to_string()),
        ("container", container.to_string()),
        ("image", format!("registry.example.com/{container}:1.0")),
        (
            "id",
            format!(
                "/kubepods.slice/kubepods-burstable.slice/cri-containerd-{pod}-{container}.scope"
            ),
        ),
        ("name", format!("{pod}_{container}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Exporter {
    pub async fn start() -> Result<Exporter> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let series: Arc<Mutex<Vec<Series>>> = Arc::default();
        let served = series.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let text = render(&served.lock().unwrap_or_else(|e| e.into_inner()));
                tokio::spawn(async move {
                    let mut request = vec![0u8; 4096];
                    let _ = stream.read(&mut request).await;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        text.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(text.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(Exporter { addr, series })
    }

    /// Serves `name{labels}` with `value(now)` from the next scrape on.
    pub fn add(&self, name: &str, labels: Vec<(String, String)>, value: ValueFn) {
        self.series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Series {
                name: name.to_string(),
                labels: labels.into_iter().collect(),
                value,
            });
    }
}

/// Every sample carries the time its value was computed at, as cAdvisor's do: Prometheus then
/// stores it at that time rather than when its scrape began, so a rate over the series is the
/// rate the test wrote however late a loaded machine answers the scrape.
fn render(series: &[Series]) -> String {
    let t_ms = now_ms();
    let t = t_ms as f64 / 1000.0;
    let mut out = String::new();
    for s in series {
        let labels: Vec<String> = s
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
            .collect();
        out.push_str(&format!(
            "{}{{{}}} {} {t_ms}\n",
            s.name,
            labels.join(","),
            (s.value)(t)
        ));
    }
    out
}

/// A Prometheus process scraping some targets every second; stopped when dropped.
pub struct Prometheus {
    id: u64,
    pub url: String,
    log: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus (building it first if the cache lacks it) scraping `targets`, and waits
    /// until it is ready.
    pub async fn start(targets: &[SocketAddr]) -> Result<Prometheus> {
        let binary = crate::go_tool("prometheus")?;
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: kubelet-cadvisor\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ),
        )?;
        let log = dir.path().join("prometheus.log");
        let mut cmd = Command::new(&binary);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn");
        let id = process::register(dir);
        let prometheus = Prometheus {
            id,
            url: format!("http://127.0.0.1:{port}"),
            log: log.clone(),
        };
        process::spawn(id, "prometheus", cmd, &log)?;
        process::await_ready(
            id,
            "prometheus",
            &log,
            Duration::from_millis(200),
            || async {
                get(port, "/-/ready")
                    .await
                    .is_ok_and(|(status, _)| status == 200)
            },
        )
        .await?;
        Ok(prometheus)
    }

    fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// An instant query's `data.result`.
    pub async fn query(&self, promql: &str) -> Result<Vec<Value>> {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let (status, body) = get(self.port(), &path).await?;
        let value: Value = serde_json::from_slice(&body)
            .with_context(|| format!("prometheus answered HTTP {status} with no JSON"))?;
        if value["status"] != "success" {
            bail!("prometheus refused {promql:?}: {}", value["error"]);
        }
        Ok(value["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Waits until `promql` returns a sample whose value is at least `at_least`.
    pub async fn wait_for(&self, promql: &str, at_least: f64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let result = self.query(promql).await?;
            let best = result
                .iter()
                .filter_map(|r| r["value"][1].as_str()?.parse::<f64>().ok())
                .fold(f64::MIN, f64::max);
            if best >= at_least {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{promql:?} did not reach {at_least} within {timeout:?} (it is {best}); prometheus log:\n{}",
                    process::log_tail(&self.log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        process::stop(self.id);
    }
}

/// A GET on loopback with HTTP/1.0 (the server closes the connection after the answer).
async fn get(port: u16, path: &str) -> Result<(u16, Vec<u8>)> {
    request(port, "GET", path, &[], b"").await
}

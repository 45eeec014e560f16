//! A real Alertmanager (built from its Go module like Prometheus) on loopback, routing every
//! alert to one webhook receiver: what the alert e2e tests send alerts through.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::Value;

use crate::loopback::request;
use crate::process;

/// An Alertmanager process; stopped when dropped.
pub struct Alertmanager {
    id: u64,
    port: u16,
    log: PathBuf,
}

impl Alertmanager {
    /// Starts Alertmanager with one route to `webhook_url`, sending `bearer` as the webhook's
    /// `Authorization` credentials, grouping by alert name and namespace and flushing within a
    /// second; waits until it is ready.
    pub async fn start(webhook_url: &str, bearer: &str) -> Result<Alertmanager> {
        let binary = crate::go_tool("alertmanager")?;
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: sre-operator\n  group_by: [alertname, namespace]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: sre-operator\n    webhook_configs:\n      - url: '{webhook_url}'\n        send_resolved: true\n        http_config:\n          authorization:\n            credentials: '{bearer}'\n"
            ),
        )?;
        let log = dir.path().join("alertmanager.log");
        let mut cmd = Command::new(&binary);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // One instance: no gossip cluster.
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn");
        let id = process::register(dir);
        let alertmanager = Alertmanager {
            id,
            port,
            log: log.clone(),
        };
        process::spawn(id, "alertmanager", cmd, &log)?;
        process::await_ready(
            id,
            "alertmanager",
            &log,
            Duration::from_millis(200),
            || async {
                request(port, "GET", "/-/ready", &[], b"")
                    .await
                    .is_ok_and(|(status, _)| status == 200)
            },
        )
        .await?;
        Ok(alertmanager)
    }

    /// Posts alerts through its API (`POST /api/v2/alerts`), as Prometheus does.
    pub async fn send(&self, alerts: &Value) -> Result<()> {
        let body = alerts.to_string();
        let (status, answer) = request(
            self.port,
            "POST",
            "/api/v2/alerts",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .await?;
        if status != 200 {
            bail!(
                "alertmanager refused the alerts (HTTP {status}): {}\n{}",
                String::from_utf8_lossy(&answer),
                process::log_tail(&self.log, 20)
            );
        }
        Ok(())
    }

    pub fn log_tail(&self) -> String {
        process::log_tail(&self.log, 40)
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        process::stop(self.id);
    }
}

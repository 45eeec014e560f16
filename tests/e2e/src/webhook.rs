//! A loopback webhook receiver (a Slack incoming webhook, Alertmanager's receiver side): records
//! every POST's body and answers 503 to the first `fail_first` of them, then 200.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the receiver saw: every request's path and JSON body, failed ones included.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
    pub answered: u16,
}

pub struct Webhook {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Delivery>>>,
}

/// Requests larger than this are answered 413 and not recorded.
const MAX_BODY: usize = 1 << 20;

impl Webhook {
    pub async fn start(fail_first: usize) -> Result<Webhook> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let head_end = loop {
                        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                        if buffer.len() > MAX_BODY {
                            return;
                        }
                    };
                    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
                    let header = |name: &str| {
                        head.lines().find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.trim()
                                .eq_ignore_ascii_case(name)
                                .then(|| v.trim().to_string())
                        })
                    };
                    let length: usize = header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0)
                        .min(MAX_BODY);
                    while buffer.len() < head_end + length {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = &buffer[head_end..(head_end + length).min(buffer.len())];
                    let path = head
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_string();
                    let answered = {
                        let mut seen = record.lock().unwrap_or_else(|e| e.into_inner());
                        let answered = if seen.len() < fail_first { 503 } else { 200 };
                        seen.push(Delivery {
                            path,
                            authorization: header("authorization"),
                            body: serde_json::from_slice(body).unwrap_or(Value::Null),
                            answered,
                        });
                        answered
                    };
                    let reason = if answered == 200 {
                        "OK"
                    } else {
                        "Service Unavailable"
                    };
                    let response = format!(
                        "HTTP/1.1 {answered} {reason}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(Webhook { addr, seen })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The requests answered 200.
    pub fn delivered(&self) -> Vec<Delivery> {
        self.seen()
            .into_iter()
            .filter(|d| d.answered == 200)
            .collect()
    }
}

//! A scripted OpenAI-compatible chat-completions server on loopback: it answers each request
//! with the next scripted (status code, JSON body), the last one repeating, and records every
//! request body.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A running scripted server: the base URL to give the client, and the request bodies it got.
pub struct ScriptedServer {
    pub base_url: String,
    pub requests: Arc<Mutex<Vec<Value>>>,
}

/// Serves scripted responses in order (the last repeats) and records every request body.
pub async fn serve(script: Vec<(u16, Value)>) -> ScriptedServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (seen, script) = (seen.clone(), script.clone());
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                loop {
                    // Read one request: headers, then Content-Length bytes of body.
                    let header_end = loop {
                        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 8192];
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let headers =
                        String::from_utf8_lossy(&buffer[..header_end]).to_ascii_lowercase();
                    let length: usize = headers
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    while buffer.len() < header_end + length {
                        let mut chunk = [0u8; 8192];
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body: Value =
                        serde_json::from_slice(&buffer[header_end..header_end + length])
                            .unwrap_or(Value::Null);
                    buffer.drain(..header_end + length);
                    let index = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(body);
                        seen.len() - 1
                    };
                    let (code, response) = script[index.min(script.len() - 1)].clone();
                    let text = response.to_string();
                    let reply = format!(
                        "HTTP/1.1 {code} Scripted\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
                        text.len()
                    );
                    if socket.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    ScriptedServer { base_url, requests }
}

/// A 200 chat completion carrying `message`, billed `tokens` prompt tokens and a fifth of that
/// in completion tokens.
pub fn completion(message: Value, tokens: u64) -> (u16, Value) {
    (
        200,
        json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "test-model",
               "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": tokens, "completion_tokens": tokens / 5, "total_tokens": tokens + tokens / 5}}),
    )
}

/// A completion that calls `tool` with `arguments` (100 prompt tokens, 20 completion tokens).
pub fn call(tool: &str, arguments: Value) -> (u16, Value) {
    completion(
        json!({"role": "assistant", "content": format!("Observation: need more data.\nThought: call {tool}."),
               "tool_calls": [{"id": format!("call-{tool}"), "type": "function",
                               "function": {"name": tool, "arguments": arguments.to_string()}}]}),
        100,
    )
}

/// A completion whose content is the final `answer` as JSON (100 prompt tokens, 20 completion
/// tokens).
pub fn answer(answer: Value) -> (u16, Value) {
    completion(
        json!({"role": "assistant", "content": answer.to_string()}),
        100,
    )
}

/// An OpenAI-style error response with this status code.
pub fn error(code: u16) -> (u16, Value) {
    (
        code,
        json!({"error": {"message": format!("scripted {code}"), "type": "server_error", "param": null, "code": null}}),
    )
}

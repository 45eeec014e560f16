//! `sre-operator mcp` over stdio, as MCP clients see it: the official Python SDK drives it on the
//! bundled dump (tests/mcp/client.py), and raw JSON-RPC checks that garbage, an oversized message
//! and an unknown method get errors while the server keeps serving.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::python_with_mcp;

mod support;

fn repo(path: &str) -> PathBuf {
    support::repo_root().join(path)
}

#[test]
fn the_python_sdk_lists_calls_diagnoses_and_reads_reports_over_stdio() {
    let python = python_with_mcp();
    let started = Instant::now();
    let output = Command::new(python)
        .arg(repo("tests/mcp/client.py"))
        .arg(env!("CARGO_BIN_EXE_sre-operator"))
        .arg(repo("tests/fixtures/dump"))
        .output()
        .expect("the client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let figures: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .expect("the client's last line is its figures");
    eprintln!(
        "python client over stdio: {:?} in all; {figures}",
        started.elapsed()
    );
}

/// The server's stdin and its answers, read on a thread so that a silent server fails the test
/// instead of hanging it.
struct Raw {
    child: Child,
    stdin: ChildStdin,
    answers: mpsc::Receiver<Value>,
    /// Messages read while waiting for another answer.
    seen: Vec<Value>,
}

impl Raw {
    fn start() -> Raw {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sre-operator"))
            .args(["mcp", "--dump"])
            .arg(repo("tests/fixtures/dump"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sre-operator mcp starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, answers) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("the server wrote a line that is not JSON ({e}): {line}")
                });
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Raw {
            child,
            stdin,
            answers,
            seen: Vec::new(),
        }
    }

    fn send(&mut self, line: &[u8]) {
        self.stdin.write_all(line).unwrap();
        self.stdin.write_all(b"\n").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The answer whose `id` is `id` (`null` for an error about a message without one), in
    /// whatever order the server answers.
    fn answer(&mut self, id: Value) -> Value {
        if let Some(at) = self.seen.iter().position(|v| v["id"] == id) {
            return self.seen.remove(at);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let value = self
                .answers
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer with id {id} within 30s"));
            if value["id"] == id {
                return value;
            }
            self.seen.push(value);
        }
    }

    /// The process's peak resident memory, in KiB.
    fn peak_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn garbage_an_oversized_message_and_an_unknown_method_get_errors_and_the_server_keeps_serving() {
    let mut raw = Raw::start();
    raw.send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}}})
        .to_string()
        .as_bytes(),
    );
    assert!(raw.answer(json!(1))["result"]["serverInfo"].is_object());
    raw.send(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);

    raw.send(br#"{"jsonrpc": "2.0", "id": 2, "method": "tools/list""#);
    // Unparsable input has no id to answer: rmcp ignores it, as the other official SDKs do (an
    // answer could start an error storm with a peer that echoes it). JSON that is not a JSON-RPC
    // message is answered Invalid Request.
    raw.send(b"not json at all \x1b[31m");
    raw.send(br#"{"jsonrpc":"2.0","params":{"not":"a message"}}"#);
    let invalid = raw.answer(Value::Null);
    assert_eq!(invalid["error"]["code"], json!(-32600), "{invalid}");
    raw.send(br#"{"jsonrpc":"2.0","id":3,"method":"no/such/method"}"#);
    let unknown = raw.answer(json!(3));
    assert!(
        unknown["error"]["code"].is_i64(),
        "an unknown method is an error: {unknown}"
    );

    let before = raw.peak_kib();
    // 8 MiB in one line: a tools/call whose argument is mostly padding.
    let padding = "x".repeat(8 << 20);
    raw.send(
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
            "name": "list_reports", "arguments": {"namespace": padding}}})
        .to_string()
        .as_bytes(),
    );
    raw.send(br#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#);
    let tools = raw.answer(json!(5));
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("tools/list still answers after the garbage: {tools}"))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"diagnose"), "{names:?}");
    let grown = raw.peak_kib().saturating_sub(before);
    assert!(
        grown < 4 << 10,
        "an 8 MiB message grew the server's peak memory by {grown} KiB: it must be dropped \
         before it is buffered whole"
    );
    assert!(
        raw.child.try_wait().unwrap().is_none(),
        "the server is still running"
    );
}

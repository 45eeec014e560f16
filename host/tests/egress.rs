//! Tool plugins' HTTP egress with a real component (`tests/components/egress-probe`, world
//! 0.2.0, which sends whatever it is asked to) against loopback servers that count what reaches
//! them: what a grant lets through, what it refuses (and that a refused request reaches nothing),
//! redirects, the credential the host adds and the plugin never sees, and every bound.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use serde_json::{Value, json};
use sre_operator::cluster::DumpCluster;
use sre_operator::plugin::egress::{SecretKeyRef, StaticSecrets};
use sre_operator::plugin::{CallError, ClusterAccess, PluginSet, Runtime};

const SECRET: &str = "s3cr3t-token-VALUE-42";

/// A loopback server that records every request (method, path, headers) and answers by path:
/// `/redirect?to=URL` redirects, `/big?n=N` sends N bytes, `/slow` answers after 30 s, anything
/// else echoes the request's headers as JSON.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Server {
    async fn start() -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let log = log.clone();
                            async move { Ok::<_, Infallible>(answer(req, &log).await) }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Server { addr, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    log: &Mutex<Vec<Value>>,
) -> Response<Full<Bytes>> {
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    log.lock()
        .unwrap()
        .push(json!({"method": req.method().as_str(), "path": path, "headers": headers}));
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(|v| v.replace("%3A", ":").replace("%2F", "/"))
    };
    match path.as_str() {
        "/api/redirect" => Response::builder()
            .status(302)
            .header("location", param("to").unwrap_or_default())
            .body(Full::new(Bytes::new()))
            .unwrap(),
        "/api/big" => {
            let n: usize = param("n").and_then(|n| n.parse().ok()).unwrap_or(0);
            Response::new(Full::new(Bytes::from(vec![b'x'; n])))
        }
        "/api/slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Response::new(Full::new(Bytes::from_static(b"late")))
        }
        _ => Response::builder()
            // A server that echoes the credential in a header as well as in its body.
            .header(
                "x-echo-authorization",
                headers.get("authorization").cloned().unwrap_or_default(),
            )
            .body(Full::new(Bytes::from(
                serde_json::to_vec(&headers).unwrap(),
            )))
            .unwrap(),
    }
}

fn access() -> ClusterAccess {
    let dump = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dump");
    ClusterAccess::new(Arc::new(DumpCluster::load(dump).unwrap()), "default")
}

/// The probe loaded under `manifest_entry` (YAML lines after `file:`), with the test secret.
fn probe(extra: &str) -> (PluginSet, tempfile::TempDir) {
    let runtime = Runtime::new(None).unwrap();
    runtime.set_secrets(Arc::new(StaticSecrets(HashMap::from([(
        SecretKeyRef {
            name: "prometheus-token".into(),
            key: "token".into(),
        },
        SECRET.to_string(),
    )]))));
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(env!("SRE_OPERATOR_WASM_DIR")).join("egress_probe.wasm"),
        dir.path().join("egress_probe.wasm"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("plugins.yaml"),
        format!("plugins:\n  - name: probe\n    world: tool\n    file: egress_probe.wasm\n{extra}"),
    )
    .unwrap();
    let set = PluginSet::from_dir(&runtime, dir.path()).unwrap();
    assert!(set.refusals().is_empty(), "{:?}", set.refusals());
    (set, dir)
}

async fn fetch(set: &PluginSet, args: Value) -> Result<Value, CallError> {
    set.invoke("fetch", &args, access())
        .await
        .map(|text| serde_json::from_str(&text).unwrap())
}

fn failed(result: Result<Value, CallError>) -> String {
    match result {
        Err(e) => e.to_string(),
        Ok(v) => panic!("the request went through: {v}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_adds_the_credential_and_the_plugin_never_sees_it() {
    let granted = Server::start().await;
    let (set, _dir) = probe(&format!(
        "    egress:\n      - url: {}\n        auth: {{secretRef: {{name: prometheus-token, key: token}}, scheme: Bearer}}\n",
        granted.url("/api/")
    ));
    let answer = fetch(
        &set,
        json!({"url": granted.url("/api/v1/query?query=up"), "headers": {"Authorization": "Bearer made-by-the-plugin", "x-probe": "1"}}),
    )
    .await
    .unwrap();
    // The server's view: the host's credential, not the plugin's.
    let hits = granted.hits();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(
        hits[0]["headers"]["authorization"],
        format!("Bearer {SECRET}")
    );
    assert_eq!(hits[0]["headers"]["x-probe"], "1");
    // The plugin's view: what it set itself, and an echo with the value replaced.
    let text = answer.to_string();
    assert!(
        !text.contains(SECRET),
        "the plugin saw the credential: {text}"
    );
    let response = &answer["responses"][0];
    assert_eq!(response["status"], 200);
    assert!(
        response["body"]
            .as_str()
            .unwrap()
            .contains("Bearer [redacted]"),
        "{response}"
    );
    let echoed: Vec<&Value> = response["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0] == "x-echo-authorization")
        .collect();
    assert_eq!(echoed[0][1], "Bearer [redacted]");
    assert_eq!(
        answer["sentHeaders"],
        json!([
            ["Authorization", "Bearer made-by-the-plugin"],
            ["x-probe", "1"]
        ])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_outside_the_grant_reaches_nothing_and_the_error_names_the_rule() {
    let granted = Server::start().await;
    let outside = Server::start().await;
    let (set, _dir) = probe(&format!(
        "    egress:\n      - url: {}\n        methods: [GET]\n",
        granted.url("/api/")
    ));
    let rule = format!("egress[0] (GET http://{}/api/)", granted.addr);

    let err = failed(fetch(&set, json!({"url": outside.url("/api/v1/query")})).await);
    assert!(
        err.contains("egress denied")
            && err.contains("outside every egress grant")
            && err.contains(&rule),
        "{err}"
    );
    let err = failed(fetch(&set, json!({"url": granted.url("/admin")})).await);
    assert!(err.contains("outside every egress grant"), "{err}");
    let err = failed(fetch(&set, json!({"url": granted.url("/api/../admin")})).await);
    assert!(err.contains("dot segments"), "{err}");
    let err = failed(
        fetch(
            &set,
            json!({"url": granted.url("/api/v1/query"), "method": "DELETE"}),
        )
        .await,
    );
    assert!(
        err.contains("method DELETE is not granted") && err.contains(&rule),
        "{err}"
    );

    // A redirect is followed only within the grant: the hop outside is refused like any request.
    let to_outside = granted.url(&format!("/api/redirect?to={}", outside.url("/api/stolen")));
    let err = failed(fetch(&set, json!({"url": to_outside, "redirects": 3})).await);
    assert!(err.contains("outside every egress grant"), "{err}");
    let inside = granted.url(&format!("/api/redirect?to={}", granted.url("/api/landed")));
    let answer = fetch(&set, json!({"url": inside, "redirects": 3}))
        .await
        .unwrap();
    assert_eq!(answer["responses"][0]["url"], granted.url("/api/landed"));

    assert!(
        outside.hits().is_empty(),
        "a refused request reached a server: {:?}",
        outside.hits()
    );
    let paths: Vec<String> = granted
        .hits()
        .iter()
        .map(|h| h["path"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(paths, ["/api/redirect", "/api/redirect", "/api/landed"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_name_is_checked_by_the_addresses_it_resolves_to() {
    let granted = Server::start().await;
    let port = granted.addr.port();
    let (set, _dir) = probe(&format!(
        "    egress:\n      - url: http://localhost:{port}/api/\n        ipRanges: [10.0.0.0/8]\n"
    ));
    let err = failed(
        fetch(
            &set,
            json!({"url": format!("http://localhost:{port}/api/x")}),
        )
        .await,
    );
    assert!(
        err.contains("resolved to 127.0.0.1") && err.contains("egress[0].ipRanges [10.0.0.0/8]"),
        "{err}"
    );
    assert!(granted.hits().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_bytes_and_time_are_bounded_per_call() {
    let granted = Server::start().await;
    let (set, _dir) = probe(&format!(
        "    limits: {{timeout: 1s, requests: 3, responseBytes: 64Ki}}\n    egress:\n      - url: {}\n",
        granted.url("/api/")
    ));
    let err = failed(fetch(&set, json!({"url": granted.url("/api/a"), "times": 4})).await);
    assert!(
        err.contains("already sent 3 requests") && err.contains("limits.requests"),
        "{err}"
    );
    assert_eq!(granted.hits().len(), 3);
    // The count is per call: the next call starts again.
    assert!(
        fetch(&set, json!({"url": granted.url("/api/a")}))
            .await
            .is_ok()
    );

    let err = failed(fetch(&set, json!({"url": granted.url("/api/big?n=200000")})).await);
    assert!(
        err.contains("limits.responseBytes") && err.contains("64Ki"),
        "{err}"
    );
    let small = fetch(&set, json!({"url": granted.url("/api/big?n=1000")}))
        .await
        .unwrap();
    assert_eq!(small["responses"][0]["body"].as_str().unwrap().len(), 1000);

    let started = std::time::Instant::now();
    match fetch(&set, json!({"url": granted.url("/api/slow")})).await {
        Err(CallError::Deadline { waiting_on, .. }) => {
            let what = waiting_on.unwrap_or_default();
            assert!(
                what.starts_with("GET http://") && what.ends_with("/api/slow"),
                "{what}"
            );
        }
        other => panic!("a request past the plugin's deadline: {other:?}"),
    }
    // Cut at the plugin's 1 s, not the server's 30 s.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_grant_a_plugin_reaches_nothing_and_filters_get_no_egress() {
    let server = Server::start().await;
    let (set, _dir) = probe("");
    let err = failed(fetch(&set, json!({"url": server.url("/api/x")})).await);
    assert!(err.contains("has no egress grant"), "{err}");
    assert!(server.hits().is_empty());

    let runtime = Runtime::new(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plugins.yaml"),
        "plugins:\n  - name: patch-safety\n    world: patch-filter\n    builtin: patch-safety\n    egress: [{url: 'https://example.com/'}]\n",
    )
    .unwrap();
    let set = PluginSet::from_dir(&runtime, dir.path()).unwrap();
    let reasons: Vec<&str> = set.refusals().iter().map(|r| r.reason.as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("egress is granted to tool plugins only")),
        "{reasons:?}"
    );
}

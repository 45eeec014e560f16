//! A mocked Kubernetes API service (the tower-test pattern of kube-rs's controller-rs): every
//! request a client makes is recorded and answered by a route the test gives, so the test sees
//! exactly what was read and written.

use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// One request the mocked API server received; `body` is `null` when it is not JSON.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub body: Value,
}

/// Every request so far, in order.
pub type Log = Arc<Mutex<Vec<Seen>>>;

/// A client whose every request is logged and answered by `route` (status code, JSON body).
pub fn mock(route: impl Fn(&Seen) -> (u16, Value) + Send + 'static) -> (Client, Log) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen: Log = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().to_string();
            let uri = request.uri().to_string();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let s = Seen { method, uri, body };
            log.lock().unwrap().push(s.clone());
            let (status, reply) = route(&s);
            let response = Response::builder()
                .status(StatusCode::from_u16(status).unwrap())
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    (Client::new(service, "default"), seen)
}

/// The requests with this method whose URI contains `needle`.
pub fn requests(seen: &Log, method: &str, needle: &str) -> Vec<Seen> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|s| s.method == method && s.uri.contains(needle))
        .cloned()
        .collect()
}

/// A `Status` failure as the API server sends it.
pub fn status_error(code: u16, reason: &str, message: &str, name: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
           "reason": reason, "message": message, "details": {"name": name}})
}

/// A 404 for the object named `what`.
pub fn not_found(what: &str) -> (u16, Value) {
    (
        404,
        status_error(404, "NotFound", &format!("{what} not found"), what),
    )
}

/// A 409 for the object named `what`: it was modified since the resourceVersion the write named.
pub fn conflict(what: &str) -> (u16, Value) {
    (
        409,
        status_error(409, "Conflict", "the object has been modified", what),
    )
}

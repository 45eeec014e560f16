//! A scripted Kubernetes API service (the tower-test pattern of kube-rs's controller-rs, whose
//! `ApiServerVerifier` answers only what a scenario scripts): a test lists the exchanges it
//! expects, in order, each a method and a path with its reply; a request the script does not
//! name fails the test, naming the request and what was expected, and `Api::done` fails it when
//! a scripted request never came. Requests that come in no fixed order or number (Events) are
//! scripted as such with `any_number`. Every request is also recorded, so a test can look at what
//! was written.

use std::sync::{Arc, Mutex};
use std::time::Duration;

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

impl Seen {
    /// The path, without the query string.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }

    fn query(&self) -> &str {
        self.uri.split_once('?').map(|(_, q)| q).unwrap_or("")
    }
}

/// Every request so far, in order.
pub type Log = Arc<Mutex<Vec<Seen>>>;

type Reply = Box<dyn Fn(&Seen) -> (u16, Value) + Send>;

/// One expected request and its answer. The query string is ignored unless the exchange names
/// parts of it (`with_query` / `without_query`): how a write is encoded (merge patch or apply)
/// is not what these tests are about.
pub struct Exchange {
    method: &'static str,
    path: String,
    query: Vec<String>,
    not_query: Vec<String>,
    reply: Reply,
}

impl Exchange {
    pub fn new(method: &'static str, path: impl Into<String>) -> Self {
        Exchange {
            method,
            path: path.into(),
            query: vec![],
            not_query: vec![],
            reply: Box::new(|_| (200, json!({}))),
        }
    }

    pub fn get(path: impl Into<String>) -> Self {
        Self::new("GET", path)
    }

    pub fn patch(path: impl Into<String>) -> Self {
        Self::new("PATCH", path)
    }

    pub fn post(path: impl Into<String>) -> Self {
        Self::new("POST", path)
    }

    /// The query string must contain `part` (e.g. `dryRun=All`).
    pub fn with_query(mut self, part: &str) -> Self {
        self.query.push(part.into());
        self
    }

    /// The query string must not contain `part`.
    pub fn without_query(mut self, part: &str) -> Self {
        self.not_query.push(part.into());
        self
    }

    /// Answers with `status` and `body`.
    pub fn reply(self, status: u16, body: Value) -> Self {
        self.reply_with(move |_| (status, body.clone()))
    }

    /// Answers with what `reply` makes of the request.
    pub fn reply_with(mut self, reply: impl Fn(&Seen) -> (u16, Value) + Send + 'static) -> Self {
        self.reply = Box::new(reply);
        self
    }

    /// Answers 201 with the request's own body (what the API server does with an Event).
    pub fn echo(self) -> Self {
        self.reply_with(|s| (201, s.body.clone()))
    }

    fn matches(&self, s: &Seen) -> bool {
        s.method == self.method
            && s.path() == self.path
            && self.query.iter().all(|q| s.query().contains(q.as_str()))
            && !self
                .not_query
                .iter()
                .any(|q| s.query().contains(q.as_str()))
    }

    fn describe(&self) -> String {
        let mut d = format!("{} {}", self.method, self.path);
        for q in &self.query {
            d += &format!(" with ?{q}");
        }
        for q in &self.not_query {
            d += &format!(" without ?{q}");
        }
        d
    }
}

/// What a test expects the API server to be asked, in order, plus what may come any number of
/// times.
#[derive(Default)]
pub struct Script {
    steps: Vec<Exchange>,
    any_number: Vec<Exchange>,
}

impl Script {
    pub fn new() -> Self {
        Self::default()
    }

    /// Expects `exchange` next, once.
    pub fn then(mut self, exchange: Exchange) -> Self {
        self.steps.push(exchange);
        self
    }

    /// Allows `exchange` any number of times (none included), anywhere in the order.
    pub fn any_number(mut self, exchange: Exchange) -> Self {
        self.any_number.push(exchange);
        self
    }

    /// A client for the script, and the handle that checks it was followed.
    pub fn start(self) -> (Client, Api) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let state = Arc::new(Mutex::new(State {
            next: 0,
            unexpected: vec![],
        }));
        let seen: Log = Arc::new(Mutex::new(Vec::new()));
        let (log, shared) = (seen.clone(), state.clone());
        let Script { steps, any_number } = self;
        let expected: Vec<String> = steps.iter().map(Exchange::describe).collect();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let method = request.method().to_string();
                let uri = request.uri().to_string();
                let bytes = request.into_body().collect_bytes().await.unwrap();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let s = Seen { method, uri, body };
                log.lock().unwrap().push(s.clone());
                let mut state = shared.lock().unwrap();
                let step = steps.get(state.next).filter(|e| e.matches(&s));
                let (status, reply) = if let Some(step) = step {
                    state.next += 1;
                    (step.reply)(&s)
                } else if let Some(any) = any_number.iter().find(|e| e.matches(&s)) {
                    (any.reply)(&s)
                } else {
                    let expected = steps
                        .get(state.next)
                        .map_or("nothing more".to_string(), Exchange::describe);
                    let message = format!(
                        "unscripted request {} {}; expected {expected}",
                        s.method, s.uri
                    );
                    state.unexpected.push(message.clone());
                    (500, status_error(500, "InternalError", &message, ""))
                };
                send.send_response(
                    Response::builder()
                        .status(StatusCode::from_u16(status).unwrap())
                        .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                        .unwrap(),
                );
            }
        });
        let api = Api {
            seen,
            state,
            expected,
        };
        (Client::new(service, "default"), api)
    }
}

struct State {
    /// The index of the next scripted exchange.
    next: usize,
    /// A message for each request the script did not name.
    unexpected: Vec<String>,
}

/// The test's side of a script: what was asked, and the check that it was what was scripted.
pub struct Api {
    pub seen: Log,
    state: Arc<Mutex<State>>,
    expected: Vec<String>,
}

impl Api {
    /// Fails the test if a request was not scripted, or if a scripted one has not come within a
    /// second (the operator's writes may still be in flight).
    pub async fn done(self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            let (next, unexpected) = {
                let state = self.state.lock().unwrap();
                (state.next, state.unexpected.clone())
            };
            assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
            if next == self.expected.len() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "scripted requests never came: {:?}; requests seen: {:?}",
                &self.expected[next..],
                self.seen
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|s| format!("{} {}", s.method, s.uri))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
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

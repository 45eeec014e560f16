//! `sre-operator run --mcp-addr ADDR`: the MCP server over streamable HTTP (rmcp's tower service),
//! behind Kubernetes authentication.
//!
//! Every request carries `Authorization: Bearer TOKEN`, a token the caller would give kubectl.
//! The operator checks it with a TokenReview (the answer cached briefly, keyed by the token's
//! hash), and every tool call with a SubjectAccessReview for what kubectl would need to do the
//! same: `list`/`get diagnosticreports` to read reports, `patch diagnosticreports` to approve or
//! reject, `get pods` and `get pods/log` in the namespace a tool reads. Reports are then read and
//! decided with a client holding the caller's own token, so the API server's audit log, the
//! CRD's rules and the admission policy see the person, not the operator; the sandboxed tools
//! read as the operator, scoped to the namespace the caller may read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, StatusCode};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use sha2::{Digest, Sha256};

use super::McpServer;

/// The path the MCP endpoint is served on.
pub const MCP_PATH: &str = "/mcp";
/// How long a TokenReview's answer is reused: short, so a revoked token stops working soon.
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(30);
/// Tokens remembered at once; past it the cache is emptied rather than grown.
const TOKEN_CACHE_ENTRIES: usize = 1024;
/// A client that has not sent its whole request by then is cut off (a slow client holds one
/// task, never the operator).
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 64;

/// Who is calling: a TokenReview's answer, and a client that acts as them.
#[derive(Clone)]
pub struct Caller {
    pub username: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
    /// The API server, reached with the caller's own token.
    pub client: Client,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("username", &self.username)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// What a call needs the caller to be allowed, as a SubjectAccessReview asks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permission {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: Option<&'static str>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Permission {
    pub fn reports(verb: &'static str, namespace: Option<&str>, name: Option<&str>) -> Self {
        Permission {
            verb,
            group: crate::crd::GROUP,
            resource: "diagnosticreports",
            subresource: None,
            namespace: namespace.map(str::to_string),
            name: name.map(str::to_string),
        }
    }

    /// What reading a namespace's Pods, events and logs through the tools needs.
    pub fn namespace_reads(namespace: &str) -> Vec<Self> {
        [None, Some("log")]
            .into_iter()
            .map(|subresource| Permission {
                verb: "get",
                group: "",
                resource: "pods",
                subresource,
                namespace: Some(namespace.to_string()),
                name: None,
            })
            .collect()
    }

    /// As kubectl's `auth can-i` would put it: `patch diagnosticreports.sre-operator.dev in
    /// namespace shop`.
    pub fn describe(&self) -> String {
        let resource = match (self.group, self.subresource) {
            ("", None) => self.resource.to_string(),
            ("", Some(sub)) => format!("{}/{sub}", self.resource),
            (group, None) => format!("{}.{group}", self.resource),
            (group, Some(sub)) => format!("{}.{group}/{sub}", self.resource),
        };
        let named = self
            .name
            .as_deref()
            .map(|n| format!(" {n}"))
            .unwrap_or_default();
        let scope = self
            .namespace
            .as_deref()
            .map(|n| format!("in namespace {n}"))
            .unwrap_or_else(|| "in every namespace".into());
        format!("{} {resource}{named} {scope}", self.verb)
    }
}

/// Checks bearer tokens and permissions with the API server, as the operator.
pub struct HttpAuth {
    operator: Client,
    /// The operator's connection settings; a caller's client is these with the caller's token.
    config: kube::Config,
    tokens: Mutex<HashMap<[u8; 32], (Instant, Caller)>>,
}

impl HttpAuth {
    pub fn new(operator: Client, config: kube::Config) -> Self {
        HttpAuth {
            operator,
            config,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The caller a bearer token names, or why not (a sentence for the 401's body).
    pub async fn authenticate(&self, token: &str) -> Result<Caller, String> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some((at, caller)) = self.tokens.lock().expect("token cache").get(&key)
            && at.elapsed() < TOKEN_CACHE_TTL
        {
            return Ok(caller.clone());
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: None,
            },
            ..Default::default()
        };
        let answer = Api::<TokenReview>::all(self.operator.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "TokenReview failed");
                "the operator could not check the token (TokenReview failed; the operator \
                 needs `create tokenreviews.authentication.k8s.io`)"
                    .to_string()
            })?;
        let status = answer.status.unwrap_or_default();
        let user = match (status.authenticated, status.user) {
            (Some(true), Some(user)) => user,
            _ => {
                return Err(
                    "the bearer token is not valid for this cluster (TokenReview: not \
                     authenticated); use one kubectl accepts, for example `kubectl create token`"
                        .into(),
                );
            }
        };
        let mut config = self.config.clone();
        config.auth_info = kube::config::AuthInfo {
            token: Some(secrecy::SecretString::from(token.to_string())),
            ..Default::default()
        };
        let client = Client::try_from(config).map_err(|e| {
            format!("the operator cannot build a client for the caller's token: {e}")
        })?;
        let caller = Caller {
            username: user.username.unwrap_or_default(),
            uid: user.uid,
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default(),
            client,
        };
        let mut tokens = self.tokens.lock().expect("token cache");
        if tokens.len() >= TOKEN_CACHE_ENTRIES {
            tokens.clear();
        }
        tokens.insert(key, (Instant::now(), caller.clone()));
        Ok(caller)
    }

    /// Ok when the caller may do every one of `needs`; otherwise the first refusal, named as
    /// `kubectl auth can-i` would name it.
    pub async fn authorize(&self, caller: &Caller, needs: &[Permission]) -> Result<(), String> {
        let api = Api::<SubjectAccessReview>::all(self.operator.clone());
        for need in needs {
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(caller.username.clone()),
                    uid: caller.uid.clone(),
                    groups: Some(caller.groups.clone()),
                    extra: Some(caller.extra.clone()),
                    resource_attributes: Some(ResourceAttributes {
                        verb: Some(need.verb.to_string()),
                        group: Some(need.group.to_string()),
                        resource: Some(need.resource.to_string()),
                        subresource: need.subresource.map(str::to_string),
                        namespace: need.namespace.clone(),
                        name: need.name.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| {
                    format!(
                        "the operator could not check whether {} may {} (SubjectAccessReview \
                         failed: {e}; the operator needs `create \
                         subjectaccessreviews.authorization.k8s.io`)",
                        caller.username,
                        need.describe()
                    )
                })?;
            if !answer.status.is_some_and(|s| s.allowed) {
                return Err(format!(
                    "{} may not {}: refused (this is what kubectl would need; a role such as \
                     sre-approver or sre-viewer grants it)",
                    caller.username,
                    need.describe()
                ));
            }
        }
        Ok(())
    }
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn plain(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.into())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn bearer(headers: &hyper::HeaderMap) -> Option<&str> {
    let value = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

type Mcp = StreamableHttpService<McpServer, NeverSessionManager>;

/// One request: authenticated, read whole within the size and time bounds, then MCP's.
async fn handle(
    request: Request<hyper::body::Incoming>,
    auth: &HttpAuth,
    mut mcp: Mcp,
) -> Response<Body> {
    use tower_service::Service;
    if request.uri().path() != MCP_PATH {
        return plain(
            StatusCode::NOT_FOUND,
            format!("not found: the MCP endpoint is {MCP_PATH}\n"),
        );
    }
    let Some(token) = bearer(request.headers()) else {
        let mut response = plain(
            StatusCode::UNAUTHORIZED,
            "an Authorization: Bearer header with a Kubernetes token is required \
             (for example from `kubectl create token`)\n",
        );
        response.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
        return response;
    };
    let caller = match auth.authenticate(token).await {
        Ok(caller) => caller,
        Err(why) => return plain(StatusCode::UNAUTHORIZED, format!("{why}\n")),
    };
    let (mut parts, body) = request.into_parts();
    let body = match tokio::time::timeout(
        REQUEST_READ_TIMEOUT,
        Limited::new(body, super::MAX_MESSAGE_BYTES).collect(),
    )
    .await
    {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "a message may be at most {} bytes\n",
                    super::MAX_MESSAGE_BYTES
                ),
            );
        }
        Ok(Err(e)) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request: {e}\n"),
            );
        }
        Err(_) => {
            return plain(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request was not sent within {REQUEST_READ_TIMEOUT:?}\n"),
            );
        }
    };
    tracing::debug!(user = %caller.username, "MCP request");
    parts.extensions.insert(caller);
    match mcp.call(Request::from_parts(parts, Full::new(body))).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Serves MCP on `listener` at [`MCP_PATH`] until the task is dropped; `make` builds the server
/// each request runs on (the plugins loaded at that moment).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    auth: Arc<HttpAuth>,
    make: impl Fn() -> McpServer + Send + Sync + 'static,
) -> std::io::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    // Stateless: nothing is kept per client between requests, so an idle or vanished client
    // costs nothing. Any Host is accepted because every request is authenticated (a rebinding
    // browser has no token); a browser's Origin is refused outright.
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .disable_allowed_hosts()
        .enforce_origin_validation()
        .with_max_request_body_bytes(super::MAX_MESSAGE_BYTES);
    let mcp: Mcp = StreamableHttpService::new(
        move || Ok(make()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    tracing::info!(%addr, path = MCP_PATH, "serving MCP over streamable HTTP");
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = slots.clone().acquire_owned().await.expect("never closed");
        let (stream, _) = listener.accept().await?;
        let (auth, mcp) = (auth.clone(), mcp.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request| {
                let (auth, mcp) = (auth.clone(), mcp.clone());
                async move { Ok::<_, std::convert::Infallible>(handle(request, &auth, mcp).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(REQUEST_READ_TIMEOUT)
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(error = %e, "MCP connection ended");
            }
        });
    }
}

//! Tool plugins' HTTP egress: the host side of `wasi:http/outgoing-handler` (world
//! `sre-operator:plugin/tool@0.2.0`).
//!
//! A request leaves only if the plugin's manifest entry grants it (`egress:` URL prefixes and
//! methods). The host does the DNS lookup, checks every address it will connect to (against the
//! grant's `ipRanges` when given; link-local addresses such as a cloud metadata service are never
//! reached otherwise), and connects to that checked address, so a name cannot be rebound between
//! the check and the connection. It adds a grant's credential itself, from a Secret the plugin
//! cannot read, and scrubs that value from the response. Requests per call, response bytes and time
//! are bounded; time counts against the plugin's own deadline. Redirects are the guest client's
//! business: each hop is a new request, checked like the first.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::uri::Scheme;
use http::{Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use wasmtime_wasi_http::{Error, WasiBody, WasiHttpHooks};

/// What the replaced credential reads as wherever a server echoed it.
pub const REDACTED: &str = "[redacted]";
/// Default and ceiling of requests one call may send.
pub const DEFAULT_REQUESTS: u32 = 10;
pub const MAX_REQUESTS: u32 = 100;
/// Default and ceiling of response body bytes one call may receive, all requests together.
pub const DEFAULT_RESPONSE_BYTES: usize = 1 << 20;
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// How long a credential read from its Secret is reused before it is read again (rotation).
const CREDENTIAL_TTL: Duration = Duration::from_secs(60);

/// One `egress:` entry of a manifest.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrantSpec {
    /// A URL prefix: scheme, host, port (the scheme's default when absent) and path prefix.
    pub url: String,
    /// HTTP methods granted; GET when absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// CIDR ranges every address the host name resolves to must fall in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_ranges: Vec<String>,
    /// A credential the host adds to every request this grant lets through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthSpec {
    /// A key of a Secret in the operator's own namespace.
    pub secret_ref: SecretKeyRef,
    /// The header it goes in; `Authorization` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Written before the value with a space (`Bearer`); none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
}

/// A key of a Secret in the operator's own namespace.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key in its data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Reads the Secrets that egress grants name. The operator's implementation reads its own
/// namespace with `get` on those names only ([`KubeSecrets`]).
#[async_trait::async_trait]
pub trait SecretSource: Send + Sync {
    /// The value of `key` in Secret `name`, or why not.
    async fn read(&self, secret: &SecretKeyRef) -> Result<String, String>;
    /// Where the Secrets are, for messages (`namespace sre-operator`).
    fn location(&self) -> String;
}

/// Secrets from the operator's namespace through the API, each reused for a minute.
pub struct KubeSecrets {
    api: kube::Api<k8s_openapi::api::core::v1::Secret>,
    namespace: String,
    cache: Mutex<HashMap<SecretKeyRef, (Instant, String)>>,
}

impl KubeSecrets {
    pub fn new(client: kube::Client, namespace: &str) -> KubeSecrets {
        KubeSecrets {
            api: kube::Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            cache: Mutex::default(),
        }
    }
}

#[async_trait::async_trait]
impl SecretSource for KubeSecrets {
    async fn read(&self, secret: &SecretKeyRef) -> Result<String, String> {
        if let Some((at, value)) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(secret)
            && at.elapsed() < CREDENTIAL_TTL
        {
            return Ok(value.clone());
        }
        let object = self
            .api
            .get(&secret.name)
            .await
            .map_err(|e| e.to_string())?;
        let bytes = object
            .data
            .as_ref()
            .and_then(|d| d.get(&secret.key))
            .ok_or_else(|| format!("it has no key {:?}", secret.key))?;
        let value = String::from_utf8(bytes.0.clone())
            .map_err(|_| format!("key {:?} is not UTF-8 text", secret.key))?
            .trim()
            .to_string();
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(secret.clone(), (Instant::now(), value.clone()));
        Ok(value)
    }

    fn location(&self) -> String {
        format!("namespace {}", self.namespace)
    }
}

/// Fixed values, for tests and for `diagnose` runs given them.
pub struct StaticSecrets(pub HashMap<SecretKeyRef, String>);

#[async_trait::async_trait]
impl SecretSource for StaticSecrets {
    async fn read(&self, secret: &SecretKeyRef) -> Result<String, String> {
        self.0
            .get(secret)
            .cloned()
            .ok_or_else(|| "no such Secret key".to_string())
    }

    fn location(&self) -> String {
        "the given values".into()
    }
}

/// A grant, checked and parsed.
#[derive(Clone, Debug)]
pub struct Grant {
    /// `egress[0]`, as messages name it.
    pub rule: String,
    scheme: Scheme,
    host: String,
    port: u16,
    path: String,
    methods: Vec<Method>,
    ip_ranges: Vec<IpNet>,
    auth: Option<Auth>,
}

#[derive(Clone, Debug)]
struct Auth {
    secret: SecretKeyRef,
    header: HeaderName,
    scheme: Option<String>,
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let methods: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
        write!(
            f,
            "{} ({} {}://{}:{}{})",
            self.rule,
            methods.join(","),
            self.scheme,
            self.host,
            self.port,
            self.path
        )
    }
}

impl Grant {
    /// Parses `egress[index]`; the error names the field.
    pub fn parse(index: usize, spec: &GrantSpec) -> Result<Grant, String> {
        let rule = format!("egress[{index}]");
        let url = reqwest::Url::parse(&spec.url)
            .map_err(|e| format!("{rule}.url {:?} is not a URL: {e}", spec.url))?;
        let scheme = match url.scheme() {
            "http" => Scheme::HTTP,
            "https" => Scheme::HTTPS,
            other => {
                return Err(format!(
                    "{rule}.url has the scheme {other}; egress is http or https"
                ));
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "{rule}.url carries credentials; name a Secret in {rule}.auth instead"
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{rule}.url is a prefix of scheme, host, port and path; remove its query or fragment"
            ));
        }
        let host = url
            .host_str()
            .ok_or_else(|| format!("{rule}.url has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("{rule}.url has no port"))?;
        let methods = if spec.methods.is_empty() {
            vec![Method::GET]
        } else {
            spec.methods
                .iter()
                .map(|m| {
                    Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                        .map_err(|_| format!("{rule}.methods: {m:?} is not an HTTP method"))
                })
                .collect::<Result<_, _>>()?
        };
        let ip_ranges = spec
            .ip_ranges
            .iter()
            .map(|r| {
                r.parse::<IpNet>()
                    .or_else(|_| r.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("{rule}.ipRanges: {r:?} is not a CIDR range like 10.0.0.0/8")
                    })
            })
            .collect::<Result<_, _>>()?;
        let auth = spec
            .auth
            .as_ref()
            .map(|a| parse_auth(&rule, &scheme, &host, a))
            .transpose()?;
        Ok(Grant {
            rule,
            scheme,
            host,
            port,
            path: url.path().to_string(),
            methods,
            ip_ranges,
            auth,
        })
    }

    /// Whether the grant covers `uri` (any method).
    fn covers(&self, scheme: &Scheme, host: &str, port: u16, path: &str) -> bool {
        *scheme == self.scheme
            && host.eq_ignore_ascii_case(&self.host)
            && port == self.port
            && (self.path.ends_with('/') && path.starts_with(&self.path)
                || path == self.path
                || path.starts_with(&format!("{}/", self.path)))
    }

    /// Whether `ip` may be connected to under this grant.
    fn admits(&self, ip: IpAddr) -> bool {
        if self.ip_ranges.is_empty() {
            // Only a grant that names them reaches link-local addresses (the metadata service).
            !is_link_local(ip) && !ip.is_unspecified() && !ip.is_multicast()
        } else {
            self.ip_ranges.iter().any(|r| r.contains(&ip))
        }
    }
}

fn parse_auth(rule: &str, scheme: &Scheme, host: &str, spec: &AuthSpec) -> Result<Auth, String> {
    crate::names::check_name(
        crate::cluster::ResourceKind::Secret,
        &format!("{rule}.auth.secretRef.name"),
        &spec.secret_ref.name,
    )
    .map_err(|e| e.to_string())?;
    let key = &spec.secret_ref.key;
    if key.is_empty()
        || key.len() > 253
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "{rule}.auth.secretRef.key {key:?} is not a Secret key (letters, digits, '-', '_', '.')"
        ));
    }
    let header = spec.header.as_deref().unwrap_or("Authorization");
    let header = HeaderName::from_bytes(header.as_bytes())
        .map_err(|_| format!("{rule}.auth.header {header:?} is not a header name"))?;
    if let Some(s) = &spec.scheme
        && (s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(format!(
            "{rule}.auth.scheme {s:?} is not a word like Bearer"
        ));
    }
    // A credential crossing a network in clear text is readable on the way.
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if *scheme == Scheme::HTTP && !loopback {
        return Err(format!(
            "{rule}.auth needs an https url (a credential is sent over plain http to loopback addresses only)"
        ));
    }
    Ok(Auth {
        secret: spec.secret_ref.clone(),
        header,
        scheme: spec.scheme.clone(),
    })
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
        }
    }
}

/// A plugin's grants, parsed, and where their credentials come from.
pub struct Egress {
    pub grants: Vec<Grant>,
    pub secrets: Option<Arc<dyn SecretSource>>,
}

impl Egress {
    pub fn parse(
        specs: &[GrantSpec],
        secrets: Option<Arc<dyn SecretSource>>,
    ) -> Result<Egress, String> {
        let grants = specs
            .iter()
            .enumerate()
            .map(|(i, s)| Grant::parse(i, s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Egress { grants, secrets })
    }

    /// The grant that lets `method uri` through, or a refusal naming the rule.
    pub fn check(&self, plugin: &str, method: &Method, uri: &Uri) -> Result<&Grant, String> {
        let shown = shown_uri(uri);
        if self.grants.is_empty() {
            return Err(format!(
                "egress denied: {method} {shown}: plugin {plugin} has no egress grant in its manifest entry"
            ));
        }
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTPS);
        let authority = uri
            .authority()
            .ok_or_else(|| format!("egress denied: {method} {shown} has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "egress denied: {method} {shown} carries credentials in its URL"
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority
            .port_u16()
            .unwrap_or(if scheme == Scheme::HTTP { 80 } else { 443 });
        let path = uri.path();
        // Servers resolve `..` and encoded slashes; a prefix check on the raw path would not.
        let lower = path.to_ascii_lowercase();
        if path.split('/').any(|s| s == ".." || s == ".")
            || lower.contains("%2e")
            || lower.contains("%2f")
            || lower.contains("%5c")
            || path.contains('\\')
        {
            return Err(format!(
                "egress denied: {method} {shown}: dot segments and encoded slashes are refused in egress paths"
            ));
        }
        let listed = || {
            self.grants
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        };
        let covering: Vec<&Grant> = self
            .grants
            .iter()
            .filter(|g| g.covers(&scheme, host, port, path))
            .collect();
        if covering.is_empty() {
            return Err(format!(
                "egress denied: {method} {shown} is outside every egress grant of plugin {plugin}: {}",
                listed()
            ));
        }
        covering
            .iter()
            .find(|g| g.methods.contains(method))
            .copied()
            .ok_or_else(|| {
                format!(
                    "egress denied: method {method} is not granted for {shown} by {}",
                    covering
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })
    }
}

/// A URI for messages and logs: without its query, which may carry what a plugin read.
fn shown_uri(uri: &Uri) -> String {
    let mut text = format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("https"),
        uri.authority().map(|a| a.as_str()).unwrap_or(""),
        uri.path()
    );
    if uri.query().is_some() {
        text.push_str("?...");
    }
    crate::redact::strip_control(&text)
}

/// What one call's requests have used, shared between the store and the requests in flight.
#[derive(Default, Debug)]
pub struct Usage {
    pub requests: u32,
    pub response_bytes: usize,
    /// Refusals, in order, for the operator's log.
    pub denied: Vec<String>,
    /// The request the deadline cut, if one was.
    pub cut: Option<String>,
}

/// The egress of one call: the store's `wasi:http` hooks.
pub struct EgressCall {
    pub plugin: String,
    pub egress: Option<Arc<Egress>>,
    pub deadline: Instant,
    pub max_requests: u32,
    pub max_response_bytes: usize,
    pub usage: Arc<Mutex<Usage>>,
}

type SendResult = Result<
    (
        Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
>;

impl EgressCall {
    /// Counts the request and finds its grant; a refusal is recorded and returned.
    fn admit(&self, method: &Method, uri: &Uri) -> Result<Grant, String> {
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let result = (|| {
            let egress = self.egress.as_ref().ok_or_else(|| {
                format!(
                    "egress denied: {method} {}: plugin {} has no egress grant in its manifest entry",
                    shown_uri(uri),
                    self.plugin
                )
            })?;
            if usage.requests >= self.max_requests {
                return Err(format!(
                    "egress denied: plugin {} already sent {} requests in this call (limits.requests)",
                    self.plugin, usage.requests
                ));
            }
            let grant = egress.check(&self.plugin, method, uri)?.clone();
            usage.requests += 1;
            Ok(grant)
        })();
        if let Err(reason) = &result {
            tracing::warn!(plugin = %self.plugin, %reason, "plugin egress refused");
            usage.denied.push(reason.clone());
        }
        result
    }
}

impl WasiHttpHooks for EgressCall {
    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let admitted = self.admit(request.method(), request.uri());
        let what = format!("{} {}", request.method(), shown_uri(request.uri()));
        let usage = self.usage.clone();
        let deadline = self.deadline;
        let budget = self.max_response_bytes;
        let plugin = self.plugin.clone();
        let secrets = self.egress.as_ref().and_then(|e| e.secrets.clone());
        Box::new(async move {
            let grant = admitted.map_err(|m| Error::InternalError(Some(m)))?;
            let sent = send(&grant, secrets, request, &usage, budget);
            match tokio::time::timeout_at(deadline.into(), sent).await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(message)) => {
                    tracing::info!(plugin = %plugin, request = %what, "plugin request failed: {message}");
                    Err(Error::InternalError(Some(message)))
                }
                Err(_) => {
                    usage.lock().unwrap_or_else(|e| e.into_inner()).cut = Some(what.clone());
                    Err(Error::InternalError(Some(format!(
                        "the plugin's time ran out waiting on {what}"
                    ))))
                }
            }
        })
    }
}

/// Sends one admitted request: credential, checked address, TLS, and the response body read
/// within what is left of the call's byte budget, the credential scrubbed from it.
async fn send(
    grant: &Grant,
    secrets: Option<Arc<dyn SecretSource>>,
    mut request: Request<WasiBody>,
    usage: &Mutex<Usage>,
    budget: usize,
) -> Result<
    (
        Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    String,
> {
    let credential = match &grant.auth {
        None => None,
        Some(auth) => {
            let source = secrets.as_ref().ok_or_else(|| {
                format!(
                    "{}.auth names Secret {}, and this operator reads no Secrets (it is not running against its cluster)",
                    grant.rule, auth.secret.name
                )
            })?;
            let value = source.read(&auth.secret).await.map_err(|e| {
                format!(
                    "{}.auth: cannot read key {} of Secret {} in {}: {e}",
                    grant.rule,
                    auth.secret.key,
                    auth.secret.name,
                    source.location()
                )
            })?;
            let line = match &auth.scheme {
                Some(s) => format!("{s} {value}"),
                None => value.clone(),
            };
            let mut header = HeaderValue::from_str(&line).map_err(|_| {
                format!(
                    "{}.auth: the Secret's value is not a header value",
                    grant.rule
                )
            })?;
            header.set_sensitive(true);
            // The plugin's own value for the header never goes out beside the host's.
            request.headers_mut().remove(&auth.header);
            request.headers_mut().insert(auth.header.clone(), header);
            Some(value)
        }
    };
    let uri = request.uri().clone();
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let address = resolve(grant, &host).await?;
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("cannot connect to {host} ({address}): {e}"))?;
    let io: Box<dyn Io> = if grant.scheme == Scheme::HTTPS {
        Box::new(tls(&host, stream).await?)
    } else {
        Box::new(stream)
    };
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP handshake with {host}: {e}"))?;
    let driver = tokio::spawn(connection);
    *request.uri_mut() = Uri::builder()
        .path_and_query(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .build()
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request to {host}: {e}"))?;
    let (mut parts, mut body) = response.into_parts();
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the response from {host}: {e}"))?;
        if let Ok(data) = frame.into_data() {
            let mut used = usage.lock().unwrap_or_else(|e| e.into_inner());
            used.response_bytes += data.len();
            if used.response_bytes > budget {
                driver.abort();
                return Err(format!(
                    "response bodies passed the plugin's limit of {} in this call (limits.responseBytes); ask for less",
                    crate::cluster::format_bytes(budget as i64)
                ));
            }
            drop(used);
            bytes.extend_from_slice(&data);
        }
    }
    driver.abort();
    if let Some(secret) = credential.as_deref().filter(|s| !s.is_empty()) {
        bytes = scrub(&bytes, secret.as_bytes());
        for value in parts.headers.values_mut() {
            let scrubbed = scrub(value.as_bytes(), secret.as_bytes());
            if scrubbed != value.as_bytes()
                && let Ok(v) = HeaderValue::from_bytes(&scrubbed)
            {
                *value = v;
            }
        }
    }
    // The body is whole now: its length is known, whatever the server said.
    parts.headers.remove(http::header::TRANSFER_ENCODING);
    parts
        .headers
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    let body = Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed_unsync();
    Ok((
        Response::from_parts(parts, body),
        Box::new(async { Ok(()) }),
    ))
}

/// `bytes` with every occurrence of `secret` replaced by [`REDACTED`].
pub fn scrub(bytes: &[u8], secret: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(at) = memchr::memmem::find(rest, secret) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(REDACTED.as_bytes());
        rest = &rest[at + secret.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// The address to connect to: the host's first address the grant admits. Every answer is
/// checked, so a name that resolves to the metadata service among others is refused outright.
async fn resolve(grant: &Grant, host: &str) -> Result<SocketAddr, String> {
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, grant.port)],
        Err(_) => tokio::net::lookup_host((host, grant.port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect(),
    };
    if let Some(bad) = addresses.iter().find(|a| !grant.admits(a.ip())) {
        let rule = if grant.ip_ranges.is_empty() {
            "link-local, unspecified and multicast addresses are reached only through a grant's ipRanges".to_string()
        } else {
            format!(
                "outside {}.ipRanges [{}]",
                grant.rule,
                grant
                    .ip_ranges
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(format!(
            "egress denied: {host} resolved to {}, {rule}",
            bad.ip()
        ));
    }
    addresses
        .first()
        .copied()
        .ok_or_else(|| format!("cannot resolve {host}: no address"))
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

async fn tls(
    host: &str,
    stream: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    use tokio_rustls::rustls;
    static CONFIG: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>> =
        std::sync::OnceLock::new();
    let config = CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
                .map_err(|e| e.to_string())
        })
        .clone()?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS with {host}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egress(specs: &str) -> Egress {
        let specs: Vec<GrantSpec> = serde_yaml::from_str(specs).unwrap();
        Egress::parse(&specs, None).unwrap()
    }

    fn check(e: &Egress, method: &str, uri: &str) -> Result<String, String> {
        e.check("p", &method.parse().unwrap(), &uri.parse().unwrap())
            .map(|g| g.rule.clone())
    }

    #[test]
    fn a_request_passes_only_inside_a_grants_prefix_and_methods() {
        let e = egress(
            "- {url: 'http://prometheus.monitoring:9090/api/v1/'}\n- {url: 'https://alerts.example.com/api', methods: [get, post]}\n",
        );
        assert_eq!(
            check(
                &e,
                "GET",
                "http://prometheus.monitoring:9090/api/v1/query?query=up"
            ),
            Ok("egress[0]".into())
        );
        assert_eq!(
            check(&e, "GET", "http://PROMETHEUS.monitoring:9090/api/v1/query"),
            Ok("egress[0]".into())
        );
        assert_eq!(
            check(&e, "POST", "https://alerts.example.com/api/v2/alerts"),
            Ok("egress[1]".into())
        );
        assert_eq!(
            check(&e, "GET", "https://alerts.example.com:443/api"),
            Ok("egress[1]".into())
        );
        for (method, uri, why) in [
            (
                "POST",
                "http://prometheus.monitoring:9090/api/v1/query",
                "method POST is not granted",
            ),
            (
                "GET",
                "http://prometheus.monitoring:9091/api/v1/query",
                "outside every egress grant",
            ),
            (
                "GET",
                "https://prometheus.monitoring:9090/api/v1/query",
                "outside every egress grant",
            ),
            (
                "GET",
                "http://prometheus.monitoring:9090/api/v2/",
                "outside every egress grant",
            ),
            (
                "GET",
                "https://alerts.example.com/apix",
                "outside every egress grant",
            ),
            (
                "GET",
                "http://prometheus.monitoring.evil:9090/api/v1/",
                "outside every egress grant",
            ),
            (
                "GET",
                "http://prometheus.monitoring:9090/api/v1/../../admin",
                "dot segments",
            ),
            (
                "GET",
                "http://prometheus.monitoring:9090/api/v1/%2e%2e/admin",
                "dot segments",
            ),
            (
                "GET",
                "http://user:pw@prometheus.monitoring:9090/api/v1/",
                "credentials",
            ),
        ] {
            let err = check(&e, method, uri).unwrap_err();
            assert!(err.contains(why), "{method} {uri}: {err}");
            assert!(err.starts_with("egress denied"), "{err}");
        }
        // The refusal names the rules in force.
        let err = check(&e, "GET", "http://169.254.169.254/latest/meta-data").unwrap_err();
        assert!(
            err.contains("egress[0] (GET http://prometheus.monitoring:9090/api/v1/)"),
            "{err}"
        );
        assert!(!err.contains("?"), "a query is not echoed: {err}");
        let none = Egress::parse(&[], None).unwrap();
        assert!(
            check(&none, "GET", "http://a/")
                .unwrap_err()
                .contains("no egress grant")
        );
    }

    #[test]
    fn grants_refuse_bad_urls_ranges_and_clear_text_credentials() {
        for (spec, why) in [
            ("{url: 'ftp://h/'}", "scheme ftp"),
            ("{url: 'http://u:p@h/'}", "carries credentials"),
            ("{url: 'http://h/?q=1'}", "remove its query"),
            (
                "{url: 'http://h/', methods: ['GE T']}",
                "not an HTTP method",
            ),
            (
                "{url: 'http://h/', ipRanges: [10.0.0.0/33]}",
                "not a CIDR range",
            ),
            (
                "{url: 'http://prom:9090/', auth: {secretRef: {name: t, key: token}}}",
                "needs an https url",
            ),
            (
                "{url: 'https://h/', auth: {secretRef: {name: 'Bad_Name', key: token}}}",
                "secretRef.name",
            ),
            (
                "{url: 'https://h/', auth: {secretRef: {name: t, key: 'a/b'}}}",
                "not a Secret key",
            ),
            (
                "{url: 'https://h/', auth: {secretRef: {name: t, key: k}, header: 'a b'}}",
                "not a header name",
            ),
        ] {
            let specs: Vec<GrantSpec> = serde_yaml::from_str(&format!("- {spec}")).unwrap();
            let err = Egress::parse(&specs, None).err().unwrap_or_default();
            assert!(err.contains(why), "{spec}: {err}");
        }
        let ok: Vec<GrantSpec> = serde_yaml::from_str(
            "- {url: 'http://127.0.0.1:9090/', auth: {secretRef: {name: t, key: token}, scheme: Bearer}}",
        )
        .unwrap();
        assert!(Egress::parse(&ok, None).is_ok());
    }

    #[test]
    fn addresses_are_checked_against_ranges_and_link_local_is_never_a_default() {
        let plain = &egress("- {url: 'http://h/'}").grants[0];
        assert!(plain.admits("10.1.2.3".parse().unwrap()));
        assert!(plain.admits("127.0.0.1".parse().unwrap()));
        assert!(!plain.admits("169.254.169.254".parse().unwrap()));
        assert!(!plain.admits("fe80::1".parse().unwrap()));
        assert!(!plain.admits("::ffff:169.254.169.254".parse().unwrap()));
        assert!(!plain.admits("0.0.0.0".parse().unwrap()));
        let ranged = &egress("- {url: 'http://h/', ipRanges: [10.96.0.0/12, 127.0.0.1]}").grants[0];
        assert!(ranged.admits("10.100.0.1".parse().unwrap()));
        assert!(ranged.admits("127.0.0.1".parse().unwrap()));
        assert!(!ranged.admits("127.0.0.2".parse().unwrap()));
        assert!(!ranged.admits("169.254.169.254".parse().unwrap()));
    }

    #[tokio::test]
    async fn a_name_resolving_outside_the_ranges_is_refused_before_any_connection() {
        let e = egress("- {url: 'http://localhost:9/', ipRanges: [10.0.0.0/8]}");
        let err = resolve(&e.grants[0], "localhost").await.unwrap_err();
        assert!(
            err.contains("resolved to") && err.contains("egress[0].ipRanges [10.0.0.0/8]"),
            "{err}"
        );
        let e = egress("- {url: 'http://localhost:9/', ipRanges: [127.0.0.0/8, '::1/128']}");
        assert!(resolve(&e.grants[0], "localhost").await.is_ok());
    }

    #[test]
    fn scrub_replaces_every_occurrence() {
        assert_eq!(
            scrub(b"a tok b tok", b"tok"),
            b"a [redacted] b [redacted]".to_vec()
        );
        assert_eq!(scrub(b"nothing", b"tok"), b"nothing".to_vec());
    }
}

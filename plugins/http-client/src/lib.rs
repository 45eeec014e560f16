//! A small blocking HTTP client for tool plugins, over the standard `wasi:http` outgoing handler
//! (the `wasip2` bindings, so any world that imports the handler can use it).
//!
//! The host decides what leaves: a request outside the plugin's egress grants fails with the
//! host's reason, which this client passes on as the error text. Redirects are followed (up to a
//! count the caller gives) by sending a new request, which the host checks like the first.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

/// What to send.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// `GET` when empty.
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

/// What came back.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The URL that answered (after redirects).
    pub url: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A URL split the way `wasi:http` wants it.
struct Parts<'a> {
    scheme: Scheme,
    authority: &'a str,
    path_and_query: &'a str,
}

fn split(url: &str) -> Result<Parts<'_>, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not an absolute http(s) URL"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => return Err(format!("{url:?}: scheme {other} is not http or https")),
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    if authority.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(Parts {
        scheme,
        authority,
        path_and_query: if path.is_empty() { "/" } else { path },
    })
}

fn method(name: &str) -> Method {
    match name.to_ascii_uppercase().as_str() {
        "" | "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_string()),
    }
}

/// The host's reason for an error, as text.
pub fn describe(error: &ErrorCode) -> String {
    match error {
        ErrorCode::InternalError(Some(message)) => message.clone(),
        other => format!("{other:?}"),
    }
}

/// Sends one request and reads the whole response.
pub fn send(request: &Request) -> Result<Response, String> {
    let parts = split(&request.url)?;
    let headers = Fields::new();
    for (name, value) in &request.headers {
        headers
            .append(name, value.as_bytes())
            .map_err(|e| format!("header {name}: {e:?}"))?;
    }
    let outgoing = OutgoingRequest::new(headers);
    let refused = |what: &str| format!("the host refused the request's {what}");
    outgoing
        .set_method(&method(&request.method))
        .map_err(|_| refused("method"))?;
    outgoing
        .set_scheme(Some(&parts.scheme))
        .map_err(|_| refused("scheme"))?;
    outgoing
        .set_authority(Some(parts.authority))
        .map_err(|_| refused("host"))?;
    outgoing
        .set_path_with_query(Some(parts.path_and_query))
        .map_err(|_| refused("path"))?;
    let body = outgoing.body().map_err(|_| refused("body"))?;
    if let Some(bytes) = &request.body {
        let stream = body.write().map_err(|_| refused("body"))?;
        for chunk in bytes.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("writing the request body: {e:?}"))?;
        }
    }
    let pending = outgoing_handler::handle(outgoing, None).map_err(|e| describe(&e))?;
    OutgoingBody::finish(body, None).map_err(|e| describe(&e))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("the response never arrived")?
        .map_err(|_| "the response was already taken")?
        .map_err(|e| describe(&e))?;
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let incoming = response.consume().map_err(|_| "the response has no body")?;
    let stream = incoming
        .stream()
        .map_err(|_| "the response body cannot be read")?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 << 10) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(format!(
                    "reading the response body: {}",
                    e.to_debug_string()
                ));
            }
        }
    }
    drop(stream);
    Ok(Response {
        status,
        headers,
        body,
        url: request.url.clone(),
    })
}

/// Sends `request`, following up to `redirects` redirects (each a new request the host checks).
pub fn fetch(request: &Request, redirects: u32) -> Result<Response, String> {
    let mut current = request.clone();
    for _ in 0..=redirects {
        let response = send(&current)?;
        let Some(location) = matches!(response.status, 301 | 302 | 303 | 307 | 308)
            .then(|| response.header("location"))
            .flatten()
        else {
            return Ok(response);
        };
        current.url = resolve(&current.url, location)?;
        if response.status == 303 {
            current.method = "GET".into();
            current.body = None;
        }
    }
    Err(format!(
        "more than {redirects} redirects from {}",
        request.url
    ))
}

/// `location` relative to `base`.
fn resolve(base: &str, location: &str) -> Result<String, String> {
    if location.contains("://") {
        return Ok(location.to_string());
    }
    let parts = split(base)?;
    let scheme = match parts.scheme {
        Scheme::Http => "http",
        _ => "https",
    };
    if location.starts_with('/') {
        Ok(format!("{scheme}://{}{location}", parts.authority))
    } else {
        Err(format!("unsupported relative redirect {location:?}"))
    }
}

/// `text` percent-encoded for a query string value.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

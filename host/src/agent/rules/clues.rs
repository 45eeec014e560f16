//! Reading a crash log for the cause it states: a refused connection or failed lookup (with the
//! host and port), rejected credentials or certificate, a missing setting, a full disk, a port
//! in use, a permission error, a command that cannot run, or a crash line.
//!
//! Logs are untrusted data: they are searched for facts, never followed.

use std::sync::LazyLock;

use regex::Regex;

use crate::failure::ExecFailure;

/// What a crash log says about the cause.
#[derive(Clone, Debug, PartialEq)]
pub enum Clue {
    ConnectionRefused {
        host: String,
        port: Option<u16>,
    },
    /// Connecting to `host:port` timed out: nothing answered (traffic dropped on the way).
    ConnectTimeout {
        host: String,
        port: Option<u16>,
    },
    /// The name does not exist (NXDOMAIN: `no such host`, `Name or service not known`).
    DnsFailure {
        host: String,
        port: Option<u16>,
    },
    /// The resolver did not answer the lookup of `host`, or failed it (a timeout, SERVFAIL,
    /// `EAI_AGAIN`): the DNS server, not the name. `host` is empty when the line does not name
    /// it (busybox's `;; connection timed out; no servers could be reached`).
    DnsUnanswered {
        host: String,
        port: Option<u16>,
    },
    MissingSetting {
        name: String,
    },
    PermissionDenied {
        path: Option<String>,
    },
    /// A dependency rejects the application's credentials (a wrong or rotated password, a
    /// removed user), at the host when the line names one.
    CredentialsRejected {
        host: Option<String>,
    },
    /// A dependency accepts the application's login but refuses it an operation: a revoked
    /// role or a grant the user never had.
    PrivilegesDenied {
        host: Option<String>,
    },
    /// The application does not trust a certificate it was shown, or the certificate expired.
    CertificateRejected {
        host: Option<String>,
    },
    /// The application cannot parse a configuration file (at `path` when the log names one).
    BadConfigFile {
        path: Option<String>,
    },
    /// A file the application opens is not there (ENOENT) at an absolute `path`.
    MissingFile {
        path: String,
    },
    /// A filesystem the application writes is full.
    DiskFull {
        path: Option<String>,
    },
    /// CoreDNS's loop plugin saw its own queries come back: its upstream (the node's
    /// resolv.conf) is a local stub resolver, so it stops, and the cluster's lookups with it.
    ResolverLoop,
    /// The port the application binds is taken.
    PortInUse {
        port: Option<u16>,
    },
    /// The runtime or a shell could not run a command (missing, not executable, another
    /// architecture, none given).
    CannotExec(ExecFailure),
    Crash {
        line: String,
    },
}

/// How a container's log says it could not reach a dependency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreachable {
    /// The name does not exist.
    Lookup,
    /// The DNS server did not answer, or failed, the lookup.
    LookupUnanswered,
    Refused,
    /// Nothing answered: the traffic was dropped on the way.
    TimedOut,
}

impl Unreachable {
    pub fn what(self) -> &'static str {
        match self {
            Unreachable::Lookup => "DNS lookup failed",
            Unreachable::LookupUnanswered => "DNS lookup unanswered",
            Unreachable::Refused => "connection refused",
            Unreachable::TimedOut => "connection timed out",
        }
    }
}

impl Clue {
    /// The dependency the clue says the container cannot reach, and how.
    pub fn unreachable(&self) -> Option<(&str, Option<u16>, Unreachable)> {
        match self {
            Clue::DnsFailure { host, port } => Some((host, *port, Unreachable::Lookup)),
            Clue::DnsUnanswered { host, port } => {
                Some((host, *port, Unreachable::LookupUnanswered))
            }
            Clue::ConnectionRefused { host, port } => Some((host, *port, Unreachable::Refused)),
            Clue::ConnectTimeout { host, port } => Some((host, *port, Unreachable::TimedOut)),
            _ => None,
        }
    }
}

/// `host:port` where host is a name (starting with a letter) or an IPv4 address; the character
/// after the port must not continue a timestamp (`09:41:06`).
static HOST_PORT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^A-Za-z0-9.\-])((?:[a-zA-Z][a-zA-Z0-9\-]*(?:\.[a-zA-Z0-9\-]+)*)|(?:\d{1,3}(?:\.\d{1,3}){3})):(\d{2,5})(?:$|[^\d:]|:[^\d]|:$)")
        .expect("static regex")
});
/// Java's `InetSocketAddress` as its exceptions print it: `orders-db/10.96.1.2:5432`.
static JAVA_HOST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b([a-zA-Z][a-zA-Z0-9\-]*(?:\.[a-zA-Z0-9\-]+)*)/\d{1,3}(?:\.\d{1,3}){3}:(\d{2,5})\b",
    )
    .expect("static regex")
});
static PG_HOST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?:host|server at) "([^"]+)".*?port (\d{2,5})"#).expect("static regex")
});
static DNS_HOST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(?:lookup|ENOTFOUND|EAI_AGAIN|host name|UnknownHostException:|resolve host:?|resolve|can't find|bad address)\s+["']?([a-zA-Z0-9][a-zA-Z0-9.\-]*)["']?"#).expect("static regex")
});
static MISSING_SETTING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(?:environment variable|env var(?:iable)?|missing required (?:env(?:ironment)?(?: variable)?|config(?:uration)?(?: key)?|setting)|KeyError:)\s*[:=]?\s*["'`]?([A-Za-z_][A-Za-z0-9_.]{2,})"#)
        .expect("static regex")
});
static NOT_SET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b([A-Z][A-Z0-9_]{2,}) (?:is|must be) (?:not set|required|unset|empty|missing)")
        .expect("static regex")
});
static PATH_IN_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"["'`]?(/[A-Za-z0-9_.\-/]+)["'`]?"#).expect("static regex"));
/// An absolute path as its own word: not the `/11/20` of a `2026/11/20` timestamp.
static FILE_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?:^|[\s"'`(=,:\[])(/[A-Za-z0-9_.@+\-/]*[A-Za-z0-9_.@+\-])"#)
        .expect("static regex")
});
static CRASH_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(panic: .*|fatal error: .*|Exception in thread .*|Unhandled exception.*|FATAL.*|[A-Za-z_.]*(Error|Exception): .*|Segmentation fault.*)$").expect("static regex")
});

/// How databases, caches, brokers and HTTP clients say a login was refused, lower-cased.
const CREDENTIALS_REJECTED: &[&str] = &[
    "password authentication failed",
    "authentication failed",
    "access denied for user",
    "login failed for user",
    "noauth authentication required",
    "wrongpass",
    "invalid username or password",
    "invalid credentials",
    "bad credentials",
    "sasl authentication failed",
    // MongoDB with authorization on, asked by a client that sent no credentials.
    "requires authentication",
    // SMTP (nodemailer's EAUTH, Gmail's 535 5.7.8).
    "invalid login",
    "username and password not accepted",
];
/// How databases say a user that logged in lacks a privilege, lower-cased: MongoDB's
/// Unauthorized (13), PostgreSQL's 42501, MySQL's 1044 and 1142.
static PRIVILEGES_DENIED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"not authorized on \S+ to execute|permission denied for (?:table|relation|schema|database|sequence|view|function)\b|command denied to user|access denied for user \S+ to database")
        .expect("static regex")
});
/// How TLS clients say they do not trust a peer, lower-cased.
const CERTIFICATE_REJECTED: &[&str] = &[
    "x509: ",
    "certificate has expired",
    "certificate verify failed",
    "unable to verify the first certificate",
    "self signed certificate",
    "self-signed certificate",
    "pkix path building failed",
    "sslhandshakeexception",
];
/// A configuration file's path: absolute, with a configuration format's extension.
static CONFIG_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(/[A-Za-z0-9_.@+\-/]*\.(?:ya?ml|json|toml|ini|conf|cfg|properties|env|xml|hcl))\b")
        .expect("static regex")
});
/// Parsers' words for a YAML or TOML document they cannot read, lower-cased: applications read
/// those formats for their configuration.
const CONFIG_FORMAT_ERRORS: &[&str] = &[
    " yaml: ",
    "\"yaml: ",
    "=yaml: ",
    "yaml.scanner",
    "yaml.parser",
    "yaml.composer",
    "mapping values are not allowed",
    "did not find expected",
    "cannot start any token",
    " toml: ",
    "\"toml: ",
    "tomldecodeerror",
    "snakeyaml",
];
/// Parse errors that mean a configuration file only when the line also names one (JSON is
/// just as often an API's answer), lower-cased.
const PARSE_ERRORS: &[&str] = &[
    "invalid character",
    "unexpected end of json input",
    "jsondecodeerror",
    "json: cannot unmarshal",
    "unmarshal",
    "cannot parse",
    "could not parse",
    "failed to parse",
    "unable to parse",
    "error parsing",
    "parse error",
    "parsing error",
    "syntax error",
    "malformed",
    // nginx's start-up check of its configuration names the file and line.
    "[emerg]",
];
/// `bind: address already in use` after `:8080`, or Node's `EADDRINUSE: ... :::8080`.
static PORT_IN_USE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i):(\d{2,5})\b.{0,40}address already in use|eaddrinuse.{0,60}?:(\d{2,5})\b")
        .expect("static regex")
});

/// A resolver that failed the lookup rather than found no such name: glibc's and Python's
/// `EAI_AGAIN` wording, Node's code, Go's SERVFAIL (`server misbehaving`), dig's status.
const DNS_UNANSWERED: &[&str] = &[
    "temporary failure in name resolution",
    // EAI_AGAIN as Python and redis-py number it: musl words it only "Try again".
    "[errno -3]",
    "error -3 connecting",
    "eai_again",
    "server misbehaving",
    "servfail",
];

pub(super) fn is_ip(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
}

/// Reads the facts a crash log states, most specific first.
pub fn read_clues(log: &str) -> Vec<(Clue, String)> {
    let mut clues = Vec::new();
    let lines: Vec<&str> = log.lines().collect();
    // Newest line first: the last word before the crash is the most telling.
    for (at, line) in lines.iter().copied().enumerate().rev() {
        let lower = line.to_ascii_lowercase();
        let host_port = || {
            // Prefer a name the app was configured with over the IP it resolved to.
            let mut found: Vec<(String, Option<u16>)> = HOST_PORT
                .captures_iter(line)
                .map(|c| (c[1].to_string(), c[2].parse().ok()))
                .collect();
            for named in [&PG_HOST, &JAVA_HOST] {
                if let Some(c) = named.captures(line) {
                    found.insert(0, (c[1].to_string(), c[2].parse().ok()));
                }
            }
            found.sort_by_key(|(h, _)| is_ip(h));
            found.into_iter().next()
        };
        // The name a lookup was for, and the port of that name (not the DNS server's).
        let looked_up = || {
            let host = DNS_HOST
                .captures(line)
                .map(|c| c[1].trim_end_matches(['.', ':']).to_string())
                .or_else(|| host_port().map(|(h, _)| h))?;
            let host = host.split(':').next().unwrap_or(&host).to_string();
            let port = HOST_PORT
                .captures_iter(line)
                .find(|c| c[1] == *host)
                .and_then(|c| c[2].parse().ok());
            Some((host, port))
        };
        // The resolver failed, not the name: before a refused or timed-out connection, which
        // a lookup's line also says when it was the DNS server's (Go's `lookup db on
        // 10.96.0.10:53: read udp ...: i/o timeout`).
        if (DNS_UNANSWERED.iter().any(|m| lower.contains(m))
            || (lower.contains("lookup ")
                && [
                    "i/o timeout",
                    "timed out",
                    "connection refused",
                    "no route to host",
                    "network is unreachable",
                ]
                .iter()
                .any(|m| lower.contains(m))))
            && let Some((host, port)) = looked_up().filter(|(h, _)| !is_ip(h))
        {
            clues.push((Clue::DnsUnanswered { host, port }, line.to_string()));
            continue;
        }
        // busybox's nslookup, as init containers that wait for a Service run it: the name is
        // on another line, the resolver's silence on this one.
        if lower.contains("no servers could be reached") {
            let (host, port) = (String::new(), None);
            clues.push((Clue::DnsUnanswered { host, port }, line.to_string()));
            continue;
        }
        if (lower.contains("connection refused")
            || lower.contains("econnrefused")
            || lower.contains("error 111"))
            && let Some((host, port)) = host_port()
        {
            clues.push((Clue::ConnectionRefused { host, port }, line.to_string()));
            continue;
        }
        // A lookup that timed out is the cluster's DNS, not the host it looked up.
        if [
            "i/o timeout",
            "connection timed out",
            "connect timed out",
            // musl's ETIMEDOUT, and curl's.
            "operation timed out",
            "etimedout",
            "connecttimeoutexception",
            "timeout expired",
        ]
        .iter()
        .any(|m| lower.contains(m))
            && !lower.contains("lookup ")
            && let Some((host, port)) = host_port()
        {
            clues.push((Clue::ConnectTimeout { host, port }, line.to_string()));
            continue;
        }
        if [
            "no such host",
            "nxdomain",
            "name or service not known",
            // musl's (Alpine images), curl's, glibc's EAI_NODATA.
            "name does not resolve",
            "could not resolve host",
            "no address associated with hostname",
            "enotfound",
            "could not translate host name",
            "unknownhostexception",
            "nodename nor servname",
            "host not found in upstream",
            // busybox's nslookup and nc, as init containers that wait for a Service use them.
            "can't find",
            "bad address",
        ]
        .iter()
        .any(|p| lower.contains(p))
            && let Some((host, port)) = looked_up()
        {
            clues.push((Clue::DnsFailure { host, port }, line.to_string()));
            continue;
        }
        let names = |markers: &[&str]| markers.iter().any(|m| lower.contains(m));
        // Before rejected credentials: MySQL says "access denied for user" for both.
        if PRIVILEGES_DENIED.is_match(&lower) {
            let host = host_port().map(|(h, _)| h);
            clues.push((Clue::PrivilegesDenied { host }, line.to_string()));
            continue;
        }
        if names(CREDENTIALS_REJECTED) {
            let host = host_port().map(|(h, _)| h);
            clues.push((Clue::CredentialsRejected { host }, line.to_string()));
            continue;
        }
        if names(CERTIFICATE_REJECTED) {
            let host = host_port().map(|(h, _)| h);
            clues.push((Clue::CertificateRejected { host }, line.to_string()));
            continue;
        }
        // Before a configuration file's errors: `open /etc/app/config.yaml: no such file`
        // names a file that is not there, not one that does not parse.
        if names(&[
            "no such file or directory",
            "enoent",
            "filenotfounderror",
            "filenotfoundexception",
        ]) && let Some(c) = FILE_PATH.captures(line)
        {
            clues.push((
                Clue::MissingFile {
                    path: c[1].to_string(),
                },
                line.to_string(),
            ));
            continue;
        }
        if let Some(path) = bad_config_file(line, &lower, lines.get(at + 1).copied()) {
            clues.push((Clue::BadConfigFile { path }, line.to_string()));
            continue;
        }
        if names(&["no space left on device", "disk quota exceeded", "enospc"]) {
            let path = PATH_IN_LINE.captures(line).map(|c| c[1].to_string());
            clues.push((Clue::DiskFull { path }, line.to_string()));
            continue;
        }
        if lower.contains("plugin/loop: loop (") && lower.contains("detected for zone") {
            clues.push((Clue::ResolverLoop, line.to_string()));
            continue;
        }
        if names(&["address already in use", "eaddrinuse"]) {
            let port = PORT_IN_USE
                .captures(line)
                .and_then(|c| c.get(1).or(c.get(2))?.as_str().parse().ok());
            clues.push((Clue::PortInUse { port }, line.to_string()));
            continue;
        }
        if let Some(c) = MISSING_SETTING
            .captures(line)
            .or_else(|| NOT_SET.captures(line))
        {
            clues.push((
                Clue::MissingSetting {
                    name: c[1].to_string(),
                },
                line.to_string(),
            ));
            continue;
        }
        // Before "permission denied": `exec: "X": permission denied` is about the command.
        if let Some(failure) = ExecFailure::parse(line) {
            clues.push((Clue::CannotExec(failure), line.to_string()));
            continue;
        }
        if lower.contains("permission denied")
            || lower.contains("eacces")
            || lower.contains("read-only file system")
        {
            let path = PATH_IN_LINE.captures(line).map(|c| c[1].to_string());
            clues.push((Clue::PermissionDenied { path }, line.to_string()));
            continue;
        }
        if CRASH_LINE.is_match(line.trim()) {
            clues.push((
                Clue::Crash {
                    line: line.trim().chars().take(300).collect(),
                },
                line.to_string(),
            ));
        }
    }
    // The most telling clue first: a dependency, then configuration, then anything else.
    clues.sort_by_key(|(c, _)| match c {
        Clue::ConnectionRefused { .. }
        | Clue::DnsFailure { .. }
        | Clue::DnsUnanswered { .. }
        | Clue::ConnectTimeout { .. } => 0,
        Clue::MissingSetting { .. }
        | Clue::CredentialsRejected { .. }
        | Clue::PrivilegesDenied { .. }
        | Clue::BadConfigFile { .. }
        | Clue::CertificateRejected { .. } => 1,
        Clue::DiskFull { .. } | Clue::PortInUse { .. } | Clue::ResolverLoop => 2,
        Clue::CannotExec(_) | Clue::MissingFile { .. } => 2,
        Clue::PermissionDenied { .. } => 3,
        Clue::Crash { .. } => 4,
    });
    clues
}

/// The last `n` non-empty lines of a log (without the host's `# note:` lines), each cut to 300
/// characters, to quote when no clue explains a crash.
pub(super) fn last_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("# note:"))
        .collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.chars().take(300).collect())
        .collect()
}

/// Whether `line` says a configuration file could not be parsed: Some(the file's path, when
/// the line or the one after it names one (Python's YAML errors put `in "/etc/app/x.yaml"` on
/// the next line)). A YAML or TOML error is one by itself; another parse error only with a
/// configuration file's path or the word config beside it.
fn bad_config_file(line: &str, lower: &str, next: Option<&str>) -> Option<Option<String>> {
    let path_in = |text: &str| CONFIG_PATH.captures(text).map(|c| c[1].to_string());
    // Go's errors start `yaml: line 3: ...`; a file name's `config.yaml: ` is not one.
    let format_error = CONFIG_FORMAT_ERRORS.iter().any(|m| lower.contains(m))
        || lower.trim_start().starts_with("yaml: ")
        || lower.trim_start().starts_with("toml: ");
    let parse_error = PARSE_ERRORS.iter().any(|m| lower.contains(m));
    if !format_error && !parse_error {
        return None;
    }
    let path = path_in(line).or_else(|| {
        next.filter(|n| n.trim_start().starts_with("in \""))
            .and_then(path_in)
    });
    (format_error || path.is_some() || lower.contains("config")).then_some(path)
}

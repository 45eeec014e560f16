//! Why an image cannot be pulled, read from the error the kubelet records (the container's
//! waiting message and the `Failed` events): a tag the registry lacks is a typo a patch can fix;
//! a registry that is down, failing or rate-limiting is an outage no patch fixes.

use std::sync::LazyLock;

use regex::Regex;

/// The cause of an image pull failure, as `spec.failure.reason` of an ImagePullBackOff report
/// names it. The playbook reads it back with [`ImagePullCause::parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImagePullCause {
    /// The tag or the repository does not exist.
    NotFound,
    /// The registry refused the credentials (or their absence).
    Unauthorized,
    /// The registry cannot be reached: connection refused, i/o timeout, no such host, TLS.
    Unreachable,
    /// The registry answered with a server error (5xx).
    ServerError,
    /// The registry rate-limits pulls (`toomanyrequests`, 429).
    RateLimited,
    /// The image exists, but not for the node's OS and CPU architecture (a manifest list
    /// without `linux/arm64`, a single-architecture image).
    PlatformMismatch,
    /// The image was fetched, but the node has no room to unpack it (`failed to extract layer
    /// ...: no space left on device`): the node's image filesystem, not the image or registry.
    NodeDiskFull,
    /// None of the above can be told from the message.
    Unknown,
}

/// Markers in the kubelet's (containerd's, CRI-O's) pull errors, lower-cased, in the order they
/// are tried: a rate limit or an unreachable registry can mention other words too.
const RATE_LIMITED: &[&str] = &[
    "toomanyrequests",
    "too many requests",
    "pull rate limit",
    "rate limit exceeded",
];
const UNREACHABLE: &[&str] = &[
    "connection refused",
    "i/o timeout",
    "no such host",
    "no route to host",
    "network is unreachable",
    "connection reset by peer",
    "tls handshake timeout",
    "connection timed out",
    "host is unreachable",
    "temporary failure in name resolution",
    "client.timeout exceeded",
    "request canceled while waiting for connection",
    "server gave http response to https client",
    "tls: ",
    "x509: ",
    "server misbehaving",
    "context deadline exceeded",
    "dial tcp",
];
const SERVER_ERROR: &[&str] = &[
    "500 internal server error",
    "502 bad gateway",
    "503 service unavailable",
    "504 gateway timeout",
];
const UNAUTHORIZED: &[&str] = &[
    "401 unauthorized",
    "403 forbidden",
    "pull access denied",
    "authorization failed",
    "failed to authorize",
    "no basic auth credentials",
    "requested access to the resource is denied",
    // The distribution spec's error codes as registries print them: `unauthorized:
    // authentication required`, `denied: Permission "...downloadArtifacts" denied`.
    "unauthorized: ",
    "authentication required",
    "denied: permission",
    "insufficient_scope",
];
const NOT_FOUND: &[&str] = &["not found", "manifest unknown", "name unknown"];
/// containerd's, Docker's and CRI-O's words for an image without the node's platform; tried
/// before [`NOT_FOUND`], which containerd's also contains.
const PLATFORM_MISMATCH: &[&str] = &[
    "no match for platform in manifest",
    "no matching manifest for",
    "no image found in manifest list for architecture",
    "does not match the specified platform",
];

/// The node's own disk, in any runtime's words: tried first, since the same error names the
/// registry's URL and layer digests too.
const NODE_DISK_FULL: &[&str] = &["no space left on device"];

impl ImagePullCause {
    const ALL: [ImagePullCause; 8] = [
        ImagePullCause::NotFound,
        ImagePullCause::PlatformMismatch,
        ImagePullCause::Unauthorized,
        ImagePullCause::Unreachable,
        ImagePullCause::ServerError,
        ImagePullCause::RateLimited,
        ImagePullCause::NodeDiskFull,
        ImagePullCause::Unknown,
    ];

    /// Reads the cause from the pull errors (any case).
    pub fn classify(text: &str) -> ImagePullCause {
        let status = server_error_status(text);
        let text = text.to_ascii_lowercase();
        let any = |markers: &[&str]| markers.iter().any(|m| text.contains(m));
        if any(NODE_DISK_FULL) {
            ImagePullCause::NodeDiskFull
        } else if any(RATE_LIMITED) {
            ImagePullCause::RateLimited
        } else if any(UNREACHABLE) {
            ImagePullCause::Unreachable
        } else if any(SERVER_ERROR) || status.is_some() {
            ImagePullCause::ServerError
        } else if any(UNAUTHORIZED) {
            ImagePullCause::Unauthorized
        } else if any(PLATFORM_MISMATCH) {
            ImagePullCause::PlatformMismatch
        } else if any(NOT_FOUND) {
            ImagePullCause::NotFound
        } else {
            ImagePullCause::Unknown
        }
    }

    /// The report's `spec.failure.reason`; `Unknown` keeps the kubelet's own reason.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            ImagePullCause::NotFound => Some("ImageNotFound"),
            ImagePullCause::Unauthorized => Some("RegistryAuthFailed"),
            ImagePullCause::Unreachable => Some("RegistryUnreachable"),
            ImagePullCause::ServerError => Some("RegistryServerError"),
            ImagePullCause::RateLimited => Some("RegistryRateLimited"),
            ImagePullCause::PlatformMismatch => Some("ImagePlatformMismatch"),
            ImagePullCause::NodeDiskFull => Some("NodeDiskFull"),
            ImagePullCause::Unknown => None,
        }
    }

    /// The cause a report's reason names (`ErrImagePull` and the like are `Unknown`).
    pub fn parse(reason: &str) -> ImagePullCause {
        Self::ALL
            .into_iter()
            .find(|c| c.reason() == Some(reason))
            .unwrap_or(ImagePullCause::Unknown)
    }

    /// Whether the registry itself is failing: the image reference may be right, so no change
    /// to the workload fixes it.
    pub fn is_outage(self) -> bool {
        matches!(
            self,
            ImagePullCause::Unreachable | ImagePullCause::ServerError | ImagePullCause::RateLimited
        )
    }
}

/// A 5xx status a pull error quotes in any of the shapes containerd, CRI-O and Docker print
/// (`: 502 Bad Gateway`, `registry 503 (Service Unavailable)`, `504 Gateway Time-out`,
/// `unexpected status code 500`, containerd's `unexpected status code <url>: 520 <none>`): the
/// code followed by a 5xx reason phrase, or after "status" (a port, `host:503/`, is neither).
fn server_error_status(text: &str) -> Option<u16> {
    static STATUS: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?i)\b(5[0-9]{2})\s\(?(?:internal|not implemented|bad gateway|service|gateway|http version|variant|insufficient|loop|not extended|network auth|web server|connection timed|origin|a timeout|ssl)|status(?: code)?:?\s(5[0-9]{2})\b|unexpected status[^\n]*?:\s(5[0-9]{2})\b",
        )
        .expect("a valid pattern")
    });
    let found = STATUS.captures(text)?;
    found.iter().skip(1).flatten().next()?.as_str().parse().ok()
}

/// The first marker of `cause` found in `text`, to quote (`connection refused`, `503 service
/// unavailable`, `HTTP 520`).
pub fn quoted_marker(cause: ImagePullCause, text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let markers = match cause {
        ImagePullCause::RateLimited => RATE_LIMITED,
        ImagePullCause::Unreachable => UNREACHABLE,
        ImagePullCause::ServerError => SERVER_ERROR,
        ImagePullCause::Unauthorized => UNAUTHORIZED,
        ImagePullCause::NotFound => NOT_FOUND,
        ImagePullCause::PlatformMismatch => PLATFORM_MISMATCH,
        ImagePullCause::NodeDiskFull => NODE_DISK_FULL,
        ImagePullCause::Unknown => &[],
    };
    let marker = markers
        .iter()
        .find(|m| lower.contains(*m))
        .map(|m| m.trim_end_matches([':', ' ']).to_string());
    match (marker, cause) {
        (None, ImagePullCause::ServerError) => {
            server_error_status(text).map(|code| format!("HTTP {code}"))
        }
        (marker, _) => marker,
    }
}

/// The registry an image reference names: its first path segment when that is a host (has a
/// dot or a port, or is `localhost`), else Docker Hub.
pub fn registry_of(image: &str) -> String {
    image
        .split('/')
        .next()
        .filter(|r| {
            image.contains('/') && (r.contains('.') || r.contains(':') || *r == "localhost")
        })
        .unwrap_or("docker.io")
        .to_string()
}

/// The repository of an image reference, its registry made explicit and tag or digest
/// dropped: `nginx:1.27` → `docker.io/library/nginx`.
pub fn repository_of(image: &str) -> String {
    let name = image.split('@').next().unwrap_or(image);
    // A tag follows the last ':' only after the last '/' (a registry may have a port).
    let name = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    };
    let registry = registry_of(name);
    let path = if name.starts_with(&format!("{registry}/")) {
        &name[registry.len() + 1..]
    } else {
        name
    };
    if registry == "docker.io" && !path.contains('/') {
        format!("docker.io/library/{path}")
    } else {
        format!("{registry}/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_of_an_image() {
        let cases = [
            ("nginx:1.27.3", "docker.io/library/nginx"),
            ("ngnix:1.27.3", "docker.io/library/ngnix"),
            ("docker.io/library/nginx:1.27.2", "docker.io/library/nginx"),
            ("bitnami/redis:7.2", "docker.io/bitnami/redis"),
            (
                "registry.example.com:5000/shop/api:2@sha256:0d1c",
                "registry.example.com:5000/shop/api",
            ),
            (
                "registry.example.com:5000/shop/api",
                "registry.example.com:5000/shop/api",
            ),
            ("localhost/app", "localhost/app"),
        ];
        for (image, repository) in cases {
            assert_eq!(repository_of(image), repository, "{image}");
        }
    }

    #[test]
    fn registry_of_an_image() {
        assert_eq!(
            registry_of("registry.example.com:5000/shop/api:2"),
            "registry.example.com:5000"
        );
        assert_eq!(registry_of("localhost/app"), "localhost");
        assert_eq!(registry_of("nginx:1.27"), "docker.io");
        assert_eq!(registry_of("library/nginx"), "docker.io");
    }

    /// Pull errors as containerd and CRI-O write them.
    #[test]
    fn kubelet_pull_errors_are_told_apart() {
        for (message, cause) in [
            // The node's disk, whatever else the error names (a registry host, a 5xx-like digest).
            (
                "failed to pull and unpack image \"registry.example.com/app:v2\": failed to extract layer sha256:503f1c4e: write /var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/1123/fs/usr/lib/libicudata.so.72: no space left on device: unknown",
                ImagePullCause::NodeDiskFull,
            ),
            (
                "writing blob: storing blob to file \"/var/tmp/storage1234/1\": write /var/tmp/storage1234/1: no space left on device",
                ImagePullCause::NodeDiskFull,
            ),
            (
                "rpc error: code = NotFound desc = failed to pull and unpack image \"registry.example.com/app:v2\": no match for platform in manifest: not found",
                ImagePullCause::PlatformMismatch,
            ),
            (
                "Error response from daemon: no matching manifest for linux/arm64/v8 in the manifest list entries",
                ImagePullCause::PlatformMismatch,
            ),
            (
                "choosing image instance: no image found in manifest list for architecture \"arm64\", variant \"v8\", OS \"linux\"",
                ImagePullCause::PlatformMismatch,
            ),
            (
                "failed to pull and unpack image \"registry.example.com/app:v2\": failed to resolve reference \"registry.example.com/app:v2\": registry.example.com/app:v2: not found",
                ImagePullCause::NotFound,
            ),
            (
                "rpc error: code = Unknown desc = Error response from daemon: manifest for registry.example.com/app:v2 not found: manifest unknown: manifest unknown",
                ImagePullCause::NotFound,
            ),
            (
                "failed to authorize: failed to fetch anonymous token: unexpected status from GET request to https://ghcr.io/token?scope=repository%3Aacme%2Fapi%3Apull&service=ghcr.io: 401 Unauthorized",
                ImagePullCause::Unauthorized,
            ),
            (
                "failed to resolve reference \"registry.internal.example:5000/shop/api:2.4.0\": failed to do request: Head \"https://registry.internal.example:5000/v2/shop/api/manifests/2.4.0\": dial tcp 10.20.0.15:5000: connect: connection refused",
                ImagePullCause::Unreachable,
            ),
            (
                "failed to do request: Head \"https://registry.internal.example/v2/shop/api/manifests/2.4.0\": dial tcp 10.20.0.15:443: i/o timeout",
                ImagePullCause::Unreachable,
            ),
            (
                "failed to do request: Head \"https://registry.internal.example/v2/shop/api/manifests/2.4.0\": dial tcp: lookup registry.internal.example on 10.96.0.10:53: no such host",
                ImagePullCause::Unreachable,
            ),
            (
                "failed to do request: Head \"https://registry.internal.example/v2/shop/api/manifests/2.4.0\": tls: failed to verify certificate: x509: certificate signed by unknown authority",
                ImagePullCause::Unreachable,
            ),
            (
                "failed to resolve reference \"registry.internal.example/shop/api:2.4.0\": unexpected status from HEAD request to https://registry.internal.example/v2/shop/api/manifests/2.4.0: 503 Service Unavailable",
                ImagePullCause::ServerError,
            ),
            (
                "failed to copy: httpReadSeeker: failed open: unexpected status code https://registry-1.docker.io/v2/library/nginx/manifests/sha256:0d17: 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading",
                ImagePullCause::RateLimited,
            ),
            (
                "Back-off pulling image \"nginx:1.27\"",
                ImagePullCause::Unknown,
            ),
            // CRI-O (containers/image) and Docker shapes.
            (
                "initializing source docker://quay.io/acme/api:2.4.0: reading manifest 2.4.0 in quay.io/acme/api: unauthorized: access to the requested resource is not authorized",
                ImagePullCause::Unauthorized,
            ),
            (
                "Error response from daemon: Head \"https://registry.example.com/v2/app/manifests/v2\": unauthorized: authentication required",
                ImagePullCause::Unauthorized,
            ),
            (
                "failed to resolve reference \"europe-docker.pkg.dev/acme/apps/api:2\": failed to authorize: failed to fetch oauth token: unexpected status from GET request to https://europe-docker.pkg.dev/v2/token: 403 Forbidden",
                ImagePullCause::Unauthorized,
            ),
            (
                "reading manifest 2 in europe-docker.pkg.dev/acme/apps/api: denied: Permission \"artifactregistry.repositories.downloadArtifacts\" denied on resource \"projects/acme/locations/europe/repositories/apps\" (or it may not exist)",
                ImagePullCause::Unauthorized,
            ),
            (
                "initializing source docker://registry.example.com/app:v2: reading manifest v2 in registry.example.com/app: manifest unknown",
                ImagePullCause::NotFound,
            ),
            (
                "initializing source docker://registry.example.com/app:v2: pinging container registry registry.example.com: Get \"https://registry.example.com/v2/\": dial tcp: lookup registry.example.com: Temporary failure in name resolution",
                ImagePullCause::Unreachable,
            ),
            (
                "Error response from daemon: Get \"https://registry.example.com/v2/\": net/http: request canceled while waiting for connection (Client.Timeout exceeded while awaiting headers)",
                ImagePullCause::Unreachable,
            ),
            (
                "failed to do request: Head \"https://10.0.0.7:5000/v2/app/manifests/v2\": http: server gave HTTP response to HTTPS client",
                ImagePullCause::Unreachable,
            ),
            (
                "reading manifest v2 in registry.example.com/app: received unexpected HTTP status: 504 Gateway Time-out",
                ImagePullCause::ServerError,
            ),
            (
                "initializing source docker://registry.example.com/app:v2: Requesting bearer token: invalid status code from registry 503 (Service Unavailable)",
                ImagePullCause::ServerError,
            ),
            (
                "failed to copy: httpReadSeeker: failed open: unexpected status code https://registry.example.com/v2/app/blobs/sha256:9f2c: 520 <none>",
                ImagePullCause::ServerError,
            ),
            (
                "Error response from daemon: unexpected status code 500",
                ImagePullCause::ServerError,
            ),
            (
                "reading manifest v2 in registry.example.com/app: StatusCode: 429, \"Too Many Requests\"",
                ImagePullCause::RateLimited,
            ),
            // A port or an address is not a status.
            (
                "unexpected status from HEAD request to https://registry.example.com:503/v2/app/manifests/v2: EOF",
                ImagePullCause::Unknown,
            ),
        ] {
            assert_eq!(ImagePullCause::classify(message), cause, "{message}");
        }
    }

    #[test]
    fn a_server_error_is_quoted_by_its_phrase_or_its_code() {
        assert_eq!(
            quoted_marker(
                ImagePullCause::ServerError,
                "unexpected status from HEAD request to https://r.example/v2/a/manifests/1: 502 Bad Gateway"
            ),
            Some("502 bad gateway".to_string())
        );
        assert_eq!(
            quoted_marker(
                ImagePullCause::ServerError,
                "invalid status code from registry 507 (Insufficient Storage)"
            ),
            Some("HTTP 507".to_string())
        );
    }

    #[test]
    fn reasons_read_back_and_only_outages_are_outages() {
        for cause in ImagePullCause::ALL {
            let back = cause
                .reason()
                .map_or(ImagePullCause::Unknown, ImagePullCause::parse);
            assert_eq!(back, cause);
        }
        assert_eq!(
            ImagePullCause::parse("ErrImagePull"),
            ImagePullCause::Unknown
        );
        let outages: Vec<_> = ImagePullCause::ALL
            .into_iter()
            .filter(|c| c.is_outage())
            .collect();
        assert_eq!(
            outages,
            [
                ImagePullCause::Unreachable,
                ImagePullCause::ServerError,
                ImagePullCause::RateLimited
            ]
        );
        assert_eq!(
            quoted_marker(
                ImagePullCause::Unreachable,
                "dial tcp 10.0.0.1:5000: connect: Connection Refused"
            ),
            Some("connection refused".to_string())
        );
    }
}

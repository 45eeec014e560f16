//! Why an image cannot be pulled, read from the error the kubelet records (the container's
//! waiting message and the `Failed` events): a tag the registry lacks is a typo a patch can fix;
//! a registry that is down, failing or rate-limiting is an outage no patch fixes.

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
    /// None of the above can be told from the message.
    Unknown,
}

/// Markers in the kubelet's (containerd's, CRI-O's) pull errors, lower-cased, in the order they
/// are tried: a rate limit or an unreachable registry can mention other words too.
const RATE_LIMITED: &[&str] = &[
    "toomanyrequests",
    "429 too many requests",
    "pull rate limit",
];
const UNREACHABLE: &[&str] = &[
    "connection refused",
    "i/o timeout",
    "no such host",
    "no route to host",
    "network is unreachable",
    "connection reset by peer",
    "tls handshake timeout",
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
];
const NOT_FOUND: &[&str] = &["not found", "manifest unknown", "name unknown"];

impl ImagePullCause {
    const ALL: [ImagePullCause; 6] = [
        ImagePullCause::NotFound,
        ImagePullCause::Unauthorized,
        ImagePullCause::Unreachable,
        ImagePullCause::ServerError,
        ImagePullCause::RateLimited,
        ImagePullCause::Unknown,
    ];

    /// Reads the cause from the pull errors (any case).
    pub fn classify(text: &str) -> ImagePullCause {
        let text = text.to_ascii_lowercase();
        let any = |markers: &[&str]| markers.iter().any(|m| text.contains(m));
        if any(RATE_LIMITED) {
            ImagePullCause::RateLimited
        } else if any(UNREACHABLE) {
            ImagePullCause::Unreachable
        } else if any(SERVER_ERROR) {
            ImagePullCause::ServerError
        } else if any(UNAUTHORIZED) {
            ImagePullCause::Unauthorized
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

/// The first marker of `cause` found in `text`, to quote (`connection refused`, `503 service
/// unavailable`).
pub fn quoted_marker(cause: ImagePullCause, text: &str) -> Option<&'static str> {
    let text = text.to_ascii_lowercase();
    let markers = match cause {
        ImagePullCause::RateLimited => RATE_LIMITED,
        ImagePullCause::Unreachable => UNREACHABLE,
        ImagePullCause::ServerError => SERVER_ERROR,
        ImagePullCause::Unauthorized => UNAUTHORIZED,
        ImagePullCause::NotFound => NOT_FOUND,
        ImagePullCause::Unknown => &[],
    };
    markers
        .iter()
        .find(|m| text.contains(*m))
        .map(|m| m.trim_end_matches([':', ' ']))
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

#[cfg(test)]
mod tests {
    use super::*;

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
        ] {
            assert_eq!(ImagePullCause::classify(message), cause, "{message}");
        }
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
            Some("connection refused")
        );
    }
}

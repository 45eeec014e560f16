//! Unit tests of the rules brain's pure parts: the crash-log clue reader and the memory
//! arithmetic of the OOM playbook. The playbooks end to end are tested in `host/tests/agent.rs`.

use super::clues::{Clue, read_clues};
use super::oom::{as_quantity, mebibytes_rounded_up};
use crate::failure::ExecFailure;

#[test]
fn clues_from_real_shaped_logs() {
    let cases = [
        (
            "Error: Connection refused to redis:6379",
            Clue::ConnectionRefused {
                host: "redis".into(),
                port: Some(6379),
            },
        ),
        (
            "dial tcp 10.96.0.12:5432: connect: connection refused",
            Clue::ConnectionRefused {
                host: "10.96.0.12".into(),
                port: Some(5432),
            },
        ),
        (
            "Error: connect ECONNREFUSED 10.96.4.2:27017 (mongo.shop.svc:27017)",
            Clue::ConnectionRefused {
                host: "mongo.shop.svc".into(),
                port: Some(27017),
            },
        ),
        (
            "psql: error: could not connect to server: Connection refused. Is the server running on host \"postgres\" (10.0.0.5) and accepting TCP/IP connections on port 5432?",
            Clue::ConnectionRefused {
                host: "postgres".into(),
                port: Some(5432),
            },
        ),
        (
            "redis.exceptions.ConnectionError: Error 111 connecting to cache:6380. Connection refused.",
            Clue::ConnectionRefused {
                host: "cache".into(),
                port: Some(6380),
            },
        ),
        (
            "dial tcp: lookup payments-db on 10.96.0.10:53: no such host",
            Clue::DnsFailure {
                host: "payments-db".into(),
                port: None,
            },
        ),
        (
            "Error: getaddrinfo ENOTFOUND rabbitmq",
            Clue::DnsFailure {
                host: "rabbitmq".into(),
                port: None,
            },
        ),
        // The resolver failed, not the name: a timeout, SERVFAIL, EAI_AGAIN, as Go, glibc
        // (Python, libpq), Node and Java write them.
        (
            "fatal: redis ping: dial tcp: lookup sessions-redis on 10.96.0.10:53: read udp 10.244.1.9:41234->10.96.0.10:53: i/o timeout",
            Clue::DnsUnanswered {
                host: "sessions-redis".into(),
                port: None,
            },
        ),
        (
            "dial tcp: lookup orders-db.shop.svc.cluster.local on 10.96.0.10:53: server misbehaving",
            Clue::DnsUnanswered {
                host: "orders-db.shop.svc.cluster.local".into(),
                port: None,
            },
        ),
        (
            "dial tcp: lookup orders-db on 10.96.0.10:53: read udp 10.244.2.4:5353->10.96.0.10:53: read: connection refused",
            Clue::DnsUnanswered {
                host: "orders-db".into(),
                port: None,
            },
        ),
        (
            ";; connection timed out; no servers could be reached",
            Clue::DnsUnanswered {
                host: String::new(),
                port: None,
            },
        ),
        (
            "dial tcp: lookup orders-db on 10.96.0.10:53: dial udp 10.96.0.10:53: connect: network is unreachable",
            Clue::DnsUnanswered {
                host: "orders-db".into(),
                port: None,
            },
        ),
        (
            "redis.exceptions.ConnectionError: Error -3 connecting to sessions-redis:6379. Temporary failure in name resolution.",
            Clue::DnsUnanswered {
                host: "sessions-redis".into(),
                port: Some(6379),
            },
        ),
        (
            "psycopg2.OperationalError: could not translate host name \"orders-db\" to address: Temporary failure in name resolution",
            Clue::DnsUnanswered {
                host: "orders-db".into(),
                port: None,
            },
        ),
        (
            "Error: getaddrinfo EAI_AGAIN payments-db",
            Clue::DnsUnanswered {
                host: "payments-db".into(),
                port: None,
            },
        ),
        (
            "java.net.UnknownHostException: inventory: Temporary failure in name resolution",
            Clue::DnsUnanswered {
                host: "inventory".into(),
                port: None,
            },
        ),
        (
            "[FATAL] plugin/loop: Loop (127.0.0.1:46617 -> :53) detected for zone \".\", see https://coredns.io/plugins/loop#troubleshooting. Query: \"HINFO 4547991504243258144.3688648895315093531.\"",
            Clue::ResolverLoop,
        ),
        // Java names the host before the address it resolved to.
        (
            "io.netty.channel.AbstractChannel$AnnotatedConnectException: Connection refused: orders-db/10.96.1.2:5432",
            Clue::ConnectionRefused {
                host: "orders-db".into(),
                port: Some(5432),
            },
        ),
        (
            "redis.exceptions.TimeoutError: Error 110 connecting to sessions-redis:6379. Operation timed out.",
            Clue::ConnectTimeout {
                host: "sessions-redis".into(),
                port: Some(6379),
            },
        ),
        // musl (Alpine images) words them its own way.
        (
            "redis.exceptions.ConnectionError: Error -2 connecting to sessions-redis:6379. Name does not resolve.",
            Clue::DnsFailure {
                host: "sessions-redis".into(),
                port: Some(6379),
            },
        ),
        (
            "redis.exceptions.ConnectionError: Error -3 connecting to sessions-redis:6379. Try again.",
            Clue::DnsUnanswered {
                host: "sessions-redis".into(),
                port: Some(6379),
            },
        ),
        (
            "curl: (6) Could not resolve host: orders-db",
            Clue::DnsFailure {
                host: "orders-db".into(),
                port: None,
            },
        ),
        (
            "socket.gaierror: [Errno -5] No address associated with hostname (inventory:8080)",
            Clue::DnsFailure {
                host: "inventory".into(),
                port: Some(8080),
            },
        ),
        // A name that does not exist is still the name's, whatever server answered.
        (
            "psycopg2.OperationalError: could not translate host name \"orders-db\" to address: Name or service not known",
            Clue::DnsFailure {
                host: "orders-db".into(),
                port: None,
            },
        ),
        // A connection that timed out after its name resolved is not the resolver's.
        (
            "dial tcp 10.96.14.2:6379: i/o timeout",
            Clue::ConnectTimeout {
                host: "10.96.14.2".into(),
                port: Some(6379),
            },
        ),
        (
            "FATAL: environment variable DATABASE_URL is not set",
            Clue::MissingSetting {
                name: "DATABASE_URL".into(),
            },
        ),
        (
            "KeyError: 'STRIPE_API_KEY'",
            Clue::MissingSetting {
                name: "STRIPE_API_KEY".into(),
            },
        ),
        (
            "mkdir /data/cache: permission denied",
            Clue::PermissionDenied {
                path: Some("/data/cache".into()),
            },
        ),
        (
            "exec: \"gunicorn\": executable file not found in $PATH",
            Clue::CannotExec(ExecFailure::NotFound {
                command: Some("gunicorn".into()),
            }),
        ),
        (
            "panic: runtime error: invalid memory address or nil pointer dereference",
            Clue::Crash {
                line: "panic: runtime error: invalid memory address or nil pointer dereference"
                    .into(),
            },
        ),
    ];
    let more = [
        (
            r#"psycopg2.OperationalError: connection to server at "orders-db" (10.96.4.2), port 5432 failed: FATAL:  password authentication failed for user "orders""#,
            Clue::CredentialsRejected {
                host: Some("orders-db".into()),
            },
        ),
        (
            "MongoServerError: Authentication failed.",
            Clue::CredentialsRejected { host: None },
        ),
        (
            "MongoServerError: command find requires authentication",
            Clue::CredentialsRejected { host: None },
        ),
        (
            r#"panic: (Unauthorized) not authorized on geo-db to execute command { find: "geo", filter: {}, lsid: { id: {4 [168 27 9 1]} }, $db: "geo-db" }"#,
            Clue::PrivilegesDenied { host: None },
        ),
        (
            "sqlalchemy.exc.ProgrammingError: (psycopg2.errors.InsufficientPrivilege) permission denied for table orders",
            Clue::PrivilegesDenied { host: None },
        ),
        (
            "Error 1142 (42000): SELECT command denied to user 'app'@'10.244.1.9' for table 'orders'",
            Clue::PrivilegesDenied { host: None },
        ),
        (
            "Error 1044 (42000): Access denied for user 'app'@'%' to database 'shop'",
            Clue::PrivilegesDenied { host: None },
        ),
        (
            "Error 1045 (28000): Access denied for user 'app'@'10.244.1.9' (using password: YES)",
            Clue::CredentialsRejected { host: None },
        ),
        (
            r#"time=2026-12-07T09:12:02Z level=FATAL msg="failed to load configuration" file=/etc/checkout/config.yaml err="yaml: line 14: mapping values are not allowed in this context""#,
            Clue::BadConfigFile {
                path: Some("/etc/checkout/config.yaml".into()),
            },
        ),
        (
            "panic: failed to read config /etc/app/config.json: invalid character '}' looking for beginning of object key string",
            Clue::BadConfigFile {
                path: Some("/etc/app/config.json".into()),
            },
        ),
        (
            "Caused by: org.yaml.snakeyaml.scanner.ScannerException: mapping values are not allowed here",
            Clue::BadConfigFile { path: None },
        ),
        (
            r#"nginx: [emerg] unknown directive "proxy_passs" in /etc/nginx/conf.d/default.conf:14"#,
            Clue::BadConfigFile {
                path: Some("/etc/nginx/conf.d/default.conf".into()),
            },
        ),
        (
            r#"nginx: [emerg] host not found in upstream "catalog:8080" in /etc/nginx/conf.d/default.conf:12"#,
            Clue::DnsFailure {
                host: "catalog".into(),
                port: Some(8080),
            },
        ),
        (
            r#"level=ERROR msg="failed to load configuration" err="open /etc/shop/config.yaml: no such file or directory""#,
            Clue::MissingFile {
                path: "/etc/shop/config.yaml".into(),
            },
        ),
        (
            "2026/11/20 10:00:00 open /etc/billing/rates.yaml: no such file or directory",
            Clue::MissingFile {
                path: "/etc/billing/rates.yaml".into(),
            },
        ),
        (
            "FileNotFoundError: [Errno 2] No such file or directory: '/etc/app/settings.toml'",
            Clue::MissingFile {
                path: "/etc/app/settings.toml".into(),
            },
        ),
        (
            "Error: ENOENT: no such file or directory, open '/app/config/production.json'",
            Clue::MissingFile {
                path: "/app/config/production.json".into(),
            },
        ),
        (
            "Caused by: java.io.FileNotFoundException: /etc/app/application.yml (No such file or directory)",
            Clue::MissingFile {
                path: "/etc/app/application.yml".into(),
            },
        ),
        (
            r#"psycopg2.OperationalError: connection to server at "orders-db" (10.96.4.2), port 5432 failed: Connection timed out"#,
            Clue::ConnectTimeout {
                host: "orders-db".into(),
                port: Some(5432),
            },
        ),
        (
            "failed to connect to redis at sessions-redis:6379: dial tcp 10.96.12.4:6379: i/o timeout",
            Clue::ConnectTimeout {
                host: "sessions-redis".into(),
                port: Some(6379),
            },
        ),
        (
            "ReplyError: WRONGPASS invalid username-password pair or user is disabled.",
            Clue::CredentialsRejected { host: None },
        ),
        (
            r#"Error: Get "https://vault.security:8200/v1/sys/health": x509: certificate signed by unknown authority"#,
            Clue::CertificateRejected {
                host: Some("vault.security".into()),
            },
        ),
        (
            "write /var/lib/app/segments/000042.log: no space left on device",
            Clue::DiskFull {
                path: Some("/var/lib/app/segments/000042.log".into()),
            },
        ),
        (
            "listen tcp :8080: bind: address already in use",
            Clue::PortInUse { port: Some(8080) },
        ),
        (
            "Error: listen EADDRINUSE: address already in use :::3000",
            Clue::PortInUse { port: Some(3000) },
        ),
        (
            "exec /app/run.sh: permission denied",
            Clue::CannotExec(ExecFailure::NotExecutable {
                command: Some("/app/run.sh".into()),
            }),
        ),
    ];
    for (line, expected) in cases.into_iter().chain(more) {
        let clues = read_clues(&format!("starting up\n{line}\n"));
        assert_eq!(clues.first().map(|c| &c.0), Some(&expected), "{line}");
    }
    assert!(read_clues("all good\nserving on :8080\n").is_empty());
    // Python's YAML errors name the file on the line after.
    let python = "Traceback (most recent call last):\n  File \"/app/main.py\", line 9, in <module>\nyaml.scanner.ScannerError: mapping values are not allowed here\n  in \"/etc/app/settings.yaml\", line 3, column 9\n";
    assert_eq!(
        read_clues(python).first().map(|c| &c.0),
        Some(&Clue::BadConfigFile {
            path: Some("/etc/app/settings.yaml".into())
        })
    );
    // A lookup that timed out is the cluster's DNS server, not the host it was asked for.
    let lookup = "dial tcp: lookup sessions-redis on 10.96.0.10:53: read udp 10.244.1.7:41237->10.96.0.10:53: i/o timeout\n";
    assert!(
        !read_clues(lookup)
            .iter()
            .any(|(c, _)| matches!(c, Clue::ConnectTimeout { .. })),
        "{:?}",
        read_clues(lookup)
    );
    // A JSON error with no configuration beside it is an API's answer, not a file.
    let api = "panic: invalid character '<' looking for beginning of value\n";
    assert!(matches!(
        read_clues(api).first().map(|c| &c.0),
        Some(Clue::Crash { .. })
    ));
}

#[test]
fn quantities_round_up_to_64mi() {
    assert_eq!(as_quantity(mebibytes_rounded_up(512 << 20)), "512Mi");
    assert_eq!(as_quantity(mebibytes_rounded_up((960 << 20) + 1)), "1Gi");
    assert_eq!(as_quantity(mebibytes_rounded_up(8 << 30)), "8Gi");
}

#[test]
fn a_probes_sibling_path_follows_the_applications_convention() {
    use super::probe::sibling_path;
    let (ready, live) = ("readinessProbe", "livenessProbe");
    let cases = [
        (
            "/actuator/health/readiness",
            ready,
            live,
            "/actuator/health/liveness",
        ),
        (
            "/actuator/health/liveness",
            live,
            ready,
            "/actuator/health/readiness",
        ),
        ("/readyz", ready, live, "/livez"),
        ("/health/ready", ready, live, "/health/live"),
        // A path that names neither serves both; a word that merely ends alike is not one.
        ("/healthz", ready, live, "/healthz"),
        ("/already", ready, live, "/already"),
        ("/readyz", "startupProbe", live, "/readyz"),
    ];
    for (path, from, to, expected) in cases {
        assert_eq!(
            sibling_path(path, from, to),
            expected,
            "{path} {from} -> {to}"
        );
    }
}

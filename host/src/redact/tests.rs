//! The redaction table: each secret shape a tenant can write, in text and in JSON, and the
//! ordinary text that must stay readable.

use super::*;
use serde_json::json;

/// (text, the secret that must not survive)
const LEAKS: &[(&str, &str)] = &[
    // URLs: a user and password, an empty user, a `/` in the password.
    (
        "connecting to postgres://billing:s3cr3t-pw@db.billing:5432/ledger",
        "s3cr3t-pw",
    ),
    ("cache at redis://:Yr3d1sPw@cache:6379/0", "Yr3d1sPw"),
    ("amqp://app:pa/ss+w0rd@rabbit:5672/", "pa/ss+w0rd"),
    // Authorization headers, every scheme.
    ("Authorization: Token Zq8tokenvalue", "Zq8tokenvalue"),
    ("authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
    ("Authorization: Bearer abc.def.ghi", "abc.def.ghi"),
    ("Authorization: rawcredential123", "rawcredential123"),
    (
        r#"{"headers": {"Authorization": "Token Zk1234567"}}"#,
        "Zk1234567",
    ),
    ("Proxy-Authorization: Basic cHJveHk6cHc=", "cHJveHk6cHc="),
    // Argument vectors.
    ("exec: app --password hunter2 --verbose", "hunter2"),
    ("exec: app --password=hunter3", "hunter3"),
    // A command line quoted as one string, as a crash loop's evidence shows it.
    (r#"container app: runs "--password Zq7vKp2m""#, "Zq7vKp2m"),
    ("container app: runs '--token tk_9fR2wX7p'", "tk_9fR2wX7p"),
    ("mysql -uroot -pS3cretpw -h db", "S3cretpw"),
    ("redis-cli -h cache -a r3dispw ping", "r3dispw"),
    ("sshpass -p sshpw1 ssh host", "sshpw1"),
    ("curl -u admin:curlpw https://api", "curlpw"),
    (r#"args: ["--db-password", "argvpw"]"#, "argvpw"),
    // `password: X` anywhere in a line.
    (
        "2026-11-25 INFO loaded config password: inline1 for db",
        "inline1",
    ),
    ("level=info msg=ready db_pass=passval1", "passval1"),
    // YAML blocks under a secret key.
    (
        "config:\n  password: |\n    multi-line-secret\n    second-line\n  host: db",
        "multi-line-secret",
    ),
    (
        "credentials:\n  user: admin\n  key: yamlblockkey\nother: x",
        "yamlblockkey",
    ),
    // Env quoted as JSON or YAML text (an annotation holding last-applied-configuration).
    (
        r#"{"env":[{"name":"DB_PASSWORD","value":"lastapplied1"}]}"#,
        "lastapplied1",
    ),
    ("- name: API_TOKEN\n  value: yamlenv1", "yamlenv1"),
    // Webhooks and token formats.
    (
        "posting to https://hooks.slack.com/services/T000/B000/XXXXslackXXXX",
        "XXXXslackXXXX",
    ),
    (
        "https://discord.com/api/webhooks/123456/discordTOKENvalue",
        "discordTOKENvalue",
    ),
    (
        "token github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "github_pat_11ABCDEFG",
    ),
    ("GITLAB=glpat-abcdefghij1234567890", "glpat-abcdefghij"),
    ("key sk_live_abcdefghijklmnop1234", "sk_live_abcdef"),
    ("key rk_live_abcdefghijklmnop1234", "rk_live_abcdef"),
    (
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBGXpgpblock\n-----END PGP PRIVATE KEY BLOCK-----",
        "lQOYBGXpgpblock",
    ),
    (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE\n-----END OPENSSH PRIVATE KEY-----",
        "b3BlbnNzaC1rZXktdjE",
    ),
    (
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHzBJBgkqhkiG\n-----END ENCRYPTED PRIVATE KEY-----",
        "MIIFHzBJBgkqhkiG",
    ),
    // Azure and DSNs.
    (
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=azkey+base64==;EndpointSuffix=core.windows.net",
        "azkey+base64==",
    ),
    (
        "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sig=sasSIGvalue%3D&se=2026",
        "sasSIGvalue",
    ),
    (
        "SENTRY_DSN=https://0123456789abcdef0123456789abcdef@o1.ingest.sentry.io/1",
        "0123456789abcdef0123456789abcdef",
    ),
    (
        "using dsn https://0123456789abcdef0123456789abcdef@o1.ingest.sentry.io/1",
        "0123456789abcdef0123456789abcdef",
    ),
    (
        "Server=tcp:db;Database=app;User Id=sa;Password=mssqlpw1;",
        "mssqlpw1",
    ),
    // Docker auth in text.
    (
        r#"{"auths":{"registry.example.com":{"auth":"dXNlcjpkb2NrZXJwdw=="}}}"#,
        "dXNlcjpkb2NrZXJwdw==",
    ),
    // Env names of every shape.
    ("REDIS_PASS=redispass1", "redispass1"),
    ("GPG_PASSPHRASE=phrase1", "phrase1"),
    ("SIGNINGPASSPHRASE=phrase2", "phrase2"),
    ("AUTHORIZATION_HEADER=hdrvalue1", "hdrvalue1"),
    ("X_AUTH=xauth1", "xauth1"),
    // Hidden by terminal codes between the key and the value.
    ("DB_PASSWORD=\x1b[8mansihidden1\x1b[0m", "ansihidden1"),
    ("\x1b[31mpassword\x1b[0m: ansihidden2", "ansihidden2"),
];

#[test]
fn every_secret_shape_is_redacted_in_text() {
    for (text, secret) in LEAKS {
        let out = redact_text(text);
        assert!(
            !out.contains(secret),
            "{secret:?} leaked from {text:?}:\n{out}"
        );
        assert!(out.contains(REDACTED), "{text:?} gave {out:?}");
    }
}

#[test]
fn every_secret_shape_is_redacted_inside_json_strings() {
    for (text, secret) in LEAKS {
        let mut value = json!({"log": text, "lines": [text]});
        redact_json(&mut value);
        assert!(
            !value.to_string().contains(secret),
            "{secret:?} leaked: {value}"
        );
    }
}

#[test]
fn ordinary_text_stays_readable() {
    for text in [
        "Error: Connection refused to redis:6379",
        "Failed to pull image \"ghcr.io/acme/api:2\": unexpected status from GET request to https://ghcr.io/token?scope=x: 401 Unauthorized",
        "GET http://api:8080/users/@me 200",
        "author: ops",
        "PWD=/app",
        "listening on http://0.0.0.0:8080/",
        "max_tokens=512 total_tokens: 300",
        "docker run -u 1000:1000 app",
        "mysql -P 3306 -h db",
        "the bypass route is enabled",
        "secretName: tls-cert",
        "PASSWORD_FILE=/run/secrets/db",
        "--token-path /var/run/token",
        "Read Secret ledger-db-credentials: does it exist, and which keys does it have?",
        "failed to fetch anonymous token: unexpected status from GET request",
    ] {
        assert_eq!(redact_text(text), text, "nothing secret in it");
    }
}

#[test]
fn logs_keep_their_shape() {
    let log = "2026-11-25T09:41:07Z INFO connecting to postgres://billing:s3cr3t-pw@db.billing:5432/ledger\n\
               DB_PASSWORD=hunter2 REDIS_HOST=redis\n\
               config: {\"apiKey\": \"abc123\", \"author\": \"ops\"}";
    let out = redact_text(log);
    assert!(
        out.contains("postgres://billing:<redacted>@db.billing:5432/ledger"),
        "{out}"
    );
    assert!(
        out.contains("DB_PASSWORD=<redacted> REDIS_HOST=redis"),
        "{out}"
    );
    assert!(out.contains("\"apiKey\": \"<redacted>\""), "{out}");
    assert!(out.contains("\"author\": \"ops\""), "not a secret: {out}");
    assert_eq!(
        redact_text("Authorization: Token Zq8tokenvalue"),
        "Authorization: Token <redacted>",
        "the scheme stays, the credential goes"
    );
}

#[test]
fn object_dumps_and_argument_vectors() {
    let mut pod = json!({"spec": {"containers": [{"name": "app",
        "command": ["mysql", "-uroot", "-pGlued1"],
        "args": ["--password", "Spaced1", "--password=Equals1", "--verbose", "-p", "8080"],
        "env": [
            {"name": "DATABASE_PASSWORD", "value": "hunter2"},
            {"name": "API_TOKEN", "value": "t0k3n"},
            {"name": "REDIS_PASS", "value": "rp1"},
            {"name": "REDIS_HOST", "value": "redis"},
            {"name": "DB_URL", "value": "mysql://app:pw123@mysql:3306/app"},
            {"name": "SECRET_REF", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}
        ]}], "imagePullSecrets": [{"name": "regcred"}]},
        "metadata": {"annotations": {"client-secret": "xyz", "credentials": {"user": "u1"}}}});
    redact_json(&mut pod);
    let text = pod.to_string();
    for secret in [
        "hunter2", "t0k3n", "rp1", "pw123", "xyz", "u1", "Glued1", "Spaced1", "Equals1",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    for kept in [
        "\"value\":\"redis\"",
        "\"key\":\"password\"",
        "\"name\":\"regcred\"",
        "\"8080\"",
        "\"--verbose\"",
    ] {
        assert!(text.contains(kept), "{kept} is no secret: {text}");
    }
    let mut redis = json!(["redis-cli", "-h", "cache", "-a", "Ra1", "ping"]);
    redact_json(&mut redis);
    assert_eq!(
        redis,
        json!(["redis-cli", "-h", "cache", "-a", REDACTED, "ping"])
    );
}

#[test]
fn one_name_list_with_exact_exemptions() {
    for secret in [
        "DB_PASSWORD",
        "apiKey",
        "AWS_SECRET_ACCESS_KEY",
        "auth-token",
        "REDIS_PASS",
        "GPG_PASSPHRASE",
        "AUTHORIZATION",
        "AUTHORIZATION_BEARER",
        "X-Auth",
        "SENTRY_DSN",
        "sig",
        "AccountKey",
        "--password",
        "DB_PASSWORD_AUTHOR",
    ] {
        assert!(is_secret_name(secret), "{secret} names a secret");
    }
    for harmless in [
        "author",
        "authority",
        "secretName",
        "PWD",
        "bypass",
        "maxTokens",
        "PASSWORD_FILE",
        "TOKEN_URL",
        "design",
        "signal",
    ] {
        assert!(!is_secret_name(harmless), "{harmless} names no secret");
    }
}

#[test]
fn control_sequences_are_removed_and_text_kept() {
    assert_eq!(
        strip_control("\x1b[31mERROR\x1b[0m \x1b[8mhidden"),
        "ERROR hidden"
    );
    assert_eq!(
        strip_control("copy \x1b]52;c;ZXZpbA==\x07done"),
        "copy done",
        "OSC 52"
    );
    assert_eq!(strip_control("ring\x07bell"), "ring\u{fffd}bell");
    assert_eq!(strip_control("safe\rEVIL"), "safe\nEVIL");
    assert_eq!(strip_control("line\r\nnext\ttab"), "line\nnext\ttab");
    assert_eq!(strip_control("a\u{9b}31mb"), "ab", "8-bit CSI");
    assert_eq!(strip_control("x\u{202e}y"), "x\u{fffd}y", "bidi override");
    for text in [
        "\x1b[31mERROR\x1b[0m \x1b[8mhidden",
        "a\x1b]0;title\x07b",
        "\x1bc reset",
    ] {
        assert!(!strip_control(text).chars().any(is_unsafe_char), "{text:?}");
    }
}

#[test]
fn redaction_is_idempotent() {
    for (text, _) in LEAKS {
        let once = redact_text(text);
        assert_eq!(redact_text(&once), once, "{text:?}");
    }
}

//! Redaction of secrets from everything that reaches a model or a report: values of variables
//! whose names look secret, bearer tokens, credentials in URLs, private keys, cloud access keys
//! and well-known token formats, in free text (logs, events) and in JSON (object dumps, tool
//! results).

use std::sync::LazyLock;

use regex::{Captures, Regex};
use serde_json::Value;

pub const REDACTED: &str = "<redacted>";

/// A name that holds a secret: `DB_PASSWORD`, `apiKey`, `AWS_SECRET_ACCESS_KEY`, `auth-token`.
static SECRET_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(passw(or)?d|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|credential|auth|session[_-]?key|client[_-]?secret|signing[_-]?key|encryption[_-]?key|dsn|connection[_-]?string)")
        .expect("static regex")
});

/// Names that match the pattern above but are not secrets.
fn harmless_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [
        "author",
        "oauth_url",
        "auth_url",
        "token_url",
        "authority",
        "secretname",
        "secret_name",
        "secretref",
        "tokenexpiration",
    ]
    .iter()
    .any(|h| lower.contains(h))
}

/// A key that names a secret, inside a longer identifier (`DB_PASSWORD`, `apiKey`).
const SECRET_KEY: &str = r"[A-Za-z0-9_.\-]*(?:passw(?:or)?d|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|credentials?|client[_-]?secret)[A-Za-z0-9_.\-]*";
/// A value: quoted, or up to the next separator.
const VALUE: &str = r#""[^"]*"|'[^']*'|[^\s,;&"'}]+"#;

/// Rebuilds `prefix key separator value` with the value redacted, unless the key is harmless.
fn keep_or_redact(
    c: &Captures,
    key: usize,
    separator: usize,
    value: usize,
    prefix: &str,
) -> String {
    if harmless_name(&c[key]) {
        return c[0].to_string();
    }
    let v = &c[value];
    let redacted = if v.starts_with('"') {
        format!("\"{REDACTED}\"")
    } else if v.starts_with('\'') {
        format!("'{REDACTED}'")
    } else {
        REDACTED.to_string()
    };
    format!("{prefix}{}{}{redacted}", &c[key], &c[separator])
}

struct Rule {
    pattern: Regex,
    replace: fn(&Captures) -> String,
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |pattern: &str, replace: fn(&Captures) -> String| Rule {
        pattern: Regex::new(pattern).expect("static regex"),
        replace,
    };
    vec![
        // PEM private keys, whole.
        rule(
            r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)",
            |c| {
                format!(
                    "-----BEGIN {}PRIVATE KEY----- {REDACTED} -----END {}PRIVATE KEY-----",
                    &c[1], &c[1]
                )
            },
        ),
        // Authorization headers and bearer tokens.
        rule(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]{8,}=*", |c| {
            format!("{} {REDACTED}", &c[1])
        }),
        // Credentials in URLs: scheme://user:password@host
        rule(r"([a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]+):[^\s@/]+@", |c| {
            format!("{}:{REDACTED}@", &c[1])
        }),
        // JSON Web Tokens.
        rule(
            r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
            |_| REDACTED.to_string(),
        ),
        // Cloud and forge access keys.
        rule(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", |_| REDACTED.to_string()),
        rule(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b", |_| REDACTED.to_string()),
        rule(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}\b", |_| {
            REDACTED.to_string()
        }),
        rule(r"\bsk-[A-Za-z0-9_\-]{20,}\b", |_| REDACTED.to_string()),
        rule(r"\bAIza[0-9A-Za-z_\-]{35}\b", |_| REDACTED.to_string()),
        // NAME=value anywhere.
        rule(&format!(r#"(?i)\b({SECRET_KEY})(\s*=\s*)({VALUE})"#), |c| {
            keep_or_redact(c, 1, 2, 3, "")
        }),
        // "name": "value" (JSON) and 'name': value.
        rule(
            &format!(r#"(?i)(["'])({SECRET_KEY})(["']\s*:\s*)({VALUE})"#),
            |c| keep_or_redact(c, 2, 3, 4, &c[1]),
        ),
        // name: value at the start of a line (YAML, headers, structured logs). Prose such as
        // "token: unexpected status" mid-sentence is left alone.
        rule(
            &format!(r#"(?im)^(\s*-?\s*)({SECRET_KEY})(\s*:\s+)({VALUE})"#),
            |c| keep_or_redact(c, 2, 3, 4, &c[1]),
        ),
    ]
});

/// Redacts secrets in free text.
pub fn redact_text(text: &str) -> String {
    let mut out = text.to_string();
    for rule in RULES.iter() {
        if rule.pattern.is_match(&out) {
            out = rule
                .pattern
                .replace_all(&out, |c: &Captures| (rule.replace)(c))
                .into_owned();
        }
    }
    out
}

/// Redacts secrets in JSON: values under secret-looking keys, `{"name": "X_TOKEN", "value": ...}`
/// env entries, and every string through [`redact_text`].
pub fn redact_json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let env_secret = map
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| SECRET_NAME.is_match(n) && !harmless_name(n));
            for (key, child) in map.iter_mut() {
                let secret_key = SECRET_NAME.is_match(key) && !harmless_name(key);
                if (secret_key || (env_secret && key == "value")) && child.is_string() {
                    *child = Value::String(REDACTED.into());
                } else {
                    redact_json(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::String(s) => {
            let redacted = redact_text(s);
            if redacted != *s {
                *s = redacted;
            }
        }
        _ => {}
    }
}

/// Redacts a tool's answer: as JSON when it is JSON, as text otherwise.
pub fn redact_answer(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(mut value) if value.is_object() || value.is_array() => {
            redact_json(&mut value);
            serde_json::to_string_pretty(&value).unwrap_or_else(|_| redact_text(text))
        }
        _ => redact_text(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn logs() {
        let log = "2026-11-25T09:41:07Z INFO connecting to postgres://billing:s3cr3t-pw@db.billing:5432/ledger\n\
                   2026-11-25T09:41:07Z DEBUG headers: Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U\n\
                   DB_PASSWORD=hunter2 REDIS_HOST=redis\n\
                   using key AKIAIOSFODNN7EXAMPLE and token ghp_abcdefghijklmnopqrstuvwxyz0123456789\n\
                   config: {\"apiKey\": \"abc123\", \"author\": \"ops\"}\n\
                   -----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n\
                   Error: Connection refused to redis:6379";
        let out = redact_text(log);
        for secret in [
            "s3cr3t-pw",
            "eyJhbGciOiJIUzI1NiJ9",
            "hunter2",
            "AKIAIOSFODNN7EXAMPLE",
            "ghp_abcdef",
            "abc123",
            "MIIEowIBAAKCAQEA",
        ] {
            assert!(!out.contains(secret), "{secret} leaked:\n{out}");
        }
        assert!(
            out.contains("postgres://billing:<redacted>@db.billing:5432/ledger"),
            "{out}"
        );
        assert!(
            out.contains("DB_PASSWORD=<redacted> REDIS_HOST=redis"),
            "{out}"
        );
        assert!(out.contains("\"author\": \"ops\""), "not a secret: {out}");
        assert!(
            out.contains("Error: Connection refused to redis:6379"),
            "{out}"
        );
    }

    #[test]
    fn object_dumps_and_events() {
        let mut pod = json!({"spec": {"containers": [{"name": "app", "env": [
            {"name": "DATABASE_PASSWORD", "value": "hunter2"},
            {"name": "API_TOKEN", "value": "t0k3n"},
            {"name": "REDIS_HOST", "value": "redis"},
            {"name": "DB_URL", "value": "mysql://app:pw123@mysql:3306/app"},
            {"name": "SECRET_REF", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}
        ]}]}, "metadata": {"annotations": {"client-secret": "xyz"}}});
        redact_json(&mut pod);
        let text = pod.to_string();
        for secret in ["hunter2", "t0k3n", "pw123", "xyz"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(text.contains("\"value\":\"redis\""), "{text}");
        assert!(
            text.contains("\"key\":\"password\""),
            "a reference names no secret value: {text}"
        );
        let event = "Failed to pull image \"ghcr.io/acme/api:2\": unexpected status from GET request to https://ghcr.io/token?scope=x: 401 Unauthorized";
        assert_eq!(redact_text(event), event, "nothing secret in it");
    }
}

//! Redaction of secrets from everything that reaches a model, a report or a terminal: values of
//! variables, keys, flags and headers whose names look secret (one name list, [`is_secret_name`],
//! for text and JSON alike), credentials in URLs and argument vectors, private key blocks, webhook
//! URLs and well-known token formats.
//!
//! Tenant text is untrusted, so it is first cleaned of terminal control sequences
//! ([`strip_control`]): an ANSI colour code between a key and its value must not hide the value
//! from the rules, and a stored report must not carry bytes that drive an approver's terminal.

use std::sync::LazyLock;

use regex::{Captures, Regex};
use serde_json::Value;

pub const REDACTED: &str = "<redacted>";

/// Name fragments that make a name secret wherever they stand in it (`DB_PASSWORD`, `apiKey`,
/// `GPG_PASSPHRASE`, `AUTHORIZATION_HEADER`), matched on the name lower-cased without separators.
const SECRET_FRAGMENTS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "credential",
    "authorization",
    "connectionstring",
    "sessionkey",
    "signingkey",
    "encryptionkey",
    "accountkey",
    "sharedaccesskey",
    "sharedaccesssignature",
    "masterkey",
    "cookie",
];

/// Words that make a name secret only as a whole word (`REDIS_PASS`, `X-Auth`, `SENTRY_DSN`,
/// `sig=`), so that `bypass`, `author` and `design` stay readable.
const SECRET_WORDS: &[&str] = &["pass", "pwd", "auth", "dsn", "sig", "pat"];

/// Names that match the rules above but hold no secret, compared whole (lower-cased, without
/// separators): a substring exemption would let `DB_PASSWORD_AUTHOR` through.
const HARMLESS_NAMES: &[&str] = &[
    "pwd",
    "oldpwd",
    "authority",
    "authorities",
    "oauthurl",
    "authurl",
    "tokenurl",
    "tokenendpoint",
    "authendpoint",
    "authmethod",
    "authtype",
    "authmode",
    "authprovider",
    "tokentype",
    "secretname",
    "secretref",
    "secretkeyref",
    "secretproviderclass",
    "imagepullsecrets",
    "automountserviceaccounttoken",
    "serviceaccounttoken",
];

/// A last word that says the value is about a secret, not the secret itself (`PASSWORD_FILE`,
/// `--token-path`, `TOKEN_TTL`).
const HARMLESS_LAST_WORDS: &[&str] = &[
    "file",
    "path",
    "dir",
    "directory",
    "ref",
    "url",
    "uri",
    "name",
    "env",
    "length",
    "len",
    "ttl",
    "expiry",
    "expiration",
    "expires",
    "seconds",
    "type",
    "endpoint",
    "mount",
    "mode",
    "enabled",
    "required",
    "count",
    "size",
];

/// The words of an identifier: split at separators and at lower→upper case changes.
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            previous_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && previous_lower && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        current.push(c.to_ascii_lowercase());
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Whether a variable, key, flag or header name holds a secret: the one list every rule here
/// uses, for env entries, `NAME=value`, `name: value`, JSON keys and `--flag value`.
pub fn is_secret_name(name: &str) -> bool {
    // Token counts (`maxTokens`, `total_tokens`) are numbers about a model, not credentials.
    let words: Vec<String> = words(name).into_iter().filter(|w| w != "tokens").collect();
    let Some(last) = words.last() else {
        return false;
    };
    let joined = words.concat();
    if HARMLESS_NAMES.contains(&joined.as_str()) || HARMLESS_LAST_WORDS.contains(&last.as_str()) {
        return false;
    }
    SECRET_FRAGMENTS.iter().any(|f| joined.contains(f))
        || words.iter().any(|w| SECRET_WORDS.contains(&w.as_str()))
}

/// A name for a password in particular (`password`, `DB_PASS`, `passphrase`, `pwd`): the
/// names whose `name: value` is redacted even in the middle of a sentence.
fn is_password_name(name: &str) -> bool {
    let words = words(name);
    is_secret_name(name)
        && words.iter().any(|w| {
            ["pass", "pwd"].contains(&w.as_str())
                || ["password", "passwd", "passphrase"]
                    .iter()
                    .any(|p| w.contains(p))
        })
}

/// Terminal escape sequences: CSI (`ESC [ ... final`), OSC (`ESC ] ... BEL|ST`, e.g. OSC 52, which
/// writes the clipboard), the 8-bit CSI and OSC introducers, and two-byte `ESC x` sequences.
static ESCAPE_SEQUENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\u{9b}[0-?]*[ -/]*[@-~]|\u{9d}[^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?",
    )
    .expect("static regex")
});

/// Removes what would drive a terminal from untrusted text, keeping it readable: escape
/// sequences go, a carriage return becomes a line break (so `safe\rEVIL` cannot overwrite a line
/// on screen), and every other control character (C0, DEL, C1, Unicode bidirectional overrides)
/// becomes U+FFFD. Newlines and tabs stay.
pub fn strip_control(text: &str) -> String {
    let without_sequences = if text.contains(['\x1b', '\u{9b}', '\u{9d}']) {
        ESCAPE_SEQUENCE.replace_all(text, "")
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    let cleaned = without_sequences.replace("\r\n", "\n");
    if !cleaned.chars().any(is_unsafe_char) {
        return cleaned;
    }
    cleaned
        .chars()
        .map(|c| match c {
            '\r' => '\n',
            c if is_unsafe_char(c) => '\u{fffd}',
            c => c,
        })
        .collect()
}

/// A character a terminal acts on rather than prints (newline and tab excepted).
pub fn is_unsafe_char(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// An identifier: a key, a variable name, a flag without its dashes.
const KEY: &str = r"[A-Za-z_][A-Za-z0-9_.\-]*";
/// A value: quoted, or up to the next separator.
const VALUE: &str = r#""[^"]*"|'[^']*'|[^\s,;&"'}]+"#;

/// A value replaced by [`REDACTED`], keeping its quotes.
fn redacted_like(value: &str) -> String {
    if value.starts_with('"') {
        format!("\"{REDACTED}\"")
    } else if value.starts_with('\'') {
        format!("'{REDACTED}'")
    } else {
        REDACTED.to_string()
    }
}

/// Rebuilds `prefix key separator value` with the value redacted when the key names a secret.
fn keep_or_redact(
    c: &Captures,
    key: usize,
    separator: usize,
    value: usize,
    prefix: &str,
) -> String {
    // An Authorization header is the header rule's: its value is a scheme and a credential.
    let header = matches!(
        c[key].to_ascii_lowercase().as_str(),
        "authorization" | "proxy-authorization"
    );
    if header || !is_secret_name(&c[key]) {
        return c[0].to_string();
    }
    format!(
        "{prefix}{}{}{}",
        &c[key],
        &c[separator],
        redacted_like(&c[value])
    )
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
    let whole = |_: &Captures| REDACTED.to_string();
    vec![
        // PEM private keys and PGP blocks, whole.
        rule(
            r"-----BEGIN ([A-Z0-9 ]*(?:PRIVATE|PGP|ENCRYPTED)[A-Z0-9 ]*)-----[\s\S]*?(?:-----END [A-Z0-9 ]*-----|$)",
            |c| {
                format!(
                    "-----BEGIN {}----- {REDACTED} -----END {}-----",
                    &c[1], &c[1]
                )
            },
        ),
        // Chat webhooks: the URL is the credential.
        rule(
            r"https://hooks\.slack\.com/(services|workflows|triggers)/[A-Za-z0-9/_\-]+",
            |c| format!("https://hooks.slack.com/{}/{REDACTED}", &c[1]),
        ),
        rule(
            r"https://((?:ptb\.|canary\.)?discord(?:app)?\.com)/api/webhooks/[0-9]+/[A-Za-z0-9_\-]+",
            |c| format!("https://{}/api/webhooks/{REDACTED}", &c[1]),
        ),
        // Authorization headers, whatever the scheme (`Token`, `Basic`, `Bearer`, none).
        rule(
            r#"(?i)\b((?:proxy-)?authorization)(["']?\s*[:=]\s*["']?)(?:(bearer|basic|token|digest|negotiate|apikey|sso-key|aws4-hmac-sha256)\s+)?([^\s"',;]+)"#,
            |c| match c.get(3) {
                Some(scheme) => format!("{}{}{} {REDACTED}", &c[1], &c[2], scheme.as_str()),
                None => format!("{}{}{REDACTED}", &c[1], &c[2]),
            },
        ),
        // Bearer and basic credentials elsewhere.
        rule(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]{8,}=*", |c| {
            format!("{} {REDACTED}", &c[1])
        }),
        // Credentials in URLs: scheme://user:password@host, the user possibly empty, the
        // password possibly holding `/`; `host:8080/path@x` is a port, not a password.
        rule(
            r"([a-zA-Z][a-zA-Z0-9+.\-]*://)([^\s:/@]*):([^\s@]+)@",
            |c| {
                if PORT_AND_PATH.is_match(&c[3]) {
                    c[0].to_string()
                } else {
                    format!("{}{}:{REDACTED}@", &c[1], &c[2])
                }
            },
        ),
        // A DSN whose user part is a key (Sentry: https://<key>@o1.ingest.sentry.io/1).
        rule(r"([a-zA-Z][a-zA-Z0-9+.\-]*://)[0-9a-fA-F]{20,}@", |c| {
            format!("{}{REDACTED}@", &c[1])
        }),
        // JSON Web Tokens.
        rule(
            r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
            whole,
        ),
        // Cloud, forge and payment keys.
        rule(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", whole),
        rule(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b", whole),
        rule(r"\bgithub_pat_[A-Za-z0-9_]{20,}", whole),
        rule(r"\bglpat-[A-Za-z0-9_\-]{20,}", whole),
        rule(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}\b", whole),
        rule(r"\b[sr]k_(live|test)_[A-Za-z0-9]{16,}\b", whole),
        rule(r"\bsk-[A-Za-z0-9_\-]{20,}\b", whole),
        rule(r"\bAIza[0-9A-Za-z_\-]{35}\b", whole),
        rule(r"\bnpm_[A-Za-z0-9]{36}\b", whole),
        // Passwords on command lines of tools that take them glued or after a short flag:
        // `mysql -uroot -pX`, `redis-cli -a X`, `sshpass -p X`, `curl -u user:X`.
        rule(r"\b((?i:mysql\w*|mariadb\w*)\b[^\n]*?\s)-p([^\s]+)", |c| {
            format!("{}-p{REDACTED}", &c[1])
        }),
        rule(r"(?i)\b(redis-cli\b[^\n]*?\s-a\s+)(\S+)", |c| {
            format!("{}{REDACTED}", &c[1])
        }),
        rule(r"(?i)\b(sshpass\s+-p\s*)(\S+)", |c| {
            format!("{}{REDACTED}", &c[1])
        }),
        rule(
            r"\b((?i:curl)\b[^\n]*?\s(?:-u|--user)[\s=]+[^\s:]+):(\S+)",
            |c| format!("{}:{REDACTED}", &c[1]),
        ),
        // `--password X` (the value after a secret flag), also in a command line quoted as one
        // string (`runs "app --password X"`, `"--password X"`), and `"--password", "X"` (an
        // argument vector quoted as JSON). The quote that closes the command line is kept.
        rule(
            &format!(r#"(^|[\s"'])(--?{KEY})(\s+)([^\s\-][^\s]*)"#),
            |c| {
                if is_secret_name(&c[2]) {
                    let quote = c[1].trim();
                    let closing = if !quote.is_empty() && c[4].ends_with(quote) {
                        quote
                    } else {
                        ""
                    };
                    format!("{}{}{}{REDACTED}{closing}", &c[1], &c[2], &c[3])
                } else {
                    c[0].to_string()
                }
            },
        ),
        rule(&format!(r#""(--?{KEY})"(\s*,\s*)"([^"]*)""#), |c| {
            if is_secret_name(&c[1]) {
                format!("\"{}\"{}\"{REDACTED}\"", &c[1], &c[2])
            } else {
                c[0].to_string()
            }
        }),
        // An env entry quoted as JSON or YAML: {"name": "DB_PASSWORD", "value": "X"},
        // `- name: DB_PASSWORD` followed by `value: X`.
        rule(
            r#""name"(\s*:\s*)"([^"]*)"(\s*,\s*)"value"(\s*:\s*)"([^"]*)""#,
            |c| {
                if is_secret_name(&c[2]) {
                    format!(
                        "\"name\"{}\"{}\"{}\"value\"{}\"{REDACTED}\"",
                        &c[1], &c[2], &c[3], &c[4]
                    )
                } else {
                    c[0].to_string()
                }
            },
        ),
        rule(
            r#"(?m)(name:[ \t]*["']?)([^\s"']+)(["']?[ \t]*\n[ \t]*value:[ \t]*)(.+)$"#,
            |c| {
                if is_secret_name(&c[2]) {
                    format!("{}{}{}{}", &c[1], &c[2], &c[3], redacted_like(&c[4]))
                } else {
                    c[0].to_string()
                }
            },
        ),
        // NAME=value anywhere (env, query strings, connection strings: `AccountKey=`, `sig=`).
        rule(&format!(r#"\b({KEY})(\s*=\s*)({VALUE})"#), |c| {
            keep_or_redact(c, 1, 2, 3, "")
        }),
        // "name": "value" (JSON) and 'name': value.
        rule(&format!(r#"(["'])({KEY})(["']\s*:\s*)({VALUE})"#), |c| {
            keep_or_redact(c, 2, 3, 4, &c[1])
        }),
        // name: value at the start of a line (YAML, headers, structured logs).
        rule(
            &format!(r#"(?m)^([ \t]*-?[ \t]*)({KEY})([ \t]*:[ \t]+)({VALUE})"#),
            |c| keep_or_redact(c, 2, 3, 4, &c[1]),
        ),
        // password: value anywhere in a line. Only password names: prose such as "failed to
        // fetch token: unexpected status" or "Secret db-credentials: does it exist" stays.
        rule(&format!(r#"\b({KEY})([ \t]*:[ \t]+)({VALUE})"#), |c| {
            if is_password_name(&c[1]) {
                keep_or_redact(c, 1, 2, 3, "")
            } else {
                c[0].to_string()
            }
        }),
    ]
});

static PORT_AND_PATH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[0-9]+(?:[/?#]|$)").expect("static regex"));

/// A YAML key opening a block (`password: |`, `credentials:`): its value is the indented lines
/// that follow.
static BLOCK_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r#"^([ \t]*(?:-[ \t]+)?)["']?({KEY})["']?[ \t]*:[ \t]*(?:[|>][+-]?[0-9]?)?[ \t]*$"#
    ))
    .expect("static regex")
});

/// Redacts the indented block under a YAML key that names a secret, line by line.
fn redact_yaml_blocks(text: &str) -> String {
    if !text.contains(':') || !text.contains('\n') {
        return text.to_string();
    }
    let indent = |line: &str| line.len() - line.trim_start_matches([' ', '\t']).len();
    let mut out: Vec<String> = Vec::new();
    let mut block: Option<usize> = None;
    for line in text.split('\n') {
        if let Some(key_indent) = block {
            if line.trim().is_empty() || indent(line) > key_indent {
                if !line.trim().is_empty() {
                    out.push(format!("{}{REDACTED}", &line[..indent(line)]));
                } else {
                    out.push(line.to_string());
                }
                continue;
            }
            block = None;
        }
        if let Some(c) = BLOCK_KEY.captures(line)
            && is_secret_name(&c[2])
        {
            block = Some(c[1].len().max(indent(line)));
        }
        out.push(line.to_string());
    }
    out.join("\n")
}

/// Tenant text for one line of a message (a chat notification, an alert's evidence): redacted,
/// whitespace collapsed, and cut to `max_chars` with an ellipsis.
pub fn one_line(text: &str, max_chars: usize) -> String {
    let text = redact_text(text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if text.chars().count() <= max_chars {
        return text;
    }
    format!("{}…", text.chars().take(max_chars).collect::<String>())
}

/// Redacts secrets in free text, after removing terminal control sequences.
pub fn redact_text(text: &str) -> String {
    let mut out = redact_yaml_blocks(&strip_control(text));
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

/// Redacts every string below a secret key, keeping the structure.
fn redact_all_strings(value: &mut Value) {
    match value {
        Value::String(s) => *s = REDACTED.into(),
        Value::Array(items) => items.iter_mut().for_each(redact_all_strings),
        Value::Object(map) => map.values_mut().for_each(redact_all_strings),
        _ => {}
    }
}

/// Tools whose password follows a short flag as the next argument.
const PASSWORD_NEXT_FLAGS: &[(&str, &str)] = &[("redis-cli", "-a"), ("sshpass", "-p")];

/// An argument vector (`command`, `args`): the argument after a secret flag (`--password X`,
/// `redis-cli -a X`) and a glued MySQL password (`-pX`) are redacted.
fn redact_argv(items: &mut [Value]) {
    let program = |v: &Value| {
        v.as_str()
            .map(|s| s.rsplit('/').next().unwrap_or(s).to_ascii_lowercase())
    };
    let mysql = items
        .iter()
        .filter_map(program)
        .any(|p| p.starts_with("mysql") || p.starts_with("mariadb"));
    for i in 0..items.len() {
        let Some(arg) = items[i].as_str().map(str::to_string) else {
            continue;
        };
        if mysql && arg.len() > 2 && arg.starts_with("-p") && !arg.starts_with("-p=") {
            items[i] = Value::String(format!("-p{REDACTED}"));
            continue;
        }
        let next_is_secret = (arg.starts_with('-') && !arg.contains('=') && is_secret_name(&arg))
            || PASSWORD_NEXT_FLAGS.iter().any(|(tool, flag)| {
                arg == *flag && items[..i].iter().filter_map(program).any(|p| p == *tool)
            });
        if next_is_secret
            && let Some(Value::String(next)) = items.get_mut(i + 1)
            && !next.starts_with('-')
        {
            *next = REDACTED.into();
        }
    }
}

/// Redacts secrets in JSON: everything below a secret-looking key, `{"name": "X_TOKEN", "value":
/// ...}` env entries, argument vectors, and every string through [`redact_text`].
pub fn redact_json(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let env_secret = map
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(is_secret_name);
            for (key, child) in map.iter_mut() {
                if is_secret_name(key) {
                    redact_all_strings(child);
                } else if env_secret && key == "value" && child.is_string() {
                    *child = Value::String(REDACTED.into());
                } else {
                    redact_json(child);
                }
            }
        }
        Value::Array(items) => {
            if items.iter().all(Value::is_string) {
                redact_argv(items);
            }
            items.iter_mut().for_each(redact_json);
        }
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
mod tests;

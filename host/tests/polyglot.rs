//! Plugins written in Python (`plugins/log-signatures`, componentize-py) and JavaScript
//! (`plugins/business-hours`, componentize-js) through the real host, and plugins referenced by
//! URL with a sha256.
//!
//! The components are built by `plugins/build-polyglot.sh` (pinned toolchains from PyPI and npm,
//! installed into the user's cache folder) the first time a test needs them, and again only when
//! their sources change; the script takes a file lock, so parallel test processes build once.
//! Each component weighs 12-18 MB and takes seconds to compile: every test shares one runtime
//! whose compile cache (kept beside the components) is warmed once.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Event;
use serde_json::{Value, json};
use sre_e2e::fixtures::PodBuilder;
use sre_operator::cluster::{
    Cluster, DumpCluster, Involved, LogRequest, Logs, Object, ResourceKind, Result as ClusterResult,
};
use sre_operator::plugin::{
    CallError, ClusterAccess, DecideContext, Decision, LoadedPlugin, ManifestEntry, PluginSet,
    PluginSource, Runtime, World, parse_manifest, sha256_hex,
};

const LOG_SIGNATURES: &str = "log_signatures.wasm";
const BUSINESS_HOURS: &str = "business_hours.wasm";

/// The folder the components are built into, built (or found up to date) once per process.
fn components() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        // CARGO_TARGET_TMPDIR is <target>/tmp: the components go beside it, in the target dir.
        let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("polyglot-plugins");
        let output = Command::new("bash")
            .arg(workspace.join("plugins/build-polyglot.sh"))
            .arg("--out")
            .arg(&out)
            .output()
            .expect("running plugins/build-polyglot.sh");
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "plugins/build-polyglot.sh failed ({}):\n{log}",
            output.status
        );
        eprintln!("{log}");
        out
    })
}

fn component(file: &str) -> &'static [u8] {
    static BYTES: OnceLock<BTreeMap<&'static str, Vec<u8>>> = OnceLock::new();
    BYTES.get_or_init(|| {
        [LOG_SIGNATURES, BUSINESS_HOURS]
            .into_iter()
            .map(|f| (f, std::fs::read(components().join(f)).unwrap()))
            .collect()
    })[file]
        .as_slice()
}

fn rust_component(file: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("SRE_OPERATOR_WASM_DIR")).join(file)).unwrap()
}

/// One runtime for the whole binary. Its compile cache lives beside the components (entries are
/// keyed by digest and engine, so reuse is safe) and is warmed with both, in parallel: each is
/// compiled once per change, not once per test or per run.
fn runtime() -> Arc<Runtime> {
    static SHARED: OnceLock<Arc<Runtime>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let cache = components().join("compiled");
            let current: Vec<String> = [
                component(LOG_SIGNATURES).to_vec(),
                component(BUSINESS_HOURS).to_vec(),
                rust_component("k8s_reader.wasm"),
            ]
            .iter()
            .map(|b| sha256_hex(b))
            .collect();
            // Artifacts of components since rebuilt are 50-100 MB each: drop them.
            if let Ok(entries) = std::fs::read_dir(&cache) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if name.ends_with(".cwasm") && !current.iter().any(|d| name.starts_with(d)) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
            let runtime = Runtime::new(Some(cache)).unwrap();
            std::thread::scope(|s| {
                for file in [LOG_SIGNATURES, BUSINESS_HOURS] {
                    let runtime = &runtime;
                    s.spawn(move || {
                        let bytes = component(file);
                        runtime.compile(bytes, &sha256_hex(bytes)).unwrap();
                    });
                }
            });
            runtime
        })
        .clone()
}

/// Forgets a downloaded component, so that the test sees the download happen.
fn forget_download(digest: &str) {
    let _ = std::fs::remove_file(
        components()
            .join("compiled/downloads")
            .join(format!("{digest}.wasm")),
    );
}

fn entry(yaml: &str) -> ManifestEntry {
    let manifest = parse_manifest(&format!("plugins:\n  - {yaml}\n")).unwrap();
    manifest.plugins.into_iter().next().unwrap()
}

/// Loads one component with a manifest entry written inline. Guest code that prints must not run
/// on an async worker thread (WASI's sync bindings would block on the runtime): like
/// `PluginSet::load`, this loads on a thread of its own.
fn load(file: &str, yaml: &str) -> Result<LoadedPlugin, String> {
    let entry = entry(yaml);
    std::thread::scope(|s| {
        s.spawn(|| {
            runtime().load(PluginSource {
                entry: &entry,
                bytes: component(file),
            })
        })
        .join()
        .unwrap()
    })
}

fn log_signatures(yaml_extra: &str) -> Result<LoadedPlugin, String> {
    load(
        LOG_SIGNATURES,
        &format!("{{name: log-signatures, world: tool, file: x.wasm{yaml_extra}}}"),
    )
}

fn business_hours(settings: &Value, yaml_extra: &str) -> Result<LoadedPlugin, String> {
    load(
        BUSINESS_HOURS,
        &format!(
            "{{name: business-hours, world: policy-filter, file: x.wasm, settings: {settings}{yaml_extra}}}"
        ),
    )
}

fn dump_access(namespace: &str) -> ClusterAccess {
    let dump = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dump");
    ClusterAccess::new(Arc::new(DumpCluster::load(dump).unwrap()), namespace)
}

/// A cluster whose every container logs the same text, and which holds nothing else.
struct LogOnly(String);

#[async_trait]
impl Cluster for LogOnly {
    fn source(&self) -> String {
        "a test cluster".into()
    }
    async fn get(
        &self,
        _: ResourceKind,
        _: Option<&str>,
        _: &str,
    ) -> ClusterResult<Option<Object>> {
        Ok(None)
    }
    async fn list(&self, _: ResourceKind, _: Option<&str>) -> ClusterResult<Vec<Object>> {
        Ok(Vec::new())
    }
    async fn logs(&self, request: &LogRequest) -> ClusterResult<Logs> {
        Ok(Logs {
            container: request.container.clone().unwrap_or_else(|| "app".into()),
            text: self.0.clone(),
            previous: request.previous,
            note: None,
        })
    }
    async fn events_for(&self, _: Involved<'_>) -> ClusterResult<Vec<Event>> {
        Ok(Vec::new())
    }
}

fn log_access(text: &str) -> ClusterAccess {
    ClusterAccess::new(Arc::new(LogOnly(text.to_string())), "default")
}

/// Calls a tool off the async executor, as `PluginSet::invoke` does.
async fn invoke(
    plugin: &Arc<LoadedPlugin>,
    tool: &str,
    args: Value,
    access: &ClusterAccess,
) -> Result<String, CallError> {
    let (plugin, tool, access) = (plugin.clone(), tool.to_string(), access.clone());
    tokio::task::spawn_blocking(move || plugin.invoke_tool(&tool, &args.to_string(), access))
        .await
        .unwrap()
}

fn matches(answer: &str) -> Vec<Value> {
    let answer: Value = serde_json::from_str(answer).unwrap();
    answer["matches"].as_array().unwrap().clone()
}

// ---------------------------------------------------------------------------------------------
// log-signatures (Python)

#[tokio::test(flavor = "multi_thread")]
async fn log_signatures_explains_the_crash_loop_and_the_oom_in_the_bundled_dump() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("k8s_reader.wasm"),
        rust_component("k8s_reader.wasm"),
    )
    .unwrap();
    std::fs::write(dir.path().join(LOG_SIGNATURES), component(LOG_SIGNATURES)).unwrap();
    std::fs::write(
        dir.path().join("plugins.yaml"),
        "plugins:\n  - {name: k8s-reader, world: tool, file: k8s_reader.wasm}\n  - {name: log-signatures, world: tool, file: log_signatures.wasm}\n",
    )
    .unwrap();
    let set = PluginSet::from_dir(&runtime(), dir.path()).unwrap();
    assert!(set.refusals().is_empty(), "{:?}", set.refusals());
    let tool = set.tool("match_log_signatures").unwrap();
    assert_eq!(tool.plugin.name, "log-signatures");
    assert_eq!(tool.parameters["required"], json!(["pod"]));
    assert_eq!(tool.parameters["properties"]["previous"]["default"], true);
    assert_eq!(tool.parameters["properties"]["lines"]["default"], 200);
    assert!(
        tool.description.contains("ECONNREFUSED"),
        "{}",
        tool.description
    );

    let default = dump_access("default");
    let answer = set
        .invoke(
            "match_log_signatures",
            &json!({"pod": "critical-app-7d4b9c6f5-h8x2m"}),
            default.clone(),
        )
        .await
        .unwrap();
    let parsed: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(parsed["pod"], "critical-app-7d4b9c6f5-h8x2m");
    assert_eq!(parsed["linesScanned"], 8);
    assert!(
        parsed["notes"][0]
            .as_str()
            .unwrap()
            .starts_with("a cluster dump holds only the current log"),
        "{parsed}"
    );
    assert_eq!(
        matches(&answer),
        [json!({
            "signature": "connection-refused",
            "evidence": "Error: Connection refused to redis:6379",
            "host": "redis",
            "port": 6379,
            "likelyCause": "Nothing accepts connections on redis:6379: the Service redis does not exist or has no ready endpoints, the target listens on another port, or it is still starting.",
            "nextCheck": "check_service(name=\"redis\")",
            "nextTool": {"name": "check_service", "arguments": {"name": "redis"}},
            "line": 8,
            "count": 4
        })]
    );
    // The suggested next check is a real call, and it finds the cause.
    let next = &matches(&answer)[0]["nextTool"];
    let service: Value = serde_json::from_str(
        &set.invoke(
            next["name"].as_str().unwrap(),
            &next["arguments"],
            default.clone(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(service["exists"], false);
    assert_eq!(service["similar"][0]["name"], "redis-master");

    let batch = dump_access("batch");
    let answer = set
        .invoke(
            "match_log_signatures",
            &json!({"pod": "report-worker-5b9d8c7f66-z7vqc", "previous": true, "lines": 50}),
            batch,
        )
        .await
        .unwrap();
    let found = matches(&answer);
    assert_eq!(found.len(), 1, "{answer}");
    assert_eq!(found[0]["signature"], "jvm-heap-settings");
    assert_eq!(found[0]["heap"], "768m");
    assert_eq!(found[0]["heapBytes"], 768u64 << 20);
    assert_eq!(found[0]["initialHeap"], "256m");
    assert_eq!(
        found[0]["evidence"],
        "Picked up JAVA_TOOL_OPTIONS: -Xms256m -Xmx768m"
    );
    assert!(
        found[0]["likelyCause"]
            .as_str()
            .unwrap()
            .contains("OOM-kills the process (exit code 137, reason OOMKilled)"),
        "{answer}"
    );
    assert_eq!(
        found[0]["nextTool"],
        json!({"name": "inspect_object", "arguments": {"kind": "Pod", "name": "report-worker-5b9d8c7f66-z7vqc"}})
    );

    // A healthy Pod: no match, and a summary that says so.
    let answer = set
        .invoke(
            "match_log_signatures",
            &json!({"pod": "redis-master-5f9c7b6d48-mx4lp", "previous": false}),
            default.clone(),
        )
        .await
        .unwrap();
    let parsed: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(parsed["matches"], json!([]));
    assert!(
        parsed["summary"]
            .as_str()
            .unwrap()
            .starts_with("no known failure signature in the last"),
        "{parsed}"
    );

    // Arguments: the host checks the schema; the plugin checks them again when called directly.
    let err = set
        .invoke(
            "match_log_signatures",
            &json!({"pod": "x", "lines": 0}),
            default.clone(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::InvalidArguments { plugin, .. } if plugin == "log-signatures"),
        "{err}"
    );
    let plugin = tool.plugin.clone();
    let err = invoke(&plugin, "match_log_signatures", json!({"pod": 5}), &default)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin log-signatures: invoke match_log_signatures: invalid arguments: `pod` (a non-empty string) is required"
    );
    let err = invoke(&plugin, "other", json!({}), &default)
        .await
        .unwrap_err();
    assert_eq!(err, CallError::UnknownTool("other".into()));
    let err = invoke(
        &plugin,
        "match_log_signatures",
        json!({"pod": "ghost"}),
        &default,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, CallError::Tool { plugin, .. } if plugin == "log-signatures"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("pod default/ghost is not in the dump"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn log_signatures_knows_the_catalogue_through_the_host() {
    let plugin = Arc::new(log_signatures("").unwrap());
    let log = "\
Picked up JAVA_TOOL_OPTIONS: -Xmx2g
Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space
panic: runtime error: invalid memory address or nil pointer dereference
Error: connect ECONNREFUSED 10.96.14.2:5432
Error: listen EADDRINUSE: address already in use :::3000
Traceback (most recent call last):
  File \"/app/main.py\", line 1, in <module>
ModuleNotFoundError: No module named 'psycopg2'
FATAL:  password authentication failed for user \"orders\"
ERROR 1045 (28000): Access denied for user 'shop'@'10.244.2.9' (using password: NO)
Get \"https://vault:8200/v1\": x509: certificate signed by unknown authority
dial tcp: lookup payments-db on 10.96.0.10:53: no such host
open /data/db/WiredTiger.lock: permission denied
exec /usr/local/bin/server: exec format error
exec: \"gunicorn\": executable file not found in $PATH
FATAL: environment variable DATABASE_URL is not set
Error: Connection refused to redis:6379
";
    let answer = invoke(
        &plugin,
        "match_log_signatures",
        json!({"pod": "api-0"}),
        &log_access(log),
    )
    .await
    .unwrap();
    let found = matches(&answer);
    let ids: Vec<&str> = found
        .iter()
        .map(|m| m["signature"].as_str().unwrap())
        .collect();
    // Newest first.
    assert_eq!(
        ids,
        [
            "connection-refused",
            "missing-env-var",
            "command-not-found",
            "exec-format-error",
            "permission-denied",
            "dns-resolution",
            "tls-certificate",
            "mysql-access-denied",
            "postgres-auth-failed",
            "python-module-not-found",
            "node-eaddrinuse",
            "node-econnrefused",
            "go-nil-pointer",
            "jvm-out-of-memory",
            "jvm-heap-settings",
        ]
    );
    let by_id: BTreeMap<&str, &Value> = ids.iter().copied().zip(found.iter()).collect();
    assert_eq!(by_id["jvm-heap-settings"]["heapBytes"], 2u64 << 30);
    assert_eq!(by_id["jvm-out-of-memory"]["kind"], "Java heap space");
    assert_eq!(by_id["node-econnrefused"]["host"], "10.96.14.2");
    assert_eq!(by_id["node-econnrefused"]["port"], 5432);
    assert_eq!(by_id["node-eaddrinuse"]["port"], 3000);
    assert_eq!(by_id["python-module-not-found"]["module"], "psycopg2");
    assert_eq!(by_id["postgres-auth-failed"]["user"], "orders");
    assert_eq!(by_id["mysql-access-denied"]["usingPassword"], "NO");
    assert_eq!(by_id["dns-resolution"]["host"], "payments-db");
    assert_eq!(
        by_id["dns-resolution"]["nextTool"],
        json!({"name": "check_service", "arguments": {"name": "payments-db"}})
    );
    assert_eq!(
        by_id["permission-denied"]["path"],
        "/data/db/WiredTiger.lock"
    );
    assert_eq!(by_id["command-not-found"]["path"], "gunicorn");
    assert_eq!(by_id["missing-env-var"]["name"], "DATABASE_URL");
    for m in &found {
        assert!(
            m["evidence"].as_str().is_some_and(|e| log.contains(e)),
            "{m}"
        );
        assert!(
            m["likelyCause"].as_str().is_some_and(|c| c.len() > 40),
            "{m}"
        );
        assert!(
            m["nextCheck"].as_str().is_some_and(|c| c.ends_with(')')),
            "{m}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn log_signatures_takes_extra_signatures_and_rejects_bad_ones_with_a_message() {
    let settings = json!({"extraSignatures": [{
        "id": "ledger-lock",
        "pattern": "could not obtain lock on (?P<table>\\w+)",
        "likelyCause": "Another job holds the {table} table.",
        "nextCheck": "list_events(kind=\"Pod\", name=\"{pod}\")"
    }]});
    let plugin = Arc::new(log_signatures(&format!(", settings: {settings}")).unwrap());
    let answer = invoke(
        &plugin,
        "match_log_signatures",
        json!({"pod": "ledger-0", "previous": false}),
        &log_access("ERROR could not obtain lock on invoices\n"),
    )
    .await
    .unwrap();
    assert_eq!(
        matches(&answer),
        [json!({
            "signature": "ledger-lock",
            "evidence": "ERROR could not obtain lock on invoices",
            "table": "invoices",
            "likelyCause": "Another job holds the invoices table.",
            "nextCheck": "list_events(kind=\"Pod\", name=\"ledger-0\")",
            "line": 1,
            "count": 1
        })]
    );

    let refused = |settings: Value| match log_signatures(&format!(", settings: {settings}")) {
        Ok(_) => panic!("{settings} was accepted"),
        Err(reason) => reason,
    };
    assert_eq!(
        refused(
            json!({"extraSignatures": [{"id": "bad", "pattern": "(unclosed", "likelyCause": "c", "nextCheck": "n"}]})
        ),
        "settings rejected: extraSignatures[0] (bad): pattern '(unclosed' is not a valid regular expression: missing ), unterminated subpattern at position 0"
    );
    assert_eq!(
        refused(
            json!({"extraSignatures": [{"id": "connection-refused", "pattern": "x", "likelyCause": "c", "nextCheck": "n"}]})
        ),
        "settings rejected: extraSignatures[0] (connection-refused): id connection-refused is already taken"
    );
    assert_eq!(
        refused(json!({"signatures": []})),
        "settings rejected: unknown setting(s) signatures; log-signatures takes extraSignatures"
    );
    assert_eq!(
        refused(json!({"extraSignatures": {"id": "x"}})),
        "settings rejected: extraSignatures must be a list"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_prints_while_it_loads_does_not_bring_down_an_async_caller() {
    // A pattern that can backtrack exponentially: configure warns about it on stderr. Loading
    // from an async fn (as the CLI and the operator do) used to panic in WASI's blocking write.
    let settings = json!({"extraSignatures": [{"id": "slow", "pattern": "^(\\w+\\s?)+$", "likelyCause": "c", "nextCheck": "n"}]});
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(LOG_SIGNATURES), component(LOG_SIGNATURES)).unwrap();
    std::fs::write(
        dir.path().join("plugins.yaml"),
        format!("plugins:\n  - {{name: log-signatures, world: tool, file: {LOG_SIGNATURES}, settings: {settings}}}\n"),
    )
    .unwrap();
    let set = PluginSet::from_dir(&runtime(), dir.path()).unwrap();
    assert!(set.refusals().is_empty(), "{:?}", set.refusals());
    assert!(set.tool("match_log_signatures").is_some());
}

// ---------------------------------------------------------------------------------------------
// business-hours (JavaScript)

fn hours_settings() -> Value {
    json!({
        "timezoneOffsetMinutes": 60,
        "tiers": {
            "production": {
                "namespaces": ["production", "billing"],
                "window": {"days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "from": "08:00", "to": "18:00"},
                "outside": "investigate"
            },
            "dev": {
                "label": "tier=dev",
                "window": {"days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "from": "08:00", "to": "18:00"},
                "outside": "skip"
            },
            "batch": {
                "namespaces": ["batch"],
                "window": {"days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], "from": "22:00", "to": "06:00"}
            }
        },
        "defaultTier": "dev"
    })
}

/// A Pod in `namespace`, as the JSON a policy-filter plugin receives.
fn pod_in(namespace: &str) -> String {
    PodBuilder::new("p-0")
        .namespace(namespace)
        .json()
        .to_string()
}

fn at(now: &str, namespace: Option<Value>) -> DecideContext {
    DecideContext {
        policy: "default".into(),
        namespace: namespace.map(|n| n.to_string()),
        now: now.into(),
    }
}

const CRASH: &str = r#"{"class":"CrashLoopBackOff","container":"app"}"#;

#[test]
fn business_hours_decides_by_tier_and_time_window() {
    let filter = business_hours(&hours_settings(), "").unwrap();
    assert_eq!(filter.world, World::PolicyFilter);
    let decide = |namespace: &str, ns_object: Option<Value>, now: &str| {
        filter
            .decide(&pod_in(namespace), CRASH, &at(now, ns_object))
            .unwrap()
    };
    let dev_ns = || Some(json!({"metadata": {"name": "team-a", "labels": {"tier": "dev"}}}));
    // 2026-11-25 is a Wednesday; 07:30Z is 08:30 at UTC+01:00.
    assert_eq!(
        decide("team-a", dev_ns(), "2026-11-25T07:30:00Z"),
        Decision::Investigate
    );
    assert_eq!(
        decide("team-a", dev_ns(), "2026-11-25T17:15:00Z"),
        Decision::Skip(
            "business-hours: namespace team-a has the label tier=dev of tier dev; tier dev is investigated Mon-Fri 08:00-18:00 UTC+01:00 and it is Wed 18:15 UTC+01:00".into()
        )
    );
    // Saturday morning.
    assert_eq!(
        decide("team-a", dev_ns(), "2026-11-28T09:00:00Z"),
        Decision::Skip(
            "business-hours: namespace team-a has the label tier=dev of tier dev; tier dev is investigated Mon-Fri 08:00-18:00 UTC+01:00 and it is Sat 10:00 UTC+01:00".into()
        )
    );
    // Production outside its window: still investigated.
    assert_eq!(
        decide("production", None, "2026-11-28T02:00:00Z"),
        Decision::Investigate
    );
    // A namespace no tier names falls into the default tier; its labels are unknown here.
    assert_eq!(
        decide("web", None, "2026-11-29T12:00:00+01:00"),
        Decision::Skip(
            "business-hours: namespace web is in no tier, so in the default tier dev; tier dev is investigated Mon-Fri 08:00-18:00 UTC+01:00 and it is Sun 12:00 UTC+01:00".into()
        )
    );
    // An overnight window: Tue 23:30 and Wed 05:59 are in, Wed 06:00 is out.
    assert_eq!(
        decide("batch", None, "2026-11-24T22:30:00Z"),
        Decision::Investigate
    );
    assert_eq!(
        decide("batch", None, "2026-11-25T04:59:00Z"),
        Decision::Investigate
    );
    assert_eq!(
        decide("batch", None, "2026-11-25T05:00:00Z"),
        Decision::Skip(
            "business-hours: namespace batch is listed in tier batch; tier batch is investigated Mon-Sun 22:00-06:00 UTC+01:00 and it is Wed 06:00 UTC+01:00".into()
        )
    );
    // The plugin reads the host's clock only: an unreadable `now` investigates (and says so on
    // stderr, which the host logs).
    assert_eq!(
        decide("team-a", dev_ns(), "yesterday"),
        Decision::Investigate
    );
}

#[test]
fn business_hours_rejects_bad_settings_with_a_message() {
    let refused = |settings: Value| match business_hours(&settings, "") {
        Ok(_) => panic!("{settings} was accepted"),
        Err(reason) => reason,
    };
    let mut s = hours_settings();
    s["tiers"]["dev"]["window"]["from"] = json!("8am");
    assert_eq!(
        refused(s),
        "settings rejected: tiers.dev.window.from: \"8am\" is not a time like 08:00"
    );
    let mut s = hours_settings();
    s["tiers"]["dev"]["window"]["days"] = json!(["Mon", "Funday"]);
    assert_eq!(
        refused(s),
        "settings rejected: tiers.dev.window.days: \"Funday\" is not one of Mon, Tue, Wed, Thu, Fri, Sat, Sun"
    );
    let mut s = hours_settings();
    s["tiers"]["production"]["outside"] = json!("maybe");
    assert_eq!(
        refused(s),
        "settings rejected: tiers.production.outside: \"maybe\" must be \"skip\" or \"investigate\""
    );
    let mut s = hours_settings();
    s["defaultTier"] = json!("gold");
    assert_eq!(
        refused(s),
        "settings rejected: defaultTier: \"gold\" is not one of the tiers (batch, dev, production)"
    );
    let mut s = hours_settings();
    s["tiers"]["batch"]["namespaces"] = json!(["billing"]);
    assert_eq!(
        refused(s),
        "settings rejected: tiers.production.namespaces: billing is already in tier batch"
    );
    assert_eq!(
        refused(json!({"timezoneOffsetMinutes": 1000, "tiers": {}})),
        "settings rejected: timezoneOffsetMinutes: 1000 must be a whole number of minutes from -840 to 840"
    );
    assert_eq!(
        refused(json!({})),
        "settings rejected: tiers must be an object with at least one tier, like {\"dev\": {\"namespaces\": [...], \"window\": {...}}}"
    );
}

// ---------------------------------------------------------------------------------------------
// Limits: the same memory cap, deadline and output cap as for Rust plugins.

#[tokio::test(flavor = "multi_thread")]
async fn limits_bind_python_and_javascript_plugins_as_they_bind_rust_ones() {
    // Memory: 48 MiB of arguments cannot be copied into a plugin capped at 64 MiB with its
    // interpreter already there. The call fails; the next one, on a fresh instance, succeeds.
    let python = Arc::new(log_signatures(", limits: {memory: 64Mi}").unwrap());
    let access = log_access("Error: Connection refused to redis:6379\n");
    let huge = json!({"pod": "x".repeat(48 << 20)});
    let err = invoke(&python, "match_log_signatures", huge, &access)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CallError::Memory {
            plugin: "log-signatures".into(),
            call: "invoke match_log_signatures".into(),
            limit: 64 << 20
        }
    );
    invoke(
        &python,
        "match_log_signatures",
        json!({"pod": "x"}),
        &access,
    )
    .await
    .unwrap();
    // Too little memory for the interpreter itself: refused when it loads, with the reason.
    let reason = match log_signatures(", limits: {memory: 4Mi}") {
        Ok(_) => panic!("loaded with 4Mi"),
        Err(reason) => reason,
    };
    assert_eq!(
        reason,
        "plugin log-signatures: configure hit its memory limit of 4194304 bytes"
    );

    // Deadline: a settings pattern that backtracks exponentially on a hostile log line.
    let evil = json!({"extraSignatures": [{"id": "evil", "pattern": "^(a+)+$", "likelyCause": "c", "nextCheck": "n"}]});
    let python = Arc::new(
        log_signatures(&format!(", limits: {{timeout: 300ms}}, settings: {evil}")).unwrap(),
    );
    let started = std::time::Instant::now();
    let err = invoke(
        &python,
        "match_log_signatures",
        json!({"pod": "x"}),
        &log_access(&format!("{}!\n", "a".repeat(40))),
    )
    .await
    .unwrap_err();
    assert_eq!(
        err,
        CallError::Deadline {
            plugin: "log-signatures".into(),
            call: "invoke match_log_signatures".into(),
            limit: Duration::from_millis(300),
            waiting_on: None,
        }
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Output: a long answer over a 1 KiB cap.
    let python = Arc::new(log_signatures(", limits: {output: 1Ki}").unwrap());
    let err = invoke(
        &python,
        "match_log_signatures",
        json!({"pod": "x"}),
        &log_access("Error: Connection refused to redis:6379\nopen /data: permission denied\n"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, CallError::Output { plugin, limit: 1024, .. } if plugin == "log-signatures"),
        "{err}"
    );

    // JavaScript: a Pod of 48 MiB cannot be copied into 32 MiB...
    let js = business_hours(&hours_settings(), ", limits: {memory: 32Mi}").unwrap();
    let fat_pod = json!({"metadata": {"name": "p", "namespace": "team-a", "annotations": {"blob": "x".repeat(48 << 20)}}}).to_string();
    let err = js
        .decide(&fat_pod, CRASH, &at("2026-11-25T10:00:00Z", None))
        .unwrap_err();
    assert_eq!(
        err,
        CallError::Memory {
            plugin: "business-hours".into(),
            call: "decide".into(),
            limit: 32 << 20
        }
    );
    assert_eq!(
        js.decide(
            &pod_in("production"),
            CRASH,
            &at("2026-11-25T10:00:00Z", None)
        )
        .unwrap(),
        Decision::Investigate
    );
    // ...and parsing one with 1.2 million labels (about 70 MB; 0.7-1.5 s here) runs past a
    // 200 ms deadline, whatever else the machine is doing.
    let js = business_hours(&hours_settings(), ", limits: {memory: 1Gi, timeout: 200ms}").unwrap();
    let labels: Vec<String> = (0..1_200_000)
        .map(|i| format!("\"k{i}\":\"{}\"", "v".repeat(40)))
        .collect();
    let big_pod = format!(
        "{{\"metadata\":{{\"name\":\"p\",\"namespace\":\"team-a\",\"labels\":{{{}}}}}}}",
        labels.join(",")
    );
    drop(labels);
    assert!(big_pod.len() > 60 << 20, "{}", big_pod.len());
    let started = std::time::Instant::now();
    let err = js
        .decide(&big_pod, CRASH, &at("2026-11-25T10:00:00Z", None))
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        err,
        CallError::Deadline {
            plugin: "business-hours".into(),
            call: "decide".into(),
            limit: Duration::from_millis(200),
            waiting_on: None,
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Plugins referenced by URL

/// A loopback HTTP/1.1 server: `GET /<name>` answers the bytes registered under that name (or
/// 404) and counts the requests. Stops when dropped.
struct Server {
    port: u16,
    hits: Arc<Mutex<BTreeMap<String, usize>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(files: BTreeMap<String, Vec<u8>>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (hits2, stop2) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .trim_start_matches('/')
                    .to_string();
                *hits2.lock().unwrap().entry(path.clone()).or_default() += 1;
                let _ = match (path.as_str(), files.get(&path)) {
                    // Claims a body larger than any plugin may be, and sends none.
                    ("huge.wasm", _) => stream.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\nConnection: close\r\n\r\n",
                    ),
                    (_, Some(body)) => stream
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/wasm\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .and_then(|()| stream.write_all(body)),
                    (_, None) => stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    ),
                };
            }
        });
        Server {
            port,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    fn hits(&self, name: &str) -> usize {
        self.hits.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// A loopback port that nothing listens on.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn refusal<'a>(set: &'a PluginSet, plugin: &str) -> &'a str {
    &set.refusals()
        .iter()
        .find(|r| r.plugin == plugin)
        .unwrap_or_else(|| panic!("{plugin} was not refused: {:?}", set.refusals()))
        .reason
}

#[tokio::test(flavor = "multi_thread")]
async fn url_plugins_are_fetched_once_verified_and_the_rest_load_whatever_happens() {
    let python = component(LOG_SIGNATURES);
    let digest = sha256_hex(python);
    forget_download(&digest);
    let wrong = sha256_hex(b"some other component");
    // Downloads are cached by digest: an entry naming the good digest would be served from the
    // cache whatever its URL, so the failing ones name another.
    let other = sha256_hex(b"yet another component");
    let server = Server::start(BTreeMap::from([(
        LOG_SIGNATURES.to_string(),
        python.to_vec(),
    )]));
    let down = closed_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("k8s_reader.wasm"),
        rust_component("k8s_reader.wasm"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("plugins.yaml"),
        format!(
            "plugins:
  - {{name: log-signatures, world: tool, url: '{good}', sha256: {digest}}}
  - {{name: tampered, world: tool, url: '{good}', sha256: {wrong}}}
  - {{name: unreachable, world: tool, url: 'http://127.0.0.1:{down}/plugin.wasm', sha256: {other}}}
  - {{name: missing, world: tool, url: '{missing}', sha256: {other}}}
  - {{name: oversized, world: tool, url: '{huge}', sha256: {other}}}
  - {{name: k8s-reader, world: tool, file: k8s_reader.wasm}}
",
            good = server.url(LOG_SIGNATURES),
            missing = server.url("nope.wasm"),
            huge = server.url("huge.wasm"),
        ),
    )
    .unwrap();

    let set = PluginSet::from_dir(&runtime(), dir.path()).unwrap();
    let loaded: Vec<&str> = set.plugins().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        loaded,
        ["log-signatures", "k8s-reader"],
        "{:?}",
        set.refusals()
    );
    assert_eq!(set.plugins()[0].digest, digest);
    assert_eq!(
        refusal(&set, "tampered"),
        format!(
            "sha256 mismatch: the manifest says {wrong}, {} served {digest} ({} bytes); refusing it",
            server.url(LOG_SIGNATURES),
            python.len()
        )
    );
    let unreachable = refusal(&set, "unreachable");
    assert!(
        unreachable.starts_with(&format!(
            "cannot fetch http://127.0.0.1:{down}/plugin.wasm: "
        )) && unreachable.contains("Connection refused"),
        "{unreachable}"
    );
    assert_eq!(
        refusal(&set, "missing"),
        format!(
            "cannot fetch {}: the server answered 404 Not Found",
            server.url("nope.wasm")
        )
    );
    assert_eq!(
        refusal(&set, "oversized"),
        format!(
            "cannot fetch {}: it is 1073741824 bytes, over the download limit of 67108864 bytes",
            server.url("huge.wasm")
        )
    );
    assert_eq!(
        server.hits(LOG_SIGNATURES),
        2,
        "the good entry and the tampered one"
    );

    // The downloaded plugin works like any other.
    let answer = set
        .invoke(
            "match_log_signatures",
            &json!({"pod": "critical-app-7d4b9c6f5-q9w4t"}),
            dump_access("default"),
        )
        .await
        .unwrap();
    assert_eq!(matches(&answer)[0]["signature"], "connection-refused");

    // Loading again (a restart, a reload) reads the verified bytes from the cache: with the
    // server gone, the good entry still loads; the tampered one, never cached, cannot.
    drop(server);
    let again = PluginSet::from_dir(&runtime(), dir.path()).unwrap();
    let loaded: Vec<&str> = again.plugins().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(loaded, ["log-signatures", "k8s-reader"]);
    assert!(
        refusal(&again, "tampered").starts_with("cannot fetch"),
        "{:?}",
        again.refusals()
    );
}

#[test]
fn file_urls_load_and_malformed_url_entries_are_manifest_errors_naming_the_plugin() {
    let js = component(BUSINESS_HOURS);
    forget_download(&sha256_hex(js));
    let source = tempfile::tempdir().unwrap();
    let path = source.path().join("business hours.wasm");
    std::fs::write(&path, js).unwrap();
    let url = reqwest_free_file_url(&path);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("plugins.yaml"),
        format!(
            "plugins:\n  - {{name: business-hours, world: policy-filter, url: '{url}', sha256: {}, settings: {}}}\n",
            sha256_hex(js),
            hours_settings()
        ),
    )
    .unwrap();
    let set = PluginSet::from_dir(&runtime(), dir.path()).unwrap();
    assert!(set.refusals().is_empty(), "{:?}", set.refusals());
    let filter = set.by_world(World::PolicyFilter).next().unwrap();
    assert_eq!(
        filter
            .decide(
                &pod_in("production"),
                CRASH,
                &at("2026-11-28T02:00:00Z", None)
            )
            .unwrap(),
        Decision::Investigate
    );

    let digest = sha256_hex(js);
    for (entry, message) in [
        (
            format!("{{name: both, world: tool, file: a.wasm, url: '{url}', sha256: {digest}}}"),
            "plugin both: give one of file, url and builtin, not several".to_string(),
        ),
        (
            format!("{{name: unsigned, world: tool, url: '{url}'}}"),
            "plugin unsigned: url needs a sha256 (the component's digest, as `sha256sum` prints it) so the download can be verified".to_string(),
        ),
        (
            "{name: nowhere, world: tool}".to_string(),
            "plugin nowhere: needs a file (in the plugin directory), a url (with its sha256) or a builtin (a plugin the operator embeds)".to_string(),
        ),
        (
            format!("{{name: plain, world: tool, url: 'http://plugins.example.com/a.wasm', sha256: {digest}}}"),
            "plugin plain: url \"http://plugins.example.com/a.wasm\" must use https (http:// is accepted for loopback addresses only)".to_string(),
        ),
        (
            "{name: short, world: tool, url: 'https://plugins.example.com/a.wasm', sha256: abc123}".to_string(),
            "plugin short: sha256 \"abc123\" is not a SHA-256 digest (64 hex digits, as `sha256sum` prints)".to_string(),
        ),
    ] {
        std::fs::write(dir.path().join("plugins.yaml"), format!("plugins:\n  - {entry}\n")).unwrap();
        let err = PluginSet::from_dir(&runtime(), dir.path()).err().unwrap();
        assert_eq!(
            err,
            format!("{}: {message}", dir.path().join("plugins.yaml").display())
        );
    }
}

/// `file://` plus the absolute path, spaces escaped, as a browser or `curl` would write it.
fn reqwest_free_file_url(path: &Path) -> String {
    format!("file://{}", path.display().to_string().replace(' ', "%20"))
}

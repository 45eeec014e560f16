//! The plugin runtime with real compiled components: the built-in plugins on the bundled dump,
//! and a deliberately hostile component against every limit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use sre_operator::cluster::DumpCluster;
use sre_operator::plugin::{
    CallError, ClusterAccess, DecideContext, Decision, PluginRegistry, PluginSet, Review,
    ReviewContext, Runtime, World, sha256_hex,
};

fn wasm(file: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("SRE_OPERATOR_WASM_DIR")).join(file)).unwrap()
}

fn fixture_access(namespace: &str) -> ClusterAccess {
    let dump = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dump");
    ClusterAccess::new(Arc::new(DumpCluster::load(dump).unwrap()), namespace)
}

fn runtime() -> Arc<Runtime> {
    Runtime::new(None).unwrap()
}

/// A plugin directory holding the given files and manifest.
fn plugin_dir(files: &[(&str, Vec<u8>)], manifest: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    std::fs::write(dir.path().join("plugins.yaml"), manifest).unwrap();
    dir
}

async fn call(
    set: &PluginSet,
    tool: &str,
    args: Value,
    access: &ClusterAccess,
) -> Result<String, CallError> {
    set.invoke(tool, &args, access.clone()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_built_in_tools_answer_from_the_bundled_dump() {
    let set = PluginSet::builtin(&runtime());
    assert!(set.refusals().is_empty(), "{:?}", set.refusals());
    let tools: Vec<&str> = set.tools().map(|t| t.name.as_str()).collect();
    assert_eq!(
        tools,
        [
            "check_network_policies",
            "check_service",
            "fetch_logs",
            "get_resource_usage",
            "inspect_object",
            "list_events",
            "list_nodes_capacity",
            "rollout_history"
        ]
    );

    let default = fixture_access("default");
    let logs = call(
        &set,
        "fetch_logs",
        json!({"pod": "critical-app-7d4b9c6f5-h8x2m", "previous": true}),
        &default,
    )
    .await
    .unwrap();
    assert!(logs.contains("Connection refused to redis:6379"), "{logs}");
    assert!(
        logs.starts_with("# note: a cluster dump holds only the current log"),
        "{logs}"
    );
    let short = call(
        &set,
        "fetch_logs",
        json!({"pod": "critical-app-7d4b9c6f5-h8x2m", "lines": 3}),
        &default,
    )
    .await
    .unwrap();
    assert_eq!(short.trim_end().lines().count(), 3, "{short}");

    let redis: Value = serde_json::from_str(
        &call(&set, "check_service", json!({"name": "redis"}), &default)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(redis["exists"], false);
    assert_eq!(redis["similar"][0]["name"], "redis-master");
    assert_eq!(redis["similar"][0]["ports"][0]["port"], 6379);
    let master: Value = serde_json::from_str(
        &call(
            &set,
            "check_service",
            json!({"name": "redis-master"}),
            &default,
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(master["exists"], true);
    assert_eq!(master["readyEndpoints"], 1);

    let production = fixture_access("production");
    let deployment: Value = serde_json::from_str(
        &call(
            &set,
            "inspect_object",
            json!({"kind": "deploy", "name": "payment"}),
            &production,
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"],
        "3Gi"
    );
    let usage: Value = serde_json::from_str(
        &call(
            &set,
            "get_resource_usage",
            json!({"nodeName": "node-b"}),
            &production,
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        usage["free"]["memoryBytes"],
        7921060i64 * 1024 - 6522 * 1024 * 1024
    );
    assert_eq!(usage["free"]["memory"], "1.2Gi");
    let nodes: Value = serde_json::from_str(
        &call(&set, "list_nodes_capacity", json!({}), &production)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(nodes.as_array().unwrap().len(), 3);
    // kubectl cluster-info dump writes no NetworkPolicies: the tool says so, never "none".
    let policies = call(
        &set,
        "check_network_policies",
        json!({"pod": "critical-app-7d4b9c6f5-h8x2m", "service": "redis-master"}),
        &default,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        policies.contains("the dump holds no networkpolicies"),
        "{policies}"
    );
    let payment_pod = "payment-6d5f7c9b8-7xk2p";
    let events: Value = serde_json::from_str(
        &call(
            &set,
            "list_events",
            json!({"kind": "Pod", "name": payment_pod}),
            &production,
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"] == "FailedScheduling" && e["count"] == 7),
        "{events}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tool_arguments_are_checked_before_the_plugin_runs() {
    let set = PluginSet::builtin(&runtime());
    let access = fixture_access("default");
    let err = call(&set, "fetch_logs", json!({"container": "app"}), &access)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::InvalidArguments { plugin, .. } if plugin == "k8s-reader"),
        "{err}"
    );
    assert!(
        err.to_string().contains("\"pod\" is a required property"),
        "{err}"
    );
    let err = call(&set, "no_such_tool", json!({}), &access)
        .await
        .unwrap_err();
    assert_eq!(err, CallError::UnknownTool("no_such_tool".into()));
    let err = call(
        &set,
        "inspect_object",
        json!({"kind": "Deployment", "name": "nope"}),
        &access,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("not found: Deployment nope in namespace default"),
        "{err}"
    );
    let err = call(
        &set,
        "inspect_object",
        json!({"kind": "ClusterRole", "name": "admin"}),
        &access,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("unknown kind \"ClusterRole\""),
        "{err}"
    );
}

#[test]
fn patch_safety_and_policy_filter_run_as_components() {
    let set = PluginSet::builtin(&runtime());
    let safety = set.by_world(World::PatchFilter).next().unwrap();
    let target = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "critical-app"},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "REDIS_HOST", "value": "redis"}]}]}}}});
    let context = ReviewContext {
        namespace: "default".into(),
        pod: "p".into(),
        failure_class: "CrashLoopBackOff".into(),
        author: "rules".into(),
    };
    let good = json!([
        {"op": "test", "path": "/spec/template/spec/containers/0/env/0/value", "value": "redis"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/env/0/value", "value": "redis-master"}
    ]);
    assert_eq!(
        safety
            .review(&target.to_string(), &good.to_string(), &context)
            .unwrap(),
        Review::Allow
    );
    let evil = json!([{"op": "add", "path": "/spec/template/spec/hostNetwork", "value": true}]);
    match safety
        .review(&target.to_string(), &evil.to_string(), &context)
        .unwrap()
    {
        Review::Deny(reason) => assert!(reason.contains("host's network"), "{reason}"),
        other => panic!("{other:?}"),
    }

    let filter = set.by_world(World::PolicyFilter).next().unwrap();
    let ctx = DecideContext {
        policy: "p".into(),
        namespace: None,
        now: "2026-11-25T10:00:00Z".into(),
    };
    let pod = |restarts: u32| {
        json!({"metadata": {"name": "w"}, "status": {"containerStatuses": [{"name": "app", "restartCount": restarts}]}}).to_string()
    };
    let crash = json!({"class": "CrashLoopBackOff", "container": "app"}).to_string();
    assert_eq!(
        filter.decide(&pod(6), &crash, &ctx).unwrap(),
        Decision::Investigate
    );
    assert!(
        matches!(filter.decide(&pod(1), &crash, &ctx).unwrap(), Decision::Skip(r) if r.contains("below the threshold of 3"))
    );
}

/// A call a plugin's world does not have is a wrong-world error, not a trap of the plugin nor an
/// unknown tool.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_of_another_world_says_so() {
    let set = PluginSet::builtin(&runtime());
    let reader = set.by_world(World::Tool).next().unwrap();
    let safety = set.by_world(World::PatchFilter).next().unwrap();
    let review_context = ReviewContext {
        namespace: "default".into(),
        pod: "p".into(),
        failure_class: "CrashLoopBackOff".into(),
        author: "rules".into(),
    };
    let err = reader.review("{}", "[]", &review_context).unwrap_err();
    assert!(
        matches!(&err, CallError::WrongWorld { call, world: World::Tool, expected: World::PatchFilter, .. } if call == "review"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "plugin {}: review needs a patch-filter plugin, and this one is a tool",
            reader.name
        )
    );
    let decide_context = DecideContext {
        policy: "p".into(),
        namespace: None,
        now: "2026-11-25T10:00:00Z".into(),
    };
    let err = safety.decide("{}", "{}", &decide_context).unwrap_err();
    assert!(
        matches!(&err, CallError::WrongWorld { call, world: World::PatchFilter, expected: World::PolicyFilter, .. } if call == "decide"),
        "{err:?}"
    );
    let err = safety
        .invoke_tool("get_pod", "{}", fixture_access("production"))
        .unwrap_err();
    assert!(
        matches!(&err, CallError::WrongWorld { call, world: World::PatchFilter, expected: World::Tool, .. } if call == "invoke get_pod"),
        "{err:?}"
    );
}

/// A small dump with a Secret in `shop` and a Pod in `kube-system`, for scope tests.
fn scoped_dump() -> (tempfile::TempDir, ClusterAccess) {
    let dir = tempfile::tempdir().unwrap();
    for ns in ["shop", "kube-system"] {
        std::fs::create_dir(dir.path().join(ns)).unwrap();
        std::fs::write(
            dir.path().join(ns).join("pods.json"),
            json!({"kind": "PodList", "apiVersion": "v1", "items": [{"metadata": {"name": format!("{ns}-pod")}, "spec": {"containers": [{"name": "c"}]}}]}).to_string(),
        )
        .unwrap();
    }
    std::fs::write(
        dir.path().join("shop/secrets.json"),
        json!({"kind": "SecretList", "items": [{"metadata": {"name": "db-credentials"}, "data": {"password": "aHVudGVyMg=="}}]}).to_string(),
    )
    .unwrap();
    let access = ClusterAccess::new(Arc::new(DumpCluster::load(dir.path()).unwrap()), "shop");
    (dir, access)
}

const HOSTILE_MANIFEST: &str = "plugins:
  - name: hostile
    world: tool
    file: hostile_tool.wasm
    limits: {memory: 16Mi, timeout: 300ms, output: 64Ki}
  - name: k8s-reader
    world: tool
    file: k8s_reader.wasm
";

fn hostile_set() -> (tempfile::TempDir, PluginSet) {
    let dir = plugin_dir(
        &[
            ("hostile_tool.wasm", wasm("hostile_tool.wasm")),
            ("k8s_reader.wasm", wasm("k8s_reader.wasm")),
        ],
        HOSTILE_MANIFEST,
    );
    let set = PluginSet::from_dir(&runtime(), dir.path()).unwrap();
    assert!(set.refusals().is_empty(), "{:?}", set.refusals());
    (dir, set)
}

/// Runs a hostile tool, then checks that a good call of the same plugin still succeeds.
async fn hostile(tool: &str) -> Result<String, CallError> {
    let (_dir, set) = hostile_set();
    let (_dump, access) = scoped_dump();
    let result = call(&set, tool, json!({}), &access).await;
    still_serves(&set, &access).await;
    result
}

/// A good call of the hostile plugin and one of k8s-reader both still succeed.
async fn still_serves(set: &PluginSet, access: &ClusterAccess) {
    assert_eq!(
        call(set, "echo", json!({"still": "alive"}), access)
            .await
            .unwrap(),
        r#"{"still":"alive"}"#
    );
    call(
        set,
        "inspect_object",
        json!({"kind": "Pod", "name": "shop-pod"}),
        access,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_loop_hits_the_deadline() {
    let err = hostile("spin").await.unwrap_err();
    assert!(
        matches!(&err, CallError::Deadline { plugin, call, limit, waiting_on: None } if plugin == "hostile" && call == "invoke spin" && limit.as_millis() == 300),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "plugin hostile: invoke spin ran past its deadline of 300ms"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_bomb_hits_the_memory_limit() {
    let err = hostile("hog").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin hostile: invoke hog hit its memory limit of 16777216 bytes"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_fails_its_call() {
    let err = hostile("trap").await.unwrap_err();
    assert!(
        matches!(&err, CallError::Trap { call, .. } if call == "invoke trap"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_output_is_stopped() {
    let err = hostile("flood").await.unwrap_err();
    assert!(
        matches!(&err, CallError::Memory { .. } | CallError::Output { .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_stderr_is_stopped() {
    let err = hostile("chatter").await.unwrap_err();
    assert!(
        matches!(
            &err,
            CallError::Stdio {
                stream: "stderr",
                ..
            } | CallError::Deadline { .. }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_show_keys_only_and_other_namespaces_are_forbidden() {
    let secret = hostile("read_secret").await.unwrap();
    assert!(!secret.contains("aHVudGVyMg=="), "{secret}");
    assert!(
        secret.contains("\"password\":\"<redacted>\""),
        "keys stay visible: {secret}"
    );
    let err = hostile("other_namespace").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("Forbidden(\"namespace kube-system is outside this investigation"),
        "{err}"
    );
}

/// `leak_state` counts its calls in a static, in linear memory. Instances come from a pool
/// whose memories are reused, so each must be reset to the component's image: also after a call
/// that grew its memory to the limit, or trapped.
#[tokio::test(flavor = "multi_thread")]
async fn no_state_survives_between_calls() {
    let (_dir, set) = hostile_set();
    let (_dump, access) = scoped_dump();
    for _ in 0..3 {
        for _ in 0..5 {
            assert_eq!(
                call(&set, "leak_state", json!({}), &access).await.unwrap(),
                "1"
            );
        }
        call(&set, "hog", json!({}), &access).await.unwrap_err();
        assert_eq!(
            call(&set, "leak_state", json!({}), &access).await.unwrap(),
            "1"
        );
        call(&set, "trap", json!({}), &access).await.unwrap_err();
    }
    // Many at once, each on its own pooled instance.
    let calls: Vec<_> = (0..16)
        .map(|_| call(&set, "leak_state", json!({}), &access))
        .collect();
    for answer in futures::future::join_all(calls).await {
        assert_eq!(answer.unwrap(), "1");
    }
}

/// More callers than the instance pool has room for: the extra ones wait for a free sandbox
/// within their deadline, and every call succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn more_calls_than_the_pool_holds_wait_their_turn() {
    let (_dir, set) = hostile_set();
    let (_dump, access) = scoped_dump();
    let echo = set.tool("echo").unwrap().plugin.clone();
    // Callers on threads of their own, as the blocking pool runs them.
    tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            for i in 0..64 {
                let (echo, access) = (echo.clone(), access.clone());
                s.spawn(move || {
                    for j in 0..10 {
                        let args = json!({"caller": i, "call": j}).to_string();
                        assert_eq!(
                            echo.invoke_tool("echo", &args, access.clone()).unwrap(),
                            args
                        );
                    }
                });
            }
        })
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn output_over_the_cap_is_refused() {
    let manifest = "plugins:\n  - {name: hostile, world: tool, file: h.wasm, limits: {memory: 64Mi, output: 1Ki}}\n";
    let dir = plugin_dir(&[("h.wasm", wasm("hostile_tool.wasm"))], manifest);
    let set = PluginSet::from_dir(&runtime(), dir.path()).unwrap();
    let (_dump, access) = scoped_dump();
    let err = call(&set, "echo", json!({"pad": "x".repeat(2000)}), &access)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::Output { limit: 1024, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("over its output limit of 1024 bytes"),
        "{err}"
    );
}

#[test]
fn bad_plugins_are_refused_with_the_reason_and_the_rest_load() {
    let reader = wasm("k8s_reader.wasm");
    let digest = sha256_hex(&reader);
    let mut tampered = reader.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    let manifest = format!(
        "plugins:
  - {{name: good, world: tool, file: reader.wasm, sha256: {digest}}}
  - {{name: tampered, world: tool, file: tampered.wasm, sha256: {digest}}}
  - {{name: wrong-world, world: tool, file: safety.wasm}}
  - {{name: core-module, world: tool, file: core.wasm}}
  - {{name: not-wasm, world: tool, file: notes.txt}}
  - {{name: unknown-world, world: sidecar, file: reader.wasm}}
  - {{name: picky, world: tool, file: hostile.wasm, settings: {{reject: true}}}}
  - {{name: missing, world: tool, file: missing.wasm}}
  - {{name: escaping, world: tool, file: ../reader.wasm}}
  - {{name: greedy, world: tool, file: hostile.wasm, limits: {{memory: 64Gi}}}}
"
    );
    let dir = plugin_dir(
        &[
            ("reader.wasm", reader),
            ("tampered.wasm", tampered),
            ("safety.wasm", wasm("patch_safety.wasm")),
            ("core.wasm", b"\0asm\x01\0\0\0".to_vec()),
            ("notes.txt", b"hello".to_vec()),
            ("hostile.wasm", wasm("hostile_tool.wasm")),
        ],
        &manifest,
    );
    let set = PluginSet::from_dir(&runtime(), dir.path()).unwrap();
    let loaded: Vec<&str> = set.plugins().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(loaded, ["good"]);
    let reason = |name: &str| {
        set.refusals()
            .iter()
            .find(|r| r.plugin == name)
            .map(|r| r.reason.clone())
            .unwrap_or_default()
    };
    assert!(
        reason("tampered").starts_with("sha256 mismatch: the manifest says"),
        "{}",
        reason("tampered")
    );
    assert!(
        reason("wrong-world").contains("tool"),
        "{}",
        reason("wrong-world")
    );
    assert!(
        reason("core-module").contains("is a core WebAssembly module, not a component"),
        "{}",
        reason("core-module")
    );
    assert!(
        reason("not-wasm").contains("is not a WebAssembly component"),
        "{}",
        reason("not-wasm")
    );
    assert!(
        reason("unknown-world").contains("unknown world \"sidecar\""),
        "{}",
        reason("unknown-world")
    );
    assert_eq!(
        reason("picky"),
        "settings rejected: this plugin refuses settings that contain \"reject\""
    );
    assert!(
        reason("missing").contains("cannot read"),
        "{}",
        reason("missing")
    );
    assert!(
        reason("escaping").contains("must be a path inside the plugin directory"),
        "{}",
        reason("escaping")
    );
    assert!(
        reason("greedy").contains("limits.memory is above the host's ceiling"),
        "{}",
        reason("greedy")
    );
    assert_eq!(set.refusals().len(), 9);

    let broken = plugin_dir(&[], "plugins: [oops");
    let Err(err) = PluginSet::from_dir(&runtime(), broken.path()) else {
        panic!("a broken manifest loads")
    };
    assert!(err.contains("plugins.yaml:"), "{err}");
}

#[test]
fn compiled_components_are_cached_and_a_broken_cache_entry_is_recompiled() {
    let cache = tempfile::tempdir().unwrap();
    let dir = plugin_dir(
        &[("reader.wasm", wasm("k8s_reader.wasm"))],
        "plugins:\n  - {name: r, world: tool, file: reader.wasm}\n",
    );
    let first = Runtime::new(Some(cache.path().to_path_buf())).unwrap();
    assert!(
        PluginSet::from_dir(&first, dir.path())
            .unwrap()
            .refusals()
            .is_empty()
    );
    let artifacts: Vec<PathBuf> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    let name = artifacts[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert!(
        name.starts_with(&sha256_hex(&wasm("k8s_reader.wasm"))) && name.ends_with(".cwasm"),
        "{name}"
    );

    // A restart loads from the cache.
    let second = Runtime::new(Some(cache.path().to_path_buf())).unwrap();
    let set = PluginSet::from_dir(&second, dir.path()).unwrap();
    assert_eq!(set.tools().count(), 8);

    // Overwritten in place while the set above still runs from it.
    std::fs::write(&artifacts[0], b"garbage").unwrap();
    let third = Runtime::new(Some(cache.path().to_path_buf())).unwrap();
    let set = PluginSet::from_dir(&third, dir.path()).unwrap();
    assert!(
        set.refusals().is_empty(),
        "a broken cache entry is recompiled: {:?}",
        set.refusals()
    );
    assert!(
        std::fs::metadata(&artifacts[0]).unwrap().len() > 1000,
        "and replaced"
    );
}

/// Loads the hostile tool with `settings` (JSON) on `runtime`.
fn load_hostile(
    runtime: &Runtime,
    settings: &str,
) -> Result<sre_operator::plugin::LoadedPlugin, String> {
    let manifest = sre_operator::plugin::parse_manifest(&format!(
        "plugins:\n  - {{name: hostile, world: tool, file: h.wasm, settings: {settings}}}\n"
    ))
    .unwrap();
    runtime.load(sre_operator::plugin::PluginSource {
        entry: &manifest.plugins[0],
        bytes: &wasm("hostile_tool.wasm"),
    })
}

/// Waits (up to a minute) until `plugin`'s calls start from its configured snapshot.
fn wait_configured(plugin: &sre_operator::plugin::LoadedPlugin) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !plugin.configured_once() {
        assert!(
            std::time::Instant::now() < until,
            "{} was not configured once within a minute",
            plugin.name
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The operator configures each plugin once, in the background, and its calls then start from
/// that state (snapshot.rs): what `configure` kept is there in every call, nothing a call does
/// reaches the next, a restart loads the snapshot from the cache already configured, other
/// settings get their own, and a plugin whose `configure` keeps a host stream open is not
/// snapshotted but still works, configured on every call.
#[test]
fn plugins_are_configured_once_and_each_call_starts_from_that_state() {
    // Calls are synchronous (the operator makes them off its executor); cluster reads need one.
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let _tokio = tokio.enter();
    let (_dump, access) = scoped_dump();
    let cache = tempfile::tempdir().unwrap();
    let settings = r#"{"greeting": "hello"}"#;
    let settings_seen = |plugin: &sre_operator::plugin::LoadedPlugin| {
        let answer = plugin
            .invoke_tool("settings", "{}", access.clone())
            .unwrap();
        serde_json::from_str::<Value>(&answer).unwrap()
    };
    let calls_counted = |plugin: &sre_operator::plugin::LoadedPlugin| {
        plugin
            .invoke_tool("leak_state", "{}", access.clone())
            .unwrap()
    };
    let operator = Runtime::new(Some(cache.path().to_path_buf())).unwrap();
    operator.snapshot_in_background();
    let plugin = load_hostile(&operator, settings).unwrap();
    // Before its snapshot is ready, calls run configure as always.
    assert_eq!(settings_seen(&plugin), json!({"greeting": "hello"}));
    wait_configured(&plugin);
    for _ in 0..3 {
        assert_eq!(settings_seen(&plugin), json!({"greeting": "hello"}));
        assert_eq!(calls_counted(&plugin), "1");
        plugin
            .invoke_tool("trap", "{}", access.clone())
            .unwrap_err();
        plugin.invoke_tool("hog", "{}", access.clone()).unwrap_err();
    }

    // A restart (a runtime that builds nothing) loads it configured from the cache.
    let restarted = Runtime::new(Some(cache.path().to_path_buf())).unwrap();
    let again = load_hostile(&restarted, settings).unwrap();
    assert!(
        again.configured_once(),
        "the snapshot in the cache is used at load"
    );
    assert_eq!(settings_seen(&again), json!({"greeting": "hello"}));
    assert_eq!(calls_counted(&again), "1");
    // Other settings are another snapshot: this one runs configure with its own settings.
    let other = load_hostile(&restarted, r#"{"greeting": "bye"}"#).unwrap();
    assert!(!other.configured_once());
    assert_eq!(settings_seen(&other), json!({"greeting": "bye"}));
    // Settings configure refuses still fail the load, whatever the cache holds.
    let Err(refused) = load_hostile(&restarted, r#"{"reject": true}"#) else {
        panic!("settings configure refuses loaded");
    };
    assert!(refused.contains("settings rejected"), "{refused}");

    // Its configure keeps the host's stdout open: not snapshotted, and still served. The
    // snapshot thread takes one plugin at a time, so once the plugin queued after it is
    // configured, this one's turn has passed.
    let printing = load_hostile(&operator, r#"{"print": true}"#).unwrap();
    let after = load_hostile(&operator, r#"{"greeting": "after"}"#).unwrap();
    wait_configured(&after);
    assert!(!printing.configured_once());
    assert_eq!(settings_seen(&printing), json!({"print": true}));
    let markers: Vec<String> = std::fs::read_dir(cache.path())
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path().with_extension("attempt")).ok())
        .collect();
    assert!(
        markers.iter().any(|m| m.contains("host resources")),
        "the refusal is kept beside the cache, so a restart does not try again: {markers:?}"
    );

    // A build that a killed process (out of memory) left unfinished is not tried again: its
    // marker is there and its snapshot is not.
    let cache = tempfile::tempdir().unwrap();
    let first = Runtime::new(Some(cache.path().to_path_buf())).unwrap();
    first.snapshot_in_background();
    wait_configured(&load_hostile(&first, r#"{"greeting": "once"}"#).unwrap());
    let snapshots: Vec<PathBuf> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("configured-"))
        .collect();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    std::fs::remove_file(&snapshots[0]).unwrap();
    let unfinished = "started by process 1 and did not finish\n";
    std::fs::write(snapshots[0].with_extension("attempt"), unfinished).unwrap();
    let restarted = Runtime::new(Some(cache.path().to_path_buf())).unwrap();
    restarted.snapshot_in_background();
    let skipped = load_hostile(&restarted, r#"{"greeting": "once"}"#).unwrap();
    wait_configured(&load_hostile(&restarted, r#"{"greeting": "twice"}"#).unwrap());
    assert!(!skipped.configured_once());
    assert_eq!(settings_seen(&skipped), json!({"greeting": "once"}));
    assert_eq!(
        std::fs::read_to_string(snapshots[0].with_extension("attempt")).unwrap(),
        unfinished
    );
}

/// A compiled artifact is mapped from the cache; a file that shrinks under a mapping faults the
/// process on its next access. Whatever happens to the cache file (cut short, overwritten), a
/// plugin loaded from it keeps working.
#[tokio::test(flavor = "multi_thread")]
async fn a_cache_file_cut_short_or_overwritten_while_its_plugin_runs_changes_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let dir = plugin_dir(
        &[
            ("hostile_tool.wasm", wasm("hostile_tool.wasm")),
            ("k8s_reader.wasm", wasm("k8s_reader.wasm")),
        ],
        HOSTILE_MANIFEST,
    );
    let compiled = PluginSet::from_dir(
        &Runtime::new(Some(cache.path().to_path_buf())).unwrap(),
        dir.path(),
    )
    .unwrap();
    assert!(compiled.refusals().is_empty(), "{:?}", compiled.refusals());
    // Loaded from the cache: these run from the artifacts.
    let set = PluginSet::from_dir(
        &Runtime::new(Some(cache.path().to_path_buf())).unwrap(),
        dir.path(),
    )
    .unwrap();
    let (_dump, access) = scoped_dump();
    let artifacts: Vec<PathBuf> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(artifacts.len(), 2, "{artifacts:?}");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&artifacts[0])
        .unwrap()
        .set_len(0)
        .unwrap();
    std::fs::write(&artifacts[1], b"garbage").unwrap();
    for _ in 0..3 {
        still_serves(&set, &access).await;
    }
}

/// A process whose address space is limited (`ulimit -v`, as some hosts set for services)
/// cannot reserve the instance pool. Before issue 21 every plugin was refused there
/// ("Cannot allocate memory") and `diagnose` quietly lost its tools; now the operator says why
/// and runs plugins from on-demand instances, with the same reports.
#[test]
fn under_ulimit_v_plugins_run_on_demand_with_a_warning_and_the_same_reports() {
    use std::os::unix::process::CommandExt;
    const LIMIT: u64 = 4 << 30;
    assert!(
        sre_operator::plugin::pool_reservation() > LIMIT,
        "the pool fits under the limit here: the test would prove nothing"
    );
    let dump = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/dump");
    let diagnose = |limit: Option<u64>| {
        let cache = tempfile::tempdir().unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sre-operator"));
        command
            .args(["diagnose", "--output", "json", "--dump"])
            .arg(&dump)
            .env(sre_operator::plugin::CACHE_ENV, cache.path())
            .env_remove("SRE_OPERATOR_LOG");
        if let Some(limit) = limit {
            // SAFETY: only setrlimit, which is async-signal-safe, between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let rlimit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_AS, &rlimit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let out = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut outcomes: Vec<String> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| format!("{} {}", r["metadata"]["name"], r["status"]["phase"]))
            .collect();
        outcomes.sort();
        (outcomes, stderr)
    };
    let (unlimited, stderr) = diagnose(None);
    assert!(!stderr.contains("falling back"), "{stderr}");
    let (limited, stderr) = diagnose(Some(LIMIT));
    assert!(
        stderr.contains("falling back to on-demand instances"),
        "{stderr}"
    );
    assert!(!stderr.contains("refused"), "{stderr}");
    assert_eq!(limited, unlimited);
    assert!(
        unlimited.iter().any(|o| o.contains("AwaitingApproval")),
        "{unlimited:?}"
    );
}

/// Lays out a version of a plugin directory the way the kubelet writes a ConfigMap volume:
/// the files in a timestamped folder, `..data` pointing at it, and each key a symlink through
/// `..data`. Switching versions swaps `..data` atomically.
fn configmap_version(root: &Path, version: &str, files: &[(&str, Vec<u8>)], manifest: &str) {
    let folder = root.join(format!("..{version}"));
    std::fs::create_dir(&folder).unwrap();
    for (name, bytes) in files {
        std::fs::write(folder.join(name), bytes).unwrap();
    }
    std::fs::write(folder.join("plugins.yaml"), manifest).unwrap();
    let tmp = root.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, root.join("..data")).unwrap();
    for name in files.iter().map(|(n, _)| *n).chain(["plugins.yaml"]) {
        let link = root.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hot_reload_swaps_the_set_and_a_call_in_flight_finishes_on_the_old_one() {
    let root = tempfile::tempdir().unwrap();
    let v1 = "plugins:\n  - {name: tools, world: tool, file: tools.wasm, limits: {timeout: 5s}}\n";
    configmap_version(
        root.path(),
        "2026_11_25_10_00_00.1",
        &[("tools.wasm", wasm("hostile_tool.wasm"))],
        v1,
    );
    let registry =
        Arc::new(PluginRegistry::from_dir(runtime(), root.path().to_path_buf()).unwrap());
    assert!(
        registry.current().tool("slow").is_some(),
        "{:?}",
        registry.current().refusals()
    );
    assert!(
        !registry.reload_if_changed().unwrap(),
        "nothing changed yet"
    );

    let (_dump, access) = scoped_dump();
    let old = registry.current();
    let in_flight = tokio::spawn({
        let access = access.clone();
        async move { old.invoke("slow", &json!({"v": 1}), access).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;

    // Version 2: the same file name now holds k8s-reader.
    configmap_version(
        root.path(),
        "2026_11_25_10_05_00.2",
        &[("tools.wasm", wasm("k8s_reader.wasm"))],
        v1,
    );
    assert!(registry.reload_if_changed().unwrap());
    let current = registry.current();
    assert!(current.tool("slow").is_none());
    assert!(current.tool("fetch_logs").is_some());

    assert_eq!(in_flight.await.unwrap().unwrap(), r#"slow done {"v":1}"#);

    // A broken manifest keeps the plugins in force.
    configmap_version(
        root.path(),
        "2026_11_25_10_10_00.3",
        &[("tools.wasm", wasm("k8s_reader.wasm"))],
        "plugins: [",
    );
    assert!(registry.reload_if_changed().is_err());
    assert!(registry.current().tool("fetch_logs").is_some());
}

#[test]
fn plugins_check_names_each_refusal_and_fails() {
    let manifest = "plugins:\n  - {name: reader, world: tool, file: r.wasm}\n  - {name: filter, world: policy-filter, file: r.wasm}\n";
    let dir = plugin_dir(&[("r.wasm", wasm("k8s_reader.wasm"))], manifest);
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sre-operator"))
            .args(args)
            .env("SRE_OPERATOR_CACHE", dir.path().join("cache"))
            .output()
            .unwrap()
    };
    let out = run(&["plugins", "check", dir.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("1 loaded, 1 refused"), "{stdout}");
    assert!(
        stdout.contains("tool fetch_logs: Read the last lines of a container's log"),
        "{stdout}"
    );
    assert!(stdout.contains("REFUSED filter: "), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: 1 of 2 plugins refused"));

    let out = run(&["plugins", "list"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with("plugins from built-in plugins: 3 loaded, 0 refused")
    );
}

/// A cluster whose every read waits forever, and says when a waiting read was dropped.
struct Hanging(Arc<std::sync::atomic::AtomicUsize>);

struct DroppedRead(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for DroppedRead {
    fn drop(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Hanging {
    async fn never<T>(&self) -> sre_operator::cluster::Result<T> {
        let _dropped = DroppedRead(self.0.clone());
        futures::future::pending().await
    }
}

#[async_trait::async_trait]
impl sre_operator::cluster::Cluster for Hanging {
    fn source(&self) -> String {
        "a cluster that never answers".into()
    }
    async fn get(
        &self,
        _: sre_operator::cluster::ResourceKind,
        _: Option<&str>,
        _: &str,
    ) -> sre_operator::cluster::Result<Option<sre_operator::cluster::Object>> {
        self.never().await
    }
    async fn list(
        &self,
        _: sre_operator::cluster::ResourceKind,
        _: Option<&str>,
    ) -> sre_operator::cluster::Result<Vec<sre_operator::cluster::Object>> {
        self.never().await
    }
    async fn logs(
        &self,
        _: &sre_operator::cluster::LogRequest,
    ) -> sre_operator::cluster::Result<sre_operator::cluster::Logs> {
        self.never().await
    }
    async fn events_for(
        &self,
        _: sre_operator::cluster::Involved<'_>,
    ) -> sre_operator::cluster::Result<Vec<k8s_openapi::api::core::v1::Event>> {
        self.never().await
    }
}

/// A host call counts against the plugin's deadline: a read that never answers ends the call
/// at the deadline, as past it, naming the read; the read itself is dropped, not left running.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_read_that_never_answers_ends_at_the_plugins_deadline() {
    let dir = plugin_dir(
        &[("k8s_reader.wasm", wasm("k8s_reader.wasm"))],
        "plugins:\n  - name: k8s-reader\n    world: tool\n    file: k8s_reader.wasm\n    limits: {timeout: 300ms}\n",
    );
    let set = PluginSet::from_dir(&runtime(), dir.path()).unwrap();
    assert!(set.refusals().is_empty(), "{:?}", set.refusals());
    let dropped = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let access = ClusterAccess::new(Arc::new(Hanging(dropped.clone())), "shop");
    let started = std::time::Instant::now();
    let err = call(
        &set,
        "inspect_object",
        json!({"kind": "Pod", "name": "web"}),
        &access,
    )
    .await
    .unwrap_err();
    let took = started.elapsed();
    assert_eq!(
        err,
        CallError::Deadline {
            plugin: "k8s-reader".into(),
            call: "invoke inspect_object".into(),
            limit: std::time::Duration::from_millis(300),
            waiting_on: Some("the read of Pod web".into()),
        }
    );
    assert!(
        took < std::time::Duration::from_millis(1500),
        "the call took {took:?} with a 300ms deadline"
    );
    assert_eq!(
        dropped.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the read cut at the deadline is dropped"
    );
    assert_eq!(
        err.to_string(),
        "plugin k8s-reader: invoke inspect_object ran past its deadline of 300ms, waiting on the read of Pod web"
    );
}

/// A plugin's error message is cut to a few KiB before it can reach a report, an Event or a log.
#[tokio::test(flavor = "multi_thread")]
async fn a_megabyte_of_error_message_is_cut() {
    let err = hostile("long_error").await.unwrap_err();
    let CallError::Tool { message, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(
        message.len() <= sre_operator::plugin::MESSAGE_CAP + 64,
        "{} bytes kept",
        message.len()
    );
    assert!(message.starts_with("éé"), "{message:.40}");
    assert!(
        message.ends_with("more bytes cut)"),
        "{}",
        &message[message.len() - 40..]
    );
}

/// The ConfigMap deploy/ ships names the built-ins (`builtin:`) and carries no component; an
/// edit of it (here a limit) is reloaded like any other, and an unknown built-in is refused by
/// name.
#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_of_built_ins_loads_without_files_and_reloads_when_edited() {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/plugins/plugins.yaml"),
    )
    .unwrap();
    let root = tempfile::tempdir().unwrap();
    configmap_version(root.path(), "2026_12_05_10_00_00.1", &[], &manifest);
    let registry =
        Arc::new(PluginRegistry::from_dir(runtime(), root.path().to_path_buf()).unwrap());
    let current = registry.current();
    assert!(current.refusals().is_empty(), "{:?}", current.refusals());
    assert_eq!(current.plugins().len(), 3);
    let reader = |set: &PluginSet| {
        set.plugins()
            .iter()
            .find(|p| p.name == "k8s-reader")
            .unwrap()
            .limits
            .timeout
    };
    assert_eq!(reader(&current), std::time::Duration::from_secs(2));

    let edited = manifest.replace(
        "limits: {memory: 64Mi, timeout: 2s, output: 256Ki}",
        "limits: {memory: 64Mi, timeout: 5s, output: 256Ki}",
    );
    assert_ne!(edited, manifest);
    configmap_version(root.path(), "2026_12_05_10_05_00.2", &[], &edited);
    assert!(registry.reload_if_changed().unwrap());
    assert_eq!(
        reader(&registry.current()),
        std::time::Duration::from_secs(5)
    );

    let unknown = edited.replace("builtin: k8s-reader", "builtin: k8s-writer");
    configmap_version(root.path(), "2026_12_05_10_10_00.3", &[], &unknown);
    assert!(registry.reload_if_changed().unwrap());
    let refusals = registry.current().refusals().to_vec();
    assert!(
        refusals.iter().any(|r| r.plugin == "k8s-reader"
            && r.reason
                .contains("\"k8s-writer\" is not a plugin this operator embeds")
            && r.reason.contains("patch-safety")),
        "{refusals:?}"
    );
}

/// A manifest that pins the digest lets a load read the plugin's configured snapshot while the
/// bytes are hashed; the snapshot is used only if the bytes have that digest: other bytes under
/// the pin are refused, whatever the cache holds for it.
#[test]
fn a_pinned_digest_loads_its_snapshot_only_for_the_bytes_it_names() {
    let cache = tempfile::tempdir().unwrap();
    let hostile = wasm("hostile_tool.wasm");
    let digest = sha256_hex(&hostile);
    let load = |runtime: &Runtime, pin: &str, bytes: &[u8]| {
        let manifest = sre_operator::plugin::parse_manifest(&format!(
            "plugins:\n  - {{name: hostile, world: tool, file: h.wasm, sha256: {pin}, \
             settings: {{greeting: hi}}}}\n"
        ))
        .unwrap();
        runtime.load(sre_operator::plugin::PluginSource {
            entry: &manifest.plugins[0],
            bytes,
        })
    };
    let operator = Runtime::new(Some(cache.path().to_path_buf())).unwrap();
    operator.snapshot_in_background();
    wait_configured(&load(&operator, &digest, &hostile).unwrap());

    let restarted = Runtime::new(Some(cache.path().to_path_buf())).unwrap();
    let again = load(&restarted, &digest.to_ascii_uppercase(), &hostile).unwrap();
    assert!(
        again.configured_once(),
        "the pinned snapshot is used at load"
    );

    let Err(refused) = load(&restarted, &digest, &wasm("k8s_reader.wasm")) else {
        panic!("other bytes under the pin loaded");
    };
    assert!(
        refused.starts_with("sha256 mismatch: the manifest says"),
        "{refused}"
    );
}

/// An executable shell script in `dir` (the compile process starts with an empty environment,
/// so what the script needs is written into it).
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The operator compiles in child processes of its own binary (compile_process.rs): a plugin
/// and its configured snapshot are both made there, load in the operator's engine and answer
/// as an in-process compile's do, and a restart finds them in the cache without starting one.
#[test]
fn plugins_and_their_snapshots_are_compiled_in_a_child_process() {
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let _tokio = tokio.enter();
    let (_dump, access) = scoped_dump();
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let started = work.path().join("started");
    // The operator's binary behind a script that counts its starts.
    let program = script(
        work.path(),
        "operator",
        &format!(
            "echo \"$@\" >> '{}'\nexec '{}' \"$@\"",
            started.display(),
            env!("CARGO_BIN_EXE_sre-operator")
        ),
    );
    let starts = || {
        std::fs::read_to_string(&started)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let operator = Runtime::new(Some(cache.clone())).unwrap();
    operator.compile_in_children_of(program.clone());
    operator.snapshot_in_background();
    let plugin = load_hostile(&operator, r#"{"greeting": "hello"}"#).unwrap();
    let settings = plugin
        .invoke_tool("settings", "{}", access.clone())
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&settings).unwrap(),
        json!({"greeting": "hello"})
    );
    wait_configured(&plugin);
    assert_eq!(
        starts(),
        ["compile-plugin", "compile-plugin"],
        "one child compiled the plugin, one its snapshot"
    );
    for _ in 0..2 {
        let settings = plugin
            .invoke_tool("settings", "{}", access.clone())
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&settings).unwrap(),
            json!({"greeting": "hello"})
        );
        assert_eq!(
            plugin
                .invoke_tool("leak_state", "{}", access.clone())
                .unwrap(),
            "1",
            "each call still starts from the snapshot, not the last call"
        );
    }

    // A restart compiled by children too: both come from the cache, no child is started.
    let restarted = Runtime::new(Some(cache)).unwrap();
    restarted.compile_in_children_of(program);
    let again = load_hostile(&restarted, r#"{"greeting": "hello"}"#).unwrap();
    assert!(again.configured_once());
    assert_eq!(starts().len(), 2);
}

/// A compile process that dies (the kernel's OOM killer, a crash) fails that plugin's load with
/// what happened and what it printed, control characters escaped; the operator goes on. One
/// that cannot be started is compiled for in-process.
#[test]
fn a_compile_process_that_dies_fails_the_load_saying_why() {
    let work = tempfile::tempdir().unwrap();
    let program = script(
        work.path(),
        "dies",
        "printf 'compiler panicked at \\033[2Jboom\\n' >&2\nkill -9 $$",
    );
    let operator = Runtime::new(None).unwrap();
    operator.compile_in_children_of(program);
    let Err(reason) = load_hostile(&operator, "{}") else {
        panic!("a load whose compile process died succeeded");
    };
    assert!(reason.contains("killed (signal 9"), "{reason}");
    assert!(reason.contains("boom"), "{reason}");
    assert!(!reason.contains('\u{1b}'), "{reason:?}");

    // One that answers nothing and exits non-zero.
    let operator = Runtime::new(None).unwrap();
    operator.compile_in_children_of(script(work.path(), "fails", "exit 3"));
    let Err(reason) = load_hostile(&operator, "{}") else {
        panic!("a load whose compile process failed succeeded");
    };
    assert!(reason.contains("exit status: 3"), "{reason}");

    // One that cannot even be started (exec refused, the program gone): the operator compiles
    // in its own process, as it did before there were compile processes.
    let operator = Runtime::new(None).unwrap();
    operator.compile_in_children_of(work.path().join("no such program"));
    let plugin = load_hostile(&operator, "{}").unwrap();
    assert_eq!(plugin.name, "hostile");
}

/// The compile process asks the kernel to kill it first when the container runs out of memory
/// (a Python compile takes a few hundred MB; the operator must survive it), and answers a
/// request it cannot read with why rather than dying.
#[test]
fn the_compile_process_is_the_first_the_oom_killer_takes() {
    use std::io::{Read, Write};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sre-operator"))
        .arg(sre_operator::plugin::COMPILE_COMMAND)
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let score = format!("/proc/{}/oom_score_adj", child.id());
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    // It sets its score before it reads a byte: stdin is still open here.
    while std::fs::read_to_string(&score).unwrap_or_default().trim() != "1000" {
        assert!(
            std::time::Instant::now() < until,
            "oom_score_adj is {:?}",
            std::fs::read_to_string(&score)
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"{\"strategy\": \"pooled\"}\n\0asm")
        .unwrap();
    drop(stdin);
    let mut answer = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut answer)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(answer.starts_with("Enot a compile request"), "{answer:?}");
}

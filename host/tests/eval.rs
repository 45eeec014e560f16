//! The scenario suite in CI: the rules brain over every scenario in `tests/scenarios` through the
//! same pipeline as `diagnose`, failing on any must-pass regression; the `eval` command's exit
//! code, JSON and an OpenAI-compatible model scored through a scripted server on loopback.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::{Value, json};
use sre_operator::agent::Budget;
use sre_operator::agent::rules::RulesBrain;
use sre_operator::crd::FailureClass;
use sre_operator::eval::{self, load_scenarios};
use sre_operator::pipeline::Engine;
use sre_operator::plugin::{PluginSet, Runtime};
use support::openai::{answer, call, serve};

fn suite() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios")
}

fn sre_operator(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sre-operator"))
        .args(args)
        .env_remove("SRE_OPERATOR_BRAIN")
        .env_remove("OPENAI_MODEL")
        .env_remove("OPENAI_BASE_URL")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rules_brain_passes_every_must_pass_scenario() {
    let scenarios = load_scenarios(&suite()).unwrap();
    assert!(scenarios.len() >= 30, "{} scenarios", scenarios.len());
    let classes: BTreeSet<FailureClass> = scenarios.iter().map(|s| s.expected.class).collect();
    assert_eq!(
        classes.len(),
        FailureClass::DETECTED.len(),
        "every class has scenarios"
    );
    let engine = Engine {
        brain: Arc::new(RulesBrain),
        plugins: Arc::new(PluginSet::builtin(&Runtime::new(None).unwrap())),
        budget: Budget::default(),
        concurrency: 4,
    };
    let result = eval::run(&scenarios, &engine).await;
    let mut table = Vec::new();
    eval::write_table(&mut table, &result).unwrap();
    let table = String::from_utf8(table).unwrap();
    println!("{table}");
    let failed: Vec<&str> = result
        .must_pass_failures()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert!(
        failed.is_empty(),
        "must-pass scenarios regressed: {failed:?}\n{table}"
    );
    // A scenario that passes now and is not tagged must-pass is one to promote.
    let unpromoted: Vec<&str> = result
        .scenarios
        .iter()
        .filter(|s| s.pass && !s.must_pass)
        .map(|s| s.name.as_str())
        .collect();
    assert!(
        unpromoted.is_empty(),
        "these scenarios pass now: tag them must-pass: {unpromoted:?}"
    );
}

/// A copy of one scenario under a temporary folder, with expected.yaml edited.
fn scenario_copy(name: &str, edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join(name);
    support::copy_dir(&suite().join(name), &target).unwrap();
    let expected = target.join("expected.yaml");
    let text = std::fs::read_to_string(&expected).unwrap();
    std::fs::write(&expected, edit(text)).unwrap();
    dir
}

#[test]
fn eval_exits_non_zero_when_a_must_pass_scenario_fails() {
    let out = sre_operator(&[
        "eval",
        suite().to_str().unwrap(),
        "--only",
        "crashloop-wrong-service-name",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("1 scenarios: 1 passed, 0 failed; must-pass: 1 of 1 passed"),
        "{stdout}"
    );

    // The same incident, expecting the wrong Service: the scorer fails it and eval exits 1.
    let wrong = scenario_copy("crashloop-wrong-service-name", |t| {
        t.replace("value: redis-master", "value: redis-replica")
    });
    let out = sre_operator(&["eval", wrong.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("FAIL (must-pass)"), "{stdout}");
    assert!(
        stdout.contains("crashloop-wrong-service-name: patch: missing replace /spec/template/spec/containers/0/env/0/value = \"redis-replica\""),
        "{stdout}"
    );
    assert!(
        stderr.contains("1 must-pass scenario(s) failed: crashloop-wrong-service-name"),
        "{stderr}"
    );

    // Not tagged must-pass, the same failure is reported but does not fail the run.
    let optional = scenario_copy("crashloop-wrong-service-name", |t| {
        t.replace("value: redis-master", "value: redis-replica")
            .replace("- must-pass\n", "")
    });
    let out = sre_operator(&[
        "eval",
        optional.path().to_str().unwrap(),
        "--output",
        "json",
    ]);
    assert!(out.status.success());
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["totals"]["failed"], 1);
    assert_eq!(result["scenarios"][0]["checks"]["patch"]["pass"], false);
    assert_eq!(result["scenarios"][0]["checks"]["class"]["pass"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn eval_scores_an_openai_compatible_model_with_its_tokens() {
    let path = "/spec/template/spec/containers/0/env/0/value";
    let diagnosis = json!({
        "summary": "critical-app cannot reach redis:6379",
        "rootCause": "REDIS_HOST=redis names no Service; redis-master serves redis:6379",
        "evidence": ["Error: Connection refused to redis:6379"],
        "patch": {"target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "critical-app"},
                  "operations": [{"op": "test", "path": path, "value": "redis"},
                                 {"op": "replace", "path": path, "value": "redis-master"}],
                  "explanation": "point REDIS_HOST at redis-master"},
        "recommendation": null
    });
    let server = serve(vec![
        call("check_service", json!({"name": "redis"})),
        answer(diagnosis),
    ])
    .await;
    let base_url = server.base_url.clone();
    let dir = suite();
    let out = tokio::task::spawn_blocking(move || {
        sre_operator(&[
            "eval",
            dir.to_str().unwrap(),
            "--only",
            "crashloop-wrong-service-name",
            "--brain",
            "openai",
            "--model",
            "test-model",
            "--base-url",
            &base_url,
            "-o",
            "json",
        ])
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&result["brain"], &result["model"]),
        (&json!("openai"), &json!("test-model"))
    );
    let scenario = &result["scenarios"][0];
    assert_eq!(scenario["pass"], true, "{scenario:#}");
    // The sums of what the two responses billed: 100 prompt and 20 completion tokens each.
    assert_eq!(
        (
            &scenario["toolCalls"],
            &scenario["promptTokens"],
            &scenario["completionTokens"]
        ),
        (&json!(1), &json!(200), &json!(40))
    );
    assert_eq!(server.requests.lock().unwrap().len(), 2);
}

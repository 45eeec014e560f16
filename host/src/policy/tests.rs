use super::*;
use sre_e2e::fixtures::PodBuilder;

pub(crate) const SEED_POLICY: &str = r#"
apiVersion: sre-operator.dev/v1alpha1
kind: DebugPolicy
metadata:
  name: protect-critical-services
spec:
  rules:
    - namespaces: ["default"]
      selector:
        matchLabels:
          app: critical-app
"#;

fn selects(set: &PolicySet, pod: &Pod, class: FailureClass) -> bool {
    set.select(pod, class).is_some()
}

/// A Pod named `p` with one label, in `namespace`.
fn pod_in(namespace: &str, key: &str, value: &str) -> Pod {
    PodBuilder::new("p")
        .namespace(namespace)
        .label(key, value)
        .build()
}

#[test]
fn the_seed_policy_validates_and_selects_what_it_says() {
    let policies = parse_policies(SEED_POLICY, "seed.yaml").unwrap();
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].spec.cooldown, "10m");
    assert_eq!(policies[0].spec.approval, Approval::Manual);
    let set = PolicySet::compile(&policies).unwrap();
    let critical = PodBuilder::new("p")
        .namespace("default")
        .label("app", "critical-app")
        .build();
    assert!(selects(&set, &critical, FailureClass::CrashLoopBackOff));
    assert!(selects(&set, &critical, FailureClass::Pending));
    assert!(!selects(
        &set,
        &pod_in("production", "app", "critical-app"),
        FailureClass::Pending
    ));
    assert!(!selects(
        &set,
        &pod_in("default", "app", "web"),
        FailureClass::Pending
    ));
}

#[test]
fn the_seed_policy_with_its_original_group_is_refused_with_the_fix() {
    let original = SEED_POLICY.replace("sre-operator.dev/v1alpha1", "example.com/v1");
    let err = parse_policies(&original, "seed.yaml")
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "seed.yaml: DebugPolicy protect-critical-services: apiVersion is \"example.com/v1\"; use sre-operator.dev/v1alpha1"
    );
}

#[test]
fn schema_violations_are_named() {
    let cases = [
        ("conditions: [Crashing]", "spec.rules.0.conditions.0"),
        ("cooldown: ten minutes", "spec.cooldown"),
        (
            "brain: {provider: rules, maxSteps: 0}",
            "spec.brain.maxSteps",
        ),
        ("approval: Sometimes", "spec.approval"),
    ];
    for (extra, path) in cases {
        let text = format!(
            "apiVersion: sre-operator.dev/v1alpha1\nkind: DebugPolicy\nmetadata: {{name: p}}\nspec:\n  rules: [{{}}]\n  {}\n",
            extra.replace(
                "conditions: [Crashing]",
                "rules: [{conditions: [Crashing]}]"
            )
        );
        let err = parse_policies(&text, "p.yaml").unwrap_err().to_string();
        assert!(err.starts_with("p.yaml: DebugPolicy p: "), "{err}");
        assert!(err.contains(path), "{extra}: {err}");
    }
    let err = parse_policies(
        "apiVersion: sre-operator.dev/v1alpha1\nkind: DebugPolicy\nmetadata: {name: p}\nspec: {rules: []}\n",
        "p.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("spec.rules"), "{err}");
}

#[test]
fn match_expressions_namespaces_and_conditions() {
    let text = r#"
apiVersion: sre-operator.dev/v1alpha1
kind: DebugPolicy
metadata: {name: tiers}
spec:
  rules:
    - namespaces: [shop, billing]
      selector:
        matchExpressions:
          - {key: tier, operator: In, values: [frontend, api]}
          - {key: canary, operator: DoesNotExist}
      conditions: [CrashLoopBackOff, OOMKilled]
"#;
    let set = PolicySet::compile(&parse_policies(text, "t.yaml").unwrap()).unwrap();
    let api = PodBuilder::new("p")
        .namespace("shop")
        .label("tier", "api")
        .build();
    assert!(selects(&set, &api, FailureClass::CrashLoopBackOff));
    assert!(selects(&set, &api, FailureClass::OomKilled));
    assert!(
        !selects(&set, &api, FailureClass::Pending),
        "class outside the rule's conditions"
    );
    assert!(!selects(
        &set,
        &PodBuilder::new("p")
            .namespace("shop")
            .label("tier", "api")
            .label("canary", "yes")
            .build(),
        FailureClass::CrashLoopBackOff
    ));
    assert!(!selects(
        &set,
        &pod_in("shop", "tier", "db"),
        FailureClass::CrashLoopBackOff
    ));
    assert!(!selects(
        &set,
        &pod_in("web", "tier", "api"),
        FailureClass::CrashLoopBackOff
    ));
    assert!(set.selects_pod(&api));
}

#[test]
fn a_bad_selector_operator_names_the_policy_and_rule() {
    let text = r#"
apiVersion: sre-operator.dev/v1alpha1
kind: DebugPolicy
metadata: {name: broken}
spec:
  rules:
    - selector:
        matchExpressions: [{key: tier, operator: Near, values: [a]}]
"#;
    let err = parse_policies(text, "b.yaml").unwrap_err().to_string();
    assert!(
        err.starts_with("b.yaml: DebugPolicy broken: spec.rules[0]: selector:"),
        "{err}"
    );
}

#[test]
fn the_default_policy_selects_everything_and_several_documents_load() {
    let set = PolicySet::compile(&[default_policy()]).unwrap();
    for class in FailureClass::ALL {
        assert!(selects(
            &set,
            &PodBuilder::new("p").namespace("anywhere").build(),
            class
        ));
    }
    let two = format!(
        "{SEED_POLICY}\n---\n{}",
        SEED_POLICY.replace("protect-critical-services", "second")
    );
    assert_eq!(parse_policies(&two, "two.yaml").unwrap().len(), 2);
    assert!(
        parse_policies("", "empty.yaml")
            .unwrap_err()
            .to_string()
            .contains("holds no DebugPolicy")
    );
}

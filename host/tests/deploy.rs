//! `deploy/` as `kubectl kustomize` renders it: every object parses into its Kubernetes type,
//! the plugin ConfigMap loads as a plugin directory, the Deployment is hardened and wired to
//! flags the operator has, and the ClusterRoles grant what the operator needs and nothing a
//! compromised operator could use to escalate; the admission policy lets only the operator
//! create reports or write their status.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use clap::CommandFactory;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sre_operator::cluster::ResourceKind;
use sre_operator::crd::DebugPolicy;
use sre_operator::plugin::{PluginSet, Runtime};

#[derive(Default)]
struct Rendered {
    namespaces: Vec<Namespace>,
    crds: Vec<CustomResourceDefinition>,
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    roles: Vec<Role>,
    role_bindings: Vec<RoleBinding>,
    config_maps: Vec<ConfigMap>,
    deployments: Vec<Deployment>,
    disruption_budgets: Vec<PodDisruptionBudget>,
    services: Vec<Service>,
    admission_policies: Vec<ValidatingAdmissionPolicy>,
    admission_bindings: Vec<ValidatingAdmissionPolicyBinding>,
}

fn parse<K: DeserializeOwned>(obj: &Value) -> Result<K> {
    serde_json::from_value(obj.clone()).with_context(|| {
        format!(
            "{} {} does not parse as its Kubernetes type",
            obj["kind"], obj["metadata"]["name"]
        )
    })
}

fn rendered() -> Result<Rendered> {
    let mut r = Rendered::default();
    for obj in support::render_deploy()? {
        match obj["kind"].as_str().unwrap_or_default() {
            "Namespace" => r.namespaces.push(parse(&obj)?),
            "CustomResourceDefinition" => r.crds.push(parse(&obj)?),
            "ServiceAccount" => r.service_accounts.push(parse(&obj)?),
            "ClusterRole" => r.cluster_roles.push(parse(&obj)?),
            "ClusterRoleBinding" => r.cluster_role_bindings.push(parse(&obj)?),
            "Role" => r.roles.push(parse(&obj)?),
            "RoleBinding" => r.role_bindings.push(parse(&obj)?),
            "ConfigMap" => r.config_maps.push(parse(&obj)?),
            "Deployment" => r.deployments.push(parse(&obj)?),
            "Service" => r.services.push(parse(&obj)?),
            "PodDisruptionBudget" => r.disruption_budgets.push(parse(&obj)?),
            "ValidatingAdmissionPolicy" => r.admission_policies.push(parse(&obj)?),
            "ValidatingAdmissionPolicyBinding" => r.admission_bindings.push(parse(&obj)?),
            other => bail!("deploy/ renders an unexpected {other}: {obj}"),
        }
    }
    Ok(r)
}

fn cluster_role<'a>(r: &'a Rendered, name: &str) -> &'a ClusterRole {
    r.cluster_roles
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("deploy/ has no ClusterRole {name}"))
}

/// (apiGroup, resource) → verbs, over rules that name no resourceNames restriction or do.
fn grants(rules: &[PolicyRule]) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for rule in rules {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                out.entry((group.clone(), resource.clone()))
                    .or_default()
                    .extend(rule.verbs.iter().cloned());
            }
        }
    }
    out
}

const READ: [&str; 3] = ["get", "list", "watch"];

fn is_write(verb: &str) -> bool {
    !READ.contains(&verb)
}

fn group_of(kind: ResourceKind) -> &'static str {
    kind.api_version().rsplit_once('/').map_or("", |(g, _)| g)
}

#[test]
fn deploy_renders_and_every_object_parses() -> Result<()> {
    let r = rendered()?;
    assert_eq!(r.namespaces.len(), 1);
    let ns = r.namespaces[0].metadata.name.clone().unwrap();
    let crd_names: BTreeSet<_> = r
        .crds
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    assert_eq!(
        crd_names,
        BTreeSet::from([
            "debugpolicies.sre-operator.dev".to_string(),
            "diagnosticreports.sre-operator.dev".to_string()
        ])
    );
    // Every namespaced object lands in the operator's namespace.
    for (kind, meta) in r
        .service_accounts
        .iter()
        .map(|o| ("ServiceAccount", &o.metadata))
        .chain(r.roles.iter().map(|o| ("Role", &o.metadata)))
        .chain(r.role_bindings.iter().map(|o| ("RoleBinding", &o.metadata)))
        .chain(r.config_maps.iter().map(|o| ("ConfigMap", &o.metadata)))
        .chain(r.deployments.iter().map(|o| ("Deployment", &o.metadata)))
        .chain(r.services.iter().map(|o| ("Service", &o.metadata)))
        .chain(
            r.disruption_budgets
                .iter()
                .map(|o| ("PodDisruptionBudget", &o.metadata)),
        )
    {
        assert_eq!(
            meta.namespace.as_deref(),
            Some(ns.as_str()),
            "{kind} {:?}",
            meta.name
        );
    }
    Ok(())
}

#[test]
fn the_plugin_configmap_is_a_working_plugin_directory_under_the_size_limit() -> Result<()> {
    let r = rendered()?;
    let [cm] = r.config_maps.as_slice() else {
        panic!("one plugin ConfigMap expected, got {}", r.config_maps.len());
    };
    assert_eq!(cm.metadata.name.as_deref(), Some("sre-operator-plugins"));
    let data = cm.data.clone().unwrap_or_default();
    let binary = cm.binary_data.clone().unwrap_or_default();
    assert!(data.contains_key("plugins.yaml"), "{:?}", data.keys());
    // The built-ins are named, not shipped: a fresh clone installs without a build.
    assert!(
        binary.is_empty(),
        "components in the ConfigMap: {:?}",
        binary.keys()
    );
    // The API server's limit counts the raw bytes of data and binaryData.
    let size: usize = data.values().map(String::len).sum::<usize>()
        + binary.values().map(|b| b.0.len()).sum::<usize>();
    assert!(size < 1 << 20, "the plugin ConfigMap holds {size} bytes");

    // Mounted, the keys become files: the operator must load every plugin without a refusal.
    let dir = tempfile::tempdir()?;
    for (name, text) in &data {
        std::fs::write(dir.path().join(name), text)?;
    }
    for (name, bytes) in &binary {
        std::fs::write(dir.path().join(name), &bytes.0)?;
    }
    let runtime = Runtime::new(None)?;
    let set = PluginSet::from_dir(&runtime, dir.path()).map_err(anyhow::Error::msg)?;
    assert!(set.refusals().is_empty(), "refused: {:?}", set.refusals());
    assert_eq!(set.plugins().len(), 3);
    Ok(())
}

/// deploy/'s manifest names the built-ins with the limits and settings the embedded defaults
/// have (plugins/plugins.yaml): an install from a fresh clone behaves like the defaults.
#[test]
fn deploys_manifest_names_the_built_ins_with_their_default_limits_and_settings() -> Result<()> {
    let read = |path: &str| -> Result<sre_operator::plugin::Manifest> {
        let text = std::fs::read_to_string(support::repo_root().join(path))?;
        sre_operator::plugin::parse_manifest(&text).map_err(anyhow::Error::msg)
    };
    let deployed = read("deploy/plugins/plugins.yaml")?;
    let defaults = read("plugins/plugins.yaml")?;
    assert_eq!(deployed.plugins.len(), defaults.plugins.len());
    for (d, b) in deployed.plugins.iter().zip(&defaults.plugins) {
        assert_eq!(d.name, b.name);
        assert_eq!(d.builtin.as_deref(), Some(b.name.as_str()), "{}", d.name);
        assert_eq!(
            (&d.world, d.file.as_deref()),
            (&b.world, None),
            "{}",
            d.name
        );
        assert_eq!(
            serde_json::to_value(&d.limits)?,
            serde_json::to_value(&b.limits)?,
            "{}: limits",
            d.name
        );
        assert_eq!(d.settings, b.settings, "{}: settings", d.name);
    }
    Ok(())
}

#[test]
fn the_deployment_is_hardened_and_wired_to_real_flags() -> Result<()> {
    let r = rendered()?;
    let [d] = r.deployments.as_slice() else {
        panic!("one Deployment expected");
    };
    let spec = d.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(2));
    // A drain never takes both replicas at once.
    let [pdb] = r.disruption_budgets.as_slice() else {
        panic!("one PodDisruptionBudget expected");
    };
    let pdb_spec = pdb.spec.as_ref().unwrap();
    assert_eq!(pdb_spec.selector, Some(spec.selector.clone()));
    assert_eq!(
        pdb_spec.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    let pod = spec.template.spec.as_ref().unwrap();
    let sa = pod.service_account_name.as_deref().unwrap();
    assert!(
        r.service_accounts
            .iter()
            .any(|s| s.metadata.name.as_deref() == Some(sa))
    );
    let pod_sc = pod.security_context.as_ref().unwrap();
    assert_eq!(pod_sc.run_as_non_root, Some(true));
    assert!(pod_sc.run_as_user.is_some_and(|u| u != 0));

    let [c] = pod.containers.as_slice() else {
        panic!("one container expected");
    };
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_ne!(sc.privileged, Some(true));
    assert_eq!(
        sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_string()])
    );
    let limits = c.resources.as_ref().and_then(|r| r.limits.clone()).unwrap();
    assert!(limits.contains_key("memory"));

    // The arguments parse as `sre-operator run` would parse them.
    let mut argv = vec!["sre-operator".to_string()];
    argv.extend(c.args.clone().unwrap_or_default());
    let cli = sre_operator::cli::Cli::command();
    let matches = cli
        .clone()
        .try_get_matches_from(&argv)
        .map_err(|e| anyhow::anyhow!("the Deployment's args {argv:?}: {e}"))?;
    let (sub, run) = matches.subcommand().unwrap();
    assert_eq!(sub, "run");
    assert!(
        run.get_flag("leader_election"),
        "two replicas need --leader-election"
    );
    let plugin_dir = run
        .get_one::<std::path::PathBuf>("plugins")
        .expect("--plugins names the mounted ConfigMap")
        .clone();

    // Mounts: the plugin directory is the ConfigMap's volume; the cache is writable.
    let mounts = c.volume_mounts.clone().unwrap_or_default();
    let mount_of = |path: &std::path::Path| {
        mounts
            .iter()
            .find(|m| path.starts_with(&m.mount_path))
            .unwrap_or_else(|| panic!("nothing is mounted at {}", path.display()))
    };
    let plugins_mount = mount_of(&plugin_dir);
    let volumes = pod.volumes.clone().unwrap_or_default();
    let plugins_volume = volumes
        .iter()
        .find(|v| v.name == plugins_mount.name)
        .unwrap();
    let sources = plugins_volume
        .projected
        .as_ref()
        .and_then(|p| p.sources.clone())
        .unwrap_or_default();
    assert!(
        sources.iter().any(|s| {
            s.config_map.as_ref().map(|c| c.name.as_str()) == Some("sre-operator-plugins")
        }),
        "the plugin directory is the plugin ConfigMap"
    );

    // Every environment variable is one the operator reads (a flag's env, or the downward API).
    let run_cmd = cli.find_subcommand("run").unwrap();
    let known: BTreeSet<String> = run_cmd
        .get_arguments()
        .chain(cli.get_arguments())
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .chain(
            [
                "POD_NAME",
                sre_operator::plugin::CACHE_ENV,
                sre_operator::agent::llm::API_KEY_ENV,
            ]
            .map(String::from),
        )
        .collect();
    let env = c.env.clone().unwrap_or_default();
    for var in &env {
        assert!(
            known.contains(&var.name),
            "{} is set on the Deployment but the operator reads no such variable",
            var.name
        );
        if let Some(secret) = var
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
        {
            assert_eq!(
                secret.optional,
                Some(true),
                "{}: the rules brain runs without the Secret",
                var.name
            );
        }
    }
    let field_ref = |name: &str| {
        env.iter()
            .find(|v| v.name == name)
            .and_then(|v| v.value_from.as_ref())
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.clone())
    };
    assert_eq!(field_ref("POD_NAME").as_deref(), Some("metadata.name"));
    assert_eq!(
        field_ref("POD_NAMESPACE").as_deref(),
        Some("metadata.namespace")
    );
    let cache = env
        .iter()
        .find(|v| v.name == sre_operator::plugin::CACHE_ENV)
        .and_then(|v| v.value.clone())
        .unwrap();
    assert_ne!(mount_of(std::path::Path::new(&cache)).read_only, Some(true));

    // Probes on the endpoints the operator serves, on the port it listens on.
    let port = c.ports.as_ref().unwrap()[0].container_port;
    assert_eq!(port, 8080, "--http-addr defaults to port 8080");
    for (probe, path) in [
        (c.liveness_probe.as_ref(), "/healthz"),
        (c.readiness_probe.as_ref(), "/readyz"),
    ] {
        let get = probe.and_then(|p| p.http_get.as_ref()).unwrap();
        assert_eq!(get.path.as_deref(), Some(path));
    }
    Ok(())
}

#[test]
fn the_operator_role_reads_what_its_tools_read_and_writes_only_its_own_objects() -> Result<()> {
    let r = rendered()?;
    let operator = grants(
        cluster_role(&r, "sre-operator")
            .rules
            .as_deref()
            .unwrap_or_default(),
    );

    // Every kind the tools may ask for is readable, except Secrets, which are never read.
    for kind in ResourceKind::ALL {
        let key = (group_of(kind).to_string(), kind.plural().to_string());
        let verbs = operator.get(&key).cloned().unwrap_or_default();
        if kind == ResourceKind::Secret {
            assert!(verbs.is_empty(), "the operator may {verbs:?} Secrets");
        } else {
            for verb in READ {
                assert!(verbs.contains(verb), "the operator cannot {verb} {key:?}");
            }
        }
    }
    assert!(operator[&(String::new(), "pods/log".into())].contains("get"));

    // Writes: exactly these.
    let patch_kinds: BTreeSet<(String, String)> = allowed_kinds()?
        .into_iter()
        .map(|k| {
            let kind: ResourceKind = k.parse().map_err(anyhow::Error::msg)?;
            Ok((group_of(kind).to_string(), kind.plural().to_string()))
        })
        .collect::<Result<_>>()?;
    let mut writes: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (key, verbs) in &operator {
        let w: BTreeSet<String> = verbs.iter().filter(|v| is_write(v)).cloned().collect();
        if !w.is_empty() {
            writes.insert(key.clone(), w);
        }
    }
    let mut expected: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let set = |verbs: &[&str]| verbs.iter().map(|v| v.to_string()).collect::<BTreeSet<_>>();
    expected.insert(
        ("sre-operator.dev".into(), "diagnosticreports".into()),
        set(&["create", "patch", "delete"]),
    );
    expected.insert(
        ("sre-operator.dev".into(), "diagnosticreports/status".into()),
        set(&["patch", "update"]),
    );
    expected.insert(
        ("sre-operator.dev".into(), "debugpolicies/status".into()),
        set(&["patch"]),
    );
    expected.insert(
        ("events.k8s.io".into(), "events".into()),
        set(&["create", "patch"]),
    );
    // MCP over HTTP asks the API server who a token is and what they may do: a create that
    // stores nothing and reads nothing.
    expected.insert(
        ("authentication.k8s.io".into(), "tokenreviews".into()),
        set(&["create"]),
    );
    expected.insert(
        ("authorization.k8s.io".into(), "subjectaccessreviews".into()),
        set(&["create"]),
    );
    for key in &patch_kinds {
        expected.insert(key.clone(), set(&["patch"]));
    }
    assert_eq!(
        writes, expected,
        "the operator writes reports, their status and events, and patches only the kinds patch-safety allows"
    );

    // The Lease: in the operator's own namespace, through a Role.
    let role = r
        .roles
        .iter()
        .find(|role| role.metadata.name.as_deref() == Some("sre-operator-leader-election"))
        .expect("a Role for leader election");
    let lease = grants(role.rules.as_deref().unwrap_or_default());
    assert_eq!(
        lease.keys().cloned().collect::<Vec<_>>(),
        vec![("coordination.k8s.io".to_string(), "leases".to_string())]
    );
    let bound = |kind: &str, name: &str| {
        r.cluster_role_bindings
            .iter()
            .map(|b| (&b.role_ref, &b.subjects))
            .chain(r.role_bindings.iter().map(|b| (&b.role_ref, &b.subjects)))
            .any(|(role_ref, subjects)| {
                role_ref.kind == kind
                    && role_ref.name == name
                    && subjects
                        .iter()
                        .flatten()
                        .any(|s| s.kind == "ServiceAccount" && s.name == "sre-operator")
            })
    };
    assert!(bound("ClusterRole", "sre-operator"));
    assert!(bound("Role", role.metadata.name.as_deref().unwrap()));
    Ok(())
}

/// The one exception to "no Secret": `get`, by name, of the credential Secrets in the operator's
/// namespace (egress grants, notification webhooks), in a Role of that namespace.
const CREDENTIALS_ROLE: &str = "sre-operator-egress-credentials";

#[test]
fn no_role_can_escalate_or_read_secrets() -> Result<()> {
    let r = rendered()?;
    let roles = r
        .cluster_roles
        .iter()
        .map(|c| {
            (
                c.metadata.name.clone().unwrap(),
                c.rules.clone().unwrap_or_default(),
            )
        })
        .chain(r.roles.iter().map(|c| {
            (
                c.metadata.name.clone().unwrap(),
                c.rules.clone().unwrap_or_default(),
            )
        }));
    for (name, rules) in roles {
        for rule in &rules {
            for field in [
                rule.api_groups.clone().unwrap_or_default(),
                rule.resources.clone().unwrap_or_default(),
                rule.verbs.clone(),
            ] {
                assert!(
                    !field.iter().any(|f| f == "*"),
                    "{name}: a wildcard in {rule:?}"
                );
            }
            assert!(
                rule.non_resource_urls.is_none(),
                "{name}: non-resource URLs in {rule:?}"
            );
        }
        for rule in &rules {
            let on_secrets = rule.api_groups.iter().flatten().any(|g| g.is_empty())
                && rule
                    .resources
                    .iter()
                    .flatten()
                    .any(|r| r.split('/').next() == Some("secrets"));
            if on_secrets {
                assert_eq!(name, CREDENTIALS_ROLE, "{name} may read secrets: {rule:?}");
                assert_eq!(rule.verbs, ["get"], "{name}: more than get on secrets");
                let names = rule.resource_names.clone().unwrap_or_default();
                assert!(
                    !names.is_empty() && names.iter().all(|n| n.starts_with("sre-operator-")),
                    "{name}: secrets not limited to named credential Secrets: {rule:?}"
                );
            }
        }
        for ((group, resource), verbs) in grants(&rules) {
            let base = resource.split('/').next().unwrap();
            assert!(
                !(group.is_empty() && base == "secrets") || name == CREDENTIALS_ROLE,
                "{name} may {verbs:?} secrets"
            );
            for verb in ["escalate", "bind", "impersonate"] {
                assert!(!verbs.contains(verb), "{name} may {verb} {resource}");
            }
            let writes: Vec<_> = verbs.iter().filter(|v| is_write(v)).collect();
            if writes.is_empty() {
                continue;
            }
            assert_ne!(
                group, "rbac.authorization.k8s.io",
                "{name} may {writes:?} {resource}"
            );
            assert_ne!(
                group, "admissionregistration.k8s.io",
                "{name} may {writes:?} {resource}"
            );
            assert_ne!(
                group, "apiextensions.k8s.io",
                "{name} may {writes:?} {resource}"
            );
            assert!(
                !(group.is_empty()
                    && [
                        "nodes",
                        "namespaces",
                        "pods",
                        "serviceaccounts",
                        "configmaps"
                    ]
                    .contains(&base)),
                "{name} may {writes:?} {resource}"
            );
        }
    }

    // People who approve set spec.decision; they cannot write the status, where the patch is.
    let approver = grants(
        cluster_role(&r, "sre-approver")
            .rules
            .as_deref()
            .unwrap_or_default(),
    );
    let mut approver_writes: Vec<_> = approver
        .iter()
        .filter(|(_, verbs)| verbs.iter().any(|v| is_write(v)))
        .map(|((g, res), verbs)| (g.clone(), res.clone(), verbs.clone()))
        .collect();
    approver_writes.sort();
    assert_eq!(
        approver_writes,
        vec![(
            "sre-operator.dev".to_string(),
            "diagnosticreports".to_string(),
            BTreeSet::from(["get".into(), "list".into(), "patch".into(), "watch".into()])
        )]
    );
    let viewer = grants(
        cluster_role(&r, "sre-viewer")
            .rules
            .as_deref()
            .unwrap_or_default(),
    );
    assert!(viewer.values().flatten().all(|v| !is_write(v)));
    Ok(())
}

#[test]
fn only_the_operators_service_account_may_create_reports_or_write_their_status() -> Result<()> {
    let r = rendered()?;
    let [policy] = r.admission_policies.as_slice() else {
        panic!("one ValidatingAdmissionPolicy expected");
    };
    let [binding] = r.admission_bindings.as_slice() else {
        panic!("one ValidatingAdmissionPolicyBinding expected");
    };
    let spec = policy.spec.as_ref().unwrap();
    let bound = &binding.spec;
    assert_eq!(Some(&bound.policy_name), policy.metadata.name.as_ref());
    assert_eq!(bound.validation_actions, ["Deny"]);
    assert!(
        bound.param_ref.is_none() && bound.match_resources.is_none(),
        "bound everywhere, without parameters"
    );
    assert_eq!(spec.failure_policy.as_deref(), Some("Fail"));

    // It matches the CRD's own group and plural, on the status subresource the CRD declares.
    let crd = r
        .crds
        .iter()
        .find(|c| c.spec.names.kind == "DiagnosticReport")
        .unwrap();
    assert!(
        crd.spec.versions.iter().all(|v| v
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()),
        "DiagnosticReport has a status subresource"
    );
    let plural = crd.spec.names.plural.clone();
    let status = format!("{plural}/status");
    let mut matched: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rule in spec
        .match_constraints
        .as_ref()
        .and_then(|m| m.resource_rules.clone())
        .unwrap_or_default()
    {
        assert_eq!(rule.api_groups, Some(vec![crd.spec.group.clone()]));
        assert_eq!(rule.api_versions, Some(vec!["*".to_string()]));
        for resource in rule.resources.unwrap_or_default() {
            matched
                .entry(resource)
                .or_default()
                .extend(rule.operations.clone().unwrap_or_default());
        }
    }
    assert!(matched[&plural].contains("CREATE"), "{matched:?}");
    assert!(
        !matched[&plural].contains("UPDATE") && !matched[&plural].contains("*"),
        "people keep updating spec.decision on the main resource: {matched:?}"
    );
    // A PATCH of the status reaches admission as an UPDATE.
    assert!(matched[&status].contains("UPDATE"), "{matched:?}");

    // The one user allowed is the ServiceAccount the Deployment runs as, in its namespace.
    let [deployment] = r.deployments.as_slice() else {
        panic!("one Deployment expected");
    };
    let sa = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.service_account_name.clone())
        .unwrap();
    let namespace = deployment.metadata.namespace.clone().unwrap();
    let username = format!("'system:serviceaccount:{namespace}:{sa}'");
    let expressions: Vec<String> = spec
        .variables
        .iter()
        .flatten()
        .map(|v| v.expression.clone())
        .chain(
            spec.validations
                .iter()
                .flatten()
                .map(|v| v.expression.clone()),
        )
        .collect();
    assert!(
        expressions.contains(&username),
        "{username} in {expressions:?}"
    );
    assert!(
        spec.validations
            .iter()
            .flatten()
            .any(|v| v.expression.contains("request.userInfo.username")),
        "the validation compares the requesting user"
    );
    Ok(())
}

/// patch-safety's allowedKinds in the built-in manifest.
fn allowed_kinds() -> Result<Vec<String>> {
    let text = std::fs::read_to_string(support::repo_root().join("plugins/plugins.yaml"))?;
    let manifest: Value = serde_yaml::from_str(&text)?;
    let entry = manifest["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "patch-safety")
        .context("plugins.yaml has no patch-safety entry")?;
    Ok(entry["settings"]["allowedKinds"]
        .as_array()
        .context("patch-safety has no allowedKinds")?
        .iter()
        .filter_map(|k| k.as_str().map(String::from))
        .collect())
}

/// `kubectl apply --server-side -k deploy/` works from a fresh clone (no build output), and the
/// plugin ConfigMap it creates loads, mounted, as the three built-ins; then the seed's policy
/// from `deploy/examples/` applies.
#[tokio::test(flavor = "multi_thread")]
async fn a_fresh_clone_installs_with_kubectl_apply_k() -> Result<()> {
    let cluster = sre_e2e::TestCluster::start(Default::default()).await?;
    if cluster.is_external() {
        eprintln!(
            "deploy: skipped the install: it would change $SRE_OPERATOR_E2E_KUBECONFIG's cluster"
        );
        return Ok(());
    }
    let work = support::fresh_deploy()?;
    let out = cluster
        .kubectl()
        .args(["apply", "--server-side", "-k"])
        .arg(work.path().join("deploy"))
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("Warning"),
        "kubectl apply --server-side -k deploy/ from a fresh clone: {stderr}"
    );
    let config_maps: kube::Api<ConfigMap> = kube::Api::namespaced(cluster.client(), "sre-operator");
    let cm = config_maps.get("sre-operator-plugins").await?;
    let dir = tempfile::tempdir()?;
    for (name, text) in cm.data.unwrap_or_default() {
        std::fs::write(dir.path().join(name), text)?;
    }
    let runtime = Runtime::new(None)?;
    let set = PluginSet::from_dir(&runtime, dir.path()).map_err(anyhow::Error::msg)?;
    assert!(set.refusals().is_empty(), "refused: {:?}", set.refusals());
    let names: Vec<&str> = set.plugins().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["k8s-reader", "patch-safety", "policy-filter"]);

    // The README's second install command: the seed's policy, accepted by the CRD just applied.
    let out = cluster
        .kubectl()
        .args(["apply", "-f"])
        .arg(work.path().join("deploy/examples"))
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("Warning"),
        "kubectl apply -f deploy/examples/: {stderr}"
    );
    let policies: kube::Api<DebugPolicy> = kube::Api::all(cluster.client());
    policies.get("protect-critical-services").await?;
    Ok(())
}

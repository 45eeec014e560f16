//! `crds/*.yaml` is generated from the Rust types; this fails when the checked-in files drift.

use std::path::Path;

use sre_operator::crd::{crd_file_name, crd_yaml, crds};

#[test]
fn checked_in_crds_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    for crd in crds() {
        let path = dir.join(crd_file_name(&crd));
        let checked_in = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `cargo run -- crds --output-dir crds`",
                path.display()
            )
        });
        assert!(
            checked_in == crd_yaml(&crd),
            "{} is out of date with host/src/crd; run `cargo run -- crds --output-dir crds` and commit it",
            path.display()
        );
    }
}

#[test]
fn every_schema_format_is_one_the_api_server_knows() {
    // The formats kube-apiserver validates (k8s.io/kube-openapi strfmt); any other makes
    // `kubectl apply` print "unrecognized format".
    const KNOWN: &[&str] = &[
        "int32",
        "int64",
        "float",
        "double",
        "byte",
        "binary",
        "date",
        "date-time",
        "duration",
        "password",
        "uuid",
        "email",
        "hostname",
        "ipv4",
        "ipv6",
        "cidr",
        "mac",
        "uri",
    ];
    fn formats(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(f) = map.get("format").and_then(|f| f.as_str()) {
                    out.push(f.to_string());
                }
                map.values().for_each(|v| formats(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| formats(v, out)),
            _ => {}
        }
    }
    for crd in crds() {
        let mut found = Vec::new();
        formats(&serde_json::to_value(&crd).unwrap(), &mut found);
        let unknown: Vec<&String> = found
            .iter()
            .filter(|f| !KNOWN.contains(&f.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "{}: unknown formats {unknown:?}",
            crd_file_name(&crd)
        );
    }
}

#[test]
fn report_columns_and_names_are_what_kubectl_users_rely_on() {
    let [policy, report] = <[_; 2]>::try_from(crds()).unwrap();
    assert_eq!(policy.spec.scope, "Cluster");
    assert_eq!(report.spec.scope, "Namespaced");
    assert_eq!(
        report.spec.names.short_names.as_deref(),
        Some(&["dr".to_string(), "diag".to_string()][..])
    );
    let version = &report.spec.versions[0];
    let columns: Vec<(&str, &str)> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .filter(|c| c.priority.unwrap_or(0) == 0)
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        columns,
        [
            ("Phase", ".status.phase"),
            ("Pod", ".spec.pod.name"),
            ("Class", ".spec.failure.class"),
            ("Age", ".metadata.creationTimestamp")
        ]
    );
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let schema = serde_json::to_value(version.schema.as_ref().unwrap()).unwrap();
    // An optional enum also lists null, as kube's schema transform writes it.
    let values = |v: &serde_json::Value| -> serde_json::Value {
        v.as_array()
            .unwrap()
            .iter()
            .filter(|x| !x.is_null())
            .cloned()
            .collect()
    };
    let phases =
        &values(&schema["openAPIV3Schema"]["properties"]["status"]["properties"]["phase"]["enum"]);
    assert_eq!(
        phases,
        &serde_json::json!([
            "Analyzing",
            "AwaitingApproval",
            "Approved",
            "Applied",
            "Resolved",
            "Unresolved",
            "Rejected",
            "NoFix",
            "Failed"
        ])
    );
    let classes = &values(
        &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["failure"]["properties"]["class"]
            ["enum"],
    );
    assert_eq!(
        classes,
        &serde_json::json!([
            "CrashLoopBackOff",
            "Pending",
            "ImagePullBackOff",
            "OOMKilled",
            "CreateContainerConfigError",
            "ProbeFailure",
            "Evicted",
            "FailedCreate",
            "Alert"
        ])
    );
}

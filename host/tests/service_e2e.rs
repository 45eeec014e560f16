//! A Service that runs but routes nowhere, on a loopback control plane: its backing Pods are
//! ready, yet its clients are refused, because the Service forwards to a targetPort the Pods do
//! not declare, or its selector misses their labels by one. The reports name the Service's
//! mistake (several clients of one Service are one incident), advise the command that fixes it,
//! and the operator writes nothing but its reports: the Service is not the failing Pod's
//! workload, so it is never patched. Init containers that wait for a Service that does not
//! exist never complete: their Pods are reported once they have run past `--init-timeout`. A
//! health endpoint that answers 503 because its log cannot resolve a renamed Service gets the
//! env fix. Lookups the cluster DNS leaves unanswered are one incident on the DNS, per
//! namespace. Connections that time out to a ready Service are blamed on the NetworkPolicy that
//! drops them, read in the Pod's namespace only.

mod support;

use std::time::Duration;

use anyhow::{Result, ensure};
use kube::api::Api;
use serde_json::{Value, json};
use sre_e2e::fault;
use sre_operator::crd::DiagnosticReport;
use support::operator::{
    Operator, await_concluded, operator_setup, operator_writes, shown_without_escapes,
};

const NS: &str = "web";
const SESSIONS_LOG: &str = "\
[2026-12-07 09:12:01 +0000] [7] [INFO] Booting worker with pid: 7
redis.exceptions.ConnectionError: Error 111 connecting to sessions-redis:6379. Connection refused.
[2026-12-07 09:12:01 +0000] [7] [INFO] Worker exiting (pid: 7)";
const ORDERS_LOG: &str = "\
time=2026-12-07T09:12:02Z level=INFO msg=\"connecting to cache\" addr=orders-redis:6379
time=2026-12-07T09:12:02Z level=ERROR msg=\"cache unavailable\" err=\"dial tcp 10.96.41.7:6379: connect: connection refused\" addr=orders-redis:6379";

/// A Deployment of one container `container` with `labels`, optionally crash-looping.
fn deployment(name: &str, labels: Value, container: Value, crash: bool) -> Value {
    let mut template_meta = json!({"labels": labels});
    if crash {
        template_meta["labels"][fault::LABEL] = fault::CRASHLOOP.into();
        template_meta["annotations"] = json!({
            fault::BACKOFF_ANNOTATION: "1s",
            fault::DELAY_ANNOTATION: "300ms",
        });
    }
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": name, "namespace": NS},
           "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                    "template": {"metadata": template_meta,
                                 "spec": {"terminationGracePeriodSeconds": 0,
                                          "containers": [container]}}}})
}

fn redis(name: &str) -> Value {
    deployment(
        name,
        json!({"app": name}),
        json!({"name": "redis", "image": "docker.io/library/redis:7.2.5-alpine",
               "ports": [{"name": "redis", "containerPort": 6379}]}),
        false,
    )
}

fn client(name: &str, container: &str) -> Value {
    deployment(
        name,
        json!({"app": name}),
        json!({"name": container, "image": format!("registry.example.com/web/{name}:2.3.1")}),
        true,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_routes_nowhere_is_named_and_left_to_a_person() -> Result<()> {
    let Some(cluster) = support::cluster_with_policy("service-e2e", NS, json!({})).await? else {
        return Ok(());
    };
    let client_api = cluster.client();
    cluster.set_logs(NS, None, "api", "", SESSIONS_LOG).await?;
    cluster.set_logs(NS, None, "orders", "", ORDERS_LOG).await?;
    support::apply_json(
        &cluster,
        "services",
        json!({"apiVersion": "v1", "kind": "List", "items": [
            redis("sessions-redis"),
            redis("orders-redis"),
            // 6379 forwarded to 6380, where nothing listens.
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "sessions-redis", "namespace": NS},
             "spec": {"selector": {"app": "sessions-redis"},
                      "ports": [{"name": "redis", "port": 6379, "targetPort": 6380}]}},
            // A selector one character off the Pods' label.
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "orders-redis", "namespace": NS},
             "spec": {"selector": {"app": "order-redis"},
                      "ports": [{"name": "redis", "port": 6379, "targetPort": "redis"}]}},
            client("session-api", "api"),
            client("cart-api", "api"),
            client("orders-api", "orders"),
        ]}),
    )?;
    let op = Operator::started(&cluster, "sre-operator-service-0", NS).await?;
    let reports: Api<DiagnosticReport> = Api::namespaced(client_api.clone(), NS);
    let done = await_concluded(&reports, &["session-api", "cart-api", "orders-api"], &op).await?;
    let status = |app: &str| {
        done.iter()
            .find(|r| r.spec.workload.name == app)
            .and_then(|r| r.status.clone())
            .unwrap_or_default()
    };

    // The two clients of sessions-redis are one incident; its lead names the targetPort.
    let (sessions, cart) = (status("session-api"), status("cart-api"));
    ensure!(
        sessions.incident.is_some() && sessions.incident == cart.incident,
        "one incident: {:?} / {:?}",
        sessions.incident,
        cart.incident
    );
    let lead = [&sessions, &cart]
        .into_iter()
        .find(|s| s.incident_detail.is_some())
        .expect("a lead");
    let root_cause = lead.findings.clone().unwrap_or_default().root_cause;
    ensure!(
        root_cause.contains("targetPort 6380") && root_cause.contains("6379 (redis)"),
        "root cause: {root_cause}"
    );
    let advice = lead.message.clone().unwrap_or_default();
    ensure!(
        advice.contains(
            r#"kubectl patch service sessions-redis -n web --type json -p '[{"op":"replace","path":"/spec/ports/0/targetPort","value":"redis"}]'"#
        ),
        "advice: {advice}"
    );

    // orders-redis selects app=order-redis; its ready Pod is app=orders-redis.
    let orders = status("orders-api");
    let root_cause = orders.findings.clone().unwrap_or_default().root_cause;
    ensure!(
        root_cause.contains("selector app=order-redis") && root_cause.contains("app=orders-redis"),
        "root cause: {root_cause}"
    );
    for s in [&sessions, &cart, &orders] {
        ensure!(
            s.suggested_patch.is_none(),
            "a Service is never patched: {:?}",
            s.suggested_patch
        );
    }
    // What a person reads through kubectl sre, with the command to paste.
    let orders_report = done
        .iter()
        .find(|r| r.spec.workload.name == "orders-api")
        .unwrap();
    let shown = shown_without_escapes(&cluster, NS, orders_report)?;
    ensure!(
        shown.contains(r#"kubectl patch service orders-redis -n web"#),
        "kubectl sre show: {shown}"
    );

    // The operator read the Services and Pods and wrote none of them, nor the workloads.
    tokio::time::sleep(Duration::from_secs(1)).await;
    wrote_nothing(&cluster)?;
    Ok(())
}

/// Two Deployments whose init container loops on `nslookup loyalty-db` (kwok's `init-running`
/// stage keeps it running, as a real kubelet would): no event, no waiting reason, only the
/// time. With `--init-timeout 5s` both are reported, Pending `InitContainerRunning`, about the
/// init container, as one incident: the Service they wait for does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_waiting_for_a_missing_service_are_reported_after_the_timeout() -> Result<()>
{
    const APPS: [&str; 2] = ["loyalty-api", "loyalty-worker"];
    let Some(cluster) = support::cluster_with_policy("init-e2e", NS, json!({})).await? else {
        return Ok(());
    };
    let client_api = cluster.client();
    let waiting = "Server:\t\t10.96.0.10\nAddress:\t10.96.0.10:53\n\n** server can't find loyalty-db.web.svc.cluster.local: NXDOMAIN\n\nwaiting for loyalty-db";
    cluster
        .set_logs(NS, None, "wait-for-db", waiting, "")
        .await?;
    let items: Vec<Value> = APPS
        .iter()
        .map(|app| {
            let mut d = deployment(
                app,
                json!({"app": app}),
                json!({"name": "api", "image": format!("registry.example.com/web/{app}:7.2.0")}),
                false,
            );
            let template = &mut d["spec"]["template"];
            template["metadata"]["labels"][fault::LABEL] = fault::INIT_RUNNING.into();
            template["spec"]["initContainers"] = json!([{"name": "wait-for-db", "image": "busybox:1.36",
                "command": ["sh", "-c", "until nslookup loyalty-db.web.svc.cluster.local; do echo waiting for loyalty-db; sleep 2; done"]}]);
            d
        })
        .collect();
    support::apply_json(
        &cluster,
        "init",
        json!({"apiVersion": "v1", "kind": "List", "items": items}),
    )?;
    let mut setup = operator_setup(&cluster).await?;
    setup
        .args
        .extend(["--init-timeout".to_string(), "5s".to_string()]);
    let op = Operator::start(&cluster, &setup, "sre-operator-init-0", NS, false)?;
    op.await_ready(Duration::from_secs(60))?;
    let reports: Api<DiagnosticReport> = Api::namespaced(client_api.clone(), NS);
    let done = await_concluded(&reports, &APPS, &op).await?;
    let incident = done[0].status.as_ref().and_then(|s| s.incident.clone());
    ensure!(incident.is_some(), "in an incident: {:?}", done[0].status);
    for r in &done {
        let failure = &r.spec.failure;
        ensure!(
            failure.class.as_str() == "Pending"
                && failure.reason == "InitContainerRunning"
                && failure.container.as_deref() == Some("wait-for-db"),
            "{failure:?}"
        );
        let status = r.status.clone().unwrap_or_default();
        ensure!(
            status.incident == incident,
            "one incident: {:?}",
            status.incident
        );
        ensure!(
            status.suggested_patch.is_none(),
            "{:?}",
            status.suggested_patch
        );
    }
    let lead = done
        .iter()
        .find_map(|r| r.status.as_ref()?.incident_detail.as_ref().map(|_| r))
        .expect("a lead");
    let root_cause = lead
        .status
        .clone()
        .unwrap_or_default()
        .findings
        .unwrap_or_default()
        .root_cause;
    ensure!(
        root_cause.contains("no Service named loyalty-db"),
        "root cause: {root_cause}"
    );
    wrote_nothing(&cluster)?;
    Ok(())
}

/// A Deployment whose readiness probe answers 503 (kwok's `readiness-never` stage writes what
/// the kubelet writes) because, its log says, it cannot resolve search-es: the Service is now
/// search-es-master. The report follows the log to the Service and proposes the env fix, and
/// until someone approves, the operator writes nothing but its report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_endpoint_failing_on_a_renamed_service_gets_the_env_fix() -> Result<()> {
    let Some(cluster) = support::cluster_with_policy("probe-dep-e2e", NS, json!({})).await? else {
        return Ok(());
    };
    let client_api = cluster.client();
    let log = "INFO:     Application startup complete.\n\
               WARNING suggest.health: elasticsearch unreachable: ConnectionError(GET http://search-es:9200/_cluster/health: Failed to establish a new connection: [Errno -2] Name or service not known)\n\
               INFO:     10.244.2.1:40001 - \"GET /ready HTTP/1.1\" 503";
    cluster.set_logs(NS, None, "suggest", log, "").await?;
    let mut suggest = deployment(
        "suggest",
        json!({"app": "suggest"}),
        json!({"name": "suggest", "image": "registry.example.com/search/suggest:2.9.0",
               "env": [{"name": "ES_URL", "value": "http://search-es:9200"}]}),
        false,
    );
    suggest["spec"]["template"]["metadata"]["labels"][fault::LABEL] = fault::READINESS_NEVER.into();
    support::apply_json(
        &cluster,
        "probe-dep",
        json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "search-es-master", "namespace": NS},
             "spec": {"selector": {"app": "search-es-master"}, "ports": [{"name": "http", "port": 9200}]}},
            suggest,
        ]}),
    )?;
    let op = Operator::started(&cluster, "sre-operator-probe-dep-0", NS).await?;
    let reports: Api<DiagnosticReport> = Api::namespaced(client_api.clone(), NS);
    let done = await_concluded(&reports, &["suggest"], &op).await?;
    let report = &done[0];
    ensure!(
        report.spec.failure.class.as_str() == "ProbeFailure",
        "{:?}",
        report.spec.failure
    );
    let status = report.status.clone().unwrap_or_default();
    let root_cause = status.findings.clone().unwrap_or_default().root_cause;
    ensure!(
        root_cause.contains("search-es-master"),
        "root cause: {root_cause}"
    );
    let patch = status.suggested_patch.expect("a patch");
    ensure!(
        patch
            .patch
            .iter()
            .any(|o| o.value == Some(json!("http://search-es-master:9200"))),
        "patch {:?}",
        patch.patch
    );
    // Nothing is written before approval.
    wrote_nothing(&cluster)?;
    Ok(())
}

/// The cluster DNS stops answering: two workloads of `web` cannot look up their dependencies
/// (Go's lookup timeout, Node's EAI_AGAIN; different names, one an existing Service). One
/// incident on the cluster DNS, investigated once, no patch, no Service a letter away suggested
/// (carts-db is one from cart-db). A workload of another namespace whose log says the same
/// (a tenant can write any log) is not in `web`'s incident, and leads none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_whose_lookups_go_unanswered_are_one_incident_on_the_dns() -> Result<()> {
    const OTHER: &str = "tenant-b";
    let Some(cluster) = support::cluster_with_policy("dns-e2e", NS, json!({})).await? else {
        return Ok(());
    };
    let client_api = cluster.client();
    cluster.create_namespace(OTHER).await?;
    let go = "time=2026-12-07T09:12:02Z level=INFO msg=\"connecting to orders database\" host=orders-db\n\
              time=2026-12-07T09:12:12Z level=ERROR msg=\"cannot open database\" err=\"dial tcp: lookup orders-db on 10.96.0.10:53: read udp 10.244.1.23:52114->10.96.0.10:53: i/o timeout\"";
    let node = "cart-api listening on :8080\n\
                Error: getaddrinfo EAI_AGAIN cart-db\n    at GetAddrInfoReqWrap.onlookup [as oncomplete] (node:dns:120:26)";
    cluster.set_logs(NS, None, "orders", "", go).await?;
    cluster.set_logs(NS, None, "cart", "", node).await?;
    cluster.set_logs(OTHER, None, "billing", "", go).await?;
    let mut billing = client("billing-api", "billing");
    billing["metadata"]["namespace"] = OTHER.into();
    support::apply_json(
        &cluster,
        "dns",
        json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "sre-operator.dev/v1alpha1", "kind": "DebugPolicy",
             "metadata": {"name": "tenant-b"}, "spec": {"rules": [{"namespaces": [OTHER]}]}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "orders-db", "namespace": NS},
             "spec": {"selector": {"app": "orders-db"}, "ports": [{"name": "pg", "port": 5432}]}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "carts-db", "namespace": NS},
             "spec": {"selector": {"app": "carts-db"}, "ports": [{"name": "pg", "port": 5432}]}},
            client("orders-api", "orders"),
            client("cart-api", "cart"),
            billing,
        ]}),
    )?;
    let op = Operator::started(&cluster, "sre-operator-dns-0", &format!("{NS},{OTHER}")).await?;
    let reports: Api<DiagnosticReport> = Api::namespaced(client_api.clone(), NS);
    let done = await_concluded(&reports, &["orders-api", "cart-api"], &op).await?;
    let others: Api<DiagnosticReport> = Api::namespaced(client_api.clone(), OTHER);
    let billing = await_concluded(&others, &["billing-api"], &op).await?;

    let statuses: Vec<_> = done
        .iter()
        .map(|r| r.status.clone().unwrap_or_default())
        .collect();
    let incident = statuses[0].incident.clone();
    ensure!(
        incident.is_some() && statuses.iter().all(|s| s.incident == incident),
        "one incident: {:?}",
        statuses.iter().map(|s| &s.incident).collect::<Vec<_>>()
    );
    let leads: Vec<_> = statuses
        .iter()
        .filter(|s| s.incident_detail.is_some())
        .collect();
    ensure!(leads.len() == 1, "investigated once: {} leads", leads.len());
    let detail = leads[0].incident_detail.clone().unwrap();
    ensure!(
        detail.cause.contains("cluster DNS"),
        "cause: {}",
        detail.cause
    );
    ensure!(
        detail.members.len() == 2 && detail.elsewhere == 0,
        "web's workloads only: {:?} and {} elsewhere",
        detail.members,
        detail.elsewhere
    );
    for s in &statuses {
        ensure!(
            s.suggested_patch.is_none(),
            "no patch: {:?}",
            s.suggested_patch
        );
        let findings = s.findings.clone().unwrap_or_default();
        let text = format!(
            "{} {} {}",
            findings.summary,
            findings.root_cause,
            s.message.clone().unwrap_or_default()
        );
        ensure!(
            !text.contains("carts-db"),
            "a Service a letter away: {text}"
        );
        ensure!(
            findings.root_cause.contains("does not answer"),
            "{}",
            findings.root_cause
        );
    }
    let theirs = billing[0].status.clone().unwrap_or_default();
    ensure!(
        theirs.incident != incident,
        "tenant-b's log joined web's incident {incident:?}"
    );
    let shown = shown_without_escapes(&cluster, NS, &done[0])?;
    ensure!(shown.contains("kube-dns"), "kubectl sre show: {shown}");
    wrote_nothing(&cluster)?;
    Ok(())
}

/// A client whose env names a Service of another namespace by its full name
/// (`ledger.billing.svc.cluster.local`), which does not resolve. Its own namespace has a
/// Service a few letters away (ledger-v2) on the same port: it is not offered in place of the
/// other namespace's, no patch is proposed, and the operator reads nothing of namespace
/// billing (the audit log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_of_another_namespace_is_named_never_replaced_by_one_of_this() -> Result<()> {
    let Some(cluster) = support::cluster_with_policy("fqdn-e2e", NS, json!({})).await? else {
        return Ok(());
    };
    let client_api = cluster.client();
    cluster.create_namespace("billing").await?;
    let log = "time=2026-12-07T09:12:02Z level=ERROR msg=\"cannot start\" err=\"Get \\\"http://ledger.billing.svc.cluster.local:8080/health\\\": dial tcp: lookup ledger.billing.svc.cluster.local on 10.96.0.10:53: no such host\"";
    cluster.set_logs(NS, None, "checkout", "", log).await?;
    let mut checkout = client("checkout-api", "checkout");
    checkout["spec"]["template"]["spec"]["containers"][0]["env"] = json!([
        {"name": "LEDGER_URL", "value": "http://ledger.billing.svc.cluster.local:8080"}
    ]);
    support::apply_json(
        &cluster,
        "fqdn",
        json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "ledger-v2", "namespace": NS},
             "spec": {"selector": {"app": "ledger-v2"}, "ports": [{"name": "http", "port": 8080}]}},
            checkout,
        ]}),
    )?;
    let op = Operator::started(&cluster, "sre-operator-fqdn-0", NS).await?;
    let status = concluded_without_a_patch(&client_api, &op, "checkout-api").await?;
    let findings = status.findings.clone().unwrap_or_default();
    ensure!(
        findings
            .root_cause
            .contains("Service ledger of namespace billing")
            && !findings.root_cause.contains("ledger-v2"),
        "root cause: {}",
        findings.root_cause
    );
    let audit = cluster.audited_requests_of(support::operator::OPERATOR_USER)?;
    let billing: Vec<&str> = audit
        .iter()
        .filter_map(|e| e["requestURI"].as_str())
        .filter(|u| u.contains("/namespaces/billing/"))
        .collect();
    ensure!(billing.is_empty(), "read namespace billing: {billing:?}");
    wrote_nothing(&cluster)?;
    Ok(())
}

/// A NetworkPolicy admits only storefront to the cache, so session-api's connections time out.
/// The report names the policy and the rule to add, suggests no patch, and the audit log shows
/// the policies read in namespace web only (another namespace's policy that would admit it is
/// not the cache's) and nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_policy_that_drops_the_connections_is_named_and_left_to_a_person() -> Result<()> {
    let Some(cluster) = support::cluster_with_policy("netpol-e2e", NS, json!({})).await? else {
        return Ok(());
    };
    let client_api = cluster.client();
    cluster.create_namespace("shared").await?;
    let log = "\
[2026-12-07 09:12:01 +0000] [7] [INFO] Booting worker with pid: 7
redis.exceptions.ConnectionError: Error 110 connecting to sessions-redis:6379. Connection timed out.";
    cluster.set_logs(NS, None, "session-api", "", log).await?;
    let policy = |namespace: &str, name: &str, from: &str| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": name, "namespace": namespace},
               "spec": {"podSelector": {"matchLabels": {"app": "sessions-redis"}},
                        "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": from}}}],
                                     "ports": [{"port": 6379, "protocol": "TCP"}]}]}})
    };
    support::apply_json(
        &cluster,
        "netpol",
        json!({"apiVersion": "v1", "kind": "List", "items": [
            redis("sessions-redis"),
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "sessions-redis", "namespace": NS},
             "spec": {"selector": {"app": "sessions-redis"},
                      "ports": [{"name": "redis", "port": 6379, "targetPort": "redis"}]}},
            policy(NS, "sessions-redis-ingress", "storefront"),
            policy("shared", "sessions-redis-from-api", "session-api"),
            client("session-api", "session-api"),
        ]}),
    )?;
    let op = Operator::started(&cluster, "sre-operator-netpol-0", NS).await?;
    let status = concluded_without_a_patch(&client_api, &op, "session-api").await?;
    let findings = status.findings.clone().unwrap_or_default();
    ensure!(
        findings
            .summary
            .contains("NetworkPolicy sessions-redis-ingress drops")
            && findings.root_cause.contains("for ingress")
            && !findings.root_cause.contains("sessions-redis-from-api"),
        "findings: {findings:?}"
    );
    let message = status.message.clone().unwrap_or_default();
    ensure!(
        message.contains("{app: session-api}")
            && message.contains("kubectl -n web edit networkpolicy sessions-redis-ingress"),
        "message: {message}"
    );
    read_policies_only_in(&cluster, NS)?;
    wrote_nothing(&cluster)?;
    let writes = operator_writes(&cluster, &["networkpolicies"])?;
    ensure!(writes.is_empty(), "the operator wrote: {writes:?}");
    Ok(())
}

/// An egress policy of namespace web lets its Pods reach only each other: every DNS lookup is
/// dropped. The report names the policy (not the cluster DNS) and the rule to add; a policy of
/// another namespace that would admit the lookups is neither read nor counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_egress_policy_that_drops_dns_lookups_is_named() -> Result<()> {
    let Some(cluster) = support::cluster_with_policy("netpol-dns-e2e", NS, json!({})).await? else {
        return Ok(());
    };
    let client_api = cluster.client();
    cluster.create_namespace("shared").await?;
    let log = "time=2026-12-07T09:12:12Z level=ERROR msg=\"cannot open database\" err=\"dial tcp: lookup orders-db on 10.96.0.10:53: read udp 10.244.1.23:52114->10.96.0.10:53: i/o timeout\"";
    cluster.set_logs(NS, None, "checkout", "", log).await?;
    let egress = |namespace: &str, name: &str, to: Value| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": name, "namespace": namespace},
               "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": to}]}})
    };
    support::apply_json(
        &cluster,
        "netpol-dns",
        json!({"apiVersion": "v1", "kind": "List", "items": [
            egress(NS, "web-egress", json!([{"podSelector": {}}])),
            egress("shared", "allow-everything", json!([{"namespaceSelector": {}}])),
            client("checkout-api", "checkout"),
        ]}),
    )?;
    let op = Operator::started(&cluster, "sre-operator-netpol-dns-0", NS).await?;
    let status = concluded_without_a_patch(&client_api, &op, "checkout-api").await?;
    let findings = status.findings.clone().unwrap_or_default();
    ensure!(
        findings
            .summary
            .contains("NetworkPolicy web-egress drops its DNS lookups")
            && findings.root_cause.contains("UDP port 53"),
        "findings: {findings:?}"
    );
    let message = status.message.clone().unwrap_or_default();
    ensure!(
        message.contains("k8s-app: kube-dns")
            && message.contains("kubectl -n web edit networkpolicy web-egress"),
        "message: {message}"
    );
    read_policies_only_in(&cluster, NS)?;
    let writes = operator_writes(&cluster, &["networkpolicies", "deployments", "pods"])?;
    ensure!(writes.is_empty(), "the operator wrote: {writes:?}");
    Ok(())
}

/// The report of `app`'s workload once concluded, checked to suggest no patch.
async fn concluded_without_a_patch(
    client: &kube::Client,
    op: &Operator,
    app: &str,
) -> Result<sre_operator::crd::DiagnosticReportStatus> {
    let reports: Api<DiagnosticReport> = Api::namespaced(client.clone(), NS);
    let done = await_concluded(&reports, &[app], op).await?;
    let status = done[0].status.clone().unwrap_or_default();
    ensure!(
        status.suggested_patch.is_none(),
        "patch {:?}",
        status.suggested_patch
    );
    Ok(status)
}

/// Checks in the audit log that the operator read NetworkPolicies, and only namespace `ns`'s.
fn read_policies_only_in(cluster: &sre_e2e::TestCluster, ns: &str) -> Result<()> {
    let audit = cluster.audited_requests_of(support::operator::OPERATOR_USER)?;
    let reads: Vec<&str> = audit
        .iter()
        .filter(|e| e["objectRef"]["resource"] == "networkpolicies")
        .filter_map(|e| e["requestURI"].as_str())
        .collect();
    let prefix = format!("/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies");
    ensure!(
        !reads.is_empty() && reads.iter().all(|u| u.starts_with(&prefix)),
        "NetworkPolicy reads (all must be namespace {ns}'s): {reads:?}"
    );
    Ok(())
}

/// Checks in the audit log that the operator wrote no Service, Pod or workload: a Service's
/// mistake is a person's to fix, and a patch waits for approval.
fn wrote_nothing(cluster: &sre_e2e::TestCluster) -> Result<()> {
    let writes = operator_writes(cluster, &["services", "pods", "deployments", "replicasets"])?;
    ensure!(writes.is_empty(), "the operator wrote: {writes:?}");
    Ok(())
}

//! What the Pod store may hold: Pods of the namespaces of `--namespace` (all without it) that some
//! DebugPolicy selects, trimmed to what detection and screening read. A tenant who can only create
//! Pods must not be able to grow the operator's memory with Pods no policy covers, or with
//! megabytes of env values or annotations on a stored Pod. When a policy edit widens what the
//! policies reach, [`relists`] fetches the Pods that came into reach.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use std::borrow::Cow;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::crd::DebugPolicy;
use crate::failure::may_be_failing;
use crate::policy::PolicySet;

/// The namespaces whose failing Pods are stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodScope {
    /// Every namespace (no `--namespace`).
    All,
    /// Only these (possibly none).
    Namespaces(BTreeSet<String>),
}

impl PodScope {
    pub fn contains(&self, namespace: &str) -> bool {
        match self {
            PodScope::All => true,
            PodScope::Namespaces(set) => set.contains(namespace),
        }
    }
}

/// Which Pods the store keeps.
#[derive(Clone, Copy)]
pub struct StoreScope<'a> {
    pub namespaces: &'a PodScope,
    pub policies: &'a PolicySet,
}

impl StoreScope<'_> {
    /// A Pod that may be failing, in `--namespace`, that some policy selects.
    pub fn keeps(&self, pod: &Pod) -> bool {
        may_be_failing(pod)
            && self
                .namespaces
                .contains(pod.metadata.namespace.as_deref().unwrap_or(""))
            && self.policies.selects_pod(pod)
    }
}

/// The policies in force, compiled once per change of the policy store rather than per Pod
/// event: the store filter asks for every watch event.
#[derive(Default)]
pub struct CompiledPolicies(Mutex<Option<Compiled>>);

/// The policies a set was compiled from, and the set.
type Compiled = (Vec<Arc<DebugPolicy>>, Arc<PolicySet>);

impl CompiledPolicies {
    /// The compiled set for what `store` holds now; `compile` runs only when a policy changed
    /// (the reflector replaces an object's `Arc` on every update, so identity is the version).
    pub fn current(
        &self,
        store: &Store<DebugPolicy>,
        compile: impl FnOnce(&[Arc<DebugPolicy>]) -> PolicySet,
    ) -> Arc<PolicySet> {
        let mut state = store.state();
        state.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((seen, set)) = cached.as_ref()
            && seen.len() == state.len()
            && seen.iter().zip(&state).all(|(a, b)| Arc::ptr_eq(a, b))
        {
            return set.clone();
        }
        let set = Arc::new(compile(&state));
        *cached = Some((state, set.clone()));
        set
    }
}

/// Watch events that bring the store in line with the policies after each change: an Apply for
/// every Pod that came into reach (listed in pages from the namespaces the policies now name),
/// a Delete for every stored Pod that left it. Nothing happens when an edit does not change
/// what the policies reach (classes, approval, budgets). `policies` gives the set in force once
/// `known` resolves (the policy store listed); `changed` fires after every policy event.
pub fn relists(
    api: Api<Pod>,
    stored: Store<StoredPod>,
    namespaces: PodScope,
    known: impl std::future::Future + Send + 'static,
    policies: impl Fn() -> Arc<PolicySet> + Send + 'static,
    mut changed: tokio::sync::watch::Receiver<()>,
) -> impl Stream<Item = watcher::Event<StoredPod>> + Send {
    async_stream::stream! {
        // What the watch's own initial list was filtered with: it starts once the policies are
        // known too.
        known.await;
        changed.borrow_and_update();
        let mut reached = policies();
        while changed.changed().await.is_ok() {
            let now = policies();
            if now.reach() == reached.reach() {
                continue;
            }
            let keeps = StoreScope { namespaces: &namespaces, policies: &now };
            for pod in stored.state() {
                if !keeps.keeps(&pod.pod()) {
                    yield watcher::Event::Delete((*pod).clone());
                }
            }
            let mut listed = 0usize;
            match list_in_reach(&api, &namespaces, &now).await {
                Ok(pods) => {
                    for pod in pods {
                        listed += 1;
                        let key = ObjectRef::new(&pod.name_any())
                            .within(&pod.namespace().unwrap_or_default());
                        if keeps.keeps(&pod) && stored.get(&key).is_none() {
                            yield watcher::Event::Apply(StoredPod::new(pod));
                        }
                    }
                    tracing::info!(listed, "the DebugPolicies changed what they reach; Pods re-listed");
                    reached = now;
                }
                // Retried on the next policy change or the watch's own re-list; the operator
                // keeps acting on what it stores.
                Err(error) => tracing::warn!(%error, "re-listing Pods after a DebugPolicy change failed"),
            }
        }
    }
}

/// The Pods of the namespaces the policies can select, within `--namespace`, page by page; each
/// page is filtered by the caller before the next is read.
async fn list_in_reach(
    api: &Api<Pod>,
    namespaces: &PodScope,
    policies: &PolicySet,
) -> kube::Result<Vec<Pod>> {
    let targets: Vec<Option<String>> = match (policies.namespaces(), namespaces) {
        (None, PodScope::All) => vec![None],
        (None, PodScope::Namespaces(set)) => set.iter().cloned().map(Some).collect(),
        (Some(named), scope) => named
            .into_iter()
            .filter(|n| scope.contains(n))
            .map(Some)
            .collect(),
    };
    let mut pods = Vec::new();
    for namespace in targets {
        let api = match &namespace {
            Some(ns) => Api::namespaced(api.clone().into_client(), ns),
            None => api.clone(),
        };
        let mut params = ListParams::default().limit(super::pod::POD_PAGE_SIZE);
        loop {
            let page = tokio::time::timeout(Duration::from_secs(60), api.list(&params))
                .await
                .map_err(|_| kube::Error::Service("listing Pods took over 60s".into()))??;
            let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
            pods.extend(page.items.into_iter().filter(may_be_failing));
            match next {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
    }
    Ok(pods)
}

/// A Pod as the store keeps it: [`trim`]med, its metadata parsed (the store's key, what
/// selectors and owners read) and its spec and status as compact JSON, parsed again when it is
/// reconciled ([`StoredPod::pod`]). k8s-openapi's structs hold every optional field inline (a
/// `Volume` is 3.2 KB, and the admission-injected service-account volume alone ~5 KB a Pod), so
/// a parsed failing Pod was ~12 KB of the operator's memory for 3-4 KB of JSON: 12 MB of the
/// burst benchmark's 25 MB live heap for its 1,010 failing Pods. Parsing one again costs tens
/// of microseconds, once per reconcile.
#[derive(Clone, Debug)]
pub struct StoredPod {
    metadata: ObjectMeta,
    /// The trimmed Pod without its metadata, as JSON.
    rest: Box<str>,
}

impl StoredPod {
    /// `pod` trimmed and packed.
    pub fn new(pod: Pod) -> StoredPod {
        let mut pod = trim(pod);
        let metadata = std::mem::take(&mut pod.metadata);
        // A Pod always serializes: every map in it has string keys.
        let rest = serde_json::to_string(&pod).unwrap_or_default();
        StoredPod {
            metadata,
            rest: rest.into_boxed_str(),
        }
    }

    /// A Pod leaving the store (a Delete): only its key is read.
    pub fn leaving(pod: Pod) -> StoredPod {
        StoredPod {
            metadata: pod.metadata,
            rest: Box::default(),
        }
    }

    /// The stored Pod (trimmed as [`trim`] says), parsed.
    pub fn pod(&self) -> Pod {
        let mut pod = serde_json::from_str::<Pod>(&self.rest).unwrap_or_else(|e| {
            // What `new` wrote: unreachable but for a k8s-openapi that does not read its own
            // output. The Pod then shows no failure and is left alone, loudly.
            tracing::error!(pod = ?self.metadata.name, error = %e, "a stored Pod does not parse");
            Pod::default()
        });
        pod.metadata = self.metadata.clone();
        pod
    }
}

impl kube::Resource for StoredPod {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Pod::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        Pod::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        Pod::version(dt)
    }
    fn api_version(dt: &()) -> Cow<'_, str> {
        Pod::api_version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        Pod::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The Controller's bound (it could watch the type itself); the operator's streams make these
/// with [`StoredPod::new`].
impl<'de> serde::Deserialize<'de> for StoredPod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Pod::deserialize(d).map(StoredPod::new)
    }
}

/// Annotation values larger than this are dropped from a stored Pod: no annotation the policy
/// filter reads (an opt-out flag) is anywhere near it.
const MAX_ANNOTATION_BYTES: usize = 4 << 10;

/// A Pod as the store keeps it: without managedFields, the last-applied annotation, env values
/// (names and references stay; detection never reads a value, and the investigation reads the
/// Pod afresh) and oversized annotation values.
pub fn trim(mut pod: Pod) -> Pod {
    pod.metadata.managed_fields = None;
    if let Some(annotations) = pod.metadata.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
        annotations.retain(|_, v| v.len() <= MAX_ANNOTATION_BYTES);
    }
    fn strip_env(containers: &mut [Container]) {
        for c in containers {
            for var in c.env.iter_mut().flatten() {
                var.value = None;
            }
        }
    }
    if let Some(spec) = pod.spec.as_mut() {
        strip_env(&mut spec.containers);
        strip_env(spec.init_containers.get_or_insert_with(Vec::new));
        if spec.init_containers.as_ref().is_some_and(Vec::is_empty) {
            spec.init_containers = None;
        }
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 100 hostile Pending Pods in a namespace no policy names, or without the label the policy
    /// selects, cost the store nothing.
    #[test]
    fn the_store_keeps_only_failing_pods_a_policy_selects() {
        let policies = crate::policy::parse_policies(
            "apiVersion: sre-operator.dev/v1alpha1\nkind: DebugPolicy\nmetadata: {name: shop}\nspec:\n  rules: [{namespaces: [shop], selector: {matchLabels: {app: web}}}]\n",
            "shop.yaml",
        )
        .unwrap();
        let policies = PolicySet::compile(&policies).unwrap();
        let pending = |namespace: &str, app: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p", "namespace": namespace, "labels": {"app": app}},
                "spec": {"containers": [{"name": "app", "image": "web:1"}]},
                "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled",
                    "status": "False", "reason": "Unschedulable"}]}
            }))
            .unwrap()
        };
        let all = PodScope::All;
        let scope = StoreScope {
            namespaces: &all,
            policies: &policies,
        };
        assert!(scope.keeps(&pending("shop", "web")));
        assert!(
            !scope.keeps(&pending("attic", "web")),
            "no policy names attic"
        );
        assert!(
            !scope.keeps(&pending("shop", "miner")),
            "the selector says app=web"
        );
        let only_web = PodScope::Namespaces(["web".to_string()].into());
        let bounded = StoreScope {
            namespaces: &only_web,
            policies: &policies,
        };
        assert!(!bounded.keeps(&pending("shop", "web")), "--namespace web");
        assert_eq!(policies.namespaces(), Some(["shop".to_string()].into()));
    }

    #[test]
    fn a_stored_pod_keeps_what_detection_reads_and_drops_bulk() {
        let big = "x".repeat(200 << 10);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "shop", "labels": {"app": "web"},
                "annotations": {"sre-operator.dev/ignore": "true", "blob": big,
                                "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"containers": [{"name": "app", "image": "web:1", "command": ["/app"],
                "env": [{"name": "BLOB", "value": big},
                        {"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}],
                "resources": {"limits": {"memory": "128Mi"}}}]}
        }))
        .unwrap();
        let trimmed = trim(pod);
        let text = serde_json::to_string(&trimmed).unwrap();
        assert!(text.len() < 2048, "{} bytes stored", text.len());
        for kept in [
            "\"sre-operator.dev/ignore\":\"true\"",
            "\"command\":[\"/app\"]",
            "\"name\":\"BLOB\"",
            "secretKeyRef",
            "128Mi",
            "\"app\":\"web\"",
        ] {
            assert!(
                text.contains(kept),
                "{kept} is read by detection or screening: {text}"
            );
        }
    }

    /// Every Pod of every dump the tests carry (kubectl's, the scenarios', kubelet-written
    /// statuses of every failure class) comes back from the packed store as `trim` leaves it.
    #[test]
    fn a_packed_pod_reads_back_as_trimmed() {
        fn pod_lists(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pod_lists(&path, found);
                } else if path.file_name().is_some_and(|n| n == "pods.json") {
                    found.push(path);
                }
            }
        }
        let mut lists = Vec::new();
        pod_lists(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests"),
            &mut lists,
        );
        let mut pods = 0;
        for list in &lists {
            let value: serde_json::Value =
                serde_json::from_slice(&std::fs::read(list).unwrap()).unwrap();
            for item in value["items"].as_array().into_iter().flatten() {
                let pod: Pod = serde_json::from_value(item.clone()).unwrap();
                let packed = StoredPod::new(pod.clone());
                assert_eq!(packed.pod(), trim(pod), "{}", list.display());
                pods += 1;
            }
        }
        assert!(pods > 100, "only {pods} Pods in {} lists", lists.len());
    }
}

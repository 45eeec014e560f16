//! A [`Cluster`] over the directory `kubectl cluster-info dump --output-directory DIR` writes:
//! `DIR/nodes.json`, per namespace `DIR/NS/{events,replication-controllers,services,daemonsets,
//! deployments,replicasets,pods}.json` (Lists whose items carry no kind/apiVersion) and
//! `DIR/NS/POD/logs.txt`. `-o yaml` dumps (`.yaml` files) work the same. Files for kinds kubectl
//! does not dump (`configmaps.json`, `persistentvolumeclaims.json`, `statefulsets.json`, ...) are
//! read when present, so a user can add them with `kubectl get X -o json > DIR/NS/X.json`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Event, Pod};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

mod compact;

use super::logs::tail;
use super::{
    Cluster, ClusterError, ContainerLog, Involved, LogRequest, Logs, Object, ResourceKind, Result,
    parse_dump_logs, redact_secret,
};

type EventKey = (String, String, String); // namespace, involved kind, involved name

/// An object as compact JSON (with `kind` and `apiVersion`, Secret values redacted), parsed when
/// asked for. A dump of 10,000 Pods is about 200 MB of indented JSON: held as `serde_json::Value`
/// it took over a gigabyte; as compact text it takes about a third of the file size.
type Text = Arc<str>;

pub struct DumpCluster {
    root: PathBuf,
    /// kind -> namespace ("" for cluster-scoped) -> objects in file order.
    objects: HashMap<ResourceKind, BTreeMap<String, Vec<Text>>>,
    by_name: HashMap<(ResourceKind, String, String), Text>,
    /// Pods by `spec.nodeName`, for node usage.
    pods_by_node: HashMap<String, Vec<Text>>,
    /// Each node's load, computed at the first ask and kept: a dump does not change.
    node_loads: std::sync::OnceLock<std::result::Result<HashMap<String, super::NodeLoad>, String>>,
    events: HashMap<EventKey, Vec<Event>>,
    logs: HashMap<(String, String), Vec<ContainerLog>>,
    namespaces: BTreeSet<String>,
    /// (kind, namespace) lists read from a file; "" for cluster-scoped kinds.
    loaded: std::collections::HashSet<(ResourceKind, String)>,
}

/// What `kubectl cluster-info dump` writes; other kinds are in a dump only when a user added them.
fn kubectl_dumps(kind: ResourceKind) -> bool {
    matches!(
        kind,
        ResourceKind::Node
            | ResourceKind::Namespace
            | ResourceKind::Pod
            | ResourceKind::Event
            | ResourceKind::Service
            | ResourceKind::ReplicationController
            | ResourceKind::Deployment
            | ResourceKind::ReplicaSet
            | ResourceKind::DaemonSet
    )
}

fn dump_error(path: &Path, message: impl Into<String>) -> ClusterError {
    ClusterError::Dump {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// The JSON or YAML file for a stem, if either exists.
fn find_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    ["json", "yaml", "yml"]
        .iter()
        .map(|ext| dir.join(format!("{stem}.{ext}")))
        .find(|p| p.is_file())
}

#[derive(Deserialize)]
struct ListDoc<'a> {
    #[serde(default)]
    kind: Option<String>,
    #[serde(borrow, default)]
    items: Option<Vec<&'a RawValue>>,
}

/// The same, when the items are not a list: for the error message.
#[derive(Deserialize)]
struct ListHead<'a> {
    #[serde(default)]
    kind: Option<String>,
    #[serde(borrow, default)]
    #[allow(dead_code)]
    items: Option<&'a RawValue>,
}

/// A stored object: its compact text, its name, and (for a Pod) its node.
struct Item {
    text: Text,
    name: String,
    node: Option<String>,
}

fn read_list(path: &Path, kind: ResourceKind, namespace: &str) -> Result<Vec<Item>> {
    let bytes = std::fs::read(path).map_err(|e| dump_error(path, format!("cannot read: {e}")))?;
    let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    let expected = kind.list_kind();
    let check_kind = |found: Option<&str>| {
        if matches!(found, Some(k) if k == expected || k == "List") {
            return Ok(());
        }
        Err(dump_error(
            path,
            format!(
                "expected a {expected}, found {}",
                found
                    .map(|k| format!("a {k}"))
                    .unwrap_or_else(|| "an object without a kind".into())
            ),
        ))
    };
    if is_yaml {
        let document: Value = serde_yaml::from_slice(&bytes)
            .map_err(|e| dump_error(path, format!("invalid YAML: {e}")))?;
        check_kind(document.get("kind").and_then(Value::as_str))?;
        let items = match document.get("items") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(dump_error(path, "`items` is not a list")),
        };
        return items
            .iter()
            .enumerate()
            .map(|(i, item)| item_from_value(path, kind, namespace, i, item.clone()))
            .collect();
    }
    let json_error = |e: serde_json::Error| {
        let hint = if e.is_eof() {
            " (the file is truncated)"
        } else {
            ""
        };
        dump_error(path, format!("invalid JSON: {e}{hint}"))
    };
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| dump_error(path, format!("invalid JSON: not UTF-8 ({e})")))?;
    // One pass checks and compacts a list as kubectl writes it; serde reads anything else and
    // names what is wrong with it.
    if let Some(list) = compact::list(text) {
        check_kind(list.kind.as_deref())?;
        return list
            .items
            .into_iter()
            .enumerate()
            .map(|(i, (at, found))| item_from_compact(path, kind, namespace, i, &text[at], found))
            .collect();
    }
    // A second pass only to explain a file whose items are not a list.
    let document: ListDoc = match serde_json::from_str(text) {
        Ok(document) => document,
        Err(e) if e.is_data() => {
            let head: ListHead = serde_json::from_str(text).map_err(json_error)?;
            check_kind(head.kind.as_deref())?;
            return Err(dump_error(path, "`items` is not a list"));
        }
        Err(e) => return Err(json_error(e)),
    };
    check_kind(document.kind.as_deref())?;
    let Some(items) = document.items else {
        return Ok(Vec::new());
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, raw)| item_from_raw(path, kind, namespace, i, raw.get()))
        .collect()
}

/// An item serde found in a list the one-pass walk did not take: compacted on its own, or
/// through a `Value` when the walk does not take it either.
fn item_from_raw(
    path: &Path,
    kind: ResourceKind,
    namespace: &str,
    i: usize,
    raw: &str,
) -> Result<Item> {
    if !raw.starts_with('{') {
        return Err(dump_error(path, format!("items[{i}] is not an object")));
    }
    match compact::compact(raw) {
        Some(found) => item_from_compact(path, kind, namespace, i, raw, found),
        None => {
            let value: Value = serde_json::from_str(raw)
                .map_err(|e| dump_error(path, format!("items[{i}]: {e}")))?;
            item_from_value(path, kind, namespace, i, value)
        }
    }
}

/// The fast path: the item as kubectl wrote it (`raw`), compacted ([`compact`]), `kind` and
/// `apiVersion` put back. Anything unusual (no namespace where one belongs, a Secret) takes the
/// slow path through a `Value`.
fn item_from_compact(
    path: &Path,
    kind: ResourceKind,
    namespace: &str,
    i: usize,
    raw: &str,
    found: compact::Compact<'_>,
) -> Result<Item> {
    match found.kind.as_deref() {
        None => {}
        Some(k) if k == kind.kind() => {}
        Some(k) => {
            return Err(dump_error(
                path,
                format!("items[{i}] is a {k}, expected a {kind}"),
            ));
        }
    }
    if !found.has_metadata {
        return Err(dump_error(path, format!("items[{i}] has no metadata")));
    }
    let Some(name) = found.name.as_deref().filter(|n| !n.is_empty()) else {
        return Err(dump_error(path, format!("items[{i}] has no metadata.name")));
    };
    let needs_namespace = kind.namespaced() && !namespace.is_empty() && found.namespace.is_none();
    if needs_namespace || kind == ResourceKind::Secret {
        let value: Value =
            serde_json::from_str(raw).map_err(|e| dump_error(path, format!("items[{i}]: {e}")))?;
        return item_from_value(path, kind, namespace, i, value);
    }
    let mut head = String::new();
    if found.kind.is_none() {
        head.push_str(&format!("\"kind\":\"{}\",", kind.kind()));
    }
    if !found.has_api_version {
        head.push_str(&format!("\"apiVersion\":\"{}\",", kind.api_version()));
    }
    let mut text = found.text;
    if !head.is_empty() {
        if text == "{}" {
            head.pop();
        }
        text.insert_str(1, &head);
    }
    Ok(Item {
        name: name.to_string(),
        node: found
            .node_name
            .filter(|_| kind == ResourceKind::Pod)
            .map(|n| n.into_owned()),
        text: text.into(),
    })
}

fn item_from_value(
    path: &Path,
    kind: ResourceKind,
    namespace: &str,
    i: usize,
    mut item: Value,
) -> Result<Item> {
    let Some(obj) = item.as_object_mut() else {
        return Err(dump_error(path, format!("items[{i}] is not an object")));
    };
    match obj.get("kind").and_then(Value::as_str) {
        None => {
            obj.insert("kind".into(), kind.kind().into());
        }
        Some(k) if k == kind.kind() => {}
        Some(k) => {
            return Err(dump_error(
                path,
                format!("items[{i}] is a {k}, expected a {kind}"),
            ));
        }
    }
    obj.entry("apiVersion")
        .or_insert_with(|| kind.api_version().into());
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Err(dump_error(path, format!("items[{i}] has no metadata")));
    };
    let Some(name) = meta
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
    else {
        return Err(dump_error(path, format!("items[{i}] has no metadata.name")));
    };
    if kind.namespaced() && !namespace.is_empty() {
        meta.entry("namespace").or_insert_with(|| namespace.into());
    }
    // As the fast path and the live reader: no bookkeeping.
    meta.remove("managedFields");
    if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    if kind == ResourceKind::Secret {
        redact_secret(&mut item);
    }
    let node = (kind == ResourceKind::Pod)
        .then(|| item.pointer("/spec/nodeName").and_then(Value::as_str))
        .flatten()
        .map(str::to_string);
    Ok(Item {
        text: item.to_string().into(),
        name,
        node,
    })
}

/// Parses a stored object.
fn parse(text: &str) -> Object {
    // The text was written by this module from valid JSON.
    Arc::new(serde_json::from_str(text).unwrap_or(Value::Null))
}

/// Parses a stored Pod into its type, naming it when it does not fit.
fn typed_pod(text: &str) -> Result<Pod> {
    serde_json::from_str(text).map_err(|e| malformed_pod(text, e))
}

fn malformed_pod(text: &str, e: serde_json::Error) -> ClusterError {
    ClusterError::Malformed {
        kind: "Pod".into(),
        name: super::object_name(&parse(text)),
        message: e.to_string(),
    }
}

/// A Pod with only its node and status parsed: what [`crate::failure::may_be_failing`] reads.
/// The metadata and the spec's other fields (most of a Pod) are skipped.
fn status_pod(text: &str) -> Result<Pod> {
    #[derive(Deserialize)]
    struct View {
        spec: Option<NodeOnly>,
        status: Option<k8s_openapi::api::core::v1::PodStatus>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct NodeOnly {
        node_name: Option<String>,
    }
    let view: View = serde_json::from_str(text).map_err(|e| malformed_pod(text, e))?;
    Ok(Pod {
        metadata: Default::default(),
        spec: view.spec.map(|s| k8s_openapi::api::core::v1::PodSpec {
            node_name: s.node_name,
            ..Default::default()
        }),
        status: view.status,
    })
}

/// A Pod with only what its node's load reads ([`super::UsagePod`]).
fn usage_pod(text: &str) -> Result<Pod> {
    serde_json::from_str::<super::UsagePod>(text)
        .map(Pod::from)
        .map_err(|e| malformed_pod(text, e))
}

/// What one namespace folder holds, read and compacted, not yet in the dump.
struct NamespaceRead {
    namespace: String,
    lists: Vec<(ResourceKind, Vec<Item>)>,
    events: Vec<(EventKey, Event)>,
    logs: Vec<(String, Vec<ContainerLog>)>,
}

/// Reads one namespace folder; None when it holds no list (not a namespace folder).
fn read_namespace(dir: &Path, namespace: &str) -> Result<Option<NamespaceRead>> {
    let mut read = NamespaceRead {
        namespace: namespace.to_string(),
        lists: Vec::new(),
        events: Vec::new(),
        logs: Vec::new(),
    };
    for kind in ResourceKind::ALL.into_iter().filter(|k| k.namespaced()) {
        let Some(path) = find_file(dir, kind.dump_file_stem()) else {
            continue;
        };
        let items = read_list(&path, kind, namespace)?;
        if kind == ResourceKind::Event {
            for item in &items {
                let event: Event = serde_json::from_str(&item.text)
                    .map_err(|e| dump_error(&path, format!("Event {}: {e}", item.name)))?;
                let involved = &event.involved_object;
                let key = (
                    involved
                        .namespace
                        .clone()
                        .unwrap_or_else(|| namespace.to_string()),
                    involved.kind.clone().unwrap_or_default(),
                    involved.name.clone().unwrap_or_default(),
                );
                read.events.push((key, event));
            }
        }
        read.lists.push((kind, items));
    }
    if read.lists.is_empty() {
        return Ok(None);
    }
    let pod_dirs =
        std::fs::read_dir(dir).map_err(|e| dump_error(dir, format!("cannot list: {e}")))?;
    for entry in pod_dirs.filter_map(|e| e.ok()) {
        let logs_path = entry.path().join("logs.txt");
        if !logs_path.is_file() {
            continue;
        }
        let pod = entry.file_name().to_string_lossy().to_string();
        let text = std::fs::read(&logs_path)
            .map_err(|e| dump_error(&logs_path, format!("cannot read: {e}")))?;
        let text = String::from_utf8_lossy(&text);
        let frames =
            parse_dump_logs(&text, namespace, &pod).map_err(|m| dump_error(&logs_path, m))?;
        read.logs.push((pod, frames));
    }
    Ok(Some(read))
}

/// `f` of every item, in order, spread over the cores: reading a dump and typing its Pods are
/// CPU-bound and independent per item.
fn on_every_core<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    // Below a few items the threads cost more than they save.
    if workers < 2 || items.len() < 8 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

impl DumpCluster {
    /// Reads a dump directory. Missing optional files are fine; a malformed one is an error that
    /// names it.
    pub fn load(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        if !root.exists() {
            return Err(dump_error(
                &root,
                "no such directory; pass the folder written by `kubectl cluster-info dump --output-directory DIR`",
            ));
        }
        if !root.is_dir() {
            return Err(dump_error(
                &root,
                "not a directory; pass the folder a cluster dump was written to",
            ));
        }
        let mut dump = DumpCluster {
            root: root.clone(),
            objects: HashMap::new(),
            by_name: HashMap::new(),
            pods_by_node: HashMap::new(),
            node_loads: Default::default(),
            events: HashMap::new(),
            logs: HashMap::new(),
            namespaces: BTreeSet::new(),
            loaded: Default::default(),
        };
        for kind in ResourceKind::ALL.into_iter().filter(|k| !k.namespaced()) {
            if let Some(path) = find_file(&root, kind.dump_file_stem()) {
                let items = read_list(&path, kind, "")?;
                dump.insert(kind, "", items);
            }
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&root)
            .map_err(|e| dump_error(&root, format!("cannot list: {e}")))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        entries.sort();
        let folders: Vec<(PathBuf, String)> = entries
            .into_iter()
            .filter_map(|dir| {
                let namespace = dir.file_name()?.to_str()?.to_string();
                Some((dir, namespace))
            })
            .collect();
        // The folders are read on every core, the results taken in folder order: the dump and
        // its first error are the same as one thread's.
        for read in on_every_core(&folders, |(dir, namespace)| read_namespace(dir, namespace)) {
            if let Some(read) = read? {
                dump.absorb(read);
            }
        }
        if dump.namespaces.is_empty() && dump.objects.is_empty() {
            return Err(dump_error(
                &root,
                "holds no cluster dump: expected nodes.json and one folder per namespace with pods.json \
                 (as `kubectl cluster-info dump --output-directory DIR` writes)",
            ));
        }
        if !dump.objects.contains_key(&ResourceKind::Namespace) {
            // kubectl does not dump Namespace objects; the folders say which exist.
            let synthesized: Vec<Item> = dump
                .namespaces
                .iter()
                .map(|ns| Item {
                    text: serde_json::json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": ns}})
                        .to_string()
                        .into(),
                    name: ns.clone(),
                    node: None,
                })
                .collect();
            dump.insert(ResourceKind::Namespace, "", synthesized);
        }
        Ok(dump)
    }

    /// Takes in what [`read_namespace`] read of one namespace folder.
    fn absorb(&mut self, read: NamespaceRead) {
        let NamespaceRead {
            namespace,
            lists,
            events,
            logs,
        } = read;
        for (key, event) in events {
            self.events.entry(key).or_default().push(event);
        }
        for (kind, items) in lists {
            self.insert(kind, &namespace, items);
        }
        for (pod, frames) in logs {
            self.logs.insert((namespace.clone(), pod), frames);
        }
        self.namespaces.insert(namespace);
    }

    fn insert(&mut self, kind: ResourceKind, namespace: &str, items: Vec<Item>) {
        self.loaded.insert((kind, namespace.to_string()));
        let list = self
            .objects
            .entry(kind)
            .or_default()
            .entry(namespace.to_string())
            .or_default();
        for item in items {
            if let Some(node) = item.node {
                self.pods_by_node
                    .entry(node)
                    .or_default()
                    .push(item.text.clone());
            }
            self.by_name
                .insert((kind, namespace.to_string(), item.name), item.text.clone());
            list.push(item.text);
        }
    }

    /// The namespaces the dump holds.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.namespaces.iter().map(String::as_str)
    }

    /// Whether the dump can answer for a kind: kubectl's own kinds always can (a missing file
    /// means none); others only where a user added their file.
    fn holds(&self, kind: ResourceKind, namespace: Option<&str>) -> Result<()> {
        if kubectl_dumps(kind) {
            return Ok(());
        }
        let held = match namespace {
            Some(ns) => self.loaded.contains(&(kind, ns.to_string())),
            None => self.loaded.iter().any(|(k, _)| *k == kind),
        };
        if held {
            return Ok(());
        }
        let ns = namespace.filter(|n| !n.is_empty()).unwrap_or("NS");
        Err(ClusterError::Unsupported(format!(
            "the dump holds no {plural} (kubectl cluster-info dump does not write them); add them with \
             `kubectl get {plural} -n {ns} -o json > DIR/{ns}/{plural}.json`",
            plural = kind.plural()
        )))
    }

    fn pod_container_names(&self, namespace: &str, pod: &str) -> Option<Vec<String>> {
        let object = parse(
            self.by_name
                .get(&(ResourceKind::Pod, namespace.into(), pod.into()))?,
        );
        let names = object["spec"]["containers"]
            .as_array()?
            .iter()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect();
        Some(names)
    }
}

#[async_trait]
impl Cluster for DumpCluster {
    fn source(&self) -> String {
        format!("dump {}", self.root.display())
    }

    async fn get(
        &self,
        kind: ResourceKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Object>> {
        let namespace = kind.scope(namespace).unwrap_or("");
        self.holds(kind, Some(namespace))?;
        Ok(self
            .by_name
            .get(&(kind, namespace.to_string(), name.to_string()))
            .map(|text| parse(text)))
    }

    async fn list(&self, kind: ResourceKind, namespace: Option<&str>) -> Result<Vec<Object>> {
        self.holds(kind, namespace.filter(|_| kind.namespaced()))?;
        let Some(by_ns) = self.objects.get(&kind) else {
            return Ok(Vec::new());
        };
        Ok(match namespace.filter(|_| kind.namespaced()) {
            Some(ns) => by_ns
                .get(ns)
                .into_iter()
                .flatten()
                .map(|t| parse(t))
                .collect(),
            None => by_ns.values().flatten().map(|t| parse(t)).collect(),
        })
    }

    /// Straight from the stored text to the type: no `Value` in between.
    async fn pods(&self, namespace: Option<&str>) -> Result<Vec<Pod>> {
        let Some(by_ns) = self.objects.get(&ResourceKind::Pod) else {
            return Ok(Vec::new());
        };
        let texts: Vec<&Text> = match namespace {
            Some(ns) => by_ns.get(ns).into_iter().flatten().collect(),
            None => by_ns.values().flatten().collect(),
        };
        on_every_core(&texts, |t| typed_pod(t))
            .into_iter()
            .collect()
    }

    async fn pod_namespaces(&self) -> Result<Option<Vec<String>>> {
        Ok(Some(
            self.objects
                .get(&ResourceKind::Pod)
                .map(|by_ns| by_ns.keys().cloned().collect())
                .unwrap_or_default(),
        ))
    }

    /// Every node's load is computed at the first ask, from only what it reads of the Pods
    /// (their resources are a small part of them), and kept: the nodes' capacity over a
    /// 10,000-Pod dump (every node's usage, asked by each Pending investigation, often at once)
    /// took 0.4 s a call with each node's Pods parsed whole every time.
    async fn node_load(&self, node: &str) -> Result<super::NodeLoad> {
        let loads = self.node_loads.get_or_init(|| {
            let texts: Vec<(&String, &Text)> = self
                .pods_by_node
                .iter()
                .flat_map(|(node, texts)| texts.iter().map(move |t| (node, t)))
                .collect();
            // Each Pod's share, not the Pod, leaves its worker: 10,000 parsed Pods held at once
            // were 70 MB.
            let shares = on_every_core(&texts, |(node, t)| {
                let pod = usage_pod(t)?;
                Ok((*node, super::NodeLoad::of(node, std::slice::from_ref(&pod))))
            });
            let mut loads: HashMap<String, super::NodeLoad> = HashMap::new();
            for share in shares {
                let (node, share): (&String, super::NodeLoad) =
                    share.map_err(|e: ClusterError| e.to_string())?;
                loads.entry(node.clone()).or_default().absorb(share);
            }
            Ok(loads)
        });
        match loads {
            Ok(loads) => Ok(loads.get(node).copied().unwrap_or_default()),
            Err(message) => Err(ClusterError::Dump {
                path: self.root.display().to_string(),
                message: message.clone(),
            }),
        }
    }

    /// The Pods' statuses are read first, and only those that may be failing are parsed whole:
    /// most Pods of a dump are healthy.
    async fn failing_pods(&self, namespace: Option<&str>) -> Result<(Vec<Pod>, usize)> {
        let Some(by_ns) = self.objects.get(&ResourceKind::Pod) else {
            return Ok((Vec::new(), 0));
        };
        let texts: Vec<&Text> = match namespace {
            Some(ns) => by_ns.get(ns).into_iter().flatten().collect(),
            None => by_ns.values().flatten().collect(),
        };
        let failing: Vec<Pod> = on_every_core(&texts, |t| -> Result<Option<Pod>> {
            if !crate::failure::may_be_failing(&status_pod(t)?) {
                return Ok(None);
            }
            typed_pod(t).map(Some)
        })
        .into_iter()
        .filter_map(Result::transpose)
        .collect::<Result<_>>()?;
        Ok((failing, texts.len()))
    }

    async fn logs(&self, request: &LogRequest) -> Result<Logs> {
        let (namespace, pod) = (&request.namespace, &request.pod);
        let fail = |message: String| ClusterError::Logs {
            namespace: namespace.clone(),
            pod: pod.clone(),
            message,
        };
        let containers = self.pod_container_names(namespace, pod).ok_or_else(|| {
            fail(format!(
                "pod {namespace}/{pod} is not in the {}",
                self.source()
            ))
        })?;
        let container = match &request.container {
            Some(c) => c.clone(),
            None => containers
                .first()
                .cloned()
                .ok_or_else(|| fail("the pod has no containers".into()))?,
        };
        let frames = self
            .logs
            .get(&(namespace.clone(), pod.clone()))
            .ok_or_else(|| fail(format!("the dump has no {namespace}/{pod}/logs.txt")))?;
        let frame = frames
            .iter()
            .find(|f| f.container == container)
            .ok_or_else(|| {
                let known: Vec<_> = frames.iter().map(|f| f.container.as_str()).collect();
                fail(format!(
                    "no log for container {container:?}; the dump has logs for {}",
                    known.join(", ")
                ))
            })?;
        let text = frame
            .content
            .clone()
            .map_err(|e| fail(format!("kubectl could not read it: {e}")))?;
        let text = match request.tail_lines {
            Some(n) => tail(&text, n),
            None => text,
        };
        Ok(Logs {
            container,
            text,
            previous: false,
            note: request.previous.then(|| {
                "a cluster dump holds only the current log; for a container in CrashLoopBackOff \
                 that is the output of its last terminated run"
                    .to_string()
            }),
        })
    }

    async fn events_for(&self, about: Involved<'_>) -> Result<Vec<Event>> {
        let mut events: Vec<Event> = self
            .events
            .get(&(
                about.namespace.to_string(),
                about.kind.to_string(),
                about.name.to_string(),
            ))
            .map(|es| {
                es.iter()
                    .filter(|e| match (about.uid, e.involved_object.uid.as_deref()) {
                        (Some(want), Some(have)) => want == have,
                        _ => true,
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        events.sort_by_key(event_time);
        Ok(events)
    }
}

/// When an event last happened, for ordering.
pub(crate) fn event_time(e: &Event) -> Option<k8s_openapi::jiff::Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| {
            e.series
                .as_ref()
                .and_then(|s| s.last_observed_time.as_ref())
                .map(|t| t.0)
        })
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_whose_items_are_not_a_list_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pods.json");
        std::fs::write(&path, r#"{"kind": "PodList", "items": {"a": 1}}"#).unwrap();
        let err = read_list(&path, ResourceKind::Pod, "shop").err().unwrap();
        assert!(err.to_string().ends_with("`items` is not a list"), "{err}");
        std::fs::write(&path, r#"{"kind": "ServiceList", "items": 3}"#).unwrap();
        let err = read_list(&path, ResourceKind::Pod, "shop").err().unwrap();
        assert!(
            err.to_string()
                .ends_with("expected a PodList, found a ServiceList"),
            "{err}"
        );
        std::fs::write(&path, r#"{"kind": "PodList", "items": null}"#).unwrap();
        assert!(
            read_list(&path, ResourceKind::Pod, "shop")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_fast_path_stores_what_the_slow_path_would() {
        let path = Path::new("ns/pods.json");
        for raw in [
            r#"{ "metadata": { "name": "web-1", "namespace": "shop" }, "spec": { "nodeName": "node-a" } }"#,
            r#"{ "kind": "Pod", "metadata": { "name": "web-2", "namespace": "shop" } }"#,
            r#"{ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "web-3", "namespace": "shop" } }"#,
            r#"{ "metadata": { "name": "web-4" }, "spec": { "nodeName": "node-b" } }"#,
            r#"{ "kind": "Pod", "metadata": { "name": "web-5", "namespace": "shop", "managedFields": [{"manager": "kubelet"}], "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "a": "b"} } }"#,
            r#"{ "metadata": { "name": "web-6", "managedFields": [] } }"#,
        ] {
            let fast = item_from_raw(path, ResourceKind::Pod, "shop", 0, raw).unwrap();
            let slow = item_from_value(
                path,
                ResourceKind::Pod,
                "shop",
                0,
                serde_json::from_str(raw).unwrap(),
            )
            .unwrap();
            assert_eq!(
                serde_json::from_str::<Value>(&fast.text).unwrap(),
                serde_json::from_str::<Value>(&slow.text).unwrap(),
                "{raw}"
            );
            assert_eq!((&fast.name, &fast.node), (&slow.name, &slow.node));
        }
        let err = item_from_raw(path, ResourceKind::Pod, "shop", 3, r#"{"kind": "Pod"}"#)
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "ns/pods.json: items[3] has no metadata");
        let err = item_from_raw(path, ResourceKind::Pod, "shop", 1, "[1]")
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "ns/pods.json: items[1] is not an object");
    }
}

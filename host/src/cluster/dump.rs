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

/// Where a stored object is. A dump of 10,000 Pods is about 200 MB of indented JSON: held as
/// `serde_json::Value` it took over a gigabyte, as compact text a third of the file size, most of
/// a `diagnose` run's memory. So most objects stay in the dump's files, read back and compacted
/// (with `kind` and `apiVersion`) when asked for; only those the reader rewrote are held.
#[derive(Clone)]
enum Stored {
    /// Compact JSON: from a YAML file, a Secret (values redacted), an item without its namespace.
    Held(Arc<str>),
    /// `len` bytes at `start` of a file, as kubectl wrote them.
    InFile {
        file: Arc<DumpFile>,
        start: usize,
        len: usize,
    },
}

/// A file objects are read back from, as it was when the dump was read: a file changed since
/// is refused, not read as if it were the same.
struct DumpFile {
    path: PathBuf,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

/// What triage and node usage read of a Pod, taken as the dump is read: the whole Pod is read
/// back only for those that may be failing. A fault is kept as its message and raised where the
/// Pod is asked for, as it would be had the Pod been parsed then.
struct PodFacts {
    may_be_failing: std::result::Result<bool, String>,
    /// What it puts on its node.
    load: std::result::Result<super::NodeLoad, String>,
}

/// A Pod of the dump: its name (for a fault's message), where it is, what triage reads of it.
struct DumpPod {
    name: String,
    stored: Stored,
    may_be_failing: std::result::Result<bool, String>,
}

pub struct DumpCluster {
    root: PathBuf,
    /// kind -> namespace ("" for cluster-scoped) -> objects in file order.
    objects: HashMap<ResourceKind, BTreeMap<String, Vec<Stored>>>,
    by_name: HashMap<(ResourceKind, String, String), Stored>,
    /// Controllers that may have fewer Pods than they ask for, by kind and namespace in file
    /// order: the others have their Pods and need not be read back for triage.
    maybe_short: HashMap<ResourceKind, BTreeMap<String, Vec<Stored>>>,
    /// namespace -> Pods in file order, with what triage reads of them.
    pods: BTreeMap<String, Vec<DumpPod>>,
    /// Each node's load, summed as the dump is read (a dump does not change), or the first
    /// fault met in one of its Pods.
    node_loads: HashMap<String, std::result::Result<super::NodeLoad, String>>,
    events: HashMap<EventKey, Vec<Event>>,
    logs: HashMap<(String, String), Vec<ContainerLog>>,
    namespaces: BTreeSet<String>,
    /// (kind, namespace) lists read from a file; "" for cluster-scoped kinds.
    loaded: std::collections::HashSet<(ResourceKind, String)>,
    /// When the dump was taken, as its newest event or Node heartbeat says.
    observed_at: Option<k8s_openapi::jiff::Timestamp>,
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

/// An object read from a list: where it is, its name, and what the reader takes of it as it
/// reads (a Pod's node and facts, an Event).
struct Item {
    stored: Stored,
    name: String,
    node: Option<String>,
    pod: Option<PodFacts>,
    /// Boxed: an `Event` is ten times the rest of an item, and most items are not Events.
    event: Option<Box<Event>>,
    /// A controller that may have fewer Pods than it asks for (every other item: true).
    may_be_short: bool,
}

impl Item {
    fn new(stored: Stored, name: String) -> Item {
        Item {
            stored,
            name,
            node: None,
            pod: None,
            event: None,
            may_be_short: true,
        }
    }
}

fn read_list(path: &Path, kind: ResourceKind, namespace: &str) -> Result<Vec<Item>> {
    let cannot_read = |e: std::io::Error| dump_error(path, format!("cannot read: {e}"));
    let mut file = std::fs::File::open(path).map_err(cannot_read)?;
    let meta = file.metadata().map_err(cannot_read)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(cannot_read)?;
    let file = Arc::new(DumpFile {
        path: path.to_path_buf(),
        len: bytes.len() as u64,
        modified: meta.modified().ok(),
    });
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
            .map(|item| with_facts(path, kind, item?))
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
    let source = Source {
        path,
        text,
        file: &file,
    };
    // One pass checks and indexes a list as kubectl writes it; serde reads anything else and
    // names what is wrong with it.
    if let Some(list) = compact::list(text) {
        check_kind(list.kind.as_deref())?;
        return list
            .items
            .into_iter()
            .enumerate()
            .map(|(i, (at, found))| item_from_compact(&source, kind, namespace, i, at, found))
            .map(|item| with_facts(path, kind, item?))
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
        .map(|(i, raw)| {
            // `raw` is borrowed from `text`: where it starts is where it is in the file.
            let start = raw.get().as_ptr() as usize - text.as_ptr() as usize;
            item_from_raw(&source, kind, namespace, i, start..start + raw.get().len())
        })
        .map(|item| with_facts(path, kind, item?))
        .collect()
}

/// The objects of `kind` in `namespace` (all when None, or for a cluster-scoped kind) of an
/// index by kind and namespace, in order.
fn in_namespace<'a>(
    index: &'a HashMap<ResourceKind, BTreeMap<String, Vec<Stored>>>,
    kind: ResourceKind,
    namespace: Option<&str>,
) -> Vec<&'a Stored> {
    let Some(by_ns) = index.get(&kind) else {
        return Vec::new();
    };
    match namespace.filter(|_| kind.namespaced()) {
        Some(ns) => by_ns.get(ns).into_iter().flatten().collect(),
        None => by_ns.values().flatten().collect(),
    }
}

/// A list file being read.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
    file: &'a Arc<DumpFile>,
}

/// An item serde found in a list the one-pass walk did not take: walked on its own, or
/// through a `Value` when the walk does not take it either.
fn item_from_raw(
    source: &Source<'_>,
    kind: ResourceKind,
    namespace: &str,
    i: usize,
    at: std::ops::Range<usize>,
) -> Result<Item> {
    let raw = &source.text[at.clone()];
    if !raw.starts_with('{') {
        return Err(dump_error(
            source.path,
            format!("items[{i}] is not an object"),
        ));
    }
    match compact::compact(raw) {
        Some(found) => item_from_compact(source, kind, namespace, i, at, found),
        None => {
            let value: Value = serde_json::from_str(raw)
                .map_err(|e| dump_error(source.path, format!("items[{i}]: {e}")))?;
            item_from_value(source.path, kind, namespace, i, value)
        }
    }
}

/// The fast path: the item as kubectl wrote it (`at` in the file), indexed where it is, with what
/// the walk found of it ([`compact`]). Anything unusual (no namespace where one belongs, a
/// Secret) takes the slow path through a `Value` and is held.
fn item_from_compact(
    source: &Source<'_>,
    kind: ResourceKind,
    namespace: &str,
    i: usize,
    at: std::ops::Range<usize>,
    found: compact::Compact<'_>,
) -> Result<Item> {
    let (path, raw) = (source.path, &source.text[at.clone()]);
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
    let stored = Stored::InFile {
        file: source.file.clone(),
        start: at.start,
        len: at.len(),
    };
    let mut item = Item::new(stored, name.to_string());
    if kind == ResourceKind::Event {
        // Events are few and read whole, once: parsed from their compact text (no managed fields).
        let text = compact::compact(raw).map(|found| with_head(kind, found));
        let event = serde_json::from_str::<Event>(text.as_deref().unwrap_or(raw))
            .map_err(|e| dump_error(path, format!("Event {name}: {e}")))?;
        item.event = Some(Box::new(event));
    }
    if crate::failure::CREATORS.contains(&kind) {
        item.may_be_short = may_be_short(kind, raw, &found);
    }
    if kind == ResourceKind::Pod {
        item.node = found.node_name.as_ref().map(|n| n.to_string());
        item.pod = Some(if found.repeated {
            facts_of_text(raw)
        } else {
            facts_of_parts(raw, &found)
        });
    }
    Ok(item)
}

/// An object as the reader stores it: compacted by the walk, `kind` and `apiVersion` put back.
fn with_head(kind: ResourceKind, found: compact::Compact<'_>) -> String {
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
    text
}

/// What triage and node usage read of a Pod, from its `spec` and `status` as the walk found them
/// in the file: parsed on their own, the Pod's metadata (its managed fields are a third of it) is
/// not read again.
fn facts_of_parts(raw: &str, found: &compact::Compact<'_>) -> PodFacts {
    let status = match &found.status {
        Some(at) => {
            serde_json::from_str::<Option<k8s_openapi::api::core::v1::PodStatus>>(&raw[at.clone()])
        }
        None => Ok(None),
    };
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            let message = format!("status: {e}");
            return PodFacts {
                may_be_failing: Err(message.clone()),
                load: Err(message),
            };
        }
    };
    let node = found.node_name.as_deref();
    let gate = Pod {
        metadata: Default::default(),
        spec: found
            .spec
            .is_some()
            .then(|| k8s_openapi::api::core::v1::PodSpec {
                node_name: node.map(str::to_string),
                restart_policy: found.restart_policy.as_deref().map(str::to_string),
                ..Default::default()
            }),
        status,
    };
    let phase = gate.status.as_ref().and_then(|s| s.phase.as_deref());
    let load = match (&found.spec, node) {
        (Some(at), Some(node)) => super::usage::load_of_spec(node, &raw[at.clone()], phase)
            .map_err(|e| format!("spec: {e}")),
        _ => Ok(super::NodeLoad::default()),
    };
    PodFacts {
        may_be_failing: Ok(crate::failure::may_be_failing(&gate)),
        load,
    }
}

/// Whether a controller may have fewer Pods than it asks for, from its counts alone (its spec's
/// Pod template, most of it, is skipped): [`crate::failure::short_of_pods`] of the object with
/// only those. Counts that do not parse are left for triage to read whole.
fn may_be_short(kind: ResourceKind, raw: &str, found: &compact::Compact<'_>) -> bool {
    #[derive(Deserialize)]
    struct Counts {
        replicas: Option<Value>,
        parallelism: Option<Value>,
    }
    let part = |at: &Option<std::ops::Range<usize>>| at.as_ref().map(|at| &raw[at.clone()]);
    let spec = match part(&found.spec).map(serde_json::from_str::<Option<Counts>>) {
        Some(Err(_)) => return true,
        Some(Ok(spec)) => spec,
        None => None,
    };
    let status = match part(&found.status).map(serde_json::from_str::<Value>) {
        Some(Err(_)) => return true,
        Some(Ok(status)) => status,
        None => Value::Null,
    };
    let spec =
        spec.map(|c| serde_json::json!({"replicas": c.replicas, "parallelism": c.parallelism}));
    crate::failure::short_of_pods(&serde_json::json!({
        "kind": kind.kind(),
        "spec": spec,
        "status": status,
    }))
}

/// The same facts from a whole Pod's text: for a Pod the walk did not index.
fn facts_of_text(text: &str) -> PodFacts {
    let may_be_failing = status_pod(text)
        .map(|pod| crate::failure::may_be_failing(&pod))
        .map_err(|e| e.to_string());
    let load = usage_pod(text)
        .map(|pod| {
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            node.map(|node| super::NodeLoad::of(&node, std::slice::from_ref(&pod)))
                .unwrap_or_default()
        })
        .map_err(|e| e.to_string());
    PodFacts {
        may_be_failing,
        load,
    }
}

/// Takes what the reader reads of a held item as it reads it: a Pod's facts, an Event. (The
/// fast path takes them from the file's text: [`item_from_compact`].)
fn with_facts(path: &Path, kind: ResourceKind, mut item: Item) -> Result<Item> {
    let Stored::Held(text) = &item.stored else {
        return Ok(item);
    };
    match kind {
        ResourceKind::Pod => item.pod = Some(facts_of_text(text)),
        ResourceKind::Event => {
            let event: Event = serde_json::from_str(text)
                .map_err(|e| dump_error(path, format!("Event {}: {e}", item.name)))?;
            item.event = Some(Box::new(event));
        }
        _ => {}
    }
    Ok(item)
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
    let mut read = Item::new(Stored::Held(item.to_string().into()), name);
    read.node = node;
    Ok(read)
}

/// Parses a stored object.
fn parse(text: &str) -> Object {
    // The text was written by this module from valid JSON.
    Arc::new(serde_json::from_str(text).unwrap_or(Value::Null))
}

/// Reads back `len` bytes at `start` of a dump file, refusing a file changed since it was read.
fn read_back(file: &DumpFile, start: usize, len: usize) -> Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let fail = |message: String| dump_error(&file.path, message);
    let cannot_read = |e: std::io::Error| fail(format!("cannot read again: {e}"));
    let mut f = std::fs::File::open(&file.path).map_err(cannot_read)?;
    let meta = f.metadata().map_err(cannot_read)?;
    if meta.len() != file.len || meta.modified().ok() != file.modified {
        return Err(fail(
            "changed since the dump was read; run again on a dump nothing is writing to".into(),
        ));
    }
    let mut bytes = vec![0; len];
    f.seek(SeekFrom::Start(start as u64)).map_err(cannot_read)?;
    f.read_exact(&mut bytes).map_err(cannot_read)?;
    String::from_utf8(bytes).map_err(|_| fail("changed since the dump was read".into()))
}

/// The compact JSON of one object of a run read back together: `text` holds the file's bytes
/// from `from`.
fn compact_from(
    kind: ResourceKind,
    file: &DumpFile,
    text: &str,
    from: usize,
    (start, len): (usize, usize),
) -> Result<String> {
    text.get(start - from..start - from + len)
        .and_then(compact::compact)
        .map(|found| with_head(kind, found))
        .ok_or_else(|| dump_error(&file.path, "changed since the dump was read"))
}

/// The compact JSON of stored objects (of one kind), in order. Consecutive objects of one file
/// (a list's items, as lists are asked for) are read back with one read.
fn stored_texts(kind: ResourceKind, stored: &[&Stored]) -> Result<Vec<String>> {
    let mut texts = Vec::with_capacity(stored.len());
    let mut i = 0;
    while i < stored.len() {
        let Stored::InFile { file, start, .. } = stored[i] else {
            if let Stored::Held(text) = stored[i] {
                texts.push(text.to_string());
            }
            i += 1;
            continue;
        };
        let mut end = i;
        let mut last = *start;
        let mut to = 0;
        while let Some(Stored::InFile {
            file: f,
            start: s,
            len: l,
        }) = stored.get(end)
        {
            if !Arc::ptr_eq(f, file) || *s < last {
                break;
            }
            last = *s;
            to = to.max(s + l);
            end += 1;
        }
        let span = read_back(file, *start, to - start)?;
        for s in &stored[i..end] {
            if let Stored::InFile { start: s, len, .. } = s {
                texts.push(compact_from(kind, file, &span, *start, (*s, *len))?);
            }
        }
        i = end;
    }
    Ok(texts)
}

/// The compact JSON of one stored object.
fn stored_text(kind: ResourceKind, stored: &Stored) -> Result<String> {
    Ok(stored_texts(kind, &[stored])?.remove(0))
}

/// Parses a stored Pod into its type, naming it when it does not fit.
fn typed_pod(text: &str) -> Result<Pod> {
    serde_json::from_str(text).map_err(|e| malformed_pod(super::object_name(&parse(text)), e))
}

/// A Pod that does not have a Pod's shape, named `namespace/name`: met when it is parsed whole,
/// or as the dump was read and raised where the Pod is asked for.
fn malformed_pod(name: String, message: impl std::fmt::Display) -> ClusterError {
    ClusterError::Malformed {
        kind: "Pod".into(),
        name,
        message: message.to_string(),
    }
}

/// A Pod with only its node, restart policy and status parsed: what
/// [`crate::failure::may_be_failing`] reads. The metadata and the spec's other fields (most of
/// a Pod) are skipped.
fn status_pod(text: &str) -> serde_json::Result<Pod> {
    #[derive(Deserialize)]
    struct View {
        spec: Option<GateSpec>,
        status: Option<k8s_openapi::api::core::v1::PodStatus>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct GateSpec {
        node_name: Option<String>,
        restart_policy: Option<String>,
    }
    let view: View = serde_json::from_str(text)?;
    Ok(Pod {
        metadata: Default::default(),
        spec: view.spec.map(|s| k8s_openapi::api::core::v1::PodSpec {
            node_name: s.node_name,
            restart_policy: s.restart_policy,
            ..Default::default()
        }),
        status: view.status,
    })
}

/// A Pod with only what its node's load reads ([`super::UsagePod`]).
fn usage_pod(text: &str) -> serde_json::Result<Pod> {
    serde_json::from_str::<super::UsagePod>(text).map(Pod::from)
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
        let mut items = read_list(&path, kind, namespace)?;
        if kind == ResourceKind::Event {
            for event in items
                .iter_mut()
                .filter_map(|item| item.event.take().map(|e| *e))
            {
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
            maybe_short: HashMap::new(),
            pods: BTreeMap::new(),
            node_loads: HashMap::new(),
            events: HashMap::new(),
            logs: HashMap::new(),
            namespaces: BTreeSet::new(),
            loaded: Default::default(),
            observed_at: None,
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
                .map(|ns| {
                    let text = serde_json::json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": ns}});
                    Item::new(Stored::Held(text.to_string().into()), ns.clone())
                })
                .collect();
            dump.insert(ResourceKind::Namespace, "", synthesized);
        }
        dump.observed_at = dump.newest_time()?;
        Ok(dump)
    }

    /// The newest time the dump records: its events, and its Nodes' heartbeats (a kubelet
    /// reports at least every five minutes, even when nothing happens).
    fn newest_time(&self) -> Result<Option<k8s_openapi::jiff::Timestamp>> {
        let mut newest = self.events.values().flatten().filter_map(event_time).max();
        for stored in self
            .objects
            .get(&ResourceKind::Node)
            .into_iter()
            .flat_map(|m| m.values())
            .flatten()
        {
            let node = parse(&stored_text(ResourceKind::Node, stored)?);
            let beats = node["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["lastHeartbeatTime"].as_str()?.parse().ok());
            newest = newest.max(beats.max());
        }
        Ok(newest)
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
            if let Some(facts) = item.pod {
                if let Some(node) = item.node {
                    let load = self
                        .node_loads
                        .entry(node)
                        .or_insert(Ok(Default::default()));
                    match (load.as_mut(), facts.load) {
                        (Ok(load), Ok(share)) => load.absorb(share),
                        (Ok(_), Err(fault)) => {
                            *load = Err(malformed_pod(format!("{namespace}/{}", item.name), &fault)
                                .to_string())
                        }
                        (Err(_), _) => {}
                    }
                }
                self.pods
                    .entry(namespace.to_string())
                    .or_default()
                    .push(DumpPod {
                        name: item.name.clone(),
                        stored: item.stored.clone(),
                        may_be_failing: facts.may_be_failing,
                    });
            }
            if item.may_be_short && crate::failure::CREATORS.contains(&kind) {
                self.maybe_short
                    .entry(kind)
                    .or_default()
                    .entry(namespace.to_string())
                    .or_default()
                    .push(item.stored.clone());
            }
            self.by_name.insert(
                (kind, namespace.to_string(), item.name),
                item.stored.clone(),
            );
            list.push(item.stored);
        }
    }

    /// The compact JSON of the object `kind` `namespace/name`, if the dump holds it.
    fn text_of(&self, kind: ResourceKind, namespace: &str, name: &str) -> Result<Option<String>> {
        self.by_name
            .get(&(kind, namespace.to_string(), name.to_string()))
            .map(|stored| stored_text(kind, stored))
            .transpose()
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

    fn pod_container_names(&self, namespace: &str, pod: &str) -> Result<Option<Vec<String>>> {
        let Some(text) = self.text_of(ResourceKind::Pod, namespace, pod)? else {
            return Ok(None);
        };
        let object = parse(&text);
        let names = object["spec"]["containers"].as_array().map(|containers| {
            containers
                .iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        });
        Ok(names)
    }

    /// The stored Pods of a namespace (or all), in order, with their namespace.
    fn dump_pods(&self, namespace: Option<&str>) -> Vec<(&str, &DumpPod)> {
        self.pods
            .iter()
            .filter(|(ns, _)| namespace.is_none_or(|want| want == ns.as_str()))
            .flat_map(|(ns, pods)| pods.iter().map(move |pod| (ns.as_str(), pod)))
            .collect()
    }
}

#[async_trait]
impl Cluster for DumpCluster {
    fn source(&self) -> String {
        format!("dump {}", self.root.display())
    }

    fn observed_at(&self) -> Option<k8s_openapi::jiff::Timestamp> {
        self.observed_at
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
            .text_of(kind, namespace, name)?
            .map(|text| parse(&text)))
    }

    async fn list(&self, kind: ResourceKind, namespace: Option<&str>) -> Result<Vec<Object>> {
        self.holds(kind, namespace.filter(|_| kind.namespaced()))?;
        let stored = in_namespace(&self.objects, kind, namespace);
        Ok(stored_texts(kind, &stored)?
            .iter()
            .map(|t| parse(t))
            .collect())
    }

    /// Only the controllers whose counts, read as the dump was read, may fall short.
    async fn short_of_pods(
        &self,
        kind: ResourceKind,
        namespace: Option<&str>,
    ) -> Result<Vec<Object>> {
        self.holds(kind, namespace.filter(|_| kind.namespaced()))?;
        let stored = in_namespace(&self.maybe_short, kind, namespace);
        let mut creators: Vec<Object> = stored_texts(kind, &stored)?
            .iter()
            .map(|t| parse(t))
            .collect();
        creators.retain(|c| crate::failure::short_of_pods(c));
        Ok(creators)
    }

    /// Straight from the stored text to the type: no `Value` in between.
    async fn pods(&self, namespace: Option<&str>) -> Result<Vec<Pod>> {
        let stored: Vec<&Stored> = self
            .dump_pods(namespace)
            .into_iter()
            .map(|(_, p)| &p.stored)
            .collect();
        let texts = stored_texts(ResourceKind::Pod, &stored)?;
        on_every_core(&texts, |t| typed_pod(t))
            .into_iter()
            .collect()
    }

    /// Every namespace with a Pod list, empty ones too: triage also looks there for creators
    /// that cannot create their Pods.
    async fn pod_namespaces(&self) -> Result<Option<Vec<String>>> {
        Ok(Some(
            self.objects
                .get(&ResourceKind::Pod)
                .map(|by_ns| by_ns.keys().cloned().collect())
                .unwrap_or_default(),
        ))
    }

    /// Every node's load was summed as the dump was read, from only what it reads of the Pods
    /// (their resources are a small part of them): the nodes' capacity over a 10,000-Pod dump
    /// (every node's usage, asked by each Pending investigation, often at once) took 0.4 s a call
    /// with each node's Pods parsed whole every time.
    async fn node_load(&self, node: &str) -> Result<super::NodeLoad> {
        match self.node_loads.get(node) {
            None => Ok(Default::default()),
            Some(Ok(load)) => Ok(*load),
            Some(Err(message)) => Err(ClusterError::Dump {
                path: self.root.display().to_string(),
                message: message.clone(),
            }),
        }
    }

    /// What triage reads of each Pod was taken as the dump was read; only the Pods that may be
    /// failing are read back and parsed whole: most Pods of a dump are healthy.
    async fn failing_pods(&self, namespace: Option<&str>) -> Result<(Vec<Pod>, usize)> {
        let pods = self.dump_pods(namespace);
        let mut failing = Vec::new();
        for (namespace, pod) in &pods {
            match &pod.may_be_failing {
                Ok(true) => failing.push(&pod.stored),
                Ok(false) => {}
                Err(fault) => {
                    return Err(malformed_pod(format!("{namespace}/{}", pod.name), fault));
                }
            }
        }
        let texts = stored_texts(ResourceKind::Pod, &failing)?;
        let failing = on_every_core(&texts, |t| typed_pod(t))
            .into_iter()
            .collect::<Result<_>>()?;
        Ok((failing, pods.len()))
    }

    async fn logs(&self, request: &LogRequest) -> Result<Logs> {
        let (namespace, pod) = (&request.namespace, &request.pod);
        let fail = |message: String| ClusterError::Logs {
            namespace: namespace.clone(),
            pod: pod.clone(),
            message,
        };
        let containers = self.pod_container_names(namespace, pod)?.ok_or_else(|| {
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
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pods.json");
        let path = path.as_path();
        for raw in [
            r#"{ "metadata": { "name": "web-1", "namespace": "shop" }, "spec": { "nodeName": "node-a" } }"#,
            r#"{ "kind": "Pod", "metadata": { "name": "web-2", "namespace": "shop" } }"#,
            r#"{ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "web-3", "namespace": "shop" } }"#,
            r#"{ "metadata": { "name": "web-4" }, "spec": { "nodeName": "node-b" } }"#,
            r#"{ "kind": "Pod", "metadata": { "name": "web-5", "namespace": "shop", "managedFields": [{"manager": "kubelet"}], "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "a": "b"} } }"#,
            r#"{ "metadata": { "name": "web-6", "managedFields": [] } }"#,
        ] {
            // Indented as kubectl writes it, so the stored text is not the file's.
            std::fs::write(
                path,
                format!("{{\n  \"kind\": \"PodList\",\n  \"items\": [\n    {raw}\n  ]\n}}\n"),
            )
            .unwrap();
            let fast = read_list(path, ResourceKind::Pod, "shop")
                .unwrap()
                .remove(0);
            let slow = item_from_value(
                path,
                ResourceKind::Pod,
                "shop",
                0,
                serde_json::from_str(raw).unwrap(),
            )
            .unwrap();
            let text = |item: &Item| stored_text(ResourceKind::Pod, &item.stored).unwrap();
            assert_eq!(
                serde_json::from_str::<Value>(&text(&fast)).unwrap(),
                serde_json::from_str::<Value>(&text(&slow)).unwrap(),
                "{raw}"
            );
            assert_eq!((&fast.name, &fast.node), (&slow.name, &slow.node));
        }
        let source = Source {
            path,
            text: r#"{"kind": "Pod"}[1]"#,
            file: &Arc::new(DumpFile {
                path: path.to_path_buf(),
                len: 0,
                modified: None,
            }),
        };
        let err = item_from_raw(&source, ResourceKind::Pod, "shop", 3, 0..15)
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            format!("{}: items[3] has no metadata", path.display())
        );
        let err = item_from_raw(&source, ResourceKind::Pod, "shop", 1, 15..18)
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            format!("{}: items[1] is not an object", path.display())
        );
    }

    /// A Pod's facts taken from its spec and status apart are those its whole text gives, on
    /// every Pod of the bundled dump and the scenarios', and a Pod's objects read back are those
    /// its file holds.
    #[test]
    fn a_pods_facts_from_its_parts_are_those_of_the_whole_pod() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests");
        let mut files = Vec::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.file_name().is_some_and(|n| n == "pods.json") {
                    files.push(path);
                }
            }
        }
        let mut compared = 0;
        for path in &files {
            let text = std::fs::read_to_string(path).unwrap();
            let Some(list) = compact::list(&text) else {
                continue;
            };
            for (at, found) in list.items {
                let raw = &text[at];
                let whole = compact::compact(raw).unwrap().text;
                let (parts, whole) = (facts_of_parts(raw, &found), facts_of_text(&whole));
                assert_eq!(
                    parts.may_be_failing,
                    whole.may_be_failing,
                    "{}",
                    path.display()
                );
                assert_eq!(parts.load, whole.load, "{}", path.display());
                compared += 1;
            }
        }
        assert!(compared > 50, "{compared} Pods in {} files", files.len());
    }

    /// The controllers the dump reads back for triage, chosen by their counts alone, are those
    /// the whole objects would give: every kind, counts missing, odd or malformed, a status
    /// that is not an object. Items are indented as kubectl writes them.
    #[test]
    fn controllers_short_of_pods_from_their_counts_are_those_of_the_whole_objects() {
        let dir = tempfile::tempdir().unwrap();
        let ns = dir.path().join("shop");
        std::fs::create_dir(&ns).unwrap();
        let template = r#""template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "app", "image": "x:1"}]}}"#;
        let list = |kind: &str, items: &[(&str, &str)]| {
            let items: Vec<String> = items
                .iter()
                .map(|(name, rest)| {
                    let item = format!(
                        r#"{{"metadata": {{"name": "{name}", "namespace": "shop"}}, {rest}}}"#
                    );
                    serde_json::to_string_pretty(&serde_json::from_str::<Value>(&item).unwrap())
                        .unwrap()
                })
                .collect();
            format!(
                "{{\n  \"kind\": \"{kind}List\",\n  \"items\": [\n{}\n  ]\n}}\n",
                items.join(",\n")
            )
        };
        let replica_sets = [
            (
                "full",
                format!(r#""spec": {{"replicas": 3, {template}}}, "status": {{"replicas": 3}}"#),
            ),
            (
                "short",
                format!(
                    r#""spec": {{"replicas": 3, {template}}}, "status": {{"replicas": 1, "conditions": [{{"type": "ReplicaFailure", "status": "True"}}]}}"#
                ),
            ),
            (
                "no-status",
                format!(r#""spec": {{"replicas": 2, {template}}}"#),
            ),
            (
                "scaled-to-zero",
                format!(r#""spec": {{"replicas": 0, {template}}}, "status": {{"replicas": 0}}"#),
            ),
            (
                "replicas-a-string",
                format!(r#""spec": {{"replicas": "3", {template}}}, "status": {{}}"#),
            ),
            (
                "spec-a-string",
                r#""spec": "3", "status": {"replicas": 0}"#.to_string(),
            ),
            (
                "status-a-list",
                format!(r#""spec": {{"replicas": 1, {template}}}, "status": [1]"#),
            ),
            (
                "template-after",
                format!(r#""status": {{"replicas": 1}}, "spec": {{{template}, "replicas": 4}}"#),
            ),
        ];
        let replica_sets: Vec<(&str, &str)> =
            replica_sets.iter().map(|(n, r)| (*n, r.as_str())).collect();
        std::fs::write(
            ns.join("replicasets.json"),
            list("ReplicaSet", &replica_sets),
        )
        .unwrap();
        std::fs::write(
            ns.join("daemonsets.json"),
            list(
                "DaemonSet",
                &[
                    (
                        "all-scheduled",
                        r#""status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3}"#,
                    ),
                    (
                        "one-missing",
                        r#""status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 2}"#,
                    ),
                ],
            ),
        )
        .unwrap();
        std::fs::write(
            ns.join("jobs.json"),
            list("Job", &[
                ("done", r#""spec": {"parallelism": 1}, "status": {"completionTime": "2026-01-01T00:00:00Z"}"#),
                ("running", r#""spec": {"parallelism": 2}, "status": {"active": 2}"#),
                ("none-active", r#""spec": {"parallelism": 2}, "status": {"active": 1}"#),
                ("defaults", r#""spec": {}"#),
                ("spec-a-string", r#""spec": "x""#),
            ]),
        )
        .unwrap();
        std::fs::write(ns.join("pods.json"), r#"{"kind": "PodList", "items": []}"#).unwrap();
        let dump = DumpCluster::load(dir.path()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let names = |objects: Vec<Object>| -> Vec<String> {
            objects
                .iter()
                .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
                .collect()
        };
        let mut short = Vec::new();
        for kind in [
            ResourceKind::ReplicaSet,
            ResourceKind::DaemonSet,
            ResourceKind::Job,
        ] {
            let indexed = rt.block_on(dump.short_of_pods(kind, Some("shop"))).unwrap();
            let mut whole = rt.block_on(dump.list(kind, None)).unwrap();
            whole.retain(|c| crate::failure::short_of_pods(c));
            assert_eq!(names(indexed.clone()), names(whole), "{kind}");
            let everywhere = rt.block_on(dump.short_of_pods(kind, None)).unwrap();
            assert_eq!(names(everywhere), names(indexed.clone()), "{kind}");
            short.extend(names(indexed));
        }
        assert_eq!(
            short,
            [
                "short",
                "no-status",
                "status-a-list",
                "template-after",
                "one-missing",
                "none-active",
                "defaults",
                "spec-a-string",
            ]
        );
        // A kind the dump does not hold is said so, as a list of it would be.
        let err = rt
            .block_on(dump.short_of_pods(ResourceKind::StatefulSet, Some("shop")))
            .unwrap_err();
        assert!(matches!(err, ClusterError::Unsupported(_)), "{err}");
    }

    #[test]
    fn an_object_read_back_from_a_file_changed_since_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ns = dir.path().join("shop");
        std::fs::create_dir(&ns).unwrap();
        let pod =
            r#"{"metadata": {"name": "web-1", "namespace": "shop"}, "spec": {"nodeName": "n"}}"#;
        std::fs::write(
            ns.join("pods.json"),
            format!(r#"{{"kind": "PodList", "items": [{pod}]}}"#),
        )
        .unwrap();
        let dump = DumpCluster::load(dir.path()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got = rt
            .block_on(dump.get(ResourceKind::Pod, Some("shop"), "web-1"))
            .unwrap()
            .unwrap();
        assert_eq!(got["metadata"]["name"], "web-1");
        assert_eq!(got["kind"], "Pod");
        std::fs::write(
            ns.join("pods.json"),
            format!(r#"{{"kind": "PodList", "items": [{pod}, {pod}]}}"#),
        )
        .unwrap();
        let err = rt
            .block_on(dump.get(ResourceKind::Pod, Some("shop"), "web-1"))
            .unwrap_err();
        assert!(
            err.to_string().contains("changed since the dump was read"),
            "{err}"
        );
        assert!(err.to_string().contains("pods.json"), "{err}");
    }
}

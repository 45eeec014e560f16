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
use k8s_openapi::api::core::v1::Event;
use serde_json::Value;

use super::logs::tail;
use super::{
    Cluster, ClusterError, ContainerLog, LogRequest, Logs, Object, ResourceKind, Result,
    parse_dump_logs, redact_secret, typed,
};

type EventKey = (String, String, String); // namespace, involved kind, involved name

pub struct DumpCluster {
    root: PathBuf,
    /// kind -> namespace ("" for cluster-scoped) -> objects in file order.
    objects: HashMap<ResourceKind, BTreeMap<String, Vec<Object>>>,
    by_name: HashMap<(ResourceKind, String, String), Object>,
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

fn read_list(path: &Path, kind: ResourceKind, namespace: &str) -> Result<Vec<Value>> {
    let bytes = std::fs::read(path).map_err(|e| dump_error(path, format!("cannot read: {e}")))?;
    let is_yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
    let document: Value = if is_yaml {
        serde_yaml::from_slice(&bytes)
            .map_err(|e| dump_error(path, format!("invalid YAML: {e}")))?
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            let hint = if e.is_eof() {
                " (the file is truncated)"
            } else {
                ""
            };
            dump_error(path, format!("invalid JSON: {e}{hint}"))
        })?
    };
    let expected = kind.list_kind();
    let found = document.get("kind").and_then(Value::as_str);
    if !matches!(found, Some(k) if k == expected || k == "List") {
        return Err(dump_error(
            path,
            format!(
                "expected a {expected}, found {}",
                found
                    .map(|k| format!("a {k}"))
                    .unwrap_or_else(|| "an object without a kind".into())
            ),
        ));
    }
    let Some(items) = document.get("items") else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = items.clone() else {
        return Err(dump_error(path, "`items` is not a list"));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, mut item)| {
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
            if meta
                .get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(dump_error(path, format!("items[{i}] has no metadata.name")));
            }
            if kind.namespaced() && !namespace.is_empty() {
                meta.entry("namespace").or_insert_with(|| namespace.into());
            }
            if kind == ResourceKind::Secret {
                redact_secret(&mut item);
            }
            Ok(item)
        })
        .collect()
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
        for dir in entries {
            let Some(namespace) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string)
            else {
                continue;
            };
            dump.load_namespace(&dir, &namespace)?;
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
            let synthesized: Vec<Value> = dump
                .namespaces
                .iter()
                .map(|ns| serde_json::json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": ns}}))
                .collect();
            dump.insert(ResourceKind::Namespace, "", synthesized);
        }
        Ok(dump)
    }

    fn load_namespace(&mut self, dir: &Path, namespace: &str) -> Result<()> {
        let mut found = false;
        for kind in ResourceKind::ALL.into_iter().filter(|k| k.namespaced()) {
            let Some(path) = find_file(dir, kind.dump_file_stem()) else {
                continue;
            };
            found = true;
            let items = read_list(&path, kind, namespace)?;
            if kind == ResourceKind::Event {
                for item in &items {
                    let event: Event = typed(item).map_err(|e| dump_error(&path, e.to_string()))?;
                    let involved = &event.involved_object;
                    let key = (
                        involved
                            .namespace
                            .clone()
                            .unwrap_or_else(|| namespace.to_string()),
                        involved.kind.clone().unwrap_or_default(),
                        involved.name.clone().unwrap_or_default(),
                    );
                    self.events.entry(key).or_default().push(event);
                }
            }
            self.insert(kind, namespace, items);
        }
        if !found {
            return Ok(()); // not a namespace folder
        }
        self.namespaces.insert(namespace.to_string());
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
            self.logs.insert((namespace.to_string(), pod), frames);
        }
        Ok(())
    }

    fn insert(&mut self, kind: ResourceKind, namespace: &str, items: Vec<Value>) {
        self.loaded.insert((kind, namespace.to_string()));
        let list = self
            .objects
            .entry(kind)
            .or_default()
            .entry(namespace.to_string())
            .or_default();
        for item in items {
            let name = item["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let object = Arc::new(item);
            self.by_name
                .insert((kind, namespace.to_string(), name), object.clone());
            list.push(object);
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
        let object = self
            .by_name
            .get(&(ResourceKind::Pod, namespace.into(), pod.into()))?;
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
        let namespace = if kind.namespaced() {
            namespace.unwrap_or("default")
        } else {
            ""
        };
        self.holds(kind, Some(namespace))?;
        Ok(self
            .by_name
            .get(&(kind, namespace.to_string(), name.to_string()))
            .cloned())
    }

    async fn list(&self, kind: ResourceKind, namespace: Option<&str>) -> Result<Vec<Object>> {
        self.holds(kind, namespace.filter(|_| kind.namespaced()))?;
        let Some(by_ns) = self.objects.get(&kind) else {
            return Ok(Vec::new());
        };
        Ok(match namespace.filter(|_| kind.namespaced()) {
            Some(ns) => by_ns.get(ns).cloned().unwrap_or_default(),
            None => by_ns.values().flatten().cloned().collect(),
        })
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

    async fn events_for(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<Vec<Event>> {
        let mut events: Vec<Event> = self
            .events
            .get(&(namespace.to_string(), kind.to_string(), name.to_string()))
            .map(|es| {
                es.iter()
                    .filter(|e| match (uid, e.involved_object.uid.as_deref()) {
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

//! What the Pod controller remembers between reconciles so that, in a burst, the other Pods of a
//! workload it has already reported cost no API request (the burst benchmark: 1,000 Pods of
//! 200 Deployments cost 5 reads each before): each Pod's workload as resolved, for a minute, and
//! the reports being opened right now.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use crate::cluster::{Cluster, Result, resolve_workload};
use crate::crd::WorkloadRef;

/// How long a resolved workload is trusted: an owner reference rarely changes, and a report
/// opened for a stale one names a workload the Pod had a minute ago.
const RESOLVED_FOR: Duration = Duration::from_secs(60);
/// Bounds the memory: a full map is emptied (and filled again by the next reconciles).
const MAX_RESOLVED: usize = 10_000;

/// The Pods of one ReplicaSet (one controller, same labels) resolve to the same workload:
/// resolution reads only the owners and checks their selectors against the labels.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    namespace: String,
    owner_uid: String,
    labels: BTreeMap<String, String>,
}

#[derive(Default)]
pub struct Openings {
    resolved: Mutex<HashMap<Key, (WorkloadRef, Instant)>>,
    in_flight: Mutex<HashSet<(String, String)>>,
    /// Reports created lately, until the report watch shows them: the workload's other Pods,
    /// reconciled in that gap, would read their events and try the create again (a 409).
    created: Mutex<HashMap<(String, String), Instant>>,
}

/// Longer than the report watch takes to show a new report, even in a burst.
const CREATED_FOR: Duration = Duration::from_secs(60);

impl Openings {
    /// The Pod's workload ([`resolve_workload`]), from memory when a Pod of the same controller
    /// and labels was resolved less than a minute ago.
    pub async fn workload(&self, cluster: &dyn Cluster, pod: &Pod) -> Result<WorkloadRef> {
        let owner_uid = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone());
        let Some(owner_uid) = owner_uid else {
            // A bare Pod is resolved without a read.
            return resolve_workload(cluster, pod).await;
        };
        let key = Key {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            owner_uid,
            labels: pod.metadata.labels.clone().unwrap_or_default(),
        };
        if let Some((workload, at)) = self.resolved.lock().unwrap().get(&key)
            && at.elapsed() < RESOLVED_FOR
        {
            return Ok(workload.clone());
        }
        let workload = resolve_workload(cluster, pod).await?;
        let mut resolved = self.resolved.lock().unwrap();
        if resolved.len() >= MAX_RESOLVED {
            resolved.clear();
        }
        resolved.insert(key, (workload.clone(), Instant::now()));
        Ok(workload)
    }

    /// Marks report `namespace/name` as being opened; None when another reconcile is opening it
    /// (the Pods of one workload fail together and are reconciled at once).
    pub fn begin(&self, namespace: &str, name: &str) -> Option<Opening<'_>> {
        let key = (namespace.to_string(), name.to_string());
        // The guard is released before an Opening exists: its drop takes the lock again.
        let first = self.in_flight.lock().unwrap().insert(key.clone());
        first.then(|| Opening {
            openings: self,
            key,
        })
    }

    /// Whether report `namespace/name` is being opened right now.
    pub fn opening(&self, namespace: &str, name: &str) -> bool {
        self.in_flight
            .lock()
            .unwrap()
            .contains(&(namespace.to_string(), name.to_string()))
    }

    /// Remembers that report `namespace/name` exists (created, or found by a create's 409).
    pub fn created(&self, namespace: &str, name: &str) {
        let mut created = self.created.lock().unwrap();
        created.retain(|_, at| at.elapsed() < CREATED_FOR);
        if created.len() >= MAX_RESOLVED {
            created.clear();
        }
        created.insert((namespace.to_string(), name.to_string()), Instant::now());
    }

    /// Whether report `namespace/name` was created less than a minute ago. Asked only while
    /// the report watch does not show it: once it does, the report itself says whether it is
    /// open (and a finished one may be replaced after its cooldown).
    pub fn created_lately(&self, namespace: &str, name: &str) -> bool {
        self.created
            .lock()
            .unwrap()
            .get(&(namespace.to_string(), name.to_string()))
            .is_some_and(|at| at.elapsed() < CREATED_FOR)
    }
}

/// A report being opened; dropped when the attempt ends, whatever its outcome.
pub struct Opening<'a> {
    openings: &'a Openings,
    key: (String, String),
}

impl Opening<'_> {
    /// The name of the report being opened.
    pub fn report(&self) -> &str {
        &self.key.1
    }
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.openings.in_flight.lock().unwrap().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_opened_by_one_reconcile_at_a_time() {
        let openings = Openings::default();
        let name = "deployment-cart-imagepullbackoff";
        let first = openings.begin("shop", name);
        assert!(first.is_some());
        assert!(openings.opening("shop", name));
        // Another Pod of the workload does not open the report, nor end the first opening.
        assert!(openings.begin("shop", name).is_none());
        assert!(openings.opening("shop", name));
        assert!(openings.begin("web", name).is_some());
        drop(first);
        assert!(!openings.opening("shop", name));
        assert!(openings.begin("shop", name).is_some());
    }

    #[test]
    fn a_report_created_lately_is_remembered_per_namespace() {
        let openings = Openings::default();
        let name = "deployment-cart-imagepullbackoff";
        assert!(!openings.created_lately("shop", name));
        openings.created("shop", name);
        assert!(openings.created_lately("shop", name));
        assert!(!openings.created_lately("web", name));
    }
}

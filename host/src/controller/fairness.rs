//! Investigation slots shared fairly between namespaces. The report controller runs
//! `--concurrency` reconciles at once; without a per-namespace cap, a few failing Pods in one
//! namespace (whose reads are slow, or whose logs are made to keep a model busy) could hold every
//! slot while another namespace's crash loop waits. A namespace holds at most its share; the rest
//! wait for a slot of their own namespace, not for everyone's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How many investigations each namespace has running, against a cap.
#[derive(Debug)]
pub struct NamespaceSlots {
    per_namespace: usize,
    held: Mutex<HashMap<String, usize>>,
}

/// One running investigation's slot; freed when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<NamespaceSlots>,
    namespace: String,
}

impl NamespaceSlots {
    /// At most `per_namespace` (at least 1) investigations per namespace at once.
    pub fn new(per_namespace: usize) -> Arc<NamespaceSlots> {
        Arc::new(NamespaceSlots {
            per_namespace: per_namespace.max(1),
            held: Mutex::new(HashMap::new()),
        })
    }

    /// The default share: half the operator's concurrency, at least one.
    pub fn default_share(concurrency: u16) -> usize {
        (usize::from(concurrency) / 2).max(1)
    }

    /// A slot for `namespace`, or `None` while it holds its share.
    pub fn try_acquire(self: &Arc<Self>, namespace: &str) -> Option<Slot> {
        let mut held = self.held.lock().unwrap();
        let count = held.entry(namespace.to_string()).or_insert(0);
        if *count >= self.per_namespace {
            return None;
        }
        *count += 1;
        Some(Slot {
            slots: self.clone(),
            namespace: namespace.to_string(),
        })
    }

    /// Investigations running in `namespace`.
    pub fn running(&self, namespace: &str) -> usize {
        self.held
            .lock()
            .unwrap()
            .get(namespace)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap();
        if let Some(count) = held.get_mut(&self.namespace) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.namespace);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_holds_at_most_its_share_and_others_still_get_slots() {
        let slots = NamespaceSlots::new(NamespaceSlots::default_share(4));
        let a1 = slots.try_acquire("noisy").unwrap();
        let _a2 = slots.try_acquire("noisy").unwrap();
        assert!(slots.try_acquire("noisy").is_none(), "two of four at most");
        let _b = slots
            .try_acquire("quiet")
            .expect("another namespace is not held up");
        drop(a1);
        assert_eq!(slots.running("noisy"), 1);
        assert!(
            slots.try_acquire("noisy").is_some(),
            "a freed slot is reusable"
        );
        assert_eq!(NamespaceSlots::default_share(1), 1);
    }
}

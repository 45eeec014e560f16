//! Waiting for the cluster to reach a state, by watching instead of polling: [`until`] waits for
//! one named object (kube's `await_condition`), [`first`] for the first object of a filtered
//! list that matches (a `watcher` stream). Both give up after a timeout.

use std::fmt::Debug;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use futures::TryStreamExt;
use kube::api::Api;
use kube::runtime::wait::{Condition, await_condition};
use kube::runtime::{WatchStreamExt, watcher};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Waits until `condition` holds for the object `name`; returns the object (`None` if the
/// condition held for its absence). After `timeout` fails, showing the object as it is then.
pub async fn until<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    condition: impl Condition<K>,
) -> Result<Option<K>>
where
    K: kube::Resource + Clone + Debug + Send + DeserializeOwned + Serialize + 'static,
{
    match tokio::time::timeout(timeout, await_condition(api.clone(), name, condition)).await {
        Ok(found) => found.with_context(|| format!("watching {name}")),
        Err(_) => {
            let now = api.get_opt(name).await?;
            Err(anyhow!(
                "timed out after {timeout:?} waiting for {name}; it is:\n{}",
                serde_json::to_string_pretty(&now)?
            ))
        }
    }
}

/// Waits until an object that `config` selects satisfies `matches`; returns the first. `None`
/// after `timeout`, so that the caller can say what it saw instead.
pub async fn first<K>(
    api: &Api<K>,
    config: watcher::Config,
    timeout: Duration,
    matches: impl Fn(&K) -> bool,
) -> Result<Option<K>>
where
    K: kube::Resource + Clone + Debug + Send + DeserializeOwned + 'static,
{
    let found = watcher(api.clone(), config)
        .default_backoff()
        .applied_objects()
        .try_filter(|object| futures::future::ready(matches(object)));
    let mut found = std::pin::pin!(found);
    match tokio::time::timeout(timeout, found.try_next()).await {
        Ok(found) => Ok(found?),
        Err(_) => Ok(None),
    }
}

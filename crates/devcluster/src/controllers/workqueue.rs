//! The loop every namespaced workload controller here shares: watch the primary kind and the
//! kinds that affect it, queue the primaries those changes concern, and sync each queued one
//! from a fresh read.
//!
//! Upstream controllers sync from an informer cache guarded by "expectations"; these read the
//! primary and what it owns fresh from the server on every sync instead (watches only say what
//! to sync), which is simpler and just as safe for one controller per cluster. A periodic resync
//! catches anything a watch gap missed.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::{BoxStream, SelectAll};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A primary object: (namespace, name).
pub(crate) type Key = (String, String);

/// How often every primary is synced even without watch events.
const RESYNC_INTERVAL: Duration = Duration::from_secs(10);
/// Backoff after a failed sync.
const ERROR_RETRY: Duration = Duration::from_secs(1);

/// Which primaries a change of another kind concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// This one.
    Key(Key),
    /// Every primary in this namespace (e.g. a pod any selector may match).
    Namespace(String),
    /// Every primary (e.g. a Node, for DaemonSets).
    All,
}

/// A change the loop reacts to.
enum Input {
    /// The primary watch (re)started listing.
    Init,
    /// A primary exists.
    Seen(Key, bool),
    /// The primary relist finished.
    InitDone,
    /// A primary was deleted.
    Gone(Key),
    /// A watched secondary kind changed.
    Secondary(Target),
}

/// Turns a watch of a secondary kind into the targets `map` gives each changed object.
pub(crate) fn secondary<K, F>(api: Api<K>, map: F) -> BoxStream<'static, Target>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    F: Fn(&K) -> Option<Target> + Send + 'static,
{
    watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .filter_map(move |event| {
            let target = match event {
                Ok(Event::Apply(o) | Event::InitApply(o) | Event::Delete(o)) => map(&o),
                Ok(Event::Init | Event::InitDone) => None,
                Err(e) => {
                    tracing::debug!(error = %e, "controller: secondary watch failed, retrying");
                    None
                }
            };
            futures::future::ready(target)
        })
        .boxed()
}

/// The namespace of an object as a [`Target`]: for kinds any primary of the namespace may
/// select.
pub(crate) fn namespace_of<K: kube::Resource>(obj: &K) -> Option<Target> {
    obj.meta().namespace.clone().map(Target::Namespace)
}

/// The controlling owner of `obj`, if it is of `kind`, as a [`Target`].
pub(crate) fn owner_target<K: kube::Resource>(obj: &K, kind: &str) -> Option<Target> {
    let meta = obj.meta();
    let owner = meta
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true) && r.kind == kind)?;
    Some(Target::Key((meta.namespace.clone()?, owner.name.clone())))
}

/// Runs a controller until `shutdown` is cancelled: `sync` is called with each queued primary
/// and returns when to sync it again (if ever) or an error (logged, retried after a backoff).
pub(crate) async fn run<K, S, Fut, E>(
    name: &'static str,
    primary: Api<K>,
    secondaries: Vec<BoxStream<'static, Target>>,
    mut sync: S,
    shutdown: CancellationToken,
) where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    S: FnMut(Key) -> Fut,
    Fut: Future<Output = Result<Option<Duration>, E>>,
    E: std::fmt::Display,
{
    let primaries = watcher::watcher(primary, watcher::Config::default())
        .default_backoff()
        .filter_map(move |event| futures::future::ready(primary_input(name, event)))
        .boxed();
    let mut inputs: SelectAll<BoxStream<'static, Input>> = futures::stream::select_all(
        std::iter::once(primaries).chain(
            secondaries
                .into_iter()
                .map(|s| s.map(Input::Secondary).boxed()),
        ),
    );
    let mut queue = Queue::default();
    let mut resync = tokio::time::interval(RESYNC_INTERVAL);
    loop {
        let due = queue.next_due();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            Some(input) = inputs.next() => queue.observe(input),
            _ = resync.tick() => queue.queue_all(),
            _ = sleep_until(due), if due.is_some() => {
                for key in queue.take_due() {
                    let Some(result) = shutdown.run_until_cancelled(sync(key.clone())).await else {
                        return;
                    };
                    match result {
                        Ok(None) => {}
                        Ok(Some(after)) => queue.enqueue(key, Instant::now() + after),
                        Err(e) => {
                            tracing::debug!(controller = name, namespace = %key.0, name = %key.1,
                                error = %e, "sync failed, retrying");
                            queue.enqueue(key, Instant::now() + ERROR_RETRY);
                        }
                    }
                }
            }
        }
    }
}

fn primary_input<K: kube::Resource>(
    name: &str,
    event: Result<Event<K>, watcher::Error>,
) -> Option<Input> {
    let key = |o: &K| Some((o.meta().namespace.clone()?, o.meta().name.clone()?));
    match event {
        Ok(Event::Init) => Some(Input::Init),
        Ok(Event::InitApply(o)) => key(&o).map(|k| Input::Seen(k, true)),
        Ok(Event::InitDone) => Some(Input::InitDone),
        Ok(Event::Apply(o)) => key(&o).map(|k| Input::Seen(k, false)),
        Ok(Event::Delete(o)) => key(&o).map(Input::Gone),
        Err(e) => {
            tracing::debug!(controller = name, error = %e, "watch failed, retrying");
            None
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    if let Some(due) = due {
        tokio::time::sleep_until(due).await;
    }
}

/// The known primaries and which of them are due for a sync, from when.
#[derive(Default)]
struct Queue {
    known: HashSet<Key>,
    /// Primaries seen by a relist in progress; replaces `known` when it completes.
    listed: HashSet<Key>,
    due: HashMap<Key, Instant>,
}

impl Queue {
    fn next_due(&self) -> Option<Instant> {
        self.due.values().min().copied()
    }

    fn enqueue(&mut self, key: Key, at: Instant) {
        let due = self.due.entry(key).or_insert(at);
        *due = (*due).min(at);
    }

    fn queue_all(&mut self) {
        let now = Instant::now();
        for key in self.known.clone() {
            self.enqueue(key, now);
        }
    }

    fn take_due(&mut self) -> Vec<Key> {
        let now = Instant::now();
        let due: Vec<Key> = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &due {
            self.due.remove(key);
        }
        due
    }

    fn observe(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Init => self.listed.clear(),
            Input::Seen(key, relist) => {
                if relist {
                    self.listed.insert(key.clone());
                }
                self.known.insert(key.clone());
                self.enqueue(key, now);
            }
            Input::InitDone => self.known = std::mem::take(&mut self.listed),
            Input::Gone(key) => {
                self.known.remove(&key);
                self.due.remove(&key);
            }
            Input::Secondary(Target::Key(key)) => {
                if self.known.contains(&key) {
                    self.enqueue(key, now);
                }
            }
            Input::Secondary(Target::Namespace(ns)) => {
                let keys: Vec<Key> = self.known.iter().filter(|k| k.0 == ns).cloned().collect();
                for key in keys {
                    self.enqueue(key, now);
                }
            }
            Input::Secondary(Target::All) => self.queue_all(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, name: &str) -> Key {
        (ns.into(), name.into())
    }

    #[tokio::test]
    async fn secondary_changes_queue_known_primaries_only() {
        let mut q = Queue::default();
        q.observe(Input::Seen(key("a", "x"), false));
        q.observe(Input::Seen(key("b", "y"), false));
        assert_eq!(q.take_due().len(), 2);
        q.observe(Input::Secondary(Target::Key(key("a", "unknown"))));
        assert!(q.take_due().is_empty());
        q.observe(Input::Secondary(Target::Namespace("a".into())));
        assert_eq!(q.take_due(), vec![key("a", "x")]);
        q.observe(Input::Secondary(Target::All));
        assert_eq!(q.take_due().len(), 2);
    }

    #[tokio::test]
    async fn relist_forgets_primaries_deleted_during_a_gap() {
        let mut q = Queue::default();
        q.observe(Input::Seen(key("a", "x"), false));
        q.observe(Input::Seen(key("a", "y"), false));
        q.observe(Input::Init);
        q.observe(Input::Seen(key("a", "y"), true));
        q.observe(Input::InitDone);
        q.take_due();
        q.observe(Input::Secondary(Target::All));
        assert_eq!(q.take_due(), vec![key("a", "y")]);
        q.observe(Input::Gone(key("a", "y")));
        q.observe(Input::Secondary(Target::All));
        assert!(q.take_due().is_empty());
    }

    #[tokio::test]
    async fn earliest_due_time_wins() {
        let mut q = Queue::default();
        let now = Instant::now();
        q.enqueue(key("a", "x"), now + Duration::from_secs(60));
        q.enqueue(key("a", "x"), now);
        assert_eq!(q.next_due(), Some(now));
        q.enqueue(key("a", "x"), now + Duration::from_secs(30));
        assert_eq!(q.next_due(), Some(now));
    }
}

//! In-memory storage with etcd's observable semantics: one cluster-wide, monotonically
//! increasing revision (the resourceVersion), compare-and-swap writes, an ordered event history
//! per collection that watches replay from, and compaction that makes old revisions unavailable
//! (so watches and paged lists from before it get `410 Gone`, as against a compacted etcd).
//!
//! Storage knows nothing about Kubernetes rules beyond `metadata.resourceVersion`; the API layer
//! decides what to write. Locks are per collection and never held across I/O or `.await`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use imbl::OrdMap;
use serde_json::Value;
use tokio::sync::Notify;

use crate::resources::StorageKey;

/// Namespace ("" for cluster scoped) and name: the storage key of an object within a
/// collection. Ordered as etcd orders `/registry/<resource>/<namespace>/<name>`.
pub type ObjectKey = (String, String);

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed (the object is its last state, at the revision of the deletion).
    Deleted,
}

impl EventType {
    /// The watch event type string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change in a collection's history.
#[derive(Debug)]
pub struct Event {
    /// Revision of the change.
    pub rv: u64,
    /// Kind of change.
    pub kind: EventType,
    /// The object after the change (for deletions: the last state).
    pub object: Arc<Value>,
    /// The object before the change, for modifications and deletions (selector-filtered
    /// watches need it to turn "stopped matching" into DELETED).
    pub previous: Option<Arc<Value>>,
}

/// Why a storage operation failed; the API layer maps these to Status errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Create of an existing key.
    #[error("already exists")]
    AlreadyExists,
    /// The key does not exist.
    #[error("not found")]
    NotFound,
    /// The object changed since the expected revision.
    #[error("the object has been modified")]
    Conflict,
    /// The requested revision is no longer available.
    #[error("too old resource version: {requested} ({oldest})")]
    Expired {
        /// The revision asked for.
        requested: u64,
        /// The oldest revision still available.
        oldest: u64,
    },
    /// The collection was removed (its CRD was deleted).
    #[error("the collection was removed")]
    Closed,
}

/// A consistent view of a collection at a revision.
#[derive(Clone)]
pub struct Snapshot {
    /// The revision the view is at.
    pub rv: u64,
    /// The objects.
    pub objects: OrdMap<ObjectKey, Arc<Value>>,
}

/// Settings of the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Events kept per collection for watches to resume from.
    pub history_per_collection: usize,
    /// How long snapshots for paged lists (continue tokens) stay available.
    pub snapshot_ttl: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            history_per_collection: 20_000,
            snapshot_ttl: Duration::from_secs(300),
        }
    }
}

/// All collections and the cluster-wide revision counter.
pub struct Store {
    revision: Arc<AtomicU64>,
    /// Fired on every write to any collection (controllers wait on it).
    changed: Arc<Notify>,
    collections: RwLock<HashMap<StorageKey, Arc<Collection>>>,
    config: StoreConfig,
}

impl Store {
    /// An empty store at revision 1 (revision 0 means "any" in the API).
    pub fn new(config: StoreConfig) -> Self {
        Store {
            revision: Arc::new(AtomicU64::new(1)),
            changed: Arc::new(Notify::new()),
            collections: RwLock::new(HashMap::new()),
            config,
        }
    }

    /// The latest revision of the whole store.
    pub fn revision(&self) -> u64 {
        self.revision.load(Ordering::SeqCst)
    }

    /// The collection for a resource, created empty on first use.
    pub fn collection(&self, key: &StorageKey) -> Arc<Collection> {
        if let Some(c) = self
            .collections
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            return c.clone();
        }
        let mut all = self.collections.write().unwrap_or_else(|e| e.into_inner());
        all.entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Collection {
                    revision: self.revision.clone(),
                    changed: self.changed.clone(),
                    inner: Mutex::new(CollectionInner {
                        objects: OrdMap::new(),
                        history: VecDeque::new(),
                        floor: 0,
                        snapshots: BTreeMap::new(),
                        closed: false,
                    }),
                    notify: Notify::new(),
                    config: self.config.clone(),
                })
            })
            .clone()
    }

    /// Drops a collection (its CRD is gone): watchers end, objects are forgotten.
    pub fn drop_collection(&self, key: &StorageKey) {
        let removed = self
            .collections
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        if let Some(c) = removed {
            c.lock().closed = true;
            c.notify.notify_waiters();
        }
    }

    /// Forgets all history: watches and continue tokens from before now get `410 Gone`, as after
    /// an etcd compaction.
    pub fn compact(&self) {
        let now = self.revision();
        let all: Vec<_> = self
            .collections
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for c in all {
            let mut inner = c.lock();
            inner.history.clear();
            inner.floor = now;
            inner.snapshots.clear();
            drop(inner);
            // Wake watchers so the ones behind the new floor learn they expired.
            c.notify.notify_waiters();
        }
    }

    /// Waits until any collection is written (or `max` passes).
    pub async fn changed(&self, max: Duration) {
        let _ = tokio::time::timeout(max, self.changed.notified()).await;
    }

    /// Number of objects across all collections.
    pub fn object_count(&self) -> usize {
        self.collections
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|c| c.lock().objects.len())
            .sum()
    }
}

/// One resource's objects, history and watchers.
pub struct Collection {
    revision: Arc<AtomicU64>,
    changed: Arc<Notify>,
    inner: Mutex<CollectionInner>,
    notify: Notify,
    config: StoreConfig,
}

struct CollectionInner {
    objects: OrdMap<ObjectKey, Arc<Value>>,
    /// Events in revision order, all with `rv > floor`.
    history: VecDeque<Arc<Event>>,
    /// Every change with a revision above `floor` is in `history`.
    floor: u64,
    /// Snapshots kept for paged lists: revision -> (taken at, objects).
    snapshots: BTreeMap<u64, (Instant, OrdMap<ObjectKey, Arc<Value>>)>,
    closed: bool,
}

fn set_resource_version(obj: &mut Value, rv: u64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

/// The resourceVersion of a stored object.
pub fn resource_version(obj: &Value) -> u64 {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

impl Collection {
    fn lock(&self) -> MutexGuard<'_, CollectionInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_revision(&self) -> u64 {
        self.revision.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The current object at a key.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<Value>> {
        self.lock().objects.get(key).cloned()
    }

    /// A consistent snapshot of the whole collection at the latest revision.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.lock();
        Snapshot {
            // Read under the lock: no write to this collection can be between this revision and
            // the objects we return.
            rv: self.revision.load(Ordering::SeqCst),
            objects: inner.objects.clone(),
        }
    }

    /// Keeps a snapshot for a paged list to continue from, and returns it.
    pub fn retain_snapshot(&self, snapshot: &Snapshot) {
        let mut inner = self.lock();
        let ttl = self.config.snapshot_ttl;
        inner.snapshots.retain(|_, (at, _)| at.elapsed() < ttl);
        // A bounded number: paging clients that never finish must not grow memory forever.
        while inner.snapshots.len() >= 64 {
            let Some(first) = inner.snapshots.keys().next().copied() else {
                break;
            };
            inner.snapshots.remove(&first);
        }
        inner
            .snapshots
            .insert(snapshot.rv, (Instant::now(), snapshot.objects.clone()));
    }

    /// The snapshot at exactly `rv`: the latest one if `rv` is current, a retained one for paging.
    pub fn snapshot_at(&self, rv: u64) -> Result<Snapshot, StoreError> {
        let inner = self.lock();
        let current = self.revision.load(Ordering::SeqCst);
        // Nothing in this collection changed after `rv` if the newest event is not newer.
        let newest_change = inner.history.back().map_or(inner.floor, |e| e.rv);
        if rv <= current && rv >= newest_change && rv >= inner.floor {
            return Ok(Snapshot {
                rv,
                objects: inner.objects.clone(),
            });
        }
        if let Some((at, objects)) = inner.snapshots.get(&rv)
            && at.elapsed() < self.config.snapshot_ttl
        {
            return Ok(Snapshot {
                rv,
                objects: objects.clone(),
            });
        }
        Err(StoreError::Expired {
            requested: rv,
            oldest: newest_change.max(inner.floor),
        })
    }

    fn record(&self, inner: &mut CollectionInner, event: Event) {
        inner.history.push_back(Arc::new(event));
        while inner.history.len() > self.config.history_per_collection {
            if let Some(old) = inner.history.pop_front() {
                inner.floor = old.rv;
            }
        }
    }

    /// Stores a new object. Sets `metadata.resourceVersion`.
    pub fn create(&self, key: ObjectKey, mut obj: Value) -> Result<Arc<Value>, StoreError> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(StoreError::Closed);
        }
        if inner.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists);
        }
        let rv = self.next_revision();
        set_resource_version(&mut obj, rv);
        let obj = Arc::new(obj);
        inner.objects.insert(key, obj.clone());
        self.record(
            &mut inner,
            Event {
                rv,
                kind: EventType::Added,
                object: obj.clone(),
                previous: None,
            },
        );
        drop(inner);
        self.notify.notify_waiters();
        self.changed.notify_waiters();
        Ok(obj)
    }

    /// Replaces the object at `key` if it is still at `expected_rv`.
    pub fn replace(
        &self,
        key: &ObjectKey,
        expected_rv: u64,
        mut obj: Value,
    ) -> Result<Arc<Value>, StoreError> {
        let mut inner = self.lock();
        let current = inner
            .objects
            .get(key)
            .cloned()
            .ok_or(StoreError::NotFound)?;
        if resource_version(&current) != expected_rv {
            return Err(StoreError::Conflict);
        }
        let rv = self.next_revision();
        set_resource_version(&mut obj, rv);
        let obj = Arc::new(obj);
        inner.objects.insert(key.clone(), obj.clone());
        self.record(
            &mut inner,
            Event {
                rv,
                kind: EventType::Modified,
                object: obj.clone(),
                previous: Some(current),
            },
        );
        drop(inner);
        self.notify.notify_waiters();
        self.changed.notify_waiters();
        Ok(obj)
    }

    /// Removes the object at `key` if it is still at `expected_rv` (any revision if `None`).
    /// `last_state` replaces the stored state in the DELETED event when given (a write that
    /// removed the last finalizer). Returns the deleted object at the deletion's revision.
    pub fn remove(
        &self,
        key: &ObjectKey,
        expected_rv: Option<u64>,
        last_state: Option<Value>,
    ) -> Result<Arc<Value>, StoreError> {
        let mut inner = self.lock();
        let current = inner
            .objects
            .get(key)
            .cloned()
            .ok_or(StoreError::NotFound)?;
        if expected_rv.is_some_and(|rv| rv != resource_version(&current)) {
            return Err(StoreError::Conflict);
        }
        inner.objects.remove(key);
        let rv = self.next_revision();
        let mut last = last_state.unwrap_or_else(|| (*current).clone());
        set_resource_version(&mut last, rv);
        let last = Arc::new(last);
        self.record(
            &mut inner,
            Event {
                rv,
                kind: EventType::Deleted,
                object: last.clone(),
                previous: Some(current),
            },
        );
        drop(inner);
        self.notify.notify_waiters();
        self.changed.notify_waiters();
        Ok(last)
    }

    /// A cursor over this collection's changes after revision `rv`.
    pub fn watch_from(self: &Arc<Self>, rv: u64) -> Result<Cursor, StoreError> {
        let inner = self.lock();
        if rv < inner.floor {
            return Err(StoreError::Expired {
                requested: rv,
                oldest: inner.floor,
            });
        }
        drop(inner);
        Ok(Cursor {
            collection: self.clone(),
            after: rv,
        })
    }

    /// The latest revision at which this collection has no undelivered change for a cursor
    /// positioned at `after` (what a watch BOOKMARK may announce), or `None` if changes are pending.
    fn quiet_revision(&self, after: u64) -> Option<u64> {
        let inner = self.lock();
        let newest = inner.history.back().map_or(0, |e| e.rv);
        (newest <= after).then(|| self.revision.load(Ordering::SeqCst).max(after))
    }
}

/// A watch position in one collection: yields every change after it, in order.
pub struct Cursor {
    collection: Arc<Collection>,
    after: u64,
}

impl Cursor {
    /// The revision of the last change delivered (or the start revision).
    pub fn position(&self) -> u64 {
        self.after
    }

    /// Waits for and returns the next changes (at least one). Fails with `Expired` when the
    /// cursor fell behind the kept history (a watcher too slow, or a compaction), and `Closed`
    /// when the collection went away.
    pub async fn next(&mut self) -> Result<Vec<Arc<Event>>, StoreError> {
        loop {
            let notified = self.collection.notify.notified();
            tokio::pin!(notified);
            // Register for wake-ups before looking, so a write in between is not missed.
            notified.as_mut().enable();
            {
                let inner = self.collection.lock();
                if inner.closed {
                    return Err(StoreError::Closed);
                }
                if self.after < inner.floor {
                    return Err(StoreError::Expired {
                        requested: self.after,
                        oldest: inner.floor,
                    });
                }
                // History is sorted by revision: find the first event after the cursor.
                let start = inner.history.partition_point(|e| e.rv <= self.after);
                if start < inner.history.len() {
                    let events: Vec<_> = inner.history.range(start..).cloned().collect();
                    if let Some(last) = events.last() {
                        self.after = last.rv;
                    }
                    return Ok(events);
                }
            }
            notified.await;
        }
    }

    /// If nothing is pending, advances the cursor to the latest revision and returns it (for a
    /// BOOKMARK); `None` when changes wait to be delivered.
    pub fn bookmark(&mut self) -> Option<u64> {
        let rv = self.collection.quiet_revision(self.after)?;
        self.after = rv;
        Some(rv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(n: &str) -> ObjectKey {
        ("ns".into(), n.into())
    }

    fn obj(n: &str) -> Value {
        json!({"metadata": {"name": n, "namespace": "ns"}})
    }

    fn store() -> (Store, Arc<Collection>) {
        let store = Store::new(StoreConfig::default());
        let c = store.collection(&StorageKey {
            group: String::new(),
            resource: "configmaps".into(),
        });
        (store, c)
    }

    #[tokio::test]
    async fn revisions_increase_and_cas_is_enforced() {
        let (store, c) = store();
        let a = c.create(key("a"), obj("a")).unwrap();
        let rv_a = resource_version(&a);
        assert_eq!(store.revision(), rv_a);
        assert_eq!(c.create(key("a"), obj("a")), Err(StoreError::AlreadyExists));
        let a2 = c.replace(&key("a"), rv_a, obj("a")).unwrap();
        assert!(resource_version(&a2) > rv_a);
        assert_eq!(
            c.replace(&key("a"), rv_a, obj("a")),
            Err(StoreError::Conflict)
        );
        assert_eq!(
            c.remove(&key("a"), Some(rv_a), None),
            Err(StoreError::Conflict)
        );
        let gone = c.remove(&key("a"), None, None).unwrap();
        assert!(resource_version(&gone) > resource_version(&a2));
        assert!(c.get(&key("a")).is_none());
    }

    #[tokio::test]
    async fn cursor_sees_every_change_in_order_and_expires_after_compaction() {
        let (store, c) = store();
        let start = store.revision();
        let mut cursor = c.watch_from(start).unwrap();
        let mut lagging = c.watch_from(start).unwrap();
        let a = c.create(key("a"), obj("a")).unwrap();
        c.replace(&key("a"), resource_version(&a), obj("a"))
            .unwrap();
        c.remove(&key("a"), None, None).unwrap();
        let events = cursor.next().await.unwrap();
        let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [EventType::Added, EventType::Modified, EventType::Deleted]
        );
        assert!(events.windows(2).all(|w| w[0].rv < w[1].rv));
        assert!(cursor.bookmark().is_some());

        store.compact();
        assert!(matches!(
            c.watch_from(start),
            Err(StoreError::Expired { .. })
        ));
        // A watcher that never read the old events fell behind the compaction.
        assert!(matches!(
            lagging.next().await,
            Err(StoreError::Expired { .. })
        ));
        // One that is caught up keeps going.
        c.create(key("b"), obj("b")).unwrap();
        assert_eq!(cursor.next().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn snapshots_for_paging() {
        let (_store, c) = store();
        c.create(key("a"), obj("a")).unwrap();
        let snap = c.snapshot();
        c.retain_snapshot(&snap);
        c.create(key("b"), obj("b")).unwrap();
        let old = c.snapshot_at(snap.rv).unwrap();
        assert_eq!(old.objects.len(), 1);
        assert!(c.snapshot_at(snap.rv - 1).is_err());
        let now = c.snapshot();
        assert_eq!(c.snapshot_at(now.rv).unwrap().objects.len(), 2);
    }
}

//! The garbage collector of kube-controller-manager: deletes objects whose owners are gone,
//! and finishes the `foregroundDeletion` and `orphan` deletions the API server starts.
//!
//! It works the way upstream's `garbagecollector` does, as an ordinary API client:
//! - discovery (repeated, so CRDs added later are picked up) names every resource that can be
//!   listed, watched and deleted; one watch per resource feeds a graph of objects by uid;
//! - an object whose owners are not all in the graph is checked against the server (a GET of
//!   each owner, uid compared) because the graph may lag: when no owner remains it is deleted
//!   (Background, or the policy its own finalizers ask for, so chains cascade); when some owner
//!   remains, references to missing owners and to owners deleting in foreground are dropped;
//! - an owner with `foregroundDeletion` gets its dependents deleted, and loses the finalizer once
//!   no dependent with `blockOwnerDeletion: true` is left;
//! - an owner with `orphan` gets its reference removed from every dependent, then loses the
//!   finalizer.
//!
//! Every write is guarded (uid preconditions on deletes, JSON patch `test`s on the lists it
//! edits), so failed or conflicting writes are just retried, and two collectors running
//! against the same server do no harm.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery, Scope, verbs};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Finalizer the API server adds for `propagationPolicy: Foreground`.
const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// Finalizer the API server adds for `propagationPolicy: Orphan`.
const ORPHAN_FINALIZER: &str = "orphan";

/// How often discovery runs again (new CRDs, new versions, removed resources).
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(2);
/// How often the graph is examined even without watch events (retries of failed writes).
const RESYNC_INTERVAL: Duration = Duration::from_secs(1);
/// How long a dependent found with a live owner is left alone unless something is removed.
const SOLID_RECHECK: Duration = Duration::from_secs(5);
/// Backoff after a failed API call about a dependent.
const ERROR_RETRY: Duration = Duration::from_secs(1);
/// A watch that never completes its initial list stops blocking foreground and orphan
/// completion after this long (upstream also proceeds after a sync timeout).
const SYNC_GRACE: Duration = Duration::from_secs(10);

/// Resources the collector never watches: upstream's `DefaultIgnoredResources`.
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// Runs the garbage collector until `shutdown` is cancelled. API errors are logged and retried.
pub async fn run(client: kube::Client, shutdown: CancellationToken) {
    let mut collector = Collector::new(client);
    collector.run(&shutdown).await;
}

/// Why one piece of work failed; logged, and the work retried later.
#[derive(Debug, thiserror::Error)]
enum GcError {
    /// The API server refused or failed a request.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// A patch the collector built is not a valid JSON patch (a bug here, not in the input).
    #[error("invalid JSON patch: {0}")]
    Patch(serde_json::Error),
    /// An ownerReference names a kind discovery does not know (yet).
    #[error("owner kind {kind} in {api_version} is not served")]
    UnknownKind { api_version: String, kind: String },
    /// A cluster-scoped object names a namespaced owner, which can never resolve.
    #[error("cluster-scoped object refers to namespaced owner {kind} {name}")]
    NamespacedOwnerOfClusterScoped { kind: String, name: String },
}

/// A served resource the collector watches.
#[derive(Debug)]
struct Resource {
    ar: ApiResource,
    namespaced: bool,
}

/// One object as the collector last saw it.
#[derive(Debug, Clone)]
struct Node {
    /// The watch that reported it (resources seen by two watches are pruned per watch).
    watch: u64,
    resource: Arc<Resource>,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
}

impl Node {
    fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    fn deleting_with(&self, finalizer: &str) -> bool {
        self.deleting && self.has_finalizer(finalizer)
    }
}

/// The state of one watch's initial list.
#[derive(Debug)]
struct WatchSync {
    started: Instant,
    synced: bool,
}

/// Everything the watches have reported, shared between them and the collector loop.
#[derive(Debug, Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    watches: HashMap<u64, WatchSync>,
    /// Counts removals, so a dependent found with a live owner is looked at again as soon as
    /// anything disappears.
    removals: u64,
}

impl Graph {
    fn upsert(&mut self, watch: u64, resource: &Arc<Resource>, obj: DynamicObject) {
        let meta = obj.metadata;
        let (Some(uid), Some(name)) = (meta.uid, meta.name) else {
            return;
        };
        let node = Node {
            watch,
            resource: resource.clone(),
            namespace: meta.namespace,
            name,
            owners: meta.owner_references.unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.unwrap_or_default(),
        };
        self.nodes.insert(uid, node);
    }

    fn remove(&mut self, watch: u64, uid: &str) {
        if self.nodes.get(uid).is_some_and(|n| n.watch == watch) {
            self.nodes.remove(uid);
            self.removals += 1;
        }
    }

    /// Drops what a watch reported but no longer lists (deleted while it was relisting).
    fn prune(&mut self, watch: u64, listed: &HashSet<String>) {
        let before = self.nodes.len();
        self.nodes
            .retain(|uid, n| n.watch != watch || listed.contains(uid));
        if self.nodes.len() != before {
            self.removals += 1;
        }
    }

    fn forget_watch(&mut self, watch: u64) {
        self.watches.remove(&watch);
        self.prune(watch, &HashSet::new());
    }

    /// Whether every watch has listed once: only then is "no dependent in the graph" true.
    fn all_synced(&self, now: Instant) -> bool {
        self.watches
            .values()
            .all(|w| w.synced || now.duration_since(w.started) > SYNC_GRACE)
    }
}

/// The graph behind a lock that is never held across an await.
#[derive(Debug, Default)]
struct Shared {
    graph: Mutex<Graph>,
    changed: Notify,
}

impl Shared {
    fn graph(&self) -> MutexGuard<'_, Graph> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep going.
        self.graph.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What happened to one dependent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Nothing to do: it is gone, being deleted, or has a live owner.
    Kept,
    /// A delete or patch was sent.
    Acted,
}

/// The state of an owner named by an ownerReference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnerState {
    /// Exists and is not waiting for its dependents.
    Solid,
    /// Gone, or replaced by another object with the same name.
    Dangling,
    /// Being deleted in foreground: waits for its dependents.
    Waiting,
}

/// When to look at a dependent again.
#[derive(Debug, Clone, Copy)]
struct Quiet {
    until: Instant,
    /// Also look again when the graph's removal count moves past this.
    removals: Option<u64>,
}

/// What wakes the collector loop.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    Discovery,
    Sweep,
}

/// The collector's own state, owned by its loop.
struct Collector {
    client: kube::Client,
    shared: Arc<Shared>,
    discovery: Option<Discovery>,
    watches: HashMap<(String, String, String), CancellationToken>,
    next_watch: u64,
    quiet: HashMap<String, Quiet>,
    shutdown: CancellationToken,
}

impl Drop for Collector {
    /// Watches are separate tasks: stop them even when the collector's task is aborted
    /// rather than cancelled.
    fn drop(&mut self) {
        for (_, watch) in self.watches.drain() {
            watch.cancel();
        }
    }
}

impl Collector {
    fn new(client: kube::Client) -> Self {
        Collector {
            client,
            shared: Arc::default(),
            discovery: None,
            watches: HashMap::new(),
            next_watch: 0,
            quiet: HashMap::new(),
            shutdown: CancellationToken::new(),
        }
    }

    async fn run(&mut self, shutdown: &CancellationToken) {
        self.shutdown = shutdown.child_token();
        let mut rediscover = tokio::time::interval(DISCOVERY_INTERVAL);
        let mut resync = tokio::time::interval(RESYNC_INTERVAL);
        let shared = self.shared.clone();
        loop {
            let trigger = async {
                tokio::select! {
                    _ = rediscover.tick() => Trigger::Discovery,
                    _ = shared.changed.notified() => Trigger::Sweep,
                    _ = resync.tick() => Trigger::Sweep,
                }
            };
            let Some(trigger) = shutdown.run_until_cancelled(trigger).await else {
                return;
            };
            let work = async {
                match trigger {
                    Trigger::Discovery => self.rediscover().await,
                    Trigger::Sweep => self.sweep().await,
                }
            };
            if shutdown.run_until_cancelled(work).await.is_none() {
                return;
            }
        }
    }

    /// Runs discovery and makes the watches match what is served.
    async fn rediscover(&mut self) {
        let discovery = match Discovery::new(self.client.clone()).run().await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "garbage collector: discovery failed, retrying");
                return;
            }
        };
        let mut wanted = HashMap::new();
        for group in discovery.groups() {
            for (ar, caps) in group.resources_by_stability() {
                if collectable(&ar, &caps) {
                    let key = (ar.group.clone(), ar.version.clone(), ar.plural.clone());
                    let namespaced = caps.scope == Scope::Namespaced;
                    wanted.insert(key, Resource { ar, namespaced });
                }
            }
        }
        self.watches.retain(|key, watch| {
            let keep = wanted.contains_key(key);
            if !keep {
                tracing::debug!(resource = ?key, "garbage collector: resource no longer served");
                watch.cancel();
            }
            keep
        });
        for (key, resource) in wanted {
            if !self.watches.contains_key(&key) {
                let watch = self.start_watch(resource);
                self.watches.insert(key, watch);
            }
        }
        self.discovery = Some(discovery);
    }

    fn start_watch(&mut self, resource: Resource) -> CancellationToken {
        self.next_watch += 1;
        let id = self.next_watch;
        let stop = self.shutdown.child_token();
        self.shared.graph().watches.insert(
            id,
            WatchSync {
                started: Instant::now(),
                synced: false,
            },
        );
        tokio::spawn(watch_resource(
            self.client.clone(),
            id,
            Arc::new(resource),
            self.shared.clone(),
            stop.clone(),
        ));
        stop
    }

    /// Examines the graph once and sends what deletes and patches it calls for.
    async fn sweep(&mut self) {
        let now = Instant::now();
        let (nodes, synced, removals) = {
            let graph = self.shared.graph();
            (graph.nodes.clone(), graph.all_synced(now), graph.removals)
        };
        self.quiet.retain(|uid, _| nodes.contains_key(uid));
        let dependents = dependents_by_owner(&nodes);
        let mut owners = OwnerCache::default();

        for (uid, owner) in &nodes {
            if owner.deleting_with(FOREGROUND_FINALIZER) {
                self.finish_foreground(uid, owner, &nodes, &dependents, synced, &mut owners)
                    .await;
            } else if owner.deleting_with(ORPHAN_FINALIZER) && synced {
                self.finish_orphan(uid, owner, &nodes, &dependents).await;
            }
        }
        for (uid, node) in &nodes {
            if !node.deleting
                && !node.owners.is_empty()
                && !owners_all_live(node, &nodes)
                && self.due(uid, now, removals)
            {
                let has_dependents = dependents.contains_key(uid.as_str());
                self.attempt_and_note(uid, node, has_dependents, &mut owners, removals)
                    .await;
            }
        }
    }

    /// Foreground: deletes the dependents, and releases the owner once none blocks it.
    async fn finish_foreground(
        &mut self,
        uid: &str,
        owner: &Node,
        nodes: &HashMap<String, Node>,
        dependents: &HashMap<&str, Vec<&str>>,
        synced: bool,
        owners: &mut OwnerCache,
    ) {
        let deps = dependents.get(uid).map(Vec::as_slice).unwrap_or_default();
        let now = Instant::now();
        let removals = self.shared.graph().removals;
        let mut blocked = false;
        for dep_uid in deps {
            let Some(dep) = nodes.get(*dep_uid) else {
                continue;
            };
            blocked |= blocks(dep, uid);
            if !dep.deleting && self.due(dep_uid, now, removals) {
                let has_dependents = dependents.contains_key(dep_uid);
                self.attempt_and_note(dep_uid, dep, has_dependents, owners, removals)
                    .await;
            }
        }
        if !blocked && synced {
            self.release(uid, owner, FOREGROUND_FINALIZER).await;
        }
    }

    /// Orphan: removes the owner's reference from every dependent, then releases the owner.
    async fn finish_orphan(
        &self,
        uid: &str,
        owner: &Node,
        nodes: &HashMap<String, Node>,
        dependents: &HashMap<&str, Vec<&str>>,
    ) {
        let deps = dependents.get(uid).map(Vec::as_slice).unwrap_or_default();
        let mut all_done = true;
        for dep_uid in deps {
            let Some(dep) = nodes.get(*dep_uid) else {
                continue;
            };
            let owner_uids = [uid.to_owned()];
            if let Err(e) = self.remove_owner_refs(dep_uid, dep, &owner_uids).await {
                tracing::debug!(dependent = %dep.name, error = %e,
                    "garbage collector: could not orphan dependent, retrying");
                all_done = false;
            }
        }
        if all_done {
            self.release(uid, owner, ORPHAN_FINALIZER).await;
        }
    }

    /// Removes `finalizer` from an owner, logging failures (the next sweep retries).
    async fn release(&self, uid: &str, owner: &Node, finalizer: &str) {
        if let Err(e) = self.remove_finalizer(uid, owner, finalizer).await {
            tracing::debug!(owner = %owner.name, %finalizer, error = %e,
                "garbage collector: could not remove finalizer, retrying");
        }
    }

    /// Whether a dependent is due for another look.
    fn due(&self, uid: &str, now: Instant, removals: u64) -> bool {
        match self.quiet.get(uid) {
            None => true,
            Some(q) => now >= q.until || q.removals.is_some_and(|r| r != removals),
        }
    }

    async fn attempt_and_note(
        &mut self,
        uid: &str,
        node: &Node,
        has_dependents: bool,
        owners: &mut OwnerCache,
        removals: u64,
    ) {
        let now = Instant::now();
        let quiet = match self
            .attempt_to_delete(uid, node, has_dependents, owners)
            .await
        {
            Ok(Outcome::Kept) => Quiet {
                until: now + SOLID_RECHECK,
                removals: Some(removals),
            },
            Ok(Outcome::Acted) => Quiet {
                until: now + ERROR_RETRY,
                removals: None,
            },
            Err(e @ GcError::NamespacedOwnerOfClusterScoped { .. }) => {
                // Upstream gives up on such objects too: retrying cannot fix the reference.
                tracing::info!(object = %node.name, error = %e,
                    "garbage collector: ignoring invalid ownerReference");
                Quiet {
                    until: now + SOLID_RECHECK,
                    removals: Some(removals),
                }
            }
            Err(e) => {
                tracing::debug!(object = %node.name, error = %e,
                    "garbage collector: will retry");
                Quiet {
                    until: now + ERROR_RETRY,
                    removals: None,
                }
            }
        };
        self.quiet.insert(uid.to_owned(), quiet);
    }

    /// Upstream's `attemptToDeleteItem`: classifies the owners of the latest version of a
    /// dependent and deletes it, trims its references, or leaves it.
    async fn attempt_to_delete(
        &self,
        uid: &str,
        node: &Node,
        has_dependents: bool,
        owners: &mut OwnerCache,
    ) -> Result<Outcome, GcError> {
        let api = self.api(&node.resource, node.namespace.as_deref());
        let Some(latest) = api.get_opt(&node.name).await? else {
            return Ok(Outcome::Kept);
        };
        let meta = &latest.metadata;
        if meta.uid.as_deref() != Some(uid) || meta.deletion_timestamp.is_some() {
            return Ok(Outcome::Kept);
        }
        let refs = meta.owner_references.as_deref().unwrap_or_default();
        if refs.is_empty() {
            return Ok(Outcome::Kept);
        }
        let mut solid = false;
        let mut detach = Vec::new();
        let mut waiting = false;
        for r in refs {
            match self
                .owner_state(r, node.namespace.as_deref(), owners)
                .await?
            {
                OwnerState::Solid => solid = true,
                OwnerState::Dangling => detach.push(r.uid.clone()),
                OwnerState::Waiting => {
                    waiting = true;
                    detach.push(r.uid.clone());
                }
            }
        }
        if solid {
            if detach.is_empty() {
                return Ok(Outcome::Kept);
            }
            // A foreground owner would otherwise wait for a dependent that another owner keeps.
            tracing::debug!(object = %node.name, owners = ?detach,
                "garbage collector: removing references to missing or deleting owners");
            self.remove_owner_refs(uid, node, &detach).await?;
            return Ok(Outcome::Acted);
        }
        let policy = if waiting && has_dependents {
            PropagationPolicy::Foreground
        } else {
            policy_for(meta.finalizers.as_deref().unwrap_or_default())
        };
        tracing::debug!(object = %node.name, ?policy, "garbage collector: deleting dependent");
        self.delete(uid, node, policy).await?;
        Ok(Outcome::Acted)
    }

    /// Upstream's `isDangling`: looks the owner up on the server (the graph may lag).
    async fn owner_state(
        &self,
        r: &OwnerReference,
        dependent_namespace: Option<&str>,
        cache: &mut OwnerCache,
    ) -> Result<OwnerState, GcError> {
        let (ar, caps) = self.resolve(r)?;
        let namespaced = caps.scope == Scope::Namespaced;
        let namespace = match (namespaced, dependent_namespace) {
            (false, _) => None,
            (true, Some(ns)) => Some(ns),
            (true, None) => {
                return Err(GcError::NamespacedOwnerOfClusterScoped {
                    kind: r.kind.clone(),
                    name: r.name.clone(),
                });
            }
        };
        let key = (r.uid.clone(), namespace.map(str::to_owned));
        if let Some(state) = cache.0.get(&key) {
            return Ok(*state);
        }
        let resource = Resource { ar, namespaced };
        let found = self.api(&resource, namespace).get_opt(&r.name).await?;
        let state = match found {
            Some(owner) if owner.metadata.uid.as_deref() == Some(r.uid.as_str()) => {
                let deleting = owner.metadata.deletion_timestamp.is_some();
                let finalizers = owner.metadata.finalizers.unwrap_or_default();
                if deleting && finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
                    OwnerState::Waiting
                } else {
                    OwnerState::Solid
                }
            }
            _ => OwnerState::Dangling,
        };
        cache.0.insert(key, state);
        Ok(state)
    }

    fn resolve(&self, r: &OwnerReference) -> Result<(ApiResource, ApiCapabilities), GcError> {
        let unknown = || GcError::UnknownKind {
            api_version: r.api_version.clone(),
            kind: r.kind.clone(),
        };
        let (group, version) = split_api_version(&r.api_version);
        let gvk = GroupVersionKind::gvk(group, version, &r.kind);
        self.discovery
            .as_ref()
            .and_then(|d| d.resolve_gvk(&gvk))
            .ok_or_else(unknown)
    }

    fn api(&self, resource: &Resource, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) if resource.namespaced => {
                Api::namespaced_with(self.client.clone(), ns, &resource.ar)
            }
            _ => Api::all_with(self.client.clone(), &resource.ar),
        }
    }

    /// Deletes a dependent, only if it is still the object with `uid`.
    async fn delete(
        &self,
        uid: &str,
        node: &Node,
        policy: PropagationPolicy,
    ) -> Result<(), GcError> {
        let params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let api = self.api(&node.resource, node.namespace.as_deref());
        match api.delete(&node.name, &params).await {
            Ok(_) => Ok(()),
            // Gone already, or replaced by a newer object of the same name.
            Err(e) if status_code(&e).is_some_and(|c| c == 404 || c == 409) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the references to `owner_uids` from a dependent's latest version.
    async fn remove_owner_refs(
        &self,
        uid: &str,
        node: &Node,
        owner_uids: &[String],
    ) -> Result<(), GcError> {
        let api = self.api(&node.resource, node.namespace.as_deref());
        let Some(latest) = api.get_opt(&node.name).await? else {
            return Ok(());
        };
        if latest.metadata.uid.as_deref() != Some(uid) {
            return Ok(());
        }
        let refs = latest.metadata.owner_references.unwrap_or_default();
        let kept: Vec<&OwnerReference> = refs
            .iter()
            .filter(|r| !owner_uids.contains(&r.uid))
            .collect();
        if kept.len() == refs.len() {
            return Ok(());
        }
        let patch = guarded_list_patch(uid, "ownerReferences", json!(refs), json!(kept));
        self.json_patch(&api, &node.name, patch).await
    }

    /// Removes `finalizer` from an owner that is still being deleted.
    async fn remove_finalizer(
        &self,
        uid: &str,
        owner: &Node,
        finalizer: &str,
    ) -> Result<(), GcError> {
        let api = self.api(&owner.resource, owner.namespace.as_deref());
        let Some(latest) = api.get_opt(&owner.name).await? else {
            return Ok(());
        };
        let meta = latest.metadata;
        if meta.uid.as_deref() != Some(uid) || meta.deletion_timestamp.is_none() {
            return Ok(());
        }
        let finalizers = meta.finalizers.unwrap_or_default();
        let kept: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
        if kept.len() == finalizers.len() {
            return Ok(());
        }
        tracing::debug!(owner = %owner.name, %finalizer, "garbage collector: removing finalizer");
        let patch = guarded_list_patch(uid, "finalizers", json!(finalizers), json!(kept));
        self.json_patch(&api, &owner.name, patch).await
    }

    async fn json_patch(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        patch: Value,
    ) -> Result<(), GcError> {
        let patch: json_patch::Patch = serde_json::from_value(patch).map_err(GcError::Patch)?;
        match api
            .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Watches one resource into the graph until `stop` is cancelled, then forgets what it saw.
async fn watch_resource(
    client: kube::Client,
    id: u64,
    resource: Arc<Resource>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &resource.ar);
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut listed = HashSet::new();
    while let Some(Some(event)) = stop.run_until_cancelled(stream.next()).await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::debug!(resource = %resource.ar.plural, error = %e,
                    "garbage collector: watch failed, retrying");
                continue;
            }
        };
        let mut graph = shared.graph();
        match event {
            Event::Init => listed.clear(),
            Event::InitApply(obj) => {
                if let Some(uid) = &obj.metadata.uid {
                    listed.insert(uid.clone());
                }
                graph.upsert(id, &resource, obj);
            }
            Event::InitDone => {
                graph.prune(id, &listed);
                listed.clear();
                if let Some(w) = graph.watches.get_mut(&id) {
                    w.synced = true;
                }
            }
            Event::Apply(obj) => graph.upsert(id, &resource, obj),
            Event::Delete(obj) => {
                if let Some(uid) = &obj.metadata.uid {
                    graph.remove(id, uid);
                }
            }
        }
        drop(graph);
        shared.changed.notify_one();
    }
    shared.graph().forget_watch(id);
    shared.changed.notify_one();
}

/// Owner uid -> dependent uids, from the ownerReferences in the graph. A reference to an
/// object that cannot be its owner (another namespace) does not link them: it names an
/// owner that does not exist, which must not hold up the real object's deletion.
fn dependents_by_owner(nodes: &HashMap<String, Node>) -> HashMap<&str, Vec<&str>> {
    let mut map: HashMap<&str, Vec<&str>> = HashMap::new();
    for (uid, node) in nodes {
        for r in &node.owners {
            if nodes.get(&r.uid).is_none_or(|owner| reachable(owner, node)) {
                map.entry(r.uid.as_str()).or_default().push(uid.as_str());
            }
        }
    }
    map
}

/// Whether every owner of `node` is in the graph where a reference from `node` can point:
/// then nothing needs checking on the server.
fn owners_all_live(node: &Node, nodes: &HashMap<String, Node>) -> bool {
    node.owners.iter().all(|r| {
        nodes
            .get(&r.uid)
            .is_some_and(|owner| reachable(owner, node))
    })
}

/// Whether `dependent` can refer to `owner`: a cluster-scoped owner, or one in its namespace.
fn reachable(owner: &Node, dependent: &Node) -> bool {
    !owner.resource.namespaced || owner.namespace == dependent.namespace
}

/// Whether `dep` keeps the owner `owner_uid` from going away in foreground.
fn blocks(dep: &Node, owner_uid: &str) -> bool {
    dep.owners
        .iter()
        .any(|r| r.uid == owner_uid && r.block_owner_deletion == Some(true))
}

/// The policy for deleting an orphaned dependent: the one its own finalizers already ask for.
fn policy_for(finalizers: &[String]) -> PropagationPolicy {
    if finalizers.iter().any(|f| f == ORPHAN_FINALIZER) {
        PropagationPolicy::Orphan
    } else if finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    }
}

/// Resources the collector watches: deletable, listable, watchable, not ignored.
fn collectable(ar: &ApiResource, caps: &ApiCapabilities) -> bool {
    let ignored = IGNORED
        .iter()
        .any(|(g, r)| ar.group == *g && ar.plural == *r);
    !ignored
        && [verbs::LIST, verbs::WATCH, verbs::DELETE]
            .iter()
            .all(|v| caps.supports_operation(v))
}

/// `apps/v1` -> (`apps`, `v1`); `v1` -> (``, `v1`).
fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// A JSON patch replacing `metadata.<field>` only if the object and the list are unchanged.
fn guarded_list_patch(uid: &str, field: &str, old: Value, new: Value) -> Value {
    let path = format!("/metadata/{field}");
    let write = if new.as_array().is_some_and(Vec::is_empty) {
        json!({"op": "remove", "path": path})
    } else {
        json!({"op": "replace", "path": path, "value": new})
    };
    json!([
        {"op": "test", "path": "/metadata/uid", "value": uid},
        {"op": "test", "path": path, "value": old},
        write,
    ])
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Owner lookups made during one sweep, so dependents sharing an owner cost one GET.
#[derive(Debug, Default)]
struct OwnerCache(HashMap<(String, Option<String>), OwnerState>);

#[cfg(test)]
mod tests {
    use super::*;

    fn owner_ref(uid: &str, block: Option<bool>) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: format!("owner-{uid}"),
            uid: uid.into(),
            block_owner_deletion: block,
            controller: None,
        }
    }

    fn node(namespace: Option<&str>, namespaced: bool, owners: Vec<OwnerReference>) -> Node {
        Node {
            watch: 1,
            resource: Arc::new(Resource {
                ar: ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
                namespaced,
            }),
            namespace: namespace.map(str::to_owned),
            name: "n".into(),
            owners,
            deleting: false,
            finalizers: Vec::new(),
        }
    }

    #[test]
    fn api_versions_split_into_group_and_version() {
        assert_eq!(split_api_version("v1"), ("", "v1"));
        assert_eq!(split_api_version("apps/v1"), ("apps", "v1"));
        assert_eq!(
            split_api_version("example.com/v1beta1"),
            ("example.com", "v1beta1")
        );
    }

    #[test]
    fn existing_finalizers_choose_the_policy() {
        assert_eq!(policy_for(&[]), PropagationPolicy::Background);
        assert_eq!(policy_for(&["orphan".into()]), PropagationPolicy::Orphan);
        assert_eq!(
            policy_for(&["x".into(), "foregroundDeletion".into()]),
            PropagationPolicy::Foreground
        );
    }

    #[test]
    fn only_block_owner_deletion_true_blocks() {
        let dep = node(
            Some("ns"),
            true,
            vec![
                owner_ref("a", Some(true)),
                owner_ref("b", Some(false)),
                owner_ref("c", None),
            ],
        );
        assert!(blocks(&dep, "a"));
        assert!(!blocks(&dep, "b"));
        assert!(!blocks(&dep, "c"));
        assert!(!blocks(&dep, "d"));
    }

    #[test]
    fn owners_are_live_only_in_a_reachable_namespace() {
        let mut nodes = HashMap::new();
        nodes.insert("same".to_owned(), node(Some("ns"), true, vec![]));
        nodes.insert("other".to_owned(), node(Some("elsewhere"), true, vec![]));
        nodes.insert("cluster".to_owned(), node(None, false, vec![]));
        let live = |uids: &[&str]| {
            let refs = uids.iter().map(|u| owner_ref(u, None)).collect();
            owners_all_live(&node(Some("ns"), true, refs), &nodes)
        };
        assert!(live(&["same", "cluster"]));
        assert!(!live(&["same", "other"]));
        assert!(!live(&["missing"]));
    }

    #[test]
    fn dependents_are_indexed_by_owner_uid() {
        let mut nodes = HashMap::new();
        nodes.insert(
            "d1".to_owned(),
            node(Some("ns"), true, vec![owner_ref("o", None)]),
        );
        nodes.insert(
            "d2".to_owned(),
            node(
                Some("ns"),
                true,
                vec![owner_ref("o", None), owner_ref("p", None)],
            ),
        );
        let map = dependents_by_owner(&nodes);
        let mut of_o = map.get("o").cloned().unwrap_or_default();
        of_o.sort_unstable();
        assert_eq!(of_o, vec!["d1", "d2"]);
        assert_eq!(map.get("p").map(Vec::len), Some(1));
        assert!(!map.contains_key("d1"));

        // "o" lives in "ns": a dependent elsewhere naming its uid is not its dependent.
        nodes.insert("o".to_owned(), node(Some("ns"), true, vec![]));
        nodes.insert(
            "far".to_owned(),
            node(Some("other"), true, vec![owner_ref("o", None)]),
        );
        let map = dependents_by_owner(&nodes);
        assert_eq!(map.get("o").map(Vec::len), Some(2));
    }

    #[test]
    fn list_patches_test_before_writing() {
        let patch = guarded_list_patch("u", "finalizers", json!(["a", "b"]), json!(["b"]));
        assert_eq!(
            patch,
            json!([
                {"op": "test", "path": "/metadata/uid", "value": "u"},
                {"op": "test", "path": "/metadata/finalizers", "value": ["a", "b"]},
                {"op": "replace", "path": "/metadata/finalizers", "value": ["b"]},
            ])
        );
        let emptied = guarded_list_patch("u", "finalizers", json!(["a"]), json!([]));
        assert_eq!(
            emptied.get(2),
            Some(&json!({"op": "remove", "path": "/metadata/finalizers"}))
        );
    }

    #[test]
    fn graph_prunes_what_a_relist_no_longer_shows() {
        let mut graph = Graph::default();
        graph.nodes.insert("a".into(), node(None, false, vec![]));
        graph.nodes.insert("b".into(), node(None, false, vec![]));
        let mut other = node(None, false, vec![]);
        other.watch = 2;
        graph.nodes.insert("c".into(), other);
        graph.prune(1, &HashSet::from(["a".to_owned()]));
        assert!(graph.nodes.contains_key("a"));
        assert!(!graph.nodes.contains_key("b"));
        assert!(
            graph.nodes.contains_key("c"),
            "another watch's objects stay"
        );
        assert_eq!(graph.removals, 1);
        graph.remove(1, "c");
        assert!(
            graph.nodes.contains_key("c"),
            "only the reporting watch removes"
        );
    }

    #[test]
    fn events_are_not_collected() {
        let caps = ApiCapabilities {
            scope: Scope::Namespaced,
            subresources: vec![],
            operations: vec!["list".into(), "watch".into(), "delete".into()],
        };
        let mut ar = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
        assert!(collectable(&ar, &caps));
        ar.plural = "events".into();
        assert!(!collectable(&ar, &caps));
        let no_delete = ApiCapabilities {
            operations: vec!["list".into(), "watch".into()],
            ..caps
        };
        ar.plural = "configmaps".into();
        assert!(!collectable(&ar, &no_delete));
    }
}

//! Server-side apply of an operator's desired objects, ownership labels, and pruning.
//!
//! One reconcile round of an owner (a custom resource) goes:
//!
//! 1. build an [`Applier`] for the owner ([`Ownership`] names the operator and the owner),
//! 2. [`Applier::apply`] (or [`Applier::apply_dynamic`]) every object the owner should have,
//! 3. [`Applier::prune`] with the [`Inventory`] the previous round stored in the owner's status,
//! 4. store [`Applier::inventory`] in the owner's status for the next round.
//!
//! Every applied object carries the ownership labels ([`Ownership::labels`]). Pruning finds stale
//! objects two ways: the previous inventory (which also reaches other namespaces, and kinds the
//! caller no longer lists), and a label-selector list of the given kinds (which catches objects
//! applied by a round that crashed before it could store its inventory). Either way an object is
//! only deleted when its live labels still say it belongs to this owner, so an object someone
//! adopted (by removing or changing the labels) is left alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Mutex, PoisonError};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, Preconditions, TypeMeta,
};
use kube::{Client, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Label naming the operator that manages an object (also its field manager).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Label naming the application an object belongs to; always [`PART_OF`].
pub const PART_OF_LABEL: &str = "app.kubernetes.io/part-of";
/// Value of [`PART_OF_LABEL`].
pub const PART_OF: &str = "kubecrew";
/// Label naming the owner custom resource (its name).
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Label holding the owner's uid: the selector pruning lists by.
pub const OWNER_UID_LABEL: &str = "kubecrew.io/owner-uid";

/// How often a prune re-reads an object that changed between its ownership check and its
/// deletion, before leaving it to the next round.
const DELETE_ATTEMPTS: usize = 3;

/// Failures applying or pruning, each naming the object or kind concerned.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Server-side apply addresses objects by name; `generateName` cannot be applied.
    #[error("cannot apply a {kind} without metadata.name")]
    MissingName {
        /// The kind of the nameless object.
        kind: String,
    },
    /// The owner has no name or uid, so it was not read from the server.
    #[error("the owner {kind} {name:?} has no uid: ownership needs the owner as stored")]
    OwnerNotStored {
        /// The owner's kind.
        kind: String,
        /// The owner's name, possibly empty.
        name: String,
    },
    /// A typed object could not be converted to or from its JSON form.
    #[error("cannot convert {object} to or from JSON: {source}")]
    Convert {
        /// The object.
        object: Box<ObjectRef>,
        /// The serde error.
        source: serde_json::Error,
    },
    /// The server refused the apply.
    #[error("cannot apply {object}: {source}")]
    Apply {
        /// The object.
        object: Box<ObjectRef>,
        /// The kube error.
        source: kube::Error,
    },
    /// Listing a kind by the owner label failed (other than the kind not being served).
    #[error("cannot list {kind} to prune: {source}")]
    List {
        /// The kind, as `Kind.group`.
        kind: String,
        /// The kube error.
        source: kube::Error,
    },
    /// Discovery of the API serving an inventory entry failed.
    #[error("cannot discover the API serving {object}: {source}")]
    Discover {
        /// The inventory entry.
        object: Box<ObjectRef>,
        /// The kube error.
        source: kube::Error,
    },
    /// Reading an object before pruning it failed.
    #[error("cannot read {object} to decide whether to prune it: {source}")]
    Get {
        /// The object.
        object: Box<ObjectRef>,
        /// The kube error.
        source: kube::Error,
    },
    /// Deleting a stale object failed.
    #[error("cannot delete {object}: {source}")]
    Delete {
        /// The object.
        object: Box<ObjectRef>,
        /// The kube error.
        source: kube::Error,
    },
}

/// Who owns the applied objects: the operator and the custom resource they were derived from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// The operator's name: the field manager and the `app.kubernetes.io/managed-by` value.
    pub manager: String,
    /// The owner custom resource's name: the `app.kubernetes.io/instance` value.
    pub instance: String,
    /// The owner custom resource's uid: the `kubecrew.io/owner-uid` value pruning selects by.
    pub owner_uid: String,
}

impl Ownership {
    /// Ownership by `manager` of the objects derived from `owner`, which must have been read
    /// from the server (a uid is what tells a recreated owner from its predecessor).
    pub fn of<K: Resource>(manager: impl Into<String>, owner: &K) -> Result<Self, ApplyError>
    where
        K::DynamicType: Default,
    {
        let meta = owner.meta();
        match (&meta.name, &meta.uid) {
            (Some(name), Some(uid)) if !name.is_empty() && !uid.is_empty() => Ok(Ownership {
                manager: manager.into(),
                instance: name.clone(),
                owner_uid: uid.clone(),
            }),
            _ => Err(ApplyError::OwnerNotStored {
                kind: K::kind(&K::DynamicType::default()).into_owned(),
                name: meta.name.clone().unwrap_or_default(),
            }),
        }
    }

    /// The labels every object applied for this owner carries.
    pub fn labels(&self) -> BTreeMap<String, String> {
        [
            (MANAGED_BY_LABEL, self.manager.as_str()),
            (PART_OF_LABEL, PART_OF),
            (INSTANCE_LABEL, self.instance.as_str()),
            (OWNER_UID_LABEL, self.owner_uid.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// The label selector finding this owner's objects.
    pub fn selector(&self) -> String {
        format!("{OWNER_UID_LABEL}={}", self.owner_uid)
    }

    /// Adds the ownership labels to an object's own labels. The object keeps its other labels,
    /// but cannot override these: they are what pruning trusts.
    pub fn merge_labels(&self, labels: &mut BTreeMap<String, String>) {
        labels.extend(self.labels());
    }

    /// Whether `labels` carry all of this owner's labels, i.e. the object is ours to delete.
    pub fn owns(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels()
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|actual| actual == v))
    }
}

/// A reference to one applied object, as stored in an [`Inventory`].
///
/// The version is recorded so the object can be found again, but it does not change which
/// object is meant: see [`ObjectRef::is_same_object`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct ObjectRef {
    /// API group; empty for the core group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// API version within the group, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `ConfigMap`.
    pub kind: String,
    /// Namespace; `None` for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// A reference to the object `namespace/name` of the kind `ar`.
    pub fn new(ar: &ApiResource, namespace: Option<&str>, name: &str) -> Self {
        ObjectRef {
            group: ar.group.clone(),
            version: ar.version.clone(),
            kind: ar.kind.clone(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    /// Whether both refer to the same object. Versions of a kind are views of one stored object,
    /// so an object recorded under `v1beta1` is the one now applied under `v1`.
    pub fn is_same_object(&self, other: &ObjectRef) -> bool {
        self.identity() == other.identity()
    }

    fn identity(&self) -> (&str, &str, Option<&str>, &str) {
        (
            &self.group,
            &self.kind,
            self.namespace.as_deref(),
            &self.name,
        )
    }
}

/// Orders by group, kind, namespace, name, then version, so a status lists the objects of a
/// kind together and the versions of one object next to each other.
impl Ord for ObjectRef {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.identity()
            .cmp(&other.identity())
            .then_with(|| self.version.cmp(&other.version))
    }
}

impl PartialOrd for ObjectRef {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// `kind/namespace/name`, or `kind/name` for cluster-scoped objects.
impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.kind, ns, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// The objects applied for an owner, kept in its status so the next round (possibly of a
/// restarted operator) knows what to prune. Serializes as a sorted list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
// A CRD schema may not say `uniqueItems` (the API server rejects it), which a set would.
pub struct Inventory(#[schemars(with = "Vec<ObjectRef>")] pub BTreeSet<ObjectRef>);

impl Inventory {
    /// An empty inventory.
    pub fn new() -> Self {
        Inventory::default()
    }

    /// Adds a reference; false if it was already there.
    pub fn insert(&mut self, object: ObjectRef) -> bool {
        self.0.insert(object)
    }

    /// Whether the inventory holds `object` under any version.
    pub fn contains_object(&self, object: &ObjectRef) -> bool {
        self.0.iter().any(|r| r.is_same_object(object))
    }

    /// The references, in order.
    pub fn iter(&self) -> impl Iterator<Item = &ObjectRef> {
        self.0.iter()
    }

    /// How many references there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The namespaces the referenced objects live in.
    pub fn namespaces(&self) -> BTreeSet<&str> {
        self.0
            .iter()
            .filter_map(|r| r.namespace.as_deref())
            .collect()
    }
}

impl FromIterator<ObjectRef> for Inventory {
    fn from_iter<I: IntoIterator<Item = ObjectRef>>(iter: I) -> Self {
        Inventory(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Inventory {
    type Item = &'a ObjectRef;
    type IntoIter = std::collections::btree_set::Iter<'a, ObjectRef>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Where [`Applier::prune`] lists the given kinds by the owner label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PruneScope {
    /// Every namespace (and cluster-scoped kinds); needs cluster-wide `list` permission.
    #[default]
    AllNamespaces,
    /// Only the namespaces of the previous and the current inventory, for operators allowed to
    /// list in some namespaces only. Cluster-scoped objects are then pruned from the inventory
    /// alone.
    KnownNamespaces,
}

/// Applies an owner's desired objects and prunes the ones it no longer wants.
///
/// One `Applier` per owner and reconcile round: it records what it applied (see
/// [`Applier::inventory`]). Applies may run concurrently; prune after all of them.
pub struct Applier {
    client: Client,
    ownership: Ownership,
    scope: PruneScope,
    applied: Mutex<Inventory>,
}

impl Applier {
    /// An applier for `ownership`'s objects, with an empty inventory.
    pub fn new(client: Client, ownership: Ownership) -> Self {
        Applier {
            client,
            ownership,
            scope: PruneScope::default(),
            applied: Mutex::new(Inventory::new()),
        }
    }

    /// Sets where pruning lists by label (all namespaces unless told otherwise).
    pub fn with_prune_scope(mut self, scope: PruneScope) -> Self {
        self.scope = scope;
        self
    }

    /// Whose objects these are.
    pub fn ownership(&self) -> &Ownership {
        &self.ownership
    }

    /// What was applied so far this round.
    pub fn inventory(&self) -> Inventory {
        self.lock_applied().clone()
    }

    /// Server-side applies `obj` (in its own namespace, with the ownership labels, forcing
    /// conflicts: the operator is the authority on these fields) and returns the live object.
    pub async fn apply<K>(&self, obj: K) -> Result<K, ApplyError>
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let ar = ApiResource::erase::<K>(&());
        let object = ObjectRef::new(&ar, obj.meta().namespace.as_deref(), &obj.name_any());
        let convert = |source| ApplyError::Convert {
            object: Box::new(object.clone()),
            source,
        };
        let dynamic = serde_json::to_value(&obj)
            .and_then(serde_json::from_value::<DynamicObject>)
            .map_err(convert)?;
        let live = self.apply_dynamic(dynamic, &ar).await?;
        serde_json::to_value(live)
            .and_then(serde_json::from_value)
            .map_err(convert)
    }

    /// Server-side applies an object of a kind without a Rust type (e.g. a `ServiceMonitor`),
    /// as [`Applier::apply`] does, and returns the live object.
    pub async fn apply_dynamic(
        &self,
        mut obj: DynamicObject,
        ar: &ApiResource,
    ) -> Result<DynamicObject, ApplyError> {
        let name = match obj.metadata.name.as_deref() {
            Some(name) if !name.is_empty() => name.to_owned(),
            _ => {
                return Err(ApplyError::MissingName {
                    kind: ar.kind.clone(),
                });
            }
        };
        let namespace = obj.metadata.namespace.clone();
        let object = ObjectRef::new(ar, namespace.as_deref(), &name);
        prepare_for_apply(&mut obj, ar, &self.ownership);

        let api = dynamic_api(&self.client, ar, namespace.as_deref());
        let params = PatchParams::apply(&self.ownership.manager).force();
        let live = api
            .patch(&name, &params, &Patch::Apply(&obj))
            .await
            .map_err(|source| ApplyError::Apply {
                object: Box::new(object.clone()),
                source,
            })?;
        tracing::debug!(%object, "applied");
        self.lock_applied().insert(object);
        Ok(live)
    }

    /// Deletes this owner's objects that were not applied this round: those in `previous`, and
    /// those of `kinds` found by the owner-uid label (see [`PruneScope`]). Returns what it
    /// deleted, in order.
    ///
    /// An object is deleted only if its live labels still carry this owner's labels, and only
    /// as it was when checked (uid and resourceVersion preconditions), so an object adopted
    /// meanwhile survives. Objects already gone, and kinds the server does not serve (a CRD not
    /// installed), are skipped. Stops at the first error; the next round retries the rest.
    pub async fn prune(
        &self,
        previous: &Inventory,
        kinds: &[ApiResource],
    ) -> Result<Vec<ObjectRef>, ApplyError> {
        let current = self.inventory();
        let mut candidates: BTreeMap<ObjectRef, Option<DynamicObject>> = stale(previous, &current)
            .map(|r| (r.clone(), None))
            .collect();
        let namespaces = known_namespaces(previous, &current);
        for ar in kinds {
            for obj in self.list_owned(ar, &namespaces).await? {
                let Some(object) = listed_ref(ar, &obj) else {
                    continue;
                };
                if !current.contains_object(&object) {
                    // The listed copy replaces an inventory entry for the same object: it saves
                    // a read, and its version is one the server serves.
                    candidates.retain(|r, _| !r.is_same_object(&object));
                    candidates.insert(object, Some(obj));
                }
            }
        }

        let mut resolver = KindResolver::new(&self.client, kinds);
        let mut deleted = Vec::new();
        for (object, listed) in candidates {
            let Some(ar) = resolver.resolve(&object).await? else {
                tracing::debug!(%object, "kind not served: nothing to prune");
                continue;
            };
            if self.prune_one(&object, &ar, listed, &current).await? {
                deleted.push(object);
            }
        }
        Ok(deleted)
    }

    /// Deletes one candidate if it still is ours; true if this call deleted it.
    async fn prune_one(
        &self,
        object: &ObjectRef,
        ar: &ApiResource,
        listed: Option<DynamicObject>,
        current: &Inventory,
    ) -> Result<bool, ApplyError> {
        let api = dynamic_api(&self.client, ar, object.namespace.as_deref());
        let mut live = match listed {
            Some(obj) => Some(obj),
            None => get_live(&api, object).await?,
        };
        for _ in 0..DELETE_ATTEMPTS {
            let meta = live.as_ref().map(|obj| &obj.metadata);
            match decide(&self.ownership, current, object, meta) {
                Verdict::Delete => {}
                Verdict::Keep(reason) => {
                    log_kept(object, reason);
                    return Ok(false);
                }
            }
            match delete_as_seen(&api, object, meta).await? {
                Deletion::Deleted => {
                    tracing::info!(%object, "pruned");
                    return Ok(true);
                }
                Deletion::Gone => return Ok(false),
                Deletion::Changed => live = get_live(&api, object).await?,
            }
        }
        tracing::info!(%object, "changed while being pruned; leaving it to the next round");
        Ok(false)
    }

    /// The objects of kind `ar` carrying this owner's uid label. A kind the server does not
    /// serve has none.
    async fn list_owned(
        &self,
        ar: &ApiResource,
        namespaces: &BTreeSet<String>,
    ) -> Result<Vec<DynamicObject>, ApplyError> {
        let params = ListParams::default().labels(&self.ownership.selector());
        let apis: Vec<Api<DynamicObject>> = match self.scope {
            PruneScope::AllNamespaces => vec![Api::all_with(self.client.clone(), ar)],
            PruneScope::KnownNamespaces => namespaces
                .iter()
                .map(|ns| Api::namespaced_with(self.client.clone(), ns, ar))
                .collect(),
        };
        let mut found = Vec::new();
        for api in apis {
            match api.list(&params).await {
                Ok(list) => found.extend(list.items),
                Err(e) if is_not_found(&e) => {
                    tracing::debug!(kind = %kind_name(ar), "kind not served: nothing to list");
                }
                Err(source) => {
                    return Err(ApplyError::List {
                        kind: kind_name(ar),
                        source,
                    });
                }
            }
        }
        Ok(found)
    }

    fn lock_applied(&self) -> std::sync::MutexGuard<'_, Inventory> {
        // The inventory is only ever inserted into, so a panic elsewhere cannot leave it torn.
        self.applied.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Makes a desired object ready for server-side apply: ownership labels, apiVersion and kind
/// (which apply requires), and no managedFields (which apply rejects).
fn prepare_for_apply(obj: &mut DynamicObject, ar: &ApiResource, ownership: &Ownership) {
    ownership.merge_labels(obj.metadata.labels.get_or_insert_with(BTreeMap::new));
    obj.metadata.managed_fields = None;
    if obj.types.is_none() {
        obj.types = Some(TypeMeta {
            api_version: ar.api_version.clone(),
            kind: ar.kind.clone(),
        });
    }
}

/// An API for one object of kind `ar`: namespaced when the object is.
fn dynamic_api(client: &Client, ar: &ApiResource, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

/// `Kind.group` (just `Kind` for the core group), as kubectl names kinds.
fn kind_name(ar: &ApiResource) -> String {
    if ar.group.is_empty() {
        ar.kind.clone()
    } else {
        format!("{}.{}", ar.kind, ar.group)
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.is_not_found())
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.is_conflict())
}

/// The previous inventory's entries not applied this round.
fn stale<'a>(
    previous: &'a Inventory,
    current: &'a Inventory,
) -> impl Iterator<Item = &'a ObjectRef> {
    previous.iter().filter(|r| !current.contains_object(r))
}

/// The namespaces [`PruneScope::KnownNamespaces`] lists in.
fn known_namespaces(previous: &Inventory, current: &Inventory) -> BTreeSet<String> {
    previous
        .namespaces()
        .into_iter()
        .chain(current.namespaces())
        .map(str::to_owned)
        .collect()
}

/// The reference to a listed object; `None` for a nameless one, which a server never returns.
fn listed_ref(ar: &ApiResource, obj: &DynamicObject) -> Option<ObjectRef> {
    let name = obj.metadata.name.as_deref().filter(|n| !n.is_empty())?;
    Some(ObjectRef::new(ar, obj.metadata.namespace.as_deref(), name))
}

/// What to do with a prune candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Delete,
    Keep(KeepReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeepReason {
    /// Still desired.
    AppliedThisRound,
    /// Nothing to delete.
    Gone,
    /// Someone else's now (or never ours): its labels do not name this owner.
    NotOwned,
    /// Deletion already started (finalizers are running).
    AlreadyDeleting,
}

/// Decides a prune candidate's fate from this round's inventory and its live metadata.
fn decide(
    ownership: &Ownership,
    current: &Inventory,
    candidate: &ObjectRef,
    live: Option<&ObjectMeta>,
) -> Verdict {
    let Some(live) = live else {
        return Verdict::Keep(KeepReason::Gone);
    };
    if current.contains_object(candidate) {
        Verdict::Keep(KeepReason::AppliedThisRound)
    } else if !ownership.owns(live.labels.as_ref().unwrap_or(&BTreeMap::new())) {
        Verdict::Keep(KeepReason::NotOwned)
    } else if live.deletion_timestamp.is_some() {
        Verdict::Keep(KeepReason::AlreadyDeleting)
    } else {
        Verdict::Delete
    }
}

fn log_kept(object: &ObjectRef, reason: KeepReason) {
    match reason {
        KeepReason::NotOwned => tracing::warn!(
            %object,
            "not pruning: its labels no longer name this owner (adopted or relabelled)"
        ),
        KeepReason::Gone => tracing::debug!(%object, "already gone"),
        KeepReason::AlreadyDeleting => tracing::debug!(%object, "already being deleted"),
        KeepReason::AppliedThisRound => tracing::debug!(%object, "still desired"),
    }
}

async fn get_live(
    api: &Api<DynamicObject>,
    object: &ObjectRef,
) -> Result<Option<DynamicObject>, ApplyError> {
    api.get_opt(&object.name)
        .await
        .map_err(|source| ApplyError::Get {
            object: Box::new(object.clone()),
            source,
        })
}

/// The outcome of one delete attempt.
enum Deletion {
    Deleted,
    Gone,
    /// The object is no longer the one checked (uid or resourceVersion differ).
    Changed,
}

/// Deletes `object` only if it still is exactly as `seen`, so a concurrent adoption or
/// recreation is never deleted on the strength of a stale check.
async fn delete_as_seen(
    api: &Api<DynamicObject>,
    object: &ObjectRef,
    seen: Option<&ObjectMeta>,
) -> Result<Deletion, ApplyError> {
    let params = DeleteParams {
        preconditions: seen.map(|meta| Preconditions {
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
        }),
        ..DeleteParams::background()
    };
    match api.delete(&object.name, &params).await {
        Ok(_) => Ok(Deletion::Deleted),
        Err(e) if is_not_found(&e) => Ok(Deletion::Gone),
        Err(e) if is_conflict(&e) => Ok(Deletion::Changed),
        Err(source) => Err(ApplyError::Delete {
            object: Box::new(object.clone()),
            source,
        }),
    }
}

/// Finds the API serving an inventory entry: one of the kinds the caller named, else
/// discovery (the entry's own version first, then any version of its group, as a CRD may have
/// moved on since). Caches answers for the duration of one prune.
struct KindResolver<'a> {
    client: &'a Client,
    kinds: &'a [ApiResource],
    discovered: BTreeMap<(String, String, String), Option<ApiResource>>,
}

impl<'a> KindResolver<'a> {
    fn new(client: &'a Client, kinds: &'a [ApiResource]) -> Self {
        KindResolver {
            client,
            kinds,
            discovered: BTreeMap::new(),
        }
    }

    /// The API of `object`'s kind; `None` if the server does not serve the kind at all.
    async fn resolve(&mut self, object: &ObjectRef) -> Result<Option<ApiResource>, ApplyError> {
        if let Some(ar) = self
            .kinds
            .iter()
            .find(|ar| ar.group == object.group && ar.kind == object.kind)
        {
            return Ok(Some(ar.clone()));
        }
        let key = (
            object.group.clone(),
            object.version.clone(),
            object.kind.clone(),
        );
        if let Some(known) = self.discovered.get(&key) {
            return Ok(known.clone());
        }
        let found = self
            .discover(object)
            .await
            .map_err(|source| ApplyError::Discover {
                object: Box::new(object.clone()),
                source,
            })?;
        self.discovered.insert(key, found.clone());
        Ok(found)
    }

    async fn discover(&self, object: &ObjectRef) -> Result<Option<ApiResource>, kube::Error> {
        let gvk = GroupVersionKind::gvk(&object.group, &object.version, &object.kind);
        match kube::discovery::pinned_kind(self.client, &gvk).await {
            Ok((ar, _)) => return Ok(Some(ar)),
            Err(e) if !is_not_served(&e) => return Err(e),
            Err(_) => {}
        }
        match kube::discovery::group(self.client, &object.group).await {
            Ok(group) => Ok(group
                .resources_by_stability()
                .into_iter()
                .map(|(ar, _)| ar)
                .find(|ar| ar.kind == object.kind)),
            Err(e) if is_not_served(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Whether a discovery error says the group, version or kind is not served (as opposed to the
/// server being unreachable).
fn is_not_served(e: &kube::Error) -> bool {
    is_not_found(e) || matches!(e, kube::Error::Discovery(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ownership() -> Ownership {
        Ownership {
            manager: "kubecrew-redis".into(),
            instance: "cache".into(),
            owner_uid: "0b6e2c4e-1111-4d2a-9d7e-2f0a8c1e0001".into(),
        }
    }

    fn config_map(ns: Option<&str>, name: &str) -> ObjectRef {
        ObjectRef {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: ns.map(str::to_owned),
            name: name.into(),
        }
    }

    fn deployment(version: &str, name: &str) -> ObjectRef {
        ObjectRef {
            group: "apps".into(),
            version: version.into(),
            kind: "Deployment".into(),
            namespace: Some("ns".into()),
            name: name.into(),
        }
    }

    fn meta_with(labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some("x".into()),
            labels: Some(labels),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn labels_name_manager_instance_and_owner() {
        let labels = ownership().labels();
        assert_eq!(labels.len(), 4);
        assert_eq!(labels[MANAGED_BY_LABEL], "kubecrew-redis");
        assert_eq!(labels[PART_OF_LABEL], "kubecrew");
        assert_eq!(labels[INSTANCE_LABEL], "cache");
        assert_eq!(
            labels[OWNER_UID_LABEL],
            "0b6e2c4e-1111-4d2a-9d7e-2f0a8c1e0001"
        );
        assert_eq!(
            ownership().selector(),
            "kubecrew.io/owner-uid=0b6e2c4e-1111-4d2a-9d7e-2f0a8c1e0001"
        );
    }

    #[test]
    fn merge_keeps_own_labels_but_ownership_wins() {
        let mut labels: BTreeMap<String, String> = [
            ("app", "redis"),
            (MANAGED_BY_LABEL, "helm"),
            (OWNER_UID_LABEL, "forged"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        ownership().merge_labels(&mut labels);
        assert_eq!(labels["app"], "redis");
        assert_eq!(labels[MANAGED_BY_LABEL], "kubecrew-redis");
        assert_eq!(labels[OWNER_UID_LABEL], ownership().owner_uid);
        assert_eq!(labels.len(), 5);
    }

    #[test]
    fn owns_needs_every_ownership_label() {
        let o = ownership();
        assert!(o.owns(&o.labels()));
        for key in o.labels().keys() {
            let mut labels = o.labels();
            labels.insert(key.clone(), "other".into());
            assert!(!o.owns(&labels), "a different {key} is not ours");
            labels.remove(key);
            assert!(!o.owns(&labels), "a missing {key} is not ours");
        }
        assert!(!o.owns(&BTreeMap::new()));
    }

    #[test]
    fn ownership_of_needs_a_stored_owner() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let mut owner = ConfigMap {
            metadata: ObjectMeta {
                name: Some("cache".into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        };
        let err = Ownership::of("op", &owner).unwrap_err();
        assert!(matches!(err, ApplyError::OwnerNotStored { .. }));
        assert_eq!(
            err.to_string(),
            "the owner ConfigMap \"cache\" has no uid: ownership needs the owner as stored"
        );
        owner.metadata.uid = Some("u-1".into());
        let o = Ownership::of("op", &owner).unwrap();
        assert_eq!((o.manager.as_str(), o.instance.as_str()), ("op", "cache"));
        assert_eq!(o.owner_uid, "u-1");
    }

    #[test]
    fn object_ref_display() {
        assert_eq!(config_map(Some("ns"), "a").to_string(), "ConfigMap/ns/a");
        let mut cluster = config_map(None, "a");
        cluster.kind = "ClusterRole".into();
        assert_eq!(cluster.to_string(), "ClusterRole/a");
    }

    #[test]
    fn object_ref_serde_omits_core_group_and_cluster_namespace() {
        let json = serde_json::to_value(config_map(None, "a")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"version": "v1", "kind": "ConfigMap", "name": "a"})
        );
        let back: ObjectRef = serde_json::from_value(json).unwrap();
        assert_eq!(back, config_map(None, "a"));
        let dep = deployment("v1", "web");
        let json = serde_json::to_value(&dep).unwrap();
        assert_eq!(json["group"], "apps");
        assert_eq!(json["namespace"], "ns");
        assert_eq!(serde_json::from_value::<ObjectRef>(json).unwrap(), dep);
    }

    #[test]
    fn object_ref_orders_by_kind_then_place_then_version() {
        let mut refs = [
            deployment("v1beta1", "b"),
            config_map(Some("z"), "a"),
            deployment("v1", "b"),
            config_map(None, "c"),
            config_map(Some("a"), "b"),
            deployment("v1", "a"),
        ];
        refs.sort();
        let shown: Vec<String> = refs.iter().map(|r| format!("{r}@{}", r.version)).collect();
        assert_eq!(
            shown,
            [
                "ConfigMap/c@v1",
                "ConfigMap/a/b@v1",
                "ConfigMap/z/a@v1",
                "Deployment/ns/a@v1",
                "Deployment/ns/b@v1",
                "Deployment/ns/b@v1beta1",
            ]
        );
    }

    #[test]
    fn same_object_ignores_version_only() {
        assert!(deployment("v1", "a").is_same_object(&deployment("v1beta1", "a")));
        assert!(!deployment("v1", "a").is_same_object(&deployment("v1", "b")));
        let mut other_group = deployment("v1", "a");
        other_group.group = "extensions".into();
        assert!(!deployment("v1", "a").is_same_object(&other_group));
        assert!(!config_map(Some("a"), "x").is_same_object(&config_map(Some("b"), "x")));
        assert!(!config_map(Some("a"), "x").is_same_object(&config_map(None, "x")));
    }

    #[test]
    fn inventory_serializes_as_a_sorted_deduplicated_list() {
        let inv: Inventory = [
            config_map(Some("b"), "x"),
            config_map(Some("a"), "x"),
            config_map(Some("b"), "x"),
        ]
        .into_iter()
        .collect();
        assert_eq!(inv.len(), 2);
        let json = serde_json::to_value(&inv).unwrap();
        assert_eq!(json[0]["namespace"], "a");
        assert_eq!(json[1]["namespace"], "b");
        assert_eq!(json.as_array().map(Vec::len), Some(2));
        let back: Inventory = serde_json::from_value(json).unwrap();
        assert_eq!(back, inv);
        let empty: Inventory = serde_json::from_str("[]").unwrap();
        assert!(empty.is_empty());
        assert!(serde_json::from_str::<Inventory>("{}").is_err());
    }

    #[test]
    fn inventory_schema_is_a_list_without_unique_items() {
        let schema = serde_json::to_value(schemars::schema_for!(Inventory)).unwrap();
        assert_eq!(schema["type"], "array");
        assert!(schema.get("uniqueItems").is_none(), "{schema}");
    }

    #[test]
    fn inventory_namespaces_skip_cluster_scoped() {
        let inv: Inventory = [
            config_map(Some("b"), "x"),
            config_map(None, "y"),
            config_map(Some("a"), "x"),
            config_map(Some("a"), "z"),
        ]
        .into_iter()
        .collect();
        assert_eq!(inv.namespaces().into_iter().collect::<Vec<_>>(), ["a", "b"]);
        let other: Inventory = [config_map(Some("c"), "x")].into_iter().collect();
        assert_eq!(
            known_namespaces(&inv, &other)
                .into_iter()
                .collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn stale_is_previous_minus_current_across_versions() {
        let previous: Inventory = [
            config_map(Some("ns"), "kept"),
            config_map(Some("ns"), "dropped"),
            deployment("v1beta1", "upgraded"),
        ]
        .into_iter()
        .collect();
        let current: Inventory = [
            config_map(Some("ns"), "kept"),
            config_map(Some("ns"), "new"),
            deployment("v1", "upgraded"),
        ]
        .into_iter()
        .collect();
        let stale: Vec<_> = stale(&previous, &current).collect();
        assert_eq!(stale, [&config_map(Some("ns"), "dropped")]);
    }

    #[test]
    fn decide_deletes_only_live_unapplied_owned_objects() {
        let o = ownership();
        let current: Inventory = [deployment("v1", "kept")].into_iter().collect();
        let ours = meta_with(o.labels());
        let candidate = config_map(Some("ns"), "old");
        assert_eq!(
            decide(&o, &current, &candidate, Some(&ours)),
            Verdict::Delete
        );
        assert_eq!(
            decide(&o, &current, &candidate, None),
            Verdict::Keep(KeepReason::Gone)
        );
        assert_eq!(
            decide(&o, &current, &deployment("v1beta1", "kept"), Some(&ours)),
            Verdict::Keep(KeepReason::AppliedThisRound)
        );
    }

    #[test]
    fn decide_keeps_objects_not_labelled_for_this_owner() {
        let o = ownership();
        let current = Inventory::new();
        let candidate = config_map(Some("ns"), "old");
        let unlabelled = ObjectMeta::default();
        assert_eq!(
            decide(&o, &current, &candidate, Some(&unlabelled)),
            Verdict::Keep(KeepReason::NotOwned)
        );
        let other_owner = Ownership {
            owner_uid: "another-uid".into(),
            ..ownership()
        };
        assert_eq!(
            decide(
                &o,
                &current,
                &candidate,
                Some(&meta_with(other_owner.labels()))
            ),
            Verdict::Keep(KeepReason::NotOwned)
        );
        let other_manager = Ownership {
            manager: "someone-else".into(),
            ..ownership()
        };
        assert_eq!(
            decide(
                &o,
                &current,
                &candidate,
                Some(&meta_with(other_manager.labels()))
            ),
            Verdict::Keep(KeepReason::NotOwned)
        );
    }

    #[test]
    fn decide_leaves_terminating_objects_alone() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let o = ownership();
        let mut terminating = meta_with(o.labels());
        terminating.deletion_timestamp = Some(Time(Default::default()));
        assert_eq!(
            decide(
                &o,
                &Inventory::new(),
                &config_map(Some("ns"), "old"),
                Some(&terminating)
            ),
            Verdict::Keep(KeepReason::AlreadyDeleting)
        );
    }

    #[test]
    fn prepare_adds_labels_and_type_and_drops_managed_fields() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let ar = ApiResource {
            group: "monitoring.coreos.com".into(),
            version: "v1".into(),
            api_version: "monitoring.coreos.com/v1".into(),
            kind: "ServiceMonitor".into(),
            plural: "servicemonitors".into(),
        };
        let mut obj = DynamicObject {
            types: None,
            metadata: ObjectMeta {
                name: Some("m".into()),
                managed_fields: Some(vec![ManagedFieldsEntry::default()]),
                ..ObjectMeta::default()
            },
            data: serde_json::json!({"spec": {}}),
        };
        prepare_for_apply(&mut obj, &ar, &ownership());
        assert_eq!(obj.metadata.labels, Some(ownership().labels()));
        assert_eq!(obj.metadata.managed_fields, None);
        let types = obj.types.unwrap();
        assert_eq!(
            (types.api_version.as_str(), types.kind.as_str()),
            ("monitoring.coreos.com/v1", "ServiceMonitor")
        );
        assert_eq!(kind_name(&ar), "ServiceMonitor.monitoring.coreos.com");
    }

    #[test]
    fn listed_ref_takes_the_place_of_the_object() {
        let ar = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
        let mut obj = DynamicObject::new("a", &ar).within("ns");
        assert_eq!(listed_ref(&ar, &obj), Some(config_map(Some("ns"), "a")));
        obj.metadata.name = None;
        assert_eq!(listed_ref(&ar, &obj), None);
    }
}

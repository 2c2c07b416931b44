//! The StatefulSet controller of kube-controller-manager.
//!
//! Like upstream's `statefulset` controller it:
//! - claims the namespace's pods named `<set>-<ordinal>` that match `spec.selector`
//!   (adopting orphans, releasing owned pods that stopped matching, leaving pods controlled
//!   by others alone);
//! - keeps one pod per ordinal of `[start, start + replicas)` (`spec.ordinals.start`, default
//!   0), named `<set>-<ordinal>`, made from the template with the labels
//!   `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index` and
//!   `controller-revision-hash`, `hostname` = its name and `subdomain` = `spec.serviceName`;
//!   before the pod, a PersistentVolumeClaim `<claim>-<set>-<ordinal>` per entry of
//!   `volumeClaimTemplates` (mounted as the pod's volume of the claim's name) is created if
//!   missing. Claims stay on scale-down: the default `Retain` retention policy;
//! - `OrderedReady` (default): creates an ordinal only once every lower one is Running and
//!   Ready (and available after `minReadySeconds`), removes surplus pods one at a time from
//!   the highest ordinal, each only once the previous one is gone; `Parallel`: all at once.
//!   A terminal (failed or succeeded) pod is deleted and recreated;
//! - records each template in a ControllerRevision `<set>-<hash>` ([`history`]);
//!   `RollingUpdate` (default) deletes the highest-ordinal pod at or above `partition` that
//!   is not at the update revision, one at a time, and waits for its replacement to be Ready
//!   before the next; `OnDelete` recreates (at the update revision) only pods someone else
//!   deleted. Pods below the partition are recreated at the current revision;
//! - writes `status` (observedGeneration, replicas, readyReplicas, currentReplicas,
//!   updatedReplicas, availableReplicas, currentRevision, updateRevision, collisionCount)
//!   through `/status` when it changes, so `kubectl rollout status` follows the rollout, and
//!   deletes revisions beyond `revisionHistoryLimit` that no pod uses.
//!
//! Not modelled: the `Delete` PVC retention policies, `rollingUpdate.maxUnavailable` (alpha
//! upstream), adopting orphaned ControllerRevisions, events. As with the other controllers
//! here, each sync reads the set, its pods and revisions fresh (see [`workqueue`]).
//!
//! The API server of devcluster does not default `apps/v1` fields, so unset fields are read
//! with upstream's defaults here (one replica, `OrderedReady`, `RollingUpdate` with partition
//! 0, history limit 10).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, StatefulSet, StatefulSetSpec, StatefulSetStatus,
};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::history;
use super::podutil::{self, controller_ref, omit_zero, to_i32};
use super::workqueue::{self, Key};
use crate::selector::LabelSelector;

/// Pod label naming the pod, so a Service can select one member.
const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Pod label holding the ordinal.
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Pod label naming the revision a pod was made from (for StatefulSets, the revision name).
pub(super) const REVISION_LABEL: &str = "controller-revision-hash";
/// ControllerRevision label holding the hash (upstream's `ControllerRevisionHashLabel`).
const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// Runs the StatefulSet controller until `shutdown` is cancelled. API errors are logged and
/// retried.
pub async fn run(client: kube::Client, shutdown: CancellationToken) {
    // Any pod of the namespace may be adopted, released, replaced or counted.
    let pods = workqueue::secondary(Api::<Pod>::all(client.clone()), workqueue::namespace_of);
    let sync = |(namespace, name): Key| {
        let client = client.clone();
        async move {
            let sync = Sync {
                client: &client,
                namespace: &namespace,
                name: &name,
            };
            sync.run().await
        }
    };
    workqueue::run(
        "statefulset",
        Api::<StatefulSet>::all(client.clone()),
        vec![pods],
        sync,
        shutdown,
    )
    .await;
}

/// Why a sync failed; logged, and the sync retried.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    /// The API server refused or failed a request.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// The set's ControllerRevisions could not be brought up to date.
    #[error("revision history: {0}")]
    History(#[from] history::HistoryError),
    /// The current revision holds no pod template to recreate a pod from.
    #[error("ControllerRevision {0} holds no pod template")]
    Revision(String),
    /// A claim a pod needs is being deleted; the pod waits until it is gone.
    #[error("PersistentVolumeClaim {0} is being deleted")]
    ClaimDeleting(String),
    /// Some pods could not be adopted or released; the rest of the sync went ahead.
    #[error("{0} pods could not be adopted or released")]
    Claims(usize),
}

/// How far a member pod got: ordered so that "at least Ready" is `>= Health::Ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Health {
    /// Failed or Succeeded: to be replaced.
    Terminal,
    /// Not (yet) Running and Ready.
    Starting,
    /// Running and Ready, not yet for `minReadySeconds`.
    Ready,
    /// Running and Ready for at least `minReadySeconds`.
    Available,
}

/// What the controller needs to know about one pod it controls.
#[derive(Debug, Clone, PartialEq)]
struct Member {
    ordinal: i32,
    name: String,
    /// Its `controller-revision-hash` label.
    revision: String,
    health: Health,
    terminating: bool,
    /// Phase `Pending`: its claims are (re)created if missing.
    pending: bool,
    /// It carries the pod-name and pod-index labels of its ordinal.
    identity_ok: bool,
}

impl Member {
    fn of(pod: &Pod, set: &str, min_ready: Duration, now: jiff::Timestamp) -> Option<Member> {
        let name = pod.metadata.name.clone()?;
        let ordinal = ordinal_of(set, &name)?;
        let labels = pod.labels();
        let identity_ok = labels.get(POD_NAME_LABEL) == Some(&name)
            && labels.get(POD_INDEX_LABEL) == Some(&ordinal.to_string());
        Some(Member {
            ordinal,
            revision: labels.get(REVISION_LABEL).cloned().unwrap_or_default(),
            health: health(pod, min_ready, now),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            pending: podutil::phase(pod) == Some("Pending"),
            identity_ok,
            name,
        })
    }

    /// Upstream's `isHealthy`: Running and Ready, not being deleted.
    fn healthy(&self) -> bool {
        self.health >= Health::Ready && !self.terminating
    }
}

fn health(pod: &Pod, min_ready: Duration, now: jiff::Timestamp) -> Health {
    if podutil::is_terminal(pod) {
        Health::Terminal
    } else if podutil::phase(pod) != Some("Running") || !podutil::is_ready(pod) {
        Health::Starting
    } else if podutil::is_available(pod, min_ready, now) {
        Health::Available
    } else {
        Health::Ready
    }
}

/// The ordinal of a pod of `set` from its name `<set>-<ordinal>`; `None` for any other name
/// (upstream's `isMemberOf`; names with leading zeros are not members here, as the
/// controller would never have made them).
fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let digits = pod.strip_prefix(set)?.strip_prefix('-')?;
    let ordinal: i32 = digits.parse().ok()?;
    (ordinal >= 0 && digits == ordinal.to_string()).then_some(ordinal)
}

fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

/// The parts of the spec that drive decisions, with upstream's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Strategy {
    /// The first ordinal (`spec.ordinals.start`).
    start: i32,
    replicas: i32,
    /// `OrderedReady`: one pod at a time, in ordinal order.
    monotonic: bool,
    /// `RollingUpdate`'s partition; `None` for `OnDelete`.
    partition: Option<i32>,
}

impl Strategy {
    fn of(spec: &StatefulSetSpec) -> Strategy {
        let strategy = spec.update_strategy.as_ref();
        let partition = match strategy.and_then(|s| s.type_.as_deref()) {
            Some("OnDelete") => None,
            _ => Some(
                strategy
                    .and_then(|s| s.rolling_update.as_ref())
                    .and_then(|r| r.partition)
                    .unwrap_or(0)
                    .max(0),
            ),
        };
        Strategy {
            start: spec
                .ordinals
                .as_ref()
                .and_then(|o| o.start)
                .unwrap_or(0)
                .max(0),
            replicas: spec.replicas.unwrap_or(1).max(0),
            monotonic: spec.pod_management_policy.as_deref() != Some("Parallel"),
            partition,
        }
    }

    /// One past the last ordinal.
    fn end(&self) -> i32 {
        self.start.saturating_add(self.replicas)
    }

    fn in_range(&self, ordinal: i32) -> bool {
        ordinal >= self.start && ordinal < self.end()
    }

    /// Whether a missing pod is recreated at the current revision rather than the update
    /// revision: below the partition of a rolling update (upstream's
    /// `newVersionedStatefulSetPod`).
    fn recreates_current(&self, ordinal: i32) -> bool {
        self.partition
            .is_some_and(|p| ordinal < self.start.saturating_add(p))
    }
}

/// Why a pod is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// It failed or succeeded; it is recreated.
    Terminal,
    /// Its ordinal is outside the wanted range.
    ScaleDown,
    /// It is not at the update revision; it is recreated at it.
    Update,
}

/// One step of a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// Create the missing pod of this ordinal, from the current revision if `current`, else
    /// from the update revision.
    Create { ordinal: i32, current: bool },
    /// Delete this member.
    Delete { name: String, reason: Reason },
    /// Create the missing claims of this ordinal's pending pod.
    EnsureClaims { ordinal: i32 },
    /// Restore the identity labels of this member.
    FixIdentity { name: String, ordinal: i32 },
}

/// Upstream's `updateStatefulSet` as a decision: what to do now, given the members by
/// ordinal and the update revision's name. In `OrderedReady` mode it stops at the first
/// step that must be seen through before the next.
fn plan(strategy: &Strategy, members: &BTreeMap<i32, Member>, update: &str) -> Vec<Action> {
    let mut actions = Vec::new();
    let monotonic = strategy.monotonic;
    let (start, end) = (strategy.start, strategy.end());
    // A missing pod counts as unhealthy: it is the one scale-down may not skip.
    let first_unhealthy = (start..end)
        .find(|o| !members.get(o).is_some_and(Member::healthy))
        .or_else(|| {
            members
                .values()
                .find(|m| !strategy.in_range(m.ordinal) && !m.healthy())
                .map(|m| m.ordinal)
        });

    for ordinal in start..end {
        match members.get(&ordinal) {
            None => {
                let current = strategy.recreates_current(ordinal);
                actions.push(Action::Create { ordinal, current });
                if monotonic {
                    return actions;
                }
            }
            Some(m) if m.health == Health::Terminal => {
                if !m.terminating {
                    actions.push(delete(m, Reason::Terminal));
                }
                if monotonic {
                    return actions;
                }
            }
            Some(m) => {
                if m.pending {
                    actions.push(Action::EnsureClaims { ordinal });
                }
                if monotonic && (m.terminating || m.health < Health::Available) {
                    return actions;
                }
                if !m.identity_ok {
                    actions.push(Action::FixIdentity {
                        name: m.name.clone(),
                        ordinal,
                    });
                }
            }
        }
    }

    // Surplus pods, highest ordinal first.
    for m in members
        .values()
        .rev()
        .filter(|m| !strategy.in_range(m.ordinal))
    {
        if m.terminating {
            if monotonic {
                return actions;
            }
            continue;
        }
        if monotonic && m.health < Health::Available && first_unhealthy != Some(m.ordinal) {
            return actions;
        }
        actions.push(delete(m, Reason::ScaleDown));
        if monotonic {
            return actions;
        }
    }

    let Some(partition) = strategy.partition else {
        return actions;
    };
    // Rolling update: the highest pod not at the update revision goes first, and only once
    // every pod above it is healthy.
    for ordinal in (start.saturating_add(partition)..end).rev() {
        let Some(m) = members.get(&ordinal) else {
            // Created by this very sync: not healthy yet.
            return actions;
        };
        if m.health == Health::Terminal {
            return actions;
        }
        if m.revision != update && !m.terminating {
            actions.push(delete(m, Reason::Update));
            return actions;
        }
        if !m.healthy() {
            return actions;
        }
    }
    actions
}

fn delete(m: &Member, reason: Reason) -> Action {
    Action::Delete {
        name: m.name.clone(),
        reason,
    }
}

/// The revisions the status reports.
struct Revisions<'a> {
    current: &'a str,
    update: &'a str,
    collision_count: i32,
}

/// Upstream's status computation (`updateStatus` and `completeRollingUpdate`) for the members
/// as read and the actions taken.
fn compute_status(
    set: &StatefulSet,
    strategy: &Strategy,
    members: &BTreeMap<i32, Member>,
    revisions: &Revisions<'_>,
    actions: &[Action],
) -> StatefulSetStatus {
    let count = |f: &dyn Fn(&Member) -> bool| members.values().filter(|m| f(m)).count();
    let replicas = members.len();
    let ready = count(&|m| m.health >= Health::Ready);
    let available = count(&|m| m.health == Health::Available);
    let at = |revision: &str| count(&|m| !m.terminating && m.revision == revision);
    let mut current = at(revisions.current);
    let updated = at(revisions.update);
    // A pod deleted for the update no longer counts as current, as upstream reports it.
    if actions.iter().any(|a| {
        matches!(
            a,
            Action::Delete {
                reason: Reason::Update,
                ..
            }
        )
    }) {
        current = current.saturating_sub(1);
    }
    let mut current_revision = revisions.current;
    if strategy.partition.is_some() && updated == replicas && ready == replicas {
        current = updated;
        current_revision = revisions.update;
    }
    StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas: to_i32(replicas),
        ready_replicas: omit_zero(ready),
        current_replicas: omit_zero(current),
        updated_replicas: omit_zero(updated),
        available_replicas: Some(to_i32(available)),
        current_revision: Some(current_revision.to_owned()),
        update_revision: Some(revisions.update.to_owned()),
        collision_count: Some(revisions.collision_count),
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
    }
}

/// The claims of the pod of `ordinal`, each with the name of the template it comes from:
/// one per `volumeClaimTemplates` entry, named `<claim>-<set>-<ordinal>`, labelled with the
/// template's labels and the selector's `matchLabels` (upstream's
/// `getPersistentVolumeClaims`).
fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<(String, PersistentVolumeClaim)> {
    let Some(spec) = set.spec.as_ref() else {
        return Vec::new();
    };
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|template| {
            let template_name = template.metadata.name.clone().unwrap_or_default();
            let mut labels = template.metadata.labels.clone().unwrap_or_default();
            labels.extend(selector_labels.clone());
            let mut metadata = template.metadata.clone();
            metadata.name = Some(format!("{template_name}-{set_name}-{ordinal}"));
            metadata.namespace = set.metadata.namespace.clone();
            metadata.labels = Some(labels);
            metadata.uid = None;
            metadata.resource_version = None;
            let claim = PersistentVolumeClaim {
                metadata,
                spec: template.spec.clone(),
                status: None,
            };
            (template_name, claim)
        })
        .collect()
}

/// A new pod of `set` for `ordinal` from `template`, made from the revision named `revision`
/// (upstream's `newStatefulSetPod`: identity, then storage).
fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let name = pod_name(&set_name, ordinal);
    let mut pod = podutil::pod_from_template(
        template,
        set.metadata.namespace.clone(),
        controller_ref(set),
    );
    pod.metadata.name = Some(name.clone());
    let labels = pod.metadata.labels.get_or_insert_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.to_owned());
    let service = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    let spec = pod.spec.get_or_insert_default();
    spec.hostname = Some(name);
    spec.subdomain = service;
    let claims = claims_for(set, ordinal);
    if !claims.is_empty() {
        spec.volumes = Some(with_claims(
            &claims,
            spec.volumes.take().unwrap_or_default(),
        ));
    }
    pod
}

/// The pod's volumes with one per claim, named as its template, replacing any volume of that
/// name (upstream's `updateStorage`).
fn with_claims(claims: &[(String, PersistentVolumeClaim)], volumes: Vec<Volume>) -> Vec<Volume> {
    let names: HashSet<&String> = claims.iter().map(|(name, _)| name).collect();
    let kept: Vec<Volume> = volumes
        .into_iter()
        .filter(|v| !names.contains(&v.name))
        .collect();
    claims
        .iter()
        .map(|(name, claim)| Volume {
            name: name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.metadata.name.clone().unwrap_or_default(),
                read_only: None,
            }),
            ..Volume::default()
        })
        .chain(kept)
        .collect()
}

/// A set's ControllerRevisions as one sync sees them.
struct History {
    /// All of them, sorted oldest first.
    all: Vec<ControllerRevision>,
    /// The revision of `status.currentRevision` (the update revision when there is none).
    current: ControllerRevision,
    /// The revision of the set's template.
    update: ControllerRevision,
    collision_count: i32,
}

impl History {
    fn current_name(&self) -> &str {
        self.current.metadata.name.as_deref().unwrap_or_default()
    }

    fn update_name(&self) -> &str {
        self.update.metadata.name.as_deref().unwrap_or_default()
    }
}

/// One sync of one StatefulSet.
struct Sync<'a> {
    client: &'a kube::Client,
    namespace: &'a str,
    name: &'a str,
}

impl Sync<'_> {
    fn sets(&self) -> Api<StatefulSet> {
        Api::namespaced(self.client.clone(), self.namespace)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), self.namespace)
    }

    fn claims(&self) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), self.namespace)
    }

    fn revisions(&self) -> Api<ControllerRevision> {
        Api::namespaced(self.client.clone(), self.namespace)
    }

    /// Syncs the latest version; returns when to sync again if pods become available later.
    async fn run(&self) -> Result<Option<Duration>, SyncError> {
        let Some(set) = self.sets().get_opt(self.name).await? else {
            return Ok(None);
        };
        // A set being deleted is left to the garbage collector.
        if set.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let (Some(uid), Some(spec)) = (set.metadata.uid.clone(), set.spec.clone()) else {
            return Ok(None);
        };
        let selector = match podutil::selector(&spec.selector) {
            Ok(s) => s,
            Err(e) => {
                tracing::info!(statefulset = %self.name, error = %e.0,
                    "statefulset controller: invalid selector, ignoring");
                return Ok(None);
            }
        };
        let (owned, failed_claims) = self.claim(&set, &selector).await?;
        let history = self.history(&set, &spec, &uid).await?;

        let now = jiff::Timestamp::now();
        let min_ready = podutil::min_ready(spec.min_ready_seconds);
        let members: BTreeMap<i32, Member> = owned
            .iter()
            .filter_map(|p| Member::of(p, self.name, min_ready, now))
            .map(|m| (m.ordinal, m))
            .collect();
        let strategy = Strategy::of(&spec);
        let actions = plan(&strategy, &members, history.update_name());
        for action in &actions {
            self.act(&set, action, &owned, &history).await?;
        }
        let revisions = Revisions {
            current: history.current_name(),
            update: history.update_name(),
            collision_count: history.collision_count,
        };
        let status = compute_status(&set, &strategy, &members, &revisions, &actions);
        self.update_status(set, status).await?;
        let limit = history::history_limit(spec.revision_history_limit);
        self.prune(&history, members.values(), limit).await?;

        if failed_claims > 0 {
            return Err(SyncError::Claims(failed_claims));
        }
        Ok(podutil::next_available(&owned, min_ready, now))
    }

    /// Lists the namespace's pods, adopts and releases members; returns the pods the set
    /// controls and how many claims failed.
    async fn claim(
        &self,
        set: &StatefulSet,
        selector: &LabelSelector,
    ) -> Result<(Vec<Pod>, usize), SyncError> {
        let pods = self.pods().list(&ListParams::default()).await?.items;
        let is_member = |pod: &Pod| {
            selector.matches_map(pod.labels()) && ordinal_of(self.name, &pod.name_any()).is_some()
        };
        let owner = controller_ref(set);
        Ok(podutil::claim_objects(&self.pods(), pods, &owner, is_member).await)
    }

    /// The set's revisions, with the update revision made for its template if needed and the
    /// current one as its status names it (upstream's `getStatefulSetRevisions`).
    async fn history(
        &self,
        set: &StatefulSet,
        spec: &StatefulSetSpec,
        uid: &str,
    ) -> Result<History, SyncError> {
        let mut all = history::owned(&self.revisions(), uid).await?;
        let status = set.status.clone().unwrap_or_default();
        let mut collision_count = status.collision_count.unwrap_or(0);
        let proto = history::Proto::new(set, &spec.template, HASH_LABEL);
        let update = history::ensure(&self.revisions(), &all, &proto, &mut collision_count).await?;
        all.retain(|r| r.metadata.name != update.metadata.name);
        all.push(update.clone());
        history::sort(&mut all);
        let current = all
            .iter()
            .find(|r| r.metadata.name.is_some() && r.metadata.name == status.current_revision)
            .unwrap_or(&update)
            .clone();
        Ok(History {
            all,
            current,
            update,
            collision_count,
        })
    }

    /// Deletes the revisions beyond `limit` that neither the status nor a pod uses.
    async fn prune(
        &self,
        history: &History,
        members: impl Iterator<Item = &Member>,
        limit: usize,
    ) -> Result<(), SyncError> {
        let live: HashSet<String> = [history.current_name(), history.update_name()]
            .into_iter()
            .chain(members.map(|m| m.revision.as_str()))
            .map(str::to_owned)
            .collect();
        let old = history::to_prune(&history.all, &live, limit);
        history::delete(&self.revisions(), &old).await?;
        Ok(())
    }

    async fn act(
        &self,
        set: &StatefulSet,
        action: &Action,
        owned: &[Pod],
        history: &History,
    ) -> Result<(), SyncError> {
        match action {
            Action::Create { ordinal, current } => {
                let current_name = history.current_name();
                let (template, revision) = if *current && current_name != history.update_name() {
                    let template = history::template_of(&history.current)
                        .ok_or_else(|| SyncError::Revision(current_name.to_owned()))?;
                    (template, current_name)
                } else {
                    let spec = set.spec.clone().unwrap_or_default();
                    (spec.template, history.update_name())
                };
                self.ensure_claims(set, *ordinal).await?;
                let pod = new_pod(set, &template, *ordinal, revision);
                self.pods().create(&PostParams::default(), &pod).await?;
                tracing::debug!(statefulset = %self.name, pod = %pod.name_any(), %revision,
                    "statefulset controller: created pod");
            }
            Action::Delete { name, reason } => {
                if let Some(pod) = owned.iter().find(|p| p.name_any() == *name) {
                    podutil::delete_pod(&self.pods(), pod).await?;
                    tracing::debug!(statefulset = %self.name, pod = %name, ?reason,
                        "statefulset controller: deleted pod");
                }
            }
            Action::EnsureClaims { ordinal } => self.ensure_claims(set, *ordinal).await?,
            Action::FixIdentity { name, ordinal } => {
                let patch = json!({"metadata": {"labels": {
                    POD_NAME_LABEL: name, POD_INDEX_LABEL: ordinal.to_string()}}});
                self.pods()
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
        }
        Ok(())
    }

    /// Creates the claims of the pod of `ordinal` that do not exist yet.
    async fn ensure_claims(&self, set: &StatefulSet, ordinal: i32) -> Result<(), SyncError> {
        for (_, claim) in claims_for(set, ordinal) {
            let name = claim.metadata.name.clone().unwrap_or_default();
            match self.claims().get_opt(&name).await? {
                Some(existing) if existing.metadata.deletion_timestamp.is_some() => {
                    return Err(SyncError::ClaimDeleting(name));
                }
                Some(_) => {}
                None => match self.claims().create(&PostParams::default(), &claim).await {
                    Ok(_) => tracing::debug!(statefulset = %self.name, claim = %name,
                        "statefulset controller: created claim"),
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(e.into()),
                },
            }
        }
        Ok(())
    }

    /// Writes `status` if it differs from the current one.
    async fn update_status(
        &self,
        mut set: StatefulSet,
        status: StatefulSetStatus,
    ) -> Result<(), SyncError> {
        if set.status.as_ref() == Some(&status) {
            return Ok(());
        }
        set.status = Some(status);
        self.sets()
            .replace_status(self.name, &PostParams::default(), &set)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::Value;

    const OLD: &str = "web-old";
    const NEW: &str = "web-new";

    fn member(ordinal: i32, revision: &str, health: Health) -> Member {
        Member {
            ordinal,
            name: pod_name("web", ordinal),
            revision: revision.into(),
            health,
            terminating: false,
            pending: false,
            identity_ok: true,
        }
    }

    fn members(list: Vec<Member>) -> BTreeMap<i32, Member> {
        list.into_iter().map(|m| (m.ordinal, m)).collect()
    }

    fn ordered(replicas: i32) -> Strategy {
        Strategy {
            start: 0,
            replicas,
            monotonic: true,
            partition: Some(0),
        }
    }

    fn create(ordinal: i32) -> Action {
        Action::Create {
            ordinal,
            current: false,
        }
    }

    fn del(ordinal: i32, reason: Reason) -> Action {
        Action::Delete {
            name: pod_name("web", ordinal),
            reason,
        }
    }

    fn set(spec: Value) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "set-uid", "generation": 3},
            "spec": spec,
        }))
        .unwrap()
    }

    fn spec_of(spec: Value) -> StatefulSetSpec {
        set(spec).spec.unwrap()
    }

    #[test]
    fn only_canonical_ordinal_names_are_members() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        for other in [
            "web-01",
            "web-x-0",
            "webx-0",
            "web-",
            "web--1",
            "web-99999999999",
            "web",
        ] {
            assert_eq!(ordinal_of("web", other), None, "{other}");
        }
        assert_eq!(ordinal_of("a-b", "a-b-3"), Some(3));
    }

    #[test]
    fn strategy_defaults_follow_upstream() {
        let base = json!({"selector": {}, "template": {}});
        assert_eq!(Strategy::of(&spec_of(base)), ordered(1));
        let custom = spec_of(json!({"selector": {}, "template": {}, "replicas": 4,
            "ordinals": {"start": 5}, "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}));
        let s = Strategy::of(&custom);
        assert_eq!(
            (s.start, s.end(), s.monotonic, s.partition),
            (5, 9, false, Some(2))
        );
        assert!(s.recreates_current(6) && !s.recreates_current(7));
        let on_delete = spec_of(json!({"selector": {}, "template": {},
            "updateStrategy": {"type": "OnDelete"}}));
        assert_eq!(Strategy::of(&on_delete).partition, None);
        assert!(!Strategy::of(&on_delete).recreates_current(0));
    }

    #[test]
    fn ordered_ready_creates_the_next_ordinal_once_the_previous_is_available() {
        let s = ordered(3);
        assert_eq!(plan(&s, &members(vec![]), NEW), [create(0)]);
        let starting = members(vec![member(0, NEW, Health::Starting)]);
        assert_eq!(plan(&s, &starting, NEW), []);
        let not_yet = members(vec![member(0, NEW, Health::Ready)]);
        assert_eq!(plan(&s, &not_yet, NEW), [], "waits for minReadySeconds");
        let one = members(vec![member(0, NEW, Health::Available)]);
        assert_eq!(plan(&s, &one, NEW), [create(1)]);
        // A gap is filled first, before anything above it is touched.
        let gap = members(vec![
            member(0, NEW, Health::Available),
            member(2, NEW, Health::Available),
        ]);
        assert_eq!(plan(&s, &gap, NEW), [create(1)]);
    }

    #[test]
    fn parallel_creates_and_deletes_everything_at_once() {
        let s = Strategy {
            monotonic: false,
            ..ordered(3)
        };
        assert_eq!(
            plan(&s, &members(vec![]), NEW),
            [create(0), create(1), create(2)]
        );
        let surplus = members((0..5).map(|o| member(o, NEW, Health::Starting)).collect());
        assert_eq!(
            plan(&s, &surplus, NEW),
            [del(4, Reason::ScaleDown), del(3, Reason::ScaleDown)]
        );
    }

    #[test]
    fn scale_down_goes_from_the_highest_ordinal_one_at_a_time() {
        let s = ordered(1);
        let all = members((0..3).map(|o| member(o, NEW, Health::Available)).collect());
        assert_eq!(plan(&s, &all, NEW), [del(2, Reason::ScaleDown)]);
        let mut leaving = all.clone();
        if let Some(m) = leaving.get_mut(&2) {
            m.terminating = true;
        }
        assert_eq!(plan(&s, &leaving, NEW), [], "waits for x-2 to be gone");
        // An unhealthy pod blocks the deletion of those below it, unless it is the first
        // unhealthy one.
        let mut stuck = all.clone();
        if let Some(m) = stuck.get_mut(&1) {
            m.health = Health::Starting;
        }
        assert_eq!(plan(&s, &stuck, NEW), [del(2, Reason::ScaleDown)]);
        stuck.remove(&2);
        assert_eq!(plan(&s, &stuck, NEW), [del(1, Reason::ScaleDown)]);
    }

    #[test]
    fn rolling_updates_replace_the_highest_old_pod_and_wait_for_it() {
        let s = ordered(3);
        let old = members((0..3).map(|o| member(o, OLD, Health::Available)).collect());
        assert_eq!(plan(&s, &old, NEW), [del(2, Reason::Update)]);
        let mut replaced = old.clone();
        replaced.remove(&2);
        assert_eq!(plan(&s, &replaced, NEW), [create(2)]);
        replaced.insert(2, member(2, NEW, Health::Starting));
        assert_eq!(plan(&s, &replaced, NEW), []);
        replaced.insert(2, member(2, NEW, Health::Available));
        assert_eq!(plan(&s, &replaced, NEW), [del(1, Reason::Update)]);

        let partitioned = Strategy {
            partition: Some(2),
            ..s
        };
        assert_eq!(plan(&partitioned, &old, NEW), [del(2, Reason::Update)]);
        assert_eq!(
            plan(&partitioned, &replaced, NEW),
            [],
            "x-1 is below the partition"
        );
        let mut below = replaced.clone();
        below.remove(&0);
        assert_eq!(
            plan(&partitioned, &below, NEW),
            [Action::Create {
                ordinal: 0,
                current: true
            }]
        );
        let on_delete = Strategy {
            partition: None,
            ..s
        };
        assert_eq!(plan(&on_delete, &old, NEW), []);
    }

    #[test]
    fn terminal_pods_are_deleted_and_identity_is_restored() {
        let s = ordered(2);
        let failed = members(vec![
            member(0, NEW, Health::Available),
            member(1, NEW, Health::Terminal),
        ]);
        assert_eq!(plan(&s, &failed, NEW), [del(1, Reason::Terminal)]);
        let mut pending = member(0, NEW, Health::Starting);
        pending.pending = true;
        assert_eq!(
            plan(&s, &members(vec![pending]), NEW),
            [Action::EnsureClaims { ordinal: 0 }]
        );
        let mut unlabelled = member(0, NEW, Health::Available);
        unlabelled.identity_ok = false;
        assert_eq!(
            plan(
                &s,
                &members(vec![unlabelled, member(1, NEW, Health::Available)]),
                NEW
            ),
            [Action::FixIdentity {
                name: "web-0".into(),
                ordinal: 0
            }]
        );
    }

    #[test]
    fn status_counts_revisions_and_completes_rollouts() {
        let s = ordered(3);
        let set = set(json!({"selector": {}, "template": {}}));
        let revisions = Revisions {
            current: OLD,
            update: NEW,
            collision_count: 0,
        };
        let mixed = members(vec![
            member(0, OLD, Health::Available),
            member(1, OLD, Health::Ready),
            member(2, NEW, Health::Starting),
        ]);
        let status = compute_status(&set, &s, &mixed, &revisions, &[del(1, Reason::Update)]);
        assert_eq!(status.replicas, 3);
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(1));
        assert_eq!(
            status.current_replicas,
            Some(1),
            "the deleted pod is not counted"
        );
        assert_eq!(status.updated_replicas, Some(1));
        assert_eq!(status.current_revision.as_deref(), Some(OLD));
        assert_eq!(status.update_revision.as_deref(), Some(NEW));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.collision_count, Some(0));

        let done = members((0..3).map(|o| member(o, NEW, Health::Available)).collect());
        let status = compute_status(&set, &s, &done, &revisions, &[]);
        assert_eq!(status.current_revision.as_deref(), Some(NEW));
        assert_eq!(status.current_replicas, Some(3));
        let on_delete = Strategy {
            partition: None,
            ..s
        };
        let status = compute_status(&set, &on_delete, &done, &revisions, &[]);
        assert_eq!(status.current_revision.as_deref(), Some(OLD));
        assert_eq!(status.current_replicas, None);
    }

    #[test]
    fn members_are_read_from_pods() {
        let now = jiff::Timestamp::now();
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-1", "labels": {POD_NAME_LABEL: "web-1",
                POD_INDEX_LABEL: "1", REVISION_LABEL: NEW}},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        let m = Member::of(&pod, "web", Duration::ZERO, now).unwrap();
        assert_eq!((m.ordinal, m.revision.as_str()), (1, NEW));
        assert_eq!(m.health, Health::Available);
        assert!(m.identity_ok && !m.pending && !m.terminating);
        let ready_at = |secs| Some(Time(now - jiff::SignedDuration::from_secs(secs)));
        if let Some(c) = pod.status.as_mut().and_then(|s| s.conditions.as_mut()) {
            c[0].last_transition_time = ready_at(1);
        }
        let m = Member::of(&pod, "web", Duration::from_secs(30), now).unwrap();
        assert_eq!(m.health, Health::Ready);
        pod.metadata.labels = None;
        pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        });
        let m = Member::of(&pod, "web", Duration::ZERO, now).unwrap();
        assert_eq!(m.health, Health::Starting);
        assert!(m.pending && !m.identity_ok);
        pod.metadata.name = Some("other-1".into());
        assert_eq!(Member::of(&pod, "web", Duration::ZERO, now), None);
    }

    #[test]
    fn new_pods_have_identity_storage_and_owner() {
        let set = set(json!({
            "selector": {"matchLabels": {"app": "web"}},
            "serviceName": "web-svc",
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app"}],
                         "volumes": [{"name": "data", "emptyDir": {}},
                                     {"name": "cache", "emptyDir": {}}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {"tier": "db"}},
                "spec": {"accessModes": ["ReadWriteOnce"]}}]
        }));
        let template = set.spec.clone().unwrap().template;
        let pod = new_pod(&set, &template, 2, NEW);
        assert_eq!(pod.metadata.name.as_deref(), Some("web-2"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("ns"));
        let labels = pod.labels();
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(
            labels.get(POD_NAME_LABEL).map(String::as_str),
            Some("web-2")
        );
        assert_eq!(labels.get(POD_INDEX_LABEL).map(String::as_str), Some("2"));
        assert_eq!(labels.get(REVISION_LABEL).map(String::as_str), Some(NEW));
        let owner = podutil::controller_of(&pod.metadata).unwrap();
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("StatefulSet", "set-uid")
        );
        assert_eq!(owner.block_owner_deletion, Some(true));
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("web-svc"));
        let volumes = spec.volumes.unwrap();
        let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["data", "cache"]);
        let claim = volumes[0].persistent_volume_claim.as_ref().unwrap();
        assert_eq!(claim.claim_name, "data-web-2");

        let claims = claims_for(&set, 2);
        assert_eq!(claims.len(), 1);
        let (template_name, claim) = &claims[0];
        assert_eq!(template_name, "data");
        assert_eq!(claim.metadata.name.as_deref(), Some("data-web-2"));
        assert_eq!(claim.metadata.namespace.as_deref(), Some("ns"));
        let labels = claim.labels();
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(labels.get("tier").map(String::as_str), Some("db"));
    }
}

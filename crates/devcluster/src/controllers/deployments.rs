//! The Deployment controller of kube-controller-manager.
//!
//! Like upstream's `deployment` controller it:
//! - claims ReplicaSets matching `spec.selector` (adopt orphans, release those that stopped
//!   matching), and finds the "new" one: the ReplicaSet whose pod template equals the
//!   Deployment's, ignoring the `pod-template-hash` label;
//! - creates the new ReplicaSet `<deployment>-<hash>` with the `pod-template-hash` label on its
//!   selector, template and itself, and the revision annotations `kubectl rollout` reads;
//! - rolls out by the strategy: `RollingUpdate` scales the new ReplicaSet up within `maxSurge`
//!   and old ones down within `maxUnavailable` (upstream's `reconcileNewReplicaSet` and
//!   `reconcileOldReplicaSets`); `Recreate` scales old ones to zero, waits for their pods to be
//!   gone, then scales the new one up;
//! - scales proportionally when only `spec.replicas` changed, honours `spec.paused`, prunes
//!   old ReplicaSets beyond `revisionHistoryLimit`;
//! - writes `status` (replicas, updated, ready, available, unavailable, observedGeneration,
//!   collisionCount) and the `Progressing`/`Available` conditions with upstream's reasons and
//!   messages, so `kubectl rollout status` completes or reports the deadline.
//!
//! Availability is counted from the pods themselves rather than from ReplicaSet status (which
//! lags behind the pods), capped at each ReplicaSet's `spec.replicas` so pods a scale-down has
//! already condemned do not count twice.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as Sel, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::history;
use super::podutil;
use super::workqueue::{self, Key};
use crate::selector::LabelSelector;

/// The label that tells a Deployment's ReplicaSets (and their pods) apart.
pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// Revision of a ReplicaSet (and the Deployment's current one), read by `kubectl rollout`.
const REVISION: &str = "deployment.kubernetes.io/revision";
/// The Deployment's replicas when the ReplicaSet was last scaled (proportional scaling).
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `replicas + maxSurge` when the ReplicaSet was last scaled.
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Annotations of the Deployment not copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deployment.kubernetes.io/revision-history",
];
/// Upstream's defaults for fields devcluster does not default on write.
const DEFAULT_REVISION_HISTORY: usize = 10;
const DEFAULT_PROGRESS_DEADLINE: i64 = 600;
const DEFAULT_SURGE: &str = "25%";
const DEFAULT_UNAVAILABLE: &str = "25%";

/// Runs the Deployment controller until `shutdown` is cancelled. API errors are logged and
/// retried.
pub async fn run(client: kube::Client, shutdown: CancellationToken) {
    let sets = workqueue::secondary(Api::<ReplicaSet>::all(client.clone()), |rs| {
        workqueue::owner_target(rs, "Deployment").or_else(|| workqueue::namespace_of(rs))
    });
    // Pods becoming ready or going away change availability, which drives the rollout.
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
        "deployment",
        Api::<Deployment>::all(client.clone()),
        vec![sets, pods],
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
    /// Some ReplicaSets could not be adopted or released; the rest of the sync went ahead.
    #[error("{0} replica sets could not be adopted or released")]
    Claims(usize),
    /// The new ReplicaSet's name is taken by a different template; collisionCount was bumped.
    #[error("hash collision creating replica set {0}")]
    Collision(String),
}

/// A ReplicaSet as the rollout arithmetic sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct View {
    name: String,
    /// `spec.replicas`.
    replicas: i32,
    /// Active pods it controls.
    pods: i32,
    /// Ready pods.
    ready: i32,
    /// Available pods, at most `replicas`.
    available: i32,
    /// Available pods, uncapped (for status).
    available_pods: i32,
    created: Option<jiff::Timestamp>,
}

/// One sync of one Deployment.
struct Sync<'a> {
    client: &'a kube::Client,
    namespace: &'a str,
    name: &'a str,
}

impl Sync<'_> {
    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), self.namespace)
    }

    fn sets(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), self.namespace)
    }

    /// Syncs the latest version; returns when to look again for time-based changes (the
    /// progress deadline, pods becoming available after minReadySeconds).
    async fn run(&self) -> Result<Option<Duration>, SyncError> {
        let Some(d) = self.deployments().get_opt(self.name).await? else {
            return Ok(None);
        };
        // Deletion is the garbage collector's business, as upstream.
        if d.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        if d.metadata.uid.is_none() {
            return Ok(None);
        }
        let spec = d.spec.clone().unwrap_or_default();
        let selector = match selector_of(&spec.selector) {
            Some(s) => s,
            None => {
                tracing::info!(deployment = %self.name,
                    "deployment controller: empty or invalid selector, ignoring");
                return Ok(None);
            }
        };
        let (mut sets, failed) = self.claim(&d, &selector).await?;
        let pods = Api::<Pod>::namespaced(self.client.clone(), self.namespace)
            .list(&ListParams::default())
            .await?
            .items;
        let min_ready = podutil::min_ready(spec.min_ready_seconds);
        let now = jiff::Timestamp::now();

        let template = spec.template.clone();
        let new_index = sets
            .iter()
            .position(|rs| same_template(rs_template(rs).as_ref(), &template));
        let mut new_created = None;
        let rollout = !spec.paused.unwrap_or(false);
        let wanted = spec.replicas.unwrap_or(1).max(0);
        let (surge, unavailable) = limits(&d, wanted);

        if new_index.is_none() && rollout {
            let olds: Vec<View> = sets
                .iter()
                .map(|rs| view(rs, &pods, min_ready, now))
                .collect();
            let initial = match strategy_type(&d) {
                Strategy::Recreate if olds.iter().any(|o| o.replicas > 0 || o.pods > 0) => 0,
                Strategy::Recreate => wanted,
                Strategy::RollingUpdate => new_replicas_rolling(wanted, surge, 0, &olds),
            };
            let revision = next_revision(&sets);
            let rs = self.create_new(&d, revision, initial, surge).await?;
            new_created = Some(rs.name_any());
            sets.push(rs);
        }
        let new_index = sets
            .iter()
            .position(|rs| same_template(rs_template(rs).as_ref(), &template));

        let views: Vec<View> = sets
            .iter()
            .map(|rs| view(rs, &pods, min_ready, now))
            .collect();
        let new_view = new_index.map(|i| views[i].clone());
        let old_views: Vec<View> = views
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new_index)
            .map(|(_, v)| v.clone())
            .collect();

        let plan = if !rollout || is_scaling_event(&sets, wanted) {
            scale_proportionally(wanted, surge, new_view.as_ref(), &old_views)
        } else {
            match strategy_type(&d) {
                Strategy::RollingUpdate => {
                    plan_rolling(wanted, surge, unavailable, new_view.as_ref(), &old_views)
                }
                Strategy::Recreate => plan_recreate(wanted, new_view.as_ref(), &old_views),
            }
        };
        for (name, replicas) in &plan {
            if let Some(rs) = sets.iter_mut().find(|rs| rs.name_any() == *name) {
                *rs = self.scale(rs, *replicas, wanted, surge).await?;
            }
        }
        // Annotations follow the Deployment even when no scaling happened (e.g. replicas
        // changed during a pause).
        for rs in sets.iter_mut() {
            let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            if needs_scale_annotations(rs, wanted, surge) {
                *rs = self.scale(rs, replicas, wanted, surge).await?;
            }
        }
        if let Some(new) = new_index.and_then(|i| sets.get(i)) {
            self.set_revision(&d, new).await?;
        }
        let views: Vec<View> = sets
            .iter()
            .map(|rs| view(rs, &pods, min_ready, now))
            .collect();
        self.cleanup(&d, &sets, new_index).await?;
        let new_view = new_index.and_then(|i| views.get(i));
        let status = compute_status(
            &d,
            new_view,
            &views,
            unavailable,
            new_created.as_deref(),
            now,
        );
        let requeue = requeue_after(&d, &status, now, min_ready, &pods);
        self.update_status(d, status).await?;
        if failed > 0 {
            return Err(SyncError::Claims(failed));
        }
        Ok(requeue)
    }

    /// Lists the namespace's ReplicaSets, adopts and releases; returns those the Deployment
    /// controls, oldest first, and how many claims failed.
    async fn claim(
        &self,
        d: &Deployment,
        selector: &LabelSelector,
    ) -> Result<(Vec<ReplicaSet>, usize), SyncError> {
        let sets = self.sets().list(&ListParams::default()).await?.items;
        let matches = |rs: &ReplicaSet| selector.matches_map(rs.labels());
        let (mut owned, failed) =
            podutil::claim_objects(&self.sets(), sets, &podutil::controller_ref(d), matches).await;
        owned.sort_by_key(|rs| {
            (
                rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
                rs.name_any(),
            )
        });
        Ok((owned, failed))
    }

    /// Creates the ReplicaSet of the current template; on a name collision with a different
    /// template, bumps `status.collisionCount` so the next sync hashes differently.
    async fn create_new(
        &self,
        d: &Deployment,
        revision: i64,
        replicas: i32,
        surge: i32,
    ) -> Result<ReplicaSet, SyncError> {
        let rs = new_replica_set(d, revision, replicas, surge);
        match self.sets().create(&PostParams::default(), &rs).await {
            Ok(created) => {
                tracing::debug!(deployment = %self.name, replicaset = %created.name_any(),
                    "deployment controller: created replica set");
                Ok(created)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let name = rs.name_any();
                let existing = self.sets().get(&name).await?;
                let ours = podutil::controller_of(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == d.metadata.uid.as_ref());
                if ours
                    && same_template(
                        rs_template(&existing).as_ref(),
                        &d.spec
                            .as_ref()
                            .map(|s| s.template.clone())
                            .unwrap_or_default(),
                    )
                {
                    return Ok(existing);
                }
                let mut d = d.clone();
                let status = d.status.get_or_insert_with(DeploymentStatus::default);
                status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                self.deployments()
                    .replace_status(self.name, &PostParams::default(), &d)
                    .await?;
                Err(SyncError::Collision(name))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sets a ReplicaSet's replicas and the annotations recording the Deployment's size.
    async fn scale(
        &self,
        rs: &ReplicaSet,
        replicas: i32,
        wanted: i32,
        surge: i32,
    ) -> Result<ReplicaSet, SyncError> {
        let patch = json!({
            "metadata": {
                "resourceVersion": rs.metadata.resource_version,
                "annotations": {
                    DESIRED_REPLICAS: wanted.to_string(),
                    MAX_REPLICAS: (wanted + surge).to_string(),
                }
            },
            "spec": {"replicas": replicas},
        });
        let scaled = self
            .sets()
            .patch(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        tracing::debug!(deployment = %self.name, replicaset = %rs.name_any(), replicas,
            "deployment controller: scaled replica set");
        Ok(scaled)
    }

    /// Copies the new ReplicaSet's revision to the Deployment, as `kubectl rollout history`
    /// expects.
    async fn set_revision(&self, d: &Deployment, new: &ReplicaSet) -> Result<(), SyncError> {
        let revision = new.annotations().get(REVISION);
        if revision.is_none() || d.annotations().get(REVISION) == revision {
            return Ok(());
        }
        let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
        self.deployments()
            .patch(self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Deletes old, empty ReplicaSets beyond `revisionHistoryLimit`, oldest first.
    async fn cleanup(
        &self,
        d: &Deployment,
        sets: &[ReplicaSet],
        new_index: Option<usize>,
    ) -> Result<(), SyncError> {
        let limit = d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .map_or(DEFAULT_REVISION_HISTORY, |l| {
                usize::try_from(l).unwrap_or_default()
            });
        let empty: Vec<&ReplicaSet> = sets
            .iter()
            .enumerate()
            .filter(|(i, rs)| {
                Some(*i) != new_index
                    && rs.metadata.deletion_timestamp.is_none()
                    && rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) == 0
                    && rs.status.as_ref().map_or(0, |s| s.replicas) == 0
            })
            .map(|(_, rs)| rs)
            .collect();
        let surplus = empty.len().saturating_sub(limit);
        for rs in empty.into_iter().take(surplus) {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: rs.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match self.sets().delete(&rs.name_any(), &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn update_status(
        &self,
        mut d: Deployment,
        status: DeploymentStatus,
    ) -> Result<(), SyncError> {
        if d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        d.status = Some(status);
        self.deployments()
            .replace_status(self.name, &PostParams::default(), &d)
            .await?;
        Ok(())
    }
}

/// The rollout strategy, defaulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    RollingUpdate,
    Recreate,
}

fn strategy_type(d: &Deployment) -> Strategy {
    let type_ = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref());
    match type_ {
        Some("Recreate") => Strategy::Recreate,
        _ => Strategy::RollingUpdate,
    }
}

/// `maxSurge` and `maxUnavailable` as pod counts for `replicas`, upstream's
/// `ResolveFenceposts`: surge rounds up, unavailability down, and both zero means one may be
/// unavailable (or the rollout could never start). Recreate has neither.
fn limits(d: &Deployment, replicas: i32) -> (i32, i32) {
    if strategy_type(d) == Strategy::Recreate {
        return (0, 0);
    }
    let rolling = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = rolling
        .and_then(|r| r.max_surge.clone())
        .unwrap_or(IntOrString::String(DEFAULT_SURGE.into()));
    let unavailable = rolling
        .and_then(|r| r.max_unavailable.clone())
        .unwrap_or(IntOrString::String(DEFAULT_UNAVAILABLE.into()));
    let surge = scaled_value(&surge, replicas, true);
    let unavailable = scaled_value(&unavailable, replicas, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// Upstream's `GetScaledValueFromIntOrPercent`; an unparsable percentage counts as zero
/// (validation rejects it on a real cluster).
fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> i32 {
    match value {
        IntOrString::Int(n) => (*n).max(0),
        IntOrString::String(s) => {
            let Some(percent) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return 0;
            };
            let scaled = percent.max(0) * i64::from(total);
            let value = if round_up {
                (scaled + 99) / 100
            } else {
                scaled / 100
            };
            i32::try_from(value).unwrap_or(i32::MAX)
        }
    }
}

/// Upstream's `NewRSNewReplicas` for RollingUpdate: how far the new ReplicaSet may grow
/// without the total exceeding `replicas + surge`.
fn new_replicas_rolling(wanted: i32, surge: i32, new_replicas: i32, olds: &[View]) -> i32 {
    let current: i32 = olds.iter().map(|o| o.replicas).sum::<i32>() + new_replicas;
    let max_total = wanted + surge;
    if current >= max_total {
        return new_replicas;
    }
    let up = (max_total - current).min(wanted - new_replicas).max(0);
    new_replicas + up
}

/// One rolling-update step: the replica counts to set, by ReplicaSet name.
fn plan_rolling(
    wanted: i32,
    surge: i32,
    unavailable: i32,
    new: Option<&View>,
    olds: &[View],
) -> Vec<(String, i32)> {
    let mut plan = Vec::new();
    if let Some(new) = new {
        // reconcileNewReplicaSet.
        let target = if new.replicas > wanted {
            wanted
        } else {
            new_replicas_rolling(wanted, surge, new.replicas, olds)
        };
        if target != new.replicas {
            plan.push((new.name.clone(), target));
        }
    }
    // reconcileOldReplicaSets, with the new ReplicaSet's replicas before this step as upstream
    // (it scales in a separate sync), which the surge already bounded.
    let olds_before = olds;
    let mut olds: Vec<View> = olds.iter().filter(|o| o.replicas > 0).cloned().collect();
    if olds.is_empty() {
        return plan;
    }
    let new_spec = new.map_or(0, |n| n.replicas);
    let new_unavailable = new.map_or(0, |n| (n.replicas - n.available).max(0));
    let all: i32 = olds.iter().map(|o| o.replicas).sum::<i32>() + new_spec;
    let min_available = wanted - unavailable;
    let mut budget = all - min_available - new_unavailable;
    if budget <= 0 {
        return plan;
    }
    olds.sort_by_key(|o| (o.created, o.name.clone()));
    // cleanupUnhealthyReplicas: unavailable old pods go first, they cost no availability.
    for old in olds.iter_mut() {
        if budget <= 0 {
            break;
        }
        let unhealthy = old.replicas - old.available;
        if unhealthy <= 0 {
            continue;
        }
        let down = unhealthy.min(budget);
        old.replicas -= down;
        budget -= down;
    }
    // scaleDownOldReplicaSetsForRollingUpdate: then available ones, down to minAvailable.
    let available: i32 = olds
        .iter()
        .map(|o| o.available.min(o.replicas))
        .sum::<i32>()
        + new.map_or(0, |n| n.available);
    let mut total_down = (available - min_available).min(budget.max(0));
    for old in olds.iter_mut() {
        if total_down <= 0 {
            break;
        }
        let down = old.replicas.min(total_down);
        old.replicas -= down;
        total_down -= down;
    }
    let before: BTreeMap<&str, i32> = olds_before
        .iter()
        .map(|o| (o.name.as_str(), o.replicas))
        .collect();
    plan.extend(
        olds.into_iter()
            .filter(|o| before.get(o.name.as_str()) != Some(&o.replicas))
            .map(|o| (o.name, o.replicas)),
    );
    plan
}

/// One Recreate step: old ReplicaSets to zero; the new one up once no old pod is left.
fn plan_recreate(wanted: i32, new: Option<&View>, olds: &[View]) -> Vec<(String, i32)> {
    let mut plan: Vec<(String, i32)> = olds
        .iter()
        .filter(|o| o.replicas > 0)
        .map(|o| (o.name.clone(), 0))
        .collect();
    let old_pods = olds.iter().any(|o| o.pods > 0);
    if let Some(new) = new
        && plan.is_empty()
        && !old_pods
        && new.replicas != wanted
    {
        plan.push((new.name.clone(), wanted));
    }
    plan
}

/// Whether `spec.replicas` changed since the active ReplicaSets were last scaled (upstream's
/// `isScalingEvent`).
fn is_scaling_event(sets: &[ReplicaSet], wanted: i32) -> bool {
    sets.iter()
        .filter(|rs| rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0) > 0)
        .any(|rs| {
            rs.annotations()
                .get(DESIRED_REPLICAS)
                .and_then(|v| v.parse::<i32>().ok())
                .is_some_and(|desired| desired != wanted)
        })
}

/// Upstream's `scale`: the only active ReplicaSet (or the new one) takes all replicas; with
/// several active, the difference is spread in proportion to their sizes, the rest going to
/// the largest (newest on ties), within `replicas + surge` in total.
fn scale_proportionally(
    wanted: i32,
    surge: i32,
    new: Option<&View>,
    olds: &[View],
) -> Vec<(String, i32)> {
    let mut active: Vec<&View> = olds.iter().chain(new).filter(|v| v.replicas > 0).collect();
    if active.is_empty() {
        return match new {
            Some(n) if n.replicas != wanted => vec![(n.name.clone(), wanted)],
            _ => Vec::new(),
        };
    }
    if active.len() == 1 {
        let only = active[0];
        // An old ReplicaSet alone keeps rolling; only its size follows the Deployment.
        return if only.replicas == wanted {
            Vec::new()
        } else {
            vec![(only.name.clone(), wanted)]
        };
    }
    if let Some(n) = new
        && n.replicas == wanted
        && n.available == wanted
    {
        return olds
            .iter()
            .filter(|o| o.replicas > 0)
            .map(|o| (o.name.clone(), 0))
            .collect();
    }
    let current: i32 = active.iter().map(|v| v.replicas).sum();
    let allowed = wanted + surge;
    let to_add = allowed - current;
    if to_add == 0 {
        return Vec::new();
    }
    // Largest first, newest first among equals: they absorb the rounding leftover.
    active.sort_by(|a, b| b.replicas.cmp(&a.replicas).then(b.created.cmp(&a.created)));
    let mut plan = Vec::new();
    let mut added = 0;
    for v in &active {
        let share =
            i32::try_from(i64::from(v.replicas) * i64::from(to_add) / i64::from(current.max(1)))
                .unwrap_or(0);
        let share = if to_add > 0 {
            share.min(to_add - added)
        } else {
            share.max(to_add - added)
        };
        added += share;
        plan.push((v.name.clone(), v.replicas + share));
    }
    if let Some(first) = plan.first_mut() {
        first.1 = (first.1 + to_add - added).max(0);
    }
    plan.retain(|(name, replicas)| {
        active
            .iter()
            .any(|v| &v.name == name && v.replicas != *replicas)
    });
    plan
}

fn needs_scale_annotations(rs: &ReplicaSet, wanted: i32, surge: i32) -> bool {
    let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    if replicas == 0 {
        return false;
    }
    let annotations = rs.annotations();
    annotations.get(DESIRED_REPLICAS) != Some(&wanted.to_string())
        || annotations.get(MAX_REPLICAS) != Some(&(wanted + surge).to_string())
}

fn selector_of(selector: &Sel) -> Option<LabelSelector> {
    let empty = selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty);
    if empty {
        return None;
    }
    let value = serde_json::to_value(selector).ok()?;
    LabelSelector::from_object(Some(&value)).ok()
}

fn rs_template(rs: &ReplicaSet) -> Option<PodTemplateSpec> {
    rs.spec.as_ref().and_then(|s| s.template.clone())
}

/// Upstream's `EqualIgnoreHash`: templates equal once the hash label is dropped from both.
fn same_template(rs: Option<&PodTemplateSpec>, deployment: &PodTemplateSpec) -> bool {
    let Some(rs) = rs else {
        return false;
    };
    without_hash(rs) == without_hash(deployment)
}

fn without_hash(template: &PodTemplateSpec) -> Value {
    let mut template = template.clone();
    if let Some(meta) = template.metadata.as_mut() {
        if let Some(labels) = meta.labels.as_mut() {
            labels.remove(TEMPLATE_HASH_LABEL);
        }
        if meta.labels.as_ref().is_some_and(BTreeMap::is_empty) {
            meta.labels = None;
        }
    }
    serde_json::to_value(template).unwrap_or(Value::Null)
}

/// The `pod-template-hash` of a template and the Deployment's collision count, computed as
/// ControllerRevision hashes are ([`history::hash`]): upstream's shape, not its value.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let data = serde_json::to_value(template).unwrap_or(Value::Null);
    history::hash(&data, collision_count.unwrap_or(0))
}

fn next_revision(sets: &[ReplicaSet]) -> i64 {
    sets.iter()
        .filter_map(|rs| rs.annotations().get(REVISION)?.parse::<i64>().ok())
        .max()
        .unwrap_or(0)
        + 1
}

/// The new ReplicaSet for the Deployment's current template, as upstream's
/// `getNewReplicaSet` builds it.
fn new_replica_set(d: &Deployment, revision: i64, replicas: i32, surge: i32) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    let mut template = spec.template.clone();
    let hash = template_hash(&template, collision);
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(TEMPLATE_HASH_LABEL.into(), hash.clone());
    let labels = meta.labels.clone();
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(TEMPLATE_HASH_LABEL.into(), hash.clone());
    let wanted = spec.replicas.unwrap_or(1);
    let mut annotations: BTreeMap<String, String> = d
        .annotations()
        .iter()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    annotations.insert(REVISION.into(), revision.to_string());
    annotations.insert(DESIRED_REPLICAS.into(), wanted.to_string());
    annotations.insert(MAX_REPLICAS.into(), (wanted + surge).to_string());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", d.name_any())),
            namespace: d.metadata.namespace.clone(),
            labels,
            annotations: Some(annotations),
            owner_references: Some(vec![podutil::controller_ref(d)]),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

/// Counts a ReplicaSet's pods.
fn view(rs: &ReplicaSet, pods: &[Pod], min_ready: Duration, now: jiff::Timestamp) -> View {
    let uid = rs.metadata.uid.as_deref().unwrap_or_default();
    let mine: Vec<&Pod> = pods
        .iter()
        .filter(|p| podutil::controller_of(&p.metadata).is_some_and(|r| r.uid == uid))
        .filter(|p| podutil::is_active(p))
        .collect();
    let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let count = |f: &dyn Fn(&Pod) -> bool| podutil::to_i32(mine.iter().filter(|p| f(p)).count());
    let available_pods = count(&|p| podutil::is_available(p, min_ready, now));
    View {
        name: rs.name_any(),
        replicas,
        pods: podutil::to_i32(mine.len()),
        ready: count(&podutil::is_ready),
        available: available_pods.min(replicas),
        available_pods,
        created: rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
    }
}

/// The Deployment's status as upstream's `calculateStatus` and `syncRolloutStatus` compute
/// it; `created` names a ReplicaSet created by this sync.
fn compute_status(
    d: &Deployment,
    new: Option<&View>,
    all: &[View],
    max_unavailable: i32,
    created: Option<&str>,
    now: jiff::Timestamp,
) -> DeploymentStatus {
    let old = d.status.clone().unwrap_or_default();
    let spec = d.spec.clone().unwrap_or_default();
    let wanted = spec.replicas.unwrap_or(1);
    let available: i32 = all.iter().map(|v| v.available_pods).sum();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: omit_zero(all.iter().map(|v| v.pods).sum()),
        updated_replicas: omit_zero(new.map_or(0, |n| n.pods)),
        ready_replicas: omit_zero(all.iter().map(|v| v.ready).sum()),
        available_replicas: omit_zero(available),
        unavailable_replicas: omit_zero((wanted - available).max(0)),
        terminating_replicas: old.terminating_replicas,
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
    };
    let mut conditions = old.conditions.clone().unwrap_or_default();
    if available >= wanted - max_unavailable {
        let message = "Deployment has minimum availability.";
        set_condition(
            &mut conditions,
            cond(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                message,
                now,
            ),
        );
    } else {
        let message = "Deployment does not have minimum availability.";
        set_condition(
            &mut conditions,
            cond(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                message,
                now,
            ),
        );
    }
    if let Some(progress) = progressing(d, &old, &status, new, created, &conditions, now) {
        set_progressing(&mut conditions, progress);
    }
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    status
}

fn cond(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// The Progressing condition to write, if any (upstream's `checkPausedConditions`,
/// `getNewReplicaSet` and `syncRolloutStatus`).
fn progressing(
    d: &Deployment,
    old: &DeploymentStatus,
    new_status: &DeploymentStatus,
    new: Option<&View>,
    created: Option<&str>,
    conditions: &[DeploymentCondition],
    now: jiff::Timestamp,
) -> Option<DeploymentCondition> {
    let spec = d.spec.clone().unwrap_or_default();
    let current = conditions.iter().find(|c| c.type_ == "Progressing");
    let reason = current.and_then(|c| c.reason.as_deref());
    if spec.paused.unwrap_or(false) {
        return (reason != Some("DeploymentPaused")).then(|| {
            cond(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
                now,
            )
        });
    }
    if reason == Some("DeploymentPaused") {
        return Some(cond(
            "Progressing",
            "Unknown",
            "DeploymentResumed",
            "Deployment is resumed",
            now,
        ));
    }
    if let Some(name) = created {
        let message = format!("Created new replica set \"{name}\"");
        return Some(cond(
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            &message,
            now,
        ));
    }
    let wanted = spec.replicas.unwrap_or(1);
    let count = |n: Option<i32>| n.unwrap_or(0);
    let replicas = count(new_status.replicas);
    let updated = count(new_status.updated_replicas);
    let complete_before = replicas == updated && reason == Some("NewReplicaSetAvailable");
    if complete_before {
        return None;
    }
    let what = match new {
        Some(n) => format!("ReplicaSet \"{}\"", n.name),
        None => format!(
            "Deployment \"{}\"",
            d.metadata.name.as_deref().unwrap_or_default()
        ),
    };
    let complete = updated == wanted
        && replicas == wanted
        && count(new_status.available_replicas) == wanted
        && new_status.observed_generation >= d.metadata.generation;
    if complete {
        let message = format!("{what} has successfully progressed.");
        return Some(cond(
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &message,
            now,
        ));
    }
    let old_replicas = |s: &DeploymentStatus| count(s.replicas) - count(s.updated_replicas);
    let progressed = updated > count(old.updated_replicas)
        || old_replicas(new_status) < old_replicas(old)
        || count(new_status.ready_replicas) > count(old.ready_replicas)
        || count(new_status.available_replicas) > count(old.available_replicas);
    if progressed || current.is_none() {
        let message = format!("{what} is progressing.");
        return Some(cond(
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            &message,
            now,
        ));
    }
    let deadline = spec
        .progress_deadline_seconds
        .map_or(DEFAULT_PROGRESS_DEADLINE, i64::from);
    let timed_out = match reason {
        Some("ProgressDeadlineExceeded") => return None,
        _ => current
            .and_then(|c| c.last_update_time.as_ref())
            .is_some_and(|at| at.0 + jiff::SignedDuration::from_secs(deadline) < now),
    };
    timed_out.then(|| {
        let message = format!("{what} has timed out progressing.");
        cond(
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            &message,
            now,
        )
    })
}

/// Upstream's `SetDeploymentCondition`: nothing changes when status and reason are the same;
/// the transition time is kept when only the reason changes.
fn set_condition(conditions: &mut Vec<DeploymentCondition>, mut new: DeploymentCondition) {
    if let Some(i) = conditions.iter().position(|c| c.type_ == new.type_) {
        let current = &conditions[i];
        if current.status == new.status && current.reason == new.reason {
            return;
        }
        if current.status == new.status {
            new.last_transition_time
                .clone_from(&current.last_transition_time);
        }
        conditions.remove(i);
    }
    conditions.push(new);
}

/// Progress is recorded even with an unchanged reason: the update time says when the rollout
/// last moved, which is what the deadline is measured from.
fn set_progressing(conditions: &mut Vec<DeploymentCondition>, mut new: DeploymentCondition) {
    if new.reason.as_deref() != Some("ReplicaSetUpdated") {
        return set_condition(conditions, new);
    }
    if let Some(i) = conditions.iter().position(|c| c.type_ == new.type_) {
        if conditions[i].status == new.status {
            new.last_transition_time
                .clone_from(&conditions[i].last_transition_time);
        }
        conditions.remove(i);
    }
    conditions.push(new);
}

fn omit_zero(n: i32) -> Option<i32> {
    (n > 0).then_some(n)
}

/// When to sync again without a watch event: when a waiting pod becomes available, or when
/// the progress deadline passes.
fn requeue_after(
    d: &Deployment,
    status: &DeploymentStatus,
    now: jiff::Timestamp,
    min_ready: Duration,
    pods: &[Pod],
) -> Option<Duration> {
    let available_soon = podutil::next_available(pods, min_ready, now);
    let progressing = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing" && c.status == "True")
        .filter(|c| c.reason.as_deref() != Some("NewReplicaSetAvailable"));
    let deadline = progressing.and_then(|c| {
        let updated = c.last_update_time.as_ref()?.0;
        let seconds = d
            .spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
            .map_or(DEFAULT_PROGRESS_DEADLINE, i64::from);
        let due = updated
            .checked_add(jiff::SignedDuration::from_secs(seconds + 1))
            .ok()?;
        Duration::try_from(due.duration_since(now)).ok()
    });
    match (available_soon, deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};

    fn v(name: &str, replicas: i32, available: i32) -> View {
        View {
            name: name.into(),
            replicas,
            pods: replicas,
            ready: available,
            available: available.min(replicas),
            available_pods: available,
            created: None,
        }
    }

    fn deployment(replicas: i32, strategy: Option<DeploymentStrategy>) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                generation: Some(2),
                ..ObjectMeta::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                strategy,
                ..DeploymentSpec::default()
            }),
            status: None,
        }
    }

    fn rolling(surge: IntOrString, unavailable: IntOrString) -> Option<DeploymentStrategy> {
        Some(DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(surge),
                max_unavailable: Some(unavailable),
            }),
        })
    }

    #[test]
    fn percentages_round_surge_up_and_unavailability_down() {
        let d = deployment(10, None);
        assert_eq!(limits(&d, 10), (3, 2), "25% of 10");
        assert_eq!(limits(&d, 1), (1, 0));
        let zero = deployment(3, rolling(IntOrString::Int(0), IntOrString::Int(0)));
        assert_eq!(limits(&zero, 3), (0, 1), "both zero would never roll");
        let recreate = deployment(
            3,
            Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                rolling_update: None,
            }),
        );
        assert_eq!(limits(&recreate, 3), (0, 0));
        assert_eq!(
            scaled_value(&IntOrString::String("bad".into()), 10, true),
            0
        );
    }

    #[test]
    fn the_new_replica_set_grows_within_the_surge() {
        assert_eq!(new_replicas_rolling(3, 1, 0, &[v("old", 3, 3)]), 1);
        assert_eq!(
            new_replicas_rolling(3, 1, 1, &[v("old", 3, 3)]),
            1,
            "at 4 already"
        );
        assert_eq!(new_replicas_rolling(3, 1, 1, &[v("old", 2, 2)]), 2);
        assert_eq!(
            new_replicas_rolling(3, 5, 0, &[v("old", 3, 3)]),
            3,
            "never past replicas"
        );
    }

    #[test]
    fn rolling_steps_respect_both_limits() {
        // maxSurge 1, maxUnavailable 0: new goes to 1, old waits for it to be available.
        let plan = plan_rolling(3, 1, 0, Some(&v("new", 0, 0)), &[v("old", 3, 3)]);
        assert_eq!(plan, vec![("new".into(), 1)]);
        let plan = plan_rolling(3, 1, 0, Some(&v("new", 1, 0)), &[v("old", 3, 3)]);
        assert!(
            plan.is_empty(),
            "nothing may go while the new pod is unavailable"
        );
        let plan = plan_rolling(3, 1, 0, Some(&v("new", 1, 1)), &[v("old", 3, 3)]);
        assert_eq!(plan, vec![("old".into(), 2)]);
        // maxSurge 0, maxUnavailable 1: old goes first.
        let plan = plan_rolling(3, 0, 1, Some(&v("new", 0, 0)), &[v("old", 3, 3)]);
        assert_eq!(plan, vec![("old".into(), 2)]);
    }

    #[test]
    fn unhealthy_old_pods_are_scaled_down_first() {
        let mut broken = v("broken", 2, 0);
        broken.created = Some(jiff::Timestamp::UNIX_EPOCH);
        let mut plan = plan_rolling(3, 1, 1, Some(&v("new", 1, 1)), &[broken, v("old", 2, 2)]);
        plan.sort();
        assert_eq!(plan, vec![("broken".into(), 0), ("old".into(), 1)]);
    }

    #[test]
    fn recreate_waits_for_old_pods_to_be_gone() {
        let plan = plan_recreate(2, Some(&v("new", 0, 0)), &[v("old", 2, 2)]);
        assert_eq!(plan, vec![("old".into(), 0)]);
        let mut draining = v("old", 0, 0);
        draining.pods = 1;
        assert!(plan_recreate(2, Some(&v("new", 0, 0)), &[draining]).is_empty());
        let plan = plan_recreate(2, Some(&v("new", 0, 0)), &[v("old", 0, 0)]);
        assert_eq!(plan, vec![("new".into(), 2)]);
    }

    #[test]
    fn scaling_is_proportional_during_a_rollout() {
        assert_eq!(
            scale_proportionally(5, 1, Some(&v("new", 2, 2)), &[]),
            vec![("new".into(), 5)]
        );
        // 10 replicas split 6/4 plus surge 0, scaled to 20: each doubles.
        let mut old = v("old", 6, 6);
        old.created = Some(jiff::Timestamp::UNIX_EPOCH);
        let plan = scale_proportionally(20, 0, Some(&v("new", 4, 4)), &[old]);
        let total: i32 = plan.iter().map(|(_, r)| r).sum();
        assert_eq!(total, 20);
        assert!(plan.contains(&("old".into(), 12)), "{plan:?}");
        // A finished rollout drops what is left of the old ones.
        let plan = scale_proportionally(3, 1, Some(&v("new", 3, 3)), &[v("old", 1, 1)]);
        assert_eq!(plan, vec![("old".into(), 0)]);
    }

    #[test]
    fn templates_compare_without_the_hash_label() {
        let template: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]}
        }))
        .unwrap();
        let mut hashed = template.clone();
        hashed
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(TEMPLATE_HASH_LABEL.into(), "abc".into());
        assert!(same_template(Some(&hashed), &template));
        let mut changed = template.clone();
        changed.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
        assert!(!same_template(Some(&hashed), &changed));
        assert!(!same_template(None, &template));
    }

    #[test]
    fn hashes_are_stable_safe_and_change_with_collisions() {
        let template = PodTemplateSpec::default();
        let hash = template_hash(&template, None);
        assert_eq!(hash, template_hash(&template, None));
        assert_ne!(hash, template_hash(&template, Some(1)));
        assert!(
            hash.chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
        );
        assert!(!hash.is_empty() && hash.len() <= 10);
    }

    #[test]
    fn conditions_follow_the_rollout() {
        let now = jiff::Timestamp::now();
        let mut d = deployment(3, None);
        d.metadata.name = Some("web".into());
        let status = compute_status(
            &d,
            Some(&v("new", 3, 0)),
            &[v("new", 3, 0)],
            0,
            Some("web-x"),
            now,
        );
        let progressing = |s: &DeploymentStatus| {
            s.conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "Progressing")
                .and_then(|c| c.reason.clone())
        };
        assert_eq!(
            progressing(&status).as_deref(),
            Some("NewReplicaSetCreated")
        );
        let available = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Available");
        assert_eq!(available.map(|c| c.status.as_str()), Some("False"));

        d.status = Some(status);
        let done = compute_status(&d, Some(&v("new", 3, 3)), &[v("new", 3, 3)], 0, None, now);
        assert_eq!(
            progressing(&done).as_deref(),
            Some("NewReplicaSetAvailable")
        );
        assert_eq!(done.observed_generation, Some(2));
        assert_eq!(done.unavailable_replicas, None);

        // No progress for longer than the deadline.
        let mut stuck = deployment(3, None);
        stuck.spec.as_mut().unwrap().progress_deadline_seconds = Some(5);
        let before = now - jiff::SignedDuration::from_secs(60);
        stuck.status = Some(compute_status(
            &stuck,
            Some(&v("new", 3, 0)),
            &[v("new", 3, 0)],
            0,
            None,
            before,
        ));
        let late = compute_status(
            &stuck,
            Some(&v("new", 3, 0)),
            &[v("new", 3, 0)],
            0,
            None,
            now,
        );
        assert_eq!(
            progressing(&late).as_deref(),
            Some("ProgressDeadlineExceeded")
        );
    }
}

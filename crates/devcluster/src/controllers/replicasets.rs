//! The ReplicaSet controller of kube-controller-manager.
//!
//! Like upstream's `replicaset` controller it:
//! - claims pods: adopts orphan pods matching `spec.selector` (controller ownerReference with
//!   `blockOwnerDeletion`), releases controlled pods that stopped matching, ignores pods
//!   controlled by something else;
//! - keeps `spec.replicas` active (not terminal, not deleting) pods: creates missing ones from
//!   `spec.template` (`generateName: <rs>-`), deletes surplus ones ranked as upstream does
//!   (unscheduled, pending, not ready, lower deletion cost, newer first);
//! - writes `status` (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas,
//!   observedGeneration) through `/status` when it changes.
//!
//! Each sync reads the ReplicaSet and its namespace's pods fresh (see [`workqueue`]). Adoption
//! and release are JSON patches guarded by uid and resourceVersion.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use tokio_util::sync::CancellationToken;

use super::podutil::{
    self, controller_ref, is_active, is_available, is_ready, next_available, omit_zero,
    ready_since, to_i32,
};
use super::workqueue::{self, Key};
use crate::selector::LabelSelector;

/// Annotation ranking pods for scale-down: lower cost goes first.
const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Runs the ReplicaSet controller until `shutdown` is cancelled. API errors are logged and
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
        "replicaset",
        Api::<ReplicaSet>::all(client.clone()),
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
    /// Some pods could not be adopted or released; the rest of the sync went ahead.
    #[error("{0} pods could not be adopted or released")]
    Claims(usize),
}

/// One sync of one ReplicaSet.
struct Sync<'a> {
    client: &'a kube::Client,
    namespace: &'a str,
    name: &'a str,
}

impl Sync<'_> {
    fn sets(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.client.clone(), self.namespace)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), self.namespace)
    }

    /// Syncs the latest version; returns when to sync again if pods become available later.
    async fn run(&self) -> Result<Option<Duration>, SyncError> {
        let Some(rs) = self.sets().get_opt(self.name).await? else {
            return Ok(None);
        };
        // A ReplicaSet being deleted is left to the garbage collector, as upstream does
        // (it neither adopts nor creates for it).
        if rs.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        if rs.metadata.uid.is_none() {
            return Ok(None);
        }
        let spec = rs.spec.clone().unwrap_or_default();
        let selector = match podutil::selector(&spec.selector) {
            Ok(s) => s,
            Err(e) => {
                tracing::info!(replicaset = %self.name, error = %e.0,
                    "replicaset controller: invalid selector, ignoring");
                return Ok(None);
            }
        };
        let (owned, failed_claims) = self.claim(&rs, &selector).await?;
        let active: Vec<Pod> = owned.into_iter().filter(is_active).collect();
        let wanted = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or_default();
        self.manage(&rs, &active, wanted).await?;
        let now = jiff::Timestamp::now();
        let min_ready = podutil::min_ready(spec.min_ready_seconds);
        self.update_status(rs, &active, min_ready, now).await?;
        if failed_claims > 0 {
            return Err(SyncError::Claims(failed_claims));
        }
        Ok(next_available(&active, min_ready, now))
    }

    /// Lists the namespace's pods, adopts and releases; returns the pods the ReplicaSet
    /// controls and how many claims failed.
    async fn claim(
        &self,
        rs: &ReplicaSet,
        selector: &LabelSelector,
    ) -> Result<(Vec<Pod>, usize), SyncError> {
        let pods = self.pods().list(&ListParams::default()).await?.items;
        let matches = |pod: &Pod| selector.matches_map(pod.labels());
        Ok(podutil::claim_objects(&self.pods(), pods, &controller_ref(rs), matches).await)
    }

    /// Creates or deletes pods until `wanted` are active.
    async fn manage(
        &self,
        rs: &ReplicaSet,
        active: &[Pod],
        wanted: usize,
    ) -> Result<(), SyncError> {
        if active.len() < wanted {
            let pod = pod_from_template(rs);
            for _ in active.len()..wanted {
                let created = self.pods().create(&PostParams::default(), &pod).await?;
                tracing::debug!(replicaset = %self.name, pod = %created.name_any(),
                    "replicaset controller: created pod");
            }
        } else if active.len() > wanted {
            let mut ranked: Vec<&Pod> = active.iter().collect();
            ranked.sort_by_cached_key(|p| deletion_rank(p));
            for pod in ranked.into_iter().take(active.len() - wanted) {
                self.delete(pod).await?;
            }
        }
        Ok(())
    }

    async fn delete(&self, pod: &Pod) -> Result<(), SyncError> {
        podutil::delete_pod(&self.pods(), pod).await?;
        tracing::debug!(replicaset = %self.name, pod = %pod.name_any(),
            "replicaset controller: deleted pod");
        Ok(())
    }

    /// Writes the status computed from `active` if it differs from the current one.
    async fn update_status(
        &self,
        mut rs: ReplicaSet,
        active: &[Pod],
        min_ready: Duration,
        now: jiff::Timestamp,
    ) -> Result<(), SyncError> {
        let current = rs.status.clone().unwrap_or_default();
        let status = compute_status(&rs, &current, active, min_ready, now);
        if status == current {
            return Ok(());
        }
        rs.status = Some(status);
        self.sets()
            .replace_status(self.name, &PostParams::default(), &rs)
            .await?;
        Ok(())
    }
}

/// A new pod for a ReplicaSet (`generateName: <rs>-`).
fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    let mut pod =
        podutil::pod_from_template(&template, rs.metadata.namespace.clone(), controller_ref(rs));
    pod.metadata.generate_name = Some(format!("{name}-"));
    pod
}

/// Upstream's `calculateStatus`; conditions are kept as they are.
fn compute_status(
    rs: &ReplicaSet,
    current: &ReplicaSetStatus,
    active: &[Pod],
    min_ready: Duration,
    now: jiff::Timestamp,
) -> ReplicaSetStatus {
    let template_labels = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let count = |f: &dyn Fn(&Pod) -> bool| active.iter().filter(|p| f(p)).count();
    let fully_labeled = count(&|p| has_labels(p, &template_labels));
    let ready = count(&is_ready);
    let available = count(&|p| is_available(p, min_ready, now));
    ReplicaSetStatus {
        replicas: to_i32(active.len()),
        fully_labeled_replicas: omit_zero(fully_labeled),
        ready_replicas: omit_zero(ready),
        available_replicas: omit_zero(available),
        observed_generation: rs.metadata.generation.or(current.observed_generation),
        conditions: current.conditions.clone(),
        terminating_replicas: current.terminating_replicas,
    }
}

fn has_labels(pod: &Pod, wanted: &BTreeMap<String, String>) -> bool {
    let labels = pod.metadata.labels.as_ref();
    wanted
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Upstream's `ActivePodsWithRanks` order: pods earlier in it are deleted first.
fn deletion_rank(pod: &Pod) -> impl Ord {
    let status = pod.status.clone().unwrap_or_default();
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let phase = match status.phase.as_deref() {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        Some(_) => 3,
    };
    let ready = ready_since(pod);
    let cost: i32 = pod
        .annotations()
        .get(DELETION_COST)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    // Ready for less time, restarted more, created later: deleted first.
    let ready_for = std::cmp::Reverse(ready.flatten());
    let restarts: i32 = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.restart_count)
        .sum();
    let created = std::cmp::Reverse(pod.metadata.creation_timestamp.as_ref().map(|t| t.0));
    (
        scheduled,
        phase,
        ready.is_some(),
        cost,
        ready_for,
        std::cmp::Reverse(restarts),
        created,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::podutil::controller_of;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as Sel, ObjectMeta, Time};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn rs() -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("rs-uid".into()),
                generation: Some(4),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(2),
                selector: Sel {
                    match_labels: Some(labels(&[("app", "web")])),
                    ..Sel::default()
                },
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels(&[("app", "web"), ("tier", "front")])),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec::default()),
                }),
                ..ReplicaSetSpec::default()
            }),
            status: None,
        }
    }

    fn pod(name: &str, pairs: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("{name}-uid")),
                labels: Some(labels(pairs)),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    fn ready(mut pod: Pod, since: jiff::Timestamp) -> Pod {
        pod.status = Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(since)),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        });
        pod.spec = Some(PodSpec {
            node_name: Some("n".into()),
            ..PodSpec::default()
        });
        pod
    }

    #[test]
    fn template_pods_are_controlled_and_generated() {
        let pod = pod_from_template(&rs());
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(pod.metadata.name, None);
        assert_eq!(
            pod.metadata.labels,
            Some(labels(&[("app", "web"), ("tier", "front")]))
        );
        let owner = controller_of(&pod.metadata).unwrap();
        assert_eq!(owner.uid, "rs-uid");
        assert_eq!(owner.block_owner_deletion, Some(true));
    }

    #[test]
    fn unready_and_newer_pods_are_deleted_first() {
        let now = jiff::Timestamp::now();
        let old = ready(pod("old", &[]), now);
        let unready = pod("unready", &[]);
        let mut costly = ready(pod("costly", &[]), now);
        costly.metadata.annotations = Some(labels(&[(DELETION_COST, "100")]));
        let mut newer = ready(pod("newer", &[]), now);
        newer.metadata.creation_timestamp = Some(Time(now));
        let mut pods = [&costly, &old, &newer, &unready];
        pods.sort_by_cached_key(|p| deletion_rank(p));
        let names: Vec<_> = pods.iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["unready", "newer", "old", "costly"]);
    }

    #[test]
    fn status_counts_ready_and_available_pods() {
        let now = jiff::Timestamp::now();
        let long_ago = now - jiff::SignedDuration::from_secs(60);
        let full = [("app", "web"), ("tier", "front")];
        let pods = [
            ready(pod("a", &full), long_ago),
            ready(pod("b", &[("app", "web")]), now),
            pod("c", &full),
        ];
        let min_ready = Duration::from_secs(10);
        let status = compute_status(&rs(), &ReplicaSetStatus::default(), &pods, min_ready, now);
        assert_eq!(status.replicas, 3);
        assert_eq!(status.fully_labeled_replicas, Some(2));
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(1));
        assert_eq!(status.observed_generation, Some(4));
        let next = next_available(&pods, min_ready, now).unwrap();
        assert!(next > Duration::from_secs(9) && next < Duration::from_secs(11));
        let none = compute_status(&rs(), &ReplicaSetStatus::default(), &[], min_ready, now);
        assert_eq!((none.replicas, none.ready_replicas), (0, None));
    }
}

//! Pod and ownership helpers the workload controllers share: upstream's pod utilities
//! (active, ready, available), `GetPodFromTemplate`, and the claim decisions of its
//! `ControllerRefManager` (adopt orphans that match, release owned objects that stopped
//! matching, leave others' objects alone).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::selector::{LabelSelector, SelectorError};

/// The phase of a pod, if reported.
pub(super) fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

/// Whether the pod finished for good (`Succeeded` or `Failed`).
pub(super) fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), Some("Succeeded" | "Failed"))
}

/// Upstream's `FilterActivePods`: not terminal and not being deleted.
pub(super) fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !is_terminal(pod)
}

/// When the pod's Ready condition became true (`Some(None)` if it does not say), if it is
/// ready.
pub(super) fn ready_since(pod: &Pod) -> Option<Option<jiff::Timestamp>> {
    let ready = pod
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(ready.last_transition_time.as_ref().map(|t| t.0))
}

/// Upstream's `IsPodReady`: the Ready condition is true.
pub(super) fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Upstream's `IsPodAvailable`: ready for at least `min_ready`.
pub(super) fn is_available(pod: &Pod, min_ready: Duration, now: jiff::Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready.is_zero() => true,
        Some(None) => false,
        Some(Some(since)) => available_at(since, min_ready).is_some_and(|at| at <= now),
    }
}

fn available_at(since: jiff::Timestamp, min_ready: Duration) -> Option<jiff::Timestamp> {
    since
        .checked_add(jiff::SignedDuration::try_from(min_ready).ok()?)
        .ok()
}

/// How long until the next of `pods` that is ready becomes available, if one is waiting: when
/// a controller should look again.
pub(super) fn next_available<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    min_ready: Duration,
    now: jiff::Timestamp,
) -> Option<Duration> {
    if min_ready.is_zero() {
        return None;
    }
    pods.into_iter()
        .filter_map(|p| ready_since(p).flatten())
        .filter_map(|since| available_at(since, min_ready))
        .filter(|at| *at > now)
        .filter_map(|at| Duration::try_from(at.duration_since(now)).ok())
        .min()
        // Timestamps have second precision: look again just after the second turns.
        .map(|d| d + Duration::from_millis(100))
}

/// `spec.minReadySeconds` as a duration (negative counts as zero).
pub(super) fn min_ready(seconds: Option<i32>) -> Duration {
    Duration::from_secs(u64::try_from(seconds.unwrap_or(0)).unwrap_or(0))
}

/// A workload's `spec.selector` in the form that matches labels.
pub(super) fn selector(selector: &meta::v1::LabelSelector) -> Result<LabelSelector, SelectorError> {
    let value = serde_json::to_value(selector).unwrap_or(Value::Null);
    LabelSelector::from_object(Some(&value))
}

/// The controlling owner reference of an object, if any.
pub(super) fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// The controller reference `owner` puts on what it creates (upstream's `NewControllerRef`).
pub(super) fn controller_ref<K: kube::Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// What a controller does with one object it may select.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Claim {
    /// Controlled by it and matching.
    Owned,
    /// An orphan that matches.
    Adopt,
    /// Controlled by it but no longer matching.
    Release,
    /// Not its business.
    Ignore,
}

/// Upstream's `ClaimObject` decision for an object whose match against the controller's
/// selector (and any extra filter) is `matches`; `uid` is the controller's.
pub(super) fn claim(meta: &ObjectMeta, uid: &str, matches: bool) -> Claim {
    match controller_of(meta) {
        Some(r) if r.uid == uid => {
            if matches {
                Claim::Owned
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        // An object on its way out is not worth adopting.
        None if matches && meta.deletion_timestamp.is_none() => Claim::Adopt,
        None => Claim::Ignore,
    }
}

/// Why adopting or releasing one object failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ClaimError {
    /// The API server refused or failed the patch (a conflict when the pod changed).
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// A patch built here is not a valid JSON patch (a bug here, not in the input).
    #[error("invalid JSON patch: {0}")]
    Patch(serde_json::Error),
}

/// Claims `objects` (pods, or a Deployment's ReplicaSets) for the controller `owner`: adopts
/// matching orphans and releases owned objects that stopped matching. Returns the objects it
/// controls (adopted ones as patched) and how many adoptions or releases failed (they are
/// retried on a later sync).
pub(super) async fn claim_objects<K>(
    api: &Api<K>,
    objects: Vec<K>,
    owner: &OwnerReference,
    matches: impl Fn(&K) -> bool,
) -> (Vec<K>, usize)
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut owned = Vec::new();
    let mut failed = 0;
    for pod in objects {
        let (owners, adopting) = match claim(pod.meta(), &owner.uid, matches(&pod)) {
            Claim::Owned => {
                owned.push(pod);
                continue;
            }
            Claim::Ignore => continue,
            Claim::Adopt => (adopted(pod.meta(), owner), true),
            Claim::Release => (released(pod.meta(), &owner.uid), false),
        };
        match set_owners(api, &pod, owners).await {
            Ok(patched) if adopting => owned.push(patched),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(controller = %owner.kind, owner = %owner.name,
                    object = %pod.name_any(), adopting, error = %e, "could not claim object");
                failed += 1;
            }
        }
    }
    (owned, failed)
}

/// Replaces an object's ownerReferences, only if it did not change since it was read.
async fn set_owners<K>(api: &Api<K>, pod: &K, owners: Vec<OwnerReference>) -> Result<K, ClaimError>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = guarded_owners_patch(pod.meta(), owners);
    let patch: json_patch::Patch = serde_json::from_value(patch).map_err(ClaimError::Patch)?;
    let patched = api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await?;
    Ok(patched)
}

fn adopted(meta: &ObjectMeta, owner: &OwnerReference) -> Vec<OwnerReference> {
    let mut owners = meta.owner_references.clone().unwrap_or_default();
    owners.push(owner.clone());
    owners
}

fn released(meta: &ObjectMeta, uid: &str) -> Vec<OwnerReference> {
    let mut owners = meta.owner_references.clone().unwrap_or_default();
    owners.retain(|r| r.uid != uid);
    owners
}

/// A JSON patch setting `metadata.ownerReferences`, failing if the object changed.
fn guarded_owners_patch(meta: &ObjectMeta, owners: Vec<OwnerReference>) -> Value {
    let write = if owners.is_empty() {
        json!({"op": "remove", "path": "/metadata/ownerReferences"})
    } else {
        json!({"op": "add", "path": "/metadata/ownerReferences", "value": owners})
    };
    json!([
        {"op": "test", "path": "/metadata/uid", "value": meta.uid},
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta.resource_version},
        write,
    ])
}

/// Deletes a pod if it is still the one read (same uid). A pod already gone, or replaced by
/// another of the same name, counts as deleted.
pub(super) async fn delete_pod(api: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// A new pod from a template, as upstream's `GetPodFromTemplate` builds it: the template's
/// labels, annotations, finalizers and spec, in `namespace`, controlled by `owner`. The
/// caller names it (`name` or `generateName`).
pub(super) fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: Option<String>,
    owner: OwnerReference,
) -> Pod {
    let template_meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            namespace,
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// A count as the `int32` the API uses (saturating).
pub(super) fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A count for an `omitempty` status field: zero is not written, as upstream's JSON omits it.
pub(super) fn omit_zero(n: usize) -> Option<i32> {
    (n > 0).then(|| to_i32(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn owner(uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "web".into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn meta(owner: Option<OwnerReference>) -> ObjectMeta {
        ObjectMeta {
            name: Some("p".into()),
            uid: Some("p-uid".into()),
            resource_version: Some("7".into()),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        }
    }

    fn ready_pod(since: jiff::Timestamp, phase: &str) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(since)),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn claims_follow_upstream() {
        let mine = owner("me");
        let not_controller = OwnerReference {
            controller: None,
            ..owner("x")
        };
        assert_eq!(claim(&meta(Some(mine.clone())), "me", true), Claim::Owned);
        assert_eq!(claim(&meta(Some(mine)), "me", false), Claim::Release);
        assert_eq!(
            claim(&meta(Some(owner("other"))), "me", true),
            Claim::Ignore
        );
        assert_eq!(claim(&meta(None), "me", true), Claim::Adopt);
        assert_eq!(claim(&meta(None), "me", false), Claim::Ignore);
        assert_eq!(claim(&meta(Some(not_controller)), "me", true), Claim::Adopt);
        let mut deleting = meta(None);
        deleting.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        assert_eq!(claim(&deleting, "me", true), Claim::Ignore);
    }

    #[test]
    fn release_drops_only_this_owner_and_patches_are_guarded() {
        let keep = OwnerReference {
            controller: None,
            ..owner("keep")
        };
        let mut m = meta(Some(keep));
        m.owner_references.get_or_insert_default().push(owner("me"));
        let owners = released(&m, "me");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].uid, "keep");
        assert_eq!(adopted(&m, &owner("new")).len(), 3);
        let patch = guarded_owners_patch(&meta(None), vec![]);
        assert_eq!(patch[0]["value"], "p-uid");
        assert_eq!(patch[1]["value"], "7");
        assert_eq!(patch[2]["op"], "remove");
        assert!(serde_json::from_value::<json_patch::Patch>(patch).is_ok());
    }

    #[test]
    fn controller_refs_name_the_kind() {
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                uid: Some("rs-uid".into()),
                ..ObjectMeta::default()
            },
            ..ReplicaSet::default()
        };
        assert_eq!(controller_ref(&rs), owner("rs-uid"));
        let pod = pod_from_template(&PodTemplateSpec::default(), None, controller_ref(&rs));
        assert_eq!(controller_of(&pod.metadata), Some(&owner("rs-uid")));
    }

    #[test]
    fn terminal_and_deleting_pods_are_inactive() {
        let now = jiff::Timestamp::now();
        assert!(is_active(&ready_pod(now, "Running")));
        assert!(!is_active(&ready_pod(now, "Failed")));
        assert!(is_terminal(&ready_pod(now, "Succeeded")));
        let mut deleting = ready_pod(now, "Running");
        deleting.metadata.deletion_timestamp = Some(Time(now));
        assert!(!is_active(&deleting));
        assert!(!is_ready(&Pod::default()));
    }

    #[test]
    fn availability_waits_for_min_ready() {
        let now = jiff::Timestamp::now();
        let long_ago = now - jiff::SignedDuration::from_secs(60);
        let old = ready_pod(long_ago, "Running");
        let fresh = ready_pod(now, "Running");
        let ten = Duration::from_secs(10);
        assert!(is_available(&old, ten, now));
        assert!(!is_available(&fresh, ten, now));
        assert!(is_available(&fresh, Duration::ZERO, now));
        let next = next_available([&old, &fresh], ten, now).unwrap();
        assert!(next > Duration::from_secs(9) && next < Duration::from_secs(11));
        assert_eq!(next_available([&old], ten, now), None);
        assert_eq!(min_ready(Some(-3)), Duration::ZERO);
        assert_eq!((omit_zero(0), omit_zero(2)), (None, Some(2)));
    }
}

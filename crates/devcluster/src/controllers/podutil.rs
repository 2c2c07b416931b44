//! Decisions about pods and ownership that several workload controllers share: upstream's
//! `ClaimObject` rules, controller references, and pod readiness and availability.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde_json::{Value, json};

use crate::selector::LabelSelector;

/// What a controller does with one object (pod or ReplicaSet) of its namespace.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Controlled by the controller's object and matching.
    Owned,
    /// An orphan that matches.
    Adopt,
    /// Controlled by the controller's object but no longer matching.
    Release,
    /// Not the controller's business.
    Ignore,
}

/// Upstream's `ClaimObject` decision for an object with `meta`, for the owner with `uid`.
pub(crate) fn claim(meta: &ObjectMeta, uid: &str, selector: &LabelSelector) -> Claim {
    let matches = selector.matches_map(&meta.labels.clone().unwrap_or_default());
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

/// The controller reference among an object's owners.
pub(crate) fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// The controller reference an owner of `kind` puts on what it creates.
pub(crate) fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The owners of an adopted object.
pub(crate) fn adopted(meta: &ObjectMeta, owner: OwnerReference) -> Vec<OwnerReference> {
    let mut owners = meta.owner_references.clone().unwrap_or_default();
    owners.push(owner);
    owners
}

/// The owners of a released object: all but the one with `uid`.
pub(crate) fn released(meta: &ObjectMeta, uid: &str) -> Vec<OwnerReference> {
    let mut owners = meta.owner_references.clone().unwrap_or_default();
    owners.retain(|r| r.uid != uid);
    owners
}

/// A JSON patch setting `metadata.ownerReferences`, failing if the object changed.
pub(crate) fn guarded_owners_patch(meta: &ObjectMeta, owners: Vec<OwnerReference>) -> Value {
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

/// Upstream's `FilterActivePods`: not terminal and not being deleted.
pub(crate) fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// When the pod's Ready condition became true, if it is ready.
pub(crate) fn ready_since(pod: &Pod) -> Option<Option<jiff::Timestamp>> {
    let ready = pod
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(ready.last_transition_time.as_ref().map(|t| t.0))
}

pub(crate) fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Upstream's `IsPodAvailable`: ready for at least `min_ready`.
pub(crate) fn is_available(pod: &Pod, min_ready: Duration, now: jiff::Timestamp) -> bool {
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

/// How long until the next ready pod becomes available, if one is waiting.
pub(crate) fn next_available(
    active: &[Pod],
    min_ready: Duration,
    now: jiff::Timestamp,
) -> Option<Duration> {
    if min_ready.is_zero() {
        return None;
    }
    active
        .iter()
        .filter_map(|p| ready_since(p).flatten())
        .filter_map(|since| available_at(since, min_ready))
        .filter(|at| *at > now)
        .filter_map(|at| Duration::try_from(at.duration_since(now)).ok())
        .min()
        // Timestamps have second precision: look again just after the second turns.
        .map(|d| d + Duration::from_millis(100))
}

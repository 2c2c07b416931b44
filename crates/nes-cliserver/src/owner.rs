//! Which object owns what the server creates for a pod (pure).
//!
//! - A `NetworkConfiguration` follows the StatefulSet lifecycle: it is owned by the pod's
//!   controlling StatefulSet, so it survives pod restarts (the manager re-applies it to the new
//!   `x-0`) and goes with the StatefulSet. A pod without one is refused.
//! - A `NetworkCare` is owned by the pod's controlling owner, whatever its kind; for a pod of a
//!   Deployment that is the ReplicaSet's own controller (the Deployment), because ReplicaSets
//!   are replaced on every rollout. A pod without a controller owns its subscription itself.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The controller reference of an object, if it has one.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()?
        .iter()
        .find(|o| o.controller == Some(true))
}

/// Whether `owner` is an `apps/v1` object of `kind`.
fn is_apps(owner: &OwnerReference, kind: &str) -> bool {
    owner.kind == kind && owner.api_version == "apps/v1"
}

/// The owner reference of a pod's `NetworkConfiguration`: its controlling StatefulSet, as
/// controller, blocking the StatefulSet's foreground deletion until it is gone.
pub fn configuration_owner(pod: &Pod) -> Result<OwnerReference, String> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    match controller_of(&pod.metadata) {
        Some(owner) if is_apps(owner, "StatefulSet") => Ok(OwnerReference {
            api_version: owner.api_version.clone(),
            kind: owner.kind.clone(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }),
        Some(owner) => Err(format!(
            "pod {name} is controlled by {} {}, not a StatefulSet; network configuration follows \
             the StatefulSet lifecycle, so only pods of a StatefulSet can have one",
            owner.kind, owner.name
        )),
        None => Err(format!(
            "pod {name} has no StatefulSet owner; network configuration follows the StatefulSet \
             lifecycle, so only pods of a StatefulSet can have one"
        )),
    }
}

/// What must be read to choose a subscription's owner: the ReplicaSet controlling the pod, if
/// it is one (its controller, e.g. a Deployment, is the real owner).
pub fn replicaset_to_read(pod: &Pod) -> Option<String> {
    controller_of(&pod.metadata)
        .filter(|o| is_apps(o, "ReplicaSet"))
        .map(|o| o.name.clone())
}

/// The owner reference of a pod's `NetworkCare`: the pod's controlling owner (through a
/// ReplicaSet to its controller when `replicaset`, read per [`replicaset_to_read`], has one),
/// or the pod itself. Not blocking: nothing has to wait for a subscription to go.
pub fn subscription_owner(pod: &Pod, replicaset: Option<&ReplicaSet>) -> OwnerReference {
    let direct = controller_of(&pod.metadata);
    let through_rs = replicaset
        .filter(|rs| direct.is_some_and(|d| Some(&d.uid) == rs.metadata.uid.as_ref()))
        .and_then(|rs| controller_of(&rs.metadata));
    let (api_version, kind, name, uid) = match through_rs.or(direct) {
        Some(owner) => (
            owner.api_version.clone(),
            owner.kind.clone(),
            owner.name.clone(),
            owner.uid.clone(),
        ),
        None => (
            "v1".to_owned(),
            "Pod".to_owned(),
            pod.metadata.name.clone().unwrap_or_default(),
            pod.metadata.uid.clone().unwrap_or_default(),
        ),
    };
    OwnerReference {
        api_version,
        kind,
        name,
        uid,
        controller: Some(true),
        block_owner_deletion: Some(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(api_version: &str, kind: &str, name: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: format!("{name}-uid"),
            controller: Some(controller),
            block_owner_deletion: None,
        }
    }

    fn pod(owners: Vec<OwnerReference>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("x-0".into()),
                uid: Some("pod-uid".into()),
                owner_references: Some(owners),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn configuration_is_owned_by_the_controlling_statefulset() {
        let owner = configuration_owner(&pod(vec![
            reference("v1", "ConfigMap", "other", false),
            reference("apps/v1", "StatefulSet", "x", true),
        ]))
        .unwrap();
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("StatefulSet", "x")
        );
        assert_eq!(owner.uid, "x-uid");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));
    }

    #[test]
    fn pods_without_a_statefulset_have_no_configuration() {
        let error = configuration_owner(&pod(vec![])).unwrap_err();
        assert!(error.contains("no StatefulSet owner"), "{error}");
        let error = configuration_owner(&pod(vec![reference(
            "apps/v1",
            "ReplicaSet",
            "web-5d",
            true,
        )]))
        .unwrap_err();
        assert!(error.contains("controlled by ReplicaSet web-5d"), "{error}");
        // A non-controller StatefulSet reference is not the pod's lifecycle.
        assert!(
            configuration_owner(&pod(vec![reference("apps/v1", "StatefulSet", "x", false)]))
                .is_err()
        );
    }

    #[test]
    fn subscription_owner_is_the_controller_or_the_pod() {
        let sts = pod(vec![reference("apps/v1", "StatefulSet", "x", true)]);
        assert_eq!(replicaset_to_read(&sts), None);
        let owner = subscription_owner(&sts, None);
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("StatefulSet", "x")
        );
        assert_eq!(owner.block_owner_deletion, Some(false));

        let bare = subscription_owner(&pod(vec![]), None);
        assert_eq!(
            (
                bare.api_version.as_str(),
                bare.kind.as_str(),
                bare.uid.as_str()
            ),
            ("v1", "Pod", "pod-uid")
        );
    }

    #[test]
    fn subscription_of_a_deployment_pod_is_owned_by_the_deployment() {
        let p = pod(vec![reference("apps/v1", "ReplicaSet", "web-5d", true)]);
        assert_eq!(replicaset_to_read(&p).as_deref(), Some("web-5d"));
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web-5d".into()),
                uid: Some("web-5d-uid".into()),
                owner_references: Some(vec![reference("apps/v1", "Deployment", "web", true)]),
                ..Default::default()
            },
            ..Default::default()
        };
        let owner = subscription_owner(&p, Some(&rs));
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("Deployment", "web")
        );
        // A ReplicaSet without a controller (created directly) owns it itself.
        let lone = ReplicaSet {
            metadata: ObjectMeta {
                owner_references: None,
                ..rs.metadata.clone()
            },
            ..Default::default()
        };
        assert_eq!(subscription_owner(&p, Some(&lone)).kind, "ReplicaSet");
        // A ReplicaSet of another uid (re-created with the same name) is not followed.
        let other = ReplicaSet {
            metadata: ObjectMeta {
                uid: Some("new".into()),
                ..rs.metadata.clone()
            },
            ..Default::default()
        };
        assert_eq!(subscription_owner(&p, Some(&other)).kind, "ReplicaSet");
    }
}

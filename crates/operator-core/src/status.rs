//! Writing a custom resource's status with server-side apply on the status subresource, with
//! the operator's field manager.
//!
//! [`update`] is what a reconciler usually wants: set the conditions, stamp
//! `observedGeneration`, and write the whole status only when it changed (server-side apply
//! drops fields a manager stops sending, so the whole status is always sent).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde_json::{Value, json};

use crate::conditions::{self, Desired};

/// A status with `metav1.Condition`s and an `observedGeneration`, as kubecrew resources have.
pub trait ConditionedStatus: Serialize + PartialEq {
    /// The conditions.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    /// Records the generation the status describes.
    fn set_observed_generation(&mut self, generation: Option<i64>);
}

/// Sets `desired` conditions on `next` (keeping transition times of unchanged statuses),
/// stamps the object's generation, and applies `next` unless it equals `current` (the status
/// the object had).
pub async fn update<K, S>(
    client: &kube::Client,
    obj: &K,
    manager: &str,
    current: &S,
    mut next: S,
    desired: impl IntoIterator<Item = Desired>,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()>,
    S: ConditionedStatus,
{
    let generation = obj.meta().generation;
    conditions::set_all(
        next.conditions_mut(),
        desired,
        generation,
        jiff::Timestamp::now(),
    );
    next.set_observed_generation(generation);
    if next == *current {
        return Ok(());
    }
    let value = serde_json::to_value(&next).map_err(kube::Error::SerdeError)?;
    apply(
        client,
        &ApiResource::erase::<K>(&()),
        obj.namespace().as_deref(),
        &obj.name_any(),
        manager,
        value,
    )
    .await
}

/// Applies `status` to the status subresource of `name` (in `namespace` for namespaced kinds).
pub async fn apply(
    client: &kube::Client,
    resource: &ApiResource,
    namespace: Option<&str>,
    name: &str,
    manager: &str,
    status: Value,
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    let body = json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {"name": name},
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(body),
    )
    .await
    .map(|_| ())
}

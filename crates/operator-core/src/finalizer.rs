//! Finalizers, as a thin layer over kube-runtime's helper: the reconciler says what to do on
//! apply and on cleanup; the helper adds the finalizer before the first apply and removes it
//! after a successful cleanup (with JSON patch `test` guards, so concurrent writers are safe).

use std::future::Future;
use std::sync::Arc;

use kube::api::Api;
use kube::runtime::controller::Action;
pub use kube::runtime::finalizer::Event;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The finalizer name of an operator: `<operator>.kubecrew.io/cleanup`.
pub fn name(operator: &str) -> String {
    format!("{operator}.kubecrew.io/cleanup")
}

/// Runs `apply` or `cleanup` for `obj` under the operator's finalizer.
pub async fn with_finalizer<K, E, Fut>(
    api: &Api<K>,
    operator: &str,
    obj: Arc<K>,
    handle: impl FnOnce(Event<K>) -> Fut,
) -> Result<Action, kube::runtime::finalizer::Error<E>>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    <K as Resource>::DynamicType: Default,
    E: std::error::Error + 'static,
    Fut: Future<Output = Result<Action, E>>,
{
    tracing::debug!(object = %obj.name_any(), "reconciling under finalizer");
    kube::runtime::finalizer(api, &name(operator), obj, handle).await
}

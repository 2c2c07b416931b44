//! The workloads that can be restarted (Deployments, StatefulSets, DaemonSets): a cache of each
//! kind kept by watches, the view the decision needs, and the restart patch.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{Api, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::plan::WorkloadView;
use crate::resource::{ConfigRef, WorkloadKind};
use crate::usage;

/// The template annotation a restart sets.
pub const HASH_ANNOTATION: &str = "kubecrew.io/config-hash";

/// Caches of the three workload kinds, filled by [`crate::operator`]'s watches.
#[derive(Clone)]
pub struct Caches {
    /// Deployments.
    pub deployments: Store<Deployment>,
    /// StatefulSets.
    pub statefulsets: Store<StatefulSet>,
    /// DaemonSets.
    pub daemonsets: Store<DaemonSet>,
    /// Whether all three have been listed once (see [`Caches::ready`]).
    pub listed: Arc<tokio::sync::OnceCell<bool>>,
}

impl Caches {
    /// Waits until every cache has been listed once; false if a cache's writer is gone.
    ///
    /// Only one task waits on the stores themselves: kube-runtime 5.0's `wait_until_ready`
    /// keeps the waker of the last poller only, so concurrent reconciles waiting on it directly
    /// would never all wake up.
    pub async fn ready(&self) -> bool {
        *self
            .listed
            .get_or_init(|| async {
                self.deployments.wait_until_ready().await.is_ok()
                    && self.statefulsets.wait_until_ready().await.is_ok()
                    && self.daemonsets.wait_until_ready().await.is_ok()
            })
            .await
    }

    /// The workloads of `namespace` (matching `selector`, if any) that use at least one of
    /// `listed`, with only those uses.
    pub fn using(
        &self,
        namespace: &str,
        selector: Option<&Selector>,
        listed: &BTreeSet<ConfigRef>,
    ) -> Vec<WorkloadView> {
        let mut views = Vec::new();
        collect(
            &self.deployments,
            WorkloadKind::Deployment,
            namespace,
            selector,
            listed,
            &mut views,
            |d| d.spec.as_ref().map(|s| &s.template),
        );
        collect(
            &self.statefulsets,
            WorkloadKind::StatefulSet,
            namespace,
            selector,
            listed,
            &mut views,
            |s| s.spec.as_ref().map(|s| &s.template),
        );
        collect(
            &self.daemonsets,
            WorkloadKind::DaemonSet,
            namespace,
            selector,
            listed,
            &mut views,
            |d| d.spec.as_ref().map(|s| &s.template),
        );
        views
    }
}

fn collect<K>(
    store: &Store<K>,
    kind: WorkloadKind,
    namespace: &str,
    selector: Option<&Selector>,
    listed: &BTreeSet<ConfigRef>,
    out: &mut Vec<WorkloadView>,
    template: impl Fn(&K) -> Option<&PodTemplateSpec>,
) where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let candidates: Vec<Arc<K>> = store.state_filter(|w| {
        w.meta().namespace.as_deref() == Some(namespace)
            && w.meta().deletion_timestamp.is_none()
            && selector.is_none_or(|s| s.matches(w.labels()))
    });
    for w in candidates {
        let Some(template) = template(&w) else {
            continue;
        };
        let uses: BTreeSet<ConfigRef> = template
            .spec
            .as_ref()
            .map(usage::used_by)
            .unwrap_or_default()
            .intersection(listed)
            .cloned()
            .collect();
        if uses.is_empty() {
            continue;
        }
        let annotation = template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(HASH_ANNOTATION))
            .cloned();
        out.push(WorkloadView {
            kind,
            name: w.name_any(),
            uses,
            annotation,
        });
    }
}

/// Restarts a workload the way `kubectl rollout restart` does, but with the configuration
/// hash as the annotation value: patching the same hash twice changes nothing.
pub async fn restart(
    client: &kube::Client,
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
    hash: &str,
    manager: &str,
) -> Result<(), kube::Error> {
    let patch =
        json!({"spec": {"template": {"metadata": {"annotations": {HASH_ANNOTATION: hash}}}}});
    let params = PatchParams {
        field_manager: Some(manager.to_owned()),
        ..PatchParams::default()
    };
    let patch = Patch::Merge(&patch);
    match kind {
        WorkloadKind::Deployment => {
            Api::<Deployment>::namespaced(client.clone(), namespace)
                .patch(name, &params, &patch)
                .await?;
        }
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(client.clone(), namespace)
                .patch(name, &params, &patch)
                .await?;
        }
        WorkloadKind::DaemonSet => {
            Api::<DaemonSet>::namespaced(client.clone(), namespace)
                .patch(name, &params, &patch)
                .await?;
        }
    }
    Ok(())
}

/// A reference to a workload, for events.
pub fn object_ref(
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some(kind.as_str().into()),
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        ..Default::default()
    }
}

//! The operator process: the reconcile loop on operator-core, triggered by Collectors and by
//! any change of an object of their releases (helm's labels and annotations), so hand edits
//! and deletions are repaired promptly.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use kube::api::{Api, PartialObjectMeta};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use operator_core::{Runtime, Settings};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::reconcile::{self, Context};
use crate::resource::Collector;

/// Why the per-cluster values file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// It cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a YAML mapping of cluster names to values.
    #[error("{path} is not a YAML mapping of cluster names to values mappings")]
    Format {
        /// The file.
        path: String,
    },
}

/// Reads the per-cluster values file: `{<cluster>: {<values>}}`.
pub fn load_overlays(path: &Path) -> Result<BTreeMap<String, Value>, OverlayError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| OverlayError::Read {
        path: name.clone(),
        source,
    })?;
    let map: BTreeMap<String, Value> =
        serde_saphyr::from_str(&text).map_err(|_| OverlayError::Format { path: name.clone() })?;
    if map.values().any(|v| !v.is_object()) {
        return Err(OverlayError::Format { path: name });
    }
    Ok(map)
}

/// Helm's annotation naming an object's release.
const RELEASE_ANNOTATION: &str = "meta.helm.sh/release-name";
/// The label helm puts on every object it manages.
const HELM_MANAGED: &str = "app.kubernetes.io/managed-by=Helm";

/// The Collectors whose release `obj` belongs to (by helm's release annotation and the
/// object's namespace, matched against the Collectors the controller knows).
fn owners<K: Resource>(
    obj: &K,
    collectors: &Store<DeserializeGuard<Collector>>,
) -> Vec<ObjectRef<DeserializeGuard<Collector>>> {
    let meta = obj.meta();
    let (Some(release), Some(namespace)) = (
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(RELEASE_ANNOTATION)),
        meta.namespace.as_deref(),
    ) else {
        return Vec::new();
    };
    collectors
        .state()
        .iter()
        .filter_map(|guard| guard.0.as_ref().ok())
        .filter(|c| releases_to(c, release, namespace))
        .map(|c| ObjectRef::new(&c.name_any()))
        .collect()
}

/// Whether `c`'s release is `release` in `namespace`, as the status records it or as its spec
/// names it.
fn releases_to(c: &Collector, release: &str, namespace: &str) -> bool {
    let recorded = c.status.as_ref().is_some_and(|s| {
        s.release_name.as_deref() == Some(release)
            && s.target_namespace.as_deref() == Some(namespace)
    });
    recorded
        || (format!("{}-{}", c.spec.collector.name, c.spec.tenant.instance) == release
            && c.spec.tenant.reference.to_lowercase() == namespace)
}

/// Adds a metadata-only watch of the helm-managed objects of kind `K`: a change or deletion
/// of one triggers its Collector's reconcile, which finds and repairs drift. Only metadata is
/// cached: the operator never holds the releases' Secrets.
fn watch_helm_objects<K>(
    controller: Controller<DeserializeGuard<Collector>>,
    client: &Client,
) -> Controller<DeserializeGuard<Collector>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let store = controller.store();
    let stream = watcher(
        Api::<PartialObjectMeta<K>>::all(client.clone()),
        watcher::Config::default().labels(HELM_MANAGED),
    )
    .default_backoff()
    .touched_objects();
    controller.watches_stream(stream, move |o: PartialObjectMeta<K>| owners(&o, &store))
}

/// Runs the operator until the runtime shuts down.
///
/// With `--tenant-service-account` the operator does not watch Secrets (listing them, even
/// their metadata, needs the right to read every Secret): a release's Secrets are checked at
/// each reconcile and at the periodic re-check instead.
pub async fn run(runtime: Arc<Runtime>, ctx: Context, settings: Settings) {
    let watch_secrets = ctx.tenant_service_account.is_none();
    let client = runtime.client.clone();
    let watch_client = client.clone();
    operator_core::run(
        runtime,
        Api::<DeserializeGuard<Collector>>::all(client),
        watcher::Config::default(),
        move |controller| {
            let c = &watch_client;
            let controller = watch_helm_objects::<Deployment>(controller, c);
            let controller = watch_helm_objects::<DaemonSet>(controller, c);
            let controller = watch_helm_objects::<StatefulSet>(controller, c);
            let controller = watch_helm_objects::<Service>(controller, c);
            let controller = watch_helm_objects::<ConfigMap>(controller, c);
            let controller = watch_helm_objects::<ServiceAccount>(controller, c);
            if watch_secrets {
                watch_helm_objects::<Secret>(controller, c)
            } else {
                controller
            }
        },
        reconcile::reconcile,
        Arc::new(ctx),
        settings,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlays_must_map_clusters_to_values() {
        let dir = std::env::temp_dir().join(format!("collector-overlay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.yaml");
        std::fs::write(&good, "dev:\n  image:\n    repository: registry.dev/c\n").unwrap();
        let map = load_overlays(&good).unwrap();
        assert_eq!(map["dev"]["image"]["repository"], "registry.dev/c");
        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, "dev: 3\n").unwrap();
        assert!(matches!(
            load_overlays(&bad),
            Err(OverlayError::Format { .. })
        ));
        assert!(matches!(
            load_overlays(&dir.join("missing.yaml")),
            Err(OverlayError::Read { .. })
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}

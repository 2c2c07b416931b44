//! The operator process: the reconcile loop on operator-core, triggered by Collectors and by
//! any change of an object they applied (found by the ownership labels), so hand edits and
//! deletions are corrected promptly.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use kube::Resource;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use operator_core::apply::{INSTANCE_LABEL, MANAGED_BY_LABEL};
use operator_core::{Runtime, Settings};
use serde_json::Value;

use crate::reconcile::{self, Context, OPERATOR};
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

/// The Collector that applied `obj`, from its ownership labels.
fn owner<K: Resource>(obj: &K) -> Option<ObjectRef<DeserializeGuard<Collector>>> {
    let labels = obj.meta().labels.as_ref()?;
    (labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(OPERATOR))
        .then(|| labels.get(INSTANCE_LABEL))
        .flatten()
        .map(|name| ObjectRef::new(name))
}

/// Runs the operator until the runtime shuts down.
pub async fn run(runtime: Arc<Runtime>, overlays: BTreeMap<String, Value>, settings: Settings) {
    let client = runtime.client.clone();
    let ctx = Arc::new(Context {
        runtime: runtime.clone(),
        overlays,
    });
    let watch_client = client.clone();
    operator_core::run(
        runtime,
        Api::<DeserializeGuard<Collector>>::all(client),
        watcher::Config::default(),
        move |controller| {
            let managed =
                watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={OPERATOR}"));
            let c = &watch_client;
            controller
                .watches(Api::<Deployment>::all(c.clone()), managed.clone(), |o| {
                    owner(&o)
                })
                .watches(Api::<Service>::all(c.clone()), managed.clone(), |o| {
                    owner(&o)
                })
                .watches(Api::<Secret>::all(c.clone()), managed.clone(), |o| {
                    owner(&o)
                })
                .watches(Api::<ServiceAccount>::all(c.clone()), managed, |o| {
                    owner(&o)
                })
        },
        reconcile::reconcile,
        ctx,
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

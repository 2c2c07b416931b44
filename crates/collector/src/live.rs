//! The release's objects as they are in the cluster: which are missing or were changed by hand
//! (drift), and which workloads are not ready yet.
//!
//! Drift is found the way Flux's helm-controller finds it: every object of the release's
//! manifest (`helm get manifest`) is read, and then server-side applied as a dry run with
//! helm's field manager. If the object the API server would store differs from the live one,
//! someone changed a field the chart sets. Fields the chart does not set (an annotation a user
//! added) are not drift. Dry runs persist nothing.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::Scope;
use kube::{Client, ResourceExt};
use serde_json::Value;

/// helm's server-side apply field manager (the binary's name).
pub const HELM_FIELD_MANAGER: &str = "helm";

/// What the objects of a release look like.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Observed {
    /// `Kind/name missing` or `Kind/name changed`, for each object that drifted.
    pub drift: Vec<String>,
    /// `Kind/name` of each workload not ready yet.
    pub not_ready: Vec<String>,
}

/// Why the objects could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The manifest is not YAML objects.
    #[error("the release manifest cannot be read: {0}")]
    Manifest(String),
    /// An API call failed.
    #[error("checking {object}: {source}")]
    Kube {
        /// The object.
        object: String,
        /// Why.
        source: kube::Error,
    },
}

/// Reads objects and remembers which API resource each kind is.
pub struct Inspector {
    config: kube::Config,
    client: Client,
    /// Clients impersonating a tenant's ServiceAccount, by user name.
    impersonating: Mutex<HashMap<String, Client>>,
    kinds: Mutex<HashMap<GroupVersionKind, (ApiResource, Scope)>>,
}

/// The objects in a manifest of YAML documents (empty documents skipped).
pub fn parse_manifest(manifest: &str) -> Result<Vec<DynamicObject>, LiveError> {
    let mut objects = Vec::new();
    for doc in serde_saphyr::from_multiple::<Value>(manifest)
        .map_err(|e| LiveError::Manifest(e.to_string()))?
    {
        if doc.is_null() {
            continue;
        }
        let object: DynamicObject =
            serde_json::from_value(doc).map_err(|e| LiveError::Manifest(e.to_string()))?;
        objects.push(object);
    }
    Ok(objects)
}

impl Inspector {
    /// An inspector connecting with `config` (impersonating a tenant when asked to).
    pub fn new(config: kube::Config) -> Result<Self, kube::Error> {
        Ok(Self {
            client: Client::try_from(config.clone())?,
            config,
            impersonating: Mutex::new(HashMap::new()),
            kinds: Mutex::new(HashMap::new()),
        })
    }

    /// The client acting as `user`, or as the operator.
    fn client_as(&self, user: Option<&str>) -> Result<Client, kube::Error> {
        let Some(user) = user else {
            return Ok(self.client.clone());
        };
        let mut clients = self.impersonating.lock().expect("not poisoned");
        if let Some(client) = clients.get(user) {
            return Ok(client.clone());
        }
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(user.to_owned());
        let client = Client::try_from(config)?;
        clients.insert(user.to_owned(), client.clone());
        Ok(client)
    }

    /// Checks every object of `manifest` (release `release`, in `namespace`), acting as
    /// `as_user` (a tenant's ServiceAccount) when given.
    pub async fn observe(
        &self,
        manifest: &str,
        release: &str,
        namespace: &str,
        as_user: Option<&str>,
    ) -> Result<Observed, LiveError> {
        let client = self.client_as(as_user).map_err(|source| LiveError::Kube {
            object: format!("a client acting as {}", as_user.unwrap_or("the operator")),
            source,
        })?;
        let mut observed = Observed::default();
        for mut object in parse_manifest(manifest)? {
            mark_as_helm_does(&mut object, release, namespace);
            let Some(types) = object.types.clone() else {
                continue;
            };
            let gvk = GroupVersionKind::try_from(&types)
                .map_err(|e| LiveError::Manifest(e.to_string()))?;
            let label = format!("{}/{}", gvk.kind, object.name_any());
            let (ar, scope) = self
                .resource(&gvk)
                .await
                .map_err(|source| LiveError::Kube {
                    object: label.clone(),
                    source,
                })?;
            let api: Api<DynamicObject> = match scope {
                Scope::Namespaced => Api::namespaced_with(
                    client.clone(),
                    object.namespace().as_deref().unwrap_or(namespace),
                    &ar,
                ),
                Scope::Cluster => Api::all_with(client.clone(), &ar),
            };
            let kube_err = |source| LiveError::Kube {
                object: label.clone(),
                source,
            };
            let Some(live) = api.get_opt(&object.name_any()).await.map_err(kube_err)? else {
                observed.drift.push(format!("{label} missing"));
                continue;
            };
            let params = PatchParams::apply(HELM_FIELD_MANAGER).force().dry_run();
            let would_be = api
                .patch(&object.name_any(), &params, &Patch::Apply(&object))
                .await
                .map_err(kube_err)?;
            if comparable(&live) != comparable(&would_be) {
                observed.drift.push(format!("{label} changed"));
            }
            if !is_ready(&gvk.kind, &live.data, live.metadata.generation) {
                observed.not_ready.push(label);
            }
        }
        Ok(observed)
    }

    async fn resource(&self, gvk: &GroupVersionKind) -> Result<(ApiResource, Scope), kube::Error> {
        if let Some(found) = self.kinds.lock().expect("not poisoned").get(gvk) {
            return Ok(found.clone());
        }
        let (ar, caps) = kube::discovery::pinned_kind(&self.client, gvk).await?;
        let found = (ar, caps.scope);
        self.kinds
            .lock()
            .expect("not poisoned")
            .insert(gvk.clone(), found.clone());
        Ok(found)
    }
}

/// Adds the ownership metadata helm adds when it applies an object (it is not in the stored
/// manifest); without it the dry run would remove it and every object would look changed.
fn mark_as_helm_does(object: &mut DynamicObject, release: &str, namespace: &str) {
    object
        .labels_mut()
        .insert("app.kubernetes.io/managed-by".into(), "Helm".into());
    let annotations = object.annotations_mut();
    annotations.insert("meta.helm.sh/release-name".into(), release.into());
    annotations.insert("meta.helm.sh/release-namespace".into(), namespace.into());
}

/// An object without what changes on every write and is nobody's intent.
fn comparable(o: &DynamicObject) -> Value {
    let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for volatile in ["managedFields", "resourceVersion", "generation"] {
            meta.remove(volatile);
        }
    }
    if let Some(obj) = v.as_object_mut() {
        obj.remove("status");
    }
    v
}

/// Whether a workload is rolled out and available (other kinds are ready once they exist).
pub fn is_ready(kind: &str, data: &Value, generation: Option<i64>) -> bool {
    let int = |path: &str| data.pointer(path).and_then(Value::as_i64);
    let observed = int("/status/observedGeneration");
    let current = observed.is_some() && observed >= generation;
    match kind {
        "Deployment" | "StatefulSet" => {
            let wanted = int("/spec/replicas").unwrap_or(1);
            let available = if kind == "Deployment" {
                int("/status/availableReplicas")
            } else {
                int("/status/readyReplicas")
            };
            current
                && available.unwrap_or(0) >= wanted
                && int("/status/updatedReplicas").unwrap_or(0) >= wanted
        }
        "DaemonSet" => {
            let desired = int("/status/desiredNumberScheduled").unwrap_or(0);
            current
                && int("/status/numberReady").unwrap_or(0) >= desired
                && int("/status/updatedNumberScheduled").unwrap_or(0) >= desired
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn manifests_are_split_into_objects() {
        let manifest = "---\n# Source: c/templates/sa.yaml\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n---\n# Source: c/templates/empty.yaml\n---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: b\n";
        let objects = parse_manifest(manifest).unwrap();
        let names: Vec<_> = objects
            .iter()
            .map(|o| (o.types.as_ref().unwrap().kind.clone(), o.name_any()))
            .collect();
        assert_eq!(
            names,
            [
                ("ServiceAccount".to_owned(), "a".to_owned()),
                ("DaemonSet".to_owned(), "b".to_owned())
            ]
        );
        assert!(parse_manifest("a: [unclosed").is_err());
    }

    #[test]
    fn workloads_are_ready_when_rolled_out() {
        let deployment = json!({"spec": {"replicas": 2},
            "status": {"observedGeneration": 3, "availableReplicas": 2, "updatedReplicas": 2}});
        assert!(is_ready("Deployment", &deployment, Some(3)));
        assert!(
            !is_ready("Deployment", &deployment, Some(4)),
            "not observed yet"
        );
        let rolling = json!({"spec": {"replicas": 2},
            "status": {"observedGeneration": 3, "availableReplicas": 2, "updatedReplicas": 1}});
        assert!(!is_ready("Deployment", &rolling, Some(3)));
        let daemonset = json!({"status": {"observedGeneration": 1, "desiredNumberScheduled": 3,
            "numberReady": 3, "updatedNumberScheduled": 3}});
        assert!(is_ready("DaemonSet", &daemonset, Some(1)));
        let starting = json!({"status": {"observedGeneration": 1, "desiredNumberScheduled": 3,
            "numberReady": 1, "updatedNumberScheduled": 3}});
        assert!(!is_ready("DaemonSet", &starting, Some(1)));
        assert!(is_ready("ConfigMap", &json!({}), None));
    }

    #[test]
    fn only_intent_is_compared() {
        let a: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "resourceVersion": "1", "managedFields": []},
            "data": {"k": "v"}}))
        .unwrap();
        let mut b = a.clone();
        b.metadata.resource_version = Some("2".into());
        b.metadata.managed_fields = None;
        assert_eq!(comparable(&a), comparable(&b));
        b.data["data"]["k"] = json!("changed");
        assert_ne!(comparable(&a), comparable(&b));
    }
}

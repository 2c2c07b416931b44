//! The `AppConfig` custom resource: which ConfigMaps and Secrets to follow, and (in status) the
//! hashes last seen and acted on.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Restart the workloads that use these ConfigMaps and Secrets when their data changes.
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "appconfig.kubecrew.io",
    version = "v1alpha1",
    kind = "AppConfig",
    namespaced,
    status = "AppConfigStatus",
    shortname = "appcfg",
    printcolumn = r#"{"name":"ConfigMaps","type":"string","jsonPath":".spec.configMaps"}"#,
    printcolumn = r#"{"name":"Secrets","type":"string","jsonPath":".spec.secrets"}"#,
    printcolumn = r#"{"name":"Workloads","type":"integer","jsonPath":".status.workloadCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AppConfigSpec {
    /// ConfigMaps (in this namespace) to follow.
    #[serde(default)]
    pub config_maps: Vec<String>,
    /// Secrets (in this namespace) to follow.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Only workloads (Deployments, StatefulSets, DaemonSets) with these labels; all that use
    /// a listed object when not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<LabelSelector>,
    /// Restart only when one of these keys of an object changes (objects not named here: any
    /// key).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyFilter>,
    /// Changes within this window after the first one are coalesced into one restart per
    /// workload, e.g. `5s`, `500ms`, `0s` (restart at once).
    #[serde(default = "default_debounce")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h)$"))]
    pub debounce: String,
}

fn default_debounce() -> String {
    "5s".into()
}

/// The keys of one object that matter.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyFilter {
    /// `ConfigMap` or `Secret`.
    pub kind: ConfigKind,
    /// Its name.
    pub name: String,
    /// The keys (of `data` or `binaryData`).
    #[schemars(length(min = 1))]
    pub keys: Vec<String>,
}

/// The kinds of configuration objects followed.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
pub enum ConfigKind {
    /// A ConfigMap.
    ConfigMap,
    /// A Secret.
    Secret,
}

impl ConfigKind {
    /// The kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::ConfigMap => "ConfigMap",
            ConfigKind::Secret => "Secret",
        }
    }
}

/// A configuration object: kind and name (the namespace is the AppConfig's).
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct ConfigRef {
    /// ConfigMap or Secret.
    pub kind: ConfigKind,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for ConfigRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.name)
    }
}

/// The kinds of workloads restarted.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
pub enum WorkloadKind {
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 DaemonSet.
    DaemonSet,
}

impl WorkloadKind {
    /// The kind name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
        }
    }
}

/// What the operator saw and did.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppConfigStatus {
    /// The listed objects and the hash of their (selected) data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<ObservedConfig>,
    /// The workloads using them, and the configuration they run with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<ObservedWorkload>,
    /// How many workloads use the listed objects.
    #[serde(default)]
    pub workload_count: i32,
    /// When a change not yet acted on was first seen (the debounce window starts here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_since: Option<String>,
    /// Ready and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A listed object as last seen.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedConfig {
    /// The object.
    #[serde(flatten)]
    pub object: ConfigRef,
    /// SHA-256 of its selected data (never the data); kept from the last sighting while it is
    /// missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Whether it exists.
    pub present: bool,
}

/// A workload using listed objects.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedWorkload {
    /// Deployment, StatefulSet or DaemonSet.
    pub kind: WorkloadKind,
    /// Its name.
    pub name: String,
    /// The listed objects it uses, with the data hash its pods run with.
    pub uses: Vec<UsedConfig>,
    /// The configuration hash its pods run with.
    pub hash: String,
    /// When the operator last restarted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
}

/// A listed object a workload uses, and the data hash the workload's pods run with.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsedConfig {
    /// The object.
    #[serde(flatten)]
    pub object: ConfigRef,
    /// Its data hash.
    pub hash: String,
}

impl AppConfig {
    /// The listed objects, ConfigMaps first, each once.
    pub fn listed(&self) -> Vec<ConfigRef> {
        let maps = self.spec.config_maps.iter().map(|name| ConfigRef {
            kind: ConfigKind::ConfigMap,
            name: name.clone(),
        });
        let secrets = self.spec.secrets.iter().map(|name| ConfigRef {
            kind: ConfigKind::Secret,
            name: name.clone(),
        });
        let mut all: Vec<ConfigRef> = maps.chain(secrets).collect();
        all.sort();
        all.dedup();
        all
    }

    /// The keys that matter for `object`, if restricted.
    pub fn keys_of(&self, object: &ConfigRef) -> Option<&[String]> {
        self.spec
            .keys
            .iter()
            .find(|k| k.kind == object.kind && k.name == object.name)
            .map(|k| k.keys.as_slice())
    }

    /// Whether `object` is listed.
    pub fn lists(&self, kind: ConfigKind, name: &str) -> bool {
        match kind {
            ConfigKind::ConfigMap => self.spec.config_maps.iter().any(|n| n == name),
            ConfigKind::Secret => self.spec.secrets.iter().any(|n| n == name),
        }
    }
}

impl operator_core::status::ConditionedStatus for AppConfigStatus {
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }

    fn set_observed_generation(&mut self, generation: Option<i64>) {
        self.observed_generation = generation;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use serde_json::json;

    fn parse(spec: serde_json::Value) -> AppConfig {
        serde_json::from_value(json!({
            "apiVersion": "appconfig.kubecrew.io/v1alpha1",
            "kind": "AppConfig",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn listed_objects_are_sorted_and_unique() {
        let app = parse(json!({"configMaps": ["b", "a", "b"], "secrets": ["s"]}));
        let names: Vec<String> = app.listed().iter().map(ToString::to_string).collect();
        assert_eq!(names, ["ConfigMap a", "ConfigMap b", "Secret s"]);
        assert_eq!(app.spec.debounce, "5s");
        assert!(app.lists(ConfigKind::Secret, "s"));
        assert!(!app.lists(ConfigKind::ConfigMap, "s"));
    }

    #[test]
    fn key_filters_are_per_object() {
        let app = parse(json!({"configMaps": ["a"], "secrets": ["a"],
            "keys": [{"kind": "Secret", "name": "a", "keys": ["token"]}]}));
        let secret = ConfigRef {
            kind: ConfigKind::Secret,
            name: "a".into(),
        };
        let map = ConfigRef {
            kind: ConfigKind::ConfigMap,
            name: "a".into(),
        };
        assert_eq!(app.keys_of(&secret), Some(&["token".to_owned()][..]));
        assert_eq!(app.keys_of(&map), None);
    }

    #[test]
    fn the_crd_has_status_and_columns() {
        let crd = serde_json::to_value(AppConfig::crd()).unwrap();
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["subresources"]["status"], json!({}));
        assert_eq!(
            version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["debounce"]["default"],
            "5s"
        );
        assert_eq!(crd["spec"]["names"]["shortNames"], json!(["appcfg"]));
    }
}

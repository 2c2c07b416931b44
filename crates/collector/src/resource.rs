//! The `Collector` custom resource (cluster-scoped, the original operator's field names).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use operator_core::apply::Inventory;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A collector installed for a tenant.
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "collector.kubecrew.io",
    version = "v1alpha1",
    kind = "Collector",
    status = "CollectorStatus",
    printcolumn = r#"{"name":"Tenant","type":"string","jsonPath":".spec.tenant.reference"}"#,
    printcolumn = r#"{"name":"Collector","type":"string","jsonPath":".spec.collector.name"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".spec.collector.version"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CollectorSpec {
    /// Which collector, which version, and its values.
    pub collector: CollectorRef,
    /// Whom it is installed for.
    pub tenant: Tenant,
    /// The cluster, selecting the operator's per-cluster values overlay.
    #[serde(default)]
    pub cluster: String,
}

/// The collector to install.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CollectorRef {
    /// The collector's name (also its image name).
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Its version (the image tag unless the values override it).
    #[schemars(length(min = 1, max = 128))]
    pub version: String,
    /// Base64 of a YAML document of values (see docs/collector.md).
    #[serde(default)]
    pub configuration: String,
}

/// The tenant.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    /// The tenant's id.
    pub id: String,
    /// The tenant's reference: lower-cased, the namespace the collector goes to.
    pub reference: String,
    /// The instance: with the collector's name, the release name.
    pub instance: String,
}

/// What was applied, and how it went.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CollectorStatus {
    /// Ready, Reconciling, Stalled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `<collector.name>-<tenant.instance>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_name: Option<String>,
    /// The namespace the objects are in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
    /// The version deployed last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_version: Option<String>,
    /// SHA-256 of the collector's config file as deployed (never the content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Every object applied.
    #[serde(default)]
    pub inventory: Inventory,
    /// The last revisions, newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<Revision>,
    /// Failed reconciles in a row.
    #[serde(default)]
    pub failures: u32,
}

/// One deployed (or failed) revision.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    /// The version.
    pub version: String,
    /// The config hash.
    pub config_hash: String,
    /// When (RFC 3339).
    pub time: String,
    /// `Deployed` or the reason it failed.
    pub result: String,
}

impl operator_core::status::ConditionedStatus for CollectorStatus {
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }

    fn set_observed_generation(&mut self, generation: Option<i64>) {
        self.observed_generation = generation;
    }
}

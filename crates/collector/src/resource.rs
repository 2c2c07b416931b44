//! The `Collector` custom resource (cluster-scoped, the original operator's field names).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
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
    printcolumn = r#"{"name":"Revision","type":"integer","jsonPath":".status.helmRevision"}"#,
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

/// The collector to install: the chart `name` at exactly `version` from the operator's chart
/// repository, unless `chart` says otherwise.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CollectorRef {
    /// The collector's name: the chart's name (unless `chart.name` is set) and the release
    /// name's prefix.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// The chart version, exactly (a semantic version, not a range).
    #[schemars(length(min = 1, max = 128))]
    pub version: String,
    /// Base64 of a YAML mapping: the release's values, on top of the cluster's overlay.
    #[serde(default)]
    pub configuration: String,
    /// Where this collector's chart comes from, when not the operator's repository or name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<ChartOverride>,
}

/// Overrides of the chart source for one Collector.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChartOverride {
    /// An HTTP(S) chart repository (serving index.yaml) or an `oci://` registry path. The
    /// operator's repository credentials are used only for the operator's repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub repository: Option<String>,
    /// The chart's name, when it is not the collector's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 250))]
    pub name: Option<String>,
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

/// The release, and how the last attempts went. Never holds values: only their hash.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CollectorStatus {
    /// Ready, Reconciling, Stalled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The Helm release: `<collector.name>-<tenant.instance>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_name: Option<String>,
    /// The namespace the release is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
    /// The chart of the deployed release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<String>,
    /// The chart version of the deployed release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_version: Option<String>,
    /// The Helm revision of the deployed release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm_revision: Option<i64>,
    /// SHA-256 of the deployed values in canonical JSON (never the values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_hash: Option<String>,
    /// The last attempts to change the release, newest last (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Attempt>,
    /// Failed reconciles in a row.
    #[serde(default)]
    pub failures: u32,
}

/// One attempt to install, upgrade, roll back or uninstall the release.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// When it finished (RFC 3339).
    pub time: String,
    /// What was tried: `Install`, `Upgrade`, `Rollback`.
    pub action: String,
    /// The chart tried.
    pub chart: String,
    /// The chart version tried.
    pub version: String,
    /// The hash of the values tried.
    pub values_hash: String,
    /// `Succeeded` or `Failed`.
    pub outcome: String,
    /// Why it was tried, or why it failed (values redacted).
    pub message: String,
}

impl operator_core::status::ConditionedStatus for CollectorStatus {
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }

    fn set_observed_generation(&mut self, generation: Option<i64>) {
        self.observed_generation = generation;
    }
}

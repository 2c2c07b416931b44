//! The `KindCustomHttp` custom resource, with the original operator's field names.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use operator_core::apply::Inventory;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The peer server image used when `spec.image` is not set.
pub const DEFAULT_IMAGE: &str = concat!("ghcr.io/kubecrew/http-peer:", env!("CARGO_PKG_VERSION"));

/// A group of peer servers that ping each other.
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "peering.kubecrew.io",
    version = "v1alpha1",
    kind = "KindCustomHttp",
    namespaced,
    status = "KindCustomHttpStatus",
    shortname = "kch",
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicaCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Port","type":"integer","jsonPath":".spec.port"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KindCustomHttpSpec {
    /// Pods of the peer server.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replica_count: i32,
    /// Port the server listens on, and the Service's port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// The ConfigMap's data; key `hostports` lists the destinations, one `host,port` per line.
    #[serde(default)]
    pub config_map_data: BTreeMap<String, String>,
    /// Container image of the peer server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// How often each pod pings every destination, e.g. `30s`.
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h)$"))]
    pub ping_interval: String,
    /// How long one ping may take, e.g. `2s`.
    #[serde(default = "default_timeout")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h)$"))]
    pub ping_timeout: String,
}

fn default_replicas() -> i32 {
    1
}

fn default_interval() -> String {
    "30s".into()
}

fn default_timeout() -> String {
    "2s".into()
}

/// What the operator observed.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindCustomHttpStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods of the Deployment.
    #[serde(default)]
    pub replicas: i32,
    /// Ready pods of the Deployment.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Ready, and Stalled for a spec that cannot be applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The children applied last time (for pruning).
    #[serde(default)]
    pub inventory: Inventory,
}

impl operator_core::status::ConditionedStatus for KindCustomHttpStatus {
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }

    fn set_observed_generation(&mut self, generation: Option<i64>) {
        self.observed_generation = generation;
    }
}

//! The nes custom resources (feature `crd`), used by the control plane: `NetworkConfiguration`
//! (one per pod: the merged desired configuration and what the pod's agent answered) and
//! `NetworkCare` (a subscription: which pods, which changes, where to deliver reports).
//!
//! The agent itself does not use them (it never talks to the API server), which is why they sit
//! behind a feature: the sidecar does not compile kube.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{Address, Route, VlanLink};
use crate::items::ItemState;

/// Kinds of change a `NetworkCare` filters on (defined with the reports that carry them).
pub use crate::report::ChangeKind;

/// The API group of the nes resources.
pub const GROUP: &str = "nes.kubecrew.io";

/// Condition types of a `NetworkConfiguration`.
pub mod conditions {
    /// Every item is applied in the pod's current agent.
    pub const AVAILABLE: &str = "Available";
    /// The manager is pushing a new spec, or waiting for the pod or its agent.
    pub const PROGRESSING: &str = "Progressing";
    /// Some items are pending or failed.
    pub const DEGRADED: &str = "Degraded";
}

/// The desired network configuration of one pod: the merge of every request that pod made.
/// Named after the pod and owned by the pod's StatefulSet, so it outlives pod restarts (the
/// manager re-applies it to the new pod) and is garbage-collected with the StatefulSet.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "nes.kubecrew.io",
    version = "v1alpha1",
    kind = "NetworkConfiguration",
    namespaced,
    status = "NetworkConfigurationStatus",
    shortname = "netconf",
    printcolumn = r#"{"name":"Pod","type":"string","jsonPath":".spec.pod"}"#,
    printcolumn = r#"{"name":"Available","type":"string","jsonPath":".status.conditions[?(@.type==\"Available\")].status"}"#,
    printcolumn = r#"{"name":"Applied","type":"integer","jsonPath":".status.appliedGeneration"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfigurationSpec {
    // Each list is capped at `MAX_ITEMS_PER_KIND` (1,000) in the schema too, so the API server
    // refuses an oversized resource before anything reads it.
    /// The pod this configuration is for (in the resource's namespace).
    pub pod: String,
    /// VLAN links to create (at most 1,000).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::MAX_ITEMS_PER_KIND))]
    pub vlans: Vec<VlanLink>,
    /// Addresses to add (at most 1,000).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::MAX_ITEMS_PER_KIND))]
    pub addresses: Vec<Address>,
    /// Routes to add (at most 1,000).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::MAX_ITEMS_PER_KIND))]
    pub routes: Vec<Route>,
}

/// What the pod's agent answered.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkConfigurationStatus {
    /// The resource generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The resource generation last applied by the agent (the agent's configuration generation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_generation: Option<i64>,
    /// The boot id of the agent that applied it; a new one means the agent restarted and the
    /// configuration must be pushed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The uid of the pod it was applied to; a new one means the pod was re-created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// When every item was last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_update_time: Option<Time>,
    /// One result per item, in apply order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<ItemStatus>,
    /// Available, Progressing, Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The result of one item, flattened for the CRD schema (a structural schema has no tagged
/// unions): `item` is the item's display form (`address 10.1.2.3/24 on eth0`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemStatus {
    /// The item, as `ItemKey` displays it.
    pub item: String,
    /// Applied, Pending or Failed.
    pub state: ItemState,
    /// Why it is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl From<&crate::items::ItemResult> for ItemStatus {
    fn from(result: &crate::items::ItemResult) -> Self {
        ItemStatus {
            item: result.item.to_string(),
            state: result.state,
            message: result.message.clone(),
        }
    }
}

/// A subscription to the network status of some pods, delivered to an HTTP callback. Owned by
/// the subscribing application's workload, so it goes when the application does.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "nes.kubecrew.io",
    version = "v1alpha1",
    kind = "NetworkCare",
    namespaced,
    status = "NetworkCareStatus",
    shortname = "netcare",
    printcolumn = r#"{"name":"Callback","type":"string","jsonPath":".spec.callback.url"}"#,
    printcolumn = r#"{"name":"Delivered","type":"integer","jsonPath":".status.deliveries"}"#,
    printcolumn = r#"{"name":"Failures","type":"integer","jsonPath":".status.failures"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NetworkCareSpec {
    /// The pods to follow, by name or label selector (either or both; at least one).
    pub pods: PodSelection,
    /// Which changes to report.
    #[serde(default)]
    pub filter: StatusFilter,
    /// Where to deliver reports.
    pub callback: Callback,
}

/// Pods by name and/or selector, in the resource's namespace.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodSelection {
    /// Pod names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// A label selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// Which status changes matter.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusFilter {
    /// Interfaces to follow; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// Kinds of change; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<ChangeKind>,
}

/// An HTTP callback.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Callback {
    /// The URL reports are POSTed to (JSON).
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: String,
}

/// Delivery outcomes.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkCareStatus {
    /// The resource generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When a report was last delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery_time: Option<Time>,
    /// Reports delivered.
    #[serde(default)]
    pub deliveries: i64,
    /// Deliveries that failed (each retried with backoff).
    #[serde(default)]
    pub failures: i64,
    /// The last delivery error (HTTP status or connection error; never a report's content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Ready (the callback answers), Degraded (deliveries failing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crds_are_namespaced_v1alpha1_in_the_nes_group() {
        for crd in [NetworkConfiguration::crd(), NetworkCare::crd()] {
            assert_eq!(crd.spec.group, GROUP);
            assert_eq!(crd.spec.scope, "Namespaced");
            assert_eq!(crd.spec.versions[0].name, "v1alpha1");
            assert!(
                crd.spec.versions[0].subresources.is_some(),
                "status subresource"
            );
        }
    }

    #[test]
    fn schemas_are_structural_no_unions_or_closed_objects() {
        // The API server refuses oneOf/anyOf without a common structure, and properties next to
        // additionalProperties=false: the item types must come out as plain objects.
        for crd in [NetworkConfiguration::crd(), NetworkCare::crd()] {
            let schema = serde_json::to_string(&crd.spec.versions[0].schema).unwrap();
            assert!(!schema.contains("\"oneOf\""), "{schema}");
            assert!(
                !schema.contains("\"additionalProperties\":false"),
                "{schema}"
            );
        }
    }

    #[test]
    fn item_status_flattens_the_key() {
        let result = crate::items::ItemResult {
            item: crate::items::ItemKey::Address {
                interface: "eth0".into(),
                cidr: "10.1.2.3/24".into(),
            },
            state: ItemState::Pending,
            message: Some("interface \"eth0\" does not exist yet".into()),
        };
        let status = ItemStatus::from(&result);
        assert_eq!(status.item, "address 10.1.2.3/24 on eth0");
        assert_eq!(status.state, ItemState::Pending);
    }
}

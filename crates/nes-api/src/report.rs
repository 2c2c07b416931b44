//! What nes-manager delivers to a `NetworkCare` callback: a [`Report`] of the changes between two
//! consecutive status snapshots of one pod's agent, with the pod's current status.
//!
//! Plain serde/schemars types (no kube), so a subscriber can decode reports with this crate
//! without the `crd` feature.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::items::ItemResult;
use crate::status::{AddressStatus, BootId, LinkStatus, RouteStatus, Status};

/// A kind of status change.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum ChangeKind {
    /// A link's operstate, MTU or hardware address changed, or a link came or went.
    Link,
    /// An address came or went.
    Address,
    /// A route came or went.
    Route,
    /// An item's result changed.
    Result,
}

/// Names a `NetworkCare` resource.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CareRef {
    /// Its namespace (also the namespace of the pods it follows).
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// One report: the changes of one pod's network since the previous report (or since the
/// subscription started following this pod), and its status now.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The subscription this report is for.
    pub network_care: CareRef,
    /// The pod whose network changed (in the subscription's namespace).
    pub pod: String,
    /// The pod's uid: a new one means the pod was re-created under the same name.
    pub pod_uid: String,
    /// The agent run that reported the change.
    pub boot_id: BootId,
    /// When the manager saw the change, RFC 3339 (UTC).
    pub time: String,
    /// What changed, at least one entry: links first, then addresses, routes, results.
    pub changes: Vec<Change>,
    /// The pod's whole current status as the agent reports it.
    pub status: Status,
}

/// One change.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// What kind of object changed.
    pub kind: ChangeKind,
    /// The interface concerned: the link, the address's or route's interface, the item's
    /// interface for results; absent when there is none (a route by gateway only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// A readable summary, e.g. `link eth0: operstate up -> down`.
    pub message: String,
    /// The object before the change; absent when it appeared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<ChangeValue>,
    /// The object after the change; absent when it went away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<ChangeValue>,
}

/// The object a [`Change`] is about; its shape follows [`Change::kind`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ChangeValue {
    /// `kind: link`.
    Link(LinkStatus),
    /// `kind: address`.
    Address(AddressStatus),
    /// `kind: route`.
    Route(RouteStatus),
    /// `kind: result`.
    Result(ItemResult),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::items::{ItemKey, ItemState};

    fn link(operstate: &str) -> LinkStatus {
        LinkStatus {
            name: "eth0".into(),
            index: 2,
            operstate: operstate.into(),
            mtu: 1500,
            mac: None,
            vlan_id: None,
            parent: None,
        }
    }

    #[test]
    fn report_json_shape_round_trips() {
        let report = Report {
            network_care: CareRef {
                namespace: "team".into(),
                name: "watcher-0".into(),
            },
            pod: "app-0".into(),
            pod_uid: "uid-1".into(),
            boot_id: BootId::new("b1"),
            time: "2025-01-02T03:04:05Z".into(),
            changes: vec![
                Change {
                    kind: ChangeKind::Link,
                    interface: Some("eth0".into()),
                    message: "link eth0: operstate up -> down".into(),
                    before: Some(ChangeValue::Link(link("up"))),
                    after: Some(ChangeValue::Link(link("down"))),
                },
                Change {
                    kind: ChangeKind::Result,
                    interface: Some("eth0".into()),
                    message: "address 10.0.0.1/24 on eth0: pending -> applied".into(),
                    before: None,
                    after: Some(ChangeValue::Result(ItemResult {
                        item: ItemKey::Address {
                            interface: "eth0".into(),
                            cidr: "10.0.0.1/24".into(),
                        },
                        state: ItemState::Applied,
                        message: None,
                    })),
                },
                Change {
                    kind: ChangeKind::Address,
                    interface: Some("eth0".into()),
                    message: "address 10.0.0.1/24 on eth0 added".into(),
                    before: None,
                    after: Some(ChangeValue::Address(AddressStatus {
                        interface: "eth0".into(),
                        cidr: "10.0.0.1/24".into(),
                    })),
                },
            ],
            status: Status {
                boot_id: BootId::new("b1"),
                generation: Some(1),
                links: vec![link("down")],
                addresses: vec![],
                routes: vec![],
                results: vec![],
            },
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["networkCare"]["name"], "watcher-0");
        assert_eq!(json["changes"][0]["kind"], "link");
        assert_eq!(json["changes"][0]["after"]["operstate"], "down");
        assert!(json["changes"][1].get("before").is_none());
        assert_eq!(serde_json::from_value::<Report>(json).unwrap(), report);
    }
}

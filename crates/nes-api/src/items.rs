//! Item identity and per-item results.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The stable identity of one item of a [`DesiredConfig`](crate::DesiredConfig): two items with
/// the same key are the same kernel object, so a config may hold each key once, and
/// [`diff`](crate::diff()) matches configs by key.
///
/// The variant order (VLANs, addresses, routes) is also the coarse apply order.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ItemKey {
    /// A VLAN link, by name (link names are unique in a network namespace).
    Vlan {
        /// The link name.
        name: String,
    },
    /// An address, by interface and canonical CIDR.
    Address {
        /// The interface name.
        interface: String,
        /// The canonical CIDR, e.g. `10.1.2.3/24`.
        cidr: String,
    },
    /// A route, by canonical destination network and table (what the kernel matches on when
    /// replacing a route).
    Route {
        /// The canonical destination, e.g. `10.0.0.0/8`; `default` becomes `0.0.0.0/0` or `::/0`.
        destination: String,
        /// The routing table (254 when the config names none).
        table: u32,
    },
}

impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ItemKey::Vlan { name } => write!(f, "vlan {name}"),
            ItemKey::Address { interface, cidr } => write!(f, "address {cidr} on {interface}"),
            ItemKey::Route { destination, table } => {
                write!(f, "route {destination} table {table}")
            }
        }
    }
}

/// Where one item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ItemState {
    /// The item is in the kernel as desired.
    Applied,
    /// Not applied yet, e.g. waiting for an item it depends on.
    Pending,
    /// Applying failed; `message` says why.
    Failed,
}

/// The outcome for one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemResult {
    /// Which item.
    pub item: ItemKey,
    /// Its state.
    pub state: ItemState,
    /// Why it failed or is pending (e.g. the netlink error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_item() {
        let vlan = ItemKey::Vlan {
            name: "eth0.100".into(),
        };
        let address = ItemKey::Address {
            interface: "eth0".into(),
            cidr: "10.1.2.3/24".into(),
        };
        let route = ItemKey::Route {
            destination: "10.0.0.0/8".into(),
            table: 254,
        };
        assert_eq!(vlan.to_string(), "vlan eth0.100");
        assert_eq!(address.to_string(), "address 10.1.2.3/24 on eth0");
        assert_eq!(route.to_string(), "route 10.0.0.0/8 table 254");
    }

    #[test]
    fn result_json_round_trip() {
        let result = ItemResult {
            item: ItemKey::Route {
                destination: "10.0.0.0/8".into(),
                table: 254,
            },
            state: ItemState::Failed,
            message: Some("Network is unreachable".into()),
        };
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "item": {"kind": "route", "destination": "10.0.0.0/8", "table": 254},
                "state": "failed",
                "message": "Network is unreachable"
            })
        );
        assert_eq!(serde_json::from_value::<ItemResult>(json).unwrap(), result);
    }
}

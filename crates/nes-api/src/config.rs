//! The desired configuration: what the application asks the agent to make true.
//!
//! Addresses and destinations are kept as the strings the client sent, not parsed types, so a bad
//! value reaches [`validate`](crate::validate()) and is reported with its exact field path instead
//! of failing deserialization with a position in the JSON text.

use std::net::IpAddr;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::items::ItemKey;

/// The Linux main routing table (`RT_TABLE_MAIN`), used when a route names no table.
pub const MAIN_TABLE: u32 = 254;

/// At most this many VLANs, this many addresses and this many routes in one configuration.
///
/// A pod needs a handful; the cap bounds what one request can cost the agent (validation,
/// planning, netlink) and the size of a `NetworkConfiguration` (about 100 bytes per item, so
/// 3,000 items stay far below etcd's 1.5 MiB object limit together with their results). The
/// schemas (`DesiredConfig`'s and the `NetworkConfiguration` CRD's) say the same with
/// `maxItems`, and [`validate`](crate::validate()) refuses a longer list.
pub const MAX_ITEMS_PER_KIND: usize = 1000;

/// The complete network configuration the application wants; replaces the previous one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DesiredConfig {
    /// The agent's configuration sequence number, issued by nes-manager: the agent accepts the
    /// generation it holds again (same content) or the next one (see [`crate::generation`]).
    /// Echoed in responses so the writer can tell which config the agent has applied.
    pub generation: u64,
    /// VLAN links to create (at most [`MAX_ITEMS_PER_KIND`]).
    #[serde(default)]
    #[schemars(length(max = crate::MAX_ITEMS_PER_KIND))]
    pub vlans: Vec<VlanLink>,
    /// Addresses to assign (at most [`MAX_ITEMS_PER_KIND`]).
    #[serde(default)]
    #[schemars(length(max = crate::MAX_ITEMS_PER_KIND))]
    pub addresses: Vec<Address>,
    /// Routes to install (at most [`MAX_ITEMS_PER_KIND`]).
    #[serde(default)]
    #[schemars(length(max = crate::MAX_ITEMS_PER_KIND))]
    pub routes: Vec<Route>,
}

/// A VLAN (802.1Q) link on top of a parent link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VlanLink {
    /// The new link's name, e.g. `eth0.100`.
    pub name: String,
    /// The link it is stacked on: a host link or another VLAN of the same config.
    pub parent: String,
    /// The 802.1Q VLAN id, 1..=4094.
    pub vlan_id: u16,
    /// The link MTU; the kernel's default (the parent's) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

/// An IP address assigned to an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Address {
    /// The interface: a host link or a VLAN of the same config.
    pub interface: String,
    /// Address and prefix length, IPv4 or IPv6: `10.1.2.3/24`, `fd00::5/64`.
    pub cidr: String,
}

/// A route. At least one of `gateway` and `interface` is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    /// A network with zero host bits (`10.0.0.0/8`) or `default`. `default` is `0.0.0.0/0`, or
    /// `::/0` when the gateway is IPv6.
    pub destination: String,
    /// The next hop, of the destination's family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// The output interface: a host link or a VLAN of the same config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// The route priority; the kernel's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
    /// The routing table; [`MAIN_TABLE`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
}

impl VlanLink {
    /// This VLAN's identity.
    pub fn key(&self) -> ItemKey {
        ItemKey::Vlan {
            name: self.name.clone(),
        }
    }
}

impl Address {
    /// This address's identity. The CIDR is canonicalized when it parses (so `fd00:0::5/64` and
    /// `fd00::5/64` are the same item) and kept verbatim otherwise.
    pub fn key(&self) -> ItemKey {
        let cidr = match parse_cidr(&self.cidr) {
            Some(net) => net.to_string(),
            None => self.cidr.clone(),
        };
        ItemKey::Address {
            interface: self.interface.clone(),
            cidr,
        }
    }
}

impl Route {
    /// The destination as a network: `default` resolved by the gateway's family, `None` when it
    /// is not a valid CIDR.
    pub fn destination_net(&self) -> Option<IpNet> {
        if self.destination == "default" {
            // Without an IPv6 gateway there is nothing to say the route is IPv6, and `ip route
            // add default dev X` means IPv4 too.
            return Some(match self.gateway {
                Some(IpAddr::V6(_)) => IpNet::V6(Default::default()),
                _ => IpNet::V4(Default::default()),
            });
        }
        parse_cidr(&self.destination)
    }

    /// The routing table, [`MAIN_TABLE`] when absent.
    pub fn table_or_main(&self) -> u32 {
        self.table.unwrap_or(MAIN_TABLE)
    }

    /// This route's identity: canonical destination and table. `default` and `0.0.0.0/0` are the
    /// same route, as are an absent table and table 254, because the kernel sees them so.
    pub fn key(&self) -> ItemKey {
        let destination = match self.destination_net() {
            Some(net) => net.to_string(),
            None => self.destination.clone(),
        };
        ItemKey::Route {
            destination,
            table: self.table_or_main(),
        }
    }
}

/// Parses `address/prefix`. A bare address is not accepted: the prefix length decides the
/// on-link subnet, so guessing /32 or /128 would silently change routing.
pub(crate) fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(destination: &str, gateway: Option<&str>, table: Option<u32>) -> Route {
        Route {
            destination: destination.to_owned(),
            gateway: gateway.map(|g| g.parse().unwrap()),
            interface: None,
            metric: None,
            table,
        }
    }

    #[test]
    fn json_round_trip_uses_camel_case() {
        let json = r#"{
            "generation": 7,
            "vlans": [{"name": "eth0.100", "parent": "eth0", "vlanId": 100, "mtu": 1500}],
            "addresses": [{"interface": "eth0.100", "cidr": "fd00::5/64"}],
            "routes": [{"destination": "default", "gateway": "10.1.2.1", "metric": 100}]
        }"#;
        let config: DesiredConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config.vlans[0].vlan_id, 100);
        assert_eq!(config.routes[0].gateway, Some("10.1.2.1".parse().unwrap()));
        let back = serde_json::to_string(&config).unwrap();
        assert!(back.contains(r#""vlanId":100"#), "{back}");
        assert!(
            !back.contains("table"),
            "absent options are omitted: {back}"
        );
        assert_eq!(
            serde_json::from_str::<DesiredConfig>(&back).unwrap(),
            config
        );
    }

    #[test]
    fn lists_default_to_empty() {
        let config: DesiredConfig = serde_json::from_str(r#"{"generation": 1}"#).unwrap();
        assert_eq!(
            config,
            DesiredConfig {
                generation: 1,
                ..Default::default()
            }
        );
    }

    #[test]
    fn unknown_fields_are_rejected_by_name() {
        let top = serde_json::from_str::<DesiredConfig>(r#"{"generation": 1, "vlan": []}"#);
        assert!(
            top.unwrap_err()
                .to_string()
                .contains("unknown field `vlan`")
        );
        let nested = serde_json::from_str::<DesiredConfig>(
            r#"{"generation": 1, "routes": [{"destination": "default", "gw": "10.0.0.1"}]}"#,
        );
        assert!(
            nested
                .unwrap_err()
                .to_string()
                .contains("unknown field `gw`")
        );
    }

    #[test]
    fn route_keys_fold_default_spelling_and_main_table() {
        assert_eq!(
            route("default", None, None).key(),
            route("0.0.0.0/0", None, Some(254)).key()
        );
        assert_eq!(
            route("default", Some("fd00::1"), None).key().to_string(),
            "route ::/0 table 254"
        );
        assert_ne!(
            route("10.0.0.0/8", None, Some(100)).key(),
            route("10.0.0.0/8", None, None).key()
        );
    }

    #[test]
    fn address_keys_are_canonical_when_parseable() {
        let key = |cidr: &str| {
            Address {
                interface: "eth0".into(),
                cidr: cidr.into(),
            }
            .key()
            .to_string()
        };
        assert_eq!(key("fd00:0:0::5/64"), "address fd00::5/64 on eth0");
        assert_eq!(key("10.1.2.3/24"), "address 10.1.2.3/24 on eth0");
        assert_eq!(key("not-a-cidr"), "address not-a-cidr on eth0");
    }

    #[test]
    fn json_schema_rejects_unknown_fields_too() {
        let schema = serde_json::to_value(schemars::schema_for!(DesiredConfig)).unwrap();
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(
            schema["$defs"]["VlanLink"]["required"],
            serde_json::json!(["name", "parent", "vlanId"])
        );
    }
}

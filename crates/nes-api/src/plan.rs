//! Apply order and config diff: what the agent does, in which order.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{DesiredConfig, VlanLink};
use crate::items::ItemKey;

/// The keys of `config`'s items in an order the kernel accepts them: VLANs parents first, then
/// addresses, then routes (interface-only routes before gateway routes, so a gateway reached
/// through such a route is reachable when its route is added).
///
/// Within each step items are sorted by key, so the order depends only on the set of items, not
/// on how the config lists them. Each key appears once. Never loops or panics, even on a config
/// [`validate`](crate::validate()) rejects (VLAN cycles are cut).
pub fn apply_order(config: &DesiredConfig) -> Vec<ItemKey> {
    let parents: BTreeMap<&str, &str> = config
        .vlans
        .iter()
        .rev() // first occurrence wins, as in validate
        .map(|v| (v.name.as_str(), v.parent.as_str()))
        .collect();
    let mut vlans: Vec<(usize, ItemKey)> = config
        .vlans
        .iter()
        .map(|v| (vlan_depth(&parents, v), v.key()))
        .collect();
    vlans.sort();
    let mut addresses: Vec<ItemKey> = config.addresses.iter().map(|a| a.key()).collect();
    addresses.sort();
    let mut routes: Vec<(bool, ItemKey)> = config
        .routes
        .iter()
        .map(|r| (r.gateway.is_some(), r.key()))
        .collect();
    routes.sort();

    let mut seen = BTreeSet::new();
    vlans
        .into_iter()
        .map(|(_, key)| key)
        .chain(addresses)
        .chain(routes.into_iter().map(|(_, key)| key))
        .filter(|key| seen.insert(key.clone()))
        .collect()
}

/// How many VLANs of the config `vlan` is stacked on, bounded by the number of VLANs so a cycle
/// ends the walk.
fn vlan_depth(parents: &BTreeMap<&str, &str>, vlan: &VlanLink) -> usize {
    let mut depth = 0;
    let mut current = vlan.parent.as_str();
    while depth < parents.len() {
        match parents.get(current) {
            Some(next) => {
                depth += 1;
                current = next;
            }
            None => break,
        }
    }
    depth
}

/// The difference between the applied config and the next one, by [`ItemKey`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    /// Only in the next config, in its apply order.
    pub added: Vec<ItemKey>,
    /// In both, with other attributes (VLAN parent, id or MTU; route gateway, interface or
    /// metric): the agent must replace them. In the next config's apply order.
    pub changed: Vec<ItemKey>,
    /// Only in the previous config: the agent must delete them. In reverse apply order of the
    /// previous config, so dependents (routes, stacked VLANs) go before what they depend on.
    pub removed: Vec<ItemKey>,
    /// In both and identical, in the next config's apply order.
    pub unchanged: Vec<ItemKey>,
}

/// Compares two configs by item key. For a config with duplicate keys (which
/// [`validate`](crate::validate()) rejects) the first item with a key counts.
pub fn diff(previous: &DesiredConfig, next: &DesiredConfig) -> Diff {
    let before = specs(previous);
    let after = specs(next);
    let mut result = Diff::default();
    for key in apply_order(next) {
        match before.get(&key) {
            None => result.added.push(key),
            Some(spec) if after.get(&key) == Some(spec) => result.unchanged.push(key),
            Some(_) => result.changed.push(key),
        }
    }
    result.removed = apply_order(previous)
        .into_iter()
        .rev()
        .filter(|key| !after.contains_key(key))
        .collect();
    result
}

/// The attributes of an item that are not part of its key; equal specs mean nothing to do. The
/// destination spelling (`default` vs `0.0.0.0/0`) and an explicit main table are folded into the
/// key, so they do not count as changes.
#[derive(PartialEq, Eq)]
enum Spec<'a> {
    Vlan(&'a str, u16, Option<u32>),
    Address,
    Route(Option<IpAddr>, Option<&'a str>, Option<u32>),
}

fn specs(config: &DesiredConfig) -> BTreeMap<ItemKey, Spec<'_>> {
    let mut specs = BTreeMap::new();
    let items = config
        .vlans
        .iter()
        .map(|v| (v.key(), Spec::Vlan(&v.parent, v.vlan_id, v.mtu)))
        .chain(config.addresses.iter().map(|a| (a.key(), Spec::Address)))
        .chain(config.routes.iter().map(|r| {
            let spec = Spec::Route(r.gateway, r.interface.as_deref(), r.metric);
            (r.key(), spec)
        }));
    for (key, spec) in items {
        specs.entry(key).or_insert(spec);
    }
    specs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Address, Route};

    fn vlan(name: &str, parent: &str) -> VlanLink {
        VlanLink {
            name: name.into(),
            parent: parent.into(),
            vlan_id: 10,
            mtu: None,
        }
    }

    fn address(interface: &str, cidr: &str) -> Address {
        Address {
            interface: interface.into(),
            cidr: cidr.into(),
        }
    }

    fn route(destination: &str, gateway: Option<&str>, interface: Option<&str>) -> Route {
        Route {
            destination: destination.into(),
            gateway: gateway.map(|g| g.parse().unwrap()),
            interface: interface.map(String::from),
            metric: None,
            table: None,
        }
    }

    fn config() -> DesiredConfig {
        DesiredConfig {
            generation: 1,
            // Listed children first, to show the order does not come from the list.
            vlans: vec![
                vlan("v3", "v2"),
                vlan("v2", "v1"),
                vlan("v1", "eth0"),
                vlan("a1", "eth0"),
            ],
            addresses: vec![address("v3", "10.3.0.1/24"), address("v1", "10.1.0.1/24")],
            routes: vec![
                route("default", Some("10.9.0.1"), None),
                route("10.9.0.0/24", None, Some("v3")),
            ],
        }
    }

    fn names(keys: &[ItemKey]) -> Vec<String> {
        keys.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn apply_order_puts_dependencies_first() {
        assert_eq!(
            names(&apply_order(&config())),
            [
                "vlan a1",
                "vlan v1",
                "vlan v2",
                "vlan v3",
                "address 10.1.0.1/24 on v1",
                "address 10.3.0.1/24 on v3",
                "route 10.9.0.0/24 table 254",
                "route 0.0.0.0/0 table 254",
            ]
        );
    }

    #[test]
    fn apply_order_does_not_depend_on_list_order() {
        let mut reversed = config();
        reversed.vlans.reverse();
        reversed.addresses.reverse();
        reversed.routes.reverse();
        assert_eq!(apply_order(&reversed), apply_order(&config()));
    }

    #[test]
    fn apply_order_survives_cycles_and_duplicates() {
        let config = DesiredConfig {
            vlans: vec![vlan("a", "b"), vlan("b", "a"), vlan("a", "eth0")],
            ..Default::default()
        };
        assert_eq!(names(&apply_order(&config)), ["vlan a", "vlan b"]);
    }

    #[test]
    fn diff_sorts_items_into_added_changed_removed_unchanged() {
        let previous = config();
        let mut next = config();
        next.generation = 2;
        next.vlans.retain(|v| v.name != "v3"); // drops v3 and what hangs on it
        next.addresses.retain(|a| a.interface != "v3");
        next.routes.retain(|r| r.interface.as_deref() != Some("v3"));
        next.vlans[0].mtu = Some(1400); // v2
        next.routes[0].destination = "0.0.0.0/0".into(); // same route, other spelling
        next.addresses.push(address("v2", "fd00::2/64"));

        let diff = diff(&previous, &next);
        assert_eq!(names(&diff.added), ["address fd00::2/64 on v2"]);
        assert_eq!(names(&diff.changed), ["vlan v2"]);
        assert_eq!(
            names(&diff.removed),
            [
                "route 10.9.0.0/24 table 254",
                "address 10.3.0.1/24 on v3",
                "vlan v3"
            ]
        );
        assert_eq!(
            names(&diff.unchanged),
            [
                "vlan a1",
                "vlan v1",
                "address 10.1.0.1/24 on v1",
                "route 0.0.0.0/0 table 254"
            ]
        );
    }

    #[test]
    fn a_changed_gateway_is_a_change() {
        let previous = config();
        let mut next = config();
        next.routes[0].gateway = Some("10.9.0.2".parse().unwrap());
        let diff = diff(&previous, &next);
        assert_eq!(names(&diff.changed), ["route 0.0.0.0/0 table 254"]);
        assert!(diff.added.is_empty() && diff.removed.is_empty());
    }

    #[test]
    fn diff_from_empty_adds_everything() {
        let diff = diff(&DesiredConfig::default(), &config());
        assert_eq!(diff.added, apply_order(&config()));
        assert!(diff.removed.is_empty() && diff.changed.is_empty() && diff.unchanged.is_empty());
    }
}

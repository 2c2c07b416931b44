//! The changes between two status snapshots of one agent, and a `NetworkCare`'s filter over
//! them. Pure; the hub calls it for every snapshot a pod's agent streams.

use std::collections::{BTreeMap, BTreeSet};

use nes_api::crd::StatusFilter;
use nes_api::report::{Change, ChangeKind, ChangeValue};
use nes_api::{ItemKey, ItemResult, LinkStatus, RouteStatus, Status};

/// Every change from `before` to `after`: links (added, removed, operstate/MTU/MAC changed),
/// addresses and routes (added, removed), item results (added, removed, state or message
/// changed). Order: links (by name), addresses, routes, results (by item).
pub fn compute(before: &Status, after: &Status) -> Vec<Change> {
    let mut changes = Vec::new();
    link_changes(before, after, &mut changes);
    set_changes(
        &before.addresses,
        &after.addresses,
        ChangeKind::Address,
        |a| Some(a.interface.clone()),
        |a| format!("address {} on {}", a.cidr, a.interface),
        |a| ChangeValue::Address(a.clone()),
        &mut changes,
    );
    set_changes(
        &before.routes,
        &after.routes,
        ChangeKind::Route,
        |r| r.interface.clone(),
        route_text,
        |r| ChangeValue::Route(r.clone()),
        &mut changes,
    );
    result_changes(&before.results, &after.results, &mut changes);
    changes
}

/// The changes `filter` lets through: of the listed kinds (all when empty) and about the listed
/// interfaces (all when empty; a change naming no interface passes only an empty list).
pub fn filter(changes: Vec<Change>, filter: &StatusFilter) -> Vec<Change> {
    changes
        .into_iter()
        .filter(|c| filter.changes.is_empty() || filter.changes.contains(&c.kind))
        .filter(|c| {
            filter.interfaces.is_empty()
                || c.interface
                    .as_ref()
                    .is_some_and(|i| filter.interfaces.contains(i))
        })
        .collect()
}

fn link_changes(before: &Status, after: &Status, out: &mut Vec<Change>) {
    let old: BTreeMap<&str, &LinkStatus> =
        before.links.iter().map(|l| (l.name.as_str(), l)).collect();
    let new: BTreeMap<&str, &LinkStatus> =
        after.links.iter().map(|l| (l.name.as_str(), l)).collect();
    let names: BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
    for name in names {
        let (b, a) = (old.get(name).copied(), new.get(name).copied());
        let message = match (b, a) {
            (None, Some(a)) => format!("link {name} added ({}, mtu {})", a.operstate, a.mtu),
            (Some(_), None) => format!("link {name} removed"),
            (Some(b), Some(a)) => {
                let mut what = Vec::new();
                if b.operstate != a.operstate {
                    what.push(format!("operstate {} -> {}", b.operstate, a.operstate));
                }
                if b.mtu != a.mtu {
                    what.push(format!("mtu {} -> {}", b.mtu, a.mtu));
                }
                if b.mac != a.mac {
                    let mac = |m: &Option<String>| m.clone().unwrap_or_else(|| "none".into());
                    what.push(format!("mac {} -> {}", mac(&b.mac), mac(&a.mac)));
                }
                if what.is_empty() {
                    // The index or VLAN details alone are not a change a subscriber acts on.
                    continue;
                }
                format!("link {name}: {}", what.join(", "))
            }
            (None, None) => continue,
        };
        out.push(Change {
            kind: ChangeKind::Link,
            interface: Some(name.to_owned()),
            message,
            before: b.map(|l| ChangeValue::Link(l.clone())),
            after: a.map(|l| ChangeValue::Link(l.clone())),
        });
    }
}

/// Removed then added elements of two lists compared as sets (an element is its whole value),
/// in the agent's order. Lists are short (tens of entries), so a linear search is fine.
fn set_changes<T: PartialEq>(
    before: &[T],
    after: &[T],
    kind: ChangeKind,
    interface: impl Fn(&T) -> Option<String>,
    text: impl Fn(&T) -> String,
    value: impl Fn(&T) -> ChangeValue,
    out: &mut Vec<Change>,
) {
    for gone in before.iter().filter(|b| !after.contains(b)) {
        out.push(Change {
            kind,
            interface: interface(gone),
            message: format!("{} removed", text(gone)),
            before: Some(value(gone)),
            after: None,
        });
    }
    for came in after.iter().filter(|a| !before.contains(a)) {
        out.push(Change {
            kind,
            interface: interface(came),
            message: format!("{} added", text(came)),
            before: None,
            after: Some(value(came)),
        });
    }
}

fn route_text(r: &RouteStatus) -> String {
    let mut text = format!("route {}", r.destination);
    if let Some(gw) = r.gateway {
        text.push_str(&format!(" via {gw}"));
    }
    if let Some(dev) = &r.interface {
        text.push_str(&format!(" dev {dev}"));
    }
    text.push_str(&format!(" table {}", r.table));
    text
}

/// The interface an item is about: the VLAN itself, the address's interface; none for routes
/// (the key of a route names no interface).
fn item_interface(item: &ItemKey) -> Option<String> {
    match item {
        ItemKey::Vlan { name } => Some(name.clone()),
        ItemKey::Address { interface, .. } => Some(interface.clone()),
        ItemKey::Route { .. } => None,
    }
}

fn state_text(r: &ItemResult) -> String {
    let state = serde_json::to_value(r.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    match &r.message {
        Some(m) => format!("{state} ({m})"),
        None => state,
    }
}

fn result_changes(before: &[ItemResult], after: &[ItemResult], out: &mut Vec<Change>) {
    let old: BTreeMap<&ItemKey, &ItemResult> = before.iter().map(|r| (&r.item, r)).collect();
    let new: BTreeMap<&ItemKey, &ItemResult> = after.iter().map(|r| (&r.item, r)).collect();
    let keys: BTreeSet<&ItemKey> = old.keys().chain(new.keys()).copied().collect();
    for key in keys {
        let (b, a) = (old.get(key).copied(), new.get(key).copied());
        let message = match (b, a) {
            (None, Some(a)) => format!("{key}: {}", state_text(a)),
            (Some(_), None) => format!("{key}: no longer configured"),
            (Some(b), Some(a)) if b != a => {
                format!("{key}: {} -> {}", state_text(b), state_text(a))
            }
            _ => continue,
        };
        out.push(Change {
            kind: ChangeKind::Result,
            interface: item_interface(key),
            message,
            before: b.map(|r| ChangeValue::Result(r.clone())),
            after: a.map(|r| ChangeValue::Result(r.clone())),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nes_api::{AddressStatus, BootId, ItemState};

    fn link(name: &str, operstate: &str, mtu: u32) -> LinkStatus {
        LinkStatus {
            name: name.into(),
            index: 2,
            operstate: operstate.into(),
            mtu,
            mac: None,
            vlan_id: None,
            parent: None,
        }
    }

    fn status(links: Vec<LinkStatus>) -> Status {
        Status {
            boot_id: BootId::new("b"),
            generation: Some(1),
            links,
            addresses: vec![],
            routes: vec![],
            results: vec![],
        }
    }

    fn address(interface: &str, cidr: &str) -> AddressStatus {
        AddressStatus {
            interface: interface.into(),
            cidr: cidr.into(),
        }
    }

    #[test]
    fn identical_snapshots_have_no_changes() {
        let s = status(vec![link("eth0", "up", 1500)]);
        assert!(compute(&s, &s).is_empty());
        // A new index alone is not reported.
        let mut renumbered = s.clone();
        renumbered.links[0].index = 9;
        assert!(compute(&s, &renumbered).is_empty());
    }

    #[test]
    fn link_changes_name_the_link_and_what_changed() {
        let before = status(vec![link("eth0", "up", 1500), link("eth1", "up", 1500)]);
        let after = status(vec![link("eth0", "down", 9000), link("eth2", "up", 1500)]);
        let changes = compute(&before, &after);
        let messages: Vec<&str> = changes.iter().map(|c| c.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "link eth0: operstate up -> down, mtu 1500 -> 9000",
                "link eth1 removed",
                "link eth2 added (up, mtu 1500)",
            ]
        );
        assert!(changes.iter().all(|c| c.kind == ChangeKind::Link));
        assert_eq!(changes[0].interface.as_deref(), Some("eth0"));
        assert_eq!(
            changes[0].after,
            Some(ChangeValue::Link(link("eth0", "down", 9000)))
        );
        assert!(changes[1].after.is_none() && changes[2].before.is_none());
    }

    #[test]
    fn addresses_and_routes_added_and_removed() {
        let mut before = status(vec![]);
        before.addresses = vec![address("eth0", "10.0.0.1/24")];
        before.routes = vec![RouteStatus {
            destination: "10.9.0.0/16".into(),
            gateway: Some("10.0.0.254".parse().unwrap()),
            interface: None,
            metric: None,
            table: 254,
            protocol: "static".into(),
        }];
        let mut after = status(vec![]);
        after.addresses = vec![address("eth0", "10.0.0.2/24")];
        let changes = compute(&before, &after);
        let messages: Vec<&str> = changes.iter().map(|c| c.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "address 10.0.0.1/24 on eth0 removed",
                "address 10.0.0.2/24 on eth0 added",
                "route 10.9.0.0/16 via 10.0.0.254 table 254 removed",
            ]
        );
        assert_eq!(changes[2].kind, ChangeKind::Route);
        assert_eq!(changes[2].interface, None);
    }

    #[test]
    fn result_state_changes() {
        let key = ItemKey::Address {
            interface: "eth0.100".into(),
            cidr: "10.1.0.1/24".into(),
        };
        let result = |state, message: Option<&str>| ItemResult {
            item: key.clone(),
            state,
            message: message.map(str::to_owned),
        };
        let mut before = status(vec![]);
        before.results = vec![result(ItemState::Pending, Some("no eth0.100 yet"))];
        let mut after = status(vec![]);
        after.results = vec![result(ItemState::Applied, None)];
        let changes = compute(&before, &after);
        assert_eq!(changes.len(), 1);
        assert_eq!(
            changes[0].message,
            "address 10.1.0.1/24 on eth0.100: pending (no eth0.100 yet) -> applied"
        );
        assert_eq!(changes[0].interface.as_deref(), Some("eth0.100"));
        // An agent restarted with nothing applied: the item is no longer configured.
        let changes = compute(&after, &status(vec![]));
        assert_eq!(
            changes[0].message,
            "address 10.1.0.1/24 on eth0.100: no longer configured"
        );
    }

    #[test]
    fn filter_by_kind_and_interface() {
        let mut before = status(vec![link("eth0", "up", 1500), link("eth1", "up", 1500)]);
        before.routes = vec![RouteStatus {
            destination: "0.0.0.0/0".into(),
            gateway: Some("10.0.0.1".parse().unwrap()),
            interface: None,
            metric: None,
            table: 254,
            protocol: "static".into(),
        }];
        let mut after = status(vec![link("eth0", "down", 1500), link("eth1", "down", 1500)]);
        after.addresses = vec![address("eth1", "10.0.0.5/24")];
        let all = compute(&before, &after);
        assert_eq!(all.len(), 4);
        assert_eq!(filter(all.clone(), &StatusFilter::default()).len(), 4);

        let eth1 = StatusFilter {
            interfaces: vec!["eth1".into()],
            changes: vec![],
        };
        let kept = filter(all.clone(), &eth1);
        assert_eq!(
            kept.len(),
            2,
            "eth1's link and address; not the routeless gateway"
        );
        assert!(kept.iter().all(|c| c.interface.as_deref() == Some("eth1")));

        let links_of_eth0 = StatusFilter {
            interfaces: vec!["eth0".into()],
            changes: vec![ChangeKind::Link],
        };
        let kept = filter(all.clone(), &links_of_eth0);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].message, "link eth0: operstate up -> down");

        let routes = StatusFilter {
            interfaces: vec![],
            changes: vec![ChangeKind::Route],
        };
        assert_eq!(filter(all, &routes)[0].kind, ChangeKind::Route);
    }
}

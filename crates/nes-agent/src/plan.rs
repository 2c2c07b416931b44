//! The agent's decision: given the desired configuration, the kernel's state and what the agent
//! created earlier, which netlink changes to make. Pure, so every rule is unit-tested here.
//!
//! Rules (the anchors: kubernetes-nmstate, Cilium's route reconciler):
//! - Level-driven: the plan depends only on the three inputs, never on the previous request, so
//!   re-planning after anything happened (an event, a timer, a restart) converges.
//! - An item that already holds in the kernel needs nothing, whoever made it; only an item the
//!   agent creates enters the ledger ([`Owned`]).
//! - Exact ownership: the agent creates exclusively and changes only what it created. A route
//!   with the desired table, destination and metric but another next hop is replaced only when
//!   it is the agent's (in the ledger and still carrying its protocol); anyone else's is a
//!   conflict, reported and left alone, because replacing it would take it over and a later
//!   removal would delete, say, the CNI's route.
//! - Items dropped from the desired configuration are removed only if the ledger holds them, and
//!   a route only while it still carries the agent's protocol number (someone who replaced it
//!   now owns it).
//! - An item whose interface or parent does not exist yet is `pending`, not an error.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use nes_api::{
    Address, DesiredConfig, ItemKey, ItemResult, ItemState, Route, VlanLink, apply_order,
};
use serde::{Deserialize, Serialize};

use crate::observed::{Observed, RouteEntry, RouteId};

/// A desired item, as the ledger of created items records it (with everything needed to find
/// and remove it later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Item {
    /// A VLAN link.
    Vlan(VlanLink),
    /// An address.
    Address(Address),
    /// A route.
    Route(Route),
}

impl Item {
    /// The item's identity.
    pub fn key(&self) -> ItemKey {
        match self {
            Item::Vlan(vlan) => vlan.key(),
            Item::Address(address) => address.key(),
            Item::Route(route) => route.key(),
        }
    }
}

/// The items the agent created and has not removed, by key.
pub type Owned = BTreeMap<ItemKey, Item>;

/// A route as the kernel takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Table, destination and metric.
    pub id: RouteId,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Route protocol (the agent's own number).
    pub protocol: u8,
}

/// One netlink change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create VLAN `name` on link `parent`, administratively up.
    CreateVlan {
        /// New link name.
        name: String,
        /// Parent link index.
        parent: u32,
        /// VLAN id.
        vlan_id: u16,
        /// MTU, the kernel's default (the parent's) when absent.
        mtu: Option<u32>,
    },
    /// Set a link up, and its MTU when given.
    SetLink {
        /// Link index.
        index: u32,
        /// New MTU.
        mtu: Option<u32>,
    },
    /// Delete a link.
    DeleteLink {
        /// Link index.
        index: u32,
    },
    /// Add (or replace) an address.
    AddAddress {
        /// Link index.
        index: u32,
        /// Address and prefix.
        net: IpNet,
    },
    /// Delete an address.
    DeleteAddress {
        /// Link index.
        index: u32,
        /// Address and prefix.
        net: IpNet,
    },
    /// Create a route exclusively (`NLM_F_EXCL`): `EEXIST` if one with its table,
    /// destination and metric appeared since the last read (see [`on_exists`]).
    AddRoute(RouteSpec),
    /// Replace a route the agent created (`NLM_F_REPLACE`), e.g. with a new gateway.
    ReplaceRoute(RouteSpec),
    /// Delete a route.
    DeleteRoute(RouteSpec),
}

impl Action {
    /// True for actions that create links, after which the link table must be re-read
    /// (a new link's index is the kernel's choice).
    pub fn creates_link(&self) -> bool {
        matches!(self, Action::CreateVlan { .. })
    }
}

/// What a successful step means for the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ledger {
    /// The agent created this item.
    Own(Item),
    /// The item is gone (or no longer the agent's).
    Disown(ItemKey),
    /// No change (e.g. the agent adjusted an item it does not own).
    Keep,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The item the step is for.
    pub key: ItemKey,
    /// The change.
    pub action: Action,
    /// What success means for the ledger.
    pub ledger: Ledger,
    /// True when the item is desired (its outcome is reported); false for removals.
    pub desired: bool,
}

/// A plan: steps in order (removals first, then the desired items in apply order), the
/// results of desired items that need no step, and ledger entries to drop because their items
/// are gone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Netlink changes, in order.
    pub steps: Vec<Step>,
    /// Results of desired items without a step (`applied` or `pending`/`failed` with why).
    pub settled: BTreeMap<ItemKey, ItemResult>,
    /// The desired items' keys in apply order (the order of results).
    pub order: Vec<ItemKey>,
    /// Ledger entries whose items no longer exist or are no longer the agent's.
    pub disown: Vec<ItemKey>,
}

/// Plans the changes that bring the kernel (`observed`) to `desired`. `protocol` is the agent's
/// route protocol number.
pub fn plan(desired: &DesiredConfig, observed: &Observed, owned: &Owned, protocol: u8) -> Plan {
    let mut plan = Plan {
        order: apply_order(desired),
        ..Plan::default()
    };
    let items = desired_items(desired);
    plan_removals(&mut plan, &items, observed, owned, protocol);
    let order = plan.order.clone();
    for key in &order {
        let Some(item) = items.get(key) else {
            continue;
        };
        match item {
            Item::Vlan(vlan) => plan_vlan(&mut plan, vlan, observed, owned),
            Item::Address(address) => plan_address(&mut plan, address, observed),
            Item::Route(route) => plan_route(&mut plan, route, observed, owned, protocol),
        }
    }
    plan
}

/// The desired items by key; for a duplicated key (which validation rejects) the first wins.
fn desired_items(desired: &DesiredConfig) -> BTreeMap<ItemKey, Item> {
    let mut items = BTreeMap::new();
    let all = desired
        .vlans
        .iter()
        .cloned()
        .map(Item::Vlan)
        .chain(desired.addresses.iter().cloned().map(Item::Address))
        .chain(desired.routes.iter().cloned().map(Item::Route));
    for item in all {
        items.entry(item.key()).or_insert(item);
    }
    items
}

/// The kernel identity of a desired route: the kernel stores IPv6 routes without a metric
/// at 1024 and IPv4 ones at 0.
pub fn route_id(route: &Route) -> Option<RouteId> {
    let destination = route.destination_net()?.trunc();
    let default_metric = if destination.addr().is_ipv6() {
        1024
    } else {
        0
    };
    Some(RouteId {
        table: route.table_or_main(),
        destination,
        metric: route.metric.unwrap_or(default_metric),
    })
}

fn plan_removals(
    plan: &mut Plan,
    desired: &BTreeMap<ItemKey, Item>,
    observed: &Observed,
    owned: &Owned,
    protocol: u8,
) {
    // Dependents first: routes, then addresses, then VLANs (stacked ones before parents).
    let mut routes = Vec::new();
    let mut addresses = Vec::new();
    let mut vlans = Vec::new();
    for (key, item) in owned {
        match item {
            Item::Route(old) => {
                let still = match desired.get(key) {
                    Some(Item::Route(new)) => route_id(new) == route_id(old),
                    _ => false,
                };
                if still {
                    continue;
                }
                match route_id(old).and_then(|id| observed.routes.get(&id)) {
                    Some(route) if route.protocol == protocol => routes.push(Step {
                        key: key.clone(),
                        action: Action::DeleteRoute(RouteSpec {
                            id: route.id,
                            gateway: route.gateway,
                            oif: route.oif,
                            protocol,
                        }),
                        ledger: Ledger::Disown(key.clone()),
                        desired: false,
                    }),
                    // Gone, or taken over by someone else: no longer ours.
                    _ => plan.disown.push(key.clone()),
                }
            }
            Item::Address(old) => {
                if desired.contains_key(key) {
                    continue;
                }
                let found = old.cidr.parse::<IpNet>().ok().and_then(|net| {
                    let link = observed.link_by_name(&old.interface)?;
                    observed
                        .has_address(link.index, net)
                        .then_some((link.index, net))
                });
                match found {
                    Some((index, net)) => addresses.push(Step {
                        key: key.clone(),
                        action: Action::DeleteAddress { index, net },
                        ledger: Ledger::Disown(key.clone()),
                        desired: false,
                    }),
                    None => plan.disown.push(key.clone()),
                }
            }
            Item::Vlan(old) => {
                let replaced = match desired.get(key) {
                    Some(Item::Vlan(new)) => !same_vlan_identity(old, new),
                    _ => true,
                };
                if !replaced {
                    continue;
                }
                match observed.link_by_name(&old.name) {
                    Some(link) if link.vlan_id.is_some() => {
                        let depth = vlan_depth(observed, link.index);
                        vlans.push((
                            depth,
                            Step {
                                key: key.clone(),
                                action: Action::DeleteLink { index: link.index },
                                ledger: Ledger::Disown(key.clone()),
                                desired: false,
                            },
                        ));
                    }
                    _ => plan.disown.push(key.clone()),
                }
            }
        }
    }
    vlans.sort_by_key(|(depth, _)| std::cmp::Reverse(*depth));
    plan.steps.extend(routes);
    plan.steps.extend(addresses);
    plan.steps.extend(vlans.into_iter().map(|(_, step)| step));
}

/// Parent and id identify what a VLAN link is; a change of either means a new link.
fn same_vlan_identity(a: &VlanLink, b: &VlanLink) -> bool {
    a.parent == b.parent && a.vlan_id == b.vlan_id
}

/// How many links `index` is stacked on, bounded so that a (kernel-impossible) loop ends.
fn vlan_depth(observed: &Observed, index: u32) -> usize {
    let mut depth = 0;
    let mut current = observed.links.get(&index);
    while let Some(link) = current {
        match link.parent {
            Some(parent) if depth < 16 => {
                depth += 1;
                current = observed.links.get(&parent);
            }
            _ => break,
        }
    }
    depth
}

fn settle(plan: &mut Plan, key: &ItemKey, state: ItemState, message: Option<String>) {
    plan.settled.insert(
        key.clone(),
        ItemResult {
            item: key.clone(),
            state,
            message,
        },
    );
}

fn step(plan: &mut Plan, key: &ItemKey, action: Action, ledger: Ledger) {
    plan.steps.push(Step {
        key: key.clone(),
        action,
        ledger,
        desired: true,
    });
}

fn removed_in_plan(plan: &Plan, index: u32) -> bool {
    plan.steps
        .iter()
        .any(|s| matches!(s.action, Action::DeleteLink { index: i } if i == index))
}

fn plan_vlan(plan: &mut Plan, vlan: &VlanLink, observed: &Observed, owned: &Owned) {
    let key = vlan.key();
    let Some(parent) = observed.link_by_name(&vlan.parent) else {
        let message = format!("parent link {:?} does not exist yet", vlan.parent);
        return settle(plan, &key, ItemState::Pending, Some(message));
    };
    let create = Action::CreateVlan {
        name: vlan.name.clone(),
        parent: parent.index,
        vlan_id: vlan.vlan_id,
        mtu: vlan.mtu,
    };
    let own = Ledger::Own(Item::Vlan(vlan.clone()));
    match observed.link_by_name(&vlan.name) {
        // Being deleted by this plan (the owned VLAN changed parent or id): create it anew.
        Some(link) if removed_in_plan(plan, link.index) => step(plan, &key, create, own),
        Some(link) if link.vlan_id == Some(vlan.vlan_id) && link.parent == Some(parent.index) => {
            let mtu = vlan.mtu.filter(|mtu| *mtu != link.mtu);
            if mtu.is_some() || !link.admin_up {
                let ledger = if owned.contains_key(&key) {
                    Ledger::Own(Item::Vlan(vlan.clone()))
                } else {
                    Ledger::Keep
                };
                let action = Action::SetLink {
                    index: link.index,
                    mtu,
                };
                step(plan, &key, action, ledger);
            } else {
                settle(plan, &key, ItemState::Applied, None);
            }
        }
        Some(_) => {
            let message = format!(
                "a link named {:?} exists and is not VLAN {} on {:?}; the agent replaces only links it created",
                vlan.name, vlan.vlan_id, vlan.parent
            );
            settle(plan, &key, ItemState::Failed, Some(message));
        }
        None => step(plan, &key, create, own),
    }
}

fn plan_address(plan: &mut Plan, address: &Address, observed: &Observed) {
    let key = address.key();
    let Ok(net) = address.cidr.parse::<IpNet>() else {
        // Validation rejects this before a plan is made; kept total for safety.
        let message = format!("{:?} is not a valid CIDR", address.cidr);
        return settle(plan, &key, ItemState::Failed, Some(message));
    };
    let Some(link) = observed.link_by_name(&address.interface) else {
        let message = format!("interface {:?} does not exist yet", address.interface);
        return settle(plan, &key, ItemState::Pending, Some(message));
    };
    if observed.has_address(link.index, net) {
        return settle(plan, &key, ItemState::Applied, None);
    }
    let action = Action::AddAddress {
        index: link.index,
        net,
    };
    step(
        plan,
        &key,
        action,
        Ledger::Own(Item::Address(address.clone())),
    );
}

fn plan_route(plan: &mut Plan, route: &Route, observed: &Observed, owned: &Owned, protocol: u8) {
    let key = route.key();
    let Some(id) = route_id(route) else {
        let message = format!("{:?} is not a valid destination", route.destination);
        return settle(plan, &key, ItemState::Failed, Some(message));
    };
    let oif = match &route.interface {
        None => None,
        Some(name) => match observed.link_by_name(name) {
            Some(link) => Some(link.index),
            None => {
                let message = format!("interface {name:?} does not exist yet");
                return settle(plan, &key, ItemState::Pending, Some(message));
            }
        },
    };
    let spec = RouteSpec {
        id,
        gateway: route.gateway,
        oif,
        protocol,
    };
    let own = Ledger::Own(Item::Route(route.clone()));
    let Some(existing) = observed.routes.get(&id) else {
        return step(plan, &key, Action::AddRoute(spec), own);
    };
    if existing.gateway == route.gateway && (oif.is_none() || existing.oif == oif) {
        return settle(plan, &key, ItemState::Applied, None);
    }
    let ours = existing.protocol == protocol
        && matches!(owned.get(&key), Some(Item::Route(old)) if route_id(old) == Some(id));
    if ours {
        step(plan, &key, Action::ReplaceRoute(spec), own);
    } else {
        let message = route_conflict(&id, &describe_next_hop(existing, observed));
        settle(plan, &key, ItemState::Failed, Some(message));
    }
}

/// The message of a desired route that someone else's route stands in the way of.
fn route_conflict(id: &RouteId, existing: &str) -> String {
    format!(
        "conflict: a route to {} in table {} with metric {} already exists ({existing}) and the agent did not create it; it is left alone",
        id.destination, id.table, id.metric
    )
}

/// `via GW dev NAME proto N`, as far as known.
fn describe_next_hop(route: &RouteEntry, observed: &Observed) -> String {
    let mut parts = Vec::new();
    if let Some(gateway) = route.gateway {
        parts.push(format!("via {gateway}"));
    }
    if let Some(oif) = route.oif {
        match observed.links.get(&oif) {
            Some(link) => parts.push(format!("dev {}", link.name)),
            None => parts.push(format!("dev index {oif}")),
        }
    }
    parts.push(format!("proto {}", route.protocol));
    parts.join(" ")
}

/// What `EEXIST` from the kernel means for an exclusive create: something matching the
/// item's identity appeared since the last read, made by someone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exists {
    /// An address: the same address holds, so the item is `applied`, but not the agent's.
    Holds,
    /// A route: one with the same table, destination and metric, whose next hop may differ;
    /// a `failed` conflict until the next plan looks at it (applied if it matches).
    Conflict(String),
}

/// The meaning of `EEXIST` for `action`; `None` for actions where it is a plain failure.
pub fn on_exists(action: &Action) -> Option<Exists> {
    match action {
        Action::AddAddress { .. } => Some(Exists::Holds),
        Action::AddRoute(spec) => Some(Exists::Conflict(route_conflict(
            &spec.id,
            "added by someone else since the agent last looked",
        ))),
        _ => None,
    }
}

/// Whether a kernel error means "not yet" (the item may succeed once something else appears)
/// rather than "refused".
pub fn state_for_errno(errno: i32) -> ItemState {
    const ENODEV: i32 = 19;
    const ENETDOWN: i32 = 100;
    const ENETUNREACH: i32 = 101;
    const EHOSTUNREACH: i32 = 113;
    match errno {
        // No such device, the device is down, no route to the gateway (yet).
        ENODEV | ENETDOWN | ENETUNREACH | EHOSTUNREACH => ItemState::Pending,
        _ => ItemState::Failed,
    }
}

/// The keys of all items a set of results marks as not applied.
pub fn unsettled(results: &[ItemResult]) -> BTreeSet<ItemKey> {
    results
        .iter()
        .filter(|r| r.state != ItemState::Applied)
        .map(|r| r.item.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::{Addr, Change, Link, RouteEntry};

    const PROTO: u8 = 200;

    fn link(index: u32, name: &str) -> Link {
        Link {
            index,
            name: name.into(),
            operstate: "up".into(),
            admin_up: true,
            mtu: 1500,
            mac: None,
            kind: None,
            vlan_id: None,
            parent: None,
        }
    }

    fn host() -> Observed {
        let mut observed = Observed::default();
        observed.apply(Change::Link(link(2, "v0")));
        observed
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
            interface: interface.map(Into::into),
            metric: None,
            table: None,
        }
    }

    fn config(addresses: Vec<Address>, routes: Vec<Route>) -> DesiredConfig {
        DesiredConfig {
            generation: 1,
            vlans: vec![],
            addresses,
            routes,
        }
    }

    fn actions(plan: &Plan) -> Vec<&Action> {
        plan.steps.iter().map(|s| &s.action).collect()
    }

    #[test]
    fn missing_items_are_created_in_apply_order_and_owned() {
        let desired = config(
            vec![address("v0", "10.1.0.2/24")],
            vec![route("10.20.0.0/16", Some("10.1.0.1"), None)],
        );
        let plan = plan(&desired, &host(), &Owned::new(), PROTO);
        assert_eq!(
            actions(&plan),
            [
                &Action::AddAddress {
                    index: 2,
                    net: "10.1.0.2/24".parse().unwrap()
                },
                &Action::AddRoute(RouteSpec {
                    id: RouteId {
                        table: 254,
                        destination: "10.20.0.0/16".parse().unwrap(),
                        metric: 0
                    },
                    gateway: Some("10.1.0.1".parse().unwrap()),
                    oif: None,
                    protocol: PROTO,
                })
            ]
        );
        assert!(
            plan.steps
                .iter()
                .all(|s| matches!(s.ledger, Ledger::Own(_)))
        );
        assert!(plan.settled.is_empty());
        assert_eq!(plan.order.len(), 2);
    }

    #[test]
    fn items_already_in_the_kernel_need_nothing_and_are_not_owned() {
        let mut observed = host();
        observed.apply(Change::Address(Addr {
            index: 2,
            net: "10.1.0.2/24".parse().unwrap(),
        }));
        observed.apply(Change::Route(RouteEntry {
            id: RouteId {
                table: 254,
                destination: "fd01::/48".parse().unwrap(),
                metric: 1024,
            },
            gateway: None,
            oif: Some(2),
            protocol: 4,
        }));
        let desired = config(
            vec![address("v0", "10.1.0.2/24")],
            vec![route("fd01::/48", None, Some("v0"))],
        );
        let plan = plan(&desired, &observed, &Owned::new(), PROTO);
        assert!(plan.steps.is_empty(), "{plan:?}");
        assert!(plan.settled.values().all(|r| r.state == ItemState::Applied));
    }

    #[test]
    fn a_missing_interface_is_pending_with_its_name() {
        let desired = config(
            vec![address("v9", "10.1.0.2/24")],
            vec![route("10.20.0.0/16", None, Some("v9"))],
        );
        let plan = plan(&desired, &host(), &Owned::new(), PROTO);
        assert!(plan.steps.is_empty());
        for result in plan.settled.values() {
            assert_eq!(result.state, ItemState::Pending);
            assert_eq!(
                result.message.as_deref(),
                Some("interface \"v9\" does not exist yet")
            );
        }
    }

    #[test]
    fn only_owned_items_are_removed_and_routes_only_while_they_are_ours() {
        let mut observed = host();
        for cidr in ["10.1.0.2/24", "10.1.0.3/24"] {
            observed.apply(Change::Address(Addr {
                index: 2,
                net: cidr.parse().unwrap(),
            }));
        }
        let ours = route("10.20.0.0/16", None, Some("v0"));
        let theirs = route("10.30.0.0/16", None, Some("v0"));
        for (r, proto) in [(&ours, PROTO), (&theirs, 4)] {
            observed.apply(Change::Route(RouteEntry {
                id: route_id(r).unwrap(),
                gateway: None,
                oif: Some(2),
                protocol: proto,
            }));
        }
        let owned: Owned = [
            Item::Address(address("v0", "10.1.0.2/24")),
            Item::Route(ours.clone()),
            // Owned once, then replaced by hand with another protocol: no longer ours.
            Item::Route(theirs.clone()),
            // Owned once, already gone.
            Item::Address(address("v0", "10.1.0.9/24")),
        ]
        .into_iter()
        .map(|i| (i.key(), i))
        .collect();
        let plan = plan(&config(vec![], vec![]), &observed, &owned, PROTO);
        assert_eq!(plan.steps.len(), 2, "{plan:?}");
        assert!(
            matches!(plan.steps[0].action, Action::DeleteRoute(ref s) if s.id == route_id(&ours).unwrap())
        );
        assert_eq!(
            plan.steps[1].action,
            Action::DeleteAddress {
                index: 2,
                net: "10.1.0.2/24".parse().unwrap()
            }
        );
        assert!(plan.steps.iter().all(|s| !s.desired));
        assert_eq!(
            plan.disown.iter().collect::<BTreeSet<_>>(),
            [theirs.key(), address("v0", "10.1.0.9/24").key()]
                .iter()
                .collect()
        );
    }

    #[test]
    fn a_changed_route_metric_removes_the_old_route() {
        let mut observed = host();
        let old = route("10.20.0.0/16", None, Some("v0"));
        observed.apply(Change::Route(RouteEntry {
            id: route_id(&old).unwrap(),
            gateway: None,
            oif: Some(2),
            protocol: PROTO,
        }));
        let owned: Owned = [(old.key(), Item::Route(old.clone()))].into();
        let new = Route {
            metric: Some(50),
            ..old.clone()
        };
        let plan = plan(&config(vec![], vec![new]), &observed, &owned, PROTO);
        assert!(matches!(plan.steps[0].action, Action::DeleteRoute(ref s) if s.id.metric == 0));
        assert!(matches!(plan.steps[1].action, Action::AddRoute(ref s) if s.id.metric == 50));
    }

    #[test]
    fn a_foreign_route_with_another_next_hop_is_a_conflict_left_alone() {
        let r = route("10.20.0.0/16", Some("10.1.0.1"), None);
        let theirs = RouteEntry {
            id: route_id(&r).unwrap(),
            gateway: Some("10.1.0.254".parse().unwrap()),
            oif: Some(2),
            protocol: 4,
        };
        let mut observed = host();
        observed.apply(Change::Route(theirs.clone()));
        // Not in the ledger, or in the ledger but since replaced by someone else (another
        // protocol): either way not the agent's.
        let owned_once: Owned = [(r.key(), Item::Route(r.clone()))].into();
        for owned in [Owned::new(), owned_once] {
            let plan = plan(&config(vec![], vec![r.clone()]), &observed, &owned, PROTO);
            assert!(plan.steps.is_empty(), "no netlink change: {plan:?}");
            let result = &plan.settled[&r.key()];
            assert_eq!(result.state, ItemState::Failed);
            assert_eq!(
                result.message.as_deref(),
                Some(
                    "conflict: a route to 10.20.0.0/16 in table 254 with metric 0 already exists \
                     (via 10.1.0.254 dev v0 proto 4) and the agent did not create it; it is left alone"
                )
            );
        }
        // The agent's own number on a route it has no ledger entry for is not enough either.
        let mut stray = host();
        stray.apply(Change::Route(RouteEntry {
            protocol: PROTO,
            ..theirs
        }));
        let plan = plan(
            &config(vec![], vec![r.clone()]),
            &stray,
            &Owned::new(),
            PROTO,
        );
        assert!(plan.steps.is_empty());
        assert_eq!(plan.settled[&r.key()].state, ItemState::Failed);
    }

    #[test]
    fn the_agents_own_route_with_another_next_hop_is_replaced() {
        let old = route("10.20.0.0/16", Some("10.1.0.254"), None);
        let mut observed = host();
        observed.apply(Change::Route(RouteEntry {
            id: route_id(&old).unwrap(),
            gateway: old.gateway,
            oif: Some(2),
            protocol: PROTO,
        }));
        let owned: Owned = [(old.key(), Item::Route(old.clone()))].into();
        let new = route("10.20.0.0/16", Some("10.1.0.1"), None);
        let plan = plan(&config(vec![], vec![new.clone()]), &observed, &owned, PROTO);
        assert_eq!(plan.steps.len(), 1, "{plan:?}");
        assert!(
            matches!(plan.steps[0].action, Action::ReplaceRoute(ref s) if s.gateway == new.gateway)
        );
        assert_eq!(plan.steps[0].ledger, Ledger::Own(Item::Route(new)));
    }

    #[test]
    fn eexist_means_applied_for_an_address_and_a_conflict_for_a_route() {
        let net = "10.1.0.2/24".parse().unwrap();
        assert_eq!(
            on_exists(&Action::AddAddress { index: 2, net }),
            Some(Exists::Holds)
        );
        let spec = RouteSpec {
            id: route_id(&route("10.20.0.0/16", Some("10.1.0.1"), None)).unwrap(),
            gateway: Some("10.1.0.1".parse().unwrap()),
            oif: None,
            protocol: PROTO,
        };
        match on_exists(&Action::AddRoute(spec.clone())) {
            Some(Exists::Conflict(message)) => assert!(
                message.starts_with("conflict: a route to 10.20.0.0/16 in table 254")
                    && message.ends_with("it is left alone"),
                "{message}"
            ),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert_eq!(on_exists(&Action::ReplaceRoute(spec)), None);
        assert_eq!(on_exists(&Action::DeleteLink { index: 3 }), None);
    }

    fn vlan(name: &str, parent: &str, id: u16) -> VlanLink {
        VlanLink {
            name: name.into(),
            parent: parent.into(),
            vlan_id: id,
            mtu: None,
        }
    }

    #[test]
    fn vlans_wait_for_their_parent_and_addresses_for_the_vlan() {
        let desired = DesiredConfig {
            vlans: vec![vlan("v0.10", "v0", 10), vlan("v1.10", "v1", 10)],
            addresses: vec![address("v0.10", "10.1.0.2/24")],
            ..config(vec![], vec![])
        };
        let plan = plan(&desired, &host(), &Owned::new(), PROTO);
        assert_eq!(
            actions(&plan),
            [&Action::CreateVlan {
                name: "v0.10".into(),
                parent: 2,
                vlan_id: 10,
                mtu: None
            }]
        );
        assert!(plan.steps[0].action.creates_link());
        assert_eq!(
            plan.settled[&vlan("v1.10", "v1", 10).key()]
                .message
                .as_deref(),
            Some("parent link \"v1\" does not exist yet")
        );
        assert_eq!(
            plan.settled[&address("v0.10", "10.1.0.2/24").key()].state,
            ItemState::Pending
        );
    }

    #[test]
    fn an_existing_vlan_is_adjusted_and_a_foreign_link_is_not_replaced() {
        let mut observed = host();
        observed.apply(Change::Link(Link {
            vlan_id: Some(10),
            parent: Some(2),
            admin_up: false,
            ..link(3, "v0.10")
        }));
        observed.apply(Change::Link(link(4, "v0.20")));
        let desired = DesiredConfig {
            vlans: vec![
                VlanLink {
                    mtu: Some(1400),
                    ..vlan("v0.10", "v0", 10)
                },
                vlan("v0.20", "v0", 20),
            ],
            ..config(vec![], vec![])
        };
        let plan = plan(&desired, &observed, &Owned::new(), PROTO);
        assert_eq!(
            actions(&plan),
            [&Action::SetLink {
                index: 3,
                mtu: Some(1400)
            }]
        );
        assert_eq!(plan.steps[0].ledger, Ledger::Keep);
        let foreign = &plan.settled[&vlan("v0.20", "v0", 20).key()];
        assert_eq!(foreign.state, ItemState::Failed);
        assert!(
            foreign
                .message
                .as_deref()
                .unwrap()
                .contains("only links it created")
        );
    }

    #[test]
    fn an_owned_vlan_with_a_new_id_is_deleted_then_created() {
        let mut observed = host();
        observed.apply(Change::Link(Link {
            vlan_id: Some(10),
            parent: Some(2),
            ..link(3, "v0.x")
        }));
        let old = vlan("v0.x", "v0", 10);
        let owned: Owned = [(old.key(), Item::Vlan(old))].into();
        let desired = DesiredConfig {
            vlans: vec![vlan("v0.x", "v0", 11)],
            ..config(vec![], vec![])
        };
        let plan = plan(&desired, &observed, &owned, PROTO);
        assert_eq!(plan.steps[0].action, Action::DeleteLink { index: 3 });
        assert!(matches!(
            plan.steps[1].action,
            Action::CreateVlan { vlan_id: 11, .. }
        ));
    }

    #[test]
    fn errno_classification() {
        assert_eq!(state_for_errno(101), ItemState::Pending);
        assert_eq!(state_for_errno(19), ItemState::Pending);
        assert_eq!(state_for_errno(22), ItemState::Failed);
    }

    #[test]
    fn ledger_items_round_trip_as_tagged_json() {
        let item = Item::Route(route("default", Some("10.0.0.1"), None));
        let json = serde_json::to_string(&item).unwrap();
        assert!(
            json.starts_with(r#"{"kind":"route","destination":"default""#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Item>(&json).unwrap(), item);
    }
}

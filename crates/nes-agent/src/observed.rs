//! The kernel's network state as the agent sees it: links, addresses and routes, kept current by
//! netlink notifications ([`Change`]) and replaced by a full dump on resync.
//!
//! Everything here is pure; [`crate::netlink`] turns netlink messages into these types.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use nes_api::{AddressStatus, BootId, ItemResult, LinkStatus, RouteStatus, Status};

/// The kernel's local routing table, which holds the host's own and broadcast addresses: noise
/// in a status report, and never written by the agent.
pub const LOCAL_TABLE: u32 = 255;

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index (stable for the link's lifetime; names can change).
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// RFC 2863 operational state in lower case (`up`, `down`, `lowerlayerdown`, `unknown`...).
    pub operstate: String,
    /// Administratively up (`IFF_UP`, what `ip link set up` sets).
    pub admin_up: bool,
    /// MTU in bytes.
    pub mtu: u32,
    /// Hardware address, `aa:bb:cc:dd:ee:ff`, when the link has one.
    pub mac: Option<String>,
    /// The link kind (`veth`, `vlan`, `dummy`...), absent for physical devices.
    pub kind: Option<String>,
    /// The VLAN id of a VLAN link.
    pub vlan_id: Option<u16>,
    /// The index of the link this one is stacked on (a VLAN's parent).
    pub parent: Option<u32>,
}

/// An address on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addr {
    /// The link's index.
    pub index: u32,
    /// Address and prefix length.
    pub net: IpNet,
}

/// What identifies a route in the kernel for the agent's purposes: table, destination and
/// metric. (The kernel also keys IPv4 routes by TOS, which the agent never sets.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteId {
    /// Routing table.
    pub table: u32,
    /// Destination network.
    pub destination: IpNet,
    /// Metric (`RTA_PRIORITY`); 0 when absent.
    pub metric: u32,
}

/// A unicast route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// Table, destination and metric.
    pub id: RouteId,
    /// Next-hop address.
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Who installed it (`RTPROT_*`; the agent uses its own number).
    pub protocol: u8,
}

/// One notification from the kernel, already decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A link appeared or changed.
    Link(Link),
    /// A link was removed.
    LinkGone(u32),
    /// An address appeared or changed.
    Address(Addr),
    /// An address was removed.
    AddressGone(Addr),
    /// A route appeared or changed.
    Route(RouteEntry),
    /// A route was removed.
    RouteGone(RouteId),
}

/// The kernel's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Links by index.
    pub links: BTreeMap<u32, Link>,
    /// Addresses by (link index, address).
    pub addresses: BTreeMap<(u32, IpNet), Addr>,
    /// Routes by identity.
    pub routes: BTreeMap<RouteId, RouteEntry>,
}

/// What applying a [`Change`] means for the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The cache is current.
    Current,
    /// The cache may be stale and must be refreshed by a dump: the kernel flushes routes of a
    /// link that goes down or away without telling anyone (no `RTM_DELROUTE` for them).
    NeedsResync,
}

impl Observed {
    /// The link named `name`.
    pub fn link_by_name(&self, name: &str) -> Option<&Link> {
        self.links.values().find(|link| link.name == name)
    }

    /// The names of all links (the "host links" of validation).
    pub fn link_names(&self) -> BTreeSet<String> {
        self.links.values().map(|link| link.name.clone()).collect()
    }

    /// True when `net` is on link `index`.
    pub fn has_address(&self, index: u32, net: IpNet) -> bool {
        self.addresses.contains_key(&(index, net))
    }

    /// Records one change.
    pub fn apply(&mut self, change: Change) -> Applied {
        match change {
            Change::Link(link) => {
                let was_up = self.links.get(&link.index).map(|old| old.admin_up);
                let resync = was_up == Some(true) && !link.admin_up;
                self.links.insert(link.index, link);
                if resync {
                    return Applied::NeedsResync;
                }
            }
            Change::LinkGone(index) => {
                self.links.remove(&index);
                self.addresses.retain(|(link, _), _| *link != index);
                self.routes.retain(|_, route| route.oif != Some(index));
                return Applied::NeedsResync;
            }
            Change::Address(addr) => {
                self.addresses.insert((addr.index, addr.net), addr);
            }
            Change::AddressGone(addr) => {
                self.addresses.remove(&(addr.index, addr.net));
            }
            Change::Route(route) => {
                if route.id.table != LOCAL_TABLE {
                    self.routes.insert(route.id, route);
                }
            }
            Change::RouteGone(id) => {
                self.routes.remove(&id);
            }
        }
        Applied::Current
    }

    /// The status report of this state. `route_protocol` is the agent's own protocol number,
    /// reported as `nes`.
    pub fn to_status(
        &self,
        boot_id: &BootId,
        generation: Option<u64>,
        results: Vec<ItemResult>,
        route_protocol: u8,
    ) -> Status {
        let name_of = |index: u32| self.links.get(&index).map(|link| link.name.clone());
        let mut links: Vec<LinkStatus> = self
            .links
            .values()
            .map(|link| LinkStatus {
                name: link.name.clone(),
                index: link.index,
                operstate: link.operstate.clone(),
                mtu: link.mtu,
                mac: link.mac.clone(),
                vlan_id: link.vlan_id,
                parent: link.vlan_id.and(link.parent).and_then(name_of),
            })
            .collect();
        links.sort_by(|a, b| a.name.cmp(&b.name));
        let mut addresses: Vec<AddressStatus> = self
            .addresses
            .values()
            .filter_map(|addr| {
                Some(AddressStatus {
                    interface: name_of(addr.index)?,
                    cidr: addr.net.to_string(),
                })
            })
            .collect();
        addresses.sort_by(|a, b| (&a.interface, &a.cidr).cmp(&(&b.interface, &b.cidr)));
        let routes = self
            .routes
            .values()
            .map(|route| RouteStatus {
                destination: route.id.destination.to_string(),
                gateway: route.gateway,
                interface: route.oif.and_then(name_of),
                metric: (route.id.metric != 0).then_some(route.id.metric),
                table: route.id.table,
                protocol: protocol_name(route.protocol, route_protocol),
            })
            .collect();
        Status {
            boot_id: boot_id.clone(),
            generation,
            links,
            addresses,
            routes,
            results,
        }
    }
}

/// The name `ip route` prints for a route protocol, `nes` for the agent's own.
pub fn protocol_name(protocol: u8, own: u8) -> String {
    if protocol == own {
        return "nes".to_owned();
    }
    match protocol {
        0 => "unspec",
        1 => "redirect",
        2 => "kernel",
        3 => "boot",
        4 => "static",
        9 => "ra",
        16 => "dhcp",
        186 => "bgp",
        188 => "ospf",
        _ => return protocol.to_string(),
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, up: bool) -> Link {
        Link {
            index,
            name: name.into(),
            operstate: if up { "up" } else { "down" }.into(),
            admin_up: up,
            mtu: 1500,
            mac: Some("02:00:00:00:00:01".into()),
            kind: None,
            vlan_id: None,
            parent: None,
        }
    }

    fn route(destination: &str, oif: u32) -> RouteEntry {
        RouteEntry {
            id: RouteId {
                table: 254,
                destination: destination.parse().unwrap(),
                metric: 0,
            },
            gateway: None,
            oif: Some(oif),
            protocol: 200,
        }
    }

    #[test]
    fn link_going_down_or_away_needs_a_resync_because_routes_vanish_silently() {
        let mut observed = Observed::default();
        assert_eq!(
            observed.apply(Change::Link(link(2, "v0", true))),
            Applied::Current
        );
        assert_eq!(
            observed.apply(Change::Link(link(2, "v0", true))),
            Applied::Current
        );
        assert_eq!(
            observed.apply(Change::Link(link(2, "v0", false))),
            Applied::NeedsResync
        );
        observed.apply(Change::Route(route("10.0.0.0/8", 2)));
        observed.apply(Change::Address(Addr {
            index: 2,
            net: "10.1.0.1/24".parse().unwrap(),
        }));
        assert_eq!(observed.apply(Change::LinkGone(2)), Applied::NeedsResync);
        assert!(observed.links.is_empty() && observed.routes.is_empty());
        assert!(observed.addresses.is_empty());
    }

    #[test]
    fn local_table_routes_are_ignored() {
        let mut observed = Observed::default();
        let mut local = route("10.1.0.1/32", 2);
        local.id.table = LOCAL_TABLE;
        observed.apply(Change::Route(local));
        assert!(observed.routes.is_empty());
    }

    #[test]
    fn status_names_interfaces_and_parents_and_sorts() {
        let mut observed = Observed::default();
        observed.apply(Change::Link(link(3, "v1", true)));
        observed.apply(Change::Link(Link {
            vlan_id: Some(10),
            parent: Some(3),
            kind: Some("vlan".into()),
            ..link(4, "v1.10", true)
        }));
        observed.apply(Change::Address(Addr {
            index: 4,
            net: "10.1.0.1/24".parse().unwrap(),
        }));
        observed.apply(Change::Address(Addr {
            index: 3,
            net: "fd00::1/64".parse().unwrap(),
        }));
        observed.apply(Change::Route(route("10.0.0.0/8", 4)));
        let status = observed.to_status(&BootId::new("b"), Some(2), vec![], 200);
        assert_eq!(
            status
                .links
                .iter()
                .map(|l| (l.name.as_str(), l.parent.as_deref()))
                .collect::<Vec<_>>(),
            [("v1", None), ("v1.10", Some("v1"))]
        );
        assert_eq!(status.addresses[0].interface, "v1");
        assert_eq!(status.addresses[1].cidr, "10.1.0.1/24");
        assert_eq!(status.routes[0].interface.as_deref(), Some("v1.10"));
        assert_eq!(status.routes[0].protocol, "nes");
        assert_eq!(status.routes[0].metric, None);
        assert_eq!(status.generation, Some(2));
    }

    #[test]
    fn protocol_names_follow_iproute2() {
        assert_eq!(protocol_name(2, 200), "kernel");
        assert_eq!(protocol_name(200, 200), "nes");
        assert_eq!(protocol_name(77, 200), "77");
    }
}

//! Netlink messages from the kernel (dump answers and multicast notifications) turned into the
//! agent's [`observed`](crate::observed) types. Pure.

use std::net::IpAddr;

use ipnet::IpNet;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoData, InfoVlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteType, RouteVia,
};

use crate::observed::{Addr, Change, Link, RouteEntry, RouteId};

/// What a notification means to the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A change to links, addresses or routes.
    Change(Change),
    /// The kernel dropped notifications (socket buffer overrun): the cache must be rebuilt
    /// from a dump.
    Overrun,
    /// Something the agent does not track (neighbours, unicast routes of other types...).
    Ignored,
}

/// Decodes one notification.
pub fn event(message: &NetlinkMessage<RouteNetlinkMessage>) -> Event {
    let inner = match &message.payload {
        NetlinkPayload::Overrun(_) => return Event::Overrun,
        NetlinkPayload::InnerMessage(inner) => inner,
        _ => return Event::Ignored,
    };
    let change = match inner {
        RouteNetlinkMessage::NewLink(m) => link(m).map(Change::Link),
        RouteNetlinkMessage::DelLink(m) => Some(Change::LinkGone(m.header.index)),
        RouteNetlinkMessage::NewAddress(m) => address(m).map(Change::Address),
        RouteNetlinkMessage::DelAddress(m) => address(m).map(Change::AddressGone),
        RouteNetlinkMessage::NewRoute(m) => route(m).map(Change::Route),
        RouteNetlinkMessage::DelRoute(m) => route(m).map(|r| Change::RouteGone(r.id)),
        _ => None,
    };
    change.map_or(Event::Ignored, Event::Change)
}

/// A link, or `None` for a message without a name (never sent by the kernel for real links).
pub fn link(message: &LinkMessage) -> Option<Link> {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        operstate: "unknown".to_owned(),
        admin_up: message.header.flags.contains(LinkFlags::Up),
        mtu: 0,
        mac: None,
        kind: None,
        vlan_id: None,
        parent: None,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::OperState(state) => link.operstate = state.to_string().to_lowercase(),
            LinkAttribute::Address(bytes) if !bytes.is_empty() => link.mac = Some(mac(bytes)),
            LinkAttribute::Link(parent) => link.parent = Some(*parent),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(kind) => link.kind = Some(kind.to_string()),
                        LinkInfo::Data(InfoData::Vlan(data)) => {
                            link.vlan_id = data.iter().find_map(|d| match d {
                                InfoVlan::Id(id) => Some(*id),
                                _ => None,
                            });
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    (!link.name.is_empty()).then_some(link)
}

/// `aa:bb:cc:dd:ee:ff`.
fn mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An address. IPv4 reports the interface's own address as `IFA_LOCAL` (`IFA_ADDRESS` is the
/// peer on point-to-point links); IPv6 only has `IFA_ADDRESS`.
pub fn address(message: &AddressMessage) -> Option<Addr> {
    let mut local = None;
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    let ip = local.or(address)?;
    let net = IpNet::new(ip, message.header.prefix_len).ok()?;
    Some(Addr {
        index: message.header.index,
        net,
    })
}

/// A unicast route, or `None` for other route types (local, broadcast, multicast...).
pub fn route(message: &RouteMessage) -> Option<RouteEntry> {
    if message.header.kind != RouteType::Unicast {
        return None;
    }
    let mut table = u32::from(message.header.table);
    let mut destination = None;
    let mut gateway = None;
    let mut oif = None;
    let mut metric = 0;
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => destination = ip(a),
            RouteAttribute::Gateway(a) => gateway = ip(a),
            RouteAttribute::Via(RouteVia::Inet(v4)) => gateway = Some(IpAddr::V4(*v4)),
            RouteAttribute::Via(RouteVia::Inet6(v6)) => gateway = Some(IpAddr::V6(*v6)),
            RouteAttribute::Oif(index) => oif = Some(*index),
            RouteAttribute::Priority(p) => metric = *p,
            _ => {}
        }
    }
    let prefix = message.header.destination_prefix_length;
    let destination = match destination {
        Some(ip) => IpNet::new(ip, prefix).ok()?,
        None => match message.header.address_family {
            rtnetlink::packet_route::AddressFamily::Inet => IpNet::V4(Default::default()),
            rtnetlink::packet_route::AddressFamily::Inet6 => IpNet::V6(Default::default()),
            _ => return None,
        },
    };
    Some(RouteEntry {
        id: RouteId {
            table,
            destination,
            metric,
        },
        gateway,
        oif,
        protocol: u8::from(message.header.protocol),
    })
}

fn ip(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::messages;
    use crate::observed::RouteId;
    use crate::plan::RouteSpec;
    use rtnetlink::packet_route::link::State;

    #[test]
    fn decodes_a_vlan_link_as_built() {
        let mut message = messages::create_vlan("v0.100", 7, 100, Some(1400));
        message.header.index = 9;
        message
            .attributes
            .push(LinkAttribute::OperState(State::LowerLayerDown));
        message
            .attributes
            .push(LinkAttribute::Address(vec![0x02, 0, 0, 0, 0xab, 0x01]));
        let link = link(&message).unwrap();
        assert_eq!(link.index, 9);
        assert_eq!(link.name, "v0.100");
        assert_eq!(link.vlan_id, Some(100));
        assert_eq!(link.parent, Some(7));
        assert_eq!(link.kind.as_deref(), Some("vlan"));
        assert_eq!(link.mtu, 1400);
        assert_eq!(link.operstate, "lowerlayerdown");
        assert_eq!(link.mac.as_deref(), Some("02:00:00:00:ab:01"));
        assert!(link.admin_up);
    }

    #[test]
    fn decodes_addresses_preferring_the_local_address() {
        let message = messages::address(3, "10.1.0.2/24".parse().unwrap(), 200);
        let addr = address(&message).unwrap();
        assert_eq!(
            (addr.index, addr.net.to_string()),
            (3, "10.1.0.2/24".into())
        );
        let v6 = messages::address(3, "fd00::2/64".parse().unwrap(), 200);
        assert_eq!(address(&v6).unwrap().net.to_string(), "fd00::2/64");
    }

    #[test]
    fn decodes_routes_as_built_and_skips_non_unicast() {
        for (destination, gateway, table, metric) in [
            ("10.20.0.0/16", Some("10.1.0.1"), 254, 0),
            ("0.0.0.0/0", Some("10.1.0.1"), 1000, 7),
            ("fd01::/48", None, 254, 1024),
        ] {
            let spec = RouteSpec {
                id: RouteId {
                    table,
                    destination: destination.parse().unwrap(),
                    metric,
                },
                gateway: gateway.map(|g| g.parse().unwrap()),
                oif: Some(3),
                protocol: 200,
            };
            let entry = route(&messages::route(&spec)).unwrap();
            assert_eq!(entry.id, spec.id);
            assert_eq!(entry.gateway, spec.gateway);
            assert_eq!(entry.oif, Some(3));
            assert_eq!(entry.protocol, 200);
        }
        let mut local = messages::route(&RouteSpec {
            id: RouteId {
                table: 255,
                destination: "10.1.0.2/32".parse().unwrap(),
                metric: 0,
            },
            gateway: None,
            oif: Some(3),
            protocol: 2,
        });
        local.header.kind = RouteType::Local;
        assert_eq!(route(&local), None);
    }

    #[test]
    fn notifications_map_to_changes_and_overrun() {
        let overrun: NetlinkMessage<RouteNetlinkMessage> =
            NetlinkMessage::new(Default::default(), NetlinkPayload::Overrun(vec![]));
        assert_eq!(event(&overrun), Event::Overrun);
        let mut gone = LinkMessage::default();
        gone.header.index = 5;
        let message = NetlinkMessage::from(RouteNetlinkMessage::DelLink(gone));
        assert_eq!(event(&message), Event::Change(Change::LinkGone(5)));
    }
}

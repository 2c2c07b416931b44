//! The netlink messages the agent sends, built from plan [`Action`](crate::plan::Action)s.
//! Pure: each builder is unit-tested on the message and on the bytes the kernel receives
//! (which is how VLAN creation is tested on kernels without the 8021q module).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage, AddressProtocol};
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::packet_route::route::{
    RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{AddressMessageBuilder, LinkUnspec, LinkVlan};

use crate::plan::RouteSpec;

/// The message creating VLAN `name` with id `vlan_id` on link `parent`, administratively up
/// (`ip link add link PARENT name NAME [mtu MTU] up type vlan id ID`).
pub fn create_vlan(name: &str, parent: u32, vlan_id: u16, mtu: Option<u32>) -> LinkMessage {
    let builder = LinkVlan::new(name, parent, vlan_id).up();
    match mtu {
        Some(mtu) => builder.mtu(mtu).build(),
        None => builder.build(),
    }
}

/// The message setting link `index` up, and its MTU when given.
pub fn set_link(index: u32, mtu: Option<u32>) -> LinkMessage {
    let builder = LinkUnspec::new_with_index(index).up();
    match mtu {
        Some(mtu) => builder.mtu(mtu).build(),
        None => builder.build(),
    }
}

/// The message adding `net` to link `index`, marked with the agent's protocol (`IFA_PROTO`,
/// Linux 6.3+; older kernels ignore it) so `ip addr` shows who added it.
pub fn address(index: u32, net: IpNet, protocol: u8) -> AddressMessage {
    let mut message = match net.addr() {
        IpAddr::V4(ip) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(ip, net.prefix_len())
            .build(),
        IpAddr::V6(ip) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(ip, net.prefix_len())
            .build(),
    };
    message
        .attributes
        .push(AddressAttribute::Protocol(AddressProtocol::Other(protocol)));
    message
}

/// The message for `spec` (`ip route replace DEST [via GW] [dev IF] [metric M] [table T]
/// proto P`). Device routes without a gateway get link scope, as `ip route` gives them.
pub fn route(spec: &RouteSpec) -> RouteMessage {
    let destination = spec.id.destination;
    let mut message = RouteMessage::default();
    message.header.address_family = match destination {
        IpNet::V4(_) => AddressFamily::Inet,
        IpNet::V6(_) => AddressFamily::Inet6,
    };
    message.header.destination_prefix_length = destination.prefix_len();
    message.header.protocol = RouteProtocol::from(spec.protocol);
    message.header.kind = RouteType::Unicast;
    message.header.scope = if spec.gateway.is_none() && destination.addr().is_ipv4() {
        RouteScope::Link
    } else {
        RouteScope::Universe
    };
    // Tables above 255 only fit the attribute; the header then says "unspecified".
    match u8::try_from(spec.id.table) {
        Ok(table) => message.header.table = table,
        Err(_) => {
            message.header.table = RouteHeader::RT_TABLE_UNSPEC;
            message
                .attributes
                .push(RouteAttribute::Table(spec.id.table));
        }
    }
    if destination.prefix_len() > 0 {
        message
            .attributes
            .push(RouteAttribute::Destination(destination.addr().into()));
    }
    if let Some(gateway) = spec.gateway {
        message
            .attributes
            .push(RouteAttribute::Gateway(gateway.into()));
    }
    if let Some(oif) = spec.oif {
        message.attributes.push(RouteAttribute::Oif(oif));
    }
    if spec.id.metric != 0 {
        message
            .attributes
            .push(RouteAttribute::Priority(spec.id.metric));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observed::RouteId;
    use rtnetlink::packet_core::{Emitable, Parseable};
    use rtnetlink::packet_route::link::{
        InfoData, InfoKind, InfoVlan, LinkAttribute, LinkFlags, LinkInfo,
    };

    fn bytes(message: &impl Emitable) -> Vec<u8> {
        let mut buffer = vec![0; message.buffer_len()];
        message.emit(&mut buffer);
        buffer
    }

    /// Finds the netlink attribute `kind` in a run of attributes and returns its payload.
    fn attribute(mut attrs: &[u8], kind: u16) -> Option<&[u8]> {
        while attrs.len() >= 4 {
            let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
            let found = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
            if len < 4 || len > attrs.len() {
                return None;
            }
            if found == kind {
                return Some(&attrs[4..len]);
            }
            attrs = &attrs[(len + 3) & !3..];
        }
        None
    }

    #[test]
    fn vlan_message_carries_parent_id_kind_mtu_and_up() {
        let message = create_vlan("v0.100", 7, 100, Some(1400));
        assert!(message.header.flags.contains(LinkFlags::Up));
        assert!(message.header.change_mask.contains(LinkFlags::Up));
        let attrs = &message.attributes;
        assert!(attrs.contains(&LinkAttribute::IfName("v0.100".into())));
        assert!(attrs.contains(&LinkAttribute::Link(7)));
        assert!(attrs.contains(&LinkAttribute::Mtu(1400)));
        assert!(attrs.contains(&LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vlan),
            LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(100)])),
        ])));
    }

    #[test]
    fn vlan_message_bytes_are_what_the_kernel_parses() {
        // struct ifinfomsg is 16 bytes; attributes follow.
        let wire = bytes(&create_vlan("v0.100", 7, 100, None));
        let attrs = &wire[16..];
        const IFLA_IFNAME: u16 = 3;
        const IFLA_LINK: u16 = 5;
        const IFLA_LINKINFO: u16 = 18;
        const IFLA_INFO_KIND: u16 = 1;
        const IFLA_INFO_DATA: u16 = 2;
        const IFLA_VLAN_ID: u16 = 1;
        assert_eq!(attribute(attrs, IFLA_IFNAME), Some(&b"v0.100\0"[..]));
        assert_eq!(attribute(attrs, IFLA_LINK), Some(&7u32.to_ne_bytes()[..]));
        let info = attribute(attrs, IFLA_LINKINFO).expect("IFLA_LINKINFO");
        // NLA_STRING: the kernel accepts the kind with or without its NUL.
        assert_eq!(attribute(info, IFLA_INFO_KIND), Some(&b"vlan\0"[..]));
        let data = attribute(info, IFLA_INFO_DATA).expect("IFLA_INFO_DATA");
        assert_eq!(
            attribute(data, IFLA_VLAN_ID),
            Some(&100u16.to_ne_bytes()[..])
        );
        // ... and the library parses its own bytes back to the same message.
        let parsed = LinkMessage::parse(&wire[..]).unwrap();
        assert_eq!(parsed, create_vlan("v0.100", 7, 100, None));
    }

    #[test]
    fn set_link_targets_the_index() {
        let message = set_link(4, None);
        assert_eq!(message.header.index, 4);
        assert!(message.header.flags.contains(LinkFlags::Up));
        assert!(
            !message
                .attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::Mtu(_)))
        );
        assert!(
            set_link(4, Some(9000))
                .attributes
                .contains(&LinkAttribute::Mtu(9000))
        );
    }

    #[test]
    fn address_message_is_marked_with_the_agent_protocol() {
        let message = address(3, "10.1.0.2/24".parse().unwrap(), 200);
        assert_eq!(message.header.index, 3);
        assert_eq!(message.header.prefix_len, 24);
        assert!(
            message
                .attributes
                .contains(&AddressAttribute::Local("10.1.0.2".parse().unwrap()))
        );
        assert!(
            message
                .attributes
                .contains(&AddressAttribute::Protocol(AddressProtocol::Other(200)))
        );
        let v6 = address(3, "fd00::2/64".parse().unwrap(), 200);
        assert_eq!(v6.header.prefix_len, 64);
    }

    fn spec(destination: &str, gateway: Option<&str>, oif: Option<u32>, metric: u32) -> RouteSpec {
        RouteSpec {
            id: RouteId {
                table: 254,
                destination: destination.parse().unwrap(),
                metric,
            },
            gateway: gateway.map(|g| g.parse().unwrap()),
            oif,
            protocol: 200,
        }
    }

    #[test]
    fn route_messages_carry_next_hop_metric_table_and_protocol() {
        let message = route(&spec("10.20.0.0/16", Some("10.1.0.1"), None, 50));
        assert_eq!(message.header.destination_prefix_length, 16);
        assert_eq!(u8::from(message.header.protocol), 200);
        assert_eq!(message.header.scope, RouteScope::Universe);
        assert!(message.attributes.contains(&RouteAttribute::Priority(50)));
        assert!(message.attributes.contains(&RouteAttribute::Gateway(
            "10.1.0.1".parse::<IpAddr>().unwrap().into()
        )));

        let device = route(&spec("10.30.0.0/16", None, Some(3), 0));
        assert_eq!(device.header.scope, RouteScope::Link);
        assert!(device.attributes.contains(&RouteAttribute::Oif(3)));
        assert!(
            !device
                .attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Priority(_)))
        );

        let mut table = spec("fd01::/48", None, Some(3), 1024);
        table.id.table = 1000;
        let message = route(&table);
        assert!(message.attributes.contains(&RouteAttribute::Table(1000)));
    }
}

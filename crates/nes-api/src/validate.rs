//! Validation of a [`DesiredConfig`] before the agent touches the kernel.
//!
//! Every rule runs on every item and all errors are returned, so a client fixes its config in one
//! round trip. Each error names the exact field path (`addresses[2].cidr`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::{DesiredConfig, parse_cidr};
use crate::items::ItemKey;

/// Linux `IFNAMSIZ` is 16 including the terminating NUL.
const MAX_NAME_BYTES: usize = 15;

/// One broken rule. `Display` is the precise message, starting with the field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// Not `address/prefix`.
    #[error("{field}: {value:?} is not a valid CIDR")]
    InvalidCidr {
        /// The field path.
        field: String,
        /// The value as sent.
        value: String,
    },
    /// A route destination with host bits set: the kernel would refuse it (`Invalid prefix for
    /// given prefix length`), so say which network was probably meant.
    #[error("{field}: {value:?} has host bits set; the network is {canonical}")]
    HostBitsSet {
        /// The field path.
        field: String,
        /// The value as sent.
        value: String,
        /// The network with host bits cleared.
        canonical: String,
    },
    /// Not a name the kernel accepts for a link.
    #[error("{field}: {value:?} is not a valid interface name: {reason}")]
    InvalidName {
        /// The field path.
        field: String,
        /// The value as sent.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// VLAN id outside 1..=4094 (0 and 4095 are reserved by 802.1Q).
    #[error("{field}: VLAN id {value} is outside 1..=4094")]
    InvalidVlanId {
        /// The field path.
        field: String,
        /// The value as sent.
        value: u16,
    },
    /// MTU outside 68..=65535 (68 is the IPv4 minimum; the kernel refuses less).
    #[error("{field}: MTU {value} is outside 68..=65535")]
    InvalidMtu {
        /// The field path.
        field: String,
        /// The value as sent.
        value: u32,
    },
    /// An interface that is neither a VLAN of the config nor a host link.
    #[error("{field}: interface {name:?} is neither a VLAN of this config nor a host link")]
    UnknownInterface {
        /// The field path.
        field: String,
        /// The interface name.
        name: String,
    },
    /// A VLAN stacked on itself, directly or through other VLANs of the config.
    #[error("{field}: VLAN {name:?} is its own ancestor")]
    VlanCycle {
        /// The field path (the VLAN's `parent`).
        field: String,
        /// The VLAN's name.
        name: String,
    },
    /// An item whose key an earlier item already has.
    #[error("{field}: duplicate {item} (also at {first})")]
    Duplicate {
        /// The duplicate item's path, e.g. `routes[3]`.
        field: String,
        /// The shared key.
        item: ItemKey,
        /// The first item's path.
        first: String,
    },
    /// A route with neither gateway nor interface.
    #[error("{field}: a route needs a gateway, an interface, or both")]
    NoNextHop {
        /// The route's path.
        field: String,
    },
    /// Gateway of the other address family than the destination.
    #[error("{field}: gateway {gateway} is not of the same address family as {destination}")]
    GatewayFamily {
        /// The field path.
        field: String,
        /// The gateway.
        gateway: IpAddr,
        /// The destination network.
        destination: String,
    },
    /// Table 0 is `RT_TABLE_UNSPEC`, which the kernel turns into the main table; rejecting it
    /// keeps one spelling (absent) per route identity.
    #[error("{field}: table 0 is not a routing table; omit the table for the main table (254)")]
    InvalidTable {
        /// The field path.
        field: String,
    },
}

impl ValidationError {
    /// The path of the offending field, e.g. `addresses[2].cidr`.
    pub fn field(&self) -> &str {
        match self {
            ValidationError::InvalidCidr { field, .. }
            | ValidationError::HostBitsSet { field, .. }
            | ValidationError::InvalidName { field, .. }
            | ValidationError::InvalidVlanId { field, .. }
            | ValidationError::InvalidMtu { field, .. }
            | ValidationError::UnknownInterface { field, .. }
            | ValidationError::VlanCycle { field, .. }
            | ValidationError::Duplicate { field, .. }
            | ValidationError::NoNextHop { field }
            | ValidationError::GatewayFamily { field, .. }
            | ValidationError::InvalidTable { field } => field,
        }
    }

    /// A stable machine-readable code, used as [`ApiError::code`](crate::ApiError::code).
    pub fn code(&self) -> &'static str {
        match self {
            ValidationError::InvalidCidr { .. } => "invalidCidr",
            ValidationError::HostBitsSet { .. } => "hostBitsSet",
            ValidationError::InvalidName { .. } => "invalidName",
            ValidationError::InvalidVlanId { .. } => "invalidVlanId",
            ValidationError::InvalidMtu { .. } => "invalidMtu",
            ValidationError::UnknownInterface { .. } => "unknownInterface",
            ValidationError::VlanCycle { .. } => "vlanCycle",
            ValidationError::Duplicate { .. } => "duplicate",
            ValidationError::NoNextHop { .. } => "noNextHop",
            ValidationError::GatewayFamily { .. } => "gatewayFamily",
            ValidationError::InvalidTable { .. } => "invalidTable",
        }
    }
}

/// Checks `config` against the rules in `docs/nes-api.md`. `host_links` are the links that exist
/// in the pod outside this config (an interface must be one of them or a VLAN of the config).
/// Returns every error found, in field order.
pub fn validate(
    config: &DesiredConfig,
    host_links: &BTreeSet<String>,
) -> Result<(), Vec<ValidationError>> {
    let mut errors = Vec::new();
    let vlan_parents: BTreeMap<&str, &str> = config
        .vlans
        .iter()
        .rev() // so the first occurrence of a duplicated name wins
        .map(|v| (v.name.as_str(), v.parent.as_str()))
        .collect();
    let mut seen: BTreeMap<ItemKey, String> = BTreeMap::new();
    let mut check_duplicate = |errors: &mut Vec<ValidationError>, key: ItemKey, path: String| {
        if let Some(first) = seen.get(&key) {
            errors.push(ValidationError::Duplicate {
                field: path,
                item: key,
                first: first.clone(),
            });
        } else {
            seen.insert(key, path);
        }
    };
    let check_interface = |errors: &mut Vec<ValidationError>, field: String, name: &str| {
        if let Err(error) = check_name(&field, name) {
            errors.push(error);
        } else if !vlan_parents.contains_key(name) && !host_links.contains(name) {
            errors.push(ValidationError::UnknownInterface {
                field,
                name: name.to_owned(),
            });
        }
    };

    for (i, vlan) in config.vlans.iter().enumerate() {
        let path = format!("vlans[{i}]");
        if let Err(error) = check_name(&format!("{path}.name"), &vlan.name) {
            errors.push(error);
        }
        check_interface(&mut errors, format!("{path}.parent"), &vlan.parent);
        if has_cycle(&vlan_parents, &vlan.name, &vlan.parent) {
            errors.push(ValidationError::VlanCycle {
                field: format!("{path}.parent"),
                name: vlan.name.clone(),
            });
        }
        if !(1..=4094).contains(&vlan.vlan_id) {
            errors.push(ValidationError::InvalidVlanId {
                field: format!("{path}.vlanId"),
                value: vlan.vlan_id,
            });
        }
        if let Some(mtu) = vlan.mtu.filter(|m| !(68..=65535).contains(m)) {
            errors.push(ValidationError::InvalidMtu {
                field: format!("{path}.mtu"),
                value: mtu,
            });
        }
        check_duplicate(&mut errors, vlan.key(), path);
    }

    for (i, address) in config.addresses.iter().enumerate() {
        let path = format!("addresses[{i}]");
        check_interface(&mut errors, format!("{path}.interface"), &address.interface);
        if parse_cidr(&address.cidr).is_none() {
            errors.push(ValidationError::InvalidCidr {
                field: format!("{path}.cidr"),
                value: address.cidr.clone(),
            });
        }
        check_duplicate(&mut errors, address.key(), path);
    }

    for (i, route) in config.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        let field = format!("{path}.destination");
        match route.destination_net() {
            None => errors.push(ValidationError::InvalidCidr {
                field,
                value: route.destination.clone(),
            }),
            Some(net) if net != net.trunc() => errors.push(ValidationError::HostBitsSet {
                field,
                value: route.destination.clone(),
                canonical: net.trunc().to_string(),
            }),
            Some(net) => {
                if let Some(gateway) = route.gateway
                    && !same_family(&net, &gateway)
                {
                    errors.push(ValidationError::GatewayFamily {
                        field: format!("{path}.gateway"),
                        gateway,
                        destination: net.to_string(),
                    });
                }
            }
        }
        if let Some(interface) = &route.interface {
            check_interface(&mut errors, format!("{path}.interface"), interface);
        } else if route.gateway.is_none() {
            errors.push(ValidationError::NoNextHop {
                field: path.clone(),
            });
        }
        if route.table == Some(0) {
            errors.push(ValidationError::InvalidTable {
                field: format!("{path}.table"),
            });
        }
        check_duplicate(&mut errors, route.key(), path);
    }

    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The kernel's `dev_valid_name` rules, so a name that passes here is not refused by netlink.
fn check_name(field: &str, name: &str) -> Result<(), ValidationError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_NAME_BYTES {
        Some("it is longer than 15 bytes")
    } else if name == "." || name == ".." {
        Some("\".\" and \"..\" are reserved")
    } else if name.contains('/') {
        Some("it contains '/'")
    } else if name.contains(':') {
        // The kernel reserves ':' for legacy address labels (eth0:1).
        Some("it contains ':'")
    } else if name.contains('\0') {
        Some("it contains NUL")
    } else if name.chars().any(char::is_whitespace) {
        Some("it contains whitespace")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ValidationError::InvalidName {
            field: field.to_owned(),
            value: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Whether following parents through the config's VLANs from `parent` leads back to `name`.
fn has_cycle(vlan_parents: &BTreeMap<&str, &str>, name: &str, parent: &str) -> bool {
    let mut current = parent;
    // A chain longer than the number of VLANs must repeat; the bound also stops on cycles that
    // do not include `name` (those are reported for their own members).
    for _ in 0..=vlan_parents.len() {
        if current == name {
            return true;
        }
        match vlan_parents.get(current) {
            Some(next) => current = next,
            None => return false,
        }
    }
    false
}

fn same_family(net: &IpNet, ip: &IpAddr) -> bool {
    matches!(
        (net, ip),
        (IpNet::V4(_), IpAddr::V4(_)) | (IpNet::V6(_), IpAddr::V6(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Address, Route, VlanLink};

    fn hosts() -> BTreeSet<String> {
        ["lo", "eth0", "net1"]
            .into_iter()
            .map(String::from)
            .collect()
    }

    fn vlan(name: &str, parent: &str, vlan_id: u16) -> VlanLink {
        VlanLink {
            name: name.into(),
            parent: parent.into(),
            vlan_id,
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

    fn valid() -> DesiredConfig {
        DesiredConfig {
            generation: 1,
            vlans: vec![
                vlan("eth0.100", "eth0", 100),
                vlan("eth0.100.7", "eth0.100", 7),
            ],
            addresses: vec![
                address("eth0.100", "10.1.2.3/24"),
                address("eth0.100", "fd00::5/64"),
            ],
            routes: vec![
                route("default", Some("10.1.2.1"), None),
                route("default", Some("fd00::1"), Some("eth0.100")),
                route("192.168.0.0/16", None, Some("eth0.100.7")),
            ],
        }
    }

    /// The messages of the errors of `config`.
    fn messages(config: &DesiredConfig) -> Vec<String> {
        match validate(config, &hosts()) {
            Ok(()) => vec![],
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_valid_config_passes() {
        assert_eq!(validate(&valid(), &hosts()), Ok(()));
        assert_eq!(
            validate(&DesiredConfig::default(), &BTreeSet::new()),
            Ok(())
        );
    }

    #[test]
    fn bad_cidrs_name_the_field() {
        let mut config = valid();
        config.addresses.push(address("eth0", "10.0.0.300/24"));
        config.addresses.push(address("eth0", "10.0.0.3"));
        config.routes[2].destination = "192.168.0.0/33".into();
        assert_eq!(
            messages(&config),
            [
                r#"addresses[2].cidr: "10.0.0.300/24" is not a valid CIDR"#,
                r#"addresses[3].cidr: "10.0.0.3" is not a valid CIDR"#,
                r#"routes[2].destination: "192.168.0.0/33" is not a valid CIDR"#,
            ]
        );
    }

    #[test]
    fn route_destination_with_host_bits_names_the_network() {
        let mut config = valid();
        config.routes[2].destination = "10.0.0.1/8".into();
        assert_eq!(
            messages(&config),
            [r#"routes[2].destination: "10.0.0.1/8" has host bits set; the network is 10.0.0.0/8"#]
        );
        let error = &validate(&config, &hosts()).unwrap_err()[0];
        assert_eq!(error.field(), "routes[2].destination");
        assert_eq!(error.code(), "hostBitsSet");
    }

    #[test]
    fn names_follow_the_kernel_rules() {
        let bad = [
            ("", "it is empty"),
            ("eth0.100.1000000", "it is longer than 15 bytes"),
            ("a/b", "it contains '/'"),
            ("eth0:1", "it contains ':'"),
            ("a b", "it contains whitespace"),
            ("a\0", "it contains NUL"),
            ("..", "\".\" and \"..\" are reserved"),
        ];
        for (name, reason) in bad {
            let config = DesiredConfig {
                vlans: vec![vlan(name, "eth0", 5)],
                ..Default::default()
            };
            assert_eq!(
                messages(&config),
                [format!(
                    "vlans[0].name: {name:?} is not a valid interface name: {reason}"
                )],
                "{name:?}"
            );
        }
        // 15 bytes is the limit, not 15 characters.
        let config = DesiredConfig {
            vlans: vec![vlan("ééééééé.1", "eth0", 5)],
            ..Default::default()
        };
        assert_eq!(messages(&config).len(), 1);
    }

    #[test]
    fn vlan_id_and_mtu_ranges() {
        let mut config = valid();
        config.vlans[0].vlan_id = 0;
        config.vlans[1].vlan_id = 4095;
        config.vlans[1].mtu = Some(67);
        assert_eq!(
            messages(&config),
            [
                "vlans[0].vlanId: VLAN id 0 is outside 1..=4094",
                "vlans[1].vlanId: VLAN id 4095 is outside 1..=4094",
                "vlans[1].mtu: MTU 67 is outside 68..=65535",
            ]
        );
        config.vlans[0].vlan_id = 4094;
        config.vlans[1].vlan_id = 1;
        config.vlans[1].mtu = Some(68);
        assert_eq!(messages(&config), Vec::<String>::new());
    }

    #[test]
    fn interfaces_must_exist_in_config_or_host() {
        let mut config = valid();
        config.vlans[0].parent = "eth9".into();
        config.addresses[0].interface = "eth1".into();
        config.routes[2].interface = Some("net2".into());
        assert_eq!(
            messages(&config),
            [
                r#"vlans[0].parent: interface "eth9" is neither a VLAN of this config nor a host link"#,
                r#"addresses[0].interface: interface "eth1" is neither a VLAN of this config nor a host link"#,
                r#"routes[2].interface: interface "net2" is neither a VLAN of this config nor a host link"#,
            ]
        );
    }

    #[test]
    fn vlan_cycles_are_rejected() {
        let config = DesiredConfig {
            vlans: vec![vlan("a", "b", 1), vlan("b", "a", 2), vlan("c", "c", 3)],
            ..Default::default()
        };
        assert_eq!(
            messages(&config),
            [
                r#"vlans[0].parent: VLAN "a" is its own ancestor"#,
                r#"vlans[1].parent: VLAN "b" is its own ancestor"#,
                r#"vlans[2].parent: VLAN "c" is its own ancestor"#,
            ]
        );
    }

    #[test]
    fn duplicates_are_reported_with_the_first_occurrence() {
        let mut config = valid();
        config.vlans.push(vlan("eth0.100", "net1", 200));
        config.addresses.push(address("eth0.100", "fd00:0::5/64"));
        // `0.0.0.0/0` in table 254 is the same route as `default` without a table.
        let mut same_default = route("0.0.0.0/0", None, Some("eth0"));
        same_default.table = Some(254);
        config.routes.push(same_default);
        assert_eq!(
            messages(&config),
            [
                "vlans[2]: duplicate vlan eth0.100 (also at vlans[0])",
                "addresses[2]: duplicate address fd00::5/64 on eth0.100 (also at addresses[1])",
                "routes[3]: duplicate route 0.0.0.0/0 table 254 (also at routes[0])",
            ]
        );
    }

    #[test]
    fn route_next_hop_family_and_table() {
        let mut config = valid();
        config.routes.push(route("10.0.0.0/8", None, None));
        config
            .routes
            .push(route("fd01::/48", Some("10.0.0.1"), None));
        let mut table0 = route("10.9.0.0/16", Some("10.1.2.1"), None);
        table0.table = Some(0);
        config.routes.push(table0);
        assert_eq!(
            messages(&config),
            [
                "routes[3]: a route needs a gateway, an interface, or both",
                "routes[4].gateway: gateway 10.0.0.1 is not of the same address family as fd01::/48",
                "routes[5].table: table 0 is not a routing table; omit the table for the main table (254)",
            ]
        );
    }

    #[test]
    fn all_errors_are_collected() {
        let config = DesiredConfig {
            generation: 2,
            vlans: vec![vlan("x y", "nope", 0)],
            addresses: vec![address("nope", "bad")],
            routes: vec![route("10.0.0.1/8", None, None)],
        };
        let errors = validate(&config, &hosts()).unwrap_err();
        let codes: Vec<_> = errors.iter().map(ValidationError::code).collect();
        assert_eq!(
            codes,
            [
                "invalidName",
                "unknownInterface",
                "invalidVlanId",
                "unknownInterface",
                "invalidCidr",
                "hostBitsSet",
                "noNextHop",
            ]
        );
    }
}

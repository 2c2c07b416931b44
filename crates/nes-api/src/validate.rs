//! Validation of a [`DesiredConfig`] before the agent touches the kernel.
//!
//! Every rule runs on every item and all errors are returned, so a client fixes its config in one
//! round trip. Each error names the exact field path (`addresses[2].cidr`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::{DesiredConfig, MAX_ITEMS_PER_KIND, parse_cidr};
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
    /// A list longer than [`MAX_ITEMS_PER_KIND`].
    #[error("{field}: {count} items; a configuration holds at most {max}")]
    TooManyItems {
        /// The list: `vlans`, `addresses` or `routes`.
        field: String,
        /// How many it has.
        count: usize,
        /// The limit.
        max: usize,
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
            | ValidationError::InvalidTable { field }
            | ValidationError::TooManyItems { field, .. } => field,
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
            ValidationError::TooManyItems { .. } => "tooManyItems",
        }
    }
}

/// Checks `config` against the rules in `docs/nes-api.md`. `host_links` are the links that exist
/// in the pod outside this config (an interface must be one of them or a VLAN of the config).
/// Returns every error found, in field order.
///
/// A list over [`MAX_ITEMS_PER_KIND`] gives only the size errors: its items are not checked
/// one by one, so neither the work nor the list of errors grows with an oversized request.
/// Every other check is linear (or `n log n`) in the size of the configuration.
pub fn validate(
    config: &DesiredConfig,
    host_links: &BTreeSet<String>,
) -> Result<(), Vec<ValidationError>> {
    let too_many: Vec<ValidationError> = [
        ("vlans", config.vlans.len()),
        ("addresses", config.addresses.len()),
        ("routes", config.routes.len()),
    ]
    .into_iter()
    .filter(|(_, count)| *count > MAX_ITEMS_PER_KIND)
    .map(|(field, count)| ValidationError::TooManyItems {
        field: field.to_owned(),
        count,
        max: MAX_ITEMS_PER_KIND,
    })
    .collect();
    if !too_many.is_empty() {
        return Err(too_many);
    }
    let mut errors = Vec::new();
    let mut vlan_parents: HashMap<&str, &str> = HashMap::with_capacity(config.vlans.len());
    for vlan in &config.vlans {
        // The first occurrence of a duplicated name counts (the others are duplicates).
        vlan_parents
            .entry(vlan.name.as_str())
            .or_insert(vlan.parent.as_str());
    }
    let cyclic = cyclic_vlans(&vlan_parents);
    let mut first_of_name: HashSet<&str> = HashSet::with_capacity(config.vlans.len());
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
        // A later VLAN of the same name is a duplicate, not a node of the parent graph: it is
        // its own ancestor only when it names itself.
        let first = first_of_name.insert(vlan.name.as_str());
        let cycle = if first {
            cyclic.contains(vlan.name.as_str())
        } else {
            vlan.parent == vlan.name
        };
        if cycle {
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

/// The VLANs that are their own ancestors: the members of the cycles of the parent graph
/// (`name -> parent`; a parent that is not a VLAN of the config ends a chain).
///
/// Each VLAN has one parent, so the graph is a set of chains that end at a host link or in a
/// cycle. Every VLAN is walked over once: a walk stops at a VLAN an earlier walk finished,
/// and a VLAN met twice in the same walk closes a cycle. Linear in the number of VLANs, where
/// walking each VLAN's whole chain was quadratic (a 20,000-VLAN chain took 2×10⁸ lookups).
fn cyclic_vlans<'a>(parents: &HashMap<&'a str, &'a str>) -> HashSet<&'a str> {
    let mut cyclic = HashSet::new();
    let mut done: HashSet<&str> = HashSet::with_capacity(parents.len());
    // The current walk: each VLAN's position in `path`.
    let mut on_path: HashMap<&str, usize> = HashMap::new();
    let mut path: Vec<&str> = Vec::new();
    for &start in parents.keys() {
        let mut current = start;
        loop {
            if done.contains(current) {
                break;
            }
            if let Some(&at) = on_path.get(current) {
                cyclic.extend(path[at..].iter().copied());
                break;
            }
            let Some(&parent) = parents.get(current) else {
                break; // a host link (or a missing parent): the chain ends
            };
            on_path.insert(current, path.len());
            path.push(current);
            current = parent;
        }
        done.extend(path.drain(..));
        on_path.clear();
    }
    cyclic
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

    /// A chain of `n` VLANs stacked on eth0: `v1` on eth0, `v2` on `v1`, ...
    fn chain(n: usize) -> Vec<VlanLink> {
        (1..=n)
            .map(|i| {
                let parent = if i == 1 {
                    "eth0".to_owned()
                } else {
                    format!("v{}", i - 1)
                };
                vlan(&format!("v{i}"), &parent, (i % 4094 + 1) as u16)
            })
            .collect()
    }

    #[test]
    fn cycle_detection_is_linear_in_a_20000_vlan_chain() {
        // Walking each VLAN's whole chain, as before, is 2x10^8 lookups here (seconds in a
        // debug build); the single walk is 20,000 (milliseconds).
        let vlans = chain(20_000);
        let parents: HashMap<&str, &str> = vlans
            .iter()
            .map(|v| (v.name.as_str(), v.parent.as_str()))
            .collect();
        assert!(cyclic_vlans(&parents).is_empty());
        // Close the chain into one 20,000-VLAN cycle: every member is found.
        let mut ring = parents.clone();
        ring.insert("v1", "v20000");
        assert_eq!(cyclic_vlans(&ring).len(), 20_000);
        // A cycle with a tail: only the cycle's members are their own ancestors.
        let mut tail = parents;
        tail.insert("v10000", "v19999");
        let cyclic = cyclic_vlans(&tail);
        assert_eq!(cyclic.len(), 10_000);
        assert!(cyclic.contains("v10000") && cyclic.contains("v19999"));
        assert!(!cyclic.contains("v9999") && !cyclic.contains("v20000"));

        // The whole validation of a chain at the limit (1,000 deep) passes.
        let config = DesiredConfig {
            vlans: chain(MAX_ITEMS_PER_KIND),
            ..Default::default()
        };
        assert_eq!(validate(&config, &hosts()), Ok(()));
    }

    #[test]
    fn each_list_holds_at_most_1000_items_and_a_longer_one_is_not_checked_item_by_item() {
        let config = DesiredConfig {
            vlans: chain(20_000),
            addresses: (0..1001)
                .map(|i| address("nope", &format!("10.{}.{}.1/32", i / 256, i % 256)))
                .collect(),
            routes: vec![route("10.0.0.1/8", None, None); MAX_ITEMS_PER_KIND],
            ..Default::default()
        };
        let errors = validate(&config, &hosts()).unwrap_err();
        assert_eq!(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "vlans: 20000 items; a configuration holds at most 1000",
                "addresses: 1001 items; a configuration holds at most 1000",
            ]
        );
        assert_eq!(errors[0].field(), "vlans");
        assert_eq!(errors[0].code(), "tooManyItems");
        assert_eq!(
            MAX_ITEMS_PER_KIND, 1000,
            "docs/nes-api.md and the CRD say 1,000"
        );
    }

    #[test]
    fn a_duplicated_vlan_is_its_own_ancestor_only_when_it_names_itself() {
        let config = DesiredConfig {
            vlans: vec![vlan("a", "eth0", 1), vlan("a", "a", 2), vlan("a", "b", 3)],
            ..Default::default()
        };
        assert_eq!(
            messages(&config),
            [
                "vlans[1].parent: VLAN \"a\" is its own ancestor",
                "vlans[1]: duplicate vlan a (also at vlans[0])",
                "vlans[2].parent: interface \"b\" is neither a VLAN of this config nor a host link",
                "vlans[2]: duplicate vlan a (also at vlans[0])",
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

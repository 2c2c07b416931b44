//! What the fuzz targets share: the properties every decoded configuration must keep, and a
//! generator of configurations that reach deep into `validate` (names, CIDRs and ids drawn
//! mostly from interesting values rather than random bytes).
//!
//! A property that fails panics, which libFuzzer reports as a crash with the input.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use nes_api::{
    Address, ApiError, DesiredConfig, ItemKey, Route, VlanLink, apply_order, diff, validate,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The links the fuzzed pod has besides its VLANs (what the agent reads from the kernel).
pub fn host_links() -> BTreeSet<String> {
    ["eth0", "lo", "net1"].map(str::to_owned).into()
}

/// A value that decoded from JSON encodes to JSON that decodes to the same value: what the
/// agent stores (its state file) and what nescli sends come back unchanged.
pub fn check_json_round_trip<T>(value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let text = serde_json::to_vec(value).expect("a decoded value encodes");
    let back: T = serde_json::from_slice(&text).expect("its encoding decodes");
    assert_eq!(&back, value, "JSON round trip changed the value");
}

/// The properties of `validate`, `apply_order` and `diff` for any configuration:
///
/// - `apply_order` names every item's key exactly once, valid configuration or not;
/// - `validate` is deterministic, and every error has a field path and a code;
/// - for a valid configuration: no key twice, VLAN parents before their VLANs, and `diff`
///   against nothing and against itself is what it must be.
pub fn check_config(config: &DesiredConfig, host_links: &BTreeSet<String>) {
    let order = apply_order(config);
    let keys: BTreeSet<&ItemKey> = order.iter().collect();
    assert_eq!(keys.len(), order.len(), "apply_order repeats a key");
    let all_keys: Vec<ItemKey> = config
        .vlans
        .iter()
        .map(VlanLink::key)
        .chain(config.addresses.iter().map(Address::key))
        .chain(config.routes.iter().map(Route::key))
        .collect();
    for key in &all_keys {
        assert!(keys.contains(key), "apply_order misses {key:?}");
    }

    let verdict = validate(config, host_links);
    assert_eq!(
        verdict,
        validate(config, host_links),
        "validate is not deterministic"
    );
    match verdict {
        Ok(()) => {
            assert_eq!(order.len(), all_keys.len(), "a valid config repeats a key");
            let position: BTreeMap<&ItemKey, usize> =
                order.iter().enumerate().map(|(i, k)| (k, i)).collect();
            let vlans: BTreeSet<&str> = config.vlans.iter().map(|v| v.name.as_str()).collect();
            for vlan in &config.vlans {
                if vlans.contains(vlan.parent.as_str()) {
                    let parent = ItemKey::Vlan {
                        name: vlan.parent.clone(),
                    };
                    assert!(
                        position[&parent] < position[&vlan.key()],
                        "VLAN {} is ordered before its parent",
                        vlan.name
                    );
                }
            }
            let empty = DesiredConfig::default();
            assert_eq!(diff(&empty, config).added, order);
            let same = diff(config, config);
            assert_eq!(same.unchanged, order);
            assert!(same.added.is_empty() && same.changed.is_empty() && same.removed.is_empty());
            let gone = diff(config, &empty);
            assert!(gone.removed.iter().eq(order.iter().rev()));
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "a refusal names its errors");
            for error in &errors {
                assert!(!error.field().is_empty(), "{error:?} has no field");
                let api = ApiError::from(error);
                assert!(!api.code.is_empty() && !api.message.is_empty());
            }
        }
    }
}

/// A configuration built from the fuzzer's bytes, biased towards the values `validate` cares
/// about: link names that exist, are VLANs of the config, or break the kernel's naming rules;
/// CIDRs valid and not; VLAN ids and MTUs at their bounds.
#[derive(Debug)]
pub struct FuzzConfig(pub DesiredConfig);

const NAMES: &[&str] = &[
    "eth0",
    "lo",
    "net1",
    "eth0.100",
    "eth0.200",
    "v1",
    "v2",
    "v3",
    "missing",
    "",
    ".",
    "..",
    "a/b",
    "a:b",
    "a b",
    "a\0b",
    "sixteen-bytes-xx",
    "fifteen-bytes-x",
    "\u{e9}th0",
];

const CIDRS: &[&str] = &[
    "10.1.0.5/24",
    "10.1.0.0/24",
    "10.2.0.0/16",
    "0.0.0.0/0",
    "fd00::5/64",
    "fd00:0::5/64",
    "fd00::/64",
    "::/0",
    "default",
    "10.1.0.300/24",
    "10.1.0.5",
    "10.1.0.5/33",
    "fd00::5/129",
    "",
];

const GATEWAYS: &[&str] = &["10.1.0.1", "fd00::1", "0.0.0.0", "::"];

fn pick(u: &mut Unstructured<'_>, pool: &[&str]) -> arbitrary::Result<String> {
    if u.ratio(1, 8)? {
        return u.arbitrary();
    }
    Ok((*u.choose(pool)?).to_owned())
}

fn pick_u32(u: &mut Unstructured<'_>, pool: &[u32]) -> arbitrary::Result<Option<u32>> {
    Ok(match u.int_in_range(0..=3)? {
        0 => None,
        1 => Some(u.arbitrary()?),
        _ => Some(*u.choose(pool)?),
    })
}

fn gateway(u: &mut Unstructured<'_>) -> arbitrary::Result<Option<IpAddr>> {
    Ok(match u.int_in_range(0..=3)? {
        0 => None,
        1 => Some(u.arbitrary()?),
        _ => Some(u.choose(GATEWAYS)?.parse().expect("pool addresses parse")),
    })
}

impl<'a> Arbitrary<'a> for FuzzConfig {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut config = DesiredConfig {
            generation: u.arbitrary()?,
            ..DesiredConfig::default()
        };
        for _ in 0..u.int_in_range(0..=24)? {
            config.vlans.push(VlanLink {
                name: pick(u, NAMES)?,
                parent: pick(u, NAMES)?,
                vlan_id: match u.int_in_range(0..=2)? {
                    0 => u.arbitrary()?,
                    _ => *u.choose(&[0, 1, 100, 200, 4094, 4095])?,
                },
                mtu: pick_u32(u, &[0, 67, 68, 1500, 9000, 65535, 65536])?,
            });
        }
        for _ in 0..u.int_in_range(0..=24)? {
            config.addresses.push(Address {
                interface: pick(u, NAMES)?,
                cidr: pick(u, CIDRS)?,
            });
        }
        for _ in 0..u.int_in_range(0..=24)? {
            config.routes.push(Route {
                destination: pick(u, CIDRS)?,
                gateway: gateway(u)?,
                interface: if u.arbitrary()? {
                    Some(pick(u, NAMES)?)
                } else {
                    None
                },
                metric: pick_u32(u, &[0, 100, u32::MAX])?,
                table: pick_u32(u, &[0, 100, 254, 255, u32::MAX])?,
            });
        }
        Ok(FuzzConfig(config))
    }
}

//! A pod's configuration requests and how they merge into its one desired configuration (the
//! `NetworkConfiguration` named after the pod): every request of a pod changes the same
//! configuration, so two applications' containers in one pod, or two calls of one application,
//! add up instead of overwriting each other.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{Address, Route, VlanLink};
use crate::items::ItemKey;

/// Items of a configuration, without the generation (which belongs to whoever stores them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Items {
    /// VLAN links.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vlans: Vec<VlanLink>,
    /// Addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
    /// Routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
}

/// One configuration request of a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigureRequest {
    /// Items to add; an item whose key is already configured replaces it.
    #[serde(default)]
    pub add: Items,
    /// Items to remove, by key; keys not configured are ignored (removal is idempotent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<ItemKey>,
    /// Replace the whole configuration with `add` (and ignore `remove`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace: bool,
}

/// The configuration after `request`. Pure and deterministic: removals first, then additions
/// replace items of the same key in place or are appended, so the order of a pod's items is the
/// order it first asked for them. Validation of the result is the caller's next step.
pub fn merge(current: &Items, request: &ConfigureRequest) -> Items {
    if request.replace {
        return request.add.clone();
    }
    let mut next = current.clone();
    let removed: HashSet<&ItemKey> = request.remove.iter().collect();
    next.vlans.retain(|v| !removed.contains(&v.key()));
    next.addresses.retain(|a| !removed.contains(&a.key()));
    next.routes.retain(|r| !removed.contains(&r.key()));
    upsert(&mut next.vlans, &request.add.vlans, VlanLink::key);
    upsert(&mut next.addresses, &request.add.addresses, Address::key);
    upsert(&mut next.routes, &request.add.routes, Route::key);
    next
}

/// Replaces or appends each of `added` by key. Linear: the positions are indexed once, so an
/// oversized request (which validation refuses after the merge) costs no more than its size.
fn upsert<T: Clone>(items: &mut Vec<T>, added: &[T], key: impl Fn(&T) -> ItemKey) {
    let mut position: HashMap<ItemKey, usize> = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        // The first item of a key is the one replaced, as a search from the front would find.
        position.entry(key(item)).or_insert(i);
    }
    for item in added {
        match position.entry(key(item)) {
            Entry::Occupied(at) => items[*at.get()] = item.clone(),
            Entry::Vacant(slot) => {
                slot.insert(items.len());
                items.push(item.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(cidr: &str) -> Address {
        Address {
            interface: "eth0".into(),
            cidr: cidr.into(),
        }
    }

    fn route(destination: &str, metric: Option<u32>) -> Route {
        Route {
            destination: destination.into(),
            gateway: Some("10.0.0.1".parse().unwrap()),
            interface: None,
            metric,
            table: None,
        }
    }

    fn add(addresses: Vec<Address>, routes: Vec<Route>) -> ConfigureRequest {
        ConfigureRequest {
            add: Items {
                vlans: vec![],
                addresses,
                routes,
            },
            ..ConfigureRequest::default()
        }
    }

    #[test]
    fn requests_add_up() {
        let first = merge(
            &Items::default(),
            &add(vec![address("10.0.0.2/24")], vec![]),
        );
        let second = merge(&first, &add(vec![], vec![route("10.1.0.0/16", None)]));
        assert_eq!(second.addresses, [address("10.0.0.2/24")]);
        assert_eq!(second.routes, [route("10.1.0.0/16", None)]);
    }

    #[test]
    fn same_key_replaces_in_place_and_spelling_does_not_duplicate() {
        let current = merge(
            &Items::default(),
            &add(
                vec![],
                vec![route("default", None), route("10.1.0.0/16", None)],
            ),
        );
        let next = merge(&current, &add(vec![], vec![route("0.0.0.0/0", Some(5))]));
        assert_eq!(next.routes.len(), 2, "default and 0.0.0.0/0 are one key");
        assert_eq!(next.routes[0].metric, Some(5), "replaced in place");
    }

    #[test]
    fn removal_is_by_key_and_idempotent() {
        let current = merge(
            &Items::default(),
            &add(vec![address("10.0.0.2/24"), address("10.0.0.3/24")], vec![]),
        );
        let request = ConfigureRequest {
            remove: vec![address("10.0.0.2/24").key(), address("10.9.9.9/24").key()],
            ..ConfigureRequest::default()
        };
        let next = merge(&current, &request);
        assert_eq!(next.addresses, [address("10.0.0.3/24")]);
        assert_eq!(merge(&next, &request), next);
    }

    #[test]
    fn replace_takes_only_the_new_items() {
        let current = merge(
            &Items::default(),
            &add(vec![address("10.0.0.2/24")], vec![]),
        );
        let request = ConfigureRequest {
            replace: true,
            ..add(vec![address("10.0.0.7/24")], vec![])
        };
        assert_eq!(
            merge(&current, &request).addresses,
            [address("10.0.0.7/24")]
        );
    }

    #[test]
    fn a_large_request_merges_in_linear_time_with_the_same_result() {
        // 20,000 additions onto 20,000 items: 4x10^8 key comparisons when each addition
        // searched the list, 40,000 hash lookups now.
        let cidr = |i: usize| format!("10.{}.{}.1/32", i / 256 % 256, i % 256);
        let current = Items {
            addresses: (0..20_000).map(|i| address(&cidr(i))).collect(),
            ..Items::default()
        };
        let request = add(
            (10_000..30_000)
                .map(|i| Address {
                    interface: if i < 20_000 { "eth0" } else { "eth1" }.into(),
                    cidr: cidr(i),
                })
                .collect(),
            vec![],
        );
        let next = merge(&current, &request);
        assert_eq!(next.addresses.len(), 30_000);
        assert_eq!(
            next.addresses[..20_000],
            current.addresses[..],
            "replaced in place"
        );
        assert_eq!(
            next.addresses[20_000].interface, "eth1",
            "appended in order"
        );
    }

    #[test]
    fn requests_reject_unknown_fields() {
        let error = serde_json::from_str::<ConfigureRequest>(r#"{"add": {}, "delete": []}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `delete`"), "{error}");
    }
}

//! The application-facing REST API of nes (served by nes-cliserver, called by nescli): request
//! and response types, the route paths, and the textual forms of [`ItemKey`].
//!
//! Every route names the calling pod: `/v1/namespaces/{namespace}/pods/{pod}/...`, and the
//! caller's token must be bound to exactly that pod. These types use serde and schemars only (no
//! kube), so a client does not compile a Kubernetes client. See `docs/nes-cliserver.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{Address, Route, VlanLink};
use crate::items::{ItemKey, ItemState};
use crate::request::Items;
use crate::status::ApiError;

/// The body of every error answer of the API: one [`ApiError`] per problem (the same shape as
/// the agent's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    /// The problems, at least one.
    pub errors: Vec<ApiError>,
}

/// The path of a pod's resources, `/v1/namespaces/{namespace}/pods/{pod}`, to which the routes
/// append `/configuration`, `/status`, `/status/watch` or `/subscription`.
pub fn pod_path(namespace: &str, pod: &str) -> String {
    format!("/v1/namespaces/{namespace}/pods/{pod}")
}

/// A pod's configuration: the spec of its `NetworkConfiguration` (answer of `POST` and `GET
/// .../configuration`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigurationResponse {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod.
    pub pod: String,
    /// The `NetworkConfiguration`'s `metadata.generation`: it increases with every change of
    /// the items and is what `status.appliedGeneration` catches up with.
    pub generation: i64,
    /// VLAN links.
    #[serde(default)]
    pub vlans: Vec<VlanLink>,
    /// Addresses.
    #[serde(default)]
    pub addresses: Vec<Address>,
    /// Routes.
    #[serde(default)]
    pub routes: Vec<Route>,
}

impl ConfigurationResponse {
    /// The configured items.
    pub fn items(&self) -> Items {
        Items {
            vlans: self.vlans.clone(),
            addresses: self.addresses.clone(),
            routes: self.routes.clone(),
        }
    }
}

/// A pod's configuration status, as nes-manager recorded it in the `NetworkConfiguration`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod.
    pub pod: String,
    /// The configuration's current generation.
    pub generation: i64,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The generation the pod's agent has applied; equal to `generation` once it caught up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_generation: Option<i64>,
    /// The agent run that applied it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// The pod instance it was applied to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// When every item was last applied (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_update_time: Option<String>,
    /// One result per item, in apply order.
    #[serde(default)]
    pub results: Vec<ItemOutcome>,
    /// `Available`, `Progressing`, `Degraded`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// The result of one item: `item` in [`ItemKey`]'s display form (`address 10.1.2.3/24 on eth0`),
/// which [`ItemKey::from_str`] parses back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemOutcome {
    /// The item.
    pub item: String,
    /// Applied, pending or failed.
    pub state: ItemState,
    /// Why it is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A status condition (Kubernetes' `metav1.Condition`, without the kube types).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition type, e.g. `Available`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason.
    #[serde(default)]
    pub reason: String,
    /// The human-readable message.
    #[serde(default)]
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The generation the condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// `PUT .../subscription`: follow some pods' network status and have reports POSTed to a URL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionRequest {
    /// The pods to follow; the calling pod itself when empty.
    #[serde(default)]
    pub pods: PodSelection,
    /// Which changes to report; everything when empty.
    #[serde(default)]
    pub filter: Filter,
    /// Where reports are POSTed.
    pub callback: Callback,
}

/// Pods by name and/or labels, in the caller's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodSelection {
    /// Pod names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Labels every selected pod has (a label selector's `matchLabels`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
}

impl PodSelection {
    /// Whether it selects nothing (neither names nor labels).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.selector.is_empty()
    }
}

/// Which changes are reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Filter {
    /// Interfaces to follow; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<String>,
    /// Kinds of change; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
}

/// A kind of status change (the `NetworkCare` filter's `changes`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Change {
    /// A link came, went, or changed operstate, MTU or hardware address.
    Link,
    /// An address came or went.
    Address,
    /// A route came or went.
    Route,
    /// An item's result changed.
    Result,
}

impl Change {
    /// The name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Link => "link",
            Change::Address => "address",
            Change::Route => "route",
            Change::Result => "result",
        }
    }
}

impl FromStr for Change {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "link" => Ok(Change::Link),
            "address" => Ok(Change::Address),
            "route" => Ok(Change::Route),
            "result" => Ok(Change::Result),
            other => Err(format!(
                "{other:?} is not a kind of change; use link, address, route or result"
            )),
        }
    }
}

/// An HTTP callback.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Callback {
    /// The URL reports are POSTed to, `http://` or `https://`.
    pub url: String,
}

/// A pod's subscription (its `NetworkCare`) with its delivery counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionResponse {
    /// The pod's namespace.
    pub namespace: String,
    /// The subscribing pod (also the `NetworkCare`'s name).
    pub pod: String,
    /// The object the `NetworkCare` is owned by (deleted with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// The pods followed.
    pub pods: PodSelection,
    /// The changes reported.
    pub filter: Filter,
    /// Where reports go.
    pub callback: Callback,
    /// Reports delivered.
    #[serde(default)]
    pub deliveries: i64,
    /// Deliveries that failed.
    #[serde(default)]
    pub failures: i64,
    /// When a report was last delivered (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery_time: Option<String>,
    /// The last delivery error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// An owner object, by kind and name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    /// E.g. `StatefulSet`.
    pub kind: String,
    /// Its name.
    pub name: String,
}

/// Why a text is not an [`ItemKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not an item: {reason}; use vlan:NAME, address:IF/CIDR, route:DEST[,table=N] or the form `nescli status` shows (`address 10.1.2.3/24 on eth0`)"
)]
pub struct ParseItemKeyError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses an item key in either textual form, so an item can be named on the command line the
/// way [`ItemKey`] displays it (and status results show it) or compactly:
///
/// | Display form | Compact form |
/// | --- | --- |
/// | `vlan eth0.100` | `vlan:eth0.100` |
/// | `address 10.1.2.3/24 on eth0` | `address:eth0/10.1.2.3/24` |
/// | `route 10.0.0.0/8 table 254` (table optional) | `route:10.0.0.0/8[,table=N]` |
///
/// The CIDR and destination are canonicalized like [`Address::key`] and [`Route::key`]
/// (`default` is `0.0.0.0/0`; spell `::/0` for the IPv6 default route), so the parsed key is
/// equal to the key of the configured item.
impl FromStr for ItemKey {
    type Err = ParseItemKeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| ParseItemKeyError {
            text: text.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = text.trim();
        let (kind, rest, compact) = match (trimmed.split_once(':'), trimmed.split_once(' ')) {
            // A colon before any space: the compact form (IPv6 CIDRs have colons, but only
            // after the kind and its separator).
            (Some((kind, rest)), space) if space.is_none_or(|(k, _)| k.len() > kind.len()) => {
                (kind, rest.trim(), true)
            }
            (_, Some((kind, rest))) => (kind, rest.trim(), false),
            _ => return Err(fail("it has no kind")),
        };
        match kind {
            "vlan" => {
                if rest.is_empty() || rest.contains(char::is_whitespace) {
                    return Err(fail("a VLAN is named by one link name"));
                }
                Ok(ItemKey::Vlan {
                    name: rest.to_owned(),
                })
            }
            "address" => {
                let (interface, cidr) = if compact {
                    rest.split_once('/')
                        .ok_or_else(|| fail("expected address:IF/CIDR"))?
                } else {
                    let (cidr, interface) = rest
                        .split_once(" on ")
                        .ok_or_else(|| fail("expected `address CIDR on IF`"))?;
                    (interface, cidr)
                };
                // Both forms trim their parts alike, so each parses what the other prints.
                let (interface, cidr) = (interface.trim(), cidr.trim());
                if interface.is_empty() || cidr.is_empty() {
                    return Err(fail("both the interface and the CIDR are needed"));
                }
                // No configured item has such an interface (link names have neither), so the
                // key would remove nothing; and the compact form could not spell a '/'.
                if interface.contains(char::is_whitespace) {
                    return Err(fail("an interface name has no whitespace"));
                }
                if interface.contains('/') {
                    return Err(fail("an interface name has no '/'"));
                }
                if crate::config::parse_cidr(cidr).is_none() {
                    return Err(fail(&format!("{cidr:?} is not a CIDR")));
                }
                Ok(Address {
                    interface: interface.to_owned(),
                    cidr: cidr.to_owned(),
                }
                .key())
            }
            "route" => {
                let (destination, table) = if compact {
                    match rest.split_once(',') {
                        None => (rest, None),
                        Some((destination, option)) => {
                            let table = option
                                .strip_prefix("table=")
                                .ok_or_else(|| fail("the only route option is table=N"))?;
                            (destination, Some(table))
                        }
                    }
                } else {
                    match rest.split_once(" table ") {
                        None => (rest, None),
                        Some((destination, table)) => (destination.trim(), Some(table.trim())),
                    }
                };
                let table = table
                    .map(|t| t.parse::<u32>())
                    .transpose()
                    .map_err(|_| fail("the table is a number"))?;
                let route = Route {
                    destination: destination.to_owned(),
                    gateway: None,
                    interface: None,
                    metric: None,
                    table,
                };
                if route.destination_net().is_none() {
                    return Err(fail(&format!(
                        "{destination:?} is not a network or `default`"
                    )));
                }
                Ok(route.key())
            }
            other => Err(fail(&format!(
                "unknown kind {other:?} (vlan, address or route)"
            ))),
        }
    }
}

/// The compact textual form of a key (`address:eth0/10.1.2.3/24`), which [`ItemKey::from_str`]
/// parses back; `Display` of [`ItemKey`] is the readable form.
pub struct Compact<'a>(pub &'a ItemKey);

impl fmt::Display for Compact<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ItemKey::Vlan { name } => write!(f, "vlan:{name}"),
            ItemKey::Address { interface, cidr } => write!(f, "address:{interface}/{cidr}"),
            ItemKey::Route { destination, table } => {
                write!(f, "route:{destination}")?;
                if *table != crate::config::MAIN_TABLE {
                    write!(f, ",table={table}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ItemKey {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn both_forms_parse_to_the_canonical_key() {
        let address = ItemKey::Address {
            interface: "eth0".into(),
            cidr: "fd00::5/64".into(),
        };
        assert_eq!(parse("address:eth0/fd00:0::5/64"), address);
        assert_eq!(parse("address fd00::5/64 on eth0"), address);
        let route = ItemKey::Route {
            destination: "0.0.0.0/0".into(),
            table: 254,
        };
        assert_eq!(parse("route:default"), route);
        assert_eq!(parse("route 0.0.0.0/0 table 254"), route);
        assert_eq!(parse("route:0.0.0.0/0,table=254"), route);
        assert_eq!(
            parse("route:10.0.0.0/8,table=100"),
            ItemKey::Route {
                destination: "10.0.0.0/8".into(),
                table: 100
            }
        );
        assert_eq!(
            parse("vlan eth0.100"),
            ItemKey::Vlan {
                name: "eth0.100".into()
            }
        );
        assert_eq!(parse("vlan:eth0.100"), parse("vlan eth0.100"));
    }

    #[test]
    fn display_and_compact_forms_round_trip() {
        for text in [
            "vlan:v1",
            "address:eth0/10.1.2.3/24",
            "address:eth0.7/fd00::1/64",
            "route:10.0.0.0/8",
            "route:::/0,table=7",
        ] {
            let key = parse(text);
            assert_eq!(Compact(&key).to_string(), text);
            assert_eq!(parse(&key.to_string()), key, "{key}");
        }
    }

    #[test]
    fn spaces_around_parts_are_ignored_alike_in_both_forms() {
        // Found by the item_key fuzz target: the compact form kept the space after `eth1`, so
        // its display form parsed to another key, and the removal matched nothing.
        let key = parse("address:eth1 /10.1.2.3/24");
        assert_eq!(
            key,
            ItemKey::Address {
                interface: "eth1".into(),
                cidr: "10.1.2.3/24".into()
            }
        );
        assert_eq!(parse(&key.to_string()), key);
        assert_eq!(parse("vlan: v1"), parse("vlan v1"));
        assert_eq!(parse("address: eth1/ 10.1.2.3/24"), key);
    }

    #[test]
    fn bad_keys_say_what_is_wrong() {
        for (text, reason) in [
            ("eth0", "no kind"),
            ("link:eth0", "unknown kind \"link\""),
            ("address:eth0", "address:IF/CIDR"),
            ("address:eth0/10.0.0.300/24", "is not a CIDR"),
            ("route:10.0.0.0/8,metric=5", "table=N"),
            ("route:10.0.0.0/8,table=x", "a number"),
            ("route:nowhere", "not a network"),
            ("vlan:", "one link name"),
            ("address:eth 1/10.1.2.3/24", "no whitespace"),
            ("address 10.1.2.3/24 on e on f", "no whitespace"),
            // Found by the item_key fuzz target: printed compactly, this interface's '/' cut
            // it short and the key parsed back to something else.
            ("address 1010::/4 on a::/0", "no '/'"),
        ] {
            let error = text.parse::<ItemKey>().unwrap_err().to_string();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }

    #[test]
    fn subscription_requests_reject_unknown_fields_and_default_the_rest() {
        let request: SubscriptionRequest =
            serde_json::from_str(r#"{"callback": {"url": "http://a/"}}"#).unwrap();
        assert!(request.pods.is_empty());
        assert_eq!(request.filter, Filter::default());
        let error = serde_json::from_str::<SubscriptionRequest>(
            r#"{"callback": {"url": "http://a/"}, "filter": {"change": ["link"]}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("unknown field `change`"), "{error}");
        assert_eq!("route".parse::<Change>(), Ok(Change::Route));
        assert!("routes".parse::<Change>().is_err());
    }
}

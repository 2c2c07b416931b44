//! The Endpoints (core/v1) a managed Service should have, as upstream's `endpoint`
//! controller computes them: one address per pod and Service port, repacked into subsets of
//! addresses that offer the same ports.
//!
//! Upstream orders subsets and ports by hash; here they are ordered by address and port so
//! the same pods always give the same object, which is all the comparison needs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

#[cfg(test)]
use super::TRIGGER_TIME_ANNOTATION;
use super::backends::{self, is_ready};
use super::{HEADLESS_LABEL, stamp_trigger_time};

/// One pod address offered on one port, or on none (a headless Service without ports).
#[derive(Debug, Clone)]
struct Offer {
    address: EndpointAddress,
    port: Option<PortKey>,
    ready: bool,
}

/// An Endpoints port, ordered.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PortKey {
    name: Option<String>,
    port: i32,
    protocol: Option<String>,
    app_protocol: Option<String>,
}

impl PortKey {
    fn into_port(self) -> EndpointPort {
        EndpointPort {
            name: self.name,
            port: self.port,
            protocol: self.protocol,
            app_protocol: self.app_protocol,
        }
    }
}

/// Upstream de-duplicates addresses by IP and pod uid.
type AddressKey = (String, String);

fn address_key(address: &EndpointAddress) -> AddressKey {
    let uid = address
        .target_ref
        .as_ref()
        .and_then(|r| r.uid.clone())
        .unwrap_or_default();
    (address.ip.clone(), uid)
}

/// The subsets of the Endpoints of `svc`, given the pods its selector selects.
pub(super) fn desired_subsets(svc: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    repack(pods.iter().flat_map(|p| offers(svc, p)).collect())
}

/// What one pod offers: its address on every Service port it resolves.
fn offers(svc: &Service, pod: &Pod) -> Vec<Offer> {
    let publish = backends::publishes_not_ready(svc);
    if !backends::should_be_in_endpoints(pod, publish) {
        return Vec::new();
    }
    let Some(ip) = backends::endpoints_ip(svc, pod) else {
        return Vec::new();
    };
    let address = EndpointAddress {
        ip: ip.to_string(),
        hostname: backends::hostname(pod, svc),
        node_name: Some(backends::node_name(pod).unwrap_or_default().to_owned()),
        target_ref: Some(backends::pod_ref(pod)),
    };
    let ready = publish || is_ready(pod);
    let ports = backends::service_ports(svc);
    if ports.is_empty() {
        // Only an explicitly headless Service may select pods without naming ports.
        return if backends::is_explicitly_headless(svc) {
            vec![Offer {
                address,
                port: None,
                ready,
            }]
        } else {
            Vec::new()
        };
    }
    ports
        .iter()
        .filter_map(|port| {
            let number = backends::target_port(pod, port)?;
            let key = PortKey {
                name: port.name.clone().filter(|n| !n.is_empty()),
                port: number,
                protocol: Some(backends::protocol(port.protocol.as_ref())),
                app_protocol: port.app_protocol.clone(),
            };
            Some(Offer {
                address: address.clone(),
                port: Some(key),
                ready,
            })
        })
        .collect()
}

/// Upstream's `RepackSubsets`: groups the ports by the set of addresses offering them (an
/// address not ready on some port is not ready on it), one subset per distinct set.
fn repack(offers: Vec<Offer>) -> Vec<EndpointSubset> {
    let mut addresses: BTreeMap<AddressKey, EndpointAddress> = BTreeMap::new();
    let mut by_port: BTreeMap<Option<PortKey>, BTreeMap<AddressKey, bool>> = BTreeMap::new();
    for offer in offers {
        let key = address_key(&offer.address);
        addresses.entry(key.clone()).or_insert(offer.address);
        let ready = by_port
            .entry(offer.port)
            .or_default()
            .entry(key)
            .or_insert(true);
        *ready = *ready && offer.ready;
    }
    let mut groups: BTreeMap<Vec<(AddressKey, bool)>, Vec<PortKey>> = BTreeMap::new();
    for (port, set) in by_port {
        let ports = groups.entry(set.into_iter().collect()).or_default();
        ports.extend(port);
    }
    groups
        .into_iter()
        .map(|(set, ports)| {
            let (ready, not_ready): (Vec<_>, Vec<_>) = set.into_iter().partition(|(_, r)| *r);
            let pick = |keys: Vec<(AddressKey, bool)>| {
                let list: Vec<EndpointAddress> = keys
                    .into_iter()
                    .filter_map(|(k, _)| addresses.get(&k).cloned())
                    .collect();
                non_empty(list)
            };
            EndpointSubset {
                addresses: pick(ready),
                not_ready_addresses: pick(not_ready),
                ports: non_empty(ports.into_iter().map(PortKey::into_port).collect()),
            }
        })
        .collect()
}

fn non_empty<T>(list: Vec<T>) -> Option<Vec<T>> {
    (!list.is_empty()).then_some(list)
}

/// The labels of the Endpoints: the Service's, plus the headless label without a cluster IP.
pub(super) fn desired_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    if backends::has_cluster_ip(svc) {
        labels.remove(HEADLESS_LABEL);
    } else {
        labels.insert(HEADLESS_LABEL.to_owned(), String::new());
    }
    labels
}

/// Subsets as compared: empty lists absent, and pod resourceVersions ignored (a pod's other
/// changes do not change its address).
fn normalized(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    let addresses = |list: &Option<Vec<EndpointAddress>>| {
        let list: Vec<EndpointAddress> = list
            .iter()
            .flatten()
            .cloned()
            .map(|mut a| {
                if let Some(r) = a.target_ref.as_mut() {
                    r.resource_version = None;
                }
                a
            })
            .collect();
        non_empty(list)
    };
    subsets
        .iter()
        .map(|s| EndpointSubset {
            addresses: addresses(&s.addresses),
            not_ready_addresses: addresses(&s.not_ready_addresses),
            ports: s.ports.clone().and_then(non_empty),
        })
        .filter(|s| s != &EndpointSubset::default())
        .collect()
}

/// Whether the stored Endpoints already say what `subsets` and `labels` say.
pub(super) fn up_to_date(
    current: &Endpoints,
    subsets: &[EndpointSubset],
    labels: &BTreeMap<String, String>,
) -> bool {
    let current_labels = current.metadata.labels.clone().unwrap_or_default();
    &current_labels == labels
        && normalized(current.subsets.as_deref().unwrap_or_default()) == normalized(subsets)
}

/// The Endpoints to write: `current` (or a new object for `svc`) with the desired subsets,
/// labels, and trigger time.
pub(super) fn desired_endpoints(
    svc: &Service,
    current: Option<Endpoints>,
    subsets: Vec<EndpointSubset>,
    labels: BTreeMap<String, String>,
    trigger: Option<jiff::Timestamp>,
) -> Endpoints {
    let mut endpoints = current.unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
        subsets: None,
    });
    endpoints.subsets = non_empty(subsets);
    endpoints.metadata.labels = Some(labels);
    stamp_trigger_time(&mut endpoints.metadata, trigger);
    endpoints
}

#[cfg(test)]
mod tests {
    use super::super::backends::tests::{headless, labels, pod, service, service_port, unready};
    use super::*;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        list.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    fn ports(subset: &EndpointSubset) -> Vec<(Option<&str>, i32)> {
        subset
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.as_deref(), p.port))
            .collect()
    }

    #[test]
    fn ready_and_unready_pods_share_a_subset_per_port_set() {
        let svc = service();
        let (a, b, c) = (
            pod("a", "10.0.0.2"),
            unready(pod("b", "10.0.0.3")),
            pod("c", "10.0.0.1"),
        );
        let subsets = desired_subsets(&svc, &[&a, &b, &c]);
        assert_eq!(subsets.len(), 1);
        let subset = &subsets[0];
        assert_eq!(ips(&subset.addresses), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(ips(&subset.not_ready_addresses), ["10.0.0.3"]);
        assert_eq!(ports(subset), [(Some("http"), 8080)]);
        let first = &subset.addresses.as_ref().unwrap()[0];
        assert_eq!(first.node_name.as_deref(), Some("node-a"));
        let target = first.target_ref.as_ref().unwrap();
        assert_eq!(
            (
                target.kind.as_deref(),
                target.name.as_deref(),
                target.uid.as_deref()
            ),
            (Some("Pod"), Some("c"), Some("c-uid"))
        );
    }

    #[test]
    fn pods_resolving_a_named_port_differently_land_in_different_subsets() {
        let mut svc = service();
        svc.spec.as_mut().unwrap().ports = Some(vec![
            service_port("http", 80, IntOrString::String("http".into())),
            service_port("admin", 81, IntOrString::Int(9000)),
        ]);
        let a = pod("a", "10.0.0.1");
        let mut b = pod("b", "10.0.0.2");
        let container = &mut b.spec.as_mut().unwrap().containers[0];
        container.ports.as_mut().unwrap()[0].container_port = 8081;
        let mut c = pod("c", "10.0.0.3");
        c.spec.as_mut().unwrap().containers[0].ports = None;
        let subsets = desired_subsets(&svc, &[&a, &b, &c]);
        let summary: Vec<_> = subsets
            .iter()
            .map(|s| (ips(&s.addresses), ports(s)))
            .collect();
        assert_eq!(
            summary,
            [
                (vec!["10.0.0.1"], vec![(Some("http"), 8080)]),
                // Every pod offers the numeric target.
                (
                    vec!["10.0.0.1", "10.0.0.2", "10.0.0.3"],
                    vec![(Some("admin"), 9000)]
                ),
                (vec!["10.0.0.2"], vec![(Some("http"), 8081)]),
            ]
        );
    }

    #[test]
    fn an_address_unready_on_one_port_is_unready_there_only() {
        let offer = |ip: &str, port: i32, ready: bool| Offer {
            address: EndpointAddress {
                ip: ip.into(),
                ..EndpointAddress::default()
            },
            port: Some(PortKey {
                name: None,
                port,
                protocol: None,
                app_protocol: None,
            }),
            ready,
        };
        let subsets = repack(vec![
            offer("10.0.0.1", 80, true),
            offer("10.0.0.1", 80, false),
            offer("10.0.0.1", 81, true),
        ]);
        assert_eq!(subsets.len(), 2);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.0.0.1"]);
        assert_eq!(ports(&subsets[0]), [(None, 80)]);
        assert_eq!(ips(&subsets[1].addresses), ["10.0.0.1"]);
        assert_eq!(ports(&subsets[1]), [(None, 81)]);
    }

    #[test]
    fn terminating_pods_are_left_out_unless_unready_ones_are_published() {
        let mut svc = service();
        let leaving = super::super::backends::tests::terminating(pod("a", "10.0.0.1"));
        let down = unready(pod("b", "10.0.0.2"));
        assert!(desired_subsets(&svc, &[&leaving])[..].is_empty());
        svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let subsets = desired_subsets(&svc, &[&leaving, &down]);
        assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(subsets[0].not_ready_addresses, None);
    }

    #[test]
    fn headless_services_may_omit_ports_and_set_hostnames() {
        let mut svc = headless(service());
        svc.spec.as_mut().unwrap().ports = None;
        let mut a = pod("a", "10.0.0.1");
        let spec = a.spec.as_mut().unwrap();
        spec.hostname = Some("a".into());
        spec.subdomain = Some("web".into());
        let subsets = desired_subsets(&svc, &[&a]);
        assert_eq!(subsets.len(), 1);
        assert_eq!(subsets[0].ports, None);
        let address = &subsets[0].addresses.as_ref().unwrap()[0];
        assert_eq!(address.hostname.as_deref(), Some("a"));
        // With a cluster IP and no ports there is nothing to list.
        let mut plain = service();
        plain.spec.as_mut().unwrap().ports = None;
        assert!(desired_subsets(&plain, &[&a]).is_empty());
        assert_eq!(
            desired_labels(&svc),
            labels(&[("team", "a"), (HEADLESS_LABEL, "")])
        );
    }

    #[test]
    fn comparison_ignores_pod_versions_and_empty_lists() {
        let svc = service();
        let a = pod("a", "10.0.0.1");
        let subsets = desired_subsets(&svc, &[&a]);
        let labels = desired_labels(&svc);
        let mut current = desired_endpoints(&svc, None, subsets.clone(), labels.clone(), None);
        assert!(up_to_date(&current, &subsets, &labels));
        let stored = current.subsets.as_mut().unwrap();
        stored[0].not_ready_addresses = Some(vec![]);
        let address = &mut stored[0].addresses.as_mut().unwrap()[0];
        address.target_ref.as_mut().unwrap().resource_version = Some("7".into());
        assert!(up_to_date(&current, &subsets, &labels));
        assert!(!up_to_date(&current, &[], &labels));
        assert!(!up_to_date(&current, &subsets, &BTreeMap::new()));
        let empty = desired_endpoints(&svc, None, vec![], labels.clone(), None);
        assert!(up_to_date(&empty, &[], &labels));
        assert_eq!(empty.subsets, None);
    }

    #[test]
    fn writes_keep_other_metadata_and_stamp_the_trigger_time() {
        let svc = service();
        let mut current = desired_endpoints(&svc, None, vec![], BTreeMap::new(), None);
        current.metadata.resource_version = Some("5".into());
        current
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("keep".into(), "me".into());
        let at = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let written = desired_endpoints(&svc, Some(current), vec![], labels(&[]), Some(at));
        assert_eq!(written.metadata.resource_version.as_deref(), Some("5"));
        let annotations = written.metadata.annotations.unwrap();
        assert_eq!(annotations["keep"], "me");
        assert_eq!(annotations[TRIGGER_TIME_ANNOTATION], "2023-11-14T22:13:20Z");
        assert_eq!(written.metadata.name.as_deref(), Some("web"));
    }
}

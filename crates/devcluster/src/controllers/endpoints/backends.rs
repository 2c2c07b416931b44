//! What both controllers ask of a Service and its pods: which pods back it, at which address
//! and port, and whether they are ready. Upstream keeps these in `k8s.io/endpointslice/util`
//! and `pkg/api/v1/pod`; the two controllers share them there too.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

pub(super) use crate::controllers::podutil::is_ready;

/// The protocol of a port that does not name one (the API server's default).
const DEFAULT_PROTOCOL: &str = "TCP";

/// An IP family, which is also an EndpointSlice address type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Family {
    V4,
    V6,
}

impl Family {
    fn of(ip: &IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// `spec.ipFamilies` spelling.
    fn from_ip_family(family: &str) -> Option<Family> {
        match family {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        }
    }

    /// The EndpointSlice `addressType` of this family.
    pub(super) fn address_type(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// The selector of a Service the controllers manage: not ExternalName, with a non-empty
/// selector. Other Services get their Endpoints and EndpointSlices from their users.
pub(super) fn managed_selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

/// Whether a Service selector (equality on every pair) selects the pod.
pub(super) fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Upstream's `ShouldPodBeInEndpoints`: not terminal, has an address, and not terminating
/// unless `include_terminating`.
pub(super) fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    let has_ip = status.is_some_and(|s| {
        s.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty())
            || s.pod_ips.as_ref().is_some_and(|ips| !ips.is_empty())
    });
    has_ip && (include_terminating || !is_terminating(pod))
}

/// Whether the pod is being deleted.
pub(super) fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The pod's addresses: `status.podIPs`, or `status.podIP` when a writer set only that (the
/// API server fills one from the other on a real cluster). Unparseable ones are skipped.
pub(super) fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let listed: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    status
        .pod_ip
        .as_deref()
        .and_then(|ip| ip.parse().ok())
        .into_iter()
        .collect()
}

/// The families the Service declares: `spec.ipFamilies`, else the family of its cluster IP.
fn declared_families(svc: &Service) -> Vec<Family> {
    let Some(spec) = svc.spec.as_ref() else {
        return Vec::new();
    };
    let mut families: Vec<Family> = Vec::new();
    for family in spec
        .ip_families
        .iter()
        .flatten()
        .filter_map(|f| Family::from_ip_family(f))
    {
        if !families.contains(&family) {
            families.push(family);
        }
    }
    if families.is_empty()
        && let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok())
    {
        families.push(Family::of(&ip));
    }
    families
}

/// The address types of a Service's EndpointSlices. Upstream falls back to both families for
/// a headless Service without `ipFamilies` (an API server too old to set them); devcluster's
/// API server sets them as a single-stack IPv4 cluster's does, and its pods are IPv4-only, so
/// a Service without them (stored some other way) falls back to IPv4.
pub(super) fn slice_families(svc: &Service) -> Vec<Family> {
    let families = declared_families(svc);
    if families.is_empty() {
        vec![Family::V4]
    } else {
        families
    }
}

/// The pod address an Endpoints object lists: of the Service's first family, or, for a
/// Service declaring none, of the pod's first address (as upstream does for headless ones).
pub(super) fn endpoints_ip(svc: &Service, pod: &Pod) -> Option<IpAddr> {
    let ips = pod_ips(pod);
    let family = declared_families(svc)
        .first()
        .copied()
        .or_else(|| ips.first().map(Family::of))?;
    ips.into_iter().find(|ip| Family::of(ip) == family)
}

/// The pod's addresses of one family, as an EndpointSlice endpoint lists them.
pub(super) fn slice_addresses(pod: &Pod, family: Family) -> Vec<String> {
    pod_ips(pod)
        .into_iter()
        .filter(|ip| Family::of(ip) == family)
        .map(|ip| ip.to_string())
        .collect()
}

/// Whether the Service has a cluster IP (upstream's `IsServiceIPSet`); without one it is
/// headless and its Endpoints and slices carry the headless label.
pub(super) fn has_cluster_ip(svc: &Service) -> bool {
    let ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
    !matches!(ip, None | Some("" | "None"))
}

/// Whether the Service is explicitly headless (`clusterIP: None`): only such Services may
/// list pods without ports.
pub(super) fn is_explicitly_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// `spec.publishNotReadyAddresses`.
pub(super) fn publishes_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// The Service's ports.
pub(super) fn service_ports(svc: &Service) -> &[ServicePort] {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default()
}

/// A port's protocol, defaulted.
pub(super) fn protocol(protocol: Option<&String>) -> String {
    protocol.map_or(DEFAULT_PROTOCOL, String::as_str).to_owned()
}

/// Upstream's `FindPort`: the pod port a Service port targets. A number is taken as is; a
/// name is looked up among the ports of the pod's containers, then of its sidecars (init
/// containers that keep running), with the Service port's protocol. An unset target is the
/// Service port itself (the API server's default).
pub(super) fn target_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let name = match &port.target_port {
        Some(IntOrString::Int(n)) if *n != 0 => return Some(*n),
        Some(IntOrString::String(name)) if !name.is_empty() => name,
        _ => return Some(port.port),
    };
    let wanted = protocol(port.protocol.as_ref());
    let spec = pod.spec.as_ref()?;
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_ref() == Some(name) && protocol(p.protocol.as_ref()) == wanted)
        .map(|p| p.container_port)
}

/// Upstream's `ShouldSetHostname`: the pod's `hostname`, when its `subdomain` names the
/// Service.
pub(super) fn hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let same_namespace = pod.metadata.namespace == svc.metadata.namespace;
    (same_namespace && spec.subdomain.is_some() && spec.subdomain == svc.metadata.name)
        .then(|| hostname.to_owned())
}

/// The node the pod runs on.
pub(super) fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// The reference an address keeps to its pod.
pub(super) fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// The `endpoints.kubernetes.io/last-change-trigger-time` of a write: the latest of the
/// Service's creation and its pods' readiness changes. Upstream tracks which of these changed
/// since its previous sync; a sync here starts from scratch, so it takes the latest of all.
pub(super) fn trigger_time(svc: &Service, pods: &[&Pod]) -> Option<jiff::Timestamp> {
    let ready_changes = pods.iter().filter_map(|p| {
        let ready = p
            .status
            .as_ref()?
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Ready")?;
        ready.last_transition_time.as_ref().map(|t| t.0)
    });
    let created = svc.metadata.creation_timestamp.as_ref().map(|t| t.0);
    ready_changes.chain(created).max()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    pub(in crate::controllers::endpoints) fn labels(
        pairs: &[(&str, &str)],
    ) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// A ready pod `name` at `ip` labelled `app=web`, with a container port `http` = 8080.
    pub(in crate::controllers::endpoints) fn pod(name: &str, ip: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                uid: Some(format!("{name}-uid")),
                labels: Some(labels(&[("app", "web")])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-a".into()),
                containers: vec![Container {
                    name: "app".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: 8080,
                        ..ContainerPort::default()
                    }]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(ip.into()),
                pod_ips: Some(vec![PodIP { ip: ip.into() }]),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    pub(in crate::controllers::endpoints) fn unready(mut pod: Pod) -> Pod {
        for c in pod
            .status
            .iter_mut()
            .flat_map(|s| s.conditions.iter_mut().flatten())
        {
            c.status = "False".into();
        }
        pod
    }

    pub(in crate::controllers::endpoints) fn terminating(mut pod: Pod) -> Pod {
        pod.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        pod
    }

    pub(in crate::controllers::endpoints) fn service_port(
        name: &str,
        port: i32,
        target: IntOrString,
    ) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port,
            protocol: Some("TCP".into()),
            target_port: Some(target),
            ..ServicePort::default()
        }
    }

    /// Service `web` selecting `app=web`, cluster IP 10.96.0.10, port `http` 80 -> `http`.
    pub(in crate::controllers::endpoints) fn service() -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("svc-uid".into()),
                labels: Some(labels(&[("team", "a")])),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some("10.96.0.10".into()),
                selector: Some(labels(&[("app", "web")])),
                ports: Some(vec![service_port(
                    "http",
                    80,
                    IntOrString::String("http".into()),
                )]),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    pub(in crate::controllers::endpoints) fn headless(mut svc: Service) -> Service {
        if let Some(spec) = svc.spec.as_mut() {
            spec.cluster_ip = Some("None".into());
        }
        svc
    }

    #[test]
    fn only_services_with_a_selector_are_managed() {
        let svc = service();
        assert!(managed_selector(&svc).is_some());
        let mut none = service();
        none.spec.as_mut().unwrap().selector = None;
        assert!(managed_selector(&none).is_none());
        let mut empty = service();
        empty.spec.as_mut().unwrap().selector = Some(BTreeMap::new());
        assert!(managed_selector(&empty).is_none());
        let mut external = service();
        external.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
        assert!(managed_selector(&external).is_none());
    }

    #[test]
    fn selection_needs_every_selector_label() {
        let selector = labels(&[("app", "web"), ("tier", "front")]);
        let mut p = pod("a", "10.0.0.1");
        assert!(!selects(&selector, &p));
        p.metadata.labels = Some(labels(&[("app", "web"), ("tier", "front"), ("x", "y")]));
        assert!(selects(&selector, &p));
        p.metadata.labels = Some(labels(&[("app", "web"), ("tier", "back")]));
        assert!(!selects(&selector, &p));
    }

    #[test]
    fn terminal_addressless_and_terminating_pods_are_left_out() {
        let p = pod("a", "10.0.0.1");
        assert!(should_be_in_endpoints(&p, false));
        let mut failed = p.clone();
        failed.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert!(!should_be_in_endpoints(&failed, true));
        let mut no_ip = p.clone();
        no_ip.status.as_mut().unwrap().pod_ip = None;
        no_ip.status.as_mut().unwrap().pod_ips = None;
        assert!(!should_be_in_endpoints(&no_ip, true));
        let leaving = terminating(p);
        assert!(!should_be_in_endpoints(&leaving, false));
        assert!(should_be_in_endpoints(&leaving, true));
    }

    #[test]
    fn target_ports_resolve_by_number_and_by_name_and_protocol() {
        let mut p = pod("a", "10.0.0.1");
        let by_number = service_port("n", 80, IntOrString::Int(9090));
        assert_eq!(target_port(&p, &by_number), Some(9090));
        let by_name = service_port("h", 80, IntOrString::String("http".into()));
        assert_eq!(target_port(&p, &by_name), Some(8080));
        let unset = ServicePort {
            port: 81,
            ..ServicePort::default()
        };
        assert_eq!(target_port(&p, &unset), Some(81));
        let udp = ServicePort {
            protocol: Some("UDP".into()),
            ..by_name.clone()
        };
        assert_eq!(target_port(&p, &udp), None);
        let missing = service_port("m", 80, IntOrString::String("metrics".into()));
        assert_eq!(target_port(&p, &missing), None);
        // A sidecar's ports count; an ordinary init container's do not.
        let spec = p.spec.as_mut().unwrap();
        let port = ContainerPort {
            name: Some("metrics".into()),
            container_port: 9100,
            ..ContainerPort::default()
        };
        spec.init_containers = Some(vec![Container {
            name: "init".into(),
            ports: Some(vec![port.clone()]),
            ..Container::default()
        }]);
        assert_eq!(target_port(&p, &missing), None);
        let spec = p.spec.as_mut().unwrap();
        spec.init_containers = Some(vec![Container {
            name: "sidecar".into(),
            restart_policy: Some("Always".into()),
            ports: Some(vec![port]),
            ..Container::default()
        }]);
        assert_eq!(target_port(&p, &missing), Some(9100));
    }

    #[test]
    fn families_come_from_the_service_then_the_cluster_ip() {
        let mut svc = service();
        assert_eq!(slice_families(&svc), [Family::V4]);
        svc.spec.as_mut().unwrap().ip_families = Some(vec!["IPv6".into(), "IPv4".into()]);
        assert_eq!(slice_families(&svc), [Family::V6, Family::V4]);
        let mut dual = pod("a", "10.0.0.1");
        dual.status.as_mut().unwrap().pod_ips = Some(vec![
            PodIP {
                ip: "10.0.0.1".into(),
            },
            PodIP {
                ip: "fd00::1".into(),
            },
        ]);
        assert_eq!(endpoints_ip(&svc, &dual), Some("fd00::1".parse().unwrap()));
        assert_eq!(slice_addresses(&dual, Family::V4), ["10.0.0.1"]);
        let plain = headless(service());
        assert_eq!(slice_families(&plain), [Family::V4]);
        assert_eq!(
            endpoints_ip(&plain, &dual),
            Some("10.0.0.1".parse().unwrap())
        );
        assert!(!has_cluster_ip(&plain) && is_explicitly_headless(&plain));
    }

    #[test]
    fn pod_ip_stands_in_for_a_missing_pod_ips() {
        let mut p = pod("a", "10.0.0.7");
        p.status.as_mut().unwrap().pod_ips = None;
        assert_eq!(pod_ips(&p), ["10.0.0.7".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn hostname_needs_the_subdomain_to_name_the_service() {
        let svc = service();
        let mut p = pod("a", "10.0.0.1");
        let spec = p.spec.as_mut().unwrap();
        spec.hostname = Some("a-host".into());
        assert_eq!(hostname(&p, &svc), None);
        p.spec.as_mut().unwrap().subdomain = Some("web".into());
        assert_eq!(hostname(&p, &svc).as_deref(), Some("a-host"));
        p.metadata.namespace = Some("other".into());
        assert_eq!(hostname(&p, &svc), None);
    }

    #[test]
    fn trigger_time_is_the_latest_change() {
        let early = jiff::Timestamp::from_second(1_000).unwrap();
        let late = jiff::Timestamp::from_second(2_000).unwrap();
        let mut svc = service();
        svc.metadata.creation_timestamp = Some(Time(early));
        assert_eq!(trigger_time(&svc, &[]), Some(early));
        let mut p = pod("a", "10.0.0.1");
        for c in p
            .status
            .iter_mut()
            .flat_map(|s| s.conditions.iter_mut().flatten())
        {
            c.last_transition_time = Some(Time(late));
        }
        assert_eq!(trigger_time(&svc, &[&p]), Some(late));
    }
}

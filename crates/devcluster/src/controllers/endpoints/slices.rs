//! The EndpointSlices a managed Service should have, planned as upstream's endpointslice
//! reconciler (`k8s.io/endpointslice`) does: per address type, pods are grouped by the ports
//! they resolve; each group's endpoints go into slices of at most
//! [`MAX_ENDPOINTS_PER_SLICE`], reusing existing slices (changed ones are rewritten in place,
//! new endpoints fill slices being rewritten anyway, then the unchanged slice they fit best)
//! before creating new ones; a slice left empty is deleted, or rather rewritten when a slice
//! would be created in the same sync; a Service with no endpoints keeps one empty
//! "placeholder" slice.
//!
//! Endpoints are ordered by address here (upstream takes them in map order), so the same pods
//! always give the same slices.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::backends::{self, Family, is_ready};
use super::{CONTROLLER_NAME, HEADLESS_LABEL, MANAGED_BY_LABEL, SERVICE_NAME_LABEL};

/// Upstream's default `--max-endpoints-per-slice`.
pub(super) const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// The writes that bring a Service's slices to the desired state.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// New slices (`generateName`).
    pub(super) create: Vec<EndpointSlice>,
    /// Existing slices, rewritten whole.
    pub(super) update: Vec<EndpointSlice>,
    /// Existing slices to delete.
    pub(super) delete: Vec<EndpointSlice>,
}

impl Plan {
    fn extend(&mut self, other: Plan) {
        self.create.extend(other.create);
        self.update.extend(other.update);
        self.delete.extend(other.delete);
    }

    /// Whether there is nothing to write.
    pub(super) fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// A slice port, ordered; a slice's sorted ports identify the group of pods it serves.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PortKey {
    name: Option<String>,
    port: Option<i32>,
    protocol: Option<String>,
    app_protocol: Option<String>,
}

type PortsKey = Vec<PortKey>;

fn ports_key(ports: &[EndpointPort]) -> PortsKey {
    let mut key: PortsKey = ports
        .iter()
        .map(|p| PortKey {
            name: p.name.clone(),
            port: p.port,
            protocol: p.protocol.clone(),
            app_protocol: p.app_protocol.clone(),
        })
        .collect();
    key.sort();
    key
}

fn ports_of(key: &PortsKey) -> Vec<EndpointPort> {
    key.iter()
        .map(|k| EndpointPort {
            name: k.name.clone(),
            port: k.port,
            protocol: k.protocol.clone(),
            app_protocol: k.app_protocol.clone(),
        })
        .collect()
}

/// What identifies an endpoint across syncs (upstream hashes the same fields): its sorted
/// addresses, hostname, and pod.
type EndpointKey = (Vec<String>, Option<String>, Option<String>, Option<String>);

fn endpoint_key(endpoint: &Endpoint) -> EndpointKey {
    let mut addresses = endpoint.addresses.clone();
    addresses.sort();
    let target = endpoint.target_ref.as_ref();
    (
        addresses,
        endpoint.hostname.clone(),
        target.and_then(|t| t.namespace.clone()),
        target.and_then(|t| t.name.clone()),
    )
}

/// The writes that make the managed `existing` slices of `svc` list `pods` (the pods its
/// selector selects), with at most `max` endpoints per slice.
pub(super) fn plan(svc: &Service, pods: &[&Pod], existing: Vec<EndpointSlice>, max: usize) -> Plan {
    let mut by_family: BTreeMap<Family, Vec<EndpointSlice>> = backends::slice_families(svc)
        .into_iter()
        .map(|f| (f, Vec::new()))
        .collect();
    let mut plan = Plan::default();
    for slice in existing {
        let family = address_family(&slice.address_type);
        match family.and_then(|f| by_family.get_mut(&f)) {
            Some(slices) => slices.push(slice),
            // An address type the Service no longer has.
            None => plan.delete.push(slice),
        }
    }
    for (family, existing) in by_family {
        plan.extend(plan_family(svc, pods, existing, family, max));
    }
    // Creating slices for a Service on its way out would race with the garbage collector.
    if svc.metadata.deletion_timestamp.is_some() {
        plan.create.clear();
    }
    plan
}

fn address_family(address_type: &str) -> Option<Family> {
    [Family::V4, Family::V6]
        .into_iter()
        .find(|f| f.address_type() == address_type)
}

/// Upstream's `reconcileByAddressType`.
fn plan_family(
    svc: &Service,
    pods: &[&Pod],
    existing: Vec<EndpointSlice>,
    family: Family,
    max: usize,
) -> Plan {
    let existing_count = existing.len();
    let mut plan = Plan::default();
    let mut existing_by_ports: BTreeMap<PortsKey, Vec<EndpointSlice>> = BTreeMap::new();
    for slice in existing {
        if owned_by(&slice, svc) {
            let key = ports_key(slice.ports.as_deref().unwrap_or_default());
            existing_by_ports.entry(key).or_default().push(slice);
        } else {
            // Left over from an earlier Service of the same name.
            plan.delete.push(slice);
        }
    }
    for (key, desired) in desired_endpoints(svc, pods, family) {
        let existing = existing_by_ports.remove(&key).unwrap_or_default();
        let meta = SliceMeta {
            ports: ports_of(&key),
            family,
        };
        plan.extend(plan_ports(svc, existing, desired, &meta, max));
    }
    plan.delete
        .extend(existing_by_ports.into_values().flatten());
    if existing_count == plan.delete.len() && plan.create.is_empty() {
        let placeholder = new_slice(
            svc,
            &SliceMeta {
                ports: Vec::new(),
                family,
            },
        );
        match plan.delete.as_slice() {
            [only] if is_same_placeholder(only, &placeholder, svc) => plan.delete.clear(),
            _ => plan.create.push(placeholder),
        }
    }
    reuse_deleted(svc, &mut plan);
    plan
}

/// The endpoints of the pods, grouped by the ports each pod resolves. A group exists for
/// every pod that belongs in a slice, even one without an address of `family`.
fn desired_endpoints(
    svc: &Service,
    pods: &[&Pod],
    family: Family,
) -> BTreeMap<PortsKey, BTreeMap<EndpointKey, Endpoint>> {
    let mut desired: BTreeMap<PortsKey, BTreeMap<EndpointKey, Endpoint>> = BTreeMap::new();
    for pod in pods {
        if !backends::should_be_in_endpoints(pod, true) {
            continue;
        }
        let group = desired
            .entry(ports_key(&endpoint_ports(svc, pod)))
            .or_default();
        let endpoint = pod_endpoint(svc, pod, family);
        if !endpoint.addresses.is_empty() {
            group.insert(endpoint_key(&endpoint), endpoint);
        }
    }
    desired
}

/// Upstream's `getEndpointPorts`: the Service ports the pod resolves.
fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    backends::service_ports(svc)
        .iter()
        .filter_map(|port| {
            let number = backends::target_port(pod, port)?;
            Some(EndpointPort {
                name: Some(port.name.clone().unwrap_or_default()),
                port: Some(number),
                protocol: Some(backends::protocol(port.protocol.as_ref())),
                app_protocol: port.app_protocol.clone(),
            })
        })
        .collect()
}

/// Upstream's `podToEndpoint`. A terminating pod is never `ready` (unless the Service
/// publishes unready addresses), but stays `serving` while its Ready condition holds.
fn pod_endpoint(svc: &Service, pod: &Pod, family: Family) -> Endpoint {
    let serving = is_ready(pod);
    let terminating = backends::is_terminating(pod);
    let ready = backends::publishes_not_ready(svc) || (serving && !terminating);
    Endpoint {
        addresses: backends::slice_addresses(pod, family),
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: backends::hostname(pod, svc),
        node_name: backends::node_name(pod).map(str::to_owned),
        target_ref: Some(backends::pod_ref(pod)),
        ..Endpoint::default()
    }
}

/// What the slices of one group share.
struct SliceMeta {
    ports: Vec<EndpointPort>,
    family: Family,
}

/// What the plan does with an existing slice of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Unchanged,
    Update,
    Delete,
}

/// Upstream's `reconcileByPortMapping`, for the existing slices of one group.
fn plan_ports(
    svc: &Service,
    existing: Vec<EndpointSlice>,
    mut desired: BTreeMap<EndpointKey, Endpoint>,
    meta: &SliceMeta,
    max: usize,
) -> Plan {
    let labels = slice_labels(svc);
    // 1. Keep the endpoints still desired, in their slices, as they should be now.
    let mut slices: Vec<(EndpointSlice, Fate)> = existing
        .into_iter()
        .map(|mut slice| {
            let before = slice.endpoints.len();
            let mut changed = false;
            let mut kept = Vec::new();
            for endpoint in &slice.endpoints {
                if let Some(want) = desired.remove(&endpoint_key(endpoint)) {
                    changed |= !same_endpoint(&want, endpoint);
                    kept.push(want);
                }
            }
            let labels_changed = slice.metadata.labels.as_ref() != Some(&labels);
            let fate = if changed || kept.len() != before {
                if kept.is_empty() {
                    Fate::Delete
                } else {
                    slice.endpoints = kept;
                    slice.metadata.labels = Some(labels.clone());
                    Fate::Update
                }
            } else if labels_changed {
                slice.metadata.labels = Some(labels.clone());
                Fate::Update
            } else {
                Fate::Unchanged
            };
            (slice, fate)
        })
        .collect();
    let mut remaining = desired.into_values();
    let mut next = remaining.next();
    // 2. Top up the slices being rewritten anyway, fullest first.
    let mut updating: Vec<usize> = (0..slices.len())
        .filter(|i| slices[*i].1 == Fate::Update)
        .collect();
    updating.sort_by_key(|i| std::cmp::Reverse(slices[*i].0.endpoints.len()));
    for i in updating {
        fill(&mut slices[i].0, &mut next, &mut remaining, max);
    }
    // 3. Put what is left into the unchanged slice it fits best, or into new slices.
    let mut create = Vec::new();
    while next.is_some() {
        let left = 1 + remaining.len();
        let target = (left < max)
            .then(|| slice_to_fill(&slices, left, max))
            .flatten();
        match target {
            Some(i) => {
                fill(&mut slices[i].0, &mut next, &mut remaining, max);
                slices[i].1 = Fate::Update;
            }
            None => {
                let mut slice = new_slice(svc, meta);
                fill(&mut slice, &mut next, &mut remaining, max);
                create.push(slice);
            }
        }
    }
    let mut plan = Plan {
        create,
        ..Plan::default()
    };
    for (slice, fate) in slices {
        match fate {
            Fate::Unchanged => {}
            Fate::Update => plan.update.push(slice),
            Fate::Delete => plan.delete.push(slice),
        }
    }
    plan
}

/// Moves endpoints from the desired ones (`next`, then `rest`) into `slice` while it has room.
fn fill(
    slice: &mut EndpointSlice,
    next: &mut Option<Endpoint>,
    rest: &mut impl ExactSizeIterator<Item = Endpoint>,
    max: usize,
) {
    while slice.endpoints.len() < max {
        let Some(endpoint) = next.take() else {
            return;
        };
        slice.endpoints.push(endpoint);
        *next = rest.next();
    }
}

/// Upstream's `getSliceToFill`: the unchanged slice that `count` more endpoints bring closest
/// to full without overflowing it.
fn slice_to_fill(slices: &[(EndpointSlice, Fate)], count: usize, max: usize) -> Option<usize> {
    slices
        .iter()
        .enumerate()
        .filter(|(_, (_, fate))| *fate == Fate::Unchanged)
        .filter_map(|(i, (slice, _))| {
            let room = max.checked_sub(count + slice.endpoints.len())?;
            Some((room, i))
        })
        .min()
        .map(|(_, i)| i)
}

/// Whether a stored endpoint says what the desired one says (a pod's resourceVersion aside).
fn same_endpoint(desired: &Endpoint, stored: &Endpoint) -> bool {
    let mut stored = stored.clone();
    if let Some(target) = stored.target_ref.as_mut() {
        target.resource_version = None;
    }
    stored.addresses.sort();
    *desired == stored
}

/// Upstream's `setEndpointSliceLabels`: the Service's labels (bar the reserved ones), the
/// headless label without a cluster IP, and the Service name and manager.
pub(super) fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = svc
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| {
            ![SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL].contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !backends::has_cluster_ip(svc) {
        labels.insert(HEADLESS_LABEL.to_owned(), String::new());
    }
    labels.insert(
        SERVICE_NAME_LABEL.to_owned(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.to_owned(), CONTROLLER_NAME.to_owned());
    labels
}

/// Upstream's `newEndpointSlice`: empty, named `<service>-<random>`, controlled by the
/// Service (so the garbage collector deletes it with the Service).
fn new_slice(svc: &Service, meta: &SliceMeta) -> EndpointSlice {
    let name = svc.metadata.name.clone().unwrap_or_default();
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(slice_labels(svc)),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name,
                uid: svc.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        address_type: meta.family.address_type().to_owned(),
        endpoints: Vec::new(),
        ports: Some(meta.ports.clone()),
    }
}

fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    slice.metadata.owner_references.iter().flatten().any(|r| {
        Some(&r.uid) == svc.metadata.uid.as_ref() && r.kind == "Service" && r.api_version == "v1"
    })
}

/// Whether `slice` is already the placeholder the Service should have.
fn is_same_placeholder(slice: &EndpointSlice, placeholder: &EndpointSlice, svc: &Service) -> bool {
    owned_by(slice, svc)
        && slice.metadata.namespace == placeholder.metadata.namespace
        && slice.metadata.labels == placeholder.metadata.labels
        && slice.address_type == placeholder.address_type
        && slice.endpoints.is_empty()
        && slice.ports.as_ref().is_none_or(Vec::is_empty)
}

/// Upstream's `finalize`: rather than create one slice and delete another, rewrite the one
/// being deleted (if it is the Service's and of the same address type).
fn reuse_deleted(svc: &Service, plan: &mut Plan) {
    let mut i = 0;
    while i < plan.delete.len() {
        let Some(new) = plan.create.last() else {
            return;
        };
        let old = &plan.delete[i];
        if old.address_type != new.address_type || !owned_by(old, svc) {
            i += 1;
            continue;
        }
        let old = plan.delete.remove(i);
        if let Some(mut slice) = plan.create.pop() {
            slice.metadata.name = old.metadata.name;
            slice.metadata.resource_version = old.metadata.resource_version;
            plan.update.push(slice);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::backends::tests::{labels, pod, service, terminating, unready};
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    /// What the server would store for a planned slice.
    fn stored(mut slice: EndpointSlice, name: &str) -> EndpointSlice {
        slice.metadata.name = Some(name.into());
        slice.metadata.resource_version = Some(format!("{name}-rv"));
        slice
    }

    fn pods(n: usize) -> Vec<Pod> {
        (0..n)
            .map(|i| {
                pod(
                    &format!("p{i:03}"),
                    &format!("10.0.{}.{}", i / 250, i % 250 + 1),
                )
            })
            .collect()
    }

    fn refs(pods: &[Pod]) -> Vec<&Pod> {
        pods.iter().collect()
    }

    fn addresses(slice: &EndpointSlice) -> Vec<&str> {
        slice
            .endpoints
            .iter()
            .flat_map(|e| e.addresses.iter().map(String::as_str))
            .collect()
    }

    fn conditions(endpoint: &Endpoint) -> (Option<bool>, Option<bool>, Option<bool>) {
        let c = endpoint.conditions.clone().unwrap_or_default();
        (c.ready, c.serving, c.terminating)
    }

    #[test]
    fn a_new_service_gets_one_slice_of_its_pods() {
        let svc = service();
        let pods = pods(3);
        let plan = plan(&svc, &refs(&pods), vec![], MAX_ENDPOINTS_PER_SLICE);
        assert!(plan.update.is_empty() && plan.delete.is_empty());
        let [slice] = plan.create.as_slice() else {
            panic!("one slice: {plan:?}");
        };
        assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(slice.address_type, "IPv4");
        assert_eq!(addresses(slice), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        let endpoint = &slice.endpoints[0];
        assert_eq!(conditions(endpoint), (Some(true), Some(true), Some(false)));
        assert_eq!(endpoint.node_name.as_deref(), Some("node-a"));
        assert_eq!(
            endpoint.target_ref.as_ref().and_then(|r| r.name.as_deref()),
            Some("p000")
        );
        let port = &slice.ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.name.as_deref(), port.port, port.protocol.as_deref()),
            (Some("http"), Some(8080), Some("TCP"))
        );
        assert_eq!(
            slice.metadata.labels,
            Some(labels(&[
                ("team", "a"),
                (SERVICE_NAME_LABEL, "web"),
                (MANAGED_BY_LABEL, CONTROLLER_NAME),
            ]))
        );
        let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
        assert!(owned_by(slice, &svc));
        assert_eq!(owner.controller, Some(true));
    }

    #[test]
    fn stored_slices_that_match_are_left_alone() {
        let svc = service();
        let pods = pods(3);
        let created = plan(&svc, &refs(&pods), vec![], MAX_ENDPOINTS_PER_SLICE).create;
        let existing = created.into_iter().map(|s| stored(s, "web-abc")).collect();
        let again = plan(&svc, &refs(&pods), existing, MAX_ENDPOINTS_PER_SLICE);
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn changed_and_removed_pods_rewrite_the_slice_in_place() {
        let svc = service();
        let mut pods = pods(3);
        let created = plan(&svc, &refs(&pods), vec![], MAX_ENDPOINTS_PER_SLICE).create;
        let existing: Vec<_> = created.into_iter().map(|s| stored(s, "web-abc")).collect();
        pods[0] = unready(pods[0].clone());
        pods[1] = terminating(pods[1].clone());
        pods.pop();
        let plan = plan(&svc, &refs(&pods), existing, MAX_ENDPOINTS_PER_SLICE);
        assert!(plan.create.is_empty() && plan.delete.is_empty());
        let [slice] = plan.update.as_slice() else {
            panic!("one update: {plan:?}");
        };
        assert_eq!(slice.metadata.name.as_deref(), Some("web-abc"));
        assert_eq!(
            slice.metadata.resource_version.as_deref(),
            Some("web-abc-rv")
        );
        assert_eq!(addresses(slice), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(
            conditions(&slice.endpoints[0]),
            (Some(false), Some(false), Some(false))
        );
        assert_eq!(
            conditions(&slice.endpoints[1]),
            (Some(false), Some(true), Some(true))
        );
    }

    #[test]
    fn no_pods_means_one_placeholder_slice() {
        let svc = service();
        let plan_empty = plan(&svc, &[], vec![], MAX_ENDPOINTS_PER_SLICE);
        let [placeholder] = plan_empty.create.as_slice() else {
            panic!("a placeholder: {plan_empty:?}");
        };
        assert!(placeholder.endpoints.is_empty());
        assert_eq!(placeholder.ports, Some(vec![]));
        let existing = vec![stored(placeholder.clone(), "web-ph")];
        assert!(plan(&svc, &[], existing.clone(), MAX_ENDPOINTS_PER_SLICE).is_empty());
        // Pods arriving turn the placeholder into their slice.
        let pods = pods(1);
        let filled = plan(&svc, &refs(&pods), existing, MAX_ENDPOINTS_PER_SLICE);
        assert!(filled.create.is_empty() && filled.delete.is_empty());
        assert_eq!(filled.update[0].metadata.name.as_deref(), Some("web-ph"));
        assert_eq!(addresses(&filled.update[0]), ["10.0.0.1"]);
        // And their going turns it back.
        let existing = vec![stored(filled.update[0].clone(), "web-ph")];
        let emptied = plan(&svc, &[], existing, MAX_ENDPOINTS_PER_SLICE);
        assert!(emptied.create.is_empty() && emptied.delete.is_empty());
        assert!(emptied.update[0].endpoints.is_empty());
    }

    #[test]
    fn slices_hold_at_most_max_endpoints_and_fill_the_best_fit() {
        let svc = service();
        let mut pods = pods(251);
        let last = pods.pop().unwrap();
        let created = plan(&svc, &refs(&pods), vec![], MAX_ENDPOINTS_PER_SLICE).create;
        let sizes: Vec<usize> = created.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let existing: Vec<_> = created
            .into_iter()
            .enumerate()
            .map(|(i, s)| stored(s, &format!("web-{i}")))
            .collect();
        pods.push(last);
        let grown = plan(&svc, &refs(&pods), existing, MAX_ENDPOINTS_PER_SLICE);
        assert!(grown.create.is_empty() && grown.delete.is_empty());
        let [slice] = grown.update.as_slice() else {
            panic!("one update: {grown:?}");
        };
        assert_eq!(slice.metadata.name.as_deref(), Some("web-2"));
        assert_eq!(slice.endpoints.len(), 51);
    }

    #[test]
    fn updated_slices_are_topped_up_before_new_ones_are_made() {
        let svc = service();
        let pods = pods(4);
        let created = plan(&svc, &refs(&pods[..2]), vec![], 2).create;
        let existing: Vec<_> = created.into_iter().map(|s| stored(s, "web-a")).collect();
        // p000 leaves, p002 and p003 arrive: p002 takes its place, p003 needs a new slice.
        let now = refs(&pods[1..]);
        let plan = plan(&svc, &now, existing, 2);
        assert_eq!(plan.update.len(), 1);
        assert_eq!(addresses(&plan.update[0]), ["10.0.0.2", "10.0.0.3"]);
        assert_eq!(addresses(&plan.create[0]), ["10.0.0.4"]);
    }

    #[test]
    fn new_ports_rewrite_the_old_slice_and_pods_split_by_port() {
        let svc = service();
        let pods = pods(2);
        let created = plan(&svc, &refs(&pods), vec![], MAX_ENDPOINTS_PER_SLICE).create;
        let existing: Vec<_> = created.into_iter().map(|s| stored(s, "web-a")).collect();
        let mut moved = svc.clone();
        moved.spec.as_mut().unwrap().ports =
            Some(vec![super::super::backends::tests::service_port(
                "http",
                80,
                IntOrString::Int(9090),
            )]);
        let plan_moved = plan(
            &moved,
            &refs(&pods),
            existing.clone(),
            MAX_ENDPOINTS_PER_SLICE,
        );
        assert!(plan_moved.create.is_empty() && plan_moved.delete.is_empty());
        let rewritten = &plan_moved.update[0];
        assert_eq!(rewritten.metadata.name.as_deref(), Some("web-a"));
        assert_eq!(rewritten.ports.as_ref().unwrap()[0].port, Some(9090));
        // A pod resolving the named port elsewhere gets a slice of its own.
        let mut odd = pods.clone();
        let container = &mut odd[1].spec.as_mut().unwrap().containers[0];
        container.ports.as_mut().unwrap()[0].container_port = 8081;
        let split = plan(&svc, &refs(&odd), existing, MAX_ENDPOINTS_PER_SLICE);
        assert_eq!(addresses(&split.update[0]), ["10.0.0.1"]);
        assert_eq!(addresses(&split.create[0]), ["10.0.0.2"]);
        assert_eq!(split.create[0].ports.as_ref().unwrap()[0].port, Some(8081));
    }

    #[test]
    fn foreign_and_other_family_slices_are_deleted() {
        let svc = service();
        let pods = pods(1);
        let created = plan(&svc, &refs(&pods), vec![], MAX_ENDPOINTS_PER_SLICE).create;
        let mine = stored(created[0].clone(), "web-a");
        let mut foreign = stored(created[0].clone(), "web-old");
        foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "old-uid".into();
        let mut v6 = stored(created[0].clone(), "web-v6");
        v6.address_type = "IPv6".into();
        let plan = plan(&svc, &refs(&pods), vec![foreign, mine, v6], 100);
        assert!(plan.create.is_empty() && plan.update.is_empty());
        let deleted: Vec<_> = plan
            .delete
            .iter()
            .filter_map(|s| s.metadata.name.as_deref())
            .collect();
        assert_eq!(deleted, ["web-v6", "web-old"]);
    }

    #[test]
    fn label_changes_and_hand_edits_are_rewritten() {
        let svc = service();
        let pods = pods(1);
        let created = plan(&svc, &refs(&pods), vec![], MAX_ENDPOINTS_PER_SLICE).create;
        let mut edited = stored(created[0].clone(), "web-a");
        edited.endpoints.push(Endpoint {
            addresses: vec!["192.0.2.1".into()],
            ..Endpoint::default()
        });
        edited.endpoints[0].conditions = None;
        let plan_edit = plan(&svc, &refs(&pods), vec![edited], MAX_ENDPOINTS_PER_SLICE);
        assert_eq!(plan_edit.update[0].endpoints, created[0].endpoints);
        let mut relabelled = svc.clone();
        relabelled.metadata.labels = Some(labels(&[("team", "b")]));
        let existing = vec![stored(created[0].clone(), "web-a")];
        let plan_labels = plan(&relabelled, &refs(&pods), existing, MAX_ENDPOINTS_PER_SLICE);
        let written = plan_labels.update[0].metadata.labels.clone().unwrap();
        assert_eq!(written["team"], "b");
        assert_eq!(written[SERVICE_NAME_LABEL], "web");
    }

    #[test]
    fn a_deleting_service_gets_no_new_slices() {
        let mut svc = service();
        svc.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        let pods = pods(1);
        assert!(plan(&svc, &refs(&pods), vec![], MAX_ENDPOINTS_PER_SLICE).is_empty());
    }

    #[test]
    fn reserved_service_labels_do_not_reach_slices() {
        let mut svc = super::super::backends::tests::headless(service());
        svc.metadata.labels = Some(labels(&[(SERVICE_NAME_LABEL, "evil"), ("x", "y")]));
        let labels = slice_labels(&svc);
        assert_eq!(labels[SERVICE_NAME_LABEL], "web");
        assert_eq!(labels[HEADLESS_LABEL], "");
        assert_eq!(labels["x"], "y");
    }
}

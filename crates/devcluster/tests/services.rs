//! The Endpoints and EndpointSlice controllers against devcluster over HTTP: Services with a
//! selector get Endpoints and EndpointSlices listing the pods they select, which follow the
//! pods' readiness, termination and deletion, revert hand edits, and go with the Service;
//! selector-less Services keep the Endpoints their users write.

use std::collections::BTreeSet;
use std::time::Duration;

use devcluster::controllers::{ControllerOptions, pods};
use devcluster::{DevCluster, Options};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use testkit::eventually;

const TIMEOUT: Duration = Duration::from_secs(20);
const NS: &str = "default";
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";

async fn cluster() -> DevCluster {
    DevCluster::start(Options {
        controllers: ControllerOptions::default(),
        ..Options::default()
    })
    .await
    .expect("devcluster starts")
}

/// The container every test pod runs: port `http` is 8080.
fn containers() -> serde_json::Value {
    json!([{"name": "app", "image": "nginx:1.27",
            "ports": [{"name": "http", "containerPort": 8080}]}])
}

fn bare_pod(name: &str, app: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": containers()}
    }))
    .expect("valid pod")
}

/// A Service selecting `app=<selects>` with port `http` 80 -> container port `http`.
fn service(name: &str, selects: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"team": "a"}},
        "spec": {"selector": {"app": selects},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
    .expect("valid service")
}

struct Apis {
    pods: Api<Pod>,
    services: Api<Service>,
    endpoints: Api<Endpoints>,
    slices: Api<EndpointSlice>,
}

impl Apis {
    fn new(client: &Client) -> Self {
        Apis {
            pods: Api::namespaced(client.clone(), NS),
            services: Api::namespaced(client.clone(), NS),
            endpoints: Api::namespaced(client.clone(), NS),
            slices: Api::namespaced(client.clone(), NS),
        }
    }

    async fn create_pod(&self, pod: &Pod) {
        self.pods
            .create(&PostParams::default(), pod)
            .await
            .expect("pod created");
    }

    async fn create_service(&self, svc: &Service) -> Service {
        self.services
            .create(&PostParams::default(), svc)
            .await
            .expect("service created")
    }

    /// The managed EndpointSlices of a Service.
    async fn slices_of(&self, service: &str) -> Vec<EndpointSlice> {
        let params = ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={service}"));
        self.slices
            .list(&params)
            .await
            .map(|l| l.items)
            .unwrap_or_default()
    }

    /// Waits until the pods labelled `app=<app>` are `n`, all ready with an IP; returns them.
    async fn ready_pods(&self, app: &str, n: usize) -> Vec<Pod> {
        eventually(&format!("{n} ready pods of {app}"), TIMEOUT, || async {
            let params = ListParams::default().labels(&format!("app={app}"));
            let pods = self.pods.list(&params).await.ok()?.items;
            (pods.len() == n && pods.iter().all(|p| is_ready(p) && pod_ip(p).is_some()))
                .then_some(pods)
        })
        .await
    }

    /// Waits until the Service's Endpoints list exactly `ready` and `not_ready` addresses.
    async fn endpoints_listing(
        &self,
        service: &str,
        ready: &BTreeSet<String>,
        not_ready: &BTreeSet<String>,
    ) -> Endpoints {
        let what = format!("endpoints {service}: ready {ready:?}, not ready {not_ready:?}");
        eventually(&what, TIMEOUT, || async {
            let ep = self.endpoints.get_opt(service).await.ok()??;
            let (r, n) = endpoint_ips(&ep);
            (&r == ready && &n == not_ready).then_some(ep)
        })
        .await
    }

    /// Waits until the Service's slices list endpoints with exactly these addresses and
    /// (ready, serving, terminating) conditions.
    async fn slices_listing(
        &self,
        service: &str,
        wanted: &BTreeSet<(String, Conditions)>,
    ) -> Vec<EndpointSlice> {
        let what = format!("slices of {service}: {wanted:?}");
        eventually(&what, TIMEOUT, || async {
            let slices = self.slices_of(service).await;
            let listed: BTreeSet<(String, Conditions)> = slices
                .iter()
                .flat_map(|s| s.endpoints.iter())
                .flat_map(|e| e.addresses.iter().map(|a| (a.clone(), conditions(e))))
                .collect();
            (&listed == wanted).then_some(slices)
        })
        .await
    }

    /// Creates a Service `name` and a pod it selects, and waits until its Endpoints list the
    /// pod. The pod's creation, binding and start each queue every Service of the namespace,
    /// in turn, so every earlier Service has been synced by then.
    async fn barrier(&self, name: &str) {
        self.create_service(&service(name, name)).await;
        self.create_pod(&bare_pod(name, name)).await;
        let pod = self.ready_pods(name, 1).await;
        let ip = ips(&pod);
        self.endpoints_listing(name, &ip, &BTreeSet::new()).await;
    }
}

type Conditions = (Option<bool>, Option<bool>, Option<bool>);

fn conditions(endpoint: &Endpoint) -> Conditions {
    let c = endpoint.conditions.clone().unwrap_or_default();
    (c.ready, c.serving, c.terminating)
}

const READY: Conditions = (Some(true), Some(true), Some(false));
const UNREADY: Conditions = (Some(false), Some(false), Some(false));
const TERMINATING: Conditions = (Some(false), Some(true), Some(true));

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.pod_ip.clone()
}

fn ips(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter().filter_map(pod_ip).collect()
}

fn with(ips: &BTreeSet<String>, conditions: Conditions) -> BTreeSet<(String, Conditions)> {
    ips.iter().map(|ip| (ip.clone(), conditions)).collect()
}

/// The ready and not-ready addresses of Endpoints, over all subsets.
fn endpoint_ips(ep: &Endpoints) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut ready = BTreeSet::new();
    let mut not_ready = BTreeSet::new();
    for subset in ep.subsets.iter().flatten() {
        ready.extend(subset.addresses.iter().flatten().map(|a| a.ip.clone()));
        not_ready.extend(
            subset
                .not_ready_addresses
                .iter()
                .flatten()
                .map(|a| a.ip.clone()),
        );
    }
    (ready, not_ready)
}

fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": containers()}}
        }
    }))
    .expect("valid replica set")
}

#[tokio::test]
async fn a_service_lists_the_pods_of_a_replica_set() {
    let cluster = cluster().await;
    let client = cluster.client();
    let apis = Apis::new(&client);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    sets.create(&PostParams::default(), &replica_set("web", 3))
        .await
        .expect("replica set created");
    let mut svc = service("web", "web");
    svc.spec.as_mut().expect("spec").ports = Some(
        serde_json::from_value(json!([
            {"name": "http", "port": 80, "targetPort": "http"},
            {"name": "admin", "port": 81, "targetPort": 9000}
        ]))
        .expect("ports"),
    );
    let svc = apis.create_service(&svc).await;
    let pods = apis.ready_pods("web", 3).await;
    let ips = ips(&pods);
    assert_eq!(ips.len(), 3, "distinct pod IPs");
    assert!(ips.iter().all(|ip| ip.starts_with("10.244.")), "{ips:?}");

    let ep = apis.endpoints_listing("web", &ips, &BTreeSet::new()).await;
    let subsets = ep.subsets.as_deref().unwrap_or_default();
    assert_eq!(subsets.len(), 1, "one port set: {subsets:?}");
    let ports: BTreeSet<(Option<&str>, i32, Option<&str>)> = subsets[0]
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.port, p.protocol.as_deref()))
        .collect();
    assert_eq!(
        ports,
        BTreeSet::from([
            (Some("admin"), 9000, Some("TCP")),
            (Some("http"), 8080, Some("TCP"))
        ])
    );
    for address in subsets[0].addresses.iter().flatten() {
        let pod = pods
            .iter()
            .find(|p| pod_ip(p).as_deref() == Some(address.ip.as_str()))
            .expect("address of a pod");
        let target = address.target_ref.as_ref().expect("targetRef");
        assert_eq!(target.kind.as_deref(), Some("Pod"));
        assert_eq!(target.name, pod.metadata.name);
        assert_eq!(target.namespace.as_deref(), Some(NS));
        assert_eq!(target.uid, pod.metadata.uid);
        assert_eq!(address.node_name.as_deref(), Some(pods::DEFAULT_NODE));
    }
    assert_eq!(ep.labels().get("team").map(String::as_str), Some("a"));
    assert!(!ep.labels().contains_key("service.kubernetes.io/headless"));
    assert!(ep.annotations().contains_key(TRIGGER_TIME));
    assert!(ep.owner_references().is_empty());

    let slices = apis.slices_listing("web", &with(&ips, READY)).await;
    let [slice] = slices.as_slice() else {
        panic!("one slice: {slices:?}");
    };
    assert!(slice.name_any().starts_with("web-"), "{}", slice.name_any());
    assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(slice.address_type, "IPv4");
    let labels = slice.labels();
    assert_eq!(labels[SERVICE_NAME_LABEL], "web");
    assert_eq!(labels[MANAGED_BY_LABEL], "endpointslice-controller.k8s.io");
    assert_eq!(labels["team"], "a");
    let owners = slice.owner_references();
    assert_eq!(owners.len(), 1);
    assert_eq!(
        (owners[0].api_version.as_str(), owners[0].kind.as_str()),
        ("v1", "Service")
    );
    assert_eq!(
        (owners[0].name.as_str(), Some(&owners[0].uid)),
        ("web", svc.metadata.uid.as_ref())
    );
    assert_eq!(owners[0].controller, Some(true));
    assert_eq!(owners[0].block_owner_deletion, Some(true));
    for endpoint in &slice.endpoints {
        let target = endpoint.target_ref.as_ref().expect("targetRef");
        assert_eq!(target.kind.as_deref(), Some("Pod"));
        assert!(pods.iter().any(|p| p.metadata.uid == target.uid));
        assert_eq!(endpoint.node_name.as_deref(), Some(pods::DEFAULT_NODE));
    }
    let slice_ports: BTreeSet<(Option<&str>, Option<i32>)> = slice
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.port))
        .collect();
    assert_eq!(
        slice_ports,
        BTreeSet::from([(Some("admin"), Some(9000)), (Some("http"), Some(8080))])
    );

    // Settled objects are not rewritten by later syncs.
    let (ep_version, slice_version) = (ep.resource_version(), slice.resource_version());
    apis.barrier("later").await;
    let ep = apis.endpoints.get("web").await.expect("endpoints");
    assert_eq!(ep.resource_version(), ep_version);
    let again = apis.slices_of("web").await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].resource_version(), slice_version);
    cluster.shutdown().await;
}

#[tokio::test]
async fn pods_resolving_a_named_port_differently_are_listed_apart() {
    let cluster = cluster().await;
    let apis = Apis::new(&cluster.client());
    apis.create_pod(&bare_pod("a", "mixed")).await;
    let mut other = bare_pod("b", "mixed");
    other.spec.as_mut().expect("spec").containers[0].ports = Some(
        serde_json::from_value(json!([{"name": "http", "containerPort": 8081}])).expect("ports"),
    );
    apis.create_pod(&other).await;
    apis.create_service(&service("mixed", "mixed")).await;
    let pods = apis.ready_pods("mixed", 2).await;
    let ips = ips(&pods);

    let ep = apis
        .endpoints_listing("mixed", &ips, &BTreeSet::new())
        .await;
    let mut by_port: Vec<(i32, usize)> = ep
        .subsets
        .iter()
        .flatten()
        .map(|s| {
            let port = s
                .ports
                .as_ref()
                .and_then(|p| p.first())
                .map_or(0, |p| p.port);
            (port, s.addresses.as_ref().map_or(0, Vec::len))
        })
        .collect();
    by_port.sort();
    assert_eq!(by_port, [(8080, 1), (8081, 1)]);
    let slices = apis.slices_listing("mixed", &with(&ips, READY)).await;
    let mut slice_ports: Vec<Option<i32>> = slices
        .iter()
        .map(|s| {
            s.ports
                .as_ref()
                .and_then(|p| p.first())
                .and_then(|p| p.port)
        })
        .collect();
    slice_ports.sort();
    assert_eq!(slice_ports, [Some(8080), Some(8081)]);
    cluster.shutdown().await;
}

/// Sets a pod's Ready condition, as a kubelet whose readiness probe changed would.
async fn set_ready(pods: &Api<Pod>, name: &str, ready: bool) {
    let mut pod = pods.get_status(name).await.expect("pod");
    for c in pod
        .status
        .iter_mut()
        .flat_map(|s| s.conditions.iter_mut().flatten())
        .filter(|c| c.type_ == "Ready")
    {
        c.status = if ready { "True" } else { "False" }.into();
    }
    pods.replace_status(name, &PostParams::default(), &pod)
        .await
        .expect("status written");
}

#[tokio::test]
async fn readiness_termination_and_deletion_follow_the_pods() {
    let cluster = cluster().await;
    let apis = Apis::new(&cluster.client());
    for name in ["a", "b"] {
        apis.create_pod(&bare_pod(name, "api")).await;
    }
    // A finalizer keeps c terminating once deleted.
    let mut held = bare_pod("c", "api");
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    apis.create_pod(&held).await;
    apis.create_service(&service("api", "api")).await;
    let pods = apis.ready_pods("api", 3).await;
    let ip_of = |name: &str| {
        pods.iter()
            .find(|p| p.name_any() == name)
            .and_then(pod_ip)
            .expect("pod IP")
    };
    let set = |names: &[&str]| names.iter().map(|n| ip_of(n)).collect::<BTreeSet<_>>();
    apis.endpoints_listing("api", &set(&["a", "b", "c"]), &BTreeSet::new())
        .await;
    apis.slices_listing("api", &with(&set(&["a", "b", "c"]), READY))
        .await;

    // Unready: listed as not ready.
    set_ready(&apis.pods, "a", false).await;
    apis.endpoints_listing("api", &set(&["b", "c"]), &set(&["a"]))
        .await;
    let mut wanted = with(&set(&["b", "c"]), READY);
    wanted.extend(with(&set(&["a"]), UNREADY));
    apis.slices_listing("api", &wanted).await;

    // Terminating: gone from Endpoints, still serving in slices.
    apis.pods
        .delete("c", &DeleteParams::default())
        .await
        .expect("deletion started");
    apis.endpoints_listing("api", &set(&["b"]), &set(&["a"]))
        .await;
    let mut wanted = with(&set(&["b"]), READY);
    wanted.extend(with(&set(&["a"]), UNREADY));
    wanted.extend(with(&set(&["c"]), TERMINATING));
    apis.slices_listing("api", &wanted).await;

    // Deleted: gone everywhere; ready again: back.
    apis.pods
        .delete("b", &DeleteParams::default())
        .await
        .expect("pod deleted");
    let release = json!({"metadata": {"finalizers": null}});
    apis.pods
        .patch("c", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .expect("finalizer removed");
    set_ready(&apis.pods, "a", true).await;
    apis.endpoints_listing("api", &set(&["a"]), &BTreeSet::new())
        .await;
    apis.slices_listing("api", &with(&set(&["a"]), READY)).await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_selectorless_service_keeps_hand_written_endpoints() {
    let cluster = cluster().await;
    let apis = Apis::new(&cluster.client());
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "by-hand"},
        "spec": {"ports": [{"port": 443, "targetPort": 8443}]}
    }))
    .expect("service");
    apis.create_service(&svc).await;
    let written: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "by-hand"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 8443}]}]
    }))
    .expect("endpoints");
    let written = apis
        .endpoints
        .create(&PostParams::default(), &written)
        .await
        .expect("endpoints created");

    apis.barrier("marker").await;
    let kept = apis.endpoints.get("by-hand").await.expect("endpoints kept");
    assert_eq!(kept.resource_version(), written.resource_version());
    assert_eq!(kept.subsets, written.subsets);
    assert!(apis.slices_of("by-hand").await.is_empty());

    // Still, as upstream, the Endpoints go with their Service.
    apis.services
        .delete("by-hand", &DeleteParams::default())
        .await
        .expect("service deleted");
    eventually("hand-written endpoints deleted", TIMEOUT, || async {
        apis.endpoints
            .get_opt("by-hand")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn hand_edits_are_reverted_and_the_service_takes_its_objects_along() {
    let cluster = cluster().await;
    let apis = Apis::new(&cluster.client());
    apis.create_pod(&bare_pod("solo", "db")).await;
    apis.create_service(&service("db", "db")).await;
    let ip = ips(&apis.ready_pods("db", 1).await);
    apis.endpoints_listing("db", &ip, &BTreeSet::new()).await;
    let slices = apis.slices_listing("db", &with(&ip, READY)).await;

    let bogus = json!({"subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 1}]}]});
    apis.endpoints
        .patch("db", &PatchParams::default(), &Patch::Merge(&bogus))
        .await
        .expect("endpoints edited");
    apis.endpoints_listing("db", &ip, &BTreeSet::new()).await;
    let slice = slices[0].name_any();
    apis.slices
        .delete(&slice, &DeleteParams::default())
        .await
        .expect("slice deleted");
    let replaced = apis.slices_listing("db", &with(&ip, READY)).await;
    assert_ne!(replaced[0].name_any(), slice);

    apis.services
        .delete("db", &DeleteParams::default())
        .await
        .expect("service deleted");
    eventually("endpoints and slices of db gone", TIMEOUT, || async {
        let endpoints = apis.endpoints.get_opt("db").await.ok()?;
        (endpoints.is_none() && apis.slices_of("db").await.is_empty()).then_some(())
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_lists_endpoints_and_endpointslices() {
    let cluster = cluster().await;
    let apis = Apis::new(&cluster.client());
    apis.create_pod(&bare_pod("k1", "shown")).await;
    apis.create_service(&service("shown", "shown")).await;
    let ip = ips(&apis.ready_pods("shown", 1).await);
    apis.endpoints_listing("shown", &ip, &BTreeSet::new()).await;
    apis.slices_listing("shown", &with(&ip, READY)).await;
    let Some(ip) = ip.into_iter().next() else {
        panic!("pod IP");
    };

    let kubeconfig = cluster.kubeconfig_path().to_path_buf();
    let cache = tempfile::tempdir().expect("cache dir");
    let cache_dir = cache.path().to_path_buf();
    let kubectl = move |args: &[&str]| {
        let out = std::process::Command::new(testkit::tools::kubectl().expect("kubectl on PATH"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(&cache_dir)
            .args(args)
            .output()
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // kubectl blocks: run it off the async runtime that serves the cluster.
    tokio::task::spawn_blocking(move || {
        let table = kubectl(&["get", "endpoints"]);
        assert!(table.lines().any(|l| l.starts_with("shown ")), "{table}");
        let listed = kubectl(&[
            "get",
            "endpoints",
            "shown",
            "-o",
            "jsonpath={.subsets[0].addresses[0].ip}",
        ]);
        assert_eq!(listed, ip);
        let table = kubectl(&["get", "endpointslices"]);
        assert!(table.lines().any(|l| l.starts_with("shown-")), "{table}");
        let listed = kubectl(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=shown",
            "-o",
            "jsonpath={.items[0].endpoints[0].addresses[0]}",
        ]);
        assert_eq!(listed, ip);
    })
    .await
    .expect("kubectl scenario");
    cluster.shutdown().await;
}

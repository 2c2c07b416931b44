//! The simulated scheduler/kubelet and the ReplicaSet controller against devcluster over
//! HTTP: pods get a node, an IP and readiness; ReplicaSets create, scale, replace, and are
//! cleaned up by the garbage collector.

use std::collections::HashSet;
use std::time::Duration;

use devcluster::controllers::{ControllerOptions, pods};
use devcluster::{DevCluster, Options};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use testkit::eventually;

const TIMEOUT: Duration = Duration::from_secs(20);
const NS: &str = "default";

async fn cluster(controllers: ControllerOptions) -> DevCluster {
    DevCluster::start(Options {
        controllers,
        ..Options::default()
    })
    .await
    .expect("devcluster starts")
}

fn pod_manifest(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"},
                                {"name": "sidecar", "image": "busybox"}]}
    }))
    .expect("valid pod")
}

fn replica_set(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
            }
        }
    }))
    .expect("valid replica set")
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_ip(pod: &Pod) -> Option<std::net::Ipv4Addr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

/// Waits for the pod to be ready and returns it.
async fn ready_pod(api: &Api<Pod>, name: &str) -> Pod {
    eventually(&format!("pod {name} ready"), TIMEOUT, || async {
        api.get_opt(name).await.ok().flatten().filter(is_ready)
    })
    .await
}

/// The pods labelled `app=<name>`.
async fn pods_of(api: &Api<Pod>, name: &str) -> Vec<Pod> {
    let params = ListParams::default().labels(&format!("app={name}"));
    api.list(&params).await.map(|l| l.items).unwrap_or_default()
}

/// Waits until exactly `n` ready pods labelled `app=<name>` exist, and returns them.
async fn ready_pods(api: &Api<Pod>, name: &str, n: usize) -> Vec<Pod> {
    eventually(&format!("{n} ready pods of {name}"), TIMEOUT, || async {
        let pods = pods_of(api, name).await;
        (pods.len() == n && pods.iter().all(is_ready)).then_some(pods)
    })
    .await
}

#[tokio::test]
async fn a_bare_pod_is_scheduled_given_an_ip_and_ready() {
    let cluster = cluster(ControllerOptions::default()).await;
    let pods: Api<Pod> = Api::namespaced(cluster.client(), NS);
    pods.create(&PostParams::default(), &pod_manifest("solo"))
        .await
        .expect("pod created");

    let pod = ready_pod(&pods, "solo").await;
    let spec = pod.spec.as_ref().expect("spec");
    assert_eq!(spec.node_name.as_deref(), Some(pods::DEFAULT_NODE));
    let status = pod.status.as_ref().expect("status");
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let ip = pod_ip(&pod).expect("pod IP");
    assert_eq!(ip.octets()[..2], [10, 244]);
    let ips: Vec<&str> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|i| i.ip.as_str())
        .collect();
    assert_eq!(ips, [ip.to_string()]);
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    assert!(status.start_time.is_some());
    let conditions = status.conditions.as_deref().unwrap_or_default();
    for t in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert!(
            conditions
                .iter()
                .any(|c| c.type_ == t && c.status == "True"),
            "condition {t} true"
        );
    }
    let containers = status.container_statuses.as_deref().unwrap_or_default();
    let names: Vec<(&str, &str)> = containers
        .iter()
        .map(|c| (c.name.as_str(), c.image.as_str()))
        .collect();
    assert_eq!(names, [("app", "nginx:1.27"), ("sidecar", "busybox")]);
    for c in containers {
        assert!(c.ready);
        assert_eq!(c.started, Some(true));
        assert_eq!(c.restart_count, 0);
        let running = c.state.as_ref().and_then(|s| s.running.as_ref());
        assert!(running.and_then(|r| r.started_at.as_ref()).is_some());
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn pods_use_the_first_node_and_a_configured_pool() {
    let options = ControllerOptions {
        pod_ip_pool: ("192.168.7.0".parse().expect("address"), 24),
        ..ControllerOptions::default()
    };
    let cluster = cluster(options).await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(cluster.client());
    for name in ["worker-b", "worker-a"] {
        let node = serde_json::from_value(json!({"metadata": {"name": name}})).expect("node");
        nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("node created");
    }
    let pods: Api<Pod> = Api::namespaced(cluster.client(), NS);
    pods.create(&PostParams::default(), &pod_manifest("placed"))
        .await
        .expect("pod created");

    let pod = ready_pod(&pods, "placed").await;
    let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    assert_eq!(node, Some("worker-a"));
    assert_eq!(
        pod_ip(&pod).map(|ip| ip.octets()[..3].to_vec()),
        Some(vec![192, 168, 7])
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_replica_set_runs_scales_replaces_and_is_collected() {
    let cluster = cluster(ControllerOptions::default()).await;
    let client = cluster.client();
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let rs = sets
        .create(&PostParams::default(), &replica_set("web", 3))
        .await
        .expect("replica set created");
    let uid = rs.uid().expect("uid");

    let created = ready_pods(&pods, "web", 3).await;
    let ips: HashSet<_> = created.iter().filter_map(pod_ip).collect();
    assert_eq!(ips.len(), 3, "distinct pod IPs");
    for pod in &created {
        assert!(pod.name_any().starts_with("web-"));
        assert_eq!(pod.name_any().len(), "web-".len() + 5);
        let owners = pod.owner_references();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].uid, uid);
        assert_eq!(owners[0].kind, "ReplicaSet");
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(owners[0].block_owner_deletion, Some(true));
    }
    eventually("status shows 3 ready replicas", TIMEOUT, || async {
        let s = sets.get_status("web").await.ok()?.status?;
        (s.replicas == 3
            && s.ready_replicas == Some(3)
            && s.available_replicas == Some(3)
            && s.fully_labeled_replicas == Some(3)
            && s.observed_generation == rs.metadata.generation)
            .then_some(())
    })
    .await;

    // A deleted pod is replaced by a new one.
    let victim = created[0].name_any();
    pods.delete(&victim, &DeleteParams::default())
        .await
        .expect("pod deleted");
    let replaced = ready_pods(&pods, "web", 3).await;
    assert!(replaced.iter().all(|p| p.name_any() != victim));

    // Scaling down to 1 deletes 2.
    let scale = json!({"spec": {"replicas": 1}});
    let rs = sets
        .patch("web", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .expect("scaled");
    ready_pods(&pods, "web", 1).await;
    eventually("status follows the scale-down", TIMEOUT, || async {
        let s = sets.get_status("web").await.ok()?.status?;
        (s.replicas == 1
            && s.ready_replicas == Some(1)
            && s.observed_generation == rs.metadata.generation)
            .then_some(())
    })
    .await;

    // Deleting the ReplicaSet removes its pods (the garbage collector does that).
    sets.delete("web", &DeleteParams::default())
        .await
        .expect("replica set deleted");
    eventually("pods of the deleted replica set gone", TIMEOUT, || async {
        pods_of(&pods, "web").await.is_empty().then_some(())
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_replica_set_adopts_orphans_and_releases_mismatches() {
    let cluster = cluster(ControllerOptions::default()).await;
    let client = cluster.client();
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let mut orphan = pod_manifest("orphan");
    orphan.metadata.labels = Some([("app".to_owned(), "api".to_owned())].into());
    pods.create(&PostParams::default(), &orphan)
        .await
        .expect("orphan created");
    let rs = sets
        .create(&PostParams::default(), &replica_set("api", 2))
        .await
        .expect("replica set created");
    let uid = rs.uid().expect("uid");

    let owned = ready_pods(&pods, "api", 2).await;
    let adopted = owned
        .iter()
        .find(|p| p.name_any() == "orphan")
        .expect("the orphan is counted as a replica");
    assert_eq!(adopted.owner_references()[0].uid, uid);

    // Relabelled, it is released and replaced.
    let relabel = json!({"metadata": {"labels": {"app": "elsewhere"}}});
    pods.patch("orphan", &PatchParams::default(), &Patch::Merge(&relabel))
        .await
        .expect("relabelled");
    eventually("the relabelled pod is released", TIMEOUT, || async {
        let pod = pods.get("orphan").await.ok()?;
        pod.owner_references().is_empty().then_some(())
    })
    .await;
    let now_owned = ready_pods(&pods, "api", 2).await;
    assert!(now_owned.iter().all(|p| p.name_any() != "orphan"));
    cluster.shutdown().await;
}

#[tokio::test]
async fn mark_restarted_counts_restarts() {
    let cluster = cluster(ControllerOptions::default()).await;
    let client: Client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.create(&PostParams::default(), &pod_manifest("flaky"))
        .await
        .expect("pod created");
    let before = ready_pod(&pods, "flaky").await;

    pods::mark_restarted(&client, NS, "flaky")
        .await
        .expect("restart recorded");
    pods::mark_restarted(&client, NS, "flaky")
        .await
        .expect("restart recorded");
    let after = pods.get("flaky").await.expect("pod");
    let statuses = after
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    assert_eq!(statuses.len(), 2);
    for c in statuses {
        assert_eq!(c.restart_count, 2);
        assert!(
            c.last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some()
        );
        assert!(c.state.as_ref().and_then(|s| s.running.as_ref()).is_some());
    }
    assert_eq!(
        pod_ip(&after),
        pod_ip(&before),
        "a restart keeps the pod IP"
    );
    assert!(is_ready(&after));

    let missing = pods::mark_restarted(&client, NS, "nope").await;
    assert!(matches!(missing, Err(kube::Error::Api(s)) if s.code == 404));
    cluster.shutdown().await;
}

#[tokio::test]
async fn without_controllers_nothing_happens_to_pods() {
    let cluster = cluster(ControllerOptions::none()).await;
    let client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    pods.create(&PostParams::default(), &pod_manifest("idle"))
        .await
        .expect("pod created");
    sets.create(&PostParams::default(), &replica_set("idle", 2))
        .await
        .expect("replica set created");

    // Controllers would have acted by the time a later write is visible through a watch-fed
    // list; wait for a marker object instead of sleeping.
    let marker: Api<ConfigMap> = Api::namespaced(client, NS);
    let cm = serde_json::from_value(json!({"metadata": {"name": "marker"}})).expect("cm");
    marker
        .create(&PostParams::default(), &cm)
        .await
        .expect("marker created");
    eventually("marker visible", TIMEOUT, || async {
        marker.get_opt("marker").await.ok().flatten()
    })
    .await;

    let pod = pods.get("idle").await.expect("pod");
    assert_eq!(pod.spec.as_ref().and_then(|s| s.node_name.as_deref()), None);
    assert!(
        pod.status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_none_or(|p| p == "Pending")
    );
    assert!(
        pods_of(&pods, "idle").await.is_empty(),
        "no replica created"
    );
    let rs = sets.get_status("idle").await.expect("replica set");
    assert_eq!(rs.status.and_then(|s| s.observed_generation), None);
    cluster.shutdown().await;
}

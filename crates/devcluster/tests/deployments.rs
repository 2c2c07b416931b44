//! The Deployment controller against devcluster over HTTP, driven by kube-rs and the real
//! kubectl: ReplicaSets per template, rolling updates within maxSurge/maxUnavailable,
//! Recreate, scaling, and the status `kubectl rollout status` reads.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use devcluster::controllers::ControllerOptions;
use devcluster::{DevCluster, Options};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::json;
use testkit::eventually;
use testkit::kubectl::Kubectl;

const TIMEOUT: Duration = Duration::from_secs(30);
const NS: &str = "default";
const HASH: &str = "pod-template-hash";

async fn cluster(controllers: ControllerOptions) -> (DevCluster, Kubectl) {
    let cluster = DevCluster::start(Options {
        controllers,
        ..Options::default()
    })
    .await
    .expect("devcluster starts");
    let kubectl = Kubectl::new(cluster.kubeconfig_path()).expect("kubectl on PATH");
    (cluster, kubectl)
}

fn deployment(name: &str, replicas: i32, strategy: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
            }
        }
    }))
    .expect("valid deployment")
}

async fn create(client: &Client, d: &Deployment) {
    Api::<Deployment>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), d)
        .await
        .expect("deployment created");
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn hash_of(pod: &Pod) -> String {
    pod.labels().get(HASH).cloned().unwrap_or_default()
}

async fn sets_of(client: &Client, name: &str) -> Vec<ReplicaSet> {
    let params = ListParams::default().labels(&format!("app={name}"));
    Api::<ReplicaSet>::namespaced(client.clone(), NS)
        .list(&params)
        .await
        .expect("replica sets listed")
        .items
}

async fn pods_of(client: &Client, name: &str) -> Vec<Pod> {
    let params = ListParams::default().labels(&format!("app={name}"));
    Api::<Pod>::namespaced(client.clone(), NS)
        .list(&params)
        .await
        .expect("pods listed")
        .items
}

/// Waits until `name` has exactly `replicas` ready pods, all of one template hash, and
/// returns that hash.
async fn settled(client: &Client, name: &str, replicas: usize) -> String {
    eventually(
        &format!("{name} settles at {replicas} ready pods of one template"),
        TIMEOUT,
        || async {
            let pods = pods_of(client, name).await;
            let hashes: HashSet<String> = pods.iter().map(hash_of).collect();
            (pods.len() == replicas && pods.iter().all(is_ready) && hashes.len() == 1)
                .then(|| hashes.into_iter().next().unwrap_or_default())
        },
    )
    .await
}

#[tokio::test]
async fn a_deployment_gets_a_hashed_replica_set_and_ready_status() {
    let (cluster, kubectl) = cluster(ControllerOptions::default()).await;
    let client = cluster.client();
    create(&client, &deployment("web", 3, json!({}))).await;
    let hash = settled(&client, "web", 3).await;
    kubectl
        .run(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;

    let sets = sets_of(&client, "web").await;
    assert_eq!(sets.len(), 1);
    let rs = &sets[0];
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    let spec = rs.spec.as_ref().expect("spec");
    assert_eq!(
        spec.selector
            .match_labels
            .as_ref()
            .and_then(|l| l.get(HASH)),
        Some(&hash)
    );
    assert_eq!(
        rs.annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("1")
    );
    let owner = &rs.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("Deployment", Some(true))
    );

    let d = eventually("deployment status is complete", TIMEOUT, || async {
        let d = Api::<Deployment>::namespaced(client.clone(), NS)
            .get("web")
            .await
            .ok()?;
        let s = d.status.clone()?;
        (s.available_replicas == Some(3) && s.updated_replicas == Some(3)).then_some(d)
    })
    .await;
    let status = d.status.expect("status");
    assert_eq!(status.observed_generation, d.metadata.generation);
    assert_eq!((status.replicas, status.ready_replicas), (Some(3), Some(3)));
    let conditions: BTreeMap<String, (String, Option<String>)> = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.type_, (c.status, c.reason)))
        .collect();
    assert_eq!(
        conditions.get("Available"),
        Some(&("True".into(), Some("MinimumReplicasAvailable".into())))
    );
    let progressing = eventually("Progressing says the rollout finished", TIMEOUT, || async {
        let d = Api::<Deployment>::namespaced(client.clone(), NS)
            .get("web")
            .await
            .ok()?;
        d.status?.conditions?.into_iter().find(|c| {
            c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable")
        })
    })
    .await;
    assert_eq!(progressing.status, "True");
    cluster.shutdown().await;
}

/// Tracks the invariants of a rolling update through watches: the ReplicaSets' replicas never
/// exceed `replicas + maxSurge` in total, and ready pods never drop below
/// `replicas - maxUnavailable` once the first rollout finished.
#[tokio::test]
async fn rollout_restart_replaces_pods_within_surge_and_unavailability() {
    let options = ControllerOptions {
        // Pods take a moment to become ready, so the rollout spans many steps.
        pod_ready_after: Duration::from_millis(200),
        ..ControllerOptions::default()
    };
    let (cluster, kubectl) = cluster(options).await;
    let client = cluster.client();
    let strategy = json!({"type": "RollingUpdate",
                          "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
    create(&client, &deployment("web", 3, strategy)).await;
    let first = settled(&client, "web", 3).await;

    let sets = watcher::watcher(
        Api::<ReplicaSet>::namespaced(client.clone(), NS),
        watcher::Config::default().labels("app=web"),
    );
    let pods = watcher::watcher(
        Api::<Pod>::namespaced(client.clone(), NS),
        watcher::Config::default().labels("app=web"),
    );
    let checker = tokio::spawn(async move {
        let mut specs: BTreeMap<String, i32> = BTreeMap::new();
        let mut ready: BTreeMap<String, bool> = BTreeMap::new();
        let (mut max_total, mut min_ready) = (0, usize::MAX);
        let mut sets = std::pin::pin!(sets);
        let mut pods = std::pin::pin!(pods);
        let mut pods_listed = false;
        loop {
            tokio::select! {
                Some(Ok(event)) = sets.next() => match event {
                    Event::Apply(rs) | Event::InitApply(rs) => {
                        let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                        specs.insert(rs.name_any(), replicas);
                    }
                    Event::Delete(rs) => { specs.remove(&rs.name_any()); }
                    _ => {}
                },
                Some(Ok(event)) = pods.next() => match event {
                    Event::Apply(p) | Event::InitApply(p) => {
                        ready.insert(p.name_any(), is_ready(&p) && p.metadata.deletion_timestamp.is_none());
                    }
                    Event::Delete(p) => { ready.remove(&p.name_any()); }
                    Event::InitDone => pods_listed = true,
                    Event::Init => {}
                },
                else => break,
            }
            max_total = max_total.max(specs.values().sum::<i32>());
            if pods_listed {
                min_ready = min_ready.min(ready.values().filter(|r| **r).count());
            }
            let done = specs.len() == 2
                && specs.values().any(|r| *r == 0)
                && ready.len() == 3
                && ready.values().all(|r| *r);
            if done && specs.values().sum::<i32>() == 3 {
                return (max_total, min_ready);
            }
        }
        (max_total, min_ready)
    });

    kubectl.run(&["rollout", "restart", "deployment/web"]).await;
    kubectl
        .run(&["rollout", "status", "deployment/web", "--timeout=60s"])
        .await;
    let second = settled(&client, "web", 3).await;
    assert_ne!(first, second, "the restart rolled out a new template");
    let (max_total, min_ready) = tokio::time::timeout(TIMEOUT, checker)
        .await
        .expect("the watches saw the rollout finish")
        .expect("checker task");
    assert!(
        max_total <= 4,
        "replicas exceeded replicas + maxSurge: {max_total}"
    );
    assert!(
        min_ready >= 3,
        "ready pods dropped below replicas - maxUnavailable: {min_ready}"
    );

    let sets = sets_of(&client, "web").await;
    let revisions: BTreeMap<String, (String, i32)> = sets
        .iter()
        .map(|rs| {
            let revision = rs.annotations()["deployment.kubernetes.io/revision"].clone();
            let hash = rs.labels()[HASH].clone();
            (
                hash,
                (
                    revision,
                    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1),
                ),
            )
        })
        .collect();
    assert_eq!(revisions.get(&first), Some(&("1".to_owned(), 0)));
    assert_eq!(revisions.get(&second), Some(&("2".to_owned(), 3)));
    let history = kubectl.run(&["rollout", "history", "deployment/web"]).await;
    assert!(history.contains('1') && history.contains('2'), "{history}");
    cluster.shutdown().await;
}

#[tokio::test]
async fn recreate_removes_old_pods_before_starting_new_ones() {
    let (cluster, kubectl) = cluster(ControllerOptions::default()).await;
    let client = cluster.client();
    create(&client, &deployment("db", 2, json!({"type": "Recreate"}))).await;
    let first = settled(&client, "db", 2).await;

    // Records, at each new-template pod's creation, how many old pods still existed.
    let pods = watcher::watcher(
        Api::<Pod>::namespaced(client.clone(), NS),
        watcher::Config::default().labels("app=db"),
    );
    let first_hash = first.clone();
    let checker = tokio::spawn(async move {
        let mut live: BTreeMap<String, String> = BTreeMap::new();
        let mut old_at_new_creation = Vec::new();
        let mut pods = std::pin::pin!(pods);
        while let Ok(Some(event)) = pods.try_next().await {
            match event {
                Event::Apply(p) | Event::InitApply(p) => {
                    let hash = hash_of(&p);
                    if hash != first_hash && !live.contains_key(&p.name_any()) {
                        old_at_new_creation
                            .push(live.values().filter(|h| **h == first_hash).count());
                    }
                    live.insert(p.name_any(), hash);
                }
                Event::Delete(p) => {
                    live.remove(&p.name_any());
                }
                _ => {}
            }
            if old_at_new_creation.len() == 2 {
                return old_at_new_creation;
            }
        }
        old_at_new_creation
    });
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "nginx:1.28"}]}}}});
    Api::<Deployment>::namespaced(client.clone(), NS)
        .patch("db", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("template changed");
    kubectl
        .run(&["rollout", "status", "deployment/db", "--timeout=60s"])
        .await;
    let counts = tokio::time::timeout(TIMEOUT, checker)
        .await
        .expect("two new pods were created")
        .expect("checker task");
    assert_eq!(
        counts,
        vec![0, 0],
        "new pods started while old ones were running"
    );
    let second = settled(&client, "db", 2).await;
    assert_ne!(first, second);
    cluster.shutdown().await;
}

#[tokio::test]
async fn scaling_resizes_the_current_replica_set() {
    let (cluster, kubectl) = cluster(ControllerOptions::default()).await;
    let client = cluster.client();
    create(&client, &deployment("api", 2, json!({}))).await;
    let hash = settled(&client, "api", 2).await;
    kubectl
        .run(&["scale", "deployment/api", "--replicas=5"])
        .await;
    assert_eq!(
        settled(&client, "api", 5).await,
        hash,
        "scaling is no rollout"
    );
    kubectl
        .run(&["scale", "deployment/api", "--replicas=1"])
        .await;
    assert_eq!(settled(&client, "api", 1).await, hash);
    assert_eq!(sets_of(&client, "api").await.len(), 1);
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_stuck_rollout_reports_its_progress_deadline() {
    // No kubelet: pods never become ready, so the rollout cannot progress.
    let options = ControllerOptions {
        pods: false,
        ..ControllerOptions::default()
    };
    let (cluster, kubectl) = cluster(options).await;
    let client = cluster.client();
    let mut d = deployment("stuck", 1, json!({}));
    d.spec.as_mut().expect("spec").progress_deadline_seconds = Some(1);
    create(&client, &d).await;
    let condition = eventually("the deadline is reported", TIMEOUT, || async {
        let d = Api::<Deployment>::namespaced(client.clone(), NS)
            .get("stuck")
            .await
            .ok()?;
        d.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Progressing" && c.status == "False")
    })
    .await;
    assert_eq!(
        condition.reason.as_deref(),
        Some("ProgressDeadlineExceeded")
    );
    let out = kubectl
        .output(&["rollout", "status", "deployment/stuck", "--timeout=30s"])
        .await;
    assert!(!out.success);
    assert!(
        out.stderr.contains("exceeded its progress deadline"),
        "{}",
        out.stderr
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn paused_deployments_do_not_roll_out() {
    let (cluster, kubectl) = cluster(ControllerOptions::default()).await;
    let client = cluster.client();
    create(&client, &deployment("paused", 2, json!({}))).await;
    let first = settled(&client, "paused", 2).await;
    kubectl
        .run(&["rollout", "pause", "deployment/paused"])
        .await;
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}});
    let api = Api::<Deployment>::namespaced(client.clone(), NS);
    api.patch("paused", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("template changed");
    let paused = eventually("the pause is reported", TIMEOUT, || async {
        let d = api.get("paused").await.ok()?;
        let status = d.status?;
        (status.observed_generation == d.metadata.generation).then_some(status)
    })
    .await;
    let reason = paused
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Progressing")
        .and_then(|c| c.reason);
    assert_eq!(reason.as_deref(), Some("DeploymentPaused"));
    assert_eq!(
        sets_of(&client, "paused").await.len(),
        1,
        "no new replica set"
    );
    kubectl
        .run(&["rollout", "resume", "deployment/paused"])
        .await;
    kubectl
        .run(&["rollout", "status", "deployment/paused", "--timeout=60s"])
        .await;
    assert_ne!(settled(&client, "paused", 2).await, first);
    cluster.shutdown().await;
}

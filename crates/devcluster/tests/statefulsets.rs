//! The StatefulSet and DaemonSet controllers against devcluster over HTTP: ordered creation
//! and scale-down, parallel pods, partitioned rolling updates, ControllerRevisions, claims,
//! one daemon pod per eligible node, and `kubectl rollout status` on both kinds.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devcluster::controllers::ControllerOptions;
use devcluster::{DevCluster, Options};
use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::{Value, json};
use testkit::eventually;
use tokio::task::JoinHandle;

const TIMEOUT: Duration = Duration::from_secs(30);
const NS: &str = "default";
const REVISION_LABEL: &str = "controller-revision-hash";

async fn cluster(controllers: ControllerOptions) -> DevCluster {
    DevCluster::start(Options {
        controllers,
        ..Options::default()
    })
    .await
    .expect("devcluster starts")
}

/// A StatefulSet `name` of nginx pods labelled `app=<name>`; `extra` is merged into its spec.
fn stateful_set(name: &str, replicas: i32, extra: Value) -> StatefulSet {
    let mut spec = json!({
        "replicas": replicas,
        "serviceName": name,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
        }
    });
    merge(&mut spec, extra);
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))
        .expect("valid stateful set")
}

fn daemon_set(name: &str) -> DaemonSet {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            // kubectl rollout status needs the type spelled out: devcluster does not default it.
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "agent", "image": "busybox:1.36"}]}
            }
        }
    }))
    .expect("valid daemon set")
}

fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p,
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn revision_of(pod: &Pod) -> Option<&str> {
    pod.labels().get(REVISION_LABEL).map(String::as_str)
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}

/// The pods labelled `app=<name>`, by name.
async fn pods_of(api: &Api<Pod>, name: &str) -> BTreeMap<String, Pod> {
    let params = ListParams::default().labels(&format!("app={name}"));
    let pods = api.list(&params).await.map(|l| l.items).unwrap_or_default();
    pods.into_iter().map(|p| (p.name_any(), p)).collect()
}

/// Waits until the ready pods labelled `app=<name>` are exactly `names`, and returns them.
async fn ready_pods(api: &Api<Pod>, name: &str, names: &[&str]) -> BTreeMap<String, Pod> {
    let wanted: BTreeSet<&str> = names.iter().copied().collect();
    eventually(&format!("ready pods {names:?}"), TIMEOUT, || async {
        let pods = pods_of(api, name).await;
        let have: BTreeSet<&str> = pods.keys().map(String::as_str).collect();
        (have == wanted && pods.values().all(is_ready)).then_some(pods)
    })
    .await
}

/// Something a pod watch showed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Added(String),
    /// The first time this pod (by uid) was seen ready.
    Ready(String),
    Deleted(String),
}

/// Records the events of a pod watch from the moment it starts.
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Recorder {
    async fn start(api: &Api<Pod>, labels: &str) -> Recorder {
        let list = api
            .list(&ListParams::default().labels(labels))
            .await
            .expect("pods listed");
        let version = list.metadata.resource_version.unwrap_or_default();
        let stream = api
            .watch(&WatchParams::default().labels(labels), &version)
            .await
            .expect("pod watch");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            let mut ready_uids = HashSet::new();
            let mut stream = std::pin::pin!(stream);
            while let Ok(Some(event)) = stream.try_next().await {
                let mut seen = sink.lock().expect("recorder lock");
                let pod = match event {
                    WatchEvent::Added(pod) => {
                        seen.push(Seen::Added(pod.name_any()));
                        pod
                    }
                    WatchEvent::Modified(pod) => pod,
                    WatchEvent::Deleted(pod) => {
                        seen.push(Seen::Deleted(pod.name_any()));
                        continue;
                    }
                    _ => continue,
                };
                if is_ready(&pod) && ready_uids.insert(pod.uid().unwrap_or_default()) {
                    seen.push(Seen::Ready(pod.name_any()));
                }
            }
        });
        Recorder { seen, task }
    }

    /// Waits until the watch has shown all of `wanted` (a watch may lag behind a list).
    async fn wait_for(&self, wanted: &[Seen]) {
        eventually(&format!("watch events {wanted:?}"), TIMEOUT, || async {
            let events = self.events();
            wanted.iter().all(|w| events.contains(w)).then_some(())
        })
        .await;
    }

    fn events(&self) -> Vec<Seen> {
        self.seen.lock().expect("recorder lock").clone()
    }

    /// Where `what` first happened, at or after `from`.
    fn position(&self, what: &Seen, from: usize) -> Option<usize> {
        self.events()
            .iter()
            .skip(from)
            .position(|s| s == what)
            .map(|i| i + from)
    }

    /// The names of one kind of event, in order.
    fn names(&self, kind: fn(&Seen) -> Option<&String>) -> Vec<String> {
        self.events().iter().filter_map(kind).cloned().collect()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn added(s: &Seen) -> Option<&String> {
    match s {
        Seen::Added(n) => Some(n),
        _ => None,
    }
}

fn deleted(s: &Seen) -> Option<&String> {
    match s {
        Seen::Deleted(n) => Some(n),
        _ => None,
    }
}

fn ready(name: &str) -> Seen {
    Seen::Ready(name.to_owned())
}

/// kubectl against the cluster's kubeconfig.
struct Kubectl {
    kubeconfig: PathBuf,
    cache: tempfile::TempDir,
}

impl Kubectl {
    fn new(cluster: &DevCluster) -> Kubectl {
        Kubectl {
            kubeconfig: cluster.kubeconfig_path().to_path_buf(),
            cache: tempfile::tempdir().expect("cache dir"),
        }
    }

    /// Runs kubectl off the async runtime and returns stdout; panics with stderr on failure.
    async fn run(&self, args: &[&str]) -> String {
        let mut cmd = std::process::Command::new(testkit::tools::kubectl().expect("kubectl"));
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("kubectl task")
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

async fn sts_status(
    sets: &Api<StatefulSet>,
    name: &str,
) -> Option<k8s_openapi::api::apps::v1::StatefulSetStatus> {
    sets.get_status(name).await.ok()?.status
}

/// Waits for a new update revision after a template change, and returns it.
async fn new_update_revision(sets: &Api<StatefulSet>, name: &str, old: &str) -> String {
    eventually("a new update revision", TIMEOUT, || async {
        let s = sts_status(sets, name).await?;
        s.update_revision.filter(|r| r != old)
    })
    .await
}

async fn patch_spec<K>(api: &Api<K>, name: &str, spec: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"spec": spec});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patched")
}

#[tokio::test]
async fn ordered_ready_creates_pods_one_by_one_with_claims_and_a_revision() {
    let cluster = cluster(ControllerOptions::default()).await;
    let client = cluster.client();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let recorder = Recorder::start(&pods, "app=web").await;
    let claim = json!({"volumeClaimTemplates": [{"metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}}}]});
    let set = sets
        .create(&PostParams::default(), &stateful_set("web", 3, claim))
        .await
        .expect("stateful set created");

    let created = ready_pods(&pods, "web", &["web-0", "web-1", "web-2"]).await;
    let status = eventually("status shows 3 ready replicas", TIMEOUT, || async {
        let s = sts_status(&sets, "web").await?;
        (s.replicas == 3
            && s.ready_replicas == Some(3)
            && s.available_replicas == Some(3)
            && s.observed_generation == set.metadata.generation)
            .then_some(s)
    })
    .await;

    // Each pod was created only once the one before it was ready.
    recorder
        .wait_for(&[ready("web-0"), ready("web-1"), ready("web-2")])
        .await;
    assert_eq!(recorder.names(added), ["web-0", "web-1", "web-2"]);
    for (before, next) in [("web-0", "web-1"), ("web-1", "web-2")] {
        let ready_at = recorder.position(&ready(before), 0).expect("seen ready");
        let added_at = recorder
            .position(&Seen::Added(next.into()), 0)
            .expect("seen added");
        assert!(
            ready_at < added_at,
            "{before} ready before {next} exists: {:?}",
            recorder.events()
        );
    }

    let ips: HashSet<String> = created
        .values()
        .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
        .collect();
    assert_eq!(ips.len(), 3, "distinct pod IPs");
    assert!(ips.iter().all(|ip| ip.starts_with("10.244.")), "{ips:?}");

    let revision = status.update_revision.clone().expect("update revision");
    assert_eq!(status.current_revision.as_ref(), Some(&revision));
    assert_eq!(status.current_replicas, Some(3));
    assert_eq!(status.updated_replicas, Some(3));
    for (ordinal, (name, pod)) in created.iter().enumerate() {
        let labels = pod.labels();
        assert_eq!(labels.get("statefulset.kubernetes.io/pod-name"), Some(name));
        assert_eq!(
            labels.get("apps.kubernetes.io/pod-index"),
            Some(&ordinal.to_string())
        );
        assert_eq!(revision_of(pod), Some(revision.as_str()));
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.hostname.as_ref(), Some(name));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
        let claim_name = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "data")
            .and_then(|v| v.persistent_volume_claim.as_ref())
            .map(|c| c.claim_name.clone());
        assert_eq!(claim_name, Some(format!("data-{name}")));
        let owner = &pod.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("StatefulSet", Some(true))
        );
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert_eq!(Some(&owner.uid), set.metadata.uid.as_ref());
    }

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    for ordinal in 0..3 {
        let claim = claims
            .get(&format!("data-web-{ordinal}"))
            .await
            .expect("claim created");
        assert_eq!(claim.labels().get("app").map(String::as_str), Some("web"));
    }

    let revisions: Api<ControllerRevision> = Api::namespaced(client, NS);
    let cr = revisions.get(&revision).await.expect("controller revision");
    assert_eq!(cr.revision, 1);
    assert!(revision.starts_with("web-"));
    assert_eq!(cr.owner_references()[0].uid, set.uid().expect("uid"));
    let data = cr.data.expect("revision data").0;
    assert_eq!(
        data.pointer("/spec/template/$patch"),
        Some(&json!("replace"))
    );
    assert_eq!(
        data.pointer("/spec/template/spec/containers/0/image"),
        Some(&json!("nginx:1.27"))
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn scaling_down_goes_from_the_highest_ordinal_keeps_claims_and_replaces_pods() {
    let cluster = cluster(ControllerOptions::default()).await;
    let client = cluster.client();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let claim = json!({"volumeClaimTemplates": [{"metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"]}}]});
    sets.create(&PostParams::default(), &stateful_set("web", 3, claim))
        .await
        .expect("stateful set created");
    ready_pods(&pods, "web", &["web-0", "web-1", "web-2"]).await;

    let recorder = Recorder::start(&pods, "app=web").await;
    let set = patch_spec(&sets, "web", json!({"replicas": 1})).await;
    ready_pods(&pods, "web", &["web-0"]).await;
    recorder
        .wait_for(&[Seen::Deleted("web-2".into()), Seen::Deleted("web-1".into())])
        .await;
    assert_eq!(recorder.names(deleted), ["web-2", "web-1"]);
    eventually("status follows the scale-down", TIMEOUT, || async {
        let s = sts_status(&sets, "web").await?;
        (s.replicas == 1 && s.observed_generation == set.metadata.generation).then_some(())
    })
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client, NS);
    for ordinal in 0..3 {
        claims
            .get(&format!("data-web-{ordinal}"))
            .await
            .expect("claims are retained on scale-down");
    }

    // A deleted pod comes back under the same name.
    let recorder = Recorder::start(&pods, "app=web").await;
    pods.delete("web-0", &DeleteParams::default())
        .await
        .expect("pod deleted");
    eventually("web-0 deleted, then ready again", TIMEOUT, || async {
        let gone = recorder.position(&Seen::Deleted("web-0".into()), 0)?;
        recorder.position(&ready("web-0"), gone)
    })
    .await;

    // So does a failed one, replaced by the controller.
    let mut failed = pods.get("web-0").await.expect("web-0");
    let failed_uid = failed.uid();
    failed.status.get_or_insert_default().phase = Some("Failed".into());
    pods.replace_status("web-0", &PostParams::default(), &failed)
        .await
        .expect("pod marked failed");
    eventually("a failed web-0 replaced", TIMEOUT, || async {
        let pod = pods.get_opt("web-0").await.ok()??;
        (pod.uid() != failed_uid && is_ready(&pod)).then_some(())
    })
    .await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn parallel_pods_roll_from_the_highest_ordinal_down_to_the_partition() {
    // Pods take a while to become ready, so "in parallel" is visible in the event order.
    let cluster = cluster(ControllerOptions {
        pod_ready_after: Duration::from_millis(800),
        ..ControllerOptions::default()
    })
    .await;
    let client = cluster.client();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let recorder = Recorder::start(&pods, "app=db").await;
    let extra = json!({"podManagementPolicy": "Parallel", "updateStrategy":
        {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}});
    sets.create(&PostParams::default(), &stateful_set("db", 3, extra))
        .await
        .expect("stateful set created");
    ready_pods(&pods, "db", &["db-0", "db-1", "db-2"]).await;
    recorder
        .wait_for(&[ready("db-0"), ready("db-1"), ready("db-2")])
        .await;
    let events = recorder.events();
    let first_ready = events
        .iter()
        .position(|s| matches!(s, Seen::Ready(_)))
        .expect("a pod became ready");
    let added_before: BTreeSet<&String> = events[..first_ready].iter().filter_map(added).collect();
    assert_eq!(
        added_before.len(),
        3,
        "all created before any is ready: {events:?}"
    );
    let old = eventually("a settled first revision", TIMEOUT, || async {
        let s = sts_status(&sets, "db").await?;
        (s.ready_replicas == Some(3)).then_some(s.update_revision?)
    })
    .await;

    let recorder = Recorder::start(&pods, "app=db").await;
    let image =
        json!({"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.28"}]}}});
    patch_spec(&sets, "db", image).await;
    let new = new_update_revision(&sets, "db", &old).await;
    let status = eventually("pods above the partition updated", TIMEOUT, || async {
        let s = sts_status(&sets, "db").await?;
        (s.updated_replicas == Some(2) && s.ready_replicas == Some(3)).then_some(s)
    })
    .await;
    assert_eq!(
        status.current_revision.as_ref(),
        Some(&old),
        "partition holds db-0 back"
    );
    assert_eq!(status.current_replicas, Some(1));
    let now = pods_of(&pods, "db").await;
    let revisions: Vec<Option<&str>> = now.values().map(revision_of).collect();
    assert_eq!(
        revisions,
        [Some(old.as_str()), Some(new.as_str()), Some(new.as_str())]
    );
    recorder
        .wait_for(&[Seen::Deleted("db-1".into()), ready("db-1")])
        .await;
    assert_eq!(recorder.names(deleted), ["db-2", "db-1"]);
    // db-1 went only once the new db-2 was ready.
    let db2_gone = recorder
        .position(&Seen::Deleted("db-2".into()), 0)
        .expect("db-2 deleted");
    let db2_back = recorder
        .position(&ready("db-2"), db2_gone)
        .expect("db-2 ready again");
    let db1_gone = recorder
        .position(&Seen::Deleted("db-1".into()), 0)
        .expect("db-1 deleted");
    assert!(db2_back < db1_gone, "{:?}", recorder.events());

    patch_spec(
        &sets,
        "db",
        json!({"updateStrategy": {"rollingUpdate": {"partition": 0}}}),
    )
    .await;
    eventually("the rollout completes", TIMEOUT, || async {
        let s = sts_status(&sets, "db").await?;
        (s.current_revision.as_ref() == Some(&new)
            && s.update_revision.as_ref() == Some(&new)
            && s.current_replicas == Some(3)
            && s.updated_replicas == Some(3)
            && s.ready_replicas == Some(3))
        .then_some(())
    })
    .await;
    let now = pods_of(&pods, "db").await;
    assert!(now.values().all(|p| revision_of(p) == Some(new.as_str())));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_status_follows_a_stateful_set_update() {
    let cluster = cluster(ControllerOptions::default()).await;
    let client = cluster.client();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    // kubectl rollout status needs the type spelled out: devcluster does not default it.
    let extra = json!({"updateStrategy": {"type": "RollingUpdate"}});
    sets.create(&PostParams::default(), &stateful_set("web", 2, extra))
        .await
        .expect("stateful set created");
    let kubectl = Kubectl::new(&cluster);
    kubectl
        .run(&["rollout", "status", "statefulset/web", "--timeout=60s"])
        .await;
    let old = sts_status(&sets, "web")
        .await
        .and_then(|s| s.update_revision)
        .expect("a revision");

    kubectl
        .run(&["set", "image", "statefulset/web", "app=nginx:1.28"])
        .await;
    let out = kubectl
        .run(&["rollout", "status", "statefulset/web", "--timeout=60s"])
        .await;
    assert!(out.contains("rolling update complete"), "{out}");
    let status = sts_status(&sets, "web").await.expect("status");
    let new = status.update_revision.expect("update revision");
    assert_ne!(new, old);
    assert_eq!(status.current_revision.as_ref(), Some(&new));
    let now = ready_pods(&pods, "web", &["web-0", "web-1"]).await;
    assert!(now.values().all(|p| revision_of(p) == Some(new.as_str())));
    let history = kubectl
        .run(&["rollout", "history", "statefulset/web"])
        .await;
    assert!(history.contains('1') && history.contains('2'), "{history}");
    cluster.shutdown().await;
}

fn node(name: &str, disk: &str) -> Node {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"disk": disk}}}))
        .expect("valid node")
}

/// The daemon pods of `agent` by node, once exactly `nodes` have one that is ready at the
/// update revision and no others exist.
async fn daemons_on(
    api: &Api<Pod>,
    sets: &Api<DaemonSet>,
    nodes: &[&str],
) -> BTreeMap<String, Pod> {
    let wanted: BTreeSet<&str> = nodes.iter().copied().collect();
    eventually(
        &format!("one ready daemon pod on each of {nodes:?}"),
        TIMEOUT,
        || async {
            let ds = sets.get_status("agent").await.ok()?;
            let status = ds.status.clone()?;
            let pods = pods_of(api, "agent").await;
            let by_node: BTreeMap<String, Pod> = pods
                .into_values()
                .filter_map(|p| Some((node_of(&p)?.to_owned(), p)))
                .collect();
            let have: BTreeSet<&str> = by_node.keys().map(String::as_str).collect();
            let settled = have == wanted
                && by_node.len() == pods_of(api, "agent").await.len()
                && by_node.values().all(is_ready)
                && status.observed_generation == ds.metadata.generation
                && status.desired_number_scheduled == wanted.len() as i32
                && status.updated_number_scheduled.unwrap_or(0) == wanted.len() as i32
                && status.number_available.unwrap_or(0) == wanted.len() as i32;
            settled.then_some(by_node)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_set_runs_one_pod_per_eligible_node_and_rolls() {
    let cluster = cluster(ControllerOptions::default()).await;
    let client = cluster.client();
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let nodes: Api<Node> = Api::all(client.clone());
    let ds = sets
        .create(&PostParams::default(), &daemon_set("agent"))
        .await
        .expect("daemon set created");

    // No Node objects, no daemon pods.
    eventually("the empty daemon set observed", TIMEOUT, || async {
        let s = sets.get_status("agent").await.ok()?.status?;
        (s.observed_generation == ds.metadata.generation && s.desired_number_scheduled == 0)
            .then_some(())
    })
    .await;
    assert!(pods_of(&pods, "agent").await.is_empty());

    for (name, disk) in [("n1", "ssd"), ("n2", "ssd")] {
        nodes
            .create(&PostParams::default(), &node(name, disk))
            .await
            .expect("node created");
    }
    let placed = daemons_on(&pods, &sets, &["n1", "n2"]).await;
    for (node_name, pod) in &placed {
        assert!(pod.name_any().starts_with("agent-"));
        let spec = pod.spec.as_ref().expect("spec");
        let pinned = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|r| serde_json::to_value(&r.node_selector_terms).expect("terms"));
        assert_eq!(
            pinned,
            Some(json!([{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": [node_name]}]}]))
        );
        let tolerates_cordon = spec.tolerations.iter().flatten().any(|t| {
            t.key.as_deref() == Some("node.kubernetes.io/unschedulable")
                && t.operator.as_deref() == Some("Exists")
        });
        assert!(tolerates_cordon);
        assert_eq!(pod.owner_references()[0].kind, "DaemonSet");
    }
    let first_hash = revision_of(&placed["n1"]).expect("hash label").to_owned();
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), NS);
    let cr = revisions
        .get(&format!("agent-{first_hash}"))
        .await
        .expect("controller revision");
    assert_eq!(cr.revision, 1);

    // A new node gets a pod.
    nodes
        .create(&PostParams::default(), &node("n3", "hdd"))
        .await
        .expect("node created");
    daemons_on(&pods, &sets, &["n1", "n2", "n3"]).await;

    // A nodeSelector (a template change) excludes n3 and rolls n1 and n2.
    let selector = json!({"template": {"spec": {"nodeSelector": {"disk": "ssd"}}}});
    patch_spec(&sets, "agent", selector).await;
    let rolled = daemons_on(&pods, &sets, &["n1", "n2"]).await;
    let second_hash = revision_of(&rolled["n1"]).expect("hash label").to_owned();
    assert_ne!(second_hash, first_hash);
    assert!(
        rolled
            .values()
            .all(|p| revision_of(p) == Some(second_hash.as_str()))
    );

    // Deleting a node removes its pod.
    nodes
        .delete("n2", &DeleteParams::default())
        .await
        .expect("node deleted");
    daemons_on(&pods, &sets, &["n1"]).await;
    nodes
        .create(&PostParams::default(), &node("n4", "ssd"))
        .await
        .expect("node created");
    daemons_on(&pods, &sets, &["n1", "n4"]).await;

    let kubectl = Kubectl::new(&cluster);
    kubectl
        .run(&["set", "image", "daemonset/agent", "agent=busybox:1.37"])
        .await;
    let out = kubectl
        .run(&["rollout", "status", "daemonset/agent", "--timeout=60s"])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let done = daemons_on(&pods, &sets, &["n1", "n4"]).await;
    let third_hash = revision_of(&done["n1"]).expect("hash label").to_owned();
    assert!(![first_hash.as_str(), second_hash.as_str()].contains(&third_hash.as_str()));
    for pod in done.values() {
        let image = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers[0].image.clone());
        assert_eq!(image.as_deref(), Some("busybox:1.37"));
    }
    let numbers: Vec<i64> = revisions
        .list(&ListParams::default())
        .await
        .expect("revisions")
        .items
        .iter()
        .map(|r| r.revision)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(numbers, [1, 2, 3]);
    cluster.shutdown().await;
}

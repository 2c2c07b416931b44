//! The agents' status streams and their fan-out.
//!
//! The hub keeps caches (reflectors) of NetworkConfigurations, NetworkCares and Pods and, from
//! them, a [`Plan`]: which pods to follow (a pod with a NetworkConfiguration, or selected by a
//! valid NetworkCare, that runs and has an IP) and which pods each NetworkCare selects. For each
//! followed pod a follower task reads the agent's `GET /v1/status/watch` with reconnects and
//! backoff; a follower stops when its pod is no longer needed or was re-created.
//!
//! Each status snapshot is fanned out:
//! - to the NetworkConfiguration of the pod, as a reconcile trigger when the agent run, its
//!   generation or its results changed (a restarted agent is seen as soon as its stream is
//!   back, not at the next periodic requeue);
//! - to every NetworkCare selecting the pod, as the changes since that subscription's previous
//!   snapshot of the pod, filtered, queued for delivery.
//!
//! A subscription's first snapshot of a pod instance is its baseline, not a change. Baselines
//! survive stream reconnects and agent restarts (what changed meanwhile is reported); they are
//! reset when the pod is re-created (new uid) or newly selected.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use nes_agent::client::AgentClient;
use nes_api::Status;
use nes_api::crd::{NetworkCare, NetworkConfiguration, StatusFilter};
use nes_api::report::{CareRef, Report};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::changes;
use crate::delivery::Worker;
use crate::operator::Context;
use crate::pods::{self, Selection, Target};

/// How long the hub waits after a cache change before re-planning, so a burst of events (the
/// initial lists) is planned once.
const DEBOUNCE: Duration = Duration::from_millis(50);

/// A pod by namespace and name.
pub type PodKey = (String, String);

/// What one NetworkCare needs from the hub.
#[derive(Debug, Clone, PartialEq)]
pub struct CarePlan {
    /// Its namespace and name.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The callback URL.
    pub url: String,
    /// Which changes to deliver.
    pub filter: StatusFilter,
    /// The pods it selects now (whether or not they run).
    pub pods: BTreeSet<PodKey>,
}

/// The pods to follow and who cares about them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Pods to follow, at which instance and address.
    pub follow: BTreeMap<PodKey, Target>,
    /// Pods with a NetworkConfiguration: the resource's name.
    pub configured: BTreeMap<PodKey, String>,
    /// Valid NetworkCares by uid.
    pub cares: BTreeMap<String, CarePlan>,
    /// The NetworkCares (uids) selecting each pod.
    pub cares_of: BTreeMap<PodKey, Vec<String>>,
}

/// The plan for the cached objects (pure). Invalid NetworkCares select nothing (their
/// reconciler reports why).
pub fn plan(configs: &[NetworkConfiguration], cares: &[NetworkCare], pods: &[Pod]) -> Plan {
    let mut out = Plan::default();
    for config in configs {
        let ns = config.namespace().unwrap_or_default();
        out.configured
            .insert((ns, config.spec.pod.clone()), config.name_any());
    }
    let mut by_namespace: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for pod in pods {
        by_namespace
            .entry(pod.metadata.namespace.as_deref().unwrap_or_default())
            .or_default()
            .push(pod);
    }
    for care in cares {
        let (Ok(selection), Ok(_)) = (
            Selection::of(care),
            pods::check_callback(&care.spec.callback.url),
        ) else {
            continue;
        };
        let Some(uid) = care.uid() else { continue };
        let ns = care.namespace().unwrap_or_default();
        let selected: BTreeSet<PodKey> = by_namespace
            .get(ns.as_str())
            .into_iter()
            .flatten()
            .filter(|p| selection.selects(p))
            .map(|p| (ns.clone(), p.name_any()))
            .collect();
        for key in &selected {
            out.cares_of
                .entry(key.clone())
                .or_default()
                .push(uid.clone());
        }
        out.cares.insert(
            uid,
            CarePlan {
                namespace: ns,
                name: care.name_any(),
                url: care.spec.callback.url.clone(),
                filter: care.spec.filter.clone(),
                pods: selected,
            },
        );
    }
    for pod in pods {
        let key = (pod.namespace().unwrap_or_default(), pod.name_any());
        let wanted = out.configured.contains_key(&key) || out.cares_of.contains_key(&key);
        if let (true, Ok(target)) = (wanted, pods::target(pod)) {
            out.follow.insert(key, target);
        }
    }
    out
}

/// A status snapshot from a follower.
struct Observed {
    pod: PodKey,
    uid: String,
    status: Arc<Status>,
}

struct Follower {
    target: Target,
    stop: CancellationToken,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The hub's state, owned by its loop.
struct Hub {
    ctx: Arc<Context>,
    stop: CancellationToken,
    plan: Plan,
    followers: HashMap<PodKey, Follower>,
    latest: HashMap<PodKey, Arc<Status>>,
    baselines: HashMap<(String, PodKey), Arc<Status>>,
    workers: HashMap<String, Worker>,
    observed: mpsc::Sender<Observed>,
}

fn scoped<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

type Changes = Pin<Box<dyn Stream<Item = ()> + Send>>;

/// A reflector over `api` whose stream yields `()` per change (errors are retried with backoff
/// by the watcher and only logged here). `modify` trims each object before it is cached.
fn cache<K>(api: Api<K>, modify: impl FnMut(&mut K) + Send + 'static) -> (Store<K>, Changes)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(modify),
    )
    .map(|event| {
        if let Err(e) = event {
            tracing::debug!(error = %e, "hub cache: watch error, retrying");
        }
    });
    (store, Box::pin(stream))
}

/// Drops a cached resource's managedFields, which the hub never reads.
fn without_managed_fields<K: Resource>(guard: &mut DeserializeGuard<K>) {
    if let Ok(object) = &mut guard.0 {
        object.meta_mut().managed_fields = None;
    }
}

/// Runs the hub until `stop` is cancelled.
pub async fn run(ctx: Arc<Context>, stop: CancellationToken) {
    let client = ctx.runtime.client.clone();
    let ns = ctx.settings.namespace.clone();
    let (configs, config_changes) = cache(
        scoped::<DeserializeGuard<NetworkConfiguration>>(&client, ns.as_deref()),
        without_managed_fields,
    );
    let (cares, care_changes) = cache(
        scoped::<DeserializeGuard<NetworkCare>>(&client, ns.as_deref()),
        without_managed_fields,
    );
    // Every pod of the namespaces is cached (a NetworkCare may select any), so each is cut
    // down to what the plan reads first.
    let (pod_store, pod_changes) = cache(scoped::<Pod>(&client, ns.as_deref()), pods::slim);
    let mut changes = futures::stream::select_all([config_changes, care_changes, pod_changes]);
    let (observed, mut observations) = mpsc::channel(1024);
    let mut hub = Hub {
        ctx,
        stop: stop.clone(),
        plan: Plan::default(),
        followers: HashMap::new(),
        latest: HashMap::new(),
        baselines: HashMap::new(),
        workers: HashMap::new(),
        observed,
    };
    let mut replan_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            change = changes.next() => {
                if change.is_none() {
                    break;
                }
                replan_at.get_or_insert_with(|| tokio::time::Instant::now() + DEBOUNCE);
            }
            Some(observed) = observations.recv() => hub.observe(observed),
            _ = sleep_until(replan_at), if replan_at.is_some() => {
                replan_at = None;
                let configs: Vec<NetworkConfiguration> =
                    configs.state().iter().filter_map(|g| g.0.as_ref().ok().cloned()).collect();
                let cares: Vec<NetworkCare> =
                    cares.state().iter().filter_map(|g| g.0.as_ref().ok().cloned()).collect();
                let pods: Vec<Pod> = pod_store.state().iter().map(|p| Pod::clone(p)).collect();
                hub.apply(plan(&configs, &cares, &pods));
            }
        }
    }
    tracing::info!("status streams stopped");
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

impl Hub {
    /// Starts and stops followers and delivery workers to match `next`.
    fn apply(&mut self, next: Plan) {
        // Followers: stop those no longer wanted or whose pod was re-created or moved.
        let stale: Vec<PodKey> = self
            .followers
            .iter()
            .filter(|(key, f)| next.follow.get(*key) != Some(&f.target))
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            self.followers.remove(&key);
            self.latest.remove(&key);
            self.baselines.retain(|(_, pod), _| *pod != key);
        }
        for (key, target) in &next.follow {
            if !self.followers.contains_key(key) {
                self.followers.insert(key.clone(), self.follow(key, target));
            }
        }
        // Delivery workers: one per valid subscription and callback URL.
        self.workers
            .retain(|uid, w| next.cares.get(uid).is_some_and(|care| care.url == w.url));
        for (uid, care) in &next.cares {
            if !self.workers.contains_key(uid) {
                let worker = self.worker(uid, care);
                self.workers.insert(uid.clone(), worker);
            }
        }
        // Baselines: a newly selected pod starts from its latest snapshot.
        self.baselines
            .retain(|(uid, pod), _| next.cares.get(uid).is_some_and(|c| c.pods.contains(pod)));
        for (uid, care) in &next.cares {
            for pod in &care.pods {
                if let Some(latest) = self.latest.get(pod) {
                    self.baselines
                        .entry((uid.clone(), pod.clone()))
                        .or_insert_with(|| latest.clone());
                }
            }
        }
        // The selected counts appear in the NetworkCare status.
        let stats = &self.ctx.stats;
        stats.retain(|uid| next.cares.contains_key(uid));
        for (uid, care) in &next.cares {
            let changed = stats.update(uid, |c| {
                let changed = c.selected != care.pods.len();
                c.selected = care.pods.len();
                changed
            });
            if changed {
                self.ctx.trigger_care(&care.namespace, &care.name);
            }
        }
        self.plan = next;
    }

    fn follow(&self, key: &PodKey, target: &Target) -> Follower {
        let stop = self.stop.child_token();
        let url = pods::agent_url(target.ip, self.ctx.settings.agent_port);
        let client = AgentClient::with_client(self.ctx.http.clone(), url, None);
        tokio::spawn(follow(
            client,
            key.clone(),
            target.uid.clone(),
            self.observed.clone(),
            self.ctx.settings.stream_backoff,
            stop.clone(),
        ));
        Follower {
            target: target.clone(),
            stop,
        }
    }

    fn worker(&self, uid: &str, care: &CarePlan) -> Worker {
        let ctx = self.ctx.clone();
        let (namespace, name) = (care.namespace.clone(), care.name.clone());
        Worker::start(
            self.ctx.http.clone(),
            care.url.clone(),
            uid.to_owned(),
            self.ctx.stats.clone(),
            self.ctx.settings.delivery.clone(),
            move || ctx.trigger_care(&namespace, &name),
            self.stop.child_token(),
        )
    }

    /// Fans one snapshot out.
    fn observe(&mut self, observed: Observed) {
        let Observed { pod, uid, status } = observed;
        if self.followers.get(&pod).is_none_or(|f| f.target.uid != uid) {
            return; // from a follower already stopped
        }
        let previous = self.latest.insert(pod.clone(), status.clone());
        if let Some(name) = self.plan.configured.get(&pod) {
            let relevant = previous.as_ref().is_none_or(|p| {
                p.boot_id != status.boot_id
                    || p.generation != status.generation
                    || p.results != status.results
            });
            if relevant {
                self.ctx.trigger_config(&pod.0, name);
            }
        }
        let Some(cares) = self.plan.cares_of.get(&pod) else {
            return;
        };
        for care_uid in cares {
            let Some(care) = self.plan.cares.get(care_uid) else {
                continue;
            };
            let key = (care_uid.clone(), pod.clone());
            let Some(baseline) = self.baselines.insert(key, status.clone()) else {
                continue; // the first snapshot of this pod for this subscription
            };
            let found = changes::filter(changes::compute(&baseline, &status), &care.filter);
            if found.is_empty() {
                continue;
            }
            let report = Report {
                network_care: CareRef {
                    namespace: care.namespace.clone(),
                    name: care.name.clone(),
                },
                pod: pod.1.clone(),
                pod_uid: uid.clone(),
                boot_id: status.boot_id.clone(),
                time: jiff::Timestamp::now().to_string(),
                changes: found,
                status: Status::clone(&status),
            };
            let queued = self.workers.get(care_uid).is_some_and(|w| w.send(report));
            if !queued {
                self.ctx.stats.update(care_uid, |c| {
                    c.failures += 1;
                    c.failing = true;
                    c.last_error = Some("the delivery queue is full: report dropped".into());
                });
                self.ctx.trigger_care(&care.namespace, &care.name);
            }
        }
    }
}

/// Follows one agent's status stream until `stop`: reconnects with backoff when the stream
/// breaks or ends (the agent restarted), resetting the backoff after each working connection.
async fn follow(
    client: AgentClient,
    pod: PodKey,
    uid: String,
    observed: mpsc::Sender<Observed>,
    backoff: operator_core::backoff::Policy,
    stop: CancellationToken,
) {
    let mut failures = 0;
    loop {
        let session = async {
            let mut received = false;
            let stream = match client.watch().await {
                Ok(stream) => stream,
                Err(e) => return (received, Some(e.to_string())),
            };
            let mut stream = std::pin::pin!(stream);
            while let Some(item) = stream.next().await {
                match item {
                    Ok(status) => {
                        received = true;
                        let message = Observed {
                            pod: pod.clone(),
                            uid: uid.clone(),
                            status: Arc::new(status),
                        };
                        if observed.send(message).await.is_err() {
                            return (received, None);
                        }
                    }
                    Err(e) => return (received, Some(e.to_string())),
                }
            }
            (received, None)
        };
        let (received, error) = tokio::select! {
            _ = stop.cancelled() => return,
            outcome = session => outcome,
        };
        failures = if received { 1 } else { failures + 1 };
        let delay = backoff.delay(failures, rand::random::<f64>());
        tracing::debug!(namespace = %pod.0, pod = %pod.1, error = error.as_deref().unwrap_or("stream ended"),
            retry_in = ?delay, "agent status stream interrupted");
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// An `ObjectRef` for a trigger channel.
pub fn object_ref<K>(namespace: &str, name: &str) -> ObjectRef<K>
where
    K: kube::runtime::reflector::Lookup,
    K::DynamicType: Default,
{
    ObjectRef::new(name).within(namespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ip: &str, labels: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": labels},
            "status": {"phase": "Running", "podIP": ip}
        }))
        .unwrap()
    }

    fn config(pod: &str) -> NetworkConfiguration {
        serde_json::from_value(json!({
            "apiVersion": "nes.kubecrew.io/v1alpha1", "kind": "NetworkConfiguration",
            "metadata": {"name": pod, "namespace": "ns"},
            "spec": {"pod": pod}
        }))
        .unwrap()
    }

    fn care(name: &str, pods: serde_json::Value, url: &str) -> NetworkCare {
        serde_json::from_value(json!({
            "apiVersion": "nes.kubecrew.io/v1alpha1", "kind": "NetworkCare",
            "metadata": {"name": name, "namespace": "ns", "uid": format!("care-{name}")},
            "spec": {"pods": pods, "callback": {"url": url}}
        }))
        .unwrap()
    }

    #[test]
    fn follows_configured_and_selected_running_pods_only() {
        let pods = [
            pod("a", "10.0.0.1", json!({})),
            pod("b", "10.0.0.2", json!({"app": "web"})),
            pod("c", "10.0.0.3", json!({})),
            serde_json::from_value(json!({"metadata": {"name": "d", "namespace": "ns",
                "labels": {"app": "web"}}, "status": {"phase": "Pending"}}))
            .unwrap(),
        ];
        let cares = [
            care(
                "w",
                json!({"selector": {"matchLabels": {"app": "web"}}}),
                "http://cb/",
            ),
            care("bad", json!({"names": ["c"]}), "ftp://cb/"),
        ];
        let plan = plan(&[config("a")], &cares, &pods);
        let followed: Vec<&str> = plan.follow.keys().map(|k| k.1.as_str()).collect();
        assert_eq!(
            followed,
            ["a", "b"],
            "c only by an invalid care, d not running"
        );
        assert_eq!(
            plan.follow[&("ns".into(), "a".into())].ip.to_string(),
            "10.0.0.1"
        );
        assert_eq!(plan.configured[&("ns".into(), "a".into())], "a");
        let w = &plan.cares["care-w"];
        assert_eq!(w.pods.len(), 2, "the selection counts the pending pod too");
        assert!(!plan.cares.contains_key("care-bad"));
        assert_eq!(plan.cares_of[&("ns".into(), "b".into())], ["care-w"]);
    }
}

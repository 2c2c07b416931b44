//! What the scheduler and the kubelet would do to a Pod, simulated without containers.
//!
//! - A Pod without `spec.nodeName` is bound to the first Node object (by name), or to
//!   [`DEFAULT_NODE`] when the cluster has none. A pod whose required node affinity names
//!   its nodes (`matchFields metadata.name In [...]`, as DaemonSet pods do) goes only to an
//!   existing node among those, and stays unbound (retried) while there is none.
//! - A bound Pod whose phase is still empty or `Pending` is "started" after
//!   [`Config::ready_after`]: phase `Running`, a `podIP` from [`Config::ip_pool`] (distinct
//!   per live pod, released when the pod is deleted), `hostIP` 127.0.0.1, the conditions a
//!   kubelet sets, and a running, ready status per container. Init containers are reported
//!   as completed.
//! - Pods in any other phase are left alone, so a test can set `Failed`, `Succeeded`, or an
//!   unready condition and keep it.
//!
//! Every write is a PUT of the version just read, so a concurrent change makes it fail with a
//! conflict and the work is simply retried from a fresh read.
//!
//! There is no `pods/binding` subresource in devcluster, so binding is a PUT of the pod with
//! `spec.nodeName` set.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, HostIP, Node,
    Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The node pods are bound to when the cluster has no Node object.
pub const DEFAULT_NODE: &str = "devcluster-node";
/// The `hostIP` of every pod: the node is this process.
const HOST_IP: &str = "127.0.0.1";
/// Backoff after a failed API call about a pod.
const ERROR_RETRY: Duration = Duration::from_secs(1);
/// How many times [`mark_restarted`] retries a write that lost a race.
const CONFLICT_RETRIES: usize = 10;

/// How the simulated kubelet behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// Pod IPs are allocated from this IPv4 network (address, prefix length).
    pub ip_pool: (Ipv4Addr, u8),
    /// How long after binding a pod becomes `Running` and ready.
    pub ready_after: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ip_pool: (Ipv4Addr::new(10, 244, 0, 0), 16),
            ready_after: Duration::ZERO,
        }
    }
}

/// Runs the simulated scheduler and kubelet until `shutdown` is cancelled. API errors are
/// logged and retried.
pub async fn run(client: kube::Client, config: Config, shutdown: CancellationToken) {
    let mut kubelet = Kubelet::new(client.clone(), &config);
    let api: Api<Pod> = Api::all(client);
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    loop {
        let due = kubelet.next_due();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            event = stream.next() => match event {
                Some(Ok(event)) => kubelet.observe(event),
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "pod controller: watch failed, retrying");
                }
                None => return,
            },
            _ = sleep_until(due), if due.is_some() => {
                if shutdown.run_until_cancelled(kubelet.work()).await.is_none() {
                    return;
                }
            }
        }
    }
}

/// Simulates a container restart, as a kubelet reports one: every container of the pod gets
/// `restartCount` + 1, its previous state as `lastState`, and a new `running.startedAt`.
pub async fn mark_restarted(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut attempt = 0;
    loop {
        let mut pod = api.get(name).await?;
        let now = now();
        for status in pod
            .status
            .iter_mut()
            .flat_map(|s| s.container_statuses.iter_mut().flatten())
        {
            restart(status, &now);
        }
        match api.replace_status(name, &PostParams::default(), &pod).await {
            Err(e) if is_conflict(&e) && attempt < CONFLICT_RETRIES => attempt += 1,
            result => return result.map(drop),
        }
    }
}

fn restart(status: &mut ContainerStatus, now: &Time) {
    let started_at = status
        .state
        .as_ref()
        .and_then(|s| s.running.as_ref())
        .and_then(|r| r.started_at.clone());
    status.last_state = Some(ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 0,
            reason: Some("Completed".into()),
            started_at,
            finished_at: Some(now.clone()),
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    });
    status.restart_count += 1;
    status.state = Some(running(now));
}

async fn sleep_until(due: Option<Instant>) {
    if let Some(due) = due {
        tokio::time::sleep_until(due).await;
    }
}

/// Why one piece of work failed; logged, and the work retried later.
#[derive(Debug, thiserror::Error)]
enum PodError {
    /// The API server refused or failed a request.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// Every address of the pool is held by a live pod.
    #[error("pod IP pool {0}/{1} is exhausted")]
    PoolExhausted(Ipv4Addr, u8),
    /// No node the pod may go to exists.
    #[error("no node fits the pod's node affinity")]
    Unschedulable,
}

/// What is left to do for one pod.
#[derive(Debug, Clone)]
struct Task {
    namespace: String,
    name: String,
    /// Bound to a node: what remains is starting it.
    bound: bool,
    due: Instant,
}

/// The simulated scheduler and kubelet, owned by its loop.
struct Kubelet {
    client: kube::Client,
    ready_after: Duration,
    pool: IpPool,
    tasks: HashMap<String, Task>,
    /// Uids seen during the current initial list, to forget what it no longer shows.
    listed: HashSet<String>,
}

impl Kubelet {
    fn new(client: kube::Client, config: &Config) -> Self {
        Kubelet {
            client,
            ready_after: config.ready_after,
            pool: IpPool::new(config.ip_pool.0, config.ip_pool.1),
            tasks: HashMap::new(),
            listed: HashSet::new(),
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.tasks.values().map(|t| t.due).min()
    }

    fn observe(&mut self, event: Event<Pod>) {
        match event {
            Event::Init => self.listed.clear(),
            Event::InitApply(pod) => {
                if let Some(uid) = &pod.metadata.uid {
                    self.listed.insert(uid.clone());
                }
                self.apply(&pod);
            }
            Event::InitDone => {
                let listed = std::mem::take(&mut self.listed);
                self.pool.retain(&listed);
                self.tasks.retain(|uid, _| listed.contains(uid));
            }
            Event::Apply(pod) => self.apply(&pod),
            Event::Delete(pod) => {
                if let Some(uid) = &pod.metadata.uid {
                    self.pool.release(uid);
                    self.tasks.remove(uid);
                }
            }
        }
    }

    /// Records a pod's address and schedules what it still needs.
    fn apply(&mut self, pod: &Pod) {
        let (Some(uid), Some(namespace), Some(name)) = (
            pod.metadata.uid.as_deref(),
            pod.metadata.namespace.as_deref(),
            pod.metadata.name.as_deref(),
        ) else {
            return;
        };
        if let Some(ip) = pod_ip(pod) {
            self.pool.reserve(uid, ip);
        }
        if !pending(pod) {
            self.tasks.remove(uid);
            return;
        }
        let bound = node_name(pod).is_some();
        if bound && self.tasks.get(uid).is_some_and(|t| t.bound) {
            return;
        }
        self.schedule(uid, namespace, name, bound);
    }

    fn schedule(&mut self, uid: &str, namespace: &str, name: &str, bound: bool) {
        let delay = if bound {
            self.ready_after
        } else {
            Duration::ZERO
        };
        let task = Task {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            bound,
            due: Instant::now() + delay,
        };
        self.tasks.insert(uid.to_owned(), task);
    }

    /// Does every task that is due; failures are retried after [`ERROR_RETRY`].
    async fn work(&mut self) {
        let now = Instant::now();
        let due: Vec<(String, Task)> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.due <= now)
            .map(|(uid, t)| (uid.clone(), t.clone()))
            .collect();
        for (uid, task) in due {
            if let Err(e) = self.attempt(&uid, &task).await {
                tracing::debug!(pod = %task.name, error = %e, "pod controller: will retry");
                if let Some(t) = self.tasks.get_mut(&uid) {
                    t.due = Instant::now() + ERROR_RETRY;
                }
            }
        }
    }

    /// Binds or starts the latest version of a pod, if it still needs it.
    async fn attempt(&mut self, uid: &str, task: &Task) -> Result<(), PodError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &task.namespace);
        let latest = api.get_opt(&task.name).await?;
        let Some(mut pod) = latest.filter(|p| p.metadata.uid.as_deref() == Some(uid)) else {
            self.tasks.remove(uid);
            return Ok(());
        };
        if pod.metadata.deletion_timestamp.is_some() || !pending(&pod) {
            self.tasks.remove(uid);
            return Ok(());
        }
        if node_name(&pod).is_none() {
            let node = self.pick_node(&pod).await?;
            pod.spec.get_or_insert_default().node_name = Some(node.clone());
            api.replace(&task.name, &PostParams::default(), &pod)
                .await?;
            tracing::debug!(pod = %task.name, %node, "pod controller: bound pod");
            self.schedule(uid, &task.namespace, &task.name, true);
            return Ok(());
        }
        let ip = self
            .pool
            .allocate(uid)
            .ok_or(PodError::PoolExhausted(self.pool.network, self.pool.prefix))?;
        pod.status = Some(started_status(&pod, ip, &now()));
        api.replace_status(&task.name, &PostParams::default(), &pod)
            .await?;
        tracing::debug!(pod = %task.name, %ip, "pod controller: pod running");
        self.tasks.remove(uid);
        Ok(())
    }

    /// The node to bind `pod` to (see [`choose_node`]).
    async fn pick_node(&self, pod: &Pod) -> Result<String, PodError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let list = nodes.list(&ListParams::default()).await?;
        let names: Vec<String> = list
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        choose_node(pod, &names).ok_or(PodError::Unschedulable)
    }
}

/// The node for an unbound pod among the Node objects `nodes`: the first by name its
/// required node affinity admits (see [`named_nodes`]), or [`DEFAULT_NODE`] when the cluster
/// has no nodes and the pod does not name any. `None`: no node fits.
fn choose_node(pod: &Pod, nodes: &[String]) -> Option<String> {
    match named_nodes(pod) {
        None if nodes.is_empty() => Some(DEFAULT_NODE.to_owned()),
        None => nodes.iter().min().cloned(),
        Some(allowed) => nodes.iter().filter(|n| allowed.contains(n)).min().cloned(),
    }
}

/// The nodes a pod's required node affinity limits it to by name: the `matchFields
/// metadata.name In` values of its terms (which are ORed). `None` when it has no such
/// affinity, or a term without that requirement (other requirements are not simulated).
fn named_nodes(pod: &Pod) -> Option<Vec<&String>> {
    let terms = &pod
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    let mut allowed = Vec::new();
    for term in terms {
        let names = term
            .match_fields
            .iter()
            .flatten()
            .find(|r| r.key == "metadata.name" && r.operator == "In")?;
        allowed.extend(names.values.iter().flatten());
    }
    Some(allowed)
}

/// Whether a pod is waiting for the kubelet to start it.
fn pending(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_none_or(|p| p == "Pending")
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn pod_ip(pod: &Pod) -> Option<Ipv4Addr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// The status a kubelet reports once every container of `pod` is running and ready.
fn started_status(pod: &Pod, ip: Ipv4Addr, now: &Time) -> PodStatus {
    let previous = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let conditions = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    .into_iter()
    .map(|type_| PodCondition {
        type_: type_.to_owned(),
        status: "True".to_owned(),
        last_transition_time: Some(now.clone()),
        ..PodCondition::default()
    })
    .collect();
    let containers = spec
        .containers
        .iter()
        .map(|c| container_status(&c.name, c.image.as_deref(), running(now), true))
        .collect();
    let init_containers: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            // A native sidecar (restartPolicy Always) keeps running beside the containers, as
            // the kubelet reports it: running and started; other init containers completed.
            if c.restart_policy.as_deref() == Some("Always") {
                container_status(&c.name, c.image.as_deref(), running(now), true)
            } else {
                container_status(&c.name, c.image.as_deref(), completed(now), false)
            }
        })
        .collect();
    PodStatus {
        phase: Some("Running".to_owned()),
        conditions: Some(conditions),
        host_ip: Some(HOST_IP.to_owned()),
        host_ips: Some(vec![HostIP {
            ip: HOST_IP.to_owned(),
        }]),
        pod_ip: Some(ip.to_string()),
        pod_ips: Some(vec![PodIP { ip: ip.to_string() }]),
        start_time: previous.start_time.or_else(|| Some(now.clone())),
        container_statuses: Some(containers),
        init_container_statuses: (!init_containers.is_empty()).then_some(init_containers),
        qos_class: previous.qos_class,
        ..PodStatus::default()
    }
}

fn container_status(
    name: &str,
    image: Option<&str>,
    state: ContainerState,
    started: bool,
) -> ContainerStatus {
    ContainerStatus {
        name: name.to_owned(),
        image: image.unwrap_or_default().to_owned(),
        ready: true,
        started: Some(started),
        restart_count: 0,
        state: Some(state),
        ..ContainerStatus::default()
    }
}

fn running(now: &Time) -> ContainerState {
    ContainerState {
        running: Some(ContainerStateRunning {
            started_at: Some(now.clone()),
        }),
        ..ContainerState::default()
    }
}

fn completed(now: &Time) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 0,
            reason: Some("Completed".into()),
            started_at: Some(now.clone()),
            finished_at: Some(now.clone()),
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Pod addresses: the usable hosts of one IPv4 network, each held by at most one pod.
#[derive(Debug)]
struct IpPool {
    network: Ipv4Addr,
    prefix: u8,
    first: u32,
    last: u32,
    /// Where the next search starts: addresses are handed out round-robin, as host-local
    /// IPAM does, so a released address is not reused at once.
    next: u32,
    by_pod: HashMap<String, Ipv4Addr>,
    holders: HashMap<Ipv4Addr, String>,
}

impl IpPool {
    fn new(network: Ipv4Addr, prefix: u8) -> Self {
        let prefix = prefix.min(32);
        let size = 1u64 << (32 - u32::from(prefix));
        let base = u64::from(u32::from(network)) & !(size - 1);
        // The network and broadcast addresses are not hosts, except in /31 and /32.
        let (first, last) = if size >= 4 {
            (base + 1, base + size - 2)
        } else {
            (base, base + size - 1)
        };
        let first = u32::try_from(first).unwrap_or(u32::MAX);
        let last = u32::try_from(last).unwrap_or(u32::MAX);
        IpPool {
            network: Ipv4Addr::from(u32::try_from(base).unwrap_or_default()),
            prefix,
            first,
            last,
            next: first,
            by_pod: HashMap::new(),
            holders: HashMap::new(),
        }
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(ip))
    }

    /// Records an address a pod already reports (from before a restart of the controller).
    fn reserve(&mut self, uid: &str, ip: Ipv4Addr) {
        if !self.contains(ip) || self.holders.contains_key(&ip) || self.by_pod.contains_key(uid) {
            return;
        }
        self.by_pod.insert(uid.to_owned(), ip);
        self.holders.insert(ip, uid.to_owned());
    }

    /// The pod's address, allocating a free one if it has none; `None` when all are taken.
    fn allocate(&mut self, uid: &str) -> Option<Ipv4Addr> {
        if let Some(ip) = self.by_pod.get(uid) {
            return Some(*ip);
        }
        let size = u64::from(self.last - self.first) + 1;
        let start = u64::from(self.next - self.first);
        let ip = (0..size)
            .map(|i| (start + i) % size)
            .filter_map(|offset| u32::try_from(u64::from(self.first) + offset).ok())
            .map(Ipv4Addr::from)
            .find(|ip| !self.holders.contains_key(ip))?;
        let after = u32::from(ip);
        self.next = if after >= self.last {
            self.first
        } else {
            after + 1
        };
        self.by_pod.insert(uid.to_owned(), ip);
        self.holders.insert(ip, uid.to_owned());
        Some(ip)
    }

    fn release(&mut self, uid: &str) {
        if let Some(ip) = self.by_pod.remove(uid) {
            self.holders.remove(&ip);
        }
    }

    /// Releases the addresses of pods not in `live`.
    fn retain(&mut self, live: &HashSet<String>) {
        self.by_pod.retain(|uid, _| live.contains(uid));
        self.holders.retain(|_, uid| live.contains(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn pool_skips_network_and_broadcast_and_wraps() {
        let mut pool = IpPool::new(ip("10.0.0.0"), 30);
        assert_eq!(pool.allocate("a"), Some(ip("10.0.0.1")));
        assert_eq!(pool.allocate("b"), Some(ip("10.0.0.2")));
        assert_eq!(pool.allocate("c"), None);
        pool.release("a");
        assert_eq!(pool.allocate("c"), Some(ip("10.0.0.1")));
    }

    #[test]
    fn pool_is_stable_per_pod_and_round_robin() {
        let mut pool = IpPool::new(ip("10.244.7.9"), 16);
        assert_eq!(pool.network, ip("10.244.0.0"));
        let a = pool.allocate("a");
        assert_eq!(a, Some(ip("10.244.0.1")));
        assert_eq!(pool.allocate("a"), a);
        pool.release("a");
        // A released address is not handed out again right away.
        assert_eq!(pool.allocate("b"), Some(ip("10.244.0.2")));
    }

    #[test]
    fn pool_reserves_reported_addresses_in_range_only() {
        let mut pool = IpPool::new(ip("10.0.0.0"), 29);
        pool.reserve("a", ip("10.0.0.1"));
        pool.reserve("b", ip("10.0.0.1"));
        pool.reserve("c", ip("192.168.0.1"));
        assert_eq!(pool.allocate("b"), Some(ip("10.0.0.2")));
        let live = HashSet::from(["b".to_owned()]);
        pool.retain(&live);
        assert!(!pool.holders.contains_key(&ip("10.0.0.1")));
    }

    #[test]
    fn tiny_pools_use_every_address() {
        let mut pool = IpPool::new(ip("10.0.0.5"), 32);
        assert_eq!(pool.allocate("a"), Some(ip("10.0.0.5")));
        assert_eq!(pool.allocate("b"), None);
        let mut all = IpPool::new(ip("1.2.3.4"), 0);
        assert_eq!(all.allocate("a"), Some(ip("0.0.0.1")));
    }

    fn pod(phase: Option<&str>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some("nginx".into()),
                    ..Container::default()
                }],
                init_containers: Some(vec![
                    Container {
                        name: "init".into(),
                        ..Container::default()
                    },
                    Container {
                        name: "sidecar".into(),
                        restart_policy: Some("Always".into()),
                        ..Container::default()
                    },
                ]),
                ..PodSpec::default()
            }),
            status: phase.map(|p| PodStatus {
                phase: Some(p.into()),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn only_pending_pods_are_started() {
        assert!(pending(&pod(None)));
        assert!(pending(&pod(Some("Pending"))));
        assert!(!pending(&pod(Some("Running"))));
        assert!(!pending(&pod(Some("Failed"))));
    }

    #[test]
    fn started_status_is_running_and_ready() {
        let now = now();
        let status = started_status(&pod(None), ip("10.244.0.3"), &now);
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.244.0.3"));
        assert_eq!(status.host_ip.as_deref(), Some(HOST_IP));
        let conditions = status.conditions.unwrap_or_default();
        for t in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
            assert!(
                conditions
                    .iter()
                    .any(|c| c.type_ == t && c.status == "True")
            );
        }
        let containers = status.container_statuses.unwrap_or_default();
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0].image, "nginx");
        assert!(containers[0].ready);
        assert!(containers[0].state.as_ref().unwrap().running.is_some());
        let init = status.init_container_statuses.unwrap_or_default();
        assert!(init[0].state.as_ref().unwrap().terminated.is_some());
        // The native sidecar runs on.
        assert!(init[1].state.as_ref().unwrap().running.is_some());
        assert_eq!(init[1].started, Some(true));
    }

    #[test]
    fn the_scheduler_honours_node_names_in_required_affinity() {
        let nodes: Vec<String> = ["b", "a", "c"].map(String::from).to_vec();
        let bare = pod(None);
        assert_eq!(choose_node(&bare, &nodes).as_deref(), Some("a"));
        assert_eq!(choose_node(&bare, &[]).as_deref(), Some(DEFAULT_NODE));
        let pinned = |terms: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({"spec": {"containers": [],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                    {"nodeSelectorTerms": terms}}}}}))
            .unwrap()
        };
        let to_c = pinned(serde_json::json!([{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["c"]}]}]));
        assert_eq!(choose_node(&to_c, &nodes).as_deref(), Some("c"));
        assert_eq!(
            choose_node(&to_c, &["a".to_owned()]),
            None,
            "a gone node: unbound"
        );
        assert_eq!(choose_node(&to_c, &[]), None);
        let either = pinned(serde_json::json!([
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["c"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]));
        assert_eq!(choose_node(&either, &nodes).as_deref(), Some("b"));
        let by_label = pinned(serde_json::json!([{"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["x"]}]}]));
        assert_eq!(choose_node(&by_label, &nodes).as_deref(), Some("a"));
    }

    #[test]
    fn restart_counts_and_keeps_the_last_state() {
        let then = now();
        let mut status = container_status("app", None, running(&then), true);
        restart(&mut status, &now());
        restart(&mut status, &now());
        assert_eq!(status.restart_count, 2);
        let last = status.last_state.unwrap().terminated.unwrap();
        assert!(last.started_at.is_some());
        assert!(status.state.unwrap().running.is_some());
    }
}

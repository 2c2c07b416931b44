//! The DaemonSet controller of kube-controller-manager.
//!
//! Like upstream's `daemon` controller it:
//! - decides per Node object whether the daemon pod should run there with upstream's
//!   predicates: the template's `nodeName`, `nodeSelector` and required node affinity must
//!   match the node, and every `NoSchedule`/`NoExecute` taint must be tolerated by the
//!   template's tolerations plus those every daemon pod gets (node problems and
//!   `node.kubernetes.io/unschedulable`, so cordoned nodes do run daemons, as upstream). A
//!   node whose untolerated taints are all `NoSchedule` keeps a pod already there;
//! - claims the namespace's pods matching `spec.selector` (adopt, release, ignore others'),
//!   groups them by target node (`spec.nodeName`, or the node their affinity names);
//! - creates a pod (`generateName: <ds>-`, label `controller-revision-hash`, the daemon
//!   tolerations, and `spec.affinity.nodeAffinity.requiredDuringScheduling...` with
//!   `matchFields metadata.name In [<node>]`, which the simulated scheduler honours) for
//!   each node that should run one and has none; deletes failed or succeeded pods (they are
//!   recreated on the next sync), duplicates on a node (keeping the oldest), pods on nodes
//!   that should not run one, and pods on nodes that no longer exist (upstream leaves bound
//!   ones to the pod garbage collector, which devcluster does not have);
//! - records each template in a ControllerRevision `<ds>-<hash>` (see
//!   [`super::statefulsets::history`]); `RollingUpdate` (default) deletes old-revision pods,
//!   node by node, keeping at most `maxUnavailable` (default 1, or a percentage of the
//!   desired nodes, rounded up) unavailable, and lets the next sync create their
//!   replacements; `OnDelete` replaces only pods someone else deleted;
//! - writes `status` (desiredNumberScheduled, currentNumberScheduled, numberMisscheduled,
//!   numberReady, numberAvailable, numberUnavailable, updatedNumberScheduled,
//!   observedGeneration, collisionCount) through `/status` when it changes, so
//!   `kubectl rollout status` follows the rollout, and deletes revisions beyond
//!   `revisionHistoryLimit` that no pod uses.
//!
//! Not modelled: `maxSurge` (treated as 0), the failed-pod backoff, events. With no Node
//! objects there are no daemon pods, as on a real cluster.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, DaemonSetSpec, DaemonSetStatus, DaemonSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use tokio_util::sync::CancellationToken;

use super::history;
use super::podutil::{self, controller_ref, omit_zero, to_i32};
use super::statefulsets::REVISION_LABEL;
use super::workqueue::{self, Key, Target};

/// The field a `matchFields` requirement may test (upstream's `metav1.ObjectNameField`).
const NODE_NAME_FIELD: &str = "metadata.name";

/// Taints every daemon pod tolerates (upstream's `AddOrUpdateDaemonPodTolerations`): daemons
/// run on nodes with problems and on cordoned nodes.
const DAEMON_TOLERATIONS: [(&str, &str); 6] = [
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];
/// Tolerated too by daemon pods on the host network, which need no pod network.
const NETWORK_UNAVAILABLE: (&str, &str) = ("node.kubernetes.io/network-unavailable", "NoSchedule");

/// Runs the DaemonSet controller until `shutdown` is cancelled. API errors are logged and
/// retried.
pub async fn run(client: kube::Client, shutdown: CancellationToken) {
    // Any pod of the namespace may be adopted, released, replaced or counted; any node change
    // may concern every DaemonSet.
    let pods = workqueue::secondary(Api::<Pod>::all(client.clone()), workqueue::namespace_of);
    let nodes = workqueue::secondary(Api::<Node>::all(client.clone()), |_| Some(Target::All));
    let sync = |(namespace, name): Key| {
        let client = client.clone();
        async move {
            let sync = Sync {
                client: &client,
                namespace: &namespace,
                name: &name,
            };
            sync.run().await
        }
    };
    workqueue::run(
        "daemonset",
        Api::<DaemonSet>::all(client.clone()),
        vec![pods, nodes],
        sync,
        shutdown,
    )
    .await;
}

/// Why a sync failed; logged, and the sync retried.
#[derive(Debug, thiserror::Error)]
enum SyncError {
    /// The API server refused or failed a request.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// The DaemonSet's ControllerRevisions could not be brought up to date.
    #[error("revision history: {0}")]
    History(#[from] history::HistoryError),
    /// Some pods could not be adopted or released; the rest of the sync went ahead.
    #[error("{0} pods could not be adopted or released")]
    Claims(usize),
}

/// Whether a daemon pod belongs on a node (upstream's `NodeShouldRunDaemonPod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fit {
    /// A pod should be created there if missing.
    should_run: bool,
    /// A pod already there may stay.
    should_continue: bool,
}

const NO_FIT: Fit = Fit {
    should_run: false,
    should_continue: false,
};

/// Upstream's predicates for a daemon pod with `spec` (the template's, with the daemon
/// tolerations) on `node`.
fn node_fit(node: &Node, spec: &PodSpec) -> Fit {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name)
    {
        return NO_FIT;
    }
    if !matches_node_selector(spec, node) || !matches_required_affinity(spec, node) {
        return NO_FIT;
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let untolerated = |effects: &[&str]| {
        taints.iter().any(|taint| {
            effects.contains(&taint.effect.as_str())
                && !tolerations.iter().any(|t| tolerates(t, taint))
        })
    };
    if untolerated(&["NoSchedule", "NoExecute"]) {
        // Only an untolerated NoExecute taint evicts a daemon already running there.
        Fit {
            should_run: false,
            should_continue: !untolerated(&["NoExecute"]),
        }
    } else {
        Fit {
            should_run: true,
            should_continue: true,
        }
    }
}

/// Upstream's `Toleration.ToleratesTaint`.
fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let set = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    if set(&toleration.effect).is_some_and(|e| e != taint.effect) {
        return false;
    }
    if set(&toleration.key).is_some_and(|k| k != taint.key) {
        return false;
    }
    match toleration.operator.as_deref() {
        None | Some("" | "Equal") => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        Some("Exists") => true,
        Some(_) => false,
    }
}

fn node_labels(node: &Node) -> &BTreeMap<String, String> {
    node.labels()
}

fn matches_node_selector(spec: &PodSpec, node: &Node) -> bool {
    let labels = node_labels(node);
    spec.node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
}

/// Whether the required node affinity (if any) admits `node`: any term matches, and a term
/// matches when all its expressions (on labels) and fields (`metadata.name`) do.
fn matches_required_affinity(spec: &PodSpec, node: &Node) -> bool {
    let Some(required) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    else {
        return true;
    };
    let labels = node_labels(node);
    let name = node.metadata.name.as_deref();
    required.node_selector_terms.iter().any(|term| {
        let expressions = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        // An empty term selects nothing.
        (!expressions.is_empty() || !fields.is_empty())
            && expressions
                .iter()
                .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
            && fields
                .iter()
                .all(|r| r.key == NODE_NAME_FIELD && requirement_matches(r, name))
    })
}

/// One node selector requirement against the value of its key (`None`: absent).
fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let contains = |v: &str| values.iter().any(|x| x == v);
    let compare = |ord: std::cmp::Ordering| {
        let parse = |s: &str| s.parse::<i64>().ok();
        match (value.and_then(parse), values.first().and_then(|s| parse(s))) {
            (Some(v), Some(bound)) if values.len() == 1 => v.cmp(&bound) == ord,
            _ => false,
        }
    };
    match r.operator.as_str() {
        "In" => value.is_some_and(contains),
        "NotIn" => value.is_none_or(|v| !contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => compare(std::cmp::Ordering::Greater),
        "Lt" => compare(std::cmp::Ordering::Less),
        _ => false,
    }
}

/// The node a daemon pod is for (upstream's `GetTargetNodeName`): its `nodeName`, or before
/// scheduling the single name of a `matchFields metadata.name In` requirement.
fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(node.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == NODE_NAME_FIELD && r.operator == "In")
        .and_then(|r| match r.values.as_deref() {
            Some([node]) => Some(node.clone()),
            _ => None,
        })
}

/// The template's pod spec with the daemon tolerations added where not already present.
fn with_daemon_tolerations(mut spec: PodSpec) -> PodSpec {
    let network = spec
        .host_network
        .unwrap_or(false)
        .then_some(NETWORK_UNAVAILABLE);
    let tolerations = spec.tolerations.get_or_insert_default();
    for (key, effect) in DAEMON_TOLERATIONS.into_iter().chain(network) {
        let toleration = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Toleration::default()
        };
        if !tolerations.contains(&toleration) {
            tolerations.push(toleration);
        }
    }
    spec
}

/// `affinity` with its required node affinity replaced by the single term pinning the pod
/// to `node` (upstream's `ReplaceDaemonSetPodNodeNameNodeAffinity`).
fn pinned_to(affinity: Option<Affinity>, node: &str) -> Affinity {
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: NODE_NAME_FIELD.into(),
                operator: "In".into(),
                values: Some(vec![node.to_owned()]),
            }]),
            match_expressions: None,
        }],
    });
    affinity
}

/// A new daemon pod for `node` from the DaemonSet's template at revision `hash`.
fn daemon_pod(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let template = ds.spec.clone().unwrap_or_default().template;
    let name = ds.metadata.name.clone().unwrap_or_default();
    let mut pod =
        podutil::pod_from_template(&template, ds.metadata.namespace.clone(), controller_ref(ds));
    pod.metadata.generate_name = Some(format!("{name}-"));
    pod.metadata
        .labels
        .get_or_insert_default()
        .insert(REVISION_LABEL.into(), hash.to_owned());
    let mut spec = with_daemon_tolerations(pod.spec.take().unwrap_or_default());
    spec.affinity = Some(pinned_to(spec.affinity.take(), node));
    pod.spec = Some(spec);
    pod
}

/// What the controller needs to know about one pod it controls.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Daemon {
    name: String,
    /// Bound to its node (not merely aimed at it).
    scheduled: bool,
    created: Option<jiff::Timestamp>,
    /// Failed or Succeeded.
    terminal: bool,
    terminating: bool,
    /// At the current revision.
    updated: bool,
    ready: bool,
    available: bool,
}

impl Daemon {
    fn of(pod: &Pod, hash: &str, min_ready: Duration, now: jiff::Timestamp) -> Option<Daemon> {
        Some(Daemon {
            name: pod.metadata.name.clone()?,
            scheduled: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty()),
            created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
            terminal: podutil::is_terminal(pod),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            updated: pod.labels().get(REVISION_LABEL).map(String::as_str) == Some(hash),
            ready: podutil::is_ready(pod),
            available: podutil::is_available(pod, min_ready, now),
        })
    }

    /// Upstream's `podByCreationTimestampAndPhase`: bound first, then oldest, then by name.
    fn age_rank(&self) -> impl Ord + '_ {
        (!self.scheduled, self.created, &self.name)
    }
}

/// Daemon pods by the node they are for.
type ByNode = BTreeMap<String, Vec<Daemon>>;

/// What `manage` decided.
#[derive(Debug, Default, PartialEq, Eq)]
struct Manage {
    /// Nodes that need a daemon pod.
    create_on: Vec<String>,
    /// Pods to delete.
    delete: Vec<String>,
}

/// Upstream's `manage` (`podsShouldBeOnNode` per node), plus removing pods of nodes that no
/// longer exist. `nodes` are all Node objects with their fit.
fn manage(nodes: &[(String, Fit)], daemons: &ByNode) -> Manage {
    let mut out = Manage::default();
    for (node, fit) in nodes {
        let pods = daemons.get(node).filter(|p| !p.is_empty());
        match pods {
            None if fit.should_run => out.create_on.push(node.clone()),
            Some(pods) if fit.should_continue => {
                let mut running = Vec::new();
                for pod in pods.iter().filter(|p| !p.terminating) {
                    if pod.terminal {
                        out.delete.push(pod.name.clone());
                    } else {
                        running.push(pod);
                    }
                }
                // Without surge one pod per node: the oldest stays.
                running.sort_by(|a, b| a.age_rank().cmp(&b.age_rank()));
                out.delete
                    .extend(running.iter().skip(1).map(|p| p.name.clone()));
            }
            Some(pods) if !fit.should_continue => out.delete.extend(
                pods.iter()
                    .filter(|p| !p.terminating)
                    .map(|p| p.name.clone()),
            ),
            _ => {}
        }
    }
    let known: HashSet<&String> = nodes.iter().map(|(n, _)| n).collect();
    for (node, pods) in daemons {
        if !known.contains(node) {
            out.delete.extend(
                pods.iter()
                    .filter(|p| !p.terminating)
                    .map(|p| p.name.clone()),
            );
        }
    }
    out
}

/// `rollingUpdate.maxUnavailable` for `desired` nodes: default 1, a percentage rounded up,
/// and at least 1 when anything is desired (upstream's fallback when neither surge nor
/// unavailability is allowed).
fn max_unavailable(value: Option<&IntOrString>, desired: usize) -> usize {
    let n = match value {
        None => 1,
        Some(IntOrString::Int(n)) => usize::try_from(*n).unwrap_or(0),
        Some(IntOrString::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.trim().parse::<usize>().ok())
            .map(|p| (p.saturating_mul(desired)).div_ceil(100))
            .unwrap_or(1),
    };
    if desired > 0 && n == 0 { 1 } else { n }
}

/// The node's current-revision and old pod, or `None` when it has more than one of either.
fn split_updated(pods: &[Daemon]) -> Option<(Option<&Daemon>, Option<&Daemon>)> {
    let (mut new, mut old) = (None, None);
    for pod in pods.iter().filter(|p| !p.terminating) {
        let slot = if pod.updated { &mut new } else { &mut old };
        if slot.replace(pod).is_some() {
            return None;
        }
    }
    Some((new, old))
}

/// Upstream's `rollingUpdate` without surge: the old pods to delete now so that at most
/// `max_unavailable` of the nodes (those that should run a pod, and those that have one) are
/// without an available pod. Unavailable old pods are always replaced.
fn rolling_deletions(desired: &[String], daemons: &ByNode, max_unavailable: usize) -> Vec<String> {
    let nodes: BTreeSet<&String> = daemons.keys().chain(desired).collect();
    let mut unavailable = 0;
    let mut replace = Vec::new();
    let mut candidates = Vec::new();
    for node in nodes {
        let pods = daemons.get(node).map(Vec::as_slice).unwrap_or_default();
        match split_updated(pods) {
            // Duplicates, or nothing yet: `manage` sorts it out; it counts as unavailable.
            None | Some((None, None) | (Some(_), Some(_))) => unavailable += 1,
            Some((Some(new), None)) => {
                if !new.available {
                    unavailable += 1;
                }
            }
            Some((None, Some(old))) => {
                if !old.available {
                    replace.push(old.name.clone());
                    unavailable += 1;
                } else if unavailable < max_unavailable {
                    candidates.push(old.name.clone());
                }
            }
        }
    }
    let room = max_unavailable
        .saturating_sub(unavailable)
        .min(candidates.len());
    replace.extend(candidates.into_iter().take(room));
    replace
}

/// Upstream's `updateDaemonSetStatus`: per node that should run a pod, whether it has one and
/// whether the oldest is ready, available and current; pods where none should run are
/// misscheduled.
fn compute_status(
    ds: &DaemonSet,
    nodes: &[(String, Fit)],
    daemons: &ByNode,
    collision_count: i32,
) -> DaemonSetStatus {
    let current = ds.status.clone().unwrap_or_default();
    let (mut desired, mut scheduled, mut misscheduled) = (0, 0, 0);
    let (mut ready, mut available, mut updated) = (0, 0, 0);
    for (node, fit) in nodes {
        let oldest = daemons
            .get(node)
            .and_then(|pods| pods.iter().min_by(|a, b| a.age_rank().cmp(&b.age_rank())));
        match oldest {
            _ if !fit.should_run => misscheduled += usize::from(oldest.is_some()),
            None => desired += 1,
            Some(pod) => {
                desired += 1;
                scheduled += 1;
                ready += usize::from(pod.ready);
                available += usize::from(pod.ready && pod.available);
                updated += usize::from(pod.updated);
            }
        }
    }
    DaemonSetStatus {
        desired_number_scheduled: to_i32(desired),
        current_number_scheduled: to_i32(scheduled),
        number_misscheduled: to_i32(misscheduled),
        number_ready: to_i32(ready),
        number_available: omit_zero(available),
        number_unavailable: omit_zero(desired.saturating_sub(available)),
        updated_number_scheduled: omit_zero(updated),
        observed_generation: ds.metadata.generation,
        collision_count: (collision_count > 0)
            .then_some(collision_count)
            .or(current.collision_count),
        conditions: current.conditions,
    }
}

/// A DaemonSet's ControllerRevisions as one sync sees them.
struct History {
    /// All of them, sorted oldest first.
    all: Vec<ControllerRevision>,
    /// The revision of the template.
    current_name: String,
    /// Its hash: the `controller-revision-hash` of up-to-date pods.
    hash: String,
    collision_count: i32,
}

/// The claimed pods by the node they are for; pods aimed at no node, and finished pods
/// already being deleted, are left out (upstream's `getNodesToDaemonPods`).
fn by_node(owned: &[Pod], hash: &str, min_ready: Duration, now: jiff::Timestamp) -> ByNode {
    let mut daemons = ByNode::new();
    for pod in owned {
        let Some(node) = target_node(pod) else {
            continue;
        };
        if let Some(d) =
            Daemon::of(pod, hash, min_ready, now).filter(|d| !(d.terminal && d.terminating))
        {
            daemons.entry(node).or_default().push(d);
        }
    }
    daemons
}

/// What one sync does: `manage`'s creations and deletions, or when there are none (upstream
/// waits for its changes to be observed first) and the strategy is `RollingUpdate`, the
/// rolling update's deletions.
fn decide(
    strategy: Option<&DaemonSetUpdateStrategy>,
    fits: &[(String, Fit)],
    daemons: &ByNode,
) -> Manage {
    let plan = manage(fits, daemons);
    if plan != Manage::default() || strategy.and_then(|s| s.type_.as_deref()) == Some("OnDelete") {
        return plan;
    }
    let desired: Vec<String> = fits
        .iter()
        .filter(|(_, f)| f.should_run)
        .map(|(n, _)| n.clone())
        .collect();
    let limit = strategy
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.as_ref());
    Manage {
        create_on: Vec::new(),
        delete: rolling_deletions(&desired, daemons, max_unavailable(limit, desired.len())),
    }
}

/// One sync of one DaemonSet.
struct Sync<'a> {
    client: &'a kube::Client,
    namespace: &'a str,
    name: &'a str,
}

impl Sync<'_> {
    fn sets(&self) -> Api<DaemonSet> {
        Api::namespaced(self.client.clone(), self.namespace)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), self.namespace)
    }

    fn revisions(&self) -> Api<ControllerRevision> {
        Api::namespaced(self.client.clone(), self.namespace)
    }

    /// Syncs the latest version; returns when to sync again if pods become available later.
    async fn run(&self) -> Result<Option<Duration>, SyncError> {
        let Some(ds) = self.sets().get_opt(self.name).await? else {
            return Ok(None);
        };
        // A DaemonSet being deleted is left to the garbage collector.
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let (Some(uid), Some(spec)) = (ds.metadata.uid.clone(), ds.spec.clone()) else {
            return Ok(None);
        };
        let selector = match podutil::selector(&spec.selector) {
            Ok(s) => s,
            Err(e) => {
                tracing::info!(daemonset = %self.name, error = %e.0,
                    "daemonset controller: invalid selector, ignoring");
                return Ok(None);
            }
        };
        let history = self.history(&ds, &spec, &uid).await?;
        let fits = self.fits(&spec).await?;
        let pods = self.pods().list(&ListParams::default()).await?.items;
        let matches = |pod: &Pod| selector.matches_map(pod.labels());
        let (owned, failed_claims) =
            podutil::claim_objects(&self.pods(), pods, &controller_ref(&ds), matches).await;

        let now = jiff::Timestamp::now();
        let min_ready = podutil::min_ready(spec.min_ready_seconds);
        let mut daemons = by_node(&owned, &history.hash, min_ready, now);
        let plan = decide(spec.update_strategy.as_ref(), &fits, &daemons);
        self.act(&ds, &plan, &owned, &history.hash).await?;
        for pods in daemons.values_mut() {
            pods.retain(|p| !plan.delete.contains(&p.name));
        }
        let status = compute_status(&ds, &fits, &daemons, history.collision_count);
        self.update_status(ds, status).await?;
        let limit = history::history_limit(spec.revision_history_limit);
        self.prune(&history, &owned, limit).await?;

        if failed_claims > 0 {
            return Err(SyncError::Claims(failed_claims));
        }
        Ok(podutil::next_available(&owned, min_ready, now))
    }

    /// The DaemonSet's revisions, with the one of its template made if needed (upstream's
    /// `constructHistory`).
    async fn history(
        &self,
        ds: &DaemonSet,
        spec: &DaemonSetSpec,
        uid: &str,
    ) -> Result<History, SyncError> {
        let mut all = history::owned(&self.revisions(), uid).await?;
        let mut collision_count = ds
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let proto = history::Proto::new(ds, &spec.template, REVISION_LABEL);
        let current =
            history::ensure(&self.revisions(), &all, &proto, &mut collision_count).await?;
        let current_name = current.metadata.name.clone().unwrap_or_default();
        // Revisions made here carry their hash; upstream falls back to the name for others.
        let hash = current
            .labels()
            .get(REVISION_LABEL)
            .cloned()
            .unwrap_or_else(|| current_name.clone());
        all.retain(|r| r.metadata.name.as_ref() != Some(&current_name));
        all.push(current);
        history::sort(&mut all);
        Ok(History {
            all,
            current_name,
            hash,
            collision_count,
        })
    }

    /// Every Node object with whether the daemon pod belongs there.
    async fn fits(&self, spec: &DaemonSetSpec) -> Result<Vec<(String, Fit)>, SyncError> {
        let nodes = Api::<Node>::all(self.client.clone())
            .list(&ListParams::default())
            .await?
            .items;
        let probe = with_daemon_tolerations(spec.template.spec.clone().unwrap_or_default());
        Ok(nodes
            .iter()
            .filter_map(|n| Some((n.metadata.name.clone()?, node_fit(n, &probe))))
            .collect())
    }

    async fn act(
        &self,
        ds: &DaemonSet,
        plan: &Manage,
        owned: &[Pod],
        hash: &str,
    ) -> Result<(), SyncError> {
        for node in &plan.create_on {
            let pod = daemon_pod(ds, node, hash);
            let created = self.pods().create(&PostParams::default(), &pod).await?;
            tracing::debug!(daemonset = %self.name, pod = %created.name_any(), %node,
                "daemonset controller: created pod");
        }
        for name in &plan.delete {
            if let Some(pod) = owned.iter().find(|p| p.name_any() == *name) {
                podutil::delete_pod(&self.pods(), pod).await?;
                tracing::debug!(daemonset = %self.name, pod = %name,
                    "daemonset controller: deleted pod");
            }
        }
        Ok(())
    }

    /// Deletes the revisions beyond `limit` that neither the template nor a pod uses
    /// (upstream's `cleanupHistory`).
    async fn prune(&self, history: &History, owned: &[Pod], limit: usize) -> Result<(), SyncError> {
        let hashes: HashSet<&String> = owned
            .iter()
            .filter_map(|p| p.labels().get(REVISION_LABEL))
            .collect();
        let live: HashSet<String> = history
            .all
            .iter()
            .filter(|r| {
                r.metadata.name.as_ref() == Some(&history.current_name)
                    || r.labels()
                        .get(REVISION_LABEL)
                        .is_some_and(|h| hashes.contains(h))
            })
            .filter_map(|r| r.metadata.name.clone())
            .collect();
        let old = history::to_prune(&history.all, &live, limit);
        history::delete(&self.revisions(), &old).await?;
        Ok(())
    }

    /// Writes `status` if it differs from the current one.
    async fn update_status(
        &self,
        mut ds: DaemonSet,
        status: DaemonSetStatus,
    ) -> Result<(), SyncError> {
        if ds.status.as_ref() == Some(&status) {
            return Ok(());
        }
        ds.status = Some(status);
        self.sets()
            .replace_status(self.name, &PostParams::default(), &ds)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn node(value: Value) -> Node {
        serde_json::from_value(value).unwrap()
    }

    fn named(name: &str) -> Node {
        node(json!({"metadata": {"name": name, "labels": {"disk": "ssd", "cores": "8"}}}))
    }

    fn tainted(effect: &str, key: &str) -> Node {
        node(json!({"metadata": {"name": "t"},
            "spec": {"taints": [{"key": key, "value": "v", "effect": effect}]}}))
    }

    fn spec(value: Value) -> PodSpec {
        with_daemon_tolerations(serde_json::from_value(value).unwrap())
    }

    fn plain() -> PodSpec {
        spec(json!({"containers": []}))
    }

    const RUN: Fit = Fit {
        should_run: true,
        should_continue: true,
    };

    fn daemon(name: &str, updated: bool, available: bool) -> Daemon {
        Daemon {
            name: name.into(),
            scheduled: true,
            created: None,
            terminal: false,
            terminating: false,
            updated,
            ready: available,
            available,
        }
    }

    fn placed(pairs: Vec<(&str, Daemon)>) -> ByNode {
        let mut out = ByNode::new();
        for (node, d) in pairs {
            out.entry(node.to_owned()).or_default().push(d);
        }
        out
    }

    fn fits(names: &[&str]) -> Vec<(String, Fit)> {
        names.iter().map(|n| ((*n).to_owned(), RUN)).collect()
    }

    #[test]
    fn nodes_are_eligible_by_selector_affinity_and_taints() {
        assert_eq!(node_fit(&named("a"), &plain()), RUN);
        let ssd = spec(json!({"containers": [], "nodeSelector": {"disk": "ssd"}}));
        assert_eq!(node_fit(&named("a"), &ssd), RUN);
        let hdd = spec(json!({"containers": [], "nodeSelector": {"disk": "hdd"}}));
        assert_eq!(node_fit(&named("a"), &hdd), NO_FIT);
        let elsewhere = spec(json!({"containers": [], "nodeName": "b"}));
        assert_eq!(node_fit(&named("a"), &elsewhere), NO_FIT);
        let affinity = |terms: Value| {
            spec(json!({"containers": [], "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}))
        };
        let big = affinity(json!([{"matchExpressions": [
            {"key": "cores", "operator": "Gt", "values": ["4"]}]}]));
        assert_eq!(node_fit(&named("a"), &big), RUN);
        let only_b = affinity(json!([{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["b"]}]}]));
        assert_eq!(node_fit(&named("a"), &only_b), NO_FIT);
        assert_eq!(node_fit(&named("b"), &only_b), RUN);
        assert_eq!(node_fit(&named("a"), &affinity(json!([{}]))), NO_FIT);

        let keep = Fit {
            should_run: false,
            should_continue: true,
        };
        assert_eq!(node_fit(&tainted("NoSchedule", "gpu"), &plain()), keep);
        assert_eq!(node_fit(&tainted("NoExecute", "gpu"), &plain()), NO_FIT);
        assert_eq!(node_fit(&tainted("PreferNoSchedule", "gpu"), &plain()), RUN);
        // Cordoned nodes run daemons: the unschedulable taint is tolerated.
        let cordoned = tainted("NoSchedule", "node.kubernetes.io/unschedulable");
        assert_eq!(node_fit(&cordoned, &plain()), RUN);
        let tolerant = spec(json!({"containers": [],
            "tolerations": [{"key": "gpu", "operator": "Exists"}]}));
        assert_eq!(node_fit(&tainted("NoExecute", "gpu"), &tolerant), RUN);
    }

    #[test]
    fn tolerations_match_taints_as_upstream() {
        let taint = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let t = |v: Value| -> Toleration { serde_json::from_value(v).unwrap() };
        assert!(tolerates(&t(json!({"key": "k", "value": "v"})), &taint));
        assert!(tolerates(
            &t(json!({"key": "k", "operator": "Equal", "value": "v",
            "effect": "NoSchedule"})),
            &taint
        ));
        assert!(!tolerates(&t(json!({"key": "k", "value": "w"})), &taint));
        assert!(tolerates(&t(json!({"operator": "Exists"})), &taint));
        assert!(!tolerates(
            &t(json!({"operator": "Exists", "effect": "NoExecute"})),
            &taint
        ));
        assert!(!tolerates(
            &t(json!({"key": "other", "operator": "Exists"})),
            &taint
        ));
        assert!(!tolerates(
            &t(json!({"key": "k", "operator": "Bogus"})),
            &taint
        ));
    }

    #[test]
    fn node_selector_requirements_cover_every_operator() {
        let r = |op: &str, values: &[&str]| NodeSelectorRequirement {
            key: "k".into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
        };
        assert!(requirement_matches(&r("In", &["a", "b"]), Some("b")));
        assert!(!requirement_matches(&r("In", &["a"]), None));
        assert!(requirement_matches(&r("NotIn", &["a"]), None));
        assert!(!requirement_matches(&r("NotIn", &["a"]), Some("a")));
        assert!(requirement_matches(&r("Exists", &[]), Some("")));
        assert!(requirement_matches(&r("DoesNotExist", &[]), None));
        assert!(requirement_matches(&r("Lt", &["10"]), Some("9")));
        assert!(!requirement_matches(&r("Gt", &["10"]), Some("10")));
        assert!(!requirement_matches(&r("Gt", &["x"]), Some("11")));
        assert!(!requirement_matches(&r("Near", &[]), Some("a")));
    }

    #[test]
    fn daemon_pods_are_pinned_to_their_node() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "ns", "uid": "ds-uid"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "a"}], "hostNetwork": true,
                    "tolerations": [{"key": "node.kubernetes.io/not-ready",
                                     "operator": "Exists", "effect": "NoExecute"}],
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                        {"nodeSelectorTerms": [{"matchExpressions": [
                            {"key": "disk", "operator": "Exists"}]}]}}}}}}
        }))
        .unwrap();
        let pod = daemon_pod(&ds, "node-a", "abc123");
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("agent-"));
        assert_eq!(pod.metadata.name, None);
        assert_eq!(pod.labels().get("app").map(String::as_str), Some("agent"));
        assert_eq!(
            pod.labels().get(REVISION_LABEL).map(String::as_str),
            Some("abc123")
        );
        let owner = podutil::controller_of(&pod.metadata).unwrap();
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("DaemonSet", "ds-uid")
        );
        assert_eq!(target_node(&pod).as_deref(), Some("node-a"));
        let spec = pod.spec.as_ref().unwrap();
        let terms = &spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1, "the template's terms are replaced");
        let tolerations = spec.tolerations.as_deref().unwrap();
        assert_eq!(
            tolerations.len(),
            7,
            "no duplicate; network-unavailable for hostNetwork"
        );
        let mut bound = pod.clone();
        bound.spec.get_or_insert_default().node_name = Some("node-b".into());
        assert_eq!(target_node(&bound).as_deref(), Some("node-b"));
        assert_eq!(target_node(&Pod::default()), None);
    }

    #[test]
    fn manage_creates_missing_and_deletes_extra_failed_and_misplaced_pods() {
        let mut failed = daemon("failed", true, false);
        failed.terminal = true;
        let mut older = daemon("older", true, true);
        older.created = Some(jiff::Timestamp::UNIX_EPOCH);
        let mut newer = daemon("newer", true, true);
        newer.created = Some(jiff::Timestamp::now());
        let daemons = placed(vec![
            ("b", failed),
            ("c", newer),
            ("c", older),
            ("d", daemon("misplaced", true, true)),
            ("gone", daemon("orphaned", true, true)),
        ]);
        let keep = Fit {
            should_run: false,
            should_continue: true,
        };
        let nodes = vec![
            ("a".to_owned(), RUN),
            ("b".to_owned(), RUN),
            ("c".to_owned(), RUN),
            ("d".to_owned(), NO_FIT),
            ("e".to_owned(), keep),
        ];
        let plan = manage(&nodes, &daemons);
        assert_eq!(plan.create_on, ["a"]);
        assert_eq!(plan.delete, ["failed", "newer", "misplaced", "orphaned"]);
        let settled = placed(vec![("a", daemon("p", true, true))]);
        assert_eq!(manage(&fits(&["a"]), &settled), Manage::default());
        assert_eq!(
            manage(&[("a".to_owned(), keep)], &settled),
            Manage::default()
        );
    }

    #[test]
    fn rolling_updates_respect_max_unavailable() {
        let old = placed(vec![
            ("a", daemon("pa", false, true)),
            ("b", daemon("pb", false, true)),
            ("c", daemon("pc", false, true)),
        ]);
        let nodes = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert_eq!(rolling_deletions(&nodes, &old, 1), ["pa"]);
        assert_eq!(rolling_deletions(&nodes, &old, 2), ["pa", "pb"]);
        let mut progressing = old.clone();
        progressing.insert("a".into(), vec![daemon("new-a", true, false)]);
        assert!(rolling_deletions(&nodes, &progressing, 1).is_empty());
        progressing.insert("a".into(), vec![daemon("new-a", true, true)]);
        assert_eq!(rolling_deletions(&nodes, &progressing, 1), ["pb"]);
        let mut broken = old.clone();
        broken.insert("c".into(), vec![daemon("pc", false, false)]);
        assert_eq!(
            rolling_deletions(&nodes, &broken, 1),
            ["pc"],
            "unavailable old pods go"
        );
        let missing = placed(vec![("b", daemon("pb", false, true))]);
        assert!(rolling_deletions(&nodes[..2], &missing, 1).is_empty());
    }

    #[test]
    fn a_sync_rolls_only_once_nothing_else_is_to_do() {
        let nodes = fits(&["a", "b"]);
        let old = placed(vec![
            ("a", daemon("pa", false, true)),
            ("b", daemon("pb", false, true)),
        ]);
        let rolling: DaemonSetUpdateStrategy =
            serde_json::from_value(json!({"type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "100%"}}))
            .unwrap();
        let on_delete: DaemonSetUpdateStrategy =
            serde_json::from_value(json!({"type": "OnDelete"})).unwrap();
        assert_eq!(decide(Some(&rolling), &nodes, &old).delete, ["pa", "pb"]);
        assert_eq!(decide(None, &nodes, &old).delete, ["pa"]);
        assert_eq!(decide(Some(&on_delete), &nodes, &old), Manage::default());
        let missing = placed(vec![("a", daemon("pa", false, true))]);
        let plan = decide(Some(&rolling), &nodes, &missing);
        assert_eq!(
            (plan.create_on, plan.delete),
            (vec!["b".to_owned()], vec![])
        );
    }

    #[test]
    fn pods_are_grouped_by_their_target_node() {
        let pod = |name: &str, node: Option<&str>, extra: Value| -> Pod {
            let mut v = json!({"metadata": {"name": name, "labels": {REVISION_LABEL: "h1"}},
                "spec": {"containers": [], "nodeName": node}});
            if let (Some(m), Value::Object(e)) = (v["metadata"].as_object_mut(), extra) {
                m.extend(e);
            }
            serde_json::from_value(v).unwrap()
        };
        let mut finished = pod(
            "done",
            Some("a"),
            json!({"deletionTimestamp": "2024-01-01T00:00:00Z"}),
        );
        finished.status = Some(serde_json::from_value(json!({"phase": "Failed"})).unwrap());
        let owned = [
            pod("pa", Some("a"), json!({})),
            pod("stray", None, json!({})),
            finished,
            pod("pb", Some("b"), json!({"labels": {REVISION_LABEL: "h0"}})),
        ];
        let grouped = by_node(&owned, "h1", Duration::ZERO, jiff::Timestamp::now());
        let names: Vec<(&str, Vec<&str>, bool)> = grouped
            .iter()
            .map(|(n, ps)| {
                (
                    n.as_str(),
                    ps.iter().map(|p| p.name.as_str()).collect(),
                    ps[0].updated,
                )
            })
            .collect();
        assert_eq!(names, [("a", vec!["pa"], true), ("b", vec!["pb"], false)]);
    }

    #[test]
    fn max_unavailable_defaults_and_percentages() {
        assert_eq!(max_unavailable(None, 5), 1);
        assert_eq!(max_unavailable(Some(&IntOrString::Int(3)), 5), 3);
        assert_eq!(max_unavailable(Some(&IntOrString::Int(0)), 5), 1);
        assert_eq!(max_unavailable(Some(&IntOrString::Int(0)), 0), 0);
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(max_unavailable(Some(&pct("25%")), 5), 2);
        assert_eq!(max_unavailable(Some(&pct("100%")), 4), 4);
        assert_eq!(max_unavailable(Some(&pct("lots")), 4), 1);
    }

    #[test]
    fn status_counts_nodes_as_upstream() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "agent", "generation": 2},
            "spec": {"selector": {}, "template": {}}
        }))
        .unwrap();
        let mut unbound = daemon("young", true, false);
        unbound.scheduled = false;
        let daemons = placed(vec![
            ("a", daemon("pa", true, true)),
            ("b", daemon("pb", false, true)),
            ("b", unbound),
            ("c", daemon("pc", true, false)),
            ("x", daemon("px", true, true)),
        ]);
        let mut nodes = fits(&["a", "b", "c", "d"]);
        nodes.push(("x".to_owned(), NO_FIT));
        let status = compute_status(&ds, &nodes, &daemons, 0);
        assert_eq!(status.desired_number_scheduled, 4);
        assert_eq!(status.current_number_scheduled, 3);
        assert_eq!(status.number_misscheduled, 1);
        assert_eq!(status.number_ready, 2);
        assert_eq!(status.number_available, Some(2));
        assert_eq!(status.number_unavailable, Some(2));
        assert_eq!(
            status.updated_number_scheduled,
            Some(2),
            "the bound pod counts on b"
        );
        assert_eq!(status.observed_generation, Some(2));
        assert_eq!(status.collision_count, None);
        assert_eq!(
            compute_status(&ds, &nodes, &daemons, 2).collision_count,
            Some(2)
        );
    }
}

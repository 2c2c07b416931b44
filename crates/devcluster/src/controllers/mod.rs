//! The controller-manager half of devcluster: what kube-controller-manager does on a real
//! cluster, run in-process as ordinary API clients (kube-rs over HTTP, with watches), so the
//! API server sees the same requests a real controller makes. Each controller can be switched
//! off in [`ControllerOptions`]; tests can then drive the objects themselves.

pub mod daemonsets;
pub mod deployments;
pub mod endpoints;
pub mod gc;
mod history;
pub mod pods;
mod podutil;
pub mod replicasets;
pub mod statefulsets;
mod workqueue;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Which controllers run.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Garbage collector: ownerReferences (background, foreground, orphan).
    pub garbage_collector: bool,
    /// Simulated scheduler and kubelet: binds pods to a node and reports them running.
    pub pods: bool,
    /// The IPv4 network (address, prefix length) pod IPs are allocated from.
    pub pod_ip_pool: (std::net::Ipv4Addr, u8),
    /// How long after binding a pod becomes running and ready.
    pub pod_ready_after: std::time::Duration,
    /// ReplicaSet controller: keeps `spec.replicas` pods, adopts and releases pods.
    pub replicasets: bool,
    /// Deployment controller: ReplicaSets per pod template, rolling updates, status.
    pub deployments: bool,
    /// StatefulSet controller: ordinal pods `name-<n>`, ordered updates, status.
    pub statefulsets: bool,
    /// DaemonSet controller: one pod per Node object.
    pub daemonsets: bool,
    /// Endpoints and EndpointSlice controllers: Service backends from ready pods.
    pub endpoints: bool,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        let pods = pods::Config::default();
        ControllerOptions {
            garbage_collector: true,
            pods: true,
            pod_ip_pool: pods.ip_pool,
            pod_ready_after: pods.ready_after,
            replicasets: true,
            deployments: true,
            statefulsets: true,
            daemonsets: true,
            endpoints: true,
        }
    }
}

impl ControllerOptions {
    /// No controller runs (an API server only).
    pub fn none() -> Self {
        ControllerOptions {
            garbage_collector: false,
            pods: false,
            replicasets: false,
            deployments: false,
            statefulsets: false,
            daemonsets: false,
            endpoints: false,
            ..ControllerOptions::default()
        }
    }
}

/// Starts a controller that needs only a client and the shutdown signal.
type Spawn = fn(kube::Client, CancellationToken) -> JoinHandle<()>;

/// Starts the enabled controllers against `client`; they stop when `shutdown` is cancelled.
pub fn start(
    client: kube::Client,
    options: &ControllerOptions,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    if options.garbage_collector {
        tasks.push(tokio::spawn(gc::run(client.clone(), shutdown.clone())));
    }
    if options.pods {
        let config = pods::Config {
            ip_pool: options.pod_ip_pool,
            ready_after: options.pod_ready_after,
        };
        tasks.push(tokio::spawn(pods::run(
            client.clone(),
            config,
            shutdown.clone(),
        )));
    }
    let simple: [(bool, Spawn); 5] = [
        (options.replicasets, |c, s| {
            tokio::spawn(replicasets::run(c, s))
        }),
        (options.deployments, |c, s| {
            tokio::spawn(deployments::run(c, s))
        }),
        (options.statefulsets, |c, s| {
            tokio::spawn(statefulsets::run(c, s))
        }),
        (options.daemonsets, |c, s| {
            tokio::spawn(daemonsets::run(c, s))
        }),
        (options.endpoints, |c, s| tokio::spawn(endpoints::run(c, s))),
    ];
    for (enabled, spawn) in simple {
        if enabled {
            tasks.push(spawn(client.clone(), shutdown.clone()));
        }
    }
    tasks
}

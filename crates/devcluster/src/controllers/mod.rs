//! The controller-manager half of devcluster: what kube-controller-manager does on a real
//! cluster, run in-process as ordinary API clients (kube-rs over HTTP, with watches), so the
//! API server sees the same requests a real controller makes. Each controller can be switched
//! off in [`ControllerOptions`]; tests can then drive the objects themselves.

pub mod gc;
pub mod pods;
pub mod replicasets;

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
            ..ControllerOptions::default()
        }
    }
}

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
    if options.replicasets {
        tasks.push(tokio::spawn(replicasets::run(client, shutdown)));
    }
    tasks
}

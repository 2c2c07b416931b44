//! The controller-manager half of devcluster: what kube-controller-manager does on a real
//! cluster, run in-process as ordinary API clients (kube-rs over HTTP, with watches), so the
//! API server sees the same requests a real controller makes. Each controller can be switched
//! off in [`ControllerOptions`]; tests can then drive the objects themselves.

pub mod gc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Which controllers run.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Garbage collector: ownerReferences (background, foreground, orphan).
    pub garbage_collector: bool,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            garbage_collector: true,
        }
    }
}

impl ControllerOptions {
    /// No controller runs (an API server only).
    pub fn none() -> Self {
        ControllerOptions {
            garbage_collector: false,
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
        tasks.push(tokio::spawn(gc::run(client, shutdown)));
    }
    tasks
}

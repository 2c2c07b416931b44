//! The DaemonSet controller of kube-controller-manager (being written).

use tokio_util::sync::CancellationToken;

/// Runs the DaemonSet controller until `shutdown` is cancelled.
pub async fn run(client: kube::Client, shutdown: CancellationToken) {
    let _ = client;
    shutdown.cancelled().await;
}

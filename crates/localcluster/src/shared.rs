//! One cluster for a whole test binary.
//!
//! Every `#[tokio::test]` has a runtime of its own that ends with the test, so the shared
//! cluster is started on a thread of its own whose runtime lives as long as the process
//! (devcluster's server tasks run there). Tests get a `&'static Cluster` and make their own
//! clients; the exit handler of [`crate::workdir`] stops it when the binary ends.

use std::sync::OnceLock;

use crate::{Cluster, Error, Flavor, Options};

static SHARED: tokio::sync::OnceCell<Result<&'static Cluster, String>> =
    tokio::sync::OnceCell::const_new();

/// The test binary's cluster, of the flavour `KUBECREW_CLUSTER` names, started on first use
/// with `options` (later calls get the same cluster whatever they pass).
///
/// Panics with the reason when the cluster cannot be started: every test that needs it fails
/// with the same readable message.
pub async fn shared(options: impl FnOnce() -> Options) -> &'static Cluster {
    let result = SHARED
        .get_or_init(|| async {
            let options = options();
            let (tx, rx) = tokio::sync::oneshot::channel();
            let started = std::thread::Builder::new()
                .name("localcluster-shared".into())
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    runtime.block_on(async move {
                        let started = match Flavor::from_env() {
                            Ok(flavor) => Cluster::start(flavor, options).await,
                            Err(e) => Err(e),
                        };
                        let _ = tx.send(
                            started
                                .map(|c| &*Box::leak(Box::new(c)))
                                .map_err(|e: Error| e.to_string()),
                        );
                        // Keep serving devcluster's tasks for the rest of the process.
                        std::future::pending::<()>().await;
                    });
                });
            match started {
                Ok(_) => rx
                    .await
                    .unwrap_or_else(|_| Err("the cluster thread ended before starting".into())),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
    match result {
        Ok(cluster) => {
            announce(cluster);
            cluster
        }
        Err(e) => panic!("the test cluster could not be started: {e}"),
    }
}

/// Says once, on standard error, which cluster the binary's tests run on.
fn announce(cluster: &Cluster) {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        use std::io::Write;
        let started = cluster
            .real()
            .map(|r| format!(" (ready in {:.1?})", r.started_in()))
            .unwrap_or_default();
        let _ = writeln!(
            std::io::stderr(),
            "localcluster: tests run on the {} cluster at {}{started}",
            cluster.flavor().name(),
            cluster.url()
        );
    });
}

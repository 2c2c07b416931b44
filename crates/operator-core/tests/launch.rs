//! `launch()`: what an operator binary does at start — kubeconfig resolution as kube-rs does
//! it, the admin server, leader election — and releasing the Lease on shutdown.

use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use operator_core::cli::CommonArgs;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_serves_admin_and_holds_then_releases_the_lease() {
    let cluster = devcluster::DevCluster::start(Default::default())
        .await
        .unwrap();
    // SAFETY: this test binary has this single test, so no other thread reads the environment
    // while it is written.
    unsafe {
        std::env::set_var("KUBECONFIG", cluster.kubeconfig_path());
        std::env::set_var("POD_NAME", "launch-test-0");
    }
    let cli = Cli::try_parse_from([
        "op",
        "--leader-elect",
        "--metrics-addr",
        "127.0.0.1:0",
        "--lease-namespace",
        "default",
    ])
    .unwrap();
    let launched = operator_core::launch("launched", &cli.common)
        .await
        .unwrap();
    let base = format!("http://{}", launched.admin_addr);
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503,
        "not ready before the reconcile loop has listed anything"
    );

    let leases: Api<Lease> = Api::namespaced(cluster.client(), "default");
    testkit::eventually(
        "the Lease names this replica",
        Duration::from_secs(20),
        || async {
            let lease = leases.get_opt("launched").await.ok()??;
            (lease.spec?.holder_identity? == "launch-test-0").then_some(())
        },
    )
    .await;

    launched.runtime.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(20), launched.finish())
        .await
        .expect("leader election finishes after shutdown");
    let lease = leases.get("launched").await.unwrap();
    assert_eq!(
        lease
            .spec
            .and_then(|s| s.holder_identity)
            .unwrap_or_default(),
        "",
        "released for a successor"
    );
    cluster.shutdown().await;
}

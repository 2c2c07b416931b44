//! What every operator binary does before its reconcile loop: build the client, the shared
//! runtime, the admin server, leader election (with `--leader-elect`) and signal handling.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::cli::CommonArgs;
use crate::leader::{LeaderElectionConfig, LeaderElector};
use crate::{Error, Runtime};

/// A started operator process.
pub struct Launched {
    /// The shared services; pass to [`crate::run`].
    pub runtime: Arc<Runtime>,
    /// Where the admin server listens.
    pub admin_addr: SocketAddr,
    elector: Option<JoinHandle<()>>,
}

impl Launched {
    /// Waits for leader election to release the Lease after shutdown, so a successor takes
    /// over at once. Call after the reconcile loop returned.
    pub async fn finish(self) {
        if let Some(elector) = self.elector {
            let _ = elector.await;
        }
    }
}

/// The identity of this replica in leader election: the pod name, else host name and pid.
fn identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        format!("{host}-{}", std::process::id())
    })
}

/// What every operator's `main` does first: with the `crd` subcommand, prints `crds` and
/// returns `None`; otherwise installs tracing and [`launch`]es.
pub async fn start(
    name: &str,
    args: &CommonArgs,
    command: Option<crate::cli::Command>,
    crds: &[k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition],
) -> Result<Option<Launched>, Error> {
    if command == Some(crate::cli::Command::Crd) {
        print!("{}", crate::crd::to_yaml(crds)?);
        return Ok(None);
    }
    crate::cli::init_tracing(args.log_format, &args.log_level).map_err(Error::Config)?;
    launch(name, args).await.map(Some)
}

/// Starts the services of operator `name` as configured by `args`.
pub async fn launch(name: &str, args: &CommonArgs) -> Result<Launched, Error> {
    let client = kube::Client::try_default().await?;
    let mut runtime = Runtime::new(client.clone(), name);
    let shutdown = runtime.shutdown.clone();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("signal received: shutting down");
            shutdown.cancel();
        }
    });
    let mut elector_task = None;
    if args.leader_elect {
        let config = LeaderElectionConfig::new(
            args.lease_namespace(),
            args.lease_name.clone().unwrap_or_else(|| name.to_owned()),
            identity(),
        );
        let elector =
            LeaderElector::new(client, config).map_err(|e| Error::Config(e.to_string()))?;
        runtime = runtime.with_leader(elector.subscribe());
        let shutdown = shutdown.clone();
        elector_task = Some(tokio::spawn(async move {
            if let Err(e) = elector.run(shutdown).await {
                tracing::warn!(error = %e, "leader election ended with an error");
            }
        }));
    }
    let runtime = Arc::new(runtime);
    let admin_addr = crate::admin::serve(
        args.metrics_addr,
        runtime.metrics.clone(),
        runtime.readiness.clone(),
        shutdown,
    )
    .await?;
    tracing::info!(operator = name, admin = %admin_addr, leader_elect = args.leader_elect, "started");
    Ok(Launched {
        runtime,
        admin_addr,
        elector: elector_task,
    })
}

async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

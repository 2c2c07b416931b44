//! `cargo xtask cluster up`: a cluster for a person to use, until Ctrl-C or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use localcluster::{Cluster, Flavor, Options};

/// What `cluster up` was asked for.
pub struct UpOptions {
    /// Real control plane or devcluster.
    pub flavor: Flavor,
    /// Where to write the administrator's kubeconfig (besides the cluster's directory).
    pub kubeconfig: Option<PathBuf>,
    /// Where to keep the cluster's files (kept afterwards); temporary when `None`.
    pub dir: Option<PathBuf>,
}

/// Starts the cluster, prints how to reach it, and stops every process at Ctrl-C or SIGTERM.
pub fn up(options: UpOptions) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let started = std::time::Instant::now();
        eprintln!(
            "xtask: starting the {} cluster{}",
            options.flavor.name(),
            if options.flavor == Flavor::Real {
                " (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok); the first run builds them from Go modules"
            } else {
                ""
            }
        );
        let cluster = Cluster::start(
            options.flavor,
            Options {
                dir: options.dir.clone(),
                kubeconfig: options.kubeconfig.clone(),
                ..Options::default()
            },
        )
        .await
        .context("starting the cluster")?;
        let kubeconfig = options
            .kubeconfig
            .clone()
            .unwrap_or_else(|| cluster.kubeconfig_path().to_owned());
        eprintln!(
            "xtask: the {} cluster is up at {} (in {:.1?})",
            cluster.flavor().name(),
            cluster.url(),
            started.elapsed()
        );
        if let Some(real) = cluster.real() {
            eprintln!(
                "xtask: its files and every component's log: {}",
                real.dir().display()
            );
            eprintln!(
                "xtask: its kubectl: {}",
                cluster.kubectl()?.display()
            );
        }
        eprintln!("xtask: Ctrl-C (or SIGTERM) stops it");
        println!("export KUBECONFIG={}", kubeconfig.display());
        wait_for_stop().await?;
        eprintln!("xtask: stopping the cluster");
        cluster.shutdown().await;
        eprintln!("xtask: stopped");
        Ok(())
    })
}

async fn wait_for_stop() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

//! `devcluster serve`: runs the in-process cluster as a process, for end-to-end tests, the
//! demo and kubectl.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "devcluster",
    version,
    about = "In-process Kubernetes API server for tests and demos"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API until SIGTERM or SIGINT.
    Serve {
        /// Port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 0, env = "DEVCLUSTER_PORT")]
        port: u16,
        /// Where to write the kubeconfig.
        #[arg(long, env = "DEVCLUSTER_KUBECONFIG")]
        kubeconfig: PathBuf,
        /// Run no controllers (garbage collection and the workload controllers): an API server only.
        #[arg(long, env = "DEVCLUSTER_NO_CONTROLLERS")]
        no_controllers: bool,
        /// Log level filter (tracing syntax).
        #[arg(long, default_value = "info", env = "DEVCLUSTER_LOG")]
        log_level: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            port,
            kubeconfig,
            no_controllers,
            log_level,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(log_level))
                .with_writer(std::io::stderr)
                .init();
            let cluster = devcluster::DevCluster::start(devcluster::Options {
                port,
                kubeconfig: Some(kubeconfig.clone()),
                controllers: if no_controllers {
                    devcluster::controllers::ControllerOptions::none()
                } else {
                    Default::default()
                },
                ..Default::default()
            })
            .await
            .context("starting devcluster")?;
            // One line on stdout, so scripts can wait for it and read the URL.
            println!(
                "devcluster serving at {} (kubeconfig {})",
                cluster.url(),
                kubeconfig.display()
            );
            wait_for_signal().await?;
            cluster.shutdown().await;
            Ok(())
        }
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}

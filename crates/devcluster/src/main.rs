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
        /// Authorizer: `always-allow` (everyone may do anything) or `rbac` (Roles and bindings
        /// decide for every user but the administrator of the kubeconfig).
        #[arg(long, value_enum, default_value_t = AuthorizationMode::AlwaysAllow, env = "DEVCLUSTER_AUTHORIZATION")]
        authorization: AuthorizationMode,
        /// Append every request's audit entry to this file as a JSON line.
        #[arg(long, env = "DEVCLUSTER_AUDIT_LOG")]
        audit_log: Option<PathBuf>,
        /// Log level filter (tracing syntax).
        #[arg(long, default_value = "info", env = "DEVCLUSTER_LOG")]
        log_level: String,
    },
}

/// `--authorization` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum AuthorizationMode {
    /// Everyone may do anything.
    AlwaysAllow,
    /// Roles and bindings decide, for every user but the kubeconfig's administrator.
    Rbac,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            port,
            kubeconfig,
            no_controllers,
            authorization,
            audit_log,
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
                authorization: match authorization {
                    AuthorizationMode::AlwaysAllow => devcluster::Authorization::AlwaysAllow,
                    AuthorizationMode::Rbac => devcluster::Authorization::Rbac,
                },
                audit_log,
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

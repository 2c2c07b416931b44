//! `nes-controller`: injects the nes-agent sidecar into labelled StatefulSets' pods.
#![recursion_limit = "256"]

use std::collections::BTreeSet;
use std::sync::Arc;

use clap::Parser;
use nes_controller::inject::SidecarSettings;
use nes_controller::template::{Context, OPERATOR};
use operator_core::cli::{Command, CommonArgs};

/// Puts the nes-agent sidecar into the pod template of StatefulSets labelled
/// `network-config/runtime-ip: "true"` (template mode).
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: CommonArgs,
    /// The nes-agent image.
    #[arg(long, env = "NES_AGENT_IMAGE", default_value_t = SidecarSettings::default().image)]
    agent_image: String,
    /// The agent's API port.
    #[arg(long, env = "NES_AGENT_PORT", default_value_t = 7470)]
    agent_port: u16,
    /// The Secret (in each workload's namespace) holding the agent's write token (key `token`).
    #[arg(
        long,
        env = "NES_AGENT_TOKEN_SECRET",
        default_value = "nes-agent-token"
    )]
    agent_token_secret: String,
    /// CPU request of the sidecar.
    #[arg(long, default_value = "10m")]
    agent_cpu_request: String,
    /// Memory request of the sidecar.
    #[arg(long, default_value = "16Mi")]
    agent_memory_request: String,
    /// Memory limit of the sidecar.
    #[arg(long, default_value = "64Mi")]
    agent_memory_limit: String,
    /// Namespaces never injected (repeatable); the controller's own should be one.
    #[arg(long = "exclude-namespace", default_values_t = ["kube-system".to_owned()])]
    exclude_namespaces: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let Some(launched) = operator_core::start(OPERATOR, &cli.common, cli.command, &[]).await?
    else {
        return Ok(());
    };
    let ctx = Arc::new(Context {
        runtime: launched.runtime.clone(),
        sidecar: SidecarSettings {
            image: cli.agent_image,
            port: cli.agent_port,
            token_secret: cli.agent_token_secret,
            cpu_request: cli.agent_cpu_request,
            memory_request: cli.agent_memory_request,
            memory_limit: cli.agent_memory_limit,
        },
        excluded_namespaces: cli.exclude_namespaces.into_iter().collect::<BTreeSet<_>>(),
    });
    let settings = cli.common.settings();
    nes_controller::operator::run(ctx, cli.common.namespace.as_deref(), settings).await;
    launched.finish().await;
    Ok(())
}

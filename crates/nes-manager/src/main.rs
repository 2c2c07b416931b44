//! `nes-manager`: pushes NetworkConfigurations to the pods' nes-agents and delivers
//! NetworkCare reports.
#![recursion_limit = "256"]

use std::time::Duration;

use clap::Parser;
use kube::CustomResourceExt;
use nes_api::crd::{NetworkCare, NetworkConfiguration};
use nes_manager::{DeliverySettings, ManagerSettings, OPERATOR};
use operator_core::backoff::Policy;
use operator_core::cli::{Command, CommonArgs};

/// Applies each pod's NetworkConfiguration through its nes-agent, reports the results, and
/// delivers the pods' network changes to NetworkCare callbacks.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: CommonArgs,
    /// The agents' API port.
    #[arg(long, env = "NES_AGENT_PORT", default_value_t = 7470)]
    agent_port: u16,
    /// The Secret (in each pod's namespace) holding the agents' write token (key `token`).
    #[arg(
        long,
        env = "NES_AGENT_TOKEN_SECRET",
        default_value = "nes-agent-token"
    )]
    agent_token_secret: String,
    /// Timeout of each agent call, e.g. `10s`.
    #[arg(long, env = "NES_AGENT_TIMEOUT", default_value = "10s", value_parser = duration)]
    agent_timeout: Duration,
    /// Attempts per NetworkCare report before it is counted as a failure.
    #[arg(long, env = "NES_DELIVERY_ATTEMPTS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    delivery_attempts: u32,
    /// Delay before the first retry of a report; doubles per attempt.
    #[arg(long, env = "NES_DELIVERY_BACKOFF", default_value = "200ms", value_parser = duration)]
    delivery_backoff: Duration,
    /// Longest delay between retries of a report.
    #[arg(long, env = "NES_DELIVERY_MAX_BACKOFF", default_value = "5s", value_parser = duration)]
    delivery_max_backoff: Duration,
    /// Timeout of one callback POST.
    #[arg(long, env = "NES_DELIVERY_TIMEOUT", default_value = "5s", value_parser = duration)]
    delivery_timeout: Duration,
    /// Reports queued per callback; more are dropped and counted as failures.
    #[arg(long, env = "NES_DELIVERY_QUEUE", default_value_t = 1024)]
    delivery_queue: usize,
}

fn duration(text: &str) -> Result<Duration, String> {
    operator_core::duration::parse(text)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let crds = [NetworkConfiguration::crd(), NetworkCare::crd()];
    let Some(launched) = operator_core::start(OPERATOR, &cli.common, cli.command, &crds).await?
    else {
        return Ok(());
    };
    let defaults = DeliverySettings::default();
    let settings = ManagerSettings {
        namespace: cli.common.namespace.clone(),
        agent_port: cli.agent_port,
        agent_token_secret: cli.agent_token_secret,
        agent_timeout: cli.agent_timeout,
        delivery: DeliverySettings {
            attempts: cli.delivery_attempts,
            backoff: Policy {
                initial: cli.delivery_backoff,
                max: cli.delivery_max_backoff.max(cli.delivery_backoff),
                ..defaults.backoff
            },
            timeout: cli.delivery_timeout,
            queue: cli.delivery_queue.max(1),
        },
        reconcile: cli.common.settings(),
        ..ManagerSettings::default()
    };
    nes_manager::run(launched.runtime.clone(), settings).await?;
    launched.finish().await;
    Ok(())
}

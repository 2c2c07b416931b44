//! `appconfig-restarter`: rolling restarts of the workloads that use a changed ConfigMap or
//! Secret.
#![recursion_limit = "256"]

use clap::Parser;
use kube::CustomResourceExt;
use operator_core::cli::{Command, CommonArgs};

use appconfig_restarter::reconcile::OPERATOR;
use appconfig_restarter::resource::AppConfig;

/// Restarts the workloads that use a changed ConfigMap or Secret.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let Some(launched) =
        operator_core::start(OPERATOR, &cli.common, cli.command, &[AppConfig::crd()]).await?
    else {
        return Ok(());
    };
    let settings = cli.common.settings();
    appconfig_restarter::operator::run(
        launched.runtime.clone(),
        cli.common.namespace.as_deref(),
        settings,
    )
    .await?;
    launched.finish().await;
    Ok(())
}

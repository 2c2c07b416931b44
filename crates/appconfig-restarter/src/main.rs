//! `appconfig-restarter`: rolling restarts of the workloads that use a changed ConfigMap or
//! Secret.
#![recursion_limit = "256"]

use clap::{Parser, Subcommand};
use kube::CustomResourceExt;
use operator_core::cli::CommonArgs;

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

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML.
    Crd,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Crd) = cli.command {
        print!("{}", operator_core::crd::to_yaml(&[AppConfig::crd()])?);
        return Ok(());
    }
    operator_core::cli::init_tracing(cli.common.log_format, &cli.common.log_level)
        .map_err(anyhow::Error::msg)?;
    let launched = operator_core::launch(OPERATOR, &cli.common).await?;
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

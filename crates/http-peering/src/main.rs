//! `http-peering`: runs the peer server for each KindCustomHttp.
#![recursion_limit = "256"]

use clap::{Parser, Subcommand};
use kube::CustomResourceExt;
use operator_core::cli::CommonArgs;

use http_peering::reconcile::OPERATOR;
use http_peering::resource::KindCustomHttp;

/// Keeps a Deployment, Service and ConfigMap of the http-peer server per KindCustomHttp.
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
        print!("{}", operator_core::crd::to_yaml(&[KindCustomHttp::crd()])?);
        return Ok(());
    }
    operator_core::cli::init_tracing(cli.common.log_format, &cli.common.log_level)
        .map_err(anyhow::Error::msg)?;
    let launched = operator_core::launch(OPERATOR, &cli.common).await?;
    let settings = cli.common.settings();
    http_peering::operator::run(
        launched.runtime.clone(),
        cli.common.namespace.as_deref(),
        settings,
    )
    .await;
    launched.finish().await;
    Ok(())
}

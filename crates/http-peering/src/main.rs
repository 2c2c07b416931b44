//! `http-peering`: runs the peer server for each KindCustomHttp.
#![recursion_limit = "256"]

use clap::Parser;
use kube::CustomResourceExt;
use operator_core::cli::{Command, CommonArgs};

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let Some(launched) =
        operator_core::start(OPERATOR, &cli.common, cli.command, &[KindCustomHttp::crd()]).await?
    else {
        return Ok(());
    };
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

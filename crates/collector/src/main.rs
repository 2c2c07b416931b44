//! `collector`: installs and maintains collector releases for tenants.
#![recursion_limit = "256"]

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kube::CustomResourceExt;
use operator_core::cli::CommonArgs;

use collector::reconcile::OPERATOR;
use collector::resource::Collector;

/// Installs a collector release in the tenant's namespace for every Collector.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: CommonArgs,
    /// YAML file mapping `spec.cluster` values to values overlays (e.g. another image
    /// repository for a dev cluster).
    #[arg(long, env = "COLLECTOR_CLUSTER_VALUES")]
    cluster_values: Option<PathBuf>,
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
        print!("{}", operator_core::crd::to_yaml(&[Collector::crd()])?);
        return Ok(());
    }
    operator_core::cli::init_tracing(cli.common.log_format, &cli.common.log_level)
        .map_err(anyhow::Error::msg)?;
    let overlays = match &cli.cluster_values {
        Some(path) => collector::operator::load_overlays(path).context("--cluster-values")?,
        None => Default::default(),
    };
    let launched = operator_core::launch(OPERATOR, &cli.common).await?;
    let settings = cli.common.settings();
    collector::operator::run(launched.runtime.clone(), overlays, settings).await;
    launched.finish().await;
    Ok(())
}

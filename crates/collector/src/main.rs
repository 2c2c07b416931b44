//! `collector`: installs and maintains collector releases for tenants.
#![recursion_limit = "256"]

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use kube::CustomResourceExt;
use operator_core::cli::{Command, CommonArgs};

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.command.is_none()
        && let Some(namespace) = &cli.common.namespace
    {
        // Watching one namespace would silently skip every Collector: they are cluster-scoped.
        anyhow::bail!(
            "--namespace {namespace} (or KUBECREW_NAMESPACE) does not apply to collector: \
             Collectors are cluster-scoped and each names its tenant namespace; remove it"
        );
    }
    let overlays = match &cli.cluster_values {
        Some(path) => collector::operator::load_overlays(path).context("--cluster-values")?,
        None => Default::default(),
    };
    let Some(launched) =
        operator_core::start(OPERATOR, &cli.common, cli.command, &[Collector::crd()]).await?
    else {
        return Ok(());
    };
    let settings = cli.common.settings();
    collector::operator::run(launched.runtime.clone(), overlays, settings).await;
    launched.finish().await;
    Ok(())
}

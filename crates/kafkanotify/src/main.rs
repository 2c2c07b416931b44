//! `kafkanotify`: publishes EdgeApplication migrations to Kafka.
#![recursion_limit = "256"]

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kube::CustomResourceExt;
use operator_core::cli::CommonArgs;

use kafkanotify::operator::{self, NotifyArgs};
use kafkanotify::reconcile::{HookOutcome, OPERATOR};
use kafkanotify::resource::EdgeApplication;

/// Publishes edge application migrations to Kafka as CloudEvents.
#[derive(Parser)]
#[command(version, subcommand_negates_reqs = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    notify: NotifyArgs,
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
        print!(
            "{}",
            operator_core::crd::to_yaml(&[EdgeApplication::crd()])?
        );
        return Ok(());
    }
    operator_core::cli::init_tracing(cli.common.log_format, &cli.common.log_level)
        .map_err(anyhow::Error::msg)?;
    let launched = operator_core::launch(OPERATOR, &cli.common).await?;
    let ctx = operator::context(launched.runtime.clone(), &cli.notify, failpoint())
        .context("invalid Kafka configuration")?;
    let settings = cli.common.settings();
    operator::run(ctx, cli.common.namespace.as_deref(), settings).await;
    launched.finish().await;
    Ok(())
}

/// `KAFKANOTIFY_FAILPOINT=exit-after-publish` makes the process exit between the broker's
/// acknowledgement and the status write, for fault-injection tests of the real binary.
fn failpoint() -> Option<kafkanotify::reconcile::AfterPublish> {
    match std::env::var("KAFKANOTIFY_FAILPOINT").ok()?.as_str() {
        "exit-after-publish" => Some(Box::new(|_| {
            tracing::error!("failpoint exit-after-publish: exiting");
            std::process::exit(86)
        })),
        "crash-after-publish" => Some(Box::new(|_| HookOutcome::Crash)),
        other => {
            tracing::warn!(failpoint = other, "unknown KAFKANOTIFY_FAILPOINT ignored");
            None
        }
    }
}

//! `kafkanotify`: publishes EdgeApplication migrations to Kafka.
#![recursion_limit = "256"]

use anyhow::Context as _;
use clap::Parser;
use kube::CustomResourceExt;
use operator_core::cli::{Command, CommonArgs};

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let Some(launched) = operator_core::start(
        OPERATOR,
        &cli.common,
        cli.command,
        &[EdgeApplication::crd()],
    )
    .await?
    else {
        return Ok(());
    };
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

//! `kafkanotify-client`: follows an application's location on the notification topic.
//!
//! Prints one JSON line per location change and, with `--exec`, runs a command with the new
//! location in its environment (how an edge client reconnects).

use anyhow::Context as _;
use clap::Parser;
use kafkanotify::follow::{self, AppSelector, Change, StartAt};
use kafkanotify::kafka::KafkaArgs;
use tokio_util::sync::CancellationToken;

/// Follows edge application migrations on a Kafka topic.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// The topic the operator publishes to.
    #[arg(
        long,
        env = "KAFKANOTIFY_TOPIC",
        default_value = "carla-server-migration"
    )]
    topic: String,
    /// Follow one application, `namespace/appId`; a bare appId is accepted when only one
    /// namespace announces it on the topic. All applications when not set.
    #[arg(long, env = "KAFKANOTIFY_APP_ID")]
    app_id: Option<AppSelector>,
    /// Where to start reading (in partitions the state file has no position for).
    #[arg(long, value_enum, default_value_t = StartAt::Latest)]
    from: StartAt,
    /// Keep the position in each partition and the last known locations here (written
    /// atomically after each record), resume from it, and print the saved location of the
    /// followed application at start, before any new change.
    #[arg(long, env = "KAFKANOTIFY_STATE_FILE")]
    state_file: Option<std::path::PathBuf>,
    /// Run this shell command on each change, with KAFKANOTIFY_NAMESPACE, KAFKANOTIFY_APP_ID, KAFKANOTIFY_EVENT,
    /// KAFKANOTIFY_EDGE_NODE_ID, KAFKANOTIFY_HOST, KAFKANOTIFY_PORT and KAFKANOTIFY_PROTOCOL
    /// set (empty after a removal). Changes wait for it to finish, so they stay in order.
    #[arg(long)]
    exec: Option<String>,
    /// Log filter (logs go to stderr; stdout carries the changes).
    #[arg(long, env = "KAFKANOTIFY_LOG_LEVEL", default_value = "warn")]
    log_level: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber_init(&cli.log_level)?;
    let connection = cli.kafka.connection()?;
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
        }
    });
    let app_id = match cli.app_id.clone() {
        Some(selector) => {
            // An ambiguous bare appId would make the client follow whichever namespace
            // announces first: refuse, and say which names would work.
            let resolved = follow::resolve(&connection, &cli.topic, selector)
                .await
                .context("reading the topic to find the application's namespace")?;
            Some(resolved.map_err(|e| anyhow::anyhow!(e))?)
        }
        None => None,
    };
    if let Some(path) = &cli.state_file {
        // What the client knew when it stopped, first: a restarted edge client learns where
        // its server was before it learns where the server went since.
        for (app, location) in follow::saved_locations(path, &cli.topic, app_id.as_ref())? {
            let line = serde_json::json!({
                "namespace": app.namespace,
                "appId": app.app_id,
                "event": "current",
                "location": location,
            });
            print_line(&line.to_string());
        }
    }
    let config = follow::Config {
        topic: cli.topic.clone(),
        app_id,
        start: cli.from,
        state_file: cli.state_file.clone(),
    };
    let exec = cli.exec.clone();
    follow::follow(connection, config, shutdown, |change| {
        let exec = exec.clone();
        async move {
            report(&change);
            if let Some(command) = exec {
                run(&command, &change).await;
            }
        }
    })
    .await;
    Ok(())
}

fn tracing_subscriber_init(level: &str) -> anyhow::Result<()> {
    operator_core::cli::init_tracing(operator_core::cli::LogFormat::Text, level)
        .map_err(anyhow::Error::msg)
}

fn report(change: &Change) {
    match serde_json::to_string(change) {
        Ok(line) => print_line(&line),
        Err(e) => tracing::error!(error = %e, "cannot encode a change"),
    }
}

fn print_line(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) is not worth dying for.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn run(command: &str, change: &Change) {
    let location = change.location.as_ref();
    let endpoint = location.map(|l| &l.endpoint);
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("KAFKANOTIFY_NAMESPACE", &change.namespace)
        .env("KAFKANOTIFY_APP_ID", &change.app_id)
        .env("KAFKANOTIFY_EVENT", change.event.as_str())
        .env(
            "KAFKANOTIFY_EDGE_NODE_ID",
            location
                .map(|l| l.edge_node_id.as_str())
                .unwrap_or_default(),
        )
        .env(
            "KAFKANOTIFY_HOST",
            endpoint.map(|e| e.host.as_str()).unwrap_or_default(),
        )
        .env(
            "KAFKANOTIFY_PORT",
            endpoint.map(|e| e.port.to_string()).unwrap_or_default(),
        )
        .env(
            "KAFKANOTIFY_PROTOCOL",
            endpoint
                .map(|e| serde_json::to_value(e.protocol).ok())
                .and_then(|v| v.and_then(|v| v.as_str().map(str::to_owned)))
                .unwrap_or_default(),
        )
        .status()
        .await;
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => tracing::warn!(status = %s, "--exec command failed"),
        Err(e) => tracing::warn!(error = %e, "--exec command could not start"),
    }
}

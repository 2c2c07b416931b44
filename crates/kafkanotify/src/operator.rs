//! The operator process: flags, and the reconcile loop on operator-core.

use std::sync::Arc;

use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::watcher;
use operator_core::{Runtime, Settings};

use crate::event::ContentMode;
use crate::kafka::{KafkaArgs, Publisher, TopicLayout};
use crate::metrics::PublishMetrics;
use crate::reconcile::{self, AfterPublish, Context};
use crate::resource::EdgeApplication;
use crate::topics::TopicPolicy;

/// The operator's own flags.
#[derive(Debug, Clone, clap::Args)]
pub struct NotifyArgs {
    /// Kafka connection.
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Topic of EdgeApplications without `spec.topic`.
    #[arg(
        long,
        env = "KAFKANOTIFY_TOPIC",
        default_value = "carla-server-migration"
    )]
    pub topic: String,
    /// Partitions of a topic the operator creates because it is missing.
    #[arg(long, env = "KAFKANOTIFY_TOPIC_PARTITIONS", default_value_t = 3,
          value_parser = clap::value_parser!(i32).range(1..))]
    pub topic_partitions: i32,
    /// Replication factor of a topic the operator creates.
    #[arg(long, env = "KAFKANOTIFY_TOPIC_REPLICATION_FACTOR", default_value_t = 1,
          value_parser = clap::value_parser!(i16).range(1..))]
    pub topic_replication_factor: i16,
    /// Topics `spec.topic` may name besides `--topic`, comma separated.
    #[arg(long, env = "KAFKANOTIFY_ALLOWED_TOPICS", value_delimiter = ',')]
    pub allowed_topics: Vec<String>,
    /// A regular expression of further allowed topics (matching the whole name).
    #[arg(long, env = "KAFKANOTIFY_ALLOWED_TOPICS_REGEX")]
    pub allowed_topics_regex: Option<String>,
    /// Create a missing topic on first publish; `false` leaves topics to the Kafka admins.
    #[arg(long, env = "KAFKANOTIFY_CREATE_TOPICS", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub create_topics: bool,
    /// How long a deleted EdgeApplication waits for the broker to take its `removed`
    /// notice before it goes without (a Warning event and a metric say so); `0s`: for ever.
    #[arg(long, env = "KAFKANOTIFY_REMOVAL_TIMEOUT", default_value = "15m",
          value_parser = operator_core::duration::parse)]
    pub removal_timeout: std::time::Duration,
    /// CloudEvents content mode of the records: `binary` (attributes in `ce_` headers) or
    /// `structured` (the whole event as JSON in the value).
    #[arg(long, env = "KAFKANOTIFY_CONTENT_MODE", value_enum, default_value_t = ContentMode::Binary)]
    pub content_mode: ContentMode,
}

/// Why the operator cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The Kafka flags do not work.
    #[error(transparent)]
    Config(#[from] crate::kafka::ConfigError),
    /// The metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// `--allowed-topics-regex` is not a regular expression.
    #[error("--allowed-topics-regex: {0}")]
    AllowedTopics(#[from] regex::Error),
}

/// Builds the reconciler's context from the flags.
pub fn context(
    runtime: Arc<Runtime>,
    args: &NotifyArgs,
    after_publish: Option<AfterPublish>,
) -> Result<Arc<Context>, StartError> {
    let connection = args.kafka.connection()?;
    let layout = TopicLayout {
        partitions: args.topic_partitions,
        replication_factor: args.topic_replication_factor,
        create: args.create_topics,
    };
    let topics = TopicPolicy::new(
        args.topic.clone(),
        args.allowed_topics.iter().cloned(),
        args.allowed_topics_regex.as_deref(),
    )?;
    let metrics = PublishMetrics::register(runtime.metrics.registry())?;
    Ok(Arc::new(Context {
        runtime,
        publisher: Publisher::new(connection, layout).with_content_mode(args.content_mode),
        topics,
        removal_timeout: (!args.removal_timeout.is_zero()).then_some(args.removal_timeout),
        metrics,
        after_publish,
    }))
}

/// Runs the reconcile loop until the runtime shuts down; `namespace` limits the watch.
pub async fn run(ctx: Arc<Context>, namespace: Option<&str>, settings: Settings) {
    let client = ctx.runtime.client.clone();
    let api: Api<DeserializeGuard<EdgeApplication>> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    operator_core::run(
        ctx.runtime.clone(),
        api,
        watcher::Config::default(),
        |controller| controller,
        reconcile::reconcile,
        ctx,
        settings,
    )
    .await;
}

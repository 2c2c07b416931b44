//! Fixtures of the kafkanotify tests: the test binary's cluster (the real control plane in CI)
//! with the CRD and a namespace per test, a tansu broker per test, the operator in-process
//! watching the test's namespace, and readers of the topic.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use kafkanotify::event::Notification;
use kafkanotify::kafka::{Connection, KafkaArgs};
use kafkanotify::operator::{self, NotifyArgs};
use kafkanotify::reconcile::{AfterPublish, OPERATOR};
use kafkanotify::resource::EdgeApplication;
use kube::{Client, CustomResourceExt};
use localcluster::TestEnv;
use operator_core::backoff::Policy;
use operator_core::{Runtime, Settings};
use rskafka::client::partition::UnknownTopicHandling;
use rskafka::record::RecordAndOffset;
use serde_json::json;
use testkit::kafka::Broker;
use tokio::task::JoinHandle;

pub const TIMEOUT: Duration = Duration::from_secs(60);
pub const TOPIC: &str = "carla-server-migration";

/// This test's namespace on the binary's cluster, with the EdgeApplication CRD established.
/// `env.client()` defaults to the namespace, and so does every helper here.
pub async fn env() -> TestEnv {
    let env = TestEnv::new("edge").await;
    env.install_crd(&EdgeApplication::crd()).await;
    env
}

/// The `source` of the CloudEvents about EdgeApplication `name` in `namespace`.
pub fn source(namespace: &str, name: &str) -> String {
    format!("/apis/kafkanotify.kubecrew.io/v1alpha1/namespaces/{namespace}/edgeapplications/{name}")
}

pub async fn broker() -> Broker {
    Broker::start().await.expect("tansu starts")
}

pub fn kafka_args(broker: &Broker) -> KafkaArgs {
    KafkaArgs {
        brokers: vec![broker.bootstrap()],
        client_id: "kafkanotify-test".into(),
        tls: false,
        tls_ca_file: None,
        tls_cert_file: None,
        tls_key_file: None,
        sasl_mechanism: None,
        sasl_username: None,
        sasl_password_file: None,
        sasl_password_env: None,
        timeout: Duration::from_secs(2),
    }
}

pub fn connection(broker: &Broker) -> Connection {
    kafka_args(broker).connection().expect("valid connection")
}

/// An operator running in this process.
pub struct Operator {
    pub runtime: Arc<Runtime>,
    task: JoinHandle<()>,
}

impl Operator {
    pub async fn start(
        client: Client,
        broker: &Broker,
        after_publish: Option<AfterPublish>,
    ) -> Self {
        Self::start_with(client, broker, after_publish, |_| {}).await
    }

    /// Starts an operator whose flags `configure` changes first.
    pub async fn start_with(
        client: Client,
        broker: &Broker,
        after_publish: Option<AfterPublish>,
        configure: impl FnOnce(&mut NotifyArgs),
    ) -> Self {
        // Only the test's namespace: tests share the cluster.
        let namespace = client.default_namespace().to_owned();
        let runtime = Arc::new(Runtime::new(client, OPERATOR));
        let mut args = NotifyArgs {
            kafka: kafka_args(broker),
            topic: TOPIC.into(),
            topic_partitions: 3,
            topic_replication_factor: 1,
            allowed_topics: Vec::new(),
            allowed_topics_regex: None,
            create_topics: true,
            removal_timeout: Duration::from_secs(3600),
            content_mode: kafkanotify::event::ContentMode::Binary,
        };
        configure(&mut args);
        let ctx = operator::context(runtime.clone(), &args, after_publish).expect("context");
        let settings = Settings {
            concurrency: 4,
            requeue_after: Duration::from_secs(300),
            backoff: Policy {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(2),
                factor: 2.0,
                jitter: 0.0,
            },
        };
        let task =
            tokio::spawn(async move { operator::run(ctx, Some(&namespace), settings).await });
        Operator { runtime, task }
    }

    /// Stops the operator and waits for its loop to end.
    pub async fn stop(self) {
        self.runtime.shutdown.cancel();
        let _ = tokio::time::timeout(TIMEOUT, self.task).await;
    }

    pub fn metrics(&self) -> String {
        self.runtime.metrics.render()
    }
}

pub fn app(name: &str, node: &str, host: &str) -> EdgeApplication {
    serde_json::from_value(json!({
        "apiVersion": "kafkanotify.kubecrew.io/v1alpha1",
        "kind": "EdgeApplication",
        "metadata": {"name": name},
        "spec": {"edgeNodeId": node, "endpoint": {"host": host, "port": 2000}}
    }))
    .expect("valid EdgeApplication")
}

/// Reads the records of one partition of the default topic from `offset`, up to `count`.
pub async fn records(
    broker: &Broker,
    partition: i32,
    offset: i64,
    count: usize,
) -> Vec<RecordAndOffset> {
    records_in(broker, TOPIC, partition, offset, count).await
}

/// Reads the records of one partition of `topic` from `offset`, up to `count`.
pub async fn records_in(
    broker: &Broker,
    topic: &str,
    partition: i32,
    offset: i64,
    count: usize,
) -> Vec<RecordAndOffset> {
    let client = connection(broker).connect().await.expect("connects");
    let pc = client
        .partition_client(topic, partition, UnknownTopicHandling::Retry)
        .await
        .expect("partition client");
    let mut out = Vec::new();
    let mut next = offset;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while out.len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {count} records arrived in partition {partition}",
            out.len()
        );
        // The fetch itself waits (up to 200 ms) for records to arrive.
        if let Ok((records, _)) = pc.fetch_records(next, 1..1_000_000, 200).await {
            for r in records {
                next = r.offset + 1;
                out.push(r);
            }
        }
    }
    out.truncate(count);
    out
}

pub fn decode(record: &RecordAndOffset) -> Notification {
    Notification::from_record(&record.record).expect("a notification")
}

/// The topics the broker has.
pub async fn topics(broker: &Broker) -> Vec<String> {
    let client = connection(broker).connect().await.expect("connects");
    client
        .list_topics()
        .await
        .expect("topics listed")
        .into_iter()
        .map(|t| t.name)
        .collect()
}

/// Waits until `name` has a condition `type_` with `status`, and returns it.
pub async fn condition(
    client: &Client,
    name: &str,
    type_: &str,
    status: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let api: kube::Api<EdgeApplication> = kube::Api::default_namespaced(client.clone());
    testkit::eventually(&format!("{name} {type_}={status}"), TIMEOUT, || async {
        let found = api.get(name).await.ok()?.status?.conditions;
        found
            .into_iter()
            .find(|c| c.type_ == type_ && c.status == status)
    })
    .await
}

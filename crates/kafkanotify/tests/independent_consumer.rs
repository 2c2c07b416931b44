//! A Kafka client nobody here wrote reads what the operator publishes: the Python
//! `confluent-kafka` package (librdkafka) consumes the topic with a consumer group and checks
//! the CloudEvents headers, the key and the value.

mod common;

use std::process::Stdio;

use common::*;
use kafkanotify::resource::EdgeApplication;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use testkit::eventually;

const CONSUMER: &str = r#"
import json, sys
from confluent_kafka import Consumer

bootstrap, topic, wanted = sys.argv[1], sys.argv[2], int(sys.argv[3])
consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": "kafkanotify-independent-consumer",
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
})
consumer.subscribe([topic])
seen = []
for _ in range(600):
    msg = consumer.poll(0.1)
    if msg is None:
        continue
    if msg.error():
        print("error: %s" % msg.error(), file=sys.stderr)
        continue
    seen.append({
        "key": msg.key().decode(),
        "headers": {k: v.decode() for k, v in (msg.headers() or [])},
        "value": json.loads(msg.value()),
        "partition": msg.partition(),
        "offset": msg.offset(),
    })
    if len(seen) == wanted:
        break
consumer.close()
print(json.dumps(seen))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_reads_the_cloudevents() {
    let python = tokio::task::spawn_blocking(testkit::tools::python)
        .await
        .expect("install task")
        .expect("Python client installed");
    let env = env().await;
    let broker = broker().await;
    let client = env.client();
    let operator = Operator::start(client.clone(), &broker, None).await;
    let api: Api<EdgeApplication> = Api::default_namespaced(client.clone());
    let mut app = app("carla", "node-a", "10.0.0.1");
    app.spec.app_id = Some("carla-server".into());
    app.spec.endpoint.protocol = kafkanotify::resource::Protocol::Udp;
    let created = api
        .create(&PostParams::default(), &app)
        .await
        .expect("created");
    let notified = eventually("placed and acknowledged", TIMEOUT, || async {
        api.get("carla").await.ok()?.status?.notified
    })
    .await;

    let out = tokio::process::Command::new(python)
        .args(["-c", CONSUMER, &broker.bootstrap(), TOPIC, "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("python runs");
    assert!(
        out.status.success(),
        "consumer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON from the consumer");
    assert_eq!(
        seen.len(),
        1,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record = &seen[0];
    let key = format!("{}/carla-server", env.namespace());
    assert_eq!(record["key"], key.as_str());
    assert_eq!(record["partition"], notified.partition);
    assert_eq!(record["offset"], notified.offset);
    let uid = created.metadata.uid.expect("uid");
    assert_eq!(
        record["headers"],
        json!({
            "ce_specversion": "1.0",
            "ce_id": format!("{uid}.1.placed"),
            "ce_source": source(env.namespace(), "carla"),
            "ce_type": "io.kubecrew.kafkanotify.edgeapplication.placed",
            "ce_time": record["headers"]["ce_time"],
            "ce_subject": key,
            "content-type": "application/json",
        })
    );
    assert!(
        record["headers"]["ce_time"]
            .as_str()
            .is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok())
    );
    assert_eq!(
        record["value"],
        json!({"appId": "carla-server", "namespace": env.namespace(), "name": "carla",
               "edgeNodeId": "node-a",
               "endpoint": {"host": "10.0.0.1", "port": 2000, "protocol": "UDP"},
               "previous": null, "generation": 1})
    );
    operator.stop().await;
}

/// Runs the consumer on `topic` until it has `wanted` records (or a minute passed).
async fn consume(python: &std::path::Path, broker: &str, topic: &str, wanted: usize) -> Vec<Value> {
    let out = tokio::process::Command::new(python)
        .args(["-c", CONSUMER, broker, topic, &wanted.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .expect("python runs");
    assert!(
        out.status.success(),
        "consumer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from the consumer")
}

/// A topic change: consumers of the new topic learn where the application is (`placed`), and
/// consumers of the old one that it is gone from there (`removed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_sees_a_topic_change_on_both_topics() {
    let python = tokio::task::spawn_blocking(testkit::tools::python)
        .await
        .expect("install task")
        .expect("Python client installed");
    let env = env().await;
    let broker = broker().await;
    let client = env.client();
    let operator = Operator::start_with(client.clone(), &broker, None, |args| {
        args.allowed_topics = vec!["edge-blue".into(), "edge-green".into()];
    })
    .await;
    let api: Api<EdgeApplication> = Api::default_namespaced(client.clone());
    let mut app = app("carla", "node-a", "10.0.0.1");
    app.spec.topic = Some("edge-blue".into());
    api.create(&PostParams::default(), &app)
        .await
        .expect("created");
    eventually("placed on edge-blue", TIMEOUT, || async {
        api.get("carla")
            .await
            .ok()?
            .status?
            .notified
            .filter(|n| n.topic == "edge-blue")
    })
    .await;
    api.patch(
        "carla",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&json!({"spec": {"topic": "edge-green"}})),
    )
    .await
    .expect("topic changed");
    eventually("on edge-green, edge-blue retracted", TIMEOUT, || async {
        let status = api.get("carla").await.ok()?.status?;
        let on_green = status.notified.as_ref()?.topic == "edge-green";
        (on_green && status.retired.is_empty() && status.pending.is_none()).then_some(())
    })
    .await;

    let key = format!("{}/carla", env.namespace());
    let kind = |r: &Value| {
        r["headers"]["ce_type"]
            .as_str()
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or_default()
            .to_owned()
    };
    let blue = consume(&python, &broker.bootstrap(), "edge-blue", 2).await;
    assert_eq!(
        blue.iter().map(kind).collect::<Vec<_>>(),
        ["placed", "removed"],
        "{blue:?}"
    );
    assert!(blue.iter().all(|r| r["key"] == key.as_str()));
    assert_eq!(blue[1]["value"]["edgeNodeId"], Value::Null);
    assert_eq!(blue[1]["value"]["previous"]["edgeNodeId"], "node-a");
    let green = consume(&python, &broker.bootstrap(), "edge-green", 1).await;
    assert_eq!(green.iter().map(kind).collect::<Vec<_>>(), ["placed"]);
    assert_eq!(green[0]["key"], key.as_str());
    assert_eq!(green[0]["value"]["edgeNodeId"], "node-a");
    assert_ne!(
        blue[1]["headers"]["ce_id"], blue[0]["headers"]["ce_id"],
        "distinct events"
    );
    operator.stop().await;
}

/// `--content-mode structured`: librdkafka's consumer gets the whole CloudEvent as JSON in the
/// value (`application/cloudevents+json`), and the project's client reads it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_reads_a_structured_cloudevent() {
    let python = tokio::task::spawn_blocking(testkit::tools::python)
        .await
        .expect("install task")
        .expect("Python client installed");
    let env = env().await;
    let broker = broker().await;
    let client = env.client();
    let operator = Operator::start_with(client.clone(), &broker, None, |args| {
        args.content_mode = kafkanotify::event::ContentMode::Structured;
    })
    .await;
    let api: Api<EdgeApplication> = Api::default_namespaced(client.clone());
    let created = api
        .create(&PostParams::default(), &app("carla", "node-a", "10.0.0.1"))
        .await
        .expect("created");
    let notified = eventually("placed and acknowledged", TIMEOUT, || async {
        api.get("carla").await.ok()?.status?.notified
    })
    .await;

    let seen = consume(&python, &broker.bootstrap(), TOPIC, 1).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    let record = &seen[0];
    let key = format!("{}/carla", env.namespace());
    assert_eq!(record["key"], key.as_str());
    assert_eq!(
        record["headers"],
        json!({"content-type": "application/cloudevents+json"})
    );
    let uid = created.metadata.uid.expect("uid");
    let event = &record["value"];
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["id"], format!("{uid}.1.placed"));
    assert_eq!(event["source"], source(env.namespace(), "carla"));
    assert_eq!(
        event["type"],
        "io.kubecrew.kafkanotify.edgeapplication.placed"
    );
    assert_eq!(event["subject"], key.as_str());
    assert_eq!(event["datacontenttype"], "application/json");
    assert!(
        event["time"]
            .as_str()
            .is_some_and(|t| t.parse::<jiff::Timestamp>().is_ok())
    );
    assert_eq!(
        event["data"],
        json!({"appId": "carla", "namespace": env.namespace(), "name": "carla",
               "edgeNodeId": "node-a",
               "endpoint": {"host": "10.0.0.1", "port": 2000, "protocol": "TCP"},
               "previous": null, "generation": 1})
    );
    let ours = decode(&records(&broker, notified.partition, notified.offset, 1).await[0]);
    assert_eq!(ours.id, format!("{uid}.1.placed"));
    assert_eq!(ours.payload.edge_node_id.as_deref(), Some("node-a"));
    operator.stop().await;
}

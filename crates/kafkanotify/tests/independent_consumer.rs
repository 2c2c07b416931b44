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
    assert_eq!(record["key"], "carla-server");
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
            "ce_subject": "carla-server",
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

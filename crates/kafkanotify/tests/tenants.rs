//! Tenants sharing one operator and one broker: the same application name in two namespaces
//! is two applications (key, subject, client tracking), and a tenant cannot make the operator
//! publish to a topic its flags do not allow.

mod common;

use common::*;
use kafkanotify::event::EventKind;
use kafkanotify::follow::{self, AppSelector, Change, StartAt};
use kafkanotify::resource::{EdgeApplication, Notified};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use testkit::eventually;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn api(client: &Client) -> Api<EdgeApplication> {
    Api::default_namespaced(client.clone())
}

async fn notified_at(client: &Client, name: &str, node: &str) -> Notified {
    eventually(&format!("{name} notified at {node}"), TIMEOUT, || async {
        let app = api(client).get(name).await.ok()?;
        app.status?.notified.filter(|n| n.edge_node_id == node)
    })
    .await
}

fn header(record: &rskafka::record::RecordAndOffset, name: &str) -> String {
    String::from_utf8(record.record.headers[name].clone()).expect("UTF-8 header")
}

fn follower(
    broker: &testkit::kafka::Broker,
    app: AppSelector,
) -> (mpsc::UnboundedReceiver<Change>, CancellationToken) {
    let (tx, rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let config = follow::Config {
        topic: TOPIC.into(),
        app_id: Some(app),
        start: StartAt::Earliest,
        state_file: None,
    };
    tokio::spawn(follow::follow(
        connection(broker),
        config,
        stop.clone(),
        move |change| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(change);
            }
        },
    ));
    (rx, stop)
}

async fn next_change(rx: &mut mpsc::UnboundedReceiver<Change>) -> Change {
    tokio::time::timeout(TIMEOUT, rx.recv())
        .await
        .expect("a change arrives")
        .expect("the follower runs")
}

/// `web` in two namespaces on the default topic: two keys, two subjects; the client of one
/// never sees the other's location, and deleting one announces nothing to the other's client.
/// A bare `--app-id web` is refused with both candidates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_name_in_two_namespaces_is_two_applications() {
    let env_a = env().await;
    let env_b = env().await;
    let (a, b) = (env_a.client(), env_b.client());
    let broker = broker().await;
    let op_a = Operator::start(a.clone(), &broker, None).await;
    let op_b = Operator::start(b.clone(), &broker, None).await;
    let web_a: AppSelector = format!("{}/web", env_a.namespace())
        .parse()
        .expect("selector");
    let (mut changes, stop_follower) = follower(&broker, web_a);

    api(&a)
        .create(&PostParams::default(), &app("web", "node-a", "10.0.0.1"))
        .await
        .expect("created in a");
    let placed_a = notified_at(&a, "web", "node-a").await;
    api(&b)
        .create(&PostParams::default(), &app("web", "node-b", "10.0.0.2"))
        .await
        .expect("created in b");
    let placed_b = notified_at(&b, "web", "node-b").await;

    for (env, placed) in [(&env_a, &placed_a), (&env_b, &placed_b)] {
        let record = &records(&broker, placed.partition, placed.offset, 1).await[0];
        let key = format!("{}/web", env.namespace());
        assert_eq!(record.record.key.as_deref(), Some(key.as_bytes()));
        assert_eq!(header(record, "ce_subject"), key);
        assert_eq!(header(record, "ce_source"), source(env.namespace(), "web"));
        assert_eq!(
            placed.partition,
            kafkanotify::partitioner::partition_for(key.as_bytes(), 3)
        );
    }

    let first = next_change(&mut changes).await;
    assert_eq!(first.namespace, env_a.namespace());
    assert_eq!(
        first.location.map(|l| l.edge_node_id),
        Some("node-a".into())
    );

    // A bare appId names two applications here: the client refuses and lists them.
    let out = tokio::time::timeout(
        TIMEOUT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_kafkanotify-client"))
            .args(["--kafka-brokers", &broker.bootstrap(), "--topic", TOPIC])
            .args(["--app-id", "web"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the client exits")
    .expect("the client runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "stderr: {stderr}");
    for env in [&env_a, &env_b] {
        let candidate = format!("{}/web", env.namespace());
        assert!(
            stderr.contains(&candidate),
            "{candidate} not listed: {stderr}"
        );
    }

    api(&b)
        .delete("web", &DeleteParams::default())
        .await
        .expect("deleted in b");
    eventually("b's web is gone", TIMEOUT, || async {
        api(&b)
            .get_opt("web")
            .await
            .ok()
            .and_then(|o| o.is_none().then_some(()))
    })
    .await;
    // The sentinel: a's next change is its own migration, so neither b's placement nor b's
    // removal was reported to a's client.
    api(&a)
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"edgeNodeId": "node-c"}})),
        )
        .await
        .expect("migrated");
    let next = next_change(&mut changes).await;
    assert_eq!(next.event, EventKind::Migrated, "{next:?}");
    assert_eq!(next.previous.map(|l| l.edge_node_id), Some("node-a".into()));
    assert_eq!(next.location.map(|l| l.edge_node_id), Some("node-c".into()));
    stop_follower.cancel();
    op_a.stop().await;
    op_b.stop().await;
}

/// With `--allowed-topics-regex tenant-.*`, a resource naming `tenant-a` is published there and
/// one naming another topic is Ready=False (TopicNotAllowed) with nothing published or created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_that_is_not_allowed_is_not_used() {
    let env = env().await;
    let client = env.client();
    let broker = broker().await;
    let operator = Operator::start_with(client.clone(), &broker, None, |args| {
        args.allowed_topics_regex = Some("tenant-.*".into());
    })
    .await;
    let mut allowed = app("allowed", "node-a", "10.0.0.1");
    allowed.spec.topic = Some("tenant-a".into());
    let mut refused = app("refused", "node-a", "10.0.0.1");
    refused.spec.topic = Some("elsewhere".into());
    api(&client)
        .create(&PostParams::default(), &refused)
        .await
        .expect("created");
    api(&client)
        .create(&PostParams::default(), &allowed)
        .await
        .expect("created");

    let not_ready = condition(&client, "refused", "Ready", "False").await;
    assert_eq!(not_ready.reason, "TopicNotAllowed");
    assert!(
        not_ready.message.contains("elsewhere"),
        "{}",
        not_ready.message
    );
    let placed = notified_at(&client, "allowed", "node-a").await;
    assert_eq!(placed.topic, "tenant-a");
    let record = &records_in(&broker, "tenant-a", placed.partition, placed.offset, 1).await[0];
    assert_eq!(decode(record).kind, EventKind::Placed);

    let status = api(&client).get("refused").await.expect("get").status;
    assert_eq!(status.and_then(|s| s.notified), None, "nothing published");
    let topics = topics(&broker).await;
    assert!(
        !topics.iter().any(|t| t == "elsewhere"),
        "created: {topics:?}"
    );
    operator.stop().await;
}

/// One tenant's topic is missing (and may not be created) while another tenant migrates: the
/// failures stay with that topic (the shared connection is never reset) and the other's
/// migrations keep flowing; their latency is printed, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_topic_does_not_disturb_another_tenant() {
    let env = env().await;
    let client = env.client();
    let broker = broker().await;
    let admin = connection(&broker).connect().await.expect("connects");
    admin
        .controller_client()
        .expect("controller")
        .create_topic(TOPIC, 3, 1, 5_000)
        .await
        .expect("the default topic is pre-created");
    let operator = Operator::start_with(client.clone(), &broker, None, |args| {
        args.allowed_topics = vec!["gone".into()];
        args.create_topics = false;
    })
    .await;
    let mut stuck = app("stuck", "node-a", "10.0.0.1");
    stuck.spec.topic = Some("gone".into());
    api(&client)
        .create(&PostParams::default(), &stuck)
        .await
        .expect("created");
    api(&client)
        .create(
            &PostParams::default(),
            &app("flowing", "node-0", "10.0.0.1"),
        )
        .await
        .expect("created");
    let degraded = condition(&client, "stuck", "Degraded", "True").await;
    assert_eq!(degraded.reason, "KafkaTopicMissing");
    notified_at(&client, "flowing", "node-0").await;

    let mut latencies = Vec::new();
    for i in 1..=20 {
        let node = format!("node-{i}");
        let started = std::time::Instant::now();
        api(&client)
            .patch(
                "flowing",
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"edgeNodeId": node}})),
            )
            .await
            .expect("migrated");
        notified_at(&client, "flowing", &node).await;
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];
    eprintln!("other tenant's migration to acknowledgement: p50 {p50:?}, p99 {p99:?} (20 samples)");

    let metrics = operator.metrics();
    assert!(
        metrics.contains("kafkanotify_publish_errors_total{reason=\"KafkaTopicMissing\""),
        "{metrics}"
    );
    assert!(
        !metrics.lines().any(
            |l| l.starts_with("kubecrew_kafkanotify_connection_resets_total") && !l.ends_with(" 0")
        ),
        "a topic-level error reset the shared connection:\n{metrics}"
    );
    let status = api(&client).get("stuck").await.expect("get").status;
    assert_eq!(status.and_then(|s| s.notified), None);
    operator.stop().await;
}

//! The operator against the test cluster and a real broker (tansu): what it publishes for each change
//! of an EdgeApplication, what it does not publish, and what survives a crash and an outage.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use kafkanotify::event::EventKind;
use kafkanotify::follow::{self, Change, StartAt};
use kafkanotify::reconcile::HookOutcome;
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

/// Waits until the status records a notification for `node` and returns it.
async fn notified_at(client: &Client, name: &str, node: &str) -> Notified {
    eventually(&format!("{name} notified at {node}"), TIMEOUT, || async {
        let app = api(client).get(name).await.ok()?;
        app.status?.notified.filter(|n| n.edge_node_id == node)
    })
    .await
}

/// The Ready condition of `name` once it is True.
async fn ready(
    client: &Client,
    name: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    eventually(&format!("{name} Ready=True"), TIMEOUT, || async {
        let status = api(client).get(name).await.ok()?.status?;
        status
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready" && c.status == "True")
    })
    .await
}

async fn patch_spec(client: &Client, name: &str, spec: serde_json::Value) {
    api(client)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": spec })),
        )
        .await
        .expect("spec patched");
}

fn header(record: &rskafka::record::RecordAndOffset, name: &str) -> String {
    String::from_utf8(record.record.headers[name].clone()).expect("UTF-8 header")
}

/// Starts a follower (the client library) and returns the channel of its changes.
fn follower(
    broker: &testkit::kafka::Broker,
    start: StartAt,
) -> (mpsc::UnboundedReceiver<Change>, CancellationToken) {
    let (tx, rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let config = follow::Config {
        topic: TOPIC.into(),
        app_id: Some(follow::AppSelector::Bare("carla".into())),
        start,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_change_publishes_one_event_and_metadata_changes_none() {
    let env = env().await;
    let broker = broker().await;
    let client = env.client();
    let operator = Operator::start(client.clone(), &broker, None).await;

    let created = api(&client)
        .create(&PostParams::default(), &app("carla", "node-a", "10.0.0.1"))
        .await
        .expect("created");
    let uid = created.metadata.uid.clone().expect("uid");
    let placed = notified_at(&client, "carla", "node-a").await;
    assert_eq!(placed.topic, TOPIC);
    let record = &records(&broker, placed.partition, placed.offset, 1).await[0];
    assert_eq!(header(record, "ce_specversion"), "1.0");
    assert_eq!(header(record, "ce_id"), placed.event_id);
    assert_eq!(header(record, "ce_id"), format!("{uid}.1.placed"));
    assert_eq!(
        header(record, "ce_source"),
        source(env.namespace(), "carla")
    );
    assert_eq!(
        header(record, "ce_type"),
        "io.kubecrew.kafkanotify.edgeapplication.placed"
    );
    let key = format!("{}/carla", env.namespace());
    assert_eq!(header(record, "ce_subject"), key);
    assert_eq!(header(record, "content-type"), "application/json");
    assert!(header(record, "ce_time").parse::<jiff::Timestamp>().is_ok());
    assert_eq!(record.record.key.as_deref(), Some(key.as_bytes()));
    assert_eq!(
        placed.partition,
        kafkanotify::partitioner::partition_for(key.as_bytes(), 3),
        "the key's murmur2 partition"
    );
    let value: serde_json::Value =
        serde_json::from_slice(record.record.value.as_deref().expect("value")).expect("JSON");
    assert_eq!(
        value,
        json!({"appId": "carla", "namespace": env.namespace(), "name": "carla",
               "edgeNodeId": "node-a",
               "endpoint": {"host": "10.0.0.1", "port": 2000, "protocol": "TCP"},
               "previous": null, "generation": 1})
    );
    let ready = ready(&client, "carla").await;
    assert_eq!(ready.reason, "Notified");

    // Metadata and status changes publish nothing: the next real change lands right after
    // the placement in the same partition.
    api(&client)
        .patch(
            "carla",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"team": "edge"},
                                               "annotations": {"note": "x"}}})),
        )
        .await
        .expect("metadata patched");
    api(&client)
        .patch_status(
            "carla",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"observedGeneration": 1}})),
        )
        .await
        .expect("status patched");

    patch_spec(&client, "carla", json!({"edgeNodeId": "node-b"})).await;
    let migrated = notified_at(&client, "carla", "node-b").await;
    assert_eq!(migrated.partition, placed.partition);
    assert_eq!(
        migrated.offset,
        placed.offset + 1,
        "nothing published in between"
    );
    let record = &records(&broker, migrated.partition, migrated.offset, 1).await[0];
    let n = decode(record);
    assert_eq!(n.kind, EventKind::Migrated);
    assert_eq!(n.payload.generation, 2);
    assert_eq!(
        n.payload.previous.as_ref().map(|p| p.edge_node_id.as_str()),
        Some("node-a")
    );

    patch_spec(
        &client,
        "carla",
        json!({"endpoint": {"host": "10.0.0.9", "port": 2001}}),
    )
    .await;
    let moved = eventually("endpoint change notified", TIMEOUT, || async {
        let n = api(&client).get("carla").await.ok()?.status?.notified?;
        (n.endpoint.host == "10.0.0.9").then_some(n)
    })
    .await;
    assert_eq!(moved.offset, migrated.offset + 1);
    let n = decode(&records(&broker, moved.partition, moved.offset, 1).await[0]);
    assert_eq!(n.kind, EventKind::EndpointChanged);
    assert_eq!(n.payload.endpoint.map(|e| e.port), Some(2001));

    api(&client)
        .delete("carla", &DeleteParams::default())
        .await
        .expect("deleted");
    eventually("the resource is gone", TIMEOUT, || async {
        api(&client)
            .get_opt("carla")
            .await
            .ok()
            .and_then(|o| o.is_none().then_some(()))
    })
    .await;
    let n = decode(&records(&broker, moved.partition, moved.offset + 1, 1).await[0]);
    assert_eq!(n.kind, EventKind::Removed);
    assert_eq!(n.id, format!("{uid}.removed"));
    assert_eq!(n.payload.edge_node_id, None);
    assert_eq!(
        n.payload.previous.map(|p| p.endpoint.host),
        Some("10.0.0.9".to_owned())
    );

    let metrics = operator.metrics();
    for (kind, count) in [
        ("placed", 1),
        ("migrated", 1),
        ("endpoint-changed", 1),
        ("removed", 1),
    ] {
        let line = format!(
            "kubecrew_kafkanotify_events_published_total{{type=\"{kind}\",operator=\"kafkanotify\"}} {count}"
        );
        assert!(metrics.contains(&line), "missing {line} in\n{metrics}");
    }
    operator.stop().await;
}

/// The operator dies after the broker acknowledged a migration but before recording it: the
/// next operator publishes the same event again (same id), and the client reports it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_publishing_republishes_the_same_event_id() {
    let env = env().await;
    let broker = broker().await;
    let client = env.client();
    let (mut changes, stop_follower) = follower(&broker, StartAt::Earliest);

    let operator = Operator::start(client.clone(), &broker, None).await;
    api(&client)
        .create(&PostParams::default(), &app("carla", "node-a", "10.0.0.1"))
        .await
        .expect("created");
    let placed = notified_at(&client, "carla", "node-a").await;
    assert_eq!(next_change(&mut changes).await.event, EventKind::Placed);
    operator.stop().await;

    // An operator that "dies" right after its first acknowledged publication.
    let crashed = Arc::new(AtomicBool::new(false));
    let shutdown = CancellationToken::new();
    let hook = {
        let crashed = crashed.clone();
        let shutdown = shutdown.clone();
        Box::new(move |_: &kafkanotify::event::Notification| {
            crashed.store(true, Ordering::SeqCst);
            shutdown.cancel();
            HookOutcome::Crash
        })
    };
    let doomed = Operator::start(client.clone(), &broker, Some(hook)).await;
    let doomed_runtime = doomed.runtime.clone();
    tokio::spawn(async move {
        shutdown.cancelled().await;
        doomed_runtime.shutdown.cancel();
    });
    patch_spec(&client, "carla", json!({"edgeNodeId": "node-b"})).await;
    eventually("the operator crashed after publishing", TIMEOUT, || async {
        crashed.load(Ordering::SeqCst).then_some(())
    })
    .await;
    doomed.stop().await;
    let status = api(&client).get("carla").await.expect("get").status;
    assert_eq!(
        status.and_then(|s| s.notified).map(|n| n.edge_node_id),
        Some("node-a".to_owned()),
        "the crash happened before the status write"
    );

    let operator = Operator::start(client.clone(), &broker, None).await;
    let migrated = notified_at(&client, "carla", "node-b").await;
    // The doomed operator may have produced more than one copy before its shutdown took
    // effect (its pending-status write triggers another reconcile at once): every copy up to
    // the one the status records is the same event.
    let copies = usize::try_from(migrated.offset - placed.offset).expect("later offset");
    assert!(copies >= 2, "re-published after the crash");
    let all = records(&broker, placed.partition, placed.offset + 1, copies).await;
    let ids: std::collections::BTreeSet<String> = all.iter().map(|r| header(r, "ce_id")).collect();
    assert_eq!(ids.len(), 1, "re-published under the same id: {ids:?}");
    assert_eq!(
        migrated.offset,
        all.last().expect("copies").offset,
        "status records the last copy"
    );

    let change = next_change(&mut changes).await;
    assert_eq!(change.event, EventKind::Migrated);
    // A sentinel change after the duplicate: the client's next report is that change, so the
    // duplicate was dropped rather than reported.
    patch_spec(&client, "carla", json!({"edgeNodeId": "node-c"})).await;
    let sentinel = next_change(&mut changes).await;
    assert_eq!(
        sentinel.location.map(|l| l.edge_node_id),
        Some("node-c".into())
    );
    stop_follower.cancel();
    operator.stop().await;
}

/// The broker goes away; two migrations happen; the broker comes back (empty, as a tansu
/// in-memory broker restarts): the resource is Degraded meanwhile, Ready after, and the client
/// ends at the last location.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_ends_with_consumers_at_the_last_location() {
    let env = env().await;
    let mut broker = broker().await;
    let client = env.client();
    let operator = Operator::start(client.clone(), &broker, None).await;
    let (mut changes, stop_follower) = follower(&broker, StartAt::Earliest);
    api(&client)
        .create(&PostParams::default(), &app("carla", "node-a", "10.0.0.1"))
        .await
        .expect("created");
    notified_at(&client, "carla", "node-a").await;
    assert_eq!(next_change(&mut changes).await.event, EventKind::Placed);

    broker.stop().await;
    patch_spec(&client, "carla", json!({"edgeNodeId": "node-b"})).await;
    let degraded = eventually("Degraded while the broker is down", TIMEOUT, || async {
        let status = api(&client).get("carla").await.ok()?.status?;
        status
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Degraded" && c.status == "True")
    })
    .await;
    assert!(
        degraded.reason.starts_with("Kafka"),
        "reason {}",
        degraded.reason
    );
    patch_spec(&client, "carla", json!({"edgeNodeId": "node-c"})).await;
    broker.resume().await.expect("broker restarts");

    let last = notified_at(&client, "carla", "node-c").await;
    assert_eq!(last.generation, 3);
    eventually("Ready again, Degraded cleared", TIMEOUT, || async {
        let status = api(&client).get("carla").await.ok()?.status?;
        let ready = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let degraded = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.status == "True");
        (ready && !degraded).then_some(())
    })
    .await;
    // A publish of node-b that was already waiting on the broker when node-c was written may
    // land just after the restart (at-least-once, within --kafka-timeout), so the client may
    // pass through node-b; it must move forward only and end at node-c.
    let mut seen = Vec::new();
    let mut from = "node-a".to_string();
    loop {
        let change = next_change(&mut changes).await;
        let at = change.location.map(|l| l.edge_node_id);
        let previous = change.previous.map(|l| l.edge_node_id);
        assert_eq!(previous.as_deref(), Some(from.as_str()), "after {seen:?}");
        let at = at.expect("a location");
        seen.push(at.clone());
        match at.as_str() {
            "node-c" => break,
            "node-b" if seen.len() == 1 => from = at,
            _ => panic!("the client went {seen:?}"),
        }
    }
    let metrics = operator.metrics();
    assert!(
        metrics.contains("kafkanotify_publish_errors_total{reason=\"Kafka"),
        "{metrics}"
    );
    stop_follower.cancel();
    operator.stop().await;
}

/// Once an application is placed and its move announced, nothing is written while nothing
/// changes (status, finalizer, events): on a real API server an operator that compares what
/// it wants with what it reads could otherwise write forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciled_objects_cause_no_writes() {
    let env = env().await;
    let broker = broker().await;
    let client = env.client();
    let operator = Operator::start(client.clone(), &broker, None).await;
    api(&client)
        .create(&PostParams::default(), &app("carla", "node-a", "10.0.0.1"))
        .await
        .expect("created");
    notified_at(&client, "carla", "node-a").await;
    patch_spec(&client, "carla", json!({"edgeNodeId": "node-b"})).await;
    notified_at(&client, "carla", "node-b").await;
    ready(&client, "carla").await;
    env.assert_quiet_for(std::time::Duration::from_secs(30), |_| false)
        .await;
    operator.stop().await;
}

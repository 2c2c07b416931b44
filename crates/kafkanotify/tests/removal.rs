//! Deletion announces `removed` for whatever consumers were told or may have been told, and
//! has a way out when the broker cannot take it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kafkanotify::event::EventKind;
use kafkanotify::follow::{self, AppSelector, Change, StartAt};
use kafkanotify::reconcile::{HookOutcome, SKIP_REMOVAL_NOTICE};
use kafkanotify::resource::EdgeApplication;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use testkit::eventually;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn api(client: &Client) -> Api<EdgeApplication> {
    Api::default_namespaced(client.clone())
}

async fn gone(client: &Client, name: &str) {
    eventually(&format!("{name} is gone"), TIMEOUT, || async {
        api(client)
            .get_opt(name)
            .await
            .ok()
            .and_then(|o| o.is_none().then_some(()))
    })
    .await;
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

/// The broker acknowledged the placement and the operator died before recording it; the
/// resource is deleted before any operator runs again. The pending placement in the status
/// still makes the next operator announce `removed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_inside_the_crash_window_still_announces_removed() {
    let env = env().await;
    let broker = broker().await;
    let client = env.client();
    let key = format!("{}/carla", env.namespace());
    let (mut changes, stop_follower) = follower(&broker, key.parse().expect("selector"));

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
    api(&client)
        .create(&PostParams::default(), &app("carla", "node-a", "10.0.0.1"))
        .await
        .expect("created");
    eventually("the operator crashed after publishing", TIMEOUT, || async {
        crashed.load(Ordering::SeqCst).then_some(())
    })
    .await;
    doomed.stop().await;
    let placed = next_change(&mut changes).await;
    assert_eq!(placed.event, EventKind::Placed);
    let status = api(&client)
        .get("carla")
        .await
        .expect("get")
        .status
        .expect("status");
    assert_eq!(
        status.notified, None,
        "the crash came before the acknowledgement was recorded"
    );
    let pending = status
        .pending
        .expect("the placement is recorded as pending");
    assert_eq!(pending.kind, EventKind::Placed);

    api(&client)
        .delete("carla", &DeleteParams::default())
        .await
        .expect("deleted");
    let operator = Operator::start(client.clone(), &broker, None).await;
    gone(&client, "carla").await;
    let removed = next_change(&mut changes).await;
    assert_eq!(removed.event, EventKind::Removed, "{removed:?}");
    assert_eq!(removed.location, None);
    assert_eq!(
        removed.previous.map(|l| l.edge_node_id),
        Some("node-a".into())
    );
    stop_follower.cancel();
    operator.stop().await;
}

/// The broker is down when the resource is deleted: the deletion waits (Degraded, the
/// finalizer stays) until the user allows it to go without the notice; then it goes, with a
/// Warning event and the metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_while_the_broker_is_down_waits_then_completes_with_the_annotation() {
    let env = env().await;
    let mut broker = broker().await;
    let client = env.client();
    let operator = Operator::start(client.clone(), &broker, None).await;
    api(&client)
        .create(&PostParams::default(), &app("carla", "node-a", "10.0.0.1"))
        .await
        .expect("created");
    eventually("placed", TIMEOUT, || async {
        api(&client).get("carla").await.ok()?.status?.notified
    })
    .await;

    broker.stop().await;
    api(&client)
        .delete("carla", &DeleteParams::default())
        .await
        .expect("deleted");
    let degraded = condition(&client, "carla", "Degraded", "True").await;
    assert!(degraded.reason.starts_with("Kafka"), "{}", degraded.reason);
    let waiting = api(&client).get("carla").await.expect("still there");
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert_eq!(
        waiting.status.and_then(|s| s.pending).map(|p| p.kind),
        Some(EventKind::Removed),
        "the removal is the pending event"
    );

    api(&client)
        .patch(
            "carla",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {SKIP_REMOVAL_NOTICE: "true"}}})),
        )
        .await
        .expect("annotated");
    gone(&client, "carla").await;
    let line = "kubecrew_kafkanotify_removal_notices_skipped_total{reason=\"Annotation\",operator=\"kafkanotify\"} 1";
    let metrics = operator.metrics();
    assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    let events: Api<KubeEvent> = Api::default_namespaced(client.clone());
    eventually("a RemovalNoticeSkipped warning", TIMEOUT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("RemovalNoticeSkipped")
                && e.type_.as_deref() == Some("Warning")
        })
    })
    .await;
    operator.stop().await;
}

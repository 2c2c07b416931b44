//! The operator against a cluster with its workload controllers (the real control plane in
//! CI): restarts happen as real rollouts (new ReplicaSets, replaced StatefulSet pods), once per change, and never for
//! anything else.

mod common;

use appconfig_restarter::resource::AppConfig;
use common::*;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::Api;
use serde_json::json;
use testkit::eventually;

const SUCCESS: &str = "kubecrew_reconcile_total{result=\"success\"";
const RESTARTS: &str = "kubecrew_appconfig_restarts_total{kind=";
/// How long a reconciled operator is watched for writes.
const QUIET: std::time::Duration = std::time::Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_change_rolls_the_workloads_that_use_it_and_only_those() {
    let env = env().await;
    let client = env.client();
    let operator = Operator::start(client.clone());
    config_map(&client, "app", json!({"mode": "a"})).await;
    create::<Deployment>(&client, deployment("web", Some("app"))).await;
    create::<StatefulSet>(&client, stateful_set("db", "app")).await;
    create::<Deployment>(&client, deployment("other", None)).await;
    eventually("the stateful set settles", TIMEOUT, || async {
        let (current, update) = stateful_set_revisions(&client, "db").await?;
        (current == update).then_some(())
    })
    .await;
    let (db_revision, _) = stateful_set_revisions(&client, "db")
        .await
        .expect("revisions");
    // The controller manager makes each Deployment's first ReplicaSet on its own time.
    eventually(
        "web and other have their first ReplicaSet",
        TIMEOUT,
        || async {
            (replica_sets(&client, "web").await == 1 && replica_sets(&client, "other").await == 1)
                .then_some(())
        },
    )
    .await;
    create::<AppConfig>(
        &client,
        app_config("app", json!({"configMaps": ["app"], "debounce": "0s"})),
    )
    .await;
    let app = recorded(&client, "app", 2).await;
    assert_eq!(
        replica_sets(&client, "web").await,
        1,
        "creation restarts nothing"
    );
    assert_eq!(app.status.as_ref().map(|s| s.workload_count), Some(2));

    edit_config_map(&client, "app", json!({"data": {"mode": "b"}})).await;
    eventually("web rolls to a new ReplicaSet", TIMEOUT, || async {
        (replica_sets(&client, "web").await == 2).then_some(())
    })
    .await;
    eventually("db rolls to a new revision", TIMEOUT, || async {
        let (current, update) = stateful_set_revisions(&client, "db").await?;
        (current == update && current != db_revision).then_some(())
    })
    .await;
    let web_hash = deployment_hash(&client, "web").await.expect("annotated");
    assert_eq!(web_hash.len(), 64, "a SHA-256, not the data");
    assert_eq!(replica_sets(&client, "other").await, 1);
    assert_eq!(deployment_hash(&client, "other").await, None);
    assert_eq!(operator.counter(RESTARTS), 2.0);

    let events = env
        .kubectl()
        .run(&[
            "get",
            "events",
            "--field-selector",
            "reason=Restarted",
            "-o",
            "json",
        ])
        .await;
    assert!(
        events.contains("restarted Deployment web: ConfigMap app changed"),
        "{events}"
    );
    assert!(events.contains("restarted by AppConfig app"), "{events}");
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_inside_the_debounce_window_make_one_restart() {
    let env = env().await;
    let client = env.client();
    let operator = Operator::start(client.clone());
    config_map(&client, "app", json!({"mode": "a"})).await;
    create::<Deployment>(&client, deployment("web", Some("app"))).await;
    create::<AppConfig>(
        &client,
        app_config("app", json!({"configMaps": ["app"], "debounce": "2s"})),
    )
    .await;
    recorded(&client, "app", 1).await;
    for mode in ["b", "c", "d"] {
        edit_config_map(&client, "app", json!({"data": {"mode": mode}})).await;
    }
    eventually("the restart happened", TIMEOUT, || async {
        (operator.counter(RESTARTS) >= 1.0).then_some(())
    })
    .await;
    let app = eventually("the window closed", TIMEOUT, || async {
        let app = Api::<AppConfig>::default_namespaced(client.clone())
            .get("app")
            .await
            .ok()?;
        app.status.as_ref()?.pending_since.is_none().then_some(app)
    })
    .await;
    let recorded_hash = app.status.expect("status").workloads[0].hash.clone();
    assert_eq!(deployment_hash(&client, "web").await, Some(recorded_hash));
    assert_eq!(operator.counter(RESTARTS), 1.0, "three edits, one restart");
    // The controller manager rolls the restarted template into a new ReplicaSet on its own time.
    eventually("web rolls to a new ReplicaSet", TIMEOUT, || async {
        (replica_sets(&client, "web").await == 2).then_some(())
    })
    .await;
    assert_eq!(operator.counter(RESTARTS), 1.0, "still one restart");
    // Each data change a reconcile sees counts (a fast burst may be seen as fewer, a reconcile
    // on a view older than its own last status write counts one again); either way, one
    // restart.
    let changes = operator.counter("kubecrew_appconfig_config_changes_total");
    assert!(changes >= 1.0, "{changes} changes");
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_restarts_restart_nothing_and_miss_nothing() {
    let env = env().await;
    let client = env.client();
    config_map(&client, "app", json!({"mode": "a"})).await;
    create::<Deployment>(&client, deployment("web", Some("app"))).await;
    create::<AppConfig>(
        &client,
        app_config("app", json!({"configMaps": ["app"], "debounce": "0s"})),
    )
    .await;
    let first = Operator::start(client.clone());
    recorded(&client, "app", 1).await;
    first.stop().await;

    let second = Operator::start(client.clone());
    eventually("the new operator reconciled", TIMEOUT, || async {
        (second.counter(SUCCESS) >= 1.0).then_some(())
    })
    .await;
    assert_eq!(second.counter(RESTARTS), 0.0, "no change, no restart");
    assert_eq!(deployment_hash(&client, "web").await, None);
    second.stop().await;

    // Changed while no operator runs.
    edit_config_map(&client, "app", json!({"data": {"mode": "b"}})).await;
    let third = Operator::start(client.clone());
    eventually("the change is acted on", TIMEOUT, || async {
        (replica_sets(&client, "web").await == 2).then_some(())
    })
    .await;
    assert_eq!(third.counter(RESTARTS), 1.0);
    third.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_labels_and_missing_objects() {
    let env = env().await;
    let client = env.client();
    let operator = Operator::start(client.clone());
    config_map(&client, "app", json!({"important": "1", "noise": "1"})).await;
    create::<Deployment>(&client, deployment("web", Some("app"))).await;
    create::<AppConfig>(
        &client,
        app_config(
            "app",
            json!({"configMaps": ["app"], "debounce": "0s",
                   "keys": [{"kind": "ConfigMap", "name": "app", "keys": ["important"]}]}),
        ),
    )
    .await;
    recorded(&client, "app", 1).await;

    // One edit at a time, each waited for: two quick edits may be coalesced into one
    // reconcile, so counting reconciles only works edit by edit.
    let edits = [
        json!({"data": {"noise": "2"}}),
        json!({"metadata": {"labels": {"team": "web"}}}),
    ];
    let mut reconciled = operator.counter(SUCCESS);
    for edit in edits {
        edit_config_map(&client, "app", edit).await;
        reconciled = eventually("the edit was reconciled", TIMEOUT, || async {
            let now = operator.counter(SUCCESS);
            (now > reconciled).then_some(now)
        })
        .await;
    }
    assert_eq!(
        operator.counter(RESTARTS),
        0.0,
        "other keys and labels restart nothing"
    );

    edit_config_map(&client, "app", json!({"data": {"important": "2"}})).await;
    eventually("the key change restarts", TIMEOUT, || async {
        (replica_sets(&client, "web").await == 2).then_some(())
    })
    .await;
    assert_eq!(operator.counter(RESTARTS), 1.0);

    create::<AppConfig>(
        &client,
        app_config("broken", json!({"configMaps": ["app", "nowhere"]})),
    )
    .await;
    let degraded = eventually("Degraded names the missing ConfigMap", TIMEOUT, || async {
        let app = Api::<AppConfig>::default_namespaced(client.clone())
            .get("broken")
            .await
            .ok()?;
        app.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Degraded" && c.status == "True")
    })
    .await;
    assert_eq!(degraded.reason, "ConfigMissing");
    assert!(
        degraded.message.starts_with("ConfigMap nowhere not found"),
        "{}",
        degraded.message
    );
    operator.stop().await;
}

/// Once the AppConfig is reconciled and its workloads rolled, nothing is written while nothing
/// changes: on a real API server (which adds defaults to every object) an operator that
/// compares what it wants with what it reads could otherwise write forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciled_objects_cause_no_writes() {
    let env = env().await;
    let client = env.client();
    let operator = Operator::start(client.clone());
    config_map(&client, "app", json!({"mode": "a"})).await;
    create::<Deployment>(&client, deployment("web", Some("app"))).await;
    create::<StatefulSet>(&client, stateful_set("db", "app")).await;
    create::<AppConfig>(
        &client,
        app_config("app", json!({"configMaps": ["app"], "debounce": "0s"})),
    )
    .await;
    recorded(&client, "app", 2).await;
    edit_config_map(&client, "app", json!({"data": {"mode": "b"}})).await;
    eventually("web rolls to a new ReplicaSet", TIMEOUT, || async {
        (replica_sets(&client, "web").await == 2).then_some(())
    })
    .await;
    let kubectl = env.kubectl();
    for workload in ["deployment/web", "statefulset/db"] {
        kubectl
            .run(&["rollout", "status", workload, "--timeout=60s"])
            .await;
    }
    eventually("the AppConfig records the new hash", TIMEOUT, || async {
        let app = Api::<AppConfig>::default_namespaced(client.clone())
            .get("app")
            .await
            .ok()?;
        let status = app.status?;
        (status.pending_since.is_none() && operator.counter(RESTARTS) == 2.0).then_some(())
    })
    .await;
    env.assert_quiet_for(QUIET, |_| false).await;
    operator.stop().await;
}

//! The two binaries as users run them: the operator process is killed (its failpoint exits
//! between the broker's acknowledgement and the status write) and restarted, and the client
//! process prints each location change once and runs its `--exec` hook.

mod common;

use std::process::Stdio;

use common::*;
use kafkanotify::resource::EdgeApplication;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use testkit::eventually;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The operator binary, watching only the test's namespace (tests share the cluster).
fn operator(env: &localcluster::TestEnv, broker: &testkit::kafka::Broker) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kafkanotify"));
    cmd.env("KUBECONFIG", env.kubeconfig_path())
        .env("KAFKA_BROKERS", broker.bootstrap())
        .args(["--metrics-addr", "127.0.0.1:0", "--kafka-timeout", "2s"])
        .args(["--namespace", env.namespace()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_operator_republishes_and_the_client_reports_once() {
    let env = env().await;
    let broker = broker().await;
    let client = env.client();
    let api: Api<EdgeApplication> = Api::default_namespaced(client.clone());
    let dir = std::env::temp_dir().join(format!("kafkanotify-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let hook_log = dir.join("exec.log");

    let mut follower: Child = Command::new(env!("CARGO_BIN_EXE_kafkanotify-client"))
        .args(["--kafka-brokers", &broker.bootstrap(), "--topic", TOPIC])
        .args(["--app-id", "carla", "--from", "earliest"])
        .arg("--exec")
        .arg(format!(
            "echo \"$KAFKANOTIFY_EVENT $KAFKANOTIFY_EDGE_NODE_ID $KAFKANOTIFY_HOST:$KAFKANOTIFY_PORT/$KAFKANOTIFY_PROTOCOL\" >> {}",
            hook_log.display()
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("client starts");
    let mut lines = BufReader::new(follower.stdout.take().expect("stdout")).lines();

    let mut op = operator(&env, &broker).spawn().expect("operator starts");
    api.create(&PostParams::default(), &app("carla", "node-a", "10.0.0.1"))
        .await
        .expect("created");
    eventually("placed", TIMEOUT, || async {
        api.get("carla").await.ok()?.status?.notified
    })
    .await;
    op.kill().await.expect("operator stopped");

    // This operator exits right after the broker acknowledges the migration.
    let mut doomed = operator(&env, &broker)
        .env("KAFKANOTIFY_FAILPOINT", "exit-after-publish")
        .spawn()
        .expect("operator starts");
    api.patch(
        "carla",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"edgeNodeId": "node-b"}})),
    )
    .await
    .expect("migrated");
    let exit = tokio::time::timeout(TIMEOUT, doomed.wait())
        .await
        .expect("the failpoint fired")
        .expect("exit status");
    assert_eq!(exit.code(), Some(86));
    let status = api.get("carla").await.expect("get").status;
    assert_eq!(
        status.and_then(|s| s.notified).map(|n| n.edge_node_id),
        Some("node-a".to_owned())
    );

    let _op = operator(&env, &broker).spawn().expect("operator restarts");
    let notified = eventually("migration recorded after the restart", TIMEOUT, || async {
        let n = api.get("carla").await.ok()?.status?.notified?;
        (n.edge_node_id == "node-b").then_some(n)
    })
    .await;
    // Two copies of the migration are in the topic...
    let copies = records(&broker, notified.partition, notified.offset - 1, 2).await;
    assert_eq!(decode(&copies[0]).id, decode(&copies[1]).id);
    // ...and a sentinel change after them.
    api.patch(
        "carla",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"endpoint": {"host": "10.0.0.7", "port": 2000}}})),
    )
    .await
    .expect("endpoint changed");

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let line = tokio::time::timeout(TIMEOUT, lines.next_line())
            .await
            .expect("the client prints a change")
            .expect("stdout readable")
            .expect("the client runs");
        let change: Value = serde_json::from_str(&line).expect("a JSON line");
        seen.push(change);
    }
    let events: Vec<&str> = seen
        .iter()
        .map(|c| c["event"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        events,
        ["placed", "migrated", "endpoint-changed"],
        "each change once, the duplicate dropped: {seen:?}"
    );
    assert_eq!(seen[1]["previous"]["edgeNodeId"], "node-a");
    assert_eq!(seen[1]["location"]["edgeNodeId"], "node-b");

    let log = eventually("the --exec hook ran three times", TIMEOUT, || async {
        let log = std::fs::read_to_string(&hook_log).ok()?;
        (log.lines().count() == 3).then_some(log)
    })
    .await;
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "placed node-a 10.0.0.1:2000/TCP",
            "migrated node-b 10.0.0.1:2000/TCP",
            "endpoint-changed node-b 10.0.0.7:2000/TCP"
        ]
    );
    follower.kill().await.expect("client stopped");
    let _ = std::fs::remove_dir_all(dir);
}

/// The client is stopped, the application migrates, the client is started again with
/// `--from latest`: with `--state-file` it first prints where the application was, then the
/// migration it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_restarted_across_a_migration_resumes_from_its_state_file() {
    let env = env().await;
    let broker = broker().await;
    let client = env.client();
    let api: Api<EdgeApplication> = Api::default_namespaced(client.clone());
    let dir = std::env::temp_dir().join(format!("kafkanotify-state-{}", env.namespace()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let state = dir.join("state.json");
    let app_id = format!("{}/carla", env.namespace());
    let follower = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kafkanotify-client"));
        cmd.args(["--kafka-brokers", &broker.bootstrap(), "--topic", TOPIC])
            .args(["--app-id", &app_id, "--from", "latest"])
            .arg("--state-file")
            .arg(&state)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        cmd
    };
    // The first run starts before the topic exists, so it reads everything published
    // (the placement) and saves it.
    let mut first: Child = follower().spawn().expect("client starts");
    let mut lines = BufReader::new(first.stdout.take().expect("stdout")).lines();
    let _op = operator(&env, &broker).spawn().expect("operator starts");
    api.create(&PostParams::default(), &app("carla", "node-a", "10.0.0.1"))
        .await
        .expect("created");
    let placed = next_json(&mut lines).await;
    assert_eq!(placed["event"], "placed", "{placed}");
    eventually("the client saved the placement", TIMEOUT, || async {
        std::fs::read_to_string(&state)
            .ok()
            .filter(|s| s.contains("10.0.0.1"))
    })
    .await;
    first.kill().await.expect("client stopped");

    api.patch(
        "carla",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"edgeNodeId": "node-b", "endpoint": {"host": "10.0.0.9", "port": 2000}}})),
    )
    .await
    .expect("migrated");
    eventually("migration acknowledged", TIMEOUT, || async {
        let n = api.get("carla").await.ok()?.status?.notified?;
        (n.edge_node_id == "node-b").then_some(())
    })
    .await;

    let mut second: Child = follower().spawn().expect("client restarts");
    let mut lines = BufReader::new(second.stdout.take().expect("stdout")).lines();
    let current = next_json(&mut lines).await;
    assert_eq!(current["event"], "current", "{current}");
    assert_eq!(current["location"]["endpoint"]["host"], "10.0.0.1");
    let missed = next_json(&mut lines).await;
    assert_eq!(missed["event"], "migrated", "{missed}");
    assert_eq!(missed["location"]["edgeNodeId"], "node-b");
    assert_eq!(missed["location"]["endpoint"]["host"], "10.0.0.9");
    assert_eq!(missed["previous"]["endpoint"]["host"], "10.0.0.1");
    second.kill().await.expect("client stopped");
    let _ = std::fs::remove_dir_all(dir);
}

async fn next_json(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> Value {
    let line = tokio::time::timeout(TIMEOUT, lines.next_line())
        .await
        .expect("a line in time")
        .expect("stdout readable")
        .expect("the client runs");
    serde_json::from_str(&line).expect("a JSON line")
}

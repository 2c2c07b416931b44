//! nes-manager on the test binary's cluster (see common) with fake agents (the agent's real HTTP
//! API over a fake `Agent`) on loopback addresses: pushes, status from results and result
//! changes, re-pushes on spec change / agent restart / pod re-creation, no push after a manager
//! restart, and NetworkCare deliveries (success and failure).

mod common;

use std::net::IpAddr;

use common::*;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use nes_api::ItemState;
use nes_api::crd::{NetworkCare, NetworkConfiguration};
use nes_api::report::ChangeKind;
use serde_json::json;
use testkit::eventually;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[tokio::test]
async fn config_is_pushed_status_follows_results_and_a_manager_restart_pushes_nothing() {
    let env = env().await;
    let agent_ip = ip("127.0.1.2");
    let port = free_port(agent_ip).await;
    let server = AgentServer::start(agent_ip, port, &["lo", "eth0"]).await;
    let agent = server.agent.clone();
    agent.answer_with(ItemState::Pending);
    let manager = Manager::start(&env, port);

    let uid = running_pod(&env, "app-0", agent_ip, json!({})).await;
    network_configuration(&env, "app-0", &["10.1.0.5/24"]).await;

    // Pushed once; the agent's pending results are reported.
    let status = eventually("the pending results in the status", TIMEOUT, || async {
        let s = nc_status(&env, "app-0").await?;
        (s.results.len() == 2 && s.applied_generation == Some(1)).then_some(s)
    })
    .await;
    assert_eq!(status.pod_uid.as_deref(), Some(uid.as_str()));
    assert_eq!(status.boot_id.as_deref(), Some(agent.boot_id.as_str()));
    assert!(status.results.iter().all(|r| r.state == ItemState::Pending));
    assert_eq!(
        condition(&status.conditions, "Progressing"),
        Some(("True".into(), "ItemsPending".into()))
    );
    assert_eq!(
        condition(&status.conditions, "Available").unwrap().0,
        "False"
    );
    assert_eq!(agent.stored().unwrap().generation, 1);

    // The agent applies the pending items later: the status stream brings it to the resource.
    agent.set_results(ItemState::Applied);
    let status = eventually("Available after the agent applied", TIMEOUT, || async {
        let s = nc_status(&env, "app-0").await?;
        (condition(&s.conditions, "Available")? == ("True".into(), "Applied".into())).then_some(s)
    })
    .await;
    assert!(status.last_successful_update_time.is_some());
    assert_eq!(agent.puts(), 1);

    // A spec change is pushed with the new generation.
    let api: Api<NetworkConfiguration> = env.api();
    let patch = json!({"spec": {"addresses": [
        {"interface": "eth0.100", "cidr": "10.1.0.5/24"},
        {"interface": "eth0.100", "cidr": "10.1.0.6/24"},
    ]}});
    api.patch("app-0", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    agent.answer_with(ItemState::Applied);
    let status = eventually("generation 2 applied", TIMEOUT, || async {
        let s = nc_status(&env, "app-0").await?;
        (s.applied_generation == Some(2) && s.observed_generation == Some(2)).then_some(s)
    })
    .await;
    assert_eq!(status.results.len(), 3);
    assert_eq!(agent.stored().unwrap().addresses.len(), 2);
    assert_eq!(agent.stored().unwrap().generation, 2);
    assert_eq!(agent.puts(), 2);

    // An invalid spec is reported and not pushed.
    let broken =
        json!({"spec": {"vlans": [{"name": "eth0.100", "parent": "eth0", "vlanId": 5000}]}});
    api.patch("app-0", &PatchParams::default(), &Patch::Merge(&broken))
        .await
        .unwrap();
    let status = eventually("InvalidSpec", TIMEOUT, || async {
        let s = nc_status(&env, "app-0").await?;
        (condition(&s.conditions, "Degraded")? == ("True".into(), "InvalidSpec".into()))
            .then_some(s)
    })
    .await;
    let message = &status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap()
        .message;
    assert!(message.contains("vlans[0].vlanId"), "{message}");
    assert_eq!(agent.puts(), 2);
    let fixed = json!({"spec": {"vlans": [{"name": "eth0.100", "parent": "eth0", "vlanId": 100}]}});
    api.patch("app-0", &PatchParams::default(), &Patch::Merge(&fixed))
        .await
        .unwrap();
    eventually("the fixed spec applied", TIMEOUT, || async {
        let s = nc_status(&env, "app-0").await?;
        (s.applied_generation == Some(4) && condition(&s.conditions, "Available")?.0 == "True")
            .then_some(())
    })
    .await;
    // The agent already had this content (generation 2): nothing is sent for generation 4.
    assert_eq!(agent.puts(), 2);

    // A restarted manager pushes nothing, but follows the agent again.
    manager.stop().await;
    eventually("the old manager's stream closed", TIMEOUT, || async {
        (server.state.watchers() == 0).then_some(())
    })
    .await;
    let manager = Manager::start(&env, port);
    eventually("the new manager follows the agent", TIMEOUT, || async {
        (server.state.watchers() == 1).then_some(())
    })
    .await;
    agent.set_results(ItemState::Failed);
    let status = eventually(
        "the failure reported by the new manager",
        TIMEOUT,
        || async {
            let s = nc_status(&env, "app-0").await?;
            (condition(&s.conditions, "Degraded")? == ("True".into(), "ItemsFailed".into()))
                .then_some(s)
        },
    )
    .await;
    assert!(status.results.iter().all(|r| r.state == ItemState::Failed));
    assert_eq!(
        agent.puts(),
        2,
        "a manager restart must not re-apply anything"
    );

    manager.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_forged_generation_locks_nobody_out() {
    let env = env().await;
    let agent_ip = ip("127.0.6.2");
    let port = free_port(agent_ip).await;
    let server = AgentServer::start(agent_ip, port, &["lo", "eth0"]).await;
    let agent = server.agent.clone();
    let manager = Manager::start(&env, port);
    running_pod(&env, "gen-0", agent_ip, json!({})).await;
    network_configuration(&env, "gen-0", &["10.6.0.5/24"]).await;
    eventually("applied", TIMEOUT, || async {
        let s = nc_status(&env, "gen-0").await?;
        (condition(&s.conditions, "Available")?.0 == "True").then_some(())
    })
    .await;
    let spec = agent.stored().unwrap();
    assert_eq!(spec.generation, 1);

    // Someone holding the token tries to park the agent at u64::MAX: refused (409), nothing
    // changes.
    let forger = nes_agent::client::AgentClient::new(
        format!("http://{agent_ip}:{port}"),
        Some(TOKEN.to_owned()),
    )
    .unwrap();
    let forged = nes_api::DesiredConfig {
        generation: u64::MAX,
        ..Default::default()
    };
    match forger.apply(&forged).await {
        Err(nes_agent::client::ClientError::Api { status, errors }) => {
            assert_eq!(status, 409);
            assert!(
                errors[0].message.contains("is not the next generation"),
                "{errors:?}"
            );
        }
        other => panic!("expected a 409, got {other:?}"),
    }
    assert_eq!(agent.stored().unwrap(), spec);

    // An agent that holds u64::MAX anyway (state from before the rule), with other content:
    // the manager's next push is generation 1 (the sequence wraps) and is accepted.
    agent.force(forged);
    eventually("the spec pushed again after the wrap", TIMEOUT, || async {
        let held = agent.stored()?;
        (held.generation == 1 && held.addresses == spec.addresses).then_some(())
    })
    .await;
    assert_eq!(agent.puts(), 2);

    // And the sequence goes on: a spec change is generation 2 on the agent.
    let api: Api<NetworkConfiguration> = env.api();
    let patch = json!({"spec": {"addresses": [{"interface": "eth0.100", "cidr": "10.6.0.6/24"}]}});
    api.patch("gen-0", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let status = eventually("the change applied", TIMEOUT, || async {
        let s = nc_status(&env, "gen-0").await?;
        (s.applied_generation == Some(2) && condition(&s.conditions, "Available")?.0 == "True")
            .then_some(s)
    })
    .await;
    assert_eq!(status.results.len(), 2);
    assert_eq!(agent.stored().unwrap().generation, 2);

    manager.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn agent_restart_and_pod_recreation_push_again() {
    let env = env().await;
    let first_ip = ip("127.0.2.2");
    let port = free_port(first_ip).await;
    let first = AgentServer::start(first_ip, port, &["lo", "eth0"]).await;
    let manager = Manager::start(&env, port);
    let uid = running_pod(&env, "db-0", first_ip, json!({})).await;
    network_configuration(&env, "db-0", &["10.2.0.5/24"]).await;
    let boot = first.agent.boot_id.to_string();
    eventually("applied by the first agent", TIMEOUT, || async {
        let s = nc_status(&env, "db-0").await?;
        (s.boot_id.as_deref() == Some(boot.as_str())
            && condition(&s.conditions, "Available")?.0 == "True")
            .then_some(())
    })
    .await;
    assert_eq!(first.agent.puts(), 1);

    // The agent restarts with an empty state: a new boot id, pushed again.
    first.stop().await;
    let restarted = AgentServer::start(first_ip, port, &["lo", "eth0"]).await;
    let boot = restarted.agent.boot_id.to_string();
    eventually("re-pushed to the restarted agent", TIMEOUT, || async {
        let s = nc_status(&env, "db-0").await?;
        (s.boot_id.as_deref() == Some(boot.as_str())
            && condition(&s.conditions, "Available")?.0 == "True")
            .then_some(())
    })
    .await;
    assert_eq!(restarted.agent.puts(), 1);
    assert_eq!(restarted.agent.stored().unwrap().generation, 1);
    assert_eq!(
        nc_status(&env, "db-0").await.unwrap().pod_uid.as_deref(),
        Some(uid.as_str())
    );

    // The pod is re-created under the same name (elsewhere): pushed to the new pod's agent.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = env.api();
    pods.delete("db-0", &DeleteParams::default()).await.unwrap();
    eventually("the pod is gone", TIMEOUT, || async {
        pods.get_opt("db-0").await.ok()?.is_none().then_some(())
    })
    .await;
    let second_ip = ip("127.0.2.3");
    let second = AgentServer::start(second_ip, port, &["lo", "eth0"]).await;
    let new_uid = running_pod(&env, "db-0", second_ip, json!({})).await;
    assert_ne!(new_uid, uid);
    eventually("pushed to the re-created pod", TIMEOUT, || async {
        let s = nc_status(&env, "db-0").await?;
        (s.pod_uid.as_deref() == Some(new_uid.as_str())
            && condition(&s.conditions, "Available")?.0 == "True")
            .then_some(())
    })
    .await;
    assert_eq!(second.agent.puts(), 1);
    assert_eq!(
        restarted.agent.puts(),
        1,
        "the old address gets nothing more"
    );

    manager.stop().await;
    restarted.stop().await;
    second.stop().await;
}

async fn network_care(env: &localcluster::TestEnv, name: &str, spec: serde_json::Value) {
    let care: NetworkCare = serde_json::from_value(json!({
        "apiVersion": "nes.kubecrew.io/v1alpha1", "kind": "NetworkCare",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .unwrap();
    env.api::<NetworkCare>()
        .create(&PostParams::default(), &care)
        .await
        .unwrap();
}

#[tokio::test]
async fn network_care_delivers_filtered_link_changes() {
    let env = env().await;
    let agent_ip = ip("127.0.3.2");
    let port = free_port(agent_ip).await;
    let server = AgentServer::start(agent_ip, port, &["lo", "eth0", "eth1"]).await;
    let agent = server.agent.clone();
    let callback = Callback::start(200).await;
    let manager = Manager::start(&env, port);
    let uid = running_pod(&env, "web-0", agent_ip, json!({"app": "web"})).await;
    network_care(
        &env,
        "watcher",
        json!({
            "pods": {"selector": {"matchLabels": {"app": "web"}}},
            "filter": {"interfaces": ["eth0"], "changes": ["link"]},
            "callback": {"url": callback.url},
        }),
    )
    .await;
    eventually("the care selects the pod", TIMEOUT, || async {
        let s = care_status(&env, "watcher").await?;
        (condition(&s.conditions, "Ready")? == ("True".into(), "Delivering".into())
            && server.state.watchers() == 1)
            .then_some(())
    })
    .await;

    // eth1 is filtered out. eth0 is toggled until a report arrives: the subscription's first
    // snapshot is its baseline, and the test cannot see when the hub took it.
    agent.set_link("eth1", "down");
    let report = eventually("a report of eth0", TIMEOUT, || async {
        if let Some(r) = callback.reports().into_iter().next() {
            return Some(r);
        }
        agent.toggle_link("eth0");
        None
    })
    .await;
    assert_eq!(report.network_care.name, "watcher");
    assert_eq!(report.network_care.namespace, env.namespace());
    assert_eq!(report.pod, "web-0");
    assert_eq!(report.pod_uid, uid);
    assert_eq!(report.boot_id, agent.boot_id);
    assert!(
        report.time.parse::<jiff::Timestamp>().is_ok(),
        "{}",
        report.time
    );
    assert_eq!(report.changes.len(), 1, "{:?}", report.changes);
    let change = &report.changes[0];
    assert_eq!(change.kind, ChangeKind::Link);
    assert_eq!(change.interface.as_deref(), Some("eth0"));
    assert!(
        change.message.starts_with("link eth0: operstate"),
        "{}",
        change.message
    );
    assert!(
        callback
            .reports()
            .iter()
            .flat_map(|r| &r.changes)
            .all(|c| c.interface.as_deref() == Some("eth0")),
        "eth1 is filtered out"
    );
    assert_eq!(report.status.links.len(), 3, "the whole current status");

    let delivered = callback.reports().len() as i64;
    let status = eventually("the deliveries counted", TIMEOUT, || async {
        let s = care_status(&env, "watcher").await?;
        (s.deliveries >= delivered && s.last_delivery_time.is_some()).then_some(s)
    })
    .await;
    assert_eq!(status.failures, 0);
    assert!(status.last_error.is_none());

    manager.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_failing_callback_is_retried_then_counted_as_a_failure() {
    let env = env().await;
    let agent_ip = ip("127.0.4.2");
    let port = free_port(agent_ip).await;
    let server = AgentServer::start(agent_ip, port, &["lo", "eth0"]).await;
    let agent = server.agent.clone();
    let callback = Callback::start(500).await;
    let manager = Manager::start(&env, port);
    running_pod(&env, "api-0", agent_ip, json!({})).await;
    network_care(
        &env,
        "flaky",
        json!({"pods": {"names": ["api-0"]}, "callback": {"url": callback.url}}),
    )
    .await;
    eventually("following the pod", TIMEOUT, || async {
        (server.state.watchers() == 1).then_some(())
    })
    .await;
    eventually("a first attempt", TIMEOUT, || async {
        if callback.posts() > 0 {
            return Some(());
        }
        agent.toggle_link("eth0");
        None
    })
    .await;
    // Every report is attempted 3 times (the test's setting), then counted once as a failure.
    let status = eventually("failures counted after the retries", TIMEOUT, || async {
        let s = care_status(&env, "flaky").await?;
        (s.failures >= 1 && callback.posts() as i64 == 3 * s.failures).then_some(s)
    })
    .await;
    assert_eq!(status.deliveries, 0);
    let error = status.last_error.clone().unwrap();
    assert!(
        error.contains("HTTP 500") && error.contains("3 attempts"),
        "{error}"
    );
    assert!(
        !error.contains(&callback.url),
        "no URL in the error: {error}"
    );
    assert_eq!(
        condition(&status.conditions, "Degraded"),
        Some(("True".into(), "DeliveryFailing".into()))
    );

    // The callback recovers: the next report is delivered and the condition clears.
    callback
        .status
        .store(200, std::sync::atomic::Ordering::SeqCst);
    agent.toggle_link("eth0");
    let status = eventually("delivered again", TIMEOUT, || async {
        let s = care_status(&env, "flaky").await?;
        (s.deliveries >= 1 && condition(&s.conditions, "Ready")?.0 == "True").then_some(s)
    })
    .await;
    assert_eq!(
        condition(&status.conditions, "Degraded").unwrap().0,
        "False"
    );

    manager.stop().await;
    server.stop().await;
}

/// A report for the NetworkCare `watcher`: eth0 is toggled until the callback has more than
/// `seen` reports (the hub's first snapshot after (re)starting is its baseline).
async fn one_more_report(agent: &FakeAgent, callback: &Callback, seen: usize) {
    eventually("another report of eth0", TIMEOUT, || async {
        if callback.reports().len() > seen {
            return Some(());
        }
        agent.toggle_link("eth0");
        None
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_continue_from_the_other_replica_after_leadership_returns() {
    let env = env().await;
    let agent_ip = ip("127.0.5.2");
    let port = free_port(agent_ip).await;
    let server = AgentServer::start(agent_ip, port, &["lo", "eth0"]).await;
    let agent = server.agent.clone();
    let callback = Callback::start(200).await;
    let (lead, leader) = tokio::sync::watch::channel(true);
    let manager = Manager::start_gated(&env, port, Some(leader));
    running_pod(&env, "web-0", agent_ip, json!({"app": "web"})).await;
    network_care(
        &env,
        "watcher",
        json!({
            "pods": {"selector": {"matchLabels": {"app": "web"}}},
            "filter": {"changes": ["link"]},
            "callback": {"url": callback.url},
        }),
    )
    .await;
    eventually("the care follows the pod", TIMEOUT, || async {
        (server.state.watchers() == 1).then_some(())
    })
    .await;
    one_more_report(&agent, &callback, 0).await;
    let first = eventually("the first deliveries counted", TIMEOUT, || async {
        let s = care_status(&env, "watcher").await?;
        (s.deliveries >= 1).then_some(s.deliveries)
    })
    .await;

    // This replica stops leading; the other one leads, delivers and counts 100 more.
    lead.send(false).unwrap();
    eventually("the hub stops following", TIMEOUT, || async {
        (server.state.watchers() == 0).then_some(())
    })
    .await;
    let theirs = first + 100;
    env.api::<NetworkCare>()
        .patch_status(
            "watcher",
            &PatchParams::apply("other-replica").force(),
            &Patch::Apply(json!({
                "apiVersion": "nes.kubecrew.io/v1alpha1",
                "kind": "NetworkCare",
                "metadata": {"name": "watcher", "namespace": env.namespace()},
                "status": {"deliveries": theirs, "failures": 0},
            })),
        )
        .await
        .unwrap();

    // Leading again, it continues from the other replica's counts, not from its own.
    lead.send(true).unwrap();
    eventually("the care follows the pod again", TIMEOUT, || async {
        (server.state.watchers() == 1).then_some(())
    })
    .await;
    let seen = callback.reports().len();
    one_more_report(&agent, &callback, seen).await;
    let status = eventually(
        "the new delivery counted on top of theirs",
        TIMEOUT,
        || async {
            let s = care_status(&env, "watcher").await?;
            (s.deliveries > theirs).then_some(s)
        },
    )
    .await;
    assert!(status.deliveries <= theirs + 3, "{status:?}");

    manager.stop().await;
    server.stop().await;
}

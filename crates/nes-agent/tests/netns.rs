//! The agent against a real kernel: each test makes its own network namespace, runs the agent
//! inside it and checks the kernel with iproute2 (`ip -j`), the tool operators would use.

mod common;

use std::time::{Duration, Instant};

use common::{Netns, TestAgent, can_run, settings};
use futures::StreamExt;
use nes_api::{Address, DesiredConfig, ItemState, Route, VlanLink};
use testkit::eventually;

const LONG: Duration = Duration::from_secs(3600);

fn address(interface: &str, cidr: &str) -> Address {
    Address {
        interface: interface.into(),
        cidr: cidr.into(),
    }
}

fn route(destination: &str, gateway: Option<&str>, interface: Option<&str>) -> Route {
    Route {
        destination: destination.into(),
        gateway: gateway.map(|g| g.parse().unwrap()),
        interface: interface.map(Into::into),
        metric: None,
        table: None,
    }
}

fn config(generation: u64, addresses: Vec<Address>, routes: Vec<Route>) -> DesiredConfig {
    DesiredConfig {
        generation,
        vlans: vec![],
        addresses,
        routes,
    }
}

fn destinations(routes: &[serde_json::Value]) -> Vec<String> {
    let mut out: Vec<String> = routes
        .iter()
        .map(|r| r["dst"].as_str().unwrap_or("?").to_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn applies_reapplies_removes_and_leaves_hand_made_items_alone() {
    if !can_run() {
        return;
    }
    let ns = Netns::with_veth();
    ns.clone().run(move || async move {
        let agent = TestAgent::start(settings(LONG)).await;
        let metric_route = Route {
            metric: Some(50),
            ..route("10.30.0.0/16", None, Some("v0"))
        };
        let table_route = Route {
            table: Some(100),
            ..route("default", Some("10.1.0.1"), None)
        };
        let first = config(
            1,
            vec![address("v0", "10.1.0.2/24"), address("v0", "fd00:1::2/64")],
            vec![
                route("10.20.0.0/16", Some("10.1.0.1"), None),
                metric_route.clone(),
                table_route.clone(),
                route("fd01::/48", None, Some("v0")),
            ],
        );
        let response = agent.client.apply(&first).await.expect("apply");
        assert_eq!(response.generation, 1);
        assert_eq!(response.boot_id, *agent.handle.boot_id());
        assert_eq!(response.results.len(), 6);
        for result in &response.results {
            assert_eq!(result.state, ItemState::Applied, "{result:?}");
        }

        // The kernel, as iproute2 sees it.
        let addresses = ns.addresses("v0");
        assert!(
            addresses.contains(&"10.1.0.2/24".to_owned()),
            "{addresses:?}"
        );
        assert!(
            addresses.contains(&"fd00:1::2/64".to_owned()),
            "{addresses:?}"
        );
        let main = ns.routes("-4", "main", "201");
        assert_eq!(destinations(&main), ["10.20.0.0/16", "10.30.0.0/16"]);
        let gateway = main.iter().find(|r| r["dst"] == "10.20.0.0/16").unwrap();
        assert_eq!(gateway["gateway"], "10.1.0.1");
        let metric = main.iter().find(|r| r["dst"] == "10.30.0.0/16").unwrap();
        assert_eq!(metric["metric"], 50);
        assert_eq!(metric["dev"], "v0");
        assert_eq!(destinations(&ns.routes("-4", "100", "201")), ["default"]);
        assert_eq!(destinations(&ns.routes("-6", "main", "201")), ["fd01::/48"]);

        // Re-applying the same configuration changes nothing.
        let before = agent.handle.metrics().netlink_changes_ok();
        let kernel_before = (
            ns.addresses("v0"),
            ns.ip(&["route", "show", "table", "all"]),
        );
        let again = agent.client.apply(&first).await.expect("re-apply");
        assert!(again.results.iter().all(|r| r.state == ItemState::Applied));
        assert_eq!(agent.handle.metrics().netlink_changes_ok(), before);
        assert_eq!(
            (
                ns.addresses("v0"),
                ns.ip(&["route", "show", "table", "all"])
            ),
            kernel_before
        );

        // Hand-made: one address only on the host, one that the config also names.
        ns.ip(&["addr", "add", "10.1.0.99/24", "dev", "v0"]);
        ns.ip(&["addr", "add", "10.1.0.50/24", "dev", "v0"]);
        let second = config(
            2,
            vec![address("v0", "10.1.0.2/24"), address("v0", "10.1.0.50/24")],
            vec![
                route("10.20.0.0/16", Some("10.1.0.1"), None),
                table_route.clone(),
            ],
        );
        let response = agent.client.apply(&second).await.expect("apply 2");
        assert!(
            response
                .results
                .iter()
                .all(|r| r.state == ItemState::Applied)
        );
        let addresses = ns.addresses("v0");
        assert!(
            !addresses.contains(&"fd00:1::2/64".to_owned()),
            "removed: {addresses:?}"
        );
        assert!(
            addresses.contains(&"10.1.0.99/24".to_owned()),
            "hand-made kept: {addresses:?}"
        );
        assert_eq!(
            destinations(&ns.routes("-4", "main", "201")),
            ["10.20.0.0/16"]
        );
        assert!(ns.routes("-6", "main", "201").is_empty());

        // Dropping an item the agent found rather than made leaves it in place.
        let third = config(3, vec![address("v0", "10.1.0.2/24")], vec![]);
        agent.client.apply(&third).await.expect("apply 3");
        let addresses = ns.addresses("v0");
        assert!(
            addresses.contains(&"10.1.0.50/24".to_owned()),
            "{addresses:?}"
        );
        assert!(
            addresses.contains(&"10.1.0.99/24".to_owned()),
            "{addresses:?}"
        );
        assert!(ns.routes("-4", "all", "201").is_empty());

        // The status reports the kernel and the results.
        let status = agent.client.status().await.expect("status");
        assert_eq!(status.generation, Some(3));
        assert!(status.addresses.iter().any(|a| a.cidr == "10.1.0.99/24"));
        let v0 = status.links.iter().find(|l| l.name == "v0").unwrap();
        assert_eq!(v0.operstate, "up");
        assert!(v0.mac.is_some());
    });
}

/// The main-table IPv4 routes to `destination`, whoever made them.
fn routes_to(ns: &Netns, destination: &str) -> Vec<serde_json::Value> {
    let all = ns.ip_json(&["-4", "route", "show", "table", "main"]);
    all.as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["dst"] == destination)
        .cloned()
        .collect()
}

#[test]
fn a_hand_made_route_with_another_gateway_survives_configures() {
    if !can_run() {
        return;
    }
    let ns = Netns::with_veth();
    // The CNI's (here: a person's) route, to the destination the configuration will name,
    // through another gateway.
    ns.ip(&["addr", "add", "10.1.0.2/24", "dev", "v0"]);
    ns.ip(&[
        "route",
        "add",
        "10.20.0.0/16",
        "via",
        "10.1.0.254",
        "dev",
        "v0",
    ]);
    let theirs = routes_to(&ns, "10.20.0.0/16");
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    assert_eq!(theirs[0]["gateway"], "10.1.0.254");
    ns.clone().run(move || async move {
        let agent = TestAgent::start(settings(LONG)).await;
        let wanted = route("10.20.0.0/16", Some("10.1.0.1"), None);
        let first = config(
            1,
            vec![address("v0", "10.1.0.2/24")],
            vec![wanted.clone(), route("10.21.0.0/16", Some("10.1.0.1"), None)],
        );
        let response = agent.client.apply(&first).await.expect("apply");
        let conflict = response
            .results
            .iter()
            .find(|r| r.item == wanted.key())
            .expect("the route's result");
        assert_eq!(conflict.state, ItemState::Failed);
        let message = conflict.message.as_deref().unwrap_or_default();
        assert!(
            message.starts_with("conflict: a route to 10.20.0.0/16 in table 254 with metric 0 already exists (via 10.1.0.254 dev v0 proto 3)")
                && message.ends_with("it is left alone"),
            "{message}"
        );
        // Everything else is applied: the hand-made address (found, not owned) and the
        // route nobody else had.
        let others: Vec<_> = response
            .results
            .iter()
            .filter(|r| r.item != wanted.key())
            .collect();
        assert_eq!(others.len(), 2);
        assert!(others.iter().all(|r| r.state == ItemState::Applied), "{others:?}");
        // Untouched: same gateway, same protocol, one route (not replaced, not a multipath).
        assert_eq!(routes_to(&ns, "10.20.0.0/16"), theirs);
        assert_eq!(
            destinations(&ns.routes("-4", "main", "201")),
            ["10.21.0.0/16"]
        );

        // An empty configuration removes what the agent made and nothing else.
        agent
            .client
            .apply(&config(2, vec![], vec![]))
            .await
            .expect("apply 2");
        assert_eq!(routes_to(&ns, "10.20.0.0/16"), theirs);
        assert!(ns.routes("-4", "all", "201").is_empty());
        assert!(ns.addresses("v0").contains(&"10.1.0.2/24".to_owned()));

        // The agent's own route, by contrast, follows a new gateway (replaced in place) and
        // goes with the configuration.
        ns.ip(&["route", "del", "10.20.0.0/16"]);
        agent
            .client
            .apply(&config(3, vec![], vec![wanted.clone()]))
            .await
            .expect("apply 3");
        let regatewayed = config(
            4,
            vec![],
            vec![route("10.20.0.0/16", Some("10.1.0.3"), None)],
        );
        let response = agent.client.apply(&regatewayed).await.expect("apply 4");
        assert!(response.results.iter().all(|r| r.state == ItemState::Applied));
        let ours = ns.routes("-4", "main", "201");
        assert_eq!(destinations(&ours), ["10.20.0.0/16"]);
        assert_eq!(ours[0]["gateway"], "10.1.0.3");
        assert_eq!(routes_to(&ns, "10.20.0.0/16").len(), 1);
        agent
            .client
            .apply(&config(5, vec![], vec![]))
            .await
            .expect("apply 5");
        assert!(routes_to(&ns, "10.20.0.0/16").is_empty());
    });
}

#[test]
fn items_on_a_missing_interface_are_pending_until_it_appears() {
    if !can_run() {
        return;
    }
    let ns = Netns::new();
    ns.clone().run(move || async move {
        let agent = TestAgent::start(settings(LONG)).await;
        let desired = config(
            1,
            vec![address("late0", "10.5.0.2/24")],
            vec![route("10.50.0.0/16", None, Some("late0"))],
        );
        let response = agent.client.apply(&desired).await.expect("apply");
        for result in &response.results {
            assert_eq!(result.state, ItemState::Pending, "{result:?}");
            assert_eq!(
                result.message.as_deref(),
                Some("interface \"late0\" does not exist yet")
            );
        }
        // veth: this kernel has no dummy module.
        ns.ip(&[
            "link", "add", "late0", "type", "veth", "peer", "name", "late1",
        ]);
        ns.ip(&["link", "set", "late1", "up"]);
        ns.ip(&["link", "set", "late0", "up"]);
        agent.wait_all_applied().await;
        assert!(ns.addresses("late0").contains(&"10.5.0.2/24".to_owned()));
        assert_eq!(
            destinations(&ns.routes("-4", "main", "201")),
            ["10.50.0.0/16"]
        );
    });
}

#[test]
fn a_route_deleted_by_hand_is_restored() {
    if !can_run() {
        return;
    }
    let ns = Netns::with_veth();
    ns.clone().run(move || async move {
        // A long resync: the notification of the deletion is what triggers the repair.
        let agent = TestAgent::start(settings(LONG)).await;
        let desired = config(
            1,
            vec![address("v0", "10.1.0.2/24")],
            vec![route("10.20.0.0/16", Some("10.1.0.1"), None)],
        );
        agent.client.apply(&desired).await.expect("apply");
        assert_eq!(
            destinations(&ns.routes("-4", "main", "201")),
            ["10.20.0.0/16"]
        );
        ns.ip(&["route", "del", "10.20.0.0/16"]);
        eventually(
            "the route to come back",
            Duration::from_secs(10),
            || async {
                (destinations(&ns.routes("-4", "main", "201")) == ["10.20.0.0/16"]).then_some(())
            },
        )
        .await;
    });
}

#[test]
fn the_periodic_pass_restores_what_events_missed() {
    if !can_run() {
        return;
    }
    let ns = Netns::with_veth();
    ns.clone().run(move || async move {
        let agent = TestAgent::start(settings(Duration::from_millis(300))).await;
        let desired = config(1, vec![address("v0", "10.1.0.2/24")], vec![]);
        agent.client.apply(&desired).await.expect("apply");
        // Link down flushes nothing for addresses, but deleting and re-adding the link
        // (same name, new index) loses the address without an address notification for
        // the new link: only a pass over fresh state puts it back.
        ns.ip(&["link", "del", "v0"]);
        ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
        ns.ip(&["link", "set", "v0", "up"]);
        eventually(
            "the address on the new v0",
            Duration::from_secs(10),
            || async {
                ns.addresses("v0")
                    .contains(&"10.1.0.2/24".to_owned())
                    .then_some(())
            },
        )
        .await;
        agent.wait_all_applied().await;
    });
}

#[test]
fn a_link_going_down_reaches_watchers() {
    if !can_run() {
        return;
    }
    let ns = Netns::with_veth();
    ns.clone().run(move || async move {
        let agent = TestAgent::start(settings(LONG)).await;
        let mut watch = Box::pin(agent.client.watch().await.expect("watch"));
        let initial = watch.next().await.expect("initial").expect("status");
        let state = |s: &nes_api::Status| {
            s.links
                .iter()
                .find(|l| l.name == "v0")
                .map(|l| l.operstate.clone())
        };
        assert_eq!(state(&initial).as_deref(), Some("up"));
        let started = Instant::now();
        ns.ip(&["link", "set", "v0", "down"]);
        let seen = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(status) = watch.next().await {
                if state(&status.expect("status")).as_deref() == Some("down") {
                    return started.elapsed();
                }
            }
            panic!("the watch ended");
        })
        .await
        .expect("the watcher sees v0 down");
        eprintln!("link down reached the watcher after {seen:?}");
    });
}

#[test]
fn vlan_links_live_where_the_kernel_has_8021q() {
    if !can_run() {
        return;
    }
    let ns = Netns::with_veth();
    if let Err(error) = ns.try_ip(&[
        "link", "add", "link", "v0", "name", "probe.9", "type", "vlan", "id", "9",
    ]) {
        eprintln!(
            "\n*** SKIPPED vlan_links_live_where_the_kernel_has_8021q: this kernel cannot create \
             VLAN links (no 8021q module: {}). The VLAN netlink messages are covered by the \
             unit tests in src/netlink/messages.rs. ***\n",
            error.trim()
        );
        return;
    }
    ns.ip(&["link", "del", "probe.9"]);
    ns.clone().run(move || async move {
        let agent = TestAgent::start(settings(LONG)).await;
        let desired = DesiredConfig {
            generation: 1,
            vlans: vec![VlanLink {
                name: "v0.100".into(),
                parent: "v0".into(),
                vlan_id: 100,
                mtu: Some(1400),
            }],
            addresses: vec![address("v0.100", "10.100.0.2/24")],
            routes: vec![route("10.200.0.0/16", None, Some("v0.100"))],
        };
        let response = agent.client.apply(&desired).await.expect("apply");
        assert!(
            response
                .results
                .iter()
                .all(|r| r.state == ItemState::Applied),
            "{response:?}"
        );
        let link = ns.ip_json(&["-d", "link", "show", "v0.100"]);
        assert_eq!(link[0]["linkinfo"]["info_kind"], "vlan");
        assert_eq!(link[0]["linkinfo"]["info_data"]["id"], 100);
        assert_eq!(link[0]["mtu"], 1400);
        assert!(ns.addresses("v0.100").contains(&"10.100.0.2/24".to_owned()));
        let status = agent.client.status().await.expect("status");
        let vlan = status.links.iter().find(|l| l.name == "v0.100").unwrap();
        assert_eq!(
            (vlan.vlan_id, vlan.parent.as_deref()),
            (Some(100), Some("v0"))
        );
        // Dropping the VLAN removes the link the agent created.
        agent
            .client
            .apply(&config(2, vec![], vec![]))
            .await
            .expect("apply 2");
        assert!(ns.try_ip(&["link", "show", "v0.100"]).is_err());
    });
}

//! Benchmark: one configuration of 1,000 addresses and 1,000 routes applied by the agent in a
//! fresh network namespace (time to all-applied, no-op re-apply, removal), then the latency
//! from a link change to the status watcher. Needs root and iproute2; prints figures.
//!
//! `cargo bench -p nes-agent --bench apply`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Netns, TestAgent, can_run, settings};
use futures::StreamExt;
use nes_api::{Address, DesiredConfig, ItemState, Route};

const ITEMS: usize = 1_000;
const WATCH_SAMPLES: usize = 50;

fn config(generation: u64, items: usize) -> DesiredConfig {
    let addresses = (0..items)
        .map(|i| Address {
            interface: "v0".into(),
            cidr: format!("10.2.{}.{}/16", i / 250, i % 250 + 1),
        })
        .collect();
    let routes = (0..items)
        .map(|i| Route {
            destination: format!("10.{}.{}.0/24", 100 + i / 256, i % 256),
            // Half through a gateway on the connected /16, half straight out of v0.
            gateway: (i % 2 == 0).then(|| "10.2.255.254".parse().unwrap()),
            interface: (i % 2 == 1).then(|| "v0".into()),
            metric: None,
            table: None,
        })
        .collect();
    DesiredConfig {
        generation,
        vlans: vec![],
        addresses,
        routes,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

fn main() {
    if !can_run() {
        return;
    }
    let ns = Netns::with_veth();
    let witness = ns.clone();
    ns.run(move || async move {
        let agent = TestAgent::start(settings(Duration::from_secs(3600))).await;
        let desired = config(1, ITEMS);

        let started = Instant::now();
        let response = agent.client.apply(&desired).await.expect("apply");
        let applied = started.elapsed();
        let ok = response
            .results
            .iter()
            .filter(|r| r.state == ItemState::Applied)
            .count();
        assert_eq!(ok, 2 * ITEMS, "every item applied");
        let routes = witness.routes("-4", "main", "201").len();
        assert_eq!(routes, ITEMS, "the kernel holds every route");
        println!(
            "apply {ITEMS} addresses + {ITEMS} routes (PUT to answer, all applied): {:.1} ms",
            applied.as_secs_f64() * 1e3
        );

        let started = Instant::now();
        agent.client.apply(&desired).await.expect("re-apply");
        println!(
            "re-apply the same 2,000 items (no netlink change): {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );

        // Status change -> watcher: toggle the peer's state, which changes v0's operstate.
        let mut watch = Box::pin(agent.client.watch().await.expect("watch"));
        watch.next().await.expect("initial").expect("status");
        let operstate = |s: &nes_api::Status| {
            s.links
                .iter()
                .find(|l| l.name == "v0")
                .map(|l| l.operstate.clone())
                .unwrap_or_default()
        };
        let mut latencies = Vec::new();
        for i in 0..WATCH_SAMPLES {
            let (action, want) = if i % 2 == 0 {
                ("down", "down")
            } else {
                ("up", "up")
            };
            let started = Instant::now();
            witness.ip(&["link", "set", "v0", action]);
            loop {
                let status = watch.next().await.expect("watch open").expect("status");
                if operstate(&status) == want {
                    break;
                }
            }
            latencies.push(started.elapsed());
            // A link going up brings the kernel's routes back; let the agent settle
            // (re-adding its routes) before the next sample.
            if want == "up" {
                agent.wait_all_applied().await;
            }
        }
        latencies.sort();
        println!(
            "link change -> /v1/status/watch ({WATCH_SAMPLES} samples, from before `ip link set`, \
             which itself takes ~1-2 ms, with {} routes in the status): p50 {:.1} ms, p90 {:.1} ms, \
             max {:.1} ms",
            ITEMS,
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&latencies, 0.9).as_secs_f64() * 1e3,
            latencies[latencies.len() - 1].as_secs_f64() * 1e3,
        );

        let started = Instant::now();
        agent
            .client
            .apply(&config(2, 0))
            .await
            .expect("remove all");
        println!(
            "remove all 2,000 items (empty configuration): {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        assert!(witness.routes("-4", "main", "201").is_empty());
    });
}

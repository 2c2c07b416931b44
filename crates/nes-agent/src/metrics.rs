//! The agent's Prometheus metrics, in a registry of its own (several agents run in one test
//! process).

use std::time::Duration;

use nes_api::{ItemResult, ItemState};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Pass durations from a no-op pass (microseconds) to thousands of netlink changes (seconds).
const PASS_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The agent's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    applies: IntCounterVec,
    items: IntGaugeVec,
    netlink: IntCounterVec,
    passes: IntCounterVec,
    pass_duration: Histogram,
    resyncs: IntCounterVec,
    overruns: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Self {
        // Constant definitions: a failure is a programming error that every test would catch.
        let applies = IntCounterVec::new(
            Opts::new(
                "nes_agent_config_requests_total",
                "Desired configurations received, by outcome (accepted, invalid, conflict, unavailable)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let items = IntGaugeVec::new(
            Opts::new(
                "nes_agent_items",
                "Items of the desired configuration by state (applied, pending, failed)",
            ),
            &["state"],
        )
        .expect("valid metric");
        let netlink = IntCounterVec::new(
            Opts::new(
                "nes_agent_netlink_changes_total",
                "Netlink changes made, by result (ok, error)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let passes = IntCounterVec::new(
            Opts::new(
                "nes_agent_passes_total",
                "Reconcile passes by trigger (config, event, retry, resync)",
            ),
            &["trigger"],
        )
        .expect("valid metric");
        let pass_duration = Histogram::with_opts(
            HistogramOpts::new(
                "nes_agent_pass_duration_seconds",
                "Duration of reconcile passes",
            )
            .buckets(PASS_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let resyncs = IntCounterVec::new(
            Opts::new(
                "nes_agent_resyncs_total",
                "Full re-reads of the kernel state by reason (periodic, overrun, link)",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let overruns = IntCounter::new(
            "nes_agent_netlink_overruns_total",
            "Notification socket overruns (notifications lost, state re-read)",
        )
        .expect("valid metric");
        let registry = Registry::new();
        let collectors: [Box<dyn prometheus::core::Collector>; 7] = [
            Box::new(applies.clone()),
            Box::new(items.clone()),
            Box::new(netlink.clone()),
            Box::new(passes.clone()),
            Box::new(pass_duration.clone()),
            Box::new(resyncs.clone()),
            Box::new(overruns.clone()),
        ];
        for collector in collectors {
            registry.register(collector).expect("unique metric names");
        }
        Metrics {
            registry,
            applies,
            items,
            netlink,
            passes,
            pass_duration,
            resyncs,
            overruns,
        }
    }

    /// Counts a configuration request by outcome.
    pub fn config_request(&self, outcome: &str) {
        self.applies.with_label_values(&[outcome]).inc();
    }

    /// Counts a netlink change.
    pub fn netlink_change(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.netlink.with_label_values(&[result]).inc();
    }

    /// The number of successful netlink changes so far (tests use it to prove a no-op).
    pub fn netlink_changes_ok(&self) -> u64 {
        self.netlink.with_label_values(&["ok"]).get()
    }

    /// Records a pass.
    pub fn pass(&self, trigger: &str, took: Duration) {
        self.passes.with_label_values(&[trigger]).inc();
        self.pass_duration.observe(took.as_secs_f64());
    }

    /// Counts a full re-read of the kernel state.
    pub fn resync(&self, reason: &str) {
        self.resyncs.with_label_values(&[reason]).inc();
        if reason == "overrun" {
            self.overruns.inc();
        }
    }

    /// Sets the item gauges from the latest results.
    pub fn items(&self, results: &[ItemResult]) {
        for (state, label) in [
            (ItemState::Applied, "applied"),
            (ItemState::Pending, "pending"),
            (ItemState::Failed, "failed"),
        ] {
            let count = results.iter().filter(|r| r.state == state).count();
            self.items
                .with_label_values(&[label])
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec only fails for invalid metric families, which registration
        // rules out; an empty answer is the safe fallback.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nes_api::ItemKey;

    #[test]
    fn encodes_counts_and_item_states() {
        let metrics = Metrics::new();
        metrics.config_request("accepted");
        metrics.netlink_change(true);
        metrics.netlink_change(false);
        metrics.items(&[ItemResult {
            item: ItemKey::Vlan { name: "v".into() },
            state: ItemState::Pending,
            message: None,
        }]);
        let text = metrics.encode();
        assert!(text.contains(r#"nes_agent_config_requests_total{outcome="accepted"} 1"#));
        assert!(text.contains(r#"nes_agent_items{state="pending"} 1"#));
        assert!(text.contains(r#"nes_agent_items{state="applied"} 0"#));
        assert_eq!(metrics.netlink_changes_ok(), 1);
    }
}

//! The Prometheus metrics served on `/metrics`, in a registry of their own so that several
//! servers in one process (tests) do not share series.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

use crate::status::{FailureReason, Outcome};

/// Latency buckets from a same-node round trip (sub-millisecond) to slow cross-zone pings.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The ping metrics of one server.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    duration: HistogramVec,
    failures: IntCounterVec,
    pings: IntCounterVec,
    targets: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Self {
        // The definitions below are constants: a failure here is a programming error caught
        // by every test, never a runtime condition.
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_peer_ping_duration_seconds",
                "Duration of successful pings (new connection, GET /ping, response), by target",
            )
            .buckets(BUCKETS.to_vec()),
            &["target"],
        )
        .expect("valid metric");
        let failures = IntCounterVec::new(
            Opts::new(
                "http_peer_ping_failures_total",
                "Failed pings by target and reason (timeout, dns, connect, status, body, request)",
            ),
            &["target", "reason"],
        )
        .expect("valid metric");
        let pings = IntCounterVec::new(
            Opts::new("http_peer_pings_total", "Pings sent, by target"),
            &["target"],
        )
        .expect("valid metric");
        let targets =
            IntGauge::new("http_peer_targets", "Targets in the peers file").expect("valid metric");
        let registry = Registry::new();
        for collector in [
            Box::new(duration.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(pings.clone()),
            Box::new(targets.clone()),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        Metrics {
            registry,
            duration,
            failures,
            pings,
            targets,
        }
    }

    /// Records one ping of `target` (`host:port`).
    pub fn record(&self, target: &str, outcome: &Outcome) {
        self.pings.with_label_values(&[target]).inc();
        match outcome {
            Ok(latency) => self
                .duration
                .with_label_values(&[target])
                .observe(latency.as_secs_f64()),
            Err(failure) => self
                .failures
                .with_label_values(&[target, failure.reason.as_str()])
                .inc(),
        }
    }

    /// Sets the number of targets.
    pub fn set_targets(&self, count: usize) {
        self.targets.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Removes every series of a target that left the peers file, so that series do not
    /// accumulate as pods come and go.
    pub fn forget(&self, target: &str) {
        // Removing a series that was never created is an error we do not care about.
        let _ = self.duration.remove_label_values(&[target]);
        let _ = self.pings.remove_label_values(&[target]);
        for reason in FailureReason::ALL {
            let _ = self
                .failures
                .remove_label_values(&[target, reason.as_str()]);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# error encoding metrics: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::status::Failure;

    #[test]
    fn records_and_forgets_series() {
        let metrics = Metrics::new();
        metrics.set_targets(2);
        metrics.record("a:1", &Ok(Duration::from_millis(3)));
        metrics.record(
            "b:2",
            &Err(Failure::new(FailureReason::Connect, "connection refused")),
        );
        let text = metrics.render();
        assert!(text.contains("http_peer_targets 2"), "{text}");
        assert!(
            text.contains(r#"http_peer_pings_total{target="a:1"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"http_peer_pings_total{target="b:2"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"http_peer_ping_duration_seconds_count{target="a:1"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"http_peer_ping_failures_total{reason="connect",target="b:2"} 1"#),
            "{text}"
        );

        metrics.forget("b:2");
        metrics.forget("never-seen:3");
        let text = metrics.render();
        assert!(!text.contains("b:2"), "{text}");
        assert!(text.contains(r#"target="a:1""#), "{text}");
    }
}

//! The operator's own metrics, registered beside operator-core's.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

/// Restart metrics.
#[derive(Clone)]
pub struct RestartMetrics {
    changes: IntCounter,
    restarts: IntCounterVec,
    latency: Histogram,
}

impl RestartMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let changes = IntCounter::new(
            "appconfig_config_changes_total",
            "Data changes of listed ConfigMaps and Secrets seen",
        )?;
        let restarts = IntCounterVec::new(
            Opts::new(
                "appconfig_restarts_total",
                "Workload restarts, by kind and result",
            ),
            &["kind", "result"],
        )?;
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "appconfig_restart_latency_seconds",
                "From the change being seen (start of the debounce window) to the workload patched",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
        )?;
        registry.register(Box::new(changes.clone()))?;
        registry.register(Box::new(restarts.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(RestartMetrics {
            changes,
            restarts,
            latency,
        })
    }

    /// Records `n` changed objects.
    pub fn config_changes(&self, n: usize) {
        self.changes.inc_by(n as u64);
    }

    /// Records a restart attempt.
    pub fn restarted(&self, kind: &str, result: &str, latency: Duration) {
        self.restarts.with_label_values(&[kind, result]).inc();
        if result == "success" {
            self.latency.observe(latency.as_secs_f64());
        }
    }
}

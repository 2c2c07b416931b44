//! Reconcile metrics every operator exposes on `/metrics`, in its own Prometheus registry that
//! the operator can add its domain metrics to.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// The standard metrics of one operator.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    duration: HistogramVec,
    errors: IntCounterVec,
    in_flight: IntGauge,
    leader: IntGauge,
}

impl Metrics {
    /// Creates and registers the metrics; `operator` becomes a constant label.
    pub fn new(operator: &str) -> Self {
        let registry = Registry::new_custom(
            Some("kubecrew".into()),
            Some([("operator".to_owned(), operator.to_owned())].into()),
        )
        .expect("a valid prefix and label");
        let reconciles = IntCounterVec::new(
            Opts::new(
                "reconcile_total",
                "Reconciles by result (success, error, invalid)",
            ),
            &["result"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new("reconcile_duration_seconds", "Time spent in one reconcile")
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            &[],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new("reconcile_errors_total", "Failed reconciles by reason"),
            &["reason"],
        )
        .expect("valid metric");
        let in_flight =
            IntGauge::new("reconcile_in_flight", "Reconciles running now").expect("valid metric");
        let leader = IntGauge::new("leader", "1 while this instance holds leadership")
            .expect("valid metric");
        for m in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(errors.clone()),
            Box::new(in_flight.clone()),
            Box::new(leader.clone()),
        ] {
            registry.register(m).expect("metric names are unique");
        }
        Metrics {
            registry,
            reconciles,
            duration,
            errors,
            in_flight,
            leader,
        }
    }

    /// The registry, to register an operator's own metrics in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A reconcile started; the guard records its end.
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight { metrics: self }
    }

    /// Records a finished reconcile.
    pub fn finished(&self, result: &str, took: Duration, error_reason: Option<&str>) {
        self.reconciles.with_label_values(&[result]).inc();
        self.duration
            .with_label_values(&[] as &[&str])
            .observe(took.as_secs_f64());
        if let Some(reason) = error_reason {
            self.errors.with_label_values(&[reason]).inc();
        }
    }

    /// Records whether this instance leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The Prometheus text exposition of every registered metric.
    pub fn render(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

/// Decrements the in-flight gauge when dropped.
pub struct InFlight<'a> {
    metrics: &'a Metrics,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new("demo");
        {
            let _g = m.start();
            m.finished("error", Duration::from_millis(20), Some("KafkaUnavailable"));
        }
        m.finished("success", Duration::from_millis(5), None);
        let text = m.render();
        assert!(
            text.contains(r#"kubecrew_reconcile_total{result="error",operator="demo"} 1"#),
            "{text}"
        );
        assert!(text.contains(
            r#"kubecrew_reconcile_errors_total{reason="KafkaUnavailable",operator="demo"} 1"#
        ));
        assert!(text.contains(r#"kubecrew_reconcile_duration_seconds_count{operator="demo"} 2"#));
        assert!(text.contains(r#"kubecrew_reconcile_in_flight{operator="demo"} 0"#));
    }
}

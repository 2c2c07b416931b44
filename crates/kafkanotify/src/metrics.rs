//! The operator's own metrics, registered beside operator-core's.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Publication metrics.
#[derive(Clone)]
pub struct PublishMetrics {
    published: IntCounterVec,
    latency: HistogramVec,
    errors: IntCounterVec,
    skipped: IntCounterVec,
    cached_topics: IntGauge,
    resets: prometheus::IntCounter,
}

impl PublishMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let published = IntCounterVec::new(
            Opts::new(
                "kafkanotify_events_published_total",
                "Notifications acknowledged by the broker, by event type",
            ),
            &["type"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "kafkanotify_publish_duration_seconds",
                "Time from starting a publish to the broker's acknowledgement",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["type"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "kafkanotify_publish_errors_total",
                "Publications that failed, by reason",
            ),
            &["reason"],
        )?;
        let skipped = IntCounterVec::new(
            Opts::new(
                "kafkanotify_removal_notices_skipped_total",
                "Deleted resources whose removal notice was given up on, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(skipped.clone()))?;
        let cached_topics = IntGauge::new(
            "kafkanotify_publisher_cached_topics",
            "Topics the publisher holds metadata and partition clients for (bounded, LRU)",
        )?;
        registry.register(Box::new(cached_topics.clone()))?;
        let resets = prometheus::IntCounter::new(
            "kafkanotify_connection_resets_total",
            "Times the shared Kafka connection was dropped after a connection-level error",
        )?;
        registry.register(Box::new(resets.clone()))?;
        registry.register(Box::new(published.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        Ok(PublishMetrics {
            published,
            latency,
            errors,
            skipped,
            cached_topics,
            resets,
        })
    }

    /// Records an acknowledged publication.
    pub fn published(&self, kind: &str, took: std::time::Duration) {
        self.published.with_label_values(&[kind]).inc();
        self.latency
            .with_label_values(&[kind])
            .observe(took.as_secs_f64());
    }

    /// Records a deletion that finished without its removal notice (`Annotation`, `Timeout`).
    pub fn removal_skipped(&self, reason: &str) {
        self.skipped.with_label_values(&[reason]).inc();
    }

    /// Records the size of the publisher's topic cache.
    pub fn cached_topics(&self, topics: usize) {
        self.cached_topics
            .set(i64::try_from(topics).unwrap_or(i64::MAX));
    }

    /// Records that the shared connection was reset.
    pub fn connection_reset(&self) {
        self.resets.inc();
    }

    /// Records a failed publication.
    pub fn failed(&self, reason: &str) {
        self.errors.with_label_values(&[reason]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Encoder;

    #[test]
    fn metrics_render_with_labels() {
        let registry = Registry::new();
        let m = PublishMetrics::register(&registry).unwrap();
        m.published("migrated", std::time::Duration::from_millis(3));
        m.failed("KafkaUnavailable");
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("kafkanotify_events_published_total{type=\"migrated\"} 1"));
        assert!(text.contains("kafkanotify_publish_errors_total{reason=\"KafkaUnavailable\"} 1"));
        assert!(text.contains(
            "kafkanotify_publish_duration_seconds_bucket{type=\"migrated\",le=\"0.005\"} 1"
        ));
        assert!(
            PublishMetrics::register(&registry).is_err(),
            "registered once"
        );
    }
}

//! Prometheus metrics of the server, served on `/metrics`.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// How a token check was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// From the cache of accepted tokens.
    Hit,
    /// From the cache of refused tokens.
    NegativeHit,
    /// By a TokenReview.
    Miss,
}

/// The server's metrics. Cheap to clone; clones share the series.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    review_seconds: HistogramVec,
    review_cache: IntCounterVec,
    auth_throttled: IntCounter,
    watches: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every series registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "nes_cliserver_requests_total",
                "HTTP requests by route template and status code",
            ),
            &["route", "code"],
        )
        .expect("valid metric definition");
        let review_seconds = HistogramVec::new(
            HistogramOpts::new(
                "nes_cliserver_tokenreview_duration_seconds",
                "Latency of TokenReview calls to the API server (cache misses)",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            &[],
        )
        .expect("valid metric definition");
        let review_cache = IntCounterVec::new(
            Opts::new(
                "nes_cliserver_tokenreview_cache_total",
                "Token checks answered from the cache of accepted tokens (hit), of refused tokens (negative_hit), or by a TokenReview (miss)",
            ),
            &["result"],
        )
        .expect("valid metric definition");
        let auth_throttled = IntCounter::new(
            "nes_cliserver_auth_throttled_total",
            "Requests answered 429 because their source failed authentication too often",
        )
        .expect("valid metric definition");
        let watches = IntGauge::new("nes_cliserver_status_watches", "Status watches open now")
            .expect("valid metric definition");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(review_seconds.clone()),
            Box::new(review_cache.clone()),
            Box::new(auth_throttled.clone()),
            Box::new(watches.clone()),
        ] {
            registry
                .register(collector)
                .expect("each metric is registered once");
        }
        Metrics {
            registry,
            requests,
            review_seconds,
            review_cache,
            auth_throttled,
            watches,
        }
    }

    /// Counts one answered request.
    pub fn request(&self, route: &str, code: u16) {
        self.requests
            .with_label_values(&[route, &code.to_string()])
            .inc();
    }

    /// Records the latency of one TokenReview call.
    pub fn observe_review(&self, took: Duration) {
        self.review_seconds
            .with_label_values(&[] as &[&str])
            .observe(took.as_secs_f64());
    }

    /// Counts one token check.
    pub fn review_cache(&self, result: CacheResult) {
        let label = match result {
            CacheResult::Hit => "hit",
            CacheResult::NegativeHit => "negative_hit",
            CacheResult::Miss => "miss",
        };
        self.review_cache.with_label_values(&[label]).inc();
    }

    /// Counts one request refused for its source's failed authentications.
    pub fn auth_throttled(&self) {
        self.auth_throttled.inc();
    }

    /// The gauge of open status watches.
    pub fn watches(&self) -> IntGauge {
        self.watches.clone()
    }

    /// The Prometheus text exposition.
    pub fn text(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec fails only on metric families the registry never produces.
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_appear_in_the_text() {
        let metrics = Metrics::new();
        metrics.request("/v1/namespaces/{namespace}/pods/{pod}/status", 403);
        metrics.observe_review(Duration::from_millis(3));
        metrics.review_cache(CacheResult::Hit);
        metrics.review_cache(CacheResult::NegativeHit);
        metrics.auth_throttled();
        metrics.watches().inc();
        let text = metrics.text();
        assert!(
            text.contains(
                r#"nes_cliserver_requests_total{code="403",route="/v1/namespaces/{namespace}/pods/{pod}/status"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("nes_cliserver_tokenreview_duration_seconds_count 1"));
        assert!(text.contains(r#"nes_cliserver_tokenreview_cache_total{result="hit"} 1"#));
        assert!(text.contains(r#"nes_cliserver_tokenreview_cache_total{result="negative_hit"} 1"#));
        assert!(text.contains("nes_cliserver_auth_throttled_total 1"));
        assert!(text.contains("nes_cliserver_status_watches 1"));
    }
}

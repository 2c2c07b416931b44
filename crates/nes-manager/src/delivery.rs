//! Delivering reports to a NetworkCare callback: one worker per subscription POSTs its reports
//! one after the other (so a callback sees them in order), each with a timeout and bounded
//! retries with exponential backoff; the outcome is counted in [`Stats`] and the NetworkCare
//! reconciler is triggered to write it to the status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nes_api::report::Report;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::DeliverySettings;

/// Delivery counters of one NetworkCare (by uid).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Reports delivered.
    pub deliveries: i64,
    /// Reports given up on (all attempts failed, or dropped from a full queue).
    pub failures: i64,
    /// When a report was last delivered.
    pub last_delivery_time: Option<jiff::Timestamp>,
    /// The last failure; never a report's content.
    pub last_error: Option<String>,
    /// Whether the last report failed.
    pub failing: bool,
    /// Pods the subscription selects now.
    pub selected: usize,
    /// Whether the counts already include those of the resource's status (written by an
    /// earlier manager, or by the other replica while it led), so they continue from them
    /// instead of starting at zero.
    pub restored: bool,
    /// The leadership term these counts were kept in (see [`Stats::new_term`]).
    pub term: u64,
}

/// The counters of every NetworkCare, shared by the delivery workers, the hub and the
/// NetworkCare reconciler (the only writer of the status).
#[derive(Debug, Clone, Default)]
pub struct Stats {
    inner: Arc<Mutex<Terms>>,
}

#[derive(Debug, Default)]
struct Terms {
    term: u64,
    counters: HashMap<String, Counters>,
}

impl Stats {
    /// Runs `f` on the counters of `uid`, creating them when new. Counters of an earlier term
    /// start over (and are restored from the status again): the other replica may have counted
    /// meanwhile, and its counts are in the status, not here.
    pub fn update<T>(&self, uid: &str, f: impl FnOnce(&mut Counters) -> T) -> T {
        let mut terms = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let term = terms.term;
        let counters = terms.counters.entry(uid.to_owned()).or_default();
        if counters.term != term {
            *counters = Counters {
                term,
                ..Counters::default()
            };
        }
        f(counters)
    }

    /// Whether the counters of `uid` have not taken in the status's counts in this term yet.
    pub fn needs_restore(&self, uid: &str) -> bool {
        let terms = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        terms
            .counters
            .get(uid)
            .is_none_or(|c| c.term != terms.term || !c.restored)
    }

    /// Starts a new term: called when this replica stops leading, so whatever it kept counting
    /// is dropped before it may lead again.
    pub fn new_term(&self) {
        let mut terms = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        terms.term += 1;
    }

    /// Forgets the subscriptions not in `keep`.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .counters
            .retain(|uid, _| keep(uid));
    }
}

/// A running delivery worker.
pub struct Worker {
    sender: mpsc::Sender<Report>,
    stop: CancellationToken,
    /// The callback it delivers to.
    pub url: String,
}

impl Worker {
    /// Starts a worker delivering to `url` for the subscription `uid`; `delivered` is called
    /// after each report's outcome is counted.
    pub fn start(
        http: reqwest::Client,
        url: String,
        uid: String,
        stats: Stats,
        settings: DeliverySettings,
        delivered: impl Fn() + Send + 'static,
        stop: CancellationToken,
    ) -> Self {
        let (sender, receiver) = mpsc::channel(settings.queue.max(1));
        let worker = Worker {
            sender,
            stop: stop.clone(),
            url: url.clone(),
        };
        tokio::spawn(async move {
            deliver_all(http, url, uid, stats, settings, receiver, delivered, stop).await;
        });
        worker
    }

    /// Queues `report`; `false` when the queue is full (the report is dropped).
    pub fn send(&self, report: Report) -> bool {
        self.sender.try_send(report).is_ok()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[allow(clippy::too_many_arguments)]
async fn deliver_all(
    http: reqwest::Client,
    url: String,
    uid: String,
    stats: Stats,
    settings: DeliverySettings,
    mut receiver: mpsc::Receiver<Report>,
    delivered: impl Fn(),
    stop: CancellationToken,
) {
    loop {
        let report = tokio::select! {
            _ = stop.cancelled() => return,
            report = receiver.recv() => match report {
                Some(report) => report,
                None => return,
            },
        };
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            outcome = deliver(&http, &url, &report, &settings) => outcome,
        };
        stats.update(&uid, |c| match outcome {
            Ok(()) => {
                c.deliveries += 1;
                // Whole seconds, as the status stores it: the reconciler compares the two.
                c.last_delivery_time =
                    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).ok();
                c.failing = false;
            }
            Err(error) => {
                tracing::warn!(care = %report.network_care.name, namespace = %report.network_care.namespace,
                    pod = %report.pod, %error, "report not delivered");
                c.failures += 1;
                c.last_error = Some(error);
                c.failing = true;
            }
        });
        delivered();
    }
}

/// POSTs `report` until it is accepted (2xx) or the attempts are spent; the error is the last
/// attempt's, without the URL (it may carry credentials in its query).
async fn deliver(
    http: &reqwest::Client,
    url: &str,
    report: &Report,
    settings: &DeliverySettings,
) -> Result<(), String> {
    let attempts = settings.attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = http
            .post(url)
            .timeout(settings.timeout)
            .json(report)
            .send()
            .await;
        let error = match result {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => format!("the callback answered HTTP {}", response.status()),
            Err(e) => format!("POST to the callback failed: {}", e.without_url()),
        };
        if attempt >= attempts {
            return Err(format!("{error} (after {attempts} attempts)"));
        }
        let delay = settings.backoff.delay(attempt, rand::random::<f64>());
        tracing::debug!(%error, attempt, retry_in = ?delay, "retrying a report");
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_of_an_earlier_term_start_over_and_are_restored_again() {
        let stats = Stats::default();
        assert!(stats.needs_restore("a"));
        stats.update("a", |c| {
            c.restored = true;
            c.deliveries = 5;
        });
        assert!(!stats.needs_restore("a"));
        stats.update("a", |c| c.deliveries += 1);
        assert_eq!(stats.update("a", |c| c.deliveries), 6);

        // Leadership lost: what this replica counted is dropped; the status (written by the
        // next leader) is restored from again.
        stats.new_term();
        assert!(stats.needs_restore("a"));
        let fresh = stats.update("a", |c| c.clone());
        assert_eq!(
            (fresh.deliveries, fresh.restored, fresh.term),
            (0, false, 1)
        );
        // A delivery before the restore still counts: the restore adds the status to it.
        stats.update("a", |c| c.deliveries += 1);
        assert!(stats.needs_restore("a"));
        assert_eq!(stats.update("a", |c| c.deliveries), 1);
    }
}

//! Pinging the targets: every round, all of them at once, then a randomised wait.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::peers::Target;
use crate::status::{self, Failure, FailureReason, Outcome, PeerTable};

/// How much of a ping's response body is read. A peer's answer is `pong`; a larger body is
/// not read to its end, so a misbehaving target cannot make the pinger buffer much.
const BODY_MAX_BYTES: usize = 4096;

/// The shortest wait between rounds whatever the jitter draws, so no loop spins.
const MIN_WAIT: Duration = Duration::from_millis(1);

/// Builds the HTTP client all pings share.
///
/// Idle connections are not kept: each ping opens a new connection. With rounds 30 s apart
/// a kept connection would mostly be closed by the peer's idle timeout, and reusing one just
/// as the peer closes it fails the ping for no network reason. A new connection also tests
/// what a new client of the peer goes through (network policy, conntrack, the TCP handshake).
/// Proxies from the environment are ignored: pings must take the pod network's direct path.
pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .connect_timeout(timeout)
        .timeout(timeout)
        .tcp_nodelay(true)
        .user_agent(concat!("http-peer/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The wait before the next round: `interval` scaled by `1 ± jitter`, where `unit` (a
/// uniform random number in `0..1`) picks the point in that range.
pub fn jittered(interval: Duration, jitter: f64, unit: f64) -> Duration {
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let factor = 1.0 + jitter * (2.0 * unit - 1.0);
    interval.mul_f64(factor).max(MIN_WAIT)
}

/// Pings the targets of `targets` every round until `cancel`.
pub struct Pinger {
    /// The shared client (see [`client`]).
    pub client: reqwest::Client,
    /// Time between rounds, before jitter.
    pub interval: Duration,
    /// Jitter fraction, see [`jittered`].
    pub jitter: f64,
    /// Where outcomes are recorded for `/peers`.
    pub table: Arc<PeerTable>,
    /// Where outcomes are counted for `/metrics`.
    pub metrics: Metrics,
}

impl Pinger {
    /// Runs rounds until `cancel`. A change of the targets starts a round at once (after the
    /// current one), so new peers are checked without waiting for the interval.
    pub async fn run(self, mut targets: watch::Receiver<Arc<[Target]>>, cancel: CancellationToken) {
        let mut sender_open = true;
        loop {
            // Targets change only here, between rounds, so a round's outcomes always belong
            // to current targets and a removed target's series are not re-created.
            let current = targets.borrow_and_update().clone();
            for gone in self.table.set_targets(&current) {
                self.metrics.forget(&gone.to_string());
            }
            self.metrics.set_targets(current.len());

            let outcomes = tokio::select! {
                _ = cancel.cancelled() => return,
                outcomes = join_all(current.iter().map(|t| self.ping_and_log(t))) => outcomes,
            };
            self.table.record(outcomes);

            let wait = jittered(self.interval, self.jitter, rand::random::<f64>());
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                changed = targets.changed(), if sender_open => {
                    // The sender only goes away at shutdown; stop listening to it rather
                    // than spin on a closed channel.
                    sender_open = changed.is_ok();
                }
            }
        }
    }

    /// Pings one target, records it in the metrics and logs it.
    async fn ping_and_log(&self, target: &Target) -> (Target, Outcome, jiff::Timestamp) {
        let outcome = ping(&self.client, target).await;
        let finished = jiff::Timestamp::now();
        let label = target.to_string();
        self.metrics.record(&label, &outcome);
        match &outcome {
            Ok(latency) => tracing::info!(
                target = %label,
                ok = true,
                latency_ms = status::millis(*latency),
                "ping"
            ),
            Err(failure) => tracing::warn!(
                target = %label,
                ok = false,
                reason = failure.reason.as_str(),
                error = %failure.message,
                "ping"
            ),
        }
        (target.clone(), outcome, finished)
    }
}

/// One ping: `GET http://host:port/ping`, successful on a 2xx answer whose body arrived
/// within the client's timeout.
pub async fn ping(client: &reqwest::Client, target: &Target) -> Outcome {
    let started = Instant::now();
    let mut response = client
        .get(target.ping_url())
        .send()
        .await
        .map_err(|e| failure(&e))?;
    let status = response.status();
    if !status.is_success() {
        return Err(Failure::new(
            FailureReason::Status,
            format!("HTTP {status}"),
        ));
    }
    let mut read = 0;
    while read <= BODY_MAX_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            Ok(None) => break,
            Err(e) => return Err(failure(&e)),
        }
    }
    Ok(started.elapsed())
}

/// Classifies a client error and describes it without the URL (the target is logged beside).
fn failure(error: &reqwest::Error) -> Failure {
    let chain = source_chain(error);
    let reason = if error.is_timeout() {
        FailureReason::Timeout
    } else if error.is_connect() {
        // hyper-util names resolver failures "dns error" in the chain.
        if chain.iter().any(|message| message == "dns error") {
            FailureReason::Dns
        } else {
            FailureReason::Connect
        }
    } else if error.is_body() || error.is_decode() {
        FailureReason::Body
    } else {
        FailureReason::Request
    };
    let message = if reason == FailureReason::Timeout {
        "no complete answer within the timeout".to_owned()
    } else {
        describe(&chain)
    };
    Failure::new(reason, message)
}

/// The messages of an error's sources, innermost last (the error itself is left out: for a
/// client error it is only "error sending request for url (...)").
fn source_chain(error: &(dyn StdError + 'static)) -> Vec<String> {
    let mut chain = Vec::new();
    let mut next = error.source();
    while let Some(source) = next {
        chain.push(source.to_string());
        next = source.source();
    }
    chain
}

/// The useful part of a source chain: its last two messages (e.g. `tcp connect error:
/// Connection refused (os error 111)`), the outer ones being generic wrappers.
fn describe(chain: &[String]) -> String {
    match chain {
        [] => "request failed".to_owned(),
        [only] => only.clone(),
        [.., outer, inner] => format!("{outer}: {inner}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_spreads_waits_around_the_interval() {
        let interval = Duration::from_secs(30);
        assert_eq!(jittered(interval, 0.2, 0.0), Duration::from_secs(24));
        assert_eq!(jittered(interval, 0.2, 0.5), Duration::from_secs(30));
        assert_eq!(jittered(interval, 0.2, 1.0), Duration::from_secs(36));
        assert_eq!(jittered(interval, 0.0, 0.9), interval);
    }

    #[test]
    fn jitter_never_gives_a_zero_or_absurd_wait() {
        let interval = Duration::from_secs(1);
        assert_eq!(jittered(interval, 1.0, 0.0), MIN_WAIT);
        assert_eq!(jittered(interval, 5.0, 0.0), MIN_WAIT);
        assert_eq!(jittered(interval, f64::NAN, 0.0), interval);
        assert_eq!(jittered(interval, 0.5, f64::NAN), interval);
        assert_eq!(jittered(interval, 0.5, 7.0), Duration::from_millis(1500));
    }

    #[test]
    fn describe_keeps_the_innermost_messages() {
        let chain = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(describe(&[]), "request failed");
        assert_eq!(describe(&chain(&["a"])), "a");
        assert_eq!(
            describe(&chain(&[
                "client error (Connect)",
                "tcp connect error",
                "Connection refused (os error 111)"
            ])),
            "tcp connect error: Connection refused (os error 111)"
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn source_chain_leaves_out_the_error_itself() {
        let error = Outer(std::io::Error::other("inner"));
        assert_eq!(source_chain(&error), vec!["inner".to_owned()]);
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_failure() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let client = client(Duration::from_secs(2)).expect("client");
        let failure = ping(&client, &Target::new("127.0.0.1", port))
            .await
            .expect_err("nothing listens");
        assert_eq!(failure.reason, FailureReason::Connect, "{failure:?}");
        assert!(failure.message.contains("refused"), "{failure:?}");
    }

    #[tokio::test]
    async fn an_unresolvable_name_is_a_dns_failure() {
        // `.invalid` is reserved (RFC 6761): it never resolves, with or without a network.
        let client = client(Duration::from_secs(5)).expect("client");
        let failure = ping(&client, &Target::new("peer.invalid", 80))
            .await
            .expect_err("does not resolve");
        assert_eq!(failure.reason, FailureReason::Dns, "{failure:?}");
    }
}

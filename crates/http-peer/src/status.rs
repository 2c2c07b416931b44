//! What the server knows about each target: the outcome of the last ping, kept per target
//! (fixed size, the error message capped) so memory is bounded by the number of targets.

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::peers::Target;

/// The longest error message kept per target.
const MESSAGE_MAX_CHARS: usize = 200;

/// Why a ping failed; the `reason` label of `http_peer_ping_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureReason {
    /// No complete answer within the timeout.
    Timeout,
    /// The host name did not resolve.
    Dns,
    /// The TCP connection failed (refused, unreachable, reset while connecting).
    Connect,
    /// The peer answered with a non-2xx status.
    Status,
    /// Reading the response body failed.
    Body,
    /// Any other failure of the request (e.g. the connection closed mid-response).
    Request,
}

impl FailureReason {
    /// Every reason, to remove all series of a target.
    pub const ALL: [FailureReason; 6] = [
        FailureReason::Timeout,
        FailureReason::Dns,
        FailureReason::Connect,
        FailureReason::Status,
        FailureReason::Body,
        FailureReason::Request,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::Dns => "dns",
            FailureReason::Connect => "connect",
            FailureReason::Status => "status",
            FailureReason::Body => "body",
            FailureReason::Request => "request",
        }
    }
}

/// A failed ping: its reason and a human readable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The class of failure.
    pub reason: FailureReason,
    /// What happened, at most 200 characters.
    pub message: String,
}

impl Failure {
    /// Creates a failure, cutting the message to 200 characters.
    pub fn new(reason: FailureReason, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if let Some((cut, _)) = message.char_indices().nth(MESSAGE_MAX_CHARS) {
            message.truncate(cut);
            message.push_str("...");
        }
        Failure { reason, message }
    }
}

/// The outcome of one ping: its latency, or why it failed.
pub type Outcome = Result<Duration, Failure>;

/// The state of one target.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerStatus {
    /// The last outcome, `None` before the first ping.
    pub last: Option<Outcome>,
    /// When the last ping finished.
    pub checked_at: Option<jiff::Timestamp>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
}

impl PeerStatus {
    /// Records the outcome of a ping that finished at `at`.
    pub fn record(&mut self, outcome: Outcome, at: jiff::Timestamp) {
        self.consecutive_failures = match outcome {
            Ok(_) => 0,
            Err(_) => self.consecutive_failures.saturating_add(1),
        };
        self.last = Some(outcome);
        self.checked_at = Some(at);
    }
}

/// One target as `/peers` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerView {
    /// Host as listed.
    pub host: String,
    /// Port as listed.
    pub port: u16,
    /// Whether the last ping succeeded (false before the first one).
    pub ok: bool,
    /// Latency of the last ping in milliseconds, when it succeeded.
    pub latency_ms: Option<f64>,
    /// Why the last ping failed (`timeout`, `connect`, ...).
    pub reason: Option<&'static str>,
    /// What happened, when the last ping failed.
    pub error: Option<String>,
    /// When the last ping finished, RFC 3339; `null` before the first one.
    pub checked_at: Option<String>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
}

impl PeerView {
    fn new(target: &Target, status: &PeerStatus) -> Self {
        let (ok, latency_ms, reason, error) = match &status.last {
            Some(Ok(latency)) => (true, Some(millis(*latency)), None, None),
            Some(Err(failure)) => (
                false,
                None,
                Some(failure.reason.as_str()),
                Some(failure.message.clone()),
            ),
            None => (false, None, None, None),
        };
        PeerView {
            host: target.host.clone(),
            port: target.port,
            ok,
            latency_ms,
            reason,
            error,
            checked_at: status.checked_at.map(|at| at.to_string()),
            consecutive_failures: status.consecutive_failures,
        }
    }
}

/// Milliseconds with microsecond precision (`1.234`), the unit of `latencyMs` and of the
/// `latency_ms` log field.
pub fn millis(duration: Duration) -> f64 {
    duration.as_micros() as f64 / 1000.0
}

/// The state of every current target, shared by the pinger (writer) and `/peers` (reader).
#[derive(Debug, Default)]
pub struct PeerTable {
    // A std lock: it is never held across an await, and a poisoned lock still holds
    // consistent data (each update is a single insert or assignment).
    peers: RwLock<BTreeMap<Target, PeerStatus>>,
}

impl PeerTable {
    /// Makes `targets` the current set: new ones start unknown, kept ones keep their state.
    /// Returns the targets that left.
    pub fn set_targets(&self, targets: &[Target]) -> Vec<Target> {
        let mut peers = self.peers.write().unwrap_or_else(PoisonError::into_inner);
        let mut kept = BTreeMap::new();
        for target in targets {
            let status = peers.remove(target).unwrap_or_default();
            kept.insert(target.clone(), status);
        }
        let removed = std::mem::replace(&mut *peers, kept);
        removed.into_keys().collect()
    }

    /// Records outcomes (each with the time its ping finished); outcomes of targets no
    /// longer current are dropped.
    pub fn record(&self, outcomes: Vec<(Target, Outcome, jiff::Timestamp)>) {
        let mut peers = self.peers.write().unwrap_or_else(PoisonError::into_inner);
        for (target, outcome, at) in outcomes {
            if let Some(status) = peers.get_mut(&target) {
                status.record(outcome, at);
            }
        }
    }

    /// Every current target, sorted by host and port.
    pub fn snapshot(&self) -> Vec<PeerView> {
        let peers = self.peers.read().unwrap_or_else(PoisonError::into_inner);
        peers
            .iter()
            .map(|(target, status)| PeerView::new(target, status))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(seconds).expect("valid timestamp")
    }

    #[test]
    fn consecutive_failures_count_until_a_success() {
        let mut status = PeerStatus::default();
        let refused = || Err(Failure::new(FailureReason::Connect, "refused"));
        status.record(refused(), at(1));
        status.record(refused(), at(2));
        assert_eq!(status.consecutive_failures, 2);
        status.record(Ok(Duration::from_millis(1)), at(3));
        assert_eq!(status.consecutive_failures, 0);
        assert_eq!(status.checked_at, Some(at(3)));
        status.consecutive_failures = u32::MAX;
        status.record(refused(), at(4));
        assert_eq!(status.consecutive_failures, u32::MAX);
    }

    #[test]
    fn millis_keep_microseconds() {
        assert_eq!(millis(Duration::from_nanos(1_119_941)), 1.119);
        assert_eq!(millis(Duration::ZERO), 0.0);
    }

    #[test]
    fn long_messages_are_cut() {
        let failure = Failure::new(FailureReason::Request, "é".repeat(500));
        assert_eq!(failure.message.chars().count(), MESSAGE_MAX_CHARS + 3);
    }

    #[test]
    fn table_keeps_state_of_kept_targets_and_reports_removed_ones() {
        let table = PeerTable::default();
        let (a, b, c) = (
            Target::new("a", 1),
            Target::new("b", 2),
            Target::new("c", 3),
        );
        assert!(table.set_targets(&[a.clone(), b.clone()]).is_empty());
        table.record(vec![
            (a.clone(), Ok(Duration::from_micros(1500)), at(10)),
            (
                b.clone(),
                Err(Failure::new(FailureReason::Timeout, "slow")),
                at(10),
            ),
            (c.clone(), Ok(Duration::from_millis(1)), at(10)),
        ]);
        assert_eq!(table.set_targets(&[c.clone(), a.clone()]), vec![b]);
        let views = table.snapshot();
        assert_eq!(views.len(), 2);
        assert_eq!(views[0].host, "a");
        assert!(views[0].ok);
        assert_eq!(views[0].latency_ms, Some(1.5));
        assert_eq!(views[0].checked_at.as_deref(), Some("1970-01-01T00:00:10Z"));
        assert_eq!(views[1].host, "c");
        assert!(!views[1].ok, "c was not current when its outcome arrived");
        assert_eq!(views[1].checked_at, None);
    }

    #[test]
    fn view_serializes_as_documented() {
        let mut status = PeerStatus::default();
        status.record(Err(Failure::new(FailureReason::Connect, "refused")), at(0));
        let json = serde_json::to_value(PeerView::new(&Target::new("p", 80), &status))
            .expect("serializable");
        assert_eq!(
            json,
            serde_json::json!({
                "host": "p", "port": 80, "ok": false, "latencyMs": null,
                "reason": "connect", "error": "refused",
                "checkedAt": "1970-01-01T00:00:00Z", "consecutiveFailures": 1
            })
        );
    }
}

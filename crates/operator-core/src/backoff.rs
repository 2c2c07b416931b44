//! Per-object exponential backoff for failed reconciles. kube-runtime requeues errors at
//! whatever the error policy says; this keeps one attempt counter per object so a broken object
//! backs off (doubling, capped, jittered) without slowing the others, and resets on success.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The shape of the backoff.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
    /// Growth per failure.
    pub factor: f64,
    /// Fraction of the delay randomised (0.1 = ±10%), so many failing objects spread out.
    pub jitter: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(300),
            factor: 2.0,
            jitter: 0.1,
        }
    }
}

impl Policy {
    /// The delay before retry number `attempt` (1 = after the first failure). `random` is a
    /// value in [0, 1) that picks the point within the jitter band.
    pub fn delay(&self, attempt: u32, random: f64) -> Duration {
        let exp = self.factor.powi(attempt.saturating_sub(1).min(64) as i32);
        let base = (self.initial.as_secs_f64() * exp).min(self.max.as_secs_f64());
        let jittered = base * (1.0 + self.jitter * (2.0 * random.clamp(0.0, 1.0) - 1.0));
        Duration::from_secs_f64(jittered.clamp(0.0, self.max.as_secs_f64()))
    }
}

/// Attempt counters per object key.
#[derive(Debug, Default)]
pub struct Backoffs {
    policy: Policy,
    attempts: Mutex<HashMap<String, u32>>,
}

impl Backoffs {
    /// Counters following `policy`.
    pub fn new(policy: Policy) -> Self {
        Backoffs {
            policy,
            attempts: Mutex::new(HashMap::new()),
        }
    }

    /// Records a failure of `key`; returns how long to wait before retrying it.
    pub fn failed(&self, key: &str) -> Duration {
        self.failed_with(key, rand::random::<f64>())
    }

    /// [`Backoffs::failed`] with the jitter draw given (tests).
    pub fn failed_with(&self, key: &str, random: f64) -> Duration {
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let n = attempts.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        self.policy.delay(*n, random)
    }

    /// Records a success of `key`: the next failure starts from the initial delay again.
    pub fn succeeded(&self, key: &str) {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Failures recorded for `key` since its last success.
    pub fn attempts(&self, key: &str) -> u32 {
        self.attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let b = Backoffs::new(Policy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(10),
            factor: 2.0,
            jitter: 0.0,
        });
        let delays: Vec<u64> = (0..6).map(|_| b.failed_with("a", 0.5).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
        assert_eq!(b.failed_with("other", 0.5).as_secs(), 1, "per object");
        b.succeeded("a");
        assert_eq!(b.attempts("a"), 0);
        assert_eq!(b.failed_with("a", 0.5).as_secs(), 1);
    }

    #[test]
    fn jitter_stays_in_band() {
        let p = Policy {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(100),
            factor: 2.0,
            jitter: 0.1,
        };
        assert_eq!(p.delay(1, 0.0), Duration::from_secs(9));
        assert_eq!(p.delay(1, 1.0), Duration::from_secs(11));
        assert!(
            p.delay(10, 1.0) <= Duration::from_secs(100),
            "never above max"
        );
    }
}

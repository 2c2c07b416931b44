//! The per-source limit on failed authentication: each source address has a budget of
//! `per_minute` allowances, refilled at `per_minute` a minute. A TokenReview the caches cannot
//! answer takes one allowance before it is made and gives it back when the token is accepted,
//! so only refused tokens use a source's budget up; with none left, the source's requests that
//! would need a review are answered 429 (with the wait) without one. Reviews answered from the
//! caches cost nothing and are never throttled.
//!
//! Taking before the review, not counting after it, keeps the limit exact when one source sends
//! many requests at once. Time is passed in, so the rules are tested without waiting.
//!
//! (governor, the usual crate for this, has no way to give an allowance back or to look at a
//! key's budget without spending it, which "count failures only" needs.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// At most this many sources are tracked; beyond, those with a full budget (which are the same
/// as untracked) are dropped, then all.
const MAX_SOURCES: usize = 16 * 1024;

/// The failure budgets of every source, kept as the generic cell rate algorithm does: per
/// source, the time at which its budget would be full again (`full_at`), in whole durations so
/// the arithmetic is exact.
#[derive(Debug)]
pub struct Throttle {
    per_minute: u32,
    full_at: HashMap<IpAddr, Instant>,
}

impl Throttle {
    /// `per_minute` failed authentications per source and minute, in bursts of as many; zero
    /// turns the limit off.
    pub fn new(per_minute: u32) -> Self {
        Throttle {
            per_minute,
            full_at: HashMap::new(),
        }
    }

    /// The time one allowance takes to come back.
    fn interval(&self) -> Duration {
        Duration::from_secs(60) / self.per_minute.max(1)
    }

    /// How far ahead of now a budget may be spent: a burst of `per_minute`.
    fn tolerance(&self) -> Duration {
        self.interval() * self.per_minute.saturating_sub(1)
    }

    /// Takes one allowance of `source` for a review about to be made, or says how long until it
    /// has one again.
    pub fn take(&mut self, source: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let full_at = self.full_at.get(&source).copied().unwrap_or(now).max(now);
        let limit = now + self.tolerance();
        if full_at > limit {
            return Err(full_at - limit);
        }
        if !self.full_at.contains_key(&source) && self.full_at.len() >= MAX_SOURCES {
            self.make_room(now);
        }
        self.full_at.insert(source, full_at + self.interval());
        Ok(())
    }

    /// Gives back the allowance taken for a review that accepted the token (or that could not
    /// be made: the API server's trouble is not the caller's failure).
    pub fn give_back(&mut self, source: IpAddr, now: Instant) {
        let Some(full_at) = self.full_at.get(&source).copied() else {
            return;
        };
        match full_at.checked_sub(self.interval()) {
            Some(earlier) if earlier > now => {
                self.full_at.insert(source, earlier);
            }
            _ => {
                self.full_at.remove(&source);
            }
        }
    }

    fn make_room(&mut self, now: Instant) {
        self.full_at.retain(|_, full_at| *full_at > now);
        if self.full_at.len() >= MAX_SOURCES {
            self.full_at.clear();
        }
    }

    /// How many sources are tracked (those whose budget is not full).
    pub fn tracked(&self) -> usize {
        self.full_at.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_source_has_a_burst_of_failures_then_waits_for_the_refill() {
        let start = Instant::now();
        let mut throttle = Throttle::new(3);
        for _ in 0..3 {
            assert_eq!(throttle.take(ip(1), start), Ok(()));
        }
        // 3 a minute: the next allowance is 20 s away.
        let wait = throttle.take(ip(1), start).unwrap_err();
        assert_eq!(wait, Duration::from_secs(20));
        assert_eq!(
            throttle.take(ip(1), start + Duration::from_secs(19)),
            Err(Duration::from_secs(1))
        );
        assert_eq!(
            throttle.take(ip(1), start + Duration::from_secs(20)),
            Ok(())
        );
        // Another source has its own budget.
        assert_eq!(throttle.take(ip(2), start), Ok(()));
    }

    #[test]
    fn accepted_tokens_give_their_allowance_back() {
        let start = Instant::now();
        let mut throttle = Throttle::new(2);
        for _ in 0..100 {
            throttle.take(ip(1), start).unwrap();
            throttle.give_back(ip(1), start);
        }
        assert_eq!(throttle.tracked(), 0, "a full budget is not kept");
        throttle.take(ip(1), start).unwrap();
        throttle.take(ip(1), start).unwrap();
        assert!(throttle.take(ip(1), start).is_err());
        throttle.give_back(ip(1), start);
        assert_eq!(throttle.take(ip(1), start), Ok(()));
        // Giving back for a source that took nothing changes nothing.
        throttle.give_back(ip(3), start);
        assert_eq!(throttle.tracked(), 1);
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let start = Instant::now();
        let mut throttle = Throttle::new(0);
        for _ in 0..1000 {
            assert_eq!(throttle.take(ip(1), start), Ok(()));
        }
        assert_eq!(throttle.tracked(), 0);
    }

    #[test]
    fn sources_that_refilled_make_room_for_new_ones() {
        let start = Instant::now();
        let mut throttle = Throttle::new(60);
        for i in 0..MAX_SOURCES {
            let source = IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
            throttle.take(source, start).unwrap();
        }
        assert_eq!(throttle.tracked(), MAX_SOURCES);
        // A second later every budget is full again.
        let newcomer = IpAddr::from([192, 168, 0, 1]);
        throttle
            .take(newcomer, start + Duration::from_secs(1))
            .unwrap();
        assert_eq!(throttle.tracked(), 1);
    }
}

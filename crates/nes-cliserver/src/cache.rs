//! A bounded, time-limited map from a token's SHA-256 to what its review said: the review cache
//! (accepted tokens) and the negative cache (refused tokens) are two of these. Time is passed
//! in, so the expiry rules are tested without waiting.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The key of a token: its SHA-256, so the token itself is never kept.
pub type TokenKey = [u8; 32];

/// Entries live for `ttl`; at most `max` are kept (when full, expired entries are dropped,
/// then all: a flood of new tokens costs the cache its contents, never unbounded memory).
#[derive(Debug)]
pub struct TtlCache<V> {
    ttl: Duration,
    max: usize,
    entries: HashMap<TokenKey, (V, Instant)>,
}

impl<V: Clone> TtlCache<V> {
    /// An empty cache; a zero `ttl` keeps nothing.
    pub fn new(ttl: Duration, max: usize) -> Self {
        TtlCache {
            ttl,
            max,
            entries: HashMap::new(),
        }
    }

    /// The value stored for `key` if it was stored less than the TTL before `now`.
    pub fn get(&self, key: &TokenKey, now: Instant) -> Option<V> {
        let (value, at) = self.entries.get(key)?;
        (now.saturating_duration_since(*at) < self.ttl).then(|| value.clone())
    }

    /// Stores `value` for `key` as of `now`.
    pub fn insert(&mut self, key: TokenKey, value: V, now: Instant) {
        if self.ttl.is_zero() || self.max == 0 {
            return;
        }
        if self.entries.len() >= self.max && !self.entries.contains_key(&key) {
            let ttl = self.ttl;
            self.entries
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
            if self.entries.len() >= self.max {
                self.entries.clear();
            }
        }
        self.entries.insert(key, (value, now));
    }

    /// How many entries are held (expired ones included until they are dropped).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    fn key(n: u8) -> TokenKey {
        [n; 32]
    }

    #[test]
    fn entries_are_answered_until_their_ttl_ends() {
        let start = Instant::now();
        let mut cache = TtlCache::new(TTL, 10);
        cache.insert(key(1), "review", start);
        assert_eq!(cache.get(&key(1), start), Some("review"));
        assert_eq!(
            cache.get(&key(1), start + TTL - Duration::from_millis(1)),
            Some("review")
        );
        assert_eq!(cache.get(&key(1), start + TTL), None);
        assert_eq!(cache.get(&key(2), start), None);
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let mut cache = TtlCache::new(Duration::ZERO, 10);
        cache.insert(key(1), (), Instant::now());
        assert!(cache.is_empty());
    }

    #[test]
    fn a_full_cache_drops_expired_entries_then_everything() {
        let start = Instant::now();
        let mut cache = TtlCache::new(TTL, 2);
        cache.insert(key(1), 1, start);
        cache.insert(key(2), 2, start + TTL);
        // key(1) has expired: it makes room.
        cache.insert(key(3), 3, start + TTL);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&key(2), start + TTL), Some(2));
        // Both live: the cache starts over rather than grow.
        cache.insert(key(4), 4, start + TTL);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(&key(4), start + TTL), Some(4));
        // Replacing a held key needs no room.
        cache.insert(key(4), 5, start + TTL);
        assert_eq!(cache.get(&key(4), start + TTL), Some(5));
    }
}

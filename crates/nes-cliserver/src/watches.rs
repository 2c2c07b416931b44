//! Status watches: at most a few open per pod, and none outlives its caller's token.
//!
//! [`Watches::open`] hands out a [`WatchSlot`] that frees itself when dropped (with the
//! response stream, whether it ended or the client went away); [`lifetime`] is how long a new
//! watch may stay open (pure).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use prometheus::IntGauge;

/// How many watches a pod may hold open by default: one per container that follows its status,
/// with room for reconnects.
pub const DEFAULT_MAX_PER_POD: usize = 4;

/// The longest a watch stays open by default; the client reconnects (with its current token).
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// How long a watch opened at `now` may stay open: until the caller's token ends, and no longer
/// than `max`. Zero when the token has already ended.
pub fn lifetime(now: SystemTime, token_end: Option<SystemTime>, max: Duration) -> Duration {
    match token_end {
        Some(end) => end.duration_since(now).unwrap_or(Duration::ZERO).min(max),
        None => max,
    }
}

type PodKey = (String, String);

/// The open watches per pod.
#[derive(Clone)]
pub struct Watches {
    max_per_pod: usize,
    open: Arc<Mutex<HashMap<PodKey, usize>>>,
    gauge: IntGauge,
}

/// A held place among a pod's watches; dropping it frees the place.
pub struct WatchSlot {
    key: PodKey,
    watches: Watches,
}

impl Watches {
    /// At most `max_per_pod` (at least 1) open watches per pod; `gauge` follows the total.
    pub fn new(max_per_pod: usize, gauge: IntGauge) -> Self {
        Watches {
            max_per_pod: max_per_pod.max(1),
            open: Arc::default(),
            gauge,
        }
    }

    /// A place for one more watch of pod `namespace/pod`, or the number it already has open.
    pub fn open(&self, namespace: &str, pod: &str) -> Result<WatchSlot, usize> {
        let key = (namespace.to_owned(), pod.to_owned());
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key.clone()).or_default();
        if *count >= self.max_per_pod {
            return Err(*count);
        }
        *count += 1;
        self.gauge.inc();
        Ok(WatchSlot {
            key,
            watches: self.clone(),
        })
    }

    /// The watches pod `namespace/pod` holds open.
    pub fn open_for(&self, namespace: &str, pod: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&(namespace.to_owned(), pod.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// The most a pod may hold open.
    pub fn max_per_pod(&self) -> usize {
        self.max_per_pod
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = self.watches.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
        self.watches.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_holds_at_most_its_share_of_watches_until_one_closes() {
        let gauge = IntGauge::new("open", "open watches").unwrap();
        let watches = Watches::new(2, gauge.clone());
        let first = watches.open("team", "x-0").unwrap();
        let _second = watches.open("team", "x-0").unwrap();
        assert_eq!(watches.open("team", "x-0").err(), Some(2));
        // Other pods, and the same name in another namespace, have their own.
        let _other = watches.open("team", "x-1").unwrap();
        let _elsewhere = watches.open("prod", "x-0").unwrap();
        assert_eq!(gauge.get(), 4);
        drop(first);
        assert_eq!(watches.open_for("team", "x-0"), 1);
        assert!(
            watches.open("team", "x-0").is_ok(),
            "the freed place is taken"
        );
        assert_eq!(
            gauge.get(),
            3,
            "the new slot was dropped at the end of its statement"
        );
    }

    #[test]
    fn zero_means_one() {
        let watches = Watches::new(0, IntGauge::new("g", "g").unwrap());
        let _one = watches.open("team", "x-0").unwrap();
        assert!(watches.open("team", "x-0").is_err());
    }

    #[test]
    fn a_watch_lives_until_the_token_ends_and_at_most_the_maximum() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let max = Duration::from_secs(3600);
        let in_ten_minutes = now + Duration::from_secs(600);
        assert_eq!(
            lifetime(now, Some(in_ten_minutes), max),
            Duration::from_secs(600)
        );
        assert_eq!(
            lifetime(now, Some(now + Duration::from_secs(86400)), max),
            max
        );
        assert_eq!(lifetime(now, None, max), max);
        let ended = now - Duration::from_secs(1);
        assert_eq!(lifetime(now, Some(ended), max), Duration::ZERO);
    }
}

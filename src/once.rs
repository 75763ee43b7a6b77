//! "Log this at most once a minute per key": for faults that every retry of a message meets
//! again (a corrupted Redis key), so the log names the key without drowning in it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How many distinct keys are remembered; past it, stale ones are forgotten first.
const MAX_KEYS: usize = 1024;

#[derive(Debug)]
pub struct OncePer {
    every: Duration,
    seen: Mutex<HashMap<String, Instant>>,
}

impl OncePer {
    #[must_use]
    pub fn new(every: Duration) -> Self {
        Self { every, seen: Mutex::new(HashMap::new()) }
    }

    /// True when `key` was not reported within the period before `now` (and records it).
    pub fn first(&self, key: &str, now: Instant) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(last) = seen.get_mut(key) {
            if now.duration_since(*last) < self.every {
                return false;
            }
            *last = now;
            return true;
        }
        if seen.len() >= MAX_KEYS {
            let every = self.every;
            seen.retain(|_, t| now.duration_since(*t) < every);
            if seen.len() >= MAX_KEYS {
                // Still full of fresh keys: a flood; stay quiet rather than grow.
                return false;
            }
        }
        seen.insert(key.to_owned(), now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_period_per_key_and_bounded() {
        let once = OncePer::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(once.first("a", t0));
        assert!(!once.first("a", t0 + Duration::from_secs(59)));
        assert!(once.first("b", t0 + Duration::from_secs(1)), "another key is reported");
        assert!(once.first("a", t0 + Duration::from_secs(60)));
        for i in 0..MAX_KEYS * 2 {
            once.first(&format!("k{i}"), t0 + Duration::from_secs(61));
        }
        assert!(once.seen.lock().expect("lock").len() <= MAX_KEYS);
        assert!(once.first("late", t0 + Duration::from_secs(200)), "stale keys make room");
    }
}

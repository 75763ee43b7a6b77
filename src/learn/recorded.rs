//! Which (sender, network) pairs this process already had remembered in the history today, so
//! that the request path passes a network to the script only the first time a day: the
//! script's write (and even its read) happen once per pair and day, not on every message. A
//! fixed table of 64-bit keys, one per slot (256 KiB): a pair that lost its slot to another is
//! passed again, which costs one read in the script and changes nothing.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::NaiveDate;

use crate::network::Network;
use crate::sender::Mailbox;

const SLOTS: usize = 1 << 15;

/// Pairs remembered today (a slot holds the key of the last pair put there).
#[derive(Debug)]
pub struct RecordedToday {
    slots: Box<[AtomicU64]>,
}

impl Default for RecordedToday {
    fn default() -> Self {
        Self { slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect() }
    }
}

impl RecordedToday {
    /// The key of `network` of `sender` on `day` (never 0, the empty slot).
    #[must_use]
    pub fn key(sender: &Mailbox, network: Network, day: NaiveDate) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        (sender.as_str(), network, day).hash(&mut h);
        h.finish() | 1
    }

    fn slot(&self, key: u64) -> &AtomicU64 {
        // SLOTS is a power of two: the low bits pick the slot.
        &self.slots[usize::try_from(key).unwrap_or_default() & (SLOTS - 1)]
    }

    /// Whether the pair was remembered today (as far as this table knows).
    #[must_use]
    pub fn contains(&self, key: u64) -> bool {
        self.slot(key).load(Ordering::Relaxed) == key
    }

    /// The pair was remembered (a counted message came from it).
    pub fn insert(&self, key: u64) {
        self.slot(key).store(key, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_is_known_on_its_day_only() {
        let t = RecordedToday::default();
        let a = crate::sender::normalize("a@x.org").expect("valid");
        let day = NaiveDate::from_ymd_opt(2026, 3, 2).expect("valid");
        let net = |n: &str| Network::parse(n).expect("a network");
        let k = RecordedToday::key(&a, net("192.0.2.0/24"), day);
        assert!(!t.contains(k));
        t.insert(k);
        assert!(t.contains(k));
        assert!(!t.contains(RecordedToday::key(&a, net("198.51.100.0/24"), day)));
        assert!(!t.contains(RecordedToday::key(&a, net("192.0.2.0/24"), day.succ_opt().expect("valid"))));
    }
}

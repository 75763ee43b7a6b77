//! The allowances the policy reads: a compact map from mailbox to learned daily cap, replaced
//! whole when they are computed again (start, after local midnight, SIGHUP). Kept by a 64-bit
//! hash of the address, not the address: 12 bytes a mailbox (100,000 take 1.2 MB, a third of a
//! table of names). Two of 100,000 addresses share a hash with a chance of about 3 in 10^10;
//! the cost would be one mailbox getting another's allowance, which is never below a default.

use chrono::NaiveDate;

use super::{History, LearnSettings, allowance};
use crate::limits::Limits;
use crate::sender::{self, Mailbox};
use crate::window::{Unit, Window};

/// Learned daily caps of the mailboxes that earned more than their default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowances {
    /// (hash of the address, learned cap), sorted by hash. Learned caps are at most `MAX_CAP`
    /// (1e9): they fit 32 bits.
    entries: Vec<(u64, u32)>,
}

/// The key of an address: the same in every run (SipHash with fixed keys).
fn hash(mailbox: &Mailbox) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    mailbox.as_str().hash(&mut h);
    h.finish()
}

impl Allowances {
    /// The allowances of `histories` on `today`, for the mailboxes whose caps come from a
    /// default in `limits` (their default daily recipient cap is the floor).
    #[must_use]
    pub fn compute<'a>(
        histories: impl IntoIterator<Item = (&'a str, &'a History)>,
        today: NaiveDate,
        limits: &Limits,
        settings: &LearnSettings,
    ) -> Self {
        let mut builder = AllowancesBuilder::default();
        builder.extend(learned(histories, today, limits, settings));
        builder.build()
    }

    /// The mailbox's learned daily cap, if it earned one.
    #[must_use]
    pub fn get(&self, mailbox: &Mailbox) -> Option<u64> {
        let key = hash(mailbox);
        self.entries.binary_search_by_key(&key, |e| e.0).ok().map(|i| u64::from(self.entries[i].1))
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The mailboxes of `histories` that earned more than their default on `today`, with their
/// learned daily cap.
pub fn learned<'a>(
    histories: impl IntoIterator<Item = (&'a str, &'a History)>,
    today: NaiveDate,
    limits: &Limits,
    settings: &LearnSettings,
) -> Vec<(Mailbox, u64)> {
    let mut out = Vec::new();
    for (name, history) in histories {
        let Ok(mailbox) = sender::normalize(name) else { continue };
        let Some(default) = default_daily(limits, &mailbox) else { continue };
        if let Some(learned) = allowance(history, today, default, settings) {
            out.push((mailbox, learned.limit));
        }
    }
    out
}

/// Collects allowances a page at a time (a daemon with 100,000 senders never holds all their
/// histories at once).
#[derive(Debug, Default)]
pub struct AllowancesBuilder {
    entries: Vec<(u64, u32)>,
}

impl AllowancesBuilder {
    /// A builder expecting about `expected` allowances (the last computation's count), so
    /// that its list is allocated once.
    #[must_use]
    pub fn expecting(expected: usize) -> Self {
        Self { entries: Vec::with_capacity(expected) }
    }

    pub fn extend(&mut self, learned: impl IntoIterator<Item = (Mailbox, u64)>) {
        for (mailbox, limit) in learned {
            self.entries.push((hash(&mailbox), u32::try_from(limit).unwrap_or(u32::MAX)));
        }
    }

    #[must_use]
    pub fn build(mut self) -> Allowances {
        // A sender met twice (a scan may return a key twice) has the same allowance both times.
        self.entries.sort_unstable_by_key(|e| e.0);
        self.entries.dedup_by_key(|e| e.0);
        self.entries.shrink_to_fit();
        Allowances { entries: self.entries }
    }
}

/// The daily recipient cap a mailbox has from a default, if its caps come from one (not its
/// own, not a raise, not exempt, not unknown).
#[must_use]
pub fn default_daily(limits: &Limits, mailbox: &Mailbox) -> Option<u64> {
    let caps = limits.mailbox_caps(mailbox);
    if !caps.from_default || caps.exempt {
        return None;
    }
    caps.caps.iter().find_map(|&(w, u, c)| match (w, u) {
        (Window::Day, Unit::Rcpt) => c.known(),
        _ => None,
    })
}

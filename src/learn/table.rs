//! The allowances the policy reads: a compact map from mailbox to learned daily cap, replaced
//! whole when they are computed again (start, after local midnight, SIGHUP). Kept by a 64-bit
//! hash of the address, not the address: 12 bytes a mailbox (100,000 take 1.2 MB, a third of a
//! table of names). Two of 100,000 addresses share a hash with a chance of about 3 in 10^10;
//! the cost would be one mailbox getting another's allowance, which is never below a default.
//! With `known_networks`, the networks each learned mailbox may use its allowance from are kept
//! the same way: a 64-bit hash of the address and the network, 8 bytes each.

use chrono::NaiveDate;

use super::{History, allowance};
use crate::config::LearnSettings;
use crate::limits::Limits;
use crate::network::{Network, Networks};
use crate::sender::{self, Mailbox};
use crate::window::{Unit, Window};

/// Learned daily caps of the mailboxes that earned more than their default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowances {
    /// (hash of the address, learned cap), sorted by hash. Learned caps are at most `MAX_CAP`
    /// (1e9): they fit 32 bits.
    entries: Vec<(u64, u32)>,
    /// With `known_networks`: the hashes of (mailbox, network) a learned mailbox's allowance
    /// applies from, sorted.
    networks: Vec<u64>,
    rule: Option<Networks>,
}

/// The key of an address: the same in every run (SipHash with fixed keys).
fn hash(mailbox: &Mailbox) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    mailbox.as_str().hash(&mut h);
    h.finish()
}

/// The key of a network of the mailbox whose key is `mailbox`.
fn network_key(mailbox: u64, network: Network) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    mailbox.hash(&mut h);
    network.hash(&mut h);
    h.finish()
}

/// What a mailbox earned: its key, its learned daily cap, and (with `known_networks`) the keys
/// of the networks it applies from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earned {
    key: u64,
    limit: u64,
    networks: Vec<u64>,
}

impl Earned {
    /// `mailbox` earned `limit` a day, from `networks` (with `known_networks`).
    pub fn new<'n>(mailbox: &Mailbox, limit: u64, networks: impl IntoIterator<Item = &'n str>) -> Self {
        let key = hash(mailbox);
        // A name that does not read as a network (a hand-written field) is left out.
        let networks = networks.into_iter().filter_map(Network::parse).map(|n| network_key(key, n)).collect();
        Self { key, limit, networks }
    }
}

impl Allowances {
    /// The mailbox's learned daily cap for mail from `client`, if it earned one (and, with
    /// `known_networks`, sent from that client's network before; a client that is not an
    /// address is not held to it).
    #[must_use]
    pub fn get(&self, mailbox: &Mailbox, client: &str) -> Option<u64> {
        self.get_from(mailbox, self.rule.and_then(|rule| rule.network(client)))
    }

    /// [`Self::get`] with the client's network already found (the request path finds it once
    /// for this and for the history); `None`: not an address, not held to a network.
    #[must_use]
    pub fn get_from(&self, mailbox: &Mailbox, network: Option<Network>) -> Option<u64> {
        let key = hash(mailbox);
        let i = self.entries.binary_search_by_key(&key, |e| e.0).ok()?;
        if let Some(network) = network.filter(|_| self.rule.is_some()) {
            self.networks.binary_search(&network_key(key, network)).ok()?;
        }
        Some(u64::from(self.entries[i].1))
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

/// The mailboxes of `histories` that earned more than their default on `today`, with what they
/// earned (`replay` names them; the daemon keeps only [`learned`]'s hashes).
pub fn earners<'a>(
    histories: impl IntoIterator<Item = (&'a str, &'a History)>,
    today: NaiveDate,
    limits: &Limits,
    settings: &LearnSettings,
) -> impl Iterator<Item = (Mailbox, crate::learn::Learned, &'a History)> {
    histories.into_iter().filter_map(move |(name, history)| {
        let mailbox = sender::normalize(name).ok()?;
        let default = default_daily(limits, &mailbox)?;
        allowance(history, today, default, settings).map(|learned| (mailbox, learned, history))
    })
}

/// The mailboxes of `histories` that earned more than their default on `today`: their learned
/// daily cap and, with `known_networks`, the networks it applies from.
pub fn learned<'a>(
    histories: impl IntoIterator<Item = (&'a str, &'a History)>,
    today: NaiveDate,
    limits: &Limits,
    settings: &LearnSettings,
) -> Vec<Earned> {
    earners(histories, today, limits, settings)
        .map(|(mailbox, learned, history)| {
            let known = settings.networks.map(|_| history.known_networks(today, settings.days));
            Earned::new(&mailbox, learned.limit, known.into_iter().flatten())
        })
        .collect()
}

/// Collects allowances a page at a time (a daemon with 100,000 senders never holds all their
/// histories at once).
#[derive(Debug, Default)]
pub struct AllowancesBuilder {
    entries: Vec<(u64, u32)>,
    networks: Vec<u64>,
    rule: Option<Networks>,
}

impl AllowancesBuilder {
    /// A builder expecting about `expected` allowances (the last computation's count), so
    /// that its list is allocated once; `rule`: `[learn]`'s networks.
    #[must_use]
    pub fn expecting(expected: usize, rule: Option<Networks>) -> Self {
        Self { entries: Vec::with_capacity(expected), networks: Vec::new(), rule }
    }

    pub fn extend(&mut self, learned: impl IntoIterator<Item = Earned>) {
        for earned in learned {
            self.entries.push((earned.key, u32::try_from(earned.limit).unwrap_or(u32::MAX)));
            self.networks.extend(earned.networks);
        }
    }

    #[must_use]
    pub fn build(mut self) -> Allowances {
        // A sender met twice (a scan may return a key twice) has the same allowance both times.
        self.entries.sort_unstable_by_key(|e| e.0);
        self.entries.dedup_by_key(|e| e.0);
        self.entries.shrink_to_fit();
        self.networks.sort_unstable();
        self.networks.dedup();
        self.networks.shrink_to_fit();
        Allowances { entries: self.entries, networks: self.networks, rule: self.rule }
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

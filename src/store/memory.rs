//! The in-process counter store: the same decisions as `consume.lua`, for trying the daemon
//! without Redis and for fast tests. Counters are lost on restart.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use super::keys::{COUNTER_TTL_SECS, KeySchema, TOP_TTL_SECS, rest_of_day_ttl};
use super::protect::{counts_toward_lock, is_suspect, trips_lock};
use super::{
    Answer, Consume, CounterStore, Counts, Events, Lock, Operation, StoreError, Violation, Watch, first_full,
};
use crate::config::Mode;
use crate::window::Unit;

/// Maps and sets keyed by strings, hashed with foldhash (seeded per process, several times
/// faster than SipHash on these short keys; replay makes millions of lookups).
type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type Set = std::collections::HashSet<String, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
struct State {
    /// Value and expiry (unix seconds) per key, as Redis keeps them: counters, refusals, the
    /// once-per-window markers and the top senders' scores.
    counters: Map<String, (u64, i64)>,
    /// Sets with the key's expiry: each sender's client addresses today (Redis: a HyperLogLog)
    /// and its refused messages' fingerprints and transactions.
    sets: Map<String, (Set, i64)>,
    /// Locks (JSON), which only this process sets: without Redis there is no `unlock`.
    locks: Map<String, String>,
    violations: VecDeque<Violation>,
    /// Calls since expired counters were last swept out.
    since_sweep: u32,
    /// Each sender's history for learned allowances (Redis: `erl:hist:<email>`): the excluded
    /// days are marked here as the script marks them; the totals are folded in from the top
    /// senders after midnight ([`MemoryStore::fold`]).
    hist: Map<String, super::History>,
    /// Website mail put on hold, per `held` key: (queue ID, unix seconds).
    held: Map<String, Vec<(String, i64)>>,
}

impl State {
    /// A live value (0 when absent or expired).
    fn value(&self, key: &str, now: i64) -> u64 {
        self.counters.get(key).filter(|(_, expires)| *expires > now).map_or(0, |v| v.0)
    }

    /// Adds `n` to `key`, which gets `ttl` when created; returns the new value. (Looked up by
    /// reference first: the name is copied only for a new key.)
    fn add(&mut self, key: &str, n: u64, now: i64, ttl: u64) -> u64 {
        if !self.counters.contains_key(key) {
            self.counters.insert(key.to_owned(), (0, 0));
        }
        let Some(entry) = self.counters.get_mut(key) else { return 0 };
        if entry.1 <= now {
            *entry = (0, now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)));
        }
        entry.0 = entry.0.saturating_add(n);
        entry.0
    }

    /// `SET marker 1 NX EX ttl`: whether the marker was not there yet.
    fn once(&mut self, marker: &str, now: i64, ttl: u64) -> bool {
        self.add(marker, 1, now, ttl) == 1
    }

    /// Adds `member` to the set `key` (created with `ttl`); the set's size when it is new.
    fn insert(&mut self, key: &str, member: &str, now: i64, ttl: u64) -> Option<u64> {
        if !self.sets.contains_key(key) {
            self.sets.insert(key.to_owned(), (Set::default(), 0));
        }
        let entry = self.sets.get_mut(key)?;
        if entry.1 <= now {
            *entry = (Set::default(), now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)));
        }
        if entry.0.contains(member) {
            return None;
        }
        entry.0.insert(member.to_owned());
        Some(u64::try_from(entry.0.len()).unwrap_or(u64::MAX))
    }

    /// `consume.lua`'s `exclude`: today does not count for learning.
    fn exclude(&mut self, c: &Consume<'_>) {
        if c.learn.is_some() && c.operation == Operation::Count {
            self.hist.entry(c.sender.to_string()).or_default().excluded.insert(c.at.day());
        }
    }

    /// `consume.lua`'s `remember`: a counted message came from `network` on `day` (no
    /// allocation when both are known, as in the common case).
    fn remember(&mut self, sender: &str, network: &str, day: chrono::NaiveDate) {
        if !self.hist.contains_key(sender) {
            self.hist.insert(sender.to_owned(), super::History::default());
        }
        let Some(history) = self.hist.get_mut(sender) else { return };
        match history.networks.get_mut(network) {
            Some(seen) => *seen = super::Seen::used(Some(*seen), day),
            None => {
                history.networks.insert(network.to_owned(), super::Seen::used(None, day));
            }
        }
    }

    /// `consume.lua`'s `new_message`: whether neither the fingerprint nor the transaction was
    /// refused before today; both are remembered either way.
    fn new_message(&mut self, key: &str, c: &Consume<'_>, now: i64) -> bool {
        let ttl = rest_of_day_ttl(c.at.local);
        let fingerprint = format!("f:{:016x}", c.message.fingerprint);
        let mut new = self.insert(key, &fingerprint, now, ttl).is_some();
        if !c.message.instance.is_empty()
            && self.insert(key, &format!("i:{}", c.message.instance), now, ttl).is_none()
        {
            new = false;
        }
        new
    }
}

/// The optional fields of a violation record.
#[derive(Debug, Clone, Copy, Default)]
struct Extra {
    oversize: bool,
    /// A message cap (`"unit":"msg"`).
    messages: bool,
    per_message: bool,
}

/// Counters in a mutex-guarded map, keyed like Redis.
#[derive(Debug)]
pub struct MemoryStore {
    keys: KeySchema,
    violations_max: usize,
    state: Mutex<State>,
}

impl MemoryStore {
    #[must_use]
    pub fn new(keys: KeySchema, violations_max: usize) -> Self {
        Self { keys, violations_max, state: Mutex::new(State::default()) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The value of one counter key (0 when absent), ignoring expiry.
    #[must_use]
    pub fn count(&self, key: &str) -> u64 {
        self.state().counters.get(key).map_or(0, |v| v.0)
    }

    /// The recent violations, newest first.
    #[must_use]
    pub fn violations(&self) -> Vec<Violation> {
        self.state().violations.iter().cloned().collect()
    }

    /// Pushes a violation record (`consume.lua`'s `record`).
    fn record(&self, state: &mut State, c: &Consume<'_>, kind: &str, limit: u64, count: u64, window: &str) {
        self.push(state, c, (kind, limit, count, window), Extra::default());
    }

    fn push(
        &self,
        state: &mut State,
        c: &Consume<'_>,
        (kind, limit, count, window): (&str, u64, u64, &str),
        extra: Extra,
    ) {
        state.violations.push_front(Violation {
            oversize: extra.oversize,
            unit: extra.messages.then(|| "msg".to_owned()),
            per_message: extra.per_message,
            ts: c.at.unix,
            kind: kind.to_owned(),
            user: c.sender.to_string(),
            limit,
            count,
            rcpt: u64::from(c.recipients),
            ip: c.client.to_owned(),
            enforced: c.mode == Mode::Enforce,
            window: window.to_owned(),
            server: c.server.to_owned(),
        });
        state.violations.truncate(self.violations_max);
    }

    /// Locks the sender (`consume.lua`'s `lock_now`); returns the lock.
    fn lock(&self, state: &mut State, c: &Consume<'_>, reason: String, limit: u64, count: u64) -> Lock {
        let lock = Lock { ts: c.at.unix, by: "auto".into(), reason, history: Vec::new() };
        state
            .locks
            .insert(self.keys.lock(c.sender).to_string(), serde_json::to_string(&lock).unwrap_or_default());
        self.record(state, c, "locked", limit, count, "1d");
        state.exclude(c);
        lock
    }

    /// `consume.lua`, step by step in the same order.
    fn apply(&self, c: &Consume<'_>) -> Answer {
        // Raises are written by the admin commands, which only reach Redis: none here.
        if !c.raise.is_empty() {
            return Answer::Raised(String::new());
        }
        let now = c.at.unix;
        let day = c.at.day();
        let enforce = c.mode == Mode::Enforce;
        let counting = c.operation == Operation::Count;
        let autolock = enforce && c.guard.autolock;
        let n = u64::from(c.recipients);
        let mut state = self.state();
        state.since_sweep += 1;
        // Expired keys go in a sweep over every key, after as many calls as half the keys live
        // (at least 1024): amortized O(1) a call however many senders (a replay of a month).
        let live = u32::try_from((state.counters.len() + state.sets.len()) / 2).unwrap_or(u32::MAX);
        if state.since_sweep >= live.max(1024) {
            state.since_sweep = 0;
            state.counters.retain(|_, (_, expires)| *expires > now);
            state.sets.retain(|_, (_, expires)| *expires > now);
        }
        // No lock at all (the common case): no key to name.
        let mut lock = if state.locks.is_empty() {
            None
        } else {
            let domain_lock = self.keys.domain_lock(c.sender.domain().unwrap_or_default()).to_string();
            state
                .locks
                .get(&self.keys.lock(c.sender).to_string())
                .or_else(|| state.locks.get(&domain_lock))
                .map(|l| Lock::parse(l))
        };
        let stopped = lock.is_some() && enforce;
        // A stopped sender's counters are neither read nor written (as in the script): not even
        // named (a replay of an attack meets mostly locked senders).
        let keys: Vec<Option<String>> = match stopped {
            true => Vec::new(),
            false => c
                .counters
                .iter()
                .map(|counter| self.keys.counter(c.at.local, *counter, c.sender).map(|k| k.text()))
                .collect(),
        };
        let before: Vec<u64> = keys.iter().map(|k| k.as_ref().map_or(0, |k| state.value(k, now))).collect();
        let adds = c.adds();
        let refused = match (stopped, c.per_message) {
            (true, _) | (false, Some(_)) => None,
            (false, None) => c.oversize.or_else(|| first_full(&before, c.caps, &adds)),
        };
        let records = (refused.is_some() || c.per_message.is_some()) && counting;
        let mut events = Events::default();
        let mut client_ips = 0;
        let max_ips = c.guard.max_client_ips;
        // (1) Addresses, suspects and their locks: refused or not, locked or not.
        if counting && max_ips > 0 && !c.client.is_empty() {
            let ips = self.keys.ips(day, c.sender).text();
            if let Some(seen) = state.insert(&ips, c.client, now, COUNTER_TTL_SECS) {
                client_ips = seen;
                if is_suspect(seen, max_ips) {
                    state.exclude(c);
                    if state.once(&self.keys.notified(&ips), now, COUNTER_TTL_SECS) {
                        events.suspect = true;
                        self.record(&mut state, c, "suspect", u64::from(max_ips), seen, "1d");
                    }
                    if autolock && lock.is_none() {
                        let lock =
                            self.lock(&mut state, c, Lock::suspect_reason(seen), u64::from(max_ips), seen);
                        events.locked = true;
                        return Answer::Locked(Watch { events, client_ips, lock: Some(lock) });
                    }
                }
            }
        }
        // (2) A lock.
        if lock.is_some() {
            state.exclude(c);
        }
        if stopped {
            return Answer::Locked(Watch { events, client_ips, lock });
        }
        // (3) Too many recipients for one message: recorded once, never toward a lock.
        if let Some(max) = c.per_message
            && records
            && state.new_message(&self.keys.fingerprints(day, c.sender).to_string(), c, now)
        {
            let extra = Extra { per_message: true, ..Extra::default() };
            self.push(&mut state, c, ("user", u64::from(max), n, "message"), extra);
        }
        // (4), (5) A refusal.
        if let Some(i) = refused {
            let cap = c.caps[i];
            let counter = c.counters[cap.counter];
            let window = counter.window.to_string();
            let oversize = c.oversize.is_some();
            let fingerprints = self.keys.fingerprints(day, c.sender).to_string();
            let new = records && state.new_message(&fingerprints, c, now);
            let record = (counter.scope.kind(), cap.limit, before[cap.counter], window.as_str());
            let extra = Extra { oversize, messages: counter.unit == Unit::Msg, per_message: false };
            if new {
                self.push(&mut state, c, record, extra);
            }
            if let Some(key) = keys.get(cap.counter).and_then(Option::as_ref)
                && enforce
                && !oversize
                && c.operation != Operation::Peek
                && state.once(&self.keys.notified(key), now, counter.window.ttl_secs())
            {
                events.first_refusal = true;
                // At RCPT only the window's first refusal is recorded: END-OF-MESSAGE may never
                // come.
                if c.operation == Operation::Check {
                    self.push(&mut state, c, record, extra);
                }
            }
            if enforce && counter.scope == crate::caps::Scope::Mailbox && !oversize {
                state.exclude(c);
            }
            let after = c.guard.lock_after_refusals;
            if records && autolock && after > 0 && counts_toward_lock(counter.scope.kind(), oversize, new) {
                let refusals = state.add(&self.keys.refusals(day, c.sender).text(), 1, now, COUNTER_TTL_SECS);
                if trips_lock(refusals, after) {
                    lock = Some(self.lock(
                        &mut state,
                        c,
                        Lock::refusals_reason(refusals),
                        u64::from(after),
                        refusals,
                    ));
                    events.locked = true;
                }
            }
        }
        // (6) Count.
        if counting && ((refused.is_none() && c.per_message.is_none()) || !enforce) {
            // Today's top senders, one entry per sender (the sorted set's member), as in Redis.
            let mut top = self.keys.top(day).text();
            top.push('\t');
            top.push_str(c.sender.as_str());
            state.add(&top, n, now, TOP_TTL_SECS);
            for ((key, counter), add) in keys.into_iter().zip(c.counters).zip(adds) {
                let Some(key) = key else { continue };
                // An expired key starts again at 0, as in Redis.
                state.add(&key, add, now, counter.window.ttl_secs());
            }
            // `consume.lua`'s `remember`: the network this counted message came from.
            if let (Some(_), Some(network)) = (c.learn, c.network) {
                state.remember(c.sender.as_str(), network, day);
            }
        }
        Answer::Counts(Counts { refused, before, watch: Watch { events, client_ips, lock } })
    }
}

impl CounterStore for MemoryStore {
    async fn consume(&self, c: &Consume<'_>) -> Result<Answer, StoreError> {
        Ok(self.apply(c))
    }

    async fn hold(&self, h: &super::Held<'_>) -> Result<(), StoreError> {
        let key = h.key(&self.keys);
        let mut state = self.state();
        let held = state.held.entry(key).or_default();
        held.retain(|(id, _)| id != h.queue_id);
        held.push((h.queue_id.to_owned(), h.at));
        Ok(())
    }
}

impl MemoryStore {
    /// The queue IDs recorded held for `name` by `server`, oldest first.
    #[must_use]
    pub fn held(&self, server: &str, name: &str) -> Vec<(String, i64)> {
        let key = self.keys.held(server, name).to_string();
        self.state().held.get(&key).cloned().unwrap_or_default()
    }
}

mod history;
#[cfg(test)]
mod tests;

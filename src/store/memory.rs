//! The in-process counter store: the same decisions as `consume.lua`, for trying the daemon
//! without Redis and for fast tests. Counters are lost on restart.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use super::keys::{COUNTER_TTL_SECS, KeySchema};
use super::{Answer, Consume, CounterStore, Counts, Operation, StoreError, Violation, first_full};
use crate::config::Mode;

#[derive(Debug, Default)]
struct State {
    /// Value and expiry (unix seconds) per key, as Redis keeps them.
    counters: HashMap<String, (u64, i64)>,
    violations: VecDeque<Violation>,
    /// Calls since expired counters were last swept out.
    since_sweep: u32,
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

    fn apply(&self, c: &Consume<'_>) -> Answer {
        // Raises are written by the admin commands, which only reach Redis: none here.
        if !c.raise.is_empty() {
            return Answer::Raised(String::new());
        }
        let now = c.at.unix;
        let keys: Vec<Option<String>> =
            c.counters.iter().map(|counter| self.keys.counter(c.at.local, *counter, c.sender)).collect();
        let n = u64::from(c.recipients);
        let mut state = self.state();
        state.since_sweep += 1;
        if state.since_sweep >= 1024 {
            state.since_sweep = 0;
            state.counters.retain(|_, (_, expires)| *expires > now);
        }
        let before: Vec<u64> = keys
            .iter()
            .map(|k| {
                k.as_ref()
                    .and_then(|k| state.counters.get(k))
                    .filter(|(_, expires)| *expires > now)
                    .map_or(0, |v| v.0)
            })
            .collect();
        let refused = first_full(&before, c.caps, n);
        if let Some(i) = refused {
            let cap = c.caps[i];
            let counter = c.counters[cap.counter];
            state.violations.push_front(Violation {
                ts: now,
                kind: counter.scope.kind().to_owned(),
                user: c.sender.to_string(),
                limit: cap.limit,
                count: before[cap.counter],
                rcpt: n,
                ip: c.client.to_owned(),
                enforced: c.mode == Mode::Enforce,
                window: counter.window.to_string(),
            });
            state.violations.truncate(self.violations_max);
        }
        if c.operation == Operation::Count && (refused.is_none() || c.mode == Mode::LogOnly) {
            // Today's top senders, one entry per sender (the sorted set's member), as in Redis.
            let top = format!("{}\t{}", self.keys.top(c.at.day()), c.sender);
            let ttl = i64::try_from(COUNTER_TTL_SECS).unwrap_or(i64::MAX);
            let entry = state.counters.entry(top).or_insert((0, 0));
            if entry.1 <= now {
                *entry = (0, now.saturating_add(ttl));
            }
            entry.0 = entry.0.saturating_add(n);
            for ((key, counter), value) in keys.into_iter().zip(c.counters).zip(&before) {
                let Some(key) = key else { continue };
                let ttl = i64::try_from(counter.window.ttl_secs()).unwrap_or(i64::MAX);
                let entry = state.counters.entry(key).or_insert((0, 0));
                if entry.1 <= now {
                    *entry = (0, now.saturating_add(ttl));
                }
                entry.0 = value.saturating_add(n);
            }
        }
        Answer::Counts(Counts { refused, before })
    }
}

impl CounterStore for MemoryStore {
    async fn consume(&self, c: &Consume<'_>) -> Result<Answer, StoreError> {
        Ok(self.apply(c))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::clock::Zone;
    use crate::limits::window::Window;
    use crate::sender::{Mailbox, normalize};
    use crate::store::{Check, Counter, Scope};

    const DAILY: [Counter; 2] = [
        Counter { scope: Scope::Mailbox, window: Window::Day },
        Counter { scope: Scope::Server, window: Window::Day },
    ];

    fn ask<'a>(sender: &'a Mailbox, n: u32, caps: &'a [Check]) -> Consume<'a> {
        Consume {
            sender,
            recipients: n,
            counters: &DAILY,
            caps,
            operation: Operation::Count,
            mode: Mode::Enforce,
            client: "192.0.2.1",
            at: Zone::Local.moment(Utc::now()),
            raise: "",
        }
    }

    impl MemoryStore {
        fn counts(&self, c: &Consume<'_>) -> Counts {
            match self.apply(c) {
                Answer::Counts(counts) => counts,
                Answer::Raised(r) => panic!("raised {r:?}"),
            }
        }
    }

    fn caps(mailbox: u64, global: u64) -> [Check; 2] {
        [Check { counter: 0, limit: mailbox }, Check { counter: 1, limit: global }]
    }

    #[test]
    fn counts_exactly_to_the_cap_and_refuses_whole_messages() {
        let store = MemoryStore::new(KeySchema::new("erl"), 10);
        let alice = normalize("alice@example.com").expect("valid");
        let caps = caps(5, 999);
        assert_eq!(store.counts(&ask(&alice, 2, &caps)).refused, None);
        assert_eq!(store.counts(&ask(&alice, 3, &caps)).refused, None);
        let refused = store.counts(&ask(&alice, 1, &caps));
        assert_eq!(refused, Counts { refused: Some(0), before: vec![5, 5] });
        let key = KeySchema::new("erl").sender(Zone::Local.moment(Utc::now()).day(), &alice);
        assert_eq!(store.count(&key), 5);
        let v = store.violations();
        assert_eq!(v.len(), 1);
        assert_eq!(
            (v[0].kind.as_str(), v[0].limit, v[0].count, v[0].rcpt, v[0].window.as_str()),
            ("user", 5, 5, 1, "1d")
        );
        assert!(v[0].enforced);
    }

    #[test]
    fn check_never_counts_and_log_only_always_counts() {
        let store = MemoryStore::new(KeySchema::new("erl"), 2);
        let bob = normalize("bob@example.com").expect("valid");
        let caps = caps(1, 999);
        let mut c = ask(&bob, 1, &caps);
        c.operation = Operation::Check;
        assert_eq!(store.counts(&c).refused, None);
        assert_eq!(store.counts(&c).before[0], 0);
        let mut c = ask(&bob, 3, &caps);
        c.mode = Mode::LogOnly;
        for _ in 0..3 {
            assert_eq!(store.counts(&c).refused, Some(0));
        }
        assert_eq!(store.counts(&c).before[0], 9);
        let v = store.violations();
        assert_eq!(v.len(), 2, "trimmed to the cap");
        assert!(!v[0].enforced);
    }

    #[test]
    fn counters_expire_like_redis_keys() {
        let store = MemoryStore::new(KeySchema::new("erl"), 10);
        let carol = normalize("carol@example.com").expect("valid");
        let berlin = Zone::parse("Europe/Berlin").expect("valid");
        let hourly = [Counter { scope: Scope::Mailbox, window: Window::HOUR }];
        let cap = [Check { counter: 0, limit: 2 }];
        let mut c = ask(&carol, 2, &cap);
        c.counters = &hourly;
        // 13:59 and 14:01 in Berlin: a new window, a new key.
        c.at = berlin.moment(Utc.with_ymd_and_hms(2026, 1, 1, 12, 59, 0).single().expect("valid"));
        assert_eq!(store.counts(&c).refused, None);
        assert_eq!(store.counts(&c).refused, Some(0));
        c.at = berlin.moment(Utc.with_ymd_and_hms(2026, 1, 1, 13, 1, 0).single().expect("valid"));
        assert_eq!(store.counts(&c).refused, None);
        // A key past its TTL counts as absent, as in Redis.
        let daily = caps(5, 999);
        let mut d = ask(&carol, 4, &daily);
        d.at = berlin.moment(Utc.with_ymd_and_hms(2026, 1, 1, 22, 59, 0).single().expect("valid"));
        store.counts(&d);
        assert_eq!(store.counts(&d).refused, Some(0));
        d.at = berlin.moment(Utc.with_ymd_and_hms(2026, 1, 1, 23, 1, 0).single().expect("valid"));
        assert_eq!(store.counts(&d).refused, None, "a new day");
    }
}

//! The in-process counter store: the same decisions as `consume.lua`, for trying the daemon
//! without Redis and for fast tests. Counters are lost on restart.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use chrono::NaiveDate;

use super::keys::KeySchema;
use super::{Consume, CounterStore, Counts, Operation, StoreError, Verdict, Violation};
use crate::config::Mode;

#[derive(Debug, Default)]
struct State {
    day: Option<NaiveDate>,
    counters: HashMap<String, u64>,
    violations: VecDeque<Violation>,
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

    /// The value of one counter key (0 when absent).
    #[must_use]
    pub fn count(&self, key: &str) -> u64 {
        self.state().counters.get(key).copied().unwrap_or(0)
    }

    /// The recent violations, newest first.
    #[must_use]
    pub fn violations(&self) -> Vec<Violation> {
        self.state().violations.iter().cloned().collect()
    }

    fn apply(&self, c: &Consume<'_>) -> Counts {
        let day = c.at.day();
        let sender_key = self.keys.sender(day, c.sender);
        let global_key = self.keys.global(day);
        let n = u64::from(c.recipients);
        let mut state = self.state();
        if state.day != Some(day) {
            // Yesterday's counters expire at midnight, as the date-keyed Redis ones do.
            state.counters.clear();
            state.day = Some(day);
        }
        let m = state.counters.get(&sender_key).copied().unwrap_or(0);
        let g = state.counters.get(&global_key).copied().unwrap_or(0);
        let verdict = Verdict::judge(m, g, n, c.mailbox_cap, c.global_cap);
        let over = match verdict {
            Verdict::Fits => None,
            Verdict::OverMailbox => Some(("user", c.mailbox_cap.unwrap_or(0), m)),
            Verdict::OverGlobal => Some(("global", c.global_cap.unwrap_or(0), g)),
        };
        if let Some((kind, limit, count)) = over {
            state.violations.push_front(Violation {
                ts: c.at.unix,
                kind: kind.to_owned(),
                user: c.sender.to_string(),
                limit,
                count,
                rcpt: n,
                ip: c.client.to_owned(),
                enforced: c.mode == Mode::Enforce,
            });
            state.violations.truncate(self.violations_max);
        }
        if c.operation == Operation::Count && (verdict == Verdict::Fits || c.mode == Mode::LogOnly) {
            *state.counters.entry(sender_key).or_insert(0) += n;
            *state.counters.entry(global_key).or_insert(0) += n;
        }
        Counts { verdict, mailbox: m, global: g }
    }
}

impl CounterStore for MemoryStore {
    async fn consume(&self, c: &Consume<'_>) -> Result<Counts, StoreError> {
        Ok(self.apply(c))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::clock::Zone;
    use crate::sender::{Mailbox, normalize};

    fn ask<'a>(sender: &'a Mailbox, n: u32, cap: Option<u64>, gcap: u64) -> Consume<'a> {
        let gcap = Some(gcap);
        Consume {
            sender,
            recipients: n,
            mailbox_cap: cap,
            global_cap: gcap,
            operation: Operation::Count,
            mode: Mode::Enforce,
            client: "192.0.2.1",
            at: Zone::Local.moment(Utc::now()),
        }
    }

    #[test]
    fn counts_exactly_to_the_cap_and_refuses_whole_messages() {
        let store = MemoryStore::new(KeySchema::new("erl"), 10);
        let alice = normalize("alice@example.com").expect("valid");
        assert_eq!(store.apply(&ask(&alice, 2, Some(5), 999)).verdict, Verdict::Fits);
        assert_eq!(store.apply(&ask(&alice, 3, Some(5), 999)).verdict, Verdict::Fits);
        let refused = store.apply(&ask(&alice, 1, Some(5), 999));
        assert_eq!((refused.verdict, refused.mailbox, refused.global), (Verdict::OverMailbox, 5, 5));
        let key = KeySchema::new("erl").sender(Zone::Local.moment(Utc::now()).day(), &alice);
        assert_eq!(store.count(&key), 5);
        let v = store.violations();
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].kind.as_str(), v[0].limit, v[0].count, v[0].rcpt), ("user", 5, 5, 1));
        assert!(v[0].enforced);
    }

    #[test]
    fn check_never_counts_and_log_only_always_counts() {
        let store = MemoryStore::new(KeySchema::new("erl"), 2);
        let bob = normalize("bob@example.com").expect("valid");
        let mut c = ask(&bob, 1, Some(1), 999);
        c.operation = Operation::Check;
        assert_eq!(store.apply(&c).verdict, Verdict::Fits);
        assert_eq!(store.apply(&c).mailbox, 0);
        let mut c = ask(&bob, 3, Some(1), 999);
        c.mode = Mode::LogOnly;
        for _ in 0..3 {
            assert_eq!(store.apply(&c).verdict, Verdict::OverMailbox);
        }
        assert_eq!(store.apply(&c).mailbox, 9);
        let v = store.violations();
        assert_eq!(v.len(), 2, "trimmed to the cap");
        assert!(!v[0].enforced);
    }

    #[test]
    fn counters_reset_on_a_new_day() {
        let store = MemoryStore::new(KeySchema::new("erl"), 10);
        let carol = normalize("carol@example.com").expect("valid");
        let mut c = ask(&carol, 4, Some(5), 999);
        let berlin = Zone::parse("Europe/Berlin").expect("valid");
        // 23:59 and 00:01 in Berlin.
        c.at = berlin.moment(Utc.with_ymd_and_hms(2026, 1, 1, 22, 59, 0).single().expect("valid"));
        store.apply(&c);
        assert_eq!(store.apply(&c).verdict, Verdict::OverMailbox);
        c.at = berlin.moment(Utc.with_ymd_and_hms(2026, 1, 1, 23, 1, 0).single().expect("valid"));
        assert_eq!(store.apply(&c).verdict, Verdict::Fits);
    }
}

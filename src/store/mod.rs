//! Counter stores: check both daily caps and count one message in one atomic step.
//!
//! The [`CounterStore`] trait is what `policy` talks to; [`redis::RedisStore`] runs
//! `consume.lua` (one round trip) and [`memory::MemoryStore`] does the same in process. Only this
//! module builds Redis keys ([`KeySchema`]); it knows nothing of Postfix.

mod breaker;
pub mod budget;
pub mod client;
mod fold;
mod held;
mod history;
pub mod keys;
pub mod memory;
pub mod protect;
pub mod redis;
pub mod target;
pub mod violation;

use std::future::Future;

pub use history::{History, Seen};
pub use keys::{HistoryField, KeySchema, LockedBy, Who};
pub use protect::{Events, Guard, Lock, LockNote, Watch};
pub use violation::Violation;

use crate::caps::{Check, Counter};
use crate::clock::Moment;
use crate::config::Mode;
use crate::sender::Mailbox;
use crate::window::Unit;

/// Whether a message is counted or only checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// End of data: check, and count when the message fits (or in log-only mode).
    Count,
    /// RCPT pre-check: refuse a sender or server already at its cap; never count.
    Check,
    /// `probe`: decide as the daemon would now (with the caller's recipients and oversize cap)
    /// and write nothing at all: no counter, marker, address, record or lock.
    Peek,
}

/// One question to the store.
#[derive(Debug, Clone)]
pub struct Consume<'a> {
    pub sender: &'a Mailbox,
    /// Recipients of the message (>= 1).
    pub recipients: u32,
    /// Every counter the message moves when it fits (or in log-only mode).
    pub counters: &'a [Counter],
    /// The enforced caps in the contract's order (mailbox, domain, server; longer windows
    /// first); each names one of `counters`.
    pub caps: &'a [Check],
    pub operation: Operation,
    pub mode: Mode,
    /// The SMTP client's address, for the violation record.
    pub client: &'a str,
    /// Decides the local date and window of the counters and the violation timestamp.
    pub at: Moment,
    /// The sender's temporary raise the caps were built with (`""` for none).
    pub raise: &'a str,
    /// Stolen-account detection and locks.
    pub guard: Guard,
    /// This server's name, for the violation record.
    pub server: &'a str,
    /// Which message this is, so that a retry of a refused message is one refusal.
    pub message: Message<'a>,
    /// The index in `caps` of the first cap that `recipients` alone exceed ([`first_oversize`];
    /// `None` at RCPT): the message can never fit, it is refused by that cap.
    pub oversize: Option<usize>,
    /// The `max_rcpt_per_message` this message exceeds (`None` at RCPT, when off, or when it
    /// fits): it is rejected before any cap is looked at (DESIGN v3 order, step 3).
    pub per_message: Option<u32>,
    /// Learning is on, with history kept this many days: mark today excluded in the sender's
    /// history when it is refused by its own cap, a suspect, or locked.
    pub learn: Option<u32>,
    /// With learning and `known_networks` on: the client's network, remembered in the sender's
    /// history (`n:<network>`, first and last day) when the message is counted.
    pub network: Option<&'a str>,
}

/// How long a history hash lives without a write: the days it keeps and two more.
#[must_use]
pub fn history_ttl_secs(days: u32) -> u64 {
    (u64::from(days) + 2) * 86_400
}

impl Consume<'_> {
    /// What this message adds to each counter: its recipients, or 1 on a message counter.
    #[must_use]
    pub fn adds(&self) -> Vec<u64> {
        self.counters.iter().map(|c| c.unit.count(u64::from(self.recipients))).collect()
    }
}

/// What tells one message from another across retries (DESIGN "Refusals that lock").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Message<'a> {
    /// Postfix's `instance`: one SMTP transaction (DATA and END-OF-MESSAGE share it); may be
    /// empty.
    pub instance: &'a str,
    /// A hash of what stays the same when a client sends the message again.
    pub fingerprint: u64,
}

/// The store's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Decided (and counted, when it fits or in log-only mode).
    Counts(Counts),
    /// The sender is locked (enforce mode): nothing was counted. `watch.events.locked` when this
    /// request locked it.
    Locked(Watch),
    /// The sender's raise is not the one the caps were built with: nothing was done; build the
    /// caps with this one (`""`: none) and ask again.
    Raised(String),
}

/// The decision rule shared by every store, mirrored by `first_full` in `consume.lua`: the
/// first cap, in order, without room for what the message adds to its counter
/// (`count + add > limit`); `before` holds the counters' values before this message, `adds`
/// what it adds to each ([`Consume::adds`]: its recipients, or 1 on a message counter).
#[must_use]
pub fn first_full(before: &[u64], caps: &[Check], adds: &[u64]) -> Option<usize> {
    caps.iter().position(|c| {
        before
            .get(c.counter)
            .zip(adds.get(c.counter))
            .is_some_and(|(&v, &add)| v.saturating_add(add) > c.limit)
    })
}

/// The first recipient cap, in order, that `n` recipients alone exceed (`n > limit`): a message
/// that can never fit in that window, whatever is counted. A message cap never is (a message
/// adds 1).
#[must_use]
pub fn first_oversize(caps: &[Check], counters: &[Counter], n: u64) -> Option<usize> {
    caps.iter().position(|c| {
        counters.get(c.counter).is_some_and(|counter| counter.unit == Unit::Rcpt) && n > c.limit
    })
}

/// What the store decided and the counters' values before this message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    /// The index in `caps` of the cap that refused the message, if any: the oversize one, else
    /// the first without room.
    pub refused: Option<usize>,
    /// One value per counter, in the order of `counters`.
    pub before: Vec<u64>,
    /// Detection and lock state, and what this request newly caused.
    pub watch: Watch,
}

/// A backend fault: the caller fails open.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis unavailable (circuit open after a recent failure)")]
    Unavailable,
    #[error("redis timed out after {0} ms")]
    Timeout(u64),
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("unexpected script reply: {0}")]
    BadReply(String),
    /// A key of the wrong type, or a counter that is not a non-negative integer: this request
    /// changed nothing and fails open; others are unaffected.
    #[error("key {key} holds bad data (wrong type, or not a non-negative integer)")]
    BadData { key: String },
}

impl StoreError {
    /// Whether the fault is the link's (connection, timeout), which every request would meet,
    /// rather than one request's data or reply. Only link faults open the circuit breaker.
    #[must_use]
    pub fn is_link_fault(&self) -> bool {
        match self {
            Self::Unavailable | Self::Timeout(_) => true,
            // A demoted master (a failover): drop the link, ask the Sentinels again.
            Self::Redis(e) if e.code() == Some("READONLY") => true,
            Self::Redis(e) => {
                e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_timeout()
                    || e.is_unrecoverable_error()
            }
            Self::BadReply(_) | Self::BadData { .. } => false,
        }
    }
}

/// A counter store.
pub trait CounterStore: Send + Sync + 'static {
    /// Checks the caps and, for [`Operation::Count`], counts the message, atomically.
    fn consume(&self, c: &Consume<'_>) -> impl Future<Output = Result<Answer, StoreError>> + Send;

    /// Records website mail put on hold (`erl:held:<server>:<name>`), for `release`.
    fn hold(&self, h: &Held<'_>) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// One message of a local user put on hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held<'a> {
    pub server: &'a str,
    /// The local user's name (`web12`).
    pub name: &'a str,
    pub queue_id: &'a str,
    /// Unix seconds.
    pub at: i64,
    pub why: HeldFor,
}

/// Why website mail was put on hold: it decides where it is recorded, and what frees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldFor {
    /// Over a `[limits.local]` cap: `erl:held:`, freed by `release`.
    Cap,
    /// The user is locked: `erl:lockheld:`, kept apart.
    Lock,
}

impl Held<'_> {
    /// Where it is recorded.
    #[must_use]
    pub fn key(&self, keys: &KeySchema) -> String {
        match self.why {
            HeldFor::Cap => keys.held(self.server, self.name).to_string(),
            HeldFor::Lock => keys.lock_held(self.server, self.name).to_string(),
        }
    }
}

/// The store chosen by the config.
pub enum Store {
    Redis(Box<redis::RedisStore>),
    Memory(Box<memory::MemoryStore>),
}

impl Store {
    /// Whether Redis answers (`None` for the memory store, which has nothing to reach).
    #[must_use]
    pub fn up(&self) -> Option<bool> {
        match self {
            Self::Redis(s) => Some(s.up()),
            Self::Memory(_) => None,
        }
    }
}

impl CounterStore for Store {
    async fn consume(&self, c: &Consume<'_>) -> Result<Answer, StoreError> {
        match self {
            Self::Redis(s) => s.consume(c).await,
            Self::Memory(s) => s.consume(c).await,
        }
    }

    async fn hold(&self, h: &Held<'_>) -> Result<(), StoreError> {
        match self {
            Self::Redis(s) => s.hold(h).await,
            Self::Memory(s) => s.hold(h).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::Scope;
    use crate::window::Window;

    const M: Check = Check { counter: 0, limit: 5 };
    const G: Check = Check { counter: 1, limit: 999 };

    #[test]
    fn the_first_full_cap_in_order_is_named() {
        // cap 5: 2 then 3 fit exactly, then 1 more does not.
        assert_eq!(first_full(&[0, 0], &[M, G], &[2, 2]), None);
        assert_eq!(first_full(&[2, 2], &[M, G], &[3, 3]), None);
        assert_eq!(first_full(&[5, 5], &[M, G], &[1, 1]), Some(0));
        // the mailbox cap is checked first
        assert_eq!(first_full(&[5, 999], &[M, G], &[1, 1]), Some(0));
        assert_eq!(first_full(&[0, 998], &[M, G], &[2, 2]), Some(1));
        assert_eq!(first_full(&[0, 998], &[M, G], &[1, 1]), None);
        // no caps (an uncapped or exempt sender, or caps not known yet): always fits
        assert_eq!(first_full(&[u64::MAX, u64::MAX], &[], &[1, 1]), None);
        assert_eq!(first_full(&[u64::MAX], &[Check { counter: 0, limit: u64::MAX }], &[1]), None);
        // two caps on one counter (an hourly and a daily on the same scope would use two)
        assert_eq!(
            first_full(&[3], &[Check { counter: 0, limit: 10 }, Check { counter: 0, limit: 3 }], &[1]),
            Some(1)
        );
        // a cap naming a counter that is not there never refuses
        assert_eq!(first_full(&[9], &[Check { counter: 4, limit: 1 }], &[1]), None);
        // a message counter adds 1 whatever the recipients: 39 messages + 1 fit under 40
        let msg = Check { counter: 1, limit: 40 };
        assert_eq!(first_full(&[0, 39], &[M, msg], &[5, 1]), None);
        assert_eq!(first_full(&[0, 40], &[M, msg], &[5, 1]), Some(1));
    }

    #[test]
    fn the_adds_follow_each_counters_unit() {
        let alice = crate::sender::normalize("alice@example.com").expect("valid");
        let counters = [
            Counter::rcpt(Scope::Mailbox, Window::Day),
            Counter { scope: Scope::Mailbox, window: Window::HOUR, unit: Unit::Msg },
        ];
        let zone = crate::clock::Zone::Named(chrono_tz::UTC);
        let c = Consume {
            sender: &alice,
            recipients: 7,
            counters: &counters,
            caps: &[],
            operation: Operation::Count,
            mode: Mode::Enforce,
            client: "",
            at: zone.moment(chrono::DateTime::UNIX_EPOCH),
            raise: "",
            guard: Guard::default(),
            server: "",
            message: Message::default(),
            oversize: None,
            per_message: None,
            learn: None,
            network: None,
        };
        assert_eq!(c.adds(), [7, 1]);
    }

    #[test]
    fn oversize_is_more_recipients_than_a_cap_allows_whatever_is_counted() {
        let rcpt = [Counter::rcpt(Scope::Mailbox, Window::Day), Counter::rcpt(Scope::Server, Window::Day)];
        assert_eq!(first_oversize(&[M, G], &rcpt, 5), None, "exactly the cap fits an empty window");
        assert_eq!(first_oversize(&[M, G], &rcpt, 6), Some(0));
        assert_eq!(first_oversize(&[G, M], &rcpt, 6), Some(1), "the first in cap order");
        assert_eq!(first_oversize(&[M, G], &rcpt, 1000), Some(0));
        assert_eq!(first_oversize(&[Check { counter: 0, limit: 0 }], &rcpt, 1), Some(0), "a cap of 0");
        assert_eq!(first_oversize(&[], &rcpt, u64::MAX), None);
        // A message cap is never oversize: 6 recipients are one message.
        let msg = [Counter { unit: Unit::Msg, ..rcpt[0] }, rcpt[1]];
        assert_eq!(first_oversize(&[M, G], &msg, 6), None);
        assert_eq!(first_oversize(&[M, G], &msg, 1000), Some(1), "the recipient cap after it");
    }
}

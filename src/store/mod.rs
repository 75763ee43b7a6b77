//! Counter stores: check both daily caps and count one message in one atomic step.
//!
//! The [`CounterStore`] trait is what `policy` talks to; [`redis::RedisStore`] runs
//! `consume.lua` (one round trip) and [`memory::MemoryStore`] does the same in process. Only this
//! module builds Redis keys ([`KeySchema`]); it knows nothing of Postfix.

mod breaker;
pub mod keys;
pub mod memory;
pub mod redis;
pub mod violation;

use std::future::Future;

pub use keys::KeySchema;
pub use violation::Violation;

use crate::clock::Moment;
use crate::config::Mode;
use crate::sender::Mailbox;

/// Whether a message is counted or only checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// End of data: check, and count when the message fits (or in log-only mode).
    Count,
    /// RCPT pre-check: refuse a sender or server already at its cap; never count.
    Check,
}

/// One question to the store.
#[derive(Debug, Clone)]
pub struct Consume<'a> {
    pub sender: &'a Mailbox,
    /// Recipients of the message (>= 1).
    pub recipients: u32,
    /// The sender's daily cap, if one is enforced.
    pub mailbox_cap: Option<u64>,
    /// The server's daily cap, if one is enforced (not while the database's is unknown).
    pub global_cap: Option<u64>,
    pub operation: Operation,
    pub mode: Mode,
    /// The SMTP client's address, for the violation record.
    pub client: &'a str,
    /// Decides the local date of the counters and the violation timestamp.
    pub at: Moment,
}

/// Which cap, if any, the message passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fits,
    OverMailbox,
    OverGlobal,
}

impl Verdict {
    /// The decision rule shared by every store (and mirrored by `consume.lua`): the mailbox cap
    /// first, then the server-wide cap; `m` and `g` are today's counts before the message.
    #[must_use]
    pub fn judge(m: u64, g: u64, n: u64, mailbox_cap: Option<u64>, global_cap: Option<u64>) -> Self {
        let over = |count: u64, cap: Option<u64>| cap.is_some_and(|cap| count.saturating_add(n) > cap);
        if over(m, mailbox_cap) {
            Self::OverMailbox
        } else if over(g, global_cap) {
            Self::OverGlobal
        } else {
            Self::Fits
        }
    }
}

/// What the store decided and the counts before this message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub verdict: Verdict,
    pub mailbox: u64,
    pub global: u64,
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
    fn consume(&self, c: &Consume<'_>) -> impl Future<Output = Result<Counts, StoreError>> + Send;
}

/// The store chosen by the config.
pub enum Store {
    Redis(Box<redis::RedisStore>),
    Memory(memory::MemoryStore),
}

impl CounterStore for Store {
    async fn consume(&self, c: &Consume<'_>) -> Result<Counts, StoreError> {
        match self {
            Self::Redis(s) => s.consume(c).await,
            Self::Memory(s) => s.consume(c).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_follows_the_decision_table() {
        // cap 5: 2 then 3 fit exactly, then 1 more does not.
        let g = Some(999);
        assert_eq!(Verdict::judge(0, 0, 2, Some(5), g), Verdict::Fits);
        assert_eq!(Verdict::judge(2, 2, 3, Some(5), g), Verdict::Fits);
        assert_eq!(Verdict::judge(5, 5, 1, Some(5), g), Verdict::OverMailbox);
        // the mailbox cap is checked first
        assert_eq!(Verdict::judge(5, 999, 1, Some(5), g), Verdict::OverMailbox);
        assert_eq!(Verdict::judge(0, 998, 2, Some(5), g), Verdict::OverGlobal);
        assert_eq!(Verdict::judge(0, 998, 1, Some(5), g), Verdict::Fits);
        // uncapped senders meet only the global cap
        assert_eq!(Verdict::judge(10_000, 0, 1, None, g), Verdict::Fits);
        assert_eq!(Verdict::judge(u64::MAX, u64::MAX, 1, None, Some(u64::MAX)), Verdict::Fits);
        // a cap that is not enforced (the database's, not read yet) never refuses
        assert_eq!(Verdict::judge(5000, 5000, 1, None, None), Verdict::Fits);
    }
}

//! The decision table: a [`Request`] plus the current limits -> an [`Action`], counted through a
//! [`CounterStore`]. Knows no wire bytes, Redis command or SQL; writes the one log line per
//! decision (`erl ok`, `erl DEFER`, `erl DEFER (log-only)`, `erl fail-open`, `erl skip`).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::Local;

use crate::config::Mode;
use crate::limits::LimitsCache;
use crate::protocol::{Action, Request, State};
use crate::sender::{self, Mailbox};
use crate::store::{Consume, CounterStore, Counts, Operation, StoreError, Verdict};

/// The reply text for a sender over its own cap (contract: exact wording).
#[must_use]
pub fn mailbox_text(sender: &Mailbox, limit: u64) -> String {
    format!("{sender}: Your daily limit of {limit} messages reached")
}

/// The reply text when the server-wide cap is reached (contract: exact wording).
#[must_use]
pub fn global_text(sender: &Mailbox, limit: u64) -> String {
    format!("{sender}: Global daily limit of {limit} reached")
}

pub struct Policy<S> {
    store: S,
    limits: Arc<LimitsCache>,
    log_only: AtomicBool,
}

impl<S: CounterStore> Policy<S> {
    pub fn new(store: S, limits: Arc<LimitsCache>, mode: Mode) -> Self {
        Self { store, limits, log_only: AtomicBool::new(mode == Mode::LogOnly) }
    }

    /// Switches between enforcing and log-only (SIGHUP).
    pub fn set_mode(&self, mode: Mode) {
        self.log_only.store(mode == Mode::LogOnly, Ordering::Relaxed);
    }

    #[must_use]
    pub fn mode(&self) -> Mode {
        if self.log_only.load(Ordering::Relaxed) { Mode::LogOnly } else { Mode::Enforce }
    }

    #[must_use]
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Decides one request. Never fails: every fault answers `DUNNO` (fail-open).
    pub async fn decide(&self, req: &Request) -> Action {
        let operation = match req.protocol_state {
            State::EndOfMessage | State::Data => Operation::Count,
            State::Rcpt => Operation::Check,
            State::Other(_) | State::Missing => {
                tracing::debug!(
                    "erl pass reason=stage stage={} queue_id={}",
                    req.protocol_state.as_str(),
                    req.queue_id
                );
                return Action::Dunno;
            }
        };
        if req.sasl_username.is_empty() {
            tracing::debug!(
                "erl pass reason=unauthenticated client={} queue_id={} stage={}",
                req.client_address,
                req.queue_id,
                req.protocol_state.as_str()
            );
            return Action::Dunno;
        }
        if let Some(why) = req.malformed {
            tracing::warn!(
                "erl fail-open reason=malformed-request detail=\"{why}\" client={} queue_id={}",
                req.client_address,
                req.queue_id
            );
            return Action::Dunno;
        }
        let sender = match sender::normalize(&req.sasl_username) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(
                    "erl skip user={:?} reason=bad-username detail=\"{e}\" client={} queue_id={}",
                    req.sasl_username,
                    req.client_address,
                    req.queue_id
                );
                return Action::Dunno;
            }
        };
        let recipients = match operation {
            // Postfix always sends >= 1 here; a missing count still counts the message once.
            Operation::Count => req.recipient_count.unwrap_or(1).max(1),
            // At RCPT the count is 0: ask whether one more recipient would fit.
            Operation::Check => 1,
        };
        let limits = self.limits.current();
        let mode = self.mode();
        let ask = Consume {
            sender: &sender,
            recipients,
            mailbox_cap: limits.mailbox_cap(&sender),
            global_cap: limits.global,
            operation,
            mode,
            client: &req.client_address,
            now: Local::now(),
        };
        match self.store.consume(&ask).await {
            Ok(counts) => self.conclude(&ask, counts, req),
            Err(e) => {
                tracing::warn!(
                    "erl fail-open reason={} detail=\"{e}\" user={sender} rcpt={recipients} client={} queue_id={}",
                    reason(&e),
                    req.client_address,
                    req.queue_id
                );
                Action::Dunno
            }
        }
    }

    fn conclude(&self, ask: &Consume<'_>, counts: Counts, req: &Request) -> Action {
        let n = u64::from(ask.recipients);
        let counted = ask.operation == Operation::Count
            && (counts.verdict == Verdict::Fits || ask.mode == Mode::LogOnly);
        let (m, g) =
            if counted { (counts.mailbox + n, counts.global + n) } else { (counts.mailbox, counts.global) };
        let line = Line {
            user: ask.sender,
            rcpt: n,
            mailbox: m,
            mailbox_cap: ask.mailbox_cap,
            global: g,
            global_cap: ask.global_cap,
            req,
        };
        let text = match counts.verdict {
            Verdict::Fits => {
                tracing::info!("erl ok {line}");
                return Action::Dunno;
            }
            Verdict::OverMailbox => mailbox_text(ask.sender, ask.mailbox_cap.unwrap_or(0)),
            Verdict::OverGlobal => global_text(ask.sender, ask.global_cap),
        };
        let cap = if counts.verdict == Verdict::OverMailbox { "user" } else { "global" };
        match ask.mode {
            Mode::Enforce => {
                tracing::info!("erl DEFER {line} cap={cap}");
                Action::DeferIfPermit(text)
            }
            Mode::LogOnly => {
                tracing::info!("erl DEFER (log-only) {line} cap={cap}");
                Action::Dunno
            }
        }
    }
}

/// A stable token for the fail-open log line.
fn reason(e: &StoreError) -> &'static str {
    match e {
        StoreError::Unavailable => "redis-down",
        StoreError::Timeout(_) => "redis-timeout",
        StoreError::Redis(_) => "redis-error",
        StoreError::BadReply(_) => "redis-bad-reply",
    }
}

/// The shared fields of the `erl ok` / `erl DEFER` lines.
struct Line<'a> {
    user: &'a Mailbox,
    rcpt: u64,
    mailbox: u64,
    mailbox_cap: Option<u64>,
    global: u64,
    global_cap: u64,
    req: &'a Request,
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user={} rcpt={} mailbox={}/", self.user, self.rcpt, self.mailbox)?;
        match self.mailbox_cap {
            Some(cap) => write!(f, "{cap}")?,
            None => f.write_str("-")?,
        }
        write!(
            f,
            " global={}/{} client={} queue_id={} stage={}",
            self.global,
            self.global_cap,
            self.req.client_address,
            self.req.queue_id,
            self.req.protocol_state.as_str()
        )
    }
}

#[cfg(test)]
mod tests;

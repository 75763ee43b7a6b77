//! What a replay found: the summary of DESIGN "Replay", as text or one JSON object. Memory grows
//! with the senders, not with the requests.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde_json::json;

use crate::notify::{Event, Kind};
use crate::policy::Outcome;
use crate::protocol::{Action, Request};
use crate::window::Unit;

/// The summary.
#[derive(Debug, Default)]
pub struct Report {
    pub requests: u64,
    pub skipped: u64,
    senders: HashMap<String, u64>,
    accepted_messages: u64,
    accepted_recipients: u64,
    deferred: BTreeMap<String, u64>,
    oversize: u64,
    per_message: u64,
    locks: Vec<(String, i64, String)>,
    suspects: Vec<(String, i64)>,
    notifications: BTreeMap<&'static str, u64>,
    /// The journal carries no size or envelope: retries cannot be told apart.
    approximate: bool,
    /// Caps read from a database are not replayed (the config file's are).
    database: bool,
    /// `[limits] max_recipients`: what a message counts for, as the daemon counts it.
    max_recipients: u32,
}

impl Report {
    #[must_use]
    pub fn new(approximate: bool, database: bool, max_recipients: u32) -> Self {
        Self { approximate, database, max_recipients, ..Self::default() }
    }

    /// One decided request.
    pub fn add(&mut self, req: &Request, action: &Action, outcome: &Outcome) {
        self.requests += 1;
        // An unauthenticated request is not a sender's (it is decided DUNNO, uncounted).
        if req.sasl_username.is_empty() {
            return;
        }
        // Looked up by reference: the name is copied once per sender, not per request.
        if !self.senders.contains_key(&req.sasl_username) {
            self.senders.insert(req.sasl_username.clone(), 0);
        }
        let Some(deferred) = self.senders.get_mut(&req.sasl_username) else { return };
        match (action, outcome) {
            (Action::Dunno, Outcome::Ok | Outcome::WouldDefer { .. } | Outcome::WouldReject) => {
                self.accepted_messages += 1;
                let (n, _) = crate::policy::recipients(req.recipient_count, self.max_recipients);
                self.accepted_recipients += u64::from(n);
            }
            (Action::DeferIfPermit(_), Outcome::Defer(cause)) => {
                *deferred += 1;
                // `mailbox/1h`, `mailbox/1h/msg` for a message cap, `locked`.
                let mut key = cause.name().unwrap_or_default();
                if cause.unit() == Unit::Msg {
                    key.push_str("/msg");
                }
                *self.deferred.entry(key).or_insert(0) += 1;
            }
            (Action::Reject(_), Outcome::Reject(cause)) => {
                *deferred += 1;
                match cause.reason() {
                    Some("per_message") => self.per_message += 1,
                    _ => self.oversize += 1,
                }
            }
            _ => {}
        }
    }

    /// One event the daemon would have notified.
    pub fn event(&mut self, event: &Event) {
        let kind = match event.event {
            Kind::Refusal => "refusal",
            Kind::Hold => "hold",
            Kind::Suspect => "suspect",
            Kind::Lock => "lock",
            Kind::Unlock => "unlock",
        };
        *self.notifications.entry(kind).or_insert(0) += 1;
        match event.event {
            Kind::Lock => {
                self.locks.push((event.user.clone(), event.ts, event.reason.clone().unwrap_or_default()))
            }
            Kind::Suspect => self.suspects.push((event.user.clone(), event.ts)),
            Kind::Refusal | Kind::Hold | Kind::Unlock => {}
        }
    }

    /// The senders refused most, most first (at most 20).
    fn top_deferred(&self) -> Vec<(&str, u64)> {
        let mut top: Vec<(&str, u64)> =
            self.senders.iter().filter(|(_, n)| **n > 0).map(|(u, n)| (u.as_str(), *n)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        top.truncate(20);
        top
    }

    /// One JSON object.
    #[must_use]
    pub fn json(&self) -> serde_json::Value {
        json!({
            "requests": self.requests,
            "skipped": self.skipped,
            "senders": self.senders.len(),
            "accepted": {"messages": self.accepted_messages, "recipients": self.accepted_recipients},
            "deferred": self.deferred,
            "rejected": {"oversize": self.oversize, "per_message": self.per_message},
            "locks": self.locks.iter().map(|(u, ts, r)| json!({"user": u, "ts": ts, "reason": r})).collect::<Vec<_>>(),
            "suspects": self.suspects.iter().map(|(u, ts)| json!({"user": u, "ts": ts})).collect::<Vec<_>>(),
            "notifications": self.notifications,
            "top_deferred": self.top_deferred().iter().map(|(u, n)| json!({"user": u, "messages": n})).collect::<Vec<_>>(),
            "approximate": self.approximate,
        })
    }

    /// The summary for people.
    #[must_use]
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "requests:      {} ({} lines skipped), {} senders",
            self.requests,
            self.skipped,
            self.senders.len()
        );
        if self.approximate {
            let _ = writeln!(
                o,
                "               approximate: the journal has no size or envelope (retries look like new messages)"
            );
        }
        if self.database {
            let _ =
                writeln!(o, "               the config file's caps only: [database] is not read by replay");
        }
        let _ = writeln!(
            o,
            "accepted:      {} messages, {} recipients",
            self.accepted_messages, self.accepted_recipients
        );
        let deferred: u64 = self.deferred.values().sum();
        let _ = writeln!(o, "deferred:      {deferred} messages");
        for (cap, n) in &self.deferred {
            let _ = writeln!(o, "  {n:>8}  {cap}");
        }
        let _ = writeln!(o, "rejected:      {} oversize, {} per message", self.oversize, self.per_message);
        let _ = writeln!(o, "locked:        {}", self.locks.len());
        for (user, ts, reason) in &self.locks {
            let _ = writeln!(o, "  {user} at {ts}: {reason}");
        }
        let _ = writeln!(o, "suspects:      {}", self.suspects.len());
        let notes: Vec<String> = self.notifications.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ =
            writeln!(o, "notifications: {}", if notes.is_empty() { "none".into() } else { notes.join(", ") });
        let top = self.top_deferred();
        if !top.is_empty() {
            let _ = writeln!(o, "most refused:");
            for (user, n) in top {
                let _ = writeln!(o, "  {n:>8}  {user}");
            }
        }
        o
    }
}

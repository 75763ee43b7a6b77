//! What a replay found: the summary of DESIGN "Replay", as text or one JSON object. Memory grows
//! with the senders, not with the requests.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde_json::json;

use chrono::NaiveDate;

use crate::clock::Zone;
use crate::config::Mode;
use crate::notify::{Event, Kind};
use crate::policy::Outcome;
use crate::protocol::{Action, Request};
use crate::window::Unit;

/// What one sender's mail came to when refused: how, and the caps that bound.
#[derive(Debug, Default)]
struct Tally {
    deferred: u64,
    rejected: u64,
    held: u64,
    /// Refusals by the cap that bound (`mailbox/1d`, `locked`...).
    caps: HashMap<String, u64>,
}

impl Tally {
    fn refused(&self) -> u64 {
        self.deferred + self.rejected + self.held
    }

    /// The cap that bound most often (the first by name of equals).
    fn cap(&self) -> Option<&str> {
        self.caps.iter().max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0))).map(|(c, _)| c.as_str())
    }
}

/// The summary.
#[derive(Debug, Default)]
pub struct Report {
    pub requests: u64,
    /// Lines (JSON lines, journal) or messages (Postfix's log) that are no request.
    pub skipped: u64,
    senders: HashMap<String, Tally>,
    accepted_messages: u64,
    accepted_recipients: u64,
    deferred: BTreeMap<String, u64>,
    held_messages: u64,
    held_recipients: u64,
    /// What the inputs held (`"inputs"`).
    inputs: serde_json::Value,
    /// The learned allowances in force at the end: (user, daily cap, since).
    learned: Vec<(String, u64, NaiveDate)>,
    /// When the mode in force changed (`enforce_from`, `--mode as-configured`).
    mode_switches: Vec<(i64, Mode)>,
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
    /// Times for people, in the config's zone.
    zone: Zone,
}

impl Report {
    #[must_use]
    pub fn new(approximate: bool, database: bool, max_recipients: u32, zone: Zone) -> Self {
        Self { approximate, database, max_recipients, zone, ..Self::default() }
    }

    /// One decided request; `held`: website mail the milter would put on hold.
    pub fn add(&mut self, req: &Request, action: &Action, outcome: &Outcome, held: bool) {
        self.requests += 1;
        // An unauthenticated request is not a sender's (it is decided DUNNO, uncounted).
        let user = if req.local_user.is_empty() {
            std::borrow::Cow::Borrowed(req.sasl_username.as_str())
        } else {
            std::borrow::Cow::Owned(format!("{}{}", crate::sender::LOCAL_PREFIX, req.local_user))
        };
        if user.is_empty() {
            return;
        }
        // Looked up by reference: the name is copied once per sender, not per request.
        if !self.senders.contains_key(user.as_ref()) {
            self.senders.insert(user.clone().into_owned(), Tally::default());
        }
        let Some(tally) = self.senders.get_mut(user.as_ref()) else { return };
        let (n, _) = crate::policy::recipients(req.recipient_count, self.max_recipients);
        let cause = match (action, outcome) {
            (Action::Dunno, Outcome::Ok | Outcome::WouldDefer { .. } | Outcome::WouldReject) => {
                self.accepted_messages += 1;
                self.accepted_recipients += u64::from(n);
                return;
            }
            (
                Action::DeferIfPermit(_) | Action::Reject(_),
                Outcome::Defer(cause) | Outcome::Reject(cause),
            ) if held => {
                tally.held += 1;
                self.held_messages += 1;
                self.held_recipients += u64::from(n);
                cause
            }
            (Action::DeferIfPermit(_), Outcome::Defer(cause)) => {
                tally.deferred += 1;
                // `mailbox/1h`, `mailbox/1h/msg` for a message cap, `locked`.
                let mut key = cause.name().unwrap_or_default();
                if cause.unit() == Unit::Msg {
                    key.push_str("/msg");
                }
                *self.deferred.entry(key).or_insert(0) += 1;
                cause
            }
            (Action::Reject(_), Outcome::Reject(cause)) => {
                tally.rejected += 1;
                match cause.reason() {
                    Some("per_message") => self.per_message += 1,
                    _ => self.oversize += 1,
                }
                cause
            }
            _ => return,
        };
        let mut cap = cause.name().unwrap_or_else(|| cause.reason().unwrap_or("refused").to_owned());
        if cause.unit() == Unit::Msg && cap != "locked" {
            cap.push_str("/msg");
        }
        *tally.caps.entry(cap).or_insert(0) += 1;
    }

    /// The mode in force changed at unix second `ts`.
    pub fn mode_switch(&mut self, ts: i64, mode: Mode) {
        self.mode_switches.push((ts, mode));
    }

    /// The learned allowances in force at the end.
    pub fn learned(&mut self, learned: Vec<(String, u64, NaiveDate)>) {
        self.learned = learned;
    }

    /// What a line input held: its lines and those that are no request.
    pub fn lines(&mut self, lines: usize, skipped: u64) {
        self.skipped = skipped;
        self.inputs = json!({"lines": lines, "understood": lines as u64 - skipped, "skipped": {"not_requests": skipped}});
    }

    /// What Postfix's log held.
    pub fn maillog(&mut self, counts: super::maillog::Counts) {
        self.skipped = counts.skipped.values().sum();
        self.inputs = json!({
            "lines": counts.lines,
            "understood": counts.understood,
            "messages": counts.messages,
            "refused_one_recipient": counts.refused_one_recipient,
            "skipped": counts.skipped,
        });
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
    fn top_refused(&self) -> Vec<(&str, &Tally)> {
        let mut top: Vec<(&str, &Tally)> =
            self.senders.iter().filter(|(_, t)| t.refused() > 0).map(|(u, t)| (u.as_str(), t)).collect();
        top.sort_by(|a, b| b.1.refused().cmp(&a.1.refused()).then_with(|| a.0.cmp(b.0)));
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
            "top_deferred": self.top_refused().iter().map(|(u, t)| json!({"user": u, "messages": t.refused()})).collect::<Vec<_>>(),
            "approximate": self.approximate,
            "inputs": self.inputs,
            "learned": self.learned.iter().map(|(u, daily, from)| json!({"user": u, "daily": daily, "from": from.to_string()})).collect::<Vec<_>>(),
            "mode_switches": self.mode_switches.iter().map(|(ts, mode)| json!({"ts": ts, "mode": mode.as_str()})).collect::<Vec<_>>(),
            "held": {"messages": self.held_messages, "recipients": self.held_recipients},
        })
    }

    /// The summary for people.
    #[must_use]
    pub fn text(&self) -> String {
        let mut o = String::new();
        let what = if self.inputs.get("messages").is_some() { "messages" } else { "lines" };
        let _ = writeln!(
            o,
            "requests:      {} ({} {what} skipped), {} senders",
            self.requests,
            self.skipped,
            self.senders.len()
        );
        self.text_inputs(&mut o);
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
        for (ts, mode) in &self.mode_switches {
            let _ = writeln!(o, "mode:          {} from {}", mode.as_str(), self.zone.show_unix(*ts));
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
        let _ = writeln!(
            o,
            "held:          {} messages, {} recipients (website mail)",
            self.held_messages, self.held_recipients
        );
        let _ = writeln!(o, "locked:        {}", self.locks.len());
        for (user, ts, reason) in &self.locks {
            let _ = writeln!(o, "  {user} at {}: {reason}", self.zone.show_unix(*ts));
        }
        let _ = writeln!(o, "suspects:      {}", self.suspects.len());
        let notes: Vec<String> = self.notifications.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ =
            writeln!(o, "notifications: {}", if notes.is_empty() { "none".into() } else { notes.join(", ") });
        let _ = writeln!(o, "learned:       {} allowances in force at the end", self.learned.len());
        for (user, daily, from) in &self.learned {
            let _ = writeln!(o, "  {user}: learned {daily}/1d from {from}");
        }
        self.text_refused(&mut o);
        o
    }

    /// The inputs' lines and what was skipped.
    fn text_inputs(&self, o: &mut String) {
        let (Some(lines), Some(understood)) =
            (self.inputs["lines"].as_u64(), self.inputs["understood"].as_u64())
        else {
            return;
        };
        let _ = write!(o, "input:         {lines} lines, {understood} understood");
        if let Some(messages) = self.inputs["messages"].as_u64() {
            let _ = write!(o, "; {messages} messages");
            let one = self.inputs["refused_one_recipient"].as_u64().unwrap_or(0);
            if one > 0 {
                let _ = write!(o, ", {one} refused or held before the queue (replayed with 1 recipient)");
            }
        }
        let skipped: Vec<String> = self.inputs["skipped"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, n)| n.as_u64().is_some_and(|n| n > 0))
            .map(|(why, n)| format!("{} {n}", why.replace('_', " ")))
            .collect();
        if !skipped.is_empty() {
            let _ = write!(o, "; skipped: {}", skipped.join(", "));
        }
        let _ = writeln!(o);
    }

    /// The senders deferred, rejected, held or locked, most refused first, each with the cap
    /// that bound most often.
    fn text_refused(&self, o: &mut String) {
        let top = self.top_refused();
        let locked = |user: &str| self.locks.iter().any(|(u, _, _)| u == user);
        let mut unrefused: Vec<&str> = self
            .locks
            .iter()
            .map(|(u, _, _)| u.as_str())
            .filter(|u| self.senders.get(*u).is_none_or(|t| t.refused() == 0))
            .collect();
        unrefused.dedup();
        if top.is_empty() && unrefused.is_empty() {
            return;
        }
        let _ = writeln!(o, "refused senders, most first:");
        for (user, t) in top {
            let mut how: Vec<String> = [("deferred", t.deferred), ("rejected", t.rejected), ("held", t.held)]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(what, n)| format!("{what} {n}"))
                .collect();
            if let Some(cap) = t.cap() {
                how.push(format!("cap {cap}"));
            }
            if locked(user) {
                how.push("locked".into());
            }
            let _ = writeln!(o, "  {:>8}  {user}: {}", t.refused(), how.join(", "));
        }
        for user in unrefused {
            let _ = writeln!(o, "  {:>8}  {user}: locked", 0);
        }
    }
}

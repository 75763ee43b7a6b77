//! `replay`: what would this config have done? Timestamped requests go through the daemon's own
//! decision code ([`Policy`] on a [`MemoryStore`]) on a virtual clock driven by the input's
//! times: no Redis, nothing sent (the notification events are counted). By default it decides
//! as `enforce`, whatever the config's mode: the question is what enforcing would have done.
//!
//! The requests come from JSON lines or the daemon's journal ([`lines`]), or from Postfix's own
//! log ([`maillog`]: one request per message, website mail decided as the milter decides it).

pub mod input;
pub mod lines;
pub mod maillog;
mod report;

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};

pub use self::input::{InputError, Line};
pub use self::report::Report;
use crate::clock::FixedClock;
use crate::config::{Config, LearnSettings, Mode};
use crate::learn::run::fold_and_learn;
use crate::learn::table::earners;
use crate::limits::LimitsCache;
use crate::milter::Verdict;
use crate::notify::Queue;
use crate::policy::{Env, Outcome, Policy, Settings};
use crate::protocol::{Action, Request};
use crate::store::KeySchema;
use crate::store::memory::MemoryStore;

/// The mode to decide in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayMode {
    /// Enforce, whatever the config says.
    Enforce,
    /// The config's mode (and `enforce_from`).
    AsConfigured,
}

/// One request to replay.
#[derive(Debug)]
pub struct Replayed {
    /// Unix microseconds.
    pub at: i64,
    /// Its index: the input's line number (JSON lines, journal) or the message's place in time
    /// (Postfix's log).
    pub i: usize,
    pub request: Request,
    /// Website mail: decided as the milter decides it (a refusal is a hold).
    pub website: bool,
    pub queue_id: String,
}

/// Where the requests come from.
pub enum Input {
    Lines(lines::Lines),
    /// Postfix's log, read whole and sorted; the counts of its lines and messages.
    Maillog {
        requests: std::vec::IntoIter<Replayed>,
        counts: maillog::Counts,
        names: String,
    },
}

impl Input {
    fn next(&mut self) -> Result<Option<Replayed>, ReplayError> {
        match self {
            Self::Lines(lines) => lines.next_request(),
            Self::Maillog { requests, .. } => Ok(requests.next()),
        }
    }
}

/// A replay fault: a bad input line (named), or the input or the decisions file failing.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{file}: {error} (expected {expected})")]
    Line { file: String, error: InputError, expected: &'static str },
    #[error("{file}: line {line} is a log line, not JSON: Postfix's log is read with --input maillog")]
    LogLine { file: String, line: usize },
    #[error(
        "{file}: line {line}: more than 10 minutes earlier than a line before it: the input must be in time order"
    )]
    OutOfOrder { file: String, line: usize },
    #[error(
        "{names}: no request in {lines} lines ({understood} with a log line's stamp, host and program): --input maillog reads Postfix's log as syslog writes it (traditional, RFC 3339 or ISO stamps) and journalctl -o short, short-iso or short-precise, plain or gzip"
    )]
    NoRequest { names: String, lines: u64, understood: u64 },
    #[error("{0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Replays `input` under `config`; one decision line per request goes to `decisions` if given.
///
/// # Errors
/// [`ReplayError`] for an unreadable or out-of-order line, an input without a request, or an
/// I/O fault.
pub async fn run(
    config: &Config,
    mut input: Input,
    mode: ReplayMode,
    mut decisions: Option<&mut dyn Write>,
) -> Result<Report, ReplayError> {
    let clock = Arc::new(FixedClock::new(DateTime::<Utc>::UNIX_EPOCH));
    let limits = Arc::new(LimitsCache::new(config.limits.clone(), None));
    let store = MemoryStore::new(KeySchema::new(&config.redis.key_prefix), 1000);
    let (queue, mut events) = Queue::collecting();
    // Wired as the daemon wires it; `--mode enforce` (the default) decides as enforcing.
    let mut settings = Settings::from(config);
    if mode == ReplayMode::Enforce {
        settings = Settings { mode: Mode::Enforce, enforce_from: None, ..settings };
    }
    let env = Env {
        zone: config.timezone,
        clock: clock.clone(),
        server: config.server_name.clone(),
        events: Some(queue),
    };
    let policy = Policy::new(store, limits, settings, env);
    let journal = matches!(&input, Input::Lines(l) if l.is_journal());
    let mut report =
        Report::new(journal, config.database.is_some(), config.limits.max_recipients, config.timezone);
    let mut learned_on: Option<NaiveDate> = None;
    let mut learned = Learned::default();
    let mut mode_now = None;
    while let Some(r) = input.next()? {
        clock.set(DateTime::<Utc>::from_timestamp_micros(r.at).unwrap_or_default());
        // A new local day: yesterday's totals go into the histories and the allowances are
        // learned again, as the daemon does after midnight.
        let today = policy.moment().day();
        if config.learn.enabled && learned_on != Some(today) {
            learn(&policy, learned_on, today, &config.learn, &mut learned).await;
            learned_on = Some(today);
        }
        let in_force = policy.settings().mode_on(today);
        if mode_now.is_some_and(|m| m != in_force) {
            report.mode_switch(r.at / 1_000_000, in_force);
        }
        mode_now = Some(in_force);
        let decision = policy.decide(&r.request).await;
        let (action, outcome) = (decision.reply.action, decision.outcome);
        let held = r.website && matches!(Verdict::of(&action, outcome.locked()), Verdict::Hold { .. });
        report.add(&r.request, &action, &outcome, held);
        while let Ok(event) = events.try_recv() {
            report.event(&event);
        }
        if let Some(out) = decisions.as_deref_mut() {
            writeln!(out, "{}", decision_line(&r, &action, &outcome, held))?;
        }
    }
    match input {
        Input::Maillog { counts, names, .. } => {
            if report.requests == 0 {
                return Err(ReplayError::NoRequest {
                    names,
                    lines: counts.lines,
                    understood: counts.understood,
                });
            }
            report.maillog(counts);
        }
        Input::Lines(lines) => report.lines(lines.lines, lines.skipped),
    }
    report.learned(learned.in_force());
    Ok(report)
}

/// The learned allowances by name as the days pass: each with the day it began (the first day
/// of its unbroken run).
#[derive(Debug, Default)]
struct Learned(HashMap<String, (u64, NaiveDate)>);

impl Learned {
    fn update(&mut self, now: Vec<(String, u64)>, today: NaiveDate) {
        let mut next = HashMap::with_capacity(now.len());
        for (name, limit) in now {
            let from = self.0.get(&name).map_or(today, |(_, from)| *from);
            next.insert(name, (limit, from));
        }
        self.0 = next;
    }

    /// Sorted by name.
    fn in_force(&self) -> Vec<(String, u64, NaiveDate)> {
        let mut all: Vec<_> = self.0.iter().map(|(n, (l, f))| (n.clone(), *l, *f)).collect();
        all.sort();
        all
    }
}

/// Folds the days from `since` (the last day learned on) to the day before `today` into the
/// histories and sets the allowances learned from them: the daemon's own learning run.
async fn learn(
    policy: &Policy<MemoryStore>,
    since: Option<NaiveDate>,
    today: NaiveDate,
    settings: &LearnSettings,
    learned: &mut Learned,
) {
    let mut store = policy.store();
    let first = since.unwrap_or(today);
    let limits = policy.limits();
    // In process: the run cannot fail.
    if let Ok(run) = fold_and_learn(&mut store, first, today, &limits, settings, 0).await {
        policy.set_allowances(run.allowances);
    }
    let histories = policy.store().histories();
    let named = earners(histories.iter().map(|(n, h)| (n.as_str(), h)), today, &limits, settings)
        .map(|(mailbox, l, _)| (mailbox.as_str().to_owned(), l.limit))
        .collect();
    learned.update(named, today);
}

/// `{"i", "queue_id", "action", "cap", "unit", "reason"}` (DESIGN "Replay"; `queue_id` when
/// known, `"action": "HOLD"` for website mail put on hold).
fn decision_line(r: &Replayed, action: &Action, outcome: &Outcome, held: bool) -> String {
    let name = if held { "HOLD" } else { action.name() };
    let mut line = serde_json::json!({"i": r.i, "action": name});
    if !r.queue_id.is_empty() {
        line["queue_id"] = r.queue_id.clone().into();
    }
    let (Outcome::Defer(cause) | Outcome::Reject(cause) | Outcome::WouldDefer(cause)) = outcome else {
        return line.to_string();
    };
    if let Some(cap) = cause.name() {
        if cap != "locked" {
            line["unit"] = cause.unit().name().into();
        }
        line["cap"] = cap.into();
    }
    if let Some(reason) = cause.reason() {
        line["reason"] = reason.into();
    }
    line.to_string()
}

//! `replay`: what would this config have done? Timestamped requests go through the daemon's own
//! decision code ([`Policy`] on a [`MemoryStore`]) on a virtual clock driven by the input's
//! times: no Redis, nothing sent (the notification events are counted). By default it decides
//! as `enforce`, whatever the config's mode: the question is what enforcing would have done.

pub mod input;
mod report;

use std::io::{BufRead, Write};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};

pub use self::input::{InputError, Line};
pub use self::report::Report;
use crate::clock::FixedClock;
use crate::config::LearnSettings;
use crate::config::{Config, Mode};
use crate::learn::run::fold_and_learn;
use crate::limits::LimitsCache;
use crate::notify::Queue;
use crate::policy::Outcome;
use crate::policy::{Env, Policy, Settings};
use crate::protocol::Action;
use crate::store::KeySchema;
use crate::store::memory::MemoryStore;

/// How the input is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Journal,
}

/// The mode to decide in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayMode {
    /// Enforce, whatever the config says.
    Enforce,
    /// The config's mode (and `enforce_from`).
    AsConfigured,
}

/// A replay fault: a bad input line (named), or the input or the decisions file failing.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}")]
    Input(#[from] InputError),
    #[error("line {line}: earlier than the line before ({at} < {before}): the input must be in time order")]
    OutOfOrder { line: usize, at: f64, before: f64 },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Replays `input` under `config`; one decision line per request goes to `decisions` if given.
///
/// # Errors
/// [`ReplayError`] for an unreadable or out-of-order line, or an I/O fault.
pub async fn run(
    config: &Config,
    input: impl BufRead,
    format: Format,
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
    let mut report =
        Report::new(format == Format::Journal, config.database.is_some(), config.limits.max_recipients);
    let mut last = f64::MIN;
    let mut learned_on: Option<NaiveDate> = None;
    for (i, text) in input.lines().enumerate() {
        let text = text?;
        let line = match format {
            Format::Jsonl => input::jsonl(&text, i + 1)?,
            Format::Journal => input::journal(&text, i + 1)?,
        };
        let Line::Request(at, req) = line else {
            report.skipped += 1;
            continue;
        };
        if at < last {
            return Err(ReplayError::OutOfOrder { line: i + 1, at, before: last });
        }
        last = at;
        #[allow(clippy::cast_possible_truncation)]
        let micros = (at * 1e6).round() as i64;
        clock.set(DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default());
        // A new local day: yesterday's totals go into the histories and the allowances are
        // learned again, as the daemon does after midnight.
        let today = policy.moment().day();
        if config.learn.enabled && learned_on != Some(today) {
            learn(&policy, learned_on, today, &config.learn).await;
            learned_on = Some(today);
        }
        let decision = policy.decide(&req).await;
        let (action, outcome) = (decision.reply.action, decision.outcome);
        report.add(&req, &action, &outcome);
        while let Ok(event) = events.try_recv() {
            report.event(&event);
        }
        if let Some(out) = decisions.as_deref_mut() {
            writeln!(out, "{}", decision_line(i, &action, &outcome))?;
        }
    }
    Ok(report)
}

/// Folds the days from `since` (the last day learned on) to the day before `today` into the
/// histories and sets the allowances learned from them: the daemon's own learning run.
async fn learn(
    policy: &Policy<MemoryStore>,
    since: Option<NaiveDate>,
    today: NaiveDate,
    settings: &LearnSettings,
) {
    let mut store = policy.store();
    let first = since.unwrap_or(today);
    // In process: the run cannot fail.
    if let Ok(run) = fold_and_learn(&mut store, first, today, &policy.limits(), settings, 0).await {
        policy.set_allowances(run.allowances);
    }
}

/// `{"i", "action", "cap", "unit", "reason"}` (DESIGN "Replay").
fn decision_line(i: usize, action: &Action, outcome: &Outcome) -> String {
    let mut line = serde_json::json!({"i": i, "action": action.name()});
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

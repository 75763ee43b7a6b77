//! The decision table: a [`Request`] plus the current limits -> a [`Decision`], counted through
//! a [`CounterStore`]. Knows no wire bytes, Redis command or SQL; writes the one log line per
//! decision (`erl ok`, `erl DEFER`, `erl DEFER (log-only)`, `erl fail-open`, `erl skip`).
//!
//! One request: [`request`] prepares it (stage, sender, recipients, allowance, message), the
//! store is asked (again once if the sender's raise changed meanwhile), and [`conclude`] turns
//! the answer into the reply, the line and the events. The reloadable settings are one
//! [`Settings`] snapshot, loaded once per request.

mod conclude;
mod guard;
mod message;
mod outcome;
mod plan;
mod raises;
mod request;
mod settings;
mod text;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use outcome::{Cause, Outcome};
pub use settings::Settings;
pub use text::{global_text, locked_text, mailbox_text, oversize_text, per_message_text, refusal_text};

use self::plan::Plan;
use self::raises::Raises;
use crate::clock::{Clock, SystemClock, Zone};
use crate::config::Mode;
use crate::learn::Allowances;
use crate::learn::recorded::RecordedToday;
use crate::limits::LimitsCache;
use crate::notify::Queue;
use crate::once::OncePer;
use crate::protocol::{Action, Reply, Request};
use crate::store::{Answer, Consume, CounterStore, StoreError};

/// How often the same bad Redis key is named in the log.
const BAD_KEY_LOG_EVERY: Duration = Duration::from_secs(60);

/// How many recipients an end-of-data request counts for (contract): a `recipient_count` that
/// is missing, zero or not a decimal integer counts 1 (the message exists and must not escape
/// counting); one above `max` counts `max`. Returns the count and whether it was capped.
#[must_use]
pub fn recipients(count: Option<u64>, max: u32) -> (u32, bool) {
    match count {
        None | Some(0) => (1, false),
        Some(n) => match u32::try_from(n) {
            Ok(n) if n <= max => (n, false),
            _ => (max, true),
        },
    }
}

/// How one request was decided: the reply (a dry run's carries what enforcing would answer),
/// how it ended, and the recipients it added to the counters (for the metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub reply: Reply,
    pub outcome: Outcome,
    pub counted: u64,
}

impl Decision {
    /// Let through (`DUNNO`) without counting.
    fn passed(outcome: Outcome) -> Self {
        Self { reply: Action::Dunno.into(), outcome, counted: 0 }
    }

    /// The answer.
    #[must_use]
    pub fn action(&self) -> &Action {
        &self.reply.action
    }
}

/// What a policy runs in: the time, this server, where events go. Fixed for its life.
pub struct Env {
    /// "Today" is decided in this zone, with "now" from `clock`.
    pub zone: Zone,
    pub clock: Arc<dyn Clock>,
    /// This server, in violation records and events.
    pub server: String,
    /// Where notification events go (none: not configured).
    pub events: Option<Queue>,
}

impl Default for Env {
    /// The system clock in the local zone, no server name, no events.
    fn default() -> Self {
        Self { zone: Zone::Local, clock: Arc::new(SystemClock), server: String::new(), events: None }
    }
}

pub struct Policy<S> {
    store: S,
    limits: Arc<LimitsCache>,
    /// What a SIGHUP changes, as one snapshot.
    settings: arc_swap::ArcSwap<Settings>,
    /// The allowances learned (computed off the request path, after local midnight).
    allowances: arc_swap::ArcSwap<Allowances>,
    zone: Zone,
    clock: Arc<dyn Clock>,
    server: String,
    events: Option<Queue>,
    bad_keys: OncePer,
    raises: Raises,
    /// The (sender, network) pairs whose network the script remembered today.
    recorded: RecordedToday,
}

impl<S: CounterStore> Policy<S> {
    /// The one way a policy is made: by the daemon, by `replay`, by the tests.
    pub fn new(store: S, limits: Arc<LimitsCache>, settings: Settings, env: Env) -> Self {
        Self {
            store,
            limits,
            settings: arc_swap::ArcSwap::from_pointee(settings),
            allowances: arc_swap::ArcSwap::from_pointee(Allowances::default()),
            zone: env.zone,
            clock: env.clock,
            server: env.server,
            events: env.events,
            bad_keys: OncePer::new(BAD_KEY_LOG_EVERY),
            raises: Raises::default(),
            recorded: RecordedToday::default(),
        }
    }

    /// New settings (SIGHUP), all at once: a request sees the old ones or the new ones whole.
    pub fn reconfigure(&self, settings: Settings) {
        self.settings.store(Arc::new(settings));
    }

    /// The settings in force.
    #[must_use]
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// The allowances learned (start, after local midnight, SIGHUP).
    pub fn set_allowances(&self, allowances: Allowances) {
        self.allowances.store(Arc::new(allowances));
    }

    /// How many mailboxes have an allowance now.
    #[must_use]
    pub fn allowances_count(&self) -> usize {
        self.allowances.load().len()
    }

    /// The limits in force (to compute allowances against).
    #[must_use]
    pub fn limits(&self) -> Arc<crate::limits::Limits> {
        self.limits.current()
    }

    /// The notification queue (its counters are exported as metrics).
    #[must_use]
    pub fn events(&self) -> Option<&Queue> {
        self.events.as_ref()
    }

    /// Now, in the policy's zone and on its clock.
    #[must_use]
    pub fn moment(&self) -> crate::clock::Moment {
        self.zone.moment(self.clock.now())
    }

    /// The mode now (the configured one, or enforce once `enforce_from` has come).
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.settings.load().mode_on(self.moment().day())
    }

    #[must_use]
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Decides one request. Never fails: every fault answers `DUNNO` (fail-open). A dry run
    /// (`probe`) changes nothing and, in log-only mode, says what enforcing would answer.
    pub async fn decide(&self, req: &Request) -> Decision {
        let settings = self.settings.load();
        let p = match self.prepare(req, &settings) {
            Ok(p) => p,
            Err(outcome) => return Decision::passed(outcome),
        };
        let mut raise = self.raises.get(&p.sender);
        // At most one retry: the raise changed between our last look and this request.
        for _ in 0..2 {
            let rates = raise.as_deref().and_then(|r| self.raises.parse(r));
            let plan = Plan::new(&p.limits, &p.sender, rates.as_deref(), p.learned);
            let ask = p.ask(&plan, raise.as_deref().unwrap_or_default(), &settings, &self.server);
            match self.store.consume(&ask).await {
                Ok(Answer::Counts(counts)) => return self.counted(&p, &ask, &plan, &counts, &settings),
                Ok(Answer::Locked(watch)) => return self.stopped(&ask, &watch, req, &settings.replies),
                Ok(Answer::Raised(now)) => raise = self.raises.set(&p.sender, now),
                Err(e) => {
                    self.fail_open(&e, &ask, req);
                    return Decision::passed(Outcome::FailOpen);
                }
            }
        }
        tracing::warn!(
            "erl fail-open reason=raise-changing user={} rcpt={} client={} queue_id={}",
            p.sender,
            p.recipients,
            req.client_address,
            req.queue_id
        );
        Decision::passed(Outcome::FailOpen)
    }

    /// Records website mail of the local user `name` put on hold (`release` finds it there, or,
    /// held for a lock, apart from it).
    pub async fn record_held(&self, name: &str, queue_id: &str, why: crate::store::HeldFor) {
        let at = self.clock.now().timestamp();
        let held = crate::store::Held { server: &self.server, name, queue_id, at, why };
        if let Err(e) = self.store.hold(&held).await {
            tracing::warn!(
                "erl milter: queue_id={queue_id} of local:{name} is held but not recorded ({e}); release it with postsuper -H {queue_id}"
            );
        }
    }

    /// Logs a store fault, once a minute per key for bad data (every retry meets it again).
    fn fail_open(&self, e: &StoreError, ask: &Consume<'_>, req: &Request) {
        let (sender, recipients) = (ask.sender, ask.recipients);
        let (client, queue_id) = (&req.client_address, &req.queue_id);
        match e {
            StoreError::BadData { key } if self.bad_keys.first(key, Instant::now()) => tracing::warn!(
                "erl fail-open reason=bad-data key={key} detail=\"{e}; delete or fix the key\" user={sender} rcpt={recipients} client={client} queue_id={queue_id}"
            ),
            StoreError::BadData { key } => tracing::debug!(
                "erl fail-open reason=bad-data key={key} user={sender} rcpt={recipients} client={client} queue_id={queue_id}"
            ),
            _ => tracing::warn!(
                "erl fail-open reason={} detail=\"{e}\" user={sender} rcpt={recipients} client={client} queue_id={queue_id}",
                reason(e)
            ),
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
        StoreError::BadData { .. } => "bad-data",
    }
}

#[cfg(test)]
mod tests;

//! The decision table: a [`Request`] plus the current limits -> an [`Action`], counted through a
//! [`CounterStore`]. Knows no wire bytes, Redis command or SQL; writes the one log line per
//! decision (`erl ok`, `erl DEFER`, `erl DEFER (log-only)`, `erl fail-open`, `erl skip`).

mod guard;
mod message;
mod plan;
mod raises;
mod text;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use text::{global_text, locked_text, mailbox_text, oversize_text, per_message_text, refusal_text};

use self::plan::Plan;
use self::raises::Raises;
use self::text::Line;
use crate::clock::{Clock, SystemClock, Zone};
use crate::config::{Mode, Oversize, ProtectSettings, Replies};
use crate::learn::recorded::RecordedToday;
use crate::learn::{Allowances, LearnSettings};
use crate::limits::LimitsCache;
use crate::metrics::{Cause, Metrics, Outcome};
use crate::notify::Queue;
use crate::once::OncePer;
use crate::protocol::{Action, Reply, Request, State};
use crate::sender::{self, Mailbox};
use crate::store::{
    Answer, Consume, CounterStore, Counts, Guard, Message, Operation, Scope, StoreError, first_oversize,
};
use crate::window::{Unit, Window};

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

pub struct Policy<S> {
    store: S,
    limits: Arc<LimitsCache>,
    log_only: AtomicBool,
    /// `enforce_from`: in log-only mode, enforce from this local date on (`--at-midnight`).
    enforce_from: arc_swap::ArcSwapOption<chrono::NaiveDate>,
    zone: Zone,
    clock: Arc<dyn Clock>,
    bad_keys: OncePer,
    raises: Raises,
    protect: arc_swap::ArcSwap<ProtectSettings>,
    /// `[replies]` (SIGHUP replaces them).
    replies: arc_swap::ArcSwap<Replies>,
    /// `[learn]` and the allowances learned (computed off the request path).
    learn: arc_swap::ArcSwap<LearnSettings>,
    allowances: arc_swap::ArcSwap<Allowances>,
    /// The (sender, network) pairs whose network the script remembered today.
    recorded: RecordedToday,
    /// This server, in violation records and events.
    server: String,
    /// Where notification events go (none: not configured).
    events: Option<Queue>,
    metrics: Option<Arc<Metrics>>,
}

impl<S: CounterStore> Policy<S> {
    /// A policy on the system clock in the local zone; see [`Self::with_time`].
    pub fn new(store: S, limits: Arc<LimitsCache>, mode: Mode) -> Self {
        Self {
            store,
            limits,
            log_only: AtomicBool::new(mode == Mode::LogOnly),
            enforce_from: arc_swap::ArcSwapOption::empty(),
            zone: Zone::Local,
            clock: Arc::new(SystemClock),
            bad_keys: OncePer::new(BAD_KEY_LOG_EVERY),
            raises: Raises::default(),
            protect: arc_swap::ArcSwap::from_pointee(ProtectSettings::default()),
            replies: arc_swap::ArcSwap::from_pointee(Replies::default()),
            learn: arc_swap::ArcSwap::from_pointee(LearnSettings::default()),
            allowances: arc_swap::ArcSwap::from_pointee(Allowances::default()),
            recorded: RecordedToday::default(),
            server: String::new(),
            events: None,
            metrics: None,
        }
    }

    /// Counts every decision in `metrics`.
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The notification queue (its counters are exported as metrics).
    #[must_use]
    pub fn events(&self) -> Option<&Queue> {
        self.events.as_ref()
    }

    /// Detects and locks stolen accounts as `protect` says; names this server `server` in
    /// violations and events; queues events on `events`.
    #[must_use]
    pub fn with_protection(mut self, protect: ProtectSettings, server: &str, events: Option<Queue>) -> Self {
        self.protect = arc_swap::ArcSwap::from_pointee(protect);
        self.server = server.to_owned();
        self.events = events;
        self
    }

    /// Answers with the admin's `[replies]` texts where set (SIGHUP: again).
    pub fn set_replies(&self, replies: Replies) {
        self.replies.store(Arc::new(replies));
    }

    /// `[learn]` (start, SIGHUP): with learning off, no allowance applies and no day is marked.
    pub fn set_learning(&self, learn: LearnSettings) {
        self.learn.store(Arc::new(learn));
    }

    /// `[learn]` in force.
    #[must_use]
    pub fn learning(&self) -> LearnSettings {
        **self.learn.load()
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

    /// New `[protect]` settings (SIGHUP).
    pub fn set_protection(&self, protect: ProtectSettings) {
        self.protect.store(std::sync::Arc::new(protect));
    }

    /// Decides "today" in `zone`, with "now" from `clock`.
    #[must_use]
    pub fn with_time(mut self, zone: Zone, clock: Arc<dyn Clock>) -> Self {
        self.zone = zone;
        self.clock = clock;
        self
    }

    /// Switches between enforcing and log-only (SIGHUP).
    pub fn set_mode(&self, mode: Mode) {
        self.log_only.store(mode == Mode::LogOnly, Ordering::Relaxed);
    }

    /// In log-only mode, enforce from the local date `from` on (`enforce_from`; SIGHUP: again).
    pub fn set_enforce_from(&self, from: Option<chrono::NaiveDate>) {
        self.enforce_from.store(from.map(Arc::new));
    }

    /// Now, in the policy's zone and on its clock.
    #[must_use]
    pub fn moment(&self) -> crate::clock::Moment {
        self.zone.moment(self.clock.now())
    }

    /// The mode now (the configured one, or enforce once `enforce_from` has come).
    #[must_use]
    pub fn mode(&self) -> Mode {
        self.mode_on(self.zone.moment(self.clock.now()).day())
    }

    /// The mode on the local date `day`.
    fn mode_on(&self, day: chrono::NaiveDate) -> Mode {
        if !self.log_only.load(Ordering::Relaxed) {
            return Mode::Enforce;
        }
        match self.enforce_from.load().as_deref() {
            Some(from) if day >= *from => Mode::Enforce,
            _ => Mode::LogOnly,
        }
    }

    #[must_use]
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Decides one request. Never fails: every fault answers `DUNNO` (fail-open). The outcome
    /// and the time it took go to the metrics, if any.
    pub async fn decide(&self, req: &Request) -> Action {
        self.decide_counted(req).await.0
    }

    /// [`Self::decide`], and how it ended (the milter holds a locked user's mail apart).
    pub async fn decide_counted(&self, req: &Request) -> (Action, Outcome) {
        let started = Instant::now();
        let (reply, outcome) = self.decide_inner(req).await;
        if let Some(m) = &self.metrics
            && !req.dry_run
        {
            m.decided(&outcome, started.elapsed());
        }
        (reply.action, outcome)
    }

    /// Decides one request as [`Self::decide`] does (counted, recorded, announced; not in the
    /// metrics) and says how it ended: what `replay` reports.
    pub async fn decide_with_outcome(&self, req: &Request) -> (Action, Outcome) {
        let (reply, outcome) = self.decide_inner(req).await;
        (reply.action, outcome)
    }

    /// Answers one request: a dry run (`probe`) is decided without changing anything, and
    /// answered in log-only mode with what enforcing would answer too; any other is [`Self::decide`]d.
    pub async fn answer(&self, req: &Request) -> Reply {
        if req.dry_run {
            let (reply, _) = self.decide_inner(req).await;
            return reply;
        }
        self.decide(req).await.into()
    }

    async fn decide_inner(&self, req: &Request) -> (Reply, Outcome) {
        let (action, outcome) = self.decide_once(req).await;
        match action {
            Decided::Final(action) => (action.into(), outcome),
            Decided::Peeked(reply) => (reply, outcome),
        }
    }

    async fn decide_once(&self, req: &Request) -> (Decided, Outcome) {
        // Postfix never sends a line without `=`: a client that is not Postfix. Said first,
        // whatever else the request lacks.
        if let Some(why) = req.malformed {
            tracing::warn!(
                "erl fail-open reason=malformed-request detail=\"{why}\" client={} queue_id={}",
                req.client_address,
                req.queue_id
            );
            return (Decided::Final(Action::Dunno), Outcome::FailOpen);
        }
        let end_of_data = match req.protocol_state {
            State::EndOfMessage | State::Data => true,
            State::Rcpt => false,
            State::Other(_) | State::Missing => {
                tracing::debug!(
                    "erl pass reason=stage stage={} queue_id={}",
                    req.protocol_state.as_str(),
                    req.queue_id
                );
                return (Decided::Final(Action::Dunno), Outcome::Skip);
            }
        };
        let operation = match (req.dry_run, end_of_data) {
            (true, _) => Operation::Peek,
            (false, true) => Operation::Count,
            (false, false) => Operation::Check,
        };
        let sender = match self.who(req) {
            Some(sender) => sender,
            None => return (Decided::Final(Action::Dunno), Outcome::Skip),
        };
        let local = sender.is_local();
        let limits = self.limits.current();
        let recipients = match end_of_data {
            true => {
                let (n, capped) = recipients(req.recipient_count, limits.max_recipients);
                if capped {
                    tracing::warn!(
                        "erl clamp user={sender} recipient_count={} counted={n} (limits.max_recipients) client={} queue_id={}",
                        req.recipient_count.unwrap_or_default(),
                        req.client_address,
                        req.queue_id
                    );
                }
                n
            }
            // At RCPT the count is 0: ask whether one more recipient would fit.
            false => 1,
        };
        // `max_rcpt_per_message` looks at the real count, not the clamped one.
        let real = req.recipient_count.unwrap_or(0);
        let at = self.zone.moment(self.clock.now());
        // Website mail is never a stolen account or a learner: its user is known and local.
        let protect = if local { ProtectSettings::off() } else { **self.protect.load() };
        let learn = **self.learn.load();
        let learning = learn.enabled && !local;
        // With `known_networks`: the client's network, which a learned allowance must know, and
        // which goes to the history with a counted message the first time a day for this sender
        // (the script reads and writes only then).
        let network = learn.networks.filter(|_| learning).and_then(|n| n.network(&req.client_address));
        let learned = if learning { self.allowances.load().get_from(&sender, network) } else { None };
        let recorded = network.map(|n| RecordedToday::key(&sender, n, at.day()));
        let network =
            network.filter(|_| !recorded.is_some_and(|k| self.recorded.contains(k))).map(|n| n.to_string());
        let message = match operation {
            Operation::Count => message::message(req, &sender),
            Operation::Check | Operation::Peek => Message::default(),
        };
        let mut raise = self.raises.get(&sender);
        // At most one retry: the raise changed between our last look and this request.
        for _ in 0..2 {
            let rates = raise.as_deref().and_then(|r| self.raises.parse(r));
            let plan = Plan::new(&limits, &sender, rates.as_deref(), learned);
            let oversize = end_of_data
                .then(|| first_oversize(&plan.caps, &plan.counters, u64::from(recipients)))
                .flatten();
            let per_message = (end_of_data && plan.per_message > 0 && real > u64::from(plan.per_message))
                .then_some(plan.per_message);
            let ask = Consume {
                sender: &sender,
                recipients,
                counters: &plan.counters,
                caps: &plan.caps,
                operation,
                mode: self.mode_on(at.day()),
                client: &req.client_address,
                at,
                raise: raise.as_deref().unwrap_or_default(),
                guard: Guard {
                    max_client_ips: protect.max_client_ips,
                    autolock: protect.lock && !plan.exempt,
                    lock_after_refusals: protect.lock_after_refusals,
                },
                server: &self.server,
                message,
                oversize,
                per_message,
                learn: learning.then_some(learn.days),
                network: network.as_deref(),
            };
            let counts = match self.store.consume(&ask).await {
                Ok(Answer::Counts(counts)) => counts,
                Ok(Answer::Locked(_)) if req.dry_run => {
                    let action =
                        Action::DeferIfPermit(text::locked(&self.replies.load(), &sender, recipients.into()));
                    return (peeked(&ask, req, Some(action)), Outcome::Skip);
                }
                Ok(Answer::Locked(watch)) => {
                    guard::announce(&ask, None, &watch, self.events.as_ref(), req);
                    let text = text::locked(&self.replies.load(), &sender, recipients.into());
                    return (
                        Decided::Final(guard::locked(&ask, &watch, req, text)),
                        Outcome::Defer(Cause::locked()),
                    );
                }
                Ok(Answer::Raised(now)) => {
                    raise = self.raises.set(&sender, now);
                    continue;
                }
                Err(e) => {
                    self.fail_open(&e, &ask, req);
                    return (Decided::Final(Action::Dunno), Outcome::FailOpen);
                }
            };
            if req.dry_run {
                let refusal = refusal(&ask, &counts, limits.oversize, &self.replies.load()).map(|r| r.action);
                return (peeked(&ask, req, refusal), Outcome::Skip);
            }
            let n = u64::from(recipients);
            // Counted: it fit (no cap refused it and it has not too many recipients), or log-only.
            let fits = counts.refused.is_none() && ask.per_message.is_none();
            let counted = operation == Operation::Count && (fits || ask.mode == Mode::LogOnly);
            let add = if counted { n } else { 0 };
            if counted && let Some(m) = &self.metrics {
                m.counted(n);
            }
            if counted
                && ask.network.is_some()
                && let Some(key) = recorded
            {
                self.recorded.insert(key);
            }
            let line = Line {
                user: &sender,
                rcpt: n,
                mailbox: plan.value(
                    &counts.before,
                    if local { Scope::Local } else { Scope::Mailbox },
                    Window::Day,
                ) + add,
                mailbox_cap: plan.mailbox_daily,
                global: (!plan.exempt && !local)
                    .then(|| plan.value(&counts.before, Scope::Server, Window::Day) + add),
                global_cap: limits.global,
                req,
            };
            guard::announce(&ask, Some(&counts), &counts.watch, self.events.as_ref(), req);
            let replies = self.replies.load();
            let (action, outcome) = conclude(&ask, &counts, &line, plan.unknown, (limits.oversize, &replies));
            return (Decided::Final(action), outcome);
        }
        tracing::warn!(
            "erl fail-open reason=raise-changing user={sender} rcpt={recipients} client={} queue_id={}",
            req.client_address,
            req.queue_id
        );
        (Decided::Final(Action::Dunno), Outcome::FailOpen)
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

    /// Whose message this is: the local user the milter names (website mail), or the SASL
    /// user, normalized; `None` (logged) when it is not counted: unauthenticated, or a name
    /// that cannot be counted.
    fn who(&self, req: &Request) -> Option<Mailbox> {
        if !req.local_user.is_empty() {
            return Some(Mailbox::local(&req.local_user, &self.server));
        }
        if req.sasl_username.is_empty() {
            tracing::debug!(
                "erl pass reason=unauthenticated client={} queue_id={} stage={}",
                req.client_address,
                req.queue_id,
                req.protocol_state.as_str()
            );
            return None;
        }
        match sender::normalize(&req.sasl_username) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(
                    "erl skip user={:?} reason=bad-username detail=\"{e}\" client={} queue_id={}",
                    req.sasl_username,
                    req.client_address,
                    req.queue_id
                );
                None
            }
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

/// What one pass of the decision came to.
enum Decided {
    /// A real decision (counted, recorded, logged).
    Final(Action),
    /// A dry run's answer: nothing was changed.
    Peeked(Reply),
}

/// A dry run's reply and its log line: in enforce mode the refusal (if any); in log-only mode
/// DUNNO, with what enforcing would answer.
fn peeked(ask: &Consume<'_>, req: &Request, refusal: Option<Action>) -> Decided {
    let enforced = refusal.unwrap_or(Action::Dunno);
    let reply = match ask.mode {
        Mode::Enforce => Reply { action: enforced, would: None },
        Mode::LogOnly => Reply { action: Action::Dunno, would: Some(enforced) },
    };
    let shown = reply.would.as_ref().unwrap_or(&reply.action);
    tracing::info!(
        "erl probe user={} rcpt={} answer={}{} client={} stage={} (dry run: nothing counted)",
        ask.sender,
        ask.recipients,
        reply.action.name(),
        if reply.would.is_some() { format!(" would={}", shown.name()) } else { String::new() },
        req.client_address,
        req.protocol_state.as_str()
    );
    Decided::Peeked(reply)
}

/// A refusal as enforce mode answers it, with its log line's verb and fields.
struct Refusal {
    action: Action,
    outcome: Outcome,
    /// The outcome in log-only mode.
    would: Outcome,
    verb: &'static str,
    detail: String,
}

/// What refuses the message, if anything: a lock (seen, not enforced, in log-only mode), the
/// oversize cap, or the first cap without room.
fn refusal(ask: &Consume<'_>, counts: &Counts, oversize: Oversize, replies: &Replies) -> Option<Refusal> {
    let n = u64::from(ask.recipients);
    if counts.watch.lock.is_some() && ask.mode == Mode::LogOnly {
        return Some(Refusal {
            action: Action::DeferIfPermit(text::locked(replies, ask.sender, n)),
            outcome: Outcome::Defer(Cause::locked()),
            would: Outcome::WouldDefer(Cause::locked()),
            verb: "DEFER",
            detail: "cap=locked".into(),
        });
    }
    if let Some(max) = ask.per_message {
        return Some(Refusal {
            action: Action::Reject(text::too_many(replies, ask.sender, max.into(), n)),
            outcome: Outcome::Reject(Cause::per_message()),
            would: Outcome::WouldReject,
            verb: "REJECT",
            detail: format!("reason=per_message max_rcpt_per_message={max}"),
        });
    }
    let check = counts.refused.and_then(|i| ask.caps.get(i))?;
    let &counter = ask.counters.get(check.counter)?;
    let (cap, window, limit) = (counter.scope.name(), counter.window, check.limit);
    // The refusing cap's own figures (the line's mailbox= and global= are the daily ones).
    let used = counts.before.get(check.counter).copied().unwrap_or_default();
    let unit = if counter.unit == Unit::Msg { " unit=msg" } else { "" };
    let detail = format!("cap={cap} window={window}{unit} used={used}/{limit}");
    let too_big = ask.oversize.is_some();
    let cause = Cause::cap(counter.scope.name(), window, counter.unit, too_big);
    if !too_big {
        let action = Action::DeferIfPermit(text::refused(replies, ask.sender, counter, limit, n));
        let would = Outcome::WouldDefer(cause.clone());
        return Some(Refusal { action, outcome: Outcome::Defer(cause), would, verb: "DEFER", detail });
    }
    let text = text::too_big(replies, ask.sender, counter, limit, n);
    let detail = detail + " reason=oversize";
    Some(match oversize {
        Oversize::Reject => Refusal {
            action: Action::Reject(text),
            outcome: Outcome::Reject(cause),
            would: Outcome::WouldReject,
            verb: "REJECT",
            detail,
        },
        Oversize::Defer => Refusal {
            action: Action::DeferIfPermit(text),
            would: Outcome::WouldDefer(cause.clone()),
            outcome: Outcome::Defer(cause),
            verb: "DEFER",
            detail,
        },
    })
}

/// The reply and the decision line. `unknown`: a cap of this sender was not enforced because
/// the database has not been read yet; `oversize`: the answer to a message that can never fit.
/// Refusals are logged at warning (kept by `level = "warn"`), the rest at info.
fn conclude(
    ask: &Consume<'_>,
    counts: &Counts,
    line: &Line<'_>,
    unknown: bool,
    (oversize, replies): (Oversize, &Replies),
) -> (Action, Outcome) {
    let Some(r) = refusal(ask, counts, oversize, replies) else {
        if unknown {
            tracing::info!("erl fail-open reason=limits-unknown {line}");
        } else {
            tracing::info!("erl ok {line}");
        }
        return (Action::Dunno, if unknown { Outcome::FailOpen } else { Outcome::Ok });
    };
    // Website mail over a cap is held (the milter quarantines it), not deferred.
    let local = ask.sender.is_local();
    match ask.mode {
        Mode::Enforce => {
            tracing::warn!("erl {} {line} {}", if local { "HOLD" } else { r.verb }, r.detail);
            (r.action, r.outcome)
        }
        Mode::LogOnly if local => {
            tracing::warn!("erl would_hold {line} {} mode=log-only", r.detail);
            (Action::Dunno, r.would)
        }
        Mode::LogOnly => {
            tracing::warn!("erl {} (log-only) {line} {} mode=log-only", r.verb, r.detail);
            (Action::Dunno, r.would)
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

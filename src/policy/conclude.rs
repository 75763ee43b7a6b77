//! What the store's answer comes to: the reply, the one decision line, what was counted, and the
//! events it caused (queued, never awaited). A dry run (`probe`) answers without any of it.

use super::text::{self, Line};
use super::{Cause, Outcome};
use super::{Decision, Policy, Settings, guard, plan::Plan, request::Prepared};
use crate::caps::Scope;
use crate::config::{Mode, Oversize, Replies};
use crate::protocol::{Action, Reply, Request};
use crate::store::{Consume, CounterStore, Counts, Operation, Watch};
use crate::window::{Unit, Window};

impl<S: CounterStore> Policy<S> {
    /// The store counted (or checked) the message: refused or not, logged, announced.
    pub(super) fn counted(
        &self,
        p: &Prepared<'_>,
        ask: &Consume<'_>,
        plan: &Plan,
        counts: &Counts,
        settings: &Settings,
    ) -> Decision {
        let req = p.req;
        if req.dry_run {
            let refusal = refusal(ask, counts, p.limits.oversize, &settings.replies).map(|r| r.action);
            return peeked(ask, req, refusal);
        }
        let n = u64::from(ask.recipients);
        // Counted: it fit (no cap refused it and it has not too many recipients), or log-only.
        let fits = counts.refused.is_none() && ask.per_message.is_none();
        let counted = ask.operation == Operation::Count && (fits || ask.mode == Mode::LogOnly);
        let add = if counted { n } else { 0 };
        if counted
            && ask.network.is_some()
            && let Some(key) = p.recorded
        {
            self.recorded.insert(key);
        }
        let local = ask.sender.is_local();
        let line = Line {
            user: ask.sender,
            rcpt: n,
            mailbox: plan.value(
                &counts.before,
                if local { Scope::Local } else { Scope::Mailbox },
                Window::Day,
            ) + add,
            mailbox_cap: plan.mailbox_daily,
            global: (!plan.exempt && !local)
                .then(|| plan.value(&counts.before, Scope::Server, Window::Day) + add),
            global_cap: p.limits.global,
            req,
        };
        guard::announce(ask, Some(counts), &counts.watch, self.events.as_ref(), req);
        let (action, outcome) =
            conclude(ask, counts, &line, plan.unknown, (p.limits.oversize, &settings.replies));
        Decision { reply: action.into(), outcome, counted: add }
    }

    /// The sender (or its domain) is locked, in enforce mode: nothing was counted.
    pub(super) fn stopped(
        &self,
        ask: &Consume<'_>,
        watch: &Watch,
        req: &Request,
        replies: &Replies,
    ) -> Decision {
        let text = text::locked(replies, ask.sender, ask.recipients.into());
        if req.dry_run {
            return peeked(ask, req, Some(Action::DeferIfPermit(text)));
        }
        guard::announce(ask, None, watch, self.events.as_ref(), req);
        Decision {
            reply: guard::locked(ask, watch, req, text).into(),
            outcome: Outcome::Defer(Cause::Locked),
            counted: 0,
        }
    }
}

/// A dry run's reply and its log line: in enforce mode the refusal (if any); in log-only mode
/// DUNNO, with what enforcing would answer.
fn peeked(ask: &Consume<'_>, req: &Request, refusal: Option<Action>) -> Decision {
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
    Decision { reply, outcome: Outcome::Skip, counted: 0 }
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
/// per-message maximum, or a cap (the first without room, or the one it can never fit).
fn refusal(ask: &Consume<'_>, counts: &Counts, oversize: Oversize, replies: &Replies) -> Option<Refusal> {
    let n = u64::from(ask.recipients);
    if counts.watch.lock.is_some() && ask.mode == Mode::LogOnly {
        return Some(Refusal {
            action: Action::DeferIfPermit(text::locked(replies, ask.sender, n)),
            outcome: Outcome::Defer(Cause::Locked),
            would: Outcome::WouldDefer(Cause::Locked),
            verb: "DEFER",
            detail: "cap=locked".into(),
        });
    }
    if let Some(max) = ask.per_message {
        return Some(Refusal {
            action: Action::Reject(text::too_many(replies, ask.sender, max.into(), n)),
            outcome: Outcome::Reject(Cause::PerMessage),
            would: Outcome::WouldReject,
            verb: "REJECT",
            detail: format!("reason=per_message max_rcpt_per_message={max}"),
        });
    }
    by_cap(ask, counts, oversize, replies)
}

/// The refusal by the cap the store named: deferred, or (it can never fit) answered as
/// `oversize` says.
fn by_cap(ask: &Consume<'_>, counts: &Counts, oversize: Oversize, replies: &Replies) -> Option<Refusal> {
    let n = u64::from(ask.recipients);
    let check = counts.refused.and_then(|i| ask.caps.get(i))?;
    let &counter = ask.counters.get(check.counter)?;
    let (cap, window, limit) = (counter.scope.name(), counter.window, check.limit);
    // The refusing cap's own figures (the line's mailbox= and global= are the daily ones).
    let used = counts.before.get(check.counter).copied().unwrap_or_default();
    let unit = if counter.unit == Unit::Msg { " unit=msg" } else { "" };
    let detail = format!("cap={cap} window={window}{unit} used={used}/{limit}");
    let too_big = ask.oversize.is_some();
    let cause = Cause::Cap { scope: counter.scope, window, unit: counter.unit, oversize: too_big };
    if !too_big {
        let action = Action::DeferIfPermit(text::refused(replies, ask.sender, counter, limit, n));
        let would = Outcome::WouldDefer(cause);
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
            would: Outcome::WouldDefer(cause),
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

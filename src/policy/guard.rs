//! Stolen-account outcomes of a decision: the locked reply, the `erl suspect` and `erl lock`
//! lines, and the notification events (queued, never awaited).

use crate::notify::{Event, Queue};
use crate::protocol::{Action, Request};
use crate::store::{Consume, Counts, Watch};

/// The reply to a locked sender (enforce mode): logged with `cap=locked`, never recorded as a
/// violation (the lock was, once).
pub(super) fn locked(ask: &Consume<'_>, watch: &Watch, req: &Request, text: String) -> Action {
    let by = watch.lock.as_ref().map_or("unknown", |l| l.by.as_str());
    // A locked local user's website mail is held (the milter quarantines it), not deferred.
    tracing::warn!(
        "erl {} user={} rcpt={} cap=locked by={by} client={} queue_id={} stage={}",
        if ask.sender.is_local() { "HOLD" } else { "DEFER" },
        ask.sender,
        ask.recipients,
        req.client_address,
        req.queue_id,
        req.protocol_state.as_str()
    );
    Action::DeferIfPermit(text)
}

/// Logs and queues what the store says this request newly caused: the first refusal by a cap
/// in its window, a new suspect, a new lock (in that order).
pub(super) fn announce(
    ask: &Consume<'_>,
    counts: Option<&Counts>,
    watch: &Watch,
    queue: Option<&Queue>,
    req: &Request,
) {
    let events = watch.events;
    let push = |e: Event| {
        if let Some(q) = queue {
            q.push(e);
        }
    };
    let (sender, ts, client) = (ask.sender, ask.at.unix, req.client_address.as_str());
    if events.first_refusal
        && let Some(counts) = counts
        && let Some(check) = counts.refused.and_then(|i| ask.caps.get(i))
        && let Some(counter) = ask.counters.get(check.counter)
    {
        let count = counts.before.get(check.counter).copied().unwrap_or_default();
        push(
            Event::refusal(ts, sender, counter.scope, counter.window, check.limit, count, client, ask.server)
                .with_unit(counter.unit),
        );
    }
    if events.suspect {
        let max = ask.guard.max_client_ips;
        tracing::warn!(
            "erl suspect user={sender} client_ips={} max_client_ips={max} client={client} queue_id={}",
            watch.client_ips,
            req.queue_id
        );
        push(Event::suspect(ts, sender, watch.client_ips, max, client, ask.server));
    }
    if events.locked {
        let reason = watch.lock.as_ref().map_or("", |l| l.reason.as_str());
        tracing::warn!(
            "erl lock user={sender} by=auto reason=\"{reason}\" client={client} queue_id={}",
            req.queue_id
        );
        push(Event::lock(ts, sender, "auto", reason, Some(client), ask.server));
    }
}

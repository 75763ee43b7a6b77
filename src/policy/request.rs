//! Preparing one request for the store: the stage, the sender, the recipients it counts for, the
//! client's network and the sender's allowance, and which message it is. A request that is not
//! decided (malformed, another stage, unauthenticated, an unusable name) ends here, logged.

use std::sync::Arc;

use super::{Outcome, Policy, Settings, message, recipients};
use crate::clock::Moment;
use crate::config::ProtectSettings;
use crate::learn::recorded::RecordedToday;
use crate::limits::Limits;
use crate::protocol::{Request, State};
use crate::sender::{self, Mailbox};
use crate::store::{Consume, CounterStore, Guard, Message, Operation, first_oversize};

/// One request, ready to be asked of the store.
pub(super) struct Prepared<'r> {
    pub req: &'r Request,
    pub sender: Mailbox,
    /// END-OF-MESSAGE or DATA (else RCPT: a pre-check).
    pub end_of_data: bool,
    pub operation: Operation,
    /// What the message counts for (clamped; 1 at RCPT).
    pub recipients: u32,
    /// `recipient_count` as sent (`max_rcpt_per_message` looks at it, not the clamped one).
    pub real: u64,
    pub at: Moment,
    pub limits: Arc<Limits>,
    pub protect: ProtectSettings,
    /// Learning applies to this sender (on, and not website mail).
    pub learning: bool,
    pub learned: Option<u64>,
    /// The (sender, network, day) key of [`RecordedToday`], when there is a network.
    pub recorded: Option<u64>,
    /// The client's network, while the script has not remembered it today.
    pub network: Option<String>,
    pub message: Message<'r>,
}

impl<S: CounterStore> Policy<S> {
    /// The request as the store will be asked about it, or how it ends when it is not asked
    /// (let through, uncounted).
    pub(super) fn prepare<'r>(&self, req: &'r Request, settings: &Settings) -> Result<Prepared<'r>, Outcome> {
        let (end_of_data, operation) = stage(req)?;
        let sender = self.who(req).ok_or(Outcome::Skip)?;
        let limits = self.limits.current();
        let recipients = self.recipients(req, end_of_data, &sender, limits.max_recipients);
        let at = self.zone.moment(self.clock.now());
        // Website mail is never a stolen account or a learner: its user is known and local.
        let local = sender.is_local();
        let protect = if local { ProtectSettings::off() } else { settings.protect };
        let learning = settings.learn.enabled && !local;
        // With `known_networks`: the client's network, which a learned allowance must know, and
        // which goes to the history with a counted message the first time a day for this sender
        // (the script reads and writes only then).
        let network =
            settings.learn.networks.filter(|_| learning).and_then(|n| n.network(&req.client_address));
        let learned = if learning { self.allowances.load().get_from(&sender, network) } else { None };
        let recorded = network.map(|n| RecordedToday::key(&sender, n, at.day()));
        let network =
            network.filter(|_| !recorded.is_some_and(|k| self.recorded.contains(k))).map(|n| n.to_string());
        let message = match operation {
            Operation::Count => message::message(req, &sender),
            Operation::Check | Operation::Peek => Message::default(),
        };
        Ok(Prepared {
            req,
            sender,
            end_of_data,
            operation,
            recipients,
            real: req.recipient_count.unwrap_or(0),
            at,
            limits,
            protect,
            learning,
            learned,
            recorded,
            network,
            message,
        })
    }

    /// At end of data, the recipients the message counts for (a clamp is logged); at RCPT 1: ask
    /// whether one more recipient would fit.
    fn recipients(&self, req: &Request, end_of_data: bool, sender: &Mailbox, max: u32) -> u32 {
        if !end_of_data {
            return 1;
        }
        let (n, capped) = recipients(req.recipient_count, max);
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
}

/// Whether the request is decided at end of data (else RCPT: a pre-check), and what the store is
/// asked to do; or how it ends when it is not decided at all.
fn stage(req: &Request) -> Result<(bool, Operation), Outcome> {
    // Postfix never sends a line without `=`: a client that is not Postfix. Said first,
    // whatever else the request lacks.
    if let Some(why) = req.malformed {
        tracing::warn!(
            "erl fail-open reason=malformed-request detail=\"{why}\" client={} queue_id={}",
            req.client_address,
            req.queue_id
        );
        return Err(Outcome::FailOpen);
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
            return Err(Outcome::Skip);
        }
    };
    let operation = match (req.dry_run, end_of_data) {
        (true, _) => Operation::Peek,
        (false, true) => Operation::Count,
        (false, false) => Operation::Check,
    };
    Ok((end_of_data, operation))
}

impl Prepared<'_> {
    /// The store's question for this request under `plan`, built with the raise `raise` (`""`:
    /// none), in `settings`' mode on the request's day.
    pub(super) fn ask<'a>(
        &'a self,
        plan: &'a super::plan::Plan,
        raise: &'a str,
        settings: &Settings,
        server: &'a str,
    ) -> Consume<'a> {
        let oversize = self
            .end_of_data
            .then(|| first_oversize(&plan.caps, &plan.counters, u64::from(self.recipients)))
            .flatten();
        let per_message =
            (self.end_of_data && plan.per_message > 0 && self.real > u64::from(plan.per_message))
                .then_some(plan.per_message);
        Consume {
            sender: &self.sender,
            recipients: self.recipients,
            counters: &plan.counters,
            caps: &plan.caps,
            operation: self.operation,
            mode: settings.mode_on(self.at.day()),
            client: &self.req.client_address,
            at: self.at,
            raise,
            guard: Guard {
                max_client_ips: self.protect.max_client_ips,
                autolock: self.protect.lock && !plan.exempt,
                lock_after_refusals: self.protect.lock_after_refusals,
            },
            server,
            message: self.message,
            oversize,
            per_message,
            learn: self.learning.then_some(settings.learn.days),
            network: self.network.as_deref(),
        }
    }
}

//! The milter for Postfix's `non_smtpd_milters`: website mail (PHP `mail()`, scripts, cron,
//! anything submitted through `sendmail` on this server) under `[limits.local]`.
//!
//! Each message becomes one policy request of its local user ([`who`]) and goes through the
//! daemon's own decision ([`Website::decide`]: the same code, store and counters as the policy
//! socket). A message the decision refuses is quarantined (Postfix's hold queue: nothing is
//! delivered, nothing is lost) and its queue ID recorded for `release`. Every fault accepts the
//! message: a decision that takes longer than [`DECISION_TIMEOUT`], a store that is down, a
//! header that is missing, a connection that breaks.

pub mod who;

use std::ffi::CStr;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use indymilter::{Actions, Callbacks, ContextActions, EomContext, NegotiateContext, ProtoOpts, Status};
use tokio_util::sync::CancellationToken;

use crate::protocol::{Action, Request, State};
pub use crate::store::HeldFor;

/// The longest a message waits for its decision (its user's name included); then it is accepted
/// (Postfix's own `command_timeout` for this milter is 2 s, see DESIGN "Deployment").
pub const DECISION_TIMEOUT: Duration = Duration::from_millis(1500);

/// The `FileDescriptorName` of the milter's systemd socket unit.
pub const FD_NAME: &str = "milter";

/// Closes a connection whose MTA sends nothing for this long (Postfix opens one per message).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// What the milter asks of the daemon.
pub trait Website: Send + Sync + 'static {
    /// Decides (and counts) one message, as a policy request is decided.
    fn decide(&self, req: &Request) -> impl Future<Output = Verdict> + Send;
    /// Records the queue ID of a message of the local user `name` put on hold.
    fn held(&self, name: &str, queue_id: &str, why: HeldFor) -> impl Future<Output = ()> + Send;
}

/// The daemon's decision on one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Into the hold queue, with the reason Postfix logs.
    Hold {
        reason: String,
        why: HeldFor,
    },
}

impl Verdict {
    /// What the milter does with the daemon's answer: a refusal (a deferral, or a rejection of a
    /// message that can never fit) puts the message on hold, for a lock or for a cap; nothing of
    /// website mail is bounced or lost.
    #[must_use]
    pub fn of(action: &Action, locked: bool) -> Self {
        match action {
            Action::Dunno => Self::Accept,
            Action::DeferIfPermit(reason) | Action::Reject(reason) => {
                Self::Hold { reason: reason.clone(), why: if locked { HeldFor::Lock } else { HeldFor::Cap } }
            }
        }
    }
}

/// One message as the milter sees it.
#[derive(Debug, Default)]
struct Message {
    sender: String,
    recipients: u64,
    /// The first [`who::MARKER`] header's value.
    marker: Option<String>,
}

/// Serves until `shutdown`, on a Unix socket only: who may connect is then a matter of file
/// permissions (Postfix), never of who runs on the host.
///
/// # Errors
/// When the listener fails for good.
pub async fn run<W: Website>(
    listener: tokio::net::UnixListener,
    website: Arc<W>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let callbacks = callbacks(website);
    let config = indymilter::Config {
        max_connections: 256,
        actions: Actions::QUARANTINE,
        connection_timeout: CONNECTION_TIMEOUT,
    };
    let stop = async move { shutdown.cancelled().await };
    indymilter::run(listener, callbacks, config, stop).await
}

fn callbacks<W: Website>(website: Arc<W>) -> Callbacks<Message> {
    Callbacks::new()
        .on_negotiate(|cx, _, _| Box::pin(negotiate(cx)))
        .on_mail(|cx, args| {
            Box::pin(async move {
                let sender = args.first().map(|a| text(a)).unwrap_or_default();
                cx.data = Some(Message { sender, ..Message::default() });
                Status::Noreply
            })
        })
        .on_rcpt(|cx, _| {
            Box::pin(async move {
                if let Some(m) = cx.data.as_mut() {
                    m.recipients += 1;
                }
                Status::Noreply
            })
        })
        .on_header(|cx, name, value| {
            Box::pin(async move {
                if let Some(m) = cx.data.as_mut()
                    && name.to_bytes().eq_ignore_ascii_case(who::MARKER.as_bytes())
                    && m.marker.is_none()
                {
                    m.marker = Some(text(&value));
                }
                // Negotiated NOREPLY_HEADER: Postfix waits for no answer per header.
                Status::Noreply
            })
        })
        .on_eom(move |cx| Box::pin(end_of_message(website.clone(), cx)))
        .on_abort(|cx| {
            Box::pin(async move {
                cx.data = None;
                Status::Continue
            })
        })
}

/// Asks for the envelope, the headers and the end of the message; no body, and no reply to
/// anything before the end (each reply would be a round trip in pickup's one-at-a-time path).
async fn negotiate(cx: &mut NegotiateContext<Message>) -> Status {
    cx.requested_actions = Actions::QUARANTINE;
    cx.requested_opts = ProtoOpts::NO_CONNECT
        | ProtoOpts::NO_HELO
        | ProtoOpts::NO_DATA
        | ProtoOpts::NO_EOH
        | ProtoOpts::NO_BODY
        | ProtoOpts::NO_UNKNOWN
        | ProtoOpts::NOREPLY_MAIL
        | ProtoOpts::NOREPLY_RCPT
        | ProtoOpts::NOREPLY_HEADER;
    Status::Continue
}

/// Website mail without the marker header: warned about once a minute while it comes.
static UNMARKED: std::sync::LazyLock<who::Unmarked> = std::sync::LazyLock::new(who::Unmarked::default);

/// Names resolved lately, by uid.
static NAMES: std::sync::LazyLock<who::Names> = std::sync::LazyLock::new(who::Names::default);

async fn end_of_message<W: Website>(website: Arc<W>, cx: &mut EomContext<Message>) -> Status {
    // One deadline for the whole message: the name, the decision and the hold's record.
    let deadline = tokio::time::Instant::now() + DECISION_TIMEOUT;
    let m = cx.data.take().unwrap_or_default();
    let queue_id = cx.macros.get(c"i").map(text).unwrap_or_default();
    let uid = m.marker.as_deref().and_then(|v| who::uid(v, &queue_id));
    let name = match (uid, uid.and_then(|u| NAMES.get(u))) {
        (_, Some(name)) => name,
        // NSS may be slow (LDAP): off the runtime's threads, within the message's time.
        (Some(uid), None) => {
            let resolved =
                tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(move || who::name_of(uid)))
                    .await
                    .ok()
                    .and_then(Result::ok);
            match resolved {
                Some(name) => {
                    NAMES.put(uid, &name);
                    name
                }
                None => format!("uid{uid}"),
            }
        }
        (None, None) => {
            if let Some(n) = UNMARKED.note(std::time::Instant::now()) {
                tracing::warn!(
                    "erl milter: {n} message(s) without a valid {} header since the last warning (now queue_id={queue_id}): pickup's cleanup does not run email-ratelimit's header_checks (postfix/README.md; receive_override_options=no_header_body_checks on pickup is one cause: install.sh hook fixes it); counted as local:{}, never held",
                    who::MARKER,
                    who::UNKNOWN
                );
            }
            who::UNKNOWN.to_owned()
        }
    };
    let req = Request {
        protocol_state: State::EndOfMessage,
        local_user: name.clone(),
        recipient_count: Some(m.recipients),
        client_address: "127.0.0.1".into(),
        instance: queue_id.clone(),
        queue_id: queue_id.clone(),
        sender: m.sender,
        ..Request::default()
    };
    let verdict = match tokio::time::timeout_at(deadline, website.decide(&req)).await {
        Ok(verdict) => verdict,
        Err(_) => {
            tracing::warn!(
                "erl fail-open reason=milter-timeout detail=\"no decision within {} ms\" user=local:{name} queue_id={queue_id}",
                DECISION_TIMEOUT.as_millis()
            );
            Verdict::Accept
        }
    };
    // The marker stays: removing it made Postfix edit the queue file in place, which cost more
    // CPU than all the rest of the milter (BENCHMARKS.md "Website mail"), and it says nothing
    // that Postfix's own Received header does not (the uid and the queue ID).
    let Verdict::Hold { reason, why } = verdict else { return Status::Accept };
    match cx.actions.quarantine(reason.replace('\0', " ")).await {
        Ok(()) => {
            // The hold is done; recording it may take what is left of the deadline and a little.
            let _ = tokio::time::timeout_at(
                deadline.max(tokio::time::Instant::now() + Duration::from_millis(250)),
                website.held(&name, &queue_id, why),
            )
            .await;
        }
        Err(e) => tracing::warn!("erl milter: hold of queue_id={queue_id} failed ({e:?}); accepted"),
    }
    Status::Accept
}

fn text(s: &CStr) -> String {
    s.to_string_lossy().into_owned()
}

//! Property tests: the request parser against a model of the wire format (round trips under
//! any split of the bytes, arbitrary input never panics and stays bounded), and the decision
//! table against a model of the caps, on the in-memory store.

use std::sync::Arc;

use bytes::BytesMut;
use chrono::Local;
use email_ratelimit::config::{LimitSettings, MailboxEntry, Mode};
use email_ratelimit::limits::LimitsCache;
use email_ratelimit::policy::{Env, Policy, Settings};
use email_ratelimit::protocol::{Action, Decoder, MAX_LINE, ProtocolError, Request, State};
use email_ratelimit::sender;
use email_ratelimit::store::KeySchema;
use email_ratelimit::store::memory::MemoryStore;
use proptest::prelude::*;

/// "recipients", or "recipient" for a limit of 1 (DESIGN v4 "Replies name the unit").
fn recipients(limit: u64) -> &'static str {
    if limit == 1 { "recipient" } else { "recipients" }
}

/// A value as Postfix could send it: no newline.
fn value() -> impl Strategy<Value = String> {
    "[^\n]{0,40}"
}

fn state() -> impl Strategy<Value = State> {
    prop_oneof![
        Just(State::Rcpt),
        Just(State::Data),
        Just(State::EndOfMessage),
        "[A-Z]{3,8}"
            .prop_filter("not a known state", |s| !matches!(s.as_str(), "RCPT" | "DATA"))
            .prop_map(State::Other),
    ]
}

fn request() -> impl Strategy<Value = (Request, Vec<(String, String)>)> {
    (
        state(),
        value(),
        proptest::option::of(0u64..10_000),
        value(),
        value(),
        proptest::collection::vec(("[a-z_]{1,12}", value()), 0..20),
    )
        .prop_map(|(st, user, count, client, qid, extra)| {
            let user = user.trim_end_matches('\r').to_owned();
            let client = client.trim_end_matches('\r').to_owned();
            let qid = qid.trim_end_matches('\r').to_owned();
            let extra: Vec<(String, String)> = extra
                .into_iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "protocol_state"
                            | "sasl_username"
                            | "recipient_count"
                            | "client_address"
                            | "queue_id"
                    )
                })
                .map(|(k, v)| (k, v.trim_end_matches('\r').to_owned()))
                .collect();
            let req = Request {
                protocol_state: st,
                sasl_username: user,
                recipient_count: count,
                client_address: client,
                queue_id: qid,
                ..Request::default()
            };
            (req, extra)
        })
}

fn encode(req: &Request, extra: &[(String, String)]) -> String {
    let mut out = String::new();
    if req.protocol_state != State::Missing {
        out.push_str(&format!("protocol_state={}\n", req.protocol_state.as_str()));
    }
    for (k, v) in extra {
        out.push_str(&format!("{k}={v}\n"));
    }
    out.push_str(&format!(
        "sasl_username={}\nclient_address={}\nqueue_id={}\n",
        req.sasl_username, req.client_address, req.queue_id
    ));
    if let Some(n) = req.recipient_count {
        out.push_str(&format!("recipient_count={n}\n"));
    }
    out.push('\n');
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn requests_round_trip_under_any_split(reqs in proptest::collection::vec(request(), 1..8), cuts in proptest::collection::vec(1usize..64, 0..40)) {
        let wire: String = reqs.iter().map(|(r, e)| encode(r, e)).collect();
        let bytes = wire.as_bytes();
        let mut decoder = Decoder::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut pos = 0;
        let mut cuts = cuts.into_iter();
        while pos < bytes.len() {
            let step = cuts.next().unwrap_or(bytes.len());
            let end = (pos + step).min(bytes.len());
            buf.extend_from_slice(&bytes[pos..end]);
            pos = end;
            while let Some(r) = decoder.decode(&mut buf).expect("well-formed input") {
                got.push(r);
            }
        }
        let want: Vec<Request> = reqs.into_iter().map(|(r, _)| r).collect();
        prop_assert_eq!(got, want);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..20)) {
        let mut decoder = Decoder::new();
        let mut buf = BytesMut::new();
        'outer: for chunk in chunks {
            buf.extend_from_slice(&chunk);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(ProtocolError::LineTooLong | ProtocolError::RequestTooLarge | ProtocolError::TooManyAttributes) => break 'outer,
                }
            }
            // Whatever is kept between reads is part of one line.
            prop_assert!(buf.len() <= MAX_LINE);
        }
    }

    #[test]
    fn replies_are_one_action_line_and_an_empty_line(text in value()) {
        let mut out = BytesMut::new();
        Action::DeferIfPermit(text).encode(&mut out);
        let s = String::from_utf8(out.to_vec()).expect("utf-8");
        prop_assert!(s.starts_with("action=DEFER_IF_PERMIT "));
        prop_assert!(s.ends_with("\n\n"));
        prop_assert_eq!(s.matches('\n').count(), 2);
    }

    #[test]
    fn normalizing_is_idempotent(raw in "\\PC{0,60}") {
        if let Ok(m) = sender::normalize(&raw) {
            prop_assert_eq!(sender::normalize(m.as_str()), Ok(m.clone()));
            prop_assert!(m.as_str().len() <= sender::MAX_LEN);
            prop_assert!(!m.as_str().chars().any(|c| c.is_whitespace() || c.is_control()));
        }
    }
}

/// One step of the decision-table model: who sends how many recipients at which stage.
#[derive(Debug, Clone)]
struct Step {
    sender: usize,
    recipients: u32,
    state: State,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0usize..4,
        1u32..6,
        prop_oneof![3 => Just(State::EndOfMessage), 1 => Just(State::Data), 1 => Just(State::Rcpt)],
    )
        .prop_map(|(sender, recipients, state)| Step { sender, recipients, state })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn decisions_follow_the_table(
        caps in proptest::collection::vec(proptest::option::of(1u64..15), 4),
        global in 1u64..40,
        log_only in any::<bool>(),
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let names: Vec<String> = (0..4).map(|i| format!("s{i}@example.com")).collect();
        let mailboxes = names
            .iter()
            .zip(&caps)
            .filter_map(|(n, c)| c.map(|c| MailboxEntry::daily(sender::normalize(n).expect("valid"), Some(c))))
            .collect();
        let limits = Arc::new(LimitsCache::new(LimitSettings { global, mailboxes, ..LimitSettings::default() }, None));
        let mode = if log_only { Mode::LogOnly } else { Mode::Enforce };
        let policy = Policy::new(MemoryStore::new(KeySchema::new("erl"), 10_000), limits, Settings::with_mode(mode), Env::default());
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");

        let (mut m, mut g) = ([0u64; 4], 0u64);
        let mut violations = 0usize;
        // The caps whose window has had its first refusal: a mailbox's, or the server's (None).
        let mut notified = std::collections::HashSet::new();
        for (i, s) in steps.iter().enumerate() {
            let req = Request {
                protocol_state: s.state.clone(),
                sasl_username: names[s.sender].clone(),
                recipient_count: Some(if s.state == State::Rcpt { 0 } else { u64::from(s.recipients) }),
                client_address: "198.51.100.1".into(),
                queue_id: "Q".into(),
                // Every step another message (a retry would be recorded once).
                size: i.to_string(),
                ..Request::default()
            };
            let action = runtime.block_on(policy.decide(&req)).reply.action;
            // the model
            let counting = s.state != State::Rcpt;
            let n = if counting { u64::from(s.recipients) } else { 1 };
            // A message that can never fit (n alone above a cap, in cap order) comes first.
            let oversize_mailbox = counting && caps[s.sender].is_some_and(|c| n > c);
            let oversize_global = counting && !oversize_mailbox && n > global;
            let oversize = oversize_mailbox || oversize_global;
            let over_mailbox = !oversize && caps[s.sender].is_some_and(|c| m[s.sender] + n > c);
            let over_global = !oversize && !over_mailbox && g + n > global;
            let expected = if oversize_mailbox && !log_only {
                Action::Reject(format!("{}: This message has {n} recipients, more than your daily limit of {} allows", names[s.sender], caps[s.sender].unwrap_or(0)))
            } else if oversize_global && !log_only {
                Action::Reject(format!("{}: This message has {n} recipients, more than the global daily limit of {global} allows", names[s.sender]))
            } else if over_mailbox && !log_only {
                Action::DeferIfPermit({
                    let cap = caps[s.sender].unwrap_or(0);
                    format!("{}: Your daily limit of {cap} {} reached", names[s.sender], recipients(cap))
                })
            } else if over_global && !log_only {
                Action::DeferIfPermit(format!("{}: Global daily limit of {global} {} reached", names[s.sender], recipients(global)))
            } else {
                Action::Dunno
            };
            // Refusals are recorded at end of data (each new message); at RCPT only the first
            // refusal by a cap in its window, in enforce mode (the once-per-window marker, taken
            // by any refusal that is not oversize, at end of data too).
            if counting && (oversize || over_mailbox || over_global) {
                violations += 1;
            }
            let refused_by = if over_mailbox { Some(Some(s.sender)) } else { over_global.then_some(None) };
            if let Some(cap) = refused_by.filter(|_| !log_only)
                && notified.insert(cap)
                && !counting
            {
                violations += 1;
            }
            if counting && ((!oversize && !over_mailbox && !over_global) || log_only) {
                m[s.sender] += n;
                g += n;
            }
            prop_assert_eq!(action, expected, "step {:?}", s);
        }
        let day = Local::now().date_naive();
        let keys = KeySchema::new("erl");
        for (i, name) in names.iter().enumerate() {
            let mailbox = sender::normalize(name).expect("valid");
            prop_assert_eq!(policy.store().count(&keys.sender(day, &mailbox).to_string()), m[i]);
        }
        prop_assert_eq!(policy.store().count(&keys.global(day).to_string()), g);
        prop_assert_eq!(policy.store().violations().len(), violations);
    }
}

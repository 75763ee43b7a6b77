//! What one Postfix log line says about a queued message: the program's service (the last part
//! of any `syslog_name`: `postfix/submission/smtpd`, `postfix-out/qmgr`) and its `QID: ...` text.

/// A delivery's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Sent,
    Deferred,
    Bounced,
    /// `expired`, `undeliverable`, anything else a delivery agent says.
    Other,
}

/// One line's news about the message `qid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// smtpd: `client=NAME[ADDR](:PORT)?(, sasl_method=M, sasl_username=U)?...`
    Client { name: &'a str, address: &'a str, sasl_username: Option<&'a str> },
    /// pickup: `uid=N from=<S>` (mail submitted on this server: `sendmail`, PHP `mail()`).
    Pickup { uid: u32, from: &'a str },
    /// qmgr: `from=<S>, size=N, nrcpt=K (queue active)`: the message was accepted.
    Queued { from: &'a str, size: u64, nrcpt: u64 },
    /// qmgr: `removed`: the end of the message's life (a queue ID may come back later).
    Removed,
    /// smtpd or cleanup: `reject: STAGE from ...: CODE ...; from=<S> to=<R> ...`.
    Reject { stage: &'a str, from: &'a str },
    /// cleanup: `milter-hold: ...` or `hold: ...`: into the hold queue.
    Hold,
    /// bounce: `sender non-delivery notification: NEWQID` (or a delivery status, or a postmaster
    /// notification): NEWQID is Postfix's own message, nobody's mail.
    Notice { new: &'a str },
    /// A delivery agent: `to=<R>, ..., relay=RELAY, ..., dsn=D, status=STATUS (REPLY)`.
    Delivery { to: &'a str, relay: &'a str, dsn: &'a str, status: Status, reply: &'a str },
}

impl Event<'_> {
    /// After a delivery to a content filter: the queue ID the filter's reply names
    /// (`250 2.0.0 Ok: queued as NEWQID`), when the relay is on this host.
    #[must_use]
    pub fn hop(&self) -> Option<&str> {
        let Self::Delivery { relay, status: Status::Sent, reply, .. } = self else { return None };
        let local = ["127.", "[127.", "localhost", "[::1]", "::1"];
        let host = relay.split('[').nth(1).unwrap_or(relay);
        if !local.iter().any(|l| host.starts_with(l) || relay.starts_with(l)) {
            return None;
        }
        let id = reply.split("queued as ").nth(1)?;
        let id = id.split(|c: char| !c.is_ascii_alphanumeric()).next()?;
        is_queue_id(id).then_some(id)
    }
}

/// Reads `message` of a line of `program`: the queue ID and what the line says, or `None` for a
/// line that says nothing about a queued message this reader follows.
#[must_use]
pub fn parse<'a>(program: &str, message: &'a str) -> Option<(&'a str, Event<'a>)> {
    let (_, service) = program.rsplit_once('/')?;
    let (qid, text) = message.split_once(": ")?;
    if !is_queue_id(qid) {
        return None;
    }
    let event = match service {
        "smtpd" => client(text).or_else(|| reject(text))?,
        "pickup" => pickup(text)?,
        "qmgr" => {
            if text == "removed" {
                Event::Removed
            } else {
                queued(text)?
            }
        }
        "cleanup" => {
            if text.starts_with("milter-hold: ") || text.starts_with("hold: ") {
                Event::Hold
            } else {
                reject(text)?
            }
        }
        "bounce" => {
            let (_, new) = text.rsplit_once(" notification: ")?;
            Event::Notice { new: is_queue_id(new).then_some(new)? }
        }
        "smtp" | "lmtp" | "local" | "virtual" | "pipe" | "error" | "retry" | "discard" => delivery(text)?,
        _ => return None,
    };
    Some((qid, event))
}

/// Short queue IDs are upper-case hex; long ones (`enable_long_queue_ids`) letters and digits.
#[must_use]
pub fn is_queue_id(id: &str) -> bool {
    (5..=24).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric()) && id != "NOQUEUE"
}

/// `name=value` up to `, ` (or the end): the value of the first `name=` in `text`.
fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = text;
    loop {
        let at = rest.find(name)?;
        let before_ok = at == 0 || rest.as_bytes()[at - 1] == b' ';
        let value = &rest[at + name.len()..];
        if before_ok && let Some(value) = value.strip_prefix('=') {
            return Some(value.split(", ").next().unwrap_or(value));
        }
        rest = value;
    }
}

/// `<address>` -> `address`.
fn bracketed(value: &str) -> Option<&str> {
    value.strip_prefix('<')?.split('>').next()
}

fn client(text: &str) -> Option<Event<'_>> {
    let value = text.strip_prefix("client=")?;
    let end = value.find(", ").unwrap_or(value.len());
    let (name, rest) = value[..end].split_once('[')?;
    let (address, _port) = rest.split_once(']')?;
    let sasl_username = field(&value[end..], "sasl_username");
    Some(Event::Client { name, address, sasl_username })
}

fn pickup(text: &str) -> Option<Event<'_>> {
    let uid = text.strip_prefix("uid=")?.split(' ').next()?.parse().ok()?;
    let from = bracketed(text.split(" from=").nth(1)?)?;
    Some(Event::Pickup { uid, from })
}

fn queued(text: &str) -> Option<Event<'_>> {
    let from = bracketed(text.strip_prefix("from=")?)?;
    let size = field(text, "size")?.parse().ok()?;
    let nrcpt = field(text, "nrcpt")?.split(' ').next()?.parse().ok()?;
    Some(Event::Queued { from, size, nrcpt })
}

fn reject(text: &str) -> Option<Event<'_>> {
    let rest = text.strip_prefix("reject: ")?;
    let stage = rest.split(' ').next()?;
    let from = rest.rsplit_once("; from=").and_then(|(_, f)| bracketed(f)).unwrap_or_default();
    Some(Event::Reject { stage, from })
}

fn delivery(text: &str) -> Option<Event<'_>> {
    let to = bracketed(text.strip_prefix("to=")?)?;
    let relay = field(text, "relay")?;
    let dsn = field(text, "dsn")?;
    let status_text = text.split(", status=").nth(1)?;
    let (word, reply) = status_text.split_once(' ').unwrap_or((status_text, ""));
    let status = match word {
        "sent" => Status::Sent,
        "deferred" => Status::Deferred,
        "bounced" => Status::Bounced,
        _ => Status::Other,
    };
    let reply = reply.strip_prefix('(').and_then(|r| r.strip_suffix(')')).unwrap_or(reply);
    Some(Event::Delivery { to, relay, dsn, status, reply })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtpd_logins_with_and_without_a_domain_and_the_webmail_client() {
        assert_eq!(
            parse(
                "postfix/submission/smtpd",
                "4Qx1Y2: client=host.example[192.0.2.7], sasl_method=LOGIN, sasl_username=alice@example.com"
            ),
            Some((
                "4Qx1Y2",
                Event::Client {
                    name: "host.example",
                    address: "192.0.2.7",
                    sasl_username: Some("alice@example.com")
                }
            ))
        );
        assert_eq!(
            parse(
                "postfix/smtpd",
                "ABC123: client=localhost[127.0.0.1]:41234, sasl_method=PLAIN, sasl_username=alice"
            ),
            Some((
                "ABC123",
                Event::Client { name: "localhost", address: "127.0.0.1", sasl_username: Some("alice") }
            ))
        );
        assert_eq!(
            parse("postfix/smtpd", "ABC123: client=unknown[2001:db8::1]"),
            Some(("ABC123", Event::Client { name: "unknown", address: "2001:db8::1", sasl_username: None }))
        );
        assert_eq!(parse("postfix/smtpd", "connect from unknown[192.0.2.7]"), None);
        assert_eq!(parse("postfix/smtpd", "NOQUEUE: reject: RCPT from x[192.0.2.1]: 554 5.7.1 no"), None);
    }

    #[test]
    fn pickup_qmgr_cleanup_and_the_end_of_a_message() {
        assert_eq!(
            parse("postfix/pickup", "D00D1: uid=33 from=<www-data>"),
            Some(("D00D1", Event::Pickup { uid: 33, from: "www-data" }))
        );
        assert_eq!(
            parse(
                "postfix-out/qmgr",
                "D00D1: from=<www-data@web.example>, size=1234, nrcpt=3 (queue active)"
            ),
            Some(("D00D1", Event::Queued { from: "www-data@web.example", size: 1234, nrcpt: 3 }))
        );
        assert_eq!(parse("postfix/qmgr", "D00D1: removed"), Some(("D00D1", Event::Removed)));
        assert_eq!(parse("postfix/qmgr", "D00D1: from=<a@b>, status=expired, returned to sender"), None);
        assert_eq!(
            parse(
                "postfix/cleanup",
                "D00D1: milter-hold: END-OF-MESSAGE from localhost[127.0.0.1]: over cap; from=<w@x> to=<y@z>"
            ),
            Some(("D00D1", Event::Hold))
        );
        assert_eq!(parse("postfix/cleanup", "D00D1: message-id=<1@x>"), None);
        assert_eq!(
            parse("postfix/bounce", "D00D1: sender non-delivery notification: E11E2"),
            Some(("D00D1", Event::Notice { new: "E11E2" }))
        );
    }

    #[test]
    fn an_end_of_data_reject() {
        let line = "4QZ1AB: reject: END-OF-MESSAGE from host[192.0.2.7]: 450 4.7.1 <END-OF-MESSAGE>: End-of-data rejected: alice@example.com: over; from=<alice@example.com> to=<bob@example.net> proto=ESMTP helo=<x>";
        assert_eq!(
            parse("postfix/submission/smtpd", line),
            Some(("4QZ1AB", Event::Reject { stage: "END-OF-MESSAGE", from: "alice@example.com" }))
        );
    }

    #[test]
    fn deliveries_and_a_content_filters_hop() {
        let sent = "AB12C: to=<bob@example.net>, relay=mx.example.net[198.51.100.1]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 9F9F9)";
        let (qid, event) = parse("postfix/smtp", sent).expect("a delivery");
        assert_eq!(qid, "AB12C");
        assert_eq!(
            event,
            Event::Delivery {
                to: "bob@example.net",
                relay: "mx.example.net[198.51.100.1]:25",
                dsn: "2.0.0",
                status: Status::Sent,
                reply: "250 2.0.0 Ok: queued as 9F9F9"
            }
        );
        assert_eq!(event.hop(), None, "a remote relay is not a hop");
        let filtered = "AB12C: to=<bob@example.net>, orig_to=<b@example.net>, relay=127.0.0.1[127.0.0.1]:10025, delay=0.3, delays=0.1/0/0/0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4QnewID)";
        assert_eq!(parse("postfix/smtp", filtered).expect("a delivery").1.hop(), Some("4QnewID"));
        let bounced = "AB12C: to=<x@example.org>, relay=mx.example.org[203.0.113.5]:25, delay=2, delays=0/0/1/1, dsn=5.1.1, status=bounced (host mx.example.org[203.0.113.5] said: 550 5.1.1 <x@example.org>: Recipient address rejected (in reply to RCPT TO command))";
        let Some((_, Event::Delivery { status, dsn, reply, .. })) = parse("postfix/smtp", bounced) else {
            panic!("a delivery")
        };
        assert_eq!((status, dsn), (Status::Bounced, "5.1.1"));
        assert!(reply.starts_with("host mx.example.org"));
    }
}

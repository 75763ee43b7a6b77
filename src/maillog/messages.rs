//! Lines joined into messages. A queue ID names one message only from its first line to its
//! `removed` line (short queue IDs come back); a content filter's hop (`queued as NEWQID` to a
//! relay on this host) carries the message on to NEWQID, which is then not a message of its own.

use std::collections::HashMap;

use super::event::{Event, Status};

/// Where a message came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// smtpd; `sasl_username` when the client logged in.
    Smtp { client_name: String, client_address: String, sasl_username: Option<String> },
    /// pickup: submitted on this server by the user with this uid.
    Pickup { uid: u32 },
    /// Postfix's own notification (a bounce, a delivery status): nobody's mail.
    Notice,
    /// Its first line is not in the log (the log begins during its life).
    Unseen,
}

/// A delivery result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Unix microseconds.
    pub at: i64,
    pub to: String,
    pub dsn: String,
    pub status: Status,
    pub reply: String,
}

/// One message's life in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub queue_id: String,
    /// Its first line: unix microseconds.
    pub first: i64,
    pub origin: Origin,
    /// The envelope sender (qmgr's, else pickup's or a reject's).
    pub sender: String,
    /// qmgr's `size=` and `nrcpt=`: the message was accepted into the queue.
    pub queued: Option<(u64, u64)>,
    /// The stage of a `reject:` (`END-OF-MESSAGE`, `DATA`...).
    pub rejected: Option<String>,
    /// Put on hold (by a milter, or a header check).
    pub held: bool,
    pub deliveries: Vec<Delivery>,
    /// The message (an index into the list) this one continues after a content filter.
    pub hop_of: Option<usize>,
}

impl Message {
    fn new(queue_id: &str, first: i64, origin: Origin) -> Self {
        Self {
            queue_id: queue_id.to_owned(),
            first,
            origin,
            sender: String::new(),
            queued: None,
            rejected: None,
            held: false,
            deliveries: Vec::new(),
            hop_of: None,
        }
    }
}

/// Joins lines, fed in time order, into messages.
#[derive(Debug, Default)]
pub struct Joiner {
    messages: Vec<Message>,
    /// Queue IDs in their life: the index of their message.
    open: HashMap<String, usize>,
    /// Hops announced before the new queue ID's first line: NEWQID -> the original.
    hops: HashMap<String, usize>,
}

impl Joiner {
    /// One line's event for `queue_id`, at unix microseconds `at`.
    pub fn add(&mut self, at: i64, queue_id: &str, event: &Event<'_>) {
        match *event {
            Event::Client { name, address, sasl_username } => {
                let origin = Origin::Smtp {
                    client_name: name.to_owned(),
                    client_address: address.to_owned(),
                    sasl_username: sasl_username.map(str::to_owned),
                };
                self.start(at, queue_id, origin);
            }
            Event::Pickup { uid, from } => {
                let i = self.start(at, queue_id, Origin::Pickup { uid });
                self.messages[i].sender = from.to_owned();
            }
            Event::Queued { from, size, nrcpt } => {
                let m = self.get(at, queue_id);
                m.sender = from.to_owned();
                m.queued = Some((size, nrcpt));
            }
            Event::Removed => {
                self.open.remove(queue_id);
            }
            Event::Reject { stage, from } => {
                let m = self.get(at, queue_id);
                if m.sender.is_empty() {
                    from.clone_into(&mut m.sender);
                }
                m.rejected = Some(stage.to_owned());
            }
            Event::Hold => self.get(at, queue_id).held = true,
            Event::Notice { new } => {
                self.start(at, new, Origin::Notice);
            }
            Event::Delivery { to, dsn, status, reply, .. } => {
                if let Some(new) = event.hop() {
                    let i = self.index(at, queue_id);
                    match self.open.get(new) {
                        Some(&hop) if hop != i => self.messages[hop].hop_of = Some(i),
                        _ => {
                            self.hops.insert(new.to_owned(), i);
                        }
                    }
                }
                let delivery =
                    Delivery { at, to: to.to_owned(), dsn: dsn.to_owned(), status, reply: reply.to_owned() };
                self.get(at, queue_id).deliveries.push(delivery);
            }
        }
    }

    /// The messages, in the order of their first lines.
    #[must_use]
    pub fn finish(self) -> Vec<Message> {
        self.messages
    }

    /// A new message for `queue_id` (its first line); a message still open under that ID (its
    /// `removed` line is not in the log) ends here.
    fn start(&mut self, at: i64, queue_id: &str, origin: Origin) -> usize {
        if let Some(&i) = self.open.get(queue_id)
            && matches!(self.messages[i].origin, Origin::Unseen)
            && self.messages[i].first == at
        {
            // Lines of one second may come in another order than written: the origin arrived
            // after a line that opened the message as unseen.
            self.messages[i].origin = origin;
            return i;
        }
        let i = self.messages.len();
        let mut message = Message::new(queue_id, at, origin);
        message.hop_of = self.hops.remove(queue_id);
        self.messages.push(message);
        self.open.insert(queue_id.to_owned(), i);
        i
    }

    fn index(&mut self, at: i64, queue_id: &str) -> usize {
        match self.open.get(queue_id) {
            Some(&i) => i,
            None => self.start(at, queue_id, Origin::Unseen),
        }
    }

    fn get(&mut self, at: i64, queue_id: &str) -> &mut Message {
        let i = self.index(at, queue_id);
        &mut self.messages[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maillog::event::parse;

    fn join(lines: &[(&str, &str)]) -> Vec<Message> {
        let mut joiner = Joiner::default();
        for (at, (program, text)) in lines.iter().enumerate() {
            let (qid, event) = parse(program, text).unwrap_or_else(|| panic!("{text}"));
            joiner.add(i64::try_from(at).expect("small"), qid, &event);
        }
        joiner.finish()
    }

    #[test]
    fn a_login_and_its_queue_line_far_apart() {
        let m = join(&[
            (
                "postfix/smtpd",
                "AAA01: client=x[192.0.2.1], sasl_method=PLAIN, sasl_username=alice@example.com",
            ),
            ("postfix/smtpd", "BBB02: client=y[192.0.2.2]"),
            ("postfix/qmgr", "BBB02: from=<z@y>, size=9, nrcpt=1 (queue active)"),
            ("postfix/qmgr", "AAA01: from=<alice@example.com>, size=100, nrcpt=3 (queue active)"),
            ("postfix/qmgr", "AAA01: removed"),
        ]);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].queued, Some((100, 3)));
        assert_eq!(m[0].sender, "alice@example.com");
        assert!(
            matches!(&m[0].origin, Origin::Smtp { sasl_username: Some(u), .. } if u == "alice@example.com")
        );
        assert!(matches!(&m[1].origin, Origin::Smtp { sasl_username: None, .. }));
    }

    #[test]
    fn a_queue_id_used_again_after_removed_is_a_new_message() {
        let m = join(&[
            ("postfix/pickup", "CCC03: uid=33 from=<www-data>"),
            ("postfix/qmgr", "CCC03: from=<www-data@h>, size=5, nrcpt=2 (queue active)"),
            ("postfix/qmgr", "CCC03: removed"),
            ("postfix/smtpd", "CCC03: client=x[192.0.2.1], sasl_method=PLAIN, sasl_username=bob"),
            (
                "postfix/smtpd",
                "CCC03: reject: END-OF-MESSAGE from x[192.0.2.1]: 450 4.7.1 no; from=<bob@h> to=<c@d> proto=ESMTP helo=<x>",
            ),
        ]);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].origin.clone(), m[0].queued), (Origin::Pickup { uid: 33 }, Some((5, 2))));
        assert_eq!(
            (m[1].rejected.as_deref(), m[1].queued, m[1].sender.as_str()),
            (Some("END-OF-MESSAGE"), None, "bob@h")
        );
    }

    #[test]
    fn a_content_filters_hop_continues_the_message() {
        let m = join(&[
            (
                "postfix/smtpd",
                "DDD04: client=x[192.0.2.1], sasl_method=PLAIN, sasl_username=carol@example.com",
            ),
            ("postfix/qmgr", "DDD04: from=<carol@example.com>, size=50, nrcpt=1 (queue active)"),
            // The filter injects the message again before it answers.
            ("postfix/smtpd", "EEE05: client=localhost[127.0.0.1]"),
            (
                "postfix/smtp",
                "DDD04: to=<d@example.net>, relay=127.0.0.1[127.0.0.1]:10025, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as EEE05)",
            ),
            ("postfix/qmgr", "EEE05: from=<carol@example.com>, size=60, nrcpt=1 (queue active)"),
            (
                "postfix/smtp",
                "EEE05: to=<d@example.net>, relay=mx.example.net[198.51.100.1]:25, delay=1, delays=0/0/0/1, dsn=5.1.1, status=bounced (550 5.1.1 no such user)",
            ),
        ]);
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].hop_of, Some(0));
        assert_eq!(m[1].deliveries[0].status, Status::Bounced);
        // Announced before the new queue ID's first line, the hop still joins.
        let m = join(&[
            (
                "postfix/smtp",
                "FFF06: to=<d@x>, relay=localhost[::1]:10025, delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 Ok: queued as GGG07)",
            ),
            ("postfix/smtpd", "GGG07: client=localhost[::1]"),
        ]);
        assert_eq!((m[0].origin.clone(), m[1].hop_of), (Origin::Unseen, Some(0)));
    }
}

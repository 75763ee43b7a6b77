//! `--input maillog`: the messages of Postfix's log as the requests the daemon would have seen
//! at END-OF-MESSAGE (DESIGN v4 "Replay reads Postfix's log"), one per message, timed at its
//! first line:
//! - a login (smtpd's `sasl_username`) with qmgr's `from`, `size` and `nrcpt`: accepted mail;
//! - a login whose message has an END-OF-MESSAGE `reject:` instead: refused, with 1 recipient
//!   (the log does not give the count);
//! - pickup's `uid=`: website mail, decided as the milter decides it, whether or not `[milter]`
//!   is set; the local user's name from the passwd file (`uid<N>` without an entry);
//! - skipped and counted: unauthenticated SMTP mail, Postfix's own notifications (bounces), a
//!   message never decided, one whose first line is not in the log; the second leg of a content
//!   filter's hop is the same message, not another.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::Replayed;
use crate::maillog::{Log, Message, Origin};
use crate::protocol::{Request, State};

/// Local users by uid, from a passwd file.
#[derive(Debug, Default)]
pub struct Passwd(HashMap<u32, String>);

impl Passwd {
    /// Reads `name:x:uid:...` lines (others are ignored).
    ///
    /// # Errors
    /// A file that cannot be read.
    pub fn read(path: &Path) -> std::io::Result<Self> {
        Ok(Self::parse(&std::fs::read_to_string(path)?))
    }

    #[must_use]
    pub fn parse(text: &str) -> Self {
        let users = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split(':');
                let name = fields.next()?;
                let uid = fields.nth(1)?.parse().ok()?;
                (!name.is_empty()).then(|| (uid, name.to_owned()))
            })
            .collect();
        Self(users)
    }

    /// The name of `uid`, as the milter names a user without an entry: `uid<N>`.
    #[must_use]
    pub fn name(&self, uid: u32) -> String {
        self.0.get(&uid).cloned().unwrap_or_else(|| format!("uid{uid}"))
    }
}

/// What the log's lines and messages came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub lines: u64,
    pub understood: u64,
    pub messages: u64,
    /// Refused at END-OF-MESSAGE, replayed with one recipient.
    pub refused_one_recipient: u64,
    /// Messages that are no request, by why.
    pub skipped: BTreeMap<&'static str, u64>,
}

/// The requests of `log`'s messages, in time order, and the counts.
#[must_use]
pub fn requests(log: Log, passwd: &Passwd) -> (Vec<Replayed>, Counts) {
    let mut counts = Counts { lines: log.lines, understood: log.understood, ..Counts::default() };
    let mut requests = Vec::new();
    let mut skip = |why: &'static str| *counts.skipped.entry(why).or_insert(0) += 1;
    let mut messages: Vec<Message> = log.messages.into_iter().filter(|m| m.hop_of.is_none()).collect();
    // Stable: one second's messages keep the order of their lines.
    messages.sort_by_key(|m| m.first);
    for (i, m) in messages.into_iter().enumerate() {
        counts.messages += 1;
        let recipients = match (m.queued, m.rejected.as_deref(), m.held) {
            (Some((_, nrcpt)), _, _) => nrcpt,
            (None, Some("END-OF-MESSAGE"), _) | (None, _, true) => {
                counts.refused_one_recipient += 1;
                1
            }
            (None, _, _) => {
                skip(match m.origin {
                    Origin::Unseen => "begun_before_the_log",
                    Origin::Notice => "notifications",
                    _ => "undecided",
                });
                continue;
            }
        };
        let size = m.queued.map(|(size, _)| size.to_string()).unwrap_or_default();
        let (request, website) = match &m.origin {
            Origin::Smtp { client_address, sasl_username: Some(user), .. } => {
                let request = Request {
                    sasl_username: user.clone(),
                    client_address: client_address.clone(),
                    size,
                    ..base(&m, recipients)
                };
                (request, false)
            }
            Origin::Pickup { uid } => {
                let request = Request {
                    local_user: passwd.name(*uid),
                    client_address: "127.0.0.1".into(),
                    ..base(&m, recipients)
                };
                (request, true)
            }
            Origin::Smtp { sasl_username: None, .. } => {
                skip("unauthenticated");
                continue;
            }
            Origin::Unseen => {
                skip("begun_before_the_log");
                continue;
            }
            Origin::Notice => {
                skip("notifications");
                continue;
            }
        };
        requests.push(Replayed { at: m.first, i, request, website, queue_id: m.queue_id });
    }
    (requests, counts)
}

/// The request's fields every kind shares.
fn base(m: &Message, recipients: u64) -> Request {
    Request {
        protocol_state: State::EndOfMessage,
        recipient_count: Some(recipients),
        queue_id: m.queue_id.clone(),
        instance: m.queue_id.clone(),
        sender: m.sender.clone(),
        ..Request::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Zone;
    use crate::maillog::{Source, read};

    fn replayed(text: &str, passwd: &Passwd) -> (Vec<Replayed>, Counts) {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 8).expect("date");
        let log =
            read(vec![Source::text("mail.log", text.to_owned(), today)], &Zone::Named(chrono_tz::UTC), None)
                .expect("read");
        requests(log, passwd)
    }

    #[test]
    fn logins_rejects_pickup_and_what_is_skipped() {
        let text = "\
Dec  7 10:00:00 mx postfix/qmgr[2]: 0AAAA1: from=<early@x>, size=1, nrcpt=1 (queue active)
Dec  7 10:00:01 mx postfix/submission/smtpd[1]: 1BBBB2: client=h[192.0.2.1], sasl_method=LOGIN, sasl_username=alice
Dec  7 10:00:02 mx postfix/smtpd[3]: 2CCCC3: client=localhost[127.0.0.1], sasl_method=PLAIN, sasl_username=bob@example.com
Dec  7 10:00:02 mx postfix/smtpd[3]: 2CCCC3: reject: END-OF-MESSAGE from localhost[127.0.0.1]: 450 4.7.1 <END-OF-MESSAGE>: End-of-data rejected: over; from=<bob@example.com> to=<z@example.net> proto=ESMTP helo=<w>
Dec  7 10:00:03 mx postfix/pickup[4]: 3DDDD4: uid=33 from=<www-data>
Dec  7 10:00:03 mx postfix/qmgr[2]: 3DDDD4: from=<www-data@mx>, size=300, nrcpt=2 (queue active)
Dec  7 10:00:04 mx postfix/smtpd[5]: 4EEEE5: client=remote[198.51.100.9]
Dec  7 10:00:04 mx postfix/qmgr[2]: 4EEEE5: from=<in@example.org>, size=9, nrcpt=1 (queue active)
Dec  7 10:00:05 mx postfix/smtpd[5]: 5FFFF6: client=h[192.0.2.1], sasl_method=PLAIN, sasl_username=carol@example.com
Dec  7 10:00:09 mx postfix/qmgr[2]: 1BBBB2: from=<alice@example.com>, size=700, nrcpt=3 (queue active)
Dec  7 10:00:10 mx postfix/pickup[4]: 6GGGG7: uid=1001 from=<cron>
Dec  7 10:00:10 mx postfix/cleanup[6]: 6GGGG7: milter-hold: END-OF-MESSAGE from localhost[127.0.0.1]: over cap; from=<cron@mx> to=<r@x>
Dec  7 10:00:11 mx postfix/bounce[7]: 4EEEE5: sender non-delivery notification: 7HHHH8
Dec  7 10:00:11 mx postfix/qmgr[2]: 7HHHH8: from=<>, size=2000, nrcpt=1 (queue active)
";
        let (got, counts) = replayed(
            text,
            &Passwd::parse("root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n"),
        );
        let summary: Vec<(usize, &str, &str, Option<u64>, bool)> = got
            .iter()
            .map(|r| {
                let who =
                    if r.website { r.request.local_user.as_str() } else { r.request.sasl_username.as_str() };
                (r.i, r.queue_id.as_str(), who, r.request.recipient_count, r.website)
            })
            .collect();
        assert_eq!(
            summary,
            [
                (1, "1BBBB2", "alice", Some(3), false),
                (2, "2CCCC3", "bob@example.com", Some(1), false),
                (3, "3DDDD4", "www-data", Some(2), true),
                (6, "6GGGG7", "uid1001", Some(1), true),
            ]
        );
        let alice = &got[0].request;
        assert_eq!(
            (
                alice.client_address.as_str(),
                alice.sender.as_str(),
                alice.size.as_str(),
                alice.protocol_state.clone()
            ),
            ("192.0.2.1", "alice@example.com", "700", State::EndOfMessage)
        );
        assert_eq!(got[1].request.sender, "bob@example.com", "the reject's envelope sender");
        assert_eq!(
            counts,
            Counts {
                lines: 14,
                understood: 14,
                messages: 8,
                refused_one_recipient: 2,
                skipped: [
                    ("begun_before_the_log", 1),
                    ("notifications", 1),
                    ("unauthenticated", 1),
                    ("undecided", 1)
                ]
                .into_iter()
                .collect(),
            }
        );
    }
}

//! What the policy says: the reply texts (contract: exact wording) and the shared fields of the
//! `erl ok` / `erl DEFER` log lines.

use std::fmt;

use crate::caps::{Counter, Scope};
use crate::config::Replies;
use crate::config::replies::{Case, Fill, WindowClass};
use crate::limits::Cap;
use crate::protocol::Request;
use crate::sender::Mailbox;
use crate::window::{Unit, Window};

/// The reply text for a message refused by a cap (contract: exact wording, DESIGN v4 "Replies
/// name the unit"), e.g. `alice@example.com: Your hourly limit of 20 recipients reached`.
#[must_use]
pub fn refusal_text(sender: &Mailbox, counter: Counter, limit: u64) -> String {
    let window = counter.window;
    let unit = unit_words(counter.unit, limit);
    match (counter.scope, window.adjective()) {
        (Scope::Mailbox | Scope::Local, Some(adj)) => {
            format!("{sender}: Your {adj} limit of {limit} {unit} reached")
        }
        (Scope::Mailbox | Scope::Local, None) => {
            format!("{sender}: Your limit of {limit} {unit} {} reached", window.per())
        }
        (Scope::Domain, adj) => {
            let domain = sender.domain().unwrap_or_default();
            match adj {
                Some(adj) => {
                    format!("{sender}: {} limit of {limit} {unit} for {domain} reached", capitalized(adj))
                }
                None => format!("{sender}: Limit of {limit} {unit} {} for {domain} reached", window.per()),
            }
        }
        (Scope::Server, Some(adj)) => format!("{sender}: Global {adj} limit of {limit} {unit} reached"),
        (Scope::Server, None) => {
            format!("{sender}: Global limit of {limit} {unit} {} reached", window.per())
        }
    }
}

/// What a cap counts, as its replies say it: `recipients` or `messages`, singular for a limit of
/// 1 (the `{unit}` of `[replies]`).
#[must_use]
pub fn unit_words(unit: Unit, limit: u64) -> &'static str {
    match (unit, limit) {
        (Unit::Rcpt, 1) => "recipient",
        (Unit::Rcpt, _) => "recipients",
        (Unit::Msg, 1) => "message",
        (Unit::Msg, _) => "messages",
    }
}

/// The reply text for a message whose recipients alone are more than a cap allows (contract:
/// exact wording), e.g. `alice@example.com: This message has 60 recipients, more than your
/// daily limit of 50 allows`.
#[must_use]
pub fn oversize_text(sender: &Mailbox, counter: Counter, limit: u64, n: u64) -> String {
    let window = counter.window;
    let cap = match window.adjective() {
        Some(adj) => format!("{adj} limit of {limit}"),
        None => format!("limit of {limit} {}", window.per()),
    };
    let whose = match counter.scope {
        Scope::Mailbox | Scope::Local => format!("your {cap}"),
        Scope::Domain => format!("the {cap} for {}", sender.domain().unwrap_or_default()),
        Scope::Server => format!("the global {cap}"),
    };
    let noun = if n == 1 { "recipient" } else { "recipients" };
    format!("{sender}: This message has {n} {noun}, more than {whose} allows")
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

/// The reply text for a locked sender (contract: exact wording).
#[must_use]
pub fn locked_text(sender: &Mailbox) -> String {
    format!("{sender}: Sending is suspended for this account, contact your administrator")
}

/// The reply text for a sender over its own daily cap.
#[must_use]
pub fn mailbox_text(sender: &Mailbox, limit: u64) -> String {
    refusal_text(sender, Counter::rcpt(Scope::Mailbox, Window::Day), limit)
}

/// The reply text when the server-wide daily cap is reached.
#[must_use]
pub fn global_text(sender: &Mailbox, limit: u64) -> String {
    refusal_text(sender, Counter::rcpt(Scope::Server, Window::Day), limit)
}

/// The reply text for a message with more recipients than `max_rcpt_per_message` (contract:
/// exact wording), e.g. `alice@example.com: At most 100 recipients per message`.
#[must_use]
pub fn per_message_text(sender: &Mailbox, limit: u64) -> String {
    format!("{sender}: At most {limit} recipients per message")
}

/// The admin's `[replies]` text for `case` when there is one, else the contract's (`builtin`).
pub(super) fn reply(
    replies: &Replies,
    case: Case,
    fill: &Fill<'_>,
    builtin: impl FnOnce() -> String,
) -> String {
    replies.get(case).map_or_else(builtin, |t| t.render(fill))
}

/// The reply to a message refused by a cap without room.
pub(super) fn refused(replies: &Replies, sender: &Mailbox, counter: Counter, limit: u64, n: u64) -> String {
    let class = WindowClass::of(counter.window);
    let case = match counter.scope {
        Scope::Mailbox | Scope::Local => Case::Mailbox(class),
        Scope::Domain => Case::Domain(class),
        Scope::Server => Case::Server(class),
    };
    let fill = Fill { unit: unit_words(counter.unit, limit), ..fill(sender, counter.window, limit, n) };
    reply(replies, case, &fill, || refusal_text(sender, counter, limit))
}

/// The reply to a message that can never fit under a cap.
pub(super) fn too_big(replies: &Replies, sender: &Mailbox, counter: Counter, limit: u64, n: u64) -> String {
    let case = match counter.scope {
        Scope::Mailbox | Scope::Local => Case::OversizeMailbox,
        Scope::Domain => Case::OversizeDomain,
        Scope::Server => Case::OversizeServer,
    };
    let fill = Fill { unit: unit_words(counter.unit, limit), ..fill(sender, counter.window, limit, n) };
    reply(replies, case, &fill, || oversize_text(sender, counter, limit, n))
}

/// The reply to a message with more recipients than `max_rcpt_per_message` allows.
pub(super) fn too_many(replies: &Replies, sender: &Mailbox, limit: u64, n: u64) -> String {
    let fill = fill(sender, Window::Day, limit, n);
    reply(replies, Case::PerMessage, &fill, || per_message_text(sender, limit))
}

/// The reply to a locked sender.
pub(super) fn locked(replies: &Replies, sender: &Mailbox, n: u64) -> String {
    let fill = fill(sender, Window::Day, 0, n);
    reply(replies, Case::Locked, &fill, || locked_text(sender))
}

fn fill(sender: &Mailbox, window: Window, limit: u64, n: u64) -> Fill<'_> {
    let unit = unit_words(Unit::Rcpt, limit);
    Fill { user: sender.as_str(), limit, window, domain: sender.domain().unwrap_or_default(), n, unit }
}

/// The shared fields of the decision lines.
pub(super) struct Line<'a> {
    pub user: &'a Mailbox,
    pub rcpt: u64,
    pub mailbox: u64,
    pub mailbox_cap: Option<Cap>,
    /// `None` for an exempt sender, which does not move the server's counters.
    pub global: Option<u64>,
    pub global_cap: Cap,
    pub req: &'a Request,
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A local user's own counter is `local=`, an SMTP sender's `mailbox=` (DESIGN v4).
        let own = if self.user.is_local() { "local" } else { "mailbox" };
        write!(f, "user={} rcpt={} {own}={}/", self.user, self.rcpt, self.mailbox)?;
        match self.mailbox_cap {
            Some(cap) => write!(f, "{cap}")?,
            None => f.write_str("-")?,
        }
        match self.global {
            Some(g) => write!(f, " global={g}/{}", self.global_cap)?,
            // A local user never meets the server's caps.
            None if self.user.is_local() => {}
            None => f.write_str(" global=exempt")?,
        }
        write!(
            f,
            " client={} queue_id={} stage={}",
            self.req.client_address,
            self.req.queue_id,
            self.req.protocol_state.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sender::normalize;

    #[test]
    fn every_scope_and_window_is_spelled_as_the_contract_says() {
        let alice = normalize("alice@Bücher.example").expect("valid");
        let text = |scope, window: &str, limit| {
            refusal_text(&alice, Counter::rcpt(scope, Window::parse(window).expect("window")), limit)
        };
        let a = "alice@xn--bcher-kva.example";
        let d = "xn--bcher-kva.example";
        // DESIGN v4 "Replies name the unit": recipients for a recipient cap.
        for (scope, window, limit, want) in [
            (Scope::Mailbox, "1d", 50, format!("{a}: Your daily limit of 50 recipients reached")),
            (Scope::Mailbox, "1h", 20, format!("{a}: Your hourly limit of 20 recipients reached")),
            (Scope::Mailbox, "15m", 10, format!("{a}: Your limit of 10 recipients per 15 minutes reached")),
            (Scope::Mailbox, "1m", 3, format!("{a}: Your limit of 3 recipients per minute reached")),
            (Scope::Mailbox, "2h", 30, format!("{a}: Your limit of 30 recipients per 2 hours reached")),
            (Scope::Mailbox, "1d", 1, format!("{a}: Your daily limit of 1 recipient reached")),
            (Scope::Domain, "1d", 2000, format!("{a}: Daily limit of 2000 recipients for {d} reached")),
            (Scope::Domain, "1h", 500, format!("{a}: Hourly limit of 500 recipients for {d} reached")),
            (
                Scope::Domain,
                "15m",
                100,
                format!("{a}: Limit of 100 recipients per 15 minutes for {d} reached"),
            ),
            (Scope::Server, "1d", 999, format!("{a}: Global daily limit of 999 recipients reached")),
            (Scope::Server, "1h", 300, format!("{a}: Global hourly limit of 300 recipients reached")),
            (
                Scope::Server,
                "15m",
                100,
                format!("{a}: Global limit of 100 recipients per 15 minutes reached"),
            ),
            (
                Scope::Server,
                "90m",
                100,
                format!("{a}: Global limit of 100 recipients per 90 minutes reached"),
            ),
        ] {
            assert_eq!(text(scope, window, limit), want);
        }
        // ...and messages for a message cap (`Nmsg/w`), the singular for 1.
        let msg = |scope, window: &str, limit| {
            let counter = Counter { scope, window: Window::parse(window).expect("window"), unit: Unit::Msg };
            refusal_text(&alice, counter, limit)
        };
        for (scope, window, limit, want) in [
            (Scope::Mailbox, "1h", 10, format!("{a}: Your hourly limit of 10 messages reached")),
            (Scope::Mailbox, "1h", 1, format!("{a}: Your hourly limit of 1 message reached")),
            (Scope::Domain, "15m", 100, format!("{a}: Limit of 100 messages per 15 minutes for {d} reached")),
            (Scope::Server, "1d", 999, format!("{a}: Global daily limit of 999 messages reached")),
        ] {
            assert_eq!(msg(scope, window, limit), want);
        }
        for (scope, window, limit, n, want) in [
            (
                Scope::Mailbox,
                "1d",
                50,
                60,
                format!("{a}: This message has 60 recipients, more than your daily limit of 50 allows"),
            ),
            (
                Scope::Mailbox,
                "1h",
                20,
                21,
                format!("{a}: This message has 21 recipients, more than your hourly limit of 20 allows"),
            ),
            (
                Scope::Mailbox,
                "15m",
                10,
                11,
                format!(
                    "{a}: This message has 11 recipients, more than your limit of 10 per 15 minutes allows"
                ),
            ),
            (
                Scope::Domain,
                "1d",
                2000,
                2001,
                format!(
                    "{a}: This message has 2001 recipients, more than the daily limit of 2000 for {d} allows"
                ),
            ),
            (
                Scope::Domain,
                "15m",
                100,
                101,
                format!(
                    "{a}: This message has 101 recipients, more than the limit of 100 per 15 minutes for {d} allows"
                ),
            ),
            (
                Scope::Server,
                "1d",
                999,
                1000,
                format!(
                    "{a}: This message has 1000 recipients, more than the global daily limit of 999 allows"
                ),
            ),
            (
                Scope::Server,
                "2h",
                0,
                1,
                format!(
                    "{a}: This message has 1 recipient, more than the global limit of 0 per 2 hours allows"
                ),
            ),
        ] {
            let counter = Counter::rcpt(scope, Window::parse(window).expect("window"));
            assert_eq!(oversize_text(&alice, counter, limit, n), want);
        }
        assert_eq!(mailbox_text(&alice, 5), format!("{a}: Your daily limit of 5 recipients reached"));
        assert_eq!(global_text(&alice, 9), format!("{a}: Global daily limit of 9 recipients reached"));
        assert_eq!(
            locked_text(&alice),
            format!("{a}: Sending is suspended for this account, contact your administrator")
        );
    }
}

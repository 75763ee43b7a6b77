//! The notification mails: plain text, the headline as subject and first line, then the
//! figures and the commands to inspect or undo; headers that mark them as automatic.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use chrono::{DateTime, Utc};

use super::event::{Event, Kind};

/// One mail: its recipients (given to sendmail as arguments) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
}

/// The mail to the administrators.
#[must_use]
pub fn for_admin(e: &Event, to: &[String]) -> Mail {
    let mut b = format!("{}.\n\n", e.headline());
    let mut row = |name: &str, value: &str| {
        let _ = writeln!(b, "{:<16}{value}", format!("{name}:"));
    };
    if e.event == Kind::Refusal && e.user != e.sender {
        row("Sender", &e.sender);
    }
    if let Some(scope) = e.scope {
        row(
            "Scope",
            &if scope == "domain" {
                format!("domain {}", e.user.trim_start_matches('@'))
            } else {
                scope.into()
            },
        );
    }
    if let (Some(w), Some(limit)) = (&e.window, e.limit) {
        let unit = if e.unit.is_some() { " messages" } else { "" };
        row("Limit", &format!("{limit}{unit} per {w}"));
    }
    if let Some(count) = e.count {
        let what =
            if e.event == Kind::Suspect { "distinct client addresses today" } else { "before this message" };
        row("Count", &format!("{count} {what}"));
    }
    if let Some(reason) = &e.reason {
        row("Reason", reason);
    }
    if let Some(sites) = &e.sites {
        row("Websites", &if sites.is_empty() { "none in ISPConfig".to_owned() } else { sites.join(", ") });
    }
    if let Some(ip) = &e.ip {
        row("Client address", ip);
    }
    row("Server", &e.server);
    row("Time", &date(e.ts));
    b.push('\n');
    // `status local:web12` (the counter's `@server` is implied).
    let user =
        e.sender.rsplit_once('@').filter(|_| e.event == Kind::Hold).map_or(e.sender.as_str(), |(u, _)| u);
    match e.event {
        Kind::Refusal => b.push_str(
            "Messages over a limit are deferred (4xx): the sending side keeps them and retries; nothing\n\
             is lost. This is the first refusal by this limit in its window; later ones are logged, not mailed.\n",
        ),
        Kind::Hold => b.push_str(
            "This mail was submitted on the server itself (sendmail: PHP mail(), a script, cron). Messages\n\
             over the limit are put on hold in Postfix's hold queue: nothing is delivered and nothing is\n\
             lost. This is the first one in this window; later ones are held too, without another mail.\n\
             A sudden burst usually means a hacked website (a contact form, an uploaded PHP mailer): look\n\
             at the site's files and logs first; release the mail if it is legitimate.\n",
        ),
        Kind::Suspect => b.push_str(
            "So many client addresses in one day usually means the password is known to a botnet.\n\
             Check the account, change its password, and lock it if it is sending spam.\n",
        ),
        Kind::Lock => b.push_str(
            "Every message of this sender is deferred (4xx) on every server sharing the Redis until it is\n\
             unlocked. Change the account's password before unlocking it.\n",
        ),
        Kind::Unlock => b.push_str("The sender can send again; today's client addresses were forgotten.\n"),
    }
    let _ = write!(
        b,
        "\nInspect:  email-ratelimit status {user}\n          email-ratelimit violations --limit 20\n"
    );
    match e.event {
        Kind::Refusal if e.scope == Some("mailbox") => {
            let _ = writeln!(b, "Allow more for a while:  email-ratelimit raise {user} CAP... --for 24h");
        }
        Kind::Suspect => {
            let _ = writeln!(b, "Lock:     email-ratelimit lock {user} --reason \"stolen password\"");
        }
        Kind::Lock => {
            let _ = writeln!(b, "Undo:     email-ratelimit unlock {user}");
        }
        Kind::Hold => {
            let _ = writeln!(
                b,
                "Held:     postqueue -j (queue_name \"hold\")\nRelease:  email-ratelimit release {user}"
            );
        }
        Kind::Refusal | Kind::Unlock => {}
    }
    Mail { to: to.to_vec(), subject: e.headline(), body: b }
}

/// The mail to the sender itself, about its own mailbox caps and its locks; none for a sender
/// whose name is not a plain address (a SASL username with a `,` would add recipients).
#[must_use]
pub fn for_sender(e: &Event) -> Option<Mail> {
    if !e.tells_sender || !crate::sender::is_plain_address(&e.sender) {
        return None;
    }
    let user = &e.sender;
    let (subject, text) = match e.event {
        Kind::Refusal => (
            format!("Your account {user} reached its {}", e.cap_words()),
            format!(
                "Your account {user} reached its {} messages.\n\n\
                 Further messages are deferred and retried later by your mail server or program; they\n\
                 are sent once the limit allows.\n",
                e.cap_words()
            ),
        ),
        Kind::Lock => (
            format!("Sending from {user} is suspended"),
            format!(
                "Sending from your account {user} is suspended ({}).\n\n\
                 Messages are deferred until your administrator lifts the suspension.\n",
                e.reason.as_deref().unwrap_or("contact your administrator")
            ),
        ),
        Kind::Suspect | Kind::Unlock | Kind::Hold => return None,
    };
    let body = format!(
        "{text}\nIf you did not send these messages, someone else knows your password: change it now\n\
         and tell your administrator.\n\nServer: {}\nTime:   {}\n",
        e.server,
        date(e.ts)
    );
    Some(Mail { to: vec![user.clone()], subject, body })
}

/// The paragraph the last mail of the day about `who` ends with (`[notify] max_per_day`).
#[must_use]
pub fn last_note(who: &str, max: u32) -> String {
    format!(
        "\nThis is mail {max} of {max} about {who} today ([notify] max_per_day): further ones are\n\
         suppressed until tomorrow. The webhook, the log and `email-ratelimit violations` still have\n\
         every event.\n"
    )
}

fn date(ts: i64) -> String {
    DateTime::<Utc>::from_timestamp(ts, 0).unwrap_or_default().to_rfc2822()
}

/// A header value: RFC 2047 encoded when it is not plain ASCII.
fn header_text(text: &str) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.is_ascii() {
        clean
    } else {
        format!("=?utf-8?b?{}?=", base64::engine::general_purpose::STANDARD.encode(clean))
    }
}

/// The whole message for `sendmail -i`: headers, an empty line, the body (`To:` only shows the
/// recipients; sendmail gets them as arguments).
#[must_use]
pub fn message(mail: &Mail, from: &str, ts: i64) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let host = from.rsplit_once('@').map_or("localhost", |(_, h)| h);
    let id = format!("<erl.{ts}.{}.{}@{host}>", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
    format!(
        "From: email-ratelimit <{from}>\nTo: {}\nSubject: {}\nDate: {}\nMessage-ID: {id}\n\
         Auto-Submitted: auto-generated\nX-Auto-Response-Suppress: All\nPrecedence: bulk\n\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n{}",
        mail.to.join(", "),
        header_text(&mail.subject),
        date(ts),
        mail.body
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::Scope;
    use crate::sender::normalize;
    use crate::window::Window;

    #[test]
    fn an_admin_mail_names_the_figures_and_the_commands() {
        let alice = normalize("alice@example.com").expect("valid");
        let e =
            Event::refusal(1_700_000_000, &alice, Scope::Mailbox, Window::HOUR, 20, 20, "203.0.113.7", "mx1");
        let mail = for_admin(&e, &["postmaster@example.com".into()]);
        assert_eq!(mail.subject, "alice@example.com reached its hourly limit of 20");
        assert!(
            mail.body.starts_with("alice@example.com reached its hourly limit of 20.\n"),
            "{}",
            mail.body
        );
        for part in
            ["20 per 1h", "203.0.113.7", "mx1", "email-ratelimit status alice@example.com", "raise alice"]
        {
            assert!(mail.body.contains(part), "{part} missing:\n{}", mail.body);
        }
        let text = message(&mail, "MAILER-DAEMON@mx1.example.net", e.ts);
        let (head, body) = text.split_once("\n\n").expect("headers end");
        for h in [
            "From: email-ratelimit <MAILER-DAEMON@mx1.example.net>",
            "To: postmaster@example.com",
            "Subject: alice@example.com reached its hourly limit of 20",
            "Date: Tue, 14 Nov 2023 22:13:20 +0000",
            "Auto-Submitted: auto-generated",
        ] {
            assert!(head.lines().any(|l| l == h), "{h} missing:\n{head}");
        }
        assert!(
            head.lines()
                .any(|l| l.starts_with("Message-ID: <erl.1700000000.") && l.ends_with("@mx1.example.net>"))
        );
        assert_eq!(body, mail.body);
        assert_ne!(message(&mail, "a@b.example", 1), message(&mail, "a@b.example", 1), "Message-IDs differ");
    }

    /// Issue 24: website mail over its cap is a hold, with the site, the count and how to release.
    #[test]
    fn a_hold_names_the_user_its_sites_and_the_release_command() {
        let web12 = crate::sender::Mailbox::local("web12", "mx1");
        let mut e = Event::refusal(0, &web12, Scope::Local, Window::HOUR, 100, 100, "127.0.0.1", "mx1");
        assert_eq!(e.event, Kind::Hold);
        assert_eq!(serde_json::to_value(&e).expect("json")["event"], "hold");
        e.sites = Some(vec!["shop.example.com".into(), "www.example.com".into()]);
        let m = for_admin(&e, &["postmaster@mx1.example".to_owned()]);
        assert_eq!(m.subject, "website mail of local:web12@mx1 held: its hourly limit of 100 reached");
        for line in [
            "Scope:          local",
            "Limit:          100 per 1h",
            "Count:          100 before this message",
            "Websites:       shop.example.com, www.example.com",
            "Release:  email-ratelimit release local:web12",
            "Inspect:  email-ratelimit status local:web12",
        ] {
            assert!(m.body.contains(line), "{line:?} in:\n{}", m.body);
        }
        assert!(for_sender(&e).is_none(), "a local user has no address to tell");
    }

    #[test]
    fn the_sender_hears_of_its_own_caps_and_locks_only() {
        let bob = normalize("bob@example.com").expect("valid");
        let own = Event::refusal(0, &bob, Scope::Mailbox, Window::Day, 50, 50, "192.0.2.1", "mx1");
        let mail = for_sender(&own).expect("told");
        assert_eq!(mail.to, vec!["bob@example.com".to_owned()]);
        assert!(mail.body.contains("daily limit of 50 messages"));
        let domain = Event::refusal(0, &bob, Scope::Domain, Window::Day, 500, 500, "192.0.2.1", "mx1");
        assert_eq!(for_sender(&domain), None);
        assert_eq!(for_sender(&Event::suspect(0, &bob, 4, 3, "192.0.2.1", "mx1")), None);
        let lock =
            for_sender(&Event::lock(0, &bob, "auto", "4 client addresses today", None, "mx1")).expect("told");
        assert!(lock.body.contains("suspended (4 client addresses today)"), "{}", lock.body);
    }

    #[test]
    fn headers_cannot_be_injected_and_utf8_is_encoded() {
        assert_eq!(header_text("a\nBcc: x@y"), "a Bcc: x@y");
        assert_eq!(
            header_text("müller@example.com reached"),
            "=?utf-8?b?bcO8bGxlckBleGFtcGxlLmNvbSByZWFjaGVk?="
        );
    }
}

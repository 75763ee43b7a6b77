//! What is notified: one event, its JSON (contract: the webhook body) and the words a mail uses.

use serde::Serialize;

use crate::caps::Scope;
use crate::sender::Mailbox;
use crate::window::Window;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Refusal,
    /// Website mail over a `[limits.local]` cap was put on hold (scope `local`).
    Hold,
    Suspect,
    Lock,
    Unlock,
}

/// One notification. Serializes to the contract's webhook JSON; fields that do not apply are
/// omitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// `<server_name>-<unix ms>-<8 hex>`: the same on every retry of its webhook POST, so a
    /// receiver can drop duplicates.
    pub id: String,
    pub event: Kind,
    /// Unix seconds.
    pub ts: i64,
    /// The sender, `@<domain>` or `global`: whose cap or account it is.
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// `msg` for a message cap (`"40msg/1h"`); absent for a recipient cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    pub server: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A hold: the ISPConfig websites that run as the local user (with `[database]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sites: Option<Vec<String>>,
    /// The sender whose message caused it (for a domain or server cap: the first one refused).
    #[serde(skip)]
    pub sender: String,
    /// Whether the sender itself is told (`[notify] sender`): its own mailbox caps and locks.
    #[serde(skip)]
    pub tells_sender: bool,
}

impl Event {
    fn new(event: Kind, ts: i64, sender: &Mailbox, server: &str) -> Self {
        let ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Self {
            id: format!("{server}-{ms}-{:08x}", fastrand::u32(..)),
            event,
            ts,
            user: sender.to_string(),
            scope: None,
            window: None,
            unit: None,
            limit: None,
            count: None,
            ip: None,
            server: server.to_owned(),
            reason: None,
            sites: None,
            sender: sender.to_string(),
            tells_sender: false,
        }
    }

    /// The first refusal by a cap in its window; `count` is the counter before the message.
    #[must_use]
    #[allow(clippy::too_many_arguments)]
    pub fn refusal(
        ts: i64,
        sender: &Mailbox,
        scope: Scope,
        window: Window,
        limit: u64,
        count: u64,
        ip: &str,
        server: &str,
    ) -> Self {
        let user = match scope {
            Scope::Mailbox | Scope::Local => sender.to_string(),
            Scope::Domain => format!("@{}", sender.domain().unwrap_or_default()),
            Scope::Server => "global".into(),
        };
        Self {
            user,
            scope: Some(scope.name()),
            window: Some(window.to_string()),
            limit: Some(limit),
            count: Some(count),
            ip: Some(ip.to_owned()),
            tells_sender: scope == Scope::Mailbox,
            ..Self::new(if scope == Scope::Local { Kind::Hold } else { Kind::Refusal }, ts, sender, server)
        }
    }

    /// The refusing cap counts `unit` (a message cap says so; a recipient cap's event is as in
    /// v2).
    #[must_use]
    pub fn with_unit(mut self, unit: crate::window::Unit) -> Self {
        self.unit = (unit == crate::window::Unit::Msg).then_some("msg");
        self
    }

    /// The sender was seen today from `ips` client addresses, more than `max`.
    #[must_use]
    pub fn suspect(ts: i64, sender: &Mailbox, ips: u64, max: u32, ip: &str, server: &str) -> Self {
        Self {
            scope: Some("mailbox"),
            window: Some(Window::Day.to_string()),
            limit: Some(u64::from(max)),
            count: Some(ips),
            ip: Some(ip.to_owned()),
            reason: Some(format!("{ips} client addresses today")),
            ..Self::new(Kind::Suspect, ts, sender, server)
        }
    }

    /// The sender was locked (`by` = `auto` or `admin`).
    #[must_use]
    pub fn lock(ts: i64, sender: &Mailbox, by: &str, reason: &str, ip: Option<&str>, server: &str) -> Self {
        // The webhook has no `by`: an administrator's lock says so in its reason.
        let reason = match (by, reason) {
            ("admin", "") => "admin".to_owned(),
            ("admin", r) => format!("admin: {r}"),
            (_, r) => r.to_owned(),
        };
        Self {
            scope: Some("mailbox"),
            ip: ip.map(str::to_owned),
            reason: Some(reason),
            tells_sender: true,
            ..Self::new(Kind::Lock, ts, sender, server)
        }
    }

    /// An administrator lifted the sender's lock.
    #[must_use]
    pub fn unlock(ts: i64, sender: &Mailbox, server: &str) -> Self {
        Self { scope: Some("mailbox"), ..Self::new(Kind::Unlock, ts, sender, server) }
    }

    /// The cap as words: `hourly limit of 20`, `limit of 10 messages per 15 minutes`.
    #[must_use]
    pub fn cap_words(&self) -> String {
        let limit = self.limit.unwrap_or_default();
        match self.window.as_deref().and_then(|w| Window::parse(w).ok()) {
            Some(w) => match w.adjective() {
                Some(adj) => format!("{adj} limit of {limit}"),
                None => format!("limit of {limit} messages {}", w.per()),
            },
            None => format!("limit of {limit}"),
        }
    }

    /// What happened, in one line: the mail's subject and first line.
    #[must_use]
    pub fn headline(&self) -> String {
        let reason = self.reason.as_deref().unwrap_or_default();
        match self.event {
            Kind::Refusal => {
                let whose = match self.scope {
                    Some("domain") => format!("domain {}", self.user.trim_start_matches('@')),
                    Some("server") => format!("server {}", self.server),
                    _ => self.user.clone(),
                };
                format!("{whose} reached its {}", self.cap_words())
            }
            Kind::Hold => format!("website mail of {} held: its {} reached", self.user, self.cap_words()),
            Kind::Suspect => format!("{} is a suspect: {reason}", self.user),
            Kind::Lock => format!("{} locked: {reason}", self.user),
            Kind::Unlock => format!("{} unlocked", self.user),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sender::normalize;

    #[test]
    fn json_has_the_contract_fields_and_omits_the_rest() {
        let alice = normalize("alice@example.com").expect("valid");
        let e = Event::refusal(
            1_700_000_000,
            &alice,
            Scope::Domain,
            Window::HOUR,
            500,
            500,
            "203.0.113.7",
            "mx1",
        );
        let mut v: serde_json::Value = serde_json::to_value(&e).expect("json");
        let id = v.as_object_mut().and_then(|o| o.remove("id")).expect("an id");
        let parts: Vec<&str> = id.as_str().expect("text").splitn(3, '-').collect();
        assert_eq!(parts[0], "mx1", "{id}");
        assert!(parts[1].parse::<u64>().is_ok_and(|ms| ms > 1_700_000_000_000), "{id}");
        assert!(parts[2].len() == 8 && parts[2].chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        assert_ne!(Event::unlock(5, &alice, "mx1").id, Event::unlock(5, &alice, "mx1").id, "ids differ");
        assert_eq!(
            v,
            serde_json::json!({"event": "refusal", "ts": 1_700_000_000, "user": "@example.com",
                "scope": "domain", "window": "1h", "limit": 500, "count": 500, "ip": "203.0.113.7",
                "server": "mx1"})
        );
        let mut u: serde_json::Value = serde_json::to_value(Event::unlock(5, &alice, "mx1")).expect("json");
        u.as_object_mut().map(|o| o.remove("id"));
        assert_eq!(
            u,
            serde_json::json!({"event": "unlock", "ts": 5, "user": "alice@example.com", "scope": "mailbox", "server": "mx1"})
        );
    }

    #[test]
    fn headlines_say_what_happened() {
        let alice = normalize("alice@example.com").expect("valid");
        let at = |scope, w: &str, limit| {
            Event::refusal(
                0,
                &alice,
                scope,
                Window::parse(w).expect("window"),
                limit,
                limit,
                "192.0.2.1",
                "mx1",
            )
            .headline()
        };
        assert_eq!(at(Scope::Mailbox, "1h", 20), "alice@example.com reached its hourly limit of 20");
        assert_eq!(
            at(Scope::Mailbox, "15m", 10),
            "alice@example.com reached its limit of 10 messages per 15 minutes"
        );
        assert_eq!(at(Scope::Domain, "1d", 2000), "domain example.com reached its daily limit of 2000");
        assert_eq!(at(Scope::Server, "1h", 300), "server mx1 reached its hourly limit of 300");
        assert_eq!(
            Event::suspect(0, &alice, 41, 30, "192.0.2.1", "mx1").headline(),
            "alice@example.com is a suspect: 41 client addresses today"
        );
        assert_eq!(
            Event::lock(0, &alice, "auto", "41 client addresses today", None, "mx1").headline(),
            "alice@example.com locked: 41 client addresses today"
        );
        assert_eq!(
            Event::lock(0, &alice, "admin", "phishing", None, "mx1").headline(),
            "alice@example.com locked: admin: phishing"
        );
        assert_eq!(
            Event::lock(0, &alice, "admin", "", None, "mx1").headline(),
            "alice@example.com locked: admin"
        );
        assert_eq!(Event::unlock(0, &alice, "mx1").headline(), "alice@example.com unlocked");
    }
}

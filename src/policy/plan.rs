//! Which counters a message moves and which caps it must fit under, from the current limits:
//! the sender's, its domain's and the server's daily counters always, and each shorter window
//! some cap of that scope uses (of messages too, for message caps); the enforced caps in the
//! contract's order (mailbox, domain, server; longer windows first, recipients before messages).
//! An exempt sender moves only its own daily counter. A local user (website mail) moves and
//! meets only its own counters and caps (`[limits.local]`), never the SMTP ones.

use crate::caps::{Check, Counter, Scope};
use crate::limits::{Cap, Limits};
use crate::sender::Mailbox;
use crate::window::{Rate, Unit, Window};

/// One message's counters and caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    pub counters: Vec<Counter>,
    /// The enforced caps, in order; each names one of `counters`.
    pub caps: Vec<Check>,
    /// A cap of this sender is not enforced because the database has not been read yet.
    pub unknown: bool,
    /// Exempt: never deferred, counted only on its own counter.
    pub exempt: bool,
    /// The mailbox's daily cap as applied (for the log line); `None` when exempt or uncapped.
    pub mailbox_daily: Option<Cap>,
    /// `max_rcpt_per_message` as it applies to this sender (0: off).
    pub per_message: u32,
}

impl Plan {
    /// `raise`: the sender's temporary raise, which replaces its mailbox caps while it lasts.
    /// `learned`: its learned daily cap, which scales caps that come from a default.
    pub fn new(limits: &Limits, sender: &Mailbox, raise: Option<&[Rate]>, learned: Option<u64>) -> Self {
        if let Some(name) = sender.local_name() {
            return Self::local(limits, name, raise);
        }
        let mailbox = crate::limits::effective(limits, sender, raise, learned).caps;
        let mailbox_daily = if mailbox.exempt { None } else { daily(&mailbox.caps) };
        let mut plan = Self {
            counters: Vec::with_capacity(4),
            caps: Vec::with_capacity(4),
            unknown: false,
            exempt: mailbox.exempt,
            mailbox_daily,
            per_message: mailbox.per_message,
        };
        plan.counter(Scope::Mailbox, Window::Day, Unit::Rcpt);
        if mailbox.exempt {
            return plan;
        }
        let domain = sender.domain();
        if domain.is_some() {
            plan.counter(Scope::Domain, Window::Day, Unit::Rcpt);
        }
        plan.counter(Scope::Server, Window::Day, Unit::Rcpt);
        for (window, unit, cap) in mailbox.caps {
            let i = plan.counter(Scope::Mailbox, window, unit);
            plan.cap(i, cap);
        }
        for &(window, unit, cap) in domain.map_or(&[][..], |d| limits.domain_caps(d)) {
            let i = plan.counter(Scope::Domain, window, unit);
            plan.cap(i, cap);
        }
        for &(window, unit, cap) in limits.server_caps() {
            let i = plan.counter(Scope::Server, window, unit);
            plan.cap(i, cap);
        }
        plan
    }

    /// A local user's: its daily counter always, and its own caps (a raise's while it lasts).
    fn local(limits: &Limits, name: &str, raise: Option<&[Rate]>) -> Self {
        let mut local = limits.local_caps(name);
        if let Some(raise) = raise.filter(|_| !local.exempt) {
            crate::limits::raised(&mut local.caps, raise);
        }
        let mut plan = Self {
            counters: Vec::with_capacity(2),
            caps: Vec::with_capacity(2),
            unknown: false,
            exempt: local.exempt,
            mailbox_daily: daily(&local.caps),
            per_message: 0,
        };
        plan.counter(Scope::Local, Window::Day, Unit::Rcpt);
        for (window, unit, cap) in local.caps {
            let i = plan.counter(Scope::Local, window, unit);
            plan.cap(i, cap);
        }
        plan
    }

    /// The index of the counter, added when new.
    fn counter(&mut self, scope: Scope, window: Window, unit: Unit) -> usize {
        let wanted = Counter { scope, window, unit };
        self.counters.iter().position(|c| *c == wanted).unwrap_or_else(|| {
            self.counters.push(wanted);
            self.counters.len() - 1
        })
    }

    fn cap(&mut self, counter: usize, cap: Cap) {
        match cap {
            Cap::Enforced(limit) => self.caps.push(Check { counter, limit }),
            Cap::Unknown => self.unknown = true,
        }
    }

    /// The recipient counter's value in `values` (one per counter), 0 when it is not moved.
    pub fn value(&self, values: &[u64], scope: Scope, window: Window) -> u64 {
        self.counters
            .iter()
            .position(|c| *c == Counter::rcpt(scope, window))
            .and_then(|i| values.get(i).copied())
            .unwrap_or(0)
    }
}

/// The daily recipient cap among `caps` (for the log line).
fn daily(caps: &[crate::limits::Listed]) -> Option<Cap> {
    caps.iter().find(|(w, u, _)| *w == Window::Day && *u == Unit::Rcpt).map(|(_, _, c)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LimitSettings;
    use crate::limits::Origin;
    use crate::sender::normalize;

    fn settings() -> LimitSettings {
        LimitSettings {
            mailboxes: vec![crate::config::MailboxEntry::daily(
                normalize("a@x.org").expect("valid"),
                Some(5),
            )],
            ..LimitSettings::default()
        }
    }

    #[test]
    fn daily_counters_always_and_caps_in_order() {
        let limits = Limits::from_config(&settings());
        let plan = Plan::new(&limits, &normalize("a@x.org").expect("valid"), None, None);
        let day = |scope| Counter::rcpt(scope, Window::Day);
        assert_eq!(plan.counters, vec![day(Scope::Mailbox), day(Scope::Domain), day(Scope::Server)]);
        assert_eq!(plan.caps, vec![Check { counter: 0, limit: 5 }, Check { counter: 2, limit: 999 }]);
        assert!(!plan.unknown);
        assert_eq!(plan.value(&[1, 2, 3], Scope::Server, Window::Day), 3);
        assert_eq!(plan.value(&[1, 2, 3], Scope::Server, Window::HOUR), 0);
        // No domain in the name: no domain counter; an uncapped sender meets the server cap only.
        let plan = Plan::new(&limits, &normalize("bob").expect("valid"), None, None);
        assert_eq!(plan.counters, vec![day(Scope::Mailbox), day(Scope::Server)]);
        assert_eq!(plan.caps, vec![Check { counter: 1, limit: 999 }]);
    }

    #[test]
    fn windows_and_scopes_in_the_contracts_order() {
        let config = crate::config::from_toml(
            "[limits]\nglobal_rates = [\"100/15m\"]\n[[limits.mailbox]]\nemail = \"a@x.org\"\nrates = [\"5/1h\"]\ndaily = 50\n\
             [[limits.mailbox]]\nemail = \"vip@x.org\"\nexempt = true\n\
             [[limits.domain]]\ndomain = \"x.org\"\nrates = [\"20/1h\"]\n",
        )
        .expect("valid");
        let limits = Limits::from_config(&config.limits);
        let plan = Plan::new(&limits, &normalize("a@x.org").expect("valid"), None, None);
        let c = |scope, w: &str| Counter::rcpt(scope, Window::parse(w).expect("window"));
        assert_eq!(
            plan.counters,
            vec![
                c(Scope::Mailbox, "1d"),
                c(Scope::Domain, "1d"),
                c(Scope::Server, "1d"),
                c(Scope::Mailbox, "1h"),
                c(Scope::Domain, "1h"),
                c(Scope::Server, "15m")
            ]
        );
        let caps: Vec<(Counter, u64)> =
            plan.caps.iter().map(|k| (plan.counters[k.counter], k.limit)).collect();
        assert_eq!(
            caps,
            vec![
                (c(Scope::Mailbox, "1d"), 50),
                (c(Scope::Mailbox, "1h"), 5),
                (c(Scope::Domain, "1h"), 20),
                (c(Scope::Server, "1d"), 999),
                (c(Scope::Server, "15m"), 100),
            ]
        );
        let raised = [Rate::rcpt(500, Window::Day), Rate::rcpt(100, Window::HOUR)];
        let plan = Plan::new(&limits, &normalize("a@x.org").expect("valid"), Some(&raised), None);
        let mailbox: Vec<(Counter, u64)> = plan
            .caps
            .iter()
            .map(|k| (plan.counters[k.counter], k.limit))
            .filter(|(c, _)| c.scope == Scope::Mailbox)
            .collect();
        assert_eq!(
            mailbox,
            vec![(c(Scope::Mailbox, "1d"), 500), (c(Scope::Mailbox, "1h"), 100)],
            "the raise replaces them"
        );
        let vip = Plan::new(&limits, &normalize("vip@x.org").expect("valid"), None, None);
        assert!(vip.exempt && vip.caps.is_empty());
        assert_eq!(vip.counters, vec![c(Scope::Mailbox, "1d")], "only its own counter");
    }

    /// Issue 22 item 2: a message cap moves a message counter of its own, checked after the
    /// recipient cap of the same window.
    #[test]
    fn message_caps_move_message_counters() {
        let config = crate::config::from_toml(
            "[limits]\nglobal_rates = [\"500msg/1h\"]\nmax_rcpt_per_message = 50\n\
             [[limits.mailbox]]\nemail = \"a@x.org\"\ndaily = 50\nrates = [\"40msg/1h\", \"20/1h\"]\n",
        )
        .expect("valid");
        let limits = Limits::from_config(&config.limits);
        let plan = Plan::new(&limits, &normalize("a@x.org").expect("valid"), None, None);
        let msg =
            |scope, w: &str| Counter { scope, window: Window::parse(w).expect("window"), unit: Unit::Msg };
        let caps: Vec<(Counter, u64)> =
            plan.caps.iter().map(|k| (plan.counters[k.counter], k.limit)).collect();
        assert_eq!(
            caps,
            vec![
                (Counter::rcpt(Scope::Mailbox, Window::Day), 50),
                (Counter::rcpt(Scope::Mailbox, Window::HOUR), 20),
                (msg(Scope::Mailbox, "1h"), 40),
                (Counter::rcpt(Scope::Server, Window::Day), 999),
                (msg(Scope::Server, "1h"), 500),
            ]
        );
        assert_eq!(plan.per_message, 50);
        let raised = [Rate::parse("100msg/1h", 1000).expect("rate"), Rate::rcpt(500, Window::Day)];
        let plan = Plan::new(&limits, &normalize("a@x.org").expect("valid"), Some(&raised), None);
        assert_eq!(plan.caps[1].limit, 100, "a raise of a message cap");
        assert_eq!(plan.counters[plan.caps[1].counter], msg(Scope::Mailbox, "1h"));
    }

    /// Issue 24: a local user meets its own caps only, never the server's or a domain's.
    #[test]
    fn a_local_user_moves_only_its_own_counters() {
        let config = crate::config::from_toml(
            "[limits]\nglobal = 5\nglobal_rates = [\"2/1h\"]\n[limits.local]\ndaily = 100\nrates = [\"10msg/1h\"]\n",
        )
        .expect("valid");
        let limits = Limits::from_config(&config.limits);
        let plan = Plan::new(&limits, &Mailbox::local("web12", "mx1"), None, None);
        let msg = Counter { scope: Scope::Local, window: Window::HOUR, unit: Unit::Msg };
        assert_eq!(plan.counters, vec![Counter::rcpt(Scope::Local, Window::Day), msg]);
        assert_eq!(plan.caps, vec![Check { counter: 0, limit: 100 }, Check { counter: 1, limit: 10 }]);
        let root = Plan::new(&limits, &Mailbox::local("root", "mx1"), None, None);
        assert!(root.exempt && root.caps.is_empty());
        assert_eq!(root.counters, vec![Counter::rcpt(Scope::Local, Window::Day)]);
    }

    #[test]
    fn unknown_caps_are_counted_not_checked() {
        let limits = Limits::merged(&settings(), None, Origin::Unknown, crate::config::Layout::ErTables);
        let plan = Plan::new(&limits, &normalize("z@x.org").expect("valid"), None, None);
        assert!(plan.caps.is_empty() && plan.unknown);
        assert_eq!(plan.counters.len(), 3);
    }
}

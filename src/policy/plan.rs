//! Which counters a message moves and which caps it must fit under, from the current limits:
//! the sender's, its domain's and the server's daily counters always; the enforced caps in the
//! contract's order (mailbox, domain, server).

use crate::limits::window::Window;
use crate::limits::{Cap, Limits};
use crate::sender::Mailbox;
use crate::store::{Check, Counter, Scope};

/// One message's counters and caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    pub counters: Vec<Counter>,
    /// The enforced caps, in order; each names one of `counters`.
    pub caps: Vec<Check>,
    /// A cap of this sender is not enforced because the database has not been read yet.
    pub unknown: bool,
}

impl Plan {
    pub fn new(limits: &Limits, sender: &Mailbox) -> Self {
        let mut plan = Self { counters: Vec::with_capacity(3), caps: Vec::with_capacity(2), unknown: false };
        let mailbox = plan.counter(Scope::Mailbox, Window::Day);
        if sender.domain().is_some() {
            plan.counter(Scope::Domain, Window::Day);
        }
        let server = plan.counter(Scope::Server, Window::Day);
        if let Some(cap) = limits.mailbox_cap(sender) {
            plan.cap(mailbox, cap);
        }
        plan.cap(server, limits.global);
        plan
    }

    /// The index of the counter, added when new.
    fn counter(&mut self, scope: Scope, window: Window) -> usize {
        let wanted = Counter { scope, window };
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

    /// The counter's value in `values` (one per counter), 0 when it is not moved.
    pub fn value(&self, values: &[u64], scope: Scope, window: Window) -> u64 {
        self.counters
            .iter()
            .position(|c| *c == Counter { scope, window })
            .and_then(|i| values.get(i).copied())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LimitSettings;
    use crate::limits::Origin;
    use crate::sender::normalize;

    fn settings() -> LimitSettings {
        LimitSettings {
            global: 999,
            default_mailbox: 50,
            max_recipients: 10_000,
            mailboxes: vec![(normalize("a@x.org").expect("valid"), Some(5))],
        }
    }

    #[test]
    fn daily_counters_always_and_caps_in_order() {
        let limits = Limits::from_config(&settings());
        let plan = Plan::new(&limits, &normalize("a@x.org").expect("valid"));
        let day = |scope| Counter { scope, window: Window::Day };
        assert_eq!(plan.counters, vec![day(Scope::Mailbox), day(Scope::Domain), day(Scope::Server)]);
        assert_eq!(plan.caps, vec![Check { counter: 0, limit: 5 }, Check { counter: 2, limit: 999 }]);
        assert!(!plan.unknown);
        assert_eq!(plan.value(&[1, 2, 3], Scope::Server, Window::Day), 3);
        assert_eq!(plan.value(&[1, 2, 3], Scope::Server, Window::HOUR), 0);
        // No domain in the name: no domain counter; an uncapped sender meets the server cap only.
        let plan = Plan::new(&limits, &normalize("bob").expect("valid"));
        assert_eq!(plan.counters, vec![day(Scope::Mailbox), day(Scope::Server)]);
        assert_eq!(plan.caps, vec![Check { counter: 1, limit: 999 }]);
    }

    #[test]
    fn unknown_caps_are_counted_not_checked() {
        let limits = Limits::merged(&settings(), None, Origin::Unknown);
        let plan = Plan::new(&limits, &normalize("z@x.org").expect("valid"));
        assert!(plan.caps.is_empty() && plan.unknown);
        assert_eq!(plan.counters.len(), 3);
    }
}

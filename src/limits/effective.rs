//! Which caps a mailbox is held to now, in one place: its own, its domain's or a default (the
//! config file, the database, `"*"`), replaced by its temporary raise while one lasts, or scaled
//! by its learned allowance when they come from a default. The policy's plan asks this for every
//! message, and `status` and `trial` ask it too, so the admin's tools show what the daemon
//! applies.

use crate::sender::Mailbox;
use crate::window::{Rate, Unit, Window};

use super::{Cap, Limits, Listed, MailboxCaps, sort_caps};

/// What the caps in force rest on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The limits as configured (see [`MailboxCaps::source`]).
    Limits,
    /// A temporary raise, which replaces the mailbox's own caps.
    Raise,
    /// The mailbox's learned daily allowance, which scales caps that come from a default.
    Learned(u64),
}

/// A mailbox's caps in force, and what they rest on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub caps: MailboxCaps,
    pub basis: Basis,
}

/// The caps `sender` is held to under `limits`, with its raise (`raise`, parsed with
/// [`Rate::parse_list`]) or else its learned daily allowance (`learned`).
#[must_use]
pub fn effective(
    limits: &Limits,
    sender: &Mailbox,
    raise: Option<&[Rate]>,
    learned: Option<u64>,
) -> Effective {
    let mut caps = limits.mailbox_caps(sender);
    if let Some(raise) = raise {
        raised(&mut caps.caps, raise);
        return Effective { caps, basis: Basis::Raise };
    }
    if let Some(learned) = learned.filter(|_| caps.from_default) {
        scale(&mut caps.caps, learned);
        return Effective { caps, basis: Basis::Learned(learned) };
    }
    Effective { caps, basis: Basis::Limits }
}

/// A raise replaces a sender's own caps while it lasts.
pub fn raised(caps: &mut Vec<Listed>, raise: &[Rate]) {
    *caps = raise.iter().map(|r| (r.window, r.unit, Cap::Enforced(r.limit))).collect();
    sort_caps(caps);
}

/// The mailbox's default caps raised by a learned daily cap of `learned` recipients: the daily
/// recipient cap becomes `learned`, every other cap (shorter windows, message caps) grows by the
/// same ratio, rounded up. Unknown caps stay unknown.
pub fn scale(caps: &mut [Listed], learned: u64) {
    let Some(default) = caps.iter().find_map(|&(w, u, c)| match (w, u, c) {
        (Window::Day, Unit::Rcpt, Cap::Enforced(n)) => Some(n),
        _ => None,
    }) else {
        return;
    };
    if learned <= default || default == 0 {
        return;
    }
    for (w, u, cap) in caps.iter_mut() {
        if let Cap::Enforced(n) = cap {
            *n = if (*w, *u) == (Window::Day, Unit::Rcpt) {
                learned
            } else {
                // n x learned / default, rounded up, without overflow.
                u64::try_from((u128::from(*n) * u128::from(learned)).div_ceil(u128::from(default)))
                    .unwrap_or(u64::MAX)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_toml;
    use crate::sender::normalize;

    fn limits(text: &str) -> Limits {
        let config = from_toml(text).expect("valid");
        Limits::from_config(&config.limits)
    }

    #[test]
    fn a_raise_replaces_a_learned_allowance_scales_a_default() {
        let l = limits(
            "[limits]\ndefault_mailbox = 50\n[[limits.mailbox]]\nemail = \"own@example.com\"\ndaily = 20\n\
             [[limits.mailbox]]\nemail = \"other@example.com\"\n",
        );
        let own = normalize("own@example.com").expect("valid");
        let other = normalize("other@example.com").expect("valid");
        let day = |n| (Window::Day, Unit::Rcpt, Cap::Enforced(n));
        assert_eq!(effective(&l, &own, None, None).caps.caps, vec![day(20)]);
        // Written by hand, two caps over one window: both apply (the stricter binds).
        let hand = Rate::parse_list("500/1d 600/1d", 1000).expect("the raise grammar");
        let raised = effective(&l, &own, Some(&hand), Some(900));
        assert_eq!((raised.caps.caps, raised.basis), (vec![day(500), day(600)], Basis::Raise));
        // A learned allowance scales only caps that come from a default.
        assert_eq!(effective(&l, &own, None, Some(80)).basis, Basis::Limits);
        let learned = effective(&l, &other, None, Some(80));
        assert_eq!((learned.caps.caps, learned.basis), (vec![day(80)], Basis::Learned(80)));
    }

    #[test]
    fn scaling_keeps_ratios_and_rounds_up() {
        let mut caps = vec![
            (Window::Day, Unit::Rcpt, Cap::Enforced(50)),
            (Window::Day, Unit::Msg, Cap::Enforced(20)),
            (Window::HOUR, Unit::Rcpt, Cap::Enforced(20)),
            (Window::Minutes(15), Unit::Msg, Cap::Enforced(3)),
            (Window::HOUR, Unit::Msg, Cap::Unknown),
        ];
        scale(&mut caps, 125);
        let limits: Vec<Option<u64>> = caps.iter().map(|c| c.2.known()).collect();
        // x 2.5: 50 -> 125, 20 -> 50, 20 -> 50, 3 -> 7.5 -> 8; unknown stays unknown.
        assert_eq!(limits, [Some(125), Some(50), Some(50), Some(8), None]);
        // Below the default: nothing changes (learning never lowers a cap).
        let before = caps.clone();
        scale(&mut caps, 100);
        assert_eq!(caps, before);
        // No daily recipient cap to scale from: nothing changes.
        let mut hourly = vec![(Window::HOUR, Unit::Rcpt, Cap::Enforced(20))];
        scale(&mut hourly, 500);
        assert_eq!(hourly[0].2, Cap::Enforced(20));
    }
}

//! The allowances the policy reads: a compact map from mailbox to learned daily cap, replaced
//! whole when they are computed again (start, after local midnight, SIGHUP).

use chrono::NaiveDate;

use super::{History, LearnSettings, allowance};
use crate::limits::Limits;
use crate::limits::names::{NameTable, NameTableBuilder};
use crate::sender::{self, Mailbox};
use crate::window::{Unit, Window};

/// Learned daily caps of the mailboxes that earned more than their default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowances {
    names: NameTable<u64>,
}

impl Allowances {
    /// The allowances of `histories` on `today`, for the mailboxes whose caps come from a
    /// default in `limits` (their default daily recipient cap is the floor).
    #[must_use]
    pub fn compute<'a>(
        histories: impl IntoIterator<Item = (&'a str, &'a History)>,
        today: NaiveDate,
        limits: &Limits,
        settings: &LearnSettings,
    ) -> Self {
        let mut names = NameTableBuilder::with_capacity(0);
        for (name, history) in histories {
            let Ok(mailbox) = sender::normalize(name) else { continue };
            let Some(default) = default_daily(limits, &mailbox) else { continue };
            if let Some(learned) = allowance(history, today, default, settings) {
                names.push(mailbox.as_str(), learned.limit);
            }
        }
        Self { names: names.build() }
    }

    /// The mailbox's learned daily cap, if it earned one.
    #[must_use]
    pub fn get(&self, mailbox: &Mailbox) -> Option<u64> {
        self.names.get(mailbox.as_str())
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.names.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// The daily recipient cap a mailbox has from a default, if its caps come from one (not its
/// own, not a raise, not exempt, not unknown).
#[must_use]
pub fn default_daily(limits: &Limits, mailbox: &Mailbox) -> Option<u64> {
    let caps = limits.mailbox_caps(mailbox);
    if !caps.from_default || caps.exempt {
        return None;
    }
    caps.caps.iter().find_map(|&(w, u, c)| match (w, u) {
        (Window::Day, Unit::Rcpt) => c.known(),
        _ => None,
    })
}

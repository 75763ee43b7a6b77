//! The config file's `[[limits.mailbox]]` list as the daemon keeps it: a [`NameTable`] of the
//! addresses whose value points into a short list of distinct cap lists (100,000 mailboxes
//! usually share a handful), built once per config load and shared by every rebuild of the limit
//! set. 100,000 entries take about 4 MiB instead of the ~30 MiB of entries plus a hash map.

use std::collections::HashMap;
use std::sync::Arc;

use super::Cap;
use super::names::{NameTable, NameTableBuilder};
use crate::config::{LimitSettings, MailboxEntry};
use crate::sender::Mailbox;
use crate::window::{Rate, Unit, Window};

/// One cap of a list: what it counts over which window, and its number.
pub type Listed = (Window, Unit, Cap);

/// Caps in the order they are checked: longer windows first, recipients before messages.
pub(super) type Caps = Vec<Listed>;

/// Enforced, in checking order (the day before an hour before 15 minutes; of one window, the
/// recipient cap before the message cap).
pub(super) fn ordered(first: Option<Listed>, rates: &[Rate]) -> Caps {
    let mut caps: Caps = first.into_iter().collect();
    caps.extend(rates.iter().map(|r| (r.window, r.unit, Cap::Enforced(r.limit))));
    sort(&mut caps);
    caps
}

/// Sorts caps into checking order ([`Rate::order`]).
pub fn sort(caps: &mut [Listed]) {
    caps.sort_by_key(|&(w, u, _)| Rate::order(w, u));
}

/// The config file's limits as compiled once per load: the settings without their mailbox
/// list, which is in the shared table.
#[derive(Debug, Clone, Default)]
pub struct FileLimits {
    pub settings: LimitSettings,
    pub mailboxes: Arc<MailboxTable>,
    /// `[limits.local]`, compiled.
    pub local: Arc<super::local::LocalTable>,
}

impl From<LimitSettings> for FileLimits {
    fn from(mut settings: LimitSettings) -> Self {
        let entries = std::mem::take(&mut settings.mailboxes);
        let local = Arc::new(super::local::LocalTable::new(&settings.local));
        Self { settings, mailboxes: Arc::new(MailboxTable::new(entries)), local }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxTable {
    /// Per address: the index into `caps` times two, plus 1 when exempt.
    names: NameTable<u32>,
    /// The distinct settings: cap lists (`None`: the default mailbox caps) with their
    /// `max_rcpt_per_message` (`None`: the domain's or `[limits]`').
    caps: Vec<(Option<Caps>, Option<u32>)>,
}

/// A listed mailbox's own settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listing<'a> {
    /// Its own caps; `None`: the defaults.
    pub caps: Option<&'a [Listed]>,
    pub exempt: bool,
    /// Its own `max_rcpt_per_message`, if it sets one.
    pub per_message: Option<u32>,
}

impl MailboxTable {
    /// Takes the validated entries (one per address; a later duplicate would win).
    #[must_use]
    pub fn new(entries: Vec<MailboxEntry>) -> Self {
        let mut names = NameTableBuilder::with_capacity(entries.len());
        let mut caps: Vec<(Option<Caps>, Option<u32>)> = Vec::new();
        let mut seen: HashMap<(Option<Caps>, Option<u32>), u32> = HashMap::new();
        for entry in entries {
            let own = (entry.caps.as_deref().map(|c| ordered(None, c)), entry.max_rcpt_per_message);
            let id = *seen.entry(own.clone()).or_insert_with(|| {
                caps.push(own);
                u32::try_from(caps.len() - 1).unwrap_or(u32::MAX)
            });
            names.push(entry.mailbox.as_str(), id.saturating_mul(2) | u32::from(entry.exempt));
        }
        caps.shrink_to_fit();
        Self { names: names.build(), caps }
    }

    /// A listed mailbox's own settings.
    #[must_use]
    pub fn get(&self, mailbox: &Mailbox) -> Option<Listing<'_>> {
        let v = self.names.get(mailbox.as_str())?;
        let own = self.caps.get((v / 2) as usize);
        Some(Listing {
            caps: own.and_then(|o| o.0.as_deref()),
            exempt: v % 2 == 1,
            per_message: own.and_then(|o| o.1),
        })
    }

    /// Every listed address.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.names.iter().map(|(name, _)| name)
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.names.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Heap bytes held (for logs and benchmarks).
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.names.heap_bytes()
            + self.caps.iter().filter_map(|c| c.0.as_ref()).map(|c| c.capacity() * 24).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sender::normalize;
    fn mb(s: &str) -> Mailbox {
        normalize(s).expect("valid")
    }

    #[test]
    fn own_caps_defaults_and_exempt() {
        let hour = Rate::rcpt(5, Window::HOUR);
        let day = Rate::rcpt(50, Window::Day);
        let mut vip = MailboxEntry::daily(mb("vip@x.org"), None);
        vip.exempt = true;
        let t = MailboxTable::new(vec![
            MailboxEntry {
                mailbox: mb("a@x.org"),
                caps: Some(vec![hour, day]),
                exempt: false,
                max_rcpt_per_message: Some(10),
            },
            MailboxEntry::daily(mb("b@x.org"), None),
            vip,
            MailboxEntry {
                mailbox: mb("c@x.org"),
                caps: Some(vec![]),
                exempt: false,
                max_rcpt_per_message: None,
            },
        ]);
        let got = t.get(&mb("a@x.org")).expect("listed");
        let own =
            [(Window::Day, Unit::Rcpt, Cap::Enforced(50)), (Window::HOUR, Unit::Rcpt, Cap::Enforced(5))];
        assert_eq!(got, Listing { caps: Some(&own[..]), exempt: false, per_message: Some(10) });
        let plain = |exempt| Some(Listing { caps: None, exempt, per_message: None });
        assert_eq!(t.get(&mb("b@x.org")), plain(false));
        assert_eq!(t.get(&mb("vip@x.org")), plain(true));
        assert_eq!(
            t.get(&mb("c@x.org")),
            Some(Listing { caps: Some(&[][..]), exempt: false, per_message: None }),
            "an empty list of its own"
        );
        assert_eq!(t.get(&mb("d@x.org")), None);
        assert_eq!(t.names().collect::<Vec<_>>(), ["a@x.org", "b@x.org", "c@x.org", "vip@x.org"]);
    }

    #[test]
    fn shares_cap_lists_and_stays_compact() {
        let entries: Vec<MailboxEntry> = (0..100_000u64)
            .map(|i| MailboxEntry::daily(mb(&format!("user{i}@example.com")), Some(1 + i % 3)))
            .collect();
        let t = MailboxTable::new(entries);
        assert_eq!((t.len(), t.caps.len()), (100_000, 3));
        assert_eq!(
            t.get(&mb("user7@example.com")).and_then(|c| c.caps).map(<[_]>::to_vec),
            Some(vec![(Window::Day, Unit::Rcpt, Cap::Enforced(2))])
        );
        assert!(t.heap_bytes() < 5 * 1024 * 1024, "{} bytes", t.heap_bytes());
    }
}

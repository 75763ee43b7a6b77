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
use crate::window::Window;

/// One cap of a list.
pub type Listed = (Window, Cap);

/// Caps in the order they are checked: longer windows first.
pub(super) type Caps = Vec<Listed>;

/// Enforced, longer windows first (the day before an hour before 15 minutes).
pub(super) fn ordered(first: Option<(Window, Cap)>, rates: &[crate::window::Rate]) -> Caps {
    let mut caps: Caps = first.into_iter().collect();
    caps.extend(rates.iter().map(|r| (r.window, Cap::Enforced(r.limit))));
    caps.sort_by_key(|(w, _)| std::cmp::Reverse(w.minutes()));
    caps
}

/// The config file's limits as compiled once per load: the settings without their mailbox
/// list, which is in the shared table.
#[derive(Debug, Clone, Default)]
pub struct FileLimits {
    pub settings: LimitSettings,
    pub mailboxes: Arc<MailboxTable>,
}

impl From<LimitSettings> for FileLimits {
    fn from(mut settings: LimitSettings) -> Self {
        let entries = std::mem::take(&mut settings.mailboxes);
        Self { settings, mailboxes: Arc::new(MailboxTable::new(entries)) }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxTable {
    /// Per address: the index into `caps` times two, plus 1 when exempt.
    names: NameTable<u32>,
    /// The distinct cap lists (`None`: the default mailbox caps).
    caps: Vec<Option<Caps>>,
}

impl MailboxTable {
    /// Takes the validated entries (one per address; a later duplicate would win).
    #[must_use]
    pub fn new(entries: Vec<MailboxEntry>) -> Self {
        let mut names = NameTableBuilder::with_capacity(entries.len());
        let mut caps: Vec<Option<Caps>> = Vec::new();
        let mut seen: HashMap<Option<Caps>, u32> = HashMap::new();
        for entry in entries {
            let own = entry.caps.as_deref().map(|c| ordered(None, c));
            let id = *seen.entry(own.clone()).or_insert_with(|| {
                caps.push(own);
                u32::try_from(caps.len() - 1).unwrap_or(u32::MAX)
            });
            names.push(entry.mailbox.as_str(), id.saturating_mul(2) | u32::from(entry.exempt));
        }
        caps.shrink_to_fit();
        Self { names: names.build(), caps }
    }

    /// A listed mailbox's own caps (`None`: the defaults) and whether it is exempt.
    #[must_use]
    pub fn get(&self, mailbox: &Mailbox) -> Option<(Option<&[Listed]>, bool)> {
        let v = self.names.get(mailbox.as_str())?;
        let caps = self.caps.get((v / 2) as usize).and_then(Option::as_deref);
        Some((caps, v % 2 == 1))
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
        self.names.heap_bytes() + self.caps.iter().flatten().map(|c| c.capacity() * 24).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sender::normalize;
    use crate::window::Rate;

    fn mb(s: &str) -> Mailbox {
        normalize(s).expect("valid")
    }

    #[test]
    fn own_caps_defaults_and_exempt() {
        let hour = Rate { limit: 5, window: Window::HOUR };
        let day = Rate { limit: 50, window: Window::Day };
        let mut vip = MailboxEntry::daily(mb("vip@x.org"), None);
        vip.exempt = true;
        let t = MailboxTable::new(vec![
            MailboxEntry { mailbox: mb("a@x.org"), caps: Some(vec![hour, day]), exempt: false },
            MailboxEntry::daily(mb("b@x.org"), None),
            vip,
            MailboxEntry { mailbox: mb("c@x.org"), caps: Some(vec![]), exempt: false },
        ]);
        let got = t.get(&mb("a@x.org")).expect("listed");
        assert_eq!(
            got,
            (Some(&[(Window::Day, Cap::Enforced(50)), (Window::HOUR, Cap::Enforced(5))][..]), false)
        );
        assert_eq!(t.get(&mb("b@x.org")), Some((None, false)));
        assert_eq!(t.get(&mb("vip@x.org")), Some((None, true)));
        assert_eq!(t.get(&mb("c@x.org")), Some((Some(&[][..]), false)), "an empty list of its own");
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
            t.get(&mb("user7@example.com")).and_then(|c| c.0).map(<[_]>::to_vec),
            Some(vec![(Window::Day, Cap::Enforced(2))])
        );
        assert!(t.heap_bytes() < 5 * 1024 * 1024, "{} bytes", t.heap_bytes());
    }
}

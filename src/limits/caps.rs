//! The database's mailbox caps in a compact [`NameTable`]: one cap per address packed into 8
//! bytes (its window and its number), or, for the rare address with caps over several windows,
//! an index into a side list. 100,000 mailboxes take about 4 MiB.

use super::names::{NameTable, NameTableBuilder};
use crate::config::MAX_CAP;
use crate::sender::Mailbox;
use crate::window::{Rate, Window};

/// A mailbox's caps as stored: `None` means "the default per-mailbox caps" (resolved at lookup,
/// because the default itself may change independently); else at most one rate per window,
/// longest first.
pub type DbCap = Option<Vec<Rate>>;

/// The flag of a value that indexes the side list of several rates.
const LIST: u64 = 1 << 63;

/// The flag of a cap the mailbox inherits (erl-columns: its domain's or the server's default
/// policy), which a learned allowance may raise.
const INHERITED: u64 = 1 << 62;

/// `0` for the default, the window's minutes above the limit (at most [`MAX_CAP`]) for one
/// recipient rate (a message rate, which no database layout gives, goes to the side list).
fn pack_one(r: Rate) -> u64 {
    u64::from(r.window.minutes()) << 32 | r.limit.clamp(1, MAX_CAP)
}

fn unpack_one(v: u64) -> Option<Rate> {
    let window = Window::from_minutes(u32::try_from(v >> 32).ok()?)?;
    Some(Rate::rcpt(v & 0xffff_ffff, window))
}

/// The database's mailbox caps, in a [`NameTable`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapTable {
    names: NameTable<u64>,
    lists: Vec<Vec<Rate>>,
}

impl CapTable {
    /// The address's caps, if it is listed (`Some(None)`: listed with the default caps).
    #[must_use]
    pub fn get(&self, mailbox: &Mailbox) -> Option<DbCap> {
        self.get_name(mailbox.as_str())
    }

    /// As [`Self::get`], by the normalized address.
    #[must_use]
    pub fn get_name(&self, name: &str) -> Option<DbCap> {
        self.names.get(name).map(|v| self.unpack(v))
    }

    /// The address's caps and whether they are inherited from a default, if it is listed.
    #[must_use]
    pub fn entry(&self, mailbox: &Mailbox) -> Option<(DbCap, bool)> {
        self.names.get(mailbox.as_str()).map(|v| (self.unpack(v), v & INHERITED != 0))
    }

    /// Whether the address's caps are inherited from a default.
    #[must_use]
    pub fn inherited(&self, name: &str) -> bool {
        self.names.get(name).is_some_and(|v| v & INHERITED != 0)
    }

    fn unpack(&self, v: u64) -> DbCap {
        let v = v & !INHERITED;
        if v & LIST != 0 {
            return usize::try_from(v & !LIST).ok().and_then(|i| self.lists.get(i)).cloned();
        }
        unpack_one(v).map(|r| vec![r])
    }

    /// Every entry in address order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, DbCap)> + '_ {
        self.names.iter().map(|(name, v)| (name, self.unpack(v)))
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
        self.names.heap_bytes() + self.lists.iter().map(|l| l.capacity() * size_of::<Rate>()).sum::<usize>()
    }
}

/// Collects rows, then sorts once. A later row for the same address replaces an earlier one.
#[derive(Debug, Default)]
pub struct CapTableBuilder {
    names: NameTableBuilder<u64>,
    lists: Vec<Vec<Rate>>,
}

impl CapTableBuilder {
    #[must_use]
    pub fn with_capacity(rows: usize) -> Self {
        Self { names: NameTableBuilder::with_capacity(rows), lists: Vec::new() }
    }

    /// Adds one mailbox (several rates: the strictest per window are kept); returns false when
    /// the arena would pass 4 GiB (the row is skipped).
    pub fn push(&mut self, mailbox: &Mailbox, cap: DbCap) -> bool {
        self.push_as(mailbox, cap, false)
    }

    /// As [`Self::push`]; `inherited`: the mailbox has these caps from a default policy.
    pub fn push_as(&mut self, mailbox: &Mailbox, cap: DbCap, inherited: bool) -> bool {
        let value = match cap.map(crate::window::strictest) {
            None => 0,
            Some(rates) => match rates.as_slice() {
                [] => 0,
                [one] if one.unit == crate::window::Unit::Rcpt => pack_one(*one),
                _ => {
                    self.lists.push(rates);
                    LIST | u64::try_from(self.lists.len() - 1).unwrap_or(0)
                }
            },
        };
        self.names.push(mailbox.as_str(), if inherited { value | INHERITED } else { value })
    }

    #[must_use]
    pub fn build(self) -> CapTable {
        CapTable { names: self.names.build(), lists: self.lists }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sender::normalize;

    fn mb(s: &str) -> Mailbox {
        normalize(s).expect("valid")
    }

    fn daily(n: u64) -> DbCap {
        Some(vec![Rate::rcpt(n, Window::Day)])
    }

    #[test]
    fn finds_every_address_and_only_those() {
        let mut b = CapTableBuilder::with_capacity(3);
        for i in (0..1000).rev() {
            assert!(
                b.push(&mb(&format!("user{i}@example.com")), if i % 2 == 0 { daily(i + 1) } else { None })
            );
        }
        let t = b.build();
        assert_eq!(t.len(), 1000);
        assert_eq!(t.get(&mb("user10@example.com")), Some(daily(11)));
        assert_eq!(t.get(&mb("user11@example.com")), Some(None));
        assert_eq!(t.get(&mb("user0@example.com")), Some(daily(1)));
        assert_eq!(t.get(&mb("user1000@example.com")), None);
        assert_eq!(t.get(&mb("a@example.com")), None);
        assert_eq!(CapTable::default().get(&mb("a@b.c")), None);
    }

    #[test]
    fn the_last_duplicate_wins_with_its_cap() {
        let mut b = CapTableBuilder::default();
        b.push(&mb("a@x.org"), daily(1));
        b.push(&mb("b@x.org"), daily(2));
        b.push(&mb("a@x.org"), daily(3));
        b.push(&mb("a@x.org"), None);
        let t = b.build();
        assert_eq!((t.len(), t.get(&mb("a@x.org")), t.get(&mb("b@x.org"))), (2, Some(None), Some(daily(2))));
    }

    #[test]
    fn a_cap_keeps_its_window_and_its_number() {
        let mut b = CapTableBuilder::default();
        let every = ["1m", "5m", "15m", "1h", "6h", "12h", "1d"];
        for (i, w) in every.iter().enumerate() {
            let rate = Rate::rcpt([1, 2, 999, 1_000_000_000, 7, 8, 9][i], Window::parse(w).expect("w"));
            b.push(&mb(&format!("u{i}@x.org")), Some(vec![rate]));
        }
        b.push(&mb("huge@x.org"), Some(vec![Rate::rcpt(u64::MAX, Window::HOUR)]));
        let t = b.build();
        let first = |a: &str| t.get(&mb(a)).flatten().and_then(|v| v.first().copied());
        for (i, w) in every.iter().enumerate() {
            let got = first(&format!("u{i}@x.org")).expect("capped");
            assert_eq!(got.window.to_string(), *w);
        }
        assert_eq!(first("u3@x.org").map(|r| r.limit), Some(1_000_000_000));
        assert_eq!(first("huge@x.org").map(|r| r.limit), Some(MAX_CAP), "clamped");
    }

    #[test]
    fn several_windows_keep_the_strictest_each() {
        let r = |limit, w: &str| Rate::rcpt(limit, Window::parse(w).expect("w"));
        let mut b = CapTableBuilder::default();
        b.push(&mb("a@x.org"), Some(vec![r(2, "1h"), r(1000, "1d"), r(5, "1h")]));
        b.push(&mb("b@x.org"), Some(vec![r(3, "1h"), r(9, "1h")]));
        b.push(&mb("c@x.org"), daily(4));
        let t = b.build();
        assert_eq!(t.get(&mb("a@x.org")), Some(Some(vec![r(1000, "1d"), r(2, "1h")])));
        assert_eq!(t.get(&mb("b@x.org")), Some(Some(vec![r(3, "1h")])));
        assert_eq!(t.get(&mb("c@x.org")), Some(daily(4)));
    }

    #[test]
    fn stays_compact() {
        let mut b = CapTableBuilder::with_capacity(100_000);
        for i in 0..100_000 {
            b.push(&mb(&format!("user{i}@example.com")), daily(50));
        }
        let t = b.build();
        assert!(t.heap_bytes() < 5 * 1024 * 1024, "{} bytes", t.heap_bytes());
    }
}

//! A compact, immutable table of the database's mailbox caps: every address in one string arena
//! and a sorted index of 16 bytes per mailbox, searched by binary search. 100,000 mailboxes take
//! about 4 MiB instead of the 10+ MiB of a map of owned strings, and building it allocates twice,
//! not once per row.

use std::cmp::Ordering;

use super::window::{Rate, Window};
use crate::config::MAX_CAP;
use crate::sender::Mailbox;

/// A cap as stored: `None` means "the default per-mailbox caps" (resolved at lookup, because the
/// default itself may change independently).
pub type DbCap = Option<Rate>;

/// `0` for the default, else the window's minutes above the limit (at most [`MAX_CAP`]).
fn pack(cap: DbCap) -> u64 {
    cap.map_or(0, |r| u64::from(r.window.minutes()) << 32 | r.limit.clamp(1, MAX_CAP))
}

fn unpack(v: u64) -> DbCap {
    let window = Window::from_minutes(u32::try_from(v >> 32).ok()?)?;
    Some(Rate { limit: v & 0xffff_ffff, window })
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapTable {
    text: String,
    /// (start, len, packed cap), sorted by address.
    index: Vec<(u32, u32, u64)>,
}

impl CapTable {
    fn key(&self, entry: &(u32, u32, u64)) -> &str {
        let start = entry.0 as usize;
        &self.text[start..start + entry.1 as usize]
    }

    /// The address's cap, if it is listed (`Some(None)`: listed with the default caps).
    #[must_use]
    pub fn get(&self, mailbox: &Mailbox) -> Option<DbCap> {
        let wanted = mailbox.as_str();
        self.index.binary_search_by(|e| self.key(e).cmp(wanted)).ok().map(|i| unpack(self.index[i].2))
    }

    /// Every entry in address order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, DbCap)> + '_ {
        self.index.iter().map(|e| (self.key(e), unpack(e.2)))
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.index.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Heap bytes held (for logs and benchmarks).
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.index.capacity() * std::mem::size_of::<(u32, u32, u64)>()
    }
}

/// Collects rows, then sorts once. A later row for the same address replaces an earlier one.
#[derive(Debug, Default)]
pub struct CapTableBuilder {
    table: CapTable,
    /// Arrival order, to let the last duplicate win after sorting.
    order: Vec<u32>,
}

impl CapTableBuilder {
    #[must_use]
    pub fn with_capacity(rows: usize) -> Self {
        Self {
            table: CapTable { text: String::with_capacity(rows * 24), index: Vec::with_capacity(rows) },
            order: Vec::with_capacity(rows),
        }
    }

    /// Adds one mailbox; returns false when the arena would pass 4 GiB (the row is skipped).
    pub fn push(&mut self, mailbox: &Mailbox, cap: DbCap) -> bool {
        let (Ok(start), Ok(len), Ok(n)) = (
            u32::try_from(self.table.text.len()),
            u32::try_from(mailbox.as_str().len()),
            u32::try_from(self.order.len()),
        ) else {
            return false;
        };
        self.table.text.push_str(mailbox.as_str());
        self.table.index.push((start, len, pack(cap)));
        self.order.push(n);
        true
    }

    #[must_use]
    pub fn build(self) -> CapTable {
        let CapTableBuilder { table, order } = self;
        let CapTable { text, index } = table;
        let key = |e: &(u32, u32, u64)| &text[e.0 as usize..(e.0 + e.1) as usize];
        let mut rows: Vec<((u32, u32, u64), u32)> = index.into_iter().zip(order).collect();
        rows.sort_unstable_by(|a, b| match key(&a.0).cmp(key(&b.0)) {
            Ordering::Equal => a.1.cmp(&b.1),
            other => other,
        });
        // Keep the last arrival of each address.
        let mut index: Vec<(u32, u32, u64)> = Vec::with_capacity(rows.len());
        for (entry, _) in rows {
            match index.last_mut() {
                Some(last) if key(last) == key(&entry) => *last = entry,
                _ => index.push(entry),
            }
        }
        index.shrink_to_fit();
        CapTable { text, index }
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
        Some(Rate { limit: n, window: Window::Day })
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
    fn the_last_duplicate_wins() {
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
            let rate =
                Rate { limit: [1, 2, 999, 1_000_000_000, 7, 8, 9][i], window: Window::parse(w).expect("w") };
            b.push(&mb(&format!("u{i}@x.org")), Some(rate));
        }
        b.push(&mb("huge@x.org"), Some(Rate { limit: u64::MAX, window: Window::HOUR }));
        let t = b.build();
        for (i, w) in every.iter().enumerate() {
            let got = t.get(&mb(&format!("u{i}@x.org"))).flatten().expect("capped");
            assert_eq!(got.window.to_string(), *w);
        }
        assert_eq!(t.get(&mb("u3@x.org")).flatten().map(|r| r.limit), Some(1_000_000_000));
        assert_eq!(t.get(&mb("huge@x.org")).flatten().map(|r| r.limit), Some(MAX_CAP), "clamped");
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

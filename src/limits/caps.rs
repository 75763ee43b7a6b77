//! A compact, immutable table of opt-in caps: every address in one string arena and a sorted
//! index of 16 bytes per mailbox, searched by binary search. 100,000 mailboxes take about 4 MiB
//! instead of the 10+ MiB of a map of owned strings, and building it allocates twice, not once
//! per row.

use std::cmp::Ordering;

use crate::sender::Mailbox;

/// A cap as stored: `None` means "the default per-mailbox cap" (resolved at lookup, because the
/// default itself may change independently).
pub type Daily = Option<u64>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapTable {
    text: String,
    /// (start, len, daily + 1; 0 = default), sorted by address.
    index: Vec<(u32, u32, u64)>,
}

impl CapTable {
    fn key(&self, entry: &(u32, u32, u64)) -> &str {
        let start = entry.0 as usize;
        &self.text[start..start + entry.1 as usize]
    }

    /// The address's cap, if it is listed (`Some(None)`: listed with the default cap).
    #[must_use]
    pub fn get(&self, mailbox: &Mailbox) -> Option<Daily> {
        let wanted = mailbox.as_str();
        self.index.binary_search_by(|e| self.key(e).cmp(wanted)).ok().map(|i| self.index[i].2.checked_sub(1))
    }

    /// Every entry in address order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Daily)> + '_ {
        self.index.iter().map(|e| (self.key(e), e.2.checked_sub(1)))
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
    pub fn push(&mut self, mailbox: &Mailbox, daily: Daily) -> bool {
        let (Ok(start), Ok(len), Ok(n)) = (
            u32::try_from(self.table.text.len()),
            u32::try_from(mailbox.as_str().len()),
            u32::try_from(self.order.len()),
        ) else {
            return false;
        };
        self.table.text.push_str(mailbox.as_str());
        self.table.index.push((start, len, daily.map_or(0, |d| d.saturating_add(1))));
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

    #[test]
    fn finds_every_address_and_only_those() {
        let mut b = CapTableBuilder::with_capacity(3);
        for i in (0..1000).rev() {
            assert!(b.push(&mb(&format!("user{i}@example.com")), if i % 2 == 0 { Some(i) } else { None }));
        }
        let t = b.build();
        assert_eq!(t.len(), 1000);
        assert_eq!(t.get(&mb("user10@example.com")), Some(Some(10)));
        assert_eq!(t.get(&mb("user11@example.com")), Some(None));
        assert_eq!(t.get(&mb("user0@example.com")), Some(Some(0)));
        assert_eq!(t.get(&mb("user1000@example.com")), None);
        assert_eq!(t.get(&mb("a@example.com")), None);
        assert_eq!(CapTable::default().get(&mb("a@b.c")), None);
    }

    #[test]
    fn the_last_duplicate_wins() {
        let mut b = CapTableBuilder::default();
        b.push(&mb("a@x.org"), Some(1));
        b.push(&mb("b@x.org"), Some(2));
        b.push(&mb("a@x.org"), Some(3));
        b.push(&mb("a@x.org"), None);
        let t = b.build();
        assert_eq!((t.len(), t.get(&mb("a@x.org")), t.get(&mb("b@x.org"))), (2, Some(None), Some(Some(2))));
    }

    #[test]
    fn stays_compact() {
        let mut b = CapTableBuilder::with_capacity(100_000);
        for i in 0..100_000 {
            b.push(&mb(&format!("user{i}@example.com")), Some(50));
        }
        let t = b.build();
        assert!(t.heap_bytes() < 5 * 1024 * 1024, "{} bytes", t.heap_bytes());
    }
}

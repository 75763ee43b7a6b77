//! A compact, immutable map from addresses to a small `Copy` value: every name in one string
//! arena and a sorted index of (start, length, value), searched by binary search. 100,000
//! mailboxes take a few MiB instead of the 10+ MiB of a map of owned strings, and building it
//! allocates a handful of times, not once per row. The database's caps (`CapTable`) and the
//! config file's mailbox list (`MailboxTable`) are both kept this way.

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTable<V> {
    text: String,
    /// (start, len, value), sorted by name.
    index: Vec<(u32, u32, V)>,
}

impl<V> Default for NameTable<V> {
    fn default() -> Self {
        Self { text: String::new(), index: Vec::new() }
    }
}

impl<V: Copy> NameTable<V> {
    fn key(&self, entry: &(u32, u32, V)) -> &str {
        let start = entry.0 as usize;
        &self.text[start..start + entry.1 as usize]
    }

    /// The name's value, if it is listed.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<V> {
        self.index.binary_search_by(|e| self.key(e).cmp(name)).ok().map(|i| self.index[i].2)
    }

    /// Every entry in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, V)> + '_ {
        self.index.iter().map(|e| (self.key(e), e.2))
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
        self.text.capacity() + self.index.capacity() * std::mem::size_of::<(u32, u32, V)>()
    }
}

/// Collects rows, then sorts once. A later row for the same name replaces an earlier one.
#[derive(Debug)]
pub struct NameTableBuilder<V> {
    table: NameTable<V>,
    /// Arrival order, to let the last duplicate win after sorting.
    order: Vec<u32>,
}

impl<V> Default for NameTableBuilder<V> {
    fn default() -> Self {
        Self { table: NameTable::default(), order: Vec::new() }
    }
}

impl<V: Copy> NameTableBuilder<V> {
    #[must_use]
    pub fn with_capacity(rows: usize) -> Self {
        Self {
            table: NameTable { text: String::with_capacity(rows * 24), index: Vec::with_capacity(rows) },
            order: Vec::with_capacity(rows),
        }
    }

    /// Adds one name; returns false when the arena would pass 4 GiB (the row is skipped).
    pub fn push(&mut self, name: &str, value: V) -> bool {
        let (Ok(start), Ok(len), Ok(n)) = (
            u32::try_from(self.table.text.len()),
            u32::try_from(name.len()),
            u32::try_from(self.order.len()),
        ) else {
            return false;
        };
        self.table.text.push_str(name);
        self.table.index.push((start, len, value));
        self.order.push(n);
        true
    }

    #[must_use]
    pub fn build(self) -> NameTable<V> {
        let NameTableBuilder { table, order } = self;
        let NameTable { mut text, index } = table;
        let key = |e: &(u32, u32, V)| &text[e.0 as usize..(e.0 + e.1) as usize];
        let mut rows: Vec<((u32, u32, V), u32)> = index.into_iter().zip(order).collect();
        rows.sort_unstable_by(|a, b| match key(&a.0).cmp(key(&b.0)) {
            Ordering::Equal => a.1.cmp(&b.1),
            other => other,
        });
        // Keep the last arrival of each name.
        let mut index: Vec<(u32, u32, V)> = Vec::with_capacity(rows.len());
        for (entry, _) in rows {
            match index.last_mut() {
                Some(last) if key(last) == key(&entry) => *last = entry,
                _ => index.push(entry),
            }
        }
        index.shrink_to_fit();
        text.shrink_to_fit();
        NameTable { text, index }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_name_and_only_those() {
        let mut b = NameTableBuilder::with_capacity(3);
        for i in (0..1000u32).rev() {
            assert!(b.push(&format!("user{i}@example.com"), i));
        }
        let t = b.build();
        assert_eq!(t.len(), 1000);
        assert_eq!(t.get("user10@example.com"), Some(10));
        assert_eq!(t.get("user0@example.com"), Some(0));
        assert_eq!(t.get("user1000@example.com"), None);
        assert_eq!(t.get("a@example.com"), None);
        assert_eq!(NameTable::<u8>::default().get("a@b.c"), None);
        let names: Vec<&str> = t.iter().map(|(n, _)| n).take(3).collect();
        assert_eq!(names, ["user0@example.com", "user100@example.com", "user101@example.com"]);
    }

    #[test]
    fn the_last_duplicate_wins() {
        let mut b = NameTableBuilder::default();
        for (name, v) in [("a", 1), ("b", 2), ("a", 3), ("a", 4)] {
            b.push(name, v);
        }
        let t = b.build();
        assert_eq!((t.len(), t.get("a"), t.get("b")), (2, Some(4), Some(2)));
    }
}

//! Known networks (`[learn] known_networks`; the networks themselves are [`crate::network`]): a
//! learned allowance applies only to mail from a network the mailbox sent from before. A stolen
//! password used from a botnet meets the default caps, however much its owner earned. The
//! history remembers, per network, the first and the last day the mailbox's mail from it was
//! counted (`erl:hist:<email>` field `n:<network>` = `"FIRST LAST"`, written by the script).

use chrono::NaiveDate;

/// The first and last day a mailbox's counted mail came from a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub first: NaiveDate,
    pub last: NaiveDate,
}

impl Seen {
    /// Reads a field's value, `"FIRST LAST"`.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        let (first, last) = value.split_once(' ')?;
        Some(Self { first: first.parse().ok()?, last: last.parse().ok()? })
    }

    /// After a counted message on `day` (mirrored by `consume.lua`'s `remember`): the first day
    /// is kept, the last becomes `day`; none (or a value that does not read) starts at `day`.
    #[must_use]
    pub fn used(before: Option<Self>, day: NaiveDate) -> Self {
        Self { first: before.map_or(day, |s| s.first), last: day }
    }
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.first, self.last)
    }
}

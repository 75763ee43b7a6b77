//! One sender's history (`erl:hist:<email>`, DESIGN v3 "Learned allowances"), as the store
//! keeps it and `learn` reads it: recipients accepted per local day, the days excluded from
//! learning, and the networks its counted mail came from (`[learn] known_networks`: a learned
//! allowance applies only to mail from a network the mailbox sent from before, so a stolen
//! password used from a botnet meets the default caps). Per network the history keeps the first
//! and the last day (`n:<network>` = `"FIRST LAST"`, written by the script as [`Seen::used`]).

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;

use super::HistoryField;
use crate::clock::days_before as first_day;

/// One sender's history: recipients accepted per local day, the days excluded from learning
/// (refused by its own caps, a suspect, or locked), and the networks its mail came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    pub totals: BTreeMap<NaiveDate, u64>,
    pub excluded: BTreeSet<NaiveDate>,
    pub networks: BTreeMap<String, Seen>,
}

impl History {
    /// Reads `erl:hist:<email>`'s fields: `YYYY-MM-DD` -> total, `x:YYYY-MM-DD` -> a mark,
    /// `n:<network>` -> `"FIRST LAST"`. Anything else is ignored (a hash written by hand stays
    /// harmless).
    pub fn from_fields<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut h = Self::default();
        for (field, value) in fields {
            match HistoryField::parse(field) {
                Some(HistoryField::Excluded(day)) => {
                    h.excluded.insert(day);
                }
                Some(HistoryField::Network(network)) => {
                    if let Some(seen) = Seen::parse(value) {
                        h.networks.insert(network.to_owned(), seen);
                    }
                }
                Some(HistoryField::Total(day)) => {
                    if let Ok(total) = value.parse() {
                        h.totals.insert(day, total);
                    }
                }
                None => {}
            }
        }
        h
    }

    /// The fields older than `days` local days before `today` (pruned when history is folded).
    #[must_use]
    pub fn stale_fields(&self, today: NaiveDate, days: u32) -> Vec<String> {
        let oldest = first_day(today, days);
        let field = |f: HistoryField<'_>| f.to_string();
        let totals = self.totals.keys().filter(|d| **d < oldest).map(|d| field(HistoryField::Total(*d)));
        let marks = self.excluded.iter().filter(|d| **d < oldest).map(|d| field(HistoryField::Excluded(*d)));
        let networks = self
            .networks
            .iter()
            .filter(|(_, s)| s.last < oldest)
            .map(|(n, _)| field(HistoryField::Network(n)));
        totals.chain(marks).chain(networks).collect()
    }

    /// The networks trusted on `today`: mail came from them in the last `days` days, and on a
    /// day before today that is not excluded (a network first met during a theft, the day
    /// marked excluded, stays unknown).
    pub fn known_networks(&self, today: NaiveDate, days: u32) -> impl Iterator<Item = &str> {
        let oldest = first_day(today, days);
        let counts = move |d: NaiveDate| d < today && !self.excluded.contains(&d);
        self.networks
            .iter()
            .filter(move |(_, s)| s.last >= oldest && (counts(s.first) || counts(s.last)))
            .map(|(n, _)| n.as_str())
    }
}

impl History {
    /// Forgets what [`Self::stale_fields`] names (the memory store's pruning); whether anything
    /// is left.
    pub fn prune(&mut self, today: NaiveDate, days: u32) -> bool {
        let oldest = first_day(today, days);
        self.totals.retain(|d, _| *d >= oldest);
        self.excluded.retain(|d| *d >= oldest);
        self.networks.retain(|_, s| s.last >= oldest);
        !self.totals.is_empty() || !self.excluded.is_empty() || !self.networks.is_empty()
    }
}

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

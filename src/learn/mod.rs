//! Learned allowances (DESIGN v3 "Learned allowances"): a mailbox on a default cap earns up to
//! `factor` times the 95th percentile of its own daily totals, between the default and
//! `ceiling`, growing at most `max_growth` times a day. Pure: the history comes from the store
//! (`erl:hist:<email>`, or the memory store's), the allowance goes to the policy, which scales
//! the mailbox's default caps with it ([`scale`]).

pub mod networks;
pub mod recorded;
pub mod run;
pub mod table;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Days, NaiveDate};

use crate::config::LearnSettings;
use crate::store::HistoryField;

pub use networks::Seen;
pub use table::Allowances;

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

/// The first day of the `days` local days before `today`.
fn first_day(today: NaiveDate, days: u32) -> NaiveDate {
    today.checked_sub_days(Days::new(u64::from(days))).unwrap_or(NaiveDate::MIN)
}

/// A learned daily cap and its basis (for `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Learned {
    /// Recipients a day.
    pub limit: u64,
    /// Days with mail it was learned from.
    pub days: usize,
    /// The 95th percentile of their totals.
    pub p95: u64,
}

/// Nearest-rank 95th percentile of `values` (sorted in place); `None` when empty.
fn p95(values: &mut [u64]) -> Option<u64> {
    values.sort_unstable();
    let rank = (values.len() * 95).div_ceil(100).max(1);
    values.get(rank - 1).copied()
}

/// What a mailbox with a default daily cap of `default` has earned on `today`, from the days
/// before it; `None` when it has not earned more than the default (too few days with mail, or
/// a small 95th percentile). Yesterday's allowance bounds today's (`max_growth`): the
/// allowances of the `days` days before are computed in turn from the same history, starting at
/// the default, so the rule needs no state beyond the history itself.
#[must_use]
pub fn allowance(history: &History, today: NaiveDate, default: u64, s: &LearnSettings) -> Option<Learned> {
    let mut allowed = default;
    let mut learned = None;
    for back in (0..s.days).rev() {
        let day = first_day(today, back);
        let Some(basis) = basis(history, day, s) else {
            allowed = default;
            learned = None;
            continue;
        };
        let ceiling = s.ceiling.max(default);
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let earned = ((s.factor * basis.p95 as f64).ceil() as u64).clamp(default, ceiling);
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let grown = (s.max_growth * allowed as f64).floor() as u64;
        allowed = earned.min(grown.max(default));
        learned = (allowed > default).then_some(Learned { limit: allowed, ..basis });
    }
    learned
}

/// The days with mail in the `days` days before `day` that count (not excluded), and their
/// 95th percentile; `None` below `min_days` of them.
fn basis(history: &History, day: NaiveDate, s: &LearnSettings) -> Option<Learned> {
    let from = first_day(day, s.days);
    let mut totals: Vec<u64> = history
        .totals
        .range(from..day)
        .filter(|(d, n)| **n > 0 && !history.excluded.contains(d))
        .map(|(_, n)| *n)
        .collect();
    if totals.len() < usize::try_from(s.min_days).unwrap_or(usize::MAX).max(1) {
        return None;
    }
    let days = totals.len();
    Some(Learned { limit: 0, days, p95: p95(&mut totals)? })
}

#[cfg(test)]
mod tests;

//! Learned allowances (DESIGN v3 "Learned allowances"): a mailbox on a default cap earns up to
//! `factor` times the 95th percentile of its own daily totals, between the default and
//! `ceiling`, growing at most `max_growth` times a day. Pure: the history comes from the store
//! (`erl:hist:<email>`, or the memory store's), the allowance goes to the policy, which scales
//! the mailbox's default caps with it ([`scale`]).

pub mod recorded;
pub mod run;
pub mod table;

use chrono::NaiveDate;

use crate::clock::days_before as first_day;
use crate::config::LearnSettings;
use crate::store::History;

pub use table::Allowances;

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

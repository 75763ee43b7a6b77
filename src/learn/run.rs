//! One learning run, as the daemon does it after local midnight and `replay` does it at each new
//! local day of its input: fold the days not folded yet into the senders' histories, then learn
//! every sender's allowance from its history, a page of senders at a time. The histories live in
//! the memory store (`replay`, `store = "memory"`) or in Redis.

use chrono::NaiveDate;

use super::table::{AllowancesBuilder, learned};
use super::{Allowances, History, LearnSettings};
use crate::limits::Limits;
use crate::store::StoreError;
use crate::store::client::RedisClient;
use crate::store::memory::MemoryStore;

/// Where the histories are.
pub trait HistorySource {
    /// Folds `day`'s totals into the histories (each kept `days` days) unless that was done
    /// already, by this process or another sharing the store: how many senders it folded, to
    /// be logged; `None` when there is nothing to say (done already, or folded in process).
    fn fold(
        &mut self,
        day: NaiveDate,
        today: NaiveDate,
        days: u32,
    ) -> impl Future<Output = Result<Option<usize>, StoreError>>;

    /// The next page of histories (`None` after the last); `cursor` starts at `None`.
    fn page(
        &mut self,
        cursor: &mut Option<u64>,
        today: NaiveDate,
        days: u32,
    ) -> impl Future<Output = Result<Option<Vec<(String, History)>>, StoreError>>;
}

/// What a run did.
#[derive(Debug)]
pub struct Run {
    /// The days folded, and how many senders each.
    pub folded: Vec<(NaiveDate, usize)>,
    /// How many senders have a history.
    pub senders: usize,
    pub allowances: Allowances,
}

/// Folds the days from `first` to the day before `today`, then learns the allowances on
/// `today`. `expected`: about how many allowances there will be (the last run's), so that their
/// list is allocated once.
///
/// # Errors
/// A store fault (the allowances in force then stay).
pub async fn fold_and_learn(
    source: &mut impl HistorySource,
    first: NaiveDate,
    today: NaiveDate,
    limits: &Limits,
    settings: &LearnSettings,
    expected: usize,
) -> Result<Run, StoreError> {
    let mut folded = Vec::new();
    let mut day = first;
    while day < today {
        if let Some(n) = source.fold(day, today, settings.days).await? {
            folded.push((day, n));
        }
        day = day.succ_opt().unwrap_or(today);
    }
    let mut builder = AllowancesBuilder::expecting(expected, settings.networks);
    let (mut senders, mut cursor) = (0, None);
    while let Some(page) = source.page(&mut cursor, today, settings.days).await? {
        senders += page.len();
        builder.extend(learned(page.iter().map(|(name, h)| (name.as_str(), h)), today, limits, settings));
    }
    Ok(Run { folded, senders, allowances: builder.build() })
}

/// In process: folding is cheap and idempotent, so every day asked is folded (silently); the
/// histories are one page.
impl HistorySource for &MemoryStore {
    async fn fold(
        &mut self,
        day: NaiveDate,
        today: NaiveDate,
        days: u32,
    ) -> Result<Option<usize>, StoreError> {
        MemoryStore::fold(self, day, today, days);
        Ok(None)
    }

    async fn page(
        &mut self,
        cursor: &mut Option<u64>,
        _today: NaiveDate,
        _days: u32,
    ) -> Result<Option<Vec<(String, History)>>, StoreError> {
        if cursor.is_some() {
            return Ok(None);
        }
        *cursor = Some(0);
        Ok(Some(self.histories()))
    }
}

/// In Redis: a day is folded once, by whichever server comes first (`once:fold:DAY`); the
/// histories are scanned a page at a time.
impl HistorySource for RedisClient {
    async fn fold(
        &mut self,
        day: NaiveDate,
        _today: NaiveDate,
        days: u32,
    ) -> Result<Option<usize>, StoreError> {
        if self.folded(day).await? {
            return Ok(None);
        }
        let n = self.fold_history(day, days).await?;
        self.mark_folded(day).await?;
        Ok(Some(n))
    }

    async fn page(
        &mut self,
        cursor: &mut Option<u64>,
        today: NaiveDate,
        days: u32,
    ) -> Result<Option<Vec<(String, History)>>, StoreError> {
        self.history_page(cursor, today, days).await
    }
}

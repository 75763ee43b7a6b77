//! The memory store's side of learned allowances: the day's totals folded in from its top
//! senders, as `store::fold` does from Redis's `erl:top:DATE`.

use chrono::NaiveDate;

use super::MemoryStore;
use crate::store::History;

impl MemoryStore {
    /// Folds `day`'s recipients per sender (its top senders) into their histories and forgets
    /// what is older than `days` days before `today`.
    pub fn fold(&self, day: NaiveDate, today: NaiveDate, days: u32) {
        let prefix = format!("{}\t", self.keys.top(day));
        let mut state = self.state();
        let totals: Vec<(String, u64)> = state
            .counters
            .iter()
            .filter_map(|(k, (v, _))| k.strip_prefix(&prefix).map(|sender| (sender.to_owned(), *v)))
            .collect();
        for (sender, total) in totals {
            state.hist.entry(sender).or_default().totals.insert(day, total);
        }
        state.hist.retain(|_, h| h.prune(today, days));
    }

    /// Every sender's history.
    #[must_use]
    pub fn histories(&self) -> Vec<(String, History)> {
        self.state().hist.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

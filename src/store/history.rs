//! Learned allowances' history in Redis (`erl:hist:<email>`, DESIGN v3): each day's totals are
//! folded in after local midnight from that day's top senders (`erl:top:DATE`, kept 8 days, so a
//! daemon that was down at midnight folds later), off the request path; the script marks the
//! excluded days itself. Folding is idempotent: several servers sharing Redis may all do it.

use chrono::NaiveDate;
use redis::AsyncCommands;

use super::StoreError;
use super::admin::AdminStore;
use crate::learn::History;

/// Senders per pipelined batch.
const BATCH: usize = 1000;

impl AdminStore {
    /// Folds `day`'s recipients per sender into their histories (each kept `days` days, plus
    /// two); returns how many senders it folded.
    ///
    /// # Errors
    /// Redis faults.
    pub async fn fold_history(&mut self, day: NaiveDate, days: u32) -> Result<usize, StoreError> {
        let top = self.keys.top(day).to_string();
        let mut members: Vec<(String, f64)> = Vec::new();
        {
            let mut iter: redis::AsyncIter<'_, (String, f64)> = self.conn.zscan(&top).await?;
            while let Some(item) = futures_util::StreamExt::next(&mut iter).await {
                members.push(item?);
            }
        }
        let field = day.to_string();
        let ttl = i64::try_from(super::history_ttl_secs(days)).unwrap_or(i64::MAX);
        for batch in members.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for (sender, score) in batch {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let total = score.max(0.0).round() as u64;
                let key = self.keys.hist_of(sender);
                pipe.hset(&key, &field, total).ignore().expire(&key, ttl).ignore();
            }
            pipe.query_async::<()>(&mut self.conn).await?;
        }
        Ok(members.len())
    }

    /// Whether `day` was folded already (by this server or another sharing Redis).
    ///
    /// # Errors
    /// Redis faults.
    pub async fn folded(&mut self, day: NaiveDate) -> Result<bool, StoreError> {
        Ok(self.conn.exists(self.keys.folded(day)).await?)
    }

    /// Marks `day` folded (kept as long as the top senders it was folded from).
    ///
    /// # Errors
    /// Redis faults.
    pub async fn mark_folded(&mut self, day: NaiveDate) -> Result<(), StoreError> {
        let ttl = super::keys::TOP_TTL_SECS;
        Ok(self.conn.set_ex(self.keys.folded(day), 1, ttl).await?)
    }

    /// Every sender's history, the fields older than `days` days before `today` pruned on the
    /// way. A key of another type is skipped.
    ///
    /// # Errors
    /// Redis faults.
    pub async fn histories(
        &mut self,
        today: NaiveDate,
        days: u32,
    ) -> Result<Vec<(String, History)>, StoreError> {
        let mut keys: Vec<String> = Vec::new();
        {
            let options =
                redis::ScanOptions::default().with_pattern(self.keys.hist_pattern()).with_count(1000);
            let mut iter: redis::AsyncIter<'_, String> = self.conn.scan_options(options).await?;
            while let Some(key) = futures_util::StreamExt::next(&mut iter).await {
                keys.push(key?);
            }
        }
        keys.sort();
        keys.dedup();
        let mut out = Vec::with_capacity(keys.len());
        for batch in keys.chunks(BATCH) {
            let mut pipe = redis::pipe();
            for key in batch {
                pipe.cmd("HGETALL").arg(key);
            }
            let replies: Vec<redis::Value> = pipe.query_async(&mut self.conn).await?;
            let mut prune = redis::pipe();
            let mut pruning = false;
            for (key, reply) in batch.iter().zip(replies) {
                let Ok(fields) = redis::from_redis_value::<Vec<(String, String)>>(reply) else { continue };
                let Some(sender) = self.keys.hist_sender(key) else { continue };
                let history = History::from_fields(fields.iter().map(|(f, v)| (f.as_str(), v.as_str())));
                let stale = history.stale_fields(today, days);
                if !stale.is_empty() {
                    prune.hdel(key, stale).ignore();
                    pruning = true;
                }
                out.push((sender.to_owned(), history));
            }
            if pruning {
                prune.query_async::<()>(&mut self.conn).await?;
            }
        }
        Ok(out)
    }

    /// One sender's history (for `status`); empty when there is none, or the key holds
    /// something else or cannot be read (a learned cap is a convenience, not a fault).
    pub async fn history(&mut self, sender: &crate::sender::Mailbox) -> History {
        let fields: Vec<(String, String)> =
            self.conn.hgetall(self.keys.hist(sender)).await.unwrap_or_default();
        History::from_fields(fields.iter().map(|(f, v)| (f.as_str(), v.as_str())))
    }
}

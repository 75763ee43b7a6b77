//! Learned allowances' history in Redis (`erl:hist:<email>`, DESIGN v3): each day's totals are
//! folded in after local midnight from that day's top senders (`erl:top:DATE`, kept 8 days, so a
//! daemon that was down at midnight folds later), off the request path; the script marks the
//! excluded days itself. Folding is idempotent: several servers sharing Redis may all do it.

use chrono::NaiveDate;
use redis::AsyncCommands;

use super::History;
use super::StoreError;
use super::client::RedisClient;

/// Senders per pipelined batch.
const BATCH: usize = 1000;

/// Histories per page: small, so that a daemon's memory never holds more than a few hundred
/// parsed histories at once.
const PAGE: usize = 200;

impl RedisClient {
    /// Folds `day`'s recipients per sender into their histories (each kept `days` days, plus
    /// two); returns how many senders it folded.
    ///
    /// # Errors
    /// Redis faults.
    pub async fn fold_history(&mut self, day: NaiveDate, days: u32) -> Result<usize, StoreError> {
        let top = self.keys.top(day).to_string();
        let field = super::HistoryField::Total(day).to_string();
        let ttl = i64::try_from(super::history_ttl_secs(days)).unwrap_or(i64::MAX);
        let mut cursor = 0u64;
        let mut folded = 0;
        // A page at a time: a day of 100,000 senders is never held at once.
        loop {
            let (next, page): (u64, Vec<(String, f64)>) = redis::cmd("ZSCAN")
                .arg(&top)
                .arg(cursor)
                .arg("COUNT")
                .arg(BATCH)
                .query_async(&mut self.conn)
                .await?;
            if !page.is_empty() {
                let mut pipe = redis::pipe();
                for (sender, score) in &page {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let total = score.max(0.0).round() as u64;
                    let key = self.keys.hist_of(sender);
                    pipe.hset(&key, &field, total).ignore().expire(&key, ttl).ignore();
                }
                pipe.query_async::<()>(&mut self.conn).await?;
                folded += page.len();
            }
            if next == 0 {
                return Ok(folded);
            }
            cursor = next;
        }
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

    /// The next page of every sender's history (a `SCAN` page of `erl:hist:*`, a few
    /// hundred senders), the fields older than `days` days before `today` pruned on the way;
    /// `None` when the scan is done. Start with `cursor = None`. Memory stays at one page
    /// however many senders there are. A sender may come twice (SCAN's guarantee); a key of
    /// another type is skipped.
    ///
    /// # Errors
    /// Redis faults.
    pub async fn history_page(
        &mut self,
        cursor: &mut Option<u64>,
        today: NaiveDate,
        days: u32,
    ) -> Result<Option<Vec<(String, History)>>, StoreError> {
        if *cursor == Some(0) {
            return Ok(None);
        }
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor.unwrap_or(0))
            .arg("MATCH")
            .arg(self.keys.hist_pattern())
            .arg("COUNT")
            .arg(PAGE)
            .query_async(&mut self.conn)
            .await?;
        *cursor = Some(next);
        if keys.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("HGETALL").arg(key);
        }
        let replies: Vec<redis::Value> = pipe.query_async(&mut self.conn).await?;
        let mut out = Vec::with_capacity(keys.len());
        let mut prune = redis::pipe();
        let mut pruning = false;
        for (key, reply) in keys.iter().zip(replies) {
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
        Ok(Some(out))
    }

    /// Marks `day` excluded from the sender's learning (an admin's lock). A key of another type
    /// is left alone.
    ///
    /// # Errors
    /// Redis faults.
    pub async fn exclude_day(
        &mut self,
        sender: &crate::sender::Mailbox,
        day: NaiveDate,
        days: u32,
    ) -> Result<(), StoreError> {
        let key = self.keys.hist(sender).to_string();
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut self.conn).await?;
        if kind != "none" && kind != "hash" {
            return Ok(());
        }
        let ttl = i64::try_from(super::history_ttl_secs(days)).unwrap_or(i64::MAX);
        redis::pipe()
            .hset(&key, super::HistoryField::Excluded(day).to_string(), 1)
            .ignore()
            .expire(&key, ttl)
            .ignore()
            .query_async::<()>(&mut self.conn)
            .await?;
        Ok(())
    }

    /// One sender's history (for `status`); empty when there is none, or the key holds
    /// something else or cannot be read (a learned cap is a convenience, not a fault).
    pub async fn history(&mut self, sender: &crate::sender::Mailbox) -> History {
        let fields: Vec<(String, String)> =
            self.conn.hgetall(self.keys.hist(sender)).await.unwrap_or_default();
        History::from_fields(fields.iter().map(|(f, v)| (f.as_str(), v.as_str())))
    }
}

//! How many notification mails went out today about one sender, domain or the server
//! (`<prefix>:notified:YYYY-MM-DD:<who>`, shared by every server on the Redis; in process with
//! the memory store), so that a bot at a one-minute cap cannot make 1,440 mails a day.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::NaiveDate;
use redis::aio::MultiplexedConnection;

use super::StoreError;
use super::keys::{COUNTER_TTL_SECS, KeySchema};
use super::target::{Target, millis};
use crate::config::RedisSettings;

/// The day's mail counts.
pub struct MailBudget {
    keys: KeySchema,
    inner: Inner,
}

enum Inner {
    Redis(Box<RedisBudget>),
    /// Today's counts (older days are dropped when the day changes).
    Memory(Mutex<(Option<NaiveDate>, HashMap<String, u64>)>),
}

struct RedisBudget {
    target: Target,
    link: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    timeout: Duration,
}

impl MailBudget {
    /// Counts in Redis (connects on first use).
    ///
    /// # Errors
    /// When the URL is not a valid Redis URL.
    pub fn redis(settings: &RedisSettings) -> Result<Self, StoreError> {
        Ok(Self {
            keys: KeySchema::new(&settings.key_prefix),
            inner: Inner::Redis(Box::new(RedisBudget {
                target: Target::new(settings)?,
                link: tokio::sync::Mutex::new(None),
                timeout: settings.timeout.max(Duration::from_secs(1)),
            })),
        })
    }

    /// Counts in this process.
    #[must_use]
    pub fn memory(prefix: &str) -> Self {
        Self { keys: KeySchema::new(prefix), inner: Inner::Memory(Mutex::default()) }
    }

    /// Counts one more mail about `who` (an address, `@domain` or `global`) on `day`; returns
    /// the day's count with it.
    ///
    /// # Errors
    /// Redis faults (the caller sends the mail anyway: a notification is never lost to a fault).
    pub async fn take(&self, day: NaiveDate, who: &str) -> Result<u64, StoreError> {
        let key = self.keys.mails(day, who);
        match &self.inner {
            Inner::Memory(state) => {
                let mut state = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if state.0 != Some(day) {
                    *state = (Some(day), HashMap::new());
                }
                let n = state.1.entry(key.to_string()).or_insert(0);
                *n += 1;
                Ok(*n)
            }
            Inner::Redis(r) => {
                let (target, link, timeout) = (&r.target, &r.link, &r.timeout);
                let run = async {
                    let mut guard = link.lock().await;
                    let conn = match guard.as_mut() {
                        Some(conn) => conn,
                        None => guard.insert(target.connect(*timeout).await?),
                    };
                    // Created with the counters' TTL, then counted: one atomic step.
                    let (n,): (u64,) = redis::pipe()
                        .atomic()
                        .cmd("SET")
                        .arg(key)
                        .arg(0)
                        .arg("EX")
                        .arg(COUNTER_TTL_SECS)
                        .arg("NX")
                        .ignore()
                        .incr(key, 1)
                        .query_async(conn)
                        .await?;
                    Ok::<u64, StoreError>(n)
                };
                let result = match tokio::time::timeout(*timeout, run).await {
                    Ok(result) => result,
                    Err(_) => Err(StoreError::Timeout(millis(*timeout))),
                };
                if result.is_err() {
                    // A broken link is not reused; the next mail connects again.
                    *link.lock().await = None;
                }
                result
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_budget_counts_per_who_and_day() {
        let budget = MailBudget::memory("erl");
        let day = NaiveDate::from_ymd_opt(2026, 12, 2).expect("valid");
        let next = day.succ_opt().expect("valid");
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        rt.block_on(async {
            assert_eq!(budget.take(day, "a@x.org").await.ok(), Some(1));
            assert_eq!(budget.take(day, "a@x.org").await.ok(), Some(2));
            assert_eq!(budget.take(day, "@x.org").await.ok(), Some(1));
            assert_eq!(budget.take(next, "a@x.org").await.ok(), Some(1), "a new day");
        });
    }
}

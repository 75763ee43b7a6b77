//! A mailbox's caps in force now, as the daemon applies them, for the admin commands: its raise
//! (read from Redis, in the raise grammar), else its learned allowance (from its history, as the
//! daemon learns it after midnight), through the one [`crate::limits::effective`].

use chrono::NaiveDate;

use super::AdminError;
use crate::config::{LearnSettings, MAX_CAP};
use crate::learn::{Learned, allowance, table::default_daily};
use crate::limits::{Effective, Limits, effective};
use crate::sender::Mailbox;
use crate::store::History;
use crate::store::client::RedisClient;
use crate::window::Rate;

/// What `status` shows of a mailbox's caps.
pub(super) struct CapsNow {
    pub effective: Effective,
    /// The raise as stored, and its TTL.
    pub raise: Option<(String, i64)>,
    /// The learned allowance (without a raise, with learning on, for caps from a default).
    pub learned: Option<Learned>,
    /// The default daily cap it was learned over.
    pub default: Option<u64>,
    /// The history it was learned from.
    pub history: Option<History>,
}

/// `mailbox`'s caps on `day`.
///
/// # Errors
/// Redis faults.
pub(super) async fn caps_now(
    store: &mut RedisClient,
    limits: &Limits,
    learn: &LearnSettings,
    mailbox: &Mailbox,
    day: NaiveDate,
) -> Result<CapsNow, AdminError> {
    let raise = store.raise(mailbox).await?;
    let rates = raise.as_ref().and_then(|(r, _)| Rate::parse_list(r, MAX_CAP).ok());
    let (mut learned, mut default, mut history) = (None, None, None);
    if rates.is_none()
        && learn.enabled
        && let Some(daily) = default_daily(limits, mailbox)
    {
        let h = store.history(mailbox).await;
        learned = allowance(&h, day, daily, learn);
        (default, history) = (Some(daily), Some(h));
    }
    let effective = effective(limits, mailbox, rates.as_deref(), learned.map(|l| l.limit));
    Ok(CapsNow { effective, raise, learned, default, history })
}

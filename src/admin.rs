//! The admin commands `status`, `violations` and `reset`, on the daemon's own key schema.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

use crate::config::{Config, StoreKind};
use crate::limits::{Cap, DatabaseSource, LimitsCache};
use crate::sender::{self, SenderError};
use crate::store::{KeySchema, StoreError, Violation, redis::connect};

/// Admin command faults.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("store = \"memory\" keeps its counters inside the daemon; this command needs store = \"redis\"")]
    MemoryStore,
    #[error("invalid user: {0}")]
    User(#[from] SenderError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

async fn open(config: &Config) -> Result<(MultiplexedConnection, KeySchema), AdminError> {
    if config.store == StoreKind::Memory {
        return Err(AdminError::MemoryStore);
    }
    let client = redis::Client::open(config.redis.url.as_str())?;
    // Interactive commands can wait longer than the request path.
    let timeout = config.redis.timeout.max(std::time::Duration::from_secs(2));
    Ok((connect(&client, timeout).await?, KeySchema::new(&config.redis.key_prefix)))
}

/// Sent today, caps and what remains, for one sender.
///
/// # Errors
/// [`AdminError`] for a bad user name or an unreachable Redis.
pub async fn status(config: &Config, user: &str) -> Result<String, AdminError> {
    let mailbox = sender::normalize(user)?;
    let (mut conn, keys) = open(config).await?;
    let day = config.timezone.moment(Utc::now()).day();
    let sent: Option<u64> = conn.get(keys.sender(day, &mailbox)).await?;
    let global: Option<u64> = conn.get(keys.global(day)).await?;
    let (sent, global) = (sent.unwrap_or(0), global.unwrap_or(0));

    let db = match config.database.as_ref().map(DatabaseSource::new).transpose() {
        Ok(db) => db,
        Err(e) => {
            eprintln!("warning: {e}; showing the config file's limits");
            None
        }
    };
    let has_db = db.is_some();
    let cache = LimitsCache::new(config.limits.clone(), db);
    if has_db && let Err(e) = cache.refresh().await {
        match cache.load_saved() {
            Ok(Some(_)) => eprintln!("warning: {e}; showing the limits of the cache file"),
            Ok(None) => eprintln!("warning: {e}; the database's caps are unknown"),
            Err(saved) => eprintln!("warning: {e}; {saved}; the database's caps are unknown"),
        }
    }
    let limits = cache.current();
    let show = |cap: Cap, used: u64| match cap {
        Cap::Enforced(n) => format!("{n} (remaining {})", n.saturating_sub(used)),
        Cap::Unknown => "unknown until the database answers (counted, not enforced)".to_owned(),
    };

    let mut out = String::new();
    let _ = writeln!(out, "user:        {mailbox}");
    let _ = writeln!(out, "date:        {day}");
    let _ = writeln!(out, "sent today:  {sent}");
    match limits.mailbox_cap(&mailbox) {
        Some(cap) => {
            let _ = writeln!(out, "mailbox cap: {}", show(cap, sent));
        }
        None => {
            let _ = writeln!(out, "mailbox cap: none (not opted in)");
        }
    }
    match limits.global {
        Cap::Enforced(n) => {
            let _ =
                writeln!(out, "server:      {global} of {n} today (remaining {})", n.saturating_sub(global));
        }
        Cap::Unknown => {
            let _ = writeln!(out, "server:      {global} today, cap {}", show(Cap::Unknown, global));
        }
    }
    let _ = writeln!(out, "limits from: {}", limits.origin.describe());
    Ok(out)
}

/// The most recent violations, newest first, as text lines or the stored JSON.
///
/// # Errors
/// [`AdminError`] when Redis is unreachable.
pub async fn violations(config: &Config, limit: usize, json: bool) -> Result<String, AdminError> {
    let (mut conn, keys) = open(config).await?;
    let stop = isize::try_from(limit).unwrap_or(isize::MAX).saturating_sub(1);
    let entries: Vec<String> =
        if limit == 0 { Vec::new() } else { conn.lrange(keys.violations(), 0, stop).await? };
    let mut out = String::new();
    for raw in entries {
        if json {
            let _ = writeln!(out, "{raw}");
            continue;
        }
        match serde_json::from_str::<Violation>(&raw) {
            Ok(v) => {
                let when = DateTime::<Utc>::from_timestamp(v.ts, 0).map_or_else(
                    || v.ts.to_string(),
                    |t| config.timezone.local(t).format("%Y-%m-%d %H:%M:%S").to_string(),
                );
                let _ = writeln!(
                    out,
                    "{when}  {:<6}  {}  limit={} count={} rcpt={} ip={} {}",
                    v.kind,
                    v.user,
                    v.limit,
                    v.count,
                    v.rcpt,
                    v.ip,
                    if v.enforced { "deferred" } else { "log-only" }
                );
            }
            Err(_) => {
                let _ = writeln!(out, "(unreadable) {raw}");
            }
        }
    }
    Ok(out)
}

/// Clears today's counter of one sender; returns what it held.
///
/// # Errors
/// [`AdminError`] for a bad user name or an unreachable Redis.
pub async fn reset(config: &Config, user: &str) -> Result<String, AdminError> {
    let mailbox = sender::normalize(user)?;
    let (mut conn, keys) = open(config).await?;
    let key = keys.sender(config.timezone.moment(Utc::now()).day(), &mailbox);
    let (old,): (Option<u64>,) =
        redis::pipe().atomic().get(&key).del(&key).ignore().query_async(&mut conn).await?;
    Ok(format!("reset {mailbox}: today's counter was {}, now 0\n", old.unwrap_or(0)))
}

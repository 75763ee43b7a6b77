//! `lock`, `unlock` and `locks`: an administrator's locks, on the keys the daemon's automatic
//! locks use, so every server sharing the Redis enforces them. Lock and unlock are notified
//! like the daemon's events (the command delivers them itself and says how it went).

use std::fmt::Write as _;

use serde_json::json;

use super::{AdminError, open, parse_duration, when};
use crate::clock;
use crate::config::Config;
use crate::notify::{Event, Notifier};
use crate::sender;
use crate::store::Lock;

/// Locks a sender (`--for`: until the duration passes; otherwise until `unlock`).
///
/// # Errors
/// [`AdminError`] for a bad name or duration, or an unreachable Redis.
pub async fn lock(
    config: &Config,
    user: &str,
    reason: &str,
    duration: Option<&str>,
) -> Result<String, AdminError> {
    let mailbox = sender::normalize(user)?;
    let secs = duration.map(parse_duration).transpose().map_err(AdminError::Usage)?;
    let now = clock::from_env().0.now().timestamp();
    let lock = Lock { ts: now, by: "admin".into(), reason: reason.to_owned() };
    let value = serde_json::to_string(&lock).map_err(|e| AdminError::Usage(e.to_string()))?;
    let was = open(config).await?.lock(&mailbox, &value, secs).await?;
    let mut out = format!(
        "{} {mailbox} {}, on every server sharing this Redis; undo with: email-ratelimit unlock {mailbox}\n",
        if was { "locked again:" } else { "locked" },
        duration.map_or_else(|| "until unlocked".to_owned(), |d| format!("for {d}"))
    );
    let event = Event::lock(now, &mailbox, "admin", reason, None, &config.server_name);
    out.push_str(&tell(config, &event).await);
    Ok(out)
}

/// Lifts a lock, and forgets the sender's client addresses and refusals of today.
///
/// # Errors
/// [`AdminError`] for a bad name, an unreachable Redis, or a sender that is not locked (exit 1,
/// nothing changed).
pub async fn unlock(config: &Config, user: &str) -> Result<String, AdminError> {
    let mailbox = sender::normalize(user)?;
    let now = config.timezone.moment(clock::from_env().0.now());
    let Some(old) = open(config).await?.unlock(&mailbox, now.day()).await? else {
        return Err(AdminError::Usage(format!("{mailbox} is not locked; nothing changed")));
    };
    let lock = Lock::parse(&old);
    let mut out = format!("unlocked {mailbox} (locked {} by {}: {})\n", when(lock.ts), lock.by, lock.reason);
    out.push_str(&tell(config, &Event::unlock(now.unix, &mailbox, &config.server_name)).await);
    Ok(out)
}

/// Every locked sender.
///
/// # Errors
/// [`AdminError`] when Redis is unreachable.
pub async fn locks(config: &Config, json_out: bool) -> Result<String, AdminError> {
    let all = open(config).await?.locks().await?;
    if json_out {
        let list: Vec<_> = all
            .iter()
            .map(|(user, value, _)| {
                let l = Lock::parse(value);
                json!({"user": user, "ts": l.ts, "by": l.by, "reason": l.reason})
            })
            .collect();
        return Ok(serde_json::Value::Array(list).to_string() + "\n");
    }
    if all.is_empty() {
        return Ok("no sender is locked\n".into());
    }
    let mut out = String::new();
    for (user, value, ttl) in &all {
        let l = Lock::parse(value);
        let expiry = match u64::try_from(*ttl) {
            Ok(left) if left > 0 => format!(" (expires in {})", super::span(left)),
            _ => String::new(),
        };
        let _ = writeln!(out, "{user}  locked {} by {}: {}{expiry}", when(l.ts), l.by, l.reason);
    }
    Ok(out)
}

/// Delivers the event as `[notify]` says; one line on how it went (empty when not configured).
async fn tell(config: &Config, event: &Event) -> String {
    if !config.notify.enabled() {
        return String::new();
    }
    let failed = Notifier::new(config.notify.clone()).deliver(event).await;
    if failed.is_empty() {
        "notified\n".into()
    } else {
        failed.iter().map(|f| format!("warning: notification failed: {f}\n")).collect()
    }
}

/// For `status`: the sender's lock, if any.
pub(crate) fn describe(value: &str) -> String {
    let l = Lock::parse(value);
    format!("locked {} by {}: {}", when(l.ts), l.by, l.reason)
}

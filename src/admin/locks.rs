//! `lock`, `unlock` and `locks`: an administrator's locks, on the keys the daemon's automatic
//! locks use, so every server sharing the Redis enforces them. Lock and unlock are notified
//! like the daemon's events (the command delivers them itself and says how it went).

use std::fmt::Write as _;

use serde_json::json;

use super::{AdminError, Span, Subject, audit, open, when};
use crate::clock;
use crate::config::Config;
use crate::notify::{Event, Notifier};
use crate::store::{Lock, LockNote};

/// Locks a sender, or every sender of a domain (`@example.com`) (`--for`: until the duration
/// passes; otherwise until `unlock`). A second lock keeps the first and adds to its history.
///
/// # Errors
/// [`AdminError`] for a bad name or duration, or an unreachable Redis.
pub async fn lock(
    config: &Config,
    subject: &Subject,
    reason: &str,
    duration: Option<&Span>,
) -> Result<String, AdminError> {
    let secs = duration.map(|d| d.secs);
    let now = clock::from_env().0.now().timestamp();
    let by = audit::actor();
    let first = Lock { ts: now, by: "admin".into(), reason: reason.to_owned(), history: Vec::new() };
    let note = LockNote { ts: now, by: by.clone(), reason: reason.to_owned() };
    let mut store = open(config).await?;
    // The lock's JSON, and the note added to the history of a lock already there.
    let value = serde_json::to_string(&first).map_err(|e| AdminError::Usage(e.to_string()))?;
    let noted = serde_json::to_string(&note).map_err(|e| AdminError::Usage(e.to_string()))?;
    let old = store.lock(subject.who(), &value, &noted, secs).await?;
    let how = duration.map_or_else(|| "until unlocked".to_owned(), |d| format!("for {d}"));
    let mut out = match &old {
        None => format!(
            "locked {subject} {how}, on every server sharing this Redis; undo with: email-ratelimit unlock {subject}\n"
        ),
        Some(old) => format!(
            "{subject} was already {}; that lock stays, this one is added to its history\n",
            describe(&config.timezone, old)
        ),
    };
    let action = audit::Action { action: "lock", user: &subject.to_string(), reason, ts: now };
    audit::record(&mut store, config.redis.violations_max, &action).await?;
    // A locked day earns no learned allowance (the daemon marks it too when the sender sends).
    if let (Subject::Mailbox(m), true) = (&subject, config.learn.enabled) {
        let today = config.timezone.moment(clock::from_env().0.now()).day();
        store.exclude_day(m, today, config.learn.days).await?;
    }
    match (&subject, &old) {
        (Subject::Mailbox(m), None) => {
            let event = Event::lock(now, m, "admin", reason, None, &config.server_name);
            out.push_str(&tell(config, &event).await);
        }
        (Subject::Domain(_), None) => out.push_str("(a domain's lock is not notified)\n"),
        _ => {}
    }
    Ok(out)
}

/// Lifts the lock of a sender (and forgets its client addresses and refusals of today) or of a
/// domain.
///
/// # Errors
/// [`AdminError`] for a bad name, an unreachable Redis, or a sender that is not locked (exit 1,
/// nothing changed).
pub async fn unlock(config: &Config, user: &str) -> Result<String, AdminError> {
    let subject = Subject::parse(user, &config.server_name)?;
    let now = config.timezone.moment(clock::from_env().0.now());
    let mut store = open(config).await?;
    let Some(old) = store.unlock(subject.who(), now.day()).await? else {
        return Err(AdminError::Usage(format!("{subject} is not locked; nothing changed")));
    };
    let mut out = format!("unlocked {subject} ({})\n", describe(&config.timezone, &old));
    let action = audit::Action { action: "unlock", user: &subject.to_string(), reason: "", ts: now.unix };
    audit::record(&mut store, config.redis.violations_max, &action).await?;
    if let Subject::Mailbox(m) = &subject {
        out.push_str(&tell(config, &Event::unlock(now.unix, m, &config.server_name)).await);
    }
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
                json!({"user": user, "ts": l.ts, "by": l.by, "reason": l.reason, "history": l.history})
            })
            .collect();
        return Ok(serde_json::Value::Array(list).to_string() + "\n");
    }
    if all.is_empty() {
        return Ok("no sender is locked\n".into());
    }
    let mut out = String::new();
    for (user, value, ttl) in &all {
        let expiry = match u64::try_from(*ttl) {
            Ok(left) if left > 0 => format!(" (expires in {})", super::span(left)),
            _ => String::new(),
        };
        let _ = writeln!(out, "{user}  {}{expiry}", describe(&config.timezone, value));
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

/// For `status`, `locks` and the commands: a lock, with the later locks of its history.
pub(crate) fn describe(zone: &crate::clock::Zone, value: &str) -> String {
    let l = Lock::parse(value);
    let mut out = format!("locked {} by {}: {}", when(zone, l.ts), l.by, l.reason);
    for n in &l.history {
        let _ = write!(out, "; again {} by {}: {}", when(zone, n.ts), n.by, n.reason);
    }
    out
}

//! The admin commands `status` (in `status.rs`), `violations`, `reset`, `top`, `raise` and the
//! locks (in `locks.rs`): they decide what to
//! show or change from the config and the limits, and ask [`RedisClient`] (the only part that
//! speaks Redis) to read or write it, on the daemon's own key schema and time zone.

use std::fmt::Write as _;

use serde_json::json;

use crate::clock;
use crate::config::{Config, MAX_CAP, StoreKind};
use crate::limits::{Cap, DatabaseSource, Limits, LimitsCache};
use crate::sender::{self, SenderError};
use crate::store::client::{RedisClient, SenderKind};
use crate::store::{StoreError, Violation};
use crate::window::{Rate, Unit, Window};

mod args;
mod audit;
mod caps_now;
mod health;
mod locks;
mod release;
mod status;
mod status_local;
mod trial;
mod websites;
pub use args::{Span, Subject};
pub(crate) use args::{local_name, mailbox_only, parse_caps};
pub use health::{Health, health};
pub use locks::{lock, locks, unlock};
pub use release::release;
pub use status::status;
pub use trial::trial;

/// Admin command faults.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("store = \"memory\" keeps its counters inside the daemon; this command needs store = \"redis\"")]
    MemoryStore,
    #[error("invalid user: {0}")]
    User(#[from] SenderError),
    #[error("invalid domain: {0:?}")]
    Domain(String),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Queue(#[from] crate::postqueue::QueueError),
}

pub(crate) async fn open(config: &Config) -> Result<RedisClient, AdminError> {
    if config.store == StoreKind::Memory {
        return Err(AdminError::MemoryStore);
    }
    RedisClient::open(&config.redis).await.map_err(|e| match e {
        // Postfix style: what it tried and why it failed.
        StoreError::Redis(e) => AdminError::Usage(format!(
            "connect to {}: {}",
            redis_target(&config.redis),
            crate::oserror::plain(&e)
        )),
        other => AdminError::Store(other),
    })
}

/// Where the admin commands look for Redis, as words (password masked).
fn redis_target(r: &crate::config::RedisSettings) -> String {
    if r.sentinels.is_empty() {
        return crate::config::redact(&r.url);
    }
    let sentinels: Vec<String> = r.sentinels.iter().map(|(h, p)| format!("{h}:{p}")).collect();
    format!("Redis master {:?} through the Sentinels {}", r.sentinel_master, sentinels.join(", "))
}

/// The limits as the daemon sees them: the database's if it answers, else its cache file.
pub(crate) async fn limits(config: &Config) -> std::sync::Arc<Limits> {
    let (limits, said) = limits_described(config).await;
    if let Some(warning) = said.warning {
        eprintln!("warning: {warning}");
    }
    limits
}

/// `config file` as it is: the embedded defaults when no file exists (`status` must not claim a
/// file there is none of).
pub(crate) fn file_words(config: &Config, words: &str) -> String {
    match (&config.source, words) {
        (None, "config file") => "embedded defaults (no config file)".into(),
        (None, "the config file") => "the embedded defaults (no config file)".into(),
        _ => words.to_owned(),
    }
}

/// Where the limits came from, for `status`.
pub(crate) struct LimitsSource {
    /// `config file`, `database (erl-columns), read now`, `cache file written ...`.
    pub what: String,
    /// Unix seconds of the data (the read, or the cache file's write), with a database.
    pub read_at: Option<i64>,
    pub warning: Option<String>,
}

pub(crate) async fn limits_described(config: &Config) -> (std::sync::Arc<Limits>, LimitsSource) {
    let db = match config.database.as_ref().map(DatabaseSource::new).transpose() {
        Ok(db) => db,
        Err(e) => {
            let said = LimitsSource {
                what: "config file".into(),
                read_at: None,
                warning: Some(format!("{e}; showing the config file's limits")),
            };
            return (LimitsCache::new(config.limits.clone(), None).current(), said);
        }
    };
    let layout = config.database.as_ref().map(|d| d.layout.as_str());
    let cache = LimitsCache::new(config.limits.clone(), db);
    let Some(layout) = layout else {
        let what = file_words(config, "config file");
        return (cache.current(), LimitsSource { what, read_at: None, warning: None });
    };
    let said = match cache.refresh().await {
        Ok(()) => LimitsSource {
            what: format!("database ({layout}), read now"),
            read_at: Some(chrono::Utc::now().timestamp()),
            warning: None,
        },
        Err(e) => match cache.load_saved() {
            Ok(Some(written)) => LimitsSource {
                what: format!(
                    "database ({layout}) unreachable; its cache file, written {}",
                    when(&config.timezone, written)
                ),
                read_at: Some(written),
                warning: Some(format!("{e}; showing the limits of the cache file")),
            },
            Ok(None) => LimitsSource {
                what: format!("database ({layout}) unreachable and no cache file: its caps are unknown"),
                read_at: None,
                warning: Some(format!("{e}; the database's caps are unknown")),
            },
            Err(saved) => LimitsSource {
                what: format!("database ({layout}) unreachable, cache file unusable: its caps are unknown"),
                read_at: None,
                warning: Some(format!("{e}; {saved}; the database's caps are unknown")),
            },
        },
    };
    (cache.current(), said)
}

/// A duration as people write it, the two largest units: `45s`, `5m`, `1h29m`, `2d3h`.
#[must_use]
pub fn span(secs: u64) -> String {
    let parts =
        [(secs / 86_400, "d"), (secs % 86_400 / 3600, "h"), (secs % 3600 / 60, "m"), (secs % 60, "s")];
    let shown: Vec<String> = parts
        .iter()
        .skip_while(|(n, _)| *n == 0)
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if shown.is_empty() { "0s".into() } else { shown.concat() }
}

/// Since when a window's counter counts: `today`, or `since 18:00` for a shorter window.
pub(crate) fn since(window: Window, local: chrono::NaiveDateTime) -> String {
    match window {
        Window::Day => "today".to_owned(),
        w => format!("since {}", w.start(local).format("%H:%M")),
    }
}

pub(crate) fn when(zone: &clock::Zone, ts: i64) -> String {
    zone.show_unix(ts)
}

/// The most recent violations, newest first, as text lines or the stored JSON.
///
/// # Errors
/// [`AdminError`] when Redis is unreachable.
pub async fn violations(
    config: &Config,
    limit: usize,
    only: &Only,
    json: bool,
) -> Result<String, AdminError> {
    let user = only.user.as_ref().map(ToString::to_string);
    let since = only.since.as_ref().map(|s| s.secs);
    let filtered = user.is_some() || since.is_some();
    // With a filter the whole list is read (at most violations_max records) and the newest
    // `limit` matches are kept.
    let mut entries = open(config).await?.violations(if filtered { usize::MAX } else { limit }).await?;
    if filtered {
        let oldest =
            since.map(|s| clock::from_env().0.now().timestamp() - i64::try_from(s).unwrap_or(i64::MAX));
        entries.retain(|raw| {
            let v: serde_json::Value = serde_json::from_str(raw).unwrap_or_default();
            let who = v["user"].as_str().unwrap_or_default();
            let who_matches = user.as_deref().is_none_or(|u| match u.strip_prefix('@') {
                Some(d) => who.rsplit_once('@').is_some_and(|(_, domain)| domain == d) || who == u,
                None => who == u,
            });
            who_matches && oldest.is_none_or(|o| v["ts"].as_i64().is_some_and(|ts| ts >= o))
        });
        entries.truncate(limit);
    }
    let mut out = String::new();
    for raw in entries {
        if json {
            let _ = writeln!(out, "{raw}");
            continue;
        }
        let stamp = |ts: i64| when(&config.timezone, ts);
        let value: serde_json::Value = serde_json::from_str(&raw).unwrap_or_default();
        if value["type"] == "admin" {
            let text = |k: &str| value[k].as_str().unwrap_or_default().to_owned();
            let _ = writeln!(
                out,
                "{}  admin   {}  {} by={} reason=\"{}\"",
                stamp(value["ts"].as_i64().unwrap_or_default()),
                text("user"),
                text("action"),
                text("by"),
                text("reason")
            );
            continue;
        }
        match serde_json::from_str::<Violation>(&raw) {
            Ok(v) => {
                let when = stamp(v.ts);
                // A message cap says so (`limit=10 messages`); a recipient cap is the contract's
                // plain number.
                let unit = if v.unit.as_deref() == Some("msg") { " messages" } else { "" };
                let _ = writeln!(
                    out,
                    "{when}  {:<6}  {}  limit={}{unit} count={} rcpt={} ip={} {} window={}",
                    v.kind,
                    v.user,
                    v.limit,
                    v.count,
                    v.rcpt,
                    v.ip,
                    match (v.enforced, v.oversize) {
                        (false, _) => "log-only",
                        // Website mail over its cap goes to the hold queue (the log says HOLD).
                        (true, false) if v.user.starts_with(sender::LOCAL_PREFIX) => "held",
                        (true, false) => "deferred",
                        (true, true) => "rejected (oversize)",
                    },
                    v.window,
                );
            }
            Err(_) => {
                let _ = writeln!(out, "(unreadable) {raw}");
            }
        }
    }
    Ok(out)
}

/// Which violation records `violations` prints.
#[derive(Debug, Default)]
pub struct Only {
    /// A sender, or a domain for all of its senders.
    pub user: Option<Subject>,
    /// Records of that last stretch only.
    pub since: Option<Span>,
}

/// What a count of `unit` is called after its number: nothing for recipients (the contract's
/// `N used`), ` messages` for a message cap.
#[must_use]
pub fn of(unit: Unit) -> &'static str {
    match unit {
        Unit::Rcpt => "",
        Unit::Msg => " messages",
    }
}

/// Clears the counters of the current windows of a sender, a domain (`@example.com`) or (no
/// user: `--server`) the server (`global`): the daily one and each window of every cap in force (the config's or the
/// database's, and a raise's), and a sender's score in today's `top`; returns what they held.
///
/// # Errors
/// [`AdminError`] for a bad name or an unreachable Redis.
pub async fn reset(config: &Config, user: Option<&str>) -> Result<String, AdminError> {
    let subject = match user {
        Some(u) => &Subject::parse(u, &config.server_name)?,
        None => &Subject::Server,
    };
    let mut store = open(config).await?;
    let limits = limits(config).await;
    let mut windows = vec![(Window::Day, Unit::Rcpt)];
    let mut add = |w: (Window, Unit)| {
        if !windows.contains(&w) {
            windows.push(w);
        }
    };
    match subject {
        Subject::Mailbox(mailbox) => {
            if let Some(rates) =
                store.raise(mailbox).await?.and_then(|(r, _)| Rate::parse_list(&r, MAX_CAP).ok())
            {
                rates.iter().for_each(|r| add((r.window, r.unit)));
            }
            limits.sender_caps(mailbox).caps.iter().for_each(|&(w, u, _)| add((w, u)));
        }
        Subject::Domain(domain) => limits.domain_caps(domain).iter().for_each(|&(w, u, _)| add((w, u))),
        Subject::Server => limits.server_caps().iter().for_each(|&(w, u, _)| add((w, u))),
    }
    let at = config.timezone.moment(clock::from_env().0.now());
    let (cleared, top) = store.reset(at.local, &windows, subject.who()).await?;
    let day = cleared.first().map_or(0, |c| c.1);
    let mut out = format!("reset {subject}: today's counter was {day}, now 0\n");
    for (key, old) in cleared.iter().skip(1) {
        let _ = writeln!(out, "  {key} was {old}, now 0");
    }
    if let Some(score) = top {
        let _ = writeln!(out, "  today's top score was {score}, now 0");
    }
    let action = audit::Action { action: "reset", user: &subject.to_string(), reason: "", ts: at.unix };
    audit::record(&mut store, config.redis.violations_max, &action).await?;
    Ok(out)
}

/// What `top` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopOf {
    /// Authenticated SMTP senders.
    Senders,
    /// Domains, by their own counters.
    Domains,
    /// Local users (website mail).
    Local,
}

/// Today's (or `date`'s) biggest senders (or domains, or local users) with their caps.
///
/// # Errors
/// [`AdminError`] when Redis is unreachable.
pub async fn top(
    config: &Config,
    limit: usize,
    of: TopOf,
    date: Option<chrono::NaiveDate>,
    json_out: bool,
) -> Result<String, AdminError> {
    let mut store = open(config).await?;
    let day = date.unwrap_or_else(|| config.timezone.moment(clock::from_env().0.now()).day());
    let rows = match of {
        TopOf::Domains => store.top_domains(day, limit).await?,
        TopOf::Senders => store.top(day, limit, SenderKind::Smtp).await?,
        TopOf::Local => store.top(day, limit, SenderKind::Local).await?,
    };
    if json_out {
        let list: Vec<serde_json::Value> =
            rows.iter().map(|(who, n)| json!({"user": who, "sent": n})).collect();
        return Ok(serde_json::Value::Array(list).to_string() + "\n");
    }
    let limits = limits(config).await;
    let today = config.timezone.moment(clock::from_env().0.now()).day();
    let mut out = String::new();
    for (who, sent) in rows {
        let first = |caps: &[crate::limits::Listed]| {
            caps.first().map(|(w, u, c)| match c {
                Cap::Enforced(limit) => Rate { limit: *limit, window: *w, unit: *u }.to_string(),
                Cap::Unknown => format!("unknown/{w}"),
            })
        };
        let cap = if let Some(domain) = who.strip_prefix('@') {
            first(limits.domain_caps(domain))
        } else if let Some(rest) = who.strip_prefix(sender::LOCAL_PREFIX) {
            // Website mail (local:web12@mx1): its [limits.local] caps.
            first(&limits.local_caps(rest.rsplit_once('@').map_or(rest, |(n, _)| n)).caps)
        } else if let Ok(m) = sender::normalize(&who) {
            // What the daemon applies (a raise, a learned allowance): its daily cap.
            let now = caps_now::caps_now(&mut store, &limits, &config.learn, &m, today).await?;
            let daily =
                now.effective.caps.caps.into_iter().find(|(w, u, _)| (*w, *u) == (Window::Day, Unit::Rcpt));
            daily.map(|(_, _, c)| format!("{c}/1d"))
        } else {
            None
        };
        let _ = writeln!(out, "{sent:>8}  {who}  cap {}", cap.unwrap_or_else(|| "none".into()));
    }
    Ok(out)
}

/// Replaces a sender's mailbox caps with `rates` (`500/1d`, `100/1h`...) for `duration`.
///
/// # Errors
/// [`AdminError`] for a cap below the one in force (without [`Lowering::Allowed`]), or an
/// unreachable Redis.
pub async fn raise(
    config: &Config,
    mailbox: &sender::Mailbox,
    rates: &[Rate],
    duration: &Span,
    lowering: Lowering,
) -> Result<String, AdminError> {
    let secs = duration.secs;
    if lowering == Lowering::Refused {
        // The caps the config file or the database give it (a raise replaces them).
        let in_force = limits(config).await.sender_caps(mailbox).caps;
        for r in rates {
            if let Some(&(_, _, Cap::Enforced(n))) =
                in_force.iter().find(|(w, u, _)| *w == r.window && *u == r.unit)
                && r.limit < n
            {
                return Err(AdminError::Usage(format!(
                    "{r} is below the {}{} cap in force for {mailbox} ({n}): a raise that lowers needs --lower; nothing changed",
                    r.window,
                    if r.unit == Unit::Msg { " message" } else { "" }
                )));
            }
        }
    }
    let text = Rate::list(rates);
    let mut store = open(config).await?;
    store.set_raise(mailbox, rates, secs).await?;
    let reason = format!("{text} for {}", span(secs));
    let at = clock::from_env().0.now().timestamp();
    let action = audit::Action { action: "raise", user: mailbox.as_str(), reason: &reason, ts: at };
    audit::record(&mut store, config.redis.violations_max, &action).await?;
    Ok(format!("raised {mailbox} to {text} for {}, on every server sharing this Redis\n", span(secs)))
}

/// Whether `raise` may set a cap below the one in force for the same window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lowering {
    Refused,
    Allowed,
}

/// Ends a sender's raise now.
///
/// # Errors
/// [`AdminError`] for a bad name, an unreachable Redis, or a sender without a raise (exit 1,
/// nothing changed).
pub async fn cancel_raise(config: &Config, mailbox: &sender::Mailbox) -> Result<String, AdminError> {
    let mut store = open(config).await?;
    let Some(caps) = store.cancel_raise(mailbox).await? else {
        return Err(AdminError::Usage(format!("{mailbox} has no raise; nothing changed")));
    };
    let reason = format!("cancelled {caps}");
    let at = clock::from_env().0.now().timestamp();
    let action = audit::Action { action: "raise", user: mailbox.as_str(), reason: &reason, ts: at };
    audit::record(&mut store, config.redis.violations_max, &action).await?;
    Ok(format!(
        "cancelled the raise of {mailbox} ({caps}); its own caps apply again on every server sharing this Redis\n"
    ))
}

/// Records an admin action done elsewhere (`install.sh enforce`): syslog and the violations list.
///
/// # Errors
/// [`AdminError`] for a bad action name or an unreachable Redis.
pub async fn record(config: &Config, action: &str, user: &str, reason: &str) -> Result<String, AdminError> {
    if action.is_empty() || !action.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(AdminError::Usage(format!("{action:?}: an action is a word like enforce or log-only")));
    }
    if user.contains(char::is_whitespace) || user.is_empty() {
        return Err(AdminError::Usage(format!("--user {user:?}: one word (a sender, @domain or global)")));
    }
    let mut store = open(config).await?;
    let ts = clock::from_env().0.now().timestamp();
    audit::record(&mut store, config.redis.violations_max, &audit::Action { action, user, reason, ts })
        .await?;
    Ok(format!("recorded: action={action} user={user} by={}\n", audit::actor()))
}

/// A sender; a domain is refused with what to do instead.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_like_durations() {
        // Issue 21 item 9: `1h29m`, not `5397 s`.
        for (secs, text) in [
            (0, "0s"),
            (45, "45s"),
            (300, "5m"),
            (5397, "1h29m"),
            (3600, "1h"),
            (90_061, "1d1h"),
            (172_800, "2d"),
            (86_460, "1d"),
        ] {
            assert_eq!(span(secs), text, "{secs}");
        }
    }
}

//! Raw settings -> typed settings: every check, with the key it concerns in the error.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{RawConfig, RawDatabase, RawLimits, RawListen, RawLog, RawRedis};
use super::{
    Config, ConfigError, DatabaseSettings, DomainEntry, Layout, LimitSettings, ListenSettings, LogSettings,
    MAX_CAP, MAX_RECIPIENTS, MAX_TIMEOUT_MS, MAX_VIOLATIONS, MailboxEntry, MetricsListen, RedisSettings,
    SocketGroup, invalid, protect,
};
use crate::clock::Zone;
use crate::sender;
use crate::window::{Rate, Unit, Window};

pub(super) fn validate(raw: RawConfig, source: Option<PathBuf>) -> Result<Config, ConfigError> {
    let limits = validate_limits(raw.limits)?;
    let mut refused = Vec::new();
    let milter = super::local::validate_milter(&raw.milter, &mut refused)?;
    Ok(Config {
        mode: raw.mode,
        enforce_from: enforce_from(&raw.enforce_from)?,
        store: raw.store,
        timezone: Zone::parse(&raw.timezone).map_err(|e| invalid("timezone", e))?,
        server_name: protect::server_name(&raw.server_name)?,
        listen: validate_listen(raw.listen)?,
        learn: super::learn::validate_learn(&raw.learn, &limits)?,
        limits,
        redis: validate_redis(raw.redis)?,
        database: raw.database.map(validate_database).transpose()?,
        protect: protect::validate_protect(&raw.protect)?,
        notify: protect::validate_notify(raw.notify)?,
        metrics: validate_metrics(&raw.metrics)?,
        milter,
        daemon: super::daemon::validate_daemon(&raw.daemon)?,
        log: validate_log(raw.log)?,
        replies: super::replies::validate_replies(&raw.replies)?,
        refused,
        source,
    })
}

/// `enforce_from = "YYYY-MM-DD"` (empty: none).
fn enforce_from(text: &str) -> Result<Option<chrono::NaiveDate>, ConfigError> {
    if text.is_empty() {
        return Ok(None);
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| invalid("enforce_from", format!("{text:?} is not a date like \"2026-12-03\"")))
}

fn validate_listen(raw: RawListen) -> Result<ListenSettings, ConfigError> {
    if !raw.socket.is_absolute() {
        return Err(invalid("listen.socket", "must be an absolute path"));
    }
    let socket_mode = socket_mode("listen.socket_mode", &raw.socket_mode)?;
    let socket_group = if raw.socket_group.is_empty() {
        None
    } else {
        Some(
            socket_group("listen.socket_group", &raw.socket_group)?
                .ok_or_else(|| invalid("listen.socket_group", format!("no group {}", raw.socket_group)))?,
        )
    };
    let tcp_allow = super::tcp_allow::validate(&raw.tcp_allow, raw.tcp_allow_remote)?;
    let tcp = if raw.tcp.is_empty() {
        None
    } else {
        let addr: SocketAddr =
            raw.tcp.parse().map_err(|_| invalid("listen.tcp", "must be an address like 127.0.0.1:10040"))?;
        if !addr.ip().is_loopback() && tcp_allow == super::TcpAllow::Loopback {
            return Err(invalid(
                "listen.tcp",
                "not a loopback address; name the clients allowed in listen.tcp_allow (your Postfix hosts' addresses)",
            ));
        }
        Some(addr)
    };
    if raw.max_connections == 0 {
        return Err(invalid("listen.max_connections", "must be at least 1"));
    }
    if raw.idle_timeout_secs == 0 {
        return Err(invalid("listen.idle_timeout_secs", "must be at least 1"));
    }
    Ok(ListenSettings {
        socket: raw.socket,
        socket_mode,
        socket_group,
        tcp,
        tcp_allow,
        max_connections: raw.max_connections,
        idle_timeout: Duration::from_secs(raw.idle_timeout_secs),
    })
}

/// A socket's permissions, octal (`"0660"`); never open to every local user.
pub(super) fn socket_mode(key: &'static str, text: &str) -> Result<u32, ConfigError> {
    let mode = u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| invalid(key, "must be octal permissions like \"0660\""))?;
    // Any local user who can connect can burn any sender's quota (or answer for Postfix).
    if mode & 0o007 != 0 {
        return Err(invalid(
            key,
            format!("{mode:04o} lets every local user connect; the last digit must be 0 (e.g. \"0660\")"),
        ));
    }
    Ok(mode)
}

/// A socket's group by name: `None` when there is no such group.
pub(super) fn socket_group(key: &'static str, name: &str) -> Result<Option<SocketGroup>, ConfigError> {
    let group = nix::unistd::Group::from_name(name).map_err(|e| invalid(key, e.to_string()))?;
    Ok(group.map(|g| SocketGroup { name: name.to_owned(), gid: g.gid.as_raw() }))
}

/// A cap: at least 1 (0 would defer everything; leave a mailbox out to leave it uncapped), at
/// most [`MAX_CAP`].
fn cap(key: &'static str, value: u64) -> Result<u64, ConfigError> {
    if (1..=MAX_CAP).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(key, format!("{value}: must be 1 to {MAX_CAP}")))
    }
}

/// `max_rcpt_per_message`: 0 (off) to [`MAX_RECIPIENTS`].
fn per_message(key: &'static str, value: u64) -> Result<u32, ConfigError> {
    u32::try_from(value)
        .ok()
        .filter(|n| u64::from(*n) <= MAX_RECIPIENTS)
        .ok_or_else(|| invalid(key, format!("{value}: must be 0 (off) to {MAX_RECIPIENTS}")))
}

/// A list of caps: `daily` (as `N/1d`) plus `rates`, each window and unit at most once.
pub(super) fn caps(
    key: &'static str,
    daily: Option<u64>,
    rates: &[String],
) -> Result<Vec<Rate>, ConfigError> {
    let mut out: Vec<Rate> = Vec::with_capacity(rates.len() + 1);
    if let Some(d) = daily {
        out.push(Rate::rcpt(cap(key, d)?, Window::Day));
    }
    for text in rates {
        let rate = Rate::parse(text, MAX_CAP).map_err(|e| invalid(key, e))?;
        if out.iter().any(|r| r.window == rate.window && r.unit == rate.unit) {
            return Err(invalid(
                key,
                if rate.window == Window::Day && rate.unit == Unit::Rcpt {
                    format!("{text:?}: a daily cap is given twice (daily = N means \"N/1d\")")
                } else {
                    format!("{text:?}: two {} caps for the window {}", rate.unit.name(), rate.window)
                },
            ));
        }
        out.push(rate);
    }
    Ok(out)
}

fn validate_limits(raw: RawLimits) -> Result<LimitSettings, ConfigError> {
    let global = cap("limits.global", raw.global)?;
    let default_mailbox = cap("limits.default_mailbox", raw.default_mailbox)?;
    let max_recipients = u32::try_from(raw.max_recipients)
        .ok()
        .filter(|n| (1..=MAX_RECIPIENTS).contains(&u64::from(*n)))
        .ok_or_else(|| invalid("limits.max_recipients", format!("must be 1 to {MAX_RECIPIENTS}")))?;
    // `global` and `default_mailbox` are the daily caps; the lists add shorter windows.
    let global_rates = caps("limits.global_rates", Some(global), &raw.global_rates)?.split_off(1);
    let default_mailbox_rates =
        caps("limits.default_mailbox_rates", Some(default_mailbox), &raw.default_mailbox_rates)?.split_off(1);
    let mut mailboxes: Vec<MailboxEntry> = Vec::with_capacity(raw.mailbox.len());
    // A set of the names seen: a file may list 100,000 mailboxes (a scan per entry took 13 s).
    let mut seen = HashMap::with_capacity(raw.mailbox.len());
    for (i, entry) in raw.mailbox.into_iter().enumerate() {
        let mailbox = sender::normalize(&entry.email)
            .map_err(|e| invalid("limits.mailbox.email", format!("{:?}: {e}", entry.email)))?;
        if let Some(first) = seen.insert(mailbox.as_str().to_owned(), i + 1) {
            return Err(invalid(
                "limits.mailbox.email",
                format!(
                    "{mailbox} is listed twice: [[limits.mailbox]] #{} (email = {:?}) repeats #{first}; keep one",
                    i + 1,
                    entry.email
                ),
            ));
        }
        let own = match (entry.daily, entry.rates) {
            (None, None) => None,
            (daily, rates) => Some(
                caps("limits.mailbox.daily", daily, &[])
                    .and_then(|mut d| {
                        let more = caps("limits.mailbox.rates", None, rates.as_deref().unwrap_or_default())?;
                        for r in more {
                            if d.iter().any(|x| x.window == r.window && x.unit == r.unit) {
                                return Err(invalid(
                                    "limits.mailbox.rates",
                                    format!("{r}: daily is given too (daily = N means \"N/1d\")"),
                                ));
                            }
                            d.push(r);
                        }
                        Ok(d)
                    })
                    .map_err(|e| match e {
                        ConfigError::Invalid { key, reason } => invalid(key, format!("{mailbox}: {reason}")),
                        other => other,
                    })?,
            ),
        };
        let max_rcpt_per_message = entry
            .max_rcpt_per_message
            .map(|n| per_message("limits.mailbox.max_rcpt_per_message", n))
            .transpose()
            .map_err(|e| match e {
                ConfigError::Invalid { key, reason } => invalid(key, format!("{mailbox}: {reason}")),
                other => other,
            })?;
        mailboxes.push(MailboxEntry { mailbox, caps: own, exempt: entry.exempt, max_rcpt_per_message });
    }
    drop(seen);
    let mut domains: Vec<DomainEntry> = Vec::with_capacity(raw.domain.len());
    let mut seen = HashMap::with_capacity(raw.domain.len());
    for (i, entry) in raw.domain.into_iter().enumerate() {
        // "*": the catch-all entry of every domain without one of its own.
        let domain = if entry.domain.trim() == super::CATCH_ALL {
            super::CATCH_ALL.to_owned()
        } else {
            sender::normalize_domain(&entry.domain).map_err(|_| {
                invalid(
                    "limits.domain.domain",
                    format!("{:?} is not a domain name (or \"*\" for every domain)", entry.domain),
                )
            })?
        };
        if let Some(first) = seen.insert(domain.clone(), i + 1) {
            return Err(invalid(
                "limits.domain.domain",
                format!(
                    "{domain} is listed twice: [[limits.domain]] #{} (domain = {:?}) repeats #{first}; keep one",
                    i + 1,
                    entry.domain
                ),
            ));
        }
        let named = |e: ConfigError| match e {
            ConfigError::Invalid { key, reason } => invalid(key, format!("{domain}: {reason}")),
            other => other,
        };
        let aggregate = caps("limits.domain.rates", entry.daily, &entry.rates).map_err(named)?;
        let mailbox_caps = match (entry.mailbox_daily, entry.mailbox_rates) {
            (None, None) => None,
            (daily, rates) => Some(
                caps("limits.domain.mailbox_rates", daily, rates.as_deref().unwrap_or_default())
                    .map_err(named)?,
            ),
        };
        let max_rcpt_per_message = entry
            .max_rcpt_per_message
            .map(|n| per_message("limits.domain.max_rcpt_per_message", n))
            .transpose()
            .map_err(named)?;
        domains.push(DomainEntry { domain, caps: aggregate, mailbox_caps, max_rcpt_per_message });
    }
    Ok(LimitSettings {
        global,
        global_rates,
        default_mailbox,
        default_mailbox_rates,
        max_recipients,
        oversize: raw.oversize,
        max_rcpt_per_message: per_message("limits.max_rcpt_per_message", raw.max_rcpt_per_message)?,
        mailboxes,
        domains,
        local: super::local::validate_local(raw.local)?,
    })
}

fn validate_redis(raw: RawRedis) -> Result<RedisSettings, ConfigError> {
    super::urls::check_redis("redis.url", &raw.url)?;
    if raw.key_prefix.is_empty() || raw.key_prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("redis.key_prefix", "must be non-empty, without whitespace"));
    }
    // Postfix gives the whole policy check 5 s; a Redis wait near that stalls every message.
    if !(1..=MAX_TIMEOUT_MS).contains(&raw.timeout_ms) {
        return Err(invalid("redis.timeout_ms", format!("must be 1 to {MAX_TIMEOUT_MS}")));
    }
    if !(1..=MAX_VIOLATIONS).contains(&raw.violations_max) {
        return Err(invalid("redis.violations_max", format!("must be 1 to {MAX_VIOLATIONS}")));
    }
    let sentinels = raw
        .sentinels
        .iter()
        .map(|s| {
            let (host, port) = s.rsplit_once(':').unwrap_or((s.as_str(), "26379"));
            let host = host.trim_start_matches('[').trim_end_matches(']');
            match port.parse::<u16>() {
                Ok(port) if port > 0 && !host.is_empty() && !host.contains(char::is_whitespace) => {
                    Ok((host.to_owned(), port))
                }
                _ => Err(invalid("redis.sentinels", format!("{s:?} is not host:port"))),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !sentinels.is_empty() && raw.sentinel_master.trim().is_empty() {
        return Err(invalid("redis.sentinel_master", "the name the Sentinels monitor the master under"));
    }
    Ok(RedisSettings {
        url: raw.url,
        key_prefix: raw.key_prefix,
        timeout: Duration::from_millis(raw.timeout_ms),
        violations_max: raw.violations_max,
        sentinels,
        sentinel_master: raw.sentinel_master,
        sentinel_password: (!raw.sentinel_password.is_empty()).then_some(raw.sentinel_password),
    })
}

/// A `[database]` section without a URL is an error: it would silently leave the panel's caps
/// unread.
fn validate_database(raw: RawDatabase) -> Result<DatabaseSettings, ConfigError> {
    if raw.url.is_empty() {
        return Err(invalid("database.url", "required when [database] is present"));
    }
    super::urls::check_database("database.url", &raw.url)?;
    let layout = match raw.layout.as_str() {
        "er-tables" => Layout::ErTables,
        "erl-columns" => Layout::ErlColumns,
        other => {
            return Err(invalid(
                "database.layout",
                format!("{other:?}: must be \"er-tables\" or \"erl-columns\""),
            ));
        }
    };
    if layout == Layout::ErlColumns && raw.server_id == 0 {
        return Err(invalid(
            "database.server_id",
            "the erl-columns layout needs this server's id in ISPConfig (>= 1; server_id in /usr/local/ispconfig/server/lib/config.inc.php)",
        ));
    }
    let master_url = if raw.master_url.is_empty() {
        None
    } else {
        super::urls::check_database("database.master_url", &raw.master_url)?;
        if layout != Layout::ErlColumns {
            return Err(invalid(
                "database.master_url",
                "only the erl-columns layout reads a master database",
            ));
        }
        Some(raw.master_url.replacen("mariadb://", "mysql://", 1))
    };
    if raw.refresh_secs == 0 {
        return Err(invalid("database.refresh_secs", "must be at least 1"));
    }
    if !(1..=300).contains(&raw.timeout_secs) {
        return Err(invalid("database.timeout_secs", "must be 1 to 300"));
    }
    if raw.global_query.trim().is_empty() || raw.mailbox_query.trim().is_empty() {
        return Err(invalid("database", "global_query and mailbox_query must not be empty"));
    }
    if !raw.cache_file.is_absolute() {
        return Err(invalid("database.cache_file", "must be an absolute path"));
    }
    Ok(DatabaseSettings {
        // sqlx only knows the mysql scheme; MariaDB speaks the same protocol.
        url: raw.url.replacen("mariadb://", "mysql://", 1),
        layout,
        master_url,
        refresh: Duration::from_secs(raw.refresh_secs),
        server_id: raw.server_id,
        timeout: Duration::from_secs(raw.timeout_secs),
        global_query: raw.global_query,
        mailbox_query: raw.mailbox_query,
        cache_file: raw.cache_file,
    })
}

/// A loopback address or a Unix socket path; anything else only with `allow_remote`.
fn validate_metrics(raw: &super::raw::RawMetrics) -> Result<Option<MetricsListen>, ConfigError> {
    if raw.listen.is_empty() {
        return Ok(None);
    }
    if raw.listen.starts_with('/') {
        return Ok(Some(MetricsListen::Unix(PathBuf::from(&raw.listen))));
    }
    let addr: SocketAddr = raw.listen.parse().map_err(|_| {
        invalid("metrics.listen", "must be an address like 127.0.0.1:9425 or an absolute socket path")
    })?;
    if !addr.ip().is_loopback() && !raw.allow_remote {
        return Err(invalid(
            "metrics.listen",
            "not a loopback address; set metrics.allow_remote = true to serve it to the network",
        ));
    }
    Ok(Some(MetricsListen::Tcp(addr)))
}

/// The levels `[log] level` accepts, as the message of a refusal lists them.
const LEVELS: &str =
    "error, warn, info, debug, trace, off (or the syslog words emerg, alert, crit, err, warning, notice)";

/// One level word, the syslog names mapped to ours.
fn level(word: &str) -> Option<&'static str> {
    Some(match word.to_ascii_lowercase().as_str() {
        "error" | "err" | "crit" | "alert" | "emerg" => "error",
        "warn" | "warning" => "warn",
        "info" | "notice" => "info",
        "debug" => "debug",
        "trace" => "trace",
        "off" => "off",
        _ => return None,
    })
}

/// `[log] level`: a level word, or a list of them with targets (`info,email_ratelimit=debug`).
/// Anything else is refused: the filter syntax would take an unknown word (`verbose`) for a
/// target name and silence every line, errors included.
fn validate_log(raw: RawLog) -> Result<LogSettings, ConfigError> {
    let mut parts = Vec::new();
    for part in raw.level.split(',').map(str::trim) {
        let (target, word) = match part.split_once('=') {
            Some((target, word)) if !target.trim().is_empty() => (Some(target.trim()), word.trim()),
            _ => (None, part),
        };
        let Some(level) = level(word) else {
            return Err(invalid("log.level", format!("{:?} is not a level; use one of {LEVELS}", raw.level)));
        };
        parts.push(target.map_or_else(|| level.to_owned(), |t| format!("{t}={level}")));
    }
    let level = parts.join(",");
    tracing_subscriber::EnvFilter::try_new(&level).map_err(|e| invalid("log.level", e.to_string()))?;
    Ok(LogSettings { level, target: raw.target })
}

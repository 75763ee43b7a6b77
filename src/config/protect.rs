//! `server_name`, `[protect]` and `[notify]`: the stolen-account settings.

use super::raw::{RawNotify, RawProtect};
use super::{ConfigError, NotifySettings, ProtectSettings, invalid};
use crate::sender;

/// Bounds: far above any real sender's day, far below what a typo could mean.
pub const MAX_CLIENT_IPS: u64 = 100_000;
pub const MAX_LOCK_AFTER: u64 = 1_000_000;

/// The host name, as `server_name` defaults to.
#[must_use]
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A name that fits a log line, a JSON string and a mail header: printable, no spaces.
pub(super) fn server_name(raw: &str) -> Result<String, ConfigError> {
    if raw.is_empty() {
        return Ok(host_name());
    }
    if raw.len() > 255 || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("server_name", "at most 255 characters, without spaces or control characters"));
    }
    Ok(raw.to_owned())
}

pub(super) fn validate_protect(raw: &RawProtect) -> Result<ProtectSettings, ConfigError> {
    let bounded = |key: &'static str, value: u64, max: u64| {
        u32::try_from(value)
            .ok()
            .filter(|v| u64::from(*v) <= max)
            .ok_or_else(|| invalid(key, format!("{value}: must be 0 (off) to {max}")))
    };
    Ok(ProtectSettings {
        max_client_ips: bounded("protect.max_client_ips", raw.max_client_ips, MAX_CLIENT_IPS)?,
        lock: raw.lock,
        lock_after_refusals: bounded("protect.lock_after_refusals", raw.lock_after_refusals, MAX_LOCK_AFTER)?,
    })
}

/// An address that can go into a mail header unchanged (no spaces, newlines or commas); kept
/// as written.
fn address(key: &'static str, raw: &str) -> Result<String, ConfigError> {
    sender::normalize(raw).map_err(|e| invalid(key, format!("{raw:?}: {e}")))?;
    if !sender::is_plain_address(raw) {
        return Err(invalid(key, format!("{raw:?}: not a plain ASCII address like postmaster@example.com")));
    }
    Ok(raw.to_owned())
}

/// A sendmail argument without `-t` ("read the recipients from the headers"): `-t` goes, a flag
/// group keeps its other flags (`-ti` -> `-i`); anything else is kept as it is.
fn without_t(arg: &str) -> Option<String> {
    match arg.strip_prefix('-') {
        Some(flags) if flags.contains('t') && flags.chars().all(|c| "tiUv".contains(c)) => {
            let rest: String = flags.chars().filter(|&c| c != 't').collect();
            (!rest.is_empty()).then(|| format!("-{rest}"))
        }
        _ => Some(arg.to_owned()),
    }
}

pub(super) fn validate_notify(raw: RawNotify) -> Result<NotifySettings, ConfigError> {
    let admin = raw.admin.iter().map(|a| address("notify.admin", a)).collect::<Result<Vec<_>, _>>()?;
    let webhook = if raw.webhook.is_empty() {
        None
    } else {
        let url = url::Url::parse(&raw.webhook).map_err(|e| invalid("notify.webhook", e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(invalid("notify.webhook", "must be an http:// or https:// URL"));
        }
        Some(raw.webhook)
    };
    let mut sendmail: Vec<String> = raw.sendmail.split_whitespace().map(str::to_owned).collect();
    if !sendmail.first().is_some_and(|p| p.starts_with('/')) {
        return Err(invalid(
            "notify.sendmail",
            "must start with an absolute path, e.g. \"/usr/sbin/sendmail\"",
        ));
    }
    // Recipients go on the command line, never from the headers: with Postfix, `-t` would add
    // the header recipients to the argument recipients.
    let args: Vec<String> = sendmail.split_off(1);
    let kept: Vec<String> = args.iter().filter_map(|a| without_t(a)).collect();
    let dropped_t = kept != args;
    sendmail.extend(kept);
    // The default, as `check-config` prints it, must validate too.
    let from = if raw.from.is_empty() {
        format!("MAILER-DAEMON@{}", host_name())
    } else {
        address("notify.from", &raw.from)?
    };
    Ok(NotifySettings {
        admin,
        sender: raw.sender,
        webhook,
        sendmail,
        dropped_t,
        max_per_day: raw.max_per_day,
        from,
    })
}

//! What the admin commands are given, typed: whom ([`Subject`]), a raise's caps, a duration
//! ([`Span`]). The commands parse their arguments into these once, before anything is asked of
//! Redis.

use crate::config::MAX_CAP;
use crate::sender;
use crate::store::Who;
use crate::window::Rate;

use super::AdminError;

/// Whom an admin command acts on: a sender, a whole domain (`@example.com`) or the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Mailbox(sender::Mailbox),
    /// IDNA ASCII, without the `@`.
    Domain(String),
    Server,
}

impl Subject {
    /// A sender, `@domain`, or a local user of this server (`local:NAME`, website mail).
    pub(crate) fn parse(text: &str, server: &str) -> Result<Self, AdminError> {
        if text.starts_with(sender::LOCAL_PREFIX) {
            let name = local_name(text, server)?;
            return Ok(Self::Mailbox(sender::Mailbox::local(name, server)));
        }
        match text.strip_prefix('@') {
            Some(d) => {
                sender::normalize_domain(d).map(Self::Domain).map_err(|_| AdminError::Domain(text.to_owned()))
            }
            None => Ok(Self::Mailbox(sender::normalize(text)?)),
        }
    }

    pub(crate) fn who(&self) -> Who<'_> {
        match self {
            Self::Mailbox(m) => Who::Mailbox(m),
            Self::Domain(d) => Who::Domain(d),
            Self::Server => Who::Server,
        }
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Mailbox(m) => f.write_str(m.as_str()),
            Self::Domain(d) => write!(f, "@{d}"),
            Self::Server => f.write_str("global"),
        }
    }
}

/// `local:NAME` (or `local:NAME@<this server>`) -> `NAME`: a local user's counters, locks and
/// held mail are this server's own.
pub(crate) fn local_name<'a>(user: &'a str, server: &str) -> Result<&'a str, AdminError> {
    let bad = || AdminError::Usage(format!("{user:?}: a local user is written local:NAME, like local:web12"));
    let rest = user.strip_prefix(sender::LOCAL_PREFIX).ok_or_else(bad)?;
    let name = match rest.split_once('@') {
        Some((name, host)) if host == server => name,
        Some((_, host)) => {
            return Err(AdminError::Usage(format!(
                "{user}: a local user belongs to its server ({host}); run this on {host} (this is {server})"
            )));
        }
        None => rest,
    };
    if crate::config::is_local_name(name) { Ok(name) } else { Err(bad()) }
}

pub(crate) fn mailbox_only(user: &str, server: &str, command: &str) -> Result<sender::Mailbox, AdminError> {
    match Subject::parse(user, server)? {
        Subject::Mailbox(m) => Ok(m),
        Subject::Domain(_) | Subject::Server => Err(AdminError::Usage(format!(
            "{command} applies to one sender: a domain's caps are its [[limits.domain]] entry (or the \
             database); change it and reload (systemctl reload email-ratelimit)"
        ))),
    }
}

/// The caps `raise` is given (`500/1d 100/1h`): the raise grammar ([`Rate::parse_list`]), and
/// on the command line each window once (two caps over one window is a typing mistake there).
pub(crate) fn parse_caps(text: &str) -> Result<Vec<Rate>, String> {
    let rates = Rate::parse_list(text, MAX_CAP)?;
    for ((i, r), typed) in rates.iter().enumerate().zip(text.split_whitespace()) {
        if rates[..i].iter().any(|o| o.window == r.window) {
            return Err(format!("{typed}: two caps for the window {}", r.window));
        }
    }
    Ok(rates)
}

/// `90m`, `24h`, `2d` (or `30s`) -> seconds (1 second to 30 days).
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a duration: write it like 90m, 24h or 2d");
    let (n, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    }
    .ok_or_else(bad)?;
    if (1..=30 * 86_400).contains(&secs) { Ok(secs) } else { Err(format!("{text:?}: from 1s to 30d")) }
}

/// A duration given on the command line (`--for 90m`, `--since 2d`): its seconds, and the text
/// as it was written (what `lock` repeats back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub secs: u64,
    written: String,
}

impl Span {
    /// Reads `90m`, `24h`, `2d` or `30s` (1 second to 30 days).
    ///
    /// # Errors
    /// [`AdminError::Usage`], saying how a duration is written.
    pub fn parse(text: &str) -> Result<Self, AdminError> {
        Ok(Self { secs: parse_duration(text).map_err(AdminError::Usage)?, written: text.to_owned() })
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_caps() {
        assert_eq!(parse_duration("90m"), Ok(5400));
        assert_eq!(parse_duration("24h"), Ok(86_400));
        assert_eq!(parse_duration("2d"), Ok(172_800));
        assert_eq!(parse_duration("5s"), Ok(5));
        for bad in ["", "0m", "0s", "31d", "h", "1.5h", "-1h", "5 s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_caps("500/1d 100/1h").map(|c| c.len()), Ok(2));
        assert!(parse_caps("500/1d 600/1d").is_err());
        assert!(parse_caps("").is_err());
        assert!(parse_caps("100/7m").is_err());
    }
}

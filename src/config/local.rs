//! Website mail (DESIGN "Website mail"): `[milter]`, where the milter for Postfix's
//! `non_smtpd_milters` listens, and `[limits.local]` with its `[[limits.local.user]]` entries,
//! the caps of mail submitted on this server through `sendmail` (PHP `mail()`, scripts, cron).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};
use crate::window::Rate;

/// The local users never held by default: cron's and the daemon's own mail.
pub const DEFAULT_EXEMPT_USERS: [&str; 2] = ["root", "email-ratelimit"];

#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawMilter {
    pub(super) listen: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLocal {
    pub(super) daily: u64,
    pub(super) rates: Vec<String>,
    pub(super) exempt_users: Vec<String>,
    #[serde(skip_serializing)]
    pub(super) user: Vec<RawLocalUser>,
}

impl Default for RawLocal {
    fn default() -> Self {
        Self {
            daily: 0,
            rates: Vec::new(),
            exempt_users: DEFAULT_EXEMPT_USERS.map(str::to_owned).to_vec(),
            user: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLocalUser {
    pub(super) name: String,
    pub(super) daily: Option<u64>,
    pub(super) rates: Option<Vec<String>>,
    #[serde(default)]
    pub(super) exempt: bool,
}

/// Where the milter listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MilterListen {
    /// A socket path (mode and group as `[listen]`'s).
    Unix(PathBuf),
    Tcp(SocketAddr),
}

/// `[limits.local]`: the caps of each local user's mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSettings {
    /// Every local user's caps (`daily` as `N/1d`, and `rates`); empty: not capped.
    pub caps: Vec<Rate>,
    /// Never held.
    pub exempt_users: Vec<String>,
    /// `[[limits.local.user]]`.
    pub users: Vec<LocalUser>,
}

impl Default for LocalSettings {
    fn default() -> Self {
        Self {
            caps: Vec::new(),
            exempt_users: DEFAULT_EXEMPT_USERS.map(str::to_owned).to_vec(),
            users: Vec::new(),
        }
    }
}

/// One `[[limits.local.user]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalUser {
    pub name: String,
    /// Its own caps; `None`: `[limits.local]`'s.
    pub caps: Option<Vec<Rate>>,
    pub exempt: bool,
}

/// Whether `name` can be a local user's name as counted: a login name (letters, digits, `_`,
/// `-`, `.`, not starting with `-`, at most 64 bytes) or `uid<N>` for a uid without a passwd
/// entry.
#[must_use]
pub fn is_local_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

pub(super) fn validate_milter(raw: &RawMilter) -> Result<Option<MilterListen>, ConfigError> {
    let listen = raw.listen.trim();
    if listen.is_empty() {
        return Ok(None);
    }
    if listen.starts_with('/') {
        return Ok(Some(MilterListen::Unix(PathBuf::from(listen))));
    }
    let addr: SocketAddr = listen.parse().map_err(|_| {
        invalid("milter.listen", "must be an absolute socket path or a loopback address like 127.0.0.1:8893")
    })?;
    if !addr.ip().is_loopback() {
        return Err(invalid("milter.listen", format!("{addr} is not a loopback address")));
    }
    Ok(Some(MilterListen::Tcp(addr)))
}

pub(super) fn validate_local(raw: RawLocal) -> Result<LocalSettings, ConfigError> {
    let daily = (raw.daily > 0).then_some(raw.daily);
    let caps = super::validate::caps("limits.local.rates", daily, &raw.rates)?;
    for name in &raw.exempt_users {
        if !is_local_name(name) {
            return Err(invalid("limits.local.exempt_users", format!("{name:?} is not a user name")));
        }
    }
    let mut seen = HashSet::with_capacity(raw.user.len());
    let mut users = Vec::with_capacity(raw.user.len());
    for entry in raw.user {
        let name = entry.name.trim().to_owned();
        if !is_local_name(&name) {
            return Err(invalid("limits.local.user.name", format!("{:?} is not a user name", entry.name)));
        }
        if !seen.insert(name.clone()) {
            return Err(invalid("limits.local.user.name", format!("{name} is listed twice; keep one")));
        }
        let named = |e: ConfigError| match e {
            ConfigError::Invalid { key, reason } => invalid(key, format!("{name}: {reason}")),
            other => other,
        };
        let caps = match (entry.daily, entry.rates) {
            (None, None) => None,
            (daily, rates) => Some(
                super::validate::caps("limits.local.user.rates", daily, rates.as_deref().unwrap_or_default())
                    .map_err(named)?,
            ),
        };
        users.push(LocalUser { name, caps, exempt: entry.exempt });
    }
    Ok(LocalSettings { caps, exempt_users: raw.exempt_users, users })
}

#[cfg(test)]
mod tests {
    use crate::config::from_toml;
    use crate::window::{Rate, Unit, Window};

    use super::*;

    #[test]
    fn defaults_cap_nothing_and_exempt_root_and_the_daemon() {
        let c = from_toml("").expect("valid");
        assert_eq!(c.milter, None);
        assert!(c.limits.local.caps.is_empty());
        assert_eq!(c.limits.local.exempt_users, ["root", "email-ratelimit"]);
    }

    #[test]
    fn caps_users_and_the_listener() {
        let c = from_toml(
            "[milter]\nlisten = \"/run/erl-milter\"\n[limits.local]\ndaily = 500\nrates = [\"50/1h\", \"20msg/1h\"]\n\
             exempt_users = [\"root\"]\n[[limits.local.user]]\nname = \"web12\"\ndaily = 10\n\
             [[limits.local.user]]\nname = \"uid4321\"\nexempt = true\n",
        )
        .expect("valid");
        assert_eq!(c.milter, Some(MilterListen::Unix("/run/erl-milter".into())));
        let l = &c.limits.local;
        assert_eq!(l.caps[0], Rate::rcpt(500, Window::Day));
        assert_eq!(l.caps[2].unit, Unit::Msg);
        assert_eq!(l.users[0].caps, Some(vec![Rate::rcpt(10, Window::Day)]));
        assert!(l.users[1].exempt && l.users[1].caps.is_none());
        let tcp = from_toml("[milter]\nlisten = \"127.0.0.1:8893\"\n").expect("valid");
        assert!(matches!(tcp.milter, Some(MilterListen::Tcp(_))));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("[milter]\nlisten = \"10.0.0.1:8893\"\n", "milter.listen"),
            ("[milter]\nlisten = \"nowhere\"\n", "milter.listen"),
            ("[limits.local]\nrates = [\"5/7m\"]\n", "limits.local.rates"),
            ("[limits.local]\nexempt_users = [\"a b\"]\n", "limits.local.exempt_users"),
            ("[[limits.local.user]]\nname = \"\"\n", "limits.local.user.name"),
            (
                "[[limits.local.user]]\nname = \"a\"\n[[limits.local.user]]\nname = \"a\"\n",
                "limits.local.user.name",
            ),
            ("[[limits.local.user]]\nname = \"a\"\ndaily = 0\n", "limits.local.user.rates"),
        ] {
            let e = from_toml(text).expect_err(text).to_string();
            assert!(e.starts_with(key), "{text}: {e}");
        }
    }
}

//! Website mail (DESIGN "Website mail"): `[milter]`, where the milter for Postfix's
//! `non_smtpd_milters` listens, and `[limits.local]` with its `[[limits.local.user]]` entries,
//! the caps of mail submitted on this server through `sendmail` (PHP `mail()`, scripts, cron).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Refused, SocketGroup, invalid};
use crate::window::Rate;

/// The local users never held by default: cron's, the daemon's own mail, and Dovecot's (Sieve
/// vacation replies, redirects and rejects go through sendmail as the mail user, `vmail` on
/// ISPConfig).
pub const DEFAULT_EXEMPT_USERS: [&str; 3] = ["root", "email-ratelimit", "vmail"];

/// The local user counted for website mail without a valid marker (pickup's cleanup did not run
/// our header_checks, or the message did not come through pickup). Counted, never held: one
/// counter for everything unmarked would hold every website's and cron's mail at once.
pub const UNKNOWN_LOCAL_USER: &str = "unknown";

/// The milter socket's group by default: Postfix's cleanup must reach it.
pub const DEFAULT_MILTER_GROUP: &str = "postfix";

/// Where the milter listens when Postfix's queue is in the usual place.
pub const DEFAULT_MILTER_SOCKET: &str = "/var/spool/postfix/private/email-ratelimit-milter";

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawMilter {
    pub(super) listen: String,
    pub(super) socket_mode: String,
    /// `None`: [`DEFAULT_MILTER_GROUP`], if it exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) socket_group: Option<String>,
}

impl Default for RawMilter {
    fn default() -> Self {
        Self { listen: String::new(), socket_mode: "0660".into(), socket_group: None }
    }
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

/// `[milter]`: the milter's Unix socket. Only a socket can tell who connects: on a TCP port any
/// local user could speak for any other (fill its counter, hold its mail, plant queue IDs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MilterSettings {
    pub socket: PathBuf,
    pub socket_mode: u32,
    /// The socket's group; `None`: the daemon's own.
    pub socket_group: Option<SocketGroup>,
    /// The default group ([`DEFAULT_MILTER_GROUP`]) does not exist here (warned about).
    pub default_group_missing: bool,
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

/// `[milter]`: `None` when off. A TCP address (v3 took one) is refused, not an error: the
/// milter stays off and the rest serves (DESIGN "Upgrades never stop the service").
pub(super) fn validate_milter(
    raw: &RawMilter,
    refused: &mut Vec<Refused>,
) -> Result<Option<MilterSettings>, ConfigError> {
    let socket_mode = super::validate::socket_mode("milter.socket_mode", &raw.socket_mode)?;
    let (socket_group, default_group_missing) = match raw.socket_group.as_deref() {
        None => match super::validate::socket_group("milter.socket_group", DEFAULT_MILTER_GROUP)? {
            Some(g) => (Some(g), false),
            None => (None, true),
        },
        Some("") => (None, false),
        Some(name) => (
            Some(
                super::validate::socket_group("milter.socket_group", name)?
                    .ok_or_else(|| invalid("milter.socket_group", format!("no group {name}")))?,
            ),
            false,
        ),
    };
    let listen = raw.listen.trim();
    if listen.is_empty() {
        return Ok(None);
    }
    if listen.starts_with('/') {
        return Ok(Some(MilterSettings {
            socket: PathBuf::from(listen),
            socket_mode,
            socket_group,
            default_group_missing,
        }));
    }
    if listen.parse::<SocketAddr>().is_ok() || listen.starts_with("inet:") {
        refused.push(Refused {
            key: "milter.listen",
            value: listen.to_owned(),
            why: "a TCP port lets any local user speak for any other local user (fill its counter, have its mail held, plant queue IDs for release); the milter is off and website mail passes uncounted until this is changed".into(),
            fix: format!(
                "listen = \"{DEFAULT_MILTER_SOCKET}\" (a Unix socket; under systemd, email-ratelimit-milter.socket) and unix:private/email-ratelimit-milter in Postfix's email_ratelimit_milter"
            ),
        });
        return Ok(None);
    }
    Err(invalid(
        "milter.listen",
        format!("must be an absolute socket path, like \"{DEFAULT_MILTER_SOCKET}\""),
    ))
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

    #[test]
    fn defaults_cap_nothing_and_exempt_root_and_the_daemon() {
        let c = from_toml("").expect("valid");
        assert_eq!(c.milter, None);
        assert!(c.limits.local.caps.is_empty());
        assert_eq!(c.limits.local.exempt_users, ["root", "email-ratelimit", "vmail"]);
    }

    #[test]
    fn caps_users_and_the_listener() {
        let c = from_toml(
            "[milter]\nlisten = \"/run/erl-milter\"\n[limits.local]\ndaily = 500\nrates = [\"50/1h\", \"20msg/1h\"]\n\
             exempt_users = [\"root\"]\n[[limits.local.user]]\nname = \"web12\"\ndaily = 10\n\
             [[limits.local.user]]\nname = \"uid4321\"\nexempt = true\n",
        )
        .expect("valid");
        let m = c.milter.expect("a milter");
        assert_eq!((m.socket.to_str(), m.socket_mode), (Some("/run/erl-milter"), 0o660));
        let l = &c.limits.local;
        assert_eq!(l.caps[0], Rate::rcpt(500, Window::Day));
        assert_eq!(l.caps[2].unit, Unit::Msg);
        assert_eq!(l.users[0].caps, Some(vec![Rate::rcpt(10, Window::Day)]));
        assert!(l.users[1].exempt && l.users[1].caps.is_none());
    }

    #[test]
    fn a_tcp_milter_is_refused_and_the_rest_stays_valid() {
        for listen in ["127.0.0.1:8893", "[::1]:8893", "10.0.0.1:8893", "inet:127.0.0.1:8893"] {
            let c =
                from_toml(&format!("[milter]\nlisten = \"{listen}\"\n[limits]\nglobal = 7\n")).expect(listen);
            assert_eq!(c.milter, None, "{listen}: off");
            assert_eq!(c.limits.global, 7);
            let [r] = c.refused.as_slice() else { panic!("{listen}: one refusal, got {:?}", c.refused) };
            let text = r.to_string();
            assert!(
                text.starts_with(&format!(
                    "milter.listen = \"{listen}\" refused: a TCP port lets any local user"
                )),
                "{text}"
            );
            assert!(
                text.contains("fix: listen = \"/var/spool/postfix/private/email-ratelimit-milter\""),
                "{text}"
            );
            assert!(!text.contains('\n'), "one line");
        }
        assert!(from_toml("").expect("defaults").refused.is_empty());
    }

    #[test]
    fn the_milter_socket_group_is_postfix_unless_set() {
        let c = from_toml("[milter]\nlisten = \"/run/m\"\n").expect("valid");
        let m = c.milter.expect("a milter");
        let postfix = nix::unistd::Group::from_name("postfix").ok().flatten();
        assert_eq!(m.socket_group.as_ref().map(|g| g.name.as_str()), postfix.as_ref().map(|_| "postfix"));
        assert_eq!(m.default_group_missing, postfix.is_none());
        let own = from_toml("[milter]\nlisten = \"/run/m\"\nsocket_group = \"\"\n").expect("valid");
        let own = own.milter.expect("a milter");
        assert!(own.socket_group.is_none() && !own.default_group_missing);
        let e = from_toml("[milter]\nlisten = \"/run/m\"\nsocket_group = \"no-such-group-x\"\n")
            .expect_err("explicit");
        assert_eq!(e.to_string(), "milter.socket_group: no group no-such-group-x");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("[milter]\nlisten = \"nowhere\"\n", "milter.listen"),
            ("[milter]\nlisten = \"/m\"\nsocket_mode = \"0666\"\n", "milter.socket_mode"),
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

//! `[daemon]`: who the daemon runs as once its sockets are bound, and where it keeps its state;
//! and `[log] target`: where its lines go (DESIGN "Without systemd").

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// `[daemon] state_dir` by default (the unit's `StateDirectory`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/email-ratelimit";

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDaemon {
    pub(super) user: String,
    pub(super) state_dir: PathBuf,
}

impl Default for RawDaemon {
    fn default() -> Self {
        Self { user: String::new(), state_dir: DEFAULT_STATE_DIR.into() }
    }
}

/// `[daemon]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonSettings {
    /// The user `serve` drops to when started as root (`None`: no drop, as in v3).
    pub user: Option<DaemonUser>,
    /// What the daemon and the sweep keep on disk.
    pub state_dir: PathBuf,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        Self { user: None, state_dir: DEFAULT_STATE_DIR.into() }
    }
}

/// A user of this host, as the config named it and as the system knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonUser {
    pub name: String,
    pub uid: u32,
    /// Its primary group.
    pub gid: u32,
}

/// `[log] target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    /// stdout (v3), unless stdout is closed or `/dev/null` (an init script's background start):
    /// then syslog.
    #[default]
    Auto,
    Stdout,
    Syslog,
}

impl LogTarget {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Stdout => "stdout",
            Self::Syslog => "syslog",
        }
    }
}

/// `[daemon]`: the user must exist (a config error otherwise: 78), the state directory must be
/// an absolute path.
pub(super) fn validate_daemon(raw: &RawDaemon) -> Result<DaemonSettings, ConfigError> {
    if !raw.state_dir.is_absolute() {
        return Err(invalid("daemon.state_dir", "must be an absolute path"));
    }
    let user = match raw.user.trim() {
        "" => None,
        name => {
            let found = nix::unistd::User::from_name(name)
                .map_err(|e| invalid("daemon.user", format!("cannot look up user {name}: {e}")))?
                .ok_or_else(|| {
                    invalid(
                        "daemon.user",
                        format!(
                            "no user {name} on this host (create it: useradd --system --user-group {name})"
                        ),
                    )
                })?;
            Some(DaemonUser { name: name.to_owned(), uid: found.uid.as_raw(), gid: found.gid.as_raw() })
        }
    };
    Ok(DaemonSettings { user, state_dir: raw.state_dir.clone() })
}

#[cfg(test)]
mod tests {
    use super::super::from_toml;
    use super::*;

    #[test]
    fn the_user_must_exist_and_the_state_dir_be_absolute() {
        let c = from_toml("").expect("defaults");
        assert_eq!(c.daemon, DaemonSettings::default());
        assert_eq!(c.log.target, LogTarget::Auto);
        let c = from_toml("[daemon]\nuser = \"root\"\nstate_dir = \"/tmp/erl-state\"\n").expect("valid");
        let root = c.daemon.user.expect("a user");
        assert_eq!((root.name.as_str(), root.uid, root.gid), ("root", 0, 0));
        let e = from_toml("[daemon]\nuser = \"no-such-user-x\"\n").expect_err("no such user");
        assert!(e.to_string().starts_with("daemon.user: no user no-such-user-x on this host"), "{e}");
        let e = from_toml("[daemon]\nstate_dir = \"var/lib\"\n").expect_err("relative");
        assert_eq!(e.to_string(), "daemon.state_dir: must be an absolute path");
        let c = from_toml("[log]\ntarget = \"syslog\"\n").expect("valid");
        assert_eq!((c.log.target, c.log.level.as_str()), (LogTarget::Syslog, "info"));
        assert!(from_toml("[log]\ntarget = \"file\"\n").is_err());
    }
}

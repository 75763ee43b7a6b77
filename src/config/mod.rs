//! Raw TOML plus environment overrides -> validated, typed [`Config`].
//!
//! Parse, then validate: nothing past this module sees a raw string or an unchecked number.
//! Unknown keys are errors (a typo must not silently disable a limit). Every key has a safe
//! default, so a missing file at the default path runs the daemon on the embedded defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Zone;
use crate::sender::Mailbox;
use crate::window::{Rate, Window};

/// Where `serve` and the admin commands look without `--config`.
pub const DEFAULT_PATH: &str = "/etc/email-ratelimit/config.toml";
/// Environment overrides: `EMAIL_RATELIMIT__REDIS__URL=...`.
pub const ENV_PREFIX: &str = "EMAIL_RATELIMIT";

/// The default ISPConfig queries; see `scripts/sql/schema.sql`.
pub const DEFAULT_GLOBAL_QUERY: &str =
    "SELECT server_id, global_limit, default_mailbox_limit FROM er_global_ratelimit";
pub const DEFAULT_MAILBOX_QUERY: &str = "SELECT u.email, r.daily_limit \
     FROM er_mail_user_ratelimit r JOIN mail_user u ON u.mailuser_id = r.mailuser_id \
     WHERE r.enabled = 'y'";

/// Where the last good database limits are kept for a restart while MariaDB is down.
pub const DEFAULT_CACHE_FILE: &str = "/var/lib/email-ratelimit/limits.json";

/// The default caps (one place for the raw config and [`LimitSettings::default`]).
pub const DEFAULT_GLOBAL: u64 = 999;
pub const DEFAULT_MAILBOX: u64 = 50;
pub const DEFAULT_MAX_RECIPIENTS: u32 = 10_000;

/// Bounds of the validated values (a typo must not make Postfix wait or a cap meaningless).
pub const MAX_TIMEOUT_MS: u64 = 2000;
pub const MAX_VIOLATIONS: u64 = 100_000;
/// The largest cap accepted anywhere: far above any real server's day, far below overflow.
pub const MAX_CAP: u64 = 1_000_000_000;
pub const MAX_RECIPIENTS: u64 = 1_000_000;

/// Enforce the caps, or only log what would be deferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Enforce,
    LogOnly,
}

/// What a message gets whose recipients alone are more than a cap allows: it can never be
/// accepted in that window, so by default it is rejected (5xx) rather than retried for days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Oversize {
    #[default]
    Reject,
    Defer,
}

impl Oversize {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reject => "reject",
            Self::Defer => "defer",
        }
    }
}

/// Where the counters live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    #[default]
    Redis,
    /// In-process counters, lost on restart: for trying the daemon without Redis.
    Memory,
}

impl Mode {
    /// The name used in the config file.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::LogOnly => "log-only",
        }
    }
}

impl StoreKind {
    /// The name used in the config file.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Memory => "memory",
        }
    }
}

/// `[[limits.domain]] domain = "*"`: the entry of every domain that has none of its own.
pub const CATCH_ALL: &str = "*";

/// The validated settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub mode: Mode,
    /// With `mode = "log-only"`: enforce from this local date on, without a reload
    /// (`install.sh enforce --at-midnight`).
    pub enforce_from: Option<chrono::NaiveDate>,
    pub store: StoreKind,
    /// The zone of "today" for the daemon and the admin commands alike.
    pub timezone: Zone,
    /// This server in violations, notifications and metrics (default: the host name).
    pub server_name: String,
    pub listen: ListenSettings,
    pub limits: LimitSettings,
    pub redis: RedisSettings,
    pub database: Option<DatabaseSettings>,
    pub protect: ProtectSettings,
    /// `[learn]`: learned allowances.
    pub learn: LearnSettings,
    pub notify: NotifySettings,
    /// `[metrics] listen`: where `/metrics` is served; `None`: off.
    pub metrics: Option<MetricsListen>,
    /// `[milter]`: where website mail is checked (off unless set).
    pub milter: Option<MilterSettings>,
    /// `[daemon]`: the user to run as, the state directory.
    pub daemon: DaemonSettings,
    pub log: LogSettings,
    /// `[replies]`: the admin's reply texts (none: the contract's).
    pub replies: Replies,
    /// Settings an earlier version accepted and this one refuses: each leaves its part off
    /// while the rest serves (DESIGN "Upgrades never stop the service").
    pub refused: Vec<Refused>,
    /// The file it came from, or `None` for the embedded defaults.
    pub source: Option<PathBuf>,
}

/// A setting an earlier version accepted that this one refuses. `serve` logs it at start and on
/// every reload and serves without that part; `check-config` exits 78 with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub key: &'static str,
    pub value: String,
    /// Why, and what is off meanwhile.
    pub why: String,
    /// What to write instead.
    pub fix: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {:?} refused: {}; fix: {}", self.key, self.value, self.why, self.fix)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSettings {
    pub socket: PathBuf,
    pub socket_mode: u32,
    pub socket_group: Option<SocketGroup>,
    pub tcp: Option<SocketAddr>,
    /// Who may use `tcp`.
    pub tcp_allow: TcpAllow,
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketGroup {
    pub name: String,
    pub gid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings {
    /// The server's daily cap.
    pub global: u64,
    /// More server caps over shorter windows.
    pub global_rates: Vec<Rate>,
    /// The daily cap of a listed mailbox without caps of its own.
    pub default_mailbox: u64,
    /// Its caps over shorter windows.
    pub default_mailbox_rates: Vec<Rate>,
    /// A larger `recipient_count` is counted as this.
    pub max_recipients: u32,
    /// The answer to a message that can never fit.
    pub oversize: Oversize,
    /// A message with more recipients is rejected (0: off); a domain's or mailbox's own
    /// setting replaces it.
    pub max_rcpt_per_message: u32,
    /// `[[limits.mailbox]]` entries.
    pub mailboxes: Vec<MailboxEntry>,
    /// `[[limits.domain]]` entries.
    pub domains: Vec<DomainEntry>,
    /// `[limits.local]`: website mail (the milter).
    pub local: LocalSettings,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            global: DEFAULT_GLOBAL,
            global_rates: Vec::new(),
            default_mailbox: DEFAULT_MAILBOX,
            default_mailbox_rates: Vec::new(),
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            oversize: Oversize::Reject,
            max_rcpt_per_message: 0,
            mailboxes: Vec::new(),
            domains: Vec::new(),
            local: LocalSettings::default(),
        }
    }
}

/// One `[[limits.mailbox]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxEntry {
    pub mailbox: Mailbox,
    /// Its own caps (`daily` as `N/1d`, and `rates`); `None`: the default mailbox caps.
    pub caps: Option<Vec<Rate>>,
    /// Never deferred; counted only on its own counters.
    pub exempt: bool,
    /// Its own `max_rcpt_per_message` (0: off); `None`: its domain's, else `[limits]`'.
    pub max_rcpt_per_message: Option<u32>,
}

impl MailboxEntry {
    /// A v1-style entry: a daily cap, or the defaults.
    #[must_use]
    pub fn daily(mailbox: Mailbox, daily: Option<u64>) -> Self {
        Self {
            mailbox,
            caps: daily.map(|limit| vec![Rate::rcpt(limit, Window::Day)]),
            exempt: false,
            max_rcpt_per_message: None,
        }
    }
}

/// One `[[limits.domain]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainEntry {
    /// IDNA ASCII, lowercase.
    pub domain: String,
    /// Caps over all its senders together (`daily` as `N/1d`, and `rates`).
    pub caps: Vec<Rate>,
    /// The caps of each of its mailboxes that has no entry of its own (`mailbox_daily`,
    /// `mailbox_rates`); `None`: such mailboxes are not capped.
    pub mailbox_caps: Option<Vec<Rate>>,
    /// Its mailboxes' `max_rcpt_per_message` (0: off); `None`: `[limits]`'.
    pub max_rcpt_per_message: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// With `sentinels`: only the master's database, user and password.
    pub url: String,
    pub key_prefix: String,
    pub timeout: Duration,
    pub violations_max: u64,
    /// Sentinel addresses (host, port); empty: `url` is the server.
    pub sentinels: Vec<(String, u16)>,
    pub sentinel_master: String,
    pub sentinel_password: Option<String>,
}

/// Which tables the database's caps are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// v1: `er_global_ratelimit` and `er_mail_user_ratelimit` (or the configured queries).
    #[default]
    ErTables,
    /// The ISPConfig extension's columns (`ISPCONFIG-ERL-COLUMNS.md`).
    ErlColumns,
}

impl Layout {
    /// The name used in the config file.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ErTables => "er-tables",
            Self::ErlColumns => "erl-columns",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    pub url: String,
    pub layout: Layout,
    /// erl-columns: where the `email_ratelimit` table lives, when not in `url`'s database.
    pub master_url: Option<String>,
    pub refresh: Duration,
    pub server_id: u32,
    pub timeout: Duration,
    pub global_query: String,
    pub mailbox_query: String,
    pub cache_file: PathBuf,
}

/// `[protect]`: stolen-account detection and locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtectSettings {
    /// A sender seen from more distinct client addresses today is a suspect (0: off).
    pub max_client_ips: u32,
    /// Lock suspects, and senders refused more than `lock_after_refusals` times today.
    pub lock: bool,
    /// 0: off.
    pub lock_after_refusals: u32,
}

impl Default for ProtectSettings {
    fn default() -> Self {
        Self { max_client_ips: 30, lock: false, lock_after_refusals: 0 }
    }
}

impl ProtectSettings {
    /// No detection and no automatic lock.
    #[must_use]
    pub const fn off() -> Self {
        Self { max_client_ips: 0, lock: false, lock_after_refusals: 0 }
    }
}

/// Where the metrics endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsListen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// `[notify]`: who is told about refusals, suspects and locks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NotifySettings {
    /// Mailed on every event (normalized addresses).
    pub admin: Vec<String>,
    /// The sender is mailed about its own mailbox-cap refusals and its locks.
    pub sender: bool,
    /// The event JSON is POSTed here.
    pub webhook: Option<String>,
    /// The mail submission command and its arguments (the message on its stdin; the notifier
    /// adds `-i -f <from> -- <recipients>`).
    pub sendmail: Vec<String>,
    /// A `-t` was dropped from the configured command (warned about at start).
    pub dropped_t: bool,
    /// At most this many mails a day about one sender (or domain, or the server); 0: no cap.
    pub max_per_day: u32,
    /// The notifications' `From:`.
    pub from: String,
}

impl NotifySettings {
    /// Whether any notification is configured.
    #[must_use]
    pub fn enabled(&self) -> bool {
        !self.admin.is_empty() || self.sender || self.webhook.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub level: String,
    pub target: LogTarget,
}

/// Why a config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} not found")]
    Missing(PathBuf),
    #[error("{0}")]
    Parse(#[from] config::ConfigError),
    #[error("{0}")]
    Toml(String),
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    /// A bad value set by an `EMAIL_RATELIMIT__*` variable.
    #[error("{var} (from the environment): {message}")]
    Env { var: String, message: String },
    /// A value shown with its key, Postfix style: `redis.url "redis:/x": no host name`.
    #[error("{key} {value:?}: {reason}")]
    InvalidValue { key: &'static str, value: String, reason: String },
}

pub(super) fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, reason: reason.into() }
}

/// Loads and validates: the file (or, without `path`, the default path when it exists, else the
/// embedded defaults), then `EMAIL_RATELIMIT__*` environment overrides.
///
/// # Errors
/// [`ConfigError`] for a missing explicit file, bad TOML, unknown keys or invalid values.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    let default;
    let (path, required) = match path {
        Some(p) => (p, true),
        None => {
            default = default_path();
            (default.as_path(), false)
        }
    };
    let exists = path.exists();
    if required && !exists {
        return Err(ConfigError::Missing(path.to_owned()));
    }
    let text = if exists {
        std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.to_owned(), e))?
    } else {
        String::new()
    };
    let raw = parse(&text, exists.then_some(path), true).map_err(from_env)?;
    validate::validate(raw, exists.then(|| path.to_owned())).map_err(from_env)
}

/// An error about a key whose value came from the environment (`EMAIL_RATELIMIT__<KEY>` is set,
/// and it overrides the file) names the variable: the admin looks for it there, not in the file.
fn from_env(e: ConfigError) -> ConfigError {
    let message = e.to_string();
    let key = match &e {
        ConfigError::Invalid { key, .. } | ConfigError::InvalidValue { key, .. } => (*key).to_owned(),
        ConfigError::Parse(_) => match message.split_once("for key `").and_then(|(_, k)| k.split_once('`')) {
            Some((key, _)) => key.to_owned(),
            None => return e,
        },
        _ => return e,
    };
    let var = format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase());
    if std::env::var_os(&var).is_none() {
        return e;
    }
    let message = message.strip_suffix(" in the environment").unwrap_or(&message);
    ConfigError::Env { var, message: message.to_owned() }
}

/// The config file read without `--config`: [`DEFAULT_PATH`]. The integration tests name
/// another with `EMAIL_RATELIMIT_TEST_DEFAULT_CONFIG`, so that they run the same on a host with an
/// installed config.
#[must_use]
pub fn default_path() -> PathBuf {
    std::env::var_os("EMAIL_RATELIMIT_TEST_DEFAULT_CONFIG")
        .map_or_else(|| PathBuf::from(DEFAULT_PATH), PathBuf::from)
}

/// Validates TOML text alone, without the environment (tests, the shipped example).
///
/// # Errors
/// As [`load`].
pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
    validate::validate(parse(text, None, false)?, None)
}

/// The `EMAIL_RATELIMIT__*` variables whose value is a TOML array of strings (`["a", "b"]`):
/// their config key (`limits.global_rates`) and the list.
fn env_lists(
    vars: impl Iterator<Item = (String, String)>,
) -> Result<Vec<(String, Vec<String>)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in vars {
        let Some(path) = name.strip_prefix(ENV_PREFIX).and_then(|p| p.strip_prefix("__")) else { continue };
        if !value.trim_start().starts_with('[') {
            continue;
        }
        let bad = |why: String| {
            ConfigError::Toml(format!("{name}: {why} (a list is a TOML array: '[\"300/1h\", \"50/5m\"]')"))
        };
        let parsed: toml::Table =
            toml::from_str(&format!("v = {value}")).map_err(|e| bad(e.message().to_owned()))?;
        let items =
            parsed.get("v").and_then(toml::Value::as_array).ok_or_else(|| bad("not an array".into()))?;
        let list = items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| bad(format!("{v} is not a string"))))
            .collect::<Result<Vec<_>, _>>()?;
        out.push((path.split("__").map(str::to_ascii_lowercase).collect::<Vec<_>>().join("."), list));
    }
    Ok(out)
}

/// A TOML error on one line, as compilers write them: `FILE:2:1: unknown field ...` (toml's own
/// text spans five lines with a drawing of the spot, which journald would make five entries of).
fn toml_error(e: &toml::de::Error, text: &str, path: Option<&Path>) -> String {
    let file = path.map_or_else(|| "config".to_owned(), |p| p.display().to_string());
    let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let start = before.rsplit('\n').next().unwrap_or_default();
            let column = start.chars().count() + 1;
            let source =
                text.get(span.start - start.len()..).and_then(|t| t.lines().next()).unwrap_or_default();
            // An octal mode written as a number: TOML has no leading zeros, and 660 is not 0660.
            let hint = if source.trim_start().starts_with("socket_mode") {
                "; quote it: socket_mode = \"0660\""
            } else {
                ""
            };
            format!("{file}:{line}:{column}: {message} (in `{}`){hint}", source.trim())
        }
        None => format!("{file}: {message}"),
    }
}

/// The file's TOML, typed, with the `EMAIL_RATELIMIT__*` environment laid over it (`env`).
///
/// The file is read straight into its types by `toml`; only the small settings (not the
/// `[[limits.mailbox]]` and `[[limits.domain]]` lists, which no variable can set) go through
/// the `config` crate's overlay. 100,000 caps through `config`'s value tree took 13 s and a
/// 260 MiB peak (issue 13).
fn parse(text: &str, path: Option<&Path>, env: bool) -> Result<raw::RawConfig, ConfigError> {
    let mut file: raw::RawConfig =
        toml::from_str(text).map_err(|e| ConfigError::Toml(toml_error(&e, text, path)))?;
    if !env {
        return Ok(file);
    }
    let mailboxes = std::mem::take(&mut file.limits.mailbox);
    let domains = std::mem::take(&mut file.limits.domain);
    let mut builder = config::Config::builder()
        .add_source(config::Config::try_from(&file)?)
        // No `try_parsing`: it would turn `EMAIL_RATELIMIT__REDIS__KEY_PREFIX=007` into the
        // number 7 before serde sees that the key is a string; numbers and booleans are still
        // converted where the key wants one.
        .add_source(config::Environment::with_prefix(ENV_PREFIX).separator("__"));
    // A list key's value is a TOML array: EMAIL_RATELIMIT__LIMITS__GLOBAL_RATES='["300/1h"]'.
    for (key, list) in env_lists(std::env::vars())? {
        builder = builder.set_override(key, list)?;
    }
    let mut raw: raw::RawConfig = builder.build()?.try_deserialize()?;
    raw.limits.mailbox = mailboxes;
    raw.limits.domain = domains;
    Ok(raw)
}

mod daemon;
pub use daemon::{DEFAULT_STATE_DIR, DaemonSettings, DaemonUser, LogTarget};
mod tcp_allow;
pub use tcp_allow::TcpAllow;
mod local;
pub use local::{LocalSettings, LocalUser, MilterSettings, UNKNOWN_LOCAL_USER, is_local_name};
mod learn;
pub use learn::LearnSettings;
mod protect;
pub mod replies;
pub use replies::Replies;
mod raw;
mod render;
mod urls;
pub use render::redact;
mod warnings;
pub use warnings::warnings;
#[cfg(test)]
mod tests;
mod validate;

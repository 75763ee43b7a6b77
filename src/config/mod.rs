//! Raw TOML plus environment overrides -> validated, typed [`Config`].
//!
//! Parse, then validate: nothing past this module sees a raw string or an unchecked number.
//! Unknown keys are errors (a typo must not silently disable a limit). Every key has a safe
//! default, so a missing file at the default path runs the daemon on the embedded defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::sender::{self, Mailbox};

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

/// Enforce the caps, or only log what would be deferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Enforce,
    LogOnly,
}

/// Where the counters live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
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

/// The validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub mode: Mode,
    pub store: StoreKind,
    pub listen: ListenSettings,
    pub limits: LimitSettings,
    pub redis: RedisSettings,
    pub database: Option<DatabaseSettings>,
    pub log: LogSettings,
    /// The file it came from, or `None` for the embedded defaults.
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSettings {
    pub socket: PathBuf,
    pub socket_mode: u32,
    pub socket_group: Option<SocketGroup>,
    pub tcp: Option<SocketAddr>,
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
    pub global: u64,
    pub default_mailbox: u64,
    /// Opt-in caps; `None` means "the default per-mailbox cap".
    pub mailboxes: Vec<(Mailbox, Option<u64>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    pub url: String,
    pub key_prefix: String,
    pub timeout: Duration,
    pub violations_max: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    pub url: String,
    pub refresh: Duration,
    pub server_id: u32,
    pub timeout: Duration,
    pub global_query: String,
    pub mailbox_query: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub level: String,
}

/// Why a config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} not found")]
    Missing(PathBuf),
    #[error("{0}")]
    Parse(#[from] config::ConfigError),
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, reason: reason.into() }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    mode: Mode,
    store: StoreKind,
    listen: RawListen,
    limits: RawLimits,
    redis: RawRedis,
    database: Option<RawDatabase>,
    log: RawLog,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Enforce,
            store: StoreKind::Redis,
            listen: RawListen::default(),
            limits: RawLimits::default(),
            redis: RawRedis::default(),
            database: None,
            log: RawLog { level: "info".into() },
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawListen {
    socket: PathBuf,
    socket_mode: String,
    socket_group: String,
    tcp: String,
    tcp_allow_remote: bool,
    max_connections: usize,
    idle_timeout_secs: u64,
}

impl Default for RawListen {
    fn default() -> Self {
        Self {
            socket: "/var/spool/postfix/private/email-ratelimit".into(),
            socket_mode: "0660".into(),
            socket_group: String::new(),
            tcp: String::new(),
            tcp_allow_remote: false,
            max_connections: 2048,
            // Longer than Postfix's 300 s max_idle: smtpd closes first, cleanly.
            idle_timeout_secs: 600,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    global: u64,
    default_mailbox: u64,
    mailbox: Vec<RawMailbox>,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self { global: 999, default_mailbox: 50, mailbox: Vec::new() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMailbox {
    email: String,
    daily: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRedis {
    url: String,
    key_prefix: String,
    timeout_ms: u64,
    violations_max: u64,
}

impl Default for RawRedis {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379/0".into(),
            key_prefix: "erl".into(),
            timeout_ms: 250,
            violations_max: 1000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDatabase {
    url: String,
    refresh_secs: u64,
    server_id: u32,
    timeout_secs: u64,
    global_query: String,
    mailbox_query: String,
}

impl Default for RawDatabase {
    fn default() -> Self {
        Self {
            url: String::new(),
            refresh_secs: 60,
            server_id: 0,
            timeout_secs: 10,
            global_query: DEFAULT_GLOBAL_QUERY.into(),
            mailbox_query: DEFAULT_MAILBOX_QUERY.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: String,
}

/// Loads and validates: the file (or, without `path`, the default path when it exists, else the
/// embedded defaults), then `EMAIL_RATELIMIT__*` environment overrides.
///
/// # Errors
/// [`ConfigError`] for a missing explicit file, bad TOML, unknown keys or invalid values.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    let (path, required) = match path {
        Some(p) => (p, true),
        None => (Path::new(DEFAULT_PATH), false),
    };
    let exists = path.exists();
    if required && !exists {
        return Err(ConfigError::Missing(path.to_owned()));
    }
    let mut builder = config::Config::builder();
    if exists {
        builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    let raw: RawConfig = builder
        .add_source(config::Environment::with_prefix(ENV_PREFIX).separator("__").try_parsing(true))
        .build()?
        .try_deserialize()?;
    validate(raw, exists.then(|| path.to_owned()))
}

/// Validates TOML text (tests and `check-config` on snippets).
///
/// # Errors
/// As [`load`].
pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()?
        .try_deserialize()?;
    validate(raw, None)
}

fn validate(raw: RawConfig, source: Option<PathBuf>) -> Result<Config, ConfigError> {
    Ok(Config {
        mode: raw.mode,
        store: raw.store,
        listen: validate_listen(raw.listen)?,
        limits: validate_limits(raw.limits)?,
        redis: validate_redis(raw.redis)?,
        database: raw.database.map(validate_database).transpose()?,
        log: validate_log(raw.log)?,
        source,
    })
}

fn validate_listen(raw: RawListen) -> Result<ListenSettings, ConfigError> {
    if !raw.socket.is_absolute() {
        return Err(invalid("listen.socket", "must be an absolute path"));
    }
    let socket_mode = u32::from_str_radix(raw.socket_mode.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| invalid("listen.socket_mode", "must be octal permissions like \"0660\""))?;
    let socket_group = if raw.socket_group.is_empty() {
        None
    } else {
        let group = nix::unistd::Group::from_name(&raw.socket_group)
            .map_err(|e| invalid("listen.socket_group", e.to_string()))?
            .ok_or_else(|| invalid("listen.socket_group", format!("no group {}", raw.socket_group)))?;
        Some(SocketGroup { name: raw.socket_group, gid: group.gid.as_raw() })
    };
    let tcp = if raw.tcp.is_empty() {
        None
    } else {
        let addr: SocketAddr =
            raw.tcp.parse().map_err(|_| invalid("listen.tcp", "must be an address like 127.0.0.1:10040"))?;
        if !addr.ip().is_loopback() && !raw.tcp_allow_remote {
            return Err(invalid(
                "listen.tcp",
                "not a loopback address; set listen.tcp_allow_remote = true to allow it",
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
        max_connections: raw.max_connections,
        idle_timeout: Duration::from_secs(raw.idle_timeout_secs),
    })
}

fn validate_limits(raw: RawLimits) -> Result<LimitSettings, ConfigError> {
    if raw.global == 0 {
        return Err(invalid("limits.global", "must be at least 1"));
    }
    if raw.default_mailbox == 0 {
        return Err(invalid("limits.default_mailbox", "must be at least 1"));
    }
    let mut mailboxes: Vec<(Mailbox, Option<u64>)> = Vec::with_capacity(raw.mailbox.len());
    for entry in raw.mailbox {
        let mailbox = sender::normalize(&entry.email)
            .map_err(|e| invalid("limits.mailbox.email", format!("{:?}: {e}", entry.email)))?;
        if entry.daily == Some(0) {
            return Err(invalid("limits.mailbox.daily", format!("{mailbox}: must be at least 1")));
        }
        if mailboxes.iter().any(|(m, _)| *m == mailbox) {
            return Err(invalid("limits.mailbox.email", format!("{mailbox} is listed twice")));
        }
        mailboxes.push((mailbox, entry.daily));
    }
    Ok(LimitSettings { global: raw.global, default_mailbox: raw.default_mailbox, mailboxes })
}

fn validate_redis(raw: RawRedis) -> Result<RedisSettings, ConfigError> {
    redis::Client::open(raw.url.as_str()).map_err(|e| invalid("redis.url", e.to_string()))?;
    if raw.key_prefix.is_empty() || raw.key_prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("redis.key_prefix", "must be non-empty, without whitespace"));
    }
    if !(1..=10_000).contains(&raw.timeout_ms) {
        return Err(invalid("redis.timeout_ms", "must be 1 to 10000"));
    }
    if raw.violations_max == 0 {
        return Err(invalid("redis.violations_max", "must be at least 1"));
    }
    Ok(RedisSettings {
        url: raw.url,
        key_prefix: raw.key_prefix,
        timeout: Duration::from_millis(raw.timeout_ms),
        violations_max: raw.violations_max,
    })
}

/// A `[database]` section without a URL is an error: it would silently leave the panel's caps
/// unread.
fn validate_database(raw: RawDatabase) -> Result<DatabaseSettings, ConfigError> {
    if raw.url.is_empty() {
        return Err(invalid("database.url", "required when [database] is present"));
    }
    let url = url::Url::parse(&raw.url).map_err(|e| invalid("database.url", e.to_string()))?;
    if !matches!(url.scheme(), "mysql" | "mariadb") {
        return Err(invalid("database.url", "must start with mysql:// or mariadb://"));
    }
    if raw.refresh_secs == 0 {
        return Err(invalid("database.refresh_secs", "must be at least 1"));
    }
    if !(1..=300).contains(&raw.timeout_secs) {
        return Err(invalid("database.timeout_secs", "must be 1 to 300"));
    }
    if raw.global_query.trim().is_empty() || raw.mailbox_query.trim().is_empty() {
        return Err(invalid("database", "global_query and mailbox_query must not be empty"));
    }
    Ok(DatabaseSettings {
        // sqlx only knows the mysql scheme; MariaDB speaks the same protocol.
        url: raw.url.replacen("mariadb://", "mysql://", 1),
        refresh: Duration::from_secs(raw.refresh_secs),
        server_id: raw.server_id,
        timeout: Duration::from_secs(raw.timeout_secs),
        global_query: raw.global_query,
        mailbox_query: raw.mailbox_query,
    })
}

fn validate_log(raw: RawLog) -> Result<LogSettings, ConfigError> {
    tracing_subscriber::EnvFilter::try_new(&raw.level).map_err(|e| invalid("log.level", e.to_string()))?;
    Ok(LogSettings { level: raw.level })
}

mod render;
#[cfg(test)]
mod tests;

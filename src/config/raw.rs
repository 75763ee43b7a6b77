//! The config file as written: every key optional with its named default, unknown keys
//! refused. Nothing here is validated; `validate` turns it into typed settings. `Serialize`
//! only hands the file's settings to the environment overlay (`super::load`); the caps lists
//! never go that way.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{
    DEFAULT_CACHE_FILE, DEFAULT_GLOBAL, DEFAULT_GLOBAL_QUERY, DEFAULT_MAILBOX, DEFAULT_MAILBOX_QUERY,
    DEFAULT_MAX_RECIPIENTS, Mode, Oversize, StoreKind,
};

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConfig {
    pub(super) mode: Mode,
    pub(super) enforce_from: String,
    pub(super) store: StoreKind,
    pub(super) timezone: String,
    pub(super) server_name: String,
    pub(super) listen: RawListen,
    pub(super) limits: RawLimits,
    pub(super) redis: RawRedis,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) database: Option<RawDatabase>,
    pub(super) protect: RawProtect,
    pub(super) learn: RawLearn,
    pub(super) notify: RawNotify,
    pub(super) metrics: RawMetrics,
    pub(super) milter: super::local::RawMilter,
    pub(super) daemon: super::daemon::RawDaemon,
    pub(super) log: RawLog,
    pub(super) replies: super::replies::RawReplies,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Enforce,
            enforce_from: String::new(),
            store: StoreKind::Redis,
            timezone: String::new(),
            server_name: String::new(),
            listen: RawListen::default(),
            limits: RawLimits::default(),
            redis: RawRedis::default(),
            database: None,
            protect: RawProtect::default(),
            learn: RawLearn::default(),
            notify: RawNotify::default(),
            metrics: RawMetrics::default(),
            milter: super::local::RawMilter::default(),
            daemon: super::daemon::RawDaemon::default(),
            log: RawLog::default(),
            replies: super::replies::RawReplies::default(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawListen {
    pub(super) socket: PathBuf,
    pub(super) socket_mode: String,
    pub(super) socket_group: String,
    pub(super) tcp: String,
    pub(super) tcp_allow: Vec<String>,
    pub(super) tcp_allow_remote: bool,
    pub(super) max_connections: usize,
    pub(super) idle_timeout_secs: u64,
}

impl Default for RawListen {
    fn default() -> Self {
        Self {
            socket: "/var/spool/postfix/private/email-ratelimit".into(),
            socket_mode: "0660".into(),
            socket_group: String::new(),
            tcp: String::new(),
            tcp_allow: Vec::new(),
            tcp_allow_remote: false,
            max_connections: 2048,
            // Longer than Postfix's 300 s max_idle: smtpd closes first, cleanly.
            idle_timeout_secs: 600,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLimits {
    pub(super) global: u64,
    pub(super) global_rates: Vec<String>,
    pub(super) default_mailbox: u64,
    pub(super) default_mailbox_rates: Vec<String>,
    pub(super) max_recipients: u64,
    pub(super) oversize: Oversize,
    pub(super) max_rcpt_per_message: u64,
    #[serde(skip_serializing)]
    pub(super) mailbox: Vec<RawMailbox>,
    #[serde(skip_serializing)]
    pub(super) domain: Vec<RawDomain>,
    pub(super) local: super::local::RawLocal,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            global: DEFAULT_GLOBAL,
            global_rates: Vec::new(),
            default_mailbox: DEFAULT_MAILBOX,
            default_mailbox_rates: Vec::new(),
            max_recipients: u64::from(DEFAULT_MAX_RECIPIENTS),
            oversize: Oversize::Reject,
            max_rcpt_per_message: 0,
            mailbox: Vec::new(),
            domain: Vec::new(),
            local: super::local::RawLocal::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMailbox {
    pub(super) email: String,
    pub(super) daily: Option<u64>,
    pub(super) rates: Option<Vec<String>>,
    #[serde(default)]
    pub(super) exempt: bool,
    pub(super) max_rcpt_per_message: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDomain {
    pub(super) domain: String,
    pub(super) daily: Option<u64>,
    #[serde(default)]
    pub(super) rates: Vec<String>,
    pub(super) mailbox_daily: Option<u64>,
    pub(super) mailbox_rates: Option<Vec<String>>,
    pub(super) max_rcpt_per_message: Option<u64>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRedis {
    pub(super) url: String,
    pub(super) key_prefix: String,
    pub(super) timeout_ms: u64,
    pub(super) violations_max: u64,
    pub(super) sentinels: Vec<String>,
    pub(super) sentinel_master: String,
    pub(super) sentinel_password: String,
}

impl Default for RawRedis {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379/0".into(),
            key_prefix: "erl".into(),
            timeout_ms: 250,
            violations_max: 1000,
            sentinels: Vec::new(),
            sentinel_master: "mymaster".into(),
            sentinel_password: String::new(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDatabase {
    pub(super) url: String,
    pub(super) layout: String,
    pub(super) master_url: String,
    pub(super) refresh_secs: u64,
    pub(super) server_id: u32,
    pub(super) timeout_secs: u64,
    pub(super) global_query: String,
    pub(super) mailbox_query: String,
    pub(super) cache_file: PathBuf,
}

impl Default for RawDatabase {
    fn default() -> Self {
        Self {
            url: String::new(),
            layout: "er-tables".into(),
            master_url: String::new(),
            refresh_secs: 60,
            server_id: 0,
            timeout_secs: 10,
            global_query: DEFAULT_GLOBAL_QUERY.into(),
            mailbox_query: DEFAULT_MAILBOX_QUERY.into(),
            cache_file: DEFAULT_CACHE_FILE.into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawProtect {
    pub(super) max_client_ips: u64,
    pub(super) lock: bool,
    pub(super) lock_after_refusals: u64,
}

impl Default for RawProtect {
    fn default() -> Self {
        let d = super::ProtectSettings::default();
        Self {
            max_client_ips: d.max_client_ips.into(),
            lock: d.lock,
            lock_after_refusals: d.lock_after_refusals.into(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLearn {
    pub(super) enabled: bool,
    pub(super) days: u64,
    pub(super) min_days: u64,
    pub(super) factor: f64,
    pub(super) ceiling: u64,
    pub(super) max_growth: f64,
    pub(super) known_networks: bool,
    pub(super) ipv4_prefix: u64,
    pub(super) ipv6_prefix: u64,
}

impl Default for RawLearn {
    fn default() -> Self {
        let d = super::LearnSettings::default();
        let n = crate::network::Networks::default();
        Self {
            known_networks: d.networks.is_some(),
            ipv4_prefix: n.v4.into(),
            ipv6_prefix: n.v6.into(),
            enabled: d.enabled,
            days: d.days.into(),
            min_days: d.min_days.into(),
            factor: d.factor,
            ceiling: d.ceiling,
            max_growth: d.max_growth,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawNotify {
    pub(super) admin: Vec<String>,
    pub(super) sender: bool,
    pub(super) webhook: String,
    pub(super) max_per_day: u32,
    pub(super) sendmail: String,
    pub(super) from: String,
}

impl Default for RawNotify {
    fn default() -> Self {
        Self {
            admin: Vec::new(),
            sender: false,
            webhook: String::new(),
            max_per_day: 20,
            sendmail: "/usr/sbin/sendmail".into(),
            from: String::new(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawMetrics {
    pub(super) listen: String,
    pub(super) allow_remote: bool,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    pub(super) level: String,
    pub(super) target: super::LogTarget,
}

impl Default for RawLog {
    fn default() -> Self {
        Self { level: "info".into(), target: super::LogTarget::Auto }
    }
}

//! The limit set: the server-wide cap, the default per-mailbox cap and the opt-in caps, built
//! from the config file and optionally MariaDB, held in memory (no SQL on the request path).

pub mod cache;
pub mod database;

use std::collections::HashMap;

pub use cache::LimitsCache;
pub use database::{DatabaseLimits, DatabaseSource, LimitsError};

use crate::config::LimitSettings;
use crate::sender::Mailbox;

/// Where the current set came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    ConfigFile,
    Database,
}

/// One immutable limit set; replaced whole on refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub global: u64,
    pub default_mailbox: u64,
    mailboxes: HashMap<Mailbox, u64>,
    pub origin: Origin,
}

impl Limits {
    /// The config file's limits alone.
    #[must_use]
    pub fn from_config(config: &LimitSettings) -> Self {
        Self::merged(config, None)
    }

    /// The config file's limits overlaid with the database's: the database's server-wide and
    /// default caps win where it has them, and its opt-in caps are added to (and override) the
    /// file's. A cap without its own number takes the effective default.
    #[must_use]
    pub fn merged(config: &LimitSettings, db: Option<&DatabaseLimits>) -> Self {
        let global = db.and_then(|d| d.global).unwrap_or(config.global);
        let default_mailbox = db.and_then(|d| d.default_mailbox).unwrap_or(config.default_mailbox);
        let db_caps = db.map(|d| d.mailboxes.as_slice()).unwrap_or_default();
        let mailboxes = config
            .mailboxes
            .iter()
            .chain(db_caps)
            .map(|(m, daily)| (m.clone(), daily.unwrap_or(default_mailbox)))
            .collect();
        Self {
            global,
            default_mailbox,
            mailboxes,
            origin: if db.is_some() { Origin::Database } else { Origin::ConfigFile },
        }
    }

    /// The sender's daily cap, or `None` when it has not opted in.
    #[must_use]
    pub fn mailbox_cap(&self, mailbox: &Mailbox) -> Option<u64> {
        self.mailboxes.get(mailbox).copied()
    }

    /// How many mailboxes have a cap.
    #[must_use]
    pub fn capped_mailboxes(&self) -> usize {
        self.mailboxes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sender::normalize;

    fn mb(s: &str) -> Mailbox {
        normalize(s).expect("valid")
    }

    #[test]
    fn database_overlays_the_config_file() {
        let config = LimitSettings {
            global: 999,
            default_mailbox: 50,
            mailboxes: vec![(mb("a@x.org"), Some(10)), (mb("b@x.org"), None), (mb("c@x.org"), Some(7))],
        };
        let file_only = Limits::from_config(&config);
        assert_eq!(file_only.mailbox_cap(&mb("b@x.org")), Some(50));
        assert_eq!(file_only.mailbox_cap(&mb("nobody@x.org")), None);
        assert_eq!(file_only.origin, Origin::ConfigFile);

        let db = DatabaseLimits {
            global: Some(500),
            default_mailbox: Some(20),
            mailboxes: vec![(mb("c@x.org"), Some(3)), (mb("d@x.org"), None)],
        };
        let merged = Limits::merged(&config, Some(&db));
        assert_eq!(merged.global, 500);
        assert_eq!(merged.mailbox_cap(&mb("a@x.org")), Some(10));
        assert_eq!(merged.mailbox_cap(&mb("b@x.org")), Some(20), "default from the database");
        assert_eq!(merged.mailbox_cap(&mb("c@x.org")), Some(3), "database wins");
        assert_eq!(merged.mailbox_cap(&mb("d@x.org")), Some(20));
        assert_eq!(merged.capped_mailboxes(), 4);
        assert_eq!(merged.origin, Origin::Database);

        let no_row = DatabaseLimits { global: None, default_mailbox: None, mailboxes: vec![] };
        assert_eq!(Limits::merged(&config, Some(&no_row)).global, 999);
    }
}

//! The limit set: the server-wide cap, the default per-mailbox cap and the opt-in caps, built
//! from the config file and optionally MariaDB, held in memory (no SQL on the request path).

pub mod cache;
pub mod caps;
pub mod database;

use std::collections::HashMap;
use std::sync::Arc;

pub use cache::LimitsCache;
pub use caps::{CapTable, Daily};
pub use database::{DatabaseLimits, DatabaseSource, Fetched, LimitsError};

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
    /// The config file's opt-in caps (few).
    file_caps: HashMap<Mailbox, Daily>,
    /// The database's (up to hundreds of thousands), shared between refreshes that only change
    /// the config file.
    db_caps: Arc<CapTable>,
    capped: usize,
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
        let db_caps = db.map(|d| d.mailboxes.clone()).unwrap_or_default();
        let file_caps: HashMap<Mailbox, Daily> = config.mailboxes.iter().cloned().collect();
        let capped = db_caps.len() + file_caps.keys().filter(|m| db_caps.get(m).is_none()).count();
        Self {
            global,
            default_mailbox,
            file_caps,
            db_caps,
            capped,
            origin: if db.is_some() { Origin::Database } else { Origin::ConfigFile },
        }
    }

    /// The sender's daily cap, or `None` when it has not opted in.
    #[must_use]
    pub fn mailbox_cap(&self, mailbox: &Mailbox) -> Option<u64> {
        self.db_caps
            .get(mailbox)
            .or_else(|| self.file_caps.get(mailbox).copied())
            .map(|daily| daily.unwrap_or(self.default_mailbox))
    }

    /// How many mailboxes have a cap.
    #[must_use]
    pub fn capped_mailboxes(&self) -> usize {
        self.capped
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

        let mut table = caps::CapTableBuilder::default();
        table.push(&mb("c@x.org"), Some(3));
        table.push(&mb("d@x.org"), None);
        let db = DatabaseLimits {
            global: Some(500),
            default_mailbox: Some(20),
            mailboxes: Arc::new(table.build()),
            fingerprint: 1,
        };
        let merged = Limits::merged(&config, Some(&db));
        assert_eq!(merged.global, 500);
        assert_eq!(merged.mailbox_cap(&mb("a@x.org")), Some(10));
        assert_eq!(merged.mailbox_cap(&mb("b@x.org")), Some(20), "default from the database");
        assert_eq!(merged.mailbox_cap(&mb("c@x.org")), Some(3), "database wins");
        assert_eq!(merged.mailbox_cap(&mb("d@x.org")), Some(20));
        assert_eq!(merged.capped_mailboxes(), 4);
        assert_eq!(merged.origin, Origin::Database);

        let no_row = DatabaseLimits::default();
        assert_eq!(Limits::merged(&config, Some(&no_row)).global, 999);
    }
}

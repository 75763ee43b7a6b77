//! The limit set: the server-wide cap, the default per-mailbox cap and the opt-in caps, built
//! from the config file and optionally MariaDB (or the cache file of its last good read), held
//! in memory (no SQL on the request path).

pub mod cache;
pub mod caps;
pub mod database;
mod effective;
pub mod erl_columns;
pub mod file;
pub mod local;
pub mod names;
pub mod refresher;
mod resolve;
pub mod saved;
mod sql;
pub mod websites;

use std::fmt;
use std::sync::Arc;

pub use cache::LimitsCache;
pub use caps::{CapTable, DbCap};
pub use database::{DatabaseLimits, DatabaseSource, Fetched, LimitsError};
pub use effective::{Basis, Effective, effective, raised, scale};
pub use file::{FileLimits, Listed, MailboxTable, sort as sort_caps};
pub use refresher::{Reader, Refresher};
pub use resolve::{CATCH_ALL, CapSource, MailboxCaps};

use crate::config::{Layout, LimitSettings};

/// Where the current set came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// No database configured.
    ConfigFile,
    /// A good database read by this process.
    Database,
    /// The cache file of an earlier good read; the database has not answered yet.
    CacheFile,
    /// A database is configured but nothing of it is known yet: the caps it provides are
    /// counted, not enforced.
    Unknown,
}

impl Origin {
    /// For logs and `status`.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::ConfigFile => "the config file",
            Self::Database => "the database",
            Self::CacheFile => "the cache file of the last good database read",
            Self::Unknown => "not known yet (database not read, no cache file)",
        }
    }
}

/// A cap as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cap {
    Enforced(u64),
    /// The database decides this cap and has not been read: count, never defer on it.
    Unknown,
}

impl Cap {
    /// The number, when known.
    #[must_use]
    pub fn known(self) -> Option<u64> {
        match self {
            Self::Enforced(n) => Some(n),
            Self::Unknown => None,
        }
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Enforced(n) => write!(f, "{n}"),
            Self::Unknown => f.write_str("unknown"),
        }
    }
}

/// One immutable limit set; replaced whole on refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The server's daily cap.
    pub global: Cap,
    /// The daily cap of a capped mailbox without caps of its own.
    pub default_mailbox: Cap,
    /// A larger `recipient_count` is counted as this.
    pub max_recipients: u32,
    /// The answer to a message that can never fit.
    pub oversize: crate::config::Oversize,
    /// Every cap of the config file (and the effective server and default caps), ready for the
    /// request path.
    compiled: resolve::Compiled,
    /// The database's (up to hundreds of thousands), shared between refreshes that only change
    /// the config file.
    db_caps: Arc<CapTable>,
    /// The erl-columns layout has not been read yet: a mailbox the file does not cap may have a
    /// database cap nobody knows yet (counted under an unknown cap, never deferred).
    pending_mailboxes: bool,
    /// Whether the database gave the server's daily cap / the default per-mailbox cap.
    db_global: bool,
    db_default: bool,
    layout: Layout,
    capped: usize,
    /// `[limits.local]` (website mail).
    local: Arc<local::LocalTable>,
    pub origin: Origin,
}

impl Limits {
    /// The config file's limits alone.
    #[must_use]
    pub fn from_config(config: &LimitSettings) -> Self {
        Self::merged(config, None, Origin::ConfigFile, Layout::ErTables)
    }

    /// The config file's limits overlaid with the database's (`db`, from a read or the cache
    /// file, in `layout`): the database's server-wide and default caps win where it has them,
    /// its mailbox caps are added to (and replace) the file's, its domain caps replace the
    /// file's aggregate caps of those domains. A cap without its own number takes the effective
    /// default. With [`Origin::Unknown`] the caps the layout would provide are [`Cap::Unknown`]:
    /// er-tables' server-wide and default per-mailbox caps; erl-columns' caps of the mailboxes
    /// the file does not cap. A file cap with its own number stays enforced.
    #[must_use]
    pub fn merged(
        config: &LimitSettings,
        db: Option<&DatabaseLimits>,
        origin: Origin,
        layout: Layout,
    ) -> Self {
        Self::assemble(&FileLimits::from(config.clone()), db, origin, layout)
    }

    /// As [`Self::merged`], from the config file's limits as compiled once per load (the
    /// daemon's rebuilds share its mailbox table instead of copying it).
    #[must_use]
    pub fn assemble(file: &FileLimits, db: Option<&DatabaseLimits>, origin: Origin, layout: Layout) -> Self {
        let config = &file.settings;
        let pending = origin == Origin::Unknown;
        let file_cap =
            |n: u64| if pending && layout == Layout::ErTables { Cap::Unknown } else { Cap::Enforced(n) };
        let global = db.and_then(|d| d.global).map_or_else(|| file_cap(config.global), Cap::Enforced);
        let default_mailbox = db
            .and_then(|d| d.default_mailbox)
            .map_or_else(|| file_cap(config.default_mailbox), Cap::Enforced);
        let db_caps = db.map(|d| d.mailboxes.clone()).unwrap_or_default();
        let db_domains = db.map_or(&[][..], |d| d.domains.as_slice());
        let compiled =
            resolve::Compiled::new(config, file.mailboxes.clone(), global, default_mailbox, db_domains);
        let capped = db_caps.len() + compiled.listed().filter(|m| db_caps.get_name(m).is_none()).count();
        Self {
            global,
            default_mailbox,
            max_recipients: config.max_recipients,
            oversize: config.oversize,
            compiled,
            db_caps,
            pending_mailboxes: pending && layout == Layout::ErlColumns,
            db_global: db.is_some_and(|d| d.global.is_some()),
            db_default: db.is_some_and(|d| d.default_mailbox.is_some()),
            layout,
            capped,
            local: file.local.clone(),
            origin,
        }
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
    use crate::config::MailboxEntry as Entry;
    use crate::sender::Mailbox;
    use crate::sender::normalize;

    fn mb(s: &str) -> Mailbox {
        normalize(s).expect("valid")
    }

    #[test]
    fn database_overlays_the_config_file() {
        let config = LimitSettings {
            mailboxes: vec![
                Entry::daily(mb("a@x.org"), Some(10)),
                Entry::daily(mb("b@x.org"), None),
                Entry::daily(mb("c@x.org"), Some(7)),
            ],
            ..LimitSettings::default()
        };
        let file_only = Limits::from_config(&config);
        assert_eq!(file_only.mailbox_cap(&mb("b@x.org")), Some(Cap::Enforced(50)));
        assert_eq!(file_only.mailbox_cap(&mb("nobody@x.org")), None);
        assert_eq!(file_only.origin, Origin::ConfigFile);

        let mut table = caps::CapTableBuilder::default();
        table.push(&mb("c@x.org"), Some(vec![crate::window::Rate::rcpt(3, crate::window::Window::Day)]));
        table.push(&mb("d@x.org"), None);
        let db = DatabaseLimits {
            global: Some(500),
            default_mailbox: Some(20),
            mailboxes: Arc::new(table.build()),
            domains: Vec::new(),
            fingerprint: 1,
        };
        let merged = Limits::merged(&config, Some(&db), Origin::Database, Layout::ErTables);
        assert_eq!(merged.global, Cap::Enforced(500));
        assert_eq!(merged.mailbox_cap(&mb("a@x.org")), Some(Cap::Enforced(10)));
        assert_eq!(merged.mailbox_cap(&mb("b@x.org")), Some(Cap::Enforced(20)), "default from the database");
        assert_eq!(merged.mailbox_cap(&mb("c@x.org")), Some(Cap::Enforced(3)), "database wins");
        assert_eq!(merged.mailbox_cap(&mb("d@x.org")), Some(Cap::Enforced(20)));
        assert_eq!(merged.capped_mailboxes(), 4);
        assert_eq!(merged.origin, Origin::Database);

        let no_row = DatabaseLimits::default();
        assert_eq!(
            Limits::merged(&config, Some(&no_row), Origin::Database, Layout::ErTables).global,
            Cap::Enforced(999)
        );
    }

    #[test]
    fn until_the_database_is_known_its_caps_are_not_enforced() {
        let config = LimitSettings {
            mailboxes: vec![Entry::daily(mb("a@x.org"), Some(10)), Entry::daily(mb("b@x.org"), None)],
            ..LimitSettings::default()
        };
        let pending = Limits::merged(&config, None, Origin::Unknown, Layout::ErTables);
        assert_eq!(pending.global, Cap::Unknown, "the database may raise the server cap");
        assert_eq!(pending.mailbox_cap(&mb("b@x.org")), Some(Cap::Unknown), "its default too");
        assert_eq!(pending.mailbox_cap(&mb("a@x.org")), Some(Cap::Enforced(10)), "only the file sets this");
        assert_eq!(pending.mailbox_cap(&mb("z@x.org")), None);
        assert_eq!(pending.global.to_string(), "unknown");
    }
}

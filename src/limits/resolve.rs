//! Which caps apply to a sender, as the contract resolves them: the mailbox's own entry (the
//! database's replaces the file's), else its domain's `mailbox_*` defaults, else none; the
//! domain's aggregate caps; the server's. Within a scope, longer windows first.

use std::collections::HashMap;
use std::sync::Arc;

use super::file::{Caps, Listed, MailboxTable, ordered, sort};
use super::{Cap, Limits};
use crate::config::LimitSettings;
use crate::sender::Mailbox;
use crate::window::{Rate, Unit, Window, strictest};

/// Where a cap comes from (for `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CapSource {
    #[default]
    ConfigFile,
    /// The database's layout (or the cache file of its last good read).
    Database,
    /// The database decides it and has not been read yet.
    NotRead,
}

/// A mailbox's caps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailboxCaps {
    /// In checking order; empty: not capped.
    pub caps: Vec<Listed>,
    /// Never deferred; counted only on its own counters.
    pub exempt: bool,
    /// Whether it is capped at all (listed, or its domain caps its mailboxes).
    pub listed: bool,
    pub source: CapSource,
    /// `max_rcpt_per_message` as it applies (0: off): the mailbox's own, else its domain's,
    /// else `[limits]`'. An exempt mailbox has only its own.
    pub per_message: u32,
    /// The caps come from a default (`default_mailbox`, a domain's `mailbox_*`, the database's
    /// default or inherited cap): a learned allowance may raise them.
    pub from_default: bool,
}

/// A `[[limits.domain]]` as the request path reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct DomainCaps {
    /// Over all its senders together.
    aggregate: Caps,
    /// Each of its mailboxes without an entry of its own; `None`: not capped.
    mailboxes: Option<Caps>,
    per_message: Option<u32>,
}

/// Caps as the request path reads them: converted and ordered once, when the set is built.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Compiled {
    server: Caps,
    defaults: Caps,
    /// `[[limits.mailbox]]`: its own caps (`None`: the defaults) and whether it is exempt.
    mailboxes: Arc<MailboxTable>,
    /// `[[limits.domain]]`.
    domains: HashMap<String, DomainCaps>,
    /// `[limits] max_rcpt_per_message`.
    per_message: u32,
    /// The domains whose aggregate caps are the database's.
    db_domains: std::collections::HashSet<String>,
}

impl Compiled {
    /// `global` and `default_mailbox` are the effective daily caps (the database's, the
    /// file's, or unknown).
    /// `db_domains`: the database's aggregate domain caps, which replace the file's.
    pub(super) fn new(
        config: &LimitSettings,
        mailboxes: Arc<MailboxTable>,
        global: Cap,
        default_mailbox: Cap,
        db_domains: &[(String, Rate)],
    ) -> Self {
        let mut domains: HashMap<String, DomainCaps> = config
            .domains
            .iter()
            .map(|d| {
                let caps = DomainCaps {
                    aggregate: ordered(None, &d.caps),
                    mailboxes: d.mailbox_caps.as_deref().map(|c| ordered(None, c)),
                    per_message: d.max_rcpt_per_message,
                };
                (d.domain.clone(), caps)
            })
            .collect();
        // The database's caps of a domain (one entry per window) replace the file's aggregate.
        let mut by_domain: HashMap<&str, Vec<Rate>> = HashMap::new();
        for (domain, rate) in db_domains {
            by_domain.entry(domain.as_str()).or_default().push(*rate);
        }
        for (domain, rates) in by_domain {
            domains.entry(domain.to_owned()).or_default().aggregate = ordered(None, &strictest(rates));
        }
        let db_domains = db_domains.iter().map(|(d, _)| d.clone()).collect();
        Self {
            server: ordered(Some((Window::Day, Unit::Rcpt, global)), &config.global_rates),
            defaults: ordered(
                Some((Window::Day, Unit::Rcpt, default_mailbox)),
                &config.default_mailbox_rates,
            ),
            mailboxes,
            domains,
            db_domains,
            per_message: config.max_rcpt_per_message,
        }
    }

    /// A domain's entry: its own, else the catch-all `domain = "*"` (each domain without an
    /// entry of its own gets the catch-all's caps, counted on its own counters).
    fn domain(&self, domain: &str) -> Option<&DomainCaps> {
        self.domains.get(domain).or_else(|| self.domains.get(CATCH_ALL))
    }

    /// The config file's listed mailboxes.
    pub(super) fn listed(&self) -> impl Iterator<Item = &str> {
        self.mailboxes.names()
    }
}

pub use crate::config::CATCH_ALL;

impl Limits {
    /// The caps of one mailbox.
    #[must_use]
    pub fn mailbox_caps(&self, mailbox: &Mailbox) -> MailboxCaps {
        let c = &self.compiled;
        let entry = c.mailboxes.get(mailbox);
        let exempt = entry.is_some_and(|e| e.exempt);
        let domain = mailbox.domain().and_then(|d| c.domain(d));
        let per_message = match entry.and_then(|e| e.per_message) {
            Some(own) => own,
            None if exempt => 0,
            None => domain.and_then(|d| d.per_message).unwrap_or(c.per_message),
        };
        let caps: Option<&[Listed]> = if let Some((cap, inherited)) = self.db_caps.entry(mailbox) {
            // The database's cap replaces the file's for this mailbox.
            return MailboxCaps {
                from_default: cap.is_none() || inherited,
                source: CapSource::Database,
                caps: cap.map_or_else(
                    || c.defaults.clone(),
                    |rates| {
                        let mut caps: Caps =
                            rates.iter().map(|r| (r.window, r.unit, Cap::Enforced(r.limit))).collect();
                        sort(&mut caps);
                        caps
                    },
                ),
                exempt,
                listed: true,
                per_message,
            };
        } else if let Some(e) = entry {
            Some(e.caps.unwrap_or(&c.defaults))
        } else {
            domain.and_then(|d| d.mailboxes.as_deref())
        };
        match caps {
            Some(caps) => {
                // A listed mailbox on the defaults takes the database's default when it has one.
                let source = if caps.first().is_some_and(|(_, _, c)| *c == Cap::Unknown) {
                    CapSource::NotRead
                } else if entry.is_some_and(|e| e.caps.is_none()) && self.db_default {
                    CapSource::Database
                } else {
                    CapSource::ConfigFile
                };
                // Its own entry's caps are explicit; the defaults and its domain's are not.
                let from_default = entry.is_none_or(|e| e.caps.is_none());
                MailboxCaps { listed: true, caps: caps.to_vec(), exempt, source, per_message, from_default }
            }
            // The database may cap it; nobody knows yet: counted, never deferred.
            None if self.pending_mailboxes => MailboxCaps {
                listed: true,
                caps: vec![(Window::Day, Unit::Rcpt, Cap::Unknown)],
                exempt,
                source: CapSource::NotRead,
                per_message,
                from_default: false,
            },
            None => MailboxCaps {
                listed: false,
                caps: Vec::new(),
                exempt,
                source: CapSource::ConfigFile,
                per_message,
                from_default: false,
            },
        }
    }

    /// The mailbox's daily cap, or `None` when it has none (for logs and `status`).
    #[must_use]
    pub fn mailbox_cap(&self, mailbox: &Mailbox) -> Option<Cap> {
        self.mailbox_caps(mailbox)
            .caps
            .iter()
            .find(|(w, u, _)| *w == Window::Day && *u == Unit::Rcpt)
            .map(|(_, _, c)| *c)
    }

    /// The aggregate caps of a domain (all its senders together), longer windows first.
    #[must_use]
    pub fn domain_caps(&self, domain: &str) -> &[Listed] {
        self.compiled.domain(domain).map_or(&[], |d| d.aggregate.as_slice())
    }

    /// Where a domain's aggregate caps come from.
    #[must_use]
    pub fn domain_source(&self, domain: &str) -> CapSource {
        if self.compiled.db_domains.contains(domain) { CapSource::Database } else { CapSource::ConfigFile }
    }

    /// Where the server's cap over `window` comes from (the database gives at most the daily).
    #[must_use]
    pub fn server_source(&self, window: Window) -> CapSource {
        match (window, self.global) {
            (Window::Day, Cap::Unknown) => CapSource::NotRead,
            (Window::Day, _) if self.db_global => CapSource::Database,
            _ => CapSource::ConfigFile,
        }
    }

    /// A cap source in words: `config file`, `database (erl-columns)`, ...
    #[must_use]
    pub fn describe(&self, source: CapSource) -> String {
        match (source, self.origin) {
            (CapSource::ConfigFile, _) => "config file".into(),
            (CapSource::Database, super::Origin::CacheFile) => {
                format!("database ({}), from the cache file of its last read", self.layout.as_str())
            }
            (CapSource::Database, _) => format!("database ({})", self.layout.as_str()),
            (CapSource::NotRead, _) => "database, not read yet".into(),
        }
    }

    /// The caps of a listed mailbox without its own (`default_mailbox`, `default_mailbox_rates`,
    /// or the database's default), longer windows first.
    #[must_use]
    pub fn default_mailbox_caps(&self) -> &[Listed] {
        &self.compiled.defaults
    }

    /// The server's caps: `global` daily and `global_rates`, longer windows first.
    #[must_use]
    pub fn server_caps(&self) -> &[Listed] {
        &self.compiled.server
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::Layout;
    use crate::config::from_toml;
    use crate::limits::caps::CapTableBuilder;
    use crate::limits::{DatabaseLimits, Origin};
    use crate::sender::normalize;

    fn limits(toml: &str) -> Limits {
        Limits::from_config(&from_toml(toml).expect("valid").limits)
    }

    fn mb(s: &str) -> Mailbox {
        normalize(s).expect("valid")
    }

    fn caps(list: &[(&str, u64)]) -> Vec<Listed> {
        list.iter()
            .map(|(w, n)| {
                // "1h": recipients; "msg/1h": messages.
                let text = if w.contains('/') { format!("{n}{w}") } else { format!("{n}/{w}") };
                let r = Rate::parse(&text, u64::MAX).expect("rate");
                (r.window, r.unit, Cap::Enforced(r.limit))
            })
            .collect()
    }

    const CONFIG: &str = r#"
        [limits]
        global = 999
        global_rates = ["100/15m", "300/1h"]
        default_mailbox = 50
        default_mailbox_rates = ["10/1h"]
        [[limits.mailbox]]
        email = "own@example.com"
        rates = ["20/1h", "5/1m"]
        daily = 100
        [[limits.mailbox]]
        email = "listed@example.com"
        [[limits.mailbox]]
        email = "vip@example.com"
        exempt = true
        [[limits.domain]]
        domain = "Example.com"
        daily = 2000
        rates = ["500/1h"]
        mailbox_daily = 30
        mailbox_rates = ["8/1h"]
        [[limits.domain]]
        domain = "bücher.example"
        rates = ["50/1h"]
    "#;

    #[test]
    fn mailbox_entry_then_domain_default_then_none() {
        let l = limits(CONFIG);
        let own = l.mailbox_caps(&mb("own@example.com"));
        assert_eq!(own.caps, caps(&[("1d", 100), ("1h", 20), ("1m", 5)]), "its own, longer windows first");
        assert!(own.listed && !own.exempt);
        assert_eq!(
            l.mailbox_caps(&mb("listed@example.com")).caps,
            caps(&[("1d", 50), ("1h", 10)]),
            "the defaults"
        );
        assert_eq!(
            l.mailbox_caps(&mb("other@example.com")).caps,
            caps(&[("1d", 30), ("1h", 8)]),
            "its domain's"
        );
        let free = l.mailbox_caps(&mb("free@elsewhere.org"));
        assert!(free.caps.is_empty() && !free.listed);
        assert!(l.mailbox_caps(&mb("vip@example.com")).exempt);
        assert_eq!(l.mailbox_cap(&mb("own@example.com")), Some(Cap::Enforced(100)));
        assert_eq!(l.mailbox_cap(&mb("free@elsewhere.org")), None);
    }

    #[test]
    fn domain_and_server_caps() {
        let l = limits(CONFIG);
        assert_eq!(l.domain_caps("example.com"), caps(&[("1d", 2000), ("1h", 500)]));
        assert_eq!(l.domain_caps("xn--bcher-kva.example"), caps(&[("1h", 50)]), "IDNA, like senders");
        assert!(l.domain_caps("elsewhere.org").is_empty());
        assert_eq!(l.server_caps(), caps(&[("1d", 999), ("1h", 300), ("15m", 100)]));
    }

    #[test]
    fn the_database_replaces_the_file_for_its_mailboxes() {
        let config = from_toml(CONFIG).expect("valid").limits;
        let mut table = CapTableBuilder::default();
        table.push(&mb("own@example.com"), Some(vec![Rate::rcpt(7, Window::Day)]));
        table.push(&mb("other@example.com"), None);
        let db = DatabaseLimits {
            global: Some(5000),
            default_mailbox: Some(40),
            mailboxes: Arc::new(table.build()),
            domains: Vec::new(),
            fingerprint: 1,
        };
        let l = Limits::merged(&config, Some(&db), Origin::Database, Layout::ErTables);
        assert_eq!(l.mailbox_caps(&mb("own@example.com")).caps, caps(&[("1d", 7)]));
        assert_eq!(
            l.mailbox_caps(&mb("other@example.com")).caps,
            caps(&[("1d", 40), ("1h", 10)]),
            "database default"
        );
        assert_eq!(l.server_caps(), caps(&[("1d", 5000), ("1h", 300), ("15m", 100)]));
        // Where each comes from, for `status`.
        assert_eq!(l.mailbox_caps(&mb("own@example.com")).source, CapSource::Database);
        assert_eq!(
            l.mailbox_caps(&mb("listed@example.com")).source,
            CapSource::Database,
            "the database's default"
        );
        assert_eq!(l.server_source(Window::Day), CapSource::Database);
        assert_eq!(l.server_source(Window::HOUR), CapSource::ConfigFile);
        assert_eq!(l.describe(CapSource::Database), "database (er-tables)");
        assert_eq!(limits(CONFIG).mailbox_caps(&mb("own@example.com")).source, CapSource::ConfigFile);
        // Unknown until read: the database's caps are unknown, the file's own stay enforced.
        let pending = Limits::merged(&config, None, Origin::Unknown, Layout::ErTables);
        assert_eq!(pending.server_caps()[0], (Window::Day, Unit::Rcpt, Cap::Unknown));
        assert_eq!(pending.server_caps()[1], (Window::HOUR, Unit::Rcpt, Cap::Enforced(300)));
        assert_eq!(pending.server_source(Window::Day), CapSource::NotRead);
        assert_eq!(pending.mailbox_caps(&mb("listed@example.com")).source, CapSource::NotRead);
        assert_eq!(
            pending.mailbox_caps(&mb("listed@example.com")).caps,
            vec![(Window::Day, Unit::Rcpt, Cap::Unknown), (Window::HOUR, Unit::Rcpt, Cap::Enforced(10))]
        );
    }

    #[test]
    fn erl_columns_caps_carry_windows_and_replace_the_files_domain_caps() {
        let config = from_toml(CONFIG).expect("valid").limits;
        let mut table = CapTableBuilder::default();
        table.push(&mb("own@example.com"), Some(vec![Rate::rcpt(30, Window::Minutes(15))]));
        table.push(&mb("panel@example.com"), Some(vec![Rate::rcpt(500, Window::HOUR)]));
        let db = DatabaseLimits {
            mailboxes: Arc::new(table.build()),
            domains: vec![("example.com".into(), Rate::rcpt(900, Window::HOUR))],
            ..DatabaseLimits::default()
        };
        let l = Limits::merged(&config, Some(&db), Origin::Database, Layout::ErlColumns);
        assert_eq!(
            l.mailbox_caps(&mb("own@example.com")).caps,
            caps(&[("15m", 30)]),
            "the database's, alone"
        );
        assert_eq!(l.mailbox_caps(&mb("panel@example.com")).caps, caps(&[("1h", 500)]));
        assert_eq!(l.domain_caps("example.com"), caps(&[("1h", 900)]), "replaces the file's 2000/1d 500/1h");
        assert_eq!(
            l.domain_caps("xn--bcher-kva.example"),
            caps(&[("1h", 50)]),
            "other domains keep the file's"
        );
        assert_eq!(
            l.server_caps()[0],
            (Window::Day, Unit::Rcpt, Cap::Enforced(999)),
            "the server cap is the file's"
        );
        assert!(!l.mailbox_caps(&mb("stranger@elsewhere.org")).listed);
        // Not read yet: the server and file caps are enforced; a mailbox the file does not cap
        // is counted under an unknown cap (its panel cap may be anything).
        let pending = Limits::merged(&config, None, Origin::Unknown, Layout::ErlColumns);
        assert_eq!(pending.server_caps()[0], (Window::Day, Unit::Rcpt, Cap::Enforced(999)));
        assert_eq!(
            pending.mailbox_caps(&mb("own@example.com")).caps,
            caps(&[("1d", 100), ("1h", 20), ("1m", 5)])
        );
        assert_eq!(
            pending.mailbox_caps(&mb("stranger@elsewhere.org")).caps,
            vec![(Window::Day, Unit::Rcpt, Cap::Unknown)]
        );
    }

    /// Issue 21 item 3 (DESIGN v3): `domain = "*"` is the entry of every domain without one of
    /// its own: its mailbox caps for their mailboxes, its aggregate caps for each of them.
    #[test]
    fn the_catch_all_domain_covers_every_domain_without_an_entry() {
        let l = limits(
            "[[limits.domain]]\ndomain = \"*\"\ndaily = 20\nmailbox_daily = 7\n\
             [[limits.domain]]\ndomain = \"own.example\"\nrates = [\"5/1h\"]\n\
             [[limits.mailbox]]\nemail = \"vip@any.test\"\ndaily = 100\n",
        );
        assert_eq!(l.mailbox_caps(&mb("a@any.test")).caps, caps(&[("1d", 7)]));
        assert_eq!(l.domain_caps("any.test"), caps(&[("1d", 20)]).as_slice());
        assert_eq!(l.domain_caps("other.test"), caps(&[("1d", 20)]).as_slice(), "each domain on its own");
        // A domain with an entry of its own: its entry alone (no mailbox caps there).
        assert!(l.mailbox_caps(&mb("b@own.example")).caps.is_empty());
        assert_eq!(l.domain_caps("own.example"), caps(&[("1h", 5)]).as_slice());
        // A mailbox's own entry still wins; a login without a domain has no domain entry.
        assert_eq!(l.mailbox_caps(&mb("vip@any.test")).caps, caps(&[("1d", 100)]));
        assert!(l.mailbox_caps(&mb("nodomain")).caps.is_empty());
    }

    /// Issue 22 item 2 (DESIGN v3): message caps sit beside recipient caps in every list, the
    /// recipient cap of a window first; `max_rcpt_per_message`: the most specific one applies.
    #[test]
    fn message_caps_and_recipients_per_message() {
        let l = limits(
            "[limits]\nglobal_rates = [\"5000msg/1d\", \"300msg/1h\"]\ndefault_mailbox_rates = [\"40msg/1h\", \"20/1h\"]\n\
             max_rcpt_per_message = 100\n\
             [[limits.mailbox]]\nemail = \"own@x.org\"\nrates = [\"10msg/15m\", \"300msg/1d\"]\ndaily = 200\nmax_rcpt_per_message = 0\n\
             [[limits.mailbox]]\nemail = \"listed@x.org\"\n\
             [[limits.mailbox]]\nemail = \"vip@x.org\"\nexempt = true\n\
             [[limits.domain]]\ndomain = \"x.org\"\nrates = [\"900msg/1h\"]\nmax_rcpt_per_message = 30\n\
             [[limits.domain]]\ndomain = \"*\"\nmailbox_rates = [\"25msg/1h\"]\n",
        );
        assert_eq!(
            l.mailbox_caps(&mb("own@x.org")).caps,
            caps(&[("1d", 200), ("msg/1d", 300), ("msg/15m", 10)]),
            "its own: the day's recipients, then the day's messages, then 15 minutes"
        );
        assert_eq!(
            l.mailbox_caps(&mb("listed@x.org")).caps,
            caps(&[("1d", 50), ("1h", 20), ("msg/1h", 40)]),
            "the defaults: recipients before messages in one window"
        );
        assert_eq!(l.domain_caps("x.org"), caps(&[("msg/1h", 900)]).as_slice());
        assert_eq!(l.server_caps(), caps(&[("1d", 999), ("msg/1d", 5000), ("msg/1h", 300)]).as_slice());
        assert_eq!(l.mailbox_caps(&mb("a@other.org")).caps, caps(&[("msg/1h", 25)]), "the catch-all's");
        assert_eq!(l.mailbox_cap(&mb("listed@x.org")), Some(Cap::Enforced(50)), "the daily recipient cap");
        let per = |m: &str| l.mailbox_caps(&mb(m)).per_message;
        assert_eq!(per("own@x.org"), 0, "its own 0 turns it off");
        assert_eq!(per("listed@x.org"), 30, "its domain's");
        assert_eq!(per("stranger@x.org"), 30, "its domain's, listed or not");
        assert_eq!(per("a@other.org"), 100, "the catch-all sets none: [limits]'");
        assert_eq!(per("vip@x.org"), 0, "exempt: only its own");
        assert_eq!(per("nodomain"), 100, "every authenticated sender");
    }
}

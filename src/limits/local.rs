//! The caps of website mail (`[limits.local]`): one local user's caps, as the milter's requests
//! resolve them. A user's own `[[limits.local.user]]` caps replace `[limits.local]`'s; exempt
//! users (`exempt_users`, or an entry's `exempt`) and `local:unknown` (mail without a valid
//! marker) are counted and never held.

use std::collections::{HashMap, HashSet};

use super::file::{Caps, ordered};
use super::resolve::{CapSource, MailboxCaps};
use crate::config::LocalSettings;

/// `[limits.local]`, compiled once per load.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalTable {
    defaults: Caps,
    exempt: HashSet<String>,
    users: HashMap<String, Caps>,
}

impl LocalTable {
    #[must_use]
    pub fn new(settings: &LocalSettings) -> Self {
        let mut exempt: HashSet<String> = settings.exempt_users.iter().cloned().collect();
        exempt.insert(crate::config::UNKNOWN_LOCAL_USER.to_owned());
        let mut users = HashMap::new();
        for u in &settings.users {
            if u.exempt {
                exempt.insert(u.name.clone());
            }
            if let Some(caps) = &u.caps {
                users.insert(u.name.clone(), ordered(None, caps));
            }
        }
        Self { defaults: ordered(None, &settings.caps), exempt, users }
    }

    /// The caps of the local user `name`.
    #[must_use]
    pub fn caps(&self, name: &str) -> MailboxCaps {
        let exempt = self.exempt.contains(name);
        let caps = if exempt { Vec::new() } else { self.users.get(name).unwrap_or(&self.defaults).clone() };
        MailboxCaps {
            listed: !caps.is_empty(),
            caps,
            exempt,
            source: CapSource::ConfigFile,
            per_message: 0,
            from_default: false,
        }
    }

    /// Whether any local user is capped at all.
    #[must_use]
    pub fn any(&self) -> bool {
        !self.defaults.is_empty() || !self.users.is_empty()
    }
}

impl super::Limits {
    /// The caps of the local user `name` (website mail).
    #[must_use]
    pub fn local_caps(&self, name: &str) -> MailboxCaps {
        self.local.caps(name)
    }

    /// The caps of a sender's own counters: a local user's `[limits.local]` caps, else the
    /// mailbox's.
    #[must_use]
    pub fn sender_caps(&self, sender: &crate::sender::Mailbox) -> MailboxCaps {
        match sender.local_name() {
            Some(name) => self.local_caps(name),
            None => self.mailbox_caps(sender),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Cap;
    use crate::window::{Unit, Window};

    #[test]
    fn own_caps_replace_the_defaults_and_exempt_users_are_not_capped() {
        let c = crate::config::from_toml(
            "[limits.local]\nrates = [\"50/1h\", \"500/1d\"]\nexempt_users = [\"root\"]\n\
             [[limits.local.user]]\nname = \"web12\"\nrates = [\"5msg/1h\"]\n\
             [[limits.local.user]]\nname = \"cron\"\nexempt = true\n",
        )
        .expect("valid");
        let t = LocalTable::new(&c.limits.local);
        let web1 = t.caps("web1");
        assert_eq!(
            web1.caps,
            vec![
                (Window::Day, Unit::Rcpt, Cap::Enforced(500)),
                (Window::HOUR, Unit::Rcpt, Cap::Enforced(50))
            ]
        );
        assert!(!web1.exempt && web1.listed);
        assert_eq!(t.caps("web12").caps, vec![(Window::HOUR, Unit::Msg, Cap::Enforced(5))]);
        for name in ["root", "cron", "unknown"] {
            let c = t.caps(name);
            assert!(c.exempt && c.caps.is_empty(), "{name}");
        }
        assert!(!LocalTable::new(&crate::config::LocalSettings::default()).any());
    }
}

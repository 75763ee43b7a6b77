//! Prints the effective config as TOML for `check-config`, with every password masked.

use std::fmt::Write as _;

use super::Config;

/// Masks the password of a URL (`redis://:secret@host` -> `redis://:********@host`).
#[must_use]
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("********"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(unparsable)".into(),
    }
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

impl Config {
    /// The effective settings, defaults filled in, as TOML; passwords masked.
    #[must_use]
    pub fn render(&self) -> String {
        let mut o = String::new();
        let source =
            self.source.as_ref().map_or_else(|| "embedded defaults".into(), |p| p.display().to_string());
        let _ = writeln!(o, "# effective config from {source} and the environment");
        let _ = writeln!(o, "mode = {}\nstore = {}\n", q(self.mode.as_str()), q(self.store.as_str()));
        let l = &self.listen;
        let _ = writeln!(o, "[listen]\nsocket = {}", q(&l.socket.to_string_lossy()));
        let _ = writeln!(o, "socket_mode = \"{:04o}\"", l.socket_mode);
        if let Some(g) = &l.socket_group {
            let _ = writeln!(o, "socket_group = {}", q(&g.name));
        }
        if let Some(t) = l.tcp {
            let _ = writeln!(o, "tcp = {}", q(&t.to_string()));
        }
        let _ = writeln!(o, "max_connections = {}", l.max_connections);
        let _ = writeln!(o, "idle_timeout_secs = {}\n", l.idle_timeout.as_secs());
        let _ = writeln!(
            o,
            "[limits]\nglobal = {}\ndefault_mailbox = {}",
            self.limits.global, self.limits.default_mailbox
        );
        for (m, daily) in &self.limits.mailboxes {
            let _ = write!(o, "[[limits.mailbox]]\nemail = {}\n", q(m.as_str()));
            if let Some(d) = daily {
                let _ = writeln!(o, "daily = {d}");
            }
        }
        let r = &self.redis;
        let _ = writeln!(
            o,
            "\n[redis]\nurl = {}\nkey_prefix = {}\ntimeout_ms = {}\nviolations_max = {}",
            q(&redact(&r.url)),
            q(&r.key_prefix),
            r.timeout.as_millis(),
            r.violations_max
        );
        if let Some(d) = &self.database {
            let _ = writeln!(
                o,
                "\n[database]\nurl = {}\nrefresh_secs = {}\nserver_id = {}\ntimeout_secs = {}\nglobal_query = {}\nmailbox_query = {}",
                q(&redact(&d.url)),
                d.refresh.as_secs(),
                d.server_id,
                d.timeout.as_secs(),
                q(&d.global_query),
                q(&d.mailbox_query)
            );
        }
        let _ = writeln!(o, "\n[log]\nlevel = {}", q(&self.log.level));
        o
    }
}

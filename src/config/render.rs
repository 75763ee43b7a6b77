//! Prints the effective config as TOML for `check-config`, with every password masked.

use std::fmt::Write as _;

use super::Config;
use crate::window::{Rate, Window};

const MASK: &str = "********";

/// Masks every secret a URL may carry, so that `check-config` output and logs can be pasted into
/// a ticket. An `http(s)` URL (a webhook) is shown as `scheme://host[:port]/…` only: Slack,
/// Discord and Telegram put the secret in the path, others in any query key (`code=`, `sig=`).
/// Other URLs (Redis, MySQL) keep their path (a database name, a socket), with the password
/// masked in every form the drivers accept: the URL's own (`redis://:secret@host`) and query
/// parameters that carry one (`?pass=`, a MySQL `?password=`, `?key=`, `?sig=`).
#[must_use]
pub fn redact(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else { return "(unparsable)".into() };
    if matches!(u.scheme(), "http" | "https") {
        let host = u.host_str().unwrap_or_default();
        let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
        let more = if u.path() != "/" || u.query().is_some() { "…" } else { "" };
        return format!("{}://{host}{port}/{more}", u.scheme());
    }
    if u.password().is_some() {
        let _ = u.set_password(Some(MASK));
    }
    if u.query_pairs().any(|(k, _)| is_secret(&k)) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret(&k) { MASK.to_owned() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// A query parameter that holds a credential (`pass`, `password`, `pwd`, `auth`, a token, a key,
/// a signature, a code...).
fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token", "auth", "key", "sig", "code", "cred"].iter().any(|s| key.contains(s))
}

/// `["20/1h", "100/15m"]`.
fn rates(list: &[Rate]) -> String {
    let items: Vec<String> = list.iter().map(|r| q(&r.to_string())).collect();
    format!("[{}]", items.join(", "))
}

/// `daily = N` for the day's cap, `rates = [...]` for the others (`prefix` = `mailbox_`).
fn write_caps(o: &mut String, prefix: &str, caps: &[Rate]) {
    let (daily, others): (Vec<&Rate>, Vec<&Rate>) = caps.iter().partition(|r| r.window == Window::Day);
    if let Some(d) = daily.first() {
        let _ = writeln!(o, "{prefix}daily = {}", d.limit);
    }
    if !others.is_empty() || daily.is_empty() {
        let others: Vec<Rate> = others.into_iter().copied().collect();
        let _ = writeln!(o, "{prefix}rates = {}", rates(&others));
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
        let _ = writeln!(
            o,
            "mode = {}\n{}store = {}\ntimezone = {}{}\nserver_name = {}\n",
            q(self.mode.as_str()),
            self.enforce_from.map(|d| format!("enforce_from = {}\n", q(&d.to_string()))).unwrap_or_default(),
            q(self.store.as_str()),
            q(self.timezone.name()),
            if self.timezone.name().is_empty() { "   # TZ if set, else /etc/localtime" } else { "" },
            q(&self.server_name)
        );
        let l = &self.listen;
        let _ = writeln!(o, "[listen]\nsocket = {}", q(&l.socket.to_string_lossy()));
        let _ = writeln!(o, "socket_mode = \"{:04o}\"", l.socket_mode);
        if let Some(g) = &l.socket_group {
            let _ = writeln!(o, "socket_group = {}", q(&g.name));
        }
        if let Some(t) = l.tcp {
            let _ = writeln!(o, "tcp = {}", q(&t.to_string()));
            match &l.tcp_allow {
                super::TcpAllow::Loopback => {}
                super::TcpAllow::Any => {
                    let _ = writeln!(o, "tcp_allow_remote = true");
                }
                super::TcpAllow::Nets(nets) => {
                    let list: Vec<String> = nets.iter().map(|n| q(&n.to_string())).collect();
                    let _ = writeln!(o, "tcp_allow = [{}]", list.join(", "));
                }
            }
        }
        let _ = writeln!(o, "max_connections = {}", l.max_connections);
        let _ = writeln!(o, "idle_timeout_secs = {}\n", l.idle_timeout.as_secs());
        let lim = &self.limits;
        let _ = writeln!(
            o,
            "[limits]\nglobal = {}\nglobal_rates = {}\ndefault_mailbox = {}\ndefault_mailbox_rates = {}\nmax_recipients = {}\nmax_rcpt_per_message = {}\noversize = {}",
            lim.global,
            rates(&lim.global_rates),
            lim.default_mailbox,
            rates(&lim.default_mailbox_rates),
            lim.max_recipients,
            lim.max_rcpt_per_message,
            q(lim.oversize.as_str())
        );
        for m in &lim.mailboxes {
            let _ = write!(o, "[[limits.mailbox]]\nemail = {}\n", q(m.mailbox.as_str()));
            if let Some(caps) = &m.caps {
                write_caps(&mut o, "", caps);
            }
            if let Some(n) = m.max_rcpt_per_message {
                let _ = writeln!(o, "max_rcpt_per_message = {n}");
            }
            if m.exempt {
                let _ = writeln!(o, "exempt = true");
            }
        }
        for d in &lim.domains {
            let _ = write!(o, "[[limits.domain]]\ndomain = {}\n", q(&d.domain));
            write_caps(&mut o, "", &d.caps);
            if let Some(caps) = &d.mailbox_caps {
                write_caps(&mut o, "mailbox_", caps);
            }
            if let Some(n) = d.max_rcpt_per_message {
                let _ = writeln!(o, "max_rcpt_per_message = {n}");
            }
        }
        let lo = &lim.local;
        let exempt: Vec<String> = lo.exempt_users.iter().map(|u| q(u)).collect();
        let _ = writeln!(o, "[limits.local]");
        write_caps(&mut o, "", &lo.caps);
        let _ = writeln!(o, "exempt_users = [{}]", exempt.join(", "));
        for u in &lo.users {
            let _ = write!(o, "[[limits.local.user]]\nname = {}\n", q(&u.name));
            if let Some(caps) = &u.caps {
                write_caps(&mut o, "", caps);
            }
            if u.exempt {
                let _ = writeln!(o, "exempt = true");
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
        let sentinels: Vec<String> = r.sentinels.iter().map(|(h, p)| q(&format!("{h}:{p}"))).collect();
        let _ = writeln!(
            o,
            "sentinels = [{}]\nsentinel_master = {}\nsentinel_password = {}",
            sentinels.join(", "),
            q(&r.sentinel_master),
            q(if r.sentinel_password.is_some() { MASK } else { "" })
        );
        if let Some(d) = &self.database {
            let _ = writeln!(
                o,
                "\n[database]\nurl = {}\nlayout = {}\nmaster_url = {}\nrefresh_secs = {}\nserver_id = {}\ntimeout_secs = {}\ncache_file = {}\nglobal_query = {}\nmailbox_query = {}",
                q(&redact(&d.url)),
                q(d.layout.as_str()),
                q(&d.master_url.as_deref().map(redact).unwrap_or_default()),
                d.refresh.as_secs(),
                d.server_id,
                d.timeout.as_secs(),
                q(&d.cache_file.to_string_lossy()),
                q(&d.global_query),
                q(&d.mailbox_query)
            );
        }
        let p = &self.protect;
        let _ = writeln!(
            o,
            "\n[protect]\nmax_client_ips = {}\nlock = {}\nlock_after_refusals = {}",
            p.max_client_ips, p.lock, p.lock_after_refusals
        );
        let l = &self.learn;
        let n = l.networks.unwrap_or_default();
        let _ = writeln!(
            o,
            "\n[learn]\nenabled = {}\ndays = {}\nmin_days = {}\nfactor = {:?}\nceiling = {}\nmax_growth = {:?}\nknown_networks = {}\nipv4_prefix = {}\nipv6_prefix = {}",
            l.enabled,
            l.days,
            l.min_days,
            l.factor,
            l.ceiling,
            l.max_growth,
            l.networks.is_some(),
            n.v4,
            n.v6
        );
        let n = &self.notify;
        let admin: Vec<String> = n.admin.iter().map(|a| q(a)).collect();
        let _ = writeln!(
            o,
            "\n[notify]\nadmin = [{}]\nsender = {}\nwebhook = {}\nsendmail = {}\nfrom = {}\nmax_per_day = {}",
            admin.join(", "),
            n.sender,
            q(&n.webhook.as_deref().map(redact).unwrap_or_default()),
            q(&n.sendmail.join(" ")),
            q(&n.from),
            n.max_per_day
        );
        let listen = match &self.metrics {
            None => String::new(),
            Some(super::MetricsListen::Tcp(a)) => a.to_string(),
            Some(super::MetricsListen::Unix(p)) => p.display().to_string(),
        };
        let remote = matches!(&self.metrics, Some(super::MetricsListen::Tcp(a)) if !a.ip().is_loopback());
        let _ = writeln!(o, "\n[metrics]\nlisten = {}\nallow_remote = {remote}", q(&listen));
        match &self.milter {
            None => {
                let _ = writeln!(o, "\n[milter]\nlisten = \"\"");
            }
            Some(m) => {
                let group = m.socket_group.as_ref().map(|g| g.name.as_str()).unwrap_or_default();
                let _ = writeln!(
                    o,
                    "\n[milter]\nlisten = {}\nsocket_mode = \"{:04o}\"\nsocket_group = {}",
                    q(&m.socket.display().to_string()),
                    m.socket_mode,
                    q(group)
                );
            }
        }
        let user = self.daemon.user.as_ref().map_or("", |u| u.name.as_str());
        let _ = writeln!(
            o,
            "\n[daemon]\nuser = {}\nstate_dir = {}",
            q(user),
            q(&self.daemon.state_dir.display().to_string())
        );
        let _ =
            writeln!(o, "\n[log]\nlevel = {}\ntarget = {}", q(&self.log.level), q(self.log.target.as_str()));
        let mut replies = self.replies.iter().peekable();
        if replies.peek().is_some() {
            let _ = writeln!(o, "\n[replies]");
            for (key, template) in replies {
                let _ = writeln!(o, "{} = {}", key.trim_start_matches("replies."), q(template.as_str()));
            }
        }
        o
    }

    /// Only the settings that differ from the defaults, like `postconf -n`, section by section;
    /// every `[[limits.mailbox]]`/`[[limits.domain]]` entry; `timezone` always, resolved.
    #[must_use]
    pub fn render_non_default(&self) -> String {
        let defaults = super::from_toml("").map(|d| d.render()).unwrap_or_default();
        let mut known = std::collections::HashSet::new();
        let mut section = String::new();
        for line in defaults.lines() {
            if line.starts_with('[') {
                section = line.to_owned();
            } else {
                known.insert((section.clone(), line.to_owned()));
            }
        }
        let (zone, from) = self.timezone.resolved();
        let mut o = format!("timezone = {}   # from {from}\n", q(&zone));
        let mut section = String::new();
        let mut shown = true;
        for line in self.render().lines() {
            if line.starts_with('#') || line.trim().is_empty() || line.starts_with("timezone = ") {
                continue;
            }
            if line.starts_with('[') {
                section = line.to_owned();
                shown = false;
                if line.starts_with("[[") {
                    let _ = writeln!(o, "{line}");
                    shown = true;
                }
                continue;
            }
            if section.starts_with("[[") || !known.contains(&(section.clone(), line.to_owned())) {
                if !shown {
                    let _ = writeln!(o, "{section}");
                    shown = true;
                }
                let _ = writeln!(o, "{line}");
            }
        }
        o
    }
}

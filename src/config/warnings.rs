//! Settings that are valid but probably not what the admin meant. `serve` logs them once
//! logging is up; `check-config` prints them (so a mistake shows before the daemon runs it).

use std::fmt::Write as _;

use super::{Config, Mode, StoreKind};
use crate::window::{Rate, Window};

/// Every warning about `config`, one line each (its mailbox list still in place).
#[must_use]
pub fn warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut say = |text: String| out.push(text);
    match (config.mode, config.enforce_from) {
        (Mode::LogOnly, None) => {
            say("mode = \"log-only\": nothing will be deferred, would-be deferrals are only logged".into());
        }
        (Mode::LogOnly, Some(from)) => say(format!(
            "mode = \"log-only\" until enforce_from = {from}: would-be deferrals are only logged until then; from that local date on they are enforced"
        )),
        (Mode::Enforce, Some(from)) => {
            say(format!("enforce_from = {from} has no effect with mode = \"enforce\" (already enforced)"));
        }
        (Mode::Enforce, None) => {}
    }
    if config.protect.lock && config.mode == Mode::LogOnly {
        say("protect.lock = true in log-only mode: suspects are logged, nobody is locked".into());
    }
    if config.protect.lock_after_refusals > 0 && !config.protect.lock {
        say(format!(
            "protect.lock_after_refusals = {} has no effect without protect.lock = true",
            config.protect.lock_after_refusals
        ));
    }
    if config.learn.networks.is_some() && !config.learn.enabled {
        say("learn.known_networks = true has no effect without learn.enabled = true".into());
    }
    if config.notify.dropped_t {
        say("notify.sendmail: -t dropped: notifications are sent with their recipients as arguments (sendmail -i -f FROM -- RCPT...), never read from the headers; remove -t from the setting".into());
    }
    if config.notify.enabled()
        && (!config.notify.admin.is_empty() || config.notify.sender)
        && let Some(program) = config.notify.sendmail.first()
        && !std::path::Path::new(program).exists()
    {
        say(format!("notify.sendmail: {program}: no such file: no notification mail can be sent"));
    }
    for (key, template) in config.replies.iter() {
        if !template.as_str().is_ascii() {
            say(format!(
                "{key}: not plain ASCII: SMTP replies are ASCII, some clients show other characters garbled (write ae for ä...)"
            ));
        }
    }
    if let Some(m) = &config.milter
        && m.default_group_missing
    {
        say(format!(
            "milter.socket_group: there is no group {} here: the milter socket {} keeps the daemon's group; Postfix's cleanup must be able to connect (set milter.socket_group)",
            super::local::DEFAULT_MILTER_GROUP,
            m.socket.display()
        ));
    }
    if config.store == StoreKind::Memory {
        say("store = \"memory\": counters live in this process and are lost on restart".into());
    }
    if let Some(tcp) = config.listen.tcp {
        let allow = &config.listen.tcp_allow;
        if allow.lets_loopback_in() {
            say(format!(
                "listen.tcp = {tcp}: loopback clients are answered{}, so every local user (a PHP script on shared hosting) can send requests in any sender's name: burn its quota, or get it locked with forged client addresses (protect.max_client_ips, protect.lock); on one host, use the Unix socket",
                if *allow == super::TcpAllow::Any {
                    " (listen.tcp_allow_remote = true: any address)"
                } else {
                    ""
                }
            ));
        }
        for net in allow.unreachable(tcp) {
            say(format!("listen.tcp_allow: {net} can never connect to {tcp}; check the address"));
        }
    }
    let l = &config.limits;
    if l.default_mailbox > l.global {
        say(format!(
            "limits.default_mailbox ({}) is above limits.global ({}): the global cap binds first",
            l.default_mailbox, l.global
        ));
    }
    let daily = |n: u64| Rate::rcpt(n, Window::Day);
    idle_rates(&mut say, "limits.global_rates", &[&[daily(l.global)], &l.global_rates[..]].concat());
    idle_rates(
        &mut say,
        "limits.default_mailbox_rates",
        &[&[daily(l.default_mailbox)], &l.default_mailbox_rates[..]].concat(),
    );
    for m in &l.mailboxes {
        if m.exempt && m.caps.is_some() {
            say(format!("limits.mailbox {}: exempt = true, so its daily/rates are never applied", m.mailbox));
        }
        if m.mailbox.domain().is_none() {
            say(format!(
                "limits.mailbox {}: no @domain: it matches a login without a domain only",
                m.mailbox
            ));
        }
        if let Some(caps) = &m.caps {
            idle_rates(&mut say, &format!("limits.mailbox {}", m.mailbox), caps);
        }
    }
    for d in &l.domains {
        idle_rates(&mut say, &format!("limits.domain {}", d.domain), &d.caps);
        if let Some(caps) = &d.mailbox_caps {
            idle_rates(&mut say, &format!("limits.domain {} mailbox caps", d.domain), caps);
        }
    }
    out
}

/// A cap over a shorter window that is not below a cap over a longer one never binds.
fn idle_rates(say: &mut impl FnMut(String), what: &str, rates: &[Rate]) {
    for short in rates {
        if let Some(long) = rates
            .iter()
            .find(|long| long.window.minutes() > short.window.minutes() && long.limit <= short.limit)
        {
            let mut text = String::new();
            let _ = write!(text, "{what}: {short} can never bind: {long} is reached first");
            say(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_toml;

    #[test]
    fn real_mistakes_are_named() {
        let c = from_toml(
            "[limits]\nglobal = 100\nglobal_rates = [\"500/1h\"]\ndefault_mailbox = 200\n\
             [[limits.mailbox]]\nemail = \"vip@x.org\"\nexempt = true\ndaily = 5\n\
             [[limits.mailbox]]\nemail = \"nodomain\"\n\
             [[limits.domain]]\ndomain = \"x.org\"\nrates = [\"10/1h\", \"50/15m\"]\n\
             [protect]\nlock_after_refusals = 3\n\
             [notify]\nadmin = [\"postmaster@x.org\"]\nsendmail = \"/nonexistent/sendmail\"\n",
        )
        .expect("valid");
        let w = warnings(&c).join("\n");
        for part in [
            "limits.default_mailbox (200) is above limits.global (100)",
            "limits.global_rates: 500/1h can never bind: 100/1d is reached first",
            "limits.mailbox vip@x.org: exempt = true",
            "limits.mailbox nodomain: no @domain",
            "limits.domain x.org: 50/15m can never bind: 10/1h is reached first",
            "protect.lock_after_refusals = 3 has no effect without protect.lock = true",
            "notify.sendmail: /nonexistent/sendmail: no such file",
        ] {
            assert!(w.contains(part), "{part} missing from:\n{w}");
        }
        assert!(warnings(&from_toml("").expect("defaults")).is_empty(), "the defaults are quiet");
    }
}

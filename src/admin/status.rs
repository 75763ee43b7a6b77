//! `status USER|@DOMAIN [--json]`: every applicable cap with used / limit / remaining, in the
//! contract's order; the sender's lock and raise.

use std::fmt::Write as _;

use serde_json::json;

use super::caps_now::caps_now;
use super::{AdminError, Subject, file_words, limits, open};
use crate::clock;
use crate::config::Config;
use crate::limits::{Basis, Cap, Limits};
use crate::store::Who;
use crate::window::{Unit, Window};

/// One scope's caps and whose counters they are on.
struct ScopeCaps<'a> {
    scope: &'static str,
    caps: Vec<crate::limits::Listed>,
    who: Who<'a>,
    /// Where each window's cap comes from.
    source: Box<dyn Fn(Window) -> String + 'a>,
}

/// A domain's aggregate caps.
fn domain_scope<'a>(limits: &Limits, domain: &'a str) -> ScopeCaps<'a> {
    let from = limits.describe(limits.domain_source(domain));
    ScopeCaps {
        scope: "domain",
        caps: limits.domain_caps(domain).to_vec(),
        who: Who::Domain(domain),
        source: Box::new(move |_| from.clone()),
    }
}

/// One row of `status`.
struct Row {
    scope: &'static str,
    window: Window,
    unit: Unit,
    used: u64,
    limit: Option<Cap>,
    source: String,
}

/// Every applicable cap of a sender or domain, with used / limit / remaining; its lock and raise.
///
/// # Errors
/// [`AdminError`] for a bad name or an unreachable Redis.
pub async fn status(config: &Config, who: &str, json_out: bool) -> Result<String, AdminError> {
    if who.starts_with(crate::sender::LOCAL_PREFIX) {
        return super::status_local::status(config, who, json_out).await;
    }
    let subject = Subject::parse(who, &config.server_name)?;
    let mut store = open(config).await?;
    let limits = limits(config).await;
    let at = config.timezone.moment(clock::from_env().0.now());
    let mut rows: Vec<Row> = Vec::new();
    let mut raise = None;
    let mut learned = None;
    // With `known_networks`: the networks a learned allowance applies from.
    let mut networks: Option<Vec<String>> = None;
    // In the contract's order.
    let mut scopes: Vec<ScopeCaps<'_>> = Vec::new();
    let (name, exempt) = match &subject {
        Subject::Mailbox(m) => {
            // What the daemon applies: the one resolution of a mailbox's caps.
            let now = caps_now(&mut store, &limits, &config.learn, m, at.day()).await?;
            let caps = now.effective.caps;
            raise = now.raise;
            learned = now.learned;
            let from = match (now.effective.basis, learned, now.default, &now.history) {
                (Basis::Raise, ..) => "raise".into(),
                (Basis::Learned(_), Some(l), Some(default), Some(history)) => {
                    if config.learn.networks.is_some() {
                        let known = history.known_networks(at.day(), config.learn.days);
                        networks = Some(known.map(str::to_owned).collect());
                    }
                    format!("learned from {} days (95th percentile {}; default {default})", l.days, l.p95)
                }
                _ => limits.describe(caps.source),
            };
            scopes.push(ScopeCaps {
                scope: "mailbox",
                caps: caps.caps,
                who: Who::Mailbox(m),
                source: Box::new(move |_| from.clone()),
            });
            if let Some(d) = m.domain() {
                scopes.push(domain_scope(&limits, d));
            }
            (m.to_string(), caps.exempt)
        }
        Subject::Domain(d) => {
            scopes.push(domain_scope(&limits, d));
            (format!("@{d}"), false)
        }
        Subject::Server => ("global".to_owned(), false),
    };
    let server_limits = limits.clone();
    scopes.push(ScopeCaps {
        scope: "server",
        caps: limits.server_caps().to_vec(),
        who: Who::Server,
        source: Box::new(move |w| server_limits.describe(server_limits.server_source(w))),
    });
    for ScopeCaps { scope, caps, who, source } in scopes {
        // The daily counter always, capped or not; then each window a cap uses.
        let mut windows: Vec<((Window, Unit), Option<Cap>)> =
            caps.iter().map(|&(w, u, c)| ((w, u), Some(c))).collect();
        if !windows.iter().any(|(w, _)| *w == (Window::Day, Unit::Rcpt)) {
            windows.insert(0, ((Window::Day, Unit::Rcpt), None));
        }
        let list: Vec<(Window, Unit)> = windows.iter().map(|(w, _)| *w).collect();
        let values = store.values(at.local, &list, who).await?;
        for (((window, unit), limit), used) in windows.into_iter().zip(values) {
            // An exempt mailbox is never deferred: no cap applies to it, whatever is configured.
            let limit = if exempt { None } else { limit };
            let source = if limit.is_some() { file_words(config, &source(window)) } else { String::new() };
            rows.push(Row { scope, window, unit, used, limit, source });
        }
    }
    let (lock, client_ips) = match &subject {
        Subject::Mailbox(m) => {
            (store.lock_value(subject.who()).await?, Some(store.client_ips(m, at.day()).await?))
        }
        Subject::Domain(_) => (store.lock_value(subject.who()).await?, None),
        Subject::Server => (None, None),
    };
    let locked = lock.is_some();
    let day_used = rows.first().map_or(0, |r| r.used);
    // The mailbox's daily cap in force (a raise's when there is one), for the summary.
    let daily = |r: &&Row, scope: &str| r.scope == scope && r.window == Window::Day && r.unit == Unit::Rcpt;
    let mailbox_day = rows.iter().find(|r| daily(r, "mailbox")).and_then(|r| r.limit);
    let server_day = rows.iter().find(|r| daily(r, "server"));
    let limits_from = file_words(config, limits.origin.describe());
    if json_out {
        let caps: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let limit = r.limit.and_then(Cap::known);
                let mut row = json!({"scope": r.scope, "window": r.window.to_string(), "used": r.used,
                       "limit": limit, "remaining": limit.map(|l| l.saturating_sub(r.used)),
                       "source": (!r.source.is_empty()).then_some(&r.source)});
                // A message cap says so; a recipient cap's row is as in v2.
                if r.unit == Unit::Msg {
                    row["unit"] = "msg".into();
                }
                row
            })
            .collect();
        let raise_caps = raise.as_ref().map(|(r, _)| r.split_whitespace().collect::<Vec<_>>());
        let lock_json =
            lock.as_deref().map(|l| serde_json::to_value(crate::store::Lock::parse(l)).unwrap_or_default());
        return Ok(json!({
            "user": name,
            "date": at.day().to_string(),
            "sent_today": day_used,
            "client_ips": client_ips,
            "exempt": exempt,
            "locked": locked,
            "lock": lock_json,
            "raise": raise_caps,
            "raise_expires_in_secs": raise.as_ref().and_then(|(_, ttl)| u64::try_from(*ttl).ok()),
            "learned": learned.map(|l| {
                let mut v = json!({"limit": l.limit, "days": l.days, "p95": l.p95});
                if let Some(n) = &networks {
                    v["networks"] = json!(n);
                }
                v
            }),
            "caps": caps,
            "limits_from": limits_from,
        })
        .to_string()
            + "\n");
    }
    let mut out = String::new();
    let _ = writeln!(out, "user:        {name}");
    let _ = writeln!(out, "date:        {}", at.day());
    let _ = writeln!(out, "sent today:  {day_used}");
    if let Some(n) = client_ips {
        let _ = writeln!(
            out,
            "addresses:   {n} SMTP client addresses today (protect.max_client_ips = {})",
            config.protect.max_client_ips
        );
    }
    if exempt {
        let _ = writeln!(out, "exempt:      yes (never deferred; counted on its own counters only)");
    }
    if let Some((r, ttl)) = &raise {
        let left = u64::try_from(*ttl)
            .map_or_else(|_| "no expiry".to_owned(), |s| format!("{} left", super::span(s)));
        let _ = writeln!(out, "raise:       {r} ({left})");
    }
    if let Some(l) = learned {
        let _ = writeln!(
            out,
            "learned:     {} a day, {} x the 95th percentile ({}) of {} days with mail (learn.ceiling {})",
            l.limit, config.learn.factor, l.p95, l.days, config.learn.ceiling
        );
        if let Some(n) = &networks {
            let list = if n.is_empty() { "none yet".to_owned() } else { n.join(", ") };
            let _ = writeln!(
                out,
                "             only from its known networks: {list} (elsewhere its default caps)"
            );
        }
    }
    let _ = writeln!(
        out,
        "locked:      {}",
        lock.as_deref().map_or_else(
            || "no".to_owned(),
            |l| format!("yes, {}", super::locks::describe(&config.timezone, l))
        )
    );
    for r in &rows {
        let of = super::of(r.unit);
        let cap = match r.limit {
            Some(Cap::Enforced(n)) => format!("{n}{of} (remaining {})", n.saturating_sub(r.used)),
            Some(Cap::Unknown) => "unknown until the database answers (counted, not enforced)".to_owned(),
            None if exempt => "none (exempt)".to_owned(),
            None => "none".to_owned(),
        };
        let from = if r.source.is_empty() { String::new() } else { format!(" (from: {})", r.source) };
        let when = super::since(r.window, at.local);
        let _ = writeln!(
            out,
            "{:<8} {:>4}: {}{of} used {when}, cap {cap}{from}",
            r.scope,
            r.window.to_string(),
            r.used
        );
    }
    if let Subject::Mailbox(_) = &subject {
        let whose = if raise.is_some() { " (raised)" } else { "" };
        let _ = match (exempt, mailbox_day) {
            (true, _) => writeln!(out, "mailbox cap: none (exempt)"),
            (false, Some(Cap::Enforced(n))) => {
                writeln!(out, "mailbox cap: {n}{whose} (remaining {})", n.saturating_sub(day_used))
            }
            (false, Some(Cap::Unknown)) => {
                writeln!(out, "mailbox cap: unknown until the database answers (counted, not enforced)")
            }
            (false, None) => writeln!(out, "mailbox cap: none (not capped)"),
        };
    }
    match (limits.global, server_day) {
        (_, None) => {}
        (Cap::Enforced(n), Some(r)) => {
            let _ = writeln!(
                out,
                "server:      {} of {n} today (remaining {})",
                r.used,
                n.saturating_sub(r.used)
            );
        }
        (Cap::Unknown, Some(r)) => {
            let _ = writeln!(out, "server:      {} today, cap unknown until the database answers", r.used);
        }
    }
    let _ = writeln!(out, "limits from: {limits_from}");
    Ok(out)
}

//! `status local:NAME [--json]`: a local user's website mail (the milter): its caps from
//! `[limits.local]` with used / limit / remaining, the mail of it this server holds, and, with
//! the ISPConfig database, the websites that run as that user.

use std::fmt::Write as _;

use serde_json::json;

use super::{AdminError, open};
use crate::clock;
use crate::config::Config;
use crate::limits::{Cap, Limits};
use crate::sender::{LOCAL_PREFIX, Mailbox};
use crate::store::Who;
use crate::window::{Unit, Window};

/// The status of `local:<name>` (`@<this server>` may follow).
///
/// # Errors
/// [`AdminError`] for a bad name or an unreachable Redis.
pub async fn status(config: &Config, user: &str, json_out: bool) -> Result<String, AdminError> {
    let server = config.server_name.as_str();
    let name = super::local_name(user, server)?;
    let who = Mailbox::local(name, server);
    let mut store = open(config).await?;
    let limits = Limits::from_config(&config.limits);
    let at = config.timezone.moment(clock::from_env().0.now());
    let local = limits.local_caps(name);
    let mut windows: Vec<((Window, Unit), Option<Cap>)> =
        local.caps.iter().map(|&(w, u, c)| ((w, u), Some(c))).collect();
    if !windows.iter().any(|(w, _)| *w == (Window::Day, Unit::Rcpt)) {
        windows.insert(0, ((Window::Day, Unit::Rcpt), None));
    }
    let list: Vec<(Window, Unit)> = windows.iter().map(|(w, _)| *w).collect();
    let values = store.values(at.local, &list, Who::Mailbox(&who)).await?;
    let held = store.held(server, name).await?;
    let sites = super::websites::of(config, name).await;
    let day_used = values.first().copied().unwrap_or(0);
    if json_out {
        let caps: Vec<serde_json::Value> = windows
            .iter()
            .zip(&values)
            .map(|(((w, u), cap), used)| {
                let limit = cap.and_then(Cap::known);
                let mut row = json!({"scope": "local", "window": w.to_string(), "used": used, "limit": limit,
                                     "remaining": limit.map(|l| l.saturating_sub(*used))});
                if *u == Unit::Msg {
                    row["unit"] = "msg".into();
                }
                row
            })
            .collect();
        return Ok(json!({
            "user": who.as_str(),
            "date": at.day().to_string(),
            "sent_today": day_used,
            "exempt": local.exempt,
            "locked": false,
            "raise": null,
            "caps": caps,
            "held": held,
            "sites": sites,
        })
        .to_string()
            + "\n");
    }
    let mut out = String::new();
    let _ = writeln!(out, "user:        {who} (website mail of the local user {name})");
    if let Some(sites) = &sites {
        let list = if sites.is_empty() { "none in ISPConfig".to_owned() } else { sites.join(", ") };
        let _ = writeln!(out, "websites:    {list}");
    }
    let _ = writeln!(out, "date:        {}", at.day());
    let _ = writeln!(out, "sent today:  {day_used}");
    if local.exempt {
        let _ = writeln!(out, "exempt:      yes (never held; counted on its own counters)");
    }
    for (((window, unit), cap), used) in windows.iter().zip(&values) {
        let of = super::of(*unit);
        let cap = match cap {
            Some(Cap::Enforced(n)) => format!("{n}{of} (remaining {})", n.saturating_sub(*used)),
            Some(Cap::Unknown) | None if local.exempt => "none (exempt)".to_owned(),
            Some(Cap::Unknown) | None => "none (limits.local)".to_owned(),
        };
        let when = super::since(*window, at.local);
        let _ = writeln!(out, "{:<8} {:>4}: {used}{of} used {when}, cap {cap}", "local", window.to_string());
    }
    let _ = match held.len() {
        0 => writeln!(out, "held:        none"),
        n => writeln!(
            out,
            "held:        {n} message(s) over its caps: {} (email-ratelimit release {LOCAL_PREFIX}{name})",
            held.join(" ")
        ),
    };
    Ok(out)
}

//! `trial`: what enforcing would change, now. The caps that would be enforced, today's would-be
//! refusals of the log-only trial by sender, and who is over a cap already (deferred at once
//! when enforcing starts). `install.sh enforce` prints it before it switches.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{AdminError, limits, open};
use crate::caps::Check;
use crate::clock;
use crate::config::{Config, Mode};
use crate::limits::Listed;
use crate::sender;
use crate::store::{Who, first_full};

/// Whether one more recipient would be refused: the daemon's own rule.
fn full(used: u64, limit: u64) -> bool {
    first_full(&[used], &[Check { counter: 0, limit }], &[1]).is_some()
}
use crate::window::{Rate, Unit, Window};

/// At most this many of today's top senders are checked against their caps.
const CHECKED_SENDERS: usize = 1000;

/// `999/1d 300/1h 40msg/1h`.
fn caps_text(caps: &[Listed]) -> String {
    let shown: Vec<String> = caps
        .iter()
        .map(|&(window, unit, c)| match c.known() {
            Some(limit) => Rate { limit, window, unit }.to_string(),
            None => format!("?/{window} (database not read yet)"),
        })
        .collect();
    if shown.is_empty() { "none".into() } else { shown.join(" ") }
}

/// The preview, as text.
///
/// # Errors
/// [`AdminError`] when Redis is unreachable.
pub async fn trial(config: &Config) -> Result<String, AdminError> {
    let mut store = open(config).await?;
    let limits = limits(config).await;
    let at = config.timezone.moment(clock::from_env().0.now());
    let (zone, _) = config.timezone.resolved();
    let mut out = match (config.mode, config.enforce_from) {
        (Mode::Enforce, _) => "mode: enforce (already enforced)\n".to_owned(),
        (Mode::LogOnly, None) => "mode: log-only (nothing is deferred yet)\n".to_owned(),
        (Mode::LogOnly, Some(d)) => {
            format!("mode: log-only until enforce_from = {d} (00:00 {zone}), then enforce\n")
        }
    };
    let _ = writeln!(out, "enforcing means:");
    let _ = writeln!(out, "  server caps:      {}", caps_text(limits.server_caps()));
    let _ = writeln!(
        out,
        "  default mailbox:  {} (for listed or opted-in mailboxes without their own caps)",
        caps_text(limits.default_mailbox_caps())
    );
    let _ = writeln!(out, "  capped mailboxes: {}", limits.capped_mailboxes());
    let domains = &config.limits.domains;
    if !domains.is_empty() {
        let catch_all = domains.iter().any(|d| d.domain == crate::limits::CATCH_ALL);
        let _ = writeln!(
            out,
            "  domain entries:   {}{}",
            domains.len(),
            if catch_all { " (with \"*\": every other domain)" } else { "" }
        );
    }
    // Today's would-be refusals: the log-only records since local midnight.
    let midnight = at.unix - i64::from(chrono::Timelike::num_seconds_from_midnight(&at.local.time()));
    let mut by_sender: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut total = 0;
    for raw in store.violations(usize::MAX).await? {
        let v: serde_json::Value = serde_json::from_str(&raw).unwrap_or_default();
        let kind = v["type"].as_str().unwrap_or_default();
        if v["enforced"] != false || v["ts"].as_i64().is_none_or(|ts| ts < midnight) {
            continue;
        }
        if !matches!(kind, "user" | "domain" | "global" | "locked") {
            continue;
        }
        total += 1;
        let entry = by_sender.entry(v["user"].as_str().unwrap_or_default().to_owned()).or_default();
        entry.0 += 1;
        if entry.1.is_empty() {
            let scope = match kind {
                "user" => "mailbox",
                "global" => "server",
                other => other,
            };
            entry.1 = format!("{scope} {}", v["window"].as_str().unwrap_or("1d"));
        }
    }
    let _ = writeln!(
        out,
        "today ({}, {zone}): {total} would-be refusal{} (DEFER (log-only)) of {} sender{}",
        at.day(),
        if total == 1 { "" } else { "s" },
        by_sender.len(),
        if by_sender.len() == 1 { "" } else { "s" }
    );
    let mut senders: Vec<_> = by_sender.into_iter().collect();
    senders.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(&b.0)));
    for (who, (n, cap)) in senders.iter().take(20) {
        let _ = writeln!(out, "  {n:>6}  {who}  ({cap})");
    }
    // Who is over a cap now.
    let mut over = Vec::new();
    let server = limits.server_caps();
    let windows: Vec<(Window, Unit)> = server.iter().map(|&(w, u, _)| (w, u)).collect();
    for ((w, u, cap), used) in server.iter().zip(store.values(at.local, &windows, Who::Server).await?) {
        if let Some(n) = cap.known()
            && full(used, n)
        {
            let cap = Rate { limit: n, window: *w, unit: *u };
            over.push(format!("  server {w}: {used} used, cap {cap}: EVERY sender would be deferred"));
        }
    }
    for (who, _) in store.top(at.day(), CHECKED_SENDERS, crate::store::client::SenderKind::Smtp).await? {
        let Ok(mailbox) = sender::normalize(&who) else { continue };
        // What the daemon applies: its raise, or its learned allowance.
        let caps = super::caps_now::caps_now(&mut store, &limits, &config.learn, &mailbox, at.day())
            .await?
            .effective
            .caps;
        if caps.exempt || caps.caps.is_empty() {
            continue;
        }
        let windows: Vec<(Window, Unit)> = caps.caps.iter().map(|&(w, u, _)| (w, u)).collect();
        let values = store.values(at.local, &windows, Who::Mailbox(&mailbox)).await?;
        for ((w, u, cap), used) in caps.caps.iter().zip(values) {
            if let Some(n) = cap.known()
                && full(used, n)
            {
                let cap = Rate { limit: n, window: *w, unit: *u };
                over.push(format!("  {mailbox} mailbox {w}: {used} used, cap {cap}"));
                break;
            }
        }
    }
    if over.is_empty() {
        let _ = writeln!(out, "over a cap now: nobody");
    } else {
        let _ = writeln!(out, "over a cap now (deferred at once when enforcing starts):");
        for line in &over {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(
            out,
            "  to start at the next local midnight instead: install.sh enforce --at-midnight;\n  or reset them first: email-ratelimit reset USER"
        );
    }
    let tomorrow = at.day().succ_opt().unwrap_or(at.day());
    let _ = writeln!(out, "next local date: {tomorrow}");
    Ok(out)
}

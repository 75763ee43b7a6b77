//! `status` without a user: the health of everything the daemon depends on, read the way the
//! daemon reads it: Redis reachable, where the limits come from and how old they are, today's
//! server count against its caps, the locked senders.

use std::fmt::Write as _;
use std::time::Instant;

use serde_json::json;

use super::{AdminError, limits_described, open, when};
use crate::clock;
use crate::config::Config;
use crate::limits::Cap;
use crate::limits::window::Window;
use crate::store::Who;

/// The health text (or JSON) and whether everything needed is up (Redis answers).
///
/// # Errors
/// Only for a memory store (nothing to ask); an unreachable Redis is reported, not an error.
pub async fn health(config: &Config, json_out: bool) -> Result<(String, bool), AdminError> {
    let (limits, source) = limits_described(config).await;
    let at = config.timezone.moment(clock::from_env().0.now());
    let started = Instant::now();
    let mut server: Vec<(Window, u64, Option<u64>)> = Vec::new();
    let mut locks = None;
    let redis = match open(config).await {
        Ok(mut store) => {
            let caps = limits.server_caps();
            let windows: Vec<Window> = caps.iter().map(|(w, _)| *w).collect();
            match store.values(at.local, &windows, Who::Server).await {
                Ok(values) => {
                    for ((w, cap), used) in caps.iter().zip(values) {
                        server.push((*w, used, Cap::known(*cap)));
                    }
                    locks = store.locked_counts().await.ok().map(|(auto, admin)| auto + admin);
                    Ok(started.elapsed())
                }
                Err(e) => Err(e.to_string()),
            }
        }
        Err(AdminError::MemoryStore) => return Err(AdminError::MemoryStore),
        Err(e) => Err(e.to_string()),
    };
    let up = redis.is_ok();
    let age = source.read_at.map(|t| (at.unix - t).max(0));
    if json_out {
        let value = json!({
            "redis": {"up": up, "error": redis.as_ref().err()},
            "limits": {"source": source.what, "age_secs": age},
            "server": server.iter().map(|(w, used, limit)| json!({"window": w.to_string(), "used": used, "limit": limit})).collect::<Vec<_>>(),
            "locked_senders": locks,
            "server_name": config.server_name,
        });
        return Ok((value.to_string() + "\n", up));
    }
    let mut out = String::new();
    let _ = writeln!(out, "server name: {}", config.server_name);
    match &redis {
        Ok(took) => {
            let _ = writeln!(
                out,
                "redis:       reachable ({} in {:.1} ms)",
                crate::config::redact(&config.redis.url),
                took.as_secs_f64() * 1000.0
            );
        }
        Err(e) => {
            let _ = writeln!(
                out,
                "redis:       UNREACHABLE: {e} (the daemon fails open: mail flows, nothing is counted)"
            );
        }
    }
    let _ = writeln!(out, "limits:      {}", source.what);
    if let (Some(t), Some(age)) = (source.read_at, age) {
        let age = super::span(u64::try_from(age).unwrap_or_default());
        let _ = writeln!(out, "             data of {} ({age} old)", when(&config.timezone, t));
    }
    for (w, used, limit) in &server {
        let cap = limit
            .map_or_else(|| "unknown".to_owned(), |l| format!("{l} (remaining {})", l.saturating_sub(*used)));
        let _ = writeln!(out, "server {:>4}: {used} used today, cap {cap}", w.to_string());
    }
    if let Some(n) = locks {
        let _ =
            writeln!(out, "locked:      {n} sender{} (email-ratelimit locks)", if n == 1 { "" } else { "s" });
    }
    Ok((out, up))
}

//! `status` without a user: the health of everything the daemon depends on, read the way the
//! daemon reads it: Redis reachable, where the limits come from and how old they are, today's
//! server count against its caps, the locked senders.

use std::fmt::Write as _;
use std::time::Instant;

use serde_json::json;

use super::{AdminError, limits_described, open, when};
use crate::clock;
use crate::config::Config;
use crate::config::Mode;
use crate::limits::Cap;
use crate::probe;
use crate::store::Who;
use crate::window::{Unit, Window};

/// What `status` without a user found, as its exit status tells a monitoring check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The daemon and Redis answer (exit 0).
    Up,
    /// The daemon does not answer on its socket (exit 1): Postfix applies its default_action.
    DaemonDown,
    /// The daemon answers, Redis does not (exit 2): the daemon fails open.
    RedisDown,
}

impl Health {
    #[must_use]
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Up => 0,
            Self::DaemonDown => 1,
            Self::RedisDown => 2,
        }
    }
}

/// The health text (or JSON) and what it found.
///
/// # Errors
/// Only for a memory store (nothing to ask); an unreachable Redis is reported, not an error.
pub async fn health(config: &Config, json_out: bool) -> Result<(String, Health), AdminError> {
    let (limits, source) = limits_described(config).await;
    let at = config.timezone.moment(clock::from_env().0.now());
    let started = Instant::now();
    let mut server: Vec<((Window, Unit), u64, Option<u64>)> = Vec::new();
    let mut locks = None;
    let redis = match open(config).await {
        Ok(mut store) => {
            let caps = limits.server_caps();
            let windows: Vec<(Window, Unit)> = caps.iter().map(|&(w, u, _)| (w, u)).collect();
            match store.values(at.local, &windows, Who::Server).await {
                Ok(values) => {
                    for ((w, u, cap), used) in caps.iter().zip(values) {
                        server.push(((*w, *u), used, Cap::known(*cap)));
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
    // Does the daemon answer where Postfix asks? A request it does not count (no login).
    let socket = config.listen.socket.display().to_string();
    let asked = Instant::now();
    let ping = probe::Probe {
        user: String::new(),
        recipients: 1,
        state: "END-OF-MESSAGE".into(),
        client_address: "127.0.0.1".into(),
        sender: String::new(),
        recipient: String::new(),
        size: 0,
        count: false,
    };
    let daemon = probe::send(&socket, &ping, std::time::Duration::from_secs(2))
        .await
        .map(|_| asked.elapsed())
        .map_err(|e| e.to_string());
    let health = match (&daemon, up) {
        (Err(_), _) => Health::DaemonDown,
        (Ok(_), false) => Health::RedisDown,
        (Ok(_), true) => Health::Up,
    };
    let mode = match (config.mode, config.enforce_from) {
        (Mode::Enforce, _) => "enforce".to_owned(),
        (Mode::LogOnly, None) => "log-only".to_owned(),
        (Mode::LogOnly, Some(d)) => format!("log-only until enforce_from = {d}, then enforce"),
    };
    let start = |w: Window| super::since(w, at.local);
    if json_out {
        let value = json!({
            "server_name": config.server_name,
            "mode": config.mode.as_str(),
            "enforce_from": config.enforce_from.map(|d| d.to_string()),
            "config": config.source.as_ref().map(|p| p.display().to_string()),
            "daemon": {"socket": socket, "answers": daemon.is_ok(), "error": daemon.as_ref().err()},
            "redis": {"up": up, "error": redis.as_ref().err()},
            "limits": {"source": source.what, "read_at": source.read_at, "age_secs": age},
            "server": server.iter().map(|((w, u), used, limit)| {
                let mut row = json!({"window": w.to_string(), "since": start(*w), "used": used, "limit": limit, "remaining": limit.map(|l| l.saturating_sub(*used))});
                if *u == Unit::Msg {
                    row["unit"] = "msg".into();
                }
                row
            }).collect::<Vec<_>>(),
            "locked_senders": locks,
        });
        return Ok((value.to_string() + "\n", health));
    }
    let mut out = String::new();
    let _ = writeln!(out, "server name: {}", config.server_name);
    let _ = writeln!(
        out,
        "config:      {}",
        config
            .source
            .as_ref()
            .map_or_else(|| "none: the embedded defaults".to_owned(), |p| p.display().to_string())
    );
    let _ = writeln!(out, "mode:        {mode}");
    match &daemon {
        Ok(took) => {
            let _ = writeln!(out, "daemon:      answers on {socket} ({:.1} ms)", took.as_secs_f64() * 1000.0);
        }
        Err(e) => {
            let _ =
                writeln!(out, "daemon:      NOT ANSWERING: {e} (Postfix then applies its default_action)");
        }
    }
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
    for ((w, u), used, limit) in &server {
        let of = super::of(*u);
        let cap = limit.map_or_else(
            || "unknown".to_owned(),
            |l| format!("{l}{of} (remaining {})", l.saturating_sub(*used)),
        );
        let _ = writeln!(out, "server {:>4}: {used}{of} used {}, cap {cap}", w.to_string(), start(*w));
    }
    if let Some(n) = locks {
        let _ =
            writeln!(out, "locked:      {n} sender{} (email-ratelimit locks)", if n == 1 { "" } else { "s" });
    }
    Ok((out, health))
}

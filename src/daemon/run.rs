//! The listeners put to work (the policy service, the milter, the metrics endpoint), and the
//! lines that say the daemon is serving.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::parts::Parts;
use super::{Listeners, scrape};
use crate::clock::TEST_CLOCK_ENV;
use crate::config::Config;
use crate::metrics;
use crate::milter;
use crate::server::{self, Bounds, Listener};

/// The policy service at work.
pub(super) struct Serving {
    /// Ends once the connections are drained after the shutdown.
    pub task: tokio::task::JoinHandle<()>,
    /// The listeners' names, for the log.
    names: Vec<String>,
    /// The socket files systemd handed over (empty when bound here).
    handed: Vec<PathBuf>,
}

/// Spawns the policy service, the milter and the metrics endpoint on their listeners.
pub(super) fn listeners(
    listeners: Listeners,
    parts: &Parts,
    config: &Config,
    shutdown: &CancellationToken,
) -> Serving {
    let Listeners { policy, activated, milter, metrics } = listeners;
    let handed = if activated { policy.iter().filter_map(Listener::unix_path).collect() } else { Vec::new() };
    let names = policy.iter().map(Listener::describe).collect();
    let bounds =
        Bounds { max_connections: config.listen.max_connections, idle_timeout: config.listen.idle_timeout };
    let slots = server::slots(&bounds);
    let task = tokio::spawn(server::run(
        policy,
        parts.service.clone(),
        bounds,
        slots.clone(),
        Arc::new(config.listen.tcp_allow.clone()),
        shutdown.clone(),
    ));
    if let Some(milter) = milter {
        tracing::info!("milter on {}", milter.describe());
        spawn_milter(milter, parts, shutdown);
    }
    if let (Some(listener), Some(m)) = (metrics, &parts.metrics) {
        tracing::info!("metrics on {}", metrics::http::describe(&listener));
        let scrape = scrape::scraper(m.clone(), parts.policy.clone(), parts.limits.clone(), slots, config);
        tokio::spawn(metrics::http::serve(listener, scrape, shutdown.clone()));
    }
    Serving { task, names, handed }
}

/// The milter on its socket (the start refused a TCP one).
fn spawn_milter(milter: Listener, parts: &Parts, shutdown: &CancellationToken) {
    let Listener::Unix(listener, owned) = milter else { return };
    let (service, shutdown) = (parts.service.clone(), shutdown.clone());
    tokio::spawn(async move {
        // The socket file lives as long as the listener.
        let _owned = owned;
        if let Err(e) = milter::run(listener, service, shutdown).await {
            tracing::error!(
                "milter listener stopped: {e}; website mail passes unchecked (default_action=accept)"
            );
        }
    });
}

/// The start-up lines: serving on what, with which config and caps; the config's warnings and
/// refused settings; the test clock; a socket systemd put elsewhere; the limits cache file.
pub(super) fn announce(config: &Config, parts: &Parts, serving: &Serving, warnings: &[String]) {
    let limits = parts.limits.current();
    tracing::info!(
        "email-ratelimit {} serving on {} config={} mode={} store={} global={} default_mailbox={}",
        env!("CARGO_PKG_VERSION"),
        serving.names.join(", "),
        config.source.as_ref().map_or_else(|| "(embedded defaults)".into(), |p| p.display().to_string()),
        config.mode.as_str(),
        config.store.as_str(),
        limits.global,
        limits.default_mailbox,
    );
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    for refused in &config.refused {
        tracing::error!("{refused}");
    }
    if let Some(path) = &parts.test_clock {
        tracing::warn!("{TEST_CLOCK_ENV} is set: \"now\" comes from {} (for tests only)", path.display());
    }
    warn_if_elsewhere(&config.listen.socket, &serving.handed);
    let Some(db) = &config.database else { return };
    match &parts.saved {
        Ok(Some(written)) => tracing::info!(
            "limits from the cache file {} (written {}) until the database answers: global={} default_mailbox={} mailbox_caps={}",
            db.cache_file.display(),
            chrono::DateTime::<chrono::Utc>::from_timestamp(*written, 0)
                .map_or_else(|| written.to_string(), |t| t.to_rfc3339()),
            limits.global,
            limits.default_mailbox,
            limits.capped_mailboxes()
        ),
        Ok(None) => tracing::warn!(
            "no limits cache file {} yet: until the database answers, its caps are counted but not enforced (erl fail-open reason=limits-unknown)",
            db.cache_file.display()
        ),
        Err(e) => tracing::warn!(
            "limits cache file not used: {e}; until the database answers, its caps are counted but not enforced (erl fail-open reason=limits-unknown)"
        ),
    }
}

/// Under systemd the socket unit decides the path: say so when it is not the configured one,
/// since Postfix is hooked to one of the two.
fn warn_if_elsewhere(configured: &std::path::Path, handed: &[PathBuf]) {
    if !handed.is_empty() && !handed.iter().any(|p| p == configured) {
        tracing::warn!(
            "listen.socket = {} but systemd handed over {}: the socket unit's ListenStream decides; make it and Postfix's check_policy_service agree",
            configured.display(),
            handed.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
}

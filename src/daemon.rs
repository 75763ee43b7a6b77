//! `serve`: wires config -> store -> limits -> policy -> listeners, announces readiness to
//! systemd, and maps signals to one [`Signal`] each: SIGHUP reloads, SIGTERM and SIGINT drain
//! and exit.

use std::path::PathBuf;
use std::sync::Arc;

use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::clock::{self, TEST_CLOCK_ENV};
use crate::config::{self, Config, ConfigError, StoreKind};
use crate::limits::{DatabaseSource, LimitsCache, LimitsError, Reader};
use crate::metrics::{self, Metrics};
use crate::milter;
use crate::notify::Notifier;
use crate::policy::{Env, Policy, Settings};
use crate::server::{self, Bounds, ServerError};
use crate::store::budget::MailBudget;
use crate::store::client::RedisClient;
use crate::store::{KeySchema, Store, StoreError, memory::MemoryStore, redis::RedisStore};
use crate::telemetry::LogHandle;

mod learning;
mod privileges;
mod reload;
mod scrape;
mod service;
mod start;
pub use privileges::PrivilegeError;
use reload::{Reloadable, reload};
pub use start::{Prepared, prepare};

/// Startup faults. Config-class ones exit 78 so systemd does not restart-loop.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("listen: {0}")]
    Listen(#[from] ServerError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Database(#[from] LimitsError),
    #[error("signals: {0}")]
    Signals(#[from] std::io::Error),
    #[error("metrics listener: {0}")]
    Metrics(std::io::Error),
    #[error("database refresher thread: {0}")]
    Refresher(std::io::Error),
    #[error("learning thread: {0}")]
    Learning(std::io::Error),
    #[error(transparent)]
    Privileges(#[from] PrivilegeError),
}

impl DaemonError {
    /// Whether the fault is in the configuration (exit 78) rather than the environment.
    #[must_use]
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Config(_) | Self::Store(_) | Self::Database(_))
    }
}

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Reload,
    Shutdown,
}

/// Runs the daemon until SIGTERM/SIGINT.
///
/// # Errors
/// [`DaemonError`] when it cannot start; once serving, faults fail open instead.
pub async fn serve(
    path: Option<PathBuf>,
    mut config: Config,
    log: Option<LogHandle>,
    prepared: Prepared,
) -> Result<(), DaemonError> {
    let Prepared { listeners, activated, website, metrics: metrics_listener, pid_file, notes } = prepared;
    // Removed at exit (after the last line is logged below).
    let _pid_file = pid_file;
    for note in &notes {
        note.log();
    }
    let store = match config.store {
        StoreKind::Redis => Store::Redis(Box::new(RedisStore::new(&config.redis)?)),
        StoreKind::Memory => Store::Memory(Box::new(MemoryStore::new(
            KeySchema::new(&config.redis.key_prefix),
            usize::try_from(config.redis.violations_max).unwrap_or(usize::MAX),
        ))),
    };
    let db = config.database.as_ref().map(DatabaseSource::new).transpose()?;
    // Said once logging is up (below); computed while the mailbox list is still here.
    let warnings = config::warnings(&config);
    // The cache keeps the file's limits (its mailbox list compacted); the running config keeps
    // no second copy of a list that may hold 100,000 entries.
    let mailboxes = std::mem::take(&mut config.limits.mailboxes);
    let file_limits = config::LimitSettings { mailboxes, ..config.limits.clone() };
    let limits = Arc::new(LimitsCache::new(file_limits, db).persisting());
    // Before the socket answers: a restart while MariaDB is down enforces the last good read.
    let saved = limits.load_saved();
    let (clock, test_clock) = clock::from_env();
    // Notifications are delivered by their own task; decisions only queue events.
    let events = match config.notify.enabled() {
        true => Some(
            Notifier::new(config.notify.clone())
                .with_budget(mail_budget(&config)?, config.timezone)
                .with_websites(config.database.clone())
                .spawn(),
        ),
        false => None,
    };
    let counters = config.metrics.as_ref().map(|_| Arc::new(Metrics::new(config.database.is_some())));
    let env = Env { zone: config.timezone, clock, server: config.server_name.clone(), events };
    let policy = Arc::new(Policy::new(store, limits.clone(), Settings::from(&config), env));
    let service = Arc::new(service::Service { policy: policy.clone(), metrics: counters.clone() });
    let shutdown = CancellationToken::new();

    raise_fd_limit(config.listen.max_connections);
    let handed: Vec<PathBuf> = listeners.iter().filter_map(server::Listener::unix_path).collect();
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let names: Vec<String> = listeners.iter().map(server::Listener::describe).collect();
    let bounds =
        Bounds { max_connections: config.listen.max_connections, idle_timeout: config.listen.idle_timeout };
    let slots = server::slots(&bounds);
    let serving = tokio::spawn(server::run(
        listeners,
        service.clone(),
        bounds,
        slots.clone(),
        Arc::new(config.listen.tcp_allow.clone()),
        shutdown.clone(),
    ));
    if let Some((listener, owned, name)) = website {
        tracing::info!("milter on {name}");
        let (service, shutdown) = (service.clone(), shutdown.clone());
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
    if let (Some(listener), Some(m)) = (metrics_listener, &counters) {
        tracing::info!("metrics on {}", listener.describe());
        let scrape = scrape::scraper(m.clone(), policy.clone(), limits.clone(), slots, &config);
        tokio::spawn(metrics::http::serve(listener, scrape, shutdown.clone()));
    }
    // The database is read on its own thread; the first read happens in the background: the
    // socket answers at once, on the config file's caps until the database's arrive.
    let mut reader = Reader::new(shutdown.clone());
    if let Some(db) = &config.database {
        reader.start(limits.clone(), db.refresh).map_err(DaemonError::Refresher)?;
    }
    tracing::info!(
        "email-ratelimit {} serving on {} config={} mode={} store={} global={} default_mailbox={}",
        env!("CARGO_PKG_VERSION"),
        names.join(", "),
        config.source.as_ref().map_or_else(|| "(embedded defaults)".into(), |p| p.display().to_string()),
        config.mode.as_str(),
        config.store.as_str(),
        limits.current().global,
        limits.current().default_mailbox,
    );
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    for refused in &config.refused {
        tracing::error!("{refused}");
    }
    if config.store == StoreKind::Redis {
        tokio::spawn(repair_lock_index(config.redis.clone()));
    }
    let learning = Arc::new(tokio::sync::Notify::new());
    learning::spawn(policy.clone(), config.redis.clone(), learning.clone(), shutdown.clone())
        .map_err(DaemonError::Learning)?;
    if let Some(path) = &test_clock {
        tracing::warn!("{TEST_CLOCK_ENV} is set: \"now\" comes from {} (for tests only)", path.display());
    }
    if activated {
        warn_if_elsewhere(&config.listen.socket, &handed);
    }
    if let Some(db) = &config.database {
        match saved {
            Ok(Some(written)) => tracing::info!(
                "limits from the cache file {} (written {}) until the database answers: global={} default_mailbox={} mailbox_caps={}",
                db.cache_file.display(),
                chrono::DateTime::<chrono::Utc>::from_timestamp(written, 0)
                    .map_or_else(|| written.to_string(), |t| t.to_rfc3339()),
                limits.current().global,
                limits.current().default_mailbox,
                limits.current().capped_mailboxes()
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
    notify(&[NotifyState::Ready]);

    let mut running = config;
    loop {
        let sig = tokio::select! {
            _ = hup.recv() => Signal::Reload,
            _ = term.recv() => Signal::Shutdown,
            _ = int.recv() => Signal::Shutdown,
        };
        match sig {
            Signal::Reload => {
                let handles = Reloadable {
                    policy: &policy,
                    learning: &learning,
                    limits: &limits,
                    metrics: counters.as_deref(),
                    log: log.as_ref(),
                };
                reload(path.as_deref(), &mut running, &handles, &mut reader).await;
            }
            Signal::Shutdown => break,
        }
    }
    tracing::info!("shutting down: draining connections");
    notify(&[NotifyState::Stopping]);
    shutdown.cancel();
    let _ = serving.await;
    tracing::info!("stopped");
    Ok(())
}

/// Where the day's notification mails are counted: Redis, shared by every server, or this
/// process with the memory store.
fn mail_budget(config: &Config) -> Result<MailBudget, DaemonError> {
    Ok(match config.store {
        StoreKind::Redis => MailBudget::redis(&config.redis)?,
        StoreKind::Memory => MailBudget::memory(&config.redis.key_prefix),
    })
}

/// Brings the two lock indexes (`locks:auto`, `locks:admin`) in line with the lock keys, in the
/// background: locks written from outside, or by an older version, are counted from then on. A
/// Redis that is down now is left alone (the next start, or `email-ratelimit locks`, repairs).
async fn repair_lock_index(redis: config::RedisSettings) {
    let repair = async { RedisClient::open(&redis).await?.repair_lock_index().await };
    match tokio::time::timeout(std::time::Duration::from_secs(60), repair).await {
        Ok(Ok(n)) => tracing::info!("lock index repaired: {n} locked sender(s)"),
        Ok(Err(e)) => tracing::warn!("lock index not repaired: {e}"),
        Err(_) => tracing::warn!("lock index not repaired: took more than 60 s"),
    }
}

/// Every connection is a file descriptor, and the common soft limit of 1024 is below the
/// default connection cap: raise the soft limit as far as the hard limit allows.
fn raise_fd_limit(max_connections: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let wanted = u64::try_from(max_connections).unwrap_or(u64::MAX).saturating_add(256);
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    if soft >= wanted {
        return;
    }
    let target = wanted.min(hard);
    if setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_err() || target < wanted {
        tracing::warn!(
            "open-file limit {} is below listen.max_connections + 256 = {wanted}; raise LimitNOFILE",
            target.max(soft)
        );
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

fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(states)
    {
        tracing::warn!("systemd notify failed: {e}");
    }
}

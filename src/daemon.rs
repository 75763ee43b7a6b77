//! `serve`: wires config -> store -> limits -> policy -> listeners, announces readiness to
//! systemd, and maps signals to one [`Signal`] each: SIGHUP reloads, SIGTERM and SIGINT drain
//! and exit.

use std::path::PathBuf;
use std::sync::Arc;

use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, ConfigError, StoreKind};
use crate::limits::{LimitsError, Reader};
use crate::server::ServerError;
use crate::store::StoreError;
use crate::store::client::RedisClient;
use crate::telemetry::LogHandle;

mod learning;
mod parts;
mod privileges;
mod reload;
mod run;
mod scrape;
mod service;
mod start;
pub use privileges::PrivilegeError;
use reload::{Reloadable, reload};
use start::Note;
pub use start::{Listeners, Prepared, prepare};

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

/// SIGHUP, SIGTERM and SIGINT, one [`Signal`] each.
struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.hup.recv() => Signal::Reload,
            _ = self.term.recv() => Signal::Shutdown,
            _ = self.int.recv() => Signal::Shutdown,
        }
    }
}

/// Runs the daemon until SIGTERM/SIGINT: the start sequence, then the signal loop.
///
/// # Errors
/// [`DaemonError`] when it cannot start; once serving, faults fail open instead.
pub async fn serve(
    path: Option<PathBuf>,
    mut config: Config,
    log: Option<LogHandle>,
    prepared: Prepared,
) -> Result<(), DaemonError> {
    let Prepared { listeners, pid_file, notes } = prepared;
    // Removed at exit (after the last line is logged below).
    let _pid_file = pid_file;
    notes.iter().for_each(Note::log);
    // Said once logging is up (below); computed while the mailbox list is still here.
    let warnings = config::warnings(&config);
    let parts = parts::build(&mut config)?;
    raise_fd_limit(config.listen.max_connections);
    let mut signals = Signals::new()?;
    let shutdown = CancellationToken::new();
    let serving = run::listeners(listeners, &parts, &config, &shutdown);
    // The database is read on its own thread; the first read happens in the background: the
    // socket answers at once, on the config file's caps until the database's arrive.
    let mut reader = Reader::new(shutdown.clone());
    if let Some(db) = &config.database {
        reader.start(parts.limits.clone(), db.refresh).map_err(DaemonError::Refresher)?;
    }
    run::announce(&config, &parts, &serving, &warnings);
    if config.store == StoreKind::Redis {
        tokio::spawn(repair_lock_index(config.redis.clone()));
    }
    let learning = Arc::new(tokio::sync::Notify::new());
    learning::spawn(parts.policy.clone(), config.redis.clone(), learning.clone(), shutdown.clone())
        .map_err(DaemonError::Learning)?;
    notify(&[NotifyState::Ready]);
    let mut running = config;
    while signals.next().await == Signal::Reload {
        let handles = Reloadable {
            policy: &parts.policy,
            learning: &learning,
            limits: &parts.limits,
            metrics: parts.metrics.as_deref(),
            log: log.as_ref(),
        };
        reload(path.as_deref(), &mut running, &handles, &mut reader).await;
    }
    tracing::info!("shutting down: draining connections");
    notify(&[NotifyState::Stopping]);
    shutdown.cancel();
    let _ = serving.task.await;
    tracing::info!("stopped");
    Ok(())
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

fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(states)
    {
        tracing::warn!("systemd notify failed: {e}");
    }
}

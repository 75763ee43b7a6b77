//! SIGHUP: the config file read again and what can change while running applied (mode, caps,
//! `[protect]`, the log level, `[database]`); the rest named on every reload until a restart.

use std::sync::Arc;

use sd_notify::NotifyState;

use super::notify;
use crate::config::{self, Config};
use crate::limits::{DatabaseSource, FileLimits, LimitsCache, Reader};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::store::Store;
use crate::telemetry::LogHandle;

/// What a reload changes in the running daemon.
pub(super) struct Reloadable<'a> {
    pub(super) policy: &'a Policy<Store>,
    /// Asks the learning task to compute the allowances again.
    pub(super) learning: &'a tokio::sync::Notify,
    pub(super) limits: &'a Arc<LimitsCache>,
    pub(super) metrics: Option<&'a Metrics>,
    pub(super) log: Option<&'a LogHandle>,
}

/// SIGHUP: re-reads the config file and applies what can change while running: mode, caps,
/// `[protect]`, the log level and `[database]` (added, changed or removed). The rest needs a
/// restart: it is warned about on every reload until then, and `running` keeps what is really
/// in force.
pub(super) async fn reload(
    path: Option<&std::path::Path>,
    running: &mut Config,
    to: &Reloadable<'_>,
    reader: &mut Reader,
) {
    let mut states = vec![NotifyState::Reloading];
    states.extend(NotifyState::monotonic_usec_now().ok());
    notify(&states);
    // Reading and compiling a long mailbox list takes a while: not on the request thread.
    let path = path.map(std::path::Path::to_owned);
    let loaded = tokio::task::spawn_blocking(move || {
        config::load(path.as_deref()).map(|mut new| {
            let mailboxes = std::mem::take(&mut new.limits.mailboxes);
            let file = FileLimits::from(config::LimitSettings { mailboxes, ..new.limits.clone() });
            (new, file)
        })
    })
    .await;
    let (mut new, file) = match loaded {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(e)) => {
            tracing::error!("reload failed, keeping the running config: {e}");
            return notify(&[NotifyState::Ready]);
        }
        Err(e) => {
            tracing::error!("reload failed, keeping the running config: {e}");
            return notify(&[NotifyState::Ready]);
        }
    };
    // One snapshot: a request in flight sees the old settings or the new ones whole.
    to.policy.reconfigure(crate::policy::Settings::from(&new));
    to.limits.set_config(file);
    if let Some(log) = to.log
        && let Err(e) = log.set_level(&new.log.level)
    {
        tracing::warn!("reload: log level not changed: {e}");
    }
    if new.database == running.database {
        if new.database.is_some() {
            reader.refresh_now(to.limits.clone()).await;
        }
    } else if let Err(e) = switch_database(new.database.as_ref(), to, reader).await {
        tracing::warn!("reload: [database] not applied, the old one stays in force: {e}");
        new.database.clone_from(&running.database);
    }
    let mut fixed = Vec::new();
    macro_rules! keep {
        ($($field:ident => $name:literal),*) => {$(
            if new.$field != running.$field {
                fixed.push($name);
                new.$field = running.$field.clone();
            }
        )*};
    }
    keep!(listen => "[listen]", timezone => "timezone", server_name => "server_name", store => "store",
          redis => "[redis]", notify => "[notify]", metrics => "[metrics]", milter => "[milter]",
          daemon => "[daemon]");
    // The level applies now; where the lines go is chosen once, at the start.
    if new.log.target != running.log.target {
        fixed.push("log.target");
        new.log.target = running.log.target;
    }
    // What is in force now, said again (listen.tcp's exposure among it) until it is changed.
    for warning in config::warnings(&new) {
        tracing::warn!("{warning}");
    }
    for refused in &new.refused {
        tracing::error!("{refused}");
    }
    if !fixed.is_empty() {
        tracing::warn!("reload: {} changed; not applied until a restart", fixed.join(", "));
    }
    let l = to.limits.current();
    tracing::info!(
        "reloaded: mode={} global={} default_mailbox={} mailbox_caps={}",
        new.mode.as_str(),
        l.global,
        l.default_mailbox,
        l.capped_mailboxes()
    );
    *running = new;
    to.learning.notify_one();
    notify(&[NotifyState::Ready]);
}

/// A SIGHUP added, changed or removed `[database]`: read the new one from now on (its cache
/// file first), or go back to the config file's caps alone.
async fn switch_database(
    db: Option<&config::DatabaseSettings>,
    to: &Reloadable<'_>,
    reader: &mut Reader,
) -> Result<(), String> {
    let source = db.map(DatabaseSource::new).transpose().map_err(|e| e.to_string())?;
    reader.stop_reading();
    to.limits.set_database(source).await;
    if let Some(m) = to.metrics {
        m.set_database_configured(db.is_some());
    }
    let Some(db) = db else {
        tracing::info!("reload: [database] removed: the config file's caps alone apply");
        return Ok(());
    };
    if let Ok(Some(_)) = to.limits.load_saved() {
        tracing::info!(
            "reload: limits from the cache file {} until the database answers",
            db.cache_file.display()
        );
    }
    tracing::info!(
        "reload: [database] applied: reading {} every {} s",
        config::redact(&db.url),
        db.refresh.as_secs()
    );
    reader.start(to.limits.clone(), db.refresh).map_err(|e| e.to_string())
}

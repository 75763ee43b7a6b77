//! The parts `serve` runs, built from the config: the counter store, the limits (with the cache
//! file's last good read), the notifier, the metrics, and the policy and service over them.

use std::path::PathBuf;
use std::sync::Arc;

use super::DaemonError;
use super::service::Service;
use crate::clock;
use crate::config::{self, Config, StoreKind};
use crate::limits::saved::SavedError;
use crate::limits::{DatabaseSource, LimitsCache};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::policy::{Env, Policy, Settings};
use crate::store::budget::MailBudget;
use crate::store::{KeySchema, Store, memory::MemoryStore, redis::RedisStore};

pub(super) struct Parts {
    pub policy: Arc<Policy<Store>>,
    pub service: Arc<Service<Store>>,
    pub limits: Arc<LimitsCache>,
    pub metrics: Option<Arc<Metrics>>,
    /// When the cache file was written (loaded before the socket answers), for the log.
    pub saved: Result<Option<i64>, SavedError>,
    /// The file of the test clock, when one is set.
    pub test_clock: Option<PathBuf>,
}

/// Builds the parts. The config's mailbox list moves into the limits: the running config keeps
/// no second copy of a list that may hold 100,000 entries.
pub(super) fn build(config: &mut Config) -> Result<Parts, DaemonError> {
    let store = match config.store {
        StoreKind::Redis => Store::Redis(Box::new(RedisStore::new(&config.redis)?)),
        StoreKind::Memory => Store::Memory(Box::new(MemoryStore::new(
            KeySchema::new(&config.redis.key_prefix),
            usize::try_from(config.redis.violations_max).unwrap_or(usize::MAX),
        ))),
    };
    let db = config.database.as_ref().map(DatabaseSource::new).transpose()?;
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
                .with_budget(mail_budget(config)?, config.timezone)
                .with_websites(config.database.clone())
                .spawn(),
        ),
        false => None,
    };
    let metrics = config.metrics.as_ref().map(|_| Arc::new(Metrics::new(config.database.is_some())));
    let env = Env { zone: config.timezone, clock, server: config.server_name.clone(), events };
    let policy = Arc::new(Policy::new(store, limits.clone(), Settings::from(&*config), env));
    let service = Arc::new(Service { policy: policy.clone(), metrics: metrics.clone() });
    Ok(Parts { policy, service, limits, metrics, saved, test_clock })
}

/// Where the day's notification mails are counted: Redis, shared by every server, or this
/// process with the memory store.
fn mail_budget(config: &Config) -> Result<MailBudget, DaemonError> {
    Ok(match config.store {
        StoreKind::Redis => MailBudget::redis(&config.redis)?,
        StoreKind::Memory => MailBudget::memory(&config.redis.key_prefix),
    })
}

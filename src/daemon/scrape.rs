//! What a `/metrics` scrape does: bring the state gauges up to date (from this process, and
//! from Redis with a 1 s bound), then render.

use std::sync::Arc;

use crate::config::{Config, StoreKind};
use crate::limits::LimitsCache;
use crate::metrics::{self, Metrics};
use crate::policy::Policy;
use crate::store::client::RedisClient;
use crate::store::{Store, Who};
use crate::window::{Unit, Window};

/// What a scrape does: bring the state gauges up to date, then render.
pub(super) fn scraper(
    m: Arc<Metrics>,
    policy: Arc<Policy<Store>>,
    limits: Arc<LimitsCache>,
    slots: Arc<tokio::sync::Semaphore>,
    config: &Config,
) -> metrics::http::Scrape {
    let max = config.listen.max_connections;
    let redis = (config.store == StoreKind::Redis).then(|| config.redis.clone());
    Arc::new(move || {
        let (m, policy, limits, slots, redis) =
            (m.clone(), policy.clone(), limits.clone(), slots.clone(), redis.clone());
        Box::pin(async move {
            m.redis_up.set(i64::from(policy.store().up().unwrap_or(true)));
            let current = limits.current();
            m.limits_loaded.set(i64::try_from(current.capped_mailboxes()).unwrap_or(i64::MAX));
            m.database_last_success.set(limits.last_success().unwrap_or(0));
            m.connections.set(i64::try_from(max.saturating_sub(slots.available_permits())).unwrap_or(0));
            if let Some(q) = policy.events() {
                m.notifications(q.stats());
            }
            m.set_mode(policy.mode());
            m.update_process();
            // The locks live in Redis (any server may set them): their two indexes are counted at
            // scrape, a few commands whatever the size of the keyspace.
            // The server's usage against its caps, likewise.
            if let Some(redis) = redis {
                let caps: Vec<((Window, Unit), u64)> = current
                    .server_caps()
                    .iter()
                    .filter_map(|&(w, u, c)| c.known().map(|c| ((w, u), c)))
                    .collect();
                let windows: Vec<(Window, Unit)> = caps.iter().map(|(w, _)| *w).collect();
                let at = policy.moment();
                let read = async {
                    let mut store = RedisClient::open(&redis).await?;
                    let locks = store.locked_counts().await?;
                    let used = store.values(at.local, &windows, Who::Server).await?;
                    Ok::<_, crate::store::StoreError>((locks, used))
                };
                if let Ok(Ok(((auto, admin), used))) =
                    tokio::time::timeout(std::time::Duration::from_secs(1), read).await
                {
                    m.locked(auto, admin);
                    let usage: Vec<((Window, Unit), u64, u64)> =
                        caps.iter().zip(used).map(|((w, limit), used)| (*w, used, *limit)).collect();
                    m.set_server(&usage);
                }
            }
            m.render()
        })
    })
}

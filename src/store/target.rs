//! Where the Redis master is: a fixed URL, or whatever the Sentinels say it is now.
//!
//! With `[redis] sentinels`, every new connection asks the Sentinels for the current master
//! (redis-rs checks that the address answers `ROLE` as a master). The store drops its connection
//! on a link fault or a `READONLY` reply (a demoted master), so the next connection follows a
//! failover; while no master is known, connecting fails and the caller fails open.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo};

use super::StoreError;
use crate::config::RedisSettings;

/// A fixed server or a Sentinel-managed master.
pub enum Target {
    Direct(Client),
    Sentinel(Box<Sentinels>),
}

/// The Sentinels, asked in turn: redis-rs asks them in list order and has no connect timeout of
/// its own, so one that swallows connections would stall every resolution. After an attempt
/// that failed or never finished (timed out, cancelled), the list is rotated: the next attempt
/// starts with the next Sentinel.
pub struct Sentinels {
    settings: RedisSettings,
    state: tokio::sync::Mutex<Asking>,
}

struct Asking {
    client: SentinelClient,
    /// How far the list is rotated.
    rotate: usize,
    /// Set before each attempt, cleared by its success.
    unfinished: bool,
}

impl Target {
    /// # Errors
    /// When the URL or a Sentinel address is invalid.
    pub fn new(settings: &RedisSettings) -> Result<Self, StoreError> {
        if settings.sentinels.is_empty() {
            return Ok(Self::Direct(Client::open(settings.url.as_str())?));
        }
        let asking = Asking { client: sentinel_client(settings, 0)?, rotate: 0, unfinished: false };
        Ok(Self::Sentinel(Box::new(Sentinels {
            settings: settings.clone(),
            state: tokio::sync::Mutex::new(asking),
        })))
    }

    /// A client for the current master (for Sentinels: asks them now, within `timeout`; a
    /// failed attempt rotates the list).
    async fn client(&self, timeout: Duration) -> Result<Client, StoreError> {
        let s = match self {
            Self::Direct(c) => return Ok(c.clone()),
            Self::Sentinel(s) => s,
        };
        let mut state = s.state.lock().await;
        if state.unfinished {
            let next = (state.rotate + 1) % s.settings.sentinels.len().max(1);
            if let Ok(client) = sentinel_client(&s.settings, next) {
                state.client = client;
                state.rotate = next;
            }
        }
        state.unfinished = true;
        let asked = tokio::time::timeout(timeout, state.client.async_get_client())
            .await
            .map_err(|_| StoreError::Timeout(millis(timeout)))??;
        state.unfinished = false;
        Ok(asked)
    }

    /// Opens one multiplexed connection to the current master (asking for it, then connecting,
    /// each within `timeout`).
    ///
    /// # Errors
    /// The Redis or Sentinel error, or [`StoreError::Timeout`].
    pub async fn connect(&self, timeout: Duration) -> Result<MultiplexedConnection, StoreError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let client = self.client(timeout).await?;
        let open = client.get_multiplexed_async_connection_with_config(&config);
        Ok(tokio::time::timeout(timeout, open).await.map_err(|_| StoreError::Timeout(millis(timeout)))??)
    }
}

/// A Sentinel client asking the Sentinels starting with the `rotate`-th.
fn sentinel_client(settings: &RedisSettings, rotate: usize) -> Result<SentinelClient, StoreError> {
    // The URL gives the master's database, user and password.
    let info = settings.url.as_str().into_connection_info()?;
    let redis = info.redis_settings();
    let n = settings.sentinels.len();
    let addrs = (0..n).map(|i| {
        let (host, port) = &settings.sentinels[(i + rotate) % n];
        ConnectionAddr::Tcp(host.clone(), *port)
    });
    let mut builder =
        SentinelClientBuilder::new(addrs, &settings.sentinel_master, SentinelServerType::Master)?
            .set_client_to_redis_db(redis.db());
    if let Some(user) = redis.username() {
        builder = builder.set_client_to_redis_username(user);
    }
    if let Some(password) = redis.password() {
        builder = builder.set_client_to_redis_password(password);
    }
    if let Some(password) = &settings.sentinel_password {
        builder = builder.set_client_to_sentinel_password(password);
    }
    Ok(builder.build()?)
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
